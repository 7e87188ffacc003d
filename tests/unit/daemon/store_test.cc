// The SQLite store: schema creation and versioning, exact round trips of the VPC model, all-or-nothing
// writes, refusal of tampered or newer databases, and durability across a SIGKILL.
#include "daemon/store.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "net/vpc.h"

namespace corral::daemon {
namespace {

using net::Changeset;
using net::Topology;

// A fresh directory under /tmp, removed with everything in it when the test ends.
class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/corral-store-test-XXXXXX";
    if (mkdtemp(pattern) == nullptr) ADD_FAILURE() << "mkdtemp(\"" << pattern << "\"): " << strerror(errno);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string file(std::string_view name) const { return fmt::format("{}/{}", path_, name); }

 private:
  std::string path_;
};

// A second, raw connection to the database file: the test's view from outside the Store.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open_v2(path.c_str(), &db_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
        SQLITE_OK) {
      ADD_FAILURE() << "sqlite3_open_v2(\"" << path << "\"): " << sqlite3_errmsg(db_);
    }
  }
  ~RawDb() { sqlite3_close_v2(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  void exec(const std::string& sql) {
    ASSERT_EQ(sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK)
        << sql << ": " << sqlite3_errmsg(db_);
  }

  // Every row of the query, columns joined by '|', NULL shown as "NULL".
  std::vector<std::string> rows(const std::string& sql) {
    std::vector<std::string> result;
    sqlite3_stmt* statement = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &statement, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return result;
    }
    while (sqlite3_step(statement) == SQLITE_ROW) {
      std::string row;
      for (int i = 0; i < sqlite3_column_count(statement); ++i) {
        const unsigned char* text = sqlite3_column_text(statement, i);
        if (i > 0) row += '|';
        row += text == nullptr ? "NULL" : reinterpret_cast<const char*>(text);
      }
      result.push_back(row);
    }
    sqlite3_finalize(statement);
    return result;
  }

  std::string value(const std::string& sql) {
    auto all = rows(sql);
    if (all.size() != 1) {
      ADD_FAILURE() << sql << ": " << all.size() << " rows, expected one";
      return {};
    }
    return all[0];
  }

  int count(const std::string& table) {
    return std::stoi(value(fmt::format("SELECT count(*) FROM {}", table)));
  }

 private:
  sqlite3* db_ = nullptr;
};

const std::vector<std::string> kTables = {
    "vpcs",
    "subnets",
    "route_tables",
    "routes",
    "internet_gateways",
    "nat_gateways",
    "security_groups",
    "security_group_rules",
    "network_acls",
    "network_acl_rules",
    "instances",
    "comparisons",
    "flow_logs",
    "peerings",
    "target_groups",
    "load_balancers",
    "instance_groups",
    "group_events",
    "cluster_model",
};

// The whole content of the database, table by table, each table's rows sorted.
std::string dumpDatabase(const std::string& path) {
  RawDb db(path);
  std::string dump;
  for (const std::string& table : kTables) {
    auto rows = db.rows(fmt::format("SELECT * FROM {}", table));
    std::sort(rows.begin(), rows.end());
    dump += fmt::format("[{}]\n{}\n", table, fmt::join(rows, "\n"));
  }
  return dump;
}

// ---- Every field of every object, as text, so a mismatch shows which field differs ----

std::string ports(const std::optional<net::PortRange>& range) {
  return range ? fmt::format("{}-{}", range->from, range->to) : "none";
}

std::vector<std::string> describe(const Topology& topology) {
  std::vector<std::string> lines;
  for (const net::Vpc* v : topology.vpcs()) {
    lines.push_back(fmt::format("vpc name={} cidr={} createdAt={}", v->name, v->cidr.str(), v->createdAt));
  }
  for (const net::Subnet* s : topology.subnets()) {
    lines.push_back(fmt::format(
        "subnet name={} vpc={} cidr={} az={} mapPublicIp={} routeTable={} networkAcl={} createdAt={}",
        s->name, s->vpc, s->cidr.str(), s->availabilityZone, s->mapPublicIp, s->routeTable, s->networkAcl,
        s->createdAt));
  }
  for (const net::RouteTable* t : topology.routeTables()) {
    lines.push_back(fmt::format("route table name={} vpc={} isMain={} createdAt={} routes={}", t->name,
                                t->vpc, t->isMain, t->createdAt, t->routes.size()));
    for (const net::Route& r : t->routes) {
      lines.push_back(fmt::format("  route destination={} type={} target=\"{}\"", r.destination.str(),
                                  net::routeTargetTypeName(r.target.type), r.target.name));
    }
  }
  for (const net::InternetGateway* g : topology.internetGateways()) {
    lines.push_back(fmt::format("igw name={} vpc={} createdAt={}", g->name, g->vpc, g->createdAt));
  }
  for (const net::NatGateway* g : topology.natGateways()) {
    lines.push_back(
        fmt::format("nat name={} vpc={} subnet={} createdAt={}", g->name, g->vpc, g->subnet, g->createdAt));
  }
  for (const net::Peering* p : topology.peerings()) {
    lines.push_back(fmt::format("peering name={} vpc={} peerVpc={} link={} createdAt={}", p->name, p->vpc,
                                p->peerVpc, p->link.str(), p->createdAt));
  }
  for (const net::SecurityGroup* g : topology.securityGroups()) {
    lines.push_back(fmt::format(
        "sg name={} vpc={} description=\"{}\" isDefault={} nextRuleId={} createdAt={} rules={}", g->name,
        g->vpc, g->description, g->isDefault, g->nextRuleId, g->createdAt, g->rules.size()));
    for (const net::SecurityGroupRule& r : g->rules) {
      lines.push_back(
          fmt::format("  rule id={} direction={} protocol={} ports={} cidr={} peer={} description=\"{}\"",
                      r.id, net::directionName(r.direction), net::protocolName(r.protocol), ports(r.ports),
                      r.cidr ? r.cidr->str() : "none", r.peerGroup.value_or("none"), r.description));
    }
  }
  for (const net::NetworkAcl* a : topology.networkAcls()) {
    lines.push_back(fmt::format("acl name={} vpc={} isDefault={} createdAt={} rules={}", a->name, a->vpc,
                                a->isDefault, a->createdAt, a->rules.size()));
    for (const net::NetworkAclRule& r : a->rules) {
      lines.push_back(fmt::format("  rule number={} direction={} action={} protocol={} ports={} cidr={}",
                                  r.number, net::directionName(r.direction), net::ruleActionName(r.action),
                                  net::protocolName(r.protocol), ports(r.ports), r.cidr.str()));
    }
  }
  return lines;
}

// Applies one model mutation's changes to the store, as the daemon does after each request.
testing::AssertionResult persisted(Store& store, const Topology& topology, const Result<Changeset>& changes) {
  if (!changes) return testing::AssertionFailure() << "model refused: " << changes.error().message();
  if (auto status = store.apply(topology, *changes); !status) {
    return testing::AssertionFailure() << "apply: " << status.error().message();
  }
  return testing::AssertionSuccess();
}

