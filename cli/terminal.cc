// `corral exec -it`, `run -it` and `console`: the client's I/O loop for an upgraded connection
// (api/terminal.h). It moves bytes between our stdin/stdout/stderr and the WebSocket and hands every event to
// the state machine (api/terminal_client.h). Raw mode (stdin a terminal and the program has one) and stdin's
// flags are restored on every way out: the program's end, an error, corrald dying, a signal.

// GCC 12 at -O2 reports a null dereference inside Asio's scheduler once inlined (as in api/client.cc): a
// false positive in Boost's code, silenced before any Asio include.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <csignal>
#include <deque>
#include <functional>

#include "api/terminal_client.h"
#include "cli/cli.h"

namespace corral::cli {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using Local = asio::local::stream_protocol;

// Our terminal as it was, put back by the destructor (and so on every return path).
class TerminalGuard {
 public:
  TerminalGuard() {
    flags_ = ::fcntl(STDIN_FILENO, F_GETFL);
    outFlags_ = ::fcntl(STDOUT_FILENO, F_GETFL);
  }
  bool makeRaw() {
    if (::tcgetattr(STDIN_FILENO, &saved_) != 0) return false;
    termios raw = saved_;
    ::cfmakeraw(&raw);
    if (::tcsetattr(STDIN_FILENO, TCSADRAIN, &raw) != 0) return false;
    raw_ = true;
    return true;
  }
  ~TerminalGuard() {
    if (raw_) ::tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_);
    if (flags_ >= 0) ::fcntl(STDIN_FILENO, F_SETFL, flags_);
    if (outFlags_ >= 0) ::fcntl(STDOUT_FILENO, F_SETFL, outFlags_);
  }
  bool raw() const { return raw_; }

 private:
  termios saved_{};
  int flags_ = -1, outFlags_ = -1;
  bool raw_ = false;
};

// Our stdout may share its open file with stdin (a terminal), which asio makes non-blocking: wait for room.
void writeFully(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t wrote = ::write(fd, data.data(), data.size());
    if (wrote > 0) {
      data.remove_prefix(static_cast<size_t>(wrote));
    } else if (wrote < 0 && errno == EAGAIN) {
      pollfd room{fd, POLLOUT, 0};
      ::poll(&room, 1, 1000);
    } else if (wrote < 0 && errno == EINTR) {
      continue;
    } else {
      return;  // our stdout is gone: nothing to show the output on
    }
  }
}

std::optional<TerminalSize> windowSize() {
  for (int fd : {STDIN_FILENO, STDOUT_FILENO}) {
    winsize window{};
    if (::ioctl(fd, TIOCGWINSZ, &window) == 0 && window.ws_row > 0)
      return TerminalSize{window.ws_row, window.ws_col};
  }
  return std::nullopt;
}

class TerminalLoop {
 public:
  TerminalLoop(api::TerminalClient& client, TerminalGuard& guard, bool wantRaw, bool readStdin)
      : client_(client),
        guard_(guard),
        wantRaw_(wantRaw),
        readStdin_(readStdin),
        ws_(io_),
        stdin_(io_),
        signals_(io_),
        closeTimer_(io_) {}

  int run(const std::string& socketPath, const api::TerminalTarget& target) {
    beast::error_code ec;
    beast::get_lowest_layer(ws_).connect(Local::endpoint(socketPath), ec);
    if (ec) {
      printError(unavailable("corrald is not running (connect(\"{}\"): {})", socketPath, ec.message()));
      return 1;
    }
    websocket::response_type response;
    ws_.set_option(websocket::stream_base::decorator([](websocket::request_type& request) {
      request.set(beast::http::field::user_agent, "corral/" CORRAL_VERSION);
    }));
    // The asynchronous handshake keeps a declined answer's body (the synchronous one drops it): corrald's
    // error JSON, e.g. 409 "instance \"web-1\" is stopped, not running".
    ws_.async_handshake(response, "corrald", renderTerminalTarget(target),
                        [&ec](beast::error_code done) { ec = done; });
    io_.run();
    io_.restart();
    if (ec) {
      if (response.result_int() >= 400) {
        json body = json::parse(response.body(), nullptr, false);
        printError(api::errorFromJson(body, static_cast<int>(response.result_int())));
      } else {
        printError(unavailable("opening the terminal on {}: {}", socketPath, ec.message()));
      }
      return 1;
    }
    ws_.binary(true);
    // Raw once the session is open: an error before it prints as usual; the guard restores it on every
    // return.
    raw_ = wantRaw_ && guard_.makeRaw();
    signals_.add(SIGWINCH);
    signals_.add(SIGTERM);
    signals_.add(SIGHUP);
    if (!raw_) signals_.add(SIGINT);  // in raw mode Ctrl-C is a byte for the program
    waitSignal();
    readServer();
    if (readStdin_) startStdin();
    if (auto size = windowSize()) apply(client_.onResize(*size));
    io_.run();
    return exitCode_.value_or(1);
  }

