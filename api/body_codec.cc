// Request bodies: JSON ⇄ the request types (api/body_codec.h), read field by field so every mistake names
// the field at fault.
#include "api/body_codec.h"

#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace corral::api {
namespace {

using nlohmann::json;

std::string_view jsonTypeName(const json& value) {
  switch (value.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
      return "integer";
    case json::value_t::number_float:
      return "number";
    case json::value_t::string:
      return "string";
    case json::value_t::array:
      return "array";
    case json::value_t::object:
      return "object";
    case json::value_t::binary:
      return "binary";
    case json::value_t::discarded:
      return "discarded";
  }
  return "unknown";
}

// What a wrong value looked like, short enough for one error line.
std::string describeValue(const json& value) {
  std::string text = value.dump();
  if (text.size() > 40) text = text.substr(0, 37) + "...";
  return fmt::format("{} {}", jsonTypeName(value), text);
}

Error typeError(std::string_view field, std::string_view expected, const json& value) {
  return invalidField(std::string(field), "field \"{}\" must be {}, got {}", field, expected,
                      describeValue(value));
}

Result<std::string> fromJson(std::string_view field, const json& value, std::string*) {
  if (!value.is_string()) return fail(typeError(field, "a string", value));
  return value.get<std::string>();
}

Result<bool> fromJson(std::string_view field, const json& value, bool*) {
  if (!value.is_boolean()) return fail(typeError(field, "a boolean (true or false)", value));
  return value.get<bool>();
}

// Only integers: 70000 passes (the model refuses it by name), 1.5 and "22" do not.
Result<int64_t> fromJson(std::string_view field, const json& value, int64_t*) {
  if (!value.is_number_integer()) return fail(typeError(field, "an integer", value));
  if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t{INT64_MAX}) {
    return fail(invalidField(std::string(field), "field \"{}\" is out of range: {}", field, value.dump()));
  }
  return value.get<int64_t>();
}

// Any JSON number: cpus may be 0.5 or 2.
Result<double> fromJson(std::string_view field, const json& value, double*) {
  if (!value.is_number()) return fail(typeError(field, "a number", value));
  return value.get<double>();
}

// An array of strings; a wrong element is named by its index: "command[1]".
Result<std::vector<std::string>> fromJson(std::string_view field, const json& value,
                                          std::vector<std::string>*) {
  if (!value.is_array()) return fail(typeError(field, "an array of strings", value));
  std::vector<std::string> out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (!value[i].is_string()) return fail(typeError(fmt::format("{}[{}]", field, i), "a string", value[i]));
    out.push_back(value[i].get<std::string>());
  }
  return out;
}

// An instance kind, by its API name ("container", "vm").
Result<schema::InstanceKind> fromJson(std::string_view field, const json& value, schema::InstanceKind*) {
  if (!value.is_string()) return fail(typeError(field, "a string", value));
  return schema::parseInstanceKind(value.get<std::string>(), field);
}

Result<schema::GroupHealth> fromJson(std::string_view field, const json& value, schema::GroupHealth*) {
  if (!value.is_string()) return fail(typeError(field, "a string", value));
  return schema::parseGroupHealth(value.get<std::string>(), field);
}

Result<schema::InstanceSpec> fromJson(std::string_view field, const json& value, schema::InstanceSpec*);
Result<schema::HealthCheckSpec> fromJson(std::string_view field, const json& value, schema::HealthCheckSpec*);
Result<schema::ListenerActionSpec> fromJson(std::string_view field, const json& value,
                                            schema::ListenerActionSpec*);

template <class T>
struct Unwrapped {
  using type = T;
};
template <class T>
struct Unwrapped<std::optional<T>> {
  using type = T;
};

// Reads a JSON object's fields into a spec. Every read marks its field as known; finish() then reports,
// in this order, an unknown field (a typo like "cidrr" is the likeliest mistake), else the first missing or
// mistyped field.
class BodyFields {
 public:
  explicit BodyFields(json object) : object_(std::move(object)) {}

