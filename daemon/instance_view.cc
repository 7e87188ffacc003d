// Masking and the dashboard's narrow views (daemon/instance_view.h).
#include "daemon/instance_view.h"

#include <string>

namespace corral::daemon {
namespace {

using json = nlohmann::json;

const json& member(const json& object, const char* key) {
  static const json kNull;
  if (!object.is_object()) return kNull;
  auto it = object.find(key);
  return it == object.end() ? kNull : *it;
}

// `keys` of `object` that it has; null when it is not an object.
json pick(const json& object, std::initializer_list<const char*> keys) {
  if (!object.is_object()) return nullptr;
  json picked = json::object();
  for (const char* key : keys) {
    if (object.contains(key)) picked[key] = object[key];
  }
  return picked;
}

// The rows of the page's isolation table (daemon/dashboard/index.html isolationRows), of one side.
json isolationRows(const json& side) {
  if (!side.is_object()) return nullptr;
  json rows = json::object();
  for (const char* key :
       {"kernel_release", "kernel_equals_host", "pid1", "visible_processes", "namespaces_shared_with_host",
        "capabilities", "seccomp", "no_new_privs", "cpus", "memory_total_kib", "dev_kvm", "interfaces"}) {
    if (side.contains(key)) rows[key] = side[key];
  }
  return rows;
}

}  // namespace

json withEnvMasked(json instance) {
  if (!instance.is_object() || !instance.contains("spec") || !instance["spec"].is_object() ||
      !instance["spec"].contains("env") || !instance["spec"]["env"].is_array()) {
    return instance;
  }
  json& env = instance["spec"]["env"];
  for (size_t i = 0; i < env.size(); ++i) {
    std::string text = env[i].is_string() ? env[i].get<std::string>() : std::string();
    size_t eq = text.find('=');
    env[i] = eq == std::string::npos ? std::string(kMaskedEnvValue) : text.substr(0, eq + 1) + kMaskedEnvValue;
  }
  return instance;
}

json dashboardInstance(const json& instance) {
  return {{"name", member(instance, "name")},
          {"kind", member(instance, "kind")},
          {"state", member(instance, "state")},
          {"ip", member(instance, "ip")},
          {"subnet", member(member(instance, "spec"), "subnet")},
          {"started_at", member(instance, "started_at")},
          {"boot", pick(member(instance, "boot"), {"total_ms", "guest_kernel"})},
          {"usage", pick(member(instance, "usage"), {"memory_bytes", "source"})}};
}

json dashboardComparison(const json& comparison) {
  if (!comparison.is_object()) return nullptr;
  json view = pick(comparison, {"id", "created_at", "runs", "parallel", "accelerator", "svg"});
  const json& isolation = member(comparison, "isolation");
  if (isolation.is_object()) {
    view["isolation"] = json::object();
    for (const char* side : {"container", "vm", "host"}) {
      if (isolation.contains(side)) view["isolation"][side] = isolationRows(isolation[side]);
    }
  } else {
    view["isolation"] = nullptr;
  }
  const json& network = member(comparison, "network");
  view["network"] = nullptr;
  if (network.is_object() && member(network, "ping").is_array()) {
    json pings = json::array();
    const json& all = network["ping"];
    for (size_t i = 0; i < all.size(); ++i) {
      const json& ping = all[i];
      json avg = member(member(ping, "rtt_ms"), "avg");
      pings.push_back({{"from", member(ping, "from")},
                       {"to", member(ping, "to")},
                       {"rtt_ms", member(ping, "rtt_ms").is_object() ? json{{"avg", avg}} : json(nullptr)}});
    }
    view["network"] = {{"subnet", member(network, "subnet")}, {"ping", std::move(pings)}};
  }
  return view;
}

}  // namespace corral::daemon
