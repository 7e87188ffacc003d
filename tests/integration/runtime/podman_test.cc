// corral-runtime under podman (`podman --runtime PATH`, conmon its caller), on the busybox rootfs with
// private storage (--root, --runroot, --tmpdir), cgroupfs and no network (podman's networks would change the
// host's firewall); the same scenarios with crun as the reference must agree. podman's default ulimits
// (RLIMIT_NOFILE 1048576) need CAP_SYS_RESOURCE, which this host lacks, for crun as much as for
// corral-runtime: both run with --ulimit nofile=1024:1024 --ulimit nproc=1024:1024. podman runs in a private
// mount namespace without /sys/fs/cgroup/unified, which crun 1.8 needs on this hybrid host.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/runtime/runtime_test_support.h"
#include "tests/integration/skip_guard.h"

namespace corral {
namespace {

namespace fs = std::filesystem;

using runtime_tests::Outcome;

std::string quote(const std::string& text) {
  std::string quoted = "'";
  for (char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

class Podman : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      if (std::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) FAIL() << "needs root";
      GTEST_SKIP() << "needs root";
    }
    if (::access("/usr/bin/podman", X_OK) != 0) {
      if (std::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) FAIL() << "podman is not installed";
      GTEST_SKIP() << "podman is not installed (scripts/install-deps installs it)";
    }
    char pattern[] = "/tmp/corral-podman-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    rootfs_ = runtime_tests::copyImageRootfs(dir_);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    podman("/usr/bin/crun", "rm -f -a");
    fs::remove_all(dir_);
  }

  // `podman ARGS` (a shell fragment) with `runtime`, in its private mount namespace; stdout and stderr
  // together. With `terminal`, under script(1) so podman has a pty to hand on.
  Outcome podman(const std::string& runtime, const std::string& args, bool terminal = false) {
    const std::string command = "podman --root " + (dir_ / "root").string() + " --runroot " +
                                (dir_ / "runroot").string() + " --tmpdir " + (dir_ / "tmp").string() +
                                " --cgroup-manager cgroupfs --events-backend file --runtime " + runtime +
                                " " + args;
    std::string shell = "umount -l /sys/fs/cgroup/unified 2>/dev/null; exec " +
                        (terminal ? "script -qec " + quote(command) + " /dev/null" : command);
    return runtime_tests::runCommand({"unshare", "-m", "--propagation", "private", "sh", "-c", shell},
                                     dir_ / ("out-" + std::to_string(serial_++)));
  }
  std::string runFlags() const {
    return "--network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 --rootfs " + rootfs_.string();
  }

  fs::path dir_;

  fs::path rootfs_;  // this test's copy of the image's root
  int serial_ = 0;
  const std::vector<std::string> runtimes_ = {CORRAL_RUNTIME_PATH, "/usr/bin/crun"};
};

TEST_F(Podman, RunExitCodeAndOutputAgreeWithCrun) {
  std::vector<std::string> outputs;
  for (const auto& runtime : runtimes_) {
    Outcome outcome = podman(runtime, "run --rm " + runFlags() + " /bin/sh -c " +
                                          quote("echo hi-$(id -u); ls /dev | tr '\\n' ' '; grep -c . "
                                                "/proc/self/mountinfo >/dev/null; exit 4"));
    EXPECT_EQ(outcome.exitCode, 4) << runtime << ": " << outcome.out;
    outputs.push_back(outcome.out);
  }
  EXPECT_EQ(outputs[0], outputs[1]);
  EXPECT_NE(outputs[0].find("hi-0"), std::string::npos) << outputs[0];
}

TEST_F(Podman, ExecPsAndStopAgreeWithCrun) {
  for (const auto& runtime : runtimes_) {
    SCOPED_TRACE(runtime);
    const std::string name = "p-" + fs::path(runtime).filename().string();
    Outcome started = podman(runtime, "run -d --name " + name + " " + runFlags() + " /bin/sh -c " +
                                          quote("trap 'exit 3' TERM; while true; do sleep 0.05; done"));
    ASSERT_EQ(started.exitCode, 0) << started.out;
    Outcome exec = podman(runtime, "exec " + name + " /bin/sh -c " + quote("echo in-$((40+2)); exit 6"));
    EXPECT_EQ(exec.exitCode, 6) << exec.out;
    EXPECT_NE(exec.out.find("in-42"), std::string::npos) << exec.out;
    Outcome top = podman(runtime, "top " + name + " pid args");
    EXPECT_EQ(top.exitCode, 0) << top.out;
    EXPECT_NE(top.out.find("/bin/sh -c trap"), std::string::npos) << top.out;
    Outcome stopped = podman(runtime, "stop -t 5 " + name);
    EXPECT_EQ(stopped.exitCode, 0) << stopped.out;
    Outcome code = podman(runtime, "inspect --format '{{.State.ExitCode}}' " + name);
    EXPECT_EQ(code.out, "3\n") << code.out;
    EXPECT_EQ(podman(runtime, "rm " + name).exitCode, 0);
  }
}

TEST_F(Podman, TerminalAgreesWithCrun) {
  std::vector<std::string> outputs;
  for (const auto& runtime : runtimes_) {
    Outcome outcome = podman(
        runtime,
        "run --rm -t " + runFlags() + " /bin/sh -c " + quote("tty; test -t 0 && echo stdin-is-a-tty; exit 2"),
        true);
    EXPECT_EQ(outcome.exitCode, 2) << runtime << ": " << outcome.out;
    EXPECT_NE(outcome.out.find("/dev/pts/0"), std::string::npos) << runtime << ": " << outcome.out;
    EXPECT_NE(outcome.out.find("stdin-is-a-tty"), std::string::npos) << runtime << ": " << outcome.out;
    outputs.push_back(outcome.out);
  }
  EXPECT_EQ(outputs[0], outputs[1]);
}

}  // namespace
}  // namespace corral
