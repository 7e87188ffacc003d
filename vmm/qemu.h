// The direct engine: corral runs QEMU itself, without libvirtd (whose virDomainCreateXML alone costs
// ~0.3-0.45 s per start: vmm/README.md "The direct engine"). Each VM has a run directory
// RUN_ROOT/HASH/ (16 hex digits of the domain name's FNV-1a: unix socket paths stay short) with QEMU's
// pidfile, two QMP sockets (commands; events) and domain.json (its name, instance, owner mark and uuid). QEMU
// runs in its own session, mount namespace (a private /dev) and cgroup (vmm/qemu_spawn.h, vm_cgroup.h) under
// its seccomp filter (qemu_argv.h), corrald's child until corrald ends (the
// engine reaps it; init does once corrald is gone), so it outlives corrald; a new engine object adopts
// every VM whose pidfile names a live QEMU started for that directory (/proc/PID/cmdline checked through a
// pidfd: never a recycled pid) and clears the directories of the rest. The tap is QEMU's own and goes with
// the process; an ended VM's directory is removed.
#pragma once

#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "vmm/hypervisor.h"
#include "vmm/qemu_spawn.h"
#include "vmm/vm_cgroup.h"

namespace corral::vmm {

struct QemuEngineOptions {
  std::filesystem::path runRoot;  // one directory per VM under it
  std::string binary = "qemu-system-x86_64";
  // Each VM's QEMU in a cgroup of its own (vmm/vm_cgroup.h), made before its exec and removed when it ends
  // or, at open, when no running VM has it. Null: QEMU stays in corrald's cgroup.
  std::shared_ptr<VmCgroups> cgroups = nullptr;
  // The user each QEMU runs as (set before its exec; QEMU's own -runas dies under its seccomp filter).
  // corral then opens the NIC's tap and passes it (-netdev tap,fd=), and gives the user the run directory,
  // the console log, the agent socket's directory and the disks. Absent: root.
  std::optional<QemuSpawn::User> user = std::nullopt;
};

class Qemu final : public Hypervisor {
 public:
  // Adopts the VMs running from runRoot (made at the first VM, removed with the last) (their stop events go
  // to onStopped from then on) and removes the directories and cgroups of VMs that are gone. onStopped runs
  // on a thread of the VM; keep it short.
  static Result<std::unique_ptr<Qemu>> open(QemuEngineOptions options,
                                            std::function<void(const DomainStopped&)> onStopped);
  ~Qemu() override;  // stops watching; the VMs keep running (the next engine adopts them)
  Qemu(const Qemu&) = delete;
  Qemu& operator=(const Qemu&) = delete;

  Engine engine() const override { return Engine::Qemu; }
  // Steps: "spawn" (the cgroup made, fork, namespace, exec) and "qmp" (until QEMU answers query-status on its
  // event monitor: its main loop runs, its devices are up, the tap exists).
  Result<DomainInfo> create(const DomainConfig& config, bool paused) override;
  Status resume(const std::string& name) override;                             // QMP cont
  Result<std::optional<DomainInfo>> lookup(const std::string& name) override;  // query-status
  Result<std::vector<DomainInfo>> listDomains(std::string_view prefix) override;
  // SIGKILL through the pidfd, then waits for the process to end and its directory to go.
  Status destroy(const std::string& name) override;
  Status shutdownAcpi(const std::string& name) override;  // QMP system_powerdown
  // QMP stop, migrate "exec:cat > FILE" (QEMU's migration stream, starting with "QEVM"), then quit; a
  // failed migration continues the CPUs. The stop event says Saved.
  Status saveToFile(const std::string& name, const std::filesystem::path& file) override;
  // A new QEMU with request.config and -incoming "exec:cat FILE"; steps "spawn", "qmp", "incoming" (until
  // the migration stream is loaded). A file QEMU cannot load ends that QEMU: an error with its log.
  Result<DomainInfo> restoreFromFile(const RestoreRequest& request) override;
  Result<std::string> hypervisorVersion() override;  // "QEMU 7.2.22 (direct)"

  struct Vm;

 private:
  explicit Qemu(QemuEngineOptions options, std::function<void(const DomainStopped&)> onStopped);
  Result<DomainInfo> launch(const DomainConfig& config, bool paused, bool incoming);
  // The adoption of one run directory: a live QEMU of that directory is watched, anything else removed.
  void adopt(const std::filesystem::path& runDir);
  std::shared_ptr<Vm> find(const std::string& name);
  void removeCgroup(const std::string& name);  // logged when it fails
  Result<DomainInfo> describe(const std::shared_ptr<Vm>& vm);
  void watch(const std::shared_ptr<Vm>& vm);

  QemuEngineOptions options_;
  std::function<void(const DomainStopped&)> onStopped_;
  std::mutex mutex_;  // guards vms_ and watchers_
  std::map<std::string, std::shared_ptr<Vm>, std::less<>> vms_;
  // The watcher threads still running (detached; each counts itself out): the destructor waits for none.
  int watchers_ = 0;
  std::condition_variable watchersDone_;
};

}  // namespace corral::vmm
