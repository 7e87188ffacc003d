// Groups of cattle, the pure part: validation naming the field, member names, the CPU policy's decisions.
#include "schema/group.h"

#include <gtest/gtest.h>

namespace corral::schema {
namespace {

GroupSpec validSpec() {
  GroupSpec spec;
  spec.name = "web";
  spec.launch.command = {"sleep", "1000"};
  spec.subnets = {"a", "b"};
  spec.min = 1;
  spec.max = 4;
  spec.desired = 2;
  return spec;
}

void expectRefused(const GroupSpec& spec, const std::string& field, const std::string& words) {
  Status status = validateGroupSpec(spec);
  ASSERT_FALSE(status) << "expected a refusal naming " << field;
  EXPECT_EQ(status.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(status.error().field(), field) << status.error().message();
  EXPECT_NE(status.error().message().find(words), std::string::npos) << status.error().message();
}

TEST(GroupSpec, AValidSpecPasses) {
  EXPECT_TRUE(validateGroupSpec(validSpec()));
  GroupSpec noDesired = validSpec();
  noDesired.desired.reset();
  EXPECT_TRUE(validateGroupSpec(noDesired));
  GroupSpec empty = validSpec();
  empty.min = 0;
  empty.desired = 0;
  EXPECT_TRUE(validateGroupSpec(empty));
}

TEST(GroupSpec, BoundsAreCheckedNamingTheField) {
  GroupSpec spec = validSpec();
  spec.min = 5;
  expectRefused(spec, "min", "greater than max");
  spec = validSpec();
  spec.min = -1;
  expectRefused(spec, "min", "negative");
  spec = validSpec();
  spec.max = 0;
  expectRefused(spec, "max", "between 1 and");
  spec = validSpec();
  spec.max = kMaxGroupSize + 1;
  expectRefused(spec, "max", "between 1 and");
  spec = validSpec();
  spec.desired = 5;
  expectRefused(spec, "desired", "outside [min 1, max 4]");
  spec = validSpec();
  spec.desired = 0;
  expectRefused(spec, "desired", "outside");
}

TEST(GroupSpec, NamesAndSubnetsAreChecked) {
  GroupSpec spec = validSpec();
  spec.name = "Web";
  expectRefused(spec, "name", "");
  spec = validSpec();
  spec.name = std::string(56, 'a');
  expectRefused(spec, "name", "members are NAME-<n>");
  spec = validSpec();
  spec.subnets = {};
  expectRefused(spec, "subnets", "at least one");
  spec = validSpec();
  spec.subnets = {"a", "a"};
  expectRefused(spec, "subnets[1]", "listed twice");
  spec = validSpec();
  spec.subnets = {"a", "B_"};
  expectRefused(spec, "subnets[1]", "");
}

TEST(GroupSpec, PerMemberFieldsAreRefusedInTheTemplate) {
  GroupSpec spec = validSpec();
  spec.launch.subnet = "a";
  expectRefused(spec, "template.subnet", "chosen by the group");
  spec = validSpec();
  spec.launch.ip = "10.0.0.5";
  expectRefused(spec, "template.ip", "share");
  spec = validSpec();
  spec.launch.publish = {"80:80"};
  expectRefused(spec, "template.publish", "share");
  spec = validSpec();
  spec.launch.removeOnExit = true;
  expectRefused(spec, "template.remove_on_exit", "");
  spec = validSpec();
  spec.launch.name = "other";
  expectRefused(spec, "template.name", "chosen by the group");
}

TEST(GroupSpec, ElbHealthNeedsATargetGroup) {
  GroupSpec spec = validSpec();
  spec.health = GroupHealth::elb;
  expectRefused(spec, "target_group", "needs a target group");
  spec.targetGroup = "tg-web";
  EXPECT_TRUE(validateGroupSpec(spec));
  auto parsed = parseGroupHealth("lb");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().field(), "health");
}

TEST(GroupMembers, NamesRoundTripAndOthersAreNotMembers) {
  EXPECT_EQ(groupMemberName("web", 1), "web-1");
  EXPECT_EQ(groupMemberName("web", 12), "web-12");
  EXPECT_EQ(groupMemberNumber("web", "web-12"), 12);
  EXPECT_EQ(groupMemberNumber("web", "web-0"), std::nullopt);
  EXPECT_EQ(groupMemberNumber("web", "web-01"), std::nullopt);
  EXPECT_EQ(groupMemberNumber("web", "web-"), std::nullopt);
  EXPECT_EQ(groupMemberNumber("web", "web-1x"), std::nullopt);
  EXPECT_EQ(groupMemberNumber("web", "webx-1"), std::nullopt);
  EXPECT_EQ(groupMemberNumber("web", "web-api-1"), std::nullopt);
}

// The policy, period by period, with synthetic averages: out after 2 above, in after 3 below half,
// within [min, max], and nothing within the cooldown.
TEST(CpuPolicyDecision, ScalesOutAfterTwoPeriodsAbove) {
  ScalingPolicy policy{50};
  PolicyState state;
  int64_t t = 1000;
  EXPECT_FALSE(decideScaling(policy, state, 90, 2, 1, 6, t));
  auto decision = decideScaling(policy, state, 90, 2, 1, 6, t += 10);
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->desired, 4);  // ceil(2 * 90 / 50)
  EXPECT_NE(decision->reason.find("above target"), std::string::npos);
}

TEST(CpuPolicyDecision, OnePeriodBelowResetsTheCount) {
  ScalingPolicy policy{50};
  PolicyState state;
  EXPECT_FALSE(decideScaling(policy, state, 90, 2, 1, 6, 0));
  EXPECT_FALSE(decideScaling(policy, state, 40, 2, 1, 6, 10));
  EXPECT_FALSE(decideScaling(policy, state, 90, 2, 1, 6, 20));
  EXPECT_TRUE(decideScaling(policy, state, 90, 2, 1, 6, 30));
}

TEST(CpuPolicyDecision, NeverAboveMaxOrBelowMin) {
  ScalingPolicy policy{10};
  PolicyState state;
  EXPECT_FALSE(decideScaling(policy, state, 100, 3, 1, 4, 0));
  auto decision = decideScaling(policy, state, 100, 3, 1, 4, 10);
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->desired, 4);
  PolicyState atMax;
  EXPECT_FALSE(decideScaling(policy, atMax, 100, 4, 1, 4, 100));
  EXPECT_FALSE(decideScaling(policy, atMax, 100, 4, 1, 4, 110));
  PolicyState atMin;
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(decideScaling(policy, atMin, 0, 1, 1, 4, 200 + i * 10));
}

