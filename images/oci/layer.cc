// Layer unpacking with libarchive, in a chrooted child process (see layer.h).
#include "images/oci/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>
#include <vector>

#include "core/text.h"
#include "core/unique_fd.h"

namespace corral::images {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kWhiteoutPrefix = ".wh.";
constexpr std::string_view kOpaqueMarker = ".wh..wh..opq";
constexpr std::string_view kOverlayXattrPrefix = "trusted.overlay.";

// What the child sends back: either the stats or one error line.
struct ChildReport {
  UnpackStats stats;
  int errnum = 0;
  bool hostFault = false;  // a system call failed on our side (ENOSPC, EIO): not the image's fault
  char message[1024] = {};
};

// Removes whatever is at `path` (a file, a link, a whole tree), without following symlinks.
void removeTree(const char* path) {
  std::error_code ignored;
  fs::remove_all(path, ignored);
}

// mkdir -p for a whiteout's or an opaque marker's parent, which tars usually list first anyway. Each
// component must be a directory of the layer's own: the kernel would follow one that is a symlink (ELOOP),
// and whiteout or xattr land wherever it points, so it is refused as libarchive refuses writing through one.
int makeParents(const std::string& path) {
  std::string prefix;
  size_t start = 0;
  while (start < path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string::npos) slash = path.size();
    prefix = path.substr(0, slash);
    if (::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) return errno;
    struct stat st {};
    if (::lstat(prefix.c_str(), &st) != 0) return errno;
    if (S_ISLNK(st.st_mode)) return ELOOP;
    if (!S_ISDIR(st.st_mode)) return ENOTDIR;
    start = slash + 1;
  }
  return 0;
}

std::string parentOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string(".") : path.substr(0, slash);
}

std::string baseOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// libarchive's message for its last failure. It has none for some (a GNU long-name entry cut short), and
// fmt throws on a null string, which ended the child without a report.
const char* archiveMessage(archive* handle) {
  const char* message = archive_error_string(handle);
  return message != nullptr ? message : "libarchive gave no reason";
}

// Drops trusted.overlay.* xattrs an archive might carry: a layer must not set overlayfs' own metadata
// (opaque, redirect, metacopy) other than through the image spec's markers.
void dropOverlayXattrs(archive_entry* entry) {
  if (archive_entry_xattr_reset(entry) == 0) return;
  struct Xattr {
    std::string name;
    std::vector<char> value;
  };
  std::vector<Xattr> kept;
  bool dropped = false;
  const char* name = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(entry, &name, &value, &size) == ARCHIVE_OK) {
    if (std::string_view(name).starts_with(kOverlayXattrPrefix)) {
      dropped = true;
      continue;
    }
    const char* bytes = static_cast<const char*>(value);
    kept.push_back({name, std::vector<char>(bytes, bytes + size)});
  }
  if (!dropped) return;
  archive_entry_xattr_clear(entry);
  for (const Xattr& xattr : kept)
    archive_entry_xattr_add_entry(entry, xattr.name.c_str(), xattr.value.data(), xattr.value.size());
}

class ChildUnpacker {
 public:
  explicit ChildUnpacker(ChildReport& report) : report_(report) {}

  bool fail(int errnum, std::string_view text) {
    report_.errnum = errnum;
    report_.hostFault = errnum == ENOSPC || errnum == EDQUOT || errnum == EIO || errnum == EROFS ||
                        errnum == ENOMEM || errnum == EMFILE || errnum == ENFILE;
    size_t length = std::min(text.size(), sizeof(report_.message) - 1);
    std::memcpy(report_.message, text.data(), length);
    report_.message[length] = '\0';
    return false;
  }

