// The VPC model: VPCs, subnets, route tables, gateways, security groups and network ACLs with AWS's
// rules. Pure: no kernel, no I/O. Every mutation validates against the whole topology and reports which
// objects it touched, so the daemon can persist exactly those in one transaction.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "net/cidr.h"
#include "schema/names.h"
#include "schema/network.h"

namespace corral::net {

// The model speaks the schema's vocabulary (schema/network.h, schema/names.h, schema/cidr.h).
using schema::Direction;
using schema::directionName;
using schema::InternetGatewaySpec;
using schema::kMaxNameLength;
using schema::NatGatewaySpec;
using schema::NetworkAclRuleSpec;
using schema::NetworkAclSpec;
using schema::ObjectKind;
using schema::objectKindName;
using schema::parseDirection;
using schema::parseProtocol;
using schema::parseRouteTargetType;
using schema::parseRuleAction;
using schema::PeeringSpec;
using schema::PortRange;
using schema::Protocol;
using schema::protocolName;
using schema::RouteSpec;
using schema::RouteTableSpec;
using schema::RouteTargetType;
using schema::routeTargetTypeName;
using schema::RuleAction;
using schema::ruleActionName;
using schema::SecurityGroupRuleSpec;
using schema::SecurityGroupSpec;
using schema::SubnetSpec;
using schema::SubnetUpdate;
using schema::validateName;
using schema::VpcSpec;

// VPC and subnet prefixes allowed, as in AWS.
inline constexpr int kMinVpcPrefix = 16;
inline constexpr int kMaxVpcPrefix = 28;
inline constexpr int kMinNaclRuleNumber = 1;
inline constexpr int kMaxNaclRuleNumber = 32766;

// ---- Objects (validated; what the store persists and the API shows) ----

struct Vpc {
  std::string name;
  Cidr cidr;
  int64_t createdAt = 0;  // unix seconds
};

struct Subnet {
  std::string name;
  std::string vpc;
  Cidr cidr;
  std::string availabilityZone;
  bool mapPublicIp = false;  // instances get a public (1:1 NAT) address by default: AWS's MapPublicIpOnLaunch
  std::string routeTable;
  std::string networkAcl;
  int64_t createdAt = 0;
};

struct RouteTarget {
  RouteTargetType type = RouteTargetType::Local;
  std::string name;  // the gateway's name; empty for local and blackhole
  auto operator<=>(const RouteTarget&) const = default;
};

struct Route {
  Cidr destination;
  RouteTarget target;
};

struct RouteTable {
  std::string name;
  std::string vpc;
  bool isMain = false;
  std::vector<Route> routes;  // sorted: longest prefix first, then by address; always holds the local route
  int64_t createdAt = 0;
};

struct InternetGateway {
  std::string name;
  std::string vpc;
  int64_t createdAt = 0;
};

struct NatGateway {
  std::string name;
  std::string vpc;
  std::string subnet;
  int64_t createdAt = 0;
};

// Each VPC peering gets a /30 of this link-local block for the veth pair between the two VPC routers:
// .1 on the VPC side, .2 on the peer VPC side (169.254.169.254, the metadata address, lies outside it).
inline constexpr std::string_view kPeeringLinkPool = "169.254.248.0/22";

// A VPC peering connection (AWS's pcx), active from creation: both VPCs see it and may route to each
// other through it. Not transitive: traffic of a third VPC never crosses it.
struct Peering {
  std::string name;
  std::string vpc;      // the requester side
  std::string peerVpc;  // the accepter side
  Cidr link;            // its /30 of kPeeringLinkPool, chosen at creation and kept
  int64_t createdAt = 0;
  // The other side, seen from `side` (one of vpc, peerVpc).
  const std::string& otherSide(std::string_view side) const { return side == vpc ? peerVpc : vpc; }
  bool joins(std::string_view side) const { return side == vpc || side == peerVpc; }
};

struct SecurityGroupRule {
  int64_t id = 0;  // unique within its group, never reused
  Direction direction = Direction::Ingress;
  Protocol protocol = Protocol::All;
  std::optional<PortRange> ports;  // tcp/udp only; absent = all ports
  std::optional<Cidr> cidr;        // exactly one of cidr and peerGroup
  std::optional<std::string> peerGroup;
  std::string description;
};

struct SecurityGroup {
  std::string name;
  std::string vpc;
  std::string description;
  bool isDefault = false;
  std::vector<SecurityGroupRule> rules;  // by id
  int64_t nextRuleId = 1;
  int64_t createdAt = 0;
};

struct NetworkAclRule {
  int number = 0;
  Direction direction = Direction::Ingress;
  RuleAction action = RuleAction::Allow;
  Protocol protocol = Protocol::All;
  std::optional<PortRange> ports;
  Cidr cidr;
};

struct NetworkAcl {
  std::string name;
  std::string vpc;
  bool isDefault = false;
  std::vector<NetworkAclRule>
      rules;  // sorted by direction, then number; the final implicit deny is not stored
  int64_t createdAt = 0;
};

// ---- Changes ----

struct ObjectRef {
  ObjectKind kind;
  std::string name;
  auto operator<=>(const ObjectRef&) const = default;
};

// What one mutation touched: objects to write (with their child rows) and objects to remove.
struct Changeset {
  std::vector<ObjectRef> upserted;
  std::vector<ObjectRef> deleted;
};

// How a subnet reaches the outside, derived from its route table's default route.
enum class SubnetReachability { Public, PrivateWithNat, Isolated };
std::string_view subnetReachabilityName(SubnetReachability r);  // "public", "private (NAT)", "isolated"

class Topology {
 public:
  // Creating a VPC also creates its main route table "<vpc>-main" (with the local route), its default
  // network ACL "<vpc>-default" (rule 100 allows all, both directions) and its default security group
  // "<vpc>-default" (members may talk to each other; all outbound allowed).
  Result<Changeset> createVpc(const VpcSpec& spec, int64_t now);
  // Refused while the VPC holds anything but its main table, default ACL and default group.
  Result<Changeset> deleteVpc(std::string_view name);

