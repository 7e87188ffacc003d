// Which cgroup hierarchy the host runs: unified (v2 only), hybrid (v1 controllers + a v2 mount) or legacy.
#pragma once

#include <string>
#include <string_view>

#include "core/error.h"

namespace corral::container {

enum class CgroupMode { Unified, Hybrid, Legacy };
std::string_view cgroupModeName(CgroupMode mode);  // "v2 (unified)", "v1 (hybrid)", "v1 (legacy)"

// Looks at the filesystem types under `root` (normally /sys/fs/cgroup).
Result<CgroupMode> detectCgroupMode(const std::string& root = "/sys/fs/cgroup");

}  // namespace corral::container
