// The VPC firewall on the real kernel: a router namespace with two subnet bridges and three instance
// namespaces, table inet corral applied from the model, and real TCP connects between them. Everything
// lives in namespaces this test makes and removes; the host's own network is never touched.
#include "net/nft.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "core/unique_fd.h"
#include "net/datapath.h"
#include "tests/integration/netns_testing.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

using corral::testing::listenIn;
using corral::testing::runInNetns;
using corral::testing::tcpExchange;
using corral::testing::TcpExchange;
using corral::testing::TestNamespaces;

constexpr int64_t kNow = 1700000000;
constexpr std::chrono::milliseconds kConnectTimeout{1000};
const std::filesystem::path kGoldenDir =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path() / "unit" / "net" / "golden";

struct CommandResult {
  int status = -1;
  std::string output;
};

// Test plumbing only (the product talks netlink): runs a shell command, stdout and stderr together.
CommandResult run(const std::string& command) {
  CommandResult result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) result.output.append(buffer, n);
  result.status = ::pclose(pipe);
  return result;
}

// router: bridges br1 (10.78.1.1/24) and br2 (10.78.2.1/24); a (10.78.1.10) and b (10.78.1.11) on
// subnet s1, c (10.78.2.10) on s2.
class VpcFirewall : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available()) GTEST_SKIP() << "needs root: network namespaces, bridges and nftables";
    for (auto [ns, suffix] : {std::pair{&router_, "nft-r"}, std::pair{&a_, "nft-a"}, std::pair{&b_, "nft-b"},
                              std::pair{&c_, "nft-c"}}) {
      auto made = namespaces_.make(suffix);
      ASSERT_TRUE(made) << made.error().message();
      *ns = *made;
    }
    for (const auto& [bridge, address] :
         {std::pair{"br1", "10.78.1.1/24"}, std::pair{"br2", "10.78.2.1/24"}}) {
      must(std::string("ip -n ") + router_ + " link add " + bridge + " type bridge");
      must(std::string("ip -n ") + router_ + " addr add " + address + " dev " + bridge);
      must(std::string("ip -n ") + router_ + " link set " + bridge + " up");
    }
    must("ip netns exec " + router_ + " sysctl -qw net.ipv4.ip_forward=1");
    CommandResult brnf = run("ip netns exec " + router_ + " sysctl -qw net.bridge.bridge-nf-call-iptables=1");
    brNetfilter_ = brnf.status == 0;
    if (!brNetfilter_)
      brNetfilterWhy_ = "net.bridge.bridge-nf-call-iptables is not settable here: " + brnf.output;
    attach(a_, "va", "br1", "10.78.1.10", "10.78.1.1");
    attach(b_, "vb", "br1", "10.78.1.11", "10.78.1.1");
    attach(c_, "vc", "br2", "10.78.2.10", "10.78.2.1");

    ASSERT_TRUE(topology_.createVpc({.name = "v", .cidr = "10.78.0.0/16"}, kNow));
    ASSERT_TRUE(topology_.createSubnet({.name = "s1", .vpc = "v", .cidr = "10.78.1.0/24"}, kNow));
    ASSERT_TRUE(topology_.createSubnet({.name = "s2", .vpc = "v", .cidr = "10.78.2.0/24"}, kNow));
    ASSERT_TRUE(topology_.createSecurityGroup({.name = "web", .vpc = "v"}, kNow));
    ASSERT_TRUE(topology_.createSecurityGroup({.name = "client", .vpc = "v"}, kNow));
    ASSERT_TRUE(topology_.addSecurityGroupRule("web", {.direction = "ingress",
                                                       .protocol = "tcp",
                                                       .fromPort = 8080,
                                                       .toPort = 8080,
                                                       .cidr = "10.78.1.0/24"}));
    ASSERT_TRUE(topology_.addSecurityGroupRule("web", {.direction = "ingress",
                                                       .protocol = "tcp",
                                                       .fromPort = 9090,
                                                       .toPort = 9090,
                                                       .cidr = "10.78.2.0/24"}));
    nics_ = {{.instance = "a", .subnet = "s1", .address = "10.78.1.10", .securityGroups = {"web"}},
             {.instance = "b", .subnet = "s1", .address = "10.78.1.11", .securityGroups = {"client"}},
             {.instance = "c", .subnet = "s2", .address = "10.78.2.10", .securityGroups = {"client"}}};
  }

  void must(const std::string& command) {
    CommandResult r = run(command);
    ASSERT_EQ(r.status, 0) << command << ": " << r.output;
  }

  void attach(const std::string& ns, const std::string& port, const std::string& bridge,
              const std::string& address, const std::string& gateway) {
    must("ip -n " + router_ + " link add " + port + " type veth peer name eth0 netns " + ns);
    must("ip -n " + router_ + " link set " + port + " master " + bridge + " up");
    must("ip -n " + ns + " addr add " + address + "/24 dev eth0");
    must("ip -n " + ns + " link set eth0 up");
    must("ip -n " + ns + " route add default via " + gateway);
  }

  void apply() {
    auto s = applyRuleset(router_, vpcRuleset(topology_, "v", nics_));
    ASSERT_TRUE(s.has_value()) << s.error().message();
  }

  CommandResult listTable() { return run("ip netns exec " + router_ + " nft list table inet corral"); }

  // Same-subnet cases go through br_netfilter; without it they are skipped with the reason printed.
  bool sameSubnetTestable() {
    if (brNetfilter_) return true;
    if (getenv("CORRAL_REQUIRE_PRIVILEGED")) ADD_FAILURE() << brNetfilterWhy_;
    std::printf("skipping same-subnet checks: %s\n", brNetfilterWhy_.c_str());
    return false;
  }

  std::string router_, a_, b_, c_;
  TestNamespaces namespaces_;
  bool brNetfilter_ = false;
  std::string brNetfilterWhy_;
  Topology topology_;
  std::vector<NicAttachment> nics_;
};

