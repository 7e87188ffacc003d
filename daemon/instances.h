// The daemon's instances: their lifecycle (daemon/lifecycle.h), their rows in the store, the manager's
// lock, and their NICs through the network service. Everything only a kind knows (starting, stopping,
// watching, exec, recovery, the kind's part of the JSON) is its driver's (daemon/driver.h): a container's
// (daemon/container_driver.h) or a VM's (daemon/vm_driver.h). Every state change is stored before it is
// answered; instances outlive corrald and are adopted again by load().
//
// The JSON of every instance call (the CLI relies on it exactly) is documented once, in docs/api.md
// ("Instances"); a crash of corrald at any point is reconciled by load() (docs/api.md, "Crash safety").
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/rollback.h"
#include "core/unique_fd.h"
#include "daemon/driver.h"
#include "daemon/lifecycle.h"
#include "daemon/network.h"
#include "daemon/store.h"
#include "daemon/vm_driver.h"

namespace corral::daemon {

class StepClock;  // daemon/instances.cc

// A cluster host's record of its instances in the cluster store (daemon/cluster_instances.h): an instance's
// name and addresses are claimed before it runs and given back once it is gone.
class InstanceClaims {
 public:
  virtual ~InstanceClaims() = default;
  // true: claimed. false: one of its addresses was another host's instance's, which this host's network
  // knows now (reserve another and claim again). Conflict when the name is another instance's in the
  // cluster; Unavailable when the store has no quorum.
  virtual Result<bool> claim(const schema::InstanceSpec& spec, const std::string& linkKey) = 0;
  // Gives back this host's claims of these names (others' are left alone).
  virtual void release(const std::vector<std::string>& names) = 0;
};

class InstanceManager final : private InstanceEvents {
 public:
  // Loads the stored instances and recovers each through its driver (adopting the running ones, recording
  // the others as lost). `network` (may be null: no networking) learns the stored instances' NICs.
  static Result<std::unique_ptr<InstanceManager>> load(Store& store, InstanceOptions options,
                                                       NetworkController* network = nullptr);
  // The same with the given drivers (hostDrivers(), or a test's; a kind without one is refused at run).
  static Result<std::unique_ptr<InstanceManager>> load(Store& store, InstanceOptions options,
                                                       NetworkController* network, InstanceDrivers drivers);
  InstanceManager(Store& store, InstanceOptions options, NetworkController* network, InstanceDrivers drivers);
  ~InstanceManager() override;  // stops the drivers' watching; the instances keep running
  InstanceManager(const InstanceManager&) = delete;
  InstanceManager& operator=(const InstanceManager&) = delete;

  Result<nlohmann::json> run(const schema::InstanceSpec& spec);
  // A cluster host's claims (null: a single host). Set while no request runs (Service::followModel).
  void setClaims(InstanceClaims* claims) { claims_ = claims; }
  // GET /v1/instances: from what the manager holds, with no kernel read but each instance's usage when its
  // kept reading is older than options().usageMaxAge; each VPC's NICs planned once, and no NIC's
  // "spoof_drops" (null here: get() reads them).
  enum class Listing { full, withoutNetwork };  // withoutNetwork: "network" is null (the dashboard's)
  nlohmann::json list(Listing listing = Listing::full);
  // The dashboard's narrow view of every instance (daemon/instance_view.h dashboardInstance), kept per
  // instance: one is rendered again only when it changed (touch()) or its usage figures did.
  nlohmann::json dashboardInstances();
  // GET /v1/instances?view=summary (`corral ps`): each instance's name, kind, state, exit (reason, code,
  // signal), ip, image, boot's total_ms and created_at, from the held rows alone: no driver, no network.
  nlohmann::json summaries();
  // {"instances": [{"name", "state"}...]}: what a VPC's topology shows of its instances, with no kernel read.
  nlohmann::json statesJson();
  // A number that moves on after any change of what the dashboard shows of the instances apart from usage
  // (names, kinds, states, addresses, starts, boots), and never comes back. A counter: no lock, no scan.
  uint64_t revision();
  Result<nlohmann::json> get(const std::string& name);
  // save: a VM's state and memory are saved instead (stop --save), and its next start resumes it.
  Result<nlohmann::json> stop(const std::string& name, int64_t graceSeconds, bool save = false);
  Result<nlohmann::json> start(const std::string& name);
  Result<nlohmann::json> remove(const std::string& name, bool force);
  // POST /v1/instances/remove (docs/api.md): each name as remove() would, in one request: the running ones
  // are killed in parallel and the NICs of all released in one call (releaseNicsOf). An empty list, a
  // malformed name or one given twice: InvalidArgument naming names[i], nothing removed. Otherwise one result
  // per name, in order ({"deleted": instance}, or its error: not found, not fitting its state, ...).
  Result<std::vector<Result<nlohmann::json>>> removeMany(const std::vector<std::string>& names, bool force);
  Result<nlohmann::json> logs(const std::string& name, int64_t offset);
  Result<nlohmann::json> exec(const std::string& name, const std::vector<std::string>& command,
                              const std::vector<std::string>& env);
  // GET /v1/instances/NAME/exec upgraded (api/terminal.h): `request` started in the running instance, its
  // stdio handed over; refused (nothing started) when it is not running.
  Result<std::unique_ptr<StdioSession>> execInteractive(const std::string& name, const StdioRequest& request);
  // GET /v1/instances/NAME/console upgraded: the running instance's console (its driver's attachConsole).
  Result<std::unique_ptr<StdioSession>> attachConsole(const std::string& name);
  // POST /v1/instances/NAME/wait-port (docs/api.md): connects to the instance's `port` at its address on
  // its subnet, from its VPC's router (RouterPath), again and again until one is accepted, it stops or
  // `timeout` passes; answers when it was first accepted, counted from the start request. Without the
  // manager's lock while it waits.
  Result<nlohmann::json> waitForPort(const std::string& name, uint16_t port,
                                     std::chrono::milliseconds timeout);

