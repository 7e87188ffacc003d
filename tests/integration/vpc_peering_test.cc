// VPC peering end to end through a real corrald (as root): containers in three VPCs a – b – c, TCP that
// flows only where both sides route to each other, never from a to c (not even when the kernel is handed
// the routes behind corrald's back: b's firewall drops transit), security groups naming the peer VPC's
// group, deletes refused while routes or rules use a peering, and a SIGKILLed daemon whose restart repairs
// a cut peering and removes a stray one. Every namespace carries this process's prefix.
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "net/netlink.h"
#include "net/netns.h"
#include "tests/integration/harness.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

constexpr int kConnectSeconds = 2;

std::string vpcNetns(const std::string& vpc) {
  return corral::testing::testNetnsPrefix() + "vpc-" + vpc;
}

// The corral peering links (crlp...) of a VPC's namespace.
std::vector<std::string> peeringLinks(const std::string& vpc) {
  std::vector<std::string> found;
  auto netlink = net::Netlink::open(vpcNetns(vpc));
  if (!netlink) return found;
  auto links = netlink->links();
  if (!links) return found;
  for (const net::LinkInfo& link : *links)
    if (link.name.starts_with("crlp")) found.push_back(link.name);
  return found;
}

// A container in `subnet` answering "NAME" on port 80.
json runContainer(const TestDaemon& d, const std::string& name, const std::string& subnet,
                  const json& extra = json::object()) {
  json spec = {{"name", name},
               {"image", "busybox"},
               {"command", {"sh", "-c", fmt::format("nc -ll -p 80 -e /bin/echo {}", name)}},
               {"subnet", subnet}};
  spec.update(extra);
  return d.must("POST", "/v1/instances", spec);
}

struct Dial {
  bool ran = false;
  bool connected = false;
  std::string detail;
};

Dial dialOnce(const TestDaemon& d, const std::string& from, const std::string& address) {
  Reply run =
      d.call("POST", fmt::format("/v1/instances/{}/exec", from),
             {{"command", {"sh", "-c", fmt::format("nc -w {} {} 80 </dev/null", kConnectSeconds, address)}}});
  Dial dial;
  std::string said = run.body.value("stdout", "");
  dial.detail = fmt::format("{} → {}:80: HTTP {}, exit {}, stdout \"{}\", stderr \"{}\"", from, address,
                            run.status, run.body.value("exit_code", -1), said, run.body.value("stderr", ""));
  dial.ran = run.status == 200 && run.body.contains("exit_code") && run.body["exit_code"].is_number();
  dial.connected = dial.ran && run.body["exit_code"] == 0 && !said.empty();
  return dial;
}

// Should connect: a few tries, listeners of a just-started container may need a moment.
bool connects(const TestDaemon& d, const std::string& from, const std::string& address, std::string* detail) {
  for (int attempt = 0; attempt < 4; ++attempt) {
    Dial dial = dialOnce(d, from, address);
    *detail = dial.detail;
    if (dial.connected) return true;
    std::this_thread::sleep_for(300ms);
  }
  return false;
}

// Should not connect: one try, and the exec itself must have run.
bool blocked(const TestDaemon& d, const std::string& from, const std::string& address, std::string* detail) {
  Dial dial = dialOnce(d, from, address);
  *detail = dial.detail;
  EXPECT_TRUE(dial.ran) << dial.detail;
  return dial.ran && !dial.connected;
}

void route(const TestDaemon& d, const std::string& table, const std::string& destination,
           const std::string& peering) {
  d.must("POST", fmt::format("/v1/route-tables/{}/routes", table),
         {{"destination", destination}, {"target_type", "peering"}, {"target", peering}});
}

