// The Service's load balancer and target group requests (issue 19): the model (lb/model.h) changed on a
// copy, persisted in one transaction (Store::apply), then made current; then each load balancer the change
// touched is brought to it: its NICs (one per subnet, kept by the network like an instance's) and its
// HAProxy (daemon/load_balancer_processes.h). The answers' shape: docs/api.md, "Load balancers".
#include <fmt/format.h>

#include <ctime>
#include <set>
#include <string>
#include <utility>

#include "core/log.h"
#include "core/rollback.h"
#include "daemon/service.h"
#include "lb/codec.h"
#include "lb/haproxy.h"
#include "lb/haproxy_config.h"

namespace corral::daemon {

using nlohmann::json;

namespace {

int64_t nowSeconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

}  // namespace

template <class Operation>
Status Service::commitBalancers(Operation&& operation) {
  lb::Balancers next = balancers_;
  Result<lb::Changes> changes = std::forward<Operation>(operation)(next);
  if (!changes) return fail(std::move(changes.error()));
  if (auto saved = store_.apply(next, *changes); !saved) return fail(saved.error().wrap("saving state"));
  // What a deleted load balancer held, before the model lets it go.
  std::vector<std::string> goneNics;
  for (const auto& name : changes->deletedLoadBalancers) {
    if (const auto* gone = balancers_.findLoadBalancer(name)) {
      for (const auto& nic : gone->nics) goneNics.push_back(balancerNicName(name, nic.subnet));
    }
  }
  balancers_ = std::move(next);
  viewRevision_.fetch_add(1);
  // The runtime follows the model; its failures are logged and shown, the change stands.
  for (const auto& name : changes->deletedLoadBalancers) {
    if (balancerProcesses_) {
      if (auto removed = balancerProcesses_->remove(name); !removed)
        log::warn("load balancer \"{}\": removing it: {}", name, removed.error().message());
    }
  }
  if (network_ && !goneNics.empty()) {
    if (auto released = network_->releaseNics(goneNics); !released)
      log::warn("load balancers: releasing NICs: {}", released.error().message());
  }
  std::set<std::string> touched(changes->upsertedLoadBalancers.begin(), changes->upsertedLoadBalancers.end());
  for (const auto& group : changes->upsertedTargetGroups) {
    for (auto& name : balancers_.loadBalancersUsing(group)) touched.insert(std::move(name));
  }
  for (const auto& name : touched) syncBalancerLocked(name);
  return {};
}

std::string Service::balancerNicName(std::string_view balancer, std::string_view subnet) {
  return fmt::format("{}.{}.lb", balancer, subnet);
}

Result<std::vector<lb::LoadBalancerNic>> Service::reserveBalancerNicsLocked(
    const lb::LoadBalancer& balancer, std::vector<std::string>& reserved) {
  std::vector<lb::LoadBalancerNic> nics;
  if (!network_) return nics;
  const bool hasGateway = !topology_.internetGateways(balancer.vpc).empty();
  for (size_t i = 0; i < balancer.subnets.size(); ++i) {
    const net::Subnet* subnet = topology_.findSubnet(balancer.subnets[i]);
    if (!subnet) return fail(notFound("subnets[{}]: subnet \"{}\" not found", i, balancer.subnets[i]));
    schema::InstanceSpec spec;
    spec.name = balancerNicName(balancer.name, subnet->name);
    spec.subnet = subnet->name;
    spec.securityGroups = {balancer.securityGroup};
    spec.publicIp = !balancer.internal && hasGateway &&
                    topology_.reachability(*subnet) != net::SubnetReachability::Isolated;
    auto nic = network_->reserveNic(spec, network_->options().netnsPrefix + spec.name);
    if (!nic) return fail(nic.error().wrap(fmt::format("subnets[{}]", i)));
    if (!*nic)
      return fail(
          internalError("load balancer \"{}\": no NIC in subnet \"{}\"", balancer.name, subnet->name));
    reserved.push_back(spec.name);
    nics.push_back({.subnet = subnet->name,
                    .address = (*nic)->address,
                    .publicAddress = (*nic)->publicAddress.value_or("")});
  }
  return nics;
}

void Service::syncBalancerLocked(const std::string& name) {
  if (!balancerProcesses_ || !network_) return;
  const lb::LoadBalancer* balancer = balancers_.findLoadBalancer(name);
  if (!balancer) return;
  LoadBalancerRunPlan plan{.name = name, .nics = {}, .config = {}};
  lb::HaproxyInputs inputs{.balancer = balancer,
                           .groups = {},
                           .listenAddresses = {},
                           .targetAddresses = targetAddressesLocked(),
                           .runDir = balancerProcesses_->runDirOf(name)};
  for (const auto& nic : balancer->nics) {
    auto nicPlan = network_->nicPlan(balancerNicName(name, nic.subnet));
    if (!nicPlan) {
      log::warn("load balancer \"{}\": {}", name, nicPlan.error().message());
      return;
    }
    plan.nics.push_back(
        {.nic = *nicPlan, .vpcNetns = net::vpcNetnsName(network_->options().netnsPrefix, balancer->vpc)});
    inputs.listenAddresses.push_back(nic.address);
  }
  for (const auto& listener : balancer->listeners) {
    auto take = [&](const std::string& group) {
      if (group.empty()) return;
      if (const auto* found = balancers_.findTargetGroup(group)) inputs.groups[group] = found;
    };
    take(listener.defaultAction.targetGroup);
    for (const auto& rule : listener.rules) take(rule.action.targetGroup);
  }
  plan.config = lb::renderHaproxyConfig(inputs);
  if (auto applied = balancerProcesses_->apply(plan); !applied) log::warn("{}", applied.error().message());
}

void Service::restoreBalancerNics() {
  std::vector<std::pair<std::string, std::vector<lb::LoadBalancerNic>>> reservedNow;
  for (const auto* balancer : balancers_.loadBalancers()) {
    if (balancer->nics.empty()) {
      // Stored before corrald ran load balancers: its NICs are given now.
      std::vector<std::string> reserved;
      auto nics = reserveBalancerNicsLocked(*balancer, reserved);
      if (!nics) {
        log::warn("load balancer \"{}\": {}", balancer->name, nics.error().message());
        (void)network_->releaseNics(reserved);
        continue;
      }
      reservedNow.emplace_back(balancer->name, std::move(*nics));
      continue;
    }
    for (const auto& nic : balancer->nics) {
      schema::InstanceSpec spec;
      spec.name = balancerNicName(balancer->name, nic.subnet);
      spec.subnet = nic.subnet;
      spec.ip = nic.address;
      spec.securityGroups = {balancer->securityGroup};
      spec.publicAddress = nic.publicAddress;
      if (auto restored = network_->restoreNic(spec, network_->options().netnsPrefix + spec.name); !restored)
        log::warn("load balancer \"{}\": {}", balancer->name, restored.error().message());
    }
  }
  for (auto& [name, nics] : reservedNow) {
    lb::Balancers next = balancers_;
    auto changes = next.setNics(name, std::move(nics));
    if (changes && store_.apply(next, *changes)) balancers_ = std::move(next);
  }
}

void Service::startBalancers() {
  const NetworkOptions& options = network_->options();
  if (!options.kernel || options.loadBalancerDir.empty()) return;
  auto opened = LoadBalancerProcesses::open(
      {.dir = options.loadBalancerDir, .haproxy = options.haproxy, .netnsPrefix = options.netnsPrefix});
  if (!opened) {
    log::error("load balancers will not run: {}", opened.error().message());
    return;
  }
  balancerProcesses_ = std::move(*opened);
  std::set<std::string> names;
  for (const auto* balancer : balancers_.loadBalancers()) names.insert(balancer->name);
  balancerProcesses_->reconcile(names);
  std::lock_guard lock(mutex_);
  for (const auto& name : names) syncBalancerLocked(name);
}

void Service::forgetInstances(const std::vector<std::string>& names) {
  std::lock_guard lock(mutex_);
  auto done = commitBalancers([&](lb::Balancers& b) -> Result<lb::Changes> {
    lb::Changes all;
    for (const auto& name : names) {
      lb::Changes one = b.forgetInstance(name);
      all.upsertedTargetGroups.insert(all.upsertedTargetGroups.end(), one.upsertedTargetGroups.begin(),
                                      one.upsertedTargetGroups.end());
    }
    return all;
  });
  if (!done)
    log::warn("deregistering removed instances from their target groups: {}", done.error().message());
}

std::optional<std::string> Service::unhealthyReason(const std::string& targetGroup,
                                                    const std::string& instance) {
  // The model is copied under the lock; HAProxy's stats socket is read outside it (a slow HAProxy must not
  // hold up the API).
  lb::TargetGroup group;
  std::vector<std::string> balancers;
  std::map<std::string, std::string> addresses;
  {
    std::lock_guard lock(mutex_);
    const lb::TargetGroup* found = balancers_.findTargetGroup(targetGroup);
    if (!found || !balancerProcesses_ || !found->targets.contains(instance)) return std::nullopt;
    group = *found;
    balancers = balancers_.loadBalancersUsing(group.name);
    addresses = targetAddressesLocked();
  }
  for (const auto& name : balancers) {
    auto stats = balancerProcesses_->stats(name);
    if (!stats) continue;
    for (const auto& entry : lb::targetHealth(group, *stats, addresses)) {
      // Only DOWN counts: "UP 1/3" is a check streak under way, "unknown" not checked yet.
      if (entry.target == instance && entry.state == "unhealthy" && entry.reason.starts_with("DOWN"))
        return fmt::format("{} says {}", name, entry.reason);
    }
    return std::nullopt;
  }
  return std::nullopt;
}

Status Service::registerTarget(const std::string& targetGroup, const std::string& instance) {
  std::lock_guard lock(mutex_);
  const lb::TargetGroup* group = balancers_.findTargetGroup(targetGroup);
  if (!group) return fail(notFound("target group \"{}\" not found", targetGroup));
  if (group->targets.contains(instance)) return {};
  const auto placement = placementLocked();
  return commitBalancers(
      [&](lb::Balancers& b) { return b.registerTargets(targetGroup, {instance}, placement); });
}

void Service::deregisterEverywhere(const std::vector<std::string>& instances) {
  forgetInstances(instances);
}

void Service::addRuntimeJsonLocked(const lb::LoadBalancer& balancer, json& out) const {
  if (!balancerProcesses_) {
    // Kept as a model only (no kernel, or no load balancer directory): nothing runs it.
    out["state"] = "configured";
    out["process"] = nullptr;
    return;
  }
  json process = balancerProcesses_->statusJson(balancer.name);
  out["state"] = process.is_object() ? process["state"] : json("starting");
  out["process"] = std::move(process);
  auto stats = balancerProcesses_->stats(balancer.name);
  const std::vector<lb::ProxyStat> none;
  const auto& rows = stats ? *stats : none;
  const auto addresses = targetAddressesLocked();
  json health = json::object();
  std::set<std::string> groups;
  for (size_t i = 0; i < balancer.listeners.size(); ++i) {
    const lb::Listener& listener = balancer.listeners[i];
    const auto counts = lb::firewallCounts(listener, rows);
    json& firewall = out["listeners"][i]["firewall"];
    for (auto& rule : firewall) {
      auto found = counts.find(rule.value("id", int64_t{0}));
      rule["denied"] = stats && found != counts.end() ? json(found->second) : json(nullptr);
    }
    groups.insert(listener.defaultAction.targetGroup);
    for (const auto& rule : listener.rules) groups.insert(rule.action.targetGroup);
  }
  for (const auto& name : groups) {
    const lb::TargetGroup* group = name.empty() ? nullptr : balancers_.findTargetGroup(name);
    if (!group) continue;
    json targets = json::array();
    for (const auto& entry : lb::targetHealth(*group, rows, addresses)) {
      targets.push_back({{"target", entry.target},
                         {"state", entry.state},
                         {"reason", entry.reason},
                         {"requests", entry.requests}});
    }
    health[name] = std::move(targets);
  }
  out["target_health"] = std::move(health);
}

lb::InstancePlacement Service::placementLocked() const {
  lb::InstancePlacement placement;
  if (!network_) return placement;
  for (const auto& [instance, plan] : network_->nicPlans()) {
    if (instance.find('.') != std::string::npos) continue;  // a load balancer's NIC (balancerNicName)
    if (const auto* subnet = topology_.findSubnet(plan.nic.subnet)) placement[instance].insert(subnet->vpc);
  }
  return placement;
}

std::map<std::string, std::string> Service::targetAddressesLocked() const {
  std::map<std::string, std::string> addresses;
  if (!network_) return addresses;
  for (const auto& [instance, plan] : network_->nicPlans()) addresses.emplace(instance, plan.nic.address);
  return addresses;
}

json Service::loadBalancerJsonLocked(const lb::LoadBalancer& balancer) const {
  json out = lb::toJson(balancer);
  json zones = json::array();
  for (const auto& name : balancer.subnets) {
    const auto* subnet = topology_.findSubnet(name);
    zones.push_back(
        {{"subnet", name}, {"availability_zone", subnet ? json(subnet->availabilityZone) : json(nullptr)}});
  }
  out["availability_zones"] = std::move(zones);
  out.erase("next_firewall_rule_id");
  for (auto& listener : out["listeners"]) listener.erase("next_firewall_rule_id");
  addRuntimeJsonLocked(balancer, out);
  return out;
}

json Service::targetGroupJsonLocked(const lb::TargetGroup& group) const {
  json out = lb::toJson(group);
  // Health comes from the stats socket of the first running load balancer that forwards to the group.
  std::vector<lb::ProxyStat> stats;
  if (balancerProcesses_) {
    for (const auto& name : balancers_.loadBalancersUsing(group.name)) {
      if (auto read = balancerProcesses_->stats(name); read) {
        stats = std::move(*read);
        break;
      }
    }
  }
  json health = json::array();
  for (const auto& entry : lb::targetHealth(group, stats, targetAddressesLocked())) {
    health.push_back({{"target", entry.target},
                      {"state", entry.state},
                      {"reason", entry.reason},
                      {"requests", entry.requests}});
  }
  out["target_health"] = std::move(health);
  out["load_balancers"] = balancers_.loadBalancersUsing(group.name);
  return out;
}

std::optional<Error> Service::usedByLoadBalancerLocked(net::ObjectKind kind, std::string_view name) const {
  for (const auto* balancer : balancers_.loadBalancers()) {
    bool uses = false;
    switch (kind) {
      case net::ObjectKind::Vpc:
        uses = balancer->vpc == name;
        break;
      case net::ObjectKind::Subnet:
        for (const auto& subnet : balancer->subnets) uses = uses || subnet == name;
        break;
      case net::ObjectKind::SecurityGroup:
        uses = balancer->securityGroup == name;
        break;
      default:
        break;
    }
    if (uses) {
      return conflict("{} \"{}\" is in use by load balancer \"{}\"", net::objectKindName(kind), name,
                      balancer->name);
    }
  }
  if (kind == net::ObjectKind::Vpc) {
    for (const auto* group : balancers_.targetGroups()) {
      if (group->vpc == name)
        return conflict("vpc \"{}\" still holds target group \"{}\"", name, group->name);
    }
  }
  return std::nullopt;
}

// ---- Load balancers ----

Response Service::serve(const api::CreateLoadBalancer& request) {
  // Its NICs are reserved with the model change and given back if it fails (nothing changed then).
  std::vector<std::string> reserved;
  Rollback release([&] {
    if (network_ && !reserved.empty()) (void)network_->releaseNics(reserved);
  });
  auto done = commitBalancers([&](lb::Balancers& b) -> Result<lb::Changes> {
    auto changes = b.createLoadBalancer(request.spec, topology_, nowSeconds());
    if (!changes) return changes;
    auto nics = reserveBalancerNicsLocked(*b.findLoadBalancer(request.spec.name), reserved);
    if (!nics) return fail(std::move(nics.error()));
    if (!nics->empty()) {
      if (auto set = b.setNics(request.spec.name, std::move(*nics)); !set) return set;
    }
    return changes;
  });
  if (!done) return errorResponse(done.error());
  release.dismiss();
  return {201, loadBalancerJsonLocked(*balancers_.findLoadBalancer(request.spec.name))};
}

Response Service::serve(const api::ListLoadBalancers& request) {
  json items = json::array();
  for (const auto* balancer : balancers_.loadBalancers()) {
    if (request.vpc.empty() || balancer->vpc == request.vpc)
      items.push_back(loadBalancerJsonLocked(*balancer));
  }
  return {200, {{"load_balancers", std::move(items)}}};
}

Response Service::serve(const api::GetLoadBalancer& request) {
  auto found = balancers_.loadBalancer(request.name);
  if (!found) return errorResponse(found.error());
  return {200, loadBalancerJsonLocked(**found)};
}

Response Service::serve(const api::DeleteLoadBalancer& request) {
  auto found = balancers_.loadBalancer(request.name);
  if (!found) return errorResponse(found.error());
  json deleted = loadBalancerJsonLocked(**found);
  auto done = commitBalancers([&](lb::Balancers& b) { return b.deleteLoadBalancer(request.name); });
  if (!done) return errorResponse(done.error());
  return {200, {{"deleted", std::move(deleted)}}};
}

// Listeners and their rules are parts of the load balancer: each change answers the whole load balancer
// (201 when something was added).
Response Service::serve(const api::AddListener& request) {
  auto done =
      commitBalancers([&](lb::Balancers& b) { return b.addListener(request.balancer, request.spec); });
  if (!done) return errorResponse(done.error());
  return {201, loadBalancerJsonLocked(*balancers_.findLoadBalancer(request.balancer))};
}

Response Service::serve(const api::DeleteListener& request) {
  auto done =
      commitBalancers([&](lb::Balancers& b) { return b.deleteListener(request.balancer, request.port); });
  if (!done) return errorResponse(done.error());
  return {200, loadBalancerJsonLocked(*balancers_.findLoadBalancer(request.balancer))};
}

Response Service::serve(const api::AddListenerRule& request) {
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.addRule(request.balancer, request.port, request.spec); });
  if (!done) return errorResponse(done.error());
  return {201, loadBalancerJsonLocked(*balancers_.findLoadBalancer(request.balancer))};
}

