// The group controller (daemon/groups.h): stored groups, their events, and the pass that keeps each one's
// members at `desired`.
#include "daemon/groups.h"

#include <fmt/format.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <tuple>

#include "api/body_codec.h"
#include "core/log.h"

namespace corral::daemon {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
using Member = InstanceManager::GroupMember;

int64_t nowSeconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}
int64_t nowMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool isHealthy(InstanceState state) {
  return state == InstanceState::running || state == InstanceState::starting;
}
// A member on its way out or in: neither counted healthy nor replaced yet.
bool isBusy(InstanceState state) {
  return state == InstanceState::stopping || state == InstanceState::removing;
}

json policyObject(const schema::ScalingPolicy& policy) {
  return json{{std::string(schema::policyMetricField(policy.metric)), policy.target}};
}

std::optional<std::string> policyJson(const std::optional<schema::ScalingPolicy>& policy) {
  if (!policy) return std::nullopt;
  return policyObject(*policy).dump();
}

std::string_view policyName(schema::PolicyMetric metric) {
  return metric == schema::PolicyMetric::requestsPerTarget ? "requests-per-target" : "CPU";
}

std::string endingText(const Member& member) {
  std::string text = member.exitReason ? std::string(exitReasonName(*member.exitReason)) : "not running";
  if (member.exitSignal)
    text += fmt::format(" (signal {})", *member.exitSignal);
  else if (member.exitCode)
    text += fmt::format(" (code {})", *member.exitCode);
  return text;
}

// The member numbers, newest first.
std::vector<Member> newestFirst(std::vector<Member> members, const std::string& group) {
  std::sort(members.begin(), members.end(), [&](const Member& a, const Member& b) {
    return schema::groupMemberNumber(group, a.name).value_or(0) >
           schema::groupMemberNumber(group, b.name).value_or(0);
  });
  return members;
}

}  // namespace

int64_t TargetGroupSnapshot::healthyTargets() const {
  return std::count_if(targets.begin(), targets.end(), [](const Target& t) { return t.state == "healthy"; });
}

Result<std::unique_ptr<GroupController>> GroupController::load(Store& store, InstanceManager& instances,
                                                               SpecCheck check, CpuUsageReader cpu,
                                                               TargetGroupSeam* targetGroups,
                                                               GroupOptions options) {
  auto controller = std::make_unique<GroupController>(store, instances, std::move(check), std::move(cpu),
                                                      targetGroups, options);
  auto rows = store.listGroups();
  if (!rows) return fail(rows.error());
  for (GroupRow& row : *rows) {
    auto group = groupFromRow(row);
    if (!group) return fail(group.error());
    controller->groups_.emplace(row.name, std::move(*group));
  }
  return controller;
}

Result<GroupController::Group> GroupController::groupFromRow(const GroupRow& row) {
  auto spec = api::parseBody<schema::GroupSpec>("POST", "/v1/groups", row.specJson);
  if (!spec) return fail(spec.error().wrap(fmt::format("group \"{}\": stored spec", row.name)));
  Group group;
  group.spec = std::move(*spec);
  group.row = row;
  if (row.policyJson) {
    auto policy = api::parseBody<api::PolicyBody>("POST", "/v1/groups/policy", *row.policyJson);
    if (!policy) return fail(policy.error().wrap(fmt::format("group \"{}\": stored policy", row.name)));
    group.policy = policy->policy;
  }
  return group;
}

GroupController::GroupController(Store& store, InstanceManager& instances, SpecCheck check,
                                 CpuUsageReader cpu, TargetGroupSeam* targetGroups, GroupOptions options)
    : store_(store),
      instances_(instances),
      local_(instances),
      fleet_(&local_),
      check_(std::move(check)),
      cpu_(std::move(cpu)),
      targetGroups_(targetGroups),
      options_(options) {}

GroupController::~GroupController() {
  if (thread_.joinable()) {
    thread_.request_stop();
    wake();
    thread_.join();
  }
  instances_.setEndedListener({});
}

