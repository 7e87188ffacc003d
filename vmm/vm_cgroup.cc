// A VM's cgroup (vmm/vm_cgroup.h): the plan, the host's layout, and the kernel side that applies both.
#include "vmm/vm_cgroup.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "core/log.h"

namespace corral::vmm {

namespace {

constexpr std::string_view kPrefix = "corral-vm-";

bool has(const std::vector<std::string>& list, std::string_view item) {
  return std::find(list.begin(), list.end(), item) != list.end();
}

std::string readText(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::string vmCgroupName(std::string_view domainName) {
  return fmt::format("{}{}", kPrefix, domainName);
}

uint64_t vmMemoryLimit(uint64_t guestBytes, uint32_t tcgTranslationCacheMiB) {
  return guestBytes + (uint64_t{tcgTranslationCacheMiB} << 20) + kVmMemoryOverhead;
}

VmCgroupPlan planVmCgroup(const CgroupLayout& layout, std::string_view domainName,
                          std::optional<uint64_t> memoryLimit) {
  VmCgroupPlan plan;
  const std::string name = vmCgroupName(domainName);
  for (const auto& hierarchy : layout.hierarchies) {
    const auto parent = hierarchy.root / layout.parent;
    const auto dir = parent / name;
    plan.directories.push_back(dir);
    if (layout.version == CgroupVersion::V2) {
      // A controller reaches a cgroup only when each ancestor enables it for its children.
      for (const auto& controller : {"memory", "pids", "cpu"}) {
        if (!has(hierarchy.controllers, controller)) continue;
        plan.writes.emplace_back(hierarchy.root / "cgroup.subtree_control", fmt::format("+{}", controller));
        plan.writes.emplace_back(parent / "cgroup.subtree_control", fmt::format("+{}", controller));
      }
      if (memoryLimit && has(hierarchy.controllers, "memory"))
        plan.writes.emplace_back(dir / "memory.max", std::to_string(*memoryLimit));
      plan.joinFiles.push_back(dir / "cgroup.procs");
    } else {
      if (memoryLimit && has(hierarchy.controllers, "memory"))
        plan.writes.emplace_back(dir / "memory.limit_in_bytes", std::to_string(*memoryLimit));
      plan.joinFiles.push_back(dir / "tasks");
    }
  }
  // v2's subtree_control writes once each, root's first (the order they were added in).
  std::vector<std::pair<std::filesystem::path, std::string>> unique;
  for (auto& write : plan.writes)
    if (std::find(unique.begin(), unique.end(), write) == unique.end()) unique.push_back(std::move(write));
  std::stable_partition(unique.begin(), unique.end(),
                        [](const auto& write) { return write.first.filename() == "cgroup.subtree_control"; });
  plan.writes = std::move(unique);
  return plan;
}

Result<CgroupLayout> detectCgroupLayout(const std::filesystem::path& root, std::string parent) {
  CgroupLayout layout;
  layout.parent = std::move(parent);
  struct statfs fs {};
  if (::statfs(root.c_str(), &fs) != 0)
    return fail(systemError(errno, fmt::format("statfs(\"{}\")", root.string())));
  if (fs.f_type == CGROUP2_SUPER_MAGIC) {
    layout.version = CgroupVersion::V2;
    CgroupLayout::Hierarchy unified{.root = root, .controllers = {}};
    std::istringstream offered(readText(root / "cgroup.controllers"));
    for (std::string controller; offered >> controller;)
      if (has(kVmControllers, controller)) unified.controllers.push_back(controller);
    layout.hierarchies.push_back(std::move(unified));
    return layout;
  }
  layout.version = CgroupVersion::V1;
  // Each controller's directory; co-mounted ones ("cpu" and "cpuacct" links to "cpu,cpuacct") once.
  for (const auto& controller : kVmControllers) {
    std::error_code ec;
    const auto dir = std::filesystem::canonical(root / controller, ec);
    struct statfs controllerFs {};
    if (ec || ::statfs(dir.c_str(), &controllerFs) != 0 || controllerFs.f_type != CGROUP_SUPER_MAGIC)
      continue;
    auto same = std::find_if(layout.hierarchies.begin(), layout.hierarchies.end(),
                             [&](const auto& hierarchy) { return hierarchy.root == dir; });
    if (same != layout.hierarchies.end())
      same->controllers.push_back(controller);
    else
      layout.hierarchies.push_back({.root = dir, .controllers = {controller}});
  }
  if (layout.hierarchies.empty())
    return fail(
        unavailable("no cgroup v1 hierarchy of cpu, cpuacct, memory or pids under \"{}\"", root.string()));
  return layout;
}

namespace {

Status writeFile(const std::filesystem::path& file, const std::string& value) {
  UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", file.string())));
  if (::write(fd.get(), value.data(), value.size()) != static_cast<ssize_t>(value.size()))
    return fail(systemError(errno, fmt::format("write(\"{}\", \"{}\")", file.string(), value)));
  return {};
}

// rmdir, retried while the kernel still counts a task that has just exited (EBUSY for a moment after its
// parent reaped it).
Status removeDirectory(const std::filesystem::path& dir) {
  for (int attempt = 0;; ++attempt) {
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return {};
    if (errno != EBUSY || attempt == 50)
      return fail(systemError(errno, fmt::format("rmdir(\"{}\")", dir.string())));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

class KernelVmCgroups final : public VmCgroups {
 public:
  explicit KernelVmCgroups(CgroupLayout layout) : layout_(std::move(layout)) {}

  Result<std::vector<UniqueFd>> create(std::string_view domainName,
                                       std::optional<uint64_t> memoryLimit) override {
    const VmCgroupPlan plan = planVmCgroup(layout_, domainName, memoryLimit);
    (void)remove(domainName);  // an empty leftover; one holding a process fails the mkdir below
    std::vector<std::filesystem::path> made;
    auto undo = [&] {
      for (auto it = made.rbegin(); it != made.rend(); ++it) (void)removeDirectory(*it);
    };
    for (const auto& dir : plan.directories) {
      std::error_code ec;
      std::filesystem::create_directories(dir.parent_path(), ec);
      if (::mkdir(dir.c_str(), 0755) != 0) {
        const int err = errno;
        undo();
        return fail(systemError(err, fmt::format("mkdir(\"{}\")", dir.string())));
      }
      made.push_back(dir);
    }
    for (const auto& [file, value] : plan.writes) {
      if (Status ok = writeFile(file, value); !ok) {
        undo();
        return fail(ok.error());
      }
    }
    std::vector<UniqueFd> join;
    for (const auto& file : plan.joinFiles) {
      UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CLOEXEC));
      if (!fd) {
        const int err = errno;
        undo();
        return fail(systemError(err, fmt::format("open(\"{}\")", file.string())));
      }
      join.push_back(std::move(fd));
    }
    return join;
  }

  Status remove(std::string_view domainName) override {
    const VmCgroupPlan plan = planVmCgroup(layout_, domainName, std::nullopt);
    Status result;
    for (auto it = plan.directories.rbegin(); it != plan.directories.rend(); ++it) {
      if (Status ok = removeDirectory(*it); !ok && result) result = ok;
    }
    return result;
  }

  std::vector<std::string> list() override {
    std::set<std::string> names;
    for (const auto& hierarchy : layout_.hierarchies) {
      std::error_code ec;
      for (const auto& entry : std::filesystem::directory_iterator(hierarchy.root / layout_.parent, ec)) {
        const std::string name = entry.path().filename().string();
        if (entry.is_directory() && name.starts_with(kPrefix)) names.insert(name.substr(kPrefix.size()));
      }
    }
    return {names.begin(), names.end()};
  }

 private:
  CgroupLayout layout_;
};

}  // namespace

std::unique_ptr<VmCgroups> kernelVmCgroups(CgroupLayout layout) {
  return std::make_unique<KernelVmCgroups>(std::move(layout));
}

}  // namespace corral::vmm