Response Service::serve(const api::DeleteListenerRule& request) {
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.deleteRule(request.balancer, request.port, request.priority); });
  if (!done) return errorResponse(done.error());
  return {200, loadBalancerJsonLocked(*balancers_.findLoadBalancer(request.balancer))};
}

Response Service::serve(const api::AddFirewallRule& request) {
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.addFirewallRule(request.balancer, request.port, request.spec); });
  if (!done) return errorResponse(done.error());
  return {201, loadBalancerJsonLocked(*balancers_.findLoadBalancer(request.balancer))};
}

Response Service::serve(const api::DeleteFirewallRule& request) {
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.deleteFirewallRule(request.balancer, request.port, request.id); });
  if (!done) return errorResponse(done.error());
  return {200, loadBalancerJsonLocked(*balancers_.findLoadBalancer(request.balancer))};
}

// ---- Target groups ----

Response Service::serve(const api::CreateTargetGroup& request) {
  const auto placement = placementLocked();
  auto done = commitBalancers([&](lb::Balancers& b) {
    return b.createTargetGroup(request.spec, topology_, placement, nowSeconds());
  });
  if (!done) return errorResponse(done.error());
  return {201, targetGroupJsonLocked(*balancers_.findTargetGroup(request.spec.name))};
}

Response Service::serve(const api::ListTargetGroups& request) {
  json items = json::array();
  for (const auto* group : balancers_.targetGroups()) {
    if (request.vpc.empty() || group->vpc == request.vpc) items.push_back(targetGroupJsonLocked(*group));
  }
  return {200, {{"target_groups", std::move(items)}}};
}

