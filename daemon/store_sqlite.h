// The SQLite layer under the Store (daemon/store.h), shared by its files (daemon/store*.cc): prepared
// statements, transactions, reading and binding rows, and the schema migration. Only those files include it.
#pragma once

#include <fmt/format.h>
#include <sqlite3.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "core/error.h"
#include "net/vpc.h"

namespace corral::daemon::sql {

// "INSERT INTO subnets (name, vpc, ...) VALUES ..." becomes "INSERT INTO subnets ...", a SELECT becomes
// "SELECT ... FROM subnets ...": enough to tell which statement failed without pasting a page of SQL.
std::string sqlSummary(std::string_view sql);

// `call("INSERT INTO subnets ..."): no such table: subnets`, with sqlite's own message.
Error sqliteError(sqlite3* db, std::string_view call, std::string_view sql);

struct FinalizeStatement {
  void operator()(sqlite3_stmt* statement) const { sqlite3_finalize(statement); }
};

// One prepared statement. Values are always bound, never formatted into the SQL.
class Statement {
 public:
  static Result<Statement> prepare(sqlite3* db, std::string_view sql) {
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(db, sql.data(), static_cast<int>(sql.size()), &raw, nullptr);
    Statement statement(db, sql, raw);
    if (rc != SQLITE_OK) return fail(sqliteError(db, "sqlite3_prepare_v2", sql));
    return statement;
  }

  Status bindText(int index, std::string_view text) {
    return check(
        sqlite3_bind_text(handle_.get(), index, text.data(), static_cast<int>(text.size()), SQLITE_TRANSIENT),
        "sqlite3_bind_text", index);
  }
  Status bindInt(int index, int64_t value) {
    return check(sqlite3_bind_int64(handle_.get(), index, value), "sqlite3_bind_int64", index);
  }
  Status bindNull(int index) {
    return check(sqlite3_bind_null(handle_.get(), index), "sqlite3_bind_null", index);
  }
  Status bindOptionalText(int index, const std::optional<std::string>& text) {
    return text ? bindText(index, *text) : bindNull(index);
  }
  Status bindOptionalInt(int index, std::optional<int64_t> value) {
    return value ? bindInt(index, *value) : bindNull(index);
  }

  // True when a row is ready to read, false when the statement is done.
  Result<bool> step() {
    int rc = sqlite3_step(handle_.get());
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return fail(sqliteError(db_, "sqlite3_step", sql_));
  }

  // Runs a statement that returns no rows.
  Status run() {
    auto row = step();
    if (!row) return fail(std::move(row.error()));
    if (*row)
      return fail(internalError("sqlite3_step(\"{}\"): returned a row where none was expected", sql_));
    return {};
  }

  // Makes the statement ready to run again with new values.
  void reset() {
    sqlite3_reset(handle_.get());
    sqlite3_clear_bindings(handle_.get());
  }

  sqlite3_stmt* get() const { return handle_.get(); }
  int changes() const { return sqlite3_changes(db_); }

 private:
  Statement(sqlite3* db, std::string_view sql, sqlite3_stmt* handle)
      : db_(db), sql_(sqlSummary(sql)), handle_(handle) {}

  Status check(int rc, std::string_view call, int index) {
    if (rc == SQLITE_OK) return {};
    return fail(internalError("{}(\"{}\", {}): {}", call, sql_, index, sqlite3_errmsg(db_)));
  }

  sqlite3* db_;
  std::string sql_;
  std::unique_ptr<sqlite3_stmt, FinalizeStatement> handle_;
};

// Runs SQL that binds nothing (pragmas, DDL, transaction control); several statements are allowed.
Status execute(sqlite3* db, std::string_view sql);

// A pragma that answers with one value, read as text.
Result<std::string> queryText(sqlite3* db, std::string_view sql);

Result<int> readUserVersion(sqlite3* db);

// A transaction that rolls back unless commit() succeeded, so every early return leaves the database as
// it was.
class Transaction {
 public:
  // BEGIN IMMEDIATE takes the write lock up front: a writer never fails halfway with SQLITE_BUSY after
  // reading, which a deferred transaction upgrading its lock can.
  static Result<Transaction> beginImmediate(sqlite3* db) { return begin(db, "BEGIN IMMEDIATE"); }
  // A read snapshot: every SELECT inside sees the same committed state.
  static Result<Transaction> beginRead(sqlite3* db) { return begin(db, "BEGIN DEFERRED"); }

