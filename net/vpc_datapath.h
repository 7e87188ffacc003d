// The sys side of a VPC: makes the kernel match a VpcPlan (net/datapath.h) and attaches instance NICs.
// Everything goes through net/netlink.h (namespaces, links, addresses, routes, rules, sysctls) and
// net/nft.h (the ruleset); nothing runs `ip` or `nft`. Convergence makes its calls through VpcKernel
// (net/vpc_kernel.h), so its diff is unit-tested against a fake.
//
// convergeVpc is idempotent and declarative, which makes it both "create" and "reconcile": objects that
// are right are left alone (so connections survive a re-apply), missing ones are created, wrong ones
// fixed, and corral-prefixed leftovers the plan no longer names (bridges of deleted subnets, stale
// routes and rules, a deleted gateway's veth) are removed. Every change made is reported, so the daemon
// can log what reconciliation did.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/datapath.h"
#include "net/vpc_kernel.h"

namespace corral::net {

// What convergeVpc changed, one line each: "created netns corral-vpc-prod", "removed bridge crlb1234abcd
// (subnet no longer exists)", "replaced route 0.0.0.0/0 in table 100". Empty when all was right.
using ChangeLog = std::vector<std::string>;

// Makes the VPC's namespace match `plan`:
// - the namespace (created if missing), lo up, net.ipv4.ip_forward=1, net.bridge.bridge-nf-call-iptables=1
//   (so bridged traffic meets the inet forward chain), rp_filter off on our links;
// - one bridge per subnet, up, with the router address; corral bridges not in the plan are deleted;
// - the port guards (plan.portGuards, table bridge corral: each NIC sends only from its own MAC and
//   address, see net/nft.h), before any port is checked, and only if they differ from what was loaded;
//   counts of ports that stay are kept, guards of NICs no longer planned go;
// - policy routing: rule kLocalRulePriority `to VPC_CIDR lookup main`, one rule per subnet at
//   kSubnetRulePriority + index `from SUBNET lookup TABLE`, each table's routes (via the gateway's uplink
//   side address, or blackhole); our stale rules (priorities 900..1999) and routes in tables 100..1099 go;
// - the internet gateway: the veth pair (VPC side in the namespace, uplink side in plan.gateway->uplinkNetns
//   or the caller's namespace when empty), addresses, up, and on the uplink side one /32 route per public
//   address via the VPC side; without a gateway in the plan, a leftover crlg link is deleted (its peer
//   goes with it);
// - each VPC peering: the veth pair between this namespace and the peer VPC's (made when both exist; a
//   corral peering link (crlp*) the plan no longer names is deleted, its peer end with it), both ends
//   addressed and up; routes through a peering whose pair is not there yet are left out;
// - NIC ports already present (a running instance's veth or tap) are checked: attached to the right
//   bridge and up. Missing ones are not created here (that needs the instance: attach* below);
// - the ruleset (plan.ruleset) applied atomically, last, and only if it differs from what is loaded.
// On failure the error names the step and object; what was already converged stays (a retry finishes).
Result<ChangeLog> convergeVpc(const VpcPlan& plan);
// The same through `kernel` (net/vpc_kernel.h): the unit tests' recording fake.
Result<ChangeLog> convergeVpc(const VpcPlan& plan, VpcKernel& kernel);

// The incremental path: applies `deltas` (net/firewall.h: from the tables last loaded to the new ones,
// inet and bridge corral) in the VPC's namespace as one nft transaction, without reading links or routes.
// nft refusing it (the kernel drifted from what the deltas were computed from) changes nothing; the caller
// then converges the VPC whole. Either way the next convergeVpc loads both tables whole (what it remembered
// of them is forgotten).
Status applyFirewallDeltas(const std::string& netns, const std::vector<NftDelta>& deltas);

// Removes the VPC's namespace and with it everything inside (bridges, veths, taps of VMs still running
// are deleted by the kernel; QEMU sees its NIC gone), and the uplink side of its gateway.
Status destroyVpc(const std::string& netns);

// Namespaces under /run/netns that belong to daemons with this prefix (vpcFromNetnsName).
std::vector<std::string> listVpcNetns(std::string_view netnsPrefix);

// A container's eth0: a veth pair made in the VPC namespace, one end (nic.link) a port of nic.bridge, the
// other moved into the namespace of `pid` (/proc/PID/ns/net) and renamed eth0, given nic.mac and
// nic.addressWithPrefix, up, with lo up and a default route via nic.gateway. A stale nic.link (from an
// earlier run) is deleted first. On failure nothing is left behind.
Status attachContainerNic(const std::string& netns, const NicPlan& nic, pid_t pid);

// The same port for a namespace that is not a container's (a load balancer's, lb/haproxy.h): the peer is
// made inside the namespace at `targetNetnsPath` as `ifname`; only the NIC that carries the default route
// gets one (`defaultRoute`), so a namespace can hold one NIC per subnet. With `sourceTable`, traffic from
// the NIC's address is routed by its own table (that number: its subnet and a default route via its
// router, selected by a rule of that priority), so a reply always leaves by the NIC it came in on.
Status attachNamespaceNic(const std::string& netns, const NicPlan& nic, const std::string& targetNetnsPath,
                          const std::string& ifname, bool defaultRoute,
                          std::optional<uint32_t> sourceTable = std::nullopt);

// attachNamespaceNic's `sourceTable` part on its own, for a NIC already in the namespace (`targetNetnsFd`,
// named `label` in errors) as `ifname`: its subnet and a default route via its router in table
// `sourceTable`, and a rule of that priority sending traffic from the NIC's address there.
Status addNicSourceTable(int targetNetnsFd, const std::string& label, const NicPlan& nic,
                         const std::string& ifname, uint32_t sourceTable);

// A VM's tap: QEMU created it as nic.link in the caller's namespace (libvirt <interface type='ethernet'>);
// it is moved into the VPC namespace, made a port of nic.bridge and brought up. The guest configures its
// own address from the kernel command line.
Status attachVmTap(const std::string& netns, const NicPlan& nic);

// Deletes nic.link in the VPC namespace if it is still there (the instance stopped; normally the kernel
// already removed it with the container's namespace or QEMU's tap).
Status detachNic(const std::string& netns, const NicPlan& nic);

}  // namespace corral::net
