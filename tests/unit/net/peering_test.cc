// VPC peering without root: the model's rules (overlap, self, duplicate, route targets, security group
// references across the peering, delete refusals), the plan and ruleset it gives each side, convergence
// of the veth pair against FakeVpcKernel, and the reachability analyzer's path through a peering.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <string>
#include <vector>

#include "net/datapath.h"
#include "net/nft.h"
#include "net/reach.h"
#include "net/vpc.h"
#include "net/vpc_datapath.h"
#include "tests/unit/net/fake_vpc_kernel.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

constexpr int64_t kNow = 1700000000;
const std::string kPrefix = "corral-tp-";

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

// A mutation that must fail with `kind` (naming `field`), say `part`, and change nothing.
void refused(Topology& t, const std::function<Result<Changeset>(Topology&)>& mutation, ErrorKind kind,
             std::string_view field, std::string_view part) {
  const Topology before = t;
  Result<Changeset> result = mutation(t);
  ASSERT_FALSE(result.has_value()) << "the mutation succeeded";
  EXPECT_EQ(errorKindName(result.error().kind()), errorKindName(kind)) << result.error().message();
  EXPECT_EQ(result.error().field(), field) << result.error().message();
  EXPECT_NE(result.error().message().find(part), std::string::npos)
      << result.error().message() << "\n  lacks: " << part;
  EXPECT_EQ(t.peerings().size(), before.peerings().size());
  for (const RouteTable* table : t.routeTables()) {
    EXPECT_EQ(table->routes.size(), before.findRouteTable(table->name)->routes.size()) << table->name;
  }
  for (const SecurityGroup* group : t.securityGroups()) {
    EXPECT_EQ(group->rules.size(), before.findSecurityGroup(group->name)->rules.size()) << group->name;
  }
}

// Three VPCs in a row: a (10.0.0.0/16) – b (10.1.0.0/16) – c (10.2.0.0/16), one subnet each on its main
// table, peered a–b ("ab") and b–c ("bc"); "d" overlaps a.
class PeeringTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ok(t.createVpc({.name = "a", .cidr = "10.0.0.0/16"}, kNow));
    ok(t.createVpc({.name = "b", .cidr = "10.1.0.0/16"}, kNow));
    ok(t.createVpc({.name = "c", .cidr = "10.2.0.0/16"}, kNow));
    ok(t.createVpc({.name = "d", .cidr = "10.0.128.0/17"}, kNow));
    ok(t.createSubnet({.name = "a1", .vpc = "a", .cidr = "10.0.1.0/24"}, kNow));
    ok(t.createSubnet({.name = "b1", .vpc = "b", .cidr = "10.1.1.0/24"}, kNow));
    ok(t.createSubnet({.name = "c1", .vpc = "c", .cidr = "10.2.1.0/24"}, kNow));
    ok(t.createPeering({.name = "ab", .vpc = "a", .peerVpc = "b"}, kNow));
    ok(t.createPeering({.name = "bc", .vpc = "b", .peerVpc = "c"}, kNow));
  }

  void routeBothWays() {
    ok(t.addRoute("a-main", {.destination = "10.1.0.0/16", .targetType = "peering", .targetName = "ab"}));
    ok(t.addRoute("b-main", {.destination = "10.0.0.0/16", .targetType = "peering", .targetName = "ab"}));
  }

  Topology t;
};

TEST_F(PeeringTest, CreatedActiveSeenFromBothSidesWithItsOwnLink) {
  const Peering* ab = t.findPeering("ab");
  ASSERT_NE(ab, nullptr);
  EXPECT_EQ(ab->link.str(), "169.254.248.0/30");
  EXPECT_EQ(t.findPeering("bc")->link.str(), "169.254.248.4/30");
  auto names = [&](std::string_view vpc) {
    std::vector<std::string> out;
    for (const Peering* p : t.peerings(vpc)) out.push_back(p->name);
    return out;
  };
  EXPECT_EQ(names("a"), std::vector<std::string>{"ab"});
  EXPECT_EQ(names("b"), (std::vector<std::string>{"ab", "bc"}));
  EXPECT_EQ(names("c"), std::vector<std::string>{"bc"});
  EXPECT_EQ(t.peeringBetween("b", "a"), ab);
  EXPECT_EQ(t.peeringBetween("a", "c"), nullptr);
  EXPECT_TRUE(t.checkIntegrity());
}

