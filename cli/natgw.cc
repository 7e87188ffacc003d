// `corral natgw`: NAT gateways, which let a private floor call out while nobody can call in.
#include "cli/cli.h"

namespace corral::cli {
namespace {

using api::ObjectKind;

void printNatGateway(const json& gateway) {
  printFields({{"name", displayText(field(gateway, "name"))},
               {"vpc", displayText(field(gateway, "vpc"))},
               {"subnet", displayText(field(gateway, "subnet"))},
               {"created", displayTime(field(gateway, "created_at"))}});
}

}  // namespace

Command natGatewayCommand() {
  return group(
      "natgw", "NAT gateways: let a private floor call out while nobody can call in",
      {
          leaf(
              "create", "create a NAT gateway in a (public) subnet; private subnets route 0.0.0.0/0 to it",
              {{"NAME", "the gateway's name: 1-63 of a-z, 0-9 and '-'"}}, "--subnet SUBNET",
              [](po::options_description& options) {
                options.add_options()("subnet", po::value<std::string>()->value_name("SUBNET"),
                                      "the subnet it lives in (public, so it can reach the front door)");
              },
              [](const Invocation& invocation) {
                schema::NatGatewaySpec spec;
                spec.name = invocation.arguments[0];
                spec.subnet = invocation.requiredValue("subnet");
                return respond(invocation, api::Create<schema::NatGatewaySpec>{spec},
                               [](const json& gateway) {
                                 fmt::print("created NAT gateway {}\n", displayText(field(gateway, "name")));
                                 printNatGateway(gateway);
                               });
              }),
          listCommand<ObjectKind::NatGateway>(
              "list NAT gateways", {"name", "vpc", "subnet"},
              [](const json& g) {
                return std::vector<std::string>{displayText(field(g, "name")), displayText(field(g, "vpc")),
                                                displayText(field(g, "subnet"))};
              },
              "create one with: corral natgw create nat --subnet web"),
          showCommand<ObjectKind::NatGateway>("show one NAT gateway", printNatGateway),
          removeCommand<ObjectKind::NatGateway>("delete a NAT gateway (refused while a route uses it)"),
      });
}

}  // namespace corral::cli
