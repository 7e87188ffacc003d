// Container stdio sessions (daemon/container_stdio.h): exec'd programs, and the console pump of a container
// started with -t or -i.
#include "daemon/container_stdio.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "core/log.h"

namespace corral::daemon {
namespace {

// Output nobody saw (no client attached) kept for the next client, so `run -it` shows the shell's first
// prompt although the client attaches after the start: at most this much, the newest (under a pipe's 64 KiB).
constexpr size_t kUnseenBytes = 16 * 1024;

Status setNonBlocking(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0)
    return fail(systemError(errno, fmt::format("fcntl({}, F_SETFL, O_NONBLOCK)", fd)));
  return {};
}

Status resizeTerminal(int master, TerminalSize size) {
  if (size.rows == 0 && size.cols == 0) return {};
  winsize window{.ws_row = size.rows, .ws_col = size.cols, .ws_xpixel = 0, .ws_ypixel = 0};
  if (::ioctl(master, TIOCSWINSZ, &window) != 0)
    return fail(systemError(errno, fmt::format("ioctl(TIOCSWINSZ, {}x{})", size.rows, size.cols)));
  return {};
}

StdioExit exitOf(int status) {
  StdioExit exit;
  if (WIFSIGNALED(status)) {
    exit.signal = WTERMSIG(status);
  } else {
    exit.exitCode = WEXITSTATUS(status);
  }
  return exit;
}

class ExecSession final : public StdioSession {
 public:
  ExecSession(pid_t pid, UniqueFd pidfd, UniqueFd master, UniqueFd stdinWrite, UniqueFd stdoutRead,
              UniqueFd stderrRead)
      : pid_(pid),
        pidfd_(std::move(pidfd)),
        master_(std::move(master)),
        stdinWrite_(std::move(stdinWrite)),
        stdoutRead_(std::move(stdoutRead)),
        stderrRead_(std::move(stderrRead)) {}
  ~ExecSession() override {
    if (!reaped_) detach();
  }
  bool tty() const override { return master_.get() >= 0; }
  int inputFd() const override { return tty() ? master_.get() : stdinWrite_.get(); }
  int outputFd() const override { return tty() ? master_.get() : stdoutRead_.get(); }
  int errorFd() const override { return tty() ? -1 : stderrRead_.get(); }
  void closeInput() override {
    if (!tty()) stdinWrite_.reset();
  }
  Status resize(TerminalSize size) override {
    if (!tty()) return fail(conflict("a resize needs a terminal; this program was started without tty"));
    return resizeTerminal(master_.get(), size);
  }
  int exitFd() const override { return pidfd_.get(); }
  Result<StdioExit> exitStatus() override {
    if (reaped_) return status_;
    int status = 0;
    pid_t waited = ::waitpid(pid_, &status, WNOHANG);
    if (waited < 0) return fail(systemError(errno, fmt::format("waitpid({})", pid_)));
    if (waited == 0) return fail(conflict("the program (pid {}) has not ended yet", pid_));
    reaped_ = true;
    status_ = exitOf(status);
    return status_;
  }
  void detach() override {
    if (reaped_) return;
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    reaped_ = true;
    status_ = exitOf(status);
  }

 private:
  pid_t pid_;
  UniqueFd pidfd_, master_, stdinWrite_, stdoutRead_, stderrRead_;
  bool reaped_ = false;
  StdioExit status_;
};

// Writes all of `data` to a non-blocking pipe, waiting for room while `wake` stays unread; false once the
// reader is gone (EPIPE) or the wait was woken.
bool writeAll(int fd, std::string_view data, int wake) {
  while (!data.empty()) {
    ssize_t wrote = ::write(fd, data.data(), data.size());
    if (wrote > 0) {
      data.remove_prefix(static_cast<size_t>(wrote));
      continue;
    }
    if (wrote < 0 && errno == EINTR) continue;
    if (wrote < 0 && errno != EAGAIN) return false;
    std::array<pollfd, 2> waits{pollfd{fd, POLLOUT, 0}, pollfd{wake, POLLIN, 0}};
    if (::poll(waits.data(), waits.size(), -1) < 0 && errno != EINTR) return false;
    if (waits[1].revents != 0) return false;
    if ((waits[0].revents & (POLLERR | POLLHUP)) != 0) return false;
  }
  return true;
}

}  // namespace

