// Cgroups without root: name and limit validation, which files get which values per mode, and both drivers
// run against FakeCgroupFiles, a simulated /sys/fs/cgroup that records every call.
#include "container/cgroup.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>

#include "container/cgroup_v1.h"
#include "container/cgroup_v2.h"
#include "tests/unit/container/fake_cgroup_files.h"

namespace corral::container {
namespace {

using testing::FakeCgroupFiles;
using Calls = std::vector<std::string>;

const std::string kRoot = "/sys/fs/cgroup";

class FakeTree : public ::testing::Test {
 protected:
  CgroupOptions options() const { return {.root = kRoot, .parent = "corral"}; }
  std::string text(const std::string& path) const { return files_.file(path).value_or("<missing>"); }
  FakeCgroupFiles files_;
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
       {Case{{.memoryBytes = 4096, .cpuMillis = {}, .pids = {}, .cpuShares = {}, .hugepages = {}}, "memory"},
        Case{{.memoryBytes = {}, .cpuMillis = 5, .pids = {}, .cpuShares = {}, .hugepages = {}}, "cpus"},
        Case{{.memoryBytes = {}, .cpuMillis = 2000000, .pids = {}, .cpuShares = {}, .hugepages = {}}, "cpus"},
        Case{{.memoryBytes = {}, .cpuMillis = {}, .pids = 0, .cpuShares = {}, .hugepages = {}}, "pids"}}) {
    auto cgroup =
        createCgroup(CgroupMode::Unified, "web-1", limits, {.root = "/nonexistent", .parent = "corral"});
    ASSERT_FALSE(cgroup) << field;
    EXPECT_EQ(cgroup.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(cgroup.error().field(), field);
  }
}

const ResourceLimits kAllLimits{
    .memoryBytes = 64 << 20, .cpuMillis = 500, .pids = 64, .cpuShares = {}, .hugepages = {}};

TEST(CgroupPlan, V2Files) {
  EXPECT_EQ(cgroupV2LimitWrites(kAllLimits, true),
            (std::vector<CgroupFileWrite>{{"", "memory.max", "67108864"},
                                          {"", "memory.swap.max", "0"},
                                          {"", "cpu.max", "50000 100000"},
                                          {"", "pids.max", "64"}}));
  EXPECT_EQ(
      cgroupV2LimitWrites(
          {.memoryBytes = 64 << 20, .cpuMillis = 1500, .pids = {}, .cpuShares = {}, .hugepages = {}}, false),
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
  EXPECT_EQ(cgroupV1LimitWrites(
                {.memoryBytes = {}, .cpuMillis = 250, .pids = 16, .cpuShares = {}, .hugepages = {}}, false),
            (std::vector<CgroupFileWrite>{{"cpu", "cpu.cfs_period_us", "100000"},
                                          {"cpu", "cpu.cfs_quota_us", "25000"},
                                          {"pids", "pids.max", "16"}}));
  EXPECT_TRUE(cgroupV1LimitWrites({}, true).empty());
}

// ---- v2 ----

class CgroupV2Tree : public FakeTree {
 protected:
  void SetUp() override {
    files_.put(kRoot + "/cgroup.controllers", "cpuset cpu io memory hugetlb pids rdma misc\n");
    files_.put(kRoot + "/cgroup.subtree_control", "io\n");
  }
  const std::string dir_ = kRoot + "/corral/web-1";
};

TEST_F(CgroupV2Tree, CreateEnablesControllersWritesLimitsAndDestroys) {
  // The parent exists and accounts swap (memory.swap.max shows in a non-root group).
  files_.put(kRoot + "/corral/cgroup.subtree_control", "");
  files_.put(kRoot + "/corral/memory.swap.max", "max\n");
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", kAllLimits, options(),
                             {{DeviceType::Char, 1, 3, kDeviceAllAccess}});
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_EQ(files_.changes(), (Calls{
                                  "write /sys/fs/cgroup/cgroup.subtree_control +memory +cpu +pids",
                                  "write /sys/fs/cgroup/corral/cgroup.subtree_control +memory +cpu +pids",
                                  "mkdir /sys/fs/cgroup/corral/web-1",
                                  "write /sys/fs/cgroup/corral/web-1/memory.max 67108864",
                                  "write /sys/fs/cgroup/corral/web-1/memory.swap.max 0",
                                  "write /sys/fs/cgroup/corral/web-1/cpu.max 50000 100000",
                                  "write /sys/fs/cgroup/corral/web-1/pids.max 64",
                                  "attachDeviceProgram /sys/fs/cgroup/corral/web-1 [c 1:3 rwm]",
                              }));
  EXPECT_EQ((*cgroup)->path(), dir_);
  EXPECT_EQ((*cgroup)->relativePath(), "/corral/web-1");
  EXPECT_EQ(text(kRoot + "/cgroup.subtree_control"), "cpu io memory pids\n");
  EXPECT_EQ(text(dir_ + "/memory.max"), "67108864");

  // A group left with the same name (a daemon crash) does not block: it is cleared and made again, its
  // limits written afresh.
  files_.takeCalls();
  auto again = createCgroup(files_, CgroupMode::Unified, "web-1", kAllLimits, options(),
                            {{DeviceType::Char, 1, 3, kDeviceAllAccess}});
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(files_.changes(), (Calls{
                                  "mkdir /sys/fs/cgroup/corral/web-1",
                                  "write /sys/fs/cgroup/corral/web-1/cgroup.kill 1",
                                  "rmdir /sys/fs/cgroup/corral/web-1",
                                  "mkdir /sys/fs/cgroup/corral/web-1",
                                  "write /sys/fs/cgroup/corral/web-1/memory.max 67108864",
                                  "write /sys/fs/cgroup/corral/web-1/memory.swap.max 0",
                                  "write /sys/fs/cgroup/corral/web-1/cpu.max 50000 100000",
                                  "write /sys/fs/cgroup/corral/web-1/pids.max 64",
                                  "attachDeviceProgram /sys/fs/cgroup/corral/web-1 [c 1:3 rwm]",
                              }));
  (*again)->release();

  ASSERT_TRUE((*cgroup)->addProcess(4242));
  EXPECT_EQ(text(dir_ + "/cgroup.procs"), "4242\n");

  files_.put(dir_ + "/memory.current", "1234\n");
  files_.put(dir_ + "/memory.peak", "5678\n");
  files_.put(dir_ + "/memory.events", "low 0\nhigh 0\nmax 7\noom 3\noom_kill 2\noom_group_kill 0\n");
  files_.put(dir_ + "/pids.current", "3\n");
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memoryCurrentBytes, 1234u);
  EXPECT_EQ(stats->memoryPeakBytes, 5678u);
  EXPECT_EQ(stats->oomKills, 2u);
  EXPECT_EQ(stats->pidsCurrent, 3u);

