// The daemon's network: model changes and instance NICs turned into kernel state through net/vpc_datapath.
#include "daemon/network.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <set>
#include <utility>

#include "core/log.h"
#include "net/ipam.h"
#include "net/netlink.h"
#include "net/nft.h"
#include "net/reach.h"
#include "net/resolver.h"
#include "net/vpc_datapath.h"
#include "schema/instance.h"

namespace corral::daemon {
namespace {

// An instance's MTU on OVN: Geneve's outer headers (about 58 bytes with its option) must fit under the
// underlay's 1500 bytes, or nothing bigger than the difference arrives (docs/cluster.md).
constexpr unsigned kOvnNicMtu = 1400;

using nlohmann::json;

std::string joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

// nft table names take letters, digits and '_': one uplink table per netns prefix.
std::string hostUplinkTable(std::string_view netnsPrefix) {
  std::string table = "corral_uplink";
  for (char c : netnsPrefix) {
    if (c == '-' && (table.empty() || table.back() == '_')) continue;
    table += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  }
  if (table.back() == '_') table.pop_back();
  return table;
}

json optionalText(const std::optional<std::string>& value) {
  return value ? json(*value) : json(nullptr);
}

// A port's counts out of net::spoofDrops' answer; null when unreadable or when the kernel holds no guard
// for the port (drift: reconciliation at start puts it back).
json portDropsJson(const Result<std::map<std::string, net::SpoofDrops>>& drops, const std::string& link) {
  if (!drops) return nullptr;
  auto it = drops->find(link);
  if (it == drops->end()) return nullptr;
  const net::SpoofDrops& port = it->second;
  return {{"mac", port.mac}, {"ip", port.ip}, {"arp", port.arp}, {"other", port.other}};
}

json linkJson(const net::LinkInfo& link) {
  return {{"name", link.name},
          {"kind", link.kind},
          {"up", link.up},
          {"master", optionalText(link.master)},
          {"addresses", link.addresses}};
}

std::string routeTargetText(const net::RouteTarget& target) {
  if (target.name.empty()) return std::string(net::routeTargetTypeName(target.type));
  return fmt::format("{} {}", net::routeTargetTypeName(target.type), target.name);
}

}  // namespace

NetworkController::NetworkController(NetworkOptions options, net::Topology topology)
    : options_(std::move(options)), topology_(std::move(topology)) {
  if (options_.kernel && options_.ovn) ovn_ = std::make_unique<OvnFabric>(*options_.ovn);
  ovnAwaiting_ = ovn_ != nullptr && options_.ovnAwaitCluster;
}

NetworkController::~NetworkController() {
  FlowLogs* flowLogs = nullptr;
  {
    std::lock_guard lock(mutex_);
    flowLogs = flowLogs_;
  }
  // Outside mutex_: the explainer takes it, and this waits for a running one.
  if (flowLogs) flowLogs->setExplainer(nullptr);
}

// ---- Topology ----

Status NetworkController::checkTopology(const net::Topology& next) const {
  std::lock_guard lock(mutex_);
  return checkLocked(next);
}

Status NetworkController::checkLocked(const net::Topology& next) const {
  // Over the subnets and combinations of groups in use, not every NIC.
  std::map<std::string, std::set<std::string>> bySubnet, byGroup;
  for (const auto& [subnet, combinations] : byCombination_) {
    for (const auto& [groups, instances] : combinations) {
      if (instances.empty()) continue;
      if (!next.findSubnet(subnet)) bySubnet[subnet].insert(instances.begin(), instances.end());
      for (const std::string& group : groups) {
        if (!next.findSecurityGroup(group)) byGroup[group].insert(instances.begin(), instances.end());
      }
    }
  }
  if (!bySubnet.empty()) {
    const auto& [subnet, users] = *bySubnet.begin();
    return fail(conflict("subnet \"{}\" still has instances: {}; remove them first", subnet,
                         joined(std::vector<std::string>(users.begin(), users.end()))));
  }
  if (!byGroup.empty()) {
    const auto& [group, users] = *byGroup.begin();
    return fail(conflict("security group \"{}\" is still used by instances: {}; remove them first", group,
                         joined(std::vector<std::string>(users.begin(), users.end()))));
  }
  if (ovn_) return checkOvnLocked(next);
  return {};
}

// ---- The OVN backend ----

Status NetworkController::checkOvnLocked(const net::Topology& next) const {
  for (const net::Vpc* vpc : next.vpcs()) {
    if (!next.internetGateways(vpc->name).empty() &&
        (options_.ovnGatewayChassis.empty() || options_.ovnOutsideNetwork.empty())) {
      return fail(
          conflict("vpc \"{}\": an internet gateway on OVN needs the chassis that carries it and the "
                   "network it maps to the outside (corrald --ovn-gateway-chassis, "
                   "--ovn-outside-network)",
                   vpc->name));
    }
  }
  return {};
}

Result<net::OvnVpcPlan> NetworkController::ovnPlanLocked(const net::Topology& topology,
                                                         const std::string& vpc) const {
  std::vector<net::NicAttachment> nics;
  for (const auto& [name, nic] : nics_) {
    const net::Subnet* subnet = topology.findSubnet(nic.subnet);
    if (subnet && subnet->vpc == vpc) nics.push_back(nic);
  }
  std::optional<net::OvnGatewaySettings> gateway;
  if (!topology.internetGateways(vpc).empty()) {
    // From the model alone: every corrald of a cluster plans these rows (net/datapath.h).
    auto transit = net::transitInModel(options_.uplink, topology, vpc);
    if (!transit) return fail(transit.error().wrap("internet gateway transit network"));
    gateway = net::OvnGatewaySettings{
        .chassis = options_.ovnGatewayChassis, .network = options_.ovnOutsideNetwork, .transit = *transit};
  }
  auto plan = net::planOvnVpc(topology, vpc, nics, gateway ? &*gateway : nullptr);
  if (plan) plan->cluster = ovnClusterScope_;
  return plan;
}

Status NetworkController::convergeOvnLocked(const net::Topology& topology, const std::string& vpc,
                                            std::vector<std::string>* changes) {
  auto plan = ovnPlanLocked(topology, vpc);
  if (!plan) return fail(plan.error());
  ovnApplied_.erase(vpc);       // until this succeeds the rows are in no known state
  if (ovnAwaiting_) return {};  // endClusterWait() converges every VPC
  auto changed = ovn_->converge(*plan);
  if (!changed) return fail(changed.error());
  for (const std::string& line : *changed) {
    log::info("vpc \"{}\" (OVN): {}", vpc, line);
    if (changes) changes->push_back(fmt::format("vpc {}: {}", vpc, line));
  }
  ovnApplied_.insert_or_assign(vpc, std::move(*plan));
  return {};
}

Status NetworkController::applyTopologyOvnLocked(const net::Topology& next) {
  Status result;
  std::vector<std::string> touched;
  for (const net::Vpc* vpc : next.vpcs()) {
    auto plan = ovnPlanLocked(next, vpc->name);
    if (!plan) {
      result = fail(plan.error().wrap(fmt::format("vpc \"{}\"", vpc->name)));
      break;
    }
    auto applied = ovnApplied_.find(vpc->name);
    if (applied != ovnApplied_.end() && applied->second == *plan) continue;
    touched.push_back(vpc->name);
    if (auto ok = convergeOvnLocked(next, vpc->name); !ok) {
      result = fail(ok.error().wrap(fmt::format("vpc \"{}\"", vpc->name)));
      break;
    }
  }
  if (result) {
    for (const net::Vpc* vpc : topology_.vpcs()) {
      if (next.findVpc(vpc->name)) continue;
      ovnApplied_.erase(vpc->name);
      if (ovnAwaiting_) continue;  // endClusterWait() removes the rows of VPCs no longer in the model
      if (auto ok = ovn_->destroy(vpc->name); !ok) {
        result = fail(ok.error().wrap(fmt::format("delete vpc \"{}\"", vpc->name)));
        break;
      }
      transits_.erase(vpc->name);
    }
  }
  if (result) {
    topology_ = next;
    for (auto it = transits_.begin(); it != transits_.end();) {
      it = topology_.internetGateways(it->first).empty() ? transits_.erase(it) : std::next(it);
    }
    return {};
  }
  // Back to what the model still says.
  for (const std::string& vpc : touched) {
    Status undone = topology_.findVpc(vpc) ? convergeOvnLocked(topology_, vpc) : Status{};
    if (!topology_.findVpc(vpc)) {
      if (auto destroyed = ovn_->destroy(vpc); !destroyed) undone = fail(destroyed.error());
    }
    if (!undone) log::warn("rolling back vpc \"{}\" (OVN): {}", vpc, undone.error().message());
  }
  return result;
}

// A peer's rows hold nothing of `vpc`'s NICs (a rule naming a group of `vpc` matches the group's address
// set, which OVN keeps from `vpc`'s own port group), so a NIC change leaves them as they are; a peer whose
// plan differs from what was applied (never applied, or a failed convergence) converges now all the same.
void NetworkController::updateOvnPeersLocked(const std::string& vpc) {
  for (const net::Peering* peering : topology_.peerings(vpc)) {
    const std::string peer = peering->otherSide(vpc);
    if (!topology_.findVpc(peer)) continue;
    auto plan = ovnPlanLocked(topology_, peer);
    auto applied = ovnApplied_.find(peer);
    if (plan && applied != ovnApplied_.end() && applied->second == *plan) continue;
    if (auto ok = convergeOvnLocked(topology_, peer); !ok)
      log::warn("vpc \"{}\": converging peer vpc \"{}\" (OVN): {}", vpc, peer, ok.error().message());
  }
}

std::vector<std::string> NetworkController::endClusterWait() {
  std::lock_guard lock(mutex_);
  if (!ovn_ || !ovnAwaiting_) return {};
  ovnAwaiting_ = false;
  log::info("cluster: this host's copy caught up; its VPCs' OVN rows are written again");
  return reconcileOvnLocked();
}

void NetworkController::beginClusterWait() {
  std::lock_guard lock(mutex_);
  if (ovn_) ovnAwaiting_ = true;
}

void NetworkController::setClusterScope(bool cluster) {
  std::lock_guard lock(mutex_);
  ovnClusterScope_ = cluster;
}

Status NetworkController::forgetModel() {
  std::vector<std::string> instances;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, nic] : nics_) instances.push_back(name);
    if (!ovn_ && options_.kernel) {
      // Without NICs first, so that applyTopology's check of the empty model holds.
      for (const std::string& instance : instances) eraseNicLocked(instance);
      instances.clear();
    } else {
      for (const std::string& instance : instances) {
        nicsChangedLocked(nics_.at(instance).subnet);
        eraseNicLocked(instance);
      }
      for (const net::Vpc* vpc : topology_.vpcs()) {
        if (metadata_) metadata_->close(vpc->name);
        if (flowLogs_) flowLogs_->forget(vpc->name);
      }
      topology_ = net::Topology();
      ovnAwaiting_ = false;  // a single host now: its own VPCs' rows are written at once
      ovnApplied_.clear();
      applied_.clear();
      transits_.clear();
      resolverStale_.clear();
      return {};
    }
  }
  return applyTopology(net::Topology());
}

