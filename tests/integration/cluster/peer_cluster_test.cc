// A cluster host's peer port (corrald --cluster-api-port, docs/api.md "The peer port"): two corralds with
// their etcd members on loopback; before the cluster exists the port refuses everything; once one inits and
// the other joins, each host's key advertises its port (api_url in `cluster ls`) and one corrald's requests
// to the other's port with the cluster's token are served (what it creates there the other's socket
// shows), a wrong token is refused and changes nothing; after a host leaves, its port refuses again.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "api/client.h"
#include "tests/integration/cluster/etcd_cluster.h"
#include "tests/integration/harness.h"

namespace corral::testing {
namespace {

using nlohmann::json;

struct PeerHost {
  std::string name;
  uint16_t clientPort = 0;
  uint16_t apiPort = 0;
  std::unique_ptr<TestDaemon> daemon;
};

class ClusterPeerPort : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kEtcdBinary))
      GTEST_SKIP() << kEtcdBinary << " is missing: scripts/install-deps";
    for (const char* name : {"p1", "p2"}) {
      PeerHost host{
          .name = name, .clientPort = freeLoopbackPort(), .apiPort = freeLoopbackPort(), .daemon = {}};
      host.daemon = std::make_unique<TestDaemon>(
          "t" + std::to_string(::getpid()) + "-clusterd",
          std::vector<std::string>{
              "--cluster-address", "127.0.0.1", "--host-name", name, "--cluster-client-port",
              std::to_string(host.clientPort), "--cluster-peer-port", std::to_string(freeLoopbackPort()),
              "--cluster-api-port", std::to_string(host.apiPort), "--etcd", kEtcdBinary});
      ASSERT_TRUE(host.daemon->start()) << host.daemon->logTail();
      hosts_.push_back(std::move(host));
    }
  }
  void TearDown() override {
    // The last host leaving ends the cluster; its etcd and data go.
    for (auto it = hosts_.rbegin(); it != hosts_.rend(); ++it)
      it->daemon->call("POST", "/v1/cluster/leave", json::object());
  }

  api::Client peer(const PeerHost& host, const std::string& token) const {
    return api::Client::peer("127.0.0.1", host.apiPort, token);
  }
  std::vector<std::string> vpcNames(const PeerHost& host) const {
    std::vector<std::string> names;
    for (const auto& vpc : host.daemon->list("vpcs")) names.push_back(vpc["name"]);
    return names;
  }

  std::vector<PeerHost> hosts_;
};

TEST_F(ClusterPeerPort, OneHostUsesAnothersApiWithTheClustersToken) {
  PeerHost& a = hosts_[0];
  PeerHost& b = hosts_[1];
  const api::Request listVpcs = api::List<api::ObjectKind::Vpc>{.vpc = {}};
  auto early = peer(b, "anything").call(listVpcs);
  ASSERT_FALSE(early);
  EXPECT_EQ(early.error().kind(), ErrorKind::Forbidden);
  EXPECT_NE(early.error().message().find("in no cluster"), std::string::npos) << early.error().message();

  const std::string token = a.daemon->must("POST", "/v1/cluster", json{{"az", "az1"}})["token"];
  b.daemon->must(
      "POST", "/v1/cluster/join",
      json{{"address", "127.0.0.1:" + std::to_string(a.clientPort)}, {"token", token}, {"az", "az2"}});
  json hosts = a.daemon->must("GET", "/v1/cluster/hosts", nullptr, 200)["hosts"];
  ASSERT_EQ(hosts.size(), 2u) << hosts.dump();
  for (const json& host : hosts) {
    const uint16_t port = host["name"] == "p1" ? a.apiPort : b.apiPort;
    EXPECT_EQ(host["api_url"], "http://127.0.0.1:" + std::to_string(port)) << host.dump();
  }

  // a's corrald (here: its token) asks b to make a VPC; b's own socket shows it.
  auto created =
      peer(b, token).call(api::Create<schema::VpcSpec>{.spec = {.name = "fromp1", .cidr = "10.64.0.0/16"}});
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(vpcNames(b), std::vector<std::string>{"fromp1"});
  EXPECT_EQ(vpcNames(a), std::vector<std::string>{"fromp1"}) << "a cluster's VPCs are every host's";

  auto wrong = peer(b, token.substr(1) + "x")
                   .call(api::Create<schema::VpcSpec>{.spec = {.name = "intruder", .cidr = "10.65.0.0/16"}});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().kind(), ErrorKind::Forbidden);
  EXPECT_EQ(wrong.error().field(), "authorization");
  EXPECT_EQ(vpcNames(b), std::vector<std::string>{"fromp1"}) << "the refused request changed nothing";

  b.daemon->must("DELETE", "/v1/vpcs/fromp1", nullptr, 200);
  EXPECT_TRUE(vpcNames(a).empty());
  b.daemon->must("POST", "/v1/cluster/leave", json::object(), 200);
  auto gone = peer(b, token).call(listVpcs);
  ASSERT_FALSE(gone);
  EXPECT_NE(gone.error().message().find("in no cluster"), std::string::npos) << gone.error().message();
}

TEST(ClusterPeerPortOptions, TheApiPortNeedsTheClusterAddressAndItsOwnPort) {
  if (!requireRoot()) GTEST_SKIP() << "needs root";
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--cluster-api-port", "7443"}, "--cluster-api-port: needs --cluster-address"},
           {{"--cluster-address", "127.0.0.1", "--cluster-api-port", "0"},
            "--cluster-api-port: 0 is not a TCP port"},
           {{"--cluster-address", "127.0.0.1", "--cluster-api-port", "2379"},
            "--cluster-api-port: 2379 is one of etcd's ports"},
           {{"--cluster-address", "127.0.0.1", "--cluster-api-port", "7443", "--peer-listen",
             "127.0.0.1:7444", "--peer-token-file", "/nonexistent"},
            "--cluster-api-port: --peer-listen names the peer port already"},
       }) {
    TestDaemon daemon("t" + std::to_string(::getpid()) + "-clusterd-bad", c.args);
    EXPECT_FALSE(daemon.start());
    EXPECT_NE(daemon.log().find(c.expected), std::string::npos) << daemon.log();
  }
}

// The model log's compaction threshold (docs/cluster.md "The shared model"): out of range stops corrald at
// start naming the option.
TEST(ClusterPeerPortOptions, TheModelCompactionThresholdIsChecked) {
  if (!requireRoot()) GTEST_SKIP() << "needs root";
  for (const std::string bad : {"0", "1000001"}) {
    TestDaemon daemon("t" + std::to_string(::getpid()) + "-clusterd-bad",
                      {"--cluster-address", "127.0.0.1", "--cluster-model-compact", bad});
    EXPECT_FALSE(daemon.start());
    EXPECT_NE(daemon.log().find("--cluster-model-compact: " + bad + " is out of range"), std::string::npos)
        << daemon.log();
  }
}

}  // namespace
}  // namespace corral::testing
