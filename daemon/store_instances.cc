// The instances table: one row per instance, each write one transaction.
#include <fmt/format.h>

#include <string>
#include <utility>
#include <vector>

#include "daemon/store.h"
#include "daemon/store_sqlite.h"

namespace corral::daemon {

using namespace sql;

Status Store::writeInstance(const InstanceRow& row, bool mustBeNew) {
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": write instance \"{}\"", path_, row.name)));
  };
  // Only settled states are stored: an in-progress one ends with its request (daemon/lifecycle.h).
  if (!parseStoredInstanceState(instanceStateName(row.state)))
    return wrap(internalError("state \"{}\" is not a stored state", instanceStateName(row.state)));
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  if (mustBeNew) {
    auto exists = Statement::prepare(db_.get(), "SELECT 1 FROM instances WHERE name = ?");
    if (!exists) return wrap(std::move(exists.error()));
    if (auto bound = exists->bindText(1, row.name); !bound) return wrap(std::move(bound.error()));
    auto found = exists->step();
    if (!found) return wrap(std::move(found.error()));
    if (*found) return fail(conflict("instance \"{}\" already exists", row.name));
  }
  std::optional<std::string> exitReason;
  if (row.exitReason) exitReason = std::string(exitReasonName(*row.exitReason));
  auto status =
      runBound(db_.get(),
               "INSERT OR REPLACE INTO instances (name, kind, spec, state, pid, pid_start_time, "
               "created_at, started_at, finished_at, exit_code, exit_signal, exit_reason, exit_note, "
               "boot_steps, log_path, oom_kills, user_ns_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
               "?, ?, ?, ?, ?)",
               [&](Binder& b) {
                 b.text(row.name)
                     .text(std::string(schema::instanceKindName(row.kind)))
                     .text(row.specJson)
                     .text(std::string(instanceStateName(row.state)))
                     .optionalInteger(row.pid)
                     .optionalInteger(row.pidStartTime)
                     .integer(row.createdAt)
                     .optionalInteger(row.startedAt)
                     .optionalInteger(row.finishedAt)
                     .optionalInteger(row.exitCode)
                     .optionalInteger(row.exitSignal)
                     .optionalText(exitReason)
                     .optionalText(row.exitNote)
                     .text(row.bootStepsJson)
                     .text(row.logPath)
                     .integer(row.oomKills)
                     .optionalInteger(row.userNamespaceStart);
               });
  if (!status) return wrap(std::move(status.error()));
  if (auto committed = transaction->commit(); !committed) return wrap(std::move(committed.error()));
  return {};
}

Status Store::insertInstance(const InstanceRow& row) {
  return writeInstance(row, /*mustBeNew=*/true);
}

Status Store::putInstance(const InstanceRow& row) {
  return writeInstance(row, /*mustBeNew=*/false);
}

Status Store::deleteInstance(const std::string& name) {
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return fail(std::move(transaction.error()));
  auto status = runBound(db_.get(), "DELETE FROM instances WHERE name = ?", [&](Binder& b) { b.text(name); });
  if (!status) return fail(std::move(status.error()).wrap(fmt::format("delete instance \"{}\"", name)));
  return transaction->commit();
}

Result<std::vector<InstanceRow>> Store::listInstances() const {
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return fail(std::move(transaction.error()));
  std::vector<InstanceRow> rows;
  auto status = forEachRow(
      db_.get(),
      "SELECT name, kind, spec, state, pid, pid_start_time, created_at, started_at, finished_at, exit_code, "
      "exit_signal, exit_reason, exit_note, boot_steps, log_path, oom_kills, user_ns_start FROM instances "
      "ORDER BY name",
      [&](sqlite3_stmt* statement) -> Status {
        RowReader r(statement, "instances", keyColumn(statement, 0));
        InstanceRow row;
        CORRAL_READ(row.name, r.text(0, "name"));
        std::string kind;
        CORRAL_READ(kind, r.text(1, "kind"));
        CORRAL_READ(row.kind, schema::parseInstanceKind(kind, "kind"));
        CORRAL_READ(row.specJson, r.text(2, "spec"));
        std::string state;
        CORRAL_READ(state, r.text(3, "state"));
        CORRAL_READ(row.state, parseStoredInstanceState(state));
        CORRAL_READ(row.pid, r.optionalInteger(4, "pid"));
        CORRAL_READ(row.pidStartTime, r.optionalInteger(5, "pid_start_time"));
        CORRAL_READ(row.createdAt, r.integer(6, "created_at"));
        CORRAL_READ(row.startedAt, r.optionalInteger(7, "started_at"));
        CORRAL_READ(row.finishedAt, r.optionalInteger(8, "finished_at"));
        CORRAL_READ(row.exitCode, r.optionalInteger(9, "exit_code"));
        CORRAL_READ(row.exitSignal, r.optionalInteger(10, "exit_signal"));
        std::optional<std::string> exitReason;
        CORRAL_READ(exitReason, r.optionalText(11, "exit_reason"));
        if (exitReason) CORRAL_READ(row.exitReason, parseExitReason(*exitReason));
        CORRAL_READ(row.exitNote, r.optionalText(12, "exit_note"));
        CORRAL_READ(row.bootStepsJson, r.text(13, "boot_steps"));
        CORRAL_READ(row.logPath, r.text(14, "log_path"));
        CORRAL_READ(row.oomKills, r.integer(15, "oom_kills"));
        CORRAL_READ(row.userNamespaceStart, r.optionalInteger(16, "user_ns_start"));
        rows.push_back(std::move(row));
        return {};
      });
  if (!status)
    return fail(std::move(status.error()).wrap(fmt::format("store \"{}\": list instances", path_)));
  if (auto committed = transaction->commit(); !committed) return fail(std::move(committed.error()));
  return rows;
}

}  // namespace corral::daemon