TEST(CpuPolicyDecision, ScalesInOneAtATimeAfterThreePeriodsBelowHalf) {
  ScalingPolicy policy{50};
  PolicyState state;
  EXPECT_FALSE(decideScaling(policy, state, 10, 3, 1, 6, 0));
  EXPECT_FALSE(decideScaling(policy, state, 10, 3, 1, 6, 10));
  auto decision = decideScaling(policy, state, 10, 3, 1, 6, 20);
  ASSERT_TRUE(decision);
  EXPECT_EQ(decision->desired, 2);
  // 30 % is below target but not below half of it: no scale in.
  PolicyState between;
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(decideScaling(policy, between, 30, 3, 1, 6, i * 10));
}

TEST(CpuPolicyDecision, CooldownHoldsTheNextDecision) {
  ScalingPolicy policy{50};
  PolicyState state;
  decideScaling(policy, state, 90, 1, 1, 6, 0);
  ASSERT_TRUE(decideScaling(policy, state, 90, 1, 1, 6, 10));
  EXPECT_FALSE(decideScaling(policy, state, 90, 2, 1, 6, 20));
  EXPECT_FALSE(decideScaling(policy, state, 90, 2, 1, 6, 30));  // 20 s after: still cooling down
  EXPECT_TRUE(decideScaling(policy, state, 90, 2, 1, 6, 40 + kPolicyCooldownSeconds - 30));
}

// A shorter period (corrald --group-policy-period) brings a shorter cooldown with it.
TEST(CpuPolicyDecision, CooldownIsAParameter) {
  ScalingPolicy policy{50};
  PolicyState state;
  decideScaling(policy, state, 90, 1, 1, 6, 0, 3);
  ASSERT_TRUE(decideScaling(policy, state, 90, 1, 1, 6, 1, 3));
  EXPECT_FALSE(decideScaling(policy, state, 90, 2, 1, 6, 2, 3));
  EXPECT_FALSE(decideScaling(policy, state, 90, 2, 1, 6, 3, 3));
  EXPECT_TRUE(decideScaling(policy, state, 90, 2, 1, 6, 4, 3));
}

