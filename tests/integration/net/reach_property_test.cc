// The reachability analyzer (net/reach.h) against the kernel, as a property: for many random small VPCs
// (three floors, route tables with and without a way out, blackholes, security groups with peer-group
// rules, network ACLs with ordered allow/deny rules, internet and NAT gateways present or not, a second VPC
// "p" peered or not, routed to on one side, both or neither, its groups named across the peering) the
// analyzer's verdict for random probes equals what one real packet exchange sees through the datapath
// (planVpc + convergeVpc, instances as child processes in their own namespaces, "the internet" a namespace
// of its own; the probe is net/probe.h's, the one `corral reach --verify` sends). Seeded: the seed and the
// configuration are printed on a disagreement (CORRAL_REACH_SEED=N repeats one run, CORRAL_REACH_ROUNDS=N
// sets how many configurations).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "core/unique_fd.h"
#include "net/netlink.h"
#include "net/probe.h"
#include "net/reach.h"
#include "net/vpc_datapath.h"
#include "tests/integration/netns_testing.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

using corral::testing::TestNamespaces;

constexpr int64_t kNow = 1700000000;
constexpr std::chrono::milliseconds kTimeout{600};
const std::string kInternetHost = "198.51.100.10";

using Children = corral::testing::NetnsChildren;

// ---- Random configurations ----

struct Probe {
  std::string source, destination;  // as `corral reach` takes them
  std::string protocol;
  std::optional<int64_t> port;
};

std::string describe(const Probe& probe) {
  return fmt::format("reach {} {} --protocol {}{}", probe.source, probe.destination, probe.protocol,
                     probe.port ? fmt::format(" --port {}", *probe.port) : "");
}

