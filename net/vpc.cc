// The VPC model's rules (copied from AWS) and the Topology that enforces them. Every mutation validates
// everything first and only then changes state, so a refused request leaves the topology untouched.
#include "net/vpc.h"

#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "core/text.h"

namespace corral::net {

std::string_view subnetReachabilityName(SubnetReachability r) {
  switch (r) {
    case SubnetReachability::Public:
      return "public";
    case SubnetReachability::PrivateWithNat:
      return "private (NAT)";
    case SubnetReachability::Isolated:
      return "isolated";
  }
  return "isolated";
}

namespace {

constexpr size_t kMaxDescriptionLength = 255;
constexpr int64_t kMinPort = 1;
constexpr int64_t kMaxPort = 65535;
// Rule number of the allow-all rules in a VPC's default network ACL, as in AWS.
constexpr int kDefaultAclRuleNumber = 100;

std::string mainRouteTableName(std::string_view vpc) {
  return fmt::format("{}-main", vpc);
}
std::string defaultObjectName(std::string_view vpc) {
  return fmt::format("{}-default", vpc);
}

Cidr anywhere() {
  return Cidr::containing(Ipv4Address(0), 0);
}

std::string joinNames(const std::vector<std::string>& names) {
  return fmt::format("{}", fmt::join(names, ", "));
}

template <class Map>
const typename Map::mapped_type* findIn(const Map& objects, std::string_view name) {
  auto it = objects.find(name);
  return it == objects.end() ? nullptr : &it->second;
}

Error notFoundError(ObjectKind kind, std::string_view name, std::string field = {}) {
  return Error(ErrorKind::NotFound, fmt::format("{} \"{}\" not found", objectKindName(kind), name),
               std::move(field));
}

template <class Map>
Result<const typename Map::mapped_type*> lookupIn(const Map& objects, ObjectKind kind, std::string_view name,
                                                  std::string field = {}) {
  if (const auto* found = findIn(objects, name)) return found;
  return fail(notFoundError(kind, name, std::move(field)));
}

template <class Map>
Status checkNameFree(const Map& objects, ObjectKind kind, std::string_view name) {
  if (objects.contains(name)) return fail(conflict("{} \"{}\" already exists", objectKindName(kind), name));
  return {};
}

// A spec's reference to an object that must exist (NotFound, with the field named) and live in `vpc`.
template <class Map>
Result<const typename Map::mapped_type*> lookupInVpc(const Map& objects, ObjectKind kind,
                                                     std::string_view name, std::string_view vpc,
                                                     std::string_view field) {
  if (name.empty()) {
    return fail(invalidField(std::string(field), "a {} name is required", objectKindName(kind)));
  }
  auto found = lookupIn(objects, kind, name, std::string(field));
  if (!found) return found;
  if ((*found)->vpc != vpc) {
    return fail(invalidField(std::string(field), "{} \"{}\" belongs to vpc \"{}\", not vpc \"{}\"",
                             objectKindName(kind), name, (*found)->vpc, vpc));
  }
  return found;
}

template <class Map>
std::vector<const typename Map::mapped_type*> listIn(const Map& objects, std::string_view vpc) {
  std::vector<const typename Map::mapped_type*> list;
  for (const auto& [name, object] : objects) {
    if (vpc.empty() || object.vpc == vpc) list.push_back(&object);
  }
  return list;
}

Status checkVpcPrefix(const Cidr& cidr, std::string_view text, std::string_view what) {
  if (cidr.prefix() < kMinVpcPrefix || cidr.prefix() > kMaxVpcPrefix) {
    return fail(invalidField("cidr", "\"{}\": a {} prefix must be between /{} and /{}", text, what,
                             kMinVpcPrefix, kMaxVpcPrefix));
  }
  return {};
}

Status checkDescription(std::string_view description) {
  if (description.size() > kMaxDescriptionLength) {
    return fail(invalidField("description", "the description is {} characters long; at most {} are allowed",
                             description.size(), kMaxDescriptionLength));
  }
  // It is printed to terminals (`corral sg show`): no escape sequence, tab or newline gets in.
  if (auto control = firstControlCharacter(description)) {
    return fail(invalidField("description",
                             "the description contains the control character {}; use printable "
                             "text only",
                             *control));
  }
  return {};
}

Result<int64_t> checkPort(int64_t port, std::string_view field) {
  if (port < kMinPort || port > kMaxPort) {
    return fail(invalidField(std::string(field), "port {} is out of range {}-{}", port, kMinPort, kMaxPort));
  }
  return port;
}

// tcp/udp: both absent = all ports, only from_port = that one port. icmp/all: no ports at all.
Result<std::optional<PortRange>> parsePorts(Protocol protocol, std::optional<int64_t> fromPort,
                                            std::optional<int64_t> toPort) {
  if (protocol != Protocol::Tcp && protocol != Protocol::Udp) {
    if (fromPort || toPort) {
      return fail(invalidField(fromPort ? "from_port" : "to_port",
                               "protocol {} takes no ports; give them only for "
                               "tcp or udp",
                               protocolName(protocol)));
    }
    return std::optional<PortRange>();
  }
  if (!fromPort && !toPort) return std::optional<PortRange>();
  if (!fromPort) {
    return fail(invalidField("from_port",
                             "to_port {} is given without from_port; give from_port alone for one "
                             "port, or both for a range",
                             *toPort));
  }
  auto from = checkPort(*fromPort, "from_port");
  if (!from) return fail(from.error());
  auto to = checkPort(toPort.value_or(*fromPort), "to_port");
  if (!to) return fail(to.error());
  if (*from > *to) {
    return fail(invalidField("to_port", "port range {}-{} is backwards: from_port must not exceed to_port",
                             *from, *to));
  }
  return std::optional<PortRange>(PortRange{static_cast<uint16_t>(*from), static_cast<uint16_t>(*to)});
}

std::string describePorts(const std::optional<PortRange>& ports) {
  if (!ports) return "all ports";
  if (ports->from == ports->to) return fmt::format("port {}", ports->from);
  return fmt::format("ports {}-{}", ports->from, ports->to);
}

void sortRoutes(std::vector<Route>& routes) {
  std::sort(routes.begin(), routes.end(), [](const Route& a, const Route& b) {
    if (a.destination.prefix() != b.destination.prefix())
      return a.destination.prefix() > b.destination.prefix();
    return a.destination.network() < b.destination.network();
  });
}

void sortAclRules(std::vector<NetworkAclRule>& rules) {
  std::sort(rules.begin(), rules.end(), [](const NetworkAclRule& a, const NetworkAclRule& b) {
    return std::tuple(a.direction, a.number) < std::tuple(b.direction, b.number);
  });
}

std::string describeTarget(const RouteTarget& target) {
  if (target.name.empty()) return std::string(routeTargetTypeName(target.type));
  return fmt::format("{} \"{}\"", routeTargetTypeName(target.type), target.name);
}

}  // namespace

// ---- VPCs ----

Result<Changeset> Topology::createVpc(const VpcSpec& spec, int64_t now) {
  if (Status ok = validateName(spec.name, "name"); !ok) return fail(ok.error());
  // The VPC's own objects are named after it, and those names must be valid names too.
  std::string mainTableName = mainRouteTableName(spec.name);
  std::string defaultName = defaultObjectName(spec.name);
  if (defaultName.size() > kMaxNameLength) {
    return fail(
        invalidField("name",
                     "vpc name \"{}\" is too long: at most {} characters, so that its default objects "
                     "(\"<vpc>-default\") stay within {}",
                     spec.name, kMaxNameLength - (defaultName.size() - spec.name.size()), kMaxNameLength));
  }
  auto cidr = Cidr::parse(spec.cidr, "cidr");
  if (!cidr) return fail(cidr.error());
  if (Status ok = checkVpcPrefix(*cidr, spec.cidr, "vpc"); !ok) return fail(ok.error());
  if (Status ok = checkNameFree(vpcs_, ObjectKind::Vpc, spec.name); !ok) return fail(ok.error());
  auto takenBy = [&](ObjectKind kind, std::string_view name) {
    return fail(conflict("cannot create vpc \"{}\": its {} \"{}\" already exists", spec.name,
                         objectKindName(kind), name));
  };
  if (routeTables_.contains(mainTableName)) return takenBy(ObjectKind::RouteTable, mainTableName);
  if (networkAcls_.contains(defaultName)) return takenBy(ObjectKind::NetworkAcl, defaultName);
  if (securityGroups_.contains(defaultName)) return takenBy(ObjectKind::SecurityGroup, defaultName);

  RouteTable mainTable{.name = mainTableName,
                       .vpc = spec.name,
                       .isMain = true,
                       .routes = {Route{*cidr, RouteTarget{RouteTargetType::Local, {}}}},
                       .createdAt = now};
  NetworkAcl defaultAcl{
      .name = defaultName, .vpc = spec.name, .isDefault = true, .rules = {}, .createdAt = now};
  for (Direction direction : {Direction::Ingress, Direction::Egress}) {
    defaultAcl.rules.push_back(NetworkAclRule{.number = kDefaultAclRuleNumber,
                                              .direction = direction,
                                              .action = RuleAction::Allow,
                                              .protocol = Protocol::All,
                                              .ports = std::nullopt,
                                              .cidr = anywhere()});
  }
  SecurityGroup defaultGroup{.name = defaultName,
                             .vpc = spec.name,
                             .description = fmt::format("default group of VPC {}", spec.name),
                             .isDefault = true,
                             .rules = {},
                             .nextRuleId = 1,
                             .createdAt = now};
  // Members of the default group may reach each other; everything outbound is allowed (AWS's defaults).
  defaultGroup.rules.push_back(SecurityGroupRule{.id = defaultGroup.nextRuleId++,
                                                 .direction = Direction::Ingress,
                                                 .protocol = Protocol::All,
                                                 .ports = std::nullopt,
                                                 .cidr = std::nullopt,
                                                 .peerGroup = defaultName,
                                                 .description = {}});
  defaultGroup.rules.push_back(SecurityGroupRule{.id = defaultGroup.nextRuleId++,
                                                 .direction = Direction::Egress,
                                                 .protocol = Protocol::All,
                                                 .ports = std::nullopt,
                                                 .cidr = anywhere(),
                                                 .peerGroup = std::nullopt,
                                                 .description = {}});

  vpcs_.emplace(spec.name, Vpc{.name = spec.name, .cidr = *cidr, .createdAt = now});
  routeTables_.emplace(mainTableName, std::move(mainTable));
  networkAcls_.emplace(defaultName, std::move(defaultAcl));
  securityGroups_.emplace(defaultName, std::move(defaultGroup));
  return Changeset{.upserted = {{ObjectKind::Vpc, spec.name},
                                {ObjectKind::RouteTable, mainTableName},
                                {ObjectKind::NetworkAcl, defaultName},
                                {ObjectKind::SecurityGroup, defaultName}},
                   .deleted = {}};
}

Result<Changeset> Topology::deleteVpc(std::string_view name) {
  auto found = vpc(name);
  if (!found) return fail(found.error());

  std::vector<std::string> blockers;
  auto collect = [&](std::string_view what, std::vector<std::string> names) {
    if (!names.empty()) blockers.push_back(fmt::format("{}: {}", what, joinNames(names)));
  };
  auto namesOf = [](const auto& list, auto keep) {
    std::vector<std::string> names;
    for (const auto* object : list) {
      if (keep(*object)) names.push_back(object->name);
    }
    return names;
  };
  auto all = [](const auto&) { return true; };
  collect("subnets", namesOf(subnets(name), all));
  collect("internet gateways", namesOf(internetGateways(name), all));
  collect("nat gateways", namesOf(natGateways(name), all));
  collect("route tables", namesOf(routeTables(name), [](const RouteTable& t) { return !t.isMain; }));
  collect("network acls", namesOf(networkAcls(name), [](const NetworkAcl& a) { return !a.isDefault; }));
  collect("security groups",
          namesOf(securityGroups(name), [](const SecurityGroup& g) { return !g.isDefault; }));
  collect("peerings", namesOf(peerings(name), all));
  if (!blockers.empty()) {
    return fail(conflict("vpc \"{}\" still has {}", name, fmt::join(blockers, "; ")));
  }

  Changeset changes;
  // Copy the names first: erasing invalidates the objects they come from.
  std::string vpcName(name);
  if (const RouteTable* table = mainRouteTable(vpcName)) {
    std::string tableName = table->name;
    routeTables_.erase(tableName);
    changes.deleted.push_back({ObjectKind::RouteTable, tableName});
  }
  if (const NetworkAcl* acl = defaultNetworkAcl(vpcName)) {
    std::string aclName = acl->name;
    networkAcls_.erase(aclName);
    changes.deleted.push_back({ObjectKind::NetworkAcl, aclName});
  }
  if (const SecurityGroup* group = defaultSecurityGroup(vpcName)) {
    std::string groupName = group->name;
    securityGroups_.erase(groupName);
    changes.deleted.push_back({ObjectKind::SecurityGroup, groupName});
  }
  vpcs_.erase(vpcName);
  changes.deleted.insert(changes.deleted.begin(), {ObjectKind::Vpc, vpcName});
  return changes;
}

// ---- Subnets ----

Result<Changeset> Topology::createSubnet(const SubnetSpec& spec, int64_t now) {
  if (Status ok = validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (Status ok = checkNameFree(subnets_, ObjectKind::Subnet, spec.name); !ok) return fail(ok.error());
  if (spec.vpc.empty()) return fail(invalidField("vpc", "a subnet needs a vpc"));
  auto owner = lookupIn(vpcs_, ObjectKind::Vpc, spec.vpc, "vpc");
  if (!owner) return fail(owner.error());
  const Vpc& vpcObject = **owner;
  auto cidr = Cidr::parse(spec.cidr, "cidr");
  if (!cidr) return fail(cidr.error());
  if (Status ok = checkVpcPrefix(*cidr, spec.cidr, "subnet"); !ok) return fail(ok.error());
  if (!vpcObject.cidr.contains(*cidr)) {
    return fail(invalidField("cidr", "subnet {} is not inside vpc \"{}\" ({})", cidr->str(), vpcObject.name,
                             vpcObject.cidr.str()));
  }
  for (const Subnet* other : subnets(spec.vpc)) {
    if (other->cidr.overlaps(*cidr)) {
      return fail(conflict("subnet {} overlaps subnet \"{}\" ({}) in vpc \"{}\"", cidr->str(), other->name,
                           other->cidr.str(), spec.vpc));
    }
  }
  if (Status ok = validateName(spec.availabilityZone, "availability_zone"); !ok) return fail(ok.error());

  std::string tableName = spec.routeTable;
  if (tableName.empty()) {
    const RouteTable* mainTable = mainRouteTable(spec.vpc);
    if (!mainTable) return fail(internalError("vpc \"{}\" has no main route table", spec.vpc));
    tableName = mainTable->name;
  } else if (auto table =
                 lookupInVpc(routeTables_, ObjectKind::RouteTable, tableName, spec.vpc, "route_table");
             !table) {
    return fail(table.error());
  }
  std::string aclName = spec.networkAcl;
  if (aclName.empty()) {
    const NetworkAcl* defaultAcl = defaultNetworkAcl(spec.vpc);
    if (!defaultAcl) return fail(internalError("vpc \"{}\" has no default network acl", spec.vpc));
    aclName = defaultAcl->name;
  } else if (auto acl = lookupInVpc(networkAcls_, ObjectKind::NetworkAcl, aclName, spec.vpc, "network_acl");
             !acl) {
    return fail(acl.error());
  }

  subnets_.emplace(spec.name, Subnet{.name = spec.name,
                                     .vpc = spec.vpc,
                                     .cidr = *cidr,
                                     .availabilityZone = spec.availabilityZone,
                                     .mapPublicIp = spec.mapPublicIp,
                                     .routeTable = tableName,
                                     .networkAcl = aclName,
                                     .createdAt = now});
  return Changeset{.upserted = {{ObjectKind::Subnet, spec.name}}, .deleted = {}};
}

Result<Changeset> Topology::updateSubnet(std::string_view name, const SubnetUpdate& update) {
  auto found = subnet(name);
  if (!found) return fail(found.error());
  const Subnet& current = **found;

  // An empty name puts the subnet back on its VPC's main table / default ACL, as AWS's disassociate does.
  std::string tableName = current.routeTable;
  if (update.routeTable) {
    if (update.routeTable->empty()) {
      const RouteTable* mainTable = mainRouteTable(current.vpc);
      if (!mainTable) return fail(internalError("vpc \"{}\" has no main route table", current.vpc));
      tableName = mainTable->name;
    } else if (auto table = lookupInVpc(routeTables_, ObjectKind::RouteTable, *update.routeTable, current.vpc,
                                        "route_table");
               !table) {
      return fail(table.error());
    } else {
      tableName = *update.routeTable;
    }
  }
  std::string aclName = current.networkAcl;
  if (update.networkAcl) {
    if (update.networkAcl->empty()) {
      const NetworkAcl* defaultAcl = defaultNetworkAcl(current.vpc);
      if (!defaultAcl) return fail(internalError("vpc \"{}\" has no default network acl", current.vpc));
      aclName = defaultAcl->name;
    } else if (auto acl = lookupInVpc(networkAcls_, ObjectKind::NetworkAcl, *update.networkAcl, current.vpc,
                                      "network_acl");
               !acl) {
      return fail(acl.error());
    } else {
      aclName = *update.networkAcl;
    }
  }

  Subnet& target = subnets_.find(name)->second;
  target.routeTable = std::move(tableName);
  target.networkAcl = std::move(aclName);
  if (update.mapPublicIp) target.mapPublicIp = *update.mapPublicIp;
  return Changeset{.upserted = {{ObjectKind::Subnet, target.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteSubnet(std::string_view name) {
  auto found = subnet(name);
  if (!found) return fail(found.error());
  std::vector<std::string> gateways;
  for (const auto& [gatewayName, gateway] : natGateways_) {
    if (gateway.subnet == name) gateways.push_back(gatewayName);
  }
  if (!gateways.empty()) {
    return fail(conflict("subnet \"{}\" still has nat gateways: {}", name, joinNames(gateways)));
  }
  std::string subnetName(name);
  subnets_.erase(subnetName);
  return Changeset{.upserted = {}, .deleted = {{ObjectKind::Subnet, subnetName}}};
}

// ---- Route tables ----

Result<Changeset> Topology::createRouteTable(const RouteTableSpec& spec, int64_t now) {
  if (Status ok = validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (Status ok = checkNameFree(routeTables_, ObjectKind::RouteTable, spec.name); !ok)
    return fail(ok.error());
  if (spec.vpc.empty()) return fail(invalidField("vpc", "a route table needs a vpc"));
  auto owner = lookupIn(vpcs_, ObjectKind::Vpc, spec.vpc, "vpc");
  if (!owner) return fail(owner.error());
  routeTables_.emplace(spec.name,
                       RouteTable{.name = spec.name,
                                  .vpc = spec.vpc,
                                  .isMain = false,
                                  .routes = {Route{(*owner)->cidr, RouteTarget{RouteTargetType::Local, {}}}},
                                  .createdAt = now});
  return Changeset{.upserted = {{ObjectKind::RouteTable, spec.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteRouteTable(std::string_view name) {
  auto found = routeTable(name);
  if (!found) return fail(found.error());
  const RouteTable& table = **found;
  if (table.isMain) {
    return fail(
        conflict("route table \"{}\" is the main route table of vpc \"{}\"; it goes only with its vpc", name,
                 table.vpc));
  }
  std::vector<std::string> users;
  for (const auto& [subnetName, s] : subnets_) {
    if (s.routeTable == name) users.push_back(subnetName);
  }
  if (!users.empty()) {
    return fail(conflict("route table \"{}\" is still associated with subnets: {}", name, joinNames(users)));
  }
  std::string tableName(name);
  routeTables_.erase(tableName);
  return Changeset{.upserted = {}, .deleted = {{ObjectKind::RouteTable, tableName}}};
}

Result<Changeset> Topology::addRoute(std::string_view table, const RouteSpec& spec) {
  auto found = routeTable(table);
  if (!found) return fail(found.error());
  const RouteTable& current = **found;
  auto destination = Cidr::parse(spec.destination, "destination");
  if (!destination) return fail(destination.error());
  auto type = parseRouteTargetType(spec.targetType, "target_type");
  if (!type) return fail(type.error());

  switch (*type) {
    case RouteTargetType::Local:
      return fail(invalidField(
          "target_type", "a local route cannot be added; every route table already has one for its vpc"));
    case RouteTargetType::Blackhole:
      if (!spec.targetName.empty()) {
        return fail(
            invalidField("target", "a blackhole route has no target, but \"{}\" was given", spec.targetName));
      }
      break;
    case RouteTargetType::InternetGateway:
    case RouteTargetType::NatGateway: {
      ObjectKind kind =
          *type == RouteTargetType::InternetGateway ? ObjectKind::InternetGateway : ObjectKind::NatGateway;
      if (spec.targetName.empty()) {
        return fail(
            invalidField("target", "a {} route needs the gateway's name", routeTargetTypeName(*type)));
      }
      const std::string* gatewayVpc = nullptr;
      if (const InternetGateway* igw =
              *type == RouteTargetType::InternetGateway ? findInternetGateway(spec.targetName) : nullptr) {
        gatewayVpc = &igw->vpc;
      } else if (const NatGateway* nat =
                     *type == RouteTargetType::NatGateway ? findNatGateway(spec.targetName) : nullptr) {
        gatewayVpc = &nat->vpc;
      }
      if (!gatewayVpc) {
        return fail(Error(ErrorKind::NotFound,
                          fmt::format("route to a missing gateway: {} \"{}\" not found", objectKindName(kind),
                                      spec.targetName),
                          "target"));
      }
      if (*gatewayVpc != current.vpc) {
        return fail(invalidField("target",
                                 "{} \"{}\" belongs to vpc \"{}\", not to vpc \"{}\" of route table \"{}\"",
                                 objectKindName(kind), spec.targetName, *gatewayVpc, current.vpc, table));
      }
      break;
    }
    case RouteTargetType::Peering: {
      if (spec.targetName.empty())
        return fail(invalidField("target", "a peering route needs the peering's name"));
      const Peering* peering = findPeering(spec.targetName);
      if (!peering) {
        return fail(Error(
            ErrorKind::NotFound,
            fmt::format("route to a missing peering: peering \"{}\" not found", spec.targetName), "target"));
      }
      if (!peering->joins(current.vpc)) {
        return fail(invalidField(
            "target", "peering \"{}\" joins vpcs \"{}\" and \"{}\", not vpc \"{}\" of route table \"{}\"",
            peering->name, peering->vpc, peering->peerVpc, current.vpc, table));
      }
      // As in AWS: any destination inside the peer's CIDR; beyond it the peer would have to forward
      // for us, and peering is not transitive.
      const Vpc* peer = findVpc(peering->otherSide(current.vpc));
      if (peer && !peer->cidr.contains(*destination)) {
        return fail(
            invalidField("destination",
                         "{} is not inside peer vpc \"{}\" ({}): a peering carries traffic only to the "
                         "peer vpc itself (peering is not transitive)",
                         destination->str(), peer->name, peer->cidr.str()));
      }
      break;
    }
  }

  const Vpc* owner = findVpc(current.vpc);
  if (!owner)
    return fail(internalError("route table \"{}\" belongs to missing vpc \"{}\"", table, current.vpc));
  if (owner->cidr.contains(*destination)) {
    return fail(invalidField("destination",
                             "{} lies inside vpc \"{}\" ({}); a route there would shadow the local route",
                             destination->str(), owner->name, owner->cidr.str()));
  }
  for (const Route& route : current.routes) {
    if (route.destination == *destination) {
      return fail(conflict("route table \"{}\" already has a route to {} (to {})", table, destination->str(),
                           describeTarget(route.target)));
    }
  }

  RouteTable& target = routeTables_.find(table)->second;
  target.routes.push_back(Route{*destination, RouteTarget{*type, spec.targetName}});
  sortRoutes(target.routes);
  return Changeset{.upserted = {{ObjectKind::RouteTable, target.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteRoute(std::string_view table, std::string_view destination) {
  auto found = routeTable(table);
  if (!found) return fail(found.error());
  auto cidr = Cidr::parse(destination, "destination");
  if (!cidr) return fail(cidr.error());
  const std::vector<Route>& routes = (*found)->routes;
  auto route =
      std::find_if(routes.begin(), routes.end(), [&](const Route& r) { return r.destination == *cidr; });
  if (route == routes.end()) {
    return fail(notFound("route table \"{}\" has no route to {}", table, cidr->str()));
  }
  if (route->target.type == RouteTargetType::Local) {
    return fail(
        conflict("the local route to {} in route table \"{}\" cannot be deleted", cidr->str(), table));
  }
  RouteTable& target = routeTables_.find(table)->second;
  target.routes.erase(target.routes.begin() + (route - routes.begin()));
  return Changeset{.upserted = {{ObjectKind::RouteTable, target.name}}, .deleted = {}};
}

// ---- Gateways ----

namespace {

// "prod-public 0.0.0.0/0" for every route of `tables` that targets the gateway.
std::vector<std::string> routesTargeting(const std::map<std::string, RouteTable, std::less<>>& tables,
                                         RouteTargetType type, std::string_view gateway) {
  std::vector<std::string> uses;
  for (const auto& [tableName, table] : tables) {
    for (const Route& route : table.routes) {
      if (route.target.type == type && route.target.name == gateway) {
        uses.push_back(fmt::format("{} {}", tableName, route.destination.str()));
      }
    }
  }
  return uses;
}

}  // namespace

Result<Changeset> Topology::createInternetGateway(const InternetGatewaySpec& spec, int64_t now) {
  if (Status ok = validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (Status ok = checkNameFree(internetGateways_, ObjectKind::InternetGateway, spec.name); !ok) {
    return fail(ok.error());
  }
  if (spec.vpc.empty()) return fail(invalidField("vpc", "an internet gateway needs a vpc"));
  auto owner = lookupIn(vpcs_, ObjectKind::Vpc, spec.vpc, "vpc");
  if (!owner) return fail(owner.error());
  if (auto existing = internetGateways(spec.vpc); !existing.empty()) {
    return fail(conflict("vpc \"{}\" already has internet gateway \"{}\"; a vpc has at most one", spec.vpc,
                         existing.front()->name));
  }
  internetGateways_.emplace(spec.name, InternetGateway{.name = spec.name, .vpc = spec.vpc, .createdAt = now});
  return Changeset{.upserted = {{ObjectKind::InternetGateway, spec.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteInternetGateway(std::string_view name) {
  auto found = internetGateway(name);
  if (!found) return fail(found.error());
  if (auto uses = routesTargeting(routeTables_, RouteTargetType::InternetGateway, name); !uses.empty()) {
    return fail(conflict("internet gateway \"{}\" is still the target of routes: {}", name, joinNames(uses)));
  }
  std::string gatewayName(name);
  internetGateways_.erase(gatewayName);
  return Changeset{.upserted = {}, .deleted = {{ObjectKind::InternetGateway, gatewayName}}};
}

Result<Changeset> Topology::createNatGateway(const NatGatewaySpec& spec, int64_t now) {
  if (Status ok = validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (Status ok = checkNameFree(natGateways_, ObjectKind::NatGateway, spec.name); !ok)
    return fail(ok.error());
  if (spec.subnet.empty()) return fail(invalidField("subnet", "a nat gateway needs a subnet"));
  auto home = lookupIn(subnets_, ObjectKind::Subnet, spec.subnet, "subnet");
  if (!home) return fail(home.error());
  natGateways_.emplace(
      spec.name, NatGateway{.name = spec.name, .vpc = (*home)->vpc, .subnet = spec.subnet, .createdAt = now});
  return Changeset{.upserted = {{ObjectKind::NatGateway, spec.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteNatGateway(std::string_view name) {
  auto found = natGateway(name);
  if (!found) return fail(found.error());
  if (auto uses = routesTargeting(routeTables_, RouteTargetType::NatGateway, name); !uses.empty()) {
    return fail(conflict("nat gateway \"{}\" is still the target of routes: {}", name, joinNames(uses)));
  }
  std::string gatewayName(name);
  natGateways_.erase(gatewayName);
  return Changeset{.upserted = {}, .deleted = {{ObjectKind::NatGateway, gatewayName}}};
}

// ---- Peerings ----

Result<Changeset> Topology::createPeering(const PeeringSpec& spec, int64_t now) {
  if (Status ok = validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (Status ok = checkNameFree(peerings_, ObjectKind::Peering, spec.name); !ok) return fail(ok.error());
  if (spec.vpc.empty()) return fail(invalidField("vpc", "a peering needs a vpc"));
  if (spec.peerVpc.empty()) return fail(invalidField("peer_vpc", "a peering needs a peer vpc"));
  auto side = lookupIn(vpcs_, ObjectKind::Vpc, spec.vpc, "vpc");
  if (!side) return fail(side.error());
  auto peer = lookupIn(vpcs_, ObjectKind::Vpc, spec.peerVpc, "peer_vpc");
  if (!peer) return fail(peer.error());
  if (spec.vpc == spec.peerVpc) {
    return fail(invalidField("peer_vpc", "vpc \"{}\" cannot be peered with itself", spec.vpc));
  }
  if ((*side)->cidr.overlaps((*peer)->cidr)) {
    return fail(
        conflict("vpc \"{}\" ({}) and vpc \"{}\" ({}) have overlapping CIDRs; peered vpcs need "
                 "disjoint address ranges",
                 spec.vpc, (*side)->cidr.str(), spec.peerVpc, (*peer)->cidr.str()));
  }
  if (const Peering* existing = peeringBetween(spec.vpc, spec.peerVpc)) {
    return fail(conflict("vpcs \"{}\" and \"{}\" are already peered by peering \"{}\"", spec.vpc,
                         spec.peerVpc, existing->name));
  }
  // The lowest /30 of the link pool no other peering holds.
  const Cidr pool = *Cidr::parse(kPeeringLinkPool);
  std::optional<Cidr> link;
  for (uint64_t offset = 0; offset + 4 <= pool.size() && !link; offset += 4) {
    Cidr candidate =
        Cidr::containing(Ipv4Address(pool.network().value() + static_cast<uint32_t>(offset)), 30);
    bool taken = std::any_of(peerings_.begin(), peerings_.end(),
                             [&](const auto& entry) { return entry.second.link == candidate; });
    if (!taken) link = candidate;
  }
  if (!link) {
    return fail(
        conflict("the peering link pool {} is full: at most {} peerings", pool.str(), pool.size() / 4));
  }
  peerings_.emplace(
      spec.name,
      Peering{.name = spec.name, .vpc = spec.vpc, .peerVpc = spec.peerVpc, .link = *link, .createdAt = now});
  return Changeset{.upserted = {{ObjectKind::Peering, spec.name}}, .deleted = {}};
}

Result<Changeset> Topology::deletePeering(std::string_view name) {
  auto found = peering(name);
  if (!found) return fail(found.error());
  const Peering& current = **found;
  // Refused rather than AWS's blackholed routes: a route or rule that silently stops working is harder
  // to see than an error naming it.
  if (auto uses = routesTargeting(routeTables_, RouteTargetType::Peering, name); !uses.empty()) {
    return fail(conflict("peering \"{}\" is still the target of routes: {}; delete them first", name,
                         joinNames(uses)));
  }
  std::vector<std::string> rules;
  for (const auto& [groupName, group] : securityGroups_) {
    if (!current.joins(group.vpc)) continue;
    const std::string& other = current.otherSide(group.vpc);
    for (const SecurityGroupRule& rule : group.rules) {
      if (!rule.peerGroup) continue;
      const SecurityGroup* peer = findSecurityGroup(*rule.peerGroup);
      if (peer && peer->vpc == other) {
        rules.push_back(fmt::format("{} rule {} (peer group {})", groupName, rule.id, *rule.peerGroup));
      }
    }
  }
  if (!rules.empty()) {
    return fail(
        conflict("peering \"{}\" is still relied on by security group rules naming the other vpc's "
                 "groups: {}; delete them first",
                 name, joinNames(rules)));
  }
  std::string peeringName(name);
  peerings_.erase(peeringName);
  return Changeset{.upserted = {}, .deleted = {{ObjectKind::Peering, peeringName}}};
}

// ---- Security groups ----

Result<Changeset> Topology::createSecurityGroup(const SecurityGroupSpec& spec, int64_t now) {
  if (Status ok = validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (Status ok = checkNameFree(securityGroups_, ObjectKind::SecurityGroup, spec.name); !ok) {
    return fail(ok.error());
  }
  if (spec.vpc.empty()) return fail(invalidField("vpc", "a security group needs a vpc"));
  auto owner = lookupIn(vpcs_, ObjectKind::Vpc, spec.vpc, "vpc");
  if (!owner) return fail(owner.error());
  if (Status ok = checkDescription(spec.description); !ok) return fail(ok.error());

  SecurityGroup group{.name = spec.name,
                      .vpc = spec.vpc,
                      .description = spec.description,
                      .isDefault = false,
                      .rules = {},
                      .nextRuleId = 1,
                      .createdAt = now};
  // As in AWS, a new group lets everything out and nothing in.
  group.rules.push_back(SecurityGroupRule{.id = group.nextRuleId++,
                                          .direction = Direction::Egress,
                                          .protocol = Protocol::All,
                                          .ports = std::nullopt,
                                          .cidr = anywhere(),
                                          .peerGroup = std::nullopt,
                                          .description = {}});
  securityGroups_.emplace(spec.name, std::move(group));
  return Changeset{.upserted = {{ObjectKind::SecurityGroup, spec.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteSecurityGroup(std::string_view name) {
  auto found = securityGroup(name);
  if (!found) return fail(found.error());
  if ((*found)->isDefault) {
    return fail(
        conflict("security group \"{}\" is the default group of vpc \"{}\"; it goes only with its vpc", name,
                 (*found)->vpc));
  }
  std::vector<std::string> referrers;
  for (const auto& [groupName, group] : securityGroups_) {
    if (groupName == name) continue;  // a group may name itself as peer; that goes with it
    bool refers = std::any_of(group.rules.begin(), group.rules.end(),
                              [&](const SecurityGroupRule& rule) { return rule.peerGroup == name; });
    if (refers) referrers.push_back(groupName);
  }
  if (!referrers.empty()) {
    return fail(conflict("security group \"{}\" is still referenced as a peer by security groups: {}", name,
                         joinNames(referrers)));
  }
  std::string groupName(name);
  securityGroups_.erase(groupName);
  return Changeset{.upserted = {}, .deleted = {{ObjectKind::SecurityGroup, groupName}}};
}

Result<Changeset> Topology::addSecurityGroupRule(std::string_view group, const SecurityGroupRuleSpec& spec) {
  auto found = securityGroup(group);
  if (!found) return fail(found.error());
  const SecurityGroup& current = **found;
  auto direction = parseDirection(spec.direction, "direction");
  if (!direction) return fail(direction.error());
  auto protocol = parseProtocol(spec.protocol, "protocol");
  if (!protocol) return fail(protocol.error());
  auto ports = parsePorts(*protocol, spec.fromPort, spec.toPort);
  if (!ports) return fail(ports.error());

  if (spec.cidr && spec.peerGroup) {
    return fail(invalidField("cidr", "a rule names either a cidr or a peer_group, not both"));
  }
  if (!spec.cidr && !spec.peerGroup) return fail(invalidField("cidr", "a rule needs a cidr or a peer_group"));
  std::optional<Cidr> cidr;
  if (spec.cidr) {
    auto parsed = Cidr::parse(*spec.cidr, "cidr");
    if (!parsed) return fail(parsed.error());
    cidr = *parsed;
  } else {
    if (spec.peerGroup->empty()) return fail(invalidField("peer_group", "a security group name is required"));
    auto peer = lookupIn(securityGroups_, ObjectKind::SecurityGroup, *spec.peerGroup, "peer_group");
    if (!peer) return fail(peer.error());
    // A group of another vpc is allowed while a peering joins the two (AWS's peer security group
    // reference); deletePeering refuses while such a rule exists.
    if ((*peer)->vpc != current.vpc && !peeringBetween(current.vpc, (*peer)->vpc)) {
      return fail(invalidField("peer_group",
                               "security group \"{}\" belongs to vpc \"{}\", not vpc \"{}\", and no peering "
                               "joins the two",
                               *spec.peerGroup, (*peer)->vpc, current.vpc));
    }
  }
  if (Status ok = checkDescription(spec.description); !ok) return fail(ok.error());

  for (const SecurityGroupRule& rule : current.rules) {
    if (rule.direction == *direction && rule.protocol == *protocol && rule.ports == *ports &&
        rule.cidr == cidr && rule.peerGroup == spec.peerGroup) {
      return fail(conflict("security group \"{}\" already has this rule (id {}: {} {} {} {})", group, rule.id,
                           directionName(rule.direction), protocolName(rule.protocol),
                           describePorts(rule.ports),
                           cidr ? cidr->str() : fmt::format("group \"{}\"", *spec.peerGroup)));
    }
  }

  SecurityGroup& target = securityGroups_.find(group)->second;
  target.rules.push_back(SecurityGroupRule{.id = target.nextRuleId++,
                                           .direction = *direction,
                                           .protocol = *protocol,
                                           .ports = *ports,
                                           .cidr = cidr,
                                           .peerGroup = spec.peerGroup,
                                           .description = spec.description});
  return Changeset{.upserted = {{ObjectKind::SecurityGroup, target.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteSecurityGroupRule(std::string_view group, int64_t ruleId) {
  auto found = securityGroup(group);
  if (!found) return fail(found.error());
  const std::vector<SecurityGroupRule>& rules = (*found)->rules;
  auto rule =
      std::find_if(rules.begin(), rules.end(), [&](const SecurityGroupRule& r) { return r.id == ruleId; });
  if (rule == rules.end()) return fail(notFound("security group \"{}\" has no rule {}", group, ruleId));
  SecurityGroup& target = securityGroups_.find(group)->second;
  target.rules.erase(target.rules.begin() + (rule - rules.begin()));
  return Changeset{.upserted = {{ObjectKind::SecurityGroup, target.name}}, .deleted = {}};
}

// ---- Network ACLs ----

Result<Changeset> Topology::createNetworkAcl(const NetworkAclSpec& spec, int64_t now) {
  if (Status ok = validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (Status ok = checkNameFree(networkAcls_, ObjectKind::NetworkAcl, spec.name); !ok)
    return fail(ok.error());
  if (spec.vpc.empty()) return fail(invalidField("vpc", "a network acl needs a vpc"));
  auto owner = lookupIn(vpcs_, ObjectKind::Vpc, spec.vpc, "vpc");
  if (!owner) return fail(owner.error());
  // A custom ACL starts empty: only the implicit final deny applies, as in AWS.
  networkAcls_.emplace(
      spec.name,
      NetworkAcl{.name = spec.name, .vpc = spec.vpc, .isDefault = false, .rules = {}, .createdAt = now});
  return Changeset{.upserted = {{ObjectKind::NetworkAcl, spec.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteNetworkAcl(std::string_view name) {
  auto found = networkAcl(name);
  if (!found) return fail(found.error());
  if ((*found)->isDefault) {
    return fail(
        conflict("network acl \"{}\" is the default network acl of vpc \"{}\"; it goes only with its vpc",
                 name, (*found)->vpc));
  }
  std::vector<std::string> users;
  for (const auto& [subnetName, s] : subnets_) {
    if (s.networkAcl == name) users.push_back(subnetName);
  }
  if (!users.empty()) {
    return fail(conflict("network acl \"{}\" is still used by subnets: {}", name, joinNames(users)));
  }
  std::string aclName(name);
  networkAcls_.erase(aclName);
  return Changeset{.upserted = {}, .deleted = {{ObjectKind::NetworkAcl, aclName}}};
}

Result<Changeset> Topology::addNetworkAclRule(std::string_view acl, const NetworkAclRuleSpec& spec) {
  auto found = networkAcl(acl);
  if (!found) return fail(found.error());
  if (spec.number < kMinNaclRuleNumber || spec.number > kMaxNaclRuleNumber) {
    return fail(invalidField("number", "rule number {} is out of range {}-{}", spec.number,
                             kMinNaclRuleNumber, kMaxNaclRuleNumber));
  }
  auto direction = parseDirection(spec.direction, "direction");
  if (!direction) return fail(direction.error());
  auto action = parseRuleAction(spec.action, "action");
  if (!action) return fail(action.error());
  auto protocol = parseProtocol(spec.protocol, "protocol");
  if (!protocol) return fail(protocol.error());
  auto ports = parsePorts(*protocol, spec.fromPort, spec.toPort);
  if (!ports) return fail(ports.error());
  auto cidr = Cidr::parse(spec.cidr, "cidr");
  if (!cidr) return fail(cidr.error());
  int number = static_cast<int>(spec.number);
  for (const NetworkAclRule& rule : (*found)->rules) {
    if (rule.direction == *direction && rule.number == number) {
      return fail(
          conflict("network acl \"{}\" already has {} rule {}", acl, directionName(*direction), number));
    }
  }
  NetworkAcl& target = networkAcls_.find(acl)->second;
  target.rules.push_back(NetworkAclRule{.number = number,
                                        .direction = *direction,
                                        .action = *action,
                                        .protocol = *protocol,
                                        .ports = *ports,
                                        .cidr = *cidr});
  sortAclRules(target.rules);
  return Changeset{.upserted = {{ObjectKind::NetworkAcl, target.name}}, .deleted = {}};
}

Result<Changeset> Topology::deleteNetworkAclRule(std::string_view acl, std::string_view direction,
                                                 int64_t number) {
  auto found = networkAcl(acl);
  if (!found) return fail(found.error());
  auto parsedDirection = parseDirection(direction, "direction");
  if (!parsedDirection) return fail(parsedDirection.error());
  const std::vector<NetworkAclRule>& rules = (*found)->rules;
  auto rule = std::find_if(rules.begin(), rules.end(), [&](const NetworkAclRule& r) {
    return r.direction == *parsedDirection && r.number == number;
  });
  if (rule == rules.end()) {
    return fail(
        notFound("network acl \"{}\" has no {} rule {}", acl, directionName(*parsedDirection), number));
  }
  NetworkAcl& target = networkAcls_.find(acl)->second;
  target.rules.erase(target.rules.begin() + (rule - rules.begin()));
  return Changeset{.upserted = {{ObjectKind::NetworkAcl, target.name}}, .deleted = {}};
}

// ---- Lookups and listings ----

const Vpc* Topology::findVpc(std::string_view name) const {
  return findIn(vpcs_, name);
}
const Subnet* Topology::findSubnet(std::string_view name) const {
  return findIn(subnets_, name);
}
const RouteTable* Topology::findRouteTable(std::string_view name) const {
  return findIn(routeTables_, name);
}
const InternetGateway* Topology::findInternetGateway(std::string_view name) const {
  return findIn(internetGateways_, name);
}
const NatGateway* Topology::findNatGateway(std::string_view name) const {
  return findIn(natGateways_, name);
}
const SecurityGroup* Topology::findSecurityGroup(std::string_view name) const {
  return findIn(securityGroups_, name);
}
const NetworkAcl* Topology::findNetworkAcl(std::string_view name) const {
  return findIn(networkAcls_, name);
}
const Peering* Topology::findPeering(std::string_view name) const {
  return findIn(peerings_, name);
}
const Peering* Topology::peeringBetween(std::string_view a, std::string_view b) const {
  for (const auto& [name, p] : peerings_) {
    if ((p.vpc == a && p.peerVpc == b) || (p.vpc == b && p.peerVpc == a)) return &p;
  }
  return nullptr;
}

Result<const Vpc*> Topology::vpc(std::string_view name) const {
  return lookupIn(vpcs_, ObjectKind::Vpc, name);
}
Result<const Subnet*> Topology::subnet(std::string_view name) const {
  return lookupIn(subnets_, ObjectKind::Subnet, name);
}
Result<const RouteTable*> Topology::routeTable(std::string_view name) const {
  return lookupIn(routeTables_, ObjectKind::RouteTable, name);
}
Result<const InternetGateway*> Topology::internetGateway(std::string_view name) const {
  return lookupIn(internetGateways_, ObjectKind::InternetGateway, name);
}
Result<const NatGateway*> Topology::natGateway(std::string_view name) const {
  return lookupIn(natGateways_, ObjectKind::NatGateway, name);
}
Result<const SecurityGroup*> Topology::securityGroup(std::string_view name) const {
  return lookupIn(securityGroups_, ObjectKind::SecurityGroup, name);
}
Result<const NetworkAcl*> Topology::networkAcl(std::string_view name) const {
  return lookupIn(networkAcls_, ObjectKind::NetworkAcl, name);
}
Result<const Peering*> Topology::peering(std::string_view name) const {
  return lookupIn(peerings_, ObjectKind::Peering, name);
}

std::vector<const Vpc*> Topology::vpcs() const {
  std::vector<const Vpc*> list;
  for (const auto& [name, v] : vpcs_) list.push_back(&v);
  return list;
}
std::vector<const Subnet*> Topology::subnets(std::string_view vpc) const {
  return listIn(subnets_, vpc);
}
std::vector<const RouteTable*> Topology::routeTables(std::string_view vpc) const {
  return listIn(routeTables_, vpc);
}
std::vector<const InternetGateway*> Topology::internetGateways(std::string_view vpc) const {
  return listIn(internetGateways_, vpc);
}
std::vector<const NatGateway*> Topology::natGateways(std::string_view vpc) const {
  return listIn(natGateways_, vpc);
}
std::vector<const SecurityGroup*> Topology::securityGroups(std::string_view vpc) const {
  return listIn(securityGroups_, vpc);
}
std::vector<const NetworkAcl*> Topology::networkAcls(std::string_view vpc) const {
  return listIn(networkAcls_, vpc);
}
std::vector<const Peering*> Topology::peerings(std::string_view vpc) const {
  std::vector<const Peering*> list;
  for (const auto& [name, p] : peerings_) {
    if (vpc.empty() || p.joins(vpc)) list.push_back(&p);
  }
  return list;
}

const RouteTable* Topology::mainRouteTable(std::string_view vpc) const {
  for (const auto& [name, table] : routeTables_) {
    if (table.vpc == vpc && table.isMain) return &table;
  }
  return nullptr;
}

const NetworkAcl* Topology::defaultNetworkAcl(std::string_view vpc) const {
  for (const auto& [name, acl] : networkAcls_) {
    if (acl.vpc == vpc && acl.isDefault) return &acl;
  }
  return nullptr;
}

const SecurityGroup* Topology::defaultSecurityGroup(std::string_view vpc) const {
  for (const auto& [name, group] : securityGroups_) {
    if (group.vpc == vpc && group.isDefault) return &group;
  }
  return nullptr;
}

SubnetReachability Topology::reachability(const Subnet& s) const {
  const RouteTable* table = findRouteTable(s.routeTable);
  if (!table) return SubnetReachability::Isolated;
  const Cidr defaultRoute = anywhere();
  for (const Route& route : table->routes) {
    if (route.destination != defaultRoute) continue;
    // A route to a gateway that no longer exists leads nowhere.
    if (route.target.type == RouteTargetType::InternetGateway && findInternetGateway(route.target.name)) {
      return SubnetReachability::Public;
    }
    if (route.target.type == RouteTargetType::NatGateway && findNatGateway(route.target.name)) {
      return SubnetReachability::PrivateWithNat;
    }
    return SubnetReachability::Isolated;
  }
  return SubnetReachability::Isolated;
}

// ---- Loading ----

void Topology::insert(Vpc v) {
  std::string key = v.name;
  vpcs_.insert_or_assign(std::move(key), std::move(v));
}
void Topology::insert(Subnet s) {
  std::string key = s.name;
  subnets_.insert_or_assign(std::move(key), std::move(s));
}
void Topology::insert(RouteTable t) {
  std::string key = t.name;
  sortRoutes(t.routes);
  routeTables_.insert_or_assign(std::move(key), std::move(t));
}
void Topology::insert(InternetGateway g) {
  std::string key = g.name;
  internetGateways_.insert_or_assign(std::move(key), std::move(g));
}
void Topology::insert(NatGateway g) {
  std::string key = g.name;
  natGateways_.insert_or_assign(std::move(key), std::move(g));
}
void Topology::insert(SecurityGroup g) {
  std::string key = g.name;
  securityGroups_.insert_or_assign(std::move(key), std::move(g));
}
void Topology::insert(Peering p) {
  std::string key = p.name;
  peerings_.insert_or_assign(std::move(key), std::move(p));
}
void Topology::insert(NetworkAcl a) {
  std::string key = a.name;
  sortAclRules(a.rules);
  networkAcls_.insert_or_assign(std::move(key), std::move(a));
}

Status Topology::checkIntegrity() const {
  std::vector<std::string> problems;
  // "subnet \"web\" uses route table \"rt\", which does not exist"
  auto missing = [&](std::string_view ownerKind, std::string_view owner, std::string_view relation,
                     ObjectKind kind, std::string_view name) {
    problems.push_back(fmt::format("{} \"{}\" {} {} \"{}\", which does not exist", ownerKind, owner, relation,
                                   objectKindName(kind), name));
  };
  auto checkVpcOf = [&](ObjectKind ownerKind, const auto& objects) {
    for (const auto& [name, object] : objects) {
      if (!vpcs_.contains(object.vpc))
        missing(objectKindName(ownerKind), name, "is in", ObjectKind::Vpc, object.vpc);
    }
  };
  checkVpcOf(ObjectKind::Subnet, subnets_);
  checkVpcOf(ObjectKind::RouteTable, routeTables_);
  checkVpcOf(ObjectKind::InternetGateway, internetGateways_);
  checkVpcOf(ObjectKind::NatGateway, natGateways_);
  checkVpcOf(ObjectKind::SecurityGroup, securityGroups_);
  checkVpcOf(ObjectKind::NetworkAcl, networkAcls_);

  for (const auto& [name, s] : subnets_) {
    if (!routeTables_.contains(s.routeTable))
      missing("subnet", name, "uses", ObjectKind::RouteTable, s.routeTable);
    if (!networkAcls_.contains(s.networkAcl))
      missing("subnet", name, "uses", ObjectKind::NetworkAcl, s.networkAcl);
  }
  for (const auto& [name, nat] : natGateways_) {
    if (!subnets_.contains(nat.subnet)) missing("nat gateway", name, "is in", ObjectKind::Subnet, nat.subnet);
  }
  for (const auto& [name, table] : routeTables_) {
    for (const Route& route : table.routes) {
      std::string relation = fmt::format("has a route to {} via", route.destination.str());
      if (route.target.type == RouteTargetType::InternetGateway &&
          !internetGateways_.contains(route.target.name)) {
        missing("route table", name, relation, ObjectKind::InternetGateway, route.target.name);
      }
      if (route.target.type == RouteTargetType::NatGateway && !natGateways_.contains(route.target.name)) {
        missing("route table", name, relation, ObjectKind::NatGateway, route.target.name);
      }
      if (route.target.type == RouteTargetType::Peering && !peerings_.contains(route.target.name)) {
        missing("route table", name, relation, ObjectKind::Peering, route.target.name);
      }
    }
  }
  for (const auto& [name, group] : securityGroups_) {
    for (const SecurityGroupRule& rule : group.rules) {
      if (rule.peerGroup && !securityGroups_.contains(*rule.peerGroup)) {
        missing("security group", name, fmt::format("rule {} peers with", rule.id), ObjectKind::SecurityGroup,
                *rule.peerGroup);
      }
    }
  }
  for (const auto& [name, p] : peerings_) {
    for (const std::string& side : {p.vpc, p.peerVpc}) {
      if (!vpcs_.contains(side)) missing("peering", name, "joins", ObjectKind::Vpc, side);
    }
  }
  for (const auto& [name, v] : vpcs_) {
    if (!mainRouteTable(name)) problems.push_back(fmt::format("vpc \"{}\" has no main route table", name));
    if (!defaultNetworkAcl(name))
      problems.push_back(fmt::format("vpc \"{}\" has no default network acl", name));
    if (!defaultSecurityGroup(name)) {
      problems.push_back(fmt::format("vpc \"{}\" has no default security group", name));
    }
  }
  if (!problems.empty()) return fail(internalError("topology integrity: {}", fmt::join(problems, "; ")));
  return {};
}

}  // namespace corral::net