std::unique_ptr<StdioSession> execSession(pid_t pid, UniqueFd master, UniqueFd stdinWrite,
                                          UniqueFd stdoutRead, UniqueFd stderrRead) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  for (const UniqueFd* fd : {&master, &stdinWrite, &stdoutRead, &stderrRead})
    if (fd->get() >= 0) [[maybe_unused]]
      auto ignored = setNonBlocking(fd->get());
  return std::make_unique<ExecSession>(pid, std::move(pidfd), std::move(master), std::move(stdinWrite),
                                       std::move(stdoutRead), std::move(stderrRead));
}

struct ContainerConsole::State {
  std::string name;
  bool tty = false;
  UniqueFd wake;       // eventfd: the pump stops
  UniqueFd exitEvent;  // eventfd: written once the first process's end is known
  UniqueFd log;
  std::array<UniqueFd, 2> outputs;  // the pump's: the master (tty) or stdout and stderr (pipes)
  std::mutex mutex;
  UniqueFd input;  // the master (tty) or the write end of the first process's stdin
  bool attached = false;
  uint64_t client = 0;                  // which attach the client pipes belong to
  std::array<UniqueFd, 2> clientPipes;  // the write ends of the attached client's output (and error)
  std::string unseen;                   // output while nobody was attached (newest kUnseenBytes)
  bool outputEnded = false;
  std::optional<StdioExit> exit;
};

namespace {

class ConsoleSession final : public StdioSession {
 public:
  ConsoleSession(std::shared_ptr<ContainerConsole::State> state, uint64_t client, UniqueFd input,
                 UniqueFd output, UniqueFd error)
      : state_(std::move(state)),
        client_(client),
        input_(std::move(input)),
        output_(std::move(output)),
        error_(std::move(error)) {}
  ~ConsoleSession() override { detach(); }
  bool tty() const override { return state_->tty; }
  int inputFd() const override { return input_.get(); }
  int outputFd() const override { return output_.get(); }
  int errorFd() const override { return error_.get(); }
  void closeInput() override {
    if (state_->tty) return;
    input_.reset();
    std::lock_guard lock(state_->mutex);
    state_->input.reset();  // the first process reads EOF; a later client has no stdin to give
  }
  Status resize(TerminalSize size) override {
    if (!state_->tty)
      return fail(
          conflict("a resize needs a terminal; instance \"{}\" was started without -t", state_->name));
    return resizeTerminal(input_.get(), size);
  }
  int exitFd() const override { return state_->exitEvent.get(); }
  Result<StdioExit> exitStatus() override {
    std::lock_guard lock(state_->mutex);
    if (!state_->exit) return fail(conflict("instance \"{}\" has not ended yet", state_->name));
    return *state_->exit;
  }
  void detach() override {
    std::lock_guard lock(state_->mutex);
    if (!state_->attached || state_->client != client_) return;
    state_->attached = false;
    for (auto& pipe : state_->clientPipes) pipe.reset();
  }

 private:
  std::shared_ptr<ContainerConsole::State> state_;
  uint64_t client_;
  UniqueFd input_, output_, error_;
};

}  // namespace

