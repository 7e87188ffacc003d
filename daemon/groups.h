// Groups of cattle (auto scaling): corrald keeps `desired` healthy members of each group, replacing the
// ones that ended and adding or removing members as the group is scaled (by hand or by its policy: CPU or
// requests per target).
// Members are ordinary instances whose spec names the group (schema::InstanceSpec::group), so membership
// is counted from the stored instances and survives a crash of corrald; a member's number comes from the
// group's stored counter and is never used twice. Shapes: docs/api.md ("Groups").
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "daemon/instances.h"
#include "daemon/store.h"
#include "schema/group.h"

namespace corral::daemon {

// The seam to the load balancers' target groups (the Service implements it over lb/model.h and the HAProxy
// stats; tests may fake it): members join their group's target group once running, leave every target
// group before they are removed, and with health "elb" a member the target group's health check marks
// DOWN is replaced. Without one, groups with a target group or health elb are refused.
// What the load balancers know of one target group right now: read from the HAProxy stats of those
// forwarding to it, for the requests policy and (kept by the controller) the dashboard.
struct TargetGroupSnapshot {
  struct Target {
    std::string name;
    std::string state;   // "healthy", "unhealthy", "unused" (not running), "unknown" (no stats)
    std::string reason;  // HAProxy's status and check when not healthy
    bool operator==(const Target&) const = default;
  };
  std::vector<std::string> loadBalancers;  // forwarding to the group
  std::string judgedBy;                    // whose stats gave the health; empty: none answered
  std::vector<Target> targets;
  schema::RequestCounters requests;  // each answering load balancer's backend counter
  int64_t healthyTargets() const;
};

class TargetGroupSeam {
 public:
  virtual ~TargetGroupSeam() = default;
  // The target group as the load balancers see it, or nullopt when it does not exist.
  virtual std::optional<TargetGroupSnapshot> snapshot(const std::string& targetGroup) = 0;
  // Why `instance` is unhealthy in `targetGroup` ("DOWN (L7STS)"), or nullopt while it is healthy or not
  // judged yet (no load balancer forwards to the group, no stats, not registered).
  virtual std::optional<std::string> unhealthyReason(const std::string& targetGroup,
                                                     const std::string& instance) = 0;
  // Registers `instance` in `targetGroup`; nothing changes when it is registered already.
  virtual Status registerTarget(const std::string& targetGroup, const std::string& instance) = 0;
  // Deregisters the instances from every target group that has them.
  virtual void deregisterEverywhere(const std::vector<std::string>& instances) = 0;
};

// Where a group's members run, and how they are counted and removed. Without a fleet of its own the
// controller uses this host's instances; the Service gives one that, on a cluster host, places each member
// on a host of its subnet's availability zone (forwarding the launch), counts the members every host runs
// and reports those of a lost host as lost (docs/cluster.md "Groups across hosts").
class GroupFleet {
 public:
  virtual ~GroupFleet() = default;
  // This host's members of any group, and the other hosts' members of `groups` (the groups this host has).
  virtual std::vector<InstanceManager::GroupMember> members(const std::set<std::string>& groups) = 0;
  // Whether a member can be launched in `subnet` now (on a cluster: a host of its AZ is alive).
  virtual bool canLaunchIn(const std::string& subnet) = 0;
  virtual Result<nlohmann::json> run(const schema::InstanceSpec& spec) = 0;
  // Removes the members (forced), each where it runs; one result per name.
  virtual Result<std::vector<Result<nlohmann::json>>> remove(const std::vector<std::string>& names) = 0;
  virtual std::optional<InstanceState> stateOf(const std::string& name) = 0;
  // The groups other hosts of the cluster have: their members on this host are not orphans.
  virtual std::vector<std::string> othersGroups() = 0;