// A VPC with everything the model has: public and private subnets, custom route tables with internet
// gateway, NAT gateway and blackhole routes, a custom ACL with rules and ports, security groups with cidr
// and peer rules, and custom subnet associations. Each mutation is persisted as it happens.
void buildFullTopology(Store& store, Topology& topology) {
  ASSERT_TRUE(persisted(store, topology, topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, 1000)));
  ASSERT_TRUE(persisted(store, topology,
                        topology.createSubnet({.name = "web",
                                               .vpc = "prod",
                                               .cidr = "10.0.1.0/24",
                                               .availabilityZone = "az1",
                                               .mapPublicIp = true,
                                               .routeTable = "",
                                               .networkAcl = ""},
                                              1001)));
  ASSERT_TRUE(persisted(store, topology,
                        topology.createSubnet({.name = "app",
                                               .vpc = "prod",
                                               .cidr = "10.0.2.0/24",
                                               .availabilityZone = "az2",
                                               .mapPublicIp = false,
                                               .routeTable = "",
                                               .networkAcl = ""},
                                              1002)));
  ASSERT_TRUE(
      persisted(store, topology, topology.createInternetGateway({.name = "prod-igw", .vpc = "prod"}, 1003)));
  ASSERT_TRUE(persisted(store, topology, topology.createRouteTable({.name = "public", .vpc = "prod"}, 1004)));
  ASSERT_TRUE(persisted(store, topology,
                        topology.addRoute("public", {.destination = "0.0.0.0/0",
                                                     .targetType = "internet_gateway",
                                                     .targetName = "prod-igw"})));
  ASSERT_TRUE(
      persisted(store, topology, topology.createNatGateway({.name = "prod-nat", .subnet = "web"}, 1005)));
  ASSERT_TRUE(
      persisted(store, topology, topology.createRouteTable({.name = "private", .vpc = "prod"}, 1006)));
  ASSERT_TRUE(persisted(
      store, topology,
      topology.addRoute(
          "private", {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "prod-nat"})));
  ASSERT_TRUE(persisted(
      store, topology,
      topology.addRoute("private",
                        {.destination = "192.168.50.0/24", .targetType = "blackhole", .targetName = ""})));
  ASSERT_TRUE(persisted(store, topology, topology.createNetworkAcl({.name = "locked", .vpc = "prod"}, 1007)));
  ASSERT_TRUE(persisted(store, topology,
                        topology.addNetworkAclRule("locked", {.number = 200,
                                                              .direction = "ingress",
                                                              .action = "deny",
                                                              .protocol = "all",
                                                              .fromPort = std::nullopt,
                                                              .toPort = std::nullopt,
                                                              .cidr = "203.0.113.0/24"})));
  ASSERT_TRUE(persisted(store, topology,
                        topology.addNetworkAclRule("locked", {.number = 100,
                                                              .direction = "ingress",
                                                              .action = "allow",
                                                              .protocol = "tcp",
                                                              .fromPort = 443,
                                                              .toPort = 443,
                                                              .cidr = "0.0.0.0/0"})));
  ASSERT_TRUE(persisted(store, topology,
                        topology.addNetworkAclRule("locked", {.number = 100,
                                                              .direction = "egress",
                                                              .action = "allow",
                                                              .protocol = "udp",
                                                              .fromPort = 1024,
                                                              .toPort = 65535,
                                                              .cidr = "0.0.0.0/0"})));
  ASSERT_TRUE(persisted(
      store, topology,
      topology.createSecurityGroup({.name = "web-sg", .vpc = "prod", .description = "web servers"}, 1008)));
  ASSERT_TRUE(persisted(store, topology,
                        topology.addSecurityGroupRule("web-sg", {.direction = "ingress",
                                                                 .protocol = "tcp",
                                                                 .fromPort = 80,
                                                                 .toPort = 80,
                                                                 .cidr = "0.0.0.0/0",
                                                                 .peerGroup = std::nullopt,
                                                                 .description = "http from anywhere"})));
  ASSERT_TRUE(persisted(store, topology,
                        topology.addSecurityGroupRule("web-sg", {.direction = "egress",
                                                                 .protocol = "icmp",
                                                                 .fromPort = std::nullopt,
                                                                 .toPort = std::nullopt,
                                                                 .cidr = "10.0.0.0/16",
                                                                 .peerGroup = std::nullopt,
                                                                 .description = ""})));
  ASSERT_TRUE(
      persisted(store, topology,
                topology.createSecurityGroup({.name = "app-sg", .vpc = "prod", .description = ""}, 1009)));
  ASSERT_TRUE(persisted(store, topology,
                        topology.addSecurityGroupRule("app-sg", {.direction = "ingress",
                                                                 .protocol = "tcp",
                                                                 .fromPort = 8080,
                                                                 .toPort = 8090,
                                                                 .cidr = std::nullopt,
                                                                 .peerGroup = "web-sg",
                                                                 .description = "from the web tier"})));
  ASSERT_TRUE(persisted(
      store, topology,
      topology.updateSubnet("web", {.routeTable = "public", .networkAcl = "locked", .mapPublicIp = {}})));
  ASSERT_TRUE(persisted(
      store, topology,
      topology.updateSubnet("app", {.routeTable = "private", .networkAcl = {}, .mapPublicIp = true})));
}

Result<Topology> reopenAndLoad(const std::string& path) {
  auto store = Store::open(path);
  if (!store) return fail(store.error());
  return store->loadTopology();
}

// ---- Tests ----

TEST(Store, OpenCreatesAVersionedDatabaseInWalMode) {
  TempDir dir;
  std::string path = dir.file("state.db");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), kSchemaVersion);
  EXPECT_EQ(kSchemaVersion, 11);
  EXPECT_EQ(store->path(), path);

  RawDb raw(path);
  EXPECT_EQ(raw.value("PRAGMA user_version"), "11");
  EXPECT_EQ(raw.value("PRAGMA journal_mode"), "wal");
  auto tables = raw.rows("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name");
  auto expected = kTables;
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(tables, expected);

  auto empty = store->loadTopology();
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_TRUE(empty->vpcs().empty());
}

mode_t modeOf(const std::string& path) {
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    ADD_FAILURE() << "stat(\"" << path << "\"): " << strerror(errno);
    return 0;
  }
  return info.st_mode & 07777;
}

// The state holds every instance's spec (env included): only root and corrald may read it, whatever the
// umask, and a database an older corral left 0644 is narrowed when it is opened.
TEST(Store, TheDatabaseAndItsLogFilesAreOwnerOnly) {
  TempDir dir;
  const std::string path = dir.file("state.db");
  const mode_t umaskBefore = ::umask(022);
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
    ASSERT_TRUE(std::filesystem::exists(path + "-wal"));
    ASSERT_TRUE(std::filesystem::exists(path + "-shm"));
    for (const std::string& file : {path, path + "-wal", path + "-shm"})
      EXPECT_EQ(modeOf(file), 0600u) << file;
  }
  // As an older corral left it: 0644, with its log files.
  ASSERT_EQ(::chmod(path.c_str(), 0644), 0);
  for (const std::string& file : {path + "-wal", path + "-shm"}) {
    std::ofstream(file, std::ios::app).flush();
    ASSERT_EQ(::chmod(file.c_str(), 0644), 0) << file;
  }
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
    for (const std::string& file : {path, path + "-wal", path + "-shm"})
      EXPECT_EQ(modeOf(file), 0600u) << file;
  }
  ::umask(umaskBefore);
}

TEST(Store, ReopeningAnExistingDatabaseKeepsItsVersion) {
  TempDir dir;
  std::string path = dir.file("state.db");
  ASSERT_TRUE(Store::open(path));
  auto again = Store::open(path);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->schemaVersion(), kSchemaVersion);
}

