// docker run's rules for an image's process: argv from Entrypoint/Cmd/command, the environment, and runc's
// User lookup in /etc/passwd and /etc/group; reading through a layer stack where no root is needed
// (whiteouts and opaque directories need root: tests/integration/image_containers_test.cc).
#include "images/oci/launch.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace corral::images {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPasswd =
    "root:x:0:0:root:/root:/bin/sh\n"
    "# a comment\n"
    "\n"
    "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
    "app:x:1000:1000:App:/home/app:/bin/sh\n"
    "broken:x:notanumber:1::/:/bin/sh\n"
    "nohome:x:1001:1001:::/bin/sh\n";
constexpr const char* kGroup =
    "root:x:0:\n"
    "app:x:1000:\n"
    "staff:x:50:app,other\n"
    "audio:x:29:other,app\n"
    "video:x:44:other\n";

ImageConfig configWith(std::vector<std::string> entrypoint, std::vector<std::string> cmd) {
  ImageConfig config;
  config.entrypoint = std::move(entrypoint);
  config.cmd = std::move(cmd);
  return config;
}

TEST(LaunchArgv, FollowsDockerRun) {
  using Argv = std::vector<std::string>;
  // No command: Entrypoint + Cmd.
  EXPECT_EQ(*launchArgv(configWith({"/entry", "-x"}, {"serve", "--port=80"}), {}),
            (Argv{"/entry", "-x", "serve", "--port=80"}));
  // A command replaces Cmd and keeps Entrypoint.
  EXPECT_EQ(*launchArgv(configWith({"/entry"}, {"serve"}), {"migrate", "now"}),
            (Argv{"/entry", "migrate", "now"}));
  // Only Cmd: the command replaces it.
  EXPECT_EQ(*launchArgv(configWith({}, {"/bin/sh"}), {"/bin/echo", "hi"}), (Argv{"/bin/echo", "hi"}));
  EXPECT_EQ(*launchArgv(configWith({}, {"/bin/sh", "-c", "x"}), {}), (Argv{"/bin/sh", "-c", "x"}));
  // Only Entrypoint.
  EXPECT_EQ(*launchArgv(configWith({"/entry"}, {}), {}), (Argv{"/entry"}));
}

TEST(LaunchArgv, NothingToRunNamesTheCommand) {
  auto argv = launchArgv(ImageConfig{}, {});
  ASSERT_FALSE(argv.has_value());
  EXPECT_EQ(argv.error().field(), "command");
  EXPECT_NE(argv.error().message().find("no Entrypoint or Cmd"), std::string::npos) << argv.error().message();
  auto empty = launchArgv(configWith({}, {""}), {});
  ASSERT_FALSE(empty.has_value());
  EXPECT_EQ(empty.error().field(), "command");
}

