// Groups of cattle (auto scaling): what a user asks a group to be, the names of its members, and the
// target-tracking policy's decision. Pure: daemon/groups.h checks what needs the host (subnets, images)
// and keeps the members.
#pragma once

#include <cstdint>
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

// A simple target-tracking policy on the members' average CPU (percent of one CPU each).
struct CpuPolicy {
  double targetPercent = 0;  // 1..1000
  bool operator==(const CpuPolicy&) const = default;
};
Status validateCpuPolicy(const CpuPolicy& policy);

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
// One period's decision: `averagePercent` is the members' average over the period (nullopt: no sample,
// nothing counted). Scales out after kScaleOutPeriods periods above target (to ceil(desired * average /
// target), at least one more), in after kScaleInPeriods periods below half the target (one fewer), within
// [min, max], not within `cooldownSeconds` of the last scaling. nullopt: desired stays.
std::optional<PolicyDecision> decideScaling(const CpuPolicy& policy, PolicyState& state,
                                            std::optional<double> averagePercent, int64_t desired,
                                            int64_t min, int64_t max, int64_t now,
                                            int64_t cooldownSeconds = kPolicyCooldownSeconds);

}  // namespace corral::schema
