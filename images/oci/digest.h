// Content digests as OCI images name blobs ("sha256:" + 64 lowercase hex digits), and the hasher that
// computes one while bytes stream past, so a blob is verified in the same pass that stores it.
#pragma once

#include <compare>
#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "core/error.h"

namespace corral::images {

enum class DigestAlgorithm { sha256, sha512 };

struct Digest {
  DigestAlgorithm algorithm = DigestAlgorithm::sha256;
  std::string hex;  // lowercase, 64 digits for sha256, 128 for sha512

  std::string text() const;  // "sha256:0123…"
  auto operator<=>(const Digest&) const = default;
};

// "sha256:<64 hex>" or "sha512:<128 hex>", lowercase as the image spec requires. Anything else (another
// algorithm, upper case, a short or long encoded part, a path separator) is refused with `field`, so a
// digest can always be used as a file name.
Result<Digest> parseDigest(std::string_view text, std::string_view field = "digest");

// An incremental hash (OpenSSL EVP underneath).
class Hasher {
 public:
  explicit Hasher(DigestAlgorithm algorithm = DigestAlgorithm::sha256);
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;
  ~Hasher();

  void update(std::span<const std::byte> bytes);
  void update(std::string_view bytes);
  Digest finish();  // once; the hasher is spent afterwards

 private:
  struct State;
  DigestAlgorithm algorithm_;
  std::unique_ptr<State> state_;
};

Digest digestOf(std::string_view bytes, DigestAlgorithm algorithm = DigestAlgorithm::sha256);
Result<Digest> digestOfFile(const std::filesystem::path& path,
                            DigestAlgorithm algorithm = DigestAlgorithm::sha256);

}  // namespace corral::images
