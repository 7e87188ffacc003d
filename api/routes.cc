// The /v1 path table: HTTP method + target + JSON body ⇄ api::Request, with percent-encoded names and
// request bodies read field by field so every mistake names the field at fault.
#include <charconv>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "api/api.h"

namespace corral::api {
namespace {

using nlohmann::json;

// ---- Kinds and their create specs ----

template <class Spec>
struct SpecKind;
template <>
struct SpecKind<schema::VpcSpec> : std::integral_constant<ObjectKind, ObjectKind::Vpc> {};
template <>
struct SpecKind<schema::SubnetSpec> : std::integral_constant<ObjectKind, ObjectKind::Subnet> {};
template <>
struct SpecKind<schema::RouteTableSpec> : std::integral_constant<ObjectKind, ObjectKind::RouteTable> {};
template <>
struct SpecKind<schema::InternetGatewaySpec>
    : std::integral_constant<ObjectKind, ObjectKind::InternetGateway> {};
template <>
struct SpecKind<schema::NatGatewaySpec> : std::integral_constant<ObjectKind, ObjectKind::NatGateway> {};
template <>
struct SpecKind<schema::SecurityGroupSpec> : std::integral_constant<ObjectKind, ObjectKind::SecurityGroup> {};
template <>
struct SpecKind<schema::NetworkAclSpec> : std::integral_constant<ObjectKind, ObjectKind::NetworkAcl> {};

constexpr std::string_view kInstances = "instances";
constexpr std::string_view kImages = "images";
constexpr std::string_view kTrace = "trace";
constexpr std::string_view kComparisons = "comparisons";
constexpr std::string_view kDashboard = "dashboard";

constexpr ObjectKind kAllKinds[] = {
    ObjectKind::Vpc,        ObjectKind::Subnet,        ObjectKind::RouteTable, ObjectKind::InternetGateway,
    ObjectKind::NatGateway, ObjectKind::SecurityGroup, ObjectKind::NetworkAcl};

// ---- Percent-encoding (RFC 3986): names are DNS-label-like today, but a path must survive any input ----

bool isUnreserved(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~';
}

// `keep` lists characters left as they are (the '/' inside a route destination, for readability).
std::string percentEncode(std::string_view text, std::string_view keep = {}) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    if (isUnreserved(c) || keep.find(c) != std::string_view::npos) {
      out += c;
    } else {
      auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    }
  }
  return out;
}

int hexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> percentDecode(std::string_view text, std::string_view field) {
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      out += text[i];
      continue;
    }
    int high = i + 2 < text.size() ? hexValue(text[i + 1]) : -1;
    int low = i + 2 < text.size() ? hexValue(text[i + 2]) : -1;
    if (high < 0 || low < 0) {
      return fail(invalidField(std::string(field),
                               "bad percent-escape in \"{}\": '%' must be followed by two hex digits", text));
    }
    out += static_cast<char>(high * 16 + low);
    i += 2;
  }
  return out;
}

// ---- Request bodies ----

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

// One pair per spec: fill from JSON (required fields are the ones without a meaningful default) and render.
void readSpec(BodyFields& f, schema::VpcSpec& s) {
  f.required("name", s.name);
  f.required("cidr", s.cidr);
}
json specJson(const schema::VpcSpec& s) {
  return {{"name", s.name}, {"cidr", s.cidr}};
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
json specJson(const schema::SubnetSpec& s) {
  return {{"name", s.name},
          {"vpc", s.vpc},
          {"cidr", s.cidr},
          {"availability_zone", s.availabilityZone},
          {"map_public_ip", s.mapPublicIp},
          {"route_table", s.routeTable},
          {"network_acl", s.networkAcl}};
}

void readSpec(BodyFields& f, schema::SubnetUpdate& u) {
  f.optional("route_table", u.routeTable);
  f.optional("network_acl", u.networkAcl);
  f.optional("map_public_ip", u.mapPublicIp);
}
json specJson(const schema::SubnetUpdate& u) {
  json body = json::object();
  if (u.routeTable) body["route_table"] = *u.routeTable;
  if (u.networkAcl) body["network_acl"] = *u.networkAcl;
  if (u.mapPublicIp) body["map_public_ip"] = *u.mapPublicIp;
  return body;
}

void readSpec(BodyFields& f, schema::RouteTableSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
}
json specJson(const schema::RouteTableSpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}};
}

void readSpec(BodyFields& f, schema::RouteSpec& s) {
  f.required("destination", s.destination);
  f.required("target_type", s.targetType);
  f.optional("target", s.targetName);
}
json specJson(const schema::RouteSpec& s) {
  json body = {{"destination", s.destination}, {"target_type", s.targetType}};
  if (!s.targetName.empty()) body["target"] = s.targetName;
  return body;
}

