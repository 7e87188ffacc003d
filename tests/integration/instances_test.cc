// End-to-end instance lifecycle through a real corrald (as root): run, logs, exit codes, ps, exec, stop,
// start, rm, OOM, refused specs leaving nothing behind, and containers surviving a SIGKILLed daemon.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

std::string slurp(const std::string& path) {
  return corral::testing::readFile(path);
}

// Alive and not a zombie: after corrald's SIGKILL the container's parent is whichever reaper adopted it,
// which may be slow to reap.
bool alive(int pid) {
  std::string stat = slurp(fmt::format("/proc/{}/stat", pid));
  size_t close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] != 'Z';
}

// corrald with its own state, socket, containers and cgroup parent (per test process: ctest runs tests in
// parallel processes, and one test's teardown removes its parent). Containers only: TCG spares the
// accelerator probe.
const std::vector<std::string> kDaemonArgs = {"--accelerator", "tcg"};

// Polls GET until the instance is no longer running.
json waitStopped(const TestDaemon& daemon, const std::string& name,
                 std::chrono::milliseconds deadline = 20s) {
  return daemon.waitWhile(name, "running", deadline);
}

json runSpec(const std::string& name, std::vector<std::string> command) {
  return {{"name", name}, {"image", "busybox"}, {"command", std::move(command)}};
}

TEST(Instances, LifecycleOverTheApi) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("inst", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();

  // A command that finishes: its output is in the logs, exit code 0.
  Reply hello = daemon.call("POST", "/v1/instances", runSpec("hello", {"echo", "hello"}));
  ASSERT_EQ(hello.status, 201) << hello.body.dump() << daemon.log();
  json done = waitStopped(daemon, "hello");
  EXPECT_EQ(done["state"], "stopped");
  EXPECT_EQ(done["exit_code"], 0);
  EXPECT_EQ(done["exit_reason"], "exited");
  Reply logs = daemon.call("GET", "/v1/instances/hello/logs?offset=0");
  ASSERT_EQ(logs.status, 200) << logs.body.dump();
  EXPECT_NE(logs.body["data"].get<std::string>().find("hello"), std::string::npos) << logs.body.dump();
  EXPECT_EQ(logs.body["next_offset"], 6);

  // A non-zero exit code.
  ASSERT_EQ(daemon.call("POST", "/v1/instances", runSpec("three", {"sh", "-c", "exit 3"})).status, 201);
  EXPECT_EQ(waitStopped(daemon, "three")["exit_code"], 3);

  // A long-running one: listed running with boot steps.
  Reply sleeper = daemon.call("POST", "/v1/instances", runSpec("sleeper", {"sleep", "1000"}));
  ASSERT_EQ(sleeper.status, 201) << sleeper.body.dump();
  EXPECT_EQ(sleeper.body["state"], "running");
  Reply list = daemon.call("GET", "/v1/instances");
  ASSERT_EQ(list.status, 200);
  bool listed = false;
  for (const json& instance : list.body["instances"]) {
    if (instance["name"] != "sleeper") continue;
    listed = true;
    EXPECT_EQ(instance["state"], "running");
    EXPECT_TRUE(instance["pid"].is_number());
    for (const char* step : {"total_ms", "clone_ms", "cgroup_ms", "rootfs_ms", "network_ms", "exec_ms"})
      EXPECT_TRUE(instance["boot"][step].is_number()) << step;
  }
  EXPECT_TRUE(listed) << list.body.dump();
  const int initPid = sleeper.body["pid"].get<int>();
  const std::string cgroupPath = sleeper.body["cgroup"].get<std::string>();
  EXPECT_TRUE(std::filesystem::exists(cgroupPath)) << cgroupPath;
  EXPECT_EQ(daemon.call("GET", "/v1/info").body["counts"]["instances"], 3);

  // Duplicate name: refused, the first one untouched.
  EXPECT_EQ(daemon.call("POST", "/v1/instances", runSpec("sleeper", {"true"})).status, 409);

  // exec: the hostname is the name; the pid namespace is the container's.
  Reply host = daemon.call("POST", "/v1/instances/sleeper/exec", {{"command", {"hostname"}}});
  ASSERT_EQ(host.status, 200) << host.body.dump();
  EXPECT_EQ(host.body["exit_code"], 0);
  EXPECT_EQ(host.body["stdout"], "sleeper\n");
  Reply probe = daemon.call("POST", "/v1/instances/sleeper/exec", {{"command", {"/usr/bin/corral-probe"}}});
  ASSERT_EQ(probe.status, 200) << probe.body.dump();
  EXPECT_EQ(probe.body["exit_code"], 0) << probe.body.dump();
  std::string selfPidNs = std::filesystem::read_symlink("/proc/self/ns/pid").string();
  std::string containerPidNs =
      std::filesystem::read_symlink(fmt::format("/proc/{}/ns/pid", initPid)).string();
  EXPECT_NE(selfPidNs, containerPidNs);
  EXPECT_NE(probe.body["stdout"].get<std::string>().find('{'), std::string::npos);

  // stop: sleep as pid 1 ignores SIGTERM, so the grace runs out and the cgroup is killed.
  Reply stopped = daemon.call("POST", "/v1/instances/sleeper/stop", {{"grace_seconds", 1}});
  ASSERT_EQ(stopped.status, 200) << stopped.body.dump();
  EXPECT_EQ(stopped.body["state"], "stopped");
  EXPECT_EQ(stopped.body["exit_reason"], "stopped");
  EXPECT_FALSE(std::filesystem::exists(cgroupPath));
  EXPECT_EQ(daemon.call("POST", "/v1/instances/sleeper/stop", json::object()).status, 409);

  // start again: same bundle, running.
  Reply again = daemon.call("POST", "/v1/instances/sleeper/start");
  ASSERT_EQ(again.status, 200) << again.body.dump();
  EXPECT_EQ(again.body["state"], "running");
  EXPECT_EQ(daemon.call("POST", "/v1/instances/sleeper/start").status, 409);

  // rm: refused while running, forced removes everything.
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/sleeper").status, 409);
  Reply removed = daemon.call("DELETE", "/v1/instances/sleeper?force=true");
  ASSERT_EQ(removed.status, 200) << removed.body.dump();
  EXPECT_EQ(removed.body["deleted"]["name"], "sleeper");
  EXPECT_EQ(daemon.call("GET", "/v1/instances/sleeper").status, 404);
  EXPECT_FALSE(std::filesystem::exists(cgroupPath));
  EXPECT_FALSE(std::filesystem::exists(daemon.containersDir() + "/sleeper"));

  for (const char* name : {"hello", "three"})
    EXPECT_EQ(daemon.call("DELETE", fmt::format("/v1/instances/{}", name)).status, 200);
  EXPECT_FALSE(std::filesystem::exists(daemon.containersDir() + "/hello"));
}

