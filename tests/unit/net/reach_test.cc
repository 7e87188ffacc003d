// The reachability analyzer (net/reach.h) on hand-built VPCs: each guard that can block names itself and
// its rule, stateful security groups against stateless network ACLs (replies to ephemeral ports), routes,
// the front door both ways, and bad queries refused naming the field.
#include "net/reach.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

constexpr int64_t kNow = 1700000000;

template <class T>
void ok(const Result<T>& result) {
  ASSERT_TRUE(result.has_value()) << result.error().message();
}

// prod 10.0.0.0/16: "pub" (0.0.0.0/0 -> igw), "priv" (0.0.0.0/0 -> nat), "iso" (main table, no default).
// web-1 in pub (public address), app-1 in priv, db-1 in iso. Groups: web (tcp/80 from anywhere), app
// (tcp/8080 from group web), db (tcp/5432 from group app).
class ReachTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ok(t.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
    ok(t.createRouteTable({.name = "public-rt", .vpc = "prod"}, kNow));
    ok(t.createRouteTable({.name = "private-rt", .vpc = "prod"}, kNow));
    ok(t.createSubnet({.name = "pub", .vpc = "prod", .cidr = "10.0.1.0/24", .routeTable = "public-rt"},
                      kNow));
    ok(t.createSubnet({.name = "priv", .vpc = "prod", .cidr = "10.0.2.0/24", .routeTable = "private-rt"},
                      kNow));
    ok(t.createSubnet({.name = "iso", .vpc = "prod", .cidr = "10.0.3.0/24"}, kNow));
    ok(t.createInternetGateway({.name = "igw", .vpc = "prod"}, kNow));
    ok(t.createNatGateway({.name = "nat", .subnet = "pub"}, kNow));
    ok(t.addRoute("public-rt",
                  {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "igw"}));
    ok(t.addRoute("private-rt",
                  {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "nat"}));
    ok(t.createSecurityGroup({.name = "web", .vpc = "prod"}, kNow));
    ok(t.createSecurityGroup({.name = "app", .vpc = "prod"}, kNow));
    ok(t.createSecurityGroup({.name = "db", .vpc = "prod"}, kNow));
    ok(t.addSecurityGroupRule("web", {.protocol = "tcp", .fromPort = 80, .toPort = 80, .cidr = "0.0.0.0/0"}));
    ok(t.addSecurityGroupRule("app",
                              {.protocol = "tcp", .fromPort = 8080, .toPort = 8080, .peerGroup = "web"}));
    ok(t.addSecurityGroupRule("db",
                              {.protocol = "tcp", .fromPort = 5432, .toPort = 5432, .peerGroup = "app"}));
    nics = {
        NicAttachment{.instance = "web-1",
                      .subnet = "pub",
                      .address = "10.0.1.10",
                      .securityGroups = {"web"},
                      .publicAddress = "100.64.128.5"},
        NicAttachment{
            .instance = "web-2", .subnet = "pub", .address = "10.0.1.11", .securityGroups = {"web"}},
        NicAttachment{
            .instance = "app-1",
            .subnet = "priv",
            .address = "10.0.2.10",
            .securityGroups = {"app"},
            .publish = {PortForward{.protocol = Protocol::Tcp, .outsidePort = 9000, .instancePort = 8080}}},
        NicAttachment{.instance = "db-1", .subnet = "iso", .address = "10.0.3.10", .securityGroups = {"db"}},
    };
  }

  ReachPath one(std::string source, std::string destination, std::string_view protocol = "tcp",
                std::optional<int64_t> port = 80) {
    auto query = makeReachQuery(std::move(source), std::move(destination), protocol, port);
    EXPECT_TRUE(query.has_value()) << query.error().message();
    auto paths = analyzeReach(t, nics, *query);
    EXPECT_TRUE(paths.has_value()) << paths.error().message();
    EXPECT_EQ(paths->size(), 1u);
    return paths->front();
  }

  static ReachHop blocker(const ReachPath& path) {
    EXPECT_FALSE(path.reachable) << path.verdict;
    return path.hops.back();
  }

  void aclRule(const std::string& acl, int number, std::string direction, std::string action,
               std::string protocol, std::optional<int64_t> from, std::optional<int64_t> to,
               std::string cidr) {
    ok(t.addNetworkAclRule(acl, {.number = number,
                                 .direction = std::move(direction),
                                 .action = std::move(action),
                                 .protocol = std::move(protocol),
                                 .fromPort = from,
                                 .toPort = to,
                                 .cidr = std::move(cidr)}));
  }

  Topology t;
  std::vector<NicAttachment> nics;
};

