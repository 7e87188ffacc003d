// What a VM instance's spec means: the InstanceSpec (the same schema as containers) validated into the
// kernel, initramfs, memory and vCPUs to boot with. Pure but for looking the files up. Fields that only
// make sense for a container (capabilities, seccomp, pids, user namespace, env, command) are refused by
// name: a VM has a kernel of its own, so those knobs live inside the guest.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "schema/instance.h"

namespace corral::daemon {

inline constexpr uint64_t kVmDefaultMemory = 128ull << 20;
inline constexpr uint64_t kVmMinMemory = 32ull << 20;

struct VmPlan {
  std::string name;
  std::string hostname;
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  uint64_t memoryBytes = kVmDefaultMemory;
  int vcpus = 1;
};

struct VmValidationContext {
  std::filesystem::path imageDir;  // an image's VM files: imageDir/NAME/vm/{vmlinuz,initramfs.img}
  uint64_t hostMemoryBytes = 0;    // MemTotal: a VM may not ask for more
  int hostCpus = 1;                // online CPUs: a VM may not ask for more vCPUs
};

Result<VmPlan> toVmPlan(const schema::InstanceSpec& spec, const VmValidationContext& context);

// MemTotal from /proc/meminfo and the online CPU count, for VmValidationContext.
VmValidationContext hostVmContext(std::filesystem::path imageDir);

}  // namespace corral::daemon
