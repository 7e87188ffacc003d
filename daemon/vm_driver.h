// VMs as instances (daemon/driver.h): run by corrald itself (vmm/qemu.h) or as transient libvirt domains
// (--vm-engine; auto: the direct engine for microvm), a stopped VM only a row in the store,
// readiness from the guest agent, stop by agent or ACPI then destroy, exec through the agent, libvirt's
// stop events turned into reports by a thread of this driver, and the accelerator chosen once per host
// boot by a bounded KVM probe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "daemon/driver.h"
#include "daemon/vm_snapshot.h"
#include "daemon/vm_spec.h"
#include "vmm/accel.h"
#include "vmm/hypervisor.h"
#include "vmm/libvirt.h"
#include "vmm/qemu.h"

namespace corral::daemon {

// Where auto's decision stands: not asked yet, the KVM probe boot running, or decided.
enum class AcceleratorState { unknown, probing, decided };
std::string_view acceleratorStateName(AcceleratorState state);  // "unknown" | "probing" | "decided"

// The accelerator VMs get, and why.
struct AcceleratorStatus {
  AcceleratorState state = AcceleratorState::unknown;
  std::optional<vmm::AcceleratorChoice> choice;
};

// How a VM's run ended, by libvirt's stop event: the exit reason of the same name.
ExitReason exitReasonOf(vmm::StopReason reason);

class VmDriver final : public InstanceDriver {
 public:
  explicit VmDriver(InstanceOptions options);
  ~VmDriver() override;

  AcceleratorStatus acceleratorStatus();
  // Whether libvirtd answers, and its version or what to do about it (for `corral info`).
  Result<std::string> hypervisorVersion();

  void bind(InstanceEvents& events) override;
  void shutdown() override;
  std::filesystem::path directory(const std::string& name) const override;
  std::unique_ptr<InstanceHandle> newHandle() override;
  Status configure(InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow* row) override;
  // The kernel ("corral", "debian" or the file's path) and machine ("microvm", "pc") the plan chose.
  void settleSpec(const InstanceHandle& handle, schema::InstanceSpec& spec) const override;
  Status preflight(const schema::InstanceSpec& spec) override;
  // What the network backend makes every VM NIC's device with (NetworkController::vmNicProfile), set once
  // before any start: preflight() makes a warm VM's snapshot before its NIC is reserved, with this profile.
  void setVmNicProfile(net::NicProfile profile) { vmNicProfile_ = profile; }
  bool recordsStartingFirst() const override { return false; }
  // A VM of a store image pins it (ImageStore::pin, holder: the instance's name) from its run until rm;
  // every start boots the pinned manifest, whatever the image's name means by then.
  Status reserve(InstanceHandle& handle, const schema::InstanceSpec& spec, InstanceRow& row) override;
  void release(const InstanceRow& row) override;
  Result<StartedRun> start(InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow& row,
                           NicPort* nic, std::chrono::steady_clock::time_point received) override;
  void supervise(InstanceHandle& handle, const std::string& name) override;
  void forgetRun(InstanceHandle& handle) override;
  Status stop(InstanceHandle& handle, const std::string& name, std::unique_lock<std::mutex>& lock,
              std::chrono::seconds grace) override;
  Status kill(InstanceHandle& handle, const std::string& name, std::unique_lock<std::mutex>& lock) override;
  // stop --save: virDomainSaveFlags into the VM's directory; the next start() restores from it.
  Status save(InstanceHandle& handle, const std::string& name, std::unique_lock<std::mutex>& lock) override;
  bool hasSavedState(const InstanceHandle& handle) const override;
  std::chrono::milliseconds settleTimeout() const override { return std::chrono::seconds(15); }
  Result<nlohmann::json> exec(InstanceHandle& handle, const InstanceRow& row,
                              std::unique_lock<std::mutex>& lock, const std::vector<std::string>& command,
                              const std::vector<std::string>& env) override;
  Result<std::unique_ptr<StdioSession>> execInteractive(InstanceHandle& handle, const InstanceRow& row,
                                                        std::unique_lock<std::mutex>& lock,
                                                        const StdioRequest& request) override;
  Result<std::unique_ptr<StdioSession>> attachConsole(InstanceHandle& handle, const InstanceRow& row,
                                                      std::unique_lock<std::mutex>& lock) override;
  Result<std::string> clearLeftovers(const std::string& name) override;
  Status removeDirectory(const std::string& name) override;
  Recovery recover(InstanceHandle& handle, InstanceRow& row) override;
  void reconcile(const std::set<std::string>& active, const std::set<std::string>& all) override;
  void replugNic(InstanceHandle& handle, const InstanceRow& row, NicPort& nic) override;
  nlohmann::json readUsage(const InstanceHandle& handle, const InstanceRow& row) const override;
  void describe(const InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow& row,
                const nlohmann::json& usage, nlohmann::json& out) const override;

