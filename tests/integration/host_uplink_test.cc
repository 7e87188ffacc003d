// Host-uplink mode end to end, the default for real users (no --uplink-netns: internet gateways lead to
// corrald's own namespace and out of its default route), played in namespaces this test makes: corrald
// runs in "host" (through nsenter, only its network namespace differs), whose default route leads over a
// veth pair to "world", the internet, where a server listens. The real root namespace's addresses, routes
// and firewall are never touched, and the test checks that they were not.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "tests/integration/harness.h"
#include "tests/integration/netns_testing.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using testing::NetnsGuard;
using testing::Reply;
using testing::TestDaemon;

// The link between the played host and the internet (RFC 5737 TEST-NET-3), and a server in the internet
// (TEST-NET-2) on its lo.
constexpr const char* kHostAddress = "203.0.113.2";
constexpr const char* kWorldAddress = "203.0.113.1";
constexpr const char* kServer = "198.51.100.10";

uint64_t netnsInode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_ino) : 0;
}

// What of the real root namespace host-uplink mode would change there: the gateways' uplink sides (crlu
// links), ip_forward and corral's uplink nftables tables (read only; other tests' VM taps pass through the
// root namespace, so only these are compared).
struct RootNamespaceView {
  std::set<std::string> uplinkLinks;
  std::string ipForward;
  std::string uplinkTables;
  bool operator==(const RootNamespaceView&) const = default;
};
RootNamespaceView viewRootNamespace() {
  RootNamespaceView view;
  if (auto netlink = net::Netlink::open(); netlink) {
    if (auto links = netlink->links(); links) {
      for (const net::LinkInfo& link : *links)
        if (link.name.starts_with("crlu")) view.uplinkLinks.insert(link.name);
    }
  }
  view.ipForward = testing::readFile("/proc/sys/net/ipv4/ip_forward");
  if (FILE* nft = ::popen("/usr/sbin/nft list tables 2>&1", "r")) {
    char buffer[512];
    while (std::fgets(buffer, sizeof buffer, nft) != nullptr)
      if (std::string(buffer).find("corral_uplink") != std::string::npos) view.uplinkTables += buffer;
    ::pclose(nft);
  }
  return view;
}

// From inside instance `from`: nc to address:port, what the other side said ("" when nothing).
std::string dialFrom(const TestDaemon& d, const std::string& from, const std::string& address, int port) {
  Reply run = d.call("POST", fmt::format("/v1/instances/{}/exec", from),
                     {{"command", {"sh", "-c", fmt::format("nc -w 3 {} {} </dev/null", address, port)}}});
  return run.body.value("stdout", "");
}

