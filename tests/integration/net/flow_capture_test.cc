// Flow logs' kernel side on the real kernel: a router namespace with two subnet bridges, table inet corral
// from the model, and net::FlowCapture reading it: a connection the security group refuses arrives over
// NFLOG with the group's prefix, an accepted one's bytes arrive from conntrack (accounting turned on by the
// capture), and a destination without a route is logged by chain no-route. Everything lives in namespaces
// this test makes and removes.
#include "net/flow_capture.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/unique_fd.h"
#include "net/nft.h"
#include "tests/integration/netns_testing.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

using namespace std::chrono_literals;
using corral::testing::acceptWithin;
using corral::testing::connectWithin;
using corral::testing::listenIn;
using corral::testing::tcpSocketIn;
using corral::testing::TestNamespaces;

constexpr int64_t kNow = 1700000000;

int shell(const std::string& command) {
  return std::system((command + " >/dev/null 2>&1").c_str());
}

class FlowCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available()) GTEST_SKIP() << "needs root: network namespaces, NFLOG and conntrack";
    for (auto [ns, suffix] : {std::pair{&router_, "fl-r"}, std::pair{&a_, "fl-a"}, std::pair{&c_, "fl-c"}}) {
      auto made = namespaces_.make(suffix);
      ASSERT_TRUE(made) << made.error().message();
      *ns = *made;
    }
    for (const auto& [bridge, address] :
         {std::pair{"br1", "10.79.1.1/24"}, std::pair{"br2", "10.79.2.1/24"}}) {
      must("ip -n " + router_ + " link add " + bridge + " type bridge");
      must("ip -n " + router_ + " addr add " + std::string(address) + " dev " + bridge);
      must("ip -n " + router_ + " link set " + bridge + " up");
    }
    must("ip netns exec " + router_ + " sysctl -qw net.ipv4.ip_forward=1");
    attach(a_, "va", "br1", "10.79.1.10", "10.79.1.1");
    attach(c_, "vc", "br2", "10.79.2.10", "10.79.2.1");
    // Subnet s1's table: a blackhole for 10.99.0.0/16, nothing else beyond the VPC.
    must("ip -n " + router_ + " rule add from 10.79.1.0/24 lookup 100 pref 1000");
    must("ip -n " + router_ + " route add blackhole 10.99.0.0/16 table 100");

    Topology topology;
    ASSERT_TRUE(topology.createVpc({.name = "v", .cidr = "10.79.0.0/16"}, kNow));
    ASSERT_TRUE(topology.createSubnet({.name = "s1", .vpc = "v", .cidr = "10.79.1.0/24"}, kNow));
    ASSERT_TRUE(topology.createSubnet({.name = "s2", .vpc = "v", .cidr = "10.79.2.0/24"}, kNow));
    ASSERT_TRUE(topology.createSecurityGroup({.name = "web", .vpc = "v"}, kNow));
    ASSERT_TRUE(topology.addSecurityGroupRule("web", {.direction = "ingress",
                                                      .protocol = "tcp",
                                                      .fromPort = 8080,
                                                      .toPort = 8080,
                                                      .cidr = "10.79.1.0/24"}));
    const std::vector<NicAttachment> nics = {
        {.instance = "a", .subnet = "s1", .address = "10.79.1.10"},
        {.instance = "c", .subnet = "s2", .address = "10.79.2.10", .securityGroups = {"web"}}};
    auto applied = applyRuleset(router_, vpcRuleset(topology, "v", nics));
    ASSERT_TRUE(applied) << applied.error().message();
  }

  void must(const std::string& command) { ASSERT_EQ(shell(command), 0) << command; }

  void attach(const std::string& ns, const std::string& port, const std::string& bridge,
              const std::string& address, const std::string& gateway) {
    must("ip -n " + router_ + " link add " + port + " type veth peer name eth0 netns " + ns);
    must("ip -n " + router_ + " link set " + port + " master " + bridge + " up");
    must("ip -n " + ns + " addr add " + address + "/24 dev eth0");
    must("ip -n " + ns + " link set eth0 up");
    must("ip -n " + ns + " route add default via " + gateway);
  }

  std::string router_, a_, c_;
  TestNamespaces namespaces_;
};

