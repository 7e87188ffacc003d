// A VPC on the real kernel, end to end: a topology planned with planVpc, converged into its own network
// namespace, an "internet" namespace as the uplink, and instances (child processes in fresh network
// namespaces) attached with attachContainerNic; then real TCP connects through bridges, policy routing,
// the gateway's NAT and the firewall. Everything lives in namespaces named corral-t<pid>-...; the host's
// own network is never touched.
#include "net/vpc_datapath.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/unique_fd.h"
#include "net/netlink.h"
#include "tests/integration/netns_testing.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

using corral::testing::listenIn;
using corral::testing::runInNetns;
using corral::testing::tcpConnects;
using corral::testing::tcpExchange;
using corral::testing::TcpExchange;
using corral::testing::TestNamespaces;

constexpr int64_t kNow = 1700000000;
constexpr std::chrono::milliseconds kConnectTimeout{700};
const std::string kInternetHost = "198.51.100.10";

// ---- Guards ----

using Children = corral::testing::NetnsChildren;

std::string joined(const ChangeLog& log) {
  std::string text;
  for (const std::string& line : log) text += "\n  " + line;
  return text;
}

// ---- The fixture ----

// VPC "a" 10.0.0.0/16 with internet gateway a-igw:
// - subnet pub  10.0.1.0/24, route table a-public 0.0.0.0/0 -> a-igw; NAT gateway a-nat lives here;
//     w  10.0.1.10 group "web" (tcp/8080 from priv only), publishes 8080:80, public address;
//     w2 10.0.1.11, w3 10.0.1.12 (default group);
// - subnet priv 10.0.2.0/24, route table a-private 0.0.0.0/0 -> a-nat; p 10.0.2.10 (default group);
// - subnet iso  10.0.3.0/24, main route table (no way out); q 10.0.3.10 (default group).
class VpcDatapath : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available())
      GTEST_SKIP() << "needs root: network namespaces, bridges, routes and nftables";
    prefix_ = TestNamespaces::prefix();
    auto internet = namespaces_.make("internet");
    ASSERT_TRUE(internet) << internet.error().message();
    internet_ = *internet;
    uplink_.netns = internet_;
    auto inet = Netlink::open(internet_);
    ASSERT_TRUE(inet) << inet.error().message();
    auto hostAddress = inet->addAddress("lo", kInternetHost + "/32");
    ASSERT_TRUE(hostAddress) << hostAddress.error().message();

    ASSERT_TRUE(topology_.createVpc({.name = "a", .cidr = "10.0.0.0/16"}, kNow));
    ASSERT_TRUE(topology_.createInternetGateway({.name = "a-igw", .vpc = "a"}, kNow));
    ASSERT_TRUE(topology_.createRouteTable({.name = "a-public", .vpc = "a"}, kNow));
    ASSERT_TRUE(topology_.addRoute(
        "a-public", {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "a-igw"}));
    ASSERT_TRUE(topology_.createSubnet(
        {.name = "pub", .vpc = "a", .cidr = "10.0.1.0/24", .routeTable = "a-public"}, kNow));
    ASSERT_TRUE(topology_.createNatGateway({.name = "a-nat", .subnet = "pub"}, kNow));
    ASSERT_TRUE(topology_.createRouteTable({.name = "a-private", .vpc = "a"}, kNow));
    ASSERT_TRUE(topology_.addRoute(
        "a-private", {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "a-nat"}));
    ASSERT_TRUE(topology_.createSubnet(
        {.name = "priv", .vpc = "a", .cidr = "10.0.2.0/24", .routeTable = "a-private"}, kNow));
    ASSERT_TRUE(topology_.createSubnet({.name = "iso", .vpc = "a", .cidr = "10.0.3.0/24"}, kNow));
    ASSERT_TRUE(topology_.createSecurityGroup({.name = "web", .vpc = "a"}, kNow));
    ASSERT_TRUE(topology_.addSecurityGroupRule("web", {.direction = "ingress",
                                                       .protocol = "tcp",
                                                       .fromPort = 8080,
                                                       .toPort = 8080,
                                                       .cidr = "10.0.2.0/24"}));

    auto publicAddress = choosePublicAddress(uplink_, {});
    ASSERT_TRUE(publicAddress) << publicAddress.error().message();
    publicAddress_ = publicAddress->str();
    nics_ = {
        nic("w", "pub", "10.0.1.10", {"web"}), nic("w2", "pub", "10.0.1.11"), nic("w3", "pub", "10.0.1.12"),
        nic("p", "priv", "10.0.2.10"),         nic("q", "iso", "10.0.3.10"),
    };
    nics_[0].publicAddress = publicAddress_;
    nics_[0].publish = {PortForward{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}};

    auto transit = chooseTransit(uplink_, "a", {});
    ASSERT_TRUE(transit) << transit.error().message();
    transit_ = *transit;
    plan_ = planVpc(topology_, "a", prefix_, nics_, uplink_, transit_);
    namespaces_.holdVpc(plan_.netns);
    ASSERT_TRUE(plan_.gateway.has_value()) << "a VPC with an internet gateway plans its veth pair";
    outside_ = plan_.gateway->vpcAddress.substr(0, plan_.gateway->vpcAddress.find('/'));

    auto first = convergeVpc(plan_);
    ASSERT_TRUE(first) << first.error().message();
    std::printf("first convergence:%s\n", joined(*first).c_str());
    EXPECT_FALSE(first->empty());

    for (const NicPlan& planned : plan_.nics) {
      pid_t pid = children_.spawn();
      ASSERT_GT(pid, 0) << "spawning instance " << planned.nic.instance;
      auto start = std::chrono::steady_clock::now();
      auto attached = attachContainerNic(plan_.netns, planned, pid);
      auto took =
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
      ASSERT_TRUE(attached) << attached.error().message();
      std::printf("attached %s (%s) in %lld us\n", planned.nic.instance.c_str(), planned.link.c_str(),
                  static_cast<long long>(took.count()));
      pids_[planned.nic.instance] = pid;
    }

    // "The internet" knows its way back to the VPC only through the gateway: unsolicited traffic to a
    // private address is really sent, so that the VPC has to drop it.
    auto back = inet->addRoute(RouteEntry{.destination = "10.0.0.0/16",
                                          .gateway = outside_,
                                          .device = plan_.gateway->uplinkLink,
                                          .table = 254,
                                          .blackhole = false});
    ASSERT_TRUE(back) << back.error().message();
  }

  NicAttachment nic(const std::string& instance, const std::string& subnet, const std::string& address,
                    std::vector<std::string> groups = {}) {
    return NicAttachment{.instance = instance,
                         .vm = false,
                         .subnet = subnet,
                         .address = address,
                         .securityGroups = std::move(groups),
                         .linkKey = prefix_ + instance};
  }

  std::string ns(const std::string& instance) {
    return "/proc/" + std::to_string(pids_.at(instance)) + "/ns/net";
  }
  std::string internetNs() const { return "/run/netns/" + internet_; }

  // Re-plans VPC a from the (changed) topology and NICs and converges; returns the changes.
  ChangeLog reconverge() {
    plan_ = planVpc(topology_, "a", prefix_, nics_, uplink_, transit_);
    auto changes = convergeVpc(plan_);
    EXPECT_TRUE(changes) << changes.error().message();
    return changes ? *changes : ChangeLog{};
  }

  // Members destroyed in reverse order: instances first, then the namespaces.
  TestNamespaces namespaces_;
  Children children_;
  std::string prefix_, internet_, outside_, publicAddress_;
  UplinkSettings uplink_;
  Cidr transit_;
  Topology topology_;
  std::vector<NicAttachment> nics_;
  VpcPlan plan_;
  std::map<std::string, pid_t> pids_;
};

