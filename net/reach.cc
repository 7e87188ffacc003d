// The reachability analyzer (net/reach.h): walks one path through the model hop by hop, deciding each hop
// as the kernel's ruleset (net/nft.cc) and routing (net/datapath.cc) would.
#include "net/reach.h"

#include <fmt/format.h>

#include <algorithm>

namespace corral::net {
namespace {

struct Endpoint {
  bool internet = false;
  Ipv4Address address;
  std::string label;                         // "web-1 (10.0.1.5)"
  const NicAttachment* nic = nullptr;        // instances only
  const Subnet* subnet = nullptr;            // instances only
  std::vector<const SecurityGroup*> groups;  // the NIC's groups as the kernel applies them, by name
  bool byPublicAddress = false;              // named by its public address (a destination from outside)
};

std::vector<const SecurityGroup*> groupsOf(const Topology& topology, const NicAttachment& nic,
                                           std::string_view vpc) {
  std::vector<const SecurityGroup*> groups;
  if (nic.securityGroups.empty()) {
    if (const SecurityGroup* group = topology.defaultSecurityGroup(vpc)) groups.push_back(group);
  }
  for (const std::string& name : nic.securityGroups) {
    const SecurityGroup* group = topology.findSecurityGroup(name);
    if (group != nullptr && group->vpc == vpc) groups.push_back(group);
  }
  std::sort(groups.begin(), groups.end(),
            [](const SecurityGroup* a, const SecurityGroup* b) { return a->name < b->name; });
  groups.erase(std::unique(groups.begin(), groups.end()), groups.end());
  return groups;
}

std::optional<Endpoint> instanceEndpoint(const Topology& topology, const NicAttachment& nic) {
  const Subnet* subnet = topology.findSubnet(nic.subnet);
  auto address = Ipv4Address::parse(nic.address);
  if (subnet == nullptr || !address) return std::nullopt;
  return Endpoint{.internet = false,
                  .address = *address,
                  .label = fmt::format("{} ({})", nic.instance, nic.address),
                  .nic = &nic,
                  .subnet = subnet,
                  .groups = groupsOf(topology, nic, subnet->vpc),
                  .byPublicAddress = false};
}

Endpoint internetEndpoint(Ipv4Address address) {
  return Endpoint{.internet = true,
                  .address = address,
                  .label = fmt::format("internet ({})", address.str()),
                  .nic = nullptr,
                  .subnet = nullptr,
                  .groups = {},
                  .byPublicAddress = false};
}

Error unknownEndpoint(std::string_view field, std::string message) {
  return Error(ErrorKind::NotFound, std::move(message), std::string(field));
}

// One argument of the query as endpoints: a subnet (first, as `corral trace` reads names) stands for each of
// its instances; then an instance, "internet", an address.
Result<std::vector<Endpoint>> resolveEndpoints(const Topology& topology,
                                               const std::vector<NicAttachment>& nics,
                                               const std::string& text, std::string_view field) {
  std::vector<Endpoint> endpoints;
  if (text.empty())
    return fail(invalidField(std::string(field),
                             "{} is empty: name an instance, a subnet, an "
                             "address or \"internet\"",
                             field));
  if (const Subnet* subnet = topology.findSubnet(text)) {
    for (const NicAttachment& nic : nics) {
      if (nic.subnet != subnet->name) continue;
      if (auto endpoint = instanceEndpoint(topology, nic)) endpoints.push_back(std::move(*endpoint));
    }
    if (endpoints.empty()) {
      return fail(invalidField(std::string(field),
                               "{}: subnet {} has no instances; name an instance or an address instead",
                               field, text));
    }
    std::sort(endpoints.begin(), endpoints.end(),
              [](const Endpoint& a, const Endpoint& b) { return a.nic->instance < b.nic->instance; });
    return endpoints;
  }
  for (const NicAttachment& nic : nics) {
    if (nic.instance != text) continue;
    auto endpoint = instanceEndpoint(topology, nic);
    if (!endpoint) {
      return fail(unknownEndpoint(
          field, fmt::format("{}: instance {} has no NIC in an existing subnet", field, text)));
    }
    endpoints.push_back(std::move(*endpoint));
    return endpoints;
  }
  if (text == "internet") {
    endpoints.push_back(internetEndpoint(*Ipv4Address::parse(kInternetStandIn)));
    return endpoints;
  }
  auto address = Ipv4Address::parse(text, field);
  if (!address) {
    return fail(unknownEndpoint(
        field, fmt::format("{}: \"{}\" is no instance with a NIC, no subnet, no address and not \"internet\"",
                           field, text)));
  }
  for (const NicAttachment& nic : nics) {
    const bool own = nic.address == address->str();
    const bool published = nic.publicAddress && *nic.publicAddress == address->str();
    if (!own && !published) continue;
    auto endpoint = instanceEndpoint(topology, nic);
    if (!endpoint) continue;
    endpoint->byPublicAddress = published;
    endpoints.push_back(std::move(*endpoint));
    return endpoints;
  }
  for (const Vpc* vpc : topology.vpcs()) {
    if (vpc->cidr.contains(*address)) {
      return fail(unknownEndpoint(
          field,
          fmt::format("{}: no instance has address {} in VPC {} (and the port guards drop traffic from "
                      "addresses no NIC owns)",
                      field, address->str(), vpc->name)));
    }
  }
  endpoints.push_back(internetEndpoint(*address));
  return endpoints;
}

std::string portsText(const std::optional<PortRange>& ports) {
  if (!ports || (ports->from == 0 && ports->to == 65535)) return "all ports";
  if (ports->from == ports->to) return fmt::format("port {}", ports->from);
  return fmt::format("ports {}-{}", ports->from, ports->to);
}

// "tcp/443", "udp/53", "icmp"
std::string trafficText(Protocol protocol, std::optional<uint16_t> port) {
  if (protocol == Protocol::Icmp || !port) return std::string(protocolName(protocol));
  return fmt::format("{}/{}", protocolName(protocol), *port);
}

// Whether a rule of `protocol` (with `ports`) matches a packet of `packet` to `port`, as protocolMatch in
// net/nft.cc renders it: "all" matches everything, tcp/udp without ports the whole protocol.
bool protocolMatches(Protocol rule, const std::optional<PortRange>& ports, Protocol packet,
                     std::optional<uint16_t> port) {
  if (rule == Protocol::All) return true;
  if (rule != packet) return false;
  if (rule == Protocol::Icmp || !ports || !port) return true;
  return ports->from <= *port && *port <= ports->to;
}

std::optional<SecurityGroupMatch> groupsAllow(const Topology& topology,
                                              const std::vector<const SecurityGroup*>& groups,
                                              Direction direction, const Endpoint& peer, Protocol protocol,
                                              std::optional<uint16_t> port) {
  return securityGroupAllows(topology, groups, direction, peer.address, peer.groups, protocol, port);
}

std::string groupNames(const std::vector<const SecurityGroup*>& groups) {
  if (groups.empty()) return "(none)";
  std::string names;
  for (const SecurityGroup* group : groups) names += (names.empty() ? "" : ", ") + group->name;
  return names;
}

}  // namespace

std::string securityGroupRuleText(const SecurityGroupRule& rule) {
  const std::string peer =
      rule.cidr ? rule.cidr->str() : fmt::format("group {}", rule.peerGroup.value_or("?"));
  const std::string what = rule.protocol == Protocol::All ? std::string("all traffic")
                           : rule.protocol == Protocol::Icmp
                               ? std::string("icmp")
                               : fmt::format("{} {}", protocolName(rule.protocol), portsText(rule.ports));
  return fmt::format("{} {} {}", what, rule.direction == Direction::Ingress ? "from" : "to", peer);
}

namespace {

// A network ACL's decision for packets to/from `peer` of `protocol` over a range of destination ports: the
// range cut where the deciding rule changes. `rule` null: the implicit deny.
struct AclPiece {
  PortRange ports;
  const NetworkAclRule* rule = nullptr;
  bool allows() const { return rule != nullptr && rule->action == RuleAction::Allow; }
};
std::vector<AclPiece> aclDecides(const NetworkAcl& acl, Direction direction, Ipv4Address peer,
                                 Protocol protocol, PortRange ports) {
  std::vector<const NetworkAclRule*> rules;
  for (const NetworkAclRule& rule : acl.rules) {
    if (rule.direction == direction) rules.push_back(&rule);
  }
  std::sort(rules.begin(), rules.end(),
            [](const NetworkAclRule* a, const NetworkAclRule* b) { return a->number < b->number; });
  std::vector<AclPiece> decided;
  std::vector<PortRange> open{ports};
  for (const NetworkAclRule* rule : rules) {
    if (open.empty()) break;
    if (!rule->cidr.contains(peer)) continue;
    if (rule->protocol != Protocol::All && rule->protocol != protocol) continue;
    const bool wholeProtocol = rule->protocol == Protocol::All || protocol == Protocol::Icmp || !rule->ports;
    std::vector<PortRange> left;
    for (const PortRange& range : open) {
      if (wholeProtocol) {
        decided.push_back(AclPiece{range, rule});
        continue;
      }
      const uint16_t from = std::max(range.from, rule->ports->from);
      const uint16_t to = std::min(range.to, rule->ports->to);
      if (from > to) {
        left.push_back(range);
        continue;
      }
      decided.push_back(AclPiece{PortRange{from, to}, rule});
      if (range.from < from) left.push_back(PortRange{range.from, static_cast<uint16_t>(from - 1)});
      if (to < range.to) left.push_back(PortRange{static_cast<uint16_t>(to + 1), range.to});
    }
    open = std::move(left);
  }
  for (const PortRange& range : open) decided.push_back(AclPiece{range, nullptr});
  std::sort(decided.begin(), decided.end(),
            [](const AclPiece& a, const AclPiece& b) { return a.ports.from < b.ports.from; });
  return decided;
}

std::string aclRuleText(const NetworkAclRule& rule) {
  const std::string what = rule.protocol == Protocol::All ? std::string("all traffic")
                           : rule.protocol == Protocol::Icmp
                               ? std::string("icmp")
                               : fmt::format("{} {}", protocolName(rule.protocol), portsText(rule.ports));
  return fmt::format("{} {} {} {}", ruleActionName(rule.action), what,
                     rule.direction == Direction::Ingress ? "from" : "to", rule.cidr.str());
}

ReachHop hopAt(std::string component, std::string name, std::string leg) {
  return ReachHop{.component = std::move(component),
                  .name = std::move(name),
                  .leg = std::move(leg),
                  .passes = true,
                  .rule = {},
                  .text = {}};
}

// One destination port as a range; ICMP has none (the range is then not looked at).
PortRange portRange(std::optional<uint16_t> port) {
  return port ? PortRange{*port, *port} : PortRange{0, 0};
}

class PathWalker {
 public:
  PathWalker(const Topology& topology, const ReachQuery& query, const Endpoint& source,
             const Endpoint& destination)
      : topology_(topology), query_(query), source_(source), destination_(destination) {
    path_.source = source.label;
    path_.destination = destination.label;
    path_.sourceAddress = source.address.str();
    path_.destinationAddress = destination.address.str();
    if (source.nic != nullptr) path_.sourceInstance = source.nic->instance;
    if (destination.nic != nullptr) path_.destinationInstance = destination.nic->instance;
  }

