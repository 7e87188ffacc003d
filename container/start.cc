// startContainer: the parent's side of starting a container (overlay, cgroup, clone, id maps, the
// caller's hook, "go"), each host-side effect with its undo, and RunningContainer.
#include <fcntl.h>
#include <fmt/format.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <optional>
#include <utility>

#include "container/bundle.h"
#include "container/caps.h"
#include "container/child.h"
#include "container/namespaces.h"
#include "container/runtime.h"
#include "container/sync.h"
#include "core/failpoint.h"
#include "core/log.h"
#include "core/rollback.h"

namespace corral::container {
namespace {

std::chrono::microseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start);
}

Status validateConfig(const ContainerConfig& config) {
  if (config.name.empty()) return fail(invalidField("name", "name is empty"));
  if (auto ok = validateCommand(config.argv, config.env); !ok) return ok;
  const std::string& hostname = config.hostname.empty() ? config.name : config.hostname;
  if (hostname.size() > HOST_NAME_MAX) {
    return fail(
        invalidField("hostname", "hostname \"{}\" is longer than {} characters", hostname, HOST_NAME_MAX));
  }
  if (!config.initBinary.empty() && !config.initBinary.is_absolute()) {
    return fail(
        invalidField("init", "the init binary \"{}\" is not an absolute path", config.initBinary.string()));
  }
  if (config.workingDir.empty() || config.workingDir.front() != '/') {
    return fail(invalidField("working_dir", "working_dir \"{}\" is not an absolute path", config.workingDir));
  }
  if (config.userNamespace) {
    const IdMapping& map = *config.userNamespace;
    for (auto [name, ranges] : {std::pair{"uid", &map.uids}, {"gid", &map.gids}}) {
      if (auto problem = findIdMapProblem(*ranges)) {
        const std::string field = fmt::format("user_namespace.{}s[{}]{}", name, problem->index,
                                              problem->field.empty() ? "" : "." + problem->field);
        return fail(invalidField(field, "{}: {}", field, problem->reason));
      }
    }
    auto root = map.hostRoot();
    if (!root) return fail(root.error());
    // Host root behind a container id would make that id root outside.
    for (size_t i = 0; i < map.uids.size(); ++i) {
      if (map.uids[i].hostId == 0)
        return fail(invalidField(fmt::format("user_namespace.uids[{}].hostID", i),
                                 "user_namespace: container uid {} would be host uid 0, root outside",
                                 map.uids[i].containerId));
    }
  }
  // Ids without a mapping would fail at setresuid with a bare EINVAL; say which.
  if (config.userNamespace) {
    const IdMapping& map = *config.userNamespace;
    if (!map.hostUid(config.user.uid))
      return fail(
          invalidField("user", "uid {} is not mapped in the container's user namespace", config.user.uid));
    std::vector<gid_t> gids = {config.user.gid};
    gids.insert(gids.end(), config.user.additionalGids.begin(), config.user.additionalGids.end());
    for (gid_t gid : gids) {
      if (!map.hostGid(gid))
        return fail(invalidField("user", "gid {} is not mapped in the container's user namespace", gid));
    }
  } else {
    std::vector<uint64_t> ids = {config.user.uid, config.user.gid};
    ids.insert(ids.end(), config.user.additionalGids.begin(), config.user.additionalGids.end());
    for (uint64_t id : ids) {
      if (id >= UINT32_MAX) return fail(invalidField("user", "id {} is not an id", id));
    }
  }
  if (config.bundle) return {};  // the root is the bundle's (checked by its plan)
  if (config.lowerDirs.empty()) return fail(invalidField("lower_dirs", "no layers: the root needs one"));
  for (size_t i = 0; i < config.lowerDirs.size(); ++i) {
    struct stat st {};
    const std::string path = config.lowerDirs[i].string();
    if (::stat(path.c_str(), &st) != 0)
      return fail(systemError(errno, fmt::format("lower_dirs[{}]: stat(\"{}\")", i, path)));
    if (!S_ISDIR(st.st_mode))
      return fail(invalidField(fmt::format("lower_dirs[{}]", i), "\"{}\" is not a directory", path));
  }
  return {};
}

