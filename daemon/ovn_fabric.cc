// corrald's VPCs on OVN (daemon/ovn_fabric.h): the northbound and Open_vSwitch connections and the calls
// through them.
#include "daemon/ovn_fabric.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <set>
#include <utility>

#include "core/unique_fd.h"
#include "daemon/gated_spawn.h"
#include "net/ovs_port.h"

namespace corral::daemon {
namespace {

using net::ovsdb::Json;

constexpr std::string_view kInstanceKey = "corral-instance";
constexpr std::string_view kPrefixKey = "corral-prefix";

// A call through `client` that failed drops the connection (the next call makes a new one): after a broken
// stream or a timeout nothing says what the server will send next.
template <class T>
Result<T> dropOnFailure(std::optional<net::ovsdb::OvsdbClient>& client, Result<T> result) {
  if (!result &&
      (result.error().kind() == ErrorKind::Unavailable || result.error().kind() == ErrorKind::Internal))
    client.reset();
  return result;
}

}  // namespace

Result<net::ovsdb::OvsdbClient*> OvnFabric::connectLocked(std::optional<net::ovsdb::OvsdbClient>& client,
                                                          const std::string& remote, std::string_view which) {
  if (client) return &*client;
  auto connected = net::ovsdb::OvsdbClient::connect(remote);
  if (!connected) {
    return fail(unavailable("{} at {}: {} (is it running? corrald --{})", which, remote,
                            connected.error().message(),
                            which == "OVN northbound database" ? "ovn-northbound" : "ovs-database"));
  }
  client.emplace(std::move(*connected));
  return &*client;
}

Result<net::ChangeLog> OvnFabric::converge(const net::OvnVpcPlan& plan) {
  std::lock_guard lock(mutex_);
  auto nb = connectLocked(northbound_, options_.northbound, "OVN northbound database");
  if (!nb) return fail(nb.error());
  return dropOnFailure(northbound_, net::convergeOvnVpc(**nb, plan));
}

Result<net::ChangeLog> OvnFabric::destroy(const std::string& vpc) {
  std::lock_guard lock(mutex_);
  auto nb = connectLocked(northbound_, options_.northbound, "OVN northbound database");
  if (!nb) return fail(nb.error());
  return dropOnFailure(northbound_, net::destroyOvnVpc(**nb, vpc));
}

Result<std::vector<std::string>> OvnFabric::vpcs(bool cluster) {
  std::lock_guard lock(mutex_);
  auto nb = connectLocked(northbound_, options_.northbound, "OVN northbound database");
  if (!nb) return fail(nb.error());
  auto rows = dropOnFailure(
      northbound_,
      (*nb)->transact(net::kOvnNorthbound, {net::ovsdb::selectOp("Logical_Router", {}, {"external_ids"})}));
  if (!rows) return fail(rows.error());
  std::set<std::string> names;
  for (const Json& row : rows->at(0).value("rows", Json::array())) {
    auto ids = net::ovsdb::decodeMap(row["external_ids"]);
    if (!ids) continue;
    std::optional<std::string> vpc;
    bool clusters = false;
    for (const auto& [key, value] : *ids) {
      if (key == net::kOvnVpcKey && value.is_string()) vpc = value.get<std::string>();
      if (key == net::kOvnScopeKey)
        clusters = value.is_string() && value.get<std::string>() == net::kOvnClusterScope;
    }
    if (vpc && clusters == cluster) names.insert(*vpc);
  }
  return std::vector<std::string>(names.begin(), names.end());
}

Status OvnFabric::attachContainer(const net::NicPlan& nic, pid_t pid) {
  const std::string context = fmt::format("plug instance {} into br-int", nic.nic.instance);
  const std::string nsPath = fmt::format("/proc/{}/ns/net", pid);
  UniqueFd instanceNs(::open(nsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!instanceNs) return fail(systemError(errno, fmt::format("open(\"{}\")", nsPath)).wrap(context));
  std::lock_guard lock(mutex_);
  if (auto ok = plugLocked(nic, instanceNs.get(), fmt::format("instance {}", nic.nic.instance), "eth0",
                           nic.gateway);
      !ok)
    return fail(ok.error().wrap(context));
  return {};
}

Status OvnFabric::attachNamespace(const net::NicPlan& nic, const std::string& netnsPath,
                                  const std::string& ifname, bool defaultRoute,
                                  std::optional<uint32_t> sourceTable) {
  const std::string context =
      fmt::format("plug NIC {} of {} into br-int (netns \"{}\")", ifname, nic.nic.instance, netnsPath);
  UniqueFd targetNs(::open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!targetNs) return fail(systemError(errno, fmt::format("open(\"{}\")", netnsPath)).wrap(context));
  std::lock_guard lock(mutex_);
  if (auto ok = plugLocked(nic, targetNs.get(), netnsPath, ifname,
                           defaultRoute ? std::optional<std::string>(nic.gateway) : std::nullopt);
      !ok)
    return fail(ok.error().wrap(context));
  if (sourceTable) {
    if (auto ok = net::addNicSourceTable(targetNs.get(), netnsPath, nic, ifname, *sourceTable); !ok)
      return fail(ok.error().wrap(context));
  }
  return {};
}

Status OvnFabric::plugLocked(const net::NicPlan& nic, int targetNetnsFd, const std::string& label,
                             const std::string& ifname, std::optional<std::string> gateway) {
  auto ovs = connectLocked(ovs_, options_.ovsDatabase, "Open_vSwitch database");
  if (!ovs) return fail(ovs.error());
  // A port of an earlier run (corrald killed before it took it away) goes first.
  if (auto gone = dropOnFailure(ovs_, net::removeOvsPort(**ovs, net::kIntegrationBridge, nic.link)); !gone)
    return fail(gone.error());
  auto again = connectLocked(ovs_, options_.ovsDatabase, "Open_vSwitch database");
  if (!again) return fail(again.error());
  const net::OvsPort port{.bridge = std::string(net::kIntegrationBridge),
                          .name = nic.link,
                          .ifaceId = net::ovnNicPortName(nic.nic.instance),
                          .externalIds = {{std::string(kInstanceKey), nic.nic.instance},
                                          {std::string(kPrefixKey), options_.prefix}}};
  if (auto added = dropOnFailure(ovs_, net::addOvsPort(**again, port)); !added) return fail(added.error());
  auto plugged = net::plugOvsPort(nic.link, {.hostNetns = options_.ovsNetns,
                                             .targetNetnsFd = targetNetnsFd,
                                             .label = label,
                                             .ifname = ifname,
                                             .mac = nic.mac,
                                             .mtu = 1400,
                                             .addressWithPrefix = nic.addressWithPrefix,
                                             .gateway = std::move(gateway)});
  if (!plugged) {
    (void)dropOnFailure(ovs_, net::removeOvsPort(**again, net::kIntegrationBridge, nic.link));
    return fail(plugged.error());
  }
  return {};
}

Status OvnFabric::attachVm(const net::NicPlan& nic, std::optional<pid_t> qemuPid) {
  std::lock_guard lock(mutex_);
  const std::string context = fmt::format("plug VM {} into br-int", nic.nic.instance);
  auto ovs = connectLocked(ovs_, options_.ovsDatabase, "Open_vSwitch database");
  if (!ovs) return fail(ovs.error().wrap(context));
  if (auto gone = dropOnFailure(ovs_, net::removeOvsPort(**ovs, net::kIntegrationBridge, nic.link)); !gone)
    return fail(gone.error().wrap(context));
  // The link first: a system port names a link that must be there when ovs-vswitchd opens it.
  const std::string tapNetns = qemuPid ? fmt::format("/proc/{}/ns/net", *qemuPid) : "/proc/self/ns/net";
  if (auto ready = net::readyTapForOvs(nic.link, tapNetns, options_.ovsNetns, nic.mtu); !ready)
    return fail(ready.error().wrap(context));
  auto again = connectLocked(ovs_, options_.ovsDatabase, "Open_vSwitch database");
  if (!again) return fail(again.error().wrap(context));
  const net::OvsPort port{.bridge = std::string(net::kIntegrationBridge),
                          .name = nic.link,
                          .type = "",
                          .ifaceId = net::ovnNicPortName(nic.nic.instance),
                          .externalIds = {{std::string(kInstanceKey), nic.nic.instance},
                                          {std::string(kPrefixKey), options_.prefix}}};
  if (auto added = dropOnFailure(ovs_, net::addOvsPort(**again, port)); !added) {
    if (auto ovsAgain = connectLocked(ovs_, options_.ovsDatabase, "Open_vSwitch database"); ovsAgain)
      (void)dropOnFailure(ovs_, net::removeOvsPort(**ovsAgain, net::kIntegrationBridge, nic.link));
    return fail(added.error().wrap(context));
  }
  return {};
}

Status OvnFabric::detach(const net::NicPlan& nic) {
  return removePort(nic.link);
}

Status OvnFabric::removePort(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto ovs = connectLocked(ovs_, options_.ovsDatabase, "Open_vSwitch database");
  if (!ovs) return fail(ovs.error());
  return dropOnFailure(ovs_, net::removeOvsPort(**ovs, net::kIntegrationBridge, name));
}

Result<std::vector<OvnFabricPort>> OvnFabric::ports() {
  std::lock_guard lock(mutex_);
  auto ovs = connectLocked(ovs_, options_.ovsDatabase, "Open_vSwitch database");
  if (!ovs) return fail(ovs.error());
  auto listed = dropOnFailure(ovs_, net::listOvsPorts(**ovs, net::kIntegrationBridge));
  if (!listed) return fail(listed.error());
  std::vector<OvnFabricPort> ours;
  for (const net::OvsPortState& port : *listed) {
    auto prefix = port.externalIds.find(std::string(kPrefixKey));
    auto instance = port.externalIds.find(std::string(kInstanceKey));
    if (prefix == port.externalIds.end() || prefix->second != options_.prefix ||
        instance == port.externalIds.end())
      continue;
    ours.push_back({.name = port.name, .instance = instance->second});
  }
  return ours;
}

Result<net::OvsChassis> OvnFabric::chassis() {
  std::lock_guard lock(mutex_);
  auto ovs = connectLocked(ovs_, options_.ovsDatabase, "Open_vSwitch database");
  if (!ovs) return fail(ovs.error());
  return dropOnFailure(ovs_, net::readOvsChassis(**ovs));
}

Result<std::string> OvnFabric::trace(const std::vector<std::string>& args) {
  const std::string context =
      fmt::format("ovn-trace {}", args.size() >= 2 ? args[args.size() - 2] : std::string("(no datapath)"));
  if (options_.southbound.empty())
    return fail(conflict("{}: corrald has no OVN southbound database to trace in (corrald --ovn-southbound)",
                         context));
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2").wrap(context));
  UniqueFd readEnd(pipeFds[0]);
  UniqueFd writeEnd(pipeFds[1]);
  UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  GatedSpawn spawn{
      .args = {"ovn-trace", "--db=" + options_.southbound},
      .stdinFd = devNull.get(),
      .outputFd = writeEnd.get(),
      .netnsFd = -1,
      .ownProcessGroup = false,
      .setnsFailed = "",
      .execFailed = "corrald: execvp(ovn-trace) failed (is ovn-central or ovn-common installed?)\n"};
  spawn.args.insert(spawn.args.end(), args.begin(), args.end());
  auto pid = spawnGated(spawn, [](pid_t) { return Status{}; });
  writeEnd.reset();
  if (!pid) return fail(pid.error().wrap(context));
  std::string output;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool timedOut = false;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timedOut = true;
      break;
    }
    pollfd ready{.fd = readEnd.get(), .events = POLLIN, .revents = 0};
    const int polled = ::poll(&ready, 1, static_cast<int>(left.count()));
    if (polled < 0 && errno == EINTR) continue;
    if (polled <= 0) {
      timedOut = polled == 0;
      break;
    }
    char buffer[4096];
    const ssize_t n = ::read(readEnd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    output.append(buffer, static_cast<size_t>(n));
  }
  if (timedOut) ::kill(*pid, SIGKILL);
  int status = 0;
  while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timedOut) return fail(unavailable("{}: no answer within 10 s", context));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    const std::string tail = output.size() > 600 ? output.substr(output.size() - 600) : output;
    return fail(internalError("{}: exited {}: {}", context,
                              WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), tail));
  }
  return output;
}

}  // namespace corral::daemon