TEST_F(FlowCaptureTest, RejectsArriveWithTheirGuardAndAcceptedFlowsWithTheirBytes) {
  std::mutex mutex;
  std::vector<RejectedPacket> rejected;
  std::vector<ConntrackFlow> flows;
  auto capture = FlowCapture::start(router_, 300ms, kFlowCaptureBuffer,
                                    {.rejected =
                                         [&](const RejectedPacket& p) {
                                           std::lock_guard l(mutex);
                                           rejected.push_back(p);
                                         },
                                     .flow =
                                         [&](const ConntrackFlow& f) {
                                           std::lock_guard l(mutex);
                                           flows.push_back(f);
                                         },
                                     .dumped = nullptr,
                                     .lost = nullptr});
  ASSERT_TRUE(capture) << capture.error().message();
  // A second reader of the same group in the same namespace is refused, naming it.
  auto second = FlowCapture::start(router_, 300ms, kFlowCaptureBuffer, {});
  EXPECT_FALSE(second);

  // Accepted: a sends 50000 bytes to c:8080 and closes.
  UniqueFd listener = listenIn(c_, 8080);
  ASSERT_TRUE(listener);
  {
    UniqueFd client = tcpSocketIn(a_);
    ASSERT_EQ(connectWithin(client, "10.79.2.10", 8080, 2s), "");
    UniqueFd server = acceptWithin(listener, 2s);
    ASSERT_TRUE(server);
    const std::string payload(50'000, 'x');
    size_t sent = 0;
    while (sent < payload.size()) {
      ssize_t n = ::write(client.get(), payload.data() + sent, payload.size() - sent);
      ASSERT_GT(n, 0);
      sent += static_cast<size_t>(n);
    }
    char buffer[65536];
    size_t got = 0;
    while (got < payload.size()) {
      ssize_t n = ::read(server.get(), buffer, sizeof buffer);
      ASSERT_GT(n, 0);
      got += static_cast<size_t>(n);
    }
  }
  // Refused by c's security group (9090 is not open), and a destination s1's table blackholes.
  {
    UniqueFd client = tcpSocketIn(a_);
    EXPECT_NE(connectWithin(client, "10.79.2.10", 9090, 1500ms), "");
    UniqueFd nowhere = tcpSocketIn(a_);
    EXPECT_NE(connectWithin(nowhere, "10.99.0.5", 80, 500ms), "");
  }

  auto seen = [&](auto&& check) {
    for (int i = 0; i < 50; ++i) {
      {
        std::lock_guard l(mutex);
        if (check()) return true;
      }
      std::this_thread::sleep_for(100ms);
    }
    return false;
  };
  const uint32_t a = 0x0a4f010a, c = 0x0a4f020a;
  EXPECT_TRUE(seen([&] {
    for (const ConntrackFlow& f : flows) {
      if (f.original.source == a && f.original.destination == c && f.original.destinationPort == 8080 &&
          f.originalBytes >= 50'000 && f.replyPackets > 0)
        return true;
    }
    return false;
  })) << flows.size()
      << " flows seen, none with a's 50000 bytes";
  EXPECT_TRUE(seen([&] {
    for (const RejectedPacket& p : rejected) {
      if (p.prefix == "crl:s:i:web" && p.tuple.source == a && p.tuple.destinationPort == 9090 &&
          p.bytes >= 40)
        return true;
    }
    return false;
  })) << rejected.size()
      << " rejects seen, none refused by web";
  EXPECT_TRUE(seen([&] {
    for (const RejectedPacket& p : rejected) {
      if (p.prefix == "crl:r" && p.tuple.destination == 0x0a630005) return true;
    }
    return false;
  })) << "the blackholed destination was not logged by chain no-route";
  // Accounting is on in the router's namespace, not anywhere else.
  FILE* acct =
      ::popen(("ip netns exec " + router_ + " cat /proc/sys/net/netfilter/nf_conntrack_acct").c_str(), "r");
  ASSERT_NE(acct, nullptr);
  char value[8] = {};
  EXPECT_NE(std::fgets(value, sizeof value, acct), nullptr);
  ::pclose(acct);
  EXPECT_EQ(std::string(value), "1\n");
  capture->reset();
}

}  // namespace
}  // namespace corral::net