TEST_F(ReachTest, PeerGroupAllowsAcrossFloorsWithTheWholePathNamed) {
  ReachPath path = one("web-1", "app-1", "tcp", 8080);
  EXPECT_TRUE(path.reachable) << path.verdict;
  std::vector<std::string> components;
  for (const ReachHop& hop : path.hops) components.push_back(hop.component + "/" + hop.leg);
  EXPECT_EQ(components,
            (std::vector<std::string>{"instance/", "security group/out", "network ACL/out", "route table/out",
                                      "router/", "network ACL/in", "security group/in", "network ACL/return",
                                      "network ACL/return", "instance/"}));
  EXPECT_EQ(path.hops[6].rule, "app rule 2");  // rule 1 is the allow-all egress every new group gets
}

TEST_F(ReachTest, SecurityGroupWithoutARuleBlocksAndSaysSo) {
  // db allows 5432 from group app only; web-1 is not a member.
  ReachPath path = one("web-1", "db-1", "tcp", 5432);
  const ReachHop hop = blocker(path);
  EXPECT_EQ(hop.component, "security group");
  EXPECT_EQ(hop.name, "db");
  EXPECT_EQ(hop.leg, "in");
  EXPECT_NE(path.verdict.find("no inbound rule of db allows tcp/5432 from 10.0.1.10"), std::string::npos)
      << path.verdict;
  EXPECT_TRUE(one("app-1", "db-1", "tcp", 5432).reachable);
}

TEST_F(ReachTest, SameFloorUsesTheSwitchAndNoAcl) {
  ok(t.createNetworkAcl({.name = "closed", .vpc = "prod"}, kNow));  // no rules: implicit deny both ways
  ok(t.updateSubnet("pub", {.networkAcl = "closed"}));
  ReachPath path = one("web-2", "web-1");
  EXPECT_TRUE(path.reachable) << path.verdict;
  EXPECT_EQ(path.hops[2].component, "switch");
}

TEST_F(ReachTest, NetworkAclDenyRuleIsNamedByNumber) {
  ok(t.createNetworkAcl({.name = "strict", .vpc = "prod"}, kNow));
  aclRule("strict", 10, "ingress", "deny", "tcp", 8080, 8080, "10.0.1.0/24");
  aclRule("strict", 20, "ingress", "allow", "all", std::nullopt, std::nullopt, "0.0.0.0/0");
  aclRule("strict", 20, "egress", "allow", "all", std::nullopt, std::nullopt, "0.0.0.0/0");
  ok(t.updateSubnet("priv", {.networkAcl = "strict"}));
  const ReachHop hop = blocker(one("web-1", "app-1", "tcp", 8080));
  EXPECT_EQ(hop.component, "network ACL");
  EXPECT_EQ(hop.name, "strict");
  EXPECT_EQ(hop.leg, "in");
  EXPECT_EQ(hop.rule, "rule 10");
}

