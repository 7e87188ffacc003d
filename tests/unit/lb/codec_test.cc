// Load balancers and target groups through JSON and back unchanged; a damaged document refused by field.
#include "lb/codec.h"

#include <gtest/gtest.h>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::lb {
namespace {

constexpr int64_t kNow = 1700000000;

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

TEST(LbCodecTest, RoundTrip) {
  net::Topology topology;
  ok(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ok(topology.createSubnet({.name = "a", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
  InstancePlacement placement{{"web-1", {"prod"}}};
  Balancers balancers;
  ok(balancers.createTargetGroup({.name = "web",
                                  .vpc = "prod",
                                  .healthCheck = {.path = "/h", .intervalSeconds = 7},
                                  .targets = {"web-1"}},
                                 topology, placement, kNow));
  ok(balancers.createLoadBalancer({.name = "front", .vpc = "prod", .subnets = {"a"}, .internal = true},
                                  topology, kNow));
  ok(balancers.addListener("front", {.port = 80, .defaultAction = {.targetGroup = "web"}}));
  ok(balancers.addRule("front", 80,
                       {.priority = 3,
                        .host = "x.example",
                        .path = "/a/*",
                        .action = {.type = "fixed-response", .status = 418, .body = "teapot"}}));
  ok(balancers.addFirewallRule(
      "front", 80,
      {.part = "header", .header = "User-Agent", .pattern = "sqlmap", .description = "scanners"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "body", .pattern = "' OR 1=1"}));

  const TargetGroup& group = *balancers.findTargetGroup("web");
  EXPECT_EQ(ok(targetGroupFromJson(nlohmann::json::parse(toJson(group).dump()))), group);
  const LoadBalancer& balancer = *balancers.findLoadBalancer("front");
  EXPECT_EQ(ok(loadBalancerFromJson(nlohmann::json::parse(toJson(balancer).dump()))), balancer);
  EXPECT_EQ(toJson(balancer)["scheme"], "internal");
  EXPECT_EQ(toJson(balancer)["nics"], nlohmann::json::array());

  // With the NICs corrald gave it: kept, and a document without "nics" (written before) reads as none.
  ok(balancers.setNics("front", {{.subnet = "a", .address = "10.0.1.4", .publicAddress = ""}}));
  const LoadBalancer& running = *balancers.findLoadBalancer("front");
  EXPECT_EQ(ok(loadBalancerFromJson(nlohmann::json::parse(toJson(running).dump()))), running);
  EXPECT_EQ(toJson(running)["nics"][0]["public_address"], nullptr);
  nlohmann::json before = toJson(running);
  before.erase("nics");
  EXPECT_TRUE(ok(loadBalancerFromJson(before)).nics.empty());
  ok(balancers.setNics("front", {{.subnet = "a", .address = "10.0.1.4", .publicAddress = "198.51.100.9"}}));
  EXPECT_EQ(ok(loadBalancerFromJson(nlohmann::json::parse(toJson(running).dump()))), running);
  // One NIC per subnet, in the subnets' order: anything else is refused.
  EXPECT_FALSE(balancers.setNics("front", {{.subnet = "b", .address = "10.0.2.4"}}));
  EXPECT_FALSE(balancers.setNics("front", {}));
}

TEST(LbCodecTest, DamagedDocumentNamesTheField) {
  auto bad = loadBalancerFromJson(nlohmann::json::parse(
      R"({"name":"x","vpc":"v","subnets":["a"],"scheme":"internal","type":"application","security_group":"g",
          "created_at":1,"listeners":[{"port":80,"protocol":"http","next_firewall_rule_id":1,
          "default_action":{"type":"forward","target_group":"t"},"rules":[{"priority":0}],"firewall":[]}]})"));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field(), "listeners[0].rules[0].priority");
  auto group = targetGroupFromJson(nlohmann::json::parse(R"({"name":"x","vpc":"v","port":70000})"));
  ASSERT_FALSE(group);
  EXPECT_EQ(group.error().field(), "port");
}

}  // namespace
}  // namespace corral::lb
