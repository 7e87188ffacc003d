// The container's child processes, from clone to execve, and the parent's helpers for launching them.
#include "container/child.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/sched.h>  // struct clone_args, CLONE_INTO_CGROUP
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <system_error>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#endif

#include "container/caps.h"
#include "container/console.h"

namespace corral::container {
namespace {

// A failure once `start` may have released init: told to `start` through the exec fifo as well.
[[noreturn]] void failAfterStartInChild(int startedFifo, int syncFd, ChildStep step, int err) {
  if (startedFifo >= 0) childFailAfterStart(startedFifo, syncFd, step, err);
  childFail(syncFd, step, err);
}

constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

}  // namespace

// A child of clone() with a stack of its own is, to AddressSanitizer, still the thread it was copied from,
// with that thread's stack bounds. At the child's first noreturn call (childFail, the exec) the runtime's
// __asan_handle_no_return measured a "stack" from there to the thread's stack top, hundreds of GiB, and
// printed a warning instead. With log_path set (scripts/test-sanitized), a container's init, pid 1 after
// pivot_root, could not open its log file ("asan.1") there; the runtime died by abort(), which an init
// ignores, and its deadly-signal handler waited for the report lock in sched_yield for ever: the container
// spun at full CPU before execve. The fiber-switch interface is how a program says it now runs on another
// stack; a fork-like clone3 (a copy of the caller's stack) needs nothing.
void ChildStack::adoptInChild() const {
#if defined(__SANITIZE_ADDRESS__)
  __sanitizer_start_switch_fiber(nullptr, base_, kChildStackSize);
  __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr);
#endif
}

// Moves the calling process into the container's group of each v1 hierarchy, through `tasks` files the
// parent opened: "0" there is the calling thread alone, which the kernel migrates without taking the global
// threadgroup lock (see CgroupJoin). Only correct while the caller is single-threaded, as a fresh clone
// is. The files are closed after use: the rest of the setup has no business with host cgroup files.
void joinCgroupInChild(int syncFd, const std::vector<int>& taskFds) {
  for (size_t i = 0; i < taskFds.size(); ++i) {
    ssize_t n;
    do {
      n = ::write(taskFds[i], "0", 1);
    } while (n < 0 && errno == EINTR);
    if (n != 1) childFail(syncFd, ChildStep::JoinCgroup, n < 0 ? errno : EIO, static_cast<int32_t>(i));
    ::close(taskFds[i]);
  }
}

// Environment: the caller's, then container=corral (always ours) and a default PATH if none was given.
ExecImage prepareExecImage(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  ExecImage image;
  image.argvStorage = argv;
  std::string path;
  for (const auto& entry : env) {
    if (entry.starts_with("container=")) continue;
    if (entry.starts_with("PATH=")) path = entry.substr(5);
    image.envStorage.push_back(entry);
  }
  image.envStorage.push_back("container=corral");
  if (path.empty() && std::none_of(env.begin(), env.end(), [](auto& e) { return e.starts_with("PATH="); })) {
    image.envStorage.push_back(kDefaultPath);
    path = std::string(kDefaultPath).substr(5);
  }
  // Resolve argv[0] like execvpe, but with the candidate list built here: the child only tries them.
  const std::string& command = argv.front();
  if (command.find('/') != std::string::npos) {
    image.candidates.push_back(command);
  } else {
    size_t begin = 0;
    while (begin <= path.size()) {
      size_t end = path.find(':', begin);
      if (end == std::string::npos) end = path.size();
      std::string dir = path.substr(begin, end - begin);
      image.candidates.push_back((dir.empty() ? std::string(".") : dir) + "/" + command);
      begin = end + 1;
    }
  }
  for (const auto& arg : image.argvStorage) image.argv.push_back(arg.c_str());
  image.argv.push_back(nullptr);
  for (const auto& entry : image.envStorage) image.envp.push_back(entry.c_str());
  image.envp.push_back(nullptr);
  return image;
}