  // On a cluster each group is kept by one host, whose claim in the store carries the group's row, so that
  // a live host can take the group over when its host is lost.
  enum class Hold { kept, elsewhere, unknown };
  // Publishes `row` in the group's claim (when it changed) and says whether this host still keeps the
  // group: `elsewhere` once another host took it over (this host then forgets it; its members here run
  // on), `unknown` when the store cannot say (the group waits for a later pass).
  virtual Hold hold(const GroupRow& row) = 0;
  // The groups of lost hosts that this host has just taken over, each with the host it was taken from.
  struct TakenOver {
    GroupRow row;
    std::string from;
  };
  virtual std::vector<TakenOver> takeOver() = 0;
};

// This host's instances as the fleet (a single host).
class LocalFleet final : public GroupFleet {
 public:
  explicit LocalFleet(InstanceManager& instances) : instances_(instances) {}
  std::vector<InstanceManager::GroupMember> members(const std::set<std::string>&) override {
    return instances_.groupMembers();
  }
  bool canLaunchIn(const std::string&) override { return true; }
  Result<nlohmann::json> run(const schema::InstanceSpec& spec) override { return instances_.run(spec); }
  Result<std::vector<Result<nlohmann::json>>> remove(const std::vector<std::string>& names) override {
    return instances_.removeMany(names, true);
  }
  std::optional<InstanceState> stateOf(const std::string& name) override { return instances_.stateOf(name); }
  std::vector<std::string> othersGroups() override { return {}; }
  Hold hold(const GroupRow&) override { return Hold::kept; }
  std::vector<TakenOver> takeOver() override { return {}; }

 private:
  InstanceManager& instances_;
};

// A member's CPU time so far, in microseconds (its cgroup's), or nullopt when it cannot be read (a VM, an
// instance that is not running). A seam so the policy's sampling can be tested with synthetic figures.
using CpuUsageReader = std::function<std::optional<int64_t>(const std::string& instance)>;

struct GroupOptions {
  std::chrono::milliseconds reconcileEvery{1000};
  // How often the policies sample their members' CPU (corrald --group-policy-period); the cooldown after a
  // policy scaled is three periods.
  std::chrono::seconds policyPeriod{schema::kPolicyPeriodSeconds};
  // How often a group's target group is looked at for the dashboard (its health, from HAProxy's stats).
  std::chrono::milliseconds targetHealthEvery{2000};
  std::chrono::seconds maxBackoff{30};  // between launch attempts after failures
  size_t keptEvents = 200;
  // A cluster host starting again (STATE_DIR/cluster/member.json): the passes wait for the cluster
  // (Service::openCluster starts them), so that none counts this host's members alone, launches here what
  // the group's hosts run, or takes another host's members here for orphans.
  bool awaitCluster = false;
};

class GroupController {
 public:
  // What the host must confirm of a new group's spec: its subnets exist and share one VPC, its security
  // groups are in that VPC (the Service's model, under its lock).
  using SpecCheck = std::function<Status(const schema::GroupSpec&)>;

  static Result<std::unique_ptr<GroupController>> load(Store& store, InstanceManager& instances,
                                                       SpecCheck check, CpuUsageReader cpu,
                                                       TargetGroupSeam* targetGroups = nullptr,
                                                       GroupOptions options = {});
  GroupController(Store& store, InstanceManager& instances, SpecCheck check, CpuUsageReader cpu,
                  TargetGroupSeam* targetGroups, GroupOptions options);
  ~GroupController();  // stops the controller's thread; the members keep running
  GroupController(const GroupController&) = delete;
  GroupController& operator=(const GroupController&) = delete;

  // Where members run from now on (the Service, once it is made); it must outlive the controller.
  void setFleet(GroupFleet* fleet);
  void start();  // the thread that reconciles every reconcileEvery and when a member ends (once)
  void wake();

  Result<nlohmann::json> create(const schema::GroupSpec& spec);
  nlohmann::json list();
  Result<nlohmann::json> get(const std::string& name);
  bool has(const std::string& name);
  std::vector<std::string> names();
  // force: its members are removed with it; without force a group with members is refused.
  Result<nlohmann::json> remove(const std::string& name, bool force);
  Result<nlohmann::json> scale(const std::string& name, int64_t desired);
  Result<nlohmann::json> events(const std::string& name);
  // A requests-per-target policy needs the group's target group (field "requests_per_target").
  Result<nlohmann::json> setPolicy(const std::string& name, std::optional<schema::ScalingPolicy> policy);
  // Every group, its members, newest events and its target group's health as last seen (no HAProxy call),
  // for the dashboard; and a number that moves on any change.
  nlohmann::json dashboardJson();
  uint64_t revision() const { return revision_.load(); }