  template <class T>
  void required(std::string_view field, T& out) {
    read(field, out, /*isRequired=*/true);
  }
  // Absent or null leaves `out` as it is (the spec's default, or nullopt).
  template <class T>
  void optional(std::string_view field, T& out) {
    read(field, out, /*isRequired=*/false);
  }

  // A refusal of the whole body's shape (two fields that exclude each other), kept if it is the first.
  void refuse(Error error) {
    if (!firstError_) firstError_ = std::move(error);
  }

  Status finish() const {
    for (const auto& [key, value] : object_.items()) {
      if (!known_.contains(key)) {
        std::string knownList;
        for (const std::string& name : knownOrder_) knownList += (knownList.empty() ? "" : ", ") + name;
        return fail(invalidField(key, "unknown field \"{}\" (known fields: {})", key, knownList));
      }
    }
    if (firstError_) return fail(*firstError_);
    return {};
  }

 private:
  template <class T>
  void read(std::string_view field, T& out, bool isRequired) {
    known_.emplace(field);
    knownOrder_.emplace_back(field);
    if (firstError_) return;
    auto it = object_.find(field);
    if (it == object_.end() || (it->is_null() && !isRequired)) {
      if (isRequired) {
        firstError_ = invalidField(std::string(field), "missing required field \"{}\"", field);
      }
      return;
    }
    using Value = typename Unwrapped<T>::type;
    Result<Value> value = fromJson(field, *it, static_cast<Value*>(nullptr));
    if (!value) {
      firstError_ = value.error();
      return;
    }
    out = std::move(*value);
  }

  json object_;
  std::set<std::string, std::less<>> known_;
  std::vector<std::string> knownOrder_;
  std::optional<Error> firstError_;
};

// Finds the first key that appears twice in one object while the parser runs (nlohmann keeps the last
// one silently, so {"name": "a", "name": "b"} would be a different request to each reader). Its path is
// what error fields use elsewhere: "name", "summary.vm", "samples[1].kind".
class DuplicateKeyFinder {
 public:
  bool operator()(int, json::parse_event_t event, json& parsed) {
    switch (event) {
      case json::parse_event_t::object_start:
      case json::parse_event_t::array_start:
        frames_.push_back({event == json::parse_event_t::array_start, childPath(), {}, 0});
        break;
      case json::parse_event_t::key: {
        Frame& object = frames_.back();
        object.key = parsed.get<std::string>();
        if (!object.keys.insert(object.key).second && !duplicate_) duplicate_ = pathOf(object, object.key);
        break;
      }
      case json::parse_event_t::object_end:
      case json::parse_event_t::array_end:
        frames_.pop_back();
        break;
      case json::parse_event_t::value:
        if (!frames_.empty() && frames_.back().isArray) ++frames_.back().index;
        break;
    }
    return true;
  }

  const std::optional<std::string>& duplicate() const { return duplicate_; }

 private:
  struct Frame {
    bool isArray;
    std::string path;
    std::set<std::string, std::less<>> keys;
    size_t index;          // of the next element, in an array
    std::string key = {};  // the last key read, in an object
  };

  static std::string pathOf(const Frame& object, std::string_view key) {
    return object.path.empty() ? std::string(key) : fmt::format("{}.{}", object.path, key);
  }

  // The path of a value starting now: an element of the array or the member of the object it is in.
  std::string childPath() {
    if (frames_.empty()) return {};
    Frame& parent = frames_.back();
    if (parent.isArray) return fmt::format("{}[{}]", parent.path, parent.index++);
    return pathOf(parent, parent.key);
  }

  std::vector<Frame> frames_;
  std::optional<std::string> duplicate_;
};

