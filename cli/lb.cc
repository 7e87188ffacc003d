// `corral lb`: load balancers (an application one reads HTTP: host and path rules, fixed responses, an L7
// firewall; a network one forwards TCP), with `corral lb listener|rule|firewall`; and `corral tg`: target
// groups, the instances a load balancer forwards to, with their health checks.
#include <iostream>
#include <sstream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

std::vector<std::string> commaList(const std::string& text) {
  std::vector<std::string> items;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) items.push_back(item);
  }
  return items;
}

std::string actionText(const json& action) {
  if (displayText(field(action, "type")) == "forward")
    return "forward to " + displayText(field(action, "target_group"));
  std::string text = "answer " + displayText(field(action, "status"));
  const std::string body = displayText(field(action, "body"));
  if (!body.empty() && body != "-") text += " \"" + body + "\"";
  return text;
}

void printLoadBalancer(const json& balancer) {
  std::string zones;
  for (const json& zone : field(balancer, "availability_zones")) {
    zones += fmt::format("{}{} ({})", zones.empty() ? "" : ", ", displayText(field(zone, "subnet")),
                         displayText(field(zone, "availability_zone")));
  }
  std::string addresses;
  for (const json& nic : field(balancer, "nics")) {
    addresses += fmt::format("{}{} in {}", addresses.empty() ? "" : ", ", displayText(field(nic, "address")),
                             displayText(field(nic, "subnet")));
    if (!field(nic, "public_address").is_null())
      addresses += fmt::format(" (public {})", displayText(field(nic, "public_address")));
  }
  std::string haproxy = "-";
  if (const json& process = field(balancer, "process"); process.is_object()) {
    haproxy = fmt::format("pid {}, {} restart(s), {} reload(s), netns {}", displayText(field(process, "pid")),
                          displayText(field(process, "restarts")), displayText(field(process, "reloads")),
                          displayText(field(process, "netns")));
    if (!field(process, "error").is_null()) haproxy += ": " + displayText(field(process, "error"));
  }
  printFields({{"name", displayText(field(balancer, "name"))},
               {"type", displayText(field(balancer, "type"))},
               {"scheme", displayText(field(balancer, "scheme"))},
               {"vpc", displayText(field(balancer, "vpc"))},
               {"subnets (zones)", zones},
               {"addresses", addresses.empty() ? "-" : addresses},
               {"security group", displayText(field(balancer, "security_group"))},
               {"state", displayText(field(balancer, "state"))},
               {"haproxy", haproxy},
               {"created", displayTime(field(balancer, "created_at"))}});
  for (const json& listener : field(balancer, "listeners")) {
    std::cout << fmt::format("\nlistener {} ({}): default: {}\n", displayText(field(listener, "port")),
                             displayText(field(listener, "protocol")),
                             actionText(field(listener, "default_action")));
    if (!field(listener, "rules").empty()) {
      Table rules({"priority", "host", "path", "action"});
      for (const json& rule : field(listener, "rules")) {
        const std::string host = displayText(field(rule, "host")), path = displayText(field(rule, "path"));
        rules.add({displayText(field(rule, "priority")), host.empty() ? "*" : host, path.empty() ? "*" : path,
                   actionText(field(rule, "action"))});
      }
      rules.print();
    }
    if (!field(listener, "firewall").empty()) {
      std::cout << "L7 firewall (matching requests are answered 403):\n";
      Table firewall({"id", "part", "match", "description", "denied"});
      for (const json& rule : field(listener, "firewall")) {
        std::string part = displayText(field(rule, "part")), pattern = displayText(field(rule, "pattern"));
        std::string match = part == "header" ? displayText(field(rule, "header")) + " ~ " + pattern
                            : part == "body" ? "~ " + pattern
                                             : pattern;
        firewall.add({displayText(field(rule, "id")), part, match, displayText(field(rule, "description")),
                      displayText(field(rule, "denied"))});
      }
      firewall.print();
    }
  }
  if (field(balancer, "listeners").empty())
    std::cout << "\nno listener: add one with: corral lb listener add NAME --port 80 --target-group TG\n";
  // Each target's health as HAProxy's checks see it now (its stats socket).
  if (const json& health = field(balancer, "target_health"); health.is_object()) {
    for (const auto& [group, targets] : health.items()) {
      std::cout << fmt::format("\ntarget group {}:\n", displayText(json(group)));
      Table table({"target", "health", "reason", "requests"});
      for (const json& target : targets) {
        table.add({displayText(field(target, "target")), displayText(field(target, "state")),
                   displayText(field(target, "reason")), displayText(field(target, "requests"))});
      }
      printList(table, "no target: register some with: corral tg register GROUP INSTANCE...");
    }
  }
}

