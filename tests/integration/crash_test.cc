// Crash safety of the instance lifecycle through a real corrald (as root): corrald SIGKILLed at every named
// failpoint of run, start, stop, exit and rm (core/failpoint.h, listed by `corrald --list-failpoints`), for
// containers and VMs, and at timed moments 1-12 ms into POST /v1/instances. After a restart nothing is stuck
// (every instance is stopped or running, and start and rm work on it) and, once removed, nothing is left:
// no process or directory in the test's cgroups on any hierarchy, no overlay mount, no libvirt domain of
// the test's prefix, no NIC link. Also: an instance that ended while corrald was down is "lost", a VM
// reattached mid-boot keeps a total boot time that covers its steps, and a child's OOM kill is counted.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
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
namespace fs = std::filesystem;

using corral::testing::cgroupHierarchies;
using corral::testing::cgroupLeftovers;
using corral::testing::join;
using corral::testing::linksIn;
using corral::testing::mountLeftovers;
using corral::testing::ourDomains;
using corral::testing::readFile;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;
using corral::testing::vpcProcessLeftovers;

const std::vector<std::string> kDaemonArgs = {"--accelerator", "tcg"};

// The points corrald knows, from corrald itself: the test cannot name one the code lacks, nor miss one.
std::vector<std::string> listFailpoints() {
  std::string out = fs::temp_directory_path() / fmt::format("corral-failpoints-{}", ::getpid());
  pid_t pid = corral::testing::spawnProcess({CORRALD_PATH, "--list-failpoints"}, out, "/dev/null",
                                            corral::testing::OutputMode::Truncate);
  EXPECT_GT(pid, 0);
  if (pid > 0) corral::testing::waitWithDeadline(pid, 10s);
  std::vector<std::string> names;
  std::istringstream lines(readFile(out));
  for (std::string line; std::getline(lines, line);)
    if (!line.empty()) names.push_back(line);
  fs::remove(out);
  return names;
}

// Starts corrald with CORRAL_FAILPOINTS=`failpoint` (its restart afterwards runs without).
bool startArmed(TestDaemon& daemon, const std::string& failpoint) {
  ::setenv("CORRAL_FAILPOINTS", failpoint.c_str(), 1);
  bool started = daemon.start();
  ::unsetenv("CORRAL_FAILPOINTS");
  return started;
}

// True once the daemon has died (a zombie until reaped); then reaped, so start() works again.
bool diedWithin(TestDaemon& daemon, std::chrono::milliseconds deadline) {
  const pid_t pid = daemon.pid();
  if (pid <= 0) return false;
  auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    siginfo_t info{};
    if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
        info.si_pid == pid) {
      daemon.kill9();  // reaps
      return true;
    }
    std::this_thread::sleep_for(5ms);
  }
  return false;
}

// Processes still running corrald's image other than the daemon: a container's init before its execve
// (not in its v1 cgroups yet, holding copies of the daemon's sockets) that outlived a killed daemon.
std::vector<std::string> strayStarters(const TestDaemon& daemon) {
  std::vector<std::string> stray;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string pid = entry.path().filename().string();
    if (pid.find_first_not_of("0123456789") != std::string::npos || std::stoi(pid) == daemon.pid()) continue;
    std::error_code linkError;
    fs::path exe = fs::read_symlink(entry.path() / "exe", linkError);
    if (linkError || exe != fs::path(CORRALD_PATH)) continue;
    // A clone()d child has its daemon's command line, which names this daemon's own directory: other test
    // processes' daemons (ctest runs tests in parallel) are not ours.
    std::string cmdline = readFile((entry.path() / "cmdline").string());
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(daemon.dir()) != std::string::npos) stray.push_back("pid " + pid);
  }
  return stray;
}

