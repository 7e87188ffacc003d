// The sync protocol's records, sent and read on both sides of the socketpair.
#include "container/sync.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace corral::container {

void sendRecord(int fd, const SyncRecord& record) {
  while (::send(fd, &record, sizeof record, MSG_NOSIGNAL) < 0 && errno == EINTR) {
  }
}

ssize_t sendWithFd(int socket, const void* data, size_t size, int passed) {
  iovec payload{const_cast<void*>(data), size};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr message{};
  message.msg_iov = &payload;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  cmsghdr* header = CMSG_FIRSTHDR(&message);
  header->cmsg_level = SOL_SOCKET;
  header->cmsg_type = SCM_RIGHTS;
  header->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(header), &passed, sizeof(int));
  ssize_t sent;
  do {
    sent = ::sendmsg(socket, &message, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  return sent;
}

[[noreturn]] void childFail(int fd, ChildStep step, int errnum, int32_t index, MountStep mountStep) {
  SyncRecord record;
  record.kind = RecordKind::Failure;
  record.step = step;
  record.mountStep = mountStep;
  record.index = index;
  record.errnum = errnum;
  sendRecord(fd, record);
  ::_exit(127);
}

[[noreturn]] void childFailAfterStart(int execFifo, int fd, ChildStep step, int errnum) {
  SyncRecord record;
  record.kind = RecordKind::Failure;
  record.step = step;
  record.errnum = errnum;
  // One record is far below PIPE_BUF: written whole or not at all.
  while (::write(execFifo, &record, sizeof record) < 0 && errno == EINTR) {
  }
  childFail(fd, step, errnum);
}

std::optional<SyncRecord> failureAfterStart(const void* data, size_t size) {
  SyncRecord record;
  if (size != sizeof record) return std::nullopt;
  std::memcpy(&record, data, sizeof record);
  if (record.kind != RecordKind::Failure) return std::nullopt;
  return record;
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

// Reads records until EOF (every copy of the child's end closed: execve's close-on-exec, or exit).
Result<ReadOutcome> readChildRecords(int fd) {
  ReadOutcome outcome;
  for (;;) {
    SyncRecord record;
    iovec data{&record, sizeof record};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &message, MSG_CMSG_CLOEXEC);
    UniqueFd passed;
    if (n > 0) {
      for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr;
           header = CMSG_NXTHDR(&message, header)) {
        if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
        int received = -1;
        std::memcpy(&received, CMSG_DATA(header), sizeof received);
        passed.reset(received);
      }
    }
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
      case RecordKind::WaitingForStart:
        outcome.waitingForStart = true;
        return outcome;
      case RecordKind::MountsReady:
        outcome.mountsReady = true;
        return outcome;
      case RecordKind::ExecPid:
        outcome.execPid = record.pid;
        break;
      case RecordKind::Failure:
        outcome.failure = record;
        return outcome;
      case RecordKind::ConsoleMaster:
        outcome.consoleMaster = std::move(passed);
        break;
      case RecordKind::InitPidfd:
        outcome.initPidfd = std::move(passed);
        return outcome;
      case RecordKind::Go:
        break;
    }
  }
}

}  // namespace corral::container
