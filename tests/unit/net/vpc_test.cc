// The VPC model: AWS's rules for VPCs, subnets, routes, gateways, security groups and network ACLs, the
// changesets mutations report, and that a refused mutation leaves the topology exactly as it was.
#include "net/vpc.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

// Specs are written with designated initializers that leave the other fields at their defaults on purpose
// (that is what a request omitting them carries); GCC 12 still warns about every omitted field.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

constexpr int64_t kNow = 1700000000;

Cidr cidr(std::string_view text) {
  return Cidr::parse(text).value();
}

std::string portsText(const std::optional<PortRange>& ports) {
  return ports ? fmt::format("{}-{}", ports->from, ports->to) : "any";
}

// Every field of every object, so two dumps are equal only if nothing changed.
std::string dump(const Topology& t) {
  std::string out;
  for (const Vpc* v : t.vpcs()) out += fmt::format("vpc {} {} {}\n", v->name, v->cidr.str(), v->createdAt);
  for (const Subnet* s : t.subnets()) {
    out += fmt::format("subnet {} {} {} {} {} {} {} {}\n", s->name, s->vpc, s->cidr.str(),
                       s->availabilityZone, s->mapPublicIp, s->routeTable, s->networkAcl, s->createdAt);
  }
  for (const RouteTable* r : t.routeTables()) {
    out += fmt::format("table {} {} {} {}\n", r->name, r->vpc, r->isMain, r->createdAt);
    for (const Route& route : r->routes) {
      out += fmt::format("  route {} {} {}\n", route.destination.str(),
                         routeTargetTypeName(route.target.type), route.target.name);
    }
  }
  for (const InternetGateway* g : t.internetGateways()) out += fmt::format("igw {} {}\n", g->name, g->vpc);
  for (const NatGateway* g : t.natGateways())
    out += fmt::format("nat {} {} {}\n", g->name, g->vpc, g->subnet);
  for (const SecurityGroup* g : t.securityGroups()) {
    out += fmt::format("group {} {} [{}] {} next={}\n", g->name, g->vpc, g->description, g->isDefault,
                       g->nextRuleId);
    for (const SecurityGroupRule& r : g->rules) {
      out += fmt::format("  rule {} {} {} {} {} {} [{}]\n", r.id, directionName(r.direction),
                         protocolName(r.protocol), portsText(r.ports), r.cidr ? r.cidr->str() : "-",
                         r.peerGroup.value_or("-"), r.description);
    }
  }
  for (const NetworkAcl* a : t.networkAcls()) {
    out += fmt::format("acl {} {} {}\n", a->name, a->vpc, a->isDefault);
    for (const NetworkAclRule& r : a->rules) {
      out +=
          fmt::format("  rule {} {} {} {} {} {}\n", directionName(r.direction), r.number,
                      ruleActionName(r.action), protocolName(r.protocol), portsText(r.ports), r.cidr.str());
    }
  }
  return out;
}

template <class T>
std::vector<std::string> namesOf(const std::vector<const T*>& objects) {
  std::vector<std::string> names;
  for (const T* o : objects) names.push_back(o->name);
  return names;
}

using Names = std::vector<std::string>;

// GCC 12's std::expected has no transform(); this drops the value to compare errors uniformly.
template <class T>
Status asStatus(const Result<T>& result) {
  if (result) return {};
  return fail(result.error());
}

class TopologyTest : public ::testing::Test {
 protected:
  // A typical VPC: prod 10.0.0.0/16 with subnets web (public) and app (private), an internet gateway and a
  // NAT gateway in web, and a public route table.
  void buildProd() {
    ok(t.createVpc({"prod", "10.0.0.0/16"}, kNow));
    ok(t.createSubnet({.name = "web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
    ok(t.createSubnet({.name = "app", .vpc = "prod", .cidr = "10.0.2.0/24"}, kNow));
  }

  Changeset ok(Result<Changeset> result) {
    EXPECT_TRUE(result.has_value()) << result.error().message();
    return result.value_or(Changeset{});
  }

  // Runs a mutation that must fail with `kind` (and `field`, for InvalidArgument) and change nothing.
  Error refused(const std::function<Result<Changeset>()>& mutation, ErrorKind kind,
                std::string_view field = {}, std::string_view messagePart = {}) {
    std::string before = dump(t);
    Result<Changeset> result = mutation();
    EXPECT_FALSE(result.has_value()) << "the mutation succeeded";
    if (result) return Error(ErrorKind::Internal, "unexpected success");
    const Error& e = result.error();
    EXPECT_EQ(errorKindName(e.kind()), errorKindName(kind)) << e.message();
    EXPECT_EQ(e.field(), field) << e.message();
    if (!messagePart.empty()) {
      EXPECT_NE(e.message().find(messagePart), std::string::npos)
          << e.message() << "\n  lacks: " << messagePart;
    }
    EXPECT_EQ(dump(t), before) << "a refused mutation changed the topology: " << e.message();
    return e;
  }

  Topology t;
};

// ---- Names and enums ----

TEST(VpcNames, EnumNamesRoundTripThroughTheirParsers) {
  for (Protocol p : {Protocol::All, Protocol::Tcp, Protocol::Udp, Protocol::Icmp}) {
    EXPECT_EQ(parseProtocol(protocolName(p), "protocol").value(), p);
  }
  for (Direction d : {Direction::Ingress, Direction::Egress}) {
    EXPECT_EQ(parseDirection(directionName(d), "direction").value(), d);
  }
  for (RuleAction a : {RuleAction::Allow, RuleAction::Deny}) {
    EXPECT_EQ(parseRuleAction(ruleActionName(a), "action").value(), a);
  }
  for (RouteTargetType type :
       {RouteTargetType::Local, RouteTargetType::InternetGateway, RouteTargetType::NatGateway,
        RouteTargetType::Blackhole, RouteTargetType::Peering}) {
    EXPECT_EQ(parseRouteTargetType(routeTargetTypeName(type), "target_type").value(), type);
  }
  EXPECT_EQ(protocolName(Protocol::Icmp), "icmp");
  EXPECT_EQ(routeTargetTypeName(RouteTargetType::InternetGateway), "internet_gateway");
  EXPECT_EQ(objectKindName(ObjectKind::Vpc), "vpc");
  EXPECT_EQ(objectKindName(ObjectKind::RouteTable), "route table");
  EXPECT_EQ(objectKindName(ObjectKind::InternetGateway), "internet gateway");
  EXPECT_EQ(objectKindName(ObjectKind::NatGateway), "nat gateway");
  EXPECT_EQ(objectKindName(ObjectKind::SecurityGroup), "security group");
  EXPECT_EQ(objectKindName(ObjectKind::NetworkAcl), "network acl");
  EXPECT_EQ(objectKindName(ObjectKind::Subnet), "subnet");
  EXPECT_EQ(objectKindName(ObjectKind::Peering), "peering");
  EXPECT_EQ(routeTargetTypeName(RouteTargetType::Peering), "peering");
  EXPECT_EQ(subnetReachabilityName(SubnetReachability::Public), "public");
  EXPECT_EQ(subnetReachabilityName(SubnetReachability::PrivateWithNat), "private (NAT)");
  EXPECT_EQ(subnetReachabilityName(SubnetReachability::Isolated), "isolated");
}

TEST(VpcNames, ParsersRefuseUnknownWordsNamingTheField) {
  struct Case {
    std::function<Status()> parse;
    std::string field;
  };
  std::vector<Case> cases = {
      {[] { return asStatus(parseProtocol("TCP", "protocol")); }, "protocol"},
      {[] { return asStatus(parseProtocol("", "rules[0].protocol")); }, "rules[0].protocol"},
      {[] { return asStatus(parseDirection("inbound", "direction")); }, "direction"},
      {[] { return asStatus(parseRuleAction("accept", "action")); }, "action"},
      {[] { return asStatus(parseRouteTargetType("igw", "target_type")); }, "target_type"},
  };
  for (const Case& c : cases) {
    Status result = c.parse();
    ASSERT_FALSE(result) << c.field;
    EXPECT_EQ(result.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(result.error().field(), c.field);
    EXPECT_NE(result.error().message().find("expected"), std::string::npos) << result.error().message();
  }
}

TEST(VpcNames, ValidNames) {
  for (const std::string& name : Names{"a", "0", "web", "web-1", "a-b-c", "1st", std::string(63, 'x')}) {
    EXPECT_TRUE(validateName(name)) << name;
  }
}

TEST(VpcNames, InvalidNamesSayWhy) {
  struct Case {
    std::string name;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{{"", "empty"},
                                         {std::string(64, 'x'), "64 characters"},
                                         {"Web", "contains 'W'"},
                                         {"web_1", "contains '_'"},
                                         {"web.1", "contains '.'"},
                                         {"web 1", "contains ' '"},
                                         {" web", "contains ' '"},
                                         {"-web", "must start with a letter or digit"},
                                         {"web-", "must not end with '-'"},
                                         {"-", "must start"}}) {
    Status result = validateName(c.name, "availability_zone");
    ASSERT_FALSE(result) << "accepted \"" << c.name << "\"";
    EXPECT_EQ(result.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(result.error().field(), "availability_zone");
    EXPECT_NE(result.error().message().find(c.why), std::string::npos) << result.error().message();
  }
  EXPECT_EQ(validateName("X").error().field(), "name");
}

// ---- VPCs ----

TEST_F(TopologyTest, CreateVpcCreatesItsMainTableDefaultAclAndDefaultGroup) {
  Changeset changes = ok(t.createVpc({"prod", "10.0.0.0/16"}, kNow));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::Vpc, "prod"},
                                                      {ObjectKind::RouteTable, "prod-main"},
                                                      {ObjectKind::NetworkAcl, "prod-default"},
                                                      {ObjectKind::SecurityGroup, "prod-default"}}));
  EXPECT_TRUE(changes.deleted.empty());

  const Vpc* vpc = t.vpc("prod").value();
  EXPECT_EQ(vpc->cidr.str(), "10.0.0.0/16");
  EXPECT_EQ(vpc->createdAt, kNow);

  const RouteTable* mainTable = t.mainRouteTable("prod");
  ASSERT_NE(mainTable, nullptr);
  EXPECT_EQ(mainTable->name, "prod-main");
  EXPECT_EQ(mainTable->vpc, "prod");
  EXPECT_TRUE(mainTable->isMain);
  ASSERT_EQ(mainTable->routes.size(), 1u);
  EXPECT_EQ(mainTable->routes[0].destination.str(), "10.0.0.0/16");
  EXPECT_EQ(mainTable->routes[0].target, (RouteTarget{RouteTargetType::Local, ""}));

  const NetworkAcl* acl = t.defaultNetworkAcl("prod");
  ASSERT_NE(acl, nullptr);
  EXPECT_EQ(acl->name, "prod-default");
  EXPECT_TRUE(acl->isDefault);
  ASSERT_EQ(acl->rules.size(), 2u);
  EXPECT_EQ(acl->rules[0].direction, Direction::Ingress);
  EXPECT_EQ(acl->rules[1].direction, Direction::Egress);
  for (const NetworkAclRule& rule : acl->rules) {
    EXPECT_EQ(rule.number, 100);
    EXPECT_EQ(rule.action, RuleAction::Allow);
    EXPECT_EQ(rule.protocol, Protocol::All);
    EXPECT_FALSE(rule.ports);
    EXPECT_EQ(rule.cidr.str(), "0.0.0.0/0");
  }

  const SecurityGroup* group = t.defaultSecurityGroup("prod");
  ASSERT_NE(group, nullptr);
  EXPECT_EQ(group->name, "prod-default");
  EXPECT_TRUE(group->isDefault);
  EXPECT_EQ(group->description, "default group of VPC prod");
  ASSERT_EQ(group->rules.size(), 2u);
  const SecurityGroupRule& ingress = group->rules[0];
  EXPECT_EQ(ingress.direction, Direction::Ingress);
  EXPECT_EQ(ingress.protocol, Protocol::All);
  EXPECT_EQ(ingress.peerGroup, std::optional<std::string>("prod-default"));
  EXPECT_FALSE(ingress.cidr);
  const SecurityGroupRule& egress = group->rules[1];
  EXPECT_EQ(egress.direction, Direction::Egress);
  EXPECT_EQ(egress.protocol, Protocol::All);
  EXPECT_EQ(egress.cidr, std::optional<Cidr>(cidr("0.0.0.0/0")));
  EXPECT_FALSE(egress.peerGroup);
  EXPECT_NE(ingress.id, egress.id);
  EXPECT_GT(group->nextRuleId, std::max(ingress.id, egress.id));

  EXPECT_TRUE(t.checkIntegrity()) << t.checkIntegrity().error().message();
}

TEST_F(TopologyTest, CreateVpcRefusesBadInput) {
  struct Case {
    VpcSpec spec;
    std::string field;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {{"Prod", "10.0.0.0/16"}, "name", "contains 'P'"},
           {{"", "10.0.0.0/16"}, "name", "empty"},
           {{"prod-", "10.0.0.0/16"}, "name", "must not end"},
           {{std::string(56, 'p'), "10.0.0.0/16"}, "name", "too long"},
           {{"prod", "10.0.0.1/16"}, "cidr", "the network is 10.0.0.0/16"},
           {{"prod", "10.0.0.0/15"}, "cidr", "between /16 and /28"},
           {{"prod", "10.0.0.0/29"}, "cidr", "between /16 and /28"},
           {{"prod", "0.0.0.0/0"}, "cidr", "between /16 and /28"},
           {{"prod", "10.0.0.0"}, "cidr", "no prefix length"},
           {{"prod", "10.0.0.0/016"}, "cidr", "leading zero"},
           {{"prod", ""}, "cidr", "empty"},
       }) {
    refused([&] { return t.createVpc(c.spec, kNow); }, ErrorKind::InvalidArgument, c.field, c.why);
  }
  EXPECT_TRUE(t.vpcs().empty());
}

