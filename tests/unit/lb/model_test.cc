// The load balancer model: what it accepts, and each kind of bad input refused with the field named and
// nothing changed.
#include "lb/model.h"

#include <gtest/gtest.h>

#include <string>

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::lb {
namespace {

constexpr int64_t kNow = 1700000000;

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

// VPC "prod" with subnets "a" (az1) and "b" (az2) and "a2" (az1 again); VPC "dev" with subnet "d".
// Instances web-1 and web-2 are in prod, dev-1 in dev.
class BalancersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ok(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
    ok(topology.createSubnet({.name = "a", .vpc = "prod", .cidr = "10.0.1.0/24", .availabilityZone = "az1"},
                             kNow));
    ok(topology.createSubnet({.name = "b", .vpc = "prod", .cidr = "10.0.2.0/24", .availabilityZone = "az2"},
                             kNow));
    ok(topology.createSubnet({.name = "a2", .vpc = "prod", .cidr = "10.0.3.0/24", .availabilityZone = "az1"},
                             kNow));
    ok(topology.createVpc({.name = "dev", .cidr = "10.1.0.0/16"}, kNow));
    ok(topology.createSubnet({.name = "d", .vpc = "dev", .cidr = "10.1.1.0/24"}, kNow));
    placement = {{"web-1", {"prod"}}, {"web-2", {"prod"}}, {"dev-1", {"dev"}}};
    ok(balancers.createTargetGroup({.name = "web", .vpc = "prod", .targets = {"web-1", "web-2"}}, topology,
                                   placement, kNow));
    ok(balancers.createTargetGroup({.name = "api", .vpc = "prod", .port = 8080}, topology, placement, kNow));
    ok(balancers.createLoadBalancer({.name = "front", .vpc = "prod", .subnets = {"a", "b"}}, topology, kNow));
    ok(balancers.addListener("front", {.port = 80, .defaultAction = {.targetGroup = "web"}}));
  }

  // The error's field, after checking that nothing changed.
  template <class T>
  std::string refusedField(Result<T> result) {
    EXPECT_FALSE(result.has_value());
    if (result) return "";
    EXPECT_EQ(snapshot(), before) << "a refused change changed the model: " << result.error().message();
    lastMessage = result.error().message();
    return result.error().field();
  }
  void remember() { before = snapshot(); }
  std::string snapshot() const {
    std::string text;
    for (const auto* b : balancers.loadBalancers()) {
      text += b->name + ":";
      for (const auto& l : b->listeners) {
        text += std::to_string(l.port) + "/" + std::to_string(l.rules.size()) + "/" +
                std::to_string(l.firewall.size()) + "/" + std::to_string(l.nextFirewallRuleId) + ";";
      }
    }
    for (const auto* g : balancers.targetGroups()) {
      text += g->name + ":";
      for (const auto& t : g->targets) text += t + ",";
    }
    return text;
  }

  net::Topology topology;
  InstancePlacement placement;
  Balancers balancers;
  std::string before;
  std::string lastMessage;
};

TEST_F(BalancersTest, DefaultsAndWhatWasTouched) {
  const auto* group = ok(balancers.targetGroup("web"));
  EXPECT_EQ(group->port, 80);
  EXPECT_EQ(group->healthCheck, HealthCheck{});
  EXPECT_EQ(group->targets, (std::set<std::string>{"web-1", "web-2"}));
  const auto* front = ok(balancers.loadBalancer("front"));
  EXPECT_EQ(front->securityGroup, "prod-default");
  EXPECT_FALSE(front->internal);
  ASSERT_EQ(front->listeners.size(), 1u);
  EXPECT_EQ(front->listeners[0].defaultAction.targetGroup, "web");

  auto changes = ok(
      balancers.addRule("front", 80, {.priority = 10, .path = "/api/*", .action = {.targetGroup = "api"}}));
  EXPECT_EQ(changes, Changes{.upsertedLoadBalancers = {"front"}});
  changes = ok(balancers.deregisterTargets("web", {"web-2"}));
  EXPECT_EQ(changes, Changes{.upsertedTargetGroups = {"web"}});
  EXPECT_EQ(balancers.findTargetGroup("web")->targets, (std::set<std::string>{"web-1"}));
  EXPECT_EQ(balancers.loadBalancersUsing("api"), (std::vector<std::string>{"front"}));
  EXPECT_TRUE(balancers.holdsAnything("prod"));
  EXPECT_FALSE(balancers.holdsAnything("dev"));
}

TEST_F(BalancersTest, TargetGroupInAnotherVpcIsRefused) {
  ok(balancers.createTargetGroup({.name = "devtg", .vpc = "dev"}, topology, placement, kNow));
  remember();
  EXPECT_EQ(
      refusedField(balancers.addListener("front", {.port = 8080, .defaultAction = {.targetGroup = "devtg"}})),
      "default_action.target_group");
  EXPECT_NE(lastMessage.find("VPC \"dev\""), std::string::npos) << lastMessage;
  EXPECT_EQ(refusedField(balancers.addRule(
                "front", 80, {.priority = 1, .path = "/x", .action = {.targetGroup = "devtg"}})),
            "action.target_group");
}

TEST_F(BalancersTest, TargetOutsideTheVpcIsRefused) {
  remember();
  EXPECT_EQ(refusedField(balancers.registerTargets("web", {"dev-1"}, placement)), "targets[0]");
  EXPECT_NE(lastMessage.find("no NIC in VPC \"prod\""), std::string::npos) << lastMessage;
  auto missing = balancers.registerTargets("web", {"ghost"}, placement);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind(), ErrorKind::NotFound);
  EXPECT_EQ(refusedField(balancers.createTargetGroup(
                {.name = "x", .vpc = "prod", .targets = {"web-1", "dev-1"}}, topology, placement, kNow)),
            "targets[1]");
  auto twice = balancers.registerTargets("web", {"web-1"}, placement);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().kind(), ErrorKind::Conflict);
}

