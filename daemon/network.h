// The daemon's network: keeps the kernel (one namespace per VPC, bridges, routes, gateways, the nft table)
// in step with the VPC model and the instances' NICs. The Service hands it every topology change before
// persisting it, the InstanceManager every NIC an instance gets, plugs in or gives back. It owns the IP
// addresses: private ones per subnet (IPAM with AWS's reservations), public ones and the gateways' transit
// networks from the uplink pools.
//
// Lock order: Service's and InstanceManager's locks may be held when calling in; this class never calls
// out to them.
#pragma once

#include <sys/types.h>

#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "container/spec.h"
#include "core/error.h"
#include "daemon/flow_logs.h"
#include "daemon/instance_metadata.h"
#include "daemon/lifecycle.h"
#include "daemon/ovn_fabric.h"
#include "daemon/vpc_resolvers.h"
#include "net/datapath.h"
#include "net/ipam.h"
#include "net/ovn_trace.h"
#include "net/reach.h"
#include "net/vpc.h"
#include "net/vpc_ovn.h"

namespace corral::daemon {

struct NetworkOptions {
  std::string netnsPrefix{net::kDefaultNetnsPrefix};
  net::UplinkSettings uplink;
  // Off (the default, so that a Service made in a unit test can never touch the host's network): the
  // model is kept, nothing touches the kernel. corrald turns it on.
  bool kernel = false;
  // The VPC resolvers (daemon/vpc_resolvers.h), run with the kernel only: where their files go (empty:
  // no resolvers), the dnsmasq binary, and the uplink's resolver that outside names are forwarded to
  // (none: refused everywhere).
  std::string resolverDir;
  std::string dnsmasq = "dnsmasq";
  std::optional<std::string> upstreamResolver;
  // The load balancers' HAProxies (daemon/load_balancer_processes.h), run with the kernel only: where their
  // files go (empty: load balancers are a model only) and the haproxy binary.
  std::string loadBalancerDir;
  std::string haproxy = "haproxy";
  // The flow logs' capture sockets' receive buffer in bytes (daemon/flow_logs.h), with the kernel only.
  int flowLogBuffer = net::kFlowCaptureBuffer;
  // The OVN backend (daemon/ovn_fabric.h), with the kernel only: VPCs become rows of OVN's northbound
  // database and NICs ports of this host's br-int, instead of namespaces, bridges and nftables. What it
  // does not carry yet is refused with a clear error: VMs, load balancers, peerings, VPC resolvers, flow
  // logs, trace and reach.
  std::optional<OvnFabricOptions> ovn;
  // The internet gateways on OVN: the chassis (an ovn-controller's system-id) that carries them and the
  // physical network it maps to the outside (ovn-bridge-mappings). Empty: internet gateways are refused.
  std::string ovnGatewayChassis;
  std::string ovnOutsideNetwork;
  // A cluster host starting again (corrald --cluster-address with a membership in its state): OVN's rows
  // are the whole cluster's, and this host's copy may lack VPCs and instances made while it was down, so
  // nothing is written to the northbound database until endClusterWait() (the copy caught up).
  bool ovnAwaitCluster = false;
};

// A load balancer's NIC in a subnet is kept like an instance's, under "BALANCER.SUBNET.lb" ('.' is never in
// an instance's name): views show it as the load balancer's (kind "load-balancer"), not as an instance.
std::string loadBalancerNicName(std::string_view balancer, std::string_view subnet);
// The load balancer a NIC name belongs to; nullopt for an instance's.
std::optional<std::string> loadBalancerOfNic(std::string_view nic);

// Where `corral trace` captures: a subnet's bridge, an instance's port or a load balancer NIC's port, in
// its VPC's namespace.
enum class CaptureKind { subnet, instance, loadBalancer };
// "subnet", "instance", "load-balancer": the trace answer's target.kind
std::string_view captureKindName(CaptureKind kind);

struct CaptureTarget {
  CaptureKind kind = CaptureKind::subnet;
  std::string name;
  std::string vpc;
  std::string netns;
  std::string link;
};

// Where corrald itself reaches an instance: from its VPC's router namespace to the NIC's address. The
// router sits on every subnet's bridge and its own traffic passes no security group (net/nft.cc), so this
// is one path, the same for a container and a VM.
struct RouterPath {
  std::string netns;
  std::string address;
};

class NetworkController {
 public:
  NetworkController(NetworkOptions options, net::Topology topology);
  // Stops answering the flow logs' questions (they outlive this object).
  ~NetworkController();
  NetworkController(const NetworkController&) = delete;
  NetworkController& operator=(const NetworkController&) = delete;

