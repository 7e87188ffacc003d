// libFuzzer target: image layers (a tar, plain, gzip or zstd) unpacked by images/oci/layer.h. The image
// store runs the unpacking in a child chrooted into the layer's directory; a child's coverage is invisible
// to libFuzzer, and the chroot would hide an entry that got out, so the target runs the same unpacking in
// process without the chroot (unpackLayerInWorkingDirectory): what is checked is that the unpacker's own
// refusals and libarchive's keep every write inside the directory, whatever the archive holds.
//
// Per input, in a sandbox made once per process: ROOT/a/b/layer (made afresh after each input) is where the
// layer goes, ROOT/a/b/sentinel its sibling and everything else under ROOT are watched. Checks beyond the
// sanitizers: nothing under ROOT but the layer changes (names, types, modes, owners, link counts, contents,
// link targets, xattrs, file times); an entry path that is absolute or has ".." fails the unpack; a refusal
// is the archive's fault (InvalidArgument, field "layer"); the layer holds no device but 0/0 whiteouts and no
// trusted.overlay.* xattr but the opaque marker. Seeds: tests/fuzz/make-layer-seeds writes them.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "core/unique_fd.h"
#include "images/oci/layer.h"
#include "tests/fuzz/fuzz_check.h"

using namespace corral;
namespace fs = std::filesystem;