TEST_F(BalancersTest, DuplicateAndShadowedRulesAreRefused) {
  ok(balancers.addRule("front", 80, {.priority = 10, .path = "/api/*", .action = {.targetGroup = "api"}}));
  ok(balancers.addRule("front", 80,
                       {.priority = 5,
                        .host = "admin.example.com",
                        .path = "/api/*",
                        .action = {.type = "fixed-response", .status = 403}}));
  remember();
  auto duplicate =
      balancers.addRule("front", 80, {.priority = 10, .path = "/other", .action = {.targetGroup = "web"}});
  ASSERT_FALSE(duplicate);
  EXPECT_EQ(duplicate.error().kind(), ErrorKind::Conflict);
  // The same host+path behind an earlier rule, or a narrower path behind a prefix: never matches.
  EXPECT_EQ(refusedField(balancers.addRule(
                "front", 80, {.priority = 30, .path = "/api/*", .action = {.targetGroup = "web"}})),
            "priority");
  EXPECT_NE(lastMessage.find("rule 30"), std::string::npos) << lastMessage;
  EXPECT_EQ(refusedField(balancers.addRule(
                "front", 80, {.priority = 30, .path = "/api/v1/*", .action = {.targetGroup = "web"}})),
            "priority");
  // A new, wider rule in front of an existing one shadows that one: refused too.
  EXPECT_EQ(refusedField(balancers.addRule("front", 80,
                                           {.priority = 3, .path = "/*", .action = {.targetGroup = "web"}})),
            "priority");
  EXPECT_NE(lastMessage.find("rule 5 "), std::string::npos) << lastMessage;
  // A host rule behind a host wildcard.
  ok(balancers.addRule("front", 80,
                       {.priority = 40, .host = "*.shop.example", .action = {.targetGroup = "web"}}));
  remember();
  EXPECT_EQ(refusedField(balancers.addRule(
                "front", 80,
                {.priority = 50, .host = "eu.shop.example", .path = "/x", .action = {.targetGroup = "api"}})),
            "priority");
  // Different hosts do not shadow each other; a narrower rule first is fine.
  ok(balancers.addRule(
      "front", 80, {.priority = 50, .host = "shop.example", .path = "/x", .action = {.targetGroup = "api"}}));
  ok(balancers.addRule("front", 80, {.priority = 1, .path = "/api/v2/*", .action = {.targetGroup = "web"}}));
}

