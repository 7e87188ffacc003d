// A direct-engine VM's control group (vmm/qemu.h): QEMU accounted in <parent>/corral-vm-DOMAIN of its own,
// on cgroup v1 (one directory per controller hierarchy: cpu, cpuacct, memory, pids) or v2 (one directory).
// The plan is pure (unit-tested for both versions); KernelVmCgroups applies it. vmm/ does not use
// container/'s cgroup code: VMs and containers know nothing of each other.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::vmm {

enum class CgroupVersion { V1, V2 };

// Where the host's cgroups are: v2, the unified root; v1, each hierarchy holding one of the controllers a
// VM is accounted by (co-mounted ones, "cpu,cpuacct", listed once).
struct CgroupLayout {
  struct Hierarchy {
    std::filesystem::path root;
    std::vector<std::string> controllers;
    bool operator==(const Hierarchy&) const = default;
  };
  CgroupVersion version = CgroupVersion::V2;
  std::vector<Hierarchy> hierarchies;  // v2: one, the unified root, with the controllers it offers
  std::string parent = "corral";       // corrald's --cgroup-parent, relative to each root
  bool operator==(const CgroupLayout&) const = default;
};

// The controllers a VM is accounted by (v1: the hierarchies looked for; v2: enabled for the VMs' parent).
inline const std::vector<std::string> kVmControllers = {"cpu", "cpuacct", "memory", "pids"};

// What making one VM's cgroup does: directories in order (removed in reverse), then file writes, then the
// files QEMU's spawn child writes "0" to (v1 `tasks`: moves just that still single-threaded child, without
// the kernel's global cgroup_threadgroup_rwsem; v2 `cgroup.procs`).
struct VmCgroupPlan {
  std::vector<std::filesystem::path> directories;
  std::vector<std::pair<std::filesystem::path, std::string>> writes;
  std::vector<std::filesystem::path> joinFiles;
  bool operator==(const VmCgroupPlan&) const = default;
};

std::string vmCgroupName(std::string_view domainName);  // "corral-vm-" + domainName
// memoryLimit: memory.limit_in_bytes (v1) or memory.max (v2); none: accounting only, as libvirt's default.
// v2 enables memory, pids and cpu (those the root offers) in the root's and the parent's subtree_control.
VmCgroupPlan planVmCgroup(const CgroupLayout& layout, std::string_view domainName,
                          std::optional<uint64_t> memoryLimit);
// The memory limit of a VM with `guestBytes` of RAM under the direct engine: the guest's RAM, TCG's
// translation cache, and kVmMemoryOverhead for QEMU itself (its code, heap, device and I/O buffers; a save's
// page cache is reclaimed at the limit, not counted against the guest). vmm/README.md "Confinement".
inline constexpr uint64_t kVmMemoryOverhead = 192ull << 20;
uint64_t vmMemoryLimit(uint64_t guestBytes, uint32_t tcgTranslationCacheMiB);

// The cgroups of a direct engine's VMs, given to Qemu::open (vmm/qemu.h).
class VmCgroups {
 public:
  virtual ~VmCgroups() = default;
  // Makes the VM's cgroup (an empty leftover of the same name first removed) and opens its join files.
  virtual Result<std::vector<UniqueFd>> create(std::string_view domainName,
                                               std::optional<uint64_t> memoryLimit) = 0;
  // Removes it (no such cgroup is fine). A cgroup still holding a process is an error (EBUSY).
  virtual Status remove(std::string_view domainName) = 0;
  // The domain names of the VM cgroups under the parent: reconcile removes those no running VM has.
  virtual std::vector<std::string> list() = 0;
};

// The host's layout under `root` ("/sys/fs/cgroup"): v2 when it is a cgroup2 mount, else v1 with the
// hierarchies of kVmControllers found there. An error when none is.
Result<CgroupLayout> detectCgroupLayout(const std::filesystem::path& root, std::string parent);

std::unique_ptr<VmCgroups> kernelVmCgroups(CgroupLayout layout);

}  // namespace corral::vmm
