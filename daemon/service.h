// The daemon's request handler: owns the network model and its store, and answers every api::Request.
// A mutation is applied to a copy, persisted in one transaction, and only then made current.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "api/api.h"
#include "api/terminal.h"
#include "core/error.h"
#include "daemon/cluster.h"
#include "daemon/cluster_instances.h"
#include "daemon/flow_logs.h"
#include "daemon/groups.h"
#include "daemon/images_service.h"
#include "daemon/instances.h"
#include "daemon/load_balancer_processes.h"
#include "daemon/model_log.h"
#include "daemon/network.h"
#include "daemon/store.h"
#include "lb/model.h"
#include "net/probe.h"
#include "net/reach.h"
#include "net/vpc.h"

namespace corral::daemon {

struct Response {
  int status = 200;
  nlohmann::json body;
};

// An answer about load balancers or target groups: drawn from the model under the service's lock, then
// completed without it by what their HAProxies' stats sockets say (target health, firewall counters), so
// a slow or stuck HAProxy holds up its own answers only.
struct BalancerAnswer {
  struct StatsRead {
    nlohmann::json::json_pointer at;     // the object in response.body it completes
    std::vector<std::string> balancers;  // whose stats: the first that answers
    // Called with the stats read, or null when none answered.
    std::function<void(nlohmann::json&, const std::vector<lb::ProxyStat>*)> complete;
  };
  Response response;
  std::vector<StatsRead> reads;
};

// How often the dashboard's view takes new usage figures (and host facts) when nothing else changed, and
// how often its kernel check (each VPC's topology as the kernel holds it) is read again without a change.
inline constexpr std::chrono::seconds kDashboardUsageEvery{5};
inline constexpr std::chrono::seconds kDashboardKernelEvery{60};

// One view of the dashboard (GET /v1/dashboard's answer) and its number: a later view that differs in
// anything has a larger one.
struct DashboardView {
  uint64_t sequence = 0;
  std::shared_ptr<const nlohmann::json> body;
  // The body's "vpcs" entries, in its order, each kept by the Service until its VPC's part changes: an
  // entry here is the same object as in the view before unless that VPC was drawn again.
  std::vector<std::shared_ptr<const nlohmann::json>> vpcs;
};

// What a page holding `before` needs to reach `after` (GET /v1/dashboard/events' "dashboard-patch" event,
// docs/api.md): {"base", "sequence", "parts": the top-level members that differ (host, instances,
// comparison, generated_at_ms), "vpc_order": every VPC's name in order, "vpcs": the entries drawn again
// since `before` (the others the page keeps)}.
nlohmann::json dashboardPatch(const DashboardView& before, const DashboardView& after);

// A VPC's kept dashboard entry (NetworkController::topologyJson plus its "svg") brought from the member
// states `before` to `after` (name and state of each instance with a NIC in the VPC) without drawing it
// again: members gone are taken out with their port's link, members new or in another state are put in
// as `member(name, state)` gives them (NetworkController::memberTopologyJson: that port's link alone is
// read), each security group's members and the svg follow. Equal to drawing it again but for the port
// guards' counters (a member already drawn keeps its last reading, a new one has counted nothing) and the
// other ports' links, which keep their last reading until the whole drawing every 60 s. nullopt when a member
// does not fit the picture (its subnet or a group is not in it, or `member` failed): the caller draws the VPC
// whole.
using MemberStates = std::vector<std::pair<std::string, std::string>>;
std::optional<nlohmann::json> patchVpcEntry(
    const nlohmann::json& kept, const MemberStates& before, const MemberStates& after,
    const std::function<Result<nlohmann::json>(const std::string&, const std::string&)>& member);

// How many objects of each kind exist, for startup logs and GET /v1/info.
struct ObjectCounts {
  size_t vpcs = 0, subnets = 0, routeTables = 0, internetGateways = 0, natGateways = 0, securityGroups = 0,
         networkAcls = 0, peerings = 0;
};

class Service final : private TargetGroupSeam, private GroupFleet {
 public:
  // Loads the topology from `store`; fails if the stored state does not load or is inconsistent.
  // Also loads the instances and reattaches to the running ones.
  // Also loads the instances and reattaches to the running ones, then reconciles the kernel's network
  // with the state (net/vpc_datapath.h) and plugs running instances back in where their NIC went missing.
  static Result<std::unique_ptr<Service>> load(Store store, InstanceOptions instanceOptions = {},
                                               NetworkOptions networkOptions = {},
                                               GroupOptions groupOptions = {});

