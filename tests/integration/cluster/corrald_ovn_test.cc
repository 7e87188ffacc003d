// corrald on the OVN backend (corrald --ovn-northbound, --ovs-database; daemon/ovn_fabric.h), on host 1 of
// the simulated OVN (ovn_cluster.sh): a VPC made through corral becomes OVN's rows, two containers on a
// subnet get br-int ports bound by host 1's ovn-controller and reach each other, a container reaches a
// workload on host 2 over Geneve while its security group keeps that workload from opening a connection to
// it, a removed container's port and logical port go, a deleted VPC leaves no row, what the backend does
// not carry yet is refused naming why, and a restarted corrald takes away a port it no longer owns. A VM's
// tap is a system port of br-int the same way, with the guest's MTU at 1400, and so is a warm VM's, restored
// from a snapshot made with that MTU; two peered VPCs' containers reach each other; a load balancer in
// front of two containers answers.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "tests/integration/cluster/ovn_cluster.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns_testing.h"

namespace corral {
namespace {

using namespace std::chrono_literals;

const std::string kScript = CORRAL_SOURCE_DIR "/tests/integration/cluster/ovn_cluster.sh";

std::string testPrefix() {
  return "corral-t" + std::to_string(::getpid()) + "-";
}

class CorraldOnOvn : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::requireRoot()) GTEST_SKIP() << "needs root";
    for (const char* tool : {"/usr/sbin/ovs-vswitchd", "/usr/bin/ovn-controller", "/usr/bin/ovn-northd"}) {
      if (!std::filesystem::exists(tool)) GTEST_SKIP() << tool << " is missing: scripts/install-deps";
    }
    cluster_ = std::make_unique<testing::OvnCluster>(kScript, dir_.path() + "/ovn", testPrefix());
    ASSERT_EQ(cluster_->error(), "") << cluster_->logs();
    daemon_.playHostIn(cluster_->hostNetns(1));
    daemon_.setExtraArgs({"--ovn-northbound", cluster_->northbound(), "--ovs-database", hostDatabase(1),
                          "--ovn-southbound", cluster_->southbound(), "--accelerator", "tcg"});
    ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
  }

  void TearDown() override {
    if (daemon_.pid() > 0) {
      daemon_.removeEverything();
      daemon_.stop();
    }
    if (cluster_) {
      testing::ToolRun down = cluster_->stop();
      EXPECT_EQ(down.exitCode, 0) << down.output;
    }
  }

  std::string hostDatabase(int host) const {
    return "unix:" + dir_.path() + "/ovn/h" + std::to_string(host) + "/conf.sock";
  }
  std::string nbctl(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"ovn-nbctl", "--db=" + cluster_->northbound()};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::runTool(argv).output;
  }
  std::string vsctl(int host, const std::vector<std::string>& args) {
    std::vector<std::string> argv = {"ovs-vsctl", "--db=" + hostDatabase(host)};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::runTool(argv).output;
  }
  bool pingFrom(const std::string& instance, const std::string& address) {
    auto [code, output] = testing::execIn(daemon_, instance, {"ping", "-c", "1", "-W", "1", address});
    return code == 0;
  }
  std::string addressOf(const std::string& instance) {
    return daemon_.call("GET", "/v1/instances/" + instance).body["spec"].value("ip", "");
  }
  void cliOk(const std::vector<std::string>& args) {
    testing::CliRun run = daemon_.cli(args);
    ASSERT_EQ(run.code, 0) << fmt::format("corral {}", fmt::join(args, " ")) << "\n" << run;
  }

  // A mebibyte of TCP from `instance` (a VM) to a listener on host 2's workload at `address`: full-sized
  // segments must fit the tunnel.
  void expectBulkTcpToWorkload2(const std::string& instance, const std::string& address) {
    constexpr size_t kBytes = 1 << 20;
    UniqueFd listener = testing::listenIn(cluster_->workloadNetns(2), 5001);
    ASSERT_TRUE(listener);
    auto [sent, said] = testing::execIn(
        daemon_, instance,
        {"sh", "-c",
         fmt::format("setsid sh -c 'head -c {} /dev/zero | nc {} 5001' </dev/null >/dev/null 2>&1 &", kBytes,
                     address)});
    ASSERT_EQ(sent, 0) << said;
    UniqueFd server = testing::acceptWithin(listener, 10s);
    ASSERT_TRUE(server) << instance << "'s connection did not arrive";
    size_t received = 0;
    char buffer[65536];
    auto until = std::chrono::steady_clock::now() + 30s;
    while (received < kBytes && std::chrono::steady_clock::now() < until) {
      if (!testing::waitForFd(server.get(), POLLIN, 1s)) continue;
      ssize_t n = ::read(server.get(), buffer, sizeof buffer);
      if (n <= 0) break;
      received += static_cast<size_t>(n);
    }
    EXPECT_EQ(received, kBytes) << instance << "'s bulk TCP across the underlay stalled";
  }
  // A VM of the busybox image in `subnet`, waited for until its guest is ready.
  nlohmann::json runVmReady(const std::string& name, const std::string& subnet, bool warm = false) {
    testing::Reply created = daemon_.call("POST", "/v1/instances",
                                          {{"name", name},
                                           {"kind", "vm"},
                                           {"image", "busybox"},
                                           {"memory", "128M"},
                                           {"subnet", subnet},
                                           {"warm", warm}});
    EXPECT_EQ(created.status, 201) << created.body.dump() << "\n" << daemon_.logTail();
    nlohmann::json vm = daemon_.waitWhile(name, "starting");
    EXPECT_EQ(vm.value("state", ""), "running") << vm.dump(2) << "\n" << daemon_.logTail();
    return vm;
  }
  // The VM's br-int port: a system port (type "") with its logical port's iface-id, marked as corrald's,
  // made by ovs-vswitchd; the guest's eth0 at Geneve's MTU.
  void expectVmPort(const std::string& name) {
    const std::string iface = vsctl(1, {"--columns=name,type,ofport,external_ids", "find", "Interface",
                                        "external_ids:iface-id=corral.nic." + name});
    EXPECT_NE(iface.find("corral-instance=" + name), std::string::npos) << iface << vsctl(1, {"show"});
    EXPECT_NE(iface.find("type                : \"\""), std::string::npos) << iface;
    EXPECT_EQ(iface.find("ofport              : -1"), std::string::npos) << iface;
    auto [mtuCode, mtu] = testing::execIn(daemon_, name, {"cat", "/sys/class/net/eth0/mtu"});
    EXPECT_EQ(mtuCode, 0) << mtu;
    EXPECT_EQ(mtu, "1400\n") << "virtio-net's host_mtu gives the guest Geneve's MTU";
  }
  // Two warm VMs of `engine` in a new VPC: the first makes the snapshot (its template booted with OVN's NIC:
  // MTU 1400, offloads off), the second only restores it; each is a br-int port with eth0 at 1400 (the MTU
  // the template's guest read at boot) and reaches a container of its subnet and host 2's workload over
  // Geneve, ping and TCP; removed, its br-int port and logical port go. The snapshot lists OVN's NIC.
  void expectWarmVmsOnOvn(const std::string& engine, const std::string& octet) {
    const std::string vpc = "w" + engine, subnet = "ws" + engine;
    const std::string workload = "10." + octet + ".1.200";
    cliOk({"vpc", "create", vpc, "--cidr", "10." + octet + ".0.0/16"});
    cliOk({"subnet", "create", subnet, "--vpc", vpc, "--cidr", "10." + octet + ".1.0/24"});
    cliOk({"run", "-d", "--name", "c1", "--subnet", subnet, "--", "sleep", "1000"});
    const std::string c1 = addressOf("c1");
    addWorkload2(subnet, workload);
    for (const std::string name : {"wv1", "wv2"}) {
      SCOPED_TRACE(name);
      nlohmann::json vm = runVmReady(name, subnet, /*warm=*/true);
      ASSERT_EQ(vm.value("state", ""), "running");
      EXPECT_EQ(vm["boot"].value("engine", ""), engine) << vm.dump();
      EXPECT_EQ(vm["boot"].value("warm", false), true) << vm.dump();
      EXPECT_EQ(vm["boot"]["domain_steps"].value("snapshot_made", true), name == "wv1")
          << "the first run makes the snapshot, the second restores it: " << vm.dump();
      expectVmPort(name);
      EXPECT_NE(nbctl({"lsp-list", "corral.subnet." + subnet}).find("corral.nic." + name), std::string::npos);
      const std::string address = addressOf(name);
      ASSERT_TRUE(testing::pollUntil([&] { return pingFrom(name, c1); }, 20s)) << cluster_->logs();
      EXPECT_TRUE(pingFrom("c1", address));
      ASSERT_TRUE(testing::pollUntil([&] { return pingFrom(name, workload); }, 20s)) << cluster_->logs();
      expectBulkTcpToWorkload2(name, workload);
    }
    const nlohmann::json snapshots = daemon_.call("GET", "/v1/vm-snapshots").body["snapshots"];
    ASSERT_EQ(snapshots.size(), 1u) << snapshots.dump();
    EXPECT_EQ(snapshots[0].value("nic_mtu", 0), 1400) << snapshots.dump();
    EXPECT_EQ(snapshots[0].value("nic_offloads", true), false) << snapshots.dump();

    for (const std::string name : {"wv2", "wv1"}) {
      cliOk({"rm", "-f", name});
      EXPECT_EQ(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=corral.nic." + name}),
                "");
      EXPECT_EQ(nbctl({"lsp-list", "corral.subnet." + subnet}).find("corral.nic." + name), std::string::npos);
    }
    cliOk({"rm", "-f", "c1"});
    nbctl({"lsp-del", "w2"});
    cliOk({"subnet", "rm", subnet});
    cliOk({"vpc", "rm", vpc});
  }
  void addWorkload2(const std::string& subnet, const std::string& address) {
    testing::runTool({"ip", "-n", cluster_->workloadNetns(2), "addr", "add", address + "/24", "dev", "w2"});
    nbctl({"lsp-add", "corral.subnet." + subnet, "w2", "--", "lsp-set-addresses", "w2",
           "0a:00:00:00:00:02 " + address});
  }

  testing::TempDir dir_{"corral-t" + std::to_string(::getpid()) + "-ovnd"};
  std::unique_ptr<testing::OvnCluster> cluster_;
  testing::TestDaemon daemon_{"ovn"};
};

