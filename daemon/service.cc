// Answers each api::Request against the in-memory topology; mutations go copy → model → store → swap.
#include "daemon/service.h"

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "core/log.h"
#include "daemon/host_info.h"
#include "daemon/instance_view.h"
#include "daemon/network_json.h"
#include "daemon/trace_render.h"
#include "net/capture.h"
#include "net/frames.h"
#include "net/probe.h"

namespace corral::daemon {
namespace {

using net::ObjectKind;
using json = nlohmann::json;

// Per-kind access to the topology, so List/Get/Delete are written once for all seven kinds.
template <ObjectKind K>
struct KindOps;

template <>
struct KindOps<ObjectKind::Vpc> {
  static auto all(const net::Topology& t, std::string_view) { return t.vpcs(); }
  static auto find(const net::Topology& t, std::string_view name) { return t.vpc(name); }
  static json render(const net::Topology& t, const net::Vpc& v) { return toJson(t, v); }
  static auto remove(net::Topology& t, std::string_view name) { return t.deleteVpc(name); }
};
template <>
struct KindOps<ObjectKind::Subnet> {
  static auto all(const net::Topology& t, std::string_view vpc) { return t.subnets(vpc); }
  static auto find(const net::Topology& t, std::string_view name) { return t.subnet(name); }
  static json render(const net::Topology& t, const net::Subnet& s) { return toJson(t, s); }
  static auto remove(net::Topology& t, std::string_view name) { return t.deleteSubnet(name); }
};
template <>
struct KindOps<ObjectKind::RouteTable> {
  static auto all(const net::Topology& t, std::string_view vpc) { return t.routeTables(vpc); }
  static auto find(const net::Topology& t, std::string_view name) { return t.routeTable(name); }
  static json render(const net::Topology& t, const net::RouteTable& r) { return toJson(t, r); }
  static auto remove(net::Topology& t, std::string_view name) { return t.deleteRouteTable(name); }
};
template <>
struct KindOps<ObjectKind::InternetGateway> {
  static auto all(const net::Topology& t, std::string_view vpc) { return t.internetGateways(vpc); }
  static auto find(const net::Topology& t, std::string_view name) { return t.internetGateway(name); }
  static json render(const net::Topology&, const net::InternetGateway& g) { return toJson(g); }
  static auto remove(net::Topology& t, std::string_view name) { return t.deleteInternetGateway(name); }
};
template <>
struct KindOps<ObjectKind::NatGateway> {
  static auto all(const net::Topology& t, std::string_view vpc) { return t.natGateways(vpc); }
  static auto find(const net::Topology& t, std::string_view name) { return t.natGateway(name); }
  static json render(const net::Topology&, const net::NatGateway& g) { return toJson(g); }
  static auto remove(net::Topology& t, std::string_view name) { return t.deleteNatGateway(name); }
};
template <>
struct KindOps<ObjectKind::SecurityGroup> {
  static auto all(const net::Topology& t, std::string_view vpc) { return t.securityGroups(vpc); }
  static auto find(const net::Topology& t, std::string_view name) { return t.securityGroup(name); }
  static json render(const net::Topology&, const net::SecurityGroup& g) { return toJson(g); }
  static auto remove(net::Topology& t, std::string_view name) { return t.deleteSecurityGroup(name); }
};
template <>
struct KindOps<ObjectKind::NetworkAcl> {
  static auto all(const net::Topology& t, std::string_view vpc) { return t.networkAcls(vpc); }
  static auto find(const net::Topology& t, std::string_view name) { return t.networkAcl(name); }
  static json render(const net::Topology&, const net::NetworkAcl& a) { return toJson(a); }
  static auto remove(net::Topology& t, std::string_view name) { return t.deleteNetworkAcl(name); }
};

template <>
struct KindOps<ObjectKind::Peering> {
  static auto all(const net::Topology& t, std::string_view vpc) { return t.peerings(vpc); }
  static auto find(const net::Topology& t, std::string_view name) { return t.peering(name); }
  static json render(const net::Topology& t, const net::Peering& p) { return toJson(t, p); }
  static auto remove(net::Topology& t, std::string_view name) { return t.deletePeering(name); }
};

// Which kind each create spec makes, and the model call that makes it.
template <class Spec>
struct CreateOps;

template <>
struct CreateOps<net::VpcSpec> {
  static constexpr ObjectKind kind = ObjectKind::Vpc;
  static auto create(net::Topology& t, const net::VpcSpec& s, int64_t now) { return t.createVpc(s, now); }
};
template <>
struct CreateOps<net::SubnetSpec> {
  static constexpr ObjectKind kind = ObjectKind::Subnet;
  static auto create(net::Topology& t, const net::SubnetSpec& s, int64_t now) {
    return t.createSubnet(s, now);
  }
};
template <>
struct CreateOps<net::RouteTableSpec> {
  static constexpr ObjectKind kind = ObjectKind::RouteTable;
  static auto create(net::Topology& t, const net::RouteTableSpec& s, int64_t now) {
    return t.createRouteTable(s, now);
  }
};
template <>
struct CreateOps<net::InternetGatewaySpec> {
  static constexpr ObjectKind kind = ObjectKind::InternetGateway;
  static auto create(net::Topology& t, const net::InternetGatewaySpec& s, int64_t now) {
    return t.createInternetGateway(s, now);
  }
};
template <>
struct CreateOps<net::NatGatewaySpec> {
  static constexpr ObjectKind kind = ObjectKind::NatGateway;
  static auto create(net::Topology& t, const net::NatGatewaySpec& s, int64_t now) {
    return t.createNatGateway(s, now);
  }
};
template <>
struct CreateOps<net::SecurityGroupSpec> {
  static constexpr ObjectKind kind = ObjectKind::SecurityGroup;
  static auto create(net::Topology& t, const net::SecurityGroupSpec& s, int64_t now) {
    return t.createSecurityGroup(s, now);
  }
};
template <>
struct CreateOps<net::NetworkAclSpec> {
  static constexpr ObjectKind kind = ObjectKind::NetworkAcl;
  static auto create(net::Topology& t, const net::NetworkAclSpec& s, int64_t now) {
    return t.createNetworkAcl(s, now);
  }
};

template <>
struct CreateOps<net::PeeringSpec> {
  static constexpr ObjectKind kind = ObjectKind::Peering;
  static auto create(net::Topology& t, const net::PeeringSpec& s, int64_t now) {
    return t.createPeering(s, now);
  }
};

// The VPC an object of `topology` belongs to (a VPC: itself); nullopt when it is not there.
std::optional<std::string> vpcOfObject(const net::Topology& topology, const net::ObjectRef& ref) {
  auto owner = [](const auto* object) -> std::optional<std::string> {
    if (object == nullptr) return std::nullopt;
    return object->vpc;
  };
  switch (ref.kind) {
    case net::ObjectKind::Vpc:
      return ref.name;
    case net::ObjectKind::Subnet:
      return owner(topology.findSubnet(ref.name));
    case net::ObjectKind::RouteTable:
      return owner(topology.findRouteTable(ref.name));
    case net::ObjectKind::InternetGateway:
      return owner(topology.findInternetGateway(ref.name));
    case net::ObjectKind::NatGateway:
      return owner(topology.findNatGateway(ref.name));
    case net::ObjectKind::SecurityGroup:
      return owner(topology.findSecurityGroup(ref.name));
    case net::ObjectKind::NetworkAcl:
      return owner(topology.findNetworkAcl(ref.name));
    case net::ObjectKind::Peering:
      return owner(topology.findPeering(ref.name));  // its requester; the peer side: peerVpcOfObject
  }
  return std::nullopt;
}

// A peering's other VPC (it shows in both VPCs' pictures); nullopt for every other object.
std::optional<std::string> peerVpcOfObject(const net::Topology& topology, const net::ObjectRef& ref) {
  if (ref.kind != net::ObjectKind::Peering) return std::nullopt;
  const net::Peering* peering = topology.findPeering(ref.name);
  if (peering == nullptr) return std::nullopt;
  return peering->peerVpc;
}

int64_t wallClockSeconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

// The requests that change the VPC model: on a cluster host, the entries of its model log.
template <class T>
constexpr bool kChangesModel = false;
template <class Spec>
constexpr bool kChangesModel<api::Create<Spec>> = true;
template <ObjectKind K>
constexpr bool kChangesModel<api::Delete<K>> = true;
template <>
constexpr bool kChangesModel<api::UpdateSubnet> = true;
template <>
constexpr bool kChangesModel<api::AddRoute> = true;
template <>
constexpr bool kChangesModel<api::DeleteRoute> = true;
template <>
constexpr bool kChangesModel<api::AddSecurityGroupRule> = true;
template <>
constexpr bool kChangesModel<api::DeleteSecurityGroupRule> = true;
template <>
constexpr bool kChangesModel<api::AddNetworkAclRule> = true;
template <>
constexpr bool kChangesModel<api::DeleteNetworkAclRule> = true;

// Renders one object by kind and name from `topology`, which must hold it.
template <ObjectKind K>
Response objectResponse(int status, const net::Topology& topology, std::string_view name) {
  auto found = KindOps<K>::find(topology, name);
  if (!found) return errorResponse(found.error());
  return {status, KindOps<K>::render(topology, **found)};
}

}  // namespace

Response errorResponse(const Error& error) {
  if (error.kind() == ErrorKind::Internal) log::error("{}", error.message());
  return {api::httpStatus(error.kind()), api::errorJson(error)};
}

Result<std::unique_ptr<Service>> Service::load(Store store, InstanceOptions instanceOptions,
                                               NetworkOptions networkOptions, GroupOptions groupOptions) {
  auto topology = store.loadTopology();
  if (!topology) return fail(topology.error().wrap(fmt::format("loading state from \"{}\"", store.path())));
  auto balancers = store.loadBalancers();
  if (!balancers) return fail(balancers.error().wrap(fmt::format("loading state from \"{}\"", store.path())));
  auto service = std::make_unique<Service>(std::move(store), std::move(*topology));
  service->balancers_ = std::move(*balancers);
  const bool kernel = networkOptions.kernel;
  const int flowLogBuffer = networkOptions.flowLogBuffer;
  service->network_ = std::make_unique<NetworkController>(std::move(networkOptions), service->topology_);
  if (kernel) {
    service->flowLogs_ = std::make_unique<FlowLogs>(service->store_, flowLogBuffer);
    service->network_->setFlowLogs(service->flowLogs_.get());
  }
  auto instances =
      InstanceManager::load(service->store_, std::move(instanceOptions), service->network_.get());
  if (!instances)
    return fail(instances.error().wrap(fmt::format("loading state from \"{}\"", service->store_.path())));
  service->instances_ = std::move(*instances);
  service->network_->setMetadataLookup(
      [raw = service.get()](const std::string& vpc, const std::string& address) {
        return raw->metadataIdentity(vpc, address);
      });
  service->metadataStop_.network = service->network_.get();
  // The load balancers' NICs are kept like the instances' (their ports survive the reconcile below).
  service->restoreBalancerNics();
  // The instances' NICs are known now, so reconciling keeps their ports.
  service->network_->reconcile();
  service->instances_->replugNics();
  service->startBalancers();
  auto groups = GroupController::load(
      service->store_, *service->instances_,
      [raw = service.get()](const schema::GroupSpec& spec) { return raw->checkGroupSpec(spec); },
      cgroupCpuReader(*service->instances_), static_cast<TargetGroupSeam*>(service.get()), groupOptions);
  if (!groups)
    return fail(groups.error().wrap(fmt::format("loading groups from \"{}\"", service->store_.path())));
  service->groups_ = std::move(*groups);
  service->groups_->setFleet(static_cast<GroupFleet*>(service.get()));
  if (!groupOptions.awaitCluster) service->groups_->start();
  return service;
}

std::optional<MetadataIdentity> Service::metadataIdentity(const std::string& vpc,
                                                          const std::string& address) {
  auto identity = network_->metadataIdentity(vpc, address);
  if (!identity) return std::nullopt;
  auto instance = instances_->get(identity->instanceId);
  if (!instance) return std::nullopt;
  const json spec = instance->value("spec", json::object());
  const std::string hostname = spec.value("hostname", "");
  if (!hostname.empty()) identity->hostname = hostname;
  if (auto userData = decodeUserData(spec.value("user_data", "")); userData)
    identity->userData = std::move(*userData);
  return identity;
}

Response Service::handle(const api::Request& request) {
  return std::visit(
      [this, &request](const auto& typed) -> Response {
        if constexpr (requires { serveCluster(typed); }) {
          if (!cluster_)
            return errorResponse(
                conflict("cluster: this corrald runs as a single host; start it with --cluster-address to "
                         "init or join a "
                         "cluster"));
          return serveCluster(typed);
        } else if constexpr (requires { serveImage(typed); }) {
          if (!images_) return errorResponse(unavailable("images are not managed by this service"));
          return serveImage(typed);
        } else if constexpr (requires { serveGroup(typed); }) {
          if (!groups_) return errorResponse(unavailable("groups are not managed by this service"));
          if (auto forwarded = forwardGroup(typed)) return std::move(*forwarded);
          return serveGroup(typed);
        } else if constexpr (std::is_same_v<std::decay_t<decltype(typed)>, api::GetFlowLogs>) {
          // Its checks take the lock themselves; reading the store needs none.
          auto filter = flowLogFilter(typed);
          if (!filter) return errorResponse(filter.error());
          auto records = flowLogRecords(*filter);
          if (!records) return errorResponse(records.error());
          return {200, json{{"records", std::move(*records)},
                            {"kept_per_vpc", kFlowLogsPerVpc},
                            {"window_seconds", net::kFlowWindowMs / 1000}}};
        } else if constexpr (std::is_same_v<std::decay_t<decltype(typed)>, api::ReachAnalysis>) {
          return serveReach(typed);
        } else if constexpr (requires { serveInstance(typed); }) {
          if (!instances_) return errorResponse(unavailable("instances are not managed by this service"));
          if (auto forwarded = forwardInstance(typed)) return std::move(*forwarded);
          return serveInstance(typed);
        } else if constexpr (requires { serveBalancer(typed); }) {
          BalancerAnswer answer = [&] {
            std::lock_guard lock(mutex_);
            return serveBalancer(typed);
          }();
          completeStats(answer);
          return std::move(answer.response);
        } else {
          std::lock_guard lock(mutex_);
          if (modelLog_) return serveSharedLocked(typed, request);
          return serve(typed);
        }
      },
      request);
}

template <class Typed>
Response Service::serveSharedLocked(const Typed& typed, const api::Request& request) {
  if constexpr (!kChangesModel<Typed>) {
    if (auto caught = catchUpLocked(); !caught)
      log::debug("answering from this host's copy of the model: {}", caught.error().message());
    return serve(typed);
  } else {
    const api::HttpRequest http = api::renderRequest(request);
    constexpr int kAttempts = 5;
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      if (auto caught = catchUpLocked(); !caught) return errorResponse(caught.error());
      modelEntry_ = ModelEntry{.number = modelApplied_ + 1,
                               .method = http.method,
                               .target = http.target,
                               .body = http.body,
                               .now = wallClockSeconds(),
                               .host = cluster_->hostName()};
      modelRaced_ = false;
      Response response = serve(typed);
      modelEntry_.reset();
      if (!std::exchange(modelRaced_, false)) return response;
    }
    return errorResponse(
        unavailable("the cluster's model changed under this request {} times: try again", kAttempts));
  }
}