// One reader per body: required fields are the ones without a meaningful default. bodyJson below writes
// the same fields.
void readSpec(BodyFields& f, schema::VpcSpec& s) {
  f.required("name", s.name);
  f.required("cidr", s.cidr);
}

void readSpec(BodyFields& f, schema::SubnetSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
  f.required("cidr", s.cidr);
  f.optional("availability_zone", s.availabilityZone);
  f.optional("map_public_ip", s.mapPublicIp);
  f.optional("route_table", s.routeTable);
  f.optional("network_acl", s.networkAcl);
}

void readSpec(BodyFields& f, schema::SubnetUpdate& u) {
  f.optional("route_table", u.routeTable);
  f.optional("network_acl", u.networkAcl);
  f.optional("map_public_ip", u.mapPublicIp);
}

void readSpec(BodyFields& f, schema::RouteTableSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
}

void readSpec(BodyFields& f, schema::RouteSpec& s) {
  f.required("destination", s.destination);
  f.required("target_type", s.targetType);
  f.optional("target", s.targetName);
}

void readSpec(BodyFields& f, schema::InternetGatewaySpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
}

void readSpec(BodyFields& f, schema::NatGatewaySpec& s) {
  f.required("name", s.name);
  f.required("subnet", s.subnet);
}

void readSpec(BodyFields& f, schema::PeeringSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
  f.required("peer_vpc", s.peerVpc);
}

void readSpec(BodyFields& f, schema::SecurityGroupSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
  f.optional("description", s.description);
}

void readSpec(BodyFields& f, schema::SecurityGroupRuleSpec& s) {
  f.optional("direction", s.direction);
  f.required("protocol", s.protocol);
  f.optional("from_port", s.fromPort);
  f.optional("to_port", s.toPort);
  f.optional("cidr", s.cidr);
  f.optional("peer_group", s.peerGroup);
  f.optional("description", s.description);
}

void readSpec(BodyFields& f, schema::LoadBalancerSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
  f.required("subnets", s.subnets);
  f.optional("internal", s.internal);
  f.optional("type", s.type);
  f.optional("security_group", s.securityGroup);
}

void readSpec(BodyFields& f, schema::HealthCheckSpec& s) {
  f.optional("path", s.path);
  f.optional("interval", s.intervalSeconds);
  f.optional("timeout", s.timeoutSeconds);
  f.optional("healthy_threshold", s.healthyThreshold);
  f.optional("unhealthy_threshold", s.unhealthyThreshold);
}

void readSpec(BodyFields& f, schema::ListenerActionSpec& s) {
  f.optional("type", s.type);
  f.optional("target_group", s.targetGroup);
  f.optional("status", s.status);
  f.optional("body", s.body);
  f.optional("content_type", s.contentType);
}

void readSpec(BodyFields& f, schema::TargetGroupSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
  f.optional("port", s.port);
  f.optional("protocol", s.protocol);
  f.optional("health_check", s.healthCheck);
  f.optional("targets", s.targets);
}

void readSpec(BodyFields& f, schema::ListenerSpec& s) {
  f.required("port", s.port);
  f.optional("protocol", s.protocol);
  f.required("default_action", s.defaultAction);
}

void readSpec(BodyFields& f, schema::ListenerRuleSpec& s) {
  f.required("priority", s.priority);
  f.optional("host", s.host);
  f.optional("path", s.path);
  f.required("action", s.action);
}

void readSpec(BodyFields& f, schema::FirewallRuleSpec& s) {
  f.required("part", s.part);
  f.optional("header", s.header);
  f.required("pattern", s.pattern);
  f.optional("description", s.description);
}

void readSpec(BodyFields& f, InitCluster& s) {
  f.optional("az", s.az);
}

void readSpec(BodyFields& f, JoinCluster& s) {
  f.required("address", s.address);
  f.required("token", s.token);
  f.optional("az", s.az);
}

void readSpec(BodyFields& f, ClusterHostBody& s) {
  f.required("az", s.az);
}

