// NetworkController from the model alone: where `corral trace` captures, releasing many NICs at once, and a
// NIC's plan built from its subnet alone. No call here touches the kernel (nothing is converged).
#include "daemon/network.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "schema/instance.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::daemon {
namespace {

constexpr int64_t kNow = 1700000000;

// A VPC "prod" with subnet "web", and instance "web-1" holding a NIC in it, under a controller that
// manages the kernel (a trace is refused otherwise); "loner" is an instance without a NIC.
class CaptureTargetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net::Topology topology;
    ASSERT_TRUE(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
    ASSERT_TRUE(topology.createSubnet({.name = "web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
    NetworkOptions options;
    options.netnsPrefix = "corral-t1-";
    options.kernel = true;
    network_.emplace(options, std::move(topology));
    schema::InstanceSpec spec;
    spec.name = "web-1";
    spec.subnet = "web";
    spec.ip = "10.0.1.4";
    ASSERT_TRUE(network_->restoreNic(spec, "web-1"));
  }

  std::optional<NetworkController> network_;
};

TEST_F(CaptureTargetTest, ARunningInstanceIsCapturedOnItsPort) {
  auto target = network_->captureTarget("web-1", InstanceState::running);
  ASSERT_TRUE(target) << target.error().message();
  EXPECT_EQ(target->kind, CaptureKind::instance);
  EXPECT_EQ(captureKindName(target->kind), "instance");
  EXPECT_EQ(target->name, "web-1");
  EXPECT_EQ(target->vpc, "prod");
  EXPECT_EQ(target->netns, "corral-t1-vpc-prod");
  EXPECT_EQ(target->link, net::instanceVethName("web-1"));
}

TEST_F(CaptureTargetTest, ASubnetIsCapturedOnItsBridgeWhateverTheState) {
  auto target = network_->captureTarget("web", std::nullopt);
  ASSERT_TRUE(target) << target.error().message();
  EXPECT_EQ(target->kind, CaptureKind::subnet);
  EXPECT_EQ(captureKindName(target->kind), "subnet");
  EXPECT_EQ(target->link, net::subnetBridgeName("prod", "web"));
}

TEST_F(CaptureTargetTest, AnInstanceThatDoesNotRunIsRefusedNamingItsState) {
  for (InstanceState state : kAllInstanceStates) {
    if (state == InstanceState::running) continue;
    auto target = network_->captureTarget("web-1", state);
    ASSERT_FALSE(target) << instanceStateName(state);
    EXPECT_EQ(target.error().kind(), ErrorKind::Conflict);
    EXPECT_EQ(target.error().message(), "instance \"web-1\" is " + std::string(instanceStateName(state)) +
                                            ": its port exists only while it runs (corral start web-1)");
  }
}

TEST_F(CaptureTargetTest, NeitherASubnetNorAnInstanceIsNotFoundOnTheTargetField) {
  auto target = network_->captureTarget("nothing", std::nullopt);
  ASSERT_FALSE(target);
  EXPECT_EQ(target.error().kind(), ErrorKind::NotFound);
  EXPECT_EQ(target.error().field(), "target");
}

TEST_F(CaptureTargetTest, AnInstanceWithoutANicIsRefusedWhateverItsState) {
  auto target = network_->captureTarget("loner", InstanceState::running);
  ASSERT_FALSE(target);
  EXPECT_EQ(target.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(target.error().message().find("has no NIC in a subnet"), std::string::npos)
      << target.error().message();
}

}  // namespace
}  // namespace corral::daemon

namespace corral::daemon {
namespace {

// The model side of NICs, under a controller that leaves the kernel alone.
class NicModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    net::Topology topology;
    ASSERT_TRUE(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
    ASSERT_TRUE(topology.createSubnet({.name = "web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
    ASSERT_TRUE(topology.createSubnet({.name = "db", .vpc = "prod", .cidr = "10.0.2.0/24"}, kNow));
    topology_ = topology;
    network_.emplace(NetworkOptions{}, std::move(topology));
  }

  std::string reserve(const std::string& name, const std::string& subnet, const std::string& ip = "") {
    schema::InstanceSpec spec;
    spec.name = name;
    spec.subnet = subnet;
    spec.ip = ip;
    auto nic = network_->reserveNic(spec, "key-" + name);
    EXPECT_TRUE(nic && *nic) << (nic ? "no NIC" : nic.error().message());
    return nic && *nic ? (*nic)->address : std::string();
  }

  net::Topology topology_;
  std::optional<NetworkController> network_;
};

TEST_F(NicModelTest, ReleaseNicsReleasesEveryNamedNicAndSkipsUnknownNames) {
  const std::string a = reserve("a", "web");
  const std::string b = reserve("b", "db");
  reserve("c", "web");
  ASSERT_TRUE(network_->releaseNics({"a", "nobody", "b"}));
  EXPECT_FALSE(network_->nic("a"));
  EXPECT_FALSE(network_->nic("b"));
  EXPECT_TRUE(network_->nic("c"));
  // Their addresses are free again.
  EXPECT_EQ(reserve("a2", "web", a), a);
  EXPECT_EQ(reserve("b2", "db", b), b);
}

TEST_F(NicModelTest, ANicsPlanFromItsSubnetIsTheOneTheVpcPlanHolds) {
  reserve("a", "web");
  reserve("b", "db");
  std::vector<net::NicAttachment> nics{*network_->nic("a"), *network_->nic("b")};
  const net::VpcPlan plan = net::planVpc(topology_, "prod", network_->options().netnsPrefix, nics,
                                         network_->options().uplink, std::nullopt);
  for (const net::NicPlan& planned : plan.nics) {
    auto alone = network_->nicPlan(planned.nic.instance);
    ASSERT_TRUE(alone) << alone.error().message();
    EXPECT_EQ(*alone, planned);
  }
}

// The topology check works from an index of the NICs by subnet and combination of groups (so a rule
// change need not visit every NIC): it names exactly the instances still using a subnet or a group, and
// follows NICs reserved, restored and released.
TEST(NicIndex, ATopologyCheckNamesTheInstancesStillUsingASubnetOrAGroupUntilTheyAreGone) {
  net::Topology topology;
  ASSERT_TRUE(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "db", .vpc = "prod", .cidr = "10.0.2.0/24"}, kNow));
  ASSERT_TRUE(topology.createSecurityGroup({.name = "admin", .vpc = "prod"}, kNow));
  ASSERT_TRUE(topology.createSecurityGroup({.name = "app", .vpc = "prod"}, kNow));
  NetworkController network(NetworkOptions{}, topology);
  auto spec = [](std::string name, std::string subnet, std::vector<std::string> groups) {
    schema::InstanceSpec made;
    made.name = std::move(name);
    made.subnet = std::move(subnet);
    made.securityGroups = std::move(groups);
    return made;
  };
  ASSERT_TRUE(network.reserveNic(spec("w1", "web", {}), "k1"));
  ASSERT_TRUE(network.reserveNic(spec("w2", "web", {"app", "admin"}), "k2"));
  ASSERT_TRUE(network.reserveNic(spec("d1", "db", {"admin", "app"}), "k3"));
  schema::InstanceSpec restored = spec("w3", "web", {"admin"});
  restored.ip = "10.0.1.99";
  ASSERT_TRUE(network.restoreNic(restored, "k4"));

  net::Topology noWeb = topology;
  net::Topology noAdmin = topology;
  ASSERT_TRUE(noWeb.deleteSubnet("web"));
  ASSERT_TRUE(noAdmin.deleteSecurityGroup("admin"));
  auto refusal = [&](const net::Topology& next) {
    auto checked = network.checkTopology(next);
    return checked ? std::string("accepted") : checked.error().message();
  };
  EXPECT_EQ(refusal(noWeb), "subnet \"web\" still has instances: w1, w2, w3; remove them first");
  EXPECT_EQ(refusal(noAdmin),
            "security group \"admin\" is still used by instances: d1, w2, w3; remove them first");

  network.releaseNic("w2");
  ASSERT_TRUE(network.releaseNics({"d1", "nobody"}));
  EXPECT_EQ(refusal(noWeb), "subnet \"web\" still has instances: w1, w3; remove them first");
  EXPECT_EQ(refusal(noAdmin), "security group \"admin\" is still used by instances: w3; remove them first");
  // Restored again with other groups: only the new ones count.
  restored.securityGroups = {"app"};
  ASSERT_TRUE(network.restoreNic(restored, "k4"));
  EXPECT_EQ(refusal(noAdmin), "accepted");
  network.releaseNic("w1");
  network.releaseNic("w3");
  EXPECT_EQ(refusal(noWeb), "accepted");
}

// A listing's view of every NIC (nicPlans) is what asking for each one (nicPlan) gives, across VPCs; an
// instance without a NIC has none.
TEST(NicPlans, EveryNicOfEveryVpcAsItsOwnPlanShowsIt) {
  net::Topology topology;
  ASSERT_TRUE(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
  ASSERT_TRUE(topology.createVpc({.name = "lab", .cidr = "10.9.0.0/16"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "desk", .vpc = "lab", .cidr = "10.9.1.0/24"}, kNow));
  NetworkController network(NetworkOptions{}, std::move(topology));
  for (auto [name, subnet] :
       {std::pair{"web-1", "web"}, std::pair{"web-2", "web"}, std::pair{"pc", "desk"}}) {
    schema::InstanceSpec spec;
    spec.name = name;
    spec.subnet = subnet;
    auto reserved = network.reserveNic(spec, name);
    ASSERT_TRUE(reserved) << reserved.error().message();
  }
  auto plans = network.nicPlans();
  ASSERT_EQ(plans.size(), 3u);
  for (const char* name : {"web-1", "web-2", "pc"}) {
    auto plan = network.nicPlan(name);
    ASSERT_TRUE(plan) << plan.error().message();
    ASSERT_TRUE(plans.contains(name)) << name;
    EXPECT_EQ(plans.find(name)->second, *plan) << name;
  }
  EXPECT_EQ(plans.find("pc")->second.nic.subnet, "desk");
  network.releaseNic("web-2");
  EXPECT_FALSE(network.nicPlans().contains("web-2"));
}

// What allowed an accepted flow, asked by the flow logs: the model of the record's VPC (and its peers), never
// a NIC of another VPC that happens to have the same address.
TEST(FlowExplainer, AcceptedFlowsNameTheirRulesFromTheirOwnVpc) {
  net::Topology topology;
  ASSERT_TRUE(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "db", .vpc = "prod", .cidr = "10.0.2.0/24"}, kNow));
  ASSERT_TRUE(topology.createVpc({.name = "lab", .cidr = "10.0.0.0/16"}, kNow));
  ASSERT_TRUE(topology.createSubnet({.name = "lab-web", .vpc = "lab", .cidr = "10.0.2.0/24"}, kNow));
  NetworkController network(NetworkOptions{}, std::move(topology));
  auto nic = [&](std::string name, std::string subnet, std::string ip) {
    schema::InstanceSpec spec;
    spec.name = name;
    spec.subnet = std::move(subnet);
    spec.ip = std::move(ip);
    ASSERT_TRUE(network.restoreNic(spec, name));
  };
  nic("web-1", "web", "10.0.1.4");
  nic("lab-1", "lab-web", "10.0.2.9");  // the address prod's flow goes to, in another building

  auto at = [](std::string_view address) { return net::Ipv4Address::parse(address)->value(); };
  net::FlowRecord out{.vpc = "prod", .action = net::FlowAction::Accept};
  out.connection = net::AcceptedConnection{.original = {.source = at("10.0.1.4"),
                                                        .destination = at("10.0.2.9"),
                                                        .protocol = 6,
                                                        .sourcePort = 40000,
                                                        .destinationPort = 5432},
                                           .reply = {.source = at("10.0.2.9"),
                                                     .destination = at("10.0.1.4"),
                                                     .protocol = 6,
                                                     .sourcePort = 5432,
                                                     .destinationPort = 40000},
                                           .replies = false};
  net::FlowRecord untouched{.vpc = "prod", .action = net::FlowAction::Accept};
  std::vector<net::FlowRecord*> batch{&out, &untouched};
  network.explainAcceptedFlows("prod", batch);
  std::vector<std::string> texts;
  for (const net::FlowAllowingRule& rule : out.allowedBy) texts.push_back(net::flowAllowingRuleText(rule));
  // web-1's group out and its floor's ACL out; lab-1's floor and groups are another VPC's.
  ASSERT_EQ(texts.size(), 2u) << ::testing::PrintToString(texts);
  EXPECT_NE(texts[0].find("security group prod-default rule "), std::string::npos) << texts[0];
  EXPECT_NE(texts[0].find("(outbound) allows all traffic to 0.0.0.0/0"), std::string::npos) << texts[0];
  EXPECT_EQ(texts[1], "network ACL prod-default rule 100 (outbound) allows");
  EXPECT_TRUE(untouched.allowedBy.empty());
  // A VPC that is gone: nothing to say.
  out.allowedBy.clear();
  network.explainAcceptedFlows("gone", batch);
  EXPECT_TRUE(out.allowedBy.empty());
}

}  // namespace
}  // namespace corral::daemon
