// `corral igw`: internet gateways, the building's front door to the internet.
#include "cli/cli.h"

namespace corral::cli {
namespace {

using api::ObjectKind;

void printInternetGateway(const json& gateway) {
  printFields({{"name", displayText(field(gateway, "name"))},
               {"vpc", displayText(field(gateway, "vpc"))},
               {"created", displayTime(field(gateway, "created_at"))}});
}

}  // namespace

Command internetGatewayCommand() {
  return group(
      "igw", "internet gateways: the building's front door to the internet",
      {
          leaf(
              "create",
              "create an internet gateway for a VPC; a subnet becomes public once its route table sends "
              "0.0.0.0/0 to it",
              {{"NAME", "the gateway's name: 1-63 of a-z, 0-9 and '-'"}}, "--vpc VPC",
              [](po::options_description& options) {
                options.add_options()("vpc", po::value<std::string>()->value_name("VPC"),
                                      "the building it opens");
              },
              [](const Invocation& invocation) {
                schema::InternetGatewaySpec spec;
                spec.name = invocation.arguments[0];
                spec.vpc = invocation.requiredValue("vpc");
                return respond(
                    invocation, api::Create<schema::InternetGatewaySpec>{spec}, [](const json& gateway) {
                      fmt::print("created internet gateway {}\n", displayText(field(gateway, "name")));
                      printInternetGateway(gateway);
                    });
              }),
          listCommand<ObjectKind::InternetGateway>(
              "list internet gateways", {"name", "vpc"},
              [](const json& g) {
                return std::vector<std::string>{displayText(field(g, "name")), displayText(field(g, "vpc"))};
              },
              "create one with: corral igw create door --vpc prod"),
          showCommand<ObjectKind::InternetGateway>("show one internet gateway", printInternetGateway),
          removeCommand<ObjectKind::InternetGateway>(
              "delete an internet gateway (refused while a route uses it)"),
      });
}

}  // namespace corral::cli