Status Service::catchUpLocked() {
  if (!modelLog_) return {};
  auto tail = modelLog_->after(modelApplied_);
  if (!tail) return fail(std::move(tail.error()));
  if (tail->snapshot) {
    if (auto loaded = loadSnapshotLocked(*tail->snapshot); !loaded) return fail(loaded.error());
  }
  for (ModelEntry& entry : tail->entries) {
    auto request = api::parseRequest(entry.method, entry.target, entry.body);
    Response response{500, nullptr};
    if (request) {
      replaying_ = true;
      modelEntry_ = entry;
      response = std::visit(
          [this](const auto& typed) -> Response {
            if constexpr (kChangesModel<std::decay_t<decltype(typed)>>) {
              return serve(typed);
            } else {
              return errorResponse(internalError("not a change of the model"));
            }
          },
          *request);
      replaying_ = false;
      modelEntry_.reset();
    } else {
      response = errorResponse(request.error());
    }
    if (response.status >= 300) {
      // The host that made it checked it against the same entries: this host's copy differs (a load
      // balancer here uses what it deletes, say). The log goes on; the copy keeps what it had.
      log::error("cluster model entry {} ({} {} from host {}) does not apply here: {}", entry.number,
                 entry.method, entry.target, entry.host, response.body.dump());
      if (auto saved = store_.apply(topology_, {}, entry.number); !saved) return fail(saved.error());
    }
    modelApplied_ = entry.number;
  }
  recordAppliedLocked();
  return {};
}

