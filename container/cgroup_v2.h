// The cgroup v2 (unified) driver: one directory ROOT/PARENT/NAME with controllers enabled from above;
// and the control-file helpers both drivers share (defined in cgroup.cc, the factory).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "container/cgroup.h"
#include "core/error.h"

namespace corral::container {

// One value written into a control file before any process joins. `controller` is the v1 hierarchy the
// file lives in ("memory", "cpu", "pids"); empty on v2, where every file is in the one directory.
struct CgroupFileWrite {
  std::string controller;
  std::string file;
  std::string value;
  bool operator==(const CgroupFileWrite&) const = default;
};

constexpr uint64_t kCpuPeriodMicros = 100000;  // CFS period: cpuMillis × 100 µs of quota per 100 ms
constexpr std::chrono::seconds kKillTimeout{5};

// The pure part of the v2 driver: which files get which values, in order. memory.swap.max only when the
// kernel accounts swap (the file exists).
std::vector<CgroupFileWrite> cgroupV2LimitWrites(const ResourceLimits& limits, bool swapAccounting);

Result<std::unique_ptr<Cgroup>> createCgroupV2(const std::string& name, const ResourceLimits& limits,
                                               const CgroupOptions& options,
                                               const std::vector<DeviceRule>& devices);
Result<std::unique_ptr<Cgroup>> openCgroupV2(const std::string& name, const CgroupOptions& options);
Result<ClearedCgroup> clearCgroupV2(const std::string& name, const CgroupOptions& options);

// ---- Shared by both drivers ----

// InvalidArgument with field "name": empty, "/", "..", or not a single path component.
Status validateCgroupName(const std::string& name, const std::string& field = "name");
// InvalidArgument naming memoryBytes, cpuMillis or pids when a value cannot work as a limit.
Status validateResourceLimits(const ResourceLimits& limits);

// Control-file access. On a real cgroup filesystem the kernel provides every file when a directory is made;
// on a plain directory tree (a test's stand-in for /sys/fs/cgroup, where the test creates the files the
// kernel would) writes create the file, a missing file reads as empty, and removing a directory removes the
// files in it first.
class CgroupFiles {
 public:
  // Looks at the filesystem type of `dir` to decide which of the two it is.
  static CgroupFiles forTree(const std::string& dir);
  explicit CgroupFiles(bool kernel) : kernel_(kernel) {}
  bool kernel() const { return kernel_; }

  Result<std::string> read(const std::string& path) const;
  // One write(2) of `value`; errors read `write("PATH", "VALUE"): strerror`.
  Status write(const std::string& path, std::string_view value) const;
  bool exists(const std::string& path) const;
  bool isDirectory(const std::string& path) const;
  // mkdir(path, 0755); the error keeps errno (EEXIST for callers to turn into Conflict).
  Status makeDirectory(const std::string& path) const;
  // rmdir(path); EBUSY/ENOTEMPTY become Conflict "cgroup still has processes".
  Status removeDirectory(const std::string& path) const;
  // The pids listed in a cgroup.procs file.
  Result<std::vector<pid_t>> readPids(const std::string& procsPath) const;
  // A number from a file holding one ("123\n"); "max" is nullopt.
  Result<std::optional<uint64_t>> readNumber(const std::string& path) const;
  // The value of `key` in a flat-keyed file ("oom_kill 3" lines), 0 when the key is absent.
  Result<uint64_t> readKeyed(const std::string& path, std::string_view key) const;

 private:
  bool kernel_;
};

// "[1234, 5678]" for messages.
std::string formatPids(const std::vector<pid_t>& pids);

}  // namespace corral::container