  // A group with members cannot go; cgroup.kill empties it.
  auto busy = (*cgroup)->destroy();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().kind(), ErrorKind::Conflict);
  files_.takeCalls();
  ASSERT_TRUE((*cgroup)->killAll());
  EXPECT_EQ(files_.changes(), Calls{"write /sys/fs/cgroup/corral/web-1/cgroup.kill 1"});

  ASSERT_TRUE((*cgroup)->destroy());
  EXPECT_FALSE(files_.hasDirectory(dir_));
  EXPECT_TRUE(files_.hasDirectory(kRoot + "/corral"));
  auto gone = openCgroup(files_, CgroupMode::Unified, "web-1", options());
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().kind(), ErrorKind::NotFound);
}

TEST_F(CgroupV2Tree, NoSwapAccountingNoSwapFile) {
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", kAllLimits, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_FALSE(files_.file(dir_ + "/memory.swap.max"));
  // No memory.peak (before 5.19): the peak reads 0.
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memoryPeakBytes, 0u);
}

TEST_F(CgroupV2Tree, MissingControllerIsNamed) {
  files_.put(kRoot + "/cgroup.controllers", "cpuset io memory\n");
  auto cgroup = createCgroup(
      files_, CgroupMode::Unified, "web-1",
      {.memoryBytes = {}, .cpuMillis = 500, .pids = {}, .cpuShares = {}, .hugepages = {}}, options());
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find("the \"cpu\" controller is not available"), std::string::npos)
      << cgroup.error().message();
  EXPECT_EQ(files_.changes(), Calls{}) << "nothing made";
  // Without limits that need them, missing cpu and pids are fine; only the available ones get enabled.
  auto memoryOnly = createCgroup(
      files_, CgroupMode::Unified, "web-2",
      {.memoryBytes = 8 << 20, .cpuMillis = {}, .pids = {}, .cpuShares = {}, .hugepages = {}}, options());
  ASSERT_TRUE(memoryOnly) << memoryOnly.error().message();
  EXPECT_EQ(text(kRoot + "/corral/cgroup.subtree_control"), "memory\n");
}

