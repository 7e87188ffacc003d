// Digest parsing and hashing for OCI blobs.
#include "images/oci/digest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <array>
#include <cerrno>

#include "core/text.h"
#include "core/unique_fd.h"

namespace corral::images {

namespace {

std::string_view algorithmName(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::sha256 ? "sha256" : "sha512";
}

size_t hexLength(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::sha256 ? 64 : 128;
}

const EVP_MD* evpOf(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::sha256 ? EVP_sha256() : EVP_sha512();
}

}  // namespace

std::string Digest::text() const {
  return fmt::format("{}:{}", algorithmName(algorithm), hex);
}

Result<Digest> parseDigest(std::string_view text, std::string_view field) {
  size_t colon = text.find(':');
  if (colon == std::string_view::npos) {
    return fail(invalidField(std::string(field), "\"{}\" is not a digest (want sha256:<64 hex digits>)",
                             terminalSafe(text)));
  }
  std::string_view algorithm = text.substr(0, colon);
  std::string_view encoded = text.substr(colon + 1);
  Digest digest;
  if (algorithm == "sha256") {
    digest.algorithm = DigestAlgorithm::sha256;
  } else if (algorithm == "sha512") {
    digest.algorithm = DigestAlgorithm::sha512;
  } else {
    return fail(invalidField(std::string(field), "digest algorithm \"{}\" is not supported (sha256, sha512)",
                             terminalSafe(algorithm)));
  }
  if (encoded.size() != hexLength(digest.algorithm)) {
    return fail(invalidField(std::string(field), "\"{}\": a {} digest has {} hex digits, not {}",
                             terminalSafe(text), algorithm, hexLength(digest.algorithm), encoded.size()));
  }
  for (char c : encoded) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
      return fail(
          invalidField(std::string(field), "\"{}\": digits must be lowercase hex", terminalSafe(text)));
    }
  }
  digest.hex = std::string(encoded);
  return digest;
}

struct Hasher::State {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
};

Hasher::Hasher(DigestAlgorithm algorithm) : algorithm_(algorithm), state_(std::make_unique<State>()) {
  // Allocation failure of a few hundred bytes is the only way these fail; there is nothing to recover.
  if (!state_->context || EVP_DigestInit_ex(state_->context.get(), evpOf(algorithm), nullptr) != 1) {
    std::abort();
  }
}
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;
Hasher::~Hasher() = default;

void Hasher::update(std::span<const std::byte> bytes) {
  EVP_DigestUpdate(state_->context.get(), bytes.data(), bytes.size());
}

void Hasher::update(std::string_view bytes) {
  EVP_DigestUpdate(state_->context.get(), bytes.data(), bytes.size());
}

Digest Hasher::finish() {
  std::array<unsigned char, EVP_MAX_MD_SIZE> raw{};
  unsigned int length = 0;
  EVP_DigestFinal_ex(state_->context.get(), raw.data(), &length);
  static constexpr char kHex[] = "0123456789abcdef";
  Digest digest{algorithm_, {}};
  digest.hex.reserve(length * 2);
  for (unsigned int i = 0; i < length; ++i) {
    digest.hex.push_back(kHex[raw[i] >> 4]);
    digest.hex.push_back(kHex[raw[i] & 0xf]);
  }
  return digest;
}

Digest digestOf(std::string_view bytes, DigestAlgorithm algorithm) {
  Hasher hasher(algorithm);
  hasher.update(bytes);
  return hasher.finish();
}

Result<Digest> digestOfFile(const std::filesystem::path& path, DigestAlgorithm algorithm) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path.string())));
  Hasher hasher(algorithm);
  std::array<std::byte, 1 << 16> buffer;
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(systemError(errno, fmt::format("read(\"{}\")", path.string())));
    }
    if (n == 0) break;
    hasher.update(std::span(buffer.data(), static_cast<size_t>(n)));
  }
  return hasher.finish();
}

}  // namespace corral::images
