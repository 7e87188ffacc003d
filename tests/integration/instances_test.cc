// End-to-end instance lifecycle through a real corrald (as root): run, logs, exit codes, ps, exec, stop,
// start, rm, OOM, refused specs leaving nothing behind, and containers surviving a SIGKILLed daemon.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/leaks.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using corral::testing::cgroupLeftovers;
using corral::testing::join;
using corral::testing::linksIn;
using corral::testing::mountLeftovers;
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

// The descriptors corrald holds on running containers' usage files (memory.current and memory.events, or
// v1's memory.usage_in_bytes and memory.oom_control): from this process's view of corrald's fd table.
size_t usageFilesOpen(pid_t pid) {
  size_t count = 0;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid), ec)) {
    std::string target = std::filesystem::read_symlink(entry.path(), ec).string();
    for (const char* file :
         {"/memory.current", "/memory.events", "/memory.usage_in_bytes", "/memory.oom_control"})
      if (target.ends_with(file)) ++count;
  }
  return count;
}

size_t usageFilesSettledAt(pid_t pid, size_t expected) {
  const auto deadline = Clock::now() + 5s;
  while (usageFilesOpen(pid) != expected && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
  return usageFilesOpen(pid);
}

// The watcher keeps each running container's two usage files open while a quarter of corrald's soft
// RLIMIT_NOFILE allows (here 80: 20 descriptors, ten containers), samples the others by opening and
// closing as before, and closes a container's files when it stops or is removed.
TEST(Instances, UsageFilesStayOpenWithinTheBudgetAndCloseWithTheContainer) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("usagefd", kDaemonArgs);
  rlimit saved{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &saved), 0);
  rlimit low = saved;
  low.rlim_cur = 80;
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  const bool started = daemon.start();  // corrald inherits the soft limit
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &saved), 0);
  ASSERT_TRUE(started) << daemon.log();
  const pid_t pid = daemon.pid();
  for (int i = 0; i < 12; ++i) {
    Reply run = daemon.call("POST", "/v1/instances", runSpec(fmt::format("u{}", i), {"sleep", "1000"}));
    ASSERT_EQ(run.status, 201) << run.body.dump() << daemon.log();
  }
  EXPECT_EQ(usageFilesSettledAt(pid, 20), 20u) << "ten containers' files kept, two sampled without";
  // Every one is sampled, kept files or not.
  std::this_thread::sleep_for(1500ms);
  Reply list = daemon.call("GET", "/v1/instances");
  ASSERT_EQ(list.status, 200);
  for (const json& instance : list.body["instances"]) {
    ASSERT_TRUE(instance["usage"].is_object()) << instance.dump();
    EXPECT_GT(instance["usage"].value("memory_bytes", 0), 0) << instance.dump();
    EXPECT_LE(instance["usage"].value("age_ms", 99999), 3000) << instance.dump();
  }
  // A stopped container's and a removed one's go; the budget they free is taken by the two left out.
  ASSERT_EQ(daemon.call("POST", "/v1/instances/u0/stop", {{"grace_seconds", 0}}).status, 200);
  ASSERT_EQ(daemon.call("DELETE", "/v1/instances/u1?force=true").status, 200);
  EXPECT_EQ(usageFilesSettledAt(pid, 20), 20u);
  ASSERT_EQ(daemon.call("DELETE", "/v1/instances/u2?force=true").status, 200);
  EXPECT_EQ(usageFilesSettledAt(pid, 18), 18u);
  for (int i = 3; i < 12; ++i)
    ASSERT_EQ(daemon.call("DELETE", fmt::format("/v1/instances/u{}?force=true", i)).status, 200) << i;
  EXPECT_EQ(usageFilesSettledAt(pid, 0), 0u) << "corrald kept usage files of removed containers";
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

