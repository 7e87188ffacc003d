// A container's bundle on the host: the overlay over the image, the files the parent writes into it, and
// its removal.
#include "container/bundle.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <optional>

#include "container/namespaces.h"
#include "core/rollback.h"
#include "core/unique_fd.h"

namespace corral::container {

bool isMountPoint(const std::filesystem::path& path) {
  struct statx stx {};
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) != 0) return false;
  return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

namespace {

Result<std::string> readMountinfo() {
  UniqueFd fd(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, "open(\"/proc/self/mountinfo\")"));
  std::string text;
  char buffer[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, "read(\"/proc/self/mountinfo\")"));
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

// "memory@42": each directory directly under `root` that is a mount root, with its mount id. A dozen
// statx calls, whatever the number of mounts elsewhere.
std::vector<std::string> mountPointsUnder(const std::filesystem::path& root) {
  std::vector<std::string> points;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(root, ec), end; !ec && it != end; it.increment(ec)) {
    struct statx stx {};
    if (::statx(AT_FDCWD, it->path().c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS | STATX_MNT_ID, &stx) !=
        0)
      continue;
    const bool mountRoot =
        (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
    if (!mountRoot) continue;
    points.push_back(fmt::format("{}@{}", it->path().filename().string(),
                                 (stx.stx_mask & STATX_MNT_ID) ? stx.stx_mnt_id : 0));
  }
  return points;
}

}  // namespace

// The cgroup hierarchies the host mounts under /sys/fs/cgroup, for the container's own view of them.
Result<std::vector<HostCgroupHierarchy>> hostCgroupHierarchies() {
  static CgroupHierarchyCache cache;
  return cache.hierarchies(mountPointsUnder("/sys/fs/cgroup"), readMountinfo);
}