TEST_F(PeeringTest, CreateRefusesOverlapSelfDuplicateAndUnknownsChangingNothing) {
  refused(
      t, [](Topology& m) { return m.createPeering({.name = "ad", .vpc = "a", .peerVpc = "d"}, kNow); },
      ErrorKind::Conflict, "", "vpc \"a\" (10.0.0.0/16) and vpc \"d\" (10.0.128.0/17) have overlapping");
  refused(
      t, [](Topology& m) { return m.createPeering({.name = "aa", .vpc = "a", .peerVpc = "a"}, kNow); },
      ErrorKind::InvalidArgument, "peer_vpc", "cannot be peered with itself");
  refused(
      t, [](Topology& m) { return m.createPeering({.name = "ba", .vpc = "b", .peerVpc = "a"}, kNow); },
      ErrorKind::Conflict, "", "already peered by peering \"ab\"");
  refused(
      t, [](Topology& m) { return m.createPeering({.name = "ab", .vpc = "a", .peerVpc = "c"}, kNow); },
      ErrorKind::Conflict, "", "peering \"ab\" already exists");
  refused(
      t, [](Topology& m) { return m.createPeering({.name = "ax", .vpc = "a", .peerVpc = "x"}, kNow); },
      ErrorKind::NotFound, "peer_vpc", "vpc \"x\" not found");
  refused(
      t, [](Topology& m) { return m.createPeering({.name = "ax", .vpc = "", .peerVpc = "c"}, kNow); },
      ErrorKind::InvalidArgument, "vpc", "needs a vpc");
  refused(
      t, [](Topology& m) { return m.createPeering({.name = "A_C", .vpc = "a", .peerVpc = "c"}, kNow); },
      ErrorKind::InvalidArgument, "name", "");
}

TEST_F(PeeringTest, RouteTargetsOnlyAPeeringOfTheTablesVpcInsideThePeersCidr) {
  ok(t.addRoute("a-main", {.destination = "10.1.1.0/24", .targetType = "peering", .targetName = "ab"}));
  refused(
      t,
      [](Topology& m) {
        return m.addRoute("a-main",
                          {.destination = "10.2.0.0/16", .targetType = "peering", .targetName = "ab"});
      },
      ErrorKind::InvalidArgument, "destination", "not inside peer vpc \"b\" (10.1.0.0/16)");
  refused(
      t,
      [](Topology& m) {
        return m.addRoute("a-main",
                          {.destination = "10.2.0.0/16", .targetType = "peering", .targetName = "bc"});
      },
      ErrorKind::InvalidArgument, "target", "joins vpcs \"b\" and \"c\", not vpc \"a\"");
  refused(
      t,
      [](Topology& m) {
        return m.addRoute("a-main",
                          {.destination = "10.1.0.0/16", .targetType = "peering", .targetName = "zz"});
      },
      ErrorKind::NotFound, "target", "peering \"zz\" not found");
  refused(
      t,
      [](Topology& m) {
        return m.addRoute("a-main", {.destination = "10.1.0.0/16", .targetType = "peering"});
      },
      ErrorKind::InvalidArgument, "target", "needs the peering's name");
  // The peer's side routes through it too (it is accepted both ways).
  ok(t.addRoute("b-main", {.destination = "10.0.0.0/16", .targetType = "peering", .targetName = "ab"}));
}

TEST_F(PeeringTest, SecurityGroupsMayNameThePeersGroupsOnlyAcrossAPeering) {
  ok(t.createSecurityGroup({.name = "web", .vpc = "a"}, kNow));
  ok(t.createSecurityGroup({.name = "db", .vpc = "b"}, kNow));
  ok(t.addSecurityGroupRule("db", {.protocol = "tcp", .fromPort = 5432, .peerGroup = "web"}));
  refused(
      t,
      [](Topology& m) {
        return m.addSecurityGroupRule("web", {.protocol = "tcp", .fromPort = 22, .peerGroup = "c-default"});
      },
      ErrorKind::InvalidArgument, "peer_group", "no peering joins the two");
}

