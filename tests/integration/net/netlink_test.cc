// net/netlink on the real kernel: named namespaces, bridges, veth pairs moved between namespaces, addresses,
// routes, policy rules and sysctls, read back through netlink, /proc and ioctl, and a routed TCP connection
// between two namespaces. Everything lives in namespaces named corral-t<pid>-... that the tests make and
// remove; the root namespace is only ever read.
#include "net/netlink.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "core/unique_fd.h"
#include "tests/integration/netns_testing.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

using corral::testing::listenIn;
using corral::testing::runInNetns;
using corral::testing::tcpExchange;
using corral::testing::TestNamespaces;

constexpr std::chrono::milliseconds kConnectTimeout{2000};

std::string testPrefix() {
  return TestNamespaces::prefix();
}

std::string readFirstLine(const std::string& path) {
  std::string line;
  if (FILE* file = std::fopen(path.c_str(), "re")) {
    char buffer[256] = {};
    if (std::fgets(buffer, sizeof buffer, file) != nullptr) line = buffer;
    std::fclose(file);
  }
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  return line;
}

// A sysctl as the namespace sees it: /proc/sys/net shows the namespace of the thread that opens it.
std::string sysctlIn(const std::string& netns, const std::string& key) {
  std::string value = "<not read>";
  runInNetns(netns, [&] { value = readFirstLine("/proc/sys/" + key); });
  return value;
}

// The link's MAC address through SIOCGIFHWADDR on a socket made inside the namespace.
std::string macIn(const std::string& netns, const std::string& link) {
  std::string mac = "<not read>";
  runInNetns(netns, [&] {
    UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    ifreq request{};
    std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", link.c_str());
    if (!fd || ::ioctl(fd.get(), SIOCGIFHWADDR, &request) != 0) return;
    const auto* bytes = reinterpret_cast<const unsigned char*>(request.ifr_hwaddr.sa_data);
    char text[18] = {};
    std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", bytes[0], bytes[1], bytes[2], bytes[3],
                  bytes[4], bytes[5]);
    mac = text;
  });
  return mac;
}

bool contains(const std::vector<std::string>& values, const std::string& value) {
  return std::find(values.begin(), values.end(), value) != values.end();
}

std::vector<std::string> ourNamespaces() {
  std::vector<std::string> ours;
  for (const std::string& name : listNetns()) {
    if (name.starts_with(testPrefix())) ours.push_back(name);
  }
  return ours;
}

// Makes namespaces named corral-t<pid>-SUFFIX and deletes them (with every link inside) at the end, also
// when an assertion failed halfway.
class NetlinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available())
      GTEST_SKIP() << "needs root: network namespaces, bridges, veth pairs, routes";
  }

  void TearDown() override {
    for (const std::string& failure : namespaces_.removeAll()) ADD_FAILURE() << failure;
    EXPECT_EQ(ourNamespaces(), std::vector<std::string>{}) << "namespaces left in /run/netns";
  }

  // A fresh namespace with lo up; its name.
  std::string netns(const std::string& suffix) {
    auto made = namespaces_.make(suffix);
    EXPECT_TRUE(made.has_value()) << made.error().message();
    return made ? *made : TestNamespaces::nameOf(suffix);
  }

  TestNamespaces namespaces_;
};

#define ASSERT_OK(expr)                                                                           \
  do {                                                                                            \
    const auto& assertOkResult = (expr);                                                          \
    ASSERT_TRUE(assertOkResult.has_value()) << #expr << ": " << assertOkResult.error().message(); \
  } while (false)

LinkInfo linkOrEmpty(Netlink& netlink, const std::string& name) {
  auto found = netlink.link(name);
  if (!found) {
    ADD_FAILURE() << found.error().message();
    return {};
  }
  if (!*found) {
    ADD_FAILURE() << "no link \"" << name << "\" in " << netlink.netns();
    return {};
  }
  return **found;
}

