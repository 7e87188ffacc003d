// The /v1 path table: every Request alternative survives render → parse unchanged, and each malformed
// request gets the error kind and field it should.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/api.h"

namespace corral::api {
namespace {

using schema::ObjectKind;
using ::testing::HasSubstr;

// One request of every alternative, with values that exercise encoding and optional fields.
std::vector<Request> everyAlternative() {
  std::vector<Request> all;
  all.push_back(GetInfo{});
  all.push_back(List<ObjectKind::Vpc>{});
  all.push_back(Get<ObjectKind::Vpc>{"prod"});
  all.push_back(Delete<ObjectKind::Vpc>{"prod"});
  all.push_back(Create<schema::VpcSpec>{{.name = "prod", .cidr = "10.0.0.0/16"}});
  all.push_back(List<ObjectKind::Subnet>{"prod"});
  all.push_back(Get<ObjectKind::Subnet>{"web a"});  // a space must be percent-encoded and come back
  all.push_back(Delete<ObjectKind::Subnet>{"web"});
  all.push_back(Create<schema::SubnetSpec>{{.name = "web",
                                            .vpc = "prod",
                                            .cidr = "10.0.1.0/24",
                                            .availabilityZone = "az2",
                                            .mapPublicIp = true,
                                            .routeTable = "public",
                                            .networkAcl = "strict"}});
  all.push_back(
      UpdateSubnet{"web", {.routeTable = "public", .networkAcl = std::nullopt, .mapPublicIp = false}});
  all.push_back(List<ObjectKind::RouteTable>{});
  all.push_back(Get<ObjectKind::RouteTable>{"public"});
  all.push_back(Delete<ObjectKind::RouteTable>{"public"});
  all.push_back(Create<schema::RouteTableSpec>{{.name = "public", .vpc = "prod"}});
  all.push_back(AddRoute{
      "public", {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "igw"}});
  all.push_back(
      AddRoute{"public", {.destination = "10.9.0.0/16", .targetType = "blackhole", .targetName = ""}});
  all.push_back(DeleteRoute{"public", "10.1.0.0/16"});
  all.push_back(List<ObjectKind::InternetGateway>{"prod"});
  all.push_back(Get<ObjectKind::InternetGateway>{"igw"});
  all.push_back(Delete<ObjectKind::InternetGateway>{"igw"});
  all.push_back(Create<schema::InternetGatewaySpec>{{.name = "igw", .vpc = "prod"}});
  all.push_back(List<ObjectKind::NatGateway>{});
  all.push_back(Get<ObjectKind::NatGateway>{"nat"});
  all.push_back(Delete<ObjectKind::NatGateway>{"nat"});
  all.push_back(Create<schema::NatGatewaySpec>{{.name = "nat", .subnet = "web"}});
  all.push_back(List<ObjectKind::Peering>{"prod"});
  all.push_back(Get<ObjectKind::Peering>{"prod-dev"});
  all.push_back(Delete<ObjectKind::Peering>{"prod-dev"});
  all.push_back(Create<schema::PeeringSpec>{{.name = "prod-dev", .vpc = "prod", .peerVpc = "dev"}});
  all.push_back(
      AddRoute{"public", {.destination = "10.1.0.0/16", .targetType = "peering", .targetName = "prod-dev"}});
  all.push_back(List<ObjectKind::SecurityGroup>{"prod"});
  all.push_back(Get<ObjectKind::SecurityGroup>{"web-sg"});
  all.push_back(Delete<ObjectKind::SecurityGroup>{"web-sg"});
  all.push_back(
      Create<schema::SecurityGroupSpec>{{.name = "web-sg", .vpc = "prod", .description = "web servers"}});
  all.push_back(AddSecurityGroupRule{"web-sg",
                                     {.direction = "ingress",
                                      .protocol = "tcp",
                                      .fromPort = 80,
                                      .toPort = 443,
                                      .cidr = "0.0.0.0/0",
                                      .peerGroup = std::nullopt,
                                      .description = "http(s)"}});
  all.push_back(AddSecurityGroupRule{"web-sg",
                                     {.direction = "egress",
                                      .protocol = "all",
                                      .fromPort = std::nullopt,
                                      .toPort = std::nullopt,
                                      .cidr = std::nullopt,
                                      .peerGroup = "db-sg",
                                      .description = ""}});
  all.push_back(DeleteSecurityGroupRule{"web-sg", 3});
  all.push_back(List<ObjectKind::NetworkAcl>{});
  all.push_back(Get<ObjectKind::NetworkAcl>{"strict"});
  all.push_back(Delete<ObjectKind::NetworkAcl>{"strict"});
  all.push_back(Create<schema::NetworkAclSpec>{{.name = "strict", .vpc = "prod"}});
  all.push_back(AddNetworkAclRule{"strict",
                                  {.number = 100,
                                   .direction = "egress",
                                   .action = "deny",
                                   .protocol = "udp",
                                   .fromPort = 53,
                                   .toPort = 53,
                                   .cidr = "10.0.0.0/8"}});
  all.push_back(DeleteNetworkAclRule{"strict", "egress", 100});
  schema::InstanceSpec full;
  full.name = "web";
  full.image = "busybox";
  full.command = {"sh", "-c", "echo \"hi\" there"};
  full.env = {"A=1", "B=x y"};
  full.hostname = "web-host";
  full.memory = "64M";
  full.cpus = 0.5;
  full.pids = 100;
  full.capAdd = {"NET_ADMIN"};
  full.capDrop = {"ALL"};
  full.seccomp = "unconfined";
  full.userNamespace = true;
  full.user = "app:staff";
  full.devices = {"/dev/fuse", "/dev/net/tun:/dev/tun:rw"};
  full.init = true;
  full.removeOnExit = true;
  full.subnet = "web";
  full.ip = "10.0.1.10";
  full.securityGroups = {"web", "ssh"};
  full.publish = {"8080:80", "53:53/udp"};
  full.publicIp = false;
  full.publicAddress = "100.64.128.9";
  all.push_back(RunInstance{full});
  schema::InstanceSpec vm;
  vm.name = "vm-1";
  vm.kind = schema::InstanceKind::vm;
  vm.kernel = "/boot/vmlinuz";
  vm.initrd = "/boot/initrd.img";
  vm.publicIp = true;
  all.push_back(RunInstance{vm});
  schema::InstanceSpec minimal;
  minimal.name = "minimal";
  all.push_back(RunInstance{minimal});
  all.push_back(ListInstances{});
  all.push_back(ListInstances{true});
  all.push_back(GetInstance{"web"});
  all.push_back(GetInstance{"web", true});
  all.push_back(StopInstance{"web", 3});
  all.push_back(StopInstance{"web", 10, true});
  all.push_back(StartInstance{"web"});
  all.push_back(RemoveInstance{"web", false});
  all.push_back(RemoveInstance{"web a", true});
  all.push_back(RemoveInstances{{"web-1", "web-2", "remove"}, true});
  all.push_back(RemoveInstances{{"web-1"}, false});
  all.push_back(GetInstanceLogs{"web", 4096});
  all.push_back(ExecInstance{"web", {"hostname"}, {"X=1"}});
  all.push_back(WaitInstancePort{"web", 5000, 90});
  {
    schema::GroupSpec group;
    group.name = "web";
    group.launch.command = {"sleep", "1000"};
    group.launch.memory = "64M";
    group.launch.securityGroups = {"web-sg"};
    group.subnets = {"a", "b"};
    group.min = 1;
    group.max = 4;
    group.desired = 2;
    all.push_back(CreateGroup{group});
    group.launch.kind = schema::InstanceKind::vm;
    group.desired.reset();
    group.health = schema::GroupHealth::elb;
    group.targetGroup = "tg";
    all.push_back(CreateGroup{group});
  }
  all.push_back(ListGroups{});
  all.push_back(GetGroup{"web"});
  all.push_back(RemoveGroup{"web", false});
  all.push_back(RemoveGroup{"web", true});
  all.push_back(ScaleGroup{"web", 3});
  all.push_back(GetGroupEvents{"web"});
  all.push_back(SetGroupPolicy{"web", schema::ScalingPolicy{50}});
  all.push_back(SetGroupPolicy{"web", std::nullopt});
  all.push_back(SetGroupPolicy{"web", schema::ScalingPolicy{100, schema::PolicyMetric::requestsPerTarget}});
  all.push_back(GetVpcTopology{"prod a"});
  all.push_back(TraceCapture{"web", "tcp", 12, 8, "", ""});
  all.push_back(TraceCapture{"", "tcp", 12, 8, "front", "a"});
  all.push_back(TraceCapture{"", "all", 20, 10, "front", ""});
  all.push_back(ReachAnalysis{"web-1", "db subnet", "udp", 53, false});
  all.push_back(ReachAnalysis{"internet", "web-1", "icmp", std::nullopt, true});
  all.push_back(GetFlowLogs{});
  all.push_back(GetFlowLogs{"prod a", "", "", "", "reject", 50, true});
  all.push_back(GetFlowLogs{"", "web&db", "", "", "", 1000, false});
  all.push_back(GetFlowLogs{"", "", "web-1", "", "ACCEPT", 1, false});
  all.push_back(GetFlowLogs{"", "", "", "web=1", "", 1000, true});
  all.push_back(SaveComparison{nlohmann::json{{"runs", 2}, {"summary", {{"vm", {{"boot_ms", 1.5}}}}}}});
  all.push_back(ListComparisons{});
  all.push_back(GetComparison{"12"});
  all.push_back(GetComparison{"latest"});
  all.push_back(GetDashboard{});
  all.push_back(ListImages{});
  all.push_back(GetImage{"busybox"});
  all.push_back(GetImage{"127.0.0.1:5000/team/app:1.2"});  // '/' and ':' inside one path segment
  all.push_back(GetImage{"pull"});  // an image may be called like an operation: GET names images
  all.push_back(RemoveImage{"docker.io/library/nginx@sha256:" + std::string(64, 'a')});
  all.push_back(PullImage{"nginx:1.25", false, ""});
  all.push_back(PullImage{"127.0.0.1:5000/app", true, "app"});
  all.push_back(ImportImage{"/srv/app layout", ""});
  all.push_back(ImportImage{"/srv/app.tar", "app"});
  all.push_back(
      BuildImage{"flask", {"python3-flask", "curl"}, {"flask", "--app", "/app", "run"}, "/srv/app"});
  all.push_back(BuildImage{"tools", {"curl"}, {}, ""});
  all.push_back(ListVmSnapshots{});
  all.push_back(RemoveVmSnapshot{"0123456789abcdef0123456789abcdef"});
  all.push_back(InitCluster{});
  all.push_back(InitCluster{"az2"});
  all.push_back(JoinCluster{"127.0.0.2:2379", "0123abcd", "az3"});
  all.push_back(ListClusterHosts{});
  all.push_back(GetClusterToken{});
  all.push_back(UpdateClusterHost{"host b", "az2"});
  all.push_back(LeaveCluster{});
  all.push_back(CreateLoadBalancer{{"front", "prod", {"web-a", "web-b"}, true, "application", "lb-sg"}});
  all.push_back(CreateLoadBalancer{{"nlb", "prod", {"web-a"}, false, "network", ""}});
  all.push_back(ListLoadBalancers{});
  all.push_back(ListLoadBalancers{"prod a"});
  all.push_back(GetLoadBalancer{"front"});
  all.push_back(DeleteLoadBalancer{"front"});
  all.push_back(AddListener{"front", {80, "http", {"forward", "web", std::nullopt, "", "text/plain"}}});
  all.push_back(
      AddListener{"front", {8080, "http", {"fixed-response", "", 404, "nothing here", "text/html"}}});
  all.push_back(DeleteListener{"front", 80});
  all.push_back(AddListenerRule{
      "front", 80, {10, "api.example", "/api/*", {"forward", "api", std::nullopt, "", "text/plain"}}});
  all.push_back(DeleteListenerRule{"front", 80, 10});
  all.push_back(AddFirewallRule{"front", 80, {"header", "User-Agent", "sqlmap", "scanners"}});
  all.push_back(AddFirewallRule{"front", 80, {"body", "", "' OR 1=1", ""}});
  all.push_back(DeleteFirewallRule{"front", 80, 2});
  all.push_back(
      CreateTargetGroup{{"web", "prod", 8080, "http", {"/health", 5, 2, 2, 3}, {"web-1", "web-2"}}});
  all.push_back(CreateTargetGroup{{"db", "prod", std::nullopt, "tcp", {}, {}}});
  all.push_back(ListTargetGroups{});
  all.push_back(ListTargetGroups{"prod"});
  all.push_back(GetTargetGroup{"web"});
  all.push_back(DeleteTargetGroup{"web"});
  all.push_back(RegisterTargets{"web", {"web-3"}});
  all.push_back(DeregisterTargets{"web", {"web-1", "web-2"}});
  return all;
}

TEST(RenderParse, EveryAlternativeRoundTrips) {
  std::vector<Request> all = everyAlternative();
  std::set<size_t> covered;
  for (const Request& request : all) {
    HttpRequest http = renderRequest(request);
    SCOPED_TRACE(http.method + " " + http.target + " " + http.body);
    Result<Request> parsed = parseRequest(http.method, http.target, http.body);
    ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
    EXPECT_EQ(request, *parsed);
    covered.insert(request.index());
  }
  EXPECT_EQ(covered.size(), std::variant_size_v<Request>) << "a Request alternative has no round-trip case";
}

TEST(RenderParse, RoundTripDetectsADifference) {
  // Guards the comparison itself: a changed field must make two requests differ.
  EXPECT_NE(Request(Create<schema::VpcSpec>{{"a", "10.0.0.0/16"}}),
            Request(Create<schema::VpcSpec>{{"a", "10.1.0.0/16"}}));
  EXPECT_NE(Request(Get<ObjectKind::Vpc>{"a"}), Request(Get<ObjectKind::Subnet>{"a"}));
  schema::InstanceSpec vm;
  vm.name = "a";
  vm.kind = schema::InstanceKind::vm;
  schema::InstanceSpec withIp = vm;
  withIp.publicAddress = "203.0.113.9";  // the last field: the whole value is compared
  EXPECT_NE(Request(RunInstance{vm}), Request(RunInstance{withIp}));
}

TEST(LoadBalancers, NestedBodiesNameTheNestedField) {
  auto badCheck = parseRequest("POST", "/v1/target-groups",
                               R"({"name": "web", "vpc": "prod", "health_check": {"interval": "5"}})");
  ASSERT_FALSE(badCheck);
  EXPECT_EQ(badCheck.error().field(), "health_check.interval");
  auto unknown = parseRequest("POST", "/v1/load-balancers/front/listeners",
                              R"({"port": 80, "default_action": {"target": "web"}})");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().field(), "default_action.target");
  auto badPort = parseRequest("DELETE", "/v1/load-balancers/front/listeners/eighty", "");
  ASSERT_FALSE(badPort);
  EXPECT_EQ(badPort.error().field(), "port");
  auto noSuch = parseRequest("GET", "/v1/load-balancers/front/targets", "");
  ASSERT_FALSE(noSuch);
  EXPECT_EQ(noSuch.error().kind(), ErrorKind::NotFound);
}

TEST(Images, ShapesAndBadBodiesNameTheField) {
  HttpRequest pull = renderRequest(PullImage{"nginx", true, "web"});
  EXPECT_EQ(pull.method, "POST");
  EXPECT_EQ(pull.target, "/v1/images/pull");
  EXPECT_EQ(nlohmann::json::parse(pull.body),
            (nlohmann::json{{"reference", "nginx"}, {"insecure", true}, {"name", "web"}}));
  EXPECT_EQ(renderRequest(GetImage{"a/b:1"}).target, "/v1/images/a%2Fb%3A1");

  auto parsed = parseRequest("POST", "/v1/images/pull", R"({"reference": "nginx"})");
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, Request(PullImage{"nginx", false, ""})) << "insecure and name are optional";