TEST_F(VpcDatapath, InstancesReachEachOtherAsTheirGroupsAllow) {
  UniqueFd w3Listener = listenIn(ns("w3"), 5000), qListener = listenIn(ns("q"), 5000);
  UniqueFd web8080 = listenIn(ns("w"), 8080), web8081 = listenIn(ns("w"), 8081);
  UniqueFd pListener = listenIn(ns("p"), 5000);
  ASSERT_TRUE(w3Listener && qListener && web8080 && web8081 && pListener);

  EXPECT_TRUE(tcpExchange(ns("w2"), "10.0.1.12", 5000, w3Listener, kConnectTimeout).ok)
      << "same subnet, bridged";
  TcpExchange across = tcpExchange(ns("p"), "10.0.3.10", 5000, qListener, kConnectTimeout);
  EXPECT_TRUE(across.ok) << "priv -> iso through the VPC router";
  EXPECT_EQ(across.peer, "10.0.2.10") << "routed inside the VPC without NAT";

  // Group "web": tcp/8080 from 10.0.2.0/24 only. The reply to p passes p's default group, which lets no
  // new connection in from w (not a member): it passes because it is established (stateful).
  EXPECT_TRUE(tcpExchange(ns("p"), "10.0.1.10", 8080, web8080, kConnectTimeout).ok)
      << "priv -> web:8080 is allowed";
  EXPECT_FALSE(tcpExchange(ns("q"), "10.0.1.10", 8080, web8080, kConnectTimeout).ok)
      << "iso -> web:8080 is not";
  EXPECT_FALSE(tcpExchange(ns("w2"), "10.0.1.10", 8080, web8080, kConnectTimeout).ok)
      << "same subnet, still filtered by the group";
  EXPECT_FALSE(tcpExchange(ns("p"), "10.0.1.10", 8081, web8081, kConnectTimeout).ok) << "only 8080 is open";
  EXPECT_FALSE(tcpExchange(ns("w"), "10.0.2.10", 5000, pListener, kConnectTimeout).ok)
      << "w is not in p's group, so only return traffic gets from w to p";
}

