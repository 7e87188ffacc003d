// The VPC firewall as one nftables table per VPC namespace, built purely from the model and the NICs
// attached as structured data (net/firewall.h; its rendering is golden-file tested), and applied
// atomically through libnftables: whole (one transaction that creates, deletes and refills table `inet
// corral`) or as the delta from the last applied table (one transaction too), so a VPC is never without
// its rules or half-updated.
//
// Semantics (AWS's):
// - Network ACLs are stateless, per subnet, numbered, first match wins, implicit deny; they apply where
//   traffic crosses a subnet boundary (routed by the VPC router: leaving subnet S uses S's egress rules,
//   entering T uses T's ingress rules), not between two NICs of the same subnet. Return traffic needs
//   its own rule.
// - Security groups are stateful, per NIC, allow rules only: established/related traffic passes; a new
//   connection needs an egress rule of a group of its source NIC (when the source is one of ours) and an
//   ingress rule of a group of its destination NIC (when the destination is one of ours). A peer group
//   matches the addresses of the NICs that are members of it. A new group allows all egress, no ingress.
// - Inside one subnet, bridged traffic reaches these rules through br_netfilter
//   (net.bridge.bridge-nf-call-iptables=1 in the VPC namespace): nft's bridge family has no conntrack on
//   many kernels (this one), so stateful filtering happens in the inet forward hook.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/datapath.h"
#include "net/firewall.h"
#include "net/vpc.h"