std::string cloneFlagText(int flags) {
  static constexpr std::pair<int, const char*> kNames[] = {
      {CLONE_NEWUSER, "CLONE_NEWUSER"},    {CLONE_NEWPID, "CLONE_NEWPID"}, {CLONE_NEWNS, "CLONE_NEWNS"},
      {CLONE_NEWUTS, "CLONE_NEWUTS"},      {CLONE_NEWIPC, "CLONE_NEWIPC"}, {CLONE_NEWNET, "CLONE_NEWNET"},
      {CLONE_NEWCGROUP, "CLONE_NEWCGROUP"}};
  std::string text;
  for (const auto& [bit, name] : kNames) {
    if ((flags & bit) == 0) continue;
    if (!text.empty()) text += '|';
    text += name;
  }
  return text.empty() ? "0" : text;
}

// An OCI process's rlimits and OOM score, set on the child before it may continue (it runs nothing of
// its own yet). Raising a hard limit needs CAP_SYS_RESOURCE, as for runc and crun.
Status applyProcessLimitsFromParent(pid_t pid, const BundleSetup& bundle) {
  for (const ProcessRlimit& limit : bundle.rlimits) {
    struct rlimit64 value {
      limit.soft, limit.hard
    };
    if (::prlimit64(pid, static_cast<__rlimit_resource>(limit.resource), &value, nullptr) != 0)
      return fail(systemError(errno, fmt::format("process.rlimits: prlimit({}, {}, soft {}, hard {})", pid,
                                                 limit.name, limit.soft, limit.hard)));
  }
  if (bundle.oomScoreAdj) {
    const std::string path = fmt::format("/proc/{}/oom_score_adj", pid);
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    const std::string value = std::to_string(*bundle.oomScoreAdj);
    if (!fd || ::write(fd.get(), value.data(), value.size()) < 0)
      return fail(systemError(errno, fmt::format("process.oomScoreAdj: write(\"{}\", \"{}\")", path, value)));
  }
  return {};
}

using FinishStart = Result<RunningContainer> (*)(pid_t, UniqueFd, std::unique_ptr<Cgroup>,
                                                 std::filesystem::path, StartTimings, UniqueFd);

