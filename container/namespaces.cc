// Namespace flags for new containers, id maps written from the parent, and joining an existing
// container's namespaces by their /proc/PID/ns files.
#include "container/namespaces.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/sched.h>  // struct clone_args
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/rollback.h"

namespace corral::container {
namespace {

Status writeProcFile(const std::string& path, std::string_view content) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  // Id maps must be written with a single write(2).
  ssize_t written = ::write(fd.get(), content.data(), content.size());
  if (written < 0) return fail(systemError(errno, fmt::format("write(\"{}\", \"{}\")", path, content)));
  if (static_cast<size_t>(written) != content.size()) {
    return fail(internalError("write(\"{}\"): short write of {} of {} bytes", path, written, content.size()));
  }
  return {};
}

}  // namespace

int containerCloneFlags(bool userNamespace) {
  int flags = CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
  if (userNamespace) flags |= CLONE_NEWUSER;
  return flags;
}

IdMapping IdMapping::oneRange(uint32_t hostId, uint32_t count) {
  const IdMapRange range{.containerId = 0, .hostId = hostId, .count = count};
  return IdMapping{.uids = {range}, .gids = {range}};
}

std::optional<uint32_t> mapId(const std::vector<IdMapRange>& ranges, uint32_t id) {
  for (const IdMapRange& range : ranges) {
    if (id >= range.containerId && uint64_t{id} < uint64_t{range.containerId} + range.count)
      return range.hostId + (id - range.containerId);
  }
  return std::nullopt;
}

std::optional<uint32_t> IdMapping::hostUid(uint32_t containerUid) const {
  return mapId(uids, containerUid);
}

std::optional<uint32_t> IdMapping::hostGid(uint32_t containerGid) const {
  return mapId(gids, containerGid);
}

Result<HostIds> IdMapping::hostRoot() const {
  auto uid = hostUid(0);
  if (!uid) return fail(invalidField("user_namespace", "user namespace: container uid 0 is not mapped"));
  auto gid = hostGid(0);
  if (!gid) return fail(invalidField("user_namespace", "user namespace: container gid 0 is not mapped"));
  return HostIds{.uid = *uid, .gid = *gid};
}

std::optional<IdMapProblem> findIdMapProblem(const std::vector<IdMapRange>& ranges) {
  if (ranges.empty()) return IdMapProblem{0, "", "no id ranges: a user namespace needs at least one"};
  if (ranges.size() > kMaxIdMapRanges)
    return IdMapProblem{
        kMaxIdMapRanges, "",
        fmt::format("{} id ranges: the kernel takes at most {}", ranges.size(), kMaxIdMapRanges)};
  // (uint32_t)-1 is no id; the kernel refuses a range whose end wraps past it.
  constexpr uint64_t kIdEnd = UINT32_MAX;
  for (size_t i = 0; i < ranges.size(); ++i) {
    const IdMapRange& range = ranges[i];
    if (range.count == 0) return IdMapProblem{i, "size", "must be > 0"};
    for (auto [name, first] : {std::pair{"containerID", range.containerId}, {"hostID", range.hostId}}) {
      if (uint64_t{first} + range.count > kIdEnd)
        return IdMapProblem{
            i, name, fmt::format("{} ids from {} run past the last id {}", range.count, first, kIdEnd - 1)};
    }
    for (size_t j = 0; j < i; ++j) {
      const IdMapRange& other = ranges[j];
      auto overlaps = [&](uint32_t a, uint32_t b) {
        return uint64_t{a} < uint64_t{b} + other.count && uint64_t{b} < uint64_t{a} + range.count;
      };
      if (overlaps(range.containerId, other.containerId))
        return IdMapProblem{i, "containerID",
                            fmt::format("ids {}..{} inside overlap range {}'s {}..{}", range.containerId,
                                        uint64_t{range.containerId} + range.count - 1, j, other.containerId,
                                        uint64_t{other.containerId} + other.count - 1)};
      if (overlaps(range.hostId, other.hostId))
        return IdMapProblem{i, "hostID",
                            fmt::format("host ids {}..{} overlap range {}'s {}..{}", range.hostId,
                                        uint64_t{range.hostId} + range.count - 1, j, other.hostId,
                                        uint64_t{other.hostId} + other.count - 1)};
    }
  }
  return std::nullopt;
}

