// The OVN plan of a VPC, purely: the golden rows of a two-subnet VPC with security groups and a network
// ACL and of one with an internet gateway, the encoding's properties (NACL priority order, disjoint stages,
// peer groups as address sets, NAT by reachability), bad input refused by field; and convergence over a
// scripted server (one read, one write; nothing written when the database holds the plan).
#include "net/vpc_ovn.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/unit/net/sample_vpc.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

constexpr int64_t kNow = 1700000000;
const std::filesystem::path kGoldenDir = std::filesystem::path(__FILE__).parent_path() / "golden";

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

// CORRAL_UPDATE_GOLDEN=1 rewrites the golden file from the current output.
void expectGolden(const std::string& text, const std::string& name) {
  const auto path = kGoldenDir / name;
  if (std::getenv("CORRAL_UPDATE_GOLDEN")) std::ofstream(path) << text;
  std::ifstream in(path);
  std::stringstream golden;
  golden << in.rdbuf();
  EXPECT_EQ(text, golden.str()) << "golden file " << path;
}

// The backends' sample VPC (sample_vpc.h), plus a blackhole route in the main table; db is a VM.
Topology sampleTopology() {
  Topology t = sample::topology();
  ok(t.addRoute("prod-main", {.destination = "192.0.2.0/24", .targetType = "blackhole"}));
  return t;
}

std::vector<NicAttachment> sampleNics() {
  return sample::nics(/*dbIsVm=*/true);
}

const OvnRow& row(const OvnVpcPlan& plan, std::string_view object) {
  const OvnRow* found = plan.find(object);
  EXPECT_NE(found, nullptr) << object;
  static const OvnRow none;
  return found ? *found : none;
}

TEST(OvnVpcPlan, TwoSubnetsWithGroupsAndANetworkAclMatchGolden) {
  expectGolden(renderOvnVpcPlan(ok(planOvnVpc(sampleTopology(), "prod", sampleNics()))),
               "ovn_two_subnets.txt");
}

TEST(OvnVpcPlan, IsTheSameWhateverOrderTheNicsCameIn) {
  std::vector<NicAttachment> reversed = sampleNics();
  std::reverse(reversed.begin(), reversed.end());
  EXPECT_EQ(ok(planOvnVpc(sampleTopology(), "prod", sampleNics())),
            ok(planOvnVpc(sampleTopology(), "prod", reversed)));
}

TEST(OvnVpcPlan, NaclRulesTakePrioritiesByNumberAndEndInAnImplicitDeny) {
  const OvnVpcPlan plan = ok(planOvnVpc(sampleTopology(), "prod", sampleNics()));
  const OvnRow& deny = row(plan, "subnet/private/network-acl/strict/ingress/50");
  const OvnRow& allow = row(plan, "subnet/private/network-acl/strict/ingress/100");
  const OvnRow& implicit = row(plan, "subnet/private/network-acl/strict/ingress/implicit-deny");
  // Lower number, higher priority: OVN takes the highest-priority match, so deny 50 wins over allow 100.
  EXPECT_GT(deny.columns["priority"].get<int>(), allow.columns["priority"].get<int>());
  EXPECT_GT(allow.columns["priority"].get<int>(), implicit.columns["priority"].get<int>());
  EXPECT_EQ(deny.columns["action"], "drop");
  EXPECT_EQ(allow.columns["action"], "allow-stateless") << "network ACLs are stateless";
  // "In" is what enters the subnet from the router: the switch's router port, from-lport.
  EXPECT_EQ(allow.columns["direction"], "from-lport");
  EXPECT_EQ(allow.columns["match"],
            "inport == \"corral.router-port.private\" && ip4 && ip4.src == 10.0.0.0/16");
  // "Out" is what leaves it for the router: a policy of the router on the subnet's router port.
  const OvnRow& out = row(plan, "subnet/private/network-acl/strict/egress/100");
  EXPECT_EQ(out.table, "Logical_Router_Policy");
  EXPECT_EQ(out.columns["match"],
            "inport == \"corral.router.private\" && ip4 && tcp.dst >= 1024 && "
            "tcp.dst <= 65535");
  EXPECT_EQ(out.columns["action"], "allow");
  const auto& policies = row(plan, "vpc/prod").references.at("policies");
  EXPECT_NE(
      std::find(policies.begin(), policies.end(), "subnet/private/network-acl/strict/egress/implicit-deny"),
      policies.end());
}

