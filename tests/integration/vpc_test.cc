// VPC networking end to end through a real corrald (as root): containers and VMs (libvirt, TCG) in
// subnets of real VPC namespaces, talking TCP to each other and to "the internet" (a namespace this test
// process owns, holding an internet host at 198.51.100.10). Covers the switch (same subnet), the router
// (across subnets), isolation between VPCs, NAT and internet gateways, published ports, public addresses,
// security groups, network ACLs, refused input that changes nothing in the kernel, what is left after
// everything is deleted, and reconciliation after a SIGKILLed daemon. Every namespace and domain carries
// this process's prefix, so nothing outside it is ever touched.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/client.h"
#include "core/unique_fd.h"
#include "net/capture.h"
#include "net/frames.h"
#include "net/netlink.h"
#include "tests/integration/harness.h"
#include "tests/integration/netns_testing.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using corral::testing::acceptWithin;
using corral::testing::bindTo;
using corral::testing::connectWithin;
using corral::testing::listenIn;
using corral::testing::ourDomains;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::tcpSocketIn;
using corral::testing::TestDaemon;
using corral::testing::waitForFd;

// "The internet host": a documentation address (RFC 5737) on the lo of the test's uplink namespace.
constexpr const char* kInternetHost = "198.51.100.10";
constexpr int kConnectSeconds = 2;

std::string vpcNetnsPrefix() {
  return corral::testing::testNetnsPrefix() + "vpc-";
}

// ---- The internet host (in the test's own uplink namespace) ----

// The internet host's address on the uplink namespace's lo (once per process).
void ensureInternetHost() {
  const std::string& uplink = corral::testing::testUplinkNetns();
  auto netlink = net::Netlink::open(uplink);
  ASSERT_TRUE(netlink.has_value()) << netlink.error().message();
  auto lo = netlink->link("lo");
  ASSERT_TRUE(lo.has_value() && lo->has_value());
  const std::string wanted = std::string(kInternetHost) + "/32";
  if (std::find((*lo)->addresses.begin(), (*lo)->addresses.end(), wanted) == (*lo)->addresses.end()) {
    auto added = netlink->addAddress("lo", wanted);
    ASSERT_TRUE(added.has_value()) << added.error().message();
  }
  auto up = netlink->setUp("lo");
  ASSERT_TRUE(up.has_value()) << up.error().message();
}

// A listener of the internet host on `port`.
UniqueFd internetListen(uint16_t port) {
  return listenIn(corral::testing::testUplinkNetns(), port, kInternetHost);
}

// The internet host connects to address:port and reads what the other side says until it closes.
// nullopt: no connection, and `*failure` says why ("timed out": no answer at all, or the connect error).
std::optional<std::string> internetConnect(const std::string& address, uint16_t port,
                                           std::string* failure = nullptr) {
  auto fail = [&](const std::string& why) -> std::optional<std::string> {
    if (failure != nullptr) *failure = why;
    return std::nullopt;
  };
  UniqueFd client = tcpSocketIn(corral::testing::testUplinkNetns());
  if (!client) return fail("no socket in the uplink namespace");
  if (!bindTo(client, kInternetHost)) return fail(std::string("bind: ") + std::strerror(errno));
  std::string notConnected = connectWithin(client, address, port, std::chrono::seconds(kConnectSeconds));
  if (!notConnected.empty()) return fail(notConnected);
  std::string text;
  char buffer[256];
  while (waitForFd(client.get(), POLLIN, 3s)) {
    ssize_t n = ::read(client.get(), buffer, sizeof buffer);
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

// The links of a namespace as "name@master:up" strings, for before/after comparisons.
std::set<std::string> linkNames(const std::string& netns) {
  std::set<std::string> names;
  auto netlink = net::Netlink::open(netns);
  if (!netlink) return names;
  auto links = netlink->links();
  if (!links) return names;
  for (const net::LinkInfo& link : *links) {
    names.insert(link.name + (link.master ? "@" + *link.master : "") + (link.up ? ":up" : ":down"));
  }
  return names;
}

std::vector<std::string> ourVpcNamespaces() {
  std::vector<std::string> found;
  for (const std::string& name : net::listNetns()) {
    if (name.starts_with(vpcNetnsPrefix())) found.push_back(name);
  }
  return found;
}

std::vector<std::string> uplinkCorralLinks() {
  std::vector<std::string> found;
  for (const std::string& link : linkNames(corral::testing::testUplinkNetns())) {
    if (link.starts_with("crl")) found.push_back(link);
  }
  return found;
}

// ---- Building blocks ----

void createVpc(const TestDaemon& d, const std::string& name, const std::string& cidr) {
  d.must("POST", "/v1/vpcs", {{"name", name}, {"cidr", cidr}});
}

void createSubnet(const TestDaemon& d, const std::string& name, const std::string& vpc,
                  const std::string& cidr, const std::string& routeTable = "") {
  json spec = {{"name", name}, {"vpc", vpc}, {"cidr", cidr}};
  if (!routeTable.empty()) spec["route_table"] = routeTable;
  d.must("POST", "/v1/subnets", spec);
}

void addRoute(const TestDaemon& d, const std::string& table, const std::string& destination,
              const std::string& targetType, const std::string& target) {
  d.must("POST", fmt::format("/v1/route-tables/{}/routes", table),
         {{"destination", destination}, {"target_type", targetType}, {"target", target}});
}

// Listens on every port of `ports`; a connection is answered with "NAME:PORT" and closed.
std::string listenerScript(const std::string& name, const std::vector<int>& ports) {
  std::string script;
  for (int port : ports) script += fmt::format("nc -ll -p {0} -e /bin/echo {1}:{0} & ", port, name);
  return script + "wait";
}

// A container in `subnet` serving `ports`; `extra` is merged into the spec (ip, security_groups, ...).
json runContainer(const TestDaemon& d, const std::string& name, const std::string& subnet,
                  const std::vector<int>& ports = {80}, const json& extra = json::object()) {
  json spec = {{"name", name},
               {"image", "busybox"},
               {"command", {"sh", "-c", listenerScript(name, ports)}},
               {"subnet", subnet}};
  spec.update(extra);
  return d.must("POST", "/v1/instances", spec);
}

// A VM in `subnet`, waited for until its guest is ready, then serving `ports` like a container.
json runVm(const TestDaemon& d, const std::string& name, const std::string& subnet,
           const std::vector<int>& ports = {80}) {
  json created =
      d.must("POST", "/v1/instances",
             {{"name", name}, {"kind", "vm"}, {"image", "busybox"}, {"memory", "128M"}, {"subnet", subnet}});
  json ready = d.waitWhile(name, "starting");
  EXPECT_EQ(ready.value("state", ""), "running") << ready.dump(2) << "\n" << d.logTail();
  Reply serve = d.call(
      "POST", fmt::format("/v1/instances/{}/exec", name),
      {{"command",
        {"sh", "-c",
         fmt::format("setsid sh -c '{}' </dev/null >/dev/null 2>&1 &", listenerScript(name, ports))}}});
  EXPECT_EQ(serve.status, 200) << serve.body.dump();
  return ready;
}

struct Dial {
  bool ran = false;  // the exec ran nc to its end (so a failure is the network's, not the exec's)
  bool connected = false;
  bool timedOut = false;  // no answer at all: the packets were dropped (not refused, not unroutable)
  std::string said;       // what the listener answered
  std::string detail;     // nc's exit code and stderr, for messages
};

// From inside instance `from`: nc to address:port; connected when the listener's answer arrived.
Dial dialOnce(const TestDaemon& d, const std::string& from, const std::string& address, int port) {
  Reply run = d.call(
      "POST", fmt::format("/v1/instances/{}/exec", from),
      {{"command", {"sh", "-c", fmt::format("nc -w {} {} {} </dev/null", kConnectSeconds, address, port)}}});
  Dial dial;
  dial.said = run.body.value("stdout", "");
  while (!dial.said.empty() && dial.said.back() == '\n') dial.said.pop_back();
  dial.detail =
      fmt::format("{} → {}:{}: HTTP {}, exit {}, stdout \"{}\", stderr \"{}\"", from, address, port,
                  run.status, run.body.value("exit_code", -1), dial.said, run.body.value("stderr", ""));
  dial.ran = run.status == 200 && run.body.contains("exit_code") && run.body["exit_code"].is_number();
  dial.connected = dial.ran && run.body["exit_code"] == 0 && !dial.said.empty();
  dial.timedOut = !dial.connected && run.body.value("stderr", "").find("timed out") != std::string::npos;
  return dial;
}

// A connection that should fail: one try, and the exec itself must have worked.
Dial blockedDial(const TestDaemon& d, const std::string& from, const std::string& address, int port) {
  Dial dial = dialOnce(d, from, address, port);
  EXPECT_TRUE(dial.ran) << dial.detail;
  return dial;
}

// A connection that should work: listeners of a just-started instance may need a moment, so a few tries.
Dial dial(const TestDaemon& d, const std::string& from, const std::string& address, int port) {
  Dial last;
  for (int attempt = 0; attempt < 4; ++attempt) {
    last = dialOnce(d, from, address, port);
    if (last.connected) return last;
    std::this_thread::sleep_for(300ms);
  }
  return last;
}

// Instance `from` calls the internet host on `port`: what it read, and the peer address the internet host
// saw (after any NAT). Empty peer: no connection arrived.
struct InternetCall {
  Dial dial;
  std::string peer;
};
InternetCall callInternet(const TestDaemon& d, const std::string& from, uint16_t port) {
  UniqueFd listener = internetListen(port);
  EXPECT_TRUE(listener) << "listening on the internet host";
  InternetCall call;
  std::thread server([&] {
    if (!listener) return;
    UniqueFd conn = acceptWithin(listener, std::chrono::seconds(kConnectSeconds + 3), &call.peer);
    if (!conn) return;
    [[maybe_unused]] ssize_t n = ::write(conn.get(), "internet\n", 9);
  });
  call.dial = dialOnce(d, from, kInternetHost, port);
  server.join();
  return call;
}

std::string ipOf(const json& instance) {
  return instance.value("ip", "");
}

// Removes everything through the API, then checks that nothing of ours is left in the kernel or libvirt.
void expectNothingLeft(const TestDaemon& d, const std::vector<std::string>& taps) {
  std::vector<std::string> failed = d.removeEverything();
  EXPECT_TRUE(failed.empty()) << fmt::format("{}", fmt::join(failed, "\n")) << "\n" << d.logTail();
  EXPECT_TRUE(ourVpcNamespaces().empty()) << fmt::format("{}", fmt::join(ourVpcNamespaces(), ", "));
  EXPECT_TRUE(uplinkCorralLinks().empty()) << fmt::format("{}", fmt::join(uplinkCorralLinks(), ", "));
  for (const std::string& tap : taps) {
    EXPECT_FALSE(std::filesystem::exists("/sys/class/net/" + tap))
        << "tap " << tap << " left in the root namespace";
  }
  EXPECT_TRUE(ourDomains().empty());
  EXPECT_TRUE(d.list("vpcs").empty()) << d.list("vpcs").dump();
}

class Vpc : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "VPC namespaces, bridges and libvirt need root";
    ensureInternetHost();
    if (HasFatalFailure()) return;
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }
  // corrald under TCG, with its own state, socket, cgroup parent, domain prefix and network prefix.
  TestDaemon daemon_{"vpc", {"--accelerator", "tcg"}};
};

