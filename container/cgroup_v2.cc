// The cgroup v2 driver: enables memory/cpu/pids from the root down, creates ROOT/PARENT/NAME with its
// limits and device program, and kills, measures and removes it.
#include "container/cgroup_v2.h"

#include <fmt/ranges.h>
#include <signal.h>

#include <algorithm>
#include <set>
#include <sstream>
#include <thread>

#include "core/log.h"

namespace corral::container {
namespace {

std::set<std::string> splitWords(std::string_view text) {
  std::set<std::string> words;
  std::istringstream in{std::string(text)};
  for (std::string word; in >> word;) words.insert(word);
  return words;
}

class CgroupV2 final : public Cgroup {
 public:
  CgroupV2(std::string dir, std::string relative, const CgroupFiles& files, bool owned)
      : dir_(std::move(dir)), relative_(std::move(relative)), files_(files), owned_(owned) {}

  ~CgroupV2() override {
    if (!owned_) return;
    auto removed = destroy();
    if (!removed && removed.error().kind() == ErrorKind::Conflict) {
      if (auto killed = killAll(); !killed) log::warn("cgroup {}: {}", dir_, killed.error().message());
      removed = destroy();
    }
    if (!removed) log::warn("cgroup {} left behind: {}", dir_, removed.error().message());
  }

  std::string path() const override { return dir_; }
  std::string relativePath() const override { return relative_; }
  void release() override { owned_ = false; }

  Status addProcess(pid_t pid) override {
    if (auto ok = files_.write(dir_ + "/cgroup.procs", std::to_string(pid)); !ok)
      return fail(ok.error().wrap(fmt::format("add process {}", pid)));
    return {};
  }

  Result<CgroupJoin> openJoin() const override {
    CgroupJoin join;
    auto directory = files_.openDirectory(dir_);
    if (!directory) return fail(directory.error());
    join.directory = std::move(*directory);
    return join;
  }

  Result<CgroupStats> stats() const override {
    CgroupStats stats;
    // Without the memory controller (not offered by the tree) the memory figures stay 0.
    if (files_.exists(dir_ + "/memory.current")) {
      auto current = files_.readNumber(dir_ + "/memory.current");
      if (!current) return fail(current.error());
      stats.memoryCurrentBytes = current->value_or(0);
      if (files_.exists(dir_ + "/memory.peak")) {  // 5.19 and later
        auto peak = files_.readNumber(dir_ + "/memory.peak");
        if (!peak) return fail(peak.error());
        stats.memoryPeakBytes = peak->value_or(0);
      }
      auto oomKills = files_.readKeyed(dir_ + "/memory.events", "oom_kill");
      if (!oomKills) return fail(oomKills.error());
      stats.oomKills = *oomKills;
    }
    if (files_.exists(dir_ + "/pids.current")) {
      auto pids = files_.readNumber(dir_ + "/pids.current");
      if (!pids) return fail(pids.error());
      stats.pidsCurrent = pids->value_or(0);
    }
    return stats;
  }

  Result<CgroupStats> usage() const override {
    CgroupStats stats;
    auto current = files_.readNumber(dir_ + "/memory.current");
    if (!current) {
      if (files_.exists(dir_ + "/memory.current")) return fail(current.error());
      return stats;  // without the memory controller the figures stay 0, as in stats()
    }
    stats.memoryCurrentBytes = current->value_or(0);
    auto oomKills = files_.readKeyed(dir_ + "/memory.events", "oom_kill");
    if (!oomKills) return fail(oomKills.error());
    stats.oomKills = *oomKills;
    return stats;
  }

  Result<std::unique_ptr<CgroupUsageFiles>> openUsageFiles() const override {
    if (!files_.exists(dir_ + "/memory.current"))
      return fail(notFound("cgroup \"{}\" has no memory controller: no usage files to keep open", dir_));
    return container::openUsageFiles(files_, dir_ + "/memory.current", dir_ + "/memory.events");
  }

