// Request → HTTP for the client: the exact inverse of the router (api/router.cc), bodies by the body codec
// (api/body_codec.h).
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>

#include "api/api.h"
#include "api/body_codec.h"
#include "api/encoding.h"
#include "api/paths.h"

namespace corral::api {
namespace {

// The collection each create spec is posted to.
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
template <>
struct SpecKind<schema::PeeringSpec> : std::integral_constant<ObjectKind, ObjectKind::Peering> {};

std::string namePath(ObjectKind kind, std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, collectionName(kind), percentEncode(name));
}

std::string imagePath(std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, kImages, percentEncode(name));
}

std::string balancerPath(std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, kLoadBalancers, percentEncode(name));
}

std::string listenerPath(std::string_view balancer, int64_t port) {
  return fmt::format("{}/listeners/{}", balancerPath(balancer), port);
}

std::string targetGroupPath(std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, kTargetGroups, percentEncode(name));
}

std::string withVpc(std::string path, std::string_view vpc) {
  return vpc.empty() ? path : path + "?vpc=" + percentEncode(vpc);
}

std::string instancePath(std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, kInstances, percentEncode(name));
}

std::string groupPath(std::string_view name) {
  return fmt::format("{}/{}/{}", kApiPrefix, kGroups, percentEncode(name));
}

