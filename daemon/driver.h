// The kind-specific half of an instance's life behind one interface. ContainerDriver
// (daemon/container_driver.h) and VmDriver (daemon/vm_driver.h) implement it; InstanceManager
// (daemon/instances.h) keeps the lifecycle table, the store rows, the locking and the NICs, and asks the
// instance's driver for everything only its kind knows. A test driver (tests/unit/daemon/fake_driver.h)
// lets the manager's logic run without root.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "container/cgroup.h"
#include "core/error.h"
#include "core/rollback.h"
#include "core/stdio_session.h"
#include "daemon/lifecycle.h"
#include "daemon/store.h"
#include "daemon/vm_user.h"
#include "images/oci/image_store.h"
#include "net/datapath.h"
#include "schema/instance.h"
#include "vmm/qemu_spawn.h"

namespace corral::daemon {

// corrald --accelerator: auto probes once per host boot whether a guest really boots under KVM; kvm and tcg
// are taken as given.
enum class AcceleratorMode { automatic, kvm, tcg };
std::string_view acceleratorModeName(AcceleratorMode mode);  // "auto" | "kvm" | "tcg"
// The option's text back; anything else is InvalidArgument naming "accelerator".
Result<AcceleratorMode> parseAcceleratorMode(std::string_view text);

// corrald --vm-engine: who runs a VM's QEMU. libvirt: transient libvirt domains (vmm/libvirt.h); qemu:
// corral itself (vmm/qemu.h, ~0.4 s less per start); auto: qemu for microvm, libvirt for pc.
enum class VmEngineMode { automatic, libvirt, qemu };
std::string_view vmEngineModeName(VmEngineMode mode);  // "auto" | "libvirt" | "qemu"
// The option's text back; anything else is InvalidArgument naming "vm-engine".
Result<VmEngineMode> parseVmEngineMode(std::string_view text);

// How corrald runs instances: where their files go, the cgroup parent, libvirt, the accelerator.
struct InstanceOptions {
  std::filesystem::path imageDir = "/var/lib/corral/images";
  std::filesystem::path containersDir = "/var/lib/corral/containers";
  container::CgroupOptions cgroupOptions;
  // VMs
  std::filesystem::path vmsDir = "/var/lib/corral/vms";  // per VM: console.log, agent.sock
  std::string libvirtUri = "qemu:///system";
  std::string domainPrefix = "corral-";  // this daemon's libvirt domains are PREFIX + instance name
  AcceleratorMode accelerator = AcceleratorMode::automatic;
  VmEngineMode vmEngine = VmEngineMode::automatic;
  // corrald --vm-user: the user the direct engine's QEMU runs as (vmm/qemu.h; vmUser.user absent: root).
  VmUserChoice vmUser = VmUserChoice{};
  std::filesystem::path acceleratorCache = "/run/corral/accelerator.json";  // auto's probe result, per boot
  std::chrono::milliseconds vmBootTimeout{90'000};
  std::chrono::milliseconds kvmProbeTimeout{15'000};
  std::filesystem::path reaperPath{};  // corral-reaper, bound into containers run with --init
  // Containers with a user namespace: the pool of host ids is the `corral` entry of these (see id_ranges.h).
  std::filesystem::path subuidFile = "/etc/subuid";
  std::filesystem::path subgidFile = "/etc/subgid";
  // The store at <state dir>/images, opened once per corrald (daemon/vm_image.h openImageStore) and shared
  // by both kinds: containers run its images' layers, VMs boot their disks. Null: no store images.
  std::shared_ptr<images::ImageStore> imageStore = nullptr;
  // How long an instance's usage reading (InstanceDriver::readUsage) is shown before it is read again: a
  // listing of N instances reads the kernel for at most those whose reading is older.
  std::chrono::milliseconds usageMaxAge{1000};
  // How old a driver's background sample (InstanceDriver::sampledUsage) may be and still be shown instead
  // of a reading: a few of the container watcher's 1 s periods, so a late sample is not read again.
  std::chrono::milliseconds usageSampleMaxAge{3000};
};

// A usage reading ("usage" in docs/api.md, without "age_ms") and when it was read.
struct UsageSample {
  nlohmann::json value;
  std::chrono::steady_clock::time_point at;
};

// What a driver keeps of one instance between calls (its validated config, what runs now). Made by the
// driver, held by the manager with the row, looked into only by the driver that made it, and used under
// the manager's lock unless a method says otherwise.
class InstanceHandle {
 public:
  virtual ~InstanceHandle() = default;
};

// One run of an instance (a start, or its adoption after a restart). Drivers name it in their reports, so
// a late report about an earlier run is ignored.
using RunId = uint64_t;
RunId nextRunId();  // unique in this process

// How a run ended, as its driver saw it.
struct InstanceEnding {
  ExitReason reason = ExitReason::exited;
  std::optional<int64_t> exitCode;
  std::optional<int64_t> exitSignal;
  std::optional<std::string> note;
  // Kept when a stop was asked (a boot timeout); any other reason then reads "stopped".
  bool reasonStands = false;
  std::optional<int64_t> oomKills;  // the count the run's cgroup ended with, if it has one

  static InstanceEnding because(ExitReason reason) {
    InstanceEnding ending;
    ending.reason = reason;
    return ending;
  }
};

// A start that worked: what its row records. `undo` stops it again (kill, destroy) unless the manager
// dismisses it once the row says so.
struct StartedRun {
  RunId run = 0;
  InstanceState state = InstanceState::running;  // running, or starting while a VM's guest boots
  std::optional<int64_t> pid;
  std::optional<int64_t> pidStartTime;
  nlohmann::json boot = nlohmann::json::object();  // the boot's steps so far (docs/api.md "boot")
  Rollback undo{nullptr};
};

// The instance's NIC as the network service plugs it in; the manager makes it over NetworkController.
class NicPort {
 public:
  virtual ~NicPort() = default;
  virtual Result<net::NicPlan> plan() = 0;        // link, MAC, address/prefix, gateway
  virtual Status plugIntoProcess(pid_t pid) = 0;  // a veth into the process's namespace, before it runs
  // The tap QEMU opened, while the guest is paused; `qemuPid` (when known) names the namespace it is in.
  virtual Status plugIntoTap(std::optional<pid_t> qemuPid) = 0;
};

// What drivers report from their own threads, holding none of their own locks. The manager applies each
// under its lock, if `run` is still the instance's run.
class InstanceEvents {
 public:
  virtual ~InstanceEvents() = default;
  virtual void instanceReady(const std::string& name, RunId run, nlohmann::json boot) = 0;
  virtual void instanceEnded(const std::string& name, RunId run, InstanceEnding ending) = 0;
  virtual void instanceOomKills(const std::string& name, RunId run, int64_t count) = 0;
};

class InstanceDriver {
 public:
  virtual ~InstanceDriver() = default;

  // Where reports go; called once, before any other call. shutdown() stops every thread that reports (the
  // instances keep running) and is called before the events' receiver goes away.
  virtual void bind(InstanceEvents& events) = 0;
  virtual void shutdown() = 0;

  // The instance's own directory (a container's bundle, a VM's console log and agent socket).
  virtual std::filesystem::path directory(const std::string& name) const = 0;
  virtual std::unique_ptr<InstanceHandle> newHandle() = 0;
  // Validates `spec` into the kind's config, kept in the handle; `row` is the stored one when there is one.
  // A handle that was never configured (a stored spec that no longer validates) is configured again by
  // start().
  virtual Status configure(InstanceHandle& handle, const schema::InstanceSpec& spec,
                           const InstanceRow* row) = 0;
  // What a new instance's spec left to the driver and the driver chose at configure() (a VM's kernel and
  // machine), written into the spec before it is stored: every later start, and inspect, see that choice
  // rather than a new one (a VM created before corral's kernel was built keeps Debian's on restart).
  virtual void settleSpec(const InstanceHandle& handle, schema::InstanceSpec& spec) const {
    (void)handle;
    (void)spec;
  }
  // Slow work a start needs first, done without the manager's lock (a VM's accelerator probe boot).
  virtual Status preflight(const schema::InstanceSpec& spec) = 0;
  // Whether the row says "starting" before the start's first effect, so a crash leaves a row that says to
  // look for leftovers (containers); otherwise the row says "created" (run) or keeps "stopped" until the
  // instance runs, and reconcile() finds the leftovers by name (a VM's domain).
  virtual bool recordsStartingFirst() const = 0;
  // Host resources the instance keeps from its first start until it is removed (a container's user
  // namespace id range), written into `row`; release() gives them back.
  virtual Status reserve(InstanceHandle& handle, const schema::InstanceSpec& spec, InstanceRow& row) = 0;
  virtual void release(const InstanceRow& row) = 0;

  // Starts it (created or stopped). With the manager's lock held: a start returns quickly (at execve, or
  // once the domain runs). `nic` is null without a NIC.
  virtual Result<StartedRun> start(InstanceHandle& handle, const schema::InstanceSpec& spec,
                                   const InstanceRow& row, NicPort* nic,
                                   std::chrono::steady_clock::time_point received) = 0;
  // The row now says it runs: from here the driver watches it and reports its end (and a guest's
  // readiness).
  virtual void supervise(InstanceHandle& handle, const std::string& name) = 0;
  // Its end is recorded: the handle lets go of the run.
  virtual void forgetRun(InstanceHandle& handle) = 0;

  // Stop and kill take `lock` (the manager's) held, release it once they copied what they need, and hold it
  // again on return; `handle` is not touched once `lock` is released. stop: asks it to end, waits `grace`,
  // then forces it; kill: forces it at once. The end is reported as usual.
  virtual Status stop(InstanceHandle& handle, const std::string& name, std::unique_lock<std::mutex>& lock,
                      std::chrono::seconds grace) = 0;
  virtual Status kill(InstanceHandle& handle, const std::string& name,
                      std::unique_lock<std::mutex>& lock) = 0;
  // stop --save (a VM): its state and memory go to a file of its own directory and it ends (reported as
  // usual); its next start() resumes from that file. `lock` as for stop. Kinds without a state to save
  // never get here (the transition table refuses them).
  virtual Status save(InstanceHandle&, const std::string& name, std::unique_lock<std::mutex>&) {
    return fail(invalidField("save", "instance \"{}\": its kind has no state to save", name));
  }
  // Whether a stopped instance has a saved state its next start resumes ("saved" in docs/api.md).
  virtual bool hasSavedState(const InstanceHandle&) const { return false; }
  // How long the manager waits for the end's report after stop() or kill().
  virtual std::chrono::milliseconds settleTimeout() const = 0;
  // exec: `lock` as for stop; the JSON of POST /v1/instances/NAME/exec (docs/api.md).
  virtual Result<nlohmann::json> exec(InstanceHandle& handle, const InstanceRow& row,
                                      std::unique_lock<std::mutex>& lock,
                                      const std::vector<std::string>& command,
                                      const std::vector<std::string>& env) = 0;
  // exec -it / -i: starts `request` in the running instance and hands its stdio over (core/stdio_session.h);
  // `lock` as for exec. A conflict by default.
  virtual Result<std::unique_ptr<StdioSession>> execInteractive(InstanceHandle&, const InstanceRow&,
                                                                std::unique_lock<std::mutex>&,
                                                                const StdioRequest&) {
    return fail(conflict("interactive exec is not supported for this kind of instance"));
  }
  // console: attaches to the instance's console (a VM's serial line; a container started with a tty: its
  // first process's pty). A conflict by default.
  virtual Result<std::unique_ptr<StdioSession>> attachConsole(InstanceHandle&, const InstanceRow&,
                                                              std::unique_lock<std::mutex>&) {
    return fail(conflict("this instance has no console"));
  }

  // Removal of an instance that does not run: whatever a crash may have left that no row names (processes,
  // cgroups, a mount, a domain); says what it found ("" when nothing).
  virtual Result<std::string> clearLeftovers(const std::string& name) = 0;
  virtual Status removeDirectory(const std::string& name) = 0;

  // After a daemon restart, for each stored instance of this kind: a run that still goes is adopted (watched
  // again, its id returned); otherwise what a crash left is cleared, and a row that says it runs (or was
  // being created or started) is marked lost (markLost). Called once per instance, after configure().
  struct Recovery {
    std::optional<RunId> run;  // adopted
    bool rowChanged = false;   // the manager saves the row
  };
  virtual Recovery recover(InstanceHandle& handle, InstanceRow& row) = 0;
  // Then once: host objects of this kind that no instance owns are destroyed (a VM's domain whose run
  // crashed before its row said so). `active`: the names that run now; `all`: every stored one.
  virtual void reconcile(const std::set<std::string>& active, const std::set<std::string>& all) = 0;
  // A running instance whose NIC went missing (its VPC's namespace was recreated) gets it back if it can.
  virtual void replugNic(InstanceHandle& handle, const InstanceRow& row, NicPort& nic) = 0;

  // The host memory the instance holds now, read from the kernel ("usage" in docs/api.md, without its
  // "age_ms"); null when it is not running or the number cannot be read. The manager keeps a reading for
  // InstanceOptions::usageMaxAge, so a listing reads each instance at most that often.
  virtual nlohmann::json readUsage(const InstanceHandle& handle, const InstanceRow& row) const = 0;
  // The driver's own background reading of a running instance's usage (a container's: its watcher samples
  // every running container's cgroup once a second), or nullopt (none yet, or the kind keeps none). The
  // manager shows a fresh enough one instead of reading: no kernel read on a listing's path.
  virtual std::optional<UsageSample> sampledUsage(const InstanceHandle&, const InstanceRow&) const {
    return std::nullopt;
  }
  // The kind's part of the instance's JSON (docs/api.md "Instances"): "command", "cgroup", "bundle",
  // "oom_kills" and "vm", from what it holds and `usage` (the kept readUsage() answer); no kernel read.
  virtual void describe(const InstanceHandle& handle, const schema::InstanceSpec& spec,
                        const InstanceRow& row, const nlohmann::json& usage, nlohmann::json& out) const = 0;
};

// One driver per kind: InstanceManager picks an instance's by its kind.
using InstanceDrivers = std::map<schema::InstanceKind, std::unique_ptr<InstanceDriver>>;
// The real ones: ContainerDriver and VmDriver.
InstanceDrivers hostDrivers(const InstanceOptions& options);

// Field 22 of /proc/PID/stat (start time in clock ticks since boot); nullopt when the process is gone.
std::optional<int64_t> processStartTime(pid_t pid);

// The row of an instance whose end corrald did not see: stopped, reason "lost", exit status unknown, `note`
// saying why. The caller saves it.
void markLost(InstanceRow& row, std::string note);

}  // namespace corral::daemon
