// A container process's terminal: a pty from the container's own devpts (opened by the child after it is
// in the container's mount namespace), made its controlling terminal and stdio and, for init, bound over
// /dev/console; the master is handed to the starter over the sync socket (SCM_RIGHTS). Reusable by any
// starter: corral-runtime passes it on over a console socket, corrald may attach it to a client.
#pragma once

#include <cstdint>
#include <string>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

struct ConsoleSize {
  uint16_t rows = 0, cols = 0;  // 0: left as the kernel makes it
  bool operator==(const ConsoleSize&) const = default;
};

// In the child, inside the container's mount namespace and before its stdio is set: opens /dev/ptmx,
// unlocks it, opens the peer, sets the size, binds the peer over /dev/console when `bindDevConsole` (an
// existing /dev/console is replaced as the target of the bind), sends the master over `syncFd` with a
// ConsoleMaster record and closes it here, then setsid() and TIOCSCTTY. On success `*peer` is the
// terminal for stdio; returns 0 or an errno with `*failedCall` set to the call's index (consoleCallName).
int openConsoleInChild(int syncFd, const ConsoleSize& size, bool bindDevConsole, int* peer, int* failedCall);
// "ioctl(TIOCGPTPEER)" for the index openConsoleInChild reported.
const char* consoleCallName(int index);

// The console-socket protocol of runc (and conmon, containerd's shim): connect to the AF_UNIX stream
// socket at `socketPath` and send `master` in one SCM_RIGHTS message whose data is the terminal's name.
Status sendConsoleToSocket(const std::string& socketPath, int master);

}  // namespace corral::container
