// Groups of cattle (auto scaling): what a user asks a group to be, the names of its members, and the
// target-tracking policy's decision. Pure: daemon/groups.h checks what needs the host (subnets, images)
// and keeps the members.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "schema/instance.h"

namespace corral::schema {

inline constexpr int64_t kMaxGroupSize = 100;

// How a member's health is judged: "instance" (it runs) or "elb" (its target group says it is healthy;
// needs load balancers, daemon/groups.h ElbHealth).
enum class GroupHealth { instance, elb };
std::string_view groupHealthName(GroupHealth health);
Result<GroupHealth> parseGroupHealth(std::string_view text, std::string_view field = "health");

struct GroupSpec {
  std::string name;
  // The launch template: the same fields as POST /v1/instances; its name and subnet are set per member.
  InstanceSpec launch;
  std::vector<std::string> subnets;  // members are spread across these (fewest members first)
  int64_t min = 0;
  int64_t max = 0;
  std::optional<int64_t> desired;  // absent: min
  GroupHealth health = GroupHealth::instance;
  std::string targetGroup;  // health elb: the target group asked about
  bool operator==(const GroupSpec&) const = default;
};

// The model's checks, each naming its field: the name (a member's name NAME-<n> must stay a valid
// instance name), min/max/desired (0 <= min <= desired <= max <= kMaxGroupSize), subnets (at least one,
// none twice), the template (no name, subnet or ip of its own: those are per member; no --rm), health elb
// with a target group.
Status validateGroupSpec(const GroupSpec& spec);
// A desired count within the group's bounds (field "desired").
Status validateDesired(int64_t desired, int64_t min, int64_t max);

// Member n of group `group`: "GROUP-n". n counts from 1 and is never reused.
std::string groupMemberName(std::string_view group, int64_t number);
// n of a name groupMemberName made for `group`, or nullopt.
std::optional<int64_t> groupMemberNumber(std::string_view group, std::string_view name);

// A simple target-tracking policy: keep a metric of the group near `target`. One kind at a time per group.
// - cpu: the members' average CPU, in percent of one CPU each (1..1000; containers only).
// - requestsPerTarget: requests the group's target group's HAProxy backends forwarded over the period,
//   per healthy target and per minute (AWS's ALBRequestCountPerTarget; 1..1000000). Needs a target group.
enum class PolicyMetric { cpu, requestsPerTarget };
std::string_view policyMetricField(PolicyMetric metric);  // "cpu_target", "requests_per_target"
struct ScalingPolicy {
  double target = 0;
  PolicyMetric metric = PolicyMetric::cpu;
  bool operator==(const ScalingPolicy&) const = default;
};
Status validateScalingPolicy(const ScalingPolicy& policy);  // the target's range, naming the metric's field
// "average CPU 90% above target 50%"'s figures: "90%" or "150/min".
std::string policyFigure(PolicyMetric metric, double value);

// One load balancer's cumulative request count for a target group's backend (HAProxy's req_tot, else stot)
// and the generation of the HAProxy worker it was read from (its restarts plus reloads: a new worker counts
// from 0).
struct RequestCounter {
  int64_t generation = 0;
  int64_t total = 0;
  bool operator==(const RequestCounter&) const = default;
};
using RequestCounters = std::map<std::string, RequestCounter, std::less<>>;  // by load balancer
// Requests counted between two samples, summed over the load balancers: each one's difference; one whose
// generation changed or whose counter went down (HAProxy reloaded or restarted: its counters began again
// at 0) counts what it holds now (the requests since the reset, never a negative or a whole history); one
// not sampled before counts nothing (its history is not this period's).
int64_t requestsBetween(const RequestCounters& before, const RequestCounters& now);
// Requests per healthy target per minute over `seconds`; nullopt without a healthy target or time.
std::optional<double> requestsPerTargetPerMinute(int64_t requests, int64_t healthyTargets, double seconds);

inline constexpr int kScaleOutPeriods = 2;  // periods above target before scaling out
inline constexpr int kScaleInPeriods = 3;   // periods below half the target before scaling in
inline constexpr int64_t kPolicyPeriodSeconds = 10;
inline constexpr int64_t kPolicyCooldownSeconds = 30;

// What the policy remembers between periods.
struct PolicyState {
  int periodsAbove = 0;
  int periodsBelow = 0;
  std::optional<int64_t> lastScaledAt;  // seconds
};
struct PolicyDecision {
  int64_t desired = 0;
  std::string reason;
};
// One period's decision: `measured` is the policy's metric over the period (the members' average CPU, or
// requests per target per minute; nullopt: no sample, nothing counted). Scales out after kScaleOutPeriods
// periods above target (to ceil(desired * measured / target), at least one more), in after
// kScaleInPeriods periods below half the target (one fewer), within [min, max], not within
// `cooldownSeconds` of the last scaling. nullopt: desired stays.
std::optional<PolicyDecision> decideScaling(const ScalingPolicy& policy, PolicyState& state,
                                            std::optional<double> measured, int64_t desired, int64_t min,
                                            int64_t max, int64_t now,
                                            int64_t cooldownSeconds = kPolicyCooldownSeconds);

}  // namespace corral::schema
