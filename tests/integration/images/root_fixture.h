// The base of the image integration tests: root (chroot, mknod, overlayfs), a private mount namespace for
// the whole test binary (its mounts end with the process, whatever happens), and a scratch directory per
// test under /var/tmp (a real filesystem with trusted xattrs, unlike some /tmp mounts).
#pragma once

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "tests/integration/images/tree.h"
#include "tests/integration/skip_guard.h"

namespace corral::images::fixtures {

class ImagesRootTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() == 0 && ::unshare(CLONE_NEWNS) == 0)
      ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr);
  }

  // Derived SetUp()s call this first and return when IsSkipped() or HasFatalFailure().
  void SetUp() override {
    if (::geteuid() != 0) {
      if (std::getenv("CORRAL_REQUIRE_PRIVILEGED"))
        FAIL() << "needs root (chroot, mknod, overlayfs, loop mounts)";
      GTEST_SKIP() << "needs root (chroot, mknod, overlayfs, loop mounts)";
    }
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    work_ = std::filesystem::path("/var/tmp") /
            fmt::format("corral-{}-{}-{}", test->test_suite_name(), ::getpid(), test->name());
    std::filesystem::remove_all(work_);
    std::filesystem::create_directories(work_);
  }
  void TearDown() override {
    if (!work_.empty()) std::filesystem::remove_all(work_);
  }

  // A shell command in the scratch directory (umoci, skopeo, openssl...); its output kept for the failure.
  void run(const std::string& command) {
    std::string full =
        fmt::format("cd '{}' && ( {} ) >>'{}/tools.log' 2>&1", work_.string(), command, work_.string());
    ASSERT_EQ(std::system(full.c_str()), 0) << command << "\n" << readFile(work_ / "tools.log");
  }

  std::filesystem::path work_;
};

}  // namespace corral::images::fixtures