void readSpec(BodyFields& f, schema::InternetGatewaySpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
}
json specJson(const schema::InternetGatewaySpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}};
}

void readSpec(BodyFields& f, schema::NatGatewaySpec& s) {
  f.required("name", s.name);
  f.required("subnet", s.subnet);
}
json specJson(const schema::NatGatewaySpec& s) {
  return {{"name", s.name}, {"subnet", s.subnet}};
}

void readSpec(BodyFields& f, schema::SecurityGroupSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
  f.optional("description", s.description);
}
json specJson(const schema::SecurityGroupSpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}, {"description", s.description}};
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
json specJson(const schema::SecurityGroupRuleSpec& s) {
  json body = {{"direction", s.direction}, {"protocol", s.protocol}, {"description", s.description}};
  if (s.fromPort) body["from_port"] = *s.fromPort;
  if (s.toPort) body["to_port"] = *s.toPort;
  if (s.cidr) body["cidr"] = *s.cidr;
  if (s.peerGroup) body["peer_group"] = *s.peerGroup;
  return body;
}

void readSpec(BodyFields& f, schema::NetworkAclSpec& s) {
  f.required("name", s.name);
  f.required("vpc", s.vpc);
}
json specJson(const schema::NetworkAclSpec& s) {
  return {{"name", s.name}, {"vpc", s.vpc}};
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
json specJson(const schema::NetworkAclRuleSpec& s) {
  json body = {{"number", s.number},
               {"direction", s.direction},
               {"action", s.action},
               {"protocol", s.protocol},
               {"cidr", s.cidr}};
  if (s.fromPort) body["from_port"] = *s.fromPort;
  if (s.toPort) body["to_port"] = *s.toPort;
  return body;
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
  f.optional("devices", s.devices);
  f.optional("init", s.init);
  f.optional("remove_on_exit", s.removeOnExit);
  f.optional("kernel", s.kernel);
  f.optional("initrd", s.initrd);
  f.optional("subnet", s.subnet);
  f.optional("ip", s.ip);
  f.optional("security_groups", s.securityGroups);
  f.optional("publish", s.publish);
  f.optional("public_ip", s.publicIp);
  f.optional("public_address", s.publicAddress);
}

json specJson(const schema::InstanceSpec& s) {
  json body = {{"name", s.name},       {"kind", schema::instanceKindName(s.kind)},
               {"image", s.image},     {"command", s.command},
               {"env", s.env},         {"hostname", s.hostname},
               {"cap_add", s.capAdd},  {"cap_drop", s.capDrop},
               {"seccomp", s.seccomp}, {"user_namespace", s.userNamespace},
               {"init", s.init},       {"remove_on_exit", s.removeOnExit}};
  if (!s.kernel.empty()) body["kernel"] = s.kernel;
  if (!s.initrd.empty()) body["initrd"] = s.initrd;
  if (!s.devices.empty()) body["devices"] = s.devices;
  if (!s.subnet.empty()) body["subnet"] = s.subnet;
  if (!s.ip.empty()) body["ip"] = s.ip;
  if (!s.securityGroups.empty()) body["security_groups"] = s.securityGroups;
  if (!s.publish.empty()) body["publish"] = s.publish;
  if (s.publicIp) body["public_ip"] = *s.publicIp;
  if (!s.publicAddress.empty()) body["public_address"] = s.publicAddress;
  body["memory"] = s.memory ? json(*s.memory) : json(nullptr);
  body["cpus"] = s.cpus ? json(*s.cpus) : json(nullptr);
  body["pids"] = s.pids ? json(*s.pids) : json(nullptr);
  return body;
}

// Body of POST /v1/instances/NAME/stop; absent fields keep their defaults.
struct StopBody {
  int64_t graceSeconds = 10;
};
void readSpec(BodyFields& f, StopBody& s) {
  f.optional("grace_seconds", s.graceSeconds);
}
struct EmptyBody {};
void readSpec(BodyFields&, EmptyBody&) {}
struct ExecBody {
  std::vector<std::string> command;
  std::vector<std::string> env;
};
void readSpec(BodyFields& f, ExecBody& s) {
  f.required("command", s.command);
  f.optional("env", s.env);
}
struct WaitPortBody {
  int64_t port = 0;
  int64_t timeoutSeconds = 60;
};
void readSpec(BodyFields& f, WaitPortBody& s) {
  f.required("port", s.port);
  f.optional("timeout_seconds", s.timeoutSeconds);
}

// Body of POST /v1/trace; the values are checked by the daemon.
void readSpec(BodyFields& f, TraceCapture& s) {
  f.required("target", s.target);
  f.optional("filter", s.filter);
  f.optional("count", s.count);
  f.optional("seconds", s.seconds);
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

template <class Spec>
Result<Spec> parseSpec(std::string_view method, std::string_view path, std::string_view body) {
  Result<json> object = parseBodyObject(method, path, body);
  if (!object) return fail(object.error());
  BodyFields fields(std::move(*object));
  Spec spec;
  readSpec(fields, spec);
  if (Status status = fields.finish(); !status) return fail(status.error());
  return spec;
}

// ---- The path table ----

// The parts of one request target, as the router sees them.
struct ParsedTarget {
  std::string_view path;                   // without the query, for messages
  std::vector<std::string_view> segments;  // after "/v1/", still percent-encoded
  std::optional<std::string_view> query;   // after '?', when there is one
};

class Router {
 public:
  Router(std::string_view method, ParsedTarget target, std::string_view body)
      : method_(method), target_(std::move(target)), body_(body) {}

  Result<Request> route() const {
    const auto& seg = target_.segments;
    if (seg.size() == 1 && seg[0] == "info") {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      return Request{GetInfo{}};
    }
    for (ObjectKind kind : kAllKinds) {
      if (!seg.empty() && seg[0] == collectionName(kind)) return routeKind(kind);
    }
    if (!seg.empty() && seg[0] == kInstances) return routeInstances();
    if (!seg.empty() && seg[0] == kImages) return routeImages();
    if (seg.size() == 1 && seg[0] == kTrace) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      auto trace = parseSpec<TraceCapture>(method_, target_.path, body_);
      if (!trace) return fail(trace.error());
      return Request{std::move(*trace)};
    }
    if (!seg.empty() && seg[0] == kComparisons) return routeComparisons();
    if (seg.size() == 1 && seg[0] == kDashboard) {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      return Request{GetDashboard{}};
    }
    return fail(noSuchPath());
  }

 private:
  Result<Request> routeComparisons() const {
    const auto& seg = target_.segments;
    if (Status s = noQuery(); !s) return fail(s.error());
    if (seg.size() == 1) {
      if (Status s = check({"GET", "POST"}); !s) return fail(s.error());
      if (method_ == "GET") return Request{ListComparisons{}};
      Result<json> result = parseBodyObject(method_, target_.path, body_);
      if (!result) return fail(result.error());
      return Request{SaveComparison{std::move(*result)}};
    }
    if (seg.size() != 2) return fail(noSuchPath());
    if (Status s = check({"GET"}); !s) return fail(s.error());
    Result<std::string> id = percentDecode(seg[1], "id");
    if (!id) return fail(id.error());
    if (*id != "latest" &&
        (id->empty() || id->size() > 18 || id->find_first_not_of("0123456789") != std::string::npos)) {
      return fail(invalidField("id", "comparison id \"{}\" is not a number or \"latest\"", *id));
    }
    return Request{GetComparison{std::move(*id)}};
  }

  // /v1/images, /v1/images/NAME, and POST /v1/images/{pull,import,build} (an image may be called "pull":
  // GET and DELETE name images, POST names operations).
  Result<Request> routeImages() const {
    const auto& seg = target_.segments;
    if (Status s = noQuery(); !s) return fail(s.error());
    if (seg.size() == 1) {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      return Request{ListImages{}};
    }
    if (seg.size() != 2) return fail(noSuchPath());
    if (method_ == "POST") {
      auto operation = [&]<class Spec>(std::type_identity<Spec>) -> Result<Request> {
        auto spec = parseSpec<Spec>(method_, target_.path, body_);
        if (!spec) return fail(spec.error());
        return Request{std::move(*spec)};
      };
      if (seg[1] == "pull") return operation(std::type_identity<PullImage>{});
      if (seg[1] == "import") return operation(std::type_identity<ImportImage>{});
      if (seg[1] == "build") return operation(std::type_identity<BuildImage>{});
      return fail(noSuchPath());
    }
    if (Status s = check({"GET", "DELETE", "POST"}); !s) return fail(s.error());
    Result<std::string> name = percentDecode(seg[1], "name");
    if (!name) return fail(name.error());
    if (method_ == "GET") return Request{GetImage{std::move(*name)}};
    return Request{RemoveImage{std::move(*name)}};
  }

  Result<Request> routeInstances() const {
    const auto& seg = target_.segments;
    if (seg.size() == 1) {
      if (Status s = check({"GET", "POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      if (method_ == "GET") return Request{ListInstances{}};
      auto spec = parseSpec<schema::InstanceSpec>(method_, target_.path, body_);
      if (!spec) return fail(spec.error());
      return Request{RunInstance{std::move(*spec)}};
    }
    Result<std::string> name = percentDecode(seg[1], "name");
    if (!name) return fail(name.error());
    if (seg.size() == 2) {
      if (Status s = check({"GET", "DELETE"}); !s) return fail(s.error());
      const bool get = method_ == "GET";
      const char* flagName = get ? "show_env" : "force";
      auto params = queryParams({flagName});
      if (!params) return fail(params.error());
      bool flag = false;
      if (auto it = params->find(flagName); it != params->end()) {
        if (it->second != "true" && it->second != "false") {
          return fail(invalidField(flagName, "query parameter {} must be true or false, got \"{}\"", flagName,
                                   it->second));
        }
        flag = it->second == "true";
      }
      if (get) return Request{GetInstance{std::move(*name), flag}};
      return Request{RemoveInstance{std::move(*name), flag}};
    }
    if (seg.size() != 3) return fail(noSuchPath());
    if (seg[2] == "stop") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      StopBody body;
      if (!isBlank(body_)) {
        auto parsed = parseSpec<StopBody>(method_, target_.path, body_);
        if (!parsed) return fail(parsed.error());
        body = *parsed;
      }
      return Request{StopInstance{std::move(*name), body.graceSeconds}};
    }
    if (seg[2] == "start") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      if (!isBlank(body_)) {
        auto parsed = parseSpec<EmptyBody>(method_, target_.path, body_);
        if (!parsed) return fail(parsed.error());
      }
      return Request{StartInstance{std::move(*name)}};
    }
    if (seg[2] == "logs") {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      GetInstanceLogs logs{std::move(*name)};
      auto params = queryParams({"offset"});
      if (!params) return fail(params.error());
      if (auto it = params->find("offset"); it != params->end()) {
        auto offset = pathInteger(it->second, "offset", "offset");
        if (!offset) return fail(offset.error());
        logs.offset = *offset;
      }
      return Request{std::move(logs)};
    }
    if (seg[2] == "exec") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      auto body = parseSpec<ExecBody>(method_, target_.path, body_);
      if (!body) return fail(body.error());
      return Request{ExecInstance{std::move(*name), std::move(body->command), std::move(body->env)}};
    }
    if (seg[2] == "wait-port") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      auto body = parseSpec<WaitPortBody>(method_, target_.path, body_);
      if (!body) return fail(body.error());
      return Request{WaitInstancePort{std::move(*name), body->port, body->timeoutSeconds}};
    }
    return fail(noSuchPath());
  }

  static bool isBlank(std::string_view text) {
    return text.find_first_not_of(" \t\r\n") == std::string_view::npos;
  }

  // key=value pairs of the query; only `allowed` keys, each at most once.
  Result<std::map<std::string, std::string>> queryParams(
      std::initializer_list<std::string_view> allowed) const {
    std::map<std::string, std::string> out;
    std::string_view rest = target_.query.value_or("");
    while (!rest.empty()) {
      size_t amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
      if (pair.empty()) continue;
      size_t eq = pair.find('=');
      Result<std::string> key = percentDecode(pair.substr(0, eq), "query");
      if (!key) return fail(key.error());
      bool known = false;
      for (std::string_view a : allowed) known = known || a == *key;
      if (!known) return fail(invalidField(*key, "unknown query parameter \"{}\" on {}", *key, target_.path));
      if (out.contains(*key)) return fail(invalidField(*key, "query parameter \"{}\" given twice", *key));
      Result<std::string> value =
          percentDecode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), *key);
      if (!value) return fail(value.error());
      out.emplace(std::move(*key), std::move(*value));
    }
    return out;
  }

  Result<Request> routeKind(ObjectKind kind) const {
    switch (kind) {
      case ObjectKind::Vpc:
        return routeCollection<ObjectKind::Vpc, schema::VpcSpec>();
      case ObjectKind::Subnet:
        return routeCollection<ObjectKind::Subnet, schema::SubnetSpec>();
      case ObjectKind::RouteTable:
        return routeCollection<ObjectKind::RouteTable, schema::RouteTableSpec>();
      case ObjectKind::InternetGateway:
        return routeCollection<ObjectKind::InternetGateway, schema::InternetGatewaySpec>();
      case ObjectKind::NatGateway:
        return routeCollection<ObjectKind::NatGateway, schema::NatGatewaySpec>();
      case ObjectKind::SecurityGroup:
        return routeCollection<ObjectKind::SecurityGroup, schema::SecurityGroupSpec>();
      case ObjectKind::NetworkAcl:
        return routeCollection<ObjectKind::NetworkAcl, schema::NetworkAclSpec>();
    }
    return fail(noSuchPath());
  }

  template <ObjectKind K, class Spec>
  Result<Request> routeCollection() const {
    const auto& seg = target_.segments;
    if (seg.size() == 1) {
      if (Status s = check({"GET", "POST"}); !s) return fail(s.error());
      if (method_ == "GET") {
        Result<std::string> vpc = listFilter(K);
        if (!vpc) return fail(vpc.error());
        return Request{List<K>{std::move(*vpc)}};
      }
      if (Status s = noQuery(); !s) return fail(s.error());
      Result<Spec> spec = parseSpec<Spec>(method_, target_.path, body_);
      if (!spec) return fail(spec.error());
      return Request{Create<Spec>{std::move(*spec)}};
    }
    Result<std::string> name = percentDecode(seg[1], "name");
    if (!name) return fail(name.error());
    if constexpr (K == ObjectKind::Vpc) {
      if (seg.size() == 3 && seg[2] == "topology") {
        if (Status s = check({"GET"}); !s) return fail(s.error());
        if (Status s = noQuery(); !s) return fail(s.error());
        return Request{GetVpcTopology{std::move(*name)}};
      }
    }
    if (seg.size() == 2) {
      if constexpr (K == ObjectKind::Subnet) {
        if (Status s = check({"GET", "PATCH", "DELETE"}); !s) return fail(s.error());
        if (method_ == "PATCH") return updateSubnet(std::move(*name));
      } else {
        if (Status s = check({"GET", "DELETE"}); !s) return fail(s.error());
      }
      if (Status s = noQuery(); !s) return fail(s.error());
      if (method_ == "GET") return Request{Get<K>{std::move(*name)}};
      return Request{Delete<K>{std::move(*name)}};
    }
    if constexpr (K == ObjectKind::RouteTable) {
      if (seg[2] == "routes") return routeRoutes(std::move(*name));
    } else if constexpr (K == ObjectKind::SecurityGroup) {
      if (seg[2] == "rules") return routeSecurityGroupRules(std::move(*name));
    } else if constexpr (K == ObjectKind::NetworkAcl) {
      if (seg[2] == "rules") return routeNetworkAclRules(std::move(*name));
    }
    return fail(noSuchPath());
  }

  Result<Request> updateSubnet(std::string name) const {
    if (Status s = noQuery(); !s) return fail(s.error());
    Result<schema::SubnetUpdate> update = parseSpec<schema::SubnetUpdate>(method_, target_.path, body_);
    if (!update) return fail(update.error());
    if (!update->routeTable && !update->networkAcl && !update->mapPublicIp) {
      return fail(invalidField("body",
                               "nothing to change: give at least one of route_table, network_acl, "
                               "map_public_ip"));
    }
    return Request{UpdateSubnet{std::move(name), std::move(*update)}};
  }

  // POST .../routes; DELETE .../routes/<destination>, where the destination keeps its '/'.
  Result<Request> routeRoutes(std::string table) const {
    const auto& seg = target_.segments;
    if (seg.size() == 3) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      Result<schema::RouteSpec> spec = parseSpec<schema::RouteSpec>(method_, target_.path, body_);
      if (!spec) return fail(spec.error());
      return Request{AddRoute{std::move(table), std::move(*spec)}};
    }
    if (Status s = check({"DELETE"}); !s) return fail(s.error());
    if (Status s = noQuery(); !s) return fail(s.error());
    std::string joined;
    for (size_t i = 3; i < seg.size(); ++i) joined += fmt::format("{}{}", i > 3 ? "/" : "", seg[i]);
    Result<std::string> destination = percentDecode(joined, "destination");
    if (!destination) return fail(destination.error());
    return Request{DeleteRoute{std::move(table), std::move(*destination)}};
  }

  Result<Request> routeSecurityGroupRules(std::string group) const {
    const auto& seg = target_.segments;
    if (seg.size() == 3) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      auto spec = parseSpec<schema::SecurityGroupRuleSpec>(method_, target_.path, body_);
      if (!spec) return fail(spec.error());
      return Request{AddSecurityGroupRule{std::move(group), std::move(*spec)}};
    }
    if (seg.size() != 4) return fail(noSuchPath());
    if (Status s = check({"DELETE"}); !s) return fail(s.error());
    if (Status s = noQuery(); !s) return fail(s.error());
    Result<int64_t> id = pathInteger(seg[3], "id", "rule id");
    if (!id) return fail(id.error());
    return Request{DeleteSecurityGroupRule{std::move(group), *id}};
  }

  Result<Request> routeNetworkAclRules(std::string acl) const {
    const auto& seg = target_.segments;
    if (seg.size() == 3) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      auto spec = parseSpec<schema::NetworkAclRuleSpec>(method_, target_.path, body_);
      if (!spec) return fail(spec.error());
      return Request{AddNetworkAclRule{std::move(acl), std::move(*spec)}};
    }
    if (seg.size() != 5) return fail(noSuchPath());
    if (Status s = check({"DELETE"}); !s) return fail(s.error());
    if (Status s = noQuery(); !s) return fail(s.error());
    Result<std::string> direction = percentDecode(seg[3], "direction");
    if (!direction) return fail(direction.error());
    Result<int64_t> number = pathInteger(seg[4], "number", "rule number");
    if (!number) return fail(number.error());
    return Request{DeleteNetworkAclRule{std::move(acl), std::move(*direction), *number}};
  }

  // The method must be one of `allowed`; GET and DELETE carry no body.
  Status check(std::initializer_list<std::string_view> allowed) const {
    bool ok = false;
    std::string list;
    for (std::string_view m : allowed) {
      ok = ok || m == method_;
      list += fmt::format("{}{}", list.empty() ? "" : ", ", m);
    }
    if (!ok) {
      return fail(
          invalidField("method", "method {} not allowed on {}; allowed: {}", method_, target_.path, list));
    }
    if ((method_ == "GET" || method_ == "DELETE") && !body_.empty()) {
      return fail(invalidField("body", "{} {} takes no request body", method_, target_.path));
    }
    return {};
  }

  Status noQuery() const {
    if (target_.query && !target_.query->empty()) {
      return fail(invalidField("query", "{} {} takes no query parameters (got \"?{}\")", method_,
                               target_.path, *target_.query));
    }
    return {};
  }

  // ?vpc=NAME on a list; vpcs themselves are not filtered, so the parameter is refused there.
  Result<std::string> listFilter(ObjectKind kind) const {
    std::string vpc;
    bool seen = false;
    std::string_view rest = target_.query.value_or("");
    while (!rest.empty()) {
      size_t amp = rest.find('&');
      std::string_view pair = rest.substr(0, amp);
      rest = amp == std::string_view::npos ? std::string_view{} : rest.substr(amp + 1);
      if (pair.empty()) continue;
      size_t eq = pair.find('=');
      Result<std::string> key = percentDecode(pair.substr(0, eq), "query");
      if (!key) return fail(key.error());
      if (*key != "vpc" || kind == ObjectKind::Vpc) {
        return fail(invalidField(*key, "unknown query parameter \"{}\" on {} ({})", *key, target_.path,
                                 kind == ObjectKind::Vpc ? "vpcs take no filter" : "the only filter is vpc"));
      }
      if (seen) return fail(invalidField("vpc", "query parameter \"vpc\" given twice"));
      seen = true;
      Result<std::string> value =
          percentDecode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), "vpc");
      if (!value) return fail(value.error());
      vpc = std::move(*value);
    }
    return vpc;
  }

  static Result<int64_t> pathInteger(std::string_view text, std::string_view field, std::string_view what) {
    int64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc{} || end != text.data() + text.size()) {
      return fail(
          invalidField(std::string(field), "{} \"{}\" in the path is not a whole number", what, text));
    }
    return value;
  }

  Error noSuchPath() const { return notFound("no such API path: {} {}", method_, target_.path); }

  std::string_view method_;
  ParsedTarget target_;
  std::string_view body_;
};

