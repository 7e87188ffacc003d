// Instance work across a cluster's hosts (issue 20, docs/cluster.md "Instances across hosts"): where a new
// instance runs, and any request for an instance of another host forwarded to that host's peer API with the
// cluster's token. The VPC model is shared through the model log (Service::catchUpLocked), the instances'
// names and addresses through the cluster store (daemon/cluster_instances.h).
#include <fmt/format.h>

#include <chrono>
#include <set>

#include "api/client.h"
#include "core/log.h"
#include "daemon/service.h"

namespace corral::daemon {

using json = nlohmann::json;

namespace {
constexpr std::chrono::seconds kQuickForward{5};
}  // namespace

Result<json> Service::clusterHost(const std::string& name) {
  auto hosts = cluster_->hosts();
  if (!hosts) return fail(hosts.error());
  for (const json& host : (*hosts)["hosts"]) {
    if (host.value("name", "") == name) return host;
  }
  return fail(invalidField("host", "no host \"{}\" in the cluster (corral cluster ls)", name));
}

Result<json> Service::placeInstance(const schema::InstanceSpec& spec) {
  std::optional<std::string> az;
  if (!spec.subnet.empty()) {
    std::lock_guard lock(mutex_);
    if (auto caught = catchUpLocked(); !caught) return fail(caught.error());
    if (const net::Subnet* subnet = topology_.findSubnet(spec.subnet)) az = subnet->availabilityZone;
  }
  auto hosts = cluster_->hosts();
  if (!hosts) return fail(hosts.error().wrap(fmt::format("place instance \"{}\"", spec.name)));
  if (!spec.host.empty()) {
    for (const json& host : (*hosts)["hosts"]) {
      if (host.value("name", "") != spec.host) continue;
      if (host.value("health", "") != "alive")
        return fail(Error(ErrorKind::Conflict,
                          fmt::format("host \"{}\" is {}: run the instance on another", spec.host,
                                      host.value("health", "")),
                          "host"));
      if (az && host.value("az", "") != *az)
        return fail(invalidField("host",
                                 "host \"{}\" is in {}, subnet \"{}\" in {}: an instance runs in its "
                                 "subnet's availability zone",
                                 spec.host, host.value("az", ""), spec.subnet, *az));
      return host;
    }
    return fail(invalidField("host", "no host \"{}\" in the cluster (corral cluster ls)", spec.host));
  }
  if (!az) {  // no subnet (or one that does not exist: this host refuses it)
    for (const json& host : (*hosts)["hosts"])
      if (host.value("local", false)) return host;
    return fail(internalError("this host is not in its own cluster's list"));
  }
  // This host when it is in the zone, else the zone's host with the fewest instances.
  auto load = [](const json& host) {
    return host["instances"].is_number() ? host["instances"].get<int64_t>() : 0;
  };
  const json* chosen = nullptr;
  for (const json& host : (*hosts)["hosts"]) {
    if (host.value("health", "") != "alive" || host.value("az", "") != *az) continue;
    if (host.value("local", false)) return host;
    if (chosen == nullptr || load(host) < load(*chosen)) chosen = &host;
  }
  if (chosen == nullptr)
    return fail(
        Error(ErrorKind::Conflict,
              fmt::format("subnet \"{}\" is in {}, where no host of the cluster is alive (corral cluster "
                          "set HOST --az {})",
                          spec.subnet, *az, *az),
              "subnet"));
  return *chosen;
}

Response Service::forwardTo(const json& host, const api::Request& request) {
  const std::string name = host.value("name", "");
  if (host.value("health", "") != "alive")
    return errorResponse(
        unavailable("host \"{}\" is {}: its instances cannot be reached", name, host.value("health", "")));
  const std::string url = host["api_url"].is_string() ? host["api_url"].get<std::string>() : "";
  const size_t colon = url.rfind(':');
  if (!url.starts_with("http://") || colon == std::string::npos || colon < 7)
    return errorResponse(
        unavailable("host \"{}\" has no peer API (its corrald runs without "
                    "--cluster-api-port)",
                    name));
  auto token = cluster_->peerToken();
  if (!token) return errorResponse(conflict("cluster: this host is in no cluster"));
  const std::string address = url.substr(7, colon - 7);
  const auto port = static_cast<uint16_t>(std::stoul(url.substr(colon + 1)));
  // A listing or an inspect is answered at once by a live host: a host that died a moment ago (its key not
  // expired yet) costs the caller a few seconds, not minutes. Others as long as the longest request they
  // may carry (wait --port: up to 600 s).
  const bool quick = std::holds_alternative<api::ListInstances>(request) ||
                     std::holds_alternative<api::GetInstance>(request) ||
                     std::holds_alternative<api::GetInstanceLogs>(request);
  api::Client client =
      api::Client::peer(address, port, *token, quick ? kQuickForward : std::chrono::seconds(660));
  auto answer = client.send(api::renderRequest(request));
  if (!answer) return errorResponse(answer.error().wrap(fmt::format("host \"{}\"", name)));
  json body = json::parse(answer->body, nullptr, false);
  if (body.is_discarded())
    return errorResponse(internalError("host \"{}\" answered what is not JSON: {:.200}", name, answer->body));
  return {answer->status, std::move(body)};
}

std::optional<Response> Service::forwardInstance(const api::RunInstance& request) {
  if (!clusterInstances_) {
    if (request.spec.host.empty()) return std::nullopt;
    return errorResponse(invalidField("host",
                                      "this corrald runs as a single host (corrald --cluster-address, "
                                      "then corral cluster init or join)"));
  }
  auto host = placeInstance(request.spec);
  if (!host) return errorResponse(host.error());
  if ((*host).value("local", false)) return std::nullopt;
  api::RunInstance placed = request;
  placed.spec.host = (*host).value("name", "");  // the host serves it itself
  return forwardTo(*host, placed);
}

std::optional<Response> Service::forwardInstance(const api::ListInstances& request) {
  if (!clusterInstances_ || request.hostOnly) return std::nullopt;
  Response local = serveInstance(request);
  if (local.status != 200) return local;
  const std::string self = cluster_->hostName();
  for (json& instance : local.body["instances"]) instance["host"] = self;
  auto hosts = cluster_->hosts();
  if (!hosts) {
    // Without the store the other hosts are unknown: this host's own, saying so.
    local.body["hosts_error"] = hosts.error().message();
    return local;
  }
  const auto remote = clusterInstances_->remote();
  api::ListInstances hostOnly = request;
  hostOnly.hostOnly = true;
  for (const json& host : (*hosts)["hosts"]) {
    const std::string name = host.value("name", "");
    if (host.value("local", false)) continue;
    if (host.value("health", "") == "alive") {
      Response answer = forwardTo(host, hostOnly);
      if (answer.status == 200) {
        for (json& instance : answer.body["instances"]) {
          instance["host"] = name;
          local.body["instances"].push_back(std::move(instance));
        }
        continue;
      }
      log::warn("listing host {}'s instances: {}", name, answer.body.dump());
    }
    // A lost host (or one that does not answer): its instances as the cluster store last recorded them.
    for (const auto& [instance, entry] : remote) {
      if (entry.host != name) continue;
      local.body["instances"].push_back(
          {{"name", instance},
           {"kind", schema::instanceKindName(entry.spec.kind)},
           {"state", "lost"},
           {"host", name},
           {"ip", entry.spec.ip.empty() ? json(nullptr) : json(entry.spec.ip)},
           {"image", entry.spec.image},
           {"lost_reason", fmt::format("host {} is {}", name, host.value("health", "unreachable"))}});
    }
  }
  return local;
}

std::optional<Response> Service::forwardInstance(const api::RemoveInstances& request) {
  if (!clusterInstances_) return std::nullopt;
  // Each name another host has is removed there; the rest here, in one request.
  std::vector<std::string> here;
  std::map<std::string, json> elsewhere;
  for (const std::string& name : request.names) {
    if (instances_->stateOf(name)) {
      here.push_back(name);
      continue;
    }
    auto owner = clusterInstances_->ownerOf(name);
    if (owner && *owner && **owner != cluster_->hostName()) {
      auto host = clusterHost(**owner);
      Response answer =
          host ? forwardTo(*host, api::RemoveInstance{name, request.force}) : errorResponse(host.error());
      json result = {{"name", name}};
      if (answer.status == 200)
        result["deleted"] = answer.body["deleted"];
      else
        result["error"] = answer.body["error"];
      elsewhere[name] = std::move(result);
    } else {
      here.push_back(name);
    }
  }
  if (elsewhere.empty()) return std::nullopt;
  json results = json::array();
  json local = json::object();
  if (!here.empty()) {
    Response answer = serveInstance(api::RemoveInstances{here, request.force});
    if (answer.status != 200) return answer;
    for (json& result : answer.body["results"]) local[result.value("name", "")] = std::move(result);
  }
  int64_t removed = 0;
  for (const std::string& name : request.names) {
    json result = elsewhere.contains(name) ? elsewhere[name] : local[name];
    if (result.contains("deleted")) ++removed;
    results.push_back(std::move(result));
  }
  return Response{200,
                  {{"results", std::move(results)},
                   {"removed", removed},
                   {"failed", static_cast<int64_t>(request.names.size()) - removed}}};
}

}  // namespace corral::daemon
