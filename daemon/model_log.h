// The cluster's VPC model as a log of changes in etcd (issue 20, docs/cluster.md "The shared model"). Every
// change of a VPC object made on any host is an entry: the API request that made it and the time it was
// made at. Each host's corrald applies the entries in order to its own copy of the model (its SQLite
// store, its network), so every host holds the same VPCs, subnets, route tables, gateways, security groups
// and network ACLs, and converges the same OVN rows from them. An entry is appended with a transaction that
// holds only if its number is still free: two hosts changing the model at once get one number each, the
// later one applying the earlier's entry first and checking its change again against the result.
//
// Keys: /corral/model/log/NNNNNNNNNNNNNNNNNNNN (the entry's number, 20 digits, so keys sort as numbers) =
// {"method", "target", "body", "now", "host"}.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "net/etcd.h"

namespace corral::daemon {

inline constexpr std::string_view kModelLogPrefix = "/corral/model/log/";

struct ModelEntry {
  uint64_t number = 0;
  std::string method;  // the request: "POST", "/v1/vpcs", its JSON body
  std::string target;
  std::string body;
  int64_t now = 0;   // wall-clock seconds the change was made at (createdAt of what it creates)
  std::string host;  // the host that made it
  bool operator==(const ModelEntry&) const = default;
};

std::string modelEntryKey(uint64_t number);
std::string encodeModelEntry(const ModelEntry& entry);
// `key`'s entry; an error naming the key when it is not one corral wrote.
Result<ModelEntry> decodeModelEntry(const std::string& key, const std::string& value);

class ModelLog {
 public:
  // `client` gives the cluster store's client, authenticated, at each call (Cluster::store).
  using ClientSource = std::function<Result<std::shared_ptr<net::etcd::EtcdClient>>()>;
  explicit ModelLog(ClientSource client) : client_(std::move(client)) {}
  ~ModelLog();  // stops the watch
  ModelLog(const ModelLog&) = delete;
  ModelLog& operator=(const ModelLog&) = delete;

  // The entries after `applied`, in order (a linearizable read). Unavailable without quorum.
  Result<std::vector<ModelEntry>> after(uint64_t applied);
  // Appends `entry` under entry.number if no host took that number first; false when one did (read the
  // entries after, apply them, and check the change again). Unavailable without quorum: nothing appended.
  Result<bool> append(const ModelEntry& entry);
  // Calls `appended` from a thread of its own whenever an entry is appended (and once when the watch is
  // made or made again after the store was away), until destroyed.
  void watch(std::function<void()> appended);

 private:
  ClientSource client_;
  std::atomic<bool> stop_{false};
  std::thread watcher_;
};

}  // namespace corral::daemon
