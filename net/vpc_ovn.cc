// The OVN backend of a VPC: the plan of its northbound rows and their convergence (net/vpc_ovn.h).
#include "net/vpc_ovn.h"

#include <fmt/format.h>

#include <algorithm>
#include <set>
#include <utility>

#include "net/resolver.h"

namespace corral::net {

using ovsdb::Json;

namespace {

std::string underscored(std::string_view name) {
  std::string out(name);
  // corral's names are a-z, 0-9 and '-': '_' never occurs in them, so the mapping is one to one.
  std::replace(out.begin(), out.end(), '-', '_');
  return out;
}

// The gateway port's MAC: 02:c2 (locally administered; beside the nftables backend's 02:c0 instances and
// 02:c1 subnet bridges) and four bytes of a hash of the VPC's name.
std::string gatewayMac(std::string_view vpc) {
  const uint32_t hash = fnv1a32(fmt::format("gateway/{}", vpc));
  return fmt::format("02:c2:{:02x}:{:02x}:{:02x}:{:02x}", hash >> 24, (hash >> 16) & 0xff, (hash >> 8) & 0xff,
                     hash & 0xff);
}

// A peering link port's MAC: 02:c3 and four bytes of a hash of the VPC and the peering.
std::string peeringMac(std::string_view vpc, std::string_view peering) {
  const uint32_t hash = fnv1a32(fmt::format("peering/{}/{}", vpc, peering));
  return fmt::format("02:c3:{:02x}:{:02x}:{:02x}:{:02x}", hash >> 24, (hash >> 16) & 0xff, (hash >> 8) & 0xff,
                     hash & 0xff);
}

Ipv4Address routerAddressOf(const Cidr& subnet) {
  return Ipv4Address(subnet.first().value() + 1);
}

Json stringSet(std::vector<std::string> values) {
  std::vector<Json> elements(values.begin(), values.end());
  return ovsdb::set(std::move(elements));
}

Json stringMap(std::vector<std::pair<std::string, std::string>> pairs) {
  std::vector<std::pair<Json, Json>> elements;
  for (auto& [key, value] : pairs) elements.emplace_back(key, value);
  return ovsdb::map(std::move(elements));
}

// OVN's layer-4 match for a rule's protocol and destination ports: empty for all protocols.
std::string l4Match(Protocol protocol, const std::optional<PortRange>& ports) {
  switch (protocol) {
    case Protocol::All:
      return {};
    case Protocol::Icmp:
      return "icmp4";
    case Protocol::Tcp:
    case Protocol::Udp: {
      const std::string_view name = protocolName(protocol);
      if (!ports || (ports->from == 0 && ports->to == 65535)) return std::string(name);
      if (ports->from == ports->to) return fmt::format("{}.dst == {}", name, ports->from);
      return fmt::format("{0}.dst >= {1} && {0}.dst <= {2}", name, ports->from, ports->to);
    }
  }
  return {};
}

// "ip4.src == 10.0.1.0/24"; nothing for 0.0.0.0/0, which every IPv4 packet matches.
std::string addressMatch(std::string_view field, const Cidr& cidr) {
  if (cidr.prefix() == 0) return {};
  return fmt::format("{} == {}", field, cidr.str());
}

std::string joinMatch(std::vector<std::string> parts) {
  std::string out;
  for (const std::string& part : parts) {
    if (part.empty()) continue;
    if (!out.empty()) out += " && ";
    out += part;
  }
  return out;
}

OvnRow aclRow(std::string object, std::string_view direction, int priority, std::string match,
              std::string_view action) {
  return OvnRow{.table = "ACL",
                .object = std::move(object),
                .columns = {{"direction", direction},
                            {"priority", priority},
                            {"match", std::move(match)},
                            {"action", action}},
                .references = {}};
}

// The plan under construction: rows by object, so parents can name their children as they are made.
class PlanBuilder {
 public:
  OvnRow& add(OvnRow row) {
    std::string object = row.object;
    auto [it, inserted] = rows_.emplace(std::move(object), std::move(row));
    return it->second;
  }
  OvnVpcPlan finish(std::string_view vpc) {
    OvnVpcPlan plan{.vpc = std::string(vpc), .rows = {}};
    for (auto& [object, row] : rows_) {
      for (auto& [column, objects] : row.references) std::sort(objects.begin(), objects.end());
      plan.rows.push_back(std::move(row));
    }
    const std::vector<std::string>& order = ovnTableOrder();
    auto rank = [&](const OvnRow& row) {
      return std::find(order.begin(), order.end(), row.table) - order.begin();
    };
    std::stable_sort(plan.rows.begin(), plan.rows.end(),
                     [&](const OvnRow& a, const OvnRow& b) { return rank(a) < rank(b); });
    return plan;
  }

