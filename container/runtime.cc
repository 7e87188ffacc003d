// Starting containers (parent: overlay, cgroup, id maps, hook, sync; child: the ordered setup ending in
// execve), exec into a running one, and removing a container's bundle.
#include "container/runtime.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <linux/sched.h>  // struct clone_args, CLONE_INTO_CGROUP
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <optional>
#include <utility>

#include "container/caps.h"
#include "container/mounts.h"
#include "container/namespaces.h"
#include "core/failpoint.h"
#include "core/log.h"
#include "core/rollback.h"

namespace corral::container {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kDefaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr size_t kChildStackSize = 1 << 20;

std::chrono::microseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

// ---- The sync protocol between parent and child (SOCK_SEQPACKET: one record per message) ----

enum class RecordKind : int32_t { Go, CgroupJoined, RootfsReady, Execing, Failure, ExecPid };

// The step a child failed at; the parent turns {step, errno} into a message naming the call.
enum class ChildStep : int32_t {
  WaitForGo,
  JoinCgroup,  // index into CgroupJoin::taskPaths
  SetIds,
  ClearGroups,
  CgroupNamespace,
  Mounts,  // detail in mountStep/index
  WorkingDir,
  Hostname,
  Loopback,
  Stdio,
  DropCapabilities,
  NoNewPrivs,
  CloseFds,
  Seccomp,
  Execve,
  JoinNamespace,  // index into the namespace list
  CloneIntoNamespaces,
};

struct SyncRecord {
  RecordKind kind = RecordKind::Go;
  ChildStep step = ChildStep::WaitForGo;
  MountStep mountStep = MountStep::Mount;
  int32_t index = 0;
  int32_t errnum = 0;
  int32_t pid = 0;
};

void sendRecord(int fd, const SyncRecord& record) {
  while (::send(fd, &record, sizeof record, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

[[noreturn]] void childFail(int fd, ChildStep step, int errnum, int32_t index = 0,
                            MountStep mountStep = MountStep::Mount) {
  SyncRecord record;
  record.kind = RecordKind::Failure;
  record.step = step;
  record.mountStep = mountStep;
  record.index = index;
  record.errnum = errnum;
  sendRecord(fd, record);
  ::_exit(127);
}

// Blocks until the parent says "go"; a closed socket means the parent gave up, so the child just leaves.
void waitForGoInChild(int fd) {
  SyncRecord record;
  ssize_t n;
  do {
    n = ::recv(fd, &record, sizeof record, 0);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(sizeof record) || record.kind != RecordKind::Go) ::_exit(127);
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

// ---- What the child needs, all allocated by the parent before clone ----

struct ExecImage {
  std::vector<std::string> argvStorage, envStorage, candidates;
  std::vector<const char*> argv, envp;
};

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

// Steps shared by container init and exec'd processes, after their namespaces and root are in place:
// stdio → capabilities → no_new_privs → close stray fds → seccomp (last) → execve.
struct LockdownInput {
  int syncFd;
  int stdio[3];
  const std::vector<int>* capabilities;
  const CompiledSeccomp* seccomp;  // null: unconfined
  const ExecImage* image;
};

[[noreturn]] void lockDownAndExecInChild(const LockdownInput& in) {
  if (int err = setupStdioInChild(in.stdio)) childFail(in.syncFd, ChildStep::Stdio, err);
  if (int err = dropCapabilitiesInChild(*in.capabilities))
    childFail(in.syncFd, ChildStep::DropCapabilities, err);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) childFail(in.syncFd, ChildStep::NoNewPrivs, errno);
  // The daemon's own fds (sockets, databases) must not leak into the container: close them at execve.
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) {
    childFail(in.syncFd, ChildStep::CloseFds, errno);
  }
  // Set up to survive its starter from here on (the daemon supervises it by pidfd and cgroup).
  ::prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
  if (in.seccomp != nullptr) {
    if (int err = in.seccomp->loadInChild()) childFail(in.syncFd, ChildStep::Seccomp, err);
  }
  SyncRecord execing;
  execing.kind = RecordKind::Execing;
  sendRecord(in.syncFd, execing);
  childFail(in.syncFd, ChildStep::Execve, execCandidatesInChild(*in.image));
}

struct InitChildContext {
  int syncFd = -1;
  int parentSyncFd = -1;  // the parent's end, which the child's copy of the fd table holds too
  bool userNamespace = false;
  std::vector<int> cgroupTaskFds;  // v1: joined by the child right after "go"; empty when already in
  const MountPlan* plan = nullptr;
  const std::string* hostname = nullptr;
  const std::string* workingDir = nullptr;
  LockdownInput lockdown{};
};

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

  // Still host uid 0 here, the owner of the bundle's parent directories (see enterRootfsInChild).
  int rootfsFd = -1;
  MountFailure mountFailure;
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
  if (::unshare(CLONE_NEWCGROUP) != 0) childFail(fd, ChildStep::CgroupNamespace, errno);

  if (!applyMountPlanInChild(*ctx.plan, rootfsFd, &mountFailure) || !pivotRootInChild(&mountFailure)) {
    childFail(fd, ChildStep::Mounts, mountFailure.errnum, mountFailure.index, mountFailure.step);
  }
  ::close(rootfsFd);
  SyncRecord ready;
  ready.kind = RecordKind::RootfsReady;
  sendRecord(fd, ready);

  if (::chdir(ctx.workingDir->c_str()) != 0) childFail(fd, ChildStep::WorkingDir, errno);
  if (::sethostname(ctx.hostname->data(), ctx.hostname->size()) != 0)
    childFail(fd, ChildStep::Hostname, errno);
  // A new network namespace starts with lo down; the parent's hook may have plugged in more, or nothing.
  if (int err = bringUpLoopbackInChild()) childFail(fd, ChildStep::Loopback, err);
  lockDownAndExecInChild(ctx.lockdown);
}

struct ExecChildContext {
  int syncFd = -1;
  bool userNamespace = false;
  std::vector<int> cgroupTaskFds;  // as for init: v1 only
  const std::vector<NamespaceFd>* namespaces = nullptr;
  const std::string* workingDir = nullptr;
  void* grandchildStackTop = nullptr;
  LockdownInput lockdown{};
};

// The exec'd process proper: already in every namespace of the container (its pid namespace included,
// being a child of a process that joined it) and in its cgroup.
int execGrandchildMain(void* arg) {
  const ExecChildContext& ctx = *static_cast<const ExecChildContext*>(arg);
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
  pid_t pid = ::clone(execGrandchildMain, ctx.grandchildStackTop, CLONE_PARENT | SIGCHLD,
                      const_cast<ExecChildContext*>(&ctx));
  if (pid < 0) childFail(fd, ChildStep::CloneIntoNamespaces, errno);
  SyncRecord record;
  record.kind = RecordKind::ExecPid;
  record.pid = pid;
  sendRecord(fd, record);
  ::_exit(0);
}

// ---- Parent-side helpers: guards and messages ----

// Kills and reaps a child unless released (crun cleanup_pidp). Until we reap it the pid cannot be reused,
// so kill(2) by pid is safe here.
class ChildGuard {
 public:
  ChildGuard() = default;
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;
  ~ChildGuard() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  void arm(pid_t pid) { pid_ = pid; }
  pid_t release() { return std::exchange(pid_, -1); }

 private:
  pid_t pid_ = -1;
};

class ChildStack {
 public:
  ChildStack() {
    void* base = ::mmap(nullptr, kChildStackSize, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    base_ = base == MAP_FAILED ? nullptr : base;
  }
  ~ChildStack() {
    if (base_ != nullptr) ::munmap(base_, kChildStackSize);
  }
  ChildStack(const ChildStack&) = delete;
  ChildStack& operator=(const ChildStack&) = delete;
  bool valid() const { return base_ != nullptr; }
  void* top() const { return static_cast<char*>(base_) + kChildStackSize; }  // stacks grow down on x86/arm

 private:
  void* base_ = nullptr;
};

struct SyncPair {
  UniqueFd parent, child;
};

// Both ends are kept above fd 2 so that the child's stdio setup can never overwrite its own sync socket.
Result<SyncPair> makeSyncPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) != 0) {
    return fail(systemError(errno, "socketpair(AF_UNIX, SOCK_SEQPACKET)"));
  }
  SyncPair pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
  for (UniqueFd* end : {&pair.parent, &pair.child}) {
    if (end->get() > 2) continue;
    int moved = ::fcntl(end->get(), F_DUPFD_CLOEXEC, 3);
    if (moved < 0) return fail(systemError(errno, "fcntl(F_DUPFD_CLOEXEC)"));
    end->reset(moved);
  }
  return pair;
}