// A VM stopped with --save resumes on its subnet: its tap is plugged into the VPC again, its listener (a
// process that lived through the save) answers a container, and it reaches the container.
TEST_F(Vpc, ASavedVmResumesOnItsSubnet) {
  TestDaemon& d = daemon_;
  createVpc(d, "prod", "10.0.0.0/16");
  createSubnet(d, "web", "prod", "10.0.1.0/24");
  json a = runContainer(d, "a", "web");
  json vm = runVm(d, "vm1", "web");
  ASSERT_FALSE(HasFailure());
  Dial before = dial(d, "a", ipOf(vm), 80);
  ASSERT_TRUE(before.connected) << before.detail;

  Reply saved = d.call("POST", "/v1/instances/vm1/stop", {{"save", true}});
  ASSERT_EQ(saved.status, 200) << saved.body.dump() << d.logTail();
  EXPECT_EQ(saved.body["saved"], true) << saved.body.dump();
  Reply started = d.call("POST", "/v1/instances/vm1/start");
  ASSERT_EQ(started.status, 200) << started.body.dump() << d.logTail();
  json resumed = d.waitWhile("vm1", "starting");
  ASSERT_EQ(resumed.value("state", ""), "running") << resumed.dump(2) << d.logTail();
  EXPECT_EQ(resumed["boot"]["restored"], true) << resumed["boot"].dump();
  EXPECT_EQ(ipOf(resumed), ipOf(vm));
  EXPECT_EQ(resumed["network"].value("link", ""), vm["network"].value("link", ""));

  Dial toVm = dial(d, "a", ipOf(vm), 80);
  EXPECT_TRUE(toVm.connected) << toVm.detail;
  EXPECT_EQ(toVm.said, "vm1:80") << toVm.detail;
  Dial fromVm = dial(d, "vm1", ipOf(a), 80);
  EXPECT_TRUE(fromVm.connected) << fromVm.detail;
  expectNothingLeft(d, {vm["network"].value("link", "")});
}