 private:
  std::map<std::string, OvnRow> rows_;
};

std::string securityGroupObject(std::string_view group) {
  return fmt::format("security-group/{}", group);
}

// The ACL rows of one security group, their objects added to the port group's "acls".
void planSecurityGroup(PlanBuilder& builder, OvnRow& portGroup, const SecurityGroup& group,
                       const Topology& topology, std::string_view vpc) {
  const std::string pg = ovnPortGroupName(group.name);
  for (const SecurityGroupRule& rule : group.rules) {
    const bool ingress = rule.direction == Direction::Ingress;
    std::string peer;
    if (rule.cidr) {
      peer = addressMatch(ingress ? "ip4.src" : "ip4.dst", *rule.cidr);
    } else if (rule.peerGroup) {
      const SecurityGroup* named = topology.findSecurityGroup(*rule.peerGroup);
      // A group of a peered VPC: its port group's address set (address sets are global in OVN; the port
      // group is a row of the peer's plan). Without a peering between the two, no rule.
      if (named == nullptr || (named->vpc != vpc && !topology.peeringBetween(vpc, named->vpc))) continue;
      peer = fmt::format("{} == ${}_ip4", ingress ? "ip4.src" : "ip4.dst", ovnPortGroupName(named->name));
    }
    std::string object = fmt::format("{}/rule/{}", securityGroupObject(group.name), rule.id);
    portGroup.references["acls"].push_back(object);
    builder.add(aclRow(std::move(object), ingress ? "to-lport" : "from-lport", kOvnSecurityGroupRulePriority,
                       joinMatch({fmt::format("{} == @{}", ingress ? "outport" : "inport", pg), "ip4", peer,
                                  l4Match(rule.protocol, rule.ports)}),
                       "allow-related"));
  }
  for (Direction direction : {Direction::Ingress, Direction::Egress}) {
    const bool ingress = direction == Direction::Ingress;
    std::string object = fmt::format("{}/drop-{}", securityGroupObject(group.name), directionName(direction));
    portGroup.references["acls"].push_back(object);
    builder.add(aclRow(std::move(object), ingress ? "to-lport" : "from-lport", kOvnSecurityGroupDropPriority,
                       fmt::format("{} == @{} && ip4", ingress ? "outport" : "inport", pg), "drop"));
  }
}

// The network ACL of one subnet: "in" as ACLs of its switch, "out" as policies of the VPC's router, both
// matching the subnet's router port (see the top of net/vpc_ovn.h).
void planNetworkAcl(PlanBuilder& builder, OvnRow& logicalSwitch, OvnRow& router, const Subnet& subnet,
                    const NetworkAcl& acl) {
  const std::string base = fmt::format("subnet/{}/network-acl/{}", subnet.name, acl.name);
  const std::string fromRouter = fmt::format("inport == \"{}\"", ovnSwitchRouterPortName(subnet.name));
  const std::string toRouter = fmt::format("inport == \"{}\"", ovnRouterPortName(subnet.name));
  for (const NetworkAclRule& rule : acl.rules) {
    const bool ingress = rule.direction == Direction::Ingress;
    const bool allow = rule.action == RuleAction::Allow;
    const int priority = kOvnNaclTopPriority - rule.number;
    std::string object = fmt::format("{}/{}/{}", base, directionName(rule.direction), rule.number);
    const std::string l4 = l4Match(rule.protocol, rule.ports);
    if (ingress) {
      logicalSwitch.references["acls"].push_back(object);
      builder.add(aclRow(std::move(object), "from-lport", priority,
                         joinMatch({fromRouter, "ip4", addressMatch("ip4.src", rule.cidr), l4}),
                         allow ? "allow-stateless" : "drop"));
    } else {
      router.references["policies"].push_back(object);
      builder.add(
          OvnRow{.table = "Logical_Router_Policy",
                 .object = std::move(object),
                 .columns = {{"priority", priority},
                             {"match", joinMatch({toRouter, "ip4", addressMatch("ip4.dst", rule.cidr), l4})},
                             {"action", allow ? "allow" : "drop"}},
                 .references = {}});
    }
  }
  std::string deniedIn = fmt::format("{}/ingress/implicit-deny", base);
  logicalSwitch.references["acls"].push_back(deniedIn);
  builder.add(aclRow(std::move(deniedIn), "from-lport", 0, fmt::format("{} && ip4", fromRouter), "drop"));
  std::string deniedOut = fmt::format("{}/egress/implicit-deny", base);
  router.references["policies"].push_back(deniedOut);
  builder.add(
      OvnRow{.table = "Logical_Router_Policy",
             .object = std::move(deniedOut),
             .columns = {{"priority", 0}, {"match", fmt::format("{} && ip4", toRouter)}, {"action", "drop"}},
             .references = {}});
}

}  // namespace

std::string ovnRouterName(std::string_view vpc) {
  return fmt::format("corral.vpc.{}", vpc);
}
std::string ovnSwitchName(std::string_view subnet) {
  return fmt::format("corral.subnet.{}", subnet);
}
std::string ovnRouterPortName(std::string_view subnet) {
  return fmt::format("corral.router.{}", subnet);
}
std::string ovnSwitchRouterPortName(std::string_view subnet) {
  return fmt::format("corral.router-port.{}", subnet);
}
std::string ovnNicPortName(std::string_view instance) {
  return fmt::format("corral.nic.{}", instance);
}
std::string ovnOutsideSwitchName(std::string_view vpc) {
  return fmt::format("corral.outside.{}", vpc);
}
std::string ovnGatewayPortName(std::string_view vpc) {
  return fmt::format("corral.gateway.{}", vpc);
}
std::string ovnPeeringPortName(std::string_view vpc, std::string_view peering) {
  return fmt::format("corral.peering.{}.{}", peering, vpc);
}
std::string ovnPortGroupName(std::string_view group) {
  return fmt::format("corral_sg_{}", underscored(group));
}

const std::vector<std::string>& ovnTableOrder() {
  static const std::vector<std::string> order = {"ACL",
                                                 "Logical_Router_Policy",
                                                 "Logical_Router_Static_Route",
                                                 "NAT",
                                                 "Gateway_Chassis",
                                                 "Load_Balancer",
                                                 "DNS",
                                                 "Logical_Switch_Port",
                                                 "Logical_Router_Port",
                                                 "Logical_Switch",
                                                 "Logical_Router",
                                                 "Port_Group"};
  return order;
}

const OvnRow* OvnVpcPlan::find(std::string_view object) const {
  for (const OvnRow& row : rows) {
    if (row.object == object) return &row;
  }
  return nullptr;
}

Result<OvnVpcPlan> planOvnVpc(const Topology& topology, std::string_view vpc,
                              const std::vector<NicAttachment>& nics, const OvnGatewaySettings* gateway) {
  if (topology.findVpc(vpc) == nullptr) {
    return fail(invalidField("vpc", "no vpc named \"{}\"", vpc));
  }
  PlanBuilder builder;
  const std::string routerObject = fmt::format("vpc/{}", vpc);
  OvnRow& router = builder.add(OvnRow{.table = "Logical_Router",
                                      .object = routerObject,
                                      .columns = {{"name", ovnRouterName(vpc)}},
                                      .references = {}});
  router.references["ports"];
  router.references["policies"];
  router.references["static_routes"];

  // Security groups first: NICs name their port groups.
  std::map<std::string, OvnRow*, std::less<>> portGroups;
  for (const SecurityGroup* group : topology.securityGroups(vpc)) {
    OvnRow& portGroup = builder.add(OvnRow{.table = "Port_Group",
                                           .object = securityGroupObject(group->name),
                                           .columns = {{"name", ovnPortGroupName(group->name)}},
                                           .references = {}});
    portGroup.references["ports"];
    portGroup.references["acls"];
    portGroups.emplace(group->name, &portGroup);
    planSecurityGroup(builder, portGroup, *group, topology, vpc);
  }

  // The VPC's names (the resolver's: every NIC as NAME and NAME.VPC.internal), one DNS row that every
  // subnet's switch holds; records are added with the NICs below.
  const std::string dnsObject = fmt::format("vpc/{}/dns", vpc);
  std::vector<std::pair<std::string, std::string>> records;
  std::map<std::string, OvnRow*, std::less<>> switches;
  for (const Subnet* subnet : topology.subnets(vpc)) {
    const std::string subnetObject = fmt::format("subnet/{}", subnet->name);
    OvnRow& logicalSwitch =
        builder.add(OvnRow{.table = "Logical_Switch",
                           .object = subnetObject,
                           .columns = {{"name", ovnSwitchName(subnet->name)},
                                       {"other_config", stringMap({{"subnet", subnet->cidr.str()}})}},
                           .references = {}});
    logicalSwitch.references["ports"];
    logicalSwitch.references["acls"];
    switches.emplace(subnet->name, &logicalSwitch);

    const std::string routerPortObject = fmt::format("subnet/{}/router-port", subnet->name);
    router.references["ports"].push_back(routerPortObject);
    builder.add(
        OvnRow{.table = "Logical_Router_Port",
               .object = routerPortObject,
               .columns = {{"name", ovnRouterPortName(subnet->name)},
                           {"mac", subnetBridgeMac(subnetBridgeName(vpc, subnet->name))},
                           {"networks", stringSet({fmt::format("{}/{}", routerAddressOf(subnet->cidr).str(),
                                                               subnet->cidr.prefix())})},
                           {"options", stringMap({{"route_table", subnet->routeTable}})}},
               .references = {}});
    const std::string switchSideObject = fmt::format("subnet/{}/switch-router-port", subnet->name);
    logicalSwitch.references["ports"].push_back(switchSideObject);
    builder.add(
        OvnRow{.table = "Logical_Switch_Port",
               .object = switchSideObject,
               .columns = {{"name", ovnSwitchRouterPortName(subnet->name)},
                           {"type", "router"},
                           {"addresses", stringSet({"router"})},
                           // The subnet's .2, the VPC resolver's address: answered for ARP with the
                           // router's MAC, so instances send their queries; OVN's DNS answers them on the
                           // switch before they go anywhere.
                           {"options", stringMap({{"arp_proxy", resolverAddress(subnet->cidr).str()},
                                                  {"router-port", ovnRouterPortName(subnet->name)}})}},
               .references = {}});
    logicalSwitch.references["dns_records"] = {dnsObject};

    if (const NetworkAcl* acl = topology.findNetworkAcl(subnet->networkAcl)) {
      planNetworkAcl(builder, logicalSwitch, router, *subnet, *acl);
    }
  }

  // The internet gateway needs both the object and where it meets the outside; without either, routes
  // towards it are left out, as planVpc leaves out routes to a gateway it cannot plan.
  const std::vector<const InternetGateway*> internetGateways = topology.internetGateways(vpc);
  const InternetGateway* internetGateway =
      internetGateways.empty() || gateway == nullptr ? nullptr : internetGateways.front();
  std::string outsideHop;      // the transit's .1
  std::string outsideAddress;  // the transit's .2
  if (internetGateway != nullptr) {
    outsideHop = Ipv4Address(gateway->transit.network().value() + 1).str();
    outsideAddress = Ipv4Address(gateway->transit.network().value() + 2).str();
    const std::string base = fmt::format("internet-gateway/{}", internetGateway->name);
    OvnRow& outside =
        builder.add(OvnRow{.table = "Logical_Switch",
                           .object = base + "/switch",
                           .columns = {{"name", ovnOutsideSwitchName(vpc)},
                                       {"other_config", stringMap({{"subnet", gateway->transit.str()}})}},
                           .references = {}});
    outside.references["acls"];
    outside.references["ports"] = {base + "/localnet", base + "/switch-router-port"};
    builder.add(OvnRow{.table = "Logical_Switch_Port",
                       .object = base + "/localnet",
                       .columns = {{"name", ovnOutsideSwitchName(vpc) + ".localnet"},
                                   {"type", "localnet"},
                                   {"addresses", stringSet({"unknown"})},
                                   {"options", stringMap({{"network_name", gateway->network}})}},
                       .references = {}});
    builder.add(OvnRow{.table = "Logical_Switch_Port",
                       .object = base + "/switch-router-port",
                       .columns = {{"name", fmt::format("corral.gateway-port.{}", vpc)},
                                   {"type", "router"},
                                   {"addresses", stringSet({"router"})},
                                   {"options", stringMap({{"router-port", ovnGatewayPortName(vpc)}})}},
                       .references = {}});
    router.references["ports"].push_back(base + "/router-port");
    OvnRow& gatewayPort = builder.add(
        OvnRow{.table = "Logical_Router_Port",
               .object = base + "/router-port",
               .columns = {{"name", ovnGatewayPortName(vpc)},
                           {"mac", gatewayMac(vpc)},
                           {"networks",
                            stringSet({fmt::format("{}/{}", outsideAddress, gateway->transit.prefix())})},
                           {"options", stringMap({})}},
               .references = {}});
    gatewayPort.references["gateway_chassis"] = {base + "/chassis"};
    builder.add(OvnRow{.table = "Gateway_Chassis",
                       .object = base + "/chassis",
                       .columns = {{"name", fmt::format("{}.{}", ovnGatewayPortName(vpc), gateway->chassis)},
                                   {"chassis_name", gateway->chassis},
                                   {"priority", 1}},
                       .references = {}});
    router.references["nat"];
    router.references["load_balancer"];
    for (const Subnet* subnet : topology.subnets(vpc)) {
      const SubnetReachability reachability = topology.reachability(*subnet);
      if (reachability == SubnetReachability::Isolated) continue;
      std::string object = fmt::format("{}/snat/{}", base, subnet->name);
      router.references["nat"].push_back(object);
      builder.add(OvnRow{
          .table = "NAT",
          .object = std::move(object),
          .columns = {{"type", "snat"}, {"external_ip", outsideAddress}, {"logical_ip", subnet->cidr.str()}},
          .references = {}});
    }
  }

  // Each peering: this VPC's end of the router-to-router link, a port of our router at our address of the
  // peering's /30 (.1 the requester's, .2 the accepter's, as the nftables backend's veth pair) whose `peer`
  // is the other VPC's end. The other end is a row of the other VPC's plan, planned there the same way:
  // each side holds only its own end, so the two plans never name each other's rows and either may be
  // converged first (northd joins the two once both exist).
  std::map<std::string, std::string, std::less<>> peeringHops;  // peering -> the other end's address
  for (const Peering* peering : topology.peerings(vpc)) {
    const std::string& peerVpc = peering->otherSide(vpc);
    if (topology.findVpc(peerVpc) == nullptr) continue;
    const bool requester = peering->vpc == vpc;
    const auto hostOf = [&](uint32_t host) { return Ipv4Address(peering->link.network().value() + host); };
    const Ipv4Address ours = hostOf(requester ? 1 : 2);
    peeringHops.emplace(peering->name, hostOf(requester ? 2 : 1).str());
    std::string object = fmt::format("peering/{}/router-port", peering->name);
    router.references["ports"].push_back(object);
    builder.add(OvnRow{
        .table = "Logical_Router_Port",
        .object = std::move(object),
        .columns = {{"name", ovnPeeringPortName(vpc, peering->name)},
                    {"mac", peeringMac(vpc, peering->name)},
                    {"networks", stringSet({fmt::format("{}/{}", ours.str(), peering->link.prefix())})},
                    {"peer", stringSet({ovnPeeringPortName(peerVpc, peering->name)})},
                    {"options", stringMap({})}},
        .references = {}});
  }

  for (const RouteTable* table : topology.routeTables(vpc)) {
    for (const Route& route : table->routes) {
      std::string nexthop;
      switch (route.target.type) {
        case RouteTargetType::Blackhole:
          nexthop = "discard";
          break;
        case RouteTargetType::InternetGateway:
          if (internetGateway != nullptr && route.target.name == internetGateway->name) nexthop = outsideHop;
          break;
        case RouteTargetType::NatGateway: {
          // A NAT gateway sends its traffic on through the VPC's internet gateway (as in AWS).
          const NatGateway* natGateway = topology.findNatGateway(route.target.name);
          if (internetGateway != nullptr && natGateway != nullptr && natGateway->vpc == vpc)
            nexthop = outsideHop;
          break;
        }
        case RouteTargetType::Peering:
          // To the other VPC's end of the link: its router takes the packet on by its connected routes,
          // only to its own subnets (the link's port has no route table; the global one holds no static
          // route), so nothing crosses two peerings or a peering and a gateway: not transitive.
          if (auto hop = peeringHops.find(route.target.name); hop != peeringHops.end()) nexthop = hop->second;
          break;
        case RouteTargetType::Local:
          break;
      }
      if (nexthop.empty()) continue;
      std::string object = fmt::format("route-table/{}/route/{}", table->name, route.destination.str());
      router.references["static_routes"].push_back(object);
      builder.add(OvnRow{.table = "Logical_Router_Static_Route",
                         .object = std::move(object),
                         .columns = {{"ip_prefix", route.destination.str()},
                                     {"nexthop", nexthop},
                                     {"route_table", table->name}},
                         .references = {}});
    }
  }

  const SecurityGroup* defaultGroup = topology.defaultSecurityGroup(vpc);
  const Cidr vpcCidr = topology.findVpc(vpc)->cidr;
  std::set<std::string> instances;
  // Published ports: "OUTSIDE:PORT" -> "NIC:PORT" by protocol, one load balancer each on the router.
  std::map<std::string, std::map<std::string, std::string>> published;
  for (size_t i = 0; i < nics.size(); ++i) {
    const NicAttachment& nic = nics[i];
    const std::string field = fmt::format("nics[{}]", i);
    const Subnet* subnet = topology.findSubnet(nic.subnet);
    if (subnet == nullptr) {
      return fail(
          invalidField(field + ".subnet", "no subnet named \"{}\" (instance {})", nic.subnet, nic.instance));
    }
    if (subnet->vpc != vpc) continue;
    auto address = Ipv4Address::parse(nic.address);
    if (!address || !subnet->cidr.contains(*address)) {
      return fail(invalidField(field + ".address", "\"{}\" is not an address of subnet {} ({})", nic.address,
                               subnet->name, subnet->cidr.str()));
    }
    if (!instances.insert(nic.instance).second) {
      return fail(
          invalidField(field + ".instance", "instance {} has a second NIC in vpc {}", nic.instance, vpc));
    }
    const std::string port = fmt::format("{} {}", instanceMac(nic.instance, nic.vm), nic.address);
    const std::string object = fmt::format("nic/{}", nic.instance);
    switches.at(subnet->name)->references["ports"].push_back(object);
    builder.add(OvnRow{.table = "Logical_Switch_Port",
                       .object = object,
                       .columns = {{"name", ovnNicPortName(nic.instance)},
                                   {"type", ""},
                                   {"addresses", stringSet({port})},
                                   {"port_security", stringSet({port})},
                                   {"options", stringMap({})}},
                       .references = {}});
    if (internetGateway != nullptr && nic.publicAddress &&
        topology.reachability(*subnet) == SubnetReachability::Public) {
      auto publicAddress = Ipv4Address::parse(*nic.publicAddress);
      if (!publicAddress) {
        return fail(
            invalidField(field + ".publicAddress", "\"{}\" is not an IPv4 address", *nic.publicAddress));
      }
      std::string natObject = object + "/public-address";
      router.references["nat"].push_back(natObject);
      builder.add(OvnRow{.table = "NAT",
                         .object = std::move(natObject),
                         .columns = {{"type", "dnat_and_snat"},
                                     {"external_ip", publicAddress->str()},
                                     {"logical_ip", nic.address}},
                         .references = {}});
    }
    // A published port's replies follow the subnet's route table, so it must lead to the gateway (as the
    // nftables backend has it); publishing is the allow rule, as with Docker's -p: an ACL on the NIC's port
    // lets in what comes from outside the VPC to the instance's port, whatever its groups say.
    if (internetGateway != nullptr && topology.reachability(*subnet) != SubnetReachability::Isolated) {
      for (size_t j = 0; j < nic.publish.size(); ++j) {
        const PortForward& forward = nic.publish[j];
        const std::string protocol(protocolName(forward.protocol));
        const std::string vip = fmt::format("{}:{}", outsideAddress, forward.outsidePort);
        auto [it, fresh] =
            published[protocol].emplace(vip, fmt::format("{}:{}", nic.address, forward.instancePort));
        if (!fresh) {
          return fail(invalidField(fmt::format("{}.publish[{}]", field, j),
                                   "outside port {}/{} is published twice in vpc {}", forward.outsidePort,
                                   protocol, vpc));
        }
        std::string aclObject = fmt::format("{}/publish/{}/{}", object, protocol, forward.outsidePort);
        switches.at(subnet->name)->references["acls"].push_back(aclObject);
        builder.add(
            aclRow(std::move(aclObject), "to-lport", kOvnSecurityGroupRulePriority,
                   fmt::format("outport == \"{}\" && ip4 && ip4.src != {} && {}.dst == {}",
                               ovnNicPortName(nic.instance), vpcCidr.str(), protocol, forward.instancePort),
                   "allow-related"));
      }
    }
    records.emplace_back(nic.instance, nic.address);
    records.emplace_back(fmt::format("{}.{}", nic.instance, vpcDomain(vpc)), nic.address);
    std::vector<std::string> groups = nic.securityGroups;
    if (groups.empty() && defaultGroup != nullptr) groups.push_back(defaultGroup->name);
    for (size_t j = 0; j < groups.size(); ++j) {
      auto portGroup = portGroups.find(groups[j]);
      if (portGroup == portGroups.end()) {
        return fail(invalidField(fmt::format("{}.securityGroups[{}]", field, j),
                                 "no security group named \"{}\" in vpc {}", groups[j], vpc));
      }
      std::vector<std::string>& members = portGroup->second->references["ports"];
      if (std::find(members.begin(), members.end(), object) == members.end()) members.push_back(object);
    }
  }
  std::sort(records.begin(), records.end());
  builder.add(OvnRow{.table = "DNS",
                     .object = dnsObject,
                     .columns = {{"records", stringMap(std::move(records))}},
                     .references = {}});
  for (const auto& [protocol, vips] : published) {
    std::string object = fmt::format("internet-gateway/{}/publish/{}", internetGateway->name, protocol);
    router.references["load_balancer"].push_back(object);
    std::vector<std::pair<std::string, std::string>> pairs(vips.begin(), vips.end());
    builder.add(OvnRow{.table = "Load_Balancer",
                       .object = std::move(object),
                       .columns = {{"name", fmt::format("corral.publish.{}.{}", vpc, protocol)},
                                   {"protocol", protocol},
                                   {"vips", stringMap(std::move(pairs))}},
                       .references = {}});
  }
  return builder.finish(vpc);
}

std::string renderOvnVpcPlan(const OvnVpcPlan& plan) {
  std::string out = fmt::format("# vpc {}: OVN northbound rows, each marked {}={} and {}=OBJECT\n", plan.vpc,
                                kOvnVpcKey, plan.vpc, kOvnObjectKey);
  for (const OvnRow& row : plan.rows) {
    out += fmt::format("{} {}\n", row.table, row.object);
    for (const auto& [column, value] : row.columns.items())
      out += fmt::format("  {} = {}\n", column, value.dump());
    for (const auto& [column, objects] : row.references) {
      std::string list;
      for (const std::string& object : objects) list += (list.empty() ? "" : ", ") + object;
      out += fmt::format("  {} -> [{}]\n", column, list);
    }
  }
  return out;
}

// ---- Convergence ----

namespace {

// A value in a form where OVSDB's equal spellings compare equal: a set (also a bare atom, a set of one)
// becomes the sorted array of its atoms, a map the sorted array of its pairs.
Json canonical(const Json& value) {
  if (value.is_array() && value.size() == 2 && value[0].is_string()) {
    if (value[0] == "set" && value[1].is_array()) {
      std::vector<Json> atoms(value[1].begin(), value[1].end());
      std::sort(atoms.begin(), atoms.end());
      return Json(atoms);
    }
    if (value[0] == "map" && value[1].is_array()) {
      std::vector<Json> pairs(value[1].begin(), value[1].end());
      std::sort(pairs.begin(), pairs.end());
      return Json::object({{"map", pairs}});
    }
  }
  return Json::array({value});
}

struct ExistingRow {
  std::string table;
  std::string uuid;
  std::string object;
  Json row;
};

Json externalIds(std::string_view vpc, std::string_view object, bool cluster) {
  std::vector<std::pair<std::string, std::string>> ids{{std::string(kOvnObjectKey), std::string(object)},
                                                       {std::string(kOvnVpcKey), std::string(vpc)}};
  if (cluster) ids.emplace_back(std::string(kOvnScopeKey), std::string(kOvnClusterScope));
  return stringMap(ids);
}

std::string rowLabel(std::string_view table, const Json& columns, std::string_view object) {
  if (columns.contains("name") && columns["name"].is_string() && !columns["name"].get<std::string>().empty())
    return fmt::format("{} {} ({})", table, columns["name"].get<std::string>(), object);
  return fmt::format("{} ({})", table, object);
}

// The uuids a reference column holds.
std::vector<std::string> referencedUuids(const Json& value) {
  std::vector<std::string> uuids;
  for (const Json& element : ovsdb::decodeSet(value).value_or(std::vector<Json>{})) {
    if (auto uuid = ovsdb::decodeUuid(element)) uuids.push_back(*uuid);
  }
  return uuids;
}

}  // namespace

namespace {

// One convergence: read, diff, write. nullopt when another writer changed the VPC's rows between the read
// and the write (the write's `wait`s did not hold, so nothing was written).
Result<std::optional<ChangeLog>> convergeOnce(ovsdb::OvsdbClient& client, const OvnVpcPlan& plan) {
  const std::string database(kOvnNorthbound);
  const std::vector<std::string>& tables = ovnTableOrder();
  std::vector<Json> selects;
  for (const std::string& table : tables) {
    selects.push_back(ovsdb::selectOp(
        table,
        {ovsdb::condition("external_ids", "includes", stringMap({{std::string(kOvnVpcKey), plan.vpc}}))}));
  }
  auto read = client.transact(database, selects);
  if (!read) return fail(std::move(read.error()).wrap(fmt::format("converge vpc {} in OVN: read", plan.vpc)));

  // What is there, by object; a second row with the same object (a copy someone made) goes.
  std::map<std::string, ExistingRow> existing;
  std::set<std::string> corralUuids;
  std::vector<ExistingRow> extra;
  for (size_t t = 0; t < tables.size(); ++t) {
    for (const Json& row : (*read)[t].value("rows", Json::array())) {
      ExistingRow found{.table = tables[t], .uuid = {}, .object = {}, .row = row};
      found.uuid = ovsdb::decodeUuid(row.value("_uuid", Json())).value_or("");
      for (const auto& [key, value] : ovsdb::decodeMap(row.value("external_ids", Json()))
                                          .value_or(std::vector<std::pair<Json, Json>>{})) {
        if (key == kOvnObjectKey && value.is_string()) found.object = value.get<std::string>();
      }
      corralUuids.insert(found.uuid);
      const OvnRow* wanted = plan.find(found.object);
      if (wanted == nullptr || wanted->table != found.table || existing.contains(found.object)) {
        extra.push_back(std::move(found));
      } else {
        std::string object = found.object;
        existing.emplace(std::move(object), std::move(found));
      }
    }
  }

  // Each planned row's handle in the transaction: its uuid, or the name of its insert.
  std::map<std::string, Json> handles;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const OvnRow& row = plan.rows[i];
    auto it = existing.find(row.object);
    handles.emplace(row.object, it != existing.end() ? ovsdb::uuid(it->second.uuid)
                                                     : ovsdb::namedUuid(fmt::format("row{}", i)));
  }