std::vector<std::string> NetworkController::reconcileOvnLocked() {
  std::vector<std::string> changes;
  if (ovnAwaiting_) {
    log::info("reconcile (OVN): waiting for the cluster's model before writing any row");
  }
  std::vector<const net::Vpc*> vpcs = topology_.vpcs();
  std::stable_sort(vpcs.begin(), vpcs.end(),
                   [](const net::Vpc* a, const net::Vpc* b) { return a->createdAt < b->createdAt; });
  for (const net::Vpc* vpc : vpcs) {
    if (auto ok = convergeOvnLocked(topology_, vpc->name, &changes); !ok) {
      log::error("reconcile vpc \"{}\" (OVN): {}", vpc->name, ok.error().message());
      changes.push_back(fmt::format("vpc {}: FAILED: {}", vpc->name, ok.error().message()));
    }
  }
  // Only VPCs of this host's scope: a single host leaves a cluster's rows alone, and a cluster member a
  // single host's (net::kOvnScopeKey).
  if (auto inDatabase = ovnAwaiting_ ? Result<std::vector<std::string>>(std::vector<std::string>{})
                                     : ovn_->vpcs(ovnClusterScope_);
      inDatabase) {
    for (const std::string& vpc : *inDatabase) {
      if (topology_.findVpc(vpc)) continue;
      if (auto ok = ovn_->destroy(vpc); !ok) {
        log::error("reconcile: removing the OVN rows of vpc \"{}\": {}", vpc, ok.error().message());
        continue;
      }
      changes.push_back(fmt::format("removed the OVN rows of vpc {} (not in the state)", vpc));
    }
  } else {
    log::error("reconcile (OVN): {}", inDatabase.error().message());
  }
  // A port on br-int whose instance has no NIC any more (corrald was killed before it took the port away).
  if (auto ports = ovn_->ports(); ports) {
    for (const OvnFabricPort& port : *ports) {
      if (nics_.contains(port.instance)) continue;
      if (auto ok = ovn_->removePort(port.name); !ok) {
        log::error("reconcile: removing br-int port {}: {}", port.name, ok.error().message());
        continue;
      }
      changes.push_back(
          fmt::format("removed br-int port {} (instance {} has no NIC)", port.name, port.instance));
    }
  } else {
    log::error("reconcile (OVN): {}", ports.error().message());
  }
  return changes;
}

Status NetworkController::applyTopology(const net::Topology& next) {
  std::lock_guard lock(mutex_);
  if (auto ok = checkLocked(next); !ok) return fail(ok.error());
  if (!options_.kernel) {
    topology_ = next;
    return {};
  }
  if (ovn_) return applyTopologyOvnLocked(next);
  Status result;
  for (const net::Vpc* vpc : next.vpcs()) {
    // A VPC the change does not touch keeps its kernel objects as they are (reconcile() at start repairs
    // drift): an empty delta against what was applied, or, when nothing is known to be applied, the same
    // plan before and after. One the change touches only in its firewall gets a delta.
    if (!applied_.contains(vpc->name) && topology_.findVpc(vpc->name) && planUnchangedLocked(next, vpc->name))
      continue;
    auto update = [&]() -> Status {
      if (!topology_.findVpc(vpc->name)) return convergeLocked(next, vpc->name);
      if (auto done = updateRulesLocked(next, vpc->name)) return *done;
      return updateLocked(next, vpc->name);
    };
    if (auto ok = update(); !ok) {
      result = fail(ok.error().wrap(fmt::format("vpc \"{}\"", vpc->name)));
      break;
    }
  }
  if (result) {
    for (const net::Vpc* vpc : topology_.vpcs()) {
      if (next.findVpc(vpc->name)) continue;
      applied_.erase(vpc->name);
      resolverStale_.erase(vpc->name);
      if (metadata_) metadata_->close(vpc->name);
      if (flowLogs_) flowLogs_->forget(vpc->name);
      if (resolvers_) {
        if (auto ok = resolvers_->remove(vpc->name); !ok)
          log::warn("delete vpc \"{}\": its resolver: {}", vpc->name, ok.error().message());
      }
      if (auto ok = net::destroyVpc(net::vpcNetnsName(options_.netnsPrefix, vpc->name)); !ok) {
        result = fail(ok.error().wrap(fmt::format("delete vpc \"{}\"", vpc->name)));
        break;
      }
      transits_.erase(vpc->name);
    }
  }
  if (result) {
    net::Topology before = std::exchange(topology_, next);
    for (auto it = transits_.begin(); it != transits_.end();) {
      it = topology_.internetGateways(it->first).empty() ? transits_.erase(it) : std::next(it);
    }
    // Only the VPCs whose resolver inputs changed, or that are owed a sync (a converge, a failure): a rule
    // change syncs none, so its cost does not follow the NICs of every VPC (issue 15).
    for (const net::Vpc* vpc : topology_.vpcs()) {
      if (resolverStale_.contains(vpc->name) ||
          resolverInputs(before, vpc->name) != resolverInputs(topology_, vpc->name))
        syncResolverLocked(vpc->name);
    }
    return {};
  }
  // Back to what the model still says: VPCs only in `next` go, the others are converged to the current.
  for (const net::Vpc* vpc : next.vpcs()) {
    if (topology_.findVpc(vpc->name)) continue;
    applied_.erase(vpc->name);
    if (auto undone = net::destroyVpc(net::vpcNetnsName(options_.netnsPrefix, vpc->name)); !undone)
      log::warn("rolling back vpc \"{}\": {}", vpc->name, undone.error().message());
    transits_.erase(vpc->name);
  }
  for (const net::Vpc* vpc : topology_.vpcs()) {
    if (auto undone = convergeLocked(topology_, vpc->name); !undone)
      log::warn("rolling back vpc \"{}\": {}", vpc->name, undone.error().message());
  }
  return result;
}

Result<net::Cidr> NetworkController::transitLocked(const net::Topology& topology,
                                                   const std::string& vpc) const {
  if (auto it = transits_.find(vpc); it != transits_.end()) return it->second;
  std::set<net::Cidr> taken;
  for (const auto& [other, transit] : transits_) taken.insert(transit);
  auto chosen = net::chooseTransit(options_.uplink, vpc, taken);
  if (!chosen) return fail(chosen.error().wrap("internet gateway transit network"));
  (void)topology;
  transits_.emplace(vpc, *chosen);
  return *chosen;
}

std::vector<net::NicAttachment> NetworkController::nicsLocked() const {
  std::vector<net::NicAttachment> nics;
  nics.reserve(nics_.size());
  for (const auto& [name, nic] : nics_) nics.push_back(nic);
  return nics;
}

Result<net::VpcPlan> NetworkController::planLocked(const net::Topology& topology,
                                                   const std::string& vpc) const {
  // Only NICs whose subnet is in this topology and VPC take part, and those of peered VPCs (members of
  // groups our rules may name).
  std::vector<net::NicAttachment> nics;
  for (const auto& [name, nic] : nics_) {
    const net::Subnet* subnet = topology.findSubnet(nic.subnet);
    if (subnet && (subnet->vpc == vpc || topology.peeringBetween(vpc, subnet->vpc))) nics.push_back(nic);
  }
  return planWithLocked(topology, vpc, nics);
}

Result<net::VpcPlan> NetworkController::planWithLocked(const net::Topology& topology, const std::string& vpc,
                                                       const std::vector<net::NicAttachment>& nics) const {
  if (!topology.findVpc(vpc)) return fail(notFound("vpc \"{}\" not found", vpc));
  std::optional<net::Cidr> transit;
  if (!topology.internetGateways(vpc).empty()) {
    auto chosen = transitLocked(topology, vpc);
    if (!chosen) return fail(chosen.error());
    transit = *chosen;
  }
  return net::planVpc(topology, vpc, options_.netnsPrefix, nics, options_.uplink, transit);
}

bool NetworkController::planUnchangedLocked(const net::Topology& next, const std::string& vpc) const {
  auto before = planLocked(topology_, vpc);
  auto after = planLocked(next, vpc);
  return before && after && *before == *after;
}

Status NetworkController::convergeLocked(const net::Topology& topology, const std::string& vpc,
                                         std::vector<std::string>* changes) {
  auto plan = planLocked(topology, vpc);
  if (!plan) return fail(plan.error());
  return convergePlanLocked(*plan, changes);
}

