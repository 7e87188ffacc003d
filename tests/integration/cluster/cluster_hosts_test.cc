// Three hosts with a corrald each (issue 20): the simulated OVN's three hosts (ovn_cluster.sh), each
// running a corrald in its namespace with its own socket, state and etcd member (on the host's underlay
// address), on the OVN backend with that host's Open_vSwitch database, and the peer API for the others.
// One cluster of them (init, join), AZs az1..az3. What one host changes of a VPC every host holds (the
// model log, daemon/model_log.h); `run --subnet` places the instance on the host of the subnet's AZ
// (forwarded through the peer API when asked elsewhere), `--host` chooses within the zone, an AZ without a
// host is refused; any host lists every host's instances and reaches any instance (exec forwarded); the
// VPC connectivity suite across hosts: across subnets through the VPC's router, the same subnet across
// hosts (L2 over Geneve), a security group deciding what gets in whoever changes it, no path between VPCs;
// a host killed: its instances are reported lost, the rest of the VPC keeps working and the model still
// changes (two of three members have quorum).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tests/integration/cluster/etcd_cluster.h"
#include "tests/integration/cluster/ovn_cluster.h"
#include "tests/integration/harness.h"

namespace corral::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kScript = CORRAL_SOURCE_DIR "/tests/integration/cluster/ovn_cluster.sh";
constexpr int kHosts = 3;
constexpr int kAliveTtlSeconds = 2;
constexpr int kApiPort = 7100;

std::string testPrefix() {
  return "corral-t" + std::to_string(::getpid()) + "-";
}