  Service(Store store, net::Topology topology) : store_(std::move(store)), topology_(std::move(topology)) {}
  Service(const Service&) = delete;
  Service& operator=(const Service&) = delete;

  // Safe to call from several threads at once: requests are served one at a time.
  Response handle(const api::Request& request);

  // This host's cluster membership (daemon/cluster.h), with --cluster-address; without it every cluster
  // request is refused.
  Status openCluster(ClusterOptions options);
  // The cluster's token for the peer port while this host is in a cluster (Cluster::peerToken).
  std::optional<std::string> clusterPeerToken() const;
  // Opens the image store (daemon/images_service.h); without it the image requests answer 503.
  Status openImages(ImageServiceOptions options);
  // Pull, import and build answer with a progress stream (daemon/http_server.cc): checked first (a bad
  // field is an ordinary error answer), then run with each progress event handed to `report`, until done
  // or `stop` (the client went away). handle() runs them too, without progress.
  static bool streams(const api::Request& request) { return ImageService::isOperation(request); }
  Status checkImageOperation(const api::Request& request);
  // Asks every running pull, import and build to stop (corrald is shutting down); does not wait.
  void stopImageOperations();
  Result<nlohmann::json> runImageOperation(const api::Request& request,
                                           const std::function<void(const api::ProgressEvent&)>& report,
                                           std::stop_token stop);

  // GET /v1/flow-logs: the request checked (the named VPC, subnet or instance exists; action and limit
  // valid) and turned into the store's filter; the records it wants as the API shows them; a number that
  // moves when records are stored. For the follow stream (daemon/http_server.cc), without the Service's
  // lock while it waits.
  Result<FlowLogFilter> flowLogFilter(const api::GetFlowLogs& request);
  Result<nlohmann::json> flowLogRecords(const FlowLogFilter& filter) const;
  uint64_t flowLogRevision() const { return flowLogs_ ? flowLogs_->revision() : 0; }
  static bool followsFlowLogs(const api::Request& request) {
    const auto* flows = std::get_if<api::GetFlowLogs>(&request);
    return flows != nullptr && flows->follow;
  }

  // An upgraded exec or console request (api/terminal.h): the program's stdio, for the connection to carry.
  Result<std::unique_ptr<StdioSession>> openTerminal(const api::TerminalTarget& target);

  // Where the dashboard's loopback port is (corrald --http-port), for GET /v1/info; nullopt: socket only.
  void setDashboardUrl(std::optional<std::string> url);

  // The dashboard's view, kept and shared by every page (GET /v1/dashboard and the event stream,
  // daemon/http_server.cc): built again when dashboardRevision() moved, its host and instance part when
  // older than kDashboardUsageEvery, all of it when older than kDashboardKernelEvery; else the kept one.
  DashboardView dashboard();
  // Differs after any change the dashboard shows apart from usage and the kernel check: the topology, a
  // comparison saved, an instance's name, state, address, start or boot. Cheap: neither the Service's lock
  // nor a kernel read.
  uint64_t dashboardRevision() const;

  ObjectCounts counts() const;
  size_t instanceCount() const { return instances_ ? instances_->count() : 0; }
  const std::string& statePath() const { return store_.path(); }