// Nothing of any instance is left on the host.
void expectNothingLeft(const TestDaemon& daemon, const std::string& context) {
  EXPECT_EQ(join(strayStarters(daemon)), "") << context;
  EXPECT_EQ(join(cgroupLeftovers(daemon)), "") << context;
  EXPECT_EQ(join(mountLeftovers(daemon)), "") << context;
  EXPECT_TRUE(ourDomains().empty()) << context << ": " << join(ourDomains());
}

// The instance is in a state start and rm accept, and what it holds agrees with that state; then start
// (if stopped) and a forced rm work and leave nothing behind.
void expectUsableThenRemove(const TestDaemon& daemon, const std::string& name, const std::string& context,
                            bool vm = false) {
  Reply got = daemon.call("GET", "/v1/instances/" + name);
  if (got.status == 404) {
    expectNothingLeft(daemon, context + " (never recorded)");
    return;
  }
  ASSERT_EQ(got.status, 200) << context << got.body.dump();
  json instance = got.body;
  if (vm && instance.value("state", "") == "starting") instance = daemon.waitWhile(name, "starting", 120s);
  const std::string state = instance.value("state", "");
  ASSERT_TRUE(state == "stopped" || state == "running") << context << ": stuck in " << instance.dump() << "\n"
                                                        << daemon.logTail();
  if (state == "stopped") {
    EXPECT_FALSE(instance["exit_reason"].is_null()) << context << instance.dump();
    EXPECT_TRUE(instance["pid"].is_null()) << context << instance.dump();
    // Not running: nothing of it may run or stay mounted.
    if (!vm) {
      EXPECT_EQ(join(cgroupLeftovers(daemon)), "") << context << ": stopped, yet\n" << daemon.logTail();
      EXPECT_EQ(join(mountLeftovers(daemon)), "") << context;
    } else {
      EXPECT_TRUE(ourDomains().empty()) << context << ": stopped, yet its domain runs";
    }
    Reply started = daemon.call("POST", "/v1/instances/" + name + "/start");
    EXPECT_EQ(started.status, 200) << context << ": start refused: " << started.body.dump() << "\n"
                                   << daemon.logTail();
    if (vm && started.status == 200) daemon.waitWhile(name, "starting", 120s);
  } else if (!vm) {
    EXPECT_EQ(::kill(instance["pid"].get<int>(), 0), 0) << context << ": running with a dead pid";
  }
  Reply removed = daemon.call("DELETE", "/v1/instances/" + name + "?force=true");
  EXPECT_EQ(removed.status, 200) << context << removed.body.dump() << "\n" << daemon.logTail();
  expectNothingLeft(daemon, context + " after rm");
  EXPECT_FALSE(fs::exists(daemon.containersDir() + "/" + name)) << context;
  // Its files, set aside by the rm, are deleted in the background soon after.
  const fs::path aside = fs::path(daemon.containersDir() + ".removed");
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (fs::exists(aside) && !fs::is_empty(aside) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(!fs::exists(aside) || fs::is_empty(aside)) << context << ": the removed bundle was not deleted";
}

json containerSpec(const std::string& name) {
  return {{"name", name}, {"image", "busybox"}, {"command", {"sleep", "600"}}};
}

// ---- Tests ----

TEST(Crash, CorraldListsItsFailpoints) {
  std::vector<std::string> names = listFailpoints();
  EXPECT_GE(names.size(), 10u);
  for (const char* expected :
       {"run.after-insert", "container.after-exec", "rm.after-kill", "vm.after-define"})
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
}

// Every container failpoint: the operation that crosses it kills corrald there; after the restart the
// instance is stopped or running, start and rm work, and rm leaves nothing.
TEST(Crash, ContainerKilledAtEveryFailpointLeavesNothingStuckOrLeaked) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("crash", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  daemon.stop();
  int covered = 0;
  for (const std::string& point : listFailpoints()) {
    // The VMs' points and those of the processes corrald runs for a VPC have their own tests below.
    if (point.starts_with("vm.") || point.starts_with("resolver.") || point.starts_with("lb.")) continue;
    SCOPED_TRACE(point);
    const std::string name = "c" + std::to_string(covered);
    ASSERT_TRUE(startArmed(daemon, point)) << daemon.log();
    // The operation that reaches the point; the earlier steps must not (each point is crossed once).
    if (point.starts_with("run.") || point.starts_with("container.") ||
        point == "start.after-record-running") {
      Reply run = daemon.call("POST", "/v1/instances", containerSpec(name), 10s);
      EXPECT_EQ(run.status, 0) << "corrald should have died: " << run.body.dump();
    } else {
      ASSERT_EQ(daemon.call("POST", "/v1/instances", containerSpec(name)).status, 201) << daemon.logTail();
      if (point.starts_with("start.")) {
        ASSERT_EQ(daemon.call("POST", "/v1/instances/" + name + "/stop", {{"grace_seconds", 0}}).status, 200);
        EXPECT_EQ(daemon.call("POST", "/v1/instances/" + name + "/start", nullptr, 10s).status, 0);
      } else if (point.starts_with("stop.") || point.starts_with("exit.")) {
        EXPECT_EQ(daemon.call("POST", "/v1/instances/" + name + "/stop", {{"grace_seconds", 0}}, 10s).status,
                  0);
      } else if (point.starts_with("rm.")) {
        EXPECT_EQ(daemon.call("DELETE", "/v1/instances/" + name + "?force=true", nullptr, 10s).status, 0);
      } else {
        ADD_FAILURE() << "no operation reaches failpoint " << point << ": teach this test";
        daemon.stop();
        continue;
      }
    }
    ASSERT_TRUE(diedWithin(daemon, 10s)) << "corrald did not die at " << point << "\n" << daemon.logTail();
    EXPECT_NE(daemon.log().find("failpoint " + point + ": SIGKILL"), std::string::npos) << daemon.logTail();
    ASSERT_TRUE(daemon.start()) << daemon.log();
    // What a removal set aside (to delete in the background) is deleted when corrald starts again.
    const fs::path aside = fs::path(daemon.containersDir() + ".removed");
    EXPECT_TRUE(!fs::exists(aside) || fs::is_empty(aside)) << point << ": a removed bundle was left behind";
    expectUsableThenRemove(daemon, name, "killed at " + point);
    // The name is free again.
    Reply again = daemon.call("POST", "/v1/instances", containerSpec(name));
    EXPECT_EQ(again.status, 201) << again.body.dump();
    EXPECT_EQ(daemon.call("DELETE", "/v1/instances/" + name + "?force=true").status, 200);
    expectNothingLeft(daemon, point + ": after reusing the name");
    daemon.stop();
    ++covered;
  }
  EXPECT_GE(covered, 10);
}

// The processes of `program` under `dir` whose parent is not one of them: HAProxy's master, not its worker.
std::vector<pid_t> leaders(const std::string& program, const std::string& dir) {
  const std::vector<pid_t> all = corral::testing::processesNaming(program, dir);
  std::vector<pid_t> found;
  for (pid_t pid : all) {
    auto stat = corral::testing::procStat(pid);
    if (stat && std::find(all.begin(), all.end(), stat->parent) == all.end()) found.push_back(pid);
  }
  return found;
}

// The processes corrald runs for a VPC (its resolver's dnsmasq, a load balancer's HAProxy) outlive a
// corrald killed with -9, by design: the next corrald finds them by their pid files. Killed at any point of
// their start, every one is found: the next corrald runs one of each, and deleting the VPC's objects then
// leaves none.
TEST(Crash, VpcProcessesKilledAtTheirStartAreFoundByTheNextCorrald) {
  if (!requireRoot()) GTEST_SKIP() << "namespaces, dnsmasq and HAProxy need root";
  TestDaemon daemon("crash", kDaemonArgs);
  int covered = 0;
  for (const std::string& point : listFailpoints()) {
    if (!point.starts_with("resolver.") && !point.starts_with("lb.")) continue;
    SCOPED_TRACE(point);
    const std::string vpc = "v" + std::to_string(covered);
    const std::string subnet = vpc + "-a";
    const json subnetSpec = {
        {"name", subnet}, {"vpc", vpc}, {"cidr", fmt::format("10.{}.1.0/24", 60 + covered)}};
    ASSERT_TRUE(startArmed(daemon, point)) << daemon.log();
    daemon.must("POST", "/v1/vpcs", {{"name", vpc}, {"cidr", fmt::format("10.{}.0.0/16", 60 + covered)}});
    if (point.starts_with("resolver.")) {
      // The first subnet gives the VPC its resolver.
      daemon.call("POST", "/v1/subnets", subnetSpec, 10s);
    } else {
      daemon.must("POST", "/v1/subnets", subnetSpec);
      daemon.must("POST", "/v1/target-groups", {{"name", vpc + "-tg"}, {"vpc", vpc}, {"port", 8080}});
      // The load balancer's HAProxy starts with it, or with its first listener.
      Reply made = daemon.call("POST", "/v1/load-balancers",
                               {{"name", vpc + "-lb"}, {"vpc", vpc}, {"subnets", {subnet}}}, 15s);
      if (made.status == 201)
        daemon.call("POST", "/v1/load-balancers/" + vpc + "-lb/listeners",
                    {{"port", 80}, {"default_action", {{"target_group", vpc + "-tg"}}}}, 15s);
    }
    ASSERT_TRUE(diedWithin(daemon, 15s)) << "corrald did not die at " << point << "\n" << daemon.logTail();
    ASSERT_TRUE(daemon.start()) << daemon.log();
    // The next corrald runs what the state wants: one of each for what was committed before the kill (the
    // kernel is changed before the state is saved, so the object being made may not be).
    const bool lb = point.starts_with("lb.");
    const std::string program = lb ? "haproxy" : "dnsmasq";
    const std::string dir =
        lb ? daemon.dir() + "/lb/" + vpc + "-lb/" : daemon.resolverDir() + "/" + vpc + "/";
    const std::string object = lb ? "/v1/load-balancers/" + vpc + "-lb" : "/v1/subnets/" + subnet;
    const bool kept = daemon.call("GET", object).status == 200;
    const size_t wanted = kept ? 1 : 0;
    EXPECT_TRUE(corral::testing::waitUntil([&] { return leaders(program, dir).size() == wanted; }, 15s,
                                           fmt::format("{} {} under {}", wanted, program, dir)))
        << join(vpcProcessLeftovers(daemon)) << daemon.logTail();
    if (kept) daemon.must("DELETE", object, nullptr, 200);
    for (const std::string& more : {"/v1/target-groups/" + vpc + "-tg", "/v1/subnets/" + subnet}) {
      if (daemon.call("GET", more).status == 200) daemon.must("DELETE", more, nullptr, 200);
    }
    daemon.must("DELETE", "/v1/vpcs/" + vpc, nullptr, 200);
    EXPECT_TRUE(corral::testing::waitUntil([&] { return vpcProcessLeftovers(daemon).empty(); }, 10s,
                                           "no dnsmasq or haproxy of the test daemon"))
        << join(vpcProcessLeftovers(daemon));
    daemon.stop();
    ++covered;
  }
  EXPECT_EQ(covered, 4);
}

// As the red team did: SIGKILL 1-12 ms into POST /v1/instances, wherever that lands.
TEST(Crash, ContainerKilledAtTimedMomentsOfRunLeavesNothingStuckOrLeaked) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("crash", kDaemonArgs);
  for (int delayMs : {1, 2, 3, 4, 6, 8, 10, 12}) {
    SCOPED_TRACE(delayMs);
    ASSERT_TRUE(daemon.start()) << daemon.log();
    const std::string name = fmt::format("t{}", delayMs);
    std::thread request([&] { daemon.call("POST", "/v1/instances", containerSpec(name), 10s); });
    std::this_thread::sleep_for(std::chrono::milliseconds(delayMs));
    daemon.kill9();
    request.join();
    ASSERT_TRUE(daemon.start()) << daemon.log();
    expectUsableThenRemove(daemon, name, fmt::format("killed {} ms into run", delayMs));
    daemon.stop();
  }
}

