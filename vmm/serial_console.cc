// attachSerialConsole: a connected unix socket wrapped as a StdioSession.
#include "vmm/serial_console.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

namespace corral::vmm {
namespace {

class SerialConsole final : public StdioSession {
 public:
  explicit SerialConsole(UniqueFd socket) : socket_(std::move(socket)) {}
  bool tty() const override { return true; }
  int inputFd() const override { return socket_.get(); }
  int outputFd() const override { return socket_.get(); }
  int errorFd() const override { return -1; }
  void closeInput() override {}  // a tty: ^D is a byte
  Status resize(TerminalSize) override { return {}; }
  int exitFd() const override { return -1; }
  Result<StdioExit> exitStatus() override { return fail(conflict("a serial console has no exit status")); }
  // Only the connection ends: the guest's shell on the console goes on, as after `virsh console` and ^].
  void detach() override {
    if (socket_) ::shutdown(socket_.get(), SHUT_RDWR);
  }

 private:
  UniqueFd socket_;
};

}  // namespace

Result<std::unique_ptr<StdioSession>> attachSerialConsole(const std::filesystem::path& socket) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string path = socket.string();
  if (path.size() >= sizeof(address.sun_path))
    return fail(invalidField("console_socket", "socket path \"{}\" is too long for sockaddr_un", path));
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fail(systemError(errno, "socket(AF_UNIX)"));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) < 0) {
    const int error = errno;
    if (error == ENOENT)
      return fail(
          conflict("the VM has no console socket \"{}\" (started before consoles were sockets: "
                   "restart it)",
                   path));
    return fail(systemError(error, fmt::format("connect(\"{}\")", path)));
  }
  return std::unique_ptr<StdioSession>(std::make_unique<SerialConsole>(std::move(fd)));
}

}  // namespace corral::vmm
