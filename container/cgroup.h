// Control groups for one container, on either hierarchy: v2 (unified) or v1 (per-controller trees, as on
// hybrid hosts). The driver is picked from detectCgroupMode(); callers see one interface.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "container/cgroup_mode.h"
#include "container/devices.h"
#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

class CgroupFiles;  // cgroup_files.h

// A limit on one huge page size's usage (OCI linux.resources.hugepageLimits).
struct HugepageLimit {
  std::string pageSize;  // as the kernel names it in hugetlb control files: "2MB", "1GB", "64KB"
  uint64_t bytes = 0;
  bool operator==(const HugepageLimit&) const = default;
};

struct ResourceLimits {
  std::optional<uint64_t> memoryBytes;  // hard limit; swap is limited to the same total (no extra swap)
  std::optional<uint32_t> cpuMillis;    // 500 = half a CPU (CFS quota over a 100 ms period)
  std::optional<uint32_t> pids;         // max tasks in the group
  // The group's CPU weight as v1 shares (2..262144; 1024 is the default): v1 cpu.shares, v2 cpu.weight
  // converted as runc and crun do (1 + (shares - 2) * 9999 / 262142).
  std::optional<uint64_t> cpuShares;
  // Per huge page size: v1 hugetlb.SIZE.limit_in_bytes, v2 hugetlb.SIZE.max (and their .rsvd. twins where
  // the kernel has them, as runc writes both). The hugetlb controller is joined only when this is set.
  std::vector<HugepageLimit> hugepages;
};

// The kernel's name of a huge page size in hugetlb control files (mm/hugetlb_cgroup.c): 2048 KiB → "2MB",
// 1048576 KiB → "1GB", 64 KiB → "64KB".
std::string hugepageSizeName(uint64_t kibibytes);
// The huge page sizes this host has, by that name: one per `hugepages-NkB` directory in `dir`. NotFound
// when `dir` is missing (a kernel without CONFIG_HUGETLBFS).
Result<std::vector<std::string>> hostHugepageSizes(const std::string& dir = "/sys/kernel/mm/hugepages");

struct CgroupStats {
  uint64_t memoryCurrentBytes = 0;
  uint64_t memoryPeakBytes = 0;  // 0 when the kernel does not report it
  uint64_t oomKills = 0;         // processes the kernel OOM-killed in this group
  uint64_t pidsCurrent = 0;
};

// How a new process enters the group without its parent writing the pid to cgroup.procs: that write takes
// the kernel's global cgroup_threadgroup_rwsem for writing (an RCU grace period, once per v1 hierarchy:
// milliseconds, more in a busy multithreaded daemon). Instead, on v2 the child is cloned straight into the
// group (clone3 with CLONE_INTO_CGROUP and `directory`); on v1 the child, while still single-threaded,
// writes "0" to each hierarchy's `tasks` file, which moves just the calling thread and skips that lock
// (kernel cgroup_procs_write_start).
struct CgroupJoin {
  UniqueFd directory;                  // v2: the group's directory (O_DIRECTORY)
  std::vector<UniqueFd> taskFiles;     // v1: each joined hierarchy's `tasks` file, opened O_WRONLY
  std::vector<std::string> taskPaths;  // the paths of taskFiles, in the same order, for messages
};

// usage()'s two control files kept open: each read is one pread(2) at offset 0 per file, no open, close or
// allocation (a watcher sampling 500 containers a second spent ~60 % of its time opening and closing them).
// Holds two descriptors until destroyed; Cgroup::destroy() does not close them, so whoever holds one drops
// it before the group goes (an open control file keeps a removed group's memory accounted as a dying group).
class CgroupUsageFiles {
 public:
  CgroupUsageFiles(const CgroupFiles& files, std::string memoryPath, UniqueFd memory, std::string oomPath,
                   UniqueFd oom);
  // memoryCurrentBytes and oomKills as of now (the others stay 0), as usage() reads them.
  Result<CgroupStats> read() const;
  static constexpr int kDescriptors = 2;

 private:
  const CgroupFiles& files_;
  std::string memoryPath_;  // v2 memory.current, v1 memory.usage_in_bytes
  UniqueFd memory_;
  std::string oomPath_;  // v2 memory.events, v1 memory.oom_control: the "oom_kill N" line
  UniqueFd oom_;
};