class ClusterOfHosts : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "needs root";
    for (const char* tool : {"/usr/sbin/ovs-vswitchd", "/usr/bin/ovn-controller", "/usr/bin/ovn-northd"}) {
      if (!std::filesystem::exists(tool)) GTEST_SKIP() << tool << " is missing: scripts/install-deps";
    }
    if (!std::filesystem::exists(kEtcdBinary)) GTEST_SKIP() << kEtcdBinary << " is missing";
    cluster_ = std::make_unique<OvnCluster>(kScript, dir_.path() + "/ovn", testPrefix(), kHosts);
    ASSERT_EQ(cluster_->error(), "") << cluster_->logs();
    for (int host = 1; host <= kHosts; ++host) {
      // t<PID> in the temp dir's name: scripts/sweep-test-leftovers finds a killed test's corralds.
      auto daemon =
          std::make_unique<TestDaemon>("t" + std::to_string(::getpid()) + "-clusterd", args(host, true));
      daemon->playHostIn(cluster_->hostNetns(host));
      ASSERT_TRUE(daemon->start()) << daemon->logTail();
      daemons_.push_back(std::move(daemon));
    }
  }

  void TearDown() override {
    for (auto& daemon : daemons_) {
      if (daemon->pid() > 0) daemon->removeEverything();
    }
    for (auto& daemon : daemons_) daemon->stop();
    // A TestDaemon ends by starting its corrald again to remove what is left: as a single host (a host
    // killed has no underlay any more: its ovs-vswitchd held it; and the others' members are gone).
    for (int host = 1; host <= static_cast<int>(daemons_.size()); ++host)
      at(host).setExtraArgs(args(host, false));
    daemons_.clear();
    if (cluster_) {
      ToolRun down = cluster_->stop();
      EXPECT_EQ(down.exitCode, 0) << down.output;
    }
  }

  // corrald's options on host `host`: OVN with that host's database, and (`cluster`) its cluster options.
  std::vector<std::string> args(int host, bool cluster) const {
    std::vector<std::string> options{"--ovn-northbound", cluster_->northbound(), "--ovs-database",
                                     "unix:" + dir_.path() + "/ovn/h" + std::to_string(host) + "/conf.sock"};
    if (cluster) {
      options.insert(options.end(), {"--cluster-address", underlay(host), "--host-name", name(host),
                                     "--cluster-alive-ttl", std::to_string(kAliveTtlSeconds), "--etcd",
                                     kEtcdBinary, "--cluster-api-port", std::to_string(kApiPort)});
    }
    return options;
  }
  static std::string name(int host) { return "h" + std::to_string(host); }
  static std::string underlay(int host) { return "10.250.0." + std::to_string(host); }
  TestDaemon& at(int host) { return *daemons_[host - 1]; }

  void cliOk(int host, const std::vector<std::string>& args) {
    CliRun run = at(host).cli(args);
    ASSERT_EQ(run.code, 0) << fmt::format("h{}: corral {}", host, fmt::join(args, " ")) << "\n"
                           << run << at(host).logTail();
  }
  // The instances host `host` lists, by name.
  std::map<std::string, json> listed(int host) {
    std::map<std::string, json> byName;
    Reply reply = at(host).call("GET", "/v1/instances");
    EXPECT_EQ(reply.status, 200) << reply.body.dump();
    if (reply.status != 200) return byName;
    for (const json& instance : reply.body["instances"]) byName[instance.value("name", "")] = instance;
    return byName;
  }
  // One field of an instance as host `host` lists it; "" when it does not list it.
  std::string listedField(int host, const std::string& instance, const std::string& field) {
    std::map<std::string, json> all = listed(host);
    auto it = all.find(instance);
    return it == all.end() || !it->second.contains(field) || !it->second[field].is_string()
               ? std::string()
               : it->second[field].get<std::string>();
  }
  std::string addressOf(const std::string& instance) {
    return at(1).call("GET", "/v1/instances/" + instance).body["spec"].value("ip", "");
  }
  // A ping from `instance` (through any host: exec is forwarded to the instance's host).
  bool ping(int through, const std::string& instance, const std::string& address) {
    Reply reply = at(through).call("POST", "/v1/instances/" + instance + "/exec",
                                   {{"command", {"ping", "-c", "1", "-W", "1", address}}});
    if (reply.status != 200) ADD_FAILURE() << "exec through h" << through << ": " << reply.body.dump();
    return reply.status == 200 && reply.body.value("exit_code", -1) == 0;
  }
  // What a failure message needs: the northbound rows and each corrald's log.
  std::string diagnosis() {
    std::string text = runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "show"}).output;
    text += runTool({"ovn-sbctl", "--db=" + cluster_->southbound(), "show"}).output;
    for (int host = 1; host <= kHosts; ++host) {
      if (at(host).pid() > 0) text += fmt::format("\n==> corrald h{}\n{}", host, at(host).logTail());
    }
    return text;
  }
  bool pingsWithin(int through, const std::string& instance, const std::string& address,
                   std::chrono::seconds timeout = 20s) {
    return pollUntil([&] { return ping(through, instance, address); }, timeout);
  }

  TempDir dir_{"corral-t" + std::to_string(::getpid()) + "-ovn-hosts"};
  std::unique_ptr<OvnCluster> cluster_;
  std::vector<std::unique_ptr<TestDaemon>> daemons_;
};