Status NetworkController::convergePlanLocked(const net::VpcPlan& plan, std::vector<std::string>* changes) {
  // Until this succeeds the kernel is in no known state: the next change converges again.
  applied_.erase(plan.vpc);
  // A converge may make the namespace anew (it went missing): the flow logs' watch and the metadata
  // listener follow it at the next sync, which this asks for.
  resolverStale_.insert(plan.vpc);
  if (plan.gateway && options_.uplink.netns.empty()) {
    // The host is the uplink: it forwards and masquerades the VPCs' traffic out of its default route.
    std::ofstream forward("/proc/sys/net/ipv4/ip_forward");
    forward << "1\n";
    if (!forward.flush()) return fail(systemError(errno, "write /proc/sys/net/ipv4/ip_forward"));
    const std::string table = hostUplinkTable(options_.netnsPrefix);
    if (auto ok = net::applyRuleset("", net::hostUplinkRuleset(options_.uplink, table), table); !ok)
      return fail(ok.error().wrap("host uplink"));
  }
  auto changed = net::convergeVpc(plan);
  if (!changed) return fail(changed.error());
  for (const std::string& line : *changed) {
    log::info("vpc \"{}\": {}", plan.vpc, line);
    if (changes) changes->push_back(fmt::format("vpc {}: {}", plan.vpc, line));
  }
  applied_.insert_or_assign(plan.vpc, plan);
  return {};
}

Status NetworkController::updateLocked(const net::Topology& topology, const std::string& vpc) {
  auto plan = planLocked(topology, vpc);
  if (!plan) return fail(plan.error());
  auto applied = applied_.find(vpc);
  if (applied == applied_.end() || !net::sameLinksAndRoutes(applied->second, *plan)) {
    return convergePlanLocked(*plan);
  }
  auto inet = net::diffTables(applied->second.firewall, plan->firewall);
  auto bridge = net::diffTables(applied->second.portGuardTable, plan->portGuardTable);
  if (!inet || !bridge) return convergePlanLocked(*plan);
  if (!inet->empty() || !bridge->empty()) {
    // Port guards first in the batch: a new port's guard exists when its addresses become allowed.
    if (auto ok = net::applyFirewallDeltas(plan->netns, {*bridge, *inet}); !ok) {
      log::warn("vpc \"{}\": the firewall delta was refused ({}); converging the vpc whole", vpc,
                ok.error().message());
      return convergePlanLocked(*plan);
    }
  }
  applied->second = std::move(*plan);
  return {};
}

Result<net::VpcPlan> NetworkController::skeletonLocked(const net::Topology& topology,
                                                       const std::string& vpc) const {
  return planWithLocked(topology, vpc, {});
}

namespace {

// Whether two plans have the same links and routes but for the gateway's public addresses (which follow
// the NICs: a skeleton has none).
bool sameSkeleton(const net::VpcPlan& a, const net::VpcPlan& b) {
  auto withoutPublic = [](std::optional<net::GatewayPlan> gateway) {
    if (gateway) gateway->publicAddresses.clear();
    return gateway;
  };
  return a.vpc == b.vpc && a.netns == b.netns && a.cidr == b.cidr && a.bridges == b.bridges &&
         a.routeTables == b.routeTables && withoutPublic(a.gateway) == withoutPublic(b.gateway) &&
         a.peerings == b.peerings;
}

}  // namespace

std::optional<Status> NetworkController::updateRulesLocked(const net::Topology& next,
                                                           const std::string& vpc) {
  auto applied = applied_.find(vpc);
  if (applied == applied_.end() || !topology_.findVpc(vpc)) return std::nullopt;
  auto before = skeletonLocked(topology_, vpc);
  auto after = skeletonLocked(next, vpc);
  if (!before || !after || !sameSkeleton(*before, *after) || !sameSkeleton(*before, applied->second))
    return std::nullopt;
  net::VpcPlan& plan = applied->second;
  auto delta = net::vpcFirewallRulesDelta(plan.firewall, topology_, next, vpc, standsLocked(vpc),
                                          plan.gateway ? &*plan.gateway : nullptr, peerNicsLocked(vpc));
  if (!delta) return std::nullopt;
  if (delta->empty()) return Status{};
  if (auto ok = net::applyFirewallDeltas(plan.netns, {*delta}); !ok) {
    log::warn("vpc \"{}\": the firewall delta was refused ({}); converging the vpc whole", vpc,
              ok.error().message());
    return convergeLocked(next, vpc);
  }
  if (auto replayed = net::applyDelta(plan.firewall, *delta); !replayed) {
    log::warn("vpc \"{}\": {}; the next change converges it whole", vpc, replayed.error().message());
    applied_.erase(applied);
  }
  return Status{};
}

Status NetworkController::changeNicsLocked(const std::string& vpc,
                                           const std::vector<net::NicAttachment>& nics, bool joining) {
  if (ovn_) return convergeOvnLocked(topology_, vpc);
  auto applied = applied_.find(vpc);
  const bool routed = std::any_of(
      nics.begin(), nics.end(), [](const net::NicAttachment& nic) { return nic.publicAddress.has_value(); });
  if (applied == applied_.end() || routed || nics.empty()) return updateLocked(topology_, vpc);
  net::VpcPlan& plan = applied->second;
  std::vector<net::NicPlan> planned;
  for (const net::NicAttachment& nic : nics) {
    const net::Subnet* subnet = topology_.findSubnet(nic.subnet);
    if (!subnet || subnet->vpc != vpc) return updateLocked(topology_, vpc);
    planned.push_back(net::planNic(*subnet, nic));
  }
  const net::NftTable inetPart =
      net::vpcFirewall(topology_, vpc, nics, plan.gateway ? &*plan.gateway : nullptr);
  const net::NftTable bridgePart = net::portGuardTable(vpc, planned);
  auto inet =
      joining ? net::addPartDelta(plan.firewall, inetPart) : net::removePartDelta(plan.firewall, inetPart);
  auto bridge = joining ? net::addPartDelta(plan.portGuardTable, bridgePart)
                        : net::removePartDelta(plan.portGuardTable, bridgePart);
  if (!inet || !bridge) return updateLocked(topology_, vpc);
  // Port guards first in the batch: a new port's guard exists when its addresses become allowed.
  if (auto ok = net::applyFirewallDeltas(plan.netns, {*bridge, *inet}); !ok) {
    log::warn("vpc \"{}\": the firewall delta was refused ({}); converging the vpc whole", vpc,
              ok.error().message());
    return convergeLocked(topology_, vpc);
  }
  auto inetReplayed = net::applyDelta(plan.firewall, *inet);
  auto bridgeReplayed = net::applyDelta(plan.portGuardTable, *bridge);
  if (!inetReplayed || !bridgeReplayed) {
    log::warn("vpc \"{}\": {}; the next change converges it whole", vpc,
              (!inetReplayed ? inetReplayed : bridgeReplayed).error().message());
    applied_.erase(applied);
    return {};
  }
  auto byInstance = [](const net::NicPlan& a, const net::NicPlan& b) {
    return a.nic.instance < b.nic.instance;
  };
  for (net::NicPlan& nic : planned) {
    auto at = std::lower_bound(plan.nics.begin(), plan.nics.end(), nic, byInstance);
    if (joining) {
      plan.nics.insert(at, std::move(nic));
    } else if (at != plan.nics.end() && at->nic.instance == nic.nic.instance) {
      plan.nics.erase(at);
    }
  }
  return {};
}

std::vector<net::NicAttachment> NetworkController::peerNicsLocked(const std::string& vpc) const {
  std::vector<net::NicAttachment> nics;
  if (topology_.peerings(vpc).empty()) return nics;
  for (const auto& [name, nic] : nics_) {
    const net::Subnet* subnet = topology_.findSubnet(nic.subnet);
    if (subnet && subnet->vpc != vpc && topology_.peeringBetween(vpc, subnet->vpc)) nics.push_back(nic);
  }
  return nics;
}

void NetworkController::updatePeersLocked(const std::string& vpc) {
  if (ovn_) return updateOvnPeersLocked(vpc);
  for (const net::Peering* peering : topology_.peerings(vpc)) {
    const std::string peer = peering->otherSide(vpc);
    auto applied = applied_.find(peer);
    // Only a peer whose rules name a group of `vpc` holds our NICs (as members of that group's set).
    bool names = applied == applied_.end();
    for (const net::SecurityGroup* group : topology_.securityGroups(vpc)) {
      if (names) break;
      names = applied->second.firewall.sets.contains("sg-members-" + group->name);
    }
    if (!names) continue;
    if (auto ok = updateLocked(topology_, peer); !ok)
      log::warn("vpc \"{}\": updating what it knows of peer vpc \"{}\"'s NICs: {}", peer, vpc,
                ok.error().message());
  }
}

// ---- NICs ----

const net::Subnet* NetworkController::nicSubnetLocked(const std::string& instance) const {
  auto it = nics_.find(instance);
  if (it == nics_.end()) return nullptr;
  return topology_.findSubnet(it->second.subnet);
}

Result<RouterPath> NetworkController::routerPathTo(const std::string& instance) const {
  std::lock_guard lock(mutex_);
  if (!options_.kernel)
    return fail(
        unavailable("this daemon does not manage the network in the kernel: no path to \"{}\"", instance));
  if (ovn_) {
    return fail(
        conflict("no path from corrald to instance \"{}\": the OVN backend has no router namespace "
                 "(waiting for a port, health checks and trace are not on OVN yet)",
                 instance));
  }
  auto it = nics_.find(instance);
  const net::Subnet* subnet = nicSubnetLocked(instance);
  if (it == nics_.end() || subnet == nullptr) {
    return fail(
        conflict("instance \"{}\" has no NIC in a subnet (it was run without --subnet): corrald reaches "
                 "an instance only at its address on its subnet",
                 instance));
  }
  return RouterPath{net::vpcNetnsName(options_.netnsPrefix, subnet->vpc), it->second.address};
}