// One container's cgroup(s). Created with the limits applied; removed when destroyed (or on destruction
// unless released into the daemon's keeping, so a failed start leaves nothing behind).
class Cgroup {
 public:
  virtual ~Cgroup() = default;
  // "/sys/fs/cgroup/corral/web-1" on v2; the memory controller's path on v1 (for messages).
  virtual std::string path() const = 0;
  virtual Status addProcess(pid_t pid) = 0;
  // Opened by the parent before the child exists (see CgroupJoin); the child then joins by itself.
  virtual Result<CgroupJoin> openJoin() const = 0;
  virtual Result<CgroupStats> stats() const = 0;
  // What a usage sample needs of stats(): memoryCurrentBytes and oomKills (the others stay 0), in two
  // file reads where stats() makes four.
  virtual Result<CgroupStats> usage() const { return stats(); }
  // usage()'s files opened to be read again and again; NotFound when the group has no memory controller
  // (usage() then reads zeros without any file).
  virtual Result<std::unique_ptr<CgroupUsageFiles>> openUsageFiles() const {
    return fail(notFound("cgroup \"{}\": no usage files to keep open", path()));
  }
  // Kills every process in the group (cgroup.kill on v2 ≥ 5.14, else SIGKILL each pid) and waits until empty.
  virtual Status killAll() = 0;
  // Removes the directories; fails with Conflict while processes remain.
  virtual Status destroy() = 0;
  // The processes in the group (corral-runtime's ps, kill --all).
  virtual Result<std::vector<pid_t>> processes() const {
    return fail(internalError("cgroup {}: listing processes is not supported", path()));
  }
  // Freezes or thaws every process in the group (v1 freezer, v2 cgroup.freeze) and waits until done.
  virtual Status setFrozen(bool /*frozen*/) {
    return fail(internalError("cgroup {}: freezing is not supported", path()));
  }
  virtual Result<bool> frozen() const { return false; }
  // After this, destruction no longer removes the cgroup (the daemon owns it; it reattaches by name).
  virtual void release() = 0;
  // The cgroup's path as seen in /proc/PID/cgroup lines, for tests: "/corral/web-1".
  virtual std::string relativePath() const = 0;
};

struct CgroupOptions {
  std::string root = "/sys/fs/cgroup";  // tests may point this elsewhere
  std::string parent = "corral";        // all corral containers live under ROOT[/controller]/corral/
};

// Creates ROOT/.../corral/NAME with `limits` written before any process joins. A group of that name left
// over (a daemon crash between making it and recording it) is cleared first (clearCgroup), with a warning.
// Every group gets a device policy: deny all but `devices` (v1: the devices controller's deny/allow files;
// v2: a BPF device program, see device_bpf.h).
Result<std::unique_ptr<Cgroup>> createCgroup(CgroupMode mode, const std::string& name,
                                             const ResourceLimits& limits, const CgroupOptions& options = {},
                                             const std::vector<DeviceRule>& devices = defaultDeviceRules());
// Reattaches to an existing container cgroup after a daemon restart (NotFound if it is gone).
Result<std::unique_ptr<Cgroup>> openCgroup(CgroupMode mode, const std::string& name,
                                           const CgroupOptions& options = {});

// What clearCgroup found and removed; both empty when nothing was left.
struct ClearedCgroup {
  std::vector<pid_t> killed;         // the processes that were in the group
  std::vector<std::string> removed;  // the directories removed (one per v1 hierarchy, or the v2 one)
};
// Kills every process in the container cgroup NAME and removes its directories, in every hierarchy where
// one exists: each mounted v1 hierarchy (whichever controllers a corral of any version joined) and the v2
// tree (on hybrid hosts, its mount under ROOT too). For leftovers of a crash, whatever the row says.
Result<ClearedCgroup> clearCgroup(CgroupMode mode, const std::string& name,
                                  const CgroupOptions& options = {});

// The same three through `files` instead of the kernel's cgroup filesystems (the unit tests' fake).
Result<std::unique_ptr<Cgroup>> createCgroup(const CgroupFiles& files, CgroupMode mode,
                                             const std::string& name, const ResourceLimits& limits,
                                             const CgroupOptions& options,
                                             const std::vector<DeviceRule>& devices = defaultDeviceRules());
Result<std::unique_ptr<Cgroup>> openCgroup(const CgroupFiles& files, CgroupMode mode, const std::string& name,
                                           const CgroupOptions& options);
Result<ClearedCgroup> clearCgroup(const CgroupFiles& files, CgroupMode mode, const std::string& name,
                                  const CgroupOptions& options);

}  // namespace corral::container
