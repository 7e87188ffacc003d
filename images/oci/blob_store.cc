// The content-addressed blob store: verified ingest, reads, listing and removal.
#include "images/oci/blob_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <system_error>

namespace corral::images {

namespace fs = std::filesystem;

namespace {

std::string_view algorithmDir(DigestAlgorithm algorithm) {
  return algorithm == DigestAlgorithm::sha256 ? "sha256" : "sha512";
}

Status makeDirectory(const fs::path& path) {
  std::error_code error;
  fs::create_directories(path, error);
  if (error) return fail(systemError(error.value(), fmt::format("mkdir(\"{}\")", path.string())));
  return {};
}

// A name no other writer in this process or another picks: pid, a counter and the time.
std::string ingestName() {
  static std::atomic<uint64_t> counter{0};
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return fmt::format("{}-{}-{}{:09}", ::getpid(), counter.fetch_add(1), now.tv_sec, now.tv_nsec);
}

fs::path blobPath(const fs::path& root, const Digest& digest) {
  return root / "blobs" / algorithmDir(digest.algorithm) / digest.hex;
}

}  // namespace

Result<BlobStore> BlobStore::open(fs::path root) {
  for (std::string_view sub : {"blobs/sha256", "blobs/sha512", "ingest"}) {
    if (auto made = makeDirectory(root / sub); !made) return fail(made.error().wrap("blob store"));
  }
  // Whatever is in ingest/ is a write that never committed (a crash, a kill): never a blob.
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(root / "ingest", error)) {
    std::error_code ignored;
    fs::remove_all(entry.path(), ignored);
  }
  if (error) {
    return fail(systemError(error.value(), fmt::format("opendir(\"{}\")", (root / "ingest").string()))
                    .wrap("blob store"));
  }
  return BlobStore(std::move(root));
}

Error operationCancelled() {
  return conflict("cancelled");
}

fs::path BlobStore::pathOf(const Digest& digest) const {
  return blobPath(root_, digest);
}

