// Service against a real Store in a temporary directory: statuses and bodies of each request, and the
// guarantee that a failed mutation (refused by the model or by the database) changes neither memory nor disk.
#include "daemon/service.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "api/topology_render.h"
#include "daemon/host_info.h"
#include "daemon/store.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::daemon {
namespace {

using net::ObjectKind;
using nlohmann::json;

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/corral-service-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    dbPath_ = dir_ + "/state.db";
    reopen();
  }
  void TearDown() override {
    service_.reset();
    std::filesystem::remove_all(dir_);
  }

  void reopen() {
    service_.reset();
    auto store = Store::open(dbPath_);
    ASSERT_TRUE(store) << store.error().message();
    std::filesystem::create_directories(dir_ + "/images/busybox/rootfs");
    InstanceOptions instances{.imageDir = dir_ + "/images",
                              .containersDir = dir_ + "/containers",
                              .cgroupOptions = {.root = "/sys/fs/cgroup", .parent = "corral-test-unit"}};
    auto service = Service::load(std::move(*store), std::move(instances));
    ASSERT_TRUE(service) << service.error().message();
    service_ = std::move(*service);
  }

  Response handle(const api::Request& request) { return service_->handle(request); }

  // Runs SQL on a second connection to the same database, e.g. to make the next write fail.
  void sql(const std::string& statement) {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(dbPath_.c_str(), &raw), SQLITE_OK);
    std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
    char* message = nullptr;
    int rc = sqlite3_exec(db.get(), statement.c_str(), nullptr, nullptr, &message);
    std::string text = message ? message : "";
    sqlite3_free(message);
    ASSERT_EQ(rc, SQLITE_OK) << statement << ": " << text;
  }

  Response createVpc(const std::string& name, const std::string& cidr) {
    return handle(api::Create<net::VpcSpec>{{.name = name, .cidr = cidr}});
  }
  Response createSubnet(const std::string& name, const std::string& vpc, const std::string& cidr) {
    net::SubnetSpec spec;
    spec.name = name;
    spec.vpc = vpc;
    spec.cidr = cidr;
    return handle(api::Create<net::SubnetSpec>{spec});
  }

  std::string dir_;
  std::string dbPath_;
  std::unique_ptr<Service> service_;
};

void expectError(const Response& response, int status, const std::string& kind,
                 const std::string& field = {}) {
  EXPECT_EQ(response.status, status) << response.body.dump();
  ASSERT_TRUE(response.body.contains("error")) << response.body.dump();
  EXPECT_EQ(response.body["error"]["kind"], kind) << response.body.dump();
  EXPECT_FALSE(response.body["error"]["message"].get<std::string>().empty());
  if (!field.empty()) {
    EXPECT_EQ(response.body["error"].value("field", ""), field) << response.body.dump();
  }
}

TEST_F(ServiceTest, FlowLogsRefuseBadQueriesNamingTheField) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createSubnet("web", "prod", "10.0.1.0/24").status, 201);
  auto query = [](std::string vpc, std::string subnet, std::string name, std::string action, int64_t limit) {
    api::GetFlowLogs request;
    request.vpc = std::move(vpc);
    request.subnet = std::move(subnet);
    request.name = std::move(name);
    request.action = std::move(action);
    request.limit = limit;
    return request;
  };
  expectError(handle(query("nope", "", "", "", 10)), 404, "not_found", "vpc");
  expectError(handle(query("", "nope", "", "", 10)), 404, "not_found", "subnet");
  expectError(handle(query("", "", "nope", "", 10)), 404, "not_found", "name");
  expectError(handle(query("prod", "web", "", "", 10)), 400, "invalid_argument", "name");
  expectError(handle(query("prod", "", "", "drop", 10)), 400, "invalid_argument", "action");
  expectError(handle(query("prod", "", "", "", 0)), 400, "invalid_argument", "limit");
  expectError(handle(query("prod", "", "", "", 10001)), 400, "invalid_argument", "limit");
  // Known names answer, with no record yet (this Service reads no kernel).
  for (const auto& request : {query("prod", "", "", "reject", 10), query("", "", "web", "ACCEPT", 1),
                              query("", "", "prod", "", 1000)}) {
    Response answer = handle(request);
    EXPECT_EQ(answer.status, 200) << answer.body.dump();
    EXPECT_EQ(answer.body["records"], nlohmann::json::array()) << answer.body.dump();
  }
}

// Load balancers and target groups: created, refused by field with nothing changed, kept across a reopen
// of the store, and guarding the VPC objects they use.
// A load balancer's NIC among a VPC's members is shown as the load balancer's (kind "load-balancer", its
// name, its HAProxy's state: "configured" here, nothing runs it), never as an instance of unknown state:
// in the topology, its text and picture, the security groups' members and the dashboard.
TEST_F(ServiceTest, LoadBalancerNicsAreShownAsTheLoadBalancersInEveryView) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createSubnet("a", "prod", "10.0.1.0/24").status, 201);
  ASSERT_EQ(handle(api::CreateLoadBalancer{{.name = "front", .vpc = "prod", .subnets = {"a"}}}).status, 201);

  Response topology = handle(api::GetVpcTopology{"prod"});
  ASSERT_EQ(topology.status, 200) << topology.body.dump();
  const json& members = topology.body["subnets"][0]["instances"];
  ASSERT_EQ(members.size(), 1u) << topology.body.dump(1);
  EXPECT_EQ(members[0]["name"], "front.a.lb");
  EXPECT_EQ(members[0]["kind"], "load-balancer");
  EXPECT_EQ(members[0]["load_balancer"], "front");
  EXPECT_EQ(members[0]["state"], "configured");

  const std::string text = api::renderTopologyText(topology.body);
  EXPECT_NE(text.find("load balancer front: NIC front.a.lb (configured)"), std::string::npos) << text;
  EXPECT_NE(text.find("default (default): load balancer front (NIC front.a.lb)"), std::string::npos) << text;
  EXPECT_EQ(text.find("container front.a.lb"), std::string::npos) << text;
  const std::string svg = api::renderTopologySvg(topology.body);
  EXPECT_NE(svg.find("data-kind=\"load-balancer\" data-state=\"configured\""), std::string::npos) << svg;
  EXPECT_NE(api::renderTopologyDot(topology.body).find("load balancer front (NIC front.a.lb)"),
            std::string::npos);

  DashboardView view = service_->dashboard();
  ASSERT_EQ(view.vpcs.size(), 1u);
  const json& drawn = (*view.vpcs[0])["subnets"][0]["instances"][0];
  EXPECT_EQ(drawn["kind"], "load-balancer") << drawn.dump();
  EXPECT_EQ(drawn["state"], "configured") << drawn.dump();
}