class VpcPeering : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "VPC namespaces need root";
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }
  void TearDown() override {
    if (daemon_.pid() <= 0) return;
    std::vector<std::string> failed = daemon_.removeEverything();
    EXPECT_TRUE(failed.empty()) << fmt::format("{}", fmt::join(failed, "\n"));
    for (const std::string& netns : net::listNetns())
      EXPECT_FALSE(netns.starts_with(corral::testing::testNetnsPrefix() + "vpc-")) << netns << " left behind";
  }

  // a 10.0.0.0/16, b 10.1.0.0/16, c 10.2.0.0/16, one subnet and one container each ("a1", "b1", "c1"),
  // each default group letting in tcp/80 from 10.0.0.0/8 (so that only routes and peerings decide).
  void buildThree() {
    const TestDaemon& d = daemon_;
    int index = 0;
    for (const std::string vpc : {"a", "b", "c"}) {
      d.must("POST", "/v1/vpcs", {{"name", vpc}, {"cidr", fmt::format("10.{}.0.0/16", index)}});
      d.must("POST", "/v1/subnets",
             {{"name", vpc + "-sub"}, {"vpc", vpc}, {"cidr", fmt::format("10.{}.1.0/24", index)}});
      d.must("POST", fmt::format("/v1/security-groups/{}-default/rules", vpc),
             {{"protocol", "tcp"}, {"from_port", 80}, {"cidr", "10.0.0.0/8"}});
      ip_[vpc] = runContainer(d, vpc + "1", vpc + "-sub").value("ip", "");
      ++index;
    }
  }

  std::map<std::string, std::string> ip_;
  TestDaemon daemon_{"peering", {}};
};