  bool run(int blobFd) {
    std::unique_ptr<archive, decltype(&archive_read_free)> reader(archive_read_new(), &archive_read_free);
    std::unique_ptr<archive, decltype(&archive_write_free)> writer(archive_write_disk_new(),
                                                                   &archive_write_free);
    if (!reader || !writer) return fail(ENOMEM, "libarchive: out of memory");
    archive_read_support_filter_all(reader.get());
    archive_read_support_format_tar(reader.get());
    archive_write_disk_set_options(
        writer.get(), ARCHIVE_EXTRACT_OWNER | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME |
                          ARCHIVE_EXTRACT_XATTR | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                          ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS);
    if (archive_read_open_fd(reader.get(), blobFd, 1 << 16) != ARCHIVE_OK) {
      return fail(archive_errno(reader.get()),
                  fmt::format("not a tar archive: {}", archiveMessage(reader.get())));
    }
    UnpackStats& stats = report_.stats;
    for (;;) {
      archive_entry* entry = nullptr;
      int status = archive_read_next_header(reader.get(), &entry);
      if (status == ARCHIVE_EOF) break;
      if (status < ARCHIVE_WARN) {
        return fail(archive_errno(reader.get()),
                    fmt::format("after {} entries: {}", stats.entries, archiveMessage(reader.get())));
      }
      ++stats.entries;
      const char* rawName = archive_entry_pathname(entry);
      auto path = normalizeLayerPath(rawName ? rawName : "");
      if (!path) return fail(EINVAL, path.error().message());
      std::string base = baseOf(*path);

      if (base == kOpaqueMarker) {
        std::string parent = parentOf(*path);
        if (int error = makeParents(parent); error != 0) return failParents(*path, error);
        if (::setxattr(parent.c_str(), "trusted.overlay.opaque", "y", 1, 0) != 0) {
          return failEntry(*path, errno, "setxattr(trusted.overlay.opaque)");
        }
        ++stats.opaqueDirectories;
        continue;
      }
      if (base.starts_with(kWhiteoutPrefix)) {
        if (base.starts_with(".wh..wh."))
          continue;  // reserved for the spec's own markers (e.g. .wh..wh.plnk)
        std::string name = base.substr(kWhiteoutPrefix.size());
        if (name.empty() || name == "." || name == "..") {
          return fail(EINVAL, fmt::format("layer entry \"{}\": a whiteout must name a file (\"{}\" does not)",
                                          terminalSafe(*path), terminalSafe(name)));
        }
        std::string hidden = parentOf(*path) + "/" + name;
        if (int error = makeParents(parentOf(*path)); error != 0) return failParents(*path, error);
        removeTree(hidden.c_str());
        if (::mknod(hidden.c_str(), S_IFCHR | 0000, makedev(0, 0)) != 0) {
          return failEntry(*path, errno, "mknod(whiteout)");
        }
        ++stats.whiteouts;
        continue;
      }
      mode_t type = archive_entry_filetype(entry);
      if (type == AE_IFCHR || type == AE_IFBLK) {
        ++stats.skippedDevices;
        continue;
      }
      archive_entry_set_pathname(entry, path->c_str());
      if (const char* target = archive_entry_hardlink(entry)) {
        auto linkTarget = normalizeLayerPath(target);
        if (!linkTarget)
          return fail(EINVAL,
                      fmt::format("hard link \"{}\": {}", terminalSafe(*path), linkTarget.error().message()));
        archive_entry_set_hardlink(entry, linkTarget->c_str());
        ++stats.hardlinks;
      }
      dropOverlayXattrs(entry);

      // Warnings count as failures when writing: libarchive reports a failed write(2) (ENOSPC) and an
      // xattr or owner it could not restore as ARCHIVE_WARN, and a layer half restored is no layer.
      status = archive_write_header(writer.get(), entry);
      if (status < ARCHIVE_OK) {
        return fail(archive_errno(writer.get()),
                    fmt::format("layer entry \"{}\": {}", terminalSafe(*path), archiveMessage(writer.get())));
      }
      if (archive_entry_size(entry) > 0 && !archive_entry_hardlink(entry)) {
        if (!copyData(reader.get(), writer.get(), *path)) return false;
      }
      status = archive_write_finish_entry(writer.get());
      if (status < ARCHIVE_OK) {
        return fail(archive_errno(writer.get()),
                    fmt::format("layer entry \"{}\": {}", terminalSafe(*path), archiveMessage(writer.get())));
      }
    }
    // Directory modes and times are applied last (a read-only directory could not be filled otherwise).
    if (archive_write_close(writer.get()) != ARCHIVE_OK) {
      return fail(archive_errno(writer.get()), fmt::format("finishing: {}", archiveMessage(writer.get())));
    }
    return true;
  }

 private:
  bool failParents(const std::string& path, int errnum) {
    if (errnum == ELOOP) {
      return fail(errnum, fmt::format("layer entry \"{}\": a parent directory is a symlink (would write "
                                      "through it)",
                                      terminalSafe(path)));
    }
    return failEntry(path, errnum, "mkdir");
  }

  bool failEntry(const std::string& path, int errnum, std::string_view what) {
    return fail(errnum,
                fmt::format("layer entry \"{}\": {}: {}", terminalSafe(path), what, std::strerror(errnum)));
  }

