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
  return loadBalancerNicName(balancer, subnet);
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
  lb::HaproxyInputs inputs{
      .balancer = balancer, .groups = {}, .listenAddresses = {}, .targetAddresses = targetAddressesLocked()};
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
  // Through the NetworkController, which knows the backend (a veth port of the subnet's bridge, or a
  // br-int port on OVN).
  NetworkController* network = network_.get();
  auto opened = LoadBalancerProcesses::open(
      {.dir = options.loadBalancerDir,
       .haproxy = options.haproxy,
       .netnsPrefix = options.netnsPrefix,
       .attach = [network](const LoadBalancerNicPlan& nic, const std::string& targetNetnsPath,
                           const std::string& ifname, bool defaultRoute,
                           std::optional<uint32_t> sourceTable) {
         return network->attachNamespaceNic(nic.nic.nic.instance, targetNetnsPath, ifname, defaultRoute,
                                            sourceTable);
       }});
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

std::optional<TargetGroupSnapshot> Service::snapshot(const std::string& targetGroup) {
  // As unhealthyReason: the model copied under the lock, the stats read outside it.
  lb::TargetGroup group;
  std::map<std::string, std::string> addresses;
  TargetGroupSnapshot seen;
  {
    std::lock_guard lock(mutex_);
    const lb::TargetGroup* found = balancers_.findTargetGroup(targetGroup);
    if (!found) return std::nullopt;
    group = *found;
    seen.loadBalancers = balancers_.loadBalancersUsing(group.name);
    addresses = targetAddressesLocked();
  }
  std::vector<lb::ProxyStat> judged;
  for (const auto& name : seen.loadBalancers) {
    if (!balancerProcesses_) break;
    // The generation first: a reload between the two reads shows as a counter that went down.
    json process = balancerProcesses_->statusJson(name);
    auto stats = balancerProcesses_->stats(name);
    if (!stats) continue;
    if (auto total = lb::targetGroupRequests(group, *stats); total && process.is_object())
      seen.requests[name] = {
          .generation = process.value("restarts", int64_t{0}) + process.value("reloads", int64_t{0}),
          .total = *total};
    if (seen.judgedBy.empty()) {
      seen.judgedBy = name;
      judged = std::move(*stats);
    }
  }
  for (const auto& entry : lb::targetHealth(group, judged, addresses))
    seen.targets.push_back({.name = entry.target, .state = entry.state, .reason = entry.reason});
  return seen;
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

namespace {

json targetHealthJson(const lb::TargetGroup& group, const std::vector<lb::ProxyStat>& rows,
                      const std::map<std::string, std::string>& addresses) {
  json targets = json::array();
  for (const auto& entry : lb::targetHealth(group, rows, addresses)) {
    targets.push_back({{"target", entry.target},
                       {"state", entry.state},
                       {"reason", entry.reason},
                       {"requests", entry.requests}});
  }
  return targets;
}

// A load balancer's JSON completed by its HAProxy's stats (null: none answered): each firewall rule's
// "denied", each forwarded-to group's "target_health".
void addBalancerStats(json& drawn, const std::vector<lb::Listener>& listeners,
                      const std::map<std::string, lb::TargetGroup>& groups,
                      const std::map<std::string, std::string>& addresses,
                      const std::vector<lb::ProxyStat>* stats) {
  const std::vector<lb::ProxyStat> none;
  const auto& rows = stats ? *stats : none;
  for (size_t i = 0; i < listeners.size(); ++i) {
    const auto counts = lb::firewallCounts(listeners[i], rows);
    for (auto& rule : drawn["listeners"][i]["firewall"]) {
      auto found = counts.find(rule.value("id", int64_t{0}));
      rule["denied"] = stats && found != counts.end() ? json(found->second) : json(nullptr);
    }
  }
  json health = json::object();
  for (const auto& [name, group] : groups) health[name] = targetHealthJson(group, rows, addresses);
  drawn["target_health"] = std::move(health);
}

// {"deleted": what the answer held}, its stats reads moved along.
BalancerAnswer wrapDeleted(BalancerAnswer answer) {
  answer.response.body = {{"deleted", std::move(answer.response.body)}};
  for (auto& read : answer.reads) read.at = json::json_pointer("/deleted") / read.at;
  return answer;
}

}  // namespace

void Service::addRuntimeJsonLocked(const lb::LoadBalancer& balancer, json& out, BalancerAnswer& answer,
                                   const json::json_pointer& at) const {
  if (!balancerProcesses_) {
    // Kept as a model only (no kernel, or no load balancer directory): nothing runs it.
    out["state"] = "configured";
    out["process"] = nullptr;
    return;
  }
  json process = balancerProcesses_->statusJson(balancer.name);
  out["state"] = process.is_object() ? process["state"] : json("starting");
  out["process"] = std::move(process);
  // What the stats are read into, copied now: the model may change before they answer.
  std::map<std::string, lb::TargetGroup> groups;
  for (const auto& listener : balancer.listeners) {
    auto take = [&](const std::string& name) {
      if (const lb::TargetGroup* group = name.empty() ? nullptr : balancers_.findTargetGroup(name))
        groups.emplace(name, *group);
    };
    take(listener.defaultAction.targetGroup);
    for (const auto& rule : listener.rules) take(rule.action.targetGroup);
  }
  answer.reads.push_back({.at = at,
                          .balancers = {balancer.name},
                          .complete = [listeners = balancer.listeners, groups = std::move(groups),
                                       addresses = targetAddressesLocked()](
                                          json& drawn, const std::vector<lb::ProxyStat>* stats) {
                            addBalancerStats(drawn, listeners, groups, addresses, stats);
                          }});
}

BalancerAnswer Service::loadBalancerAnswerLocked(int status, const lb::LoadBalancer& balancer) const {
  BalancerAnswer answer{.response = {status, json::object()}, .reads = {}};
  loadBalancerJsonLocked(balancer, answer, json::json_pointer());
  return answer;
}

BalancerAnswer Service::targetGroupAnswerLocked(int status, const lb::TargetGroup& group) const {
  BalancerAnswer answer{.response = {status, json::object()}, .reads = {}};
  targetGroupJsonLocked(group, answer, json::json_pointer());
  return answer;
}

void Service::completeStats(BalancerAnswer& answer) const {
  for (auto& read : answer.reads) {
    std::optional<std::vector<lb::ProxyStat>> stats;
    for (const auto& name : read.balancers) {
      if (!balancerProcesses_) break;
      if (auto got = balancerProcesses_->stats(name); got) {
        stats = std::move(*got);
        break;
      }
    }
    read.complete(answer.response.body[read.at], stats ? &*stats : nullptr);
  }
}

void Service::addBalancerStatesLocked(json& states) const {
  if (!states.is_object()) states = json::object();
  if (!states.contains("instances") || !states["instances"].is_array()) states["instances"] = json::array();
  for (const auto* balancer : balancers_.loadBalancers()) {
    std::string state = "configured";
    if (balancerProcesses_) {
      json process = balancerProcesses_->statusJson(balancer->name);
      state = process.is_object() ? process.value("state", "starting") : "starting";
    }
    for (const auto& nic : balancer->nics)
      states["instances"].push_back(
          {{"name", balancerNicName(balancer->name, nic.subnet)}, {"state", state}});
  }
}

lb::InstancePlacement Service::placementLocked() const {
  lb::InstancePlacement placement;
  if (!network_) return placement;
  for (const auto& [instance, plan] : network_->nicPlans()) {
    if (loadBalancerOfNic(instance)) continue;  // not an instance
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

void Service::loadBalancerJsonLocked(const lb::LoadBalancer& balancer, BalancerAnswer& answer,
                                     const json::json_pointer& at) const {
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
  addRuntimeJsonLocked(balancer, out, answer, at);
  answer.response.body[at] = std::move(out);
}

void Service::targetGroupJsonLocked(const lb::TargetGroup& group, BalancerAnswer& answer,
                                    const json::json_pointer& at) const {
  json out = lb::toJson(group);
  out["load_balancers"] = balancers_.loadBalancersUsing(group.name);
  // Health comes from the stats socket of the first running load balancer that forwards to the group.
  answer.reads.push_back({.at = at,
                          .balancers = balancers_.loadBalancersUsing(group.name),
                          .complete = [group, addresses = targetAddressesLocked()](
                                          json& drawn, const std::vector<lb::ProxyStat>* stats) {
                            drawn["target_health"] = targetHealthJson(
                                group, stats ? *stats : std::vector<lb::ProxyStat>{}, addresses);
                          }});
  answer.response.body[at] = std::move(out);
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

BalancerAnswer Service::serveBalancer(const api::CreateLoadBalancer& request) {
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
  if (!done) return {errorResponse(done.error()), {}};
  release.dismiss();
  return loadBalancerAnswerLocked(201, *balancers_.findLoadBalancer(request.spec.name));
}

BalancerAnswer Service::serveBalancer(const api::ListLoadBalancers& request) {
  BalancerAnswer answer{.response = {200, {{"load_balancers", json::array()}}}, .reads = {}};
  size_t listed = 0;
  for (const auto* balancer : balancers_.loadBalancers()) {
    if (request.vpc.empty() || balancer->vpc == request.vpc)
      loadBalancerJsonLocked(*balancer, answer,
                             json::json_pointer(fmt::format("/load_balancers/{}", listed++)));
  }
  return answer;
}

BalancerAnswer Service::serveBalancer(const api::GetLoadBalancer& request) {
  auto found = balancers_.loadBalancer(request.name);
  if (!found) return {errorResponse(found.error()), {}};
  return loadBalancerAnswerLocked(200, **found);
}

BalancerAnswer Service::serveBalancer(const api::DeleteLoadBalancer& request) {
  auto found = balancers_.loadBalancer(request.name);
  if (!found) return {errorResponse(found.error()), {}};
  // Drawn before it goes; its stats are read after (its HAProxy is gone by then: no counters).
  BalancerAnswer answer = loadBalancerAnswerLocked(200, **found);
  auto done = commitBalancers([&](lb::Balancers& b) { return b.deleteLoadBalancer(request.name); });
  if (!done) return {errorResponse(done.error()), {}};
  return wrapDeleted(std::move(answer));
}

// Listeners and their rules are parts of the load balancer: each change answers the whole load balancer
// (201 when something was added).
BalancerAnswer Service::serveBalancer(const api::AddListener& request) {
  auto done =
      commitBalancers([&](lb::Balancers& b) { return b.addListener(request.balancer, request.spec); });
  if (!done) return {errorResponse(done.error()), {}};
  return loadBalancerAnswerLocked(201, *balancers_.findLoadBalancer(request.balancer));
}

BalancerAnswer Service::serveBalancer(const api::DeleteListener& request) {
  auto done =
      commitBalancers([&](lb::Balancers& b) { return b.deleteListener(request.balancer, request.port); });
  if (!done) return {errorResponse(done.error()), {}};
  return loadBalancerAnswerLocked(200, *balancers_.findLoadBalancer(request.balancer));
}

BalancerAnswer Service::serveBalancer(const api::AddListenerRule& request) {
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.addRule(request.balancer, request.port, request.spec); });
  if (!done) return {errorResponse(done.error()), {}};
  return loadBalancerAnswerLocked(201, *balancers_.findLoadBalancer(request.balancer));
}

BalancerAnswer Service::serveBalancer(const api::DeleteListenerRule& request) {
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.deleteRule(request.balancer, request.port, request.priority); });
  if (!done) return {errorResponse(done.error()), {}};
  return loadBalancerAnswerLocked(200, *balancers_.findLoadBalancer(request.balancer));
}

