// Test helpers for talking TCP inside network namespaces without the test's own thread ever changing
// namespace: work runs on a helper thread that setns()es into the namespace, and a socket made there stays
// in that namespace for good. Plus TestNamespaces: a test's namespaces, made and deleted at the end.
// Header-only: used by integration_net_tests (corral_net) and integration_tests alike.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/unique_fd.h"
#include "net/netlink.h"
#include "net/vpc_datapath.h"
#include "tests/integration/skip_guard.h"

namespace corral::testing {

// A namespace as these helpers take it: a path (/proc/PID/ns/net, /run/netns/NAME) or the name of a
// named namespace, which means /run/netns/NAME.
inline std::string netnsPath(const std::string& netns) {
  return netns.starts_with('/') ? netns : "/run/netns/" + netns;
}

// Runs `work` on a thread that has joined `netns`; false when it could not get there (work not run).
inline bool runInNetns(const std::string& netns, const std::function<void()>& work) {
  bool joined = false;
  std::thread([&] {
    UniqueFd nsFd(::open(netnsPath(netns).c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsFd || ::setns(nsFd.get(), CLONE_NEWNET) != 0) return;
    joined = true;
    work();
  }).join();
  return joined;
}

// A non-blocking TCP socket made inside `netns`; invalid when the namespace could not be joined.
inline UniqueFd tcpSocketIn(const std::string& netns) {
  int fd = -1;
  runInNetns(netns, [&] { fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0); });
  return UniqueFd(fd);
}

inline sockaddr_in socketAddress(const std::string& address, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  ::inet_pton(AF_INET, address.c_str(), &sa.sin_addr);
  return sa;
}

inline std::string addressText(const sockaddr_in& sa) {
  char text[INET_ADDRSTRLEN] = {};
  ::inet_ntop(AF_INET, &sa.sin_addr, text, sizeof text);
  return text;
}

// True when `events` showed up on `fd` within `timeout`.
inline bool waitForFd(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{.fd = fd, .events = events, .revents = 0};
  return ::poll(&p, 1, static_cast<int>(timeout.count())) == 1 && (p.revents & events) != 0;
}

// A listening socket in `netns` on address:port (all addresses by default); invalid on failure.
inline UniqueFd listenIn(const std::string& netns, uint16_t port, const std::string& address = "0.0.0.0") {
  UniqueFd fd = tcpSocketIn(netns);
  if (!fd) return fd;
  int one = 1;
  ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sa = socketAddress(address, port);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 || ::listen(fd.get(), 16) != 0) {
    return UniqueFd();
  }
  return fd;
}

// Binds a client socket to a local address (any port) before it connects.
inline bool bindTo(const UniqueFd& fd, const std::string& address) {
  sockaddr_in local = socketAddress(address, 0);
  return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) == 0;
}