// Everything is allocated up front; the child only reads it. The clone is clone(2) with its own stack
// rather than fork + unshare: unshare(CLONE_NEWPID) only affects later children (a second fork would be
// needed for pid 1), whereas clone makes the child pid 1 of its new pid namespace directly and hands the
// parent its host pid. On v2 it is clone3 with CLONE_INTO_CGROUP instead; on v1 (hybrid hosts too) the
// child joins each hierarchy itself after "go" (see CgroupJoin), so the cgroup namespace is unshared by
// the child then instead of being a clone flag.
Result<RunningContainer> startContainerSteps(const ContainerConfig& config, const Stdio& stdio,
                                             const ParentHook& beforeStart, const ParentHook& beforePivotRoot,
                                             FinishStart finish) {
  if (auto ok = validateConfig(config); !ok) return fail(ok.error());
  const std::string hostname = config.hostname.empty() ? config.name : config.hostname;
  auto mode = detectCgroupMode(config.cgroupOptions.root);
  if (!mode) return fail(mode.error().wrap("cgroup"));

  MountPlanInput planInput;
  planInput.lowerDirs = config.lowerDirs;
  planInput.bundleDir = config.bundleDir;
  planInput.userNamespace = config.userNamespace.has_value();
  planInput.ttyGroupMapped = config.userNamespace && config.userNamespace->hostGid(5).has_value();
  planInput.cgroup2 = *mode == CgroupMode::Unified;
  if (!planInput.cgroup2 && !planInput.userNamespace) {
    auto hierarchies = hostCgroupHierarchies();
    if (!hierarchies) return fail(hierarchies.error().wrap("cgroup"));
    planInput.cgroupV1Hierarchies = std::move(*hierarchies);
  }
  planInput.hostname = hostname;
  planInput.ipAddress = config.ipAddress;
  planInput.nameservers = config.nameservers;
  planInput.searchDomains = config.searchDomains;
  planInput.devices = config.devices;
  planInput.initBinary = config.initBinary.string();
  const BundleSetup* bundle = config.bundle ? &*config.bundle : nullptr;
  if (bundle) planInput.bundleRoot = bundle->root;
  auto plan = buildMountPlan(planInput);
  if (!plan) return fail(plan.error());
  auto capabilities = capabilityNumbers(config.capabilities);
  if (!capabilities) return fail(capabilities.error());
  std::optional<CapabilityNumbers> capabilitySets;
  if (bundle) {
    auto sets = capabilitySetNumbers(bundle->capabilities);
    if (!sets) return fail(sets.error());
    capabilitySets = std::move(*sets);
  }
  // An OCI bundle's namespaces to join, opened now so a bad path fails here, naming it.
  std::vector<UniqueFd> joinFds;
  if (bundle) {
    for (const NamespacePath& join : bundle->joins) {
      UniqueFd nsFd(::open(join.path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!nsFd) return fail(systemError(errno, fmt::format("open(namespace \"{}\")", join.path)));
      joinFds.push_back(std::move(nsFd));
    }
  }
  // A user namespace to join: opened now too; its maps were read by checkBundleOnHost.
  UniqueFd joinUser;
  if (bundle && !bundle->userNamespacePath.empty()) {
    joinUser.reset(::open(bundle->userNamespacePath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!joinUser)
      return fail(systemError(errno, fmt::format("open(namespace \"{}\")", bundle->userNamespacePath)));
  }
  UniqueFd joinPid, ownPid;
  if (bundle && !bundle->pidNamespacePath.empty()) {
    joinPid.reset(::open(bundle->pidNamespacePath.c_str(), O_RDONLY | O_CLOEXEC));
    if (!joinPid)
      return fail(systemError(errno, fmt::format("open(namespace \"{}\")", bundle->pidNamespacePath)));
    ownPid.reset(::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC));
    if (!ownPid) return fail(systemError(errno, "open(\"/proc/self/ns/pid\")"));
  }
  // A time namespace, new or joined, is made the one our next child is born in; ownTime takes us back.
  UniqueFd joinTime, ownTime;
  if (bundle && (bundle->newTimeNamespace || !bundle->timeNamespacePath.empty())) {
    if (!bundle->timeNamespacePath.empty()) {
      joinTime.reset(::open(bundle->timeNamespacePath.c_str(), O_RDONLY | O_CLOEXEC));
      if (!joinTime)
        return fail(systemError(errno, fmt::format("open(namespace \"{}\")", bundle->timeNamespacePath)));
    }
    ownTime.reset(::open("/proc/self/ns/time", O_RDONLY | O_CLOEXEC));
    if (!ownTime)
      return fail(systemError(
          errno, "open(\"/proc/self/ns/time\"): the kernel has no time namespaces (CONFIG_TIME_NS)"));
  }
  UniqueFd execFifo;
  std::string execFifoPath;
  if (bundle && !bundle->execFifo.empty()) {
    execFifo.reset(::open(bundle->execFifo.c_str(), O_PATH | O_CLOEXEC));
    if (!execFifo)
      return fail(systemError(errno, fmt::format("open(\"{}\", O_PATH)", bundle->execFifo.string())));
    execFifoPath = fmt::format("/proc/self/fd/{}", execFifo.get());
  }
  auto seccomp = compileSeccomp(config.seccomp);
  if (!seccomp) return fail(seccomp.error());
  ExecImage image = prepareExecImage(initArgv(config), config.env);
  auto stdioFds = openStdio(stdio);
  if (!stdioFds) return fail(stdioFds.error());
  auto sync = makeSyncPair();
  if (!sync) return fail(sync.error());
  ChildStack stack;
  if (!stack.valid()) return fail(systemError(errno, "mmap(child stack)"));
  StartTimings timings;

  // Host-side effects from here on, each with its undo. Destruction runs bottom-up: the child is killed
  // and reaped before its cgroup is removed, and the overlay is unmounted last.
  auto rootfsStart = Clock::now();
  std::error_code existsError;
  const bool bundleExisted = std::filesystem::exists(config.bundleDir, existsError);
  Rollback removeCreatedBundle([&] {
    if (bundleExisted) return;
    std::error_code ec;
    std::filesystem::remove_all(config.bundleDir, ec);
  });
  if (bundle) removeCreatedBundle.dismiss();  // the bundle is the caller's: nothing of ours to remove
  if (!bundle) {
    if (auto ok = mountOverlayFromParent(*plan, config); !ok) return fail(ok.error().wrap("rootfs"));
  }
  Rollback unmountOverlay([&] {
    if (!bundle) ::umount2(plan->rootfs.c_str(), MNT_DETACH);
  });
  CORRAL_FAILPOINT("container.after-mount");
  UniqueFd overlay;  // closing it before the child has attached it unmounts it for good
  if (!bundle) {
    if (auto ok = prepareRootfsFromParent(*plan, config); !ok) return fail(ok.error().wrap("rootfs"));
    auto detached = detachOverlayFromParent(*plan);
    if (!detached) return fail(detached.error().wrap("rootfs"));
    overlay = std::move(*detached);
  }
  auto parentRootfs = since(rootfsStart);

  auto cgroupStart = Clock::now();
  std::vector<DeviceRule> deviceRules = defaultDeviceRules();
  for (const DeviceNode& node : config.devices) deviceRules.push_back(deviceNodeRule(node));
  if (bundle) deviceRules = bundle->deviceRules;
  auto cgroup = createCgroup(*mode, config.name, config.limits, config.cgroupOptions, deviceRules);
  if (!cgroup) return fail(cgroup.error().wrap("cgroup"));
  CORRAL_FAILPOINT("container.after-cgroup");
  auto join = (*cgroup)->openJoin();
  if (!join) return fail(join.error().wrap("cgroup"));
  timings.cgroup = since(cgroupStart);

  InitChildContext ctx;
  ctx.syncFd = sync->child.get();
  ctx.parentSyncFd = sync->parent.get();
  ctx.userNamespace = config.userNamespace.has_value();
  ctx.cgroupTaskFds = rawFds(join->taskFiles);
  ctx.plan = &*plan;
  ctx.overlayFd = overlay.get();
  ctx.hostname = &hostname;
  ctx.workingDir = &config.workingDir;
  ctx.lockdown = LockdownInput{sync->child.get(),
                               {stdioFds->fds[0], stdioFds->fds[1], stdioFds->fds[2]},
                               &*capabilities,
                               &config.user,
                               *seccomp ? &**seccomp : nullptr,
                               &image};
  int cloneFlags = containerCloneFlags(ctx.userNamespace);
  if (bundle) {
    cloneFlags = bundle->cloneFlags;
    ctx.unshareCgroup = bundle->cgroupNamespace;
    ctx.setHostname = bundle->setHostname;
    ctx.bringUpLoopback = (bundle->cloneFlags & CLONE_NEWNET) != 0;
    ctx.bundle = bundle;
    ctx.joinFds = rawFds(joinFds);
    ctx.lockdown.capabilitySets = &*capabilitySets;
    ctx.lockdown.noNewPrivileges = bundle->noNewPrivileges;
    ctx.lockdown.umask = bundle->umask ? static_cast<int>(*bundle->umask) : -1;
    ctx.lockdown.execFifoPath = execFifo ? execFifoPath.c_str() : nullptr;
    ctx.lockdown.preserveFds = bundle->preserveFds;
  }
  ctx.waitBeforePivotRoot = static_cast<bool>(beforePivotRoot);
  if (config.console) {
    ctx.lockdown.console = &*config.console;
    ctx.lockdown.bindDevConsole = true;
  }

  // Before the guard: a child left waiting is killed first, which lets the cloning thread return.
  SharedMemoryClone sharedClone;
  ChildGuard child;
  auto cloneStart = Clock::now();
  const std::string cloneFlagNames = cloneFlagText(cloneFlags);
  pid_t pid = -1;
  bool clonedIntoCgroup = false;
  // An existing pid namespace is the one our next child is born in (pid_for_children), ours again after.
  if (joinPid && ::setns(joinPid.get(), CLONE_NEWPID) != 0)
    return fail(systemError(errno, fmt::format("setns(\"{}\", CLONE_NEWPID)", bundle->pidNamespacePath)));
  Rollback leavePidNamespace([&] {
    if (ownPid) ::setns(ownPid.get(), CLONE_NEWPID);
  });
  if (joinTime && ::setns(joinTime.get(), CLONE_NEWTIME) != 0)
    return fail(systemError(errno, fmt::format("setns(\"{}\", CLONE_NEWTIME)", bundle->timeNamespacePath)));
  Rollback leaveTimeNamespace([&] {
    if (ownTime) (void)leaveTimeNamespaceFromParent(ownTime.get());
  });
  if (bundle && bundle->newTimeNamespace) {
    if (auto ok = unshareTimeNamespaceFromParent(bundle->monotonicOffset, bundle->boottimeOffset); !ok)
      return fail(ok.error().wrap("time namespace"));
  }
  UniqueFd pidfd;
  if (joinUser) {
    // Through an intermediate that joins the user namespace and clones init (its sibling) from there.
    ChildGuard intermediate;
    pid_t intermediatePid = -1;
    if (join->directory) {
      intermediatePid = cloneIntoCgroup(0, join->directory.get());
      if (intermediatePid == 0) joinUserNamespaceThenCloneInit(ctx, joinUser.get(), cloneFlags);
      if (intermediatePid < 0 && !cloneIntoCgroupUnavailable(errno))
        return fail(systemError(errno, fmt::format("clone3(CLONE_INTO_CGROUP \"{}\")", (*cgroup)->path())));
      clonedIntoCgroup = intermediatePid > 0;
    }
    if (intermediatePid < 0) {
      intermediatePid = ::fork();
      if (intermediatePid < 0) return fail(systemError(errno, "fork()"));
      if (intermediatePid == 0) joinUserNamespaceThenCloneInit(ctx, joinUser.get(), cloneFlags);
    }
    intermediate.arm(intermediatePid);
    sync->child.reset();  // the intermediate's copy closing tells us it died without a word
    auto report = readChildRecords(sync->parent.get());
    if (!report) return fail(report.error());
    if (report->failure) {
      const SyncRecord& record = *report->failure;
      return fail(
          systemError(record.errnum, childStepName(record.step, &*plan, record, image, nullptr, *join,
                                                   hostname, config.workingDir, config.user, bundle)));
    }
    if (!report->initPidfd) return fail(childVanished(intermediatePid));
    pidfd = std::move(report->initPidfd);
    pid = pidOfPidfd(pidfd.get());
    if (pid <= 0) {
      ::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
      return fail(internalError("init's pid from its pidfd (/proc/self/fdinfo/{})", pidfd.get()));
    }
    while (::waitpid(intermediate.release(), nullptr, 0) < 0 && errno == EINTR) {
    }
  }
  if (pid < 0 && join->directory) {
    pid = cloneIntoCgroup(static_cast<uint64_t>(cloneFlags), join->directory.get());
    if (pid == 0) ::_exit(containerInitMain(&ctx));
    if (pid < 0 && !cloneIntoCgroupUnavailable(errno)) {
      return fail(systemError(
          errno, fmt::format("clone3({}|CLONE_INTO_CGROUP \"{}\")", cloneFlagNames, (*cgroup)->path())));
    }
    clonedIntoCgroup = pid > 0;
  }
  if (pid < 0) {
    ctx.stack = &stack;
    // An OCI bundle's init may wait on its exec fifo after we return, and its oom_score_adj is written
    // from here: it gets a copy of our memory (corral-runtime's is small anyway).
    if (SharedMemoryClone::kAvailable && !bundle) {
      pid = sharedClone.start(containerInitMain, &ctx, stack, cloneFlags);
      if (pid < 0)
        return fail(systemError(errno, fmt::format("clone(CLONE_VM|CLONE_VFORK|{})", cloneFlagNames)));
    } else {
      pid = ::clone(containerInitMain, stack.top(), cloneFlags | SIGCHLD, &ctx);
      if (pid < 0) return fail(systemError(errno, fmt::format("clone({})", cloneFlagNames)));
    }
  }
  leavePidNamespace.run();
  leaveTimeNamespace.dismiss();
  Status backInOwnTime = ownTime ? leaveTimeNamespaceFromParent(ownTime.get()) : Status{};
  timings.clone = since(cloneStart);
  if (!pidfd) pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  child.arm(pid);
  if (!pidfd) return fail(systemError(errno, fmt::format("pidfd_open({})", pid)));
  if (!backInOwnTime) return fail(backInOwnTime.error().wrap("time namespace"));
  sync->child.reset();  // only the child holds its end now, so its execve or exit reads as EOF

  if (config.userNamespace && !joinUser) {
    if (auto ok = writeIdMapsFromParent(pid, *config.userNamespace, !config.user.additionalGids.empty());
        !ok) {
      return fail(ok.error().wrap("user namespace"));
    }
  }
  if (!clonedIntoCgroup && ctx.cgroupTaskFds.empty()) {
    // No way for the child to join by itself (a v2 kernel without CLONE_INTO_CGROUP).
    auto joinStart = Clock::now();
    if (auto ok = (*cgroup)->addProcess(pid); !ok) return fail(ok.error().wrap("cgroup"));
    timings.cgroup += since(joinStart);
  }

  if (bundle) {
    if (auto ok = applyProcessLimitsFromParent(pid, *bundle); !ok) return fail(ok.error());
  }
  auto hookStart = Clock::now();
  if (beforeStart) {
    if (auto ok = beforeStart(pid); !ok) return fail(ok.error());
  }
  timings.network = since(hookStart);

  CORRAL_FAILPOINT("container.after-clone");
  auto goTime = Clock::now();
  if (auto ok = sendGo(sync->parent.get()); !ok) return fail(ok.error());
  auto outcome = readChildRecords(sync->parent.get());
  if (!outcome) return fail(outcome.error());
  if (outcome->mountsReady && !outcome->failure) {
    if (auto ok = beforePivotRoot(pid); !ok) return fail(ok.error());
    if (auto ok = sendGo(sync->parent.get()); !ok) return fail(ok.error());
    auto rest = readChildRecords(sync->parent.get());
    if (!rest) return fail(rest.error());
    rest->cgroupJoined = outcome->cgroupJoined;
    outcome = std::move(rest);
  }
  if (outcome->failure) {
    const SyncRecord& record = *outcome->failure;
    return fail(systemError(record.errnum, childStepName(record.step, &*plan, record, image, nullptr, *join,
                                                         hostname, config.workingDir, config.user, bundle)));
  }
  const bool waiting = outcome->waitingForStart && execFifo;
  if (!outcome->reachedExec && !waiting) return fail(childVanished(pid));
  CORRAL_FAILPOINT("container.after-exec");
  auto joinedAt = outcome->cgroupJoined.value_or(goTime);
  timings.cgroup += std::chrono::duration_cast<std::chrono::microseconds>(joinedAt - goTime);
  auto readyAt = outcome->rootfsReady.value_or(joinedAt);
  timings.rootfs = parentRootfs + std::chrono::duration_cast<std::chrono::microseconds>(readyAt - joinedAt);
  timings.exec = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - readyAt);

  auto result =
      finish(child.release(), std::move(pidfd), std::move(*cgroup),
             bundle ? std::filesystem::path() : config.bundleDir, timings, std::move(outcome->consoleMaster));
  unmountOverlay.dismiss();
  removeCreatedBundle.dismiss();
  return result;
}

}  // namespace

