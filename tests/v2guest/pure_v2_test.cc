// What only a pure cgroup-v2 host shows, mostly through corrald as users drive it: the limits in the
// instance's group, the container's own view of /sys/fs/cgroup, an OOM kill counted from memory.events, stop
// and rm emptying the whole group, and the v2 driver killing through cgroup.kill. Runs in the test guest
// (tests/v2guest/README.md); on a v1 or hybrid host every test here fails, so it is never run there.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "container/cgroup.h"
#include "container/cgroup_mode.h"
#include "tests/integration/harness.h"

namespace corral::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::vector<std::string> kDaemonArgs = {"--accelerator", "tcg"};

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::vector<pid_t> pidsIn(const fs::path& group) {
  std::vector<pid_t> pids;
  std::istringstream in(readFile(group / "cgroup.procs"));
  for (pid_t pid; in >> pid;) pids.push_back(pid);
  return pids;
}

bool processExists(pid_t pid) {
  return ::kill(pid, 0) == 0 || errno != ESRCH;
}

// The guest itself: cgroup2 alone at /sys/fs/cgroup with the controllers corral limits with enabled, so
// every other test here (and the integration suites next to it) ran on what a pure v2 user has.
TEST(PureV2, HostMountsOnlyCgroup2WithTheControllersEnabled) {
  auto mode = container::detectCgroupMode("/sys/fs/cgroup");
  ASSERT_TRUE(mode) << mode.error().message();
  EXPECT_EQ(*mode, container::CgroupMode::Unified) << "this suite runs on a pure cgroup-v2 host only";
  int cgroup2Mounts = 0;
  for (const std::string& line : lines(readFile("/proc/self/mountinfo"))) {
    // "... - FSTYPE SOURCE OPTIONS": the fields after the separator.
    std::istringstream fields(line.substr(line.find(" - ") + 3));
    std::string fstype;
    fields >> fstype;
    EXPECT_NE(fstype, "cgroup") << "a cgroup v1 hierarchy is mounted: " << line;
    if (fstype == "cgroup2") {
      ++cgroup2Mounts;
      EXPECT_NE(line.find(" /sys/fs/cgroup "), std::string::npos) << line;
    }
  }
  EXPECT_EQ(cgroup2Mounts, 1);
  const std::string enabled = " " + trimmed(readFile("/sys/fs/cgroup/cgroup.subtree_control")) + " ";
  for (const char* controller : {"cpu", "memory", "pids"})
    EXPECT_NE(enabled.find(fmt::format(" {} ", controller)), std::string::npos) << controller << enabled;
}

// killAll writes cgroup.kill, which takes the whole subtree down at once: a process in a group below the
// container's (which the pid-by-pid fallback, reading only the group's own cgroup.procs, never sees) dies
// too.
TEST(PureV2, KillAllUsesCgroupKillAndReachesNestedGroups) {
  ASSERT_EQ(::geteuid(), 0) << "needs root";
  const std::string parent = fmt::format("corral-test-v2kill-{}", ::getpid());
  auto cgroup = container::createCgroup(
      container::CgroupMode::Unified, "nested",
      {.memoryBytes = {}, .cpuMillis = {}, .pids = 8, .cpuShares = {}, .hugepages = {}},
      {.root = "/sys/fs/cgroup", .parent = parent});
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  const fs::path group = (*cgroup)->path();
  ASSERT_TRUE(fs::exists(group / "cgroup.kill")) << "the kernel has cgroup.kill (5.14 and later)";
  const fs::path nested = group / "inner";
  ASSERT_TRUE(fs::create_directory(nested)) << nested;

  pid_t outer = ::fork();
  if (outer == 0) {
    for (;;) ::pause();
  }
  pid_t inner = ::fork();
  if (inner == 0) {
    for (;;) ::pause();
  }
  ASSERT_GT(outer, 0);
  ASSERT_GT(inner, 0);
  ASSERT_TRUE((*cgroup)->addProcess(outer));
  {
    std::ofstream join(nested / "cgroup.procs");
    join << inner << std::flush;
    ASSERT_TRUE(join.good()) << "moving " << inner << " into " << nested;
  }
  EXPECT_EQ(pidsIn(nested), std::vector<pid_t>{inner});

  ASSERT_TRUE((*cgroup)->killAll());
  for (pid_t pid : {outer, inner}) {
    int status = 0;
    pid_t reaped = 0;
    for (auto until = Clock::now() + 5s; Clock::now() < until; std::this_thread::sleep_for(10ms)) {
      reaped = ::waitpid(pid, &status, WNOHANG);
      if (reaped != 0) break;
    }
    if (reaped == 0) {
      ADD_FAILURE() << "pid " << pid << " lives on after killAll"
                    << (pid == inner ? " (in the nested group: killed pid by pid, not through cgroup.kill)"
                                     : "");
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      continue;
    }
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "pid " << pid << ": " << status;
  }
  EXPECT_TRUE(fs::remove(nested)) << nested;
  EXPECT_TRUE((*cgroup)->destroy());
  ::rmdir((fs::path("/sys/fs/cgroup") / parent).c_str());
}

