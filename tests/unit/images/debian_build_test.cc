// image build --debian: what is refused, and the mmdebstrap command line.
#include "images/oci/debian_build.h"

#include <gtest/gtest.h>

namespace corral::images {
namespace {

TEST(DebianBuild, RefusesBadInputNamingTheField) {
  auto refused = [](DebianBuild build) {
    auto status = validateDebianBuild(build);
    return status ? std::string("(accepted)") : status.error().field();
  };
  DebianBuild good;
  good.name = "flask";
  good.packages = {"python3-flask"};
  EXPECT_EQ(refused(good), "(accepted)");
  DebianBuild b = good;
  b.packages = {};
  EXPECT_EQ(refused(b), "packages");
  b = good;
  b.packages = {"python3", "Bad_Name"};
  EXPECT_EQ(refused(b), "packages[1]");
  b = good;
  b.packages = {"python3;rm -rf /"};
  EXPECT_EQ(refused(b), "packages[0]");
  b = good;
  b.name = "Flask";
  EXPECT_EQ(refused(b), "name");
  b = good;
  b.env = {"NOVALUE"};
  EXPECT_EQ(refused(b), "env[0]");
  b = good;
  b.workingDir = "relative";
  EXPECT_EQ(refused(b), "working_dir");
  b = good;
  b.appDir = "/nonexistent/corral/app";
  EXPECT_EQ(refused(b), "app_dir");
  b = good;
  b.suite = "sid";
  EXPECT_EQ(refused(b), "suite");
}

TEST(DebianBuild, RunsMmdebstrapOnMinbaseWithThePackages) {
  DebianBuild build;
  build.name = "web";
  build.packages = {"python3-flask", "curl"};
  build.appDir = "/srv/my app's dir";
  auto command = mmdebstrapCommand(build, "/var/lib/corral/images/.build-1-0.tar");
  std::vector<std::string> want{
      "mmdebstrap",
      "--variant=minbase",
      "--mode=root",
      "--format=tar",
      "--include=python3-flask,curl",
      "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin",
      "--customize-hook=mkdir -p \"$1/app\"",
      "--customize-hook=sync-in '/srv/my app'\\''s dir' /app",
      "bookworm",
      "/var/lib/corral/images/.build-1-0.tar"};
  EXPECT_EQ(command, want);
  build.mirror = "http://deb.debian.org/debian";
  EXPECT_EQ(mmdebstrapCommand(build, "/x.tar").back(), "http://deb.debian.org/debian");
}

}  // namespace
}  // namespace corral::images
