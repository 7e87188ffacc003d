// The comparisons table: the saved `corral compare` results, the newest few kept.
#include <fmt/format.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "daemon/store.h"
#include "daemon/store_sqlite.h"

namespace corral::daemon {

using namespace sql;

Result<int64_t> Store::insertComparison(int64_t createdAt, const std::string& resultJson, size_t keep) {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) {
    return std::move(error).wrap(fmt::format("store \"{}\": save comparison", path_));
  };
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return fail(wrap(std::move(transaction.error())));
  auto inserted = runBound(db_.get(), "INSERT INTO comparisons (created_at, result) VALUES (?, ?)",
                           [&](Binder& b) { b.integer(createdAt).text(resultJson); });
  if (!inserted) return fail(wrap(std::move(inserted.error())));
  const int64_t id = sqlite3_last_insert_rowid(db_.get());
  auto pruned = runBound(db_.get(), "DELETE FROM comparisons WHERE id <= ?",
                         [&](Binder& b) { b.integer(id - static_cast<int64_t>(keep)); });
  if (!pruned) return fail(wrap(std::move(pruned.error())));
  if (auto committed = transaction->commit(); !committed) return fail(wrap(std::move(committed.error())));
  return id;
}

Result<std::vector<ComparisonRow>> Store::listComparisons(std::optional<int64_t> id,
                                                          std::optional<size_t> newest) const {
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return fail(std::move(transaction.error()));
  std::vector<ComparisonRow> rows;
  auto read = [&](sqlite3_stmt* statement) -> Status {
    RowReader r(statement, "comparisons", keyColumn(statement, 0));
    ComparisonRow row;
    CORRAL_READ(row.id, r.integer(0, "id"));
    CORRAL_READ(row.createdAt, r.integer(1, "created_at"));
    CORRAL_READ(row.resultJson, r.text(2, "result"));
    rows.push_back(std::move(row));
    return {};
  };
  const std::string sql =
      id ? fmt::format("SELECT id, created_at, result FROM comparisons WHERE id = {}", *id)
         : fmt::format("SELECT id, created_at, result FROM comparisons ORDER BY id DESC{}",
                       newest ? fmt::format(" LIMIT {}", *newest) : std::string());
  if (auto status = forEachRow(db_.get(), sql, read); !status)
    return fail(std::move(status.error()).wrap(fmt::format("store \"{}\": list comparisons", path_)));
  if (auto committed = transaction->commit(); !committed) return fail(std::move(committed.error()));
  return rows;
}

}  // namespace corral::daemon
