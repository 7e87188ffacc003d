// `corral nacl`: network ACLs, stateless numbered rule lists at each subnet's edge, and `corral nacl rule`.
#include <iostream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

using api::ObjectKind;

size_t numberedRules(const json& acl) {
  size_t count = 0;
  for (const json& rule : field(acl, "rules")) count += field(rule, "number").is_number() ? 1 : 0;
  return count;
}

void printNetworkAcl(const json& acl) {
  printFields({{"name", displayText(field(acl, "name"))},
               {"vpc", displayText(field(acl, "vpc"))},
               {"default", displayText(field(acl, "default"))},
               {"created", displayTime(field(acl, "created_at"))}});
  std::cout << "\nrules (stateless, lowest number first, first match wins; * is the implicit final deny):\n";
  Table rules({"direction", "number", "action", "protocol", "ports", "cidr"});
  for (const json& rule : field(acl, "rules")) {
    rules.add({displayText(field(rule, "direction")), displayText(field(rule, "number")),
               displayText(field(rule, "action")), displayText(field(rule, "protocol")), displayPorts(rule),
               displayText(field(rule, "cidr"))});
  }
  rules.print();
}

Command ruleAddCommand() {
  return leaf(
      "add", "add a numbered allow or deny rule (replies need their own rule: the ACL keeps no state)",
      {{"ACL", "the network ACL's name"}},
      "--number N [--egress] --action allow|deny --protocol tcp|udp|icmp|all [--port P | --port A-B] --cidr "
      "CIDR",
      [](po::options_description& options) {
        options.add_options()  //
            ("number", po::value<std::string>()->value_name("N"),
             "evaluation order, 1-32766 (lowest first)")                                          //
            ("egress", "an outbound rule (default: inbound)")                                     //
            ("action", po::value<std::string>()->value_name("ACTION"), "allow or deny")           //
            ("protocol", po::value<std::string>()->value_name("PROTO"), "tcp, udp, icmp or all")  //
            ("port", po::value<std::string>()->value_name("P|A-B"),
             "one port or a range (tcp/udp; default all)")  //
            ("cidr", po::value<std::string>()->value_name("CIDR"), "the addresses the rule matches");
      },
      [](const Invocation& invocation) {
        api::AddNetworkAclRule request;
        request.acl = invocation.arguments[0];
        schema::NetworkAclRuleSpec& spec = request.spec;
        spec.number = parseIntegerFlag("--number", invocation.requiredValue("number"));
        spec.direction = invocation.flag("egress") ? "egress" : "ingress";
        spec.action = invocation.requiredValue("action");
        spec.protocol = invocation.requiredValue("protocol");
        if (auto port = invocation.value("port")) {
          PortFlag ports = parsePortFlag("--port", *port);
          spec.fromPort = ports.from;
          spec.toPort = ports.to;
        }
        spec.cidr = invocation.requiredValue("cidr");
        return respond(invocation, request, [&](const json& acl) {
          fmt::print("added {} rule {} to network ACL {}\n", spec.direction, spec.number, request.acl);
          printNetworkAcl(acl);
        });
      });
}

Command ruleRemoveCommand() {
  return leaf("rm", "remove a numbered rule",
              {{"ACL", "the network ACL's name"},
               {"DIRECTION", "ingress or egress"},
               {"NUMBER", "the rule's number"}},
              "", nullptr, [](const Invocation& invocation) {
                api::DeleteNetworkAclRule request{invocation.arguments[0], invocation.arguments[1],
                                                  parseIntegerFlag("NUMBER", invocation.arguments[2])};
                return respond(invocation, request, [&](const json& acl) {
                  fmt::print("removed {} rule {} from network ACL {}\n", request.direction, request.number,
                             request.acl);
                  printNetworkAcl(acl);
                });
              });
}

}  // namespace

Command networkAclCommand() {
  return group(
      "nacl", "network ACLs: a stateless, numbered rule list at the edge of each subnet",
      {
          leaf(
              "create", "create a network ACL (it denies everything until you add rules)",
              {{"NAME", "the ACL's name: 1-63 of a-z, 0-9 and '-'"}}, "--vpc VPC",
              [](po::options_description& options) {
                options.add_options()("vpc", po::value<std::string>()->value_name("VPC"),
                                      "the VPC it belongs to");
              },
              [](const Invocation& invocation) {
                schema::NetworkAclSpec spec;
                spec.name = invocation.arguments[0];
                spec.vpc = invocation.requiredValue("vpc");
                return respond(invocation, api::Create<schema::NetworkAclSpec>{spec}, [](const json& acl) {
                  fmt::print("created network ACL {}\n", displayText(field(acl, "name")));
                  printNetworkAcl(acl);
                });
              }),
          listCommand<ObjectKind::NetworkAcl>(
              "list network ACLs", {"name", "vpc", "default", "rules"},
              [](const json& a) {
                return std::vector<std::string>{displayText(field(a, "name")), displayText(field(a, "vpc")),
                                                displayText(field(a, "default")),
                                                std::to_string(numberedRules(a))};
              },
              "create one with: corral nacl create strict --vpc prod"),
          showCommand<ObjectKind::NetworkAcl>("show one network ACL and its rules in evaluation order",
                                              printNetworkAcl),
          removeCommand<ObjectKind::NetworkAcl>("delete a network ACL (not a default one, nor one in use)"),
          group("rule", "the numbered rules of a network ACL", {ruleAddCommand(), ruleRemoveCommand()}),
      });
}

}  // namespace corral::cli
