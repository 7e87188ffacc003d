// The flow_logs table: the newest flow-log records of each VPC (daemon/flow_logs.h).
#include <fmt/format.h>

#include <algorithm>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "daemon/store.h"
#include "daemon/store_sqlite.h"

namespace corral::daemon {

using namespace sql;

Result<std::vector<int64_t>> Store::insertFlowLogs(const std::vector<NewFlowLog>& records,
                                                   size_t keepPerVpc) {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) {
    return std::move(error).wrap(fmt::format("store \"{}\": save flow logs", path_));
  };
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return fail(wrap(std::move(transaction.error())));
  auto insert = Statement::prepare(
      db_.get(), "INSERT INTO flow_logs (vpc, subnet, instance, action, record) VALUES (?, ?, ?, ?, ?)");
  if (!insert) return fail(wrap(std::move(insert.error())));
  std::vector<int64_t> ids;
  std::set<std::string> vpcs;
  for (const NewFlowLog& record : records) {
    Binder binder(*insert);
    binder.text(record.vpc)
        .text(record.subnet)
        .text(record.instance)
        .text(record.action)
        .text(record.recordJson);
    if (auto ok = binder.run(); !ok) return fail(wrap(std::move(ok.error())));
    ids.push_back(sqlite3_last_insert_rowid(db_.get()));
    vpcs.insert(record.vpc);
  }
  for (const std::string& vpc : vpcs) {
    auto pruned =
        runBound(db_.get(),
                 "DELETE FROM flow_logs WHERE vpc = ?1 AND id <= (SELECT id FROM flow_logs WHERE vpc = ?1 "
                 "ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                 [&](Binder& b) { b.text(vpc).integer(static_cast<int64_t>(keepPerVpc)); });
    if (!pruned) return fail(wrap(std::move(pruned.error())));
  }
  if (auto committed = transaction->commit(); !committed) return fail(wrap(std::move(committed.error())));
  return ids;
}

Result<std::vector<FlowLogRow>> Store::listFlowLogs(const FlowLogFilter& filter) const {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) {
    return std::move(error).wrap(fmt::format("store \"{}\": list flow logs", path_));
  };
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return fail(wrap(std::move(transaction.error())));
  auto statement = Statement::prepare(
      db_.get(),
      "SELECT id, record FROM flow_logs WHERE id > ?1 AND (?2 IS NULL OR vpc = ?2) AND (?3 IS NULL OR subnet "
      "= ?3) "
      "AND (?4 IS NULL OR instance = ?4) AND (?5 IS NULL OR action = ?5) ORDER BY id DESC LIMIT ?6");
  if (!statement) return fail(wrap(std::move(statement.error())));
  Status bound = statement->bindInt(1, filter.afterId);
  if (bound) bound = statement->bindOptionalText(2, filter.vpc);
  if (bound) bound = statement->bindOptionalText(3, filter.subnet);
  if (bound) bound = statement->bindOptionalText(4, filter.instance);
  if (bound) bound = statement->bindOptionalText(5, filter.action);
  if (bound) bound = statement->bindInt(6, static_cast<int64_t>(filter.newest));
  if (!bound) return fail(wrap(std::move(bound.error())));
  std::vector<FlowLogRow> rows;
  for (;;) {
    auto row = statement->step();
    if (!row) return fail(wrap(std::move(row.error())));
    if (!*row) break;
    RowReader r(statement->get(), "flow_logs", keyColumn(statement->get(), 0));
    FlowLogRow read;
    auto id = r.integer(0, "id");
    if (!id) return fail(wrap(std::move(id.error())));
    auto text = r.text(1, "record");
    if (!text) return fail(wrap(std::move(text.error())));
    read.id = *id;
    read.recordJson = std::move(*text);
    rows.push_back(std::move(read));
  }
  if (auto committed = transaction->commit(); !committed) return fail(wrap(std::move(committed.error())));
  std::reverse(rows.begin(), rows.end());
  return rows;
}

Status Store::deleteFlowLogs(const std::string& vpc) {
  std::lock_guard lock(*mutex_);
  auto deleted = runBound(db_.get(), "DELETE FROM flow_logs WHERE vpc = ?", [&](Binder& b) { b.text(vpc); });
  if (!deleted)
    return fail(std::move(deleted.error())
                    .wrap(fmt::format("store \"{}\": delete flow logs of vpc \"{}\"", path_, vpc)));
  return {};
}

}  // namespace corral::daemon