void printTargetGroup(const json& group) {
  const json& check = field(group, "health_check");
  printFields(
      {{"name", displayText(field(group, "name"))},
       {"vpc", displayText(field(group, "vpc"))},
       {"port", displayText(field(group, "port"))},
       {"protocol", displayText(field(group, "protocol"))},
       {"health check",
        fmt::format("{} every {} s, timeout {} s, healthy after {}, unhealthy after {}",
                    displayText(field(check, "path")), displayText(field(check, "interval")),
                    displayText(field(check, "timeout")), displayText(field(check, "healthy_threshold")),
                    displayText(field(check, "unhealthy_threshold")))},
       {"load balancers", displayText(field(group, "load_balancers"))},
       {"created", displayTime(field(group, "created_at"))}});
  std::cout << "\ntargets:\n";
  Table targets({"target", "health", "reason", "requests"});
  for (const json& target : field(group, "target_health")) {
    targets.add({displayText(field(target, "target")), displayText(field(target, "state")),
                 displayText(field(target, "reason")), displayText(field(target, "requests"))});
  }
  printList(targets, "register some with: corral tg register GROUP INSTANCE...");
}

// --target-group TG, or a fixed response: --fixed-status N [--fixed-body TEXT] [--content-type TYPE].
void addActionOptions(po::options_description& options) {
  options.add_options()                                                                                     //
      ("target-group", po::value<std::string>()->value_name("TG"), "forward to this target group")          //
      ("fixed-status", po::value<std::string>()->value_name("N"), "instead: answer this status (200-599)")  //
      ("fixed-body", po::value<std::string>()->value_name("TEXT"), "the fixed response's body")             //
      ("content-type", po::value<std::string>()->value_name("TYPE"),
       "the fixed response's type (text/plain)");
}

schema::ListenerActionSpec actionFrom(const Invocation& invocation) {
  schema::ListenerActionSpec action;
  oneOf(invocation, {"target-group", "fixed-status"}, true);
  if (auto group = invocation.value("target-group")) {
    action.targetGroup = *group;
    return action;
  }
  action.type = "fixed-response";
  action.status = parseIntegerFlag("--fixed-status", *invocation.value("fixed-status"));
  action.body = invocation.value("fixed-body").value_or("");
  action.contentType = invocation.value("content-type").value_or("text/plain");
  return action;
}

int64_t portOf(const Invocation& invocation) {
  return parseIntegerFlag("--port", invocation.requiredValue("port"));
}

Command listenerCommand() {
  return group(
      "listener", "the ports a load balancer listens on, and what each does by default",
      {leaf(
           "add", "listen on a port: forward to a target group or answer a fixed response",
           {{"NAME", "the load balancer's name"}},
           "--port P [--protocol http|tcp] (--target-group TG | --fixed-status N [--fixed-body TEXT])",
           [](po::options_description& options) {
             options.add_options()                                                         //
                 ("port", po::value<std::string>()->value_name("P"), "the port, 1-65535")  //
                 ("protocol", po::value<std::string>()->value_name("PROTO"),
                  "http (application load balancers, the default) or tcp (network)");
             addActionOptions(options);
           },
           [](const Invocation& invocation) {
             api::AddListener request{invocation.arguments[0], {}};
             request.spec.port = portOf(invocation);
             request.spec.protocol = invocation.value("protocol").value_or("http");
             request.spec.defaultAction = actionFrom(invocation);
             return respond(invocation, request, [&](const json& balancer) {
               fmt::print("load balancer {} listens on port {}\n", request.balancer, *request.spec.port);
               printLoadBalancer(balancer);
             });
           }),
       leaf("rm", "stop listening on a port (its rules and firewall rules go with it)",
            {{"NAME", "the load balancer's name"}, {"PORT", "the listener's port"}}, "", nullptr,
            [](const Invocation& invocation) {
              api::DeleteListener request{invocation.arguments[0],
                                          parseIntegerFlag("PORT", invocation.arguments[1])};
              return respond(invocation, request, [&](const json& balancer) {
                fmt::print("removed listener {} of {}\n", request.port, request.balancer);
                printLoadBalancer(balancer);
              });
            })});
}

