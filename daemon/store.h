// corrald's durable state: one SQLite database (WAL, versioned schema). Every mutation is written in one
// transaction, so a SIGKILL at any moment leaves exactly the committed state.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "daemon/lifecycle.h"
#include "lb/model.h"
#include "net/vpc.h"
#include "schema/instance.h"

namespace corral::daemon {

inline constexpr int kSchemaVersion = 11;

// One instance as stored: the spec (the POST /v1/instances body, JSON text) and what became of it.
// Times are Unix seconds; the boot steps are the instance's "boot" as JSON text (docs/api.md).
struct InstanceRow {
  std::string name;
  schema::InstanceKind kind = schema::InstanceKind::container;
  std::string specJson;
  InstanceState state = InstanceState::created;  // a settled one: created (VMs), starting, running, stopped
  std::optional<int64_t> pid;
  std::optional<int64_t> pidStartTime;  // field 22 of /proc/PID/stat: the same process after a restart
  int64_t createdAt = 0;
  std::optional<int64_t> startedAt;
  std::optional<int64_t> finishedAt;
  std::optional<int64_t> exitCode;
  std::optional<int64_t> exitSignal;
  std::optional<ExitReason> exitReason;  // the API's exit_reason (docs/api.md)
  std::optional<std::string> exitNote;   // e.g. it ended while corrald was not its parent
  std::string bootStepsJson = "{}";
  std::string logPath;
  int64_t oomKills = 0;  // processes the kernel OOM-killed in a container's cgroup since its last start
  std::optional<int64_t> userNamespaceStart;  // a container with a user namespace: its host id range's start
};

// One saved `corral compare` result (the CLI's JSON, as text), numbered in the order they were saved.
struct ComparisonRow {
  int64_t id = 0;
  int64_t createdAt = 0;  // Unix seconds
  std::string resultJson;
};

// One stored flow-log record (net/flow_log.h): its number, the columns queries filter on, and the record
// as JSON text (flowRecordJson).
struct FlowLogRow {
  int64_t id = 0;
  std::string recordJson;
};
// Which flow-log records a query wants: each field set narrows it.
struct FlowLogFilter {
  std::optional<std::string> vpc, subnet, instance;
  std::optional<std::string> action;  // "ACCEPT" or "REJECT"
  int64_t afterId = 0;                // only records numbered above this
  size_t newest = 1000;               // at most this many, the newest
};

// One group (daemon/groups.h) as stored: its spec (the POST /v1/groups body, JSON text), what changes apart
// from it, and the number its next member gets.
struct GroupRow {
  std::string name;
  std::string specJson;
  int64_t desired = 0;
  std::optional<std::string> policyJson;  // POST /v1/groups/NAME/policy's body; null: none
  int64_t nextMember = 1;
  int64_t createdAt = 0;
};
struct GroupEventRow {
  int64_t id = 0;
  int64_t atMs = 0;  // Unix milliseconds
  std::string kind;  // launched, terminated, scaled, launch-failed, ...
  std::optional<std::string> instance;
  std::string message;
};

class Store {
 public:
  // Opens (creating if needed) the database at `path` and migrates it to kSchemaVersion. A database
  // written by a newer corral (higher user_version) is refused rather than damaged.
  static Result<Store> open(const std::string& path);

  // Reads the whole network model; checks its integrity.
  Result<net::Topology> loadTopology() const;

