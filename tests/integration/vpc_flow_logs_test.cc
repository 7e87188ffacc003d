// VPC flow logs through a real corrald (issue 18): a security group's reject and a network ACL's reject
// each show up with the guard and rule that decided, an accepted TCP flow with the bytes the client sent,
// the action filter and the follow stream work from the API and the CLI, the records survive a restart,
// and bad input is refused naming the field.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "core/unique_fd.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns_testing.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;
using corral::testing::waitUntil;

constexpr int kPayloadBytes = 100'000;

class VpcFlowLogs : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "VPC namespaces, NFLOG and conntrack need root";
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }
  TestDaemon daemon_{"flowlogs"};
};

json records(const TestDaemon& d, const std::string& query) {
  Reply reply = d.call("GET", "/v1/flow-logs?" + query);
  EXPECT_EQ(reply.status, 200) << query << " → " << reply.body.dump();
  return reply.body.value("records", json::array());
}

// The first record of `query` that `match` takes, waiting up to 40 s (a capture window is 10 s, and an
// accepted flow is read at the next conntrack dump).
json waitForRecord(const TestDaemon& d, const std::string& query,
                   const std::function<bool(const json&)>& match) {
  json found;
  auto seen = waitUntil(
      [&] {
        for (const json& record : records(d, query)) {
          if (match(record)) {
            found = record;
            return true;
          }
        }
        std::this_thread::sleep_for(500ms);
        return false;
      },
      40s, "a flow record of " + query);
  EXPECT_TRUE(seen) << query << ": no matching record; have " << records(d, query).dump(1) << "\n"
                    << d.logTail();
  return found;
}

// From inside `from`, `script` through sh; its exit code.
int execIn(const TestDaemon& d, const std::string& from, const std::string& script) {
  Reply run = d.call("POST", fmt::format("/v1/instances/{}/exec", from), {{"command", {"sh", "-c", script}}});
  EXPECT_EQ(run.status, 200) << run.body.dump();
  return run.body.value("exit_code", -1);
}

