// "Ready" as time to workload (issue 14): corrald's wait-port connects to an instance's port at its address
// on its subnet, from the VPC's router, until the workload accepts; `corral compare --image NAME
// --ready-port PORT` uses it for containers and VMs alike. Through a real corrald (as root), a real
// listener, and for compare a `build --debian python3` image whose command sleeps before it listens.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "images/oci/debian_build.h"
#include "images/oci/image_store.h"
#include "tests/integration/harness.h"

namespace corral {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

using corral::testing::CliRun;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

void makeLab(const TestDaemon& daemon) {
  daemon.must("POST", "/v1/vpcs", {{"name", "rp"}, {"cidr", "10.93.0.0/16"}});
  daemon.must("POST", "/v1/subnets", {{"name", "lab"}, {"vpc", "rp"}, {"cidr", "10.93.1.0/24"}});
}

json container(const std::string& name, const std::string& script, const std::string& subnet) {
  json spec = {
      {"name", name}, {"kind", "container"}, {"image", "busybox"}, {"command", {"sh", "-c", script}}};
  if (!subnet.empty()) spec["subnet"] = subnet;
  return spec;
}

TEST(WaitPort, AnswersOnlyOnceTheWorkloadListens) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for namespaces and cgroups";
  TestDaemon daemon("waitport");
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeLab(daemon);
  // Listens after 2 s: the port is closed (refused at once) until then.
  daemon.must("POST", "/v1/instances", container("late", "sleep 2; exec nc -ll -p 7000 -e true", "lab"));
  Reply ready =
      daemon.call("POST", "/v1/instances/late/wait-port", {{"port", 7000}, {"timeout_seconds", 30}});
  ASSERT_EQ(ready.status, 200) << ready.body.dump() << daemon.logTail();
  EXPECT_EQ(ready.body["port"], 7000);
  EXPECT_GE(ready.body.value("ready_ms", 0.0), 2000.0) << ready.body.dump();
  EXPECT_LT(ready.body.value("ready_ms", 0.0), 20000.0) << ready.body.dump();
  EXPECT_GT(ready.body.value("attempts", 0), 1) << ready.body.dump();
  EXPECT_NE(ready.body.value("from", "").find("router namespace"), std::string::npos) << ready.body.dump();
  json instance = daemon.call("GET", "/v1/instances/late").body;
  EXPECT_EQ(ready.body["address"], instance["network"]["ip"]) << instance.dump(2);
  // Asked again, it answers at once with the first attempt.
  Reply again = daemon.call("POST", "/v1/instances/late/wait-port", {{"port", 7000}});
  ASSERT_EQ(again.status, 200) << again.body.dump();
  EXPECT_EQ(again.body["attempts"], 1);

  // A port nobody opens: 503 once the timeout passed, naming the port.
  Reply closed =
      daemon.call("POST", "/v1/instances/late/wait-port", {{"port", 7001}, {"timeout_seconds", 1}});
  EXPECT_EQ(closed.status, 503) << closed.body.dump();
  EXPECT_NE(closed.body.dump().find("port 7001"), std::string::npos) << closed.body.dump();

  // A workload that ends before it listens: 409 as soon as it ended, not after the timeout.
  daemon.must("POST", "/v1/instances", container("quitter", "sleep 1; exit 3", "lab"));
  auto asked = std::chrono::steady_clock::now();
  Reply ended =
      daemon.call("POST", "/v1/instances/quitter/wait-port", {{"port", 7000}, {"timeout_seconds", 60}});
  EXPECT_EQ(ended.status, 409) << ended.body.dump();
  EXPECT_NE(ended.body.dump().find("ended before port 7000 answered"), std::string::npos)
      << ended.body.dump();
  EXPECT_LT(std::chrono::steady_clock::now() - asked, 30s);

  // Without a subnet corrald has no path to it; bad ports and unknown instances are refused.
  daemon.must("POST", "/v1/instances", container("alone", "exec sleep 1000", ""));
  Reply alone = daemon.call("POST", "/v1/instances/alone/wait-port", {{"port", 7000}});
  EXPECT_EQ(alone.status, 409) << alone.body.dump();
  EXPECT_NE(alone.body.dump().find("--subnet"), std::string::npos) << alone.body.dump();
  for (int port : {0, 70000}) {
    Reply bad = daemon.call("POST", "/v1/instances/late/wait-port", {{"port", port}});
    EXPECT_EQ(bad.status, 400) << bad.body.dump();
    EXPECT_EQ(bad.body["error"]["field"], "port") << bad.body.dump();
  }
  EXPECT_EQ(daemon.call("POST", "/v1/instances/nobody/wait-port", {{"port", 80}}).status, 404);
  EXPECT_TRUE(daemon.removeEverything().empty());
}

