// Groups of cattle through a real corrald (as root): a group of busybox `sleep` containers keeps its
// desired members, a member whose process is killed from the host is replaced (with events, shown by the
// CLI and the dashboard), scaling out and in, a corrald kill -9 and restart duplicates no member,
// `group rm --force` leaves no cgroup or link, members join their target group (HAProxy sends them
// requests) and leave it, a member whose health check fails (health elb) is replaced, a member made to
// burn a CPU drives the CPU policy out to max and back in, requests driven through a load balancer drive
// the requests-per-target policy out and back in (the dashboard showing the target group's health), and a
// VM group of 1 replaces a killed QEMU.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/leaks.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using corral::testing::cgroupLeftovers;
using corral::testing::join;
using corral::testing::linksIn;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

const std::vector<std::string> kDaemonArgs = {"--accelerator", "tcg"};

// Removes every group (with its members) before the daemon's own teardown removes the instances, which
// the groups' controller would otherwise launch again. Declared after the TestDaemon, so destroyed first.
struct GroupsRemovedFirst {
  const TestDaemon& daemon;
  ~GroupsRemovedFirst() {
    for (const json& group : daemon.list("groups"))
      daemon.call("DELETE", fmt::format("/v1/groups/{}?force=true", group["name"].get<std::string>()));
  }
};

// A VPC "v" with subnets "a" and "b" (the two "AZs").
void makeNetwork(TestDaemon& daemon) {
  daemon.must("POST", "/v1/vpcs", {{"name", "v"}, {"cidr", "10.78.0.0/16"}});
  daemon.must("POST", "/v1/subnets", {{"name", "a"}, {"vpc", "v"}, {"cidr", "10.78.1.0/24"}});
  daemon.must("POST", "/v1/subnets", {{"name", "b"}, {"vpc", "v"}, {"cidr", "10.78.2.0/24"}});
}

json groupSpec(const std::string& name, int64_t min, int64_t max, int64_t desired) {
  return {{"name", name},
          {"template", {{"image", "busybox"}, {"command", {"sleep", "100000"}}}},
          {"subnets", {"a", "b"}},
          {"min", min},
          {"max", max},
          {"desired", desired}};
}

// Members as GET /v1/groups/NAME shows them: name → state.
std::map<std::string, std::string> members(const TestDaemon& daemon, const std::string& group) {
  std::map<std::string, std::string> out;
  json answer = daemon.call("GET", "/v1/groups/" + group).body;
  for (const json& member : answer.value("members", json::array()))
    out[member["name"].get<std::string>()] = member["state"].get<std::string>();
  return out;
}

std::set<std::string> running(const TestDaemon& daemon, const std::string& group) {
  std::set<std::string> out;
  for (const auto& [name, state] : members(daemon, group))
    if (state == "running") out.insert(name);
  return out;
}

// Waits until the group has exactly `count` members, all running; the last set seen.
std::set<std::string> waitForRunning(const TestDaemon& daemon, const std::string& group, size_t count,
                                     std::chrono::milliseconds deadline = 20s) {
  auto until = Clock::now() + deadline;
  std::set<std::string> seen;
  while (Clock::now() < until) {
    auto all = members(daemon, group);
    seen = running(daemon, group);
    if (seen.size() == count && all.size() == count) return seen;
    std::this_thread::sleep_for(100ms);
  }
  return seen;
}

// Waits until the group's members are exactly `wanted`, all running; the last set seen.
std::set<std::string> waitForMembers(const TestDaemon& daemon, const std::string& group,
                                     const std::set<std::string>& wanted,
                                     std::chrono::milliseconds deadline) {
  auto until = Clock::now() + deadline;
  std::set<std::string> seen;
  while (Clock::now() < until) {
    auto all = members(daemon, group);
    seen = running(daemon, group);
    if (seen == wanted && all.size() == wanted.size()) return seen;
    std::this_thread::sleep_for(100ms);
  }
  return seen;
}

std::vector<json> events(const TestDaemon& daemon, const std::string& group) {
  json answer = daemon.call("GET", "/v1/groups/" + group + "/events").body;
  std::vector<json> out;
  for (const json& event : answer.value("events", json::array())) out.push_back(event);
  return out;
}

bool hasEvent(const TestDaemon& daemon, const std::string& group, const std::string& kind,
              const std::string& instance) {
  for (const json& event : events(daemon, group))
    if (event["kind"] == kind && event["instance"] == instance) return true;
  return false;
}

// The controller records an event once the removal it made returned, so a test that saw the instance go
// may ask before the event is written: this waits a little for it.
bool waitForEvent(const TestDaemon& daemon, const std::string& group, const std::string& kind,
                  const std::string& instance, std::chrono::milliseconds deadline = 5s) {
  for (auto until = Clock::now() + deadline; Clock::now() < until; std::this_thread::sleep_for(100ms))
    if (hasEvent(daemon, group, kind, instance)) return true;
  return false;
}

// Member names of every instance corrald holds (GET /v1/instances), counting duplicates.
std::multiset<std::string> instanceNames(const TestDaemon& daemon) {
  std::multiset<std::string> names;
  for (const json& instance : daemon.instances()) names.insert(instance["name"].get<std::string>());
  return names;
}