TEST_F(ReachTest, StatelessAclNeedsTheEphemeralPortsForReplies) {
  // app-1's floor lets 8080 in but only 8080 out: the replies to web-1's ephemeral port are dropped.
  ok(t.createNetworkAcl({.name = "half", .vpc = "prod"}, kNow));
  aclRule("half", 10, "ingress", "allow", "tcp", 8080, 8080, "0.0.0.0/0");
  aclRule("half", 10, "egress", "allow", "tcp", 8080, 8080, "0.0.0.0/0");
  ok(t.updateSubnet("priv", {.networkAcl = "half"}));
  ReachPath path = one("web-1", "app-1", "tcp", 8080);
  const ReachHop hop = blocker(path);
  EXPECT_EQ(hop.leg, "return");
  EXPECT_EQ(hop.rule, "implicit deny");
  EXPECT_NE(hop.text.find("32768-60999"), std::string::npos) << hop.text;

  // Part of the range is not enough: a client may pick any port of it.
  aclRule("half", 20, "egress", "allow", "tcp", 32768, 50000, "10.0.1.0/24");
  EXPECT_FALSE(one("web-1", "app-1", "tcp", 8080).reachable);
  aclRule("half", 30, "egress", "allow", "tcp", 50001, 65535, "10.0.0.0/16");
  path = one("web-1", "app-1", "tcp", 8080);
  EXPECT_TRUE(path.reachable) << path.verdict;
  // UDP is one way: the replies are not asked for.
  ok(t.addSecurityGroupRule("app",
                            {.protocol = "udp", .fromPort = 8080, .toPort = 8080, .peerGroup = "web"}));
  aclRule("half", 40, "ingress", "allow", "udp", 8080, 8080, "0.0.0.0/0");
  EXPECT_TRUE(one("web-1", "app-1", "udp", 8080).reachable);
}

TEST_F(ReachTest, AclFirstMatchWinsOverALaterAllow) {
  ok(t.createNetworkAcl({.name = "order", .vpc = "prod"}, kNow));
  aclRule("order", 5, "egress", "deny", "all", std::nullopt, std::nullopt, "10.0.2.0/24");
  aclRule("order", 100, "egress", "allow", "all", std::nullopt, std::nullopt, "0.0.0.0/0");
  aclRule("order", 100, "ingress", "allow", "all", std::nullopt, std::nullopt, "0.0.0.0/0");
  ok(t.updateSubnet("pub", {.networkAcl = "order"}));
  const ReachHop hop = blocker(one("web-1", "app-1", "tcp", 8080));
  EXPECT_EQ(hop.leg, "out");
  EXPECT_EQ(hop.rule, "rule 5");
}

TEST_F(ReachTest, OutboundEgressRuleMissing) {
  ok(t.deleteSecurityGroupRule("web", 1));
  ok(t.createSecurityGroup({.name = "quiet", .vpc = "prod"}, kNow));
  // A new group allows all egress; deleting that rule leaves nothing out.
  const SecurityGroup* quiet = t.findSecurityGroup("quiet");
  ASSERT_NE(quiet, nullptr);
  for (const SecurityGroupRule& rule : std::vector<SecurityGroupRule>(quiet->rules)) {
    if (rule.direction == Direction::Egress) ok(t.deleteSecurityGroupRule("quiet", rule.id));
  }
  nics[1].securityGroups = {"quiet"};
  const ReachHop hop = blocker(one("web-2", "app-1", "tcp", 8080));
  EXPECT_EQ(hop.component, "security group");
  EXPECT_EQ(hop.leg, "out");
}