  const NetworkOptions& options() const { return options_; }

  // ---- Topology ----
  // Whether `next` still fits the NICs: their subnets and security groups must exist. Conflict naming the
  // instances otherwise ("subnet web still has instances web-1, web-2: remove them first").
  Status checkTopology(const net::Topology& next) const;
  // Checks `next` (as above), makes the kernel match it (converges every VPC, destroys the namespaces of
  // deleted VPCs) and makes it current. On failure the kernel is converged back to the current topology and
  // nothing changes.
  Status applyTopology(const net::Topology& next);

  // ---- NICs ----
  // Validates the instance's network fields against the model (subnet, ip inside it and free, security
  // groups of the subnet's VPC, publish needs an internet gateway, ports), allocates its addresses and
  // records the NIC; the firewall learns it at once. Returns the NIC with the assigned addresses (the
  // caller writes them back into the spec). No subnet in the spec: nullopt, nothing recorded.
  Result<std::optional<net::NicAttachment>> reserveNic(const schema::InstanceSpec& spec,
                                                       const std::string& linkKey);
  // A NIC loaded from the store at startup (addresses as assigned then); no kernel change yet.
  Status restoreNic(const schema::InstanceSpec& spec, const std::string& linkKey);
  // Another cluster host's instance (daemon/cluster_instances.h): its NIC as restoreNic records it, and its
  // VPC's rules (on OVN: its logical port) updated at once. Its port is the other host's. releaseNic
  // forgets it again.
  Status adoptNic(const schema::InstanceSpec& spec, const std::string& linkKey);
  // The instance is gone: its addresses return to the pools and its port and rules go. Unknown: no-op.
  void releaseNic(const std::string& instance);
  // The same for many instances (`corral rm -f a b c`, a group scaling in): one firewall change per VPC.
  // Unknown names are skipped. An error (the kernel refused even a full converge) is logged by the caller;
  // the NICs are released in the model either way, and reconcile() at start repairs the kernel.
  Status releaseNics(const std::vector<std::string>& instances);
  std::optional<net::NicAttachment> nic(const std::string& instance) const;
  // The NIC as the kernel needs it (link, bridge, MAC, address/prefix, gateway).
  Result<net::NicPlan> nicPlan(const std::string& instance) const;
  // What every VM NIC's device is made with on this backend (nicPlan's mtu and offloads): known before a
  // NIC is reserved, so a warm VM's snapshot is made with the device its restore will plug in.
  net::NicProfile vmNicProfile() const;