Status Service::loadSnapshotLocked(const ModelSnapshot& snapshot) {
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(
        fmt::format("load the cluster's model snapshot (through entry {})", snapshot.through)));
  };
  // Only a host behind the snapshot gets here: one joining (no VPCs), or one the log was compacted past
  // although compaction waits for every listed host (its applied key deleted by hand, say). The snapshot
  // is the model after the entries it replaces, each checked against every host's NICs when it was made.
  log::info("cluster model: loading the snapshot through entry {} (this host had applied {})",
            snapshot.through, modelApplied_);
  if (auto loaded = store_.loadModelRows(snapshot.tables, snapshot.through); !loaded)
    return wrap(std::move(loaded.error()));
  auto topology = store_.loadTopology();
  if (!topology) return wrap(std::move(topology.error()));
  if (network_) {
    if (auto applied = network_->applyTopology(*topology); !applied)
      log::error("cluster model snapshot {}: the network refused it here: {}", snapshot.through,
                 applied.error().message());
  }
  topology_ = std::move(*topology);
  modelApplied_ = snapshot.through;
  modelSnapshotThrough_ = std::max(modelSnapshotThrough_, snapshot.through);
  ++topologyChanges_;
  for (const net::Vpc* vpc : topology_.vpcs()) vpcRevisions_[vpc->name] = topologyChanges_;
  ++viewRevision_;
  return {};
}

void Service::recordAppliedLocked() {
  if (!modelLog_ || !cluster_ || modelApplied_ == modelRecorded_) return;
  if (auto recorded = modelLog_->recordApplied(cluster_->hostName(), modelApplied_); !recorded) {
    log::debug("cluster model: {}", recorded.error().message());
    return;
  }
  modelRecorded_ = modelApplied_;
  const uint64_t threshold = cluster_->modelCompactEntries();
  if (modelApplied_ <= modelSnapshotThrough_ + threshold) return;
  // An attempt that had to wait for a host is made again a quarter of the threshold later: the last host
  // to apply an entry finds every other at it and compacts.
  if (modelCompactTried_ != 0 && modelApplied_ < modelCompactTried_ + std::max<uint64_t>(1, threshold / 4))
    return;
  auto rows = store_.modelRows();
  if (!rows) {
    log::error("cluster model: compaction: {}", rows.error().message());
    return;
  }
  auto compacted = modelLog_->compact({.through = rows->through, .tables = std::move(rows->tables)});
  if (!compacted) {
    log::warn("cluster model: {}", compacted.error().message());
    return;
  }
  modelSnapshotThrough_ = std::max(modelSnapshotThrough_, compacted->snapshotThrough);
  modelCompactTried_ = 0;
  switch (compacted->outcome) {
    case Compaction::Done:
      log::info("cluster model: compacted the log: a snapshot replaces entries 1 to {}", modelApplied_);
      break;
    case Compaction::Waiting:
      modelCompactTried_ = modelApplied_;
      log::info("cluster model: compaction through entry {} waits: {}", modelApplied_, compacted->detail);
      break;
    case Compaction::TooLarge:
      // Not again before the threshold's worth of entries more: the model will hardly have shrunk.
      modelSnapshotThrough_ = modelApplied_;
      log::warn("cluster model: not compacting the log through entry {}: {}", modelApplied_,
                compacted->detail);
      break;
    case Compaction::Superseded:
      break;
  }
}

int64_t Service::changeTimeLocked() const {
  return modelEntry_ ? modelEntry_->now : wallClockSeconds();
}

void Service::followModel() {
  const bool member = cluster_ && cluster_->member();
  if (network_) network_->setClusterScope(member);
  std::unique_ptr<ModelLog> old;
  {
    std::lock_guard lock(mutex_);
    if (member == (modelLog_ != nullptr)) return;
    old = std::move(modelLog_);
  }
  old.reset();  // joins its watch thread, which takes mutex_
  if (instances_) instances_->setClaims(nullptr);
  {
    std::unique_lock fleet(fleetMutex_);
    clusterInstances_.reset();
    if (!member) return;
    clusterInstances_ = std::make_unique<ClusterInstances>(
        [cluster = cluster_.get()] { return cluster->store(); }, cluster_->hostName(), network_.get());
  }
  if (instances_) instances_->setClaims(clusterInstances_.get());
  clusterInstances_->start([this] {
    std::lock_guard lock(mutex_);
    if (auto caught = catchUpLocked(); !caught) return;  // the model log's watch tries again
    endClusterWaitLocked();
  });
  auto log = std::make_unique<ModelLog>([cluster = cluster_.get()] { return cluster->store(); });
  ModelLog* raw = log.get();
  {
    std::lock_guard lock(mutex_);
    auto applied = store_.modelApplied();
    modelApplied_ = applied ? *applied : 0;
    modelRecorded_ = 0;
    modelSnapshotThrough_ = 0;
    modelCompactTried_ = 0;
    modelLog_ = std::move(log);
  }
  raw->watch([this] {
    std::lock_guard lock(mutex_);
    if (auto caught = catchUpLocked(); !caught) {
      log::warn("cluster model: catching up: {}", caught.error().message());
      return;
    }
    endClusterWaitLocked();
  });
}

void Service::endClusterWaitLocked() {
  if (network_ && clusterInstances_ && clusterInstances_->synced()) network_->endClusterWait();
}

namespace {

// The instance a request is about, for those that name one.
template <class Typed>
std::optional<std::string> instanceNamed(const Typed& typed) {
  if constexpr (requires { typed.name; }) {
    return typed.name;
  } else if constexpr (requires { typed.target; }) {
    return typed.target;  // trace: a subnet's name is never an instance's of another host
  } else {
    return std::nullopt;
  }
}

}  // namespace

template <class Typed>
std::optional<Response> Service::forwardInstance(const Typed& typed) {
  if (!clusterInstances_) return std::nullopt;
  std::optional<std::string> name = instanceNamed(typed);
  if (!name || instances_->stateOf(*name)) return std::nullopt;
  auto owner = clusterInstances_->ownerOf(*name);
  if (!owner) return errorResponse(owner.error().wrap(fmt::format("instance \"{}\"", *name)));
  if (!*owner || **owner == cluster_->hostName()) return std::nullopt;
  auto host = clusterHost(**owner);
  if (!host) return errorResponse(host.error());
  return forwardTo(*host, typed);
}

Result<std::unique_ptr<StdioSession>> Service::openTerminal(const api::TerminalTarget& target) {
  if (!instances_) return fail(unavailable("instances are not managed by this service"));
  if (target.kind == api::TerminalTarget::Kind::console) return instances_->attachConsole(target.name);
  return instances_->execInteractive(target.name, target.request);
}

namespace {
Response resultResponse(int status, Result<nlohmann::json> result) {
  if (!result) return errorResponse(result.error());
  return {status, std::move(*result)};
}

// Env values leave corrald only for GET /v1/instances/NAME?show_env=true (daemon/instance_view.h).
Response instanceResponse(int status, Result<nlohmann::json> instance) {
  if (!instance) return errorResponse(instance.error());
  return {status, withEnvMasked(std::move(*instance))};
}
}  // namespace

Status Service::openCluster(ClusterOptions options) {
  auto cluster = Cluster::open(std::move(options), [this] { return instanceCount(); });
  if (!cluster) return fail(cluster.error());
  cluster_ = std::move(*cluster);
  if (network_ && network_->onOvn())  // the hosts' chassis and tunnels (daemon/cluster_view.h)
    cluster_->setChassisSource([this] { return *network_->ovnChassis(); });
  followModel();
  if (groups_) groups_->start();  // when it waited for the cluster (GroupOptions::awaitCluster)
  return {};
}