// An address freed by an instance that died and taken by a new one (the IPAM gives the lowest free address,
// as when a group replaces a killed member behind a load balancer): the new instance has another MAC, and
// a neighbour that had talked to the old one (the load balancer) still holds the old MAC in its ARP cache,
// for up to ~45 s. The attach announces the address (a gratuitous ARP, sent from a thread of its own once
// the port runs, just after the attach returns), so the neighbour reaches the new instance at once: within
// the few attempts of 700 ms that 3 s allow, not the tens of seconds a stale entry takes to be probed away.
TEST_F(VpcDatapath, AnAddressTakenOverByANewInstanceIsReachedAtOnce) {
  UniqueFd w3Listener = listenIn(ns("w3"), 5000);
  ASSERT_TRUE(w3Listener);
  ASSERT_TRUE(tcpExchange(ns("w2"), "10.0.1.12", 5000, w3Listener, kConnectTimeout).ok)
      << "w2 reaches w3, and caches w3's MAC";
  w3Listener.reset();

  // w3 dies (its namespace and NIC go with it); w4 takes its address.
  const pid_t w3 = pids_.at("w3");
  ASSERT_EQ(::kill(w3, SIGKILL), 0);
  ASSERT_EQ(::waitpid(w3, nullptr, 0), w3);
  pids_.erase("w3");
  auto w3At =
      std::find_if(nics_.begin(), nics_.end(), [](const NicAttachment& n) { return n.instance == "w3"; });
  ASSERT_NE(w3At, nics_.end());
  *w3At = nic("w4", "pub", "10.0.1.12");
  reconverge();
  auto w4Plan = std::find_if(plan_.nics.begin(), plan_.nics.end(),
                             [](const NicPlan& n) { return n.nic.instance == "w4"; });
  ASSERT_NE(w4Plan, plan_.nics.end());
  ASSERT_NE(w4Plan->mac, instanceMac("w3", false)) << "another instance, another MAC";
  const pid_t w4 = children_.spawn();
  ASSERT_GT(w4, 0);
  auto attached = attachContainerNic(plan_.netns, *w4Plan, w4);
  ASSERT_TRUE(attached) << attached.error().message();
  pids_["w4"] = w4;

  UniqueFd w4Listener = listenIn(ns("w4"), 5000);
  ASSERT_TRUE(w4Listener);
  const auto start = std::chrono::steady_clock::now();
  bool reached = false;
  while (!reached && std::chrono::steady_clock::now() - start < std::chrono::seconds(3))
    reached = tcpExchange(ns("w2"), "10.0.1.12", 5000, w4Listener, kConnectTimeout).ok;
  EXPECT_TRUE(reached) << "w2 reaches w4 at once at w3's old address";
}