namespace {

// A file bigger than this fails to write (EFBIG) instead of filling the disk: a few KiB of zstd can
// expand to gigabytes.
constexpr rlim_t kMaxFileBytes = 8 << 20;

std::string xattrsOf(const fs::path& path) {
  std::string names(4096, '\0');
  ssize_t length = ::llistxattr(path.c_str(), names.data(), names.size());
  if (length <= 0) return {};
  names.resize(static_cast<size_t>(length));
  std::string out;
  for (size_t start = 0; start < names.size();) {
    std::string name(names.c_str() + start);
    start += name.size() + 1;
    std::string value(4096, '\0');
    ssize_t size = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
    value.resize(size < 0 ? 0 : static_cast<size_t>(size));
    out += " xattr " + name + "=" + value;
  }
  return out;
}

// One line per file under `dir` (sorted, not following symlinks) with all a write could change; `layer`
// is left out, and so are the times of its ancestors (they change when it is made afresh).
void describeTree(const fs::path& dir, const fs::path& layer, const std::set<fs::path>& timeless,
                  std::string& out) {
  std::set<fs::path> children;
  for (const auto& entry : fs::directory_iterator(dir)) children.insert(entry.path());
  for (const fs::path& path : children) {
    if (path == layer) continue;
    struct stat st {};
    FUZZ_REQUIRE(::lstat(path.c_str(), &st) == 0, path.string() + ": " + std::strerror(errno));
    out += fmt::format("{} mode {:o} owner {}:{} links {} size {}", path.string(), st.st_mode, st.st_uid,
                       st.st_gid, st.st_nlink, st.st_size);
    if (!timeless.contains(path)) {
      out += fmt::format(" mtime {}.{} ctime {}.{}", st.st_mtim.tv_sec, st.st_mtim.tv_nsec, st.st_ctim.tv_sec,
                         st.st_ctim.tv_nsec);
    }
    out += xattrsOf(path);
    if (S_ISLNK(st.st_mode)) {
      out += " -> " + fs::read_symlink(path).string();
    } else if (S_ISREG(st.st_mode)) {
      std::ifstream in(path, std::ios::binary);
      out += " content " + std::string(std::istreambuf_iterator<char>(in), {});
    }
    out += '\n';
    if (S_ISDIR(st.st_mode)) describeTree(path, layer, timeless, out);
  }
}

// What the unpacker may leave in a layer: no device but a whiteout, no overlayfs xattr but "opaque".
void checkLayerTree(const fs::path& dir) {
  for (const auto& entry : fs::directory_iterator(dir)) {
    struct stat st {};
    FUZZ_REQUIRE(::lstat(entry.path().c_str(), &st) == 0, entry.path().string());
    FUZZ_REQUIRE(!S_ISBLK(st.st_mode), entry.path().string() + ": a block device");
    FUZZ_REQUIRE(!S_ISCHR(st.st_mode) || st.st_rdev == makedev(0, 0),
                 fmt::format("{}: character device {}:{}", entry.path().string(), major(st.st_rdev),
                             minor(st.st_rdev)));
    std::string xattrs = xattrsOf(entry.path());
    for (size_t at = xattrs.find(" xattr trusted.overlay."); at != std::string::npos;
         at = xattrs.find(" xattr trusted.overlay.", at + 1)) {
      FUZZ_REQUIRE(S_ISDIR(st.st_mode) && xattrs.compare(at, 32, " xattr trusted.overlay.opaque=y") == 0,
                   entry.path().string() + ":" + xattrs);
    }
    if (S_ISDIR(st.st_mode)) checkLayerTree(entry.path());
  }
}

// Whether the archive names an entry absolute or with a ".." component (libarchive reads it the same way
// the unpacker does; reading stops where the unpacker's would fail).
bool namesAnEscapingPath(int blobFd) {
  FUZZ_REQUIRE(::lseek(blobFd, 0, SEEK_SET) == 0, std::strerror(errno));
  std::unique_ptr<archive, decltype(&archive_read_free)> reader(archive_read_new(), &archive_read_free);
  archive_read_support_filter_all(reader.get());
  archive_read_support_format_tar(reader.get());
  if (archive_read_open_fd(reader.get(), blobFd, 1 << 16) != ARCHIVE_OK) return false;
  archive_entry* entry = nullptr;
  while (archive_read_next_header(reader.get(), &entry) >= ARCHIVE_WARN) {
    const char* raw = archive_entry_pathname(entry);
    std::string_view path = raw ? raw : "";
    if (path.starts_with('/')) return true;
    for (size_t start = 0; start <= path.size();) {
      size_t slash = std::min(path.find('/', start), path.size());
      if (path.substr(start, slash - start) == "..") return true;
      start = slash + 1;
    }
  }
  return false;
}

// Removes the layer whatever modes the archive gave its directories (a non-root run cannot enter a 0000
// directory to empty it).
void removeLayer(const fs::path& layer) {
  std::error_code error;
  fs::remove_all(layer, error);
  if (!error) return;
  for (auto it =
           fs::recursive_directory_iterator(layer, fs::directory_options::skip_permission_denied, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (it->is_directory() && !it->is_symlink()) ::chmod(it->path().c_str(), 0700);
  }
  ::chmod(layer.c_str(), 0700);
  error.clear();
  fs::remove_all(layer, error);
  FUZZ_REQUIRE(!error, layer.string() + ": " + error.message());
}

struct Sandbox {
  fs::path root, layer;
  std::set<fs::path> timeless;
  std::string before;
  UniqueFd home;  // the working directory to come back to

  Sandbox() {
    root = fs::temp_directory_path() / fmt::format("corral-fuzz-layer.{}", ::getpid());
    fs::remove_all(root);
    fs::create_directories(root / "a/b/sentinel/dir");
    layer = root / "a/b/layer";
    fs::create_directory(layer);
    timeless = {root / "a", root / "a/b"};
    std::ofstream(root / "a/b/sentinel/canary") << "canary";
    std::ofstream(root / "a/b/sentinel/dir/inner") << "inner";
    std::ofstream(root / "a/outer") << "outer";
    fs::create_symlink("canary", root / "a/b/sentinel/link");
    describeTree(root, layer, timeless, before);
    home.reset(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    FUZZ_REQUIRE(home.valid(), std::strerror(errno));
    rlimit fileSize{kMaxFileBytes, kMaxFileBytes};
    FUZZ_REQUIRE(::setrlimit(RLIMIT_FSIZE, &fileSize) == 0, std::strerror(errno));
    ::signal(SIGXFSZ, SIG_IGN);
  }
  // At the end of a run; after a crash the sandbox stays, to be looked at.
  ~Sandbox() {
    std::error_code ignored;
    fs::remove_all(root, ignored);
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Sandbox sandbox;
  UniqueFd blob(::memfd_create("layer", MFD_CLOEXEC));
  FUZZ_REQUIRE(blob.valid(), std::strerror(errno));
  FUZZ_REQUIRE(::write(blob.get(), data, size) == static_cast<ssize_t>(size), std::strerror(errno));
  bool escaping = namesAnEscapingPath(blob.get());
  FUZZ_REQUIRE(::lseek(blob.get(), 0, SEEK_SET) == 0, std::strerror(errno));

  FUZZ_REQUIRE(::chdir(sandbox.layer.c_str()) == 0, std::strerror(errno));
  Result<images::UnpackStats> unpacked = images::unpackLayerInWorkingDirectory(blob.get());
  FUZZ_REQUIRE(::fchdir(sandbox.home.get()) == 0, std::strerror(errno));

  std::string after;
  describeTree(sandbox.root, sandbox.layer, sandbox.timeless, after);
  FUZZ_REQUIRE(after == sandbox.before, "outside the layer, before:\n" + sandbox.before + "after:\n" + after);
  if (unpacked) {
    FUZZ_REQUIRE(!escaping, "an absolute or \"..\" entry path was unpacked");
  } else {
    FUZZ_REQUIRE(unpacked.error().kind() == ErrorKind::InvalidArgument && unpacked.error().field() == "layer",
                 unpacked.error().message());
  }
  checkLayerTree(sandbox.layer);
  removeLayer(sandbox.layer);
  FUZZ_REQUIRE(::mkdir(sandbox.layer.c_str(), 0755) == 0, std::strerror(errno));
  return 0;
}
