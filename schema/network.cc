// The network vocabulary's names: each enum to and from the text the API and the store use.
#include "schema/network.h"

#include <fmt/format.h>

namespace corral::schema {

std::string_view objectKindName(ObjectKind kind) {
  switch (kind) {
    case ObjectKind::Vpc:
      return "vpc";
    case ObjectKind::Subnet:
      return "subnet";
    case ObjectKind::RouteTable:
      return "route table";
    case ObjectKind::InternetGateway:
      return "internet gateway";
    case ObjectKind::NatGateway:
      return "nat gateway";
    case ObjectKind::SecurityGroup:
      return "security group";
    case ObjectKind::NetworkAcl:
      return "network acl";
    case ObjectKind::Peering:
      return "peering";
  }
  return "object";
}

std::string_view protocolName(Protocol p) {
  switch (p) {
    case Protocol::All:
      return "all";
    case Protocol::Tcp:
      return "tcp";
    case Protocol::Udp:
      return "udp";
    case Protocol::Icmp:
      return "icmp";
  }
  return "all";
}

std::string_view directionName(Direction d) {
  switch (d) {
    case Direction::Ingress:
      return "ingress";
    case Direction::Egress:
      return "egress";
  }
  return "ingress";
}

std::string_view ruleActionName(RuleAction a) {
  switch (a) {
    case RuleAction::Allow:
      return "allow";
    case RuleAction::Deny:
      return "deny";
  }
  return "deny";
}

std::string_view routeTargetTypeName(RouteTargetType t) {
  switch (t) {
    case RouteTargetType::Local:
      return "local";
    case RouteTargetType::InternetGateway:
      return "internet_gateway";
    case RouteTargetType::NatGateway:
      return "nat_gateway";
    case RouteTargetType::Blackhole:
      return "blackhole";
    case RouteTargetType::Peering:
      return "peering";
  }
  return "blackhole";
}

Result<Protocol> parseProtocol(std::string_view text, std::string_view field) {
  for (Protocol p : {Protocol::All, Protocol::Tcp, Protocol::Udp, Protocol::Icmp}) {
    if (text == protocolName(p)) return p;
  }
  return fail(
      invalidField(std::string(field), "\"{}\" is not a protocol (expected all, tcp, udp or icmp)", text));
}

Result<Direction> parseDirection(std::string_view text, std::string_view field) {
  for (Direction d : {Direction::Ingress, Direction::Egress}) {
    if (text == directionName(d)) return d;
  }
  return fail(
      invalidField(std::string(field), "\"{}\" is not a direction (expected ingress or egress)", text));
}

Result<RuleAction> parseRuleAction(std::string_view text, std::string_view field) {
  for (RuleAction a : {RuleAction::Allow, RuleAction::Deny}) {
    if (text == ruleActionName(a)) return a;
  }
  return fail(invalidField(std::string(field), "\"{}\" is not a rule action (expected allow or deny)", text));
}

Result<RouteTargetType> parseRouteTargetType(std::string_view text, std::string_view field) {
  for (RouteTargetType t :
       {RouteTargetType::Local, RouteTargetType::InternetGateway, RouteTargetType::NatGateway,
        RouteTargetType::Blackhole, RouteTargetType::Peering}) {
    if (text == routeTargetTypeName(t)) return t;
  }
  return fail(invalidField(
      std::string(field),
      "\"{}\" is not a route target type (expected internet_gateway, nat_gateway, peering or blackhole)",
      text));
}

}  // namespace corral::schema