  Status killAll() override {
    const std::string procs = dir_ + "/cgroup.procs";
    const bool haveKill = files_.exists(dir_ + "/cgroup.kill");  // 5.14 and later
    if (haveKill) {
      if (auto ok = files_.write(dir_ + "/cgroup.kill", "1"); !ok) return fail(ok.error());
    }
    const auto deadline = std::chrono::steady_clock::now() + kKillTimeout;
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      auto pids = files_.readPids(procs);
      if (!pids) return fail(pids.error());
      if (pids->empty()) return {};
      if (std::chrono::steady_clock::now() >= deadline)
        return fail(conflict("kill every process in cgroup \"{}\": still running after {} s: {}", dir_,
                             kKillTimeout.count(), formatPids(*pids)));
      // Without cgroup.kill, a forking process can add pids between reads; keep killing until none is left.
      if (!haveKill)
        for (pid_t pid : *pids) ::kill(pid, SIGKILL);
      // A killed process is gone within a millisecond or two: look again soon, then less often.
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(10));
    }
  }

  Result<std::vector<pid_t>> processes() const override { return files_.readPids(dir_ + "/cgroup.procs"); }

  Status setFrozen(bool frozen) override {
    if (auto ok = files_.write(dir_ + "/cgroup.freeze", frozen ? "1" : "0"); !ok) return fail(ok.error());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    for (;;) {
      auto events = files_.readKeyed(dir_ + "/cgroup.events", "frozen");
      if (!events) return fail(events.error());
      if ((*events == 1) == frozen) return {};
      if (std::chrono::steady_clock::now() >= deadline)
        return fail(conflict("cgroup {}: not {} after 5 s", dir_, frozen ? "frozen" : "thawed"));
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  Result<bool> frozen() const override {
    auto value = files_.readNumber(dir_ + "/cgroup.freeze");
    if (!value) return fail(value.error());
    return value->value_or(0) == 1;
  }

  Status destroy() override {
    if (!files_.isDirectory(dir_)) {
      owned_ = false;
      return {};
    }
    if (auto ok = files_.removeDirectory(dir_); !ok) return fail(ok.error());
    owned_ = false;
    return {};
  }

 private:
  std::string dir_;
  std::string relative_;
  const CgroupFiles& files_;
  bool owned_;
};

// Makes sure `controllers` are in DIR/cgroup.subtree_control, writing only the missing ones.
Status enableControllers(const CgroupFiles& files, const std::string& dir,
                         const std::vector<std::string>& wanted) {
  const std::string path = dir + "/cgroup.subtree_control";
  auto current = files.read(path);
  if (!current) return fail(current.error());
  std::set<std::string> enabled = splitWords(*current);
  std::string change;
  for (const auto& controller : wanted) {
    if (enabled.contains(controller)) continue;
    if (!change.empty()) change += ' ';
    change += "+" + controller;
  }
  if (change.empty()) return {};
  return files.write(path, change);
}

}  // namespace

std::vector<CgroupFileWrite> cgroupV2LimitWrites(const ResourceLimits& limits, bool swapAccounting) {
  std::vector<CgroupFileWrite> writes;
  if (limits.memoryBytes) {
    writes.push_back({"", "memory.max", std::to_string(*limits.memoryBytes)});
    // The limit covers swap too: no swap on top of it.
    if (swapAccounting) writes.push_back({"", "memory.swap.max", "0"});
  }
  if (limits.cpuMillis) {
    uint64_t quota = uint64_t{*limits.cpuMillis} * kCpuPeriodMicros / 1000;
    writes.push_back({"", "cpu.max", fmt::format("{} {}", quota, kCpuPeriodMicros)});
  }
  if (limits.pids) writes.push_back({"", "pids.max", std::to_string(*limits.pids)});
  if (limits.cpuShares)
    writes.push_back({"", "cpu.weight", std::to_string(1 + (*limits.cpuShares - 2) * 9999 / 262142)});
  return writes;
}

Result<std::unique_ptr<Cgroup>> createCgroupV2(const CgroupFiles& files, const std::string& name,
                                               const ResourceLimits& limits, const CgroupOptions& options,
                                               const std::vector<DeviceRule>& devices) {
  const std::string& root = options.root;
  if (!files.isDirectory(root)) return fail(unavailable("cgroup v2 root \"{}\" is not a directory", root));

  // Each controller is enabled when the kernel offers it (usage and OOM accounting) and required only when
  // a limit needs it: a v2 tree without controllers (a hybrid host's unified mount) still groups, counts
  // and kills the container's processes.
  auto available = files.read(root + "/cgroup.controllers");
  if (!available) return fail(available.error());
  const std::set<std::string> availableSet = splitWords(*available);
  std::vector<std::string> wanted;
  // hugetlb only for a container with huge page limits.
  for (const char* controller : {"memory", "cpu", "pids", "hugetlb"}) {
    const bool hugetlb = std::string_view(controller) == "hugetlb";
    if (hugetlb && limits.hugepages.empty()) continue;
    bool required = (std::string_view(controller) == "memory" && limits.memoryBytes) ||
                    (std::string_view(controller) == "cpu" && (limits.cpuMillis || limits.cpuShares)) ||
                    (std::string_view(controller) == "pids" && limits.pids) || hugetlb;
    if (availableSet.contains(controller)) {
      wanted.emplace_back(controller);
    } else if (required) {
      return fail(
          unavailable("the \"{}\" controller is not available in \"{}/cgroup.controllers\" (it lists \"{}\")",
                      controller, root, fmt::join(availableSet, " ")));
    }
  }

  const std::string parentDir = root + "/" + options.parent;
  if (auto ok = enableControllers(files, root, wanted); !ok) return fail(ok.error());
  if (!files.isDirectory(parentDir)) {
    // The parent is shared by every container; it is left in place (empty) if this one fails.
    if (auto ok = files.makeDirectory(parentDir); !ok && ok.error().errnum() != EEXIST)
      return fail(ok.error());
  }
  if (auto ok = enableControllers(files, parentDir, wanted); !ok) return fail(ok.error());

  const std::string dir = parentDir + "/" + name;
  if (auto ok = files.makeDirectory(dir); !ok) {
    if (ok.error().errnum() == EEXIST) return fail(conflict("cgroup \"{}\" already exists", dir));
    return fail(ok.error());
  }
  // Owned from here: a failed write below removes the directory on the way out.
  auto cgroup = std::make_unique<CgroupV2>(dir, "/" + options.parent + "/" + name, files, true);
  const bool swapAccounting = files.exists(parentDir + "/memory.swap.max");
  std::vector<CgroupFileWrite> writes = cgroupV2LimitWrites(limits, swapAccounting);
  if (!limits.hugepages.empty()) {
    const bool reservations =
        files.exists(fmt::format("{}/hugetlb.{}.rsvd.max", dir, limits.hugepages.front().pageSize));
    for (auto& write : cgroupHugetlbWrites(limits.hugepages, true, reservations))
      writes.push_back(std::move(write));
  }
  for (const auto& write : writes) {
    if (auto ok = files.write(dir + "/" + write.file, write.value); !ok) return fail(ok.error());
  }
  // The device policy needs no controller: a BPF program on the group.
  if (auto ok = files.attachDeviceProgram(dir, devices); !ok) return fail(ok.error());
  return std::unique_ptr<Cgroup>(std::move(cgroup));
}

Result<std::unique_ptr<Cgroup>> openCgroupV2(const CgroupFiles& files, const std::string& name,
                                             const CgroupOptions& options) {
  const std::string dir = options.root + "/" + options.parent + "/" + name;
  if (!files.isDirectory(dir)) return fail(notFound("cgroup \"{}\" does not exist", dir));
  // Reattached groups belong to the daemon: dropping the handle leaves them alone.
  return std::unique_ptr<Cgroup>(
      std::make_unique<CgroupV2>(dir, "/" + options.parent + "/" + name, files, false));
}

Result<ClearedCgroup> clearCgroupV2(const CgroupFiles& files, const std::string& name,
                                    const CgroupOptions& options) {
  const std::string dir = options.root + "/" + options.parent + "/" + name;
  ClearedCgroup cleared;
  if (!files.isDirectory(dir)) return cleared;
  CgroupV2 cgroup(dir, "/" + options.parent + "/" + name, files, false);
  auto members = files.readPids(dir + "/cgroup.procs");
  if (!members) return fail(members.error());
  cleared.killed = std::move(*members);
  if (auto killed = cgroup.killAll(); !killed) return fail(killed.error());
  if (auto destroyed = cgroup.destroy(); !destroyed) return fail(destroyed.error());
  cleared.removed.push_back(dir);
  return cleared;
}

}  // namespace corral::container
