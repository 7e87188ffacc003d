// The VPC firewall's rendered nft text: golden files for a two-subnet VPC, and the properties the golden
// text must keep (ordering of NACL rules, stateless ACLs before the conntrack shortcut, determinism).
#include "net/nft.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/unit/net/sample_vpc.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

constexpr int64_t kNow = 1700000000;
const std::filesystem::path kGoldenDir = std::filesystem::path(__FILE__).parent_path() / "golden";

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// CORRAL_UPDATE_GOLDEN=1 rewrites the golden files from the current output.
void expectGolden(const std::string& text, const std::string& name) {
  const auto path = kGoldenDir / name;
  if (getenv("CORRAL_UPDATE_GOLDEN")) std::ofstream(path) << text;
  EXPECT_EQ(text, readFile(path)) << "golden file " << path;
}

// The backends' sample VPC (sample_vpc.h).
Topology sampleTopology() {
  return sample::topology();
}

std::vector<NicAttachment> sampleNics() {
  return sample::nics();
}

TEST(VpcRuleset, TwoSubnetsThreeNicsMatchesGolden) {
  expectGolden(vpcRuleset(sampleTopology(), "prod", sampleNics()), "two_subnets.nft");
}

TEST(VpcRuleset, FreshVpcWithoutNicsMatchesGolden) {
  Topology t;
  ok(t.createVpc({.name = "empty", .cidr = "10.9.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "only", .vpc = "empty", .cidr = "10.9.0.0/24"}, kNow));
  expectGolden(vpcRuleset(t, "empty", {}), "no_nics.nft");
}

TEST(VpcRuleset, DeterministicWhateverTheNicOrder) {
  Topology t = sampleTopology();
  std::vector<NicAttachment> nics = sampleNics();
  std::string first = vpcRuleset(t, "prod", nics);
  std::reverse(nics.begin(), nics.end());
  EXPECT_EQ(first, vpcRuleset(t, "prod", nics));
}

TEST(VpcRuleset, NaclDenyWithLowerNumberComesFirst) {
  std::string text = vpcRuleset(sampleTopology(), "prod", sampleNics());
  size_t chain = text.find("chain nacl-strict-ingress {");
  ASSERT_NE(chain, std::string::npos);
  size_t deny = text.find(
      "ip saddr 10.0.1.0/24 tcp dport 22 log prefix \"crl:n:i:50:strict\" group 1 snaplen 64 drop comment "
      "\"rule 50\"",
      chain);
  size_t allow = text.find("ip saddr 10.0.0.0/16 return comment \"rule 100\"", chain);
  size_t implicit =
      text.find("log prefix \"crl:n:i:*:strict\" group 1 snaplen 64 drop comment \"implicit deny\"", chain);
  ASSERT_NE(deny, std::string::npos);
  ASSERT_NE(allow, std::string::npos);
  EXPECT_LT(deny, allow);
  EXPECT_LT(allow, implicit);
}

TEST(VpcRuleset, StatelessAclsRunBeforeTheConntrackShortcut) {
  std::string text = vpcRuleset(sampleTopology(), "prod", sampleNics());
  size_t acl = text.find("jump nacl-strict-ingress");
  size_t established = text.find("ct state established,related accept");
  size_t groups = text.find("ip saddr vmap");
  ASSERT_NE(acl, std::string::npos);
  EXPECT_LT(acl, established);
  EXPECT_LT(established, groups);
}

TEST(VpcRuleset, SameSubnetTrafficSkipsAcls) {
  std::string text = vpcRuleset(sampleTopology(), "prod", sampleNics());
  EXPECT_NE(text.find("ip saddr 10.0.2.0/24 ip daddr != 10.0.2.0/24 jump nacl-strict-egress"),
            std::string::npos);
  EXPECT_NE(text.find("ip daddr 10.0.2.0/24 ip saddr != 10.0.2.0/24 jump nacl-strict-ingress"),
            std::string::npos);
}

TEST(VpcRuleset, PeerGroupIsTheSetOfItsMembersAddresses) {
  Topology t = sampleTopology();
  std::vector<NicAttachment> nics = sampleNics();
  nics.push_back(
      {.instance = "bastion-2", .subnet = "private", .address = "10.0.2.9", .securityGroups = {"admin"}});
  const NftTable table = vpcFirewall(t, "prod", nics);
  const std::string text = renderTable(table);
  EXPECT_NE(text.find("ip saddr @sg-members-admin tcp dport 22 accept comment \"web rule 3\""),
            std::string::npos)
      << text;
  const auto& members = table.sets.at("sg-members-admin").elements;
  EXPECT_EQ(members.size(), 2u);
  EXPECT_TRUE(members.contains("10.0.1.5") && members.contains("10.0.2.9")) << text;
  EXPECT_EQ(members.at("10.0.2.9").comment, "bastion-2");
}

TEST(VpcRuleset, NicsWithTheSameGroupsShareOneChainPair) {
  Topology t = sampleTopology();
  std::vector<NicAttachment> nics = sampleNics();
  // Listed in another order and twice: the same combination.
  nics.push_back(
      {.instance = "web-2", .subnet = "public", .address = "10.0.1.11", .securityGroups = {"web"}});
  nics.push_back(
      {.instance = "both-1", .subnet = "public", .address = "10.0.1.12", .securityGroups = {"web", "admin"}});
  nics.push_back({.instance = "both-2",
                  .subnet = "public",
                  .address = "10.0.1.13",
                  .securityGroups = {"admin", "web", "web"}});
  const NftTable table = vpcFirewall(t, "prod", nics);
  size_t groupChains = 0;
  for (const auto& [name, chain] : table.chains) groupChains += name.starts_with("sg-") ? 1 : 0;
  // web, admin, prod-default (db) and admin.web: four combinations, two directions.
  EXPECT_EQ(groupChains, 8u) << renderTable(table);
  const auto& egress = table.sets.at("sg-egress").elements;
  EXPECT_EQ(egress.at("10.0.1.10").value, "jump sg-egress-web");
  EXPECT_EQ(egress.at("10.0.1.11").value, "jump sg-egress-web");
  EXPECT_EQ(egress.at("10.0.1.12").value, "jump sg-egress-admin.web");
  EXPECT_EQ(egress.at("10.0.1.13").value, "jump sg-egress-admin.web");
  EXPECT_EQ(table.sets.at("sg-ingress").elements.at("10.0.2.7").value, "jump sg-ingress-prod-default");
  // The combination's chain holds both groups' rules (admin's, then web's), then the drop.
  EXPECT_EQ(
      table.chains.at("sg-egress-admin.web").rules,
      (std::vector<std::string>{"ip daddr 0.0.0.0/0 return comment \"admin rule 1\"",
                                "ip daddr 10.0.2.0/24 udp dport 5000-5100 return comment \"admin rule 2\"",
                                "ip daddr 0.0.0.0/0 return comment \"web rule 1\"",
                                "log prefix \"crl:s:o:admin.web\" group 1 snaplen 64 drop"}));
}

TEST(VpcRuleset, EmptyPeerGroupMatchesNothing) {
  Topology t = sampleTopology();
  std::vector<NicAttachment> nics = sampleNics();
  std::erase_if(nics, [](const NicAttachment& n) { return n.instance == "bastion"; });
  const NftTable table = vpcFirewall(t, "prod", nics);
  // The rule stays (so a member joining is one element); its set is empty, which nothing matches.
  EXPECT_TRUE(table.sets.at("sg-members-admin").elements.empty()) << renderTable(table);
  EXPECT_NE(renderTable(table).find("ip saddr @sg-members-admin tcp dport 22 accept"), std::string::npos);
}

TEST(VpcRuleset, NicWithoutGroupsGetsTheDefaultGroup) {
  std::string text = vpcRuleset(sampleTopology(), "prod", sampleNics());
  // The default group lets its members in: db is the only member.
  EXPECT_NE(text.find("10.0.2.7 comment \"db\" : jump sg-ingress-prod-default"), std::string::npos) << text;
  size_t chain = text.find("chain sg-ingress-prod-default {");
  ASSERT_NE(chain, std::string::npos) << text;
  EXPECT_NE(text.find("ip saddr @sg-members-prod-default accept comment \"prod-default rule 1\"", chain),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("set sg-members-prod-default {\n    type ipv4_addr\n    elements = {\n      10.0.2.7 "
                      "comment \"db\"\n"),
            std::string::npos)
      << text;
}

// The internet gateway's NAT: subnet "public" routes the default to the internet gateway, "private" to a
// NAT gateway, "isolated" nowhere. web-1 (public) has a public address and publishes 8080:80; web-2
// (public) has neither; app (private) publishes 9000:9000/udp and has a public address it cannot use; db
// (isolated) publishes a port that cannot work.
Topology gatewayTopology() {
  Topology t;
  ok(t.createVpc({.name = "shop", .cidr = "10.20.0.0/16"}, kNow));
  ok(t.createRouteTable({.name = "public-rt", .vpc = "shop"}, kNow));
  ok(t.createRouteTable({.name = "private-rt", .vpc = "shop"}, kNow));
  ok(t.createSubnet({.name = "public", .vpc = "shop", .cidr = "10.20.1.0/24", .routeTable = "public-rt"},
                    kNow));
  ok(t.createSubnet({.name = "private", .vpc = "shop", .cidr = "10.20.2.0/24", .routeTable = "private-rt"},
                    kNow));
  ok(t.createSubnet({.name = "isolated", .vpc = "shop", .cidr = "10.20.3.0/24"}, kNow));
  ok(t.createInternetGateway({.name = "shop-igw", .vpc = "shop"}, kNow));
  ok(t.createNatGateway({.name = "shop-nat", .subnet = "public"}, kNow));
  ok(t.addRoute("public-rt",
                {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "shop-igw"}));
  ok(t.addRoute("private-rt",
                {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "shop-nat"}));
  ok(t.createSecurityGroup({.name = "web", .vpc = "shop"}, kNow));
  ok(t.addSecurityGroupRule(
      "web",
      {.direction = "ingress", .protocol = "tcp", .fromPort = 443, .toPort = 443, .cidr = "0.0.0.0/0"}));
  return t;
}

std::vector<NicAttachment> gatewayNics() {
  return {
      {.instance = "web-1",
       .subnet = "public",
       .address = "10.20.1.10",
       .securityGroups = {"web"},
       .publicAddress = "100.64.128.1",
       .publish = {{.protocol = Protocol::Tcp, .outsidePort = 8080, .instancePort = 80}}},
      {.instance = "web-2", .subnet = "public", .address = "10.20.1.11", .securityGroups = {"web"}},
      {.instance = "app",
       .subnet = "private",
       .address = "10.20.2.20",
       .publicAddress = "100.64.128.2",
       .publish = {{.protocol = Protocol::Udp, .outsidePort = 9000, .instancePort = 9000}}},
      {.instance = "db",
       .subnet = "isolated",
       .address = "10.20.3.30",
       .publish = {{.protocol = Protocol::Tcp, .outsidePort = 5432, .instancePort = 5432}}},
  };
}

GatewayPlan gatewayPlan() {
  return GatewayPlan{
      .name = "shop-igw",
      .vpcLink = gatewayLinkName("corral-vpc-shop"),
      .uplinkLink = uplinkLinkName("corral-vpc-shop"),
      .uplinkNetns = "",
      .transit = *Cidr::parse("100.64.0.8/30"),
      .vpcAddress = "100.64.0.10/30",
      .uplinkAddress = "100.64.0.9/30",
      .publicAddresses = {*Ipv4Address::parse("100.64.128.1"), *Ipv4Address::parse("100.64.128.2")}};
}

TEST(VpcRuleset, GatewayNatMatchesGolden) {
  GatewayPlan gateway = gatewayPlan();
  expectGolden(vpcRuleset(gatewayTopology(), "shop", gatewayNics(), &gateway), "gateway.nft");
}

TEST(VpcRuleset, GatewayNatFollowsEachSubnetsReachability) {
  GatewayPlan gateway = gatewayPlan();
  const std::string link = "\"" + gateway.vpcLink + "\"";
  const NftTable table = vpcFirewall(gatewayTopology(), "shop", gatewayNics(), &gateway);
  std::string text = renderTable(table);
  // Public subnet: 1:1 both ways for web-1, the outside address for the rest; private: the outside address.
  EXPECT_NE(text.find("iifname " + link + " dnat ip to ip daddr map @public-to-private"), std::string::npos);
  EXPECT_NE(text.find("oifname " + link + " snat ip to ip saddr map @private-to-public"), std::string::npos);
  EXPECT_EQ(table.sets.at("public-to-private").elements,
            (std::map<std::string, NftElement>{{"100.64.128.1", {"10.20.1.10", "public address of web-1"}}}));
  EXPECT_EQ(table.sets.at("private-to-public").elements,
            (std::map<std::string, NftElement>{{"10.20.1.10", {"100.64.128.1", "public address of web-1"}}}));
  EXPECT_NE(text.find("oifname " + link + " ip saddr 10.20.1.0/24 snat ip to 100.64.0.10"),
            std::string::npos);
  EXPECT_NE(text.find("oifname " + link + " ip saddr 10.20.2.0/24 snat ip to 100.64.0.10"),
            std::string::npos);
  EXPECT_LT(text.find("map @private-to-public"), text.find("ip saddr 10.20.1.0/24 snat"))
      << "the NIC's own address before its subnet's";
  // A public address outside a public subnet is not used; an isolated subnet gets no NAT and no way out.
  EXPECT_EQ(text.find("100.64.128.2 comment"), std::string::npos);
  EXPECT_EQ(text.find(": 100.64.128.2"), std::string::npos);
  EXPECT_NE(text.find("# app: public address 100.64.128.2 unused"), std::string::npos) << text;
  EXPECT_EQ(text.find("ip saddr 10.20.3.0/24 snat"), std::string::npos);
  EXPECT_NE(text.find("# db: publish 5432:5432/tcp unused"), std::string::npos) << text;
  EXPECT_NE(text.find("ip saddr 10.20.3.0/24 oifname " + link + " log prefix \"crl:x:"), std::string::npos)
      << text;
  // Published ports: DNAT on the outside address, accepted right after the conntrack shortcut, before the
  // drop of other unsolicited inbound and before the security groups.
  EXPECT_NE(text.find("ip daddr 100.64.0.10 dnat ip to meta l4proto . th dport map @published-ports"),
            std::string::npos);
  EXPECT_EQ(table.sets.at("published-ports").elements.at("udp . 9000").value, "10.20.2.20 . 9000");
  EXPECT_EQ(table.sets.at("published-ports").elements.size(), 2u) << "db's subnet is isolated";
  EXPECT_TRUE(table.sets.at("published").elements.contains("10.20.1.10 . tcp . 80"));
  size_t established = text.find("ct state established,related accept");
  size_t published =
      text.find("ct original ip daddr 100.64.0.10 ip daddr . meta l4proto . th dport @published accept");
  size_t unsolicited =
      text.find("iifname " + link + " ct status & dnat == 0 log prefix \"crl:u\" group 1 snaplen 64 drop");
  size_t groups = text.find("ip saddr vmap");
  ASSERT_NE(published, std::string::npos) << text;
  EXPECT_LT(established, published);
  EXPECT_LT(published, unsolicited);
  EXPECT_LT(unsolicited, groups);
  EXPECT_NE(text.find("iifname " + link + " icmp type echo-request accept"), std::string::npos);
}

TEST(VpcRuleset, WithoutGatewayNoNatIsRendered) {
  std::string text = vpcRuleset(gatewayTopology(), "shop", gatewayNics());
  EXPECT_EQ(text.find("nat hook"), std::string::npos) << text;
  EXPECT_EQ(text.find("chain input"), std::string::npos) << text;
  EXPECT_EQ(text.find("crlg"), std::string::npos) << text;
}

TEST(HostUplinkRuleset, MatchesGolden) {
  expectGolden(hostUplinkRuleset(UplinkSettings{}, "corral-uplink"), "host_uplink.nft");
}

// ---- Port guards ----

// The three NICs of sampleNics as the plan has them: two containers and a VM (its tap, its guest MAC).
std::vector<NicPlan> sampleNicPlans() {
  std::vector<NicPlan> plans;
  for (NicAttachment nic : sampleNics()) {
    nic.vm = nic.instance == "db";
    nic.linkKey = "key-" + nic.instance;
    plans.push_back(NicPlan{.nic = nic,
                            .link = nic.vm ? instanceTapName(nic.linkKey) : instanceVethName(nic.linkKey),
                            .bridge = subnetBridgeName("prod", nic.subnet),
                            .mac = instanceMac(nic.instance, nic.vm),
                            .addressWithPrefix = nic.address + "/24",
                            .gateway = ""});
  }
  return plans;
}

TEST(PortGuards, ThreeNicsMatchGolden) {
  expectGolden(portGuardRuleset("prod", sampleNicPlans()), "port_guards.nft");
}

TEST(PortGuards, NoNicsIsAnEmptyHookMatchingGolden) {
  expectGolden(portGuardRuleset("empty", {}), "port_guards_no_nics.nft");
}

TEST(PortGuards, DeterministicWhateverTheNicOrder) {
  std::vector<NicPlan> nics = sampleNicPlans();
  const std::string forward = portGuardRuleset("prod", nics);
  std::reverse(nics.begin(), nics.end());
  EXPECT_EQ(portGuardRuleset("prod", nics), forward);
}

TEST(PortGuards, OneChainDropsForeignSourcesBeforeItAcceptsAndCountsEveryDrop) {
  const std::vector<NicPlan> nics = sampleNicPlans();
  const NftTable table = portGuardTable("prod", nics);
  // One chain for every port; per port, elements only.
  ASSERT_EQ(table.chains.size(), 1u);
  EXPECT_TRUE(table.counters.empty());
  const std::vector<std::string>& rules = table.chains.at("prerouting").rules;
  auto at = [&](std::string_view text) {
    for (size_t i = 0; i < rules.size(); ++i) {
      if (rules[i].find(text) != std::string::npos) return i;
    }
    ADD_FAILURE() << "no rule with " << text;
    return rules.size();
  };
  EXPECT_EQ(at("iifname != @ports accept"), 0u) << "ports that are not an instance's pass unchecked";
  EXPECT_LT(at("ether saddr != @port-mac"), at("ip saddr != @port-ip"));
  EXPECT_LT(at("ip saddr != @port-ip"), at("ether type ip accept"))
      << "the source address is checked before IPv4 is let through";
  EXPECT_LT(at("ether type ip accept"), at("@port-arp accept"));
  // Every drop is counted on the port's element of its reason's set; the chain ends in a counted drop.
  size_t drops = 0;
  for (const std::string& rule : rules) {
    if (rule.find(" drop") == std::string::npos) continue;
    ++drops;
    EXPECT_NE(rule.find("iifname @drops-"), std::string::npos) << rule;
  }
  EXPECT_EQ(drops, 4u);
  EXPECT_NE(rules.back().find("iifname @drops-other drop"), std::string::npos) << rules.back();
  for (SpoofReason reason : kSpoofReasons) {
    const NftSet& set = table.sets.at(portGuardDropSetName(reason));
    EXPECT_TRUE(set.counter) << "each element counts its port's drops";
    EXPECT_EQ(set.elements.size(), nics.size());
  }
  for (const NicPlan& nic : nics) {
    const std::string port = fmt::format("\"{}\"", nic.link);
    EXPECT_TRUE(table.sets.at("ports").elements.contains(port));
    EXPECT_TRUE(table.sets.at("port-mac").elements.contains(fmt::format("{} . {}", port, nic.mac)));
    EXPECT_TRUE(table.sets.at("port-ip").elements.contains(fmt::format("{} . {}", port, nic.nic.address)));
    EXPECT_TRUE(table.sets.at("port-arp")
                    .elements.contains(fmt::format("{} . {} . {}", port, nic.mac, nic.nic.address)));
  }
}

TEST(PortGuards, ApplyRefusesTheCallersOwnNamespace) {
  auto applied = applyPortGuards("", portGuardRuleset("prod", {}), {});
  ASSERT_FALSE(applied.has_value());
  EXPECT_NE(applied.error().message().find("VPC namespace"), std::string::npos) << applied.error().message();
}

TEST(VpcRuleset, ApplyRefusesATableNameThatIsNotPlain) {
  auto s = applyRuleset("corral-nft-unit-test-no-such-netns", "", "corral; flush ruleset");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(s.error().field(), "table");
  EXPECT_FALSE(deleteRuleset("corral-nft-unit-test-no-such-netns", "").has_value());
}

TEST(VpcRuleset, ApplyRefusesANamespaceNameThatIsAPath) {
  auto s = applyRuleset("../etc", "table inet corral {}\n");
  ASSERT_FALSE(s.has_value());
  EXPECT_EQ(s.error().kind(), ErrorKind::InvalidArgument);
  auto missing = deleteRuleset("corral-nft-unit-test-no-such-netns");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error().kind(), ErrorKind::NotFound);
}

}  // namespace
}  // namespace corral::net