BalancerAnswer Service::serveBalancer(const api::AddFirewallRule& request) {
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.addFirewallRule(request.balancer, request.port, request.spec); });
  if (!done) return {errorResponse(done.error()), {}};
  return loadBalancerAnswerLocked(201, *balancers_.findLoadBalancer(request.balancer));
}

BalancerAnswer Service::serveBalancer(const api::DeleteFirewallRule& request) {
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.deleteFirewallRule(request.balancer, request.port, request.id); });
  if (!done) return {errorResponse(done.error()), {}};
  return loadBalancerAnswerLocked(200, *balancers_.findLoadBalancer(request.balancer));
}

// ---- Target groups ----

BalancerAnswer Service::serveBalancer(const api::CreateTargetGroup& request) {
  const auto placement = placementLocked();
  auto done = commitBalancers([&](lb::Balancers& b) {
    return b.createTargetGroup(request.spec, topology_, placement, nowSeconds());
  });
  if (!done) return {errorResponse(done.error()), {}};
  return targetGroupAnswerLocked(201, *balancers_.findTargetGroup(request.spec.name));
}

BalancerAnswer Service::serveBalancer(const api::ListTargetGroups& request) {
  BalancerAnswer answer{.response = {200, {{"target_groups", json::array()}}}, .reads = {}};
  size_t listed = 0;
  for (const auto* group : balancers_.targetGroups()) {
    if (request.vpc.empty() || group->vpc == request.vpc)
      targetGroupJsonLocked(*group, answer, json::json_pointer(fmt::format("/target_groups/{}", listed++)));
  }
  return answer;
}