// The router's .1 sits on the subnet's bridge, whose MAC corral sets when it makes it: a bridge left to
// choose takes the lowest MAC of its ports, so the router's MAC changed when an instance with a lower one
// came or the lowest went, and the floor's instances sent to the old one until their ARP entries expired
// (the demo's wget across floors hung for a minute after a VM on its floor ended).
TEST_F(VpcDatapath, TheRoutersMacStaysAsPortsComeAndGo) {
  auto vpc = Netlink::open(plan_.netns);
  ASSERT_TRUE(vpc) << vpc.error().message();
  const std::string bridge = subnetBridgeName("a", "pub");
  auto macNow = [&]() -> std::string {
    auto link = vpc->link(bridge);
    return link && *link ? (*link)->mac : "no bridge " + bridge;
  };
  EXPECT_EQ(macNow(), subnetBridgeMac(bridge));
  // A port with a lower MAC than any joins, then leaves.
  ASSERT_TRUE(vpc->createVethPair("crlvlowmac", "crlvlowpeer"));
  ASSERT_TRUE(vpc->setMac("crlvlowmac", "02:00:00:00:00:01"));
  ASSERT_TRUE(vpc->setMaster("crlvlowmac", bridge));
  ASSERT_TRUE(vpc->setUp("crlvlowmac"));
  EXPECT_EQ(macNow(), subnetBridgeMac(bridge)) << "a port with a lower MAC joined";
  ASSERT_TRUE(vpc->deleteLink("crlvlowmac"));
  EXPECT_EQ(macNow(), subnetBridgeMac(bridge)) << "it left";
}

TEST_F(VpcDatapath, PrivateSubnetReachesTheInternetThroughNatButNotTheOtherWay) {
  UniqueFd internetListener = listenIn(internetNs(), 7000);
  UniqueFd pListener = listenIn(ns("p"), 5000);
  ASSERT_TRUE(internetListener && pListener);
  TcpExchange out = tcpExchange(ns("p"), kInternetHost, 7000, internetListener, kConnectTimeout);
  EXPECT_TRUE(out.ok) << "priv -> internet host through the NAT gateway";
  EXPECT_EQ(out.peer, outside_) << "the internet sees the gateway's outside address";

  EXPECT_FALSE(tcpExchange(internetNs(), "10.0.2.10", 5000, pListener, kConnectTimeout, kInternetHost).ok)
      << "unsolicited inbound to a private instance is dropped";
  UniqueFd qListener = listenIn(ns("q"), 5000);
  ASSERT_TRUE(qListener);
  EXPECT_FALSE(tcpExchange(ns("q"), kInternetHost, 7000, internetListener, kConnectTimeout).ok)
      << "iso has no way out";
}

