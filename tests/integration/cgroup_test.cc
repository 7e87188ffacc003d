// Cgroups on the real kernel (root): limits land in the kernel's files, processes join, an OOM kill and a
// fork bomb are contained, killAll empties the group, destroy removes every directory, reattach works.
// Everything lives under the parent "corral-test" and is removed again.
#include "container/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "container/cgroup_mode.h"
#include "tests/integration/host_needs.h"

namespace corral::container {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCgroupRoot = "/sys/fs/cgroup";
// Per test process: ctest runs tests in parallel processes, and one test's teardown removes its parent.
const std::string kParent = fmt::format("corral-test-{}", ::getpid());
const std::string kRollbackParent = fmt::format("corral-test-rollback-{}", ::getpid());

std::string slurp(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// Kills whatever is left in DIR (and below), then removes the directories bottom-up.
void removeCgroupTree(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_directory() && !entry.is_symlink()) removeCgroupTree(entry.path());
  for (int attempt = 0; attempt < 500; ++attempt) {
    std::istringstream procs(slurp(dir / "cgroup.procs"));
    bool any = false;
    for (pid_t pid; procs >> pid;) {
      ::kill(pid, SIGKILL);
      any = true;
    }
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    if (!any && errno != EBUSY) return;
    ::usleep(10000);
  }
}

// The directories that hold test cgroups: ROOT on v2, every hierarchy ROOT/<h> on v1.
std::vector<fs::path> hierarchyRoots(CgroupMode mode) {
  if (mode == CgroupMode::Unified) return {kCgroupRoot};
  std::vector<fs::path> roots;
  for (const auto& entry : fs::directory_iterator(kCgroupRoot))
    if (entry.is_directory() && !entry.is_symlink() && entry.path().filename() != "unified")
      roots.push_back(entry.path());
  return roots;
}

// A forked child that waits for a byte on a pipe, then runs `work` and exits with its result.
class GatedChild {
 public:
  template <class Work>
  explicit GatedChild(Work work) {
    int go[2];
    if (::pipe2(go, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::close(go[1]);
      char byte;
      if (::read(go[0], &byte, 1) != 1) _exit(100);
      _exit(work());
    }
    ::close(go[0]);
    go_ = go[1];
  }
  ~GatedChild() {
    if (go_ >= 0) ::close(go_);
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  void start() {
    char byte = 'g';
    ASSERT_EQ(::write(go_, &byte, 1), 1);
  }
  int wait() {
    int status = 0;
    EXPECT_EQ(::waitpid(pid_, &status, 0), pid_);
    reaped_ = true;
    return status;
  }

 private:
  pid_t pid_ = -1;
  int go_ = -1;
  bool reaped_ = false;
};

class CgroupKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      if (::getenv("CORRAL_REQUIRE_PRIVILEGED")) FAIL() << "cgroup tests need root";
      GTEST_SKIP()
          << "cgroup tests need root (run as root or set CORRAL_REQUIRE_PRIVILEGED to make this fail)";
    }
    auto mode = detectCgroupMode(kCgroupRoot);
    ASSERT_TRUE(mode) << mode.error().message();
    mode_ = *mode;
    name_ =
        fmt::format("cg-{}-{}", ::getpid(), ::testing::UnitTest::GetInstance()->current_test_info()->name());
    cleanUp();
  }
  void TearDown() override {
    if (::geteuid() == 0) cleanUp();
  }
  void cleanUp() {
    for (const auto& root : hierarchyRoots(mode_)) {
      removeCgroupTree(root / kParent);
      removeCgroupTree(root / kRollbackParent);
    }
  }
  CgroupOptions options() const { return {.root = kCgroupRoot, .parent = kParent}; }
  // The container's directory in the hierarchy that has `file` (v1), or the one directory (v2).
  fs::path dirFor(const std::string& controller) const {
    if (mode_ == CgroupMode::Unified) return fs::path(kCgroupRoot) / kParent / name_;
    return fs::canonical(fs::path(kCgroupRoot) / controller) / kParent / name_;
  }
  // Every directory the group may have: one per hierarchy (destroy must leave none).
  std::vector<fs::path> allDirs() const {
    std::vector<fs::path> dirs;
    for (const auto& root : hierarchyRoots(mode_)) dirs.push_back(root / kParent / name_);
    return dirs;
  }
  // The directories the group must have: one per hierarchy corral uses.
  std::vector<fs::path> usedDirs() const {
    if (!isV1()) return {fs::path(kCgroupRoot) / kParent / name_};
    std::vector<fs::path> dirs;
    for (const char* controller : {"memory", "cpu", "cpuacct", "pids", "freezer", "devices"}) {
      std::error_code ec;
      fs::path base = fs::canonical(fs::path(kCgroupRoot) / controller, ec);
      if (ec) continue;
      fs::path dir = base / kParent / name_;
      if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
    }
    return dirs;
  }
  bool isV1() const { return mode_ != CgroupMode::Unified; }