TEST_F(TopologyTest, VpcPrefixBoundsAreInclusive) {
  ok(t.createVpc({"big", "10.0.0.0/16"}, kNow));
  ok(t.createVpc({"small", "10.1.0.0/28"}, kNow));
  EXPECT_EQ(namesOf(t.vpcs()), (Names{"big", "small"}));
}

TEST_F(TopologyTest, VpcNameOf55CharactersLeavesRoomForItsDefaults) {
  std::string name(55, 'v');
  ok(t.createVpc({name, "10.0.0.0/16"}, kNow));
  EXPECT_NE(t.findSecurityGroup(name + "-default"), nullptr);
}

TEST_F(TopologyTest, VpcNamesAreUnique) {
  ok(t.createVpc({"prod", "10.0.0.0/16"}, kNow));
  refused(
      [&] {
        return t.createVpc({"prod", "10.1.0.0/16"}, kNow);
      },
      ErrorKind::Conflict, "", "vpc \"prod\" already exists");
}

TEST_F(TopologyTest, DifferentVpcsMayOverlap) {
  ok(t.createVpc({"prod", "10.0.0.0/16"}, kNow));
  ok(t.createVpc({"staging", "10.0.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "prod-web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
  ok(t.createSubnet({.name = "staging-web", .vpc = "staging", .cidr = "10.0.1.0/24"}, kNow));
  EXPECT_EQ(namesOf(t.subnets("staging")), (Names{"staging-web"}));
}

TEST_F(TopologyTest, CreateVpcRefusedWhenOneOfItsDefaultNamesIsTaken) {
  ok(t.createVpc({"a", "10.0.0.0/16"}, kNow));
  ok(t.createRouteTable({"b-main", "a"}, kNow));
  refused(
      [&] {
        return t.createVpc({"b", "10.1.0.0/16"}, kNow);
      },
      ErrorKind::Conflict, "", "route table \"b-main\" already exists");
  ok(t.deleteRouteTable("b-main"));

  ok(t.createNetworkAcl({"b-default", "a"}, kNow));
  refused(
      [&] {
        return t.createVpc({"b", "10.1.0.0/16"}, kNow);
      },
      ErrorKind::Conflict, "", "network acl \"b-default\" already exists");
  ok(t.deleteNetworkAcl("b-default"));

  ok(t.createSecurityGroup({"b-default", "a", ""}, kNow));
  refused(
      [&] {
        return t.createVpc({"b", "10.1.0.0/16"}, kNow);
      },
      ErrorKind::Conflict, "", "security group \"b-default\" already exists");
  ok(t.deleteSecurityGroup("b-default"));

  ok(t.createVpc({"b", "10.1.0.0/16"}, kNow));
}

TEST_F(TopologyTest, DeleteVpcDeletesItsFourObjects) {
  ok(t.createVpc({"prod", "10.0.0.0/16"}, kNow));
  ok(t.createVpc({"other", "10.1.0.0/16"}, kNow));
  Changeset changes = ok(t.deleteVpc("prod"));
  EXPECT_TRUE(changes.upserted.empty());
  EXPECT_EQ(changes.deleted, (std::vector<ObjectRef>{{ObjectKind::Vpc, "prod"},
                                                     {ObjectKind::RouteTable, "prod-main"},
                                                     {ObjectKind::NetworkAcl, "prod-default"},
                                                     {ObjectKind::SecurityGroup, "prod-default"}}));
  EXPECT_EQ(namesOf(t.vpcs()), (Names{"other"}));
  EXPECT_EQ(namesOf(t.routeTables()), (Names{"other-main"}));
  EXPECT_EQ(namesOf(t.networkAcls()), (Names{"other-default"}));
  EXPECT_EQ(namesOf(t.securityGroups()), (Names{"other-default"}));
  EXPECT_TRUE(t.checkIntegrity());
  refused([&] { return t.deleteVpc("prod"); }, ErrorKind::NotFound, "", "vpc \"prod\" not found");
}

TEST_F(TopologyTest, DeleteVpcRefusedWhileItHoldsObjectsNamingThem) {
  buildProd();
  refused([&] { return t.deleteVpc("prod"); }, ErrorKind::Conflict, "",
          "vpc \"prod\" still has subnets: app, web");

  ok(t.createInternetGateway({"igw", "prod"}, kNow));
  ok(t.createNatGateway({"nat", "web"}, kNow));
  ok(t.createRouteTable({"public", "prod"}, kNow));
  ok(t.createNetworkAcl({"strict", "prod"}, kNow));
  ok(t.createSecurityGroup({"db", "prod", ""}, kNow));
  Error e = refused([&] { return t.deleteVpc("prod"); }, ErrorKind::Conflict);
  for (const char* part : {"subnets: app, web", "internet gateways: igw", "nat gateways: nat",
                           "route tables: public", "network acls: strict", "security groups: db"}) {
    EXPECT_NE(e.message().find(part), std::string::npos) << e.message() << " lacks " << part;
  }
  EXPECT_EQ(e.message().find("prod-main"), std::string::npos)
      << "the main table does not block: " << e.message();
  EXPECT_EQ(e.message().find("prod-default"), std::string::npos) << e.message();

  ok(t.deleteNatGateway("nat"));
  ok(t.deleteInternetGateway("igw"));
  ok(t.deleteSubnet("web"));
  ok(t.deleteSubnet("app"));
  ok(t.deleteRouteTable("public"));
  ok(t.deleteNetworkAcl("strict"));
  refused([&] { return t.deleteVpc("prod"); }, ErrorKind::Conflict, "",
          "vpc \"prod\" still has security groups: db");
  ok(t.deleteSecurityGroup("db"));
  ok(t.deleteVpc("prod"));
  EXPECT_EQ(dump(t), "");
}

// ---- Subnets ----

TEST_F(TopologyTest, CreateSubnetDefaultsToTheMainTableAndDefaultAcl) {
  ok(t.createVpc({"prod", "10.0.0.0/16"}, kNow));
  Changeset changes = ok(t.createSubnet({.name = "web", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow + 5));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::Subnet, "web"}}));
  EXPECT_TRUE(changes.deleted.empty());
  const Subnet* web = t.subnet("web").value();
  EXPECT_EQ(web->vpc, "prod");
  EXPECT_EQ(web->cidr.str(), "10.0.1.0/24");
  EXPECT_EQ(web->availabilityZone, "az1");
  EXPECT_FALSE(web->mapPublicIp);
  EXPECT_EQ(web->routeTable, "prod-main");
  EXPECT_EQ(web->networkAcl, "prod-default");
  EXPECT_EQ(web->createdAt, kNow + 5);
}