  Transaction(Transaction&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  ~Transaction() { rollback(); }

  Status commit() {
    if (auto status = execute(db_, "COMMIT"); !status) {
      // The only constraint COMMIT checks is a deferred reference: the writes left one dangling.
      bool danglingReference = sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_FOREIGNKEY;
      rollback();  // a failed COMMIT (deferred foreign key, SQLITE_BUSY) leaves the transaction open
      if (danglingReference)
        return fail(std::move(status.error()).wrap("the changes leave a reference to a missing object"));
      return status;
    }
    db_ = nullptr;
    return {};
  }

 private:
  explicit Transaction(sqlite3* db) : db_(db) {}

  static Result<Transaction> begin(sqlite3* db, std::string_view sql) {
    if (auto status = execute(db, sql); !status) return fail(std::move(status.error()));
    return Transaction(db);
  }

  void rollback() {
    // After some errors (SQLITE_FULL, SQLITE_IOERR) sqlite has already rolled back on its own; a second
    // ROLLBACK would only fail with "no transaction is active".
    if (db_ != nullptr && sqlite3_get_autocommit(db_) == 0)
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    db_ = nullptr;
  }

  sqlite3* db_;
};

// Takes the database from its user_version to kSchemaVersion, one step per transaction (store_schema.cc).
Status migrate(sqlite3* db);

// ---- Reading rows ----

// One row being read, named for errors: `table subnets, row "web"`.
class RowReader {
 public:
  RowReader(sqlite3_stmt* statement, std::string_view table, std::string key)
      : statement_(statement), table_(table), key_(std::move(key)) {}

  // A row corral did not write: the database was edited by hand or damaged.
  template <class... Args>
  Error bad(std::string_view column, fmt::format_string<Args...> format, Args&&... args) const {
    return internalError("table {}, row {}: column {}: {}", table_, key_, column,
                         fmt::format(format, std::forward<Args>(args)...));
  }

  Result<std::string> text(int index, std::string_view column) const {
    if (sqlite3_column_type(statement_, index) != SQLITE_TEXT) return fail(bad(column, "is not text"));
    return columnText(index);
  }
  Result<std::optional<std::string>> optionalText(int index, std::string_view column) const {
    if (sqlite3_column_type(statement_, index) == SQLITE_NULL) return std::optional<std::string>();
    auto value = text(index, column);
    if (!value) return fail(std::move(value.error()));
    return std::optional<std::string>(std::move(*value));
  }
  Result<int64_t> integer(int index, std::string_view column) const {
    if (sqlite3_column_type(statement_, index) != SQLITE_INTEGER)
      return fail(bad(column, "is not an integer"));
    return sqlite3_column_int64(statement_, index);
  }
  Result<std::optional<int64_t>> optionalInteger(int index, std::string_view column) const {
    if (sqlite3_column_type(statement_, index) == SQLITE_NULL) return std::optional<int64_t>();
    auto value = integer(index, column);
    if (!value) return fail(std::move(value.error()));
    return std::optional<int64_t>(*value);
  }
  Result<bool> boolean(int index, std::string_view column) const {
    auto value = integer(index, column);
    if (!value) return fail(std::move(value.error()));
    if (*value != 0 && *value != 1) return fail(bad(column, "{} is not 0 or 1", *value));
    return *value == 1;
  }
  Result<int> smallInteger(int index, std::string_view column) const {
    auto value = integer(index, column);
    if (!value) return fail(std::move(value.error()));
    if (*value < std::numeric_limits<int>::min() || *value > std::numeric_limits<int>::max()) {
      return fail(bad(column, "{} is out of range", *value));
    }
    return static_cast<int>(*value);
  }
  Result<net::Cidr> cidr(int index, std::string_view column) const {
    auto value = text(index, column);
    if (!value) return fail(std::move(value.error()));
    return parsed(net::Cidr::parse(*value, column), column);
  }
  Result<std::optional<net::Cidr>> optionalCidr(int index, std::string_view column) const {
    auto value = optionalText(index, column);
    if (!value) return fail(std::move(value.error()));
    if (!*value) return std::optional<net::Cidr>();
    auto cidr = parsed(net::Cidr::parse(**value, column), column);
    if (!cidr) return fail(std::move(cidr.error()));
    return std::optional<net::Cidr>(*cidr);
  }
  // An enum stored by its name, read back with the model's own parse function.
  template <class Enum>
  Result<Enum> name(int index, std::string_view column,
                    Result<Enum> (*parse)(std::string_view, std::string_view)) const {
    auto value = text(index, column);
    if (!value) return fail(std::move(value.error()));
    return parsed(parse(*value, column), column);
  }
  // Both port columns or neither.
  Result<std::optional<net::PortRange>> ports(int fromIndex, int toIndex) const {
    auto from = optionalInteger(fromIndex, "from_port");
    if (!from) return fail(std::move(from.error()));
    auto to = optionalInteger(toIndex, "to_port");
    if (!to) return fail(std::move(to.error()));
    if (!*from && !*to) return std::optional<net::PortRange>();
    if (!*from || !*to)
      return fail(bad("from_port", "from_port and to_port must both be set or both be NULL"));
    for (auto [column, port] : {std::pair{"from_port", **from}, std::pair{"to_port", **to}}) {
      if (port < 0 || port > 65535) return fail(bad(column, "{} is not a port", port));
    }
    return std::optional<net::PortRange>(
        net::PortRange{static_cast<uint16_t>(**from), static_cast<uint16_t>(**to)});
  }