  // Plugging in (container: a veth into the process's namespace, before it runs; VM: QEMU's tap, while
  // the guest is paused) and out (after it stopped: deletes the port if the kernel has not already).
  Status attachContainer(const std::string& instance, pid_t pid);
  // `qemuPid`: QEMU's, whose namespace holds the tap (libvirtd's, for the libvirt engine); none: corrald's.
  Status attachVm(const std::string& instance, std::optional<pid_t> qemuPid = std::nullopt);
  void detach(const std::string& instance);
  // A load balancer's NIC (`instance`: loadBalancerNicName) into the namespace at `netnsPath` as `ifname`
  // (LoadBalancerProcesses): a veth port of the subnet's bridge (net::attachNamespaceNic), or on OVN a
  // br-int port bound to its logical port (OvnFabric::attachNamespace; it goes when the NIC is released).
  Status attachNamespaceNic(const std::string& instance, const std::string& netnsPath,
                            const std::string& ifname, bool defaultRoute,
                            std::optional<uint32_t> sourceTable);
  // The path to the instance's address (RouterPath); Conflict when it has no NIC or the kernel is not
  // managed.
  Result<RouterPath> routerPathTo(const std::string& instance) const;
  // Whether the instance's port exists in its VPC's namespace (after a daemon restart).
  bool portPresent(const std::string& instance) const;
  // What its port guard dropped ({"mac": N, "ip": N, "arp": N, "other": N}, docs/api.md); null without a
  // NIC, when the kernel is not managed or the counters cannot be read.
  nlohmann::json spoofDropsJson(const std::string& instance) const;
  // The instances with a NIC in each VPC, by VPC, and a number per VPC that moves whenever a NIC joins or
  // leaves it (the dashboard rebuilds a VPC's picture only when its part changed).
  std::map<std::string, std::vector<std::string>, std::less<>> instancesByVpc() const;
  uint64_t nicRevision(std::string_view vpc) const;
  // For a listing: every NIC in an existing subnet, by instance, as nicPlan() answers for it, with each
  // planned from its subnet alone (no VPC plan). No kernel read.
  std::map<std::string, net::NicPlan, std::less<>> nicPlans() const;

  // ---- Startup and views ----
  // Converges every VPC of the model (recreating what is missing) and removes namespaces of this prefix
  // that the model does not know; everything it did is logged and returned.
  std::vector<std::string> reconcile();
  // The copy of the cluster's model and instances caught up (ovnAwaitCluster): from now on the VPCs'
  // rows are written, and every VPC is reconciled as reconcile() does. A no-op when not waiting.
  std::vector<std::string> endClusterWait();
  // A host joining a cluster (on OVN): as at a member's start (ovnAwaitCluster), no row is written until
  // endClusterWait(): its copy of the model (the snapshot, the entries) lacks the other hosts' NICs until
  // it has read them, and converging without them would delete their logical ports.
  void beginClusterWait();
  // A host leaving its cluster (Service::serveCluster(LeaveCluster)): the model becomes empty and every NIC
  // it knows (the other hosts', adopted; this host has none left) is forgotten. On OVN no row is written
  // or deleted: the VPCs' rows are the cluster's. On the nftables backend the VPCs' namespaces are this
  // host's own and go as applyTopology does.
  Status forgetModel();
  // Whether this host is a cluster member (Service::followModel): its VPCs' rows are marked as a cluster's
  // (net::kOvnScopeKey), and it removes unknown VPCs' rows only among those so marked.
  void setClusterScope(bool cluster);
  // GET /v1/vpcs/NAME/topology (docs/api.md); `instances` is GET /v1/instances's list, for their state.
  Result<nlohmann::json> topologyJson(const std::string& vpc, const nlohmann::json& instances) const;
  // One instance's part of topologyJson, for patching a kept picture when its NIC joins or its state
  // changes (the dashboard), O(1) in the VPC's size: {"subnet": NAME, "member": its entry in that subnet's
  // "instances", as topologyJson draws it, "link": its port in the kernel's "links", null when absent}.
  // Its port's link alone is read, not the VPC's links; its guard's counters are not read ("spoof_drops"
  // all 0, as a port that just joined has them; null when the kernel is not managed). NotFound without a
  // NIC.
  Result<nlohmann::json> memberTopologyJson(const std::string& instance, const std::string& state) const;
  nlohmann::json infoJson() const;  // for GET /v1/info
  // On the OVN backend: this host's chassis and its tunnels (OvnFabric::chassis); nullopt on nftables.
  std::optional<Result<net::OvsChassis>> ovnChassis() const;
  bool onOvn() const { return ovn_ != nullptr; }
  // `corral reach`: the reachability analyzer (net/reach.h) over the current model and every NIC. No kernel
  // read: the answer is what the model says the kernel does.
  Result<std::vector<net::ReachPath>> reach(const net::ReachQuery& query) const;
  // On OVN with a southbound database (corrald --ovn-southbound): whether reach --verify also asks OVN.
  bool tracesOvn() const;
  // OVN's verdict on each path between two instances, from ovn-trace's legs (net/ovn_trace.h): the first
  // leg not delivered decides (named in the detail). The paths' ends must be instances with a NIC.
  Result<std::vector<net::OvnTraceOutcome>> ovnTrace(const std::vector<net::ReachPath>& paths,
                                                     const net::ReachQuery& query) const;