class PureV2Daemon : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(::geteuid(), 0) << "needs root";
    auto mode = container::detectCgroupMode("/sys/fs/cgroup");
    ASSERT_TRUE(mode && *mode == container::CgroupMode::Unified)
        << "this suite runs on a pure cgroup-v2 host";
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }

  // POST /v1/instances with the busybox image; the instance as answered.
  json run(const std::string& name, std::vector<std::string> command, json extra = json::object()) {
    json spec = {{"name", name}, {"image", "busybox"}, {"command", std::move(command)}};
    spec.update(extra);
    return daemon_.must("POST", "/v1/instances", spec);
  }

  // The instance's group, from its "cgroup" field, checked to be PARENT/NAME right below the v2 root.
  fs::path groupOf(const json& instance) {
    const fs::path group = instance.value("cgroup", "");
    EXPECT_EQ(group, fs::path("/sys/fs/cgroup") / daemon_.cgroupParent() / instance.value("name", ""))
        << instance.dump();
    return group;
  }

  // `corral exec`'s API: the command's stdout (the test fails when it did not exit 0).
  std::string exec(const std::string& name, std::vector<std::string> command) {
    Reply reply = daemon_.call("POST", fmt::format("/v1/instances/{}/exec", name), {{"command", command}});
    EXPECT_EQ(reply.status, 200) << reply.body.dump();
    EXPECT_EQ(reply.body.value("exit_code", -1), 0) << reply.body.dump();
    return reply.body.value("stdout", "");
  }

  TestDaemon daemon_{"v2", kDaemonArgs};
};

// memory, cpus and pids land in memory.max (and no swap beyond it), cpu.max and pids.max of the
// instance's own group, which holds the container's init; a busy init is throttled by cpu.max.
TEST_F(PureV2Daemon, LimitsLandInTheInstancesGroup) {
  json instance =
      run("limits", {"sh", "-c", "while :; do :; done"}, {{"memory", "48M"}, {"cpus", 0.25}, {"pids", 40}});
  ASSERT_EQ(instance.value("state", ""), "running") << instance.dump();
  const fs::path group = groupOf(instance);
  EXPECT_EQ(trimmed(readFile(group / "memory.max")), std::to_string(48 << 20));
  EXPECT_EQ(trimmed(readFile(group / "memory.swap.max")), "0");
  EXPECT_EQ(trimmed(readFile(group / "cpu.max")), "25000 100000");
  EXPECT_EQ(trimmed(readFile(group / "pids.max")), "40");
  EXPECT_EQ(pidsIn(group), std::vector<pid_t>{instance.value("pid", 0)});
  EXPECT_EQ(readFile(fmt::format("/proc/{}/cgroup", instance.value("pid", 0))),
            fmt::format("0::/{}/limits\n", daemon_.cgroupParent()));
  std::string cpuStat;
  for (auto until = Clock::now() + 20s; Clock::now() < until; std::this_thread::sleep_for(100ms)) {
    cpuStat = readFile(group / "cpu.stat");
    if (cpuStat.find("\nnr_throttled 0\n") == std::string::npos) break;
  }
  EXPECT_NE(cpuStat.find("\nnr_throttled "), std::string::npos) << cpuStat;
  EXPECT_EQ(cpuStat.find("\nnr_throttled 0\n"), std::string::npos) << "never throttled: " << cpuStat;

  // Without limits the files say "max": nothing was written for what the spec did not ask.
  json plain = run("plain", {"sleep", "600"});
  const fs::path plainGroup = groupOf(plain);
  EXPECT_EQ(trimmed(readFile(plainGroup / "pids.max")), "max");
  EXPECT_EQ(trimmed(readFile(plainGroup / "cpu.max")), "max 100000");
}