TEST_F(ServiceTest, LoadBalancersAreValidatedPersistedAndGuardWhatTheyUse) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createVpc("dev", "10.1.0.0/16").status, 201);
  net::SubnetSpec b{.name = "b", .vpc = "prod", .cidr = "10.0.2.0/24", .availabilityZone = "az2"};
  ASSERT_EQ(createSubnet("a", "prod", "10.0.1.0/24").status, 201);
  ASSERT_EQ(handle(api::Create<net::SubnetSpec>{b}).status, 201);
  schema::TargetGroupSpec web{.name = "web", .vpc = "prod", .port = 8080};
  web.healthCheck.path = "/health";
  Response group = handle(api::CreateTargetGroup{web});
  ASSERT_EQ(group.status, 201) << group.body.dump();
  EXPECT_EQ(group.body["health_check"]["interval"], 10);
  ASSERT_EQ(handle(api::CreateTargetGroup{{.name = "devtg", .vpc = "dev"}}).status, 201);
  Response front = handle(api::CreateLoadBalancer{{.name = "front", .vpc = "prod", .subnets = {"a", "b"}}});
  ASSERT_EQ(front.status, 201) << front.body.dump();
  EXPECT_EQ(front.body["availability_zones"][0]["availability_zone"], "az1");
  EXPECT_EQ(front.body["availability_zones"][1]["availability_zone"], "az2");
  // A NIC per subnet, addresses from each subnet's IPAM (no kernel here: nothing runs it).
  ASSERT_EQ(front.body["nics"].size(), 2u) << front.body.dump();
  EXPECT_EQ(front.body["nics"][0]["subnet"], "a");
  EXPECT_TRUE(front.body["nics"][0]["address"].get<std::string>().starts_with("10.0.1."))
      << front.body.dump();
  EXPECT_TRUE(front.body["nics"][1]["address"].get<std::string>().starts_with("10.0.2."))
      << front.body.dump();
  EXPECT_EQ(front.body["state"], "configured");
  schema::ListenerSpec listener{.port = 80};
  listener.defaultAction.targetGroup = "web";
  ASSERT_EQ(handle(api::AddListener{"front", listener}).status, 201);
  schema::ListenerRuleSpec rule{.priority = 10, .path = "/api/*"};
  rule.action.targetGroup = "web";
  ASSERT_EQ(handle(api::AddListenerRule{"front", 80, rule}).status, 201);
  Response firewall = handle(api::AddFirewallRule{"front", 80, {.part = "method", .pattern = "DELETE"}});
  ASSERT_EQ(firewall.status, 201) << firewall.body.dump();
  EXPECT_EQ(firewall.body["listeners"][0]["firewall"][0]["id"], 1);

  const json before = handle(api::GetLoadBalancer{"front"}).body;
  schema::ListenerSpec other{.port = 8080};
  other.defaultAction.targetGroup = "devtg";
  expectError(handle(api::AddListener{"front", other}), 400, "invalid_argument",
              "default_action.target_group");
  other.port = 70000;
  other.defaultAction.targetGroup = "web";
  expectError(handle(api::AddListener{"front", other}), 400, "invalid_argument", "port");
  schema::ListenerRuleSpec shadowed{.priority = 20, .path = "/api/v1/*"};
  shadowed.action.targetGroup = "web";
  expectError(handle(api::AddListenerRule{"front", 80, shadowed}), 400, "invalid_argument", "priority");
  shadowed.priority = 10;
  shadowed.path = "/other";
  expectError(handle(api::AddListenerRule{"front", 80, shadowed}), 409, "conflict");
  expectError(handle(api::RegisterTargets{"web", {"ghost"}}), 404, "not_found");
  expectError(
      handle(api::CreateLoadBalancer{{.name = "x", .vpc = "prod", .subnets = {"a", "b"}, .type = "classic"}}),
      400, "invalid_argument", "type");
  EXPECT_EQ(handle(api::GetLoadBalancer{"front"}).body, before) << "refused changes changed nothing";

  expectError(handle(api::Delete<ObjectKind::Subnet>{"a"}), 409, "conflict");
  expectError(handle(api::Delete<ObjectKind::Vpc>{"dev"}), 409, "conflict");
  expectError(handle(api::DeleteTargetGroup{"web"}), 409, "conflict");

  reopen();
  EXPECT_EQ(handle(api::GetLoadBalancer{"front"}).body, before) << "kept in the store";
  EXPECT_EQ(handle(api::ListLoadBalancers{"dev"}).body["load_balancers"].size(), 0u);
  EXPECT_EQ(handle(api::ListTargetGroups{}).body["target_groups"].size(), 2u);
  ASSERT_EQ(handle(api::DeleteLoadBalancer{"front"}).status, 200);
  ASSERT_EQ(handle(api::DeleteTargetGroup{"devtg"}).status, 200);
  EXPECT_EQ(handle(api::Delete<ObjectKind::Vpc>{"dev"}).status, 200);
  expectError(handle(api::GetLoadBalancer{"front"}), 404, "not_found");
}

