// Cgroups without root: name and limit validation, which files get which values per mode, and both drivers
// run against a plain directory tree standing in for /sys/fs/cgroup (the test creates the kernel's files).
#include "container/cgroup.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "container/cgroup_v1.h"
#include "container/cgroup_v2.h"

namespace corral::container {
namespace {

namespace fs = std::filesystem;

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void put(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

class TempTree : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "corral-cgroup-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    root_ = fs::canonical(pattern);
  }
  void TearDown() override { fs::remove_all(root_); }
  CgroupOptions options() const { return {.root = root_.string(), .parent = "corral"}; }
  fs::path root_;
};

TEST(CgroupValidation, NamesAreOnePathComponent) {
  for (const char* bad : {"", ".", "..", "a/b", "/abs", "../up"}) {
    auto cgroup = createCgroup(CgroupMode::Unified, bad, {}, {.root = "/nonexistent", .parent = "corral"});
    ASSERT_FALSE(cgroup) << bad;
    EXPECT_EQ(cgroup.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(cgroup.error().field(), "name") << bad;
    auto opened = openCgroup(CgroupMode::Hybrid, bad, {.root = "/nonexistent", .parent = "corral"});
    ASSERT_FALSE(opened);
    EXPECT_EQ(opened.error().field(), "name");
  }
  auto badParent =
      createCgroup(CgroupMode::Legacy, "web-1", {}, {.root = "/nonexistent", .parent = "a/../b"});
  ASSERT_FALSE(badParent);
  EXPECT_EQ(badParent.error().field(), "cgroupOptions.parent");
}

TEST(CgroupValidation, LimitsThatCannotWork) {
  struct Case {
    ResourceLimits limits;
    const char* field;
  };
  for (const auto& [limits, field] :
       {Case{{.memoryBytes = 4096, .cpuMillis = {}, .pids = {}}, "memory"},
        Case{{.memoryBytes = {}, .cpuMillis = 5, .pids = {}}, "cpus"},
        Case{{.memoryBytes = {}, .cpuMillis = 2000000, .pids = {}}, "cpus"},
        Case{{.memoryBytes = {}, .cpuMillis = {}, .pids = 0}, "pids"}}) {
    auto cgroup =
        createCgroup(CgroupMode::Unified, "web-1", limits, {.root = "/nonexistent", .parent = "corral"});
    ASSERT_FALSE(cgroup) << field;
    EXPECT_EQ(cgroup.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(cgroup.error().field(), field);
  }
}

const ResourceLimits kAllLimits{.memoryBytes = 64 << 20, .cpuMillis = 500, .pids = 64};

TEST(CgroupPlan, V2Files) {
  EXPECT_EQ(cgroupV2LimitWrites(kAllLimits, true),
            (std::vector<CgroupFileWrite>{{"", "memory.max", "67108864"},
                                          {"", "memory.swap.max", "0"},
                                          {"", "cpu.max", "50000 100000"},
                                          {"", "pids.max", "64"}}));
  EXPECT_EQ(cgroupV2LimitWrites({.memoryBytes = 64 << 20, .cpuMillis = 1500, .pids = {}}, false),
            (std::vector<CgroupFileWrite>{{"", "memory.max", "67108864"}, {"", "cpu.max", "150000 100000"}}));
  EXPECT_TRUE(cgroupV2LimitWrites({}, true).empty());
}

TEST(CgroupPlan, V1Files) {
  EXPECT_EQ(cgroupV1LimitWrites(kAllLimits, true),
            (std::vector<CgroupFileWrite>{{"memory", "memory.limit_in_bytes", "67108864"},
                                          {"memory", "memory.memsw.limit_in_bytes", "67108864"},
                                          {"cpu", "cpu.cfs_period_us", "100000"},
                                          {"cpu", "cpu.cfs_quota_us", "50000"},
                                          {"pids", "pids.max", "64"}}));
  EXPECT_EQ(cgroupV1LimitWrites({.memoryBytes = {}, .cpuMillis = 250, .pids = 16}, false),
            (std::vector<CgroupFileWrite>{{"cpu", "cpu.cfs_period_us", "100000"},
                                          {"cpu", "cpu.cfs_quota_us", "25000"},
                                          {"pids", "pids.max", "16"}}));
  EXPECT_TRUE(cgroupV1LimitWrites({}, true).empty());
}

// ---- v2 against a stand-in tree ----

class CgroupV2Tree : public TempTree {
 protected:
  void SetUp() override {
    TempTree::SetUp();
    put(root_ / "cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    put(root_ / "cgroup.subtree_control", "io\n");
  }
};

TEST_F(CgroupV2Tree, CreateEnablesControllersWritesLimitsAndDestroys) {
  // Swap accounting shows as memory.swap.max in the (non-root) parent.
  put(root_ / "corral" / "memory.swap.max", "max\n");
  auto cgroup = createCgroup(CgroupMode::Unified, "web-1", kAllLimits, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  const fs::path dir = root_ / "corral" / "web-1";
  EXPECT_EQ((*cgroup)->path(), dir.string());
  EXPECT_EQ((*cgroup)->relativePath(), "/corral/web-1");
  EXPECT_EQ(slurp(root_ / "cgroup.subtree_control"), "cpu io memory pids\n");
  EXPECT_EQ(slurp(root_ / "corral" / "cgroup.subtree_control"), "cpu memory pids\n");
  EXPECT_EQ(slurp(dir / "memory.max"), "67108864");
  EXPECT_EQ(slurp(dir / "memory.swap.max"), "0");
  EXPECT_EQ(slurp(dir / "cpu.max"), "50000 100000");
  EXPECT_EQ(slurp(dir / "pids.max"), "64");

  // A group left with the same name (a daemon crash) does not block: it is cleared and made again, its
  // limits written afresh.
  fs::remove(dir / "memory.max");
  auto again = createCgroup(CgroupMode::Unified, "web-1", kAllLimits, options());
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(slurp(dir / "memory.max"), "67108864");
  (*again)->release();

  ASSERT_TRUE((*cgroup)->addProcess(4242));
  EXPECT_EQ(slurp(dir / "cgroup.procs"), "4242");

  put(dir / "memory.current", "1234\n");
  put(dir / "memory.peak", "5678\n");
  put(dir / "memory.events", "low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\noom_group_kill 0\n");
  put(dir / "pids.current", "3\n");
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memoryCurrentBytes, 1234u);
  EXPECT_EQ(stats->memoryPeakBytes, 5678u);
  EXPECT_EQ(stats->oomKills, 2u);
  EXPECT_EQ(stats->pidsCurrent, 3u);

  // With cgroup.kill the kernel empties the group; the stand-in's cgroup.procs is emptied by hand.
  put(dir / "cgroup.kill", "");
  put(dir / "cgroup.procs", "");
  ASSERT_TRUE((*cgroup)->killAll());
  EXPECT_EQ(slurp(dir / "cgroup.kill"), "1");

  ASSERT_TRUE((*cgroup)->destroy());
  EXPECT_FALSE(fs::exists(dir));
  EXPECT_TRUE(fs::exists(root_ / "corral"));
  auto gone = openCgroup(CgroupMode::Unified, "web-1", options());
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().kind(), ErrorKind::NotFound);
}

TEST_F(CgroupV2Tree, NoSwapAccountingNoSwapFile) {
  auto cgroup = createCgroup(CgroupMode::Unified, "web-1", kAllLimits, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_FALSE(fs::exists(root_ / "corral" / "web-1" / "memory.swap.max"));
  // No memory.peak (before 5.19): the peak reads 0.
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memoryPeakBytes, 0u);
}

TEST_F(CgroupV2Tree, MissingControllerIsNamed) {
  put(root_ / "cgroup.controllers", "cpuset io memory\n");
  auto cgroup = createCgroup(CgroupMode::Unified, "web-1", {.memoryBytes = {}, .cpuMillis = 500, .pids = {}},
                             options());
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find("the \"cpu\" controller is not available"), std::string::npos)
      << cgroup.error().message();
  EXPECT_FALSE(fs::exists(root_ / "corral" / "web-1"));
  // Without limits that need them, missing cpu and pids are fine; only the available ones get enabled.
  auto memoryOnly = createCgroup(CgroupMode::Unified, "web-2",
                                 {.memoryBytes = 8 << 20, .cpuMillis = {}, .pids = {}}, options());
  ASSERT_TRUE(memoryOnly) << memoryOnly.error().message();
  EXPECT_EQ(slurp(root_ / "corral" / "cgroup.subtree_control"), "memory\n");
}

// A hybrid host's unified mount offers no controller: without limits that is enough for a group.
TEST_F(CgroupV2Tree, NoControllersAreNeededWithoutLimits) {
  put(root_ / "cgroup.controllers", "hugetlb\n");
  put(root_ / "cgroup.subtree_control", "");
  auto cgroup = createCgroup(CgroupMode::Unified, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_TRUE(fs::is_directory(root_ / "corral" / "web-1"));
  EXPECT_EQ(slurp(root_ / "cgroup.subtree_control"), "");
  auto limited = createCgroup(CgroupMode::Unified, "web-2",
                              {.memoryBytes = 8 << 20, .cpuMillis = {}, .pids = {}}, options());
  ASSERT_FALSE(limited);
  EXPECT_NE(limited.error().message().find("the \"memory\" controller is not available"), std::string::npos)
      << limited.error().message();
  EXPECT_FALSE(fs::exists(root_ / "corral" / "web-2"));
}

// A stand-in tree has no kernel to move a process for it: no directory fd for CLONE_INTO_CGROUP, no
// `tasks` files, so the runtime falls back to addProcess().
TEST_F(CgroupV2Tree, StandInTreeOffersNoSelfJoin) {
  put(root_ / "cgroup.controllers", "");
  put(root_ / "cgroup.subtree_control", "");
  auto cgroup = createCgroup(CgroupMode::Unified, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  auto join = (*cgroup)->openJoin();
  ASSERT_TRUE(join) << join.error().message();
  EXPECT_FALSE(join->directory);
  EXPECT_TRUE(join->taskFiles.empty());
}

TEST_F(CgroupV2Tree, DroppedUnlessReleasedAndReopened) {
  const fs::path dir = root_ / "corral" / "web-1";
  {
    auto cgroup = createCgroup(CgroupMode::Unified, "web-1", {}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
    EXPECT_TRUE(fs::is_directory(dir));
  }
  EXPECT_FALSE(fs::exists(dir)) << "an unreleased cgroup is removed when dropped";
  {
    auto cgroup = createCgroup(CgroupMode::Unified, "web-1", {}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
    (*cgroup)->release();
  }
  ASSERT_TRUE(fs::is_directory(dir));
  {
    auto reopened = openCgroup(CgroupMode::Unified, "web-1", options());
    ASSERT_TRUE(reopened) << reopened.error().message();
    EXPECT_EQ((*reopened)->path(), dir.string());
  }
  EXPECT_TRUE(fs::is_directory(dir)) << "a reattached cgroup belongs to the daemon";
  auto reopened = openCgroup(CgroupMode::Unified, "web-1", options());
  ASSERT_TRUE(reopened);
  ASSERT_TRUE((*reopened)->destroy());
  EXPECT_FALSE(fs::exists(dir));
}

// ---- v1 against a stand-in tree ----

class CgroupV1Tree : public TempTree {
 protected:
  void SetUp() override {
    TempTree::SetUp();
    for (const char* hierarchy : {"memory", "cpu,cpuacct", "pids", "cpuset", "freezer", "devices"})
      fs::create_directories(root_ / hierarchy);
    fs::create_directory_symlink("cpu,cpuacct", root_ / "cpu");
    fs::create_directory_symlink("cpu,cpuacct", root_ / "cpuacct");
    put(root_ / "memory" / "memory.memsw.limit_in_bytes", "9223372036854771712\n");
    put(root_ / "cpuset" / "cpuset.cpus", "0-3\n");
    put(root_ / "cpuset" / "cpuset.mems", "0\n");
  }
  std::vector<fs::path> containerDirs(const std::string& name) const {
    std::vector<fs::path> dirs;
    for (const char* hierarchy : {"memory", "cpu,cpuacct", "pids", "freezer", "devices"})
      dirs.push_back(root_ / hierarchy / "corral" / name);
    return dirs;
  }
};

TEST_F(CgroupV1Tree, FindsCoMountedHierarchies) {
  EXPECT_EQ(findV1Hierarchy(root_.string(), "cpu"), (root_ / "cpu,cpuacct").string());
  EXPECT_EQ(findV1Hierarchy(root_.string(), "memory"), (root_ / "memory").string());
  fs::remove(root_ / "cpu");
  EXPECT_EQ(findV1Hierarchy(root_.string(), "cpu"), (root_ / "cpu,cpuacct").string())
      << "without the symlink";
  EXPECT_EQ(findV1Hierarchy(root_.string(), "blkio"), "");
}

TEST_F(CgroupV1Tree, CreateWritesEveryControllerAndDestroys) {
  auto cgroup = createCgroup(CgroupMode::Hybrid, "web-1", kAllLimits, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  for (const auto& dir : containerDirs("web-1")) EXPECT_TRUE(fs::is_directory(dir)) << dir;
  const fs::path memory = root_ / "memory" / "corral" / "web-1";
  const fs::path cpu = root_ / "cpu,cpuacct" / "corral" / "web-1";
  EXPECT_EQ((*cgroup)->path(), memory.string());
  EXPECT_EQ((*cgroup)->relativePath(), "/corral/web-1");
  EXPECT_EQ(slurp(memory / "memory.limit_in_bytes"), "67108864");
  EXPECT_EQ(slurp(memory / "memory.memsw.limit_in_bytes"), "67108864");
  EXPECT_EQ(slurp(cpu / "cpu.cfs_period_us"), "100000");
  EXPECT_EQ(slurp(cpu / "cpu.cfs_quota_us"), "50000");
  EXPECT_EQ(slurp(root_ / "pids" / "corral" / "web-1" / "pids.max"), "64");
  // Hierarchies that neither limit nor account nor protect are not joined (each costs a write at start).
  EXPECT_FALSE(fs::exists(root_ / "cpuset" / "corral")) << "cpuset is not joined";
  // The device policy: deny all, then the allow list (the stand-in file keeps the last line written).
  const fs::path devices = root_ / "devices" / "corral" / "web-1";
  EXPECT_EQ(slurp(devices / "devices.deny"), "a");
  EXPECT_EQ(slurp(devices / "devices.allow"), "c 136:* rwm");

  ASSERT_TRUE((*cgroup)->addProcess(4242));
  for (const auto& dir : containerDirs("web-1")) EXPECT_EQ(slurp(dir / "cgroup.procs"), "4242") << dir;

  put(memory / "memory.usage_in_bytes", "1000\n");
  put(memory / "memory.max_usage_in_bytes", "2000\n");
  put(memory / "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
  put(root_ / "pids" / "corral" / "web-1" / "pids.current", "5\n");
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memoryCurrentBytes, 1000u);
  EXPECT_EQ(stats->memoryPeakBytes, 2000u);
  EXPECT_EQ(stats->oomKills, 4u);
  EXPECT_EQ(stats->pidsCurrent, 5u);

  // killAll freezes, kills and thaws; the stand-in's member lists are emptied by hand.
  for (const auto& dir : containerDirs("web-1")) put(dir / "cgroup.procs", "");
  ASSERT_TRUE((*cgroup)->killAll());
  EXPECT_EQ(slurp(root_ / "freezer" / "corral" / "web-1" / "freezer.state"), "THAWED");

  ASSERT_TRUE((*cgroup)->destroy());
  for (const auto& dir : containerDirs("web-1")) EXPECT_FALSE(fs::exists(dir)) << dir;

  auto gone = openCgroup(CgroupMode::Legacy, "web-1", options());
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().kind(), ErrorKind::NotFound);
}

TEST_F(CgroupV1Tree, KillAllGivesUpNamingThePidsLeft) {
  auto cgroup = createCgroup(CgroupMode::Hybrid, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  ASSERT_TRUE((*cgroup)->addProcess(child));
  // The stand-in never drops the pid from cgroup.procs, as if the process could not be killed.
  auto killed = (*cgroup)->killAll();
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_FALSE(killed);
  EXPECT_EQ(killed.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(killed.error().message().find(fmt::format("still running after 5 s: [{}]", child)),
            std::string::npos)
      << killed.error().message();
  for (const auto& dir : containerDirs("web-1")) put(dir / "cgroup.procs", "");
  ASSERT_TRUE((*cgroup)->destroy());
}

TEST_F(CgroupV1Tree, FailureHalfwayRemovesWhatWasMade) {
  // pids/corral is a file: mkdir of the container's pids directory fails after memory and cpu were made.
  put(root_ / "pids" / "corral", "not a directory");
  auto cgroup = createCgroup(CgroupMode::Hybrid, "web-1", kAllLimits, options());
  ASSERT_FALSE(cgroup);
  EXPECT_NE(cgroup.error().message().find(fmt::format("mkdir(\"{}\"): Not a directory",
                                                      (root_ / "pids" / "corral" / "web-1").string())),
            std::string::npos)
      << cgroup.error().message();
  EXPECT_FALSE(fs::exists(root_ / "memory" / "corral" / "web-1"));
  EXPECT_FALSE(fs::exists(root_ / "cpu,cpuacct" / "corral" / "web-1"));
  fs::remove(root_ / "pids" / "corral");
}

TEST(CgroupV1Writes, DevicePolicyDeniesAllThenAllowsEachRule) {
  EXPECT_EQ(cgroupV1DeviceWrites(
                {{DeviceType::Char, 1, 3, kDeviceAllAccess}, {DeviceType::Block, {}, {}, kDeviceMknod}}),
            (std::vector<CgroupFileWrite>{{"devices", "devices.deny", "a"},
                                          {"devices", "devices.allow", "c 1:3 rwm"},
                                          {"devices", "devices.allow", "b *:* m"}}));
  EXPECT_EQ(cgroupV1DeviceWrites({}), (std::vector<CgroupFileWrite>{{"devices", "devices.deny", "a"}}))
      << "no rule: nothing at all";
}

TEST_F(CgroupV1Tree, DevicesControllerIsRequired) {
  fs::remove_all(root_ / "devices");
  auto cgroup = createCgroup(CgroupMode::Hybrid, "web-1", {}, options());
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find("the \"devices\" cgroup v1 controller is not mounted"),
            std::string::npos)
      << cgroup.error().message();
}

TEST_F(CgroupV1Tree, MissingRequiredControllerIsNamed) {
  fs::remove_all(root_ / "pids");
  auto cgroup = createCgroup(CgroupMode::Hybrid, "web-1", kAllLimits, options());
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find("the \"pids\" cgroup v1 controller is not mounted"),
            std::string::npos)
      << cgroup.error().message();
  // Not needed without a pids limit.
  auto noPids = createCgroup(CgroupMode::Hybrid, "web-1",
                             {.memoryBytes = 8 << 20, .cpuMillis = {}, .pids = {}}, options());
  ASSERT_TRUE(noPids) << noPids.error().message();
}

TEST_F(CgroupV1Tree, StandInTreeOffersNoSelfJoin) {
  auto cgroup = createCgroup(CgroupMode::Hybrid, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  auto join = (*cgroup)->openJoin();
  ASSERT_TRUE(join) << join.error().message();
  EXPECT_FALSE(join->directory);
  EXPECT_TRUE(join->taskFiles.empty());
  EXPECT_TRUE(join->taskPaths.empty());
}

TEST_F(CgroupV1Tree, DroppedUnlessReleasedAndReopened) {
  {
    auto cgroup = createCgroup(CgroupMode::Hybrid, "web-1", {}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
  }
  for (const auto& dir : containerDirs("web-1")) EXPECT_FALSE(fs::exists(dir)) << dir;
  {
    auto cgroup = createCgroup(CgroupMode::Hybrid, "web-1", {}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
    (*cgroup)->release();
  }
  auto reopened = openCgroup(CgroupMode::Hybrid, "web-1", options());
  ASSERT_TRUE(reopened) << reopened.error().message();
  EXPECT_EQ((*reopened)->path(), (root_ / "memory" / "corral" / "web-1").string());
  ASSERT_TRUE((*reopened)->destroy());
  for (const auto& dir : containerDirs("web-1")) EXPECT_FALSE(fs::exists(dir)) << dir;
}

}  // namespace
}  // namespace corral::container