std::optional<std::string> Service::clusterPeerToken() const {
  return cluster_ ? cluster_->peerToken() : std::nullopt;
}

// A cluster's VPCs are the ones made on it: a host bringing its own would hold VPCs the others do not have.
Status Service::checkNoVpcs(std::string_view action) const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> names;
  for (const net::Vpc* vpc : topology_.vpcs()) names.push_back(vpc->name);
  if (names.empty()) return {};
  return fail(
      conflict("cluster {}: this host has VPCs ({}); a cluster's VPCs are made once it is formed "
               "and every host holds them: remove them first",
               action, fmt::join(names, ", ")));
}

Response Service::serveCluster(const api::InitCluster& request) {
  if (auto empty = checkNoVpcs("init"); !empty) return errorResponse(empty.error());
  Response response = resultResponse(201, cluster_->init(request.az));
  followModel();
  return response;
}
Response Service::serveCluster(const api::JoinCluster& request) {
  if (auto empty = checkNoVpcs("join"); !empty) return errorResponse(empty.error());
  Response response = resultResponse(201, cluster_->join(request.address, request.token, request.az));
  if (response.status == 201 && network_) network_->beginClusterWait();
  followModel();
  return response;
}
Response Service::serveCluster(const api::ListClusterHosts&) {
  return resultResponse(200, cluster_->hosts());
}
Response Service::serveCluster(const api::GetClusterToken&) {
  return resultResponse(200, cluster_->token());
}
Response Service::serveCluster(const api::UpdateClusterHost& request) {
  return resultResponse(200, cluster_->setAz(request.name, request.az));
}
Response Service::serveCluster(const api::LeaveCluster&) {
  if (!cluster_->member()) return resultResponse(200, cluster_->leave());  // its own refusal
  if (auto empty = checkNothingInClusterVpcs(); !empty) return errorResponse(empty.error());
  // Compaction stops waiting for this host once it is gone from the list; its applied number goes first
  // (after the leave the store is out of reach). A leave refused below records it again.
  {
    std::lock_guard lock(mutex_);
    if (modelLog_) {
      if (auto forgotten = modelLog_->forgetHost(cluster_->hostName()); !forgotten)
        log::warn("cluster leave: {}", forgotten.error().message());
      modelRecorded_ = 0;
    }
  }
  Response response = resultResponse(200, cluster_->leave());
  followModel();
  if (response.status != 200 || cluster_->member()) return response;
  // A single host now, with no VPCs: its copy of the cluster's model goes, and none of OVN's rows (they
  // are the cluster's, and the other hosts go on converging them).
  std::lock_guard lock(mutex_);
  if (auto forgotten = store_.forgetModel(); !forgotten)
    return errorResponse(
        forgotten.error().wrap("cluster leave: the host left, but its copy of the model stays"));
  if (network_) {
    if (auto forgotten = network_->forgetModel(); !forgotten)
      log::error("cluster leave: forgetting the network's model: {}", forgotten.error().message());
  }
  topology_ = net::Topology();
  modelApplied_ = 0;
  ++topologyChanges_;
  vpcRevisions_.clear();
  ++viewRevision_;
  log::info("cluster leave: this host's copy of the cluster's VPCs is forgotten (their OVN rows stay)");
  return response;
}

// A host leaves a cluster with nothing of its own in the cluster's VPCs: an instance, load balancer,
// target group or group of it would be left with no subnet.
Status Service::checkNothingInClusterVpcs() {
  // "cluster leave: this host WHAT in the cluster's VPCs (NAMES): remove them first", 409 naming `field`.
  auto refuse = [](std::string_view what, const std::vector<std::string>& names, std::string field) {
    return fail(Error(ErrorKind::Conflict,
                      fmt::format("cluster leave: this host {} in the cluster's VPCs ({}): remove them first",
                                  what, fmt::join(names, ", ")),
                      std::move(field)));
  };
  std::vector<std::string> instances;
  if (instances_ && network_) {
    const json states = instances_->statesJson();
    for (const json& instance : states["instances"]) {
      const std::string name = instance.value("name", "");
      if (network_->nic(name)) instances.push_back(name);
    }
  }
  if (!instances.empty()) return refuse("runs instances", instances, "instances");
  if (groups_) {
    if (std::vector<std::string> groups = groups_->names(); !groups.empty())
      return refuse("keeps groups", groups, "groups");
  }
  std::lock_guard lock(mutex_);
  std::vector<std::string> balancers;
  for (const auto* balancer : balancers_.loadBalancers()) balancers.push_back(balancer->name);
  for (const auto* group : balancers_.targetGroups()) balancers.push_back(group->name);
  if (!balancers.empty()) return refuse("has load balancers or target groups", balancers, "load_balancers");
  return {};
}

Status Service::openImages(ImageServiceOptions options) {
  auto images = ImageService::open(std::move(options));
  if (!images) return fail(images.error());
  images_ = std::move(*images);
  return {};
}

Status Service::checkImageOperation(const api::Request& request) {
  if (!images_) return fail(unavailable("images are not managed by this service"));
  return images_->check(request);
}

void Service::stopImageOperations() {
  if (images_) images_->stopAll();
}

Result<nlohmann::json> Service::runImageOperation(
    const api::Request& request, const std::function<void(const api::ProgressEvent&)>& report,
    std::stop_token stop) {
  if (!images_) return fail(unavailable("images are not managed by this service"));
  return images_->run(request, report, std::move(stop));
}

Response Service::serveImage(const api::ListImages&) {
  return resultResponse(200, images_->list());
}
Response Service::serveImage(const api::GetImage& request) {
  return resultResponse(200, images_->inspect(request.name));
}
Response Service::serveImage(const api::RemoveImage& request) {
  if (auto removed = images_->remove(request.name); !removed) return errorResponse(removed.error());
  nlohmann::json answer = {{"removed", request.name}, {"vm_snapshots_removed", nlohmann::json::array()}};
  // Its warm VM snapshots go with it once no name and no instance holds its manifest.
  if (instances_) {
    if (auto pruned = instances_->pruneVmSnapshots(); pruned)
      answer["vm_snapshots_removed"] = *pruned;
    else
      log::warn("image \"{}\" removed, but not its warm VM snapshots: {}", request.name,
                pruned.error().message());
  }
  return {200, std::move(answer)};
}
Response Service::serveInstance(const api::ListVmSnapshots&) {
  return resultResponse(200, instances_->vmSnapshots());
}
Response Service::serveInstance(const api::RemoveVmSnapshot& request) {
  if (auto removed = instances_->removeVmSnapshot(request.key); !removed)
    return errorResponse(removed.error());
  return {200, {{"removed", request.key}}};
}
Response Service::serveImage(const api::PullImage& request) {
  auto image = images_->run(request, {}, {});
  if (!image) return errorResponse(image.error());
  return {201, {{"image", std::move(*image)}}};
}
Response Service::serveImage(const api::ImportImage& request) {
  auto image = images_->run(request, {}, {});
  if (!image) return errorResponse(image.error());
  return {201, {{"image", std::move(*image)}}};
}
Response Service::serveImage(const api::BuildImage& request) {
  auto image = images_->run(request, {}, {});
  if (!image) return errorResponse(image.error());
  return {201, {{"image", std::move(*image)}}};
}

Response Service::serveInstance(const api::RunInstance& request) {
  // Only a group's controller makes members: a user's instance is never counted as one.
  if (!request.spec.group.empty() && !placedMemberHere(request.spec))
    return errorResponse(
        invalidField("group", "members of a group are launched by the group (corral group create)"));
  return instanceResponse(201, instances_->run(request.spec));
}