TEST(Store, VersionOneDatabaseMigratesAndKeepsItsObjects) {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
  }
  {
    // What corral 1 left behind: the VPC tables only, user_version 1, and a VPC in them.
    RawDb raw(path);
    raw.exec(
        "DROP TABLE cluster_model; DROP TABLE group_events; DROP TABLE instance_groups; DROP TABLE "
        "load_balancers; DROP TABLE "
        "target_groups; DROP TABLE flow_logs; DROP TABLE peerings; "
        "DROP TABLE comparisons; "
        "DROP TABLE instances; PRAGMA user_version = 1; "
        "INSERT INTO vpcs (name, cidr, created_at) VALUES ('old', '10.0.0.0/16', 1)");
  }
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  auto rows = store->listInstances();
  ASSERT_TRUE(rows) << rows.error().message();
  EXPECT_TRUE(rows->empty());
  EXPECT_EQ(RawDb(path).value("SELECT name FROM vpcs"), "old");
}

TEST(Store, VersionTwoDatabaseMigratesKeepingInstancesAndTakesVmStates) {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
  }
  {
    // What corral 2 left behind: its instances table (no 'starting', no VM exit reasons) with a row.
    RawDb raw(path);
    raw.exec(
        "DROP TABLE cluster_model; DROP TABLE group_events; DROP TABLE instance_groups; DROP TABLE "
        "load_balancers; DROP TABLE "
        "target_groups; DROP TABLE flow_logs; DROP TABLE peerings; "
        "DROP TABLE comparisons; "
        "DROP TABLE instances; "
        "CREATE TABLE instances (name TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL, spec TEXT NOT NULL, "
        "state TEXT NOT NULL CHECK (state IN ('created', 'running', 'stopped')), pid INTEGER, "
        "pid_start_time INTEGER, created_at INTEGER NOT NULL, started_at INTEGER, finished_at INTEGER, "
        "exit_code INTEGER, exit_signal INTEGER, exit_reason TEXT CHECK (exit_reason IN ('exited', "
        "'signaled', 'oom-killed', 'stopped', 'lost')), exit_note TEXT, boot_steps TEXT NOT NULL, "
        "log_path TEXT NOT NULL) STRICT; "
        "INSERT INTO instances VALUES ('old', 'container', '{\"name\":\"old\"}', 'stopped', NULL, NULL, 1, "
        "2, 3, 0, NULL, 'exited', NULL, '{}', '/x/console.log'); "
        "PRAGMA user_version = 2");
  }
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  auto rows = store->listInstances();
  ASSERT_TRUE(rows) << rows.error().message();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].name, "old");
  EXPECT_EQ((*rows)[0].exitReason, ExitReason::exited);
  InstanceRow vm;
  vm.name = "vm1";
  vm.kind = schema::InstanceKind::vm;
  vm.specJson = R"({"name":"vm1","kind":"vm"})";
  vm.state = InstanceState::starting;
  vm.createdAt = 5;
  ASSERT_TRUE(store->insertInstance(vm));
  vm.state = InstanceState::stopped;
  vm.exitReason = ExitReason::bootTimeout;
  EXPECT_TRUE(store->putInstance(vm));
}

TEST(Store, InstanceRowsRoundTripAndDuplicatesConflict) {
  TempDir dir;
  std::string path = dir.file("state.db");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  InstanceRow row;
  row.name = "web";
  row.specJson = R"({"name":"web"})";
  row.state = InstanceState::running;
  row.pid = 1234;
  row.pidStartTime = 987654;
  row.createdAt = 10;
  row.startedAt = 11;
  row.bootStepsJson = R"({"total_ms":1.5})";
  row.logPath = "/x/console.log";
  ASSERT_TRUE(store->insertInstance(row));
  auto again = store->insertInstance(row);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind(), ErrorKind::Conflict);
  row.state = InstanceState::stopped;
  row.pid.reset();
  row.exitCode = 3;
  row.exitReason = ExitReason::exited;
  row.exitNote = "note";
  row.oomKills = 2;
  ASSERT_TRUE(store->putInstance(row));
  auto reopened = Store::open(path);
  ASSERT_TRUE(reopened) << reopened.error().message();
  auto rows = reopened->listInstances();
  ASSERT_TRUE(rows) << rows.error().message();
  ASSERT_EQ(rows->size(), 1u);
  const InstanceRow& back = rows->front();
  EXPECT_EQ(back.name, "web");
  EXPECT_EQ(back.state, InstanceState::stopped);
  EXPECT_FALSE(back.pid);
  EXPECT_EQ(back.pidStartTime, 987654);
  EXPECT_EQ(back.exitCode, 3);
  EXPECT_EQ(back.exitReason, ExitReason::exited);
  EXPECT_EQ(back.exitNote, "note");
  EXPECT_EQ(back.oomKills, 2);
  EXPECT_EQ(back.bootStepsJson, row.bootStepsJson);
  EXPECT_EQ(back.logPath, row.logPath);
  ASSERT_TRUE(reopened->deleteInstance("web"));
  EXPECT_TRUE(reopened->listInstances()->empty());
  // An in-progress state is never stored: it ends with its request.
  row.state = InstanceState::removing;
  EXPECT_FALSE(reopened->putInstance(row));
}

// Every exit reason is stored as the text the column has always held (old rows load) and comes back.
TEST(Store, ExitReasonsAreStoredAsTheirText) {
  TempDir dir;
  std::string path = dir.file("state.db");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  InstanceRow row;
  row.name = "web";
  row.specJson = R"({"name":"web"})";
  row.state = InstanceState::stopped;
  row.logPath = "/x/console.log";
  ASSERT_TRUE(store->insertInstance(row));
  for (ExitReason reason : kAllExitReasons) {
    SCOPED_TRACE(exitReasonName(reason));
    row.exitReason = reason;
    ASSERT_TRUE(store->putInstance(row));
    EXPECT_EQ(RawDb(path).rows("SELECT exit_reason FROM instances"),
              std::vector<std::string>{std::string(exitReasonName(reason))});
    auto rows = store->listInstances();
    ASSERT_TRUE(rows) << rows.error().message();
    ASSERT_EQ(rows->size(), 1u);
    EXPECT_EQ(rows->front().exitReason, reason);
  }
  row.exitReason.reset();
  ASSERT_TRUE(store->putInstance(row));
  EXPECT_EQ(RawDb(path).rows("SELECT exit_reason FROM instances"), std::vector<std::string>{"NULL"});
  EXPECT_FALSE(store->listInstances()->front().exitReason);
}

// A container's user namespace range is kept with it; a version 5 database gains the column, empty.
TEST(Store, UserNamespaceRangeStartIsKeptAndVersionFiveRowsMigrateWithout) {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
    InstanceRow row;
    row.name = "old";
    row.specJson = R"({"name":"old"})";
    ASSERT_TRUE(store->insertInstance(row));
  }
  RawDb(path).exec(
      "DROP TABLE cluster_model; DROP TABLE group_events; DROP TABLE instance_groups; DROP TABLE "
      "load_balancers; DROP TABLE "
      "target_groups; DROP TABLE flow_logs; DROP TABLE peerings; ALTER "
      "TABLE instances DROP "
      "COLUMN user_ns_start; PRAGMA user_version = 5");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  InstanceRow mapped;
  mapped.name = "mapped";
  mapped.specJson = R"({"name":"mapped","user_namespace":true})";
  mapped.userNamespaceStart = 0x70010000;
  ASSERT_TRUE(store->insertInstance(mapped));
  auto rows = Store::open(path)->listInstances();
  ASSERT_TRUE(rows) << rows.error().message();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].name, "mapped");
  EXPECT_EQ((*rows)[0].userNamespaceStart, 0x70010000);
  EXPECT_EQ((*rows)[1].name, "old");
  EXPECT_FALSE((*rows)[1].userNamespaceStart);
  mapped.userNamespaceStart = 0;
  EXPECT_FALSE(store->putInstance(mapped)) << "a range from host id 0 is refused by the schema";
}