Status sendGo(int fd) {
  SyncRecord go;
  go.kind = RecordKind::Go;
  if (::send(fd, &go, sizeof go, MSG_NOSIGNAL) != static_cast<ssize_t>(sizeof go)) {
    return fail(systemError(errno, "send(go) to the child"));
  }
  return {};
}

std::string childStepName(ChildStep step, const MountPlan* plan, const SyncRecord& record,
                          const ExecImage& image, const std::vector<NamespaceFd>* namespaces,
                          const CgroupJoin& join, const std::string& hostname,
                          const std::string& workingDir) {
  switch (step) {
    case ChildStep::WaitForGo:
      return "wait for the parent";
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
  }
  return "child setup";
}

// A child that closed the socket without saying it reached execve died during setup (a signal, say).
Error childVanished(pid_t pid) {
  // It is exiting: wait for its status (WNOWAIT, so the guard still reaps it).
  siginfo_t info{};
  int rc;
  do {
    rc = ::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0 && info.si_pid == pid) {
    if (info.si_code == CLD_EXITED)
      return internalError("child setup: exited with status {} before execve", info.si_status);
    return internalError("child setup: killed by signal {} before execve", info.si_status);
  }
  return internalError("child setup: closed the sync socket before execve");
}

struct ReadOutcome {
  std::optional<SyncRecord> failure;
  bool reachedExec = false;
  pid_t execPid = -1;
  std::optional<Clock::time_point> cgroupJoined;
  std::optional<Clock::time_point> rootfsReady;
};