TEST(Groups, BadInputIsRefusedNamingTheFieldAndNothingIsStored) {
  if (!requireRoot()) GTEST_SKIP() << "corrald's network needs root";
  TestDaemon daemon("groups", kDaemonArgs);
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeNetwork(daemon);
  daemon.must("POST", "/v1/vpcs", {{"name", "w"}, {"cidr", "10.79.0.0/16"}});
  daemon.must("POST", "/v1/subnets", {{"name", "c"}, {"vpc", "w"}, {"cidr", "10.79.1.0/24"}});
  struct Case {
    std::string what;
    json spec;
    std::string field;
    int status = 400;  // an unknown image is 404 (not found), as for a run
  };
  std::vector<Case> cases;
  cases.push_back({"min > max", groupSpec("g", 3, 2, 2), "min"});
  cases.push_back({"desired outside", groupSpec("g", 1, 2, 3), "desired"});
  json unknownSubnet = groupSpec("g", 1, 2, 1);
  unknownSubnet["subnets"] = {"a", "nope"};
  cases.push_back({"unknown subnet", unknownSubnet, "subnets[1]"});
  json twoVpcs = groupSpec("g", 1, 2, 1);
  twoVpcs["subnets"] = {"a", "c"};
  cases.push_back({"subnets in two VPCs", twoVpcs, "subnets[1]"});
  json unknownImage = groupSpec("g", 1, 2, 1);
  unknownImage["template"]["image"] = "no-such-image";
  cases.push_back({"unknown image", unknownImage, "template.image", 404});
  cases.push_back({"bad name", groupSpec("G_1", 1, 2, 1), "name"});
  daemon.must("POST", "/v1/target-groups", {{"name", "tg-w"}, {"vpc", "w"}, {"port", 8080}});
  json elsewhere = groupSpec("g", 1, 2, 1);
  elsewhere["target_group"] = "tg-w";
  cases.push_back({"target group in another VPC", elsewhere, "target_group"});
  json unknownGroup = groupSpec("g", 1, 2, 1);
  unknownGroup["target_group"] = "nope";
  cases.push_back({"unknown target group", unknownGroup, "target_group"});
  json elbAlone = groupSpec("g", 1, 2, 1);
  elbAlone["health"] = "elb";
  cases.push_back({"health elb without a target group", elbAlone, "target_group"});
  json badHealth = groupSpec("g", 1, 2, 1);
  badHealth["health"] = "ping";
  cases.push_back({"unknown health", badHealth, "health"});
  json negativeMin = groupSpec("g", -1, 2, 1);
  cases.push_back({"negative min", negativeMin, "min"});
  json userGroup = {{"name", "mine"}, {"command", {"true"}}, {"group", "g"}};
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto reply = daemon.call("POST", "/v1/groups", c.spec);
    EXPECT_EQ(reply.status, c.status) << reply.body.dump();
    EXPECT_EQ(reply.body["error"].value("field", ""), c.field) << reply.body.dump();
  }
  auto mine = daemon.call("POST", "/v1/instances", userGroup);
  EXPECT_EQ(mine.status, 400) << mine.body.dump();
  EXPECT_EQ(mine.body["error"].value("field", ""), "group");
  EXPECT_TRUE(daemon.list("groups").empty());
  EXPECT_TRUE(daemon.instances().empty());
  // The CLI says the same, naming the field.
  auto cli = daemon.cli(
      {"group", "create", "g", "--subnets", "a,b", "--min", "3", "--max", "2", "--", "sleep", "100"});
  EXPECT_NE(cli.code, 0);
  EXPECT_NE(cli.err.find("min"), std::string::npos) << cli.err;
  EXPECT_TRUE(daemon.list("groups").empty());
  // A scale outside the bounds changes nothing.
  daemon.must("POST", "/v1/groups", groupSpec("g", 0, 2, 0));
  auto scaled = daemon.call("PATCH", "/v1/groups/g", {{"desired", 3}});
  EXPECT_EQ(scaled.status, 400);
  EXPECT_EQ(scaled.body["error"].value("field", ""), "desired");
  EXPECT_EQ(daemon.call("GET", "/v1/groups/g").body["desired"], 0);
  auto policy = daemon.call("POST", "/v1/groups/g/policy", {{"cpu_target", 0}});
  EXPECT_EQ(policy.status, 400);
  EXPECT_EQ(policy.body["error"].value("field", ""), "cpu_target");
}

