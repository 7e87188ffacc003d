// Incremental firewall changes through a real corrald (issue 15): a TCP connection between two containers
// of one subnet keeps carrying data across 200 unrelated changes (other instances with NICs started and
// removed, security group rules and network ACL entries added and deleted), new connections keep being
// allowed, and none of those changes made the daemon load the VPC's tables whole: each was a delta.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>

#include "core/unique_fd.h"
#include "net/firewall.h"
#include "net/nft.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns_testing.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using corral::testing::connectWithin;
using corral::testing::requireRoot;
using corral::testing::tcpSocketIn;
using corral::testing::TestDaemon;
using corral::testing::waitForFd;

// Writes `line` on the connection and reads the echo back (one line), within a second or two.
std::string echoThrough(const UniqueFd& connection, const std::string& line) {
  const std::string sent = line + "\n";
  if (::write(connection.get(), sent.data(), sent.size()) != static_cast<ssize_t>(sent.size())) {
    return fmt::format("write: {}", std::strerror(errno));
  }
  std::string got;
  while (got.find('\n') == std::string::npos) {
    if (!waitForFd(connection.get(), POLLIN, 2s)) return "no echo within 2 s: " + got;
    char buffer[256];
    ssize_t n = ::read(connection.get(), buffer, sizeof buffer);
    if (n <= 0) return n == 0 ? "connection closed" : fmt::format("read: {}", std::strerror(errno));
    got.append(buffer, static_cast<size_t>(n));
  }
  got.pop_back();
  return got;
}

class VpcFlow : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "VPC namespaces and containers need root";
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }
  TestDaemon daemon_{"vpcflow"};
};

TEST_F(VpcFlow, ATcpFlowSurvivesTwoHundredUnrelatedChangesEachADelta) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "flow"}, {"cidr", "10.61.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "flow-a"}, {"vpc", "flow"}, {"cidr", "10.61.0.0/22"}});
  d.must("POST", "/v1/security-groups", {{"name", "flow-other"}, {"vpc", "flow"}});
  // The default group lets members in from members: echo and client reach each other. The NACL entries
  // below go to the subnet's own (default) ACL, which never applies inside one subnet.
  json echo = d.must("POST", "/v1/instances",
                     {{"name", "echo"},
                      {"image", "busybox"},
                      {"command", {"nc", "-ll", "-p", "7", "-e", "cat"}},
                      {"subnet", "flow-a"}});
  json client = d.must(
      "POST", "/v1/instances",
      {{"name", "client"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "flow-a"}});
  ASSERT_FALSE(HasFailure());
  const std::string echoIp = echo.value("ip", "");
  const int clientPid = d.call("GET", "/v1/instances/client").body.value("pid", 0);
  ASSERT_GT(clientPid, 0);

  // The connection lives in the client container's namespace; the test drives it from here.
  UniqueFd connection = tcpSocketIn(fmt::format("/proc/{}/ns/net", clientPid));
  ASSERT_TRUE(connection);
  std::string notConnected;
  for (int attempt = 0; attempt < 10; ++attempt) {
    notConnected = connectWithin(connection, echoIp, 7, 2s);
    if (notConnected.empty()) break;
    std::this_thread::sleep_for(300ms);
    connection = tcpSocketIn(fmt::format("/proc/{}/ns/net", clientPid));
  }
  ASSERT_EQ(notConnected, "") << d.logTail();
  ASSERT_EQ(echoThrough(connection, "hello"), "hello");

  const size_t logBefore = d.log().size();
  int other = 0;
  std::vector<int64_t> ruleIds;
  for (int change = 0; change < 200; ++change) {
    switch (change % 5) {
      case 0:
        d.must("POST", "/v1/instances",
               {{"name", fmt::format("other-{}", other)},
                {"image", "busybox"},
                {"command", {"sleep", "3600"}},
                {"subnet", "flow-a"},
                {"security_groups", other % 2 ? json{"flow-other"} : json::array()}});
        break;
      case 1: {
        json group = d.must("POST", "/v1/security-groups/flow-other/rules",
                            {{"direction", "ingress"},
                             {"protocol", "tcp"},
                             {"from_port", 1000 + change},
                             {"to_port", 1000 + change},
                             {"cidr", "10.99.0.0/16"}});
        ruleIds.push_back(group["rules"].back().value("id", int64_t{0}));
        break;
      }
      case 2:
        d.must("POST", "/v1/network-acls/flow-default/rules",
               {{"number", 100 + change}, {"action", "deny"}, {"protocol", "tcp"}, {"cidr", "10.98.0.0/16"}});
        break;
      case 3:
        d.must("DELETE", fmt::format("/v1/security-groups/flow-other/rules/{}", ruleIds.back()), nullptr,
               200);
        break;
      case 4:
        d.must("DELETE", fmt::format("/v1/network-acls/flow-default/rules/ingress/{}", 100 + change - 2),
               nullptr, 200);
        d.must("DELETE", fmt::format("/v1/instances/other-{}?force=true", other++), nullptr, 200);
        break;
    }
    ASSERT_FALSE(HasFailure()) << "change " << change;
    const std::string line = fmt::format("after change {}", change);
    ASSERT_EQ(echoThrough(connection, line), line) << "the flow broke at change " << change << "\n"
                                                   << d.logTail();
    if (change % 40 == 39) {
      // A new connection still passes the groups (the verdict maps still send both NICs to their chains).
      json run = d.must("POST", "/v1/instances/client/exec",
                        {{"command", {"sh", "-c", fmt::format("echo new | nc -w 2 {} 7", echoIp)}}}, 200);
      EXPECT_EQ(run.value("stdout", ""), "new\n") << run.dump() << "\nat change " << change;
    }
  }
  const std::string during = d.log().substr(logBefore);
  EXPECT_EQ(during.find("ruleset (table inet corral)"), std::string::npos)
      << "a change loaded table inet corral whole instead of a delta:\n"
      << during.substr(0, 3000);
  EXPECT_EQ(during.find("port guards for"), std::string::npos) << "a change reloaded the port guards whole:\n"
                                                               << during.substr(0, 3000);
  EXPECT_EQ(during.find("delta was refused"), std::string::npos) << during.substr(0, 3000);
  ASSERT_EQ(echoThrough(connection, "bye"), "bye");
}

