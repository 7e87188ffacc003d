// `corral compare` end to end through a real corrald, libvirt and QEMU under TCG (as root): the JSON has
// every sample (the VM's kernel is its own, the container's the host's), memory and the accelerator; with a
// subnet the network numbers; and nothing is left running afterwards, also when the CLI gets SIGINT.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api/client.h"
#include "tests/integration/harness.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

std::string hostKernel() {
  utsname u{};
  ::uname(&u);
  return u.release;
}

// Starts `corral compare ARGS` with the output in the daemon's cliOut() and cliErr(); the caller waits (or
// signals first).
pid_t spawnCompare(const TestDaemon& daemon, std::vector<std::string> args) {
  args.insert(args.begin(), "compare");
  return daemon.spawnCli(std::move(args));
}

int exitCode(std::optional<int> status) {
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

// Runs `corral compare --json ARGS` to the end and parses what it printed (null when it was not JSON).
json compareJson(const TestDaemon& daemon, std::vector<std::string> args, int* code,
                 std::chrono::seconds deadline = 150s) {
  args.push_back("--json");
  pid_t pid = spawnCompare(daemon, args);
  *code = exitCode(corral::testing::waitWithDeadline(pid, deadline));
  json result = json::parse(daemon.cliOut(), nullptr, false);
  return result.is_discarded() ? json(nullptr) : result;
}

TEST(Compare, TwoOfEachKindUnderTcg) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt and cgroups";
  TestDaemon daemon("compare", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();

  int code = -1;
  json result = compareJson(daemon, {"--runs", "2", "--svg", daemon.dir() + "/chart.svg"}, &code);
  ASSERT_EQ(code, 0) << daemon.cliOut() << daemon.cliErr() << daemon.log();
  ASSERT_TRUE(result.is_object()) << daemon.cliOut();

  EXPECT_EQ(result["accelerator"], "tcg");
  ASSERT_EQ(result["samples"].size(), 4u) << result.dump(2);
  int containers = 0, vms = 0;
  for (const json& sample : result["samples"]) {
    SCOPED_TRACE(sample["name"].get<std::string>());
    EXPECT_TRUE(sample["error"].is_null()) << sample["error"];
    EXPECT_GT(sample["boot"].value("total_ms", 0.0), 0.0);
    ASSERT_TRUE(sample["usage"].is_object()) << sample.dump(2);
    EXPECT_GT(sample["usage"].value("memory_bytes", 0), 0);
    const std::string release = sample["probe"]["kernel"].value("release", "");
    if (sample["kind"] == "vm") {
      ++vms;
      EXPECT_EQ(sample["usage"]["source"], "qemu rss");
      EXPECT_NE(release, hostKernel());
      EXPECT_FALSE(release.empty());
    } else {
      ++containers;
      EXPECT_EQ(sample["usage"]["source"], "cgroup");
      EXPECT_EQ(release, hostKernel());
    }
  }
  EXPECT_EQ(containers, 2);
  EXPECT_EQ(vms, 2);
  EXPECT_EQ(result["isolation"]["container"]["kernel_equals_host"], true);
  EXPECT_EQ(result["isolation"]["vm"]["kernel_equals_host"], false);
  EXPECT_EQ(result["isolation"]["vm"]["namespaces_shared_with_host"], 0);
  // Which kernel and machine the VMs ran, from corrald's record and from inside (the probe's virtio bus).
  ASSERT_TRUE(result["vm_kernel"].is_object()) << result.dump(2);
  const std::string machine = result["vm_kernel"].value("machine", "");
  EXPECT_TRUE(machine == "microvm" || machine == "pc") << result["vm_kernel"];
  EXPECT_EQ(result["isolation"]["vm"]["virtio_transports"],
            json::array({machine == "microvm" ? "mmio" : "pci"}))
      << result["isolation"]["vm"];
  // A container has its own pid and mount namespaces (the VM is not a host namespace at all).
  EXPECT_EQ(result["isolation"]["container"]["namespaces"]["pid"]["equals_host"], false);
  EXPECT_EQ(result["isolation"]["container"]["namespaces"]["mnt"]["equals_host"], false);
  // ... and shares the host's user namespace (no --user-namespace): the host side is corrald's view.
  EXPECT_EQ(result["isolation"]["container"]["namespaces"]["user"]["equals_host"], true);
  EXPECT_EQ(result["summary"]["vm"]["boot_ms"]["count"], 2);
  EXPECT_EQ(result["summary"]["container"]["boot_ms"]["count"], 2);
  EXPECT_GT(result["summary"]["vm"]["memory_bytes"].value("median", 0.0), 0.0);

  std::string svg = corral::testing::readFile(daemon.dir() + "/chart.svg");
  EXPECT_TRUE(svg.starts_with("<?xml")) << svg;
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '<') - std::count(svg.begin(), svg.end(), '>'), 0);

  EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);

  // corrald kept the result (for the dashboard and --show) without the per-instance documents.
  ASSERT_TRUE(result["saved_as"].is_number()) << result.dump(2);
  Reply kept = daemon.call("GET", "/v1/comparisons/latest");
  ASSERT_EQ(kept.status, 200) << kept.body.dump();
  EXPECT_EQ(kept.body["id"], result["saved_as"]);
  EXPECT_EQ(kept.body["result"]["summary"], result["summary"]);
  EXPECT_EQ(kept.body["result"]["samples"][0]["probe"], result["samples"][0]["probe"]);
  EXPECT_FALSE(kept.body["result"]["samples"][0].contains("instance"));
  Reply dashboard = daemon.call("GET", "/v1/dashboard");
  ASSERT_EQ(dashboard.status, 200);
  EXPECT_EQ(dashboard.body["comparison"]["id"], result["saved_as"]);
  corral::testing::CliRun shown = daemon.cli({"compare", "--show", "latest"});
  EXPECT_EQ(shown.code, 0) << shown;
  EXPECT_NE(shown.out.find("memory median"), std::string::npos) << shown;
  EXPECT_NE(shown.out.find("kernel release"), std::string::npos) << shown;
  corral::testing::CliRun listed = daemon.cli({"compare", "--list"});
  EXPECT_EQ(listed.code, 0) << listed;
  EXPECT_NE(listed.out.find("tcg"), std::string::npos) << listed;

  // Names of an earlier compare still in use: refused before anything starts.
  Reply taken = daemon.call(
      "POST", "/v1/instances",
      {{"name", "compare-c-1"}, {"kind", "container"}, {"image", "busybox"}, {"command", {"sleep", "1000"}}});
  ASSERT_EQ(taken.status, 201) << taken.body.dump();
  pid_t pid = spawnCompare(daemon, {"--runs", "1"});
  EXPECT_EQ(exitCode(corral::testing::waitWithDeadline(pid, 30s)), 1);
  EXPECT_NE(daemon.cliErr().find("compare-c-1"), std::string::npos) << daemon.cliErr();
  EXPECT_EQ(daemon.instances().size(), 1u) << daemon.instances().dump(2);
}

