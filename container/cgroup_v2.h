// The cgroup v2 (unified) driver: one directory ROOT/PARENT/NAME with controllers enabled from above;
// and the helpers both drivers share (defined in cgroup.cc, the factory).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "container/cgroup.h"
#include "container/cgroup_files.h"
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

Result<std::unique_ptr<Cgroup>> createCgroupV2(const CgroupFiles& files, const std::string& name,
                                               const ResourceLimits& limits, const CgroupOptions& options,
                                               const std::vector<DeviceRule>& devices);
Result<std::unique_ptr<Cgroup>> openCgroupV2(const CgroupFiles& files, const std::string& name,
                                             const CgroupOptions& options);
Result<ClearedCgroup> clearCgroupV2(const CgroupFiles& files, const std::string& name,
                                    const CgroupOptions& options);

// ---- Shared by both drivers ----

// InvalidArgument with field "name": empty, "/", "..", or not a single path component.
Status validateCgroupName(const std::string& name, const std::string& field = "name");
// Huge page limits in order: each size's limit (v1 hugetlb.SIZE.limit_in_bytes in the "hugetlb" hierarchy,
// v2 hugetlb.SIZE.max), then its reservation limit (.rsvd., Linux 5.7 and later) when `reservations`.
std::vector<CgroupFileWrite> cgroupHugetlbWrites(const std::vector<HugepageLimit>& limits, bool v2,
                                                 bool reservations);

// InvalidArgument naming memoryBytes, cpuMillis, pids or hugepages when a value cannot work as a limit.
Status validateResourceLimits(const ResourceLimits& limits);

// CgroupUsageFiles over the two files at these paths, opened through `files`.
Result<std::unique_ptr<CgroupUsageFiles>> openUsageFiles(const CgroupFiles& files, std::string memoryPath,
                                                         std::string oomPath);

// "[1234, 5678]" for messages.
std::string formatPids(const std::vector<pid_t>& pids);

}  // namespace corral::container
