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

namespace corral::net {

// VPC and subnet prefixes allowed, as in AWS.
inline constexpr int kMinVpcPrefix = 16;
inline constexpr int kMaxVpcPrefix = 28;
inline constexpr int kMinNaclRuleNumber = 1;
inline constexpr int kMaxNaclRuleNumber = 32766;
inline constexpr size_t kMaxNameLength = 63;

enum class ObjectKind { Vpc, Subnet, RouteTable, InternetGateway, NatGateway, SecurityGroup, NetworkAcl };
std::string_view objectKindName(ObjectKind kind);  // "vpc", "subnet", "route table", ...

enum class Protocol { All, Tcp, Udp, Icmp };
enum class Direction { Ingress, Egress };
enum class RuleAction { Allow, Deny };
enum class RouteTargetType { Local, InternetGateway, NatGateway, Blackhole };

std::string_view protocolName(Protocol p);            // "all", "tcp", "udp", "icmp"
std::string_view directionName(Direction d);          // "ingress", "egress"
std::string_view ruleActionName(RuleAction a);        // "allow", "deny"
std::string_view routeTargetTypeName(RouteTargetType t);  // "local", "internet_gateway", "nat_gateway", "blackhole"
Result<Protocol> parseProtocol(std::string_view text, std::string_view field);
Result<Direction> parseDirection(std::string_view text, std::string_view field);
Result<RuleAction> parseRuleAction(std::string_view text, std::string_view field);
Result<RouteTargetType> parseRouteTargetType(std::string_view text, std::string_view field);

// DNS-label-like: 1-63 of [a-z0-9-], starting with a letter or digit, not ending with '-'.
Status validateName(std::string_view name, std::string_view field = "name");

struct PortRange {
  uint16_t from = 0;
  uint16_t to = 0;
  auto operator<=>(const PortRange&) const = default;
};

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

struct SecurityGroupRule {
  int64_t id = 0;  // unique within its group, never reused
  Direction direction = Direction::Ingress;
  Protocol protocol = Protocol::All;
  std::optional<PortRange> ports;   // tcp/udp only; absent = all ports
  std::optional<Cidr> cidr;         // exactly one of cidr and peerGroup
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
  std::vector<NetworkAclRule> rules;  // sorted by direction, then number; the final implicit deny is not stored
  int64_t createdAt = 0;
};

// ---- Specs (what a request carries: raw values, validated by Topology with the field named) ----

struct VpcSpec {
  std::string name;
  std::string cidr;
};

struct SubnetSpec {
  std::string name;
  std::string vpc;
  std::string cidr;
  std::string availabilityZone = "az1";
  bool mapPublicIp = false;
  std::string routeTable;  // empty: the VPC's main route table
  std::string networkAcl;  // empty: the VPC's default network ACL
};

struct SubnetUpdate {
  std::optional<std::string> routeTable;
  std::optional<std::string> networkAcl;
  std::optional<bool> mapPublicIp;
};

struct RouteTableSpec {
  std::string name;
  std::string vpc;
};

struct RouteSpec {
  std::string destination;
  std::string targetType;  // "internet_gateway", "nat_gateway" or "blackhole"
  std::string targetName;  // the gateway's name; must be empty for blackhole
};

struct InternetGatewaySpec {
  std::string name;
  std::string vpc;
};

struct NatGatewaySpec {
  std::string name;
  std::string subnet;
};

struct SecurityGroupSpec {
  std::string name;
  std::string vpc;
  std::string description;
};

// Ports are wide integers so that 70000 or -1 arrive here and are refused by name, not wrapped.
struct SecurityGroupRuleSpec {
  std::string direction = "ingress";
  std::string protocol = "tcp";
  std::optional<int64_t> fromPort;
  std::optional<int64_t> toPort;
  std::optional<std::string> cidr;
  std::optional<std::string> peerGroup;
  std::string description;
};

struct NetworkAclSpec {
  std::string name;
  std::string vpc;
};

struct NetworkAclRuleSpec {
  int64_t number = 0;
  std::string direction = "ingress";
  std::string action = "allow";
  std::string protocol = "all";
  std::optional<int64_t> fromPort;
  std::optional<int64_t> toPort;
  std::string cidr = "0.0.0.0/0";
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

  // The same lookups, as a NotFound error naming the kind and name.
  Result<const Vpc*> vpc(std::string_view name) const;
  Result<const Subnet*> subnet(std::string_view name) const;
  Result<const RouteTable*> routeTable(std::string_view name) const;
  Result<const InternetGateway*> internetGateway(std::string_view name) const;
  Result<const NatGateway*> natGateway(std::string_view name) const;
  Result<const SecurityGroup*> securityGroup(std::string_view name) const;
  Result<const NetworkAcl*> networkAcl(std::string_view name) const;

  // All objects of a kind sorted by name; `vpc` non-empty filters to one VPC.
  std::vector<const Vpc*> vpcs() const;
  std::vector<const Subnet*> subnets(std::string_view vpc = {}) const;
  std::vector<const RouteTable*> routeTables(std::string_view vpc = {}) const;
  std::vector<const InternetGateway*> internetGateways(std::string_view vpc = {}) const;
  std::vector<const NatGateway*> natGateways(std::string_view vpc = {}) const;
  std::vector<const SecurityGroup*> securityGroups(std::string_view vpc = {}) const;
  std::vector<const NetworkAcl*> networkAcls(std::string_view vpc = {}) const;

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
  Status checkIntegrity() const;

 private:
  std::map<std::string, Vpc, std::less<>> vpcs_;
  std::map<std::string, Subnet, std::less<>> subnets_;
  std::map<std::string, RouteTable, std::less<>> routeTables_;
  std::map<std::string, InternetGateway, std::less<>> internetGateways_;
  std::map<std::string, NatGateway, std::less<>> natGateways_;
  std::map<std::string, SecurityGroup, std::less<>> securityGroups_;
  std::map<std::string, NetworkAcl, std::less<>> networkAcls_;
};

}  // namespace corral::net
