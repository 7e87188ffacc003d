// The network model's rows: reading the whole topology back and writing each changeset in one transaction.
// One relational table per object kind, child rows cascade from parents (the schema: store_schema.cc).
#include <fmt/format.h>

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "daemon/store.h"
#include "daemon/store_sqlite.h"

namespace corral::daemon {

using namespace sql;

namespace {

// Finds the parent a child row belongs to; a child without one was not written by corral.
template <class Parent>
Result<Parent*> parentOf(std::map<std::string, Parent, std::less<>>& parents, const RowReader& row,
                         std::string_view column, const std::string& name) {
  auto it = parents.find(name);
  if (it == parents.end()) return fail(row.bad(column, "\"{}\" does not exist", name));
  return &it->second;
}

Result<net::Topology> readTopology(sqlite3* db) {
  net::Topology topology;

  auto vpcs =
      forEachRow(db, "SELECT name, cidr, created_at FROM vpcs ORDER BY name", [&](sqlite3_stmt* s) -> Status {
        net::Vpc vpc;
        vpc.name = keyColumn(s, 0);
        RowReader row(s, "vpcs", fmt::format("\"{}\"", vpc.name));
        CORRAL_READ(vpc.name, row.text(0, "name"));
        CORRAL_READ(vpc.cidr, row.cidr(1, "cidr"));
        CORRAL_READ(vpc.createdAt, row.integer(2, "created_at"));
        topology.insert(std::move(vpc));
        return {};
      });
  if (!vpcs) return fail(std::move(vpcs.error()));

  std::map<std::string, net::RouteTable, std::less<>> routeTables;
  auto tables = forEachRow(db, "SELECT name, vpc, is_main, created_at FROM route_tables ORDER BY name",
                           [&](sqlite3_stmt* s) -> Status {
                             net::RouteTable table;
                             table.name = keyColumn(s, 0);
                             RowReader row(s, "route_tables", fmt::format("\"{}\"", table.name));
                             CORRAL_READ(table.name, row.text(0, "name"));
                             CORRAL_READ(table.vpc, row.text(1, "vpc"));
                             CORRAL_READ(table.isMain, row.boolean(2, "is_main"));
                             CORRAL_READ(table.createdAt, row.integer(3, "created_at"));
                             routeTables.emplace(table.name, std::move(table));
                             return {};
                           });
  if (!tables) return fail(std::move(tables.error()));

  auto routes =
      forEachRow(db,
                 "SELECT route_table, destination, target_type, target_name FROM routes "
                 "ORDER BY route_table, position",
                 [&](sqlite3_stmt* s) -> Status {
                   RowReader row(s, "routes", fmt::format("(\"{}\", {})", keyColumn(s, 0), keyColumn(s, 1)));
                   std::string tableName;
                   CORRAL_READ(tableName, row.text(0, "route_table"));
                   net::RouteTable* table = nullptr;
                   CORRAL_READ(table, parentOf(routeTables, row, "route_table", tableName));
                   net::Route route;
                   CORRAL_READ(route.destination, row.cidr(1, "destination"));
                   CORRAL_READ(route.target.type, row.name(2, "target_type", &net::parseRouteTargetType));
                   std::optional<std::string> targetName;
                   CORRAL_READ(targetName, row.optionalText(3, "target_name"));
                   route.target.name = targetName.value_or("");
                   table->routes.push_back(std::move(route));
                   return {};
                 });
  if (!routes) return fail(std::move(routes.error()));
  for (auto& [name, table] : routeTables) topology.insert(std::move(table));

  std::map<std::string, net::NetworkAcl, std::less<>> networkAcls;
  auto acls = forEachRow(db, "SELECT name, vpc, is_default, created_at FROM network_acls ORDER BY name",
                         [&](sqlite3_stmt* s) -> Status {
                           net::NetworkAcl acl;
                           acl.name = keyColumn(s, 0);
                           RowReader row(s, "network_acls", fmt::format("\"{}\"", acl.name));
                           CORRAL_READ(acl.name, row.text(0, "name"));
                           CORRAL_READ(acl.vpc, row.text(1, "vpc"));
                           CORRAL_READ(acl.isDefault, row.boolean(2, "is_default"));
                           CORRAL_READ(acl.createdAt, row.integer(3, "created_at"));
                           networkAcls.emplace(acl.name, std::move(acl));
                           return {};
                         });
  if (!acls) return fail(std::move(acls.error()));

  auto aclRules = forEachRow(
      db,
      "SELECT network_acl, number, direction, action, protocol, from_port, to_port, cidr "
      "FROM network_acl_rules ORDER BY network_acl, position",
      [&](sqlite3_stmt* s) -> Status {
        RowReader row(s, "network_acl_rules",
                      fmt::format("(\"{}\", {} {})", keyColumn(s, 0), keyColumn(s, 2), keyColumn(s, 1)));
        std::string aclName;
        CORRAL_READ(aclName, row.text(0, "network_acl"));
        net::NetworkAcl* acl = nullptr;
        CORRAL_READ(acl, parentOf(networkAcls, row, "network_acl", aclName));
        net::NetworkAclRule rule;
        CORRAL_READ(rule.number, row.smallInteger(1, "number"));
        CORRAL_READ(rule.direction, row.name(2, "direction", &net::parseDirection));
        CORRAL_READ(rule.action, row.name(3, "action", &net::parseRuleAction));
        CORRAL_READ(rule.protocol, row.name(4, "protocol", &net::parseProtocol));
        CORRAL_READ(rule.ports, row.ports(5, 6));
        CORRAL_READ(rule.cidr, row.cidr(7, "cidr"));
        acl->rules.push_back(std::move(rule));
        return {};
      });
  if (!aclRules) return fail(std::move(aclRules.error()));
  for (auto& [name, acl] : networkAcls) topology.insert(std::move(acl));

  auto subnets = forEachRow(
      db,
      "SELECT name, vpc, cidr, availability_zone, map_public_ip, route_table, network_acl, created_at "
      "FROM subnets ORDER BY name",
      [&](sqlite3_stmt* s) -> Status {
        net::Subnet subnet;
        subnet.name = keyColumn(s, 0);
        RowReader row(s, "subnets", fmt::format("\"{}\"", subnet.name));
        CORRAL_READ(subnet.name, row.text(0, "name"));
        CORRAL_READ(subnet.vpc, row.text(1, "vpc"));
        CORRAL_READ(subnet.cidr, row.cidr(2, "cidr"));
        CORRAL_READ(subnet.availabilityZone, row.text(3, "availability_zone"));
        CORRAL_READ(subnet.mapPublicIp, row.boolean(4, "map_public_ip"));
        CORRAL_READ(subnet.routeTable, row.text(5, "route_table"));
        CORRAL_READ(subnet.networkAcl, row.text(6, "network_acl"));
        CORRAL_READ(subnet.createdAt, row.integer(7, "created_at"));
        topology.insert(std::move(subnet));
        return {};
      });
  if (!subnets) return fail(std::move(subnets.error()));

  auto internetGateways =
      forEachRow(db, "SELECT name, vpc, created_at FROM internet_gateways ORDER BY name",
                 [&](sqlite3_stmt* s) -> Status {
                   net::InternetGateway gateway;
                   gateway.name = keyColumn(s, 0);
                   RowReader row(s, "internet_gateways", fmt::format("\"{}\"", gateway.name));
                   CORRAL_READ(gateway.name, row.text(0, "name"));
                   CORRAL_READ(gateway.vpc, row.text(1, "vpc"));
                   CORRAL_READ(gateway.createdAt, row.integer(2, "created_at"));
                   topology.insert(std::move(gateway));
                   return {};
                 });
  if (!internetGateways) return fail(std::move(internetGateways.error()));

  auto natGateways = forEachRow(db, "SELECT name, vpc, subnet, created_at FROM nat_gateways ORDER BY name",
                                [&](sqlite3_stmt* s) -> Status {
                                  net::NatGateway gateway;
                                  gateway.name = keyColumn(s, 0);
                                  RowReader row(s, "nat_gateways", fmt::format("\"{}\"", gateway.name));
                                  CORRAL_READ(gateway.name, row.text(0, "name"));
                                  CORRAL_READ(gateway.vpc, row.text(1, "vpc"));
                                  CORRAL_READ(gateway.subnet, row.text(2, "subnet"));
                                  CORRAL_READ(gateway.createdAt, row.integer(3, "created_at"));
                                  topology.insert(std::move(gateway));
                                  return {};
                                });
  if (!natGateways) return fail(std::move(natGateways.error()));

  auto peerings = forEachRow(db, "SELECT name, vpc, peer_vpc, link, created_at FROM peerings ORDER BY name",
                             [&](sqlite3_stmt* s) -> Status {
                               net::Peering peering;
                               peering.name = keyColumn(s, 0);
                               RowReader row(s, "peerings", fmt::format("\"{}\"", peering.name));
                               CORRAL_READ(peering.name, row.text(0, "name"));
                               CORRAL_READ(peering.vpc, row.text(1, "vpc"));
                               CORRAL_READ(peering.peerVpc, row.text(2, "peer_vpc"));
                               CORRAL_READ(peering.link, row.cidr(3, "link"));
                               CORRAL_READ(peering.createdAt, row.integer(4, "created_at"));
                               topology.insert(std::move(peering));
                               return {};
                             });
  if (!peerings) return fail(std::move(peerings.error()));

  std::map<std::string, net::SecurityGroup, std::less<>> securityGroups;
  auto groups = forEachRow(db,
                           "SELECT name, vpc, description, is_default, next_rule_id, created_at FROM "
                           "security_groups ORDER BY name",
                           [&](sqlite3_stmt* s) -> Status {
                             net::SecurityGroup group;
                             group.name = keyColumn(s, 0);
                             RowReader row(s, "security_groups", fmt::format("\"{}\"", group.name));
                             CORRAL_READ(group.name, row.text(0, "name"));
                             CORRAL_READ(group.vpc, row.text(1, "vpc"));
                             CORRAL_READ(group.description, row.text(2, "description"));
                             CORRAL_READ(group.isDefault, row.boolean(3, "is_default"));
                             CORRAL_READ(group.nextRuleId, row.integer(4, "next_rule_id"));
                             CORRAL_READ(group.createdAt, row.integer(5, "created_at"));
                             securityGroups.emplace(group.name, std::move(group));
                             return {};
                           });
  if (!groups) return fail(std::move(groups.error()));

  auto groupRules = forEachRow(
      db,
      "SELECT security_group, id, direction, protocol, from_port, to_port, cidr, peer_group, description "
      "FROM security_group_rules ORDER BY security_group, position",
      [&](sqlite3_stmt* s) -> Status {
        RowReader row(s, "security_group_rules",
                      fmt::format("(\"{}\", id {})", keyColumn(s, 0), keyColumn(s, 1)));
        std::string groupName;
        CORRAL_READ(groupName, row.text(0, "security_group"));
        net::SecurityGroup* group = nullptr;
        CORRAL_READ(group, parentOf(securityGroups, row, "security_group", groupName));
        net::SecurityGroupRule rule;
        CORRAL_READ(rule.id, row.integer(1, "id"));
        CORRAL_READ(rule.direction, row.name(2, "direction", &net::parseDirection));
        CORRAL_READ(rule.protocol, row.name(3, "protocol", &net::parseProtocol));
        CORRAL_READ(rule.ports, row.ports(4, 5));
        CORRAL_READ(rule.cidr, row.optionalCidr(6, "cidr"));
        CORRAL_READ(rule.peerGroup, row.optionalText(7, "peer_group"));
        CORRAL_READ(rule.description, row.text(8, "description"));
        group->rules.push_back(std::move(rule));
        return {};
      });
  if (!groupRules) return fail(std::move(groupRules.error()));
  for (auto& [name, group] : securityGroups) topology.insert(std::move(group));

  return topology;
}

// ---- Writing objects ----

std::optional<int64_t> portFrom(const std::optional<net::PortRange>& ports) {
  return ports ? std::optional<int64_t>(ports->from) : std::nullopt;
}
std::optional<int64_t> portTo(const std::optional<net::PortRange>& ports) {
  return ports ? std::optional<int64_t>(ports->to) : std::nullopt;
}
std::optional<std::string> cidrText(const std::optional<net::Cidr>& cidr) {
  return cidr ? std::optional<std::string>(cidr->str()) : std::nullopt;
}

// Parents are written with an UPSERT, not INSERT OR REPLACE: REPLACE deletes the old row first, and that
// delete cascades to the children and counts against deferred references to it. An UPSERT updates in
// place; the children are then rewritten whole (delete all, insert all), so the stored rows equal the
// object exactly whether it was new or not.
template <class Child, class BindChild>
Status rewriteChildren(sqlite3* db, std::string_view deleteSql, std::string_view insertSql,
                       const std::string& parent, const std::vector<Child>& children, BindChild&& bindChild) {
  if (auto status = runBound(db, deleteSql, [&](Binder& b) { b.text(parent); }); !status) return status;
  auto insert = Statement::prepare(db, insertSql);
  if (!insert) return fail(std::move(insert.error()));
  for (size_t position = 0; position < children.size(); ++position) {
    Binder binder(*insert);
    binder.text(parent).integer(static_cast<int64_t>(position));
    bindChild(binder, children[position]);
    if (auto status = binder.run(); !status) return status;
  }
  return {};
}

Status writeObject(sqlite3* db, const net::Vpc& vpc) {
  return runBound(db,
                  "INSERT INTO vpcs (name, cidr, created_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET cidr = excluded.cidr, created_at = excluded.created_at",
                  [&](Binder& b) { b.text(vpc.name).text(vpc.cidr.str()).integer(vpc.createdAt); });
}

Status writeObject(sqlite3* db, const net::Subnet& subnet) {
  return runBound(db,
                  "INSERT INTO subnets (name, vpc, cidr, availability_zone, map_public_ip, route_table, "
                  "network_acl, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, cidr = excluded.cidr, "
                  "availability_zone = excluded.availability_zone, map_public_ip = excluded.map_public_ip, "
                  "route_table = excluded.route_table, network_acl = excluded.network_acl, "
                  "created_at = excluded.created_at",
                  [&](Binder& b) {
                    b.text(subnet.name)
                        .text(subnet.vpc)
                        .text(subnet.cidr.str())
                        .text(subnet.availabilityZone)
                        .integer(subnet.mapPublicIp ? 1 : 0)
                        .text(subnet.routeTable)
                        .text(subnet.networkAcl)
                        .integer(subnet.createdAt);
                  });
}

Status writeObject(sqlite3* db, const net::RouteTable& table) {
  auto status =
      runBound(db,
               "INSERT INTO route_tables (name, vpc, is_main, created_at) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, is_main = excluded.is_main, "
               "created_at = excluded.created_at",
               [&](Binder& b) {
                 b.text(table.name).text(table.vpc).integer(table.isMain ? 1 : 0).integer(table.createdAt);
               });
  if (!status) return status;
  return rewriteChildren(
      db, "DELETE FROM routes WHERE route_table = ?",
      "INSERT INTO routes (route_table, position, destination, target_type, target_name) "
      "VALUES (?, ?, ?, ?, ?)",
      table.name, table.routes, [](Binder& b, const net::Route& route) {
        b.text(route.destination.str())
            .text(net::routeTargetTypeName(route.target.type))
            .optionalText(route.target.name.empty() ? std::nullopt : std::optional(route.target.name));
      });
}

Status writeObject(sqlite3* db, const net::InternetGateway& gateway) {
  return runBound(db,
                  "INSERT INTO internet_gateways (name, vpc, created_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, created_at = excluded.created_at",
                  [&](Binder& b) { b.text(gateway.name).text(gateway.vpc).integer(gateway.createdAt); });
}

Status writeObject(sqlite3* db, const net::NatGateway& gateway) {
  return runBound(db,
                  "INSERT INTO nat_gateways (name, vpc, subnet, created_at) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, subnet = excluded.subnet, "
                  "created_at = excluded.created_at",
                  [&](Binder& b) {
                    b.text(gateway.name).text(gateway.vpc).text(gateway.subnet).integer(gateway.createdAt);
                  });
}

Status writeObject(sqlite3* db, const net::Peering& peering) {
  return runBound(db,
                  "INSERT INTO peerings (name, vpc, peer_vpc, link, created_at) VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, peer_vpc = excluded.peer_vpc, "
                  "link = excluded.link, created_at = excluded.created_at",
                  [&](Binder& b) {
                    b.text(peering.name)
                        .text(peering.vpc)
                        .text(peering.peerVpc)
                        .text(peering.link.str())
                        .integer(peering.createdAt);
                  });
}

Status writeObject(sqlite3* db, const net::SecurityGroup& group) {
  auto status =
      runBound(db,
               "INSERT INTO security_groups (name, vpc, description, is_default, next_rule_id, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, description = excluded.description, "
               "is_default = excluded.is_default, next_rule_id = excluded.next_rule_id, "
               "created_at = excluded.created_at",
               [&](Binder& b) {
                 b.text(group.name)
                     .text(group.vpc)
                     .text(group.description)
                     .integer(group.isDefault ? 1 : 0)
                     .integer(group.nextRuleId)
                     .integer(group.createdAt);
               });
  if (!status) return status;
  return rewriteChildren(
      db, "DELETE FROM security_group_rules WHERE security_group = ?",
      "INSERT INTO security_group_rules (security_group, position, id, direction, protocol, "
      "from_port, to_port, cidr, peer_group, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      group.name, group.rules, [](Binder& b, const net::SecurityGroupRule& rule) {
        b.integer(rule.id)
            .text(net::directionName(rule.direction))
            .text(net::protocolName(rule.protocol))
            .optionalInteger(portFrom(rule.ports))
            .optionalInteger(portTo(rule.ports))
            .optionalText(cidrText(rule.cidr))
            .optionalText(rule.peerGroup)
            .text(rule.description);
      });
}

Status writeObject(sqlite3* db, const net::NetworkAcl& acl) {
  auto status =
      runBound(db,
               "INSERT INTO network_acls (name, vpc, is_default, created_at) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, is_default = excluded.is_default, "
               "created_at = excluded.created_at",
               [&](Binder& b) {
                 b.text(acl.name).text(acl.vpc).integer(acl.isDefault ? 1 : 0).integer(acl.createdAt);
               });
  if (!status) return status;
  return rewriteChildren(db, "DELETE FROM network_acl_rules WHERE network_acl = ?",
                         "INSERT INTO network_acl_rules (network_acl, position, number, direction, action, "
                         "protocol, from_port, to_port, cidr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         acl.name, acl.rules, [](Binder& b, const net::NetworkAclRule& rule) {
                           b.integer(rule.number)
                               .text(net::directionName(rule.direction))
                               .text(net::ruleActionName(rule.action))
                               .text(net::protocolName(rule.protocol))
                               .optionalInteger(portFrom(rule.ports))
                               .optionalInteger(portTo(rule.ports))
                               .text(rule.cidr.str());
                         });
}

