// A program's stdio as corrald forwards it to a client (`corral run -it`, `exec -it`, `console`): the seam
// between whoever runs the program (a container's pty or pipes, a VM's guest agent, a VM's serial console)
// and the daemon's upgraded connection that carries it. Everything is a file descriptor the daemon can
// poll, so one forwarding loop serves every kind.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace corral {

struct TerminalSize {
  uint16_t rows = 0, cols = 0;  // 0: left as the kernel makes it
  bool operator==(const TerminalSize&) const = default;
};

// How the program ended: exactly one of the two is set.
struct StdioExit {
  std::optional<int> exitCode;
  std::optional<int> signal;
};

// What the client asks to run interactively.
struct StdioRequest {
  std::vector<std::string> command;  // empty: the instance's shell (/bin/sh)
  std::vector<std::string> env;      // "K=V", over the instance's
  bool tty = false;                  // a pseudo-terminal, else separate stdin/stdout/stderr
  bool stdinOpen = false;            // -i: the client's input reaches the program (else it reads EOF)
  TerminalSize size;                 // the client's window (tty only)
};

class StdioSession {
 public:
  virtual ~StdioSession() = default;
  virtual bool tty() const = 0;
  // With a tty: one descriptor for both directions (a pty master or a socket): read the program's output,
  // write its input. Without: input is the write end of the program's stdin, output and error the read
  // ends of its stdout and stderr. All non-blocking. errorFd() is -1 with a tty.
  virtual int inputFd() const = 0;
  virtual int outputFd() const = 0;
  virtual int errorFd() const = 0;
  // The client's input ended (without a tty the program reads EOF; with one, nothing: ^D is a byte).
  virtual void closeInput() = 0;
  // The client's window changed (tty only; a no-op where the other end has no window, e.g. a serial line).
  virtual Status resize(TerminalSize size) = 0;
  // Readable once the program has ended (a pidfd, an eventfd); -1 when it never ends by itself (a VM's
  // serial console: the session ends when the client detaches or the VM stops).
  virtual int exitFd() const = 0;
  // After exitFd() became readable and the output was drained: how the program ended.
  virtual Result<StdioExit> exitStatus() = 0;
  // The client went away before the program ended: end it (an exec'd program is killed; a console or an
  // instance's first process is only detached from).
  virtual void detach() = 0;
};

}  // namespace corral
