// The VPC datapath as kernel objects, planned purely from the model (issue 5's design, docs/networking.md):
// each VPC is a network namespace acting as its router, each subnet a Linux bridge in it holding the
// router's address (the subnet's first host, .1), each instance NIC a veth (container) or tap (VM) port
// of its subnet's bridge, the internet gateway a veth pair from the VPC namespace to the uplink. Names are
// short and stable (Linux interface names are at most 15 bytes), carry corral's prefix so reconciliation
// can find ours, and are derived from object names by a hash so a 63-character VPC name still fits.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/cidr.h"
#include "net/firewall.h"
#include "net/vpc.h"

namespace corral::net {

inline constexpr std::string_view kDefaultNetnsPrefix = "corral-";  // /run/netns/corral-vpc-<vpc name>
inline constexpr std::string_view kLinkPrefix = "crl";              // every link we make starts with this

// FNV-1a, 32 bits: small, stable across builds and platforms, good enough to spread names (links here,
// chains of long security-group combinations in net/nft.cc).
uint32_t fnv1a32(std::string_view text);

// PREFIX + "vpc-" + vpc: the VPC router's namespace, e.g. "corral-vpc-prod". A daemon owns exactly the
// namespaces starting with PREFIX + "vpc-" (tests run daemons with their own prefix side by side).
std::string vpcNetnsName(std::string_view prefix, std::string_view vpc);
// The VPC name back from a namespace name, when it is one of this prefix's; nullopt otherwise.
std::optional<std::string> vpcFromNetnsName(std::string_view prefix, std::string_view netns);
// "crlb" + 8 hex digits of a stable hash of "vpc/subnet": the subnet's bridge (12 bytes).
std::string subnetBridgeName(std::string_view vpc, std::string_view subnet);
// The instance's NIC as seen in the VPC namespace: "crlv" + 8 hex (veth peer of the container's eth0) or
// "crlt" + 8 hex (the VM's tap). `key` must be unique on the host for taps (QEMU creates them in the
// daemon's namespace first): the daemon passes its libvirt domain name.
std::string instanceVethName(std::string_view key);
std::string instanceTapName(std::string_view key);
// 52:54:00 (QEMU's OUI) for VMs, 02:c0 (locally administered) for containers; stable per instance.
std::string instanceMac(std::string_view instance, bool vm);
// The subnet's bridge, which carries the router's .1: 02:c1 (locally administered) + a hash of the bridge's
// name. Set when the bridge is made: a bridge left to choose takes the lowest MAC of its ports, and so the
// router's MAC changed whenever an instance came or went, and the floor's instances sent to the old one
// until their ARP entries expired.
std::string subnetBridgeMac(std::string_view bridge);
// The internet gateway's veth pair: "crlg" + hash in the VPC namespace, "crlu" + hash on the uplink side
// (hash of the VPC's namespace name, unique per host).
std::string gatewayLinkName(std::string_view netns);
std::string uplinkLinkName(std::string_view netns);
// A VPC peering's end in a VPC namespace: "crlp" + hash of the namespace and the peering's name.
std::string peeringLinkName(std::string_view netns, std::string_view peering);

// ---- Addresses outside the VPCs ----

// Where internet gateways connect to and the address pools they use (corrald's --uplink-* options).
struct UplinkSettings {
  // Namespace holding the outside ("the internet"): empty = the daemon's own (the host: its default route
  // carries the traffic on, with masquerade). Tests name a namespace they created.
  std::string netns;
  // Each VPC with an internet gateway gets one /30 of this pool: .1 uplink side, .2 the VPC side (the
  // gateway's outside address: what masqueraded traffic comes from and where published ports listen).
  Cidr transitPool = *Cidr::parse("100.64.0.0/17");
  // "Public" (elastic) addresses for 1:1 NAT, routed by the uplink side to the VPC side of the pair.
  Cidr publicPool = *Cidr::parse("100.64.128.0/17");
};

// The VPC's transit /30 in settings.transitPool: slot chosen by a stable hash of the VPC name, probing
// past slots `taken` (the other VPCs' transits). Conflict when the pool is full.
Result<Cidr> chooseTransit(const UplinkSettings& settings, std::string_view vpc, const std::set<Cidr>& taken);
// The VPC's transit as a function of the model alone: the VPCs with an internet gateway, oldest first
// (creation time, then name), each take chooseTransit's /30 past the ones before. The OVN backend plans
// with it: every corrald of a cluster must choose the same /30 for a VPC whatever order it saw the
// gateways come in (a memory of earlier choices would differ between hosts, and after a restart).
// NotFound when `vpc` has no internet gateway.
Result<Cidr> transitInModel(const UplinkSettings& settings, const Topology& topology, std::string_view vpc);
// The lowest address of settings.publicPool (skipping its network and broadcast addresses) not in `taken`.
Result<Ipv4Address> choosePublicAddress(const UplinkSettings& settings, const std::set<Ipv4Address>& taken);

// ---- NICs ----

struct PortForward {
  Protocol protocol = Protocol::Tcp;  // tcp or udp
  uint16_t outsidePort = 0;           // on the gateway's outside (transit) address
  uint16_t instancePort = 0;
  auto operator<=>(const PortForward&) const = default;
};
// "8080:80", "8080:80/udp" → PortForward; errors name `field` ("publish[0]") and say why (port 0 or above
// 65535, not a number, unknown protocol).
Result<PortForward> parsePortForward(std::string_view text, std::string_view field);
std::string portForwardText(const PortForward& forward);  // "8080:80/tcp"

// One instance's NIC in a VPC, as the daemon recorded it.
struct NicAttachment {
  std::string instance;
  bool vm = false;
  std::string subnet;
  std::string address;                       // "10.0.1.5"
  std::vector<std::string> securityGroups;   // empty: the VPC's default group
  std::optional<std::string> publicAddress;  // 1:1 NAT through the internet gateway
  std::vector<PortForward> publish;          // DNAT from the gateway's outside address
  std::string linkKey;                       // input of instanceVethName/instanceTapName (see there)
  bool operator==(const NicAttachment&) const = default;
};

// ---- The plan ----

struct BridgePlan {
  std::string subnet;
  std::string bridge;  // link name in the VPC namespace
  Cidr cidr;
  std::string routerAddress;    // "10.0.1.1/24": the subnet's first host on the bridge
  std::string resolverAddress;  // "10.0.1.2/24": where the VPC resolver answers (net/resolver.h)
  bool operator==(const BridgePlan&) const = default;
};

struct RoutePlan {
  Cidr destination;
  bool blackhole = false;  // else: via the internet gateway's uplink side (IGW and NAT gateway targets)
  std::string peering;     // non-empty: via this peering's link to the peer VPC's router
  auto operator<=>(const RoutePlan&) const = default;
};

// A route table becomes a kernel routing table in the VPC namespace; its subnets select it by source
// address (policy routing). The "local" route is one rule for the whole VPC CIDR (to VPC_CIDR lookup
// main), so it never needs copying into each table.
struct RouteTablePlan {
  std::string name;
  uint32_t tableId = 0;           // 100 + index of the table among the VPC's, sorted by name
  std::vector<Cidr> subnets;      // whose traffic follows this table, sorted
  std::vector<RoutePlan> routes;  // without the local route; routes to a missing gateway are left out
  bool operator==(const RouteTablePlan&) const = default;
};

inline constexpr uint32_t kLocalRulePriority = 900;    // to VPC_CIDR lookup main
inline constexpr uint32_t kSubnetRulePriority = 1000;  // from SUBNET lookup TABLE

struct GatewayPlan {
  std::string name;                          // the internet gateway's name
  std::string vpcLink;                       // gatewayLinkName: in the VPC namespace
  std::string uplinkLink;                    // uplinkLinkName: in settings.netns (or the daemon's namespace)
  std::string uplinkNetns;                   // settings.netns
  Cidr transit;                              // the /30
  std::string vpcAddress;                    // "100.64.0.6/30"
  std::string uplinkAddress;                 // "100.64.0.5/30"
  std::vector<Ipv4Address> publicAddresses;  // routed by the uplink side to the VPC side, sorted
  bool operator==(const GatewayPlan&) const = default;
};

// One VPC peering seen from one of its VPCs: a veth pair between the two routers' namespaces, each end
// with its address of the peering's /30 (Peering::link: .1 on the requester's side, .2 on the
// accepter's). Whichever side converges first while both namespaces exist makes the pair.
struct PeeringPlan {
  std::string name;
  std::string peerVpc;
  std::string link;         // peeringLinkName(netns, name): our end
  std::string peerNetns;    // the peer VPC's namespace
  std::string peerLink;     // peeringLinkName(peerNetns, name): its end
  std::string address;      // "169.254.248.1/30": ours
  std::string peerAddress;  // "169.254.248.2/30": the peer router's, where our routes point
  Cidr peerCidr;
  bool operator==(const PeeringPlan&) const = default;
};

// What a VM's virtio-net device is made with beyond its addresses: the guest's MTU and whether the host takes
// its checksums and TSO. Both are the guest's device state, so a warm snapshot is made and restored with one.
struct NicProfile {
  unsigned mtu = 0;           // 0: the 1500-byte default; 1400 on OVN (Geneve's overhead, corrald)
  bool guestOffloads = true;  // vmm::NicConfig::hostOffloads
  bool operator==(const NicProfile&) const = default;
};

struct NicPlan {
  NicAttachment nic;
  std::string link;    // instanceVethName/instanceTapName(nic.linkKey): the port in the VPC namespace
  std::string bridge;  // its subnet's bridge
  std::string mac;     // instanceMac(nic.instance, nic.vm)
  std::string addressWithPrefix;  // "10.0.1.5/24"
  std::string gateway;            // "10.0.1.1"
  std::string resolver;           // "10.0.1.2": the subnet's VPC resolver, the instance's nameserver
  std::string searchDomain;       // "VPC.internal": the instance's resolv.conf search domain
  unsigned mtu = 0;               // 0: the 1500-byte default; 1400 on OVN (Geneve's overhead, corrald)
  bool guestOffloads = true;      // a VM's checksum/TSO offload to the host (vmm::NicConfig::hostOffloads)
  NicProfile profile() const { return {.mtu = mtu, .guestOffloads = guestOffloads}; }
  bool operator==(const NicPlan&) const = default;
};

struct VpcPlan {
  std::string vpc;
  std::string netns;
  Cidr cidr;
  std::vector<BridgePlan> bridges;          // one per subnet, sorted by subnet name
  std::vector<RouteTablePlan> routeTables;  // sorted by name
  std::optional<GatewayPlan> gateway;       // when the VPC has an internet gateway
  std::vector<PeeringPlan> peerings;        // sorted by name
  std::vector<NicPlan> nics;                // sorted by instance name
  NftTable firewall;                        // vpcFirewall(...): table inet corral
  NftTable portGuardTable;                  // portGuardTable(...): table bridge corral
  std::string ruleset;                      // renderTable(firewall)
  std::string portGuards;                   // renderTable(portGuardTable)
  // Equal plans need nothing done in the kernel: a change to the model converges only the VPCs whose
  // plan it changes.
  bool operator==(const VpcPlan&) const = default;
};

// The kernel objects a VPC needs (from the topology, which must hold `vpc`). `transit` is required when
// the VPC has an internet gateway (chooseTransit); NICs of VPCs peered with it fill the member sets of
// their groups that our security group rules name (peer group references), others are ignored.
VpcPlan planVpc(const Topology& topology, std::string_view vpc, std::string_view netnsPrefix,
                const std::vector<NicAttachment>& nics, const UplinkSettings& uplink,
                const std::optional<Cidr>& transit);

// One NIC's plan from its subnet alone (what planVpc lists in plan.nics): O(1), no VPC plan needed.
NicPlan planNic(const Subnet& subnet, const NicAttachment& nic);

// Whether two plans of a VPC need the same links, addresses, routes, rules and gateway: then going from
// one to the other only changes the firewall (NICs, security groups, network ACLs), which a delta of the
// two tables does without a netlink dump.
bool sameLinksAndRoutes(const VpcPlan& a, const VpcPlan& b);

}  // namespace corral::net