  // The VPC's resolver processes (VpcResolvers::statusJson); null when corrald runs none.
  nlohmann::json resolverJson(const std::string& vpc) const;

  // ---- Flow logs (daemon/flow_logs.h) ----
  // Who reads each VPC's namespace for flow logs; set before reconcile(), which then starts reading
  // every VPC (and every new VPC's after, with the NICs as they come and go). Must outlive this object.
  void setFlowLogs(FlowLogs* flowLogs);
  // What allowed each accepted flow of `vpc`, by the model as it is now (net::flowAllowedBy; the
  // analyzer's rule matching): fills each record's allowedBy from its connection. FlowLogs asks it.
  void explainAcceptedFlows(const std::string& vpc, std::vector<net::FlowRecord*>& accepted) const;
  // Which VPC the name is, for GET /v1/flow-logs: a VPC of that name, else the VPC of a subnet of that
  // name; nullopt when neither.
  std::optional<std::string> vpcOfSubnet(const std::string& subnet) const;

  // ---- Instance metadata (daemon/instance_metadata.h) ----
  // Who answers for the instances' other fields (the Service: hostname, user data); set before
  // reconcile(), which then listens at 169.254.169.254 in every VPC namespace (and every new VPC's after).
  void setMetadataLookup(MetadataLookup lookup);
  // The network's part of an instance's metadata (name, addresses, MAC, groups, zone) by (VPC, private
  // address); nullopt when no NIC of that VPC has it.
  std::optional<MetadataIdentity> metadataIdentity(const std::string& vpc, const std::string& address) const;
  // Closes the listeners and stops answering (before what the lookup reads goes away).
  void stopMetadata();
  // `corral trace NAME`: a subnet of that name (its bridge), else an instance (its port; Conflict unless
  // it is running with a NIC). `instanceState` is the state of the instance of that name, if there is
  // one. NotFound naming the field "target" when it is neither; Unavailable when the kernel is not managed.
  Result<CaptureTarget> captureTarget(const std::string& name,
                                      std::optional<InstanceState> instanceState) const;

