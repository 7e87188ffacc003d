// ovn-trace's legs and the reading of its output (net/ovn_trace.h).
#include "net/ovn_trace.h"

#include <fmt/format.h>

#include <regex>
#include <sstream>

#include "net/datapath.h"
#include "net/vpc_ovn.h"

namespace corral::net {
namespace {

// One --ct per ct_next the packet may meet (each switch's ingress and egress ACL stages, the router's):
// ovn-trace takes est|trk for every ct_next beyond those given.
constexpr int kConntrackStages = 6;

std::string macOf(const OvnTraceEnd& end) {
  return instanceMac(end.instance, end.vm);
}

// Where `from` sends a packet for `to`: the destination's own MAC on one floor, else the router's port on
// the source floor.
std::string nextHopMac(const OvnTraceEnd& from, const OvnTraceEnd& to) {
  if (from.vpc == to.vpc && from.subnet == to.subnet) return macOf(to);
  return subnetBridgeMac(subnetBridgeName(from.vpc, from.subnet));
}

OvnTraceLeg leg(std::string name, const OvnTraceEnd& from, const OvnTraceEnd& to, std::string_view l4,
                std::string_view conntrack) {
  const std::string microflow = fmt::format(
      "inport == \"{}\" && eth.src == {} && eth.dst == {} && ip4.src == {} && ip4.dst == {} && "
      "ip.ttl == 64 && {}",
      ovnNicPortName(from.instance), macOf(from), nextHopMac(from, to), from.address, to.address, l4);
  OvnTraceLeg out{
      .name = std::move(name), .args = {"--detailed"}, .expectedPort = ovnNicPortName(to.instance)};
  for (int i = 0; i < kConntrackStages; ++i) out.args.push_back(fmt::format("--ct={}", conntrack));
  out.args.push_back(ovnSwitchName(from.subnet));
  out.args.push_back(microflow);
  return out;
}

}  // namespace

std::vector<OvnTraceLeg> ovnTraceLegs(const OvnTraceEnd& from, const OvnTraceEnd& to,
                                      schema::Protocol protocol, std::optional<uint16_t> port) {
  std::vector<OvnTraceLeg> legs;
  switch (protocol) {
    case schema::Protocol::Tcp:
      legs.push_back(
          leg("forward", from, to,
              fmt::format("tcp && tcp.src == {} && tcp.dst == {}", kOvnTraceClientPort, port.value_or(0)),
              "new,trk"));
      legs.push_back(
          leg("reply", to, from,
              fmt::format("tcp && tcp.src == {} && tcp.dst == {}", port.value_or(0), kOvnTraceClientPort),
              "est,rpl,trk"));
      break;
    case schema::Protocol::Udp:
      legs.push_back(
          leg("forward", from, to,
              fmt::format("udp && udp.src == {} && udp.dst == {}", kOvnTraceClientPort, port.value_or(0)),
              "new,trk"));
      break;
    case schema::Protocol::Icmp:
    case schema::Protocol::All:
      legs.push_back(leg("forward", from, to, "icmp4 && icmp4.type == 8 && icmp4.code == 0", "new,trk"));
      legs.push_back(leg("reply", to, from, "icmp4 && icmp4.type == 0 && icmp4.code == 0", "est,rpl,trk"));
      break;
  }
  return legs;
}

OvnTraceOutcome readOvnTrace(std::string_view output, std::string_view expectedPort) {
  // " 4. ls_out_acl (northd.c:6543): reg0[9] == 1 && (outport == @pg2 && ip4), priority 2000, uuid 0835dccc"
  static const std::regex stage(
      R"(^\s*\d+\.\s+(\S+)\s+\([^)]*\):\s+(.*),\s+priority\s+(\d+),\s+uuid\s+\S+\s*$)");
  static const std::regex outputTo(R"re(/\*\s*output to "([^"]+)")re");
  std::istringstream lines{std::string(output)};
  std::string line;
  std::string lastStage;
  std::optional<std::string> dropped;
  std::vector<std::string> elsewhere;
  while (std::getline(lines, line)) {
    std::smatch found;
    if (std::regex_match(line, found, stage)) {
      lastStage = fmt::format("{} (priority {}): {}", found[1].str(), found[3].str(), found[2].str());
      continue;
    }
    if (std::regex_search(line, found, outputTo)) {
      if (found[1].str() == expectedPort) return {true, fmt::format("output to {}", expectedPort)};
      // A router's or another switch's port on the way: the trace goes on from there (printed nested).
      elsewhere.push_back(found[1].str());
      continue;
    }
    const auto first = line.find_first_not_of(' ');
    if (first != std::string::npos && line.compare(first, std::string::npos, "drop;") == 0 && !dropped)
      dropped = lastStage.empty() ? std::string("a logical flow") : lastStage;
  }
  if (dropped) return {false, fmt::format("dropped at {}", *dropped)};
  if (!elsewhere.empty())
    return {false, fmt::format("output to {}, never to {}", elsewhere.back(), expectedPort)};
  return {false, fmt::format("no logical flow outputs it (never to {})", expectedPort)};
}

}  // namespace corral::net
