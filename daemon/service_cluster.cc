// Instance work across a cluster's hosts (issue 20, docs/cluster.md "Instances across hosts"): where a new
// instance runs, and any request for an instance of another host forwarded to that host's peer API with the
// cluster's token. The VPC model is shared through the model log (Service::catchUpLocked), the instances'
// names and addresses through the cluster store (daemon/cluster_instances.h).
#include <fmt/format.h>

#include <algorithm>
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
    for (json& result : answer.body["results"]) {
      // The name first: an assignment's right side is evaluated (moved from) before its left.
      const std::string name = result.value("name", "");
      local[name] = std::move(result);
    }
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

// ---- Groups across hosts ----

namespace corral::daemon {

namespace {
constexpr std::string_view kGroupsPrefix = "/corral/groups/";

std::string groupKey(std::string_view name) {
  return fmt::format("{}{}", kGroupsPrefix, name);
}

std::string groupHolder(const json& record) {
  return record.is_object() ? record.value("host", "") : std::string();
}
std::string groupHolder(const std::string& value) {
  return groupHolder(json::parse(value, nullptr, false));
}

// A group's row as its claim carries it (the spec and policy as the stored JSON text).
json groupRowJson(const GroupRow& row) {
  return {{"name", row.name},
          {"spec", row.specJson},
          {"desired", row.desired},
          {"policy", row.policyJson ? json(*row.policyJson) : json(nullptr)},
          {"next_member", row.nextMember},
          {"created_at", row.createdAt}};
}

std::optional<GroupRow> groupRowFromJson(const json& row) {
  if (!row.is_object() || !row["name"].is_string() || !row["spec"].is_string() ||
      !row["desired"].is_number_integer() || !row["next_member"].is_number_integer() ||
      !row["created_at"].is_number_integer() || !(row["policy"].is_null() || row["policy"].is_string()))
    return std::nullopt;
  return GroupRow{.name = row["name"].get<std::string>(),
                  .specJson = row["spec"].get<std::string>(),
                  .desired = row["desired"].get<int64_t>(),
                  .policyJson = row["policy"].is_string() ? std::optional(row["policy"].get<std::string>())
                                                          : std::nullopt,
                  .nextMember = row["next_member"].get<int64_t>(),
                  .createdAt = row["created_at"].get<int64_t>()};
}

// A group's claim: the host keeping it and the group's row (what another host takes it over with).
std::string groupClaim(const std::string& host, const GroupRow& row) {
  return json{{"host", host}, {"group", groupRowJson(row)}}.dump();
}

std::optional<InstanceState> parseState(const json& text) {
  if (!text.is_string()) return std::nullopt;
  for (InstanceState state : kAllInstanceStates)
    if (instanceStateName(state) == text.get<std::string>()) return state;
  return std::nullopt;
}
}  // namespace

bool Service::clustered() {
  std::shared_lock fleet(fleetMutex_);
  return clusterInstances_ != nullptr;
}

Result<std::optional<std::string>> Service::groupOwner(const std::string& name) {
  auto client = cluster_->store();
  if (!client) return fail(client.error());
  auto read = (*client)->get(groupKey(name));
  if (!read) return fail(read.error());
  if (read->kvs.empty()) return std::optional<std::string>();
  return std::optional<std::string>(groupHolder(read->kvs[0].value));
}

Result<std::map<std::string, std::string>> Service::clusterGroups() {
  auto client = cluster_->store();
  if (!client) return fail(client.error());
  auto read = (*client)->get(kGroupsPrefix, true);
  if (!read) return fail(read.error());
  std::map<std::string, std::string> groups;
  for (const auto& kv : read->kvs) groups[kv.key.substr(kGroupsPrefix.size())] = groupHolder(kv.value);
  return groups;
}

bool Service::placedMemberHere(const schema::InstanceSpec& spec) {
  if (!clustered() || spec.host != cluster_->hostName()) return false;
  auto owner = groupOwner(spec.group);
  return owner && *owner && **owner != cluster_->hostName();
}

template <class Typed>
std::optional<Response> Service::forwardGroup(const Typed& request) {
  if (!clustered()) return std::nullopt;
  if (groups_->has(request.name)) {
    if constexpr (std::is_same_v<Typed, api::GetGroup>) {
      Response local = serveGroup(request);
      if (local.status == 200) local.body["host"] = cluster_->hostName();
      return local;
    }
    return std::nullopt;
  }
  auto owner = groupOwner(request.name);
  if (!owner) return errorResponse(owner.error().wrap(fmt::format("group \"{}\"", request.name)));
  if (!*owner || **owner == cluster_->hostName()) return std::nullopt;
  auto host = clusterHost(**owner);
  if (!host) return errorResponse(host.error());
  Response answer = forwardTo(*host, request);
  if constexpr (std::is_same_v<Typed, api::GetGroup>) {
    if (answer.status == 200) answer.body["host"] = **owner;
  }
  return answer;
}
template std::optional<Response> Service::forwardGroup(const api::GetGroup&);
template std::optional<Response> Service::forwardGroup(const api::ScaleGroup&);
template std::optional<Response> Service::forwardGroup(const api::GetGroupEvents&);
template std::optional<Response> Service::forwardGroup(const api::SetGroupPolicy&);

std::optional<Response> Service::forwardGroup(const api::CreateGroup& request) {
  if (!clustered()) return std::nullopt;
  const std::string& name = request.spec.name;
  auto client = cluster_->store();
  if (!client) return errorResponse(client.error().wrap(fmt::format("create group \"{}\"", name)));
  const std::string key = groupKey(name);
  auto claimed = (*client)->txn({net::etcd::Compare::absent(key)},
                                {net::etcd::TxnOp::put(key, json{{"host", cluster_->hostName()}}.dump())},
                                {net::etcd::TxnOp::get(key)});
  if (!claimed) return errorResponse(claimed.error().wrap(fmt::format("create group \"{}\"", name)));
  if (!claimed->succeeded) {
    std::string holder = "?";
    if (!claimed->reads.empty() && !claimed->reads[0].kvs.empty())
      holder = groupHolder(claimed->reads[0].kvs[0].value);
    return errorResponse(Error(
        ErrorKind::Conflict, fmt::format("group \"{}\" already exists (on host {})", name, holder), "name"));
  }
  Response created = serveGroup(request);
  if (created.status != 201) {
    if (auto gone = (*client)->remove(key); !gone)
      log::warn("group \"{}\": giving its name back: {}", name, gone.error().message());
  }
  return created;
}

std::optional<Response> Service::forwardGroup(const api::RemoveGroup& request) {
  if (!clustered()) return std::nullopt;
  if (groups_->has(request.name)) {
    Response removed = serveGroup(request);
    if (removed.status == 200) {
      auto client = cluster_->store();
      auto gone = client ? (*client)->remove(groupKey(request.name)) : fail(client.error());
      if (!gone) log::warn("group \"{}\": giving its name back: {}", request.name, gone.error().message());
    }
    return removed;
  }
  auto owner = groupOwner(request.name);
  if (!owner) return errorResponse(owner.error().wrap(fmt::format("group \"{}\"", request.name)));
  if (!*owner || **owner == cluster_->hostName()) return std::nullopt;
  auto host = clusterHost(**owner);
  if (!host) return errorResponse(host.error());
  return forwardTo(*host, request);
}

std::optional<Response> Service::forwardGroup(const api::ListGroups& request) {
  if (!clustered()) return std::nullopt;
  Response local = serveGroup(request);
  const std::string self = cluster_->hostName();
  for (json& group : local.body["groups"]) group["host"] = self;
  auto groups = clusterGroups();
  auto hosts = groups ? cluster_->hosts() : fail(groups.error());
  if (!hosts) {
    local.body["hosts_error"] = hosts.error().message();
    return local;
  }
  for (const auto& [name, owner] : *groups) {
    if (owner == self) continue;
    const json* host = nullptr;
    for (const json& entry : (*hosts)["hosts"])
      if (entry.value("name", "") == owner) host = &entry;
    Response answer = host != nullptr
                          ? forwardTo(*host, api::GetGroup{name})
                          : errorResponse(unavailable("host \"{}\" is not in the cluster", owner));
    if (answer.status == 404) continue;  // removed meanwhile
    if (answer.status == 200) {
      answer.body["host"] = owner;
      local.body["groups"].push_back(std::move(answer.body));
      continue;
    }
    // Its host is lost (or silent): the group is named, its members cannot be counted from here.
    local.body["groups"].push_back({{"name", name},
                                    {"host", owner},
                                    {"lost_reason", answer.body["error"].value("message", "no answer")}});
  }
  return local;
}

std::vector<InstanceManager::GroupMember> Service::members(const std::set<std::string>& groups) {
  std::vector<InstanceManager::GroupMember> all = instances_->groupMembers();
  std::map<std::string, ClusterInstances::Remote> remote;
  {
    std::shared_lock fleet(fleetMutex_);
    if (!clusterInstances_ || groups.empty()) return all;
    remote = clusterInstances_->remote();
  }
  std::map<std::string, std::vector<std::pair<std::string, schema::InstanceSpec>>> byHost;
  for (auto& [name, entry] : remote)
    if (groups.contains(entry.spec.group)) byHost[entry.host].emplace_back(name, std::move(entry.spec));
  if (byHost.empty()) return all;
  auto hosts = cluster_->hosts();
  for (const auto& [hostName, members] : byHost) {
    // The host's own list: each member's state now. A host that is lost or does not answer: lost.
    std::map<std::string, json> states;
    bool answered = false;
    if (hosts) {
      for (const json& host : (*hosts)["hosts"]) {
        if (host.value("name", "") != hostName || host.value("health", "") != "alive") continue;
        Response answer = forwardTo(host, api::ListInstances{.hostOnly = true});
        if (answer.status != 200) {
          log::warn("groups: host {}'s members: {}", hostName, answer.body.dump());
          break;
        }
        answered = true;
        for (const json& instance : answer.body["instances"]) states[instance.value("name", "")] = instance;
      }
    }
    for (const auto& [name, spec] : members) {
      InstanceManager::GroupMember member{.name = name,
                                          .group = spec.group,
                                          .subnet = spec.subnet,
                                          .state = InstanceState::running,
                                          .exitReason = std::nullopt,
                                          .exitCode = std::nullopt,
                                          .exitSignal = std::nullopt,
                                          .host = hostName,
                                          .lost = false};
      if (!answered) {
        member.lost = true;
      } else {
        auto it = states.find(name);
        if (it == states.end()) continue;  // removed there a moment ago
        const json& seen = it->second;
        member.state = parseState(seen["state"]).value_or(InstanceState::stopped);
        if (seen["exit_code"].is_number_integer()) member.exitCode = seen["exit_code"].get<int64_t>();
        if (seen["exit_signal"].is_number_integer()) member.exitSignal = seen["exit_signal"].get<int64_t>();
        if (seen["exit_reason"].is_string()) {
          if (auto reason = parseExitReason(seen["exit_reason"].get<std::string>()))
            member.exitReason = *reason;
        }
      }
      all.push_back(std::move(member));
    }
  }
  return all;
}

bool Service::canLaunchIn(const std::string& subnet) {
  if (!clustered()) return true;
  std::optional<std::string> az;
  {
    std::lock_guard lock(mutex_);
    if (auto caught = catchUpLocked(); !caught) return true;  // the launch says why
    if (const net::Subnet* found = topology_.findSubnet(subnet)) az = found->availabilityZone;
  }
  if (!az) return true;
  auto hosts = cluster_->hosts();
  if (!hosts) return true;
  for (const json& host : (*hosts)["hosts"])
    if (host.value("health", "") == "alive" && host.value("az", "") == *az) return true;
  return false;
}

Result<json> Service::run(const schema::InstanceSpec& spec) {
  if (!clustered()) return instances_->run(spec);
  auto host = placeInstance(spec);
  if (!host) return fail(host.error());
  if ((*host).value("local", false)) return instances_->run(spec);
  api::RunInstance placed{spec};
  placed.spec.host = (*host).value("name", "");
  Response answer = forwardTo(*host, placed);
  if (answer.status != 201) return fail(api::errorFromJson(answer.body, answer.status));
  return std::move(answer.body);
}

Result<std::vector<Result<json>>> Service::remove(const std::vector<std::string>& names) {
  std::optional<Response> forwarded;
  if (clustered()) forwarded = forwardInstance(api::RemoveInstances{names, true});
  if (!forwarded) return instances_->removeMany(names, true);
  if (forwarded->status != 200) return fail(api::errorFromJson(forwarded->body, forwarded->status));
  std::vector<Result<json>> results;
  for (const json& result : forwarded->body["results"]) {
    if (result.contains("deleted"))
      results.emplace_back(result["deleted"]);
    else
      results.emplace_back(fail(api::errorFromJson(json{{"error", result["error"]}}, 500)));
  }
  return results;
}

std::optional<InstanceState> Service::stateOf(const std::string& name) {
  return instances_->stateOf(name);
}

std::vector<std::string> Service::othersGroups() {
  std::vector<std::string> names;
  if (!clustered()) return names;
  auto groups = clusterGroups();
  if (!groups) {
    // Unknown: no member of a group this host lacks is taken for an orphan.
    log::warn("groups: reading the cluster's groups: {}", groups.error().message());
    return {"*"};
  }
  for (const auto& [name, owner] : *groups)
    if (owner != cluster_->hostName()) names.push_back(name);
  return names;
}

GroupFleet::Hold Service::hold(const GroupRow& row) {
  if (!clustered()) return Hold::kept;
  auto client = cluster_->store();
  if (!client) return Hold::unknown;
  const std::string key = groupKey(row.name);
  auto read = (*client)->get(key);
  if (!read) {
    log::warn("group \"{}\": reading its claim: {}", row.name, read.error().message());
    return Hold::unknown;
  }
  const std::string self = cluster_->hostName();
  const std::string claim = groupClaim(self, row);
  // No claim (a group made before this host was in a cluster): claimed now, as `group create` would.
  net::etcd::Compare unchanged = net::etcd::Compare::absent(key);
  if (!read->kvs.empty()) {
    const net::etcd::KeyValue& held = read->kvs[0];
    if (groupHolder(held.value) != self) return Hold::elsewhere;
    if (held.value == claim) return Hold::kept;
    unchanged = net::etcd::Compare::modRevision(key, held.modRevision);
  }
  auto written = (*client)->txn({unchanged}, {net::etcd::TxnOp::put(key, claim)}, {});
  if (!written) {
    log::warn("group \"{}\": publishing its row: {}", row.name, written.error().message());
    return Hold::unknown;
  }
  return written->succeeded ? Hold::kept : Hold::unknown;  // changed meanwhile: read again next pass
}

std::vector<GroupFleet::TakenOver> Service::takeOver() {
  if (!clustered()) return {};
  auto hosts = cluster_->hosts();
  if (!hosts) return {};
  const std::string self = cluster_->hostName();
  std::set<std::string> lost;
  std::vector<std::string> alive;
  for (const json& host : (*hosts)["hosts"]) {
    const std::string health = host.value("health", "");
    if (health == "alive") alive.push_back(host.value("name", ""));
    if (health == "lost") lost.insert(host.value("name", ""));
  }
  std::sort(alive.begin(), alive.end());
  // One taker whichever host asks: the first live host by name.
  if (lost.empty() || alive.empty() || alive.front() != self) return {};
  auto client = cluster_->store();
  if (!client) return {};
  auto read = (*client)->get(kGroupsPrefix, true);
  if (!read) {
    log::warn("groups: reading the cluster's groups to take over a lost host's: {}", read.error().message());
    return {};
  }
  std::vector<TakenOver> taken;
  for (const net::etcd::KeyValue& kv : read->kvs) {
    const json claim = json::parse(kv.value, nullptr, false);
    const std::string from = groupHolder(claim);
    if (!lost.contains(from)) continue;
    std::optional<GroupRow> row =
        claim.is_object() ? groupRowFromJson(claim.value("group", json())) : std::nullopt;
    if (!row) {
      log::warn("group \"{}\": its host {} is lost, but it never published the group's row: not taken over",
                kv.key.substr(kGroupsPrefix.size()), from);
      continue;
    }
    // The claim unchanged since it was read: a host that sees the cluster otherwise cannot take it too.
    auto written = (*client)->txn({net::etcd::Compare::modRevision(kv.key, kv.modRevision)},
                                  {net::etcd::TxnOp::put(kv.key, groupClaim(self, *row))}, {});
    if (!written) {
      log::warn("group \"{}\": taking it over from host {}: {}", row->name, from, written.error().message());
      continue;
    }
    if (!written->succeeded) continue;
    log::info("group \"{}\": its host {} is lost; taken over by this host", row->name, from);
    taken.push_back({std::move(*row), from});
  }
  return taken;
}

}  // namespace corral::daemon
