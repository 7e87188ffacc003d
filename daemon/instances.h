// The daemon's instances (containers): running, supervising by pidfd, stopping, restarting, removing,
// exec and logs, with every state change written to the store. Containers outlive corrald: after a restart
// the manager reattaches to the ones still running (same pid and start time) by pidfd and cgroup name.
//
// The JSON of every instance call (the CLI relies on it exactly) is documented once, in docs/api.md
// ("Instances"); a crash of corrald at any point is reconciled by load() (docs/api.md, "Crash safety").
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "container/cgroup.h"
#include "container/id_ranges.h"
#include "container/runtime.h"
#include "container/spec.h"
#include "core/error.h"
#include "core/rollback.h"
#include "core/unique_fd.h"
#include "daemon/lifecycle.h"
#include "daemon/network.h"
#include "daemon/store.h"
#include "daemon/vm_spec.h"
#include "vmm/accel.h"
#include "vmm/agent.h"
#include "vmm/libvirt.h"

namespace corral::daemon {

struct InstanceOptions {
  std::filesystem::path imageDir = "/var/lib/corral/images";
  std::filesystem::path containersDir = "/var/lib/corral/containers";
  container::CgroupOptions cgroupOptions;
  // VMs
  std::filesystem::path vmsDir = "/var/lib/corral/vms";  // per VM: console.log, agent.sock
  std::string libvirtUri = "qemu:///system";
  std::string domainPrefix = "corral-";  // this daemon's libvirt domains are PREFIX + instance name
  std::string accelerator = "auto";      // auto | kvm | tcg
  std::filesystem::path acceleratorCache = "/run/corral/accelerator.json";  // auto's probe result, per boot
  std::chrono::milliseconds vmBootTimeout{90'000};
  std::chrono::milliseconds kvmProbeTimeout{15'000};
  std::filesystem::path reaperPath{};  // corral-reaper, bound into containers run with --init
  // Containers with a user namespace: the pool of host ids is the `corral` entry of these (see id_ranges.h).
  std::filesystem::path subuidFile = "/etc/subuid";
  std::filesystem::path subgidFile = "/etc/subgid";
  // The OCI image store (`<state dir>/images`, daemon/vm_image.h): VMs of its images boot their disks.
  std::shared_ptr<images::ImageStore> imageStore = nullptr;
};

// The accelerator VMs get, and why; "probing" while the KVM probe boot runs.
struct AcceleratorStatus {
  std::string state = "unknown";  // unknown | probing | decided
  std::optional<vmm::AcceleratorChoice> choice;
};

// Field 22 of /proc/PID/stat (start time in clock ticks since boot); nullopt when the process is gone.
std::optional<int64_t> processStartTime(pid_t pid);

// The row of an instance whose end corrald did not see: stopped, reason "lost", exit status unknown, `note`
// saying why. The caller saves it.
void markLost(InstanceRow& row, std::string note);

// A VM's guest agent connection; one request at a time. `ready` is set once the guest said so.
struct VmSession {
  std::mutex mutex;
  std::optional<vmm::AgentClient> agent;
};

class InstanceManager {
 public:
  // Loads the stored instances and reattaches to the running ones (or records them as lost).
  // `network` (may be null: no networking) learns the stored instances' NICs.
  static Result<std::unique_ptr<InstanceManager>> load(Store& store, InstanceOptions options,
                                                       NetworkController* network = nullptr);
  InstanceManager(Store& store, InstanceOptions options, NetworkController* network = nullptr);
  ~InstanceManager();  // stops supervising; the containers keep running
  InstanceManager(const InstanceManager&) = delete;
  InstanceManager& operator=(const InstanceManager&) = delete;

  Result<nlohmann::json> run(const schema::InstanceSpec& spec);
  nlohmann::json list();
  Result<nlohmann::json> get(const std::string& name);
  Result<nlohmann::json> stop(const std::string& name, int64_t graceSeconds);
  Result<nlohmann::json> start(const std::string& name);
  Result<nlohmann::json> remove(const std::string& name, bool force);
  Result<nlohmann::json> logs(const std::string& name, int64_t offset);
  Result<nlohmann::json> exec(const std::string& name, const std::vector<std::string>& command,
                              const std::vector<std::string>& env);

  size_t count();
  const InstanceOptions& options() const { return options_; }
  // After the network was reconciled at startup: running containers whose NIC went missing (their VPC's
  // namespace was recreated) get a new one; VMs cannot (QEMU's tap is gone) and are logged.
  void replugNics();
  AcceleratorStatus acceleratorStatus();
  // Whether libvirtd answers, and its version or what to do about it (for `corral info`).
  Result<std::string> hypervisorVersion();

 private:
  struct Instance {
    InstanceRow row;
    schema::InstanceSpec spec;
    std::optional<container::ContainerConfig> config;  // absent when the spec no longer validates
    std::shared_ptr<container::Cgroup> cgroup;         // while running
    std::shared_ptr<UniqueFd> pidfd;                   // while running
    bool ourChild = false;                             // false after a daemon restart: no waitpid
    // A stop or forced remove working on it without the lock (stopping, removing): what the transition
    // table sees instead of row.state (the settled state, stored and shown) until that request ends.
    std::optional<InstanceState> inProgress;
    InstanceState state() const { return inProgress.value_or(row.state); }
    // Its end was asked for (a stop or a forced remove): the exit is recorded as "stopped".
    bool stopAsked() const {
      return inProgress == InstanceState::stopping || inProgress == InstanceState::removing;
    }
    // VMs only
    std::optional<VmPlan> vmPlan;   // absent when the spec no longer validates
    std::shared_ptr<VmSession> vm;  // while starting or running
  };

  // Holds `instance` in the in-progress state of `action` (daemon/lifecycle.h) until the returned guard
  // ends, taking `lock` back first if it was released meanwhile.
  Rollback holdInProgress(std::unique_lock<std::mutex>& lock, Instance& instance, InstanceAction action);
  Status reattach(Instance& instance);
  // What corrald may leave of a container when it dies mid-way (core/failpoint.h names the points): the
  // processes in its cgroups, the cgroups, the overlay at its rootfs. Removes them all; says what it found
  // ("" when nothing).
  Result<std::string> clearContainerLeftovers(const std::string& name);
  // At load, for a container that is not running: its leftovers cleared, an interrupted start rolled back.
  void rollBackContainer(Instance& instance);
  // Reads the cgroup OOM-kill count of every running container; a rise is logged and stored.
  void checkOomKills();
  // VMs (daemon/instances_vm.cc)
  Result<vmm::Libvirt*> libvirt();
  Result<vmm::AcceleratorChoice> accelerator(const VmPlan& plan);
  std::optional<vmm::AcceleratorChoice> cachedAcceleratorChoice(const VmPlan& plan);
  Result<nlohmann::json> startVmLocked(Instance& instance, std::chrono::steady_clock::time_point received,
                                       const vmm::AcceleratorChoice& accelerator);
  Result<vmm::AcceleratorChoice> acceleratorFor(const schema::InstanceSpec& spec);
  void startBootWaiter(const std::string& name, std::shared_ptr<VmSession> session,
                       std::chrono::steady_clock::time_point received,
                       std::chrono::steady_clock::time_point domainStarted);
  void waitForGuest(std::string name, std::shared_ptr<VmSession> session,
                    std::chrono::steady_clock::time_point received,
                    std::chrono::steady_clock::time_point domainStarted);
  // `reason` is replaced by "stopped" when a stop was asked, unless `reasonStands` (a boot timeout).
  void recordVmExit(Instance& instance, std::string reason, std::optional<std::string> note,
                    bool reasonStands = false);
  void reattachVm(Instance& instance);
  void reconcileDomains();
  // rm of a VM that is not active: its domain, should a crash have left one running, is destroyed.
  Status destroyLeftoverDomain(const std::string& instanceName);
  void handleDomainEvents();
  Result<nlohmann::json> stopVm(std::unique_lock<std::mutex>& lock, Instance& instance, int64_t graceSeconds);
  Result<nlohmann::json> execVm(std::unique_lock<std::mutex>& lock, Instance& instance,
                                const std::vector<std::string>& command, const std::vector<std::string>& env);
  std::string domainName(const std::string& instanceName) const {
    return options_.domainPrefix + instanceName;
  }
  std::filesystem::path instanceDir(const Instance& instance) const;
  std::string consoleTail(const std::string& logPath, size_t lines) const;
  Result<nlohmann::json> startLocked(std::unique_lock<std::mutex>& lock, Instance& instance,
                                     std::chrono::steady_clock::time_point received);
  void recordExit(Instance& instance);
  // The end every stop shares (a container's exit, a VM's power-off): the row says stopped, why and
  // when, the NIC leaves its bridge; an instance run with --rm is then forgotten with its files, any
  // other is saved.
  void recordStopped(Instance& instance, const std::string& reason, std::optional<int64_t> code,
                     std::optional<int64_t> signal, std::optional<std::string> note);
  void supervise();
  void wakeSupervisor();
  Status waitStopped(std::unique_lock<std::mutex>& lock, const std::string& name,
                     std::chrono::milliseconds timeout);
  nlohmann::json render(const Instance& instance) const;
  nlohmann::json networkJson(const Instance& instance) const;  // "network" of render(): null without a NIC
  // With the instance's host id range when it has one (user namespaces).
  container::ValidationContext validationContext(const InstanceRow* row = nullptr) const;
  // A container with a user namespace gets its host id range once (run, or the first start of a row
  // stored before ranges were) and keeps it, stored with the row, until it is removed.
  Status assignIdRange(Instance& instance);
  void releaseIdRange(const InstanceRow& row);

  // The key of the instance's NIC link names (net/datapath.h): unique per host, like the domain name.
  std::string linkKey(const std::string& instanceName) const { return domainName(instanceName); }
  // The instance leaves for good: its addresses go back (no-op without a NIC).
  void releaseNic(const std::string& instanceName);

  Store& store_;
  InstanceOptions options_;
  NetworkController* network_ = nullptr;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, Instance, std::less<>> instances_;
  UniqueFd wake_;  // eventfd: the set of pidfds to watch changed, or a domain event arrived
  std::atomic<bool> quit_{false};
  std::thread supervisor_;
  std::chrono::steady_clock::time_point lastOomCheck_{};
  container::IdRangeAllocator idRanges_;  // under mutex_
  std::optional<Error> idPoolError_;      // the id files are unusable: user namespaces are refused

  // VMs: the libvirt connection (opened on first need), its stop events queued for the supervisor, the
  // threads waiting for guests to become ready, and the accelerator decision.
  std::mutex libvirtMutex_;
  std::unique_ptr<vmm::Libvirt> libvirt_;
  std::mutex eventsMutex_;
  std::vector<vmm::DomainStopped> domainEvents_;
  std::mutex bootThreadsMutex_;
  std::vector<std::thread> bootThreads_;
  std::mutex acceleratorMutex_;  // held while probing: concurrent starts wait for one probe
  AcceleratorStatus acceleratorStatus_;
  std::mutex acceleratorStatusMutex_;
  std::thread acceleratorProbe_;
};

}  // namespace corral::daemon
