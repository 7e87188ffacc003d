// The OVN backend of a VPC (net/vpc_ovn.h) against the simulated three-host OVN of ovn_cluster.sh:
// convergence through corral's OVSDB client with ovn-nbctl as the oracle (apply, re-apply changes nothing,
// drift repaired, foreign rows untouched, destroy), and the VPC connectivity suite's network part with
// workloads on different hosts bound to the plan's ports: same subnet across hosts (L2 over Geneve),
// across subnets through the router, security groups (inbound denied by default, a rule naming another
// group opens a port, stateful replies), network ACLs (a lower-numbered deny wins, stateless in both
// directions: the return path needs its own rule), no path between VPCs, and VPC peerings (a path only where
// both route tables lead to the peering and the groups allow, rules naming the peer VPC's groups, not
// transitive, cut when the peering goes).
#include "net/vpc_ovn.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "tests/integration/cluster/ovn_cluster.h"
#include "tests/integration/netns_testing.h"
#include "tests/integration/skip_guard.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

using namespace std::chrono_literals;
using ovsdb::OvsdbClient;
using testing::OvnCluster;
using testing::TempDir;
using testing::ToolRun;

const std::string kScript = CORRAL_SOURCE_DIR "/tests/integration/cluster/ovn_cluster.sh";
constexpr int64_t kNow = 1700000000;

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

// One three-host cluster for the whole fixture: starting one costs seconds.
// A workload of the simulated hosts playing an instance: its NIC in the plan, its namespace on a host.
struct Workload {
  std::string name;  // instance, and the br-int port's name
  int host;
  std::string subnet;
  std::string address;
  std::vector<std::string> groups;
};

class OvnVpcTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) return;
    for (const char* tool : {"/usr/sbin/ovs-vswitchd", "/usr/bin/ovn-controller", "/usr/bin/ovn-northd",
                             "/usr/bin/ovn-trace", "/bin/busybox"}) {
      if (!std::filesystem::exists(tool)) return;
    }
    // corral-t<PID>-ovn-*: scripts/sweep-test-leftovers stops the cluster of a test process that was killed.
    dir_ = new TempDir("corral-t" + std::to_string(::getpid()) + "-ovn-vpc");
    cluster_ = new OvnCluster(kScript, dir_->path(), "corral-t" + std::to_string(::getpid()) + "-", 3);
  }
  static void TearDownTestSuite() {
    if (cluster_ != nullptr) {
      ToolRun down = cluster_->stop();
      EXPECT_EQ(down.exitCode, 0) << down.output;
      delete cluster_;
      cluster_ = nullptr;
    }
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: network namespaces and OVS's userspace datapath";
    if (cluster_ == nullptr) GTEST_SKIP() << "OVS/OVN or busybox is missing: scripts/install-deps";
    ASSERT_EQ(cluster_->error(), "") << cluster_->logs();
    auto connected = OvsdbClient::connect(cluster_->northbound());
    ASSERT_TRUE(connected) << connected.error().message();
    client_.emplace(std::move(*connected));
  }

  static ToolRun nbctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"ovn-nbctl", "--db=" + cluster_->northbound(), "--timeout=30"});
    return testing::runTool(args, {}, 40s);
  }
  // ovn-nbctl's answer, trimmed, failing the test when it failed.
  static std::string nbctlOut(std::vector<std::string> args) {
    ToolRun run = nbctl(args);
    EXPECT_EQ(run.exitCode, 0) << run.output;
    while (!run.output.empty() && (run.output.back() == '\n' || run.output.back() == ' '))
      run.output.pop_back();
    return run.output;
  }
  // The names (or, for tables without names, the corral objects) of the rows marked with `vpc` in `table`.
  static std::vector<std::string> marked(const std::string& table, const std::string& vpc) {
    std::string out =
        nbctlOut({"--bare", "--columns=external_ids", "find", table, "external_ids:corral-vpc=" + vpc});
    std::vector<std::string> objects;
    size_t at = 0;
    while ((at = out.find("corral-object=", at)) != std::string::npos) {
      at += std::string("corral-object=").size();
      size_t end = out.find_first_of(" \n", at);
      objects.push_back(out.substr(at, end == std::string::npos ? std::string::npos : end - at));
    }
    std::sort(objects.begin(), objects.end());
    return objects;
  }

  // Plans `vpc`, converges it, and waits until every host's flows follow (ovn-nbctl --wait=hv).
  ChangeLog apply(const Topology& topology, const std::string& vpc, const std::vector<NicAttachment>& nics) {
    auto plan = planOvnVpc(topology, vpc, nics);
    EXPECT_TRUE(plan) << plan.error().message();
    if (!plan) return {};
    auto changes = convergeOvnVpc(*client_, *plan);
    EXPECT_TRUE(changes) << changes.error().message();
    ToolRun synced = nbctl({"--wait=hv", "sync"});
    EXPECT_EQ(synced.exitCode, 0) << synced.output;
    return changes ? *changes : ChangeLog{};
  }

  // Waits until northd reports each workload's logical port up (bound by its host's ovn-controller).
  void waitUntilUp(const std::vector<Workload>& workloads) {
    for (const Workload& workload : workloads) {
      const std::string& instance = workload.name;
      ASSERT_TRUE(testing::pollUntil(
          [&] {
            return nbctl({"--bare", "get", "Logical_Switch_Port", ovnNicPortName(instance), "up"}).output ==
                   "true\n";
          },
          30s))
          << instance << " not up\n"
          << cluster_->logs();
    }
  }

  static TempDir* dir_;
  static OvnCluster* cluster_;
  std::optional<OvsdbClient> client_;
};