TEST(Groups, KeepsDesiredReplacesAKilledMemberScalesAndRemovesCleanly) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("groups", kDaemonArgs);
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeNetwork(daemon);
  const std::string netns = corral::testing::testNetnsPrefix() + "vpc-v";
  const size_t linksBefore = linksIn(netns).size();
  daemon.must("POST", "/v1/groups", groupSpec("web", 1, 4, 2));
  auto first = waitForRunning(daemon, "web", 2);
  ASSERT_EQ(first, (std::set<std::string>{"web-1", "web-2"})) << daemon.logTail();
  // Spread over both subnets.
  json group = daemon.call("GET", "/v1/groups/web").body;
  std::set<std::string> subnets;
  for (const json& member : group["members"]) subnets.insert(member["subnet"].get<std::string>());
  EXPECT_EQ(subnets, (std::set<std::string>{"a", "b"})) << group.dump();

  // Kill web-1's process from the host: replaced within a few seconds, by web-3, with events.
  json victim = daemon.call("GET", "/v1/instances/web-1").body;
  ASSERT_TRUE(victim["pid"].is_number_integer()) << victim.dump();
  ASSERT_EQ(::kill(victim["pid"].get<pid_t>(), SIGKILL), 0);
  const auto killedAt = Clock::now();
  auto healed = waitForMembers(daemon, "web", {"web-2", "web-3"}, 10s);
  EXPECT_EQ(healed, (std::set<std::string>{"web-2", "web-3"})) << daemon.logTail();
  EXPECT_LT(Clock::now() - killedAt, 5s);
  EXPECT_TRUE(waitForEvent(daemon, "web", "terminated", "web-1"));
  EXPECT_TRUE(waitForEvent(daemon, "web", "launched", "web-3"));
  // Why, as the CLI and the dashboard show it.
  auto shown = daemon.cli({"group", "events", "web"});
  EXPECT_EQ(shown.code, 0) << shown.err;
  EXPECT_NE(shown.out.find("terminated"), std::string::npos) << shown.out;
  EXPECT_NE(shown.out.find("signal 9"), std::string::npos) << shown.out;
  json dashboard = daemon.must("GET", "/v1/dashboard", nullptr, 200);
  ASSERT_EQ(dashboard["groups"].size(), 1u) << dashboard["groups"].dump();
  EXPECT_EQ(dashboard["groups"][0]["name"], "web");
  EXPECT_FALSE(dashboard["groups"][0].contains("template"));
  bool dashboardShowsIt = false;
  for (const json& event : dashboard["groups"][0]["events"])
    dashboardShowsIt = dashboardShowsIt || (event["kind"] == "terminated" && event["instance"] == "web-1");
  EXPECT_TRUE(dashboardShowsIt) << dashboard["groups"].dump();
  // The replacement went to web-1's subnet (the one with fewer members).
  group = daemon.call("GET", "/v1/groups/web").body;
  subnets.clear();
  for (const json& member : group["members"]) subnets.insert(member["subnet"].get<std::string>());
  EXPECT_EQ(subnets, (std::set<std::string>{"a", "b"})) << group.dump();

  // Scale out to 4 (with the CLI), then in to 1: the newest go first.
  auto scaledOut = daemon.cli({"group", "scale", "web", "--desired", "4"});
  EXPECT_EQ(scaledOut.code, 0) << scaledOut.err;
  EXPECT_EQ(waitForRunning(daemon, "web", 4), (std::set<std::string>{"web-2", "web-3", "web-4", "web-5"}));
  daemon.must("PATCH", "/v1/groups/web", {{"desired", 1}}, 200);
  EXPECT_EQ(waitForRunning(daemon, "web", 1), (std::set<std::string>{"web-2"}));
  EXPECT_TRUE(waitForEvent(daemon, "web", "terminated", "web-5"));
  bool scaled = false;
  for (const json& event : events(daemon, "web")) scaled = scaled || event["kind"] == "scaled";
  EXPECT_TRUE(scaled);

  // A plain rm is refused while it has members; --force removes them, leaving nothing behind.
  EXPECT_EQ(daemon.call("DELETE", "/v1/groups/web").status, 409);
  json removed = daemon.must("DELETE", "/v1/groups/web?force=true", nullptr, 200);
  EXPECT_EQ(removed["deleted"]["members_removed"], json::array({"web-2"}));
  EXPECT_TRUE(daemon.instances().empty());
  EXPECT_EQ(daemon.call("GET", "/v1/groups/web").status, 404);
  std::this_thread::sleep_for(1500ms);  // a pass of the controller launches nothing for a removed group
  EXPECT_TRUE(daemon.instances().empty());
  EXPECT_TRUE(cgroupLeftovers(daemon).empty()) << join(cgroupLeftovers(daemon));
  EXPECT_EQ(linksIn(netns).size(), linksBefore) << join(linksIn(netns));
}

TEST(Groups, Kill9DuringScaleOutDuplicatesNoMember) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("groups", kDaemonArgs);
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeNetwork(daemon);
  daemon.must("POST", "/v1/groups", groupSpec("web", 0, 8, 1));
  ASSERT_EQ(waitForRunning(daemon, "web", 1).size(), 1u);
  daemon.must("PATCH", "/v1/groups/web", {{"desired", 6}}, 200);
  // Somewhere in the middle of launching five members.
  std::this_thread::sleep_for(150ms);
  daemon.kill9();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  auto after = waitForRunning(daemon, "web", 6, 30s);
  EXPECT_EQ(after.size(), 6u) << daemon.logTail();
  // No name twice, every instance a member, and no member number reused.
  std::multiset<std::string> names = instanceNames(daemon);
  EXPECT_EQ(names.size(), 6u) << join(std::vector<std::string>(names.begin(), names.end()));
  std::set<std::string> unique(names.begin(), names.end());
  EXPECT_EQ(unique.size(), names.size());
  json group = daemon.call("GET", "/v1/groups/web").body;
  EXPECT_EQ(group["desired"], 6);
  // Again with the controller idle: a restart changes nothing.
  daemon.kill9();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  std::this_thread::sleep_for(2s);
  EXPECT_EQ(running(daemon, "web"), after);
  EXPECT_EQ(instanceNames(daemon).size(), 6u);
  daemon.must("DELETE", "/v1/groups/web?force=true", nullptr, 200);
  EXPECT_TRUE(daemon.instances().empty());
  EXPECT_TRUE(cgroupLeftovers(daemon).empty()) << join(cgroupLeftovers(daemon));
}