// 1. The switch (same subnet), the router (across subnets), containers and a VM alike; two VPCs with the
// same range never meet.
TEST_F(Vpc, SameSubnetAcrossSubnetsContainersAndVmButNeverAcrossVpcs) {
  TestDaemon& d = daemon_;
  createVpc(d, "prod", "10.0.0.0/16");
  createSubnet(d, "web", "prod", "10.0.1.0/24");
  createSubnet(d, "app", "prod", "10.0.2.0/24");
  json a = runContainer(d, "a", "web");
  json b = runContainer(d, "b", "web");
  json c = runContainer(d, "c", "app");
  json vm = runVm(d, "vm1", "web");
  ASSERT_FALSE(HasFailure());

  // What the instances were given.
  EXPECT_EQ(ipOf(a), "10.0.1.4") << a.dump() << " (the lowest address AWS does not reserve)";
  EXPECT_EQ(a["network"].value("subnet", ""), "web") << a.dump();
  EXPECT_EQ(a["network"].value("address", ""), ipOf(a) + "/24") << a.dump();
  EXPECT_EQ(a["network"].value("gateway", ""), "10.0.1.1") << a.dump();
  EXPECT_TRUE(ipOf(c).starts_with("10.0.2.")) << c.dump();
  EXPECT_TRUE(ipOf(vm).starts_with("10.0.1.")) << vm.dump();
  std::set<std::string> ips = {ipOf(a), ipOf(b), ipOf(vm)};
  EXPECT_EQ(ips.size(), 3u) << "distinct addresses";
  const std::string tap = vm["network"].value("link", "");
  EXPECT_TRUE(tap.starts_with("crlt")) << vm.dump();

  // Inside: eth0 with the address and the default route via the router.
  Reply addr = d.call("POST", "/v1/instances/a/exec", {{"command", {"ip", "-4", "addr", "show", "eth0"}}});
  EXPECT_NE(addr.body.value("stdout", "").find(ipOf(a) + "/24"), std::string::npos) << addr.body.dump();
  Reply route = d.call("POST", "/v1/instances/a/exec", {{"command", {"ip", "route"}}});
  EXPECT_NE(route.body.value("stdout", "").find("default via 10.0.1.1"), std::string::npos)
      << route.body.dump();
  Reply vmRoute = d.call("POST", "/v1/instances/vm1/exec", {{"command", {"ip", "route"}}});
  EXPECT_NE(vmRoute.body.value("stdout", "").find("default via 10.0.1.1"), std::string::npos)
      << vmRoute.body.dump();

  for (const json* instance : {&a, &vm}) {
    const std::string name = instance->value("name", "");
    Reply mac = d.call("POST", fmt::format("/v1/instances/{}/exec", name),
                       {{"command", {"cat", "/sys/class/net/eth0/address"}}});
    EXPECT_EQ(mac.body.value("stdout", ""), (*instance)["network"].value("mac", "") + "\n")
        << name << ": " << mac.body.dump();
  }

  // The topology: the namespace, one bridge per subnet with its router, the members.
  Reply topology = d.call("GET", "/v1/vpcs/prod/topology");
  ASSERT_EQ(topology.status, 200) << topology.body.dump();
  EXPECT_EQ(topology.body["vpc"].value("netns", ""), vpcNetnsPrefix() + "prod");
  EXPECT_TRUE(topology.body["kernel"].value("netns_present", false));
  EXPECT_TRUE(topology.body["internet_gateway"].is_null());
  ASSERT_EQ(topology.body["subnets"].size(), 2u) << topology.body.dump();
  std::set<std::string> bridges;
  for (const json& subnet : topology.body["subnets"]) {
    bridges.insert(subnet.value("bridge", ""));
    EXPECT_TRUE(subnet.value("bridge", "").starts_with("crlb")) << subnet.dump();
  }
  std::set<std::string> kernelLinks = linkNames(vpcNetnsPrefix() + "prod");
  for (const std::string& bridge : bridges) EXPECT_TRUE(kernelLinks.contains(bridge + ":up")) << bridge;
  for (const json& subnet : topology.body["subnets"]) {
    std::set<std::string> members;
    for (const json& member : subnet.value("instances", json::array()))
      members.insert(member.value("name", ""));
    const std::set<std::string> wanted = subnet.value("name", "") == "web"
                                             ? std::set<std::string>{"a", "b", "vm1"}
                                             : std::set<std::string>{"c"};
    EXPECT_EQ(members, wanted) << subnet.dump();
    EXPECT_EQ(subnet.value("router", ""), subnet.value("name", "") == "web" ? "10.0.1.1" : "10.0.2.1");
  }
  bool tapOnBridge = std::any_of(kernelLinks.begin(), kernelLinks.end(),
                                 [&](const std::string& link) { return link.starts_with(tap + "@crlb"); });
  EXPECT_TRUE(tapOnBridge) << "the VM's tap is a port of the web bridge in the VPC namespace";
  EXPECT_FALSE(std::filesystem::exists("/sys/class/net/" + tap)) << "the tap left the root namespace";

  // Same subnet: container ↔ container, container ↔ VM both ways.
  Dial ab = dial(d, "a", ipOf(b), 80);
  EXPECT_TRUE(ab.connected) << ab.detail;
  EXPECT_EQ(ab.said, "b:80") << ab.detail;
  Dial aVm = dial(d, "a", ipOf(vm), 80);
  EXPECT_TRUE(aVm.connected) << aVm.detail;
  EXPECT_EQ(aVm.said, "vm1:80") << aVm.detail;
  Dial vmA = dial(d, "vm1", ipOf(a), 80);
  EXPECT_TRUE(vmA.connected) << vmA.detail;
  EXPECT_EQ(vmA.said, "a:80") << vmA.detail;

  // Across subnets, through the VPC router: container ↔ container, VM → container.
  Dial ac = dial(d, "a", ipOf(c), 80);
  EXPECT_TRUE(ac.connected) << ac.detail;
  Dial ca = dial(d, "c", ipOf(a), 80);
  EXPECT_TRUE(ca.connected) << ca.detail;
  Dial vmC = dial(d, "vm1", ipOf(c), 80);
  EXPECT_TRUE(vmC.connected) << vmC.detail;
  Dial cVm = dial(d, "c", ipOf(vm), 80);
  EXPECT_TRUE(cVm.connected) << cVm.detail;

  // A second VPC with the same range: its instance gets the same first address, and reaches nothing of
  // prod (b's address does not exist in it; there is no path between the namespaces).
  createVpc(d, "dev", "10.0.0.0/16");
  createSubnet(d, "dev-web", "dev", "10.0.1.0/24");
  json x = runContainer(d, "x", "dev-web");
  EXPECT_EQ(ipOf(x), ipOf(a)) << "VPCs are separate address spaces";
  Dial xy = dial(d, "x", ipOf(x), 80);
  EXPECT_TRUE(xy.connected && xy.said == "x:80") << "x answers itself, not a: " << xy.detail;
  Dial xb = blockedDial(d, "x", ipOf(b), 80);
  EXPECT_FALSE(xb.connected) << xb.detail;
  Dial xc = blockedDial(d, "x", ipOf(c), 80);
  EXPECT_FALSE(xc.connected) << xc.detail;

  // 6. Everything deleted through the API (instances by force, then the network objects, dependants
  // first): nothing of ours stays in the kernel.
  expectNothingLeft(d, {tap});
}

// 2. A private subnet calls out through a NAT gateway (the internet sees the gateway's outside address);
// nobody calls in.
TEST_F(Vpc, PrivateSubnetCallsOutThroughNatGatewayAndNobodyCallsIn) {
  TestDaemon& d = daemon_;
  createVpc(d, "corp", "10.1.0.0/16");
  d.must("POST", "/v1/internet-gateways", {{"name", "door"}, {"vpc", "corp"}});
  d.must("POST", "/v1/route-tables", {{"name", "public"}, {"vpc", "corp"}});
  d.must("POST", "/v1/route-tables", {{"name", "private"}, {"vpc", "corp"}});
  addRoute(d, "public", "0.0.0.0/0", "internet_gateway", "door");
  createSubnet(d, "edge", "corp", "10.1.0.0/24", "public");
  createSubnet(d, "inner", "corp", "10.1.1.0/24", "private");
  d.must("POST", "/v1/nat-gateways", {{"name", "nat"}, {"subnet", "edge"}});
  addRoute(d, "private", "0.0.0.0/0", "nat_gateway", "nat");
  json hidden = runContainer(d, "hidden", "inner");
  json vm = runVm(d, "vm2", "inner");
  ASSERT_FALSE(HasFailure());
  const std::string tap = vm["network"].value("link", "");

  Reply topology = d.call("GET", "/v1/vpcs/corp/topology");
  ASSERT_EQ(topology.status, 200) << topology.body.dump();
  const json& gateway = topology.body["internet_gateway"];
  ASSERT_TRUE(gateway.is_object()) << topology.body.dump();
  const std::string outside = gateway.value("outside_address", "");
  EXPECT_TRUE(outside.starts_with("100.64.")) << gateway.dump();
  const std::string uplinkLink = gateway.value("uplink_link", "");
  std::set<std::string> uplinkLinks = linkNames(corral::testing::testUplinkNetns());
  EXPECT_TRUE(uplinkLinks.contains(uplinkLink + ":up")) << "the gateway's uplink side is in the internet";

  // Out: a container and a VM; the internet sees the gateway's outside address, not 10.1.1.x.
  InternetCall fromContainer = callInternet(d, "hidden", 7001);
  EXPECT_TRUE(fromContainer.dial.connected) << fromContainer.dial.detail << "\n" << d.logTail();
  EXPECT_EQ(fromContainer.dial.said, "internet") << fromContainer.dial.detail;
  EXPECT_EQ(fromContainer.peer, outside);
  InternetCall fromVm = callInternet(d, "vm2", 7002);
  EXPECT_TRUE(fromVm.dial.connected) << fromVm.dial.detail;
  EXPECT_EQ(fromVm.peer, outside);

  // In: even with a route in the internet to the VPC's range via the gateway, nothing gets through.
  auto uplink = net::Netlink::open(corral::testing::testUplinkNetns());
  ASSERT_TRUE(uplink.has_value()) << uplink.error().message();
  auto routed = uplink->addRoute({.destination = "10.1.0.0/16", .gateway = outside, .device = uplinkLink});
  ASSERT_TRUE(routed.has_value()) << routed.error().message();
  // "timed out": the packets went to the VPC and were dropped there (not refused, not unroutable here).
  std::string why;
  EXPECT_FALSE(internetConnect(ipOf(hidden), 80, &why).has_value())
      << "the internet reached a private container";
  EXPECT_EQ(why, "timed out");
  EXPECT_FALSE(internetConnect(ipOf(vm), 80, &why).has_value()) << "the internet reached a private VM";
  EXPECT_EQ(why, "timed out");
  EXPECT_FALSE(internetConnect(outside, 80).has_value()) << "nothing is published on the outside address";
  // The listeners were there all along: a neighbour in the VPC reaches both.
  Dial neighbour = dial(d, "hidden", ipOf(vm), 80);
  EXPECT_TRUE(neighbour.connected) << neighbour.detail;
  [[maybe_unused]] auto unrouted =
      uplink->deleteRoute({.destination = "10.1.0.0/16", .gateway = outside, .device = uplinkLink});

  expectNothingLeft(d, {tap});
}

