// Starting a container: clone into new namespaces, hand it its cgroup, network and id maps from the
// parent, then in the child mounts → pivot_root → hostname → capabilities → no_new_privs → seccomp →
// execve. Also joining a running container (exec) and stopping one.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "container/cgroup.h"
#include "container/console.h"
#include "container/devices.h"
#include "container/mounts.h"
#include "container/namespaces.h"
#include "container/seccomp.h"
#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

// The ids a container's command runs as, as the container sees them (inside its user namespace, if any).
struct ProcessUser {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> additionalGids;  // supplementary groups
  bool operator==(const ProcessUser&) const = default;
};

// The five capability sets of an OCI process, as names ("CAP_CHOWN").
struct CapabilitySets {
  std::vector<std::string> bounding, effective, permitted, inheritable, ambient;
  bool operator==(const CapabilitySets&) const = default;
};

struct NamespacePath {
  int type = 0;      // CLONE_NEW*
  std::string path;  // "/proc/42/ns/net", "/run/netns/x": joined with setns(2)
  bool operator==(const NamespacePath&) const = default;
};

struct ProcessRlimit {
  int resource = 0;  // RLIMIT_*
  uint64_t soft = 0, hard = 0;
  std::string name;  // "RLIMIT_NOFILE", for messages
  bool operator==(const ProcessRlimit&) const = default;
};

struct Sysctl {
  std::string key;       // "net.ipv4.ip_forward"
  std::string procPath;  // "/proc/sys/net/ipv4/ip_forward"
  std::string value;
  bool operator==(const Sysctl&) const = default;
};

// What an OCI bundle sets beyond corrald's own containers (corral-runtime; container/oci_config.h fills
// it). With it the root is the bundle's directory with the bundle's mounts, the namespaces are those the
// bundle lists, and `capabilities` of ContainerConfig is unused (the five sets below rule).
struct BundleSetup {
  BundleRoot root;
  int cloneFlags = 0;            // CLONE_NEW* created at clone (the mount namespace unless joined)
  bool cgroupNamespace = false;  // unshared by the child once it is in its cgroup
  // An existing user namespace (linux.namespaces "user" with a path): joined first, by an intermediate
  // process that then clones init with cloneFlags, so every new namespace belongs to it (as runc and crun
  // order it). Its maps exist: ContainerConfig::userNamespace holds them as read (checkBundleOnHost), and
  // none are written.
  std::string userNamespacePath;
  // Joined by the child right after "go", before any mount (a mount namespace too: the container's mounts
  // and pivot_root are then made in it, as runc does).
  std::vector<NamespacePath> joins;
  // An existing pid namespace: entered by the parent (setns, for its children) around the clone, since a
  // process cannot change its own.
  std::string pidNamespacePath;
  // A time namespace of its own, its offsets written before the clone (unshareTimeNamespaceFromParent); or
  // an existing one by path, entered by the parent around the clone as for pid (a process joining it
  // itself would need CAP_SYS_ADMIN in the host's user namespace, which a new user namespace's lacks).
  bool newTimeNamespace = false;
  std::optional<ClockOffset> monotonicOffset, boottimeOffset;
  std::string timeNamespacePath;
  bool setHostname = false;  // a new uts namespace and a hostname given
  std::string domainname;
  std::vector<Sysctl> sysctls;         // written by the child in its new namespaces, before its mounts
  std::vector<ProcessRlimit> rlimits;  // set by the parent (prlimit) before "go"
  std::optional<int> oomScoreAdj;      // written by the parent before "go"
  std::optional<mode_t> umask;
  bool noNewPrivileges = false;
  CapabilitySets capabilities;
  // Non-empty: init, fully set up, waits by opening this FIFO for writing until `start` opens it for
  // reading (runc's exec fifo); startContainer returns once init waits there.
  std::filesystem::path execFifo;
  // The cgroup's device allow list (linux.resources.devices after runc's default list); `devices` of
  // ContainerConfig (linux.devices) get nodes only, as in runc.
  std::vector<DeviceRule> deviceRules;
  int preserveFds = 0;  // the starter's fds 3 .. 3+N-1 stay open in the process (--preserve-fds)
  bool operator==(const BundleSetup&) const = default;
};

