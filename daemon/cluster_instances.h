// A cluster host's instances in the cluster store, and the other hosts' as this host needs them (issue 20,
// docs/cluster.md "Instances across hosts").
//
// Keys: /corral/instances/NAME = {"host", "spec": the spec as it runs (its addresses assigned), "link_key",
// "keys": its address keys}; /corral/addresses/SUBNET/ADDRESS and /corral/public-addresses/ADDRESS = NAME.
// An instance is claimed, before it runs, with one transaction that holds only if its name and its
// addresses are free in the whole cluster: two hosts never run the same name, nor give one address twice
// (each host's IPAM picks from what it knows; a pick another host made a moment ago is refused, and the
// host learns that NIC and picks again). The other hosts' instances are followed with a watch: their NICs
// are known to this host's network (NetworkController::adoptNic), so a VPC's OVN rows planned on any host
// hold every host's ports, and security groups see every member.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "daemon/instances.h"
#include "daemon/model_log.h"
#include "daemon/network.h"
#include "schema/instance.h"

namespace corral::daemon {

inline constexpr std::string_view kInstancesPrefix = "/corral/instances/";

class ClusterInstances final : public InstanceClaims {
 public:
  // `network` may be null (no network managed); it must outlive this object.
  ClusterInstances(ModelLog::ClientSource client, std::string host, NetworkController* network);
  ~ClusterInstances() override;  // stops following
  ClusterInstances(const ClusterInstances&) = delete;
  ClusterInstances& operator=(const ClusterInstances&) = delete;

  // InstanceClaims.
  Result<bool> claim(const schema::InstanceSpec& spec, const std::string& linkKey) override;
  void release(const std::vector<std::string>& names) override;

  // Reads every instance of the cluster, then follows the changes from a thread of its own; `synced` is
  // called (from that thread) after each whole read, the first one included.
  void start(std::function<void()> synced);
  // Whether every instance of the cluster has been read once.
  bool synced() const { return synced_.load(); }

  struct Remote {
    std::string host;
    schema::InstanceSpec spec;
  };
  // The other hosts' instances as last read, by name.
  std::map<std::string, Remote> remote() const;
  // The host an instance of the cluster runs on (a linearizable read); nullopt when no host has it.
  Result<std::optional<std::string>> ownerOf(const std::string& name);

 private:
  struct Record {
    std::string host;
    schema::InstanceSpec spec;
    std::string linkKey;
    std::vector<std::string> keys;
  };
  static std::string encode(const Record& record);
  static Result<Record> decode(const std::string& key, const std::string& value);
  // Another host's instance came or changed (adopted into the network) or went (forgotten).
  void seenLocked(const std::string& name, Record record);
  void goneLocked(const std::string& name);
  // Reads every key under kInstancesPrefix: what is there now is what this host follows. The revision.
  Result<int64_t> syncLocked();
  void follow();

  ModelLog::ClientSource client_;
  std::string host_;
  NetworkController* network_;
  mutable std::mutex mutex_;
  std::map<std::string, Remote> remote_;  // under mutex_
  std::atomic<bool> stop_{false};
  std::atomic<bool> synced_{false};
  std::function<void()> onSynced_;
  std::thread follower_;
};

}  // namespace corral::daemon