TEST_F(ServiceTest, ReachRefusesBadQueriesNamingTheField) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createSubnet("web", "prod", "10.0.1.0/24").status, 201);
  expectError(handle(api::ReachAnalysis{"nobody", "internet", "tcp", 80, false}), 404, "not_found", "source");
  expectError(handle(api::ReachAnalysis{"web", "internet", "tcp", 80, false}), 400, "invalid_argument",
              "source");
  expectError(handle(api::ReachAnalysis{"internet", "10.0.1.9", "tcp", 80, false}), 404, "not_found",
              "destination");
  expectError(handle(api::ReachAnalysis{"internet", "8.8.8.8", "tcp", 80, false}), 400, "invalid_argument",
              "destination");
  expectError(handle(api::ReachAnalysis{"a", "b", "tcp", std::nullopt, false}), 400, "invalid_argument",
              "port");
  expectError(handle(api::ReachAnalysis{"a", "b", "sctp", 80, false}), 400, "invalid_argument", "protocol");
  expectError(handle(api::ReachAnalysis{"a", "b", "icmp", 7, false}), 400, "invalid_argument", "port");
}

TEST_F(ServiceTest, CreateVpcAnswers201WithTheVpcAndItsDefaults) {
  Response created = createVpc("prod", "10.0.0.0/16");
  ASSERT_EQ(created.status, 201) << created.body.dump();
  EXPECT_EQ(created.body["name"], "prod");
  EXPECT_EQ(created.body["cidr"], "10.0.0.0/16");
  EXPECT_EQ(created.body["main_route_table"], "prod-main");
  EXPECT_EQ(created.body["default_network_acl"], "prod-default");
  EXPECT_EQ(created.body["default_security_group"], "prod-default");
  EXPECT_GT(created.body["created_at"].get<int64_t>(), 1'600'000'000);  // the wall clock, not zero

  Response listed = handle(api::List<ObjectKind::Vpc>{});
  ASSERT_EQ(listed.status, 200);
  ASSERT_EQ(listed.body["vpcs"].size(), 1u);
  EXPECT_EQ(listed.body["vpcs"][0]["name"], "prod");

  Response tables = handle(api::List<ObjectKind::RouteTable>{"prod"});
  ASSERT_EQ(tables.status, 200);
  ASSERT_EQ(tables.body["route-tables"].size(), 1u);
  EXPECT_EQ(tables.body["route-tables"][0]["main"], true);

  Response got = handle(api::Get<ObjectKind::Vpc>{"prod"});
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body, created.body);
}

TEST_F(ServiceTest, ErrorsCarryTheirKindStatusAndField) {
  expectError(createVpc("prod", "10.0.0.1/16"), 400, "invalid_argument", "cidr");
  expectError(createVpc("Bad_Name", "10.0.0.0/16"), 400, "invalid_argument", "name");
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  expectError(createVpc("prod", "10.1.0.0/16"), 409, "conflict");
  expectError(handle(api::Get<ObjectKind::Vpc>{"nope"}), 404, "not_found");
  expectError(handle(api::Delete<ObjectKind::Subnet>{"nope"}), 404, "not_found");
  expectError(createSubnet("web", "prod", "10.9.0.0/24"), 400, "invalid_argument",
              "cidr");  // outside the VPC
}

TEST_F(ServiceTest, DeleteAnswers200WithTheDeletedObject) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createSubnet("web", "prod", "10.0.1.0/24").status, 201);

  Response deleted = handle(api::Delete<ObjectKind::Subnet>{"web"});
  ASSERT_EQ(deleted.status, 200) << deleted.body.dump();
  EXPECT_EQ(deleted.body["deleted"]["kind"], "subnet");
  EXPECT_EQ(deleted.body["deleted"]["name"], "web");
  EXPECT_EQ(deleted.body["deleted"]["cidr"], "10.0.1.0/24");
  expectError(handle(api::Get<ObjectKind::Subnet>{"web"}), 404, "not_found");

  Response vpcDeleted = handle(api::Delete<ObjectKind::Vpc>{"prod"});
  ASSERT_EQ(vpcDeleted.status, 200) << vpcDeleted.body.dump();
  EXPECT_EQ(vpcDeleted.body["deleted"]["kind"], "vpc");
  // The VPC's main table, default ACL and default group go with it.
  EXPECT_TRUE(handle(api::List<ObjectKind::RouteTable>{}).body["route-tables"].empty());
  EXPECT_TRUE(handle(api::List<ObjectKind::NetworkAcl>{}).body["network-acls"].empty());
  EXPECT_TRUE(handle(api::List<ObjectKind::SecurityGroup>{}).body["security-groups"].empty());

  reopen();
  EXPECT_TRUE(handle(api::List<ObjectKind::Vpc>{}).body["vpcs"].empty());
  EXPECT_TRUE(handle(api::List<ObjectKind::Subnet>{}).body["subnets"].empty());
}

TEST_F(ServiceTest, StateSurvivesReopening) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createSubnet("web", "prod", "10.0.1.0/24").status, 201);
  ASSERT_EQ(handle(api::Create<net::InternetGatewaySpec>{{.name = "igw", .vpc = "prod"}}).status, 201);
  Response route = handle(api::AddRoute{
      "prod-main", {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "igw"}});
  ASSERT_EQ(route.status, 201) << route.body.dump();
  EXPECT_EQ(route.body["name"], "prod-main");
  EXPECT_EQ(route.body["routes"].size(), 2u);
  EXPECT_EQ(route.body["subnets"], json::array({"web"}));  // tables show which subnets use them
  Response before = handle(api::Get<ObjectKind::Subnet>{"web"});
  EXPECT_EQ(before.body["reachability"], "public");

  reopen();
  Response after = handle(api::Get<ObjectKind::Subnet>{"web"});
  ASSERT_EQ(after.status, 200);
  EXPECT_EQ(after.body, before.body);
  EXPECT_EQ(handle(api::Get<ObjectKind::RouteTable>{"prod-main"}).body, route.body);
  ObjectCounts n = service_->counts();
  EXPECT_EQ(n.vpcs, 1u);
  EXPECT_EQ(n.subnets, 1u);
  EXPECT_EQ(n.routeTables, 1u);
  EXPECT_EQ(n.internetGateways, 1u);
  EXPECT_EQ(n.securityGroups, 1u);
  EXPECT_EQ(n.networkAcls, 1u);
}

