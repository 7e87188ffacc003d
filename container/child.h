// The container's child processes: what they need (allocated by the parent before clone, since the child
// may not allocate), their setup from clone to execve (init, and exec's intermediate and process), and the
// parent's side of launching them: guards, the stdio and seccomp they get, clone3 into a cgroup, and the
// message for a step that failed. Internal to the runtime (container/runtime.h).
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "container/caps.h"
#include "container/cgroup.h"
#include "container/mounts.h"
#include "container/namespaces.h"
#include "container/runtime.h"
#include "container/seccomp.h"
#include "container/sync.h"
#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

inline constexpr size_t kChildStackSize = 1 << 20;

// ---- What the child needs, all allocated by the parent before clone ----

struct ExecImage {
  std::vector<std::string> argvStorage, envStorage, candidates;
  std::vector<const char*> argv, envp;
};

// Environment: the caller's, then container=corral (always ours) and a default PATH if none was given.
ExecImage prepareExecImage(const std::vector<std::string>& argv, const std::vector<std::string>& env);
// The container's environment with the exec's own entries replacing those with the same key.
std::vector<std::string> mergeEnvironment(const std::vector<std::string>& base,
                                          const std::vector<std::string>& overrides);
// What PID 1 runs: the command, or with --init the reaper in front of it.
std::vector<std::string> initArgv(const ContainerConfig& config);
Status validateCommand(const std::vector<std::string>& argv, const std::vector<std::string>& env);

// Steps shared by container init and exec'd processes, after their namespaces and root are in place:
// stdio → capabilities → no_new_privs → close stray fds → seccomp (last) → execve.
struct LockdownInput {
  int syncFd;
  int stdio[3];
  const std::vector<int>* capabilities;
  const ProcessUser* user;
  const CompiledSeccomp* seccomp;  // null: unconfined
  const ExecImage* image;
  // OCI processes (BundleSetup): the five sets instead of `capabilities`, no_new_privs only when asked,
  // the umask, and the exec fifo ("/proc/self/fd/N" of an O_PATH fd) to wait on before seccomp.
  const CapabilityNumbers* capabilitySets = nullptr;
  bool noNewPrivileges = true;
  int umask = -1;
  const char* execFifoPath = nullptr;
  int preserveFds = 0;  // fds 3 .. 3+N-1 stay open across execve
  // Set: a terminal replaces stdio (console.h); init also binds it over /dev/console.
  const ConsoleSize* console = nullptr;
  bool bindDevConsole = false;
};

// The stack clone(2) starts a child on (mmap'd; the child has its own copy of it, as of all memory).
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
  // First thing in a child that clone() started on this stack: tells AddressSanitizer (when built with it)
  // that the child runs here (child.cc says why). Nothing otherwise.
  void adoptInChild() const;

 private:
  void* base_ = nullptr;
};

struct InitChildContext {
  int syncFd = -1;
  int parentSyncFd = -1;  // the parent's end, which the child's copy of the fd table holds too
  bool userNamespace = false;
  std::vector<int> cgroupTaskFds;  // v1: joined by the child right after "go"; empty when already in
  const MountPlan* plan = nullptr;
  int overlayFd = -1;  // the root's overlay, detached by the parent: attached in our mount namespace only
  const std::string* hostname = nullptr;
  const std::string* workingDir = nullptr;
  LockdownInput lockdown{};
  const ChildStack* stack = nullptr;  // what clone() started the child on; null for a fork-like clone3
  // corrald's containers have all of these; an OCI bundle chooses (BundleSetup).
  bool unshareCgroup = true;
  bool setHostname = true;
  bool bringUpLoopback = true;
  const BundleSetup* bundle = nullptr;  // joins, sysctls, domainname
  std::vector<int> joinFds;             // opened by the parent, one per bundle->joins
  bool waitBeforePivotRoot = false;     // say MountsReady and wait for "go" between mounts and pivot_root
};

// The five sets as numbers; errors name "process.capabilities.<set>[i]".
Result<CapabilityNumbers> capabilitySetNumbers(const CapabilitySets& sets);

// The container's init, from clone() to execve (the order is in child.cc).
int containerInitMain(void* arg);

// For an OCI bundle that joins a user namespace (BundleSetup::userNamespacePath), the forked intermediate
// between the parent and init: joins that namespace, then clones init with `cloneFlags` as the parent's
// child (CLONE_PARENT), so that init's new namespaces belong to the joined one (runc's nsexec stages and
// crun do the same: a process cannot give namespaces it already has a new owner). Sends init's pidfd
// (InitPidfd, SCM_RIGHTS: init's pid may be in a pid namespace the parent does not see it by) and exits.
[[noreturn]] void joinUserNamespaceThenCloneInit(const InitChildContext& ctx, int userNamespaceFd,
                                                 int cloneFlags);