TEST(CpuPolicyDecision, NoSampleCountsNothing) {
  ScalingPolicy policy{50};
  PolicyState state;
  EXPECT_FALSE(decideScaling(policy, state, 90, 2, 1, 6, 0));
  EXPECT_FALSE(decideScaling(policy, state, std::nullopt, 2, 1, 6, 10));
  EXPECT_EQ(state.periodsAbove, 1);
}

TEST(ScalingPolicy, TargetIsChecked) {
  EXPECT_TRUE(validateScalingPolicy({50}));
  auto refused = validateScalingPolicy({0});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "cpu_target");
}

TEST(ScalingPolicy, RequestsPerTargetIsCheckedNamingItsField) {
  EXPECT_TRUE(validateScalingPolicy({100, PolicyMetric::requestsPerTarget}));
  auto refused = validateScalingPolicy({0, PolicyMetric::requestsPerTarget});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "requests_per_target");
  EXPECT_FALSE(validateScalingPolicy({2000000, PolicyMetric::requestsPerTarget}));
}

// The requests counted between two samples of the load balancers' backend counters.
TEST(RequestsPolicy, CountersAreDifferencedPerLoadBalancer) {
  RequestCounters before{{"front", {0, 100}}, {"back", {2, 40}}};
  RequestCounters now{{"front", {0, 160}}, {"back", {2, 45}}};
  EXPECT_EQ(requestsBetween(before, now), 65);
  EXPECT_EQ(requestsBetween(now, now), 0);
}

// A reload (a new generation) or a restart HAProxy's counters began again at 0 from: what the new worker
// counted, never a negative figure nor the old worker's whole history as a spike.
TEST(RequestsPolicy, AResetCounterCountsOnlyWhatCameSince) {
  RequestCounters before{{"front", {3, 5000}}};
  EXPECT_EQ(requestsBetween(before, {{"front", {4, 30}}}), 30) << "reloaded: a new generation";
  EXPECT_EQ(requestsBetween(before, {{"front", {4, 9000}}}), 9000)
      << "reloaded and busy since: still only the new worker's count";
  EXPECT_EQ(requestsBetween(before, {{"front", {3, 12}}}), 12)
      << "the counter went down within one generation (a reload between the two reads)";
  EXPECT_EQ(requestsBetween({{"front", {0, 0}}}, {{"front", {0, 0}}, {"new", {0, 123456}}}), 0)
      << "a load balancer not sampled before counts nothing this period";
  EXPECT_EQ(requestsBetween(before, {}), 0) << "one that stopped answering counts nothing";
}

TEST(RequestsPolicy, PerHealthyTargetPerMinute) {
  EXPECT_EQ(requestsPerTargetPerMinute(300, 3, 60), 100.0);
  EXPECT_EQ(requestsPerTargetPerMinute(20, 2, 2), 300.0);  // 10 each in 2 s: 300 a minute
  EXPECT_EQ(requestsPerTargetPerMinute(20, 0, 2), std::nullopt) << "no healthy target: no figure";
  EXPECT_EQ(requestsPerTargetPerMinute(20, 2, 0), std::nullopt);
}

// The same decision as the CPU policy's, on requests per target per minute, with synthetic figures.
TEST(RequestsPolicy, DecidesOutAndInOnRequestsPerTarget) {
  ScalingPolicy policy{100, PolicyMetric::requestsPerTarget};
  PolicyState state;
  EXPECT_FALSE(decideScaling(policy, state, 250, 2, 1, 6, 0));
  auto out = decideScaling(policy, state, 250, 2, 1, 6, 10);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->desired, 5);  // ceil(2 * 250 / 100): the requests spread over five
  EXPECT_NE(out->reason.find("requests per target 250/min above target 100/min"), std::string::npos)
      << out->reason;
  PolicyState idle;
  EXPECT_FALSE(decideScaling(policy, idle, 0, 5, 1, 6, 100));
  EXPECT_FALSE(decideScaling(policy, idle, 0, 5, 1, 6, 110));
  auto in = decideScaling(policy, idle, 0, 5, 1, 6, 120);
  ASSERT_TRUE(in);
  EXPECT_EQ(in->desired, 4);
  EXPECT_NE(in->reason.find("below half of target 100/min"), std::string::npos) << in->reason;
}

}  // namespace
}  // namespace corral::schema