TEST(OvnVpcPlan, GroupsAreStatefulPortGroupsWithADefaultDropAndPeerGroupsAsAddressSets) {
  const OvnVpcPlan plan = ok(planOvnVpc(sampleTopology(), "prod", sampleNics()));
  const OvnRow& web = row(plan, "security-group/web");
  EXPECT_EQ(web.columns["name"], "corral_sg_web");
  EXPECT_EQ(web.references.at("ports"), std::vector<std::string>{"nic/web-1"});
  const OvnRow& ssh = row(plan, "security-group/web/rule/3");  // 1: a new group's egress to anywhere
  EXPECT_EQ(ssh.columns["action"], "allow-related");
  EXPECT_EQ(ssh.columns["direction"], "to-lport");
  EXPECT_EQ(ssh.columns["match"],
            "outport == @corral_sg_web && ip4 && ip4.src == $corral_sg_admin_ip4 && tcp.dst == 22");
  const OvnRow& drop = row(plan, "security-group/web/drop-ingress");
  EXPECT_EQ(drop.columns["action"], "drop");
  EXPECT_LT(drop.columns["priority"].get<int>(), ssh.columns["priority"].get<int>());
  // A NIC without groups is in the VPC's default group, whose members reach each other.
  EXPECT_EQ(row(plan, "security-group/prod-default").references.at("ports"),
            std::vector<std::string>{"nic/db"});
  EXPECT_EQ(row(plan, "security-group/prod-default").columns["name"], "corral_sg_prod_default");
}

TEST(OvnVpcPlan, NicPortsCarryTheInstanceMacAndAddressAndLockThemDown) {
  const OvnVpcPlan plan = ok(planOvnVpc(sampleTopology(), "prod", sampleNics()));
  const OvnRow& db = row(plan, "nic/db");
  EXPECT_EQ(db.columns["name"], ovnNicPortName("db"));
  const std::string port = instanceMac("db", true) + " 10.0.2.7";
  EXPECT_EQ(db.columns["addresses"], ovsdb::set({port}));
  EXPECT_EQ(db.columns["port_security"], ovsdb::set({port}));
  // The router's port on the subnet: .1, with the MAC the nftables backend gives the subnet's bridge.
  const OvnRow& routerPort = row(plan, "subnet/private/router-port");
  EXPECT_EQ(routerPort.columns["networks"], ovsdb::set({"10.0.2.1/24"}));
  EXPECT_EQ(routerPort.columns["mac"], subnetBridgeMac(subnetBridgeName("prod", "private")));
}