  ReachPath walk() {
    if (!source_.internet && !destination_.internet) {
      if (source_.subnet->vpc == destination_.subnet->vpc) {
        insideVpc();
      } else {
        betweenVpcs();
      }
    } else if (!source_.internet) {
      toInternet();
    } else {
      fromInternet();
    }
    if (path_.reachable) {
      path_.verdict =
          fmt::format("reachable: {} from {} arrives at {}{}", trafficText(query_.protocol, query_.port),
                      source_.label, destination_.label,
                      query_.protocol == Protocol::Udp ? " (one way: a reply is a datagram of its own)" : "");
    }
    return std::move(path_);
  }

 private:
  bool needsReplies() const { return query_.protocol != Protocol::Udp; }

  void pass(ReachHop hop) {
    hop.passes = true;
    path_.hops.push_back(std::move(hop));
  }
  // Records the blocking hop and the verdict; the walk stops there.
  void block(ReachHop hop) {
    hop.passes = false;
    path_.verdict = fmt::format("blocked by {} {}{}{}: {}", hop.component, hop.name,
                                hop.leg.empty() ? "" : " (" + hop.leg + ")",
                                hop.rule.empty() ? "" : ", " + hop.rule, hop.text);
    path_.hops.push_back(std::move(hop));
    path_.reachable = false;
  }
  void arrive() {
    pass(ReachHop{.component = "instance",
                  .name = destination_.nic->instance,
                  .leg = "",
                  .passes = true,
                  .rule = "",
                  .text = fmt::format("{} arrives at {}", trafficText(query_.protocol, deliveredPort_),
                                      destination_.label)});
    path_.reachable = true;
  }