TEST_F(BalancersTest, NumbersOutOfRangeAreRefused) {
  remember();
  EXPECT_EQ(
      refusedField(balancers.addListener("front", {.port = 0, .defaultAction = {.targetGroup = "web"}})),
      "port");
  EXPECT_EQ(
      refusedField(balancers.addListener("front", {.port = 70000, .defaultAction = {.targetGroup = "web"}})),
      "port");
  auto clash = balancers.addListener("front", {.port = 80, .defaultAction = {.targetGroup = "web"}});
  ASSERT_FALSE(clash);
  EXPECT_EQ(clash.error().kind(), ErrorKind::Conflict);
  EXPECT_EQ(refusedField(balancers.addRule("front", 80,
                                           {.priority = 0, .path = "/x", .action = {.targetGroup = "web"}})),
            "priority");
  EXPECT_EQ(refusedField(balancers.addRule(
                "front", 80, {.priority = 50001, .path = "/x", .action = {.targetGroup = "web"}})),
            "priority");
  EXPECT_EQ(refusedField(balancers.createTargetGroup({.name = "t", .vpc = "prod", .port = -1}, topology,
                                                     placement, kNow)),
            "port");
  EXPECT_EQ(
      refusedField(balancers.createTargetGroup(
          {.name = "t", .vpc = "prod", .healthCheck = {.intervalSeconds = 1}}, topology, placement, kNow)),
      "health_check.interval");
  EXPECT_EQ(refusedField(balancers.createTargetGroup(
                {.name = "t", .vpc = "prod", .healthCheck = {.intervalSeconds = 5, .timeoutSeconds = 5}},
                topology, placement, kNow)),
            "health_check.timeout");
  EXPECT_EQ(
      refusedField(balancers.createTargetGroup(
          {.name = "t", .vpc = "prod", .healthCheck = {.healthyThreshold = 11}}, topology, placement, kNow)),
      "health_check.healthy_threshold");
  EXPECT_EQ(refusedField(balancers.createTargetGroup(
                {.name = "t", .vpc = "prod", .healthCheck = {.path = "health"}}, topology, placement, kNow)),
            "health_check.path");
  EXPECT_EQ(
      refusedField(balancers.addRule(
          "front", 80, {.priority = 3, .path = "/x", .action = {.type = "fixed-response", .status = 99}})),
      "action.status");
}

TEST_F(BalancersTest, SubnetsAreCheckedAgainstTheVpc) {
  remember();
  EXPECT_EQ(refusedField(balancers.createLoadBalancer({.name = "x", .vpc = "prod"}, topology, kNow)),
            "subnets");
  EXPECT_EQ(refusedField(balancers.createLoadBalancer({.name = "x", .vpc = "prod", .subnets = {"a", "d"}},
                                                      topology, kNow)),
            "subnets[1]");
  EXPECT_EQ(refusedField(balancers.createLoadBalancer({.name = "x", .vpc = "prod", .subnets = {"a", "a2"}},
                                                      topology, kNow)),
            "subnets[1]");
  EXPECT_NE(lastMessage.find("availability zone \"az1\""), std::string::npos) << lastMessage;
  EXPECT_EQ(refusedField(balancers.createLoadBalancer(
                {.name = "x", .vpc = "prod", .subnets = {"a"}, .type = "classic"}, topology, kNow)),
            "type");
  EXPECT_EQ(refusedField(balancers.createLoadBalancer({.name = "Bad_Name", .vpc = "prod", .subnets = {"a"}},
                                                      topology, kNow)),
            "name");
  // One subnet is allowed (AWS asks for two zones; corral shows the zones instead).
  ok(balancers.createLoadBalancer({.name = "one", .vpc = "prod", .subnets = {"a"}}, topology, kNow));
}