Status Service::checkGroupSpec(const schema::GroupSpec& spec) {
  std::lock_guard lock(mutex_);
  std::string vpc;
  for (size_t i = 0; i < spec.subnets.size(); ++i) {
    const std::string field = fmt::format("subnets[{}]", i);
    auto subnet = topology_.subnet(spec.subnets[i]);
    if (!subnet) return fail(invalidField(field, "subnet \"{}\" not found", spec.subnets[i]));
    if (i == 0)
      vpc = (*subnet)->vpc;
    else if ((*subnet)->vpc != vpc)
      return fail(
          invalidField(field,
                       "subnet \"{}\" is in VPC \"{}\", subnet \"{}\" in VPC \"{}\": a group's subnets "
                       "share one VPC",
                       spec.subnets[i], (*subnet)->vpc, spec.subnets[0], vpc));
  }
  for (size_t i = 0; i < spec.launch.securityGroups.size(); ++i) {
    const std::string field = fmt::format("template.security_groups[{}]", i);
    auto group = topology_.securityGroup(spec.launch.securityGroups[i]);
    if (!group)
      return fail(invalidField(field, "security group \"{}\" not found", spec.launch.securityGroups[i]));
    if ((*group)->vpc != vpc)
      return fail(invalidField(field, "security group \"{}\" is in VPC \"{}\", the group's subnets in \"{}\"",
                               spec.launch.securityGroups[i], (*group)->vpc, vpc));
  }
  if (!spec.targetGroup.empty()) {
    const lb::TargetGroup* targetGroup = balancers_.findTargetGroup(spec.targetGroup);
    if (!targetGroup)
      return fail(invalidField("target_group", "target group \"{}\" not found", spec.targetGroup));
    if (targetGroup->vpc != vpc)
      return fail(invalidField("target_group",
                               "target group \"{}\" is in VPC \"{}\", the group's subnets in \"{}\": its "
                               "members could not be reached",
                               spec.targetGroup, targetGroup->vpc, vpc));
  }
  return {};
}

Response Service::serveGroup(const api::CreateGroup& request) {
  return resultResponse(201, groups_->create(request.spec));
}
Response Service::serveGroup(const api::ListGroups&) {
  return {200, groups_->list()};
}
Response Service::serveGroup(const api::GetGroup& request) {
  return resultResponse(200, groups_->get(request.name));
}
Response Service::serveGroup(const api::RemoveGroup& request) {
  return resultResponse(200, groups_->remove(request.name, request.force));
}
Response Service::serveGroup(const api::ScaleGroup& request) {
  return resultResponse(200, groups_->scale(request.name, request.desired));
}
Response Service::serveGroup(const api::GetGroupEvents& request) {
  return resultResponse(200, groups_->events(request.name));
}
Response Service::serveGroup(const api::SetGroupPolicy& request) {
  return resultResponse(200, groups_->setPolicy(request.name, request.policy));
}
Response Service::serveInstance(const api::ListInstances& request) {
  if (request.summary) return {200, instances_->summaries()};
  nlohmann::json list = instances_->list();
  for (nlohmann::json& instance : list["instances"]) instance = withEnvMasked(std::move(instance));
  return {200, std::move(list)};
}
Response Service::serveInstance(const api::GetInstance& request) {
  if (request.showEnv) return resultResponse(200, instances_->get(request.name));
  return instanceResponse(200, instances_->get(request.name));
}
Response Service::serveInstance(const api::StopInstance& request) {
  return instanceResponse(200, instances_->stop(request.name, request.graceSeconds, request.save));
}
Response Service::serveInstance(const api::StartInstance& request) {
  return instanceResponse(200, instances_->start(request.name));
}
Response Service::serveInstance(const api::RemoveInstance& request) {
  auto removed = instances_->remove(request.name, request.force);
  if (!removed) return errorResponse(removed.error());
  forgetInstances({request.name});
  if (removed->contains("deleted")) (*removed)["deleted"] = withEnvMasked(std::move((*removed)["deleted"]));
  return {200, std::move(*removed)};
}
Response Service::serveInstance(const api::RemoveInstances& request) {
  auto results = instances_->removeMany(request.names, request.force);
  if (!results) return errorResponse(results.error());
  std::vector<std::string> gone;
  for (size_t i = 0; i < results->size(); ++i) {
    if ((*results)[i]) gone.push_back(request.names[i]);
  }
  forgetInstances(gone);
  nlohmann::json answers = nlohmann::json::array();
  int64_t removed = 0;
  for (size_t i = 0; i < results->size(); ++i) {
    Result<nlohmann::json>& result = (*results)[i];
    nlohmann::json answer = {{"name", request.names[i]}};
    if (result) {
      answer["deleted"] = withEnvMasked(std::move((*result)["deleted"]));
      ++removed;
    } else {
      answer["error"] = api::errorJson(result.error())["error"];
    }
    answers.push_back(std::move(answer));
  }
  return {200,
          {{"results", std::move(answers)},
           {"removed", removed},
           {"failed", static_cast<int64_t>(results->size()) - removed}}};
}
Response Service::serveInstance(const api::GetInstanceLogs& request) {
  return resultResponse(200, instances_->logs(request.name, request.offset));
}
Response Service::serveInstance(const api::ExecInstance& request) {
  return resultResponse(200, instances_->exec(request.name, request.command, request.env));
}

Response Service::serveInstance(const api::WaitInstancePort& request) {
  if (request.port < 1 || request.port > 65535) {
    return errorResponse(
        invalidField("port", "port must be a TCP port between 1 and 65535, got {}", request.port));
  }
  if (request.timeoutSeconds < 1 || request.timeoutSeconds > 600) {
    return errorResponse(invalidField("timeout_seconds", "timeout_seconds must be between 1 and 600, got {}",
                                      request.timeoutSeconds));
  }
  return resultResponse(200, instances_->waitForPort(request.name, static_cast<uint16_t>(request.port),
                                                     std::chrono::seconds(request.timeoutSeconds)));
}

Response Service::serveInstance(const api::TraceCapture& request) {
  if (request.count < 1 || request.count > 10000) {
    return errorResponse(
        invalidField("count", "count must be between 1 and 10000 frames, got {}", request.count));
  }
  if (request.seconds < 1 || request.seconds > 300) {
    return errorResponse(
        invalidField("seconds", "seconds must be between 1 and 300, got {}", request.seconds));
  }
  auto filter = net::parseFrameFilter(request.filter, "filter");
  if (!filter) return errorResponse(filter.error());
  if (!network_) return errorResponse(unavailable("the network is not managed by this service"));
  // A load balancer's NIC in the subnet asked for (or its only one), named as the network keeps it.
  auto balancerNic = [&](const std::string& balancerName) -> Result<std::string> {
    std::lock_guard lock(mutex_);
    const lb::LoadBalancer* balancer = balancers_.findLoadBalancer(balancerName);
    if (!balancer)
      return fail(Error(ErrorKind::NotFound, fmt::format("load balancer \"{}\" not found", balancerName),
                        "load_balancer"));
    std::string subnets;
    for (const auto& nic : balancer->nics) subnets += (subnets.empty() ? "" : ", ") + nic.subnet;
    if (balancer->nics.empty())
      return fail(conflict("load balancer \"{}\" has no NIC yet: nothing to trace", balancer->name));
    std::string subnet = request.subnet;
    if (subnet.empty() && balancer->nics.size() > 1)
      return fail(invalidField("subnet", "load balancer \"{}\" has a NIC in each of {}: give one",
                               balancer->name, subnets));
    if (subnet.empty()) subnet = balancer->nics.front().subnet;
    if (std::none_of(balancer->nics.begin(), balancer->nics.end(),
                     [&](const lb::LoadBalancerNic& nic) { return nic.subnet == subnet; }))
      return fail(invalidField("subnet", "load balancer \"{}\" has no NIC in subnet \"{}\" (its NICs: {})",
                               balancer->name, subnet, subnets));
    return balancerNicName(balancer->name, subnet);
  };
  std::string name = request.target;
  if (!request.loadBalancer.empty()) {
    auto nic = balancerNic(request.loadBalancer);
    if (!nic) return errorResponse(nic.error());
    name = *nic;
  }
  auto target =
      network_->captureTarget(name, loadBalancerOfNic(name) ? std::nullopt : instances_->stateOf(name));
  if (!target && target.error().kind() == ErrorKind::NotFound && request.loadBalancer.empty()) {
    // Neither a subnet nor an instance: a load balancer's name (an instance of the same name comes first).
    bool isBalancer = false;
    {
      std::lock_guard lock(mutex_);
      isBalancer = balancers_.findLoadBalancer(name) != nullptr;
    }
    if (isBalancer) {
      auto nic = balancerNic(name);
      if (!nic) return errorResponse(nic.error());
      target = network_->captureTarget(*nic, std::nullopt);
    }
  }
  if (!target) return errorResponse(target.error());

  auto capture = net::PacketCapture::open(target->netns, target->link);
  if (!capture) {
    return errorResponse(
        capture.error().wrap(fmt::format("capture on {} in namespace {}", target->link, target->netns)));
  }
  log::info("trace: capturing on {} of {} \"{}\" (netns {}), up to {} frames or {} s, filter {}",
            target->link, captureKindName(target->kind), target->name, target->netns, request.count,
            request.seconds, request.filter);

  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(request.seconds);
  net::TcpConversationTracker tracker;
  std::string pcap = net::pcapFileHeader();
  json frames = json::array();
  std::chrono::microseconds first{0};
  int64_t seen = 0;
  while (static_cast<int64_t>(frames.size()) < request.count) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left <= std::chrono::milliseconds(0)) break;
    auto next = capture->next(left);
    if (!next) {
      return errorResponse(
          next.error().wrap(fmt::format("capture on {} in namespace {}", target->link, target->netns)));
    }
    if (!*next) continue;  // nothing within the time left: the loop ends at the deadline
    const net::CapturedFrame& captured = **next;
    ++seen;
    net::DecodedFrame frame = net::decodeFrame(captured.bytes, captured.timestamp, captured.wireLength);
    // Every frame feeds the tracker, so a connection's steps are known even when some frames are not shown.
    std::optional<std::string> event = tracker.observe(frame);
    if (!net::matchesFilter(frame, *filter)) continue;
    if (frames.empty()) first = captured.timestamp;
    frames.push_back(traceFrameJson(frame, frames.size() + 1, first, captured.outgoing, event));
    pcap += net::pcapRecord(captured.bytes, captured.timestamp, captured.wireLength);
  }
  int64_t matched = static_cast<int64_t>(frames.size());
  return {200,
          {{"target",
            {{"kind", captureKindName(target->kind)},
             {"name", target->name},
             {"vpc", target->vpc},
             {"netns", target->netns},
             {"link", target->link}}},
           {"filter", request.filter},
           {"count", request.count},
           {"seconds", request.seconds},
           {"frames", std::move(frames)},
           {"seen", seen},
           {"matched", matched},
           {"pcap", api::base64Encode(pcap)}}};
}