TEST_F(VpcPeering, TrafficOnlyWhereBothSidesRouteAndNeverTransitively) {
  const TestDaemon& d = daemon_;
  buildThree();
  ASSERT_FALSE(HasFailure());
  std::string detail;

  // Bad input: clear errors, nothing made.
  d.must("POST", "/v1/vpcs", {{"name", "overlap"}, {"cidr", "10.0.128.0/17"}});
  Reply overlap = d.call("POST", "/v1/peerings", {{"name", "x"}, {"vpc", "a"}, {"peer_vpc", "overlap"}});
  EXPECT_EQ(overlap.status, 409) << overlap.body.dump();
  EXPECT_NE(overlap.body.dump().find("10.0.0.0/16"), std::string::npos) << overlap.body.dump();
  EXPECT_NE(overlap.body.dump().find("10.0.128.0/17"), std::string::npos) << overlap.body.dump();
  Reply self = d.call("POST", "/v1/peerings", {{"name", "x"}, {"vpc", "a"}, {"peer_vpc", "a"}});
  EXPECT_EQ(self.status, 400) << self.body.dump();
  EXPECT_EQ(self.body["error"].value("field", ""), "peer_vpc");
  Reply unknown = d.call("POST", "/v1/peerings", {{"name", "x"}, {"vpc", "a"}, {"peer_vpc", "nowhere"}});
  EXPECT_EQ(unknown.status, 404) << unknown.body.dump();
  EXPECT_EQ(unknown.body["error"].value("field", ""), "peer_vpc");
  corral::testing::CliRun unknownCli = d.cli({"peering", "create", "nowhere", "a"});
  EXPECT_NE(unknownCli.code, 0);
  EXPECT_NE(unknownCli.err.find("vpc \"nowhere\" not found"), std::string::npos) << unknownCli.err;
  EXPECT_TRUE(d.list("peerings").empty());
  EXPECT_TRUE(peeringLinks("a").empty());

  d.must("POST", "/v1/peerings", {{"name", "ab"}, {"vpc", "a"}, {"peer_vpc", "b"}});
  // The CLI's way: `corral peering create B C --name bc`.
  corral::testing::CliRun created = d.cli({"peering", "create", "b", "c", "--name", "bc"});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_NE(created.out.find("created peering bc"), std::string::npos) << created.out;
  Reply duplicate = d.call("POST", "/v1/peerings", {{"name", "ba"}, {"vpc", "b"}, {"peer_vpc", "a"}});
  EXPECT_EQ(duplicate.status, 409) << duplicate.body.dump();
  EXPECT_NE(duplicate.body["error"].value("message", "").find("already peered by peering \"ab\""),
            std::string::npos)
      << duplicate.body.dump();
  Reply sameName = d.call("POST", "/v1/peerings", {{"name", "ab"}, {"vpc", "a"}, {"peer_vpc", "c"}});
  EXPECT_EQ(sameName.status, 409) << sameName.body.dump();
  EXPECT_EQ(d.list("peerings").size(), 2u);
  EXPECT_EQ(d.call("GET", "/v1/peerings?vpc=c").body["peerings"].size(), 1u);
  EXPECT_EQ(peeringLinks("a").size(), 1u);
  EXPECT_EQ(peeringLinks("b").size(), 2u);
  // The dashboard draws them: each VPC's entry lists its peerings.
  json dashboard = d.call("GET", "/v1/dashboard").body;
  std::map<std::string, size_t> drawn;
  for (const json& entry : dashboard.value("vpcs", json::array())) {
    if (entry.contains("vpc") && entry["vpc"].is_object())
      drawn[entry["vpc"].value("name", "")] = entry.value("peerings", json::array()).size();
  }
  EXPECT_EQ(drawn["a"], 1u) << dashboard.dump();
  EXPECT_EQ(drawn["b"], 2u) << dashboard.dump();

  // A peering without routes carries nothing; one side's route alone neither (the replies have no way).
  EXPECT_TRUE(blocked(d, "a1", ip_["b"], &detail)) << detail;
  route(d, "a-main", "10.1.0.0/16", "ab");
  EXPECT_TRUE(blocked(d, "a1", ip_["b"], &detail)) << detail;
  Reply oneWay = d.call("POST", "/v1/reach",
                        {{"source", "a1"}, {"destination", "b1"}, {"protocol", "tcp"}, {"port", 80}});
  EXPECT_EQ(oneWay.body.value("reachable", true), false) << oneWay.body.dump();
  EXPECT_NE(oneWay.body.dump().find("b-main"), std::string::npos) << oneWay.body.dump();

  // Both sides route: both directions work, and reach agrees with the whole path.
  route(d, "b-main", "10.0.0.0/16", "ab");
  EXPECT_TRUE(connects(d, "a1", ip_["b"], &detail)) << detail << "\n" << d.logTail();
  EXPECT_TRUE(connects(d, "b1", ip_["a"], &detail)) << detail;
  Reply both = d.call("POST", "/v1/reach",
                      {{"source", "a1"}, {"destination", "b1"}, {"protocol", "tcp"}, {"port", 80}});
  EXPECT_EQ(both.body.value("reachable", false), true) << both.body.dump();
  EXPECT_NE(both.body.dump().find("\"component\":\"peering\""), std::string::npos) << both.body.dump();

  // b – c as well; a still never reaches c: the model refuses a's route to c through ab...
  route(d, "b-main", "10.2.0.0/16", "bc");
  route(d, "c-main", "10.1.0.0/16", "bc");
  EXPECT_TRUE(connects(d, "b1", ip_["c"], &detail)) << detail;
  Reply transit = d.call("POST", "/v1/route-tables/a-main/routes",
                         {{"destination", "10.2.0.0/16"}, {"target_type", "peering"}, {"target", "ab"}});
  EXPECT_EQ(transit.status, 400) << transit.body.dump();
  EXPECT_EQ(transit.body["error"].value("field", ""), "destination");
  EXPECT_TRUE(blocked(d, "a1", ip_["c"], &detail)) << detail;
  Reply reachC = d.call("POST", "/v1/reach",
                        {{"source", "a1"}, {"destination", "c1"}, {"protocol", "tcp"}, {"port", 80}});
  EXPECT_NE(reachC.body.dump().find("not transitive"), std::string::npos) << reachC.body.dump();

  // ... and when the kernel is given every route (a → c via b, b's main table to c, c → a via b), b's
  // router still drops what comes in through one peering and would leave through another.
  json topoA = d.call("GET", "/v1/vpcs/a/topology").body;
  json topoB = d.call("GET", "/v1/vpcs/b/topology").body;
  json topoC = d.call("GET", "/v1/vpcs/c/topology").body;
  ASSERT_EQ(topoA["peerings"].size(), 1u) << topoA.dump();
  ASSERT_EQ(topoB["peerings"].size(), 2u) << topoB.dump();
  ASSERT_EQ(topoC["peerings"].size(), 1u) << topoC.dump();
  const json& aToB = topoA["peerings"][0];
  const json& cToB = topoC["peerings"][0];
  const json& bToC = topoB["peerings"][0]["name"] == "bc" ? topoB["peerings"][0] : topoB["peerings"][1];
  auto inject = [&](const std::string& vpc, uint32_t table, const std::string& to, const json& peering) {
    auto netlink = net::Netlink::open(vpcNetns(vpc));
    ASSERT_TRUE(netlink.has_value());
    auto added = netlink->addRoute(net::RouteEntry{.destination = to,
                                                   .gateway = peering.value("peer_address", ""),
                                                   .device = peering.value("link", ""),
                                                   .table = table,
                                                   .blackhole = false});
    ASSERT_TRUE(added.has_value()) << added.error().message();
  };
  inject("a", topoA["route_tables"][0]["table_id"].get<uint32_t>(), "10.2.0.0/16", aToB);
  inject("b", 254, "10.2.0.0/16", bToC);
  inject("b", 254, "10.0.0.0/16",
         topoB["peerings"][0]["name"] == "ab" ? topoB["peerings"][0] : topoB["peerings"][1]);
  inject("c", topoC["route_tables"][0]["table_id"].get<uint32_t>(), "10.0.0.0/16", cToB);
  EXPECT_TRUE(blocked(d, "a1", ip_["c"], &detail)) << "transit through b: " << detail;
  EXPECT_TRUE(blocked(d, "c1", ip_["a"], &detail)) << "transit through b: " << detail;
  // What b allows is untouched.
  EXPECT_TRUE(connects(d, "a1", ip_["b"], &detail)) << detail;

  // net show draws the peering and finds its link in the kernel.
  corral::testing::CliRun show = d.cli({"net", "show", "a"});
  EXPECT_EQ(show.code, 0) << show.err;
  EXPECT_NE(show.out.find("peering ab: a corridor to vpc b"), std::string::npos) << show.out;
  EXPECT_NE(show.out.find("peering ab (the corridor"), std::string::npos) << show.out;
  EXPECT_EQ(show.out.find("MISSING"), std::string::npos) << show.out;

  // Deleting a peering that routes use is refused, naming them; once they are gone, its link goes too.
  Reply inUse = d.call("DELETE", "/v1/peerings/ab");
  EXPECT_EQ(inUse.status, 409) << inUse.body.dump();
  EXPECT_NE(inUse.body.dump().find("a-main 10.1.0.0/16"), std::string::npos) << inUse.body.dump();
  d.must("DELETE", "/v1/route-tables/a-main/routes/10.1.0.0/16", nullptr, 200);
  d.must("DELETE", "/v1/route-tables/b-main/routes/10.0.0.0/16", nullptr, 200);
  d.must("DELETE", "/v1/peerings/ab", nullptr, 200);
  EXPECT_TRUE(peeringLinks("a").empty()) << fmt::format("{}", fmt::join(peeringLinks("a"), ", "));
  EXPECT_EQ(peeringLinks("b").size(), 1u) << fmt::format("{}", fmt::join(peeringLinks("b"), ", "));
  EXPECT_TRUE(blocked(d, "a1", ip_["b"], &detail)) << detail;
  EXPECT_TRUE(connects(d, "b1", ip_["c"], &detail)) << detail;
}

