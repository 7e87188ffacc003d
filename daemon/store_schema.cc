// The store's schema: its migration steps, and bringing a database up to kSchemaVersion (daemon/store.h).
#include <fmt/format.h>

#include <iterator>
#include <string_view>

#include "daemon/store.h"
#include "daemon/store_sqlite.h"

namespace corral::daemon::sql {
namespace {

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
    // 6 -> 7: VPC flow logs (daemon/flow_logs.h), a ring of the newest records per VPC. The record is its
    // API JSON, so a field added to it needs no migration; the columns are what queries filter on. Only
    // the oldest rows of a VPC are deleted (or all of a deleted VPC's), so ids keep growing without
    // AUTOINCREMENT as long as one row is left; a follower asks for ids above the last it saw.
    R"sql(
CREATE TABLE flow_logs (
  id INTEGER PRIMARY KEY,
  vpc TEXT NOT NULL,
  subnet TEXT NOT NULL,
  instance TEXT NOT NULL,
  action TEXT NOT NULL CHECK (action IN ('ACCEPT', 'REJECT')),
  record TEXT NOT NULL
) STRICT;
CREATE INDEX flow_logs_by_vpc ON flow_logs(vpc, id);
)sql",
    // 7 -> 8: VPC peerings, each with the /30 its veth pair is addressed from (kept: the kernel's
    // addresses must not move when another peering comes or goes). A route's target naming one is not a
    // foreign key (as with the gateways); loadTopology()'s integrity check covers it.
    R"sql(
CREATE TABLE peerings (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  peer_vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  link TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL,
  CHECK (vpc <> peer_vpc)
) STRICT;
CREATE INDEX peerings_by_vpc ON peerings(vpc);
CREATE INDEX peerings_by_peer_vpc ON peerings(peer_vpc);
)sql",
    // 8 -> 9: load balancers and target groups (issue 19). Each is one JSON document (lb/codec.h): its
    // listeners, rules and targets change together and are always read whole. The VPC is a column so that
    // a VPC cannot be deleted from under them.
    R"sql(
CREATE TABLE target_groups (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  document TEXT NOT NULL
) STRICT;
CREATE INDEX target_groups_by_vpc ON target_groups(vpc);
CREATE TABLE load_balancers (
  name TEXT PRIMARY KEY NOT NULL,
  vpc TEXT NOT NULL REFERENCES vpcs(name) DEFERRABLE INITIALLY DEFERRED,
  document TEXT NOT NULL
) STRICT;
CREATE INDEX load_balancers_by_vpc ON load_balancers(vpc);
)sql",
    // 9 -> 10: groups of cattle (daemon/groups.h). The spec is the API's own JSON (POST /v1/groups), so a
    // field added to it needs no migration; `desired` and the policy (its JSON) change apart from it.
    // next_member is the number the next member gets: stored before that member is launched, so no number
    // is used twice. A group's members are not listed here: each member's spec names its group (counted
    // from the instances table after a crash). Events: only the newest few hundred per group are kept.
    R"sql(
CREATE TABLE instance_groups (
  name TEXT PRIMARY KEY NOT NULL,
  spec TEXT NOT NULL,
  desired INTEGER NOT NULL CHECK (desired >= 0),
  policy TEXT,
  next_member INTEGER NOT NULL CHECK (next_member >= 1),
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE group_events (
  id INTEGER PRIMARY KEY,
  group_name TEXT NOT NULL REFERENCES instance_groups(name) ON DELETE CASCADE,
  at_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  instance TEXT,
  message TEXT NOT NULL
) STRICT;
CREATE INDEX group_events_by_group ON group_events(group_name, id);
)sql",
    // 10 -> 11: a cluster host's copy of the VPC model (issue 20, daemon/model_log.h) is the cluster's
    // model log applied up to this entry; written in the same transaction as the change it applies.
    R"sql(
CREATE TABLE cluster_model (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  applied INTEGER NOT NULL CHECK (applied >= 0)
) STRICT;
)sql",
};
static_assert(std::size(kMigrations) == kSchemaVersion, "one migration step per schema version");

}  // namespace

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

}  // namespace corral::daemon::sql
