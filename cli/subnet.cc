// `corral subnet`: the floors of a VPC, each a slice of its range, with their route table and network ACL.
#include "cli/cli.h"

namespace corral::cli {
namespace {

using api::ObjectKind;

void printSubnet(const json& subnet) {
  printFields({
      {"name", displayText(field(subnet, "name"))},
      {"vpc", displayText(field(subnet, "vpc"))},
      {"cidr", displayText(field(subnet, "cidr"))},
      {"availability zone", displayText(field(subnet, "availability_zone"))},
      {"size", displayText(field(subnet, "size")) + " addresses"},
      {"usable", displayText(field(subnet, "usable")) +
                     " (AWS keeps 5: the network address, .1 router, .2 DNS, .3 reserved, broadcast)"},
      {"router", displayText(field(subnet, "router"))},
      {"dns", displayText(field(subnet, "dns"))},
      {"reachability", displayText(field(subnet, "reachability"))},
      {"public ip on launch", displayText(field(subnet, "map_public_ip"))},
      {"route table", displayText(field(subnet, "route_table"))},
      {"network acl", displayText(field(subnet, "network_acl"))},
      {"created", displayTime(field(subnet, "created_at"))},
  });
}

}  // namespace

Command subnetCommand() {
  return group(
      "subnet", "subnets: a subnet is a floor of the building, a slice of the VPC's range in one zone",
      {
          leaf(
              "create", "create a subnet inside a VPC's range",
              {{"NAME", "the subnet's name: 1-63 of a-z, 0-9 and '-'"}},
              "--vpc VPC --cidr CIDR [--az ZONE] [--public] [--route-table TABLE] [--nacl ACL]",
              [](po::options_description& options) {
                options.add_options()                                                                      //
                    ("vpc", po::value<std::string>()->value_name("VPC"), "the building this floor is in")  //
                    ("cidr", po::value<std::string>()->value_name("CIDR"),
                     "its slice of the VPC's range, e.g. 10.0.1.0/24 (a /16 to a /28)")  //
                    ("az", po::value<std::string>()->value_name("ZONE"),
                     "availability zone (default az1)")                                             //
                    ("public", "give instances a public address by default (MapPublicIpOnLaunch)")  //
                    ("route-table", po::value<std::string>()->value_name("TABLE"),
                     "route table to use (default: the VPC's main table)")  //
                    ("nacl", po::value<std::string>()->value_name("ACL"),
                     "network ACL to use (default: the VPC's default ACL)");
              },
              [](const Invocation& invocation) {
                schema::SubnetSpec spec;
                spec.name = invocation.arguments[0];
                spec.vpc = invocation.requiredValue("vpc");
                spec.cidr = invocation.requiredValue("cidr");
                if (auto az = invocation.value("az")) spec.availabilityZone = *az;
                spec.mapPublicIp = invocation.flag("public");
                spec.routeTable = invocation.value("route-table").value_or("");
                spec.networkAcl = invocation.value("nacl").value_or("");
                return respond(invocation, api::Create<schema::SubnetSpec>{spec}, [](const json& subnet) {
                  fmt::print("created subnet {}\n", displayText(field(subnet, "name")));
                  printSubnet(subnet);
                });
              }),
          listCommand<ObjectKind::Subnet>(
              "list subnets",
              {"name", "vpc", "cidr", "az", "usable", "reachability", "route table", "network acl"},
              [](const json& s) {
                return std::vector<std::string>{
                    displayText(field(s, "name")),        displayText(field(s, "vpc")),
                    displayText(field(s, "cidr")),        displayText(field(s, "availability_zone")),
                    displayText(field(s, "usable")),      displayText(field(s, "reachability")),
                    displayText(field(s, "route_table")), displayText(field(s, "network_acl"))};
              },
              "create one with: corral subnet create web --vpc prod --cidr 10.0.1.0/24"),
          showCommand<ObjectKind::Subnet>(
              "show one subnet: usable addresses, router and DNS addresses, and how it reaches outside",
              printSubnet),
          leaf(
              "set", "change a subnet's route table, network ACL or public-address default",
              {{"NAME", "the subnet's name"}}, "[--route-table TABLE] [--nacl ACL] [--public | --no-public]",
              [](po::options_description& options) {
                options.add_options()  //
                    ("route-table", po::value<std::string>()->value_name("TABLE"),
                     "associate this route table")                                                       //
                    ("nacl", po::value<std::string>()->value_name("ACL"), "associate this network ACL")  //
                    ("public", "give new instances a public address by default")                         //
                    ("no-public", "stop giving new instances a public address");
              },
              [](const Invocation& invocation) {
                api::UpdateSubnet request;
                request.name = invocation.arguments[0];
                request.update.routeTable = invocation.value("route-table");
                request.update.networkAcl = invocation.value("nacl");
                if (auto chosen = oneOf(invocation, {"public", "no-public"}, false)) {
                  request.update.mapPublicIp = *chosen == "public";
                }
                if (!request.update.routeTable && !request.update.networkAcl && !request.update.mapPublicIp) {
                  throw UsageError("nothing to change: give --route-table, --nacl, --public or --no-public");
                }
                return respond(invocation, request, [](const json& subnet) {
                  fmt::print("updated subnet {}\n", displayText(field(subnet, "name")));
                  printSubnet(subnet);
                });
              }),
          removeCommand<ObjectKind::Subnet>("delete a subnet"),
      });
}

}  // namespace corral::cli