TEST(Instances, OutOfMemoryIsReported) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("inst", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json spec = runSpec("hog", {"sh", "-c", "x=a; while true; do x=$x$x; done"});
  spec["memory"] = "32M";
  Reply run = daemon.call("POST", "/v1/instances", spec);
  ASSERT_EQ(run.status, 201) << run.body.dump();
  json done = waitStopped(daemon, "hog", 60s);
  EXPECT_EQ(done["state"], "stopped");
  EXPECT_EQ(done["exit_reason"], "oom-killed") << done.dump();
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/hog").status, 200);
}

TEST(Instances, BadSpecsAreRefusedAndLeaveNothing) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("inst", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  struct Case {
    json spec;
    int status;
    std::string field;
  };
  json badMemory = runSpec("m", {"true"});
  badMemory["memory"] = "-1";
  json badPids = runSpec("p", {"true"});
  badPids["pids"] = 0;
  json unknownImage = runSpec("i", {"true"});
  unknownImage["image"] = "nonexistent";
  for (const Case& c : {Case{unknownImage, 404, "image"}, Case{runSpec("../x", {"true"}), 400, "name"},
                        Case{badMemory, 400, "memory"}, Case{badPids, 400, "pids"}}) {
    Reply reply = daemon.call("POST", "/v1/instances", c.spec);
    EXPECT_EQ(reply.status, c.status) << reply.body.dump();
    EXPECT_EQ(reply.body["error"].value("field", ""), c.field) << reply.body.dump();
  }
  EXPECT_TRUE(daemon.call("GET", "/v1/instances").body["instances"].empty());
  EXPECT_TRUE(std::filesystem::is_empty(daemon.containersDir()));
}

TEST(Instances, ContainersSurviveADaemonKill) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("inst", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  Reply run = daemon.call("POST", "/v1/instances", runSpec("survivor", {"sleep", "1000"}));
  ASSERT_EQ(run.status, 201) << run.body.dump();
  const int pid = run.body["pid"].get<int>();

  daemon.kill9();
  std::this_thread::sleep_for(200ms);
  EXPECT_TRUE(alive(pid)) << "the container died with corrald";

  ASSERT_TRUE(daemon.start()) << daemon.log();
  Reply found = daemon.call("GET", "/v1/instances/survivor");
  ASSERT_EQ(found.status, 200) << found.body.dump();
  EXPECT_EQ(found.body["state"], "running") << found.body.dump();
  EXPECT_EQ(found.body["pid"], pid);
  EXPECT_NE(daemon.log().find("reattached"), std::string::npos);

  Reply stopped = daemon.call("POST", "/v1/instances/survivor/stop", {{"grace_seconds", 1}});
  ASSERT_EQ(stopped.status, 200) << stopped.body.dump();
  EXPECT_EQ(stopped.body["state"], "stopped");
  EXPECT_EQ(stopped.body["exit_reason"], "stopped");
  auto until = Clock::now() + 5s;
  while (alive(pid) && Clock::now() < until) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(alive(pid));
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/survivor").status, 200);
}

}  // namespace
}  // namespace corral
