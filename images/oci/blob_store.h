// Content-addressed blobs on disk (blobs/sha256/<hex>, as in an OCI image layout). A blob appears under
// its name only whole and verified: bytes go to ingest/ first, are hashed and counted as they are written,
// and are renamed into place only when size and digest match what the manifest promised. A crash leaves at
// most a file in ingest/, which the next open() deletes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"
#include "images/oci/digest.h"

namespace corral::images {

// The error of an operation stopped through its std::stop_token (image_store.h): Conflict, "cancelled".
Error operationCancelled();

class BlobStore {
 public:
  // Creates root/blobs/{sha256,sha512} and root/ingest as needed and empties ingest/.
  static Result<BlobStore> open(std::filesystem::path root);

  const std::filesystem::path& root() const { return root_; }
  std::filesystem::path pathOf(const Digest& digest) const;
  bool contains(const Digest& digest) const;

  // One blob being written. Destroyed without commit(), it leaves nothing behind.
  class Writer {
   public:
    Writer(Writer&&) noexcept = default;
    Writer& operator=(Writer&&) noexcept = default;
    ~Writer();

    // Refuses bytes past the expected size at once (a registry that sends more than it promised).
    Status write(std::span<const std::byte> bytes);
    Status write(std::string_view bytes);
    int64_t written() const { return written_; }
    // Once `stop` is stopped, the next write() fails (operationCancelled()) and the bytes are dropped: a
    // transfer feeding this writer ends at its next block.
    void stopOn(std::stop_token stop) { stop_ = std::move(stop); }
    bool stopRequested() const { return stop_.stop_requested(); }
    // fsync, then checks size and digest and renames into place. Mismatch: an InvalidArgument error that
    // names both digests (field "digest"); nothing is stored.
    Result<Digest> commit();

   private:
    friend class BlobStore;
    Writer(const BlobStore& store, std::filesystem::path temp, UniqueFd fd, std::optional<Digest> expected,
           int64_t expectedSize);
    Status failWith(Error error);

    std::filesystem::path storeRoot_;  // not a pointer to the store: a BlobStore may move
    std::filesystem::path temp_;
    UniqueFd fd_;
    std::optional<Digest> expected_;
    int64_t expectedSize_ = -1;
    int64_t written_ = 0;
    Hasher hasher_;
    bool done_ = false;
    std::stop_token stop_;
  };

  // `expected`: the digest the bytes must have (nullopt: whatever they hash to, for documents corral makes
  // itself); `expectedSize` -1 when unknown.
  Result<Writer> begin(std::optional<Digest> expected, int64_t expectedSize = -1) const;
  // A small document corral made itself (a manifest, a config): stored under its own digest.
  Result<Digest> put(std::string_view bytes) const;
  // The whole blob, re-verified against its name; refused if larger than maxBytes (documents only).
  Result<std::string> read(const Digest& digest, size_t maxBytes = 4 << 20) const;
  Status remove(const Digest& digest) const;
  Result<std::vector<Digest>> list() const;

 private:
  explicit BlobStore(std::filesystem::path root) : root_(std::move(root)) {}
  std::filesystem::path root_;
};

}  // namespace corral::images