void readSpec(BodyFields& f, TargetsBody& s) {
  f.required("targets", s.targets);
}

// A nested object read with its own fields; errors name "outer.inner".
template <class Spec>
Result<Spec> nestedFromJson(std::string_view field, const json& value) {
  if (!value.is_object()) return fail(typeError(field, "an object", value));
  BodyFields fields(value);
  Spec spec;
  readSpec(fields, spec);
  if (Status status = fields.finish(); !status) return fail(Error(status.error()).inField(field));
  return spec;
}

Result<schema::HealthCheckSpec> fromJson(std::string_view field, const json& value,
                                         schema::HealthCheckSpec*) {
  return nestedFromJson<schema::HealthCheckSpec>(field, value);
}

Result<schema::ListenerActionSpec> fromJson(std::string_view field, const json& value,
                                            schema::ListenerActionSpec*) {
  return nestedFromJson<schema::ListenerActionSpec>(field, value);
}

void readSpec(BodyFields& f, schema::NetworkAclSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
}

void readSpec(BodyFields& f, schema::NetworkAclRuleSpec& s) {
  f.required("number", s.number);
  f.optional("direction", s.direction);
  f.required("action", s.action);
  f.required("protocol", s.protocol);
  f.optional("from_port", s.fromPort);
  f.optional("to_port", s.toPort);
  f.required("cidr", s.cidr);
}

void readSpec(BodyFields& f, schema::InstanceSpec& s) {
  f.required("name", s.name);
  f.optional("kind", s.kind);
  f.optional("image", s.image);
  f.optional("command", s.command);
  f.optional("env", s.env);
  f.optional("hostname", s.hostname);
  f.optional("memory", s.memory);
  f.optional("cpus", s.cpus);
  f.optional("pids", s.pids);
  f.optional("cap_add", s.capAdd);
  f.optional("cap_drop", s.capDrop);
  f.optional("seccomp", s.seccomp);
  f.optional("user_namespace", s.userNamespace);
  f.optional("user", s.user);
  f.optional("devices", s.devices);
  f.optional("init", s.init);
  f.optional("remove_on_exit", s.removeOnExit);
  f.optional("tty", s.tty);
  f.optional("stdin", s.stdinOpen);
  f.optional("kernel", s.kernel);
  f.optional("machine", s.machine);
  f.optional("initrd", s.initrd);
  f.optional("warm", s.warm);
  f.optional("subnet", s.subnet);
  f.optional("ip", s.ip);
  f.optional("security_groups", s.securityGroups);
  f.optional("publish", s.publish);
  f.optional("public_ip", s.publicIp);
  f.optional("public_address", s.publicAddress);
  f.optional("user_data", s.userData);
  f.optional("group", s.group);
  f.optional("host", s.host);
}

// A group's launch template: an instance spec whose name may be left out (the group names its members).
Result<schema::InstanceSpec> fromJson(std::string_view field, const json& value, schema::InstanceSpec*) {
  if (!value.is_object()) return fail(typeError(field, "an object (an instance spec)", value));
  json object = value;
  if (!object.contains("name")) object["name"] = "";
  BodyFields fields(std::move(object));
  schema::InstanceSpec spec;
  readSpec(fields, spec);
  if (Status status = fields.finish(); !status) return fail(std::move(status.error()).inField(field));
  return spec;
}

void readSpec(BodyFields& f, schema::GroupSpec& s) {
  f.required("name", s.name);
  f.required("template", s.launch);
  f.required("subnets", s.subnets);
  f.required("min", s.min);
  f.required("max", s.max);
  f.optional("desired", s.desired);
  f.optional("health", s.health);
  f.optional("target_group", s.targetGroup);
}

void readSpec(BodyFields& f, ScaleBody& s) {
  f.required("desired", s.desired);
}

