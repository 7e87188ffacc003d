#include "container/cgroup_mode.h"

#include <linux/magic.h>
#include <sys/statfs.h>

#include <cerrno>

namespace corral::container {

std::string_view cgroupModeName(CgroupMode mode) {
  switch (mode) {
    case CgroupMode::Unified:
      return "v2 (unified)";
    case CgroupMode::Hybrid:
      return "v1 (hybrid)";
    case CgroupMode::Legacy:
      return "v1 (legacy)";
  }
  return "unknown";
}

Result<CgroupMode> detectCgroupMode(const std::string& root) {
  struct statfs fs {};
  if (::statfs(root.c_str(), &fs) != 0) return fail(systemError(errno, fmt::format("statfs(\"{}\")", root)));
  if (fs.f_type == CGROUP2_SUPER_MAGIC) return CgroupMode::Unified;
  // A tmpfs of v1 hierarchies; systemd-style hosts add a v2 mount at unified/ (the hybrid layout).
  std::string unified = root + "/unified";
  struct statfs unifiedFs {};
  if (::statfs(unified.c_str(), &unifiedFs) == 0 && unifiedFs.f_type == CGROUP2_SUPER_MAGIC)
    return CgroupMode::Hybrid;
  return CgroupMode::Legacy;
}

}  // namespace corral::container
