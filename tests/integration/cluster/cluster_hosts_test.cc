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
// changes (two of three members have quorum). Every corrald plans the internet gateways alike (host 1
// carries them, with "the outside": ovn_cluster.sh add-uplink): NAT out from another host, a public address
// and a published port in, their removal converged once on all three; a host with other gateway settings
// cannot join, nor start again as a member.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "net/datapath.h"
#include "net/vpc_ovn.h"
#include "tests/integration/cluster/etcd_cluster.h"
#include "tests/integration/cluster/ovn_cluster.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns_testing.h"

namespace corral::testing {
namespace {

using namespace std::chrono_literals;
using nlohmann::json;

const std::string kScript = CORRAL_SOURCE_DIR "/tests/integration/cluster/ovn_cluster.sh";
constexpr int kHosts = 3;
constexpr int kAliveTtlSeconds = 2;
constexpr int kApiPort = 7100;
// The host that meets the outside and carries every VPC's internet gateway, and its physical network.
constexpr int kUplinkHost = 1;
constexpr const char* kOutsideNetwork = "corral-uplink";

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
    ToolRun uplink = cluster_->addUplink(kUplinkHost, kOutsideNetwork);
    ASSERT_EQ(uplink.exitCode, 0) << uplink.output;
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

  // corrald's options on host `host`: OVN with that host's database, the gateway on `gatewayChassis`, and
  // (`cluster`) its cluster options.
  std::vector<std::string> args(int host, bool cluster,
                                const std::string& gatewayChassis = name(kUplinkHost)) const {
    std::vector<std::string> options{
        "--ovn-northbound",      cluster_->northbound(),
        "--ovs-database",        "unix:" + dir_.path() + "/ovn/h" + std::to_string(host) + "/conf.sock",
        "--ovn-gateway-chassis", gatewayChassis,
        "--ovn-outside-network", kOutsideNetwork};
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

  // h1 inits the cluster, h2 and h3 join it; host N in azN.
  void formCluster() {
    json init = at(1).must("POST", "/v1/cluster", json{{"az", "az1"}});
    const std::string token = init.value("token", "");
    ASSERT_FALSE(token.empty()) << init.dump();
    for (int host = 2; host <= kHosts; ++host) {
      at(host).must(
          "POST", "/v1/cluster/join",
          json{{"address", underlay(1) + ":2379"}, {"token", token}, {"az", "az" + std::to_string(host)}});
    }
  }

  // VPC lab (10.OCTET.0.0/16) with subnet sN (10.OCTET.N.0/24) in azN, the zone of host hN, made through h1.
  void labWithASubnetPerZone(int octet) {
    cliOk(1, {"vpc", "create", "lab", "--cidr", fmt::format("10.{}.0.0/16", octet)});
    for (int az = 1; az <= kHosts; ++az) {
      cliOk(1, {"subnet", "create", fmt::format("s{}", az), "--vpc", "lab", "--cidr",
                fmt::format("10.{}.{}.0/24", octet, az), "--az", fmt::format("az{}", az)});
    }
  }
  // A member's state in a group's answer (GET /v1/groups/NAME); "" when it is not listed.
  static std::string memberState(const json& group, const std::string& member) {
    for (const json& m : group["members"])
      if (m.value("name", "") == member) return m.value("state", "");
    return std::string();
  }

  TempDir dir_{"corral-t" + std::to_string(::getpid()) + "-ovn-hosts"};
  std::unique_ptr<OvnCluster> cluster_;
  std::vector<std::unique_ptr<TestDaemon>> daemons_;
};

TEST_F(ClusterOfHosts, AVpcSpansThreeHostsWithACorraldEach) {
  // The cluster: h1 inits, h2 and h3 join, one AZ each.
  formCluster();
  if (HasFatalFailure()) return;

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
        return at(2)
                   .cli({"subnet", "create", "s5", "--vpc", "lab", "--cidr", "10.20.5.0/24", "--az", "az2"})
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
  EXPECT_NE(at(1).logTail().find("its VPCs' OVN rows are written again"), std::string::npos)
      << at(1).logTail();

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
      [&] { return listedField(1, "x2", "state") == "lost" && listedField(1, "x4", "state") == "lost"; },
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

// A group kept by h1 spreads its members over the three AZs' hosts (launched through the others' peer API),
// counts them wherever they run, replaces one that stopped on another host there, and replaces the members
// of a host that died in a zone with a live host; any host answers for the group.
TEST_F(ClusterOfHosts, AGroupSpreadsOverTheZonesAndReplacesALostHostsMembers) {
  formCluster();
  if (HasFatalFailure()) return;
  labWithASubnetPerZone(21);
  if (HasFatalFailure()) return;
  cliOk(1, {"group", "create", "web", "--subnets", "s1,s2,s3", "--min", "3", "--max", "6", "--", "sleep",
            "1000"});
  // The group through h3 (kept by h1): three healthy members, one on each zone's host.
  auto group = [&](int through) { return at(through).call("GET", "/v1/groups/web").body; };
  auto hostOf = [&](const std::string& member) { return listedField(2, member, "host"); };
  ASSERT_TRUE(pollUntil([&] { return group(3).value("healthy", 0) == 3; }, 60s))
      << group(3).dump() << diagnosis();
  EXPECT_EQ(group(3).value("host", ""), "h1");
  EXPECT_EQ(hostOf("web-1"), "h1");
  EXPECT_EQ(hostOf("web-2"), "h2");
  EXPECT_EQ(hostOf("web-3"), "h3");
  CliRun show = at(2).cli({"group", "show", "web"});
  EXPECT_NE(show.out.find("web-2 (running, s2, on host h2)"), std::string::npos) << show;
  CliRun ls = at(3).cli({"group", "ls"});
  EXPECT_NE(ls.out.find("HOST"), std::string::npos) << ls;
  // One name in the whole cluster: another host refuses it, naming the holder; nothing made.
  Reply taken = at(3).call("POST", "/v1/groups",
                           json{{"name", "web"},
                                {"subnets", {"s3"}},
                                {"min", 1},
                                {"max", 2},
                                {"template", {{"image", "busybox"}, {"command", {"sleep", "1"}}}}});
  EXPECT_EQ(taken.status, 409) << taken.body.dump();
  EXPECT_EQ(taken.body["error"].value("field", ""), "name");
  EXPECT_NE(taken.body["error"].value("message", "").find("h1"), std::string::npos) << taken.body.dump();
  // A user's instance is never a member.
  Reply fake = at(1).call("POST", "/v1/instances",
                          json{{"name", "fake"},
                               {"image", "busybox"},
                               {"command", {"sleep", "1"}},
                               {"subnet", "s1"},
                               {"group", "web"}});
  EXPECT_EQ(fake.status, 400) << fake.body.dump();
  EXPECT_EQ(fake.body["error"].value("field", ""), "group");

  // A member on h2 stops (stopped through h3): h1 removes it there and launches its replacement in s2.
  cliOk(3, {"stop", "web-2"});
  ASSERT_TRUE(pollUntil([&] { return hostOf("web-4") == "h2" && !listed(1).contains("web-2"); }, 60s))
      << group(1).dump() << diagnosis();
  EXPECT_TRUE(pollUntil([&] { return group(2).value("healthy", 0) == 3; }, 30s)) << group(2).dump();

  // h3 dies: web-3 is lost; h1 launches its replacement in a zone with a live host, and the group stays
  // at three healthy members, web-3 listed lost on h3.
  at(3).kill9();
  ToolRun killed = cluster_->killHost(3);
  ASSERT_EQ(killed.exitCode, 0) << killed.output;
  ASSERT_TRUE(pollUntil(
      [&] {
        json now = group(2);
        return memberState(now, "web-3") == "lost" && now.value("healthy", 0) == 3 &&
               memberState(now, "web-5") == "running";
      },
      60s))
      << group(2).dump() << diagnosis();
  const std::string replacement = hostOf("web-5");
  EXPECT_TRUE(replacement == "h1" || replacement == "h2") << replacement;
  Reply events = at(2).call("GET", "/v1/groups/web/events");
  EXPECT_NE(events.body.dump().find("its host h3 is lost; replacing it"), std::string::npos)
      << events.body.dump();

  // Removed through h2 (forwarded to h1): its members on h1 and h2 go; the name is free again.
  CliRun removed = at(2).cli({"group", "rm", "--force", "web"});
  ASSERT_EQ(removed.code, 0) << removed << "\n==> h1\n" << at(1).logTail();
  std::map<std::string, json> left = listed(1);
  for (const char* member : {"web-1", "web-4", "web-5"}) EXPECT_FALSE(left.contains(member)) << member;
  EXPECT_EQ(at(2).call("GET", "/v1/groups/web").status, 404);
}

// A group kept by h3 (made through it) whose host dies: the first live host by name (h1) takes it over
// within the alive TTL and a pass, from the row h3 published in the group's claim; it replaces h3's lost
// member and keeps the group at three. h3 back (its corrald started again, its member still running): it
// forgets the group (listed once, on h1), its member counts again and the surplus scales in; the group
// removed through h3 takes every member.
TEST_F(ClusterOfHosts, AGroupWhoseHostIsLostIsTakenOverAndForgottenThereOnItsReturn) {
  formCluster();
  if (HasFatalFailure()) return;
  labWithASubnetPerZone(22);
  if (HasFatalFailure()) return;
  cliOk(3, {"group", "create", "api", "--subnets", "s1,s2,s3", "--min", "3", "--max", "6", "--", "sleep",
            "1000"});
  auto group = [&](int through) { return at(through).call("GET", "/v1/groups/api").body; };
  ASSERT_TRUE(pollUntil([&] { return group(1).value("healthy", 0) == 3; }, 60s))
      << group(1).dump() << diagnosis();
  EXPECT_EQ(group(1).value("host", ""), "h3");
  EXPECT_EQ(listedField(1, "api-3", "host"), "h3");

  // h3's corrald dies (with its etcd member); its member api-3 runs on, unreachable.
  at(3).kill9();
  ASSERT_TRUE(pollUntil(
      [&] {
        json now = group(2);
        return now.value("host", "") == "h1" && memberState(now, "api-3") == "lost" &&
               now.value("healthy", 0) == 3 && memberState(now, "api-4") == "running";
      },
      60s))
      << group(2).dump() << diagnosis();
  const std::string replacement = listedField(2, "api-4", "host");
  EXPECT_TRUE(replacement == "h1" || replacement == "h2") << replacement;
  const std::string events = at(2).call("GET", "/v1/groups/api/events").body.dump();
  EXPECT_NE(events.find("its host h3 is lost; this host keeps the group from now on"), std::string::npos)
      << events;
  EXPECT_NE(events.find("taken-over"), std::string::npos) << events;
  // Still one holder: scaling through h2 reaches h1's controller.
  cliOk(2, {"group", "scale", "api", "--desired", "3"});

  // h3 back: it forgets the group; api-3 counts again and the newest healthy member goes.
  ASSERT_TRUE(at(3).start()) << at(3).logTail();
  ASSERT_TRUE(pollUntil(
      [&] {
        json now = group(3);
        return now.value("host", "") == "h1" && memberState(now, "api-3") == "running" &&
               now.value("healthy", 0) == 3 && memberState(now, "api-4").empty();
      },
      60s))
      << group(3).dump() << diagnosis();
  Reply all = at(3).call("GET", "/v1/groups");
  ASSERT_EQ(all.status, 200) << all.body.dump();
  int listedApi = 0;
  for (const json& entry : all.body["groups"]) {
    if (entry.value("name", "") != "api") continue;
    ++listedApi;
    EXPECT_EQ(entry.value("host", ""), "h1") << entry.dump();
  }
  EXPECT_EQ(listedApi, 1) << all.body.dump(2);
  EXPECT_NE(at(3).log().find("another host took it over"), std::string::npos) << at(3).logTail();

  // Removed through h3 (forwarded to h1): every member goes, api-3 on h3 too.
  CliRun removed = at(3).cli({"group", "rm", "--force", "api"});
  ASSERT_EQ(removed.code, 0) << removed << "\n==> h1\n" << at(1).logTail();
  std::map<std::string, json> left = listed(2);
  for (const auto& [name, instance] : left) EXPECT_FALSE(name.starts_with("api-")) << name;
  EXPECT_EQ(at(1).call("GET", "/v1/groups/api").status, 404);
}

// The model log compacted (docs/cluster.md "The shared model"): with --cluster-model-compact 4, after a
// dozen changes through two hosts a snapshot replaces the entries every host applied; a host joining later
// loads it and holds the same VPCs, and the others still apply its changes. Leaving: refused naming
// `instances` while the host runs one in the cluster's VPC; without, the host forgets its copy (no VPCs),
// the VPC's OVN rows stay and the others go on changing and using it.
TEST_F(ClusterOfHosts, TheModelLogIsCompactedAndALeavingHostForgetsTheModel) {
  for (int host = 1; host <= kHosts; ++host) {
    at(host).stop();
    std::vector<std::string> options = args(host, true);
    options.insert(options.end(), {"--cluster-model-compact", "4"});
    at(host).setExtraArgs(options);
    ASSERT_TRUE(at(host).start()) << at(host).logTail();
  }
  json init = at(1).must("POST", "/v1/cluster", json{{"az", "az1"}});
  const std::string token = init.value("token", "");
  ASSERT_FALSE(token.empty()) << init.dump();
  at(2).must("POST", "/v1/cluster/join",
             json{{"address", underlay(1) + ":2379"}, {"token", token}, {"az", "az2"}});

  cliOk(1, {"vpc", "create", "lab", "--cidr", "10.20.0.0/16"});
  cliOk(2, {"subnet", "create", "s1", "--vpc", "lab", "--cidr", "10.20.1.0/24", "--az", "az1"});
  cliOk(1, {"subnet", "create", "s2", "--vpc", "lab", "--cidr", "10.20.2.0/24", "--az", "az2"});
  cliOk(2, {"sg", "create", "web", "--vpc", "lab"});
  for (int port = 8001; port <= 8006; ++port)
    cliOk(port % 2 + 1, {"sg", "rule", "add", "web", "--protocol", "tcp", "--port", std::to_string(port),
                         "--cidr", "10.20.0.0/16"});
  cliOk(1, {"rtb", "create", "quiet", "--vpc", "lab"});
  cliOk(2, {"nacl", "create", "strict", "--vpc", "lab"});

  // The log's keys, read with etcdctl in host 1's namespace as the cluster's root.
  auto modelKeys = [&] {
    ToolRun run = runTool({"ip", "netns", "exec", cluster_->hostNetns(1), kEtcdctlBinary,
                           "--endpoints=http://" + underlay(1) + ":2379", "--user", "root:" + token, "get",
                           "/corral/model/", "--prefix", "--keys-only"});
    return run.output;
  };
  ASSERT_TRUE(pollUntil(
      [&] {
        const std::string keys = modelKeys();
        return keys.find("/corral/model/snapshot") != std::string::npos &&
               keys.find("/corral/model/log/00000000000000000001") == std::string::npos;
      },
      15s))
      << modelKeys() << "\n"
      << at(1).logTail() << at(2).logTail();
  EXPECT_NE((at(1).logTail() + at(2).logTail()).find("compacted the log"), std::string::npos);

  // h3 joins now: it loads the snapshot, then the entries after it, and lists what the others list.
  cliOk(2, {"subnet", "create", "late", "--vpc", "lab", "--cidr", "10.20.9.0/24", "--az", "az2"});
  at(3).must("POST", "/v1/cluster/join",
             json{{"address", underlay(1) + ":2379"}, {"token", token}, {"az", "az3"}});
  for (const std::string path : {"/v1/vpcs", "/v1/subnets", "/v1/security-groups", "/v1/route-tables",
                                 "/v1/network-acls", "/v1/internet-gateways", "/v1/peerings"}) {
    Reply reference = at(1).call("GET", path);
    ASSERT_EQ(reference.status, 200) << path << ": " << reference.body.dump();
    Reply joined = at(3).call("GET", path);
    EXPECT_EQ(joined.body, reference.body) << path;
  }
  EXPECT_EQ(at(3).call("GET", "/v1/subnets?vpc=lab").body["subnets"].size(), 3u);
  EXPECT_NE(at(3).logTail().find("loading the snapshot through entry"), std::string::npos) << at(3).logTail();
  // The same drawing, but for the line that says which host draws it.
  auto drawnBy = [&](int host) {
    std::string out = at(host).cli({"net", "show", "lab"}).out;
    const std::string self = fmt::format("(this one is {})", name(host));
    if (auto at = out.find(self); at != std::string::npos) out.replace(at, self.size(), "(this one)");
    return out;
  };
  EXPECT_EQ(drawnBy(3), drawnBy(1));
  // Its changes reach the others.
  cliOk(3, {"subnet", "create", "s3", "--vpc", "lab", "--cidr", "10.20.3.0/24", "--az", "az3"});
  EXPECT_EQ(at(1).call("GET", "/v1/subnets/s3").status, 200);
  EXPECT_EQ(at(2).call("GET", "/v1/subnets/s3").status, 200);

  // h2 leaves: refused while it runs x2 in s2; once x2 is gone it forgets the cluster's VPCs.
  cliOk(2, {"run", "-d", "--name", "x2", "--subnet", "s2", "--", "sleep", "1000"});
  Reply refused = at(2).call("POST", "/v1/cluster/leave", json::object());
  ASSERT_EQ(refused.status, 409) << refused.body.dump()
                                 << at(2).call("GET", "/v1/instances?scope=host").body.dump()
                                 << at(2).logTail();
  EXPECT_EQ(refused.body["error"].value("field", ""), "instances") << refused.body.dump();
  EXPECT_NE(refused.body["error"].value("message", "").find("x2"), std::string::npos) << refused.body.dump();
  EXPECT_EQ(at(1).call("GET", "/v1/cluster/hosts").body["hosts"].size(), 3u) << "nothing changed";
  cliOk(2, {"rm", "-f", "x2"});
  at(2).must("POST", "/v1/cluster/leave", json::object(), 200);
  EXPECT_TRUE(at(2).call("GET", "/v1/vpcs").body["vpcs"].empty())
      << at(2).call("GET", "/v1/vpcs").body.dump();
  EXPECT_TRUE(at(2).call("GET", "/v1/subnets").body["subnets"].empty());
  const std::string switches = runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare",
                                        "--columns=name", "list", "Logical_Switch"})
                                   .output;
  for (const std::string subnet : {"s1", "s2", "s3", "late"})
    EXPECT_NE(switches.find("corral.subnet." + subnet), std::string::npos) << subnet << ": " << switches;
  EXPECT_EQ(at(1).call("GET", "/v1/cluster/hosts").body["hosts"].size(), 2u);