  void start() {
    pass(ReachHop{.component = "instance",
                  .name = source_.nic->instance,
                  .leg = "",
                  .passes = true,
                  .rule = "",
                  .text = fmt::format("{} sends {} to {} from its NIC on floor (subnet) {}", source_.label,
                                      trafficText(query_.protocol, query_.port), destination_.address.str(),
                                      source_.subnet->name)});
  }

  // The source NIC's groups, for a new connection.
  bool groupsOut(const Endpoint& to) {
    auto allowed =
        groupsAllow(topology_, source_.groups, Direction::Egress, to, query_.protocol, query_.port);
    ReachHop hop = hopAt("security group", groupNames(source_.groups), "out");
    if (!allowed) {
      hop.rule = "no allow rule";
      hop.text = fmt::format(
          "no outbound rule of {} allows {} to {}; a security group only allows, and what "
          "no rule allows is dropped",
          groupNames(source_.groups), trafficText(query_.protocol, query_.port), to.address.str());
      block(std::move(hop));
      return false;
    }
    hop.rule = fmt::format("{} rule {}", allowed->group->name, allowed->rule->id);
    hop.text = fmt::format(
        "{} rule {} ({}) allows the new connection out; being stateful, the group lets its "
        "replies back in without a rule",
        allowed->group->name, allowed->rule->id, securityGroupRuleText(*allowed->rule));
    pass(std::move(hop));
    return true;
  }

  // The destination NIC's groups, for a new connection from `from` to port `port`.
  bool groupsIn(const Endpoint& from, std::optional<uint16_t> port) {
    auto allowed =
        groupsAllow(topology_, destination_.groups, Direction::Ingress, from, query_.protocol, port);
    ReachHop hop = hopAt("security group", groupNames(destination_.groups), "in");
    if (!allowed) {
      hop.rule = "no allow rule";
      hop.text = fmt::format("no inbound rule of {} allows {} from {}", groupNames(destination_.groups),
                             trafficText(query_.protocol, port), from.address.str());
      block(std::move(hop));
      return false;
    }
    hop.rule = fmt::format("{} rule {}", allowed->group->name, allowed->rule->id);
    hop.text = fmt::format("{} rule {} ({}) allows it in", allowed->group->name, allowed->rule->id,
                           securityGroupRuleText(*allowed->rule));
    pass(std::move(hop));
    return true;
  }