std::string namePath(ObjectKind kind, std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, collectionName(kind), percentEncode(name));
}

std::string imagePath(std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, kImages, percentEncode(name));
}

std::string instancePath(std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, kInstances, percentEncode(name));
}

template <class... Visitors>
struct Overloaded : Visitors... {
  using Visitors::operator()...;
};
// C++20 deduces this for aggregates; clang before 17 (the fuzz build's) needs it spelled out.
template <class... Visitors>
Overloaded(Visitors...) -> Overloaded<Visitors...>;

}  // namespace

std::string_view collectionName(ObjectKind kind) {
  switch (kind) {
    case ObjectKind::Vpc:
      return "vpcs";
    case ObjectKind::Subnet:
      return "subnets";
    case ObjectKind::RouteTable:
      return "route-tables";
    case ObjectKind::InternetGateway:
      return "internet-gateways";
    case ObjectKind::NatGateway:
      return "nat-gateways";
    case ObjectKind::SecurityGroup:
      return "security-groups";
    case ObjectKind::NetworkAcl:
      return "network-acls";
  }
  return "unknown";
}

Result<Request> parseRequest(std::string_view method, std::string_view target, std::string_view body) {
  try {
    ParsedTarget parsed;
    size_t question = target.find('?');
    parsed.path = target.substr(0, question);
    if (question != std::string_view::npos) parsed.query = target.substr(question + 1);

    auto noSuchPath = [&] { return notFound("no such API path: {} {}", method, parsed.path); };
    std::string prefix = fmt::format("{}/", kApiPrefix);
    if (!parsed.path.starts_with(prefix)) return fail(noSuchPath());
    std::string_view rest = parsed.path.substr(prefix.size());
    while (true) {
      size_t slash = rest.find('/');
      std::string_view segment = rest.substr(0, slash);
      // "//" and a trailing '/' name nothing: refusing them keeps every path spelled one way.
      if (segment.empty()) return fail(noSuchPath());
      parsed.segments.push_back(segment);
      if (slash == std::string_view::npos) break;
      rest = rest.substr(slash + 1);
    }
    return Router(method, std::move(parsed), body).route();
  } catch (const std::exception& e) {
    return fail(internalError("parse request {} {}: {}", method, target, e.what()));
  }
}