class HostUplink : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::requireRoot()) GTEST_SKIP() << "namespaces, veths, nftables and containers need root";
    rootBefore_ = viewRootNamespace();
    ASSERT_TRUE(namespaces_.create(host_).has_value()) << host_;
    ASSERT_TRUE(namespaces_.create(world_).has_value()) << world_;
    buildTheWorld();
    if (HasFatalFailure()) return;
    daemon_.playHostIn(host_);
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
    // corrald is in the played host, not in the real one: checked before it is asked to make anything.
    const uint64_t inode = netnsInode(fmt::format("/proc/{}/ns/net", daemon_.pid()));
    if (inode != netnsInode("/run/netns/" + host_) || inode == netnsInode("/proc/self/ns/net")) {
      daemon_.kill9();
      FAIL() << "corrald is not in the namespace " << host_;
    }
    Reply info = daemon_.call("GET", "/v1/info");
    ASSERT_EQ(info.body["network"].value("uplink", ""), "host") << info.body.dump();
  }

  void TearDown() override {
    if (IsSkipped()) return;
    // Whatever happened, the real root namespace is as it was.
    EXPECT_EQ(viewRootNamespace(), rootBefore_) << "the test changed the real root namespace";
  }

  // host: veth hup0 203.0.113.2/24, default via 203.0.113.1. world: hup1 203.0.113.1/24, the server's
  // address on lo, and a route to corral's pools via the host (as a user's LAN router would have, for
  // published ports and public addresses to be reachable from outside the host).
  void buildTheWorld() {
    auto hostFd = net::openNetns(host_);
    auto worldFd = net::openNetns(world_);
    ASSERT_TRUE(hostFd.has_value() && worldFd.has_value());
    auto hostLinks = net::Netlink::open(host_);
    ASSERT_TRUE(hostLinks.has_value()) << hostLinks.error().message();
    auto made = hostLinks->createVethPair("hup0", "hup1", worldFd->get(), std::nullopt);
    ASSERT_TRUE(made.has_value()) << made.error().message();
    for (const char* link : {"lo", "hup0"}) ASSERT_TRUE(hostLinks->setUp(link).has_value()) << link;
    ASSERT_TRUE(hostLinks->addAddress("hup0", std::string(kHostAddress) + "/24").has_value());
    auto route = hostLinks->addDefaultRoute(kWorldAddress);
    ASSERT_TRUE(route.has_value()) << route.error().message();
    auto worldLinks = net::Netlink::open(world_);
    ASSERT_TRUE(worldLinks.has_value()) << worldLinks.error().message();
    for (const char* link : {"lo", "hup1"}) ASSERT_TRUE(worldLinks->setUp(link).has_value()) << link;
    ASSERT_TRUE(worldLinks->addAddress("hup1", std::string(kWorldAddress) + "/24").has_value());
    ASSERT_TRUE(worldLinks->addAddress("lo", std::string(kServer) + "/32").has_value());
    auto pools =
        worldLinks->addRoute({.destination = "100.64.0.0/16", .gateway = kHostAddress, .device = "hup1"});
    ASSERT_TRUE(pools.has_value()) << pools.error().message();
  }

  // The server in the world answers one connection on `port` with "world"; the peer it saw.
  std::string serveOnce(uint16_t port, const std::function<void()>& client) {
    UniqueFd listener = testing::listenIn(world_, port, kServer);
    EXPECT_TRUE(listener) << "listening in " << world_;
    std::string peer;
    std::thread server([&] {
      if (!listener) return;
      UniqueFd conn = testing::acceptWithin(listener, 8s, &peer);
      if (conn) [[maybe_unused]]
        ssize_t n = ::write(conn.get(), "world\n", 6);
    });
    client();
    server.join();
    return peer;
  }

  // From the world: connect to address:port and read until the other side closes (nullopt: no connection).
  std::optional<std::string> fromTheWorld(const std::string& address, uint16_t port) {
    UniqueFd client = testing::tcpSocketIn(world_);
    if (!client || !testing::connectWithin(client, address, port, 3s).empty()) return std::nullopt;
    std::string text;
    char buffer[256];
    while (testing::waitForFd(client.get(), POLLIN, 3s)) {
      ssize_t n = ::read(client.get(), buffer, sizeof buffer);
      if (n <= 0) break;
      text.append(buffer, static_cast<size_t>(n));
    }
    return text;
  }

  const std::string host_ = testing::testNetnsPrefix() + "host";
  const std::string world_ = testing::testNetnsPrefix() + "world";
  RootNamespaceView rootBefore_;
  NetnsGuard namespaces_;  // declared before the daemon: the namespaces outlive it
  TestDaemon daemon_{"hostup", {"--accelerator", "tcg"}};
};

