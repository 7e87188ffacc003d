// The network vocabulary a request carries: object kinds, rule enums with their names, and the spec of each
// VPC object (raw values: the VPC model (net/vpc.h) validates them against the whole topology, naming the
// field). Pure and shared by corrald, the CLI and the API codec.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"

namespace corral::schema {

enum class ObjectKind {
  Vpc,
  Subnet,
  RouteTable,
  InternetGateway,
  NatGateway,
  SecurityGroup,
  NetworkAcl,
  Peering
};
std::string_view objectKindName(ObjectKind kind);  // "vpc", "subnet", "route table", ..., "peering"

enum class Protocol { All, Tcp, Udp, Icmp };
enum class Direction { Ingress, Egress };
enum class RuleAction { Allow, Deny };
enum class RouteTargetType { Local, InternetGateway, NatGateway, Blackhole, Peering };

std::string_view protocolName(Protocol p);      // "all", "tcp", "udp", "icmp"
std::string_view directionName(Direction d);    // "ingress", "egress"
std::string_view ruleActionName(RuleAction a);  // "allow", "deny"
std::string_view routeTargetTypeName(
    RouteTargetType t);  // "local", "internet_gateway", "nat_gateway", "blackhole", "peering"
Result<Protocol> parseProtocol(std::string_view text, std::string_view field);
Result<Direction> parseDirection(std::string_view text, std::string_view field);
Result<RuleAction> parseRuleAction(std::string_view text, std::string_view field);
Result<RouteTargetType> parseRouteTargetType(std::string_view text, std::string_view field);

struct PortRange {
  uint16_t from = 0;
  uint16_t to = 0;
  auto operator<=>(const PortRange&) const = default;
};

struct VpcSpec {
  std::string name;
  std::string cidr;
  bool operator==(const VpcSpec&) const = default;
};

struct SubnetSpec {
  std::string name;
  std::string vpc;
  std::string cidr;
  std::string availabilityZone = "az1";
  bool mapPublicIp = false;
  std::string routeTable;  // empty: the VPC's main route table
  std::string networkAcl;  // empty: the VPC's default network ACL
  bool operator==(const SubnetSpec&) const = default;
};

struct SubnetUpdate {
  std::optional<std::string> routeTable;
  std::optional<std::string> networkAcl;
  std::optional<bool> mapPublicIp;
  bool operator==(const SubnetUpdate&) const = default;
};

struct RouteTableSpec {
  std::string name;
  std::string vpc;
  bool operator==(const RouteTableSpec&) const = default;
};

struct RouteSpec {
  std::string destination;
  std::string targetType;  // "internet_gateway", "nat_gateway", "peering" or "blackhole"
  std::string targetName;  // the gateway's or peering's name; must be empty for blackhole
  bool operator==(const RouteSpec&) const = default;
};

struct InternetGatewaySpec {
  std::string name;
  std::string vpc;
  bool operator==(const InternetGatewaySpec&) const = default;
};

struct NatGatewaySpec {
  std::string name;
  std::string subnet;
  bool operator==(const NatGatewaySpec&) const = default;
};

// A VPC peering connection between two VPCs (AWS's pcx), accepted both ways when created.
struct PeeringSpec {
  std::string name;
  std::string vpc;
  std::string peerVpc;
  bool operator==(const PeeringSpec&) const = default;
};

struct SecurityGroupSpec {
  std::string name;
  std::string vpc;
  std::string description;
  bool operator==(const SecurityGroupSpec&) const = default;
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
  bool operator==(const SecurityGroupRuleSpec&) const = default;
};

struct NetworkAclSpec {
  std::string name;
  std::string vpc;
  bool operator==(const NetworkAclSpec&) const = default;
};

struct NetworkAclRuleSpec {
  int64_t number = 0;
  std::string direction = "ingress";
  std::string action = "allow";
  std::string protocol = "all";
  std::optional<int64_t> fromPort;
  std::optional<int64_t> toPort;
  std::string cidr = "0.0.0.0/0";
  bool operator==(const NetworkAclRuleSpec&) const = default;
};

}  // namespace corral::schema