TEST_F(TopologyTest, CreateSubnetWithExplicitAssociations) {
  ok(t.createVpc({"prod", "10.0.0.0/16"}, kNow));
  ok(t.createRouteTable({"public", "prod"}, kNow));
  ok(t.createNetworkAcl({"strict", "prod"}, kNow));
  ok(t.createSubnet({.name = "web",
                     .vpc = "prod",
                     .cidr = "10.0.0.0/28",
                     .availabilityZone = "eu-west-1a",
                     .mapPublicIp = true,
                     .routeTable = "public",
                     .networkAcl = "strict"},
                    kNow));
  const Subnet* web = t.findSubnet("web");
  ASSERT_NE(web, nullptr);
  EXPECT_EQ(web->availabilityZone, "eu-west-1a");
  EXPECT_TRUE(web->mapPublicIp);
  EXPECT_EQ(web->routeTable, "public");
  EXPECT_EQ(web->networkAcl, "strict");
  // A subnet may be the whole VPC.
  ok(t.createVpc({"tiny", "10.9.0.0/28"}, kNow));
  ok(t.createSubnet({.name = "all", .vpc = "tiny", .cidr = "10.9.0.0/28"}, kNow));
}

TEST_F(TopologyTest, CreateSubnetRefusesBadInput) {
  buildProd();
  ok(t.createVpc({"other", "10.1.0.0/16"}, kNow));
  ok(t.createRouteTable({"other-public", "other"}, kNow));
  ok(t.createNetworkAcl({"other-strict", "other"}, kNow));
  struct Case {
    SubnetSpec spec;
    ErrorKind kind;
    std::string field;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {{.name = "DB", .vpc = "prod", .cidr = "10.0.3.0/24"},
            ErrorKind::InvalidArgument,
            "name",
            "contains 'D'"},
           {{.name = "web", .vpc = "prod", .cidr = "10.0.3.0/24"},
            ErrorKind::Conflict,
            "",
            "subnet \"web\" already exists"},
           {{.name = "web", .vpc = "other", .cidr = "10.1.3.0/24"},
            ErrorKind::Conflict,
            "",
            "subnet \"web\" already exists"},
           {{.name = "db", .vpc = "", .cidr = "10.0.3.0/24"},
            ErrorKind::InvalidArgument,
            "vpc",
            "needs a vpc"},
           {{.name = "db", .vpc = "nope", .cidr = "10.0.3.0/24"},
            ErrorKind::NotFound,
            "vpc",
            "vpc \"nope\" not found"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.1/24"},
            ErrorKind::InvalidArgument,
            "cidr",
            "the network is 10.0.3.0/24"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.0/29"},
            ErrorKind::InvalidArgument,
            "cidr",
            "between /16 and /28"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.0.0/15"},
            ErrorKind::InvalidArgument,
            "cidr",
            "between /16 and /28"},
           {{.name = "db", .vpc = "prod", .cidr = "10.2.0.0/24"},
            ErrorKind::InvalidArgument,
            "cidr",
            "subnet 10.2.0.0/24 is not inside vpc \"prod\" (10.0.0.0/16)"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.1.128/25"},
            ErrorKind::Conflict,
            "",
            "overlaps subnet \"web\" (10.0.1.0/24)"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.0.0/22"},
            ErrorKind::Conflict,
            "",
            "overlaps subnet \"app\" (10.0.2.0/24)"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24", .availabilityZone = "AZ 1"},
            ErrorKind::InvalidArgument,
            "availability_zone",
            "contains 'A'"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24", .availabilityZone = ""},
            ErrorKind::InvalidArgument,
            "availability_zone",
            "empty"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24", .routeTable = "nope"},
            ErrorKind::NotFound,
            "route_table",
            "route table \"nope\" not found"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24", .routeTable = "other-public"},
            ErrorKind::InvalidArgument,
            "route_table",
            "belongs to vpc \"other\""},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24", .routeTable = "other-main"},
            ErrorKind::InvalidArgument,
            "route_table",
            "belongs to vpc \"other\""},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24", .networkAcl = "nope"},
            ErrorKind::NotFound,
            "network_acl",
            "network acl \"nope\" not found"},
           {{.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24", .networkAcl = "other-strict"},
            ErrorKind::InvalidArgument,
            "network_acl",
            "belongs to vpc \"other\""},
       }) {
    refused([&] { return t.createSubnet(c.spec, kNow); }, c.kind, c.field, c.why);
  }
  // Adjacent blocks do not overlap.
  ok(t.createSubnet({.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24"}, kNow));
}

TEST_F(TopologyTest, UpdateSubnetChangesAssociationsWithTheSameChecks) {
  buildProd();
  ok(t.createRouteTable({"public", "prod"}, kNow));
  ok(t.createNetworkAcl({"strict", "prod"}, kNow));
  ok(t.createVpc({"other", "10.1.0.0/16"}, kNow));

  Changeset changes =
      ok(t.updateSubnet("web", {.routeTable = "public", .networkAcl = {}, .mapPublicIp = true}));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::Subnet, "web"}}));
  EXPECT_EQ(t.findSubnet("web")->routeTable, "public");
  EXPECT_EQ(t.findSubnet("web")->networkAcl, "prod-default") << "untouched when absent";
  EXPECT_TRUE(t.findSubnet("web")->mapPublicIp);

  ok(t.updateSubnet("web", {.routeTable = {}, .networkAcl = "strict", .mapPublicIp = {}}));
  EXPECT_EQ(t.findSubnet("web")->routeTable, "public");
  EXPECT_EQ(t.findSubnet("web")->networkAcl, "strict");
  EXPECT_TRUE(t.findSubnet("web")->mapPublicIp);

  // An empty name goes back to the VPC's main table / default ACL.
  ok(t.updateSubnet("web", {.routeTable = "", .networkAcl = "", .mapPublicIp = false}));
  EXPECT_EQ(t.findSubnet("web")->routeTable, "prod-main");
  EXPECT_EQ(t.findSubnet("web")->networkAcl, "prod-default");
  EXPECT_FALSE(t.findSubnet("web")->mapPublicIp);

  refused([&] { return t.updateSubnet("nope", {.routeTable = "public"}); }, ErrorKind::NotFound, "",
          "subnet \"nope\" not found");
  refused([&] { return t.updateSubnet("web", {.routeTable = "nope"}); }, ErrorKind::NotFound, "route_table");
  refused([&] { return t.updateSubnet("web", {.routeTable = "other-main"}); }, ErrorKind::InvalidArgument,
          "route_table", "belongs to vpc \"other\"");
  refused([&] { return t.updateSubnet("web", {.networkAcl = "nope"}); }, ErrorKind::NotFound, "network_acl");
  refused([&] { return t.updateSubnet("web", {.networkAcl = "other-default"}); }, ErrorKind::InvalidArgument,
          "network_acl", "belongs to vpc \"other\"");
  // A valid route table with an invalid ACL changes neither.
  refused(
      [&] {
        return t.updateSubnet("web", {.routeTable = "public", .networkAcl = "nope", .mapPublicIp = true});
      },
      ErrorKind::NotFound, "network_acl");
}

TEST_F(TopologyTest, DeleteSubnetRefusedWhileANatGatewayLivesInIt) {
  buildProd();
  ok(t.createNatGateway({"nat-a", "web"}, kNow));
  ok(t.createNatGateway({"nat-b", "web"}, kNow));
  refused([&] { return t.deleteSubnet("web"); }, ErrorKind::Conflict, "",
          "subnet \"web\" still has nat gateways: nat-a, nat-b");
  Changeset changes = ok(t.deleteSubnet("app"));
  EXPECT_EQ(changes.deleted, (std::vector<ObjectRef>{{ObjectKind::Subnet, "app"}}));
  EXPECT_TRUE(changes.upserted.empty());
  EXPECT_EQ(t.findSubnet("app"), nullptr);
  refused([&] { return t.deleteSubnet("app"); }, ErrorKind::NotFound, "", "subnet \"app\" not found");
}

// ---- Route tables and routes ----

