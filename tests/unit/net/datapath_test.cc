// The VPC datapath plan, purely: kernel object names, transit and public address choice, port forwards,
// and planVpc's bridges, route tables, internet gateway and NIC ports.
#include "net/datapath.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <set>
#include <string>

#include "net/nft.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

constexpr int64_t kNow = 1700000000;

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

Cidr cidr(std::string_view text) {
  return *Cidr::parse(text);
}
Ipv4Address address(std::string_view text) {
  return *Ipv4Address::parse(text);
}

// ---- Names ----

TEST(DatapathNames, NetnsCarriesThePrefixAndParsesBack) {
  EXPECT_EQ(vpcNetnsName(kDefaultNetnsPrefix, "prod"), "corral-vpc-prod");
  EXPECT_EQ(vpcNetnsName("corral-t42-", "prod"), "corral-t42-vpc-prod");
  EXPECT_EQ(vpcFromNetnsName("corral-", "corral-vpc-prod"), "prod");
  EXPECT_EQ(vpcFromNetnsName("corral-t42-", "corral-t42-vpc-prod"), "prod");
  // Another daemon's namespaces and foreign ones are not ours.
  EXPECT_EQ(vpcFromNetnsName("corral-", "corral-t42-vpc-prod"), std::nullopt);
  EXPECT_EQ(vpcFromNetnsName("corral-t42-", "corral-vpc-prod"), std::nullopt);
  EXPECT_EQ(vpcFromNetnsName("corral-", "docker-netns"), std::nullopt);
  EXPECT_EQ(vpcFromNetnsName("corral-", "corral-vpc-"), std::nullopt);
}

TEST(DatapathNames, LinkNamesAreHashedFitAndDifferByKind) {
  // FNV-1a of the empty string is its offset basis, 0x811c9dc5; of "a" 0xe40c292c.
  EXPECT_EQ(gatewayLinkName(""), "crlg811c9dc5");
  EXPECT_EQ(uplinkLinkName("a"), "crlue40c292c");
  const std::string longName(63, 'x');
  for (const std::string& name :
       {subnetBridgeName(longName, longName), instanceVethName(longName), instanceTapName(longName),
        gatewayLinkName(vpcNetnsName("corral-", longName)),
        uplinkLinkName(vpcNetnsName("corral-", longName))}) {
    EXPECT_EQ(name.size(), 12u) << name;
    EXPECT_TRUE(name.starts_with(kLinkPrefix)) << name;
  }
  EXPECT_EQ(subnetBridgeName("prod", "web"), subnetBridgeName("prod", "web")) << "stable";
  EXPECT_NE(subnetBridgeName("prod", "web"), subnetBridgeName("test", "web"));
  EXPECT_EQ(instanceVethName("k").substr(0, 4), "crlv");
  EXPECT_EQ(instanceTapName("k").substr(0, 4), "crlt");
  EXPECT_NE(gatewayLinkName("corral-vpc-a"), gatewayLinkName("corral-t1-vpc-a"));
  EXPECT_EQ(gatewayLinkName("n").substr(4), uplinkLinkName("n").substr(4)) << "one hash names the pair";
}

TEST(DatapathNames, MacsAreLocalForContainersAndQemuForVms) {
  EXPECT_TRUE(instanceMac("web-1", true).starts_with("52:54:00:"));
  EXPECT_TRUE(instanceMac("web-1", false).starts_with("02:c0:"));
  EXPECT_EQ(instanceMac("web-1", false).size(), 17u);
  EXPECT_NE(instanceMac("web-1", false), instanceMac("web-2", false));
}

TEST(DatapathNames, ASubnetsBridgeHasAStableLocalMacOfItsOwn) {
  const std::string bridge = subnetBridgeName("prod", "web");
  EXPECT_TRUE(subnetBridgeMac(bridge).starts_with("02:c1:")) << "locally administered, apart from instances'";
  EXPECT_EQ(subnetBridgeMac(bridge).size(), 17u);
  EXPECT_EQ(subnetBridgeMac(bridge), subnetBridgeMac(subnetBridgeName("prod", "web"))) << "stable";
  EXPECT_NE(subnetBridgeMac(bridge), subnetBridgeMac(subnetBridgeName("prod", "db")));
}