  // Subnet `subnet`'s network ACL in `direction` for packets to/from `peer` with destination ports `ports`
  // (one port for a new connection, the ephemeral range for replies; ignored for ICMP).
  bool acl(const Subnet& subnet, Direction direction, Ipv4Address peer, PortRange ports, bool replies) {
    const NetworkAcl* found = topology_.findNetworkAcl(subnet.networkAcl);
    const std::string leg = replies ? "return" : (direction == Direction::Egress ? "out" : "in");
    ReachHop hop = hopAt("network ACL", subnet.networkAcl, leg);
    const std::string crossing = fmt::format(
        "{} floor (subnet) {}", direction == Direction::Egress ? "leaving" : "entering", subnet.name);
    if (found == nullptr) {  // the kernel has no chain for it: nothing checks
      hop.text = fmt::format("{}: subnet {} names no existing network ACL", crossing, subnet.name);
      pass(std::move(hop));
      return true;
    }
    const bool l4 = query_.protocol != Protocol::Icmp;
    const PortRange range = ports;
    std::vector<AclPiece> pieces = aclDecides(*found, direction, peer, query_.protocol, range);
    const std::string what =
        replies ? fmt::format("the replies ({} to the client's {}{})", protocolName(query_.protocol),
                              l4 ? "ephemeral ports " : "",
                              l4 ? fmt::format("{}-{}", range.from, range.to) : "echo")
                : trafficText(query_.protocol, l4 ? std::optional<uint16_t>(range.from) : std::nullopt);
    const std::string peerWords =
        fmt::format("{} {}", direction == Direction::Egress ? "to" : "from", peer.str());
    for (const AclPiece& piece : pieces) {
      if (piece.allows()) continue;
      const std::string part =
          l4 && pieces.size() > 1 ? fmt::format(" (ports {}-{})", piece.ports.from, piece.ports.to) : "";
      if (piece.rule == nullptr) {
        hop.rule = "implicit deny";
        hop.text = fmt::format(
            "{}: no {} rule matches {}{} {}, so the implicit deny drops it; a network ACL is "
            "stateless{}",
            crossing, directionName(direction), what, part, peerWords,
            replies ? ", so the replies need their own allow rule" : "");
      } else {
        hop.rule = fmt::format("rule {}", piece.rule->number);
        hop.text =
            fmt::format("{}: {} rule {} ({}) denies {}{} {}{}", crossing, directionName(direction),
                        piece.rule->number, aclRuleText(*piece.rule), what, part, peerWords,
                        replies ? "; a network ACL is stateless: replies are checked like any packet" : "");
      }
      block(std::move(hop));
      return false;
    }
    std::vector<int> numbers;
    for (const AclPiece& piece : pieces) {
      if (std::find(numbers.begin(), numbers.end(), piece.rule->number) == numbers.end())
        numbers.push_back(piece.rule->number);
    }
    std::string list;
    for (int number : numbers) list += fmt::format("{}{}", list.empty() ? "" : ", ", number);
    hop.rule = fmt::format("rule{} {}", numbers.size() == 1 ? "" : "s", list);
    hop.text =
        fmt::format("{}: {} rule{} {} allow{} {} {}", crossing, directionName(direction),
                    numbers.size() == 1 ? "" : "s", list, numbers.size() == 1 ? "s" : "", what, peerWords);
    pass(std::move(hop));
    return true;
  }

  // A route table's route (the kernel's copy of it: routes to gateways that do not exist are left out)
  // for `to`, a destination outside the VPC; null when none.
  const Route* routeOutside(const RouteTable& table, Ipv4Address to) const {
    const Vpc* vpc = topology_.findVpc(table.vpc);
    const InternetGateway* internetGateway = nullptr;
    for (const InternetGateway* gateway : topology_.internetGateways(table.vpc)) {
      internetGateway = gateway;  // the plan uses the first by name
      break;
    }
    const Route* best = nullptr;
    for (const Route& route : table.routes) {
      if (route.target.type == RouteTargetType::Local) continue;
      if (!route.destination.contains(to)) continue;
      if (vpc != nullptr && vpc->cidr.contains(route.destination)) continue;  // the local rule wins there
      if (route.target.type == RouteTargetType::InternetGateway &&
          (internetGateway == nullptr || internetGateway->name != route.target.name))
        continue;
      if (route.target.type == RouteTargetType::NatGateway) {
        const NatGateway* nat = topology_.findNatGateway(route.target.name);
        if (internetGateway == nullptr || nat == nullptr || nat->vpc != table.vpc) continue;
      }
      if (route.target.type == RouteTargetType::Peering) {
        const Peering* peering = topology_.findPeering(route.target.name);
        if (peering == nullptr || !peering->joins(table.vpc)) continue;
      }
      if (best == nullptr || route.destination.prefix() > best->destination.prefix()) best = &route;
    }
    return best;
  }

  // The subnet's route table towards `to` outside the VPC; the route used, or null after blocking.
  const Route* routeOut(const Subnet& subnet, Ipv4Address to, bool replies) {
    ReachHop hop = hopAt("route table", subnet.routeTable, replies ? "return" : "out");
    const RouteTable* table = topology_.findRouteTable(subnet.routeTable);
    const Route* route = table != nullptr ? routeOutside(*table, to) : nullptr;
    if (route == nullptr) {
      hop.rule = "no route";
      hop.text = fmt::format(
          "no route to {}: route table {} of subnet {} has no route (nor 0.0.0.0/0) towards a "
          "gateway that exists; a private subnet has no route to the internet",
          to.str(), subnet.routeTable, subnet.name);
      block(std::move(hop));
      return nullptr;
    }
    hop.rule = fmt::format(
        "route {} -> {}", route->destination.str(),
        route->target.name.empty() ? routeTargetTypeName(route->target.type) : route->target.name);
    if (route->target.type == RouteTargetType::Blackhole) {
      hop.text =
          fmt::format("route {} is a blackhole: the router drops what it matches", route->destination.str());
      block(std::move(hop));
      return nullptr;
    }
    hop.text =
        fmt::format("the router looks up {} in route table {} of subnet {}: route {} leads to {} {}",
                    to.str(), subnet.routeTable, subnet.name, route->destination.str(),
                    route->target.type == RouteTargetType::NatGateway ? "NAT gateway" : "internet gateway",
                    route->target.name);
    pass(std::move(hop));
    return route;
  }

  void router(std::string text) {
    pass(ReachHop{.component = "router",
                  .name = source_.internet ? destination_.subnet->vpc : source_.subnet->vpc,
                  .leg = "",
                  .passes = true,
                  .rule = "",
                  .text = std::move(text)});
  }

  // Replies of TCP and ICMP between two subnets of one VPC: the destination's ACL out, the source's ACL in.
  bool repliesInside() {
    if (!needsReplies() || source_.subnet->name == destination_.subnet->name) return true;
    const PortRange ephemeral = kEphemeralPorts;
    return acl(*destination_.subnet, Direction::Egress, source_.address, ephemeral, true) &&
           acl(*source_.subnet, Direction::Ingress, destination_.address, ephemeral, true);
  }

