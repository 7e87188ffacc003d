// The OVN backend of one VPC (issue 20, docs/cluster.md): the northbound rows a VPC needs, planned purely
// from the model (planOvnVpc), and their convergence through corral's OVSDB client (convergeOvnVpc): one
// transaction that inserts what is missing, repairs what drifted and deletes what corral made and no
// longer wants. Every row carries external_ids:corral-vpc=VPC and corral-object=KIND/NAME; rows without
// them are never touched.
//
// Semantics are the nftables backend's (net/nft.h), encoded in OVN 23.03 (no ACL tiers), so that a
// security group and a network ACL are two independent stages that must both allow:
// - security group G: Port_Group "corral_sg_G" of its members' ports; each rule an allow-related ACL on it
//   (ingress: to-lport, `outport == @PG`; egress: from-lport, `inport == @PG`; a rule naming group H
//   matches H's port-group address set $corral_sg_H_ip4), priority 2000; then a drop of the members' IPv4
//   in each direction at priority 1000. Several groups of one NIC: any group's rule allows.
// - network ACL of subnet S, "in" (traffic entering S from the router): from-lport ACLs on S's switch
//   matching `inport == S's router port`, stateless (allow-stateless / drop), priority 32767 - rule
//   number, implicit deny at 0. Traffic from the router port never goes through conntrack (northd skips
//   it), so these see every packet, replies included.
// - network ACL of subnet S, "out" (traffic leaving S for the router): Logical_Router_Policy rows on the
//   VPC's router matching `inport == S's router port`, allow / drop, priority 32767 - rule number,
//   implicit deny at 0. The router's policy stage has no conntrack either: replies need their own rule.
// The matches of the two stages are disjoint (NIC ports vs router ports; switch vs router), so no ACL of
// one shadows the other's.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "net/datapath.h"
#include "net/ovsdb.h"
#include "net/vpc.h"
#include "net/vpc_datapath.h"

