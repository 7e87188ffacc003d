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
  input.lowerDirs = {"/var/lib/corral/images/busybox/rootfs"};
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

// With a user namespace each layer is idmapped at <bundle>/lower/<i> by the parent, in the input's order.
TEST(MountPlan, UserNamespaceOverlayReadsTheIdmappedLayers) {
  MountPlanInput input = defaultInput();
  input.lowerDirs = {"/store/layers/top", "/store/layers/base"};
  input.userNamespace = true;
  input.ttyGroupMapped = true;
  MountPlan plan = planFor(input);
  EXPECT_EQ(plan.idmappedLayersDir, "/var/lib/corral/containers/web-1/lower");
  EXPECT_EQ(plan.idmappedLayers, (std::vector<std::string>{"/var/lib/corral/containers/web-1/lower/0",
                                                           "/var/lib/corral/containers/web-1/lower/1"}));
  EXPECT_EQ(plan.lowerDirs, plan.idmappedLayers);
  EXPECT_EQ(plan.overlayData,
            "lowerdir=/var/lib/corral/containers/web-1/lower/0:/var/lib/corral/containers/web-1/lower/1,"
            "upperdir=/var/lib/corral/containers/web-1/upper,workdir=/var/lib/corral/containers/web-1/work");
  EXPECT_TRUE(planFor(defaultInput()).idmappedLayers.empty());
}

// Several layers stack top first, as given; mount(2)'s page limit is the runtime's business (bundle.cc),
// the plan still says what the options are.
TEST(MountPlan, LayersStackTopFirstInTheGivenOrder) {
  MountPlanInput input = defaultInput();
  input.lowerDirs = {"/store/layers/c", "/store/layers/b/", "/store/layers/./a"};
  MountPlan plan = planFor(input);
  EXPECT_EQ(plan.lowerDirs,
            (std::vector<std::string>{"/store/layers/c", "/store/layers/b", "/store/layers/a"}));
  EXPECT_TRUE(plan.overlayData.starts_with("lowerdir=/store/layers/c:/store/layers/b:/store/layers/a,"))
      << plan.overlayData;

  input.lowerDirs.assign(
      60, std::filesystem::path("/var/lib/corral/state/images/layers/") / std::string(64, 'f'));
  plan = planFor(input);
  EXPECT_EQ(plan.lowerDirs.size(), 60u);
  EXPECT_GT(plan.overlayData.size(), kMountDataMax);
}

TEST(MountPlan, RefusesNoLayersAndMoreThanOverlayfsStacks) {
  MountPlanInput input = defaultInput();
  input.lowerDirs.clear();
  auto plan = buildMountPlan(input);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().field(), "lower_dirs");
  input.lowerDirs.assign(kMaxLowerDirs + 1, "/store/layers/a");
  plan = buildMountPlan(input);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().field(), "lower_dirs");
  EXPECT_NE(plan.error().message().find("at most 500"), std::string::npos) << plan.error().message();
}

TEST(MountPlan, TrailingSlashesAndDotsAreNormalized) {
  MountPlanInput input = defaultInput();
  input.bundleDir = "/var/lib/corral/containers/./web-1/";
  input.lowerDirs = {"/images/busybox/rootfs/"};
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
  EXPECT_FALSE(dev->flags & MS_NODEV);  // the device nodes made in it must work

  const MountEntry* shm = findMount(plan, "/dev/shm");
  ASSERT_NE(shm, nullptr);
  EXPECT_EQ(shm->fstype, "tmpfs");
  EXPECT_EQ(shm->create, MountTarget::Directory);

  // proc before anything under it is masked; /dev before anything is put into it.
  auto position = [&](std::string_view target) {
    return std::find_if(plan.mounts.begin(), plan.mounts.end(), [&](auto& e) { return e.target == target; }) -
           plan.mounts.begin();
  };
  EXPECT_LT(position("/dev"), position("/dev/pts"));
  EXPECT_LT(position("/sys"), position("/dev"));
}