TEST_F(ClusterOfHosts, AVpcSpansThreeHostsWithACorraldEach) {
  // The cluster: h1 inits, h2 and h3 join, one AZ each.
  json init = at(1).must("POST", "/v1/cluster", json{{"az", "az1"}});
  const std::string token = init.value("token", "");
  ASSERT_FALSE(token.empty()) << init.dump();
  for (int host = 2; host <= kHosts; ++host) {
    at(host).must(
        "POST", "/v1/cluster/join",
        json{{"address", underlay(1) + ":2379"}, {"token", token}, {"az", "az" + std::to_string(host)}});
  }

  // The model: made through h2, held by every host.
  cliOk(2, {"vpc", "create", "lab", "--cidr", "10.20.0.0/16"});
  for (int az = 1; az <= kHosts; ++az) {
    cliOk(2, {"subnet", "create", fmt::format("s{}", az), "--vpc", "lab", "--cidr",
              fmt::format("10.20.{}.0/24", az), "--az", fmt::format("az{}", az)});
  }
  cliOk(3, {"subnet", "create", "nowhere", "--vpc", "lab", "--cidr", "10.20.9.0/24", "--az", "az9"});
  for (int host = 1; host <= kHosts; ++host) {
    Reply subnets = at(host).call("GET", "/v1/subnets?vpc=lab");
    ASSERT_EQ(subnets.status, 200) << subnets.body.dump();
    EXPECT_EQ(subnets.body["subnets"].size(), 4u) << "h" << host << ": " << subnets.body.dump();
  }

  // Placement: each subnet's instance on the host of its AZ, whichever host is asked.
  cliOk(1, {"run", "-d", "--name", "x1", "--subnet", "s1", "--", "sleep", "1000"});
  cliOk(1, {"run", "-d", "--name", "x2", "--subnet", "s2", "--", "sleep", "1000"});
  cliOk(2, {"run", "-d", "--name", "x3", "--subnet", "s3", "--", "sleep", "1000"});
  std::map<std::string, json> all = listed(3);
  ASSERT_EQ(all.size(), 3u) << at(3).call("GET", "/v1/instances").body.dump();
  EXPECT_EQ(all["x1"].value("host", ""), "h1");
  EXPECT_EQ(all["x2"].value("host", ""), "h2");
  EXPECT_EQ(all["x3"].value("host", ""), "h3");
  EXPECT_EQ(at(2).call("GET", "/v1/instances?scope=host").body["instances"].size(), 1u) << "h2's own: x2";
  CliRun ps = at(1).cli({"ps"});
  EXPECT_NE(ps.out.find("HOST"), std::string::npos) << ps;
  // Any host draws the VPC with every host's instances, each other host's named.
  CliRun show = at(3).cli({"net", "show", "lab"});
  EXPECT_NE(show.out.find("container x1 (on host h1)"), std::string::npos) << show;
  EXPECT_NE(show.out.find("container x3 (running)"), std::string::npos) << show;

  // Bad placements: nothing runs anywhere.
  Reply wrongZone = at(1).call("POST", "/v1/instances",
                               json{{"name", "bad1"},
                                    {"image", "busybox"},
                                    {"command", {"sleep", "1"}},
                                    {"subnet", "s1"},
                                    {"host", "h2"}});
  EXPECT_EQ(wrongZone.status, 400) << wrongZone.body.dump();
  EXPECT_EQ(wrongZone.body["error"].value("field", ""), "host");
  Reply noHost = at(2).call(
      "POST", "/v1/instances",
      json{{"name", "bad2"}, {"image", "busybox"}, {"command", {"sleep", "1"}}, {"subnet", "nowhere"}});
  EXPECT_EQ(noHost.status, 409) << noHost.body.dump();
  EXPECT_EQ(noHost.body["error"].value("field", ""), "subnet");
  EXPECT_NE(noHost.body["error"].value("message", "").find("az9"), std::string::npos) << noHost.body.dump();
  Reply taken = at(3).call("POST", "/v1/instances",
                           json{{"name", "x1"}, {"image", "busybox"}, {"command", {"sleep", "1"}}});
  EXPECT_EQ(taken.status, 409) << taken.body.dump();
  EXPECT_NE(taken.body["error"].value("message", "").find("h1"), std::string::npos) << taken.body.dump();
  EXPECT_EQ(listed(1).size(), 3u);

  // Across subnets and hosts through the VPC's router (the default group lets members in).
  const std::string x1 = addressOf("x1"), x2 = addressOf("x2"), x3 = addressOf("x3");
  ASSERT_TRUE(pingsWithin(3, "x1", x2)) << diagnosis();
  EXPECT_TRUE(ping(1, "x2", x3));
  EXPECT_TRUE(ping(2, "x3", x1));

  // A security group changed through one host decides on another: x4 (on h2) lets nothing in until a rule
  // made through h3 lets ICMP from the VPC in.
  cliOk(3, {"sg", "create", "closed", "--vpc", "lab"});
  cliOk(1, {"run", "-d", "--name", "x4", "--subnet", "s2", "--sg", "closed", "--", "sleep", "1000"});
  const std::string x4 = addressOf("x4");
  EXPECT_FALSE(ping(1, "x1", x4)) << "a group with no rule let a ping in";
  cliOk(3, {"sg", "rule", "add", "closed", "--protocol", "icmp", "--cidr", "10.20.0.0/16"});
  EXPECT_TRUE(pingsWithin(1, "x1", x4, 10s)) << "the rule made through h3 opens x4 on h2";

  // The same subnet across hosts (L2 over Geneve): h3 moves to az2, and x5 runs there in s2 (x2 is on h2).
  cliOk(1, {"cluster", "set", "h3", "--az", "az2"});
  cliOk(1, {"run", "-d", "--name", "x5", "--subnet", "s2", "--host", "h3", "--", "sleep", "1000"});
  EXPECT_EQ(listedField(2, "x5", "host"), "h3");
  EXPECT_TRUE(pingsWithin(2, "x5", x2)) << cluster_->logs();

  // h1's corrald dies (its etcd member with it) while h2 changes the model and runs an instance; started
  // again, h1 writes no row until its copy caught up: the others' ports are never deleted and re-made
  // (their rows keep their uuids), and h1 holds what changed meanwhile.
  auto uuidOf = [&](const std::string& table, const std::string& name) {
    return runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare", "--columns=_uuid", "find", table,
                    "name=" + name})
        .output;
  };
  const std::string x2Port = uuidOf("Logical_Switch_Port", "corral.nic.x2");
  ASSERT_FALSE(x2Port.empty());
  at(1).kill9();
  // h1's member may have been etcd's leader: the others elect one (a change meanwhile: "no quorum").
  ASSERT_TRUE(pollUntil(
      [&] {
        return at(2).cli({"subnet", "create", "s5", "--vpc", "lab", "--cidr", "10.20.5.0/24", "--az", "az2"})
                   .code == 0;
      },
      15s))
      << at(2).logTail();
  cliOk(2, {"run", "-d", "--name", "z2", "--subnet", "s5", "--", "sleep", "1000"});
  const std::string z2Port = uuidOf("Logical_Switch_Port", "corral.nic.z2");
  const std::string s5Switch = uuidOf("Logical_Switch", "corral.subnet.s5");
  ASSERT_FALSE(z2Port.empty() || s5Switch.empty()) << diagnosis();
  ASSERT_TRUE(at(1).start()) << at(1).logTail();
  EXPECT_TRUE(pollUntil([&] { return at(1).call("GET", "/v1/subnets/s5").status == 200; }, 15s))
      << at(1).logTail();
  EXPECT_TRUE(pingsWithin(1, "x1", addressOf("z2"))) << diagnosis();
  EXPECT_EQ(uuidOf("Logical_Switch_Port", "corral.nic.x2"), x2Port) << at(1).logTail();
  EXPECT_EQ(uuidOf("Logical_Switch_Port", "corral.nic.z2"), z2Port) << at(1).logTail();
  EXPECT_EQ(uuidOf("Logical_Switch", "corral.subnet.s5"), s5Switch) << at(1).logTail();
  EXPECT_NE(at(1).logTail().find("its VPCs' OVN rows are written again"), std::string::npos) << at(1).logTail();

  // Another VPC: never a path to lab.
  cliOk(1, {"vpc", "create", "other", "--cidr", "10.30.0.0/16"});
  cliOk(1, {"subnet", "create", "o1", "--vpc", "other", "--cidr", "10.30.1.0/24", "--az", "az1"});
  cliOk(2, {"run", "-d", "--name", "y1", "--subnet", "o1", "--", "sleep", "1000"});
  EXPECT_EQ(listedField(1, "y1", "host"), "h1");
  EXPECT_FALSE(ping(1, "y1", x2)) << "a path between two VPCs";
  EXPECT_FALSE(ping(1, "y1", x1));

  // h2 dies (its corrald with its etcd member, and its OVS/OVN processes): its instances are lost, seen
  // from the others within the TTL and an election; the rest of the VPC works and the model still changes.
  at(2).kill9();
  ToolRun killed = cluster_->killHost(2);
  ASSERT_EQ(killed.exitCode, 0) << killed.output;
  EXPECT_TRUE(pollUntil(
      [&] {
        return listedField(1, "x2", "state") == "lost" && listedField(1, "x4", "state") == "lost";
      },
      15s))
      << at(1).call("GET", "/v1/instances").body.dump();
  EXPECT_EQ(listedField(3, "x2", "host"), "h2");
  EXPECT_TRUE(ping(3, "x1", x3)) << "h1 and h3 still reach each other";
  EXPECT_TRUE(ping(1, "x5", x1));
  cliOk(3, {"subnet", "create", "s4", "--vpc", "lab", "--cidr", "10.20.4.0/24", "--az", "az1"});
  Reply afterLoss = at(1).call("GET", "/v1/subnets/s4");
  EXPECT_EQ(afterLoss.status, 200) << afterLoss.body.dump();

  // Removing through another host: forwarded to the instance's.
  cliOk(3, {"rm", "-f", "x1"});
  EXPECT_FALSE(listed(1).contains("x1"));
}