namespace corral::net {

inline constexpr std::string_view kOvnNorthbound = "OVN_Northbound";
inline constexpr std::string_view kOvnVpcKey = "corral-vpc";        // external_ids: the VPC's name
inline constexpr std::string_view kOvnObjectKey = "corral-object";  // external_ids: KIND/NAME in the VPC
// external_ids: "cluster" on the rows a cluster's corralds converge together; a single host's rows have
// none. A corrald removes the rows of VPCs it does not know only within its own scope, so a host that left
// a cluster and runs alone on the cluster's northbound database leaves the cluster's VPCs alone.
inline constexpr std::string_view kOvnScopeKey = "corral-scope";
inline constexpr std::string_view kOvnClusterScope = "cluster";

inline constexpr int kOvnSecurityGroupRulePriority = 2000;
inline constexpr int kOvnSecurityGroupDropPriority = 1000;
inline constexpr int kOvnNaclTopPriority = 32767;  // rule number N: 32767 - N; the implicit deny: 0

// Where a VPC's internet gateway meets the outside: the OVN counterpart of the nftables backend's uplink
// (UplinkSettings and the VPC's transit /30, net/datapath.h).
struct OvnGatewaySettings {
  std::string chassis;  // the host (its ovn-controller's system-id) that carries the gateway port
  std::string network;  // the physical network that host maps to the outside (ovn-bridge-mappings)
  Cidr transit;         // the VPC's /30 (chooseTransit): .1 the outside's side, .2 the gateway's address
  bool operator==(const OvnGatewaySettings&) const = default;
};

// Names of the OVN rows (unique in the northbound database, as corral's names are in the topology).
std::string ovnRouterName(std::string_view vpc);               // "corral.vpc.prod": Logical_Router
std::string ovnSwitchName(std::string_view subnet);            // "corral.subnet.web": Logical_Switch
std::string ovnRouterPortName(std::string_view subnet);        // "corral.router.web": Logical_Router_Port
std::string ovnSwitchRouterPortName(std::string_view subnet);  // "corral.router-port.web": its switch side
// "corral.nic.web-1": the NIC's Logical_Switch_Port; a host binds its br-int port to it with
// external_ids:iface-id set to this name.
std::string ovnNicPortName(std::string_view instance);
// The internet gateway: the outside switch "corral.outside.prod" with its localnet port
// "corral.outside.prod.localnet", the router's gateway port "corral.gateway.prod" and its switch side
// "corral.gateway-port.prod".
std::string ovnOutsideSwitchName(std::string_view vpc);
std::string ovnGatewayPortName(std::string_view vpc);
// A VPC peering's end in `vpc`: "corral.peering.PEERING.VPC", a Logical_Router_Port of the VPC's router
// whose `peer` is the other VPC's end (OVN's router-to-router link).
std::string ovnPeeringPortName(std::string_view vpc, std::string_view peering);
// "corral_sg_web_db": Port_Group (an identifier: OVN matches name it as @PG and $PG_ip4).
std::string ovnPortGroupName(std::string_view group);

// One northbound row as corral wants it.
struct OvnRow {
  std::string table;    // "Logical_Switch"
  std::string object;   // "subnet/web": external_ids:corral-object, unique in the plan
  ovsdb::Json columns;  // JSON object: column -> value in OVSDB's encoding; no references, no external_ids
  // Columns holding references to rows of the plan: column -> objects ("ports" -> ["nic/web-1", ...]).
  std::map<std::string, std::vector<std::string>> references;
  bool operator==(const OvnRow&) const = default;
};

struct OvnVpcPlan {
  std::string vpc;
  bool cluster = false;      // every row marked corral-scope=cluster (kOvnScopeKey)
  std::vector<OvnRow> rows;  // children before parents (ovnTableOrder), then by object
  const OvnRow* find(std::string_view object) const;
  bool operator==(const OvnVpcPlan&) const = default;
};

// The tables a plan uses, children (rows others refer to) first: the order of inserts.
const std::vector<std::string>& ovnTableOrder();

// The northbound rows of `vpc`:
// - the VPC: a Logical_Router;
// - each subnet: a Logical_Switch (other_config:subnet), a Logical_Router_Port at the subnet's first host
//   (.1) with the MAC the nftables backend gives the subnet's bridge (subnetBridgeMac), and the switch's
//   port of type router to it; options:route_table = the subnet's route table;
// - each NIC of the VPC's subnets: a Logical_Switch_Port ovnNicPortName(instance), addresses and
//   port_security "MAC IP" (MAC: instanceMac, as the nftables backend);
// - the VPC resolver's names (net/resolver.h: each NIC as NAME and NAME.VPC.internal) as one DNS row held
//   by every subnet's switch, OVN answering the queries on the switch; the switch's router port answers
//   ARP for the subnet's .2 (options:arp_proxy), so instances send their queries there. Names OVN does not
//   know get no answer (the nftables backend's resolver forwards them or refuses them);
// - security groups and network ACLs as described at the top of this file;
// - route tables: each blackhole route a Logical_Router_Static_Route with nexthop "discard" in the table's
//   route_table; a route to the internet gateway or to a NAT gateway one with nexthop the transit's .1
//   (a NAT gateway sends on through the internet gateway, as in AWS), planned only with `gateway`;
//   a route to a peering one with nexthop the other VPC's end of the peering's link;
// - each VPC peering (topology.peerings(vpc)): this VPC's end of a router-to-router link, a
//   Logical_Router_Port at our address of the peering's /30 (Peering::link: .1 the requester's, .2 the
//   accepter's) with `peer` = the other VPC's end, which the other VPC's plan holds (each plan only its
//   own rows; both are planned from the topology alone, so they agree). The link's port has no route
//   table: what arrives through it is routed by the router's connected routes only, to the VPC's own
//   subnets, never on through another peering or the internet gateway (not transitive, as in AWS).
//   A security group rule naming a group of a peered VPC matches that group's address set
//   ($corral_sg_H_ip4, kept by OVN from the port group in the peer's plan); without a peering it is left
//   out;
// - the internet gateway, when the VPC has one and `gateway` is given: an outside switch with a localnet
//   port on gateway->network and a port of type router to the router's gateway port (the transit's .2,
//   bound to gateway->chassis: a distributed gateway port), SNAT of each public or NAT-routed subnet to the
//   .2, and 1:1 NAT (dnat_and_snat) of each NIC's public address when its subnet is public, as the
//   nftables backend does; each published port of a NIC in a subnet that reaches the gateway a VIP of the
//   router's load balancer for its protocol (the .2 and the outside port to the NIC's address and port),
//   and an allow-related ACL on the NIC's port for what comes from outside the VPC to that port
//   (publishing is the allow rule, as in the nftables backend).
// NICs of other VPCs' subnets are ignored. Errors name the field: `vpc` unknown, `nics[I].subnet` unknown,
// `nics[I].address` not an address of its subnet, `nics[I].securityGroups[J]` not a group of the VPC,
// `nics[I].instance` with a second NIC in the VPC, `nics[I].publicAddress` not an address,
// `nics[I].publish[J]` an outside port published twice.
Result<OvnVpcPlan> planOvnVpc(const Topology& topology, std::string_view vpc,
                              const std::vector<NicAttachment>& nics,
                              const OvnGatewaySettings* gateway = nullptr);

// The plan as text, one row after the other ("TABLE OBJECT", then "  column = value" and
// "  column -> object, ..."): the unit tests' golden files.
std::string renderOvnVpcPlan(const OvnVpcPlan& plan);

// Makes the northbound rows marked with plan.vpc match the plan, in one transaction: reads them (one
// select per table), inserts the missing rows, updates the columns (and references to corral's rows) that
// differ, deletes the marked rows the plan does not name. References to rows that are not corral's (a
// foreign port on corral's switch) are kept; rows without corral's external_ids are never changed. One
// line per change ("created Logical_Switch corral.subnet.web (subnet/web)", "updated ACL
// (security-group/web/rule/1): action", "deleted ..."); empty when nothing was to do. The database
// refusing the transaction changes nothing (OVSDB applies it whole or not at all).
Result<ChangeLog> convergeOvnVpc(ovsdb::OvsdbClient& client, const OvnVpcPlan& plan);

// Deletes every row marked with `vpc`: convergeOvnVpc towards an empty plan.
Result<ChangeLog> destroyOvnVpc(ovsdb::OvsdbClient& client, std::string_view vpc);

}  // namespace corral::net
