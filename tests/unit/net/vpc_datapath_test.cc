// convergeVpc's diff without root: the converger runs against FakeVpcKernel (a simulated VPC namespace and
// uplink namespace), and each test compares the whole list of kernel calls it made and the change log it
// reported with a golden file (tests/unit/net/golden/converge_*.txt; CORRAL_UPDATE_GOLDEN=1 rewrites them).
// The same convergence on the real kernel: tests/integration/net/vpc_datapath_test.cc.
#include "net/vpc_datapath.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/unit/net/fake_vpc_kernel.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

using testing::FakeLink;
using testing::FakeVpcKernel;

constexpr int64_t kNow = 1700000000;
const std::string kPrefix = "corral-t7-";
const std::string kInternet = "corral-t7-internet";
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

// The calls, then the change log (or the error), as one text compared whole with golden/NAME.
void expectGolden(const std::string& name, const std::vector<std::string>& calls,
                  const Result<ChangeLog>& result) {
  std::string text = fmt::format("# calls\n{}\n", fmt::join(calls, "\n"));
  if (result) {
    text += fmt::format("# changes\n{}", fmt::join(*result, "\n"));
    if (!result->empty()) text += "\n";
  } else {
    text += fmt::format("# error\n{}\n", result.error().message());
  }
  const auto path = kGoldenDir / name;
  if (std::getenv("CORRAL_UPDATE_GOLDEN")) std::ofstream(path) << text;
  EXPECT_EQ(text, readFile(path)) << "golden file " << path;
}