TEST(LaunchEnv, UserEntriesReplaceTheImagesAndHomeComesFromPasswd) {
  ImageConfig config;
  config.env = {"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "MODE=image"};
  LaunchUser user;
  user.home = "/home/app";
  EXPECT_EQ(launchEnv(config, {"MODE=user", "EXTRA=1"}, user),
            (std::vector<std::string>{"PATH=/usr/local/bin:/usr/bin", "LANG=C.UTF-8", "MODE=user", "EXTRA=1",
                                      "HOME=/home/app"}));
  // A HOME given by the image or the user stands.
  config.env.push_back("HOME=/srv");
  EXPECT_EQ(launchEnv(config, {}, user).back(), "HOME=/srv");
  EXPECT_EQ(launchEnv(ImageConfig{}, {"HOME=/mine"}, user), (std::vector<std::string>{"HOME=/mine"}));
}

TEST(ResolveUser, EmptyIsRootWithRootsHome) {
  auto user = resolveUser("", kPasswd, kGroup);
  ASSERT_TRUE(user.has_value()) << user.error().message();
  EXPECT_EQ(user->uid, 0u);
  EXPECT_EQ(user->gid, 0u);
  EXPECT_EQ(user->home, "/root");
  EXPECT_TRUE(user->additionalGids.empty());
  // No passwd at all: still root, home "/".
  auto bare = resolveUser("", std::nullopt, std::nullopt);
  ASSERT_TRUE(bare.has_value());
  EXPECT_EQ(*bare, LaunchUser{});
}

TEST(ResolveUser, NameTakesTheEntrysIdsAndTheGroupsListingIt) {
  auto user = resolveUser("app", kPasswd, kGroup);
  ASSERT_TRUE(user.has_value()) << user.error().message();
  EXPECT_EQ(user->uid, 1000u);
  EXPECT_EQ(user->gid, 1000u);
  EXPECT_EQ(user->home, "/home/app");
  EXPECT_EQ(user->additionalGids, (std::vector<uint32_t>{50, 29}));
}

TEST(ResolveUser, UidFindsItsEntryOrStandsAlone) {
  auto known = resolveUser("1000", kPasswd, kGroup);
  ASSERT_TRUE(known.has_value());
  EXPECT_EQ(known->gid, 1000u) << "the entry's gid";
  EXPECT_EQ(known->additionalGids, (std::vector<uint32_t>{50, 29}));
  auto unknown = resolveUser("4242", kPasswd, kGroup);
  ASSERT_TRUE(unknown.has_value());
  EXPECT_EQ(unknown->uid, 4242u);
  EXPECT_EQ(unknown->gid, 0u);
  EXPECT_EQ(unknown->home, "/");
  EXPECT_TRUE(unknown->additionalGids.empty());
  auto noFiles = resolveUser("7", std::nullopt, std::nullopt);
  ASSERT_TRUE(noFiles.has_value());
  EXPECT_EQ(noFiles->uid, 7u);
}

TEST(ResolveUser, ExplicitGroupReplacesTheGidAndBringsNoSupplementaryGroups) {
  auto byName = resolveUser("app:staff", kPasswd, kGroup);
  ASSERT_TRUE(byName.has_value()) << byName.error().message();
  EXPECT_EQ(byName->uid, 1000u);
  EXPECT_EQ(byName->gid, 50u);
  EXPECT_TRUE(byName->additionalGids.empty());
  auto numeric = resolveUser("1000:4343", kPasswd, kGroup);
  ASSERT_TRUE(numeric.has_value());
  EXPECT_EQ(numeric->uid, 1000u);
  EXPECT_EQ(numeric->gid, 4343u);
  auto uidAndGroupName = resolveUser("4242:video", kPasswd, kGroup);
  ASSERT_TRUE(uidAndGroupName.has_value());
  EXPECT_EQ(uidAndGroupName->uid, 4242u);
  EXPECT_EQ(uidAndGroupName->gid, 44u);
}

TEST(ResolveUser, UnresolvableNamesAreRefusedNamingTheUserField) {
  auto missing = resolveUser("nobody", kPasswd, kGroup);
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(missing.error().field(), "user");
  EXPECT_NE(missing.error().message().find("no user \"nobody\" in the image's /etc/passwd"),
            std::string::npos)
      << missing.error().message();
  auto noPasswd = resolveUser("app", std::nullopt, kGroup);
  ASSERT_FALSE(noPasswd.has_value());
  EXPECT_NE(noPasswd.error().message().find("(the image has none)"), std::string::npos);
  auto missingGroup = resolveUser("app:wheel", kPasswd, kGroup);
  ASSERT_FALSE(missingGroup.has_value());
  EXPECT_EQ(missingGroup.error().field(), "user");
  EXPECT_NE(missingGroup.error().message().find("no group \"wheel\" in the image's /etc/group"),
            std::string::npos);
  for (const char* bad : {"app:", "99999999999", "1:99999999999", "broken"}) {
    auto refused = resolveUser(bad, kPasswd, kGroup);
    ASSERT_FALSE(refused.has_value()) << bad;
    EXPECT_EQ(refused.error().field(), "user") << bad;
  }
}

class ReadThroughLayersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / fmt::format("corral-launch-{}", ::getpid());
    fs::remove_all(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path layer(const std::string& name) {
    fs::create_directories(dir_ / name);
    return dir_ / name;
  }
  void write(const fs::path& path, const std::string& content) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << content;
  }
  fs::path dir_;
};