// The pid of the process `pidfd` refers to, in the caller's pid namespace (/proc/self/fdinfo), or -1.
pid_t pidOfPidfd(int pidfd);

struct ExecChildContext {
  int syncFd = -1;
  bool userNamespace = false;
  std::vector<int> cgroupTaskFds;  // as for init: v1 only
  const std::vector<NamespaceFd>* namespaces = nullptr;
  const std::string* workingDir = nullptr;
  const ChildStack* grandchildStack = nullptr;
  LockdownInput lockdown{};
};

// The forked intermediate of exec: joins the container, then clones the real process (child.cc).
[[noreturn]] void execIntermediateMain(const ExecChildContext& ctx);

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

// clone(2) of a child that runs in the caller's address space (CLONE_VM) instead of a copy of it. A copying
// clone costs corrald what its page tables cost to copy, and the child's execve as much again to tear the
// copy down: ~0.5 ms each per 10 MiB of corrald's heap, which grows with its instances (bench/README.md,
// issue 15). Sharing is safe for the container's init because it already keeps to what a copy of a
// multithreaded parent allows (child.cc): it reads only what was allocated for it before the clone and
// writes only its own ChildStack, until execve gives it an address space of its own. What a shared child
// would share besides is the cloning thread's TLS: errno, which any failed system call writes. So the
// clone is made by a thread of its own that the kernel keeps suspended (CLONE_VFORK) until the child has
// called execve or exited, while the caller goes on with the parent's steps (id maps, cgroup, network).
// Not for a child that outlives its starter's frame before execve (an OCI exec fifo), nor one whose
// /proc/PID/oom_score_adj is written (the kernel sets it on every process sharing the memory).
class SharedMemoryClone {
 public:
  // AddressSanitizer keeps per-thread state that the child's stack switch (ChildStack::adoptInChild)
  // would change under the suspended thread's feet: sanitized builds copy as before.
#if defined(__SANITIZE_ADDRESS__)
  static constexpr bool kAvailable = false;
#else
  static constexpr bool kAvailable = true;
#endif
  SharedMemoryClone() = default;
  SharedMemoryClone(const SharedMemoryClone&) = delete;
  SharedMemoryClone& operator=(const SharedMemoryClone&) = delete;
  // Joins the cloning thread, which returns once the child has called execve or exited: declare it
  // before the ChildGuard that kills a child left waiting, so that the guard runs first.
  ~SharedMemoryClone();
  // clone(main, stack, flags | CLONE_VM | CLONE_VFORK | SIGCHLD, arg); returns once the child runs, with
  // its pid (in the caller's pid namespace), or -1 with errno as clone(2) or eventfd(2) set it.
  pid_t start(int (*main)(void*), void* arg, const ChildStack& stack, int flags);

 private:
  static int startedInChild(void* self);
  int (*main_)(void*) = nullptr;
  void* arg_ = nullptr;
  UniqueFd started_;  // eventfd: written by the child as it starts, or by the thread if clone fails
  pid_t pid_ = 0;     // written by the kernel (CLONE_PARENT_SETTID) before the child runs
  int cloneError_ = 0;
  std::thread thread_;
};

// The message for the step a child reported failing at, naming the call and its arguments.
std::string childStepName(ChildStep step, const MountPlan* plan, const SyncRecord& record,
                          const ExecImage& image, const std::vector<NamespaceFd>* namespaces,
                          const CgroupJoin& join, const std::string& hostname, const std::string& workingDir,
                          const ProcessUser& user, const BundleSetup* bundle = nullptr);

struct StdioFds {
  UniqueFd devNull;
  int fds[3] = {-1, -1, -1};
};

Result<StdioFds> openStdio(const Stdio& stdio);
Result<std::optional<CompiledSeccomp>> compileSeccomp(const SeccompProfile& profile);
// A fork-like clone3 straight into a v2 group (CLONE_INTO_CGROUP, 5.7 and later): the kernel places the
// child as it is created, with no cgroup.procs write. Without CLONE_VM the child runs on a copy of the
// caller's stack, so it needs no stack of its own; like fork, it returns 0 there.
pid_t cloneIntoCgroup(uint64_t flags, int cgroupDirFd);
// clone3 is missing (before 5.3) or does not know CLONE_INTO_CGROUP (before 5.7): join by cgroup.procs.
bool cloneIntoCgroupUnavailable(int err);
std::vector<int> rawFds(const std::vector<UniqueFd>& fds);

}  // namespace corral::container