// Reads records until EOF (every copy of the child's end closed: execve's close-on-exec, or exit).
Result<ReadOutcome> readChildRecords(int fd) {
  ReadOutcome outcome;
  for (;;) {
    SyncRecord record;
    ssize_t n = ::recv(fd, &record, sizeof record, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, "recv(sync socket)"));
    if (n == 0) return outcome;
    if (n != static_cast<ssize_t>(sizeof record))
      return fail(internalError("sync socket: short record of {} bytes", n));
    switch (record.kind) {
      case RecordKind::CgroupJoined:
        outcome.cgroupJoined = Clock::now();
        break;
      case RecordKind::RootfsReady:
        outcome.rootfsReady = Clock::now();
        break;
      case RecordKind::Execing:
        outcome.reachedExec = true;
        break;
      case RecordKind::ExecPid:
        outcome.execPid = record.pid;
        break;
      case RecordKind::Failure:
        outcome.failure = record;
        return outcome;
      case RecordKind::Go:
        break;
    }
  }
}

Status validateConfig(const ContainerConfig& config) {
  if (config.name.empty()) return fail(invalidField("name", "name is empty"));
  if (auto ok = validateCommand(config.argv, config.env); !ok) return ok;
  const std::string& hostname = config.hostname.empty() ? config.name : config.hostname;
  if (hostname.size() > HOST_NAME_MAX) {
    return fail(
        invalidField("hostname", "hostname \"{}\" is longer than {} characters", hostname, HOST_NAME_MAX));
  }
  if (!config.initBinary.empty() && !config.initBinary.is_absolute()) {
    return fail(
        invalidField("init", "the init binary \"{}\" is not an absolute path", config.initBinary.string()));
  }
  if (config.workingDir.empty() || config.workingDir.front() != '/') {
    return fail(invalidField("working_dir", "working_dir \"{}\" is not an absolute path", config.workingDir));
  }
  if (config.userNamespace) {
    const IdMapping& map = *config.userNamespace;
    if (map.count == 0) return fail(invalidField("user_namespace.count", "user_namespace.count must be > 0"));
    if (map.hostId == 0)
      return fail(
          invalidField("user_namespace", "user_namespace: host id 0 would make root inside root outside"));
    if (uint64_t{map.hostId} + map.count > uint64_t{UINT32_MAX}) {
      return fail(invalidField("user_namespace", "user_namespace: {} ids from {} overflow the id space",
                               map.count, map.hostId));
    }
  }
  struct stat st {};
  if (::stat(config.imageRootfs.c_str(), &st) != 0) {
    return fail(systemError(errno, fmt::format("image rootfs \"{}\"", config.imageRootfs.string())));
  }
  if (!S_ISDIR(st.st_mode)) {
    return fail(
        invalidField("image_rootfs", "image rootfs \"{}\" is not a directory", config.imageRootfs.string()));
  }
  return {};
}

