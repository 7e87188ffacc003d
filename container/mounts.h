// A container's filesystem as data: the overlay rootfs, the mounts, device nodes, symlinks and Docker's
// masked / read-only paths (buildMountPlan, pure), and the child-side code that applies it and pivots.
#pragma once

#include <sys/mount.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "container/devices.h"
#include "core/error.h"

namespace corral::container {

// What the child creates at a mount's target when it is missing (inside the root, see rootfs_path.h).
enum class MountTarget { Existing, Directory, File };

struct MountEntry {
  std::string source;       // device/fs name ("proc", "tmpfs") or a host path for bind mounts
  std::string target;       // as the container sees it: "/dev/pts"
  std::string hostTarget;   // the same place before pivot_root: "<bundle>/rootfs/dev/pts"
  std::string fstype;       // empty for bind mounts and propagation changes
  unsigned long flags = 0;  // MS_*; MS_BIND|MS_RDONLY is applied as a bind plus a read-only remount
  std::string data;
  MountTarget create = MountTarget::Existing;
  // MS_PRIVATE, MS_SLAVE, MS_SHARED or MS_UNBINDABLE (| MS_REC), applied after the mount; 0: none.
  unsigned long propagation = 0;
};

struct SymlinkEntry {
  std::string linkTarget;  // what the link points to: "/proc/self/fd"
  std::string path;        // "/dev/fd"
  std::string hostPath;    // "<bundle>/rootfs/dev/fd"
};

struct ContainerPath {
  std::string path;      // "/proc/kcore"
  std::string hostPath;  // "<bundle>/rootfs/proc/kcore"
};

// One cgroup hierarchy the host mounts directly under /sys/fs/cgroup (from /proc/self/mountinfo).
struct HostCgroupHierarchy {
  std::string name;     // the directory under /sys/fs/cgroup: "memory", "cpu,cpuacct", "systemd", "unified"
  std::string fstype;   // "cgroup" (v1) or "cgroup2"
  std::string options;  // v1: the controllers and name= that select the hierarchy ("cpu,cpuacct",
                        // "name=systemd"); empty for cgroup2
  bool operator==(const HostCgroupHierarchy&) const = default;
};

// The hierarchies mounted at ROOT/<name> in a mountinfo text, in mountinfo order. Other mounts, deeper
// ones and cgroup mounts elsewhere are ignored.
std::vector<HostCgroupHierarchy> parseHostCgroupHierarchies(std::string_view mountinfo,
                                                            std::string_view root = "/sys/fs/cgroup");

// The host's hierarchies as last read, kept with the mount points under /sys/fs/cgroup they were read
// with. Reading /proc/self/mountinfo costs O(mounts on the host), and every running container adds its
// overlay there (500 containers: ~180 KB, several ms of kernel time per start, the most of what a start
// gained with N); the hierarchies are mounted at boot and stay. Safe from several threads.
class CgroupHierarchyCache {
 public:
  // `mountPoints` names what is mounted directly under /sys/fs/cgroup now (e.g. "memory@42": the name and
  // its mount id, so a remount counts as a change); `readMountinfo` is called only when they differ from
  // those of the kept answer (or nothing is kept), and a failed read keeps nothing.
  Result<std::vector<HostCgroupHierarchy>> hierarchies(
      std::vector<std::string> mountPoints, const std::function<Result<std::string>()>& readMountinfo);