// ---- Transit and public addresses ----

UplinkSettings smallPools() {
  UplinkSettings settings;
  settings.transitPool = cidr("10.99.0.0/28");  // four /30s
  settings.publicPool = cidr("10.98.0.0/29");   // .1 to .6 usable
  return settings;
}

TEST(ChooseTransit, DefaultPoolGivesAStableSlash30InThePool) {
  UplinkSettings settings;
  Cidr transit = ok(chooseTransit(settings, "prod", {}));
  EXPECT_EQ(transit.prefix(), 30);
  EXPECT_TRUE(settings.transitPool.contains(transit));
  EXPECT_EQ(transit, ok(chooseTransit(settings, "prod", {})));
  EXPECT_NE(transit, ok(chooseTransit(settings, "test", {}))) << "the hash spreads VPCs";
}

TEST(ChooseTransit, ProbesPastTakenSlotsAndWrapsAround) {
  UplinkSettings settings = smallPools();
  const uint32_t base = settings.transitPool.network().value();
  Cidr first = ok(chooseTransit(settings, "prod", {}));
  const uint32_t slot = (first.network().value() - base) / 4;
  std::set<Cidr> taken{first};
  for (uint32_t probe = 1; probe < 4; ++probe) {
    Cidr next = ok(chooseTransit(settings, "prod", taken));
    EXPECT_EQ((next.network().value() - base) / 4, (slot + probe) % 4) << next.str();
    EXPECT_FALSE(taken.contains(next));
    taken.insert(next);
  }
  auto full = chooseTransit(settings, "prod", taken);
  ASSERT_FALSE(full.has_value());
  EXPECT_EQ(full.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(full.error().message().find("full"), std::string::npos) << full.error().message();
}

// Two VPCs whose names hash to the same slot of the small pool: the older keeps it, the younger probes
// past it, whichever gateway came first (every corrald of a cluster must agree, net/datapath.h).
TEST(TransitInModel, OlderVpcsChooseFirstWhateverOrderTheGatewaysCameIn) {
  UplinkSettings settings = smallPools();
  std::string older = "v0", younger;
  for (int i = 1; i < 50 && younger.empty(); ++i) {
    const std::string candidate = "v" + std::to_string(i);
    if (ok(chooseTransit(settings, candidate, {})) == ok(chooseTransit(settings, older, {})))
      younger = candidate;
  }
  ASSERT_FALSE(younger.empty()) << "no two names of v0..v49 share a slot of four";
  auto topology = [&](bool olderGatewayFirst) {
    Topology t;
    ok(t.createVpc({.name = younger, .cidr = "10.2.0.0/16"}, kNow + 1));
    ok(t.createVpc({.name = older, .cidr = "10.1.0.0/16"}, kNow));
    ok(t.createVpc({.name = "none", .cidr = "10.3.0.0/16"}, kNow - 1));
    std::vector<std::string> order = {older, younger};
    if (!olderGatewayFirst) std::swap(order[0], order[1]);
    for (const std::string& vpc : order)
      ok(t.createInternetGateway({.name = vpc + "-igw", .vpc = vpc}, kNow + 2));
    return t;
  };
  const Cidr olderTransit = ok(chooseTransit(settings, older, {}));
  const Cidr youngerTransit = ok(chooseTransit(settings, younger, {olderTransit}));
  for (bool olderGatewayFirst : {true, false}) {
    const Topology t = topology(olderGatewayFirst);
    EXPECT_EQ(ok(transitInModel(settings, t, older)), olderTransit) << olderGatewayFirst;
    EXPECT_EQ(ok(transitInModel(settings, t, younger)), youngerTransit) << olderGatewayFirst;
    auto none = transitInModel(settings, t, "none");
    ASSERT_FALSE(none.has_value());
    EXPECT_EQ(none.error().kind(), ErrorKind::NotFound);
  }
}

TEST(ChooseTransit, ATakenLargerBlockCoversItsSlash30s) {
  UplinkSettings settings = smallPools();
  Cidr transit = ok(chooseTransit(settings, "prod", {cidr("10.99.0.0/29")}));
  EXPECT_TRUE(cidr("10.99.0.8/29").contains(transit)) << transit.str();
}

TEST(ChooseTransit, APoolSmallerThanASlash30IsRefused) {
  UplinkSettings settings;
  settings.transitPool = cidr("10.99.0.0/31");
  auto result = chooseTransit(settings, "prod", {});
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error().kind(), ErrorKind::Conflict);
}

