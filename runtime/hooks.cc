// Hooks: fork, state on a pipe as stdin, stdout and stderr collected for the error message, a pidfd
// polled against the hook's timeout.
#include "runtime/hooks.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "core/unique_fd.h"

namespace corral::runtime {
namespace {

// The namespaces of `pid` that differ from ours, opened, in the order setns wants them.
Result<std::vector<UniqueFd>> openNamespacesOf(pid_t pid) {
  std::vector<UniqueFd> fds;
  if (pid <= 0) return fds;
  // time before user: a time namespace belongs to the host's user namespace, where the hook has
  // CAP_SYS_ADMIN only until it joins the container's.
  for (const char* type : {"time", "user", "cgroup", "ipc", "uts", "net", "pid", "mnt"}) {
    const std::string theirs = fmt::format("/proc/{}/ns/{}", pid, type);
    struct stat theirStat {};
    struct stat ourStat {};
    if (::stat(theirs.c_str(), &theirStat) != 0) {
      if (errno == ENOENT && std::string_view(type) == "time" && ::access("/proc/self/ns/time", F_OK) != 0)
        continue;  // a kernel without time namespaces
      return fail(systemError(errno, fmt::format("stat(\"{}\")", theirs)));
    }
    const std::string ours = fmt::format("/proc/self/ns/{}", type);
    if (::stat(ours.c_str(), &ourStat) == 0 && ourStat.st_ino == theirStat.st_ino &&
        ourStat.st_dev == theirStat.st_dev)
      continue;
    UniqueFd fd(::open(theirs.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", theirs)));
    fds.push_back(std::move(fd));
  }
  return fds;
}

// In the forked hook process: joins `namespaces`; if a pid namespace was among them, only a child of ours
// is in it, so we fork once more and pass its exit on. Returns in the process that is to exec the hook.
void enterNamespacesInHook(const std::vector<UniqueFd>& namespaces) {
  for (const UniqueFd& fd : namespaces) {
    if (::setns(fd.get(), 0) != 0) {
      dprintf(2, "setns(hook into the container's namespaces): %s\n", std::strerror(errno));
      ::_exit(126);
    }
  }
  if (namespaces.empty()) return;
  pid_t inside = ::fork();
  if (inside < 0) ::_exit(126);
  if (inside == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
    return;
  }
  int status = 0;
  while (::waitpid(inside, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) ::kill(::getpid(), WTERMSIG(status));
  ::_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 126);
}

Status runHook(const container::OciHook& hook, const std::string& name, const std::string& state,
               const std::vector<UniqueFd>& namespaces) {
  // stdin is a socket, not a pipe: a hook that exits without reading it must not SIGPIPE us (send's
  // MSG_NOSIGNAL), and ignoring SIGPIPE instead would pass SIG_IGN on to the container's process.
  int input[2], outputPipe[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, input) != 0)
    return fail(systemError(errno, "socketpair(AF_UNIX)"));
  UniqueFd inputRead(input[0]), inputWrite(input[1]);
  if (::pipe2(outputPipe, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2()"));
  UniqueFd outputRead(outputPipe[0]), outputWrite(outputPipe[1]);
  std::vector<std::string> argvStorage = hook.args.empty() ? std::vector<std::string>{hook.path} : hook.args;
  std::vector<char*> argv, envp;
  for (auto& arg : argvStorage) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> envStorage = hook.env;
  for (auto& entry : envStorage) envp.push_back(entry.data());
  envp.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return fail(systemError(errno, "fork()"));
  if (pid == 0) {
    ::dup2(inputRead.get(), 0);
    ::dup2(outputWrite.get(), 1);
    ::dup2(outputWrite.get(), 2);
    enterNamespacesInHook(namespaces);
    ::execve(hook.path.c_str(), argv.data(), envp.data());
    ::_exit(127);
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  inputRead.reset();
  outputWrite.reset();
  // The state fits the socket's buffer; a hook that does not read it must not block us.
  (void)!::send(inputWrite.get(), state.data(), state.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  ::shutdown(inputWrite.get(), SHUT_WR);
  inputWrite.reset();
  ::fcntl(outputRead.get(), F_SETFL, O_NONBLOCK);
  std::string collected;
  const auto deadline = hook.timeoutSeconds
                            ? std::chrono::steady_clock::now() + std::chrono::seconds(*hook.timeoutSeconds)
                            : std::chrono::steady_clock::time_point::max();
  bool timedOut = false;
  for (;;) {
    pollfd fds[2] = {{pidfd.get(), POLLIN, 0}, {outputRead.get(), POLLIN, 0}};
    int timeout = -1;
    if (hook.timeoutSeconds) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      timeout = static_cast<int>(std::max<int64_t>(0, left.count()));
    }
    int ready = ::poll(fds, outputRead ? 2 : 1, timeout);
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      timedOut = true;
      ::kill(pid, SIGKILL);
      break;
    }
    if (outputRead && (fds[1].revents & (POLLIN | POLLHUP))) {
      char buffer[4096];
      ssize_t n = ::read(outputRead.get(), buffer, sizeof buffer);
      if (n > 0 && collected.size() < 65536) collected.append(buffer, static_cast<size_t>(n));
      if (n == 0) outputRead.reset();
    }
    if (fds[0].revents & POLLIN) break;
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  while (!collected.empty() && (collected.back() == '\n' || collected.back() == ' ')) collected.pop_back();
  std::string output = collected.empty() ? "" : fmt::format(": {}", collected);
  if (timedOut)
    return fail(Error(ErrorKind::Unavailable, fmt::format("{} \"{}\": timed out after {} s{}", name,
                                                          hook.path, *hook.timeoutSeconds, output)));
  if (WIFSIGNALED(status))
    return fail(internalError("{} \"{}\": killed by signal {}{}", name, hook.path, WTERMSIG(status), output));
  if (WEXITSTATUS(status) == 127 && collected.empty())
    return fail(internalError("{} \"{}\": could not be run (exit status 127)", name, hook.path));
  if (WEXITSTATUS(status) != 0)
    return fail(
        internalError("{} \"{}\": exited with status {}{}", name, hook.path, WEXITSTATUS(status), output));
  return {};
}

}  // namespace

Status runHooks(const std::vector<container::OciHook>& hooks, const std::string& stage,
                const std::string& stateJson, pid_t namespacesOf) {
  if (hooks.empty()) return {};
  auto namespaces = openNamespacesOf(namespacesOf);
  if (!namespaces) return fail(namespaces.error().wrap(fmt::format("hooks.{}", stage)));
  for (size_t i = 0; i < hooks.size(); ++i) {
    if (auto ok = runHook(hooks[i], fmt::format("hooks.{}[{}]", stage, i), stateJson, *namespaces); !ok)
      return ok;
  }
  return {};
}

}  // namespace corral::runtime