Result<std::optional<net::NicAttachment>> NetworkController::reserveNic(const schema::InstanceSpec& spec,
                                                                        const std::string& linkKey) {
  if (spec.subnet.empty()) {
    if (!spec.ip.empty()) return fail(invalidField("ip", "an address needs a subnet: add --subnet"));
    if (!spec.securityGroups.empty())
      return fail(invalidField("security_groups", "security groups need a subnet: add --subnet"));
    if (!spec.publish.empty()) return fail(invalidField("publish", "publishing a port needs a subnet"));
    if (spec.publicIp.value_or(false) || !spec.publicAddress.empty())
      return fail(invalidField("public_ip", "a public address needs a subnet"));
    return std::optional<net::NicAttachment>();
  }
  std::lock_guard lock(mutex_);
  if (nics_.contains(spec.name)) return fail(conflict("instance \"{}\" already has a NIC", spec.name));
  const net::Subnet* subnet = topology_.findSubnet(spec.subnet);
  if (!subnet) {
    return fail(Error(ErrorKind::NotFound,
                      fmt::format("subnet \"{}\" not found (corral subnet ls lists them)", spec.subnet),
                      "subnet"));
  }
  const std::string& vpc = subnet->vpc;

  net::NicAttachment nic;
  nic.instance = spec.name;
  nic.vm = spec.kind == schema::InstanceKind::vm;
  nic.subnet = subnet->name;
  nic.linkKey = linkKey;

  // The private address from the subnet's pool; given back by the lease if a check below refuses.
  net::SubnetIpam& ipam = *ipamLocked(subnet->name);
  Result<net::IpLease> lease = [&]() -> Result<net::IpLease> {
    if (spec.ip.empty()) return ipam.allocate();
    auto wanted = net::Ipv4Address::parse(spec.ip, "ip");
    if (!wanted) return fail(wanted.error());
    auto taken = ipam.allocate(*wanted);
    if (!taken) {
      Error error = taken.error();
      return fail(Error(error.kind(), error.message(), "ip"));
    }
    return taken;
  }();
  if (!lease) return fail(lease.error().wrap(fmt::format("subnet \"{}\"", subnet->name)));
  nic.address = lease->address().str();

  // Security groups: of this VPC; none named = the VPC's default group.
  for (size_t i = 0; i < spec.securityGroups.size(); ++i) {
    const std::string field = fmt::format("security_groups[{}]", i);
    const net::SecurityGroup* group = topology_.findSecurityGroup(spec.securityGroups[i]);
    if (!group) {
      return fail(Error(ErrorKind::NotFound,
                        fmt::format("security group \"{}\" not found", spec.securityGroups[i]), field));
    }
    if (group->vpc != vpc) {
      return fail(invalidField(field, "security group \"{}\" belongs to vpc \"{}\", the subnet to vpc \"{}\"",
                               group->name, group->vpc, vpc));
    }
    if (std::find(nic.securityGroups.begin(), nic.securityGroups.end(), group->name) ==
        nic.securityGroups.end()) {
      nic.securityGroups.push_back(group->name);
    }
  }

  const bool hasGateway = !topology_.internetGateways(vpc).empty();
  // Published ports: DNAT from the gateway's outside address, unique per VPC and protocol.
  std::set<std::pair<net::Protocol, uint16_t>> usedPorts;
  // Only a NIC that publishes needs the VPC's published ports.
  for (const auto& [name, other] : nics_) {
    if (spec.publish.empty()) break;
    const net::Subnet* otherSubnet = topology_.findSubnet(other.subnet);
    if (!otherSubnet || otherSubnet->vpc != vpc) continue;
    for (const net::PortForward& forward : other.publish)
      usedPorts.emplace(forward.protocol, forward.outsidePort);
  }
  for (size_t i = 0; i < spec.publish.size(); ++i) {
    const std::string field = fmt::format("publish[{}]", i);
    auto forward = net::parsePortForward(spec.publish[i], field);
    if (!forward) return fail(forward.error());
    if (!hasGateway) {
      return fail(
          invalidField(field, "vpc \"{}\" has no internet gateway to publish on: corral igw create", vpc));
    }
    if (topology_.reachability(*subnet) == net::SubnetReachability::Isolated) {
      return fail(
          invalidField(field,
                       "subnet \"{}\" is isolated: its route table sends 0.0.0.0/0 nowhere, so answers "
                       "could not leave; route it to the internet gateway or a NAT gateway",
                       subnet->name));
    }
    if (!usedPorts.emplace(forward->protocol, forward->outsidePort).second) {
      return fail(Error(ErrorKind::Conflict,
                        fmt::format("port {}/{} of vpc \"{}\"'s internet gateway is already published",
                                    forward->outsidePort, net::protocolName(forward->protocol), vpc),
                        field));
    }
    nic.publish.push_back(*forward);
  }

  // A public address: asked for, or the subnet maps one (AWS's MapPublicIpOnLaunch).
  const bool wantsPublic = !spec.publicAddress.empty() || spec.publicIp.value_or(subnet->mapPublicIp);
  if (wantsPublic && spec.publicIp.value_or(true)) {
    if (!hasGateway) {
      if (spec.publicIp.value_or(false) || !spec.publicAddress.empty())
        return fail(invalidField("public_ip", "vpc \"{}\" has no internet gateway: corral igw create", vpc));
    } else {
      std::set<net::Ipv4Address> taken;
      for (const auto& [name, other] : nics_) {
        if (!other.publicAddress) continue;
        if (auto address = net::Ipv4Address::parse(*other.publicAddress); address) taken.insert(*address);
      }
      if (!spec.publicAddress.empty()) {
        auto wanted = net::Ipv4Address::parse(spec.publicAddress, "public_address");
        if (!wanted) return fail(wanted.error());
        const net::Cidr& pool = options_.uplink.publicPool;
        if (!pool.contains(*wanted) || *wanted == pool.first() || *wanted == pool.last()) {
          return fail(invalidField("public_address", "{} is not a usable address of the public pool {}",
                                   wanted->str(), pool.str()));
        }
        if (taken.contains(*wanted))
          return fail(Error(ErrorKind::Conflict, fmt::format("public address {} is in use", wanted->str()),
                            "public_address"));
        nic.publicAddress = wanted->str();
      } else {
        auto chosen = net::choosePublicAddress(options_.uplink, taken);
        if (!chosen) return fail(chosen.error());
        nic.publicAddress = chosen->str();
      }
    }
  }

  lease->keep();  // the NIC holds it now; eraseNicLocked gives it back
  addNicLocked(nic);
  nicsChangedLocked(nic.subnet);
  if (options_.kernel) {
    if (auto ok = changeNicsLocked(vpc, {nic}, true); !ok) {
      eraseNicLocked(nic.instance);
      if (auto undone = updateLocked(topology_, vpc); !undone)
        log::warn("vpc \"{}\": {}", vpc, undone.error().message());
      return fail(ok.error().wrap(fmt::format("vpc \"{}\"", vpc)));
    }
    updatePeersLocked(vpc);
    syncNicsLocked(vpc, {nic}, true);
  }
  return std::optional<net::NicAttachment>(std::move(nic));
}

Status NetworkController::restoreNic(const schema::InstanceSpec& spec, const std::string& linkKey) {
  if (spec.subnet.empty()) return {};
  if (spec.ip.empty()) return fail(internalError("instance \"{}\": stored without its address", spec.name));
  net::NicAttachment nic;
  nic.instance = spec.name;
  nic.vm = spec.kind == schema::InstanceKind::vm;
  nic.subnet = spec.subnet;
  nic.address = spec.ip;
  nic.securityGroups = spec.securityGroups;
  if (!spec.publicAddress.empty()) nic.publicAddress = spec.publicAddress;
  for (size_t i = 0; i < spec.publish.size(); ++i) {
    auto forward = net::parsePortForward(spec.publish[i], fmt::format("publish[{}]", i));
    if (!forward) return fail(forward.error());
    nic.publish.push_back(*forward);
  }
  nic.linkKey = linkKey;
  std::lock_guard lock(mutex_);
  nicsChangedLocked(nic.subnet);
  eraseNicLocked(nic.instance);
  addNicLocked(nic);
  return {};
}

Status NetworkController::adoptNic(const schema::InstanceSpec& spec, const std::string& linkKey) {
  if (auto restored = restoreNic(spec, linkKey); !restored) return fail(restored.error());
  if (spec.subnet.empty()) return {};
  std::lock_guard lock(mutex_);
  auto it = nics_.find(spec.name);
  const net::Subnet* subnet = it != nics_.end() ? topology_.findSubnet(it->second.subnet) : nullptr;
  if (!subnet || !options_.kernel) return {};
  const net::NicAttachment nic = it->second;
  if (auto ok = changeNicsLocked(subnet->vpc, {nic}, true); !ok)
    return fail(ok.error().wrap(fmt::format("instance \"{}\" of another host", spec.name)));
  updatePeersLocked(subnet->vpc);
  syncNicsLocked(subnet->vpc, {nic}, true);
  return {};
}

void NetworkController::releaseNic(const std::string& instance) {
  std::lock_guard lock(mutex_);
  auto it = nics_.find(instance);
  if (it == nics_.end()) return;
  const net::Subnet* subnet = topology_.findSubnet(it->second.subnet);
  nicsChangedLocked(it->second.subnet);
  const net::NicAttachment gone = it->second;
  eraseNicLocked(instance);
  if (!subnet || !options_.kernel) return;
  unplugOvnBalancerNicsLocked({gone});
  // Its rules and port guard go as a delta; a public address (a route on the uplink side) converges.
  if (auto ok = changeNicsLocked(subnet->vpc, {gone}, false); !ok)
    log::warn("instance \"{}\": releasing its NIC: {}", instance, ok.error().message());
  updatePeersLocked(subnet->vpc);
  syncNicsLocked(subnet->vpc, {gone}, false);
}

