// This host's membership of a corral cluster (issue 20, docs/cluster.md): init, join, the host list, a
// host's AZ, leave; the etcd member it runs (daemon/etcd_process.h); its host key and lease-bound alive key
// kept alive; a watch of /corral/hosts/ that notes when another host's alive key goes.
//
// Keys: /corral/hosts/NAME = {"name", "address", "az", "client_url", "peer_url", "member_id"},
// /corral/hosts/NAME/alive on a lease of options.aliveTtlSeconds, /corral/hosts/NAME/instances (this host's
// instance count, for the others' `cluster ls`) on the same lease, /corral/hosts/NAME/chassis (its OVN
// chassis and tunnels as it last read them, daemon/cluster_view.h; not on the lease: a lost host is still
// drawn). The join token is etcd's own credential (the root user's password), so a wrong one is refused by
// etcd. What this host is in survives a restart in DIR/member.json (0600: it holds the token); the etcd data
// in DIR/etcd/data. /corral/gateway holds the settings every host plans the internet gateways with
// (GatewaySettings).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "daemon/etcd_process.h"
#include "net/etcd.h"
#include "net/ovs_tunnels.h"

namespace corral::daemon {

// What every host of one cluster must plan the internet gateways with: each corrald writes the same OVN
// northbound rows from the same model, so two hosts with other settings would rewrite each other's rows
// forever. `init` records this host's in /corral/gateway, `join` refuses a host whose settings differ
// (409 naming the option, nothing changed), and a member started again with other ones does not start.
struct GatewaySettings {
  std::string ovnGatewayChassis;  // corrald --ovn-gateway-chassis; "" none
  std::string ovnOutsideNetwork;  // --ovn-outside-network; "" none
  std::string transitCidr;        // --transit-cidr, normalised ("100.64.0.0/17")
  std::string publicCidr;         // --public-cidr, normalised
  bool operator==(const GatewaySettings&) const = default;
};
nlohmann::json gatewayJson(const GatewaySettings& settings);
GatewaySettings gatewayFromJson(const nlohmann::json& json);
// Conflict naming the first option (its field: "ovn-gateway-chassis", "ovn-outside-network",
// "transit-cidr", "public-cidr") whose value `here` differs from the cluster's; success when they agree.
Status checkGatewaySettings(const GatewaySettings& here, const GatewaySettings& cluster);

struct ClusterOptions {
  std::string address;  // IPv4 where this host's etcd listens (clients and peers) and others reach it
  std::string hostName;
  uint16_t clientPort = 2379;
  uint16_t peerPort = 2380;
  std::string dir;  // STATE_DIR/cluster
  std::string etcd = "etcd";
  int64_t aliveTtlSeconds = 3;
  // The TCP port of this host's peer API (corrald --cluster-api-port) on `address`, advertised in its host
  // key as api_url for the other corralds; 0: none.
  uint16_t apiPort = 0;
  GatewaySettings gateway;  // this host's (corrald's options)
  std::chrono::milliseconds requestTimeout = std::chrono::seconds(5);
  // The model log is compacted once it holds more than this many entries every host applied
  // (corrald --cluster-model-compact, daemon/model_log.h).
  uint64_t modelCompactEntries = 1000;
};

class Cluster {
 public:
  // Kills an etcd an earlier corrald left; when this host is a member (member.json), starts its etcd on
  // the same data and registers the host again in the background (the store may have no quorum now).
  static Result<std::unique_ptr<Cluster>> open(ClusterOptions options,
                                               std::function<size_t()> localInstances);
  ~Cluster();  // stops the heartbeat and the etcd member (its data stays for the next start)
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  // Each answers the API's JSON (docs/api.md "Cluster").
  Result<nlohmann::json> init(const std::string& az);
  Result<nlohmann::json> join(const std::string& address, const std::string& token, const std::string& az);
  Result<nlohmann::json> hosts();
  Result<nlohmann::json> token();
  Result<nlohmann::json> setAz(const std::string& host, const std::string& az);
  Result<nlohmann::json> leave();
  // The cluster's token while this host is in a cluster (what a peer's request must carry, daemon/
  // http_server.h); nullopt otherwise.
  std::optional<std::string> peerToken() const;
  // Whether this host is in a cluster now (after init or join, until leave).
  bool member() const;
  const std::string& hostName() const { return options_.hostName; }
  uint64_t modelCompactEntries() const { return options_.modelCompactEntries; }
  // The cluster store's client, authenticated (the model log and the instances' placement use it).
  // Conflict when this host is in no cluster; the store's own error when it does not answer.
  Result<std::shared_ptr<net::etcd::EtcdClient>> store() { return memberClient(); }