  bool copyData(archive* reader, archive* writer, const std::string& path) {
    for (;;) {
      const void* block = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      int status = archive_read_data_block(reader, &block, &size, &offset);
      if (status == ARCHIVE_EOF) return true;
      if (status < ARCHIVE_WARN) {
        return fail(archive_errno(reader), fmt::format("layer entry \"{}\": reading: {}", terminalSafe(path),
                                                       archiveMessage(reader)));
      }
      if (archive_write_data_block(writer, block, size, offset) < ARCHIVE_OK) {
        return fail(archive_errno(writer), fmt::format("layer entry \"{}\": writing: {}", terminalSafe(path),
                                                       archiveMessage(writer)));
      }
      report_.stats.bytes += size;
    }
  }

  ChildReport& report_;
};

// The unpacking proper, into the working directory (the child's chroot, or the caller's directory).
bool unpackIntoWorkingDirectory(int blobFd, ChildReport& report) {
  mode_t callerMask = ::umask(022);  // parents a tar leaves implicit get 0755, as docker and umoci give them
  bool ok = ChildUnpacker(report).run(blobFd);
  ::umask(callerMask);
  return ok;
}

// A failed unpack's report as an Error. Archive faults (bad paths, truncated or corrupt data) are the
// image's: InvalidArgument, so the API answers 400 naming the layer; a system call failing on our side
// (ENOSPC) is Internal.
Error reportedError(ChildReport& report) {
  report.message[sizeof(report.message) - 1] = '\0';
  return report.hostFault ? Error(ErrorKind::Internal, report.message, {}, report.errnum)
                          : invalidField("layer", "{}", report.message);
}

}  // namespace

Result<std::string> normalizeLayerPath(std::string_view path) {
  if (path.starts_with('/')) {
    return fail(invalidField("path",
                             "layer entry \"{}\": an absolute path (layer paths are relative to the root)",
                             terminalSafe(path)));
  }
  std::string out;
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    std::string_view component = path.substr(start, slash - start);
    if (component == "..") {
      return fail(
          invalidField("path", "layer entry \"{}\": \"..\" would leave the layer", terminalSafe(path)));
    }
    if (!component.empty() && component != ".") {
      if (!out.empty()) out += '/';
      out += component;
    }
    start = slash + 1;
  }
  return out.empty() ? std::string(".") : out;
}

Result<UnpackStats> unpackLayer(const fs::path& blob, const fs::path& dir) {
  UniqueFd blobFd(::open(blob.c_str(), O_RDONLY | O_CLOEXEC));
  if (!blobFd) return fail(systemError(errno, fmt::format("open(\"{}\")", blob.string())));
  UniqueFd dirFd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dirFd) return fail(systemError(errno, fmt::format("open(\"{}\")", dir.string())));
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2"));
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);

  pid_t child = ::fork();
  if (child < 0) return fail(systemError(errno, "fork"));
  if (child == 0) {
    // The child: a fresh copy of this one thread; it only unpacks, reports and exits.
    readEnd.reset();
    ChildReport report;
    bool ok = false;
    if (::fchdir(dirFd.get()) != 0) {
      ChildUnpacker(report).fail(errno,
                                 fmt::format("fchdir(\"{}\"): {}", dir.string(), std::strerror(errno)));
    } else if (::chroot(".") != 0) {
      ChildUnpacker(report).fail(errno,
                                 fmt::format("chroot(\"{}\"): {}", dir.string(), std::strerror(errno)));
    } else {
      ok = unpackIntoWorkingDirectory(blobFd.get(), report);
    }
    (void)!::write(writeEnd.get(), &report, sizeof(report));
    ::_exit(ok ? 0 : 1);
  }
  writeEnd.reset();
  ChildReport report;
  size_t got = 0;
  while (got < sizeof(report)) {
    ssize_t n = ::read(readEnd.get(), reinterpret_cast<char*>(&report) + got, sizeof(report) - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += static_cast<size_t>(n);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (got != sizeof(report)) {
    return fail(
        internalError("unpacking into \"{}\": the unpacking process ended without a report (status {:#x})",
                      dir.string(), status));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return fail(reportedError(report));
  return report.stats;
}

Result<UnpackStats> unpackLayerInWorkingDirectory(int blobFd) {
  ChildReport report;
  if (!unpackIntoWorkingDirectory(blobFd, report)) return fail(reportedError(report));
  return report.stats;
}

}  // namespace corral::images