TEST_F(VpcDatapath, PublishedPortReachesTheInstanceOtherPortsDoNot) {
  UniqueFd web80 = listenIn(ns("w"), 80), web8081 = listenIn(ns("w"), 8081);
  ASSERT_TRUE(web80 && web8081);
  TcpExchange published = tcpExchange(internetNs(), outside_, 8080, web80, kConnectTimeout, kInternetHost);
  EXPECT_TRUE(published.ok) << "internet host -> " << outside_ << ":8080 -> w:80";
  EXPECT_EQ(published.peer, kInternetHost) << "DNAT keeps the client's address";
  EXPECT_FALSE(tcpConnects(internetNs(), outside_, 8081, kConnectTimeout, kInternetHost))
      << "8081 is not published";
  EXPECT_FALSE(tcpExchange(internetNs(), "10.0.1.10", 8081, web8081, kConnectTimeout, kInternetHost).ok)
      << "nor is the instance reachable by its private address";

  // The uplink side routes w's public address to the VPC side of the pair.
  auto inet = Netlink::open(internet_);
  ASSERT_TRUE(inet);
  auto routes = inet->routes(254);
  ASSERT_TRUE(routes) << routes.error().message();
  RouteEntry publicRoute{.destination = publicAddress_ + "/32",
                         .gateway = outside_,
                         .device = plan_.gateway->uplinkLink,
                         .table = 254,
                         .blackhole = false};
  EXPECT_NE(std::find(routes->begin(), routes->end(), publicRoute), routes->end())
      << "route " << publicAddress_ << "/32 via " << outside_ << " in the internet namespace";
}

TEST_F(VpcDatapath, NetworkAclsAreNumberedAndStateless) {
  UniqueFd q5000 = listenIn(ns("q"), 5000), q5001 = listenIn(ns("q"), 5001), q80 = listenIn(ns("q"), 80);
  ASSERT_TRUE(q5000 && q5001 && q80);

  ASSERT_TRUE(topology_.createNetworkAcl({.name = "strict", .vpc = "a"}, kNow));
  ASSERT_TRUE(
      topology_.addNetworkAclRule("strict", {.number = 100, .direction = "ingress", .action = "allow"}));
  ASSERT_TRUE(topology_.addNetworkAclRule("strict", {.number = 50,
                                                     .direction = "ingress",
                                                     .action = "deny",
                                                     .protocol = "tcp",
                                                     .fromPort = 5000,
                                                     .toPort = 5000,
                                                     .cidr = "10.0.2.0/24"}));
  ASSERT_TRUE(
      topology_.addNetworkAclRule("strict", {.number = 100, .direction = "egress", .action = "allow"}));
  ASSERT_TRUE(topology_.updateSubnet("iso", {.networkAcl = "strict"}));
  ChangeLog changes = reconverge();
  EXPECT_EQ(changes.size(), 1u) << "only the ruleset changed:" << joined(changes);
  EXPECT_FALSE(tcpExchange(ns("p"), "10.0.3.10", 5000, q5000, kConnectTimeout).ok)
      << "deny 50 beats allow 100";
  EXPECT_TRUE(tcpExchange(ns("p"), "10.0.3.10", 5001, q5001, kConnectTimeout).ok) << "allow 100 for the rest";

  // Inbound tcp/80 only, nothing outbound: the SYN gets in, the SYN-ACK (to an ephemeral port) not.
  ASSERT_TRUE(topology_.createNetworkAcl({.name = "web80", .vpc = "a"}, kNow));
  ASSERT_TRUE(topology_.addNetworkAclRule("web80", {.number = 100,
                                                    .direction = "ingress",
                                                    .action = "allow",
                                                    .protocol = "tcp",
                                                    .fromPort = 80,
                                                    .toPort = 80}));
  ASSERT_TRUE(topology_.updateSubnet("iso", {.networkAcl = "web80"}));
  reconverge();
  EXPECT_FALSE(tcpExchange(ns("p"), "10.0.3.10", 80, q80, kConnectTimeout).ok)
      << "return traffic needs its own NACL rule";
  ASSERT_TRUE(topology_.addNetworkAclRule("web80", {.number = 100,
                                                    .direction = "egress",
                                                    .action = "allow",
                                                    .protocol = "tcp",
                                                    .fromPort = 1024,
                                                    .toPort = 65535}));
  reconverge();
  EXPECT_TRUE(tcpExchange(ns("p"), "10.0.3.10", 80, q80, kConnectTimeout).ok)
      << "with ephemeral ports allowed out it works";
}