TEST_F(PeeringTest, DeleteRefusedWhileRoutesOrRulesUseItThenGoes) {
  routeBothWays();
  ok(t.createSecurityGroup({.name = "db", .vpc = "b"}, kNow));
  ok(t.addSecurityGroupRule("db", {.protocol = "tcp", .fromPort = 5432, .peerGroup = "a-default"}));
  refused(
      t, [](Topology& m) { return m.deletePeering("ab"); }, ErrorKind::Conflict, "",
      "still the target of routes: a-main 10.1.0.0/16, b-main 10.0.0.0/16");
  ok(t.deleteRoute("a-main", "10.1.0.0/16"));
  ok(t.deleteRoute("b-main", "10.0.0.0/16"));
  refused(
      t, [](Topology& m) { return m.deletePeering("ab"); }, ErrorKind::Conflict, "",
      "db rule 2 (peer group a-default)");
  ok(t.deleteSecurityGroupRule("db", 2));
  Changeset gone = ok(t.deletePeering("ab"));
  ASSERT_EQ(gone.deleted.size(), 1u);
  EXPECT_EQ(gone.deleted[0].kind, ObjectKind::Peering);
  EXPECT_EQ(t.findPeering("ab"), nullptr);
  refused(
      t, [](Topology& m) { return m.deletePeering("ab"); }, ErrorKind::NotFound, "",
      "peering \"ab\" not found");
  // The freed /30 is the next one handed out.
  EXPECT_EQ(ok(t.createPeering({.name = "ac", .vpc = "a", .peerVpc = "c"}, kNow)).upserted.size(), 1u);
  EXPECT_EQ(t.findPeering("ac")->link.str(), "169.254.248.0/30");
}

TEST_F(PeeringTest, AVpcWithAPeeringIsNotDeleted) {
  refused(
      t, [](Topology& m) { return m.deleteVpc("c"); }, ErrorKind::Conflict, "", "peerings: bc");
}

TEST_F(PeeringTest, IntegrityReportsRoutesToMissingPeeringsAndPeeringsOfMissingVpcs) {
  Topology broken = t;
  RouteTable table = *broken.findRouteTable("a-main");
  table.routes.push_back(
      Route{Cidr::parse("10.1.0.0/16").value(), RouteTarget{RouteTargetType::Peering, "gone"}});
  broken.insert(table);
  broken.insert(Peering{.name = "lost",
                        .vpc = "a",
                        .peerVpc = "nowhere",
                        .link = Cidr::parse("169.254.250.0/30").value(),
                        .createdAt = kNow});
  Status status = broken.checkIntegrity();
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message().find("via peering \"gone\", which does not exist"), std::string::npos)
      << status.error().message();
  EXPECT_NE(status.error().message().find("peering \"lost\" joins vpc \"nowhere\""), std::string::npos)
      << status.error().message();
}

// ---- The plan and the ruleset ----

std::vector<NicAttachment> nicsOfThree() {
  return {
      NicAttachment{.instance = "a-web", .subnet = "a1", .address = "10.0.1.4", .securityGroups = {"web"}},
      NicAttachment{.instance = "b-db", .subnet = "b1", .address = "10.1.1.4"},
      NicAttachment{.instance = "c-x", .subnet = "c1", .address = "10.2.1.4"}};
}