Status NetworkController::releaseNics(const std::vector<std::string>& instances) {
  std::lock_guard lock(mutex_);
  std::map<std::string, std::vector<net::NicAttachment>> byVpc;
  for (const std::string& instance : instances) {
    auto it = nics_.find(instance);
    if (it == nics_.end()) continue;
    nicsChangedLocked(it->second.subnet);
    if (const net::Subnet* subnet = topology_.findSubnet(it->second.subnet))
      byVpc[subnet->vpc].push_back(it->second);
    eraseNicLocked(instance);
  }
  if (!options_.kernel) return {};
  Status result;
  for (const auto& [vpc, gone] : byVpc) {
    unplugOvnBalancerNicsLocked(gone);
    if (auto ok = changeNicsLocked(vpc, gone, false); !ok && result)
      result = fail(ok.error().wrap(fmt::format("releasing NICs in vpc \"{}\"", vpc)));
    updatePeersLocked(vpc);
    syncNicsLocked(vpc, gone, false);
  }
  return result;
}

std::optional<net::NicAttachment> NetworkController::nic(const std::string& instance) const {
  std::lock_guard lock(mutex_);
  auto it = nics_.find(instance);
  if (it == nics_.end()) return std::nullopt;
  return it->second;
}

std::optional<NetworkController::PlannedNic> NetworkController::planNicLocked(
    const std::string& instance) const {
  auto it = nics_.find(instance);
  if (it == nics_.end()) return std::nullopt;
  const net::Subnet* subnet = topology_.findSubnet(it->second.subnet);
  if (!subnet) return std::nullopt;
  net::NicPlan nic = net::planNic(*subnet, it->second);
  const net::NicProfile profile = vmNicProfile();
  nic.mtu = profile.mtu;
  nic.guestOffloads = profile.guestOffloads;
  return PlannedNic{.nic = std::move(nic), .netns = net::vpcNetnsName(options_.netnsPrefix, subnet->vpc)};
}

net::NicProfile NetworkController::vmNicProfile() const {
  // br-int's userspace datapath neither finishes checksums nor splits TSO.
  if (ovn_) return {.mtu = kOvnNicMtu, .guestOffloads = false};
  return {};
}

Result<net::NicPlan> NetworkController::nicPlan(const std::string& instance) const {
  std::lock_guard lock(mutex_);
  auto planned = planNicLocked(instance);
  if (!planned) return fail(notFound("instance \"{}\" has no NIC in an existing subnet", instance));
  return std::move(planned->nic);
}

Status NetworkController::attachContainer(const std::string& instance, pid_t pid) {
  std::lock_guard lock(mutex_);
  auto planned = planNicLocked(instance);
  if (!planned || !options_.kernel) return {};  // no NIC: loopback only
  if (ovn_) {
    if (auto ok = ovn_->attachContainer(planned->nic, pid); !ok)
      return fail(ok.error().wrap(fmt::format("plug into subnet \"{}\"", planned->nic.nic.subnet)));
    return {};
  }
  if (auto ok = net::attachContainerNic(planned->netns, planned->nic, pid); !ok)
    return fail(ok.error().wrap(fmt::format("plug into subnet \"{}\"", planned->nic.nic.subnet)));
  return {};
}

Status NetworkController::attachVm(const std::string& instance, std::optional<pid_t> qemuPid) {
  std::lock_guard lock(mutex_);
  auto planned = planNicLocked(instance);
  if (!planned || !options_.kernel) return {};
  if (ovn_) {
    if (auto ok = ovn_->attachVm(planned->nic, qemuPid); !ok)
      return fail(ok.error().wrap(fmt::format("plug into subnet \"{}\"", planned->nic.nic.subnet)));
    return {};
  }
  if (auto ok = net::attachVmTap(planned->netns, planned->nic); !ok)
    return fail(ok.error().wrap(fmt::format("plug into subnet \"{}\"", planned->nic.nic.subnet)));
  return {};
}

void NetworkController::unplugOvnBalancerNicsLocked(const std::vector<net::NicAttachment>& gone) {
  if (!ovn_) return;
  for (const net::NicAttachment& nic : gone) {
    const net::Subnet* subnet = topology_.findSubnet(nic.subnet);
    if (!subnet || !loadBalancerOfNic(nic.instance)) continue;
    if (auto ok = ovn_->detach(net::planNic(*subnet, nic)); !ok)
      log::warn("\"{}\": unplugging from br-int: {}", nic.instance, ok.error().message());
  }
}

Status NetworkController::attachNamespaceNic(const std::string& instance, const std::string& netnsPath,
                                             const std::string& ifname, bool defaultRoute,
                                             std::optional<uint32_t> sourceTable) {
  std::lock_guard lock(mutex_);
  auto planned = planNicLocked(instance);
  if (!planned) return fail(notFound("\"{}\" has no NIC in an existing subnet", instance));
  if (!options_.kernel) return {};
  if (ovn_) return ovn_->attachNamespace(planned->nic, netnsPath, ifname, defaultRoute, sourceTable);
  return net::attachNamespaceNic(planned->netns, planned->nic, netnsPath, ifname, defaultRoute, sourceTable);
}

void NetworkController::detach(const std::string& instance) {
  std::lock_guard lock(mutex_);
  auto planned = planNicLocked(instance);
  if (!planned || !options_.kernel) return;
  if (ovn_) {
    if (auto ok = ovn_->detach(planned->nic); !ok)
      log::warn("instance \"{}\": unplugging from br-int: {}", instance, ok.error().message());
    return;
  }
  if (auto ok = net::detachNic(planned->netns, planned->nic); !ok)
    log::warn("instance \"{}\": unplugging: {}", instance, ok.error().message());
}

bool NetworkController::portPresent(const std::string& instance) const {
  std::lock_guard lock(mutex_);
  auto planned = planNicLocked(instance);
  if (!planned || !options_.kernel || ovn_) return true;
  auto netlink = net::Netlink::open(planned->netns);
  if (!netlink) return false;
  auto link = netlink->link(planned->nic.link);
  return link && link->has_value();
}

json NetworkController::spoofDropsJson(const std::string& instance) const {
  std::lock_guard lock(mutex_);
  auto planned = planNicLocked(instance);
  if (!planned || !options_.kernel || ovn_) return nullptr;
  auto drops = net::spoofDropsOf(planned->netns, planned->nic.link);
  if (!drops) return nullptr;
  return {{"mac", drops->mac}, {"ip", drops->ip}, {"arp", drops->arp}, {"other", drops->other}};
}

namespace {

std::vector<std::string> combinationOf(const net::NicAttachment& nic) {
  std::vector<std::string> groups = nic.securityGroups;
  std::sort(groups.begin(), groups.end());
  return groups;
}

}  // namespace

void NetworkController::addNicLocked(const net::NicAttachment& nic) {
  nics_.insert_or_assign(nic.instance, nic);
  byCombination_[nic.subnet][combinationOf(nic)].insert(nic.instance);
  if (net::SubnetIpam* ipam = ipamLocked(nic.subnet)) {
    // Already taken when reserveNic leased it; a stored address outside the range stays out of the pool.
    if (auto address = net::Ipv4Address::parse(nic.address); address) (void)ipam->restore(*address);
  }
}

net::SubnetIpam* NetworkController::ipamLocked(const std::string& subnet) {
  const net::Subnet* found = topology_.findSubnet(subnet);
  if (!found) return nullptr;
  auto it = ipams_.find(subnet);
  if (it != ipams_.end() && it->second->subnet() == found->cidr) return it->second.get();
  // First use (or a subnet of that name with another range): from the NICs it has.
  auto ipam = std::make_unique<net::SubnetIpam>(found->cidr);
  if (auto combinations = byCombination_.find(subnet); combinations != byCombination_.end()) {
    for (const auto& [groups, instances] : combinations->second) {
      for (const std::string& instance : instances) {
        if (auto address = net::Ipv4Address::parse(nics_.at(instance).address); address)
          (void)ipam->restore(*address);
      }
    }
  }
  return ipams_.insert_or_assign(subnet, std::move(ipam)).first->second.get();
}

void NetworkController::eraseNicLocked(const std::string& instance) {
  auto it = nics_.find(instance);
  if (it == nics_.end()) return;
  auto subnet = byCombination_.find(it->second.subnet);
  if (subnet != byCombination_.end()) {
    auto combination = subnet->second.find(combinationOf(it->second));
    if (combination != subnet->second.end()) {
      combination->second.erase(instance);
      if (combination->second.empty()) subnet->second.erase(combination);
    }
    if (subnet->second.empty()) byCombination_.erase(subnet);
  }
  if (auto ipam = ipams_.find(it->second.subnet); ipam != ipams_.end()) {
    if (auto address = net::Ipv4Address::parse(it->second.address); address)
      (void)ipam->second->release(*address);
    if (ipam->second->freeCount() == ipam->second->usableCount()) ipams_.erase(ipam);
  }
  nics_.erase(it);
}

std::vector<net::NicAttachment> NetworkController::standsLocked(const std::string& vpc) const {
  std::vector<net::NicAttachment> stands;
  for (const net::Subnet* subnet : topology_.subnets(vpc)) {
    auto combinations = byCombination_.find(subnet->name);
    if (combinations == byCombination_.end()) continue;
    for (const auto& [groups, instances] : combinations->second) {
      if (!instances.empty()) stands.push_back(nics_.at(*instances.begin()));
    }
  }
  return stands;
}

void NetworkController::nicsChangedLocked(const std::string& subnet) {
  if (const net::Subnet* found = topology_.findSubnet(subnet)) nicRevisions_[found->vpc] = ++nicChanges_;
}

std::map<std::string, std::vector<std::string>, std::less<>> NetworkController::instancesByVpc() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, std::vector<std::string>, std::less<>> byVpc;
  for (const auto& [name, nic] : nics_) {
    if (const net::Subnet* subnet = topology_.findSubnet(nic.subnet)) byVpc[subnet->vpc].push_back(name);
  }
  return byVpc;
}

