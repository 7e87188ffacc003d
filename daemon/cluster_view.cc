// Each host's tunnels with the host at the other end and their state (daemon/cluster_view.h).
#include "daemon/cluster_view.h"

#include <fmt/format.h>

#include <set>

namespace corral::daemon {
namespace {

using json = nlohmann::json;

std::string text(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

json orNull(const std::string& value) {
  return value.empty() ? json(nullptr) : json(value);
}

}  // namespace

void addTunnels(json& hosts, const std::map<std::string, net::OvsChassis>& fabric) {
  std::map<std::string, std::string> health;  // host -> "alive", "lost", "joining"
  for (const json& host : hosts) health[text(host, "name")] = text(host, "health");
  // Whose chassis (or encap IP) is whose.
  auto hostOf = [&](const net::OvsTunnel& tunnel) -> std::string {
    for (const auto& [name, chassis] : fabric) {
      if (!tunnel.remoteChassis.empty() && chassis.chassis == tunnel.remoteChassis) return name;
    }
    for (const auto& [name, chassis] : fabric) {
      if (!tunnel.remoteIp.empty() && chassis.encapIp == tunnel.remoteIp) return name;
    }
    return "";
  };
  for (json& host : hosts) {
    const std::string name = text(host, "name");
    auto own = fabric.find(name);
    if (own == fabric.end() || own->second.chassis.empty()) {
      host["chassis"] = nullptr;
      host["encap_ip"] = nullptr;
      host["tunnels"] = json::array();
      continue;
    }
    const net::OvsChassis& chassis = own->second;
    host["chassis"] = chassis.chassis;
    host["encap_ip"] = orNull(chassis.encapIp);
    const bool alive = health[name] == "alive";
    json tunnels = json::array();
    std::set<std::string> reached;
    for (const net::OvsTunnel& tunnel : chassis.tunnels) {
      const std::string remote = hostOf(tunnel);
      if (!remote.empty()) reached.insert(remote);
      std::string state = "up";
      std::string reason;
      if (!alive) {
        state = "unknown";
        reason = fmt::format("host {} is {}: as its corrald last read them", name, health[name]);
      } else if (tunnel.linkState == "down") {
        state = "down";
        reason = "link_state down";
      } else if (!tunnel.bfdState.empty() && tunnel.bfdState != "up") {
        state = "down";
        reason = "bfd " + tunnel.bfdState;
      } else if (!remote.empty() && health[remote] != "alive") {
        state = "down";
        reason = fmt::format("host {} is {}", remote, health[remote]);
      } else if (remote.empty()) {
        reason = fmt::format("chassis {} is no host of this cluster",
                             tunnel.remoteChassis.empty() ? tunnel.remoteIp : tunnel.remoteChassis);
      }
      tunnels.push_back({{"port", tunnel.port},
                         {"type", tunnel.type},
                         {"remote_host", orNull(remote)},
                         {"remote_chassis", orNull(tunnel.remoteChassis)},
                         {"local_ip", orNull(tunnel.localIp.empty() ? chassis.encapIp : tunnel.localIp)},
                         {"remote_ip", orNull(tunnel.remoteIp)},
                         {"link_state", orNull(tunnel.linkState)},
                         {"bfd_state", orNull(tunnel.bfdState)},
                         {"state", state},
                         {"reason", orNull(reason)}});
    }
    if (alive) {
      // An alive host with a chassis and no tunnel to it: ovn-controller has not made it (yet).
      for (const auto& [other, theirs] : fabric) {
        if (other == name || reached.contains(other) || theirs.chassis.empty() || health[other] != "alive")
          continue;
        tunnels.push_back({{"port", nullptr},
                           {"type", orNull(theirs.encapType)},
                           {"remote_host", other},
                           {"remote_chassis", theirs.chassis},
                           {"local_ip", orNull(chassis.encapIp)},
                           {"remote_ip", orNull(theirs.encapIp)},
                           {"link_state", nullptr},
                           {"bfd_state", nullptr},
                           {"state", "missing"},
                           {"reason", fmt::format("no tunnel interface to chassis {} on {}'s br-int",
                                                  theirs.chassis, name)}});
      }
    }
    host["tunnels"] = std::move(tunnels);
  }
}

}  // namespace corral::daemon