TEST_F(ServiceTest, RulesAnswerWithTheirParent) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(handle(api::Create<net::SecurityGroupSpec>{{.name = "web", .vpc = "prod", .description = "http"}})
                .status,
            201);
  net::SecurityGroupRuleSpec rule;
  rule.protocol = "tcp";
  rule.fromPort = 80;
  rule.toPort = 80;
  rule.cidr = "0.0.0.0/0";
  Response added = handle(api::AddSecurityGroupRule{"web", rule});
  ASSERT_EQ(added.status, 201) << added.body.dump();
  EXPECT_EQ(added.body["name"], "web");
  ASSERT_FALSE(added.body["rules"].empty());
  int64_t id = added.body["rules"].back()["id"].get<int64_t>();
  EXPECT_EQ(added.body["rules"].back()["from_port"], 80);

  rule.fromPort = 70000;
  rule.toPort = 70000;
  Response refused = handle(api::AddSecurityGroupRule{"web", rule});
  expectError(refused, 400, "invalid_argument");
  EXPECT_NE(refused.body["error"]["field"].get<std::string>().find("port"), std::string::npos);

  Response removed = handle(api::DeleteSecurityGroupRule{"web", id});
  ASSERT_EQ(removed.status, 200) << removed.body.dump();
  EXPECT_EQ(removed.body["rules"].size(), added.body["rules"].size() - 1);
  expectError(handle(api::DeleteSecurityGroupRule{"web", id}), 404, "not_found");
}

TEST_F(ServiceTest, AModelRefusalChangesNothing) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createSubnet("web", "prod", "10.0.1.0/24").status, 201);
  json before = handle(api::List<ObjectKind::Subnet>{}).body;

  expectError(createSubnet("db", "prod", "10.0.1.128/25"), 409, "conflict");   // overlaps web
  expectError(handle(api::Delete<ObjectKind::Vpc>{"prod"}), 409, "conflict");  // still holds a subnet

  EXPECT_EQ(handle(api::List<ObjectKind::Subnet>{}).body, before);
  EXPECT_EQ(handle(api::Get<ObjectKind::Vpc>{"prod"}).status, 200);
  reopen();
  EXPECT_EQ(handle(api::List<ObjectKind::Subnet>{}).body, before);
  EXPECT_EQ(handle(api::Get<ObjectKind::Vpc>{"prod"}).status, 200);
}

// The database refuses the last row of a VPC's creation: the transaction rolls back and the in-memory
// topology must not show the VPC (nor its route table or ACL) either.
TEST_F(ServiceTest, AFailedWriteChangesNeitherMemoryNorDisk) {
  sql("CREATE TRIGGER refuse_groups BEFORE INSERT ON security_groups BEGIN SELECT RAISE(ABORT, 'disk says "
      "no'); END");
  Response failed = createVpc("prod", "10.0.0.0/16");
  expectError(failed, 500, "internal");
  EXPECT_NE(failed.body["error"]["message"].get<std::string>().find("disk says no"), std::string::npos)
      << failed.body.dump();
  expectError(handle(api::Get<ObjectKind::Vpc>{"prod"}), 404, "not_found");
  EXPECT_TRUE(handle(api::List<ObjectKind::RouteTable>{}).body["route-tables"].empty());
  EXPECT_TRUE(handle(api::List<ObjectKind::NetworkAcl>{}).body["network-acls"].empty());

  sql("DROP TRIGGER refuse_groups");
  reopen();
  EXPECT_TRUE(handle(api::List<ObjectKind::Vpc>{}).body["vpcs"].empty());
  EXPECT_TRUE(handle(api::List<ObjectKind::RouteTable>{}).body["route-tables"].empty());
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);

  // And the other way round: a delete the database refuses leaves the VPC in place.
  sql("CREATE TRIGGER keep_groups BEFORE DELETE ON security_groups BEGIN SELECT RAISE(ABORT, 'disk says "
      "no'); END");
  expectError(handle(api::Delete<ObjectKind::Vpc>{"prod"}), 500, "internal");
  EXPECT_EQ(handle(api::Get<ObjectKind::Vpc>{"prod"}).status, 200);
  EXPECT_EQ(handle(api::Get<ObjectKind::RouteTable>{"prod-main"}).status, 200);
  sql("DROP TRIGGER keep_groups");
  reopen();
  EXPECT_EQ(handle(api::Get<ObjectKind::Vpc>{"prod"}).status, 200);
  EXPECT_EQ(handle(api::Get<ObjectKind::SecurityGroup>{"prod-default"}).status, 200);
}

TEST_F(ServiceTest, InfoReportsVersionStateHostAndCounts) {
  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  Response info = handle(api::GetInfo{});
  ASSERT_EQ(info.status, 200);
  EXPECT_EQ(info.body["version"], CORRAL_VERSION);
  EXPECT_EQ(info.body["api"], "v1");
  EXPECT_EQ(info.body["state"]["path"], dbPath_);
  EXPECT_EQ(info.body["state"]["schema_version"], kSchemaVersion);
  EXPECT_EQ(info.body["counts"]["vpcs"], 1);
  EXPECT_EQ(info.body["counts"]["route-tables"], 1);
  EXPECT_FALSE(info.body["kernel"].get<std::string>().empty());
  EXPECT_FALSE(info.body["hostname"].get<std::string>().empty());
  EXPECT_FALSE(info.body["cgroup_mode"].get<std::string>().empty());
  const json& kvm = info.body["kvm"];
  EXPECT_EQ(kvm["device"], "/dev/kvm");
  EXPECT_TRUE(kvm["present"].is_boolean());
  EXPECT_TRUE(kvm["usable"].is_boolean());
  EXPECT_FALSE(kvm["reason"].get<std::string>().empty());
}

// ---- /dev/kvm advice ----

