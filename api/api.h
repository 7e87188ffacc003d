// The corrald API as a closed set of requests. The daemon parses HTTP into a Request; the CLI builds the
// same Request from flags and renders it to HTTP, so the two cannot drift apart.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "api/images.h"
#include "core/error.h"
#include "schema/cidr.h"
#include "schema/group.h"
#include "schema/instance.h"
#include "schema/load_balancer.h"
#include "schema/network.h"

namespace corral::api {

inline constexpr std::string_view kApiPrefix = "/v1";
inline constexpr size_t kMaxBodyBytes = 1 << 20;

using schema::ObjectKind;

// Collection path segment of each kind: "vpcs", "subnets", "route-tables", "internet-gateways",
// "nat-gateways", "security-groups", "network-acls", "peerings".
std::string_view collectionName(ObjectKind kind);

struct GetInfo {
  bool operator==(const GetInfo&) const = default;
};

template <ObjectKind K>
struct List {
  std::string vpc;  // optional filter (?vpc=NAME); ignored for vpcs
  bool operator==(const List&) const = default;
};
template <ObjectKind K>
struct Get {
  std::string name;
  bool operator==(const Get&) const = default;
};
template <ObjectKind K>
struct Delete {
  std::string name;
  bool operator==(const Delete&) const = default;
};
template <class Spec>
struct Create {
  Spec spec;
  bool operator==(const Create&) const = default;
};

struct UpdateSubnet {
  std::string name;
  schema::SubnetUpdate update;
  bool operator==(const UpdateSubnet&) const = default;
};
struct AddRoute {
  std::string table;
  schema::RouteSpec spec;
  bool operator==(const AddRoute&) const = default;
};
struct DeleteRoute {
  std::string table;
  std::string destination;  // a CIDR: DELETE /v1/route-tables/T/routes/10.1.0.0/16
  bool operator==(const DeleteRoute&) const = default;
};
struct AddSecurityGroupRule {
  std::string group;
  schema::SecurityGroupRuleSpec spec;
  bool operator==(const AddSecurityGroupRule&) const = default;
};
struct DeleteSecurityGroupRule {
  std::string group;
  int64_t id = 0;
  bool operator==(const DeleteSecurityGroupRule&) const = default;
};
struct AddNetworkAclRule {
  std::string acl;
  schema::NetworkAclRuleSpec spec;
  bool operator==(const AddNetworkAclRule&) const = default;
};
struct DeleteNetworkAclRule {
  std::string acl;
  std::string direction;
  int64_t number = 0;
  bool operator==(const DeleteNetworkAclRule&) const = default;
};

// GET /v1/vpcs/NAME/topology: the VPC as kernel objects (namespace, bridges, links, routes, gateways)
// next to the model, with every instance NIC; what `corral net show` draws. Shape: docs/api.md.
struct GetVpcTopology {
  std::string vpc;
  bool operator==(const GetVpcTopology&) const = default;
};

// Instances (containers and VMs): /v1/instances.
struct RunInstance {  // POST /v1/instances: creates and starts; answers once the command has exec'd
  schema::InstanceSpec spec;
  bool operator==(const RunInstance&) const = default;
};
struct ListInstances {  // GET /v1/instances, ?view=summary: only what `corral ps` shows of each
  bool summary = false;
  // ?scope=host: a cluster host's own instances only (what one corrald asks another for); otherwise every
  // host's.
  bool hostOnly = false;
  bool operator==(const ListInstances&) const = default;
};
struct GetInstance {  // GET /v1/instances/NAME[?show_env=true]: everything `corral inspect` shows
  std::string name;
  bool showEnv = false;  // env values unmasked ("KEY=***" otherwise); never on the dashboard port
  bool operator==(const GetInstance&) const = default;
};
// POST /v1/instances/NAME/stop {"grace_seconds": 10, "save": false}: SIGTERM, then SIGKILL; save (VMs
// only): the VM's state and memory are saved instead, and its next start resumes it
struct StopInstance {
  std::string name;
  int64_t graceSeconds = 10;
  bool save = false;
  bool operator==(const StopInstance&) const = default;
};
struct StartInstance {  // POST /v1/instances/NAME/start: a stopped instance runs again, same writable layer
  std::string name;
  bool operator==(const StartInstance&) const = default;
};
struct RemoveInstance {  // DELETE /v1/instances/NAME?force=true: force stops a running one first
  std::string name;
  bool force = false;
  bool operator==(const RemoveInstance&) const = default;
};
// POST /v1/instances/remove {"names": [...], "force": true}: removes many in one request, each as DELETE
// /v1/instances/NAME would (the running ones are killed in parallel); answers each name's result in order,
// so one missing name does not hide the others. An empty list, a name given twice or a malformed name is
// refused naming names[i] before anything is removed.
struct RemoveInstances {
  std::vector<std::string> names;
  bool force = false;
  bool operator==(const RemoveInstances&) const = default;
};
struct GetInstanceLogs {  // GET /v1/instances/NAME/logs?offset=N: output from byte N, the next offset, state
  std::string name;
  int64_t offset = 0;
  bool operator==(const GetInstanceLogs&) const = default;
};
struct ExecInstance {  // POST /v1/instances/NAME/exec {"command": [...], "env": [...]}: runs to completion
  std::string name;
  std::vector<std::string> command;
  std::vector<std::string> env;
  bool operator==(const ExecInstance&) const = default;
};
// POST /v1/instances/NAME/wait-port {"port": 5000, "timeout_seconds": 60}: corrald connects to the port at
// the instance's subnet address until one is accepted; answers when, counted from the start request.
struct WaitInstancePort {
  std::string name;
  int64_t port = 0;             // 1..65535
  int64_t timeoutSeconds = 60;  // 1..600
  bool operator==(const WaitInstancePort&) const = default;
};

// Groups of cattle (daemon/groups.h): /v1/groups. Shapes: docs/api.md ("Groups").
struct CreateGroup {  // POST /v1/groups: stored, then its members are launched by the controller
  schema::GroupSpec spec;
  bool operator==(const CreateGroup&) const = default;
};
struct ListGroups {  // GET /v1/groups
  bool operator==(const ListGroups&) const = default;
};
struct GetGroup {  // GET /v1/groups/NAME: the group, its members and their states
  std::string name;
  bool operator==(const GetGroup&) const = default;
};
struct RemoveGroup {  // DELETE /v1/groups/NAME?force=true: force removes its members too (else refused)
  std::string name;
  bool force = false;
  bool operator==(const RemoveGroup&) const = default;
};
struct ScaleGroup {  // PATCH /v1/groups/NAME {"desired": K}
  std::string name;
  int64_t desired = 0;
  bool operator==(const ScaleGroup&) const = default;
};
struct GetGroupEvents {  // GET /v1/groups/NAME/events: the newest 200, oldest first
  std::string name;
  bool operator==(const GetGroupEvents&) const = default;
};
// POST /v1/groups/NAME/policy {"cpu_target": 50} or {"requests_per_target": 100}: target tracking on the
// members' average CPU or on the requests per target of the group's target group; null removes
struct SetGroupPolicy {
  std::string name;
  std::optional<schema::ScalingPolicy> policy;
  bool operator==(const SetGroupPolicy&) const = default;
};

// POST /v1/trace {"target": "web", "filter": "tcp", "count": 20, "seconds": 10}: captures frames on a
// subnet's bridge, an instance's port or a load balancer's NIC ({"load_balancer": "front", "subnet": "a"}
// instead of target) and answers them decoded layer by layer, plus a pcap (base64). Blocks until `count`
// frames matched `filter` or `seconds` passed. Shape: docs/api.md.
struct TraceCapture {
  std::string target;  // a subnet name, else an instance name, else a load balancer NIC's (NAME.SUBNET.lb)
  std::string filter = "all";
  int64_t count = 20;        // 1..10000
  int64_t seconds = 10;      // 1..300
  std::string loadBalancer;  // instead of target: the load balancer's NIC in `subnet`
  std::string subnet;        // with loadBalancer; may be empty when it has one NIC
  bool operator==(const TraceCapture&) const = default;
};

// POST /v1/reach {"source": "web-1", "destination": "db-1", "protocol": "tcp", "port": 5432}: the
// reachability analyzer (net/reach.h), the hop-by-hop path computed from the model. Values are checked by
// the daemon. Shape: docs/api.md.
struct ReachAnalysis {
  std::string source;  // an instance, a subnet, an address or "internet"
  std::string destination;
  std::string protocol = "tcp";  // tcp, udp or icmp
  std::optional<int64_t> port;   // tcp and udp: required
  bool verify = false;           // also send one real probe along each path (net/probe.h)
  bool operator==(const ReachAnalysis&) const = default;
};

// GET /v1/flow-logs?vpc=V|subnet=S|instance=I|name=N&action=accept|reject&limit=N&follow=true: the VPC flow
// logs corrald keeps (daemon/flow_logs.h), oldest first: of one VPC, subnet or instance (name: a VPC of that
// name, else a subnet, else an instance), or of every VPC; the newest `limit` (1..10000). follow: a
// newline-delimited JSON stream, those records first, then each new one as it is stored. Values are checked
// by the daemon. Shape: docs/api.md.
struct GetFlowLogs {
  std::string vpc, subnet, instance, name;  // at most one
  std::string action;                       // empty: both
  int64_t limit = 1000;
  bool follow = false;
  bool operator==(const GetFlowLogs&) const = default;
};

// The results of `corral compare`, kept by corrald (the newest 20) for the dashboard: /v1/comparisons.
struct SaveComparison {  // POST /v1/comparisons: the CLI's JSON result; answers {"id", "created_at"}
  nlohmann::json result;
  bool operator==(const SaveComparison&) const = default;
};
// GET /v1/comparisons: the kept ones, newest first, summaries without samples
struct ListComparisons {
  bool operator==(const ListComparisons&) const = default;
};
struct GetComparison {  // GET /v1/comparisons/ID, or /v1/comparisons/latest: one, whole
  std::string id;       // digits, or "latest"
  bool operator==(const GetComparison&) const = default;
};

// GET /v1/dashboard: everything the dashboard draws in one answer (host, VPC topologies, instances, the
// latest comparison's summary) plus a "revision" that changes whenever any of it does. Shape: docs/api.md.
struct GetDashboard {
  bool operator==(const GetDashboard&) const = default;
};

// GET /v1/vm-snapshots: the warm VM snapshots corrald keeps (docs/api.md "Warm starts"), what each is of.
struct ListVmSnapshots {
  bool operator==(const ListVmSnapshots&) const = default;
};
// DELETE /v1/vm-snapshots/KEY: one removed (the next warm run of its key makes a new one).
struct RemoveVmSnapshot {
  std::string key;  // 32 lowercase hex digits
  bool operator==(const RemoveVmSnapshot&) const = default;
};

// Load balancers (issue 19, docs/api.md "Load balancers"): /v1/load-balancers with listeners, their rules
// and firewall rules as sub-resources, and /v1/target-groups with their targets.
struct CreateLoadBalancer {  // POST /v1/load-balancers
  schema::LoadBalancerSpec spec;
  bool operator==(const CreateLoadBalancer&) const = default;
};
struct ListLoadBalancers {  // GET /v1/load-balancers[?vpc=V]
  std::string vpc;
  bool operator==(const ListLoadBalancers&) const = default;
};
struct GetLoadBalancer {  // GET /v1/load-balancers/NAME: with its listeners and the firewall's counters
  std::string name;
  bool operator==(const GetLoadBalancer&) const = default;
};
struct DeleteLoadBalancer {  // DELETE /v1/load-balancers/NAME
  std::string name;
  bool operator==(const DeleteLoadBalancer&) const = default;
};
struct AddListener {  // POST /v1/load-balancers/NAME/listeners
  std::string balancer;
  schema::ListenerSpec spec;
  bool operator==(const AddListener&) const = default;
};
struct DeleteListener {  // DELETE /v1/load-balancers/NAME/listeners/PORT
  std::string balancer;
  int64_t port = 0;
  bool operator==(const DeleteListener&) const = default;
};
struct AddListenerRule {  // POST /v1/load-balancers/NAME/listeners/PORT/rules
  std::string balancer;
  int64_t port = 0;
  schema::ListenerRuleSpec spec;
  bool operator==(const AddListenerRule&) const = default;
};
struct DeleteListenerRule {  // DELETE /v1/load-balancers/NAME/listeners/PORT/rules/PRIORITY
  std::string balancer;
  int64_t port = 0;
  int64_t priority = 0;
  bool operator==(const DeleteListenerRule&) const = default;
};
struct AddFirewallRule {  // POST /v1/load-balancers/NAME/listeners/PORT/firewall
  std::string balancer;
  int64_t port = 0;
  schema::FirewallRuleSpec spec;
  bool operator==(const AddFirewallRule&) const = default;
};
struct DeleteFirewallRule {  // DELETE /v1/load-balancers/NAME/listeners/PORT/firewall/ID
  std::string balancer;
  int64_t port = 0;
  int64_t id = 0;
  bool operator==(const DeleteFirewallRule&) const = default;
};
struct CreateTargetGroup {  // POST /v1/target-groups
  schema::TargetGroupSpec spec;
  bool operator==(const CreateTargetGroup&) const = default;
};
struct ListTargetGroups {  // GET /v1/target-groups[?vpc=V]
  std::string vpc;
  bool operator==(const ListTargetGroups&) const = default;
};
struct GetTargetGroup {  // GET /v1/target-groups/NAME: with each target's health
  std::string name;
  bool operator==(const GetTargetGroup&) const = default;
};
struct DeleteTargetGroup {  // DELETE /v1/target-groups/NAME
  std::string name;
  bool operator==(const DeleteTargetGroup&) const = default;
};
// POST /v1/target-groups/NAME/register and .../deregister {"targets": ["web-1", ...]}
struct RegisterTargets {
  std::string group;
  std::vector<std::string> targets;
  bool operator==(const RegisterTargets&) const = default;
};
struct DeregisterTargets {
  std::string group;
  std::vector<std::string> targets;
  bool operator==(const DeregisterTargets&) const = default;
};

// The cluster (issue 20, docs/cluster.md, docs/api.md "Cluster"): /v1/cluster. A corrald started with
// --cluster-address runs a member of the cluster's etcd once it inits or joins; without it every cluster
// request is refused.
struct InitCluster {  // POST /v1/cluster {"az": "az1"}: a new cluster of this one host; answers the token
  std::string az = "az1";
  bool operator==(const InitCluster&) const = default;
};
// POST /v1/cluster/join {"address": "10.0.0.1[:2379]", "token": "...", "az": "az1"}: this host joins the
// cluster whose etcd listens for clients at address (port: this corrald's --cluster-client-port if left out)
struct JoinCluster {
  std::string address;
  std::string token;
  std::string az = "az1";
  bool operator==(const JoinCluster&) const = default;
};
struct ListClusterHosts {  // GET /v1/cluster/hosts: every host, its AZ, health, etcd member, instances
  bool operator==(const ListClusterHosts&) const = default;
};
struct GetClusterToken {  // GET /v1/cluster/token: the join token again
  bool operator==(const GetClusterToken&) const = default;
};
struct UpdateClusterHost {  // PATCH /v1/cluster/hosts/NAME {"az": "az2"}
  std::string name;
  std::string az;
  bool operator==(const UpdateClusterHost&) const = default;
};
struct LeaveCluster {  // POST /v1/cluster/leave: this host leaves (the last one ends the cluster)
  bool operator==(const LeaveCluster&) const = default;
};

#define CORRAL_KIND_REQUESTS(K) List<ObjectKind::K>, Get<ObjectKind::K>, Delete<ObjectKind::K>
using Request = std::variant<
    GetInfo,                                             //
    CORRAL_KIND_REQUESTS(Vpc), Create<schema::VpcSpec>,  //
    CORRAL_KIND_REQUESTS(Subnet), Create<schema::SubnetSpec>, UpdateSubnet, CORRAL_KIND_REQUESTS(RouteTable),
    Create<schema::RouteTableSpec>, AddRoute, DeleteRoute, CORRAL_KIND_REQUESTS(InternetGateway),
    Create<schema::InternetGatewaySpec>, CORRAL_KIND_REQUESTS(NatGateway), Create<schema::NatGatewaySpec>,
    CORRAL_KIND_REQUESTS(SecurityGroup), Create<schema::SecurityGroupSpec>, AddSecurityGroupRule,
    DeleteSecurityGroupRule, CORRAL_KIND_REQUESTS(NetworkAcl), Create<schema::NetworkAclSpec>,
    AddNetworkAclRule, DeleteNetworkAclRule, CORRAL_KIND_REQUESTS(Peering), Create<schema::PeeringSpec>,
    GetVpcTopology, RunInstance, ListInstances, GetInstance, StopInstance, StartInstance, RemoveInstance,
    RemoveInstances, GetInstanceLogs, ExecInstance, WaitInstancePort, CreateGroup, ListGroups, GetGroup,
    RemoveGroup, ScaleGroup, GetGroupEvents, SetGroupPolicy, TraceCapture, ReachAnalysis, GetFlowLogs,
    SaveComparison, ListComparisons, GetComparison, GetDashboard, ListImages, GetImage, RemoveImage,
    PullImage, ImportImage, BuildImage, ListVmSnapshots, RemoveVmSnapshot, CreateLoadBalancer,
    ListLoadBalancers, GetLoadBalancer, DeleteLoadBalancer, AddListener, DeleteListener, AddListenerRule,
    DeleteListenerRule, AddFirewallRule, DeleteFirewallRule, CreateTargetGroup, ListTargetGroups,
    GetTargetGroup, DeleteTargetGroup, RegisterTargets, DeregisterTargets, InitCluster, JoinCluster,
    ListClusterHosts, GetClusterToken, UpdateClusterHost, LeaveCluster>;
#undef CORRAL_KIND_REQUESTS

struct HttpRequest {
  std::string method;  // "GET", "POST", "PATCH", "DELETE"
  std::string target;  // path and query, e.g. "/v1/subnets?vpc=prod"
  std::string body;    // JSON, empty when the request has none
  bool operator==(const HttpRequest&) const = default;
};

// HTTP → Request. Unknown path: NotFound. Wrong method on a known path, malformed JSON, a JSON type
// mismatch, an unknown or missing field: InvalidArgument naming the field. Values are not validated here
// (that is the model's job, so CLI, config and API share one validation).
Result<Request> parseRequest(std::string_view method, std::string_view target, std::string_view body);
// Request → HTTP, the exact inverse of parseRequest (names are percent-encoded in paths).
HttpRequest renderRequest(const Request& request);

// Base64 (RFC 4648, with padding) for binary data inside JSON answers, such as a trace's pcap file.
std::string base64Encode(std::string_view bytes);
// InvalidArgument naming `field` when `text` is not base64.
Result<std::string> base64Decode(std::string_view text, std::string_view field = "pcap");

// The one HTTP status of each error kind: 400, 404, 409, 503, 500.
int httpStatus(ErrorKind kind);
// {"error": {"kind": "invalid_argument", "message": "...", "field": "cidr"}}
nlohmann::json errorJson(const Error& error);
// errorJson's inverse: the kind, message and field back into an Error; anything else keeps `status`'s kind
// and shows the start of the body.
Error errorFromJson(const nlohmann::json& body, int status);

// The CIDR calculator's facts: network, netmask, broadcast, first/last usable, size, usable (AWS), private,
// class.
nlohmann::json cidrJson(const schema::Cidr& cidr);

}  // namespace corral::api