// A container on a subnet killed after its NIC was plugged in, before its command ran: after the restart
// and rm, its link is gone from the VPC's namespace.
TEST(Crash, ContainerOnASubnetLeavesNoLink) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("crash", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  daemon.must("POST", "/v1/vpcs", {{"name", "v"}, {"cidr", "10.77.0.0/16"}});
  daemon.must("POST", "/v1/subnets", {{"name", "s"}, {"vpc", "v"}, {"cidr", "10.77.1.0/24"}});
  const std::string netns = corral::testing::testNetnsPrefix() + "vpc-v";
  const size_t linksBefore = linksIn(netns).size();
  daemon.stop();
  for (const char* point : {"container.after-clone", "container.after-exec"}) {
    SCOPED_TRACE(point);
    ASSERT_TRUE(startArmed(daemon, point)) << daemon.log();
    json spec = containerSpec("n");
    spec["subnet"] = "s";
    EXPECT_EQ(daemon.call("POST", "/v1/instances", spec, 10s).status, 0);
    ASSERT_TRUE(diedWithin(daemon, 10s)) << daemon.logTail();
    ASSERT_TRUE(daemon.start()) << daemon.log();
    expectUsableThenRemove(daemon, "n", point);
    EXPECT_EQ(linksIn(netns).size(), linksBefore) << join(linksIn(netns));
    daemon.stop();
  }
  ASSERT_TRUE(daemon.start());
}

