// A container's bundle on the host: bundle/{upper,work,rootfs}, the overlay mounted at rootfs (over the
// image, idmapped with a user namespace), what the mount plan needs made in it, and its removal
// (removeBundle, container/runtime.h). Internal to the runtime.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "container/mounts.h"
#include "container/runtime.h"
#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

bool isMountPoint(const std::filesystem::path& path);
// The cgroup hierarchies the host mounts under /sys/fs/cgroup, for the container's own view of them;
// mountinfo is read again only when what is mounted there changed (CgroupHierarchyCache).
Result<std::vector<HostCgroupHierarchy>> hostCgroupHierarchies();
// Creates what the mount plan needs in the merged rootfs (as host root, so the image owns nothing new)
// and the systemd container-interface file.
Status prepareRootfsFromParent(const MountPlan& plan, const ContainerConfig& config);
// Creates bundle/{upper,work,rootfs} and mounts the overlay at rootfs.
Status mountOverlayFromParent(const MountPlan& plan, const ContainerConfig& config);
// Takes the overlay at plan.rootfs out of the caller's mount namespace: returns a detached clone of it
// (open_tree OPEN_TREE_CLONE), which the child attaches in its own namespace (enterRootfsInChild), and
// unmounts it here. Once the child is gone the overlay goes with its namespace; until the child has it,
// with the returned descriptor.
Result<UniqueFd> detachOverlayFromParent(const MountPlan& plan);

}  // namespace corral::container
