// `corral peering`: VPC peering connections, a private corridor between two buildings.
#include "cli/cli.h"

namespace corral::cli {
namespace {

using api::ObjectKind;

void printPeering(const json& peering) {
  printFields({{"name", displayText(field(peering, "name"))},
               {"vpc", fmt::format("{} ({})", displayText(field(peering, "vpc")),
                                   displayText(field(peering, "vpc_cidr")))},
               {"peer vpc", fmt::format("{} ({})", displayText(field(peering, "peer_vpc")),
                                        displayText(field(peering, "peer_cidr")))},
               {"status", displayText(field(peering, "status"))},
               {"link", displayText(field(peering, "link"))},
               {"created", displayTime(field(peering, "created_at"))}});
}

}  // namespace

Command peeringCommand() {
  return group(
      "peering",
      "VPC peering: a private corridor between two buildings; each side still needs a route to the other "
      "(corral rtb route add RTB --destination PEER_CIDR --peering NAME), and it is not transitive",
      {
          leaf(
              "create",
              "peer two VPCs (accepted both ways at once); refused for overlapping CIDRs, a VPC with itself, "
              "or two VPCs already peered",
              {{"VPC", "one building"}, {"PEER_VPC", "the other building"}}, "[--name NAME]",
              [](po::options_description& options) {
                options.add_options()  //
                    ("name", po::value<std::string>()->value_name("NAME"),
                     "the peering's name: 1-63 of a-z, 0-9 and '-' (default: VPC-PEER_VPC)");
              },
              [](const Invocation& invocation) {
                schema::PeeringSpec spec;
                spec.vpc = invocation.arguments[0];
                spec.peerVpc = invocation.arguments[1];
                spec.name = invocation.value("name").value_or(spec.vpc + "-" + spec.peerVpc);
                return respond(invocation, api::Create<schema::PeeringSpec>{spec}, [](const json& peering) {
                  fmt::print("created peering {}\n", displayText(field(peering, "name")));
                  printPeering(peering);
                });
              }),
          listCommand<ObjectKind::Peering>(
              "list VPC peerings (--vpc: those one VPC is a side of)", {"name", "vpc", "peer vpc", "status"},
              [](const json& p) {
                return std::vector<std::string>{displayText(field(p, "name")), displayText(field(p, "vpc")),
                                                displayText(field(p, "peer_vpc")),
                                                displayText(field(p, "status"))};
              },
              "create one with: corral peering create prod dev"),
          showCommand<ObjectKind::Peering>("show one VPC peering", printPeering),
          removeCommand<ObjectKind::Peering>(
              "delete a VPC peering (refused while a route targets it or a security group rule names a "
              "group across it)"),
      });
}

}  // namespace corral::cli