std::vector<Member> GroupController::allMembers(const std::optional<std::string>& only) {
  std::set<std::string> names;
  if (only) {
    names.insert(*only);
  } else {
    std::lock_guard lock(mutex_);
    for (const auto& [name, group] : groups_) names.insert(name);
  }
  return fleet().members(names);
}

void GroupController::setFleet(GroupFleet* fleet) {
  fleet_.store(fleet != nullptr ? fleet : &local_);
  wake();
}

void GroupController::start() {
  if (thread_.joinable()) return;
  instances_.setEndedListener([this] { wake(); });
  thread_ = std::jthread([this](std::stop_token stop) { loop(stop); });
}

void GroupController::wake() {
  {
    std::lock_guard lock(mutex_);
    woken_ = true;
  }
  wakeUp_.notify_all();
}

void GroupController::loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    reconcileAll();
    std::unique_lock lock(mutex_);
    wakeUp_.wait_for(lock, options_.reconcileEvery, [&] { return woken_ || stop.stop_requested(); });
    woken_ = false;
  }
}

void GroupController::reconcileAll() {
  std::lock_guard pass(passMutex_);
  for (const GroupFleet::TakenOver& taken : fleet().takeOver()) adopt(taken);
  // Each group kept here still is (on a cluster, its claim names this host; its row is published there).
  std::vector<std::string> names;
  std::vector<GroupRow> rows;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, group] : groups_) rows.push_back(group.row);
  }
  for (const GroupRow& row : rows) {
    switch (fleet().hold(row)) {
      case GroupFleet::Hold::kept:
        names.push_back(row.name);
        break;
      case GroupFleet::Hold::elsewhere:
        forget(row.name);
        break;
      case GroupFleet::Hold::unknown:
        break;
    }
  }
  std::vector<Member> members = allMembers();
  removeOrphans(members);
  if (Clock::now() - lastPolicyAt_ >= options_.policyPeriod) {
    lastPolicyAt_ = Clock::now();
    samplePolicies();
  }
  for (const std::string& name : names) {
    std::vector<Member> own;
    for (const Member& member : members)
      if (member.group == name) own.push_back(member);
    reconcileGroup(name, std::move(own));
  }
}

// This host's members of a group that is gone (removed while corrald was down halfway through `group rm
// --force`); on a cluster, members of another host's group are its own to count.
void GroupController::removeOrphans(const std::vector<Member>& members) {
  std::vector<Member> candidates;
  {
    std::lock_guard lock(mutex_);
    for (const Member& member : members)
      if (member.host.empty() && !groups_.contains(member.group) && !isBusy(member.state))
        candidates.push_back(member);
  }
  if (candidates.empty()) return;
  const std::vector<std::string> others = fleet().othersGroups();
  std::vector<std::string> orphans;
  for (const Member& member : candidates)
    if (std::find(others.begin(), others.end(), member.group) == others.end()) orphans.push_back(member.name);
  if (orphans.empty()) return;
  log::info("groups: removing {} member(s) of groups that no longer exist", orphans.size());
  if (auto removed = terminate(orphans); !removed)
    log::warn("groups: removing members of removed groups: {}", removed.error().message());
}

void GroupController::adopt(const GroupFleet::TakenOver& taken) {
  GroupRow row = taken.row;
  auto group = groupFromRow(row);
  if (!group) {
    log::warn("taken over from host {}, but unreadable: {}", taken.from, group.error().message());
    return;
  }
  // A number the lost host handed out after it last published the row is not handed out again.
  for (const Member& member : fleet().members({row.name})) {
    if (member.group != row.name) continue;
    if (auto number = schema::groupMemberNumber(row.name, member.name))
      row.nextMember = std::max(row.nextMember, *number + 1);
  }
  {
    std::lock_guard lock(mutex_);
    if (groups_.contains(row.name)) return;
  }
  if (Status saved = store_.putGroup(row); !saved) {
    log::warn("group \"{}\": taken over from host {}, but not stored: {}", row.name, taken.from,
              saved.error().message());
    return;
  }
  group->row = row;
  {
    std::lock_guard lock(mutex_);
    groups_.emplace(row.name, std::move(*group));
  }
  record(row.name, "taken-over", std::nullopt,
         fmt::format("its host {} is lost; this host keeps the group from now on", taken.from));
}