TEST_F(VpcFirewall, SecurityGroupsAllowOnlyWhatTheySayAndAreStateful) {
  apply();
  UniqueFd a8080 = listenIn(a_, 8080), a8081 = listenIn(a_, 8081), a9090 = listenIn(a_, 9090);
  UniqueFd c8080 = listenIn(c_, 8080);
  ASSERT_TRUE(a8080 && a8081 && a9090 && c8080);
  if (sameSubnetTestable()) {
    EXPECT_TRUE(tcpExchange(b_, "10.78.1.10", 8080, a8080, kConnectTimeout).ok)
        << "s1 -> web:8080 is allowed";
    EXPECT_FALSE(tcpExchange(b_, "10.78.1.10", 8081, a8081, kConnectTimeout).ok)
        << "same subnet is filtered by the SG too";
  }
  EXPECT_FALSE(tcpExchange(c_, "10.78.1.10", 8080, a8080, kConnectTimeout).ok)
      << "8080 is allowed from s1 only";
  // Routed through the VPC router; the reply passes c's ingress-less group because it is established.
  EXPECT_TRUE(tcpExchange(c_, "10.78.1.10", 9090, a9090, kConnectTimeout).ok) << "s2 -> web:9090 is allowed";
  EXPECT_FALSE(tcpExchange(a_, "10.78.2.10", 8080, c8080, kConnectTimeout).ok)
      << "a new group lets nothing in";
}

