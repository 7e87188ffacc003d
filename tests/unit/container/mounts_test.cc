// The container mount plan as data: overlay options, mount order and flags, /dev contents, Docker's
// masked and read-only paths, input validation and the messages failures produce. No root needed.
#include "container/mounts.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

#include <algorithm>

namespace corral::container {
namespace {

MountPlan planFor(MountPlanInput input) {
  auto plan = buildMountPlan(input);
  EXPECT_TRUE(plan.has_value()) << plan.error().message();
  return plan.value_or(MountPlan{});
}

MountPlanInput defaultInput() {
  MountPlanInput input;
  input.imageRootfs = "/var/lib/corral/images/busybox/rootfs";
  input.bundleDir = "/var/lib/corral/containers/web-1";
  return input;
}

const MountEntry* findMount(const MountPlan& plan, std::string_view target) {
  for (const auto& entry : plan.mounts) {
    if (entry.target == target) return &entry;
  }
  return nullptr;
}

TEST(MountPlan, OverlayLayersLiveInTheBundle) {
  MountPlan plan = planFor(defaultInput());
  EXPECT_EQ(plan.rootfs, "/var/lib/corral/containers/web-1/rootfs");
  EXPECT_EQ(plan.upperDir, "/var/lib/corral/containers/web-1/upper");
  EXPECT_EQ(plan.workDir, "/var/lib/corral/containers/web-1/work");
  EXPECT_EQ(plan.overlayData,
            "lowerdir=/var/lib/corral/images/busybox/rootfs,upperdir=/var/lib/corral/containers/web-1/upper,"
            "workdir=/var/lib/corral/containers/web-1/work");
}

TEST(MountPlan, TrailingSlashesAndDotsAreNormalized) {
  MountPlanInput input = defaultInput();
  input.bundleDir = "/var/lib/corral/containers/./web-1/";
  input.imageRootfs = "/images/busybox/rootfs/";
  MountPlan plan = planFor(input);
  EXPECT_EQ(plan.rootfs, "/var/lib/corral/containers/web-1/rootfs");
  EXPECT_TRUE(plan.overlayData.starts_with("lowerdir=/images/busybox/rootfs,")) << plan.overlayData;
}

TEST(MountPlan, MakesTheHostRootPrivateThenBindsTheRootfsOntoItself) {
  MountPlan plan = planFor(defaultInput());
  EXPECT_EQ(plan.makePrivate.hostTarget, "/");
  EXPECT_EQ(plan.makePrivate.flags, static_cast<unsigned long>(MS_REC | MS_PRIVATE));
  EXPECT_TRUE(plan.makePrivate.fstype.empty());
  EXPECT_EQ(plan.bindRootfs.source, plan.rootfs);
  EXPECT_EQ(plan.bindRootfs.hostTarget, plan.rootfs);
  EXPECT_EQ(plan.bindRootfs.flags, static_cast<unsigned long>(MS_BIND | MS_REC));
  ASSERT_FALSE(plan.mounts.empty());
  EXPECT_EQ(plan.mounts[0].target, "/proc");
  for (const auto& entry : plan.mounts) {
    EXPECT_TRUE(entry.hostTarget.starts_with(plan.rootfs + "/")) << "every other mount is inside the rootfs";
  }
  EXPECT_EQ(
      describeMountFailure(plan, MountStep::BindRootfs, 0),
      "mount(\"/var/lib/corral/containers/web-1/rootfs\", \"/var/lib/corral/containers/web-1/rootfs\", \"\", "
      "bind,rec, \"\")");
}

TEST(MountPlan, ProcSysAndDevAreFreshFilesystemsWithSafeFlags) {
  MountPlan plan = planFor(defaultInput());
  const MountEntry* proc = findMount(plan, "/proc");
  ASSERT_NE(proc, nullptr);
  EXPECT_EQ(proc->fstype, "proc");
  EXPECT_EQ(proc->hostTarget, plan.rootfs + "/proc");
  EXPECT_EQ(proc->flags, static_cast<unsigned long>(MS_NOSUID | MS_NODEV | MS_NOEXEC));

  const MountEntry* sys = findMount(plan, "/sys");
  ASSERT_NE(sys, nullptr);
  EXPECT_EQ(sys->fstype, "sysfs");
  EXPECT_TRUE(sys->flags & MS_RDONLY);

  const MountEntry* dev = findMount(plan, "/dev");
  ASSERT_NE(dev, nullptr);
  EXPECT_EQ(dev->fstype, "tmpfs");
  EXPECT_TRUE(dev->flags & MS_NOSUID);
  EXPECT_FALSE(dev->flags & MS_NODEV);  // the bound device nodes must work

  const MountEntry* shm = findMount(plan, "/dev/shm");
  ASSERT_NE(shm, nullptr);
  EXPECT_EQ(shm->fstype, "tmpfs");
  EXPECT_EQ(shm->create, MountTarget::Directory);

  // proc before anything under it is masked; /dev before anything is put into it.
  auto position = [&](std::string_view target) {
    return std::find_if(plan.mounts.begin(), plan.mounts.end(), [&](auto& e) { return e.target == target; }) -
           plan.mounts.begin();
  };
  EXPECT_LT(position("/dev"), position("/dev/null"));
  EXPECT_LT(position("/dev"), position("/dev/pts"));
  EXPECT_LT(position("/sys"), position("/dev"));
}

TEST(MountPlan, DevHoldsExactlyTheDockerDeviceNodesBoundFromTheHost) {
  MountPlan plan = planFor(defaultInput());
  std::vector<std::string> bound;
  for (const auto& entry : plan.mounts) {
    if (entry.target.starts_with("/dev/") && entry.fstype.empty()) {
      EXPECT_EQ(entry.flags, static_cast<unsigned long>(MS_BIND)) << entry.target;
      EXPECT_EQ(entry.create, MountTarget::File) << entry.target;
      EXPECT_EQ(entry.source, entry.target) << "binds the host's node of the same name";
      bound.push_back(entry.target);
    }
  }
  EXPECT_EQ(bound, (std::vector<std::string>{"/dev/null", "/dev/zero", "/dev/full", "/dev/random",
                                             "/dev/urandom", "/dev/tty"}));
}

TEST(MountPlan, DevptsIsANewInstanceWithAWorldUsablePtmx) {
  MountPlan plan = planFor(defaultInput());
  const MountEntry* pts = findMount(plan, "/dev/pts");
  ASSERT_NE(pts, nullptr);
  EXPECT_EQ(pts->fstype, "devpts");
  EXPECT_EQ(pts->data, "newinstance,ptmxmode=0666,mode=0620,gid=5");

  // gid 5 cannot be named when it is not mapped into the user namespace.
  MountPlanInput input = defaultInput();
  input.userNamespace = true;
  input.mappedIds = 1;
  MountPlan small = planFor(input);
  const MountEntry* smallPts = findMount(small, "/dev/pts");
  ASSERT_NE(smallPts, nullptr);
  EXPECT_EQ(smallPts->data, "newinstance,ptmxmode=0666,mode=0620");
}

TEST(MountPlan, DevSymlinks) {
  MountPlan plan = planFor(defaultInput());
  std::vector<std::pair<std::string, std::string>> links;
  for (const auto& link : plan.symlinks) {
    EXPECT_EQ(link.hostPath, plan.rootfs + link.path);
    links.emplace_back(link.path, link.linkTarget);
  }
  EXPECT_EQ(links, (std::vector<std::pair<std::string, std::string>>{{"/dev/ptmx", "pts/ptmx"},
                                                                     {"/dev/fd", "/proc/self/fd"},
                                                                     {"/dev/stdin", "/proc/self/fd/0"},
                                                                     {"/dev/stdout", "/proc/self/fd/1"},
                                                                     {"/dev/stderr", "/proc/self/fd/2"}}));
}

TEST(MountPlan, CgroupTreeOnlyOnPureV2Hosts) {
  EXPECT_EQ(findMount(planFor(defaultInput()), "/sys/fs/cgroup"), nullptr);
  MountPlanInput input = defaultInput();
  input.cgroup2 = true;
  MountPlan plan = planFor(input);
  const MountEntry* cgroup = findMount(plan, "/sys/fs/cgroup");
  ASSERT_NE(cgroup, nullptr);
  EXPECT_EQ(cgroup->fstype, "cgroup2");
  EXPECT_TRUE(cgroup->flags & MS_RDONLY);
}

TEST(MountPlan, DockersMaskedAndReadOnlyPaths) {
  MountPlan plan = planFor(defaultInput());
  std::vector<std::string> masked, readOnly;
  for (const auto& p : plan.maskedPaths) {
    EXPECT_EQ(p.hostPath, plan.rootfs + p.path);
    masked.push_back(p.path);
  }
  for (const auto& p : plan.readOnlyPaths) readOnly.push_back(p.path);
  for (const char* path : {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/scsi",
                           "/proc/acpi", "/sys/firmware", "/proc/latency_stats", "/proc/interrupts"}) {
    EXPECT_NE(std::find(masked.begin(), masked.end(), path), masked.end()) << path;
  }
  EXPECT_EQ(readOnly, (std::vector<std::string>{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                                "/proc/sysrq-trigger"}));
  EXPECT_EQ(plan.nullDevice, "/dev/null");
}

TEST(MountPlan, RequiresTheMountPointsAndTheContainerManagerDirectory) {
  MountPlan plan = planFor(defaultInput());
  EXPECT_EQ(plan.requiredDirectories,
            (std::vector<std::string>{"/proc", "/sys", "/dev", "/run", "/run/host"}));
}

TEST(MountPlan, RejectsPathsOverlayfsCannotTake) {
  MountPlanInput relative = defaultInput();
  relative.imageRootfs = "images/busybox";
  auto plan = buildMountPlan(relative);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(plan.error().field(), "image_rootfs");
  EXPECT_NE(plan.error().message().find("not an absolute path"), std::string::npos) << plan.error().message();

  MountPlanInput comma = defaultInput();
  comma.bundleDir = "/var/lib/corral/containers/a,b";
  plan = buildMountPlan(comma);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().field(), "bundle_dir");
  EXPECT_NE(plan.error().message().find("','"), std::string::npos) << plan.error().message();

