// `corral vpc`: create, list, show and delete VPCs, the buildings whose address range you choose.
#include "cli/cli.h"

namespace corral::cli {
namespace {

using api::ObjectKind;

void printVpc(const json& vpc) {
  printFields({
      {"name", displayText(field(vpc, "name"))},
      {"cidr", displayText(field(vpc, "cidr"))},
      {"size", displayText(field(vpc, "size")) + " addresses"},
      {"private", field(vpc, "private") == true ? "yes (RFC 1918 range)" : "no (public address space)"},
      {"class", displayText(field(vpc, "class")) + " (historical classful name)"},
      {"main route table", displayText(field(vpc, "main_route_table"))},
      {"default network acl", displayText(field(vpc, "default_network_acl"))},
      {"default security group", displayText(field(vpc, "default_security_group"))},
      {"subnets", displayText(field(vpc, "subnet_count"))},
      {"created", displayTime(field(vpc, "created_at"))},
  });
}

}  // namespace

Command vpcCommand() {
  return group(
      "vpc", "VPCs: a VPC is a building whose IP range you choose",
      {
          leaf(
              "create",
              "create a VPC (with its main route table, default network ACL and default security group)",
              {{"NAME", "the VPC's name: 1-63 of a-z, 0-9 and '-'"}}, "--cidr CIDR",
              [](po::options_description& options) {
                options.add_options()("cidr", po::value<std::string>()->value_name("CIDR"),
                                      "the building's address range, a /16 to a /28, e.g. 10.0.0.0/16");
              },
              [](const Invocation& invocation) {
                schema::VpcSpec spec;
                spec.name = invocation.arguments[0];
                spec.cidr = invocation.requiredValue("cidr");
                return respond(invocation, api::Create<schema::VpcSpec>{spec}, [](const json& vpc) {
                  fmt::print("created vpc {}\n", displayText(field(vpc, "name")));
                  printVpc(vpc);
                });
              }),
          listCommand<ObjectKind::Vpc>(
              "list the VPCs", {"name", "cidr", "size", "subnets", "main route table"},
              [](const json& vpc) {
                return std::vector<std::string>{
                    displayText(field(vpc, "name")), displayText(field(vpc, "cidr")),
                    displayText(field(vpc, "size")), displayText(field(vpc, "subnet_count")),
                    displayText(field(vpc, "main_route_table"))};
              },
              "create one with: corral vpc create prod --cidr 10.0.0.0/16"),
          showCommand<ObjectKind::Vpc>("show one VPC: its range, size and default route table, ACL and group",
                                       printVpc),
          removeCommand<ObjectKind::Vpc>("delete a VPC (refused while it holds anything but its defaults)"),
      });
}

}  // namespace corral::cli