 private:
  // The instance at (VPC, private address) as its metadata shows it (daemon/instance_metadata.h).
  std::optional<MetadataIdentity> metadataIdentity(const std::string& vpc, const std::string& address);
  // One overload per request type; std::visit in handle() fails to compile if one is missing.
  Response serve(const api::GetInfo&);
  template <net::ObjectKind K>
  Response serve(const api::List<K>& request);
  template <net::ObjectKind K>
  Response serve(const api::Get<K>& request);
  template <net::ObjectKind K>
  Response serve(const api::Delete<K>& request);
  template <class Spec>
  Response serve(const api::Create<Spec>& request);
  Response serve(const api::UpdateSubnet& request);
  Response serve(const api::AddRoute& request);
  Response serve(const api::DeleteRoute& request);
  Response serve(const api::AddSecurityGroupRule& request);
  Response serve(const api::DeleteSecurityGroupRule& request);
  Response serve(const api::AddNetworkAclRule& request);
  Response serve(const api::DeleteNetworkAclRule& request);
  Response serve(const api::GetVpcTopology& request);
  // The analysis under mutex_; --verify's probes (up to a few seconds) without it.
  Response serveReach(const api::ReachAnalysis& request);
  // One real probe per path (net/probe.h), each from the source container's network namespace, with a
  // listener of its own in the destination's. Refused, before anything is sent, for an end outside the
  // VPCs (the probe would leave corral's namespaces), a VM, or too many paths.
  Result<std::vector<net::ProbeResult>> probeReachPaths(const net::ReachQuery& query,
                                                        const std::vector<net::ReachPath>& paths);
  Response serve(const api::SaveComparison& request);
  Response serve(const api::ListComparisons& request);
  Response serve(const api::GetComparison& request);
  Response serve(const api::GetDashboard& request);
  // Load balancers and target groups (daemon/load_balancers.cc), under mutex_; handle() completes their
  // answers' stats without it (completeStats).
  BalancerAnswer serveBalancer(const api::CreateLoadBalancer& request);
  BalancerAnswer serveBalancer(const api::ListLoadBalancers& request);
  BalancerAnswer serveBalancer(const api::GetLoadBalancer& request);
  BalancerAnswer serveBalancer(const api::DeleteLoadBalancer& request);
  BalancerAnswer serveBalancer(const api::AddListener& request);
  BalancerAnswer serveBalancer(const api::DeleteListener& request);
  BalancerAnswer serveBalancer(const api::AddListenerRule& request);
  BalancerAnswer serveBalancer(const api::DeleteListenerRule& request);
  BalancerAnswer serveBalancer(const api::AddFirewallRule& request);
  BalancerAnswer serveBalancer(const api::DeleteFirewallRule& request);
  BalancerAnswer serveBalancer(const api::CreateTargetGroup& request);
  BalancerAnswer serveBalancer(const api::ListTargetGroups& request);
  BalancerAnswer serveBalancer(const api::GetTargetGroup& request);
  BalancerAnswer serveBalancer(const api::DeleteTargetGroup& request);
  BalancerAnswer serveBalancer(const api::RegisterTargets& request);
  BalancerAnswer serveBalancer(const api::DeregisterTargets& request);
  void completeStats(BalancerAnswer& answer) const;
  // Instance requests run without mutex_ (the manager has its own lock, and a stop's grace wait or an exec
  // must not hold up other requests).
  Response serveInstance(const api::RunInstance& request);
  Response serveInstance(const api::ListInstances& request);
  Response serveInstance(const api::GetInstance& request);
  Response serveInstance(const api::StopInstance& request);
  Response serveInstance(const api::StartInstance& request);
  Response serveInstance(const api::RemoveInstance& request);
  Response serveInstance(const api::RemoveInstances& request);  // 200 with a result per name
  Response serveInstance(const api::GetInstanceLogs& request);
  Response serveInstance(const api::ExecInstance& request);
  // Blocks until the port answers, the instance ends or the timeout passes (up to 600 s).
  Response serveInstance(const api::WaitInstancePort& request);
  // Blocks for up to request.seconds while it captures, so it takes the same path (the target is resolved
  // under the network controller's lock, briefly; the capture holds no lock).
  Response serveInstance(const api::TraceCapture& request);
  Response serveInstance(const api::ListVmSnapshots& request);
  Response serveInstance(const api::RemoveVmSnapshot& request);
  // Group requests run without mutex_ (the controller has its own locks; removing members takes time).
  Response serveGroup(const api::CreateGroup& request);
  Response serveGroup(const api::ListGroups& request);
  Response serveGroup(const api::GetGroup& request);
  Response serveGroup(const api::RemoveGroup& request);
  Response serveGroup(const api::ScaleGroup& request);
  Response serveGroup(const api::GetGroupEvents& request);
  Response serveGroup(const api::SetGroupPolicy& request);
  // A group's subnets exist and share one VPC, its security groups and target group are in that VPC
  // (under mutex_).
  Status checkGroupSpec(const schema::GroupSpec& spec);
  // TargetGroupSeam, for the group controller's thread (each takes mutex_; daemon/load_balancers.cc).
  std::optional<std::string> unhealthyReason(const std::string& targetGroup,
                                             const std::string& instance) override;
  std::optional<TargetGroupSnapshot> snapshot(const std::string& targetGroup) override;
  Status registerTarget(const std::string& targetGroup, const std::string& instance) override;
  void deregisterEverywhere(const std::vector<std::string>& instances) override;
  // Cluster requests run without mutex_ (the cluster has its own locks; a join waits for etcd to start).
  Response serveCluster(const api::InitCluster& request);
  Response serveCluster(const api::JoinCluster& request);
  Response serveCluster(const api::ListClusterHosts& request);
  Response serveCluster(const api::GetClusterToken& request);
  Response serveCluster(const api::UpdateClusterHost& request);
  Response serveCluster(const api::LeaveCluster& request);
  // Conflict when this host has VPCs (a host inits or joins a cluster with none).
  Status checkNoVpcs(std::string_view action) const;
  // Conflict naming `instances` or `load_balancers` while this host has any in the cluster's VPCs (a host
  // leaves a cluster with none).
  Status checkNothingInClusterVpcs();
  // Image requests run without mutex_ too (the store has its own lock; a pull takes minutes).
  Response serveImage(const api::ListImages& request);
  Response serveImage(const api::GetImage& request);
  Response serveImage(const api::RemoveImage& request);
  Response serveImage(const api::PullImage& request);
  Response serveImage(const api::ImportImage& request);
  Response serveImage(const api::BuildImage& request);

