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
#include <cstring>

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

std::string idMapLine(uint32_t hostId, uint32_t count) {
  return fmt::format("0 {} {}\n", hostId, count);
}

Status writeIdMapsFromParent(pid_t pid, uint32_t hostId, uint32_t count, bool allowSetgroups) {
  std::string proc = fmt::format("/proc/{}", pid);
  if (auto ok = writeProcFile(proc + "/setgroups", allowSetgroups ? "allow" : "deny"); !ok) return ok;
  std::string line = idMapLine(hostId, count);
  if (auto ok = writeProcFile(proc + "/gid_map", line); !ok) return ok;
  return writeProcFile(proc + "/uid_map", line);
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

Result<UniqueFd> openMappedUserNamespace(uint32_t hostId, uint32_t count) {
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
  if (auto ok = writeIdMapsFromParent(pid, hostId, count); !ok) return fail(ok.error());
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