TEST(Store, FullTopologyRoundTripsExactlyAfterReopening) {
  TempDir dir;
  std::string path = dir.file("state.db");
  Topology topology;
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
    buildFullTopology(*store, topology);
    if (HasFatalFailure()) return;
  }

  auto loaded = reopenAndLoad(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(describe(*loaded), describe(topology));

  // Guard against comparing two empty or trivial models: the interesting pieces are really there.
  const net::RouteTable* priv = loaded->findRouteTable("private");
  ASSERT_NE(priv, nullptr);
  ASSERT_EQ(priv->routes.size(), 3u);
  EXPECT_EQ(loaded->findRouteTable("public")->routes.size(), 2u);
  EXPECT_EQ(loaded->findSubnet("web")->routeTable, "public");
  EXPECT_EQ(loaded->findSubnet("web")->networkAcl, "locked");
  EXPECT_EQ(loaded->findSubnet("app")->routeTable, "private");
  EXPECT_TRUE(loaded->findSubnet("app")->mapPublicIp);
  EXPECT_EQ(loaded->findNatGateway("prod-nat")->subnet, "web");
  const net::NetworkAcl* locked = loaded->findNetworkAcl("locked");
  ASSERT_NE(locked, nullptr);
  ASSERT_EQ(locked->rules.size(), 3u);
  const net::SecurityGroup* appGroup = loaded->findSecurityGroup("app-sg");
  ASSERT_NE(appGroup, nullptr);
  ASSERT_EQ(appGroup->rules.size(), 2u);  // the egress rule every new group starts with, then ours
  EXPECT_EQ(appGroup->rules[1].peerGroup, std::optional<std::string>("web-sg"));
  EXPECT_FALSE(appGroup->rules[1].cidr);
  EXPECT_EQ(appGroup->rules[1].ports, (net::PortRange{8080, 8090}));
  EXPECT_EQ(loaded->reachability(*loaded->findSubnet("web")), net::SubnetReachability::Public);
  EXPECT_EQ(loaded->reachability(*loaded->findSubnet("app")), net::SubnetReachability::PrivateWithNat);

  // Optional values are NULL, enums their names, CIDRs their text.
  RawDb raw(path);
  EXPECT_EQ(raw.value("SELECT target_type, target_name FROM routes WHERE destination = '192.168.50.0/24'"),
            "blackhole|NULL");
  EXPECT_EQ(raw.value("SELECT protocol, from_port, to_port, cidr, peer_group FROM security_group_rules "
                      "WHERE security_group = 'app-sg' AND id = 2"),
            "tcp|8080|8090|NULL|web-sg");
}

// Two peered VPCs, a route through the peering on each side and a rule naming the peer VPC's group: all of
// it comes back after reopening, the peering with the /30 it was given.
TEST(Store, PeeringsRoundTripWithTheirLinkAndGoWhenDeleted) {
  TempDir dir;
  std::string path = dir.file("state.db");
  Topology topology;
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
    ASSERT_TRUE(persisted(*store, topology, topology.createVpc({.name = "a", .cidr = "10.0.0.0/16"}, 1000)));
    ASSERT_TRUE(persisted(*store, topology, topology.createVpc({.name = "b", .cidr = "10.1.0.0/16"}, 1001)));
    ASSERT_TRUE(persisted(*store, topology,
                          topology.createPeering({.name = "ab", .vpc = "a", .peerVpc = "b"}, 1002)));
    ASSERT_TRUE(persisted(
        *store, topology,
        topology.addRoute("a-main",
                          {.destination = "10.1.0.0/16", .targetType = "peering", .targetName = "ab"})));
    ASSERT_TRUE(persisted(*store, topology,
                          topology.addSecurityGroupRule("b-default", {.direction = "ingress",
                                                                      .protocol = "all",
                                                                      .fromPort = std::nullopt,
                                                                      .toPort = std::nullopt,
                                                                      .cidr = std::nullopt,
                                                                      .peerGroup = "a-default",
                                                                      .description = ""})));
  }
  auto loaded = reopenAndLoad(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(describe(*loaded), describe(topology));
  const net::Peering* ab = loaded->findPeering("ab");
  ASSERT_NE(ab, nullptr);
  EXPECT_EQ(ab->vpc, "a");
  EXPECT_EQ(ab->peerVpc, "b");
  EXPECT_EQ(ab->link.str(), "169.254.248.0/30");
  EXPECT_EQ(ab->createdAt, 1002);
  EXPECT_EQ(RawDb(path).value("SELECT target_type, target_name FROM routes WHERE route_table = 'a-main' AND "
                              "destination = '10.1.0.0/16'"),
            "peering|ab");

  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  ASSERT_TRUE(persisted(*store, topology, topology.deleteRoute("a-main", "10.1.0.0/16")));
  ASSERT_TRUE(persisted(*store, topology, topology.deleteSecurityGroupRule("b-default", 3)));
  ASSERT_TRUE(persisted(*store, topology, topology.deletePeering("ab")));
  EXPECT_EQ(RawDb(path).value("SELECT count(*) FROM peerings"), "0");
}

TEST(Store, VersionSevenDatabaseMigratesToNoPeeringsAndNoLoadBalancers) {
  TempDir dir;
  std::string path = dir.file("state.db");
  ASSERT_TRUE(Store::open(path));
  RawDb(path).exec(
      "DROP TABLE cluster_model; DROP TABLE group_events; DROP TABLE instance_groups; DROP TABLE "
      "load_balancers; DROP TABLE "
      "target_groups; DROP TABLE peerings; PRAGMA user_version = 7");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  EXPECT_EQ(RawDb(path).value("SELECT count(*) FROM peerings"), "0");
}