  struct Case {
    const char* target;
    const char* body;
    const char* field;
  };
  for (const Case& c : std::vector<Case>{
           {"/v1/images/pull", R"({})", "reference"},
           {"/v1/images/pull", R"({"reference": 5})", "reference"},
           {"/v1/images/pull", R"({"reference": "a", "insecure": "yes"})", "insecure"},
           {"/v1/images/pull", R"({"reference": "a", "tag": "1"})", "tag"},
           {"/v1/images/import", R"({"name": "a"})", "path"},
           {"/v1/images/build", R"({"name": "a"})", "debian"},
           {"/v1/images/build", R"({"name": "a", "debian": "curl"})", "debian"},
           {"/v1/images/build", R"({"name": "a", "debian": ["curl"], "cmd": "sh"})", "cmd"},
           {"/v1/images/build", R"({"debian": ["curl"]})", "name"},
       }) {
    SCOPED_TRACE(std::string(c.target) + " " + c.body);
    auto refused = parseRequest("POST", c.target, c.body);
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(refused.error().field(), c.field) << refused.error().message();
  }
  EXPECT_EQ(parseRequest("POST", "/v1/images/push", "{}").error().kind(), ErrorKind::NotFound);
  EXPECT_EQ(parseRequest("PUT", "/v1/images/app", "").error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(parseRequest("POST", "/v1/images", "{}").error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(parseRequest("GET", "/v1/images/a/b", "").error().kind(), ErrorKind::NotFound);
}

TEST(Reach, Shape) {
  HttpRequest http = renderRequest(ReachAnalysis{"web-1", "db-1", "tcp", 5432, false});
  EXPECT_EQ(http.method, "POST");
  EXPECT_EQ(http.target, "/v1/reach");
  EXPECT_EQ(
      nlohmann::json::parse(http.body),
      (nlohmann::json{{"source", "web-1"}, {"destination", "db-1"}, {"protocol", "tcp"}, {"port", 5432}}));
  Result<Request> minimal = parseRequest("POST", "/v1/reach", R"({"source": "a", "destination": "b"})");
  ASSERT_TRUE(minimal.has_value()) << minimal.error().message();
  const auto& reach = std::get<ReachAnalysis>(*minimal);
  EXPECT_EQ(reach.protocol, "tcp");
  EXPECT_FALSE(reach.port.has_value());
  EXPECT_FALSE(reach.verify);
  EXPECT_EQ(nlohmann::json::parse(renderRequest(ReachAnalysis{"a", "b", "icmp", std::nullopt, true}).body)
                .value("verify", false),
            true);
  EXPECT_EQ(parseRequest("POST", "/v1/reach", R"({"source": "a", "destination": "b", "verify": "yes"})")
                .error()
                .field(),
            "verify");
  EXPECT_EQ(parseRequest("POST", "/v1/reach", R"({"source": "a"})").error().field(), "destination");
  EXPECT_EQ(parseRequest("POST", "/v1/reach", R"({"source": "a", "destination": "b", "port": "80"})")
                .error()
                .field(),
            "port");
  EXPECT_FALSE(parseRequest("GET", "/v1/reach", "").has_value());
}

TEST(Trace, Shape) {
  HttpRequest http = renderRequest(TraceCapture{"web", "udp", 5, 3, "", ""});
  EXPECT_EQ(http.method, "POST");
  EXPECT_EQ(http.target, "/v1/trace");
  EXPECT_EQ(nlohmann::json::parse(http.body),
            (nlohmann::json{{"target", "web"}, {"filter", "udp"}, {"count", 5}, {"seconds", 3}}));
  // Only the target is required; the rest keep their defaults.
  Result<Request> minimal = parseRequest("POST", "/v1/trace", R"({"target": "web"})");
  ASSERT_TRUE(minimal.has_value()) << minimal.error().message();
  const auto& trace = std::get<TraceCapture>(*minimal);
  EXPECT_EQ(trace.filter, "all");
  EXPECT_EQ(trace.count, 20);
  EXPECT_EQ(trace.seconds, 10);
  Result<Request> missing = parseRequest("POST", "/v1/trace", "{}");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().field(), "target");
  Result<Request> wrongType = parseRequest("POST", "/v1/trace", R"({"target": "web", "count": "many"})");
  ASSERT_FALSE(wrongType.has_value());
  EXPECT_EQ(wrongType.error().field(), "count");
  EXPECT_FALSE(parseRequest("GET", "/v1/trace", "").has_value());
  // A load balancer's NIC instead of a target: exactly one of the two; subnet only with load_balancer.
  Result<Request> balancer =
      parseRequest("POST", "/v1/trace", R"({"load_balancer": "front", "subnet": "a"})");
  ASSERT_TRUE(balancer.has_value()) << balancer.error().message();
  EXPECT_EQ(std::get<TraceCapture>(*balancer).loadBalancer, "front");
  EXPECT_EQ(std::get<TraceCapture>(*balancer).subnet, "a");
  EXPECT_EQ(
      parseRequest("POST", "/v1/trace", R"({"target": "web", "load_balancer": "front"})").error().field(),
      "load_balancer");
  EXPECT_EQ(parseRequest("POST", "/v1/trace", R"({"target": "web", "subnet": "a"})").error().field(),
            "subnet");
}

// One policy kind at a time: cpu_target or requests_per_target, never both; null removes.
TEST(Groups, PolicyBodyTakesOneKind) {
  auto requests = parseRequest("POST", "/v1/groups/web/policy", R"({"requests_per_target": 100})");
  ASSERT_TRUE(requests.has_value()) << requests.error().message();
  EXPECT_EQ(std::get<SetGroupPolicy>(*requests).policy,
            (schema::ScalingPolicy{100, schema::PolicyMetric::requestsPerTarget}));
  auto both =
      parseRequest("POST", "/v1/groups/web/policy", R"({"cpu_target": 50, "requests_per_target": 100})");
  ASSERT_FALSE(both.has_value());
  EXPECT_EQ(both.error().field(), "requests_per_target");
  auto none = parseRequest("POST", "/v1/groups/web/policy", R"({"requests_per_target": null})");
  ASSERT_TRUE(none.has_value());
  EXPECT_EQ(std::get<SetGroupPolicy>(*none).policy, std::nullopt);
}

TEST(Comparisons, PathsAndBadInput) {
  EXPECT_EQ(renderRequest(GetComparison{"latest"}).target, "/v1/comparisons/latest");
  EXPECT_EQ(renderRequest(ListComparisons{}).target, "/v1/comparisons");
  Result<Request> badId = parseRequest("GET", "/v1/comparisons/abc", "");
  ASSERT_FALSE(badId.has_value());
  EXPECT_EQ(badId.error().field(), "id");
  Result<Request> notObject = parseRequest("POST", "/v1/comparisons", "[1, 2]");
  ASSERT_FALSE(notObject.has_value());
  EXPECT_EQ(notObject.error().field(), "body");
  EXPECT_FALSE(parseRequest("DELETE", "/v1/comparisons/3", "").has_value());
  EXPECT_FALSE(parseRequest("GET", "/v1/comparisons?all=1", "").has_value());
  EXPECT_FALSE(parseRequest("POST", "/v1/dashboard", "{}").has_value());
  EXPECT_TRUE(parseRequest("GET", "/v1/dashboard", "").has_value());
}

// The key's form is the daemon's to check (VmDriver::removeSnapshot names "key"); the router takes paths.
TEST(VmSnapshots, PathsAndMethods) {
  EXPECT_EQ(renderRequest(ListVmSnapshots{}).target, "/v1/vm-snapshots");
  HttpRequest remove = renderRequest(RemoveVmSnapshot{"0123456789abcdef0123456789abcdef"});
  EXPECT_EQ(remove.method, "DELETE");
  EXPECT_EQ(remove.target, "/v1/vm-snapshots/0123456789abcdef0123456789abcdef");
  Result<Request> post = parseRequest("POST", "/v1/vm-snapshots", "{}");
  ASSERT_FALSE(post.has_value());
  EXPECT_NE(post.error().message().find("GET"), std::string::npos) << post.error().message();
  EXPECT_FALSE(parseRequest("GET", "/v1/vm-snapshots/0123", "").has_value()) << "one is removed, not shown";
  EXPECT_FALSE(parseRequest("GET", "/v1/vm-snapshots?image=app", "").has_value());
  EXPECT_FALSE(parseRequest("DELETE", "/v1/vm-snapshots/a/b", "").has_value());
}

TEST(Cluster, PathsMethodsAndFields) {
  EXPECT_EQ(renderRequest(InitCluster{}).target, "/v1/cluster");
  EXPECT_EQ(renderRequest(JoinCluster{"a", "t", "az1"}).target, "/v1/cluster/join");
  EXPECT_EQ(renderRequest(UpdateClusterHost{"h1", "az2"}).method, "PATCH");
  EXPECT_EQ(renderRequest(UpdateClusterHost{"h1", "az2"}).target, "/v1/cluster/hosts/h1");
  Result<Request> init = parseRequest("POST", "/v1/cluster", "{}");
  ASSERT_TRUE(init) << init.error().message();
  EXPECT_EQ(std::get<InitCluster>(*init).az, "az1");
  Result<Request> noToken = parseRequest("POST", "/v1/cluster/join", R"({"address":"127.0.0.2"})");
  ASSERT_FALSE(noToken);
  EXPECT_EQ(noToken.error().field(), "token");
  Result<Request> noAz = parseRequest("PATCH", "/v1/cluster/hosts/h1", "{}");
  ASSERT_FALSE(noAz);
  EXPECT_EQ(noAz.error().field(), "az");
  EXPECT_FALSE(parseRequest("DELETE", "/v1/cluster/hosts/h1", "").has_value());
  EXPECT_FALSE(parseRequest("GET", "/v1/cluster", "").has_value());
  EXPECT_FALSE(parseRequest("GET", "/v1/cluster/hosts?az=a", "").has_value());
}

TEST(Base64, RoundTripsEveryLength) {
  EXPECT_EQ(base64Encode(""), "");
  EXPECT_EQ(base64Encode("f"), "Zg==");
  EXPECT_EQ(base64Encode("fo"), "Zm8=");
  EXPECT_EQ(base64Encode("foo"), "Zm9v");
  EXPECT_EQ(base64Encode("foobar"), "Zm9vYmFy");
  std::string bytes;
  for (int i = 0; i < 260; ++i) {
    bytes += static_cast<char>(i * 7);
    Result<std::string> decoded = base64Decode(base64Encode(bytes));
    ASSERT_TRUE(decoded.has_value()) << decoded.error().message();
    EXPECT_EQ(*decoded, bytes);
  }
  EXPECT_FALSE(base64Decode("Zm9").has_value());
  Result<std::string> bad = base64Decode("Zm!v", "pcap");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().field(), "pcap");
}