// A hybrid host's unified mount offers no controller: without limits that is enough for a group.
TEST_F(CgroupV2Tree, NoControllersAreNeededWithoutLimits) {
  files_.put(kRoot + "/cgroup.controllers", "hugetlb\n");
  files_.put(kRoot + "/cgroup.subtree_control", "");
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_TRUE(files_.hasDirectory(dir_));
  EXPECT_EQ(text(kRoot + "/cgroup.subtree_control"), "");
  // Stats of a group without controllers: zeros, read from nothing that is not there.
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memoryCurrentBytes, 0u);
  auto limited = createCgroup(
      files_, CgroupMode::Unified, "web-2",
      {.memoryBytes = 8 << 20, .cpuMillis = {}, .pids = {}, .cpuShares = {}, .hugepages = {}}, options());
  ASSERT_FALSE(limited);
  EXPECT_NE(limited.error().message().find("the \"memory\" controller is not available"), std::string::npos)
      << limited.error().message();
  EXPECT_FALSE(files_.hasDirectory(kRoot + "/corral/web-2"));
}

// The child joins by itself: clone3(CLONE_INTO_CGROUP) with the group's directory.
TEST_F(CgroupV2Tree, JoinOpensTheGroupsDirectory) {
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  files_.takeCalls();
  auto join = (*cgroup)->openJoin();
  ASSERT_TRUE(join) << join.error().message();
  EXPECT_TRUE(join->directory);
  EXPECT_TRUE(join->taskFiles.empty());
  EXPECT_EQ(files_.changes(), Calls{"openDirectory /sys/fs/cgroup/corral/web-1"});
}

TEST_F(CgroupV2Tree, UsageFilesStayOpenAndReadFreshFigures) {
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  files_.put(dir_ + "/memory.current", "1000\n");
  files_.put(dir_ + "/memory.events", "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\noom_group_kill 0\n");
  files_.takeCalls();
  auto usage = (*cgroup)->openUsageFiles();
  ASSERT_TRUE(usage) << usage.error().message();
  EXPECT_EQ(files_.takeCalls(), (Calls{"exists /sys/fs/cgroup/corral/web-1/memory.current",
                                       "openForReading /sys/fs/cgroup/corral/web-1/memory.current",
                                       "openForReading /sys/fs/cgroup/corral/web-1/memory.events"}));
  for (uint64_t bytes : {1000u, 5000u}) {
    files_.put(dir_ + "/memory.current", fmt::format("{}\n", bytes));
    files_.put(dir_ + "/memory.events", fmt::format("oom 0\noom_kill {}\n", bytes / 1000));
    auto read = (*usage)->read();
    ASSERT_TRUE(read) << read.error().message();
    EXPECT_EQ(read->memoryCurrentBytes, bytes);
    EXPECT_EQ(read->oomKills, bytes / 1000);
  }
  // Each sample is two reads of the open files: nothing opened, nothing closed.
  EXPECT_EQ(files_.takeCalls(), (Calls{"readOpen /sys/fs/cgroup/corral/web-1/memory.current",
                                       "readOpen /sys/fs/cgroup/corral/web-1/memory.events",
                                       "readOpen /sys/fs/cgroup/corral/web-1/memory.current",
                                       "readOpen /sys/fs/cgroup/corral/web-1/memory.events"}));
  files_.put(dir_ + "/memory.current", "a lot\n");
  auto bad = (*usage)->read();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(),
            "\"/sys/fs/cgroup/corral/web-1/memory.current\": expected a number, got \"a lot\"");
}

TEST_F(CgroupV2Tree, NoUsageFilesWithoutTheMemoryController) {
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  files_.remove(dir_ + "/memory.current");
  auto usage = (*cgroup)->openUsageFiles();
  ASSERT_FALSE(usage);
  EXPECT_EQ(usage.error().kind(), ErrorKind::NotFound);
}

TEST_F(CgroupV2Tree, DroppedUnlessReleasedAndReopened) {
  {
    auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", {}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
    EXPECT_TRUE(files_.hasDirectory(dir_));
  }
  EXPECT_FALSE(files_.hasDirectory(dir_)) << "an unreleased cgroup is removed when dropped";
  {
    auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", {}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
    (*cgroup)->release();
  }
  ASSERT_TRUE(files_.hasDirectory(dir_));
  {
    auto reopened = openCgroup(files_, CgroupMode::Unified, "web-1", options());
    ASSERT_TRUE(reopened) << reopened.error().message();
    EXPECT_EQ((*reopened)->path(), dir_);
  }
  EXPECT_TRUE(files_.hasDirectory(dir_)) << "a reattached cgroup belongs to the daemon";
  auto reopened = openCgroup(files_, CgroupMode::Unified, "web-1", options());
  ASSERT_TRUE(reopened);
  ASSERT_TRUE((*reopened)->destroy());
  EXPECT_FALSE(files_.hasDirectory(dir_));
}