  // Runs `operation` on a copy of the topology, persists what it touched and makes the copy current.
  // On any failure neither memory nor disk changes. On a cluster host (modelLog_) the change is appended to
  // the cluster's model log first (modelEntry_), or is the entry being applied (replaying_).
  template <class Operation>
  Status commit(Operation&& operation);

  // ---- The cluster's shared model (daemon/model_log.h), under mutex_ ----
  // A request of a cluster host: a change of the model is appended to the log (after the entries before it
  // are applied here and the change is checked against them), a read is answered once the copy here has
  // caught up (or from the copy as it is when the store does not answer).
  template <class Typed>
  Response serveSharedLocked(const Typed& typed, const api::Request& request);
  // Applies the log's entries this host has not applied yet, in order (the log's snapshot first when the
  // entries after this host's were compacted), then recordAppliedLocked.
  Status catchUpLocked();
  // Makes the log's snapshot this host's copy: the store's model tables and the number applied in one
  // transaction, then the model in memory and the network.
  Status loadSnapshotLocked(const ModelSnapshot& snapshot);
  // Records the entry applied here in the cluster store and, once the log holds more than
  // --cluster-model-compact entries past its snapshot, tries to compact it (ModelLog::compact). Failures
  // are logged: the next change tries again.
  void recordAppliedLocked();
  // The wall-clock seconds of the change being made: the entry's when it is one of the log's.
  int64_t changeTimeLocked() const;
  // Starts (a member) or stops (not one) following the cluster's model log and the cluster's instances
  // (clusterInstances_), after open, init, join, leave.
  void followModel();
  // Once both are read (the model caught up, every instance seen), the network writes OVN's rows again
  // (NetworkController::endClusterWait; a no-op unless it waited).
  void endClusterWaitLocked();

  // ---- Instance work across the cluster's hosts (daemon/service_cluster.cc), without mutex_ ----
  // nullopt: this host serves it. Otherwise the answer of the host that does (the request forwarded to its
  // peer API), or why it cannot be.
  std::optional<Response> forwardInstance(const api::RunInstance& request);
  std::optional<Response> forwardInstance(const api::ListInstances& request);
  std::optional<Response> forwardInstance(const api::RemoveInstances& request);
  template <class Typed>
  std::optional<Response> forwardInstance(const Typed& typed);
  // Where a new instance runs: its --host, else a host of its subnet's availability zone (this one when it
  // is one, else the one with the fewest instances), else this host. The host's entry of `cluster ls`.
  Result<nlohmann::json> placeInstance(const schema::InstanceSpec& spec);
  // The request sent to that host's peer API, its answer as it came.
  Response forwardTo(const nlohmann::json& host, const api::Request& request);
  // The host named so in `cluster ls` (an error naming it otherwise).
  Result<nlohmann::json> clusterHost(const std::string& name);