uint64_t NetworkController::nicRevision(std::string_view vpc) const {
  std::lock_guard lock(mutex_);
  auto it = nicRevisions_.find(vpc);
  return it == nicRevisions_.end() ? 0 : it->second;
}

std::map<std::string, net::NicPlan, std::less<>> NetworkController::nicPlans() const {
  std::lock_guard lock(mutex_);
  std::map<std::string, net::NicPlan, std::less<>> plans;
  for (const auto& [name, nic] : nics_) {
    if (auto planned = planNicLocked(name)) plans.emplace(name, std::move(planned->nic));
  }
  return plans;
}

NetworkController::ResolverInputs NetworkController::resolverInputs(const net::Topology& topology,
                                                                    const std::string& vpc) {
  ResolverInputs inputs;
  inputs.exists = topology.findVpc(vpc) != nullptr;
  for (const net::Subnet* subnet : topology.subnets(vpc))
    inputs.subnets.emplace_back(subnet->name, subnet->cidr, topology.reachability(*subnet));
  if (const net::SecurityGroup* group = topology.defaultSecurityGroup(vpc)) inputs.defaultGroup = group->name;
  return inputs;
}

void NetworkController::syncNicsLocked(const std::string& vpc, const std::vector<net::NicAttachment>& nics,
                                       bool joining) {
  if (ovn_) return;  // no VPC resolver, flow logs or metadata service on OVN yet
  if (resolverStale_.contains(vpc) || !topology_.findVpc(vpc)) return syncResolverLocked(vpc);
  std::vector<const net::Subnet*> subnets;  // each NIC's, in order
  for (const net::NicAttachment& nic : nics) {
    const net::Subnet* subnet = topology_.findSubnet(nic.subnet);
    if (!subnet || subnet->vpc != vpc) return syncResolverLocked(vpc);
    subnets.push_back(subnet);
  }
  const bool patchFlows = flowLogs_ && options_.kernel;
  if (patchFlows) {
    std::vector<std::pair<uint32_t, std::optional<net::FlowEndpoint>>> changed;
    for (size_t i = 0; i < nics.size(); ++i) {
      const net::NicAttachment& nic = nics[i];
      auto endpoint = flowEndpointLocked(*subnets[i], nic);
      if (!endpoint) continue;  // the whole directory leaves it out as well
      if (joining) {
        changed.emplace_back(endpoint->first, std::move(endpoint->second));
      } else {
        changed.emplace_back(endpoint->first, std::nullopt);
      }
    }
    if (!flowLogs_->updateNics(vpc, net::vpcNetnsName(options_.netnsPrefix, vpc), changed))
      return syncResolverLocked(vpc);
  }
  if (!resolvers_) return;
  // Only these NICs' names: the files of the others stay as they are (net::planResolver names every NIC
  // of the VPC by its instance and address).
  std::vector<net::ResolverHost> joined;
  std::vector<std::string> left;
  for (const net::NicAttachment& nic : nics) {
    if (joining) {
      joined.push_back(net::ResolverHost{.address = nic.address, .name = nic.instance});
    } else {
      left.push_back(nic.instance);
    }
  }
  if (auto ok = resolvers_->updateHosts(vpc, net::vpcDomain(vpc), joined, left); !ok) {
    log::debug("vpc \"{}\": {}; syncing it whole", vpc, ok.error().message());
    syncResolverLocked(vpc, /*flowDirectoryDone=*/patchFlows);
  }
}

void NetworkController::syncResolverLocked(const std::string& vpc, bool flowDirectoryDone) {
  if (ovn_) return;
  // Owed again below if any part fails: the next topology change retries it.
  resolverStale_.erase(vpc);
  if (metadata_ && topology_.findVpc(vpc)) {
    if (auto ok = metadata_->listen(vpc, net::vpcNetnsName(options_.netnsPrefix, vpc)); !ok) {
      log::error("vpc \"{}\": {}", vpc, ok.error().message());
      resolverStale_.insert(vpc);
    }
  }
  if (flowLogs_ && options_.kernel && topology_.findVpc(vpc) && !flowDirectoryDone) {
    if (auto ok =
            flowLogs_->watch(vpc, net::vpcNetnsName(options_.netnsPrefix, vpc), flowDirectoryLocked(vpc));
        !ok) {
      log::error("{}", ok.error().message());
      resolverStale_.insert(vpc);
    }
  }
  if (!resolvers_ || !topology_.findVpc(vpc)) return;
  std::vector<net::NicAttachment> nics;
  for (const net::Subnet* subnet : topology_.subnets(vpc)) {
    auto combinations = byCombination_.find(subnet->name);
    if (combinations == byCombination_.end()) continue;
    for (const auto& [groups, instances] : combinations->second) {
      for (const std::string& instance : instances) nics.push_back(nics_.at(instance));
    }
  }
  if (auto ok = resolvers_->apply(net::planResolver(topology_, vpc, options_.netnsPrefix, nics)); !ok) {
    log::error("vpc \"{}\": its resolver: {}", vpc, ok.error().message());
    resolverStale_.insert(vpc);
  }
}

net::FlowDirectory NetworkController::flowDirectoryLocked(const std::string& vpc) const {
  net::FlowDirectory directory;
  auto ipv4 = [](const std::string& text) { return net::Ipv4Address::parse(text); };
  if (auto metadata = ipv4(kMetadataAddress)) directory.router.push_back(metadata->value());
  for (const net::Subnet* subnet : topology_.subnets(vpc)) {
    directory.router.push_back(subnet->cidr.first().value() + 1);  // the router on the bridge
    directory.router.push_back(net::resolverAddress(subnet->cidr).value());
    auto combinations = byCombination_.find(subnet->name);
    if (combinations == byCombination_.end()) continue;
    for (const auto& [groups, instances] : combinations->second) {
      for (const std::string& instance : instances) {
        if (auto endpoint = flowEndpointLocked(*subnet, nics_.at(instance)))
          directory.nics.insert_or_assign(endpoint->first, std::move(endpoint->second));
      }
    }
  }
  return directory;
}

std::optional<std::pair<uint32_t, net::FlowEndpoint>> NetworkController::flowEndpointLocked(
    const net::Subnet& subnet, const net::NicAttachment& nic) const {
  auto address = net::Ipv4Address::parse(nic.address);
  if (!address) return std::nullopt;
  // Its groups as listed (sorted: byCombination_'s key), else the VPC's default.
  const std::vector<std::string> groups = combinationOf(nic);
  std::string names;
  if (groups.empty()) {
    if (const net::SecurityGroup* group = topology_.defaultSecurityGroup(subnet.vpc)) names = group->name;
  }
  for (const std::string& group : groups) names += (names.empty() ? "" : ".") + group;
  // The port's name alone (what planNic names it), not the NIC's whole plan.
  return std::pair{address->value(),
                   net::FlowEndpoint{.instance = nic.instance,
                                     .interfaceId = nic.vm ? net::instanceTapName(nic.linkKey)
                                                           : net::instanceVethName(nic.linkKey),
                                     .subnet = subnet.name,
                                     .groups = std::move(names)}};
}

void NetworkController::setFlowLogs(FlowLogs* flowLogs) {
  {
    std::lock_guard lock(mutex_);
    flowLogs_ = flowLogs;
  }
  // Outside mutex_: FlowLogs calls the explainer holding its own lock, and the explainer takes mutex_.
  if (flowLogs) {
    flowLogs->setExplainer([this](const std::string& vpc, std::vector<net::FlowRecord*>& accepted) {
      explainAcceptedFlows(vpc, accepted);
    });
  }
}

void NetworkController::explainAcceptedFlows(const std::string& vpc,
                                             std::vector<net::FlowRecord*>& accepted) const {
  std::lock_guard lock(mutex_);
  if (!topology_.findVpc(vpc)) return;
  // The NICs of the VPC and of its peers (whose ranges do not overlap it) by address: once per batch.
  std::map<uint32_t, const net::NicAttachment*> byAddress;
  for (const auto& [instance, nic] : nics_) {
    const net::Subnet* subnet = topology_.findSubnet(nic.subnet);
    if (subnet == nullptr || (subnet->vpc != vpc && topology_.peeringBetween(subnet->vpc, vpc) == nullptr))
      continue;
    if (auto address = net::Ipv4Address::parse(nic.address)) byAddress.emplace(address->value(), &nic);
  }
  const auto nicAt = [&](uint32_t address) -> const net::NicAttachment* {
    auto it = byAddress.find(address);
    return it == byAddress.end() ? nullptr : it->second;
  };
  for (net::FlowRecord* record : accepted) {
    if (record->connection) record->allowedBy = net::flowAllowedBy(topology_, nicAt, *record->connection);
  }
}

std::optional<std::string> NetworkController::vpcOfSubnet(const std::string& subnet) const {
  std::lock_guard lock(mutex_);
  const net::Subnet* found = topology_.findSubnet(subnet);
  if (found == nullptr) return std::nullopt;
  return found->vpc;
}

void NetworkController::setMetadataLookup(MetadataLookup lookup) {
  std::lock_guard lock(mutex_);
  metadataLookup_ = std::move(lookup);
}

std::optional<MetadataIdentity> NetworkController::metadataIdentity(const std::string& vpc,
                                                                    const std::string& address) const {
  std::lock_guard lock(mutex_);
  for (const auto& [name, nic] : nics_) {
    if (nic.address != address) continue;
    const net::Subnet* subnet = topology_.findSubnet(nic.subnet);
    if (!subnet || subnet->vpc != vpc) continue;
    MetadataIdentity identity{.instanceId = name,
                              .localIpv4 = nic.address,
                              .mac = net::instanceMac(name, nic.vm),
                              .hostname = name,
                              .publicIpv4 = nic.publicAddress.value_or(""),
                              .securityGroups = nic.securityGroups,
                              .availabilityZone = subnet->availabilityZone,
                              .userData = {}};
    if (identity.securityGroups.empty()) {
      if (const net::SecurityGroup* group = topology_.defaultSecurityGroup(vpc))
        identity.securityGroups.push_back(group->name);
    }
    return identity;
  }
  return std::nullopt;
}

