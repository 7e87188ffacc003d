// A container program's stdio as a StdioSession (core/stdio_session.h): an exec'd program's pty master or
// pipes, and the console of a container started with -t/-i (its first process's pty master or stdin pipe),
// which corrald keeps for `corral console`: a pump thread copies its output to the instance's log whether
// or not a client is attached, and to the one attached client.
#pragma once

#include <sys/types.h>

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/stdio_session.h"
#include "core/unique_fd.h"

namespace corral::daemon {

// An exec'd program (a child of corrald): `master` with a tty, else the three pipe ends (stdinWrite may be
// invalid: the program reads /dev/null). Detaching kills it; destruction reaps it.
std::unique_ptr<StdioSession> execSession(pid_t pid, UniqueFd master, UniqueFd stdinWrite,
                                          UniqueFd stdoutRead, UniqueFd stderrRead);

// The console of a running container's first process. Made at start with the pty master (tty) or the
// write end of its stdin and the read ends of its stdout and stderr (pipes); the pump copies the output to
// `log`. One client at a time may attach; the container's end is told by ended() (the watcher's exit).
class ContainerConsole : public std::enable_shared_from_this<ContainerConsole> {
 public:
  static Result<std::shared_ptr<ContainerConsole>> start(std::string name, bool tty, UniqueFd master,
                                                         UniqueFd stdinWrite, UniqueFd stdoutRead,
                                                         UniqueFd stderrRead, UniqueFd log);
  ~ContainerConsole();
  // A session for one client; Conflict while another is attached or after the container ended.
  Result<std::unique_ptr<StdioSession>> attach();
  // The first process's end, as the watcher collected it: the attached session's exit.
  void ended(StdioExit exit);
  // Stops the pump (the daemon is shutting down or the run is forgotten).
  void close();

  struct State;  // container_stdio.cc

 private:
  ContainerConsole() = default;
  void pump();
  std::shared_ptr<State> state_;
  std::thread pump_;
};

}  // namespace corral::daemon