TempDir* OvnVpcTest::dir_ = nullptr;
OvnCluster* OvnVpcTest::cluster_ = nullptr;

std::string joined(const ChangeLog& changes) {
  std::string out;
  for (const std::string& line : changes) out += line + "\n";
  return out;
}

// A VPC with two subnets, two groups, a custom network ACL and three NICs.
Topology convergeTopology() {
  Topology t;
  ok(t.createVpc({.name = "conv", .cidr = "10.5.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "conv-a", .vpc = "conv", .cidr = "10.5.1.0/24"}, kNow));
  ok(t.createNetworkAcl({.name = "conv-strict", .vpc = "conv"}, kNow));
  ok(t.createSubnet({.name = "conv-b", .vpc = "conv", .cidr = "10.5.2.0/24", .networkAcl = "conv-strict"},
                    kNow));
  ok(t.addNetworkAclRule("conv-strict", {.number = 10,
                                         .direction = "ingress",
                                         .action = "deny",
                                         .protocol = "tcp",
                                         .fromPort = 22,
                                         .toPort = 22,
                                         .cidr = "10.5.0.0/16"}));
  ok(t.addNetworkAclRule("conv-strict", {.number = 20, .direction = "egress", .cidr = "10.5.0.0/16"}));
  ok(t.createSecurityGroup({.name = "conv-web", .vpc = "conv"}, kNow));
  ok(t.addSecurityGroupRule("conv-web", {.direction = "ingress",
                                         .protocol = "tcp",
                                         .fromPort = 80,
                                         .toPort = 80,
                                         .peerGroup = "conv-default"}));
  return t;
}

std::vector<NicAttachment> convergeNics() {
  return {{.instance = "conv-1", .subnet = "conv-a", .address = "10.5.1.10", .securityGroups = {"conv-web"}},
          {.instance = "conv-2", .subnet = "conv-a", .address = "10.5.1.11"},
          {.instance = "conv-3", .subnet = "conv-b", .address = "10.5.2.10"}};
}

TEST_F(OvnVpcTest, ConvergesOnceRepairsDriftLeavesForeignRowsAndDestroys) {
  const Topology topology = convergeTopology();
  const OvnVpcPlan plan = ok(planOvnVpc(topology, "conv", convergeNics()));

  // Someone else's rows, before and after: a switch with a port and an ACL.
  nbctlOut({"ls-add", "foreign"});
  nbctlOut({"lsp-add", "foreign", "foreign-port"});
  nbctlOut({"acl-add", "foreign", "to-lport", "100", "ip4", "allow"});

  ChangeLog first = ok(convergeOvnVpc(*client_, plan));
  EXPECT_EQ(first.size(), plan.rows.size()) << joined(first);
  EXPECT_NE(
      std::find(first.begin(), first.end(), "created Logical_Switch corral.subnet.conv-a (subnet/conv-a)"),
      first.end())
      << joined(first);
  // ovn-nbctl sees what the plan names.
  EXPECT_EQ(nbctlOut({"--bare", "--columns=name", "find", "Logical_Router", "external_ids:corral-vpc=conv"}),
            "corral.vpc.conv");
  EXPECT_EQ(nbctlOut({"lsp-get-addresses", "corral.nic.conv-1"}),
            instanceMac("conv-1", false) + " 10.5.1.10");
  EXPECT_EQ(nbctlOut({"lrp-get-enabled", "corral.router.conv-b"}), "enabled");
  std::string pgAcls = nbctlOut({"acl-list", "corral_sg_conv_web"});
  EXPECT_NE(pgAcls.find("outport == @corral_sg_conv_web && ip4 && ip4.src == $corral_sg_conv_default_ip4 && "
                        "tcp.dst == 80"),
            std::string::npos)
      << pgAcls;
  std::string policies = nbctlOut({"lr-policy-list", "corral.vpc.conv"});
  EXPECT_NE(policies.find("inport == \"corral.router.conv-b\" && ip4 && ip4.dst == 10.5.0.0/16"),
            std::string::npos)
      << policies;
  for (const std::string& table : ovnTableOrder()) {
    std::vector<std::string> want;
    for (const OvnRow& row : plan.rows) {
      if (row.table == table) want.push_back(row.object);
    }
    std::sort(want.begin(), want.end());
    EXPECT_EQ(marked(table, "conv"), want) << table;
  }

  EXPECT_EQ(ok(convergeOvnVpc(*client_, plan)), ChangeLog{}) << "a second convergence changes nothing";

  // Drift: a NIC's port deleted, an ACL's action changed, a marked row the plan does not name, and a
  // foreign port put on corral's switch.
  nbctlOut({"lsp-del", "corral.nic.conv-2"});
  const std::string aclUuid = nbctlOut({"--bare", "--columns=_uuid", "find", "ACL",
                                        "external_ids:corral-object=security-group/conv-web/rule/2"});
  ASSERT_FALSE(aclUuid.empty());
  nbctlOut({"set", "ACL", aclUuid, "action=drop"});
  nbctlOut({"create", "Port_Group", "name=corral_sg_stray", "external_ids:corral-vpc=conv",
            "external_ids:corral-object=security-group/stray"});
  nbctlOut({"lsp-add", "corral.subnet.conv-a", "foreign-on-ours"});

  ChangeLog repaired = ok(convergeOvnVpc(*client_, plan));
  std::vector<std::string> sorted = repaired;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::string>{
                        "created Logical_Switch_Port corral.nic.conv-2 (nic/conv-2)",
                        "deleted Port_Group corral_sg_stray (security-group/stray)",
                        "updated ACL (security-group/conv-web/rule/2): action",
                        "updated Logical_Switch corral.subnet.conv-a (subnet/conv-a): ports",
                        "updated Port_Group corral_sg_conv_default (security-group/conv-default): ports",
                    }))
      << joined(repaired);
  std::string action = nbctlOut({"get", "ACL", aclUuid, "action"});
  std::erase(action, '"');
  EXPECT_EQ(action, "allow-related");
  EXPECT_EQ(nbctlOut({"lsp-get-addresses", "corral.nic.conv-2"}),
            instanceMac("conv-2", false) + " 10.5.1.11");
  EXPECT_EQ(ok(convergeOvnVpc(*client_, plan)), ChangeLog{}) << "repaired: nothing more to do";
  // The foreign port on corral's switch stayed there, and the foreign switch is as it was.
  EXPECT_NE(nbctlOut({"lsp-list", "corral.subnet.conv-a"}).find("foreign-on-ours"), std::string::npos);
  EXPECT_NE(nbctlOut({"lsp-list", "foreign"}).find("foreign-port"), std::string::npos);

  // A change of the model: a NIC goes, a rule goes; only those rows (and their parents) change.
  Topology smaller = topology;
  ok(smaller.deleteSecurityGroupRule("conv-web", 2));
  std::vector<NicAttachment> fewer = convergeNics();
  fewer.pop_back();
  ChangeLog shrunk = ok(convergeOvnVpc(*client_, ok(planOvnVpc(smaller, "conv", fewer))));
  sorted = shrunk;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(sorted, (std::vector<std::string>{
                        "deleted ACL (security-group/conv-web/rule/2)",
                        "deleted Logical_Switch_Port corral.nic.conv-3 (nic/conv-3)",
                        "updated DNS (vpc/conv/dns): records",
                        "updated Logical_Switch corral.subnet.conv-b (subnet/conv-b): ports",
                        "updated Port_Group corral_sg_conv_default (security-group/conv-default): ports",
                        "updated Port_Group corral_sg_conv_web (security-group/conv-web): acls",
                    }))
      << joined(shrunk);

  ChangeLog destroyed = ok(destroyOvnVpc(*client_, "conv"));
  EXPECT_FALSE(destroyed.empty());
  for (const std::string& table : ovnTableOrder())
    EXPECT_EQ(marked(table, "conv"), std::vector<std::string>{}) << table;
  EXPECT_EQ(ok(destroyOvnVpc(*client_, "conv")), ChangeLog{});
  EXPECT_NE(nbctlOut({"lsp-list", "foreign"}).find("foreign-port"), std::string::npos);
  EXPECT_NE(nbctlOut({"acl-list", "foreign"}).find("allow"), std::string::npos);
  nbctlOut({"ls-del", "foreign"});
}

// ---- Connectivity across hosts ----

// Each workload on its host, bound to its NIC's logical port (ovn_cluster.sh add-workload: its subnet's
// prefix, the subnet's .1 as gateway); `nics` gets each one's NIC for the plan.
void addWorkloads(OvnCluster& cluster, const Topology& topology, const std::vector<Workload>& workloads,
                  std::vector<NicAttachment>& nics) {
  for (const Workload& w : workloads) {
    const Subnet* subnet = topology.findSubnet(w.subnet);
    ASSERT_NE(subnet, nullptr) << w.subnet;
    const std::string gateway = Ipv4Address(subnet->cidr.first().value() + 1).str();
    ToolRun added = cluster.addWorkload(w.host, w.name, ovnNicPortName(w.name), instanceMac(w.name, false),
                                        fmt::format("{}/{}", w.address, subnet->cidr.prefix()), gateway);
    ASSERT_EQ(added.exitCode, 0) << added.output;
    nics.push_back(
        {.instance = w.name, .subnet = w.subnet, .address = w.address, .securityGroups = w.groups});
  }
}

// VPC prod: subnet front (10.0.1.0/24, default ACL) and back (10.0.2.0/24, ACL strict); group db admits
// tcp 5432-5433 from the VPC's default group; strict lets in all of the VPC but tcp 5433 (rule 50 before
// the allow at 100) and lets out all of the VPC. VPC other: one subnet far.
Topology connectivityTopology() {
  Topology t;
  ok(t.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "front", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
  ok(t.createNetworkAcl({.name = "strict", .vpc = "prod"}, kNow));
  ok(t.createSubnet({.name = "back", .vpc = "prod", .cidr = "10.0.2.0/24", .networkAcl = "strict"}, kNow));
  ok(t.addNetworkAclRule("strict", {.number = 100, .direction = "ingress", .cidr = "10.0.0.0/16"}));
  ok(t.addNetworkAclRule("strict", {.number = 50,
                                    .direction = "ingress",
                                    .action = "deny",
                                    .protocol = "tcp",
                                    .fromPort = 5433,
                                    .toPort = 5433,
                                    .cidr = "10.0.0.0/16"}));
  ok(t.addNetworkAclRule("strict", {.number = 100, .direction = "egress", .cidr = "10.0.0.0/16"}));
  ok(t.createSecurityGroup({.name = "db", .vpc = "prod"}, kNow));
  ok(t.addSecurityGroupRule("db", {.direction = "ingress",
                                   .protocol = "tcp",
                                   .fromPort = 5432,
                                   .toPort = 5433,
                                   .peerGroup = "prod-default"}));
  ok(t.createSecurityGroup({.name = "web", .vpc = "prod"}, kNow));
  ok(t.createVpc({.name = "other", .cidr = "10.1.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "far", .vpc = "other", .cidr = "10.1.1.0/24"}, kNow));
  return t;
}

const std::vector<Workload> kWorkloads = {
    {.name = "a1", .host = 1, .subnet = "front", .address = "10.0.1.11", .groups = {}},
    {.name = "a2", .host = 2, .subnet = "front", .address = "10.0.1.12", .groups = {}},
    {.name = "v2", .host = 2, .subnet = "front", .address = "10.0.1.22", .groups = {"web"}},
    {.name = "b3", .host = 3, .subnet = "back", .address = "10.0.2.13", .groups = {"db"}},
    {.name = "c1", .host = 1, .subnet = "far", .address = "10.1.1.11", .groups = {}},
};

TEST_F(OvnVpcTest, VpcConnectivityAcrossHostsFollowsSecurityGroupsAndNetworkAcls) {
  Topology topology = connectivityTopology();
  std::vector<NicAttachment> nics;
  addWorkloads(*cluster_, topology, kWorkloads, nics);
  ASSERT_FALSE(HasFatalFailure());
  const auto started = std::chrono::steady_clock::now();
  apply(topology, "prod", nics);
  apply(topology, "other", nics);
  EXPECT_EQ(apply(topology, "prod", nics), ChangeLog{}) << "converged once";
  waitUntilUp(kWorkloads);
  ASSERT_FALSE(HasFatalFailure());
  ToolRun synced = nbctl({"--wait=hv", "sync"});
  ASSERT_EQ(synced.exitCode, 0) << synced.output;
  std::fprintf(stderr, "converged and bound in %lld ms\n",
               static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now() - started)
                                          .count()));
  // northd compiled every match (a match it cannot parse is logged, and that ACL matches nothing).
  const std::string northd = testing::readFile(cluster_->dir() + "/northd.log");
  EXPECT_EQ(northd.find("parse"), std::string::npos) << northd;

  auto netns = [&](const std::string& name) { return cluster_->workloadNetns(name); };
  auto ping = [&](const std::string& from, const std::string& to) {
    return testing::runTool({"ip", "netns", "exec", netns(from), "busybox", "ping", "-c", "1", "-W", "2", to})
               .exitCode == 0;
  };
  // A whole TCP exchange (handshake, a reply over the established connection) from `from` to `to`:port.
  auto exchange = [&](const std::string& from, const Workload& to, uint16_t port) {
    UniqueFd listener = testing::listenIn(netns(to.name), port);
    EXPECT_TRUE(listener) << "listen in " << to.name;
    return testing::tcpExchange(netns(from), to.address, port, listener, 2s).ok;
  };
  const Workload& a1 = kWorkloads[0];
  const Workload& a2 = kWorkloads[1];
  const Workload& b3 = kWorkloads[3];
  const Workload& c1 = kWorkloads[4];

  // Same subnet, hosts 1 and 2: L2 over Geneve; the default group's members reach each other. The first
  // packets may meet flows still being installed: one answer within 20 s first.
  EXPECT_TRUE(testing::pollUntil([&] { return ping("a1", a2.address); }, 20s)) << cluster_->logs();
  EXPECT_TRUE(ping("a2", a1.address));
  EXPECT_TRUE(exchange("a1", a2, 8000));
  EXPECT_TRUE(ping("a1", "10.0.1.1")) << "the router answers on the subnet's .1";

  // The VPC's names, answered by OVN on each subnet's switch at the subnet's .2: NAME.VPC.internal and
  // NAME, whichever subnet asks; the other VPC's resolver does not know them.
  auto lookup = [&](const std::string& from, const std::string& name, const std::string& server) {
    return testing::runTool(
               {"ip", "netns", "exec", netns(from), "busybox", "nslookup", "-type=a", name, server}, {}, 10s)
        .output;
  };
  const auto lookups = std::chrono::steady_clock::now();
  std::string answer = lookup("a1", "b3.prod.internal", "10.0.1.2");
  EXPECT_NE(answer.find("Address: 10.0.2.13"), std::string::npos) << answer;
  answer = lookup("b3", "a2", "10.0.2.2");
  EXPECT_NE(answer.find("Address: 10.0.1.12"), std::string::npos) << answer;
  answer = lookup("c1", "a1.prod.internal", "10.1.1.2");
  EXPECT_EQ(answer.find("10.0.1.11"), std::string::npos) << answer;
  std::fprintf(stderr, "three lookups in %lld ms\n",
               static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now() - lookups)
                                          .count()));

  // Across subnets through the VPC's router (host 1 to host 3): db's rule names the default group.
  EXPECT_TRUE(testing::pollUntil([&] { return exchange("a1", b3, 5432); }, 10s));
  // That exchange's replies came back although a1's group lets nothing in from b3: stateful. A connection
  // b3 opens to a1 is new, and a1's group has no rule for it.
  EXPECT_FALSE(exchange("b3", a1, 8001)) << "inbound is denied by default";
  // db's rule names the default group only: v2 (group web) is not let in, nor is any other port.
  EXPECT_FALSE(exchange("v2", b3, 5432)) << "web is not the group db's rule names";
  EXPECT_FALSE(exchange("a1", b3, 22)) << "db opens 5432-5433 only";
  // strict's deny 50 (tcp 5433) wins over its allow 100, though db's group would let 5433 in.
  EXPECT_FALSE(exchange("a1", b3, 5433)) << "a lower-numbered deny wins";

  // ovn-trace agrees, packet by packet through the logical flows (a new connection: --ct=new): 5432
  // crosses the router into back and reaches b3's port; 5433 is stopped on back's switch, where back's
  // ACL sees it come from the router, before any port of back.
  auto trace = [&](uint16_t port) {
    const std::string routerMac = subnetBridgeMac(subnetBridgeName("prod", "front"));
    ToolRun run = testing::runTool(
        {"ovn-trace", "--db=" + cluster_->southbound(), "--ct=new", ovnSwitchName("front"),
         fmt::format(
             "inport == \"{}\" && eth.src == {} && eth.dst == {} && ip4.src == {} && ip4.dst == {} && "
             "ip.ttl == 64 && tcp && tcp.src == 40000 && tcp.dst == {}",
             ovnNicPortName("a1"), instanceMac("a1", false), routerMac, a1.address, b3.address, port)});
    EXPECT_EQ(run.exitCode, 0) << run.output;
    return run.output;
  };
  const std::string allowed = trace(5432);
  EXPECT_NE(allowed.find("output to \"corral.nic.b3\""), std::string::npos) << allowed;
  const std::string denied = trace(5433);
  EXPECT_NE(denied.find("ingress(dp=\"corral.subnet.back\", inport=\"corral.router-port.back\")"),
            std::string::npos)
      << denied;
  EXPECT_EQ(denied.find("outport=\"corral.nic.b3\""), std::string::npos) << denied;
  EXPECT_NE(denied.find("drop;"), std::string::npos) << denied;

  // Network ACLs are stateless. Out of a subnet: with strict's egress rule gone, b3's replies cannot leave
  // back, and a1's connection to 5432 fails though its SYN gets in; an explicit rule for the return path
  // (tcp to the ephemeral ports) brings it back.
  ok(topology.deleteNetworkAclRule("strict", "egress", 100));
  apply(topology, "prod", nics);
  EXPECT_FALSE(exchange("a1", b3, 5432)) << "the replies need strict's egress to allow them";
  ok(topology.addNetworkAclRule("strict", {.number = 100,
                                           .direction = "egress",
                                           .protocol = "tcp",
                                           .fromPort = 1024,
                                           .toPort = 65535,
                                           .cidr = "10.0.1.0/24"}));
  apply(topology, "prod", nics);
  EXPECT_TRUE(testing::pollUntil([&] { return exchange("a1", b3, 5432); }, 10s)) << "return path allowed";

  // Into a subnet: front on ACL edge, which lets everything out and only ICMP in. a1's SYN leaves front,
  // b3's SYN-ACK is refused on the way into front; allowing the ephemeral ports in brings it back.
  ok(topology.createNetworkAcl({.name = "edge", .vpc = "prod"}, kNow));
  ok(topology.addNetworkAclRule("edge", {.number = 100, .direction = "egress", .cidr = "0.0.0.0/0"}));
  ok(topology.addNetworkAclRule(
      "edge", {.number = 100, .direction = "ingress", .protocol = "icmp", .cidr = "0.0.0.0/0"}));
  ok(topology.updateSubnet("front", {.networkAcl = "edge"}));
  apply(topology, "prod", nics);
  EXPECT_FALSE(exchange("a1", b3, 5432)) << "the replies need edge's ingress to allow them";
  EXPECT_TRUE(exchange("a1", a2, 8002)) << "inside a subnet network ACLs do not apply";
  ok(topology.addNetworkAclRule("edge", {.number = 200,
                                         .direction = "ingress",
                                         .protocol = "tcp",
                                         .fromPort = 1024,
                                         .toPort = 65535,
                                         .cidr = "10.0.2.0/24"}));
  apply(topology, "prod", nics);
  EXPECT_TRUE(testing::pollUntil([&] { return exchange("a1", b3, 5432); }, 10s)) << "return path allowed";

  // VPCs are apart: c1 (VPC other, on host 1 like a1) reaches its own router but nothing of prod, and
  // prod nothing of it.
  EXPECT_TRUE(testing::pollUntil([&] { return ping("c1", "10.1.1.1"); }, 10s)) << "c1 is wired";
  EXPECT_FALSE(ping("a1", c1.address));
  EXPECT_FALSE(ping("c1", a1.address));
  EXPECT_FALSE(exchange("c1", a1, 8003));
  EXPECT_FALSE(exchange("a1", c1, 8004));

  ok(destroyOvnVpc(*client_, "prod"));
  ok(destroyOvnVpc(*client_, "other"));
}

// ---- VPC peerings ----

// Three VPCs in a row: pa (10.30.0.0/16) – pb (10.31.0.0/16) – pc (10.32.0.0/16), peered pa–pb and
// pb–pc, one subnet each on its main table; pb's group pb-srv lets in nothing yet, pc's pc-srv lets tcp/80
// in from anywhere. pa's and pb's main tables route to each other, pb's and pc's too.
Topology peeredTopology() {
  Topology t;
  ok(t.createVpc({.name = "pa", .cidr = "10.30.0.0/16"}, kNow));
  ok(t.createVpc({.name = "pb", .cidr = "10.31.0.0/16"}, kNow));
  ok(t.createVpc({.name = "pc", .cidr = "10.32.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "pa-s", .vpc = "pa", .cidr = "10.30.1.0/24"}, kNow));
  ok(t.createSubnet({.name = "pb-s", .vpc = "pb", .cidr = "10.31.1.0/24"}, kNow));
  ok(t.createSubnet({.name = "pc-s", .vpc = "pc", .cidr = "10.32.1.0/24"}, kNow));
  ok(t.createPeering({.name = "pa-pb", .vpc = "pa", .peerVpc = "pb"}, kNow));
  ok(t.createPeering({.name = "pb-pc", .vpc = "pb", .peerVpc = "pc"}, kNow));
  ok(t.addRoute("pa-main", {.destination = "10.31.0.0/16", .targetType = "peering", .targetName = "pa-pb"}));
  ok(t.addRoute("pb-main", {.destination = "10.30.0.0/16", .targetType = "peering", .targetName = "pa-pb"}));
  ok(t.addRoute("pb-main", {.destination = "10.32.0.0/16", .targetType = "peering", .targetName = "pb-pc"}));
  ok(t.addRoute("pc-main", {.destination = "10.31.0.0/16", .targetType = "peering", .targetName = "pb-pc"}));
  ok(t.createSecurityGroup({.name = "pb-srv", .vpc = "pb"}, kNow));
  ok(t.createSecurityGroup({.name = "pc-srv", .vpc = "pc"}, kNow));
  ok(t.addSecurityGroupRule(
      "pc-srv",
      {.direction = "ingress", .protocol = "tcp", .fromPort = 80, .toPort = 80, .cidr = "0.0.0.0/0"}));
  return t;
}

TEST_F(OvnVpcTest, PeeredVpcsReachEachOtherOnlyWhereRoutesAndGroupsAllowAndNeverTransitively) {
  Topology topology = peeredTopology();
  const std::vector<Workload> workloads = {
      {.name = "pa1", .host = 1, .subnet = "pa-s", .address = "10.30.1.11", .groups = {}},
      {.name = "pb2", .host = 2, .subnet = "pb-s", .address = "10.31.1.12", .groups = {"pb-srv"}},
      {.name = "pc3", .host = 3, .subnet = "pc-s", .address = "10.32.1.13", .groups = {"pc-srv"}},
  };
  std::vector<NicAttachment> nics;
  addWorkloads(*cluster_, topology, workloads, nics);
  ASSERT_FALSE(HasFatalFailure());
  auto applyAll = [&] {
    for (const std::string vpc : {"pa", "pb", "pc"}) apply(topology, vpc, nics);
  };
  applyAll();
  for (const std::string vpc : {"pa", "pb", "pc"})
    EXPECT_EQ(apply(topology, vpc, nics), ChangeLog{}) << vpc << ": converged once";
  waitUntilUp(workloads);
  ASSERT_FALSE(HasFatalFailure());
  // The link's two ends, one in each VPC's rows, name each other.
  EXPECT_EQ(nbctlOut({"--bare", "get", "Logical_Router_Port", ovnPeeringPortName("pa", "pa-pb"), "peer"}),
            ovnPeeringPortName("pb", "pa-pb"));
  EXPECT_EQ(nbctlOut({"--bare", "get", "Logical_Router_Port", ovnPeeringPortName("pb", "pa-pb"), "peer"}),
            ovnPeeringPortName("pa", "pa-pb"));
  ToolRun synced = nbctl({"--wait=hv", "sync"});
  ASSERT_EQ(synced.exitCode, 0) << synced.output;
  const std::string northd = testing::readFile(cluster_->dir() + "/northd.log");
  EXPECT_EQ(northd.find("parse"), std::string::npos) << northd;

  auto netns = [&](const std::string& name) { return cluster_->workloadNetns(name); };
  auto exchange = [&](const std::string& from, const Workload& to, uint16_t port) {
    UniqueFd listener = testing::listenIn(netns(to.name), port);
    EXPECT_TRUE(listener) << "listen in " << to.name;
    return testing::tcpExchange(netns(from), to.address, port, listener, 2s).ok;
  };
  const Workload& pb2 = workloads[1];
  const Workload& pc3 = workloads[2];

  // pb and pc: routes both ways, pc-srv lets tcp/80 in (host 2 to host 3, through both routers).
  EXPECT_TRUE(testing::pollUntil([&] { return exchange("pb2", pc3, 80); }, 20s)) << cluster_->logs();
  // pa and pb: routes both ways, but pb-srv lets nothing in.
  EXPECT_FALSE(exchange("pa1", pb2, 5432)) << "pb-srv has no rule for pa's instances yet";
  // A rule naming the peer VPC's group opens the port to that group (pa's default group: pa1).
  ok(topology.addSecurityGroupRule("pb-srv", {.direction = "ingress",
                                              .protocol = "tcp",
                                              .fromPort = 5432,
                                              .toPort = 5432,
                                              .peerGroup = "pa-default"}));
  applyAll();
  EXPECT_TRUE(testing::pollUntil([&] { return exchange("pa1", pb2, 5432); }, 10s))
      << "a rule naming pa's group lets pa1 in";
  EXPECT_FALSE(exchange("pa1", pb2, 5433)) << "only the rule's port";
  EXPECT_FALSE(exchange("pc3", pb2, 5432)) << "pc3 is not in pa's group";

  // A route in only one table: pb's replies have no way back to pa.
  ok(topology.deleteRoute("pb-main", "10.30.0.0/16"));
  applyAll();
  EXPECT_FALSE(exchange("pa1", pb2, 5432)) << "pb's table has no route back to pa";
  ok(topology.addRoute("pb-main",
                       {.destination = "10.30.0.0/16", .targetType = "peering", .targetName = "pa-pb"}));
  applyAll();
  EXPECT_TRUE(testing::pollUntil([&] { return exchange("pa1", pb2, 5432); }, 10s)) << "the route is back";

  // Not transitive: pc3 lets tcp/80 in from anywhere, and pb routes to both, yet pa1 does not reach pc3
  // nor pc3 pa1 (pa has no route to pc, and pb's router sends on nothing that came in over a peering).
  EXPECT_FALSE(exchange("pa1", pc3, 80)) << "pa reaches pc through pb";
  // What arrives at pb's router over the pa–pb link: to pb's own instance it goes on, to pc's it does not
  // (ovn-trace through the logical flows from pb's end of the link).
  auto fromPeering = [&](const std::string& to) {
    const std::string ours = ovnPeeringPortName("pb", "pa-pb");
    std::string mac = nbctlOut({"--bare", "get", "Logical_Router_Port", ours, "mac"});
    std::string theirs =
        nbctlOut({"--bare", "get", "Logical_Router_Port", ovnPeeringPortName("pa", "pa-pb"), "mac"});
    std::erase(mac, '"');
    std::erase(theirs, '"');
    ToolRun run = testing::runTool(
        {"ovn-trace", "--db=" + cluster_->southbound(), "--ct=new", ovnRouterName("pb"),
         fmt::format("inport == \"{}\" && eth.src == {} && eth.dst == {} && ip4.src == 10.30.1.11 && "
                     "ip4.dst == {} && ip.ttl == 64 && tcp && tcp.src == 40000 && tcp.dst == 5432",
                     ours, theirs, mac, to)});
    EXPECT_EQ(run.exitCode, 0) << run.output;
    return run.output;
  };
  const std::string toPb = fromPeering(pb2.address);
  EXPECT_NE(toPb.find("output to \"corral.nic.pb2\""), std::string::npos) << toPb;
  const std::string toPc = fromPeering(pc3.address);
  // pb's router has no route for it: the packet ends in its routing stage (the link's port routes by the
  // global table, which holds only connected routes).
  const size_t routing = toPc.find("lr_in_ip_routing (");
  EXPECT_NE(routing, std::string::npos) << toPc;
  EXPECT_NE(toPc.find("drop;", routing == std::string::npos ? 0 : routing), std::string::npos) << toPc;
  EXPECT_EQ(toPc.find("corral.vpc.pc"), std::string::npos) << toPc;
  EXPECT_EQ(toPc.find("corral.nic.pc3"), std::string::npos) << toPc;

  // Deleting the peering (its rule and routes first, as the model asks) takes both ends away and cuts it.
  ok(topology.deleteSecurityGroupRule("pb-srv", topology.findSecurityGroup("pb-srv")->rules.back().id));
  ok(topology.deleteRoute("pa-main", "10.31.0.0/16"));
  ok(topology.deleteRoute("pb-main", "10.30.0.0/16"));
  ok(topology.deletePeering("pa-pb"));
  applyAll();
  EXPECT_EQ(
      nbctl({"--bare", "get", "Logical_Router_Port", ovnPeeringPortName("pa", "pa-pb"), "peer"}).exitCode, 1)
      << "pa's end is gone";
  EXPECT_EQ(
      nbctl({"--bare", "get", "Logical_Router_Port", ovnPeeringPortName("pb", "pa-pb"), "peer"}).exitCode, 1)
      << "pb's end is gone";
  EXPECT_FALSE(exchange("pa1", pb2, 5432)) << "no peering, no path";
  EXPECT_TRUE(exchange("pb2", pc3, 80)) << "the other peering stays";

  for (const std::string vpc : {"pa", "pb", "pc"}) ok(destroyOvnVpc(*client_, vpc));
}

// ---- The internet gateway ----

// VPC shop: pub (routed to the internet gateway), priv (routed to a NAT gateway in pub), iso (main table,
// no default route); group web lets tcp/80 in from anywhere.
Topology gatewayTopology() {
  Topology t;
  ok(t.createVpc({.name = "shop", .cidr = "10.2.0.0/16"}, kNow));
  ok(t.createRouteTable({.name = "pub-rt", .vpc = "shop"}, kNow));
  ok(t.createRouteTable({.name = "priv-rt", .vpc = "shop"}, kNow));
  ok(t.createSubnet({.name = "pub", .vpc = "shop", .cidr = "10.2.1.0/24", .routeTable = "pub-rt"}, kNow));
  ok(t.createSubnet({.name = "priv", .vpc = "shop", .cidr = "10.2.2.0/24", .routeTable = "priv-rt"}, kNow));
  ok(t.createSubnet({.name = "iso", .vpc = "shop", .cidr = "10.2.3.0/24"}, kNow));
  ok(t.createInternetGateway({.name = "shop-igw", .vpc = "shop"}, kNow));
  ok(t.createNatGateway({.name = "shop-nat", .subnet = "pub"}, kNow));
  ok(t.addRoute("pub-rt",
                {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "shop-igw"}));
  ok(t.addRoute("priv-rt",
                {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "shop-nat"}));
  ok(t.createSecurityGroup({.name = "shop-web", .vpc = "shop"}, kNow));
  ok(t.addSecurityGroupRule(
      "shop-web",
      {.direction = "ingress", .protocol = "tcp", .fromPort = 80, .toPort = 80, .cidr = "0.0.0.0/0"}));
  return t;
}

TEST_F(OvnVpcTest, InternetGatewayNatsOutAndLetsInOnlyToPublicAddresses) {
  // The outside meets host 1; the gateway port is bound there, the workloads live on hosts 2 and 3.
  ToolRun uplink = cluster_->addUplink(1, "corral-uplink");
  ASSERT_EQ(uplink.exitCode, 0) << uplink.output;
  const Topology topology = gatewayTopology();
  const Cidr transit = ok(chooseTransit(UplinkSettings{}, "shop", {}));
  const std::string outsideSide = Ipv4Address(transit.network().value() + 1).str();
  const std::string gatewaySide = Ipv4Address(transit.network().value() + 2).str();
  const OvnGatewaySettings settings{.chassis = "h1", .network = "corral-uplink", .transit = transit};
  const std::vector<Workload> workloads = {
      {.name = "p2", .host = 2, .subnet = "pub", .address = "10.2.1.12", .groups = {"shop-web"}},
      {.name = "q3", .host = 3, .subnet = "priv", .address = "10.2.2.13", .groups = {}},
      {.name = "i3", .host = 3, .subnet = "iso", .address = "10.2.3.13", .groups = {}},
  };
  const std::string publicAddress = "100.64.128.12";
  std::vector<NicAttachment> nics;
  addWorkloads(*cluster_, topology, workloads, nics);
  ASSERT_FALSE(HasFatalFailure());
  nics[0].publicAddress = publicAddress;
  // q3 publishes its port 80 as the gateway's 8080; i3, in the isolated subnet, cannot publish.
  nics[1].publish = {{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}};
  nics[2].publish = {{.protocol = Protocol::Tcp, .outsidePort = 5432, .instancePort = 5432}};
  // The outside's side of the transit, and the public pool routed to the gateway, as the nftables
  // backend's uplink side has them.
  const std::string outside = cluster_->outsideNetns();
  for (std::vector<std::string> args :
       {std::vector<std::string>{"ip", "-n", outside, "addr", "add", outsideSide + "/30", "dev", "up0"},
        std::vector<std::string>{"ip", "-n", outside, "route", "add", "100.64.128.0/17", "via",
                                 gatewaySide}}) {
    ToolRun run = testing::runTool(args);
    ASSERT_EQ(run.exitCode, 0) << run.output;
  }

  auto plan = planOvnVpc(topology, "shop", nics, &settings);
  ASSERT_TRUE(plan) << plan.error().message();
  ASSERT_TRUE(convergeOvnVpc(*client_, *plan));
  EXPECT_EQ(ok(convergeOvnVpc(*client_, *plan)), ChangeLog{}) << "the gateway's rows converge once too";
  waitUntilUp(workloads);
  ASSERT_FALSE(HasFatalFailure());
  ToolRun synced = nbctl({"--wait=hv", "sync"});
  ASSERT_EQ(synced.exitCode, 0) << synced.output;
  const std::string northd = testing::readFile(cluster_->dir() + "/northd.log");
  EXPECT_EQ(northd.find("parse"), std::string::npos) << northd;

  // A whole TCP exchange to the outside's side of the transit: whom the outside saw, empty when it failed.
  auto outward = [&](const std::string& from, uint16_t port) {
    UniqueFd listener = testing::listenIn(outside, port);
    EXPECT_TRUE(listener) << "listen in " << outside;
    testing::TcpExchange exchange =
        testing::tcpExchange(cluster_->workloadNetns(from), outsideSide, port, listener, 2s);
    return exchange.ok ? exchange.peer : std::string();
  };
  // From the outside to address:port, `to` listening on `toPort` (the port itself unless published).
  auto inward = [&](const Workload& to, const std::string& address, uint16_t port, uint16_t toPort = 0) {
    UniqueFd listener = testing::listenIn(cluster_->workloadNetns(to.name), toPort == 0 ? port : toPort);
    EXPECT_TRUE(listener) << "listen in " << to.name;
    testing::TcpExchange exchange = testing::tcpExchange(outside, address, port, listener, 2s);
    return exchange.ok ? exchange.peer : std::string();
  };

  // NAT out: the private subnet through the NAT gateway leaves as the gateway's .2; the public NIC as its
  // own public address (1:1); the isolated subnet not at all.
  std::string seen;
  EXPECT_TRUE(testing::pollUntil([&] { return !(seen = outward("q3", 9000)).empty(); }, 20s))
      << cluster_->logs();
  EXPECT_EQ(seen, gatewaySide) << "the private subnet leaves as the gateway's address";
  EXPECT_EQ(outward("p2", 9001), publicAddress) << "the public NIC leaves as its public address";
  EXPECT_EQ(outward("i3", 9002), "") << "an isolated subnet has no way out";

  // In: only to the public address, and only where the NIC's groups let it in.
  EXPECT_EQ(inward(workloads[0], publicAddress, 80), outsideSide) << "the public address leads to p2";
  EXPECT_EQ(inward(workloads[0], publicAddress, 81), "") << "shop-web lets only tcp/80 in";
  EXPECT_EQ(inward(workloads[0], gatewaySide, 80), "") << "nothing is published on the gateway's 80";
  // A published port: the gateway's 8080 leads to q3's 80 though q3's group lets nothing in from outside
  // (publishing is the allow rule); from inside the VPC q3's group still decides (p2 is not a member).
  EXPECT_EQ(inward(workloads[1], gatewaySide, 8080, 80), outsideSide) << "published 8080 -> q3:80";
  EXPECT_EQ(inward(workloads[2], gatewaySide, 5432), "") << "an isolated subnet publishes nothing";
  {
    UniqueFd listener = testing::listenIn(cluster_->workloadNetns("q3"), 80);
    EXPECT_FALSE(
        testing::tcpExchange(cluster_->workloadNetns("p2"), workloads[1].address, 80, listener, 2s).ok)
        << "publishing opens the port to the outside only";
  }

  ok(destroyOvnVpc(*client_, "shop"));
}

}  // namespace
}  // namespace corral::net
