// The store's load balancers and target groups: written one change per transaction, read back exactly,
// and a VPC that still holds one cannot be deleted from under it.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>

#include "daemon/store.h"
#include "lb/codec.h"
#include "lb/model.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::daemon {
namespace {

constexpr int64_t kNow = 1700000000;

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

std::string dump(const lb::Balancers& balancers) {
  std::string text;
  for (const auto* group : balancers.targetGroups()) text += lb::toJson(*group).dump() + "\n";
  for (const auto* balancer : balancers.loadBalancers()) text += lb::toJson(*balancer).dump() + "\n";
  return text;
}

TEST(StoreLoadBalancers, ChangesPersistAndReloadExactly) {
  char pattern[] = "/tmp/corral-store-lb-test-XXXXXX";
  ASSERT_NE(mkdtemp(pattern), nullptr);
  const std::string path = std::string(pattern) + "/state.db";
  {
    auto store = ok(Store::open(path));
    net::Topology topology;
    ASSERT_TRUE(store.apply(topology, ok(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow))));
    ASSERT_TRUE(store.apply(
        topology, ok(topology.createSubnet({.name = "a", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow))));
    lb::InstancePlacement placement{{"web-1", {"prod"}}, {"web-2", {"prod"}}};
    lb::Balancers balancers;
    auto persist = [&](Result<lb::Changes> changes) {
      ASSERT_TRUE(changes) << changes.error().message();
      auto status = store.apply(balancers, *changes);
      ASSERT_TRUE(status) << status.error().message();
    };
    persist(balancers.createTargetGroup({.name = "web", .vpc = "prod", .targets = {"web-1"}}, topology,
                                        placement, kNow));
    persist(balancers.registerTargets("web", {"web-2"}, placement));
    persist(balancers.createLoadBalancer({.name = "front", .vpc = "prod", .subnets = {"a"}}, topology, kNow));
    persist(balancers.addListener("front", {.port = 80, .defaultAction = {.targetGroup = "web"}}));
    persist(
        balancers.addRule("front", 80, {.priority = 1, .path = "/api/*", .action = {.targetGroup = "web"}}));
    persist(balancers.addFirewallRule("front", 80, {.part = "method", .pattern = "DELETE"}));
    EXPECT_EQ(dump(ok(store.loadBalancers())), dump(balancers));

    // The VPC is still referenced: its deletion fails as a whole at COMMIT.
    net::Topology withoutVpc = topology;
    ok(withoutVpc.deleteSubnet("a"));
    auto vpcGone = withoutVpc.deleteVpc("prod");
    ASSERT_TRUE(vpcGone) << vpcGone.error().message();
    auto changes = ok(topology.deleteSubnet("a"));
    ASSERT_TRUE(store.apply(topology, changes));
    EXPECT_FALSE(store.apply(withoutVpc, *vpcGone));

    persist(balancers.deleteLoadBalancer("front"));
    persist(balancers.deleteTargetGroup("web"));
    ASSERT_TRUE(store.apply(withoutVpc, *vpcGone));
  }
  auto reopened = ok(Store::open(path));
  EXPECT_EQ(dump(ok(reopened.loadBalancers())), "");
  std::filesystem::remove_all(pattern);
}

}  // namespace
}  // namespace corral::daemon