TEST(ChoosePublicAddress, LowestFreeSkippingNetworkAndBroadcast) {
  UplinkSettings settings = smallPools();
  EXPECT_EQ(ok(choosePublicAddress(settings, {})), address("10.98.0.1"));
  EXPECT_EQ(ok(choosePublicAddress(settings, {address("10.98.0.1"), address("10.98.0.3")})),
            address("10.98.0.2"));
  std::set<Ipv4Address> taken;
  for (int host = 1; host <= 6; ++host) taken.insert(address(fmt::format("10.98.0.{}", host)));
  auto exhausted = choosePublicAddress(settings, taken);
  ASSERT_FALSE(exhausted.has_value()) << "the broadcast address .7 is never handed out";
  EXPECT_EQ(exhausted.error().kind(), ErrorKind::Conflict);
  settings.publicPool = cidr("10.98.0.0/31");
  EXPECT_FALSE(choosePublicAddress(settings, {}).has_value());
}

// ---- Port forwards ----

TEST(ParsePortForward, AcceptsTcpByDefaultAndUdp) {
  EXPECT_EQ(ok(parsePortForward("8080:80", "publish[0]")),
            (PortForward{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}));
  EXPECT_EQ(ok(parsePortForward("8080:80/tcp", "publish[0]")),
            (PortForward{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}));
  EXPECT_EQ(ok(parsePortForward("53:5353/udp", "publish[0]")),
            (PortForward{.protocol = Protocol::Udp, .outsidePort = 53, .instancePort = 5353}));
  EXPECT_EQ(ok(parsePortForward("65535:1", "p")).outsidePort, 65535);
  EXPECT_EQ(portForwardText(ok(parsePortForward("8080:80", "p"))), "8080:80/tcp");
  EXPECT_EQ(portForwardText(ok(parsePortForward("53:53/udp", "p"))), "53:53/udp");
}

TEST(ParsePortForward, RefusalsNameTheFieldAndTheReason) {
  struct Case {
    std::string text;
    std::string reason;
  };
  for (const Case& c :
       std::vector<Case>{{"70000:80", "port 70000 is above 65535"},
                         {"80:99999999999999999999", "port 99999999999999999999 is above 65535"},
                         {"0:80", "port 0"},
                         {"80:0", "port 0"},
                         {"http:80", "not a number"},
                         {"-1:80", "not a number"},
                         {":80", "not a number"},
                         {"80: 80", "not a number"},
                         {"80:80/icmp", "protocol must be tcp or udp"},
                         {"80:80/", "protocol must be tcp or udp"},
                         {"8080", "OUTSIDE_PORT:INSTANCE_PORT"},
                         {"1:2:3", "not a number"}}) {
    auto result = parsePortForward(c.text, "publish[1]");
    ASSERT_FALSE(result.has_value()) << c.text;
    EXPECT_EQ(result.error().kind(), ErrorKind::InvalidArgument) << c.text;
    EXPECT_EQ(result.error().field(), "publish[1]") << c.text;
    EXPECT_NE(result.error().message().find(c.reason), std::string::npos)
        << c.text << ": " << result.error().message();
  }
}

// ---- planVpc ----

