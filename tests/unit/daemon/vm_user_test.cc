// corrald --vm-user: the option's choices, and the state directory's modes that let the user reach VMS_DIR
// and nothing else (run as root, which can chmod and look up users; skipped otherwise).
#include "daemon/vm_user.h"

#include <gtest/gtest.h>
#include <pwd.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;

mode_t modeOf(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

class VmUserDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/corral-vmuser-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  }
  void TearDown() override {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
  fs::path dir_;
};

TEST(VmUserOption, RootAutoAndANamedUser) {
  auto root = parseVmUser("root");
  ASSERT_TRUE(root) << root.error().message();
  EXPECT_EQ(root->mode, VmUserChoice::Mode::root);
  EXPECT_FALSE(root->user.has_value());
  EXPECT_EQ(root->name, "root");

  auto automatic = parseVmUser("auto");
  ASSERT_TRUE(automatic) << automatic.error().message();
  EXPECT_EQ(automatic->mode, VmUserChoice::Mode::automatic);
  const passwd* expected = ::getpwnam(kAutoVmUser);
  EXPECT_EQ(automatic->user.has_value(), expected != nullptr);
  EXPECT_EQ(automatic->name, expected != nullptr ? kAutoVmUser : "root");
  EXPECT_FALSE(automatic->reason.empty());

  auto nobody = parseVmUser("nobody");
  ASSERT_TRUE(nobody) << nobody.error().message();
  EXPECT_EQ(nobody->mode, VmUserChoice::Mode::named);
  ASSERT_TRUE(nobody->user.has_value());
  EXPECT_EQ(nobody->user->uid, ::getpwnam("nobody")->pw_uid);

  auto unknown = parseVmUser("corral-no-such-user");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().field(), "vm-user");
  EXPECT_NE(unknown.error().message().find("corral-no-such-user"), std::string::npos);
}

TEST_F(VmUserDir, ANamedUserThatCannotReachVmsDirIsRefusedAndAutoFallsBackToRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chmod for another user";
  const fs::path state = dir_ / "state";
  fs::create_directories(state / "vms");
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);  // the user cannot pass the test's own directory

  auto named = parseVmUser("nobody");
  ASSERT_TRUE(named);
  Status refused = settleVmUser(*named, state, state / "vms");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "vm-user");
  EXPECT_NE(refused.error().message().find("\"" + dir_.string() + "\" is not searchable"), std::string::npos)
      << refused.error().message();

  VmUserChoice automatic = *named;
  automatic.mode = VmUserChoice::Mode::automatic;
  Status settled = settleVmUser(automatic, state, state / "vms");
  ASSERT_TRUE(settled) << settled.error().message();
  EXPECT_FALSE(automatic.user.has_value());
  EXPECT_EQ(automatic.name, "root");
  EXPECT_NE(automatic.reason.find("cannot reach VMS_DIR"), std::string::npos) << automatic.reason;
  EXPECT_EQ(modeOf(state), 0700u);

  ASSERT_EQ(::chmod(dir_.c_str(), 0711), 0);
  auto again = parseVmUser("nobody");
  ASSERT_TRUE(again);
  ASSERT_TRUE(settleVmUser(*again, state, state / "vms"));
  EXPECT_TRUE(again->user.has_value());
  EXPECT_EQ(modeOf(state), 0711u);
  EXPECT_EQ(modeOf(state / "vms"), 0711u);
}

TEST_F(VmUserDir, EverythingInThePassableStateDirectoryButVmsDirIsPrivate) {
  const fs::path state = dir_ / "state";
  fs::create_directories(state / "vms" / "web-1");
  fs::create_directories(state / "images" / "layers");
  fs::create_directories(state / "containers");
  std::ofstream(state / "state.db") << "db";
  std::ofstream(state / "corrald.log") << "log";
  fs::create_symlink("/etc", state / "link");
  for (const char* entry : {"vms", "images", "containers"})
    ASSERT_EQ(::chmod((state / entry).c_str(), 0755), 0);
  for (const char* entry : {"state.db", "corrald.log"}) ASSERT_EQ(::chmod((state / entry).c_str(), 0644), 0);

  ASSERT_TRUE(privatiseStateDir(state, state / "vms"));
  EXPECT_EQ(modeOf(state / "state.db"), 0600u);
  EXPECT_EQ(modeOf(state / "corrald.log"), 0600u);
  EXPECT_EQ(modeOf(state / "images"), 0700u);
  EXPECT_EQ(modeOf(state / "containers"), 0700u);
  EXPECT_EQ(modeOf(state / "vms"), 0755u) << "VMS_DIR is settleVmUser's";
  EXPECT_EQ(modeOf("/etc"), 0755u) << "a symlink's target was changed";
  EXPECT_EQ(modeOf(state / "images" / "layers"), 0755u) << "only the state directory's own entries";
}

}  // namespace
}  // namespace corral::daemon
