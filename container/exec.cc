// execInContainer: a new process in a running container's namespaces and cgroup.
#include <fmt/format.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>

#include "container/caps.h"
#include "container/child.h"
#include "container/namespaces.h"
#include "container/runtime.h"
#include "container/sync.h"

namespace corral::container {

Result<pid_t> execInContainer(pid_t initPid, Cgroup& cgroup, const ContainerConfig& config,
                              const ExecOptions& options) {
  return execInContainer(initPid, cgroup, config, options, ExecExtras{});
}

Result<pid_t> execInContainer(pid_t initPid, Cgroup& cgroup, const ContainerConfig& config,
                              const ExecOptions& options, const ExecExtras& extras) {
  auto run = [&]() -> Result<pid_t> {
    if (initPid <= 0) return fail(invalidField("pid", "container init pid {} is not a process", initPid));
    if (auto ok = validateCommand(options.argv, options.env); !ok) return fail(ok.error());
    auto namespaces = openNamespacesFromParent(initPid, config.userNamespace.has_value());
    if (!namespaces) return fail(namespaces.error());
    auto capabilities = capabilityNumbers(config.capabilities);
    if (!capabilities) return fail(capabilities.error());
    std::optional<CapabilityNumbers> capabilitySets;
    if (config.bundle) {
      auto sets = capabilitySetNumbers(config.bundle->capabilities);
      if (!sets) return fail(sets.error());
      capabilitySets = std::move(*sets);
    }
    const std::string& workingDir = extras.workingDir ? *extras.workingDir : config.workingDir;
    if (workingDir.empty() || workingDir.front() != '/')
      return fail(invalidField("cwd", "\"{}\" is not an absolute path", workingDir));
    auto seccomp = compileSeccomp(config.seccomp);
    if (!seccomp) return fail(seccomp.error());
    ExecImage image = prepareExecImage(options.argv, mergeEnvironment(config.env, options.env));
    auto stdioFds = openStdio(options.stdio);
    if (!stdioFds) return fail(stdioFds.error());
    auto sync = makeSyncPair();
    if (!sync) return fail(sync.error());
    ChildStack stack;
    if (!stack.valid()) return fail(systemError(errno, "mmap(child stack)"));
    auto join = cgroup.openJoin();
    if (!join) return fail(join.error().wrap("cgroup"));

    ExecChildContext ctx;
    ctx.syncFd = sync->child.get();
    ctx.userNamespace = config.userNamespace.has_value();
    ctx.cgroupTaskFds = rawFds(join->taskFiles);
    ctx.namespaces = &*namespaces;
    ctx.workingDir = &workingDir;
    ctx.grandchildStack = &stack;
    ctx.lockdown = LockdownInput{sync->child.get(),
                                 {stdioFds->fds[0], stdioFds->fds[1], stdioFds->fds[2]},
                                 &*capabilities,
                                 &config.user,
                                 *seccomp ? &**seccomp : nullptr,
                                 &image};
    if (config.bundle) {
      ctx.lockdown.capabilitySets = &*capabilitySets;
      ctx.lockdown.noNewPrivileges = config.bundle->noNewPrivileges;
      ctx.lockdown.umask = config.bundle->umask ? static_cast<int>(*config.bundle->umask) : -1;
    }
    ctx.lockdown.preserveFds = extras.preserveFds;
    if (extras.console) ctx.lockdown.console = &*extras.console;

    ChildGuard intermediate;
    pid_t intermediatePid = -1;
    bool clonedIntoCgroup = false;
    if (join->directory) {
      intermediatePid = cloneIntoCgroup(0, join->directory.get());
      if (intermediatePid == 0) execIntermediateMain(ctx);
      if (intermediatePid < 0 && !cloneIntoCgroupUnavailable(errno)) {
        return fail(systemError(errno, fmt::format("clone3(CLONE_INTO_CGROUP \"{}\")", cgroup.path())));
      }
      clonedIntoCgroup = intermediatePid > 0;
    }
    if (intermediatePid < 0) {
      intermediatePid = ::fork();
      if (intermediatePid < 0) return fail(systemError(errno, "fork()"));
      if (intermediatePid == 0) execIntermediateMain(ctx);
    }
    intermediate.arm(intermediatePid);
    sync->child.reset();

    if (!clonedIntoCgroup && ctx.cgroupTaskFds.empty()) {
      if (auto ok = cgroup.addProcess(intermediatePid); !ok) return fail(ok.error().wrap("cgroup"));
    }
    if (auto ok = sendGo(sync->parent.get()); !ok) return fail(ok.error());
    auto outcome = readChildRecords(sync->parent.get());
    ChildGuard process;
    if (outcome && outcome->execPid > 0) process.arm(outcome->execPid);
    if (!outcome) return fail(outcome.error());
    if (outcome->failure) {
      const SyncRecord& record = *outcome->failure;
      return fail(systemError(record.errnum, childStepName(record.step, nullptr, record, image, &*namespaces,
                                                           *join, config.hostname, workingDir, config.user,
                                                           config.bundle ? &*config.bundle : nullptr)));
    }
    if (outcome->execPid <= 0) return fail(childVanished(intermediatePid));
    if (extras.consoleMaster != nullptr) *extras.consoleMaster = std::move(outcome->consoleMaster);
    if (!outcome->reachedExec) return fail(childVanished(outcome->execPid));
    // The intermediate has exited after reporting; reap it (the guard would kill an already dead process).
    while (::waitpid(intermediate.release(), nullptr, 0) < 0 && errno == EINTR) {
    }
    return process.release();
  };
  auto pid = run();
  if (!pid) return fail(pid.error().wrap(fmt::format("exec in container {}", config.name)));
  return pid;
}

}  // namespace corral::container