TEST(Instances, Shapes) {
  EXPECT_EQ(renderRequest(RemoveInstance{"web", true}).target, "/v1/instances/web?force=true");
  EXPECT_EQ(renderRequest(GetInstance{"web"}).target, "/v1/instances/web");
  EXPECT_EQ(renderRequest(GetInstance{"web", true}).target, "/v1/instances/web?show_env=true");
  EXPECT_EQ(renderRequest(GetInstanceLogs{"web", 7}).target, "/v1/instances/web/logs?offset=7");
  HttpRequest stop = renderRequest(StopInstance{"web", 1});
  EXPECT_EQ(stop.method, "POST");
  EXPECT_EQ(stop.target, "/v1/instances/web/stop");
  EXPECT_EQ(nlohmann::json::parse(stop.body), (nlohmann::json{{"grace_seconds", 1}}));
  HttpRequest save = renderRequest(StopInstance{"web", 1, true});
  EXPECT_EQ(nlohmann::json::parse(save.body), (nlohmann::json{{"grace_seconds", 1}, {"save", true}}));
}

// `corral ps` asks for the summary view; anything but summary or full is refused naming "view".
TEST(Instances, TheListingsSummaryView) {
  EXPECT_EQ(renderRequest(ListInstances{}).target, "/v1/instances");
  EXPECT_EQ(renderRequest(ListInstances{true}).target, "/v1/instances?view=summary");
  auto summary = parseRequest("GET", "/v1/instances?view=summary", "");
  ASSERT_TRUE(summary.has_value()) << summary.error().message();
  EXPECT_TRUE(std::get<ListInstances>(*summary).summary);
  auto full = parseRequest("GET", "/v1/instances?view=full", "");
  ASSERT_TRUE(full.has_value()) << full.error().message();
  EXPECT_FALSE(std::get<ListInstances>(*full).summary);
  auto bad = parseRequest("GET", "/v1/instances?view=short", "");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().field(), "view");
  EXPECT_FALSE(parseRequest("GET", "/v1/instances?show_env=true", "").has_value());
  EXPECT_FALSE(parseRequest("POST", "/v1/instances?view=summary", R"({"name": "a"})").has_value());
}