  CgroupMode mode_ = CgroupMode::Unified;
  std::string name_;
};

TEST_F(CgroupKernel, LimitsProcessesStatsKillAndDestroy) {
  const ResourceLimits limits{
      .memoryBytes = 64 << 20, .cpuMillis = 500, .pids = 32, .cpuShares = {}, .hugepages = {}};
  auto cgroup = createCgroup(mode_, name_, limits, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_EQ((*cgroup)->relativePath(), fmt::format("/{}/{}", kParent, name_));

  if (isV1()) {
    EXPECT_EQ(slurp(dirFor("memory") / "memory.limit_in_bytes"), "67108864");
    if (fs::exists(dirFor("memory") / "memory.memsw.limit_in_bytes")) {
      EXPECT_EQ(slurp(dirFor("memory") / "memory.memsw.limit_in_bytes"), "67108864");
    }
    EXPECT_EQ(slurp(dirFor("cpu") / "cpu.cfs_quota_us"), "50000");
    EXPECT_EQ(slurp(dirFor("cpu") / "cpu.cfs_period_us"), "100000");
    // Not joined: it neither limits, accounts nor protects (bench/README.md).
    for (const char* controller : {"cpuset"}) {
      if (fs::exists(fs::path(kCgroupRoot) / controller)) {
        EXPECT_FALSE(fs::exists(dirFor(controller))) << controller;
      }
    }
  } else {
    EXPECT_EQ(slurp(dirFor("memory") / "memory.max"), "67108864");
    EXPECT_EQ(slurp(dirFor("cpu") / "cpu.max"), "50000 100000");
  }
  EXPECT_EQ(slurp(dirFor("pids") / "pids.max"), "32");

  // The child touches 8 MiB once it is in the group, then waits to be killed.
  GatedChild child([] {
    std::vector<char> memory(8 << 20, 1);
    for (;;) ::pause();
    return 0;
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE((*cgroup)->addProcess(child.pid()));
  std::string membership = slurp(fmt::format("/proc/{}/cgroup", child.pid()));
  EXPECT_NE(membership.find(isV1() ? fmt::format("memory:/{}/{}", kParent, name_)
                                   : fmt::format("0::/{}/{}", kParent, name_)),
            std::string::npos)
      << membership;
  if (isV1()) {
    EXPECT_NE(membership.find(fmt::format("pids:/{}/{}", kParent, name_)), std::string::npos);
  }
  // The usage files kept open before the child touches anything: a later read sees its 8 MiB (each
  // pread at offset 0 of a control file is rendered afresh).
  auto kept = (*cgroup)->openUsageFiles();
  ASSERT_TRUE(kept) << kept.error().message();
  auto early = (*kept)->read();
  ASSERT_TRUE(early) << early.error().message();
  EXPECT_LT(early->memoryCurrentBytes, 8u << 20);
  child.start();

  Result<CgroupStats> stats = fail(internalError("not read"));
  for (int i = 0; i < 200; ++i) {  // until the child has touched its memory
    stats = (*cgroup)->stats();
    ASSERT_TRUE(stats) << stats.error().message();
    if (stats->memoryCurrentBytes >= (8u << 20)) break;
    ::usleep(10000);
  }
  EXPECT_GE(stats->memoryCurrentBytes, 8u << 20);
  EXPECT_EQ(stats->pidsCurrent, 1u);
  EXPECT_EQ(stats->oomKills, 0u);
  auto late = (*kept)->read();
  ASSERT_TRUE(late) << late.error().message();
  EXPECT_GE(late->memoryCurrentBytes, 8u << 20);
  EXPECT_EQ(late->oomKills, 0u);
  kept->reset();

  auto busy = (*cgroup)->destroy();
  ASSERT_FALSE(busy);
  EXPECT_EQ(busy.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(busy.error().message().find("cgroup still has processes"), std::string::npos);

  ASSERT_TRUE((*cgroup)->killAll());
  int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_EQ(slurp((*cgroup)->path() + "/cgroup.procs"), "");

  ASSERT_TRUE((*cgroup)->destroy());
  for (const auto& dir : allDirs()) EXPECT_FALSE(fs::exists(dir)) << dir;
}

TEST_F(CgroupKernel, OutOfMemoryKillsTheProcess) {
  auto cgroup = createCgroup(
      mode_, name_, {.memoryBytes = 32 << 20, .cpuMillis = {}, .pids = {}, .cpuShares = {}, .hugepages = {}},
      options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  GatedChild child([] {
    constexpr size_t kSize = 256u << 20;
    // volatile: the stores must happen, or the compiler may drop them with the allocation.
    volatile char* memory = static_cast<char*>(::malloc(kSize));
    if (!memory) return 2;
    for (size_t i = 0; i < kSize; i += 4096) memory[i] = 1;
    return 0;  // survived: the limit did not hold
  });
  ASSERT_GT(child.pid(), 0);
  ASSERT_TRUE((*cgroup)->addProcess(child.pid()));
  auto kept = (*cgroup)->openUsageFiles();  // as the container watcher keeps them
  ASSERT_TRUE(kept) << kept.error().message();
  child.start();
  int status = child.wait();
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_GE(stats->oomKills, 1u);
  auto keptRead = (*kept)->read();
  ASSERT_TRUE(keptRead) << keptRead.error().message();
  EXPECT_EQ(keptRead->oomKills, stats->oomKills);
  kept->reset();
  EXPECT_GE(stats->memoryPeakBytes, isV1() || fs::exists(dirFor("memory") / "memory.peak") ? 16u << 20 : 0u);
  ASSERT_TRUE((*cgroup)->destroy());
}

TEST_F(CgroupKernel, ForkBombStopsAtPidsMax) {
  auto cgroup = createCgroup(
      mode_, name_, {.memoryBytes = {}, .cpuMillis = {}, .pids = 16, .cpuShares = {}, .hugepages = {}},
      options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  int report[2];
  ASSERT_EQ(::pipe2(report, O_CLOEXEC), 0);
  // Orphaned bomb processes are reparented to us and reaped below, not left as zombies for PID 1.
  ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  GatedChild bomb([&] {
    int result[2] = {0, 0};  // forks that succeeded, errno of the one that failed
    for (int i = 0; i < 64; ++i) {
      pid_t pid = ::fork();
      if (pid == 0) {
        for (;;) ::pause();
      }
      if (pid < 0) {
        result[1] = errno;
        break;
      }
      ++result[0];
    }
    if (::write(report[1], result, sizeof result) != sizeof result) return 3;
    for (;;) ::pause();
    return 0;
  });
  ASSERT_GT(bomb.pid(), 0);
  ::close(report[1]);
  ASSERT_TRUE((*cgroup)->addProcess(bomb.pid()));
  bomb.start();
  int result[2] = {-1, -1};
  ASSERT_EQ(::read(report[0], result, sizeof result), static_cast<ssize_t>(sizeof result));
  ::close(report[0]);
  EXPECT_EQ(result[0], 15) << "the bomb itself is the 16th task";
  EXPECT_EQ(result[1], EAGAIN) << std::strerror(result[1]);
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->pidsCurrent, 16u);

  // The host is unharmed: we can still fork.
  pid_t probe = ::fork();
  if (probe == 0) _exit(0);
  ASSERT_GT(probe, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(probe, &status, 0), probe);

  ASSERT_TRUE((*cgroup)->killAll());
  status = bomb.wait();
  EXPECT_TRUE(WIFSIGNALED(status));
  // A killed task leaves cgroup.procs at exit but holds its pids charge until it is reaped, and the orphans
  // reach us as zombies a little later (slow under TCG): reap until the charge is gone.
  for (int attempt = 0; attempt < 500; ++attempt) {
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    stats = (*cgroup)->stats();
    ASSERT_TRUE(stats) << stats.error().message();
    if (stats->pidsCurrent == 0) break;
    ::usleep(10000);
  }
  ::prctl(PR_SET_CHILD_SUBREAPER, 0);
  EXPECT_EQ(stats->pidsCurrent, 0u);
  ASSERT_TRUE((*cgroup)->destroy());
  for (const auto& dir : allDirs()) EXPECT_FALSE(fs::exists(dir)) << dir;
}

TEST_F(CgroupKernel, ReattachAfterRestart) {
  std::string path;
  {
    auto cgroup = createCgroup(
        mode_, name_, {.memoryBytes = {}, .cpuMillis = {}, .pids = 8, .cpuShares = {}, .hugepages = {}},
        options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
    path = (*cgroup)->path();
    (*cgroup)->release();  // the daemon keeps it, then "restarts"
  }
  ASSERT_TRUE(fs::is_directory(path));
  auto missing = openCgroup(mode_, name_ + "-gone", options());
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind(), ErrorKind::NotFound);

  auto cgroup = openCgroup(mode_, name_, options());
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  EXPECT_EQ((*cgroup)->path(), path);
  EXPECT_EQ(slurp(dirFor("pids") / "pids.max"), "8");
  GatedChild child([] {
    for (;;) ::pause();
    return 0;
  });
  ASSERT_TRUE((*cgroup)->addProcess(child.pid()));
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->pidsCurrent, 1u);
  ASSERT_TRUE((*cgroup)->killAll());
  child.wait();
  ASSERT_TRUE((*cgroup)->destroy());
  for (const auto& dir : allDirs()) EXPECT_FALSE(fs::exists(dir)) << dir;
}

TEST_F(CgroupKernel, UnreleasedCgroupIsRemovedWhenDropped) {
  {
    auto cgroup = createCgroup(
        mode_, name_,
        {.memoryBytes = 16 << 20, .cpuMillis = 100, .pids = 4, .cpuShares = {}, .hugepages = {}}, options());
    ASSERT_TRUE(cgroup) << cgroup.error().message();
    for (const auto& dir : usedDirs()) EXPECT_TRUE(fs::is_directory(dir)) << dir;
  }
  for (const auto& dir : allDirs()) EXPECT_FALSE(fs::exists(dir)) << dir;
}

TEST_F(CgroupKernel, FailedLimitWriteRollsBack) {
  const CgroupOptions rollback{.root = kCgroupRoot, .parent = kRollbackParent};
  if (isV1()) {
    // v1 refuses a child CFS quota above its parent's: the quota write fails after every directory exists.
    const fs::path cpuParent = fs::canonical(fs::path(kCgroupRoot) / "cpu") / kRollbackParent;
    fs::create_directories(cpuParent);
    std::ofstream(cpuParent / "cpu.cfs_quota_us") << "10000";
    ASSERT_EQ(slurp(cpuParent / "cpu.cfs_quota_us"), "10000");
    auto cgroup = createCgroup(
        mode_, name_,
        {.memoryBytes = 16 << 20, .cpuMillis = 500, .pids = 4, .cpuShares = {}, .hugepages = {}}, rollback);
    ASSERT_FALSE(cgroup);
    EXPECT_NE(
        cgroup.error().message().find(fmt::format(
            "write(\"{}/{}/cpu.cfs_quota_us\", \"50000\"): Invalid argument", cpuParent.string(), name_)),
        std::string::npos)
        << cgroup.error().message();
  } else {
    // No room for another group below the parent: mkdir fails and nothing is left.
    const fs::path parent = fs::path(kCgroupRoot) / kRollbackParent;
    fs::create_directories(parent);
    std::ofstream(parent / "cgroup.max.descendants") << "0";
    auto cgroup = createCgroup(
        mode_, name_,
        {.memoryBytes = 16 << 20, .cpuMillis = 500, .pids = 4, .cpuShares = {}, .hugepages = {}}, rollback);
    ASSERT_FALSE(cgroup);
    EXPECT_NE(cgroup.error().message().find(fmt::format("mkdir(\"{}/{}\")", parent.string(), name_)),
              std::string::npos)
        << cgroup.error().message();
  }
  for (const auto& root : hierarchyRoots(mode_))
    EXPECT_FALSE(fs::exists(root / kRollbackParent / name_)) << root;
}

// On a hybrid host the v2 mount has no controllers (all are bound to v1 hierarchies): when a limit needs
// one, the v2 driver says so on the real cgroup2 filesystem instead of failing on a missing file later.
TEST_F(CgroupKernel, V2DriverNamesAMissingController) {
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid}});  // only there a v2 mount has no controllers
  const std::string unified = std::string(kCgroupRoot) + "/unified";
  auto cgroup =
      createCgroup(CgroupMode::Unified, name_,
                   {.memoryBytes = 16 << 20, .cpuMillis = {}, .pids = {}, .cpuShares = {}, .hugepages = {}},
                   {.root = unified, .parent = kParent});
  ASSERT_FALSE(cgroup);
  EXPECT_EQ(cgroup.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(cgroup.error().message().find(fmt::format(
                "the \"memory\" controller is not available in \"{}/cgroup.controllers\"", unified)),
            std::string::npos)
      << cgroup.error().message();
  EXPECT_FALSE(fs::exists(unified + "/" + kParent));
}

// Without limits the v2 driver needs no controller: on the hybrid host's bare unified mount it still
// groups the processes, reports them, kills them all and removes its directory.
TEST_F(CgroupKernel, V2DriverWithoutControllersGroupsAndKills) {
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid}});  // only there a v2 mount has no controllers
  const fs::path unified = fs::path(kCgroupRoot) / "unified";
  auto cgroup = createCgroup(CgroupMode::Unified, name_, {}, {.root = unified.string(), .parent = kParent});
  ASSERT_TRUE(cgroup) << cgroup.error().message();
  const fs::path dir = unified / kParent / name_;
  EXPECT_EQ((*cgroup)->path(), dir.string());
  GatedChild child([] {
    ::pause();
    return 0;
  });
  ASSERT_TRUE((*cgroup)->addProcess(child.pid()));
  EXPECT_EQ(slurp(dir / "cgroup.procs"), std::to_string(child.pid()));
  auto stats = (*cgroup)->stats();
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->memoryCurrentBytes, 0u);
  ASSERT_TRUE((*cgroup)->killAll());
  int status = child.wait();
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
  ASSERT_TRUE((*cgroup)->destroy());
  EXPECT_FALSE(fs::exists(dir));
  ::rmdir((unified / kParent).c_str());
}

}  // namespace
}  // namespace corral::container
