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

#include <string>
#include <vector>

#include "core/error.h"
#include "net/vpc.h"

namespace corral::net {

struct NicAttachment {
  std::string instance;
  std::string subnet;
  std::string address;                      // "10.0.1.5"
  std::vector<std::string> securityGroups;  // empty: the VPC's default group
};

// The whole `table inet corral { ... }` for `vpc` (must exist in topology), deterministic text.
std::string vpcRuleset(const Topology& topology, std::string_view vpc,
                       const std::vector<NicAttachment>& nics);

// Replaces table inet corral in the named namespace with `ruleset`, atomically (libnftables, run from a
// helper thread that setns()es into the namespace). A ruleset nft refuses changes nothing; the error
// carries nft's message.
Status applyRuleset(const std::string& netns, const std::string& ruleset);
// Deletes table inet corral there (missing: not an error).
Status deleteRuleset(const std::string& netns);

}  // namespace corral::net
