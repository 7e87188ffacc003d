// The firewall deltas on the real kernel: a seeded random sequence of 200 model changes applied to one
// namespace as increments (one nft transaction each) and loaded whole into another at the end gives the
// same tables, as nft lists them; a crash between two increments (the second never applied) is repaired by
// the whole load a restarting daemon does; a batch nft refuses changes nothing. Everything happens in
// namespaces this test makes and removes.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "net/firewall.h"
#include "net/nft.h"
#include "tests/integration/netns_testing.h"
#include "tests/unit/net/firewall_sequence.h"

namespace corral::net {
namespace {

using corral::testing::TestNamespaces;
using nlohmann::json;

void dropHandles(json& value) {
  if (value.is_object()) {
    value.erase("handle");
    for (auto& [key, item] : value.items()) dropHandles(item);
  } else if (value.is_array()) {
    for (json& item : value) dropHandles(item);
  }
}

// The kernel's listing of one table, normalized: no handles, set elements sorted, objects sorted; rules
// kept in their order per chain (order is what a chain means).
Result<json> listing(const std::string& netns, std::string_view family) {
  auto text = listTableJson(netns, family, "corral");
  if (!text) return fail(std::move(text).error());
  json parsed = json::parse(*text, nullptr, false);
  if (parsed.is_discarded()) return fail(internalError("nft -j printed no JSON: {}", *text));
  std::vector<json> objects;
  json rules = json::object();
  for (json& item : parsed.at("nftables")) {
    if (item.contains("metainfo")) continue;
    dropHandles(item);
    for (const char* kind : {"set", "map"}) {
      if (item.contains(kind) && item[kind].contains("elem")) {
        json& elements = item[kind]["elem"];
        std::sort(elements.begin(), elements.end(),
                  [](const json& a, const json& b) { return a.dump() < b.dump(); });
      }
    }
    if (item.contains("rule")) {
      rules[item["rule"]["chain"].get<std::string>()].push_back(item);
    } else {
      objects.push_back(item);
    }
  }
  std::sort(objects.begin(), objects.end(), [](const json& a, const json& b) { return a.dump() < b.dump(); });
  return json{{"objects", objects}, {"rules", rules}};
}

// What a daemon starting up does to the tables (convergeVpc with nothing remembered): both loaded whole.
Status loadWhole(const std::string& netns, const testing::FirewallSequence& sequence) {
  if (auto ok = applyRuleset(netns, renderTable(sequence.firewall())); !ok) return ok;
  auto guards = applyPortGuards(netns, renderTable(sequence.portGuards()), sequence.links());
  if (!guards) return fail(std::move(guards).error());
  return {};
}

void expectSameTables(const std::string& a, const std::string& b, const std::string& where) {
  for (std::string_view family : {"inet", "bridge"}) {
    auto left = listing(a, family);
    auto right = listing(b, family);
    ASSERT_TRUE(left) << left.error().message();
    ASSERT_TRUE(right) << right.error().message();
    EXPECT_EQ(*left, *right) << where << ": table " << family << " corral differs\n"
                             << left->dump(1) << "\n----\n"
                             << right->dump(1);
  }
}

class FirewallDeltaKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available()) GTEST_SKIP() << "needs root: network namespaces and nftables";
    for (auto [ns, suffix] : {std::pair{&increments_, "fwd-inc"}, std::pair{&whole_, "fwd-whole"},
                              std::pair{&crashed_, "fwd-crash"}}) {
      auto made = namespaces_.make(suffix);
      ASSERT_TRUE(made) << made.error().message();
      *ns = *made;
    }
  }

  TestNamespaces namespaces_;
  std::string increments_, whole_, crashed_;
};

TEST_F(FirewallDeltaKernel, TwoHundredIncrementsEqualOneWholeLoadAndACrashIsRepairedAtStart) {
  constexpr int kSteps = 200;
  constexpr int kCrashAt = 120;  // the crashed namespace gets step 120's delta, never step 121's
  testing::FirewallSequence sequence(2026);
  ASSERT_TRUE(loadWhole(increments_, sequence));
  ASSERT_TRUE(loadWhole(crashed_, sequence));
  NftTable firewall = sequence.firewall();
  NftTable guards = sequence.portGuards();
  int applied = 0;
  for (int step = 0; step < kSteps; ++step) {
    sequence.next();
    const NftTable nextFirewall = sequence.firewall();
    const NftTable nextGuards = sequence.portGuards();
    auto inet = diffTables(firewall, nextFirewall);
    auto bridge = diffTables(guards, nextGuards);
    ASSERT_TRUE(inet && bridge) << "step " << step;
    auto ok = applyDeltas(increments_, {*bridge, *inet});
    ASSERT_TRUE(ok) << "step " << step << ": " << ok.error().message() << "\n"
                    << bridge->text() << inet->text();
    applied += inet->empty() && bridge->empty() ? 0 : 1;
    if (step == kCrashAt + 1) {
      // The daemon died before this delta; at start it loads the model whole (nothing remembered).
      ASSERT_TRUE(loadWhole(crashed_, sequence));
      expectSameTables(increments_, crashed_, fmt::format("after the repair at step {}", step));
    } else {
      ASSERT_TRUE(applyDeltas(crashed_, {*bridge, *inet})) << "step " << step;
    }
    firewall = nextFirewall;
    guards = nextGuards;
  }
  EXPECT_GT(applied, kSteps / 3) << "the sequence changes something often";
  ASSERT_TRUE(loadWhole(whole_, sequence));
  expectSameTables(increments_, whole_, "after 200 increments vs one whole load");
  expectSameTables(crashed_, whole_, "crashed and repaired vs one whole load");
}