  void insideVpc() {
    deliveredPort_ = query_.port;
    start();
    if (!groupsOut(destination_)) return;
    const PortRange port = portRange(query_.port);
    if (source_.subnet->name == destination_.subnet->name) {
      pass(ReachHop{
          .component = "switch",
          .name = source_.subnet->name,
          .leg = "",
          .passes = true,
          .rule = "",
          .text = fmt::format("same floor: subnet {}'s switch (its bridge) hands the frame to {} by MAC "
                              "address; no router, so no network ACL and no route table",
                              source_.subnet->name, destination_.nic->instance)});
    } else {
      if (!acl(*source_.subnet, Direction::Egress, destination_.address, port, false)) return;
      const Vpc* vpc = topology_.findVpc(source_.subnet->vpc);
      pass(ReachHop{.component = "route table",
                    .name = source_.subnet->routeTable,
                    .leg = "out",
                    .passes = true,
                    .rule = fmt::format("local {}", vpc != nullptr ? vpc->cidr.str() : "?"),
                    .text = fmt::format("{} is inside VPC {}: the local route ({}) leads to floor {}",
                                        destination_.address.str(), source_.subnet->vpc,
                                        vpc != nullptr ? vpc->cidr.str() : "?", destination_.subnet->name)});
      router(fmt::format("the router (the VPC's namespace) forwards from floor {} to floor {}",
                         source_.subnet->name, destination_.subnet->name));
      if (!acl(*destination_.subnet, Direction::Ingress, source_.address, port, false)) return;
    }
    if (!groupsIn(source_, query_.port)) return;
    if (!repliesInside()) return;
    arrive();
  }

  void betweenVpcs() {
    deliveredPort_ = query_.port;
    start();
    const Subnet& from = *source_.subnet;
    const Subnet& to = *destination_.subnet;
    const Peering* peering = topology_.peeringBetween(from.vpc, to.vpc);
    if (peering == nullptr) {
      std::string text = fmt::format(
          "{} is a private address in VPC {}, another building: no peering joins VPC {} and VPC {}, and "
          "the internet does not route private addresses",
          destination_.address.str(), to.vpc, from.vpc, to.vpc);
      if (!topology_.peerings(from.vpc).empty() && !topology_.peerings(to.vpc).empty())
        text += " (peering is not transitive: two peerings through a third VPC do not join them)";
      block(ReachHop{.component = "route table",
                     .name = from.routeTable,
                     .leg = "out",
                     .passes = false,
                     .rule = "no peering",
                     .text = std::move(text)});
      return;
    }
    if (!groupsOut(destination_)) return;
    const PortRange port = portRange(query_.port);
    if (!acl(from, Direction::Egress, destination_.address, port, false)) return;
    if (!routeToPeer(from, destination_.address, *peering, false)) return;
    pass(ReachHop{
        .component = "router",
        .name = from.vpc,
        .leg = "",
        .passes = true,
        .rule = "",
        .text = fmt::format("the router of VPC {} sends it through peering {}", from.vpc, peering->name)});
    pass(ReachHop{.component = "peering",
                  .name = peering->name,
                  .leg = "",
                  .passes = true,
                  .rule = "",
                  .text = fmt::format("the corridor between VPC {} and VPC {} ({}) carries it to VPC {}'s "
                                      "router, which hands it only to its own floors (not transitive)",
                                      peering->vpc, peering->peerVpc, peering->link.str(), to.vpc)});
    pass(ReachHop{.component = "router",
                  .name = to.vpc,
                  .leg = "",
                  .passes = true,
                  .rule = "",
                  .text = fmt::format("the router of VPC {} forwards it to floor {}", to.vpc, to.name)});
    if (!acl(to, Direction::Ingress, source_.address, port, false)) return;
    if (!groupsIn(source_, query_.port)) return;
    if (needsReplies()) {
      const PortRange ephemeral = kEphemeralPorts;
      if (!acl(to, Direction::Egress, source_.address, ephemeral, true)) return;
      if (!routeToPeer(to, source_.address, *peering, true)) return;
      if (!acl(from, Direction::Ingress, destination_.address, ephemeral, true)) return;
    }
    arrive();
  }

  // `subnet`'s route table must send `to` (in the peer VPC) through `peering`: the way there, or for
  // `replies` the way back (traffic flows only where both sides route to each other).
  bool routeToPeer(const Subnet& subnet, Ipv4Address to, const Peering& peering, bool replies) {
    ReachHop hop = hopAt("route table", subnet.routeTable, replies ? "return" : "out");
    const RouteTable* table = topology_.findRouteTable(subnet.routeTable);
    const Route* route = table != nullptr ? routeOutside(*table, to) : nullptr;
    const std::string peer = peering.otherSide(subnet.vpc);
    if (route == nullptr || route->target.type != RouteTargetType::Peering ||
        route->target.name != peering.name) {
      hop.rule = route == nullptr
                     ? std::string("no route")
                     : fmt::format("route {} -> {}", route->destination.str(),
                                   route->target.name.empty() ? routeTargetTypeName(route->target.type)
                                                              : std::string_view(route->target.name));
      hop.text = fmt::format(
          "route table {} of subnet {} has no route to {} through peering {}{}: {}", subnet.routeTable,
          subnet.name, to.str(), peering.name,
          route == nullptr ? ""
                           : fmt::format(" (its best match, {}, leads elsewhere)", route->destination.str()),
          replies ? fmt::format("the replies cannot go back to VPC {}; a peering carries traffic only where "
                                "both sides route to each other",
                                peer)
                  : fmt::format("add one: corral rtb route add {} --destination <VPC {}'s CIDR> --peering {}",
                                subnet.routeTable, peer, peering.name));
      block(std::move(hop));
      return false;
    }
    hop.rule = fmt::format("route {} -> {}", route->destination.str(), peering.name);
    hop.text = fmt::format(
        "the router looks up {} in route table {} of subnet {}: route {} leads through "
        "peering {} to VPC {}",
        to.str(), subnet.routeTable, subnet.name, route->destination.str(), peering.name, peer);
    pass(std::move(hop));
    return true;
  }

