// The container's mount plan (pure: paths, flags and data as values) and, at the end of the file, the
// child-side code that applies it before pivot_root. The child half makes only system calls.
#include "container/mounts.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <functional>
#include <utility>

#include "container/rootfs_path.h"
#include "core/unique_fd.h"

namespace corral::container {
namespace {

// Each node under the plan's /dev, with the parents of nested nodes made first, each once, outermost first:
// "/dev/net" for "/dev/net/tun".
void planDeviceNodes(const std::vector<DeviceNode>& nodes, MountPlan& plan) {
  for (const DeviceNode& node : nodes) {
    for (size_t slash = node.path.find('/', 5); slash != std::string::npos;
         slash = node.path.find('/', slash + 1)) {
      std::string dir = node.path.substr(0, slash);
      bool planned = std::any_of(plan.deviceDirectories.begin(), plan.deviceDirectories.end(),
                                 [&](const ContainerPath& p) { return p.path == dir; });
      if (!planned) plan.deviceDirectories.push_back({dir, plan.rootfs + dir});
    }
    plan.devices.push_back({node, plan.rootfs + node.path});
  }
}

constexpr unsigned long kNoSuidDevExec = MS_NOSUID | MS_NODEV | MS_NOEXEC;

Status checkPath(const std::filesystem::path& path, const char* field) {
  if (path.empty()) return fail(invalidField(field, "{} is empty", field));
  if (!path.is_absolute())
    return fail(invalidField(field, "{} \"{}\" is not an absolute path", field, path.string()));
  for (char c : path.string()) {
    if (c == ',' || c == ':' || c == '\n') {
      return fail(invalidField(field, "{} \"{}\" contains '{}', which overlayfs options cannot carry", field,
                               path.string(), c == '\n' ? std::string("\\n") : std::string(1, c)));
    }
  }
  return {};
}

using AddMount = std::function<void(std::string source, std::string target, std::string fstype,
                                    unsigned long flags, std::string data, MountTarget create)>;

// How both plans start: "/" made `propagation` (private: nothing we mount reaches the host), then the
// rootfs bound onto itself (enterRootfsInChild).
void enterRootfsPlan(MountPlan& plan, unsigned long propagation) {
  plan.makePrivate = MountEntry{"", "(host /)", "/", "", propagation, "", MountTarget::Existing, 0};
  plan.bindRootfs =
      MountEntry{plan.rootfs, "/", plan.rootfs, "", MS_BIND | MS_REC, "", MountTarget::Existing, 0};
}

// Appends a mount at a container path to plan.mounts, with its place before pivot_root.
AddMount mountAdder(MountPlan& plan) {
  return [&plan](std::string source, std::string target, std::string fstype, unsigned long flags,
                 std::string data, MountTarget create) {
    std::string hostTarget = target == "/" ? plan.rootfs : plan.rootfs + target;
    plan.mounts.push_back(MountEntry{std::move(source), std::move(target), std::move(hostTarget),
                                     std::move(fstype), flags, std::move(data), create, 0});
  };
}

// /sys/fs/cgroup: on a pure v2 host the (namespaced) cgroup2 tree read-only; with a user namespace an empty
// read-only tmpfs (the kernel refuses v1 mounts there); otherwise a tmpfs with each host hierarchy
// mounted again from inside the container's cgroup namespace, as runc does. `links` gets the v1
// co-mounts' names ("cpu" for "cpu,cpuacct") and what they point to.
void planCgroupMounts(const MountPlanInput& input, unsigned long flags, const AddMount& add,
                      std::vector<std::pair<std::string, std::string>>* links) {
  if (input.cgroup2) {
    add("cgroup", "/sys/fs/cgroup", "cgroup2", flags | MS_RDONLY, "", MountTarget::Existing);
    return;
  }
  if (input.userNamespace) {
    add("tmpfs", "/sys/fs/cgroup", "tmpfs", flags | MS_RDONLY, "mode=755,size=0", MountTarget::Existing);
    return;
  }
  // Writable until the hierarchies' directories and symlinks exist; read-only via readOnlyPaths later.
  add("tmpfs", "/sys/fs/cgroup", "tmpfs", flags & ~static_cast<unsigned long>(MS_RDONLY), "mode=755",
      MountTarget::Existing);
  for (const auto& hierarchy : input.cgroupV1Hierarchies) {
    add(hierarchy.fstype, "/sys/fs/cgroup/" + hierarchy.name, hierarchy.fstype, flags | MS_RDONLY,
        hierarchy.options, MountTarget::Directory);
    if (hierarchy.fstype != "cgroup" || hierarchy.name.find(',') == std::string::npos) continue;
    std::string_view rest = hierarchy.name;
    while (!rest.empty()) {
      std::string_view part = rest.substr(0, rest.find(','));
      rest.remove_prefix(std::min(rest.size(), part.size() + 1));
      bool taken = std::any_of(input.cgroupV1Hierarchies.begin(), input.cgroupV1Hierarchies.end(),
                               [&](const HostCgroupHierarchy& h) { return h.name == part; });
      if (part.empty() || part.starts_with("name=") || taken) continue;
      links->emplace_back(std::string(part), hierarchy.name);
    }
  }
}

// The plan of an OCI bundle: its rootfs as it is, its own mounts in order, the default devices and
// /dev links (runtime-spec "Default Devices"), its masked and read-only paths.
Result<MountPlan> buildBundleMountPlan(const MountPlanInput& input) {
  const BundleRoot& root = *input.bundleRoot;
  if (auto ok = checkPath(root.rootfs, "root.path"); !ok) return fail(ok.error());
  MountPlan plan;
  plan.rootfs = root.rootfs.lexically_normal().string();
  if (plan.rootfs.size() > 1 && plan.rootfs.back() == '/') plan.rootfs.pop_back();
  enterRootfsPlan(plan, root.propagation);
  const AddMount add = mountAdder(plan);
  std::vector<std::pair<std::string, std::string>> cgroupLinks;
  bool cgroupReadOnly = false;
  for (size_t i = 0; i < root.mounts.size(); ++i) {
    const BundleMount& mount = root.mounts[i];
    const std::string field = fmt::format("mounts[{}].destination", i);
    if (mount.destination.empty() || mount.destination.front() != '/')
      return fail(invalidField(field, "\"{}\" is not an absolute path", mount.destination));
    if (mount.destination.find("/../") != std::string::npos || mount.destination.ends_with("/.."))
      return fail(invalidField(field, "\"{}\" leaves the root with \"..\"", mount.destination));
    if (mount.fstype == "cgroup" || mount.fstype == "cgroup2") {
      if (mount.destination != "/sys/fs/cgroup")
        return fail(
            invalidField(field, "a cgroup mount goes only at /sys/fs/cgroup, not \"{}\"", mount.destination));
      cgroupReadOnly = (mount.flags & MS_RDONLY) != 0;
      planCgroupMounts(input, mount.flags, add, &cgroupLinks);
      continue;
    }
    std::string destination = std::filesystem::path(mount.destination).lexically_normal().string();
    if (destination.size() > 1 && destination.back() == '/') destination.pop_back();
    add(mount.source, destination, mount.fstype, mount.flags, mount.data,
        mount.fileTarget ? MountTarget::File : MountTarget::Directory);
    plan.mounts.back().propagation = mount.propagation;
  }
  // The bundle's own node at a default's path replaces the default.
  std::vector<DeviceNode> nodes = defaultDeviceNodes();
  std::erase_if(nodes, [&](const DeviceNode& node) {
    return std::any_of(input.devices.begin(), input.devices.end(),
                       [&](const DeviceNode& given) { return given.path == node.path; });
  });
  nodes.insert(nodes.end(), input.devices.begin(), input.devices.end());
  planDeviceNodes(nodes, plan);
  // In a user namespace mknod is refused: the host's nodes are bound, and masks bind the host's /dev/null.
  plan.bindDevices = input.userNamespace;
  plan.nullDevice = input.userNamespace ? "/dev/null" : plan.rootfs + "/dev/null";
  auto link = [&](std::string target, std::string path) {
    std::string hostPath = plan.rootfs + path;
    plan.symlinks.push_back(SymlinkEntry{std::move(target), std::move(path), std::move(hostPath)});
  };
  link("pts/ptmx", "/dev/ptmx");
  link("/proc/self/fd", "/dev/fd");
  link("/proc/self/fd/0", "/dev/stdin");
  link("/proc/self/fd/1", "/dev/stdout");
  link("/proc/self/fd/2", "/dev/stderr");
  link("/proc/kcore", "/dev/core");
  for (const auto& [name, target] : cgroupLinks) link(target, "/sys/fs/cgroup/" + name);
  for (const auto& path : root.maskedPaths) plan.maskedPaths.push_back({path, plan.rootfs + path});
  for (const auto& path : root.readonlyPaths) plan.readOnlyPaths.push_back({path, plan.rootfs + path});
  if (cgroupReadOnly && !input.cgroup2 && !input.userNamespace)
    plan.readOnlyPaths.push_back({"/sys/fs/cgroup", plan.rootfs + "/sys/fs/cgroup"});
  plan.readonlyRoot = root.readonly;
  return plan;
}

}  // namespace

Result<std::vector<HostCgroupHierarchy>> CgroupHierarchyCache::hierarchies(
    std::vector<std::string> mountPoints, const std::function<Result<std::string>()>& readMountinfo) {
  std::sort(mountPoints.begin(), mountPoints.end());
  std::lock_guard lock(mutex_);
  if (mountPoints_ == mountPoints) return kept_;
  auto mountinfo = readMountinfo();
  if (!mountinfo) {
    mountPoints_.reset();
    return fail(std::move(mountinfo).error());
  }
  kept_ = parseHostCgroupHierarchies(*mountinfo);
  mountPoints_ = std::move(mountPoints);
  return kept_;
}

std::vector<HostCgroupHierarchy> parseHostCgroupHierarchies(std::string_view mountinfo,
                                                            std::string_view root) {
  // Mount options that configure a v1 hierarchy rather than select it; mounting an existing hierarchy
  // again needs only its controllers and name= (others would be ignored with a warning).
  static constexpr std::string_view kNotSelectors[] = {
      "rw", "ro", "xattr", "noprefix", "clone_children", "cpuset_v2_mode", "favordynmods", "none"};
  std::vector<HostCgroupHierarchy> found;
  auto split = [](std::string_view text, char separator) {
    std::vector<std::string_view> parts;
    while (!text.empty()) {
      size_t at = text.find(separator);
      if (at != 0) parts.push_back(text.substr(0, at));
      if (at == std::string_view::npos) break;
      text.remove_prefix(at + 1);
    }
    return parts;
  };
  for (std::string_view line : split(mountinfo, '\n')) {
    // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTIONS
    std::vector<std::string_view> fields = split(line, ' ');
    auto dash = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || dash == fields.end() || fields.end() - dash < 4) continue;
    std::string_view mountPoint = fields[4];
    std::string_view fstype = dash[1];
    if (fstype != "cgroup" && fstype != "cgroup2") continue;
    if (mountPoint.size() <= root.size() + 1 || !mountPoint.starts_with(root) ||
        mountPoint[root.size()] != '/')
      continue;
    std::string_view name = mountPoint.substr(root.size() + 1);
    if (name.find('/') != std::string_view::npos || name == "." || name == "..") continue;
    std::string options;
    if (fstype == "cgroup") {
      for (std::string_view option : split(dash[3], ',')) {
        if (option.starts_with("release_agent=") ||
            std::find(std::begin(kNotSelectors), std::end(kNotSelectors), option) != std::end(kNotSelectors))
          continue;
        if (!options.empty()) options += ',';
        options += option;
      }
    }
    found.push_back({std::string(name), std::string(fstype), std::move(options)});
  }
  return found;
}