  // One reconciling pass over every group (the thread's work; tests may call it directly).
  void reconcileAll();

 private:
  struct Group {
    schema::GroupSpec spec;
    GroupRow row;
    std::optional<schema::ScalingPolicy> policy;
    schema::PolicyState policyState;
    int launchFailures = 0;
    std::chrono::steady_clock::time_point nextLaunchAt{};
    std::optional<double> lastCpuPercent;
    std::optional<double> lastRequestsPerTarget;
    // The requests policy's previous sample: the counters and when they were read.
    std::optional<std::pair<schema::RequestCounters, std::chrono::steady_clock::time_point>> requestSample;
    std::optional<TargetGroupSnapshot> targetHealth;  // for the dashboard
    std::chrono::steady_clock::time_point targetHealthAt{};
    std::set<std::string> lostMembers;  // members whose host is lost, as recorded (an event once each)
  };
  struct CpuSample {
    int64_t usageMicros = 0;
    std::chrono::steady_clock::time_point at;
  };

  // A stored row as the controller keeps it (its spec and policy parsed); errors name the group.
  static Result<Group> groupFromRow(const GroupRow& row);
  void loop(std::stop_token stop);
  void reconcileGroup(const std::string& name, std::vector<InstanceManager::GroupMember> members);
  void removeOrphans(const std::vector<InstanceManager::GroupMember>& members);
  // A group taken over from a lost host: stored and kept here from now on.
  void adopt(const GroupFleet::TakenOver& taken);
  // A group another host took over: dropped here (row and events), its members left running.
  void forget(const std::string& name);
  // Leaves every target group first (no new requests reach them), then removes the instances.
  Result<std::vector<Result<nlohmann::json>>> terminate(const std::vector<std::string>& names);
  void samplePolicies();
  // The requests policy's figure for `group` from a fresh snapshot (nullopt: no sample this period).
  std::optional<double> sampleRequests(const std::string& group, const std::string& targetGroup);
  void refreshTargetHealth(const std::string& group, const std::string& targetGroup);
  Status launchMember(const std::string& group, const std::vector<InstanceManager::GroupMember>& healthy);
  void record(const std::string& group, std::string kind, std::optional<std::string> instance,
              std::string message);
  nlohmann::json render(const Group& group, const std::vector<InstanceManager::GroupMember>& members) const;

  GroupFleet& fleet() const { return *fleet_.load(); }
  // The members of `only`, or of every group this host has (and this host's members of any group).
  std::vector<InstanceManager::GroupMember> allMembers(const std::optional<std::string>& only = std::nullopt);

  Store& store_;
  InstanceManager& instances_;
  LocalFleet local_;
  std::atomic<GroupFleet*> fleet_;
  SpecCheck check_;
  CpuUsageReader cpu_;
  TargetGroupSeam* targetGroups_ = nullptr;
  GroupOptions options_;
  std::mutex mutex_;  // groups_, woken_
  std::condition_variable wakeUp_;
  bool woken_ = false;
  std::map<std::string, Group, std::less<>> groups_;
  // Held by a reconciling pass and by remove(): a group is never removed while its members are launched.
  std::mutex passMutex_;
  std::map<std::string, CpuSample> cpuSamples_;  // under passMutex_
  std::chrono::steady_clock::time_point lastPolicyAt_{};
  std::atomic<uint64_t> revision_{1};
  std::jthread thread_;
};

// The kernel's CpuUsageReader: the member's cgroup (GET's "cgroup") cpu.stat usage_usec (v2) or cpuacct.usage
// (v1, in ns).
CpuUsageReader cgroupCpuReader(InstanceManager& instances);

}  // namespace corral::daemon