// 3. Published ports and public addresses: the internet reaches exactly what was published.
TEST_F(Vpc, PublishedPortsAndPublicAddressesReachTheInstanceAndNothingElse) {
  TestDaemon& d = daemon_;
  createVpc(d, "shop", "10.2.0.0/16");
  d.must("POST", "/v1/internet-gateways", {{"name", "door"}, {"vpc", "shop"}});
  d.must("POST", "/v1/route-tables", {{"name", "public"}, {"vpc", "shop"}});
  addRoute(d, "public", "0.0.0.0/0", "internet_gateway", "door");
  createSubnet(d, "front", "shop", "10.2.0.0/24", "public");
  d.must("POST", "/v1/security-groups",
         {{"name", "web"}, {"vpc", "shop"}, {"description", "http from anywhere"}});
  d.must("POST", "/v1/security-groups/web/rules",
         {{"direction", "ingress"},
          {"protocol", "tcp"},
          {"from_port", 80},
          {"to_port", 80},
          {"cidr", "0.0.0.0/0"}});
  json pub = runContainer(d, "pub", "front", {80, 81},
                          {{"security_groups", {"web"}}, {"publish", {"8080:80"}}, {"public_ip", false}});
  json elastic =
      runContainer(d, "elastic", "front", {80}, {{"security_groups", {"web"}}, {"public_ip", true}});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(pub["network"]["publish"].size(), 1u) << pub.dump();
  const std::string publicIp = elastic["network"].value("public_ip", "");
  EXPECT_TRUE(publicIp.starts_with("100.64.")) << elastic.dump();

  Reply topology = d.call("GET", "/v1/vpcs/shop/topology");
  ASSERT_EQ(topology.status, 200) << topology.body.dump();
  const std::string outside = topology.body["internet_gateway"].value("outside_address", "");
  ASSERT_FALSE(outside.empty()) << topology.body.dump();

  // Published: outside:8080 is pub's :80 (retried while the listener starts).
  std::optional<std::string> published;
  for (int attempt = 0; attempt < 4 && published.value_or("") != "pub:80\n"; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(300ms);
    published = internetConnect(outside, 8080);
  }
  EXPECT_EQ(published.value_or("(no connection)"), "pub:80\n") << d.logTail();
  // Not published: another outside port, and pub's own port 81 (listening, but not published).
  EXPECT_FALSE(internetConnect(outside, 8081).has_value());
  EXPECT_FALSE(internetConnect(outside, 81).has_value());
  EXPECT_FALSE(internetConnect(outside, 80).has_value());

  // A public address: 1:1, both ways.
  std::optional<std::string> direct;
  for (int attempt = 0; attempt < 4 && direct.value_or("") != "elastic:80\n"; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(300ms);
    direct = internetConnect(publicIp, 80);
  }
  EXPECT_EQ(direct.value_or("(no connection)"), "elastic:80\n");
  InternetCall out = callInternet(d, "elastic", 7003);
  EXPECT_TRUE(out.dial.connected) << out.dial.detail;
  EXPECT_EQ(out.peer, publicIp) << "an instance with a public address goes out with it";
  InternetCall viaGateway = callInternet(d, "pub", 7004);
  EXPECT_TRUE(viaGateway.dial.connected) << viaGateway.dial.detail;
  EXPECT_EQ(viaGateway.peer, outside) << "without a public address: the gateway's outside address";

  expectNothingLeft(d, {});
}

// 4 and 5. Security groups (stateful, per instance) and network ACLs (stateless, per subnet).
TEST_F(Vpc, SecurityGroupsAndNetworkAclsFilterAsTheySay) {
  TestDaemon& d = daemon_;
  createVpc(d, "lab", "10.3.0.0/16");
  createSubnet(d, "s1", "lab", "10.3.1.0/24");
  createSubnet(d, "s2", "lab", "10.3.2.0/24");
  createSubnet(d, "s3", "lab", "10.3.3.0/24");
  // "db" admits tcp/8080 from s1 only, and has no egress rule at all: its replies pass because the group
  // is stateful.
  json group = d.must("POST", "/v1/security-groups", {{"name", "db"}, {"vpc", "lab"}, {"description", "db"}});
  for (const json& rule : group.value("rules", json::array())) {
    d.must("DELETE", fmt::format("/v1/security-groups/db/rules/{}", rule["id"].get<int>()), nullptr, 200);
  }
  d.must("POST", "/v1/security-groups/db/rules",
         {{"direction", "ingress"},
          {"protocol", "tcp"},
          {"from_port", 8080},
          {"to_port", 8080},
          {"cidr", "10.3.1.0/24"}});
  json db = runContainer(d, "db", "s3", {8080, 9090}, {{"security_groups", {"db"}}});
  json one = runContainer(d, "one", "s1");
  json two = runContainer(d, "two", "s2");
  json three = runContainer(d, "three", "s3");
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(db["network"]["security_groups"], json({"db"})) << db.dump();

  Dial allowed = dial(d, "one", ipOf(db), 8080);
  EXPECT_TRUE(allowed.connected) << allowed.detail << "\n" << d.logTail();
  EXPECT_EQ(allowed.said, "db:8080");
  Dial otherSubnet = blockedDial(d, "two", ipOf(db), 8080);
  EXPECT_TRUE(otherSubnet.timedOut) << "8080 is open to s1 only: " << otherSubnet.detail;
  Dial sameSubnet = blockedDial(d, "three", ipOf(db), 8080);
  EXPECT_TRUE(sameSubnet.timedOut) << "the group filters its own subnet too: " << sameSubnet.detail;
  Dial otherPort = blockedDial(d, "one", ipOf(db), 9090);
  EXPECT_TRUE(otherPort.timedOut) << "9090 is not in the group: " << otherPort.detail;
  // Opening the group takes effect on the running instance.
  d.must("POST", "/v1/security-groups/db/rules",
         {{"direction", "ingress"},
          {"protocol", "tcp"},
          {"from_port", 9090},
          {"to_port", 9090},
          {"cidr", "10.3.2.0/24"}});
  Dial opened = dial(d, "two", ipOf(db), 9090);
  EXPECT_TRUE(opened.connected) << opened.detail;

  // The NACL on s3: allow tcp/8080 and 9090 in, but deny 9090 from s2 at a lower number; nothing out yet.
  d.must("POST", "/v1/network-acls", {{"name", "strict"}, {"vpc", "lab"}});
  auto naclRule = [&](int number, const std::string& direction, const std::string& action, int from, int to,
                      const std::string& cidr) {
    d.must("POST", "/v1/network-acls/strict/rules",
           {{"number", number},
            {"direction", direction},
            {"action", action},
            {"protocol", "tcp"},
            {"from_port", from},
            {"to_port", to},
            {"cidr", cidr}});
  };
  naclRule(100, "ingress", "allow", 8080, 8080, "0.0.0.0/0");
  naclRule(110, "ingress", "allow", 9090, 9090, "0.0.0.0/0");
  naclRule(50, "ingress", "deny", 9090, 9090, "10.3.2.0/24");
  d.must("PATCH", "/v1/subnets/s3", {{"network_acl", "strict"}}, 200);
  Dial noReturn = blockedDial(d, "one", ipOf(db), 8080);
  EXPECT_TRUE(noReturn.timedOut) << "stateless: the reply needs its own egress rule: " << noReturn.detail;
  naclRule(100, "egress", "allow", 1024, 65535, "0.0.0.0/0");
  Dial withReturn = dial(d, "one", ipOf(db), 8080);
  EXPECT_TRUE(withReturn.connected) << withReturn.detail;
  Dial denied = blockedDial(d, "two", ipOf(db), 9090);
  EXPECT_TRUE(denied.timedOut) << "deny 50 beats allow 110 (the group would let it in): " << denied.detail;
  // Back to the default ACL: the group's opening works again.
  d.must("PATCH", "/v1/subnets/s3", {{"network_acl", "lab-default"}}, 200);
  Dial restored = dial(d, "two", ipOf(db), 9090);
  EXPECT_TRUE(restored.connected) << restored.detail;

  // A rule naming a peer group admits that group's members wherever they are, and nobody else.
  d.must("POST", "/v1/security-groups", {{"name", "clients"}, {"vpc", "lab"}, {"description", "db clients"}});
  d.must("POST", "/v1/security-groups/db/rules",
         {{"direction", "ingress"},
          {"protocol", "tcp"},
          {"from_port", 7070},
          {"to_port", 7070},
          {"peer_group", "clients"}});
  d.call(
      "POST", "/v1/instances/db/exec",
      {{"command", {"sh", "-c", "setsid nc -ll -p 7070 -e /bin/echo db:7070 </dev/null >/dev/null 2>&1 &"}}});
  runContainer(d, "four", "s2", {80}, {{"security_groups", {"clients"}}});
  Dial member = dial(d, "four", ipOf(db), 7070);
  EXPECT_TRUE(member.connected) << member.detail;
  EXPECT_EQ(member.said, "db:7070");
  Dial stranger = blockedDial(d, "two", ipOf(db), 7070);
  EXPECT_TRUE(stranger.timedOut) << "two is in s2 too, but not in clients: " << stranger.detail;

  expectNothingLeft(d, {});
}