void GroupController::forget(const std::string& name) {
  {
    std::lock_guard lock(mutex_);
    groups_.erase(name);
  }
  if (Status gone = store_.deleteGroup(name); !gone)
    log::warn("group \"{}\": forgetting it: {}", name, gone.error().message());
  log::info(
      "group \"{}\": another host took it over (this host was lost); forgotten here, its members here "
      "run on and are counted there",
      name);
  ++revision_;
}

Result<std::vector<Result<json>>> GroupController::terminate(const std::vector<std::string>& names) {
  if (targetGroups_) targetGroups_->deregisterEverywhere(names);
  return fleet().remove(names);
}

void GroupController::reconcileGroup(const std::string& name, std::vector<Member> members) {
  std::string targetGroup;
  bool elbHealth = false;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return;
    targetGroup = it->second.spec.targetGroup;
    elbHealth = it->second.spec.health == schema::GroupHealth::elb;
  }
  if (!targetGroup.empty() && targetGroups_) refreshTargetHealth(name, targetGroup);
  // 1. Members that ended (exited, killed, failed to start) or, with health elb, that their target group's
  // health check marks DOWN, are terminated, to be replaced.
  std::vector<std::string> ended;
  std::vector<std::string> why;
  std::vector<Member> healthy;
  std::vector<std::string> lost;
  for (const Member& member : members) {
    if (member.lost) {
      // Its host is lost: it can be neither reached nor removed; counted out, it is replaced (in a zone
      // with a live host), and counts again if its host comes back (the surplus then scales in).
      lost.push_back(member.name);
      continue;
    }
    if (isHealthy(member.state)) {
      std::optional<std::string> down;
      if (elbHealth && targetGroups_ && member.state == InstanceState::running)
        down = targetGroups_->unhealthyReason(targetGroup, member.name);
      if (!down) {
        healthy.push_back(member);
        continue;
      }
      ended.push_back(member.name);
      why.push_back(fmt::format("unhealthy in target group {}: {}; replacing it", targetGroup, *down));
    } else if (!isBusy(member.state)) {
      ended.push_back(member.name);
      why.push_back(fmt::format("unhealthy: {}; replacing it", endingText(member)));
    }
  }
  std::vector<std::string> newlyLost;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return;
    for (const std::string& member : lost)
      if (it->second.lostMembers.insert(member).second) newlyLost.push_back(member);
    std::erase_if(it->second.lostMembers, [&](const std::string& member) {
      return std::find(lost.begin(), lost.end(), member) == lost.end();
    });
  }
  for (const std::string& member : newlyLost) {
    auto host =
        std::find_if(members.begin(), members.end(), [&](const Member& m) { return m.name == member; });
    record(name, "lost", member, fmt::format("its host {} is lost; replacing it", host->host));
  }
  // Running members join the target group (again, after a crash between a launch and its registration).
  if (!targetGroup.empty() && targetGroups_) {
    for (const Member& member : healthy) {
      if (member.state != InstanceState::running) continue;
      if (Status registered = targetGroups_->registerTarget(targetGroup, member.name); !registered)
        log::warn("group \"{}\": registering {} in target group \"{}\": {}", name, member.name, targetGroup,
                  registered.error().message());
    }
  }
  if (!ended.empty()) {
    auto removed = terminate(ended);
    for (size_t i = 0; i < ended.size(); ++i) {
      if (removed && (*removed)[i]) {
        record(name, "terminated", ended[i], why[i]);
      } else {
        const std::string failure = removed ? (*removed)[i].error().message() : removed.error().message();
        record(name, "terminate-failed", ended[i], failure);
      }
    }
  }
  int64_t desired = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return;
    desired = it->second.row.desired;
  }
  // 2. Scale in: the newest members go first, in one batch.
  if (static_cast<int64_t>(healthy.size()) > desired) {
    std::vector<Member> ordered = newestFirst(healthy, name);
    std::vector<std::string> surplus;
    for (size_t i = 0; i < healthy.size() - static_cast<size_t>(desired); ++i)
      surplus.push_back(ordered[i].name);
    auto removed = terminate(surplus);
    for (size_t i = 0; i < surplus.size(); ++i) {
      if (removed && (*removed)[i])
        record(name, "terminated", surplus[i], fmt::format("scale in to desired {}", desired));
      else
        record(name, "terminate-failed", surplus[i],
               removed ? (*removed)[i].error().message() : removed.error().message());
    }
    return;
  }
  // 3. Scale out or replace, one member at a time, backing off after a failure.
  while (static_cast<int64_t>(healthy.size()) < desired) {
    {
      std::lock_guard lock(mutex_);
      auto it = groups_.find(name);
      if (it == groups_.end() || Clock::now() < it->second.nextLaunchAt) return;
    }
    if (Status launched = launchMember(name, healthy); !launched) return;
    std::vector<Member> now;
    for (const Member& member : allMembers(name))
      if (member.group == name && !member.lost && isHealthy(member.state)) now.push_back(member);
    if (now.size() <= healthy.size()) return;  // it ended at once: the next pass replaces it
    healthy = std::move(now);
  }
}