TEST_F(TopologyTest, CreateRouteTableGetsTheLocalRoute) {
  buildProd();
  Changeset changes = ok(t.createRouteTable({"public", "prod"}, kNow));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::RouteTable, "public"}}));
  const RouteTable* table = t.routeTable("public").value();
  EXPECT_FALSE(table->isMain);
  ASSERT_EQ(table->routes.size(), 1u);
  EXPECT_EQ(table->routes[0].destination.str(), "10.0.0.0/16");
  EXPECT_EQ(table->routes[0].target.type, RouteTargetType::Local);

  refused(
      [&] {
        return t.createRouteTable({"public", "prod"}, kNow);
      },
      ErrorKind::Conflict, "", "route table \"public\" already exists");
  refused([&] { return t.createRouteTable({"Public", "prod"}, kNow); }, ErrorKind::InvalidArgument, "name");
  refused(
      [&] {
        return t.createRouteTable({"x", "nope"}, kNow);
      },
      ErrorKind::NotFound, "vpc", "vpc \"nope\" not found");
  refused([&] { return t.createRouteTable({"x", ""}, kNow); }, ErrorKind::InvalidArgument, "vpc");
}

TEST_F(TopologyTest, DeleteRouteTableRefusedForMainAndWhileAssociated) {
  buildProd();
  ok(t.createRouteTable({"public", "prod"}, kNow));
  ok(t.updateSubnet("web", {.routeTable = "public"}));
  ok(t.updateSubnet("app", {.routeTable = "public"}));
  refused([&] { return t.deleteRouteTable("prod-main"); }, ErrorKind::Conflict, "", "main route table");
  refused([&] { return t.deleteRouteTable("public"); }, ErrorKind::Conflict, "",
          "route table \"public\" is still associated with subnets: app, web");
  refused([&] { return t.deleteRouteTable("nope"); }, ErrorKind::NotFound, "",
          "route table \"nope\" not found");
  ok(t.updateSubnet("web", {.routeTable = ""}));
  ok(t.updateSubnet("app", {.routeTable = ""}));
  Changeset changes = ok(t.deleteRouteTable("public"));
  EXPECT_EQ(changes.deleted, (std::vector<ObjectRef>{{ObjectKind::RouteTable, "public"}}));
}

TEST_F(TopologyTest, AddRouteKeepsRoutesSortedByPrefixThenAddress) {
  buildProd();
  ok(t.createInternetGateway({"igw", "prod"}, kNow));
  ok(t.createNatGateway({"nat", "web"}, kNow));
  Changeset changes = ok(t.addRoute("prod-main", {"0.0.0.0/0", "internet_gateway", "igw"}));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::RouteTable, "prod-main"}}));
  EXPECT_TRUE(changes.deleted.empty());
  ok(t.addRoute("prod-main", {"192.168.0.0/24", "nat_gateway", "nat"}));
  ok(t.addRoute("prod-main", {"172.16.0.0/24", "blackhole", ""}));
  ok(t.addRoute("prod-main", {"203.0.113.9/32", "blackhole", ""}));
  ok(t.addRoute("prod-main", {"10.0.0.0/8", "nat_gateway", "nat"}));  // wider than the VPC: allowed

  std::vector<std::string> order;
  for (const Route& r : t.findRouteTable("prod-main")->routes) {
    order.push_back(
        fmt::format("{} {} {}", r.destination.str(), routeTargetTypeName(r.target.type), r.target.name));
  }
  EXPECT_EQ(order,
            (Names{"203.0.113.9/32 blackhole ", "172.16.0.0/24 blackhole ", "192.168.0.0/24 nat_gateway nat",
                   "10.0.0.0/16 local ", "10.0.0.0/8 nat_gateway nat", "0.0.0.0/0 internet_gateway igw"}));
}

TEST_F(TopologyTest, AddRouteRefusesBadInput) {
  buildProd();
  ok(t.createVpc({"other", "10.1.0.0/16"}, kNow));
  ok(t.createInternetGateway({"igw", "prod"}, kNow));
  ok(t.createInternetGateway({"other-igw", "other"}, kNow));
  ok(t.createSubnet({.name = "other-web", .vpc = "other", .cidr = "10.1.0.0/24"}, kNow));
  ok(t.createNatGateway({"other-nat", "other-web"}, kNow));
  ok(t.addRoute("prod-main", {"0.0.0.0/0", "internet_gateway", "igw"}));
  struct Case {
    std::string table;
    RouteSpec spec;
    ErrorKind kind;
    std::string field;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {"nope",
            {"0.0.0.0/0", "blackhole", ""},
            ErrorKind::NotFound,
            "",
            "route table \"nope\" not found"},
           {"prod-main", {"8.8.8.0/33", "blackhole", ""}, ErrorKind::InvalidArgument, "destination", "0-32"},
           {"prod-main",
            {"8.8.8.1/24", "blackhole", ""},
            ErrorKind::InvalidArgument,
            "destination",
            "the network is 8.8.8.0/24"},
           {"prod-main", {"", "blackhole", ""}, ErrorKind::InvalidArgument, "destination", "empty"},
           {"prod-main",
            {"8.8.8.0/24", "gateway", ""},
            ErrorKind::InvalidArgument,
            "target_type",
            "\"gateway\""},
           {"prod-main",
            {"8.8.8.0/24", "local", ""},
            ErrorKind::InvalidArgument,
            "target_type",
            "local route cannot be added"},
           {"prod-main",
            {"8.8.8.0/24", "internet_gateway", "ghost"},
            ErrorKind::NotFound,
            "target",
            "route to a missing gateway: internet gateway \"ghost\" not found"},
           {"prod-main",
            {"8.8.8.0/24", "nat_gateway", "ghost"},
            ErrorKind::NotFound,
            "target",
            "route to a missing gateway: nat gateway \"ghost\" not found"},
           {"prod-main",
            {"8.8.8.0/24", "nat_gateway", "igw"},
            ErrorKind::NotFound,
            "target",
            "nat gateway \"igw\" not found"},
           {"prod-main",
            {"8.8.8.0/24", "internet_gateway", ""},
            ErrorKind::InvalidArgument,
            "target",
            "needs the gateway's name"},
           {"prod-main",
            {"8.8.8.0/24", "internet_gateway", "other-igw"},
            ErrorKind::InvalidArgument,
            "target",
            "belongs to vpc \"other\""},
           {"prod-main",
            {"8.8.8.0/24", "nat_gateway", "other-nat"},
            ErrorKind::InvalidArgument,
            "target",
            "belongs to vpc \"other\""},
           {"prod-main",
            {"8.8.8.0/24", "blackhole", "igw"},
            ErrorKind::InvalidArgument,
            "target",
            "blackhole route has no target"},
           {"prod-main",
            {"10.0.1.0/24", "blackhole", ""},
            ErrorKind::InvalidArgument,
            "destination",
            "would shadow the local route"},
           {"prod-main",
            {"10.0.0.0/16", "blackhole", ""},
            ErrorKind::InvalidArgument,
            "destination",
            "inside vpc \"prod\" (10.0.0.0/16)"},
           {"prod-main",
            {"0.0.0.0/0", "blackhole", ""},
            ErrorKind::Conflict,
            "",
            "already has a route to 0.0.0.0/0"},
       }) {
    refused([&] { return t.addRoute(c.table, c.spec); }, c.kind, c.field, c.why);
  }
}

TEST_F(TopologyTest, DeleteRoute) {
  buildProd();
  ok(t.createInternetGateway({"igw", "prod"}, kNow));
  ok(t.addRoute("prod-main", {"0.0.0.0/0", "internet_gateway", "igw"}));
  refused([&] { return t.deleteRoute("prod-main", "10.0.0.0/16"); }, ErrorKind::Conflict, "",
          "local route to 10.0.0.0/16");
  refused([&] { return t.deleteRoute("prod-main", "8.8.8.0/24"); }, ErrorKind::NotFound, "",
          "route table \"prod-main\" has no route to 8.8.8.0/24");
  refused([&] { return t.deleteRoute("prod-main", "0.0.0.1/0"); }, ErrorKind::InvalidArgument, "destination");
  refused([&] { return t.deleteRoute("prod-main", "default"); }, ErrorKind::InvalidArgument, "destination");
  refused([&] { return t.deleteRoute("nope", "0.0.0.0/0"); }, ErrorKind::NotFound, "",
          "route table \"nope\"");
  Changeset changes = ok(t.deleteRoute("prod-main", "0.0.0.0/0"));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::RouteTable, "prod-main"}}));
  EXPECT_EQ(t.findRouteTable("prod-main")->routes.size(), 1u);
}

// ---- Gateways ----

TEST_F(TopologyTest, AtMostOneInternetGatewayPerVpc) {
  buildProd();
  Changeset changes = ok(t.createInternetGateway({"igw", "prod"}, kNow));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::InternetGateway, "igw"}}));
  EXPECT_EQ(t.internetGateway("igw").value()->vpc, "prod");
  refused(
      [&] {
        return t.createInternetGateway({"igw2", "prod"}, kNow);
      },
      ErrorKind::Conflict, "", "vpc \"prod\" already has internet gateway \"igw\"");
  refused(
      [&] {
        return t.createInternetGateway({"igw", "prod"}, kNow);
      },
      ErrorKind::Conflict, "", "internet gateway \"igw\" already exists");
  refused([&] { return t.createInternetGateway({"igw2", "nope"}, kNow); }, ErrorKind::NotFound, "vpc");
  refused([&] { return t.createInternetGateway({"igw2", ""}, kNow); }, ErrorKind::InvalidArgument, "vpc");
  refused([&] { return t.createInternetGateway({"IGW", "prod"}, kNow); }, ErrorKind::InvalidArgument, "name");
  ok(t.createVpc({"other", "10.1.0.0/16"}, kNow));
  ok(t.createInternetGateway({"igw2", "other"}, kNow));
}