TEST_F(ServiceTest, InstanceRequestsWithoutContainers) {
  Response list = handle(api::ListInstances{});
  EXPECT_EQ(list.status, 200);
  EXPECT_EQ(list.body, (json{{"instances", json::array()}}));
  EXPECT_EQ(handle(api::GetInstance{"nope"}).status, 404);
  EXPECT_EQ(handle(api::StopInstance{"nope", 1}).status, 404);
  EXPECT_EQ(handle(api::StartInstance{"nope"}).status, 404);
  EXPECT_EQ(handle(api::RemoveInstance{"nope", true}).status, 404);
  EXPECT_EQ(handle(api::GetInstanceLogs{"nope", 0}).status, 404);
  EXPECT_EQ(handle(api::ExecInstance{"nope", {"true"}, {}}).status, 404);
  EXPECT_EQ(handle(api::WaitInstancePort{"nope", 80, 1}).status, 404);
  // The port and the timeout are checked before the instance is looked for.
  for (int64_t port : {0, -1, 65536, 70000}) {
    Response badPort = handle(api::WaitInstancePort{"nope", port, 1});
    EXPECT_EQ(badPort.status, 400) << port;
    EXPECT_EQ(badPort.body["error"]["field"], "port") << badPort.body.dump();
  }
  for (int64_t seconds : {0, 601}) {
    Response badTimeout = handle(api::WaitInstancePort{"nope", 80, seconds});
    EXPECT_EQ(badTimeout.status, 400) << seconds;
    EXPECT_EQ(badTimeout.body["error"]["field"], "timeout_seconds") << badTimeout.body.dump();
  }

  // A refused spec creates nothing: no row, no bundle directory.
  schema::InstanceSpec spec;
  spec.name = "web";
  spec.memory = "-1";
  Response bad = handle(api::RunInstance{spec});
  EXPECT_EQ(bad.status, 400);
  EXPECT_EQ(bad.body["error"]["field"], "memory");
  spec.memory.reset();
  spec.image = "missing";
  Response missing = handle(api::RunInstance{spec});
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.body["error"]["field"], "image");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/containers/web"));
  EXPECT_EQ(handle(api::ListInstances{}).body["instances"].size(), 0u);

  Response info = handle(api::GetInfo{});
  EXPECT_EQ(info.body["counts"]["instances"], 0);
  EXPECT_EQ(info.body["image_dir"], dir_ + "/images");
}

TEST(ProcessStartTime, ReadsField22OfOurOwnStat) {
  auto self = processStartTime(::getpid());
  ASSERT_TRUE(self);
  EXPECT_GT(*self, 0);
  EXPECT_EQ(processStartTime(::getpid()), self);
  EXPECT_FALSE(processStartTime(-1));
}

TEST(HostInfo, NamespaceIdsComeFromTheLinkText) {
  EXPECT_EQ(namespaceInode("net:[4026531840]"), 4026531840u);
  EXPECT_EQ(namespaceInode("pid_for_children:[4026531836]"), 4026531836u);
  EXPECT_FALSE(namespaceInode("net:[]"));
  EXPECT_FALSE(namespaceInode("net:[12x]"));
  EXPECT_FALSE(namespaceInode("net:[-1]"));
  EXPECT_FALSE(namespaceInode(":[1]"));
  EXPECT_FALSE(namespaceInode("net 4026531840"));
  EXPECT_FALSE(namespaceInode("net:[99999999999999999999]"));
}

// corrald's own ids, every namespace GET /v1/info lists (the kernels this runs on have all nine).
TEST(HostInfo, DescribesItsOwnNamespaces) {
  HostInfo host = describeHost();
  ASSERT_EQ(host.namespaces.size(), std::size(kHostNamespaces));
  for (std::string_view ns : kHostNamespaces) {
    struct stat st {};
    ASSERT_EQ(::stat(fmt::format("/proc/self/ns/{}", ns).c_str(), &st), 0) << ns;
    EXPECT_EQ(host.namespaces[std::string(ns)], static_cast<uint64_t>(st.st_ino)) << ns;
  }
}

TEST(KvmAssessment, MissingDeviceExplainsWhy) {
  KvmProbe probe;
  KvmStatus status = assessKvm(probe);
  EXPECT_FALSE(status.usable);
  EXPECT_NE(status.reason.find("/dev/kvm is missing"), std::string::npos) << status.reason;
  EXPECT_NE(status.reason.find("kvm module is not loaded"), std::string::npos) << status.reason;
}

TEST(KvmAssessment, PermissionDeniedSaysHowToFixIt) {
  KvmProbe probe{.present = true,
                 .openErrno = EACCES,
                 .mode = 0600,
                 .owner = "root",
                 .group = "root",
                 .isCharDevice = true};
  KvmStatus status = assessKvm(probe);
  EXPECT_FALSE(status.usable);
  EXPECT_EQ(status.reason,
            "/dev/kvm is mode 0600 root:root and corrald is not allowed to open it: chgrp kvm /dev/kvm && "
            "chmod 660 /dev/kvm");
}

TEST(KvmAssessment, StableApiIsUsable) {
  KvmProbe probe{.present = true, .accessible = true, .apiVersion = 12, .isCharDevice = true};
  KvmStatus status = assessKvm(probe);
  EXPECT_TRUE(status.usable);
  EXPECT_EQ(
      status.reason,
      "/dev/kvm answers (KVM API 12); whether it really boots a guest is probed when the first VM starts");
}

TEST(KvmAssessment, OtherApiVersionOrFailedIoctlIsNotUsable) {
  KvmProbe odd{.present = true, .accessible = true, .apiVersion = 11, .isCharDevice = true};
  EXPECT_FALSE(assessKvm(odd).usable);
  KvmProbe silent{.present = true, .accessible = true, .ioctlErrno = ENOTTY, .isCharDevice = true};
  KvmStatus status = assessKvm(silent);
  EXPECT_FALSE(status.usable);
  EXPECT_NE(status.reason.find("KVM_GET_API_VERSION"), std::string::npos);
}