TEST_F(VpcFirewall, NaclDenyWithLowerNumberWinsAndReturnTrafficNeedsItsOwnRule) {
  ASSERT_TRUE(topology_.createNetworkAcl({.name = "strict", .vpc = "v"}, kNow));
  ASSERT_TRUE(
      topology_.addNetworkAclRule("strict", {.number = 100, .direction = "ingress", .action = "allow"}));
  ASSERT_TRUE(topology_.addNetworkAclRule("strict", {.number = 50,
                                                     .direction = "ingress",
                                                     .action = "deny",
                                                     .protocol = "tcp",
                                                     .fromPort = 9090,
                                                     .toPort = 9090,
                                                     .cidr = "10.78.2.0/24"}));
  ASSERT_TRUE(
      topology_.addNetworkAclRule("strict", {.number = 100, .direction = "egress", .action = "allow"}));
  ASSERT_TRUE(topology_.updateSubnet("s1", {.networkAcl = "strict"}));
  apply();
  UniqueFd a8080 = listenIn(a_, 8080), a9090 = listenIn(a_, 9090);
  ASSERT_TRUE(a8080 && a9090);
  EXPECT_FALSE(tcpExchange(c_, "10.78.1.10", 9090, a9090, kConnectTimeout).ok) << "deny 50 beats allow 100";
  if (sameSubnetTestable()) {
    EXPECT_TRUE(tcpExchange(b_, "10.78.1.10", 8080, a8080, kConnectTimeout).ok) << "same subnet skips NACLs";
  }

  ASSERT_TRUE(topology_.deleteNetworkAclRule("strict", "ingress", 50));
  apply();
  EXPECT_TRUE(tcpExchange(c_, "10.78.1.10", 9090, a9090, kConnectTimeout).ok)
      << "without rule 50, allow 100 applies";

  // s2 lets traffic out but nothing in: the SYN-ACK back to c is dropped, NACLs are stateless.
  ASSERT_TRUE(topology_.createNetworkAcl({.name = "outonly", .vpc = "v"}, kNow));
  ASSERT_TRUE(
      topology_.addNetworkAclRule("outonly", {.number = 100, .direction = "egress", .action = "allow"}));
  ASSERT_TRUE(topology_.updateSubnet("s2", {.networkAcl = "outonly"}));
  apply();
  EXPECT_FALSE(tcpExchange(c_, "10.78.1.10", 9090, a9090, kConnectTimeout).ok)
      << "return traffic needs a NACL rule";
  ASSERT_TRUE(topology_.addNetworkAclRule("outonly", {.number = 100,
                                                      .direction = "ingress",
                                                      .action = "allow",
                                                      .protocol = "tcp",
                                                      .fromPort = 1024,
                                                      .toPort = 65535,
                                                      .cidr = "10.78.1.0/24"}));
  apply();
  EXPECT_TRUE(tcpExchange(c_, "10.78.1.10", 9090, a9090, kConnectTimeout).ok)
      << "ephemeral ports allowed back in";
}

TEST_F(VpcFirewall, ReplaceIsAtomicARefusedRulesetChangesNothingDeleteRemoves) {
  apply();
  CommandResult first = listTable();
  ASSERT_EQ(first.status, 0) << first.output;
  apply();
  CommandResult second = listTable();
  EXPECT_EQ(first.output, second.output) << "applying twice gives the same table";

  // Numeric only: a name here would make nft try DNS.
  auto bad = applyRuleset(router_,
                          "table inet corral {\n  chain forward {\n    ip saddr 10.0.0.0/33 drop\n  }\n}\n");
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message().find("Error"), std::string::npos) << bad.error().message();
  std::printf("refused as expected: %s\n", bad.error().message().c_str());
  EXPECT_EQ(listTable().output, first.output) << "a refused ruleset leaves the old table";

  ASSERT_TRUE(deleteRuleset(router_).has_value());
  EXPECT_NE(listTable().status, 0) << "the table is gone";
  auto again = deleteRuleset(router_);
  EXPECT_TRUE(again.has_value()) << again.error().message();
}

// An empty netns means the calling thread's own namespace; here a helper thread inside the test's router
// namespace, so that the host's own firewall is never touched.
TEST_F(VpcFirewall, EmptyNetnsIsTheCallersNamespaceAndTheTableIsNamed) {
  UplinkSettings settings;
  std::optional<Error> applyError;
  bool joined = runInNetns(router_, [&] {
    if (auto s = applyRuleset("", hostUplinkRuleset(settings, "corral-uplink-t"), "corral-uplink-t"); !s) {
      applyError = s.error();
    }
  });
  ASSERT_TRUE(joined) << "setns into " << router_;
  ASSERT_FALSE(applyError) << applyError->message();
  CommandResult listed = run("ip netns exec " + router_ + " nft list table inet corral-uplink-t");
  ASSERT_EQ(listed.status, 0) << listed.output;
  EXPECT_NE(listed.output.find("masquerade"), std::string::npos) << listed.output;
  EXPECT_NE(listTable().status, 0) << "table corral itself was not made";

  ASSERT_TRUE(deleteRuleset(router_, "corral-uplink-t").has_value());
  EXPECT_NE(run("ip netns exec " + router_ + " nft list table inet corral-uplink-t").status, 0);
}

TEST_F(VpcFirewall, EveryGoldenRulesetIsAcceptedByTheKernel) {
  size_t checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(kGoldenDir)) {
    if (entry.path().extension() != ".nft") continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    auto s = applyRuleset(router_, text.str());
    EXPECT_TRUE(s.has_value()) << entry.path() << ": " << s.error().message();
    ++checked;
  }
  EXPECT_GT(checked, 0u) << "no golden files in " << kGoldenDir;
}