ObjectCounts Service::counts() const {
  std::lock_guard lock(mutex_);
  return countsLocked();
}

ObjectCounts Service::countsLocked() const {
  return {.vpcs = topology_.vpcs().size(),
          .subnets = topology_.subnets().size(),
          .routeTables = topology_.routeTables().size(),
          .internetGateways = topology_.internetGateways().size(),
          .natGateways = topology_.natGateways().size(),
          .securityGroups = topology_.securityGroups().size(),
          .networkAcls = topology_.networkAcls().size(),
          .peerings = topology_.peerings().size()};
}

template <class Operation>
Status Service::commit(Operation&& operation) {
  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  net::Topology next = topology_;
  Result<net::Changeset> changes = std::forward<Operation>(operation)(next);
  if (!changes) return fail(std::move(changes.error()));
  const Clock::time_point modelled = Clock::now();
  const std::optional<uint64_t> entry =
      modelEntry_ ? std::optional<uint64_t>(modelEntry_->number) : std::nullopt;
  if (entry && !replaying_) {
    // A cluster host: the change is the cluster's once its entry is in the log. Checked first against
    // this host's NICs (which are every host's: daemon/cluster_instances.h).
    if (network_) {
      if (auto fits = network_->checkTopology(next); !fits) return fail(fits.error());
    }
    auto appended = modelLog_->append(*modelEntry_);
    if (!appended) return fail(appended.error());
    if (!*appended) {
      modelRaced_ = true;
      return fail(conflict("cluster model entry {} was taken by another host", *entry));
    }
  }
  // The kernel first: a change it refuses is not saved. Then the state; if that fails, the kernel goes back.
  // An entry of the cluster's log is the model whatever this host's network says: a refusal is logged
  // and the next change (or corrald's start) converges again.
  if (network_) {
    if (auto applied = network_->applyTopology(next); !applied) {
      if (!entry) return fail(applied.error());
      log::error("cluster model entry {}: the network refused it here: {}", *entry,
                 applied.error().message());
    }
  }
  const Clock::time_point applied = Clock::now();
  auto saved = store_.apply(next, *changes, entry);
  const Clock::time_point stored = Clock::now();
  auto ms = [](Clock::time_point from, Clock::time_point to) {
    return std::chrono::duration<double, std::milli>(to - from).count();
  };
  // Where a change's time goes (bench/scale prints it): the model, the kernel (nft), the store's commit.
  log::info("topology change in {:.1f} ms: model {:.1f}, network {:.1f}, store {:.1f}", ms(start, stored),
            ms(start, modelled), ms(modelled, applied), ms(applied, stored));
  if (!saved) {
    if (network_) {
      if (auto undone = network_->applyTopology(topology_); !undone)
        log::error("restoring the network after a failed save: {}", undone.error().message());
    }
    return fail(saved.error().wrap("saving state"));
  }
  // Only now, with the transaction committed, does the new state become visible.
  if (entry) modelApplied_ = *entry;
  ++topologyChanges_;
  // Whether the dashboard shows anything of the change: a change of rules alone leaves the view, and so
  // its rebuild and the event stream, alone (a rule change each second costs the change, not the view).
  bool drawn = !changes->deleted.empty();
  for (const net::ObjectRef& ref : changes->upserted) {
    // A group's or an ACL's rules are not drawn (the picture shows names, members and subnets): a rule
    // added to an existing one leaves its VPC's picture, and its kernel check, as they are.
    const bool rulesOnly =
        (ref.kind == net::ObjectKind::SecurityGroup && topology_.findSecurityGroup(ref.name)) ||
        (ref.kind == net::ObjectKind::NetworkAcl && topology_.findNetworkAcl(ref.name));
    if (rulesOnly) continue;
    drawn = true;
    if (auto vpc = vpcOfObject(next, ref)) vpcRevisions_[*vpc] = topologyChanges_;
    if (auto vpc = peerVpcOfObject(next, ref)) vpcRevisions_[*vpc] = topologyChanges_;
  }
  for (const net::ObjectRef& ref : changes->deleted) {
    if (auto vpc = vpcOfObject(topology_, ref)) vpcRevisions_[*vpc] = topologyChanges_;
    if (auto vpc = peerVpcOfObject(topology_, ref)) vpcRevisions_[*vpc] = topologyChanges_;
  }
  topology_ = std::move(next);
  if (drawn) ++viewRevision_;
  return {};
}

Response Service::serve(const api::GetVpcTopology& request) {
  if (!network_) return errorResponse(unavailable("the network is not managed by this service"));
  // Only the instances' states: the rest of each NIC's picture is the network's own.
  nlohmann::json instances = instances_ ? instances_->statesJson() : nlohmann::json::object();
  addBalancerStatesLocked(instances);
  // A cluster host draws the other hosts' instances too (their NICs are in its network), each with the
  // host it runs on in place of a state this host does not know.
  if (clusterInstances_) {
    for (const auto& [name, remote] : clusterInstances_->remote())
      instances["instances"].push_back({{"name", name}, {"state", "on host " + remote.host}});
  }
  auto topology = network_->topologyJson(request.vpc, instances);
  // A cluster host adds the cluster itself: its hosts, their AZs and the tunnels between them.
  if (topology && cluster_ && cluster_->member()) {
    auto hosts = cluster_->hosts();
    (*topology)["cluster"] = hosts ? std::move(*hosts) : json{{"error", hosts.error().message()}};
  }
  return resultResponse(200, std::move(topology));
}