TEST(OvnVpcPlan, NicsOfOtherVpcsAreIgnored) {
  Topology t = sampleTopology();
  ok(t.createVpc({.name = "other", .cidr = "10.1.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "elsewhere", .vpc = "other", .cidr = "10.1.1.0/24"}, kNow));
  std::vector<NicAttachment> nics = sampleNics();
  nics.push_back({.instance = "far", .subnet = "elsewhere", .address = "10.1.1.9"});
  EXPECT_EQ(ok(planOvnVpc(t, "prod", nics)), ok(planOvnVpc(t, "prod", sampleNics())));
  const OvnVpcPlan other = ok(planOvnVpc(t, "other", nics));
  EXPECT_NE(other.find("nic/far"), nullptr);
  EXPECT_EQ(other.find("nic/web-1"), nullptr);
}

// The nftables backend's gateway sample (tests/unit/net/nft_test.cc): public (routed to the internet
// gateway), private (routed to a NAT gateway) and isolated subnets; web-1 and app with public addresses.
Topology gatewayTopology() {
  Topology t;
  ok(t.createVpc({.name = "shop", .cidr = "10.20.0.0/16"}, kNow));
  ok(t.createRouteTable({.name = "public-rt", .vpc = "shop"}, kNow));
  ok(t.createRouteTable({.name = "private-rt", .vpc = "shop"}, kNow));
  ok(t.createSubnet({.name = "public", .vpc = "shop", .cidr = "10.20.1.0/24", .routeTable = "public-rt"},
                    kNow));
  ok(t.createSubnet({.name = "private", .vpc = "shop", .cidr = "10.20.2.0/24", .routeTable = "private-rt"},
                    kNow));
  ok(t.createSubnet({.name = "isolated", .vpc = "shop", .cidr = "10.20.3.0/24"}, kNow));
  ok(t.createInternetGateway({.name = "shop-igw", .vpc = "shop"}, kNow));
  ok(t.createNatGateway({.name = "shop-nat", .subnet = "public"}, kNow));
  ok(t.addRoute("public-rt",
                {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "shop-igw"}));
  ok(t.addRoute("private-rt",
                {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "shop-nat"}));
  return t;
}

std::vector<NicAttachment> gatewayNics() {
  return {{.instance = "web-1",
           .subnet = "public",
           .address = "10.20.1.10",
           .publicAddress = "100.64.128.1",
           .publish = {{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}}},
          {.instance = "app",
           .subnet = "private",
           .address = "10.20.2.20",
           .publicAddress = "100.64.128.2",
           .publish = {{.protocol = Protocol::Udp, .outsidePort = 9000, .instancePort = 9000}}},
          {.instance = "db",
           .subnet = "isolated",
           .address = "10.20.3.30",
           .publish = {{.protocol = Protocol::Tcp, .outsidePort = 5432, .instancePort = 5432}}}};
}

// Three VPCs in a row, as the nftables backend's peering tests: a (10.0.0.0/16) – b (10.1.0.0/16) – c
// (10.2.0.0/16), peered a–b ("ab", a requests) and b–c ("bc"); a's and b's main tables route to each
// other through ab, c's to b through bc; b's group "b-db" lets a's "a-app" in on 5432.
Topology peeredTopology() {
  Topology t;
  ok(t.createVpc({.name = "a", .cidr = "10.0.0.0/16"}, kNow));
  ok(t.createVpc({.name = "b", .cidr = "10.1.0.0/16"}, kNow));
  ok(t.createVpc({.name = "c", .cidr = "10.2.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "a1", .vpc = "a", .cidr = "10.0.1.0/24"}, kNow));
  ok(t.createSubnet({.name = "b1", .vpc = "b", .cidr = "10.1.1.0/24"}, kNow));
  ok(t.createSubnet({.name = "c1", .vpc = "c", .cidr = "10.2.1.0/24"}, kNow));
  ok(t.createPeering({.name = "ab", .vpc = "a", .peerVpc = "b"}, kNow));
  ok(t.createPeering({.name = "bc", .vpc = "b", .peerVpc = "c"}, kNow));
  ok(t.addRoute("a-main", {.destination = "10.1.0.0/16", .targetType = "peering", .targetName = "ab"}));
  ok(t.addRoute("b-main", {.destination = "10.0.0.0/16", .targetType = "peering", .targetName = "ab"}));
  ok(t.addRoute("b-main", {.destination = "10.2.0.0/16", .targetType = "peering", .targetName = "bc"}));
  ok(t.addRoute("c-main", {.destination = "10.1.0.0/16", .targetType = "peering", .targetName = "bc"}));
  ok(t.createSecurityGroup({.name = "a-app", .vpc = "a"}, kNow));
  ok(t.createSecurityGroup({.name = "b-db", .vpc = "b"}, kNow));
  ok(t.addSecurityGroupRule(
      "b-db",
      {.direction = "ingress", .protocol = "tcp", .fromPort = 5432, .toPort = 5432, .peerGroup = "a-app"}));
  return t;
}

std::vector<NicAttachment> peeredNics() {
  return {{.instance = "app", .subnet = "a1", .address = "10.0.1.10", .securityGroups = {"a-app"}},
          {.instance = "db", .subnet = "b1", .address = "10.1.1.20", .securityGroups = {"b-db"}},
          {.instance = "far", .subnet = "c1", .address = "10.2.1.30"}};
}

TEST(OvnVpcPlan, TwoPeeredVpcsMatchGolden) {
  const Topology t = peeredTopology();
  expectGolden(renderOvnVpcPlan(ok(planOvnVpc(t, "a", peeredNics()))) +
                   renderOvnVpcPlan(ok(planOvnVpc(t, "b", peeredNics()))),
               "ovn_peered.txt");
}

TEST(OvnVpcPlan, PeeringEndsNameEachOtherAndRoutesLeadToTheOtherEnd) {
  const Topology t = peeredTopology();
  const OvnVpcPlan a = ok(planOvnVpc(t, "a", peeredNics()));
  const OvnVpcPlan b = ok(planOvnVpc(t, "b", peeredNics()));
  const OvnRow& aEnd = row(a, "peering/ab/router-port");
  const OvnRow& bEnd = row(b, "peering/ab/router-port");
  // Each plan holds its own end only, and the two ends point at each other.
  EXPECT_EQ(aEnd.columns["name"], ovnPeeringPortName("a", "ab"));
  EXPECT_EQ(aEnd.columns["peer"], ovsdb::set({ovnPeeringPortName("b", "ab")}));
  EXPECT_EQ(bEnd.columns["peer"], ovsdb::set({ovnPeeringPortName("a", "ab")}));
  // The peering's /30: .1 on the requester's side, .2 on the accepter's (as the nftables backend).
  EXPECT_EQ(aEnd.columns["networks"], ovsdb::set({"169.254.248.1/30"}));
  EXPECT_EQ(bEnd.columns["networks"], ovsdb::set({"169.254.248.2/30"}));
  EXPECT_NE(aEnd.columns["mac"], bEnd.columns["mac"]);
  EXPECT_FALSE(aEnd.columns["options"].dump().find("route_table") != std::string::npos)
      << "the link's port routes by the global table: connected routes only";
  const OvnRow& aRoute = row(a, "route-table/a-main/route/10.1.0.0/16");
  EXPECT_EQ(aRoute.columns["nexthop"], "169.254.248.2");
  EXPECT_EQ(aRoute.columns["route_table"], "a-main");
  EXPECT_EQ(row(b, "route-table/b-main/route/10.0.0.0/16").columns["nexthop"], "169.254.248.1");
  // Planning twice gives the same rows (both sides plan from the topology alone).
  EXPECT_EQ(a, ok(planOvnVpc(t, "a", peeredNics())));
}

TEST(OvnVpcPlan, PeeringIsNotTransitive) {
  const Topology t = peeredTopology();
  const OvnVpcPlan a = ok(planOvnVpc(t, "a", peeredNics()));
  const OvnVpcPlan b = ok(planOvnVpc(t, "b", peeredNics()));
  // a knows nothing of c: no port, no route, no row naming it.
  EXPECT_EQ(a.find("peering/bc/router-port"), nullptr);
  EXPECT_EQ(renderOvnVpcPlan(a).find("10.2."), std::string::npos);
  EXPECT_EQ(renderOvnVpcPlan(a).find(".c\""), std::string::npos);
  // b has both ends, and no static route outside a route table (what arrives from a peering finds only
  // b's connected routes).
  EXPECT_NE(b.find("peering/ab/router-port"), nullptr);
  EXPECT_NE(b.find("peering/bc/router-port"), nullptr);
  for (const OvnRow& r : b.rows) {
    if (r.table == "Logical_Router_Static_Route") {
      EXPECT_NE(r.columns["route_table"], "") << r.object;
    }
  }
}

TEST(OvnVpcPlan, RulesNamingAPeeredVpcsGroupUseItsAddressSet) {
  const OvnVpcPlan b = ok(planOvnVpc(peeredTopology(), "b", peeredNics()));
  bool found = false;
  for (const OvnRow& r : b.rows) {
    if (r.table != "ACL" || r.object.find("security-group/b-db/rule/") != 0) continue;
    if (r.columns["match"].get<std::string>().find("$corral_sg_a_app_ip4") == std::string::npos) continue;
    found = true;
    EXPECT_EQ(r.columns["match"],
              "outport == @corral_sg_b_db && ip4 && ip4.src == $corral_sg_a_app_ip4 && tcp.dst == 5432");
  }
  EXPECT_TRUE(found) << renderOvnVpcPlan(b);
  // The port group itself is the peer's row: b's plan does not hold it, a's does.
  EXPECT_EQ(b.find("security-group/a-app"), nullptr);
  EXPECT_NE(ok(planOvnVpc(peeredTopology(), "a", peeredNics())).find("security-group/a-app"), nullptr);
}

TEST(OvnVpcPlan, WithoutThePeeringNeitherSideHasItsRows) {
  Topology t = peeredTopology();
  ok(t.deleteSecurityGroupRule("b-db", 2));
  ok(t.deleteRoute("a-main", "10.1.0.0/16"));
  ok(t.deleteRoute("b-main", "10.0.0.0/16"));
  ok(t.deletePeering("ab"));
  const OvnVpcPlan a = ok(planOvnVpc(t, "a", peeredNics()));
  const OvnVpcPlan b = ok(planOvnVpc(t, "b", peeredNics()));
  EXPECT_EQ(a.find("peering/ab/router-port"), nullptr);
  EXPECT_EQ(b.find("peering/ab/router-port"), nullptr);
  EXPECT_NE(b.find("peering/bc/router-port"), nullptr);
  EXPECT_EQ(renderOvnVpcPlan(b).find("corral_sg_a_app"), std::string::npos);
}

const OvnGatewaySettings kGateway{
    .chassis = "h1", .network = "corral-uplink", .transit = *Cidr::parse("100.64.0.8/30")};

TEST(OvnVpcPlan, InternetGatewayMatchesGolden) {
  expectGolden(renderOvnVpcPlan(ok(planOvnVpc(gatewayTopology(), "shop", gatewayNics(), &kGateway))),
               "ovn_gateway.txt");
}

TEST(OvnVpcPlan, InternetGatewayNatsFollowEachSubnetsReachability) {
  const OvnVpcPlan plan = ok(planOvnVpc(gatewayTopology(), "shop", gatewayNics(), &kGateway));
  // The gateway port: the transit's .2, on the chosen chassis.
  EXPECT_EQ(row(plan, "internet-gateway/shop-igw/router-port").columns["networks"],
            ovsdb::set({"100.64.0.10/30"}));
  EXPECT_EQ(row(plan, "internet-gateway/shop-igw/chassis").columns["chassis_name"], "h1");
  // Public and NAT-routed subnets leave as the .2; the isolated one not at all.
  EXPECT_EQ(row(plan, "internet-gateway/shop-igw/snat/public").columns["logical_ip"], "10.20.1.0/24");
  EXPECT_EQ(row(plan, "internet-gateway/shop-igw/snat/private").columns["external_ip"], "100.64.0.10");
  EXPECT_EQ(plan.find("internet-gateway/shop-igw/snat/isolated"), nullptr);
  // A public address is 1:1 NAT only in a public subnet (app's, in the private one, is not used).
  EXPECT_EQ(row(plan, "nic/web-1/public-address").columns["type"], "dnat_and_snat");
  EXPECT_EQ(plan.find("nic/app/public-address"), nullptr);
  // Published ports: a VIP on the gateway's .2 per port, one load balancer per protocol, and the allow
  // rule on the NIC's port; an isolated subnet's NIC publishes nothing.
  EXPECT_EQ(row(plan, "internet-gateway/shop-igw/publish/tcp").columns["vips"],
            ovsdb::map({{"100.64.0.10:8080", "10.20.1.10:80"}}));
  EXPECT_EQ(row(plan, "internet-gateway/shop-igw/publish/udp").columns["vips"],
            ovsdb::map({{"100.64.0.10:9000", "10.20.2.20:9000"}}));
  EXPECT_EQ(row(plan, "nic/web-1/publish/tcp/8080").columns["match"],
            "outport == \"corral.nic.web-1\" && ip4 && ip4.src != 10.20.0.0/16 && tcp.dst == 80");
  EXPECT_EQ(plan.find("nic/db/publish/tcp/5432"), nullptr);
  // Both default routes lead to the outside's .1, each in its own table.
  EXPECT_EQ(row(plan, "route-table/private-rt/route/0.0.0.0/0").columns["nexthop"], "100.64.0.9");
  EXPECT_EQ(row(plan, "route-table/public-rt/route/0.0.0.0/0").columns["route_table"], "public-rt");
  EXPECT_EQ(row(plan, "subnet/public/router-port").columns["options"],
            ovsdb::map({{"route_table", "public-rt"}}));

  // Without the outside's settings nothing of the gateway is planned, nor any route towards it.
  const OvnVpcPlan alone = ok(planOvnVpc(gatewayTopology(), "shop", gatewayNics()));
  for (const OvnRow& r : alone.rows) {
    EXPECT_FALSE(r.object.starts_with("internet-gateway/")) << r.object;
    EXPECT_NE(r.table, "Logical_Router_Static_Route") << r.object;
    EXPECT_NE(r.table, "NAT") << r.object;
  }
}

TEST(OvnVpcPlan, BadInputIsAnErrorNamingTheField) {
  const Topology t = sampleTopology();
  auto unknownVpc = planOvnVpc(t, "nope", sampleNics());
  ASSERT_FALSE(unknownVpc);
  EXPECT_EQ(unknownVpc.error().field(), "vpc");
  EXPECT_NE(unknownVpc.error().message().find("nope"), std::string::npos);

  std::vector<NicAttachment> nics = sampleNics();
  nics.push_back({.instance = "lost", .subnet = "nowhere", .address = "10.0.9.9"});
  auto unknownSubnet = planOvnVpc(t, "prod", nics);
  ASSERT_FALSE(unknownSubnet);
  EXPECT_EQ(unknownSubnet.error().field(), "nics[3].subnet");
  EXPECT_NE(unknownSubnet.error().message().find("nowhere"), std::string::npos);

  nics = sampleNics();
  nics[1].address = "10.0.2.5";
  auto outside = planOvnVpc(t, "prod", nics);
  ASSERT_FALSE(outside);
  EXPECT_EQ(outside.error().field(), "nics[1].address");

  nics = sampleNics();
  nics[0].securityGroups = {"web", "ghosts"};
  auto unknownGroup = planOvnVpc(t, "prod", nics);
  ASSERT_FALSE(unknownGroup);
  EXPECT_EQ(unknownGroup.error().field(), "nics[0].securityGroups[1]");

  std::vector<NicAttachment> twicePublished = gatewayNics();
  twicePublished[1].publish.push_back({.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 81});
  auto published = planOvnVpc(gatewayTopology(), "shop", twicePublished, &kGateway);
  ASSERT_FALSE(published);
  EXPECT_EQ(published.error().field(), "nics[1].publish[1]");

  nics = sampleNics();
  nics.push_back({.instance = "web-1", .subnet = "private", .address = "10.0.2.8"});
  auto twice = planOvnVpc(t, "prod", nics);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().field(), "nics[3].instance");
}

// ---- Convergence over a scripted server ----

using ovsdb::Json;

// Plays back the server's replies (each "$ID" becomes the id of the last request) and records what the
// client sent: the seam tests/unit/net/ovsdb_test.cc uses too.
class ScriptedTransport final : public ovsdb::OvsdbTransport {
 public:
  explicit ScriptedTransport(std::deque<std::string> replies) : replies_(std::move(replies)) {}
  Status send(std::string_view bytes) override {
    sent.push_back(Json::parse(bytes));
    return {};
  }
  Result<std::optional<std::string>> receive(std::chrono::milliseconds) override {
    if (replies_.empty()) return std::optional<std::string>();
    std::string reply = std::move(replies_.front());
    replies_.pop_front();
    const std::string id = sent.empty() ? "0" : sent.back()["id"].dump();
    for (size_t at; (at = reply.find("$ID")) != std::string::npos;) reply.replace(at, 3, id);
    return std::optional<std::string>(reply);
  }
  std::vector<Json> sent;

 private:
  std::deque<std::string> replies_;
};

std::string reply(const Json& result) {
  return fmt::format(R"({{"id":$ID,"result":{},"error":null}})", result.dump());
}

// The select results of a database that holds exactly `plan`'s rows (uuids made up), one per table.
Json databaseHolding(const OvnVpcPlan& plan) {
  std::map<std::string, std::string> uuidOf;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    uuidOf[plan.rows[i].object] = fmt::format("00000000-0000-0000-0000-{:012}", i);
  }
  Json results = Json::array();
  for (const std::string& table : ovnTableOrder()) {
    Json rows = Json::array();
    for (const OvnRow& row : plan.rows) {
      if (row.table != table) continue;
      Json stored = row.columns;
      stored["_uuid"] = ovsdb::uuid(uuidOf[row.object]);
      stored["external_ids"] = ovsdb::map({{"corral-object", row.object}, {"corral-vpc", plan.vpc}});
      for (const auto& [column, objects] : row.references) {
        std::vector<Json> uuids;
        for (const std::string& object : objects) uuids.push_back(ovsdb::uuid(uuidOf[object]));
        // OVSDB writes a set of one as the bare atom: the comparison must not mind.
        stored[column] = uuids.size() == 1 ? uuids.front() : ovsdb::set(uuids);
      }
      rows.push_back(stored);
    }
    results.push_back(Json{{"rows", rows}});
  }
  return results;
}

TEST(ConvergeOvnVpc, AnEmptyDatabaseGetsEveryRowInOneTransaction) {
  const OvnVpcPlan plan = ok(planOvnVpc(sampleTopology(), "prod", sampleNics()));
  Json empty = Json::array();
  for (size_t i = 0; i < ovnTableOrder().size(); ++i) empty.push_back(Json{{"rows", Json::array()}});
  const size_t waits = ovnTableOrder().size();
  Json inserted = Json::array();
  for (size_t i = 0; i < waits; ++i) inserted.push_back(Json::object());
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    inserted.push_back(Json{{"uuid", ovsdb::uuid(fmt::format("00000000-0000-0000-0000-{:012}", i))}});
  }
  auto owned = std::make_unique<ScriptedTransport>(std::deque<std::string>{reply(empty), reply(inserted)});
  ScriptedTransport* transport = owned.get();
  ovsdb::OvsdbClient client(std::move(owned), std::chrono::milliseconds(200));
  ChangeLog changes = ok(convergeOvnVpc(client, plan));
  EXPECT_EQ(changes.size(), plan.rows.size());
  ASSERT_EQ(transport->sent.size(), 2u) << "one read, one write";
  // The read: one select per table, of the rows marked with the VPC.
  const Json& selects = transport->sent[0]["params"];
  ASSERT_EQ(selects.size(), 1 + ovnTableOrder().size());
  EXPECT_EQ(selects[1]["op"], "select");
  EXPECT_EQ(selects[1]["where"][0],
            Json::parse(R"(["external_ids","includes",["map",[["corral-vpc","prod"]]]])"));
  // The write: first a wait per table that the VPC's rows are still those read (none here), then an
  // insert per row, each named, children before the parents that name them.
  const Json& ops = transport->sent[1]["params"];
  ASSERT_EQ(ops.size(), 1 + waits + plan.rows.size());
  for (size_t i = 1; i <= waits; ++i) {
    EXPECT_EQ(ops[i]["op"], "wait");
    EXPECT_EQ(ops[i]["until"], "==");
    EXPECT_EQ(ops[i]["rows"], Json::array());
    EXPECT_EQ(ops[i]["where"], selects[i]["where"]);
  }
  std::set<std::string> named;
  for (size_t i = 1 + waits; i < ops.size(); ++i) {
    EXPECT_EQ(ops[i]["op"], "insert");
    EXPECT_EQ(ops[i]["row"]["external_ids"],
              ovsdb::map({{"corral-object", plan.rows[i - 1 - waits].object}, {"corral-vpc", "prod"}}));
    for (const auto& [column, value] : ops[i]["row"].items()) {
      for (const Json& element : ovsdb::decodeSet(value).value_or(std::vector<Json>{})) {
        if (element.is_array() && element.size() == 2 && element[0] == "named-uuid") {
          EXPECT_TRUE(named.contains(element[1]))
              << ops[i]["table"] << " names " << element[1] << " before it";
        }
      }
    }
    named.insert(ops[i]["uuid-name"].get<std::string>());
  }
}

TEST(ConvergeOvnVpc, ADatabaseHoldingThePlanIsOnlyRead) {
  const OvnVpcPlan plan = ok(planOvnVpc(sampleTopology(), "prod", sampleNics()));
  auto owned = std::make_unique<ScriptedTransport>(std::deque<std::string>{reply(databaseHolding(plan))});
  ScriptedTransport* transport = owned.get();
  ovsdb::OvsdbClient client(std::move(owned), std::chrono::milliseconds(200));
  EXPECT_EQ(ok(convergeOvnVpc(client, plan)), ChangeLog{});
  EXPECT_EQ(transport->sent.size(), 1u) << "nothing to write";
}

TEST(ConvergeOvnVpc, DriftIsRepairedAndARefusalNamesTheVpc) {
  const OvnVpcPlan plan = ok(planOvnVpc(sampleTopology(), "prod", sampleNics()));
  Json held = databaseHolding(plan);
  // An ACL whose action someone changed, and a marked row the plan does not name.
  const size_t acl = 0;
  held[acl]["rows"][0]["action"] = "allow";
  held[acl]["rows"].push_back(
      Json{{"_uuid", ovsdb::uuid("99999999-0000-0000-0000-000000000000")},
           {"external_ids",
            ovsdb::map({{"corral-object", "security-group/gone/rule/1"}, {"corral-vpc", "prod"}})}});
  const size_t waits = ovnTableOrder().size();
  Json result = Json::array();
  for (size_t i = 0; i < waits; ++i) result.push_back(Json::object());
  result.push_back({{"count", 1}});
  result.push_back({{"count", 1}});
  result.push_back({{"error", "constraint violation"}, {"details", "made up"}});
  auto owned = std::make_unique<ScriptedTransport>(std::deque<std::string>{reply(held), reply(result)});
  ScriptedTransport* transport = owned.get();
  ovsdb::OvsdbClient client(std::move(owned), std::chrono::milliseconds(200));
  auto refused = convergeOvnVpc(client, plan);
  ASSERT_FALSE(refused);
  // OVSDB applies a transaction whole or not at all: the commit's refusal changed nothing.
  EXPECT_NE(refused.error().message().find("converge vpc prod in OVN"), std::string::npos)
      << refused.error().message();
  ASSERT_EQ(transport->sent.size(), 2u);
  const Json& ops = transport->sent[1]["params"];
  ASSERT_EQ(ops.size(), 3u + waits);
  // The ACL table's wait names both its rows as read: the drifted one and the stray one.
  EXPECT_EQ(ops[1 + acl]["op"], "wait");
  EXPECT_EQ(ops[1 + acl]["rows"].size(), held[acl]["rows"].size());
  EXPECT_EQ(ops[1 + waits]["op"], "update");
  EXPECT_EQ(ops[1 + waits]["row"], Json({{"action", plan.rows[0].columns["action"]}}));
  EXPECT_EQ(ops[2 + waits]["op"], "delete");
  EXPECT_EQ(ops[2 + waits]["where"][0][2], ovsdb::uuid("99999999-0000-0000-0000-000000000000"));
}

// Another corrald converged the same VPC between this one's read and write: a wait does not hold, nothing
// is written, and the convergence reads again and finds the rows it wanted (no row twice).
TEST(ConvergeOvnVpc, AnotherWriterInBetweenMeansReadingAgainNotWritingTwice) {
  const OvnVpcPlan plan = ok(planOvnVpc(sampleTopology(), "prod", sampleNics()));
  Json empty = Json::array();
  for (size_t i = 0; i < ovnTableOrder().size(); ++i) empty.push_back(Json{{"rows", Json::array()}});
  Json timedOut = Json::array({Json{{"error", "timed out"}, {"details", "\"wait\" timed out"}}});
  auto owned = std::make_unique<ScriptedTransport>(
      std::deque<std::string>{reply(empty), reply(timedOut), reply(databaseHolding(plan))});
  ScriptedTransport* transport = owned.get();
  ovsdb::OvsdbClient client(std::move(owned), std::chrono::milliseconds(200));
  EXPECT_EQ(ok(convergeOvnVpc(client, plan)), ChangeLog{});
  ASSERT_EQ(transport->sent.size(), 3u) << "read, a write refused whole, read again";
  EXPECT_EQ(transport->sent[1]["params"][1]["op"], "wait");
  EXPECT_EQ(transport->sent[2]["params"][1]["op"], "select");
}

}  // namespace
}  // namespace corral::net
