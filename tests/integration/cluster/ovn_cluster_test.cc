// The simulated multi-host OVN (ovn_cluster.sh): a logical switch made through corral's OVSDB client, with
// a port on each "host", carries a ping and a TCP transfer from one host's workload to the other's over
// Geneve on the veth underlay; with three hosts, the death of one leaves the other two talking; after
// stopping, no process and no namespace of the cluster is left, also when the test gives up halfway.
#include "tests/integration/cluster/ovn_cluster.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "net/ovsdb.h"
#include "tests/integration/skip_guard.h"

namespace corral::net::ovsdb {
namespace {

using namespace std::chrono_literals;
using testing::OvnCluster;
using testing::TempDir;

const std::string kScript = CORRAL_SOURCE_DIR "/tests/integration/cluster/ovn_cluster.sh";

// The harness's prefix (tests/integration/harness.h), so scripts/sweep-test-leftovers knows them.
std::string testPrefix() {
  return "corral-t" + std::to_string(::getpid()) + "-";
}

class OvnClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: network namespaces and OVS's userspace datapath";
    for (const char* tool :
         {"/usr/sbin/ovs-vswitchd", "/usr/bin/ovn-controller", "/usr/bin/ovn-northd", "/bin/busybox"}) {
      if (!std::filesystem::exists(tool)) GTEST_SKIP() << tool << " is missing: scripts/install-deps";
    }
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
  }

  // The veth underlay's transmitted packets on host 1 (what Geneve carried out of it).
  uint64_t underlayTxPackets(const OvnCluster& cluster) {
    testing::ToolRun run =
        testing::runTool({"ip", "-n", cluster.hostNetns(1), "-s", "-j", "link", "show", "ul0"});
    EXPECT_EQ(run.exitCode, 0) << run.output;
    Json links = Json::parse(run.output, nullptr, false);
    if (links.is_discarded() || !links.is_array() || links.empty()) return 0;
    return links[0]["stats64"]["tx"].value("packets", uint64_t{0});
  }

  testing::ToolRun ping(const OvnCluster& cluster, int from, const std::string& to, int count) {
    return testing::runTool({"ip", "netns", "exec", cluster.workloadNetns(from), "busybox", "ping", "-c",
                             std::to_string(count), "-W", "2", to});
  }

  // Nothing the cluster started runs, none of its namespaces exists.
  void expectNothingLeft(const OvnCluster& cluster) {
    EXPECT_EQ(testing::processesMentioning(dir_.path()), std::vector<pid_t>{}) << "processes left behind";
    for (const std::string& ns : cluster.namespaces()) {
      EXPECT_FALSE(std::filesystem::exists("/run/netns/" + ns)) << ns << " left behind";
    }
  }

  TempDir dir_{"corral-t" + std::to_string(::getpid()) + "-ovn"};
};