TEST(Store, RewritingAnObjectReplacesItsChildRowsExactly) {
  TempDir dir;
  std::string path = dir.file("state.db");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  Topology topology;
  buildFullTopology(*store, topology);
  if (HasFatalFailure()) return;

  // Removing a route, a rule and an ACL rule from the middle must not leave stale or shifted rows.
  ASSERT_TRUE(persisted(*store, topology, topology.deleteRoute("private", "192.168.50.0/24")));
  ASSERT_TRUE(persisted(*store, topology, topology.deleteSecurityGroupRule("web-sg", 2)));
  ASSERT_TRUE(persisted(*store, topology, topology.deleteNetworkAclRule("locked", "ingress", 100)));
  // The same object written twice in one changeset ends up once.
  Changeset twice{
      .upserted = {{net::ObjectKind::RouteTable, "private"}, {net::ObjectKind::RouteTable, "private"}},
      .deleted = {}};
  ASSERT_TRUE(store->apply(topology, twice));

  auto loaded = reopenAndLoad(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(describe(*loaded), describe(topology));
  RawDb raw(path);
  EXPECT_EQ(raw.value("SELECT count(*) FROM routes WHERE route_table = 'private'"), "2");
  EXPECT_EQ(
      raw.value("SELECT group_concat(id) FROM "
                "(SELECT id FROM security_group_rules WHERE security_group = 'web-sg' ORDER BY position)"),
      "1,3");
  EXPECT_EQ(raw.value("SELECT next_rule_id FROM security_groups WHERE name = 'web-sg'"), "4");
}

TEST(Store, DeletesArePersistedWithTheirChildRows) {
  TempDir dir;
  std::string path = dir.file("state.db");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  Topology topology;
  buildFullTopology(*store, topology);
  if (HasFatalFailure()) return;
  RawDb raw(path);
  ASSERT_EQ(raw.value("SELECT count(*) FROM security_group_rules WHERE security_group = 'app-sg'"), "2");

  ASSERT_TRUE(persisted(*store, topology, topology.deleteSecurityGroup("app-sg")));
  EXPECT_EQ(raw.value("SELECT count(*) FROM security_groups WHERE name = 'app-sg'"), "0");
  EXPECT_EQ(raw.value("SELECT count(*) FROM security_group_rules WHERE security_group = 'app-sg'"), "0");

  // Take the VPC apart piece by piece, down to nothing.
  ASSERT_TRUE(persisted(*store, topology, topology.deleteSecurityGroup("web-sg")));
  ASSERT_TRUE(
      persisted(*store, topology,
                topology.updateSubnet("app", {.routeTable = "", .networkAcl = {}, .mapPublicIp = {}})));
  ASSERT_TRUE(persisted(*store, topology, topology.deleteRouteTable("private")));
  EXPECT_EQ(raw.value("SELECT count(*) FROM routes WHERE route_table = 'private'"), "0");
  ASSERT_TRUE(persisted(*store, topology, topology.deleteNatGateway("prod-nat")));
  ASSERT_TRUE(persisted(*store, topology, topology.deleteSubnet("app")));
  ASSERT_TRUE(persisted(*store, topology, topology.deleteSubnet("web")));
  ASSERT_TRUE(persisted(*store, topology, topology.deleteNetworkAcl("locked")));
  EXPECT_EQ(raw.value("SELECT count(*) FROM network_acl_rules WHERE network_acl = 'locked'"), "0");
  ASSERT_TRUE(persisted(*store, topology, topology.deleteRouteTable("public")));
  ASSERT_TRUE(persisted(*store, topology, topology.deleteInternetGateway("prod-igw")));

  auto partial = reopenAndLoad(path);
  ASSERT_TRUE(partial) << partial.error().message();
  EXPECT_EQ(describe(*partial), describe(topology));
  EXPECT_EQ(partial->vpcs().size(), 1u);

  ASSERT_TRUE(persisted(*store, topology, topology.deleteVpc("prod")));
  for (const std::string& table : kTables) EXPECT_EQ(raw.count(table), 0) << table;
  auto empty = reopenAndLoad(path);
  ASSERT_TRUE(empty) << empty.error().message();
  EXPECT_TRUE(describe(*empty).empty());
}

TEST(Store, FailedApplyLeavesTheDatabaseExactlyAsItWas) {
  TempDir dir;
  std::string path = dir.file("state.db");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  Topology topology;
  buildFullTopology(*store, topology);
  if (HasFatalFailure()) return;
  std::string before = dumpDatabase(path);

  // The first ref is written before the second fails; the rollback must take it back.
  ASSERT_TRUE(topology.deleteRoute("private", "192.168.50.0/24"));
  Changeset missing{
      .upserted = {{net::ObjectKind::RouteTable, "private"}, {net::ObjectKind::Subnet, "ghost"}},
      .deleted = {{net::ObjectKind::InternetGateway, "prod-igw"}}};
  auto status = store->apply(topology, missing);
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().kind(), ErrorKind::Internal);
  EXPECT_NE(status.error().message().find("subnet \"ghost\""), std::string::npos) << status.error().message();
  EXPECT_NE(status.error().message().find(path), std::string::npos) << status.error().message();
  EXPECT_EQ(dumpDatabase(path), before);

  // Deleting an object the changed topology still holds contradicts the changeset.
  Changeset contradiction{.upserted = {{net::ObjectKind::RouteTable, "private"}},
                          .deleted = {{net::ObjectKind::Subnet, "web"}}};
  status = store->apply(topology, contradiction);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message().find("still holds"), std::string::npos) << status.error().message();
  EXPECT_EQ(dumpDatabase(path), before);

  // Deleting something that was never stored means memory and disk disagree.
  Changeset neverStored{.upserted = {}, .deleted = {{net::ObjectKind::Vpc, "nowhere"}}};
  status = store->apply(topology, neverStored);
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message().find("not in the database"), std::string::npos)
      << status.error().message();

  // A changeset that leaves a dangling reference fails at COMMIT (deferred foreign key) and is undone.
  ASSERT_TRUE(topology.createVpc({.name = "staging", .cidr = "10.1.0.0/16"}, 2000));
  auto subnet = topology.createSubnet({.name = "stage-web",
                                       .vpc = "staging",
                                       .cidr = "10.1.1.0/24",
                                       .availabilityZone = "az1",
                                       .mapPublicIp = false,
                                       .routeTable = "",
                                       .networkAcl = ""},
                                      2001);
  ASSERT_TRUE(subnet) << subnet.error().message();
  status = store->apply(topology, *subnet);  // the subnet without its VPC, main table and default ACL
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message().find("FOREIGN KEY constraint failed"), std::string::npos)
      << status.error().message();
  EXPECT_EQ(dumpDatabase(path), before);

  // The store is still usable after all those failures.
  ASSERT_TRUE(store->apply(topology,
                           Changeset{.upserted = {{net::ObjectKind::RouteTable, "private"}}, .deleted = {}}));
  EXPECT_EQ(RawDb(path).value("SELECT count(*) FROM routes WHERE route_table = 'private'"), "2");
}

TEST(Store, VersionThreeDatabaseMigratesToAnEmptyComparisonList) {
  TempDir dir;
  std::string path = dir.file("state.db");
  ASSERT_TRUE(Store::open(path));
  RawDb(path).exec(
      "DROP TABLE cluster_model; DROP TABLE group_events; DROP TABLE instance_groups; DROP TABLE "
      "load_balancers; DROP TABLE "
      "target_groups; DROP TABLE flow_logs; DROP TABLE peerings; DROP "
      "TABLE comparisons; "
      "ALTER TABLE instances DROP COLUMN oom_kills; "
      "ALTER TABLE instances DROP COLUMN user_ns_start; PRAGMA user_version = 3");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  auto rows = store->listComparisons();
  ASSERT_TRUE(rows) << rows.error().message();
  EXPECT_TRUE(rows->empty());
}

// A version 8 database (peerings, no load balancers) migrates to empty load balancer and target group
// tables.
TEST(Store, VersionEightDatabaseMigratesToNoLoadBalancers) {
  TempDir dir;
  std::string path = dir.file("state.db");
  ASSERT_TRUE(Store::open(path));
  RawDb(path).exec(
      "DROP TABLE cluster_model; DROP TABLE group_events; DROP TABLE instance_groups; DROP TABLE "
      "load_balancers; DROP TABLE "
      "target_groups; PRAGMA user_version = 8");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  auto balancers = store->loadBalancers();
  ASSERT_TRUE(balancers) << balancers.error().message();
  EXPECT_TRUE(balancers->loadBalancers().empty());
  EXPECT_TRUE(balancers->targetGroups().empty());
}