// ---- v1 ----

class CgroupV1Tree : public FakeTree {
 protected:
  void SetUp() override {
    for (const char* hierarchy : {"memory", "cpu,cpuacct", "pids", "cpuset", "freezer", "devices"})
      files_.makeDirectories(kRoot + "/" + hierarchy);
    files_.symlink(kRoot + "/cpu", kRoot + "/cpu,cpuacct");
    files_.symlink(kRoot + "/cpuacct", kRoot + "/cpu,cpuacct");
    files_.put(kRoot + "/memory/memory.memsw.limit_in_bytes", "9223372036854771712\n");
    files_.put(kRoot + "/cpuset/cpuset.cpus", "0-3\n");
  }
  std::vector<std::string> containerDirs(const std::string& name) const {
    std::vector<std::string> dirs;
    for (const char* hierarchy : {"memory", "cpu,cpuacct", "pids", "freezer", "devices"})
      dirs.push_back(fmt::format("{}/{}/corral/{}", kRoot, hierarchy, name));
    return dirs;
  }
};

TEST_F(CgroupV1Tree, FindsCoMountedHierarchies) {
  EXPECT_EQ(findV1Hierarchy(files_, kRoot, "cpu"), kRoot + "/cpu,cpuacct");
  EXPECT_EQ(findV1Hierarchy(files_, kRoot, "memory"), kRoot + "/memory");
  FakeCgroupFiles noSymlink;
  noSymlink.makeDirectories(kRoot + "/cpu,cpuacct");
  EXPECT_EQ(findV1Hierarchy(noSymlink, kRoot, "cpu"), kRoot + "/cpu,cpuacct") << "without the symlink";
  EXPECT_EQ(findV1Hierarchy(files_, kRoot, "blkio"), "");
}

TEST_F(CgroupV1Tree, CreateWritesEveryControllerAndDestroys) {
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", kAllLimits, options(),
                             {{DeviceType::Char, 1, 3, kDeviceAllAccess}});
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  // Hierarchies that neither limit nor account nor protect are not joined (each costs a write at start):
  // no cpuset.
  EXPECT_EQ(files_.changes(),
            (Calls{
                "mkdir /sys/fs/cgroup/memory/corral",
                "mkdir /sys/fs/cgroup/memory/corral/web-1",
                "mkdir /sys/fs/cgroup/cpu,cpuacct/corral",
                "mkdir /sys/fs/cgroup/cpu,cpuacct/corral/web-1",
                "mkdir /sys/fs/cgroup/pids/corral",
                "mkdir /sys/fs/cgroup/pids/corral/web-1",
                "mkdir /sys/fs/cgroup/freezer/corral",
                "mkdir /sys/fs/cgroup/freezer/corral/web-1",
                "mkdir /sys/fs/cgroup/devices/corral",
                "mkdir /sys/fs/cgroup/devices/corral/web-1",
                "write /sys/fs/cgroup/memory/corral/web-1/memory.limit_in_bytes 67108864",
                "write /sys/fs/cgroup/memory/corral/web-1/memory.memsw.limit_in_bytes 67108864",
                "write /sys/fs/cgroup/cpu,cpuacct/corral/web-1/cpu.cfs_period_us 100000",
                "write /sys/fs/cgroup/cpu,cpuacct/corral/web-1/cpu.cfs_quota_us 50000",
                "write /sys/fs/cgroup/pids/corral/web-1/pids.max 64",
                "write /sys/fs/cgroup/devices/corral/web-1/devices.deny a",
                "write /sys/fs/cgroup/devices/corral/web-1/devices.allow c 1:3 rwm",
            }));
  const std::string memory = kRoot + "/memory/corral/web-1";
  EXPECT_EQ((*cgroup)->path(), memory);
  EXPECT_EQ((*cgroup)->relativePath(), "/corral/web-1");

  ASSERT_TRUE((*cgroup)->addProcess(4242));
  for (const auto& dir : containerDirs("web-1")) EXPECT_EQ(text(dir + "/cgroup.procs"), "4242\n") << dir;

  files_.put(memory + "/memory.usage_in_bytes", "1000\n");
  files_.put(memory + "/memory.max_usage_in_bytes", "2000\n");
  files_.put(memory + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
  files_.put(kRoot + "/pids/corral/web-1/pids.current", "5\n");
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memoryCurrentBytes, 1000u);
  EXPECT_EQ(stats->memoryPeakBytes, 2000u);
  EXPECT_EQ(stats->oomKills, 4u);
  EXPECT_EQ(stats->pidsCurrent, 5u);

  // killAll freezes, kills and thaws; the fake's member lists (no real process) are emptied by hand.
  for (const auto& dir : containerDirs("web-1")) files_.put(dir + "/cgroup.procs", "");
  files_.put(kRoot + "/freezer/corral/web-1/freezer.state", "THAWED\n");
  files_.takeCalls();
  ASSERT_TRUE((*cgroup)->killAll());
  EXPECT_EQ(files_.changes(), (Calls{"write /sys/fs/cgroup/freezer/corral/web-1/freezer.state FROZEN",
                                     "write /sys/fs/cgroup/freezer/corral/web-1/freezer.state THAWED"}));

  files_.takeCalls();
  ASSERT_TRUE((*cgroup)->destroy());
  EXPECT_EQ(files_.changes(), (Calls{
                                  "rmdir /sys/fs/cgroup/devices/corral/web-1",
                                  "rmdir /sys/fs/cgroup/freezer/corral/web-1",
                                  "rmdir /sys/fs/cgroup/pids/corral/web-1",
                                  "rmdir /sys/fs/cgroup/cpu,cpuacct/corral/web-1",
                                  "rmdir /sys/fs/cgroup/memory/corral/web-1",
                              }));
  auto gone = openCgroup(files_, CgroupMode::Legacy, "web-1", options());
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().kind(), ErrorKind::NotFound);
}

