// This host's end of the overlay (issue 20, docs/cluster.md "Hosts, AZs and tunnels"): its chassis as the
// host's Open_vSwitch database names it and the Geneve tunnels ovn-controller keeps on br-int, one
// Interface of type "geneve" per other chassis. Read from the host's own database, not from the southbound
// Chassis/Encap tables: those say which tunnels ovn-controller should make, the Interface rows are the
// ones the datapath has (with ovs-vswitchd's link_state and BFD status), and corrald already holds this
// connection (--ovs-database), no southbound one.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/ovsdb.h"

namespace corral::net {

struct OvsTunnel {
  std::string port{};  // the Port's (and Interface's) name on br-int: ovn-CHASSI-0
  std::string type{};  // "geneve" (or "vxlan", "stt": any Interface with options:remote_ip on br-int)
  std::string
      remoteChassis{};      // from the Port's external_ids:ovn-chassis-id ("NAME" or "NAME@IP"); may be ""
  std::string remoteIp{};   // options:remote_ip
  std::string localIp{};    // options:local_ip, "" when ovs-vswitchd picks it
  std::string linkState{};  // the Interface's link_state: "up", "down" or "" (not reported)
  std::string bfdState{};   // bfd_status:state when BFD runs on it ("up", "down", ...), else ""
  bool operator==(const OvsTunnel&) const = default;
};

struct OvsChassis {
  std::string chassis{};             // Open_vSwitch external_ids:system-id (ovn-controller's chassis name)
  std::string encapType{};           // external_ids:ovn-encap-type
  std::string encapIp{};             // external_ids:ovn-encap-ip
  std::vector<OvsTunnel> tunnels{};  // sorted by port name
  bool operator==(const OvsChassis&) const = default;
};

// Pure: the operations of the one read (the Open_vSwitch row, br-int's ports, every Port, every tunnel-
// typed Interface) and the decoding of its results.
std::vector<ovsdb::Json> ovsChassisReadOperations();
Result<OvsChassis> decodeOvsChassis(const std::vector<ovsdb::Json>& results);
// Both through `db` (the host's Open_vSwitch database). No br-int yet: no tunnels, not an error.
Result<OvsChassis> readOvsChassis(ovsdb::OvsdbClient& db);

// The API's and the cluster store's form: {"chassis", "encap_type", "encap_ip", "tunnels": [{"port",
// "type", "remote_chassis", "remote_ip", "local_ip", "link_state", "bfd_state"}]} ("" kept as "").
nlohmann::json toJson(const OvsChassis& chassis);
// The reverse; a field of the wrong type is an InvalidArgument naming it ("tunnels[1].remote_ip").
Result<OvsChassis> ovsChassisFromJson(const nlohmann::json& value);

}  // namespace corral::net
