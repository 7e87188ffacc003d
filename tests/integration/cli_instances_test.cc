// The container commands end to end: a real corrald with the busybox image, driven by the real corral
// binary (run in the foreground and detached, ps, exec, inspect, stop, rm, and the usage errors).
#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace corral {
namespace {

using namespace std::chrono_literals;
using corral::testing::CliRun;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

class CliInstancesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "containers need root (namespaces, cgroups, mounts)";
    ASSERT_TRUE(daemon_.start()) << "corrald did not answer within 30 s (or exited):\n" << daemon_.log();
  }

  CliRun cli(std::vector<std::string> args, std::chrono::milliseconds deadline = 30s) const {
    return daemon_.cli(std::move(args), deadline);
  }

  // Per test process: ctest runs tests in parallel processes, and one test's teardown removes its parent.
  // Containers only: TCG spares the accelerator probe.
  TestDaemon daemon_{"cli", {"--accelerator", "tcg"}};
};

TEST_F(CliInstancesTest, ForegroundRunStreamsOutputAndPassesTheExitCode) {
  CliRun hi = cli({"run", "--rm", "--", "echo", "hi"});
  EXPECT_EQ(hi.code, 0) << hi;
  EXPECT_EQ(hi.out, "hi\n") << hi;

  CliRun five = cli({"run", "--rm", "--name", "five", "--", "sh", "-c", "exit 5"});
  EXPECT_EQ(five.code, 5) << five;

  // --rm removed both: nothing is left in ps.
  CliRun ps = cli({"ps"});
  EXPECT_EQ(ps.code, 0) << ps;
  EXPECT_EQ(ps.out.find("five"), std::string::npos) << ps;
}