TEST_F(CgroupV1Tree, UsageFilesAreTheMemoryHierarchysKeptOpen) {
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", kAllLimits, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  const std::string memory = kRoot + "/memory/corral/web-1";
  files_.put(memory + "/memory.usage_in_bytes", "1000\n");
  files_.put(memory + "/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n");
  files_.takeCalls();
  auto usage = (*cgroup)->openUsageFiles();
  ASSERT_TRUE(usage) << usage.error().message();
  files_.put(memory + "/memory.usage_in_bytes", "3000\n");
  auto read = (*usage)->read();
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->memoryCurrentBytes, 3000u);
  EXPECT_EQ(read->oomKills, 4u);
  EXPECT_EQ(files_.takeCalls(),
            (Calls{"openForReading /sys/fs/cgroup/memory/corral/web-1/memory.usage_in_bytes",
                   "openForReading /sys/fs/cgroup/memory/corral/web-1/memory.oom_control",
                   "readOpen /sys/fs/cgroup/memory/corral/web-1/memory.usage_in_bytes",
                   "readOpen /sys/fs/cgroup/memory/corral/web-1/memory.oom_control"}));
}

TEST_F(CgroupV1Tree, KillAllGivesUpNamingThePidsLeft) {
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    pause();
    _exit(0);
  }
  ASSERT_TRUE((*cgroup)->addProcess(child));
  // The fake never drops the pid from cgroup.procs, as if the process could not be killed.
  auto killed = (*cgroup)->killAll();
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_FALSE(killed);
  EXPECT_EQ(killed.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(killed.error().message().find(fmt::format("still running after 5 s: [{}]", child)),
            std::string::npos)
      << killed.error().message();
  for (const auto& dir : containerDirs("web-1")) files_.put(dir + "/cgroup.procs", "");
  ASSERT_TRUE((*cgroup)->destroy());
}

TEST_F(CgroupV1Tree, FailureHalfwayRemovesWhatWasMade) {
  // pids/corral is a file: mkdir of the container's pids directory fails after memory and cpu were made.
  files_.put(kRoot + "/pids/corral", "not a directory");
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", kAllLimits, options());
  ASSERT_FALSE(cgroup);
  EXPECT_NE(
      cgroup.error().message().find(fmt::format("mkdir(\"{}/pids/corral/web-1\"): Not a directory", kRoot)),
      std::string::npos)
      << cgroup.error().message();
  EXPECT_FALSE(files_.hasDirectory(kRoot + "/memory/corral/web-1"));
  EXPECT_FALSE(files_.hasDirectory(kRoot + "/cpu,cpuacct/corral/web-1"));
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
  files_.remove(kRoot + "/devices");
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", {}, options());
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find("the \"devices\" cgroup v1 controller is not mounted"),
            std::string::npos)
      << cgroup.error().message();
}

