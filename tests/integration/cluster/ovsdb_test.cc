// The OVSDB client against a real ovsdb-server with OVN's northbound schema (a private one, on a Unix socket
// in a temp dir): what the client writes, ovn-nbctl (the oracle) and a monitor both see; what the server
// refuses comes back as an error naming the operation, and changes nothing.
#include "net/ovsdb.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "tests/integration/cluster/ovn_cluster.h"
#include "tests/integration/skip_guard.h"

namespace corral::net::ovsdb {
namespace {

using namespace std::chrono_literals;
using testing::OvsdbServer;
using testing::TempDir;

constexpr const char* kNorthbound = "OVN_Northbound";

class OvsdbServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(testing::kOvnNorthboundSchema)) {
      GTEST_SKIP() << testing::kOvnNorthboundSchema
                   << " is missing: scripts/install-deps installs ovn-central";
    }
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    // Also listening where NB_Global's connections say, as OVN's own ovsdb-server does (none at first).
    server_.emplace(dir_, "nb", testing::kOvnNorthboundSchema,
                    std::vector<std::string>{"--remote=db:OVN_Northbound,NB_Global,connections"});
    ASSERT_EQ(server_->error(), "");
    auto connected = OvsdbClient::connect(server_->remote());
    ASSERT_TRUE(connected) << connected.error().message();
    client_.emplace(std::move(*connected));
  }

  // `ovn-nbctl ARGS` against our server: the oracle for what the database holds.
  std::string nbctl(std::vector<std::string> args) {
    args.insert(args.begin(), {"ovn-nbctl", "--db=" + server_->remote()});
    testing::ToolRun run = testing::runTool(args, server_->environment());
    EXPECT_EQ(run.exitCode, 0) << run.output;
    return run.output;
  }

  // corral-t<PID>-: scripts/sweep-test-leftovers stops the server of a test process that was killed.
  TempDir dir_{"corral-t" + std::to_string(::getpid()) + "-ovsdb"};
  std::optional<OvsdbServer> server_;
  std::optional<OvsdbClient> client_;
};

TEST_F(OvsdbServerTest, ListsDatabasesAndReadsTheSchema) {
  auto dbs = client_->listDbs();
  ASSERT_TRUE(dbs) << dbs.error().message();
  EXPECT_NE(std::find(dbs->begin(), dbs->end(), kNorthbound), dbs->end());
  auto schema = client_->getSchema(kNorthbound);
  ASSERT_TRUE(schema) << schema.error().message();
  EXPECT_EQ((*schema)["name"], kNorthbound);
  EXPECT_TRUE((*schema)["tables"].contains("Logical_Switch_Port"));
  auto echoed = client_->echo(Json::array({"ping"}));
  ASSERT_TRUE(echoed) << echoed.error().message();
  EXPECT_EQ(*echoed, Json::array({"ping"}));

  auto missing = client_->getSchema("No_Such_Db");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("get_schema: unknown database"), std::string::npos)
      << missing.error().message();
}

