// Root disks for VMs from images (see disk.h).
#include "images/oci/disk.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "core/unique_fd.h"

namespace corral::images {

namespace fs = std::filesystem;

namespace {

// Runs argv, its output to `log`; returns its exit status (or -1 when it could not start).
int runTool(const std::vector<std::string>& argv, const fs::path& log) {
  pid_t child = ::fork();
  if (child < 0) return -1;
  if (child == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    std::vector<char*> args;
    for (const std::string& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string tail(const fs::path& log) {
  UniqueFd fd(::open(log.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  std::string out;
  char buffer[4096];
  for (ssize_t n; (n = ::read(fd.get(), buffer, sizeof(buffer))) > 0;)
    out.append(buffer, static_cast<size_t>(n));
  if (out.size() > 1500) out.erase(0, out.size() - 1500);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

}  // namespace

uint64_t diskSizeFor(uint64_t bytes, uint64_t inodes) {
  constexpr uint64_t kMiB = 1 << 20;
  uint64_t tree = bytes + inodes * 4096;  // each file takes at least a block, and an inode
  uint64_t size = tree + tree / 4 + 1024 * kMiB;
  return (size + kMiB - 1) / kMiB * kMiB;
}

Result<fs::path> baseDisk(const ImageStore& store, const Image& image) {
  static std::mutex building;  // one build per process at a time: two VMs of a new image share one
  std::lock_guard lock(building);
  // Held from before the scratch files exist until the disk is in place: a collection meanwhile (an
  // `image rm`, an unpin) keeps the image and leaves `.tmp-*`, `.mnt-*` and `.log-*` alone.
  ImageStore::Hold hold = store.hold(image);
  fs::path disks = store.root() / "disks";
  fs::path target = disks / (image.manifestDigest.hex + ".ext4");
  if (fs::exists(target)) return target;
  std::error_code error;
  fs::create_directories(disks, error);
  if (error) return fail(systemError(error.value(), fmt::format("mkdir(\"{}\")", disks.string())));
  static std::atomic<uint64_t> counter{0};
  std::string suffix = fmt::format("{}-{}", ::getpid(), counter.fetch_add(1));
  fs::path temp = disks / fmt::format(".tmp-{}.ext4", suffix);
  fs::path mountPoint = disks / fmt::format(".mnt-{}", suffix);
  fs::path log = disks / fmt::format(".log-{}", suffix);
  fs::create_directories(mountPoint, error);
  struct Cleanup {
    fs::path temp, mountPoint, log;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove(temp, ignored);
      fs::remove(mountPoint, ignored);
      fs::remove(log, ignored);
    }
  } cleanup{temp, mountPoint, log};

  uint64_t bytes = 0, inodes = 0;
  for (const fs::path& layer : image.layerDirs) {
    for (auto it = fs::recursive_directory_iterator(layer, error); it != fs::recursive_directory_iterator();
         ++it) {
      ++inodes;
      if (it->is_regular_file(error)) bytes += it->file_size(error);
    }
  }
  uint64_t size = diskSizeFor(bytes, inodes);

  // In a child with its own mount namespace: the overlay mount of the layers exists only there and goes
  // with it, whatever happens to mkfs.
  pid_t child = ::fork();
  if (child < 0) return fail(systemError(errno, "fork"));
  if (child == 0) {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
      ::_exit(90);
    std::string lower;
    for (auto it = image.layerDirs.rbegin(); it != image.layerDirs.rend(); ++it) {
      lower += (lower.empty() ? "" : ":") + it->string();
    }
    if (image.layerDirs.size() == 1) {
      // overlayfs without an upper wants two lowers; the one layer can be read directly.
      if (::mount(image.layerDirs[0].c_str(), mountPoint.c_str(), nullptr, MS_BIND | MS_RDONLY, nullptr) != 0)
        ::_exit(91);
    } else if (::mount("overlay", mountPoint.c_str(), "overlay", MS_RDONLY, ("lowerdir=" + lower).c_str()) !=
               0) {
      ::_exit(91);
    }
    // -d copies owners, modes, times, hard links, symlinks and xattrs; no journal replay needed on a fresh
    // fs; the label lets the guest init find its root.
    int status = runTool({"mkfs.ext4", "-q", "-F", "-L", "corral-root", "-E", "root_owner=0:0", "-d",
                          mountPoint.string(), temp.string(), fmt::format("{}k", size / 1024)},
                         log);
    ::_exit(status == 0 ? 0 : 92);
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (code != 0) {
    std::string why = code == 90   ? "its own mount namespace could not be made"
                      : code == 91 ? "the layers could not be mounted"
                                   : "mkfs.ext4 failed: " + tail(log);
    return fail(internalError("image {}: building its VM disk: {}", image.name, why));
  }
  if (::rename(temp.c_str(), target.c_str()) != 0) {
    return fail(systemError(errno, fmt::format("rename(\"{}\", \"{}\")", temp.string(), target.string())));
  }
  return target;
}

namespace {

// Runs `args` (qemu-img ...), its output in PATH.log while it runs; the error says what `doing` was.
Status runQemuImg(const std::vector<std::string>& args, const fs::path& path, std::string_view doing) {
  fs::path log = path;
  log += ".log";
  int code = runTool(args, log);
  std::string why = tail(log);
  std::error_code ignored;
  fs::remove(log, ignored);
  if (code == 127)
    return fail(unavailable("qemu-img is not installed (scripts/install-deps installs qemu-utils)"));
  if (code != 0) return fail(internalError("qemu-img {} \"{}\": {}", doing, path.string(), why));
  return {};
}

}  // namespace

Status createInstanceDisk(const fs::path& base, const fs::path& path) {
  if (fs::exists(path)) return fail(conflict("instance disk \"{}\" exists already", path.string()));
  return runQemuImg(
      {"qemu-img", "create", "-q", "-f", "qcow2", "-b", base.string(), "-F", "raw", path.string()}, path,
      "create");
}

Status rebaseInstanceDisk(const fs::path& path, const fs::path& base) {
  return runQemuImg(
      {"qemu-img", "rebase", "-q", "-u", "-f", "qcow2", "-b", base.string(), "-F", "raw", path.string()},
      path, "rebase");
}

}  // namespace corral::images