TEST_F(ReadThroughLayersTest, TheTopmostLayerWithTheFileWins) {
  fs::path base = layer("base"), middle = layer("middle"), top = layer("top");
  write(base / "etc/passwd", "base");
  write(middle / "etc/passwd", "middle");
  write(top / "etc/other", "x");
  auto text = readThroughLayers({base, middle, top}, "/etc/passwd");
  ASSERT_TRUE(text.has_value()) << text.error().message();
  EXPECT_EQ(text->value_or("absent"), "middle");
  text = readThroughLayers({base}, "/etc/passwd");
  EXPECT_EQ(text->value_or("absent"), "base");
  text = readThroughLayers({base, middle, top}, "/etc/group");
  ASSERT_TRUE(text.has_value());
  EXPECT_FALSE(text->has_value());
}

TEST_F(ReadThroughLayersTest, NonFilesAndNonDirectoriesOnThePathHideWhatIsBelow) {
  fs::path base = layer("base"), top = layer("top");
  write(base / "etc/passwd", "base");
  // A file where a directory was: the layers below are hidden at that path.
  write(top / "etc", "not a directory");
  auto text = readThroughLayers({base, top}, "/etc/passwd");
  ASSERT_TRUE(text.has_value());
  EXPECT_FALSE(text->has_value());
  // A symlink at the file is not followed (it would resolve on the host).
  fs::path linked = layer("linked");
  fs::create_directories(linked / "etc");
  fs::create_symlink("/etc/hostname", linked / "etc/passwd");
  text = readThroughLayers({base, linked}, "/etc/passwd");
  ASSERT_TRUE(text.has_value());
  EXPECT_FALSE(text->has_value());
  // A directory at the file.
  fs::path dirLayer = layer("dir");
  fs::create_directories(dirLayer / "etc/passwd");
  text = readThroughLayers({base, dirLayer}, "/etc/passwd");
  ASSERT_TRUE(text.has_value());
  EXPECT_FALSE(text->has_value());
}

// docker run --user: the instance's user replaces the image's, resolved by the same rules through the same
// files, and a refusal says whose text it was.
TEST_F(ReadThroughLayersTest, AUserOverrideReplacesTheImagesUser) {
  fs::path base = layer("base");
  write(base / "etc/passwd", kPasswd);
  write(base / "etc/group", kGroup);
  ImageConfig config = configWith({}, {"/bin/sh"});
  config.user = "app";
  auto asImage = launchProcess(config, {base}, {}, {});
  ASSERT_TRUE(asImage.has_value()) << asImage.error().message();
  EXPECT_EQ(asImage->user.uid, 1000u);
  auto overridden = launchProcess(config, {base}, {}, {}, "daemon:staff");
  ASSERT_TRUE(overridden.has_value()) << overridden.error().message();
  EXPECT_EQ(overridden->user, (LaunchUser{.uid = 1, .gid = 50, .additionalGids = {}, .home = "/usr/sbin"}));
  EXPECT_NE(std::find(overridden->env.begin(), overridden->env.end(), "HOME=/usr/sbin"),
            overridden->env.end());
  auto refused = launchProcess(config, {base}, {}, {}, "ghost");
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error().field(), "user");
  EXPECT_NE(refused.error().message().find("user \"ghost\": no user \"ghost\""), std::string::npos)
      << refused.error().message();
  EXPECT_EQ(refused.error().message().find("image User"), std::string::npos) << refused.error().message();
}

TEST_F(ReadThroughLayersTest, RefusesRelativeAndDotDotPaths) {
  EXPECT_FALSE(readThroughLayers({layer("a")}, "etc/passwd").has_value());
  EXPECT_FALSE(readThroughLayers({layer("a")}, "/etc/../../passwd").has_value());
}

}  // namespace
}  // namespace corral::images
