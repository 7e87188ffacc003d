// Linux namespaces of a container: which ones a container gets, the uid/gid maps the parent writes into
// a new user namespace, and opening / joining a running container's namespaces for exec.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

// clone(2) flags for a new container: pid, mount, uts, ipc and net (+ user). The cgroup namespace is
// deliberately not among them: the child unshares it after the parent moved it into its cgroup, so the
// namespace's root is the container's cgroup and /proc/self/cgroup reads "/".
int containerCloneFlags(bool userNamespace);

// One line of a uid_map or gid_map: `count` ids from `containerId` inside are `hostId` onwards outside.
struct IdMapRange {
  uint32_t containerId = 0;
  uint32_t hostId = 0;
  uint32_t count = 0;
  bool operator==(const IdMapRange&) const = default;
};

// The kernel's limit on the lines of one map (user_namespaces(7)); runc and crun write OCI maps as given.
inline constexpr size_t kMaxIdMapRanges = 340;

struct HostIds {
  uid_t uid = 0;
  gid_t gid = 0;
};

// A user namespace's two maps, independent of each other. corrald's containers map one range from 0 for
// both (oneRange); an OCI bundle's may have up to kMaxIdMapRanges of each, or be those of a namespace it
// joins (BundleSetup::userNamespacePath), read from the kernel.
struct IdMapping {
  std::vector<IdMapRange> uids, gids;
  static IdMapping oneRange(uint32_t hostId, uint32_t count);
  // The host id a container id maps to; none when no range holds it.
  std::optional<uint32_t> hostUid(uint32_t containerUid) const;
  std::optional<uint32_t> hostGid(uint32_t containerGid) const;
  // Who the container's root is on the host: what the parent's files for it are chowned to. Fails naming
  // the id when uid 0 or gid 0 is unmapped.
  Result<HostIds> hostRoot() const;
  bool operator==(const IdMapping&) const = default;
};

std::optional<uint32_t> mapId(const std::vector<IdMapRange>& ranges, uint32_t id);

// What the kernel refuses in a map, found before writing it: no ranges or more than kMaxIdMapRanges, a count
// of 0, a range running past id 4294967294 (the last valid one), or two ranges overlapping inside or
// outside. `field` names the offending range's member ("size", "containerID", "hostID") or is empty.
struct IdMapProblem {
  size_t index = 0;
  std::string field;
  std::string reason;
};
std::optional<IdMapProblem> findIdMapProblem(const std::vector<IdMapRange>& ranges);

// "0 100000 65536\n" per range: the text of a uid_map / gid_map, written with one write(2).
std::string idMapText(const std::vector<IdMapRange>& ranges);
// The reverse, for /proc/PID/uid_map as the kernel shows it (columns padded with spaces).
Result<std::vector<IdMapRange>> parseIdMapText(std::string_view text);

// Writes /proc/PID/setgroups, then gid_map and uid_map. Fails naming the file. setgroups is "deny" unless
// `allowSetgroups` (the container's user has supplementary groups): host root writes the maps, so "allow"
// is permitted, as runc does; "deny" keeps a container without such groups from dropping the ones it has.
Status writeIdMapsFromParent(pid_t pid, const IdMapping& mapping, bool allowSetgroups = false);

// The maps of an existing user namespace (a path such as "/proc/PID/ns/user", or a bind mount of one), as
// the host sees them: a short-lived process joins it and its /proc/PID/{uid,gid}_map are read.
Result<IdMapping> readUserNamespaceMaps(const std::string& path);

// A user namespace of its own with `mapping`'s maps, held by the returned fd (/proc/PID/ns/user
// of a placeholder process that is gone on return). Used to idmap the image for a container: an idmapped
// mount takes only the mapping from it, so it need not be the container's own namespace, and it must
// exist before the overlay is mounted, that is before the container is cloned.
Result<UniqueFd> openMappedUserNamespace(const IdMapping& mapping);

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
