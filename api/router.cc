// The /v1 path table: HTTP method + target (+ the body, through api/body_codec.h) → api::Request. Wrong
// methods, queries and path values are refused naming what is wrong.
#include <charconv>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "api/api.h"
#include "api/body_codec.h"
#include "api/encoding.h"
#include "api/paths.h"

namespace corral::api {
namespace {

using nlohmann::json;

constexpr ObjectKind kAllKinds[] = {
    ObjectKind::Vpc,        ObjectKind::Subnet,        ObjectKind::RouteTable, ObjectKind::InternetGateway,
    ObjectKind::NatGateway, ObjectKind::SecurityGroup, ObjectKind::NetworkAcl, ObjectKind::Peering};

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
    if (!seg.empty() && seg[0] == kGroups) return routeGroups();
    if (seg.size() == 1 && seg[0] == kTrace) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      auto trace = parseBody<TraceCapture>(method_, target_.path, body_);
      if (!trace) return fail(trace.error());
      return Request{std::move(*trace)};
    }
    if (seg.size() == 1 && seg[0] == kReach) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      auto reach = parseBody<ReachAnalysis>(method_, target_.path, body_);
      if (!reach) return fail(reach.error());
      return Request{std::move(*reach)};
    }
    if (seg.size() == 1 && seg[0] == kFlowLogs) return routeFlowLogs();
    if (!seg.empty() && seg[0] == kLoadBalancers) return routeLoadBalancers();
    if (!seg.empty() && seg[0] == kTargetGroups) return routeTargetGroups();
    if (!seg.empty() && seg[0] == kComparisons) return routeComparisons();
    if (!seg.empty() && seg[0] == kVmSnapshots) return routeVmSnapshots();
    if (!seg.empty() && seg[0] == kCluster) return routeCluster();
    if (seg.size() == 1 && seg[0] == kDashboard) {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      return Request{GetDashboard{}};
    }
    return fail(noSuchPath());
  }

 private:
  // ?vpc=NAME, optional: the only filter of a load balancer or target group list.
  Result<std::string> vpcFilter() const {
    auto params = queryParams({"vpc"});
    if (!params) return fail(params.error());
    auto it = params->find("vpc");
    return it == params->end() ? std::string() : it->second;
  }

  template <class Spec>
  Result<Spec> body() const {
    if (Status s = noQuery(); !s) return fail(s.error());
    return parseBody<Spec>(method_, target_.path, body_);
  }

  // /v1/load-balancers[/NAME[/listeners[/PORT[/rules[/PRIORITY]|/firewall[/ID]]]]]
  Result<Request> routeLoadBalancers() const {
    const auto& seg = target_.segments;
    if (seg.size() == 1) {
      if (Status s = check({"GET", "POST"}); !s) return fail(s.error());
      if (method_ == "GET") {
        auto vpc = vpcFilter();
        if (!vpc) return fail(vpc.error());
        return Request{ListLoadBalancers{std::move(*vpc)}};
      }
      auto spec = body<schema::LoadBalancerSpec>();
      if (!spec) return fail(spec.error());
      return Request{CreateLoadBalancer{std::move(*spec)}};
    }
    Result<std::string> name = percentDecode(seg[1], "name");
    if (!name) return fail(name.error());
    if (seg.size() == 2) {
      if (Status s = check({"GET", "DELETE"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      if (method_ == "GET") return Request{GetLoadBalancer{std::move(*name)}};
      return Request{DeleteLoadBalancer{std::move(*name)}};
    }
    if (seg[2] != "listeners") return fail(noSuchPath());
    if (seg.size() == 3) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      auto spec = body<schema::ListenerSpec>();
      if (!spec) return fail(spec.error());
      return Request{AddListener{std::move(*name), std::move(*spec)}};
    }
    Result<int64_t> port = pathInteger(seg[3], "port", "listener port");
    if (!port) return fail(port.error());
    if (seg.size() == 4) {
      if (Status s = check({"DELETE"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      return Request{DeleteListener{std::move(*name), *port}};
    }
    const bool rules = seg[4] == "rules";
    if (!rules && seg[4] != "firewall") return fail(noSuchPath());
    if (seg.size() == 5) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (rules) {
        auto spec = body<schema::ListenerRuleSpec>();
        if (!spec) return fail(spec.error());
        return Request{AddListenerRule{std::move(*name), *port, std::move(*spec)}};
      }
      auto spec = body<schema::FirewallRuleSpec>();
      if (!spec) return fail(spec.error());
      return Request{AddFirewallRule{std::move(*name), *port, std::move(*spec)}};
    }
    if (seg.size() != 6) return fail(noSuchPath());
    if (Status s = check({"DELETE"}); !s) return fail(s.error());
    if (Status s = noQuery(); !s) return fail(s.error());
    Result<int64_t> key =
        pathInteger(seg[5], rules ? "priority" : "id", rules ? "rule priority" : "firewall rule id");
    if (!key) return fail(key.error());
    if (rules) return Request{DeleteListenerRule{std::move(*name), *port, *key}};
    return Request{DeleteFirewallRule{std::move(*name), *port, *key}};
  }

  // /v1/target-groups[/NAME[/register|/deregister]]
  Result<Request> routeTargetGroups() const {
    const auto& seg = target_.segments;
    if (seg.size() == 1) {
      if (Status s = check({"GET", "POST"}); !s) return fail(s.error());
      if (method_ == "GET") {
        auto vpc = vpcFilter();
        if (!vpc) return fail(vpc.error());
        return Request{ListTargetGroups{std::move(*vpc)}};
      }
      auto spec = body<schema::TargetGroupSpec>();
      if (!spec) return fail(spec.error());
      return Request{CreateTargetGroup{std::move(*spec)}};
    }
    Result<std::string> name = percentDecode(seg[1], "name");
    if (!name) return fail(name.error());
    if (seg.size() == 2) {
      if (Status s = check({"GET", "DELETE"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      if (method_ == "GET") return Request{GetTargetGroup{std::move(*name)}};
      return Request{DeleteTargetGroup{std::move(*name)}};
    }
    if (seg.size() != 3 || (seg[2] != "register" && seg[2] != "deregister")) return fail(noSuchPath());
    if (Status s = check({"POST"}); !s) return fail(s.error());
    auto targets = body<TargetsBody>();
    if (!targets) return fail(targets.error());
    if (seg[2] == "register") return Request{RegisterTargets{std::move(*name), std::move(targets->targets)}};
    return Request{DeregisterTargets{std::move(*name), std::move(targets->targets)}};
  }

  Result<Request> routeFlowLogs() const {
    if (Status s = check({"GET"}); !s) return fail(s.error());
    auto params = queryParams({"vpc", "subnet", "instance", "name", "action", "limit", "follow"});
    if (!params) return fail(params.error());
    GetFlowLogs request;
    auto take = [&](const std::string& key, std::string& into) {
      if (auto it = params->find(key); it != params->end()) into = it->second;
    };
    take("vpc", request.vpc);
    take("subnet", request.subnet);
    take("instance", request.instance);
    take("name", request.name);
    take("action", request.action);
    if (auto it = params->find("limit"); it != params->end()) {
      int64_t limit = 0;
      const std::string& text = it->second;
      auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), limit);
      if (ec != std::errc() || end != text.data() + text.size())
        return fail(invalidField("limit", "query parameter limit must be a number, got \"{}\"", text));
      request.limit = limit;
    }
    if (auto it = params->find("follow"); it != params->end()) {
      if (it->second == "true" || it->second == "1") {
        request.follow = true;
      } else if (it->second != "false" && it->second != "0") {
        return fail(
            invalidField("follow", "query parameter follow must be true or false, got \"{}\"", it->second));
      }
    }
    return Request{std::move(request)};
  }

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

  // /v1/cluster, /v1/cluster/join, /v1/cluster/leave, /v1/cluster/token, /v1/cluster/hosts[/NAME]
  Result<Request> routeCluster() const {
    const auto& seg = target_.segments;
    if (seg.size() == 1) {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      auto init = body<InitCluster>();
      if (!init) return fail(init.error());
      return Request{std::move(*init)};
    }
    if (seg.size() == 2 && seg[1] == "join") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      auto join = body<JoinCluster>();
      if (!join) return fail(join.error());
      return Request{std::move(*join)};
    }
    if (seg.size() == 2 && seg[1] == "leave") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      auto empty = body<EmptyBody>();
      if (!empty) return fail(empty.error());
      return Request{LeaveCluster{}};
    }
    if (seg.size() == 2 && seg[1] == "token") {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      return Request{GetClusterToken{}};
    }
    if (seg.size() == 2 && seg[1] == "hosts") {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      return Request{ListClusterHosts{}};
    }
    if (seg.size() == 3 && seg[1] == "hosts") {
      if (Status s = check({"PATCH"}); !s) return fail(s.error());
      Result<std::string> name = percentDecode(seg[2], "name");
      if (!name) return fail(name.error());
      auto update = body<ClusterHostBody>();
      if (!update) return fail(update.error());
      return Request{UpdateClusterHost{std::move(*name), std::move(update->az)}};
    }
    return fail(noSuchPath());
  }

  Result<Request> routeVmSnapshots() const {
    const auto& seg = target_.segments;
    if (Status s = noQuery(); !s) return fail(s.error());
    if (seg.size() == 1) {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      return Request{ListVmSnapshots{}};
    }
    if (seg.size() != 2) return fail(noSuchPath());
    if (Status s = check({"DELETE"}); !s) return fail(s.error());
    Result<std::string> key = percentDecode(seg[1], "key");
    if (!key) return fail(key.error());
    return Request{RemoveVmSnapshot{std::move(*key)}};
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
        auto spec = parseBody<Spec>(method_, target_.path, body_);
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
      if (method_ == "GET") {
        auto params = queryParams({"view", "scope"});
        if (!params) return fail(params.error());
        bool summary = false;
        bool hostOnly = false;
        if (auto it = params->find("scope"); it != params->end()) {
          if (it->second != "host" && it->second != "cluster") {
            return fail(invalidField("scope", "query parameter scope must be host or cluster, got \"{}\"",
                                     it->second));
          }
          hostOnly = it->second == "host";
        }
        if (auto it = params->find("view"); it != params->end()) {
          if (it->second != "summary" && it->second != "full") {
            return fail(
                invalidField("view", "query parameter view must be summary or full, got \"{}\"", it->second));
          }
          summary = it->second == "summary";
        }
        return Request{ListInstances{summary, hostOnly}};
      }
      if (Status s = noQuery(); !s) return fail(s.error());
      auto spec = parseBody<schema::InstanceSpec>(method_, target_.path, body_);
      if (!spec) return fail(spec.error());
      return Request{RunInstance{std::move(*spec)}};
    }
    // POST names an operation on many (an instance may be called "remove": GET and DELETE name instances).
    if (seg.size() == 2 && seg[1] == "remove" && method_ == "POST") {
      if (Status s = noQuery(); !s) return fail(s.error());
      auto body = parseBody<RemoveInstances>(method_, target_.path, body_);
      if (!body) return fail(body.error());
      return Request{std::move(*body)};
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
        auto parsed = parseBody<StopBody>(method_, target_.path, body_);
        if (!parsed) return fail(parsed.error());
        body = *parsed;
      }
      return Request{StopInstance{std::move(*name), body.graceSeconds, body.save}};
    }
    if (seg[2] == "start") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      if (!isBlank(body_)) {
        auto parsed = parseBody<EmptyBody>(method_, target_.path, body_);
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
      auto body = parseBody<ExecBody>(method_, target_.path, body_);
      if (!body) return fail(body.error());
      return Request{ExecInstance{std::move(*name), std::move(body->command), std::move(body->env)}};
    }
    if (seg[2] == "wait-port") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      auto body = parseBody<WaitPortBody>(method_, target_.path, body_);
      if (!body) return fail(body.error());
      return Request{WaitInstancePort{std::move(*name), body->port, body->timeoutSeconds}};
    }
    return fail(noSuchPath());
  }

  // /v1/groups, /v1/groups/NAME (GET, PATCH, DELETE?force=), /v1/groups/NAME/{events,policy}.
  Result<Request> routeGroups() const {
    const auto& seg = target_.segments;
    if (seg.size() == 1) {
      if (Status s = check({"GET", "POST"}); !s) return fail(s.error());
      if (Status s = noQuery(); !s) return fail(s.error());
      if (method_ == "GET") return Request{ListGroups{}};
      auto spec = parseBody<schema::GroupSpec>(method_, target_.path, body_);
      if (!spec) return fail(spec.error());
      return Request{CreateGroup{std::move(*spec)}};
    }
    Result<std::string> name = percentDecode(seg[1], "name");
    if (!name) return fail(name.error());
    if (seg.size() == 2) {
      if (Status s = check({"GET", "PATCH", "DELETE"}); !s) return fail(s.error());
      if (method_ == "DELETE") {
        auto params = queryParams({"force"});
        if (!params) return fail(params.error());
        bool force = false;
        if (auto it = params->find("force"); it != params->end()) {
          if (it->second != "true" && it->second != "false")
            return fail(
                invalidField("force", "query parameter force must be true or false, got \"{}\"", it->second));
          force = it->second == "true";
        }
        return Request{RemoveGroup{std::move(*name), force}};
      }
      if (Status s = noQuery(); !s) return fail(s.error());
      if (method_ == "GET") return Request{GetGroup{std::move(*name)}};
      auto body = parseBody<ScaleBody>(method_, target_.path, body_);
      if (!body) return fail(body.error());
      return Request{ScaleGroup{std::move(*name), body->desired}};
    }
    if (seg.size() != 3) return fail(noSuchPath());
    if (Status s = noQuery(); !s) return fail(s.error());
    if (seg[2] == "events") {
      if (Status s = check({"GET"}); !s) return fail(s.error());
      return Request{GetGroupEvents{std::move(*name)}};
    }
    if (seg[2] == "policy") {
      if (Status s = check({"POST"}); !s) return fail(s.error());
      auto body = parseBody<PolicyBody>(method_, target_.path, body_);
      if (!body) return fail(body.error());
      return Request{SetGroupPolicy{std::move(*name), body->policy}};
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
      case ObjectKind::Peering:
        return routeCollection<ObjectKind::Peering, schema::PeeringSpec>();
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
      Result<Spec> spec = parseBody<Spec>(method_, target_.path, body_);
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
    Result<schema::SubnetUpdate> update = parseBody<schema::SubnetUpdate>(method_, target_.path, body_);
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
      Result<schema::RouteSpec> spec = parseBody<schema::RouteSpec>(method_, target_.path, body_);
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
      auto spec = parseBody<schema::SecurityGroupRuleSpec>(method_, target_.path, body_);
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
      auto spec = parseBody<schema::NetworkAclRuleSpec>(method_, target_.path, body_);
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
    case ObjectKind::Peering:
      return "peerings";
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

}  // namespace corral::api