Status GroupController::launchMember(const std::string& name, const std::vector<Member>& healthy) {
  schema::InstanceSpec spec;
  GroupRow row;
  std::vector<std::string> subnets;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return fail(notFound("group \"{}\" not found", name));
    const Group& group = it->second;
    subnets = group.spec.subnets;
  }
  // Only subnets a member can be launched in now: on a cluster, those whose AZ has a live host.
  std::erase_if(subnets, [&](const std::string& subnet) { return !fleet().canLaunchIn(subnet); });
  if (subnets.empty()) {
    record(name, "launch-failed", std::nullopt,
           "no subnet of the group has a live host in its availability zone; next attempt in 1 s");
    std::lock_guard lock(mutex_);
    if (auto it = groups_.find(name); it != groups_.end())
      it->second.nextLaunchAt = Clock::now() + std::chrono::seconds(1);
    return fail(conflict("group \"{}\": no subnet has a live host in its availability zone", name));
  }
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return fail(notFound("group \"{}\" not found", name));
    Group& group = it->second;
    // AZ balance: the subnet with the fewest healthy members, the first listed on a tie.
    std::string subnet;
    size_t fewest = SIZE_MAX;
    for (const std::string& candidate : subnets) {
      const size_t count = static_cast<size_t>(std::count_if(
          healthy.begin(), healthy.end(), [&](const Member& m) { return m.subnet == candidate; }));
      if (count < fewest) {
        fewest = count;
        subnet = candidate;
      }
    }
    spec = group.spec.launch;
    spec.name = schema::groupMemberName(name, group.row.nextMember);
    spec.subnet = subnet;
    spec.group = name;
    // The number is taken (stored) before the member exists, so no crash can hand it out twice.
    row = group.row;
    row.nextMember += 1;
    if (Status saved = store_.putGroup(row); !saved) return fail(saved.error());
    group.row = row;
  }
  auto started = fleet().run(spec);
  if (!started) {
    std::chrono::seconds backoff{1};
    {
      std::lock_guard lock(mutex_);
      if (auto it = groups_.find(name); it != groups_.end()) {
        Group& group = it->second;
        group.launchFailures += 1;
        backoff = std::min<std::chrono::seconds>(
            options_.maxBackoff, std::chrono::seconds(int64_t{1} << std::min(group.launchFailures - 1, 10)));
        group.nextLaunchAt = Clock::now() + backoff;
      }
    }
    // A half-made member (if any) is removed as unhealthy by the next pass.
    record(name, "launch-failed", spec.name,
           fmt::format("{}; next attempt in {} s", started.error().message(), backoff.count()));
    return fail(started.error());
  }
  std::string targetGroup;
  {
    std::lock_guard lock(mutex_);
    if (auto it = groups_.find(name); it != groups_.end()) {
      it->second.launchFailures = 0;
      targetGroup = it->second.spec.targetGroup;
    }
  }
  std::string where = fmt::format("in subnet {}", spec.subnet);
  if (!targetGroup.empty() && targetGroups_) {
    // A member still starting (a VM booting) is registered by a later pass, once it runs.
    if (fleet().stateOf(spec.name) == InstanceState::running) {
      if (Status registered = targetGroups_->registerTarget(targetGroup, spec.name); registered)
        where += fmt::format(", registered in target group {}", targetGroup);
      else
        where += fmt::format(", not registered in target group {} yet: {}", targetGroup,
                             registered.error().message());
    }
  }
  record(name, "launched", spec.name, where);
  return {};
}