// Connects the non-blocking `client` to address:port and waits for the handshake: "" when connected,
// else why not ("timed out" when nothing answered within `timeout`, or "connect: <the error>").
inline std::string connectWithin(const UniqueFd& client, const std::string& address, uint16_t port,
                                 std::chrono::milliseconds timeout) {
  sockaddr_in sa = socketAddress(address, port);
  if (::connect(client.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0 && errno != EINPROGRESS) {
    return std::string("connect: ") + std::strerror(errno);
  }
  if (!waitForFd(client.get(), POLLOUT, timeout)) return "timed out";
  int soError = 0;
  socklen_t len = sizeof soError;
  if (::getsockopt(client.get(), SOL_SOCKET, SO_ERROR, &soError, &len) != 0 || soError != 0) {
    return std::string("connect: ") + std::strerror(soError);
  }
  return "";
}

// The next connection on `listener` within `timeout` (invalid when none); `peer`, when given, receives
// the client's address as the listener saw it (after any NAT).
inline UniqueFd acceptWithin(const UniqueFd& listener, std::chrono::milliseconds timeout,
                             std::string* peer = nullptr) {
  if (!waitForFd(listener.get(), POLLIN, timeout)) return UniqueFd();
  sockaddr_in from{};
  socklen_t fromLen = sizeof from;
  UniqueFd server(::accept4(listener.get(), reinterpret_cast<sockaddr*>(&from), &fromLen, SOCK_CLOEXEC));
  if (server && peer != nullptr) *peer = addressText(from);
  return server;
}

struct TcpExchange {
  bool ok = false;
  std::string peer;  // the client's address as the listener saw it; empty when nothing was accepted
};

// A whole exchange: the handshake from `fromNetns` (bound to `fromAddress` when given), then `listener`
// accepts and replies and the client must read the reply, so return traffic of an established
// connection is exercised too. Every wait is bounded by `timeout`.
inline TcpExchange tcpExchange(const std::string& fromNetns, const std::string& address, uint16_t port,
                               const UniqueFd& listener, std::chrono::milliseconds timeout,
                               const std::optional<std::string>& fromAddress = {}) {
  TcpExchange result;
  UniqueFd client = tcpSocketIn(fromNetns);
  if (!client || (fromAddress && !bindTo(client, *fromAddress))) return result;
  if (!connectWithin(client, address, port, timeout).empty()) return result;
  UniqueFd server = acceptWithin(listener, timeout, &result.peer);
  if (!server || ::write(server.get(), "pong", 4) != 4) return result;
  if (!waitForFd(client.get(), POLLIN, timeout)) return result;
  char reply[8] = {};
  result.ok = ::read(client.get(), reply, sizeof reply) == 4 && std::string(reply, 4) == "pong";
  return result;
}

// A connect attempt that ends either way, with no listener needed: true when the handshake completed.
inline bool tcpConnects(const std::string& fromNetns, const std::string& address, uint16_t port,
                        std::chrono::milliseconds timeout,
                        const std::optional<std::string>& fromAddress = {}) {
  UniqueFd client = tcpSocketIn(fromNetns);
  if (!client || (fromAddress && !bindTo(client, *fromAddress))) return false;
  return connectWithin(client, address, port, timeout).empty();
}

// Test namespaces: "corral-t<pid>-SUFFIX" (so parallel test processes, and a real corrald, never meet),
// made with lo up and deleted (newest first, with every link in them) when this goes out of scope, also
// when a test fails halfway. Every network integration test makes its namespaces through it.
class TestNamespaces {
 public:
  TestNamespaces() = default;
  TestNamespaces(const TestNamespaces&) = delete;
  TestNamespaces& operator=(const TestNamespaces&) = delete;
  ~TestNamespaces() {
    for (const std::string& failure : removeAll()) std::fprintf(stderr, "cleanup: %s\n", failure.c_str());
  }

  // Whether this process may make namespaces (root). Without root a test skips, or fails when
  // CORRAL_REQUIRE_PRIVILEGED is set. Use: `if (!TestNamespaces::available()) GTEST_SKIP() << why;`
  static bool available() {
    if (::geteuid() == 0) return true;
    if (std::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) ADD_FAILURE() << "needs root";
    return false;
  }
  // This process's prefix, "corral-t<pid>-", and the name of SUFFIX under it.
  static std::string prefix() { return "corral-t" + std::to_string(::getpid()) + "-"; }
  static std::string nameOf(const std::string& suffix) { return prefix() + suffix; }

  // Makes the namespace prefix() + SUFFIX with lo up and holds it: its name, or why not.
  Result<std::string> make(const std::string& suffix) {
    const std::string name = nameOf(suffix);
    if (Status made = create(name); !made) return fail(made.error());
    auto netlink = net::Netlink::open(name);
    if (!netlink) return fail(netlink.error());
    if (auto up = netlink->setUp("lo"); !up) return fail(up.error().wrap(name + ": lo up"));
    return name;
  }
  // Creates the named namespace `name` as it is (no lo) and holds it.
  Status create(const std::string& name) {
    Status made = net::createNetns(name);
    if (made) hold(name);
    return made;
  }
  // Holds a namespace made some other way (by the code under test).
  void hold(const std::string& name) {
    if (std::find(names_.begin(), names_.end(), name) == names_.end()) names_.push_back(name);
  }
  // Holds a VPC's namespace (net/vpc_datapath.h): it goes through destroyVpc, which also forgets what was
  // loaded there (the next test's VPC of the same name loads its tables again) and takes the gateway's
  // uplink side along.
  void holdVpc(const std::string& netns) {
    hold(netns);
    vpcs_.push_back(netns);
  }

  // Deletes them now: one message per namespace that could not be deleted.
  std::vector<std::string> removeAll() {
    std::vector<std::string> failures;
    for (auto it = names_.rbegin(); it != names_.rend(); ++it) {
      const bool vpc = std::find(vpcs_.begin(), vpcs_.end(), *it) != vpcs_.end();
      if (Status deleted = vpc ? net::destroyVpc(*it) : net::deleteNetns(*it); !deleted)
        failures.push_back(deleted.error().message());
    }
    names_.clear();
    vpcs_.clear();
    return failures;
  }

 private:
  std::vector<std::string> names_;
  std::vector<std::string> vpcs_;
};
// The name it had before every network test used it (tests/integration/host_uplink_test.cc).
using NetnsGuard = TestNamespaces;

// Processes each in a fresh network namespace, paused until killed (instances without a program); killed and
// reaped when this goes.
class NetnsChildren {
 public:
  NetnsChildren() = default;
  NetnsChildren(const NetnsChildren&) = delete;
  NetnsChildren& operator=(const NetnsChildren&) = delete;
  ~NetnsChildren() {
    for (pid_t pid : pids_) {
      ::kill(pid, SIGKILL);
      while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
      }
    }
  }
  // The new child's pid once its namespace exists, or -1.
  pid_t spawn() {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) return -1;
    pid_t pid = ::fork();
    if (pid == 0) {
      // Only async-signal-safe calls between fork and _exit: the test process has threads.
      ::close(ready[0]);
      if (::unshare(CLONE_NEWNET) != 0) ::_exit(1);
      char ok = 'r';
      if (::write(ready[1], &ok, 1) != 1) ::_exit(1);
      for (;;) ::pause();
    }
    ::close(ready[1]);
    if (pid < 0) {
      ::close(ready[0]);
      return -1;
    }
    pids_.push_back(pid);
    char ok = 0;
    ssize_t n = ::read(ready[0], &ok, 1);
    ::close(ready[0]);
    return n == 1 ? pid : -1;
  }

 private:
  std::vector<pid_t> pids_;
};

}  // namespace corral::testing