  // Where this host's chassis and tunnels come from (the OVN backend's Open_vSwitch database); unset: the
  // host shows no chassis. The heartbeat publishes what it reads when it changed.
  using ChassisSource = std::function<Result<net::OvsChassis>()>;
  void setChassisSource(ChassisSource source);
  // The newest hosts() answer, refreshed by the heartbeat: the dashboard's, without a store request while
  // it holds the service's lock. nullopt before the first one (or when not a member).
  std::optional<nlohmann::json> lastHosts() const;

 private:
  struct Membership {
    std::string az;
    std::string token;
    uint64_t memberId = 0;
    std::vector<std::string> endpoints;      // this host's client URL first, then the other members'
    std::optional<GatewaySettings> gateway;  // the cluster's, as init recorded it or join found it
  };

  Cluster(ClusterOptions options, std::function<size_t()> localInstances, std::unique_ptr<EtcdProcess> etcd);
  std::string clientUrl() const;
  std::string peerUrl() const;
  std::string hostKey(std::string_view host) const;
  nlohmann::json hostJson(const std::string& az, uint64_t memberId) const;
  Status saveMembership(const Membership& membership) const;
  void forgetMembership();
  Result<Membership> membership() const;
  // Waits until the local etcd serves a linearizable read (authenticating first when `password` is set).
  Status waitUntilServing(net::etcd::EtcdClient& client, const std::string* password,
                          std::chrono::seconds timeout);
  // A lease and the alive key on it, now.
  Status registerAlive(net::etcd::EtcdClient& client);
  void heartbeat();
  // This host's chassis to /corral/hosts/NAME/chassis when it differs from what was published.
  void publishChassis(net::etcd::EtcdClient& client);
  // The member's client, authenticated (a corrald started again has a client the heartbeat authenticates
  // once the store answers: a request before that authenticates itself). Conflict when not a member.
  Result<std::shared_ptr<net::etcd::EtcdClient>> memberClient();

  ClusterOptions options_;
  std::function<size_t()> localInstances_;
  std::unique_ptr<EtcdProcess> etcd_;
  std::mutex requests_;  // one init, join, set or leave at a time
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::optional<Membership> membership_;           // under mutex_
  std::shared_ptr<net::etcd::EtcdClient> client_;  // under mutex_: authenticated, when a member
  int64_t lease_ = 0;                              // under mutex_
  int64_t publishedInstances_ = -1;                // under mutex_: the count on lease_, -1 none yet
  bool heartbeatPaused_ = false;                   // under mutex_: leave() deletes the keys
  bool beating_ = false;                           // under mutex_: a keepalive or registration under way
  std::map<std::string, int64_t> lostAt_;          // under mutex_: host -> unix seconds its alive key went
  ChassisSource chassisSource_;                    // under mutex_
  std::optional<nlohmann::json> publishedChassis_;  // under mutex_: what /corral/hosts/NAME/chassis holds
  std::optional<nlohmann::json> lastHosts_;         // under mutex_
  bool stopping_ = false;
  std::thread heartbeat_;
};

}  // namespace corral::daemon
