// Lookups inside a container's root (openInRoot and its fallback walk, makeDirectoriesInRoot,
// makeFileInRoot) on a scratch root full of hostile symlinks, with a sentinel directory outside it that
// must stay untouched. No root needed.
#include "container/rootfs_path.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace corral::container {
namespace {

namespace fs = std::filesystem;

class RootfsPath : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/corral-rootfs-path-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    root_ = dir_ / "root";
    outside_ = dir_ / "outside";
    fs::create_directories(root_ / "etc");
    fs::create_directories(outside_);
    std::ofstream(root_ / "etc" / "name") << "inside";
    std::ofstream(outside_ / "name") << "outside";
    // Every way out a hostile image might try.
    fs::create_symlink("/", root_ / "to-slash");
    fs::create_symlink(outside_, root_ / "to-host");
    fs::create_symlink("../../../../../../../../" + outside_.relative_path().string(), root_ / "dotdots");
    fs::create_symlink("/proc/self/root" + outside_.string(), root_ / "magic");
    rootFd_ = ::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(rootFd_, 0);
  }
  void TearDown() override {
    if (rootFd_ >= 0) ::close(rootFd_);
    fs::remove_all(dir_);
  }

  // What `fd` names, as the host sees it.
  static std::string whereIs(int fd) {
    EXPECT_GE(fd, 0) << strerror(errno);
    if (fd < 0) return "(" + std::string(strerror(errno)) + ")";
    char link[4096] = {};
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    ssize_t n = ::readlink(proc.c_str(), link, sizeof link - 1);
    ::close(fd);
    return n > 0 ? std::string(link, static_cast<size_t>(n)) : "";
  }
  bool outsideUntouched() const {
    return std::distance(fs::directory_iterator(outside_), fs::directory_iterator()) == 1;
  }

  fs::path dir_, root_, outside_;
  int rootFd_ = -1;
};

TEST_F(RootfsPath, SymlinksResolveInsideTheRoot) {
  EXPECT_EQ(whereIs(openInRoot(rootFd_, "to-slash/etc", O_PATH)), (root_ / "etc").string());
  EXPECT_EQ(whereIs(openInRoot(rootFd_, "/to-slash", O_PATH | O_DIRECTORY)), root_.string());
  EXPECT_EQ(whereIs(openInRoot(rootFd_, "../../..", O_PATH)), root_.string());
  EXPECT_EQ(whereIs(openInRoot(rootFd_, "", O_PATH)), root_.string());
  // The host paths these name do not exist inside the root.
  EXPECT_EQ(openInRoot(rootFd_, "to-host/name", O_PATH), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(openInRoot(rootFd_, "dotdots/name", O_PATH), -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_F(RootfsPath, MakingDirectoriesThroughSymlinksStaysInside) {
  EXPECT_EQ(whereIs(makeDirectoriesInRoot(rootFd_, "to-host/a/b")),
            (root_ / outside_.relative_path() / "a/b").string());
  EXPECT_EQ(whereIs(makeDirectoriesInRoot(rootFd_, "dotdots/c")),
            (root_ / outside_.relative_path() / "c").string());
  EXPECT_EQ(whereIs(makeDirectoriesInRoot(rootFd_, "to-slash/d")), (root_ / "d").string());
  EXPECT_TRUE(outsideUntouched());
}

TEST_F(RootfsPath, MakingAFileThroughSymlinksStaysInside) {
  EXPECT_EQ(whereIs(makeFileInRoot(rootFd_, "to-host/new")),
            (root_ / outside_.relative_path() / "new").string());
  EXPECT_TRUE(fs::is_regular_file(root_ / outside_.relative_path() / "new"));
  // An existing file is left as it is.
  EXPECT_EQ(whereIs(makeFileInRoot(rootFd_, "to-slash/etc/name")), (root_ / "etc/name").string());
  std::ifstream in(root_ / "etc" / "name");
  std::string text;
  in >> text;
  EXPECT_EQ(text, "inside");
  EXPECT_TRUE(outsideUntouched());
}

TEST_F(RootfsPath, MagicLinksAreRefused) {
  EXPECT_EQ(openInRoot(rootFd_, "magic", O_PATH), -1);
  EXPECT_TRUE(errno == ENOENT || errno == ELOOP || errno == EXDEV) << strerror(errno);
}

TEST_F(RootfsPath, TheFallbackWalkRefusesSymlinksAndClampsDotDot) {
  EXPECT_EQ(whereIs(openInRootByWalk(rootFd_, "etc/../../../etc/name", O_PATH)),
            (root_ / "etc/name").string());
  EXPECT_EQ(whereIs(openInRootByWalk(rootFd_, "/", O_PATH | O_DIRECTORY)), root_.string());
  for (const char* path : {"to-slash/etc", "to-host", "dotdots/name", "magic"}) {
    EXPECT_EQ(openInRootByWalk(rootFd_, path, O_PATH), -1) << path;
    EXPECT_EQ(errno, ELOOP) << path;
  }
}

TEST_F(RootfsPath, TheParentOfAPathAndItsName) {
  const char* name = nullptr;
  EXPECT_EQ(whereIs(openParentInRoot(rootFd_, "to-host/x/node", &name)),
            (root_ / outside_.relative_path() / "x").string());
  EXPECT_STREQ(name, "node");
  EXPECT_EQ(openParentInRoot(rootFd_, "/", &name), -1);
  EXPECT_EQ(errno, EINVAL);
  EXPECT_STREQ(FdPath(42).c_str(), "/proc/self/fd/42");
  EXPECT_TRUE(outsideUntouched());
}

}  // namespace
}  // namespace corral::container