TEST_F(BalancersTest, ProtocolsMustAgree) {
  ok(balancers.createTargetGroup({.name = "tcp", .vpc = "prod", .port = 5432, .protocol = "tcp"}, topology,
                                 placement, kNow));
  ok(balancers.createLoadBalancer({.name = "nlb", .vpc = "prod", .subnets = {"a"}, .type = "network"},
                                  topology, kNow));
  remember();
  EXPECT_EQ(refusedField(balancers.addListener(
                "nlb", {.port = 80, .protocol = "http", .defaultAction = {.targetGroup = "web"}})),
            "protocol");
  EXPECT_EQ(refusedField(balancers.addListener(
                "nlb", {.port = 80, .protocol = "tcp", .defaultAction = {.targetGroup = "web"}})),
            "default_action.target_group");
  ok(balancers.addListener("nlb",
                           {.port = 5432, .protocol = "tcp", .defaultAction = {.targetGroup = "tcp"}}));
  remember();
  EXPECT_EQ(refusedField(balancers.addRule("nlb", 5432,
                                           {.priority = 1, .path = "/x", .action = {.targetGroup = "tcp"}})),
            "port");
  EXPECT_EQ(refusedField(balancers.addFirewallRule("nlb", 5432, {.part = "method", .pattern = "DELETE"})),
            "port");
}

TEST_F(BalancersTest, FirewallRules) {
  ok(balancers.addFirewallRule("front", 80, {.part = "path", .pattern = "/admin*"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "method", .pattern = "DELETE"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "header", .header = "User-Agent", .pattern = "sqlmap"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "body", .pattern = "' OR 1=1"}));
  const auto& firewall = balancers.findLoadBalancer("front")->listeners[0].firewall;
  ASSERT_EQ(firewall.size(), 4u);
  EXPECT_EQ(firewall[2].header, "user-agent");
  EXPECT_EQ(firewall[3].id, 4);
  ok(balancers.deleteFirewallRule("front", 80, 2));
  ok(balancers.addFirewallRule("front", 80, {.part = "method", .pattern = "PUT"}));
  EXPECT_EQ(balancers.findLoadBalancer("front")->listeners[0].firewall.back().id, 5)
      << "ids are never reused";
  remember();
  EXPECT_EQ(refusedField(balancers.addFirewallRule("front", 80, {.part = "cookie", .pattern = "x"})), "part");
  EXPECT_EQ(refusedField(balancers.addFirewallRule("front", 80, {.part = "method", .pattern = "delete"})),
            "pattern");
  EXPECT_EQ(refusedField(balancers.addFirewallRule("front", 80, {.part = "header", .pattern = "x"})),
            "header");
  EXPECT_EQ(refusedField(balancers.addFirewallRule("front", 80, {.part = "body", .pattern = "a\"b"})),
            "pattern");
  EXPECT_EQ(refusedField(balancers.addFirewallRule("front", 80, {.part = "path", .pattern = "/a*b"})),
            "pattern");
  EXPECT_EQ(
      refusedField(balancers.addFirewallRule("front", 80, {.part = "path", .header = "x", .pattern = "/a"})),
      "header");
}

TEST_F(BalancersTest, DeletingWhatIsInUse) {
  remember();
  auto inUse = balancers.deleteTargetGroup("web");
  ASSERT_FALSE(inUse);
  EXPECT_EQ(inUse.error().kind(), ErrorKind::Conflict);
  EXPECT_EQ(snapshot(), before);
  EXPECT_EQ(ok(balancers.deleteLoadBalancer("front")), Changes{.deletedLoadBalancers = {"front"}});
  EXPECT_EQ(ok(balancers.deleteTargetGroup("web")), Changes{.deletedTargetGroups = {"web"}});
  EXPECT_EQ(balancers.forgetInstance("web-1"), Changes{});
  ok(balancers.registerTargets("api", {"web-1"}, placement));
  EXPECT_EQ(balancers.forgetInstance("web-1"), Changes{.upsertedTargetGroups = {"api"}});
}

}  // namespace
}  // namespace corral::lb