  // ---- Groups across the cluster's hosts (daemon/service_cluster.cc), without mutex_ ----
  // A group is kept by the host it was created on (its controller launches, counts and replaces its
  // members); its name is claimed in the cluster store, /corral/groups/NAME = {"host"}, so any host can
  // forward a request for it. nullopt: this host serves it.
  template <class Typed>
  std::optional<Response> forwardGroup(const Typed& request);
  std::optional<Response> forwardGroup(const api::CreateGroup& request);
  std::optional<Response> forwardGroup(const api::ListGroups& request);
  std::optional<Response> forwardGroup(const api::RemoveGroup& request);
  // Whether this host is in a cluster now (clusterInstances_ under fleetMutex_).
  bool clustered();
  // The host holding group `name` in the cluster store; nullopt when none does.
  Result<std::optional<std::string>> groupOwner(const std::string& name);
  // Every group of the cluster and the host that has it.
  Result<std::map<std::string, std::string>> clusterGroups();
  // A member of another host's group, placed here by that host (spec.host is this host).
  bool placedMemberHere(const schema::InstanceSpec& spec);
  // GroupFleet, for the group controller's thread: this host's instances on a single host; on a cluster
  // host, members placed by AZ through placeInstance/forwardTo and counted on every host (another host's
  // members read from its peer API each pass; a lost or silent host's are lost).
  std::vector<InstanceManager::GroupMember> members(const std::set<std::string>& groups) override;
  bool canLaunchIn(const std::string& subnet) override;
  Result<nlohmann::json> run(const schema::InstanceSpec& spec) override;
  Result<std::vector<Result<nlohmann::json>>> remove(const std::vector<std::string>& names) override;
  std::optional<InstanceState> stateOf(const std::string& name) override;
  std::vector<std::string> othersGroups() override;
  // The group's claim names this host and carries its row; the first live host by name takes over the
  // groups of lost hosts (the claim's revision decides a race).
  Hold hold(const GroupRow& row) override;
  std::vector<TakenOver> takeOver() override;

  // The same for the load balancers: a copy changed, persisted in one transaction, then made current.
  template <class Operation>
  Status commitBalancers(Operation&& operation);
  // Which VPCs each instance has a NIC in, and each instance's address (the first NIC's), for target groups.
  lb::InstancePlacement placementLocked() const;
  std::map<std::string, std::string> targetAddressesLocked() const;
  // The JSON at `at` in `answer`'s body, its stats read asked for (BalancerAnswer).
  void loadBalancerJsonLocked(const lb::LoadBalancer& balancer, BalancerAnswer& answer,
                              const nlohmann::json::json_pointer& at) const;
  void targetGroupJsonLocked(const lb::TargetGroup& group, BalancerAnswer& answer,
                             const nlohmann::json::json_pointer& at) const;
  // An answer holding just that one (with its status).
  BalancerAnswer loadBalancerAnswerLocked(int status, const lb::LoadBalancer& balancer) const;
  BalancerAnswer targetGroupAnswerLocked(int status, const lb::TargetGroup& group) const;
  // Why `kind` `name` cannot be deleted while a load balancer uses it (a VPC, subnet or security group).
  std::optional<Error> usedByLoadBalancerLocked(net::ObjectKind kind, std::string_view name) const;
  // A load balancer's NIC in `subnet` is kept by the network like an instance's, under this name (never an
  // instance's: '.' is not allowed in instance names).
  static std::string balancerNicName(std::string_view balancer, std::string_view subnet);
  // Reserves one NIC per subnet of `balancer` (addresses from IPAM, its security group, a public address
  // when internet-facing and the subnet reaches an internet gateway); `reserved` collects the names given
  // back on failure by the caller. Empty without a network.
  Result<std::vector<lb::LoadBalancerNic>> reserveBalancerNicsLocked(const lb::LoadBalancer& balancer,
                                                                     std::vector<std::string>& reserved);
  // Brings the load balancer's HAProxy (its NICs, its configuration) to the model; a failure is logged and
  // shown in its "process" (the model change stands).
  void syncBalancerLocked(const std::string& name);
  // At load: NICs restored (or reserved for load balancers stored without), leftovers reconciled, every
  // load balancer run.
  void restoreBalancerNics();
  void startBalancers();
  // Instances removed: deregistered from every target group (Balancers::forgetInstance), HAProxy told.
  void forgetInstances(const std::vector<std::string>& names);
  // Each load balancer NIC's state (its HAProxy's: running, starting, failed, configured) added to the
  // members' states ({"instances": [{"name", "state"}]}) that the topology and the dashboard draw from.
  void addBalancerStatesLocked(nlohmann::json& states) const;
  // What a load balancer's JSON shows of its running HAProxy: its state now, and a stats read for target
  // health and firewall counters.
  void addRuntimeJsonLocked(const lb::LoadBalancer& balancer, nlohmann::json& out, BalancerAnswer& answer,
                            const nlohmann::json::json_pointer& at) const;

  ObjectCounts countsLocked() const;
  DashboardView dashboardLocked();
  nlohmann::json dashboardHostLocked();
  // Every VPC's entry, each drawn again only when its own part moved (topology objects of that VPC, its
  // NICs, its members' states) or its kernel check is older than kDashboardKernelEvery.
  std::vector<std::shared_ptr<const nlohmann::json>> dashboardVpcsLocked(
      std::chrono::steady_clock::time_point now);
  Result<nlohmann::json> dashboardComparisonLocked();
  nlohmann::json vmInfo();           // libvirt reachability and the accelerator, for GET /v1/info
  nlohmann::json acceleratorJson();  // {"mode", "state", "name", "reason"}