// Inside, /sys/fs/cgroup is a read-only cgroup2 mount rooted at the container's own group: its limits at
// the top, only its own processes, none of the host's groups, and nothing to change.
TEST_F(PureV2Daemon, ContainerSeesOnlyItsOwnGroupReadOnly) {
  json instance = run("view", {"sleep", "600"}, {{"memory", "40M"}, {"pids", 30}});
  ASSERT_EQ(instance.value("state", ""), "running") << instance.dump();
  const fs::path group = groupOf(instance);

  EXPECT_EQ(exec("view", {"cat", "/proc/self/cgroup"}), "0::/\n");
  EXPECT_EQ(exec("view", {"cat", "/sys/fs/cgroup/memory.max"}), std::to_string(40 << 20) + "\n");
  EXPECT_EQ(exec("view", {"cat", "/sys/fs/cgroup/pids.max"}), "30\n");
  // Its init (pid 1 inside) and the exec'd cat: every process of the group, none other.
  EXPECT_EQ(exec("view", {"cat", "/sys/fs/cgroup/cgroup.procs"}).substr(0, 2), "1\n");
  std::string entries = exec("view", {"ls", "-A", "/sys/fs/cgroup"});
  EXPECT_EQ(entries.find(daemon_.cgroupParent()), std::string::npos) << entries;
  EXPECT_EQ(entries.find("corral"), std::string::npos) << entries;
  EXPECT_NE(entries.find("memory.max"), std::string::npos) << entries;

  std::string mounts = exec("view", {"grep", " /sys/fs/cgroup ", "/proc/self/mountinfo"});
  ASSERT_EQ(lines(mounts).size(), 1u) << mounts;
  EXPECT_NE(mounts.find(" - cgroup2 "), std::string::npos) << mounts;
  EXPECT_NE(mounts.find(" / /sys/fs/cgroup ro,"), std::string::npos)
      << "rooted at its group, read-only: " << mounts;

  Reply write = daemon_.call("POST", "/v1/instances/view/exec",
                             {{"command", {"sh", "-c", "echo 1000 > /sys/fs/cgroup/pids.max"}}});
  EXPECT_NE(write.body.value("exit_code", 0), 0) << write.body.dump();
  Reply mkdir =
      daemon_.call("POST", "/v1/instances/view/exec", {{"command", {"mkdir", "/sys/fs/cgroup/sub"}}});
  EXPECT_NE(mkdir.body.value("exit_code", 0), 0) << mkdir.body.dump();
  EXPECT_EQ(trimmed(readFile(group / "pids.max")), "30");
  EXPECT_FALSE(fs::exists(group / "sub"));
}

// A child's OOM kill is counted from the group's memory.events, live and after the stop, and the
// container's init lives on.
TEST_F(PureV2Daemon, OomKillIsCountedFromMemoryEvents) {
  json instance =
      run("hog", {"sh", "-c", "sh -c 'x=a; while true; do x=$x$x; done'; sleep 600"}, {{"memory", "32M"}});
  const fs::path group = groupOf(instance);
  json now;
  for (auto until = Clock::now() + 60s; Clock::now() < until; std::this_thread::sleep_for(200ms)) {
    now = daemon_.call("GET", "/v1/instances/hog").body;
    if (now.value("oom_kills", 0) >= 1) break;
  }
  EXPECT_EQ(now.value("state", ""), "running") << now.dump();
  ASSERT_GE(now.value("oom_kills", 0), 1) << now.dump();
  std::string events = readFile(group / "memory.events");
  EXPECT_NE(events.find(fmt::format("oom_kill {}\n", now.value("oom_kills", 0))), std::string::npos)
      << events << now.dump();
  json stopped = daemon_.must("POST", "/v1/instances/hog/stop", {{"grace_seconds", 0}}, 200);
  EXPECT_GE(stopped.value("oom_kills", 0), 1) << stopped.dump();
  EXPECT_FALSE(fs::exists(group));
}

// A container whose processes ignore SIGTERM and keep forking: stop (past its grace) and rm --force kill
// every process of the group through cgroup.kill, and the group is gone.
TEST_F(PureV2Daemon, StopAndForcedRemoveEmptyTheWholeGroup) {
  const std::vector<std::string> stubborn = {
      "sh", "-c",
      "trap '' TERM; (trap '' TERM; while true; do sleep 1 & wait; done) & while true; do sleep 1; done"};
  for (const char* how : {"stop", "rm"}) {
    SCOPED_TRACE(how);
    const std::string name = fmt::format("stubborn-{}", how);
    json instance = run(name, stubborn);
    const fs::path group = groupOf(instance);
    ASSERT_TRUE(fs::exists(group / "cgroup.kill")) << "the kernel has cgroup.kill (5.14 and later)";
    std::vector<pid_t> pids;
    for (auto until = Clock::now() + 20s; Clock::now() < until && pids.size() < 3;
         std::this_thread::sleep_for(100ms))
      pids = pidsIn(group);
    ASSERT_GE(pids.size(), 3u) << "init, the subshell and a sleep";

    if (std::string(how) == "stop") {
      json stopped =
          daemon_.must("POST", fmt::format("/v1/instances/{}/stop", name), {{"grace_seconds", 1}}, 200);
      EXPECT_EQ(stopped.value("state", ""), "stopped") << stopped.dump();
      EXPECT_EQ(stopped.value("exit_signal", 0), SIGKILL) << stopped.dump();
    } else {
      EXPECT_EQ(daemon_.call("DELETE", fmt::format("/v1/instances/{}?force=true", name)).status, 200);
      EXPECT_EQ(daemon_.call("GET", fmt::format("/v1/instances/{}", name)).status, 404);
    }
    EXPECT_FALSE(fs::exists(group)) << group;
    for (pid_t pid : pids)
      EXPECT_FALSE(processExists(pid)) << "pid " << pid << " of " << group << " lives on";
  }
}

}  // namespace
}  // namespace corral::testing