TEST_F(TopologyTest, DeleteInternetGatewayRefusedWhileRoutesTargetIt) {
  buildProd();
  ok(t.createInternetGateway({"igw", "prod"}, kNow));
  ok(t.createRouteTable({"public", "prod"}, kNow));
  ok(t.addRoute("public", {"0.0.0.0/0", "internet_gateway", "igw"}));
  refused([&] { return t.deleteInternetGateway("igw"); }, ErrorKind::Conflict, "",
          "internet gateway \"igw\" is still the target of routes: public 0.0.0.0/0");
  refused([&] { return t.deleteInternetGateway("nope"); }, ErrorKind::NotFound, "",
          "internet gateway \"nope\" not found");
  ok(t.deleteRoute("public", "0.0.0.0/0"));
  Changeset changes = ok(t.deleteInternetGateway("igw"));
  EXPECT_EQ(changes.deleted, (std::vector<ObjectRef>{{ObjectKind::InternetGateway, "igw"}}));
}

TEST_F(TopologyTest, NatGatewayLivesInASubnetAndTakesItsVpc) {
  buildProd();
  Changeset changes = ok(t.createNatGateway({"nat", "web"}, kNow));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::NatGateway, "nat"}}));
  const NatGateway* nat = t.natGateway("nat").value();
  EXPECT_EQ(nat->vpc, "prod");
  EXPECT_EQ(nat->subnet, "web");
  refused(
      [&] {
        return t.createNatGateway({"nat2", "ghost"}, kNow);
      },
      ErrorKind::NotFound, "subnet", "subnet \"ghost\" not found");
  refused([&] { return t.createNatGateway({"nat2", ""}, kNow); }, ErrorKind::InvalidArgument, "subnet");
  refused(
      [&] {
        return t.createNatGateway({"nat", "web"}, kNow);
      },
      ErrorKind::Conflict, "", "nat gateway \"nat\" already exists");
  refused([&] { return t.createNatGateway({"nat_2", "web"}, kNow); }, ErrorKind::InvalidArgument, "name");

  ok(t.addRoute("prod-main", {"0.0.0.0/0", "nat_gateway", "nat"}));
  refused([&] { return t.deleteNatGateway("nat"); }, ErrorKind::Conflict, "",
          "nat gateway \"nat\" is still the target of routes: prod-main 0.0.0.0/0");
  refused([&] { return t.deleteNatGateway("nope"); }, ErrorKind::NotFound, "",
          "nat gateway \"nope\" not found");
  ok(t.deleteRoute("prod-main", "0.0.0.0/0"));
  changes = ok(t.deleteNatGateway("nat"));
  EXPECT_EQ(changes.deleted, (std::vector<ObjectRef>{{ObjectKind::NatGateway, "nat"}}));
}

// ---- Control characters ----

// A name or description is printed to terminals: an escape sequence in it could rewrite the screen. Each is
// refused at input, naming the field, and the message quotes it escaped (no raw control goes back either).
TEST_F(TopologyTest, ControlCharactersInNamesAndDescriptionsAreRefusedNamingTheField) {
  buildProd();
  ok(t.createSecurityGroup({"web-sg", "prod", "web servers"}, kNow));
  auto expectClean = [](const Error& error, std::string_view shown) {
    for (char c : error.message()) {
      EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f)
          << "raw control in: " << error.message();
    }
    EXPECT_NE(error.message().find(shown), std::string::npos) << error.message();
  };
  for (auto [text, shown] :
       {std::pair{std::string("a\x1b[2Jb"), "\\x1b"}, std::pair{std::string("a\nb"), "\\x0a"},
        std::pair{std::string("a\x7f"), "\\x7f"}, std::pair{std::string("a\xc2\x9b"), "\\u009b"},
        std::pair{std::string("a\tb"), "\\x09"}, std::pair{std::string(1, '\0'), "\\x00"}}) {
    expectClean(refused(
                    [&] {
                      return t.createVpc({text, "10.9.0.0/16"}, kNow);
                    },
                    ErrorKind::InvalidArgument, "name", "control character"),
                shown);
    expectClean(refused(
                    [&] {
                      return t.createSubnet(
                          {.name = "db", .vpc = "prod", .cidr = "10.0.3.0/24", .availabilityZone = text},
                          kNow);
                    },
                    ErrorKind::InvalidArgument, "availability_zone", "control character"),
                shown);
    expectClean(refused(
                    [&] {
                      return t.createSecurityGroup({"db-sg", "prod", "db " + text}, kNow);
                    },
                    ErrorKind::InvalidArgument, "description", "control character"),
                shown);
    expectClean(refused(
                    [&] {
                      return t.addSecurityGroupRule(
                          "web-sg", {.fromPort = 22, .cidr = "0.0.0.0/0", .description = "ssh " + text});
                    },
                    ErrorKind::InvalidArgument, "description", "control character"),
                shown);
  }
  // Printable text, UTF-8 included, stays allowed in a description.
  ok(t.createSecurityGroup({"db-sg", "prod", "Datenbank (Größe: ~1 GB) -- \"prod\" \\ 100%"}, kNow));
}

// ---- Security groups ----

TEST_F(TopologyTest, NewSecurityGroupAllowsAllOutAndNothingIn) {
  buildProd();
  Changeset changes = ok(t.createSecurityGroup({"web-sg", "prod", "web servers"}, kNow));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::SecurityGroup, "web-sg"}}));
  const SecurityGroup* group = t.securityGroup("web-sg").value();
  EXPECT_EQ(group->description, "web servers");
  EXPECT_FALSE(group->isDefault);
  ASSERT_EQ(group->rules.size(), 1u);
  EXPECT_EQ(group->rules[0].direction, Direction::Egress);
  EXPECT_EQ(group->rules[0].protocol, Protocol::All);
  EXPECT_EQ(group->rules[0].cidr, std::optional<Cidr>(cidr("0.0.0.0/0")));
  EXPECT_FALSE(group->rules[0].ports);

  ok(t.createSecurityGroup({"plain", "prod", ""}, kNow));
  ok(t.createSecurityGroup({"long", "prod", std::string(255, 'd')}, kNow));
  refused(
      [&] {
        return t.createSecurityGroup({"longer", "prod", std::string(256, 'd')}, kNow);
      },
      ErrorKind::InvalidArgument, "description", "256 characters");
  refused(
      [&] {
        return t.createSecurityGroup({"web-sg", "prod", ""}, kNow);
      },
      ErrorKind::Conflict, "", "security group \"web-sg\" already exists");
  refused([&] { return t.createSecurityGroup({"x", "nope", ""}, kNow); }, ErrorKind::NotFound, "vpc");
  refused([&] { return t.createSecurityGroup({"x", "", ""}, kNow); }, ErrorKind::InvalidArgument, "vpc");
  refused(
      [&] {
        return t.createSecurityGroup({"x!", "prod", ""}, kNow);
      },
      ErrorKind::InvalidArgument, "name");
}

TEST_F(TopologyTest, SecurityGroupRulePortsAndPeers) {
  buildProd();
  ok(t.createSecurityGroup({"web-sg", "prod", ""}, kNow));
  ok(t.createSecurityGroup({"db-sg", "prod", ""}, kNow));

  Changeset changes = ok(t.addSecurityGroupRule(
      "db-sg", {.direction = "ingress", .protocol = "tcp", .fromPort = 5432, .peerGroup = "web-sg"}));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::SecurityGroup, "db-sg"}}));
  const SecurityGroupRule& single = t.findSecurityGroup("db-sg")->rules.back();
  EXPECT_EQ(single.ports, (std::optional<PortRange>(PortRange{5432, 5432})))
      << "to_port defaults to from_port";
  EXPECT_EQ(single.peerGroup, std::optional<std::string>("web-sg"));
  EXPECT_FALSE(single.cidr);

  ok(t.addSecurityGroupRule("web-sg", {.direction = "ingress",
                                       .protocol = "tcp",
                                       .fromPort = 8000,
                                       .toPort = 8080,
                                       .cidr = "0.0.0.0/0",
                                       .description = "alt http"}));
  const SecurityGroupRule& range = t.findSecurityGroup("web-sg")->rules.back();
  EXPECT_EQ(range.ports, (std::optional<PortRange>(PortRange{8000, 8080})));
  EXPECT_EQ(range.cidr, std::optional<Cidr>(cidr("0.0.0.0/0")));
  EXPECT_EQ(range.description, "alt http");

  ok(t.addSecurityGroupRule("web-sg", {.direction = "ingress", .protocol = "udp", .cidr = "10.0.0.0/16"}));
  EXPECT_FALSE(t.findSecurityGroup("web-sg")->rules.back().ports) << "no ports = all ports";
  ok(t.addSecurityGroupRule("web-sg", {.direction = "ingress", .protocol = "icmp", .cidr = "10.0.0.0/16"}));
  ok(t.addSecurityGroupRule("web-sg", {.direction = "ingress", .protocol = "all", .peerGroup = "web-sg"}));
  ok(t.addSecurityGroupRule(
      "web-sg",
      {.direction = "ingress", .protocol = "tcp", .fromPort = 1, .toPort = 65535, .cidr = "192.168.0.0/16"}));
  EXPECT_EQ(t.findSecurityGroup("web-sg")->rules.back().protocol, Protocol::Tcp);
}