// The table that holds a kind's objects; the children go with it by cascade.
std::string_view tableOf(net::ObjectKind kind) {
  switch (kind) {
    case net::ObjectKind::Vpc:
      return "vpcs";
    case net::ObjectKind::Subnet:
      return "subnets";
    case net::ObjectKind::RouteTable:
      return "route_tables";
    case net::ObjectKind::InternetGateway:
      return "internet_gateways";
    case net::ObjectKind::NatGateway:
      return "nat_gateways";
    case net::ObjectKind::SecurityGroup:
      return "security_groups";
    case net::ObjectKind::NetworkAcl:
      return "network_acls";
    case net::ObjectKind::Peering:
      return "peerings";
  }
  return "";
}

// Calls `use` with the object `ref` names in `topology` and returns its result, or false when the topology
// does not hold it.
template <class Use>
Result<bool> withObject(const net::Topology& topology, const net::ObjectRef& ref, Use&& use) {
  switch (ref.kind) {
    case net::ObjectKind::Vpc:
      if (auto* object = topology.findVpc(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::Subnet:
      if (auto* object = topology.findSubnet(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::RouteTable:
      if (auto* object = topology.findRouteTable(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::InternetGateway:
      if (auto* object = topology.findInternetGateway(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::NatGateway:
      if (auto* object = topology.findNatGateway(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::SecurityGroup:
      if (auto* object = topology.findSecurityGroup(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::NetworkAcl:
      if (auto* object = topology.findNetworkAcl(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::Peering:
      if (auto* object = topology.findPeering(ref.name)) return use(*object);
      return false;
  }
  return false;
}

Status upsertObject(sqlite3* db, const net::Topology& after, const net::ObjectRef& ref) {
  auto found = withObject(after, ref, [&](const auto& object) -> Result<bool> {
    if (auto status = writeObject(db, object); !status) return fail(std::move(status.error()));
    return true;
  });
  if (!found) return fail(std::move(found.error()));
  if (!*found) {
    return fail(internalError("the changeset names it, but the changed topology does not hold it"));
  }
  return {};
}

Status deleteObject(sqlite3* db, const net::Topology& after, const net::ObjectRef& ref) {
  auto stillThere = withObject(after, ref, [](const auto&) -> Result<bool> { return true; });
  if (stillThere && *stillThere) {
    return fail(internalError("the changeset deletes it, but the changed topology still holds it"));
  }
  // The table name comes from the closed set above, never from input; the value is bound.
  auto statement = Statement::prepare(db, fmt::format("DELETE FROM {} WHERE name = ?", tableOf(ref.kind)));
  if (!statement) return fail(std::move(statement.error()));
  Binder binder(*statement);
  binder.text(ref.name);
  if (auto status = binder.run(); !status) return status;
  // Memory and disk disagreeing is a bug worth stopping for, not something to paper over.
  if (statement->changes() == 0) {
    return fail(internalError("it is not in the database"));
  }
  return {};
}

}  // namespace

Result<net::Topology> Store::loadTopology() const {
  auto wrap = [&](Error error) {
    // Whatever went wrong, the stored state is at fault, not a request.
    return fail(
        Error(ErrorKind::Internal, std::move(error).wrap(fmt::format("load store \"{}\"", path_)).message()));
  };
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  auto topology = readTopology(db_.get());
  if (!topology) return wrap(std::move(topology.error()));
  if (auto status = transaction->commit(); !status) return wrap(std::move(status.error()));
  if (auto status = topology->checkIntegrity(); !status)
    return wrap(std::move(status.error()).wrap("integrity check"));
  return topology;
}

Status Store::apply(const net::Topology& after, const net::Changeset& changes,
                    std::optional<uint64_t> modelEntry) {
  auto wrap = [&](Error error) { return fail(std::move(error).wrap(fmt::format("store \"{}\"", path_))); };
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  for (const net::ObjectRef& ref : changes.upserted) {
    if (auto status = upsertObject(db_.get(), after, ref); !status) {
      return wrap(std::move(status.error())
                      .wrap(fmt::format("write {} \"{}\"", net::objectKindName(ref.kind), ref.name)));
    }
  }
  for (const net::ObjectRef& ref : changes.deleted) {
    if (auto status = deleteObject(db_.get(), after, ref); !status) {
      return wrap(std::move(status.error())
                      .wrap(fmt::format("delete {} \"{}\"", net::objectKindName(ref.kind), ref.name)));
    }
  }
  if (modelEntry) {
    auto statement = Statement::prepare(db_.get(),
                                        "INSERT INTO cluster_model (id, applied) VALUES (1, ?) "
                                        "ON CONFLICT (id) DO UPDATE SET applied = excluded.applied");
    if (!statement) return wrap(std::move(statement.error()));
    if (auto bound = statement->bindInt(1, static_cast<int64_t>(*modelEntry)); !bound)
      return wrap(std::move(bound.error()));
    if (auto status = statement->run(); !status)
      return wrap(std::move(status.error()).wrap("write model entry"));
  }
  if (auto status = transaction->commit(); !status) return wrap(std::move(status.error()));
  return {};
}

Result<uint64_t> Store::modelApplied() const {
  std::lock_guard lock(*mutex_);
  uint64_t applied = 0;
  auto read =
      forEachRow(db_.get(), "SELECT applied FROM cluster_model WHERE id = 1", [&](sqlite3_stmt* s) -> Status {
        applied = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
        return {};
      });
  if (!read) return fail(std::move(read.error()).wrap(fmt::format("store \"{}\": read model entry", path_)));
  return applied;
}

}  // namespace corral::daemon
