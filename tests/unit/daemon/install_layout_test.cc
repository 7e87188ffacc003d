// corrald's build-tree vs installed-tree layout (daemon/install_layout.h), on trees made for the purpose.
#include "daemon/install_layout.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace corral::daemon {
namespace {

class InstallLayoutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/corral-layout-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::filesystem::path file(const std::filesystem::path& relative) {
    std::filesystem::create_directories((root_ / relative).parent_path());
    std::ofstream(root_ / relative) << "x";
    return root_ / relative;
  }
  std::filesystem::path root_;
};

TEST_F(InstallLayoutTest, FromThePrefixBinDirTheHelpersAreInLibCorral) {
  EXPECT_EQ(pkgLibDirFromBinDir(), "../lib/corral");
}

TEST_F(InstallLayoutTest, ABuildTreeHasTheReaperNextToCorrald) {
  std::filesystem::path corrald = file("build/corrald");
  file("build/corral-reaper");
  std::filesystem::create_directories(root_ / "build/images/busybox");
  InstallLayout layout = resolveInstallLayout(corrald, "../lib/corral");
  EXPECT_FALSE(layout.installed);
  EXPECT_EQ(layout.helperDir, root_ / "build");
  // A build tree's images are given with --image-dir (tests, scripts/demo): no default from the tree.
  EXPECT_FALSE(layout.imageDir);
}

TEST_F(InstallLayoutTest, AnInstalledTreeHasHelpersAndImagesUnderLibCorral) {
  std::filesystem::path corrald = file("opt/corral/bin/corrald");
  file("opt/corral/lib/corral/corral-reaper");
  std::filesystem::create_directories(root_ / "opt/corral/lib/corral/images/busybox/rootfs");
  InstallLayout layout = resolveInstallLayout(corrald, "../lib/corral");
  EXPECT_TRUE(layout.installed);
  EXPECT_EQ(layout.helperDir, root_ / "opt/corral/lib/corral");
  ASSERT_TRUE(layout.imageDir);
  EXPECT_EQ(*layout.imageDir, root_ / "opt/corral/lib/corral/images");
}

TEST_F(InstallLayoutTest, AnInstalledTreeWithoutImagesLeavesTheImageDirToTheDefault) {
  std::filesystem::path corrald = file("usr/bin/corrald");
  file("usr/lib/corral/corral-reaper");
  InstallLayout layout = resolveInstallLayout(corrald, "../lib/corral");
  EXPECT_TRUE(layout.installed);
  EXPECT_EQ(layout.helperDir, root_ / "usr/lib/corral");
  EXPECT_FALSE(layout.imageDir);
}

}  // namespace
}  // namespace corral::daemon