Result<RunningContainer> startContainer(const ContainerConfig& config, const Stdio& stdio,
                                        const ParentHook& beforeStart, const ParentHook& beforePivotRoot) {
  auto finish = [](pid_t pid, UniqueFd pidfd, std::unique_ptr<Cgroup> cgroup, std::filesystem::path bundleDir,
                   StartTimings timings, UniqueFd console) -> Result<RunningContainer> {
    RunningContainer container;
    container.pid_ = pid;
    container.pidfd_ = std::move(pidfd);
    container.cgroup_ = std::move(cgroup);
    container.bundleDir_ = std::move(bundleDir);
    container.timings_ = timings;
    container.console_ = std::move(console);
    return container;
  };
  auto started = startContainerSteps(config, stdio, beforeStart, beforePivotRoot, finish);
  if (!started) return fail(started.error().wrap(fmt::format("start container {}", config.name)));
  return started;
}

void RunningContainer::release() {
  released_ = true;
  if (cgroup_) cgroup_->release();
}

RunningContainer::~RunningContainer() {
  if (released_ || !cgroup_) return;  // released, or moved from (the cgroup went with the move)
  // Through the pidfd: the caller may have reaped the pid already, and then it may be someone else's.
  if (pidfd_) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  while (pid_ > 0 && ::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  // Killing init takes its pid namespace down; exec'd processes of ours may still be dying in the group.
  if (auto ok = cgroup_->killAll(); !ok) log::warn("container {}: {}", pid_, ok.error().message());
  if (auto ok = cgroup_->destroy(); !ok) log::warn("container {}: {}", pid_, ok.error().message());
  if (!bundleDir_.empty()) {
    if (auto ok = removeBundle(bundleDir_); !ok) log::warn("container {}: {}", pid_, ok.error().message());
  }
}

}  // namespace corral::container