  // Groups (daemon/groups.h): every instance whose spec names a group, as its controller counts them.
  struct GroupMember {
    std::string name;
    std::string group;
    std::string subnet;
    InstanceState state = InstanceState::created;
    std::optional<ExitReason> exitReason;
    std::optional<int64_t> exitCode;
    std::optional<int64_t> exitSignal;
    // On a cluster (daemon/groups.h GroupFleet): the host it runs on (empty: this one), and whether that
    // host is lost (its state then is the last known; the member can be neither reached nor removed).
    std::string host;
    bool lost = false;
  };
  std::vector<GroupMember> groupMembers();
  // Checks `spec` as run() would before reserving anything (its driver's configure: the image, the
  // limits), starting nothing.
  Status check(const schema::InstanceSpec& spec);
  // Called (under the manager's lock: it must not call back in) after any instance was recorded as ended.
  void setEndedListener(std::function<void()> listener) {
    std::lock_guard lock(mutex_);
    endedListener_ = std::move(listener);
  }

  // The network namespace of the running container `name` (an fd of /proc/PID/ns/net), for a probe sent
  // from or received in it (corral reach --verify). A VM's network stack is its guest's kernel: refused,
  // naming `field`, as is an instance that is not running.
  Result<UniqueFd> openNetworkNamespace(const std::string& name, std::string_view field);

  // The state `name` shows (a settled one: daemon/lifecycle.h), or nullopt when there is no such instance.
  std::optional<InstanceState> stateOf(const std::string& name);
  size_t count();
  const InstanceOptions& options() const { return options_; }
  // After the network was reconciled at startup: running instances whose NIC went missing (their VPC's
  // namespace was recreated) get it back from their driver if it can.
  void replugNics();
  // The VM driver's (unknown, and "libvirt is not used", without one).
  AcceleratorStatus acceleratorStatus();
  Result<std::string> hypervisorVersion();
  // Warm VM snapshots (VmDriver): listed, one removed by key, those of removed images pruned.
  Result<nlohmann::json> vmSnapshots();
  Status removeVmSnapshot(const std::string& key);
  Result<std::vector<std::string>> pruneVmSnapshots();

 private:
  struct Instance {
    InstanceRow row;
    schema::InstanceSpec spec;
    InstanceDriver* driver = nullptr;
    std::unique_ptr<InstanceHandle> handle;
    std::optional<RunId> run;  // while starting or running: the run its driver reports on
    // When the API request of the current run's start arrived (not kept across a restart of corrald).
    std::optional<std::chrono::steady_clock::time_point> startReceived;
    // A stop or forced remove working on it without the lock (stopping, removing): what the transition
    // table sees instead of row.state (the settled state, stored and shown) until that request ends.
    std::optional<InstanceState> inProgress;
    // The latest usage reading of the current run (InstanceDriver::readUsage), kept for usageMaxAge, and
    // read again at once when the run, the state or the recorded OOM kills change (so an answer never shows
    // more kills than its usage does).
    struct UsageReading {
      std::optional<RunId> run;
      InstanceState state = InstanceState::created;
      int64_t oomKills = 0;
      std::chrono::steady_clock::time_point at;
      nlohmann::json value;
    };
    mutable std::optional<UsageReading> usage;
    // render()'s "spec", made at the first render: a held instance's spec does not change.
    mutable std::optional<nlohmann::json> specView;
    // revision_ when this instance last changed (touch()): what a view kept per instance compares.
    uint64_t version = 0;
    // dashboardInstances()'s entry, made at `version` with `usage` (without its age).
    struct DashboardEntry {
      uint64_t version = 0;
      nlohmann::json usage;
      nlohmann::json entry;
    };
    mutable std::optional<DashboardEntry> dashboardEntry;
    InstanceState state() const { return inProgress.value_or(row.state); }
    // Its end was asked for (a stop or a forced remove): the end is recorded as "stopped".
    bool stopAsked() const {
      return inProgress == InstanceState::stopping || inProgress == InstanceState::removing;
    }
  };