TEST_F(TopologyTest, AddSecurityGroupRuleRefusesBadInput) {
  buildProd();
  ok(t.createSecurityGroup({"web-sg", "prod", ""}, kNow));
  ok(t.createVpc({"other", "10.1.0.0/16"}, kNow));
  ok(t.addSecurityGroupRule(
      "web-sg", {.direction = "ingress", .protocol = "tcp", .fromPort = 443, .cidr = "0.0.0.0/0"}));
  struct Case {
    SecurityGroupRuleSpec spec;
    ErrorKind kind;
    std::string field;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {{.direction = "in", .cidr = "0.0.0.0/0"}, ErrorKind::InvalidArgument, "direction", "\"in\""},
           {{.protocol = "sctp", .cidr = "0.0.0.0/0"}, ErrorKind::InvalidArgument, "protocol", "\"sctp\""},
           {{.fromPort = 70000, .cidr = "0.0.0.0/0"},
            ErrorKind::InvalidArgument,
            "from_port",
            "port 70000 is out of range 1-65535"},
           {{.fromPort = 0, .cidr = "0.0.0.0/0"},
            ErrorKind::InvalidArgument,
            "from_port",
            "port 0 is out of range"},
           {{.fromPort = -1, .cidr = "0.0.0.0/0"},
            ErrorKind::InvalidArgument,
            "from_port",
            "port -1 is out of range"},
           {{.fromPort = 80, .toPort = 70000, .cidr = "0.0.0.0/0"},
            ErrorKind::InvalidArgument,
            "to_port",
            "port 70000 is out of range 1-65535"},
           {{.fromPort = 90, .toPort = 80, .cidr = "0.0.0.0/0"},
            ErrorKind::InvalidArgument,
            "to_port",
            "90-80 is backwards"},
           {{.toPort = 80, .cidr = "0.0.0.0/0"},
            ErrorKind::InvalidArgument,
            "from_port",
            "without from_port"},
           {{.protocol = "icmp", .fromPort = 8, .cidr = "0.0.0.0/0"},
            ErrorKind::InvalidArgument,
            "from_port",
            "protocol icmp takes no ports"},
           {{.protocol = "all", .toPort = 80, .cidr = "0.0.0.0/0"},
            ErrorKind::InvalidArgument,
            "to_port",
            "protocol all takes no ports"},
           {{.fromPort = 22}, ErrorKind::InvalidArgument, "cidr", "needs a cidr or a peer_group"},
           {{.fromPort = 22, .cidr = "0.0.0.0/0", .peerGroup = "web-sg"},
            ErrorKind::InvalidArgument,
            "cidr",
            "not both"},
           {{.fromPort = 22, .cidr = "10.0.0.1/16"}, ErrorKind::InvalidArgument, "cidr", "host bits"},
           {{.fromPort = 22, .cidr = "anywhere"}, ErrorKind::InvalidArgument, "cidr", "\"anywhere\""},
           {{.fromPort = 22, .peerGroup = "ghost"},
            ErrorKind::NotFound,
            "peer_group",
            "security group \"ghost\" not found"},
           {{.fromPort = 22, .peerGroup = "other-default"},
            ErrorKind::InvalidArgument,
            "peer_group",
            "belongs to vpc \"other\""},
           {{.fromPort = 22, .peerGroup = ""}, ErrorKind::InvalidArgument, "peer_group", "required"},
           {{.fromPort = 22, .cidr = "0.0.0.0/0", .description = std::string(256, 'x')},
            ErrorKind::InvalidArgument,
            "description",
            "at most 255"},
           {{.fromPort = 443, .toPort = 443, .cidr = "0.0.0.0/0", .description = "same rule, other words"},
            ErrorKind::Conflict,
            "",
            "already has this rule (id 2"},
           {{.direction = "egress", .protocol = "all", .cidr = "0.0.0.0/0"},
            ErrorKind::Conflict,
            "",
            "already has this rule (id 1"},
       }) {
    refused([&] { return t.addSecurityGroupRule("web-sg", c.spec); }, c.kind, c.field, c.why);
  }
  refused([&] { return t.addSecurityGroupRule("ghost", {.fromPort = 22, .cidr = "0.0.0.0/0"}); },
          ErrorKind::NotFound, "", "security group \"ghost\" not found");
  // The same rule with another peer or direction is not a duplicate.
  ok(t.addSecurityGroupRule(
      "web-sg", {.direction = "egress", .protocol = "tcp", .fromPort = 443, .cidr = "0.0.0.0/0"}));
  ok(t.addSecurityGroupRule("web-sg", {.protocol = "tcp", .fromPort = 443, .cidr = "10.0.0.0/8"}));
  ok(t.addSecurityGroupRule("web-sg",
                            {.protocol = "tcp", .fromPort = 443, .toPort = 444, .cidr = "0.0.0.0/0"}));
}

TEST_F(TopologyTest, SecurityGroupRuleIdsAreNeverReused) {
  buildProd();
  ok(t.createSecurityGroup({"web-sg", "prod", ""}, kNow));
  ok(t.addSecurityGroupRule("web-sg", {.fromPort = 80, .cidr = "0.0.0.0/0"}));
  ok(t.addSecurityGroupRule("web-sg", {.fromPort = 443, .cidr = "0.0.0.0/0"}));
  const SecurityGroup* group = t.findSecurityGroup("web-sg");
  ASSERT_EQ(group->rules.size(), 3u);
  EXPECT_EQ(group->rules[1].id, 2);
  EXPECT_EQ(group->rules[2].id, 3);

  Changeset changes = ok(t.deleteSecurityGroupRule("web-sg", 3));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::SecurityGroup, "web-sg"}}));
  refused([&] { return t.deleteSecurityGroupRule("web-sg", 3); }, ErrorKind::NotFound, "",
          "security group \"web-sg\" has no rule 3");
  refused([&] { return t.deleteSecurityGroupRule("ghost", 1); }, ErrorKind::NotFound, "",
          "security group \"ghost\" not found");
  ok(t.addSecurityGroupRule("web-sg", {.fromPort = 443, .cidr = "0.0.0.0/0"}));
  EXPECT_EQ(t.findSecurityGroup("web-sg")->rules.back().id, 4);
  EXPECT_EQ(t.findSecurityGroup("web-sg")->nextRuleId, 5);
}

TEST_F(TopologyTest, DeleteSecurityGroupRefusedForDefaultAndWhileReferenced) {
  buildProd();
  ok(t.createSecurityGroup({"web-sg", "prod", ""}, kNow));
  ok(t.createSecurityGroup({"db-sg", "prod", ""}, kNow));
  ok(t.createSecurityGroup({"cache-sg", "prod", ""}, kNow));
  ok(t.addSecurityGroupRule("db-sg", {.fromPort = 5432, .peerGroup = "web-sg"}));
  ok(t.addSecurityGroupRule("cache-sg", {.fromPort = 6379, .peerGroup = "web-sg"}));
  ok(t.addSecurityGroupRule("web-sg", {.protocol = "all", .peerGroup = "web-sg"}));

  refused([&] { return t.deleteSecurityGroup("prod-default"); }, ErrorKind::Conflict, "", "default group");
  refused([&] { return t.deleteSecurityGroup("web-sg"); }, ErrorKind::Conflict, "",
          "security group \"web-sg\" is still referenced as a peer by security groups: cache-sg, db-sg");
  refused([&] { return t.deleteSecurityGroup("ghost"); }, ErrorKind::NotFound, "",
          "security group \"ghost\" not found");

  ok(t.deleteSecurityGroupRule("db-sg", 2));
  ok(t.deleteSecurityGroup("cache-sg"));
  // Referring to itself does not block.
  Changeset changes = ok(t.deleteSecurityGroup("web-sg"));
  EXPECT_EQ(changes.deleted, (std::vector<ObjectRef>{{ObjectKind::SecurityGroup, "web-sg"}}));
  EXPECT_TRUE(t.checkIntegrity());
}

// ---- Network ACLs ----

TEST_F(TopologyTest, NewNetworkAclHasNoRules) {
  buildProd();
  Changeset changes = ok(t.createNetworkAcl({"strict", "prod"}, kNow));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::NetworkAcl, "strict"}}));
  const NetworkAcl* acl = t.networkAcl("strict").value();
  EXPECT_FALSE(acl->isDefault);
  EXPECT_TRUE(acl->rules.empty());
  refused(
      [&] {
        return t.createNetworkAcl({"strict", "prod"}, kNow);
      },
      ErrorKind::Conflict, "", "network acl \"strict\" already exists");
  refused([&] { return t.createNetworkAcl({"x", "ghost"}, kNow); }, ErrorKind::NotFound, "vpc");
  refused([&] { return t.createNetworkAcl({"x", ""}, kNow); }, ErrorKind::InvalidArgument, "vpc");
  refused([&] { return t.createNetworkAcl({"", "prod"}, kNow); }, ErrorKind::InvalidArgument, "name");
}

TEST_F(TopologyTest, NetworkAclRulesAreSortedByDirectionThenNumber) {
  buildProd();
  ok(t.createNetworkAcl({"strict", "prod"}, kNow));
  ok(t.addNetworkAclRule("strict", {.number = 200, .direction = "egress", .cidr = "0.0.0.0/0"}));
  ok(t.addNetworkAclRule(
      "strict",
      {.number = 300, .direction = "ingress", .protocol = "tcp", .fromPort = 443, .cidr = "0.0.0.0/0"}));
  ok(t.addNetworkAclRule("strict", {.number = 100,
                                    .direction = "ingress",
                                    .action = "deny",
                                    .protocol = "tcp",
                                    .fromPort = 1024,
                                    .toPort = 2048,
                                    .cidr = "203.0.113.0/24"}));
  Changeset changes =
      ok(t.addNetworkAclRule("strict", {.number = 100, .direction = "egress", .protocol = "icmp"}));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::NetworkAcl, "strict"}}));
  ok(t.addNetworkAclRule("strict",
                         {.number = 1, .direction = "egress", .protocol = "udp", .cidr = "10.0.0.0/8"}));
  ok(t.addNetworkAclRule("strict", {.number = 32766, .direction = "ingress"}));

  std::vector<std::string> order;
  for (const NetworkAclRule& r : t.findNetworkAcl("strict")->rules) {
    order.push_back(fmt::format("{} {} {} {} {} {}", directionName(r.direction), r.number,
                                ruleActionName(r.action), protocolName(r.protocol), portsText(r.ports),
                                r.cidr.str()));
  }
  EXPECT_EQ(order,
            (Names{"ingress 100 deny tcp 1024-2048 203.0.113.0/24", "ingress 300 allow tcp 443-443 0.0.0.0/0",
                   "ingress 32766 allow all any 0.0.0.0/0", "egress 1 allow udp any 10.0.0.0/8",
                   "egress 100 allow icmp any 0.0.0.0/0", "egress 200 allow all any 0.0.0.0/0"}));
}