std::string idMapText(const std::vector<IdMapRange>& ranges) {
  std::string text;
  for (const IdMapRange& range : ranges)
    text += fmt::format("{} {} {}\n", range.containerId, range.hostId, range.count);
  return text;
}

Result<std::vector<IdMapRange>> parseIdMapText(std::string_view text) {
  std::vector<IdMapRange> ranges;
  std::istringstream lines{std::string(text)};
  for (std::string line; std::getline(lines, line);) {
    if (line.find_first_not_of(" \t") == std::string::npos) continue;
    std::istringstream fields(line);
    IdMapRange range;
    if (!(fields >> range.containerId >> range.hostId >> range.count))
      return fail(internalError("id map line \"{}\" is not \"INSIDE OUTSIDE COUNT\"", line));
    ranges.push_back(range);
  }
  return ranges;
}

Status writeIdMapsFromParent(pid_t pid, const IdMapping& mapping, bool allowSetgroups) {
  std::string proc = fmt::format("/proc/{}", pid);
  if (auto ok = writeProcFile(proc + "/setgroups", allowSetgroups ? "allow" : "deny"); !ok) return ok;
  if (auto ok = writeProcFile(proc + "/gid_map", idMapText(mapping.gids)); !ok) return ok;
  return writeProcFile(proc + "/uid_map", idMapText(mapping.uids));
}

Result<IdMapping> readUserNamespaceMaps(const std::string& path) {
  UniqueFd ns(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!ns) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  // The joiner says it is in (or why not) through a pipe, then waits to be killed; its maps are the
  // namespace's, shown in the host's ids.
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2"));
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  clone_args args{};
  args.exit_signal = SIGCHLD;
  pid_t pid = static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
  if (pid < 0) return fail(systemError(errno, "clone3()"));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    int err = ::setns(ns.get(), CLONE_NEWUSER) == 0 ? 0 : errno;
    (void)!::write(writeEnd.get(), &err, sizeof err);
    for (;;) ::pause();
  }
  Rollback reap([pid] {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  });
  writeEnd.reset();
  int err = 0;
  ssize_t got;
  while ((got = ::read(readEnd.get(), &err, sizeof err)) < 0 && errno == EINTR) {
  }
  if (got != static_cast<ssize_t>(sizeof err))
    return fail(internalError("setns(\"{}\"): the joiner died", path));
  if (err != 0) return fail(systemError(err, fmt::format("setns(\"{}\", CLONE_NEWUSER)", path)));
  IdMapping mapping;
  for (auto [name, ranges] : {std::pair{"uid_map", &mapping.uids}, {"gid_map", &mapping.gids}}) {
    const std::string file = fmt::format("/proc/{}/{}", pid, name);
    std::ifstream in(file);
    if (!in) return fail(systemError(errno, fmt::format("open(\"{}\")", file)));
    std::stringstream text;
    text << in.rdbuf();
    auto parsed = parseIdMapText(text.str());
    if (!parsed) return fail(parsed.error().wrap(fmt::format("\"{}\" of \"{}\"", file, path)));
    *ranges = std::move(*parsed);
  }
  return mapping;
}

std::string timeOffsetsText(const std::optional<ClockOffset>& monotonic,
                            const std::optional<ClockOffset>& boottime) {
  std::string text;
  if (monotonic) text += fmt::format("monotonic {} {}\n", monotonic->seconds, monotonic->nanoseconds);
  if (boottime) text += fmt::format("boottime {} {}\n", boottime->seconds, boottime->nanoseconds);
  return text;
}