 private:
  Status checkLocked(const net::Topology& next) const;
  // The OVN backend's side of the same (ovn_ set): what it does not carry refused, the plan of one VPC,
  // converging it, and a topology change.
  Status checkOvnLocked(const net::Topology& next) const;
  Result<net::OvnVpcPlan> ovnPlanLocked(const net::Topology& topology, const std::string& vpc) const;
  Status convergeOvnLocked(const net::Topology& topology, const std::string& vpc,
                           std::vector<std::string>* changes = nullptr);
  Status applyTopologyOvnLocked(const net::Topology& next);
  std::vector<std::string> reconcileOvnLocked();
  // updatePeersLocked on OVN: each peer of `vpc` whose plan differs from what was applied converges.
  void updateOvnPeersLocked(const std::string& vpc);
  // On OVN, the br-int ports of the load balancer NICs among `gone` (an instance's goes with detach()).
  void unplugOvnBalancerNicsLocked(const std::vector<net::NicAttachment>& gone);
  Result<net::VpcPlan> planLocked(const net::Topology& topology, const std::string& vpc) const;
  // Whether `vpc` plans the same in `next` as now (so the change leaves its kernel objects alone).
  bool planUnchangedLocked(const net::Topology& next, const std::string& vpc) const;
  Status convergeLocked(const net::Topology& topology, const std::string& vpc,
                        std::vector<std::string>* log = nullptr);
  Status convergePlanLocked(const net::VpcPlan& plan, std::vector<std::string>* log = nullptr);
  // Brings `vpc`'s kernel objects to `topology` + the NICs: when only the firewall differs from what was
  // last applied (NICs, security groups, network ACLs), as one nft delta; otherwise (links, routes, the
  // gateway, or nothing applied yet) by a full converge. A delta nft refuses (drift) falls back to the
  // full converge.
  Status updateLocked(const net::Topology& topology, const std::string& vpc);
  // The incremental planner's fast paths, O(change) rather than O(NICs in the VPC); each falls back to
  // updateLocked (the whole plan) when its change does not fit, and a delta nft refuses converges the VPC
  // whole:
  // - NICs (already recorded in, or already dropped from, nics_) joining or leaving `vpc`: their parts of
  //   both tables (net::addPartDelta / removePartDelta) as one nft transaction. A public address is a route
  //   on the uplink side: the whole path.
  Status changeNicsLocked(const std::string& vpc, const std::vector<net::NicAttachment>& nics, bool joining);
  // - `next` differs from the current model in `vpc`'s security groups, their rules or network ACLs only
  //   (links, routes and the gateway plan the same without NICs): net::vpcFirewallRulesDelta. nullopt when
  //   it does not apply.
  std::optional<Status> updateRulesLocked(const net::Topology& next, const std::string& vpc);
  // planVpc without NICs: the links, routes and gateway (without public addresses) of `vpc`, O(model).
  Result<net::VpcPlan> skeletonLocked(const net::Topology& topology, const std::string& vpc) const;
  // planVpc of `vpc` with these NICs (and its transit network when it has an internet gateway).
  Result<net::VpcPlan> planWithLocked(const net::Topology& topology, const std::string& vpc,
                                      const std::vector<net::NicAttachment>& nics) const;
  // The NIC's plan and its VPC's namespace, from the NIC and its subnet alone (no VPC plan).
  struct PlannedNic {
    net::NicPlan nic;
    std::string netns;
  };
  std::optional<PlannedNic> planNicLocked(const std::string& instance) const;
  // A member's entry in topologyJson's subnet "instances" (its groups: the VPC's default when it lists none).
  nlohmann::json memberJsonLocked(const net::NicPlan& nic, const std::string& state,
                                  nlohmann::json spoofDrops) const;
  Result<net::Cidr> transitLocked(const net::Topology& topology, const std::string& vpc) const;
  std::vector<net::NicAttachment> nicsLocked() const;
  void nicsChangedLocked(const std::string& subnet);
  // nics_ changes only through these two, which keep byCombination_ and ipams_ in step.
  void addNicLocked(const net::NicAttachment& nic);
  void eraseNicLocked(const std::string& instance);
  // The subnet's pool with its NICs' addresses taken (made on first use); nullptr for a subnet not in the
  // model.
  net::SubnetIpam* ipamLocked(const std::string& subnet);
  // One NIC of each combination of listed security groups among `vpc`'s NICs (O(subnets + combinations)).
  std::vector<net::NicAttachment> standsLocked(const std::string& vpc) const;
  const net::Subnet* nicSubnetLocked(const std::string& instance) const;
  // The NICs of the VPCs peered with `vpc` (members of groups its rules may name).
  std::vector<net::NicAttachment> peerNicsLocked(const std::string& vpc) const;
  // NICs of `vpc` came or went: the peers whose rules name `vpc`'s groups update their member sets (on OVN:
  // updateOvnPeersLocked).
  void updatePeersLocked(const std::string& vpc);
  // Brings `vpc`'s resolver (its host files, its dnsmasq), its metadata listener and its flow logs' watch
  // and directory to the current model and NICs; failures are logged (names are a convenience the network
  // works without) and leave the VPC in resolverStale_, so the next topology change tries again.
  void syncResolverLocked(const std::string& vpc, bool flowDirectoryDone = false);
  // The same after `nics` joined (`joining`) or left `vpc`, for them alone when no full sync is owed: their
  // host files in the resolver, and their entries in the flow logs' directory when its capture reads the
  // VPC's namespace. Otherwise (or when a part fails) as above.
  void syncNicsLocked(const std::string& vpc, const std::vector<net::NicAttachment>& nics, bool joining);
  // Who a NIC of `subnet` is in its VPC's flow logs, by address; nullopt when its address does not parse.
  std::optional<std::pair<uint32_t, net::FlowEndpoint>> flowEndpointLocked(
      const net::Subnet& subnet, const net::NicAttachment& nic) const;
  // What syncResolverLocked reads of the model for a VPC besides its NICs: whether it exists, its subnets
  // (name, range, how each reaches out: which resolver role serves it) and its default security group's
  // name (the flow logs' directory). A topology change that leaves these equal (a rule, a route that keeps
  // every subnet's reachability, another VPC's objects) needs no sync. O(subnets), not O(NICs).
  struct ResolverInputs {
    bool exists = false;
    std::vector<std::tuple<std::string, net::Cidr, net::SubnetReachability>> subnets;
    std::string defaultGroup;
    bool operator==(const ResolverInputs&) const = default;
  };
  static ResolverInputs resolverInputs(const net::Topology& topology, const std::string& vpc);
  // Who each address of `vpc` is, for its flow logs: its NICs and the router's own addresses.
  net::FlowDirectory flowDirectoryLocked(const std::string& vpc) const;