  mutable std::mutex mutex_;
  std::optional<std::string> dashboardUrl_;
  // Moved by every committed topology change and saved comparison (dashboardRevision()).
  std::atomic<uint64_t> viewRevision_{0};
  struct KeptDashboard {
    uint64_t revision = 0;
    std::chrono::steady_clock::time_point builtAt, usageAt;
    DashboardView view;
  };
  std::optional<KeptDashboard> dashboard_;  // under mutex_
  // What a VPC's dashboard entry was drawn from: the moment its part of the model, its NICs or its
  // members' states last moved, so an unchanged VPC is not drawn (nor its kernel read) again.
  struct VpcInputs {
    uint64_t topology = 0;
    uint64_t nics = 0;
    MemberStates memberStates;
    bool operator==(const VpcInputs&) const = default;
  };
  struct KeptVpc {
    VpcInputs inputs;
    std::chrono::steady_clock::time_point builtAt;
    std::shared_ptr<const nlohmann::json> entry;
  };
  std::map<std::string, KeptVpc, std::less<>> keptVpcs_;       // under mutex_
  std::map<std::string, uint64_t, std::less<>> vpcRevisions_;  // by VPC: moved by commits touching it
  uint64_t topologyChanges_ = 0;
  Store store_;
  net::Topology topology_;
  lb::Balancers balancers_;  // under mutex_
  // Reads every VPC's namespace for flow logs (null without Service::load, or when the kernel is not
  // managed); declared before network_, which refers to it, so it is destroyed after.
  std::unique_ptr<FlowLogs> flowLogs_;
  // Null without Service::load (unit tests): then the model alone changes, no kernel object.
  std::unique_ptr<NetworkController> network_;
  // A cluster host's instances in the cluster store (followModel); null otherwise. Declared before
  // instances_, which claims through it, so it is destroyed after.
  std::unique_ptr<ClusterInstances> clusterInstances_;
  // Held (shared) while the group controller's thread reads clusterInstances_, (unique) while followModel
  // replaces it.
  std::shared_mutex fleetMutex_;
  // Declared after store_ and network_: it refers to them, so it is destroyed first. Null without
  // Service::load.
  std::unique_ptr<InstanceManager> instances_;
  // One HAProxy per load balancer (daemon/load_balancer_processes.h); null without Service::load, when the
  // kernel is not managed or no load balancer directory is set: then load balancers are kept as a model.
  std::unique_ptr<LoadBalancerProcesses> balancerProcesses_;
  // Declared after instances_ and balancerProcesses_, destroyed before them: its thread launches and
  // removes instances and registers them in target groups. Null without Service::load.
  std::unique_ptr<GroupController> groups_;
  // Declared after instances_, destroyed before it: stops the instance metadata listeners, whose lookups
  // (metadataIdentity) read instances_.
  struct MetadataStop {
    NetworkController* network = nullptr;
    ~MetadataStop() {
      if (network) network->stopMetadata();
    }
  } metadataStop_;
  // Declared last, destroyed first: its destructor stops and waits for running pulls, imports and builds.
  std::unique_ptr<ImageService> images_;
  // Destroyed before instances_, whose count it reads. Null without --cluster-address.
  std::unique_ptr<Cluster> cluster_;
  // The cluster's model log while this host is in a cluster (followModel); destroyed first: its watch
  // thread applies entries through this object. Replaced without mutex_ held (its thread takes it).
  std::unique_ptr<ModelLog> modelLog_;
  uint64_t modelApplied_ = 0;             // under mutex_: the last entry applied here
  std::optional<ModelEntry> modelEntry_;  // under mutex_: the entry of the change being made or applied
  bool replaying_ = false;                // under mutex_: applying another host's entry
  bool modelRaced_ = false;               // under mutex_: the entry's number was taken by another host
  uint64_t modelRecorded_ = 0;            // under mutex_: the applied number last recorded in the store
  uint64_t modelSnapshotThrough_ = 0;     // under mutex_: the log's snapshot as last seen
  uint64_t modelCompactTried_ = 0;        // under mutex_: modelApplied_ at the last attempt that waited
};

// An error as the API shows it: its kind's status and {"error": {...}}.
Response errorResponse(const Error& error);

}  // namespace corral::daemon
