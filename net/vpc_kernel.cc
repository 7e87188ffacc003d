// LinuxVpcKernel: the converger's kernel calls through net/netlink.h and net/nft.h.
#include "net/vpc_kernel.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>
#include <utility>

#include "core/unique_fd.h"
#include "net/datapath.h"
#include "net/netns.h"
#include "net/nft.h"

namespace corral::net {

LinuxVpcKernel::LinuxVpcKernel() = default;
LinuxVpcKernel::~LinuxVpcKernel() = default;

Result<Netlink*> LinuxVpcKernel::socketIn(const std::string& netns) {
  if (auto it = sockets_.find(netns); it != sockets_.end()) return &it->second;
  auto netlink = Netlink::open(netns);
  if (!netlink) return fail(std::move(netlink).error());
  return &sockets_.emplace(netns, std::move(*netlink)).first->second;
}

bool LinuxVpcKernel::netnsExists(const std::string& netns) {
  return net::netnsExists(netns);
}

Status LinuxVpcKernel::createNetns(const std::string& netns) {
  return net::createNetns(netns);
}

std::optional<uint64_t> LinuxVpcKernel::netnsIdentity(const std::string& netns) {
  struct stat info {};
  if (::stat(fmt::format("/run/netns/{}", netns).c_str(), &info) != 0) return std::nullopt;
  return info.st_ino;
}

// From a helper thread (so the caller never moves).
Result<std::vector<std::optional<std::string>>> LinuxVpcKernel::readSysctls(
    const std::string& netns, const std::vector<std::string>& keys) {
  auto nsFd = openNetns(netns);
  if (!nsFd) return fail(std::move(nsFd).error());
  std::optional<Result<std::vector<std::optional<std::string>>>> result;
  try {
    std::thread helper([&] {
      if (::setns(nsFd->get(), CLONE_NEWNET) != 0) {
        result.emplace(fail(systemError(errno, fmt::format("setns(netns \"{}\", CLONE_NEWNET)", netns))));
        return;
      }
      std::vector<std::optional<std::string>> values;
      for (const std::string& key : keys) {
        // Opened after setns: /proc/sys/net shows the namespace of the thread that opens it.
        std::string path = fmt::format("/proc/sys/{}", key);
        UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
        if (!fd) {
          if (errno == ENOENT) {
            values.emplace_back();
            continue;
          }
          result.emplace(fail(systemError(errno, fmt::format("open(\"{}\")", path))));
          return;
        }
        char buffer[64] = {};
        ssize_t n = ::read(fd.get(), buffer, sizeof(buffer) - 1);
        if (n < 0) {
          result.emplace(fail(systemError(errno, fmt::format("read(\"{}\")", path))));
          return;
        }
        std::string value(buffer, static_cast<size_t>(n));
        while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.pop_back();
        values.emplace_back(std::move(value));
      }
      result.emplace(std::move(values));
    });
    helper.join();
  } catch (const std::system_error& e) {
    return fail(internalError("starting a thread for netns \"{}\": {}", netns, e.what()));
  }
  return std::move(*result);
}

Status LinuxVpcKernel::writeSysctl(const std::string& netns, const std::string& key,
                                   const std::string& value) {
  return writeSysctlInNetns(netns, key, value);
}

Result<std::optional<LinkInfo>> LinuxVpcKernel::link(const std::string& netns, const std::string& name) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->link(name);
}

Result<std::vector<LinkInfo>> LinuxVpcKernel::links(const std::string& netns) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->links();
}

Status LinuxVpcKernel::createBridge(const std::string& netns, const std::string& name) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->createBridge(name, subnetBridgeMac(name));
}

Status LinuxVpcKernel::createVethPair(const std::string& netns, const std::string& name,
                                      const std::string& peerNetns, const std::string& peer) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  UniqueFd peerFd;
  if (peerNetns.empty()) {
    // The caller's namespace: this thread's, which is what Netlink::open("") uses too.
    peerFd.reset(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!peerFd) return fail(systemError(errno, "open(\"/proc/thread-self/ns/net\")"));
  } else {
    auto fd = openNetns(peerNetns);
    if (!fd) return fail(std::move(fd).error());
    peerFd = std::move(*fd);
  }
  // The peer is born in its namespace (a move would wait for RCU grace periods).
  return (*socket)->createVethPair(name, peer, peerFd.get(), std::nullopt);
}

Status LinuxVpcKernel::deleteLink(const std::string& netns, const std::string& name) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->deleteLink(name);
}

Status LinuxVpcKernel::setUp(const std::string& netns, const std::string& link) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->setUp(link);
}

Status LinuxVpcKernel::setMaster(const std::string& netns, const std::string& link,
                                 const std::string& bridge) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->setMaster(link, bridge);
}

Status LinuxVpcKernel::addAddress(const std::string& netns, const std::string& link,
                                  const std::string& cidrAddress) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->addAddress(link, cidrAddress);
}

Status LinuxVpcKernel::deleteAddress(const std::string& netns, const std::string& link,
                                     const std::string& cidrAddress) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->deleteAddress(link, cidrAddress);
}

Result<std::vector<RouteEntry>> LinuxVpcKernel::routes(const std::string& netns, uint32_t table) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->routes(table);
}

Status LinuxVpcKernel::addRoute(const std::string& netns, const RouteEntry& route) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->addRoute(route);
}

Status LinuxVpcKernel::deleteRoute(const std::string& netns, const RouteEntry& route) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->deleteRoute(route);
}

Result<std::vector<RuleEntry>> LinuxVpcKernel::rules(const std::string& netns) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->rules();
}

Status LinuxVpcKernel::addRule(const std::string& netns, const RuleEntry& rule) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->addRule(rule);
}

Status LinuxVpcKernel::deleteRule(const std::string& netns, const RuleEntry& rule) {
  auto socket = socketIn(netns);
  if (!socket) return fail(std::move(socket).error());
  return (*socket)->deleteRule(rule);
}

Result<std::vector<std::string>> LinuxVpcKernel::applyPortGuards(const std::string& netns,
                                                                 const std::string& ruleset,
                                                                 const std::vector<std::string>& links) {
  return net::applyPortGuards(netns, ruleset, links);
}

Status LinuxVpcKernel::applyRuleset(const std::string& netns, const std::string& ruleset) {
  return net::applyRuleset(netns, ruleset);
}

}  // namespace corral::net