TEST_F(HostUplink, PublicPrivateAndPublishedTrafficGoesThroughTheHostsOwnUplink) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "home"}, {"cidr", "10.9.0.0/16"}});
  d.must("POST", "/v1/internet-gateways", {{"name", "door"}, {"vpc", "home"}});
  d.must("POST", "/v1/route-tables", {{"name", "public"}, {"vpc", "home"}});
  d.must("POST", "/v1/route-tables", {{"name", "private"}, {"vpc", "home"}});
  d.must("POST", "/v1/route-tables/public/routes",
         {{"destination", "0.0.0.0/0"}, {"target_type", "internet_gateway"}, {"target", "door"}});
  d.must("POST", "/v1/subnets",
         {{"name", "front"}, {"vpc", "home"}, {"cidr", "10.9.0.0/24"}, {"route_table", "public"}});
  d.must("POST", "/v1/subnets",
         {{"name", "back"}, {"vpc", "home"}, {"cidr", "10.9.1.0/24"}, {"route_table", "private"}});
  d.must("POST", "/v1/nat-gateways", {{"name", "nat"}, {"subnet", "front"}});
  d.must("POST", "/v1/route-tables/private/routes",
         {{"destination", "0.0.0.0/0"}, {"target_type", "nat_gateway"}, {"target", "nat"}});
  d.must("POST", "/v1/security-groups", {{"name", "web"}, {"vpc", "home"}, {"description", "http"}});
  d.must("POST", "/v1/security-groups/web/rules",
         {{"direction", "ingress"},
          {"protocol", "tcp"},
          {"from_port", 80},
          {"to_port", 80},
          {"cidr", "0.0.0.0/0"}});
  const std::string serve = "nc -ll -p 80 -e /bin/echo {}:80";
  json pub = d.must("POST", "/v1/instances",
                    {{"name", "pub"},
                     {"image", "busybox"},
                     {"command", {"sh", "-c", fmt::format(fmt::runtime(serve), "pub")}},
                     {"subnet", "front"},
                     {"security_groups", {"web"}},
                     {"public_ip", true},
                     {"publish", {"8080:80"}}});
  json inner =
      d.must("POST", "/v1/instances",
             {{"name", "inner"}, {"image", "busybox"}, {"command", {"sleep", "600"}}, {"subnet", "back"}});
  ASSERT_FALSE(HasFailure()) << d.logTail();
  const std::string publicIp = pub["network"].value("public_ip", "");
  ASSERT_TRUE(publicIp.starts_with("100.64.")) << pub.dump();

  // The gateway's uplink side is in the played host, next to its uplink; nothing in the world.
  Reply topology = d.call("GET", "/v1/vpcs/home/topology");
  const json& gateway = topology.body["internet_gateway"];
  ASSERT_TRUE(gateway.is_object()) << topology.body.dump();
  EXPECT_EQ(gateway.value("uplink", ""), "host") << gateway.dump();
  auto hostLinks = net::Netlink::open(host_);
  ASSERT_TRUE(hostLinks.has_value());
  auto uplinkSide = hostLinks->link(gateway.value("uplink_link", ""));
  ASSERT_TRUE(uplinkSide && uplinkSide->has_value()) << "the gateway's uplink side is not in " << host_;

  // Out from the public subnet with a public address, and from the private one through the NAT gateway:
  // both reach the world's server, which sees the host's own address (the host masquerades them).
  std::string said;
  std::string peer = serveOnce(7001, [&] { said = dialFrom(d, "pub", kServer, 7001); });
  EXPECT_EQ(said, "world\n") << d.logTail();
  EXPECT_EQ(peer, kHostAddress);
  peer = serveOnce(7002, [&] { said = dialFrom(d, "inner", kServer, 7002); });
  EXPECT_EQ(said, "world\n") << d.logTail();
  EXPECT_EQ(peer, kHostAddress);

  // In from the world: the published port on the gateway's outside address, and the public address.
  const std::string outside = gateway.value("outside_address", "");
  ASSERT_FALSE(outside.empty()) << gateway.dump();
  EXPECT_EQ(fromTheWorld(outside, 8080).value_or("(no connection)"), "pub:80\n");
  EXPECT_EQ(fromTheWorld(publicIp, 80).value_or("(no connection)"), "pub:80\n");
  EXPECT_FALSE(fromTheWorld(outside, 8081).has_value()) << "only what is published";

  // The host's side of the mode is where it belongs: forwarding on and corral's uplink table, in the
  // played host only (the root namespace is compared in TearDown).
  std::string forward;
  ASSERT_TRUE(
      testing::runInNetns(host_, [&] { forward = testing::readFile("/proc/sys/net/ipv4/ip_forward"); }));
  EXPECT_EQ(forward, "1\n");
}

}  // namespace
}  // namespace corral
