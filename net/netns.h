// Named network namespaces, as `ip netns add` makes them: a bind mount of the nsfs file at /run/netns/NAME.
// Namespace work happens on short-lived helper threads that setns(); the calling thread never moves.
#pragma once

#include <fmt/format.h>
#include <sched.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::net {

Status createNetns(const std::string& name);          // conflict when it exists
Status deleteNetns(const std::string& name);          // a missing one is not an error
Result<UniqueFd> openNetns(const std::string& name);  // O_RDONLY|O_CLOEXEC fd of /run/netns/NAME
std::vector<std::string> listNetns();                 // names under /run/netns
bool netnsExists(const std::string& name);
// Writes a sysctl inside the namespace (e.g. "net/ipv4/ip_forward", "1"), from a helper thread that
// setns()es there, so the calling thread never changes namespace.
Status writeSysctlInNetns(const std::string& netns, const std::string& key, const std::string& value);

std::string netnsPath(const std::string& name);  // "/run/netns/NAME"

// Whether a TCP connect from inside `netns` to `address`:`port` is accepted within `timeout` (the
// connection is closed at once, nothing is sent). A refusal, an unreachable host or no answer in time is
// false; an error means this side failed (the namespace, the socket, a malformed address).
Result<bool> tcpConnectsInNetns(const std::string& netns, const std::string& address, uint16_t port,
                                std::chrono::milliseconds timeout);

// Runs `work` on a helper thread that has joined the namespace `netnsFd` refers to (`label` names it in
// errors); returns what `work` returns.
template <class Work>
auto runInNetnsFd(int netnsFd, std::string_view label, Work&& work) -> decltype(work()) {
  using R = decltype(work());
  std::optional<R> result;
  try {
    std::thread helper([&] {
      if (::setns(netnsFd, CLONE_NEWNET) != 0) {
        result.emplace(fail(systemError(errno, fmt::format("setns({}, CLONE_NEWNET)", label))));
        return;
      }
      result.emplace(work());
    });
    helper.join();
  } catch (const std::system_error& e) {
    return fail(internalError("starting a thread for {}: {}", label, e.what()));
  }
  return std::move(*result);
}

// The same for the named namespace `netns`.
template <class Work>
auto runInNetns(const std::string& netns, Work&& work) -> decltype(work()) {
  auto fd = openNetns(netns);
  if (!fd) return fail(std::move(fd).error());
  return runInNetnsFd(fd->get(), fmt::format("\"{}\"", netnsPath(netns)), std::forward<Work>(work));
}

}  // namespace corral::net
