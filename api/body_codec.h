// Request bodies: JSON ⇄ the request types, for the router (api/router.cc) and the request renderer
// (api/request_render.cc). Malformed JSON, a JSON type mismatch, an unknown, duplicate or missing field:
// InvalidArgument naming the field. Values are not validated here (that is the model's job).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "api/api.h"
#include "core/error.h"

namespace corral::api {

// Bodies of instance operations whose request types carry the name from the path as well.
struct StopBody {  // POST /v1/instances/NAME/stop; absent fields keep their defaults
  int64_t graceSeconds = 10;
  bool save = false;
};
struct EmptyBody {};  // POST /v1/instances/NAME/start: nothing, or {}
struct ExecBody {     // POST /v1/instances/NAME/exec
  std::vector<std::string> command;
  std::vector<std::string> env;
};
struct TargetsBody {  // POST /v1/target-groups/NAME/register and .../deregister
  std::vector<std::string> targets;
};
struct ScaleBody {  // PATCH /v1/groups/NAME
  int64_t desired = 0;
};
// POST /v1/groups/NAME/policy: {"cpu_target": 50} or {"requests_per_target": 100} (one at a time); null or
// absent removes the policy.
struct PolicyBody {
  std::optional<schema::ScalingPolicy> policy;
};
struct ClusterHostBody {  // PATCH /v1/cluster/hosts/NAME
  std::string az;
};
struct WaitPortBody {  // POST /v1/instances/NAME/wait-port
  int64_t port = 0;
  int64_t timeoutSeconds = 60;
};

// The body of `method path` as a JSON object: refused when blank, not JSON, not an object, or when a key
// appears twice in one object (the field is that key's path, e.g. "summary.vm").
Result<nlohmann::json> parseBodyObject(std::string_view method, std::string_view path, std::string_view body);

// The body of `method path` read into a Body: every create spec, SubnetUpdate, RouteSpec, the rule specs,
// InstanceSpec, StopBody, EmptyBody, ExecBody, WaitPortBody, RemoveInstances, TraceCapture, ReachAnalysis,
// PullImage, ImportImage, BuildImage, the load balancer specs, TargetsBody.
template <class Body>
Result<Body> parseBody(std::string_view method, std::string_view path, std::string_view body);

// parseBody's inverse: the JSON a client sends.
nlohmann::json bodyJson(const schema::VpcSpec& body);
nlohmann::json bodyJson(const schema::SubnetSpec& body);
nlohmann::json bodyJson(const schema::SubnetUpdate& body);
nlohmann::json bodyJson(const schema::RouteTableSpec& body);
nlohmann::json bodyJson(const schema::RouteSpec& body);
nlohmann::json bodyJson(const schema::InternetGatewaySpec& body);
nlohmann::json bodyJson(const schema::NatGatewaySpec& body);
nlohmann::json bodyJson(const schema::PeeringSpec& body);
nlohmann::json bodyJson(const schema::SecurityGroupSpec& body);
nlohmann::json bodyJson(const schema::SecurityGroupRuleSpec& body);
nlohmann::json bodyJson(const schema::NetworkAclSpec& body);
nlohmann::json bodyJson(const schema::NetworkAclRuleSpec& body);
nlohmann::json bodyJson(const schema::InstanceSpec& body);
nlohmann::json bodyJson(const schema::GroupSpec& body);
nlohmann::json bodyJson(const ScaleBody& body);
nlohmann::json bodyJson(const PolicyBody& body);
nlohmann::json bodyJson(const StopBody& body);
nlohmann::json bodyJson(const ExecBody& body);
nlohmann::json bodyJson(const WaitPortBody& body);
nlohmann::json bodyJson(const InitCluster& body);
nlohmann::json bodyJson(const JoinCluster& body);
nlohmann::json bodyJson(const ClusterHostBody& body);
nlohmann::json bodyJson(const RemoveInstances& body);
nlohmann::json bodyJson(const TraceCapture& body);
nlohmann::json bodyJson(const ReachAnalysis& body);
nlohmann::json bodyJson(const PullImage& body);
nlohmann::json bodyJson(const ImportImage& body);
nlohmann::json bodyJson(const BuildImage& body);
nlohmann::json bodyJson(const schema::LoadBalancerSpec& body);
nlohmann::json bodyJson(const schema::ListenerSpec& body);
nlohmann::json bodyJson(const schema::ListenerRuleSpec& body);
nlohmann::json bodyJson(const schema::FirewallRuleSpec& body);
nlohmann::json bodyJson(const schema::TargetGroupSpec& body);
nlohmann::json bodyJson(const TargetsBody& body);

}  // namespace corral::api
