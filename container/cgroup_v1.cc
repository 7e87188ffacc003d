// The cgroup v1 driver: one ROOT/<hierarchy>/PARENT/NAME directory per mounted controller, limits written
// before any process joins, freeze-then-kill, and removal of every directory it made.
#include "container/cgroup_v1.h"

#include <signal.h>

#include <algorithm>
#include <set>
#include <thread>

#include "core/log.h"

namespace corral::container {
namespace {

// A mounted v1 hierarchy and the container's directory in it.
struct Hierarchy {
  std::string controllers;  // "memory", "cpu,cpuacct"
  std::string base;         // ROOT/<mount>, symlinks resolved
  std::string dir;          // base/PARENT/NAME
  bool has(std::string_view controller) const {
    std::string_view rest = controllers;
    while (!rest.empty()) {
      size_t comma = rest.find(',');
      if (rest.substr(0, comma) == controller) return true;
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
    return false;
  }
};

std::string trimmed(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

class CgroupV1 final : public Cgroup {
 public:
  CgroupV1(std::string relative, const CgroupFiles& files, bool owned)
      : relative_(std::move(relative)), files_(files), owned_(owned) {}

  ~CgroupV1() override {
    if (!owned_ || hierarchies_.empty()) return;
    auto removed = destroy();
    if (!removed && removed.error().kind() == ErrorKind::Conflict) {
      if (auto killed = killAll(); !killed) log::warn("cgroup {}: {}", relative_, killed.error().message());
      removed = destroy();
    }
    if (!removed) log::warn("cgroup {} left behind: {}", relative_, removed.error().message());
  }

  void adopt(Hierarchy hierarchy) { hierarchies_.push_back(std::move(hierarchy)); }
  const Hierarchy* find(std::string_view controller) const {
    for (const auto& h : hierarchies_)
      if (h.has(controller)) return &h;
    return nullptr;
  }

  std::string path() const override {
    const Hierarchy* memory = find("memory");
    return memory ? memory->dir : relative_;
  }
  std::string relativePath() const override { return relative_; }
  void release() override { owned_ = false; }

  Status addProcess(pid_t pid) override {
    for (const auto& h : hierarchies_) {
      if (auto ok = files_.write(h.dir + "/cgroup.procs", std::to_string(pid)); !ok)
        return fail(ok.error().wrap(fmt::format("add process {}", pid)));
    }
    return {};
  }

  Result<CgroupJoin> openJoin() const override {
    CgroupJoin join;
    for (const auto& h : hierarchies_) {
      std::string path = h.dir + "/tasks";
      auto fd = files_.openForWriting(path);
      if (!fd) return fail(fd.error());
      join.taskFiles.push_back(std::move(*fd));
      join.taskPaths.push_back(std::move(path));
    }
    return join;
  }

  // usage()'s figures plus the memory peak and the pids count.
  Result<CgroupStats> stats() const override {
    auto read = usage();
    if (!read) return fail(read.error());
    CgroupStats stats = *read;
    const Hierarchy* memory = find("memory");  // usage() read it
    if (!memory) return fail(internalError("cgroup {} has no memory hierarchy", relative_));
    auto peak = files_.readNumber(memory->dir + "/memory.max_usage_in_bytes");
    if (!peak) return fail(peak.error());
    stats.memoryPeakBytes = peak->value_or(0);
    if (const Hierarchy* pids = find("pids")) {
      auto current = files_.readNumber(pids->dir + "/pids.current");
      if (!current) return fail(current.error());
      stats.pidsCurrent = current->value_or(0);
    }
    return stats;
  }

  Result<CgroupStats> usage() const override {
    CgroupStats stats;
    const Hierarchy* memory = find("memory");
    if (!memory) return fail(internalError("cgroup {} has no memory hierarchy", relative_));
    auto usage = files_.readNumber(memory->dir + "/memory.usage_in_bytes");
    if (!usage) return fail(usage.error());
    stats.memoryCurrentBytes = usage->value_or(0);
    auto oomKills = files_.readKeyed(memory->dir + "/memory.oom_control", "oom_kill");  // 4.13 and later
    if (!oomKills) return fail(oomKills.error());
    stats.oomKills = *oomKills;
    return stats;
  }

  Result<std::unique_ptr<CgroupUsageFiles>> openUsageFiles() const override {
    const Hierarchy* memory = find("memory");
    if (!memory) return fail(internalError("cgroup {} has no memory hierarchy", relative_));
    return container::openUsageFiles(files_, memory->dir + "/memory.usage_in_bytes",
                                     memory->dir + "/memory.oom_control");
  }

  Status killAll() override {
    const auto deadline = std::chrono::steady_clock::now() + kKillTimeout;
    // Frozen, the group cannot fork while its pids are read and killed; SIGKILL lands when it thaws.
    if (const Hierarchy* freezer = find("freezer")) {
      const std::string state = freezer->dir + "/freezer.state";
      if (auto ok = files_.write(state, "FROZEN"); !ok) return fail(ok.error());
      const auto freezeDeadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
      for (;;) {
        auto now = files_.read(state);
        if (!now) return fail(now.error());
        if (trimmed(*now) == "FROZEN" || std::chrono::steady_clock::now() >= freezeDeadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      auto pids = members();
      if (pids)
        for (pid_t pid : *pids) ::kill(pid, SIGKILL);
      if (auto ok = files_.write(state, "THAWED"); !ok) return fail(ok.error());
      if (!pids) return fail(pids.error());
    }
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      auto pids = members();
      if (!pids) return fail(pids.error());
      if (pids->empty()) return {};
      if (std::chrono::steady_clock::now() >= deadline)
        return fail(conflict("kill every process in cgroup \"{}\": still running after {} s: {}", path(),
                             kKillTimeout.count(), formatPids(*pids)));
      for (pid_t pid : *pids) ::kill(pid, SIGKILL);
      // A killed process is gone within a millisecond or two: look again soon, then less often.
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(10));
    }
  }

  Result<std::vector<pid_t>> processes() const override { return members(); }

  Status setFrozen(bool frozen) override {
    const Hierarchy* freezer = find("freezer");
    if (!freezer) return fail(internalError("cgroup {} has no freezer hierarchy", relative_));
    const std::string state = freezer->dir + "/freezer.state";
    const std::string want = frozen ? "FROZEN" : "THAWED";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      // Writing again is how a freeze that went to FREEZING (a process in an uninterruptible sleep) is
      // retried.
      if (auto ok = files_.write(state, want); !ok) return fail(ok.error());
      auto now = files_.read(state);
      if (!now) return fail(now.error());
      if (trimmed(*now) == want) return {};
      if (std::chrono::steady_clock::now() >= deadline)
        return fail(conflict("cgroup {}: still {} after 5 s", freezer->dir, trimmed(*now)));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  Result<bool> frozen() const override {
    const Hierarchy* freezer = find("freezer");
    if (!freezer) return false;
    auto now = files_.read(freezer->dir + "/freezer.state");
    if (!now) return fail(now.error());
    return trimmed(*now) == "FROZEN";
  }

  // Every pid in any of the group's hierarchies (a process may have been moved out of some).
  Result<std::vector<pid_t>> members() const {
    std::set<pid_t> all;
    for (const auto& h : hierarchies_) {
      auto pids = files_.readPids(h.dir + "/cgroup.procs");
      if (!pids) return fail(pids.error());
      all.insert(pids->begin(), pids->end());
    }
    return std::vector<pid_t>(all.begin(), all.end());
  }

  Status destroy() override {
    std::optional<Error> firstError;
    // Reverse order of creation; a directory that is gone already counts as removed.
    for (size_t i = hierarchies_.size(); i-- > 0;) {
      const std::string& dir = hierarchies_[i].dir;
      Status removed = files_.isDirectory(dir) ? files_.removeDirectory(dir) : Status();
      if (removed) {
        hierarchies_.erase(hierarchies_.begin() + static_cast<std::ptrdiff_t>(i));
      } else if (!firstError) {
        firstError = removed.error();
      }
    }
    if (firstError) return fail(*firstError);
    owned_ = false;
    return {};
  }

 private:
  std::string relative_;
  const CgroupFiles& files_;
  bool owned_;
  std::vector<Hierarchy> hierarchies_;
};

// The hierarchies a new container joins, in creation order; "memory" first (path() and stats). Only those
// that limit, account or protect: each joined v1 hierarchy costs a cgroup.procs write at start and an
// rmdir at removal (bench/README.md has the numbers). freezer stays for killAll; devices holds the device
// policy (in the root group every device node can be opened); cpuset would only repeat the parent's.
// hugetlb only for a container with huge page limits.
constexpr const char* kControllers[] = {"memory", "cpu", "cpuacct", "pids", "freezer", "devices", "hugetlb"};
// Reattaching also looks at the hierarchies containers of earlier versions joined.
constexpr const char* kReattachControllers[] = {"memory", "cpu",     "cpuacct", "pids",
                                                "cpuset", "freezer", "devices", "hugetlb"};

template <class Controllers>
Result<std::vector<Hierarchy>> findHierarchies(const CgroupFiles& files, const std::string& root,
                                               const std::string& relative, const ResourceLimits* limits,
                                               const Controllers& controllers) {
  std::vector<Hierarchy> found;
  for (const char* controller : controllers) {
    const bool hugetlb = std::string_view(controller) == "hugetlb";
    if (limits && hugetlb && limits->hugepages.empty()) continue;
    std::string base = findV1Hierarchy(files, root, controller);
    // Without its devices group a container could open every device node of the host.
    bool required = std::string_view(controller) == "memory" ||
                    (limits && std::string_view(controller) == "devices") ||
                    (limits && std::string_view(controller) == "cpu" && limits->cpuMillis) ||
                    (limits && std::string_view(controller) == "pids" && limits->pids) || (limits && hugetlb);
    if (base.empty()) {
      if (required)
        return fail(unavailable("the \"{}\" cgroup v1 controller is not mounted under \"{}\"{}", controller,
                                root, hugetlb ? " (huge page limits need it)" : ""));
      continue;
    }
    if (std::any_of(found.begin(), found.end(), [&](const Hierarchy& h) { return h.base == base; })) continue;
    std::string name = base.substr(base.rfind('/') + 1);
    // A directory named after one controller may still carry several (cpu → cpu,cpuacct).
    found.push_back({name.find(',') != std::string::npos ? name : controller, base, base + relative});
  }
  return found;
}

}  // namespace

std::string findV1Hierarchy(const CgroupFiles& files, const std::string& root,
                            const std::string& controller) {
  auto resolve = [&](const std::string& path) { return files.realPath(path).value_or(""); };
  if (files.isDirectory(root + "/" + controller)) return resolve(root + "/" + controller);
  for (const std::string& name : files.list(root)) {
    Hierarchy candidate{name, "", ""};
    if (candidate.controllers.find(',') != std::string::npos && candidate.has(controller) &&
        files.isDirectory(root + "/" + name)) {
      return resolve(root + "/" + name);
    }
  }
  return {};
}

std::vector<CgroupFileWrite> cgroupV1LimitWrites(const ResourceLimits& limits, bool memswAccounting) {
  std::vector<CgroupFileWrite> writes;
  if (limits.memoryBytes) {
    writes.push_back({"memory", "memory.limit_in_bytes", std::to_string(*limits.memoryBytes)});
    // memory+swap capped at the same total: no swap on top of the limit.
    if (memswAccounting)
      writes.push_back({"memory", "memory.memsw.limit_in_bytes", std::to_string(*limits.memoryBytes)});
  }
  if (limits.cpuMillis) {
    writes.push_back({"cpu", "cpu.cfs_period_us", std::to_string(kCpuPeriodMicros)});
    writes.push_back(
        {"cpu", "cpu.cfs_quota_us", std::to_string(uint64_t{*limits.cpuMillis} * kCpuPeriodMicros / 1000)});
  }
  if (limits.pids) writes.push_back({"pids", "pids.max", std::to_string(*limits.pids)});
  if (limits.cpuShares) writes.push_back({"cpu", "cpu.shares", std::to_string(*limits.cpuShares)});
  return writes;
}

std::vector<CgroupFileWrite> cgroupV1DeviceWrites(const std::vector<DeviceRule>& rules) {
  std::vector<CgroupFileWrite> writes = {{"devices", "devices.deny", "a"}};
  for (const DeviceRule& rule : rules) writes.push_back({"devices", "devices.allow", deviceRuleLine(rule)});
  return writes;
}

Result<std::unique_ptr<Cgroup>> createCgroupV1(const CgroupFiles& files, const std::string& name,
                                               const ResourceLimits& limits, const CgroupOptions& options,
                                               const std::vector<DeviceRule>& devices) {
  const std::string relative = "/" + options.parent + "/" + name;
  auto hierarchies = findHierarchies(files, options.root, relative, &limits, kControllers);
  if (!hierarchies) return fail(hierarchies.error());

  // Owned from the first directory on: any failure below removes what was made, in reverse order.
  auto cgroup = std::make_unique<CgroupV1>(relative, files, true);
  for (const auto& h : *hierarchies) {
    const std::string parentDir = h.base + "/" + options.parent;
    if (!files.isDirectory(parentDir)) {
      // Shared by every container; left in place (empty) if this one fails.
      if (auto ok = files.makeDirectory(parentDir); !ok && ok.error().errnum() != EEXIST)
        return fail(ok.error());
    }
    if (auto ok = files.makeDirectory(h.dir); !ok) {
      if (ok.error().errnum() == EEXIST) return fail(conflict("cgroup \"{}\" already exists", h.dir));
      return fail(ok.error());
    }
    cgroup->adopt(h);
  }

  // The root memory group has memory.memsw.* exactly when the kernel accounts swap.
  const bool memswAccounting = files.exists(hierarchies->front().base + "/memory.memsw.limit_in_bytes");
  std::vector<CgroupFileWrite> writes = cgroupV1LimitWrites(limits, memswAccounting);
  if (const Hierarchy* hugetlb = cgroup->find("hugetlb"); hugetlb && !limits.hugepages.empty()) {
    const bool reservations = files.exists(
        fmt::format("{}/hugetlb.{}.rsvd.limit_in_bytes", hugetlb->dir, limits.hugepages.front().pageSize));
    for (auto& write : cgroupHugetlbWrites(limits.hugepages, false, reservations))
      writes.push_back(std::move(write));
  }
  for (auto& write : cgroupV1DeviceWrites(devices)) writes.push_back(std::move(write));
  for (const auto& write : writes) {
    const Hierarchy* h = cgroup->find(write.controller);
    if (!h) return fail(internalError("no \"{}\" hierarchy for {}", write.controller, write.file));
    if (auto ok = files.write(h->dir + "/" + write.file, write.value); !ok) return fail(ok.error());
  }
  return std::unique_ptr<Cgroup>(std::move(cgroup));
}

Result<std::unique_ptr<Cgroup>> openCgroupV1(const CgroupFiles& files, const std::string& name,
                                             const CgroupOptions& options) {
  const std::string relative = "/" + options.parent + "/" + name;
  auto hierarchies = findHierarchies(files, options.root, relative, nullptr, kReattachControllers);
  if (!hierarchies) return fail(hierarchies.error());
  if (!files.isDirectory(hierarchies->front().dir))
    return fail(notFound("cgroup \"{}\" does not exist", hierarchies->front().dir));
  // Reattached groups belong to the daemon: dropping the handle leaves them alone.
  auto cgroup = std::make_unique<CgroupV1>(relative, files, false);
  for (const auto& h : *hierarchies)
    if (files.isDirectory(h.dir)) cgroup->adopt(h);
  return std::unique_ptr<Cgroup>(std::move(cgroup));
}

Result<ClearedCgroup> clearCgroupV1(const CgroupFiles& files, const std::string& name,
                                    const CgroupOptions& options) {
  const std::string relative = "/" + options.parent + "/" + name;
  std::vector<Hierarchy> found;
  std::set<std::string> bases;
  std::vector<std::string> entries = files.list(options.root);
  std::sort(entries.begin(), entries.end());
  for (const std::string& entry : entries) {
    std::optional<std::string> base = files.realPath(options.root + "/" + entry);
    if (!base || !files.isDirectory(*base) || !bases.insert(*base).second) continue;
    const std::string dir = *base + relative;
    if (files.isDirectory(dir)) found.push_back({entry, *base, dir});
  }
  ClearedCgroup cleared;
  if (found.empty()) return cleared;
  CgroupV1 cgroup(relative, files, false);
  for (const Hierarchy& h : found) cgroup.adopt(h);
  auto members = cgroup.members();
  if (!members) return fail(members.error());
  cleared.killed = std::move(*members);
  if (auto killed = cgroup.killAll(); !killed) return fail(killed.error());
  for (const Hierarchy& h : found) cleared.removed.push_back(h.dir);
  if (auto destroyed = cgroup.destroy(); !destroyed) return fail(destroyed.error());
  return cleared;
}

}  // namespace corral::container