TEST_F(CliInstancesTest, DetachedLifecycle) {
  CliRun run = cli({"run", "-d", "--name", "s1", "--", "sleep", "100"});
  ASSERT_EQ(run.code, 0) << run;
  EXPECT_NE(run.out.find("s1 running (ready in "), std::string::npos) << run;

  CliRun ps = cli({"ps"});
  EXPECT_EQ(ps.code, 0) << ps;
  EXPECT_NE(ps.out.find("NAME"), std::string::npos) << ps;
  bool listedRunning = false;
  std::istringstream lines(ps.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("s1 ") && line.find("running") != std::string::npos) listedRunning = true;
  }
  EXPECT_TRUE(listedRunning) << ps;

  CliRun exec = cli({"exec", "s1", "--", "hostname"});
  EXPECT_EQ(exec.code, 0) << exec;
  EXPECT_EQ(exec.out, "s1\n") << exec;

  CliRun failing = cli({"exec", "s1", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(failing.code, 3) << failing;

  CliRun inspect = cli({"inspect", "s1"});
  EXPECT_EQ(inspect.code, 0) << inspect;
  EXPECT_NE(inspect.out.find("total = clone "), std::string::npos) << inspect;
  EXPECT_NE(inspect.out.find(" + exec "), std::string::npos) << inspect;

  CliRun stop = cli({"stop", "-t", "1", "s1"});
  EXPECT_EQ(stop.code, 0) << stop;
  CliRun stopped = cli({"ps"});
  EXPECT_EQ(stopped.out.find("running"), std::string::npos) << stopped;

  CliRun rm = cli({"rm", "s1"});
  EXPECT_EQ(rm.code, 0) << rm;
  CliRun gone = cli({"inspect", "s1"});
  EXPECT_EQ(gone.code, 1) << gone;
}

// Orphans of a PID 1 that never waits (sh exec'ing sleep): a background counter reports the zombies whose
// parent is PID 1 while it sleeps.
const std::vector<std::string> kOrphansUnderANonReapingPid1 = {
    "sh", "-c",
    "for i in 1 2 3; do (sleep 0.05 &); done; "
    "(sleep 0.5; z=0; for f in /proc/[0-9]*/stat; do read -r line < $f 2>/dev/null || continue; "
    "set -- ${line##*) }; [ \"$1\" = Z ] && [ \"$2\" = 1 ] && z=$((z+1)); done; echo zombies=$z) & "
    "exec sleep 1"};

TEST_F(CliInstancesTest, InitReapsZombiesThatAPlainPid1Leaves) {
  std::vector<std::string> plain = {"run", "--rm", "--"};
  plain.insert(plain.end(), kOrphansUnderANonReapingPid1.begin(), kOrphansUnderANonReapingPid1.end());
  CliRun without = cli(plain);
  EXPECT_EQ(without.code, 0) << without;
  EXPECT_EQ(without.out.find("zombies=0"), std::string::npos) << "the problem --init solves: " << without;
  EXPECT_NE(without.out.find("zombies="), std::string::npos) << without;

  std::vector<std::string> withInit = {"run", "--rm", "--init", "--"};
  withInit.insert(withInit.end(), kOrphansUnderANonReapingPid1.begin(), kOrphansUnderANonReapingPid1.end());
  CliRun with = cli(withInit);
  EXPECT_EQ(with.code, 0) << with;
  EXPECT_EQ(with.out, "zombies=0\n") << with;

  // The command's exit code (or 128+signal) is the container's.
  CliRun seven = cli({"run", "--rm", "--init", "--", "sh", "-c", "exit 7"});
  EXPECT_EQ(seven.code, 7) << seven;
  CliRun killed = cli({"run", "--rm", "--init", "--", "sh", "-c", "kill -9 $$"});
  EXPECT_EQ(killed.code, 128 + 9) << killed;
  // PID 1 is the reaper, bound read-only; the command is its child.
  CliRun pid1 = cli(
      {"run", "--rm", "--init", "--", "sh", "-c",
       "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $PPID; (echo x > /dev/init) 2>/dev/null || echo ro"});
  EXPECT_EQ(pid1.code, 0) << pid1;
  EXPECT_NE(pid1.out.find("/dev/init -- sh -c"), std::string::npos) << pid1;
  EXPECT_NE(pid1.out.find("\n1\nro\n"), std::string::npos) << pid1;
}

TEST_F(CliInstancesTest, StopReachesTheCommandThroughInit) {
  // sleep as PID 1 has no handler, so the kernel drops SIGTERM and only the SIGKILL after -t ends it; under
  // --init the reaper forwards TERM to sleep (not PID 1 there), which dies of it at once.
  CliRun run = cli({"run", "-d", "--init", "--name", "t1", "--", "sleep", "1000"});
  ASSERT_EQ(run.code, 0) << run;
  auto start = std::chrono::steady_clock::now();
  CliRun stop = cli({"stop", "-t", "20", "t1"});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(stop.code, 0) << stop;
  EXPECT_LT(took, 10s) << "SIGTERM did not reach sleep";
  auto instance = daemon_.call("GET", "/v1/instances/t1").body;
  EXPECT_EQ(instance.value("exit_reason", ""), "stopped") << instance.dump();
  EXPECT_EQ(instance.value("exit_code", -1), 128 + 15) << instance.dump();
  EXPECT_EQ(instance["spec"].value("init", false), true) << instance.dump();
  CliRun inspect = cli({"inspect", "t1"});
  EXPECT_NE(inspect.out.find("corral-reaper is PID 1"), std::string::npos) << inspect;
  EXPECT_EQ(cli({"rm", "t1"}).code, 0);

  // A VM refuses it: its PID 1 is corral-init.
  CliRun vm = cli({"run", "--vm", "--init", "--name", "v1"});
  EXPECT_NE(vm.code, 0) << vm;
  EXPECT_NE(vm.err.find("init"), std::string::npos) << vm;
}

TEST_F(CliInstancesTest, BadInputIsAUsageErrorNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string named;
  };
  for (const Case& c : std::vector<Case>{{{"run", "--rm", "--"}, "--"},
                                         {{"run", "--rm"}, "--"},
                                         {{"run", "--cpus", "abc", "--", "true"}, "--cpus"},
                                         {{"run", "--pids", "x", "--", "true"}, "--pids"},
                                         {{"run", "--vm", "--container", "--", "true"}, "--vm"},
                                         {{"stop", "-t", "-1", "s1"}, "-t"}}) {
    CliRun result = cli(c.args);
    EXPECT_EQ(result.code, 2) << c.args[1] << ": " << result;
    EXPECT_NE(result.err.find(c.named), std::string::npos) << result;
  }

  CliRun unknownImage = cli({"run", "--rm", "--image", "no-such-image", "--", "true"});
  EXPECT_EQ(unknownImage.code, 1) << unknownImage;
  EXPECT_NE(unknownImage.err.find("image"), std::string::npos) << unknownImage;
}

// stop, start and rm take several names like docker's: each is done in turn, a name that fails is reported
// by name while the others still go ahead, and the exit status is 1 when any failed.
TEST_F(CliInstancesTest, StopStartAndRmTakeSeveralNames) {
  for (const char* name : {"m1", "m2"}) {
    CliRun run = cli({"run", "-d", "--name", name, "--", "sleep", "100"});
    ASSERT_EQ(run.code, 0) << run;
  }
  auto stateOf = [&](const std::string& name) {
    for (const auto& instance : daemon_.instances())
      if (instance.value("name", "") == name) return instance.value("state", "");
    return std::string("absent");
  };

  CliRun stop = cli({"stop", "-t", "1", "m1", "nope", "m2"});
  EXPECT_EQ(stop.code, 1) << stop;
  EXPECT_NE(stop.out.find("stopped m1: "), std::string::npos) << stop;
  EXPECT_NE(stop.out.find("stopped m2: "), std::string::npos) << stop;
  EXPECT_NE(stop.err.find("instance \"nope\" not found"), std::string::npos) << stop;
  EXPECT_EQ(stateOf("m1"), "stopped");
  EXPECT_EQ(stateOf("m2"), "stopped");

  CliRun start = cli({"start", "m1", "m2"});
  EXPECT_EQ(start.code, 0) << start;
  EXPECT_NE(start.out.find("m1 running"), std::string::npos) << start;
  EXPECT_NE(start.out.find("m2 running"), std::string::npos) << start;
  EXPECT_EQ(stateOf("m1"), "running");
  EXPECT_EQ(stateOf("m2"), "running");

  CliRun json = cli({"stop", "--json", "-t", "1", "m1", "m2"});
  EXPECT_EQ(json.code, 0) << json;
  auto answers = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(answers.is_array()) << json;
  EXPECT_EQ(answers.size(), 2u) << json;

  // Without -f a stopped instance is removed; "nope" fails alone.
  CliRun rm = cli({"rm", "nope", "m1", "m2"});
  EXPECT_EQ(rm.code, 1) << rm;
  EXPECT_EQ(rm.out, "removed m1\nremoved m2\n") << rm;
  EXPECT_NE(rm.err.find("instance \"nope\" not found"), std::string::npos) << rm;
  EXPECT_TRUE(daemon_.instances().empty()) << daemon_.instances().dump();

  CliRun help = cli({"rm", "--help"});
  EXPECT_NE(help.out.find("Usage: corral rm NAME [NAME...]"), std::string::npos) << help;
}