// prod (10.0.0.0/16): "a-public" (route table public-rt: default → internet gateway, 192.0.2.0/24
// blackhole) and "b-private" (the main table), an internet gateway.
Topology prodTopology() {
  Topology t;
  ok(t.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ok(t.createRouteTable({.name = "public-rt", .vpc = "prod"}, kNow));
  ok(t.createSubnet({.name = "a-public", .vpc = "prod", .cidr = "10.0.1.0/24", .routeTable = "public-rt"},
                    kNow));
  ok(t.createSubnet({.name = "b-private", .vpc = "prod", .cidr = "10.0.2.0/24"}, kNow));
  ok(t.createInternetGateway({.name = "prod-igw", .vpc = "prod"}, kNow));
  ok(t.addRoute("public-rt",
                {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "prod-igw"}));
  ok(t.addRoute("public-rt", {.destination = "192.0.2.0/24", .targetType = "blackhole"}));
  return t;
}

const NicAttachment kWeb{.instance = "web-1",
                         .subnet = "a-public",
                         .address = "10.0.1.10",
                         .publicAddress = "100.64.128.9",
                         .linkKey = "web-1-key"};
const NicAttachment kApp{
    .instance = "app", .vm = true, .subnet = "b-private", .address = "10.0.2.20", .linkKey = "corral-app"};

VpcPlan prodPlan(const Topology& topology, const std::vector<NicAttachment>& nics) {
  return planVpc(topology, "prod", kPrefix, nics, UplinkSettings{.netns = kInternet},
                 *Cidr::parse("100.64.0.4/30"));
}

// The NIC's port as attach* leaves it: a port of its bridge, up.
void attachPort(FakeVpcKernel& kernel, const VpcPlan& plan, const NicPlan& nic) {
  kernel.netns(plan.netns).links[nic.link] = FakeLink{
      .kind = nic.nic.vm ? "tun" : "veth", .up = true, .master = nic.bridge, .addresses = {}, .peer = {}};
}

const NicPlan& nicOf(const VpcPlan& plan, std::string_view instance) {
  for (const NicPlan& nic : plan.nics)
    if (nic.nic.instance == instance) return nic;
  throw std::logic_error(fmt::format("no NIC of {} in the plan", instance));
}

class ConvergeVpc : public ::testing::Test {
 protected:
  void SetUp() override {
    kernel_.addNetns(kInternet);
    plan_ = prodPlan(topology_, {kWeb});
  }
  // A VPC converged once, its NIC attached, and the calls of that forgotten.
  void convergeOnce() {
    ASSERT_TRUE(convergeVpc(plan_, kernel_));
    attachPort(kernel_, plan_, nicOf(plan_, "web-1"));
    kernel_.takeCalls();
  }
  Topology topology_ = prodTopology();
  FakeVpcKernel kernel_;
  VpcPlan plan_;
};

TEST_F(ConvergeVpc, FreshVpcIsBuiltInOrder) {
  auto result = convergeVpc(plan_, kernel_);
  ASSERT_TRUE(result) << result.error().message();
  expectGolden("converge_fresh.txt", kernel_.calls(), result);
  // What the calls left in the simulated namespace.
  const auto& vpc = kernel_.netns(plan_.netns);
  EXPECT_EQ(vpc.ruleset, plan_.ruleset);
  EXPECT_EQ(vpc.portGuards, plan_.portGuards);
  EXPECT_EQ(vpc.sysctls.at("net/ipv4/ip_forward"), "1");
  EXPECT_TRUE(vpc.links.at(plan_.gateway->vpcLink).up);
  EXPECT_TRUE(kernel_.netns(kInternet).links.at(plan_.gateway->uplinkLink).up);
}

TEST_F(ConvergeVpc, ConvergedVpcOnlyReads) {
  convergeOnce();
  auto result = convergeVpc(plan_, kernel_);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_TRUE(result->empty()) << fmt::format("{}", fmt::join(*result, "\n"));
  expectGolden("converge_nothing_to_do.txt", kernel_.calls(), result);
}

TEST_F(ConvergeVpc, StaleObjectsAreRemoved) {
  convergeOnce();
  auto& vpc = kernel_.netns(plan_.netns);
  const std::string bridge = nicOf(plan_, "web-1").bridge;
  // A deleted subnet's bridge, a second address on a live bridge, a deleted instance's port, routes of a
  // deleted route table and a stale one in a live table, a deleted subnet's rule, a public address no
  // longer in use on the uplink side. Foreign objects (no corral prefix, the kernel's tables) stay.
  vpc.links["crlb0000dead"] =
      FakeLink{.kind = "bridge", .up = true, .master = {}, .addresses = {"10.0.9.1/24"}};
  vpc.links["eth9"] = FakeLink{.kind = "", .up = true, .master = {}, .addresses = {"192.168.9.1/24"}};
  vpc.links.at(bridge).addresses.push_back("10.0.1.99/24");
  vpc.links["crlv0000dead"] = FakeLink{.kind = "veth", .up = true, .master = bridge, .addresses = {}};
  vpc.routes.push_back({.destination = "198.51.100.0/24", .table = 100, .blackhole = true});
  vpc.routes.push_back({.destination = "0.0.0.0/0", .table = 102, .blackhole = true});
  vpc.routes.push_back({.destination = "10.0.0.0/8", .table = 254, .blackhole = true});
  vpc.rules.push_back({.priority = 1007, .from = "10.0.7.0/24", .table = 101});
  vpc.rules.push_back({.priority = 5000, .from = "10.0.7.0/24", .table = 254});
  kernel_.netns(kInternet).routes.push_back({.destination = "100.64.128.77/32",
                                             .gateway = "100.64.0.6",
                                             .device = plan_.gateway->uplinkLink,
                                             .table = 254});

  auto result = convergeVpc(plan_, kernel_);
  ASSERT_TRUE(result) << result.error().message();
  expectGolden("converge_stale.txt", kernel_.calls(), result);
  EXPECT_TRUE(vpc.links.contains("eth9"));
  EXPECT_EQ(std::count(vpc.rules.begin(), vpc.rules.end(),
                       RuleEntry{.priority = 5000, .from = "10.0.7.0/24", .table = 254}),
            1);
}

TEST_F(ConvergeVpc, MissingAndWrongObjectsAreMadeAgain) {
  convergeOnce();
  auto& vpc = kernel_.netns(plan_.netns);
  const NicPlan& web = nicOf(plan_, "web-1");
  // Someone deleted the router address of a bridge and took another one down, deleted the blackhole route
  // and a subnet's rule, reset a sysctl, detached and downed the NIC's port, replaced the default route
  // with a blackhole, and deleted the uplink side of the gateway (its peer in the VPC goes with it).
  vpc.links.at(web.bridge).addresses.clear();
  for (auto& [name, link] : vpc.links)
    if (link.kind == "bridge" && name != web.bridge) link.up = false;
  std::erase_if(vpc.routes, [](const RouteEntry& r) { return r.destination == "192.0.2.0/24"; });
  std::erase_if(vpc.rules, [](const RuleEntry& r) { return r.priority == kSubnetRulePriority; });
  vpc.sysctls["net/ipv4/conf/all/rp_filter"] = "1";
  vpc.links.at(web.link).master.reset();
  vpc.links.at(web.link).up = false;
  for (RouteEntry& route : vpc.routes) {
    if (route.destination == "0.0.0.0/0")
      route = {.destination = "0.0.0.0/0", .table = 101, .blackhole = true};
  }
  ASSERT_TRUE(kernel_.deleteLink(kInternet, plan_.gateway->uplinkLink));
  kernel_.takeCalls();

  auto result = convergeVpc(plan_, kernel_);
  ASSERT_TRUE(result) << result.error().message();
  expectGolden("converge_missing.txt", kernel_.calls(), result);
  kernel_.takeCalls();
  auto again = convergeVpc(plan_, kernel_);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_TRUE(again->empty()) << fmt::format("{}", fmt::join(*again, "\n"));
}

TEST_F(ConvergeVpc, NicAddedThenRemoved) {
  convergeOnce();
  // app (a VM) joins b-private: its guard and the ruleset change; its tap shows up once attached.
  const VpcPlan withApp = prodPlan(topology_, {kWeb, kApp});
  auto added = convergeVpc(withApp, kernel_);
  ASSERT_TRUE(added) << added.error().message();
  expectGolden("converge_nic_added.txt", kernel_.takeCalls(), added);
  attachPort(kernel_, withApp, nicOf(withApp, "app"));

  // web-1 goes: its port, its guard, its public address route, and its part of the ruleset.
  const VpcPlan withoutWeb = prodPlan(topology_, {kApp});
  auto removed = convergeVpc(withoutWeb, kernel_);
  ASSERT_TRUE(removed) << removed.error().message();
  expectGolden("converge_nic_removed.txt", kernel_.takeCalls(), removed);
  EXPECT_FALSE(kernel_.netns(plan_.netns).links.contains(nicOf(plan_, "web-1").link));
  EXPECT_EQ(kernel_.netns(plan_.netns).guardedLinks, std::vector<std::string>{nicOf(withApp, "app").link});
}

TEST_F(ConvergeVpc, GatewayDeleted) {
  convergeOnce();
  ok(topology_.deleteRoute("public-rt", "0.0.0.0/0"));
  ok(topology_.deleteInternetGateway("prod-igw"));
  const VpcPlan noGateway = prodPlan(topology_, {kWeb});
  auto result = convergeVpc(noGateway, kernel_);
  ASSERT_TRUE(result) << result.error().message();
  expectGolden("converge_gateway_deleted.txt", kernel_.calls(), result);
  EXPECT_FALSE(kernel_.netns(kInternet).links.contains(plan_.gateway->uplinkLink)) << "the peer went too";
}

TEST_F(ConvergeVpc, ErrorInTheMiddleNamesStepAndCallThenARetryFinishes) {
  kernel_.failAt(fmt::format("{}: addRoute table 101 0.0.0.0/0", plan_.netns),
                 systemError(ENETUNREACH, "rtnl_route_add(0.0.0.0/0 table 101)"));
  auto failed = convergeVpc(plan_, kernel_);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().kind(), ErrorKind::Internal);
  expectGolden("converge_error.txt", kernel_.takeCalls(), failed);

  auto retried = convergeVpc(plan_, kernel_);
  ASSERT_TRUE(retried) << retried.error().message();
  expectGolden("converge_error_retry.txt", kernel_.takeCalls(), retried);
}

TEST_F(ConvergeVpc, MissingBrNetfilterIsExplained) {
  kernel_.addNetns(plan_.netns, /*brNetfilter=*/false);
  auto failed = convergeVpc(plan_, kernel_);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().kind(), ErrorKind::Unavailable);
  expectGolden("converge_no_br_netfilter.txt", kernel_.calls(), failed);
}

// The host as uplink (UplinkSettings::netns empty): the gateway's uplink side is made in the caller's
// namespace.
TEST(ConvergeVpcHostUplink, UplinkSideInTheCallersNamespace) {
  FakeVpcKernel kernel;
  kernel.addNetns("");
  const VpcPlan plan =
      planVpc(prodTopology(), "prod", kPrefix, {kWeb}, UplinkSettings{}, *Cidr::parse("100.64.0.4/30"));
  auto result = convergeVpc(plan, kernel);
  ASSERT_TRUE(result) << result.error().message();
  expectGolden("converge_host_uplink.txt", kernel.calls(), result);
}

}  // namespace
}  // namespace corral::net
