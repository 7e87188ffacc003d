// The firewall delta planner (net/firewall.h): for seeded random sequences of model changes, replaying each
// delta on the previous table gives exactly the new table (as a whole render would), a delta is empty
// between equal tables, NIC changes touch elements rather than rewriting the big chains, and the replay
// refuses the orders nft would refuse.
#include "net/firewall.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <tuple>

#include "net/nft.h"
#include "tests/unit/net/firewall_sequence.h"

// Specs and commands are written with designated initializers that leave the other fields at their defaults.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

using Kind = NftCommand::Kind;
using testing::FirewallSequence;

// Replays diffTables(before, after) on `before` and checks it lands on `after`.
void expectDeltaReaches(const NftTable& before, const NftTable& after, const std::string& where) {
  auto delta = diffTables(before, after);
  ASSERT_TRUE(delta.has_value()) << where << ": no delta between two tables of one VPC";
  NftTable replayed = before;
  auto applied = applyDelta(replayed, *delta);
  ASSERT_TRUE(applied) << where << ": " << applied.error().message() << "\n" << delta->text();
  EXPECT_EQ(renderTable(replayed), renderTable(after)) << where << "\n" << delta->text();
  auto none = diffTables(after, after);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty()) << where << ": equal tables, yet\n" << none->text();
}

TEST(FirewallDelta, RandomSequencesReachTheWholeRenderAfterEveryStep) {
  for (uint32_t seed : {1u, 2u, 3u, 42u}) {
    FirewallSequence sequence(seed);
    NftTable firewall = sequence.firewall();
    NftTable guards = sequence.portGuards();
    for (int step = 0; step < 200; ++step) {
      const FirewallSequence::Step kind = sequence.next();
      const NftTable nextFirewall = sequence.firewall();
      const NftTable nextGuards = sequence.portGuards();
      const std::string where = fmt::format("seed {} step {} (kind {})", seed, step, static_cast<int>(kind));
      expectDeltaReaches(firewall, nextFirewall, where + " inet");
      expectDeltaReaches(guards, nextGuards, where + " bridge");
      if (kind == FirewallSequence::Step::AddNic || kind == FirewallSequence::Step::RemoveNic) {
        // A NIC is elements (and a chain pair for a new combination of groups): the forward chain and the
        // chains other NICs use stay as they are.
        auto delta = diffTables(firewall, nextFirewall);
        for (const NftCommand& command : delta->commands) {
          if (command.kind != Kind::FlushChain) continue;
          EXPECT_TRUE(!nextFirewall.chains.contains(command.name) || command.name == "prerouting")
              << where << ": a NIC change rewrote chain " << command.name << "\n"
              << delta->text();
        }
      }
      if (::testing::Test::HasFailure()) return;
      firewall = nextFirewall;
      guards = nextGuards;
    }
  }
}

// The incremental planner's own paths, without the whole table: a NIC's part added or removed
// (addPartDelta, removePartDelta) and a rule change over one NIC per combination of groups
// (vpcFirewallRulesDelta). Each delta, replayed on the table before, must give the whole render after;
// where a path declines (nullopt) the daemon plans whole, which the test does too.
bool hasNote(const NftTable& table) {
  for (const auto& [name, chain] : table.chains) {
    for (const std::string& rule : chain.rules) {
      if (rule.starts_with("#")) return true;
    }
  }
  return false;
}

