// corral-reaper: the tiny init `corral run --init` puts at PID 1 of a container (bind-mounted read-only at
// /dev/init), like docker-init (tini). It starts the user's command as its child, forwards the signals a
// supervisor sends (TERM, INT, HUP, QUIT, USR1, USR2, WINCH) to it, reaps every process that ends up
// re-parented to PID 1, and exits with the child's exit code (128+signal when the child was killed).
// Static, so it runs in any rootfs. The pure helpers are free functions so
// tests/unit/container/reaper_test.cc can include this file with CORRAL_REAPER_NO_MAIN.
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>

namespace corral::reaper {

inline constexpr std::array kForwardedSignals = {SIGTERM, SIGINT,  SIGHUP,  SIGQUIT,
                                                 SIGUSR1, SIGUSR2, SIGWINCH};

// The shell's convention, as corral and docker report a container's exit: the code, or 128 + signal.
inline int exitCodeFor(int waitStatus) {
  if (WIFEXITED(waitStatus)) return WEXITSTATUS(waitStatus);
  if (WIFSIGNALED(waitStatus)) return 128 + WTERMSIG(waitStatus);
  return 1;
}

// Index of the command in argv: after an optional "--"; argc when there is none.
inline int commandIndex(int argc, char** argv) {
  int first = 1;
  if (first < argc && strcmp(argv[first], "--") == 0) ++first;
  return first;
}

// What the child runs into when exec fails: 127 for a missing command, 126 for any other reason (as sh).
inline int execFailureCode(int errnum) {
  return errnum == ENOENT || errnum == ENOTDIR ? 127 : 126;
}

inline sigset_t waitedSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  for (int sig : kForwardedSignals) sigaddset(&set, sig);
  return set;
}

// Reaps every child that has ended; returns true once `child` is among them, its status in *status.
inline bool reapAll(pid_t child, int* status) {
  bool childEnded = false;
  for (;;) {
    int waitStatus = 0;
    pid_t pid = waitpid(-1, &waitStatus, WNOHANG);
    if (pid < 0 && errno == EINTR) continue;
    if (pid <= 0) return childEnded;  // 0: others still running; -1 ECHILD: nobody left
    if (pid == child) {
      childEnded = true;
      *status = waitStatus;
    }
  }
}

inline int run(int argc, char** argv) {
  const int first = commandIndex(argc, argv);
  if (first >= argc) {
    fprintf(stderr, "usage: corral-reaper [--] COMMAND [ARG]...\n");
    return 2;
  }
  // Blocked signals reach PID 1 of a pid namespace even without a handler (an unblocked one with the
  // default action would be dropped there), and sigwaitinfo takes them in order.
  const sigset_t waited = waitedSignals();
  sigset_t previous;
  if (sigprocmask(SIG_BLOCK, &waited, &previous) != 0) {
    fprintf(stderr, "corral-reaper: sigprocmask: %s\n", strerror(errno));
    return 1;
  }
  const pid_t child = fork();
  if (child < 0) {
    fprintf(stderr, "corral-reaper: fork: %s\n", strerror(errno));
    return 1;
  }
  if (child == 0) {
    sigprocmask(SIG_SETMASK, &previous, nullptr);
    execvp(argv[first], argv + first);
    int errnum = errno;
    fprintf(stderr, "corral-reaper: exec \"%s\": %s\n", argv[first], strerror(errnum));
    _exit(execFailureCode(errnum));
  }
  for (;;) {
    siginfo_t info{};
    int sig = sigwaitinfo(&waited, &info);
    if (sig < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "corral-reaper: sigwaitinfo: %s\n", strerror(errno));
      return 1;
    }
    if (sig != SIGCHLD) {
      kill(child, sig);
      continue;
    }
    int status = 0;
    // The rest of the namespace dies with PID 1; what already ended was reaped just now.
    if (reapAll(child, &status)) return exitCodeFor(status);
  }
}

}  // namespace corral::reaper

#ifndef CORRAL_REAPER_NO_MAIN
int main(int argc, char** argv) {
  return corral::reaper::run(argc, argv);
}
#endif