TEST_F(CorraldOnOvn, AVpcAndItsContainersLiveInOvnAcrossTheSimulatedHosts) {
  cliOk({"vpc", "create", "ovpc", "--cidr", "10.70.0.0/16"});
  cliOk({"subnet", "create", "oa", "--vpc", "ovpc", "--cidr", "10.70.1.0/24"});
  EXPECT_NE(nbctl({"lr-list"}).find("corral.vpc.ovpc"), std::string::npos) << nbctl({"show"});
  EXPECT_NE(nbctl({"ls-list"}).find("corral.subnet.oa"), std::string::npos) << nbctl({"show"});
  EXPECT_TRUE(std::filesystem::exists("/run/netns/" + testing::testNetnsPrefix() + "vpc-ovpc") == false)
      << "no VPC namespace on the OVN backend";

  cliOk({"run", "-d", "--name", "c1", "--subnet", "oa", "--", "sleep", "1000"});
  cliOk({"run", "-d", "--name", "c2", "--subnet", "oa", "--", "sleep", "1000"});
  const std::string c1 = addressOf("c1"), c2 = addressOf("c2");
  ASSERT_FALSE(c1.empty() || c2.empty()) << daemon_.instances().dump();
  EXPECT_NE(nbctl({"lsp-list", "corral.subnet.oa"}).find("corral.nic.c1"), std::string::npos);
  EXPECT_NE(vsctl(1, {"--columns=external_ids", "find", "Interface", "external_ids:iface-id=corral.nic.c1"})
                .find("corral-instance"),
            std::string::npos)
      << vsctl(1, {"show"});
  // Host 1's ovn-controller binds them (northd marks them up); then they talk.
  ASSERT_TRUE(testing::pollUntil([&] { return pingFrom("c1", c2); }, 20s)) << cluster_->logs();
  EXPECT_TRUE(pingFrom("c2", c1));

  // Host 2's workload, put on corral's switch by hand (a port corral does not own, which it leaves alone):
  // c1 reaches it across the underlay; it cannot open anything to c1, whose default group lets in only
  // members of that group.
  testing::runTool({"ip", "-n", cluster_->workloadNetns(2), "addr", "add", "10.70.1.200/24", "dev", "w2"});
  nbctl({"lsp-add", "corral.subnet.oa", "w2", "--", "lsp-set-addresses", "w2",
         "0a:00:00:00:00:02 10.70.1.200"});
  ASSERT_TRUE(testing::pollUntil([&] { return pingFrom("c1", "10.70.1.200"); }, 20s)) << cluster_->logs();
  testing::ToolRun inbound = testing::runTool(
      {"ip", "netns", "exec", cluster_->workloadNetns(2), "busybox", "ping", "-c", "2", "-W", "1", c1});
  EXPECT_NE(inbound.exitCode, 0) << "the security group let a non-member in: " << inbound.output;
  cliOk({"sg", "rule", "add", "ovpc-default", "--protocol", "icmp", "--cidr", "10.70.1.200/32"});
  EXPECT_TRUE(testing::pollUntil(
      [&] {
        return testing::runTool({"ip", "netns", "exec", cluster_->workloadNetns(2), "busybox", "ping", "-c",
                                 "1", "-W", "1", c1})
                   .exitCode == 0;
      },
      10s))
      << "a rule for it opens the way: " << nbctl({"acl-list", "corral_sg_ovpc-default"});

  // c2 goes: its br-int port and its logical port with it; the foreign port stays.
  cliOk({"rm", "-f", "c2"});
  EXPECT_EQ(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=corral.nic.c2"}), "");
  const std::string ports = nbctl({"lsp-list", "corral.subnet.oa"});
  EXPECT_EQ(ports.find("corral.nic.c2"), std::string::npos) << ports;
  EXPECT_NE(ports.find("w2"), std::string::npos) << ports;

  // Not on OVN yet: refused, nothing changed.
  testing::CliRun igw = daemon_.cli({"igw", "create", "ogw", "--vpc", "ovpc"});
  EXPECT_NE(igw.code, 0);
  EXPECT_NE(igw.err.find("--ovn-gateway-chassis"), std::string::npos) << igw;
  EXPECT_EQ(daemon_.list("internet-gateways").size(), 0u);

  // A port of an instance this corrald no longer has (as after a kill between its removal and the port's):
  // a restarted corrald takes it away; c1's stays.
  vsctl(1, {"add-port", "br-int", "crlvstale0", "--", "set", "Interface", "crlvstale0", "type=internal",
            "external_ids:corral-instance=gone", "external_ids:corral-prefix=" + testing::testNetnsPrefix()});
  daemon_.kill9();
  ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
  EXPECT_EQ(vsctl(1, {"--columns=name", "find", "Interface", "name=crlvstale0"}), "") << daemon_.logTail();
  EXPECT_NE(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=corral.nic.c1"}), "");
  EXPECT_TRUE(pingFrom("c1", "10.70.1.200")) << "c1 still reaches across after the restart";

  cliOk({"rm", "-f", "c1"});
  nbctl({"lsp-del", "w2"});
  cliOk({"subnet", "rm", "oa"});
  cliOk({"vpc", "rm", "ovpc"});
  EXPECT_EQ(nbctl({"lr-list"}).find("corral."), std::string::npos) << nbctl({"show"});
  EXPECT_EQ(nbctl({"ls-list"}).find("corral."), std::string::npos) << nbctl({"show"});
}

// A VM (the direct engine, TCG) on the OVN backend: QEMU's tap becomes a system port of host 1's br-int
// bound to the VM's logical port; the guest's eth0 has the 1400-byte MTU Geneve needs; it reaches a
// container of its subnet and host 2's workload (ping, and a bulk TCP transfer across the underlay); its
// security group decides what reaches it; it keeps its port through a corrald restart and a stop --save
// and start; removed, its br-int port and logical port go.
// reach --verify on OVN: each path is also traced with ovn-trace through the logical flows northd compiled
// from corral's rows, next to the kernel's probe over the same OVN; model, probe and trace agree on an open
// port, on a port the destination's group does not open (the trace names the ACL that drops it) and on one
// its floor's network ACL denies. Without --ovn-southbound no trace is made.
TEST_F(CorraldOnOvn, ReachVerifyTracesOvnsLogicalFlowsAndAgreesWithTheModelAndTheKernel) {
  using nlohmann::json;
  cliOk({"vpc", "create", "rv", "--cidr", "10.72.0.0/16"});
  cliOk({"subnet", "create", "ra", "--vpc", "rv", "--cidr", "10.72.1.0/24"});
  cliOk({"subnet", "create", "rb", "--vpc", "rv", "--cidr", "10.72.2.0/24"});
  cliOk({"sg", "create", "db", "--vpc", "rv"});
  cliOk({"sg", "rule", "add", "db", "--protocol", "tcp", "--port", "5432", "--cidr", "10.72.0.0/16"});
  cliOk({"run", "-d", "--name", "app", "--subnet", "ra", "--", "sleep", "1000"});
  cliOk({"run", "-d", "--name", "pg", "--subnet", "rb", "--sg", "db", "--", "sleep", "1000"});
  auto reach = [&](int port) {
    return daemon_.call("POST", "/v1/reach",
                        {{"source", "app"}, {"destination", "pg"}, {"port", port}, {"verify", true}});
  };
  // Once host 1's ovn-controller bound both ports, the probe gets through.
  json open;
  ASSERT_TRUE(testing::pollUntil(
      [&] {
        testing::Reply answer = reach(5432);
        open = answer.body;
        return answer.status == 200 && open.value("kernel_agrees", false);
      },
      30s))
      << open.dump(2) << daemon_.logTail();
  ASSERT_EQ(open["paths"].size(), 1u);
  const json& path = open["paths"][0];
  EXPECT_TRUE(path.value("reachable", false)) << open.dump(2);
  EXPECT_EQ(path["kernel"].value("verdict", ""), "reached") << open.dump(2);
  EXPECT_EQ(path["ovn"].value("verdict", ""), "reached") << open.dump(2);
  EXPECT_EQ(path["ovn"].value("detail", ""),
            "forward: output to corral.nic.pg; reply: output to corral.nic.app")
      << open.dump(2);
  EXPECT_TRUE(open.value("ovn_agrees", false)) << open.dump(2);

  // Port 22: db opens nothing there. The trace stops at the ACL stage of pg's switch.
  testing::Reply closed = reach(22);
  ASSERT_EQ(closed.status, 200) << closed.body.dump(2);
  const json& shut = closed.body["paths"][0];
  EXPECT_FALSE(shut.value("reachable", true));
  EXPECT_EQ(shut["kernel"].value("verdict", ""), "blocked") << closed.body.dump(2);
  EXPECT_EQ(shut["ovn"].value("verdict", ""), "blocked") << closed.body.dump(2);
  EXPECT_NE(shut["ovn"].value("detail", "").find("forward: dropped at ls_out_acl"), std::string::npos)
      << closed.body.dump(2);
  EXPECT_TRUE(closed.body.value("kernel_agrees", false) && closed.body.value("ovn_agrees", false))
      << closed.body.dump(2);

  // rb's network ACL denies 5432 coming in, before its allow-all: all three say blocked.
  cliOk({"nacl", "rule", "add", "rv-default", "--number", "50", "--action", "deny", "--protocol", "tcp",
         "--port", "5432", "--cidr", "10.72.1.0/24"});
  // (northd compiles the new ACL and ovn-controller installs it a moment after corrald wrote it)
  testing::Reply denied;
  EXPECT_TRUE(testing::pollUntil(
      [&] {
        denied = reach(5432);
        return denied.status == 200 && denied.body.value("kernel_agrees", false) &&
               denied.body.value("ovn_agrees", false);
      },
      10s));
  ASSERT_EQ(denied.status, 200) << denied.body.dump(2);
  const json& deny = denied.body["paths"][0];
  EXPECT_FALSE(deny.value("reachable", true)) << denied.body.dump(2);
  EXPECT_EQ(deny["ovn"].value("verdict", ""), "blocked") << denied.body.dump(2);
  EXPECT_EQ(deny["kernel"].value("verdict", ""), "blocked") << denied.body.dump(2);
  EXPECT_TRUE(denied.body.value("kernel_agrees", false) && denied.body.value("ovn_agrees", false))
      << denied.body.dump(2);
  testing::CliRun printed = daemon_.cli({"reach", "app", "pg", "--port", "5432", "--verify"});
  EXPECT_NE(printed.out.find("ovn-trace: blocked (forward: dropped at"), std::string::npos) << printed;

  // Without a southbound database: the probe only.
  daemon_.stop();
  daemon_.setExtraArgs({"--ovn-northbound", cluster_->northbound(), "--ovs-database", hostDatabase(1),
                        "--accelerator", "tcg"});
  ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
  testing::Reply untraced = reach(22);
  ASSERT_EQ(untraced.status, 200) << untraced.body.dump(2);
  EXPECT_FALSE(untraced.body.contains("ovn_agrees")) << untraced.body.dump(2);
  EXPECT_FALSE(untraced.body["paths"][0].contains("ovn")) << untraced.body.dump(2);
}

TEST_F(CorraldOnOvn, AVmIsABrIntPortOfItsSubnetAcrossTheSimulatedHosts) {
  cliOk({"vpc", "create", "vvpc", "--cidr", "10.71.0.0/16"});
  cliOk({"subnet", "create", "va", "--vpc", "vvpc", "--cidr", "10.71.1.0/24"});
  cliOk({"run", "-d", "--name", "c1", "--subnet", "va", "--", "sleep", "1000"});
  nlohmann::json vm = runVmReady("v1", "va");
  ASSERT_EQ(vm.value("state", ""), "running");
  EXPECT_EQ(vm["boot"].value("engine", ""), "qemu") << vm.dump();
  const std::string c1 = addressOf("c1"), v1 = addressOf("v1");
  ASSERT_FALSE(c1.empty() || v1.empty()) << daemon_.instances().dump();
  expectVmPort("v1");
  EXPECT_NE(nbctl({"lsp-list", "corral.subnet.va"}).find("corral.nic.v1"), std::string::npos);

  // Same subnet, same host: the VM and the container (one default group) reach each other.
  ASSERT_TRUE(testing::pollUntil([&] { return pingFrom("v1", c1); }, 20s)) << cluster_->logs();
  EXPECT_TRUE(pingFrom("c1", v1));

  // Host 2's workload over Geneve: ping, then a megabyte of TCP from the VM (full-sized segments must fit
  // the tunnel). The workload cannot open anything to the VM until a rule of its group lets it in.
  addWorkload2("va", "10.71.1.200");
  ASSERT_TRUE(testing::pollUntil([&] { return pingFrom("v1", "10.71.1.200"); }, 20s)) << cluster_->logs();
  expectBulkTcpToWorkload2("v1", "10.71.1.200");
  auto inboundPing = [&] {
    return testing::runTool({"ip", "netns", "exec", cluster_->workloadNetns(2), "busybox", "ping", "-c", "1",
                             "-W", "1", v1})
               .exitCode == 0;
  };
  EXPECT_FALSE(inboundPing()) << "the VM's security group let a non-member in";
  cliOk({"sg", "rule", "add", "vvpc-default", "--protocol", "icmp", "--cidr", "10.71.1.200/32"});
  EXPECT_TRUE(testing::pollUntil(inboundPing, 10s)) << nbctl({"acl-list", "corral_sg_vvpc-default"});

  // corrald killed and started again: the VM (its QEMU outlives corrald) keeps its port and still reaches
  // across.
  daemon_.kill9();
  ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
  EXPECT_NE(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=corral.nic.v1"}), "")
      << daemon_.logTail();
  EXPECT_TRUE(testing::pollUntil([&] { return pingFrom("v1", "10.71.1.200"); }, 10s)) << daemon_.logTail();

  // Stopped with its memory saved and started again: restored paused, its tap (a new one) plugged in again
  // as before, and it reaches across again.
  testing::Reply saved = daemon_.call("POST", "/v1/instances/v1/stop", {{"save", true}});
  ASSERT_EQ(saved.status, 200) << saved.body.dump() << daemon_.logTail();
  EXPECT_EQ(saved.body["saved"], true) << saved.body.dump();
  testing::Reply started = daemon_.call("POST", "/v1/instances/v1/start");
  ASSERT_EQ(started.status, 200) << started.body.dump() << daemon_.logTail();
  nlohmann::json resumed = daemon_.waitWhile("v1", "starting");
  ASSERT_EQ(resumed.value("state", ""), "running") << resumed.dump(2) << "\n" << daemon_.logTail();
  EXPECT_EQ(resumed["boot"].value("restored", false), true) << resumed.dump();
  EXPECT_TRUE(testing::pollUntil([&] { return pingFrom("v1", "10.71.1.200"); }, 10s)) << daemon_.logTail();
  expectBulkTcpToWorkload2("v1", "10.71.1.200");

  // Removed: its br-int port and its logical port go.
  cliOk({"rm", "-f", "v1"});
  EXPECT_EQ(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=corral.nic.v1"}), "");
  EXPECT_EQ(nbctl({"lsp-list", "corral.subnet.va"}).find("corral.nic.v1"), std::string::npos);
  EXPECT_FALSE(inboundPing());

  cliOk({"rm", "-f", "c1"});
  nbctl({"lsp-del", "w2"});
  cliOk({"subnet", "rm", "va"});
  cliOk({"vpc", "rm", "vvpc"});
}

// The libvirt engine's VM the same way: libvirtd (in the machine's own namespace here, not in host 1's where
// corrald and ovs-vswitchd run) opens the tap; corrald finds it in QEMU's namespace and moves it to
// ovs-vswitchd's, where it becomes the VM's br-int port.
TEST_F(CorraldOnOvn, ALibvirtEngineVmIsABrIntPortToo) {
  daemon_.stop();
  daemon_.setExtraArgs({"--ovn-northbound", cluster_->northbound(), "--ovs-database", hostDatabase(1),
                        "--accelerator", "tcg", "--vm-engine", "libvirt"});
  ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
  cliOk({"vpc", "create", "lvpc", "--cidr", "10.72.0.0/16"});
  cliOk({"subnet", "create", "la", "--vpc", "lvpc", "--cidr", "10.72.1.0/24"});
  cliOk({"run", "-d", "--name", "c1", "--subnet", "la", "--", "sleep", "1000"});
  nlohmann::json vm = runVmReady("lv1", "la");
  ASSERT_EQ(vm.value("state", ""), "running");
  EXPECT_EQ(vm["boot"].value("engine", ""), "libvirt") << vm.dump();
  expectVmPort("lv1");
  const std::string c1 = addressOf("c1"), lv1 = addressOf("lv1");
  ASSERT_TRUE(testing::pollUntil([&] { return pingFrom("lv1", c1); }, 20s)) << cluster_->logs();
  EXPECT_TRUE(pingFrom("c1", lv1));
  addWorkload2("la", "10.72.1.200");
  ASSERT_TRUE(testing::pollUntil([&] { return pingFrom("lv1", "10.72.1.200"); }, 20s)) << cluster_->logs();
  expectBulkTcpToWorkload2("lv1", "10.72.1.200");

  cliOk({"rm", "-f", "lv1"});
  EXPECT_EQ(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=corral.nic.lv1"}), "");
  EXPECT_EQ(nbctl({"lsp-list", "corral.subnet.la"}).find("corral.nic.lv1"), std::string::npos);
  cliOk({"rm", "-f", "c1"});
  nbctl({"lsp-del", "w2"});
  cliOk({"subnet", "rm", "la"});
  cliOk({"vpc", "rm", "lvpc"});
}

// Warm VMs on the OVN backend, the direct engine's (the default here) and libvirt's: see expectWarmVmsOnOvn.
TEST_F(CorraldOnOvn, WarmVmsRestoreWithOvnsNicAndAreBrIntPorts) {
  expectWarmVmsOnOvn("qemu", "73");
}

TEST_F(CorraldOnOvn, WarmLibvirtEngineVmsRestoreWithOvnsNicAndAreBrIntPorts) {
  daemon_.stop();
  daemon_.setExtraArgs({"--ovn-northbound", cluster_->northbound(), "--ovs-database", hostDatabase(1),
                        "--accelerator", "tcg", "--vm-engine", "libvirt"});
  ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
  expectWarmVmsOnOvn("libvirt", "74");
}

// Two VPCs peered through corral on the OVN backend: the peering becomes a router-to-router link (one
// port in each VPC's rows), routes through it and rules naming the peer VPC's group let two containers of
// the two VPCs reach each other; a container started later in a peered VPC is reached too (the group's
// address set follows its members); deleting the peering is refused while routes use it, then takes both
// ends away.
TEST_F(CorraldOnOvn, PeeredVpcsContainersReachEachOther) {
  cliOk({"vpc", "create", "pva", "--cidr", "10.71.0.0/16"});
  cliOk({"subnet", "create", "pa", "--vpc", "pva", "--cidr", "10.71.1.0/24"});
  cliOk({"vpc", "create", "pvb", "--cidr", "10.72.0.0/16"});
  cliOk({"subnet", "create", "pb", "--vpc", "pvb", "--cidr", "10.72.1.0/24"});
  cliOk({"peering", "create", "pva", "pvb"});
  EXPECT_EQ(testing::runTool({"ovn-nbctl", "--db=" + cluster_->northbound(), "--bare", "get",
                              "Logical_Router_Port", "corral.peering.pva-pvb.pva", "peer"})
                .output,
            "corral.peering.pva-pvb.pvb\n")
      << nbctl({"show"});
  EXPECT_NE(nbctl({"lrp-list", "corral.vpc.pvb"}).find("corral.peering.pva-pvb.pvb"), std::string::npos)
      << nbctl({"show"});
  cliOk({"rtb", "route", "add", "pva-main", "--destination", "10.72.0.0/16", "--peering", "pva-pvb"});
  cliOk({"rtb", "route", "add", "pvb-main", "--destination", "10.71.0.0/16", "--peering", "pva-pvb"});
  cliOk({"run", "-d", "--name", "ca", "--subnet", "pa", "--", "sleep", "1000"});
  cliOk({"run", "-d", "--name", "cb", "--subnet", "pb", "--", "sleep", "1000"});
  const std::string ca = addressOf("ca"), cb = addressOf("cb");
  ASSERT_FALSE(ca.empty() || cb.empty()) << daemon_.instances().dump();
  // Routes both ways, but each default group lets in only its own members.
  ASSERT_TRUE(testing::pollUntil(
      [&] {
        return nbctl({"--bare", "get", "Logical_Switch_Port", "corral.nic.cb", "up"}) == "true\n" &&
               nbctl({"--bare", "get", "Logical_Switch_Port", "corral.nic.ca", "up"}) == "true\n";
      },
      20s))
      << cluster_->logs();
  EXPECT_FALSE(pingFrom("ca", cb)) << "pvb's default group let a member of pva's in";
  cliOk({"sg", "rule", "add", "pvb-default", "--protocol", "icmp", "--from-group", "pva-default"});
  cliOk({"sg", "rule", "add", "pva-default", "--protocol", "icmp", "--from-group", "pvb-default"});
  EXPECT_TRUE(testing::pollUntil([&] { return pingFrom("ca", cb); }, 20s))
      << nbctl({"show"}) << nbctl({"acl-list", "corral_sg_pvb_default"});
  EXPECT_TRUE(pingFrom("cb", ca));
  // A NIC that joins pvb later is reached from pva too.
  cliOk({"run", "-d", "--name", "cb2", "--subnet", "pb", "--", "sleep", "1000"});
  const std::string cb2 = addressOf("cb2");
  EXPECT_TRUE(testing::pollUntil([&] { return pingFrom("ca", cb2); }, 20s)) << cluster_->logs();

  // The peering is in use: refused, nothing changed.
  testing::CliRun refused = daemon_.cli({"peering", "rm", "pva-pvb"});
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("still the target of routes"), std::string::npos) << refused;
  EXPECT_TRUE(pingFrom("ca", cb));
  // Its rules and routes first, then the peering: both ends go and the path with them.
  for (const std::string group : {"pva-default", "pvb-default"}) {
    nlohmann::json rules = daemon_.call("GET", "/v1/security-groups/" + group).body["rules"];
    for (const nlohmann::json& rule : rules) {
      if (!rule["peer_group"].is_string() || rule["peer_group"] == group) continue;
      cliOk({"sg", "rule", "rm", group, std::to_string(rule["id"].get<int64_t>())});
    }
  }
  cliOk({"rtb", "route", "rm", "pva-main", "10.72.0.0/16"});
  cliOk({"rtb", "route", "rm", "pvb-main", "10.71.0.0/16"});
  cliOk({"peering", "rm", "pva-pvb"});
  EXPECT_EQ(nbctl({"lrp-list", "corral.vpc.pva"}).find("corral.peering."), std::string::npos)
      << nbctl({"show"});
  EXPECT_EQ(nbctl({"lrp-list", "corral.vpc.pvb"}).find("corral.peering."), std::string::npos)
      << nbctl({"show"});
  EXPECT_FALSE(pingFrom("ca", cb));

  cliOk({"rm", "-f", "ca", "cb", "cb2"});
  for (const char* subnet : {"pa", "pb"}) cliOk({"subnet", "rm", subnet});
  for (const char* vpc : {"pva", "pvb"}) cliOk({"vpc", "rm", vpc});
  EXPECT_EQ(nbctl({"lr-list"}).find("corral."), std::string::npos) << nbctl({"show"});
}

// A load balancer on the OVN backend: its NIC is a br-int port bound to its logical port, plugged into its
// own namespace as eth0; HAProxy there checks two containers serving HTTP and a client's requests go round
// robin across them; deleting the load balancer takes its br-int port and logical port away.
TEST_F(CorraldOnOvn, ALoadBalancerInFrontOfTwoContainersAnswers) {
  using nlohmann::json;
  cliOk({"vpc", "create", "lbv", "--cidr", "10.73.0.0/16"});
  cliOk({"subnet", "create", "la", "--vpc", "lbv", "--cidr", "10.73.1.0/24"});
  for (const std::string name : {"web-1", "web-2"}) {
    const std::string script = fmt::format(
        "mkdir -p /tmp/www && echo {0} > /tmp/www/index.html && echo ok > /tmp/www/health.txt && "
        "exec httpd -f -p 8080 -h /tmp/www",
        name);
    daemon_.must("POST", "/v1/instances",
                 {{"name", name}, {"image", "busybox"}, {"command", {"sh", "-c", script}}, {"subnet", "la"}});
  }
  cliOk({"subnet", "create", "lb2", "--vpc", "lbv", "--cidr", "10.73.2.0/24", "--az", "az2"});
  cliOk({"run", "-d", "--name", "client", "--subnet", "la", "--", "sleep", "1000"});
  cliOk({"run", "-d", "--name", "client2", "--subnet", "lb2", "--", "sleep", "1000"});
  const json health = {{"path", "/health.txt"},
                       {"interval", 5},
                       {"timeout", 2},
                       {"healthy_threshold", 2},
                       {"unhealthy_threshold", 2}};
  daemon_.must("POST", "/v1/target-groups",
               {{"name", "web"}, {"vpc", "lbv"}, {"port", 8080}, {"health_check", health}});
  daemon_.must("POST", "/v1/target-groups/web/register", {{"targets", {"web-1", "web-2"}}}, 200);
  json created = daemon_.must("POST", "/v1/load-balancers",
                              {{"name", "front"}, {"vpc", "lbv"}, {"subnets", {"la", "lb2"}}});
  ASSERT_EQ(created["nics"].size(), 2u) << created.dump(2);
  const std::string address = created["nics"][0].value("address", "");
  ASSERT_TRUE(address.starts_with("10.73.1.")) << created.dump(2);
  const std::string address2 = created["nics"][1].value("address", "");
  ASSERT_TRUE(address2.starts_with("10.73.2.")) << created.dump(2);
  daemon_.must("POST", "/v1/load-balancers/front/listeners",
               {{"port", 80}, {"default_action", {{"target_group", "web"}}}});
  ASSERT_FALSE(HasFailure());
  // Its NIC: a br-int port of this host bound to the NIC's logical port.
  const std::string logicalPort = "corral.nic.front.la.lb";
  EXPECT_NE(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=" + logicalPort}), "")
      << vsctl(1, {"show"}) << daemon_.logTail();
  EXPECT_NE(nbctl({"lsp-list", "corral.subnet.la"}).find(logicalPort), std::string::npos);

  auto healthy = [&](const std::string& target) {
    json lb = daemon_.call("GET", "/v1/load-balancers/front").body;
    if (!lb.contains("target_health") || !lb["target_health"].contains("web")) return false;
    for (const json& entry : lb["target_health"]["web"]) {
      if (entry.value("target", "") == target) return entry.value("state", "") == "healthy";
    }
    return false;
  };
  ASSERT_TRUE(testing::pollUntil([&] { return healthy("web-1") && healthy("web-2"); }, 30s))
      << daemon_.call("GET", "/v1/load-balancers/front").body.dump(2) << "\n"
      << daemon_.logTail();
  // One HTTP/1.0 request from the client (busybox nc): the body's first line.
  auto request = [&](const std::string& client = "client", const std::string& to = "") {
    auto [code, output] = testing::execIn(
        daemon_, client,
        {"sh", "-c",
         fmt::format("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} 80", to.empty() ? address : to)});
    const size_t body = output.find("\r\n\r\n");
    if (code != 0 || body == std::string::npos) return "no answer: " + output;
    std::string text = output.substr(body + 4);
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
    return text;
  };
  std::map<std::string, int> seen;
  for (int i = 0; i < 4; ++i) ++seen[request()];
  EXPECT_EQ(seen, (std::map<std::string, int>{{"web-1", 2}, {"web-2", 2}}));
  // Its second NIC (eth1, in the other subnet) answers too: the reply leaves by the NIC the request came
  // in on (its source table).
  const std::string viaSecond = request("client2", address2);
  EXPECT_TRUE(viaSecond == "web-1" || viaSecond == "web-2") << viaSecond << "\n" << daemon_.logTail();

  // corrald killed and started again: the namespace and its br-int ports are kept, HAProxy adopted.
  daemon_.kill9();
  ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
  EXPECT_NE(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=" + logicalPort}), "")
      << daemon_.logTail();
  const std::string afterRestart = request();
  EXPECT_TRUE(afterRestart == "web-1" || afterRestart == "web-2") << afterRestart << "\n"
                                                                  << daemon_.logTail();

  // Deleted: its br-int port and its logical port go.
  daemon_.must("DELETE", "/v1/load-balancers/front", nullptr, 200);
  EXPECT_EQ(vsctl(1, {"--columns=name", "find", "Interface", "external_ids:iface-id=" + logicalPort}), "")
      << daemon_.logTail();
  EXPECT_EQ(nbctl({"lsp-list", "corral.subnet.la"}).find(logicalPort), std::string::npos);
  EXPECT_TRUE(daemon_.removeEverything().empty());
  EXPECT_EQ(nbctl({"lr-list"}).find("corral."), std::string::npos) << nbctl({"show"});
}

// --ovn-southbound is refused without the OVN backend and with a remote that is none, naming the option;
// corrald does not start.
TEST(OvnOptions, TheSouthboundDatabaseNeedsTheOvnBackendAndARemote) {
  if (!testing::requireRoot()) GTEST_SKIP() << "needs root";
  struct Case {
    std::vector<std::string> args;
    std::string said;
  };
  for (const Case& bad : {Case{{"--ovn-southbound", "unix:/run/ovn/ovnsb_db.sock"},
                               "--ovn-northbound: --ovs-netns, --ovn-southbound and --ovn-gateway-* belong"},
                          Case{{"--ovn-northbound", "unix:/run/ovn/ovnnb_db.sock", "--ovs-database",
                                "unix:/run/openvswitch/db.sock", "--ovn-southbound", "unix:"},
                               "--ovn-southbound: \"unix:\": no socket path after unix:"}}) {
    testing::TestDaemon daemon("t" + std::to_string(::getpid()) + "-ovn-options", bad.args);
    EXPECT_FALSE(daemon.start());
    EXPECT_NE(daemon.log().find(bad.said), std::string::npos) << daemon.log();
  }
}

}  // namespace
}  // namespace corral