TEST(Compare, NetworkOnASubnet) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt, cgroups and namespaces";
  TestDaemon daemon("compare", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  ASSERT_EQ(daemon.call("POST", "/v1/vpcs", {{"name", "cmp"}, {"cidr", "10.91.0.0/16"}}).status, 201);
  ASSERT_EQ(
      daemon.call("POST", "/v1/subnets", {{"name", "lab"}, {"vpc", "cmp"}, {"cidr", "10.91.1.0/24"}}).status,
      201);

  int code = -1;
  json result = compareJson(daemon, {"--runs", "1", "--subnet", "lab"}, &code);
  ASSERT_EQ(code, 0) << daemon.cliOut() << daemon.cliErr() << daemon.log();
  ASSERT_TRUE(result.is_object()) << daemon.cliOut();
  const json& network = result["network"];
  ASSERT_TRUE(network.is_object()) << result.dump(2);
  EXPECT_EQ(network["router"], "10.91.1.1");
  ASSERT_EQ(network["ping"].size(), 4u) << network.dump(2);
  for (const json& ping : network["ping"]) {
    ASSERT_TRUE(ping["rtt_ms"].is_object()) << ping.dump(2);
    EXPECT_GT(ping["rtt_ms"].value("avg", 0.0), 0.0) << ping.dump(2);
  }
  ASSERT_EQ(network["tcp_connect"].size(), 2u) << network.dump(2);
  for (const json& tcp : network["tcp_connect"]) {
    EXPECT_GT(tcp.value("connect_ms", 0.0), 0.0) << tcp.dump(2);
  }
  EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);
}