template <class... Visitors>
struct Overloaded : Visitors... {
  using Visitors::operator()...;
};
// C++20 deduces this for aggregates; clang before 17 (the fuzz build's) needs it spelled out.
template <class... Visitors>
Overloaded(Visitors...) -> Overloaded<Visitors...>;

}  // namespace

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
            return HttpRequest{"POST", collection(SpecKind<Spec>::value), bodyJson(r.spec).dump()};
          },
          [&](const UpdateSubnet& r) {
            return HttpRequest{"PATCH", namePath(ObjectKind::Subnet, r.name), bodyJson(r.update).dump()};
          },
          [&](const AddRoute& r) {
            return HttpRequest{"POST", namePath(ObjectKind::RouteTable, r.table) + "/routes",
                               bodyJson(r.spec).dump()};
          },
          [&](const DeleteRoute& r) {
            return HttpRequest{"DELETE",
                               fmt::format("{}/routes/{}", namePath(ObjectKind::RouteTable, r.table),
                                           percentEncode(r.destination, "/")),
                               ""};
          },
          [&](const AddSecurityGroupRule& r) {
            return HttpRequest{"POST", namePath(ObjectKind::SecurityGroup, r.group) + "/rules",
                               bodyJson(r.spec).dump()};
          },
          [&](const DeleteSecurityGroupRule& r) {
            return HttpRequest{
                "DELETE", fmt::format("{}/rules/{}", namePath(ObjectKind::SecurityGroup, r.group), r.id), ""};
          },
          [&](const AddNetworkAclRule& r) {
            return HttpRequest{"POST", namePath(ObjectKind::NetworkAcl, r.acl) + "/rules",
                               bodyJson(r.spec).dump()};
          },
          [&](const DeleteNetworkAclRule& r) {
            return HttpRequest{"DELETE",
                               fmt::format("{}/rules/{}/{}", namePath(ObjectKind::NetworkAcl, r.acl),
                                           percentEncode(r.direction), r.number),
                               ""};
          },
          [&](const RunInstance& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kInstances), bodyJson(r.spec).dump()};
          },
          [&](const ListInstances& r) {
            std::string query = r.summary ? "?view=summary" : "";
            if (r.hostOnly) query += query.empty() ? "?scope=host" : "&scope=host";
            return HttpRequest{"GET", fmt::format("{}/{}{}", kApiPrefix, kInstances, query), ""};
          },
          [&](const GetInstance& r) {
            return HttpRequest{"GET", instancePath(r.name) + (r.showEnv ? "?show_env=true" : ""), ""};
          },
          [&](const StopInstance& r) {
            return HttpRequest{"POST", instancePath(r.name) + "/stop",
                               bodyJson(StopBody{r.graceSeconds, r.save}).dump()};
          },
          [&](const StartInstance& r) {
            return HttpRequest{"POST", instancePath(r.name) + "/start", ""};
          },
          [&](const RemoveInstance& r) {
            return HttpRequest{"DELETE", instancePath(r.name) + (r.force ? "?force=true" : ""), ""};
          },
          [&](const RemoveInstances& r) {
            return HttpRequest{"POST", fmt::format("{}/{}/remove", kApiPrefix, kInstances),
                               bodyJson(r).dump()};
          },
          [&](const GetInstanceLogs& r) {
            return HttpRequest{"GET", fmt::format("{}/logs?offset={}", instancePath(r.name), r.offset), ""};
          },
          [&](const GetVpcTopology& r) {
            return HttpRequest{"GET", namePath(ObjectKind::Vpc, r.vpc) + "/topology", ""};
          },
          [&](const ExecInstance& r) {
            return HttpRequest{"POST", instancePath(r.name) + "/exec",
                               bodyJson(ExecBody{r.command, r.env}).dump()};
          },
          [&](const WaitInstancePort& r) {
            return HttpRequest{"POST", instancePath(r.name) + "/wait-port",
                               bodyJson(WaitPortBody{r.port, r.timeoutSeconds}).dump()};
          },
          [&](const CreateGroup& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kGroups), bodyJson(r.spec).dump()};
          },
          [&](const ListGroups&) {
            return HttpRequest{"GET", fmt::format("{}/{}", kApiPrefix, kGroups), ""};
          },
          [&](const GetGroup& r) {
            return HttpRequest{"GET", groupPath(r.name), ""};
          },
          [&](const RemoveGroup& r) {
            return HttpRequest{"DELETE", groupPath(r.name) + (r.force ? "?force=true" : ""), ""};
          },
          [&](const ScaleGroup& r) {
            return HttpRequest{"PATCH", groupPath(r.name), bodyJson(ScaleBody{r.desired}).dump()};
          },
          [&](const GetGroupEvents& r) {
            return HttpRequest{"GET", groupPath(r.name) + "/events", ""};
          },
          [&](const SetGroupPolicy& r) {
            return HttpRequest{"POST", groupPath(r.name) + "/policy", bodyJson(PolicyBody{r.policy}).dump()};
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
            return HttpRequest{"POST", fmt::format("{}/{}/pull", kApiPrefix, kImages), bodyJson(r).dump()};
          },
          [&](const ImportImage& r) {
            return HttpRequest{"POST", fmt::format("{}/{}/import", kApiPrefix, kImages), bodyJson(r).dump()};
          },
          [&](const BuildImage& r) {
            return HttpRequest{"POST", fmt::format("{}/{}/build", kApiPrefix, kImages), bodyJson(r).dump()};
          },
          [&](const InitCluster& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kCluster), bodyJson(r).dump()};
          },
          [&](const JoinCluster& r) {
            return HttpRequest{"POST", fmt::format("{}/{}/join", kApiPrefix, kCluster), bodyJson(r).dump()};
          },
          [&](const LeaveCluster&) {
            return HttpRequest{"POST", fmt::format("{}/{}/leave", kApiPrefix, kCluster), "{}"};
          },
          [&](const GetClusterToken&) {
            return HttpRequest{"GET", fmt::format("{}/{}/token", kApiPrefix, kCluster), ""};
          },
          [&](const ListClusterHosts&) {
            return HttpRequest{"GET", fmt::format("{}/{}/hosts", kApiPrefix, kCluster), ""};
          },
          [&](const UpdateClusterHost& r) {
            return HttpRequest{"PATCH",
                               fmt::format("{}/{}/hosts/{}", kApiPrefix, kCluster, percentEncode(r.name)),
                               bodyJson(ClusterHostBody{r.az}).dump()};
          },
          [&](const ListVmSnapshots&) {
            return HttpRequest{"GET", fmt::format("{}/{}", kApiPrefix, kVmSnapshots), ""};
          },
          [&](const CreateLoadBalancer& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kLoadBalancers),
                               bodyJson(r.spec).dump()};
          },
          [&](const ListLoadBalancers& r) {
            return HttpRequest{"GET", withVpc(fmt::format("{}/{}", kApiPrefix, kLoadBalancers), r.vpc), ""};
          },
          [&](const GetLoadBalancer& r) {
            return HttpRequest{"GET", balancerPath(r.name), ""};
          },
          [&](const DeleteLoadBalancer& r) {
            return HttpRequest{"DELETE", balancerPath(r.name), ""};
          },
          [&](const AddListener& r) {
            return HttpRequest{"POST", balancerPath(r.balancer) + "/listeners", bodyJson(r.spec).dump()};
          },
          [&](const DeleteListener& r) {
            return HttpRequest{"DELETE", listenerPath(r.balancer, r.port), ""};
          },
          [&](const AddListenerRule& r) {
            return HttpRequest{"POST", listenerPath(r.balancer, r.port) + "/rules", bodyJson(r.spec).dump()};
          },
          [&](const DeleteListenerRule& r) {
            return HttpRequest{"DELETE",
                               fmt::format("{}/rules/{}", listenerPath(r.balancer, r.port), r.priority), ""};
          },
          [&](const AddFirewallRule& r) {
            return HttpRequest{"POST", listenerPath(r.balancer, r.port) + "/firewall",
                               bodyJson(r.spec).dump()};
          },
          [&](const DeleteFirewallRule& r) {
            return HttpRequest{"DELETE",
                               fmt::format("{}/firewall/{}", listenerPath(r.balancer, r.port), r.id), ""};
          },
          [&](const CreateTargetGroup& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kTargetGroups),
                               bodyJson(r.spec).dump()};
          },
          [&](const ListTargetGroups& r) {
            return HttpRequest{"GET", withVpc(fmt::format("{}/{}", kApiPrefix, kTargetGroups), r.vpc), ""};
          },
          [&](const GetTargetGroup& r) {
            return HttpRequest{"GET", targetGroupPath(r.name), ""};
          },
          [&](const DeleteTargetGroup& r) {
            return HttpRequest{"DELETE", targetGroupPath(r.name), ""};
          },
          [&](const RegisterTargets& r) {
            return HttpRequest{"POST", targetGroupPath(r.group) + "/register",
                               bodyJson(TargetsBody{r.targets}).dump()};
          },
          [&](const DeregisterTargets& r) {
            return HttpRequest{"POST", targetGroupPath(r.group) + "/deregister",
                               bodyJson(TargetsBody{r.targets}).dump()};
          },
          [&](const RemoveVmSnapshot& r) {
            return HttpRequest{"DELETE",
                               fmt::format("{}/{}/{}", kApiPrefix, kVmSnapshots, percentEncode(r.key)), ""};
          },
          [&](const TraceCapture& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kTrace), bodyJson(r).dump()};
          },
          [&](const ReachAnalysis& r) {
            return HttpRequest{"POST", fmt::format("{}/{}", kApiPrefix, kReach), bodyJson(r).dump()};
          },
          [&](const GetFlowLogs& r) {
            std::string query;
            auto add = [&](std::string_view key, const std::string& value) {
              if (value.empty()) return;
              query += fmt::format("{}{}={}", query.empty() ? "?" : "&", key, percentEncode(value));
            };
            add("vpc", r.vpc);
            add("subnet", r.subnet);
            add("instance", r.instance);
            add("name", r.name);
            add("action", r.action);
            if (r.limit != 1000) add("limit", std::to_string(r.limit));
            if (r.follow) add("follow", "true");
            return HttpRequest{"GET", fmt::format("{}/{}{}", kApiPrefix, kFlowLogs, query), ""};
          },
      },
      request);
}

}  // namespace corral::api
