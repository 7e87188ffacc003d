// Load balancers and target groups to and from JSON (lb/codec.h).
#include "lb/codec.h"

#include <fmt/format.h>

#include <limits>
#include <utility>

namespace corral::lb {
namespace {

using nlohmann::json;

json actionJson(const ListenerAction& action) {
  json out{{"type", schema::listenerActionTypeName(action.type)}};
  if (action.type == ListenerActionType::Forward) {
    out["target_group"] = action.targetGroup;
  } else {
    out["status"] = action.status;
    out["body"] = action.body;
    out["content_type"] = action.contentType;
  }
  return out;
}

// Reads fields of one JSON object, failing with the field's path on the first wrong one.
class Reader {
 public:
  Reader(const json& object, std::string path) : object_(object), path_(std::move(path)) {}

  Status isObject() const {
    if (!object_.is_object()) return fail(invalidField(path_, "is not an object"));
    return {};
  }
  Result<std::string> text(const char* key) const {
    auto found = object_.find(key);
    if (found == object_.end() || !found->is_string())
      return fail(invalidField(field(key), "is not a string"));
    return found->get<std::string>();
  }
  Result<int64_t> integer(const char* key, int64_t low, int64_t high) const {
    auto found = object_.find(key);
    if (found == object_.end() || !found->is_number_integer())
      return fail(invalidField(field(key), "is not an integer"));
    auto value = found->get<int64_t>();
    if (value < low || value > high) return fail(invalidField(field(key), "{} is out of range", value));
    return value;
  }
  Result<bool> boolean(const char* key) const {
    auto found = object_.find(key);
    if (found == object_.end() || !found->is_boolean())
      return fail(invalidField(field(key), "is not a boolean"));
    return found->get<bool>();
  }
  Result<const json*> array(const char* key) const {
    auto found = object_.find(key);
    if (found == object_.end() || !found->is_array())
      return fail(invalidField(field(key), "is not an array"));
    return &*found;
  }
  Result<const json*> object(const char* key) const {
    auto found = object_.find(key);
    if (found == object_.end() || !found->is_object())
      return fail(invalidField(field(key), "is not an object"));
    return &*found;
  }
  std::string field(std::string_view key) const {
    return path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key);
  }

 private:
  const json& object_;
  std::string path_;
};

#define CORRAL_TAKE(target, expression)                  \
  do {                                                   \
    auto value_ = (expression);                          \
    if (!value_) return fail(std::move(value_.error())); \
    target = std::move(*value_);                         \
  } while (false)

constexpr int64_t kMaxInt = std::numeric_limits<int>::max();

Result<ListenerAction> actionFromJson(const json& object, const std::string& path) {
  Reader r(object, path);
  if (auto ok = r.isObject(); !ok) return fail(std::move(ok.error()));
  ListenerAction action;
  std::string type;
  CORRAL_TAKE(type, r.text("type"));
  CORRAL_TAKE(action.type, schema::parseListenerActionType(type, r.field("type")));
  if (action.type == ListenerActionType::Forward) {
    CORRAL_TAKE(action.targetGroup, r.text("target_group"));
  } else {
    CORRAL_TAKE(action.status, r.integer("status", 200, 599));
    CORRAL_TAKE(action.body, r.text("body"));
    CORRAL_TAKE(action.contentType, r.text("content_type"));
  }
  return action;
}

}  // namespace

json toJson(const TargetGroup& group) {
  const HealthCheck& check = group.healthCheck;
  return json{{"name", group.name},
              {"vpc", group.vpc},
              {"port", group.port},
              {"protocol", schema::listenerProtocolName(group.protocol)},
              {"health_check",
               {{"path", check.path},
                {"interval", check.intervalSeconds},
                {"timeout", check.timeoutSeconds},
                {"healthy_threshold", check.healthyThreshold},
                {"unhealthy_threshold", check.unhealthyThreshold}}},
              {"targets", group.targets},
              {"created_at", group.createdAt}};
}