// --warm: the booted VM is resumed (stop --save, start) and two clones restored from one shared snapshot;
// the first clone made it and is left out of the clone's numbers; their steps are there; nothing is left.
TEST(Compare, WarmStartsBesideTheColdBoot) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt and cgroups";
  TestDaemon daemon("compare", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  int code = -1;
  json result = compareJson(daemon, {"--runs", "2", "--warm"}, &code, 400s);
  ASSERT_EQ(code, 0) << daemon.cliOut() << daemon.cliErr() << daemon.log();
  ASSERT_TRUE(result.is_object()) << daemon.cliOut();
  const json& warm = result["warm"];
  ASSERT_TRUE(warm.is_object()) << result.dump(2);
  ASSERT_EQ(warm["resumes"].size(), 2u) << warm.dump(2);
  for (const json& resume : warm["resumes"]) {
    ASSERT_TRUE(resume.contains("boot")) << resume.dump(2);
    EXPECT_EQ(resume["boot"].value("restored", false), true) << resume.dump(2);
  }
  ASSERT_EQ(warm["clones"].size(), 2u) << warm.dump(2);
  EXPECT_EQ(warm["clones"][0]["name"], "compare-w-1");
  EXPECT_EQ(warm["clones"][0]["boot"]["domain_steps"].value("snapshot_made", false), true) << warm.dump(2);
  EXPECT_EQ(warm["clones"][1]["boot"]["domain_steps"].value("snapshot_made", true), false) << warm.dump(2);
  const json& summary = warm["summary"];
  EXPECT_EQ(summary["resume"]["total_ms"].value("count", 0), 2) << summary.dump(2);
  EXPECT_EQ(summary["clone"]["total_ms"].value("count", 0), 1) << summary.dump(2);
  EXPECT_EQ(summary["clone"].value("made_the_snapshot", 0), 1) << summary.dump(2);
  // copy_ms is libvirt's alone (its clone restores a copy of the saved state): the direct engine on microvm
  // reads the shared snapshot itself.
  for (const char* step : {"restore_ms", "agent_ms", "identity_ms"})
    EXPECT_TRUE(summary["clone"]["steps_median_ms"].contains(step)) << step << " " << summary.dump(2);
  for (const char* step : {"domain_ms", "agent_ms", "clock_ms"})
    EXPECT_TRUE(summary["resume"]["steps_median_ms"].contains(step)) << step << " " << summary.dump(2);
  EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);
}

TEST(Compare, InterruptedRemovesEverything) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt and cgroups";
  TestDaemon daemon("compare", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();

  pid_t pid = spawnCompare(daemon, {"--runs", "2"});
  ASSERT_GT(pid, 0);
  // SIGINT once the first VM exists (it is booting: the CLI is waiting for it).
  auto until = Clock::now() + 60s;
  bool sawVm = false;
  while (Clock::now() < until && !sawVm) {
    for (const json& instance : daemon.instances()) sawVm = sawVm || instance.value("kind", "") == "vm";
    if (!sawVm) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(sawVm) << daemon.cliErr();
  const size_t started = daemon.instances().size();
  ::kill(pid, SIGINT);
  // A second Ctrl-C while the cleanup runs (the first instance is gone) must not cut it short.
  ASSERT_TRUE(corral::testing::waitUntil([&] { return daemon.instances().size() < started; }, 60s,
                                         "the interrupted compare to remove its first instance"))
      << daemon.cliErr();
  ::kill(pid, SIGINT);
  EXPECT_EQ(exitCode(corral::testing::waitWithDeadline(pid, 60s)), 130) << daemon.cliErr();
  EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);
}

}  // namespace
}  // namespace corral