  const InternetGateway* internetGatewayOf(std::string_view vpc) const {
    auto gateways = topology_.internetGateways(vpc);
    return gateways.empty() ? nullptr : gateways.front();
  }

  void toInternet() {
    deliveredPort_ = query_.port;
    start();
    if (!groupsOut(destination_)) return;
    const Subnet& subnet = *source_.subnet;
    const PortRange port = portRange(query_.port);
    if (!acl(subnet, Direction::Egress, destination_.address, port, false)) return;
    const Route* route = routeOut(subnet, destination_.address, false);
    if (route == nullptr) return;
    const InternetGateway* gateway = internetGatewayOf(subnet.vpc);
    const SubnetReachability reachability = topology_.reachability(subnet);
    if (reachability == SubnetReachability::Isolated) {
      block(ReachHop{
          .component = "internet gateway",
          .name = gateway != nullptr ? gateway->name : "",
          .leg = "out",
          .passes = false,
          .rule = "isolated subnet",
          .text = fmt::format("subnet {} is isolated (its route table sends 0.0.0.0/0 to no gateway): "
                              "the front door lets none of its traffic out",
                              subnet.name)});
      return;
    }
    router(
        fmt::format("the router sends it to the {} (the building's front door)",
                    route->target.type == RouteTargetType::NatGateway ? "NAT gateway" : "internet gateway"));
    const bool publicAddress = source_.nic->publicAddress && reachability == SubnetReachability::Public;
    if (route->target.type == RouteTargetType::NatGateway) {
      pass(ReachHop{.component = "NAT gateway",
                    .name = route->target.name,
                    .leg = "out",
                    .passes = true,
                    .rule = "",
                    .text = fmt::format("source {} is translated to the gateway's outside address; only "
                                        "replies come back in",
                                        source_.address.str())});
    }
    pass(ReachHop{.component = "internet gateway",
                  .name = gateway != nullptr ? gateway->name : "",
                  .leg = "out",
                  .passes = true,
                  .rule = publicAddress ? "1:1 NAT" : "masquerade",
                  .text = publicAddress ? fmt::format("source {} becomes its public address {} (1:1 NAT)",
                                                      source_.address.str(), *source_.nic->publicAddress)
                                        : fmt::format("source {} becomes the gateway's outside address",
                                                      source_.address.str())});
    if (needsReplies()) {
      const PortRange ephemeral = kEphemeralPorts;
      if (!acl(subnet, Direction::Ingress, destination_.address, ephemeral, true)) return;
    }
    path_.reachable = true;
    pass(
        ReachHop{.component = "internet",
                 .name = destination_.address.str(),
                 .leg = "",
                 .passes = true,
                 .rule = "",
                 .text = fmt::format("{} arrives at {} through the uplink",
                                     trafficText(query_.protocol, query_.port), destination_.address.str())});
  }

  void fromInternet() {
    const Subnet& subnet = *destination_.subnet;
    pass(ReachHop{.component = "internet",
                  .name = source_.address.str(),
                  .leg = "",
                  .passes = true,
                  .rule = "",
                  .text = fmt::format("{} sends {} towards {}", source_.address.str(),
                                      trafficText(query_.protocol, query_.port), destination_.label)});
    const InternetGateway* gateway = internetGatewayOf(subnet.vpc);
    ReachHop door = hopAt("internet gateway", gateway != nullptr ? gateway->name : "", "in");
    if (gateway == nullptr) {
      door.rule = "no internet gateway";
      door.text = fmt::format("VPC {} has no internet gateway: the building has no front door", subnet.vpc);
      block(std::move(door));
      return;
    }
    const SubnetReachability reachability = topology_.reachability(subnet);
    const NicAttachment& nic = *destination_.nic;
    std::optional<PortForward> published;
    if (!destination_.byPublicAddress && query_.port && query_.protocol != Protocol::Icmp) {
      for (const PortForward& forward : nic.publish) {
        if (forward.protocol == query_.protocol && forward.outsidePort == *query_.port) published = forward;
      }
    }
    bool checkGroups = true;
    if (published) {
      if (reachability == SubnetReachability::Isolated) {
        door.rule = fmt::format("publish {}", portForwardText(*published));
        door.text = fmt::format(
            "{} publishes {} but subnet {} has no route to the internet gateway, so the "
            "publish is unused",
            nic.instance, portForwardText(*published), subnet.name);
        block(std::move(door));
        return;
      }
      deliveredPort_ = published->instancePort;
      door.rule = fmt::format("publish {}", portForwardText(*published));
      door.text = fmt::format(
          "the gateway's outside address, port {}, is forwarded to {}:{}; publishing a port is "
          "its allow rule (as docker -p), so the security groups are not asked",
          published->outsidePort, nic.address, published->instancePort);
      checkGroups = false;
    } else if (nic.publicAddress && reachability == SubnetReachability::Public) {
      deliveredPort_ = query_.port;
      door.rule = "1:1 NAT";
      door.text =
          fmt::format("public address {} is translated to {} (1:1 NAT)", *nic.publicAddress, nic.address);
    } else {
      if (nic.publicAddress) {
        door.rule = "public address unused";
        door.text = fmt::format(
            "{}'s public address {} is unused: subnet {} is not public (its 0.0.0.0/0 does not "
            "lead to the internet gateway)",
            nic.instance, *nic.publicAddress, subnet.name);
      } else if (reachability == SubnetReachability::PrivateWithNat) {
        door.component = "NAT gateway";
        door.name = natGatewayOf(subnet);
        door.rule = "unsolicited inbound";
        door.text = fmt::format(
            "the NAT gateway refuses unsolicited inbound: {} has no public address and publishes "
            "nothing on {}",
            nic.instance, trafficText(query_.protocol, query_.port));
      } else {
        door.rule = "unsolicited inbound";
        door.text = fmt::format(
            "{} has no public address and publishes nothing on {}: the front door drops "
            "unsolicited inbound",
            nic.instance, trafficText(query_.protocol, query_.port));
      }
      block(std::move(door));
      return;
    }
    pass(std::move(door));
    router(fmt::format("the router forwards it to floor {}", subnet.name));
    const PortRange port = portRange(deliveredPort_);
    if (!acl(subnet, Direction::Ingress, source_.address, port, false)) return;
    if (checkGroups && !groupsIn(source_, deliveredPort_)) return;
    if (needsReplies()) {
      const PortRange ephemeral = kEphemeralPorts;
      if (!acl(subnet, Direction::Egress, source_.address, ephemeral, true)) return;
      if (routeOut(subnet, source_.address, true) == nullptr) return;
    }
    arrive();
  }