TEST_F(VpcFlowLogs, RejectsNameTheirGuardAndAcceptedFlowsCountTheirBytes) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "fl"}, {"cidr", "10.71.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "fl-a"}, {"vpc", "fl"}, {"cidr", "10.71.1.0/24"}});
  d.must("POST", "/v1/subnets", {{"name", "fl-b"}, {"vpc", "fl"}, {"cidr", "10.71.2.0/24"}});
  // "db" admits tcp/8080 from fl-a only.
  json group = d.must("POST", "/v1/security-groups", {{"name", "db"}, {"vpc", "fl"}, {"description", "db"}});
  for (const json& rule : group.value("rules", json::array())) {
    d.must("DELETE", fmt::format("/v1/security-groups/db/rules/{}", rule["id"].get<int>()), nullptr, 200);
  }
  group = d.must("POST", "/v1/security-groups/db/rules",
                 {{"direction", "ingress"},
                  {"protocol", "tcp"},
                  {"from_port", 8080},
                  {"to_port", 8080},
                  {"cidr", "10.71.1.0/24"}});
  ASSERT_FALSE(group.value("rules", json::array()).empty()) << group.dump();
  const int64_t dbRule = group["rules"].back()["id"].get<int64_t>();  // the new rule is last
  // db swallows what it is sent on 8080 and 9090.
  json db = d.must("POST", "/v1/instances",
                   {{"name", "db"},
                    {"image", "busybox"},
                    {"command",
                     {"sh", "-c",
                      "nc -ll -p 8080 -e sh -c 'cat >/dev/null' & "
                      "nc -ll -p 9090 -e sh -c 'cat >/dev/null' & wait"}},
                    {"subnet", "fl-b"},
                    {"security_groups", {"db"}}});
  json one =
      d.must("POST", "/v1/instances",
             {{"name", "one"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "fl-a"}});
  json two =
      d.must("POST", "/v1/instances",
             {{"name", "two"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "fl-b"}});
  ASSERT_FALSE(HasFailure());
  const std::string dbIp = db.value("ip", ""), oneIp = one.value("ip", ""), twoIp = two.value("ip", "");
  const std::string dbPort = db["network"].value("link", "");
  ASSERT_FALSE(dbPort.empty()) << db.dump(2);

  // Accepted: once db listens (corrald asks from the router, whose own traffic the flow logs leave out),
  // one sends exactly kPayloadBytes to db:8080.
  d.must("POST", "/v1/instances/db/wait-port", {{"port", 8080}, {"timeout_seconds", 30}}, 200);
  execIn(d, "one", fmt::format("head -c {} /dev/zero | nc -w 2 {} 8080", kPayloadBytes, dbIp));
  // Rejected by db's security group: two is in fl-b, not fl-a.
  EXPECT_NE(execIn(d, "two", fmt::format("nc -w 2 {} 8080 </dev/null", dbIp)), 0);

  json accepted = waitForRecord(d, "instance=one&action=accept", [&](const json& r) {
    return r["srcaddr"] == oneIp && r["dstaddr"] == dbIp && r["dstport"] == 8080 &&
           r["bytes"].get<int64_t>() >= kPayloadBytes;
  });
  if (!accepted.is_null()) {
    // The payload plus one IP and TCP header per packet (at most 60 + 60 bytes).
    EXPECT_LE(accepted["bytes"].get<int64_t>(), kPayloadBytes + 120 * accepted["packets"].get<int64_t>())
        << accepted.dump();
    EXPECT_EQ(accepted["protocol"], 6);
    EXPECT_EQ(accepted["action"], "ACCEPT");
    EXPECT_EQ(accepted["vpc"], "fl");
    EXPECT_EQ(accepted["subnet"], "fl-a");
    // What allowed it, from the model: one's group out (the VPC's default group), the floors' ACLs (both
    // the VPC's default, rule 100) out of fl-a and into fl-b, and db's rule in.
    const json& guard = accepted["guard"];
    ASSERT_TRUE(guard.is_object()) << accepted.dump(1);
    EXPECT_EQ(guard["kind"], "allowed") << guard.dump(1);
    const json& rules = guard["rules"];
    ASSERT_EQ(rules.size(), 4u) << guard.dump(1);
    EXPECT_EQ(rules[0]["kind"], "security-group");
    EXPECT_EQ(rules[0]["name"], "fl-default");
    EXPECT_EQ(rules[0]["direction"], "outbound");
    EXPECT_EQ(rules[1], (json{{"kind", "network-acl"},
                              {"direction", "outbound"},
                              {"name", "fl-default"},
                              {"rule", 100},
                              {"text", "network ACL fl-default rule 100 (outbound) allows"}}));
    EXPECT_EQ(rules[2]["text"], "network ACL fl-default rule 100 (inbound) allows");
    EXPECT_EQ(rules[3]["kind"], "security-group");
    EXPECT_EQ(rules[3]["name"], "db");
    EXPECT_EQ(rules[3]["rule"], dbRule);
    EXPECT_EQ(rules[3]["direction"], "inbound");
    const std::string dbAllows =
        fmt::format("security group db rule {} (inbound) allows tcp port 8080 from 10.71.1.0/24", dbRule);
    EXPECT_EQ(rules[3]["text"], dbAllows);
    EXPECT_NE(
        accepted["line"].get<std::string>().find(
            "ACCEPT OK security group fl-default rule " + std::to_string(rules[0]["rule"].get<int64_t>()) +
            " (outbound) allows all traffic to 0.0.0.0/0; network ACL fl-default rule 100 (outbound) allows; "
            "network ACL fl-default rule 100 (inbound) allows; " +
            dbAllows),
        std::string::npos)
        << accepted["line"];
    // The CLI prints the same line.
    auto cli = d.cli({"flow-logs", "one", "--action", "accept"});
    EXPECT_EQ(cli.code, 0) << cli;
    EXPECT_NE(cli.out.find(dbAllows), std::string::npos) << cli;
  }
  // db's replies at one's NIC: the connection's groups let them through (stateful).
  json reply = waitForRecord(d, "instance=one&action=accept", [&](const json& r) {
    return r["srcaddr"] == dbIp && r["dstaddr"] == oneIp && r["srcport"] == 8080;
  });
  if (!reply.is_null()) {
    ASSERT_TRUE(reply["guard"].is_object()) << reply.dump(1);
    EXPECT_NE(reply["line"].get<std::string>().find("(its replies pass with it: stateful)"),
              std::string::npos)
        << reply["line"];
  }

  // Rejected by fl-b's network ACL, rule 50, before the group is asked.
  d.must("POST", "/v1/network-acls", {{"name", "strict"}, {"vpc", "fl"}});
  for (const std::string direction : {"ingress", "egress"}) {
    d.must("POST", "/v1/network-acls/strict/rules",
           {{"number", 100},
            {"direction", direction},
            {"action", "allow"},
            {"protocol", "all"},
            {"cidr", "0.0.0.0/0"}});
  }
  d.must("POST", "/v1/network-acls/strict/rules",
         {{"number", 50},
          {"direction", "ingress"},
          {"action", "deny"},
          {"protocol", "tcp"},
          {"from_port", 9090},
          {"to_port", 9090},
          {"cidr", "10.71.1.0/24"}});
  d.must("PATCH", "/v1/subnets/fl-b", {{"network_acl", "strict"}}, 200);
  EXPECT_NE(execIn(d, "one", fmt::format("nc -w 2 {} 9090 </dev/null", dbIp)), 0);

  json sgReject = waitForRecord(d, "instance=db&action=reject",
                                [&](const json& r) { return r["srcaddr"] == twoIp && r["dstport"] == 8080; });
  if (!sgReject.is_null()) {
    EXPECT_EQ(sgReject["interface_id"], dbPort) << "an inbound group guards db's own NIC";
    EXPECT_EQ(sgReject["guard"]["kind"], "security-group") << sgReject.dump();
    EXPECT_EQ(sgReject["guard"]["name"], "db");
    EXPECT_EQ(sgReject["guard"]["direction"], "inbound");
    EXPECT_GE(sgReject["packets"].get<int64_t>(), 1);
    EXPECT_EQ(sgReject["line"].get<std::string>().find(fmt::format("2 {} {} {} ", dbPort, twoIp, dbIp)), 0u)
        << sgReject["line"];
  }
  json aclReject = waitForRecord(d, "subnet=fl-b&action=reject", [&](const json& r) {
    return r["srcaddr"] == oneIp && r["dstport"] == 9090;
  });
  if (!aclReject.is_null()) {
    EXPECT_EQ(aclReject["guard"]["kind"], "network-acl") << aclReject.dump();
    EXPECT_EQ(aclReject["guard"]["name"], "strict");
    EXPECT_EQ(aclReject["guard"]["rule"], 50);
    EXPECT_EQ(aclReject["guard"]["direction"], "inbound");
    EXPECT_NE(aclReject["line"].get<std::string>().find("network ACL strict rule 50 (inbound): deny"),
              std::string::npos);
  }

  // The action filter, by the API and by the CLI.
  for (const json& r : records(d, "vpc=fl&action=reject")) EXPECT_EQ(r["action"], "REJECT") << r.dump();
  for (const json& r : records(d, "vpc=fl&action=ACCEPT")) EXPECT_EQ(r["action"], "ACCEPT") << r.dump();
  auto cli = d.cli({"flow-logs", "fl", "--action", "reject"});
  EXPECT_EQ(cli.code, 0) << cli;
  EXPECT_NE(cli.out.find("REJECT OK security group db (inbound): no rule allows it"), std::string::npos)
      << cli;
  EXPECT_NE(cli.out.find("network ACL strict rule 50 (inbound): deny"), std::string::npos) << cli;
  EXPECT_EQ(cli.out.find("ACCEPT"), std::string::npos) << cli;
  cli = d.cli({"--json", "flow-logs", "one", "--action", "accept"});
  EXPECT_EQ(cli.code, 0) << cli;
  json parsed = json::parse(cli.out, nullptr, false);
  ASSERT_TRUE(parsed.is_object()) << cli;
  EXPECT_FALSE(parsed["records"].empty()) << cli;

  // Following: the CLI prints records stored after it started.
  const pid_t follower =
      d.spawnCli({"--json", "flow-logs", "fl", "--follow", "--action", "reject", "--limit", "1"});
  ASSERT_GT(follower, 0);
  std::this_thread::sleep_for(1s);
  EXPECT_NE(execIn(d, "two", fmt::format("nc -w 2 {} 8080 </dev/null", dbIp)), 0);
  const size_t before = d.cliOut().size();
  EXPECT_TRUE(waitUntil(
      [&] {
        const std::string out = d.cliOut();
        if (std::count(out.begin(), out.end(), '\n') >= 2) return true;  // the newest one, then the new one
        std::this_thread::sleep_for(200ms);
        return false;
      },
      40s, "the follower printing the new reject"))
      << "follow printed: " << d.cliOut() << " (had " << before << " bytes)\n"
      << d.logTail();
  ::kill(follower, SIGTERM);
  int status = 0;
  ::waitpid(follower, &status, 0);

  // The records survive a restart of corrald.
  const json kept = records(d, "vpc=fl");
  ASSERT_FALSE(kept.empty());
  d.stop();
  ASSERT_TRUE(d.start()) << d.log();
  const json again = records(d, "vpc=fl");
  ASSERT_GE(again.size(), kept.size());
  EXPECT_EQ(again[0]["id"], kept[0]["id"]);
}