// A version 9 database (load balancers, no groups) migrates to empty group and group event tables.
TEST(Store, VersionNineDatabaseMigratesToNoGroups) {
  TempDir dir;
  std::string path = dir.file("state.db");
  ASSERT_TRUE(Store::open(path));
  RawDb(path).exec(
      "DROP TABLE cluster_model; DROP TABLE group_events; DROP TABLE instance_groups; PRAGMA user_version = "
      "9");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  auto groups = store->listGroups();
  ASSERT_TRUE(groups) << groups.error().message();
  EXPECT_TRUE(groups->empty());
  ASSERT_TRUE(store->insertGroup(GroupRow{.name = "web",
                                          .specJson = "{}",
                                          .desired = 1,
                                          .policyJson = std::nullopt,
                                          .nextMember = 1,
                                          .createdAt = 1}));
}

// A version 10 database (before clusters shared a model) migrates to "nothing of the cluster's model
// applied"; a change applied as a model entry records its number in the same transaction.
TEST(Store, VersionTenDatabaseMigratesToNoModelEntryAndEntriesAreRecordedWithTheirChange) {
  TempDir dir;
  std::string path = dir.file("state.db");
  ASSERT_TRUE(Store::open(path));
  RawDb(path).exec("DROP TABLE cluster_model; PRAGMA user_version = 10");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  EXPECT_EQ(store->modelApplied().value_or(99), 0u);

  net::Topology after;
  auto created = after.createVpc({.name = "lab", .cidr = "10.20.0.0/16"}, 1);
  ASSERT_TRUE(created) << created.error().message();
  ASSERT_TRUE(store->apply(after, *created, 7));
  EXPECT_EQ(store->modelApplied().value_or(0), 7u);
  ASSERT_TRUE(store->apply(after, net::Changeset{}, 8));
  EXPECT_EQ(store->modelApplied().value_or(0), 8u);
  ASSERT_TRUE(store->apply(after, net::Changeset{}));
  EXPECT_EQ(store->modelApplied().value_or(0), 8u) << "a host's own change is no entry";
  auto reopened = Store::open(path);
  ASSERT_TRUE(reopened);
  EXPECT_EQ(reopened->modelApplied().value_or(0), 8u);
  EXPECT_TRUE(reopened->loadTopology().value_or(net::Topology{}).findVpc("lab"));
}

// The cluster model log's snapshot (daemon/model_log.h): one store's model as rows, loaded into another in
// one transaction, is the same model there, with the entry it was applied through; instances are never
// touched; bad rows change nothing; a host leaving forgets the model and its applied number.
TEST(Store, ModelRowsLoadIntoAnotherStoreAsTheSameModelAndNothingElse) {
  TempDir dir;
  Topology topology;
  auto source = Store::open(dir.file("source.db"));
  ASSERT_TRUE(source) << source.error().message();
  buildFullTopology(*source, topology);
  if (HasFatalFailure()) return;
  ASSERT_TRUE(
      persisted(*source, topology, topology.createVpc({.name = "other", .cidr = "10.1.0.0/16"}, 1100)));
  ASSERT_TRUE(persisted(*source, topology,
                        topology.createPeering({.name = "po", .vpc = "prod", .peerVpc = "other"}, 1101)));
  ASSERT_TRUE(source->apply(topology, net::Changeset{}, 41));
  auto rows = source->modelRows();
  ASSERT_TRUE(rows) << rows.error().message();
  EXPECT_EQ(rows->through, 41u);
  EXPECT_EQ(rows->tables["peerings"]["rows"].size(), 1u) << rows->tables.dump();
  EXPECT_FALSE(rows->tables.contains("instances"));

  const std::string path = dir.file("joining.db");
  auto joining = Store::open(path);
  ASSERT_TRUE(joining) << joining.error().message();
  InstanceRow row;
  row.name = "own";
  row.specJson = R"({"name":"own"})";
  row.state = InstanceState::running;
  row.createdAt = 10;
  ASSERT_TRUE(joining->insertInstance(row));
  Topology stale;
  ASSERT_TRUE(persisted(*joining, stale, stale.createVpc({.name = "stale", .cidr = "10.9.0.0/16"}, 5)));

  ASSERT_TRUE(joining->loadModelRows(rows->tables, rows->through));
  auto loaded = reopenAndLoad(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  EXPECT_EQ(describe(*loaded), describe(topology));
  EXPECT_EQ(loaded->findPeering("po")->link.str(), topology.findPeering("po")->link.str());
  EXPECT_FALSE(loaded->findVpc("stale")) << "the snapshot replaces the model, it is not added to it";
  EXPECT_EQ(joining->modelApplied().value_or(0), 41u);
  EXPECT_EQ(joining->listInstances().value_or(std::vector<InstanceRow>{}).size(), 1u);
  auto again = joining->modelRows();
  ASSERT_TRUE(again);
  EXPECT_EQ(again->tables, rows->tables) << "the rows round-trip exactly";

  // A model with empty tables (no gateway, no peering) loads too.
  auto small = Store::open(dir.file("small.db"));
  ASSERT_TRUE(small);
  Topology one;
  ASSERT_TRUE(persisted(*small, one, one.createVpc({.name = "one", .cidr = "10.7.0.0/16"}, 7)));
  auto smallRows = small->modelRows();
  ASSERT_TRUE(smallRows);
  EXPECT_TRUE(smallRows->tables["internet_gateways"]["rows"].empty());
  auto third = Store::open(dir.file("third.db"));
  ASSERT_TRUE(third);
  auto smallLoad = third->loadModelRows(smallRows->tables, 3);
  ASSERT_TRUE(smallLoad) << smallLoad.error().message();
  EXPECT_EQ(describe(third->loadTopology().value_or(Topology{})), describe(one));

  // Bad snapshots change nothing.
  nlohmann::json unknownTable = rows->tables;
  unknownTable["instances"] = {{"columns", {"name"}}, {"rows", nlohmann::json::array()}};
  auto refused = joining->loadModelRows(unknownTable, 50);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("table instances is not one of the model's"), std::string::npos)
      << refused.error().message();
  nlohmann::json shortRow = rows->tables;
  shortRow["subnets"]["rows"][0].erase(0);
  EXPECT_FALSE(joining->loadModelRows(shortRow, 50));
  nlohmann::json dangling = rows->tables;
  dangling["vpcs"]["rows"] = nlohmann::json::array();
  auto danglingLoad = joining->loadModelRows(dangling, 50);
  ASSERT_FALSE(danglingLoad);
  EXPECT_NE(danglingLoad.error().message().find("reference to a missing object"), std::string::npos)
      << danglingLoad.error().message();
  EXPECT_EQ(joining->modelApplied().value_or(0), 41u);
  EXPECT_EQ(describe(joining->loadTopology().value_or(Topology{})), describe(topology));

  // Leaving: the model and the applied number go, the instance stays.
  ASSERT_TRUE(joining->forgetModel());
  EXPECT_TRUE(joining->loadTopology().value_or(topology).vpcs().empty());
  EXPECT_EQ(joining->modelApplied().value_or(99), 0u);
  EXPECT_EQ(joining->listInstances().value_or(std::vector<InstanceRow>{}).size(), 1u);
  EXPECT_EQ(RawDb(path).value("SELECT count(*) FROM routes"), "0");
}