TEST(MountPlan, DevHoldsExactlyTheDockerDeviceNodesMadeByTheChild) {
  MountPlan plan = planFor(defaultInput());
  for (const auto& entry : plan.mounts)
    EXPECT_FALSE(entry.target.starts_with("/dev/") && entry.fstype.empty() && entry.target != "/dev/init")
        << "no host node is bound: " << entry.target;
  EXPECT_FALSE(plan.bindDevices) << "mknod: the container's nodes are its own inodes";
  std::vector<std::string> made;
  for (const auto& device : plan.devices) {
    EXPECT_EQ(device.hostPath, plan.rootfs + device.node.path);
    made.push_back(fmt::format("{} {} {}:{} {:o}", device.node.path, static_cast<char>(device.node.type),
                               device.node.major, device.node.minor, device.node.mode));
  }
  EXPECT_EQ(made, (std::vector<std::string>{"/dev/null c 1:3 666", "/dev/zero c 1:5 666",
                                            "/dev/full c 1:7 666", "/dev/random c 1:8 666",
                                            "/dev/urandom c 1:9 666", "/dev/tty c 5:0 666"}));
  EXPECT_TRUE(plan.deviceDirectories.empty());
  EXPECT_EQ(plan.nullDevice, plan.rootfs + "/dev/null") << "masks with the container's node, not the host's";

  // A user namespace may not mknod: the host's nodes are bound instead.
  MountPlanInput input = defaultInput();
  input.userNamespace = true;
  input.ttyGroupMapped = true;
  EXPECT_TRUE(planFor(input).bindDevices);
}

TEST(MountPlan, ExtraDevicesComeAfterTheDefaultsWithTheirDirectories) {
  MountPlanInput input = defaultInput();
  input.devices = {
      DeviceNode{"/dev/net/tun", "/dev/net/tun", DeviceType::Char, 10, 200, 0666, 0, 0, kDeviceRead},
      DeviceNode{"/dev/a/b/c", "/dev/loop0", DeviceType::Block, 7, 0, 0660, 0, 6, kDeviceAllAccess},
      DeviceNode{"/dev/net/x", "/dev/fuse", DeviceType::Char, 10, 229, 0666, 0, 0, kDeviceAllAccess}};
  MountPlan plan = planFor(input);
  ASSERT_EQ(plan.devices.size(), 6u + 3);
  EXPECT_EQ(plan.devices[6].node, input.devices[0]);
  EXPECT_EQ(plan.devices[7].hostPath, plan.rootfs + "/dev/a/b/c");
  std::vector<std::string> dirs;
  for (const auto& dir : plan.deviceDirectories) {
    EXPECT_EQ(dir.hostPath, plan.rootfs + dir.path);
    dirs.push_back(dir.path);
  }
  EXPECT_EQ(dirs, (std::vector<std::string>{"/dev/net", "/dev/a", "/dev/a/b"}));
  EXPECT_EQ(describeMountFailure(plan, MountStep::MakeDevice, 7),
            fmt::format("mknod(\"{}/dev/a/b/c\", b 7:0, 0660) and chown to 0:6", plan.rootfs));
  EXPECT_EQ(describeMountFailure(plan, MountStep::DeviceDirectory, 0),
            fmt::format("mkdir(\"{}/dev/net\", 0755)", plan.rootfs));
}