class ReachProperty : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available())
      GTEST_SKIP() << "needs root: network namespaces, bridges, routes and nftables";
    prefix_ = TestNamespaces::prefix();
    auto internet = namespaces_.make("inet");
    ASSERT_TRUE(internet) << internet.error().message();
    internet_ = *internet;
    uplink_.netns = internet_;
    auto inet = Netlink::open(internet_);
    ASSERT_TRUE(inet) << inet.error().message();
    ASSERT_TRUE(inet->addAddress("lo", kInternetHost + "/32"));
    auto transit = chooseTransit(uplink_, "r", {});
    ASSERT_TRUE(transit) << transit.error().message();
    transit_ = *transit;
    outside_ = Ipv4Address(transit_.network().value() + 2).str();
    auto publicAddress = choosePublicAddress(uplink_, {});
    ASSERT_TRUE(publicAddress);
    publicAddress_ = publicAddress->str();
  }

  std::string instanceNs(const std::string& instance) const {
    return "/proc/" + std::to_string(pids_.at(instance)) + "/ns/net";
  }
  std::string internetNs() const { return "/run/netns/" + internet_; }

  // One random VPC "r": three floors, their tables, gateways, groups and ACLs; the four instances' groups.
  Topology randomTopology(std::mt19937& rng, std::vector<NicAttachment>& nics, std::string& text) {
    auto chance = [&](double p) { return std::bernoulli_distribution(p)(rng); };
    auto pick = [&](const auto& list) {
      return list[std::uniform_int_distribution<size_t>(0, list.size() - 1)(rng)];
    };
    Topology t;
    auto must = [&](const auto& result, const std::string& what) {
      EXPECT_TRUE(result.has_value()) << what << ": " << result.error().message();
      text += what + "\n";
    };
    must(t.createVpc({.name = "r", .cidr = "10.0.0.0/16"}, kNow), "vpc r 10.0.0.0/16");
    const bool igw = chance(0.75);
    if (igw) must(t.createInternetGateway({.name = "igw", .vpc = "r"}, kNow), "igw");
    const std::vector<std::string> subnets = {"s1", "s2", "s3"};
    for (size_t i = 0; i < subnets.size(); ++i) {
      std::string table;
      if (chance(0.7)) {
        table = "rt-" + subnets[i];
        must(t.createRouteTable({.name = table, .vpc = "r"}, kNow), "route table " + table);
      }
      must(t.createSubnet({.name = subnets[i],
                           .vpc = "r",
                           .cidr = fmt::format("10.0.{}.0/24", i + 1),
                           .routeTable = table},
                          kNow),
           fmt::format("subnet {} 10.0.{}.0/24 table {}", subnets[i], i + 1, table.empty() ? "main" : table));
    }
    const bool nat = igw && chance(0.6);
    if (nat) must(t.createNatGateway({.name = "nat", .subnet = "s1"}, kNow), "nat gateway in s1");
    // The second VPC, p, with one floor and instance p1, peered with r most of the time.
    must(t.createVpc({.name = "p", .cidr = "10.1.0.0/16"}, kNow), "vpc p 10.1.0.0/16");
    must(t.createSubnet({.name = "ps", .vpc = "p", .cidr = "10.1.1.0/24"}, kNow), "subnet ps 10.1.1.0/24");
    const bool peered = chance(0.8);
    if (peered) {
      must(t.createPeering({.name = "rp", .vpc = "r", .peerVpc = "p"}, kNow), "peering rp r <-> p");
      if (chance(0.7))
        must(
            t.addRoute("p-main", {.destination = "10.0.0.0/16", .targetType = "peering", .targetName = "rp"}),
            "route p-main 10.0.0.0/16 -> peering rp");
    }
    for (const RouteTable* table : t.routeTables("r")) {
      const std::string name = table->name;
      if (peered && chance(0.6)) {
        const std::string destination = chance(0.5) ? "10.1.0.0/16" : "10.1.1.0/24";
        must(t.addRoute(name, {.destination = destination, .targetType = "peering", .targetName = "rp"}),
             fmt::format("route {} {} -> peering rp", name, destination));
      }
      std::vector<std::pair<std::string, std::string>> targets = {{"blackhole", ""}};
      if (igw) targets.emplace_back("internet_gateway", "igw");
      if (nat) targets.emplace_back("nat_gateway", "nat");
      for (std::string destination : {"0.0.0.0/0", "198.51.100.0/24"}) {
        if (!chance(destination == "0.0.0.0/0" ? 0.8 : 0.3)) continue;
        auto [type, target] = pick(targets);
        must(t.addRoute(name, {.destination = destination, .targetType = type, .targetName = target}),
             fmt::format("route {} {} -> {} {}", name, destination, type, target));
      }
    }
    const std::vector<std::string> protocols = {"tcp", "udp", "icmp", "all", "all"};
    const std::vector<std::optional<std::pair<int64_t, int64_t>>> portChoices = {
        std::nullopt,
        std::pair<int64_t, int64_t>{80, 80},
        std::pair<int64_t, int64_t>{443, 443},
        std::pair<int64_t, int64_t>{5000, 5000},
        std::pair<int64_t, int64_t>{1024, 65535},
        std::pair<int64_t, int64_t>{32768, 60999}};
    const std::vector<std::string> cidrs = {"0.0.0.0/0",    "0.0.0.0/0",       "10.0.0.0/16",
                                            "10.0.0.0/16",  "10.0.1.0/24",     "10.0.2.0/24",
                                            "10.0.3.10/32", "198.51.100.0/24", "10.0.1.11/32"};
    const std::vector<std::string> groups = {"g1", "g2", "g3"};
    for (const std::string& group : groups) {
      must(t.createSecurityGroup({.name = group, .vpc = "r"}, kNow), "security group " + group);
      if (chance(0.25)) must(t.deleteSecurityGroupRule(group, 1), "  no allow-all egress");
      const int rules = std::uniform_int_distribution<int>(1, 4)(rng);
      for (int i = 0; i < rules; ++i) {
        SecurityGroupRuleSpec rule;
        rule.direction = chance(0.75) ? "ingress" : "egress";
        rule.protocol = pick(protocols);
        if (rule.protocol == "tcp" || rule.protocol == "udp") {
          if (auto ports = pick(portChoices)) {
            rule.fromPort = ports->first;
            rule.toPort = ports->second;
          }
        }
        if (chance(0.4)) {
          rule.peerGroup =
              chance(0.25) ? std::string(peered && chance(0.5) ? "p-default" : "r-default") : pick(groups);
        } else {
          rule.cidr = pick(cidrs);
        }
        auto added = t.addSecurityGroupRule(group, rule);
        text += fmt::format("  {} {} {} {}-{} {}{}\n", added ? "rule" : "(refused)", rule.direction,
                            rule.protocol, rule.fromPort.value_or(-1), rule.toPort.value_or(-1),
                            rule.cidr.value_or(""), rule.peerGroup ? "group " + *rule.peerGroup : "");
      }
    }
    for (const std::string& subnet : subnets) {
      if (!chance(0.5)) continue;
      const std::string acl = "acl-" + subnet;
      must(t.createNetworkAcl({.name = acl, .vpc = "r"}, kNow), "network acl " + acl);
      for (std::string direction : {"ingress", "egress"}) {
        const int rules = std::uniform_int_distribution<int>(1, 4)(rng);
        for (int i = 0; i < rules; ++i) {
          NetworkAclRuleSpec rule;
          rule.number = std::uniform_int_distribution<int64_t>(1, 200)(rng);
          rule.direction = direction;
          rule.action = chance(0.7) ? "allow" : "deny";
          rule.protocol = pick(protocols);
          if (rule.protocol == "tcp" || rule.protocol == "udp") {
            if (auto ports = pick(portChoices)) {
              rule.fromPort = ports->first;
              rule.toPort = ports->second;
            }
          }
          rule.cidr = pick(cidrs);
          auto added = t.addNetworkAclRule(acl, rule);
          text += fmt::format("  {} {} {} {} {} {}-{} {}\n", added ? "rule" : "(refused)", rule.number,
                              direction, rule.action, rule.protocol, rule.fromPort.value_or(-1),
                              rule.toPort.value_or(-1), rule.cidr);
        }
        // Often a catch-all after the numbered rules, as most real ACLs end.
        if (chance(0.6)) {
          must(t.addNetworkAclRule(acl, {.number = 300, .direction = direction, .action = "allow"}),
               fmt::format("  rule 300 {} allow all 0.0.0.0/0", direction));
        }
      }
      must(t.updateSubnet(subnet, {.networkAcl = acl}), "subnet " + subnet + " uses " + acl);
    }
    // p's default group: what it lets in from r, by address or (across the peering) by r's groups.
    if (chance(0.8)) {
      SecurityGroupRuleSpec rule{.direction = "ingress", .protocol = pick(protocols)};
      if (peered && chance(0.5)) {
        rule.peerGroup = pick(std::vector<std::string>{"g1", "g2", "r-default"});
      } else {
        rule.cidr = pick(std::vector<std::string>{"10.0.0.0/16", "10.0.1.0/24", "0.0.0.0/0"});
      }
      auto added = t.addSecurityGroupRule("p-default", rule);
      text += fmt::format("  p-default {} ingress {} {}{}\n", added ? "rule" : "(refused)", rule.protocol,
                          rule.cidr.value_or(""), rule.peerGroup ? "group " + *rule.peerGroup : "");
    }
    for (NicAttachment& nic : nics) {
      if (nic.subnet == "ps") continue;  // p's default group
      nic.securityGroups.clear();
      for (const std::string& group : groups) {
        if (chance(0.4)) nic.securityGroups.push_back(group);
      }
      std::string list;
      for (const std::string& group : nic.securityGroups) list += group + " ";
      text += fmt::format("nic {} {} {} groups [{}]\n", nic.instance, nic.subnet, nic.address, list);
    }
    return t;
  }

  Probe randomProbe(std::mt19937& rng) {
    auto pick = [&](const auto& list) {
      return list[std::uniform_int_distribution<size_t>(0, list.size() - 1)(rng)];
    };
    const std::vector<std::string> instances = {"a1", "a2", "b1", "c1", "p1", "p1"};
    Probe probe;
    probe.protocol = pick(std::vector<std::string>{"tcp", "tcp", "udp", "icmp"});
    if (probe.protocol != "icmp") probe.port = pick(std::vector<int64_t>{80, 443, 5000});
    switch (std::uniform_int_distribution<int>(0, 3)(rng)) {
      case 0:
      case 1:
        probe.source = pick(instances);
        do probe.destination = pick(instances);
        while (probe.destination == probe.source);
        break;
      case 2:
        probe.source = pick(instances);
        probe.destination = kInternetHost;
        break;
      default:
        probe.source = kInternetHost;  // the internet, as the address the kernel's probe comes from
        if (std::bernoulli_distribution(0.5)(rng)) {
          probe.destination = publicAddress_;  // a1's public address
        } else {
          probe.destination = "b1";  // publishes 8080:80/tcp
          if (probe.protocol == "tcp") probe.port = 8080;
        }
    }
    return probe;
  }

  // The probe through the kernel: true when the exchange completed (udp: the datagram arrived).
  bool kernelSays(const Probe& probe, const std::vector<NicAttachment>& nics, uint16_t icmpId) {
    auto addressOf = [&](const std::string& instance) {
      for (const NicAttachment& nic : nics) {
        if (nic.instance == instance) return nic.address;
      }
      return std::string();
    };
    const bool fromInternet = probe.source == kInternetHost;
    const std::string fromNs = fromInternet ? internetNs() : instanceNs(probe.source);
    const std::optional<std::string> fromAddress =
        fromInternet ? std::optional<std::string>(kInternetHost) : std::nullopt;
    std::string toNs, address;
    uint16_t port = probe.port ? static_cast<uint16_t>(*probe.port) : 0;
    uint16_t listenPort = port;
    if (probe.destination == kInternetHost) {
      toNs = internetNs();
      address = kInternetHost;
    } else if (probe.destination == publicAddress_) {
      toNs = instanceNs("a1");
      address = publicAddress_;
    } else if (fromInternet) {  // b1 through its published port, or its private address
      toNs = instanceNs(probe.destination);
      if (probe.protocol == "tcp" && port == 8080) {
        address = outside_;
        listenPort = 80;
      } else {
        address = addressOf(probe.destination);
      }
    } else {
      toNs = instanceNs(probe.destination);
      address = addressOf(probe.destination);
    }
    UniqueFd from(::open(fromNs.c_str(), O_RDONLY | O_CLOEXEC));
    UniqueFd to(::open(toNs.c_str(), O_RDONLY | O_CLOEXEC));
    EXPECT_TRUE(from && to) << fromNs << ", " << toNs;
    if (!from || !to) return false;
    const Protocol protocol = probe.protocol == "icmp"  ? Protocol::Icmp
                              : probe.protocol == "udp" ? Protocol::Udp
                                                        : Protocol::Tcp;
    auto result = sendProbe({.protocol = protocol,
                             .fromNetns = from.get(),
                             .fromAddress = fromAddress,
                             .toNetns = to.get(),
                             .address = address,
                             .port = port,
                             .listenPort = listenPort,
                             .icmpId = icmpId,
                             .timeout = kTimeout});
    EXPECT_TRUE(result) << describe(probe) << ": " << result.error().message();
    if (!result) return false;
    EXPECT_NE(result->verdict, ProbeVerdict::Undetermined) << describe(probe) << ": " << result->detail;
    return result->verdict == ProbeVerdict::Reached;
  }

  TestNamespaces namespaces_;
  Children children_;
  std::string prefix_, internet_, outside_, publicAddress_;
  UplinkSettings uplink_;
  Cidr transit_;
  std::map<std::string, pid_t> pids_;
};