void GroupController::record(const std::string& group, std::string kind, std::optional<std::string> instance,
                             std::string message) {
  log::info("group \"{}\": {} {}: {}", group, kind, instance.value_or("-"), message);
  GroupEventRow event{.id = 0,
                      .atMs = nowMillis(),
                      .kind = std::move(kind),
                      .instance = std::move(instance),
                      .message = std::move(message)};
  if (auto saved = store_.insertGroupEvent(group, event, options_.keptEvents); !saved)
    log::warn("group \"{}\": recording an event: {}", group, saved.error().message());
  ++revision_;
}

void GroupController::samplePolicies() {
  const auto now = Clock::now();
  std::map<std::string, CpuSample> samples;
  std::vector<std::tuple<std::string, schema::ScalingPolicy, std::string>> withPolicy;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, group] : groups_)
      if (group.policy) withPolicy.emplace_back(name, *group.policy, group.spec.targetGroup);
  }
  if (withPolicy.empty()) {
    cpuSamples_.clear();
    return;
  }
  std::vector<Member> members = allMembers();
  for (auto& [name, policy, targetGroup] : withPolicy) {
    std::optional<double> measured;
    if (policy.metric == schema::PolicyMetric::requestsPerTarget) {
      measured = sampleRequests(name, targetGroup);
    } else {
      double total = 0;
      int counted = 0;
      for (const Member& member : members) {
        if (member.group != name || member.state != InstanceState::running) continue;
        std::optional<int64_t> usage = cpu_ ? cpu_(member.name) : std::nullopt;
        if (!usage) continue;
        samples[member.name] = {*usage, now};
        auto before = cpuSamples_.find(member.name);
        if (before == cpuSamples_.end()) continue;
        const double micros = std::chrono::duration<double, std::micro>(now - before->second.at).count();
        if (micros <= 0) continue;
        total += 100.0 * static_cast<double>(*usage - before->second.usageMicros) / micros;
        ++counted;
      }
      if (counted > 0) measured = total / counted;
    }
    GroupRow row;
    std::optional<schema::PolicyDecision> decision;
    {
      std::lock_guard lock(mutex_);
      auto it = groups_.find(name);
      if (it == groups_.end()) continue;
      Group& group = it->second;
      if (policy.metric == schema::PolicyMetric::requestsPerTarget)
        group.lastRequestsPerTarget = measured;
      else
        group.lastCpuPercent = measured;
      decision = schema::decideScaling(policy, group.policyState, measured, group.row.desired, group.spec.min,
                                       group.spec.max, nowSeconds(), 3 * options_.policyPeriod.count());
      if (!decision) continue;
      row = group.row;
      row.desired = decision->desired;
      if (Status saved = store_.putGroup(row); !saved) {
        log::warn("group \"{}\": policy scaling: {}", name, saved.error().message());
        continue;
      }
      group.row = row;
    }
    record(name, "scaled", std::nullopt,
           fmt::format("desired {} by the {} policy: {}", decision->desired, policyName(policy.metric),
                       decision->reason));
  }
  cpuSamples_ = std::move(samples);
}

std::optional<double> GroupController::sampleRequests(const std::string& name,
                                                      const std::string& targetGroup) {
  if (!targetGroups_ || targetGroup.empty()) return std::nullopt;
  std::optional<TargetGroupSnapshot> seen = targetGroups_->snapshot(targetGroup);
  const auto now = Clock::now();
  std::lock_guard lock(mutex_);
  auto it = groups_.find(name);
  if (it == groups_.end()) return std::nullopt;
  Group& group = it->second;
  if (!seen) {
    group.requestSample.reset();
    return std::nullopt;
  }
  std::optional<double> measured;
  if (group.requestSample) {
    const auto& [before, at] = *group.requestSample;
    measured = schema::requestsPerTargetPerMinute(schema::requestsBetween(before, seen->requests),
                                                  seen->healthyTargets(),
                                                  std::chrono::duration<double>(now - at).count());
  }
  group.requestSample.emplace(seen->requests, now);
  return measured;
}