TEST_F(TopologyTest, AddNetworkAclRuleRefusesBadInput) {
  buildProd();
  ok(t.createNetworkAcl({"strict", "prod"}, kNow));
  ok(t.addNetworkAclRule("strict", {.number = 100, .direction = "ingress"}));
  struct Case {
    NetworkAclRuleSpec spec;
    ErrorKind kind;
    std::string field;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{
           {{.number = 0}, ErrorKind::InvalidArgument, "number", "rule number 0 is out of range 1-32766"},
           {{.number = 40000},
            ErrorKind::InvalidArgument,
            "number",
            "rule number 40000 is out of range 1-32766"},
           {{.number = 32767}, ErrorKind::InvalidArgument, "number", "out of range"},
           {{.number = -5}, ErrorKind::InvalidArgument, "number", "out of range"},
           {{.number = 110, .direction = "both"}, ErrorKind::InvalidArgument, "direction", "\"both\""},
           {{.number = 110, .action = "reject"}, ErrorKind::InvalidArgument, "action", "\"reject\""},
           {{.number = 110, .protocol = "gre"}, ErrorKind::InvalidArgument, "protocol", "\"gre\""},
           {{.number = 110, .protocol = "tcp", .fromPort = 70000},
            ErrorKind::InvalidArgument,
            "from_port",
            "port 70000 is out of range 1-65535"},
           {{.number = 110, .protocol = "udp", .fromPort = 53, .toPort = 52},
            ErrorKind::InvalidArgument,
            "to_port",
            "backwards"},
           {{.number = 110, .protocol = "all", .fromPort = 53},
            ErrorKind::InvalidArgument,
            "from_port",
            "takes no ports"},
           {{.number = 110, .cidr = "10.0.0.0/33"}, ErrorKind::InvalidArgument, "cidr", "0-32"},
           {{.number = 110, .cidr = ""}, ErrorKind::InvalidArgument, "cidr", "empty"},
           {{.number = 100, .direction = "ingress", .action = "deny"},
            ErrorKind::Conflict,
            "",
            "network acl \"strict\" already has ingress rule 100"},
       }) {
    refused([&] { return t.addNetworkAclRule("strict", c.spec); }, c.kind, c.field, c.why);
  }
  refused([&] { return t.addNetworkAclRule("ghost", {.number = 1}); }, ErrorKind::NotFound, "",
          "network acl \"ghost\" not found");
  ok(t.addNetworkAclRule("strict", {.number = 100, .direction = "egress"}));
}

TEST_F(TopologyTest, DeleteNetworkAclRule) {
  buildProd();
  Changeset changes = ok(t.deleteNetworkAclRule("prod-default", "egress", 100));
  EXPECT_EQ(changes.upserted, (std::vector<ObjectRef>{{ObjectKind::NetworkAcl, "prod-default"}}));
  ASSERT_EQ(t.findNetworkAcl("prod-default")->rules.size(), 1u);
  EXPECT_EQ(t.findNetworkAcl("prod-default")->rules[0].direction, Direction::Ingress);
  refused([&] { return t.deleteNetworkAclRule("prod-default", "egress", 100); }, ErrorKind::NotFound, "",
          "network acl \"prod-default\" has no egress rule 100");
  refused([&] { return t.deleteNetworkAclRule("prod-default", "out", 100); }, ErrorKind::InvalidArgument,
          "direction", "\"out\"");
  refused([&] { return t.deleteNetworkAclRule("ghost", "ingress", 100); }, ErrorKind::NotFound, "",
          "network acl \"ghost\" not found");
}

TEST_F(TopologyTest, DeleteNetworkAclRefusedForDefaultAndWhileUsed) {
  buildProd();
  ok(t.createNetworkAcl({"strict", "prod"}, kNow));
  ok(t.updateSubnet("web", {.networkAcl = "strict"}));
  ok(t.updateSubnet("app", {.networkAcl = "strict"}));
  refused([&] { return t.deleteNetworkAcl("prod-default"); }, ErrorKind::Conflict, "", "default network acl");
  refused([&] { return t.deleteNetworkAcl("strict"); }, ErrorKind::Conflict, "",
          "network acl \"strict\" is still used by subnets: app, web");
  refused([&] { return t.deleteNetworkAcl("ghost"); }, ErrorKind::NotFound, "",
          "network acl \"ghost\" not found");
  ok(t.updateSubnet("web", {.networkAcl = ""}));
  ok(t.updateSubnet("app", {.networkAcl = "prod-default"}));
  Changeset changes = ok(t.deleteNetworkAcl("strict"));
  EXPECT_EQ(changes.deleted, (std::vector<ObjectRef>{{ObjectKind::NetworkAcl, "strict"}}));
}

// ---- Reachability ----

TEST_F(TopologyTest, ReachabilityFollowsTheDefaultRoute) {
  buildProd();
  ok(t.createInternetGateway({"igw", "prod"}, kNow));
  ok(t.createNatGateway({"nat", "web"}, kNow));
  ok(t.createRouteTable({"public", "prod"}, kNow));
  ok(t.createRouteTable({"private", "prod"}, kNow));
  ok(t.addRoute("public", {"0.0.0.0/0", "internet_gateway", "igw"}));
  ok(t.addRoute("private", {"0.0.0.0/0", "nat_gateway", "nat"}));
  ok(t.addRoute("private", {"8.8.8.8/32", "internet_gateway", "igw"}));  // not the default route

  EXPECT_EQ(t.reachability(*t.findSubnet("web")), SubnetReachability::Isolated);
  ok(t.updateSubnet("web", {.routeTable = "public"}));
  ok(t.updateSubnet("app", {.routeTable = "private"}));
  EXPECT_EQ(t.reachability(*t.findSubnet("web")), SubnetReachability::Public);
  EXPECT_EQ(t.reachability(*t.findSubnet("app")), SubnetReachability::PrivateWithNat);

  ok(t.deleteRoute("private", "0.0.0.0/0"));
  EXPECT_EQ(t.reachability(*t.findSubnet("app")), SubnetReachability::Isolated);
  ok(t.addRoute("private", {"0.0.0.0/0", "blackhole", ""}));
  EXPECT_EQ(t.reachability(*t.findSubnet("app")), SubnetReachability::Isolated);
}

// ---- Lookups and listings ----

TEST_F(TopologyTest, LookupsReportNotFoundNamingKindAndName) {
  struct Case {
    std::function<Status()> lookup;
    std::string message;
  };
  std::vector<Case> cases = {
      {[&] { return asStatus(t.vpc("prod")); }, "vpc \"prod\" not found"},
      {[&] { return asStatus(t.subnet("web")); }, "subnet \"web\" not found"},
      {[&] { return asStatus(t.routeTable("rt")); }, "route table \"rt\" not found"},
      {[&] { return asStatus(t.internetGateway("igw")); }, "internet gateway \"igw\" not found"},
      {[&] { return asStatus(t.natGateway("nat")); }, "nat gateway \"nat\" not found"},
      {[&] { return asStatus(t.securityGroup("sg")); }, "security group \"sg\" not found"},
      {[&] { return asStatus(t.networkAcl("acl")); }, "network acl \"acl\" not found"},
  };
  for (const Case& c : cases) {
    Status result = c.lookup();
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind(), ErrorKind::NotFound);
    EXPECT_EQ(result.error().message(), c.message);
  }
  EXPECT_EQ(t.findVpc("prod"), nullptr);
  EXPECT_EQ(t.findSubnet("web"), nullptr);
  EXPECT_EQ(t.findRouteTable("rt"), nullptr);
  EXPECT_EQ(t.findInternetGateway("igw"), nullptr);
  EXPECT_EQ(t.findNatGateway("nat"), nullptr);
  EXPECT_EQ(t.findSecurityGroup("sg"), nullptr);
  EXPECT_EQ(t.findNetworkAcl("acl"), nullptr);
  EXPECT_EQ(t.mainRouteTable("prod"), nullptr);
  EXPECT_EQ(t.defaultNetworkAcl("prod"), nullptr);
  EXPECT_EQ(t.defaultSecurityGroup("prod"), nullptr);
}