TEST(CompareImage, BadInputIsRefusedNamingTheFieldAndStartsNothing) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for namespaces";
  TestDaemon daemon("cmpbad");
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeLab(daemon);
  struct Case {
    std::vector<std::string> args;
    int code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--image", "no-such-image", "--subnet", "lab", "--ready-port", "80"}, 1, "no-such-image"},
      {{"--image", "busybox", "--subnet", "lab", "--ready-port", "0"}, 2, "--ready-port"},
      {{"--image", "busybox", "--subnet", "lab", "--ready-port", "70000"}, 2, "--ready-port"},
      {{"--image", "busybox", "--subnet", "lab", "--ready-port", "http"}, 2, "--ready-port"},
      {{"--image", "busybox", "--ready-port", "80"}, 2, "--subnet"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"compare", "--runs", "1"};
    args.insert(args.end(), c.args.begin(), c.args.end());
    CliRun run = daemon.cli(args, 60s);
    EXPECT_EQ(run.code, c.code) << run;
    EXPECT_NE(run.err.find(c.says), std::string::npos) << run;
    EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);
  }
  EXPECT_EQ(daemon.call("GET", "/v1/comparisons").body.value("comparisons", json::array()).size(), 0u);
  EXPECT_TRUE(daemon.removeEverything().empty());
}

// The check: a workload that sleeps N s before it listens is ready no sooner than N s after the
// start request, as a container and as a VM (under TCG: one of each).
TEST(CompareImage, ReadyMeansThePortAnswersForBothKinds) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt, mmdebstrap and layer unpacking";
  TestDaemon daemon("cmpimg", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeLab(daemon);
  {
    // The one image this binary builds (mmdebstrap takes ~40 s).
    auto store = images::ImageStore::open(fs::path(daemon.dir()) / "state/images");
    ASSERT_TRUE(store) << store.error().message();
    images::DebianBuild build;
    build.name = "slowweb";
    build.packages = {"python3"};
    build.cmd = {"sh", "-c", "sleep 3; exec python3 -m http.server 8000"};
    auto image = images::buildDebianImage(*store, build);
    ASSERT_TRUE(image) << image.error().message();
  }
  constexpr double kSleepMs = 3000;

  int code = -1;
  pid_t pid = daemon.spawnCli({"compare", "--json", "--runs", "1", "--image", "slowweb", "--subnet", "lab",
                               "--ready-port", "8000", "--svg", daemon.dir() + "/chart.svg"});
  auto status = corral::testing::waitWithDeadline(pid, 400s);
  code = status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
  json result = json::parse(daemon.cliOut(), nullptr, false);
  ASSERT_EQ(code, 0) << daemon.cliOut() << daemon.cliErr() << daemon.logTail();
  ASSERT_TRUE(result.is_object()) << daemon.cliOut();
  EXPECT_EQ(result["image"], "slowweb");
  EXPECT_EQ(result["ready_port"], 8000);
  ASSERT_EQ(result["samples"].size(), 2u) << result.dump(2);
  for (const json& sample : result["samples"]) {
    SCOPED_TRACE(sample["name"].get<std::string>());
    EXPECT_TRUE(sample["error"].is_null()) << sample["error"];
    const json& readiness = sample["readiness"];
    EXPECT_EQ(readiness["kind"], "tcp-connect") << readiness.dump();
    EXPECT_EQ(readiness["port"], 8000);
    ASSERT_TRUE(readiness["ready_ms"].is_number()) << readiness.dump();
    // Later than the sleep, and later than the start itself (what boot.total_ms measures).
    EXPECT_GE(readiness["ready_ms"].get<double>(), kSleepMs) << readiness.dump();
    EXPECT_GT(readiness["ready_ms"].get<double>(), sample["boot"].value("total_ms", 0.0)) << sample.dump(2);
  }
  EXPECT_EQ(result["summary"]["container"]["ready_ms"]["count"], 1);
  EXPECT_EQ(result["summary"]["vm"]["ready_ms"]["count"], 1);
  std::string svg = corral::testing::readFile(daemon.dir() + "/chart.svg");
  EXPECT_NE(svg.find("time until port 8000 accepts a connect"), std::string::npos) << svg;
  EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);

  // Kept by corrald with its readiness, and drawn again from there.
  Reply kept = daemon.call("GET", "/v1/comparisons/latest");
  ASSERT_EQ(kept.status, 200) << kept.body.dump();
  EXPECT_EQ(kept.body["result"]["samples"][0]["readiness"], result["samples"][0]["readiness"]);
  CliRun shown = daemon.cli({"compare", "--show", "latest"});
  EXPECT_EQ(shown.code, 0) << shown;
  EXPECT_NE(shown.out.find("ready (port 8000) median"), std::string::npos) << shown;
  EXPECT_NE(shown.out.find("image: slowweb"), std::string::npos) << shown;
  EXPECT_TRUE(daemon.removeEverything().empty());
}

}  // namespace
}  // namespace corral