// A cgroup left with an instance's name, with a process in it (what an old corrald's crash left), does
// not block a new instance of that name: its process is killed and the group made again.
TEST(Crash, LeftoverCgroupOfTheSameNameIsClearedForANewInstance) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("crash", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  // The cgroup parent exists once a container ran.
  daemon.must("POST", "/v1/instances", containerSpec("first"));
  daemon.must("DELETE", "/v1/instances/first?force=true", nullptr, 200);

  pid_t squatter = ::fork();
  ASSERT_GE(squatter, 0);
  if (squatter == 0) {
    ::execl("/bin/sleep", "sleep", "600", nullptr);
    ::_exit(127);
  }
  std::vector<fs::path> made;
  for (const fs::path& hierarchy : cgroupHierarchies()) {
    fs::path parent = hierarchy / daemon.cgroupParent();
    if (!fs::is_directory(parent)) continue;
    fs::path dir = parent / "web";
    ASSERT_TRUE(fs::create_directory(dir)) << dir;
    std::ofstream(dir / "cgroup.procs") << squatter;
    made.push_back(dir);
  }
  ASSERT_FALSE(made.empty());
  Reply run = daemon.call("POST", "/v1/instances", containerSpec("web"));
  EXPECT_EQ(run.status, 201) << run.body.dump() << "\n" << daemon.logTail();
  int status = 0;
  auto until = Clock::now() + 5s;
  pid_t reaped = 0;
  while ((reaped = ::waitpid(squatter, &status, WNOHANG)) == 0 && Clock::now() < until)
    std::this_thread::sleep_for(10ms);
  if (reaped == 0) {
    ::kill(squatter, SIGKILL);
    ::waitpid(squatter, &status, 0);
    ADD_FAILURE() << "the process in the leftover cgroup was left running";
  } else {
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  }
  EXPECT_NE(daemon.log().find("was left over"), std::string::npos) << daemon.logTail();
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/web?force=true").status, 200);
  expectNothingLeft(daemon, "after the leftover was cleared");
}