// POST /v1/instances/remove: several instances on a subnet in one request. Bad input is refused naming the
// field before anything goes; without force the running ones are refused one by one and the stopped one
// goes; forced, the running ones are killed and a missing name is reported on its own. Nothing is left:
// processes, cgroups, mounts, bundles, ports in the VPC's namespace, addresses (one is taken again).
TEST(Instances, RemoveManyInOneRequestLeavesNothing) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("inst", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  daemon.must("POST", "/v1/vpcs", {{"name", "v"}, {"cidr", "10.78.0.0/16"}});
  daemon.must("POST", "/v1/subnets", {{"name", "s"}, {"vpc", "v"}, {"cidr", "10.78.1.0/24"}});
  const std::string netns = corral::testing::testNetnsPrefix() + "vpc-v";
  const std::vector<std::string> linksBefore = linksIn(netns);
  std::map<std::string, json> started;
  for (const char* name : {"a", "b", "c"}) {
    json spec = runSpec(name, {"sleep", "1000"});
    spec["subnet"] = "s";
    Reply run = daemon.call("POST", "/v1/instances", spec);
    ASSERT_EQ(run.status, 201) << run.body.dump() << daemon.logTail();
    started[name] = run.body;
  }
  ASSERT_EQ(daemon.call("POST", "/v1/instances/c/stop", {{"grace_seconds", 0}}).status, 200);
  EXPECT_EQ(linksIn(netns).size(), linksBefore.size() + 2) << join(linksIn(netns));

  struct Bad {
    json body;
    std::string field;
  };
  for (const Bad& bad : {Bad{{{"names", json::array()}}, "names"},
                         Bad{{{"names", {"a", "b", "a"}}, {"force", true}}, "names[2]"},
                         Bad{{{"names", {"a", "Bad_Name"}}, {"force", true}}, "names[1]"},
                         Bad{{{"names", {"a"}}, {"force", "yes"}}, "force"}}) {
    Reply reply = daemon.call("POST", "/v1/instances/remove", bad.body);
    EXPECT_EQ(reply.status, 400) << bad.body.dump() << " → " << reply.body.dump();
    EXPECT_EQ(reply.body["error"].value("field", ""), bad.field) << reply.body.dump();
  }
  EXPECT_EQ(daemon.instances().size(), 3u) << daemon.instances().dump();

  Reply unforced = daemon.call("POST", "/v1/instances/remove", {{"names", {"a", "c"}}});
  ASSERT_EQ(unforced.status, 200) << unforced.body.dump();
  ASSERT_EQ(unforced.body["results"].size(), 2u) << unforced.body.dump();
  EXPECT_EQ(unforced.body["results"][0]["name"], "a");
  EXPECT_EQ(unforced.body["results"][0]["error"].value("kind", ""), "conflict") << unforced.body.dump();
  EXPECT_EQ(unforced.body["results"][1]["deleted"].value("name", ""), "c") << unforced.body.dump();
  EXPECT_EQ(unforced.body["removed"], 1);
  EXPECT_EQ(unforced.body["failed"], 1);
  EXPECT_EQ(daemon.call("GET", "/v1/instances/a").body.value("state", ""), "running");

  Reply forced =
      daemon.call("POST", "/v1/instances/remove", {{"names", {"a", "nope", "b"}}, {"force", true}});
  ASSERT_EQ(forced.status, 200) << forced.body.dump();
  const json& results = forced.body["results"];
  ASSERT_EQ(results.size(), 3u) << forced.body.dump();
  EXPECT_EQ(results[0]["deleted"].value("name", ""), "a") << forced.body.dump();
  EXPECT_EQ(results[1]["name"], "nope");
  EXPECT_EQ(results[1]["error"].value("kind", ""), "not_found") << forced.body.dump();
  EXPECT_NE(results[1]["error"].value("message", "").find("\"nope\""), std::string::npos)
      << forced.body.dump();
  EXPECT_EQ(results[2]["deleted"].value("name", ""), "b") << forced.body.dump();
  EXPECT_EQ(forced.body["removed"], 2);
  EXPECT_EQ(forced.body["failed"], 1);

  EXPECT_TRUE(daemon.instances().empty()) << daemon.instances().dump();
  for (const char* name : {"a", "b"}) EXPECT_FALSE(alive(started[name]["pid"].get<int>())) << name;
  EXPECT_TRUE(cgroupLeftovers(daemon).empty()) << join(cgroupLeftovers(daemon));
  EXPECT_TRUE(mountLeftovers(daemon).empty()) << join(mountLeftovers(daemon));
  EXPECT_TRUE(std::filesystem::is_empty(daemon.containersDir()));
  EXPECT_EQ(linksIn(netns).size(), linksBefore.size()) << join(linksIn(netns));
  // The addresses went back to the subnet: a's is free for a new instance.
  json again = runSpec("again", {"sleep", "1000"});
  again["subnet"] = "s";
  again["ip"] = started["a"]["ip"];
  Reply rerun = daemon.call("POST", "/v1/instances", again);
  EXPECT_EQ(rerun.status, 201) << rerun.body.dump();
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/again?force=true").status, 200);
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
  // Its overlay is in its own mount namespace only, not in corrald's (whose every start copied them all).
  const std::string bundle = daemon.containersDir() + "/survivor";
  EXPECT_EQ(slurp(fmt::format("/proc/{}/mountinfo", daemon.pid())).find(bundle), std::string::npos);
  EXPECT_NE(slurp(fmt::format("/proc/{}/mountinfo", pid)).find(" / / "), std::string::npos);

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

// "Uid:\t1 2 3 4" → {1, 2, 3, 4}: real, effective, saved and filesystem ids as the host sees them.
std::vector<int64_t> hostIds(int pid, const std::string& key) {
  std::istringstream status(slurp(fmt::format("/proc/{}/status", pid)));
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with(key + ":")) continue;
    std::istringstream fields(line.substr(key.size() + 1));
    std::vector<int64_t> ids;
    for (int64_t id; fields >> id;) ids.push_back(id);
    return ids;
  }
  return {};
}

