// The client's half of the terminal protocol (api/terminal.h) as a pure state machine: what the user typed,
// what the window did and what corrald sent go in; frames to send, bytes to show and, once, the exit code
// come out. The CLI's I/O loop (cli/terminal.cc) only moves bytes; every decision is here, unit-tested.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/terminal.h"

namespace corral::api {

// Ctrl-] detaches from a console (as with virsh console and telnet); exec sessions have no detach (leaving
// ends the program).
inline constexpr char kDetachKey = '\x1d';

struct TerminalStep {
  struct Frame {
    bool text = false;
    std::string data;
  };
  std::vector<Frame> send;    // to corrald, in order
  std::string output, error;  // to our stdout and stderr
  std::string notice;         // a line for the user on stderr ("detached from web-1"), without newline
  bool closeConnection = false;
  std::optional<int> exitCode;  // set once: the session is over and corral exits with it
};

class TerminalClient {
 public:
  // `name` for notices; `detachable`: a console (Ctrl-] detaches); `tty`: the program has a terminal.
  TerminalClient(std::string name, bool detachable, bool tty)
      : name_(std::move(name)), detachable_(detachable), tty_(tty) {}

  TerminalStep onInput(std::string_view bytes);
  TerminalStep onInputEnd();                 // our stdin reached EOF
  TerminalStep onResize(TerminalSize size);  // at start and on SIGWINCH (tty only)
  TerminalStep onServerFrame(bool text, std::string_view frame);
  TerminalStep onClosed();            // the connection ended (corrald closed it or died)
  TerminalStep onSignal(int signal);  // SIGTERM, SIGHUP (and SIGINT without a tty) to corral itself
  bool done() const { return done_; }
  bool detached() const { return detached_; }  // the user left with kDetachKey

 private:
  TerminalStep finish(TerminalStep step, int code);
  std::string name_;
  bool detachable_, tty_;
  bool done_ = false, inputEnded_ = false, detached_ = false;
  std::optional<int> exitCode_;  // from the exit frame, applied when the connection closes
  std::optional<Error> error_;   // from an error frame
};

// 128 + signal, as a shell reports a program killed by one.
int exitCodeOf(const StdioExit& exit);

}  // namespace corral::api