TEST(KvmAssessment, ProbeOfAMissingNodeSaysAbsent) {
  KvmProbe probe = probeKvm("/nonexistent/kvm");
  EXPECT_FALSE(probe.present);
  EXPECT_FALSE(probe.accessible);
  EXPECT_FALSE(assessKvm(probe).usable);
}

// ---- Comparisons and the dashboard ----

json comparisonResult(int runs, double vmBootMs) {
  auto stats = [](double value) {
    return json{{"median", value}, {"min", value}, {"max", value}, {"count", 1}};
  };
  return {
      {"runs", runs},
      {"parallel", false},
      {"accelerator", "tcg"},
      {"samples",
       {{{"name", "compare-c-1"},
         {"kind", "container"},
         {"boot", {{"total_ms", 12.0}, {"clone_ms", 2.0}}},
         {"usage", {{"memory_bytes", 2e6}}},
         {"probe", {{"pid", 1}}},
         {"error", nullptr}},
        {{"name", "compare-v-1"},
         {"kind", "vm"},
         {"boot", {{"total_ms", vmBootMs}, {"kernel_ms", 900.0}}},
         {"usage", {{"memory_bytes", 150e6}}},
         {"probe", {{"pid", 1}}},
         {"error", nullptr}}}},
      {"summary",
       {{"container",
         {{"boot_ms", stats(12.0)},
          {"boot_steps_median_ms", {{"clone_ms", 2.0}}},
          {"memory_bytes", stats(2e6)}}},
        {"vm",
         {{"boot_ms", stats(vmBootMs)},
          {"boot_steps_median_ms", {{"kernel_ms", 900.0}}},
          {"memory_bytes", stats(150e6)}}}}},
      {"isolation", {{"container", {{"kernel_equals_host", true}}}, {"vm", {{"kernel_equals_host", false}}}}},
      {"network", nullptr}};
}

TEST_F(ServiceTest, ComparisonsAreKeptNewestFirstAndSurviveReopening) {
  Response empty = handle(api::GetComparison{"latest"});
  EXPECT_EQ(empty.status, 404);
  EXPECT_NE(empty.body.dump().find("corral compare"), std::string::npos) << empty.body.dump();

  Response first = handle(api::SaveComparison{comparisonResult(1, 3000.0)});
  ASSERT_EQ(first.status, 201) << first.body.dump();
  Response second = handle(api::SaveComparison{comparisonResult(2, 2500.0)});
  ASSERT_EQ(second.status, 201) << second.body.dump();
  EXPECT_GT(second.body["id"].get<int64_t>(), first.body["id"].get<int64_t>());

  reopen();
  Response latest = handle(api::GetComparison{"latest"});
  ASSERT_EQ(latest.status, 200) << latest.body.dump();
  EXPECT_EQ(latest.body["id"], second.body["id"]);
  EXPECT_EQ(latest.body["result"], comparisonResult(2, 2500.0))
      << "the whole result comes back as it was sent";
  Response byId = handle(api::GetComparison{std::to_string(first.body["id"].get<int64_t>())});
  ASSERT_EQ(byId.status, 200);
  EXPECT_EQ(byId.body["result"]["runs"], 1);
  EXPECT_EQ(handle(api::GetComparison{"999999"}).status, 404);

  Response list = handle(api::ListComparisons{});
  ASSERT_EQ(list.status, 200);
  ASSERT_EQ(list.body["comparisons"].size(), 2u);
  const json& newest = list.body["comparisons"][0];
  EXPECT_EQ(newest["id"], second.body["id"]);
  EXPECT_EQ(newest["samples"][1]["boot_ms"], 2500.0);
  EXPECT_FALSE(newest["samples"][1].contains("probe")) << "a list carries summaries, not documents";
}

TEST_F(ServiceTest, ABadComparisonNamesItsFieldAndKeepsNothing) {
  struct Case {
    const char* field;
    std::function<void(json&)> breakIt;
  };
  const std::vector<Case> cases = {
      {"runs", [](json& r) { r.erase("runs"); }},
      {"runs", [](json& r) { r["runs"] = 0; }},
      {"accelerator", [](json& r) { r["accelerator"] = 5; }},
      {"summary", [](json& r) { r["summary"] = "fast"; }},
      {"summary.vm", [](json& r) { r["summary"].erase("vm"); }},
      {"summary.container.boot_ms.median",
       [](json& r) { r["summary"]["container"]["boot_ms"]["median"] = "x"; }},
      {"samples", [](json& r) { r["samples"] = json::object(); }},
      {"samples[1].kind", [](json& r) { r["samples"][1]["kind"] = "lxc"; }},
      {"samples[1].kind", [](json& r) { r["samples"][1]["kind"] = 5; }},
      {"samples[0].kind", [](json& r) { r["samples"][0].erase("kind"); }},
      {"samples[0].name", [](json& r) { r["samples"][0].erase("name"); }},
  };
  for (const Case& c : cases) {
    json bad = comparisonResult(1, 3000.0);
    c.breakIt(bad);
    Response refused = handle(api::SaveComparison{bad});
    EXPECT_EQ(refused.status, 400) << c.field;
    EXPECT_EQ(refused.body["error"]["field"], c.field) << refused.body.dump();
  }
  EXPECT_EQ(handle(api::ListComparisons{}).body["comparisons"].size(), 0u);
}