// 7. Refused input names the field and changes nothing in the kernel.
TEST_F(Vpc, BadInputIsRefusedAndLeavesTheKernelAlone) {
  TestDaemon& d = daemon_;
  createVpc(d, "prod", "10.0.0.0/16");
  createSubnet(d, "web", "prod", "10.0.1.0/24");
  d.must("POST", "/v1/security-groups", {{"name", "sg"}, {"vpc", "prod"}, {"description", ""}});
  d.must("POST", "/v1/network-acls", {{"name", "acl"}, {"vpc", "prod"}});
  d.must("POST", "/v1/route-tables", {{"name", "rt"}, {"vpc", "prod"}});
  json used = runContainer(d, "used", "web", {80}, {{"ip", "10.0.1.20"}});
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(ipOf(used), "10.0.1.20") << "the address asked for";
  const std::string netns = vpcNetnsPrefix() + "prod";
  const std::set<std::string> before = linkNames(netns);
  ASSERT_FALSE(before.empty());

  struct Case {
    std::string what;
    std::string method;
    std::string target;
    json body;
    int status;
    std::string field;         // the error's field starts with this; empty: the error names no single field
    std::string message = {};  // a part of the message
  };
  auto instance = [](json extra) {
    json spec = {{"name", "bad"}, {"image", "busybox"}, {"command", {"sleep", "100"}}, {"subnet", "web"}};
    spec.update(extra);
    return spec;
  };
  const std::vector<Case> cases = {
      {"subnet outside the VPC",
       "POST",
       "/v1/subnets",
       {{"name", "out"}, {"vpc", "prod"}, {"cidr", "10.9.0.0/24"}},
       400,
       "cidr"},
      {"overlapping subnets",
       "POST",
       "/v1/subnets",
       {{"name", "over"}, {"vpc", "prod"}, {"cidr", "10.0.1.0/25"}},
       409,
       "",
       "overlaps subnet \"web\""},
      {"route to a missing gateway",
       "POST",
       "/v1/route-tables/rt/routes",
       {{"destination", "0.0.0.0/0"}, {"target_type", "internet_gateway"}, {"target", "nowhere"}},
       404,
       "target"},
      {"NACL rule number 0",
       "POST",
       "/v1/network-acls/acl/rules",
       {{"number", 0}, {"action", "allow"}, {"protocol", "all"}, {"cidr", "0.0.0.0/0"}},
       400,
       "number"},
      {"NACL rule number 40000",
       "POST",
       "/v1/network-acls/acl/rules",
       {{"number", 40000}, {"action", "allow"}, {"protocol", "all"}, {"cidr", "0.0.0.0/0"}},
       400,
       "number"},
      {"SG port 70000",
       "POST",
       "/v1/security-groups/sg/rules",
       {{"protocol", "tcp"}, {"from_port", 80}, {"to_port", 70000}, {"cidr", "0.0.0.0/0"}},
       400,
       "to_port"},
      {"ip outside the subnet", "POST", "/v1/instances", instance({{"ip", "10.0.2.9"}}), 400, "ip"},
      {"ip already used", "POST", "/v1/instances", instance({{"ip", "10.0.1.20"}}), 409, "ip"},
      {"ip reserved for the router", "POST", "/v1/instances", instance({{"ip", "10.0.1.1"}}), 400, "ip"},
      {"publish 70000:80", "POST", "/v1/instances", instance({{"publish", {"70000:80"}}}), 400, "publish"},
      {"unknown subnet", "POST", "/v1/instances", instance({{"subnet", "nosuch"}}), 404, "subnet"},
      {"unknown security group", "POST", "/v1/instances", instance({{"security_groups", {"nosuch"}}}), 404,
       "security_groups"},
  };
  for (const Case& c : cases) {
    Reply reply = d.call(c.method, c.target, c.body);
    EXPECT_EQ(reply.status, c.status) << c.what << ": " << c.body.dump() << " → " << reply.body.dump();
    const std::string field = reply.body.contains("error") ? reply.body["error"].value("field", "") : "";
    if (c.field.empty()) {
      EXPECT_EQ(field, "") << c.what << ": " << reply.body.dump();
    } else {
      EXPECT_TRUE(field.starts_with(c.field))
          << c.what << ": field \"" << field << "\", wanted \"" << c.field << "\": " << reply.body.dump();
    }
    const std::string message = reply.body.contains("error") ? reply.body["error"].value("message", "") : "";
    EXPECT_FALSE(message.empty()) << c.what;
    EXPECT_NE(message.find(c.message), std::string::npos) << c.what << ": " << message;
    EXPECT_EQ(linkNames(netns), before) << c.what << " changed the VPC namespace's links";
  }
  EXPECT_EQ(d.call("GET", "/v1/instances/bad").status, 404) << "no refused instance was recorded";
  EXPECT_EQ(d.list("subnets").size(), 1u) << d.list("subnets").dump();
  // A subnet with a running instance stays.
  Reply busy = d.call("DELETE", "/v1/subnets/web");
  EXPECT_EQ(busy.status, 409) << busy.body.dump();
  EXPECT_NE(busy.body.dump().find("used"), std::string::npos) << "the message names the instance";
  EXPECT_EQ(linkNames(netns), before);
  // The VPC still works: the first instance is untouched and a good one still gets an address.
  json good = runContainer(d, "good", "web");
  Dial still = dial(d, "good", ipOf(used), 80);
  EXPECT_TRUE(still.connected) << still.detail;

  expectNothingLeft(d, {});
}

// 8. A SIGKILLed daemon comes back to a kernel that drifted: the missing bridge is rebuilt, a namespace of
// a VPC it does not know is removed, and running containers talk again.
TEST_F(Vpc, RestartReconcilesTheKernelWithTheModel) {
  TestDaemon& d = daemon_;
  createVpc(d, "prod", "10.0.0.0/16");
  createSubnet(d, "web", "prod", "10.0.1.0/24");
  createSubnet(d, "app", "prod", "10.0.2.0/24");
  json a = runContainer(d, "a", "web");
  json b = runContainer(d, "b", "web");
  json c = runContainer(d, "c", "app");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(dial(d, "a", ipOf(b), 80).connected);
  ASSERT_TRUE(dial(d, "c", ipOf(b), 80).connected);
  Reply topology = d.call("GET", "/v1/vpcs/prod/topology");
  std::string webBridge;
  for (const json& subnet : topology.body["subnets"]) {
    if (subnet.value("name", "") == "web") webBridge = subnet.value("bridge", "");
  }
  ASSERT_FALSE(webBridge.empty()) << topology.body.dump();

  d.kill9();
  const std::string netns = vpcNetnsPrefix() + "prod";
  auto netlink = net::Netlink::open(netns);
  ASSERT_TRUE(netlink.has_value()) << netlink.error().message();
  ASSERT_TRUE(netlink->deleteLink(webBridge).has_value());
  auto deleted = netlink->link(webBridge);
  ASSERT_TRUE(deleted.has_value() && !deleted->has_value()) << "the web bridge is gone while corrald is down";
  const std::string ghost = vpcNetnsPrefix() + "ghost";
  ASSERT_TRUE(net::createNetns(ghost).has_value());

  ASSERT_TRUE(d.start()) << d.log();
  auto bridge = netlink->link(webBridge);
  ASSERT_TRUE(bridge.has_value()) << bridge.error().message();
  ASSERT_TRUE(bridge->has_value()) << "the web bridge was rebuilt\n" << d.logTail();
  EXPECT_TRUE((*bridge)->up);
  EXPECT_NE(std::find((*bridge)->addresses.begin(), (*bridge)->addresses.end(), "10.0.1.1/24"),
            (*bridge)->addresses.end())
      << "the router address is back";
  EXPECT_FALSE(net::netnsExists(ghost)) << "a namespace of an unknown VPC is removed";
  EXPECT_NE(d.log().find(webBridge), std::string::npos) << "reconciliation logs what it rebuilt:\n"
                                                        << d.logTail();
  EXPECT_NE(d.log().find(ghost), std::string::npos) << "and what it removed:\n" << d.logTail();
  if (net::netnsExists(ghost)) [[maybe_unused]]
    auto gone = net::deleteNetns(ghost);
  EXPECT_EQ(d.call("GET", "/v1/instances/a").body.value("state", ""), "running");
  Dial neighbour = dial(d, "a", ipOf(b), 80);
  EXPECT_TRUE(neighbour.connected) << neighbour.detail << "\n" << d.logTail();
  Dial routed = dial(d, "c", ipOf(a), 80);
  EXPECT_TRUE(routed.connected) << routed.detail;

  // Stop and start: the instance keeps its address and gets a fresh port on its bridge.
  d.must("POST", "/v1/instances/b/stop", {{"grace_seconds", 1}}, 200);
  Dial whileStopped = blockedDial(d, "a", ipOf(b), 80);
  EXPECT_FALSE(whileStopped.connected) << whileStopped.detail;
  json restarted = d.must("POST", "/v1/instances/b/start", nullptr, 200);
  EXPECT_EQ(ipOf(restarted), ipOf(b)) << restarted.dump();
  Dial again = dial(d, "a", ipOf(b), 80);
  EXPECT_TRUE(again.connected) << again.detail;

  expectNothingLeft(d, {});
}