TEST_F(OvsdbServerTest, CreatesASwitchAndPortThatNbctlAndAMonitorSee) {
  auto initial =
      client_->monitor(kNorthbound, "corral",
                       {{.table = "Logical_Switch", .columns = {"name", "ports"}, .where = {}},
                        {.table = "Logical_Switch_Port", .columns = {"name", "addresses"}, .where = {}}});
  ASSERT_TRUE(initial) << initial.error().message();
  EXPECT_TRUE(initial->empty());

  // The switch and its port in one transaction: the port is referred to by its named-uuid.
  auto created = client_->transact(
      kNorthbound,
      {insertOp("Logical_Switch_Port",
                {{"name", "web-1"},
                 {"addresses", set({"00:00:0a:00:01:05 10.0.1.5"})},
                 {"external_ids", map({{"corral-instance", "web-1"}})}},
                "port"),
       insertOp("Logical_Switch", {{"name", "subnet-a"}, {"ports", set({namedUuid("port")})}}, "switch")});
  ASSERT_TRUE(created) << created.error().message();
  ASSERT_EQ(created->size(), 2u);
  auto portUuid = decodeUuid((*created)[0]["uuid"]);
  auto switchUuid = decodeUuid((*created)[1]["uuid"]);
  ASSERT_TRUE(portUuid && switchUuid);

  std::string shown = nbctl({"show"});
  EXPECT_NE(shown.find("switch " + *switchUuid + " (subnet-a)"), std::string::npos) << shown;
  EXPECT_NE(shown.find("port web-1"), std::string::npos) << shown;
  EXPECT_NE(shown.find("addresses: [\"00:00:0a:00:01:05 10.0.1.5\"]"), std::string::npos) << shown;
  EXPECT_EQ(nbctl({"get", "Logical_Switch_Port", "web-1", "external_ids:corral-instance"}), "web-1\n");

  // The monitor saw both inserts, in one update (one transaction).
  auto update = client_->nextUpdate(5s);
  ASSERT_TRUE(update) << update.error().message();
  ASSERT_TRUE(update->has_value()) << "no monitor update within 5 s";
  EXPECT_EQ((*update)->monitorId, "corral");
  ASSERT_EQ((*update)->changes.size(), 2u);
  for (const RowChange& change : (*update)->changes) {
    EXPECT_EQ(change.kind, RowChange::Kind::Insert) << change.table;
    if (change.table == "Logical_Switch") {
      EXPECT_EQ(change.uuid, *switchUuid);
      EXPECT_EQ(change.row["name"], "subnet-a");
      EXPECT_EQ(decodeUuid(change.row["ports"]).value_or(""), *portUuid);
    } else {
      EXPECT_EQ(change.table, "Logical_Switch_Port");
      EXPECT_EQ(change.uuid, *portUuid);
      EXPECT_EQ(decodeSet(change.row["addresses"]).value_or(std::vector<Json>{}),
                std::vector<Json>{"00:00:0a:00:01:05 10.0.1.5"});
    }
  }

  // Read back with select, then update, mutate, wait and delete, each checked with the oracle.
  Where bySwitchName = {condition("name", "==", "subnet-a")};
  auto selected =
      client_->transact(kNorthbound, {selectOp("Logical_Switch", bySwitchName, {"name", "ports"})});
  ASSERT_TRUE(selected) << selected.error().message();
  ASSERT_EQ((*selected)[0]["rows"].size(), 1u);
  EXPECT_EQ((*selected)[0]["rows"][0]["name"], "subnet-a");

  auto changed = client_->transact(
      kNorthbound,
      {waitOp("Logical_Switch", bySwitchName, {"name"}, "==", {{{"name", "subnet-a"}}}),
       updateOp("Logical_Switch", bySwitchName, {{"other_config", map({{"subnet", "10.0.1.0/24"}})}}),
       mutateOp("Logical_Switch", bySwitchName,
                {mutation("external_ids", "insert", map({{"corral-vpc", "prod"}}))})});
  ASSERT_TRUE(changed) << changed.error().message();
  EXPECT_EQ((*changed)[1]["count"], 1);
  EXPECT_EQ((*changed)[2]["count"], 1);
  EXPECT_EQ(nbctl({"get", "Logical_Switch", "subnet-a", "other_config:subnet"}), "\"10.0.1.0/24\"\n");
  EXPECT_EQ(nbctl({"get", "Logical_Switch", "subnet-a", "external_ids:corral-vpc"}), "prod\n");

  // ovsdb-server reports a change only when a monitored column changed.
  auto quiet = client_->nextUpdate(500ms);
  ASSERT_TRUE(quiet) << quiet.error().message();
  EXPECT_FALSE(quiet->has_value()) << "an update for columns the monitor does not watch";

  // Deleting the port from the switch's set, and then the switch: the port row is not a root, so it goes
  // with its last reference.
  auto deleted = client_->transact(
      kNorthbound,
      {mutateOp("Logical_Switch", bySwitchName, {mutation("ports", "delete", set({uuid(*portUuid)}))}),
       deleteOp("Logical_Switch", bySwitchName)});
  ASSERT_TRUE(deleted) << deleted.error().message();
  EXPECT_EQ((*deleted)[1]["count"], 1);
  EXPECT_EQ(nbctl({"show"}), "");
  EXPECT_EQ(nbctl({"--columns=name", "list", "Logical_Switch_Port"}), "");
  auto gone = client_->nextUpdate(5s);
  ASSERT_TRUE(gone && gone->has_value());
  ASSERT_EQ((*gone)->changes.size(), 2u);
  for (const RowChange& change : (*gone)->changes)
    EXPECT_EQ(change.kind, RowChange::Kind::Delete) << change.table;
}