// corrald with the smallest capture buffer the kernel takes: a burst of rejected packets overflows it, the
// kernel drops NFLOG messages, and the window in which it did is a SKIPDATA record.
class VpcFlowLogsSmallBuffer : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "VPC namespaces, NFLOG and conntrack need root";
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }
  TestDaemon daemon_{"flowskip", {"--flow-log-buffer", "4096"}};
};

TEST_F(VpcFlowLogsSmallBuffer, LostRejectsAreASkipDataRecord) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "fs"}, {"cidr", "10.73.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "fs-a"}, {"vpc", "fs"}, {"cidr", "10.73.1.0/24"}});
  // "closed" admits nothing: every datagram to its member is a logged reject.
  json group =
      d.must("POST", "/v1/security-groups", {{"name", "closed"}, {"vpc", "fs"}, {"description", "x"}});
  for (const json& rule : group.value("rules", json::array())) {
    d.must("DELETE", fmt::format("/v1/security-groups/closed/rules/{}", rule["id"].get<int>()), nullptr, 200);
  }
  json target = d.must("POST", "/v1/instances",
                       {{"name", "target"},
                        {"image", "busybox"},
                        {"command", {"sleep", "3600"}},
                        {"subnet", "fs-a"},
                        {"security_groups", {"closed"}}});
  d.must("POST", "/v1/instances",
         {{"name", "flood"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "fs-a"}});
  ASSERT_FALSE(HasFailure());
  const std::string targetIp = target.value("ip", "");
  const int floodPid = d.call("GET", "/v1/instances/flood").body.value("pid", 0);
  ASSERT_GT(floodPid, 0);

  // From flood's namespace, bursts of small datagrams (each its own NFLOG message) faster than corrald
  // reads them through a buffer of a few messages; a few bursts, in case the first one is kept up with.
  const sockaddr_in to = corral::testing::socketAddress(targetIp, 9999);
  size_t sent = 0;
  auto burst = [&] {
    ASSERT_TRUE(corral::testing::runInNetns(fmt::format("/proc/{}/ns/net", floodPid), [&] {
      UniqueFd udp(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      if (!udp) return;
      const char payload[16] = {};
      for (int i = 0; i < 20'000; ++i) {
        if (::sendto(udp.get(), payload, sizeof payload, 0, reinterpret_cast<const sockaddr*>(&to),
                     sizeof to) > 0)
          ++sent;
      }
    }));
  };
  auto skipData = [&](const std::string& query) {
    for (const json& r : records(d, query)) {
      if (r["log_status"] == "SKIPDATA") return r;
    }
    return json();
  };
  json skipped;
  for (int attempt = 0; attempt < 3 && skipped.is_null(); ++attempt) {
    burst();
    waitUntil(
        [&] {
          skipped = skipData("vpc=fs");
          if (!skipped.is_null()) return true;
          std::this_thread::sleep_for(500ms);
          return false;
        },
        15s, "a SKIPDATA record");
  }
  ASSERT_FALSE(skipped.is_null()) << sent << " datagrams sent, no SKIPDATA record; have "
                                  << records(d, "vpc=fs").dump(1) << "\n"
                                  << d.logTail();
  EXPECT_GT(sent, 0u);
  EXPECT_EQ(skipped["vpc"], "fs");
  EXPECT_EQ(skipped["interface_id"], "-");
  EXPECT_EQ(skipped["action"], nullptr);
  EXPECT_EQ(skipped["srcaddr"], nullptr);
  EXPECT_EQ(skipped["packets"], nullptr);
  EXPECT_GE(skipped["end"].get<int64_t>(), skipped["start"].get<int64_t>());
  EXPECT_NE(skipped["skipped"].get<std::string>().find("NFLOG"), std::string::npos) << skipped.dump();
  EXPECT_EQ(skipped["line"].get<std::string>().find("2 - - - - - - - - "), 0u) << skipped["line"];
  EXPECT_NE(skipped["line"].get<std::string>().find(" - SKIPDATA NFLOG"), std::string::npos)
      << skipped["line"];
  // What was read still counts: rejects of the flood at target's NIC.
  bool rejectSeen = false;
  for (const json& r : records(d, "vpc=fs&action=reject"))
    rejectSeen = rejectSeen || (r["action"] == "REJECT" && r["dstaddr"] == targetIp);
  EXPECT_TRUE(rejectSeen) << records(d, "vpc=fs").dump(1);
  // Filed under the kind of records it lost (rejects); the VPC's, not one instance's.
  EXPECT_FALSE(skipData("vpc=fs&action=reject").is_null());
  const json acceptSkip = skipData("name=fs&action=accept");
  EXPECT_TRUE(acceptSkip.is_null() ||
              acceptSkip["skipped"].get<std::string>().find("NFLOG") == std::string::npos)
      << acceptSkip.dump();
  EXPECT_TRUE(skipData("instance=target").is_null());
  auto cli = d.cli({"flow-logs", "fs"});
  EXPECT_EQ(cli.code, 0) << cli;
  EXPECT_NE(cli.out.find(" - SKIPDATA NFLOG"), std::string::npos) << cli;
}

TEST_F(VpcFlowLogs, BadInputIsRefusedNamingTheField) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "flb"}, {"cidr", "10.72.0.0/16"}});
  auto expectError = [&](const std::string& query, int status, const std::string& field) {
    Reply reply = d.call("GET", "/v1/flow-logs" + query);
    EXPECT_EQ(reply.status, status) << query << " → " << reply.body.dump();
    EXPECT_EQ(reply.body["error"].value("field", ""), field) << query << " → " << reply.body.dump();
  };
  expectError("?vpc=nope", 404, "vpc");
  expectError("?subnet=nope", 404, "subnet");
  expectError("?instance=nope", 404, "instance");
  expectError("?name=nope", 404, "name");
  expectError("?vpc=flb&action=drop", 400, "action");
  expectError("?vpc=flb&subnet=flb", 400, "name");
  expectError("?vpc=flb&limit=0", 400, "limit");
  expectError("?vpc=flb&limit=ten", 400, "limit");
  expectError("?vpc=flb&follow=maybe", 400, "follow");
  expectError("?vpc=flb&colour=red", 400, "colour");
  expectError("?vpc=nope&follow=true", 404, "vpc");
  EXPECT_EQ(d.call("POST", "/v1/flow-logs").status, 400);
  EXPECT_EQ(d.call("GET", "/v1/flow-logs?vpc=flb").status, 200);

  auto cli = d.cli({"flow-logs", "nope"});
  EXPECT_EQ(cli.code, 1) << cli;
  EXPECT_NE(cli.err.find("\"nope\" is neither a vpc, a subnet nor an instance"), std::string::npos) << cli;
  cli = d.cli({"flow-logs", "flb", "--action", "drop"});
  EXPECT_EQ(cli.code, 1) << cli;
  EXPECT_NE(cli.err.find("action must be accept or reject"), std::string::npos) << cli;
  cli = d.cli({"flow-logs", "flb", "--follow", "--action", "drop"});
  EXPECT_EQ(cli.code, 1) << cli;
  EXPECT_NE(cli.err.find("action must be accept or reject"), std::string::npos) << cli;
}

}  // namespace
}  // namespace corral
