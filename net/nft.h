// The VPC firewall as one nftables table per VPC namespace, rendered purely from the model and the NICs
// attached (golden-file tested), and applied atomically through libnftables: one transaction that
// creates, flushes and refills table `inet corral`, so a VPC is never without its rules or half-updated.
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

#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/datapath.h"
#include "net/vpc.h"

namespace corral::net {

// The whole `table inet corral { ... }` for `vpc` (must exist in topology), deterministic text. With a
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

// Replaces table inet `table` (default "corral") in the named namespace (empty: the caller's) with
// `ruleset`, atomically (libnftables, run from a helper thread that setns()es into the namespace). A
// ruleset nft refuses changes nothing; the error carries nft's message.
Status applyRuleset(const std::string& netns, const std::string& ruleset, std::string_view table = "corral");
// Deletes table inet `table` there (missing: not an error).
Status deleteRuleset(const std::string& netns, std::string_view table = "corral");

}  // namespace corral::net
