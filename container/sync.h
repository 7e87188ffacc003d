// The sync protocol between a container's starter and its child (SOCK_SEQPACKET: one record per message):
// the parent's "go", the child's progress, and on failure the step and errno the parent turns into a
// message (child.h childStepName). Internal to the runtime (container/runtime.h).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>

#include "container/mounts.h"
#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

using Clock = std::chrono::steady_clock;

// WaitingForStart: init is set up and waits on the exec fifo (BundleSetup::execFifo) for `start`.
// ConsoleMaster: carries the pty master (SCM_RIGHTS) of a process given a terminal (console.h).
enum class RecordKind : int32_t {
  Go,
  CgroupJoined,
  RootfsReady,
  Execing,
  Failure,
  ExecPid,
  WaitingForStart,
  ConsoleMaster,
  MountsReady,  // mounts made, pivot_root not yet: waits for "go" (InitChildContext::waitBeforePivotRoot)
  InitPidfd,    // from the intermediate that joined a user namespace: init's pidfd (SCM_RIGHTS)
};

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
  SetUser,            // the configured uid, gid and supplementary groups
  JoinNamespacePath,  // index into BundleSetup::joins
  Sysctl,             // index into BundleSetup::sysctls
  Domainname,
  ExecFifo,
  Console,            // index: which call of openConsoleInChild (see consoleCallName)
  AttachOverlay,      // move_mount of the parent's detached overlay onto the rootfs mount point
  JoinUserNamespace,  // setns of BundleSetup::userNamespacePath, by the intermediate
  CloneInit,          // the intermediate's clone3 of init in the joined user namespace
};

struct SyncRecord {
  RecordKind kind = RecordKind::Go;
  ChildStep step = ChildStep::WaitForGo;
  MountStep mountStep = MountStep::Mount;
  int32_t index = 0;
  int32_t errnum = 0;
  int32_t pid = 0;
};

void sendRecord(int fd, const SyncRecord& record);
// One message of `size` bytes with `passed` attached (SCM_RIGHTS), retried on EINTR. No allocation: a
// clone()d child may call it. Returns sendmsg's result (-1 with errno set).
ssize_t sendWithFd(int socket, const void* data, size_t size, int passed);
// Sends the failed step to the parent and exits (127).
[[noreturn]] void childFail(int fd, ChildStep step, int errnum, int32_t index = 0,
                            MountStep mountStep = MountStep::Mount);
// After `start` released init from its exec fifo (kept open, close-on-exec, by the child) no one reads the
// sync socket: the failure goes into the fifo first, where `start` waits for its end (execve closes it),
// then to the socket as before.
[[noreturn]] void childFailAfterStart(int execFifo, int fd, ChildStep step, int errnum);
// What `start` read from the exec fifo after init's byte: a failure record, or nothing (execve happened).
std::optional<SyncRecord> failureAfterStart(const void* data, size_t size);
// Blocks until the parent says "go"; a closed socket means the parent gave up, so the child just leaves.
void waitForGoInChild(int fd);

struct SyncPair {
  UniqueFd parent, child;
};

// Both ends are kept above fd 2 so that the child's stdio setup can never overwrite its own sync socket.
Result<SyncPair> makeSyncPair();
Status sendGo(int fd);

struct ReadOutcome {
  std::optional<SyncRecord> failure;
  bool reachedExec = false;
  bool waitingForStart = false;  // init waits on its exec fifo (the read stopped there)
  bool mountsReady = false;      // init waits for "go" before pivot_root (the read stopped there)
  UniqueFd consoleMaster;        // the pty master a ConsoleMaster record brought
  UniqueFd initPidfd;            // init's pidfd an InitPidfd record brought (the read stopped there)
  pid_t execPid = -1;
  std::optional<Clock::time_point> cgroupJoined;
  std::optional<Clock::time_point> rootfsReady;
};

// Reads records until EOF (every copy of the child's end closed: execve's close-on-exec, or exit).
Result<ReadOutcome> readChildRecords(int fd);
// A child that closed the socket without saying it reached execve died during setup (a signal, say).
Error childVanished(pid_t pid);

}  // namespace corral::container