TEST(Instances, ParseDefaultsAndErrors) {
  auto stop = parseRequest("POST", "/v1/instances/web/stop", "");
  ASSERT_TRUE(stop.has_value()) << stop.error().message();
  EXPECT_EQ(std::get<StopInstance>(*stop).graceSeconds, 10);
  EXPECT_FALSE(std::get<StopInstance>(*stop).save);
  auto badSave = parseRequest("POST", "/v1/instances/web/stop", R"({"save": "yes"})");
  ASSERT_FALSE(badSave.has_value());
  EXPECT_EQ(badSave.error().field(), "save");
  auto start = parseRequest("POST", "/v1/instances/web/start", "{}");
  ASSERT_TRUE(start.has_value()) << start.error().message();
  auto run = parseRequest("POST", "/v1/instances", R"({"name": "a", "command": ["sh", 3]})");
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(run.error().field(), "command[1]");
  auto cpus = parseRequest("POST", "/v1/instances", R"({"name": "a", "cpus": "1"})");
  ASSERT_FALSE(cpus.has_value());
  EXPECT_EQ(cpus.error().field(), "cpus");
  auto unknown = parseRequest("POST", "/v1/instances", R"({"name": "a", "memroy": "1M"})");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().field(), "memroy");
  auto force = parseRequest("DELETE", "/v1/instances/web?force=yes", "");
  ASSERT_FALSE(force.has_value());
  EXPECT_EQ(force.error().field(), "force");
  auto showEnv = parseRequest("GET", "/v1/instances/web?show_env=1", "");
  ASSERT_FALSE(showEnv.has_value());
  EXPECT_EQ(showEnv.error().field(), "show_env");
  EXPECT_EQ(parseRequest("GET", "/v1/instances/web?force=true", "").error().field(), "force");
  EXPECT_EQ(parseRequest("DELETE", "/v1/instances/web?show_env=true", "").error().field(), "show_env");
  auto offset = parseRequest("GET", "/v1/instances/web/logs?offset=x", "");
  ASSERT_FALSE(offset.has_value());
  EXPECT_EQ(offset.error().field(), "offset");
  auto exec = parseRequest("POST", "/v1/instances/web/exec", R"({"env": []})");
  ASSERT_FALSE(exec.has_value());
  EXPECT_EQ(exec.error().field(), "command");
  auto waitPort = parseRequest("POST", "/v1/instances/web/wait-port", R"({"port": 5000})");
  ASSERT_TRUE(waitPort.has_value()) << waitPort.error().message();
  EXPECT_EQ(std::get<WaitInstancePort>(*waitPort), (WaitInstancePort{"web", 5000, 60}));
  EXPECT_EQ(parseRequest("POST", "/v1/instances/web/wait-port", "{}").error().field(), "port");
  EXPECT_EQ(parseRequest("POST", "/v1/instances/web/wait-port", R"({"port": "80"})").error().field(), "port");
  EXPECT_EQ(parseRequest("POST", "/v1/instances/web/wait-port", R"({"port": 80, "timeout_seconds": 1.5})")
                .error()
                .field(),
            "timeout_seconds");
  EXPECT_FALSE(parseRequest("GET", "/v1/instances/web/wait-port", "").has_value());
  EXPECT_FALSE(parseRequest("GET", "/v1/instances/web/nothing", "").has_value());
}