json toJson(const LoadBalancer& balancer) {
  json nics = json::array();
  for (const auto& nic : balancer.nics) {
    nics.push_back({{"subnet", nic.subnet},
                    {"address", nic.address},
                    {"public_address", nic.publicAddress.empty() ? json(nullptr) : json(nic.publicAddress)}});
  }
  json listeners = json::array();
  for (const auto& listener : balancer.listeners) {
    json rules = json::array();
    for (const auto& rule : listener.rules) {
      rules.push_back({{"priority", rule.priority},
                       {"host", rule.host.text},
                       {"path", rule.path.text},
                       {"action", actionJson(rule.action)}});
    }
    json firewall = json::array();
    for (const auto& rule : listener.firewall) {
      json entry{{"id", rule.id},
                 {"part", schema::requestPartName(rule.part)},
                 {"pattern", rule.pattern},
                 {"description", rule.description}};
      if (rule.part == RequestPart::Header) entry["header"] = rule.header;
      firewall.push_back(std::move(entry));
    }
    listeners.push_back({{"port", listener.port},
                         {"protocol", schema::listenerProtocolName(listener.protocol)},
                         {"default_action", actionJson(listener.defaultAction)},
                         {"rules", std::move(rules)},
                         {"firewall", std::move(firewall)},
                         {"next_firewall_rule_id", listener.nextFirewallRuleId}});
  }
  return json{{"name", balancer.name},
              {"vpc", balancer.vpc},
              {"subnets", balancer.subnets},
              {"scheme", balancer.internal ? "internal" : "internet-facing"},
              {"type", schema::loadBalancerTypeName(balancer.type)},
              {"security_group", balancer.securityGroup},
              {"listeners", std::move(listeners)},
              {"nics", std::move(nics)},
              {"created_at", balancer.createdAt}};
}

Result<TargetGroup> targetGroupFromJson(const json& object) {
  Reader r(object, "");
  if (auto ok = r.isObject(); !ok) return fail(std::move(ok.error()));
  TargetGroup group;
  std::string protocol;
  CORRAL_TAKE(group.name, r.text("name"));
  CORRAL_TAKE(group.vpc, r.text("vpc"));
  CORRAL_TAKE(group.port, r.integer("port", 1, 65535));
  CORRAL_TAKE(protocol, r.text("protocol"));
  CORRAL_TAKE(group.protocol, schema::parseListenerProtocol(protocol, "protocol"));
  const json* check = nullptr;
  CORRAL_TAKE(check, r.object("health_check"));
  Reader c(*check, "health_check");
  CORRAL_TAKE(group.healthCheck.path, c.text("path"));
  CORRAL_TAKE(group.healthCheck.intervalSeconds, c.integer("interval", 1, kMaxInt));
  CORRAL_TAKE(group.healthCheck.timeoutSeconds, c.integer("timeout", 1, kMaxInt));
  CORRAL_TAKE(group.healthCheck.healthyThreshold, c.integer("healthy_threshold", 1, kMaxInt));
  CORRAL_TAKE(group.healthCheck.unhealthyThreshold, c.integer("unhealthy_threshold", 1, kMaxInt));
  const json* targets = nullptr;
  CORRAL_TAKE(targets, r.array("targets"));
  for (const auto& target : *targets) {
    if (!target.is_string()) return fail(invalidField("targets", "holds a value that is not a string"));
    group.targets.insert(target.get<std::string>());
  }
  CORRAL_TAKE(group.createdAt, r.integer("created_at", 0, std::numeric_limits<int64_t>::max()));
  return group;
}