// The source check on the real kernel: a's port lets through only a's own address and MAC; refilling the
// table keeps the counts of ports that stay and removes the guards of ports that went.
TEST_F(VpcFirewall, PortGuardsDropForeignSourcesKeepCountsAndForgetRemovedPorts) {
  auto nicPlan = [](const std::string& instance, const std::string& link, const std::string& address,
                    const std::string& mac) {
    return NicPlan{.nic = {.instance = instance, .subnet = "s1", .address = address},
                   .link = link,
                   .bridge = "br1",
                   .mac = mac,
                   .addressWithPrefix = address + "/24",
                   .gateway = "10.78.1.1"};
  };
  must("ip -n " + a_ + " link set eth0 address 02:c0:00:00:00:0a");
  must("ip -n " + b_ + " link set eth0 address 02:c0:00:00:00:0b");
  const std::vector<NicPlan> both = {nicPlan("a", "va", "10.78.1.10", "02:c0:00:00:00:0a"),
                                     nicPlan("b", "vb", "10.78.1.11", "02:c0:00:00:00:0b")};
  auto applied = applyPortGuards(router_, portGuardRuleset("v", both), {"va", "vb"});
  ASSERT_TRUE(applied.has_value()) << applied.error().message();
  EXPECT_TRUE(applied->empty());

  // a's own address works, bridged and routed; a second address a gives itself is dropped at its port.
  UniqueFd listener = listenIn(b_, 8080);
  ASSERT_TRUE(listener);
  EXPECT_TRUE(tcpExchange(a_, "10.78.1.11", 8080, listener, kConnectTimeout).ok);
  UniqueFd routedListener = listenIn(c_, 8080);
  EXPECT_TRUE(tcpExchange(a_, "10.78.2.10", 8080, routedListener, kConnectTimeout).ok);
  must("ip -n " + a_ + " addr add 10.78.1.99/24 dev eth0");
  EXPECT_FALSE(tcpExchange(a_, "10.78.1.11", 8080, listener, kConnectTimeout, "10.78.1.99").ok);
  EXPECT_FALSE(tcpExchange(a_, "10.78.2.10", 8080, routedListener, kConnectTimeout, "10.78.1.99").ok);
  auto drops = spoofDrops(router_);
  ASSERT_TRUE(drops.has_value()) << drops.error().message();
  ASSERT_TRUE(drops->contains("va") && drops->contains("vb"));
  const uint64_t counted = drops->at("va").ip;
  EXPECT_GE(counted, 2u) << "the SYNs from 10.78.1.99";
  EXPECT_EQ(drops->at("vb").ip, 0u);
  // One port's counts alone (its four elements) say the same.
  auto one = spoofDropsOf(router_, "va");
  ASSERT_TRUE(one.has_value()) << one.error().message();
  EXPECT_EQ(*one, drops->at("va"));

  // b goes: its chain and counters go, a's count stays.
  applied = applyPortGuards(router_, portGuardRuleset("v", {both[0]}), {"va"});
  ASSERT_TRUE(applied.has_value()) << applied.error().message();
  EXPECT_EQ(*applied, std::vector<std::string>{"vb"});
  drops = spoofDrops(router_);
  ASSERT_TRUE(drops.has_value());
  EXPECT_FALSE(drops->contains("vb"));
  EXPECT_GE(drops->at("va").ip, counted) << "refilling keeps the counts";
  auto gone = spoofDropsOf(router_, "vb");
  ASSERT_FALSE(gone.has_value());
  CommandResult listing = run("ip netns exec " + router_ + " nft list table bridge corral");
  EXPECT_EQ(listing.output.find("vb"), std::string::npos) << listing.output;
  // And the same plan again changes nothing (idempotent).
  applied = applyPortGuards(router_, portGuardRuleset("v", {both[0]}), {"va"});
  ASSERT_TRUE(applied.has_value());
  EXPECT_TRUE(applied->empty());
}