Command ruleCommand() {
  return group(
      "rule", "rules on an http listener: requests by Host header and path, lowest priority first",
      {leaf(
           "add", "route requests matching a host and/or a path (\"/api/*\": a prefix)",
           {{"NAME", "the load balancer's name"}},
           "--port P --priority N [--host HOST] [--path PATTERN] (--target-group TG | --fixed-status N)",
           [](po::options_description& options) {
             options.add_options()                                                                   //
                 ("port", po::value<std::string>()->value_name("P"), "the listener's port")          //
                 ("priority", po::value<std::string>()->value_name("N"), "1-50000, lower is first")  //
                 ("host", po::value<std::string>()->value_name("HOST"),
                  "api.example.com or *.example.com")  //
                 ("path", po::value<std::string>()->value_name("PATTERN"),
                  "/health exactly, or /api/* as a prefix");
             addActionOptions(options);
           },
           [](const Invocation& invocation) {
             api::AddListenerRule request{invocation.arguments[0], portOf(invocation), {}};
             request.spec.priority = parseIntegerFlag("--priority", invocation.requiredValue("priority"));
             request.spec.host = invocation.value("host").value_or("");
             request.spec.path = invocation.value("path").value_or("");
             request.spec.action = actionFrom(invocation);
             return respond(invocation, request, [&](const json& balancer) {
               fmt::print("added rule {} to listener {} of {}\n", *request.spec.priority, request.port,
                          request.balancer);
               printLoadBalancer(balancer);
             });
           }),
       leaf("rm", "remove a rule by its priority",
            {{"NAME", "the load balancer's name"},
             {"PORT", "the listener's port"},
             {"PRIORITY", "the rule's priority"}},
            "", nullptr, [](const Invocation& invocation) {
              api::DeleteListenerRule request{invocation.arguments[0],
                                              parseIntegerFlag("PORT", invocation.arguments[1]),
                                              parseIntegerFlag("PRIORITY", invocation.arguments[2])};
              return respond(invocation, request, [&](const json& balancer) {
                fmt::print("removed rule {} from listener {} of {}\n", request.priority, request.port,
                           request.balancer);
                printLoadBalancer(balancer);
              });
            })});
}

Command firewallCommand() {
  return group(
      "firewall", "the L7 firewall of an http listener: requests it reads and denies (403), counted per rule",
      {leaf(
           "add", "deny requests by path, method, a header or the body",
           {{"NAME", "the load balancer's name"}},
           "--port P (--path PATTERN | --method METHOD | --header NAME~TEXT | --body TEXT) [--description "
           "TEXT]",
           [](po::options_description& options) {
             options.add_options()                                                           //
                 ("port", po::value<std::string>()->value_name("P"), "the listener's port")  //
                 ("path", po::value<std::string>()->value_name("PATTERN"),
                  "/admin* : a path prefix, or exact")                                           //
                 ("method", po::value<std::string>()->value_name("METHOD"), "DELETE, PUT, ...")  //
                 ("header", po::value<std::string>()->value_name("NAME~TEXT"),
                  "User-Agent~sqlmap: the header holds TEXT (any case)")                                   //
                 ("body", po::value<std::string>()->value_name("TEXT"), "the body holds TEXT (any case)")  //
                 ("description", po::value<std::string>()->value_name("TEXT"), "why the rule exists");
           },
           [](const Invocation& invocation) {
             api::AddFirewallRule request{invocation.arguments[0], portOf(invocation), {}};
             schema::FirewallRuleSpec& spec = request.spec;
             std::string part = *oneOf(invocation, {"path", "method", "header", "body"}, true);
             spec.part = part;
             spec.pattern = *invocation.value(part);
             if (part == "header") {
               auto tilde = spec.pattern.find('~');
               if (tilde == std::string::npos)
                 throw UsageError("--header takes NAME~TEXT, e.g. User-Agent~sqlmap");
               spec.header = spec.pattern.substr(0, tilde);
               spec.pattern = spec.pattern.substr(tilde + 1);
             }
             spec.description = invocation.value("description").value_or("");
             return respond(invocation, request, [&](const json& balancer) {
               fmt::print("added a firewall rule to listener {} of {}\n", request.port, request.balancer);
               printLoadBalancer(balancer);
             });
           }),
       leaf("rm", "remove a firewall rule by its id",
            {{"NAME", "the load balancer's name"}, {"PORT", "the listener's port"}, {"ID", "the rule's id"}},
            "", nullptr, [](const Invocation& invocation) {
              api::DeleteFirewallRule request{invocation.arguments[0],
                                              parseIntegerFlag("PORT", invocation.arguments[1]),
                                              parseIntegerFlag("ID", invocation.arguments[2])};
              return respond(invocation, request, [&](const json& balancer) {
                fmt::print("removed firewall rule {} from listener {} of {}\n", request.id, request.port,
                           request.balancer);
                printLoadBalancer(balancer);
              });
            })});
}