void readSpec(BodyFields& f, PolicyBody& s) {
  std::optional<double> cpu;
  std::optional<double> requests;
  f.optional("cpu_target", cpu);
  f.optional("requests_per_target", requests);
  if (cpu && requests)
    f.refuse(invalidField("requests_per_target",
                          "one policy at a time: give cpu_target or requests_per_target, not both"));
  if (cpu) s.policy = schema::ScalingPolicy{*cpu, schema::PolicyMetric::cpu};
  if (requests) s.policy = schema::ScalingPolicy{*requests, schema::PolicyMetric::requestsPerTarget};
}

void readSpec(BodyFields& f, StopBody& s) {
  f.optional("grace_seconds", s.graceSeconds);
  f.optional("save", s.save);
}

void readSpec(BodyFields&, EmptyBody&) {}

void readSpec(BodyFields& f, ExecBody& s) {
  f.required("command", s.command);
  f.optional("env", s.env);
}

void readSpec(BodyFields& f, WaitPortBody& s) {
  f.required("port", s.port);
  f.optional("timeout_seconds", s.timeoutSeconds);
}

// Body of POST /v1/instances/remove; the names are checked by the daemon.
void readSpec(BodyFields& f, RemoveInstances& s) {
  f.required("names", s.names);
  f.optional("force", s.force);
}

// Body of POST /v1/trace; the values are checked by the daemon.
void readSpec(BodyFields& f, TraceCapture& s) {
  f.optional("target", s.target);
  f.optional("load_balancer", s.loadBalancer);
  f.optional("subnet", s.subnet);
  if (s.target.empty() && s.loadBalancer.empty())
    f.refuse(invalidField("target", "missing required field \"target\" (or \"load_balancer\")"));
  else if (!s.target.empty() && !s.loadBalancer.empty())
    f.refuse(invalidField("load_balancer", "give target or load_balancer, not both"));
  else if (!s.subnet.empty() && s.loadBalancer.empty())
    f.refuse(invalidField("subnet", "subnet picks a load balancer's NIC: it needs load_balancer"));
  f.optional("filter", s.filter);
  f.optional("count", s.count);
  f.optional("seconds", s.seconds);
}

// Body of POST /v1/reach; the values are checked by the daemon (net/reach.h's makeReachQuery).
void readSpec(BodyFields& f, ReachAnalysis& s) {
  f.required("source", s.source);
  f.required("destination", s.destination);
  f.optional("protocol", s.protocol);
  f.optional("port", s.port);
  f.optional("verify", s.verify);
}

// Bodies of the image operations (api/images.h); the values are checked by the daemon.
void readSpec(BodyFields& f, PullImage& s) {
  f.required("reference", s.reference);
  f.optional("insecure", s.insecure);
  f.optional("name", s.name);
}

void readSpec(BodyFields& f, ImportImage& s) {
  f.required("path", s.path);
  f.optional("name", s.name);
}

void readSpec(BodyFields& f, BuildImage& s) {
  f.required("name", s.name);
  f.required("debian", s.debian);
  f.optional("cmd", s.cmd);
  f.optional("file", s.file);
}

}  // namespace

Result<json> parseBodyObject(std::string_view method, std::string_view path, std::string_view body) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return fail(invalidField("body", "request body is empty; {} {} needs a JSON object", method, path));
  }
  json parsed;
  DuplicateKeyFinder duplicates;
  try {
    parsed = json::parse(body, std::ref(duplicates));
  } catch (const json::exception& e) {
    return fail(invalidField("body", "request body is not valid JSON: {}", e.what()));
  }
  if (duplicates.duplicate()) {
    return fail(invalidField(*duplicates.duplicate(),
                             "duplicate key \"{}\" in the request body: give each key once",
                             *duplicates.duplicate()));
  }
  if (!parsed.is_object()) {
    return fail(invalidField("body", "request body must be a JSON object, got {}", describeValue(parsed)));
  }
  return parsed;
}

