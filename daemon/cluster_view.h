// The picture of a cluster itself (issue 20, docs/cluster.md "Hosts, AZs and tunnels"): each host's chassis
// and the Geneve tunnels between the hosts (the overlay that carries a subnet across hosts), joined from
// what each host's corrald read of its own Open_vSwitch database (net/ovs_tunnels.h) with the hosts'
// health. Pure: the cluster store's reads are daemon/cluster.cc's.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "net/ovs_tunnels.h"

namespace corral::daemon {

// Adds to each host of `hosts` (the "hosts" array of GET /v1/cluster/hosts: "name", "health", ...) its
// "chassis", "encap_ip" and "tunnels" (docs/api.md "Cluster"): each tunnel of its br-int with the host at
// the other end ("remote_host", null when no host of the cluster has that chassis) and a "state":
//   "up"      the interface is there and reports no fault, and the host at the other end is alive;
//   "down"    its link_state or BFD says down, or the host at the other end is not alive ("reason" says
//   which); "missing" no tunnel interface to an alive host that has a chassis; "unknown" the host itself is
//   not alive: its tunnels as its corrald last published them.
// `fabric` holds each host's chassis by host name; a host without one (no OVN backend) gets null chassis
// and no tunnels.
void addTunnels(nlohmann::json& hosts, const std::map<std::string, net::OvsChassis>& fabric);

}  // namespace corral::daemon