TEST_F(ReachTest, InternetThroughTheFrontDoorBothWays) {
  // Out: public subnet masquerades (web-2) or uses the public address (web-1); private goes via NAT.
  ReachPath out = one("web-1", "internet", "tcp", 443);
  EXPECT_TRUE(out.reachable) << out.verdict;
  EXPECT_EQ(out.hops[out.hops.size() - 3].rule, "1:1 NAT");
  ReachPath viaNat = one("app-1", "198.51.100.7", "tcp", 443);
  EXPECT_TRUE(viaNat.reachable) << viaNat.verdict;
  bool sawNat = false;
  for (const ReachHop& hop : viaNat.hops) sawNat |= hop.component == "NAT gateway";
  EXPECT_TRUE(sawNat);
  // The isolated floor has no route to the internet.
  const ReachHop noRoute = blocker(one("db-1", "internet", "tcp", 443));
  EXPECT_EQ(noRoute.component, "route table");
  EXPECT_EQ(noRoute.rule, "no route");

  // In: a public address, a published port, and nothing for the others.
  EXPECT_TRUE(one("internet", "web-1", "tcp", 80).reachable);
  EXPECT_TRUE(one("internet", "100.64.128.5", "tcp", 80).reachable);
  ReachPath published = one("internet", "app-1", "tcp", 9000);
  EXPECT_TRUE(published.reachable) << published.verdict;
  EXPECT_EQ(published.hops.back().text.substr(0, 8), "tcp/8080");
  const ReachHop nat = blocker(one("internet", "app-1", "tcp", 8080));
  EXPECT_EQ(nat.component, "NAT gateway");
  EXPECT_EQ(nat.rule, "unsolicited inbound");
  const ReachHop noPublic = blocker(one("internet", "web-2", "tcp", 80));
  EXPECT_EQ(noPublic.component, "internet gateway");
  EXPECT_EQ(noPublic.rule, "unsolicited inbound");
}

TEST_F(ReachTest, RoutesToMissingGatewaysAndBlackholesAreNotRoutes) {
  ok(t.addRoute("public-rt", {.destination = "198.51.100.0/24", .targetType = "blackhole"}));
  const ReachHop hole = blocker(one("web-1", "198.51.100.7", "tcp", 443));
  EXPECT_EQ(hole.component, "route table");
  EXPECT_NE(hole.text.find("blackhole"), std::string::npos);
  EXPECT_TRUE(one("web-1", "198.51.101.7", "tcp", 443).reachable);
  // Without the internet gateway, the default route leads nowhere, and nothing gets in.
  ok(t.deleteRoute("public-rt", "0.0.0.0/0"));
  ok(t.deleteRoute("private-rt", "0.0.0.0/0"));
  ok(t.deleteNatGateway("nat"));
  ok(t.deleteInternetGateway("igw"));
  EXPECT_EQ(blocker(one("web-2", "198.51.101.7", "tcp", 443)).rule, "no route");
  EXPECT_EQ(blocker(one("internet", "web-1", "tcp", 80)).rule, "no internet gateway");
}

TEST_F(ReachTest, IcmpNeedsAnIcmpRuleAndItsReplies) {
  const ReachHop hop = blocker(one("web-1", "web-2", "icmp", std::nullopt));
  EXPECT_EQ(hop.leg, "in");
  ok(t.addSecurityGroupRule("web", {.protocol = "icmp", .cidr = "10.0.0.0/16"}));
  EXPECT_TRUE(one("web-1", "web-2", "icmp", std::nullopt).reachable);
}

TEST_F(ReachTest, SubnetStandsForEachOfItsInstances) {
  auto query = makeReachQuery("pub", "app-1", "tcp", 8080);
  ok(query);
  auto paths = analyzeReach(t, nics, *query);
  ok(paths);
  ASSERT_EQ(paths->size(), 2u);
  EXPECT_EQ((*paths)[0].source, "web-1 (10.0.1.10)");
  EXPECT_EQ((*paths)[1].source, "web-2 (10.0.1.11)");
}