// Everything the runtime needs, already validated by the caller (the daemon's spec validation).
struct ContainerConfig {
  std::string name;  // also the cgroup name and the default hostname
  // The root's read-only layers, top first (overlayfs's lowerdir order): an image's layer directories, or
  // one root filesystem directory. Each is idmapped on its own with a user namespace.
  std::vector<std::filesystem::path> lowerDirs;
  std::filesystem::path bundleDir;  // per-container: upper/, work/, rootfs/ (the overlay mount point)
  std::vector<std::string> argv;    // argv[0] resolved inside the container's PATH
  std::vector<std::string> env;     // "K=V"; the runtime adds container=corral and a default PATH
  std::string hostname;
  // /etc/hostname and /etc/hosts are generated for every container (written into its writable layer);
  // hosts puts the hostname on this address once networking assigns one, on 127.0.1.1 until then.
  std::optional<std::string> ipAddress;
  // Written to /etc/resolv.conf as "nameserver X" lines; when empty the image's resolv.conf (if any) stays.
  std::vector<std::string> nameservers;
  std::vector<std::string> searchDomains;  // its "search" line, with nameservers only
  std::string workingDir = "/";  // created (0755, the container root's) when missing, as docker does
  // Init and exec'd processes switch to these ids after the mounts; a user other than root ends with no
  // capabilities at execve (the kernel's rule for a non-root uid without ambient or file capabilities).
  ProcessUser user;
  ResourceLimits limits;
  // Host devices given to the container (`--device`) beyond the defaults every container has; each gets
  // its node in /dev and its rule in the cgroup's allow list. Every other device stays closed.
  std::vector<DeviceNode> devices;
  std::vector<std::string> capabilities;  // the final set (see caps.h)
  SeccompProfile seccomp;
  // Set: the container has a user namespace, with these maps: written by the parent into a new one, or
  // those of the one an OCI bundle joins (BundleSetup::userNamespacePath). The container's root is
  // hostRoot() on the host: what the parent creates for it is chowned there.
  std::optional<IdMapping> userNamespace;
  CgroupOptions cgroupOptions;
  // Non-empty: this host binary (corral-reaper) is bound read-only at kInitPath and runs as PID 1 with
  // "--" and argv after it; it forwards signals to the command and reaps orphans.
  std::filesystem::path initBinary;
  // Set for an OCI bundle (corral-runtime); lowerDirs, bundleDir, ipAddress, nameservers and initBinary
  // are then unused.
  std::optional<BundleSetup> bundle;
  // Set: init gets a terminal (console.h), its master is RunningContainer::takeConsole()'s.
  std::optional<ConsoleSize> console;
};

inline constexpr const char* kInitPath = "/dev/init";  // where --init's reaper appears (as in Podman)

// How long each step took, for the instance's boot record (API request → ready is the daemon's job).
struct StartTimings {
  std::chrono::microseconds clone{0}, cgroup{0}, rootfs{0}, network{0}, exec{0};
};

struct Stdio {
  int in = -1;   // -1: /dev/null
  int out = -1;  // -1: /dev/null
  int err = -1;  // -1: same as out
};

// Runs in the parent after the child exists (its namespaces too) and before it may continue: the place
// to move a veth into its network namespace. The child's pid is given.
using ParentHook = std::function<Status(pid_t)>;

class RunningContainer {
 public:
  pid_t pid() const { return pid_; }
  int pidfd() const { return pidfd_.get(); }  // pidfd_open(2): pollable for exit
  Cgroup& cgroup() { return *cgroup_; }
  const StartTimings& timings() const { return timings_; }
  // The pty master of a container started with a console (invalid otherwise, or once taken).
  UniqueFd takeConsole() { return std::move(console_); }
  // Hands the child over to its caller's supervision: destruction no longer kills it or removes its
  // cgroup and bundle mounts.
  void release();
  ~RunningContainer();
  RunningContainer(RunningContainer&&) noexcept = default;

 private:
  friend Result<RunningContainer> startContainer(const ContainerConfig&, const Stdio&, const ParentHook&,
                                                 const ParentHook&);
  RunningContainer() = default;
  pid_t pid_ = -1;
  UniqueFd pidfd_;
  std::unique_ptr<Cgroup> cgroup_;
  std::filesystem::path bundleDir_;  // removed with removeBundle() on destruction unless released
  StartTimings timings_;
  UniqueFd console_;
  bool released_ = false;
};

// Returns once the child has called execve on the user's command (the close-on-exec sync socket closes),
// or an error from the step that failed, e.g. `pivot_root("/var/lib/corral/.../rootfs"): EINVAL`; on
// error nothing is left behind (process, cgroup, overlay mount). `beforePivotRoot`, if set, runs once the
// child has made its mounts and waits before pivot_root (OCI createContainer hooks: in the container's
// mount namespace, with the host's root still reachable).
Result<RunningContainer> startContainer(const ContainerConfig& config, const Stdio& stdio,
                                        const ParentHook& beforeStart = {},
                                        const ParentHook& beforePivotRoot = {});

struct ExecOptions {
  std::vector<std::string> argv;
  std::vector<std::string> env;
  Stdio stdio;
};
// What corral-runtime's exec sets beyond ExecOptions.
struct ExecExtras {
  // Set: the process gets a terminal of the container's devpts; its master is stored in *consoleMaster.
  std::optional<ConsoleSize> console;
  UniqueFd* consoleMaster = nullptr;
  // The process's working directory instead of the container's (absolute).
  std::optional<std::string> workingDir;
  int preserveFds = 0;  // fds 3 .. 3+N-1 of the caller stay open in the process
};
// Joins the container whose init is `initPid`: all its namespaces and its cgroup, then the same
// capabilities, no_new_privs and seccomp, then execve. Returns the new process's pid (a child of the caller).
Result<pid_t> execInContainer(pid_t initPid, Cgroup& cgroup, const ContainerConfig& config,
                              const ExecOptions& options);
Result<pid_t> execInContainer(pid_t initPid, Cgroup& cgroup, const ContainerConfig& config,
                              const ExecOptions& options, const ExecExtras& extras);

// Removes the overlay mount and the bundle directory (after the container has exited).
Status removeBundle(const std::filesystem::path& bundleDir);
// The fast half of a removal: unmounts what removeBundle would, then renames the bundle to `aside` (on the
// same file system: one rename), so its name is free at once; removeBundle(aside) deletes the files later.
// False when nothing was set aside: there was no bundle, or `aside` is on another file system (then the
// bundle is deleted at once, as removeBundle does).
Result<bool> moveBundleAside(const std::filesystem::path& bundleDir, const std::filesystem::path& aside);

}  // namespace corral::container