Command targetsCommand(bool registering) {
  Command command =
      leaf(registering ? "register" : "deregister",
           registering ? "add instances (with a NIC in the group's VPC) to a target group"
                       : "take instances out of a target group",
           {{"GROUP", "the target group's name"}, {"INSTANCE", "an instance's name (several may be given)"}},
           "", nullptr, [registering](const Invocation& invocation) {
             const std::string& group = invocation.arguments[0];
             std::vector<std::string> targets(invocation.arguments.begin() + 1, invocation.arguments.end());
             auto print = [&](const json& answer) {
               fmt::print("{} {} target(s) {} {}\n", registering ? "registered" : "deregistered",
                          targets.size(), registering ? "with" : "from", group);
               printTargetGroup(answer);
             };
             if (registering) return respond(invocation, api::RegisterTargets{group, targets}, print);
             return respond(invocation, api::DeregisterTargets{group, targets}, print);
           });
  command.lastArgumentRepeats = true;
  return command;
}

}  // namespace

Command loadBalancerCommand() {
  return group(
      "lb", "load balancers: one address in front of many instances (HTTP rules and an L7 firewall, or TCP)",
      {leaf(
           "create", "create a load balancer with a NIC in each of its subnets",
           {{"NAME", "the load balancer's name: 1-63 of a-z, 0-9 and '-'"}},
           "--vpc VPC --subnets S1[,S2...] [--internal] [--type application|network] [--security-group SG]",
           [](po::options_description& options) {
             options.add_options()                                                          //
                 ("vpc", po::value<std::string>()->value_name("VPC"), "the VPC it serves")  //
                 ("subnets", po::value<std::string>()->value_name("S1,S2"),
                  "its subnets, one per availability zone (AWS asks for two)")             //
                 ("internal", "reachable inside the VPC only (default: internet-facing)")  //
                 ("type", po::value<std::string>()->value_name("TYPE"),
                  "application (HTTP, the default) or network (TCP)")  //
                 ("security-group", po::value<std::string>()->value_name("SG"),
                  "the group guarding its NICs (default: the VPC's default group)");
           },
           [](const Invocation& invocation) {
             api::CreateLoadBalancer request;
             schema::LoadBalancerSpec& spec = request.spec;
             spec.name = invocation.arguments[0];
             spec.vpc = invocation.requiredValue("vpc");
             spec.subnets = commaList(invocation.requiredValue("subnets"));
             spec.internal = invocation.flag("internal");
             spec.type = invocation.value("type").value_or("application");
             spec.securityGroup = invocation.value("security-group").value_or("");
             return respond(invocation, request, [](const json& balancer) {
               fmt::print("created load balancer {}\n", displayText(field(balancer, "name")));
               printLoadBalancer(balancer);
             });
           }),
       leaf(
           "ls", "list load balancers", {}, "[--vpc VPC]",
           [](po::options_description& options) {
             options.add_options()("vpc", po::value<std::string>()->value_name("VPC"),
                                   "only those in this VPC");
           },
           [](const Invocation& invocation) {
             return respond(invocation, api::ListLoadBalancers{invocation.value("vpc").value_or("")},
                            [](const json& response) {
                              Table table({"name", "type", "scheme", "vpc", "subnets", "listeners", "state"});
                              for (const json& b : field(response, "load_balancers")) {
                                std::string ports;
                                for (const json& l : field(b, "listeners"))
                                  ports += (ports.empty() ? "" : ",") + displayText(field(l, "port"));
                                table.add({displayText(field(b, "name")), displayText(field(b, "type")),
                                           displayText(field(b, "scheme")), displayText(field(b, "vpc")),
                                           displayText(field(b, "subnets")), ports.empty() ? "-" : ports,
                                           displayText(field(b, "state"))});
                              }
                              printList(table,
                                        "create one with: corral lb create web-lb --vpc prod --subnets a,b");
                            });
           }),
       leaf("show",
            "show a load balancer: its addresses, listeners, rules, firewall rules with their counters, "
            "HAProxy's state and each target's health",
            {{"NAME", "the load balancer's name"}}, "", nullptr,
            [](const Invocation& invocation) {
              return respond(invocation, api::GetLoadBalancer{invocation.arguments[0]}, printLoadBalancer);
            }),
       leaf("rm", "delete a load balancer", {{"NAME", "the load balancer's name"}}, "", nullptr,
            [](const Invocation& invocation) {
              const std::string& name = invocation.arguments[0];
              return respond(invocation, api::DeleteLoadBalancer{name},
                             [&](const json&) { fmt::print("deleted load balancer {}\n", name); });
            }),
       listenerCommand(), ruleCommand(), firewallCommand()});
}