TEST_F(TopologyTest, ListingsAreSortedByNameAndFilteredByVpc) {
  ok(t.createVpc({"zeta", "10.0.0.0/16"}, kNow));
  ok(t.createVpc({"alpha", "10.1.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "z2", .vpc = "zeta", .cidr = "10.0.2.0/24"}, kNow));
  ok(t.createSubnet({.name = "a1", .vpc = "alpha", .cidr = "10.1.1.0/24"}, kNow));
  ok(t.createSubnet({.name = "b1", .vpc = "zeta", .cidr = "10.0.1.0/24"}, kNow));
  ok(t.createInternetGateway({"igw-z", "zeta"}, kNow));
  ok(t.createInternetGateway({"igw-a", "alpha"}, kNow));
  ok(t.createNatGateway({"nat", "b1"}, kNow));
  ok(t.createSecurityGroup({"web", "alpha", ""}, kNow));
  ok(t.createNetworkAcl({"strict", "zeta"}, kNow));
  ok(t.createRouteTable({"public", "zeta"}, kNow));

  EXPECT_EQ(namesOf(t.vpcs()), (Names{"alpha", "zeta"}));
  EXPECT_EQ(namesOf(t.subnets()), (Names{"a1", "b1", "z2"}));
  EXPECT_EQ(namesOf(t.subnets("zeta")), (Names{"b1", "z2"}));
  EXPECT_EQ(namesOf(t.subnets("alpha")), (Names{"a1"}));
  EXPECT_TRUE(t.subnets("ghost").empty());
  EXPECT_EQ(namesOf(t.internetGateways()), (Names{"igw-a", "igw-z"}));
  EXPECT_EQ(namesOf(t.internetGateways("zeta")), (Names{"igw-z"}));
  EXPECT_EQ(namesOf(t.natGateways("zeta")), (Names{"nat"}));
  EXPECT_TRUE(t.natGateways("alpha").empty());
  EXPECT_EQ(namesOf(t.securityGroups()), (Names{"alpha-default", "web", "zeta-default"}));
  EXPECT_EQ(namesOf(t.securityGroups("alpha")), (Names{"alpha-default", "web"}));
  EXPECT_EQ(namesOf(t.networkAcls("zeta")), (Names{"strict", "zeta-default"}));
  EXPECT_EQ(namesOf(t.routeTables()), (Names{"alpha-main", "public", "zeta-main"}));
  EXPECT_EQ(namesOf(t.routeTables("zeta")), (Names{"public", "zeta-main"}));
}

// ---- Loading and integrity ----

TEST_F(TopologyTest, InsertedStateRoundTripsAndPassesIntegrity) {
  buildProd();
  ok(t.createInternetGateway({"igw", "prod"}, kNow));
  ok(t.createNatGateway({"nat", "web"}, kNow));
  ok(t.addRoute("prod-main", {"0.0.0.0/0", "internet_gateway", "igw"}));
  ok(t.createSecurityGroup({"db", "prod", "databases"}, kNow));
  ok(t.addSecurityGroupRule("db", {.fromPort = 5432, .peerGroup = "prod-default"}));

  Topology copy;
  for (const Vpc* v : t.vpcs()) copy.insert(*v);
  for (const Subnet* s : t.subnets()) copy.insert(*s);
  for (const RouteTable* r : t.routeTables()) copy.insert(*r);
  for (const InternetGateway* g : t.internetGateways()) copy.insert(*g);
  for (const NatGateway* g : t.natGateways()) copy.insert(*g);
  for (const SecurityGroup* g : t.securityGroups()) copy.insert(*g);
  for (const NetworkAcl* a : t.networkAcls()) copy.insert(*a);
  EXPECT_EQ(dump(copy), dump(t));
  EXPECT_TRUE(copy.checkIntegrity()) << copy.checkIntegrity().error().message();
  // The loaded copy enforces the same rules, including rule ids carrying on.
  ok(copy.addSecurityGroupRule("db", {.fromPort = 6432, .peerGroup = "prod-default"}));
  EXPECT_EQ(copy.findSecurityGroup("db")->rules.back().id, 3);
}

TEST(TopologyIntegrity, ReportsEveryDanglingReference) {
  struct Case {
    std::string name;
    std::function<void(Topology&)> load;
    std::string problem;
  };
  auto vpcWithDefaults = [](Topology& t, const std::string& vpc) {
    t.insert(Vpc{.name = vpc, .cidr = cidr("10.0.0.0/16"), .createdAt = 0});
    t.insert(RouteTable{.name = vpc + "-main", .vpc = vpc, .isMain = true, .routes = {}, .createdAt = 0});
    t.insert(
        NetworkAcl{.name = vpc + "-default", .vpc = vpc, .isDefault = true, .rules = {}, .createdAt = 0});
    t.insert(SecurityGroup{.name = vpc + "-default", .vpc = vpc, .isDefault = true});
  };
  std::vector<Case> cases = {
      {"subnet without vpc",
       [](Topology& t) {
         t.insert(Subnet{.name = "web",
                         .vpc = "ghost",
                         .cidr = cidr("10.0.1.0/24"),
                         .routeTable = "prod-main",
                         .networkAcl = "prod-default"});
       },
       "subnet \"web\" is in vpc \"ghost\", which does not exist"},
      {"subnet without route table",
       [](Topology& t) {
         t.insert(Subnet{.name = "web",
                         .vpc = "prod",
                         .cidr = cidr("10.0.1.0/24"),
                         .routeTable = "gone",
                         .networkAcl = "prod-default"});
       },
       "subnet \"web\" uses route table \"gone\", which does not exist"},
      {"subnet without acl",
       [](Topology& t) {
         t.insert(Subnet{.name = "web",
                         .vpc = "prod",
                         .cidr = cidr("10.0.1.0/24"),
                         .routeTable = "prod-main",
                         .networkAcl = "gone"});
       },
       "subnet \"web\" uses network acl \"gone\", which does not exist"},
      {"route table without vpc", [](Topology& t) { t.insert(RouteTable{.name = "rt", .vpc = "ghost"}); },
       "route table \"rt\" is in vpc \"ghost\""},
      {"internet gateway without vpc",
       [](Topology& t) { t.insert(InternetGateway{.name = "igw", .vpc = "ghost"}); },
       "internet gateway \"igw\" is in vpc \"ghost\""},
      {"nat gateway without subnet",
       [](Topology& t) { t.insert(NatGateway{.name = "nat", .vpc = "prod", .subnet = "gone"}); },
       "nat gateway \"nat\" is in subnet \"gone\", which does not exist"},
      {"nat gateway without vpc",
       [](Topology& t) { t.insert(NatGateway{.name = "nat", .vpc = "ghost", .subnet = "gone"}); },
       "nat gateway \"nat\" is in vpc \"ghost\""},
      {"security group without vpc",
       [](Topology& t) { t.insert(SecurityGroup{.name = "sg", .vpc = "ghost"}); },
       "security group \"sg\" is in vpc \"ghost\""},
      {"network acl without vpc", [](Topology& t) { t.insert(NetworkAcl{.name = "acl", .vpc = "ghost"}); },
       "network acl \"acl\" is in vpc \"ghost\""},
      {"route to a missing internet gateway",
       [](Topology& t) {
         t.insert(
             RouteTable{.name = "rt",
                        .vpc = "prod",
                        .routes = {Route{cidr("0.0.0.0/0"), {RouteTargetType::InternetGateway, "gone"}}}});
       },
       "route table \"rt\" has a route to 0.0.0.0/0 via internet gateway \"gone\", which does not exist"},
      {"route to a missing nat gateway",
       [](Topology& t) {
         t.insert(RouteTable{.name = "rt",
                             .vpc = "prod",
                             .routes = {Route{cidr("0.0.0.0/0"), {RouteTargetType::NatGateway, "gone"}}}});
       },
       "has a route to 0.0.0.0/0 via nat gateway \"gone\""},
      {"peer group missing",
       [](Topology& t) {
         t.insert(SecurityGroup{.name = "sg",
                                .vpc = "prod",
                                .rules = {SecurityGroupRule{.id = 7, .peerGroup = std::string("gone")}}});
       },
       "security group \"sg\" rule 7 peers with security group \"gone\", which does not exist"},
      {"vpc without main table",
       [](Topology& t) {
         t.insert(Vpc{.name = "bare", .cidr = cidr("10.1.0.0/16"), .createdAt = 0});
         t.insert(NetworkAcl{.name = "bare-default", .vpc = "bare", .isDefault = true});
         t.insert(SecurityGroup{.name = "bare-default", .vpc = "bare", .isDefault = true});
       },
       "vpc \"bare\" has no main route table"},
      {"vpc without default acl",
       [](Topology& t) {
         t.insert(Vpc{.name = "bare", .cidr = cidr("10.1.0.0/16"), .createdAt = 0});
         t.insert(RouteTable{.name = "bare-main", .vpc = "bare", .isMain = true});
         t.insert(SecurityGroup{.name = "bare-default", .vpc = "bare", .isDefault = true});
       },
       "vpc \"bare\" has no default network acl"},
      {"vpc without default group",
       [](Topology& t) {
         t.insert(Vpc{.name = "bare", .cidr = cidr("10.1.0.0/16"), .createdAt = 0});
         t.insert(RouteTable{.name = "bare-main", .vpc = "bare", .isMain = true});
         t.insert(NetworkAcl{.name = "bare-default", .vpc = "bare", .isDefault = true});
       },
       "vpc \"bare\" has no default security group"},
  };
  for (const Case& c : cases) {
    Topology t;
    vpcWithDefaults(t, "prod");
    ASSERT_TRUE(t.checkIntegrity()) << c.name << ": " << t.checkIntegrity().error().message();
    c.load(t);
    Status result = t.checkIntegrity();
    ASSERT_FALSE(result) << c.name;
    EXPECT_EQ(result.error().kind(), ErrorKind::Internal) << c.name;
    EXPECT_NE(result.error().message().find(c.problem), std::string::npos)
        << c.name << ": " << result.error().message() << "\n  lacks: " << c.problem;
  }
}

TEST(TopologyIntegrity, InsertSortsRoutesAndRules) {
  Topology t;
  t.insert(RouteTable{.name = "rt",
                      .vpc = "prod",
                      .routes = {Route{cidr("0.0.0.0/0"), {RouteTargetType::Blackhole, ""}},
                                 Route{cidr("10.0.0.0/16"), {RouteTargetType::Local, ""}}}});
  EXPECT_EQ(t.findRouteTable("rt")->routes.front().destination.str(), "10.0.0.0/16");
  t.insert(NetworkAcl{.name = "acl",
                      .vpc = "prod",
                      .rules = {NetworkAclRule{.number = 5, .direction = Direction::Egress},
                                NetworkAclRule{.number = 9, .direction = Direction::Ingress}}});
  EXPECT_EQ(t.findNetworkAcl("acl")->rules.front().number, 9);
}

}  // namespace
}  // namespace corral::net