// The container's environment with the exec's own entries replacing those with the same key.
std::vector<std::string> mergeEnvironment(const std::vector<std::string>& base,
                                          const std::vector<std::string>& overrides) {
  auto key = [](const std::string& entry) { return std::string_view(entry).substr(0, entry.find('=')); };
  std::vector<std::string> merged;
  for (const auto& entry : base) {
    bool replaced =
        std::any_of(overrides.begin(), overrides.end(), [&](auto& o) { return key(o) == key(entry); });
    if (!replaced) merged.push_back(entry);
  }
  merged.insert(merged.end(), overrides.begin(), overrides.end());
  return merged;
}

// What PID 1 runs: the command, or with --init the reaper in front of it.
std::vector<std::string> initArgv(const ContainerConfig& config) {
  if (config.initBinary.empty()) return config.argv;
  std::vector<std::string> argv = {kInitPath, "--"};
  argv.insert(argv.end(), config.argv.begin(), config.argv.end());
  return argv;
}

Status validateCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env) {
  if (argv.empty() || argv.front().empty()) return fail(invalidField("argv", "argv: a command is required"));
  for (size_t i = 0; i < env.size(); ++i) {
    if (env[i].find('=') == std::string::npos || env[i].front() == '=') {
      return fail(invalidField("env", "env[{}]: \"{}\" is not KEY=VALUE", i, env[i]));
    }
  }
  return {};
}

// Tries each candidate path; returns the most telling errno (as execvpe: EACCES beats ENOENT).
int execCandidatesInChild(const ExecImage& image) {
  int result = ENOENT;
  for (const auto& candidate : image.candidates) {
    ::execve(candidate.c_str(), const_cast<char* const*>(image.argv.data()),
             const_cast<char* const*>(image.envp.data()));
    if (errno == EACCES) {
      result = EACCES;
    } else if (errno != ENOENT && errno != ENOTDIR) {
      return errno;
    }
  }
  return result;
}

// Moves the three stdio fds into place. The sources are first duplicated above 2 so one may safely be
// another's target (e.g. out=0).
int setupStdioInChild(const int (&sources)[3]) {
  int high[3];
  for (int i = 0; i < 3; ++i) {
    high[i] = ::fcntl(sources[i], F_DUPFD_CLOEXEC, 3);
    if (high[i] < 0) return errno;
  }
  for (int i = 0; i < 3; ++i) {
    if (::dup2(high[i], i) < 0) return errno;  // dup2 clears close-on-exec on the target
    ::close(high[i]);
  }
  return 0;
}

// Switches to the configured ids, keeping the capabilities across a change from root (PR_SET_KEEPCAPS;
// the effective set, which setresuid clears anyway, is raised back from the permitted one) so that the
// bounding and capability sets are then dropped as for root; execve of a non-root uid ends with none.
// Raw system calls, as in clearGroupsInChild. Supplementary groups only when there are some: in a user
// namespace setgroups(2) works only when the parent wrote "allow" (it does then).
int setUserInChild(const ProcessUser& user) {
  if (user.uid == 0 && user.gid == 0 && user.additionalGids.empty()) return 0;
  if (!user.additionalGids.empty() &&
      ::syscall(SYS_setgroups, user.additionalGids.size(), user.additionalGids.data()) != 0)
    return errno;
  if (::syscall(SYS_setresgid, user.gid, user.gid, user.gid) != 0) return errno;
  if (user.uid == 0) return 0;
  if (::prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0) return errno;
  if (::syscall(SYS_setresuid, user.uid, user.uid, user.uid) != 0) return errno;
  if (::prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) != 0) return errno;
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) return errno;
  for (auto& word : data) word.effective = word.permitted;
  if (::syscall(SYS_capset, &header, data) != 0) return errno;
  return 0;
}