TEST_F(CgroupV1Tree, MissingRequiredControllerIsNamed) {
  files_.remove(kRoot + "/pids");
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", kAllLimits, options());
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find("the \"pids\" cgroup v1 controller is not mounted"),
            std::string::npos)
      << cgroup.error().message();
  // Not needed without a pids limit.
  auto noPids = createCgroup(
      files_, CgroupMode::Hybrid, "web-1",
      {.memoryBytes = 8 << 20, .cpuMillis = {}, .pids = {}, .cpuShares = {}, .hugepages = {}}, options());
  ASSERT_TRUE(noPids) << noPids.error().message();
}

// The child joins by itself: it writes "0" to each hierarchy's tasks file, opened by the parent.
TEST_F(CgroupV1Tree, JoinOpensEachHierarchysTasksFile) {
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", {}, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  files_.takeCalls();
  auto join = (*cgroup)->openJoin();
  ASSERT_TRUE(join) << join.error().message();
  EXPECT_FALSE(join->directory);
  EXPECT_EQ(join->taskFiles.size(), 5u);
  std::vector<std::string> tasks;
  for (const auto& dir : containerDirs("web-1")) tasks.push_back(dir + "/tasks");
  EXPECT_EQ(join->taskPaths, tasks);
  EXPECT_EQ(files_.changes(), (Calls{
                                  "openForWriting /sys/fs/cgroup/memory/corral/web-1/tasks",
                                  "openForWriting /sys/fs/cgroup/cpu,cpuacct/corral/web-1/tasks",
                                  "openForWriting /sys/fs/cgroup/pids/corral/web-1/tasks",
                                  "openForWriting /sys/fs/cgroup/freezer/corral/web-1/tasks",
                                  "openForWriting /sys/fs/cgroup/devices/corral/web-1/tasks",
                              }));
}

TEST_F(CgroupV1Tree, DroppedUnlessReleasedAndReopened) {
  {
    auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", {}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
  }
  for (const auto& dir : containerDirs("web-1")) EXPECT_FALSE(files_.hasDirectory(dir)) << dir;
  {
    auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", {}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
    (*cgroup)->release();
  }
  auto reopened = openCgroup(files_, CgroupMode::Hybrid, "web-1", options());
  ASSERT_TRUE(reopened) << reopened.error().message();
  EXPECT_EQ((*reopened)->path(), kRoot + "/memory/corral/web-1");
  ASSERT_TRUE((*reopened)->destroy());
  for (const auto& dir : containerDirs("web-1")) EXPECT_FALSE(files_.hasDirectory(dir)) << dir;
}

// Leftovers of a crash in every hierarchy, the ones a container never joins included, are cleared.
TEST_F(CgroupV1Tree, ClearRemovesTheGroupInEveryHierarchy) {
  files_.put(kRoot + "/cpuset/corral/web-1/cgroup.procs", "");
  files_.put(kRoot + "/memory/corral/web-1/cgroup.procs", "");
  auto cleared = clearCgroup(files_, CgroupMode::Hybrid, "web-1", options());
  ASSERT_TRUE(cleared) << cleared.error().message();
  EXPECT_EQ(cleared->removed,
            (std::vector<std::string>{kRoot + "/cpuset/corral/web-1", kRoot + "/memory/corral/web-1"}));
  EXPECT_FALSE(files_.hasDirectory(kRoot + "/cpuset/corral/web-1"));
  EXPECT_FALSE(files_.hasDirectory(kRoot + "/memory/corral/web-1"));
}

}  // namespace
}  // namespace corral::container

namespace corral::container {
namespace {

// An OCI bundle's cpu.shares: v1 writes it as is, v2 as the weight runc and crun compute.
TEST(CgroupLimits, CpuSharesAreV1SharesAndV2Weight) {
  const ResourceLimits shares{
      .memoryBytes = {}, .cpuMillis = {}, .pids = {}, .cpuShares = 512, .hugepages = {}};
  EXPECT_EQ(cgroupV1LimitWrites(shares, true), (std::vector<CgroupFileWrite>{{"cpu", "cpu.shares", "512"}}));
  EXPECT_EQ(cgroupV2LimitWrites(shares, true), (std::vector<CgroupFileWrite>{{"", "cpu.weight", "20"}}));
}

}  // namespace
}  // namespace corral::container