 private:
  void waitSignal() {
    signals_.async_wait([this](beast::error_code ec, int signal) {
      if (ec) return;
      if (signal == SIGWINCH) {
        if (auto size = windowSize()) apply(client_.onResize(*size));
      } else {
        apply(client_.onSignal(signal));
      }
      waitSignal();
    });
  }

  void readServer() {
    ws_.async_read(readBuffer_, [this](beast::error_code ec, size_t) {
      if (ec) return apply(client_.onClosed());
      const std::string frame = beast::buffers_to_string(readBuffer_.data());
      readBuffer_.consume(readBuffer_.size());
      apply(client_.onServerFrame(ws_.got_text(), frame));
      if (!client_.done()) readServer();
    });
  }

  void startStdin() {
    struct stat info {};
    if (::fstat(STDIN_FILENO, &info) == 0 && S_ISREG(info.st_mode)) {
      fileInput_ = true;  // epoll refuses regular files: read them in turns with the rest of the loop
      return readFileStdin();
    }
    int copy = ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0);
    beast::error_code ec;
    if (copy >= 0) stdin_.assign(copy, ec);
    if (copy < 0 || ec) return apply(client_.onInputEnd());
    readStdin();
  }

  void readFileStdin() {
    asio::post(io_, [this] {
      if (client_.done()) return;
      ssize_t got = ::read(STDIN_FILENO, inputBuffer_.data(), inputBuffer_.size());
      if (got <= 0) return apply(client_.onInputEnd());
      apply(client_.onInput(std::string_view(inputBuffer_.data(), static_cast<size_t>(got))));
      afterSent_ = [this] { readFileStdin(); };
      if (queue_.empty()) std::exchange(afterSent_, {})();
    });
  }

  void readStdin() {
    stdin_.async_read_some(asio::buffer(inputBuffer_), [this](beast::error_code ec, size_t n) {
      if (ec || n == 0) return apply(client_.onInputEnd());
      apply(client_.onInput(std::string_view(inputBuffer_.data(), n)));
      if (!client_.done()) readStdin();
    });
  }

  void apply(api::TerminalStep step) {
    if (!step.output.empty()) writeFully(STDOUT_FILENO, step.output);
    if (!step.error.empty()) writeFully(STDERR_FILENO, step.error);
    if (!step.notice.empty())
      writeFully(STDERR_FILENO, fmt::format("corral: {}{}", step.notice, raw_ ? "\r\n" : "\n"));
    for (auto& frame : step.send) {
      queue_.push_back(std::move(frame));
      if (queue_.size() == 1) writeNext();
    }
    if (step.exitCode) exitCode_ = step.exitCode;
    if (step.closeConnection) {
      closing_ = true;
      if (queue_.empty()) close();
    }
  }

  void writeNext() {
    if (queue_.empty()) return;
    ws_.text(queue_.front().text);
    ws_.async_write(asio::buffer(queue_.front().data), [this](beast::error_code ec, size_t) {
      if (ec) {
        queue_.clear();
        return apply(client_.onClosed());
      }
      queue_.pop_front();
      if (!queue_.empty()) return writeNext();
      if (closing_) return close();
      if (afterSent_) std::exchange(afterSent_, {})();
    });
  }

  // A polite close, bounded: corrald gone or slow does not keep corral waiting.
  void close() {
    if (closed_) return;
    closed_ = true;
    closeTimer_.expires_after(std::chrono::milliseconds(500));
    closeTimer_.async_wait([this](beast::error_code) { io_.stop(); });
    ws_.async_close(websocket::close_code::normal, [this](beast::error_code) { io_.stop(); });
  }

  api::TerminalClient& client_;
  TerminalGuard& guard_;
  bool wantRaw_, readStdin_, raw_ = false;
  asio::io_context io_;
  websocket::stream<Local::socket> ws_;
  asio::posix::stream_descriptor stdin_;
  asio::signal_set signals_;
  asio::steady_timer closeTimer_;
  beast::flat_buffer readBuffer_;
  std::array<char, 32 * 1024> inputBuffer_{};
  std::deque<api::TerminalStep::Frame> queue_;
  std::function<void()> afterSent_;
  bool fileInput_ = false, closing_ = false, closed_ = false;
  std::optional<int> exitCode_;
};

}  // namespace

int runTerminal(const std::string& socketPath, api::TerminalTarget target, bool* detached) {
  TerminalGuard guard;
  const bool stdinTty = ::isatty(STDIN_FILENO) == 1;
  if (target.request.tty) {
    if (auto size = windowSize()) target.request.size = *size;
  }
  const bool detachable = target.kind == api::TerminalTarget::Kind::console;
  api::TerminalClient client(target.name, detachable, target.request.tty);
  try {
    TerminalLoop loop(client, guard, target.request.tty && target.request.stdinOpen && stdinTty,
                      target.request.stdinOpen);
    int code = loop.run(socketPath, target);
    if (detached) *detached = client.detached();
    return code;
  } catch (const std::exception& e) {
    printError(unavailable("talking to corrald on {}: {}", socketPath, e.what()));
    return 1;
  }
}

}  // namespace corral::cli