  NetworkOptions options_;
  mutable std::mutex mutex_;
  net::Topology topology_;
  std::map<std::string, net::NicAttachment, std::less<>> nics_;  // by instance name
  // The instances with a NIC, by subnet and by combination of listed security groups (sorted): what a
  // rule change needs (one NIC per combination) and what a topology check needs (which subnets and groups
  // are in use) without visiting every NIC, so a rule change costs the model's size, not the VPC's.
  std::map<std::string, std::map<std::vector<std::string>, std::set<std::string>>, std::less<>>
      byCombination_;
  // By subnet: the addresses its NICs hold, so that reserving one costs O(log N), not a pass over every
  // NIC. Dropped when its last NIC goes (a subnet of the same name made later may have another range).
  std::map<std::string, std::unique_ptr<net::SubnetIpam>, std::less<>> ipams_;
  std::map<std::string, uint64_t, std::less<>> nicRevisions_;  // by VPC (nicRevision())
  uint64_t nicChanges_ = 0;
  mutable std::map<std::string, net::Cidr, std::less<>> transits_;  // by VPC: kept while it has a gateway
  // By VPC: the plan its kernel objects were last brought to (by a converge or a delta), so that a change
  // diffs against it instead of planning "before" again. Missing: unknown (next change converges whole).
  // After an incremental change only its tables (firewall, portGuardTable) and nics are kept up to date:
  // its rendered texts (ruleset, portGuards) are those of the last whole plan, and nothing reads them.
  std::map<std::string, net::VpcPlan, std::less<>> applied_;
  std::unique_ptr<VpcResolvers> resolvers_;  // opened by reconcile() when options_.resolverDir is set
  // VPCs owed a syncResolverLocked whatever the next topology change is: converged since their last sync
  // (their namespace may be new) or their last sync failed in part.
  std::set<std::string, std::less<>> resolverStale_;
  FlowLogs* flowLogs_ = nullptr;
  MetadataLookup metadataLookup_;
  std::unique_ptr<InstanceMetadataServer> metadata_;  // opened by reconcile() when a lookup is set
  // The OVN backend (options_.ovn with the kernel), and by VPC the plan its rows were last converged to.
  std::unique_ptr<OvnFabric> ovn_;
  bool ovnAwaiting_ = false;      // options_.ovnAwaitCluster until endClusterWait()
  bool ovnClusterScope_ = false;  // setClusterScope(): the rows this host converges are a cluster's
  std::map<std::string, net::OvnVpcPlan, std::less<>> ovnApplied_;
};

}  // namespace corral::daemon
