// The container's terminal: the child's half (a pty of the container's devpts, /dev/console, the
// controlling terminal) and the console socket a starter passes the master over.
#include "container/console.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "container/sync.h"

namespace corral::container {

namespace {
constexpr const char* kConsoleCalls[] = {
    "open(\"/dev/ptmx\")",
    "ioctl(TIOCSPTLCK)",
    "ioctl(TIOCGPTPEER)",
    "ioctl(TIOCSWINSZ)",
    "ioctl(TIOCGPTN)",
    "open(\"/dev/console\", O_CREAT)",
    "mount(\"/dev/pts/N\", \"/dev/console\", bind)",
    "sendmsg(console master)",
    "setsid()",
    "ioctl(TIOCSCTTY)",
};
}  // namespace

const char* consoleCallName(int index) {
  constexpr int count = static_cast<int>(sizeof kConsoleCalls / sizeof kConsoleCalls[0]);
  return index >= 0 && index < count ? kConsoleCalls[index] : "console";
}

int openConsoleInChild(int syncFd, const ConsoleSize& size, bool bindDevConsole, int* peer, int* failedCall) {
  auto failed = [&](int call) {
    *failedCall = call;
    return errno;
  };
  // The container's /dev/ptmx: a link to pts/ptmx of its own devpts (newinstance), so the pty is one
  // of the container's, numbered in its /dev/pts.
  int master = ::open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (master < 0) return failed(0);
  int unlock = 0;
  if (::ioctl(master, TIOCSPTLCK, &unlock) != 0) return failed(1);
  int slave = ::ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (slave < 0) return failed(2);
  if (size.rows != 0 && size.cols != 0) {
    winsize window{};
    window.ws_row = size.rows;
    window.ws_col = size.cols;
    if (::ioctl(slave, TIOCSWINSZ, &window) != 0) return failed(3);
  }
  if (bindDevConsole) {
    unsigned number = 0;
    if (::ioctl(master, TIOCGPTN, &number) != 0) return failed(4);
    // "/dev/pts/N" without allocation.
    char path[32] = "/dev/pts/";
    char digits[12];
    int length = 0;
    do {
      digits[length++] = static_cast<char>('0' + number % 10);
      number /= 10;
    } while (number != 0 && length < 11);
    size_t at = 9;
    while (length > 0) path[at++] = digits[--length];
    path[at] = '\0';
    int console = ::open("/dev/console", O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (console < 0) return failed(5);
    ::close(console);
    if (::mount(path, "/dev/console", nullptr, MS_BIND, nullptr) != 0) return failed(6);
  }
  // The master to the starter, one record with the fd attached.
  SyncRecord record;
  record.kind = RecordKind::ConsoleMaster;
  const ssize_t sent = sendWithFd(syncFd, &record, sizeof record, master);
  if (sent < 0) return failed(7);
  ::close(master);
  if (::setsid() < 0) return failed(8);
  if (::ioctl(slave, TIOCSCTTY, 0) != 0) return failed(9);
  *peer = slave;
  return 0;
}

Status sendConsoleToSocket(const std::string& socketPath, int master) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (socketPath.size() >= sizeof address.sun_path)
    return fail(invalidField("console-socket", "\"{}\" is longer than a socket path may be", socketPath));
  std::memcpy(address.sun_path, socketPath.c_str(), socketPath.size() + 1);
  UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket) return fail(systemError(errno, "socket(AF_UNIX)"));
  if (::connect(socket.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    return fail(systemError(errno, fmt::format("connect(\"{}\")", socketPath)));
  char name[] = "/dev/ptmx";
  if (sendWithFd(socket.get(), name, sizeof name - 1, master) < 0)
    return fail(systemError(errno, fmt::format("sendmsg(\"{}\", console master)", socketPath)));
  return {};
}

}  // namespace corral::container
