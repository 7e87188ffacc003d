// Linux namespaces of a container: which ones a container gets, the uid/gid maps the parent writes into
// a new user namespace, and opening / joining a running container's namespaces for exec.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

// clone(2) flags for a new container: pid, mount, uts, ipc and net (+ user). The cgroup namespace is
// deliberately not among them: the child unshares it after the parent moved it into its cgroup, so the
// namespace's root is the container's cgroup and /proc/self/cgroup reads "/".
int containerCloneFlags(bool userNamespace);

// "0 100000 65536\n": container id 0 onwards maps to `hostId` onwards.
std::string idMapLine(uint32_t hostId, uint32_t count);

// Writes /proc/PID/setgroups, then gid_map and uid_map. Fails naming the file. setgroups is "deny" unless
// `allowSetgroups` (the container's user has supplementary groups): host root writes the maps, so "allow"
// is permitted, as runc does; "deny" keeps a container without such groups from dropping the ones it has.
Status writeIdMapsFromParent(pid_t pid, uint32_t hostId, uint32_t count, bool allowSetgroups = false);

// A user namespace of its own with the maps "0 hostId count", held by the returned fd (/proc/PID/ns/user
// of a placeholder process that is gone on return). Used to idmap the image for a container: an idmapped
// mount takes only the mapping from it, so it need not be the container's own namespace, and it must
// exist before the overlay is mounted, that is before the container is cloned.
Result<UniqueFd> openMappedUserNamespace(uint32_t hostId, uint32_t count);

// How far a container's clock is ahead of the host's (OCI linux.timeOffsets; may be negative).
struct ClockOffset {
  int64_t seconds = 0;
  int64_t nanoseconds = 0;  // 0 .. 999999999
  bool operator==(const ClockOffset&) const = default;
};

// The text written to /proc/self/timens_offsets: "monotonic S N\nboottime S N\n", each given clock a line.
std::string timeOffsetsText(const std::optional<ClockOffset>& monotonic,
                            const std::optional<ClockOffset>& boottime);

// Makes the caller's next child be born in a new time namespace with these offsets: unshare(CLONE_NEWTIME)
// sets only the caller's time_for_children (the caller's own clocks stay), and the offsets are written
// before any process is in it, since the kernel freezes them when the first one enters. CLONE_NEWTIME
// cannot be a clone(2) flag (its bit is CSIGNAL's), and with clone3 the child would be in the namespace
// before anyone could write its offsets. Undo with leaveTimeNamespaceFromParent.
Status unshareTimeNamespaceFromParent(const std::optional<ClockOffset>& monotonic,
                                      const std::optional<ClockOffset>& boottime);
// The caller back in its own time namespace `ownTime` (/proc/self/ns/time opened before), for itself and
// its later children (hooks, exec). setns to a time namespace needs a single-threaded caller (EUSERS).
Status leaveTimeNamespaceFromParent(int ownTime);

struct NamespaceFd {
  int type = 0;           // CLONE_NEW*
  const char* name = "";  // "user", "ipc", ... as in /proc/PID/ns/
  UniqueFd fd;
};

// Opens /proc/PID/ns/{time,user,ipc,uts,net,pid,mnt,cgroup} (user only when asked; time only when the
// container's is not ours, as for a container without one of its own), in the order they must be joined:
// time before user (a time namespace belongs to the host's user namespace, where the caller has
// CAP_SYS_ADMIN only before it joins the container's), then user, so the rest are joined with the
// capabilities it grants.
Result<std::vector<NamespaceFd>> openNamespacesFromParent(pid_t pid, bool userNamespace);

// setns(2) on each in order. Returns 0, or the errno with `*failedIndex` set. Does not allocate.
int joinNamespacesInChild(const std::vector<NamespaceFd>& namespaces, size_t* failedIndex);

// In the child, in its new network namespace, with CAP_NET_ADMIN there: sets IFF_UP on "lo"
// (SIOCGIFFLAGS/SIOCSIFFLAGS on an AF_INET socket), so 127.0.0.1 works with or without any other
// interface. Returns 0 or an errno; does not allocate.
int bringUpLoopbackInChild();

}  // namespace corral::container
