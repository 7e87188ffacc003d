// The cgroup factory: validates names and limits and picks the v2 or v1 driver for the host's mode.
#include "container/cgroup.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include "container/cgroup_files.h"
#include "container/cgroup_v1.h"
#include "container/cgroup_v2.h"
#include "core/log.h"

namespace corral::container {

Status validateCgroupName(const std::string& name, const std::string& field) {
  if (name.empty()) return fail(invalidField(field, "must not be empty"));
  if (name == "." || name == "..") return fail(invalidField(field, "\"{}\" is not a cgroup name", name));
  if (name.find('/') != std::string::npos)
    return fail(invalidField(field, "\"{}\" must be one path component (no '/')", name));
  if (name.find('\0') != std::string::npos || name.find('\n') != std::string::npos)
    return fail(invalidField(field, "must not contain NUL or newline characters"));
  if (name.size() > 255) return fail(invalidField(field, "is {} characters long; at most 255", name.size()));
  return {};
}

Status validateResourceLimits(const ResourceLimits& limits) {
  constexpr uint64_t kMinMemory = 1 << 20;
  if (limits.memoryBytes && *limits.memoryBytes < kMinMemory)
    return fail(invalidField("memory", "{} bytes is below the minimum of 1 MiB", *limits.memoryBytes));
  // The kernel's smallest CFS quota is 1 ms per period.
  if (limits.cpuMillis && (*limits.cpuMillis < 10 || *limits.cpuMillis > 1000000))
    return fail(invalidField(
        "cpus", "{} thousandths of a CPU is out of range (10 = 1% of a CPU, up to 1000000 = 1000 CPUs)",
        *limits.cpuMillis));
  if (limits.pids && *limits.pids == 0) return fail(invalidField("pids", "must be at least 1"));
  std::set<std::string> sizes;
  for (size_t i = 0; i < limits.hugepages.size(); ++i) {
    // The size becomes part of a control file's name: digits and a unit, nothing else.
    const std::string& size = limits.hugepages[i].pageSize;
    const size_t digits = size.find_first_not_of("0123456789");
    const std::string unit = digits == std::string::npos ? "" : size.substr(digits);
    if (digits == 0 || digits == std::string::npos || size[0] == '0' ||
        (unit != "KB" && unit != "MB" && unit != "GB"))
      return fail(invalidField(fmt::format("hugepages[{}].pageSize", i),
                               "\"{}\" is not a huge page size as the kernel names it (2MB, 1GB, 64KB)",
                               size));
    if (!sizes.insert(size).second)
      return fail(invalidField(fmt::format("hugepages[{}].pageSize", i), "\"{}\" is limited twice", size));
  }
  return {};
}

std::string hugepageSizeName(uint64_t kibibytes) {
  if (kibibytes >= (uint64_t{1} << 20)) return fmt::format("{}GB", kibibytes >> 20);
  if (kibibytes >= (uint64_t{1} << 10)) return fmt::format("{}MB", kibibytes >> 10);
  return fmt::format("{}KB", kibibytes);
}

Result<std::vector<std::string>> hostHugepageSizes(const std::string& dir) {
  std::error_code error;
  std::filesystem::directory_iterator entries(dir, error);
  if (error)
    return fail(notFound("no huge pages on this host: \"{}\": {} (a kernel without CONFIG_HUGETLBFS)", dir,
                         error.message()));
  std::vector<std::string> sizes;
  for (const auto& entry : entries) {
    // "hugepages-2048kB"
    const std::string name = entry.path().filename().string();
    if (!name.starts_with("hugepages-") || !name.ends_with("kB")) continue;
    const std::string number = name.substr(10, name.size() - 12);
    if (number.empty() || number.find_first_not_of("0123456789") != std::string::npos) continue;
    sizes.push_back(hugepageSizeName(std::stoull(number)));
  }
  std::sort(sizes.begin(), sizes.end());
  return sizes;
}

std::vector<CgroupFileWrite> cgroupHugetlbWrites(const std::vector<HugepageLimit>& limits, bool v2,
                                                 bool reservations) {
  const std::string controller = v2 ? "" : "hugetlb";
  const std::string suffix = v2 ? "max" : "limit_in_bytes";
  std::vector<CgroupFileWrite> writes;
  for (const HugepageLimit& limit : limits) {
    const std::string value = std::to_string(limit.bytes);
    writes.push_back({controller, fmt::format("hugetlb.{}.{}", limit.pageSize, suffix), value});
    if (reservations)
      writes.push_back({controller, fmt::format("hugetlb.{}.rsvd.{}", limit.pageSize, suffix), value});
  }
  return writes;
}

CgroupUsageFiles::CgroupUsageFiles(const CgroupFiles& files, std::string memoryPath, UniqueFd memory,
                                   std::string oomPath, UniqueFd oom)
    : files_(files),
      memoryPath_(std::move(memoryPath)),
      memory_(std::move(memory)),
      oomPath_(std::move(oomPath)),
      oom_(std::move(oom)) {}

Result<CgroupStats> CgroupUsageFiles::read() const {
  // memory.events has 6 short lines, memory.oom_control 3: a page is plenty.
  char buffer[1024];
  CgroupStats stats;
  auto text = files_.readOpen(memory_, memoryPath_, buffer);
  if (!text) return fail(text.error());
  auto current = parseNumber(*text, memoryPath_);
  if (!current) return fail(current.error());
  stats.memoryCurrentBytes = current->value_or(0);
  text = files_.readOpen(oom_, oomPath_, buffer);
  if (!text) return fail(text.error());
  auto oomKills = parseKeyed(*text, "oom_kill", oomPath_);
  if (!oomKills) return fail(oomKills.error());
  stats.oomKills = *oomKills;
  return stats;
}

Result<std::unique_ptr<CgroupUsageFiles>> openUsageFiles(const CgroupFiles& files, std::string memoryPath,
                                                         std::string oomPath) {
  auto memory = files.openForReading(memoryPath);
  if (!memory) return fail(memory.error());
  auto oom = files.openForReading(oomPath);
  if (!oom) return fail(oom.error());
  return std::make_unique<CgroupUsageFiles>(files, std::move(memoryPath), std::move(*memory),
                                            std::move(oomPath), std::move(*oom));
}

std::string formatPids(const std::vector<pid_t>& pids) {
  return fmt::format("[{}]", fmt::join(pids, ", "));
}

Result<std::unique_ptr<Cgroup>> createCgroup(CgroupMode mode, const std::string& name,
                                             const ResourceLimits& limits, const CgroupOptions& options,
                                             const std::vector<DeviceRule>& devices) {
  return createCgroup(kernelCgroupFiles(), mode, name, limits, options, devices);
}

Result<std::unique_ptr<Cgroup>> createCgroup(const CgroupFiles& files, CgroupMode mode,
                                             const std::string& name, const ResourceLimits& limits,
                                             const CgroupOptions& options,
                                             const std::vector<DeviceRule>& devices) {
  if (auto ok = validateCgroupName(name); !ok) return fail(ok.error());
  if (auto ok = validateCgroupName(options.parent, "cgroupOptions.parent"); !ok) return fail(ok.error());
  if (auto ok = validateResourceLimits(limits); !ok) return fail(ok.error());
  // Errors name the path and file already ("mkdir(\"/sys/fs/cgroup/memory/corral/web-1\")"); the caller adds
  // its own context ("create container web-1: cgroup: ...").
  auto create = [&] {
    return mode == CgroupMode::Unified ? createCgroupV2(files, name, limits, options, devices)
                                       : createCgroupV1(files, name, limits, options, devices);
  };
  auto created = create();
  if (created || created.error().kind() != ErrorKind::Conflict) return created;
  // Only a crash leaves a group behind (the daemon removes a container's group when it stops): it holds
  // nothing the new container may inherit, so its processes are killed and it is made afresh.
  auto cleared = clearCgroup(files, mode, name, options);
  if (!cleared) return fail(cleared.error().wrap(created.error().message()));
  log::warn("cgroup for \"{}\" was left over: killed its processes {} and removed {}; creating it again",
            name, formatPids(cleared->killed), fmt::join(cleared->removed, ", "));
  return create();
}

Result<ClearedCgroup> clearCgroup(CgroupMode mode, const std::string& name, const CgroupOptions& options) {
  return clearCgroup(kernelCgroupFiles(), mode, name, options);
}

Result<ClearedCgroup> clearCgroup(const CgroupFiles& files, CgroupMode mode, const std::string& name,
                                  const CgroupOptions& options) {
  if (auto ok = validateCgroupName(name); !ok) return fail(ok.error());
  if (auto ok = validateCgroupName(options.parent, "cgroupOptions.parent"); !ok) return fail(ok.error());
  auto cleared =
      mode == CgroupMode::Unified ? clearCgroupV2(files, name, options) : clearCgroupV1(files, name, options);
  if (!cleared) return fail(cleared.error().wrap(fmt::format("clear cgroup \"{}\"", name)));
  return cleared;
}

Result<std::unique_ptr<Cgroup>> openCgroup(CgroupMode mode, const std::string& name,
                                           const CgroupOptions& options) {
  return openCgroup(kernelCgroupFiles(), mode, name, options);
}

Result<std::unique_ptr<Cgroup>> openCgroup(const CgroupFiles& files, CgroupMode mode, const std::string& name,
                                           const CgroupOptions& options) {
  if (auto ok = validateCgroupName(name); !ok) return fail(ok.error());
  if (auto ok = validateCgroupName(options.parent, "cgroupOptions.parent"); !ok) return fail(ok.error());
  return mode == CgroupMode::Unified ? openCgroupV2(files, name, options)
                                     : openCgroupV1(files, name, options);
}

}  // namespace corral::container