// ---- Hosts, AZs and tunnels (net show, cluster ls, the dashboard) ------------------------------------

// The remote_ip of each geneve Interface in host `host`'s Open_vSwitch database, as ovs-vsctl (the oracle)
// reads it, by Interface name.
std::map<std::string, std::string> ovsGeneveTunnels(const std::string& ovnDir, int host) {
  ToolRun run = runTool({"ovs-vsctl", fmt::format("--db=unix:{}/h{}/conf.sock", ovnDir, host),
                         "--format=json", "--columns=name,options", "find", "Interface", "type=geneve"});
  std::map<std::string, std::string> tunnels;
  json table = json::parse(run.output, nullptr, false);
  if (run.exitCode != 0 || !table.is_object()) {
    ADD_FAILURE() << "ovs-vsctl on h" << host << ": " << run.output;
    return tunnels;
  }
  for (const json& row : table["data"]) {
    // [name, ["map", [[key, value], ...]]]
    for (const json& option : row[1][1])
      if (option[0] == "remote_ip") tunnels[row[0].get<std::string>()] = option[1].get<std::string>();
  }
  return tunnels;
}

// Host `name` of a GET /v1/cluster/hosts answer ({} when absent).
json hostIn(const json& answer, const std::string& name) {
  if (!answer.is_object()) return json::object();
  for (const json& host : answer.value("hosts", json::array()))
    if (host.value("name", "") == name) return host;
  return json::object();
}