Result<FlowLogFilter> Service::flowLogFilter(const api::GetFlowLogs& request) {
  FlowLogFilter filter;
  int given = 0;
  for (const std::string* name : {&request.vpc, &request.subnet, &request.instance, &request.name})
    given += name->empty() ? 0 : 1;
  if (given > 1) {
    return fail(invalidField("name", "give at most one of vpc, subnet, instance and name"));
  }
  if (!request.action.empty()) {
    auto action = net::parseFlowAction(request.action);
    if (!action) return fail(action.error());
    filter.action = std::string(net::flowActionName(*action));
  }
  if (request.limit < 1 || request.limit > static_cast<int64_t>(kFlowLogsPerVpc)) {
    return fail(
        invalidField("limit", "limit must be between 1 and {}, got {}", kFlowLogsPerVpc, request.limit));
  }
  filter.newest = static_cast<size_t>(request.limit);
  // An instance, or a load balancer's NIC (LB.SUBNET.lb): its port's flows are recorded like an instance's.
  auto isInstance = [&](const std::string& name) {
    if (instances_ && instances_->stateOf(name).has_value()) return true;
    const auto owner = loadBalancerOfNic(name);
    const lb::LoadBalancer* balancer = owner ? balancers_.findLoadBalancer(*owner) : nullptr;
    if (!balancer) return false;
    return std::any_of(balancer->nics.begin(), balancer->nics.end(), [&](const lb::LoadBalancerNic& nic) {
      return balancerNicName(*owner, nic.subnet) == name;
    });
  };
  std::lock_guard lock(mutex_);
  if (!request.vpc.empty()) {
    if (!topology_.findVpc(request.vpc))
      return fail(Error(ErrorKind::NotFound, fmt::format("vpc \"{}\" does not exist", request.vpc), "vpc"));
    filter.vpc = request.vpc;
  } else if (!request.subnet.empty()) {
    if (!topology_.findSubnet(request.subnet))
      return fail(
          Error(ErrorKind::NotFound, fmt::format("subnet \"{}\" does not exist", request.subnet), "subnet"));
    filter.subnet = request.subnet;
  } else if (!request.instance.empty()) {
    if (!isInstance(request.instance))
      return fail(Error(ErrorKind::NotFound, fmt::format("instance \"{}\" does not exist", request.instance),
                        "instance"));
    filter.instance = request.instance;
  } else if (!request.name.empty()) {
    if (topology_.findVpc(request.name)) {
      filter.vpc = request.name;
    } else if (topology_.findSubnet(request.name)) {
      filter.subnet = request.name;
    } else if (isInstance(request.name)) {
      filter.instance = request.name;
    } else {
      return fail(Error(ErrorKind::NotFound,
                        fmt::format("\"{}\" is neither a vpc, a subnet nor an instance", request.name),
                        "name"));
    }
  }
  return filter;
}

Result<nlohmann::json> Service::flowLogRecords(const FlowLogFilter& filter) const {
  json records = json::array();
  if (!flowLogs_) return records;
  auto listed = flowLogs_->list(filter);
  if (!listed) return fail(std::move(listed.error()));
  for (const net::FlowRecord& record : *listed) records.push_back(net::flowRecordJson(record));
  return records;
}

Response Service::serveReach(const api::ReachAnalysis& request) {
  auto query = net::makeReachQuery(request.source, request.destination, request.protocol, request.port);
  if (!query) return errorResponse(query.error());
  Result<std::vector<net::ReachPath>> paths = [&] {
    std::lock_guard lock(mutex_);
    return network_ ? network_->reach(*query) : net::analyzeReach(topology_, {}, *query);
  }();
  if (!paths) return errorResponse(paths.error());
  std::vector<net::ProbeResult> probes;
  if (request.verify) {
    auto probed = probeReachPaths(*query, *paths);
    if (!probed) return errorResponse(probed.error());
    probes = std::move(*probed);
  }
  // On OVN, OVN's own verdict too: ovn-trace through the compiled logical flows (VMs included).
  std::vector<net::OvnTraceOutcome> traces;
  const bool traced = request.verify && network_ && network_->tracesOvn();
  if (traced) {
    auto outcomes = network_->ovnTrace(*paths, *query);
    if (!outcomes) return errorResponse(outcomes.error());
    traces = std::move(*outcomes);
  }
  json listed = json::array();
  bool all = true;
  bool agree = true;
  bool ovnAgree = true;
  for (size_t i = 0; i < paths->size(); ++i) {
    const net::ReachPath& path = (*paths)[i];
    all = all && path.reachable;
    json entry = toJson(path);
    if (request.verify) {
      const net::ProbeResult& probe = probes[i];
      const bool agrees = probe.verdict == net::ProbeVerdict::Undetermined ||
                          (probe.verdict == net::ProbeVerdict::Reached) == path.reachable;
      agree = agree && agrees;
      entry["kernel"] = {{"verdict", std::string(net::probeVerdictName(probe.verdict))},
                         {"detail", probe.detail},
                         {"agrees", agrees}};
    }
    if (traced) {
      const net::OvnTraceOutcome& trace = traces[i];
      const bool agrees = trace.delivered == path.reachable;
      ovnAgree = ovnAgree && agrees;
      entry["ovn"] = {
          {"verdict", trace.delivered ? "reached" : "blocked"}, {"detail", trace.detail}, {"agrees", agrees}};
    }
    listed.push_back(std::move(entry));
  }
  json answer = {{"source", request.source},
                 {"destination", request.destination},
                 {"protocol", request.protocol},
                 {"port", query->port ? json(*query->port) : json(nullptr)},
                 {"ephemeral_ports", {net::kEphemeralPorts.from, net::kEphemeralPorts.to}},
                 {"reachable", all},
                 {"paths", std::move(listed)}};
  if (request.verify) answer["kernel_agrees"] = agree;
  if (traced) answer["ovn_agrees"] = ovnAgree;
  return {200, std::move(answer)};
}

Result<std::vector<net::ProbeResult>> Service::probeReachPaths(const net::ReachQuery& query,
                                                               const std::vector<net::ReachPath>& paths) {
  // Each blocked path waits out its timeout: a bound on how long one request may take.
  constexpr size_t kMaxProbedPaths = 16;
  constexpr std::chrono::milliseconds kProbeTimeout{1500};
  if (paths.size() > kMaxProbedPaths) {
    return fail(invalidField("verify",
                             "--verify sends at most {} probes and this question has {} paths: name "
                             "instances rather than subnets",
                             kMaxProbedPaths, paths.size()));
  }
  struct Ends {
    UniqueFd from, to;
  };
  std::vector<Ends> ends;
  for (const net::ReachPath& path : paths) {
    if (path.sourceInstance.empty()) {
      return fail(invalidField("source",
                               "--verify sends probes between instances only: {} is outside every VPC, and a "
                               "probe from there would have to leave corral's namespaces",
                               path.source));
    }
    if (path.destinationInstance.empty()) {
      return fail(invalidField("destination",
                               "--verify sends probes between instances only: {} is outside every VPC, and a "
                               "probe to it would leave corral's namespaces",
                               path.destination));
    }
  }
  if (!instances_)
    return fail(unavailable("instances are not managed by this service: nothing to probe from"));
  for (const net::ReachPath& path : paths) {
    auto from = instances_->openNetworkNamespace(path.sourceInstance, "source");
    if (!from) return fail(from.error());
    auto to = instances_->openNetworkNamespace(path.destinationInstance, "destination");
    if (!to) return fail(to.error());
    ends.push_back({std::move(*from), std::move(*to)});
  }
  // ICMP echo identifiers, so that a reply is told from another probe's.
  static std::atomic<uint16_t> nextIcmpId{static_cast<uint16_t>(::getpid())};
  std::vector<net::ProbeResult> results;
  for (size_t i = 0; i < paths.size(); ++i) {
    auto probe = net::sendProbe({.protocol = query.protocol,
                                 .fromNetns = ends[i].from.get(),
                                 .fromAddress = std::nullopt,
                                 .toNetns = ends[i].to.get(),
                                 .address = paths[i].destinationAddress,
                                 .port = query.port.value_or(0),
                                 .listenPort = 0,
                                 .icmpId = nextIcmpId++,
                                 .timeout = kProbeTimeout});
    if (!probe) {
      return fail(std::move(probe.error())
                      .wrap(fmt::format("probe {} -> {}", paths[i].source, paths[i].destination)));
    }
    results.push_back(std::move(*probe));
  }
  return results;
}