TEST_F(PeeringTest, EachSidePlansItsEndOfTheVethPairAndItsRoutesThroughIt) {
  routeBothWays();
  const VpcPlan a = planVpc(t, "a", kPrefix, {}, UplinkSettings{}, std::nullopt);
  const VpcPlan b = planVpc(t, "b", kPrefix, {}, UplinkSettings{}, std::nullopt);
  ASSERT_EQ(a.peerings.size(), 1u);
  ASSERT_EQ(b.peerings.size(), 2u);
  const PeeringPlan& fromA = a.peerings[0];
  const PeeringPlan& fromB = b.peerings[0];
  EXPECT_EQ(fromA.name, "ab");
  EXPECT_EQ(fromA.address, "169.254.248.1/30");
  EXPECT_EQ(fromA.peerAddress, "169.254.248.2/30");
  EXPECT_EQ(fromB.address, "169.254.248.2/30");
  EXPECT_EQ(fromA.link, fromB.peerLink);
  EXPECT_EQ(fromA.peerLink, fromB.link);
  EXPECT_NE(fromA.link, fromA.peerLink);
  EXPECT_TRUE(fromA.link.starts_with("crlp"));
  EXPECT_LE(fromA.link.size(), 15u);
  EXPECT_EQ(fromA.peerNetns, kPrefix + "vpc-b");
  EXPECT_EQ(fromA.peerCidr.str(), "10.1.0.0/16");
  ASSERT_EQ(a.routeTables.size(), 1u);
  ASSERT_EQ(a.routeTables[0].routes.size(), 1u);
  EXPECT_EQ(a.routeTables[0].routes[0].peering, "ab");
  EXPECT_EQ(a.routeTables[0].routes[0].destination.str(), "10.1.0.0/16");
  // C has a peering (bc) but no route: its tables stay empty.
  const VpcPlan c = planVpc(t, "c", kPrefix, {}, UplinkSettings{}, std::nullopt);
  EXPECT_TRUE(c.routeTables[0].routes.empty());
  // A peering changes links and routes: the daemon converges rather than applying a firewall delta.
  Topology without = t;
  ok(without.deleteRoute("a-main", "10.1.0.0/16"));
  ok(without.deleteRoute("b-main", "10.0.0.0/16"));
  ok(without.deletePeering("ab"));
  EXPECT_FALSE(sameLinksAndRoutes(a, planVpc(without, "a", kPrefix, {}, UplinkSettings{}, std::nullopt)));
}

TEST_F(PeeringTest, FirewallDropsTransitBothWaysOnlyWhenPeered) {
  const std::string a = vpcRuleset(t, "a", {});
  EXPECT_NE(a.find("iifname \"crlp*\" ip daddr != 10.0.0.0/16 drop"), std::string::npos) << a;
  EXPECT_NE(a.find("oifname \"crlp*\" ip saddr != 10.0.0.0/16 drop"), std::string::npos) << a;
  const std::string d = vpcRuleset(t, "d", {});
  EXPECT_EQ(d.find("crlp"), std::string::npos) << d;
}

TEST_F(PeeringTest, APeerGroupAcrossThePeeringIsASetOfThePeersMembers) {
  ok(t.createSecurityGroup({.name = "web", .vpc = "a"}, kNow));
  ok(t.createSecurityGroup({.name = "db", .vpc = "b"}, kNow));
  ok(t.addSecurityGroupRule("db", {.protocol = "tcp", .fromPort = 5432, .peerGroup = "web"}));
  std::vector<NicAttachment> nics = nicsOfThree();
  nics[1].securityGroups = {"db"};
  const VpcPlan b = planVpc(t, "b", kPrefix, nics, UplinkSettings{}, std::nullopt);
  ASSERT_TRUE(b.firewall.sets.contains("sg-members-web"));
  const NftSet& members = b.firewall.sets.at("sg-members-web");
  ASSERT_EQ(members.elements.size(), 1u);
  EXPECT_TRUE(members.elements.contains("10.0.1.4"));
  // Only b's own NICs are b's: the peer's NIC is a member, not a port.
  ASSERT_EQ(b.nics.size(), 1u);
  EXPECT_EQ(b.nics[0].nic.instance, "b-db");
  EXPECT_NE(b.ruleset.find("ip saddr @sg-members-web tcp dport 5432 accept"), std::string::npos) << b.ruleset;
  // c is not peered with a: a's NICs never show up there.
  const VpcPlan c = planVpc(t, "c", kPrefix, nicsOfThree(), UplinkSettings{}, std::nullopt);
  EXPECT_EQ(c.ruleset.find("10.0.1.4"), std::string::npos);
}