namespace corral::container {
namespace {

const ResourceLimits kHugepageLimits{.memoryBytes = {},
                                     .cpuMillis = {},
                                     .pids = {},
                                     .cpuShares = {},
                                     .hugepages = {{"2MB", 4 << 20}, {"1GB", 0}}};

// linux.resources.hugepageLimits: each size's limit file, then its reservation twin when the kernel has
// them (as runc writes both).
TEST(CgroupHugetlb, WritesPerPageSizeForEachVersion) {
  EXPECT_EQ(cgroupHugetlbWrites(kHugepageLimits.hugepages, false, true),
            (std::vector<CgroupFileWrite>{{"hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304"},
                                          {"hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes", "4194304"},
                                          {"hugetlb", "hugetlb.1GB.limit_in_bytes", "0"},
                                          {"hugetlb", "hugetlb.1GB.rsvd.limit_in_bytes", "0"}}));
  EXPECT_EQ(cgroupHugetlbWrites(kHugepageLimits.hugepages, true, false),
            (std::vector<CgroupFileWrite>{{"", "hugetlb.2MB.max", "4194304"}, {"", "hugetlb.1GB.max", "0"}}));
  EXPECT_TRUE(cgroupHugetlbWrites({}, true, true).empty());
}

TEST(CgroupHugetlb, PageSizesAreNamedAsTheKernelNamesThem) {
  EXPECT_EQ(hugepageSizeName(2048), "2MB");
  EXPECT_EQ(hugepageSizeName(1048576), "1GB");
  EXPECT_EQ(hugepageSizeName(64), "64KB");
  EXPECT_EQ(hugepageSizeName(32768), "32MB");
  char pattern[] = "/tmp/corral-hugepages-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::filesystem::path dir = pattern;
  for (const char* name : {"hugepages-2048kB", "hugepages-1048576kB", "not-a-size", "hugepages-xkB"})
    std::filesystem::create_directory(dir / name);
  auto sizes = hostHugepageSizes(dir.string());
  ASSERT_TRUE(sizes) << sizes.error().message();
  EXPECT_EQ(*sizes, (std::vector<std::string>{"1GB", "2MB"}));
  std::filesystem::remove_all(dir);
  auto none = hostHugepageSizes(dir.string());
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().kind(), ErrorKind::NotFound);
  EXPECT_NE(none.error().message().find("CONFIG_HUGETLBFS"), std::string::npos) << none.error().message();
}

TEST(CgroupHugetlb, PageSizesThatCannotNameAFileAreRefused) {
  for (const char* bad : {"", "2", "MB", "02MB", "2mb", "2MB/../x", "2 MB", "2TB"}) {
    ResourceLimits limits;
    limits.hugepages = {{bad, 1}};
    auto valid = validateResourceLimits(limits);
    ASSERT_FALSE(valid) << bad;
    EXPECT_EQ(valid.error().field(), "hugepages[0].pageSize") << bad;
  }
  ResourceLimits twice;
  twice.hugepages = {{"2MB", 1}, {"2MB", 2}};
  auto valid = validateResourceLimits(twice);
  ASSERT_FALSE(valid);
  EXPECT_EQ(valid.error().field(), "hugepages[1].pageSize");
}

class CgroupV2Hugetlb : public FakeTree {
 protected:
  void SetUp() override {
    files_.put(kRoot + "/cgroup.controllers", "cpuset cpu io memory hugetlb pids\n");
    files_.put(kRoot + "/cgroup.subtree_control", "");
  }
};

TEST_F(CgroupV2Hugetlb, TheControllerIsEnabledAndEachSizeLimited) {
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", kHugepageLimits, options(), {});
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_EQ(files_.changes(),
            (Calls{
                "write /sys/fs/cgroup/cgroup.subtree_control +memory +cpu +pids +hugetlb",
                "mkdir /sys/fs/cgroup/corral",
                "write /sys/fs/cgroup/corral/cgroup.subtree_control +memory +cpu +pids +hugetlb",
                "mkdir /sys/fs/cgroup/corral/web-1",
                "write /sys/fs/cgroup/corral/web-1/hugetlb.2MB.max 4194304",
                "write /sys/fs/cgroup/corral/web-1/hugetlb.2MB.rsvd.max 4194304",
                "write /sys/fs/cgroup/corral/web-1/hugetlb.1GB.max 0",
                "write /sys/fs/cgroup/corral/web-1/hugetlb.1GB.rsvd.max 0",
                "attachDeviceProgram /sys/fs/cgroup/corral/web-1 []",
            }));
  // Without limits, the controller is left alone.
  files_.takeCalls();
  auto plain = createCgroup(files_, CgroupMode::Unified, "web-2", {}, options(), {});
  ASSERT_TRUE(plain) << plain.error().message();
  EXPECT_EQ(files_.changes(), (Calls{"mkdir /sys/fs/cgroup/corral/web-2",
                                     "attachDeviceProgram /sys/fs/cgroup/corral/web-2 []"}));
  EXPECT_EQ(text(kRoot + "/corral/web-2/hugetlb.2MB.max"), "max\n") << "as the parent's: unlimited";
}

TEST_F(CgroupV2Hugetlb, WithoutReservationFilesOnlyTheLimits) {
  files_.hugetlbReservations = false;
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", kHugepageLimits, options(), {});
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_EQ(text(kRoot + "/corral/web-1/hugetlb.2MB.max"), "4194304");
  EXPECT_FALSE(files_.file(kRoot + "/corral/web-1/hugetlb.2MB.rsvd.max"));
}

TEST_F(CgroupV2Hugetlb, AMissingControllerIsNamedAndNothingMade) {
  files_.put(kRoot + "/cgroup.controllers", "cpu io memory pids\n");
  auto cgroup = createCgroup(files_, CgroupMode::Unified, "web-1", kHugepageLimits, options(), {});
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find("the \"hugetlb\" controller is not available"), std::string::npos)
      << cgroup.error().message();
  EXPECT_EQ(files_.changes(), Calls{});
}