// The kernel's view of table FAMILY corral in `netns` without what a reload renumbers or traffic moves
// (handles, counters' packets and bytes): two listings compare equal when the tables hold the same.
json tableWithoutHandles(const std::string& netns, std::string_view family) {
  auto text = net::listTableJson(netns, family, "corral");
  if (!text) return json{{"error", text.error().message()}};
  json listing = json::parse(*text, nullptr, false);
  std::function<void(json&)> strip = [&](json& value) {
    if (value.is_object()) {
      for (const char* key : {"handle", "packets", "bytes"}) value.erase(key);
      for (auto& [key, item] : value.items()) strip(item);
    } else if (value.is_array()) {
      for (json& item : value) strip(item);
    }
  };
  strip(listing);
  return listing;
}

// A delta the kernel refuses (someone changed the tables behind corrald's back) does not fail the change:
// corrald converges that VPC whole, and the kernel then holds exactly what a whole load gives (what a
// restarted corrald, which knows nothing of the VPC's tables, loads).
TEST_F(VpcFlow, ADeltaTheKernelRefusesConvergesTheVpcWhole) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "drift"}, {"cidr", "10.62.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "drift-a"}, {"vpc", "drift"}, {"cidr", "10.62.0.0/22"}});
  for (const char* name : {"a", "b"}) {
    d.must("POST", "/v1/instances",
           {{"name", name}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "drift-a"}});
  }
  ASSERT_FALSE(HasFailure());
  std::string linkOfB;
  const json topology = d.must("GET", "/v1/vpcs/drift/topology", nullptr, 200);
  for (const json& subnet : topology["subnets"]) {
    for (const json& member : subnet["instances"]) {
      if (member.value("name", "") == "b") linkOfB = member.value("link", "");
    }
  }
  ASSERT_FALSE(linkOfB.empty());
  const std::string netns = corral::testing::testNetnsPrefix() + "vpc-drift";

  // Behind corrald's back: b's port loses its element of the guarded ports. Removing b then deletes an
  // element that is not there, which nft refuses.
  ASSERT_TRUE(net::applyDeltas(
      netns, {net::NftDelta{.family = "bridge",
                            .table = "corral",
                            .commands = {net::NftCommand{.kind = net::NftCommand::Kind::DeleteElement,
                                                         .name = "ports",
                                                         .text = {},
                                                         .key = fmt::format("\"{}\"", linkOfB),
                                                         .element = {},
                                                         .set = {}}}}}));
  const size_t logBefore = d.log().size();
  d.must("DELETE", "/v1/instances/b?force=true", nullptr, 200);
  const std::string during = d.log().substr(logBefore);
  EXPECT_NE(during.find("delta was refused"), std::string::npos) << during;
  EXPECT_NE(during.find("port guards for 1 NIC(s)"), std::string::npos)
      << "the vpc's port guards were loaded whole:\n"
      << during;

  const json inet = tableWithoutHandles(netns, "inet");
  const json bridge = tableWithoutHandles(netns, "bridge");
  EXPECT_EQ(bridge.dump().find(linkOfB), std::string::npos) << "b's guard is gone: " << bridge.dump();
  ASSERT_FALSE(inet.contains("error")) << inet.dump();
  ASSERT_FALSE(bridge.contains("error")) << bridge.dump();
  d.stop();
  ASSERT_TRUE(d.start()) << d.log();
  EXPECT_EQ(tableWithoutHandles(netns, "inet"), inet) << "table inet corral differs from a whole load";
  EXPECT_EQ(tableWithoutHandles(netns, "bridge"), bridge) << "table bridge corral differs from a whole load";

  // And the next change is a delta again.
  const size_t logAfter = d.log().size();
  d.must("POST", "/v1/instances",
         {{"name", "c"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "drift-a"}});
  EXPECT_EQ(d.log().substr(logAfter).find("delta was refused"), std::string::npos)
      << d.log().substr(logAfter);
}

}  // namespace
}  // namespace corral