// A corrald of before the shared chain left a chain and four named counters per port: the next whole load
// replaces that layout in one transaction, and a port only that layout guarded is reported removed.
TEST_F(VpcFirewall, PortGuardsReplaceTheLayoutOfAChainPerPort) {
  const std::string old = ::testing::TempDir() + "old-port-guards.nft";
  {
    std::ofstream out(old);
    out << "table bridge corral {\n";
    for (const char* port : {"va", "vz"}) {
      for (const char* reason : {"mac", "ip", "arp", "other"})
        out << fmt::format("  counter spoof-{}-{} {{ }}\n", port, reason);
      out << fmt::format(
          "  chain port-{0} {{\n    ether type arp counter name \"spoof-{0}-arp\" drop\n"
          "    counter name \"spoof-{0}-other\" drop\n  }}\n",
          port);
    }
    out << "  map ports {\n    type ifname : verdict\n    elements = { \"va\" : jump port-va, \"vz\" : jump "
           "port-vz }\n  }\n"
           "  chain prerouting {\n    type filter hook prerouting priority filter; policy accept;\n"
           "    iifname vmap @ports\n  }\n}\n";
  }
  must("ip netns exec " + router_ + " nft -f " + old);
  const NicPlan va{.nic = {.instance = "a", .subnet = "s1", .address = "10.78.1.10"},
                   .link = "va",
                   .bridge = "br1",
                   .mac = "02:c0:00:00:00:0a",
                   .addressWithPrefix = "10.78.1.10/24",
                   .gateway = "10.78.1.1"};
  auto applied = applyPortGuards(router_, portGuardRuleset("v", {va}), {"va"});
  ASSERT_TRUE(applied.has_value()) << applied.error().message();
  EXPECT_EQ(*applied, std::vector<std::string>{"vz"});
  CommandResult listing = run("ip netns exec " + router_ + " nft list table bridge corral");
  EXPECT_EQ(listing.output.find("chain port-"), std::string::npos) << listing.output;
  EXPECT_EQ(listing.output.find("counter spoof-"), std::string::npos) << listing.output;
  EXPECT_EQ(listing.output.find("vz"), std::string::npos) << listing.output;
  auto drops = spoofDrops(router_);
  ASSERT_TRUE(drops.has_value()) << drops.error().message();
  EXPECT_EQ(drops->size(), 1u);
  EXPECT_TRUE(drops->contains("va"));
}