TEST_F(OvsdbServerTest, ARefusedTransactionIsAClearErrorAndChangesNothing) {
  auto created = client_->transact(
      kNorthbound, {insertOp("Logical_Switch_Port", {{"name", "web-1"}}, "port"),
                    insertOp("Logical_Switch", {{"name", "subnet-a"}, {"ports", set({namedUuid("port")})}})});
  ASSERT_TRUE(created) << created.error().message();
  const std::string before = nbctl({"show"});

  // A second switch with a port named like the first one's: Logical_Switch_Port's name is a unique index,
  // so the commit fails, and the new switch must not appear either.
  auto refused = client_->transact(
      kNorthbound, {insertOp("Logical_Switch_Port", {{"name", "web-1"}}, "dup"),
                    insertOp("Logical_Switch", {{"name", "subnet-b"}, {"ports", set({namedUuid("dup")})}})});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind(), ErrorKind::Conflict);
  EXPECT_TRUE(
      refused.error().message().starts_with("transact OVN_Northbound: commit: constraint violation: "))
      << refused.error().message();
  EXPECT_NE(refused.error().message().find("web-1"), std::string::npos) << refused.error().message();
  EXPECT_EQ(nbctl({"show"}), before);

  // A wait that does not hold fails at its operation, and the update after it is not applied.
  Where byName = {condition("name", "==", "subnet-a")};
  auto waited = client_->transact(
      kNorthbound, {waitOp("Logical_Switch", byName, {"name"}, "==", {{{"name", "subnet-x"}}}),
                    updateOp("Logical_Switch", byName, {{"external_ids", map({{"corral-vpc", "prod"}})}})});
  ASSERT_FALSE(waited);
  EXPECT_EQ(waited.error().kind(), ErrorKind::Conflict);
  EXPECT_TRUE(
      waited.error().message().starts_with("transact OVN_Northbound: operation 0 (wait Logical_Switch): "
                                           "timed out"))
      << waited.error().message();
  EXPECT_EQ(nbctl({"get", "Logical_Switch", "subnet-a", "external_ids"}), "{}\n");

  // An operation the schema does not allow (an unknown column) names its operation too.
  auto bad = client_->transact(kNorthbound, {insertOp("Logical_Switch", {{"no_such_column", 1}})});
  ASSERT_FALSE(bad);
  EXPECT_TRUE(
      bad.error().message().starts_with("transact OVN_Northbound: operation 0 (insert Logical_Switch): "))
      << bad.error().message();
  EXPECT_EQ(nbctl({"show"}), before);
}

TEST_F(OvsdbServerTest, KeepsATcpConnectionAliveByAnsweringTheServersEcho) {
  // A TCP listener on loopback with a 1 s inactivity probe: the server sends echo after 1 s of silence and
  // drops a connection that has not answered by the next probe.
  auto configured = client_->transact(
      kNorthbound,
      {insertOp("Connection", {{"target", "ptcp:0:127.0.0.1"}, {"inactivity_probe", 1000}}, "tcp"),
       insertOp("NB_Global", {{"connections", set({namedUuid("tcp")})}})});
  ASSERT_TRUE(configured) << configured.error().message();
  std::string port;
  ASSERT_TRUE(testing::pollUntil(
      [&] {
        auto rows = client_->transact(kNorthbound, {selectOp("Connection", {}, {"status"})});
        if (!rows || (*rows)[0]["rows"].empty()) return false;
        auto status = decodeMap((*rows)[0]["rows"][0]["status"]);
        if (!status) return false;
        for (const auto& [key, value] : *status) {
          if (key == "bound_port") port = value.template get<std::string>();
        }
        return !port.empty();
      },
      10s))
      << "no bound_port in Connection's status";

  auto tcp = OvsdbClient::connect("tcp:127.0.0.1:" + port);
  ASSERT_TRUE(tcp) << tcp.error().message();
  // A second connection that never answers: the server's probe is real when this one is dropped.
  auto silent = SocketTransport::connect(parseRemote("tcp:127.0.0.1:" + port).value());
  ASSERT_TRUE(silent) << silent.error().message();

  auto idle = tcp->nextUpdate(3500ms);  // reads (and answers) whatever the server sends meanwhile
  ASSERT_TRUE(idle) << idle.error().message();
  EXPECT_FALSE(idle->has_value());
  EXPECT_GE(tcp->echoesAnswered(), 2u);
  auto dbs = tcp->listDbs();
  ASSERT_TRUE(dbs) << "the answered connection was dropped: " << dbs.error().message();

  Status dropped = fail(internalError("not yet"));
  while (true) {  // the silent one got echo requests, then the end of the stream
    auto bytes = (*silent)->receive(1s);
    if (!bytes) {
      dropped = fail(bytes.error());
      break;
    }
    if (!*bytes) break;
  }
  ASSERT_FALSE(dropped);
  EXPECT_EQ(dropped.error().kind(), ErrorKind::Unavailable) << dropped.error().message();
}

TEST(OvsdbConnect, AMissingServerIsUnavailableAndABadRemoteNamesTheField) {
  TempDir dir("corral-ovsdb");
  auto missing = OvsdbClient::connect("unix:" + (dir / "nothing.sock"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(missing.error().message().find("nothing.sock"), std::string::npos) << missing.error().message();
  auto bad = OvsdbClient::connect("ptcp:6641");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field(), "remote");
}

}  // namespace
}  // namespace corral::net::ovsdb