Command targetGroupCommand() {
  return group(
      "tg", "target groups: the instances a load balancer forwards to, and how their health is checked",
      {leaf(
           "create", "create a target group", {{"NAME", "the target group's name: 1-63 of a-z, 0-9 and '-'"}},
           "--vpc VPC [--port P] [--protocol http|tcp] [--health-path PATH] [--health-interval S] "
           "[--health-timeout S] [--healthy-threshold N] [--unhealthy-threshold N] [--targets I1,I2]",
           [](po::options_description& options) {
             options.add_options()                                                                      //
                 ("vpc", po::value<std::string>()->value_name("VPC"), "the VPC of its instances")       //
                 ("port", po::value<std::string>()->value_name("P"), "the targets' port (default 80)")  //
                 ("protocol", po::value<std::string>()->value_name("PROTO"), "http (default) or tcp")   //
                 ("health-path", po::value<std::string>()->value_name("PATH"),
                  "checked with GET (default /)")  //
                 ("health-interval", po::value<std::string>()->value_name("S"),
                  "seconds between checks, 5-300 (10)")  //
                 ("health-timeout", po::value<std::string>()->value_name("S"),
                  "seconds a check may take, 2-120 (5)")  //
                 ("healthy-threshold", po::value<std::string>()->value_name("N"),
                  "passing checks in a row before a target serves again, 2-10 (3)")  //
                 ("unhealthy-threshold", po::value<std::string>()->value_name("N"),
                  "failing checks in a row before a target is taken out, 2-10 (3)")  //
                 ("targets", po::value<std::string>()->value_name("I1,I2"), "instances to register now");
           },
           [](const Invocation& invocation) {
             api::CreateTargetGroup request;
             schema::TargetGroupSpec& spec = request.spec;
             spec.name = invocation.arguments[0];
             spec.vpc = invocation.requiredValue("vpc");
             if (auto port = invocation.value("port")) spec.port = parseIntegerFlag("--port", *port);
             spec.protocol = invocation.value("protocol").value_or("http");
             spec.healthCheck.path = invocation.value("health-path").value_or("/");
             auto number = [&](const char* flag, std::optional<int64_t>& out) {
               if (auto text = invocation.value(flag))
                 out = parseIntegerFlag(std::string("--") + flag, *text);
             };
             number("health-interval", spec.healthCheck.intervalSeconds);
             number("health-timeout", spec.healthCheck.timeoutSeconds);
             number("healthy-threshold", spec.healthCheck.healthyThreshold);
             number("unhealthy-threshold", spec.healthCheck.unhealthyThreshold);
             if (auto targets = invocation.value("targets")) spec.targets = commaList(*targets);
             return respond(invocation, request, [](const json& group) {
               fmt::print("created target group {}\n", displayText(field(group, "name")));
               printTargetGroup(group);
             });
           }),
       leaf(
           "ls", "list target groups", {}, "[--vpc VPC]",
           [](po::options_description& options) {
             options.add_options()("vpc", po::value<std::string>()->value_name("VPC"),
                                   "only those in this VPC");
           },
           [](const Invocation& invocation) {
             return respond(
                 invocation, api::ListTargetGroups{invocation.value("vpc").value_or("")},
                 [](const json& response) {
                   Table table({"name", "vpc", "port", "protocol", "targets", "load balancers"});
                   for (const json& g : field(response, "target_groups")) {
                     table.add({displayText(field(g, "name")), displayText(field(g, "vpc")),
                                displayText(field(g, "port")), displayText(field(g, "protocol")),
                                displayText(field(g, "targets")), displayText(field(g, "load_balancers"))});
                   }
                   printList(table, "create one with: corral tg create web --vpc prod --port 80");
                 });
           }),
       leaf("show", "show a target group and each target's health", {{"NAME", "the target group's name"}}, "",
            nullptr,
            [](const Invocation& invocation) {
              return respond(invocation, api::GetTargetGroup{invocation.arguments[0]}, printTargetGroup);
            }),
       leaf("rm", "delete a target group (not while a load balancer forwards to it)",
            {{"NAME", "the target group's name"}}, "", nullptr,
            [](const Invocation& invocation) {
              const std::string& name = invocation.arguments[0];
              return respond(invocation, api::DeleteTargetGroup{name},
                             [&](const json&) { fmt::print("deleted target group {}\n", name); });
            }),
       targetsCommand(true), targetsCommand(false)});
}

}  // namespace corral::cli