TEST(Instances, RemoveManyShapeAndBadBodies) {
  HttpRequest many = renderRequest(RemoveInstances{{"a", "b"}, true});
  EXPECT_EQ(many.method, "POST");
  EXPECT_EQ(many.target, "/v1/instances/remove");
  EXPECT_EQ(nlohmann::json::parse(many.body), (nlohmann::json{{"names", {"a", "b"}}, {"force", true}}));
  auto noForce = parseRequest("POST", "/v1/instances/remove", R"({"names": ["a"]})");
  ASSERT_TRUE(noForce.has_value()) << noForce.error().message();
  EXPECT_EQ(std::get<RemoveInstances>(*noForce), (RemoveInstances{{"a"}, false}));
  // An instance may be called "remove": GET and DELETE still name it.
  EXPECT_EQ(std::get<GetInstance>(*parseRequest("GET", "/v1/instances/remove", "")).name, "remove");
  EXPECT_EQ(std::get<RemoveInstance>(*parseRequest("DELETE", "/v1/instances/remove", "")).name, "remove");
  EXPECT_EQ(parseRequest("POST", "/v1/instances/remove", "{}").error().field(), "names");
  EXPECT_EQ(parseRequest("POST", "/v1/instances/remove", R"({"names": "a"})").error().field(), "names");
  EXPECT_EQ(parseRequest("POST", "/v1/instances/remove", R"({"names": ["a", 2]})").error().field(),
            "names[1]");
  EXPECT_EQ(
      parseRequest("POST", "/v1/instances/remove", R"({"names": ["a"], "force": "yes"})").error().field(),
      "force");
  EXPECT_EQ(
      parseRequest("POST", "/v1/instances/remove", R"({"names": ["a"], "forse": true})").error().field(),
      "forse");
  EXPECT_EQ(parseRequest("POST", "/v1/instances/remove?force=true", R"({"names": ["a"]})").error().field(),
            "query");
  EXPECT_FALSE(parseRequest("POST", "/v1/instances/web", R"({"names": ["a"]})").has_value());
}