TEST_F(PeeringTest, RulesDeltaNamingAPeerGroupWithMembersNeedsTheWholePlan) {
  ok(t.createSecurityGroup({.name = "web", .vpc = "a"}, kNow));
  ok(t.createSecurityGroup({.name = "db", .vpc = "b"}, kNow));
  const std::vector<NicAttachment> nics = nicsOfThree();
  const std::vector<NicAttachment> ours{nics[1]};
  const std::vector<NicAttachment> peers{nics[0]};
  const NftTable applied = vpcFirewall(t, "b", ours, nullptr, peers);
  Topology next = t;
  ok(next.addSecurityGroupRule("db", {.protocol = "tcp", .fromPort = 5432, .peerGroup = "web"}));
  // The new member set has an element: only a whole plan fills it.
  EXPECT_FALSE(vpcFirewallRulesDelta(applied, t, next, "b", ours, nullptr, peers));
  // Without members it is a declaration and a chain change, and the delta reaches the whole plan.
  auto delta = vpcFirewallRulesDelta(applied, t, next, "b", ours, nullptr, {});
  ASSERT_TRUE(delta);
  NftTable replayed = applied;
  Status replay = applyDelta(replayed, *delta);
  ASSERT_TRUE(replay) << replay.error().message();
  EXPECT_EQ(replayed, vpcFirewall(next, "b", ours, nullptr, {}));
}

// ---- Convergence (FakeVpcKernel) ----

TEST_F(PeeringTest, ConvergeMakesThePairOnceRoutesThroughItAndRemovesItWhenGone) {
  routeBothWays();
  testing::FakeVpcKernel kernel;
  const VpcPlan a = planVpc(t, "a", kPrefix, {}, UplinkSettings{}, std::nullopt);
  const VpcPlan b = planVpc(t, "b", kPrefix, {}, UplinkSettings{}, std::nullopt);
  // a first, before b's namespace exists: no pair yet, and no route through it.
  ok(convergeVpc(a, kernel));
  EXPECT_FALSE(kernel.netns(a.netns).links.contains(a.peerings[0].link));
  auto routesIn = [&](const std::string& netns) {
    std::vector<std::string> out;
    for (const RouteEntry& r : kernel.netns(netns).routes)
      if (r.table >= 100)
        out.push_back(
            fmt::format("{} via {} dev {}", r.destination, r.gateway.value_or("-"), r.device.value_or("-")));
    return out;
  };
  EXPECT_TRUE(routesIn(a.netns).empty());
  // b makes the pair (both ends addressed and up) and its route; a's next converge adds a's route.
  ChangeLog fromB = ok(convergeVpc(b, kernel));
  const testing::FakeLink& bEnd = kernel.netns(b.netns).links.at(b.peerings[0].link);
  const testing::FakeLink& aEnd = kernel.netns(a.netns).links.at(a.peerings[0].link);
  EXPECT_TRUE(bEnd.up);
  EXPECT_TRUE(aEnd.up);
  EXPECT_EQ(bEnd.addresses, std::vector<std::string>{"169.254.248.2/30"});
  EXPECT_EQ(aEnd.addresses, std::vector<std::string>{"169.254.248.1/30"});
  EXPECT_EQ(routesIn(b.netns), std::vector<std::string>{
                                   fmt::format("10.0.0.0/16 via 169.254.248.1 dev {}", b.peerings[0].link)});
  ok(convergeVpc(a, kernel));
  EXPECT_EQ(routesIn(a.netns), std::vector<std::string>{
                                   fmt::format("10.1.0.0/16 via 169.254.248.2 dev {}", a.peerings[0].link)});
  // Again: nothing to do.
  EXPECT_TRUE(ok(convergeVpc(a, kernel)).empty());

  // The peering goes (routes first): a's converge deletes its end, and b's end with it.
  ok(t.deleteRoute("a-main", "10.1.0.0/16"));
  ok(t.deleteRoute("b-main", "10.0.0.0/16"));
  ok(t.deletePeering("ab"));
  ok(t.deletePeering("bc"));
  ChangeLog removed = ok(convergeVpc(planVpc(t, "a", kPrefix, {}, UplinkSettings{}, std::nullopt), kernel));
  EXPECT_TRUE(std::any_of(removed.begin(), removed.end(), [](const std::string& line) {
    return line.starts_with("removed peering link");
  })) << fmt::format("{}", fmt::join(removed, "\n"));
  for (const auto& [name, link] : kernel.netns(a.netns).links) EXPECT_FALSE(name.starts_with("crlp")) << name;
  for (const auto& [name, link] : kernel.netns(b.netns).links) EXPECT_FALSE(name.starts_with("crlp")) << name;
  EXPECT_TRUE(routesIn(a.netns).empty());
}

// ---- Reach ----