// ---- Source check (port guards): nothing leaves a port with another NIC's or a made-up address ----

// stdout of a command run on the host (tests only: `ip -n NETNS neigh`, `nft` inside our namespaces).
std::string hostOutput(const std::string& command) {
  std::string out;
  if (std::FILE* pipe = ::popen(command.c_str(), "r")) {
    char buffer[512];
    size_t n = 0;
    while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
    ::pclose(pipe);
  }
  return out;
}

// The MAC after "lladdr" in `ip neigh` output; "" when there is none.
std::string lladdrOf(const std::string& neighbours) {
  std::istringstream words(neighbours);
  std::string word;
  while (words >> word) {
    if (word == "lladdr" && words >> word) return word;
  }
  return "";
}

// What the VPC router believes `address`'s MAC is.
std::string routerNeighbour(const std::string& netns, const std::string& address) {
  return lladdrOf(hostOutput(fmt::format("ip -n {} neigh show {}", netns, address)));
}

// What instance `name` believes `address`'s MAC is.
std::string instanceNeighbour(const TestDaemon& d, const std::string& name, const std::string& address) {
  Reply neighbours = d.call("POST", fmt::format("/v1/instances/{}/exec", name),
                            {{"command", {"ip", "neigh", "show", address}}});
  return lladdrOf(neighbours.body.value("stdout", ""));
}

// `corral-probe --spoof ARGS...` inside instance `from`: it must have sent its three frames.
void spoof(const TestDaemon& d, const std::string& from, const std::vector<std::string>& args) {
  json command = {"corral-probe", "--spoof"};
  for (const std::string& arg : args) command.push_back(arg);
  Reply sent = d.call("POST", fmt::format("/v1/instances/{}/exec", from), {{"command", command}});
  json report = json::parse(sent.body.value("stdout", ""), nullptr, false);
  EXPECT_TRUE(sent.status == 200 && report.is_object() && report.value("frames", 0) == 3)
      << from << " --spoof " << fmt::format("{}", fmt::join(args, " ")) << ": " << sent.body.dump();
}

// The frames that the bridge hands to port `link` (towards its instance) while `send` runs and up to
// 700 ms after.
std::vector<net::DecodedFrame> framesTowards(const std::string& netns, const std::string& link,
                                             const std::function<void()>& send) {
  std::vector<net::DecodedFrame> frames;
  auto capture = net::PacketCapture::open(netns, link);
  EXPECT_TRUE(capture.has_value()) << capture.error().message();
  if (!capture) return frames;
  send();
  for (;;) {
    auto frame = capture->next(700ms);
    if (!frame || !*frame) break;
    if ((*frame)->outgoing) frames.push_back(net::decodeFrame((*frame)->bytes));
  }
  return frames;
}

// Whether a UDP datagram to `port` from `source` (and, when given, from MAC `sourceMac`) is among `frames`.
bool delivered(const std::vector<net::DecodedFrame>& frames, uint16_t port, const std::string& source,
               const std::string& sourceMac = "") {
  return std::any_of(frames.begin(), frames.end(), [&](const net::DecodedFrame& frame) {
    return frame.udp && frame.ipv4 && frame.ethernet && frame.udp->destinationPort == port &&
           frame.ipv4->source == source && (sourceMac.empty() || frame.ethernet->source == sourceMac);
  });
}

// The "spoof_drops" of instance `name` in GET /v1/vpcs/VPC/topology (null when absent).
json topologyDrops(const TestDaemon& d, const std::string& vpc, const std::string& name) {
  Reply topology = d.call("GET", fmt::format("/v1/vpcs/{}/topology", vpc));
  for (const json& subnet : topology.body.value("subnets", json::array())) {
    for (const json& member : subnet.value("instances", json::array())) {
      if (member.value("name", "") == name) return member.value("spoof_drops", json());
    }
  }
  return nullptr;
}

uint64_t dropsOf(const json& drops, const char* reason) {
  return drops.is_object() && drops.contains(reason) ? drops[reason].get<uint64_t>() : 0;
}

// Two subnets; "victim" admits udp/5555 only from members of group "friends" and udp/5556 from anywhere,
// "far" (the other subnet) the same; "mallory" is in a group without rules (all egress, no ingress).
struct SpoofLab {
  std::string netns;
  json victim, friendly, far;
};
SpoofLab buildSpoofLab(const TestDaemon& d) {
  SpoofLab lab;
  createVpc(d, "guard", "10.7.0.0/16");
  createSubnet(d, "web", "guard", "10.7.1.0/24");
  createSubnet(d, "app", "guard", "10.7.2.0/24");
  d.must("POST", "/v1/security-groups", {{"name", "friends"}, {"vpc", "guard"}, {"description", "friends"}});
  d.must("POST", "/v1/security-groups", {{"name", "nobody"}, {"vpc", "guard"}, {"description", "no rules"}});
  d.must("POST", "/v1/security-groups", {{"name", "target"}, {"vpc", "guard"}, {"description", "target"}});
  d.must("POST", "/v1/security-groups/target/rules",
         {{"direction", "ingress"},
          {"protocol", "udp"},
          {"from_port", 5555},
          {"to_port", 5555},
          {"peer_group", "friends"}});
  d.must("POST", "/v1/security-groups/target/rules",
         {{"direction", "ingress"},
          {"protocol", "udp"},
          {"from_port", 5556},
          {"to_port", 5556},
          {"cidr", "0.0.0.0/0"}});
  d.must("POST", "/v1/security-groups/target/rules",
         {{"direction", "ingress"},
          {"protocol", "tcp"},
          {"from_port", 80},
          {"to_port", 80},
          {"cidr", "10.7.0.0/16"}});
  lab.netns = vpcNetnsPrefix() + "guard";
  lab.victim = runContainer(d, "victim", "web", {80}, {{"security_groups", {"target"}}});
  lab.friendly = runContainer(d, "friendly", "web", {80}, {{"security_groups", {"friends"}}});
  lab.far = runContainer(d, "far", "app", {80}, {{"security_groups", {"target"}}});
  return lab;
}

