// The container commands end to end: a real corrald with the busybox image, driven by the real corral
// binary (run in the foreground and detached, ps, exec, inspect, stop, rm, and the usage errors).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/client.h"
#include "tests/integration/harness.h"

extern char** environ;

namespace corral {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Per test process: ctest runs tests in parallel processes, and one test's teardown removes its parent.
const std::string kCgroupParent = fmt::format("corral-test-cli-{}", ::getpid());

using corral::testing::readFile;

struct CliResult {
  int exitCode = -1;  // -1: killed by a signal or did not finish in time
  std::string out;
  std::string err;
};

std::ostream& operator<<(std::ostream& os, const CliResult& r) {
  return os << "exit " << r.exitCode << "\nstdout: " << r.out << "\nstderr: " << r.err;
}

class CliInstancesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      if (getenv("CORRAL_REQUIRE_PRIVILEGED")) FAIL() << "containers need root";
      GTEST_SKIP() << "containers need root (namespaces, cgroups, mounts)";
    }
    char pattern[] = "/tmp/corral-cli-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    socket_ = dir_ + "/s.sock";
    std::vector<std::string> args = {CORRALD_PATH,      "--foreground",  "--socket",    socket_,
                                     "--state-dir",     dir_ + "/state", "--image-dir", CORRAL_IMAGE_DIR,
                                     "--cgroup-parent", kCgroupParent};
    for (std::string& arg : corral::testing::testNetworkArgs()) args.push_back(std::move(arg));
    daemon_ = corral::testing::spawnProcess(args, dir_ + "/corrald.out", dir_ + "/corrald.err",
                                            corral::testing::OutputMode::Truncate);
    ASSERT_GT(daemon_, 0);
    auto until = Clock::now() + 15s;
    while (Clock::now() < until) {
      int status = 0;
      if (::waitpid(daemon_, &status, WNOHANG) == daemon_) {
        daemon_ = 0;
        FAIL() << "corrald exited during startup:\n" << readFile(dir_ + "/corrald.err");
      }
      if (api::Client(socket_, 1s).call(api::GetInfo{})) return;
      std::this_thread::sleep_for(20ms);
    }
    FAIL() << "corrald did not answer within 15 s:\n" << readFile(dir_ + "/corrald.err");
  }

  void TearDown() override {
    if (daemon_ > 0) {
      // Leave no container behind: force-remove whatever the test created, then stop the daemon.
      api::Client client(socket_, 30s);
      if (auto list = client.call(api::ListInstances{}); list && list->contains("instances")) {
        for (const auto& instance : (*list)["instances"]) {
          (void)client.call(api::RemoveInstance{instance.value("name", ""), true});
        }
      }
      ::kill(daemon_, SIGTERM);
      int status = 0;
      auto until = Clock::now() + 10s;
      while (::waitpid(daemon_, &status, WNOHANG) == 0) {
        if (Clock::now() > until) {
          ::kill(daemon_, SIGKILL);
          ::waitpid(daemon_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(20ms);
      }
    }
    removeCgroupParent();
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  // corrald leaves its (by now empty) parent cgroup behind; under v1 there is one per controller hierarchy.
  static void removeCgroupParent() {
    std::error_code ignored;
    std::filesystem::path root = "/sys/fs/cgroup";
    std::vector<std::filesystem::path> candidates = {root / kCgroupParent};
    for (const auto& entry : std::filesystem::directory_iterator(root, ignored)) {
      candidates.push_back(entry.path() / kCgroupParent);
    }
    for (const auto& path : candidates) {
      if (std::filesystem::is_directory(path, ignored)) ::rmdir(path.c_str());
    }
  }

  CliResult cli(std::vector<std::string> args, std::chrono::milliseconds deadline = 30s) {
    args.insert(args.begin(), {CORRAL_CLI_PATH, "--socket", socket_});
    std::string out = dir_ + "/cli.out";
    std::string err = dir_ + "/cli.err";
    CliResult result;
    pid_t pid = corral::testing::spawnProcess(args, out, err, corral::testing::OutputMode::Truncate);
    if (pid <= 0) return result;
    std::optional<int> status = corral::testing::waitWithDeadline(pid, deadline);
    result.exitCode = status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    result.out = readFile(out);
    result.err = readFile(err);
    return result;
  }

  std::string dir_;
  std::string socket_;
  pid_t daemon_ = 0;
};

TEST_F(CliInstancesTest, ForegroundRunStreamsOutputAndPassesTheExitCode) {
  CliResult hi = cli({"run", "--rm", "--", "echo", "hi"});
  EXPECT_EQ(hi.exitCode, 0) << hi;
  EXPECT_EQ(hi.out, "hi\n") << hi;

  CliResult five = cli({"run", "--rm", "--name", "five", "--", "sh", "-c", "exit 5"});
  EXPECT_EQ(five.exitCode, 5) << five;

  // --rm removed both: nothing is left in ps.
  CliResult ps = cli({"ps"});
  EXPECT_EQ(ps.exitCode, 0) << ps;
  EXPECT_EQ(ps.out.find("five"), std::string::npos) << ps;
}

TEST_F(CliInstancesTest, DetachedLifecycle) {
  CliResult run = cli({"run", "-d", "--name", "s1", "--", "sleep", "100"});
  ASSERT_EQ(run.exitCode, 0) << run;
  EXPECT_NE(run.out.find("s1 running (ready in "), std::string::npos) << run;

  CliResult ps = cli({"ps"});
  EXPECT_EQ(ps.exitCode, 0) << ps;
  EXPECT_NE(ps.out.find("NAME"), std::string::npos) << ps;
  bool listedRunning = false;
  std::istringstream lines(ps.out);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with("s1 ") && line.find("running") != std::string::npos) listedRunning = true;
  }
  EXPECT_TRUE(listedRunning) << ps;

  CliResult exec = cli({"exec", "s1", "--", "hostname"});
  EXPECT_EQ(exec.exitCode, 0) << exec;
  EXPECT_EQ(exec.out, "s1\n") << exec;

  CliResult failing = cli({"exec", "s1", "--", "sh", "-c", "exit 3"});
  EXPECT_EQ(failing.exitCode, 3) << failing;

  CliResult inspect = cli({"inspect", "s1"});
  EXPECT_EQ(inspect.exitCode, 0) << inspect;
  EXPECT_NE(inspect.out.find("total = clone "), std::string::npos) << inspect;
  EXPECT_NE(inspect.out.find(" + exec "), std::string::npos) << inspect;

  CliResult stop = cli({"stop", "-t", "1", "s1"});
  EXPECT_EQ(stop.exitCode, 0) << stop;
  CliResult stopped = cli({"ps"});
  EXPECT_EQ(stopped.out.find("running"), std::string::npos) << stopped;

  CliResult rm = cli({"rm", "s1"});
  EXPECT_EQ(rm.exitCode, 0) << rm;
  CliResult gone = cli({"inspect", "s1"});
  EXPECT_EQ(gone.exitCode, 1) << gone;
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
    CliResult result = cli(c.args);
    EXPECT_EQ(result.exitCode, 2) << c.args[1] << ": " << result;
    EXPECT_NE(result.err.find(c.named), std::string::npos) << result;
  }

  CliResult unknownImage = cli({"run", "--rm", "--image", "no-such-image", "--", "true"});
  EXPECT_EQ(unknownImage.exitCode, 1) << unknownImage;
  EXPECT_NE(unknownImage.err.find("image"), std::string::npos) << unknownImage;
}

}  // namespace
}  // namespace corral