TEST_F(VpcDatapath, ConvergeIsIdempotentAndRemovesWhatThePlanDropped) {
  auto start = std::chrono::steady_clock::now();
  ChangeLog second = reconverge();
  auto took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start);
  std::printf("a convergence with nothing to do took %lld us\n", static_cast<long long>(took.count()));
  EXPECT_TRUE(second.empty()) << "a second convergence changes nothing:" << joined(second);

  // The kernel state is what the plan says.
  auto vpc = Netlink::open(plan_.netns);
  ASSERT_TRUE(vpc) << vpc.error().message();
  auto rules = vpc->rules();
  ASSERT_TRUE(rules) << rules.error().message();
  RuleEntry local{.priority = kLocalRulePriority, .to = "10.0.0.0/16", .table = 254};
  EXPECT_NE(std::find(rules->begin(), rules->end(), local), rules->end()) << "to 10.0.0.0/16 lookup main";
  for (const RouteTablePlan& table : plan_.routeTables) {
    auto routes = vpc->routes(table.tableId);
    ASSERT_TRUE(routes) << routes.error().message();
    EXPECT_EQ(routes->size(), table.routes.size()) << "table " << table.tableId << " (" << table.name << ")";
    for (const Cidr& subnet : table.subnets) {
      bool found = std::any_of(rules->begin(), rules->end(), [&](const RuleEntry& r) {
        return r.from == subnet.str() && r.table == table.tableId && r.priority >= kSubnetRulePriority;
      });
      EXPECT_TRUE(found) << "rule from " << subnet.str() << " lookup " << table.tableId;
    }
  }

  // Damage it: a stray address on a bridge, a stale rule and route, a NIC port down. One run repairs all.
  const std::string pubBridge = plan_.bridges.at(0).bridge;
  ASSERT_TRUE(vpc->addAddress(pubBridge, "10.9.9.9/24"));
  ASSERT_TRUE(vpc->addRule(RuleEntry{.priority = 1500, .from = "10.0.9.0/24", .table = 777}));
  ASSERT_TRUE(vpc->addRoute(RouteEntry{
      .destination = "192.0.2.0/24", .table = plan_.routeTables.at(0).tableId, .blackhole = true}));
  auto repaired = reconverge();
  EXPECT_EQ(repaired.size(), 3u) << joined(repaired);
  EXPECT_TRUE(reconverge().empty()) << "repaired";

  // Subnet iso (and instance q with it) goes: its bridge, q's port and its rule go too.
  const std::string isoBridge = subnetBridgeName("a", "iso");
  auto q = std::find_if(plan_.nics.begin(), plan_.nics.end(),
                        [](const NicPlan& n) { return n.nic.instance == "q"; });
  ASSERT_NE(q, plan_.nics.end());
  const std::string qLink = q->link;
  ASSERT_TRUE(topology_.deleteSubnet("iso"));
  std::erase_if(nics_, [](const NicAttachment& n) { return n.instance == "q"; });
  ChangeLog afterDelete = reconverge();
  std::printf("after deleting subnet iso:%s\n", joined(afterDelete).c_str());
  auto bridge = vpc->link(isoBridge);
  ASSERT_TRUE(bridge);
  EXPECT_FALSE(bridge->has_value()) << "bridge " << isoBridge << " of the deleted subnet is gone";
  auto port = vpc->link(qLink);
  ASSERT_TRUE(port);
  EXPECT_FALSE(port->has_value()) << "q's NIC port is gone";
  auto rulesAfter = vpc->rules();
  ASSERT_TRUE(rulesAfter);
  EXPECT_TRUE(std::none_of(rulesAfter->begin(), rulesAfter->end(),
                           [](const RuleEntry& r) { return r.from == "10.0.3.0/24"; }));
  EXPECT_TRUE(reconverge().empty());
}

