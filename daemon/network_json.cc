// The VPC objects as the API shows them: snake_case JSON plus the derived facts a learner would otherwise
// work out by hand (sizes, reserved addresses, reachability, implicit deny). Shapes: docs/api.md.
#include "daemon/network_json.h"

#include <algorithm>
#include <string>

#include "api/api.h"

namespace corral::daemon {
namespace {

using nlohmann::json;

net::Ipv4Address offset(const net::Cidr& cidr, uint32_t by) {
  return net::Ipv4Address(cidr.network().value() + by);
}

json optionalString(const std::optional<std::string>& value) {
  return value ? json(*value) : json(nullptr);
}

// from_port/to_port are null when a rule covers every port (icmp, all, or tcp/udp without ports).
void addPorts(json& out, const std::optional<net::PortRange>& ports) {
  out["from_port"] = ports ? json(ports->from) : json(nullptr);
  out["to_port"] = ports ? json(ports->to) : json(nullptr);
}

json implicitDeny(net::Direction direction) {
  return {{"number", "*"},
          {"direction", net::directionName(direction)},
          {"action", net::ruleActionName(net::RuleAction::Deny)},
          {"protocol", net::protocolName(net::Protocol::All)},
          {"from_port", nullptr},
          {"to_port", nullptr},
          {"cidr", "0.0.0.0/0"}};
}

json routeTableBase(const net::RouteTable& table) {
  json routes = json::array();
  for (const net::Route& route : table.routes) {
    routes.push_back({{"destination", route.destination.str()},
                      {"target_type", net::routeTargetTypeName(route.target.type)},
                      {"target", route.target.name.empty() ? json(nullptr) : json(route.target.name)}});
  }
  return {{"name", table.name},
          {"vpc", table.vpc},
          {"main", table.isMain},
          {"routes", std::move(routes)},
          {"created_at", table.createdAt}};
}

}  // namespace

json toJson(const net::Topology& topology, const net::Vpc& vpc) {
  auto nameOf = [](const auto* object) { return object ? json(object->name) : json(nullptr); };
  json facts = api::cidrJson(vpc.cidr);
  return {{"name", vpc.name},
          {"cidr", vpc.cidr.str()},
          {"created_at", vpc.createdAt},
          {"size", facts["size"]},
          {"private", facts["private"]},
          {"class", facts["class"]},
          {"main_route_table", nameOf(topology.mainRouteTable(vpc.name))},
          {"default_network_acl", nameOf(topology.defaultNetworkAcl(vpc.name))},
          {"default_security_group", nameOf(topology.defaultSecurityGroup(vpc.name))},
          {"subnet_count", topology.subnets(vpc.name).size()}};
}

json toJson(const net::Topology& topology, const net::Subnet& subnet) {
  return {{"name", subnet.name},
          {"vpc", subnet.vpc},
          {"cidr", subnet.cidr.str()},
          {"availability_zone", subnet.availabilityZone},
          {"map_public_ip", subnet.mapPublicIp},
          {"route_table", subnet.routeTable},
          {"network_acl", subnet.networkAcl},
          {"created_at", subnet.createdAt},
          {"size", subnet.cidr.size()},
          {"usable", api::cidrJson(subnet.cidr)["usable_aws"]},
          {"router", offset(subnet.cidr, 1).str()},
          {"dns", offset(subnet.cidr, 2).str()},
          {"reachability", net::subnetReachabilityName(topology.reachability(subnet))}};
}

json toJson(const net::RouteTable& table) {
  return routeTableBase(table);
}

json toJson(const net::Topology& topology, const net::RouteTable& table) {
  json out = routeTableBase(table);
  json subnets = json::array();
  for (const net::Subnet* subnet : topology.subnets(table.vpc)) {
    if (subnet->routeTable == table.name) subnets.push_back(subnet->name);
  }
  out["subnets"] = std::move(subnets);
  return out;
}

json toJson(const net::InternetGateway& gateway) {
  return {{"name", gateway.name}, {"vpc", gateway.vpc}, {"created_at", gateway.createdAt}};
}

json toJson(const net::NatGateway& gateway) {
  return {{"name", gateway.name},
          {"vpc", gateway.vpc},
          {"subnet", gateway.subnet},
          {"created_at", gateway.createdAt}};
}

json toJson(const net::Topology& topology, const net::Peering& peering) {
  auto cidrOf = [&](const std::string& vpc) {
    const net::Vpc* found = topology.findVpc(vpc);
    return found ? json(found->cidr.str()) : json(nullptr);
  };
  return {{"name", peering.name},
          {"vpc", peering.vpc},
          {"peer_vpc", peering.peerVpc},
          {"vpc_cidr", cidrOf(peering.vpc)},
          {"peer_cidr", cidrOf(peering.peerVpc)},
          {"status", "active"},
          {"link", peering.link.str()},
          {"created_at", peering.createdAt}};
}

json toJson(const net::SecurityGroupRule& rule) {
  json out = {{"id", rule.id},
              {"direction", net::directionName(rule.direction)},
              {"protocol", net::protocolName(rule.protocol)},
              {"cidr", rule.cidr ? json(rule.cidr->str()) : json(nullptr)},
              {"peer_group", optionalString(rule.peerGroup)},
              {"description", rule.description}};
  addPorts(out, rule.ports);
  return out;
}

json toJson(const net::SecurityGroup& group) {
  json rules = json::array();
  for (const net::SecurityGroupRule& rule : group.rules) rules.push_back(toJson(rule));
  return {{"name", group.name},         {"vpc", group.vpc},          {"description", group.description},
          {"default", group.isDefault}, {"rules", std::move(rules)}, {"created_at", group.createdAt}};
}

json toJson(const net::NetworkAclRule& rule) {
  json out = {{"number", rule.number},
              {"direction", net::directionName(rule.direction)},
              {"action", net::ruleActionName(rule.action)},
              {"protocol", net::protocolName(rule.protocol)},
              {"cidr", rule.cidr.str()}};
  addPorts(out, rule.ports);
  return out;
}

// Rules in evaluation order (lowest number first, per direction), each direction closed by the implicit
// deny that AWS applies when no numbered rule matched.
json toJson(const net::NetworkAcl& acl) {
  std::vector<const net::NetworkAclRule*> sorted;
  for (const net::NetworkAclRule& rule : acl.rules) sorted.push_back(&rule);
  std::ranges::stable_sort(sorted, [](const auto* a, const auto* b) {
    return std::pair(a->direction, a->number) < std::pair(b->direction, b->number);
  });
  json rules = json::array();
  for (net::Direction direction : {net::Direction::Ingress, net::Direction::Egress}) {
    for (const net::NetworkAclRule* rule : sorted) {
      if (rule->direction == direction) rules.push_back(toJson(*rule));
    }
    rules.push_back(implicitDeny(direction));
  }
  return {{"name", acl.name},
          {"vpc", acl.vpc},
          {"default", acl.isDefault},
          {"rules", std::move(rules)},
          {"created_at", acl.createdAt}};
}

json toJson(const net::ReachPath& path) {
  json hops = json::array();
  for (const net::ReachHop& hop : path.hops) {
    hops.push_back({{"component", hop.component},
                    {"name", hop.name},
                    {"leg", hop.leg},
                    {"passes", hop.passes},
                    {"rule", hop.rule},
                    {"text", hop.text}});
  }
  return {{"source", path.source},
          {"destination", path.destination},
          {"source_address", path.sourceAddress},
          {"destination_address", path.destinationAddress},
          {"reachable", path.reachable},
          {"verdict", path.verdict},
          {"hops", std::move(hops)}};
}

}  // namespace corral::daemon
