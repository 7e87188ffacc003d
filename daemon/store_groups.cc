// The groups and group_events tables (daemon/groups.h): one row per group, its newest events.
#include <fmt/format.h>

#include <string>
#include <utility>
#include <vector>

#include "daemon/store.h"
#include "daemon/store_sqlite.h"

namespace corral::daemon {

using namespace sql;

namespace {
constexpr std::string_view kPutGroup =
    "INSERT OR REPLACE INTO instance_groups (name, spec, desired, policy, next_member, created_at) VALUES "
    "(?, ?, ?, "
    "?, ?, ?)";

void bindGroup(Binder& b, const GroupRow& row) {
  b.text(row.name)
      .text(row.specJson)
      .integer(row.desired)
      .optionalText(row.policyJson)
      .integer(row.nextMember)
      .integer(row.createdAt);
}
}  // namespace

Status Store::insertGroup(const GroupRow& row) {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": insert group \"{}\"", path_, row.name)));
  };
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  auto exists = Statement::prepare(db_.get(), "SELECT 1 FROM instance_groups WHERE name = ?");
  if (!exists) return wrap(std::move(exists.error()));
  if (auto bound = exists->bindText(1, row.name); !bound) return wrap(std::move(bound.error()));
  auto found = exists->step();
  if (!found) return wrap(std::move(found.error()));
  if (*found) return fail(conflict("group \"{}\" already exists", row.name));
  if (auto put = runBound(db_.get(), kPutGroup, [&](Binder& b) { bindGroup(b, row); }); !put)
    return wrap(std::move(put.error()));
  if (auto committed = transaction->commit(); !committed) return wrap(std::move(committed.error()));
  return {};
}

Status Store::putGroup(const GroupRow& row) {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": write group \"{}\"", path_, row.name)));
  };
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  // INSERT OR REPLACE deletes the old row first: its events would go with it (ON DELETE CASCADE), so an
  // existing row is updated in place.
  auto updated = runBound(
      db_.get(),
      "UPDATE instance_groups SET spec = ?, desired = ?, policy = ?, next_member = ?, created_at = ? "
      "WHERE name = ?",
      [&](Binder& b) {
        b.text(row.specJson)
            .integer(row.desired)
            .optionalText(row.policyJson)
            .integer(row.nextMember)
            .integer(row.createdAt)
            .text(row.name);
      });
  if (!updated) return wrap(std::move(updated.error()));
  if (sqlite3_changes(db_.get()) == 0) {
    if (auto put = runBound(db_.get(), kPutGroup, [&](Binder& b) { bindGroup(b, row); }); !put)
      return wrap(std::move(put.error()));
  }
  if (auto committed = transaction->commit(); !committed) return wrap(std::move(committed.error()));
  return {};
}

Status Store::deleteGroup(const std::string& name) {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": delete group \"{}\"", path_, name)));
  };
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  if (auto deleted =
          runBound(db_.get(), "DELETE FROM instance_groups WHERE name = ?", [&](Binder& b) { b.text(name); });
      !deleted)
    return wrap(std::move(deleted.error()));
  if (auto committed = transaction->commit(); !committed) return wrap(std::move(committed.error()));
  return {};
}

Result<std::vector<GroupRow>> Store::listGroups() const {
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return fail(std::move(transaction.error()));
  std::vector<GroupRow> rows;
  auto read = [&](sqlite3_stmt* statement) -> Status {
    RowReader r(statement, "instance_groups", keyColumn(statement, 0));
    GroupRow row;
    CORRAL_READ(row.name, r.text(0, "name"));
    CORRAL_READ(row.specJson, r.text(1, "spec"));
    CORRAL_READ(row.desired, r.integer(2, "desired"));
    CORRAL_READ(row.policyJson, r.optionalText(3, "policy"));
    CORRAL_READ(row.nextMember, r.integer(4, "next_member"));
    CORRAL_READ(row.createdAt, r.integer(5, "created_at"));
    rows.push_back(std::move(row));
    return {};
  };
  if (auto status = forEachRow(
          db_.get(),
          "SELECT name, spec, desired, policy, next_member, created_at FROM instance_groups ORDER BY name",
          read);
      !status)
    return fail(std::move(status.error()).wrap(fmt::format("store \"{}\": list groups", path_)));
  if (auto committed = transaction->commit(); !committed) return fail(std::move(committed.error()));
  return rows;
}

Status Store::insertGroupEvent(const std::string& group, const GroupEventRow& event, size_t keep) {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": group \"{}\" event", path_, group)));
  };
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  auto inserted = runBound(
      db_.get(),
      "INSERT INTO group_events (group_name, at_ms, kind, instance, message) VALUES (?, ?, ?, ?, ?)",
      [&](Binder& b) {
        b.text(group).integer(event.atMs).text(event.kind).optionalText(event.instance).text(event.message);
      });
  if (!inserted) return wrap(std::move(inserted.error()));
  auto pruned =
      runBound(db_.get(),
               "DELETE FROM group_events WHERE group_name = ? AND id NOT IN (SELECT id FROM group_events "
               "WHERE group_name = ? ORDER BY id DESC LIMIT ?)",
               [&](Binder& b) { b.text(group).text(group).integer(static_cast<int64_t>(keep)); });
  if (!pruned) return wrap(std::move(pruned.error()));
  if (auto committed = transaction->commit(); !committed) return wrap(std::move(committed.error()));
  return {};
}

Result<std::vector<GroupEventRow>> Store::listGroupEvents(const std::string& group) const {
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return fail(std::move(transaction.error()));
  std::vector<GroupEventRow> rows;
  auto statement = Statement::prepare(
      db_.get(),
      "SELECT id, at_ms, kind, instance, message FROM group_events WHERE group_name = ? ORDER BY id");
  if (!statement) return fail(std::move(statement.error()));
  if (auto bound = statement->bindText(1, group); !bound) return fail(std::move(bound.error()));
  for (;;) {
    auto more = statement->step();
    if (!more) return fail(std::move(more.error()).wrap(fmt::format("store \"{}\": group events", path_)));
    if (!*more) break;
    RowReader r(statement->get(), "group_events", group);
    GroupEventRow row;
    auto read = [&]() -> Status {
      CORRAL_READ(row.id, r.integer(0, "id"));
      CORRAL_READ(row.atMs, r.integer(1, "at_ms"));
      CORRAL_READ(row.kind, r.text(2, "kind"));
      CORRAL_READ(row.instance, r.optionalText(3, "instance"));
      CORRAL_READ(row.message, r.text(4, "message"));
      return {};
    };
    if (auto status = read(); !status) return fail(std::move(status.error()));
    rows.push_back(std::move(row));
  }
  if (auto committed = transaction->commit(); !committed) return fail(std::move(committed.error()));
  return rows;
}

}  // namespace corral::daemon