TEST(Groups, RunCountStartsNumberedInstancesAllOrNone) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("groups", kDaemonArgs);
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  auto ok = daemon.cli({"run", "--count", "3", "--name", "herd", "--", "sleep", "1000"});
  EXPECT_EQ(ok.code, 0) << ok.out << ok.err;
  EXPECT_EQ(instanceNames(daemon), (std::multiset<std::string>{"herd-1", "herd-2", "herd-3"}));
  // herd-2 exists: the second of a new --count fails, and the first it started is removed again.
  daemon.must("DELETE", "/v1/instances/herd-1?force=true", nullptr, 200);
  daemon.must("DELETE", "/v1/instances/herd-3?force=true", nullptr, 200);
  auto clash = daemon.cli({"run", "--count", "3", "--name", "herd", "--", "sleep", "1000"});
  EXPECT_EQ(clash.code, 1) << clash.out << clash.err;
  EXPECT_NE(clash.err.find("herd-2"), std::string::npos) << clash.err;
  EXPECT_EQ(instanceNames(daemon), (std::multiset<std::string>{"herd-2"}));
}

// Target tracking with a 1 s policy period (so a cooldown of 3 s): the members idle until /tmp/busy exists;
// made to burn a CPU, busy-1 lifts the average far above a 20 % target and the policy scales out to max
// (3); without the load the average falls below 10 % and the policy scales in, one member at a time, back
// to min (1). Each decision is an event naming the average.
TEST(Groups, CpuPolicyScalesOutUnderLoadAndBackInWithout) {
  if (!requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("groups", {"--accelerator", "tcg", "--group-policy-period", "1"});
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeNetwork(daemon);
  json spec = groupSpec("busy", 1, 3, 1);
  spec["template"]["command"] = {"sh", "-c",
                                 "while :; do if [ -e /tmp/busy ]; then :; else sleep 1; fi; done"};
  daemon.must("POST", "/v1/groups", spec);
  ASSERT_EQ(waitForRunning(daemon, "busy", 1), (std::set<std::string>{"busy-1"}));
  auto policy = daemon.cli({"group", "policy", "busy", "--cpu-target", "20"});
  ASSERT_EQ(policy.code, 0) << policy;
  auto desiredNow = [&] { return daemon.call("GET", "/v1/groups/busy").body.value("desired", int64_t{-1}); };
  auto waitForDesired = [&](int64_t wanted, std::chrono::seconds deadline) {
    for (auto until = Clock::now() + deadline; Clock::now() < until; std::this_thread::sleep_for(200ms))
      if (desiredNow() == wanted) return true;
    return false;
  };
  // Idle: nothing moves (already at min).
  std::this_thread::sleep_for(4s);
  EXPECT_EQ(desiredNow(), 1);

  daemon.must("POST", "/v1/instances/busy-1/exec", {{"command", {"touch", "/tmp/busy"}}}, 200);
  EXPECT_TRUE(waitForDesired(3, 40s))
      << daemon.call("GET", "/v1/groups/busy").body.dump() << daemon.logTail();
  EXPECT_EQ(waitForRunning(daemon, "busy", 3, 30s).size(), 3u);
  json busy = daemon.call("GET", "/v1/groups/busy").body;
  EXPECT_TRUE(busy["cpu_percent"].is_number()) << busy.dump();

  daemon.must("POST", "/v1/instances/busy-1/exec", {{"command", {"rm", "-f", "/tmp/busy"}}}, 200);
  EXPECT_TRUE(waitForDesired(1, 60s))
      << daemon.call("GET", "/v1/groups/busy").body.dump() << daemon.logTail();
  EXPECT_EQ(waitForRunning(daemon, "busy", 1, 30s), (std::set<std::string>{"busy-1"}));

  int out = 0, in = 0;
  for (const json& event : events(daemon, "busy")) {
    if (event["kind"] != "scaled") continue;
    const std::string message = event["message"].get<std::string>();
    if (message.find("CPU policy") == std::string::npos) continue;
    if (message.find("above target") != std::string::npos) ++out;
    if (message.find("below half") != std::string::npos) ++in;
  }
  EXPECT_GE(out, 1);
  EXPECT_EQ(in, 2);  // 3 -> 2 -> 1, one at a time
  daemon.must("DELETE", "/v1/groups/busy?force=true", nullptr, 200);
}

// Requests per target: a bounded loop of HTTP requests from a client container through the load balancer
// pushes the requests its backend counted per healthy target above the target, the group scales out (each
// new member's registration reloads HAProxy, whose counters start again: no spike, no negative figure);
// once the loop stops the figure falls to 0 and the group scales back in to min. A group without a target
// group refuses the policy naming the field. The dashboard shows the group's target group and its targets'
// health.
TEST(Groups, RequestsPerTargetPolicyScalesOutUnderRequestsAndBackIn) {
  if (!requireRoot()) GTEST_SKIP() << "containers and HAProxy need root";
  TestDaemon daemon("groups", {"--accelerator", "tcg", "--group-policy-period", "2"});
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeNetwork(daemon);
  daemon.must("POST", "/v1/groups", groupSpec("plain", 0, 1, 0));
  auto refused = daemon.call("POST", "/v1/groups/plain/policy", {{"requests_per_target", 100}});
  EXPECT_EQ(refused.status, 400) << refused.body.dump();
  EXPECT_EQ(refused.body["error"].value("field", ""), "requests_per_target") << refused.body.dump();
  EXPECT_TRUE(daemon.call("GET", "/v1/groups/plain").body["policy"].is_null());
  auto both =
      daemon.call("POST", "/v1/groups/plain/policy", {{"requests_per_target", 100}, {"cpu_target", 5}});
  EXPECT_EQ(both.status, 400) << both.body.dump();

  daemon.must("POST", "/v1/target-groups",
              {{"name", "tg"},
               {"vpc", "v"},
               {"port", 8080},
               {"health_check", {{"path", "/health.txt"}, {"interval", 5}, {"timeout", 2}}}});
  json front =
      daemon.must("POST", "/v1/load-balancers", {{"name", "front"}, {"vpc", "v"}, {"subnets", {"a"}}});
  const std::string address = front["nics"][0].value("address", "");
  daemon.must("POST", "/v1/load-balancers/front/listeners",
              {{"port", 80}, {"default_action", {{"target_group", "tg"}}}});
  json spec = groupSpec("web", 1, 3, 1);
  spec["template"]["command"] = {
      "sh", "-c",
      "mkdir -p /tmp/www && hostname > /tmp/www/index.html && echo ok > /tmp/www/health.txt && "
      "exec httpd -f -p 8080 -h /tmp/www"};
  spec["target_group"] = "tg";
  daemon.must("POST", "/v1/groups", spec);
  ASSERT_EQ(waitForRunning(daemon, "web", 1), (std::set<std::string>{"web-1"})) << daemon.logTail();
  daemon.must("POST", "/v1/instances",
              {{"name", "client"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "a"}});
  const std::string once = fmt::format("printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 {} 80", address);
  bool served = false;
  for (auto until = Clock::now() + 30s; Clock::now() < until && !served; std::this_thread::sleep_for(300ms))
    served = daemon.call("POST", "/v1/instances/client/exec", {{"command", {"sh", "-c", once}}})
                 .body.value("stdout", "")
                 .find("web-1") != std::string::npos;
  ASSERT_TRUE(served) << daemon.logTail();

  // The dashboard: the group's target group, behind which load balancer, each target's health.
  json shown;
  for (auto until = Clock::now() + 15s; Clock::now() < until; std::this_thread::sleep_for(300ms)) {
    json dashboard = daemon.call("GET", "/v1/dashboard").body;
    for (const json& group : dashboard.value("groups", json::array()))
      if (group["name"] == "web") shown = group.value("target_health", json(nullptr));
    if (shown.is_object() && shown.value("healthy", 0) == 1) break;
  }
  ASSERT_TRUE(shown.is_object()) << shown.dump();
  EXPECT_EQ(shown["name"], "tg");
  EXPECT_EQ(shown["load_balancers"], json::array({"front"}));
  EXPECT_EQ(shown["judged_by"], "front");
  ASSERT_EQ(shown["targets"].size(), 1u) << shown.dump();
  EXPECT_EQ(shown["targets"][0]["target"], "web-1");
  EXPECT_EQ(shown["targets"][0]["state"], "healthy") << shown.dump();

  auto policy = daemon.cli({"group", "policy", "web", "--requests-per-target", "120"});
  ASSERT_EQ(policy.code, 0) << policy;
  EXPECT_NE(policy.out.find("120 requests per target per minute"), std::string::npos) << policy.out;
  auto desiredNow = [&] { return daemon.call("GET", "/v1/groups/web").body.value("desired", int64_t{-1}); };
  auto waitForDesired = [&](int64_t wanted, std::chrono::seconds deadline) {
    for (auto until = Clock::now() + deadline; Clock::now() < until; std::this_thread::sleep_for(200ms))
      if (desiredNow() == wanted) return true;
    return false;
  };
  // Idle: nothing moves (already at min).
  std::this_thread::sleep_for(5s);
  EXPECT_EQ(desiredNow(), 1);

  // A bounded loop in the background of the client: at most 5000 requests, stopped early by /tmp/stop.
  daemon.must("POST", "/v1/instances/client/exec",
              {{"command",
                {"sh", "-c",
                 fmt::format("(i=0; while [ $i -lt 5000 ] && [ ! -e /tmp/stop ]; do printf 'GET / "
                             "HTTP/1.0\r\n\r\n' | nc -w 2 {} 80 >/dev/null 2>&1; i=$((i+1)); done; "
                             "echo $i > /tmp/done) </dev/null >/dev/null 2>&1 &",
                             address)}}},
              200);
  EXPECT_TRUE(waitForDesired(3, 60s)) << daemon.call("GET", "/v1/groups/web").body.dump() << daemon.logTail();
  EXPECT_EQ(waitForRunning(daemon, "web", 3, 30s).size(), 3u);
  json busy = daemon.call("GET", "/v1/groups/web").body;
  EXPECT_TRUE(busy["requests_per_target"].is_number()) << busy.dump();

  daemon.must("POST", "/v1/instances/client/exec", {{"command", {"touch", "/tmp/stop"}}}, 200);
  EXPECT_TRUE(waitForDesired(1, 90s)) << daemon.call("GET", "/v1/groups/web").body.dump() << daemon.logTail();
  EXPECT_EQ(waitForRunning(daemon, "web", 1, 30s), (std::set<std::string>{"web-1"}));

  int out = 0, in = 0;
  for (const json& event : events(daemon, "web")) {
    if (event["kind"] != "scaled") continue;
    const std::string message = event["message"].get<std::string>();
    if (message.find("requests-per-target policy") == std::string::npos) continue;
    EXPECT_EQ(message.find("requests per target -"), std::string::npos) << "a negative figure: " << message;
    if (message.find("above target") != std::string::npos) ++out;
    if (message.find("below half") != std::string::npos) ++in;
  }
  EXPECT_GE(out, 1);
  EXPECT_EQ(in, 2);  // 3 -> 2 -> 1, one at a time
  daemon.must("DELETE", "/v1/groups/web?force=true", nullptr, 200);
  daemon.must("DELETE", "/v1/instances/client?force=true", nullptr, 200);
}

// Target groups of the load balancers: members register once running (the load balancer's HAProxy answers
// with them), leave on scale in and removal; with health elb a member whose check fails (its health file
// removed) is marked DOWN by HAProxy and replaced by a new member, which registers in its place.
TEST(Groups, MembersJoinTheTargetGroupAndOneItsCheckMarksDownIsReplaced) {
  if (!requireRoot()) GTEST_SKIP() << "containers and HAProxy need root";
  TestDaemon daemon("groups", kDaemonArgs);
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeNetwork(daemon);
  daemon.must("POST", "/v1/target-groups",
              {{"name", "tg"},
               {"vpc", "v"},
               {"port", 8080},
               {"health_check",
                {{"path", "/health.txt"},
                 {"interval", 5},
                 {"timeout", 2},
                 {"healthy_threshold", 2},
                 {"unhealthy_threshold", 2}}}});
  json front =
      daemon.must("POST", "/v1/load-balancers", {{"name", "front"}, {"vpc", "v"}, {"subnets", {"a"}}});
  ASSERT_EQ(front["nics"].size(), 1u) << front.dump();
  const std::string address = front["nics"][0].value("address", "");
  daemon.must("POST", "/v1/load-balancers/front/listeners",
              {{"port", 80}, {"default_action", {{"target_group", "tg"}}}});
  json spec = groupSpec("web", 1, 3, 2);
  spec["template"]["command"] = {
      "sh", "-c",
      "mkdir -p /tmp/www && hostname > /tmp/www/index.html && echo ok > /tmp/www/health.txt && "
      "exec httpd -f -p 8080 -h /tmp/www"};
  spec["target_group"] = "tg";
  spec["health"] = "elb";
  daemon.must("POST", "/v1/groups", spec);
  ASSERT_EQ(waitForRunning(daemon, "web", 2), (std::set<std::string>{"web-1", "web-2"})) << daemon.logTail();
  auto targets = [&] {
    std::set<std::string> out;
    for (const json& t : daemon.call("GET", "/v1/target-groups/tg").body.value("targets", json::array()))
      out.insert(t.get<std::string>());
    return out;
  };
  auto waitForTargets = [&](const std::set<std::string>& wanted, std::chrono::seconds deadline) {
    for (auto until = Clock::now() + deadline; Clock::now() < until; std::this_thread::sleep_for(200ms))
      if (targets() == wanted) return true;
    return false;
  };
  EXPECT_TRUE(waitForTargets({"web-1", "web-2"}, 10s))
      << join(std::vector<std::string>(targets().begin(), targets().end()));
  EXPECT_TRUE(waitForEvent(daemon, "web", "launched", "web-1"));

  // Requests through the load balancer reach the members (a client container in subnet a, busybox nc).
  daemon.must("POST", "/v1/instances",
              {{"name", "client"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "a"}});
  std::set<std::string> answered;
  for (auto until = Clock::now() + 30s; Clock::now() < until && answered.size() < 2;) {
    json run =
        daemon
            .call("POST", "/v1/instances/client/exec",
                  {{"command",
                    {"sh", "-c",
                     fmt::format("printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 {} 80 | tail -n 1", address)}}})
            .body;
    std::string body = run.value("stdout", "");
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    if (body == "web-1" || body == "web-2")
      answered.insert(body);
    else
      std::this_thread::sleep_for(300ms);
  }
  EXPECT_EQ(answered, (std::set<std::string>{"web-1", "web-2"})) << daemon.logTail();

  // web-1's check fails from now on: HAProxy marks it DOWN after two checks 5 s apart, the group replaces it.
  daemon.must("POST", "/v1/instances/web-1/exec", {{"command", {"rm", "/tmp/www/health.txt"}}}, 200);
  auto until = Clock::now() + 45s;
  while (Clock::now() < until && !hasEvent(daemon, "web", "terminated", "web-1"))
    std::this_thread::sleep_for(300ms);
  ASSERT_TRUE(hasEvent(daemon, "web", "terminated", "web-1")) << daemon.logTail();
  bool saysWhy = false;
  for (const json& event : events(daemon, "web"))
    saysWhy = saysWhy || (event["instance"] == "web-1" && event["kind"] == "terminated" &&
                          event["message"].get<std::string>().find("DOWN") != std::string::npos);
  EXPECT_TRUE(saysWhy);
  EXPECT_EQ(waitForRunning(daemon, "web", 2), (std::set<std::string>{"web-2", "web-3"}));
  EXPECT_TRUE(waitForTargets({"web-2", "web-3"}, 10s))
      << join(std::vector<std::string>(targets().begin(), targets().end()));

  // Scale in: the newest leaves the target group and goes.
  daemon.must("PATCH", "/v1/groups/web", {{"desired", 1}}, 200);
  EXPECT_EQ(waitForRunning(daemon, "web", 1), (std::set<std::string>{"web-2"}));
  EXPECT_TRUE(waitForTargets({"web-2"}, 10s));
  daemon.must("DELETE", "/v1/groups/web?force=true", nullptr, 200);
  EXPECT_TRUE(waitForTargets({}, 10s));
  daemon.must("DELETE", "/v1/instances/client?force=true", nullptr, 200);
}

// The network, a load balancer "front" in subnet a listening on 80 for target group tg, an instance
// "client" in a, and a group "web" of `members` busybox httpds in tg (each answers with its hostname). The
// load balancer's address.
std::string webBehindFront(TestDaemon& daemon, int members) {
  makeNetwork(daemon);
  daemon.must("POST", "/v1/target-groups",
              {{"name", "tg"},
               {"vpc", "v"},
               {"port", 8080},
               {"health_check", {{"path", "/health.txt"}, {"interval", 5}, {"timeout", 2}}}});
  json front =
      daemon.must("POST", "/v1/load-balancers", {{"name", "front"}, {"vpc", "v"}, {"subnets", {"a"}}});
  daemon.must("POST", "/v1/load-balancers/front/listeners",
              {{"port", 80}, {"default_action", {{"target_group", "tg"}}}});
  daemon.must("POST", "/v1/instances",
              {{"name", "client"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "a"}});
  json spec = groupSpec("web", members, members, members);
  spec["subnets"] = {"a"};
  spec["template"]["command"] = {
      "sh", "-c",
      "mkdir -p /tmp/www && hostname > /tmp/www/index.html && echo ok > /tmp/www/health.txt && "
      "exec httpd -f -p 8080 -h /tmp/www"};
  spec["target_group"] = "tg";
  daemon.must("POST", "/v1/groups", spec);
  return front["nics"][0].value("address", "");
}

// A member killed from the host is replaced by one that gets the same address (IPAM hands out the lowest
// free) with another MAC; the load balancer reaches it within seconds, not once its ARP entry for the old
// MAC failed (40-60 s before corrald sent a gratuitous ARP from each new NIC: bench/group-replace).
TEST(Groups, AReplacementWithItsPredecessorsAddressServesThroughTheLoadBalancerAtOnce) {
  if (!requireRoot()) GTEST_SKIP() << "containers and HAProxy need root";
  TestDaemon daemon("groups", kDaemonArgs);
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  const std::string address = webBehindFront(daemon, 1);
  ASSERT_EQ(waitForRunning(daemon, "web", 1), (std::set<std::string>{"web-1"})) << daemon.logTail();
  auto answer = [&] {
    std::string body =
        daemon
            .call("POST", "/v1/instances/client/exec",
                  {{"command",
                    {"sh", "-c",
                     fmt::format("printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 1 {} 80 | tail -n 1", address)}}})
            .body.value("stdout", "");
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    return body;
  };
  auto waitForAnswer = [&](const std::string& wanted, std::chrono::seconds deadline) {
    for (auto until = Clock::now() + deadline; Clock::now() < until; std::this_thread::sleep_for(100ms))
      if (answer() == wanted) return true;
    return false;
  };
  ASSERT_TRUE(waitForAnswer("web-1", 30s)) << daemon.logTail();
  json first = daemon.call("GET", "/v1/instances/web-1").body;
  ASSERT_TRUE(first["pid"].is_number_integer()) << first.dump();
  const std::string firstIp = first.value("ip", "");

  ASSERT_EQ(::kill(first["pid"].get<pid_t>(), SIGKILL), 0);
  const auto killed = Clock::now();
  EXPECT_TRUE(waitForAnswer("web-2", 10s))
      << "no answer from the replacement within 10 s: " << answer() << daemon.logTail();
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed);
  EXPECT_EQ(daemon.call("GET", "/v1/instances/web-2").body.value("ip", ""), firstIp)
      << "the replacement got another address: this test no longer shows the stale ARP entry";
  RecordProperty("replacement_ms", static_cast<int>(took.count()));
  daemon.must("DELETE", "/v1/groups/web?force=true", nullptr, 200);
  daemon.must("DELETE", "/v1/instances/client?force=true", nullptr, 200);
}