Result<std::shared_ptr<ContainerConsole>> ContainerConsole::start(std::string name, bool tty, UniqueFd master,
                                                                  UniqueFd stdinWrite, UniqueFd stdoutRead,
                                                                  UniqueFd stderrRead, UniqueFd log) {
  auto state = std::make_shared<State>();
  state->name = std::move(name);
  state->tty = tty;
  state->wake.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  state->exitEvent.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!state->wake || !state->exitEvent) return fail(systemError(errno, "eventfd(EFD_CLOEXEC)"));
  state->log = std::move(log);
  if (tty) {
    state->outputs[0].reset(::fcntl(master.get(), F_DUPFD_CLOEXEC, 0));
    if (!state->outputs[0]) return fail(systemError(errno, "fcntl(pty master, F_DUPFD_CLOEXEC)"));
    state->input = std::move(master);
  } else {
    state->outputs[0] = std::move(stdoutRead);
    state->outputs[1] = std::move(stderrRead);
    state->input = std::move(stdinWrite);
  }
  std::shared_ptr<ContainerConsole> console(new ContainerConsole());
  console->state_ = std::move(state);
  console->pump_ = std::thread([state = console->state_] {
    // The pump: every byte of output goes to the log, and to the attached client if there is one.
    std::array<char, 65536> buffer{};
    for (;;) {
      std::array<pollfd, 3> waits{pollfd{state->wake.get(), POLLIN, 0},
                                  pollfd{state->outputs[0].get(), POLLIN, 0},
                                  pollfd{state->outputs[1].get(), POLLIN, 0}};
      if (waits[1].fd < 0 && waits[2].fd < 0) break;
      if (::poll(waits.data(), waits.size(), -1) < 0) {
        if (errno == EINTR) continue;
        log::error("instance \"{}\": console pump: poll: {}", state->name, std::strerror(errno));
        break;
      }
      if (waits[0].revents != 0) return;  // closed: the run is forgotten
      for (size_t i = 0; i < 2; ++i) {
        if (waits[i + 1].revents == 0) continue;
        ssize_t got = ::read(state->outputs[i].get(), buffer.data(), buffer.size());
        if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
        if (got <= 0) {  // EOF (pipes) or EIO (the pty's last slave closed): the program has gone
          state->outputs[i].reset();
          continue;
        }
        const std::string_view data(buffer.data(), static_cast<size_t>(got));
        if (state->log && !writeAll(state->log.get(), data, state->wake.get()))
          log::warn("instance \"{}\": writing its log: {}", state->name, std::strerror(errno));
        UniqueFd client;
        {
          std::lock_guard lock(state->mutex);
          if (state->attached && state->clientPipes[i]) {
            client.reset(::fcntl(state->clientPipes[i].get(), F_DUPFD_CLOEXEC, 0));
          } else {
            state->unseen.append(data);
            if (state->unseen.size() > kUnseenBytes)
              state->unseen.erase(0, state->unseen.size() - kUnseenBytes);
          }
        }
        if (client) writeAll(client.get(), data, state->wake.get());  // a client gone (EPIPE) has detached
      }
    }
    std::lock_guard lock(state->mutex);
    state->outputEnded = true;
    for (auto& pipe : state->clientPipes) pipe.reset();  // the client reads EOF, then the exit
  });
  return console;
}

ContainerConsole::~ContainerConsole() {
  close();
}

void ContainerConsole::close() {
  if (!pump_.joinable()) return;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t ignored = ::write(state_->wake.get(), &one, sizeof one);
  pump_.join();
}

Result<std::unique_ptr<StdioSession>> ContainerConsole::attach() {
  std::lock_guard lock(state_->mutex);
  if (state_->attached)
    return fail(
        conflict("instance \"{}\": another client is attached to its console; one at a time", state_->name));
  if (state_->outputEnded || state_->exit)
    return fail(conflict("instance \"{}\": its first process has ended", state_->name));
  UniqueFd input;
  if (state_->input) {
    input.reset(::fcntl(state_->input.get(), F_DUPFD_CLOEXEC, 0));
    if (!input) return fail(systemError(errno, "fcntl(console input, F_DUPFD_CLOEXEC)"));
  }
  std::array<UniqueFd, 2> reads, writes;
  for (size_t i = 0; i < (state_->tty ? 1u : 2u); ++i) {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC | O_NONBLOCK) != 0) return fail(systemError(errno, "pipe2(O_NONBLOCK)"));
    reads[i].reset(ends[0]);
    writes[i].reset(ends[1]);
  }
  // What nobody saw yet goes first (it fits in the empty pipe).
  if (!state_->unseen.empty()) {
    [[maybe_unused]] ssize_t ignored = ::write(writes[0].get(), state_->unseen.data(), state_->unseen.size());
    state_->unseen.clear();
  }
  state_->attached = true;
  ++state_->client;
  state_->clientPipes = std::move(writes);
  return std::unique_ptr<StdioSession>(std::make_unique<ConsoleSession>(
      state_, state_->client, std::move(input), std::move(reads[0]), std::move(reads[1])));
}

void ContainerConsole::ended(StdioExit exit) {
  {
    std::lock_guard lock(state_->mutex);
    state_->exit = exit;
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t ignored = ::write(state_->exitEvent.get(), &one, sizeof one);
}

}  // namespace corral::daemon
