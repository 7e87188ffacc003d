// `corral sg`: security groups, stateful L4 firewalls around each instance, and `corral sg rule` for their
// rules.
#include <iostream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

using api::ObjectKind;

std::string rulePeer(const json& rule) {
  const json& group = field(rule, "peer_group");
  if (!group.is_null()) return "group " + displayText(group);
  return displayText(field(rule, "cidr"));
}

void printSecurityGroup(const json& group) {
  printFields({{"name", displayText(field(group, "name"))},
               {"vpc", displayText(field(group, "vpc"))},
               {"description", displayText(field(group, "description"))},
               {"default", displayText(field(group, "default"))},
               {"created", displayTime(field(group, "created_at"))}});
  std::cout
      << "\nrules (stateful: replies to allowed traffic are let back in; anything not allowed is denied):\n";
  Table rules({"id", "direction", "protocol", "ports", "peer", "description"});
  for (const json& rule : field(group, "rules")) {
    rules.add({displayText(field(rule, "id")), displayText(field(rule, "direction")),
               displayText(field(rule, "protocol")), displayPorts(rule), rulePeer(rule),
               displayText(field(rule, "description"))});
  }
  printList(rules, "add one with: corral sg rule add GROUP --protocol tcp --port 22 --cidr 10.0.0.0/16");
}

Command ruleAddCommand() {
  return leaf(
      "add", "allow traffic to (or, with --egress, from) the group's instances",
      {{"GROUP", "the security group's name"}},
      "[--egress] --protocol tcp|udp|icmp|all [--port P | --port A-B] (--cidr CIDR | --from-group GROUP) "
      "[--description TEXT]",
      [](po::options_description& options) {
        options.add_options()                                                                     //
            ("egress", "an outbound rule (default: inbound)")                                     //
            ("protocol", po::value<std::string>()->value_name("PROTO"), "tcp, udp, icmp or all")  //
            ("port", po::value<std::string>()->value_name("P|A-B"),
             "one port or a range (tcp/udp; default all)")  //
            ("cidr", po::value<std::string>()->value_name("CIDR"),
             "the addresses allowed, e.g. 0.0.0.0/0")  //
            ("from-group", po::value<std::string>()->value_name("GROUP"),
             "instead of addresses: the members of this security group")  //
            ("description", po::value<std::string>()->value_name("TEXT"), "why the rule exists");
      },
      [](const Invocation& invocation) {
        api::AddSecurityGroupRule request;
        request.group = invocation.arguments[0];
        schema::SecurityGroupRuleSpec& spec = request.spec;
        spec.direction = invocation.flag("egress") ? "egress" : "ingress";
        spec.protocol = invocation.requiredValue("protocol");
        if (auto port = invocation.value("port")) {
          PortFlag ports = parsePortFlag("--port", *port);
          spec.fromPort = ports.from;
          spec.toPort = ports.to;
        }
        oneOf(invocation, {"cidr", "from-group"}, true);
        spec.cidr = invocation.value("cidr");
        spec.peerGroup = invocation.value("from-group");
        spec.description = invocation.value("description").value_or("");
        return respond(invocation, request, [&](const json& group) {
          const json& rules = field(group, "rules");
          std::string id = rules.is_array() && !rules.empty() ? displayText(field(rules.back(), "id")) : "?";
          fmt::print("added rule {} to security group {}\n", id, request.group);
          printSecurityGroup(group);
        });
      });
}

Command ruleRemoveCommand() {
  return leaf("rm", "remove a rule by its id (see `corral sg show GROUP`)",
              {{"GROUP", "the security group's name"}, {"ID", "the rule's id"}}, "", nullptr,
              [](const Invocation& invocation) {
                api::DeleteSecurityGroupRule request{invocation.arguments[0],
                                                     parseIntegerFlag("ID", invocation.arguments[1])};
                return respond(invocation, request, [&](const json& group) {
                  fmt::print("removed rule {} from security group {}\n", request.id, request.group);
                  printSecurityGroup(group);
                });
              });
}

}  // namespace

Command securityGroupCommand() {
  return group(
      "sg", "security groups: a stateful L4 firewall around each instance",
      {
          leaf(
              "create", "create a security group (it allows all outbound traffic and no inbound traffic)",
              {{"NAME", "the group's name: 1-63 of a-z, 0-9 and '-'"}}, "--vpc VPC [--description TEXT]",
              [](po::options_description& options) {
                options.add_options()                                                              //
                    ("vpc", po::value<std::string>()->value_name("VPC"), "the VPC it belongs to")  //
                    ("description", po::value<std::string>()->value_name("TEXT"), "what the group is for");
              },
              [](const Invocation& invocation) {
                schema::SecurityGroupSpec spec;
                spec.name = invocation.arguments[0];
                spec.vpc = invocation.requiredValue("vpc");
                spec.description = invocation.value("description").value_or("");
                return respond(invocation, api::Create<schema::SecurityGroupSpec>{spec},
                               [](const json& group) {
                                 fmt::print("created security group {}\n", displayText(field(group, "name")));
                                 printSecurityGroup(group);
                               });
              }),
          listCommand<ObjectKind::SecurityGroup>(
              "list security groups", {"name", "vpc", "default", "rules", "description"},
              [](const json& g) {
                return std::vector<std::string>{displayText(field(g, "name")), displayText(field(g, "vpc")),
                                                displayText(field(g, "default")),
                                                std::to_string(field(g, "rules").size()),
                                                displayText(field(g, "description"))};
              },
              "create one with: corral sg create web-sg --vpc prod"),
          showCommand<ObjectKind::SecurityGroup>("show one security group and its rules", printSecurityGroup),
          removeCommand<ObjectKind::SecurityGroup>("delete a security group (not a VPC's default group)"),
          group("rule", "the rules of a security group: what may reach (or leave) its instances",
                {ruleAddCommand(), ruleRemoveCommand()}),
      });
}

}  // namespace corral::cli