TEST(MountPlan, InitBinaryIsBoundReadOnlyAtDevInitOnlyWhenAsked) {
  EXPECT_EQ(findMount(planFor(defaultInput()), "/dev/init"), nullptr);
  MountPlanInput input = defaultInput();
  input.initBinary = "/usr/lib/corral/corral-reaper";
  MountPlan plan = planFor(input);
  const MountEntry* init = findMount(plan, "/dev/init");
  ASSERT_NE(init, nullptr);
  EXPECT_EQ(init->source, "/usr/lib/corral/corral-reaper");
  EXPECT_EQ(init->flags, static_cast<unsigned long>(MS_BIND | MS_RDONLY));
  EXPECT_EQ(init->create, MountTarget::File);
  EXPECT_EQ(init->hostTarget, plan.rootfs + "/dev/init");
  // On the container's own /dev tmpfs, mounted before it.
  const MountEntry* dev = findMount(plan, "/dev");
  ASSERT_NE(dev, nullptr);
  EXPECT_LT(dev, init);
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
  input.ttyGroupMapped = false;
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

TEST(MountPlan, PureV2HostsGetTheNamespacedCgroup2Tree) {
  MountPlanInput input = defaultInput();
  input.cgroup2 = true;
  input.cgroupV1Hierarchies = {{"memory", "cgroup", "memory"}};  // ignored on v2
  MountPlan plan = planFor(input);
  const MountEntry* cgroup = findMount(plan, "/sys/fs/cgroup");
  ASSERT_NE(cgroup, nullptr);
  EXPECT_EQ(cgroup->fstype, "cgroup2");
  EXPECT_TRUE(cgroup->flags & MS_RDONLY);
  EXPECT_EQ(findMount(plan, "/sys/fs/cgroup/memory"), nullptr);
}

// A Debian 10-style hybrid host: co-mounted controllers, a named hierarchy and the unified mount.
std::vector<HostCgroupHierarchy> hybridHierarchies() {
  return {{"systemd", "cgroup", "name=systemd"},
          {"cpu,cpuacct", "cgroup", "cpu,cpuacct"},
          {"memory", "cgroup", "memory"},
          {"net_cls,net_prio", "cgroup", "net_cls,net_prio"},
          {"pids", "cgroup", "pids"},
          {"unified", "cgroup2", ""}};
}

TEST(MountPlan, V1HostsGetEachHierarchyReadOnlyOnATmpfsLikeRunc) {
  MountPlanInput input = defaultInput();
  input.cgroupV1Hierarchies = hybridHierarchies();
  MountPlan plan = planFor(input);
  std::vector<std::string> targets;
  for (const auto& entry : plan.mounts) targets.push_back(entry.target);
  auto position = [&](std::string_view target) { return std::find(targets.begin(), targets.end(), target); };
  ASSERT_NE(position("/sys/fs/cgroup"), targets.end());
  EXPECT_LT(position("/sys"), position("/sys/fs/cgroup"));

  const MountEntry* tmpfs = findMount(plan, "/sys/fs/cgroup");
  EXPECT_EQ(tmpfs->fstype, "tmpfs");
  EXPECT_EQ(tmpfs->flags & MS_RDONLY, 0u) << "directories and symlinks are made in it first";
  for (const auto& hierarchy : hybridHierarchies()) {
    std::string target = "/sys/fs/cgroup/" + hierarchy.name;
    const MountEntry* mount = findMount(plan, target);
    ASSERT_NE(mount, nullptr) << target;
    EXPECT_LT(position("/sys/fs/cgroup"), position(target));
    EXPECT_EQ(mount->fstype, hierarchy.fstype);
    EXPECT_EQ(mount->source, hierarchy.fstype);
    EXPECT_EQ(mount->data, hierarchy.options);
    EXPECT_EQ(mount->flags, static_cast<unsigned long>(MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY))
        << target;
    EXPECT_EQ(mount->create, MountTarget::Directory);
    EXPECT_EQ(mount->hostTarget, plan.rootfs + target);
  }
  // Read-only once everything is in place (read-only paths come after the mounts and symlinks).
  EXPECT_EQ(plan.readOnlyPaths.back().path, "/sys/fs/cgroup");
  EXPECT_EQ(plan.readOnlyPaths.back().hostPath, plan.rootfs + "/sys/fs/cgroup");
}

TEST(MountPlan, CoMountedControllersGetSymlinksAsOnTheHost) {
  MountPlanInput input = defaultInput();
  input.cgroupV1Hierarchies = hybridHierarchies();
  MountPlan plan = planFor(input);
  std::vector<std::pair<std::string, std::string>> links;
  for (const auto& link : plan.symlinks) {
    if (!link.path.starts_with("/sys/fs/cgroup/")) continue;
    EXPECT_EQ(link.hostPath, plan.rootfs + link.path);
    links.emplace_back(link.path, link.linkTarget);
  }
  EXPECT_EQ(links, (std::vector<std::pair<std::string, std::string>>{
                       {"/sys/fs/cgroup/cpu", "cpu,cpuacct"},
                       {"/sys/fs/cgroup/cpuacct", "cpu,cpuacct"},
                       {"/sys/fs/cgroup/net_cls", "net_cls,net_prio"},
                       {"/sys/fs/cgroup/net_prio", "net_cls,net_prio"}}));

  // Separately mounted controllers (as on this project's CI host) need no links.
  input.cgroupV1Hierarchies = {{"cpu", "cgroup", "cpu"}, {"cpuacct", "cgroup", "cpuacct"}};
  plan = planFor(input);
  EXPECT_TRUE(std::none_of(plan.symlinks.begin(), plan.symlinks.end(),
                           [](const SymlinkEntry& l) { return l.path.starts_with("/sys/fs/cgroup"); }));
}

// The kernel refuses v1 cgroup mounts in a user namespace: /sys/fs/cgroup is present but empty.
TEST(MountPlan, UserNamespaceGetsAnEmptyReadOnlyCgroupTmpfs) {
  MountPlanInput input = defaultInput();
  input.userNamespace = true;
  input.ttyGroupMapped = true;
  input.cgroupV1Hierarchies = hybridHierarchies();
  MountPlan plan = planFor(input);
  const MountEntry* tmpfs = findMount(plan, "/sys/fs/cgroup");
  ASSERT_NE(tmpfs, nullptr);
  EXPECT_EQ(tmpfs->fstype, "tmpfs");
  EXPECT_TRUE(tmpfs->flags & MS_RDONLY);
  for (const auto& entry : plan.mounts)
    EXPECT_FALSE(entry.target.starts_with("/sys/fs/cgroup/")) << entry.target;
  for (const auto& link : plan.symlinks) EXPECT_FALSE(link.path.starts_with("/sys/fs/cgroup/")) << link.path;
  for (const auto& path : plan.readOnlyPaths) EXPECT_NE(path.path, "/sys/fs/cgroup");
}

TEST(HostCgroups, ParsesTheHierarchiesUnderSysFsCgroupFromMountinfo) {
  const std::string mountinfo =
      "22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
      "25 22 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
      "26 25 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:8 - tmpfs tmpfs ro,mode=755\n"
      "27 26 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
      "rw,nsdelegate\n"
      "28 26 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup "
      "rw,xattr,name=systemd\n"
      "31 26 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup "
      "rw,cpu,cpuacct\n"
      "32 26 0:29 / /sys/fs/cgroup/cpuset rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup "
      "rw,cpuset,noprefix,release_agent=/sbin/agent,clone_children\n"
      "33 26 0:30 /docker /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "40 26 0:31 / /sys/fs/cgroup/memory/nested rw,relatime - cgroup cgroup rw,memory\n"
      "41 22 0:32 / /mnt/cgroup rw,relatime - cgroup cgroup rw,pids\n"
      "42 22 0:33 / /sys/fs/cgroupx rw,relatime - cgroup cgroup rw,pids\n";
  EXPECT_EQ(parseHostCgroupHierarchies(mountinfo),
            (std::vector<HostCgroupHierarchy>{{"unified", "cgroup2", ""},
                                              {"systemd", "cgroup", "name=systemd"},
                                              {"cpu,cpuacct", "cgroup", "cpu,cpuacct"},
                                              {"cpuset", "cgroup", "cpuset"},
                                              {"memory", "cgroup", "memory"}}));
  EXPECT_TRUE(parseHostCgroupHierarchies("").empty());
  EXPECT_TRUE(parseHostCgroupHierarchies("garbage\n1 2 3\n").empty());
}

// A start reads mountinfo (O(every mount on the host, each container's overlay too)) only when what is
// mounted under /sys/fs/cgroup changed since the kept answer; a failed read keeps nothing.
TEST(HostCgroups, TheHierarchiesAreReadAgainOnlyWhenTheirMountPointsChange) {
  const std::string memoryOnly =
      "33 26 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "34 22 0:40 / /var/lib/corral/containers/web-1/rootfs rw - overlay overlay rw,lowerdir=/a\n";
  const std::string withPids =
      memoryOnly + "35 26 0:31 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n";
  std::string mountinfo = memoryOnly;
  int reads = 0;
  bool failRead = false;
  auto read = [&]() -> Result<std::string> {
    ++reads;
    if (failRead) return fail(systemError(EIO, "read(\"/proc/self/mountinfo\")"));
    return mountinfo;
  };
  CgroupHierarchyCache cache;
  const std::vector<HostCgroupHierarchy> memory{{"memory", "cgroup", "memory"}};
  auto first = cache.hierarchies({"memory@33"}, read);
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_EQ(*first, memory);
  // Another container's overlay is no change under /sys/fs/cgroup: the kept answer, no read.
  mountinfo += "36 22 0:41 / /var/lib/corral/containers/web-2/rootfs rw - overlay overlay rw,lowerdir=/a\n";
  for (int i = 0; i < 3; ++i) {
    auto again = cache.hierarchies({"memory@33"}, read);
    ASSERT_TRUE(again.has_value());
    EXPECT_EQ(*again, memory);
  }
  EXPECT_EQ(reads, 1);
  // A hierarchy mounted, or one remounted (a new mount id): read again.
  mountinfo = withPids;
  auto added = cache.hierarchies({"pids@35", "memory@33"}, read);
  ASSERT_TRUE(added.has_value());
  EXPECT_EQ(*added,
            (std::vector<HostCgroupHierarchy>{{"memory", "cgroup", "memory"}, {"pids", "cgroup", "pids"}}));
  EXPECT_EQ(reads, 2);
  (void)cache.hierarchies({"memory@33", "pids@35"}, read);  // the same set in another order
  EXPECT_EQ(reads, 2);
  failRead = true;
  auto failed = cache.hierarchies({"memory@33", "pids@37"}, read);
  ASSERT_FALSE(failed.has_value());
  EXPECT_NE(failed.error().message().find("mountinfo"), std::string::npos) << failed.error().message();
  failRead = false;
  mountinfo = memoryOnly;
  (void)cache.hierarchies({"memory@33", "pids@37"}, read);
  EXPECT_EQ(reads, 4) << "a failed read is not kept";
}

TEST(EtcFiles, HostnameAndHostsAreGeneratedAndResolvConfOnlyWithNameservers) {
  MountPlanInput input = defaultInput();
  input.hostname = "web-1";
  MountPlan plan = planFor(input);
  EXPECT_EQ(plan.etcFiles,
            (std::vector<GeneratedFile>{
                {"/etc/hostname", "web-1\n"},
                {"/etc/hosts",
                 "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tweb-1\n"}}));

  input.ipAddress = "10.1.0.5";
  input.nameservers = {"10.1.0.1", "2001:db8::53"};
  plan = planFor(input);
  ASSERT_EQ(plan.etcFiles.size(), 3u);
  EXPECT_EQ(plan.etcFiles[1].content,
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.1.0.5\tweb-1\n");
  EXPECT_EQ(plan.etcFiles[2],
            (GeneratedFile{"/etc/resolv.conf", "nameserver 10.1.0.1\nnameserver 2001:db8::53\n"}));

  EXPECT_TRUE(planFor(defaultInput()).etcFiles.empty());
}

TEST(EtcFiles, RejectsWhatWouldBreakTheFiles) {
  MountPlanInput input = defaultInput();
  input.hostname = "web 1";
  auto plan = buildMountPlan(input);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().field(), "hostname");

  input.hostname = "web-1";
  input.ipAddress = "10.1.0.300";
  plan = buildMountPlan(input);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().field(), "ip_address");

  input.ipAddress.reset();
  input.nameservers = {"1.1.1.1", "dns.example"};
  plan = buildMountPlan(input);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().field(), "nameservers[1]");
  EXPECT_NE(plan.error().message().find("\"dns.example\""), std::string::npos) << plan.error().message();
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
                                                "/proc/sysrq-trigger", "/sys/fs/cgroup"}));
}