// Writes /etc/hostname, /etc/hosts and (with nameservers) /etc/resolv.conf into the merged rootfs, that
// is into the container's writable layer. Chosen over bind mounts from the bundle (Docker's way): no
// extra mounts in the child, no bind source the mapped root of a user namespace would have to reach
// through the bundle's parents, and no bind onto an image path that might be a symlink; the daemon can
// still rewrite them while the container runs (the overlay stays mounted on the host), and they go with
// the bundle. An image's symlink at one of these paths is replaced by the file (O_NOFOLLOW throughout:
// resolved here, on the host, a symlink would point at the host's files). With a user namespace the
// files belong to the container's root, so it may edit them as it could its own.
Status writeEtcFilesFromParent(const MountPlan& plan, const ContainerConfig& config) {
  if (plan.etcFiles.empty()) return {};
  std::string etc = plan.rootfs + "/etc";
  UniqueFd dir(::open(etc.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return fail(systemError(errno, fmt::format("open(\"{}\", O_DIRECTORY|O_NOFOLLOW)", etc)));
  for (const auto& file : plan.etcFiles) {
    std::string name = file.path.substr(file.path.rfind('/') + 1);
    std::string path = plan.rootfs + file.path;
    struct stat st {};
    if (::fstatat(dir.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
      if (S_ISDIR(st.st_mode))
        return fail(invalidField("image_rootfs", "image rootfs: \"{}\" is a directory", file.path));
      if (::unlinkat(dir.get(), name.c_str(), 0) != 0)
        return fail(systemError(errno, fmt::format("unlink(\"{}\")", path)));
    }
    UniqueFd fd(
        ::openat(dir.get(), name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_CREAT|O_NOFOLLOW)", path)));
    if (::write(fd.get(), file.content.data(), file.content.size()) !=
        static_cast<ssize_t>(file.content.size()))
      return fail(systemError(errno, fmt::format("write(\"{}\")", path)));
    if (config.userNamespace) {
      auto root = config.userNamespace->hostRoot();
      if (!root) return fail(root.error());
      if (::fchown(fd.get(), root->uid, root->gid) != 0)
        return fail(systemError(errno, fmt::format("chown(\"{}\", {}, {})", path, root->uid, root->gid)));
    }
  }
  return {};
}

// What the parent creates in the writable layer belongs to the container's root: host root is no one
// inside a user namespace, and a directory of no one's is one the container's root may not write to.
Status chownToMappedRoot(const std::string& path, const ContainerConfig& config) {
  if (!config.userNamespace) return {};
  auto root = config.userNamespace->hostRoot();
  if (!root) return fail(root.error());
  if (::lchown(path.c_str(), root->uid, root->gid) != 0)
    return fail(systemError(errno, fmt::format("chown(\"{}\", {}, {})", path, root->uid, root->gid)));
  return {};
}

// Creates what the mount plan needs in the merged rootfs (as host root, so the image owns nothing new)
// and the systemd container-interface file. Mount points must be real directories: a symlink there
// would make the child mount onto a host path.
Status prepareRootfsFromParent(const MountPlan& plan, const ContainerConfig& config) {
  for (const auto& dir : plan.requiredDirectories) {
    std::string path = plan.rootfs + dir;
    struct stat st {};
    if (::lstat(path.c_str(), &st) == 0) {
      if (!S_ISDIR(st.st_mode)) {
        return fail(invalidField("image_rootfs", "image rootfs: \"{}\" is not a directory", dir));
      }
      continue;
    }
    if (errno != ENOENT) return fail(systemError(errno, fmt::format("lstat(\"{}\")", path)));
    if (::mkdir(path.c_str(), 0755) != 0) return fail(systemError(errno, fmt::format("mkdir(\"{}\")", path)));
    if (auto ok = chownToMappedRoot(path, config); !ok) return ok;
  }
  if (auto ok = writeEtcFilesFromParent(plan, config); !ok) return ok;
  std::string manager = plan.rootfs + "/run/host/container-manager";
  UniqueFd fd(::open(manager.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0444));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", manager)));
  static constexpr std::string_view kManager = "corral\n";
  if (::write(fd.get(), kManager.data(), kManager.size()) != static_cast<ssize_t>(kManager.size())) {
    return fail(systemError(errno, fmt::format("write(\"{}\")", manager)));
  }
  return chownToMappedRoot(manager, config);
}

namespace {

// mount(2) copies one page of options; past that (some 40 layers of store paths) the new mount API takes
// the layers one "lowerdir+" at a time (Linux 6.8), with no limit but overlayfs's own stack depth.
Status mountOverlayWithFsconfig(const MountPlan& plan) {
  UniqueFd context(::fsopen("overlay", FSOPEN_CLOEXEC));
  if (!context) return fail(systemError(errno, "fsopen(\"overlay\")"));
  auto set = [&](const char* key, const std::string& value) -> Status {
    if (::fsconfig(context.get(), FSCONFIG_SET_STRING, key, value.c_str(), 0) != 0) {
      if (errno == EINVAL && std::string_view(key) == "lowerdir+") {
        return fail(systemError(
            errno, fmt::format("overlay of {} layers: its options take {} bytes, more than mount(2)'s page "
                               "({}), and this kernel refuses fsconfig(\"lowerdir+\", \"{}\") (Linux 6.8 "
                               "and later take it)",
                               plan.lowerDirs.size(), plan.overlayData.size(), kMountDataMax + 1, value)));
      }
      return fail(systemError(errno, fmt::format("fsconfig(overlay, \"{}\", \"{}\")", key, value)));
    }
    return {};
  };
  for (const std::string& dir : plan.lowerDirs) {
    if (auto ok = set("lowerdir+", dir); !ok) return ok;
  }
  if (auto ok = set("upperdir", plan.upperDir); !ok) return ok;
  if (auto ok = set("workdir", plan.workDir); !ok) return ok;
  if (::fsconfig(context.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0)
    return fail(systemError(
        errno, fmt::format("fsconfig(overlay of {} layers, FSCONFIG_CMD_CREATE)", plan.lowerDirs.size())));
  UniqueFd mount(::fsmount(context.get(), FSMOUNT_CLOEXEC, 0));
  if (!mount) return fail(systemError(errno, "fsmount(overlay)"));
  if (::move_mount(mount.get(), "", AT_FDCWD, plan.rootfs.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    return fail(systemError(errno, fmt::format("move_mount(overlay, \"{}\")", plan.rootfs)));
  return {};
}

// Unmounts what a start left at the idmapped layers' mount points (a crash, or the end of a start).
void detachIdmappedLayers(const MountPlan& plan) {
  for (const std::string& point : plan.idmappedLayers) {
    if (isMountPoint(point)) ::umount2(point.c_str(), MNT_DETACH);
  }
}

}  // namespace

// Creates bundle/{upper,work,rootfs} and mounts the overlay at rootfs. Mounted here in the host's mount
// namespace, by host root, for both layouts: with a user namespace the child could not mount it from
// the image's root-owned lower layers without userxattr; detachOverlayFromParent then hands it to the
// child's mount namespace alone.
// With a user namespace each layer is mounted idmapped through the container's mapping (one mount per
// layer, at bundle/lower/<i>), so its root-owned files belong to the container's root (crun's "idmap"
// option does the same), and upper/ and work/ belong to the mapped root: what the container creates
// lands in upper/ owned by its mapped ids.
Status mountOverlayFromParent(const MountPlan& plan, const ContainerConfig& config) {
  for (const auto& dir : {plan.upperDir, plan.workDir, plan.rootfs}) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail(systemError(ec.value(), fmt::format("mkdir(\"{}\")", dir)));
  }
  if (isMountPoint(plan.rootfs)) return fail(conflict("\"{}\" is already a mount point", plan.rootfs));
  std::optional<Rollback> detachLayers;
  if (config.userNamespace) {
    auto root = config.userNamespace->hostRoot();
    if (!root) return fail(root.error());
    for (const auto& dir : {plan.upperDir, plan.workDir}) {
      if (::chown(dir.c_str(), root->uid, root->gid) != 0)
        return fail(systemError(errno, fmt::format("chown(\"{}\", {}, {})", dir, root->uid, root->gid)));
    }
    auto mapping = openMappedUserNamespace(*config.userNamespace);
    if (!mapping) return fail(mapping.error().wrap("idmap the image"));
    if (::mkdir(plan.idmappedLayersDir.c_str(), 0700) != 0 && errno != EEXIST)
      return fail(systemError(errno, fmt::format("mkdir(\"{}\")", plan.idmappedLayersDir)));
    // A crash's: the layers' mounts, or the whole image mounted at lower/ itself (before layers were).
    if (isMountPoint(plan.idmappedLayersDir)) ::umount2(plan.idmappedLayersDir.c_str(), MNT_DETACH);
    detachIdmappedLayers(plan);
    // The overlay keeps a private clone of each layer, so the layers' mount points are not needed once
    // it is up.
    detachLayers.emplace([&] { detachIdmappedLayers(plan); });
    for (size_t i = 0; i < plan.idmappedLayers.size(); ++i) {
      const std::string& point = plan.idmappedLayers[i];
      if (::mkdir(point.c_str(), 0700) != 0 && errno != EEXIST)
        return fail(systemError(errno, fmt::format("mkdir(\"{}\")", point)));
      auto idmapped = mountIdmappedFromParent(config.lowerDirs[i].string(), point, mapping->get());
      if (!idmapped) return fail(idmapped.error().wrap("idmap the image"));
    }
  }
  if (plan.overlayData.size() > kMountDataMax) return mountOverlayWithFsconfig(plan);
  if (::mount("overlay", plan.rootfs.c_str(), "overlay", 0, plan.overlayData.c_str()) != 0) {
    return fail(systemError(errno, fmt::format("mount(\"overlay\", \"{}\", \"overlay\", \"{}\")", plan.rootfs,
                                               plan.overlayData)));
  }
  return {};
}

// corrald's own mount namespace keeps none of its containers' overlays: each clone(CLONE_NEWNS) copies the
// starter's whole mount table, and the child's pivot_root detaches that copy again, so 500 overlays there
// made every start pay for 500 mounts twice (bench/README.md, issue 15).
Result<UniqueFd> detachOverlayFromParent(const MountPlan& plan) {
  UniqueFd overlay(::open_tree(AT_FDCWD, plan.rootfs.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (!overlay)
    return fail(systemError(errno, fmt::format("open_tree(\"{}\", OPEN_TREE_CLONE)", plan.rootfs)));
  if (::umount2(plan.rootfs.c_str(), MNT_DETACH) != 0)
    return fail(systemError(errno, fmt::format("umount2(\"{}\", MNT_DETACH)", plan.rootfs)));
  return overlay;
}

namespace {

// Several starts may have stacked mounts; never delete while anything is mounted (it would reach the
// image). lower/<i> are the idmapped layers, mounted only while a start is under way (a crash may leave
// them).
Status unmountBundle(const std::filesystem::path& bundleDir) {
  std::vector<std::filesystem::path> mountPoints = {bundleDir / "rootfs", bundleDir / "lower"};
  std::error_code listError;
  for (const auto& entry : std::filesystem::directory_iterator(bundleDir / "lower", listError))
    mountPoints.push_back(entry.path());
  for (const std::filesystem::path& mountPoint : mountPoints) {
    for (int attempt = 0; attempt < 16 && isMountPoint(mountPoint); ++attempt) {
      if (::umount2(mountPoint.c_str(), MNT_DETACH) != 0) {
        return fail(systemError(
            errno, fmt::format("remove bundle: umount2(\"{}\", MNT_DETACH)", mountPoint.string())));
      }
    }
    if (isMountPoint(mountPoint))
      return fail(internalError("remove bundle: \"{}\" is still mounted", mountPoint.string()));
  }
  return {};
}

}  // namespace

Result<bool> moveBundleAside(const std::filesystem::path& bundleDir, const std::filesystem::path& aside) {
  std::error_code ec;
  if (!std::filesystem::exists(bundleDir, ec)) return false;
  if (Status unmounted = unmountBundle(bundleDir); !unmounted) return fail(unmounted.error());
  std::filesystem::create_directories(aside.parent_path(), ec);
  if (::rename(bundleDir.c_str(), aside.c_str()) != 0) {
    // `aside` on another file system: deleted here and now instead.
    if (errno == EXDEV) {
      if (Status removed = removeBundle(bundleDir); !removed) return fail(removed.error());
      return false;
    }
    return fail(systemError(
        errno, fmt::format("remove bundle: rename(\"{}\", \"{}\")", bundleDir.string(), aside.string())));
  }
  return true;
}

Status removeBundle(const std::filesystem::path& bundleDir) {
  if (Status unmounted = unmountBundle(bundleDir); !unmounted) return fail(unmounted.error());
  std::error_code ec;
  std::filesystem::remove_all(bundleDir, ec);
  if (ec)
    return fail(
        systemError(ec.value(), fmt::format("remove bundle: remove_all(\"{}\")", bundleDir.string())));
  return {};
}

}  // namespace corral::container