// The same on the incremental planner's own paths, as corrald takes them: a NIC's part added or removed
// (addPartDelta, removePartDelta), a rule change planned over one NIC per combination of groups
// (vpcFirewallRulesDelta), and where a path declines the whole plan's difference. 200 of them applied to
// the kernel one transaction each give the tables one whole load gives, as nft lists them.
TEST_F(FirewallDeltaKernel, ThePlannersIncrementsEqualOneWholeLoad) {
  testing::FirewallSequence sequence(77);
  ASSERT_TRUE(loadWhole(increments_, sequence));
  NftTable firewall = sequence.firewall();
  NftTable guards = sequence.portGuards();
  int parts = 0, rules = 0, whole = 0;
  for (int step = 0; step < 200; ++step) {
    sequence.next();
    const NftTable wholeFirewall = sequence.firewall();
    const NftTable wholeGuards = sequence.portGuards();
    std::optional<NftDelta> inet, bridge;
    if (sequence.added()) {
      inet = addPartDelta(firewall, sequence.firewallOf({*sequence.added()}));
      bridge = addPartDelta(guards, sequence.portGuardsOf({*sequence.added()}));
    } else if (sequence.removed()) {
      inet = removePartDelta(firewall, sequence.firewallOf({*sequence.removed()}));
      bridge = removePartDelta(guards, sequence.portGuardsOf({*sequence.removed()}));
    } else {
      std::map<std::vector<std::string>, NicAttachment> stands;  // one NIC per combination, as corrald
      for (const NicAttachment& nic : sequence.nics()) {
        std::vector<std::string> groups = nic.securityGroups;
        std::sort(groups.begin(), groups.end());
        stands.emplace(std::move(groups), nic);
      }
      std::vector<NicAttachment> standing;
      for (const auto& [groups, nic] : stands) standing.push_back(nic);
      inet = vpcFirewallRulesDelta(firewall, sequence.previousTopology(), sequence.topology(), "lab", standing,
                                   &sequence.gateway());
      bridge = diffTables(guards, wholeGuards);
    }
    if (inet && bridge) {
      (sequence.added() || sequence.removed() ? parts : rules)++;
    } else {
      ++whole;  // declined: corrald plans the VPC whole and applies the difference
      inet = diffTables(firewall, wholeFirewall);
      bridge = diffTables(guards, wholeGuards);
      ASSERT_TRUE(inet && bridge) << "step " << step;
    }
    auto ok = applyDeltas(increments_, {*bridge, *inet});
    ASSERT_TRUE(ok) << "step " << step << ": " << ok.error().message() << "\n" << bridge->text() << inet->text();
    ASSERT_TRUE(applyDelta(firewall, *inet)) << "step " << step;
    ASSERT_TRUE(applyDelta(guards, *bridge)) << "step " << step;
    ASSERT_EQ(renderTable(firewall), renderTable(wholeFirewall)) << "step " << step;
  }
  EXPECT_GT(parts, 10) << rules << " rule deltas, " << whole << " whole";
  EXPECT_GT(rules, 60) << parts << " parts, " << whole << " whole";
  ASSERT_TRUE(loadWhole(whole_, sequence));
  expectSameTables(increments_, whole_, "after 200 of the planner's increments vs one whole load");
}

TEST_F(FirewallDeltaKernel, ABatchNftRefusesChangesNothing) {
  testing::FirewallSequence sequence(5);
  for (int i = 0; i < 30; ++i) sequence.next();
  ASSERT_TRUE(loadWhole(increments_, sequence));
  auto before = listing(increments_, "inet");
  ASSERT_TRUE(before) << before.error().message();
  const NftTable firewall = sequence.firewall();
  NftTable changed = firewall;
  changed.sets["sg-egress"].elements["10.0.3.3"] = NftElement{.value = "jump extra", .comment = "x"};
  changed.chains["extra"] = NftChain{.hook = {}, .rules = {"drop"}};
  auto good = diffTables(firewall, changed);
  ASSERT_TRUE(good);
  // A good delta followed by one computed against a table the kernel does not have (drift): the element
  // it deletes is not there.
  NftTable drifted = firewall;
  drifted.sets["sg-ingress"].elements["10.0.9.9"] = NftElement{.value = "drop", .comment = "gone"};
  auto bad = diffTables(drifted, firewall);
  ASSERT_TRUE(bad);
  ASSERT_FALSE(bad->empty());
  auto refused = applyDeltas(increments_, {*good, *bad});
  ASSERT_FALSE(refused) << "nft accepted deleting an element that is not there";
  EXPECT_NE(refused.error().message().find("nft refused"), std::string::npos) << refused.error().message();
  auto after = listing(increments_, "inet");
  ASSERT_TRUE(after);
  EXPECT_EQ(*before, *after) << "the good half of a refused batch was applied";
}

}  // namespace
}  // namespace corral::net