TEST(FirewallIncremental, RandomSequencesThroughPartsAndRuleDeltasReachTheWholeRender) {
  size_t parts = 0, rules = 0, declined = 0;
  for (uint32_t seed : {1u, 2u, 3u, 42u, 2026u}) {
    FirewallSequence sequence(seed);
    NftTable firewall = sequence.firewall();
    NftTable guards = sequence.portGuards();
    for (int step = 0; step < 300; ++step) {
      const FirewallSequence::Step kind = sequence.next();
      const NftTable wholeFirewall = sequence.firewall();
      const NftTable wholeGuards = sequence.portGuards();
      const std::string where = fmt::format("seed {} step {} (kind {})", seed, step, static_cast<int>(kind));
      std::optional<NftDelta> inet, bridge;
      if (sequence.added()) {
        inet = addPartDelta(firewall, sequence.firewallOf({*sequence.added()}));
        bridge = addPartDelta(guards, sequence.portGuardsOf({*sequence.added()}));
      } else if (sequence.removed()) {
        inet = removePartDelta(firewall, sequence.firewallOf({*sequence.removed()}));
        bridge = removePartDelta(guards, sequence.portGuardsOf({*sequence.removed()}));
      } else {
        // Every NIC, or (as corrald passes them) one NIC per combination of groups, here the last one.
        std::vector<NicAttachment> stands = sequence.nics();
        if (step % 2 == 1) {
          std::map<std::vector<std::string>, NicAttachment> last;
          for (const NicAttachment& nic : sequence.nics()) {
            std::vector<std::string> groups = nic.securityGroups;
            std::sort(groups.begin(), groups.end());
            last.insert_or_assign(std::move(groups), nic);
          }
          stands.clear();
          for (auto& [groups, nic] : last) stands.push_back(nic);
        }
        inet = vpcFirewallRulesDelta(firewall, sequence.previousTopology(), sequence.topology(), "lab", stands,
                                     &sequence.gateway());
        bridge = diffTables(guards, wholeGuards);
        if (bridge) {
          EXPECT_TRUE(bridge->empty()) << where << ": a rule change touched the port guards";
        }
      }
      if (!inet || !bridge) {
        // Only a note about a NIC (a published port or public address its subnet cannot use) makes a path
        // decline: the daemon refuses those when it attaches the NIC, so there the whole plan is rare.
        EXPECT_TRUE(hasNote(firewall) || hasNote(wholeFirewall)) << where << ": declined without a note";
        ++declined;
        firewall = wholeFirewall;
        guards = wholeGuards;
        continue;
      }
      (sequence.added() || sequence.removed() ? parts : rules)++;
      for (auto [table, delta, whole] :
           {std::tuple{&firewall, &*inet, &wholeFirewall}, std::tuple{&guards, &*bridge, &wholeGuards}}) {
        auto replayed = applyDelta(*table, *delta);
        ASSERT_TRUE(replayed) << where << ": " << replayed.error().message() << "\n" << delta->text();
        ASSERT_EQ(renderTable(*table), renderTable(*whole)) << where << "\n" << delta->text();
      }
    }
  }
  // Both paths were taken many times (the sequences' isolated subnet makes notes common, so declines are
  // frequent here).
  EXPECT_GT(parts, 100u) << declined << " declined";
  EXPECT_GT(rules, 500u) << declined << " declined";
}

