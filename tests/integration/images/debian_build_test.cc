// image build --debian for real: mmdebstrap from Debian's mirror (the one outside source tests may use),
// imported as a one-layer image with the app directory at /app.
#include "images/oci/debian_build.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/integration/images/tree.h"
#include "tests/integration/skip_guard.h"

namespace corral::images {
namespace {

namespace fs = std::filesystem;

TEST(DebianBuildTest, BuildsAOneLayerImageWithThePackagesAndTheApp) {
  if (::geteuid() != 0) {
    if (std::getenv("CORRAL_REQUIRE_PRIVILEGED"))
      FAIL() << "needs root (mmdebstrap --mode=root, layer unpacking)";
    GTEST_SKIP() << "needs root (mmdebstrap --mode=root, layer unpacking)";
  }
  fs::path work = fs::path("/var/tmp") / fmt::format("corral-debian-build-test-{}", ::getpid());
  fs::remove_all(work);
  fs::create_directories(work / "app");
  std::ofstream(work / "app/hello.py") << "print('hello from /app')\n";
  auto store = ImageStore::open(work / "store");
  ASSERT_TRUE(store) << store.error().message();

  DebianBuild build;
  build.name = "py";
  build.packages = {"python3-minimal"};
  build.cmd = {"python3", "/app/hello.py"};
  build.env = {"GREETING=hi"};
  build.appDir = work / "app";
  std::vector<std::string> steps;
  auto image = buildDebianImage(*store, build, [&](const ImportProgress& p) { steps.push_back(p.step); });
  ASSERT_TRUE(image) << image.error().message();
  ASSERT_EQ(image->layerDirs.size(), 1u);
  const fs::path& root = image->layerDirs[0];
  EXPECT_TRUE(fs::exists(root / "usr/bin/python3")) << "python3-minimal is installed";
  EXPECT_TRUE(fs::exists(root / "etc/debian_version"));
  EXPECT_EQ(fixtures::readFile(root / "etc/debian_version").substr(0, 3), "12.");
  EXPECT_EQ(fixtures::readFile(root / "app/hello.py"), "print('hello from /app')\n");
  EXPECT_TRUE(fs::is_empty(root / "var/lib/apt/lists") || !fs::exists(root / "var/lib/apt/lists/partial") ||
              fs::is_empty(root / "var/lib/apt/lists/partial"));
  EXPECT_EQ(image->config.cmd, build.cmd);
  EXPECT_EQ(image->config.workingDir, "/app");
  EXPECT_NE(std::find(image->config.env.begin(), image->config.env.end(), "GREETING=hi"),
            image->config.env.end());
  EXPECT_TRUE(std::any_of(steps.begin(), steps.end(),
                          [](const std::string& s) { return s.starts_with("mmdebstrap: "); }));
  for (const auto& entry : fs::directory_iterator(work / "store")) {
    EXPECT_FALSE(entry.path().filename().string().starts_with(".build-")) << "the tar is removed";
  }

  // A mirror out of reach (nothing listens on 127.0.0.1:9): mmdebstrap's own words come back, and
  // nothing is left (an unknown package fails the same way, only after a whole minbase install).
  DebianBuild unreachable = build;
  unreachable.name = "unreachable";
  unreachable.mirror = "http://127.0.0.1:9/debian";
  auto refused = buildDebianImage(*store, unreachable);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "packages");
  EXPECT_NE(refused.error().message().find("127.0.0.1:9"), std::string::npos) << refused.error().message();
  auto listed = store->list();
  ASSERT_TRUE(listed);
  EXPECT_EQ(listed->size(), 1u);
  fs::remove_all(work);
}

}  // namespace
}  // namespace corral::images