  Result<Changeset> createSubnet(const SubnetSpec& spec, int64_t now);
  Result<Changeset> updateSubnet(std::string_view name, const SubnetUpdate& update);
  Result<Changeset> deleteSubnet(std::string_view name);

  Result<Changeset> createRouteTable(const RouteTableSpec& spec, int64_t now);
  Result<Changeset> deleteRouteTable(std::string_view name);
  Result<Changeset> addRoute(std::string_view table, const RouteSpec& spec);
  Result<Changeset> deleteRoute(std::string_view table, std::string_view destination);

  Result<Changeset> createInternetGateway(const InternetGatewaySpec& spec, int64_t now);
  Result<Changeset> deleteInternetGateway(std::string_view name);
  Result<Changeset> createNatGateway(const NatGatewaySpec& spec, int64_t now);
  Result<Changeset> deleteNatGateway(std::string_view name);

  // Refused for a VPC peered with itself, overlapping CIDRs, and a pair of VPCs already peered.
  Result<Changeset> createPeering(const PeeringSpec& spec, int64_t now);
  // Refused while a route targets it or a security group rule of one side names a group of the other.
  Result<Changeset> deletePeering(std::string_view name);

  Result<Changeset> createSecurityGroup(const SecurityGroupSpec& spec, int64_t now);
  Result<Changeset> deleteSecurityGroup(std::string_view name);
  // On success the new rule is the group's last rule.
  Result<Changeset> addSecurityGroupRule(std::string_view group, const SecurityGroupRuleSpec& spec);
  Result<Changeset> deleteSecurityGroupRule(std::string_view group, int64_t ruleId);

  Result<Changeset> createNetworkAcl(const NetworkAclSpec& spec, int64_t now);
  Result<Changeset> deleteNetworkAcl(std::string_view name);
  Result<Changeset> addNetworkAclRule(std::string_view acl, const NetworkAclRuleSpec& spec);
  Result<Changeset> deleteNetworkAclRule(std::string_view acl, std::string_view direction, int64_t number);

  // Lookups: nullptr when absent.
  const Vpc* findVpc(std::string_view name) const;
  const Subnet* findSubnet(std::string_view name) const;
  const RouteTable* findRouteTable(std::string_view name) const;
  const InternetGateway* findInternetGateway(std::string_view name) const;
  const NatGateway* findNatGateway(std::string_view name) const;
  const SecurityGroup* findSecurityGroup(std::string_view name) const;
  const NetworkAcl* findNetworkAcl(std::string_view name) const;
  const Peering* findPeering(std::string_view name) const;
  // The peering joining these two VPCs (either order), if any.
  const Peering* peeringBetween(std::string_view a, std::string_view b) const;

  // The same lookups, as a NotFound error naming the kind and name.
  Result<const Vpc*> vpc(std::string_view name) const;
  Result<const Subnet*> subnet(std::string_view name) const;
  Result<const RouteTable*> routeTable(std::string_view name) const;
  Result<const InternetGateway*> internetGateway(std::string_view name) const;
  Result<const NatGateway*> natGateway(std::string_view name) const;
  Result<const SecurityGroup*> securityGroup(std::string_view name) const;
  Result<const NetworkAcl*> networkAcl(std::string_view name) const;
  Result<const Peering*> peering(std::string_view name) const;

  // All objects of a kind sorted by name; `vpc` non-empty filters to one VPC.
  std::vector<const Vpc*> vpcs() const;
  std::vector<const Subnet*> subnets(std::string_view vpc = {}) const;
  std::vector<const RouteTable*> routeTables(std::string_view vpc = {}) const;
  std::vector<const InternetGateway*> internetGateways(std::string_view vpc = {}) const;
  std::vector<const NatGateway*> natGateways(std::string_view vpc = {}) const;
  std::vector<const SecurityGroup*> securityGroups(std::string_view vpc = {}) const;
  std::vector<const NetworkAcl*> networkAcls(std::string_view vpc = {}) const;
  // `vpc` non-empty: the peerings it is a side of.
  std::vector<const Peering*> peerings(std::string_view vpc = {}) const;

  const RouteTable* mainRouteTable(std::string_view vpc) const;
  const NetworkAcl* defaultNetworkAcl(std::string_view vpc) const;
  const SecurityGroup* defaultSecurityGroup(std::string_view vpc) const;
  SubnetReachability reachability(const Subnet& subnet) const;

  // Loading persisted state: inserts without validation (the store wrote only validated objects);
  // checkIntegrity() afterwards reports any reference that does not resolve.
  void insert(Vpc v);
  void insert(Subnet s);
  void insert(RouteTable t);
  void insert(InternetGateway g);
  void insert(NatGateway g);
  void insert(SecurityGroup g);
  void insert(NetworkAcl a);
  void insert(Peering p);
  Status checkIntegrity() const;

 private:
  std::map<std::string, Vpc, std::less<>> vpcs_;
  std::map<std::string, Subnet, std::less<>> subnets_;
  std::map<std::string, RouteTable, std::less<>> routeTables_;
  std::map<std::string, InternetGateway, std::less<>> internetGateways_;
  std::map<std::string, NatGateway, std::less<>> natGateways_;
  std::map<std::string, SecurityGroup, std::less<>> securityGroups_;
  std::map<std::string, NetworkAcl, std::less<>> networkAcls_;
  std::map<std::string, Peering, std::less<>> peerings_;
};

}  // namespace corral::net