// The dashboard's view of the group's target group, read every targetHealthEvery by the controller's pass
// (the page's polls read what is kept); a change of health moves the revision so the page is drawn again.
void GroupController::refreshTargetHealth(const std::string& name, const std::string& targetGroup) {
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end() || Clock::now() - it->second.targetHealthAt < options_.targetHealthEvery) return;
  }
  std::optional<TargetGroupSnapshot> seen = targetGroups_->snapshot(targetGroup);
  bool changed = false;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return;
    Group& group = it->second;
    group.targetHealthAt = Clock::now();
    const auto& was = group.targetHealth;
    changed = was.has_value() != seen.has_value() ||
              (seen && (was->loadBalancers != seen->loadBalancers || was->judgedBy != seen->judgedBy ||
                        was->targets != seen->targets));
    group.targetHealth = std::move(seen);
  }
  if (changed) ++revision_;
}

Result<json> GroupController::create(const schema::GroupSpec& requested) {
  schema::GroupSpec spec = requested;
  spec.launch.name.clear();
  if (Status valid = schema::validateGroupSpec(spec); !valid) return fail(valid.error());
  if ((spec.health == schema::GroupHealth::elb || !spec.targetGroup.empty()) && !targetGroups_)
    return fail(invalidField(spec.health == schema::GroupHealth::elb ? "health" : "target_group",
                             "this corrald keeps no target groups: use health instance without a target "
                             "group"));
  if (check_) {
    if (Status valid = check_(spec); !valid) return fail(valid.error());
  }
  // The template as a member would be: the image and limits checked now, nothing started.
  schema::InstanceSpec probe = spec.launch;
  probe.name = schema::groupMemberName(spec.name, 1);
  probe.subnet = spec.subnets.front();
  if (Status valid = instances_.check(probe); !valid)
    return fail(std::move(valid.error()).inField("template"));
  Group group;
  group.spec = spec;
  group.row = GroupRow{.name = spec.name,
                       .specJson = api::bodyJson(spec).dump(),
                       .desired = spec.desired.value_or(spec.min),
                       .policyJson = std::nullopt,
                       .nextMember = 1,
                       .createdAt = nowSeconds()};
  {
    std::lock_guard lock(mutex_);
    if (groups_.contains(spec.name)) return fail(conflict("group \"{}\" already exists", spec.name));
    if (Status saved = store_.insertGroup(group.row); !saved) return fail(saved.error());
    groups_.emplace(spec.name, group);
  }
  record(spec.name, "created", std::nullopt,
         fmt::format("min {}, max {}, desired {}", spec.min, spec.max, group.row.desired));
  wake();
  return render(group, {});
}

json GroupController::render(const Group& group, const std::vector<Member>& members) const {
  json items = json::array();
  int64_t healthy = 0;
  for (const Member& member : newestFirst(members, group.spec.name)) {
    if (!member.lost && isHealthy(member.state)) ++healthy;
    json item = {{"name", member.name},
                 {"state", member.lost ? std::string("lost") : std::string(instanceStateName(member.state))},
                 {"subnet", member.subnet}};
    if (!member.host.empty()) item["host"] = member.host;
    items.push_back(std::move(item));
  }
  std::reverse(items.begin(), items.end());
  json spec = api::bodyJson(group.spec);
  return {{"name", group.spec.name},
          {"template", spec["template"]},
          {"subnets", group.spec.subnets},
          {"min", group.spec.min},
          {"max", group.spec.max},
          {"desired", group.row.desired},
          {"health", schema::groupHealthName(group.spec.health)},
          {"target_group", group.spec.targetGroup.empty() ? json(nullptr) : json(group.spec.targetGroup)},
          {"policy", group.policy ? policyObject(*group.policy) : json(nullptr)},
          {"cpu_percent", group.lastCpuPercent ? json(*group.lastCpuPercent) : json(nullptr)},
          {"requests_per_target",
           group.lastRequestsPerTarget ? json(*group.lastRequestsPerTarget) : json(nullptr)},
          {"healthy", healthy},
          {"members", std::move(items)},
          {"next_member", group.row.nextMember},
          {"created_at", group.row.createdAt}};
}

