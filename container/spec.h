// An InstanceSpec (schema/instance.h) validated into the runtime's ContainerConfig: what needs the host
// (the image, devices, online CPUs, the reaper) is checked here. Pure: no I/O but lookups.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "container/runtime.h"
#include "core/error.h"
#include "schema/instance.h"

namespace corral::container {

struct ValidationContext {
  std::filesystem::path imageDir;  // images live at imageDir/NAME/rootfs
  // Non-empty: the root's layers, top first, already found by the caller (an image of corrald's store);
  // spec.image is then not looked up in imageDir.
  std::vector<std::filesystem::path> lowerDirs;
  std::filesystem::path containersDir;  // bundles at containersDir/NAME
  CgroupOptions cgroupOptions;
  IdMapRange userNamespaceRange;     // used when spec.userNamespace, for uids and gids alike
  std::filesystem::path reaperPath;  // corral-reaper, for spec.init
};

// Validates every field (naming it on error: "name", "image", "memory" (4M up), "cpus" (0 < cpus <= online
// CPUs × 1, at most 1024), "pids" (1..4194304), "env[2]" (must be K=V with a valid K), "hostname"
// (DNS label rules), "cap_add"/"cap_drop", "seccomp", "command[0]", "devices[1]" (an existing host
// character or block device, a fresh path under /dev inside, perms of "rwm"), "init" (the reaper binary
// must exist)) and builds the runtime config.
// Image names follow instance name rules, so "../x" or "/etc" can never escape the image directory.
Result<ContainerConfig> toContainerConfig(const schema::InstanceSpec& spec, const ValidationContext& context);

}  // namespace corral::container