TEST(Store, VersionFourDatabaseMigratesKeepingInstancesWithNoOomKills) {
  TempDir dir;
  std::string path = dir.file("state.db");
  ASSERT_TRUE(Store::open(path));
  RawDb(path).exec(
      "DROP TABLE cluster_model; DROP TABLE group_events; DROP TABLE instance_groups; DROP TABLE "
      "load_balancers; DROP TABLE "
      "target_groups; DROP TABLE flow_logs; DROP TABLE peerings; ALTER "
      "TABLE instances DROP "
      "COLUMN user_ns_start; "
      "ALTER TABLE instances DROP COLUMN oom_kills; "
      "INSERT INTO instances VALUES ('old', 'container', '{\"name\":\"old\"}', 'stopped', NULL, NULL, 1, "
      "2, 3, NULL, 9, 'oom-killed', NULL, '{}', '/x/console.log'); "
      "PRAGMA user_version = 4");
  auto store = Store::open(path);
  ASSERT_TRUE(store) << store.error().message();
  EXPECT_EQ(store->schemaVersion(), 11);
  auto rows = store->listInstances();
  ASSERT_TRUE(rows) << rows.error().message();
  ASSERT_EQ(rows->size(), 1u);
  EXPECT_EQ((*rows)[0].exitReason, ExitReason::oomKilled);
  EXPECT_EQ((*rows)[0].oomKills, 0) << "unknown before schema 5: counted as none";
}

TEST(Store, ComparisonsAreNumberedNewestFirstAndOnlyTheNewestAreKept) {
  TempDir dir;
  auto store = Store::open(dir.file("state.db"));
  ASSERT_TRUE(store) << store.error().message();
  std::vector<int64_t> ids;
  for (int i = 1; i <= 5; ++i) {
    auto id = store->insertComparison(100 + i, fmt::format(R"({{"runs":{}}})", i), /*keep=*/3);
    ASSERT_TRUE(id) << id.error().message();
    ids.push_back(*id);
  }
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end()) << "ids are never reused";

  auto all = store->listComparisons();
  ASSERT_TRUE(all) << all.error().message();
  ASSERT_EQ(all->size(), 3u) << "only the newest 3 are kept";
  EXPECT_EQ((*all)[0].id, ids[4]);
  EXPECT_EQ((*all)[0].createdAt, 105);
  EXPECT_EQ((*all)[0].resultJson, R"({"runs":5})");
  EXPECT_EQ((*all)[2].id, ids[2]);

  auto one = store->listComparisons(ids[3]);
  ASSERT_TRUE(one) << one.error().message();
  ASSERT_EQ(one->size(), 1u);
  EXPECT_EQ((*one)[0].resultJson, R"({"runs":4})");
  auto newest = store->listComparisons(std::nullopt, 2);
  ASSERT_TRUE(newest) << newest.error().message();
  ASSERT_EQ(newest->size(), 2u);
  EXPECT_EQ((*newest)[0].id, ids[4]);
  EXPECT_EQ((*newest)[1].id, ids[3]);
  auto forgotten = store->listComparisons(ids[0]);
  ASSERT_TRUE(forgotten) << forgotten.error().message();
  EXPECT_TRUE(forgotten->empty());
}

TEST(Store, FlowLogsKeepTheNewestPerVpcAndFilter) {
  TempDir dir;
  const std::string path = dir.file("state.db");
  auto filter = [](std::string vpc, std::string subnet, std::string instance, std::string action) {
    FlowLogFilter f;
    if (!vpc.empty()) f.vpc = vpc;
    if (!subnet.empty()) f.subnet = subnet;
    if (!instance.empty()) f.instance = instance;
    if (!action.empty()) f.action = action;
    return f;
  };
  std::vector<int64_t> ids;
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
    std::vector<Store::NewFlowLog> batch;
    for (int i = 0; i < 5; ++i) {
      batch.push_back(Store::NewFlowLog{"prod", i % 2 ? "web" : "db", fmt::format("i-{}", i),
                                        i % 2 ? "ACCEPT" : "REJECT", fmt::format(R"({{"n":{}}})", i)});
    }
    batch.push_back(Store::NewFlowLog{"lab", "s", "x", "ACCEPT", "{}"});
    auto inserted = store->insertFlowLogs(batch, /*keepPerVpc=*/3);
    ASSERT_TRUE(inserted) << inserted.error().message();
    ids = *inserted;
    ASSERT_EQ(ids.size(), 6u);
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));

    auto prod = store->listFlowLogs(filter("prod", "", "", ""));
    ASSERT_TRUE(prod) << prod.error().message();
    ASSERT_EQ(prod->size(), 3u) << "only the newest 3 of a VPC are kept";
    EXPECT_EQ((*prod)[0].recordJson, R"({"n":2})") << "oldest first";
    EXPECT_EQ((*prod)[2].recordJson, R"({"n":4})");
    auto lab = store->listFlowLogs(filter("lab", "", "", ""));
    ASSERT_TRUE(lab);
    EXPECT_EQ(lab->size(), 1u) << "another VPC's ring is its own";

    auto rejects = store->listFlowLogs(filter("prod", "", "", "REJECT"));
    ASSERT_TRUE(rejects);
    EXPECT_EQ(rejects->size(), 2u);
    auto web = store->listFlowLogs(filter("", "web", "", ""));
    ASSERT_TRUE(web);
    ASSERT_EQ(web->size(), 1u);
    EXPECT_EQ((*web)[0].recordJson, R"({"n":3})");
    auto one = store->listFlowLogs(filter("", "", "i-4", ""));
    ASSERT_TRUE(one);
    EXPECT_EQ(one->size(), 1u);
    FlowLogFilter after;
    after.afterId = ids[3];
    auto later = store->listFlowLogs(after);
    ASSERT_TRUE(later);
    EXPECT_EQ(later->size(), 2u) << "i-4 and lab's";
    FlowLogFilter newest;
    newest.newest = 1;
    auto last = store->listFlowLogs(newest);
    ASSERT_TRUE(last);
    ASSERT_EQ(last->size(), 1u);
    EXPECT_EQ((*last)[0].id, ids[5]);
  }
  // They survive a reopen; a deleted VPC's go.
  auto reopened = Store::open(path);
  ASSERT_TRUE(reopened) << reopened.error().message();
  auto again = reopened->listFlowLogs(FlowLogFilter{});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->size(), 4u);
  ASSERT_TRUE(reopened->deleteFlowLogs("prod"));
  again = reopened->listFlowLogs(FlowLogFilter{});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->size(), 1u);
}

TEST(Store, DatabaseFromANewerCorralIsRefusedAndLeftAlone) {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    RawDb raw(path);
    raw.exec("CREATE TABLE future (x INTEGER); PRAGMA user_version = 99");
  }
  auto store = Store::open(path);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind(), ErrorKind::Conflict);
  EXPECT_EQ(store.error().message(),
            fmt::format("open store \"{}\": written by a newer corral (schema 99, this corral knows 11); "
                        "refusing to touch it",
                        path));
  RawDb raw(path);
  EXPECT_EQ(raw.value("PRAGMA user_version"), "99");
  EXPECT_EQ(raw.value("PRAGMA journal_mode"), "delete");
  EXPECT_EQ(raw.rows("SELECT name FROM sqlite_master WHERE type = 'table'"),
            std::vector<std::string>{"future"});
}