// The internet gateway's NAT on the real kernel. Namespaces: the VPC router (named as a daemon with this
// test's prefix would name it, so the gateway link has the name the ruleset expects), "the internet"
// (outside), and two instances: web (subnet s1, public: public address and a published port) and app
// (subnet s2, private with a NAT gateway). The veth pair and the routes that the datapath would set up
// are made here with `ip`, so that only the ruleset is under test.
class GatewayNat : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available()) GTEST_SKIP() << "needs root: network namespaces, veths and nftables";
    const std::string prefix = TestNamespaces::prefix();
    ASSERT_TRUE(topology_.createVpc({.name = "v", .cidr = "10.79.0.0/16"}, kNow));
    ASSERT_TRUE(topology_.createRouteTable({.name = "public-rt", .vpc = "v"}, kNow));
    ASSERT_TRUE(topology_.createRouteTable({.name = "private-rt", .vpc = "v"}, kNow));
    ASSERT_TRUE(topology_.createSubnet(
        {.name = "s1", .vpc = "v", .cidr = "10.79.1.0/24", .routeTable = "public-rt"}, kNow));
    ASSERT_TRUE(topology_.createSubnet(
        {.name = "s2", .vpc = "v", .cidr = "10.79.2.0/24", .routeTable = "private-rt"}, kNow));
    ASSERT_TRUE(topology_.createInternetGateway({.name = "igw", .vpc = "v"}, kNow));
    ASSERT_TRUE(topology_.createNatGateway({.name = "nat", .subnet = "s1"}, kNow));
    ASSERT_TRUE(topology_.addRoute(
        "public-rt", {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "igw"}));
    ASSERT_TRUE(topology_.addRoute(
        "private-rt", {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "nat"}));
    ASSERT_TRUE(topology_.createSecurityGroup({.name = "web", .vpc = "v"}, kNow));
    ASSERT_TRUE(topology_.addSecurityGroupRule(
        "web",
        {.direction = "ingress", .protocol = "tcp", .fromPort = 443, .toPort = 443, .cidr = "0.0.0.0/0"}));
    std::vector<NicAttachment> nics = {
        {.instance = "web",
         .subnet = "s1",
         .address = "10.79.1.10",
         .securityGroups = {"web"},
         .publicAddress = "100.64.128.1",
         .publish = {{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}},
         .linkKey = "web"},
        {.instance = "app", .subnet = "s2", .address = "10.79.2.20", .linkKey = "app"}};
    UplinkSettings uplink;
    uplink.netns = prefix + "internet";
    plan_ = planVpc(topology_, "v", prefix, nics, uplink, *Cidr::parse("100.64.0.8/30"));
    ASSERT_TRUE(plan_.gateway.has_value());

    router_ = plan_.netns;
    outside_ = uplink.netns;
    web_ = prefix + "web";
    app_ = prefix + "app";
    for (const std::string* ns : {&router_, &outside_, &web_, &app_}) {
      auto made = namespaces_.make(ns->substr(prefix.size()));
      ASSERT_TRUE(made) << made.error().message();
    }
    for (const BridgePlan& bridge : plan_.bridges) {
      must("ip -n " + router_ + " link add " + bridge.bridge + " type bridge");
      must("ip -n " + router_ + " addr add " + bridge.routerAddress + " dev " + bridge.bridge);
      must("ip -n " + router_ + " link set " + bridge.bridge + " up");
    }
    must("ip netns exec " + router_ + " sysctl -qw net.ipv4.ip_forward=1");
    for (const NicPlan& nic : plan_.nics) {
      const std::string& ns = nic.nic.instance == "web" ? web_ : app_;
      must("ip -n " + router_ + " link add " + nic.link + " type veth peer name eth0 netns " + ns);
      must("ip -n " + router_ + " link set " + nic.link + " master " + nic.bridge + " up");
      must("ip -n " + ns + " addr add " + nic.addressWithPrefix + " dev eth0");
      must("ip -n " + ns + " link set eth0 up");
      must("ip -n " + ns + " route add default via " + nic.gateway);
    }
    const GatewayPlan& gateway = *plan_.gateway;
    must("ip -n " + router_ + " link add " + gateway.vpcLink + " type veth peer name " + gateway.uplinkLink +
         " netns " + outside_);
    must("ip -n " + router_ + " addr add " + gateway.vpcAddress + " dev " + gateway.vpcLink);
    must("ip -n " + router_ + " link set " + gateway.vpcLink + " up");
    must("ip -n " + outside_ + " addr add " + gateway.uplinkAddress + " dev " + gateway.uplinkLink);
    must("ip -n " + outside_ + " link set " + gateway.uplinkLink + " up");
    must("ip -n " + router_ + " route add default via 100.64.0.9");
    must("ip -n " + outside_ + " route add 100.64.128.1/32 via 100.64.0.10");
    // Lets the outside try to reach private addresses directly: unsolicited inbound must still be dropped.
    must("ip -n " + outside_ + " route add 10.79.0.0/16 via 100.64.0.10");
  }

  void must(const std::string& command) {
    CommandResult r = run(command);
    ASSERT_EQ(r.status, 0) << command << ": " << r.output;
  }

  Topology topology_;
  VpcPlan plan_;
  std::string router_, outside_, web_, app_;
  TestNamespaces namespaces_;
};

TEST_F(GatewayNat, RulesetIsAcceptedAndNatWorksBothWays) {
  auto applied = applyRuleset(router_, plan_.ruleset);
  ASSERT_TRUE(applied.has_value()) << applied.error().message();
  CommandResult listed = run("ip netns exec " + router_ + " nft list table inet corral");
  ASSERT_EQ(listed.status, 0) << listed.output;
  EXPECT_NE(listed.output.find("dnat ip to meta l4proto . th dport map @published-ports"), std::string::npos)
      << listed.output;
  EXPECT_NE(listed.output.find(": 10.79.1.10 . 80"), std::string::npos) << listed.output;

  // Outbound: the private subnet leaves as the gateway's outside address, the public NIC as its own.
  UniqueFd outside7000 = listenIn(outside_, 7000);
  ASSERT_TRUE(outside7000);
  TcpExchange viaNat = tcpExchange(app_, "100.64.0.9", 7000, outside7000, kConnectTimeout);
  EXPECT_TRUE(viaNat.ok) << "private subnet via NAT";
  EXPECT_EQ(viaNat.peer, "100.64.0.10");
  TcpExchange publicNic = tcpExchange(web_, "100.64.0.9", 7000, outside7000, kConnectTimeout);
  EXPECT_TRUE(publicNic.ok) << "public NIC";
  EXPECT_EQ(publicNic.peer, "100.64.128.1");

  // Inbound: the published port reaches web (no security group rule needed); the public address reaches
  // what web's group allows (443) and nothing else; nothing unsolicited reaches app.
  UniqueFd web80 = listenIn(web_, 80), web443 = listenIn(web_, 443), web444 = listenIn(web_, 444);
  UniqueFd app7001 = listenIn(app_, 7001);
  ASSERT_TRUE(web80 && web443 && web444 && app7001);
  TcpExchange published = tcpExchange(outside_, "100.64.0.10", 8080, web80, kConnectTimeout);
  EXPECT_TRUE(published.ok) << "published 8080:80";
  EXPECT_EQ(published.peer, "100.64.0.9") << "DNAT only: web sees the real client";
  EXPECT_FALSE(tcpExchange(outside_, "100.64.0.10", 80, web80, kConnectTimeout).ok)
      << "only the published outside port";
  EXPECT_TRUE(tcpExchange(outside_, "100.64.128.1", 443, web443, kConnectTimeout).ok)
      << "1:1 NAT, allowed by the group";
  EXPECT_FALSE(tcpExchange(outside_, "100.64.128.1", 444, web444, kConnectTimeout).ok)
      << "1:1 NAT still faces the group";
  EXPECT_FALSE(tcpExchange(outside_, "10.79.2.20", 7001, app7001, kConnectTimeout).ok)
      << "unsolicited inbound is dropped";
  EXPECT_FALSE(tcpExchange(outside_, "10.79.1.10", 443, web443, kConnectTimeout).ok)
      << "private addresses are not reachable";
}