Result<LoadBalancer> loadBalancerFromJson(const json& object) {
  Reader r(object, "");
  if (auto ok = r.isObject(); !ok) return fail(std::move(ok.error()));
  LoadBalancer balancer;
  std::string scheme, type;
  CORRAL_TAKE(balancer.name, r.text("name"));
  CORRAL_TAKE(balancer.vpc, r.text("vpc"));
  const json* subnets = nullptr;
  CORRAL_TAKE(subnets, r.array("subnets"));
  for (const auto& subnet : *subnets) {
    if (!subnet.is_string()) return fail(invalidField("subnets", "holds a value that is not a string"));
    balancer.subnets.push_back(subnet.get<std::string>());
  }
  CORRAL_TAKE(scheme, r.text("scheme"));
  if (scheme != "internal" && scheme != "internet-facing")
    return fail(invalidField("scheme", "\"{}\" is not internal or internet-facing", scheme));
  balancer.internal = scheme == "internal";
  CORRAL_TAKE(type, r.text("type"));
  CORRAL_TAKE(balancer.type, schema::parseLoadBalancerType(type, "type"));
  CORRAL_TAKE(balancer.securityGroup, r.text("security_group"));
  CORRAL_TAKE(balancer.createdAt, r.integer("created_at", 0, std::numeric_limits<int64_t>::max()));
  const json* listeners = nullptr;
  CORRAL_TAKE(listeners, r.array("listeners"));
  for (size_t i = 0; i < listeners->size(); ++i) {
    const std::string path = fmt::format("listeners[{}]", i);
    Reader l((*listeners)[i], path);
    if (auto ok = l.isObject(); !ok) return fail(std::move(ok.error()));
    Listener listener;
    std::string protocol;
    CORRAL_TAKE(listener.port, l.integer("port", 1, 65535));
    CORRAL_TAKE(protocol, l.text("protocol"));
    CORRAL_TAKE(listener.protocol, schema::parseListenerProtocol(protocol, l.field("protocol")));
    const json* action = nullptr;
    CORRAL_TAKE(action, l.object("default_action"));
    CORRAL_TAKE(listener.defaultAction, actionFromJson(*action, l.field("default_action")));
    CORRAL_TAKE(listener.nextFirewallRuleId,
                l.integer("next_firewall_rule_id", 1, std::numeric_limits<int64_t>::max()));
    const json* rules = nullptr;
    CORRAL_TAKE(rules, l.array("rules"));
    for (size_t j = 0; j < rules->size(); ++j) {
      Reader rr((*rules)[j], fmt::format("{}.rules[{}]", path, j));
      if (auto ok = rr.isObject(); !ok) return fail(std::move(ok.error()));
      ListenerRule rule;
      CORRAL_TAKE(rule.priority, rr.integer("priority", kMinRulePriority, kMaxRulePriority));
      CORRAL_TAKE(rule.host.text, rr.text("host"));
      CORRAL_TAKE(rule.path.text, rr.text("path"));
      CORRAL_TAKE(action, rr.object("action"));
      CORRAL_TAKE(rule.action, actionFromJson(*action, rr.field("action")));
      listener.rules.push_back(std::move(rule));
    }
    const json* firewall = nullptr;
    CORRAL_TAKE(firewall, l.array("firewall"));
    for (size_t j = 0; j < firewall->size(); ++j) {
      Reader fr((*firewall)[j], fmt::format("{}.firewall[{}]", path, j));
      if (auto ok = fr.isObject(); !ok) return fail(std::move(ok.error()));
      FirewallRule rule;
      std::string part;
      CORRAL_TAKE(rule.id, fr.integer("id", 1, std::numeric_limits<int64_t>::max()));
      CORRAL_TAKE(part, fr.text("part"));
      CORRAL_TAKE(rule.part, schema::parseRequestPart(part, fr.field("part")));
      CORRAL_TAKE(rule.pattern, fr.text("pattern"));
      CORRAL_TAKE(rule.description, fr.text("description"));
      if (rule.part == RequestPart::Header) CORRAL_TAKE(rule.header, fr.text("header"));
      listener.firewall.push_back(std::move(rule));
    }
    balancer.listeners.push_back(std::move(listener));
  }
  // Absent in documents written before corrald ran load balancers: no NICs yet.
  if (auto nics = object.find("nics"); nics != object.end()) {
    if (!nics->is_array()) return fail(invalidField("nics", "is not an array"));
    for (size_t i = 0; i < nics->size(); ++i) {
      Reader n((*nics)[i], fmt::format("nics[{}]", i));
      if (auto ok = n.isObject(); !ok) return fail(std::move(ok.error()));
      LoadBalancerNic nic;
      CORRAL_TAKE(nic.subnet, n.text("subnet"));
      CORRAL_TAKE(nic.address, n.text("address"));
      if (auto found = (*nics)[i].find("public_address"); found != (*nics)[i].end() && !found->is_null())
        CORRAL_TAKE(nic.publicAddress, n.text("public_address"));
      balancer.nics.push_back(std::move(nic));
    }
  }
  return balancer;
}

}  // namespace corral::lb