// Item 7: a container that ended while corrald was down is "lost" with a note, not "exited" with no code.
// This test process adopts orphans (a child subreaper) and does not reap the container's init until the
// end, as a slow reaper would: the zombie keeps its pid and start time.
TEST(Crash, ContainerThatEndedWhileCorraldWasDownIsLost) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  struct SubreaperOff {
    ~SubreaperOff() { ::prctl(PR_SET_CHILD_SUBREAPER, 0); }
  } subreaperOff;
  TestDaemon daemon("crash", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json run = daemon.must("POST", "/v1/instances", containerSpec("gone"));
  const int pid = run.value("pid", 0);
  ASSERT_GT(pid, 0);
  daemon.kill9();
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  // Dead (a zombie this subreaper keeps) before corrald looks again.
  ASSERT_TRUE(corral::testing::waitUntil(
      [&] {
        const std::string stat = corral::testing::readFile(fmt::format("/proc/{}/stat", pid));
        const size_t end = stat.rfind(')');
        return end != std::string::npos && stat.compare(end + 1, 3, " Z ") == 0;
      },
      10s, fmt::format("the container's init (pid {}) to be a zombie", pid)));
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json found = daemon.call("GET", "/v1/instances/gone").body;
  if (found.value("state", "") == "running") found = daemon.waitWhile("gone", "running", 5s);
  EXPECT_EQ(found.value("state", ""), "stopped") << found.dump();
  EXPECT_EQ(found.value("exit_reason", ""), "lost") << found.dump();
  EXPECT_NE(found.value("exit_note", "").find("not running"), std::string::npos) << found.dump();
  EXPECT_TRUE(found["exit_code"].is_null());
  ::waitpid(pid, nullptr, 0);
  expectUsableThenRemove(daemon, "gone", "ended while corrald was down");
}

