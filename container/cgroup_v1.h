// The cgroup v1 driver (legacy and hybrid hosts): one directory per controller hierarchy,
// ROOT/<hierarchy>/PARENT/NAME, for memory, cpu, pids, devices and, when mounted, cpuacct and freezer.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "container/cgroup.h"
#include "container/cgroup_v2.h"
#include "core/error.h"

namespace corral::container {

// The pure part of the v1 driver: which controller's files get which values, in order (the period before
// the quota; memory.limit_in_bytes before memory.memsw.limit_in_bytes, which must not be lower).
std::vector<CgroupFileWrite> cgroupV1LimitWrites(const ResourceLimits& limits, bool memswAccounting);
// The device policy: "a" to devices.deny (the group starts as its parent: allow all), then one
// devices.allow line per rule.
std::vector<CgroupFileWrite> cgroupV1DeviceWrites(const std::vector<DeviceRule>& rules);

// Where a controller's hierarchy is mounted under `root`: ROOT/cpu may be a symlink to ROOT/cpu,cpuacct,
// or only the co-mounted directory may exist. Empty when the controller is not mounted.
std::string findV1Hierarchy(const CgroupFiles& files, const std::string& root, const std::string& controller);

Result<std::unique_ptr<Cgroup>> createCgroupV1(const CgroupFiles& files, const std::string& name,
                                               const ResourceLimits& limits, const CgroupOptions& options,
                                               const std::vector<DeviceRule>& devices);
Result<std::unique_ptr<Cgroup>> openCgroupV1(const CgroupFiles& files, const std::string& name,
                                             const CgroupOptions& options);
// Every directory ROOT/*/PARENT/NAME (each mounted hierarchy, the unified one included), cleared.
Result<ClearedCgroup> clearCgroupV1(const CgroupFiles& files, const std::string& name,
                                    const CgroupOptions& options);

}  // namespace corral::container