// nlohmann keeps the last of two equal keys silently, so {"name": "a", "name": "b"} would mean one thing
// to corrald and another to a proxy or a log reader: every body refuses it, naming the key's path.
TEST(Instances, UnknownKindIsRefusedNamingTheField) {
  auto run = parseRequest("POST", "/v1/instances", R"({"name": "a", "kind": "lxc"})");
  ASSERT_FALSE(run.has_value());
  EXPECT_EQ(run.error().field(), "kind");
  EXPECT_THAT(run.error().message(), HasSubstr("\"lxc\" is not a kind"));
}

TEST(Parse, DuplicateKeysAreRefusedNamingTheKey) {
  struct Case {
    const char* method;
    const char* target;
    const char* body;
    const char* field;
  };
  for (const Case& c : {
           Case{"POST", "/v1/vpcs", R"({"name": "a", "cidr": "10.0.0.0/16", "name": "b"})", "name"},
           Case{"POST", "/v1/instances", R"({"name": "a", "env": ["A=1"], "env": []})", "env"},
           Case{"POST", "/v1/instances/web/stop", R"({"grace_seconds": 1, "grace_seconds": 1})",
                "grace_seconds"},
           Case{"POST", "/v1/comparisons", R"({"runs": 1, "summary": {"vm": {}, "vm": {}}})", "summary.vm"},
           Case{"POST", "/v1/comparisons", R"({"samples": [{"kind": "vm"}, {"kind": "vm", "kind": "x"}]})",
                "samples[1].kind"},
           Case{"POST", "/v1/comparisons", R"({"a": [[1, {"b": 1}], {"c": {"d": 1, "d": 2}}]})", "a[1].c.d"},
       }) {
    Result<Request> parsed = parseRequest(c.method, c.target, c.body);
    ASSERT_FALSE(parsed.has_value()) << c.body;
    EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument) << c.body;
    EXPECT_EQ(parsed.error().field(), c.field) << c.body;
    EXPECT_NE(parsed.error().message().find("duplicate key"), std::string::npos) << parsed.error().message();
  }
  // The same key in sibling objects, or in each element of an array, is no duplicate.
  EXPECT_TRUE(
      parseRequest("POST", "/v1/comparisons", R"({"x": {"a": 1}, "y": {"a": 1}, "z": [{"a": 1}, {"a": 2}]})")
          .has_value());
}

TEST(Render, ShapesOfTypicalRequests) {
  HttpRequest create = renderRequest(Create<schema::VpcSpec>{{"prod", "10.0.0.0/16"}});
  EXPECT_EQ(create.method, "POST");
  EXPECT_EQ(create.target, "/v1/vpcs");
  EXPECT_EQ(nlohmann::json::parse(create.body), (nlohmann::json{{"name", "prod"}, {"cidr", "10.0.0.0/16"}}));

  EXPECT_EQ(renderRequest(List<ObjectKind::Subnet>{"prod"}).target, "/v1/subnets?vpc=prod");
  EXPECT_EQ(renderRequest(List<ObjectKind::Subnet>{}).target, "/v1/subnets");
  EXPECT_EQ(renderRequest(List<ObjectKind::Vpc>{"ignored"}).target, "/v1/vpcs");
  EXPECT_EQ(renderRequest(Get<ObjectKind::InternetGateway>{"a b/c"}).target,
            "/v1/internet-gateways/a%20b%2Fc");
  EXPECT_EQ(renderRequest(DeleteRoute{"rt", "10.1.0.0/16"}).target, "/v1/route-tables/rt/routes/10.1.0.0/16");
  EXPECT_EQ(renderRequest(DeleteNetworkAclRule{"acl", "ingress", 100}).target,
            "/v1/network-acls/acl/rules/ingress/100");
  EXPECT_EQ(renderRequest(DeleteSecurityGroupRule{"sg", 7}).target, "/v1/security-groups/sg/rules/7");
  HttpRequest route = renderRequest(AddRoute{"rt", {"0.0.0.0/0", "nat_gateway", "nat"}});
  EXPECT_EQ(nlohmann::json::parse(route.body)["target"], "nat");
  EXPECT_TRUE(renderRequest(GetInfo{}).body.empty());
}