// Item 7: a child's OOM kill (not PID 1's) is counted in the instance; PID 1 lives on.
TEST(Crash, OomKillOfAChildIsReported) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("crash", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json spec = {{"name", "hog"},
               {"image", "busybox"},
               {"memory", "32M"},
               {"command", {"sh", "-c", "sh -c 'x=a; while true; do x=$x$x; done'; sleep 600"}}};
  json run = daemon.must("POST", "/v1/instances", spec);
  EXPECT_EQ(run.value("oom_kills", -1), 0) << run.dump();
  json instance;
  auto until = Clock::now() + 30s;
  while (Clock::now() < until) {
    instance = daemon.call("GET", "/v1/instances/hog").body;
    if (instance.value("oom_kills", 0) >= 1) break;
    std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(instance.value("state", ""), "running") << "PID 1 lives on: " << instance.dump();
  EXPECT_GE(instance.value("oom_kills", 0), 1) << instance.dump();
  EXPECT_GE(instance["usage"].value("oom_kills", 0), 1) << instance.dump();
  // Logged when it rose (checked once a second), and kept once stopped.
  until = Clock::now() + 5s;
  while (daemon.log().find("OOM-killed") == std::string::npos && Clock::now() < until)
    std::this_thread::sleep_for(100ms);
  EXPECT_NE(daemon.log().find("OOM-killed"), std::string::npos) << daemon.logTail();
  json stopped = daemon.must("POST", "/v1/instances/hog/stop", {{"grace_seconds", 0}}, 200);
  EXPECT_EQ(stopped.value("exit_reason", ""), "stopped") << stopped.dump();
  EXPECT_GE(stopped.value("oom_kills", 0), 1) << stopped.dump();
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/hog").status, 200);
}

// VMs: the points around defining, recording, stopping and removing the domain (each boot takes seconds
// under TCG, so only those).
TEST(Crash, VmKilledAtEveryFailpointLeavesNothingStuckOrLeaked) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("crash", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  daemon.stop();
  int covered = 0;
  for (const std::string& point : listFailpoints()) {
    if (!point.starts_with("vm.")) continue;
    SCOPED_TRACE(point);
    const std::string name = "v" + std::to_string(covered);
    json spec = {{"name", name}, {"kind", "vm"}, {"image", "busybox"}, {"memory", "128M"}};
    ASSERT_TRUE(startArmed(daemon, point)) << daemon.log();
    if (point == "vm.before-define" || point == "vm.after-define" || point == "vm.after-record-starting") {
      EXPECT_EQ(daemon.call("POST", "/v1/instances", spec, 30s).status, 0);
    } else {
      ASSERT_EQ(daemon.call("POST", "/v1/instances", spec).status, 201) << daemon.logTail();
      ASSERT_EQ(daemon.waitWhile(name, "starting").value("state", ""), "running") << daemon.logTail();
      if (point.starts_with("vm.stop.")) {
        EXPECT_EQ(daemon.call("POST", "/v1/instances/" + name + "/stop", {{"grace_seconds", 0}}, 30s).status,
                  0);
      } else if (point.starts_with("vm.rm.")) {
        EXPECT_EQ(daemon.call("DELETE", "/v1/instances/" + name + "?force=true", nullptr, 30s).status, 0);
      } else {
        ADD_FAILURE() << "no operation reaches failpoint " << point << ": teach this test";
        daemon.stop();
        continue;
      }
    }
    ASSERT_TRUE(diedWithin(daemon, 30s)) << "corrald did not die at " << point << "\n" << daemon.logTail();
    ASSERT_TRUE(daemon.start()) << daemon.log();
    expectUsableThenRemove(daemon, name, "killed at " + point, /*vm=*/true);
    daemon.stop();
    ++covered;
  }
  EXPECT_GE(covered, 5);
}

// Item 7: corrald killed while a VM boots; the restarted corrald finishes the boot record from the time of
// the original request, so the total covers every step.
TEST(Crash, VmReattachedMidBootKeepsATotalThatCoversItsSteps) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("crash", kDaemonArgs);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  const auto requested = std::chrono::steady_clock::now();
  Reply run = daemon.call("POST", "/v1/instances",
                          {{"name", "boot"}, {"kind", "vm"}, {"image", "busybox"}, {"memory", "128M"}});
  ASSERT_EQ(run.status, 201) << run.body.dump();
  // Killed mid boot: once QEMU runs (the instance has its pid) and the guest is not ready yet.
  json booting;
  ASSERT_TRUE(corral::testing::waitUntil(
      [&] {
        booting = daemon.call("GET", "/v1/instances/boot").body;
        return booting["pid"].is_number() || booting.value("state", "") != "starting";
      },
      60s, "QEMU's pid in the starting instance"))
      << daemon.logTail();
  ASSERT_EQ(booting.value("state", ""), "starting") << "not mid boot any more: " << booting.dump();
  daemon.kill9();  // reaps: corrald is gone when this returns
  ASSERT_TRUE(daemon.start()) << daemon.log();
  const double restartedMs =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - requested).count();
  json ready = daemon.waitWhile("boot", "starting", 120s);
  ASSERT_EQ(ready.value("state", ""), "running") << ready.dump() << daemon.logTail();
  const json& boot = ready["boot"];
  double steps = boot.value("domain_ms", 0.0) + boot.value("firmware_ms", 0.0) +
                 boot.value("kernel_ms", 0.0) + boot.value("userspace_ms", 0.0);
  EXPECT_GE(boot.value("total_ms", 0.0) + 1.0, steps) << boot.dump();
  // Counted from the original request: the kill and the restart fall inside the total.
  EXPECT_GE(boot.value("total_ms", 0.0), restartedMs - 50.0)
      << "the request was " << restartedMs << " ms before the restarted corrald was up: " << boot.dump();
  EXPECT_EQ(boot.value("daemon_restarted", false), true) << boot.dump();
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/boot?force=true").status, 200);
  EXPECT_TRUE(ourDomains().empty());
}

}  // namespace
}  // namespace corral