std::string base64Encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t chunk = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) chunk |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    if (i + 2 < bytes.size()) chunk |= static_cast<unsigned char>(bytes[i + 2]);
    out += kAlphabet[(chunk >> 18) & 63];
    out += kAlphabet[(chunk >> 12) & 63];
    out += i + 1 < bytes.size() ? kAlphabet[(chunk >> 6) & 63] : '=';
    out += i + 2 < bytes.size() ? kAlphabet[chunk & 63] : '=';
  }
  return out;
}

Result<std::string> base64Decode(std::string_view text, std::string_view field) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  if (text.size() % 4 != 0) {
    return fail(
        invalidField(std::string(field), "not base64: length {} is not a multiple of 4", text.size()));
  }
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    bool last = i + 4 == text.size();
    int padding = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    uint32_t chunk = 0;
    for (size_t j = 0; j < 4; ++j) {
      int v = j >= 4 - static_cast<size_t>(padding) ? 0 : value(text[i + j]);
      if (v < 0)
        return fail(invalidField(std::string(field), "not base64: bad character at offset {}", i + j));
      chunk = chunk << 6 | static_cast<uint32_t>(v);
    }
    out += static_cast<char>(chunk >> 16 & 0xFF);
    if (padding < 2) out += static_cast<char>(chunk >> 8 & 0xFF);
    if (padding < 1) out += static_cast<char>(chunk & 0xFF);
  }
  return out;
}