TEST(MountPlan, RequiresTheMountPointsAndTheContainerManagerDirectory) {
  MountPlan plan = planFor(defaultInput());
  EXPECT_EQ(plan.requiredDirectories,
            (std::vector<std::string>{"/proc", "/sys", "/dev", "/run", "/run/host", "/etc"}));
}

TEST(MountPlan, RejectsPathsOverlayfsCannotTake) {
  MountPlanInput relative = defaultInput();
  relative.lowerDirs = {"/images/top", "images/busybox"};
  auto plan = buildMountPlan(relative);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(plan.error().field(), "lower_dirs[1]");
  EXPECT_NE(plan.error().message().find("not an absolute path"), std::string::npos) << plan.error().message();

  MountPlanInput comma = defaultInput();
  comma.bundleDir = "/var/lib/corral/containers/a,b";
  plan = buildMountPlan(comma);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().field(), "bundle_dir");
  EXPECT_NE(plan.error().message().find("','"), std::string::npos) << plan.error().message();

  MountPlanInput colon = defaultInput();
  colon.lowerDirs = {"/images/a:b"};
  plan = buildMountPlan(colon);
  ASSERT_FALSE(plan.has_value());
  EXPECT_EQ(plan.error().field(), "lower_dirs[0]");

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

namespace corral::container {
namespace {

// An OCI bundle's plan: its rootfs as it is (no overlay, nothing generated in /etc), its mounts in order
// with cgroup expanded to the host's v1 hierarchies, the default devices unless the bundle gives its own at
// the same path, its own masked and read-only paths.
TEST(MountPlan, BundleRootIsUsedAsGivenWithItsOwnMounts) {
  MountPlanInput input;
  BundleRoot root;
  root.rootfs = "/bundles/b1/rootfs/";
  root.readonly = true;
  root.mounts = {{"/proc", "proc", "proc", 0, 0, "", false},
                 {"/dev", "tmpfs", "tmpfs", MS_NOSUID, 0, "mode=755", false},
                 {"/etc/resolv.conf", "/host/resolv.conf", "", MS_BIND | MS_RDONLY, MS_PRIVATE, "", true},
                 {"/sys/fs/cgroup", "cgroup", "cgroup", MS_NOSUID | MS_RDONLY, 0, "", false}};
  root.maskedPaths = {"/proc/kcore"};
  root.readonlyPaths = {"/proc/sys"};
  input.bundleRoot = root;
  input.cgroupV1Hierarchies = {{"memory", "cgroup", "memory"}, {"cpu,cpuacct", "cgroup", "cpu,cpuacct"}};
  input.devices = {
      DeviceNode{"/dev/null", "/dev/null", DeviceType::Char, 1, 3, 0600, 0, 0, kDeviceAllAccess}};
  MountPlan plan = planFor(input);
  EXPECT_EQ(plan.rootfs, "/bundles/b1/rootfs");
  EXPECT_TRUE(plan.overlayData.empty());
  EXPECT_TRUE(plan.upperDir.empty());
  EXPECT_TRUE(plan.etcFiles.empty());
  EXPECT_TRUE(plan.requiredDirectories.empty());
  EXPECT_TRUE(plan.readonlyRoot);
  std::vector<std::string> targets;
  for (const auto& entry : plan.mounts) targets.push_back(entry.target);
  EXPECT_EQ(targets, (std::vector<std::string>{"/proc", "/dev", "/etc/resolv.conf", "/sys/fs/cgroup",
                                               "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu,cpuacct"}));
  const MountEntry* resolv = findMount(plan, "/etc/resolv.conf");
  ASSERT_NE(resolv, nullptr);
  EXPECT_EQ(resolv->create, MountTarget::File);
  EXPECT_EQ(resolv->propagation, static_cast<unsigned long>(MS_PRIVATE));
  EXPECT_EQ(resolv->hostTarget, "/bundles/b1/rootfs/etc/resolv.conf");
  EXPECT_EQ(findMount(plan, "/proc")->create, MountTarget::Directory);
  // The bundle's /dev/null (mode 0600) replaces the default one; the other defaults stay.
  size_t nulls = std::count_if(plan.devices.begin(), plan.devices.end(),
                               [](const PlannedDevice& d) { return d.node.path == "/dev/null"; });
  EXPECT_EQ(nulls, 1u);
  auto null = std::find_if(plan.devices.begin(), plan.devices.end(),
                           [](const PlannedDevice& d) { return d.node.path == "/dev/null"; });
  EXPECT_EQ(null->node.mode, mode_t{0600});
  EXPECT_EQ(plan.devices.size(), defaultDeviceNodes().size());
  ASSERT_EQ(plan.maskedPaths.size(), 1u);
  EXPECT_EQ(plan.maskedPaths[0].hostPath, "/bundles/b1/rootfs/proc/kcore");
  // Its own read-only path, then the cgroup tmpfs made read-only once its hierarchies are in.
  ASSERT_EQ(plan.readOnlyPaths.size(), 2u);
  EXPECT_EQ(plan.readOnlyPaths[1].path, "/sys/fs/cgroup");
  auto cpuLink = std::find_if(plan.symlinks.begin(), plan.symlinks.end(),
                              [](const SymlinkEntry& s) { return s.path == "/sys/fs/cgroup/cpu"; });
  ASSERT_NE(cpuLink, plan.symlinks.end());
  EXPECT_EQ(cpuLink->linkTarget, "cpu,cpuacct");
}

TEST(MountPlan, BundleMountsMustStayInsideTheRoot) {
  MountPlanInput input;
  BundleRoot root;
  root.rootfs = "/bundles/b1/rootfs";
  root.mounts = {{"/a/../../etc", "tmpfs", "tmpfs", 0, 0, "", false}};
  input.bundleRoot = root;
  auto plan = buildMountPlan(input);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().field(), "mounts[0].destination");
  root.mounts = {{"/sys/fs/other", "cgroup", "cgroup", 0, 0, "", false}};
  input.bundleRoot = root;
  EXPECT_FALSE(buildMountPlan(input));
  root.rootfs = "relative/rootfs";
  root.mounts.clear();
  input.bundleRoot = root;
  plan = buildMountPlan(input);
  ASSERT_FALSE(plan);
  EXPECT_EQ(plan.error().field(), "root.path");
}

}  // namespace
}  // namespace corral::container