Response Service::serve(const api::GetTargetGroup& request) {
  auto found = balancers_.targetGroup(request.name);
  if (!found) return errorResponse(found.error());
  return {200, targetGroupJsonLocked(**found)};
}

Response Service::serve(const api::DeleteTargetGroup& request) {
  auto found = balancers_.targetGroup(request.name);
  if (!found) return errorResponse(found.error());
  json deleted = targetGroupJsonLocked(**found);
  auto done = commitBalancers([&](lb::Balancers& b) { return b.deleteTargetGroup(request.name); });
  if (!done) return errorResponse(done.error());
  return {200, {{"deleted", std::move(deleted)}}};
}

Response Service::serve(const api::RegisterTargets& request) {
  const auto placement = placementLocked();
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.registerTargets(request.group, request.targets, placement); });
  if (!done) return errorResponse(done.error());
  return {200, targetGroupJsonLocked(*balancers_.findTargetGroup(request.group))};
}

Response Service::serve(const api::DeregisterTargets& request) {
  auto done =
      commitBalancers([&](lb::Balancers& b) { return b.deregisterTargets(request.group, request.targets); });
  if (!done) return errorResponse(done.error());
  return {200, targetGroupJsonLocked(*balancers_.findTargetGroup(request.group))};
}

}  // namespace corral::daemon