// mkdir -p of the working directory, inside the container (after pivot_root, so an image's symlink on
// the way resolves in the container's root). No allocation: the path is copied into a stack buffer.
int makeWorkingDirectoryInChild(const std::string& path) {
  char buffer[PATH_MAX];
  if (path.size() >= sizeof buffer) return ENAMETOOLONG;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i < path.size() && path[i] != '/') continue;
    path.copy(buffer, i);
    buffer[i] = '\0';
    if (::mkdir(buffer, 0755) != 0 && errno != EEXIST) return errno;
  }
  return 0;
}

[[noreturn]] void lockDownAndExecInChild(const LockdownInput& given) {
  LockdownInput in = given;
  if (in.console != nullptr) {
    int peer = -1, failedCall = 0;
    if (int err = openConsoleInChild(in.syncFd, *in.console, in.bindDevConsole, &peer, &failedCall))
      childFail(in.syncFd, ChildStep::Console, err, failedCall);
    in.stdio[0] = in.stdio[1] = in.stdio[2] = peer;
  }
  if (int err = setupStdioInChild(in.stdio)) childFail(in.syncFd, ChildStep::Stdio, err);
  // Without no_new_privs only CAP_SYS_ADMIN may load a filter: then it is loaded now, before the ids and
  // capabilities change (runc's order; the profile must allow the calls that follow, as with runc).
  const bool seccompEarly = in.seccomp != nullptr && !in.noNewPrivileges;
  if (seccompEarly) {
    if (int err = in.seccomp->loadInChild()) childFail(in.syncFd, ChildStep::Seccomp, err);
  }
  if (int err = setUserInChild(*in.user)) childFail(in.syncFd, ChildStep::SetUser, err);
  if (in.capabilitySets != nullptr) {
    if (int err = applyCapabilitySetsInChild(*in.capabilitySets))
      childFail(in.syncFd, ChildStep::DropCapabilities, err);
  } else if (int err = dropCapabilitiesInChild(*in.capabilities)) {
    childFail(in.syncFd, ChildStep::DropCapabilities, err);
  }
  if (in.noNewPrivileges && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
    childFail(in.syncFd, ChildStep::NoNewPrivs, errno);
  if (in.umask >= 0) ::umask(static_cast<mode_t>(in.umask));
  int startedFifo = -1;  // the exec fifo once `start` opened it (bundles only)
  // The daemon's own fds (sockets, databases) must not leak into the container: close them at execve.
  // Preserved fds (runc's --preserve-fds, LISTEN_FDS) are passed on: their close-on-exec is cleared.
  for (int preserved = 3; preserved < 3 + in.preserveFds; ++preserved) {
    if (preserved == in.syncFd) continue;
    int flags = ::fcntl(preserved, F_GETFD);
    if (flags >= 0) ::fcntl(preserved, F_SETFD, flags & ~FD_CLOEXEC);
  }
  if (::syscall(SYS_close_range, static_cast<unsigned>(3 + in.preserveFds), ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    childFail(in.syncFd, ChildStep::CloseFds, errno);
  }
  // Set up to survive its starter from here on (the daemon supervises it by pidfd and cgroup).
  ::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  if (in.execFifoPath != nullptr) {
    // After start nobody hears a failure: a command that cannot be found fails create instead (runc looks
    // it up before waiting too).
    bool found = false;
    for (const auto& candidate : in.image->candidates)
      found = found || ::access(candidate.c_str(), X_OK) == 0;
    if (!found) childFail(in.syncFd, ChildStep::Execve, ENOENT);
    // Fully set up: say so (the starter returns from `create` and leaves), then block until `start`
    // opens the fifo for reading. Seccomp comes after, so the profile need not allow this open.
    SyncRecord waiting;
    waiting.kind = RecordKind::WaitingForStart;
    sendRecord(in.syncFd, waiting);
    // Kept open (close-on-exec) after the byte: a failure from here on is written to it for `start` to
    // report, and its closing at execve says that the command runs.
    startedFifo = ::open(in.execFifoPath, O_WRONLY | O_CLOEXEC);
    if (startedFifo < 0 || ::write(startedFifo, "0", 1) != 1)
      childFail(in.syncFd, ChildStep::ExecFifo, errno);
  }
  if (in.seccomp != nullptr && !seccompEarly) {
    if (int err = in.seccomp->loadInChild())
      failAfterStartInChild(startedFifo, in.syncFd, ChildStep::Seccomp, err);
  }
  SyncRecord execing;
  execing.kind = RecordKind::Execing;
  sendRecord(in.syncFd, execing);
  failAfterStartInChild(startedFifo, in.syncFd, ChildStep::Execve, execCandidatesInChild(*in.image));
}

// A clone()d child of the multi-threaded daemon still carries glibc's list of the parent's threads, and
// glibc's setgroups/setres*id wrappers broadcast the change to every thread on that list and wait for
// each to acknowledge (nptl's setxid): a thread that was starting or exiting at clone time never does, and
// the child hangs. The raw system calls change the calling thread, which is the whole child process.
int clearGroupsInChild() {
  return static_cast<int>(::syscall(SYS_setgroups, 0, nullptr));
}
int becomeRootInChild() {
  if (::syscall(SYS_setresgid, 0, 0, 0) != 0) return -1;
  return static_cast<int>(::syscall(SYS_setresuid, 0, 0, 0));
}

// The container's init, from clone() to execve. It is already in its new user (if any), pid, mount,
// uts, ipc and net namespaces (and, on v2, in its cgroup). Order (STYLE.md): wait for "go" (id maps and
// network are done) → join the v1 cgroups → private "/" + rootfs bind → become root of the user ns → cgroup
// ns → mounts → pivot_root → hostname → loopback up → stdio → capabilities → no_new_privs → seccomp →
// execve. Only system calls here: the address space is a copy of a possibly multithreaded parent, so
// malloc's locks may be held.
int containerInitMain(void* arg) {
  const InitChildContext& ctx = *static_cast<const InitChildContext*>(arg);
  if (ctx.stack != nullptr) ctx.stack->adoptInChild();
  const int fd = ctx.syncFd;
  // If the starter dies before "go", so do we (cleared again right before execve). The death signal does
  // not always reach a pid namespace's init when the whole daemon is SIGKILLed (seen on 6.18: the child
  // lived on, outside its v1 cgroups, holding the daemon's sockets), so the sync socket says it too: with
  // our copy of the parent's end closed, the parent's death reads as EOF in waitForGoInChild.
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (ctx.parentSyncFd >= 0) ::close(ctx.parentSyncFd);
  waitForGoInChild(fd);
  if (!ctx.cgroupTaskFds.empty()) {
    joinCgroupInChild(fd, ctx.cgroupTaskFds);
    SyncRecord joined;
    joined.kind = RecordKind::CgroupJoined;
    sendRecord(fd, joined);
  }
  if (ctx.bundle != nullptr) {
    // Existing namespaces first, so the sysctls below land in the namespaces the container ends up in.
    for (size_t i = 0; i < ctx.joinFds.size(); ++i) {
      if (::setns(ctx.joinFds[i], ctx.bundle->joins[i].type) != 0)
        childFail(fd, ChildStep::JoinNamespacePath, errno, static_cast<int32_t>(i));
      ::close(ctx.joinFds[i]);
    }
    // Through the host's /proc, still mounted here: a namespaced sysctl file acts on the writer's
    // namespace (the validation allowed only namespaced keys, each with its namespace new or joined).
    for (size_t i = 0; i < ctx.bundle->sysctls.size(); ++i) {
      const Sysctl& sysctl = ctx.bundle->sysctls[i];
      int file = ::open(sysctl.procPath.c_str(), O_WRONLY | O_CLOEXEC);
      if (file < 0 || ::write(file, sysctl.value.data(), sysctl.value.size()) < 0)
        childFail(fd, ChildStep::Sysctl, errno, static_cast<int32_t>(i));
      ::close(file);
    }
  }

  // Still host uid 0 here, the owner of the bundle's parent directories (see enterRootfsInChild).
  int rootfsFd = -1;
  MountFailure mountFailure;
  if (ctx.overlayFd >= 0) {
    // The plan's first step, taken early: under a shared "/" the attached overlay would propagate back
    // into the starter's namespace, which it was detached from (detachOverlayFromParent).
    const MountEntry& priv = ctx.plan->makePrivate;
    if (::mount(nullptr, priv.hostTarget.c_str(), nullptr, priv.flags, nullptr) != 0)
      childFail(fd, ChildStep::Mounts, errno, 0, MountStep::MakePrivate);
    if (::move_mount(ctx.overlayFd, "", AT_FDCWD, ctx.plan->rootfs.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
      childFail(fd, ChildStep::AttachOverlay, errno);
    ::close(ctx.overlayFd);
  }
  if (!enterRootfsInChild(*ctx.plan, &rootfsFd, &mountFailure)) {
    childFail(fd, ChildStep::Mounts, mountFailure.errnum, mountFailure.index, mountFailure.step);
  }

  if (ctx.userNamespace) {
    // Our ids were unmapped until the parent wrote the maps; become the namespace's root (the capabilities
    // from clone(CLONE_NEWUSER) are kept: we move onto the namespace's root uid, not away from it).
    if (becomeRootInChild() != 0) childFail(fd, ChildStep::SetIds, errno);
  } else if (clearGroupsInChild() != 0) {  // the daemon's supplementary groups are not the container's
    childFail(fd, ChildStep::ClearGroups, errno);
  }

  // Now that we are in the container's cgroup, that cgroup becomes our namespace's root.
  if (ctx.unshareCgroup && ::unshare(CLONE_NEWCGROUP) != 0) childFail(fd, ChildStep::CgroupNamespace, errno);

  if (!applyMountPlanInChild(*ctx.plan, rootfsFd, &mountFailure))
    childFail(fd, ChildStep::Mounts, mountFailure.errnum, mountFailure.index, mountFailure.step);
  if (ctx.waitBeforePivotRoot) {  // the parent runs createContainer hooks in our mount namespace now
    SyncRecord mounted;
    mounted.kind = RecordKind::MountsReady;
    sendRecord(fd, mounted);
    waitForGoInChild(fd);
  }
  if (!pivotRootInChild(&mountFailure))
    childFail(fd, ChildStep::Mounts, mountFailure.errnum, mountFailure.index, mountFailure.step);
  ::close(rootfsFd);
  SyncRecord ready;
  ready.kind = RecordKind::RootfsReady;
  sendRecord(fd, ready);

  if (::chdir(ctx.workingDir->c_str()) != 0) {
    if (errno != ENOENT) childFail(fd, ChildStep::WorkingDir, errno);
    if (int err = makeWorkingDirectoryInChild(*ctx.workingDir)) childFail(fd, ChildStep::WorkingDir, err);
    if (::chdir(ctx.workingDir->c_str()) != 0) childFail(fd, ChildStep::WorkingDir, errno);
  }
  if (ctx.setHostname && ::sethostname(ctx.hostname->data(), ctx.hostname->size()) != 0)
    childFail(fd, ChildStep::Hostname, errno);
  if (ctx.bundle != nullptr && !ctx.bundle->domainname.empty() &&
      ::setdomainname(ctx.bundle->domainname.data(), ctx.bundle->domainname.size()) != 0)
    childFail(fd, ChildStep::Domainname, errno);
  // A new network namespace starts with lo down; the parent's hook may have plugged in more, or nothing.
  if (ctx.bringUpLoopback) {
    if (int err = bringUpLoopbackInChild()) childFail(fd, ChildStep::Loopback, err);
  }
  lockDownAndExecInChild(ctx.lockdown);
}

[[noreturn]] void joinUserNamespaceThenCloneInit(const InitChildContext& ctx, int userNamespaceFd,
                                                 int cloneFlags) {
  const int fd = ctx.syncFd;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  if (::setns(userNamespaceFd, CLONE_NEWUSER) != 0) childFail(fd, ChildStep::JoinUserNamespace, errno);
  int pidfd = -1;
  clone_args args{};
  // With CLONE_PARENT the kernel takes the exit signal from us (SIGCHLD) and refuses one given here.
  args.flags = static_cast<uint64_t>(cloneFlags) | CLONE_PARENT | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  pid_t pid = static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
  if (pid == 0) ::_exit(containerInitMain(const_cast<InitChildContext*>(&ctx)));
  if (pid < 0) childFail(fd, ChildStep::CloneInit, errno);
  SyncRecord record;
  record.kind = RecordKind::InitPidfd;
  if (sendWithFd(fd, &record, sizeof record, pidfd) < 0) {
    ::kill(pid, SIGKILL);
    childFail(fd, ChildStep::CloneInit, errno);
  }
  ::_exit(0);
}

pid_t pidOfPidfd(int pidfd) {
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", pidfd);
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("Pid:", 0) == 0) return static_cast<pid_t>(std::strtol(line.c_str() + 4, nullptr, 10));
  }
  return -1;
}

// The exec'd process proper: already in every namespace of the container (its pid namespace included,
// being a child of a process that joined it) and in its cgroup.
int execGrandchildMain(void* arg) {
  const ExecChildContext& ctx = *static_cast<const ExecChildContext*>(arg);
  ctx.grandchildStack->adoptInChild();
  if (!ctx.userNamespace && clearGroupsInChild() != 0) childFail(ctx.syncFd, ChildStep::ClearGroups, errno);
  lockDownAndExecInChild(ctx.lockdown);
}

// The forked intermediate of exec: waits for "go", joins the container's v1 cgroups (on v2 it was cloned
// into the group), joins the namespaces (user first), then clones the real process with CLONE_PARENT.
// setns(CLONE_NEWPID) only applies to children, and CLONE_PARENT makes that child the caller's, so its exit
// status is the command's, with no relaying; the intermediate reports the pid and leaves.
[[noreturn]] void execIntermediateMain(const ExecChildContext& ctx) {
  const int fd = ctx.syncFd;
  ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
  waitForGoInChild(fd);
  joinCgroupInChild(fd, ctx.cgroupTaskFds);
  size_t failedIndex = 0;
  if (int err = joinNamespacesInChild(*ctx.namespaces, &failedIndex)) {
    childFail(fd, ChildStep::JoinNamespace, err, static_cast<int32_t>(failedIndex));
  }
  if (ctx.userNamespace && becomeRootInChild() != 0) childFail(fd, ChildStep::SetIds, errno);
  // setns(mnt) put us at the container's root; now the configured directory.
  if (::chdir(ctx.workingDir->c_str()) != 0) childFail(fd, ChildStep::WorkingDir, errno);
  pid_t pid = ::clone(execGrandchildMain, ctx.grandchildStack->top(), CLONE_PARENT | SIGCHLD,
                      const_cast<ExecChildContext*>(&ctx));
  if (pid < 0) childFail(fd, ChildStep::CloneIntoNamespaces, errno);
  SyncRecord record;
  record.kind = RecordKind::ExecPid;
  record.pid = pid;
  sendRecord(fd, record);
  ::_exit(0);
}

// The child's first step: say that it runs (its pid is in pid_ by now), then be the container's child.
int SharedMemoryClone::startedInChild(void* self) {
  auto* clone = static_cast<SharedMemoryClone*>(self);
  ::eventfd_write(clone->started_.get(), 1);
  return clone->main_(clone->arg_);
}

pid_t SharedMemoryClone::start(int (*main)(void*), void* arg, const ChildStack& stack, int flags) {
  main_ = main;
  arg_ = arg;
  started_.reset(::eventfd(0, EFD_CLOEXEC));
  if (!started_) return -1;
  try {
    thread_ = std::thread([this, &stack, flags] {
      pid_t pid = ::clone(startedInChild, stack.top(),
                          flags | CLONE_VM | CLONE_VFORK | CLONE_PARENT_SETTID | SIGCHLD, this, &pid_);
      // Back here at once if clone failed, else once the child has called execve or exited: said again in
      // case the child died before it could say that it runs.
      if (pid < 0) cloneError_ = errno;
      ::eventfd_write(started_.get(), 1);
    });
  } catch (const std::system_error& error) {
    errno = error.code().value();
    return -1;
  }
  eventfd_t value = 0;
  while (::eventfd_read(started_.get(), &value) != 0) {
    if (errno == EINTR) continue;
    const int readError = errno;
    if (pid_ > 0) {  // cannot tell whether it runs: leave no child waiting for a "go" that never comes
      ::kill(pid_, SIGKILL);
      while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
    errno = readError;
    return -1;
  }
  if (cloneError_ != 0) {
    errno = cloneError_;
    return -1;
  }
  return pid_;
}

SharedMemoryClone::~SharedMemoryClone() {
  if (thread_.joinable()) thread_.join();
}

std::string childStepName(ChildStep step, const MountPlan* plan, const SyncRecord& record,
                          const ExecImage& image, const std::vector<NamespaceFd>* namespaces,
                          const CgroupJoin& join, const std::string& hostname, const std::string& workingDir,
                          const ProcessUser& user, const BundleSetup* bundle) {
  auto index = static_cast<size_t>(record.index);
  switch (step) {
    case ChildStep::JoinNamespacePath:
      if (bundle && record.index >= 0 && index < bundle->joins.size())
        return fmt::format("setns(\"{}\")", bundle->joins[index].path);
      return "setns";
    case ChildStep::Sysctl:
      if (bundle && record.index >= 0 && index < bundle->sysctls.size())
        return fmt::format("sysctl {}: write(\"{}\", \"{}\")", bundle->sysctls[index].key,
                           bundle->sysctls[index].procPath, bundle->sysctls[index].value);
      return "sysctl";
    case ChildStep::Domainname:
      return fmt::format("setdomainname(\"{}\")", bundle ? bundle->domainname : std::string());
    case ChildStep::Console:
      return fmt::format("terminal: {}", consoleCallName(record.index));
    case ChildStep::ExecFifo:
      return bundle ? fmt::format("open(exec fifo \"{}\")", bundle->execFifo.string()) : "open(exec fifo)";
    case ChildStep::WaitForGo:
      return "wait for the parent";
    case ChildStep::AttachOverlay:
      return plan ? fmt::format("move_mount(overlay, \"{}\")", plan->rootfs) : "move_mount(overlay)";
    case ChildStep::JoinCgroup:
      if (record.index >= 0 && static_cast<size_t>(record.index) < join.taskPaths.size()) {
        return fmt::format("cgroup: write(\"{}\", \"0\")", join.taskPaths[static_cast<size_t>(record.index)]);
      }
      return "cgroup: join";
    case ChildStep::SetIds:
      return "setresuid/setresgid(0) in the user namespace";
    case ChildStep::ClearGroups:
      return "setgroups(0)";
    case ChildStep::CgroupNamespace:
      return "unshare(CLONE_NEWCGROUP)";
    case ChildStep::Mounts:
      return plan ? describeMountFailure(*plan, record.mountStep, record.index) : std::string("mounts");
    case ChildStep::WorkingDir:
      return fmt::format("chdir(\"{}\")", workingDir);
    case ChildStep::Hostname:
      return fmt::format("sethostname(\"{}\")", hostname);
    case ChildStep::Loopback:
      return "ioctl(SIOCSIFFLAGS, \"lo\", IFF_UP)";
    case ChildStep::Stdio:
      return "dup2(stdio)";
    case ChildStep::DropCapabilities:
      return "drop capabilities (PR_CAPBSET_DROP, capset)";
    case ChildStep::NoNewPrivs:
      return "prctl(PR_SET_NO_NEW_PRIVS)";
    case ChildStep::CloseFds:
      return "close_range(3, ~0, CLOSE_RANGE_CLOEXEC)";
    case ChildStep::Seccomp:
      return "seccomp: load filter";
    case ChildStep::Execve:
      return fmt::format("execve(\"{}\")", image.argvStorage.front());
    case ChildStep::JoinNamespace:
      if (namespaces && record.index >= 0 && static_cast<size_t>(record.index) < namespaces->size()) {
        return fmt::format("setns({} namespace)", (*namespaces)[static_cast<size_t>(record.index)].name);
      }
      return "setns";
    case ChildStep::CloneIntoNamespaces:
      return "clone(CLONE_PARENT) into the container's pid namespace";
    case ChildStep::JoinUserNamespace:
      return fmt::format("setns(\"{}\", CLONE_NEWUSER)", bundle ? bundle->userNamespacePath : std::string());
    case ChildStep::CloneInit:
      return fmt::format("clone3(CLONE_PARENT) of init in user namespace \"{}\"",
                         bundle ? bundle->userNamespacePath : std::string());
    case ChildStep::SetUser:
      return fmt::format("setgroups({} groups)/setresgid({})/setresuid({})", user.additionalGids.size(),
                         user.gid, user.uid);
  }
  return "child setup";
}

Result<CapabilityNumbers> capabilitySetNumbers(const CapabilitySets& sets) {
  CapabilityNumbers numbers;
  const std::pair<const std::vector<std::string>*, std::vector<int>*> pairs[] = {
      {&sets.bounding, &numbers.bounding},
      {&sets.effective, &numbers.effective},
      {&sets.permitted, &numbers.permitted},
      {&sets.inheritable, &numbers.inheritable},
      {&sets.ambient, &numbers.ambient}};
  static constexpr const char* kNames[] = {"bounding", "effective", "permitted", "inheritable", "ambient"};
  for (size_t i = 0; i < 5; ++i) {
    auto converted = capabilityNumbers(*pairs[i].first);
    if (!converted)
      return fail(Error(ErrorKind::InvalidArgument,
                        fmt::format("process.capabilities.{}: {}", kNames[i], converted.error().message()),
                        fmt::format("process.capabilities.{}", kNames[i])));
    *pairs[i].second = std::move(*converted);
  }
  return numbers;
}

Result<StdioFds> openStdio(const Stdio& stdio) {
  StdioFds result;
  result.devNull.reset(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!result.devNull) return fail(systemError(errno, "open(\"/dev/null\")"));
  result.fds[0] = stdio.in >= 0 ? stdio.in : result.devNull.get();
  result.fds[1] = stdio.out >= 0 ? stdio.out : result.devNull.get();
  result.fds[2] = stdio.err >= 0 ? stdio.err : result.fds[1];
  return result;
}

Result<std::optional<CompiledSeccomp>> compileSeccomp(const SeccompProfile& profile) {
  if (profile.unconfined()) return std::optional<CompiledSeccomp>();
  auto compiled = CompiledSeccomp::compile(profile);
  if (!compiled) return fail(compiled.error().wrap("seccomp"));
  return std::optional<CompiledSeccomp>(std::move(*compiled));
}

// A fork-like clone3 straight into a v2 group (CLONE_INTO_CGROUP, 5.7 and later): the kernel places the
// child as it is created, with no cgroup.procs write. Without CLONE_VM the child runs on a copy of the
// caller's stack, so it needs no stack of its own; like fork, it returns 0 there.
pid_t cloneIntoCgroup(uint64_t flags, int cgroupDirFd) {
  clone_args args{};
  args.flags = flags | CLONE_INTO_CGROUP;
  args.exit_signal = SIGCHLD;
  args.cgroup = static_cast<uint64_t>(cgroupDirFd);
  return static_cast<pid_t>(::syscall(SYS_clone3, &args, sizeof args));
}

// clone3 is missing (before 5.3) or does not know CLONE_INTO_CGROUP (before 5.7): join by cgroup.procs.
bool cloneIntoCgroupUnavailable(int err) {
  return err == ENOSYS || err == E2BIG;
}

std::vector<int> rawFds(const std::vector<UniqueFd>& fds) {
  std::vector<int> raw;
  for (const auto& fd : fds) raw.push_back(fd.get());
  return raw;
}

}  // namespace corral::container