 private:
  std::mutex mutex_;
  std::optional<std::vector<std::string>> mountPoints_;
  std::vector<HostCgroupHierarchy> kept_;
};

// A file the runtime writes into the container's writable layer before it starts (see bundle.cc
// writeEtcFilesFromParent).
struct GeneratedFile {
  std::string path;  // "/etc/hosts"
  std::string content;
  bool operator==(const GeneratedFile&) const = default;
};

// "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback", then the hostname on
// `address` (the container's own IP), or on 127.0.1.1 while it has none.
std::string hostsFileText(std::string_view hostname, const std::optional<std::string>& address);
// "nameserver X" per server, then "search D1 D2" when there are search domains.
std::string resolvConfText(const std::vector<std::string>& nameservers,
                           const std::vector<std::string>& searchDomains = {});

// One mount of an OCI bundle's config.json (corral-runtime), already turned into mount(2)'s terms.
struct BundleMount {
  std::string destination;  // absolute, as the container sees it
  std::string source;       // for binds an absolute host path
  std::string fstype;       // empty for binds; "cgroup" expands to the host's hierarchies (as runc does)
  unsigned long flags = 0;  // MS_*; a bind's other flags are applied by a remount
  unsigned long propagation = 0;
  std::string data;
  bool fileTarget = false;  // a bind of a file: its missing target is created as an empty file
  bool operator==(const BundleMount&) const = default;
};

// An OCI bundle's root (corral-runtime): its directory becomes "/" as it is, with the bundle's own mounts,
// masked and read-only paths in place of corral's overlay, generated /etc files and mount list.
struct BundleRoot {
  std::filesystem::path rootfs;  // absolute
  bool readonly = false;
  unsigned long propagation = MS_REC | MS_PRIVATE;  // linux.rootfsPropagation, applied to "/" first
  std::vector<BundleMount> mounts;
  std::vector<std::string> maskedPaths;
  std::vector<std::string> readonlyPaths;
  bool operator==(const BundleRoot&) const = default;
};

struct MountPlanInput {
  // Set for an OCI bundle: lowerDirs, bundleDir, hostname, ipAddress, nameservers and initBinary are
  // then unused.
  std::optional<BundleRoot> bundleRoot;
  // The overlay's read-only layers, top first (overlayfs's lowerdir order): an image's layer directories,
  // or one root filesystem directory.
  std::vector<std::filesystem::path> lowerDirs;
  std::filesystem::path bundleDir;  // upper/, work/ and rootfs/ live here
  bool userNamespace = false;
  bool ttyGroupMapped = false;  // with a user namespace: gid 5 ("tty", devpts's gid=5) is mapped
  bool cgroup2 = false;         // the host is pure v2: mount the (namespaced) cgroup2 tree read-only
  // Otherwise (v1 or hybrid host): the host's hierarchies, re-mounted read-only from inside the container's
  // cgroup namespace on a tmpfs at /sys/fs/cgroup, as runc does. Ignored with a user namespace, where the
  // kernel refuses v1 cgroup mounts: /sys/fs/cgroup is then an empty read-only tmpfs.
  std::vector<HostCgroupHierarchy> cgroupV1Hierarchies;
  // /etc/hostname and /etc/hosts are always generated; /etc/resolv.conf only with nameservers.
  std::string hostname;
  std::optional<std::string> ipAddress;
  std::vector<std::string> nameservers;
  std::vector<std::string> searchDomains;  // resolv.conf's "search" line (with nameservers only)
  // Device nodes beyond the defaults (defaultDeviceNodes()), already checked (deviceNodeFromHost).
  std::vector<DeviceNode> devices;
  std::string initBinary;  // non-empty: bound read-only (a file) at /dev/init
};

// A device node of the plan and where it goes before pivot_root.
struct PlannedDevice {
  DeviceNode node;
  std::string hostPath;  // "<bundle>/rootfs/dev/null"
};

struct MountPlan {
  std::string rootfs;    // <bundle>/rootfs: the overlay mount point, then the new root
  std::string upperDir;  // <bundle>/upper
  std::string workDir;   // <bundle>/work
  // The overlay's lower directories, top first: the input's layers, or with a user namespace their
  // idmapped mounts (below).
  std::vector<std::string> lowerDirs;
  // With a user namespace, <bundle>/lower/<i>: layer i mounted idmapped through the container's mapping
  // (host 0 reads as the mapped root), one mount per layer, in the order of the input. Empty without.
  std::vector<std::string> idmappedLayers;
  std::string idmappedLayersDir;  // <bundle>/lower, their parent (only with a user namespace)
  // "lowerdir=A:B:...,upperdir=...,workdir=..." for mount(2), which takes one page of options; longer (many
  // layers), the parent mounts with fsopen/fsconfig instead, one "lowerdir+" per layer (bundle.cc).
  std::string overlayData;
  // Directories that must exist in the image (created by the parent in the merged rootfs if missing).
  std::vector<std::string> requiredDirectories;
  MountEntry makePrivate;  // "/" recursively private: nothing we mount propagates to the host
  // The overlay bound onto itself: in a user namespace the child's copy of the parent's overlay mount is
  // locked, and pivot_root refuses a locked new root; a bind made by the child is its own.
  MountEntry bindRootfs;
  std::vector<MountEntry> mounts;  // inside the rootfs, in order
  // Made after the mounts, in the container's own /dev tmpfs: directories (0755) for nested nodes
  // ("/dev/net" for "/dev/net/tun"), then the nodes; mknod(2), or, with a user namespace (which may not
  // mknod), an empty file with the host's node bound onto it.
  std::vector<ContainerPath> deviceDirectories;
  std::vector<PlannedDevice> devices;
  bool bindDevices = false;
  std::vector<SymlinkEntry> symlinks;
  std::vector<ContainerPath> maskedPaths;    // /dev/null over files, an empty read-only tmpfs over dirs
  std::vector<ContainerPath> readOnlyPaths;  // bound onto themselves and remounted read-only
  std::vector<GeneratedFile> etcFiles;       // written into the writable layer by the parent
  std::string nullDevice;                    // the container's own /dev/null, used to mask files
  bool readonlyRoot = false;                 // the new root is remounted read-only last (OCI root.readonly)
};

// Docker's lists (moby oci/defaults.go).
std::vector<std::string> dockerMaskedPaths();
std::vector<std::string> dockerReadOnlyPaths();

// Fails (field "lower_dirs[i]" / "bundle_dir") on relative paths, on characters overlayfs cannot take in
// its options (',', ':', '\n'), on no layers and on more than overlayfs stacks (kMaxLowerDirs).
Result<MountPlan> buildMountPlan(const MountPlanInput& input);
inline constexpr size_t kMaxLowerDirs = 500;  // overlayfs's OVL_MAX_STACK
// The most option text mount(2) passes on: it copies one page, and a longer text would be cut silently.
inline constexpr size_t kMountDataMax = 4095;

// "nosuid,nodev,noexec" for MS_NOSUID|MS_NODEV|MS_NOEXEC; unknown bits as hex.
std::string mountFlagNames(unsigned long flags);
// `mount("proc", "/b/rootfs/proc", "proc", nosuid,nodev,noexec, "")` for error messages.
std::string describeMount(const MountEntry& entry);

// ---- Parent side ----

// Mounts `source` at `target` (an existing directory) as a bind mount idmapped through the mapping of the
// user namespace `userNamespaceFd`: open_tree(OPEN_TREE_CLONE), mount_setattr(MOUNT_ATTR_IDMAP),
// move_mount. Fails naming the call; on failure nothing is mounted.
Status mountIdmappedFromParent(const std::string& source, const std::string& target, int userNamespaceFd);

// ---- Child side: only system calls, no allocation. ----

enum class MountStep : int32_t {
  MakePrivate,
  BindRootfs,
  OpenRootfs,
  CreateTarget,     // index into mounts
  Mount,            // index into mounts
  Remount,          // index into mounts (read-only pass of a bind)
  DeviceDirectory,  // index into deviceDirectories
  MakeDevice,       // index into devices
  Symlink,          // index into symlinks
  MaskPath,         // index into maskedPaths
  ReadOnlyPath,     // index into readOnlyPaths
  Propagation,      // index into mounts
  ReadOnlyRoot,
  PivotRoot,
  UnmountOldRoot,
};
struct MountFailure {
  MountStep step = MountStep::Mount;
  int32_t index = 0;
  int32_t errnum = 0;
};
// The parent's message for a failure record: `pivot_root("/b/rootfs")`, `mount(...)`.
std::string describeMountFailure(const MountPlan& plan, MountStep step, int32_t index);

// Makes "/" private, binds the rootfs onto itself and opens it (O_PATH) into `*rootfsFd`. Run while the
// child is still host uid 0, the owner of the bundle's parent directories, which the mapped root of a user
// namespace may not be allowed to walk (a 0700 parent, say).
bool enterRootfsInChild(const MountPlan& plan, int* rootfsFd, MountFailure* failure);
// Changes into `rootfsFd` and makes plan.mounts, device nodes, symlinks, masked and read-only paths in it,
// each path resolved inside the root (rootfs_path.h: an image's symlinks lead nowhere outside it) and
// mounted onto the resolved fd. Returns false and fills `failure` on the first error.
bool applyMountPlanInChild(const MountPlan& plan, int rootfsFd, MountFailure* failure);
// From inside the rootfs (applyMountPlanInChild's working directory): pivot_root(".", ".");
// umount2(".", MNT_DETACH); chdir("/"). Not chroot: the old root leaves the namespace, so nothing can walk
// back out of it.
bool pivotRootInChild(MountFailure* failure);

}  // namespace corral::container