TEST(FirewallIncremental, ANicsPartIsAHandfulOfElementsAndARuleAChainWhateverTheVpcSize) {
  Topology topology;
  ASSERT_TRUE(topology.createVpc({.name = "big", .cidr = "10.0.0.0/16"}, 1));
  ASSERT_TRUE(topology.createSubnet({.name = "s", .vpc = "big", .cidr = "10.0.0.0/22"}, 1));
  std::vector<NicAttachment> nics;
  for (int i = 0; i < 500; ++i) {
    nics.push_back(NicAttachment{.instance = fmt::format("c{}", i),
                                 .subnet = "s",
                                 .address = fmt::format("10.0.{}.{}", i / 200, 4 + i % 200),
                                 .linkKey = fmt::format("k{}", i)});
  }
  std::vector<NicPlan> plans;
  for (const NicAttachment& nic : nics) plans.push_back(planNic(*topology.findSubnet("s"), nic));
  const NftTable firewall = vpcFirewall(topology, "big", nics);
  const NftTable guards = portGuardTable("big", plans);
  const NicAttachment extra{.instance = "new", .subnet = "s", .address = "10.0.3.9", .linkKey = "knew"};
  auto inet = addPartDelta(firewall, vpcFirewall(topology, "big", {extra}));
  auto bridge = addPartDelta(guards, portGuardTable("big", {planNic(*topology.findSubnet("s"), extra)}));
  ASSERT_TRUE(inet && bridge);
  EXPECT_EQ(inet->text(),
            "add element inet corral sg-egress { 10.0.3.9 comment \"new\" : jump sg-egress-big-default }\n"
            "add element inet corral sg-ingress { 10.0.3.9 comment \"new\" : jump sg-ingress-big-default }\n"
            "add element inet corral sg-members-big-default { 10.0.3.9 comment \"new\" }\n");
  EXPECT_EQ(bridge->commands.size(), 8u) << "a port is eight elements, no chain, no counter\n"
                                         << bridge->text();
  for (const NftCommand& command : bridge->commands) EXPECT_EQ(command.kind, Kind::AddElement);

  Topology next = topology;
  ASSERT_TRUE(next.addSecurityGroupRule(
      "big-default",
      {.direction = "ingress", .protocol = "tcp", .fromPort = 22, .toPort = 22, .cidr = "10.0.0.0/8"}));
  auto rule = vpcFirewallRulesDelta(firewall, topology, next, "big", nics, nullptr);
  ASSERT_TRUE(rule);
  EXPECT_FALSE(rule->empty());
  for (const NftCommand& command : rule->commands) {
    EXPECT_TRUE(command.kind == Kind::FlushChain || command.kind == Kind::AddRule) << rule->text();
    EXPECT_EQ(command.name, "sg-ingress-big-default") << rule->text();
  }
}

TEST(FirewallIncremental, APartThatDoesNotFitIsDeclined) {
  FirewallSequence sequence(9);
  for (int i = 0; i < 60; ++i) sequence.next();
  const NftTable firewall = sequence.firewall();
  ASSERT_FALSE(sequence.nics().empty());
  const NicAttachment held = sequence.nics().front();
  EXPECT_FALSE(addPartDelta(firewall, sequence.firewallOf({held}))) << "its elements are there already";
  NicAttachment stranger = held;
  stranger.address = "10.0.2.253";
  stranger.instance = "stranger";
  EXPECT_FALSE(removePartDelta(firewall, sequence.firewallOf({stranger}))) << "not in the table";
  NftTable other = firewall;
  other.chains.at("forward").rules.push_back("drop");
  EXPECT_FALSE(removePartDelta(other, sequence.firewallOf({held}))) << "the model changed beyond the NIC";
}

TEST(FirewallDelta, ANicIsAHandfulOfElementsWhateverTheVpcSize) {
  FirewallSequence sequence(7);
  // Grow the VPC first; then one more NIC must cost the same few commands.
  for (int i = 0; i < 300; ++i) sequence.next();
  Topology topology;
  ASSERT_TRUE(topology.createVpc({.name = "big", .cidr = "10.0.0.0/16"}, 1));
  ASSERT_TRUE(topology.createSubnet({.name = "s", .vpc = "big", .cidr = "10.0.0.0/22"}, 1));
  std::vector<NicAttachment> nics;
  for (int i = 0; i < 150; ++i) {
    nics.push_back(NicAttachment{.instance = fmt::format("c{}", i),
                                 .subnet = "s",
                                 .address = fmt::format("10.0.{}.{}", i / 200, 4 + i % 200),
                                 .linkKey = fmt::format("k{}", i)});
  }
  const NftTable before = vpcFirewall(topology, "big", nics);
  nics.push_back(NicAttachment{.instance = "new", .subnet = "s", .address = "10.0.2.9", .linkKey = "knew"});
  const NftTable after = vpcFirewall(topology, "big", nics);
  auto delta = diffTables(before, after);
  ASSERT_TRUE(delta);
  // The default group's member set, and the two verdict maps.
  EXPECT_EQ(delta->commands.size(), 3u) << delta->text();
  for (const NftCommand& command : delta->commands)
    EXPECT_EQ(command.kind, Kind::AddElement) << delta->text();
  EXPECT_EQ(delta->text(),
            "add element inet corral sg-egress { 10.0.2.9 comment \"new\" : jump sg-egress-big-default }\n"
            "add element inet corral sg-ingress { 10.0.2.9 comment \"new\" : jump sg-ingress-big-default }\n"
            "add element inet corral sg-members-big-default { 10.0.2.9 comment \"new\" }\n");
}