TEST_F(VpcDatapath, VpcsWithTheSameCidrNeverReachEachOther) {
  ASSERT_TRUE(topology_.createVpc({.name = "b", .cidr = "10.0.0.0/16"}, kNow));
  ASSERT_TRUE(topology_.createSubnet({.name = "b-pub", .vpc = "b", .cidr = "10.0.1.0/24"}, kNow));
  std::vector<NicAttachment> bNics = {nic("z", "b-pub", "10.0.1.20")};
  VpcPlan b = planVpc(topology_, "b", prefix_, bNics, uplink_, std::nullopt);
  namespaces_.holdVpc(b.netns);
  ASSERT_NE(b.netns, plan_.netns);
  auto converged = convergeVpc(b);
  ASSERT_TRUE(converged) << converged.error().message();
  pid_t z = children_.spawn();
  ASSERT_GT(z, 0);
  auto attached = attachContainerNic(b.netns, b.nics.at(0), z);
  ASSERT_TRUE(attached) << attached.error().message();
  const std::string zNs = "/proc/" + std::to_string(z) + "/ns/net";

  UniqueFd w2Listener = listenIn(ns("w2"), 5000), zListener = listenIn(zNs, 5000);
  ASSERT_TRUE(w2Listener && zListener);
  EXPECT_FALSE(tcpExchange(zNs, "10.0.1.11", 5000, w2Listener, kConnectTimeout).ok) << "b -> a";
  EXPECT_FALSE(tcpExchange(ns("w2"), "10.0.1.20", 5000, zListener, kConnectTimeout).ok) << "a -> b";
  EXPECT_TRUE(tcpExchange(ns("w3"), "10.0.1.11", 5000, w2Listener, kConnectTimeout).ok)
      << "a's own instances still do";

  std::vector<std::string> ours = listVpcNetns(prefix_);
  EXPECT_EQ(ours, (std::vector<std::string>{plan_.netns, b.netns}));
}

TEST_F(VpcDatapath, DestroyRemovesTheNamespaceAndTheUplinkSide) {
  const std::string uplinkLink = plan_.gateway->uplinkLink;
  auto inet = Netlink::open(internet_);
  ASSERT_TRUE(inet);
  auto before = inet->link(uplinkLink);
  ASSERT_TRUE(before);
  ASSERT_TRUE(before->has_value()) << "the gateway's uplink side is in the internet namespace";
  EXPECT_EQ((*before)->addresses, std::vector<std::string>{plan_.gateway->uplinkAddress});

  auto destroyed = destroyVpc(plan_.netns);
  ASSERT_TRUE(destroyed) << destroyed.error().message();
  EXPECT_FALSE(netnsExists(plan_.netns));
  auto after = inet->link(uplinkLink);
  ASSERT_TRUE(after);
  EXPECT_FALSE(after->has_value()) << "uplink side " << uplinkLink << " went with the VPC";
  auto again = destroyVpc(plan_.netns);
  EXPECT_TRUE(again) << "destroying a missing VPC namespace is fine";

  // Converging from nothing builds it again, gateway and all.
  auto rebuilt = convergeVpc(plan_);
  ASSERT_TRUE(rebuilt) << rebuilt.error().message();
  auto back = inet->link(uplinkLink);
  ASSERT_TRUE(back);
  EXPECT_TRUE(back->has_value());
}