HttpRequest renderRequest(const Request& request) {
  auto collection = [](ObjectKind kind) { return fmt::format("{}/{}", kApiPrefix, collectionName(kind)); };
  return std::visit(
      Overloaded{
          [&](const GetInfo&) {
            return HttpRequest{"GET", fmt::format("{}/info", kApiPrefix), ""};
          },
          [&]<ObjectKind K>(const List<K>& r) {
            std::string target = collection(K);
            if (K != ObjectKind::Vpc && !r.vpc.empty()) target += "?vpc=" + percentEncode(r.vpc);
            return HttpRequest{"GET", std::move(target), ""};
          },
          [&]<ObjectKind K>(const Get<K>& r) {
            return HttpRequest{"GET", namePath(K, r.name), ""};
          },
          [&]<ObjectKind K>(const Delete<K>& r) {
            return HttpRequest{"DELETE", namePath(K, r.name), ""};
          },
          [&]<class Spec>(const Create<Spec>& r) {
            return HttpRequest{"POST", collection(SpecKind<Spec>::value), specJson(r.spec).dump()};
          },
          [&](const UpdateSubnet& r) {
            return HttpRequest{"PATCH", namePath(ObjectKind::Subnet, r.name), specJson(r.update).dump()};
          },
          [&](const AddRoute& r) {
            return HttpRequest{"POST", namePath(ObjectKind::RouteTable, r.table) + "/routes",
                               specJson(r.spec).dump()};
          },
          [&](const DeleteRoute& r) {
            return HttpRequest{"DELETE",
                               fmt::format("{}/routes/{}", namePath(ObjectKind::RouteTable, r.table),
                                           percentEncode(r.destination, "/")),
                               ""};
          },
          [&](const AddSecurityGroupRule& r) {
            return HttpRequest{"POST", namePath(ObjectKind::SecurityGroup, r.group) + "/rules",
                               specJson(r.spec).dump()};
          },
          [&](const DeleteSecurityGroupRule& r) {
            return HttpRequest{
                "DELETE", fmt::format("{}/rules/{}", namePath(ObjectKind::SecurityGroup, r.group), r.id), ""};
          },
          [&](const AddNetworkAclRule& r) {
            return HttpRequest{"POST", namePath(ObjectKind::NetworkAcl, r.acl) + "/rules",
                               specJson(r.spec).dump()};
          },
          [&](const DeleteNetworkAclRule& r) {
            return HttpRequest{"DELETE",
                               fmt::format("{}/rules/{}/{}", namePath(ObjectKind::NetworkAcl, r.acl),
                                           percentEncode(r.direction), r.number),
                               ""};
          },
          [&](const RunInstance& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kInstances), specJson(r.spec).dump()};
          },
          [&](const ListInstances&) {
            return HttpRequest{"GET", fmt::format("{}/{}", kApiPrefix, kInstances), ""};
          },
          [&](const GetInstance& r) {
            return HttpRequest{"GET", instancePath(r.name) + (r.showEnv ? "?show_env=true" : ""), ""};
          },
          [&](const StopInstance& r) {
            return HttpRequest{"POST", instancePath(r.name) + "/stop",
                               json{{"grace_seconds", r.graceSeconds}}.dump()};
          },
          [&](const StartInstance& r) {
            return HttpRequest{"POST", instancePath(r.name) + "/start", ""};
          },
          [&](const RemoveInstance& r) {
            return HttpRequest{"DELETE", instancePath(r.name) + (r.force ? "?force=true" : ""), ""};
          },
          [&](const GetInstanceLogs& r) {
            return HttpRequest{"GET", fmt::format("{}/logs?offset={}", instancePath(r.name), r.offset), ""};
          },
          [&](const GetVpcTopology& r) {
            return HttpRequest{"GET", namePath(ObjectKind::Vpc, r.vpc) + "/topology", ""};
          },
          [&](const ExecInstance& r) {
            return HttpRequest{"POST", instancePath(r.name) + "/exec",
                               json{{"command", r.command}, {"env", r.env}}.dump()};
          },
          [&](const WaitInstancePort& r) {
            return HttpRequest{"POST", instancePath(r.name) + "/wait-port",
                               json{{"port", r.port}, {"timeout_seconds", r.timeoutSeconds}}.dump()};
          },
          [&](const SaveComparison& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kComparisons), r.result.dump()};
          },
          [&](const ListComparisons&) {
            return HttpRequest{"GET", fmt::format("{}/{}", kApiPrefix, kComparisons), ""};
          },
          [&](const GetComparison& r) {
            return HttpRequest{"GET", fmt::format("{}/{}/{}", kApiPrefix, kComparisons, percentEncode(r.id)),
                               ""};
          },
          [&](const GetDashboard&) {
            return HttpRequest{"GET", fmt::format("{}/{}", kApiPrefix, kDashboard), ""};
          },
          [&](const ListImages&) {
            return HttpRequest{"GET", fmt::format("{}/{}", kApiPrefix, kImages), ""};
          },
          [&](const GetImage& r) {
            return HttpRequest{"GET", imagePath(r.name), ""};
          },
          [&](const RemoveImage& r) {
            return HttpRequest{"DELETE", imagePath(r.name), ""};
          },
          [&](const PullImage& r) {
            return HttpRequest{
                "POST", fmt::format("{}/{}/pull", kApiPrefix, kImages),
                json{{"reference", r.reference}, {"insecure", r.insecure}, {"name", r.name}}.dump()};
          },
          [&](const ImportImage& r) {
            return HttpRequest{"POST", fmt::format("{}/{}/import", kApiPrefix, kImages),
                               json{{"path", r.path}, {"name", r.name}}.dump()};
          },
          [&](const BuildImage& r) {
            return HttpRequest{
                "POST", fmt::format("{}/{}/build", kApiPrefix, kImages),
                json{{"name", r.name}, {"debian", r.debian}, {"cmd", r.cmd}, {"file", r.file}}.dump()};
          },
          [&](const TraceCapture& r) {
            return HttpRequest{
                "POST", fmt::format("{}/{}", kApiPrefix, kTrace),
                json{{"target", r.target}, {"filter", r.filter}, {"count", r.count}, {"seconds", r.seconds}}
                    .dump()};
          },
      },
      request);
}

}  // namespace corral::api