TEST_F(ServiceTest, DashboardHasTheHostEveryVpcDrawnTheInstancesAndTheLatestComparison) {
  Response before = handle(api::GetDashboard{});
  ASSERT_EQ(before.status, 200) << before.body.dump();
  EXPECT_TRUE(before.body["vpcs"].empty());
  EXPECT_TRUE(before.body["comparison"].is_null());
  EXPECT_TRUE(before.body["instances"].is_array());
  EXPECT_FALSE(before.body["host"]["kernel"].get<std::string>().empty());
  EXPECT_GT(before.body["generated_at_ms"].get<int64_t>(), 0);

  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createSubnet("web", "prod", "10.0.1.0/24").status, 201);
  ASSERT_EQ(handle(api::SaveComparison{comparisonResult(1, 3000.0)}).status, 201);
  Response after = handle(api::GetDashboard{});
  ASSERT_EQ(after.status, 200) << after.body.dump();
  ASSERT_EQ(after.body["vpcs"].size(), 1u);
  const json& vpc = after.body["vpcs"][0];
  EXPECT_EQ(vpc["vpc"]["name"], "prod");
  EXPECT_EQ(vpc["subnets"][0]["name"], "web");
  const std::string svg = vpc["svg"];
  EXPECT_TRUE(svg.starts_with("<svg ")) << "drawn for a page: no XML declaration";
  EXPECT_NE(svg.find("subnet web"), std::string::npos);
  const json& comparison = after.body["comparison"];
  EXPECT_EQ(comparison["runs"], 1);
  EXPECT_NE(comparison["svg"].get<std::string>().find("class=\"memory-bar\" data-kind=\"vm\""),
            std::string::npos);
  EXPECT_EQ(comparison["isolation"]["container"]["kernel_equals_host"], true);
}

// One kept view serves every page: asked again with nothing changed, the same view (same number, same
// body, not built again); a topology change or a saved comparison moves the revision and gives a new view.
TEST_F(ServiceTest, TheDashboardViewIsKeptUntilSomethingItShowsChanges) {
  const uint64_t revision = service_->dashboardRevision();
  DashboardView first = service_->dashboard();
  ASSERT_TRUE(first.body);
  DashboardView again = service_->dashboard();
  EXPECT_EQ(again.sequence, first.sequence);
  EXPECT_EQ(again.body.get(), first.body.get()) << "built again with nothing changed";
  EXPECT_EQ(service_->dashboardRevision(), revision);
  Response answered = handle(api::GetDashboard{});
  EXPECT_EQ(answered.body, *first.body) << "GET /v1/dashboard answers the kept view";

  ASSERT_EQ(createVpc("prod", "10.0.0.0/16").status, 201);
  const uint64_t afterVpc = service_->dashboardRevision();
  EXPECT_NE(afterVpc, revision);
  DashboardView withVpc = service_->dashboard();
  EXPECT_GT(withVpc.sequence, first.sequence);
  ASSERT_EQ((*withVpc.body)["vpcs"].size(), 1u);
  EXPECT_EQ((*withVpc.body)["vpcs"][0]["vpc"]["name"], "prod");

  // A refused change is no change.
  EXPECT_EQ(createVpc("prod", "10.1.0.0/16").status, 409);
  EXPECT_EQ(service_->dashboardRevision(), afterVpc);
  EXPECT_EQ(service_->dashboard().sequence, withVpc.sequence);

  ASSERT_EQ(handle(api::SaveComparison{comparisonResult(1, 3000.0)}).status, 201);
  EXPECT_NE(service_->dashboardRevision(), afterVpc);
  DashboardView withComparison = service_->dashboard();
  EXPECT_GT(withComparison.sequence, withVpc.sequence);
  EXPECT_EQ((*withComparison.body)["comparison"]["runs"], 1);
}

// A change in one VPC draws that VPC again and keeps every other VPC's entry as it was (the same object:
// not drawn again, its kernel not read); the event stream's patch carries only the VPC drawn again.
TEST_F(ServiceTest, AChangeInOneVpcDrawsAndSendsThatVpcAlone) {
  ASSERT_EQ(createVpc("alpha", "10.0.0.0/16").status, 201);
  ASSERT_EQ(createVpc("beta", "10.1.0.0/16").status, 201);
  auto entryOf = [](const DashboardView& view, const std::string& name) -> std::shared_ptr<const json> {
    for (const auto& entry : view.vpcs) {
      if ((*entry)["vpc"]["name"] == name) return entry;
    }
    ADD_FAILURE() << "no entry for vpc " << name;
    return std::make_shared<const json>(json{{"vpc", {{"name", name}}}});
  };
  DashboardView before = service_->dashboard();
  ASSERT_EQ(before.vpcs.size(), 2u);
  ASSERT_EQ((*before.body)["vpcs"].size(), 2u);

  ASSERT_EQ(createSubnet("web", "alpha", "10.0.1.0/24").status, 201);
  DashboardView afterAlpha = service_->dashboard();
  EXPECT_GT(afterAlpha.sequence, before.sequence);
  EXPECT_NE(entryOf(afterAlpha, "alpha").get(), entryOf(before, "alpha").get()) << "alpha: drawn again";
  EXPECT_EQ(entryOf(afterAlpha, "beta").get(), entryOf(before, "beta").get()) << "beta unchanged: kept";
  EXPECT_EQ((*entryOf(afterAlpha, "alpha"))["subnets"][0]["name"], "web");
  for (size_t i = 0; i < afterAlpha.vpcs.size(); ++i)
    EXPECT_EQ((*afterAlpha.body)["vpcs"][i], *afterAlpha.vpcs[i]) << "the body holds the kept entries";

  json patch = dashboardPatch(before, afterAlpha);
  EXPECT_EQ(patch["base"], before.sequence);
  EXPECT_EQ(patch["sequence"], afterAlpha.sequence);
  EXPECT_EQ(patch["vpc_order"], json::array({"alpha", "beta"}));
  ASSERT_EQ(patch["vpcs"].size(), 1u) << patch.dump();
  EXPECT_EQ(patch["vpcs"][0]["vpc"]["name"], "alpha");
  EXPECT_FALSE(patch["parts"].contains("vpcs"));
  EXPECT_FALSE(patch["parts"].contains("host")) << "the host did not change";

  // And the other way round: a change in beta keeps alpha's entry.
  ASSERT_EQ(createSubnet("db", "beta", "10.1.1.0/24").status, 201);
  DashboardView afterBeta = service_->dashboard();
  EXPECT_EQ(entryOf(afterBeta, "alpha").get(), entryOf(afterAlpha, "alpha").get());
  EXPECT_NE(entryOf(afterBeta, "beta").get(), entryOf(afterAlpha, "beta").get());
  json second = dashboardPatch(afterAlpha, afterBeta);
  ASSERT_EQ(second["vpcs"].size(), 1u) << second.dump();
  EXPECT_EQ(second["vpcs"][0]["vpc"]["name"], "beta");

  // Nothing changed: nothing drawn, an empty patch.
  DashboardView again = service_->dashboard();
  EXPECT_EQ(again.sequence, afterBeta.sequence);
  EXPECT_TRUE(dashboardPatch(afterBeta, again)["vpcs"].empty());

  // A rule of a group or an ACL is not drawn: adding one draws no VPC again (nor reads its kernel), and
  // the view is not even built again (its revision stays), so an open page costs a rule change nothing.
  const uint64_t revisionBeforeRules = service_->dashboardRevision();
  schema::SecurityGroupRuleSpec rule;
  rule.protocol = "tcp";
  rule.fromPort = 22;
  rule.toPort = 22;
  rule.cidr = "10.0.0.0/8";
  ASSERT_EQ(handle(api::AddSecurityGroupRule{"beta-default", rule}).status, 201);
  DashboardView afterRule = service_->dashboard();
  EXPECT_EQ(entryOf(afterRule, "beta").get(), entryOf(afterBeta, "beta").get());
  EXPECT_EQ(entryOf(afterRule, "alpha").get(), entryOf(afterBeta, "alpha").get());
  EXPECT_EQ(afterRule.sequence, afterBeta.sequence);
  schema::NetworkAclRuleSpec entry;
  entry.number = 200;
  entry.direction = "ingress";
  entry.action = "deny";
  entry.cidr = "10.9.0.0/16";
  ASSERT_EQ(handle(api::AddNetworkAclRule{"alpha-default", entry}).status, 201);
  ASSERT_EQ(handle(api::DeleteNetworkAclRule{"alpha-default", "ingress", 200}).status, 200);
  EXPECT_EQ(service_->dashboardRevision(), revisionBeforeRules)
      << "a rule change moved the dashboard's revision";
  EXPECT_EQ(service_->dashboard().body.get(), afterRule.body.get()) << "the view was built again";
}

