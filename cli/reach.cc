// `corral reach SRC DST`: can SRC reach DST, hop by hop, and if not, which guard or which missing route
// stops it. corrald computes it from the model (net/reach.h), and with --verify also sends one real probe
// (net/probe.h); the CLI prints its answer.
#include <iostream>

#include "cli/cli.h"
#include "core/text.h"

namespace corral::cli {
namespace {

void printPath(const json& path) {
  fmt::print("{} -> {}\n", displayText(field(path, "source")), displayText(field(path, "destination")));
  for (const json& hop : field(path, "hops")) {
    const std::string leg = field(hop, "leg").is_string() ? hop["leg"].get<std::string>() : "";
    const std::string rule = field(hop, "rule").is_string() ? hop["rule"].get<std::string>() : "";
    const bool passes = field(hop, "passes").is_boolean() && hop["passes"].get<bool>();
    std::string where = displayText(field(hop, "component"));
    const std::string name = field(hop, "name").is_string() ? hop["name"].get<std::string>() : "";
    if (!name.empty()) where += " " + name;
    if (!leg.empty()) where += " (" + leg + ")";
    fmt::print("  {} {}{}\n", passes ? "ok     " : "BLOCKED", where, rule.empty() ? "" : ": " + rule);
    fmt::print("          {}\n", terminalSafeLines(displayText(field(hop, "text"))));
  }
  fmt::print("{}\n", terminalSafeLines(displayText(field(path, "verdict"))));
  // The kernel's probe and, on OVN, ovn-trace through OVN's logical flows.
  struct Check {
    const char* key;
    const char* label;
    const char* who;
  };
  for (const Check& check : {Check{"kernel", "kernel", "the kernel"}, Check{"ovn", "ovn-trace", "OVN"}}) {
    const json& verdict = field(path, check.key);
    if (!verdict.is_object()) continue;
    const bool agrees = field(verdict, "agrees").is_boolean() && verdict["agrees"].get<bool>();
    fmt::print("{}: {} ({}){}\n", check.label, displayText(field(verdict, "verdict")),
               terminalSafeLines(displayText(field(verdict, "detail"))),
               agrees ? ""
                      : fmt::format("\n  the model and {} DISAGREE: the model says {}", check.who,
                                    field(path, "reachable") == true ? "reachable" : "blocked"));
  }
}

int reach(const Invocation& invocation) {
  api::ReachAnalysis request;
  request.source = invocation.arguments[0];
  request.destination = invocation.arguments[1];
  if (auto protocol = invocation.value("protocol")) request.protocol = *protocol;
  if (auto port = invocation.value("port")) request.port = parseIntegerFlag("--port", *port);
  request.verify = invocation.flag("verify");
  return respond(invocation, request, [&](const json& answer) {
    bool first = true;
    for (const json& path : field(answer, "paths")) {
      if (!first) fmt::print("\n");
      first = false;
      printPath(path);
    }
  });
}

}  // namespace

Command reachCommand() {
  return leaf(
      "reach",
      "can SRC reach DST? the hop-by-hop path through security groups, network ACLs, route tables, the "
      "router and the gateways, computed from the model (no packet sent unless --verify), and the exact rule "
      "that blocks",
      {{"SRC", "an instance, a subnet (each of its instances), an instance's address, or internet"},
       {"DST",
        "an instance, a subnet, an address (an instance's, its public one, or one outside the VPCs), or "
        "internet"}},
      "[--protocol tcp|udp|icmp] [--port P] [--verify]",
      [](po::options_description& options) {
        options.add_options()  //
            ("protocol", po::value<std::string>()->value_name("PROTO"),
             "tcp (default), udp (one way: the datagram arriving) or icmp (a ping and its reply)")  //
            ("port", po::value<std::string>()->value_name("P"),
             "the destination port, required for tcp and udp; from the internet, a published port is its "
             "outside port")  //
            ("verify",
             "then send one real probe along each path (from the source container's network namespace, a "
             "listener of its own at the destination) and say whether the kernel agrees; containers only. On "
             "OVN (corrald --ovn-southbound) each path is also traced with ovn-trace through OVN's logical "
             "flows, and the answer says whether OVN agrees");
      },
      reach);
}

}  // namespace corral::cli
