// The VM's serial console (ttyS0) as a StdioSession: the unix socket QEMU listens on for it
// (DomainConfig::consoleSocket), connected. `corral console NAME` for a VM.
#pragma once

#include <filesystem>
#include <memory>

#include "core/error.h"
#include "core/stdio_session.h"

namespace corral::vmm {

// Connects to the console socket. The session is a tty whose input and output are the one socket; resize
// is a no-op (a serial line has no window), exitFd() is -1 (the session ends when the client detaches or
// the VM stops: the socket then reads EOF). QEMU serves one client at a time: a second connection waits
// in its backlog, which the caller avoids (VmDriver keeps one console per VM).
// A missing socket (a VM started before consoles were sockets): ErrorKind::Conflict.
Result<std::unique_ptr<StdioSession>> attachSerialConsole(const std::filesystem::path& socket);

}  // namespace corral::vmm
