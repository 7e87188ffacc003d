// corrald's SQLite store: opening and migrating the database, reading the whole topology back and writing
// each changeset in one transaction. One relational table per object kind, child rows cascade from parents.
#include "daemon/store.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <string_view>
#include <utility>
#include <vector>

#include "core/unique_fd.h"

namespace corral::daemon {
namespace {

// A lock held by another connection (a sqlite3 shell looking at the state, say) is waited out for this
// long before a mutation fails with "database is locked".
constexpr int kBusyTimeoutMs = 5000;

// Schema migrations, in order: step i takes user_version i to i + 1. A released step is never edited;
// a schema change is a new step appended here (and kSchemaVersion bumped in store.h).
//
// Why the constraints look the way they do:
// - Child rows (routes, rules) reference their parent ON DELETE CASCADE, so deleting a parent row is
//   enough. Their `position` keeps the model's vector order exactly, whatever ordering rule it uses.
// - References between objects (a subnet's VPC and route table, a NAT gateway's subnet, a rule's peer
//   group) are DEFERRABLE INITIALLY DEFERRED: checked at COMMIT, so a changeset may list its objects in any
//   order, yet one that would leave a dangling reference fails as a whole. A route's target is not a
//   foreign key (it lives in one of two tables, chosen by its type); loadTopology()'s integrity check
//   covers it. Referencing columns are indexed so that deleting a parent does not scan the whole table.
// - STRICT tables refuse a value of the wrong type, so a row's types are those this code wrote.
constexpr std::string_view kMigrations[] = {
    // 0 -> 1: the VPC model.
    R"sql(
CREATE TABLE vpcs (
  name TEXT PRIMARY KEY NOT NULL,
  cidr TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE route_tables (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  is_main INTEGER NOT NULL CHECK (is_main IN (0, 1)),
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX route_tables_by_vpc ON route_tables(vpc);

CREATE TABLE routes (
  route_table TEXT NOT NULL REFERENCES route_tables(name) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  destination TEXT NOT NULL,
  target_type TEXT NOT NULL,
  target_name TEXT,
  PRIMARY KEY (route_table, destination),
  UNIQUE (route_table, position)
) STRICT;

CREATE TABLE network_acls (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  is_default INTEGER NOT NULL CHECK (is_default IN (0, 1)),
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX network_acls_by_vpc ON network_acls(vpc);

CREATE TABLE network_acl_rules (
  network_acl TEXT NOT NULL REFERENCES network_acls(name) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  number INTEGER NOT NULL,
  direction TEXT NOT NULL,
  action TEXT NOT NULL,
  protocol TEXT NOT NULL,
  from_port INTEGER CHECK (from_port BETWEEN 0 AND 65535),
  to_port INTEGER CHECK (to_port BETWEEN 0 AND 65535),
  cidr TEXT NOT NULL,
  PRIMARY KEY (network_acl, direction, number),
  UNIQUE (network_acl, position),
  CHECK ((from_port IS NULL) = (to_port IS NULL))
) STRICT;

CREATE TABLE subnets (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  cidr TEXT NOT NULL,
  availability_zone TEXT NOT NULL,
  map_public_ip INTEGER NOT NULL CHECK (map_public_ip IN (0, 1)),
  route_table TEXT NOT NULL REFERENCES route_tables(name) DEFERRABLE INITIALLY DEFERRED,
  network_acl TEXT NOT NULL REFERENCES network_acls(name) DEFERRABLE INITIALLY DEFERRED,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX subnets_by_vpc ON subnets(vpc);
CREATE INDEX subnets_by_route_table ON subnets(route_table);
CREATE INDEX subnets_by_network_acl ON subnets(network_acl);

CREATE TABLE internet_gateways (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX internet_gateways_by_vpc ON internet_gateways(vpc);

CREATE TABLE nat_gateways (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  subnet TEXT NOT NULL REFERENCES subnets(name) DEFERRABLE INITIALLY DEFERRED,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX nat_gateways_by_vpc ON nat_gateways(vpc);
CREATE INDEX nat_gateways_by_subnet ON nat_gateways(subnet);

CREATE TABLE security_groups (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  description TEXT NOT NULL,
  is_default INTEGER NOT NULL CHECK (is_default IN (0, 1)),
  next_rule_id INTEGER NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX security_groups_by_vpc ON security_groups(vpc);

CREATE TABLE security_group_rules (
  security_group TEXT NOT NULL REFERENCES security_groups(name) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  id INTEGER NOT NULL,
  direction TEXT NOT NULL,
  protocol TEXT NOT NULL,
  from_port INTEGER CHECK (from_port BETWEEN 0 AND 65535),
  to_port INTEGER CHECK (to_port BETWEEN 0 AND 65535),
  cidr TEXT,
  peer_group TEXT REFERENCES security_groups(name) DEFERRABLE INITIALLY DEFERRED,
  description TEXT NOT NULL,
  PRIMARY KEY (security_group, id),
  UNIQUE (security_group, position),
  CHECK ((from_port IS NULL) = (to_port IS NULL))
) STRICT;
CREATE INDEX security_group_rules_by_peer_group ON security_group_rules(peer_group);
)sql",
    // 1 -> 2: instances (containers now, VMs later). The spec is the API's own JSON, so a field added to
    // the spec needs no migration.
    R"sql(
CREATE TABLE instances (
  name TEXT PRIMARY KEY NOT NULL,
  kind TEXT NOT NULL,
  spec TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('created', 'running', 'stopped')),
  pid INTEGER,
  pid_start_time INTEGER,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  exit_code INTEGER,
  exit_signal INTEGER,
  exit_reason TEXT CHECK (exit_reason IN ('exited', 'signaled', 'oom-killed', 'stopped', 'lost')),
  exit_note TEXT,
  boot_steps TEXT NOT NULL,
  log_path TEXT NOT NULL
) STRICT;
)sql",
    // 2 -> 3: VMs. A VM is "starting" between its domain starting and its guest saying ready, and stops
    // for reasons of its own (the guest powered off, crashed, was destroyed outside corral, never became
    // ready). SQLite cannot change a CHECK in place: the table is rebuilt, rows kept.
    R"sql(
CREATE TABLE instances_v3 (
  name TEXT PRIMARY KEY NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('container', 'vm')),
  spec TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('created', 'starting', 'running', 'stopped')),
  pid INTEGER,
  pid_start_time INTEGER,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  exit_code INTEGER,
  exit_signal INTEGER,
  exit_reason TEXT CHECK (exit_reason IN ('exited', 'signaled', 'oom-killed', 'stopped', 'lost', 'shutdown',
                                          'crashed', 'destroyed', 'failed', 'other', 'boot-timeout')),
  exit_note TEXT,
  boot_steps TEXT NOT NULL,
  log_path TEXT NOT NULL
) STRICT;
INSERT INTO instances_v3 SELECT * FROM instances;
DROP TABLE instances;
ALTER TABLE instances_v3 RENAME TO instances;
)sql",
    // 3 -> 4: the results of `corral compare`, kept for the dashboard and GET /v1/comparisons. The result
    // is the CLI's own JSON, so a field added to it needs no migration. Only the oldest rows are ever
    // deleted,
    // so ids keep growing without AUTOINCREMENT.
    R"sql(
CREATE TABLE comparisons (
  id INTEGER PRIMARY KEY,
  created_at INTEGER NOT NULL,
  result TEXT NOT NULL
) STRICT;
)sql",
    // 4 -> 5: the OOM kills in a container's cgroup (a child's, not only PID 1's), kept once it stops.
    R"sql(
ALTER TABLE instances ADD COLUMN oom_kills INTEGER NOT NULL DEFAULT 0;
)sql",
    // 5 -> 6: the host id range a container with a user namespace was given (its first id; each range has
    // 65536 ids), kept with the instance so a restarted corrald hands it to no one else. Not UNIQUE: the
    // allocator keeps ranges apart, and INSERT OR REPLACE would silently drop the other row.
    R"sql(
ALTER TABLE instances ADD COLUMN user_ns_start INTEGER CHECK (user_ns_start BETWEEN 65536 AND 4294901759);
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion, "one migration step per schema version");

// "INSERT INTO subnets (name, vpc, ...) VALUES ..." becomes "INSERT INTO subnets ...", a SELECT becomes
// "SELECT ... FROM subnets ...": enough to tell which statement failed without pasting a page of SQL.
std::string sqlSummary(std::string_view sql) {
  std::string collapsed;
  for (char c : sql) {
    bool space = c == ' ' || c == '\n' || c == '\t';
    if (space && (collapsed.empty() || collapsed.back() == ' ')) continue;
    collapsed.push_back(space ? ' ' : c);
  }
  while (!collapsed.empty() && collapsed.back() == ' ') collapsed.pop_back();
  constexpr size_t kShort = 40;
  if (collapsed.size() <= kShort) return collapsed;
  auto wordsFrom = [&](size_t start, size_t count) {
    size_t end = start;
    for (size_t word = 0; word < count && end != std::string::npos; ++word)
      end = collapsed.find(' ', end + 1);
    return collapsed.substr(start, end == std::string::npos ? std::string::npos : end - start);
  };
  if (collapsed.starts_with("SELECT ")) {
    size_t from = collapsed.find(" FROM ");
    if (from != std::string::npos) return "SELECT ..." + wordsFrom(from, 2) + " ...";
  }
  return wordsFrom(0, 3) + " ...";
}

// `call("INSERT INTO subnets ..."): no such table: subnets`, with sqlite's own message.
Error sqliteError(sqlite3* db, std::string_view call, std::string_view sql) {
  return internalError("{}(\"{}\"): {}", call, sqlSummary(sql), sqlite3_errmsg(db));
}

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
Status execute(sqlite3* db, std::string_view sql) {
  std::string text(sql);  // sqlite3_exec wants a terminated string
  if (sqlite3_exec(db, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail(sqliteError(db, "sqlite3_exec", sql));
  }
  return {};
}

// A pragma that answers with one value, read as text.
Result<std::string> queryText(sqlite3* db, std::string_view sql) {
  auto statement = Statement::prepare(db, sql);
  if (!statement) return fail(std::move(statement.error()));
  auto row = statement->step();
  if (!row) return fail(std::move(row.error()));
  if (!*row) return fail(internalError("sqlite3_step(\"{}\"): returned no row", sqlSummary(sql)));
  const unsigned char* text = sqlite3_column_text(statement->get(), 0);
  return text == nullptr ? std::string() : std::string(reinterpret_cast<const char*>(text));
}

Result<int> readUserVersion(sqlite3* db) {
  auto statement = Statement::prepare(db, "PRAGMA user_version");
  if (!statement) return fail(std::move(statement.error()));
  auto row = statement->step();
  if (!row) return fail(std::move(row.error()));
  if (!*row) return fail(internalError("PRAGMA user_version returned no row"));
  return sqlite3_column_int(statement->get(), 0);
}

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

Status migrate(sqlite3* db) {
  for (;;) {
    // The version is read inside the write transaction, so two processes opening a fresh database at
    // once cannot both run the same step.
    auto transaction = Transaction::beginImmediate(db);
    if (!transaction) return fail(std::move(transaction.error()));
    auto version = readUserVersion(db);
    if (!version) return fail(std::move(version.error()));
    if (*version >= kSchemaVersion) return transaction->commit();
    if (*version < 0) return fail(internalError("user_version is {}, which no corral writes", *version));
    if (auto status = execute(db, kMigrations[*version]); !status) {
      return fail(
          std::move(status.error()).wrap(fmt::format("migrate schema {} -> {}", *version, *version + 1)));
    }
    // PRAGMA takes no bound parameters; the value is our own integer, not input.
    if (auto status = execute(db, fmt::format("PRAGMA user_version = {}", *version + 1)); !status) {
      return fail(std::move(status.error()));
    }
    if (auto status = transaction->commit(); !status) return fail(std::move(status.error()));
  }
}

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
std::string keyColumn(sqlite3_stmt* statement, int index) {
  const unsigned char* text = sqlite3_column_text(statement, index);
  return text == nullptr ? std::string("NULL") : std::string(reinterpret_cast<const char*>(text));
}

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

// Finds the parent a child row belongs to; a child without one was not written by corral.
template <class Parent>
Result<Parent*> parentOf(std::map<std::string, Parent, std::less<>>& parents, const RowReader& row,
                         std::string_view column, const std::string& name) {
  auto it = parents.find(name);
  if (it == parents.end()) return fail(row.bad(column, "\"{}\" does not exist", name));
  return &it->second;
}

Result<net::Topology> readTopology(sqlite3* db) {
  net::Topology topology;

  auto vpcs =
      forEachRow(db, "SELECT name, cidr, created_at FROM vpcs ORDER BY name", [&](sqlite3_stmt* s) -> Status {
        net::Vpc vpc;
        vpc.name = keyColumn(s, 0);
        RowReader row(s, "vpcs", fmt::format("\"{}\"", vpc.name));
        CORRAL_READ(vpc.name, row.text(0, "name"));
        CORRAL_READ(vpc.cidr, row.cidr(1, "cidr"));
        CORRAL_READ(vpc.createdAt, row.integer(2, "created_at"));
        topology.insert(std::move(vpc));
        return {};
      });
  if (!vpcs) return fail(std::move(vpcs.error()));

  std::map<std::string, net::RouteTable, std::less<>> routeTables;
  auto tables = forEachRow(db, "SELECT name, vpc, is_main, created_at FROM route_tables ORDER BY name",
                           [&](sqlite3_stmt* s) -> Status {
                             net::RouteTable table;
                             table.name = keyColumn(s, 0);
                             RowReader row(s, "route_tables", fmt::format("\"{}\"", table.name));
                             CORRAL_READ(table.name, row.text(0, "name"));
                             CORRAL_READ(table.vpc, row.text(1, "vpc"));
                             CORRAL_READ(table.isMain, row.boolean(2, "is_main"));
                             CORRAL_READ(table.createdAt, row.integer(3, "created_at"));
                             routeTables.emplace(table.name, std::move(table));
                             return {};
                           });
  if (!tables) return fail(std::move(tables.error()));

  auto routes =
      forEachRow(db,
                 "SELECT route_table, destination, target_type, target_name FROM routes "
                 "ORDER BY route_table, position",
                 [&](sqlite3_stmt* s) -> Status {
                   RowReader row(s, "routes", fmt::format("(\"{}\", {})", keyColumn(s, 0), keyColumn(s, 1)));
                   std::string tableName;
                   CORRAL_READ(tableName, row.text(0, "route_table"));
                   net::RouteTable* table = nullptr;
                   CORRAL_READ(table, parentOf(routeTables, row, "route_table", tableName));
                   net::Route route;
                   CORRAL_READ(route.destination, row.cidr(1, "destination"));
                   CORRAL_READ(route.target.type, row.name(2, "target_type", &net::parseRouteTargetType));
                   std::optional<std::string> targetName;
                   CORRAL_READ(targetName, row.optionalText(3, "target_name"));
                   route.target.name = targetName.value_or("");
                   table->routes.push_back(std::move(route));
                   return {};
                 });
  if (!routes) return fail(std::move(routes.error()));
  for (auto& [name, table] : routeTables) topology.insert(std::move(table));

  std::map<std::string, net::NetworkAcl, std::less<>> networkAcls;
  auto acls = forEachRow(db, "SELECT name, vpc, is_default, created_at FROM network_acls ORDER BY name",
                         [&](sqlite3_stmt* s) -> Status {
                           net::NetworkAcl acl;
                           acl.name = keyColumn(s, 0);
                           RowReader row(s, "network_acls", fmt::format("\"{}\"", acl.name));
                           CORRAL_READ(acl.name, row.text(0, "name"));
                           CORRAL_READ(acl.vpc, row.text(1, "vpc"));
                           CORRAL_READ(acl.isDefault, row.boolean(2, "is_default"));
                           CORRAL_READ(acl.createdAt, row.integer(3, "created_at"));
                           networkAcls.emplace(acl.name, std::move(acl));
                           return {};
                         });
  if (!acls) return fail(std::move(acls.error()));

  auto aclRules = forEachRow(
      db,
      "SELECT network_acl, number, direction, action, protocol, from_port, to_port, cidr "
      "FROM network_acl_rules ORDER BY network_acl, position",
      [&](sqlite3_stmt* s) -> Status {
        RowReader row(s, "network_acl_rules",
                      fmt::format("(\"{}\", {} {})", keyColumn(s, 0), keyColumn(s, 2), keyColumn(s, 1)));
        std::string aclName;
        CORRAL_READ(aclName, row.text(0, "network_acl"));
        net::NetworkAcl* acl = nullptr;
        CORRAL_READ(acl, parentOf(networkAcls, row, "network_acl", aclName));
        net::NetworkAclRule rule;
        CORRAL_READ(rule.number, row.smallInteger(1, "number"));
        CORRAL_READ(rule.direction, row.name(2, "direction", &net::parseDirection));
        CORRAL_READ(rule.action, row.name(3, "action", &net::parseRuleAction));
        CORRAL_READ(rule.protocol, row.name(4, "protocol", &net::parseProtocol));
        CORRAL_READ(rule.ports, row.ports(5, 6));
        CORRAL_READ(rule.cidr, row.cidr(7, "cidr"));
        acl->rules.push_back(std::move(rule));
        return {};
      });
  if (!aclRules) return fail(std::move(aclRules.error()));
  for (auto& [name, acl] : networkAcls) topology.insert(std::move(acl));

  auto subnets = forEachRow(
      db,
      "SELECT name, vpc, cidr, availability_zone, map_public_ip, route_table, network_acl, created_at "
      "FROM subnets ORDER BY name",
      [&](sqlite3_stmt* s) -> Status {
        net::Subnet subnet;
        subnet.name = keyColumn(s, 0);
        RowReader row(s, "subnets", fmt::format("\"{}\"", subnet.name));
        CORRAL_READ(subnet.name, row.text(0, "name"));
        CORRAL_READ(subnet.vpc, row.text(1, "vpc"));
        CORRAL_READ(subnet.cidr, row.cidr(2, "cidr"));
        CORRAL_READ(subnet.availabilityZone, row.text(3, "availability_zone"));
        CORRAL_READ(subnet.mapPublicIp, row.boolean(4, "map_public_ip"));
        CORRAL_READ(subnet.routeTable, row.text(5, "route_table"));
        CORRAL_READ(subnet.networkAcl, row.text(6, "network_acl"));
        CORRAL_READ(subnet.createdAt, row.integer(7, "created_at"));
        topology.insert(std::move(subnet));
        return {};
      });
  if (!subnets) return fail(std::move(subnets.error()));

  auto internetGateways =
      forEachRow(db, "SELECT name, vpc, created_at FROM internet_gateways ORDER BY name",
                 [&](sqlite3_stmt* s) -> Status {
                   net::InternetGateway gateway;
                   gateway.name = keyColumn(s, 0);
                   RowReader row(s, "internet_gateways", fmt::format("\"{}\"", gateway.name));
                   CORRAL_READ(gateway.name, row.text(0, "name"));
                   CORRAL_READ(gateway.vpc, row.text(1, "vpc"));
                   CORRAL_READ(gateway.createdAt, row.integer(2, "created_at"));
                   topology.insert(std::move(gateway));
                   return {};
                 });
  if (!internetGateways) return fail(std::move(internetGateways.error()));

  auto natGateways = forEachRow(db, "SELECT name, vpc, subnet, created_at FROM nat_gateways ORDER BY name",
                                [&](sqlite3_stmt* s) -> Status {
                                  net::NatGateway gateway;
                                  gateway.name = keyColumn(s, 0);
                                  RowReader row(s, "nat_gateways", fmt::format("\"{}\"", gateway.name));
                                  CORRAL_READ(gateway.name, row.text(0, "name"));
                                  CORRAL_READ(gateway.vpc, row.text(1, "vpc"));
                                  CORRAL_READ(gateway.subnet, row.text(2, "subnet"));
                                  CORRAL_READ(gateway.createdAt, row.integer(3, "created_at"));
                                  topology.insert(std::move(gateway));
                                  return {};
                                });
  if (!natGateways) return fail(std::move(natGateways.error()));

  std::map<std::string, net::SecurityGroup, std::less<>> securityGroups;
  auto groups = forEachRow(db,
                           "SELECT name, vpc, description, is_default, next_rule_id, created_at FROM "
                           "security_groups ORDER BY name",
                           [&](sqlite3_stmt* s) -> Status {
                             net::SecurityGroup group;
                             group.name = keyColumn(s, 0);
                             RowReader row(s, "security_groups", fmt::format("\"{}\"", group.name));
                             CORRAL_READ(group.name, row.text(0, "name"));
                             CORRAL_READ(group.vpc, row.text(1, "vpc"));
                             CORRAL_READ(group.description, row.text(2, "description"));
                             CORRAL_READ(group.isDefault, row.boolean(3, "is_default"));
                             CORRAL_READ(group.nextRuleId, row.integer(4, "next_rule_id"));
                             CORRAL_READ(group.createdAt, row.integer(5, "created_at"));
                             securityGroups.emplace(group.name, std::move(group));
                             return {};
                           });
  if (!groups) return fail(std::move(groups.error()));

  auto groupRules = forEachRow(
      db,
      "SELECT security_group, id, direction, protocol, from_port, to_port, cidr, peer_group, description "
      "FROM security_group_rules ORDER BY security_group, position",
      [&](sqlite3_stmt* s) -> Status {
        RowReader row(s, "security_group_rules",
                      fmt::format("(\"{}\", id {})", keyColumn(s, 0), keyColumn(s, 1)));
        std::string groupName;
        CORRAL_READ(groupName, row.text(0, "security_group"));
        net::SecurityGroup* group = nullptr;
        CORRAL_READ(group, parentOf(securityGroups, row, "security_group", groupName));
        net::SecurityGroupRule rule;
        CORRAL_READ(rule.id, row.integer(1, "id"));
        CORRAL_READ(rule.direction, row.name(2, "direction", &net::parseDirection));
        CORRAL_READ(rule.protocol, row.name(3, "protocol", &net::parseProtocol));
        CORRAL_READ(rule.ports, row.ports(4, 5));
        CORRAL_READ(rule.cidr, row.optionalCidr(6, "cidr"));
        CORRAL_READ(rule.peerGroup, row.optionalText(7, "peer_group"));
        CORRAL_READ(rule.description, row.text(8, "description"));
        group->rules.push_back(std::move(rule));
        return {};
      });
  if (!groupRules) return fail(std::move(groupRules.error()));
  for (auto& [name, group] : securityGroups) topology.insert(std::move(group));

  return topology;
}

#undef CORRAL_READ

// ---- Writing objects ----

std::optional<int64_t> portFrom(const std::optional<net::PortRange>& ports) {
  return ports ? std::optional<int64_t>(ports->from) : std::nullopt;
}
std::optional<int64_t> portTo(const std::optional<net::PortRange>& ports) {
  return ports ? std::optional<int64_t>(ports->to) : std::nullopt;
}
std::optional<std::string> cidrText(const std::optional<net::Cidr>& cidr) {
  return cidr ? std::optional<std::string>(cidr->str()) : std::nullopt;
}

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

// Parents are written with an UPSERT, not INSERT OR REPLACE: REPLACE deletes the old row first, and that
// delete cascades to the children and counts against deferred references to it. An UPSERT updates in
// place; the children are then rewritten whole (delete all, insert all), so the stored rows equal the
// object exactly whether it was new or not.
template <class Child, class BindChild>
Status rewriteChildren(sqlite3* db, std::string_view deleteSql, std::string_view insertSql,
                       const std::string& parent, const std::vector<Child>& children, BindChild&& bindChild) {
  if (auto status = runBound(db, deleteSql, [&](Binder& b) { b.text(parent); }); !status) return status;
  auto insert = Statement::prepare(db, insertSql);
  if (!insert) return fail(std::move(insert.error()));
  for (size_t position = 0; position < children.size(); ++position) {
    Binder binder(*insert);
    binder.text(parent).integer(static_cast<int64_t>(position));
    bindChild(binder, children[position]);
    if (auto status = binder.run(); !status) return status;
  }
  return {};
}

Status writeObject(sqlite3* db, const net::Vpc& vpc) {
  return runBound(db,
                  "INSERT INTO vpcs (name, cidr, created_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET cidr = excluded.cidr, created_at = excluded.created_at",
                  [&](Binder& b) { b.text(vpc.name).text(vpc.cidr.str()).integer(vpc.createdAt); });
}

Status writeObject(sqlite3* db, const net::Subnet& subnet) {
  return runBound(db,
                  "INSERT INTO subnets (name, vpc, cidr, availability_zone, map_public_ip, route_table, "
                  "network_acl, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, cidr = excluded.cidr, "
                  "availability_zone = excluded.availability_zone, map_public_ip = excluded.map_public_ip, "
                  "route_table = excluded.route_table, network_acl = excluded.network_acl, "
                  "created_at = excluded.created_at",
                  [&](Binder& b) {
                    b.text(subnet.name)
                        .text(subnet.vpc)
                        .text(subnet.cidr.str())
                        .text(subnet.availabilityZone)
                        .integer(subnet.mapPublicIp ? 1 : 0)
                        .text(subnet.routeTable)
                        .text(subnet.networkAcl)
                        .integer(subnet.createdAt);
                  });
}

Status writeObject(sqlite3* db, const net::RouteTable& table) {
  auto status =
      runBound(db,
               "INSERT INTO route_tables (name, vpc, is_main, created_at) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, is_main = excluded.is_main, "
               "created_at = excluded.created_at",
               [&](Binder& b) {
                 b.text(table.name).text(table.vpc).integer(table.isMain ? 1 : 0).integer(table.createdAt);
               });
  if (!status) return status;
  return rewriteChildren(
      db, "DELETE FROM routes WHERE route_table = ?",
      "INSERT INTO routes (route_table, position, destination, target_type, target_name) "
      "VALUES (?, ?, ?, ?, ?)",
      table.name, table.routes, [](Binder& b, const net::Route& route) {
        b.text(route.destination.str())
            .text(net::routeTargetTypeName(route.target.type))
            .optionalText(route.target.name.empty() ? std::nullopt : std::optional(route.target.name));
      });
}

Status writeObject(sqlite3* db, const net::InternetGateway& gateway) {
  return runBound(db,
                  "INSERT INTO internet_gateways (name, vpc, created_at) VALUES (?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, created_at = excluded.created_at",
                  [&](Binder& b) { b.text(gateway.name).text(gateway.vpc).integer(gateway.createdAt); });
}

Status writeObject(sqlite3* db, const net::NatGateway& gateway) {
  return runBound(db,
                  "INSERT INTO nat_gateways (name, vpc, subnet, created_at) VALUES (?, ?, ?, ?) "
                  "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, subnet = excluded.subnet, "
                  "created_at = excluded.created_at",
                  [&](Binder& b) {
                    b.text(gateway.name).text(gateway.vpc).text(gateway.subnet).integer(gateway.createdAt);
                  });
}

Status writeObject(sqlite3* db, const net::SecurityGroup& group) {
  auto status =
      runBound(db,
               "INSERT INTO security_groups (name, vpc, description, is_default, next_rule_id, created_at) "
               "VALUES (?, ?, ?, ?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, description = excluded.description, "
               "is_default = excluded.is_default, next_rule_id = excluded.next_rule_id, "
               "created_at = excluded.created_at",
               [&](Binder& b) {
                 b.text(group.name)
                     .text(group.vpc)
                     .text(group.description)
                     .integer(group.isDefault ? 1 : 0)
                     .integer(group.nextRuleId)
                     .integer(group.createdAt);
               });
  if (!status) return status;
  return rewriteChildren(
      db, "DELETE FROM security_group_rules WHERE security_group = ?",
      "INSERT INTO security_group_rules (security_group, position, id, direction, protocol, "
      "from_port, to_port, cidr, peer_group, description) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
      group.name, group.rules, [](Binder& b, const net::SecurityGroupRule& rule) {
        b.integer(rule.id)
            .text(net::directionName(rule.direction))
            .text(net::protocolName(rule.protocol))
            .optionalInteger(portFrom(rule.ports))
            .optionalInteger(portTo(rule.ports))
            .optionalText(cidrText(rule.cidr))
            .optionalText(rule.peerGroup)
            .text(rule.description);
      });
}

Status writeObject(sqlite3* db, const net::NetworkAcl& acl) {
  auto status =
      runBound(db,
               "INSERT INTO network_acls (name, vpc, is_default, created_at) VALUES (?, ?, ?, ?) "
               "ON CONFLICT (name) DO UPDATE SET vpc = excluded.vpc, is_default = excluded.is_default, "
               "created_at = excluded.created_at",
               [&](Binder& b) {
                 b.text(acl.name).text(acl.vpc).integer(acl.isDefault ? 1 : 0).integer(acl.createdAt);
               });
  if (!status) return status;
  return rewriteChildren(db, "DELETE FROM network_acl_rules WHERE network_acl = ?",
                         "INSERT INTO network_acl_rules (network_acl, position, number, direction, action, "
                         "protocol, from_port, to_port, cidr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         acl.name, acl.rules, [](Binder& b, const net::NetworkAclRule& rule) {
                           b.integer(rule.number)
                               .text(net::directionName(rule.direction))
                               .text(net::ruleActionName(rule.action))
                               .text(net::protocolName(rule.protocol))
                               .optionalInteger(portFrom(rule.ports))
                               .optionalInteger(portTo(rule.ports))
                               .text(rule.cidr.str());
                         });
}

// The table that holds a kind's objects; the children go with it by cascade.
std::string_view tableOf(net::ObjectKind kind) {
  switch (kind) {
    case net::ObjectKind::Vpc:
      return "vpcs";
    case net::ObjectKind::Subnet:
      return "subnets";
    case net::ObjectKind::RouteTable:
      return "route_tables";
    case net::ObjectKind::InternetGateway:
      return "internet_gateways";
    case net::ObjectKind::NatGateway:
      return "nat_gateways";
    case net::ObjectKind::SecurityGroup:
      return "security_groups";
    case net::ObjectKind::NetworkAcl:
      return "network_acls";
  }
  return "";
}

// Calls `use` with the object `ref` names in `topology` and returns its result, or false when the topology
// does not hold it.
template <class Use>
Result<bool> withObject(const net::Topology& topology, const net::ObjectRef& ref, Use&& use) {
  switch (ref.kind) {
    case net::ObjectKind::Vpc:
      if (auto* object = topology.findVpc(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::Subnet:
      if (auto* object = topology.findSubnet(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::RouteTable:
      if (auto* object = topology.findRouteTable(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::InternetGateway:
      if (auto* object = topology.findInternetGateway(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::NatGateway:
      if (auto* object = topology.findNatGateway(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::SecurityGroup:
      if (auto* object = topology.findSecurityGroup(ref.name)) return use(*object);
      return false;
    case net::ObjectKind::NetworkAcl:
      if (auto* object = topology.findNetworkAcl(ref.name)) return use(*object);
      return false;
  }
  return false;
}

Status upsertObject(sqlite3* db, const net::Topology& after, const net::ObjectRef& ref) {
  auto found = withObject(after, ref, [&](const auto& object) -> Result<bool> {
    if (auto status = writeObject(db, object); !status) return fail(std::move(status.error()));
    return true;
  });
  if (!found) return fail(std::move(found.error()));
  if (!*found) {
    return fail(internalError("the changeset names it, but the changed topology does not hold it"));
  }
  return {};
}

Status deleteObject(sqlite3* db, const net::Topology& after, const net::ObjectRef& ref) {
  auto stillThere = withObject(after, ref, [](const auto&) -> Result<bool> { return true; });
  if (stillThere && *stillThere) {
    return fail(internalError("the changeset deletes it, but the changed topology still holds it"));
  }
  // The table name comes from the closed set above, never from input; the value is bound.
  auto statement = Statement::prepare(db, fmt::format("DELETE FROM {} WHERE name = ?", tableOf(ref.kind)));
  if (!statement) return fail(std::move(statement.error()));
  Binder binder(*statement);
  binder.text(ref.name);
  if (auto status = binder.run(); !status) return status;
  // Memory and disk disagreeing is a bug worth stopping for, not something to paper over.
  if (statement->changes() == 0) {
    return fail(internalError("it is not in the database"));
  }
  return {};
}

// The state (instance specs with their env, the whole topology) is for root and corrald only: the database
// is created 0600 and an older, wider one is narrowed, with its -wal and -shm files (SQLite gives those the
// database's mode when it creates them). O_NOFOLLOW: a symlink planted in the state directory is refused.
Status restrictToOwner(const std::string& path) {
  for (const std::string& file : {path, path + "-wal", path + "-shm"}) {
    const bool database = file == path;
    UniqueFd fd(::open(file.c_str(), O_RDWR | O_CLOEXEC | O_NOFOLLOW | (database ? O_CREAT : 0), 0600));
    if (!fd) {
      if (errno == ENOENT) continue;  // no log file; or no directory, which sqlite3_open_v2 reports
      return fail(systemError(errno, fmt::format("open(\"{}\", O_NOFOLLOW)", file)));
    }
    if (::fchmod(fd.get(), 0600) != 0)
      return fail(systemError(errno, fmt::format("fchmod(\"{}\", 0600)", file)));
  }
  return {};
}

}  // namespace

Result<Store> Store::open(const std::string& path) {
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("open store \"{}\"", path)));
  };

  // NOMUTEX (multi-thread mode): the connection is never used by two threads at once, because Service
  // serves every request under its own mutex, and it has to anyway (the model and the database change
  // together). SQLite's per-connection mutex would add nothing but a second lock.
  if (Status owned = restrictToOwner(path); !owned) return wrap(owned.error());
  sqlite3* raw = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &raw,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  std::unique_ptr<sqlite3, CloseDb> db(raw);  // sqlite allocates a handle even when opening fails
  if (rc != SQLITE_OK) {
    int errnum = raw != nullptr ? sqlite3_system_errno(raw) : 0;
    std::string message = raw != nullptr ? sqlite3_errmsg(raw) : sqlite3_errstr(rc);
    if (errnum != 0) message += fmt::format(" ({})", std::strerror(errnum));
    return wrap(Error(ErrorKind::Internal, fmt::format("sqlite3_open_v2: {}", message), {}, errnum));
  }
  if (sqlite3_busy_timeout(db.get(), kBusyTimeoutMs) != SQLITE_OK) {
    return wrap(internalError("sqlite3_busy_timeout: {}", sqlite3_errmsg(db.get())));
  }

  // Checked before anything below changes the file: a newer corral's database is left exactly as it is.
  auto version = readUserVersion(db.get());
  if (!version) return wrap(std::move(version.error()));
  if (*version > kSchemaVersion) {
    return wrap(conflict("written by a newer corral (schema {}, this corral knows {}); refusing to touch it",
                         *version, kSchemaVersion));
  }

  // WAL: a commit is one append to the log, readers never block the writer, and a crash mid-commit leaves
  // the last committed state. journal_mode answers with the mode it actually took (a filesystem without
  // shared memory support keeps "delete"), so the answer is checked.
  auto mode = queryText(db.get(), "PRAGMA journal_mode = WAL");
  if (!mode) return wrap(std::move(mode.error()));
  if (*mode != "wal")
    return wrap(internalError("PRAGMA journal_mode = WAL: the database stayed in \"{}\" mode", *mode));
  // FULL syncs the log on every commit: an answered request survives power loss, not only a SIGKILL.
  if (auto status = execute(db.get(), "PRAGMA synchronous = FULL"); !status)
    return wrap(std::move(status.error()));
  // Per connection and off by default; a build without foreign key support ignores the pragma silently,
  // so it is read back.
  if (auto status = execute(db.get(), "PRAGMA foreign_keys = ON"); !status)
    return wrap(std::move(status.error()));
  auto foreignKeys = queryText(db.get(), "PRAGMA foreign_keys");
  if (!foreignKeys) return wrap(std::move(foreignKeys.error()));
  if (*foreignKeys != "1")
    return wrap(internalError("PRAGMA foreign_keys = ON: this sqlite does not enforce them"));

  if (auto status = migrate(db.get()); !status) return wrap(std::move(status.error()));
  return Store(path, std::move(db));
}

Result<net::Topology> Store::loadTopology() const {
  auto wrap = [&](Error error) {
    // Whatever went wrong, the stored state is at fault, not a request.
    return fail(
        Error(ErrorKind::Internal, std::move(error).wrap(fmt::format("load store \"{}\"", path_)).message()));
  };
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  auto topology = readTopology(db_.get());
  if (!topology) return wrap(std::move(topology.error()));
  if (auto status = transaction->commit(); !status) return wrap(std::move(status.error()));
  if (auto status = topology->checkIntegrity(); !status)
    return wrap(std::move(status.error()).wrap("integrity check"));
  return topology;
}

Status Store::apply(const net::Topology& after, const net::Changeset& changes) {
  auto wrap = [&](Error error) { return fail(std::move(error).wrap(fmt::format("store \"{}\"", path_))); };
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  for (const net::ObjectRef& ref : changes.upserted) {
    if (auto status = upsertObject(db_.get(), after, ref); !status) {
      return wrap(std::move(status.error())
                      .wrap(fmt::format("write {} \"{}\"", net::objectKindName(ref.kind), ref.name)));
    }
  }
  for (const net::ObjectRef& ref : changes.deleted) {
    if (auto status = deleteObject(db_.get(), after, ref); !status) {
      return wrap(std::move(status.error())
                      .wrap(fmt::format("delete {} \"{}\"", net::objectKindName(ref.kind), ref.name)));
    }
  }
  if (auto status = transaction->commit(); !status) return wrap(std::move(status.error()));
  return {};
}

// -1 when the version cannot be read: the header's plain int has no room for an Error, and no schema is
// negative, so the caller cannot mistake it for a real version.
int Store::schemaVersion() const {
  std::lock_guard lock(*mutex_);
  auto version = readUserVersion(db_.get());
  return version ? *version : -1;
}

// ---- Instances ----

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
                     .optionalText(row.exitReason)
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

#define CORRAL_READ(target, expression)                  \
  do {                                                   \
    auto value_ = (expression);                          \
    if (!value_) return fail(std::move(value_.error())); \
    target = std::move(*value_);                         \
  } while (false)

Result<std::vector<InstanceRow>> Store::listInstances() const {
  std::lock_guard lock(*mutex_);
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return fail(std::move(transaction.error()));
  std::vector<InstanceRow> rows;
  auto status = forEachRow(
      db_.get(),
      "SELECT name, kind, spec, state, pid, pid_start_time, created_at, started_at, finished_at, exit_code, "
      "exit_signal, exit_reason, exit_note, boot_steps, log_path, oom_kills, user_ns_start FROM instances ORDER BY name",
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
        CORRAL_READ(row.exitReason, r.optionalText(11, "exit_reason"));
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
#undef CORRAL_READ

}  // namespace corral::daemon
