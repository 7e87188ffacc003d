// The reachability analyzer: can a packet from one endpoint reach another, hop by hop, and if not, which
// component and which rule stop it. Computed from the model alone, no packet sent (AWS's Reachability
// Analyzer), by the same rules net/nft.cc and net/datapath.cc give the kernel:
// - a security group is stateful and checked for a new connection only: the source NIC's groups out, the
//   destination NIC's groups in (a peer group matches the addresses of its members in the same VPC or in
//   a peered one);
// - a network ACL is stateless and checked only where traffic crosses its subnet's boundary (the router
//   between two floors, never the switch inside one), first matching rule by number, implicit deny; the
//   replies of a TCP connection or a ping cross the same ACLs the other way, towards the client's
//   ephemeral port (Linux picks it from net.ipv4.ip_local_port_range, kEphemeralPorts), so an ACL must
//   allow that whole range for the connection to work whatever port the client picks;
// - inside the VPC the local route always wins (one rule for the VPC's CIDR); leaving it, the source
//   subnet's route table decides (longest prefix; a route to a gateway that does not exist is not in the
//   kernel); an isolated subnet (no 0.0.0.0/0 to a gateway) never leaves through the internet gateway;
// - between two VPCs only a peering carries traffic, and only where both sides' route tables send the
//   other VPC's addresses through it (the replies take the way back); it is not transitive;
// - from the internet only a public address (1:1 NAT, public subnet) or a published port gets in; a NAT
//   gateway refuses unsolicited inbound.
// UDP is one way: "reachable" means the datagram arrives (a reply is a datagram of its own).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/datapath.h"
#include "net/flow_log.h"
#include "net/vpc.h"

namespace corral::net {

// Linux's default net.ipv4.ip_local_port_range: where a client's source port comes from.
inline constexpr PortRange kEphemeralPorts{32768, 60999};
// The address standing for "internet" when no address is given (TEST-NET-3, RFC 5737).
inline constexpr std::string_view kInternetStandIn = "203.0.113.10";

struct ReachQuery {
  std::string source;       // an instance, a subnet (each of its instances), an address, or "internet"
  std::string destination;  // the same
  Protocol protocol = Protocol::Tcp;  // tcp, udp or icmp
  std::optional<uint16_t> port;       // tcp and udp only, then required
};

// The query from its text fields (CLI flags and API body): errors name the field ("protocol", "port").
Result<ReachQuery> makeReachQuery(std::string source, std::string destination, std::string_view protocol,
                                  std::optional<int64_t> port);

struct ReachHop {
  std::string component;  // "instance", "security group", "network ACL", "route table", "router",
                          // "switch", "internet gateway", "NAT gateway", "peering", "internet"
  std::string name;       // the object(s): "web-1", "web, db", "acl-private"
  std::string leg;        // "out", "in", "return" (the replies' way back), or "" for a place on the path
  bool passes = true;
  std::string rule;  // what decided: "rule 100", "web rule 3", "implicit deny", "local 10.0.0.0/16"
  std::string text;  // one sentence, in CONCEPTS.md's words
  bool operator==(const ReachHop&) const = default;
};

struct ReachPath {
  std::string source;  // "web-1 (10.0.1.5)", "internet (203.0.113.10)"
  std::string destination;
  std::string sourceAddress;  // "10.0.1.5"
  std::string destinationAddress;
  std::string sourceInstance;  // the instance at each end; "" for the internet or an outside address
  std::string destinationInstance;
  bool reachable = false;
  std::vector<ReachHop> hops;  // in path order, up to and including the one that blocks
  std::string verdict;         // one sentence: "reachable: ..." or "blocked by network ACL x rule 10: ..."
};

// The paths from every source endpoint to every destination endpoint (a subnet stands for each of its
// instances). `nics` are all instance NICs the daemon knows. Errors: an unknown source or destination
// (NotFound naming the field), a subnet without instances, both ends outside or the same instance
// (InvalidArgument naming the field).
Result<std::vector<ReachPath>> analyzeReach(const Topology& topology, const std::vector<NicAttachment>& nics,
                                            const ReachQuery& query);

// ---- The analyzer's rule matching, one rule at a time (the flow logs ask it what allowed a flow) ----

// A NIC's security groups as the kernel applies them: the ones it lists in its own VPC, by name, or the
// VPC's default group when it lists none.
std::vector<const SecurityGroup*> nicSecurityGroups(const Topology& topology, const NicAttachment& nic);

struct SecurityGroupMatch {
  const SecurityGroup* group = nullptr;
  const SecurityGroupRule* rule = nullptr;
};
// The first rule of `groups` in `direction` (the kernel's chain order: groups by name, rules by id) that
// allows a new connection of `protocol` to `port` with the peer at `peerAddress`, whose own groups are
// `peerGroups` (a peer group matches its members in the same VPC or in a peered one); nullopt when none
// does.
std::optional<SecurityGroupMatch> securityGroupAllows(const Topology& topology,
                                                      const std::vector<const SecurityGroup*>& groups,
                                                      Direction direction, Ipv4Address peerAddress,
                                                      const std::vector<const SecurityGroup*>& peerGroups,
                                                      Protocol protocol, std::optional<uint16_t> port);
// The rule of `acl` that decides a packet in `direction` to/from `peer` of `protocol` to destination port
// `port` (none for icmp): the first matching rule by number; null for the implicit deny.
const NetworkAclRule* networkAclDecides(const NetworkAcl& acl, Direction direction, Ipv4Address peer,
                                        Protocol protocol, std::optional<uint16_t> port);
// "tcp port 80 from 0.0.0.0/0", "all traffic to group web"
std::string securityGroupRuleText(const SecurityGroupRule& rule);

// What allowed an accepted flow that conntrack reported (the record's `connection`), by the model as it is
// now: the client NIC's security group rule out and the server NIC's rule in (a stateful group lets the
// replies through because it allowed the connection; a published port is its own allow rule, no group is
// asked), and the network ACL rules the record's packets crossed: out of the subnet they left, into the
// one they entered (none inside one subnet: the switch, no router). `nicAt` finds a NIC of any VPC by
// address (null: not an instance's). A guard that would refuse it now (the model changed after the flow
// began; an established connection outlives the rule that let it in) names no rule: that guard is left
// out. Empty for a protocol other than tcp, udp and icmp.
std::vector<FlowAllowingRule> flowAllowedBy(const Topology& topology,
                                            const std::function<const NicAttachment*(uint32_t)>& nicAt,
                                            const AcceptedConnection& connection);

}  // namespace corral::net