json GroupController::list() {
  std::vector<Member> members = allMembers();
  std::lock_guard lock(mutex_);
  json items = json::array();
  for (const auto& [name, group] : groups_) {
    std::vector<Member> own;
    for (const Member& member : members)
      if (member.group == name) own.push_back(member);
    items.push_back(render(group, own));
  }
  return {{"groups", std::move(items)}};
}

std::vector<std::string> GroupController::names() {
  std::lock_guard lock(mutex_);
  std::vector<std::string> names;
  for (const auto& [name, group] : groups_) names.push_back(name);
  return names;
}

bool GroupController::has(const std::string& name) {
  std::lock_guard lock(mutex_);
  return groups_.contains(name);
}

Result<json> GroupController::get(const std::string& name) {
  std::vector<Member> members = allMembers(name);
  std::lock_guard lock(mutex_);
  auto it = groups_.find(name);
  if (it == groups_.end()) return fail(notFound("group \"{}\" not found", name));
  std::vector<Member> own;
  for (const Member& member : members)
    if (member.group == name) own.push_back(member);
  return render(it->second, own);
}

Result<json> GroupController::remove(const std::string& name, bool force) {
  std::lock_guard pass(passMutex_);
  std::vector<std::string> names;
  for (const Member& member : allMembers(name))
    if (member.group == name) names.push_back(member.name);
  json removed;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return fail(notFound("group \"{}\" not found", name));
    if (!names.empty() && !force)
      return fail(conflict("group \"{}\" has {} member(s): scale it to 0 first, or remove it with --force",
                           name, names.size()));
    // The row goes first: if corrald dies before the members are gone, the next start removes them
    // (members of a group that no longer exists).
    if (Status deleted = store_.deleteGroup(name); !deleted) return fail(deleted.error());
    removed = render(it->second, {});
    groups_.erase(it);
  }
  ++revision_;
  json gone = json::array();
  if (!names.empty()) {
    auto results = terminate(names);
    if (!results)
      return fail(results.error().wrap(fmt::format("group \"{}\" removed, but not its members", name)));
    for (size_t i = 0; i < names.size(); ++i) {
      if ((*results)[i])
        gone.push_back(names[i]);
      else
        log::warn("group \"{}\": removing member \"{}\": {}", name, names[i],
                  (*results)[i].error().message());
    }
  }
  removed["members_removed"] = std::move(gone);
  return json{{"deleted", std::move(removed)}};
}

Result<json> GroupController::scale(const std::string& name, int64_t desired) {
  GroupRow row;
  int64_t before = 0;
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return fail(notFound("group \"{}\" not found", name));
    Group& group = it->second;
    if (Status valid = schema::validateDesired(desired, group.spec.min, group.spec.max); !valid)
      return fail(valid.error());
    before = group.row.desired;
    row = group.row;
    row.desired = desired;
    if (Status saved = store_.putGroup(row); !saved) return fail(saved.error());
    group.row = row;
    group.nextLaunchAt = {};
    group.launchFailures = 0;
  }
  record(name, "scaled", std::nullopt, fmt::format("desired {} -> {} (by hand)", before, desired));
  wake();
  return get(name);
}

Result<json> GroupController::events(const std::string& name) {
  {
    std::lock_guard lock(mutex_);
    if (!groups_.contains(name)) return fail(notFound("group \"{}\" not found", name));
  }
  auto rows = store_.listGroupEvents(name);
  if (!rows) return fail(rows.error());
  json items = json::array();
  for (const GroupEventRow& row : *rows)
    items.push_back({{"at_ms", row.atMs},
                     {"kind", row.kind},
                     {"instance", row.instance ? json(*row.instance) : json(nullptr)},
                     {"message", row.message}});
  return json{{"group", name}, {"events", std::move(items)}};
}