void NetworkController::stopMetadata() {
  std::unique_ptr<InstanceMetadataServer> stopping;
  {
    std::lock_guard lock(mutex_);
    stopping = std::move(metadata_);
    metadataLookup_ = nullptr;
  }
  stopping.reset();  // joins its thread, whose sessions may be waiting for mutex_
}

json NetworkController::resolverJson(const std::string& vpc) const {
  std::lock_guard lock(mutex_);
  if (!resolvers_) return nullptr;
  return resolvers_->statusJson(vpc);
}

// ---- Startup and views ----

std::vector<std::string> NetworkController::reconcile() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> changes;
  if (!options_.kernel) return changes;
  if (ovn_) return reconcileOvnLocked();
  if (!metadata_ && metadataLookup_) {
    auto opened = InstanceMetadataServer::open(metadataLookup_);
    if (opened) {
      metadata_ = std::move(*opened);
    } else {
      log::error("instance metadata: {}", opened.error().message());
    }
  }
  if (!resolvers_ && !options_.resolverDir.empty()) {
    auto opened = VpcResolvers::open(
        {.dir = options_.resolverDir, .dnsmasq = options_.dnsmasq, .upstream = options_.upstreamResolver});
    if (opened) {
      resolvers_ = std::move(*opened);
      std::set<std::string> vpcNames;
      for (const net::Vpc* vpc : topology_.vpcs()) vpcNames.insert(vpc->name);
      for (std::string& line : resolvers_->reconcile(vpcNames)) changes.push_back(std::move(line));
    } else {
      log::error("vpc resolvers: {}; instances get no names", opened.error().message());
    }
  }
  // Older VPCs first: they keep the transit networks they had (chooseTransit probes past taken ones).
  std::vector<const net::Vpc*> vpcs = topology_.vpcs();
  std::stable_sort(vpcs.begin(), vpcs.end(),
                   [](const net::Vpc* a, const net::Vpc* b) { return a->createdAt < b->createdAt; });
  for (const net::Vpc* vpc : vpcs) {
    if (auto ok = convergeLocked(topology_, vpc->name, &changes); !ok) {
      log::error("reconcile vpc \"{}\": {}", vpc->name, ok.error().message());
      changes.push_back(fmt::format("vpc {}: FAILED: {}", vpc->name, ok.error().message()));
    }
    syncResolverLocked(vpc->name);
  }
  // A peering's pair needs both namespaces: a VPC converged before its peer's namespace existed gets its
  // routes through the peering now.
  for (const net::Vpc* vpc : vpcs) {
    if (topology_.peerings(vpc->name).empty()) continue;
    if (auto ok = convergeLocked(topology_, vpc->name, &changes); !ok)
      log::error("reconcile vpc \"{}\": {}", vpc->name, ok.error().message());
  }
  for (const std::string& netns : net::listVpcNetns(options_.netnsPrefix)) {
    auto vpc = net::vpcFromNetnsName(options_.netnsPrefix, netns);
    if (!vpc || topology_.findVpc(*vpc)) continue;
    if (auto ok = net::destroyVpc(netns); !ok) {
      log::error("reconcile: removing namespace {}: {}", netns, ok.error().message());
      continue;
    }
    log::info("reconcile: removed namespace {} (vpc \"{}\" is not in the state)", netns, *vpc);
    changes.push_back(fmt::format("removed netns {} (vpc {} is not in the state)", netns, *vpc));
  }
  return changes;
}

Result<json> NetworkController::topologyJson(const std::string& vpcName, const json& instances) const {
  std::lock_guard lock(mutex_);
  const net::Vpc* vpc = topology_.findVpc(vpcName);
  if (!vpc) return fail(notFound("vpc \"{}\" not found", vpcName));
  // The VPC's links and routes without its NICs (O(model)), and each NIC planned from its subnet alone.
  auto plan = skeletonLocked(topology_, vpcName);
  if (!plan) return fail(plan.error());
  for (const auto& [name, nic] : nics_) {
    const net::Subnet* subnet = topology_.findSubnet(nic.subnet);
    if (subnet && subnet->vpc == vpcName) plan->nics.push_back(net::planNic(*subnet, nic));
  }

  std::map<std::string, json> instanceByName;
  if (instances.is_object() && instances.contains("instances")) {
    for (const json& item : instances["instances"]) instanceByName[item.value("name", "")] = item;
  }
  std::map<std::string, std::vector<std::string>> groupMembers;
  Result<std::map<std::string, net::SpoofDrops>> drops = fail(unavailable("the kernel is not managed"));
  if (options_.kernel && net::netnsExists(plan->netns)) drops = net::spoofDrops(plan->netns);
  json subnets = json::array();
  for (const net::BridgePlan& bridge : plan->bridges) {
    const net::Subnet* subnet = topology_.findSubnet(bridge.subnet);
    json members = json::array();
    for (const net::NicPlan& nic : plan->nics) {
      if (nic.nic.subnet != bridge.subnet) continue;
      auto found = instanceByName.find(nic.nic.instance);
      json member = memberJsonLocked(
          nic,
          found != instanceByName.end() ? found->second.value("state", "unknown") : std::string("unknown"),
          portDropsJson(drops, nic.link));
      for (const json& group : member["security_groups"])
        groupMembers[group.get<std::string>()].push_back(nic.nic.instance);
      members.push_back(std::move(member));
    }
    subnets.push_back(
        {{"name", bridge.subnet},
         {"cidr", bridge.cidr.str()},
         {"availability_zone", subnet ? subnet->availabilityZone : ""},
         {"bridge", bridge.bridge},
         {"router", bridge.routerAddress.substr(0, bridge.routerAddress.find('/'))},
         {"route_table", subnet ? subnet->routeTable : ""},
         {"network_acl", subnet ? subnet->networkAcl : ""},
         {"reachability", subnet ? std::string(net::subnetReachabilityName(topology_.reachability(*subnet)))
                                 : std::string("isolated")},
         {"instances", std::move(members)}});
  }

  json tables = json::array();
  for (const net::RouteTable* table : topology_.routeTables(vpcName)) {
    json routes = json::array();
    for (const net::Route& route : table->routes)
      routes.push_back({{"destination", route.destination.str()}, {"target", routeTargetText(route.target)}});
    json tableSubnets = json::array();
    for (const net::Subnet* subnet : topology_.subnets(vpcName)) {
      if (subnet->routeTable == table->name) tableSubnets.push_back(subnet->name);
    }
    uint32_t tableId = 0;
    for (const net::RouteTablePlan& planned : plan->routeTables) {
      if (planned.name == table->name) tableId = planned.tableId;
    }
    tables.push_back({{"name", table->name},
                      {"main", table->isMain},
                      {"table_id", tableId},
                      {"subnets", std::move(tableSubnets)},
                      {"routes", std::move(routes)}});
  }

  json gateway = nullptr;
  if (plan->gateway) {
    const net::GatewayPlan& g = *plan->gateway;
    gateway = {{"name", g.name},
               {"link", g.vpcLink},
               {"uplink_link", g.uplinkLink},
               {"uplink", g.uplinkNetns.empty() ? std::string("host") : "netns " + g.uplinkNetns},
               {"transit", g.transit.str()},
               {"outside_address", g.vpcAddress.substr(0, g.vpcAddress.find('/'))},
               {"uplink_address", g.uplinkAddress.substr(0, g.uplinkAddress.find('/'))}};
  }
  json natGateways = json::array();
  for (const net::NatGateway* nat : topology_.natGateways(vpcName))
    natGateways.push_back({{"name", nat->name}, {"subnet", nat->subnet}});
  json peerings = json::array();
  for (const net::PeeringPlan& peering : plan->peerings) {
    peerings.push_back({{"name", peering.name},
                        {"peer_vpc", peering.peerVpc},
                        {"peer_cidr", peering.peerCidr.str()},
                        {"link", peering.link},
                        {"address", peering.address.substr(0, peering.address.find('/'))},
                        {"peer_address", peering.peerAddress.substr(0, peering.peerAddress.find('/'))}});
  }
  json groups = json::array();
  for (const net::SecurityGroup* group : topology_.securityGroups(vpcName)) {
    groups.push_back(
        {{"name", group->name}, {"default", group->isDefault}, {"members", groupMembers[group->name]}});
  }
  json acls = json::array();
  for (const net::NetworkAcl* acl : topology_.networkAcls(vpcName)) {
    json aclSubnets = json::array();
    for (const net::Subnet* subnet : topology_.subnets(vpcName)) {
      if (subnet->networkAcl == acl->name) aclSubnets.push_back(subnet->name);
    }
    acls.push_back({{"name", acl->name}, {"default", acl->isDefault}, {"subnets", std::move(aclSubnets)}});
  }

  // What the kernel has now, so drift is visible next to the model.
  json kernel = {{"netns_present", false},
                 {"error", nullptr},
                 {"links", json::array()},
                 {"rules", json::array()},
                 {"routes", json::array()}};
  if (!options_.kernel) {
    kernel["error"] = "corrald runs without touching the kernel";
  } else if (net::netnsExists(plan->netns)) {
    kernel["netns_present"] = true;
    auto netlink = net::Netlink::open(plan->netns);
    if (!netlink) {
      kernel["error"] = netlink.error().message();
    } else {
      if (auto links = netlink->links(); links) {
        for (const net::LinkInfo& link : *links) kernel["links"].push_back(linkJson(link));
      } else {
        kernel["error"] = links.error().message();
      }
      if (auto rules = netlink->rules(); rules) {
        for (const net::RuleEntry& rule : *rules) {
          kernel["rules"].push_back({{"priority", rule.priority},
                                     {"from", optionalText(rule.from)},
                                     {"to", optionalText(rule.to)},
                                     {"table", rule.table}});
        }
      }
      std::vector<uint32_t> tableIds{254};
      for (const net::RouteTablePlan& planned : plan->routeTables) tableIds.push_back(planned.tableId);
      for (uint32_t id : tableIds) {
        auto routes = netlink->routes(id);
        if (!routes) continue;
        for (const net::RouteEntry& route : *routes) {
          kernel["routes"].push_back({{"table", route.table},
                                      {"destination", route.destination},
                                      {"gateway", optionalText(route.gateway)},
                                      {"device", optionalText(route.device)},
                                      {"blackhole", route.blackhole}});
        }
      }
    }
  }

  return json{{"vpc", {{"name", vpc->name}, {"cidr", vpc->cidr.str()}, {"netns", plan->netns}}},
              {"subnets", std::move(subnets)},
              {"route_tables", std::move(tables)},
              {"internet_gateway", std::move(gateway)},
              {"nat_gateways", std::move(natGateways)},
              {"peerings", std::move(peerings)},
              {"security_groups", std::move(groups)},
              {"network_acls", std::move(acls)},
              {"kernel", std::move(kernel)},
              {"resolver", resolvers_ ? resolvers_->statusJson(vpc->name) : json(nullptr)}};
}

