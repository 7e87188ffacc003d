// This host's chassis and its overlay tunnels, read from its Open_vSwitch database (net/ovs_tunnels.h).
#include "net/ovs_tunnels.h"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>

#include "net/ovs_port.h"

namespace corral::net {
namespace {

using ovsdb::Json;

const std::set<std::string, std::less<>> kTunnelTypes = {"geneve", "vxlan", "stt"};

// An OVSDB map of strings (["map", [[k, v], ...]]) as a std::map; entries that are not strings skipped.
Result<std::map<std::string, std::string>> stringMap(const Json& value, std::string_view what) {
  std::map<std::string, std::string> out;
  if (value.is_null()) return out;
  auto pairs = ovsdb::decodeMap(value);
  if (!pairs) return fail(std::move(pairs).error().wrap(std::string(what)));
  for (const auto& [key, entry] : *pairs) {
    if (key.is_string() && entry.is_string()) out[key.get<std::string>()] = entry.get<std::string>();
  }
  return out;
}

// An optional string column: "x" or ["set", []] (none).
std::string optionalString(const Json& value) {
  if (value.is_string()) return value.get<std::string>();
  auto elements = ovsdb::decodeSet(value);
  if (elements && elements->size() == 1 && elements->front().is_string())
    return elements->front().get<std::string>();
  return "";
}

std::string valueOr(const std::map<std::string, std::string>& map, const std::string& key) {
  auto it = map.find(key);
  return it == map.end() ? std::string() : it->second;
}

Result<std::string> stringField(const nlohmann::json& object, const std::string& key,
                                const std::string& path) {
  if (!object.contains(key) || object[key].is_null()) return std::string();
  if (!object[key].is_string()) return fail(invalidField(path + key, "must be a string"));
  return object[key].get<std::string>();
}

}  // namespace

std::vector<Json> ovsChassisReadOperations() {
  return {ovsdb::selectOp("Open_vSwitch", {}, {"external_ids"}),
          ovsdb::selectOp("Bridge", {ovsdb::condition("name", "==", kIntegrationBridge)}, {"ports"}),
          ovsdb::selectOp("Port", {}, {"_uuid", "name", "external_ids"}),
          ovsdb::selectOp("Interface", {}, {"name", "type", "options", "link_state", "bfd_status"})};
}

Result<OvsChassis> decodeOvsChassis(const std::vector<Json>& results) {
  if (results.size() != 4)
    return fail(internalError("read the chassis: {} results for 4 operations", results.size()));
  auto rowsOf = [&](size_t i) { return results[i].value("rows", Json::array()); };
  OvsChassis chassis;
  const Json root = rowsOf(0);
  if (!root.empty()) {
    auto ids = stringMap(root.front()["external_ids"], "Open_vSwitch external_ids");
    if (!ids) return fail(std::move(ids).error());
    chassis.chassis = valueOr(*ids, "system-id");
    chassis.encapType = valueOr(*ids, "ovn-encap-type");
    chassis.encapIp = valueOr(*ids, "ovn-encap-ip");
  }
  const Json bridges = rowsOf(1);
  if (bridges.empty()) return chassis;  // no br-int yet: ovn-controller has not started
  auto portSet = ovsdb::decodeSet(bridges.front()["ports"]);
  if (!portSet) return fail(std::move(portSet).error().wrap("br-int ports"));
  std::set<std::string> onBridge;
  for (const Json& ref : *portSet) {
    if (auto uuid = ovsdb::decodeUuid(ref)) onBridge.insert(*uuid);
  }
  std::map<std::string, std::string> chassisOfPort;  // port name -> external_ids:ovn-chassis-id
  for (const Json& row : rowsOf(2)) {
    auto uuid = ovsdb::decodeUuid(row["_uuid"]);
    if (!uuid || !onBridge.contains(*uuid) || !row["name"].is_string()) continue;
    auto ids = stringMap(row["external_ids"], "Port external_ids");
    if (!ids) return fail(std::move(ids).error());
    chassisOfPort[row["name"].get<std::string>()] = valueOr(*ids, "ovn-chassis-id");
  }
  for (const Json& row : rowsOf(3)) {
    if (!row["name"].is_string() || !row["type"].is_string()) continue;
    const std::string name = row["name"].get<std::string>();
    const std::string type = row["type"].get<std::string>();
    auto port = chassisOfPort.find(name);
    if (!kTunnelTypes.contains(type) || port == chassisOfPort.end()) continue;
    auto options = stringMap(row["options"], fmt::format("Interface {} options", name));
    if (!options) return fail(std::move(options).error());
    auto bfd = stringMap(row["bfd_status"], fmt::format("Interface {} bfd_status", name));
    if (!bfd) return fail(std::move(bfd).error());
    OvsTunnel tunnel{.port = name,
                     .type = type,
                     // ovn-controller writes "CHASSIS@ENCAP_IP" (older releases "CHASSIS").
                     .remoteChassis = port->second.substr(0, port->second.find('@')),
                     .remoteIp = valueOr(*options, "remote_ip"),
                     .localIp = valueOr(*options, "local_ip"),
                     .linkState = optionalString(row["link_state"]),
                     .bfdState = valueOr(*bfd, "state")};
    chassis.tunnels.push_back(std::move(tunnel));
  }
  std::sort(chassis.tunnels.begin(), chassis.tunnels.end(),
            [](const OvsTunnel& a, const OvsTunnel& b) { return a.port < b.port; });
  return chassis;
}

Result<OvsChassis> readOvsChassis(ovsdb::OvsdbClient& db) {
  auto results = db.transact(kOpenVswitchDatabase, ovsChassisReadOperations());
  if (!results) return fail(std::move(results).error().wrap("read the chassis and its tunnels"));
  return decodeOvsChassis(*results);
}

nlohmann::json toJson(const OvsChassis& chassis) {
  nlohmann::json tunnels = nlohmann::json::array();
  for (const OvsTunnel& tunnel : chassis.tunnels) {
    tunnels.push_back({{"port", tunnel.port},
                       {"type", tunnel.type},
                       {"remote_chassis", tunnel.remoteChassis},
                       {"remote_ip", tunnel.remoteIp},
                       {"local_ip", tunnel.localIp},
                       {"link_state", tunnel.linkState},
                       {"bfd_state", tunnel.bfdState}});
  }
  return {{"chassis", chassis.chassis},
          {"encap_type", chassis.encapType},
          {"encap_ip", chassis.encapIp},
          {"tunnels", std::move(tunnels)}};
}

Result<OvsChassis> ovsChassisFromJson(const nlohmann::json& value) {
  if (!value.is_object()) return fail(invalidField("chassis", "must be an object"));
  OvsChassis chassis;
  for (auto [field, key] :
       {std::pair{&chassis.chassis, "chassis"}, std::pair{&chassis.encapType, "encap_type"},
        std::pair{&chassis.encapIp, "encap_ip"}}) {
    auto text = stringField(value, key, "");
    if (!text) return fail(std::move(text).error());
    *field = std::move(*text);
  }
  if (!value.contains("tunnels") || value["tunnels"].is_null()) return chassis;
  if (!value["tunnels"].is_array()) return fail(invalidField("tunnels", "must be an array"));
  size_t index = 0;
  for (const nlohmann::json& item : value["tunnels"]) {
    const std::string path = fmt::format("tunnels[{}].", index++);
    if (!item.is_object()) return fail(invalidField(path.substr(0, path.size() - 1), "must be an object"));
    OvsTunnel tunnel;
    for (auto [field, key] :
         {std::pair{&tunnel.port, "port"}, std::pair{&tunnel.type, "type"},
          std::pair{&tunnel.remoteChassis, "remote_chassis"}, std::pair{&tunnel.remoteIp, "remote_ip"},
          std::pair{&tunnel.localIp, "local_ip"}, std::pair{&tunnel.linkState, "link_state"},
          std::pair{&tunnel.bfdState, "bfd_state"}}) {
      auto text = stringField(item, key, path);
      if (!text) return fail(std::move(text).error());
      *field = std::move(*text);
    }
    chassis.tunnels.push_back(std::move(tunnel));
  }
  return chassis;
}

}  // namespace corral::net
