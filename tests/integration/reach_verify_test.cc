// `corral reach --verify` through a real corrald (as root): the model's verdict next to one real probe from
// the source container's network namespace, on an allowed path (with the probe's own listener, and with a
// program of the destination already listening), on paths a security group blocks, and on a path the
// kernel was changed behind corrald's back (the answer says they disagree); refused for the internet.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tests/integration/harness.h"

namespace corral {
namespace {

using corral::testing::CliRun;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;
using nlohmann::json;

class ReachVerify : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "VPC namespaces and containers need root";
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }
  void TearDown() override {
    if (daemon_.pid() <= 0) return;
    std::vector<std::string> failed = daemon_.removeEverything();
    EXPECT_TRUE(failed.empty()) << fmt::format("{}", fmt::join(failed, "\n"));
  }

  // VPC v, one floor; web1 and web2 in the default group (which lets its own members in), db1 in group db
  // (tcp/80 in from the VPC, nothing else) with a program listening on port 80.
  void build() {
    const TestDaemon& d = daemon_;
    d.must("POST", "/v1/vpcs", {{"name", "v"}, {"cidr", "10.0.0.0/16"}});
    d.must("POST", "/v1/subnets", {{"name", "floor"}, {"vpc", "v"}, {"cidr", "10.0.1.0/24"}});
    d.must("POST", "/v1/security-groups", {{"name", "db"}, {"vpc", "v"}});
    d.must("POST", "/v1/security-groups/db/rules",
           {{"protocol", "tcp"}, {"from_port", 80}, {"cidr", "10.0.0.0/16"}});
    const json sleeper = {"sleep", "3600"};
    web1_ = d.must("POST", "/v1/instances",
                   {{"name", "web1"}, {"image", "busybox"}, {"command", sleeper}, {"subnet", "floor"}});
    web2_ = d.must("POST", "/v1/instances",
                   {{"name", "web2"}, {"image", "busybox"}, {"command", sleeper}, {"subnet", "floor"}});
    d.must("POST", "/v1/instances",
           {{"name", "db1"},
            {"image", "busybox"},
            // httpd, not `nc -ll`: busybox nc ends when a probe's connection is gone before its accept.
            {"command", {"sh", "-c", "mkdir -p /tmp/www && exec httpd -f -p 80 -h /tmp/www"}},
            {"subnet", "floor"},
            {"security_groups", {"db"}}});
  }

  Reply reach(const std::string& source, const std::string& destination, const std::string& protocol,
              std::optional<int> port) const {
    json body = {{"source", source}, {"destination", destination}, {"protocol", protocol}, {"verify", true}};
    if (port) body["port"] = *port;
    return daemon_.call("POST", "/v1/reach", body);
  }

  json web1_, web2_;
  TestDaemon daemon_{"reachverify", {}};
};

const json& kernelOf(const Reply& reply) {
  static const json none;
  if (!reply.body.contains("paths") || reply.body["paths"].empty()) return none;
  return reply.body["paths"][0]["kernel"];
}