// A member killed behind the load balancer costs no request: a bounded loop of requests from an instance
// (one every 0.1 s, each given 2 s) runs while one of two members is killed from the host and replaced.
// Every request is answered (HAProxy retries a connection that fails on the other server: retries 2,
// option redispatch), and the replacement serves before the loop ends.
TEST(Groups, NoRequestFailsWhileAKilledMemberIsReplaced) {
  if (!requireRoot()) GTEST_SKIP() << "containers and HAProxy need root";
  TestDaemon daemon("groups", kDaemonArgs);
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  const std::string address = webBehindFront(daemon, 2);
  ASSERT_EQ(waitForRunning(daemon, "web", 2), (std::set<std::string>{"web-1", "web-2"})) << daemon.logTail();
  const std::string request =
      fmt::format("printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 {} 80 | tail -n 1", address);
  // Both members answer through the load balancer before the loop starts.
  std::set<std::string> answered;
  for (auto until = Clock::now() + 30s; Clock::now() < until && answered.size() < 2;
       std::this_thread::sleep_for(100ms)) {
    std::string body = daemon.call("POST", "/v1/instances/client/exec", {{"command", {"sh", "-c", request}}})
                           .body.value("stdout", "");
    while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
    if (body == "web-1" || body == "web-2") answered.insert(body);
  }
  ASSERT_EQ(answered.size(), 2u) << daemon.logTail();

  // 150 requests, ~20 s; each answer's last line is the member's hostname, anything else is a failure.
  const std::string loop = fmt::format(
      "ok=0; bad=0; i=0; while [ $i -lt 150 ]; do b=$({}); case \"$b\" in web-*) ok=$((ok+1)); "
      "echo \"$b\" >> /tmp/seen;; *) bad=$((bad+1));; esac; i=$((i+1)); sleep 0.1; done; "
      "echo \"ok=$ok bad=$bad\"; sort /tmp/seen | uniq -c",
      request);
  json result;
  std::thread client([&] {
    result = daemon.call("POST", "/v1/instances/client/exec", {{"command", {"sh", "-c", loop}}}, 90s).body;
  });
  std::this_thread::sleep_for(3s);
  json victim = daemon.call("GET", "/v1/instances/web-1").body;
  const bool killed = victim["pid"].is_number_integer() && ::kill(victim["pid"].get<pid_t>(), SIGKILL) == 0;
  client.join();
  ASSERT_TRUE(killed) << victim.dump();
  const std::string out = result.value("stdout", "");
  EXPECT_NE(out.find("ok=150 bad=0"), std::string::npos) << result.dump() << daemon.logTail();
  EXPECT_NE(out.find(" web-3"), std::string::npos)
      << "the replacement did not serve within the loop: " << out;
  EXPECT_TRUE(waitForEvent(daemon, "web", "terminated", "web-1"));
  daemon.must("DELETE", "/v1/groups/web?force=true", nullptr, 200);
  daemon.must("DELETE", "/v1/instances/client?force=true", nullptr, 200);
}