// A VPC's picture patched for members that came, went or changed state is what drawing it again gives
// (the kernel untouched here, so the other ports' readings cannot differ); a member the picture has no
// place for (a subnet made since) makes the patch decline, so the VPC is drawn whole.
// The model's specs below are written with designated initializers that leave the other fields at their
// defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

TEST(DashboardVpcPatch, MembersComingGoingOrChangingStateGiveWhatDrawingItAgainGives) {
  constexpr int64_t kNow = 1700000000;
  net::Topology topology;
  ASSERT_TRUE(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "db", .vpc = "prod", .cidr = "10.0.2.0/24"}, kNow));
  ASSERT_TRUE(topology.createSecurityGroup({.name = "admin", .vpc = "prod"}, kNow));
  NetworkController network(NetworkOptions{}, topology);
  auto reserve = [&](const std::string& name, const std::string& subnet, std::vector<std::string> groups) {
    schema::InstanceSpec spec;
    spec.name = name;
    spec.subnet = subnet;
    spec.securityGroups = std::move(groups);
    auto nic = network.reserveNic(spec, "key-" + name);
    ASSERT_TRUE(nic && *nic) << name;
  };
  auto statesJson = [](const MemberStates& states) {
    json instances = json::array();
    // An empty state is an instance the listing does not have (the dashboard's inputs say so).
    for (const auto& [name, state] : states) {
      if (!state.empty()) instances.push_back({{"name", name}, {"state", state}});
    }
    return json{{"instances", instances}};
  };
  auto member = [&](const std::string& name, const std::string& state) {
    return network.memberTopologyJson(name, state);
  };
  reserve("c", "web", {"admin"});
  reserve("a", "web", {});
  reserve("b", "db", {"admin"});
  const MemberStates before{{"a", "running"}, {"b", "running"}, {"c", "creating"}};
  auto drawn = network.topologyJson("prod", statesJson(before));
  ASSERT_TRUE(drawn) << drawn.error().message();
  json kept = *drawn;
  kept["svg"] = "<svg>kept</svg>";

  network.releaseNic("a");
  reserve("d", "web", {});
  reserve("e", "db", {"admin"});
  reserve("aa", "web", {"admin"});
  const MemberStates after{
      {"aa", "running"}, {"b", "running"}, {"c", "running"}, {"d", "creating"}, {"e", ""}};
  auto patched = patchVpcEntry(kept, before, after, member);
  ASSERT_TRUE(patched);
  auto again = network.topologyJson("prod", statesJson(after));
  ASSERT_TRUE(again) << again.error().message();
  json withoutSvg = *patched;
  withoutSvg.erase("svg");
  EXPECT_EQ(withoutSvg, *again) << withoutSvg.dump(1) << "\n----\n" << again->dump(1);
  const std::string svg = (*patched)["svg"];
  EXPECT_TRUE(svg.starts_with("<svg")) << "drawn again from the patched picture";
  EXPECT_NE(svg.find("data-name=\"aa\""), std::string::npos) << svg;
  EXPECT_EQ(svg.find("data-name=\"a\""), std::string::npos) << "a left: " << svg;

  // Nothing changed: the same picture.
  auto same = patchVpcEntry(*patched, after, after, member);
  ASSERT_TRUE(same);
  EXPECT_EQ(*same, *patched);

  // A member in a subnet the kept picture does not have: declined.
  net::Topology next = topology;
  ASSERT_TRUE(next.createSubnet({.name = "new", .vpc = "prod", .cidr = "10.0.3.0/24"}, kNow));
  ASSERT_TRUE(network.applyTopology(next));
  reserve("f", "new", {});
  MemberStates withF = after;
  withF.emplace_back("f", "running");
  EXPECT_FALSE(patchVpcEntry(*patched, after, withF, member));
}

}  // namespace
}  // namespace corral::daemon