TEST_F(VpcPeering, SecurityGroupsNameThePeerVpcsGroup) {
  const TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "a"}, {"cidr", "10.0.0.0/16"}});
  d.must("POST", "/v1/vpcs", {{"name", "b"}, {"cidr", "10.1.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "a-sub"}, {"vpc", "a"}, {"cidr", "10.0.1.0/24"}});
  d.must("POST", "/v1/subnets", {{"name", "b-sub"}, {"vpc", "b"}, {"cidr", "10.1.1.0/24"}});
  d.must("POST", "/v1/security-groups", {{"name", "web"}, {"vpc", "a"}});
  d.must("POST", "/v1/security-groups", {{"name", "db"}, {"vpc", "b"}});
  // Before the peering, naming a's group from b is refused.
  Reply early = d.call("POST", "/v1/security-groups/db/rules",
                       {{"protocol", "tcp"}, {"from_port", 80}, {"peer_group", "web"}});
  EXPECT_EQ(early.status, 400) << early.body.dump();
  EXPECT_EQ(early.body["error"].value("field", ""), "peer_group");
  // `corral peering create A B` names it A-B.
  corral::testing::CliRun created = d.cli({"peering", "create", "a", "b"});
  ASSERT_EQ(created.code, 0) << created.err;
  EXPECT_NE(created.out.find("created peering a-b"), std::string::npos) << created.out;
  route(d, "a-main", "10.1.0.0/16", "a-b");
  route(d, "b-main", "10.0.0.0/16", "a-b");
  d.must("POST", "/v1/security-groups/db/rules",
         {{"protocol", "tcp"}, {"from_port", 80}, {"peer_group", "web"}});
  json web1 = runContainer(d, "web1", "a-sub", {{"security_groups", {"web"}}});
  json other = runContainer(d, "other", "a-sub");
  json db = runContainer(d, "db1", "b-sub", {{"security_groups", {"db"}}});
  ASSERT_FALSE(HasFailure());
  const std::string dbIp = db.value("ip", "");
  std::string detail;
  EXPECT_TRUE(connects(d, "web1", dbIp, &detail)) << detail << "\n" << d.logTail();
  EXPECT_TRUE(blocked(d, "other", dbIp, &detail)) << "not in group web: " << detail;
  // A member joining a's group later is let in by b at once (b's member set follows a's NICs)...
  json web2 = runContainer(d, "web2", "a-sub", {{"security_groups", {"web"}}});
  EXPECT_TRUE(connects(d, "web2", dbIp, &detail)) << detail << "\n" << d.logTail();
  // ... and one leaving is not any more.
  d.must("DELETE", "/v1/instances/web1?force=true", nullptr, 200);
  json web3 = runContainer(d, "web3", "a-sub", {{"ip", web1.value("ip", "")}});
  EXPECT_TRUE(blocked(d, "web3", dbIp, &detail)) << "web1's address, without its group: " << detail;

  // The rule holds the peering.
  Reply inUse = d.call("DELETE", "/v1/peerings/a-b");
  EXPECT_EQ(inUse.status, 409) << inUse.body.dump();
  d.must("DELETE", "/v1/route-tables/a-main/routes/10.1.0.0/16", nullptr, 200);
  d.must("DELETE", "/v1/route-tables/b-main/routes/10.0.0.0/16", nullptr, 200);
  Reply stillRule = d.call("DELETE", "/v1/peerings/a-b");
  EXPECT_EQ(stillRule.status, 409) << stillRule.body.dump();
  EXPECT_NE(stillRule.body.dump().find("db rule 2"), std::string::npos) << stillRule.body.dump();
  d.must("DELETE", "/v1/security-groups/db/rules/2", nullptr, 200);
  d.must("DELETE", "/v1/peerings/a-b", nullptr, 200);
}

TEST_F(VpcPeering, RestartRepairsACutPeeringAndRemovesAStrayOne) {
  TestDaemon& d = daemon_;
  buildThree();
  d.must("POST", "/v1/peerings", {{"name", "ab"}, {"vpc", "a"}, {"peer_vpc", "b"}});
  route(d, "a-main", "10.1.0.0/16", "ab");
  route(d, "b-main", "10.0.0.0/16", "ab");
  std::string detail;
  ASSERT_TRUE(connects(d, "a1", ip_["b"], &detail)) << detail;
  const std::vector<std::string> before = peeringLinks("a");
  ASSERT_EQ(before.size(), 1u);

  d.kill9();
  // While corrald is down: the peering's pair is cut, and a stray pair joins a and c (as a peering deleted
  // from the state would leave it).
  {
    auto a = net::Netlink::open(vpcNetns("a"));
    ASSERT_TRUE(a.has_value());
    ASSERT_TRUE(a->deleteLink(before[0]).has_value());
    auto cNs = net::openNetns(vpcNetns("c"));
    ASSERT_TRUE(cNs.has_value()) << cNs.error().message();
    auto stray = a->createVethPair("crlp0000dead", "crlp0000beef", cNs->get(), std::nullopt);
    ASSERT_TRUE(stray.has_value()) << stray.error().message();
  }
  ASSERT_EQ(peeringLinks("c").size(), 1u);

  ASSERT_TRUE(d.start()) << d.log();
  EXPECT_EQ(peeringLinks("a"), before) << d.logTail();
  EXPECT_EQ(peeringLinks("b").size(), 1u);
  EXPECT_TRUE(peeringLinks("c").empty()) << "the stray pair is gone from both ends\n" << d.logTail();
  EXPECT_NE(d.log().find("removed peering link crlp0000dead"), std::string::npos) << d.logTail();
  EXPECT_TRUE(connects(d, "a1", ip_["b"], &detail)) << detail << "\n" << d.logTail();
  EXPECT_TRUE(connects(d, "b1", ip_["a"], &detail)) << detail;
}

}  // namespace
}  // namespace corral