TEST_F(NetlinkTest, NamespacesAreCreatedListedAndDeletedOnce) {
  std::string name = testPrefix() + "ns";
  ASSERT_FALSE(netnsExists(name));
  ASSERT_OK(createNetns(name));
  namespaces_.hold(name);
  EXPECT_TRUE(netnsExists(name));
  EXPECT_TRUE(contains(listNetns(), name));
  ASSERT_OK(openNetns(name));

  auto again = createNetns(name);
  ASSERT_FALSE(again.has_value());
  EXPECT_EQ(again.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(again.error().message().find(name), std::string::npos) << again.error().message();

  auto badName = createNetns("a/b");
  ASSERT_FALSE(badName.has_value());
  EXPECT_EQ(badName.error().kind(), ErrorKind::InvalidArgument);

  ASSERT_OK(deleteNetns(name));
  ASSERT_OK(deleteNetns(name));
  EXPECT_FALSE(netnsExists(name));
  EXPECT_FALSE(contains(listNetns(), name));
  auto gone = openNetns(name);
  ASSERT_FALSE(gone.has_value());
  EXPECT_EQ(gone.error().kind(), ErrorKind::NotFound);
  auto netlinkGone = Netlink::open(name);
  ASSERT_FALSE(netlinkGone.has_value());
  EXPECT_NE(netlinkGone.error().message().find(name), std::string::npos) << netlinkGone.error().message();
}

TEST_F(NetlinkTest, BridgeAndVethPairAreBuiltMovedRenamedAndReadBack) {
  std::string a = netns("a"), b = netns("b");
  auto netAOpened = Netlink::open(a);
  ASSERT_OK(netAOpened);
  Netlink& netA = *netAOpened;
  EXPECT_EQ(netA.netns(), a);

  ASSERT_OK(netA.createBridge("br0"));
  auto twice = netA.createBridge("br0");
  ASSERT_FALSE(twice.has_value());
  EXPECT_EQ(twice.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(twice.error().message().find("\"br0\""), std::string::npos) << twice.error().message();
  EXPECT_NE(twice.error().message().find(a), std::string::npos) << twice.error().message();
  EXPECT_EQ(twice.error().errnum(), EEXIST);
  EXPECT_NE(twice.error().message().find("File exists"), std::string::npos) << twice.error().message();

  ASSERT_OK(netA.createVethPair("va", "vb"));
  ASSERT_OK(netA.setMaster("va", "br0"));
  ASSERT_OK(netA.setUp("va"));
  ASSERT_OK(netA.setUp("br0"));
  ASSERT_OK(netA.setMac("va", "02:00:5e:10:20:30"));
  ASSERT_OK(netA.addAddress("br0", "10.99.1.1/24"));
  ASSERT_OK(netA.addAddress("br0", "10.99.2.1/24"));
  auto duplicateAddress = netA.addAddress("br0", "10.99.1.1/24");
  ASSERT_FALSE(duplicateAddress.has_value());
  EXPECT_EQ(duplicateAddress.error().kind(), ErrorKind::Conflict);

  LinkInfo bridge = linkOrEmpty(netA, "br0");
  EXPECT_EQ(bridge.kind, "bridge");
  EXPECT_TRUE(bridge.up);
  EXPECT_FALSE(bridge.master.has_value());
  EXPECT_EQ(bridge.addresses, (std::vector<std::string>{"10.99.1.1/24", "10.99.2.1/24"}));
  LinkInfo port = linkOrEmpty(netA, "va");
  EXPECT_EQ(port.kind, "veth");
  EXPECT_TRUE(port.up);
  EXPECT_EQ(port.master, std::optional<std::string>("br0"));
  EXPECT_TRUE(port.addresses.empty());
  EXPECT_EQ(macIn(a, "va"), "02:00:5e:10:20:30");
  EXPECT_FALSE(linkOrEmpty(netA, "vb").up);

  auto badMac = netA.setMac("va", "02:00:5e");
  ASSERT_FALSE(badMac.has_value());
  EXPECT_EQ(badMac.error().kind(), ErrorKind::InvalidArgument);

  ASSERT_OK(netA.deleteAddress("br0", "10.99.2.1/24"));
  ASSERT_OK(netA.deleteAddress("br0", "10.99.2.1/24"));
  EXPECT_EQ(linkOrEmpty(netA, "br0").addresses, std::vector<std::string>{"10.99.1.1/24"});

  auto bFd = openNetns(b);
  ASSERT_OK(bFd);
  ASSERT_OK(netA.moveToNetns("vb", bFd->get(), "eth0"));
  auto moved = netA.link("vb");
  ASSERT_OK(moved);
  EXPECT_FALSE(moved->has_value());
  auto netBOpened = Netlink::open(b);
  ASSERT_OK(netBOpened);
  Netlink& netB = *netBOpened;
  LinkInfo eth0 = linkOrEmpty(netB, "eth0");
  EXPECT_EQ(eth0.kind, "veth");
  auto bLinks = netB.links();
  ASSERT_OK(bLinks);
  std::vector<std::string> bNames;
  for (const LinkInfo& info : *bLinks) bNames.push_back(info.name);
  EXPECT_EQ(bNames, (std::vector<std::string>{"lo", "eth0"}));
  ASSERT_OK(netB.setUp("eth0"));
  EXPECT_TRUE(linkOrEmpty(netB, "eth0").up);

  auto missingMove = netA.moveToNetns("nosuchlink", bFd->get(), "eth1");
  ASSERT_FALSE(missingMove.has_value());
  EXPECT_EQ(missingMove.error().kind(), ErrorKind::NotFound);
  EXPECT_NE(missingMove.error().message().find("\"nosuchlink\""), std::string::npos)
      << missingMove.error().message();
  auto missingMaster = netA.setMaster("va", "nosuchbridge");
  ASSERT_FALSE(missingMaster.has_value());
  EXPECT_NE(missingMaster.error().message().find("\"nosuchbridge\""), std::string::npos)
      << missingMaster.error().message();

  ASSERT_OK(netA.deleteLink("nosuchlink"));
  // Deleting one end of a pair takes the other, even in another namespace.
  ASSERT_OK(netA.deleteLink("va"));
  auto va = netA.link("va");
  ASSERT_OK(va);
  EXPECT_FALSE(va->has_value());
  auto eth0Gone = netB.link("eth0");
  ASSERT_OK(eth0Gone);
  EXPECT_FALSE(eth0Gone->has_value());
  ASSERT_OK(netA.deleteLink("br0"));
  auto aLinks = netA.links();
  ASSERT_OK(aLinks);
  ASSERT_EQ(aLinks->size(), 1u);
  EXPECT_EQ(aLinks->front().name, "lo");
}

// link(name) asks the kernel for that one link (no dump): among hundreds of ports it finds the one with its
// master and addresses, answers nullopt for a name that is not there, and refuses one no link can have.
TEST_F(NetlinkTest, LinkByNameFindsOneAmongManyAndReportsAMissingOne) {
  std::string a = netns("many");
  auto opened = Netlink::open(a);
  ASSERT_OK(opened);
  Netlink& net = *opened;
  ASSERT_OK(net.createBridge("br0"));
  ASSERT_OK(net.addAddress("br0", "10.98.0.1/22"));
  constexpr int kPairs = 250;
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_OK(net.createVethPair(fmt::format("p{}", i), fmt::format("q{}", i)));
  }
  ASSERT_OK(net.setMaster("p137", "br0"));
  ASSERT_OK(net.setUp("p137"));
  ASSERT_OK(net.addAddress("q137", "10.98.1.37/22"));

  LinkInfo port = linkOrEmpty(net, "p137");
  EXPECT_EQ(port.name, "p137");
  EXPECT_EQ(port.kind, "veth");
  EXPECT_TRUE(port.up);
  EXPECT_EQ(port.master, std::optional<std::string>("br0"));
  EXPECT_TRUE(port.addresses.empty());
  LinkInfo peer = linkOrEmpty(net, "q137");
  EXPECT_EQ(peer.addresses, std::vector<std::string>{"10.98.1.37/22"});
  EXPECT_FALSE(peer.master.has_value());
  EXPECT_GT(peer.index, 0);
  EXPECT_NE(peer.index, port.index);
  LinkInfo bridge = linkOrEmpty(net, "br0");
  EXPECT_EQ(bridge.kind, "bridge");
  EXPECT_EQ(bridge.addresses, std::vector<std::string>{"10.98.0.1/22"});
  // The same answers as the dump gives.
  auto all = net.links();
  ASSERT_OK(all);
  EXPECT_EQ(all->size(), 2u * kPairs + 2u);
  auto inDump = std::find_if(all->begin(), all->end(), [](const LinkInfo& l) { return l.name == "p137"; });
  ASSERT_NE(inDump, all->end());
  EXPECT_EQ(inDump->index, port.index);
  EXPECT_EQ(inDump->master, port.master);

  auto missing = net.link("p999");
  ASSERT_OK(missing);
  EXPECT_FALSE(missing->has_value());
  for (const std::string& impossible : {std::string(), std::string("a-name-of-16-chr")}) {
    auto refused = net.link(impossible);
    ASSERT_FALSE(refused.has_value()) << "\"" << impossible << "\"";
    EXPECT_EQ(refused.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(refused.error().field(), "link");
    EXPECT_NE(refused.error().message().find("\"" + impossible + "\""), std::string::npos)
        << refused.error().message();
  }
}

TEST_F(NetlinkTest, OpenInActsInTheNamespaceOfAnFdAndNamesItsLabel) {
  std::string c = netns("c");
  auto fd = openNetns(c);
  ASSERT_OK(fd);
  auto opened = Netlink::openIn(fd->get(), "container web-1");
  ASSERT_OK(opened);
  Netlink& netC = *opened;
  fd->reset();  // the socket keeps the namespace, not the fd
  ASSERT_OK(netC.createBridge("brc"));
  auto byNameOpened = Netlink::open(c);
  ASSERT_OK(byNameOpened);
  Netlink& byName = *byNameOpened;
  EXPECT_EQ(linkOrEmpty(byName, "brc").kind, "bridge");
  auto twice = netC.createBridge("brc");
  ASSERT_FALSE(twice.has_value());
  EXPECT_NE(twice.error().message().find("container web-1"), std::string::npos) << twice.error().message();

  auto badFd = Netlink::openIn(-1, "container gone");
  ASSERT_FALSE(badFd.has_value());
  EXPECT_NE(badFd.error().message().find("container gone"), std::string::npos) << badFd.error().message();
}

TEST_F(NetlinkTest, RoutesAreAddedReplacedListedAndDeleted) {
  std::string r = netns("routes");
  auto netOpened = Netlink::open(r);
  ASSERT_OK(netOpened);
  Netlink& net = *netOpened;
  ASSERT_OK(net.createBridge("br0"));
  ASSERT_OK(net.setUp("br0"));
  ASSERT_OK(net.addAddress("br0", "10.99.1.1/24"));

  auto main = net.routes(254);
  ASSERT_OK(main);
  EXPECT_EQ(*main, (std::vector<RouteEntry>{{.destination = "10.99.1.0/24", .device = "br0"}}));
  auto empty = net.routes(100);
  ASSERT_OK(empty);
  EXPECT_TRUE(empty->empty());

  ASSERT_OK(
      net.addRoute({.destination = "10.50.0.0/16", .gateway = "10.99.1.254", .device = "br0", .table = 100}));
  ASSERT_OK(net.addRoute({.destination = "10.60.0.0/16", .table = 100, .blackhole = true}));
  ASSERT_OK(net.addRoute({.destination = "10.7.0.0/16", .device = "br0", .table = 100}));
  ASSERT_OK(net.addRoute({.destination = "0.0.0.0/0", .gateway = "10.99.1.2", .table = 100}));
  auto listed = net.routes(100);
  ASSERT_OK(listed);
  EXPECT_EQ(*listed,
            (std::vector<RouteEntry>{
                {.destination = "0.0.0.0/0", .gateway = "10.99.1.2", .device = "br0", .table = 100},
                {.destination = "10.7.0.0/16", .device = "br0", .table = 100},
                {.destination = "10.50.0.0/16", .gateway = "10.99.1.254", .device = "br0", .table = 100},
                {.destination = "10.60.0.0/16", .table = 100, .blackhole = true},
            }));
  // Table 100's routes stay out of the main table.
  auto mainAgain = net.routes(254);
  ASSERT_OK(mainAgain);
  EXPECT_EQ(*mainAgain, *main);

  // Same table and destination: replaced, whatever it was before.
  ASSERT_OK(net.addRoute({.destination = "10.50.0.0/16", .gateway = "10.99.1.253", .table = 100}));
  ASSERT_OK(net.addRoute({.destination = "10.60.0.0/16", .device = "br0", .table = 100}));
  ASSERT_OK(net.addRoute({.destination = "10.7.0.0/16", .table = 100, .blackhole = true}));
  listed = net.routes(100);
  ASSERT_OK(listed);
  EXPECT_EQ(*listed,
            (std::vector<RouteEntry>{
                {.destination = "0.0.0.0/0", .gateway = "10.99.1.2", .device = "br0", .table = 100},
                {.destination = "10.7.0.0/16", .table = 100, .blackhole = true},
                {.destination = "10.50.0.0/16", .gateway = "10.99.1.253", .device = "br0", .table = 100},
                {.destination = "10.60.0.0/16", .device = "br0", .table = 100},
            }));

  ASSERT_OK(net.deleteRoute({.destination = "10.50.0.0/16", .table = 100}));
  ASSERT_OK(net.deleteRoute({.destination = "10.50.0.0/16", .table = 100}));
  ASSERT_OK(net.deleteRoute({.destination = "10.7.0.0/16", .table = 100}));
  ASSERT_OK(net.deleteRoute({.destination = "0.0.0.0/0", .table = 100}));
  ASSERT_OK(net.deleteRoute({.destination = "10.60.0.0/16", .table = 254}));  // another table: untouched
  listed = net.routes(100);
  ASSERT_OK(listed);
  EXPECT_EQ(*listed,
            (std::vector<RouteEntry>{{.destination = "10.60.0.0/16", .device = "br0", .table = 100}}));

  auto noDevice = net.addRoute({.destination = "10.80.0.0/16", .device = "nosuchdev", .table = 100});
  ASSERT_FALSE(noDevice.has_value());
  EXPECT_EQ(noDevice.error().kind(), ErrorKind::NotFound);
  EXPECT_NE(noDevice.error().message().find("\"nosuchdev\""), std::string::npos)
      << noDevice.error().message();
  EXPECT_NE(noDevice.error().message().find(r), std::string::npos) << noDevice.error().message();
  auto nowhere = net.addRoute({.destination = "10.80.0.0/16", .table = 100});
  ASSERT_FALSE(nowhere.has_value());
  EXPECT_EQ(nowhere.error().kind(), ErrorKind::InvalidArgument);
  auto hostBits = net.addRoute({.destination = "10.80.0.1/16", .device = "br0", .table = 100});
  ASSERT_FALSE(hostBits.has_value());
  EXPECT_EQ(hostBits.error().kind(), ErrorKind::InvalidArgument);
  auto unreachable = net.addRoute({.destination = "10.80.0.0/16", .gateway = "192.0.2.1", .table = 100});
  ASSERT_FALSE(unreachable.has_value());
  EXPECT_NE(
      unreachable.error().message().find("rtnl_route_add(route 10.80.0.0/16 via 192.0.2.1 table 100 in"),
      std::string::npos)
      << unreachable.error().message();
  EXPECT_EQ(unreachable.error().errnum(), ENETUNREACH);
}

TEST_F(NetlinkTest, PolicyRulesAreAddedOnceListedAndDeleted) {
  std::string r = netns("rules");
  auto netOpened = Netlink::open(r);
  ASSERT_OK(netOpened);
  Netlink& net = *netOpened;
  const std::vector<RuleEntry> defaults = {
      {.priority = 0, .table = 255}, {.priority = 32766, .table = 254}, {.priority = 32767, .table = 253}};
  auto listed = net.rules();
  ASSERT_OK(listed);
  EXPECT_EQ(*listed, defaults);

  const RuleEntry fromSubnet{.priority = 100, .from = "10.99.1.0/24", .table = 100};
  const RuleEntry toBlock{.priority = 101, .to = "10.60.0.0/16", .table = 1000};
  const RuleEntry both{.priority = 102, .from = "10.99.2.0/24", .to = "10.61.0.0/16", .table = 101};
  ASSERT_OK(net.addRule(fromSubnet));
  ASSERT_OK(net.addRule(toBlock));
  ASSERT_OK(net.addRule(both));
  ASSERT_OK(net.addRule(fromSubnet));  // identical: no second copy
  listed = net.rules();
  ASSERT_OK(listed);
  EXPECT_EQ(*listed,
            (std::vector<RuleEntry>{defaults[0], fromSubnet, toBlock, both, defaults[1], defaults[2]}));
  // Another source at the same priority and table is a rule of its own.
  const RuleEntry otherSubnet{.priority = 100, .from = "10.99.3.0/24", .table = 100};
  ASSERT_OK(net.addRule(otherSubnet));
  listed = net.rules();
  ASSERT_OK(listed);
  EXPECT_EQ(*listed, (std::vector<RuleEntry>{defaults[0], fromSubnet, otherSubnet, toBlock, both, defaults[1],
                                             defaults[2]}));
  ASSERT_OK(net.deleteRule(otherSubnet));

  // Same priority and table without `from`: a different rule, and deleting it must not take fromSubnet.
  ASSERT_OK(net.deleteRule({.priority = 100, .table = 100}));
  listed = net.rules();
  ASSERT_OK(listed);
  EXPECT_EQ(*listed,
            (std::vector<RuleEntry>{defaults[0], fromSubnet, toBlock, both, defaults[1], defaults[2]}));
  ASSERT_OK(net.deleteRule(fromSubnet));
  ASSERT_OK(net.deleteRule(fromSubnet));
  ASSERT_OK(net.deleteRule(toBlock));
  ASSERT_OK(net.deleteRule(both));
  listed = net.rules();
  ASSERT_OK(listed);
  EXPECT_EQ(*listed, defaults);

  auto badPrefix = net.addRule({.priority = 100, .from = "10.99.1.7/24", .table = 100});
  ASSERT_FALSE(badPrefix.has_value());
  EXPECT_EQ(badPrefix.error().kind(), ErrorKind::InvalidArgument);
}

TEST_F(NetlinkTest, SysctlIsWrittenInsideTheNamespaceOnly) {
  std::string s = netns("sysctl");
  const std::string rootForwarding = readFirstLine("/proc/sys/net/ipv4/ip_forward");
  ASSERT_TRUE(rootForwarding == "0" || rootForwarding == "1") << rootForwarding;
  // A new namespace may start with the root namespace's ip_forward (net.core.devconf_inherit_init_net),
  // so the value written first is the opposite of the root's, then the root's own.
  const std::string other = rootForwarding == "1" ? "0" : "1";
  ASSERT_OK(writeSysctlInNetns(s, "net/ipv4/ip_forward", other));
  EXPECT_EQ(sysctlIn(s, "net/ipv4/ip_forward"), other);
  EXPECT_EQ(readFirstLine("/proc/sys/net/ipv4/ip_forward"), rootForwarding);
  ASSERT_OK(writeSysctlInNetns(s, "net/ipv4/ip_forward", rootForwarding));
  EXPECT_EQ(sysctlIn(s, "net/ipv4/ip_forward"), rootForwarding);

  auto missingKey = writeSysctlInNetns(s, "net/ipv4/no_such_key", "1");
  ASSERT_FALSE(missingKey.has_value());
  EXPECT_NE(missingKey.error().message().find("no_such_key"), std::string::npos)
      << missingKey.error().message();
  EXPECT_NE(missingKey.error().message().find(s), std::string::npos) << missingKey.error().message();
  auto escape = writeSysctlInNetns(s, "../../etc/passwd", "x");
  ASSERT_FALSE(escape.has_value());
  EXPECT_EQ(escape.error().kind(), ErrorKind::InvalidArgument);
  auto missingNetns = writeSysctlInNetns(testPrefix() + "nosuchns", "net/ipv4/ip_forward", "1");
  ASSERT_FALSE(missingNetns.has_value());
  EXPECT_EQ(missingNetns.error().kind(), ErrorKind::NotFound);
}

// h1 (10.99.1.10) and h2 (10.99.2.10) each hang off their own bridge in the router namespace; only the
// router's forwarding and the hosts' default routes connect them.
TEST_F(NetlinkTest, TwoHostsTalkThroughARouterNamespace) {
  std::string router = netns("router"), h1 = netns("h1"), h2 = netns("h2");
  auto netRouterOpened = Netlink::open(router);
  ASSERT_OK(netRouterOpened);
  Netlink& netRouter = *netRouterOpened;
  struct Host {
    std::string netns, bridge, routerAddress, gateway, port, address;
  };
  for (const Host& host : {Host{h1, "br1", "10.99.1.1/24", "10.99.1.1", "h1port", "10.99.1.10/24"},
                           Host{h2, "br2", "10.99.2.1/24", "10.99.2.1", "h2port", "10.99.2.10/24"}}) {
    ASSERT_OK(netRouter.createBridge(host.bridge));
    ASSERT_OK(netRouter.addAddress(host.bridge, host.routerAddress));
    ASSERT_OK(netRouter.setUp(host.bridge));
    ASSERT_OK(netRouter.createVethPair(host.port, "hostend"));
    ASSERT_OK(netRouter.setMaster(host.port, host.bridge));
    ASSERT_OK(netRouter.setUp(host.port));
    auto hostFd = openNetns(host.netns);
    ASSERT_OK(hostFd);
    ASSERT_OK(netRouter.moveToNetns("hostend", hostFd->get(), "eth0"));
    auto netHost = Netlink::openIn(hostFd->get(), "host " + host.netns);
    ASSERT_OK(netHost);
    ASSERT_OK(netHost->addAddress("eth0", host.address));
    ASSERT_OK(netHost->setUp("eth0"));
    ASSERT_OK(netHost->addDefaultRoute(host.gateway));
    auto routes = netHost->routes(254);
    ASSERT_OK(routes);
    ASSERT_FALSE(routes->empty());
    EXPECT_EQ(routes->front(),
              (RouteEntry{.destination = "0.0.0.0/0", .gateway = host.gateway, .device = "eth0"}));
  }

  UniqueFd listener = listenIn(h2, 8080, "10.99.2.10");
  ASSERT_TRUE(listener.valid()) << "listen in " << h2;
  // Forwarding off: the router drops what is not for itself. (Set explicitly: a new namespace may start
  // with the root namespace's value.)
  ASSERT_OK(writeSysctlInNetns(router, "net/ipv4/ip_forward", "0"));
  EXPECT_FALSE(tcpExchange(h1, "10.99.2.10", 8080, listener, kConnectTimeout).ok);
  ASSERT_OK(writeSysctlInNetns(router, "net/ipv4/ip_forward", "1"));
  EXPECT_TRUE(tcpExchange(h1, "10.99.2.10", 8080, listener, kConnectTimeout).ok);
  // And a blackhole route in the router cuts it again.
  ASSERT_OK(netRouter.addRoute({.destination = "10.99.2.0/28", .blackhole = true}));
  EXPECT_FALSE(tcpExchange(h1, "10.99.2.10", 8080, listener, kConnectTimeout).ok);
  ASSERT_OK(netRouter.deleteRoute({.destination = "10.99.2.0/28"}));
  EXPECT_TRUE(tcpExchange(h1, "10.99.2.10", 8080, listener, kConnectTimeout).ok);
}

}  // namespace
}  // namespace corral::net