TEST(Store, TamperedRowsGiveALoadErrorNamingTableRowAndColumn) {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    auto store = Store::open(path);
    ASSERT_TRUE(store) << store.error().message();
    Topology topology;
    buildFullTopology(*store, topology);
    if (HasFatalFailure()) return;
  }
  struct Tampering {
    std::string sql;
    std::vector<std::string> expected;  // pieces the error must name
  };
  const std::vector<Tampering> tamperings = {
      {"UPDATE subnets SET cidr = 'banana' WHERE name = 'web'",
       {"table subnets, row \"web\": column cidr", "banana"}},
      {"UPDATE security_group_rules SET protocol = 'carrier-pigeon' WHERE security_group = 'web-sg' AND id = "
       "1",
       {"table security_group_rules, row (\"web-sg\", id 1): column protocol", "carrier-pigeon"}},
      {"UPDATE routes SET target_type = 'wormhole' WHERE route_table = 'public' AND destination = "
       "'0.0.0.0/0'",
       {"table routes, row (\"public\", 0.0.0.0/0): column target_type", "wormhole"}},
      {"UPDATE network_acl_rules SET action = 'maybe' WHERE network_acl = 'locked' AND number = 200",
       {"table network_acl_rules, row (\"locked\", ingress 200): column action", "maybe"}},
      {"UPDATE vpcs SET cidr = '10.0.0.1/16' WHERE name = 'prod'", {"table vpcs, row \"prod\": column cidr"}},
      // A reference the foreign keys cannot see (route targets) is caught by the model's integrity check.
      {"UPDATE routes SET target_name = 'gone-igw' WHERE route_table = 'public' AND destination = "
       "'0.0.0.0/0'",
       {"integrity check", "gone-igw"}},
  };
  std::string pristine = path + ".pristine";
  std::filesystem::copy_file(path, pristine);
  for (const Tampering& tampering : tamperings) {
    SCOPED_TRACE(tampering.sql);
    std::filesystem::copy_file(pristine, path, std::filesystem::copy_options::overwrite_existing);
    RawDb(path).exec(tampering.sql);
    auto loaded = reopenAndLoad(path);
    ASSERT_FALSE(loaded);
    EXPECT_EQ(loaded.error().kind(), ErrorKind::Internal);
    EXPECT_TRUE(loaded.error().message().starts_with(fmt::format("load store \"{}\": ", path)))
        << loaded.error().message();
    for (const std::string& piece : tampering.expected) {
      EXPECT_NE(loaded.error().message().find(piece), std::string::npos)
          << "missing \"" << piece << "\" in: " << loaded.error().message();
    }
  }
}

TEST(Store, OpeningInAMissingDirectoryNamesThePath) {
  TempDir dir;
  std::string path = dir.file("missing/state.db");
  auto store = Store::open(path);
  ASSERT_FALSE(store);
  EXPECT_EQ(store.error().kind(), ErrorKind::Internal);
  EXPECT_TRUE(store.error().message().starts_with(fmt::format("open store \"{}\": sqlite3_open_v2: ", path)))
      << store.error().message();
  EXPECT_FALSE(std::filesystem::exists(dir.file("missing")));
}

TEST(Store, AFileThatIsNotADatabaseIsRefused) {
  TempDir dir;
  std::string path = dir.file("state.db");
  {
    FILE* file = fopen(path.c_str(), "w");
    ASSERT_NE(file, nullptr);
    fputs("this is not an sqlite database, it is a shopping list: eggs, milk, more eggs, and coffee\n", file);
    fclose(file);
  }
  auto store = Store::open(path);
  ASSERT_FALSE(store);
  EXPECT_NE(store.error().message().find(path), std::string::npos) << store.error().message();
  EXPECT_NE(store.error().message().find("file is not a database"), std::string::npos)
      << store.error().message();
}

TEST(Store, ACommittedApplySurvivesSigkill) {
  TempDir dir;
  std::string path = dir.file("state.db");
  ASSERT_TRUE(Store::open(path));  // the parent holds no connection while the child writes

  pid_t child = fork();
  ASSERT_GE(child, 0) << "fork: " << strerror(errno);
  if (child == 0) {
    // No gtest assertions here: report through the exit status, and never run the parent's teardown.
    auto store = Store::open(path);
    if (!store) _exit(2);
    Topology topology;
    auto changes = topology.createVpc({.name = "durable", .cidr = "10.9.0.0/16"}, 4242);
    if (!changes || !store->apply(topology, *changes)) _exit(3);
    raise(SIGKILL);  // no close, no checkpoint: only the committed WAL frames remain
    _exit(4);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "child exited with " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGKILL);

  auto loaded = reopenAndLoad(path);
  ASSERT_TRUE(loaded) << loaded.error().message();
  const net::Vpc* vpc = loaded->findVpc("durable");
  ASSERT_NE(vpc, nullptr);
  EXPECT_EQ(vpc->cidr.str(), "10.9.0.0/16");
  EXPECT_EQ(vpc->createdAt, 4242);
  EXPECT_NE(loaded->mainRouteTable("durable"), nullptr);
  EXPECT_NE(loaded->defaultSecurityGroup("durable"), nullptr);
}

}  // namespace
}  // namespace corral::daemon

namespace corral::daemon {
namespace {

// Groups: a row written again keeps its events (updated in place, not replaced), events are bounded per
// group, and a deleted group's events go with it.
TEST(StoreGroups, RowsEventsAndTheirBound) {
  TempDir dir;
  auto store = Store::open(dir.file("state.db"));
  ASSERT_TRUE(store) << store.error().message();
  GroupRow row{.name = "web",
               .specJson = "{}",
               .desired = 2,
               .policyJson = std::nullopt,
               .nextMember = 1,
               .createdAt = 5};
  ASSERT_TRUE(store->insertGroup(row));
  auto again = store->insertGroup(row);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind(), ErrorKind::Conflict);
  ASSERT_TRUE(store->insertGroup(GroupRow{.name = "db",
                                          .specJson = "{}",
                                          .desired = 0,
                                          .policyJson = std::nullopt,
                                          .nextMember = 1,
                                          .createdAt = 0}));
  for (int i = 0; i < 7; ++i)
    ASSERT_TRUE(store->insertGroupEvent(
        "web", {.id = 0, .atMs = i, .kind = "launched", .instance = "web-1", .message = "m"}, 5));
  ASSERT_TRUE(store->insertGroupEvent(
      "db", {.id = 0, .atMs = 1, .kind = "created", .instance = std::nullopt, .message = "m"}, 5));
  row.nextMember = 4;
  row.desired = 3;
  row.policyJson = R"({"cpu_target":50})";
  ASSERT_TRUE(store->putGroup(row));
  auto events = store->listGroupEvents("web");
  ASSERT_TRUE(events) << events.error().message();
  ASSERT_EQ(events->size(), 5u);
  EXPECT_EQ(events->front().atMs, 2);
  EXPECT_EQ(events->back().atMs, 6);
  EXPECT_EQ(events->back().instance, "web-1");
  auto rows = store->listGroups();
  ASSERT_TRUE(rows);
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[1].name, "web");
  EXPECT_EQ((*rows)[1].nextMember, 4);
  EXPECT_EQ((*rows)[1].desired, 3);
  EXPECT_EQ((*rows)[1].policyJson, R"({"cpu_target":50})");
  ASSERT_TRUE(store->deleteGroup("web"));
  EXPECT_TRUE(store->listGroupEvents("web")->empty());
  EXPECT_EQ(store->listGroupEvents("db")->size(), 1u);
}

}  // namespace
}  // namespace corral::daemon