TEST_F(ReachTest, BadQueriesNameTheField) {
  EXPECT_EQ(makeReachQuery("a", "b", "tcp", std::nullopt).error().field(), "port");
  EXPECT_EQ(makeReachQuery("a", "b", "tcp", 70000).error().field(), "port");
  EXPECT_EQ(makeReachQuery("a", "b", "icmp", 80).error().field(), "port");
  EXPECT_EQ(makeReachQuery("a", "b", "all", 80).error().field(), "protocol");
  EXPECT_EQ(makeReachQuery("a", "b", "sctp", 80).error().field(), "protocol");
  auto analyze = [&](std::string source, std::string destination) {
    return analyzeReach(t, nics, *makeReachQuery(std::move(source), std::move(destination), "tcp", 80));
  };
  auto unknown = analyze("nobody", "web-1");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().field(), "source");
  EXPECT_EQ(unknown.error().kind(), ErrorKind::NotFound);
  EXPECT_EQ(analyze("web-1", "10.0.9.9").error().field(), "destination");  // in the VPC, no instance
  EXPECT_EQ(analyze("internet", "8.8.8.8").error().field(), "destination");
  EXPECT_EQ(analyze("web-1", "web-1").error().field(), "destination");
  ok(t.createSubnet({.name = "empty", .vpc = "prod", .cidr = "10.0.9.0/24"}, kNow));
  EXPECT_EQ(analyze("empty", "web-1").error().field(), "source");
}

