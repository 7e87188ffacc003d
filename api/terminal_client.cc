// The terminal client's state machine (api/terminal_client.h).
#include "api/terminal_client.h"

#include <csignal>
#include <cstring>

namespace corral::api {

int exitCodeOf(const StdioExit& exit) {
  if (exit.signal) return 128 + *exit.signal;
  return exit.exitCode.value_or(0);
}

TerminalStep TerminalClient::finish(TerminalStep step, int code) {
  done_ = true;
  step.closeConnection = true;
  step.exitCode = code;
  return step;
}

TerminalStep TerminalClient::onInput(std::string_view bytes) {
  TerminalStep step;
  if (done_ || inputEnded_ || bytes.empty()) return step;
  size_t detach = detachable_ && tty_ ? bytes.find(kDetachKey) : std::string_view::npos;
  std::string_view typed = bytes.substr(0, detach);
  if (!typed.empty()) step.send.push_back({false, encodeStreamFrame(StdioStream::input, typed)});
  if (detach == std::string_view::npos) return step;
  detached_ = true;
  step.notice =
      fmt::format("detached from {}; it keeps running (corral console {} attaches again)", name_, name_);
  return finish(std::move(step), 0);
}

TerminalStep TerminalClient::onInputEnd() {
  TerminalStep step;
  if (done_ || inputEnded_) return step;
  inputEnded_ = true;
  step.send.push_back({true, renderClientControl(InputEndControl{})});
  return step;
}

TerminalStep TerminalClient::onResize(TerminalSize size) {
  TerminalStep step;
  if (done_ || !tty_ || (size.rows == 0 && size.cols == 0)) return step;
  step.send.push_back({true, renderClientControl(ResizeControl{size})});
  return step;
}

TerminalStep TerminalClient::onServerFrame(bool text, std::string_view frame) {
  TerminalStep step;
  if (done_) return step;
  if (text) {
    auto control = parseServerControl(frame);
    if (!control) {
      step.notice =
          fmt::format("corrald sent a control frame corral cannot read: {}", control.error().message());
    } else if (const auto* exit = std::get_if<ExitControl>(&*control)) {
      exitCode_ = exitCodeOf(exit->exit);
    } else {
      const Error& error = std::get<ErrorControl>(*control).error;
      step.notice = fmt::format("error: {}", error.message());
      error_ = error;
    }
    return step;
  }
  auto decoded = decodeServerFrame(frame);
  if (!decoded) {
    step.notice = fmt::format("corrald sent a frame corral cannot read: {}", decoded.error().message());
  } else if (decoded->stream == StdioStream::output) {
    step.output = decoded->data;
  } else {
    step.error = decoded->data;
  }
  return step;
}

TerminalStep TerminalClient::onClosed() {
  TerminalStep step;
  if (done_) return step;
  if (exitCode_) return finish(std::move(step), *exitCode_);
  if (!error_)
    step.notice =
        fmt::format("the connection to corrald closed before {}'s program ended (corrald stopped?)", name_);
  return finish(std::move(step), 1);
}

TerminalStep TerminalClient::onSignal(int signal) {
  TerminalStep step;
  if (done_) return step;
  const char* name = ::sigabbrev_np(signal);
  step.notice = fmt::format("received SIG{}; leaving {}{}", name ? name : "?", name_,
                            detachable_ ? " (it keeps running)" : " (its program is killed)");
  return finish(std::move(step), 128 + signal);
}

}  // namespace corral::api