TEST_F(VpcDatapath, AttachFailsCleanlyAndLeavesNothingBehind) {
  NicPlan bad = plan_.nics.at(1);
  bad.nic.instance = "bad";
  bad.link = instanceVethName(prefix_ + "bad");
  bad.bridge = "crlbnotthere";
  pid_t pid = children_.spawn();
  ASSERT_GT(pid, 0);
  auto attached = attachContainerNic(plan_.netns, bad, pid);
  ASSERT_FALSE(attached);
  std::printf("refused as expected: %s\n", attached.error().message().c_str());
  auto vpc = Netlink::open(plan_.netns);
  ASSERT_TRUE(vpc);
  auto link = vpc->link(bad.link);
  ASSERT_TRUE(link);
  EXPECT_FALSE(link->has_value()) << "the half-made port " << bad.link << " was removed";
}

TEST_F(VpcDatapath, VmTapMovesIntoTheVpcAndJoinsItsBridge) {
  // QEMU makes the tap in the daemon's namespace; here a namespace of the test plays the daemon's, and
  // attachVmTap runs on a thread inside it (the "caller's namespace" is the calling thread's).
  const std::string daemonNs = prefix_ + "daemon";
  ASSERT_TRUE(namespaces_.create(daemonNs));
  NicAttachment vm = nic("vm1", "priv", "10.0.2.20");
  vm.vm = true;
  nics_.push_back(vm);
  plan_ = planVpc(topology_, "a", prefix_, nics_, uplink_, transit_);
  auto found = std::find_if(plan_.nics.begin(), plan_.nics.end(), [](const NicPlan& n) { return n.nic.vm; });
  ASSERT_NE(found, plan_.nics.end());
  const NicPlan vmNic = *found;  // a copy: reconverge() replaces plan_
  const NicPlan* planned = &vmNic;
  ASSERT_EQ(planned->link.rfind("crlt", 0), 0u) << planned->link;
  // Test plumbing only: iproute2 makes the tap as libvirt would.
  std::string command = "ip -n " + daemonNs + " tuntap add dev " + planned->link + " mode tap";
  ASSERT_EQ(std::system(command.c_str()), 0) << command;

  Status attached = fail(internalError("setns into {} failed", daemonNs));
  runInNetns(daemonNs, [&] { attached = attachVmTap(plan_.netns, *planned); });
  ASSERT_TRUE(attached) << attached.error().message();

  auto daemon = Netlink::open(daemonNs);
  ASSERT_TRUE(daemon);
  auto left = daemon->link(planned->link);
  ASSERT_TRUE(left);
  EXPECT_FALSE(left->has_value()) << "the tap left the daemon's namespace";
  auto vpc = Netlink::open(plan_.netns);
  ASSERT_TRUE(vpc);
  auto tap = vpc->link(planned->link);
  ASSERT_TRUE(tap);
  ASSERT_TRUE(tap->has_value()) << "the tap is in the VPC namespace";
  EXPECT_EQ((*tap)->master, subnetBridgeName("a", "priv"));
  EXPECT_TRUE((*tap)->up);
  ChangeLog changes = reconverge();
  EXPECT_EQ(changes.size(), 2u) << "the VM's NIC changes only the port guards and the ruleset:"
                                << joined(changes);

  // The VM goes away from the plan: convergence removes its tap.
  std::erase_if(nics_, [](const NicAttachment& n) { return n.vm; });
  changes = reconverge();
  auto gone = vpc->link(planned->link);
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value()) << joined(changes);
}

// Runs last in this file (gtest keeps definition order): after every fixture, nothing of ours is left.
TEST(VpcDatapathCleanup, NoNamespaceOfThisProcessRemains) {
  const std::string prefix = "corral-t" + std::to_string(getpid()) + "-";
  for (const std::string& name : listNetns()) EXPECT_NE(name.rfind(prefix, 0), 0u) << name << " left behind";
}

}  // namespace
}  // namespace corral::net