// Waits until the instance's log holds `marker`; the log.
std::string waitForLog(const TestDaemon& daemon, const std::string& name, const std::string& marker) {
  std::string data;
  for (auto until = Clock::now() + 20s; Clock::now() < until; std::this_thread::sleep_for(50ms)) {
    data = daemon.call("GET", "/v1/instances/" + name + "/logs?offset=0").body.value("data", "");
    if (data.find(marker) != std::string::npos) break;
  }
  return data;
}

// Each --user-ns container gets 65536 host ids of its own from corral's pool (here a 3-range corral
// entry): root inside is START on the host, files it creates are START's (1000's are START+1000), the
// image still works, two containers never share ids, a range stays taken across a corrald crash, the
// pool running out is a clear 409, and a removed container's range is given out again.
TEST(Instances, UserNamespaceContainersGetDisjointHostIdRangesThatOutliveARestart) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  constexpr int64_t kStart = 1610612736;  // 0x60000000
  constexpr int64_t kCount = 65536;
  char dir[] = "/tmp/corral-subids-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string idsFile = std::string(dir) + "/subids";
  { std::ofstream(idsFile) << "alice:100000:65536\ncorral:" << kStart << ":" << 3 * kCount << "\n"; }
  std::vector<std::string> args = kDaemonArgs;
  args.insert(args.end(), {"--subuid-file", idsFile, "--subgid-file", idsFile});
  TestDaemon daemon("userns", args);
  ASSERT_TRUE(daemon.start()) << daemon.log();

  auto userNsSpec = [](const std::string& name) {
    json spec =
        runSpec(name, {"sh", "-c",
                       "cat /proc/self/uid_map /proc/self/gid_map; echo hi > /etc/x && cat /etc/x && "
                       "ls -l /bin/busybox && stat -c 'busybox %u:%g' /bin/busybox && touch /tmp/x && "
                       "touch /tmp/y && chown 1000:1000 /tmp/y && echo READY; exec sleep 1000"});
    spec["user_namespace"] = true;
    return spec;
  };
  auto squeeze = [](const std::string& line) {
    std::istringstream in(line);
    std::string word, result;
    while (in >> word) result += (result.empty() ? "" : " ") + word;
    return result;
  };
  // Runs NAME and checks everything about its range; its start.
  auto runMapped = [&](const std::string& name) -> int64_t {
    json instance = daemon.must("POST", "/v1/instances", userNsSpec(name));
    if (!instance.contains("user_namespace_range") || !instance["user_namespace_range"].is_object()) {
      ADD_FAILURE() << name << " has no user_namespace_range: " << instance.dump();
      return -1;
    }
    const int64_t start = instance["user_namespace_range"]["uid"].get<int64_t>();
    EXPECT_EQ(instance["user_namespace_range"], (json{{"uid", start}, {"gid", start}, {"count", kCount}}));
    EXPECT_NE(start, 0) << name;
    const int pid = instance["pid"].get<int>();
    EXPECT_EQ(hostIds(pid, "Uid"), std::vector<int64_t>(4, start))
        << name << ": root inside, seen from the host";
    EXPECT_EQ(hostIds(pid, "Gid"), std::vector<int64_t>(4, start)) << name;
    std::string log = waitForLog(daemon, name, "READY\n");
    std::istringstream lines(log);
    std::vector<std::string> out;
    for (std::string line; std::getline(lines, line);) out.push_back(line);
    EXPECT_EQ(out.size(), 6u) << log;
    if (out.size() < 6) return start;
    EXPECT_EQ(squeeze(out[0]), fmt::format("0 {} {}", start, kCount)) << "uid_map";
    EXPECT_EQ(squeeze(out[1]), fmt::format("0 {} {}", start, kCount)) << "gid_map";
    EXPECT_EQ(out[2], "hi");
    EXPECT_NE(squeeze(out[3]).find(" root root "), std::string::npos) << "ls -l /bin/busybox: " << out[3];
    EXPECT_EQ(out[4], "busybox 0:0");
    const std::filesystem::path upper = instance["bundle"].get<std::string>() + "/upper";
    struct stat st {};
    EXPECT_EQ(::stat((upper / "tmp" / "x").c_str(), &st), 0) << upper;
    EXPECT_EQ(st.st_uid, static_cast<uid_t>(start)) << "a file root made inside belongs to START on the host";
    EXPECT_EQ(st.st_gid, static_cast<gid_t>(start));
    EXPECT_EQ(::stat((upper / "tmp" / "y").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, static_cast<uid_t>(start + 1000)) << "uid 1000 inside is START+1000 outside";
    EXPECT_EQ(st.st_gid, static_cast<gid_t>(start + 1000));
    EXPECT_EQ(::stat((upper / "etc" / "x").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, static_cast<uid_t>(start));
    return start;
  };

  const int64_t first = runMapped("ua");
  const int64_t second = runMapped("ub");
  EXPECT_EQ(first, kStart) << "the lowest range of the pool first";
  EXPECT_EQ(second, kStart + kCount) << "the next one, disjoint";

  // After a crash the stored ranges are still taken: a new container gets the third.
  daemon.kill9();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  EXPECT_EQ(daemon.call("GET", "/v1/instances/ua").body["user_namespace_range"]["uid"], first);
  EXPECT_EQ(runMapped("uc"), kStart + 2 * kCount);

  // The pool is used up: refused, leaving nothing behind.
  Reply refused = daemon.call("POST", "/v1/instances", userNsSpec("ud"));
  EXPECT_EQ(refused.status, 409) << refused.body.dump();
  EXPECT_NE(refused.body.dump().find("no free id range: all 3 ranges of 65536 ids in the pool"),
            std::string::npos)
      << refused.body.dump();
  EXPECT_EQ(daemon.call("GET", "/v1/instances/ud").status, 404);
  EXPECT_FALSE(std::filesystem::exists(daemon.containersDir() + "/ud"));

  // A removed container's range goes back to the pool.
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/ua?force=true").status, 200);
  EXPECT_EQ(runMapped("ud"), first);

  // Without --user-ns nothing changes: root is root, no range.
  json plain = daemon.must("POST", "/v1/instances", runSpec("plain", {"sleep", "1000"}));
  EXPECT_TRUE(plain["user_namespace_range"].is_null()) << plain.dump();
  EXPECT_EQ(hostIds(plain["pid"].get<int>(), "Uid"), std::vector<int64_t>(4, 0));
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace corral