  ChangeLog changes;
  std::vector<Json> operations;
  for (size_t i = 0; i < plan.rows.size(); ++i) {
    const OvnRow& row = plan.rows[i];
    auto it = existing.find(row.object);
    const Json wantedIds = externalIds(plan.vpc, row.object, plan.cluster);
    auto referenceValue = [&](const std::vector<std::string>& objects, const Json* had) {
      std::vector<Json> elements;
      for (const std::string& object : objects) elements.push_back(handles.at(object));
      // Rows that are not corral's stay referred to (a foreign port on corral's switch).
      if (had != nullptr) {
        for (const std::string& uuid : referencedUuids(*had)) {
          if (!corralUuids.contains(uuid)) elements.push_back(ovsdb::uuid(uuid));
        }
      }
      return ovsdb::set(std::move(elements));
    };
    if (it == existing.end()) {
      Json columns = row.columns;
      columns["external_ids"] = wantedIds;
      for (const auto& [column, objects] : row.references) columns[column] = referenceValue(objects, nullptr);
      operations.push_back(ovsdb::insertOp(row.table, std::move(columns), fmt::format("row{}", i)));
      changes.push_back(fmt::format("created {}", rowLabel(row.table, row.columns, row.object)));
      continue;
    }
    const ExistingRow& have = it->second;
    Json update = Json::object();
    std::vector<std::string> changed;
    for (const auto& [column, value] : row.columns.items()) {
      if (!have.row.contains(column) || canonical(have.row[column]) != canonical(value)) {
        update[column] = value;
        changed.push_back(column);
      }
    }
    if (!have.row.contains("external_ids") || canonical(have.row["external_ids"]) != canonical(wantedIds)) {
      update["external_ids"] = wantedIds;
      changed.push_back("external_ids");
    }
    for (const auto& [column, objects] : row.references) {
      const Json* had = have.row.contains(column) ? &have.row[column] : nullptr;
      std::vector<std::string> now = had ? referencedUuids(*had) : std::vector<std::string>{};
      std::sort(now.begin(), now.end());
      std::vector<std::string> want;
      bool allKnown = true;
      for (const std::string& object : objects) {
        const Json& handle = handles.at(object);
        if (handle[0] != "uuid") {
          allKnown = false;
          break;
        }
        want.push_back(handle[1].get<std::string>());
      }
      for (const std::string& uuid : now) {
        if (!corralUuids.contains(uuid)) want.push_back(uuid);
      }
      std::sort(want.begin(), want.end());
      if (!allKnown || want != now) {
        update[column] = referenceValue(objects, had);
        changed.push_back(column);
      }
    }
    if (changed.empty()) continue;
    operations.push_back(ovsdb::updateOp(row.table, {ovsdb::condition("_uuid", "==", ovsdb::uuid(have.uuid))},
                                         std::move(update)));
    std::string columns;
    for (const std::string& column : changed) columns += (columns.empty() ? "" : ", ") + column;
    changes.push_back(fmt::format("updated {}: {}", rowLabel(row.table, row.columns, row.object), columns));
  }
  for (const ExistingRow& row : extra) {
    operations.push_back(
        ovsdb::deleteOp(row.table, {ovsdb::condition("_uuid", "==", ovsdb::uuid(row.uuid))}));
    changes.push_back(fmt::format("deleted {}", rowLabel(row.table, row.row, row.object)));
  }
  if (operations.empty()) return std::optional<ChangeLog>(std::move(changes));
  // The write holds only if the VPC's rows are still those read: several corralds of a cluster converge
  // the same VPC, and two inserting the same missing row would leave two copies.
  std::vector<Json> guarded;
  for (size_t t = 0; t < tables.size(); ++t) {
    std::vector<Json> rows;
    for (const Json& row : (*read)[t].value("rows", Json::array()))
      rows.push_back(Json{{"_uuid", row.value("_uuid", Json())}});
    guarded.push_back(ovsdb::waitOp(
        tables[t],
        {ovsdb::condition("external_ids", "includes", stringMap({{std::string(kOvnVpcKey), plan.vpc}}))},
        {"_uuid"}, "==", std::move(rows)));
  }
  const size_t waits = guarded.size();
  guarded.insert(guarded.end(), std::make_move_iterator(operations.begin()),
                 std::make_move_iterator(operations.end()));
  auto written = client.transact(database, guarded);
  if (!written) {
    // OVSDB names the operation that failed: one of the waits means the rows moved under us.
    for (size_t w = 0; w < waits; ++w) {
      if (written.error().message().find(fmt::format("operation {} (wait", w)) != std::string::npos)
        return std::optional<ChangeLog>();
    }
    return fail(std::move(written.error()).wrap(fmt::format("converge vpc {} in OVN", plan.vpc)));
  }
  return std::optional<ChangeLog>(std::move(changes));
}

}  // namespace

Result<ChangeLog> convergeOvnVpc(ovsdb::OvsdbClient& client, const OvnVpcPlan& plan) {
  // Another corrald converging the same VPC at the same moment: read again and diff against its rows.
  constexpr int kAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    auto converged = convergeOnce(client, plan);
    if (!converged) return fail(std::move(converged.error()));
    if (*converged) return std::move(**converged);
    if (attempt == kAttempts)
      return fail(
          conflict("converge vpc {} in OVN: its rows kept changing under {} attempts", plan.vpc, kAttempts));
  }
}

Result<ChangeLog> destroyOvnVpc(ovsdb::OvsdbClient& client, std::string_view vpc) {
  return convergeOvnVpc(client, OvnVpcPlan{.vpc = std::string(vpc), .rows = {}});
}

}  // namespace corral::net