BalancerAnswer Service::serveBalancer(const api::GetTargetGroup& request) {
  auto found = balancers_.targetGroup(request.name);
  if (!found) return {errorResponse(found.error()), {}};
  return targetGroupAnswerLocked(200, **found);
}

BalancerAnswer Service::serveBalancer(const api::DeleteTargetGroup& request) {
  auto found = balancers_.targetGroup(request.name);
  if (!found) return {errorResponse(found.error()), {}};
  BalancerAnswer answer = targetGroupAnswerLocked(200, **found);
  auto done = commitBalancers([&](lb::Balancers& b) { return b.deleteTargetGroup(request.name); });
  if (!done) return {errorResponse(done.error()), {}};
  return wrapDeleted(std::move(answer));
}

BalancerAnswer Service::serveBalancer(const api::RegisterTargets& request) {
  const auto placement = placementLocked();
  auto done = commitBalancers(
      [&](lb::Balancers& b) { return b.registerTargets(request.group, request.targets, placement); });
  if (!done) return {errorResponse(done.error()), {}};
  return targetGroupAnswerLocked(200, *balancers_.findTargetGroup(request.group));
}

BalancerAnswer Service::serveBalancer(const api::DeregisterTargets& request) {
  auto done =
      commitBalancers([&](lb::Balancers& b) { return b.deregisterTargets(request.group, request.targets); });
  if (!done) return {errorResponse(done.error()), {}};
  return targetGroupAnswerLocked(200, *balancers_.findTargetGroup(request.group));
}

}  // namespace corral::daemon
