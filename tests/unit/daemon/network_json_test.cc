// The teaching fields of each VPC object's JSON on a small topology.
#include "daemon/network_json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace corral::daemon {
namespace {

using nlohmann::json;

// prod 10.0.0.0/16 with a /24 and a /28 subnet, an internet gateway and a security group with one rule.
class TopologyJson : public ::testing::Test {
 protected:
  void SetUp() override {
    must(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, 1000));
    must(topology.createSubnet(subnetSpec("web", "10.0.1.0/24"), 1001));
    must(topology.createSubnet(subnetSpec("tiny", "10.0.2.0/28"), 1002));
    must(topology.createInternetGateway({.name = "door", .vpc = "prod"}, 1003));
  }
  static net::SubnetSpec subnetSpec(std::string name, std::string cidr) {
    net::SubnetSpec spec;
    spec.name = std::move(name);
    spec.vpc = "prod";
    spec.cidr = std::move(cidr);
    return spec;
  }
  static net::NetworkAclRuleSpec aclRule(int64_t number, std::string direction, std::string action,
                                         std::string protocol, std::string cidr,
                                         std::optional<int64_t> port = std::nullopt) {
    return {.number = number,
            .direction = std::move(direction),
            .action = std::move(action),
            .protocol = std::move(protocol),
            .fromPort = port,
            .toPort = port,
            .cidr = std::move(cidr)};
  }
  void must(const Result<net::Changeset>& change) {
    ASSERT_TRUE(change.has_value()) << change.error().message();
  }
  net::Topology topology;
};

TEST_F(TopologyJson, VpcShowsItsDefaultsAndSize) {
  json v = toJson(topology, **topology.vpc("prod"));
  EXPECT_EQ(v["name"], "prod");
  EXPECT_EQ(v["cidr"], "10.0.0.0/16");
  EXPECT_EQ(v["size"], 65536);
  EXPECT_EQ(v["private"], true);
  EXPECT_EQ(v["class"], "A");
  EXPECT_EQ(v["main_route_table"], "prod-main");
  EXPECT_EQ(v["default_network_acl"], "prod-default");
  EXPECT_EQ(v["default_security_group"], "prod-default");
  EXPECT_EQ(v["subnet_count"], 2);
  EXPECT_EQ(v["created_at"], 1000);
}

TEST_F(TopologyJson, SubnetShowsUsableRouterDnsAndReachability) {
  json web = toJson(topology, **topology.subnet("web"));
  EXPECT_EQ(web["size"], 256);
  EXPECT_EQ(web["usable"], 251);
  EXPECT_EQ(web["router"], "10.0.1.1");
  EXPECT_EQ(web["dns"], "10.0.1.2");
  EXPECT_EQ(web["availability_zone"], "az1");
  EXPECT_EQ(web["route_table"], "prod-main");
  EXPECT_EQ(web["network_acl"], "prod-default");
  EXPECT_EQ(web["map_public_ip"], false);
  EXPECT_EQ(web["reachability"], "isolated");

  json tiny = toJson(topology, **topology.subnet("tiny"));
  EXPECT_EQ(tiny["size"], 16);
  EXPECT_EQ(tiny["usable"], 11);
  EXPECT_EQ(tiny["router"], "10.0.2.1");
}

TEST_F(TopologyJson, DefaultRouteToTheInternetGatewayMakesTheSubnetPublic) {
  must(topology.addRoute(
      "prod-main", {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "door"}));
  EXPECT_EQ(toJson(topology, **topology.subnet("web"))["reachability"], "public");

  json table = toJson(topology, **topology.routeTable("prod-main"));
  EXPECT_EQ(table["main"], true);
  ASSERT_EQ(table["routes"].size(), 2u);
  json defaultRoute = {{"destination", "0.0.0.0/0"}, {"target_type", "internet_gateway"}, {"target", "door"}};
  json localRoute = {{"destination", "10.0.0.0/16"}, {"target_type", "local"}, {"target", nullptr}};
  EXPECT_TRUE(table["routes"][0] == localRoute || table["routes"][1] == localRoute) << table.dump();
  EXPECT_TRUE(table["routes"][0] == defaultRoute || table["routes"][1] == defaultRoute) << table.dump();
  EXPECT_EQ(table["subnets"], (json{"tiny", "web"}));
  EXPECT_FALSE(toJson(**topology.routeTable("prod-main")).contains("subnets"));
}

