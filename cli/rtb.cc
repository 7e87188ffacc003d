// `corral rtb`: route tables, the stairs and corridors that send each destination's traffic somewhere,
// and `corral rtb route` for their routes.
#include <iostream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

using api::ObjectKind;

std::string routeTarget(const json& route) {
  const json& name = field(route, "target");
  return name.is_null() ? displayText(field(route, "target_type")) : displayText(name);
}

void printRouteTable(const json& table) {
  std::vector<std::pair<std::string, std::string>> lines = {
      {"name", displayText(field(table, "name"))},
      {"vpc", displayText(field(table, "vpc"))},
      {"main", field(table, "main") == true ? "yes (subnets without their own table use it)" : "no"},
  };
  if (table.contains("subnets")) lines.emplace_back("subnets", displayText(field(table, "subnets")));
  lines.emplace_back("created", displayTime(field(table, "created_at")));
  printFields(lines);
  std::cout << "\nroutes (most specific destination wins):\n";
  Table routes({"destination", "target type", "target"});
  for (const json& route : field(table, "routes")) {
    routes.add({displayText(field(route, "destination")), displayText(field(route, "target_type")),
                routeTarget(route)});
  }
  routes.print();
}

Command routeAddCommand() {
  return leaf(
      "add", "add a route: send traffic for a destination to a gateway or a peered VPC, or drop it",
      {{"TABLE", "the route table's name"}},
      "--destination CIDR (--igw GATEWAY | --natgw GATEWAY | --peering PEERING | --blackhole)",
      [](po::options_description& options) {
        options.add_options()  //
            ("destination", po::value<std::string>()->value_name("CIDR"),
             "where the traffic goes, e.g. 0.0.0.0/0")  //
            ("igw", po::value<std::string>()->value_name("GATEWAY"),
             "out through this internet gateway (front door)")                                          //
            ("natgw", po::value<std::string>()->value_name("GATEWAY"), "out through this NAT gateway")  //
            ("peering", po::value<std::string>()->value_name("PEERING"),
             "to the peer VPC through this VPC peering (destination inside the peer's CIDR)")  //
            ("blackhole", "drop the traffic");
      },
      [](const Invocation& invocation) {
        api::AddRoute request;
        request.table = invocation.arguments[0];
        request.spec.destination = invocation.requiredValue("destination");
        std::string target = *oneOf(invocation, {"igw", "natgw", "peering", "blackhole"}, true);
        if (target == "igw") {
          request.spec.targetType = "internet_gateway";
          request.spec.targetName = invocation.requiredValue("igw");
        } else if (target == "natgw") {
          request.spec.targetType = "nat_gateway";
          request.spec.targetName = invocation.requiredValue("natgw");
        } else if (target == "peering") {
          request.spec.targetType = "peering";
          request.spec.targetName = invocation.requiredValue("peering");
        } else {
          request.spec.targetType = "blackhole";
        }
        return respond(invocation, request, [&](const json& table) {
          fmt::print("added route {} -> {} to route table {}\n", request.spec.destination,
                     request.spec.targetName.empty() ? request.spec.targetType : request.spec.targetName,
                     request.table);
          printRouteTable(table);
        });
      });
}

Command routeRemoveCommand() {
  return leaf(
      "rm", "remove a route (the local route stays: it is what makes the VPC one network)",
      {{"TABLE", "the route table's name"}, {"DESTINATION", "the route's destination CIDR, e.g. 0.0.0.0/0"}},
      "", nullptr, [](const Invocation& invocation) {
        api::DeleteRoute request{invocation.arguments[0], invocation.arguments[1]};
        return respond(invocation, request, [&](const json& table) {
          fmt::print("removed route {} from route table {}\n", request.destination, request.table);
          printRouteTable(table);
        });
      });
}

}  // namespace

Command routeTableCommand() {
  return group(
      "rtb", "route tables: the stairs and corridors that decide where each floor's traffic goes",
      {
          leaf(
              "create", "create a route table in a VPC (it starts with the local route only)",
              {{"NAME", "the route table's name: 1-63 of a-z, 0-9 and '-'"}}, "--vpc VPC",
              [](po::options_description& options) {
                options.add_options()("vpc", po::value<std::string>()->value_name("VPC"),
                                      "the VPC it routes for");
              },
              [](const Invocation& invocation) {
                schema::RouteTableSpec spec;
                spec.name = invocation.arguments[0];
                spec.vpc = invocation.requiredValue("vpc");
                return respond(invocation, api::Create<schema::RouteTableSpec>{spec}, [](const json& table) {
                  fmt::print("created route table {}\n", displayText(field(table, "name")));
                  printRouteTable(table);
                });
              }),
          listCommand<ObjectKind::RouteTable>(
              "list route tables", {"name", "vpc", "main", "routes", "subnets"},
              [](const json& t) {
                return std::vector<std::string>{displayText(field(t, "name")), displayText(field(t, "vpc")),
                                                displayText(field(t, "main")),
                                                std::to_string(field(t, "routes").size()),
                                                displayText(field(t, "subnets"))};
              },
              "create one with: corral rtb create public --vpc prod"),
          showCommand<ObjectKind::RouteTable>("show one route table and its routes", printRouteTable),
          removeCommand<ObjectKind::RouteTable>("delete a route table (not the main one, nor one in use)"),
          group("route", "the routes of a route table: which destination goes through which door",
                {routeAddCommand(), routeRemoveCommand()}),
      });
}

}  // namespace corral::cli
