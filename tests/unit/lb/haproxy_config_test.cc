// A load balancer's HAProxy configuration: golden files for an application load balancer with rules,
// fixed responses and L7 firewall rules, and for a network load balancer.
#include "lb/haproxy_config.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::lb {
namespace {

constexpr int64_t kNow = 1700000000;
const std::filesystem::path kGoldenDir = std::filesystem::path(__FILE__).parent_path() / "golden";

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// CORRAL_UPDATE_GOLDEN=1 rewrites the golden files from the current output.
void expectGolden(const std::string& text, const std::string& name) {
  const auto path = kGoldenDir / name;
  if (getenv("CORRAL_UPDATE_GOLDEN")) std::ofstream(path) << text;
  EXPECT_EQ(text, readFile(path)) << "golden file " << path;
}

class HaproxyConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ok(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
    ok(topology.createSubnet({.name = "a", .vpc = "prod", .cidr = "10.0.1.0/24", .availabilityZone = "az1"},
                             kNow));
    ok(topology.createSubnet({.name = "b", .vpc = "prod", .cidr = "10.0.2.0/24", .availabilityZone = "az2"},
                             kNow));
    placement = {{"web-1", {"prod"}}, {"web-2", {"prod"}}, {"api-1", {"prod"}}, {"db-1", {"prod"}}};
  }

  HaproxyInputs inputsFor(const std::string& name) {
    HaproxyInputs inputs{
        .balancer = balancers.findLoadBalancer(name),
        .listenAddresses = {"10.0.1.4", "10.0.2.4"},
        .targetAddresses = {{"web-1", "10.0.1.10"}, {"web-2", "10.0.2.10"}, {"db-1", "10.0.1.20"}}};
    for (const auto& listener : inputs.balancer->listeners) {
      auto add = [&](const ListenerAction& action) {
        if (action.type == ListenerActionType::Forward)
          inputs.groups[action.targetGroup] = balancers.findTargetGroup(action.targetGroup);
      };
      add(listener.defaultAction);
      for (const auto& rule : listener.rules) add(rule.action);
    }
    return inputs;
  }

  net::Topology topology;
  InstancePlacement placement;
  Balancers balancers;
};

TEST_F(HaproxyConfigTest, ApplicationLoadBalancer) {
  ok(balancers.createTargetGroup({.name = "web",
                                  .vpc = "prod",
                                  .healthCheck = {.path = "/health",
                                                  .intervalSeconds = 5,
                                                  .timeoutSeconds = 2,
                                                  .healthyThreshold = 2,
                                                  .unhealthyThreshold = 2},
                                  .targets = {"web-1", "web-2"}},
                                 topology, placement, kNow));
  // api-1 has no address (not running): it stays a target but is not rendered as a server.
  ok(balancers.createTargetGroup({.name = "api", .vpc = "prod", .port = 8080, .targets = {"api-1"}}, topology,
                                 placement, kNow));
  ok(balancers.createLoadBalancer({.name = "front", .vpc = "prod", .subnets = {"a", "b"}}, topology, kNow));
  ok(balancers.addListener("front", {.port = 80, .defaultAction = {.targetGroup = "web"}}));
  ok(balancers.addRule("front", 80, {.priority = 10, .path = "/api/*", .action = {.targetGroup = "api"}}));
  ok(balancers.addRule("front", 80,
                       {.priority = 20, .host = "*.static.example", .action = {.targetGroup = "web"}}));
  ok(balancers.addRule("front", 80,
                       {.priority = 30,
                        .host = "old.example",
                        .path = "/",
                        .action = {.type = "fixed-response", .status = 410, .body = "gone for good"}}));
  ok(balancers.addFirewallRule("front", 80, {.part = "path", .pattern = "/admin*"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "method", .pattern = "DELETE"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "header", .header = "User-Agent", .pattern = "sqlmap"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "body", .pattern = "' OR 1=1"}));
  ok(balancers.addListener("front",
                           {.port = 8081, .defaultAction = {.type = "fixed-response", .status = 404}}));
  expectGolden(renderHaproxyConfig(inputsFor("front")), "application.cfg");
}

TEST_F(HaproxyConfigTest, NetworkLoadBalancer) {
  ok(balancers.createTargetGroup(
      {.name = "db", .vpc = "prod", .port = 5432, .protocol = "tcp", .targets = {"db-1"}}, topology,
      placement, kNow));
  ok(balancers.createLoadBalancer(
      {.name = "pg", .vpc = "prod", .subnets = {"a"}, .internal = true, .type = "network"}, topology, kNow));
  ok(balancers.addListener("pg", {.port = 5432, .protocol = "tcp", .defaultAction = {.targetGroup = "db"}}));
  expectGolden(renderHaproxyConfig(inputsFor("pg")), "network.cfg");
}

}  // namespace
}  // namespace corral::lb