bool isMountPoint(const std::filesystem::path& path) {
  struct statx stx {};
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &stx) != 0) return false;
  return (stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) && (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT);
}

// The cgroup hierarchies the host mounts under /sys/fs/cgroup, for the container's own view of them.
Result<std::vector<HostCgroupHierarchy>> hostCgroupHierarchies() {
  UniqueFd fd(::open("/proc/self/mountinfo", O_RDONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, "open(\"/proc/self/mountinfo\")"));
  std::string text;
  char buffer[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, "read(\"/proc/self/mountinfo\")"));
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return parseHostCgroupHierarchies(text);
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
      uid_t id = config.userNamespace->hostId;
      if (::fchown(fd.get(), id, id) != 0)
        return fail(systemError(errno, fmt::format("chown(\"{}\", {})", path, id)));
    }
  }
  return {};
}

// What the parent creates in the writable layer belongs to the container's root: host root is no one
// inside a user namespace, and a directory of no one's is one the container's root may not write to.
Status chownToMappedRoot(const std::string& path, const ContainerConfig& config) {
  if (!config.userNamespace) return {};
  uid_t id = config.userNamespace->hostId;
  if (::lchown(path.c_str(), id, id) != 0)
    return fail(systemError(errno, fmt::format("chown(\"{}\", {})", path, id)));
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

// Creates bundle/{upper,work,rootfs} and mounts the overlay at rootfs. Mounted here in the host's mount
// namespace, by host root, for both layouts: with a user namespace the child could not mount it from
// the image's root-owned lower layer without userxattr; the child's mount namespace gets a copy.
// With a user namespace the lower layer is the image idmapped through the container's mapping, so its
// root-owned files belong to the container's root (crun's "idmap" option does the same), and upper/ and
// work/ belong to the mapped root: what the container creates lands in upper/ owned by its mapped ids.
Status mountOverlayFromParent(const MountPlan& plan, const ContainerConfig& config) {
  for (const auto& dir : {plan.upperDir, plan.workDir, plan.rootfs}) {
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return fail(systemError(ec.value(), fmt::format("mkdir(\"{}\")", dir)));
  }
  if (isMountPoint(plan.rootfs)) return fail(conflict("\"{}\" is already a mount point", plan.rootfs));
  std::optional<Rollback> detachLower;
  if (config.userNamespace) {
    uid_t id = config.userNamespace->hostId;
    for (const auto& dir : {plan.upperDir, plan.workDir}) {
      if (::chown(dir.c_str(), id, id) != 0)
        return fail(systemError(errno, fmt::format("chown(\"{}\", {})", dir, id)));
    }
    auto mapping = openMappedUserNamespace(id, config.userNamespace->count);
    if (!mapping) return fail(mapping.error().wrap("idmap the image"));
    if (::mkdir(plan.idmappedLower.c_str(), 0700) != 0 && errno != EEXIST)
      return fail(systemError(errno, fmt::format("mkdir(\"{}\")", plan.idmappedLower)));
    if (isMountPoint(plan.idmappedLower)) ::umount2(plan.idmappedLower.c_str(), MNT_DETACH);  // a crash's
    auto idmapped = mountIdmappedFromParent(config.imageRootfs.string(), plan.idmappedLower, mapping->get());
    if (!idmapped) return fail(idmapped.error().wrap("idmap the image"));
    // The overlay keeps a private clone of each layer, so the lower mount point is not needed once it is up.
    detachLower.emplace([&] { ::umount2(plan.idmappedLower.c_str(), MNT_DETACH); });
  }
  if (::mount("overlay", plan.rootfs.c_str(), "overlay", 0, plan.overlayData.c_str()) != 0) {
    return fail(systemError(errno, fmt::format("mount(\"overlay\", \"{}\", \"overlay\", \"{}\")", plan.rootfs,
                                               plan.overlayData)));
  }
  return {};
}

struct StdioFds {
  UniqueFd devNull;
  int fds[3] = {-1, -1, -1};
};

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

}  // namespace