class CgroupV1Hugetlb : public FakeTree {
 protected:
  void SetUp() override {
    for (const char* hierarchy : {"memory", "cpu,cpuacct", "pids", "freezer", "devices", "hugetlb"})
      files_.makeDirectories(kRoot + "/" + hierarchy);
  }
};

TEST_F(CgroupV1Hugetlb, JoinedOnlyWithLimitsWrittenAndRemoved) {
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", kHugepageLimits, options(), {});
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  const std::string dir = kRoot + "/hugetlb/corral/web-1";
  const Calls changes = files_.changes();
  EXPECT_NE(std::find(changes.begin(), changes.end(), "mkdir " + dir), changes.end());
  const Calls hugetlbWrites(
      std::find(changes.begin(), changes.end(), "write " + dir + "/hugetlb.2MB.limit_in_bytes 4194304"),
      changes.end());
  EXPECT_EQ(hugetlbWrites, (Calls{
                               "write " + dir + "/hugetlb.2MB.limit_in_bytes 4194304",
                               "write " + dir + "/hugetlb.2MB.rsvd.limit_in_bytes 4194304",
                               "write " + dir + "/hugetlb.1GB.limit_in_bytes 0",
                               "write " + dir + "/hugetlb.1GB.rsvd.limit_in_bytes 0",
                               "write /sys/fs/cgroup/devices/corral/web-1/devices.deny a",
                           }));
  auto join = (*cgroup)->openJoin();
  ASSERT_TRUE(join) << join.error().message();
  EXPECT_EQ(join->taskPaths.back(), dir + "/tasks") << "the child joins it too";
  (*cgroup)->release();
  // After a restart the group is found again, the hugetlb one included, and removed whole.
  auto reopened = openCgroup(files_, CgroupMode::Hybrid, "web-1", options());
  ASSERT_TRUE(reopened) << reopened.error().message();
  ASSERT_TRUE((*reopened)->destroy());
  EXPECT_FALSE(files_.hasDirectory(dir));

  files_.takeCalls();
  auto plain = createCgroup(files_, CgroupMode::Hybrid, "web-2", {}, options(), {});
  ASSERT_TRUE(plain) << plain.error().message();
  EXPECT_FALSE(files_.hasDirectory(kRoot + "/hugetlb/corral/web-2")) << "no limits: not joined";
}

TEST_F(CgroupV1Hugetlb, AnUnmountedControllerIsNamedAndNothingLeft) {
  files_.remove(kRoot + "/hugetlb");
  auto cgroup = createCgroup(files_, CgroupMode::Hybrid, "web-1", kHugepageLimits, options(), {});
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find("the \"hugetlb\" cgroup v1 controller is not mounted under "
                                          "\"/sys/fs/cgroup\" (huge page limits need it)"),
            std::string::npos)
      << cgroup.error().message();
  EXPECT_EQ(files_.changes(), Calls{});
}

}  // namespace
}  // namespace corral::container