NftTable smallTable() {
  NftTable table{
      .family = "inet", .name = "corral", .header = {}, .counters = {"hits"}, .sets = {}, .chains = {}};
  table.sets["peers"] =
      NftSet{.keyType = "ipv4_addr", .valueType = {}, .counter = false, .elements = {{"10.0.0.1", {}}}};
  table.sets["dispatch"] =
      NftSet{.keyType = "ipv4_addr", .valueType = "verdict", .counter = false, .elements = {}};
  table.chains["allow"] =
      NftChain{.hook = {}, .rules = {"ip saddr @peers counter name \"hits\" accept", "drop"}};
  table.sets["dispatch"].elements["10.0.0.1"] = NftElement{.value = "jump allow", .comment = "a"};
  table.chains["forward"] = NftChain{.hook = "type filter hook forward priority filter; policy accept;",
                                     .rules = {"ip daddr vmap @dispatch"}};
  return table;
}

TEST(FirewallDelta, RemovingEverythingDeletesInAnOrderNftAccepts) {
  const NftTable before = smallTable();
  NftTable after = before;
  after.counters.clear();
  after.sets.erase("peers");
  after.sets["dispatch"].elements.clear();
  after.chains.erase("allow");
  expectDeltaReaches(before, after, "teardown");
  auto delta = diffTables(before, after);
  EXPECT_EQ(delta->text(),
            "delete element inet corral dispatch { 10.0.0.1 }\n"
            "flush chain inet corral allow\n"
            "delete set inet corral peers\n"
            "delete chain inet corral allow\n"
            "delete counter inet corral hits\n");
}

TEST(FirewallDelta, ReplayRefusesWhatNftWouldRefuse) {
  NftTable table = smallTable();
  NftDelta deleteReferencedChain{.family = "inet", .table = "corral", .commands = {}};
  deleteReferencedChain.commands.push_back(NftCommand{.kind = Kind::FlushChain, .name = "allow"});
  deleteReferencedChain.commands.push_back(NftCommand{.kind = Kind::DeleteChain, .name = "allow"});
  EXPECT_FALSE(applyDelta(table, deleteReferencedChain)) << "a map element still jumps there";

  table = smallTable();
  NftDelta ruleBeforeItsSet{.family = "inet", .table = "corral", .commands = {}};
  ruleBeforeItsSet.commands.push_back(
      NftCommand{.kind = Kind::AddRule, .name = "allow", .text = "ip saddr @later drop"});
  EXPECT_FALSE(applyDelta(table, ruleBeforeItsSet));

  table = smallTable();
  NftDelta elementTwice{.family = "inet", .table = "corral", .commands = {}};
  elementTwice.commands.push_back(NftCommand{.kind = Kind::AddElement, .name = "peers", .key = "10.0.0.1"});
  EXPECT_FALSE(applyDelta(table, elementTwice));
}

TEST(FirewallDelta, TypeOrHookChangesNeedAWholeReplace) {
  const NftTable before = smallTable();
  NftTable retyped = before;
  retyped.sets["peers"].keyType = "ipv4_addr . inet_service";
  EXPECT_FALSE(diffTables(before, retyped).has_value());
  NftTable rehooked = before;
  rehooked.chains["forward"].hook = "type filter hook input priority filter; policy accept;";
  EXPECT_FALSE(diffTables(before, rehooked).has_value());
  NftTable other = before;
  other.family = "bridge";
  EXPECT_FALSE(diffTables(before, other).has_value());
}

}  // namespace
}  // namespace corral::net