template <class Spec>
Result<Spec> parseBody(std::string_view method, std::string_view path, std::string_view body) {
  Result<json> object = parseBodyObject(method, path, body);
  if (!object) return fail(object.error());
  BodyFields fields(std::move(*object));
  Spec spec;
  readSpec(fields, spec);
  if (Status status = fields.finish(); !status) return fail(status.error());
  return spec;
}

// Every body the router reads (a body type missing here is a link error, not a silent gap).
template Result<schema::VpcSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::SubnetSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::SubnetUpdate> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::RouteTableSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::RouteSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::InternetGatewaySpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::NatGatewaySpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::PeeringSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::SecurityGroupSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::SecurityGroupRuleSpec> parseBody(std::string_view, std::string_view,
                                                         std::string_view);
template Result<schema::NetworkAclSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::NetworkAclRuleSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::InstanceSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::GroupSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<ScaleBody> parseBody(std::string_view, std::string_view, std::string_view);
template Result<PolicyBody> parseBody(std::string_view, std::string_view, std::string_view);
template Result<StopBody> parseBody(std::string_view, std::string_view, std::string_view);
template Result<EmptyBody> parseBody(std::string_view, std::string_view, std::string_view);
template Result<ExecBody> parseBody(std::string_view, std::string_view, std::string_view);
template Result<WaitPortBody> parseBody(std::string_view, std::string_view, std::string_view);
template Result<RemoveInstances> parseBody(std::string_view, std::string_view, std::string_view);
template Result<TraceCapture> parseBody(std::string_view, std::string_view, std::string_view);
template Result<ReachAnalysis> parseBody(std::string_view, std::string_view, std::string_view);
template Result<PullImage> parseBody(std::string_view, std::string_view, std::string_view);
template Result<ImportImage> parseBody(std::string_view, std::string_view, std::string_view);
template Result<BuildImage> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::LoadBalancerSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::ListenerSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::ListenerRuleSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::FirewallRuleSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<schema::TargetGroupSpec> parseBody(std::string_view, std::string_view, std::string_view);
template Result<TargetsBody> parseBody(std::string_view, std::string_view, std::string_view);
template Result<InitCluster> parseBody(std::string_view, std::string_view, std::string_view);
template Result<JoinCluster> parseBody(std::string_view, std::string_view, std::string_view);
template Result<ClusterHostBody> parseBody(std::string_view, std::string_view, std::string_view);

json bodyJson(const schema::VpcSpec& s) {
  return {{"name", s.name}, {"cidr", s.cidr}};
}

json bodyJson(const schema::SubnetSpec& s) {
  return {{"name", s.name},
          {"vpc", s.vpc},
          {"cidr", s.cidr},
          {"availability_zone", s.availabilityZone},
          {"map_public_ip", s.mapPublicIp},
          {"route_table", s.routeTable},
          {"network_acl", s.networkAcl}};
}

json bodyJson(const schema::SubnetUpdate& u) {
  json body = json::object();
  if (u.routeTable) body["route_table"] = *u.routeTable;
  if (u.networkAcl) body["network_acl"] = *u.networkAcl;
  if (u.mapPublicIp) body["map_public_ip"] = *u.mapPublicIp;
  return body;
}

json bodyJson(const schema::RouteTableSpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}};
}

json bodyJson(const schema::RouteSpec& s) {
  json body = {{"destination", s.destination}, {"target_type", s.targetType}};
  if (!s.targetName.empty()) body["target"] = s.targetName;
  return body;
}

json bodyJson(const schema::InternetGatewaySpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}};
}

json bodyJson(const schema::NatGatewaySpec& s) {
  return {{"name", s.name}, {"subnet", s.subnet}};
}

json bodyJson(const schema::PeeringSpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}, {"peer_vpc", s.peerVpc}};
}

json bodyJson(const schema::SecurityGroupSpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}, {"description", s.description}};
}