TEST_F(TopologyJson, NetworkAclShowsRulesInOrderAndTheImplicitDeny) {
  must(topology.createNetworkAcl({.name = "strict", .vpc = "prod"}, 1004));
  must(topology.addNetworkAclRule("strict", aclRule(200, "ingress", "allow", "tcp", "0.0.0.0/0", 443)));
  must(topology.addNetworkAclRule("strict", aclRule(100, "ingress", "deny", "all", "192.0.2.0/24")));
  must(topology.addNetworkAclRule("strict", aclRule(100, "egress", "allow", "all", "0.0.0.0/0")));
  json acl = toJson(**topology.networkAcl("strict"));
  EXPECT_EQ(acl["default"], false);
  const json& rules = acl["rules"];
  ASSERT_EQ(rules.size(), 5u) << acl.dump();
  EXPECT_EQ(rules[0]["number"], 100);
  EXPECT_EQ(rules[0]["action"], "deny");
  EXPECT_EQ(rules[1]["number"], 200);
  EXPECT_EQ(rules[1]["from_port"], 443);
  EXPECT_EQ(rules[2], (json{{"number", "*"},
                            {"direction", "ingress"},
                            {"action", "deny"},
                            {"protocol", "all"},
                            {"from_port", nullptr},
                            {"to_port", nullptr},
                            {"cidr", "0.0.0.0/0"}}));
  EXPECT_EQ(rules[3]["direction"], "egress");
  EXPECT_EQ(rules[3]["number"], 100);
  EXPECT_EQ(rules[4]["number"], "*");
  EXPECT_EQ(rules[4]["direction"], "egress");

  // The default ACL: rule 100 allows all in each direction, then the implicit deny.
  json defaults = toJson(**topology.networkAcl("prod-default"));
  ASSERT_EQ(defaults["rules"].size(), 4u) << defaults.dump();
  EXPECT_EQ(defaults["rules"][1]["number"], "*");
}

TEST_F(TopologyJson, SecurityGroupRulesCarryTheirIds) {
  must(topology.createSecurityGroup({.name = "web-sg", .vpc = "prod", .description = "web servers"}, 1005));
  must(topology.addSecurityGroupRule("web-sg", {.direction = "ingress",
                                                .protocol = "tcp",
                                                .fromPort = 22,
                                                .toPort = 22,
                                                .cidr = "10.0.0.0/16",
                                                .peerGroup = std::nullopt,
                                                .description = "ssh from the VPC"}));
  json group = toJson(**topology.securityGroup("web-sg"));
  EXPECT_EQ(group["description"], "web servers");
  EXPECT_EQ(group["default"], false);
  // A new group starts with AWS's allow-all egress rule; the rule just added is the last one.
  ASSERT_EQ(group["rules"].size(), 2u) << group.dump();
  EXPECT_EQ(group["rules"][0]["direction"], "egress");
  EXPECT_EQ(group["rules"][0]["protocol"], "all");
  EXPECT_TRUE(group["rules"][0]["from_port"].is_null());
  const json& rule = group["rules"][1];
  EXPECT_EQ(rule["id"], topology.securityGroup("web-sg").value()->rules.back().id);
  EXPECT_NE(rule["id"], group["rules"][0]["id"]);
  EXPECT_EQ(rule["direction"], "ingress");
  EXPECT_EQ(rule["description"], "ssh from the VPC");
  EXPECT_EQ(rule["protocol"], "tcp");
  EXPECT_EQ(rule["from_port"], 22);
  EXPECT_EQ(rule["to_port"], 22);
  EXPECT_EQ(rule["cidr"], "10.0.0.0/16");
  EXPECT_TRUE(rule["peer_group"].is_null());
}

TEST_F(TopologyJson, GatewaysNameTheirVpcAndSubnet) {
  EXPECT_EQ(toJson(**topology.internetGateway("door")),
            (json{{"name", "door"}, {"vpc", "prod"}, {"created_at", 1003}}));
  must(topology.createNatGateway({.name = "nat", .subnet = "web"}, 1006));
  json nat = toJson(**topology.natGateway("nat"));
  EXPECT_EQ(nat["vpc"], "prod");
  EXPECT_EQ(nat["subnet"], "web");
}

}  // namespace
}  // namespace corral::daemon