// ---- startContainer ----

namespace {

using FinishStart = Result<RunningContainer> (*)(pid_t, UniqueFd, std::unique_ptr<Cgroup>,
                                                 std::filesystem::path, StartTimings);

// Everything is allocated up front; the child only reads it. The clone is clone(2) with its own stack
// rather than fork + unshare: unshare(CLONE_NEWPID) only affects later children (a second fork would be
// needed for pid 1), whereas clone makes the child pid 1 of its new pid namespace directly and hands the
// parent its host pid. On v2 it is clone3 with CLONE_INTO_CGROUP instead; on v1 (hybrid hosts too) the
// child joins each hierarchy itself after "go" (see CgroupJoin), so the cgroup namespace is unshared by
// the child then instead of being a clone flag.
Result<RunningContainer> startContainerSteps(const ContainerConfig& config, const Stdio& stdio,
                                             const ParentHook& beforeStart, FinishStart finish) {
  if (auto ok = validateConfig(config); !ok) return fail(ok.error());
  const std::string hostname = config.hostname.empty() ? config.name : config.hostname;
  auto mode = detectCgroupMode(config.cgroupOptions.root);
  if (!mode) return fail(mode.error().wrap("cgroup"));

  MountPlanInput planInput;
  planInput.imageRootfs = config.imageRootfs;
  planInput.bundleDir = config.bundleDir;
  planInput.userNamespace = config.userNamespace.has_value();
  planInput.mappedIds = config.userNamespace ? config.userNamespace->count : 0;
  planInput.cgroup2 = *mode == CgroupMode::Unified;
  if (!planInput.cgroup2 && !planInput.userNamespace) {
    auto hierarchies = hostCgroupHierarchies();
    if (!hierarchies) return fail(hierarchies.error().wrap("cgroup"));
    planInput.cgroupV1Hierarchies = std::move(*hierarchies);
  }
  planInput.hostname = hostname;
  planInput.ipAddress = config.ipAddress;
  planInput.nameservers = config.nameservers;
  planInput.devices = config.devices;
  planInput.initBinary = config.initBinary.string();
  auto plan = buildMountPlan(planInput);
  if (!plan) return fail(plan.error());
  auto capabilities = capabilityNumbers(config.capabilities);
  if (!capabilities) return fail(capabilities.error());
  auto seccomp = compileSeccomp(config.seccomp);
  if (!seccomp) return fail(seccomp.error());
  ExecImage image = prepareExecImage(initArgv(config), config.env);
  auto stdioFds = openStdio(stdio);
  if (!stdioFds) return fail(stdioFds.error());
  auto sync = makeSyncPair();
  if (!sync) return fail(sync.error());
  ChildStack stack;
  if (!stack.valid()) return fail(systemError(errno, "mmap(child stack)"));
  StartTimings timings;

  // Host-side effects from here on, each with its undo. Destruction runs bottom-up: the child is killed
  // and reaped before its cgroup is removed, and the overlay is unmounted last.
  auto rootfsStart = Clock::now();
  std::error_code existsError;
  const bool bundleExisted = std::filesystem::exists(config.bundleDir, existsError);
  Rollback removeCreatedBundle([&] {
    if (bundleExisted) return;
    std::error_code ec;
    std::filesystem::remove_all(config.bundleDir, ec);
  });
  if (auto ok = mountOverlayFromParent(*plan, config); !ok) return fail(ok.error().wrap("rootfs"));
  Rollback unmountOverlay([&] { ::umount2(plan->rootfs.c_str(), MNT_DETACH); });
  CORRAL_FAILPOINT("container.after-mount");
  if (auto ok = prepareRootfsFromParent(*plan, config); !ok) return fail(ok.error().wrap("rootfs"));
  auto parentRootfs = since(rootfsStart);

  auto cgroupStart = Clock::now();
  std::vector<DeviceRule> deviceRules = defaultDeviceRules();
  for (const DeviceNode& node : config.devices) deviceRules.push_back(deviceNodeRule(node));
  auto cgroup = createCgroup(*mode, config.name, config.limits, config.cgroupOptions, deviceRules);
  if (!cgroup) return fail(cgroup.error().wrap("cgroup"));
  CORRAL_FAILPOINT("container.after-cgroup");
  auto join = (*cgroup)->openJoin();
  if (!join) return fail(join.error().wrap("cgroup"));
  timings.cgroup = since(cgroupStart);

  InitChildContext ctx;
  ctx.syncFd = sync->child.get();
  ctx.parentSyncFd = sync->parent.get();
  ctx.userNamespace = config.userNamespace.has_value();
  ctx.cgroupTaskFds = rawFds(join->taskFiles);
  ctx.plan = &*plan;
  ctx.hostname = &hostname;
  ctx.workingDir = &config.workingDir;
  ctx.lockdown = LockdownInput{sync->child.get(),
                               {stdioFds->fds[0], stdioFds->fds[1], stdioFds->fds[2]},
                               &*capabilities,
                               *seccomp ? &**seccomp : nullptr,
                               &image};

  ChildGuard child;
  auto cloneStart = Clock::now();
  const std::string cloneFlagNames =
      fmt::format("{}CLONE_NEWPID|CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWIPC|CLONE_NEWNET",
                  ctx.userNamespace ? "CLONE_NEWUSER|" : "");
  pid_t pid = -1;
  bool clonedIntoCgroup = false;
  if (join->directory) {
    pid =
        cloneIntoCgroup(static_cast<uint64_t>(containerCloneFlags(ctx.userNamespace)), join->directory.get());
    if (pid == 0) ::_exit(containerInitMain(&ctx));
    if (pid < 0 && !cloneIntoCgroupUnavailable(errno)) {
      return fail(systemError(
          errno, fmt::format("clone3({}|CLONE_INTO_CGROUP \"{}\")", cloneFlagNames, (*cgroup)->path())));
    }
    clonedIntoCgroup = pid > 0;
  }
  if (pid < 0) {
    pid = ::clone(containerInitMain, stack.top(), containerCloneFlags(ctx.userNamespace) | SIGCHLD, &ctx);
    if (pid < 0) return fail(systemError(errno, fmt::format("clone({})", cloneFlagNames)));
  }
  timings.clone = since(cloneStart);
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  child.arm(pid);
  if (!pidfd) return fail(systemError(errno, fmt::format("pidfd_open({})", pid)));
  sync->child.reset();  // only the child holds its end now, so its execve or exit reads as EOF

  if (config.userNamespace) {
    if (auto ok = writeIdMapsFromParent(pid, config.userNamespace->hostId, config.userNamespace->count);
        !ok) {
      return fail(ok.error().wrap("user namespace"));
    }
  }
  if (!clonedIntoCgroup && ctx.cgroupTaskFds.empty()) {
    // No way for the child to join by itself (a v2 kernel without CLONE_INTO_CGROUP).
    auto joinStart = Clock::now();
    if (auto ok = (*cgroup)->addProcess(pid); !ok) return fail(ok.error().wrap("cgroup"));
    timings.cgroup += since(joinStart);
  }

  auto hookStart = Clock::now();
  if (beforeStart) {
    if (auto ok = beforeStart(pid); !ok) return fail(ok.error());
  }
  timings.network = since(hookStart);

  CORRAL_FAILPOINT("container.after-clone");
  auto goTime = Clock::now();
  if (auto ok = sendGo(sync->parent.get()); !ok) return fail(ok.error());
  auto outcome = readChildRecords(sync->parent.get());
  if (!outcome) return fail(outcome.error());
  if (outcome->failure) {
    const SyncRecord& record = *outcome->failure;
    return fail(systemError(record.errnum, childStepName(record.step, &*plan, record, image, nullptr, *join,
                                                         hostname, config.workingDir)));
  }
  if (!outcome->reachedExec) return fail(childVanished(pid));
  CORRAL_FAILPOINT("container.after-exec");
  auto joinedAt = outcome->cgroupJoined.value_or(goTime);
  timings.cgroup += std::chrono::duration_cast<std::chrono::microseconds>(joinedAt - goTime);
  auto readyAt = outcome->rootfsReady.value_or(joinedAt);
  timings.rootfs = parentRootfs + std::chrono::duration_cast<std::chrono::microseconds>(readyAt - joinedAt);
  timings.exec = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - readyAt);