  std::string natGatewayOf(const Subnet& subnet) const {
    const RouteTable* table = topology_.findRouteTable(subnet.routeTable);
    if (table == nullptr) return {};
    for (const Route& route : table->routes) {
      if (route.target.type == RouteTargetType::NatGateway && route.destination.prefix() == 0)
        return route.target.name;
    }
    return {};
  }

  const Topology& topology_;
  const ReachQuery& query_;
  const Endpoint& source_;
  const Endpoint& destination_;
  std::optional<uint16_t> deliveredPort_;  // the port at the destination (a published port's instance port)
  ReachPath path_;
};

}  // namespace

Result<ReachQuery> makeReachQuery(std::string source, std::string destination, std::string_view protocol,
                                  std::optional<int64_t> port) {
  ReachQuery query;
  query.source = std::move(source);
  query.destination = std::move(destination);
  auto parsed = parseProtocol(protocol, "protocol");
  if (!parsed) return fail(parsed.error());
  if (*parsed == Protocol::All) {
    return fail(invalidField("protocol",
                             "protocol must be tcp, udp or icmp, not \"{}\": a probe is one packet "
                             "of one protocol",
                             protocol));
  }
  query.protocol = *parsed;
  if (query.protocol == Protocol::Icmp) {
    if (port) return fail(invalidField("port", "port is for tcp and udp only; icmp (ping) has no ports"));
    return query;
  }
  if (!port) return fail(invalidField("port", "{} needs a port (1-65535)", protocol));
  if (*port < 1 || *port > 65535) return fail(invalidField("port", "port must be 1-65535, got {}", *port));
  query.port = static_cast<uint16_t>(*port);
  return query;
}

Result<std::vector<ReachPath>> analyzeReach(const Topology& topology, const std::vector<NicAttachment>& nics,
                                            const ReachQuery& query) {
  auto sources = resolveEndpoints(topology, nics, query.source, "source");
  if (!sources) return fail(sources.error());
  auto destinations = resolveEndpoints(topology, nics, query.destination, "destination");
  if (!destinations) return fail(destinations.error());
  std::vector<ReachPath> paths;
  for (const Endpoint& source : *sources) {
    for (const Endpoint& destination : *destinations) {
      if (source.internet && destination.internet) {
        return fail(invalidField("destination",
                                 "source and destination are both outside every VPC: name an "
                                 "instance, a subnet or an instance's address on one side"));
      }
      if (source.nic != nullptr && source.nic == destination.nic) {
        if (sources->size() > 1 || destinations->size() > 1) continue;  // a subnet to itself: the others
        return fail(invalidField("destination", "destination is the source itself ({})", source.label));
      }
      if (source.byPublicAddress) {
        return fail(invalidField("source", "source {} is a public address: name the instance {} instead",
                                 query.source, source.nic->instance));
      }
      if (!source.internet && destination.byPublicAddress) {
        return fail(invalidField("destination",
                                 "destination {} is {}'s public address: from inside a VPC name the instance "
                                 "(the way out and back in through the front door is not analyzed)",
                                 query.destination, destination.nic->instance));
      }
      paths.push_back(PathWalker(topology, query, source, destination).walk());
    }
  }
  if (paths.empty()) {
    return fail(invalidField("destination", "subnet {} holds only the source: no other instance to reach",
                             query.destination));
  }
  return paths;
}

std::vector<const SecurityGroup*> nicSecurityGroups(const Topology& topology, const NicAttachment& nic) {
  const Subnet* subnet = topology.findSubnet(nic.subnet);
  if (subnet == nullptr) return {};
  return groupsOf(topology, nic, subnet->vpc);
}

std::optional<SecurityGroupMatch> securityGroupAllows(const Topology& topology,
                                                      const std::vector<const SecurityGroup*>& groups,
                                                      Direction direction, Ipv4Address peerAddress,
                                                      const std::vector<const SecurityGroup*>& peerGroups,
                                                      Protocol protocol, std::optional<uint16_t> port) {
  for (const SecurityGroup* group : groups) {
    for (const SecurityGroupRule& rule : group->rules) {
      if (rule.direction != direction) continue;
      if (!protocolMatches(rule.protocol, rule.ports, protocol, port)) continue;
      bool peerMatches = false;
      if (rule.cidr) {
        peerMatches = rule.cidr->contains(peerAddress);
      } else if (rule.peerGroup) {
        peerMatches = std::any_of(peerGroups.begin(), peerGroups.end(), [&](const SecurityGroup* member) {
          return member->name == *rule.peerGroup &&
                 (member->vpc == group->vpc || topology.peeringBetween(member->vpc, group->vpc) != nullptr);
        });
      }
      if (peerMatches) return SecurityGroupMatch{group, &rule};
    }
  }
  return std::nullopt;
}

const NetworkAclRule* networkAclDecides(const NetworkAcl& acl, Direction direction, Ipv4Address peer,
                                        Protocol protocol, std::optional<uint16_t> port) {
  // One port is one piece: the rule that decides it (null: the implicit deny).
  const std::vector<AclPiece> pieces = aclDecides(acl, direction, peer, protocol, portRange(port));
  return pieces.empty() ? nullptr : pieces.front().rule;
}

std::vector<FlowAllowingRule> flowAllowedBy(const Topology& topology,
                                            const std::function<const NicAttachment*(uint32_t)>& nicAt,
                                            const AcceptedConnection& connection) {
  Protocol protocol = Protocol::All;
  switch (connection.original.protocol) {
    case 1:
      protocol = Protocol::Icmp;
      break;
    case 6:
      protocol = Protocol::Tcp;
      break;
    case 17:
      protocol = Protocol::Udp;
      break;
    default:
      return {};  // the model's rules name no other protocol but "all": nothing to say per protocol
  }
  const bool ports = protocol != Protocol::Icmp;
  // The client as it sent; the server as it answered (its real address, after any DNAT).
  struct End {
    Ipv4Address address;
    uint16_t port = 0;
    const NicAttachment* nic = nullptr;
    const Subnet* subnet = nullptr;
    std::vector<const SecurityGroup*> groups;
  };
  auto endAt = [&](uint32_t address, uint16_t port) {
    End end{.address = Ipv4Address(address),
            .port = port,
            .nic = nicAt(address),
            .subnet = nullptr,
            .groups = {}};
    if (end.nic != nullptr) {
      end.subnet = topology.findSubnet(end.nic->subnet);
      end.groups = nicSecurityGroups(topology, *end.nic);
    }
    if (end.subnet == nullptr) end.nic = nullptr;
    return end;
  };
  const End client = endAt(connection.original.source, connection.original.sourcePort);
  const End server = endAt(connection.reply.source, connection.reply.sourcePort);
  const std::optional<uint16_t> serverPort = ports ? std::optional<uint16_t>(server.port) : std::nullopt;

  // Reached through a published port (DNAT to the gateway's outside address, not to a public address)?
  std::optional<PortForward> published;
  if (server.nic != nullptr && ports && connection.original.destination != server.address.value()) {
    std::optional<Ipv4Address> publicAddress;
    if (server.nic->publicAddress) {
      if (auto parsed = Ipv4Address::parse(*server.nic->publicAddress)) publicAddress = *parsed;
    }
    if (!publicAddress || publicAddress->value() != connection.original.destination) {
      for (const PortForward& forward : server.nic->publish) {
        if (forward.protocol == protocol && forward.outsidePort == connection.original.destinationPort &&
            forward.instancePort == server.port)
          published = forward;
      }
    }
  }

  std::vector<FlowAllowingRule> rules;
  auto group = [&](const End& self, Direction direction, const End& peer) {
    auto match = securityGroupAllows(topology, self.groups, direction, peer.address, peer.groups, protocol,
                                     serverPort);
    if (!match) return;
    rules.push_back(FlowAllowingRule{.kind = FlowAllowingRule::Kind::SecurityGroup,
                                     .ingress = direction == Direction::Ingress,
                                     .name = match->group->name,
                                     .rule = match->rule->id,
                                     .matches = securityGroupRuleText(*match->rule),
                                     .reply = connection.replies});
  };
  // A network ACL guards its subnet's boundary only: packets leaving for, or entering from, elsewhere.
  auto acl = [&](const Subnet& subnet, Direction direction, const End& peer, std::optional<uint16_t> port) {
    const NetworkAcl* found = topology.findNetworkAcl(subnet.networkAcl);
    if (found == nullptr) return;
    const NetworkAclRule* rule = networkAclDecides(*found, direction, peer.address, protocol, port);
    if (rule == nullptr || rule->action != RuleAction::Allow) return;
    rules.push_back(FlowAllowingRule{.kind = FlowAllowingRule::Kind::NetworkAcl,
                                     .ingress = direction == Direction::Ingress,
                                     .name = found->name,
                                     .rule = rule->number,
                                     .matches = {},
                                     .reply = false});
  };
  // The record's packets: the client's, or the server's replies to the client's port.
  const End& from = connection.replies ? server : client;
  const End& to = connection.replies ? client : server;
  const std::optional<uint16_t> toPort = ports ? std::optional<uint16_t>(to.port) : std::nullopt;
  const bool sameSubnet =
      from.subnet != nullptr && to.subnet != nullptr && from.subnet->name == to.subnet->name;

  if (client.nic != nullptr) group(client, Direction::Egress, server);
  if (from.subnet != nullptr && !sameSubnet) acl(*from.subnet, Direction::Egress, to, toPort);
  if (to.subnet != nullptr && !sameSubnet) acl(*to.subnet, Direction::Ingress, from, toPort);
  if (published) {
    rules.push_back(FlowAllowingRule{.kind = FlowAllowingRule::Kind::PublishedPort,
                                     .ingress = true,
                                     .name = server.nic->instance,
                                     .rule = 0,
                                     .matches = portForwardText(*published),
                                     .reply = connection.replies});
  } else if (server.nic != nullptr) {
    group(server, Direction::Ingress, client);
  }
  return rules;
}

}  // namespace corral::net
