// A helper process held at a gate until its pid is recorded (daemon/gated_spawn.h).
#include "daemon/gated_spawn.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "core/unique_fd.h"

namespace corral::daemon {

Result<pid_t> spawnGated(const GatedSpawn& spawn, const std::function<Status(pid_t)>& record) {
  if (spawn.args.empty()) return fail(internalError("spawnGated: no command"));
  std::vector<std::string> args = spawn.args;
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  int gate[2];
  if (::pipe2(gate, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2()"));
  UniqueFd gateRead(gate[0]), gateWrite(gate[1]);
  const int gateFd = gateRead.get();
  const int gateWriteFd = gateWrite.get();

  pid_t pid = ::fork();
  if (pid < 0) return fail(systemError(errno, "fork()"));
  if (pid == 0) {
    // The child of a threaded parent: async-signal-safe calls only until execvp.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    ::close(gateWriteFd);  // the child's copy, or the gate would never end
    char go = 0;
    ssize_t got;
    do {
      got = ::read(gateFd, &go, 1);
    } while (got < 0 && errno == EINTR);
    if (got != 1) ::_exit(1);  // the parent refused to go on, or is gone
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (spawn.ownProcessGroup) ::setpgid(0, 0);
    if (spawn.netnsFd >= 0 && ::setns(spawn.netnsFd, CLONE_NEWNET) != 0) {
      [[maybe_unused]] ssize_t n =
          ::write(spawn.outputFd, spawn.setnsFailed.data(), spawn.setnsFailed.size());
      ::_exit(126);
    }
    ::dup2(spawn.stdinFd, 0);
    ::dup2(spawn.outputFd, 1);
    ::dup2(spawn.outputFd, 2);
    ::execvp(argv[0], argv.data());
    [[maybe_unused]] ssize_t n = ::write(spawn.outputFd, spawn.execFailed.data(), spawn.execFailed.size());
    ::_exit(127);
  }
  gateRead.reset();
  if (Status recorded = record(pid); !recorded) {
    gateWrite.reset();  // the child reads the end of the gate and exits
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return fail(std::move(recorded).error());
  }
  const char go = 1;
  if (::write(gateWrite.get(), &go, 1) != 1) {
    const int error = errno;
    gateWrite.reset();
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return fail(systemError(error, "write(the child's gate)"));
  }
  return pid;
}

}  // namespace corral::daemon
