// An instance's NIC on OVN (issue 20, docs/cluster.md): an internal port of the host's integration bridge
// (br-int) whose Interface carries external_ids:iface-id, the name of the instance's Logical_Switch_Port.
// ovn-controller on that host sees the iface-id, binds the logical port to its chassis and installs the
// port's flows; the logical switch then reaches the NIC from any host over Geneve. This is what
// `ovs-vsctl add-port br-int NAME -- set Interface NAME type=internal external_ids:iface-id=LSP` does,
// sent through corral's own OVSDB client (net/ovsdb.h) to the host's Open_vSwitch database.
//
// ovs-vswitchd makes the Linux side of an internal port (on the userspace datapath, a tap) in its own
// namespace; plugOvsPort moves it into the instance's, names it and gives it the NIC's MAC, MTU and
// address. The instance sends from the logical port's MAC, which OVN's port security checks.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "net/ovsdb.h"

namespace corral::net {

inline constexpr std::string_view kOpenVswitchDatabase = "Open_vSwitch";
inline constexpr std::string_view kIntegrationBridge = "br-int";

struct OvsPort {
  std::string bridge{kIntegrationBridge};
  std::string name;  // the Port's, the Interface's and, until moved, the Linux link's: 1-15 characters
  // "internal": ovs-vswitchd makes the Linux link (a container's NIC). "": a "system" port, a Linux link
  // that is already there in ovs-vswitchd's namespace (a VM's tap, which QEMU holds), which the userspace
  // datapath reads and writes through an AF_PACKET socket.
  std::string type = "internal";
  std::string ifaceId;                             // the Logical_Switch_Port it is: external_ids:iface-id
  std::map<std::string, std::string> externalIds;  // more of the Interface's, e.g. corral-instance
  bool operator==(const OvsPort&) const = default;
};

// A port of a bridge as the database shows it.
struct OvsPortState {
  std::string name;
  std::string ifaceId;            // empty: none
  std::optional<int64_t> ofport;  // set by ovs-vswitchd once it made the port; -1: it failed
  std::string error;              // ovs-vswitchd's reason when it could not make the port
  std::map<std::string, std::string> externalIds;
  bool operator==(const OvsPortState&) const = default;
};

// Pure: the checks of `port` (an InvalidArgument naming the field: "name" of 1-15 characters without '/'
// or whitespace, as Linux takes for a link; a non-empty "iface_id"; "bridge" non-empty) and the
// operations of one transaction that add it: the Interface (type internal, iface-id), its Port and the
// bridge's ports mutated to hold it, after two `wait`s that fail it whole when the bridge is missing or a
// port of that name is there.
Result<std::vector<ovsdb::Json>> addOvsPortOperations(const OvsPort& port);

// Adds `port` and waits (up to `timeout`) until ovs-vswitchd has made it (an ofport): an error names the
// port and ovs-vswitchd's reason (the Interface's error column), or the wait. A port of that name already
// on the bridge is an AlreadyExists error and nothing changes.
Status addOvsPort(ovsdb::OvsdbClient& db, const OvsPort& port,
                  std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Removes the port named `name` from `bridge` (its Interface goes with it: OVSDB drops rows nothing
// refers to). A missing port is not an error.
Status removeOvsPort(ovsdb::OvsdbClient& db, std::string_view bridge, std::string_view name);

// The ports of `bridge` with their interfaces (the bridge's own internal port included), sorted by name.
Result<std::vector<OvsPortState>> listOvsPorts(ovsdb::OvsdbClient& db, std::string_view bridge);

// Where an instance's end of the port goes and how it is set up.
struct OvsPlug {
  std::string hostNetns;   // where ovs-vswitchd runs (and makes the port): empty = the caller's namespace
  int targetNetnsFd = -1;  // the instance's network namespace
  std::string label;       // names the instance in errors: "instance web-1"
  std::string ifname = "eth0";
  std::string mac;                     // "02:c0:..": the logical port's
  unsigned mtu = 1400;                 // room for Geneve's overhead under a 1500-byte underlay
  std::string addressWithPrefix;       // "10.0.1.5/24"
  std::optional<std::string> gateway;  // a default route via it
};

// A VM's tap made ready to be a system port of br-int: found in the namespace at `tapNetnsPath` (QEMU's,
// "/proc/PID/ns/net": where it, or libvirtd for it, opened the tap) and moved into `ovsNetns`
// (ovs-vswitchd's, a name under /run/netns; empty: the caller's), or found there already (an earlier
// attach), given `mtu` (0: left as it is) and brought up. QEMU keeps its descriptor through the move. A
// tap in neither namespace is a NotFound error naming both.
Status readyTapForOvs(const std::string& tap, const std::string& tapNetnsPath, const std::string& ovsNetns,
                      unsigned mtu);

// Waits (up to `timeout`) for the Linux link `port` in plug.hostNetns, moves it into the instance's
// namespace as plug.ifname with the MAC, MTU and address, up with lo, and the default route. ovs-vswitchd
// keeps the port through the move (it holds the tap's file descriptor). On failure the link is left where
// it is (removeOvsPort takes it away).
Status plugOvsPort(const std::string& port, const OvsPlug& plug,
                   std::chrono::milliseconds timeout = std::chrono::seconds(5));

}  // namespace corral::net