TEST_F(ReachTest, TwoVpcsAreTwoBuildings) {
  ok(t.createVpc({.name = "other", .cidr = "10.1.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "o", .vpc = "other", .cidr = "10.1.1.0/24"}, kNow));
  nics.push_back(NicAttachment{.instance = "o-1", .subnet = "o", .address = "10.1.1.10"});
  const ReachHop hop = blocker(one("o-1", "web-1"));
  EXPECT_EQ(hop.component, "route table");
}

// ---- What allowed an accepted flow (the flow logs ask the analyzer's matching) ----

class FlowAllowedByTest : public ReachTest {
 protected:
  static uint32_t at(std::string_view address) { return Ipv4Address::parse(address)->value(); }
  // A connection as conntrack reports it: the client's packets and the server's replies.
  static AcceptedConnection connection(std::string_view client, uint16_t clientPort, std::string_view server,
                                       uint16_t serverPort, uint8_t protocol = 6, bool replies = false,
                                       std::optional<std::string_view> dialled = std::nullopt,
                                       std::optional<uint16_t> dialledPort = std::nullopt) {
    return AcceptedConnection{.original = {.source = at(client),
                                           .destination = at(dialled.value_or(server)),
                                           .protocol = protocol,
                                           .sourcePort = clientPort,
                                           .destinationPort = dialledPort.value_or(serverPort)},
                              .reply = {.source = at(server),
                                        .destination = at(client),
                                        .protocol = protocol,
                                        .sourcePort = serverPort,
                                        .destinationPort = clientPort},
                              .replies = replies};
  }
  std::vector<std::string> allowed(const AcceptedConnection& flow) {
    auto nicAt = [&](uint32_t address) -> const NicAttachment* {
      for (const NicAttachment& nic : nics) {
        if (at(nic.address) == address) return &nic;
      }
      return nullptr;
    };
    std::vector<std::string> texts;
    for (const FlowAllowingRule& rule : flowAllowedBy(t, nicAt, flow))
      texts.push_back(flowAllowingRuleText(rule));
    return texts;
  }
};

TEST_F(FlowAllowedByTest, BetweenFloorsBothGroupsAndBothAclsInPathOrder) {
  EXPECT_EQ(allowed(connection("10.0.1.10", 40000, "10.0.2.10", 8080)),
            (std::vector<std::string>{
                "security group web rule 1 (outbound) allows all traffic to 0.0.0.0/0",
                "network ACL prod-default rule 100 (outbound) allows",
                "network ACL prod-default rule 100 (inbound) allows",
                "security group app rule 2 (inbound) allows tcp port 8080 from group web",
            }));
  // The same rules as the analyzer's path names.
  ReachPath path = one("web-1", "app-1", "tcp", 8080);
  EXPECT_EQ(path.hops[1].rule, "web rule 1");
  EXPECT_EQ(path.hops[6].rule, "app rule 2");
}

TEST_F(FlowAllowedByTest, RepliesCrossTheAclsTheOtherWayToTheClientsPort) {
  // priv's ACL lets out replies to 32768-60999 only through rule 90; the connection's own way uses 100.
  ok(t.createNetworkAcl({.name = "strict", .vpc = "prod"}, kNow));
  aclRule("strict", 100, "ingress", "allow", "all", std::nullopt, std::nullopt, "0.0.0.0/0");
  aclRule("strict", 90, "egress", "allow", "tcp", 32768, 60999, "10.0.0.0/16");
  ok(t.updateSubnet("priv", {.networkAcl = "strict"}));
  const std::vector<std::string> replies =
      allowed(connection("10.0.1.10", 40000, "10.0.2.10", 8080, 6, true));
  EXPECT_EQ(replies, (std::vector<std::string>{
                         "security group web rule 1 (outbound) allows all traffic to 0.0.0.0/0 (its replies "
                         "pass with it: stateful)",
                         "network ACL strict rule 90 (outbound) allows",
                         "network ACL prod-default rule 100 (inbound) allows",
                         "security group app rule 2 (inbound) allows tcp port 8080 from group web (its "
                         "replies pass with it: stateful)",
                     }));
  // The client's packets: strict has no egress rule for them, but they enter priv through rule 100.
  EXPECT_EQ(allowed(connection("10.0.1.10", 40000, "10.0.2.10", 8080))[2],
            "network ACL strict rule 100 (inbound) allows");
}

TEST_F(FlowAllowedByTest, SameFloorHasNoAclAndAGuardThatRefusesNowIsLeftOut) {
  // web-1 to web-2 on one floor: the switch, no router, no ACL.
  EXPECT_EQ(allowed(connection("10.0.1.10", 40000, "10.0.1.11", 80)),
            (std::vector<std::string>{
                "security group web rule 1 (outbound) allows all traffic to 0.0.0.0/0",
                "security group web rule 2 (inbound) allows tcp port 80 from 0.0.0.0/0",
            }));
  // A connection to 22 began before its rule was deleted: the model names no rule that allows it now.
  EXPECT_EQ(
      allowed(connection("10.0.1.10", 40000, "10.0.1.11", 22)),
      (std::vector<std::string>{"security group web rule 1 (outbound) allows all traffic to 0.0.0.0/0"}));
}

TEST_F(FlowAllowedByTest, FromTheInternetThroughAPublicAddressOrAPublishedPort) {
  // 1:1 NAT to web-1's public address: pub's ACL in, web's group in.
  EXPECT_EQ(allowed(connection("198.51.100.7", 50000, "10.0.1.10", 80, 6, false, "100.64.128.5")),
            (std::vector<std::string>{
                "network ACL prod-default rule 100 (inbound) allows",
                "security group web rule 2 (inbound) allows tcp port 80 from 0.0.0.0/0",
            }));
  // app-1 publishes 9000 -> 8080 on the gateway's outside address: no group asked.
  EXPECT_EQ(allowed(connection("198.51.100.7", 50000, "10.0.2.10", 8080, 6, false, "100.64.0.2", 9000)),
            (std::vector<std::string>{
                "network ACL prod-default rule 100 (inbound) allows",
                "app-1 publishes 9000:8080/tcp (its own allow rule, no security group asked)",
            }));
  // Out to the internet (masqueraded after the ACL): the group out and the ACL out.
  EXPECT_EQ(allowed(connection("10.0.2.10", 40000, "198.51.100.7", 443)),
            (std::vector<std::string>{
                "security group app rule 1 (outbound) allows all traffic to 0.0.0.0/0",
                "network ACL prod-default rule 100 (outbound) allows",
            }));
  // Icmp has no ports; another protocol has no rule of its own to name.
  EXPECT_EQ(allowed(connection("10.0.1.10", 0, "10.0.1.11", 0, 1)).size(), 1u);
  EXPECT_TRUE(allowed(connection("10.0.1.10", 0, "10.0.2.10", 0, 47)).empty());
}

}  // namespace
}  // namespace corral::net