  // The others go on: a change through h1 reaches h3 and OVN, and their instances reach each other.
  cliOk(1, {"subnet", "create", "s4", "--vpc", "lab", "--cidr", "10.20.4.0/24", "--az", "az1"});
  EXPECT_EQ(at(3).call("GET", "/v1/subnets/s4").status, 200);
  cliOk(1, {"run", "-d", "--name", "y1", "--subnet", "s1", "--", "sleep", "1000"});
  cliOk(3, {"run", "-d", "--name", "y3", "--subnet", "s3", "--", "sleep", "1000"});
  EXPECT_TRUE(pingsWithin(1, "y1", addressOf("y3"))) << diagnosis();
  EXPECT_EQ(at(2).call("GET", "/v1/subnets/s4").status, 404) << "the host that left follows no more";

  // h2 started again alone on the cluster's northbound database: its reconcile removes rows of VPCs it
  // does not know only among a single host's (the cluster's are marked corral-scope=cluster), so lab's
  // rows stay; its own VPC's rows are unmarked and go when it deletes it.
  auto marked = [&](const std::string& vpc, const std::string& scope) {
    return runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare", "--columns=name", "find",
                    "Logical_Router", "external_ids:corral-vpc=" + vpc, "external_ids:corral-scope=" + scope})
        .output;
  };
  EXPECT_NE(marked("lab", "cluster"), "") << diagnosis();
  at(2).stop();
  at(2).setExtraArgs(args(2, false));
  ASSERT_TRUE(at(2).start()) << at(2).logTail();
  cliOk(2, {"vpc", "create", "solo", "--cidr", "10.40.0.0/16"});
  cliOk(2, {"subnet", "create", "solo1", "--vpc", "solo", "--cidr", "10.40.1.0/24"});
  EXPECT_NE(runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare", "--columns=name", "find",
                     "Logical_Router", "external_ids:corral-vpc=solo"})
                .output,
            "");
  EXPECT_EQ(marked("solo", "cluster"), "");
  const std::string after = runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare",
                                     "--columns=name", "list", "Logical_Switch"})
                                .output;
  for (const std::string subnet : {"s1", "s2", "s3", "s4", "late"})
    EXPECT_NE(after.find("corral.subnet." + subnet), std::string::npos) << subnet << ": " << after;
  EXPECT_TRUE(pingsWithin(1, "y1", addressOf("y3"))) << diagnosis();
  cliOk(2, {"subnet", "rm", "solo1"});
  cliOk(2, {"vpc", "rm", "solo"});
  EXPECT_EQ(runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare", "--columns=name", "find",
                     "Logical_Router", "external_ids:corral-vpc=solo"})
                .output,
            "");
  EXPECT_NE(marked("lab", "cluster"), "");
}