Status unshareTimeNamespaceFromParent(const std::optional<ClockOffset>& monotonic,
                                      const std::optional<ClockOffset>& boottime) {
  if (::unshare(CLONE_NEWTIME) != 0) {
    if (errno == EINVAL)
      return fail(
          systemError(errno, "unshare(CLONE_NEWTIME): the kernel has no time namespaces (CONFIG_TIME_NS)"));
    return fail(systemError(errno, "unshare(CLONE_NEWTIME)"));
  }
  const std::string text = timeOffsetsText(monotonic, boottime);
  if (text.empty()) return {};
  if (auto ok = writeProcFile("/proc/self/timens_offsets", text); !ok)
    return fail(ok.error().wrap("linux.timeOffsets"));
  return {};
}

Status leaveTimeNamespaceFromParent(int ownTime) {
  if (::setns(ownTime, CLONE_NEWTIME) != 0)
    return fail(
        systemError(errno, "setns(\"/proc/self/ns/time\", CLONE_NEWTIME): back to the runtime's own"));
  return {};
}

Result<UniqueFd> openMappedUserNamespace(const IdMapping& mapping) {
  // A fork-like clone3 (no CLONE_VM): the child runs on a copy of our stack and only waits to be killed.
  clone_args args{};
  args.flags = CLONE_NEWUSER;
  args.exit_signal = SIGCHLD;
  pid_t pid = static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
  if (pid < 0) return fail(systemError(errno, "clone3(CLONE_NEWUSER)"));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    for (;;) ::pause();
  }
  Rollback reap([pid] {
    ::kill(pid, SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  });
  if (auto ok = writeIdMapsFromParent(pid, mapping); !ok) return fail(ok.error());
  std::string path = fmt::format("/proc/{}/ns/user", pid);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  return fd;
}

Result<std::vector<NamespaceFd>> openNamespacesFromParent(pid_t pid, bool userNamespace) {
  struct Kind {
    int type;
    const char* name;
  };
  static constexpr Kind kOrder[] = {
      {CLONE_NEWTIME, "time"}, {CLONE_NEWUSER, "user"}, {CLONE_NEWIPC, "ipc"}, {CLONE_NEWUTS, "uts"},
      {CLONE_NEWNET, "net"},   {CLONE_NEWPID, "pid"},   {CLONE_NEWNS, "mnt"},  {CLONE_NEWCGROUP, "cgroup"}};
  std::vector<NamespaceFd> namespaces;
  for (const Kind& kind : kOrder) {
    if (kind.type == CLONE_NEWUSER && !userNamespace) continue;
    std::string path = fmt::format("/proc/{}/ns/{}", pid, kind.name);
    if (kind.type == CLONE_NEWTIME) {
      // Joining our own would need a single-threaded caller for nothing; a kernel without time
      // namespaces has no such file.
      struct stat theirs {
      }, ours{};
      if (::stat(path.c_str(), &theirs) != 0) {
        if (errno == ENOENT && ::access("/proc/self/ns/time", F_OK) != 0) continue;
        return fail(systemError(errno, fmt::format("stat(\"{}\")", path)));
      }
      if (::stat("/proc/self/ns/time", &ours) == 0 && ours.st_ino == theirs.st_ino &&
          ours.st_dev == theirs.st_dev)
        continue;
    }
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
    namespaces.push_back(NamespaceFd{kind.type, kind.name, std::move(fd)});
  }
  return namespaces;
}

int joinNamespacesInChild(const std::vector<NamespaceFd>& namespaces, size_t* failedIndex) {
  for (size_t i = 0; i < namespaces.size(); ++i) {
    if (::setns(namespaces[i].fd.get(), namespaces[i].type) != 0) {
      *failedIndex = i;
      return errno;
    }
  }
  return 0;
}

int bringUpLoopbackInChild() {
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  ifreq request{};
  std::memcpy(request.ifr_name, "lo", 3);
  int err = 0;
  if (::ioctl(fd, SIOCGIFFLAGS, &request) != 0) {
    err = errno;
  } else if (!(request.ifr_flags & IFF_UP)) {
    request.ifr_flags = static_cast<short>(request.ifr_flags | IFF_UP);
    if (::ioctl(fd, SIOCSIFFLAGS, &request) != 0) err = errno;
  }
  ::close(fd);
  return err;
}

}  // namespace corral::container