  // InstanceEvents: the drivers' reports, applied under the lock when `run` is still the instance's.
  void instanceReady(const std::string& name, RunId run, nlohmann::json boot) override;
  void instanceEnded(const std::string& name, RunId run, InstanceEnding ending) override;
  void instanceOomKills(const std::string& name, RunId run, int64_t count) override;

  Result<InstanceDriver*> driverFor(schema::InstanceKind kind);
  // Holds `instance` in the in-progress state of `action` (daemon/lifecycle.h) until the returned guard
  // ends, taking `lock` back first if it was released meanwhile.
  Rollback holdInProgress(std::unique_lock<std::mutex>& lock, Instance& instance, InstanceAction action);
  // Starts `instance` (created or stopped) and records it; with the lock held.
  Result<nlohmann::json> startLocked(Instance& instance, std::chrono::steady_clock::time_point received);
  // The end every stop shares: the row says stopped, why and when, the NIC leaves its bridge; an instance
  // run with --rm is then forgotten with its files, any other is saved.
  void recordStopped(Instance& instance, ExitReason reason, std::optional<int64_t> code,
                     std::optional<int64_t> signal, std::optional<std::string> note);
  // Waits (lock released meanwhile) until `name` is recorded as no longer starting or running.
  Status waitStopped(std::unique_lock<std::mutex>& lock, const std::string& name,
                     std::chrono::milliseconds timeout);
  nlohmann::json render(const Instance& instance) const {
    return render(instance, networkJson(instance, Counters::read));
  }
  nlohmann::json render(const Instance& instance, nlohmann::json network) const;
  // "network" of render(): null without a NIC; "spoof_drops" read from the kernel, or null (skipped).
  enum class Counters { read, skipped };
  nlohmann::json networkJson(const Instance& instance, Counters counters) const;
  // "usage" of render(): the kept reading, read again when older than usageMaxAge or of another run.
  nlohmann::json usageJson(const Instance& instance) const;
  // The key of the instance's NIC link names (net/datapath.h): unique per host, like a VM's domain name.
  std::string linkKey(const std::string& instanceName) const { return options_.domainPrefix + instanceName; }
  // The instance leaves for good: its addresses go back (no-op without a NIC).
  void releaseNic(const std::string& instanceName);
  // The NICs of instances removed by one request (remove, removeMany): released together, one firewall
  // change per VPC (NetworkController::releaseNics); a failure is logged (the model has let them go, and
  // the next change or start-up converge repairs the kernel).
  void releaseNicsOf(const std::vector<std::string>& instanceNames);
  // Kills every listed instance that is still active, several at once (each kill waits on its own cgroup
  // or domain); `lock` is released meanwhile. The status of each, in order (success for one not active).
  std::vector<Status> killInParallel(std::unique_lock<std::mutex>& lock,
                                     const std::vector<std::string>& names);
  // The end of every removal, once the instance's processes are gone: leftovers cleared, its files, row and
  // driver state dropped. Answers the instance as it was; the NIC is left to the caller (releaseNicsOf).
  // `clock` (may be null) marks each step's end (remove()'s log line).
  Result<nlohmann::json> dropStopped(std::map<std::string, Instance, std::less<>>::iterator it,
                                     StepClock* clock = nullptr);

  // Every change of an instance's row, run or presence: the revision moves on and the instance notes it.
  void touch(Instance& instance) { instance.version = ++revision_; }

  Store& store_;
  InstanceOptions options_;
  NetworkController* network_ = nullptr;
  std::atomic<InstanceClaims*> claims_{nullptr};
  InstanceDrivers drivers_;
  VmDriver* vmDriver_ = nullptr;  // for the host's view (acceleratorStatus, hypervisorVersion)
  std::mutex mutex_;
  std::condition_variable changed_;
  std::map<std::string, Instance, std::less<>> instances_;
  std::atomic<uint64_t> revision_{1};
  std::function<void()> endedListener_;  // under mutex_
};

}  // namespace corral::daemon