// `corral rm -f` of several names is one request (POST /v1/instances/remove), reported per name in order;
// a name given twice is refused (naming it) before anything is removed.
TEST_F(CliInstancesTest, RmOfSeveralNamesIsOneRequest) {
  for (const char* name : {"r1", "r2", "r3"}) {
    CliRun run = cli({"run", "-d", "--name", name, "--", "sleep", "100"});
    ASSERT_EQ(run.code, 0) << run;
  }
  CliRun twice = cli({"rm", "-f", "r1", "r2", "r1"});
  EXPECT_EQ(twice.code, 1) << twice;
  EXPECT_NE(twice.err.find("names[2]"), std::string::npos) << twice;
  EXPECT_EQ(daemon_.instances().size(), 3u) << daemon_.instances().dump();

  CliRun rm = cli({"rm", "-f", "r2", "nope", "r1", "r3"});
  EXPECT_EQ(rm.code, 1) << rm;
  EXPECT_EQ(rm.out, "removed r2\nremoved r1\nremoved r3\n") << rm;
  EXPECT_NE(rm.err.find("instance \"nope\" not found"), std::string::npos) << rm;
  EXPECT_TRUE(daemon_.instances().empty()) << daemon_.instances().dump();
  const std::string log = daemon_.log();
  EXPECT_EQ(corral::testing::occurrences(log, "POST /v1/instances/remove 200"), 1u) << log;
  EXPECT_EQ(corral::testing::occurrences(log, "DELETE /v1/instances/"), 0u) << log;

  for (const char* name : {"j1", "j2"})
    ASSERT_EQ(cli({"run", "-d", "--name", name, "--", "sleep", "100"}).code, 0);
  CliRun json = cli({"rm", "--json", "-f", "j1", "j2"});
  EXPECT_EQ(json.code, 0) << json;
  auto answers = nlohmann::json::parse(json.out, nullptr, false);
  ASSERT_TRUE(answers.is_array()) << json;
  ASSERT_EQ(answers.size(), 2u) << json;
  EXPECT_EQ(answers[1]["deleted"].value("name", ""), "j2") << json;
}

// `--memory 1` is refused by the API before anything is made, naming the flag's field ("memory", not the
// cgroup's "memoryBytes"), and nothing is left behind.
TEST_F(CliInstancesTest, TooLittleMemoryIsRefusedNamingMemory) {
  CliRun tiny = cli({"run", "-d", "--name", "tiny", "--memory", "1", "--", "sleep", "100"});
  EXPECT_EQ(tiny.code, 1) << tiny;
  EXPECT_NE(tiny.err.find("(field: memory)"), std::string::npos) << tiny;
  EXPECT_NE(tiny.err.find("at least 4M"), std::string::npos) << tiny;
  EXPECT_TRUE(daemon_.instances().empty()) << daemon_.instances().dump();
}

// What corrald sends back reaches the terminal escaped: a name with an escape sequence (here echoed in a
// "not found" error) prints as "\x1b[2J", never as the raw bytes that would clear the screen.
TEST_F(CliInstancesTest, ControlCharactersFromTheDaemonArePrintedEscaped) {
  CliRun inspect = cli({"inspect", "a\x1b[2Jb\x07"});
  EXPECT_EQ(inspect.code, 1) << inspect;
  EXPECT_NE(inspect.err.find("a\\x1b[2Jb\\x07"), std::string::npos) << inspect;
  for (const std::string& output : {inspect.out, inspect.err}) {
    EXPECT_EQ(output.find('\x1b'), std::string::npos) << inspect;
    EXPECT_EQ(output.find('\x07'), std::string::npos) << inspect;
  }
  CliRun vpc = cli({"vpc", "create", "a\x1b]0;owned\x07", "--cidr", "10.0.0.0/16"});
  EXPECT_EQ(vpc.code, 1) << vpc;
  EXPECT_NE(vpc.err.find("(field: name)"), std::string::npos) << vpc;
  EXPECT_EQ(vpc.err.find('\x1b'), std::string::npos) << vpc;
  EXPECT_TRUE(daemon_.list("vpcs").empty());
}

}  // namespace
}  // namespace corral