json bodyJson(const schema::SecurityGroupRuleSpec& s) {
  json body = {{"direction", s.direction}, {"protocol", s.protocol}, {"description", s.description}};
  if (s.fromPort) body["from_port"] = *s.fromPort;
  if (s.toPort) body["to_port"] = *s.toPort;
  if (s.cidr) body["cidr"] = *s.cidr;
  if (s.peerGroup) body["peer_group"] = *s.peerGroup;
  return body;
}

namespace {

json actionJson(const schema::ListenerActionSpec& a) {
  json body = {{"type", a.type}};
  if (!a.targetGroup.empty()) body["target_group"] = a.targetGroup;
  if (a.status) body["status"] = *a.status;
  if (!a.body.empty()) body["body"] = a.body;
  if (a.contentType != "text/plain") body["content_type"] = a.contentType;
  return body;
}

}  // namespace

json bodyJson(const schema::LoadBalancerSpec& s) {
  json body = {
      {"name", s.name}, {"vpc", s.vpc}, {"subnets", s.subnets}, {"internal", s.internal}, {"type", s.type}};
  if (!s.securityGroup.empty()) body["security_group"] = s.securityGroup;
  return body;
}

json bodyJson(const schema::ListenerSpec& s) {
  json body = {{"protocol", s.protocol}, {"default_action", actionJson(s.defaultAction)}};
  if (s.port) body["port"] = *s.port;
  return body;
}

json bodyJson(const schema::ListenerRuleSpec& s) {
  json body = {{"host", s.host}, {"path", s.path}, {"action", actionJson(s.action)}};
  if (s.priority) body["priority"] = *s.priority;
  return body;
}

json bodyJson(const schema::FirewallRuleSpec& s) {
  json body = {{"part", s.part}, {"pattern", s.pattern}, {"description", s.description}};
  if (!s.header.empty()) body["header"] = s.header;
  return body;
}

json bodyJson(const schema::TargetGroupSpec& s) {
  const schema::HealthCheckSpec& h = s.healthCheck;
  json check = {{"path", h.path}};
  if (h.intervalSeconds) check["interval"] = *h.intervalSeconds;
  if (h.timeoutSeconds) check["timeout"] = *h.timeoutSeconds;
  if (h.healthyThreshold) check["healthy_threshold"] = *h.healthyThreshold;
  if (h.unhealthyThreshold) check["unhealthy_threshold"] = *h.unhealthyThreshold;
  json body = {{"name", s.name},
               {"vpc", s.vpc},
               {"protocol", s.protocol},
               {"health_check", check},
               {"targets", s.targets}};
  if (s.port) body["port"] = *s.port;
  return body;
}

json bodyJson(const InitCluster& s) {
  return {{"az", s.az}};
}

json bodyJson(const JoinCluster& s) {
  return {{"address", s.address}, {"token", s.token}, {"az", s.az}};
}

json bodyJson(const ClusterHostBody& s) {
  return {{"az", s.az}};
}

json bodyJson(const TargetsBody& s) {
  return {{"targets", s.targets}};
}

json bodyJson(const schema::NetworkAclSpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}};
}

json bodyJson(const schema::NetworkAclRuleSpec& s) {
  json body = {{"number", s.number},
               {"direction", s.direction},
               {"action", s.action},
               {"protocol", s.protocol},
               {"cidr", s.cidr}};
  if (s.fromPort) body["from_port"] = *s.fromPort;
  if (s.toPort) body["to_port"] = *s.toPort;
  return body;
}