// prod (10.0.0.0/16): subnet "a-public" (route table public-rt: default → internet gateway, 192.0.2.0/24
// blackhole), "b-private" (private-rt: default → NAT gateway in a-public, plus a route to a NAT gateway
// that no longer exists); "c-isolated" on the main table. Another VPC "other" with a subnet of its own.
Topology gatewayTopology() {
  Topology t;
  ok(t.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ok(t.createRouteTable({.name = "public-rt", .vpc = "prod"}, kNow));
  ok(t.createRouteTable({.name = "private-rt", .vpc = "prod"}, kNow));
  ok(t.createSubnet({.name = "a-public", .vpc = "prod", .cidr = "10.0.1.0/24", .routeTable = "public-rt"},
                    kNow));
  ok(t.createSubnet({.name = "b-private", .vpc = "prod", .cidr = "10.0.2.0/24", .routeTable = "private-rt"},
                    kNow));
  ok(t.createSubnet({.name = "c-isolated", .vpc = "prod", .cidr = "10.0.3.0/24"}, kNow));
  ok(t.createInternetGateway({.name = "prod-igw", .vpc = "prod"}, kNow));
  ok(t.createNatGateway({.name = "prod-nat", .subnet = "a-public"}, kNow));
  ok(t.addRoute("public-rt",
                {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "prod-igw"}));
  ok(t.addRoute("public-rt", {.destination = "192.0.2.0/24", .targetType = "blackhole"}));
  ok(t.addRoute("private-rt",
                {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "prod-nat"}));
  // As loaded from a store written before the gateway was deleted: the model refuses to make this itself.
  RouteTable privateRt = *t.findRouteTable("private-rt");
  privateRt.routes.push_back(Route{.destination = cidr("203.0.113.0/24"),
                                   .target = {.type = RouteTargetType::NatGateway, .name = "gone-nat"}});
  t.insert(privateRt);

  ok(t.createVpc({.name = "other", .cidr = "10.1.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "other-net", .vpc = "other", .cidr = "10.1.1.0/24"}, kNow));
  return t;
}

std::vector<NicAttachment> gatewayNics() {
  return {
      {.instance = "web-1",
       .vm = true,
       .subnet = "a-public",
       .address = "10.0.1.10",
       .publicAddress = "100.64.128.9",
       .publish = {{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}},
       .linkKey = "corral-web-1"},
      {.instance = "app", .subnet = "b-private", .address = "10.0.2.20", .linkKey = "app-key"},
      {.instance = "cache",
       .subnet = "a-public",
       .address = "10.0.1.11",
       .publicAddress = "100.64.128.2",
       .linkKey = "cache-key"},
      {.instance = "stranger", .subnet = "other-net", .address = "10.1.1.5", .linkKey = "stranger-key"},
  };
}

const Cidr kTransit = cidr("100.64.0.4/30");

TEST(PlanVpc, AChangeToOneVpcLeavesTheOthersPlanEqualAndChangesItsOwn) {
  const Topology before = gatewayTopology();
  const VpcPlan prod = planVpc(before, "prod", "corral-t7-", gatewayNics(), UplinkSettings{}, kTransit);
  const VpcPlan other = planVpc(before, "other", "corral-t7-", gatewayNics(), UplinkSettings{}, std::nullopt);
  EXPECT_EQ(planVpc(before, "prod", "corral-t7-", gatewayNics(), UplinkSettings{}, kTransit), prod)
      << "planning is deterministic";

  Topology after = before;
  ok(after.createSecurityGroup({.name = "db", .vpc = "prod"}, kNow));
  ok(after.addSecurityGroupRule(
      "db", {.protocol = "tcp", .fromPort = 5432, .toPort = 5432, .cidr = "10.0.0.0/16"}));
  EXPECT_EQ(planVpc(after, "other", "corral-t7-", gatewayNics(), UplinkSettings{}, std::nullopt), other);

  Topology subnetAdded = before;
  ok(subnetAdded.createSubnet({.name = "d-more", .vpc = "prod", .cidr = "10.0.4.0/24"}, kNow));
  EXPECT_NE(planVpc(subnetAdded, "prod", "corral-t7-", gatewayNics(), UplinkSettings{}, kTransit), prod);
  EXPECT_EQ(planVpc(subnetAdded, "other", "corral-t7-", gatewayNics(), UplinkSettings{}, std::nullopt),
            other);

  // A firewall change shows in the plan through its ruleset.
  Topology ruleAdded = before;
  ok(ruleAdded.addSecurityGroupRule("prod-default",
                                    {.protocol = "tcp", .fromPort = 22, .toPort = 22, .cidr = "0.0.0.0/0"}));
  EXPECT_NE(planVpc(ruleAdded, "prod", "corral-t7-", gatewayNics(), UplinkSettings{}, kTransit), prod);
}

TEST(PlanVpc, BridgesOnePerSubnetWithTheRouterAndResolverAddresses) {
  VpcPlan plan = planVpc(gatewayTopology(), "prod", "corral-t7-", gatewayNics(), UplinkSettings{}, kTransit);
  EXPECT_EQ(plan.vpc, "prod");
  EXPECT_EQ(plan.netns, "corral-t7-vpc-prod");
  EXPECT_EQ(plan.cidr, cidr("10.0.0.0/16"));
  ASSERT_EQ(plan.bridges.size(), 3u);
  EXPECT_EQ(plan.bridges[0].subnet, "a-public");
  EXPECT_EQ(plan.bridges[0].bridge, subnetBridgeName("prod", "a-public"));
  EXPECT_EQ(plan.bridges[0].cidr, cidr("10.0.1.0/24"));
  EXPECT_EQ(plan.bridges[0].routerAddress, "10.0.1.1/24");
  EXPECT_EQ(plan.bridges[0].resolverAddress, "10.0.1.2/24");
  EXPECT_EQ(plan.bridges[1].subnet, "b-private");
  EXPECT_EQ(plan.bridges[2].resolverAddress, "10.0.3.2/24");
  ASSERT_FALSE(plan.nics.empty());
  EXPECT_EQ(plan.nics[0].resolver, "10.0.2.2") << plan.nics[0].nic.instance;
  EXPECT_EQ(plan.nics[0].searchDomain, "prod.internal");
  EXPECT_EQ(plan.bridges[2].routerAddress, "10.0.3.1/24");
}

TEST(PlanVpc, RouteTablesByNameWithGatewayRoutesBlackholesAndNoDeletedGateway) {
  VpcPlan plan = planVpc(gatewayTopology(), "prod", "corral-", gatewayNics(), UplinkSettings{}, kTransit);
  ASSERT_EQ(plan.routeTables.size(), 3u);
  const RouteTablePlan& privateRt = plan.routeTables[0];
  const RouteTablePlan& mainRt = plan.routeTables[1];
  const RouteTablePlan& publicRt = plan.routeTables[2];
  EXPECT_EQ(privateRt.name, "private-rt");
  EXPECT_EQ(privateRt.tableId, 100u);
  EXPECT_EQ(mainRt.name, "prod-main");
  EXPECT_EQ(mainRt.tableId, 101u);
  EXPECT_EQ(publicRt.name, "public-rt");
  EXPECT_EQ(publicRt.tableId, 102u);

  EXPECT_EQ(privateRt.subnets, std::vector<Cidr>{cidr("10.0.2.0/24")});
  EXPECT_EQ(mainRt.subnets, std::vector<Cidr>{cidr("10.0.3.0/24")});
  EXPECT_EQ(publicRt.subnets, std::vector<Cidr>{cidr("10.0.1.0/24")});

  // The route to the deleted NAT gateway (203.0.113.0/24) is left out, and so is the local route.
  EXPECT_EQ(privateRt.routes,
            (std::vector<RoutePlan>{{.destination = cidr("0.0.0.0/0"), .blackhole = false}}));
  EXPECT_TRUE(mainRt.routes.empty());
  EXPECT_EQ(publicRt.routes,
            (std::vector<RoutePlan>{{.destination = cidr("192.0.2.0/24"), .blackhole = true},
                                    {.destination = cidr("0.0.0.0/0"), .blackhole = false}}));
}

TEST(PlanVpc, GatewayTakesTheTransitAndThePublicAddressesOfThisVpcsNics) {
  UplinkSettings uplink;
  uplink.netns = "corral-t7-internet";
  VpcPlan plan = planVpc(gatewayTopology(), "prod", "corral-", gatewayNics(), uplink, kTransit);
  ASSERT_TRUE(plan.gateway.has_value());
  const GatewayPlan& gateway = *plan.gateway;
  EXPECT_EQ(gateway.name, "prod-igw");
  EXPECT_EQ(gateway.vpcLink, gatewayLinkName("corral-vpc-prod"));
  EXPECT_EQ(gateway.uplinkLink, uplinkLinkName("corral-vpc-prod"));
  EXPECT_EQ(gateway.uplinkNetns, "corral-t7-internet");
  EXPECT_EQ(gateway.transit, kTransit);
  EXPECT_EQ(gateway.vpcAddress, "100.64.0.6/30");
  EXPECT_EQ(gateway.uplinkAddress, "100.64.0.5/30");
  EXPECT_EQ(gateway.publicAddresses,
            (std::vector<Ipv4Address>{address("100.64.128.2"), address("100.64.128.9")}));
}

TEST(PlanVpc, NicsOfThisVpcSortedByInstanceWithTheirPorts) {
  Topology t = gatewayTopology();
  VpcPlan plan = planVpc(t, "prod", "corral-", gatewayNics(), UplinkSettings{}, kTransit);
  ASSERT_EQ(plan.nics.size(), 3u) << "the NIC in VPC other is not this plan's";
  EXPECT_EQ(plan.nics[0].nic.instance, "app");
  EXPECT_EQ(plan.nics[1].nic.instance, "cache");
  const NicPlan& web = plan.nics[2];
  EXPECT_EQ(web.nic.instance, "web-1");
  EXPECT_EQ(web.link, instanceTapName("corral-web-1"));
  EXPECT_EQ(web.bridge, subnetBridgeName("prod", "a-public"));
  EXPECT_EQ(web.mac, instanceMac("web-1", true));
  EXPECT_EQ(web.addressWithPrefix, "10.0.1.10/24");
  EXPECT_EQ(web.gateway, "10.0.1.1");
  const NicPlan& app = plan.nics[0];
  EXPECT_EQ(app.link, instanceVethName("app-key"));
  EXPECT_EQ(app.mac, instanceMac("app", false));
  EXPECT_EQ(app.addressWithPrefix, "10.0.2.20/24");
  EXPECT_EQ(app.gateway, "10.0.2.1");

  std::vector<NicAttachment> ours = gatewayNics();
  std::erase_if(ours, [](const NicAttachment& n) { return n.instance == "stranger"; });
  EXPECT_EQ(plan.ruleset, vpcRuleset(t, "prod", ours, &*plan.gateway));
  EXPECT_EQ(plan.ruleset.find("10.1.1.5"), std::string::npos) << plan.ruleset;
}

TEST(PlanVpc, WithoutTransitOrInternetGatewayThereIsNoGatewayAndNoRouteToIt) {
  VpcPlan noTransit =
      planVpc(gatewayTopology(), "prod", "corral-", gatewayNics(), UplinkSettings{}, std::nullopt);
  EXPECT_FALSE(noTransit.gateway.has_value());
  EXPECT_TRUE(noTransit.routeTables[0].routes.empty()) << "NAT gateway route needs the internet gateway";
  EXPECT_EQ(noTransit.routeTables[2].routes,
            (std::vector<RoutePlan>{{.destination = cidr("192.0.2.0/24"), .blackhole = true}}));
  EXPECT_EQ(noTransit.ruleset.find("nat hook"), std::string::npos);

  Topology t;
  ok(t.createVpc({.name = "plain", .cidr = "10.5.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "only", .vpc = "plain", .cidr = "10.5.0.0/24"}, kNow));
  VpcPlan plain = planVpc(t, "plain", "corral-", {}, UplinkSettings{}, kTransit);
  EXPECT_FALSE(plain.gateway.has_value());
  ASSERT_EQ(plain.routeTables.size(), 1u);
  EXPECT_EQ(plain.routeTables[0].name, "plain-main");
  EXPECT_EQ(plain.routeTables[0].tableId, 100u);
  EXPECT_EQ(plain.ruleset, vpcRuleset(t, "plain", {})) << "without a gateway: the firewall alone";
}

// ---- Port guards ----

TEST(PlanVpc, PortGuardsNameEveryNicWithItsOwnMacAndAddress) {
  const VpcPlan plan =
      planVpc(gatewayTopology(), "prod", "corral-t7-", gatewayNics(), UplinkSettings{}, kTransit);
  ASSERT_EQ(plan.nics.size(), 3u);
  EXPECT_EQ(plan.portGuards, portGuardRuleset("prod", plan.nics));
  for (const NicPlan& nic : plan.nics) {
    EXPECT_NE(plan.portGuards.find(fmt::format("\"{}\" comment \"{}\"", nic.link, nic.nic.instance)),
              std::string::npos)
        << nic.link << "\n"
        << plan.portGuards;
    EXPECT_NE(plan.portGuards.find(fmt::format("\"{}\" . {} comment", nic.link, nic.mac)), std::string::npos)
        << nic.mac;
    EXPECT_NE(plan.portGuards.find(fmt::format("\"{}\" . {} comment", nic.link, nic.nic.address)),
              std::string::npos);
    EXPECT_NE(
        plan.portGuards.find(fmt::format("\"{}\" . {} . {} comment", nic.link, nic.mac, nic.nic.address)),
        std::string::npos);
  }
  // The VM's tap is guarded like a container's veth, with the guest's MAC.
  EXPECT_NE(plan.portGuards.find(fmt::format("\"{}\"", instanceTapName("corral-web-1"))), std::string::npos);
  EXPECT_NE(plan.portGuards.find(instanceMac("web-1", true)), std::string::npos);
}

TEST(PlanVpc, AddingOrRemovingANicChangesThePortGuardsAndOnlyThem) {
  const Topology topology = gatewayTopology();
  std::vector<NicAttachment> nics = gatewayNics();
  const VpcPlan before = planVpc(topology, "prod", "corral-t7-", nics, UplinkSettings{}, kTransit);

  nics.push_back({.instance = "extra", .subnet = "a-public", .address = "10.0.1.12", .linkKey = "extra-key"});
  const VpcPlan added = planVpc(topology, "prod", "corral-t7-", nics, UplinkSettings{}, kTransit);
  EXPECT_NE(added, before);
  EXPECT_NE(added.portGuards, before.portGuards);
  const std::string link = instanceVethName("extra-key");
  EXPECT_EQ(before.portGuards.find(link), std::string::npos);
  for (SpoofReason reason : kSpoofReasons) {
    EXPECT_TRUE(added.portGuardTable.sets.at(portGuardDropSetName(reason))
                    .elements.contains(fmt::format("\"{}\"", link)))
        << spoofReasonName(reason);
  }

  nics.pop_back();
  EXPECT_EQ(planVpc(topology, "prod", "corral-t7-", nics, UplinkSettings{}, kTransit), before)
      << "removing it again gives the plan before";

  // A security group rule changes the firewall, not the guards.
  Topology ruleAdded = topology;
  ok(ruleAdded.addSecurityGroupRule("prod-default",
                                    {.protocol = "tcp", .fromPort = 22, .toPort = 22, .cidr = "0.0.0.0/0"}));
  EXPECT_EQ(planVpc(ruleAdded, "prod", "corral-t7-", nics, UplinkSettings{}, kTransit).portGuards,
            before.portGuards);
}

}  // namespace
}  // namespace corral::net