// A VM group of one: its QEMU killed from the host, a new member replaces it (TCG: allow 60 s).
TEST(Groups, VmGroupReplacesAKilledQemu) {
  if (!requireRoot()) GTEST_SKIP() << "running VMs needs root";
  TestDaemon daemon("groups", kDaemonArgs);
  GroupsRemovedFirst groupsRemovedFirst{daemon};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  makeNetwork(daemon);
  json spec = groupSpec("vms", 1, 1, 1);
  spec["template"] = {{"kind", "vm"}, {"image", "busybox"}};
  daemon.must("POST", "/v1/groups", spec);
  ASSERT_EQ(waitForRunning(daemon, "vms", 1, 90s), (std::set<std::string>{"vms-1"})) << daemon.logTail();
  json vm = daemon.call("GET", "/v1/instances/vms-1").body;
  ASSERT_TRUE(vm["pid"].is_number_integer()) << vm.dump();
  ASSERT_EQ(::kill(vm["pid"].get<pid_t>(), SIGKILL), 0);
  EXPECT_EQ(waitForMembers(daemon, "vms", {"vms-2"}, 90s), (std::set<std::string>{"vms-2"}))
      << daemon.logTail();
  EXPECT_TRUE(waitForEvent(daemon, "vms", "terminated", "vms-1"));
}

}  // namespace
}  // namespace corral