TEST_F(ReachVerify, TheKernelAgreesOnAllowedAndBlockedPaths) {
  build();
  ASSERT_FALSE(HasFailure());

  // Allowed, nothing listening on 5000 in web2: the probe's own listener answers.
  Reply allowed = reach("web1", "web2", "tcp", 5000);
  ASSERT_EQ(allowed.status, 200) << allowed.body.dump();
  EXPECT_EQ(allowed.body.value("reachable", false), true) << allowed.body.dump();
  EXPECT_EQ(kernelOf(allowed).value("verdict", ""), "reached") << allowed.body.dump();
  EXPECT_EQ(kernelOf(allowed).value("detail", ""), "connected, and the answer came back")
      << allowed.body.dump();
  EXPECT_EQ(allowed.body.value("kernel_agrees", false), true) << allowed.body.dump();

  // Allowed to db1's own program on port 80 (the probe's listener cannot bind there): the handshake decides.
  Reply toProgram = reach("web1", "db1", "tcp", 80);
  EXPECT_EQ(toProgram.body.value("reachable", false), true) << toProgram.body.dump();
  EXPECT_EQ(kernelOf(toProgram).value("verdict", ""), "reached") << toProgram.body.dump();
  EXPECT_EQ(kernelOf(toProgram).value("agrees", false), true) << toProgram.body.dump();

  // db's group lets in tcp/80 only: 81, icmp and udp are dropped, and the kernel agrees.
  for (const auto& [protocol, port] :
       {std::pair<std::string, std::optional<int>>{"tcp", 81}, {"icmp", std::nullopt}, {"udp", 53}}) {
    Reply blocked = reach("web1", "db1", protocol, port);
    ASSERT_EQ(blocked.status, 200) << blocked.body.dump();
    EXPECT_EQ(blocked.body.value("reachable", true), false) << protocol << ": " << blocked.body.dump();
    EXPECT_NE(blocked.body.dump().find("security group"), std::string::npos) << blocked.body.dump();
    EXPECT_EQ(kernelOf(blocked).value("verdict", ""), "blocked") << protocol << ": " << blocked.body.dump();
    EXPECT_EQ(blocked.body.value("kernel_agrees", false), true) << protocol << ": " << blocked.body.dump();
  }

  // The CLI prints the kernel's verdict next to the model's.
  CliRun cli = daemon_.cli({"reach", "web1", "db1", "--port", "81", "--verify"});
  EXPECT_EQ(cli.code, 0) << cli;
  EXPECT_NE(cli.out.find("BLOCKED security group db (in)"), std::string::npos) << cli;
  EXPECT_NE(cli.out.find("kernel: blocked"), std::string::npos) << cli;
  EXPECT_EQ(cli.out.find("DISAGREE"), std::string::npos) << cli;
  // Without --verify nothing is probed.
  CliRun modelOnly = daemon_.cli({"reach", "web1", "db1", "--port", "81"});
  EXPECT_EQ(modelOnly.code, 0) << modelOnly;
  EXPECT_EQ(modelOnly.out.find("kernel:"), std::string::npos) << modelOnly;
}

TEST_F(ReachVerify, ADisagreementIsReported) {
  build();
  ASSERT_FALSE(HasFailure());
  // web2's port goes down behind corrald's back: the model still says reachable, the kernel does not.
  const Reply web2 = daemon_.call("GET", "/v1/instances/web2");
  const int64_t pid = web2.body.value("pid", int64_t{0});
  ASSERT_GT(pid, 0) << web2.body.dump();
  ASSERT_EQ(std::system(fmt::format("nsenter -t {} -n ip link set eth0 down", pid).c_str()), 0);
  Reply reply = reach("web1", "web2", "icmp", std::nullopt);
  ASSERT_EQ(reply.status, 200) << reply.body.dump();
  EXPECT_EQ(reply.body.value("reachable", false), true) << reply.body.dump();
  EXPECT_EQ(kernelOf(reply).value("verdict", ""), "blocked") << reply.body.dump();
  EXPECT_EQ(kernelOf(reply).value("agrees", true), false) << reply.body.dump();
  EXPECT_EQ(reply.body.value("kernel_agrees", true), false) << reply.body.dump();
  CliRun cli = daemon_.cli({"reach", "web1", "web2", "--protocol", "icmp", "--verify"});
  EXPECT_EQ(cli.code, 0) << cli;
  EXPECT_NE(cli.out.find("the model and the kernel DISAGREE: the model says reachable"), std::string::npos)
      << cli;
}

TEST_F(ReachVerify, RefusedBeyondTheVpcs) {
  build();
  ASSERT_FALSE(HasFailure());
  Reply toInternet = reach("web1", "internet", "tcp", 80);
  EXPECT_EQ(toInternet.status, 400) << toInternet.body.dump();
  EXPECT_EQ(toInternet.body["error"].value("field", ""), "destination") << toInternet.body.dump();
  EXPECT_NE(toInternet.body.dump().find("between instances only"), std::string::npos)
      << toInternet.body.dump();
  Reply fromInternet = reach("internet", "web1", "tcp", 80);
  EXPECT_EQ(fromInternet.status, 400) << fromInternet.body.dump();
  EXPECT_EQ(fromInternet.body["error"].value("field", ""), "source") << fromInternet.body.dump();
  Reply unknown = reach("web1", "nobody", "tcp", 80);
  EXPECT_EQ(unknown.status, 404) << unknown.body.dump();
  EXPECT_EQ(unknown.body["error"].value("field", ""), "destination") << unknown.body.dump();
  CliRun cli = daemon_.cli({"reach", "web1", "internet", "--port", "80", "--verify"});
  EXPECT_NE(cli.code, 0) << cli;
  EXPECT_NE(cli.err.find("between instances only"), std::string::npos) << cli;
}

}  // namespace
}  // namespace corral