// Everything `attacker` (a container or a VM in subnet web, group "nobody") tries: IP, MAC and ARP spoofs,
// a VLAN tag, each checked where it would land, then counted at the attacker's port; and the attacker's
// own traffic still flows.
void expectSpoofsDroppedAndCounted(const TestDaemon& d, const SpoofLab& lab, const std::string& attacker,
                                   const json& attackerJson) {
  const std::string victimIp = ipOf(lab.victim), farIp = ipOf(lab.far), friendIp = ipOf(lab.friendly);
  const std::string attackerIp = ipOf(attackerJson);
  const std::string attackerMac = attackerJson["network"].value("mac", "");
  const std::string victimLink = lab.victim["network"].value("link", "");
  const std::string farLink = lab.far["network"].value("link", "");

  // The control: the same frames with the attacker's own address arrive, so the capture would see them.
  auto honest = framesTowards(lab.netns, victimLink, [&] {
    spoof(d, attacker, {"ip", attackerIp, victimIp, "5556"});
  });
  EXPECT_TRUE(delivered(honest, 5556, attackerIp)) << "an honest datagram reaches the victim's port";
  auto honestRouted = framesTowards(lab.netns, farLink, [&] {
    spoof(d, attacker, {"ip", attackerIp, farIp, "5556"});
  });
  EXPECT_TRUE(delivered(honestRouted, 5556, attackerIp))
      << "an honest datagram is routed to the other subnet";
  const json before = topologyDrops(d, "guard", attacker);
  ASSERT_TRUE(before.is_object()) << "spoof_drops of " << attacker << "\n" << d.logTail();
  EXPECT_EQ(dropsOf(before, "ip"), 0u) << before.dump();
  EXPECT_EQ(dropsOf(before, "mac"), 0u) << before.dump();
  EXPECT_EQ(dropsOf(before, "arp"), 0u) << before.dump();

  // IP spoof, bridged: posing as a member of "friends", the one group the victim admits on 5555.
  auto posing = framesTowards(lab.netns, victimLink, [&] {
    spoof(d, attacker, {"ip", friendIp, victimIp, "5555"});
  });
  EXPECT_FALSE(delivered(posing, 5555, friendIp))
      << attacker << " posed as " << friendIp << " and got through";
  // IP spoof, routed: from 8.8.8.8 to the other subnet through the router.
  auto routed = framesTowards(lab.netns, farLink, [&] {
    spoof(d, attacker, {"ip", "8.8.8.8", farIp, "5556"});
  });
  EXPECT_FALSE(delivered(routed, 5556, "8.8.8.8")) << "a datagram from 8.8.8.8 was routed to far";
  // MAC spoof: the attacker's own address in a frame from the friend's MAC.
  const std::string friendMac = lab.friendly["network"].value("mac", "");
  auto macSpoof = framesTowards(lab.netns, victimLink, [&] {
    spoof(d, attacker, {"mac", friendMac, victimIp, "5556"});
  });
  EXPECT_FALSE(delivered(macSpoof, 5556, attackerIp, friendMac)) << "a frame from another NIC's MAC arrived";
  // A VLAN tag: nothing of it reaches the victim.
  auto tagged = framesTowards(lab.netns, victimLink, [&] { spoof(d, attacker, {"vlan", victimIp, "5556"}); });
  EXPECT_FALSE(std::any_of(tagged.begin(), tagged.end(), [](const net::DecodedFrame& f) {
    return f.ethernet && f.ethernet->vlan.has_value();
  })) << "a VLAN-tagged frame was bridged";

  // ARP spoof: the router and the victim know each other (older than the 1 s ARP lock time, so a forged
  // reply would be believed), then the attacker claims each one's address to the other.
  Reply ping =
      d.call("POST", "/v1/instances/victim/exec", {{"command", {"ping", "-c", "1", "-W", "2", "10.7.1.1"}}});
  ASSERT_EQ(ping.body.value("exit_code", -1), 0) << ping.body.dump();
  const std::string victimMac = lab.victim["network"].value("mac", "");
  ASSERT_EQ(routerNeighbour(lab.netns, victimIp), victimMac);
  const std::string routerMac = instanceNeighbour(d, "victim", "10.7.1.1");
  ASSERT_FALSE(routerMac.empty());
  std::this_thread::sleep_for(1200ms);
  spoof(d, attacker, {"arp", victimIp, "10.7.1.1"});
  spoof(d, attacker, {"arp", "10.7.1.1", victimIp});
  EXPECT_EQ(routerNeighbour(lab.netns, victimIp), victimMac) << "the router's ARP cache was poisoned";
  EXPECT_EQ(instanceNeighbour(d, "victim", "10.7.1.1"), routerMac) << "the victim's ARP cache was poisoned";
  EXPECT_NE(routerMac, attackerMac);

  // Counted at the attacker's port, by reason: 3 frames per spoof, in the topology and the instance JSON.
  const json after = topologyDrops(d, "guard", attacker);
  EXPECT_EQ(dropsOf(after, "ip"), 6u) << after.dump();
  EXPECT_EQ(dropsOf(after, "mac"), 3u) << after.dump();
  EXPECT_EQ(dropsOf(after, "arp"), 6u) << after.dump();
  EXPECT_GE(dropsOf(after, "other"), 3u)
      << "the VLAN-tagged frames (and any IPv6 the guest sent): " << after.dump();
  json instance = d.call("GET", "/v1/instances/" + attacker).body;
  EXPECT_EQ(dropsOf(instance["network"].value("spoof_drops", json()), "ip"), 6u)
      << instance["network"].dump();
  const json victimDrops = topologyDrops(d, "guard", "victim");
  EXPECT_EQ(dropsOf(victimDrops, "ip") + dropsOf(victimDrops, "mac") + dropsOf(victimDrops, "arp"), 0u)
      << "the victim sent nothing foreign: " << victimDrops.dump();

  // The attacker's own traffic still flows, bridged and routed.
  Dial bridged = dial(d, attacker, victimIp, 80);
  EXPECT_TRUE(bridged.connected) << bridged.detail;
  Dial across = dial(d, attacker, farIp, 80);
  EXPECT_TRUE(across.connected) << across.detail;
}

// 9. A container with CAP_NET_RAW cannot send as anyone else: IP (bridged and routed), MAC, ARP and VLAN
// frames are dropped at its port and counted; after a daemon restart over a flushed guard table, the
// guards are back.
TEST_F(Vpc, ContainersCannotSpoofAddressesAndEveryDropIsCounted) {
  TestDaemon& d = daemon_;
  SpoofLab lab = buildSpoofLab(d);
  json mallory = runContainer(d, "mallory", "web", {80}, {{"security_groups", {"nobody"}}});
  ASSERT_FALSE(HasFailure());
  expectSpoofsDroppedAndCounted(d, lab, "mallory", mallory);

  // Normal traffic between the others: the friend reaches the victim, far reaches it across subnets.
  EXPECT_TRUE(dial(d, "friendly", ipOf(lab.victim), 80).connected);
  EXPECT_TRUE(dial(d, "far", ipOf(lab.victim), 80).connected);

  // Reconciliation: the guard table removed by hand while corrald is down is loaded again at start.
  d.kill9();
  hostOutput(fmt::format("ip netns exec {} nft delete table bridge corral", lab.netns));
  ASSERT_EQ(hostOutput(fmt::format("ip netns exec {} nft list tables bridge", lab.netns)), "");
  ASSERT_TRUE(d.start()) << d.log();
  const std::string victimLink = lab.victim["network"].value("link", "");
  auto posing = framesTowards(lab.netns, victimLink, [&] {
    spoof(d, "mallory", {"ip", ipOf(lab.friendly), ipOf(lab.victim), "5555"});
  });
  EXPECT_FALSE(delivered(posing, 5555, ipOf(lab.friendly))) << "the guards are back after a restart\n"
                                                            << d.logTail();
  EXPECT_EQ(dropsOf(topologyDrops(d, "guard", "mallory"), "ip"), 3u) << d.logTail();

  // Removing an instance removes its guard; the others keep their counts.
  d.must("DELETE", "/v1/instances/friendly?force=true", nullptr, 200);
  const std::string listing =
      hostOutput(fmt::format("ip netns exec {} nft list table bridge corral", lab.netns));
  EXPECT_EQ(listing.find(lab.friendly["network"].value("link", "")), std::string::npos) << listing;
  EXPECT_EQ(dropsOf(topologyDrops(d, "guard", "mallory"), "ip"), 3u);

  expectNothingLeft(d, {});
}

// 10. The same from a VM's guest (root, its own kernel): its tap is guarded like a veth.
TEST_F(Vpc, VmsCannotSpoofAddressesEither) {
  TestDaemon& d = daemon_;
  SpoofLab lab = buildSpoofLab(d);
  json created = d.must("POST", "/v1/instances",
                        {{"name", "vmallory"},
                         {"kind", "vm"},
                         {"image", "busybox"},
                         {"memory", "128M"},
                         {"subnet", "web"},
                         {"security_groups", {"nobody"}}});
  json vm = d.waitWhile("vmallory", "starting");
  ASSERT_EQ(vm.value("state", ""), "running") << vm.dump(2) << "\n" << d.logTail();
  const std::string tap = vm["network"].value("link", "");
  EXPECT_TRUE(tap.starts_with("crlt")) << vm.dump();
  expectSpoofsDroppedAndCounted(d, lab, "vmallory", vm);
  expectNothingLeft(d, {tap});
}

