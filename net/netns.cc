// Named network namespaces: made by a helper thread that unshare()s and bind-mounts its namespace at
// /run/netns/NAME (iproute2's netns_add), listed, opened and deleted; sysctls written from inside.
#include "net/netns.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>

#include "net/nft.h"

namespace corral::net {
namespace {

constexpr const char* kNetnsRunDir = "/run/netns";

// Makes /run/netns a shared mount point so that unmounting a namespace there reaches every mount
// namespace (iproute2's netns_add does the same).
Status makeNetnsRunDirShared() {
  if (::mkdir(kNetnsRunDir, 0755) != 0 && errno != EEXIST) {
    return fail(systemError(errno, fmt::format("mkdir(\"{}\")", kNetnsRunDir)));
  }
  bool madeMountPoint = false;
  while (::mount("", kNetnsRunDir, "none", MS_SHARED | MS_REC, nullptr) != 0) {
    if (errno != EINVAL || madeMountPoint) {
      return fail(systemError(errno, fmt::format("mount(\"{}\", MS_SHARED|MS_REC)", kNetnsRunDir)));
    }
    // EINVAL: not a mount point yet; bind it onto itself first.
    if (::mount(kNetnsRunDir, kNetnsRunDir, "none", MS_BIND | MS_REC, nullptr) != 0) {
      return fail(systemError(errno, fmt::format("mount(\"{0}\", \"{0}\", MS_BIND|MS_REC)", kNetnsRunDir)));
    }
    madeMountPoint = true;
  }
  return {};
}

}  // namespace

std::string netnsPath(const std::string& name) {
  return fmt::format("{}/{}", kNetnsRunDir, name);
}

Status createNetns(const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..") {
    return fail(invalidField("netns", "\"{}\" is not a namespace name", name));
  }
  if (auto shared = makeNetnsRunDirShared(); !shared) return shared;
  std::string path = netnsPath(name);
  {
    UniqueFd placeholder(::open(path.c_str(), O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0));
    if (!placeholder) {
      if (errno == EEXIST) return fail(conflict("netns \"{}\" exists already ({})", name, path));
      return fail(systemError(errno, fmt::format("open(\"{}\", O_CREAT|O_EXCL)", path)));
    }
  }
  // The new namespace lives on after the helper thread exits because it is bind-mounted at `path`.
  Status status;
  try {
    std::thread helper([&] {
      if (::unshare(CLONE_NEWNET) != 0) {
        status = fail(systemError(errno, "unshare(CLONE_NEWNET)"));
        return;
      }
      std::string self = fmt::format("/proc/self/task/{}/ns/net", ::syscall(SYS_gettid));
      if (::mount(self.c_str(), path.c_str(), "none", MS_BIND, nullptr) != 0) {
        status = fail(systemError(errno, fmt::format("mount(\"{}\", \"{}\", MS_BIND)", self, path)));
      }
    });
    helper.join();
  } catch (const std::system_error& e) {
    status = fail(internalError("starting a thread: {}", e.what()));
  }
  if (!status) {
    ::unlink(path.c_str());
    return fail(std::move(status).error().wrap(fmt::format("create netns \"{}\"", name)));
  }
  return {};
}

Status deleteNetns(const std::string& name) {
  // corrald's own netfilter socket in the namespace would keep it alive after the unmount.
  forgetNftContext(name);
  std::string path = netnsPath(name);
  if (::umount2(path.c_str(), MNT_DETACH) != 0 && errno != EINVAL && errno != ENOENT) {
    return fail(systemError(errno, fmt::format("umount2(\"{}\", MNT_DETACH)", path)));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return fail(systemError(errno, fmt::format("unlink(\"{}\")", path)));
  }
  return {};
}

Result<UniqueFd> openNetns(const std::string& name) {
  std::string path = netnsPath(name);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return fail(notFound("netns \"{}\" does not exist ({})", name, path));
    return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  }
  return fd;
}

std::vector<std::string> listNetns() {
  std::vector<std::string> names;
  DIR* dir = ::opendir(kNetnsRunDir);
  if (dir == nullptr) return names;
  while (dirent* entry = ::readdir(dir)) {
    std::string_view name = entry->d_name;
    if (name == "." || name == "..") continue;
    names.emplace_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

bool netnsExists(const std::string& name) {
  struct stat info {};
  return ::stat(netnsPath(name).c_str(), &info) == 0;
}

Status writeSysctlInNetns(const std::string& netns, const std::string& key, const std::string& value) {
  if (key.empty() || key.find("..") != std::string::npos || key.front() == '/') {
    return fail(invalidField("key", "\"{}\" is not a sysctl key like net/ipv4/ip_forward", key));
  }
  auto status = runInNetns(netns, [&]() -> Status {
    // Opened after setns: /proc/sys/net shows the namespace of whoever opens it.
    std::string path = fmt::format("/proc/sys/{}", key);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
    if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size())) {
      return fail(systemError(errno, fmt::format("write(\"{}\", \"{}\")", path, value)));
    }
    return {};
  });
  if (!status) return fail(std::move(status).error().wrap(fmt::format("sysctl in netns \"{}\"", netns)));
  return {};
}

Result<bool> tcpConnectsInNetns(const std::string& netns, const std::string& address, uint16_t port,
                                std::chrono::milliseconds timeout) {
  sockaddr_in peer{};
  peer.sin_family = AF_INET;
  peer.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &peer.sin_addr) != 1)
    return fail(internalError("tcp connect: \"{}\" is no IPv4 address", address));
  return runInNetns(netns, [&]() -> Result<bool> {
    // The socket is made on the helper thread, so it belongs to the namespace the thread joined.
    UniqueFd socket(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!socket) return fail(systemError(errno, "socket(AF_INET, SOCK_STREAM)"));
    if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&peer), sizeof peer) == 0) return true;
    if (errno != EINPROGRESS) return false;  // ECONNREFUSED, ENETUNREACH...: nothing answers yet
    pollfd waiting{.fd = socket.get(), .events = POLLOUT, .revents = 0};
    int ready = ::poll(&waiting, 1, static_cast<int>(timeout.count()));
    if (ready < 0) return fail(systemError(errno, "poll(connecting socket)"));
    if (ready == 0) return false;
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(socket.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0)
      return fail(systemError(errno, "getsockopt(SO_ERROR)"));
    return error == 0;
  });
}

}  // namespace corral::net