  auto result = finish(child.release(), std::move(pidfd), std::move(*cgroup), config.bundleDir, timings);
  unmountOverlay.dismiss();
  removeCreatedBundle.dismiss();
  return result;
}

}  // namespace

Result<RunningContainer> startContainer(const ContainerConfig& config, const Stdio& stdio,
                                        const ParentHook& beforeStart) {
  auto finish = [](pid_t pid, UniqueFd pidfd, std::unique_ptr<Cgroup> cgroup, std::filesystem::path bundleDir,
                   StartTimings timings) -> Result<RunningContainer> {
    RunningContainer container;
    container.pid_ = pid;
    container.pidfd_ = std::move(pidfd);
    container.cgroup_ = std::move(cgroup);
    container.bundleDir_ = std::move(bundleDir);
    container.timings_ = timings;
    return container;
  };
  auto started = startContainerSteps(config, stdio, beforeStart, finish);
  if (!started) return fail(started.error().wrap(fmt::format("start container {}", config.name)));
  return started;
}

void RunningContainer::release() {
  released_ = true;
  if (cgroup_) cgroup_->release();
}

RunningContainer::~RunningContainer() {
  if (released_ || !cgroup_) return;  // released, or moved from (the cgroup went with the move)
  // Through the pidfd: the caller may have reaped the pid already, and then it may be someone else's.
  if (pidfd_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  while (pid_ > 0 && ::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  // Killing init takes its pid namespace down; exec'd processes of ours may still be dying in the group.
  if (auto ok = cgroup_->killAll(); !ok) log::warn("container {}: {}", pid_, ok.error().message());
  if (auto ok = cgroup_->destroy(); !ok) log::warn("container {}: {}", pid_, ok.error().message());
  if (!bundleDir_.empty()) {
    if (auto ok = removeBundle(bundleDir_); !ok) log::warn("container {}: {}", pid_, ok.error().message());
  }
}

// ---- execInContainer ----

Result<pid_t> execInContainer(pid_t initPid, Cgroup& cgroup, const ContainerConfig& config,
                              const ExecOptions& options) {
  auto run = [&]() -> Result<pid_t> {
    if (initPid <= 0) return fail(invalidField("pid", "container init pid {} is not a process", initPid));
    if (auto ok = validateCommand(options.argv, options.env); !ok) return fail(ok.error());
    auto namespaces = openNamespacesFromParent(initPid, config.userNamespace.has_value());
    if (!namespaces) return fail(namespaces.error());
    auto capabilities = capabilityNumbers(config.capabilities);
    if (!capabilities) return fail(capabilities.error());
    auto seccomp = compileSeccomp(config.seccomp);
    if (!seccomp) return fail(seccomp.error());
    ExecImage image = prepareExecImage(options.argv, mergeEnvironment(config.env, options.env));
    auto stdioFds = openStdio(options.stdio);
    if (!stdioFds) return fail(stdioFds.error());
    auto sync = makeSyncPair();
    if (!sync) return fail(sync.error());
    ChildStack stack;
    if (!stack.valid()) return fail(systemError(errno, "mmap(child stack)"));
    auto join = cgroup.openJoin();
    if (!join) return fail(join.error().wrap("cgroup"));

    ExecChildContext ctx;
    ctx.syncFd = sync->child.get();
    ctx.userNamespace = config.userNamespace.has_value();
    ctx.cgroupTaskFds = rawFds(join->taskFiles);
    ctx.namespaces = &*namespaces;
    ctx.workingDir = &config.workingDir;
    ctx.grandchildStackTop = stack.top();
    ctx.lockdown = LockdownInput{sync->child.get(),
                                 {stdioFds->fds[0], stdioFds->fds[1], stdioFds->fds[2]},
                                 &*capabilities,
                                 *seccomp ? &**seccomp : nullptr,
                                 &image};

    ChildGuard intermediate;
    pid_t intermediatePid = -1;
    bool clonedIntoCgroup = false;
    if (join->directory) {
      intermediatePid = cloneIntoCgroup(0, join->directory.get());
      if (intermediatePid == 0) execIntermediateMain(ctx);
      if (intermediatePid < 0 && !cloneIntoCgroupUnavailable(errno)) {
        return fail(systemError(errno, fmt::format("clone3(CLONE_INTO_CGROUP \"{}\")", cgroup.path())));
      }
      clonedIntoCgroup = intermediatePid > 0;
    }
    if (intermediatePid < 0) {
      intermediatePid = ::fork();
      if (intermediatePid < 0) return fail(systemError(errno, "fork()"));
      if (intermediatePid == 0) execIntermediateMain(ctx);
    }
    intermediate.arm(intermediatePid);
    sync->child.reset();

    if (!clonedIntoCgroup && ctx.cgroupTaskFds.empty()) {
      if (auto ok = cgroup.addProcess(intermediatePid); !ok) return fail(ok.error().wrap("cgroup"));
    }
    if (auto ok = sendGo(sync->parent.get()); !ok) return fail(ok.error());
    auto outcome = readChildRecords(sync->parent.get());
    ChildGuard process;
    if (outcome && outcome->execPid > 0) process.arm(outcome->execPid);
    if (!outcome) return fail(outcome.error());
    if (outcome->failure) {
      const SyncRecord& record = *outcome->failure;
      return fail(systemError(record.errnum, childStepName(record.step, nullptr, record, image, &*namespaces,
                                                           *join, config.hostname, config.workingDir)));
    }
    if (outcome->execPid <= 0) return fail(childVanished(intermediatePid));
    if (!outcome->reachedExec) return fail(childVanished(outcome->execPid));
    // The intermediate has exited after reporting; reap it (the guard would kill an already dead process).
    while (::waitpid(intermediate.release(), nullptr, 0) < 0 && errno == EINTR) {
    }
    return process.release();
  };
  auto pid = run();
  if (!pid) return fail(pid.error().wrap(fmt::format("exec in container {}", config.name)));
  return pid;
}

// ---- removeBundle ----

Status removeBundle(const std::filesystem::path& bundleDir) {
  // Several starts may have stacked mounts; never delete while anything is mounted (it would reach the
  // image). lower/ is the idmapped image, mounted only while a start is under way (a crash may leave it).
  for (const std::filesystem::path& mountPoint : {bundleDir / "rootfs", bundleDir / "lower"}) {
    for (int attempt = 0; attempt < 16 && isMountPoint(mountPoint); ++attempt) {
      if (::umount2(mountPoint.c_str(), MNT_DETACH) != 0) {
        return fail(systemError(
            errno, fmt::format("remove bundle: umount2(\"{}\", MNT_DETACH)", mountPoint.string())));
      }
    }
    if (isMountPoint(mountPoint))
      return fail(internalError("remove bundle: \"{}\" is still mounted", mountPoint.string()));
  }
  std::error_code ec;
  std::filesystem::remove_all(bundleDir, ec);
  if (ec)
    return fail(
        systemError(ec.value(), fmt::format("remove bundle: remove_all(\"{}\")", bundleDir.string())));
  return {};
}

}  // namespace corral::container