// --warm: two VMs restored from one shared snapshot are distinct machines (hostname, MAC, address, a fresh
// random seed the agent reports, boot_ids made after it), talk to each other in
// their subnet and run the probe; another memory size is another snapshot; a damaged snapshot is refused
// clearly, leaves nothing in libvirt, and the next warm run makes a new one.
TEST_F(Vpc, WarmVmsFromOneSnapshotAreDistinctMachinesThatTalk) {
  TestDaemon& d = daemon_;
  createVpc(d, "prod", "10.0.0.0/16");
  createSubnet(d, "web", "prod", "10.0.1.0/24");
  auto runWarm = [&](const std::string& name, const std::string& memory) {
    return d.call("POST", "/v1/instances",
                  {{"name", name},
                   {"kind", "vm"},
                   {"image", "busybox"},
                   {"memory", memory},
                   {"subnet", "web"},
                   {"warm", true}});
  };
  auto ready = [&](const std::string& name) {
    json instance = d.waitWhile(name, "starting");
    EXPECT_EQ(instance.value("state", ""), "running") << instance.dump(2) << "\n" << d.logTail();
    return instance;
  };
  auto run = [&](const std::string& name, std::vector<std::string> command) {
    Reply reply = d.call("POST", fmt::format("/v1/instances/{}/exec", name), {{"command", command}});
    EXPECT_EQ(reply.status, 200) << reply.body.dump();
    std::string out = reply.body.value("stdout", "");
    while (!out.empty() && out.back() == '\n') out.pop_back();
    return out;
  };
  auto snapshotOf = [](const json& instance) {
    return instance["boot"]["domain_steps"].value("snapshot", "");
  };

  ASSERT_EQ(runWarm("w1", "128M").status, 201) << d.logTail();
  json w1 = ready("w1");
  ASSERT_EQ(runWarm("w2", "128M").status, 201) << d.logTail();
  json w2 = ready("w2");
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(w1["boot"]["warm"], true) << w1["boot"].dump();
  EXPECT_EQ(w1["boot"]["domain_steps"]["snapshot_made"], true) << w1["boot"].dump();
  EXPECT_EQ(w2["boot"]["domain_steps"]["snapshot_made"], false) << w2["boot"].dump();
  ASSERT_EQ(snapshotOf(w1), snapshotOf(w2));
  ASSERT_FALSE(snapshotOf(w1).empty());

  // Distinct machines: what the agent says it set, and what the guests read.
  std::set<std::string> macs, ips, hostnames, seeds;
  for (const json* vm : {&w1, &w2}) {
    const std::string name = vm->value("name", "");
    const json identity = (*vm)["boot"].value("identity", json::object());
    EXPECT_EQ(identity.value("seeded_bytes", 0), 64) << identity.dump();
    EXPECT_EQ(identity.value("hostname", ""), name) << identity.dump();
    EXPECT_EQ(identity.value("mac", ""), (*vm)["network"].value("mac", "")) << identity.dump();
    EXPECT_EQ(run(name, {"hostname"}), name);
    EXPECT_EQ(run(name, {"cat", "/sys/class/net/eth0/address"}), (*vm)["network"].value("mac", ""));
    EXPECT_NE(run(name, {"ip", "-4", "addr", "show", "eth0"}).find(ipOf(*vm) + "/24"), std::string::npos);
    EXPECT_NE(run(name, {"ip", "route"}).find("default via 10.0.1.1"), std::string::npos);
    // The template's resolv.conf is replaced by the clone's subnet's resolver.
    EXPECT_EQ(run(name, {"cat", "/etc/resolv.conf"}), "nameserver 10.0.1.2\nsearch prod.internal");
    macs.insert((*vm)["network"].value("mac", ""));
    ips.insert(ipOf(*vm));
    hostnames.insert(run(name, {"hostname"}));
    seeds.insert(run(name, {"sh", "-c", "head -c 16 /dev/urandom | od -An -tx1"}));
  }
  EXPECT_EQ(macs.size(), 2u);
  EXPECT_EQ(ips.size(), 2u);
  EXPECT_EQ(hostnames.size(), 2u);
  EXPECT_EQ(seeds.size(), 2u);
  // The reseed itself is checked through the agent's answer (seeded_bytes) above: the guests' own random
  // bytes and boot_id (made on its first read, after the restore) differ even without it (checked with
  // set_identity skipped: the 6.1 kernel's generator takes fresh input of its own after a restore).
  EXPECT_NE(run("w1", {"cat", "/proc/sys/kernel/random/boot_id"}),
            run("w2", {"cat", "/proc/sys/kernel/random/boot_id"}));

  // They talk to each other inside the subnet, and the probe runs.
  for (const char* name : {"w1", "w2"}) {
    Reply serve = d.call(
        "POST", fmt::format("/v1/instances/{}/exec", name),
        {{"command",
          {"sh", "-c",
           fmt::format("setsid sh -c '{}' </dev/null >/dev/null 2>&1 &", listenerScript(name, {80}))}}});
    EXPECT_EQ(serve.status, 200) << serve.body.dump();
  }
  Dial oneToTwo = dial(d, "w1", ipOf(w2), 80);
  EXPECT_TRUE(oneToTwo.connected) << oneToTwo.detail;
  EXPECT_EQ(oneToTwo.said, "w2:80") << oneToTwo.detail;
  Dial twoToOne = dial(d, "w2", ipOf(w1), 80);
  EXPECT_TRUE(twoToOne.connected) << twoToOne.detail;
  EXPECT_EQ(twoToOne.said, "w1:80") << twoToOne.detail;
  json report = json::parse(run("w2", {"/usr/bin/corral-probe"}), nullptr, false);
  ASSERT_FALSE(report.is_discarded());
  EXPECT_EQ(report.value("hostname", ""), "w2") << report.dump();
  EXPECT_EQ(d.call("DELETE", "/v1/instances/w2?force=true").status, 200);

  // Another memory size: another snapshot, made for it.
  ASSERT_EQ(runWarm("w3", "160M").status, 201) << d.logTail();
  json w3 = ready("w3");
  EXPECT_NE(snapshotOf(w3), snapshotOf(w1)) << w3["boot"].dump();
  EXPECT_EQ(w3["boot"]["domain_steps"]["snapshot_made"], true) << w3["boot"].dump();
  EXPECT_EQ(d.call("DELETE", "/v1/instances/w3?force=true").status, 200);

  // A damaged snapshot: a clear error, no domain of it, and the next warm run makes a new one.
  const std::string snapshotDir = d.vmsDir() + "/.snapshots/" + snapshotOf(w1);
  const std::string state = snapshotDir + "/saved.state";
  const auto size = std::filesystem::file_size(state);
  ASSERT_GT(size, 4096u);
  std::filesystem::resize_file(state, size / 2);
  Reply refused = runWarm("w4", "128M");
  EXPECT_GE(refused.status, 400) << refused.body.dump();
  const std::string message = refused.body["error"].value("message", "");
  EXPECT_NE(message.find("snapshot \"" + snapshotDir + "\""), std::string::npos) << message;
  EXPECT_NE(message.find("the next warm run makes a new one"), std::string::npos) << message;
  for (const std::string& domain : ourDomains())
    EXPECT_EQ(domain.find("w4"), std::string::npos) << domain << " left in libvirt";
  EXPECT_FALSE(std::filesystem::exists(snapshotDir));
  d.call("DELETE", "/v1/instances/w4?force=true");
  ASSERT_EQ(runWarm("w5", "128M").status, 201) << d.logTail();
  json w5 = ready("w5");
  EXPECT_EQ(snapshotOf(w5), snapshotOf(w1));
  EXPECT_EQ(w5["boot"]["domain_steps"]["snapshot_made"], true) << w5["boot"].dump();
  EXPECT_EQ(run("w5", {"hostname"}), "w5");
  expectNothingLeft(d, {w1["network"].value("link", ""), w5["network"].value("link", "")});
}

}  // namespace
}  // namespace corral