  // Writes the objects `changes` names, as they are in `after`, and removes the deleted ones, in one
  // transaction: all or nothing.
  // With `modelEntry` (a cluster host applying the cluster's model log, daemon/model_log.h), the same
  // transaction records that the log is applied up to that entry.
  Status apply(const net::Topology& after, const net::Changeset& changes,
               std::optional<uint64_t> modelEntry = std::nullopt);
  // The last entry of the cluster's model log this host applied; 0 when none.
  Result<uint64_t> modelApplied() const;
  // The cluster's shared model as rows (daemon/store_model.cc): every row of the VPC model's tables (VPCs,
  // route tables and routes, network ACLs and rules, subnets, gateways, security groups and rules,
  // peerings; never instances, load balancers, flow logs) and the entry they are applied through, read in
  // one transaction. The model log's snapshot (daemon/model_log.h) is this JSON.
  struct ModelRows {
    uint64_t through = 0;
    nlohmann::json tables;  // {"vpcs": {"columns": [...], "rows": [[...], ...]}, ...}
  };
  Result<ModelRows> modelRows() const;
  // Replaces every row of the model's tables with `tables` (another store's modelRows) and records the
  // model log applied through `through`, in one transaction; bad rows change nothing.
  Status loadModelRows(const nlohmann::json& tables, uint64_t through);
  // A host leaving its cluster: every row of the model's tables and the applied number go, in one
  // transaction (refused, nothing changed, while a load balancer or target group still names a VPC).
  Status forgetModel();

  // Load balancers and target groups (issue 19): the whole set, and one change written in one transaction
  // (the objects `changes` names, as they are in `after`).
  Result<lb::Balancers> loadBalancers() const;
  Status apply(const lb::Balancers& after, const lb::Changes& changes);

  // Instances: each call is one transaction. putInstance inserts or replaces the whole row; insertInstance
  // fails with Conflict when the name is taken.
  Status insertInstance(const InstanceRow& row);
  Status putInstance(const InstanceRow& row);
  Status deleteInstance(const std::string& name);
  Result<std::vector<InstanceRow>> listInstances() const;

  // Comparisons: saves one and, in the same transaction, forgets all but the newest `keep`; its id.
  Result<int64_t> insertComparison(int64_t createdAt, const std::string& resultJson, size_t keep);
  // The comparison `id`, or the kept ones newest first when no id is given (only the `newest` N when
  // that is given); empty when there is none.
  Result<std::vector<ComparisonRow>> listComparisons(std::optional<int64_t> id = std::nullopt,
                                                     std::optional<size_t> newest = std::nullopt) const;

  // Groups: each call is one transaction. insertGroup fails with Conflict when the name is taken;
  // deleteGroup drops its events too.
  Status insertGroup(const GroupRow& row);
  Status putGroup(const GroupRow& row);
  Status deleteGroup(const std::string& name);
  Result<std::vector<GroupRow>> listGroups() const;
  // Appends one event and, in the same transaction, forgets all but the group's newest `keep`.
  Status insertGroupEvent(const std::string& group, const GroupEventRow& event, size_t keep);
  Result<std::vector<GroupEventRow>> listGroupEvents(const std::string& group) const;  // oldest first

  // Flow logs: each record's row takes its number in one transaction with the others of `records` (JSON
  // text by VPC, subnet, instance, action), and each VPC written to keeps only its newest `keepPerVpc`;
  // the numbers given, in order.
  struct NewFlowLog {
    std::string vpc, subnet, instance, action, recordJson;
  };
  Result<std::vector<int64_t>> insertFlowLogs(const std::vector<NewFlowLog>& records, size_t keepPerVpc);
  // The records `filter` wants, oldest first.
  Result<std::vector<FlowLogRow>> listFlowLogs(const FlowLogFilter& filter) const;
  // A VPC is deleted: its records go with it.
  Status deleteFlowLogs(const std::string& vpc);

  int schemaVersion() const;
  const std::string& path() const { return path_; }

 private:
  struct CloseDb {
    void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
  };
  Store(std::string path, std::unique_ptr<sqlite3, CloseDb> db)
      : path_(std::move(path)), db_(std::move(db)), mutex_(std::make_unique<std::mutex>()) {}
  Status writeInstance(const InstanceRow& row, bool mustBeNew);
  std::string path_;
  std::unique_ptr<sqlite3, CloseDb> db_;
  // The connection is used by the Service (under its own mutex) and by the instance supervisor's thread;
  // every public method takes this lock so the two never share the connection at once.
  mutable std::unique_ptr<std::mutex> mutex_;
};

}  // namespace corral::daemon