  // Warm snapshots (VMS_DIR/.snapshots/KEY, docs/api.md "Warm starts"): {"snapshots": [...]} with what each
  // is of and its size; one removed by its key (NotFound for none, InvalidArgument naming "key" for a key
  // that is not 32 hex digits); those of store images whose manifest no image name and no instance's pin
  // holds any more, and those whose kernel or initramfs file is gone or changed, removed (after an image's
  // removal, and at startup), their keys returned. A template a crashed corrald left half made (new-KEY8,
  // or an older corrald's KEY.new) goes too.
  nlohmann::json listSnapshots();
  Status removeSnapshot(const std::string& key);
  Result<std::vector<std::string>> pruneSnapshots();

  struct Run;         // one boot of the domain: its agent session, whether its end was reported
  class HeldConsole;  // an attached console and its token (Run::console)

 private:
  // The group a VM's base disk is readable by: the VM user's (its QEMU reads it), none when QEMU is root.
  std::optional<gid_t> diskReaders() const {
    return options_.vmUser.user ? std::optional<gid_t>(options_.vmUser.user->gid) : std::nullopt;
  }
  // Where a VM's kernel and root filesystem come from: the spec validated against the image directory
  // (imageDir/IMAGE/vm/{vmlinuz,initramfs.img}), else the image store (the image's disk as the root,
  // daemon/vm_image.h), and the host's memory and CPUs.
  // The image the instance pins comes first (daemon/vm_spec.h VmValidationContext::pinnedImage).
  Result<VmPlan> toPlan(const schema::InstanceSpec& spec) const;
  Result<std::optional<images::Image>> pinnedImage(const std::string& name) const;
  // start() of a VM with a saved state: restored instead of booted.
  // The engine that saved the file restores it, whatever --vm-engine says now.
  Result<StartedRun> restore(InstanceHandle& handle, const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                             NicPort* nic, std::chrono::steady_clock::time_point received);
  // start() of a --warm VM: restored from the shared snapshot (made first if there is none), then given its
  // identity. warmSnapshot(): the snapshot's directory; `steps` gets its key and what making it took.
  Result<StartedRun> warmStart(InstanceHandle& handle, const VmPlan& plan,
                               const vmm::AcceleratorChoice& accel, vmm::Hypervisor& engine, NicPort* nic,
                               std::chrono::steady_clock::time_point received);
  // `nic`: the clone's NIC device (none: the VM has no NIC).
  Result<std::filesystem::path> warmSnapshot(const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                                             vmm::Hypervisor& engine, std::optional<net::NicProfile> nic,
                                             nlohmann::json& steps);
  // The VM's devices and files: the boot files, its disks (a store image's), its NIC as `nic` plans it.
  Result<vmm::DomainConfig> domainConfig(const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                                         const std::optional<net::NicPlan>& nic);
  // A warm template's config (every clone's devices): the plan's machine and boot files, its NIC's MAC
  // from the snapshot key and its MTU and offloads from `nic`.
  vmm::DomainConfig warmTemplateConfig(const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                                       const SnapshotTemplate& made, const std::string& key,
                                       std::optional<net::NicProfile> nic) const;
  static nlohmann::json bootRecord(const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                                   std::chrono::steady_clock::time_point received,
                                   std::chrono::steady_clock::time_point domainStarted);
  StartedRun handOver(const std::shared_ptr<Run>& run, std::optional<int> qemuPid, nlohmann::json boot,
                      vmm::Hypervisor* engine, const std::string& domain);
  void queueDomainEvent(const vmm::DomainStopped& event);
  Result<vmm::Libvirt*> libvirt();
  Result<vmm::Qemu*> qemu();  // opened on first need; it adopts the VMs an earlier corrald left running
  vmm::Engine engineFor(const VmPlan& plan) const;  // --vm-engine for this VM
  Result<vmm::Hypervisor*> hypervisor(vmm::Engine engine);
  // The engine running the instance's domain (the run's, else the one that knows it), nullptr if none does.
  Result<vmm::Hypervisor*> runningEngine(const std::shared_ptr<Run>& run, const std::string& name);
  Result<vmm::AcceleratorChoice> accelerator(const VmPlan& plan);
  std::optional<vmm::AcceleratorChoice> cachedAcceleratorChoice();
  std::string domainName(const std::string& instanceName) const {
    return options_.domainPrefix + instanceName;
  }
  // This corrald's mark in each domain's metadata (its VM directory), and whether a domain carries it:
  // one with another corrald's mark is never destroyed nor taken over, one with none (made by hand or
  // before owners were recorded) is taken as ours.
  std::string owner() const { return options_.vmsDir.string(); }
  bool ours(const vmm::DomainInfo& domain) const { return domain.owner.empty() || domain.owner == owner(); }
  std::shared_ptr<Run> newRun(const std::string& name, nlohmann::json boot);
  // The run's end is to be reported by the caller: false when another thread claimed it first.
  bool claimEnd(Run& run);
  void startBootWaiter(std::shared_ptr<Run> run, std::chrono::steady_clock::time_point received,
                       std::chrono::steady_clock::time_point domainStarted);
  void releaseBootFiles(const Run& run);
  void waitForGuest(std::shared_ptr<Run> run, std::chrono::steady_clock::time_point received,
                    std::chrono::steady_clock::time_point domainStarted);
  void handleDomainEvents();
  void applyLastWords(Run& run, InstanceEnding& ending);
  std::string consoleTail(const std::string& name, size_t lines) const;

