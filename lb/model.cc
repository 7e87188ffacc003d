// The load balancer model's validation and mutations (lb/model.h).
#include "lb/model.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <utility>

namespace corral::lb {
namespace {

Result<uint16_t> port(std::optional<int64_t> value, std::string_view field) {
  if (!value) return fail(invalidField(std::string(field), "is required"));
  if (*value < 1 || *value > 65535)
    return fail(invalidField(std::string(field), "{} is not a port (1-65535)", *value));
  return static_cast<uint16_t>(*value);
}

Result<int> bounded(std::optional<int64_t> value, int fallback, int low, int high, std::string_view field) {
  if (!value) return fallback;
  if (*value < low || *value > high)
    return fail(invalidField(std::string(field), "{} is out of range ({}-{})", *value, low, high));
  return static_cast<int>(*value);
}

std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Printable ASCII without quotes or backslashes: such text goes into HAProxy's configuration verbatim
// (inside double quotes), so it can neither break out of its argument nor need escaping.
Status plainText(std::string_view text, size_t maxLength, std::string_view field, bool allowSpace = true) {
  if (text.size() > maxLength)
    return fail(
        invalidField(std::string(field), "is {} characters long (at most {})", text.size(), maxLength));
  for (unsigned char c : text) {
    if (c < 0x20 || c > 0x7e || c == '"' || c == '\\' || (!allowSpace && c == ' '))
      return fail(invalidField(std::string(field), "\"{}\" holds '{}', which is not allowed here", text,
                               c < 0x20 || c > 0x7e ? '?' : static_cast<char>(c)));
  }
  return {};
}

Status nameOfInstance(std::string_view instance, std::string_view vpc, const InstancePlacement& placement,
                      std::string_view field) {
  auto found = placement.find(instance);
  if (found == placement.end()) return fail(notFound("instance \"{}\" not found", instance).wrap(field));
  if (!found->second.contains(std::string(vpc))) {
    return fail(invalidField(std::string(field), "instance \"{}\" has no NIC in VPC \"{}\"", instance, vpc));
  }
  return {};
}

Changes balancerWritten(std::string name) {
  Changes changes;
  changes.upsertedLoadBalancers.push_back(std::move(name));
  return changes;
}
Changes balancerDeleted(std::string name) {
  Changes changes;
  changes.deletedLoadBalancers.push_back(std::move(name));
  return changes;
}
Changes groupWritten(std::string name) {
  Changes changes;
  changes.upsertedTargetGroups.push_back(std::move(name));
  return changes;
}
Changes groupDeleted(std::string name) {
  Changes changes;
  changes.deletedTargetGroups.push_back(std::move(name));
  return changes;
}

}  // namespace

// ---- Patterns ----

bool Pattern::coveredBy(const Pattern& wider) const {
  if (wider.empty() || wider == *this) return true;
  if (empty() || !wider.isPrefix()) return false;
  if (wider.text.back() == '*') {  // a path prefix
    std::string_view prefix(wider.text.data(), wider.text.size() - 1);
    return text.starts_with(prefix);
  }
  std::string_view suffix(wider.text.data() + 1, wider.text.size() - 1);  // "*.example.com" -> ".example.com"
  return text.ends_with(suffix);
}

Result<Pattern> parsePathPattern(std::string_view text, std::string_view field) {
  if (text.empty()) return Pattern{};
  if (text.front() != '/')
    return fail(invalidField(std::string(field), "\"{}\" does not start with '/'", text));
  if (auto ok = plainText(text, kMaxPatternLength, field, false); !ok) return fail(std::move(ok.error()));
  auto star = text.find('*');
  if (star != std::string_view::npos && star != text.size() - 1)
    return fail(invalidField(std::string(field), "\"{}\": '*' may only end a pattern (\"/api/*\")", text));
  return Pattern{std::string(text)};
}

Result<Pattern> parseHostPattern(std::string_view text, std::string_view field) {
  if (text.empty()) return Pattern{};
  std::string host = lower(text);
  std::string_view name = host;
  if (name.starts_with("*.")) name.remove_prefix(2);
  if (name.empty() || name.size() > 253)
    return fail(invalidField(std::string(field), "\"{}\" is not a host name", text));
  for (unsigned char c : name) {
    if (!std::isalnum(c) && c != '-' && c != '.')
      return fail(invalidField(
          std::string(field), "\"{}\" is not a host name (letters, digits, '-' and '.'; \"*.\" may start it)",
          text));
  }
  return Pattern{host};
}

// ---- Lookups ----

const Listener* LoadBalancer::findListener(uint16_t listenerPort) const {
  for (const auto& listener : listeners) {
    if (listener.port == listenerPort) return &listener;
  }
  return nullptr;
}

const LoadBalancer* Balancers::findLoadBalancer(std::string_view name) const {
  auto found = balancers_.find(name);
  return found == balancers_.end() ? nullptr : &found->second;
}

const TargetGroup* Balancers::findTargetGroup(std::string_view name) const {
  auto found = groups_.find(name);
  return found == groups_.end() ? nullptr : &found->second;
}

Result<const LoadBalancer*> Balancers::loadBalancer(std::string_view name) const {
  if (auto* found = findLoadBalancer(name)) return found;
  return fail(notFound("load balancer \"{}\" not found", name));
}

Result<const TargetGroup*> Balancers::targetGroup(std::string_view name) const {
  if (auto* found = findTargetGroup(name)) return found;
  return fail(notFound("target group \"{}\" not found", name));
}

std::vector<const LoadBalancer*> Balancers::loadBalancers() const {
  std::vector<const LoadBalancer*> out;
  for (const auto& [name, balancer] : balancers_) out.push_back(&balancer);
  return out;
}

std::vector<const TargetGroup*> Balancers::targetGroups() const {
  std::vector<const TargetGroup*> out;
  for (const auto& [name, group] : groups_) out.push_back(&group);
  return out;
}

std::vector<std::string> Balancers::loadBalancersUsing(std::string_view group) const {
  std::vector<std::string> out;
  for (const auto& [name, balancer] : balancers_) {
    bool uses = false;
    for (const auto& listener : balancer.listeners) {
      uses = uses || listener.defaultAction.targetGroup == group;
      for (const auto& rule : listener.rules) uses = uses || rule.action.targetGroup == group;
    }
    if (uses) out.push_back(name);
  }
  return out;
}

bool Balancers::holdsAnything(std::string_view vpc) const {
  auto inVpc = [&](const auto& entry) { return entry.second.vpc == vpc; };
  return std::any_of(balancers_.begin(), balancers_.end(), inVpc) ||
         std::any_of(groups_.begin(), groups_.end(), inVpc);
}

void Balancers::insert(LoadBalancer balancer) {
  std::string name = balancer.name;
  balancers_.insert_or_assign(std::move(name), std::move(balancer));
}

void Balancers::insert(TargetGroup group) {
  std::string name = group.name;
  groups_.insert_or_assign(std::move(name), std::move(group));
}

Result<LoadBalancer*> Balancers::mutableBalancer(std::string_view name) {
  auto found = balancers_.find(name);
  if (found == balancers_.end()) return fail(notFound("load balancer \"{}\" not found", name));
  return &found->second;
}

Result<Listener*> Balancers::mutableListener(LoadBalancer& balancer, int64_t listenerPort) {
  for (auto& listener : balancer.listeners) {
    if (listener.port == listenerPort) return &listener;
  }
  return fail(notFound("load balancer \"{}\" has no listener on port {}", balancer.name, listenerPort));
}

// ---- Target groups ----

Result<Changes> Balancers::createTargetGroup(const TargetGroupSpec& spec, const net::Topology& topology,
                                             const InstancePlacement& placement, int64_t now) {
  if (auto ok = schema::validateName(spec.name); !ok) return fail(std::move(ok.error()));
  if (findTargetGroup(spec.name)) return fail(conflict("target group \"{}\" already exists", spec.name));
  if (spec.vpc.empty()) return fail(invalidField("vpc", "is required"));
  if (auto vpc = topology.vpc(spec.vpc); !vpc) return fail(std::move(vpc.error()).wrap("vpc"));
  TargetGroup group;
  group.name = spec.name;
  group.vpc = spec.vpc;
  group.createdAt = now;
  auto groupPort = port(spec.port.value_or(80), "port");
  if (!groupPort) return fail(std::move(groupPort.error()));
  group.port = *groupPort;
  auto protocol = schema::parseListenerProtocol(spec.protocol, "protocol");
  if (!protocol) return fail(std::move(protocol.error()));
  group.protocol = *protocol;

  const HealthCheckSpec& check = spec.healthCheck;
  HealthCheck& health = group.healthCheck;
  if (group.protocol == ListenerProtocol::Http) {
    auto path = parsePathPattern(check.path.empty() ? "/" : check.path, "health_check.path");
    if (!path) return fail(std::move(path.error()));
    if (path->isPrefix())
      return fail(invalidField("health_check.path", "\"{}\" is a pattern, not a path", check.path));
    health.path = path->text;
  } else {
    health.path.clear();  // a TCP check only connects
  }
  auto interval = bounded(check.intervalSeconds, health.intervalSeconds, kMinHealthInterval,
                          kMaxHealthInterval, "health_check.interval");
  if (!interval) return fail(std::move(interval.error()));
  auto timeout = bounded(check.timeoutSeconds, health.timeoutSeconds, kMinHealthTimeout, kMaxHealthTimeout,
                         "health_check.timeout");
  if (!timeout) return fail(std::move(timeout.error()));
  if (*timeout >= *interval) {
    return fail(invalidField("health_check.timeout", "{} s is not shorter than the interval ({} s)", *timeout,
                             *interval));
  }
  auto healthy = bounded(check.healthyThreshold, health.healthyThreshold, kMinThreshold, kMaxThreshold,
                         "health_check.healthy_threshold");
  if (!healthy) return fail(std::move(healthy.error()));
  auto unhealthy = bounded(check.unhealthyThreshold, health.unhealthyThreshold, kMinThreshold, kMaxThreshold,
                           "health_check.unhealthy_threshold");
  if (!unhealthy) return fail(std::move(unhealthy.error()));
  health.intervalSeconds = *interval;
  health.timeoutSeconds = *timeout;
  health.healthyThreshold = *healthy;
  health.unhealthyThreshold = *unhealthy;

  for (size_t i = 0; i < spec.targets.size(); ++i) {
    const std::string field = fmt::format("targets[{}]", i);
    if (auto ok = nameOfInstance(spec.targets[i], spec.vpc, placement, field); !ok)
      return fail(std::move(ok.error()));
    if (!group.targets.insert(spec.targets[i]).second)
      return fail(invalidField(field, "instance \"{}\" is listed twice", spec.targets[i]));
  }
  groups_.emplace(group.name, group);
  return groupWritten(spec.name);
}

Result<Changes> Balancers::deleteTargetGroup(std::string_view name) {
  if (auto found = targetGroup(name); !found) return fail(std::move(found.error()));
  if (auto users = loadBalancersUsing(name); !users.empty()) {
    return fail(conflict("target group \"{}\" is in use by load balancer \"{}\"", name, users.front()));
  }
  groups_.erase(groups_.find(name));
  return groupDeleted(std::string(name));
}

Result<Changes> Balancers::registerTargets(std::string_view name, const std::vector<std::string>& instances,
                                           const InstancePlacement& placement) {
  auto found = groups_.find(name);
  if (found == groups_.end()) return fail(notFound("target group \"{}\" not found", name));
  if (instances.empty()) return fail(invalidField("targets", "names no instance"));
  TargetGroup group = found->second;
  for (size_t i = 0; i < instances.size(); ++i) {
    const std::string field = fmt::format("targets[{}]", i);
    if (auto ok = nameOfInstance(instances[i], group.vpc, placement, field); !ok)
      return fail(std::move(ok.error()));
    if (!group.targets.insert(instances[i]).second)
      return fail(conflict("instance \"{}\" is already a target of \"{}\"", instances[i], name));
  }
  found->second = std::move(group);
  return groupWritten(std::string(name));
}

Result<Changes> Balancers::deregisterTargets(std::string_view name,
                                             const std::vector<std::string>& instances) {
  auto found = groups_.find(name);
  if (found == groups_.end()) return fail(notFound("target group \"{}\" not found", name));
  if (instances.empty()) return fail(invalidField("targets", "names no instance"));
  TargetGroup group = found->second;
  for (const auto& instance : instances) {
    if (group.targets.erase(instance) == 0)
      return fail(notFound("instance \"{}\" is not a target of \"{}\"", instance, name));
  }
  found->second = std::move(group);
  return groupWritten(std::string(name));
}

Changes Balancers::forgetInstance(std::string_view instance) {
  Changes changes;
  for (auto& [name, group] : groups_) {
    if (group.targets.erase(std::string(instance)) > 0) changes.upsertedTargetGroups.push_back(name);
  }
  return changes;
}

// ---- Load balancers ----

Result<Changes> Balancers::createLoadBalancer(const LoadBalancerSpec& spec, const net::Topology& topology,
                                              int64_t now) {
  if (auto ok = schema::validateName(spec.name); !ok) return fail(std::move(ok.error()));
  if (findLoadBalancer(spec.name)) return fail(conflict("load balancer \"{}\" already exists", spec.name));
  if (spec.vpc.empty()) return fail(invalidField("vpc", "is required"));
  if (auto vpc = topology.vpc(spec.vpc); !vpc) return fail(std::move(vpc.error()).wrap("vpc"));
  auto type = schema::parseLoadBalancerType(spec.type, "type");
  if (!type) return fail(std::move(type.error()));
  if (spec.subnets.empty()) return fail(invalidField("subnets", "names no subnet (at least one is needed)"));
  std::map<std::string, std::string> subnetByZone;
  for (size_t i = 0; i < spec.subnets.size(); ++i) {
    const std::string field = fmt::format("subnets[{}]", i);
    auto subnet = topology.subnet(spec.subnets[i]);
    if (!subnet) return fail(std::move(subnet.error()).wrap(field));
    if ((*subnet)->vpc != spec.vpc) {
      return fail(invalidField(field, "subnet \"{}\" is in VPC \"{}\", not \"{}\"", spec.subnets[i],
                               (*subnet)->vpc, spec.vpc));
    }
    auto [previous, fresh] = subnetByZone.emplace((*subnet)->availabilityZone, spec.subnets[i]);
    if (!fresh) {
      return fail(invalidField(
          field, "subnet \"{}\" is in availability zone \"{}\" like \"{}\" (one subnet per zone)",
          spec.subnets[i], (*subnet)->availabilityZone, previous->second));
    }
  }
  std::string group = spec.securityGroup;
  if (group.empty()) {
    const auto* defaultGroup = topology.defaultSecurityGroup(spec.vpc);
    if (defaultGroup != nullptr) group = defaultGroup->name;
  } else {
    auto found = topology.securityGroup(group);
    if (!found) return fail(std::move(found.error()).wrap("security_group"));
    if ((*found)->vpc != spec.vpc)
      return fail(invalidField("security_group", "group \"{}\" is in VPC \"{}\", not \"{}\"", group,
                               (*found)->vpc, spec.vpc));
  }
  LoadBalancer balancer;
  balancer.name = spec.name;
  balancer.vpc = spec.vpc;
  balancer.subnets = spec.subnets;
  balancer.internal = spec.internal;
  balancer.type = *type;
  balancer.securityGroup = group;
  balancer.createdAt = now;
  balancers_.emplace(spec.name, std::move(balancer));
  return balancerWritten(spec.name);
}

Result<Changes> Balancers::deleteLoadBalancer(std::string_view name) {
  if (auto found = loadBalancer(name); !found) return fail(std::move(found.error()));
  balancers_.erase(balancers_.find(name));
  return balancerDeleted(std::string(name));
}

Result<Changes> Balancers::setNics(std::string_view name, std::vector<LoadBalancerNic> nics) {
  auto balancer = mutableBalancer(name);
  if (!balancer) return fail(std::move(balancer.error()));
  if (nics.size() != (*balancer)->subnets.size())
    return fail(internalError("load balancer \"{}\": {} NICs for {} subnets", name, nics.size(),
                              (*balancer)->subnets.size()));
  for (size_t i = 0; i < nics.size(); ++i) {
    if (nics[i].subnet != (*balancer)->subnets[i])
      return fail(internalError("load balancer \"{}\": NIC {} is in subnet \"{}\", not \"{}\"", name, i,
                                nics[i].subnet, (*balancer)->subnets[i]));
  }
  (*balancer)->nics = std::move(nics);
  return balancerWritten(std::string(name));
}

Result<ListenerAction> Balancers::validateAction(const ListenerActionSpec& spec, const LoadBalancer& balancer,
                                                 ListenerProtocol protocol, std::string_view field) const {
  auto sub = [&](std::string_view name) { return fmt::format("{}.{}", field, name); };
  auto type = schema::parseListenerActionType(spec.type, sub("type"));
  if (!type) return fail(std::move(type.error()));
  ListenerAction action;
  action.type = *type;
  if (*type == ListenerActionType::Forward) {
    if (spec.targetGroup.empty()) return fail(invalidField(sub("target_group"), "is required to forward"));
    auto group = targetGroup(spec.targetGroup);
    if (!group) return fail(std::move(group.error()).wrap(sub("target_group")));
    if ((*group)->vpc != balancer.vpc) {
      return fail(invalidField(sub("target_group"),
                               "target group \"{}\" is in VPC \"{}\", not the load balancer's \"{}\"",
                               spec.targetGroup, (*group)->vpc, balancer.vpc));
    }
    if ((*group)->protocol != protocol) {
      return fail(invalidField(sub("target_group"), "target group \"{}\" speaks {}, the listener {}",
                               spec.targetGroup, schema::listenerProtocolName((*group)->protocol),
                               schema::listenerProtocolName(protocol)));
    }
    action.targetGroup = spec.targetGroup;
    return action;
  }
  if (protocol != ListenerProtocol::Http)
    return fail(invalidField(sub("type"), "a fixed response needs an http listener"));
  auto status = bounded(spec.status, 200, 200, 599, sub("status"));
  if (!status) return fail(std::move(status.error()));
  if (auto ok = plainText(spec.body, kMaxFixedBodyLength, sub("body")); !ok)
    return fail(std::move(ok.error()));
  std::string contentType = spec.contentType.empty() ? "text/plain" : spec.contentType;
  if (auto ok = plainText(contentType, 64, sub("content_type"), false); !ok)
    return fail(std::move(ok.error()));
  action.status = *status;
  action.body = spec.body;
  action.contentType = contentType;
  return action;
}

Result<Changes> Balancers::addListener(std::string_view name, const ListenerSpec& spec) {
  auto balancer = mutableBalancer(name);
  if (!balancer) return fail(std::move(balancer.error()));
  auto listenerPort = port(spec.port, "port");
  if (!listenerPort) return fail(std::move(listenerPort.error()));
  if ((*balancer)->findListener(*listenerPort))
    return fail(conflict("load balancer \"{}\" already listens on port {}", name, *listenerPort));
  auto protocol = schema::parseListenerProtocol(spec.protocol, "protocol");
  if (!protocol) return fail(std::move(protocol.error()));
  const bool application = (*balancer)->type == LoadBalancerType::Application;
  if (application != (*protocol == ListenerProtocol::Http)) {
    return fail(invalidField("protocol", "an {} load balancer's listeners speak {}",
                             schema::loadBalancerTypeName((*balancer)->type), application ? "http" : "tcp"));
  }
  auto action = validateAction(spec.defaultAction, **balancer, *protocol, "default_action");
  if (!action) return fail(std::move(action.error()));
  auto& listeners = (*balancer)->listeners;
  Listener listener;
  listener.port = *listenerPort;
  listener.protocol = *protocol;
  listener.defaultAction = std::move(*action);
  listeners.insert(std::upper_bound(listeners.begin(), listeners.end(), listener,
                                    [](const Listener& a, const Listener& b) { return a.port < b.port; }),
                   std::move(listener));
  return balancerWritten(std::string(name));
}

Result<Changes> Balancers::deleteListener(std::string_view name, int64_t listenerPort) {
  auto balancer = mutableBalancer(name);
  if (!balancer) return fail(std::move(balancer.error()));
  auto listener = mutableListener(**balancer, listenerPort);
  if (!listener) return fail(std::move(listener.error()));
  auto& listeners = (*balancer)->listeners;
  listeners.erase(listeners.begin() + (*listener - listeners.data()));
  return balancerWritten(std::string(name));
}

Result<Changes> Balancers::addRule(std::string_view name, int64_t listenerPort,
                                   const ListenerRuleSpec& spec) {
  auto balancer = mutableBalancer(name);
  if (!balancer) return fail(std::move(balancer.error()));
  auto listener = mutableListener(**balancer, listenerPort);
  if (!listener) return fail(std::move(listener.error()));
  if ((*listener)->protocol != ListenerProtocol::Http)
    return fail(invalidField("port", "listener {} speaks tcp: rules read HTTP requests", listenerPort));
  if (!spec.priority) return fail(invalidField("priority", "is required"));
  auto priority = bounded(spec.priority, 0, kMinRulePriority, kMaxRulePriority, "priority");
  if (!priority) return fail(std::move(priority.error()));
  auto host = parseHostPattern(spec.host, "host");
  if (!host) return fail(std::move(host.error()));
  auto path = parsePathPattern(spec.path, "path");
  if (!path) return fail(std::move(path.error()));
  if (host->empty() && path->empty())
    return fail(invalidField("path", "a rule needs a host or a path (or both)"));
  auto action = validateAction(spec.action, **balancer, (*listener)->protocol, "action");
  if (!action) return fail(std::move(action.error()));
  ListenerRule rule;
  rule.priority = *priority;
  rule.host = *host;
  rule.path = *path;
  rule.action = std::move(*action);

  std::vector<ListenerRule> rules = (*listener)->rules;
  for (const auto& existing : rules) {
    if (existing.priority == rule.priority)
      return fail(conflict("listener {} already has a rule with priority {}", listenerPort, rule.priority));
  }
  rules.insert(
      std::upper_bound(rules.begin(), rules.end(), rule,
                       [](const ListenerRule& a, const ListenerRule& b) { return a.priority < b.priority; }),
      rule);
  // A rule whose every request an earlier rule already takes can never match: refused, whichever of the
  // two is the new one.
  for (size_t later = 0; later < rules.size(); ++later) {
    for (size_t earlier = 0; earlier < later; ++earlier) {
      if (rules[later].host.coveredBy(rules[earlier].host) &&
          rules[later].path.coveredBy(rules[earlier].path)) {
        return fail(
            invalidField("priority",
                         "rule {} (host \"{}\", path \"{}\") could never match: rule {} (host \"{}\", path "
                         "\"{}\") comes first and takes all its requests",
                         rules[later].priority, rules[later].host.text, rules[later].path.text,
                         rules[earlier].priority, rules[earlier].host.text, rules[earlier].path.text));
      }
    }
  }
  (*listener)->rules = std::move(rules);
  return balancerWritten(std::string(name));
}

Result<Changes> Balancers::deleteRule(std::string_view name, int64_t listenerPort, int64_t priority) {
  auto balancer = mutableBalancer(name);
  if (!balancer) return fail(std::move(balancer.error()));
  auto listener = mutableListener(**balancer, listenerPort);
  if (!listener) return fail(std::move(listener.error()));
  auto& rules = (*listener)->rules;
  auto found =
      std::find_if(rules.begin(), rules.end(), [&](const ListenerRule& r) { return r.priority == priority; });
  if (found == rules.end())
    return fail(notFound("listener {} has no rule with priority {}", listenerPort, priority));
  rules.erase(found);
  return balancerWritten(std::string(name));
}

Result<Changes> Balancers::addFirewallRule(std::string_view name, int64_t listenerPort,
                                           const FirewallRuleSpec& spec) {
  auto balancer = mutableBalancer(name);
  if (!balancer) return fail(std::move(balancer.error()));
  auto listener = mutableListener(**balancer, listenerPort);
  if (!listener) return fail(std::move(listener.error()));
  if ((*listener)->protocol != ListenerProtocol::Http)
    return fail(
        invalidField("port", "listener {} speaks tcp: the L7 firewall reads HTTP requests", listenerPort));
  auto part = schema::parseRequestPart(spec.part, "part");
  if (!part) return fail(std::move(part.error()));
  FirewallRule rule;
  rule.part = *part;
  rule.description = spec.description;
  if (spec.pattern.empty()) return fail(invalidField("pattern", "is required"));
  if (auto ok = plainText(spec.description, 256, "description"); !ok) return fail(std::move(ok.error()));
  switch (*part) {
    case RequestPart::Path: {
      auto path = parsePathPattern(spec.pattern, "pattern");
      if (!path) return fail(std::move(path.error()));
      rule.pattern = path->text;
      break;
    }
    case RequestPart::Method:
      for (unsigned char c : spec.pattern) {
        if (!std::isupper(c))
          return fail(invalidField("pattern", "\"{}\" is not an HTTP method (A-Z)", spec.pattern));
      }
      if (spec.pattern.size() > 32)
        return fail(invalidField("pattern", "\"{}\" is too long for a method", spec.pattern));
      rule.pattern = spec.pattern;
      break;
    case RequestPart::Header:
      if (spec.header.empty()) return fail(invalidField("header", "is required to match a header"));
      for (unsigned char c : spec.header) {
        if (!std::isalnum(c) && c != '-' && c != '_')
          return fail(invalidField("header", "\"{}\" is not a header name", spec.header));
      }
      [[fallthrough]];
    case RequestPart::Body:
      if (auto ok = plainText(spec.pattern, kMaxPatternLength, "pattern"); !ok)
        return fail(std::move(ok.error()));
      rule.pattern = spec.pattern;
      break;
  }
  if (*part == RequestPart::Header)
    rule.header = lower(spec.header);
  else if (!spec.header.empty())
    return fail(invalidField("header", "is only for header rules"));
  rule.id = (*listener)->nextFirewallRuleId++;
  (*listener)->firewall.push_back(std::move(rule));
  return balancerWritten(std::string(name));
}

Result<Changes> Balancers::deleteFirewallRule(std::string_view name, int64_t listenerPort, int64_t id) {
  auto balancer = mutableBalancer(name);
  if (!balancer) return fail(std::move(balancer.error()));
  auto listener = mutableListener(**balancer, listenerPort);
  if (!listener) return fail(std::move(listener.error()));
  auto& rules = (*listener)->firewall;
  auto found = std::find_if(rules.begin(), rules.end(), [&](const FirewallRule& r) { return r.id == id; });
  if (found == rules.end()) return fail(notFound("listener {} has no firewall rule {}", listenerPort, id));
  rules.erase(found);
  return balancerWritten(std::string(name));
}

}  // namespace corral::lb
