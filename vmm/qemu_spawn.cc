// QEMU's spawn step (vmm/qemu_spawn.h): the private /dev's node list, and the fork, confinement and exec.
#include "vmm/qemu_spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>

#include "core/unique_fd.h"

extern char** environ;

namespace corral::vmm {

std::vector<DevNode> qemuDevNodes(bool kvm) {
  std::vector<DevNode> nodes = {
      {"null", 1, 3, 0666},   {"zero", 1, 5, 0666},    {"full", 1, 7, 0666},
      {"random", 1, 8, 0666}, {"urandom", 1, 9, 0666}, {"net/tun", 10, 200, 0666},
  };
  if (kvm) nodes.push_back({"kvm", 10, 232, 0660});
  return nodes;
}

namespace {

// The step a spawn child failed at; the parent turns {step, errno, index} into a message naming the call.
enum class SpawnStep : int32_t {
  Signals,
  Session,
  JoinCgroup,  // index into QemuSpawn::cgroupProcs
  MountNamespace,
  MountPropagation,
  MountDev,
  MakeDevDir,   // index into the node list
  MakeDevNode,  // index into the node list
  ChmodDevNode,
  ChownDevNode,
  Stdin,
  Log,
  Tap,
  CloseFds,
  SetGroups,
  SetGid,
  SetUid,
  Execve,
};

struct SpawnFailure {
  SpawnStep step = SpawnStep::Execve;
  int32_t errnum = 0;
  int32_t index = 0;
};

// Everything the child needs, prepared before fork: the child allocates nothing.
struct ChildPlan {
  const char* binary;
  char* const* argv;
  const char* log;
  std::vector<std::string> nodePaths;  // "/dev/null", ...
  std::vector<std::string> nodeDirs;   // "/dev/net" for "net/tun", else ""
  const std::vector<DevNode>* nodes;
  const std::vector<int>* cgroupProcs;
  int tapFd;
  const QemuSpawn::User* user;
  int reportFd;
};

[[noreturn]] void failInChild(int reportFd, SpawnStep step, int errnum, int32_t index = 0) {
  const SpawnFailure failure{step, errnum, index};
  (void)!::write(reportFd, &failure, sizeof(failure));
  ::_exit(127);
}

// The child's steps, in order; async-signal-safe calls only (the parent is multi-threaded).
[[noreturn]] void confineAndExecInChild(const ChildPlan& plan) {
  const int fd = plan.reportFd;
  // corrald's handlers and mask are not QEMU's.
  struct sigaction defaults {};
  defaults.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &defaults, nullptr);  // EINVAL for KILL, STOP: fine
  sigset_t none;
  sigemptyset(&none);
  if (::sigprocmask(SIG_SETMASK, &none, nullptr) != 0) failInChild(fd, SpawnStep::Signals, errno);
  // A session of its own: a terminal's signals to corrald's group do not reach it.
  if (::setsid() < 0) failInChild(fd, SpawnStep::Session, errno);
  for (size_t i = 0; i < plan.cgroupProcs->size(); ++i) {
    if (::write((*plan.cgroupProcs)[i], "0", 1) != 1)
      failInChild(fd, SpawnStep::JoinCgroup, errno, static_cast<int32_t>(i));
  }
  if (::unshare(CLONE_NEWNS) != 0) failInChild(fd, SpawnStep::MountNamespace, errno);
  // Slave, not private: an unmount on the host (a network namespace's bind mount under /run/netns, a
  // container's rootfs) still reaches this copy, which would otherwise hold that namespace or filesystem
  // alive as long as QEMU runs; the tmpfs below never propagates back.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0)
    failInChild(fd, SpawnStep::MountPropagation, errno);
  if (::mount("corral-qemu-dev", "/dev", "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=64k,nr_inodes=64") !=
      0)
    failInChild(fd, SpawnStep::MountDev, errno);
  // mknod rather than bind mounts: the host's nodes are hidden under the tmpfs once it is mounted, and a
  // node is one call where a bind needs a file to mount on and a mount of its own.
  for (size_t i = 0; i < plan.nodes->size(); ++i) {
    const auto& node = (*plan.nodes)[i];
    const int32_t index = static_cast<int32_t>(i);
    if (!plan.nodeDirs[i].empty() && ::mkdir(plan.nodeDirs[i].c_str(), 0755) != 0 && errno != EEXIST)
      failInChild(fd, SpawnStep::MakeDevDir, errno, index);
    if (::mknod(plan.nodePaths[i].c_str(), S_IFCHR | 0600, makedev(node.major, node.minor)) != 0)
      failInChild(fd, SpawnStep::MakeDevNode, errno, index);
    // chmod, not mknod's mode: the umask QEMU inherits stays corrald's.
    if (::chmod(plan.nodePaths[i].c_str(), node.mode) != 0)
      failInChild(fd, SpawnStep::ChmodDevNode, errno, index);
    // A node not open to all (kvm) is the user's group's, as the host gives /dev/kvm to group kvm.
    if (plan.user && (node.mode & 0007) == 0 && ::chown(plan.nodePaths[i].c_str(), 0, plan.user->gid) != 0)
      failInChild(fd, SpawnStep::ChownDevNode, errno, index);
  }
  const int in = ::open("/dev/null", O_RDONLY);
  if (in < 0 || ::dup2(in, 0) < 0) failInChild(fd, SpawnStep::Stdin, errno);
  if (in != 0) ::close(in);
  const int out = ::open(plan.log, O_WRONLY | O_CREAT | O_APPEND, 0600);
  if (out < 0 || ::dup2(out, 1) < 0 || ::dup2(1, 2) < 0) failInChild(fd, SpawnStep::Log, errno);
  if (out > 2) ::close(out);
  if (plan.tapFd >= 0) {
    // dup2 clears close-on-exec on the copy; a tap already at kTapFd keeps the flag, cleared here.
    if (plan.tapFd == kTapFd ? ::fcntl(kTapFd, F_SETFD, 0) != 0 : ::dup2(plan.tapFd, kTapFd) < 0)
      failInChild(fd, SpawnStep::Tap, errno);
  }
  // Nothing else of corrald's goes along, close-on-exec or not: QEMU outlives corrald, and an inherited
  // listening socket or database would outlive it with QEMU. The report pipe closes at execve too.
  const unsigned firstClosed = plan.tapFd >= 0 ? kTapFd + 1 : 3;
  if (::syscall(SYS_close_range, firstClosed, ~0u, CLOSE_RANGE_CLOEXEC) != 0)
    failInChild(fd, SpawnStep::CloseFds, errno);
  // The user last: the namespace, mounts and nodes above need root. Raw system calls: this thread's ids are
  // the process's (the child has one thread), without glibc's all-threads setxid machinery.
  if (plan.user) {
    if (::syscall(SYS_setgroups, plan.user->groups.size(), plan.user->groups.data()) != 0)
      failInChild(fd, SpawnStep::SetGroups, errno);
    if (::syscall(SYS_setresgid, plan.user->gid, plan.user->gid, plan.user->gid) != 0)
      failInChild(fd, SpawnStep::SetGid, errno);
    if (::syscall(SYS_setresuid, plan.user->uid, plan.user->uid, plan.user->uid) != 0)
      failInChild(fd, SpawnStep::SetUid, errno);
  }
  ::execve(plan.binary, plan.argv, environ);
  failInChild(fd, SpawnStep::Execve, errno);
}

std::string describeFailure(const SpawnFailure& failure, const QemuSpawn& spawn, const std::string& binary) {
  auto node = [&]() -> std::string {
    if (failure.index < 0 || static_cast<size_t>(failure.index) >= spawn.devNodes.size()) return "?";
    const auto& n = spawn.devNodes[failure.index];
    return fmt::format("\"/dev/{}\", c {}:{}", n.path, n.major, n.minor);
  };
  switch (failure.step) {
    case SpawnStep::Signals:
      return "sigprocmask";
    case SpawnStep::Session:
      return "setsid";
    case SpawnStep::JoinCgroup:
      return fmt::format("write(cgroup.procs #{}, \"0\")", failure.index);
    case SpawnStep::MountNamespace:
      return "unshare(CLONE_NEWNS)";
    case SpawnStep::MountPropagation:
      return "mount(\"/\", MS_REC|MS_SLAVE)";
    case SpawnStep::MountDev:
      return "mount(\"tmpfs\", \"/dev\")";
    case SpawnStep::MakeDevDir:
      return fmt::format("mkdir(directory of {})", node());
    case SpawnStep::MakeDevNode:
      return fmt::format("mknod({})", node());
    case SpawnStep::ChmodDevNode:
      return fmt::format("chmod({})", node());
    case SpawnStep::ChownDevNode:
      return fmt::format("chown({})", node());
    case SpawnStep::Tap:
      return fmt::format("dup2(tap, {})", kTapFd);
    case SpawnStep::SetGroups:
      return "setgroups";
    case SpawnStep::SetGid:
      return fmt::format("setresgid({})", spawn.user ? spawn.user->gid : 0);
    case SpawnStep::SetUid:
      return fmt::format("setresuid({})", spawn.user ? spawn.user->uid : 0);
    case SpawnStep::Stdin:
      return "open(\"/dev/null\") as stdin";
    case SpawnStep::Log:
      return fmt::format("open(\"{}\") as stdout and stderr", spawn.log.string());
    case SpawnStep::CloseFds:
      return "close_range(3, ~0, CLOSE_RANGE_CLOEXEC)";
    case SpawnStep::Execve:
      return fmt::format("execve(\"{}\")", binary);
  }
  return "?";
}

// argv[0] as execve wants it: a name without a slash is looked up in PATH here, before fork (execvp is not
// async-signal-safe).
Result<std::string> resolveBinary(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (!dirs.empty()) {
    const size_t colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    dirs = colon == std::string_view::npos ? std::string_view() : dirs.substr(colon + 1);
    if (dir.empty()) continue;
    std::string candidate = fmt::format("{}/{}", dir, name);
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return fail(systemError(ENOENT, fmt::format("\"{}\" in PATH", name)));
}

}  // namespace

Result<pid_t> spawnConfinedQemu(const QemuSpawn& spawn) {
  if (spawn.argv.empty()) return fail(internalError("spawn QEMU: no command line"));
  auto binary = resolveBinary(spawn.argv[0]);
  if (!binary) return fail(binary.error().wrap("spawn QEMU"));
  std::vector<char*> args;
  for (const auto& arg : spawn.argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  ChildPlan plan{.binary = binary->c_str(),
                 .argv = args.data(),
                 .log = spawn.log.c_str(),
                 .nodePaths = {},
                 .nodeDirs = {},
                 .nodes = &spawn.devNodes,
                 .cgroupProcs = &spawn.cgroupProcs,
                 .tapFd = spawn.tapFd,
                 .user = spawn.user ? &*spawn.user : nullptr,
                 .reportFd = -1};
  for (const auto& node : spawn.devNodes) {
    plan.nodePaths.push_back("/dev/" + node.path);
    const size_t slash = node.path.rfind('/');
    plan.nodeDirs.push_back(slash == std::string::npos ? "" : "/dev/" + node.path.substr(0, slash));
  }
  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return fail(systemError(errno, "spawn QEMU: pipe2"));
  UniqueFd reportRead(report[0]), reportWrite(report[1]);
  // Above kTapFd, which the child's dup2 of the tap would otherwise overwrite.
  reportWrite = UniqueFd(::fcntl(report[1], F_DUPFD_CLOEXEC, 10));
  if (!reportWrite) return fail(systemError(errno, "spawn QEMU: fcntl(F_DUPFD_CLOEXEC)"));
  plan.reportFd = reportWrite.get();
  const pid_t pid = ::fork();
  if (pid < 0) return fail(systemError(errno, "spawn QEMU: fork"));
  if (pid == 0) confineAndExecInChild(plan);
  reportWrite.reset();
  // EOF: execve closed the pipe (QEMU runs), or the child died of a signal before it (the caller's wait for
  // QEMU's monitor then finds it gone).
  SpawnFailure failure;
  ssize_t n;
  while ((n = ::read(reportRead.get(), &failure, sizeof(failure))) < 0 && errno == EINTR) {
  }
  if (n == 0) return pid;
  while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
  }
  if (n != static_cast<ssize_t>(sizeof(failure)))
    return fail(internalError("spawn QEMU: a short report from its child ({} bytes)", n));
  return fail(
      systemError(failure.errnum, fmt::format("spawn QEMU: {}", describeFailure(failure, spawn, *binary))));
}

}  // namespace corral::vmm