bool BlobStore::contains(const Digest& digest) const {
  struct stat st {};
  return ::stat(pathOf(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Result<BlobStore::Writer> BlobStore::begin(std::optional<Digest> expected, int64_t expectedSize) const {
  fs::path temp = root_ / "ingest" / ingestName();
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", temp.string())));
  return Writer(*this, std::move(temp), std::move(fd), std::move(expected), expectedSize);
}

BlobStore::Writer::Writer(const BlobStore& store, fs::path temp, UniqueFd fd, std::optional<Digest> expected,
                          int64_t expectedSize)
    : storeRoot_(store.root()),
      temp_(std::move(temp)),
      fd_(std::move(fd)),
      expected_(std::move(expected)),
      expectedSize_(expectedSize),
      hasher_(expected_ ? expected_->algorithm : DigestAlgorithm::sha256) {}

BlobStore::Writer::~Writer() {
  if (!done_ && !temp_.empty()) ::unlink(temp_.c_str());
}

Status BlobStore::Writer::failWith(Error error) {
  done_ = true;
  fd_.reset();
  ::unlink(temp_.c_str());
  std::string name = expected_ ? expected_->text() : std::string("(new blob)");
  return fail(std::move(error).wrap(fmt::format("blob {}", name)));
}

Status BlobStore::Writer::write(std::span<const std::byte> bytes) {
  if (done_) return fail(internalError("blob writer used after commit or failure"));
  if (stop_.stop_requested()) return failWith(operationCancelled());
  if (expectedSize_ >= 0 && written_ + static_cast<int64_t>(bytes.size()) > expectedSize_) {
    return failWith(invalidField("size", "more than the {} bytes its descriptor gives", expectedSize_));
  }
  size_t offset = 0;
  while (offset < bytes.size()) {
    ssize_t n = ::write(fd_.get(), bytes.data() + offset, bytes.size() - offset);
    if (n < 0) {
      if (errno == EINTR) continue;
      return failWith(systemError(errno, fmt::format("write(\"{}\")", temp_.string())));
    }
    offset += static_cast<size_t>(n);
  }
  hasher_.update(bytes);
  written_ += static_cast<int64_t>(bytes.size());
  return {};
}

Status BlobStore::Writer::write(std::string_view bytes) {
  return write(std::as_bytes(std::span(bytes.data(), bytes.size())));
}

Result<Digest> BlobStore::Writer::commit() {
  if (done_) return fail(internalError("blob writer used after commit or failure"));
  if (expectedSize_ >= 0 && written_ != expectedSize_) {
    auto failed =
        failWith(invalidField("size", "{} bytes arrived, its descriptor gives {}", written_, expectedSize_));
    return fail(failed.error());
  }
  Digest actual = hasher_.finish();
  if (expected_ && actual != *expected_) {
    auto failed = failWith(invalidField("digest", "the content hashes to {}", actual.text()));
    return fail(failed.error());
  }
  if (::fsync(fd_.get()) != 0) {
    auto failed = failWith(systemError(errno, fmt::format("fsync(\"{}\")", temp_.string())));
    return fail(failed.error());
  }
  fd_.reset();
  fs::path target = blobPath(storeRoot_, actual);
  if (::rename(temp_.c_str(), target.c_str()) != 0) {
    auto failed =
        failWith(systemError(errno, fmt::format("rename(\"{}\", \"{}\")", temp_.string(), target.string())));
    return fail(failed.error());
  }
  done_ = true;
  return actual;
}

Result<Digest> BlobStore::put(std::string_view bytes) const {
  auto writer = begin(std::nullopt, static_cast<int64_t>(bytes.size()));
  if (!writer) return fail(writer.error());
  if (auto written = writer->write(bytes); !written) return fail(written.error());
  return writer->commit();
}

Result<std::string> BlobStore::read(const Digest& digest, size_t maxBytes) const {
  fs::path path = pathOf(digest);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return fail(notFound("blob {} is not in the store", digest.text()));
    return fail(systemError(errno, fmt::format("open(\"{}\")", path.string())));
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0)
    return fail(systemError(errno, fmt::format("fstat(\"{}\")", path.string())));
  if (static_cast<uint64_t>(st.st_size) > maxBytes) {
    return fail(invalidField("size", "blob {} has {} bytes, more than the {} a document may have",
                             digest.text(), st.st_size, maxBytes));
  }
  std::string out(static_cast<size_t>(st.st_size), '\0');
  size_t offset = 0;
  while (offset < out.size()) {
    ssize_t n = ::read(fd.get(), out.data() + offset, out.size() - offset);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(systemError(n < 0 ? errno : EIO, fmt::format("read(\"{}\")", path.string())));
    offset += static_cast<size_t>(n);
  }
  if (digestOf(out, digest.algorithm) != digest) {
    return fail(
        internalError("blob {} in the store no longer matches its digest (disk corruption?)", digest.text()));
  }
  return out;
}

Status BlobStore::remove(const Digest& digest) const {
  fs::path path = pathOf(digest);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return fail(systemError(errno, fmt::format("unlink(\"{}\")", path.string())));
  }
  return {};
}

Result<std::vector<Digest>> BlobStore::list() const {
  std::vector<Digest> out;
  for (DigestAlgorithm algorithm : {DigestAlgorithm::sha256, DigestAlgorithm::sha512}) {
    fs::path dir = root_ / "blobs" / algorithmDir(algorithm);
    std::error_code error;
    for (const auto& entry : fs::directory_iterator(dir, error)) {
      auto digest =
          parseDigest(fmt::format("{}:{}", algorithmDir(algorithm), entry.path().filename().string()));
      if (digest) out.push_back(*digest);  // anything else is not ours to list
    }
    if (error) return fail(systemError(error.value(), fmt::format("opendir(\"{}\")", dir.string())));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace corral::images