TEST(Parse, PercentDecodesNames) {
  Result<Request> r = parseRequest("GET", "/v1/vpcs/pr%6Fd", "");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(std::get<Get<ObjectKind::Vpc>>(*r).name, "prod");
  Result<Request> filtered = parseRequest("GET", "/v1/subnets?vpc=pr%6Fd", "");
  ASSERT_TRUE(filtered.has_value());
  EXPECT_EQ(std::get<List<ObjectKind::Subnet>>(*filtered).vpc, "prod");
}

TEST(Parse, BadPercentEscapeNamesTheField) {
  Result<Request> r = parseRequest("GET", "/v1/vpcs/a%zz", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(r.error().field(), "name");
  EXPECT_FALSE(parseRequest("GET", "/v1/vpcs/a%4", "").has_value());
}

TEST(Parse, RouteDestinationKeepsItsSlashEncodedOrNot) {
  for (std::string_view target :
       {"/v1/route-tables/rt/routes/10.1.0.0/16", "/v1/route-tables/rt/routes/10.1.0.0%2F16"}) {
    Result<Request> r = parseRequest("DELETE", target, "");
    ASSERT_TRUE(r.has_value()) << target;
    const auto& deleteRoute = std::get<DeleteRoute>(*r);
    EXPECT_EQ(deleteRoute.table, "rt");
    EXPECT_EQ(deleteRoute.destination, "10.1.0.0/16");
  }
}

TEST(Parse, UnknownPathIsNotFound) {
  for (std::string_view target : {"/v1/foo", "/v2/vpcs", "/v1", "/v1/", "/v1/vpcs/", "/v1/vpcs//x", "/vpcs",
                                  "/v1/vpcs/prod/rules", "/v1/security-groups/sg/rules/1/2"}) {
    Result<Request> r = parseRequest("GET", target, "");
    ASSERT_FALSE(r.has_value()) << target;
    EXPECT_EQ(r.error().kind(), ErrorKind::NotFound) << target;
  }
  EXPECT_EQ(parseRequest("GET", "/v1/foo?x=1", "").error().message(), "no such API path: GET /v1/foo");
}

TEST(Parse, WrongMethodListsTheAllowedOnes) {
  Result<Request> r = parseRequest("PUT", "/v1/vpcs", "");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(r.error().message(), "method PUT not allowed on /v1/vpcs; allowed: GET, POST");
  EXPECT_EQ(parseRequest("PATCH", "/v1/vpcs/prod", "{}").error().message(),
            "method PATCH not allowed on /v1/vpcs/prod; allowed: GET, DELETE");
  EXPECT_EQ(parseRequest("POST", "/v1/info", "{}").error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(parseRequest("GET", "/v1/route-tables/rt/routes/10.0.0.0/8", "").error().message(),
            "method GET not allowed on /v1/route-tables/rt/routes/10.0.0.0/8; allowed: DELETE");
}

TEST(Parse, BodyOnGetOrDeleteIsRefused) {
  for (std::string_view method : {"GET", "DELETE"}) {
    Result<Request> r = parseRequest(method, "/v1/vpcs/prod", "{}");
    ASSERT_FALSE(r.has_value());
    EXPECT_EQ(r.error().field(), "body");
    EXPECT_THAT(r.error().message(), HasSubstr("takes no request body"));
  }
}

TEST(Parse, InvalidJsonCarriesTheParserMessage) {
  Result<Request> r = parseRequest("POST", "/v1/vpcs", "{\"name\": ");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(r.error().field(), "body");
  EXPECT_THAT(r.error().message(), HasSubstr("not valid JSON"));
  EXPECT_THAT(r.error().message(), HasSubstr("parse error"));
}

TEST(Parse, BodyMustBeAnObject) {
  Result<Request> r = parseRequest("POST", "/v1/vpcs", "[1, 2]");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().field(), "body");
  EXPECT_THAT(r.error().message(), HasSubstr("must be a JSON object, got array"));
  Result<Request> empty = parseRequest("POST", "/v1/vpcs", "");
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().field(), "body");
  EXPECT_THAT(empty.error().message(), HasSubstr("empty"));
}

TEST(Parse, UnknownFieldIsNamedBeforeAMissingOne) {
  Result<Request> r = parseRequest("POST", "/v1/vpcs", R"({"name": "prod", "cidrr": "10.0.0.0/16"})");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(r.error().field(), "cidrr");
  EXPECT_THAT(r.error().message(), HasSubstr("unknown field \"cidrr\""));
  EXPECT_THAT(r.error().message(), HasSubstr("name, cidr"));
}

TEST(Parse, MissingRequiredFieldIsNamed) {
  Result<Request> r = parseRequest("POST", "/v1/subnets", R"({"name": "web", "vpc": "prod"})");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().field(), "cidr");
  EXPECT_EQ(r.error().message(), "missing required field \"cidr\"");
  Result<Request> rule = parseRequest("POST", "/v1/network-acls/a/rules",
                                      R"({"action": "allow", "protocol": "all", "cidr": "0.0.0.0/0"})");
  ASSERT_FALSE(rule.has_value());
  EXPECT_EQ(rule.error().field(), "number");
}