// The marked northbound rows of `vpc`, every column (uuids too): a row deleted and made again, or a column
// rewritten, shows as a difference between two reads.
std::string nbRowsOf(const OvnCluster& cluster, const std::string& vpc) {
  std::string rows;
  for (const std::string& table : net::ovnTableOrder()) {
    ToolRun found = runTool({"ovn-nbctl", "--db=" + cluster.northbound(), "--format=csv", "--data=bare",
                             "find", table, "external_ids:corral-vpc=" + vpc});
    rows += "== " + table + "\n" + found.output;
  }
  return rows;
}

TEST_F(ClusterOfHosts, NatOutAndPublishedPortsAcrossHosts) {
  json init = at(1).must("POST", "/v1/cluster", json{{"az", "az1"}});
  const std::string token = init.value("token", "");
  ASSERT_FALSE(token.empty()) << init.dump();
  auto join = [&](int host) {
    return at(host).call(
        "POST", "/v1/cluster/join",
        json{{"address", underlay(1) + ":2379"}, {"token", token}, {"az", "az" + std::to_string(host)}});
  };
  Reply joined = join(2);
  ASSERT_EQ(joined.status, 201) << joined.body.dump() << at(2).logTail();

  // Every host plans the gateway alike: h3 started with another chassis is refused, naming the option,
  // and nothing changed (two hosts, two members).
  at(3).stop();
  at(3).setExtraArgs(args(3, true, name(3)));
  ASSERT_TRUE(at(3).start()) << at(3).logTail();
  Reply refused = join(3);
  EXPECT_EQ(refused.status, 409) << refused.body.dump();
  EXPECT_EQ(refused.body["error"].value("field", ""), "ovn-gateway-chassis") << refused.body.dump();
  EXPECT_NE(refused.body["error"].value("message", "").find("\"h1\""), std::string::npos)
      << refused.body.dump();
  Reply hosts = at(1).call("GET", "/v1/cluster/hosts");
  EXPECT_EQ(hosts.body["hosts"].size(), 2u) << hosts.body.dump();
  EXPECT_EQ(hosts.body.value("members", 0), 2) << hosts.body.dump();
  at(3).stop();
  at(3).setExtraArgs(args(3, true));
  ASSERT_TRUE(at(3).start()) << at(3).logTail();
  joined = join(3);
  ASSERT_EQ(joined.status, 201) << joined.body.dump() << at(3).logTail();
  // A member started again with other settings does not start (its copy would rewrite the others' rows).
  at(2).stop();
  at(2).setExtraArgs(args(2, true, name(2)));
  EXPECT_FALSE(at(2).start()) << "h2 started with another gateway chassis";
  EXPECT_NE(at(2).log().find("--ovn-gateway-chassis is \"h2\" on this host but \"h1\" in the cluster"),
            std::string::npos)
      << at(2).logTail();
  at(2).setExtraArgs(args(2, true));
  ASSERT_TRUE(at(2).start()) << at(2).logTail();

  // VPC nat: pub routed to the internet gateway (its instances on h2), priv to a NAT gateway in pub (on
  // h3); group web lets tcp/80 in from anywhere. Made through all three hosts.
  at(1).must("POST", "/v1/vpcs", {{"name", "nat"}, {"cidr", "10.40.0.0/16"}});
  at(2).must("POST", "/v1/internet-gateways", {{"name", "door"}, {"vpc", "nat"}});
  at(3).must("POST", "/v1/route-tables", {{"name", "public"}, {"vpc", "nat"}});
  at(1).must("POST", "/v1/route-tables", {{"name", "private"}, {"vpc", "nat"}});
  at(2).must("POST", "/v1/route-tables/public/routes",
             {{"destination", "0.0.0.0/0"}, {"target_type", "internet_gateway"}, {"target", "door"}});
  at(3).must("POST", "/v1/subnets",
             {{"name", "pub"},
              {"vpc", "nat"},
              {"cidr", "10.40.1.0/24"},
              {"availability_zone", "az2"},
              {"route_table", "public"}});
  at(1).must("POST", "/v1/subnets",
             {{"name", "priv"},
              {"vpc", "nat"},
              {"cidr", "10.40.2.0/24"},
              {"availability_zone", "az3"},
              {"route_table", "private"}});
  at(2).must("POST", "/v1/nat-gateways", {{"name", "natgw"}, {"subnet", "pub"}});
  at(3).must("POST", "/v1/route-tables/private/routes",
             {{"destination", "0.0.0.0/0"}, {"target_type", "nat_gateway"}, {"target", "natgw"}});
  at(1).must("POST", "/v1/security-groups", {{"name", "web"}, {"vpc", "nat"}, {"description", "http"}});
  at(2).must("POST", "/v1/security-groups/web/rules",
             {{"direction", "ingress"},
              {"protocol", "tcp"},
              {"from_port", 80},
              {"to_port", 80},
              {"cidr", "0.0.0.0/0"}});
  ASSERT_FALSE(HasFailure());

  // p (h2): a public address, serving 80 (open to the world by web) and 81 (not). q (h3): private. w (h3):
  // private, its 80 published as the gateway's 8080.
  cliOk(1, {"run", "-d", "--name", "p", "--subnet", "pub", "--sg", "web", "--public-ip", "--", "sh", "-c",
            "nc -ll -p 81 -e /bin/echo p:81 & exec nc -ll -p 80 -e /bin/echo p:80"});
  cliOk(1, {"run", "-d", "--name", "q", "--subnet", "priv", "--", "sleep", "1000"});
  cliOk(2, {"run", "-d", "--name", "w", "--subnet", "priv", "--publish", "8080:80", "--", "nc", "-ll", "-p",
            "80", "-e", "/bin/echo", "w:80"});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(listedField(1, "p", "host"), "h2");
  EXPECT_EQ(listedField(1, "q", "host"), "h3");
  EXPECT_EQ(listedField(1, "w", "host"), "h3");
  Reply pShown = at(3).call("GET", "/v1/instances/p");
  const std::string publicAddress = pShown.body["spec"].value("public_address", "");
  ASSERT_TRUE(publicAddress.starts_with("100.64.")) << pShown.body.dump();

  // The outside (on h1): the transit's .1 (as corrald chooses it: the only VPC with a gateway), and the
  // public pool routed to the gateway's .2.
  const net::Cidr transit = *net::chooseTransit(net::UplinkSettings{}, "nat", {});
  const std::string outsideSide = net::Ipv4Address(transit.network().value() + 1).str();
  const std::string gatewaySide = net::Ipv4Address(transit.network().value() + 2).str();
  const std::string outside = cluster_->outsideNetns();
  for (const std::vector<std::string>& command :
       {std::vector<std::string>{"ip", "-n", outside, "addr", "add", outsideSide + "/30", "dev", "up0"},
        std::vector<std::string>{"ip", "-n", outside, "route", "add", "100.64.128.0/17", "via",
                                 gatewaySide}}) {
    ToolRun run = runTool(command);
    ASSERT_EQ(run.exitCode, 0) << run.output;
  }

  // Out: whom the outside's server saw when `from` connected to it ("" when nothing arrived).
  auto seenOutside = [&](const std::string& from, uint16_t port) {
    UniqueFd listener = testing::listenIn(outside, port);
    EXPECT_TRUE(listener) << "listen in " << outside;
    std::string peer;
    std::thread server([&] {
      if (!listener) return;
      UniqueFd connection = testing::acceptWithin(listener, 5s, &peer);
      if (connection) [[maybe_unused]]
        ssize_t n = ::write(connection.get(), "outside\n", 8);
    });
    Reply said =
        at(1).call("POST", "/v1/instances/" + from + "/exec",
                   {{"command", {"sh", "-c", fmt::format("nc -w 3 {} {} </dev/null", outsideSide, port)}}});
    server.join();
    return said.body.value("stdout", "") == "outside\n" ? peer : std::string();
  };
  // In: what address:port answered the outside (nullopt: no connection).
  auto fromOutside = [&](const std::string& address, uint16_t port) -> std::optional<std::string> {
    UniqueFd client = testing::tcpSocketIn(outside);
    if (!client || !testing::connectWithin(client, address, port, 2s).empty()) return std::nullopt;
    std::string text;
    char buffer[256];
    while (testing::waitForFd(client.get(), POLLIN, 2s)) {
      ssize_t n = ::read(client.get(), buffer, sizeof buffer);
      if (n <= 0) break;
      text.append(buffer, static_cast<size_t>(n));
    }
    return text;
  };

  // NAT out from h3 (not the gateway's host): the outside sees the NAT gateway's address, the gateway's .2.
  std::string seen;
  EXPECT_TRUE(pollUntil([&] { return !(seen = seenOutside("q", 9000)).empty(); }, 30s)) << diagnosis();
  EXPECT_EQ(seen, gatewaySide) << "the private subnet leaves as the gateway's address";
  EXPECT_TRUE(pingsWithin(2, "q", outsideSide, 10s)) << diagnosis();
  EXPECT_EQ(seenOutside("p", 9001), publicAddress) << "p leaves as its public address";

  // In: p's public address on the port its group opens, not on another; w's published port.
  EXPECT_TRUE(pollUntil([&] { return fromOutside(publicAddress, 80) == "p:80\n"; }, 20s)) << diagnosis();
  EXPECT_EQ(fromOutside(publicAddress, 81), std::nullopt) << "web lets only tcp/80 in";
  auto [served, said] = testing::execIn(at(1), "p", {"nc", "-w", "2", "127.0.0.1", "81"});
  EXPECT_EQ(served, 0);
  EXPECT_EQ(said, "p:81\n") << "p does serve 81, to itself";
  EXPECT_TRUE(pollUntil([&] { return fromOutside(gatewaySide, 8080) == "w:80\n"; }, 20s)) << diagnosis();
  EXPECT_EQ(fromOutside(gatewaySide, 8081), std::nullopt) << "only what is published";
  EXPECT_EQ(fromOutside(gatewaySide, 80), std::nullopt) << "nothing is published on the gateway's 80";

  // Once every host holds the same model, the rows stop changing: nobody rewrites another's plan.
  auto settled = [&](const std::string& what) {
    std::string first = nbRowsOf(*cluster_, "nat");
    EXPECT_NE(first.find("corral-vpc=nat"), std::string::npos) << first;
    std::this_thread::sleep_for(3s);
    std::string second = nbRowsOf(*cluster_, "nat");
    EXPECT_EQ(first, second) << what << ": the NB rows of vpc nat still change\n" << diagnosis();
  };
  auto everyHostLists = [&](size_t instances) {
    return pollUntil(
        [&] {
          for (int host = 1; host <= kHosts; ++host)
            if (listed(host).size() != instances) return false;
          return true;
        },
        15s);
  };
  ASSERT_TRUE(everyHostLists(3));
  settled("with p, q and w");

  // Removing converges on all three: w's published port goes, then p's public address.
  cliOk(3, {"rm", "-f", "w"});
  EXPECT_TRUE(pollUntil([&] { return !fromOutside(gatewaySide, 8080).has_value(); }, 10s));
  cliOk(1, {"rm", "-f", "p"});
  EXPECT_TRUE(pollUntil([&] { return !fromOutside(publicAddress, 80).has_value(); }, 10s));
  ASSERT_TRUE(everyHostLists(1));
  auto marked = [&](const std::string& table) {
    return runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare", "--columns=_uuid", "find", table,
                    "external_ids:corral-vpc=nat"})
        .output;
  };
  EXPECT_EQ(marked("Load_Balancer"), "") << "no published port is left";
  EXPECT_EQ(runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare", "--columns=_uuid", "find",
                     "NAT", "type=dnat_and_snat"})
                .output,
            "")
      << "no public address is left";
  EXPECT_EQ(seenOutside("q", 9002), gatewaySide) << "q still leaves through the NAT gateway";
  settled("with q only");

  // The gateways go: q has no way out, and no row of theirs is left.
  at(2).must("DELETE", "/v1/route-tables/private/routes/0.0.0.0/0", json(nullptr), 200);
  at(3).must("DELETE", "/v1/nat-gateways/natgw", json(nullptr), 200);
  at(1).must("DELETE", "/v1/route-tables/public/routes/0.0.0.0/0", json(nullptr), 200);
  at(2).must("DELETE", "/v1/internet-gateways/door", json(nullptr), 200);
  ASSERT_FALSE(HasFailure()) << diagnosis();
  EXPECT_TRUE(pollUntil(
      [&] {
        for (int host = 1; host <= kHosts; ++host) {
          Reply igws = at(host).call("GET", "/v1/internet-gateways");
          if (igws.status != 200 || !igws.body["internet_gateways"].empty()) return false;
        }
        return true;
      },
      15s));
  EXPECT_EQ(marked("NAT"), "");
  EXPECT_EQ(runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare", "--columns=_uuid", "find",
                     "Logical_Router_Port", "name=" + net::ovnGatewayPortName("nat")})
                .output,
            "");
  EXPECT_EQ(seenOutside("q", 9003), "") << "no gateway, no way out";
  settled("without gateways");
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
