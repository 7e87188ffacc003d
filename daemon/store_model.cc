// The VPC model's tables as plain rows (Store::modelRows, loadModelRows, forgetModel): the snapshot of a
// cluster's model log (daemon/model_log.h) and a host leaving its cluster.
#include <fmt/format.h>

#include <array>
#include <string>
#include <string_view>

#include "daemon/store.h"
#include "daemon/store_sqlite.h"

namespace corral::daemon {

using namespace sql;
using Json = nlohmann::json;

namespace {

// Parents before children. The tables the model log's entries change (service.cc kChangesModel): every
// table of migration 0 -> 1, and peerings (7 -> 8). A table added to the model is added here too.
constexpr std::array<std::string_view, 11> kModelTables = {
    "vpcs",    "route_tables",      "routes",       "network_acls",    "network_acl_rules",
    "subnets", "internet_gateways", "nat_gateways", "security_groups", "security_group_rules",
    "peerings"};

bool isIdentifier(std::string_view name) {
  return !name.empty() &&
         name.find_first_not_of("abcdefghijklmnopqrstuvwxyz_0123456789") == std::string_view::npos;
}

Status deleteModelRows(sqlite3* db) {
  // Children first; references between objects are deferred to COMMIT.
  for (auto table = kModelTables.rbegin(); table != kModelTables.rend(); ++table) {
    if (auto status = execute(db, fmt::format("DELETE FROM {}", *table)); !status)
      return fail(std::move(status.error()));
  }
  return execute(db, "DELETE FROM cluster_model");
}

Status writeApplied(sqlite3* db, uint64_t through) {
  auto statement = Statement::prepare(db,
                                      "INSERT INTO cluster_model (id, applied) VALUES (1, ?) "
                                      "ON CONFLICT (id) DO UPDATE SET applied = excluded.applied");
  if (!statement) return fail(std::move(statement.error()));
  if (auto bound = statement->bindInt(1, static_cast<int64_t>(through)); !bound) return bound;
  return statement->run();
}

Status insertTable(sqlite3* db, std::string_view table, const Json& content) {
  auto bad = [&](std::string_view reason) {
    return fail(invalidField("snapshot", "table {}: {}", table, reason));
  };
  if (!content.is_object() || !content.contains("columns") || !content.contains("rows") ||
      !content["columns"].is_array() || !content["rows"].is_array())
    return bad("not {\"columns\": [...], \"rows\": [...]}");
  const Json& columns = content["columns"];
  if (content["rows"].empty()) return {};  // an empty table's columns are not read (modelRows)
  if (columns.empty()) return bad("no columns");
  std::string names, marks;
  for (const Json& column : columns) {
    if (!column.is_string() || !isIdentifier(column.get<std::string>())) return bad("a column is no name");
    names += (names.empty() ? "" : ", ") + column.get<std::string>();
    marks += marks.empty() ? "?" : ", ?";
  }
  auto statement =
      Statement::prepare(db, fmt::format("INSERT INTO {} ({}) VALUES ({})", table, names, marks));
  if (!statement) return fail(std::move(statement.error()));
  for (const Json& row : content["rows"]) {
    if (!row.is_array() || row.size() != columns.size()) return bad("a row has not one value per column");
    statement->reset();
    for (size_t i = 0; i < row.size(); ++i) {
      const int index = static_cast<int>(i) + 1;
      const Json& value = row[i];
      Status bound;
      if (value.is_null()) {
        bound = statement->bindNull(index);
      } else if (value.is_number_integer()) {
        bound = statement->bindInt(index, value.get<int64_t>());
      } else if (value.is_string()) {
        bound = statement->bindText(index, value.get<std::string>());
      } else {
        return bad("a value is neither null, an integer nor text");
      }
      if (!bound) return bound;
    }
    if (auto status = statement->run(); !status) return status;
  }
  return {};
}

}  // namespace

Result<Store::ModelRows> Store::modelRows() const {
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": read the model's rows", path_)));
  };
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  ModelRows out;
  out.tables = Json::object();
  for (std::string_view table : kModelTables) {
    Json columns = Json::array();
    Json rows = Json::array();
    // Ordered by rowid: a table's rows come back in the order they were written.
    auto read = forEachRow(
        db_.get(), fmt::format("SELECT * FROM {} ORDER BY rowid", table), [&](sqlite3_stmt* s) -> Status {
          const int count = sqlite3_column_count(s);
          if (columns.empty())
            for (int i = 0; i < count; ++i) columns.push_back(sqlite3_column_name(s, i));
          Json row = Json::array();
          for (int i = 0; i < count; ++i) {
            switch (sqlite3_column_type(s, i)) {
              case SQLITE_NULL:
                row.push_back(nullptr);
                break;
              case SQLITE_INTEGER:
                row.push_back(sqlite3_column_int64(s, i));
                break;
              case SQLITE_TEXT:
                row.push_back(std::string(reinterpret_cast<const char*>(sqlite3_column_text(s, i)),
                                          static_cast<size_t>(sqlite3_column_bytes(s, i))));
                break;
              default:
                return fail(
                    internalError("table {}, column {}: neither null, an integer "
                                  "nor text",
                                  table, sqlite3_column_name(s, i)));
            }
          }
          rows.push_back(std::move(row));
          return {};
        });
    if (!read) return wrap(std::move(read.error()));
    out.tables[std::string(table)] = {{"columns", std::move(columns)}, {"rows", std::move(rows)}};
  }
  auto applied =
      forEachRow(db_.get(), "SELECT applied FROM cluster_model WHERE id = 1", [&](sqlite3_stmt* s) {
        out.through = static_cast<uint64_t>(sqlite3_column_int64(s, 0));
        return Status{};
      });
  if (!applied) return wrap(std::move(applied.error()));
  if (auto status = transaction->commit(); !status) return wrap(std::move(status.error()));
  return out;
}

Status Store::loadModelRows(const Json& tables, uint64_t through) {
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": load the model's rows", path_)));
  };
  if (!tables.is_object()) return wrap(invalidField("snapshot", "the tables are not a JSON object"));
  for (const auto& [name, content] : tables.items()) {
    bool known = false;
    for (std::string_view table : kModelTables) known = known || table == name;
    if (!known) return wrap(invalidField("snapshot", "table {} is not one of the model's", name));
  }
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  if (auto status = deleteModelRows(db_.get()); !status) return wrap(std::move(status.error()));
  for (std::string_view table : kModelTables) {
    auto content = tables.find(std::string(table));
    if (content == tables.end()) continue;
    if (auto status = insertTable(db_.get(), table, *content); !status)
      return wrap(std::move(status.error()));
  }
  if (auto status = writeApplied(db_.get(), through); !status) return wrap(std::move(status.error()));
  if (auto status = transaction->commit(); !status) return wrap(std::move(status.error()));
  return {};
}

Status Store::forgetModel() {
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": forget the model", path_)));
  };
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  if (auto status = deleteModelRows(db_.get()); !status) return wrap(std::move(status.error()));
  if (auto status = transaction->commit(); !status) return wrap(std::move(status.error()));
  return {};
}

}  // namespace corral::daemon
