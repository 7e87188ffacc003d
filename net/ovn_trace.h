// OVN's own verdict on a reach path (`corral reach --verify` on the OVN backend, docs/cluster.md): ovn-trace
// (ovn-trace(8)) runs a packet through the logical flows ovn-northd compiled into the southbound database
// from corral's rows, so it says what OVN itself will do with it, for containers and VMs alike, without
// sending anything. Pure: the legs to trace (ovn-trace's arguments) and the reading of its --detailed
// output; daemon/ovn_fabric.h runs the tool.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "schema/network.h"

namespace corral::net {

// One end of a path between two NICs of corral's VPCs (the analyzer's paths between instances).
struct OvnTraceEnd {
  std::string instance;
  bool vm = false;
  std::string vpc;
  std::string subnet;
  std::string address;
};

struct OvnTraceLeg {
  std::string name;               // "forward" (the new connection) or "reply" (its answer)
  std::vector<std::string> args;  // ovn-trace's, after --db: --detailed, the --ct states, datapath, microflow
  std::string expectedPort;       // the logical port the packet must be output to
};

// The client's port in the traces: one of kEphemeralPorts (net/reach.h), as the kernel would pick.
inline constexpr uint16_t kOvnTraceClientPort = 40000;

// The legs of `from` → `to`: the new connection (conntrack state new at every ct_next: the security groups'
// allow-related ACLs see a first packet) and, for tcp and icmp, its reply (state est+rpl: conntrack's view
// of an answer; the network ACLs are stateless and judge it on its own). udp is one way, as in the
// analyzer. A packet enters at the source NIC's logical port, addressed to the destination's MAC on one
// floor, else to the source floor's router port (the subnet bridge's MAC, as planOvnVpc gives it).
std::vector<OvnTraceLeg> ovnTraceLegs(const OvnTraceEnd& from, const OvnTraceEnd& to,
                                      schema::Protocol protocol, std::optional<uint16_t> port);

struct OvnTraceOutcome {
  bool delivered = false;
  std::string detail;  // "output to corral.nic.db-1", "dropped at ls_out_acl (priority 2000): MATCH", ...
};

// What ovn-trace --detailed printed for a leg: delivered when the packet is output to `expectedPort`; else
// the logical flow that dropped it (its stage, priority and match), the port it went to instead, or that
// no flow took it on.
OvnTraceOutcome readOvnTrace(std::string_view output, std::string_view expectedPort);

}  // namespace corral::net
