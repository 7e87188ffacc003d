// How the direct engine (vmm/qemu.h) starts a QEMU: a child of corrald's that joins the VM's cgroups, enters
// a mount namespace of its own whose /dev holds only the device nodes QEMU needs, and execs QEMU. The node
// list is pure (unit-tested); spawnConfinedQemu() is the sys side.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace corral::vmm {

// One character device of QEMU's private /dev.
struct DevNode {
  std::string path;  // under /dev
  unsigned major = 0;
  unsigned minor = 0;
  unsigned mode = 0666;  // permission bits
  bool operator==(const DevNode&) const = default;
};

// null, zero, full, random, urandom (glib and QEMU open them), net/tun (a NIC's tap, also one plugged in
// later over QMP) and, when the guest runs under KVM, kvm. Nothing else of the host's /dev: no disks, no
// ptys, no /dev/shm, no /dev/mem.
std::vector<DevNode> qemuDevNodes(bool kvm);

struct QemuSpawn {
  std::vector<std::string> argv;  // argv[0]: a path, or a name looked up in PATH
  std::filesystem::path log;      // stdout and stderr, appended to
  std::vector<DevNode> devNodes;  // the private /dev's nodes
  // cgroup.procs files of the VM's cgroups (one per v1 hierarchy, one on v2), opened by the caller: the
  // child writes "0" to each (itself) before exec, so QEMU's first instruction is accounted there.
  std::vector<int> cgroupProcs;
  // The NIC's tap (opened by the caller), QEMU's fd kTapFd; -1: none.
  int tapFd = -1;
  // The user QEMU runs as, set last before exec; absent: root (corrald's).
  struct User {
    uid_t uid = 0;
    gid_t gid = 0;
    std::vector<gid_t> groups;  // supplementary groups ("kvm" for /dev/kvm)
  };
  std::optional<User> user = std::nullopt;
};

// The fd number QemuSpawn::tapFd has in QEMU (its -netdev tap,fd=).
inline constexpr int kTapFd = 3;

// Forks; the child, using only async-signal-safe calls (corrald is multi-threaded):
//   default signal dispositions, empty mask → setsid (a session of its own) → joins spawn.cgroupProcs →
//   unshare(CLONE_NEWNS) → "/" made a recursive slave (the host's unmounts, such as `ip netns del`, still
//   reach QEMU's copy; QEMU's mounts never reach the host) → a tmpfs on /dev → mknod of each node →
//   stdin /dev/null (the private one), stdout and stderr to the log, the tap at kTapFd → every other fd
//   close-on-exec → setgroups, setgid, setuid (spawn.user; the /dev nodes chowned to it first) → execve.
// A step that fails sends {step, errno, index} over a close-on-exec pipe and exits 127; the parent reaps it
// and returns an error naming the call: `spawn QEMU: mknod("/dev/net/tun", c 10:200): EPERM`. On success the
// pipe closes at execve and the child's pid is returned (the caller's child, to be reaped by it).
Result<pid_t> spawnConfinedQemu(const QemuSpawn& spawn);

}  // namespace corral::vmm