  MountPlanInput colon = defaultInput();
  colon.imageRootfs = "/images/a:b";
  plan = buildMountPlan(colon);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().field(), "image_rootfs");

  MountPlanInput empty = defaultInput();
  empty.bundleDir.clear();
  plan = buildMountPlan(empty);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().field(), "bundle_dir");
}

TEST(MountPlan, FlagNamesAndDescriptions) {
  EXPECT_EQ(mountFlagNames(MS_NOSUID | MS_NODEV | MS_NOEXEC), "nosuid,nodev,noexec");
  EXPECT_EQ(mountFlagNames(MS_BIND | MS_REC), "bind,rec");
  EXPECT_EQ(mountFlagNames(0), "0");
  EXPECT_EQ(mountFlagNames(MS_RDONLY | (1ul << 30)), "ro,0x40000000");

  MountPlan plan = planFor(defaultInput());
  const MountEntry* proc = findMount(plan, "/proc");
  ASSERT_NE(proc, nullptr);
  EXPECT_EQ(describeMount(*proc),
            "mount(\"proc\", \"/var/lib/corral/containers/web-1/rootfs/proc\", \"proc\", "
            "nosuid,nodev,noexec, \"\")");
  EXPECT_EQ(describeMountFailure(plan, MountStep::PivotRoot, 0),
            "pivot_root(\"/var/lib/corral/containers/web-1/rootfs\")");
  size_t procIndex = static_cast<size_t>(proc - plan.mounts.data());
  EXPECT_EQ(describeMountFailure(plan, MountStep::Mount, static_cast<int32_t>(procIndex)),
            describeMount(*proc));
  EXPECT_EQ(describeMountFailure(plan, MountStep::MaskPath, 0),
            "mask \"/var/lib/corral/containers/web-1/rootfs" + plan.maskedPaths[0].path + "\"");
  // An index the plan does not have still gives a message rather than reading out of bounds.
  EXPECT_EQ(describeMountFailure(plan, MountStep::Mount, 9999), "mount step 4 #9999");
}

}  // namespace
}  // namespace corral::container
