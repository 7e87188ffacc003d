// corrald's VPCs on OVN (issue 20, docs/cluster.md): with `corrald --ovn-northbound REMOTE --ovs-database
// REMOTE`, a VPC's objects are rows of OVN's northbound database (net/vpc_ovn.h) instead of a namespace
// with bridges and nftables, and an instance's NIC is a port of this host's br-int (net/ovs_port.h) that
// this host's ovn-controller binds. The NetworkController (daemon/network.h) plans and decides; this class
// holds the two database connections and does the I/O.
//
// A connection that fails is dropped and made again at the next call: ovsdb-server restarting costs the
// calls made while it is away, nothing more.
#pragma once

#include <sys/types.h>

#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/datapath.h"
#include "net/ovs_tunnels.h"
#include "net/ovsdb.h"
#include "net/vpc_datapath.h"
#include "net/vpc_ovn.h"

namespace corral::daemon {

struct OvnFabricOptions {
  std::string northbound;   // OVN's northbound database: "unix:/run/ovn/ovnnb_db.sock", "tcp:10.0.0.1:6641"
  std::string ovsDatabase;  // this host's Open_vSwitch database: "unix:/run/openvswitch/db.sock"
  // The namespace ovs-vswitchd runs in, where it makes br-int's internal ports (empty: corrald's own).
  std::string ovsNetns;
  // Marks this corrald's ports on br-int (external_ids:corral-prefix), so reconcile takes away only its own
  // (corrald's --netns-prefix).
  std::string prefix;
  // OVN's southbound database, for ovn-trace (reach --verify; net/ovn_trace.h); empty: no traces.
  std::string southbound;
};

// Each br-int port of this corrald: its name and the instance it is for.
struct OvnFabricPort {
  std::string name;
  std::string instance;
};

class OvnFabric {
 public:
  explicit OvnFabric(OvnFabricOptions options) : options_(std::move(options)) {}

  const OvnFabricOptions& options() const { return options_; }

  // convergeOvnVpc / destroyOvnVpc through the northbound connection.
  Result<net::ChangeLog> converge(const net::OvnVpcPlan& plan);
  Result<net::ChangeLog> destroy(const std::string& vpc);
  // The VPCs that have rows in the northbound database (their routers' external_ids:corral-vpc) in one
  // scope: a cluster's (marked corral-scope=cluster, net::kOvnScopeKey) or a single host's (unmarked).
  Result<std::vector<std::string>> vpcs(bool cluster);

  // The NIC's port on br-int, bound to its logical port (net::ovnNicPortName), plugged into the namespace of
  // `pid` as eth0. A stale port of that name (an earlier run of the instance) is replaced.
  Status attachContainer(const net::NicPlan& nic, pid_t pid);
  // A VM's NIC: the tap QEMU opened (nic.link, in the namespace of `qemuPid`, or corrald's) moved into
  // ovs-vswitchd's with the plan's MTU, up, and added to br-int as a system port bound to the logical port
  // (the guest sends from the logical port's MAC, which QEMU's virtio-net was given). Called while the
  // guest is paused. A stale port of that name is replaced; on failure no port is left.
  Status attachVm(const net::NicPlan& nic, std::optional<pid_t> qemuPid);
  // The same into the namespace at `netnsPath` as `ifname` (a load balancer's namespace, one NIC per
  // subnet): the default route only with `defaultRoute`; with `sourceTable`, traffic from the NIC's address
  // routed by a table of its own (net::addNicSourceTable), so replies leave by the NIC they came in on.
  Status attachNamespace(const net::NicPlan& nic, const std::string& netnsPath, const std::string& ifname,
                         bool defaultRoute, std::optional<uint32_t> sourceTable);
  // Its port off br-int (the logical port goes with the next convergence of its VPC). Missing: no error.
  Status detach(const net::NicPlan& nic);
  // This corrald's ports on br-int.
  Result<std::vector<OvnFabricPort>> ports();
  // This host's chassis and its tunnels on br-int (net/ovs_tunnels.h), read now.
  Result<net::OvsChassis> chassis();
  Status removePort(const std::string& name);
  // Runs `ovn-trace --db=SOUTHBOUND ARGS` (net/ovn_trace.h's legs) and returns what it printed; a failure
  // (no southbound database given, the tool missing or failing, more than 10 s) names the leg's datapath.
  Result<std::string> trace(const std::vector<std::string>& args);

 private:
  // The connection, made when there is none; `which` names it in errors.
  Result<net::ovsdb::OvsdbClient*> connectLocked(std::optional<net::ovsdb::OvsdbClient>& client,
                                                 const std::string& remote, std::string_view which);

  // The NIC's br-int port (a stale one of that name replaced), moved into `targetNetnsFd` as `ifname`.
  Status plugLocked(const net::NicPlan& nic, int targetNetnsFd, const std::string& label,
                    const std::string& ifname, std::optional<std::string> gateway);

  OvnFabricOptions options_;
  std::mutex mutex_;
  std::optional<net::ovsdb::OvsdbClient> northbound_;
  std::optional<net::ovsdb::OvsdbClient> ovs_;
};

}  // namespace corral::daemon
