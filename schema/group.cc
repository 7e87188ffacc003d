// Groups: validation, member names and the scaling policy's decision (schema/group.h).
#include "schema/group.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "schema/names.h"

namespace corral::schema {

std::string_view groupHealthName(GroupHealth health) {
  return health == GroupHealth::elb ? "elb" : "instance";
}

Result<GroupHealth> parseGroupHealth(std::string_view text, std::string_view field) {
  if (text == "instance") return GroupHealth::instance;
  if (text == "elb") return GroupHealth::elb;
  return fail(invalidField(std::string(field), "health \"{}\" is not instance or elb", text));
}

Status validateDesired(int64_t desired, int64_t min, int64_t max) {
  if (desired < min || desired > max)
    return fail(invalidField("desired", "desired {} is outside [min {}, max {}]", desired, min, max));
  return {};
}

Status validateGroupSpec(const GroupSpec& spec) {
  if (Status valid = validateName(spec.name, "name"); !valid) return valid;
  // A member's name is NAME-<n>: room for the largest n a group of kMaxGroupSize replaced many times.
  if (spec.name.size() > kMaxNameLength - 8)
    return fail(invalidField("name", "group name \"{}\" is longer than {} characters (members are NAME-<n>)",
                             spec.name, kMaxNameLength - 8));
  if (spec.min < 0) return fail(invalidField("min", "min {} is negative", spec.min));
  if (spec.max < 1 || spec.max > kMaxGroupSize)
    return fail(invalidField("max", "max {} is not between 1 and {}", spec.max, kMaxGroupSize));
  if (spec.min > spec.max)
    return fail(invalidField("min", "min {} is greater than max {}", spec.min, spec.max));
  if (Status valid = validateDesired(spec.desired.value_or(spec.min), spec.min, spec.max); !valid)
    return valid;
  if (spec.subnets.empty()) return fail(invalidField("subnets", "a group needs at least one subnet"));
  std::set<std::string_view> seen;
  for (size_t i = 0; i < spec.subnets.size(); ++i) {
    const std::string field = fmt::format("subnets[{}]", i);
    if (Status valid = validateName(spec.subnets[i], field); !valid) return valid;
    if (!seen.insert(spec.subnets[i]).second)
      return fail(invalidField(field, "subnet \"{}\" is listed twice", spec.subnets[i]));
  }
  const InstanceSpec& launch = spec.launch;
  if (!launch.name.empty() && launch.name != spec.name)
    return fail(invalidField("template.name", "a member's name is chosen by the group (NAME-<n>)"));
  if (!launch.subnet.empty())
    return fail(invalidField("template.subnet", "a member's subnet is chosen by the group from \"subnets\""));
  if (!launch.ip.empty())
    return fail(invalidField("template.ip", "members cannot share one private address"));
  if (!launch.publicAddress.empty())
    return fail(invalidField("template.public_address", "members cannot share one public address"));
  if (!launch.publish.empty())
    return fail(invalidField("template.publish", "members cannot share one published gateway port"));
  if (launch.removeOnExit)
    return fail(invalidField("template.remove_on_exit", "the group removes its ended members itself"));
  if (launch.tty || launch.stdinOpen)
    return fail(invalidField("template.tty", "members are not interactive"));
  if (spec.health == GroupHealth::elb && spec.targetGroup.empty())
    return fail(invalidField("target_group", "health elb needs a target group"));
  if (!spec.targetGroup.empty()) {
    if (Status valid = validateName(spec.targetGroup, "target_group"); !valid) return valid;
  }
  return {};
}

std::string groupMemberName(std::string_view group, int64_t number) {
  return fmt::format("{}-{}", group, number);
}

std::optional<int64_t> groupMemberNumber(std::string_view group, std::string_view name) {
  if (name.size() <= group.size() + 1 || !name.starts_with(group) || name[group.size()] != '-')
    return std::nullopt;
  std::string_view digits = name.substr(group.size() + 1);
  if (digits.front() == '0') return std::nullopt;
  int64_t number = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
  if (ec != std::errc() || end != digits.data() + digits.size() || number < 1) return std::nullopt;
  return number;
}

std::string_view policyMetricField(PolicyMetric metric) {
  return metric == PolicyMetric::requestsPerTarget ? "requests_per_target" : "cpu_target";
}

Status validateScalingPolicy(const ScalingPolicy& policy) {
  if (policy.metric == PolicyMetric::requestsPerTarget) {
    if (!(policy.target >= 1 && policy.target <= 1000000))
      return fail(invalidField("requests_per_target",
                               "requests per target {} is not between 1 and 1000000 (per target per minute)",
                               policy.target));
    return {};
  }
  if (!(policy.target >= 1 && policy.target <= 1000))
    return fail(invalidField("cpu_target", "CPU target {} is not between 1 and 1000 (percent of one CPU)",
                             policy.target));
  return {};
}

std::string policyFigure(PolicyMetric metric, double value) {
  return metric == PolicyMetric::requestsPerTarget ? fmt::format("{:.0f}/min", value)
                                                   : fmt::format("{:.0f}%", value);
}

int64_t requestsBetween(const RequestCounters& before, const RequestCounters& now) {
  int64_t requests = 0;
  for (const auto& [balancer, counter] : now) {
    auto earlier = before.find(balancer);
    if (earlier == before.end()) continue;
    const RequestCounter& was = earlier->second;
    if (counter.generation != was.generation || counter.total < was.total)
      requests += std::max<int64_t>(counter.total, 0);
    else
      requests += counter.total - was.total;
  }
  return requests;
}

std::optional<double> requestsPerTargetPerMinute(int64_t requests, int64_t healthyTargets, double seconds) {
  if (healthyTargets < 1 || !(seconds > 0)) return std::nullopt;
  return static_cast<double>(requests) / static_cast<double>(healthyTargets) * 60.0 / seconds;
}

std::optional<PolicyDecision> decideScaling(const ScalingPolicy& policy, PolicyState& state,
                                            std::optional<double> measured, int64_t desired, int64_t min,
                                            int64_t max, int64_t now, int64_t cooldownSeconds) {
  if (!measured) return std::nullopt;
  const double value = *measured;
  state.periodsAbove = value > policy.target ? state.periodsAbove + 1 : 0;
  state.periodsBelow = value < policy.target / 2 ? state.periodsBelow + 1 : 0;
  if (state.lastScaledAt && now - *state.lastScaledAt < cooldownSeconds) return std::nullopt;
  const std::string what =
      policy.metric == PolicyMetric::requestsPerTarget ? "requests per target" : "average CPU";
  const std::string figure = policyFigure(policy.metric, value);
  const std::string target = policyFigure(policy.metric, policy.target);
  std::optional<PolicyDecision> decision;
  if (state.periodsAbove >= kScaleOutPeriods && desired < max) {
    const auto wanted = static_cast<int64_t>(
        std::ceil(static_cast<double>(std::max<int64_t>(desired, 1)) * value / policy.target));
    decision = PolicyDecision{
        std::clamp<int64_t>(std::max(wanted, desired + 1), min, max),
        fmt::format("{} {} above target {} for {} periods", what, figure, target, state.periodsAbove)};
  } else if (state.periodsBelow >= kScaleInPeriods && desired > min) {
    decision = PolicyDecision{desired - 1, fmt::format("{} {} below half of target {} for {} periods", what,
                                                       figure, target, state.periodsBelow)};
  }
  if (decision) {
    state.lastScaledAt = now;
    state.periodsAbove = state.periodsBelow = 0;
  }
  return decision;
}

}  // namespace corral::schema