class PeeringReachTest : public PeeringTest {
 protected:
  ReachPath one(std::string source, std::string destination, std::string_view protocol = "tcp",
                std::optional<int64_t> port = 5432) {
    auto query = makeReachQuery(std::move(source), std::move(destination), protocol, port);
    EXPECT_TRUE(query.has_value()) << query.error().message();
    auto paths = analyzeReach(t, nicsOfThree(), *query);
    EXPECT_TRUE(paths.has_value()) << paths.error().message();
    return paths->front();
  }
  void SetUp() override {
    PeeringTest::SetUp();
    ok(t.createSecurityGroup({.name = "web", .vpc = "a"}, kNow));
  }
};

TEST_F(PeeringReachTest, ThroughThePeeringHopByHopWhenBothSidesRoute) {
  routeBothWays();
  // b's default group lets in only its own members: a's web group is refused there first.
  ReachPath refusedIn = one("a-web", "b-db", "icmp", std::nullopt);
  EXPECT_FALSE(refusedIn.reachable);
  EXPECT_EQ(refusedIn.hops.back().component, "security group");
  EXPECT_EQ(refusedIn.hops.back().leg, "in");
  // A rule naming the peer VPC's group lets it in.
  ok(t.addSecurityGroupRule("b-default", {.protocol = "icmp", .peerGroup = "web"}));
  ReachPath path = one("a-web", "b-db", "icmp", std::nullopt);
  EXPECT_TRUE(path.reachable) << path.verdict;
  std::vector<std::string> components;
  for (const ReachHop& hop : path.hops) components.push_back(hop.component + "/" + hop.leg + "/" + hop.name);
  EXPECT_EQ(components,
            (std::vector<std::string>{
                "instance//a-web", "security group/out/web", "network ACL/out/a-default",
                "route table/out/a-main", "router//a", "peering//ab", "router//b", "network ACL/in/b-default",
                "security group/in/b-default", "network ACL/return/b-default", "route table/return/b-main",
                "network ACL/return/a-default", "instance//b-db"}))
      << fmt::format("{}", fmt::join(components, "\n"));
  EXPECT_EQ(path.hops[8].rule, "b-default rule 3");
}

TEST_F(PeeringReachTest, BlockedNamingTheSideWithoutARoute) {
  ok(t.addSecurityGroupRule("b-default", {.protocol = "tcp", .fromPort = 5432, .peerGroup = "web"}));
  ReachPath none = one("a-web", "b-db");
  EXPECT_FALSE(none.reachable);
  EXPECT_EQ(none.hops.back().component, "route table");
  EXPECT_EQ(none.hops.back().name, "a-main");
  EXPECT_EQ(none.hops.back().rule, "no route");
  ok(t.addRoute("a-main", {.destination = "10.1.0.0/16", .targetType = "peering", .targetName = "ab"}));
  ReachPath oneWay = one("a-web", "b-db");
  EXPECT_FALSE(oneWay.reachable);
  EXPECT_EQ(oneWay.hops.back().name, "b-main");
  EXPECT_EQ(oneWay.hops.back().leg, "return");
  EXPECT_NE(oneWay.verdict.find("both sides route to each other"), std::string::npos) << oneWay.verdict;
  // UDP is one way: the datagram arrives without the way back.
  ok(t.addSecurityGroupRule("b-default", {.protocol = "udp", .fromPort = 5353, .peerGroup = "web"}));
  EXPECT_TRUE(one("a-web", "b-db", "udp", 5353).reachable);
  ok(t.addRoute("b-main", {.destination = "10.0.0.0/16", .targetType = "peering", .targetName = "ab"}));
  EXPECT_TRUE(one("a-web", "b-db").reachable);
}

TEST_F(PeeringReachTest, NeverTransitive) {
  routeBothWays();
  ok(t.addRoute("b-main", {.destination = "10.2.0.0/16", .targetType = "peering", .targetName = "bc"}));
  ok(t.addRoute("c-main", {.destination = "10.1.0.0/16", .targetType = "peering", .targetName = "bc"}));
  ReachPath path = one("a-web", "c-x", "icmp", std::nullopt);
  EXPECT_FALSE(path.reachable);
  EXPECT_EQ(path.hops.back().rule, "no peering");
  EXPECT_NE(path.verdict.find("not transitive"), std::string::npos) << path.verdict;
}

}  // namespace
}  // namespace corral::net