TEST_F(OvnClusterTest, APortOnEachHostReachesAcrossGeneveAndNothingIsLeftAfterStopping) {
  OvnCluster cluster(kScript, dir_.path(), testPrefix());
  ASSERT_EQ(cluster.error(), "") << cluster.logs();

  auto client = OvsdbClient::connect(cluster.northbound());
  ASSERT_TRUE(client) << client.error().message();
  // Watch the two ports' "up", which northd sets once a host's ovn-controller has bound the port.
  auto initial = client->monitorCond(
      "OVN_Northbound", "ports", {{.table = "Logical_Switch_Port", .columns = {"name", "up"}, .where = {}}});
  ASSERT_TRUE(initial) << initial.error().message();

  auto created = client->transact(
      "OVN_Northbound",
      {insertOp("Logical_Switch_Port", {{"name", "w1"}, {"addresses", set({"0a:00:00:00:00:01 10.0.0.1"})}},
                "w1"),
       insertOp("Logical_Switch_Port", {{"name", "w2"}, {"addresses", set({"0a:00:00:00:00:02 10.0.0.2"})}},
                "w2"),
       insertOp("Logical_Switch", {{"name", "ls0"}, {"ports", set({namedUuid("w1"), namedUuid("w2")})}})});
  ASSERT_TRUE(created) << created.error().message();

  std::map<std::string, std::string> nameOf;  // uuid -> port name
  std::set<std::string> up;
  const auto deadline = std::chrono::steady_clock::now() + 60s;
  while (up.size() < 2 && std::chrono::steady_clock::now() < deadline) {
    auto update = client->nextUpdate(1s);
    ASSERT_TRUE(update) << update.error().message();
    if (!*update) continue;
    for (const RowChange& change : (*update)->changes) {
      if (change.row.contains("name")) nameOf[change.uuid] = change.row["name"];
      // "up" is an optional boolean: a set of zero or one.
      if (change.row.contains("up") &&
          decodeSet(change.row["up"]).value_or(std::vector<Json>{}) == std::vector<Json>{true}) {
        up.insert(nameOf[change.uuid]);
      }
    }
  }
  ASSERT_EQ(up, (std::set<std::string>{"w1", "w2"})) << "ports not up within 60 s\n" << cluster.logs();

  // The first packets may meet flows still being installed: wait for one answer, then expect all of three.
  ASSERT_TRUE(testing::pollUntil([&] { return ping(cluster, 1, "10.0.0.2", 1).exitCode == 0; }, 20s))
      << cluster.logs();
  const uint64_t txBefore = underlayTxPackets(cluster);
  testing::ToolRun forth = ping(cluster, 1, "10.0.0.2", 3);
  EXPECT_EQ(forth.exitCode, 0) << forth.output;
  EXPECT_NE(forth.output.find("3 packets received"), std::string::npos) << forth.output;
  testing::ToolRun back = ping(cluster, 2, "10.0.0.1", 3);
  EXPECT_EQ(back.exitCode, 0) << back.output;
  // Host 1 is the only way out of workload 1's namespace to host 2: its three requests and three replies
  // to workload 2's requests left through the underlay, encapsulated.
  EXPECT_GE(underlayTxPackets(cluster) - txBefore, 6u);

  // TCP across: two seconds of iperf3 from workload 1 to workload 2 (~0.5 Gbit/s on this host kind). It needs
  // the workloads' MTU at 1400: at 1500 a full-sized segment plus Geneve's 58 bytes does not fit the
  // underlay, and nothing arrives (tried: 0 bytes received).
  testing::ProcessSet servers;
  pid_t server = testing::spawnProcess(
      {"ip", "netns", "exec", cluster.workloadNetns(2), "iperf3", "--server", "--one-off", "--port", "5201"},
      dir_ / "iperf3-server.log", {}, testing::OutputMode::Append);
  ASSERT_GT(server, 0);
  servers.adopt(server);
  ASSERT_TRUE(testing::pollUntil(
      [&] {
        return !testing::runTool(
                    {"ip", "netns", "exec", cluster.workloadNetns(2), "ss", "-Hltn", "sport = :5201"})
                    .output.empty();
      },
      10s))
      << "iperf3 --server did not listen: " << testing::readFile(dir_ / "iperf3-server.log");
  testing::ToolRun transfer =
      testing::runTool({"ip", "netns", "exec", cluster.workloadNetns(1), "iperf3", "--client", "10.0.0.2",
                        "--port", "5201", "--time", "2", "--json", "--connect-timeout", "2000"},
                       {}, 30s);
  EXPECT_EQ(transfer.exitCode, 0) << transfer.output;
  Json report = Json::parse(transfer.output, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << transfer.output;
  const Json received = report.value("end", Json::object()).value("sum_received", Json::object());
  EXPECT_GE(received.value("bytes", uint64_t{0}), 1u << 20) << transfer.output;
  servers.stopAll();

  testing::ToolRun down = cluster.stop();
  EXPECT_EQ(down.exitCode, 0) << down.output;
  expectNothingLeft(cluster);
}

TEST_F(OvnClusterTest, GivingUpHalfwayStillLeavesNothing) {
  {
    OvnCluster cluster(kScript, dir_.path(), testPrefix());
    ASSERT_EQ(cluster.error(), "") << cluster.logs();
    ASSERT_FALSE(testing::processesMentioning(dir_.path()).empty());
    // Leaving the scope without stop(), as a failed ASSERT would: the destructor tears down.
  }
  // (a process signalled by the teardown may take a moment to go on a loaded host)
  EXPECT_TRUE(testing::pollUntil([&] { return testing::processesMentioning(dir_.path()).empty(); }, 5s));
  EXPECT_EQ(testing::processesMentioning(dir_.path()), std::vector<pid_t>{});
  for (const std::string ns : {"ovn-c", "ovn-u", "ovn-h1", "ovn-h2", "ovn-w1", "ovn-w2"}) {
    EXPECT_FALSE(std::filesystem::exists("/run/netns/" + testPrefix() + ns)) << ns << " left behind";
  }
}

// Issue 20's cluster has three hosts; when one dies, nothing of the others breaks.
TEST_F(OvnClusterTest, ThreeHostsAndWhenOneDiesTheOthersStillReachEachOther) {
  OvnCluster cluster(kScript, dir_.path(), testPrefix(), 3);
  ASSERT_EQ(cluster.error(), "") << cluster.logs();
  auto client = OvsdbClient::connect(cluster.northbound());
  ASSERT_TRUE(client) << client.error().message();
  std::vector<Json> ops;
  std::vector<Json> ports;
  for (int host = 1; host <= 3; ++host) {
    const std::string name = "w" + std::to_string(host);
    ops.push_back(insertOp(
        "Logical_Switch_Port",
        {{"name", name}, {"addresses", set({fmt::format("0a:00:00:00:00:0{} 10.0.0.{}", host, host)})}},
        name));
    ports.push_back(namedUuid(name));
  }
  ops.push_back(insertOp("Logical_Switch", {{"name", "ls0"}, {"ports", set(ports)}}));
  auto created = client->transact("OVN_Northbound", ops);
  ASSERT_TRUE(created) << created.error().message();

  for (const std::string to : {"10.0.0.2", "10.0.0.3"}) {
    EXPECT_TRUE(testing::pollUntil([&] { return ping(cluster, 1, to, 1).exitCode == 0; }, 30s))
        << "w1 does not reach " << to << "\n"
        << cluster.logs();
  }

  testing::ToolRun killed = cluster.killHost(3);
  ASSERT_EQ(killed.exitCode, 0) << killed.output;
  EXPECT_NE(ping(cluster, 1, "10.0.0.3", 1).exitCode, 0) << "host 3 is dead, yet its workload answers";
  testing::ToolRun survivors = ping(cluster, 1, "10.0.0.2", 3);
  EXPECT_EQ(survivors.exitCode, 0) << survivors.output;
  EXPECT_NE(survivors.output.find("3 packets received"), std::string::npos) << survivors.output;
  testing::ToolRun back = ping(cluster, 2, "10.0.0.1", 3);
  EXPECT_EQ(back.exitCode, 0) << back.output;

  testing::ToolRun down = cluster.stop();
  EXPECT_EQ(down.exitCode, 0) << down.output;
  expectNothingLeft(cluster);
}

}  // namespace
}  // namespace corral::net::ovsdb
