// The integration tests' skip decision (tests/integration/host_needs.h, skip_guard.h): a skip stands only
// when the host truly lacks a declared cgroup mode or kernel feature; under CORRAL_REQUIRE_PRIVILEGED a
// missing root or tool, or any undeclared skip, fails.
#include "tests/integration/host_needs.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace corral::testing {
namespace {

using container::CgroupMode;

HostFacts hybridRootHost() {
  return {
      .root = true, .cgroupMode = CgroupMode::Hybrid, .kernelRelease = "6.1.0-18-amd64", .missingTools = {}};
}

TEST(HostNeeds, RunsWhenTheHostHasEverythingDeclared) {
  HostNeeds needs{.cgroupModes = {CgroupMode::Hybrid, CgroupMode::Legacy},
                  .kernelFeatures = {KernelFeature::CgroupKill}};
  EXPECT_EQ(decideHost(needs, hybridRootHost(), true).verdict, Verdict::Run);
  EXPECT_EQ(decideHost({}, hybridRootHost(), true).verdict, Verdict::Run);
}

TEST(HostNeeds, AMissingCgroupModeSkipsEvenInCiAndSaysWhatTheHostIs) {
  HostFacts host = hybridRootHost();
  host.cgroupMode = CgroupMode::Unified;
  HostDecision decision = decideHost({.cgroupModes = {CgroupMode::Hybrid}}, host, true);
  EXPECT_EQ(decision.verdict, Verdict::Skip);
  EXPECT_EQ(decision.reason, "needs a v1 (hybrid) host; this host is v2 (unified)");
}

TEST(HostNeeds, AnOlderKernelSkipsNamingTheFeatureAndRelease) {
  HostFacts host = hybridRootHost();
  host.kernelRelease = "5.10.0-28-amd64";
  HostDecision decision = decideHost({.kernelFeatures = {KernelFeature::CgroupKill}}, host, true);
  EXPECT_EQ(decision.verdict, Verdict::Skip);
  EXPECT_EQ(decision.reason, "needs cgroup.kill (Linux 5.14); this kernel is 5.10.0-28-amd64");
  host.kernelRelease = "5.14.0";
  EXPECT_EQ(decideHost({.kernelFeatures = {KernelFeature::CgroupKill}}, host, true).verdict, Verdict::Run);
  host.kernelRelease = "garbage";
  EXPECT_EQ(decideHost({.kernelFeatures = {KernelFeature::CgroupKill}}, host, true).verdict, Verdict::Fail);
}

TEST(HostNeeds, RootAndToolsCanBeHadSoCiFailsWithoutThem) {
  HostFacts user = hybridRootHost();
  user.root = false;
  EXPECT_EQ(decideHost({}, user, false).verdict, Verdict::Skip);
  EXPECT_EQ(decideHost({}, user, true).verdict, Verdict::Fail);

  HostFacts noTshark = hybridRootHost();
  noTshark.missingTools = {"/usr/bin/tshark"};
  HostNeeds needs{.tools = {"/usr/bin/tshark"}};
  EXPECT_EQ(decideHost(needs, noTshark, false).verdict, Verdict::Skip);
  HostDecision ci = decideHost(needs, noTshark, true);
  EXPECT_EQ(ci.verdict, Verdict::Fail);
  EXPECT_EQ(ci.reason, "/usr/bin/tshark is missing (scripts/install-deps installs it)");
}

TEST(HostNeeds, KernelReleasesParse) {
  EXPECT_EQ(parseKernelRelease("6.18.44-fc-v1045"), (KernelVersion{6, 18}));
  EXPECT_EQ(parseKernelRelease("5.4"), (KernelVersion{5, 4}));
  EXPECT_FALSE(parseKernelRelease("six"));
  EXPECT_FALSE(parseKernelRelease("6-1"));
  EXPECT_LT((KernelVersion{5, 9}), (KernelVersion{5, 14}));
}

TEST(SkipGuard, OnlyADeclaredSkipPassesUnderRequirePrivileged) {
  EXPECT_TRUE(skipIsFailure(true, false));
  EXPECT_FALSE(skipIsFailure(true, true));
  EXPECT_FALSE(skipIsFailure(false, false));
}

// The guard itself, in this binary: a checked skip is recorded for the running test under its own name.
TEST(SkipGuard, ACheckedSkipIsRecordedForTheCurrentTest) {
  declareCheckedSkip("needs a v1 (hybrid) host; this host is v2 (unified)");
  auto it = declaredSkips().find("SkipGuard.ACheckedSkipIsRecordedForTheCurrentTest");
  ASSERT_NE(it, declaredSkips().end());
  EXPECT_EQ(it->second, "needs a v1 (hybrid) host; this host is v2 (unified)");
  declaredSkips().erase(it);
}

// Run only by the test below, in a child of this binary: a skip as any test might write it, and one through
// CORRAL_REQUIRE_HOST of a cgroup mode this host lacks.
TEST(SkipGuardChild, DISABLED_UndeclaredSkip) {
  GTEST_SKIP() << "no reason anyone checked";
}
TEST(SkipGuardChild, DISABLED_DeclaredSkip) {
  container::CgroupMode other =
      container::detectCgroupMode().value_or(CgroupMode::Unified) == CgroupMode::Unified
          ? CgroupMode::Hybrid
          : CgroupMode::Unified;
  CORRAL_REQUIRE_HOST({.root = false, .cgroupModes = {other}});
}

struct ChildRun {
  int status = -1;     // exit status
  std::string output;  // stdout, as ctest reads it ("[  SKIPPED ]" there makes ctest count a skip)
};

// This binary running one of the tests above, with CORRAL_REQUIRE_PRIVILEGED as given.
ChildRun runChild(const std::string& test, bool requirePrivileged) {
  std::vector<std::string> args = {"/proc/self/exe", "--gtest_also_run_disabled_tests",
                                   "--gtest_filter=SkipGuardChild.DISABLED_" + test};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<char*> env;
  for (char** e = environ; *e != nullptr; ++e)
    if (!std::string(*e).starts_with("CORRAL_REQUIRE_PRIVILEGED=")) env.push_back(*e);
  std::string require = "CORRAL_REQUIRE_PRIVILEGED=1";
  if (requirePrivileged) env.push_back(require.data());
  env.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  char outPath[] = "/tmp/corral-skip-guard-XXXXXX";
  const int outFd = ::mkstemp(outPath);
  if (outFd < 0) return {};
  ::close(outFd);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, outPath, O_WRONLY | O_TRUNC, 0);
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), env.data());
  posix_spawn_file_actions_destroy(&actions);
  ChildRun run;
  if (rc == 0) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    run.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
  std::ifstream in(outPath);
  std::stringstream text;
  text << in.rdbuf();
  run.output = text.str();
  ::unlink(outPath);
  return run;
}

TEST(SkipGuard, InCiAnUndeclaredSkipFailsTheTestAndADeclaredOneStands) {
  EXPECT_EQ(runChild("UndeclaredSkip", false).status, 0);
  ChildRun ci = runChild("UndeclaredSkip", true);
  EXPECT_EQ(ci.status, 1) << ci.output;
  EXPECT_NE(ci.output.find("[  FAILED  ] SkipGuardChild.DISABLED_UndeclaredSkip"), std::string::npos)
      << ci.output;
  EXPECT_EQ(ci.output.find("[  SKIPPED ]"), std::string::npos) << "ctest would call it skipped:\n"
                                                               << ci.output;
  ChildRun declared = runChild("DeclaredSkip", true);
  EXPECT_EQ(declared.status, 0) << declared.output;
  EXPECT_NE(declared.output.find("[  SKIPPED ] SkipGuardChild.DISABLED_DeclaredSkip"), std::string::npos)
      << declared.output;
}

}  // namespace
}  // namespace corral::testing