  InstanceOptions options_;
  InstanceEvents* events_ = nullptr;
  std::atomic<bool> quit_{false};

  // The libvirt connection, opened on first need (a daemon without libvirtd still runs containers).
  std::mutex libvirtMutex_;
  std::unique_ptr<vmm::Libvirt> libvirt_;
  // The direct engine, opened on first need.
  std::mutex qemuMutex_;
  std::unique_ptr<vmm::Qemu> qemu_;
  // Both engines' stop events, queued by their threads for ours; the runs whose domains run, by instance.
  std::mutex eventsMutex_;
  std::condition_variable eventsChanged_;
  std::vector<vmm::DomainStopped> domainEvents_;
  std::thread eventThread_;
  std::mutex runsMutex_;
  std::condition_variable runEnded_;
  std::map<std::string, std::shared_ptr<Run>, std::less<>> runs_;
  // The threads waiting for guests to become ready.
  std::mutex bootThreadsMutex_;
  std::vector<std::thread> bootThreads_;
  // The accelerator decision.
  std::mutex acceleratorMutex_;  // held while probing: concurrent starts wait for one probe
  AcceleratorStatus acceleratorStatus_;
  std::mutex acceleratorStatusMutex_;
  std::thread acceleratorProbe_;
  std::mutex snapshotMutex_;     // held while a warm snapshot is looked up, made or removed
  FileDigests bootFileDigests_;  // the kernel's and initramfs's sha256 for snapshot keys
  net::NicProfile vmNicProfile_;  // setVmNicProfile()
  // What making a warm snapshot took, by the instance it was made for: preflight() makes it without the
  // instance manager's lock (a template boots and is saved: seconds), warmStart() reports it.
  std::mutex madeInPreflightMutex_;
  std::map<std::string, nlohmann::json> madeInPreflight_;
};

}  // namespace corral::daemon