// The tunnel of `host` (an entry of the answer) to `remote`, {} when it has none.
json tunnelOf(const json& host, const std::string& remote) {
  for (const json& tunnel : host.value("tunnels", json::array()))
    if (tunnel.value("remote_host", json()) == remote) return tunnel;
  return json::object();
}

TEST_F(ClusterOfHosts, HostsAzsAndTunnelsAreDrawnAsEachHostsOvsHasThem) {
  // h1 in az1, h2 and h3 in az2: one zone with two hosts.
  json init = at(1).must("POST", "/v1/cluster", json{{"az", "az1"}});
  const std::string token = init.value("token", "");
  ASSERT_FALSE(token.empty()) << init.dump();
  for (int host = 2; host <= kHosts; ++host)
    at(host).must("POST", "/v1/cluster/join",
                  json{{"address", underlay(1) + ":2379"}, {"token", token}, {"az", "az2"}});

  // Every host's tunnels up, as any host answers (each host's published ones included).
  const std::string ovnDir = dir_.path() + "/ovn";
  auto allUp = [&](int through) {
    Reply reply = at(through).call("GET", "/v1/cluster/hosts");
    if (reply.status != 200) return false;
    for (int a = 1; a <= kHosts; ++a)
      for (int b = 1; b <= kHosts; ++b)
        if (a != b && tunnelOf(hostIn(reply.body, name(a)), name(b)).value("state", "") != "up") return false;
    return true;
  };
  ASSERT_TRUE(pollUntil([&] { return allUp(2); }, 20s))
      << at(2).call("GET", "/v1/cluster/hosts").body.dump(2) << diagnosis();

  CliRun ls = at(1).cli({"cluster", "ls"});
  EXPECT_NE(ls.out.find("TUNNELS"), std::string::npos) << ls;
  EXPECT_NE(ls.out.find("2 up"), std::string::npos) << ls;

  // What each host reports is what ovs-vsctl shows in that host's database: one geneve Interface per other
  // chassis, its remote_ip the other host's encap IP; the chassis is the host's system-id.
  const json hosts = at(3).must("GET", "/v1/cluster/hosts", nullptr, 200);
  for (int host = 1; host <= kHosts; ++host) {
    const json entry = hostIn(hosts, name(host));
    ASSERT_TRUE(entry.contains("name")) << hosts.dump(2);
    EXPECT_EQ(entry.value("chassis", ""), name(host));
    EXPECT_EQ(entry.value("encap_ip", ""), underlay(host));
    std::map<std::string, std::string> reported;
    for (const json& tunnel : entry["tunnels"]) {
      EXPECT_EQ(tunnel.value("type", ""), "geneve") << tunnel.dump();
      EXPECT_EQ(tunnel.value("local_ip", ""), underlay(host)) << tunnel.dump();
      reported[tunnel.value("port", "")] = tunnel.value("remote_ip", "");
      const std::string remote = tunnel.value("remote_host", "");
      EXPECT_EQ(tunnel.value("remote_chassis", ""), remote)
          << "from the Port's ovn-chassis-id: " << tunnel.dump();
      if (remote.size() > 1) {
        EXPECT_EQ(tunnel.value("remote_ip", ""), underlay(std::stoi(remote.substr(1)))) << tunnel.dump();
      }
    }
    EXPECT_EQ(reported, ovsGeneveTunnels(ovnDir, host)) << "h" << host << ": " << entry.dump(2);
    EXPECT_EQ(reported.size(), static_cast<size_t>(kHosts - 1));
  }

  // A VPC with a floor in each zone and an instance on h1 and on h2: net show (through h3) groups the floors
  // and hosts by AZ, names each host's instances and draws the tunnels between the hosts.
  cliOk(1, {"vpc", "create", "lab", "--cidr", "10.20.0.0/16"});
  cliOk(1, {"subnet", "create", "s1", "--vpc", "lab", "--cidr", "10.20.1.0/24", "--az", "az1"});
  cliOk(1, {"subnet", "create", "s2", "--vpc", "lab", "--cidr", "10.20.2.0/24", "--az", "az2"});
  cliOk(3, {"run", "-d", "--name", "x1", "--subnet", "s1", "--", "sleep", "1000"});
  cliOk(3, {"run", "-d", "--name", "x2", "--subnet", "s2", "--host", "h2", "--", "sleep", "1000"});
  CliRun show = at(3).cli({"net", "show", "lab"});
  ASSERT_EQ(show.code, 0) << show;
  for (const std::string& line : {
           std::string("cluster: 3 hosts (this one is h3)"),
           std::string("az1: floors s1"),
           std::string("az2: floors s2"),
           std::string("host h1 (chassis h1, 10.250.0.1): x1"),
           std::string("host h2 (chassis h2, 10.250.0.2): x2"),
           std::string("host h3 (chassis h3, 10.250.0.3): no instances of this VPC"),
           std::string("h1 (az1) ⇄ h2 (az2) geneve 10.250.0.1 ↔ 10.250.0.2 up"),
           std::string("h2 (az2) ⇄ h3 (az2) geneve 10.250.0.2 ↔ 10.250.0.3 up"),
       })
    EXPECT_NE(show.out.find(line), std::string::npos) << line << "\n" << show;
  Reply topology = at(1).call("GET", "/v1/vpcs/lab/topology");
  ASSERT_EQ(topology.status, 200) << topology.body.dump();
  EXPECT_EQ(topology.body["cluster"]["hosts"].size(), 3u) << topology.body["cluster"].dump(2);

  // The dashboard's view (what the page fetches) carries the hosts, their AZs, instances and tunnels.
  auto dashboardShows = [&](int through, const std::string& host, const std::string& state) {
    Reply view = at(through).call("GET", "/v1/dashboard");
    if (view.status != 200 || !view.body.contains("cluster")) return false;
    const json h = hostIn(view.body["cluster"], host);
    return h.value("az", "") == (host == "h1" ? "az1" : "az2") &&
           tunnelOf(h, host == "h1" ? "h3" : "h1").value("state", "") == state;
  };
  ASSERT_TRUE(pollUntil([&] { return dashboardShows(1, "h1", "up") && dashboardShows(1, "h2", "up"); }, 10s))
      << at(1).call("GET", "/v1/dashboard").body.value("cluster", json()).dump(2);
  const json view = at(1).must("GET", "/v1/dashboard", nullptr, 200);
  EXPECT_EQ(view["cluster"].value("local_host", ""), "h1");
  EXPECT_EQ(hostIn(view["cluster"], "h1")["instances"], json::array({"x1"})) << view["cluster"].dump(2);
  EXPECT_EQ(hostIn(view["cluster"], "h2")["instances"], json::array({"x2"})) << view["cluster"].dump(2);

  // h3 dies (corrald, etcd member, OVS and ovn-controller): h1's Interface to it stays in h1's database, and
  // h1 and h2 show that tunnel down because h3 is lost; h3's own as last read, unknown; h1 ⇄ h2 stays up.
  at(3).kill9();
  ToolRun killed = cluster_->killHost(3);
  ASSERT_EQ(killed.exitCode, 0) << killed.output;
  auto lostSeen = [&](int through) {
    Reply reply = at(through).call("GET", "/v1/cluster/hosts");
    if (reply.status != 200) return false;
    const json h3 = hostIn(reply.body, "h3");
    return h3.value("health", "") == "lost" &&
           tunnelOf(hostIn(reply.body, "h1"), "h3").value("state", "") == "down" &&
           tunnelOf(hostIn(reply.body, "h2"), "h3").value("state", "") == "down";
  };
  ASSERT_TRUE(pollUntil([&] { return lostSeen(1) && lostSeen(2); }, 20s))
      << at(1).call("GET", "/v1/cluster/hosts").body.dump(2);
  const json after = at(2).must("GET", "/v1/cluster/hosts", nullptr, 200);
  EXPECT_EQ(tunnelOf(hostIn(after, "h1"), "h3").value("reason", ""), "host h3 is lost") << after.dump(2);
  EXPECT_EQ(tunnelOf(hostIn(after, "h1"), "h2").value("state", ""), "up") << after.dump(2);
  for (const json& tunnel : hostIn(after, "h3")["tunnels"]) EXPECT_EQ(tunnel.value("state", ""), "unknown");
  std::map<std::string, std::string> h1Tunnels = ovsGeneveTunnels(ovnDir, 1);
  EXPECT_TRUE(std::any_of(h1Tunnels.begin(), h1Tunnels.end(), [&](const auto& entry) {
    return entry.second == underlay(3);
  })) << "h1's interface to h3 is still there: its state comes from h3's health";
  CliRun lsLost = at(1).cli({"cluster", "ls"});
  EXPECT_NE(lsLost.out.find("1 up, 1 down"), std::string::npos) << lsLost;
  CliRun lost = at(1).cli({"net", "show", "lab"});
  EXPECT_NE(lost.out.find("host h3 lost (chassis h3, 10.250.0.3)"), std::string::npos) << lost;
  EXPECT_NE(lost.out.find("h1 (az1) ⇄ h3 (az2) geneve 10.250.0.1 ↔ 10.250.0.3 down (h1: host h3 is lost"),
            std::string::npos)
      << lost;
  EXPECT_NE(lost.out.find("h1 (az1) ⇄ h2 (az2) geneve 10.250.0.1 ↔ 10.250.0.2 up"), std::string::npos)
      << lost;
  EXPECT_TRUE(pollUntil([&] { return dashboardShows(1, "h1", "down"); }, 10s))
      << at(1).call("GET", "/v1/dashboard").body.value("cluster", json()).dump(2);
}

}  // namespace
}  // namespace corral::testing
