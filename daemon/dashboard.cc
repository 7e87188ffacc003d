// The service side of `corral compare`'s kept results (/v1/comparisons) and of the dashboard
// (/v1/dashboard and its event stream): everything the page draws, kept as one view so a picture is never
// half old, and built again only when something it shows changed.
#include <algorithm>
#include <chrono>
#include <ctime>
#include <map>
#include <set>
#include <string>

#include "api/compare_render.h"
#include "api/topology_render.h"
#include "core/log.h"
#include "daemon/host_info.h"
#include "daemon/instance_view.h"
#include "daemon/service.h"
#include "schema/instance.h"

namespace corral::daemon {
namespace {

using json = nlohmann::json;

constexpr size_t kKeptComparisons = 20;
constexpr int64_t kMaxRuns = 1000;
constexpr const char* kKinds[] = {"container", "vm"};

std::string typeName(const json& value) {
  return value.is_null() ? "null" : value.type_name();
}

// A boot or memory summary: null (no sample succeeded) or {"median", "min", "max", "count"} of numbers.
Status checkStatistics(const json& value, const std::string& field) {
  if (value.is_null()) return {};
  if (!value.is_object())
    return fail(invalidField(field, "must be an object or null, got {}", typeName(value)));
  for (const char* key : {"median", "min", "max"}) {
    if (!value.contains(key) || !value[key].is_number()) {
      return fail(invalidField(fmt::format("{}.{}", field, key), "must be a number"));
    }
  }
  return {};
}

// The shape the dashboard and `corral compare` rely on; anything else the CLI adds is kept as it came.
Status checkComparison(const json& result) {
  const json* runs = result.contains("runs") ? &result["runs"] : nullptr;
  if (!runs || !runs->is_number_integer() || runs->get<int64_t>() < 1 || runs->get<int64_t>() > kMaxRuns) {
    return fail(invalidField("runs", "must be a whole number from 1 to {}", kMaxRuns));
  }
  if (result.contains("accelerator") && !result["accelerator"].is_null() &&
      !result["accelerator"].is_string()) {
    return fail(
        invalidField("accelerator", "must be a string or null, got {}", typeName(result["accelerator"])));
  }
  if (!result.contains("summary") || !result["summary"].is_object()) {
    return fail(invalidField("summary", "must be an object with \"container\" and \"vm\""));
  }
  for (const char* kind : kKinds) {
    const std::string field = fmt::format("summary.{}", kind);
    if (!result["summary"].contains(kind) || !result["summary"][kind].is_object()) {
      return fail(invalidField(field, "must be an object"));
    }
    const json& side = result["summary"][kind];
    for (const char* key : {"boot_ms", "memory_bytes"}) {
      if (Status status = checkStatistics(side.value(key, json()), fmt::format("{}.{}", field, key)); !status)
        return status;
    }
  }
  if (!result.contains("samples") || !result["samples"].is_array()) {
    return fail(invalidField("samples", "must be an array"));
  }
  size_t index = 0;
  for (const json& sample : result["samples"]) {
    const std::string field = fmt::format("samples[{}]", index++);
    if (!sample.is_object()) return fail(invalidField(field, "must be an object, got {}", typeName(sample)));
    if (!sample.contains("kind") || !sample["kind"].is_string()) {
      return fail(invalidField(field + ".kind", "must be \"container\" or \"vm\""));
    }
    if (auto kind = schema::parseInstanceKind(sample["kind"].get<std::string>(), field + ".kind"); !kind)
      return fail(kind.error());
    if (!sample.contains("name") || !sample["name"].is_string()) {
      return fail(invalidField(field + ".name", "must be a string"));
    }
  }
  return {};
}

// What a list (and the dashboard) shows of a kept comparison: the compact form (api/compare_render.h),
// without the per-instance documents, which only GET /v1/comparisons/ID returns.
json comparisonSummary(const ComparisonRow& row, const json& result) {
  json summary = api::compactComparison(result);
  summary["id"] = row.id;
  summary["created_at"] = row.createdAt;
  return summary;
}

// A string member of an object; empty when missing or not a string.
std::string textMember(const json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// An SVG document made to sit inside the page: no XML declaration.
std::string inlineSvg(std::string svg) {
  if (svg.starts_with("<?xml")) svg.erase(0, svg.find('\n') + 1);
  return svg;
}

Result<json> parseRow(const ComparisonRow& row) {
  json result = json::parse(row.resultJson, nullptr, false);
  if (result.is_discarded() || !result.is_object()) {
    return fail(internalError("stored comparison {} is not a JSON object", row.id));
  }
  return result;
}

// A cluster host's picture of the cluster: each host (AZ, health, chassis, tunnels: daemon/cluster_view.h) as
// the heartbeat last read them, with the names of the instances it runs. nullopt on a single host (the page
// is then unchanged) and before the heartbeat's first read.
std::optional<json> dashboardCluster(const Cluster* cluster, const ClusterInstances* clusterInstances,
                                     const json& localInstances) {
  if (!cluster) return std::nullopt;
  std::optional<json> hosts = cluster->lastHosts();
  if (!hosts) return std::nullopt;
  std::map<std::string, json> instancesOn;
  const std::string self = cluster->hostName();
  for (const json& instance : localInstances) instancesOn[self].push_back(textMember(instance, "name"));
  if (clusterInstances) {
    for (const auto& [name, remote] : clusterInstances->remote()) instancesOn[remote.host].push_back(name);
  }
  json out = {{"local_host", self}, {"hosts", json::array()}};
  for (const json& host : hosts->value("hosts", json::array())) {
    const std::string name = textMember(host, "name");
    json drawn = {{"name", name}};
    for (const char* key : {"az", "health", "lost_since", "chassis", "encap_ip", "tunnels"})
      drawn[key] = host.value(key, json());
    drawn["instances"] = instancesOn.contains(name) ? instancesOn[name] : json::array();
    out["hosts"].push_back(std::move(drawn));
  }
  return out;
}

}  // namespace

Response Service::serve(const api::SaveComparison& request) {
  if (Status valid = checkComparison(request.result); !valid) return errorResponse(valid.error());
  const int64_t now = static_cast<int64_t>(std::time(nullptr));
  auto id = store_.insertComparison(now, request.result.dump(), kKeptComparisons);
  if (!id) return errorResponse(id.error());
  ++viewRevision_;
  log::info("comparison {} saved: {} runs of each kind", *id, request.result["runs"].get<int64_t>());
  return {201, {{"id", *id}, {"created_at", now}}};
}

Response Service::serve(const api::ListComparisons&) {
  auto rows = store_.listComparisons();
  if (!rows) return errorResponse(rows.error());
  json items = json::array();
  for (const ComparisonRow& row : *rows) {
    auto result = parseRow(row);
    if (!result) return errorResponse(result.error());
    items.push_back(comparisonSummary(row, *result));
  }
  return {200, {{"comparisons", std::move(items)}}};
}

Response Service::serve(const api::GetComparison& request) {
  std::optional<int64_t> id;
  if (request.id != "latest") id = std::stoll(request.id);  // the router let only digits through
  auto rows = store_.listComparisons(id, 1);
  if (!rows) return errorResponse(rows.error());
  if (rows->empty()) {
    return errorResponse(request.id == "latest"
                             ? notFound("no comparison saved yet: run `corral compare`")
                             : notFound("comparison {} not found (only the newest {} are kept)", request.id,
                                        kKeptComparisons));
  }
  const ComparisonRow& row = rows->front();
  auto result = parseRow(row);
  if (!result) return errorResponse(result.error());
  return {200, {{"id", row.id}, {"created_at", row.createdAt}, {"result", std::move(*result)}}};
}

Response Service::serve(const api::GetDashboard&) {
  return {200, *dashboardLocked().body};
}

DashboardView Service::dashboard() {
  std::lock_guard lock(mutex_);
  return dashboardLocked();
}

uint64_t Service::dashboardRevision() const {
  const uint64_t instances = instances_ ? instances_->revision() : 0;
  const uint64_t groups = groups_ ? groups_->revision() : 0;
  return (viewRevision_.load() * 1099511628211ull ^ instances) * 1099511628211ull ^ groups;
}

DashboardView Service::dashboardLocked() {
  const auto now = std::chrono::steady_clock::now();
  const uint64_t revision = dashboardRevision();
  const bool whole = !dashboard_ || dashboard_->revision != revision || !dashboard_->view.body ||
                     now - dashboard_->builtAt >= kDashboardKernelEvery;
  if (!whole && now - dashboard_->usageAt < kDashboardUsageEvery) return dashboard_->view;

  const json* before = dashboard_ && dashboard_->view.body ? dashboard_->view.body.get() : nullptr;
  json body = json::object();
  body["host"] = dashboardHostLocked();
  // The page's narrow view: the loopback port serves this to any local user (no env, command, pid, paths).
  // Kept per instance by the manager: only the instances that changed are rendered again.
  body["instances"] = instances_ ? instances_->dashboardInstances() : json::array();
  // Each group, its members' states and its newest events (no template: it may carry env values).
  body["groups"] = json::array();
  if (groups_) {
    for (json group : groups_->dashboardJson()) {
      group.erase("template");
      body["groups"].push_back(std::move(group));
    }
  }
  // A cluster host's hosts, AZs and tunnels (absent on a single host).
  if (auto cluster = dashboardCluster(cluster_.get(), clusterInstances_.get(), body["instances"]))
    body["cluster"] = std::move(*cluster);
  std::vector<std::shared_ptr<const json>> vpcs = whole ? dashboardVpcsLocked(now) : dashboard_->view.vpcs;
  if (whole) {
    auto comparison = dashboardComparisonLocked();
    if (!comparison) log::warn("dashboard: the latest comparison: {}", comparison.error().message());
    body["comparison"] = comparison ? std::move(*comparison) : json(nullptr);
  } else {
    body["comparison"] = before->contains("comparison") ? (*before)["comparison"] : json(nullptr);
  }
  // Whether anything differs from the kept view, without copying it: the VPC entries by identity (kept
  // ones are the same objects) or, when drawn again, by value; the small parts by value.
  auto unchanged = [&](const char* key) {
    auto it = before->find(key);
    return it != before->end() && *it == body[key];
  };
  const bool same = before && unchanged("host") && unchanged("instances") && unchanged("groups") &&
                    before->value("cluster", json()) == body.value("cluster", json()) &&
                    unchanged("comparison") && vpcs.size() == dashboard_->view.vpcs.size() && [&] {
                      for (size_t i = 0; i < vpcs.size(); ++i) {
                        const auto& old = dashboard_->view.vpcs[i];
                        if (vpcs[i] != old && *vpcs[i] != *old) return false;
                      }
                      return true;
                    }();
  if (!same) {
    json drawn = json::array();
    for (const auto& entry : vpcs) drawn.push_back(*entry);
    body["vpcs"] = std::move(drawn);
  }
  const auto wall = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::now().time_since_epoch());
  body["generated_at_ms"] = wall.count();
  KeptDashboard kept{
      .revision = revision, .builtAt = whole ? now : dashboard_->builtAt, .usageAt = now, .view = {}};
  // An unchanged view keeps its number, so a stream has nothing to send.
  kept.view.sequence = !dashboard_ ? 1 : same ? dashboard_->view.sequence : dashboard_->view.sequence + 1;
  kept.view.body = same ? dashboard_->view.body : std::make_shared<const json>(std::move(body));
  kept.view.vpcs = same ? dashboard_->view.vpcs : std::move(vpcs);
  dashboard_ = std::move(kept);
  return dashboard_->view;
}

json Service::dashboardHostLocked() {
  HostInfo host = describeHost();  // no KVM probe: the page does not show it
  return {{"hostname", host.hostname}, {"kernel", host.kernelRelease},
          {"machine", host.machine},   {"cgroup_mode", host.cgroupMode},
          {"version", CORRAL_VERSION}, {"accelerator", acceleratorJson()}};
}

std::vector<std::shared_ptr<const json>> Service::dashboardVpcsLocked(
    std::chrono::steady_clock::time_point now) {
  // A VPC's picture needs only its instances' states of the manager (the rest is the network's).
  json states = instances_ ? instances_->statesJson() : json{{"instances", json::array()}};
  addBalancerStatesLocked(states);
  std::map<std::string, std::string, std::less<>> stateOf;
  if (auto items = states.find("instances"); items != states.end() && items->is_array()) {
    for (const json& item : *items) stateOf[textMember(item, "name")] = textMember(item, "state");
  }
  const auto members =
      network_ ? network_->instancesByVpc() : std::map<std::string, std::vector<std::string>, std::less<>>{};
  std::vector<std::shared_ptr<const json>> vpcs;
  std::map<std::string, KeptVpc, std::less<>> kept;
  for (const net::Vpc* vpc : topology_.vpcs()) {
    VpcInputs inputs;
    if (auto it = vpcRevisions_.find(vpc->name); it != vpcRevisions_.end()) inputs.topology = it->second;
    if (network_) inputs.nics = network_->nicRevision(vpc->name);
    if (auto it = members.find(vpc->name); it != members.end()) {
      for (const std::string& name : it->second) {
        auto state = stateOf.find(name);
        inputs.memberStates.emplace_back(name, state == stateOf.end() ? std::string() : state->second);
      }
    }
    auto held = keptVpcs_.find(vpc->name);
    const bool fresh = held != keptVpcs_.end() && now - held->second.builtAt < kDashboardKernelEvery;
    if (fresh && held->second.inputs == inputs) {
      vpcs.push_back(held->second.entry);
      kept.emplace(vpc->name, std::move(held->second));
      continue;
    }
    // Only members came, went or changed state: their part of the picture alone, from their own ports
    // (a start or a removal in a VPC of 500 reads one port, not the VPC's links and counters). The
    // kernel check of the rest keeps its age.
    if (fresh && network_ && held->second.inputs.topology == inputs.topology) {
      auto patched = patchVpcEntry(*held->second.entry, held->second.inputs.memberStates, inputs.memberStates,
                                   [&](const std::string& name, const std::string& state) {
                                     return network_->memberTopologyJson(name, state);
                                   });
      if (patched) {
        auto shared = std::make_shared<const json>(std::move(*patched));
        vpcs.push_back(shared);
        kept.emplace(vpc->name, KeptVpc{.inputs = std::move(inputs),
                                        .builtAt = held->second.builtAt,
                                        .entry = std::move(shared)});
        continue;
      }
    }
    json entry;
    if (network_) {
      auto drawn = network_->topologyJson(vpc->name, states);
      if (drawn) {
        entry = std::move(*drawn);
        entry["svg"] = inlineSvg(api::renderTopologySvg(entry));
      } else {
        entry = {{"vpc", {{"name", vpc->name}, {"cidr", vpc->cidr.str()}}},
                 {"error", drawn.error().message()}};
      }
    } else {
      entry = {{"vpc", {{"name", vpc->name}, {"cidr", vpc->cidr.str()}}}};
    }
    auto shared = std::make_shared<const json>(std::move(entry));
    vpcs.push_back(shared);
    kept.emplace(vpc->name, KeptVpc{.inputs = std::move(inputs), .builtAt = now, .entry = std::move(shared)});
  }
  keptVpcs_ = std::move(kept);  // a deleted VPC's entry goes
  return vpcs;
}

std::optional<json> patchVpcEntry(
    const json& kept, const MemberStates& before, const MemberStates& after,
    const std::function<Result<json>(const std::string&, const std::string&)>& member) {
  std::map<std::string, std::string, std::less<>> was(before.begin(), before.end());
  std::map<std::string, std::string, std::less<>> now(after.begin(), after.end());
  std::set<std::string, std::less<>> out;  // taken out of the picture
  std::set<std::string, std::less<>> in;   // put (back) in
  for (const auto& [name, state] : was) {
    auto it = now.find(name);
    if (it == now.end()) out.insert(name);
    if (it != now.end() && it->second != state) {
      out.insert(name);
      in.insert(name);
    }
  }
  for (const auto& [name, state] : now) {
    if (!was.contains(name)) {
      out.insert(name);  // a NIC not in the model before may still have an entry of a drift
      in.insert(name);
    }
  }
  json entry = kept;
  entry.erase("svg");
  if (!entry.contains("subnets") || !entry["subnets"].is_array() || !entry.contains("kernel"))
    return std::nullopt;
  json& links = entry["kernel"]["links"];
  auto dropLink = [&](const std::string& link) {
    if (!links.is_array()) return;
    for (auto it = links.begin(); it != links.end(); ++it) {
      if (textMember(*it, "name") == link) {
        links.erase(it);
        return;
      }
    }
  };
  std::map<std::string, json, std::less<>> lastDrops;  // of members put back in: their counters' last reading
  for (json& subnet : entry["subnets"]) {
    json& members = subnet["instances"];
    json keptMembers = json::array();
    for (json& item : members) {
      const std::string name = textMember(item, "name");
      if (out.contains(name)) {
        dropLink(textMember(item, "link"));
        if (in.contains(name) && item.contains("spoof_drops")) lastDrops[name] = item["spoof_drops"];
      } else {
        keptMembers.push_back(std::move(item));
      }
    }
    members = std::move(keptMembers);
  }
  for (const std::string& name : in) {
    const std::string& state = now.at(name);
    auto part = member(name, state.empty() ? std::string("unknown") : state);  // as the whole drawing says
    if (!part) return std::nullopt;
    const std::string subnetName = textMember(*part, "subnet");
    json* subnet = nullptr;
    for (json& candidate : entry["subnets"]) {
      if (textMember(candidate, "name") == subnetName) subnet = &candidate;
    }
    if (subnet == nullptr) return std::nullopt;
    // Members in name order, as the whole drawing lists them.
    json& members = (*subnet)["instances"];
    auto at = std::find_if(members.begin(), members.end(),
                           [&](const json& item) { return textMember(item, "name") > name; });
    json& placed = (*part)["member"];
    if (auto last = lastDrops.find(name); last != lastDrops.end() && !placed["spoof_drops"].is_null())
      placed["spoof_drops"] = last->second;
    members.insert(at, std::move(placed));
    const json& link = (*part)["link"];
    if (!link.is_null() && links.is_array()) {
      dropLink(textMember(link, "name"));
      links.push_back(link);
    }
  }
  // Each group's members as the whole drawing lists them: by subnet, then name.
  std::map<std::string, json, std::less<>> groupMembers;
  for (const json& subnet : entry["subnets"]) {
    for (const json& item : subnet["instances"]) {
      for (const json& group : item["security_groups"])
        groupMembers[group.get<std::string>()].push_back(item["name"]);
    }
  }
  for (json& group : entry["security_groups"]) {
    auto members = groupMembers.find(textMember(group, "name"));
    group["members"] = members == groupMembers.end() ? json::array() : std::move(members->second);
    if (members != groupMembers.end()) groupMembers.erase(members);
  }
  if (!groupMembers.empty()) return std::nullopt;  // a member of a group the picture does not have
  entry["svg"] = inlineSvg(api::renderTopologySvg(entry));
  return entry;
}

json dashboardPatch(const DashboardView& before, const DashboardView& after) {
  json parts = json::object();
  if (after.body) {
    for (const auto& [key, value] : after.body->items()) {
      if (key == "vpcs") continue;
      if (!before.body || !before.body->contains(key) || (*before.body)[key] != value) parts[key] = value;
    }
    // A part that went (the cluster after a leave) as null.
    if (before.body)
      for (const auto& [key, value] : before.body->items())
        if (key != "vpcs" && !after.body->contains(key)) parts[key] = nullptr;
  }
  std::set<const json*> had;
  for (const auto& entry : before.vpcs) had.insert(entry.get());
  json order = json::array();
  json changed = json::array();
  for (const auto& entry : after.vpcs) {
    auto vpc = entry->find("vpc");
    order.push_back(vpc != entry->end() ? textMember(*vpc, "name") : std::string());
    if (!had.contains(entry.get())) changed.push_back(*entry);
  }
  return {{"base", before.sequence},
          {"sequence", after.sequence},
          {"parts", std::move(parts)},
          {"vpc_order", std::move(order)},
          {"vpcs", std::move(changed)}};
}

Result<json> Service::dashboardComparisonLocked() {
  auto latest = store_.listComparisons(std::nullopt, 1);
  if (!latest) return fail(latest.error());
  if (latest->empty()) return json(nullptr);
  auto result = parseRow(latest->front());
  if (!result) return fail(result.error());
  json comparison = comparisonSummary(latest->front(), *result);
  comparison["svg"] = api::renderComparisonSvg(comparison);
  return dashboardComparison(comparison);
}

}  // namespace corral::daemon