std::string loadBalancerNicName(std::string_view balancer, std::string_view subnet) {
  return fmt::format("{}.{}.lb", balancer, subnet);
}

std::optional<std::string> loadBalancerOfNic(std::string_view nic) {
  const size_t dot = nic.find('.');
  if (dot == std::string_view::npos || dot == 0 || !nic.ends_with(".lb")) return std::nullopt;
  return std::string(nic.substr(0, dot));
}

json NetworkController::memberJsonLocked(const net::NicPlan& nic, const std::string& state,
                                         json spoofDrops) const {
  std::vector<std::string> groups = nic.nic.securityGroups;
  if (groups.empty()) {
    const net::Subnet* subnet = topology_.findSubnet(nic.nic.subnet);
    const net::SecurityGroup* group = subnet ? topology_.defaultSecurityGroup(subnet->vpc) : nullptr;
    if (group) groups.push_back(group->name);
  }
  json publish = json::array();
  for (const net::PortForward& forward : nic.nic.publish) publish.push_back(net::portForwardText(forward));
  const auto balancer = loadBalancerOfNic(nic.nic.instance);
  const std::string kind =
      balancer ? std::string("load-balancer")
               : std::string(schema::instanceKindName(nic.nic.vm ? schema::InstanceKind::vm
                                                                 : schema::InstanceKind::container));
  json member = {{"name", nic.nic.instance},
                 {"kind", kind},
                 {"state", state},
                 {"ip", nic.nic.address},
                 {"public_ip", optionalText(nic.nic.publicAddress)},
                 {"mac", nic.mac},
                 {"link", nic.link},
                 {"spoof_drops", std::move(spoofDrops)},
                 {"security_groups", groups},
                 {"publish", std::move(publish)}};
  // Whose NIC it is: the load balancer's name for one of theirs (its HAProxy's state is `state`).
  if (balancer) member["load_balancer"] = *balancer;
  return member;
}

Result<json> NetworkController::memberTopologyJson(const std::string& instance,
                                                   const std::string& state) const {
  std::lock_guard lock(mutex_);
  auto planned = planNicLocked(instance);
  if (!planned) return fail(notFound("instance \"{}\" has no NIC in an existing subnet", instance));
  json drops = nullptr;
  json link = nullptr;
  if (options_.kernel && net::netnsExists(planned->netns)) {
    // Its port alone: one link, not the VPC's link dump. Its guard's counters are not read (libnftables
    // fills its cache with every element of a set to get one): a port that just joined has counted
    // nothing, and the caller keeps the last reading of one already drawn.
    drops = {{"mac", 0}, {"ip", 0}, {"arp", 0}, {"other", 0}};
    if (auto netlink = net::Netlink::open(planned->netns); netlink) {
      if (auto found = netlink->link(planned->nic.link); found && found->has_value())
        link = linkJson(**found);
    }
  }
  json member = memberJsonLocked(planned->nic, state, std::move(drops));
  return json{{"subnet", planned->nic.nic.subnet}, {"member", std::move(member)}, {"link", std::move(link)}};
}

std::optional<Result<net::OvsChassis>> NetworkController::ovnChassis() const {
  if (!ovn_) return std::nullopt;
  return ovn_->chassis();
}

json NetworkController::infoJson() const {
  return {{"netns_prefix", options_.netnsPrefix},
          {"uplink", options_.uplink.netns.empty() ? std::string("host") : "netns " + options_.uplink.netns},
          {"transit_pool", options_.uplink.transitPool.str()},
          {"public_pool", options_.uplink.publicPool.str()},
          {"kernel", options_.kernel}};
}

std::string_view captureKindName(CaptureKind kind) {
  switch (kind) {
    case CaptureKind::subnet:
      return "subnet";
    case CaptureKind::instance:
      return "instance";
    case CaptureKind::loadBalancer:
      return "load-balancer";
  }
  return "unknown";
}

Result<std::vector<net::ReachPath>> NetworkController::reach(const net::ReachQuery& query) const {
  std::lock_guard lock(mutex_);
  return net::analyzeReach(topology_, nicsLocked(), query);
}

bool NetworkController::tracesOvn() const {
  return ovn_ && !ovn_->options().southbound.empty();
}

Result<std::vector<net::OvnTraceOutcome>> NetworkController::ovnTrace(
    const std::vector<net::ReachPath>& paths, const net::ReachQuery& query) const {
  if (!ovn_) return fail(conflict("this corrald's VPCs are not on OVN: nothing to trace"));
  std::vector<std::vector<net::OvnTraceLeg>> legs;
  {
    std::lock_guard lock(mutex_);
    auto end = [&](const std::string& instance, const char* field) -> Result<net::OvnTraceEnd> {
      const net::Subnet* subnet = nicSubnetLocked(instance);
      if (subnet == nullptr)
        return fail(invalidField(field, "ovn-trace follows packets between instances' NICs: \"{}\" has none",
                                 instance.empty() ? std::string("outside every VPC") : instance));
      const net::NicAttachment& nic = nics_.at(instance);
      return net::OvnTraceEnd{.instance = instance,
                              .vm = nic.vm,
                              .vpc = subnet->vpc,
                              .subnet = subnet->name,
                              .address = nic.address};
    };
    for (const net::ReachPath& path : paths) {
      auto from = end(path.sourceInstance, "source");
      if (!from) return fail(from.error());
      auto to = end(path.destinationInstance, "destination");
      if (!to) return fail(to.error());
      legs.push_back(net::ovnTraceLegs(*from, *to, query.protocol, query.port));
    }
  }
  // ovn-trace reads the southbound database on its own: no lock while it runs.
  std::vector<net::OvnTraceOutcome> outcomes;
  for (const std::vector<net::OvnTraceLeg>& pathLegs : legs) {
    net::OvnTraceOutcome outcome{.delivered = true, .detail = ""};
    std::vector<std::string> delivered;
    for (const net::OvnTraceLeg& leg : pathLegs) {
      auto output = ovn_->trace(leg.args);
      if (!output) return fail(output.error());
      net::OvnTraceOutcome read = net::readOvnTrace(*output, leg.expectedPort);
      if (!read.delivered) {
        outcome = {false, fmt::format("{}: {}", leg.name, read.detail)};
        break;
      }
      delivered.push_back(fmt::format("{}: {}", leg.name, read.detail));
    }
    if (outcome.delivered) outcome.detail = fmt::format("{}", fmt::join(delivered, "; "));
    outcomes.push_back(std::move(outcome));
  }
  return outcomes;
}

Result<CaptureTarget> NetworkController::captureTarget(const std::string& name,
                                                       std::optional<InstanceState> instanceState) const {
  std::lock_guard lock(mutex_);
  if (!options_.kernel)
    return fail(unavailable("this daemon does not manage the network in the kernel: nothing to trace"));
  if (const net::Subnet* subnet = topology_.findSubnet(name)) {
    return CaptureTarget{CaptureKind::subnet, name, subnet->vpc,
                         net::vpcNetnsName(options_.netnsPrefix, subnet->vpc),
                         net::subnetBridgeName(subnet->vpc, subnet->name)};
  }
  if (loadBalancerOfNic(name)) {
    // A load balancer's NIC: its port is there while the load balancer is (HAProxy running or not).
    const net::Subnet* subnet = nicSubnetLocked(name);
    auto planned = planNicLocked(name);
    if (!subnet || !planned)
      return fail(Error(ErrorKind::NotFound, fmt::format("no load balancer NIC \"{}\"", name), "target"));
    return CaptureTarget{CaptureKind::loadBalancer, name, subnet->vpc, planned->netns, planned->nic.link};
  }
  if (!instanceState) {
    return fail(
        Error(ErrorKind::NotFound, fmt::format("no subnet or instance named \"{}\"", name), "target"));
  }
  const net::Subnet* subnet = nicSubnetLocked(name);
  if (!subnet) {
    return fail(conflict(
        "instance \"{}\" has no NIC in a subnet (it was run without --subnet): it has no port to trace",
        name));
  }
  if (*instanceState != InstanceState::running) {
    return fail(conflict("instance \"{}\" is {}: its port exists only while it runs (corral start {})", name,
                         instanceStateName(*instanceState), name));
  }
  auto planned = planNicLocked(name);
  if (!planned) return fail(internalError("instance \"{}\": its NIC has no subnet", name));
  return CaptureTarget{CaptureKind::instance, name, subnet->vpc, planned->netns, planned->nic.link};
}

}  // namespace corral::daemon