TEST(Parse, OptionalFieldsTakeTheSpecDefaults) {
  Result<Request> r =
      parseRequest("POST", "/v1/subnets", R"({"name": "web", "vpc": "prod", "cidr": "10.0.1.0/24"})");
  ASSERT_TRUE(r.has_value());
  const auto& spec = std::get<Create<schema::SubnetSpec>>(*r).spec;
  EXPECT_EQ(spec.availabilityZone, "az1");
  EXPECT_FALSE(spec.mapPublicIp);
  EXPECT_EQ(spec.routeTable, "");
  Result<Request> rule = parseRequest("POST", "/v1/security-groups/sg/rules",
                                      R"({"protocol": "tcp", "from_port": null, "cidr": "0.0.0.0/0"})");
  ASSERT_TRUE(rule.has_value());
  EXPECT_EQ(std::get<AddSecurityGroupRule>(*rule).spec.direction, "ingress");
  EXPECT_FALSE(std::get<AddSecurityGroupRule>(*rule).spec.fromPort.has_value());
}

TEST(Parse, WrongTypeNamesFieldAndExpectedType) {
  Result<Request> r = parseRequest("POST", "/v1/vpcs", R"({"name": 5, "cidr": "10.0.0.0/16"})");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().field(), "name");
  EXPECT_THAT(r.error().message(), HasSubstr("must be a string, got integer 5"));

  Result<Request> flag = parseRequest("PATCH", "/v1/subnets/web", R"({"map_public_ip": "yes"})");
  ASSERT_FALSE(flag.has_value());
  EXPECT_EQ(flag.error().field(), "map_public_ip");
  EXPECT_THAT(flag.error().message(), HasSubstr("must be a boolean"));

  Result<Request> name = parseRequest("POST", "/v1/vpcs", R"({"name": null, "cidr": "10.0.0.0/16"})");
  ASSERT_FALSE(name.has_value());
  EXPECT_THAT(name.error().message(), HasSubstr("got null"));
}

TEST(Parse, PortsAreIntegersButNotRangeCheckedHere) {
  Result<Request> big =
      parseRequest("POST", "/v1/security-groups/sg/rules",
                   R"({"protocol": "tcp", "from_port": 70000, "to_port": -1, "cidr": "0.0.0.0/0"})");
  ASSERT_TRUE(big.has_value()) << "70000 must reach the model, which refuses it by name";
  EXPECT_EQ(std::get<AddSecurityGroupRule>(*big).spec.fromPort, 70000);
  EXPECT_EQ(std::get<AddSecurityGroupRule>(*big).spec.toPort, -1);

  Result<Request> fractional = parseRequest("POST", "/v1/security-groups/sg/rules",
                                            R"({"protocol": "tcp", "from_port": 1.5, "cidr": "0.0.0.0/0"})");
  ASSERT_FALSE(fractional.has_value());
  EXPECT_EQ(fractional.error().field(), "from_port");
  EXPECT_THAT(fractional.error().message(), HasSubstr("must be an integer, got number 1.5"));

  Result<Request> quoted =
      parseRequest("POST", "/v1/network-acls/a/rules",
                   R"({"number": "100", "action": "allow", "protocol": "all", "cidr": "0.0.0.0/0"})");
  ASSERT_FALSE(quoted.has_value());
  EXPECT_EQ(quoted.error().field(), "number");

  Result<Request> huge = parseRequest(
      "POST", "/v1/network-acls/a/rules",
      R"({"number": 18446744073709551615, "action": "allow", "protocol": "all", "cidr": "0.0.0.0/0"})");
  ASSERT_FALSE(huge.has_value());
  EXPECT_EQ(huge.error().field(), "number");
  EXPECT_THAT(huge.error().message(), HasSubstr("out of range"));
}

TEST(Parse, EmptySubnetUpdateIsRefused) {
  Result<Request> r = parseRequest("PATCH", "/v1/subnets/web", "{}");
  ASSERT_FALSE(r.has_value());
  EXPECT_THAT(r.error().message(), HasSubstr("nothing to change"));
}

TEST(Parse, RuleIdsAndNumbersInThePathMustBeIntegers) {
  Result<Request> id = parseRequest("DELETE", "/v1/security-groups/sg/rules/abc", "");
  ASSERT_FALSE(id.has_value());
  EXPECT_EQ(id.error().field(), "id");
  Result<Request> number = parseRequest("DELETE", "/v1/network-acls/a/rules/ingress/1x", "");
  ASSERT_FALSE(number.has_value());
  EXPECT_EQ(number.error().field(), "number");
  // The direction is the model's to validate, so a wrong word passes through.
  Result<Request> direction = parseRequest("DELETE", "/v1/network-acls/a/rules/sideways/100", "");
  ASSERT_TRUE(direction.has_value());
  EXPECT_EQ(std::get<DeleteNetworkAclRule>(*direction).direction, "sideways");
}

TEST(Parse, QueryParameters) {
  Result<Request> unknown = parseRequest("GET", "/v1/subnets?zone=a", "");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().field(), "zone");
  Result<Request> vpcFilterOnVpcs = parseRequest("GET", "/v1/vpcs?vpc=prod", "");
  ASSERT_FALSE(vpcFilterOnVpcs.has_value());
  EXPECT_THAT(vpcFilterOnVpcs.error().message(), HasSubstr("vpcs take no filter"));
  Result<Request> onGet = parseRequest("GET", "/v1/vpcs/prod?x=1", "");
  ASSERT_FALSE(onGet.has_value());
  EXPECT_EQ(onGet.error().field(), "query");
  EXPECT_TRUE(parseRequest("GET", "/v1/vpcs?", "").has_value());
  EXPECT_FALSE(parseRequest("GET", "/v1/subnets?vpc=a&vpc=b", "").has_value());
}

TEST(Collection, NamesOfEveryKind) {
  EXPECT_EQ(collectionName(ObjectKind::Vpc), "vpcs");
  EXPECT_EQ(collectionName(ObjectKind::Subnet), "subnets");
  EXPECT_EQ(collectionName(ObjectKind::RouteTable), "route-tables");
  EXPECT_EQ(collectionName(ObjectKind::InternetGateway), "internet-gateways");
  EXPECT_EQ(collectionName(ObjectKind::NatGateway), "nat-gateways");
  EXPECT_EQ(collectionName(ObjectKind::SecurityGroup), "security-groups");
  EXPECT_EQ(collectionName(ObjectKind::NetworkAcl), "network-acls");
  EXPECT_EQ(collectionName(ObjectKind::Peering), "peerings");
}

}  // namespace
}  // namespace corral::api