Result<json> GroupController::setPolicy(const std::string& name,
                                        std::optional<schema::ScalingPolicy> policy) {
  if (policy) {
    if (Status valid = schema::validateScalingPolicy(*policy); !valid) return fail(valid.error());
  }
  {
    std::lock_guard lock(mutex_);
    auto it = groups_.find(name);
    if (it == groups_.end()) return fail(notFound("group \"{}\" not found", name));
    if (policy && policy->metric == schema::PolicyMetric::requestsPerTarget &&
        (it->second.spec.targetGroup.empty() || !targetGroups_))
      return fail(invalidField("requests_per_target",
                               "group \"{}\" has no target group: requests per target are counted by the "
                               "load balancers forwarding to its target group (create the group with "
                               "--target-group), or use cpu_target",
                               name));
    GroupRow row = it->second.row;
    row.policyJson = policyJson(policy);
    if (Status saved = store_.putGroup(row); !saved) return fail(saved.error());
    it->second.row = row;
    it->second.policy = policy;
    it->second.policyState = {};
    it->second.requestSample.reset();
    it->second.lastCpuPercent.reset();
    it->second.lastRequestsPerTarget.reset();
  }
  std::string what = "policy removed";
  if (policy && policy->metric == schema::PolicyMetric::requestsPerTarget)
    what = fmt::format("target {} requests per target per minute", policy->target);
  else if (policy)
    what = fmt::format("target average CPU {:.0f}%", policy->target);
  record(name, "policy", std::nullopt, what);
  return get(name);
}

json GroupController::dashboardJson() {
  json groups = list()["groups"];
  std::map<std::string, std::optional<TargetGroupSnapshot>> health;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, group] : groups_) health[name] = group.targetHealth;
  }
  for (json& group : groups) {
    // Which load balancers forward to its target group and each target's health, as last read.
    json shown = nullptr;
    const std::optional<TargetGroupSnapshot>& seen = health[group["name"].get<std::string>()];
    if (!group["target_group"].is_null() && seen) {
      json targets = json::array();
      for (const auto& target : seen->targets)
        targets.push_back({{"target", target.name}, {"state", target.state}, {"reason", target.reason}});
      shown = {{"name", group["target_group"]},
               {"load_balancers", seen->loadBalancers},
               {"judged_by", seen->judgedBy.empty() ? json(nullptr) : json(seen->judgedBy)},
               {"healthy", seen->healthyTargets()},
               {"targets", std::move(targets)}};
    }
    group["target_health"] = std::move(shown);
    auto events = this->events(group["name"].get<std::string>());
    json recent = json::array();
    if (events) {
      const json& all = (*events)["events"];
      for (size_t i = all.size() > 10 ? all.size() - 10 : 0; i < all.size(); ++i) recent.push_back(all[i]);
    }
    group["events"] = std::move(recent);
  }
  return groups;
}

CpuUsageReader cgroupCpuReader(InstanceManager& instances) {
  return [&instances](const std::string& name) -> std::optional<int64_t> {
    auto instance = instances.get(name);
    if (!instance || !instance->contains("cgroup") || !(*instance)["cgroup"].is_string()) return std::nullopt;
    const std::string dir = (*instance)["cgroup"].get<std::string>();
    // v2: cpu.stat's usage_usec.
    if (std::ifstream stat(dir + "/cpu.stat"); stat) {
      std::string key;
      int64_t value = 0;
      while (stat >> key >> value)
        if (key == "usage_usec") return value;
    }
    // v1: the path is the memory hierarchy's; cpuacct.usage (ns) is in the cpuacct one.
    if (auto at = dir.find("/memory/"); at != std::string::npos) {
      for (const char* hierarchy : {"/cpuacct/", "/cpu,cpuacct/"}) {
        std::string path = dir;
        path.replace(at, 8, hierarchy);
        if (std::ifstream usage(path + "/cpuacct.usage"); usage) {
          int64_t nanos = 0;
          if (usage >> nanos) return nanos / 1000;
        }
      }
    }
    return std::nullopt;
  };
}

}  // namespace corral::daemon