// corrald keeps one libnftables context per namespace; its netfilter socket holds the namespace alive.
// These watch a namespace's end through a veth pair into an observer namespace: the kernel deletes the
// peer when the namespace itself goes, and not while anything still holds it.
class KeptNftContext : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available()) GTEST_SKIP() << "needs root (network namespaces)";
    auto observer = namespaces_.make("keep-o");
    ASSERT_TRUE(observer.has_value()) << observer.error().message();
    observer_ = *observer;
    watched_ = TestNamespaces::nameOf("keep-w");
  }
  void TearDown() override { (void)deleteNetns(watched_); }

  // Makes the watched namespace and its veth into the observer (peer "kw1").
  void makeWatched() {
    ASSERT_TRUE(createNetns(watched_).has_value());
    CommandResult veth =
        run("ip -n " + watched_ + " link add kw0 type veth peer name kw1 netns " + observer_);
    ASSERT_EQ(veth.status, 0) << veth.output;
  }
  // Whether the observer's end of the veth is gone within `timeout`: the watched namespace has ended.
  bool watchedEndsWithin(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (run("ip -n " + observer_ + " link show kw1").status != 0) return true;
      ::usleep(50'000);
    }
    return false;
  }
  static std::string tableWithChain(const std::string& chain) {
    return "table inet corral {\n  chain " + chain + " {\n    counter\n  }\n}\n";
  }

  TestNamespaces namespaces_;
  std::string observer_;
  std::string watched_;
};

TEST_F(KeptNftContext, DeletingTheNamespaceLeavesNothingOfIt) {
  makeWatched();
  ASSERT_TRUE(applyRuleset(watched_, tableWithChain("first")).has_value());
  ASSERT_TRUE(applyRuleset(watched_, tableWithChain("second")).has_value()) << "the kept context again";
  ASSERT_TRUE(deleteNetns(watched_).has_value());
  EXPECT_TRUE(watchedEndsWithin(std::chrono::seconds(10)))
      << "the namespace lives on after deleteNetns: something (the kept nft context) still holds it";
}

// Deleted behind corrald's back (`ip netns del`) and made again under the same name: the next transaction
// goes to the new namespace, and the old one is let go.
TEST_F(KeptNftContext, ANamespaceMadeAgainUnderItsNameGetsTheNextTransaction) {
  makeWatched();
  ASSERT_TRUE(applyRuleset(watched_, tableWithChain("first")).has_value());
  CommandResult deleted = run("ip netns del " + watched_);
  ASSERT_EQ(deleted.status, 0) << deleted.output;
  ASSERT_TRUE(createNetns(watched_).has_value());

  auto applied = applyRuleset(watched_, tableWithChain("second"));
  ASSERT_TRUE(applied.has_value()) << applied.error().message();
  CommandResult listed = run("ip netns exec " + watched_ + " nft list table inet corral");
  ASSERT_EQ(listed.status, 0) << "the table went elsewhere: " << listed.output;
  EXPECT_NE(listed.output.find("chain second"), std::string::npos) << listed.output;
  EXPECT_TRUE(watchedEndsWithin(std::chrono::seconds(10))) << "the old namespace is still held";
}

}  // namespace
}  // namespace corral::net