namespace corral::net {

// Table inet corral for `vpc` (must exist in topology) as structured data (net/firewall.h), so that a
// change can be applied as the difference of two of them. Its size grows with NICs + rules, not NICs²:
// - each security group's members are a set (sg-members-GROUP) that peer-group rules refer to;
// - NICs with the same groups share one chain per direction (sg-egress-web.db, sg-ingress-web.db), reached
//   through the verdict maps sg-egress / sg-ingress keyed by the NIC's address;
// - the gateway's per-NIC NAT (public addresses, published ports) are elements of maps and sets.
// So a NIC coming or going changes elements (and a chain pair when its combination of groups is new or
// its last user), a rule changes its groups' chains.
// With VPC peerings (topology.peerings(vpc)) it also holds, in forward: traffic from a peering link must be
// for this VPC and traffic out through one must come from it (not transitive, no edge-to-edge routing);
// and a member set for each group of a peered VPC that our rules name, filled from `peerNics` (NICs of
// peered VPCs; others are ignored).
NftTable vpcFirewall(const Topology& topology, std::string_view vpc, const std::vector<NicAttachment>& nics,
                     const GatewayPlan* gateway = nullptr, const std::vector<NicAttachment>& peerNics = {});
// The delta of vpcFirewall when the model goes from `before` to `after` in its security groups, their rules
// and the network ACLs only (the NICs, links and routes as they were): `applied` is vpcFirewall(before,
// vpc, the VPC's NICs, gateway). Planned over one NIC per combination of security groups rather than
// every NIC, so it costs the model's size, not the VPC's: the chains and set declarations change, never
// an element. `stands` holds at least one NIC of each combination of listed groups the VPC's NICs have
// (only their groups and subnet matter; more NICs of a combination are skipped), so the caller need not
// visit every NIC. nullopt when the change would touch elements, or `applied` is not what `before` plans
// (a NIC's note in a base chain, a combination missing from `stands`): the caller plans the VPC whole.
std::optional<NftDelta> vpcFirewallRulesDelta(const NftTable& applied, const Topology& before,
                                              const Topology& after, std::string_view vpc,
                                              const std::vector<NicAttachment>& stands,
                                              const GatewayPlan* gateway,
                                              const std::vector<NicAttachment>& peerNics = {});

// renderTable(vpcFirewall(...)): the whole `table inet corral { ... }`, deterministic text. With a
// gateway (the VPC has an internet gateway, see net/datapath.h) it also holds the NAT:
// - prerouting (dstnat): from the gateway link, a NIC's public address → its private address (1:1), and
//   the gateway's outside address + a published port → the NIC's address and port;
// - postrouting (srcnat): to the gateway link, a NIC with a public address in a public subnet → that public
//   address; any other address of a subnet whose route table sends 0.0.0.0/0 to the internet gateway
//   (public) or to a NAT gateway (private, NAT) → the gateway's outside address;
// - forward: a published port's DNATed connection is accepted (publishing is the allow rule, as with
//   Docker's -p); a 1:1 DNATed one faces the NIC's security groups like any other; every other new
//   connection coming in from the gateway link is dropped (unsolicited inbound reaches only what is
//   published or public), and traffic of isolated subnets never leaves through it;
// - input: the router itself answers on the gateway link only to established traffic and ICMP echo.
std::string vpcRuleset(const Topology& topology, std::string_view vpc, const std::vector<NicAttachment>& nics,
                       const GatewayPlan* gateway = nullptr);

// The host's side when the uplink is the host itself (UplinkSettings::netns empty): table inet `table`
// (corrald names it per netns prefix, so parallel daemons do not collide): a forward chain accepting
// traffic from the uplink links (crlu*) and established traffic back to them, and a postrouting
// masquerade of the transit and public pools leaving through any link that is not ours. (Another table's
// drop, such as Docker's FORWARD policy, still applies: docs/networking.md says what to do about it.)
std::string hostUplinkRuleset(const UplinkSettings& settings, std::string_view table);

// ---- Port guards: AWS's source/destination check ----
//
// Table bridge corral in the VPC namespace: its prerouting chain (bridge family, before br_netfilter hands
// frames to the inet hooks) checks each frame entering the bridge from an instance's port (container veth
// or VM tap) against that port's elements, and lets through only what carries the NIC's own addresses:
// - any frame whose source MAC is not the NIC's is dropped (reason "mac");
// - IPv4 whose source address is not the NIC's is dropped, 0.0.0.0 included (corral has no DHCP) ("ip");
// - ARP is allowed only as an Ethernet/IPv4 request or reply whose sender MAC and sender address are the
//   NIC's ("arp"), so no instance can answer for the router's .1 or a neighbour;
// - every other ethertype is dropped ("other"): IPv6 (VPCs are IPv4-only, and the inet forward chain
//   drops it when routed anyway; a guest's router solicitations and MLD reports count here), VLAN-tagged
//   and QinQ frames, STP, LLDP.
// One chain serves every port: the set `ports` says which ports are guarded, the sets port-mac (ifname .
// MAC), port-ip (ifname . address) and port-arp (ifname . MAC . address) what each may send, and one
// counter set per reason (drops-mac, drops-ip, drops-arp, drops-other: an element per port, each with its
// own counter) counts the drops, read back by spoofDrops. So a port coming or going is eight elements in
// one transaction, whatever the number of ports. Bridged and routed traffic both enter through the port,
// so one check covers the switch and the router. Traffic towards the instance is not checked here (the
// security groups do that).
enum class SpoofReason { Mac, Ip, Arp, Other };
inline constexpr SpoofReason kSpoofReasons[] = {SpoofReason::Mac, SpoofReason::Ip, SpoofReason::Arp,
                                                SpoofReason::Other};
std::string_view spoofReasonName(SpoofReason reason);  // "mac", "ip", "arp", "other"
// "drops-ip": the counter set of a reason in table bridge corral.
std::string portGuardDropSetName(SpoofReason reason);

// Table bridge corral for these NICs (a VPC's plan.nics): the shared chain, and per port its elements.
NftTable portGuardTable(std::string_view vpc, const std::vector<NicPlan>& nics);
// renderTable(portGuardTable(...)), deterministic text.
std::string portGuardRuleset(std::string_view vpc, const std::vector<NicPlan>& nics);

// Loads `ruleset` (portGuardRuleset of NICs on `links`) as table bridge corral in `netns`, in one
// transaction that keeps the counts of ports still guarded: their elements of the drop counter sets stay,
// everything else is refilled, and the elements of ports not in `links` are deleted (as are the per-port
// chains and named counters of the layout before this one). Returns the ports whose guards were removed.
Result<std::vector<std::string>> applyPortGuards(const std::string& netns, const std::string& ruleset,
                                                 const std::vector<std::string>& links);

// Frames dropped at one port, by reason.
struct SpoofDrops {
  uint64_t mac = 0;
  uint64_t ip = 0;
  uint64_t arp = 0;
  uint64_t other = 0;
  bool operator==(const SpoofDrops&) const = default;
};
// The counters of every guarded port in `netns`, by link name. A namespace without the table: empty.
Result<std::map<std::string, SpoofDrops>> spoofDrops(const std::string& netns);
// The counters of one port (its four elements, not the table's listing); NotFound when it has no guard.
// The answer is that port's, but libnftables (1.0.6) fills its cache with every element of the
// namespace's sets to give it (~350 KB read and parsed at 500 ports): its cost grows with the VPC, so no
// per-change path calls it (GET /v1/instances/NAME does).
Result<SpoofDrops> spoofDropsOf(const std::string& netns, const std::string& link);

// Replaces table inet `table` (default "corral") in the named namespace (empty: the caller's) with
// `ruleset`, atomically (libnftables, run from a helper thread that setns()es into the namespace). A
// ruleset nft refuses changes nothing; the error carries nft's message.
Status applyRuleset(const std::string& netns, const std::string& ruleset, std::string_view table = "corral");
// Applies the deltas (net/firewall.h; tables inet corral and bridge corral) in `netns` (a VPC's, never the
// caller's) as ONE libnftables transaction: all of it or, when nft refuses any command (the kernel is not
// what the delta was computed from), nothing.
Status applyDeltas(const std::string& netns, const std::vector<NftDelta>& deltas);
// `nft -j list table FAMILY TABLE` in `netns`: the kernel's view, for tests comparing two namespaces.
Result<std::string> listTableJson(const std::string& netns, std::string_view family, std::string_view table);

// Deletes table inet `table` there (missing: not an error).
Status deleteRuleset(const std::string& netns, std::string_view table = "corral");

// Each named namespace's libnftables work goes through one context kept for it (its netfilter socket
// lives in that namespace and holds it alive), made again when the namespace under that name is a new
// one. Frees the context kept for `netns`, if any: deleteNetns() calls it before the namespace goes, so
// no socket of corrald keeps a deleted namespace alive.
void forgetNftContext(const std::string& netns);

}  // namespace corral::net