TEST_F(ReachProperty, AnalyzerAgreesWithTheKernel) {
  const char* seedText = std::getenv("CORRAL_REACH_SEED");
  const char* roundsText = std::getenv("CORRAL_REACH_ROUNDS");
  const uint32_t seed = seedText != nullptr ? static_cast<uint32_t>(std::strtoul(seedText, nullptr, 10))
                                            : static_cast<uint32_t>(std::random_device{}());
  const int rounds = roundsText != nullptr ? std::atoi(roundsText) : 30;
  constexpr int kProbesPerRound = 8;
  std::printf("seed %u (CORRAL_REACH_SEED=%u repeats this run), %d configurations\n", seed, seed, rounds);
  std::mt19937 rng(seed);

  std::vector<NicAttachment> nics = {
      NicAttachment{.instance = "a1",
                    .subnet = "s1",
                    .address = "10.0.1.10",
                    .publicAddress = publicAddress_,
                    .linkKey = prefix_ + "a1"},
      NicAttachment{.instance = "a2", .subnet = "s1", .address = "10.0.1.11", .linkKey = prefix_ + "a2"},
      NicAttachment{
          .instance = "b1",
          .subnet = "s2",
          .address = "10.0.2.10",
          .publish = {PortForward{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}},
          .linkKey = prefix_ + "b1"},
      NicAttachment{.instance = "c1", .subnet = "s3", .address = "10.0.3.10", .linkKey = prefix_ + "c1"},
      NicAttachment{.instance = "p1", .subnet = "ps", .address = "10.1.1.10", .linkKey = prefix_ + "p1"},
  };
  int agreed = 0, reachable = 0;
  std::map<std::string, int> blockedBy;
  uint16_t icmpId = static_cast<uint16_t>(seed);
  for (int round = 0; round < rounds; ++round) {
    std::string text;
    Topology topology = randomTopology(rng, nics, text);
    VpcPlan plan = planVpc(topology, "r", prefix_, nics, uplink_, transit_);
    VpcPlan peerPlan = planVpc(topology, "p", prefix_, nics, uplink_, std::nullopt);
    namespaces_.holdVpc(plan.netns);
    namespaces_.holdVpc(peerPlan.netns);
    // r, then p (which makes the peering's pair once both namespaces exist), then r again (its routes
    // through the pair), as corrald's reconcile does.
    for (const VpcPlan* converging : {&plan, &peerPlan, &plan}) {
      auto converged = convergeVpc(*converging);
      ASSERT_TRUE(converged) << "seed " << seed << " round " << round << ": " << converging->vpc << ": "
                             << converged.error().message() << "\n"
                             << text;
    }
    if (pids_.empty()) {
      for (const VpcPlan* owner : {&plan, &peerPlan}) {
        for (const NicPlan& planned : owner->nics) {
          pid_t pid = children_.spawn();
          ASSERT_GT(pid, 0);
          auto attached = attachContainerNic(owner->netns, planned, pid);
          ASSERT_TRUE(attached) << attached.error().message();
          pids_[planned.nic.instance] = pid;
        }
      }
    }
    for (int i = 0; i < kProbesPerRound; ++i) {
      Probe probe = randomProbe(rng);
      auto query = makeReachQuery(probe.source, probe.destination, probe.protocol, probe.port);
      ASSERT_TRUE(query) << query.error().message();
      auto paths = analyzeReach(topology, nics, *query);
      ASSERT_TRUE(paths) << describe(probe) << ": " << paths.error().message();
      ASSERT_EQ(paths->size(), 1u);
      const ReachPath& path = paths->front();
      const bool kernel = kernelSays(probe, nics, ++icmpId);
      if (kernel != path.reachable) {
        std::string hops;
        for (const ReachHop& hop : path.hops) {
          hops += fmt::format("  {} {} {} {} [{}] {}\n", hop.passes ? "ok" : "BLOCKED", hop.component,
                              hop.name, hop.leg, hop.rule, hop.text);
        }
        ADD_FAILURE() << "seed " << seed << " round " << round << ": " << describe(probe) << ": the kernel "
                      << (kernel ? "delivered it" : "did not deliver it") << ", the analyzer says "
                      << path.verdict << "\n"
                      << hops << "configuration:\n"
                      << text << "ruleset:\n"
                      << plan.ruleset << "ruleset of p:\n"
                      << peerPlan.ruleset;
        return;
      }
      ++agreed;
      reachable += kernel ? 1 : 0;
      if (!kernel) ++blockedBy[path.hops.back().component + " (" + path.hops.back().rule + ")"];
    }
  }
  std::printf("%d probes agreed (%d reachable, %d blocked)\n", agreed, reachable, agreed - reachable);
  for (const auto& [what, count] : blockedBy) std::printf("  blocked by %s: %d\n", what.c_str(), count);
  EXPECT_GT(reachable, 0) << "no probe got through: the configurations say too little";
  EXPECT_LT(reachable, agreed) << "every probe got through: the configurations say too little";
}

}  // namespace
}  // namespace corral::net