json Service::vmInfo() {
  if (!instances_) return nullptr;
  const InstanceOptions& options = instances_->options();
  json libvirt = {{"uri", options.libvirtUri}};
  if (auto version = instances_->hypervisorVersion(); version) {
    libvirt["reachable"] = true;
    libvirt["version"] = *version;
  } else {
    libvirt["reachable"] = false;
    libvirt["error"] = version.error().message();
  }
  return {{"libvirt", std::move(libvirt)},
          {"accelerator", acceleratorJson()},
          {"engine", vmEngineModeName(options.vmEngine)},
          {"qemu_user",
           {{"mode", vmUserModeName(options.vmUser.mode)},
            {"name", options.vmUser.name},
            {"reason", options.vmUser.reason}}},
          {"vms_dir", options.vmsDir.string()},
          {"domain_prefix", options.domainPrefix}};
}

json Service::acceleratorJson() {
  if (!instances_) return nullptr;
  const InstanceOptions& options = instances_->options();
  AcceleratorStatus status = instances_->acceleratorStatus();
  json accelerator = {{"mode", acceleratorModeName(options.accelerator)},
                      {"state", acceleratorStateName(status.state)}};
  if (options.accelerator == AcceleratorMode::tcg) {
    accelerator["state"] = acceleratorStateName(AcceleratorState::decided);
    accelerator["name"] = "tcg";
    accelerator["reason"] = "chosen by corrald --accelerator tcg";
  } else if (status.choice) {
    accelerator["name"] = vmm::acceleratorName(status.choice->accelerator);
    accelerator["reason"] = status.choice->reason;
  } else {
    accelerator["name"] = nullptr;
    accelerator["reason"] = options.accelerator == AcceleratorMode::kvm
                                ? "chosen by corrald --accelerator kvm"
                            : status.state == AcceleratorState::probing ? "a probe boot under KVM is running"
                                                                        : "decided when the first VM starts";
  }
  return accelerator;
}

Response Service::serve(const api::GetInfo&) {
  HostInfo host = inspectHost();
  const KvmStatus& kvm = host.kvm;
  json kvmJson = {{"device", kvm.probe.device},
                  {"present", kvm.probe.present},
                  {"accessible", kvm.probe.accessible},
                  {"api_version", kvm.probe.apiVersion ? json(*kvm.probe.apiVersion) : json(nullptr)},
                  {"usable", kvm.usable},
                  {"reason", kvm.reason}};
  json namespaces = json::object();
  for (const auto& [ns, inode] : host.namespaces) namespaces[ns] = inode ? json(*inode) : json(nullptr);
  ObjectCounts n = countsLocked();
  json counts = {{api::collectionName(ObjectKind::Vpc), n.vpcs},
                 {api::collectionName(ObjectKind::Subnet), n.subnets},
                 {api::collectionName(ObjectKind::RouteTable), n.routeTables},
                 {api::collectionName(ObjectKind::InternetGateway), n.internetGateways},
                 {api::collectionName(ObjectKind::NatGateway), n.natGateways},
                 {api::collectionName(ObjectKind::SecurityGroup), n.securityGroups},
                 {api::collectionName(ObjectKind::NetworkAcl), n.networkAcls},
                 {api::collectionName(ObjectKind::Peering), n.peerings},
                 {"instances", instanceCount()}};
  return {200,
          {{"version", CORRAL_VERSION},
           {"api", "v1"},
           {"kernel", fmt::format("{} {}", host.kernelRelease, host.machine)},
           {"hostname", host.hostname},
           {"pid", ::getpid()},
           {"cgroup_mode", host.cgroupMode},
           {"host", {{"kernel_release", host.kernelRelease}, {"namespaces", std::move(namespaces)}}},
           {"kvm", std::move(kvmJson)},
           {"state", {{"path", store_.path()}, {"schema_version", store_.schemaVersion()}}},
           {"counts", std::move(counts)},
           {"image_dir", instances_ ? json(instances_->options().imageDir.string()) : json(nullptr)},
           {"vms", vmInfo()},
           {"network", network_ ? network_->infoJson() : json(nullptr)},
           {"dashboard",
            {{"url", dashboardUrl_ ? json(*dashboardUrl_) : json(nullptr)},
             {"socket_url", "http://corrald/ (curl --unix-socket, or ssh -L PORT:SOCKET)"}}}}};
}

void Service::setDashboardUrl(std::optional<std::string> url) {
  std::lock_guard lock(mutex_);
  dashboardUrl_ = std::move(url);
}

template <ObjectKind K>
Response Service::serve(const api::List<K>& request) {
  json items = json::array();
  for (const auto* object : KindOps<K>::all(topology_, request.vpc)) {
    items.push_back(KindOps<K>::render(topology_, *object));
  }
  return {200, {{api::collectionName(K), std::move(items)}}};
}

template <ObjectKind K>
Response Service::serve(const api::Get<K>& request) {
  return objectResponse<K>(200, topology_, request.name);
}

// 200 with {"deleted": the object as it was, plus "kind"}: the caller sees exactly what went away.
template <ObjectKind K>
Response Service::serve(const api::Delete<K>& request) {
  auto found = KindOps<K>::find(topology_, request.name);
  if (!found) return errorResponse(found.error());
  if (auto used = usedByLoadBalancerLocked(K, request.name)) return errorResponse(*used);
  json deleted = KindOps<K>::render(topology_, **found);
  auto done = commit([&](net::Topology& t) { return KindOps<K>::remove(t, request.name); });
  if (!done) return errorResponse(done.error());
  deleted["kind"] = net::objectKindName(K);
  deleted["name"] = request.name;
  return {200, {{"deleted", std::move(deleted)}}};
}

template <class Spec>
Response Service::serve(const api::Create<Spec>& request) {
  const int64_t now = changeTimeLocked();
  auto done = commit([&](net::Topology& t) { return CreateOps<Spec>::create(t, request.spec, now); });
  if (!done) return errorResponse(done.error());
  return objectResponse<CreateOps<Spec>::kind>(201, topology_, request.spec.name);
}

Response Service::serve(const api::UpdateSubnet& request) {
  auto done = commit([&](net::Topology& t) { return t.updateSubnet(request.name, request.update); });
  if (!done) return errorResponse(done.error());
  return objectResponse<ObjectKind::Subnet>(200, topology_, request.name);
}

// Rules and routes are parts of their parent: adding one answers 201 with the whole updated parent,
// removing one 200 with it.
Response Service::serve(const api::AddRoute& request) {
  auto done = commit([&](net::Topology& t) { return t.addRoute(request.table, request.spec); });
  if (!done) return errorResponse(done.error());
  return objectResponse<ObjectKind::RouteTable>(201, topology_, request.table);
}

Response Service::serve(const api::DeleteRoute& request) {
  auto done = commit([&](net::Topology& t) { return t.deleteRoute(request.table, request.destination); });
  if (!done) return errorResponse(done.error());
  return objectResponse<ObjectKind::RouteTable>(200, topology_, request.table);
}

Response Service::serve(const api::AddSecurityGroupRule& request) {
  auto done = commit([&](net::Topology& t) { return t.addSecurityGroupRule(request.group, request.spec); });
  if (!done) return errorResponse(done.error());
  return objectResponse<ObjectKind::SecurityGroup>(201, topology_, request.group);
}

Response Service::serve(const api::DeleteSecurityGroupRule& request) {
  auto done = commit([&](net::Topology& t) { return t.deleteSecurityGroupRule(request.group, request.id); });
  if (!done) return errorResponse(done.error());
  return objectResponse<ObjectKind::SecurityGroup>(200, topology_, request.group);
}

Response Service::serve(const api::AddNetworkAclRule& request) {
  auto done = commit([&](net::Topology& t) { return t.addNetworkAclRule(request.acl, request.spec); });
  if (!done) return errorResponse(done.error());
  return objectResponse<ObjectKind::NetworkAcl>(201, topology_, request.acl);
}

Response Service::serve(const api::DeleteNetworkAclRule& request) {
  auto done = commit([&](net::Topology& t) {
    return t.deleteNetworkAclRule(request.acl, request.direction, request.number);
  });
  if (!done) return errorResponse(done.error());
  return objectResponse<ObjectKind::NetworkAcl>(200, topology_, request.acl);
}

}  // namespace corral::daemon