std::string hostsFileText(std::string_view hostname, const std::optional<std::string>& address) {
  return fmt::format("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
                     address.value_or("127.0.1.1"), hostname);
}

std::string resolvConfText(const std::vector<std::string>& nameservers,
                           const std::vector<std::string>& searchDomains) {
  std::string text;
  for (const auto& server : nameservers) text += fmt::format("nameserver {}\n", server);
  if (!searchDomains.empty()) text += fmt::format("search {}\n", fmt::join(searchDomains, " "));
  return text;
}

std::vector<std::string> dockerMaskedPaths() {
  return {"/proc/asound",      "/proc/acpi",          "/proc/interrupts", "/proc/kcore",
          "/proc/keys",        "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
          "/proc/sched_debug", "/proc/scsi",          "/sys/firmware",    "/sys/devices/virtual/powercap"};
}

std::vector<std::string> dockerReadOnlyPaths() {
  return {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"};
}

Result<MountPlan> buildMountPlan(const MountPlanInput& input) {
  if (input.bundleRoot) return buildBundleMountPlan(input);
  if (input.lowerDirs.empty())
    return fail(invalidField("lower_dirs", "no layers: the root needs one at least"));
  if (input.lowerDirs.size() > kMaxLowerDirs) {
    return fail(invalidField("lower_dirs", "{} layers: overlayfs stacks at most {}", input.lowerDirs.size(),
                             kMaxLowerDirs));
  }
  auto normalized = [](const std::filesystem::path& path) {
    std::filesystem::path clean = path.lexically_normal();
    if (!clean.has_filename() && clean != clean.root_path()) clean = clean.parent_path();
    return clean;
  };
  std::vector<std::string> layers;
  for (size_t i = 0; i < input.lowerDirs.size(); ++i) {
    std::string field = fmt::format("lower_dirs[{}]", i);
    if (auto ok = checkPath(input.lowerDirs[i], field.c_str()); !ok) return fail(ok.error());
    layers.push_back(normalized(input.lowerDirs[i]).string());
  }
  if (auto ok = checkPath(input.bundleDir, "bundle_dir"); !ok) return fail(ok.error());
  std::filesystem::path bundle = normalized(input.bundleDir);

  MountPlan plan;
  plan.rootfs = (bundle / "rootfs").string();
  plan.upperDir = (bundle / "upper").string();
  plan.workDir = (bundle / "work").string();
  if (input.userNamespace) {
    plan.idmappedLayersDir = (bundle / "lower").string();
    for (size_t i = 0; i < layers.size(); ++i)
      plan.idmappedLayers.push_back(fmt::format("{}/{}", plan.idmappedLayersDir, i));
    plan.lowerDirs = plan.idmappedLayers;
  } else {
    plan.lowerDirs = layers;
  }
  std::string lowerdir;
  for (const std::string& dir : plan.lowerDirs) lowerdir += (lowerdir.empty() ? "" : ":") + dir;
  plan.overlayData = fmt::format("lowerdir={},upperdir={},workdir={}", lowerdir, plan.upperDir, plan.workDir);
  plan.requiredDirectories = {"/proc", "/sys", "/dev", "/run", "/run/host", "/etc"};

  enterRootfsPlan(plan, MS_REC | MS_PRIVATE);
  const AddMount addMount = mountAdder(plan);
  auto add = [&](std::string source, std::string target, std::string fstype, unsigned long flags,
                 std::string data, MountTarget create = MountTarget::Existing) {
    addMount(std::move(source), std::move(target), std::move(fstype), flags, std::move(data), create);
  };

  add("proc", "/proc", "proc", kNoSuidDevExec, "");
  add("sysfs", "/sys", "sysfs", kNoSuidDevExec | MS_RDONLY, "");
  std::vector<std::pair<std::string, std::string>> cgroupLinks;  // v1 co-mounts: cpu → cpu,cpuacct
  planCgroupMounts(input, kNoSuidDevExec, addMount, &cgroupLinks);
  add("tmpfs", "/dev", "tmpfs", MS_NOSUID | MS_STRICTATIME, "mode=755,size=65536k");
  std::vector<DeviceNode> nodes = defaultDeviceNodes();
  nodes.insert(nodes.end(), input.devices.begin(), input.devices.end());
  planDeviceNodes(nodes, plan);
  plan.bindDevices = input.userNamespace;
  // In a user namespace the host's node (bound there anyway; binding the bind is refused).
  plan.nullDevice = input.userNamespace ? "/dev/null" : plan.rootfs + "/dev/null";
  // On our own /dev tmpfs, so the image needs no place for it and its writable layer gets nothing.
  if (!input.initBinary.empty())
    add(input.initBinary, "/dev/init", "", MS_BIND | MS_RDONLY, "", MountTarget::File);
  // gid 5 is "tty" in every distribution; it must be mapped for the mount to succeed in a user namespace.
  std::string ptsData = "newinstance,ptmxmode=0666,mode=0620";
  if (!input.userNamespace || input.ttyGroupMapped) ptsData += ",gid=5";
  add("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, ptsData, MountTarget::Directory);
  add("shm", "/dev/shm", "tmpfs", kNoSuidDevExec, "mode=1777,size=65536k", MountTarget::Directory);
  add("mqueue", "/dev/mqueue", "mqueue", kNoSuidDevExec, "", MountTarget::Directory);

  auto link = [&](std::string target, std::string path) {
    std::string hostPath = plan.rootfs + path;
    plan.symlinks.push_back(SymlinkEntry{std::move(target), std::move(path), std::move(hostPath)});
  };
  link("pts/ptmx", "/dev/ptmx");
  link("/proc/self/fd", "/dev/fd");
  link("/proc/self/fd/0", "/dev/stdin");
  link("/proc/self/fd/1", "/dev/stdout");
  link("/proc/self/fd/2", "/dev/stderr");
  for (const auto& [name, target] : cgroupLinks) link(target, "/sys/fs/cgroup/" + name);

  for (const auto& path : dockerMaskedPaths()) plan.maskedPaths.push_back({path, plan.rootfs + path});
  for (const auto& path : dockerReadOnlyPaths()) plan.readOnlyPaths.push_back({path, plan.rootfs + path});
  if (!input.cgroup2 && !input.userNamespace)
    plan.readOnlyPaths.push_back({"/sys/fs/cgroup", plan.rootfs + "/sys/fs/cgroup"});

  // Characters that would break the files' line format; the daemon's validation is stricter still.
  for (char c : input.hostname) {
    if (static_cast<unsigned char>(c) <= ' ' || c == '#' || c == 0x7f)
      return fail(invalidField("hostname", "hostname \"{}\" contains whitespace, a control character or '#'",
                               input.hostname));
  }
  auto isAddress = [](const std::string& text) {
    unsigned char buffer[sizeof(in6_addr)];
    return ::inet_pton(AF_INET, text.c_str(), buffer) == 1 ||
           ::inet_pton(AF_INET6, text.c_str(), buffer) == 1;
  };
  if (input.ipAddress && !isAddress(*input.ipAddress))
    return fail(invalidField("ip_address", "\"{}\" is not an IPv4 or IPv6 address", *input.ipAddress));
  for (size_t i = 0; i < input.nameservers.size(); ++i) {
    if (!isAddress(input.nameservers[i]))
      return fail(invalidField(fmt::format("nameservers[{}]", i), "\"{}\" is not an IPv4 or IPv6 address",
                               input.nameservers[i]));
  }
  for (size_t i = 0; i < input.searchDomains.size(); ++i) {
    const std::string& domain = input.searchDomains[i];
    if (domain.empty() || domain.size() > 253 ||
        domain.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-") !=
            std::string::npos)
      return fail(invalidField(fmt::format("search_domains[{}]", i),
                               "\"{}\" is not a domain name (1-253 of letters, digits, '.' and '-')",
                               domain));
  }
  if (!input.hostname.empty()) {
    plan.etcFiles.push_back({"/etc/hostname", input.hostname + "\n"});
    plan.etcFiles.push_back({"/etc/hosts", hostsFileText(input.hostname, input.ipAddress)});
  }
  if (!input.nameservers.empty())
    plan.etcFiles.push_back({"/etc/resolv.conf", resolvConfText(input.nameservers, input.searchDomains)});
  return plan;
}

std::string mountFlagNames(unsigned long flags) {
  static constexpr std::pair<unsigned long, const char*> kNames[] = {
      {MS_RDONLY, "ro"},       {MS_NOSUID, "nosuid"},           {MS_NODEV, "nodev"},
      {MS_NOEXEC, "noexec"},   {MS_REMOUNT, "remount"},         {MS_BIND, "bind"},
      {MS_REC, "rec"},         {MS_PRIVATE, "private"},         {MS_SLAVE, "slave"},
      {MS_SHARED, "shared"},   {MS_STRICTATIME, "strictatime"}, {MS_RELATIME, "relatime"},
      {MS_NOATIME, "noatime"}, {MS_UNBINDABLE, "unbindable"},   {MS_NODIRATIME, "nodiratime"},
  };
  std::string names;
  for (const auto& [bit, name] : kNames) {
    if ((flags & bit) == 0) continue;
    if (!names.empty()) names += ',';
    names += name;
    flags &= ~bit;
  }
  if (flags != 0) names += fmt::format("{}{:#x}", names.empty() ? "" : ",", flags);
  return names.empty() ? "0" : names;
}

std::string describeMount(const MountEntry& entry) {
  return fmt::format("mount(\"{}\", \"{}\", \"{}\", {}, \"{}\")", entry.source, entry.hostTarget,
                     entry.fstype, mountFlagNames(entry.flags), entry.data);
}

std::string describeMountFailure(const MountPlan& plan, MountStep step, int32_t index) {
  auto at = [](const auto& list, int32_t i) -> const auto* {
    return i >= 0 && static_cast<size_t>(i) < list.size() ? &list[static_cast<size_t>(i)] : nullptr;
  };
  switch (step) {
    case MountStep::MakePrivate:
      return describeMount(plan.makePrivate);
    case MountStep::BindRootfs:
      return describeMount(plan.bindRootfs);
    case MountStep::OpenRootfs:
      return fmt::format("open(\"{}\", O_PATH|O_DIRECTORY)", plan.rootfs);
    case MountStep::CreateTarget:
      if (auto* e = at(plan.mounts, index)) return fmt::format("create mount point \"{}\"", e->hostTarget);
      break;
    case MountStep::Mount:
      if (auto* e = at(plan.mounts, index)) return describeMount(*e);
      break;
    case MountStep::Remount:
      if (auto* e = at(plan.mounts, index)) {
        return fmt::format("mount(\"{}\", remount,bind,ro)", e->hostTarget);
      }
      break;
    case MountStep::DeviceDirectory:
      if (auto* d = at(plan.deviceDirectories, index)) return fmt::format("mkdir(\"{}\", 0755)", d->hostPath);
      break;
    case MountStep::MakeDevice:
      if (auto* d = at(plan.devices, index)) {
        if (plan.bindDevices)
          return fmt::format("mount(\"{}\", \"{}\", bind)", d->node.hostPath, d->hostPath);
        return fmt::format("mknod(\"{}\", {} {}:{}, {:04o}) and chown to {}:{}", d->hostPath,
                           static_cast<char>(d->node.type), d->node.major, d->node.minor, d->node.mode,
                           d->node.uid, d->node.gid);
      }
      break;
    case MountStep::Symlink:
      if (auto* s = at(plan.symlinks, index))
        return fmt::format("symlink(\"{}\", \"{}\")", s->linkTarget, s->hostPath);
      break;
    case MountStep::MaskPath:
      if (auto* p = at(plan.maskedPaths, index)) return fmt::format("mask \"{}\"", p->hostPath);
      break;
    case MountStep::ReadOnlyPath:
      if (auto* p = at(plan.readOnlyPaths, index)) return fmt::format("make \"{}\" read-only", p->hostPath);
      break;
    case MountStep::Propagation:
      if (auto* e = at(plan.mounts, index))
        return fmt::format("mount(\"{}\", {})", e->hostTarget, mountFlagNames(e->propagation));
      break;
    case MountStep::ReadOnlyRoot:
      return fmt::format("mount(\"{}\", remount,bind,ro)", plan.rootfs);
    case MountStep::PivotRoot:
      return fmt::format("pivot_root(\"{}\")", plan.rootfs);
    case MountStep::UnmountOldRoot:
      return fmt::format("umount2(old root of \"{}\", MNT_DETACH)", plan.rootfs);
  }
  return fmt::format("mount step {} #{}", static_cast<int>(step), index);
}

// ---- Parent side ----

Status mountIdmappedFromParent(const std::string& source, const std::string& target, int userNamespaceFd) {
  UniqueFd tree(::open_tree(AT_FDCWD, source.c_str(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (!tree) return fail(systemError(errno, fmt::format("open_tree(\"{}\", OPEN_TREE_CLONE)", source)));
  mount_attr attr{};
  attr.attr_set = MOUNT_ATTR_IDMAP;
  attr.userns_fd = static_cast<uint64_t>(userNamespaceFd);
  if (::mount_setattr(tree.get(), "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    return fail(systemError(errno, fmt::format("mount_setattr(\"{}\", MOUNT_ATTR_IDMAP)", source)));
  if (::move_mount(tree.get(), "", AT_FDCWD, target.c_str(), MOVE_MOUNT_F_EMPTY_PATH) != 0)
    return fail(systemError(errno, fmt::format("move_mount(\"{}\" idmapped, \"{}\")", source, target)));
  return {};
}

// ---- Child side ----
namespace {

bool failWith(MountFailure* failure, MountStep step, size_t index) {
  failure->step = step;
  failure->index = static_cast<int32_t>(index);
  failure->errnum = errno;
  return false;
}

// hostTarget relative to the rootfs: "<rootfs>/dev/pts" → "dev/pts", the rootfs itself → ".". Every
// such path is then resolved inside the root (rootfs_path.h), never by the host's lookup: an image's
// symlink ("proc -> /", "mnt -> ../../etc") must not take a mount, mask or node out of the root. Points
// into `hostPath`: no allocation.
const char* relativeToRootfs(const std::string& hostPath, const MountPlan& plan) {
  if (hostPath == plan.rootfs) return ".";
  if (hostPath.size() > plan.rootfs.size() + 1 && hostPath.compare(0, plan.rootfs.size(), plan.rootfs) == 0 &&
      hostPath[plan.rootfs.size()] == '/') {
    return hostPath.c_str() + plan.rootfs.size() + 1;
  }
  return hostPath.c_str();
}

bool insideRootfs(const std::string& hostPath, const MountPlan& plan) {
  return relativeToRootfs(hostPath, plan) != hostPath.c_str();
}

// An fd closed when it goes out of scope, errno kept (the child reports the failure that came before).
class ChildFd {
 public:
  explicit ChildFd(int fd = -1) : fd_(fd) {}
  ChildFd(const ChildFd&) = delete;
  ChildFd& operator=(const ChildFd&) = delete;
  ~ChildFd() { reset(); }
  void reset(int fd = -1) {
    if (fd_ >= 0) {
      int saved = errno;
      ::close(fd_);
      errno = saved;
    }
    fd_ = fd;
  }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

 private:
  int fd_;
};

// One node of the plan at `path` inside the root. The node is made in its parent directory's fd (resolved
// inside the root) by name, with no lookup of its own; mknod's mode is cut by the umask, so the mode is
// set again afterwards. With `bind` an empty file gets the host's node bound onto it.
int makeDevice(int rootfsFd, const DeviceNode& node, const char* path, bool bind) {
  const char* name = nullptr;
  ChildFd parent(openParentInRoot(rootfsFd, path, &name));
  if (!parent) return -1;
  if (bind) {
    if (::mknodat(parent.get(), name, S_IFREG | 0644, 0) != 0) return -1;
    ChildFd target(openInRoot(rootfsFd, path, O_PATH));
    if (!target) return -1;
    return ::mount(node.hostPath.c_str(), FdPath(target.get()).c_str(), nullptr, MS_BIND, nullptr);
  }
  const mode_t type = node.type == DeviceType::Char ? S_IFCHR : S_IFBLK;
  if (::mknodat(parent.get(), name, type | (node.mode & 0777), ::makedev(node.major, node.minor)) != 0)
    return -1;
  if (::fchownat(parent.get(), name, node.uid, node.gid, AT_SYMLINK_NOFOLLOW) != 0) return -1;
  return ::fchmodat(parent.get(), name, node.mode & 0777, 0);
}

// The mount's target inside the root, made first if the plan says so (a directory, or an empty file for
// the bind of a file). Returns an O_PATH fd or -1.
int openTarget(int rootfsFd, const MountEntry& entry, const char* target) {
  switch (entry.create) {
    case MountTarget::Existing:
      return openInRoot(rootfsFd, target, O_PATH);
    case MountTarget::Directory:
      return makeDirectoriesInRoot(rootfsFd, target);
    case MountTarget::File:
      return makeFileInRoot(rootfsFd, target);
  }
  errno = EINVAL;
  return -1;
}

// The flags a bind takes only from a remount (mount(2) ignores them with MS_BIND).
constexpr unsigned long kBindRemountFlags =
    MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME | MS_STRICTATIME;

// A bind's remount with its own flags plus those the kernel locks on the source (nosuid, nodev, noexec,
// refused otherwise in a user namespace).
int remountBind(const char* path, unsigned long flags) {
  struct statvfs fs {};
  if (::statvfs(path, &fs) != 0) return -1;
  flags |= MS_REMOUNT | MS_BIND;
  if (fs.f_flag & ST_NOSUID) flags |= MS_NOSUID;
  if (fs.f_flag & ST_NODEV) flags |= MS_NODEV;
  if (fs.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
  return ::mount(nullptr, path, nullptr, flags, nullptr);
}

// One mount of the plan onto what `target` resolves to inside the root. The fd names the directory under
// the new mount, so the remount and propagation change look the target up again (inside the root) to
// reach the mount itself.
bool mountEntryInChild(int rootfsFd, const MountEntry& entry, const char* target, size_t index,
                       MountFailure* failure) {
  ChildFd at(openTarget(rootfsFd, entry, target));
  if (!at)
    return failWith(
        failure, entry.create == MountTarget::Existing ? MountStep::Mount : MountStep::CreateTarget, index);
  const char* source = entry.source.empty() ? nullptr : entry.source.c_str();
  const char* fstype = entry.fstype.empty() ? nullptr : entry.fstype.c_str();
  const char* data = entry.data.empty() ? nullptr : entry.data.c_str();
  const bool bind = (entry.flags & MS_BIND) != 0;
  const unsigned long flags = bind ? entry.flags & ~kBindRemountFlags : entry.flags;
  if (::mount(source, FdPath(at.get()).c_str(), fstype, flags, data) != 0)
    return failWith(failure, MountStep::Mount, index);
  const bool remount = bind && (entry.flags & kBindRemountFlags) != 0;
  if (!remount && entry.propagation == 0) return true;
  at.reset(openInRoot(rootfsFd, target, O_PATH));
  if (!at) return failWith(failure, remount ? MountStep::Remount : MountStep::Propagation, index);
  const FdPath mounted(at.get());
  if (remount && remountBind(mounted.c_str(), entry.flags & kBindRemountFlags) != 0)
    return failWith(failure, MountStep::Remount, index);
  if (entry.propagation != 0 && ::mount(nullptr, mounted.c_str(), nullptr, entry.propagation, nullptr) != 0)
    return failWith(failure, MountStep::Propagation, index);
  return true;
}

}  // namespace

bool enterRootfsInChild(const MountPlan& plan, int* rootfsFd, MountFailure* failure) {
  const MountEntry& priv = plan.makePrivate;
  if (::mount(nullptr, priv.hostTarget.c_str(), nullptr, priv.flags, nullptr) != 0) {
    return failWith(failure, MountStep::MakePrivate, 0);
  }
  const MountEntry& bind = plan.bindRootfs;
  if (::mount(bind.source.c_str(), bind.hostTarget.c_str(), nullptr, bind.flags, nullptr) != 0) {
    return failWith(failure, MountStep::BindRootfs, 0);
  }
  *rootfsFd = ::open(plan.rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (*rootfsFd < 0) return failWith(failure, MountStep::OpenRootfs, 0);
  return true;
}

bool applyMountPlanInChild(const MountPlan& plan, int rootfsFd, MountFailure* failure) {
  if (::fchdir(rootfsFd) != 0) return failWith(failure, MountStep::OpenRootfs, 0);
  for (size_t i = 0; i < plan.mounts.size(); ++i) {
    const MountEntry& entry = plan.mounts[i];
    if (!mountEntryInChild(rootfsFd, entry, relativeToRootfs(entry.hostTarget, plan), i, failure))
      return false;
  }
  for (size_t i = 0; i < plan.deviceDirectories.size(); ++i) {
    ChildFd dir(makeDirectoriesInRoot(rootfsFd, relativeToRootfs(plan.deviceDirectories[i].hostPath, plan)));
    if (!dir) return failWith(failure, MountStep::DeviceDirectory, i);
  }
  for (size_t i = 0; i < plan.devices.size(); ++i) {
    if (makeDevice(rootfsFd, plan.devices[i].node, relativeToRootfs(plan.devices[i].hostPath, plan),
                   plan.bindDevices) != 0)
      return failWith(failure, MountStep::MakeDevice, i);
  }
  for (size_t i = 0; i < plan.symlinks.size(); ++i) {
    const SymlinkEntry& link = plan.symlinks[i];
    const char* name = nullptr;
    ChildFd parent(openParentInRoot(rootfsFd, relativeToRootfs(link.hostPath, plan), &name));
    if (!parent || (::symlinkat(link.linkTarget.c_str(), parent.get(), name) != 0 && errno != EEXIST))
      return failWith(failure, MountStep::Symlink, i);
  }
  // The container's own /dev/null masks files: looked up in the root too (the host's in a user namespace,
  // where binding the bind of it is refused).
  ChildFd nullDevice;
  if (!plan.maskedPaths.empty() && insideRootfs(plan.nullDevice, plan)) {
    nullDevice.reset(openInRoot(rootfsFd, relativeToRootfs(plan.nullDevice, plan), O_PATH));
    if (!nullDevice) return failWith(failure, MountStep::MaskPath, 0);
  }
  const FdPath nullDevicePath(nullDevice.get());
  const char* nullSource = nullDevice ? nullDevicePath.c_str() : plan.nullDevice.c_str();
  for (size_t i = 0; i < plan.maskedPaths.size(); ++i) {
    ChildFd masked(openInRoot(rootfsFd, relativeToRootfs(plan.maskedPaths[i].hostPath, plan), O_PATH));
    if (!masked) {
      if (errno == ENOENT) continue;  // this kernel has no such file: nothing to hide
      return failWith(failure, MountStep::MaskPath, i);
    }
    struct stat st {};
    if (::fstat(masked.get(), &st) != 0) return failWith(failure, MountStep::MaskPath, i);
    const FdPath target(masked.get());
    int rc = S_ISDIR(st.st_mode)
                 ? ::mount("tmpfs", target.c_str(), "tmpfs", MS_RDONLY | kNoSuidDevExec, "size=0,mode=0555")
                 : ::mount(nullSource, target.c_str(), nullptr, MS_BIND, nullptr);
    if (rc != 0) return failWith(failure, MountStep::MaskPath, i);
  }
  for (size_t i = 0; i < plan.readOnlyPaths.size(); ++i) {
    const char* path = relativeToRootfs(plan.readOnlyPaths[i].hostPath, plan);
    ChildFd readOnly(openInRoot(rootfsFd, path, O_PATH));
    if (!readOnly) {
      if (errno == ENOENT) continue;
      return failWith(failure, MountStep::ReadOnlyPath, i);
    }
    const FdPath target(readOnly.get());
    if (::mount(target.c_str(), target.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0)
      return failWith(failure, MountStep::ReadOnlyPath, i);
    readOnly.reset(openInRoot(rootfsFd, path, O_PATH));  // the bind just made, not what it covers
    if (!readOnly || remountBind(FdPath(readOnly.get()).c_str(), MS_RDONLY) != 0)
      return failWith(failure, MountStep::ReadOnlyPath, i);
  }
  if (plan.readonlyRoot && remountBind(".", MS_RDONLY) != 0)
    return failWith(failure, MountStep::ReadOnlyRoot, 0);
  return true;
}

bool pivotRootInChild(MountFailure* failure) {
  // pivot_root(".", ".") stacks the old root on top of the new one; unmounting "." then removes it
  // (see pivot_root(2)), so no put_old directory is needed in the image.
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return failWith(failure, MountStep::PivotRoot, 0);
  if (::umount2(".", MNT_DETACH) != 0) return failWith(failure, MountStep::UnmountOldRoot, 0);
  if (::chdir("/") != 0) return failWith(failure, MountStep::PivotRoot, 0);
  return true;
}

}  // namespace corral::container
