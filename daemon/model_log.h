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
//
// Compaction, as etcd's and Raft's own logs do it: each host records the last entry it applied
// (/corral/model/applied/HOST); once every host of the cluster's list (/corral/hosts/) applied entry N, the
// entries up to N can be replaced by a snapshot of the model as it is after N (/corral/model/snapshot =
// {"through": N, "tables": the model's rows, Store::modelRows}), written in one transaction that also
// deletes them. A host joining (no VPCs) loads the snapshot, then applies the entries after it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "net/etcd.h"

namespace corral::daemon {

inline constexpr std::string_view kModelLogPrefix = "/corral/model/log/";
inline constexpr std::string_view kModelSnapshotKey = "/corral/model/snapshot";
inline constexpr std::string_view kModelAppliedPrefix = "/corral/model/applied/";
// etcd refuses a request larger than its --max-request-bytes, 1.5 MiB by default; the compaction's
// transaction carries the snapshot and a few keys besides.
inline constexpr size_t kMaxModelSnapshotBytes = 1536 * 1024 - 16 * 1024;

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

// The model as it is after entry `through`: the model tables' rows (Store::modelRows).
struct ModelSnapshot {
  uint64_t through = 0;
  nlohmann::json tables;
  bool operator==(const ModelSnapshot&) const = default;
};
std::string encodeModelSnapshot(const ModelSnapshot& snapshot);
Result<ModelSnapshot> decodeModelSnapshot(const std::string& value);

// What a host applies to catch up: the snapshot when the entries after its own were compacted into one
// (load it instead of what it has), then the entries after (the snapshot's or its own), in order.
struct ModelTail {
  std::optional<ModelSnapshot> snapshot;
  std::vector<ModelEntry> entries;
};

// How a compaction attempt ended.
enum class Compaction {
  Done,        // the snapshot replaced the entries up to its number
  Waiting,     // a host of the cluster has not applied that far yet (it may be away: it holds it up)
  Superseded,  // the log is already compacted that far, or another host compacted at the same moment
  TooLarge,    // the snapshot is larger than etcd takes (kMaxModelSnapshotBytes): the log stays
};
struct CompactionResult {
  Compaction outcome = Compaction::Waiting;
  uint64_t snapshotThrough = 0;  // the log's snapshot's number after the attempt (0: none)
  std::string detail;            // Waiting: which host; TooLarge: the sizes
};

class ModelLog {
 public:
  // `client` gives the cluster store's client, authenticated, at each call (Cluster::store).
  using ClientSource = std::function<Result<std::shared_ptr<net::etcd::EtcdClient>>()>;
  explicit ModelLog(ClientSource client) : client_(std::move(client)) {}
  ~ModelLog();  // stops the watch
  ModelLog(const ModelLog&) = delete;
  ModelLog& operator=(const ModelLog&) = delete;

  // The entries after `applied`, in order (a linearizable read), and the snapshot first when the log was
  // compacted past `applied`. Unavailable without quorum.
  Result<ModelTail> after(uint64_t applied);
  // Records that `host` applied the log up to `applied` (compaction waits for every host).
  Status recordApplied(const std::string& host, uint64_t applied);
  // A host leaving the cluster: its applied number goes (compaction no longer waits for it).
  Status forgetHost(const std::string& host);
  // Replaces the entries up to snapshot.through with `snapshot` when every host of the cluster's list has
  // applied them, in one transaction that holds only if no other host wrote a snapshot since this one read
  // the log's: two hosts compacting at once never lose an entry or go back to an older snapshot.
  Result<CompactionResult> compact(const ModelSnapshot& snapshot);
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