 private:
  std::string columnText(int index) const {
    const unsigned char* text = sqlite3_column_text(statement_, index);
    int size = sqlite3_column_bytes(statement_, index);
    return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text), size);
  }
  template <class T>
  Result<T> parsed(Result<T> value, std::string_view column) const {
    if (!value) return fail(bad(column, "{}", value.error().message()));
    return value;
  }

  sqlite3_stmt* statement_;
  std::string_view table_;
  std::string key_;
};

// A column's value as text for naming its row in an error, whatever its type.
std::string keyColumn(sqlite3_stmt* statement, int index);

// Runs `sql` and hands each row to `readRow(sqlite3_stmt*)`, which returns a Status.
template <class ReadRow>
Status forEachRow(sqlite3* db, std::string_view sql, ReadRow&& readRow) {
  auto statement = Statement::prepare(db, sql);
  if (!statement) return fail(std::move(statement.error()));
  for (;;) {
    auto row = statement->step();
    if (!row) return fail(std::move(row.error()));
    if (!*row) return {};
    if (auto status = readRow(statement->get()); !status) return status;
  }
}

// Every field of every loaded object, unwrapping each Result as it goes.
#define CORRAL_READ(target, expression)                  \
  do {                                                   \
    auto value_ = (expression);                          \
    if (!value_) return fail(std::move(value_.error())); \
    target = std::move(*value_);                         \
  } while (false)

// ---- Writing rows ----

// Binds `values` to parameters 1..N in order and runs the statement once.
class Binder {
 public:
  explicit Binder(Statement& statement) : statement_(statement) {}
  Binder& text(std::string_view value) {
    return add([&](int i) { return statement_.bindText(i, value); });
  }
  Binder& integer(int64_t value) {
    return add([&](int i) { return statement_.bindInt(i, value); });
  }
  Binder& optionalText(const std::optional<std::string>& value) {
    return add([&](int i) { return statement_.bindOptionalText(i, value); });
  }
  Binder& optionalInteger(std::optional<int64_t> value) {
    return add([&](int i) { return statement_.bindOptionalInt(i, value); });
  }
  Status run() {
    if (!status_) return status_;
    Status result = statement_.run();
    statement_.reset();
    return result;
  }

 private:
  template <class Bind>
  Binder& add(Bind&& bind) {
    if (status_) status_ = bind(++index_);
    return *this;
  }
  Statement& statement_;
  int index_ = 0;
  Status status_;
};

// Runs one bound statement: prepare, bind in order, step.
template <class Bind>
Status runBound(sqlite3* db, std::string_view sql, Bind&& bind) {
  auto statement = Statement::prepare(db, sql);
  if (!statement) return fail(std::move(statement.error()));
  Binder binder(*statement);
  bind(binder);
  return binder.run();
}

}  // namespace corral::daemon::sql