json bodyJson(const schema::InstanceSpec& s) {
  json body = {{"name", s.name},       {"kind", schema::instanceKindName(s.kind)},
               {"image", s.image},     {"command", s.command},
               {"env", s.env},         {"hostname", s.hostname},
               {"cap_add", s.capAdd},  {"cap_drop", s.capDrop},
               {"seccomp", s.seccomp}, {"user_namespace", s.userNamespace},
               {"init", s.init},       {"remove_on_exit", s.removeOnExit}};
  if (!s.kernel.empty()) body["kernel"] = s.kernel;
  if (!s.machine.empty()) body["machine"] = s.machine;
  if (!s.initrd.empty()) body["initrd"] = s.initrd;
  if (s.warm) body["warm"] = true;
  if (s.tty) body["tty"] = true;
  if (s.stdinOpen) body["stdin"] = true;
  if (!s.user.empty()) body["user"] = s.user;
  if (!s.devices.empty()) body["devices"] = s.devices;
  if (!s.subnet.empty()) body["subnet"] = s.subnet;
  if (!s.ip.empty()) body["ip"] = s.ip;
  if (!s.securityGroups.empty()) body["security_groups"] = s.securityGroups;
  if (!s.publish.empty()) body["publish"] = s.publish;
  if (s.publicIp) body["public_ip"] = *s.publicIp;
  if (!s.publicAddress.empty()) body["public_address"] = s.publicAddress;
  if (!s.userData.empty()) body["user_data"] = s.userData;
  if (!s.group.empty()) body["group"] = s.group;
  if (!s.host.empty()) body["host"] = s.host;
  body["memory"] = s.memory ? json(*s.memory) : json(nullptr);
  body["cpus"] = s.cpus ? json(*s.cpus) : json(nullptr);
  body["pids"] = s.pids ? json(*s.pids) : json(nullptr);
  return body;
}

json bodyJson(const schema::GroupSpec& s) {
  json launch = bodyJson(s.launch);
  if (s.launch.name.empty()) launch.erase("name");
  json body = {{"name", s.name},       {"template", std::move(launch)},
               {"subnets", s.subnets}, {"min", s.min},
               {"max", s.max},         {"health", schema::groupHealthName(s.health)}};
  if (s.desired) body["desired"] = *s.desired;
  if (!s.targetGroup.empty()) body["target_group"] = s.targetGroup;
  return body;
}

json bodyJson(const ScaleBody& s) {
  return {{"desired", s.desired}};
}

json bodyJson(const PolicyBody& s) {
  if (!s.policy) return {{"cpu_target", nullptr}};
  return {{std::string(schema::policyMetricField(s.policy->metric)), s.policy->target}};
}

json bodyJson(const StopBody& s) {
  json body = {{"grace_seconds", s.graceSeconds}};
  if (s.save) body["save"] = true;  // absent when false: what a client that predates it sends
  return body;
}

json bodyJson(const ExecBody& s) {
  return {{"command", s.command}, {"env", s.env}};
}

json bodyJson(const WaitPortBody& s) {
  return {{"port", s.port}, {"timeout_seconds", s.timeoutSeconds}};
}

json bodyJson(const RemoveInstances& s) {
  return {{"names", s.names}, {"force", s.force}};
}

json bodyJson(const TraceCapture& s) {
  json body = {{"filter", s.filter}, {"count", s.count}, {"seconds", s.seconds}};
  if (!s.target.empty()) body["target"] = s.target;
  if (!s.loadBalancer.empty()) body["load_balancer"] = s.loadBalancer;
  if (!s.subnet.empty()) body["subnet"] = s.subnet;
  return body;
}

json bodyJson(const ReachAnalysis& s) {
  json body{{"source", s.source}, {"destination", s.destination}, {"protocol", s.protocol}};
  if (s.port) body["port"] = *s.port;
  if (s.verify) body["verify"] = true;
  return body;
}

json bodyJson(const PullImage& s) {
  return {{"reference", s.reference}, {"insecure", s.insecure}, {"name", s.name}};
}

json bodyJson(const ImportImage& s) {
  return {{"path", s.path}, {"name", s.name}};
}

json bodyJson(const BuildImage& s) {
  return {{"name", s.name}, {"debian", s.debian}, {"cmd", s.cmd}, {"file", s.file}};
}

}  // namespace corral::api
