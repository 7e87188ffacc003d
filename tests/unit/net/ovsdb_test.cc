// The OVSDB client without a server: the stream framing, the JSON encodings, transact errors, monitors and
// the echo keep-alive, over a transport that plays back what a server would send and records what was sent.
#include "net/ovsdb.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace corral::net::ovsdb {
namespace {

using namespace std::chrono_literals;

std::vector<Json> drain(JsonStreamSplitter& splitter) {
  std::vector<Json> values;
  while (auto next = splitter.next()) {
    EXPECT_TRUE(*next) << next->error().message();
    if (!*next) break;
    values.push_back(**next);
  }
  return values;
}

TEST(JsonStreamSplitter, JoinsAMessageSplitAcrossReads) {
  JsonStreamSplitter splitter;
  std::string message = R"({"id":1,"result":["OVN_Northbound","_Server"],"error":null})";
  for (size_t i = 0; i < message.size(); ++i) {
    splitter.feed(message.substr(i, 1));
    auto values = drain(splitter);
    if (i + 1 < message.size()) {
      EXPECT_TRUE(values.empty()) << "a value after " << i + 1 << " bytes";
    } else {
      ASSERT_EQ(values.size(), 1u);
      EXPECT_EQ(values[0]["result"][0], "OVN_Northbound");
    }
  }
  EXPECT_EQ(splitter.pending(), 0u);
}

TEST(JsonStreamSplitter, SplitsSeveralMessagesInOneRead) {
  JsonStreamSplitter splitter;
  splitter.feed(R"({"id":1,"result":{}}  {"id":2,"result":[]})"
                "\n"
                R"([1,[2,{"a":3}]]{"id":)");
  auto values = drain(splitter);
  ASSERT_EQ(values.size(), 3u);
  EXPECT_EQ(values[0]["id"], 1);
  EXPECT_EQ(values[1]["id"], 2);
  EXPECT_EQ(values[2][1][1]["a"], 3);
  splitter.feed("3}");
  values = drain(splitter);
  ASSERT_EQ(values.size(), 1u);
  EXPECT_EQ(values[0]["id"], 3);
}

TEST(JsonStreamSplitter, IgnoresBracesAndEscapedQuotesInsideStrings) {
  JsonStreamSplitter splitter;
  // A string holding braces, brackets, an escaped quote and an escaped backslash right before its end.
  std::string tricky = R"({"name":"a}b]{[\"c\\","x":1})";
  splitter.feed(tricky.substr(0, 15));
  EXPECT_TRUE(drain(splitter).empty());
  splitter.feed(tricky.substr(15));
  auto values = drain(splitter);
  ASSERT_EQ(values.size(), 1u);
  EXPECT_EQ(values[0]["name"], "a}b]{[\"c\\");
  EXPECT_EQ(values[0]["x"], 1);
}

TEST(JsonStreamSplitter, RefusesAStreamThatIsNotJson) {
  JsonStreamSplitter splitter;
  splitter.feed("hello");
  auto next = splitter.next();
  ASSERT_TRUE(next.has_value());
  ASSERT_FALSE(*next);
  EXPECT_NE(next->error().message().find("starts with 'h'"), std::string::npos) << next->error().message();

  JsonStreamSplitter mismatched;
  mismatched.feed("{\"a\":1]");
  next = mismatched.next();
  ASSERT_TRUE(next.has_value());
  EXPECT_FALSE(*next);
}

// Plays back what a server says, in the chunks given, and records what the client sent. A reply may depend
// on the request's id: "$ID" in a scripted chunk is the id of the last request sent (replies to the
// server's echo do not count).
class ScriptedTransport final : public OvsdbTransport {
 public:
  explicit ScriptedTransport(std::deque<std::string> chunks) : chunks_(std::move(chunks)) {}
  Status send(std::string_view bytes) override {
    sent.push_back(Json::parse(bytes));
    return {};
  }
  Result<std::optional<std::string>> receive(std::chrono::milliseconds) override {
    if (chunks_.empty()) return std::optional<std::string>();  // a timeout
    std::string chunk = std::move(chunks_.front());
    chunks_.pop_front();
    if (chunk == "EOF") return fail(unavailable("the server closed the connection"));
    std::string id = "0";
    for (const Json& message : sent) {
      if (message.contains("method")) id = message["id"].dump();
    }
    for (size_t at; (at = chunk.find("$ID")) != std::string::npos;) chunk.replace(at, 3, id);
    return std::optional<std::string>(chunk);
  }
  std::vector<Json> sent;

 private:
  std::deque<std::string> chunks_;
};

struct ScriptedClient {
  explicit ScriptedClient(std::deque<std::string> chunks) {
    auto owned = std::make_unique<ScriptedTransport>(std::move(chunks));
    transport = owned.get();
    client = std::make_unique<OvsdbClient>(std::move(owned), 200ms);
  }
  ScriptedTransport* transport;
  std::unique_ptr<OvsdbClient> client;
};

TEST(OvsdbClient, ListsDatabasesFromAReplySplitInTwo) {
  ScriptedClient s({R"({"id":$ID,"result":["OVN_North)", R"(bound","_Server"],"error":null})"});
  auto dbs = s.client->listDbs();
  ASSERT_TRUE(dbs) << dbs.error().message();
  EXPECT_EQ(*dbs, (std::vector<std::string>{"OVN_Northbound", "_Server"}));
  ASSERT_EQ(s.transport->sent.size(), 1u);
  EXPECT_EQ(s.transport->sent[0]["method"], "list_dbs");
  EXPECT_EQ(s.transport->sent[0]["params"], Json::array());
}

TEST(OvsdbClient, AnswersTheServersEchoWhileWaitingForAReply) {
  ScriptedClient s({R"({"id":"echo","method":"echo","params":[]})",
                    R"({"id":$ID,"result":{"name":"OVN_Northbound"},"error":null})"});
  auto schema = s.client->getSchema("OVN_Northbound");
  ASSERT_TRUE(schema) << schema.error().message();
  EXPECT_EQ((*schema)["name"], "OVN_Northbound");
  ASSERT_EQ(s.transport->sent.size(), 2u);
  EXPECT_EQ(s.transport->sent[0]["method"], "get_schema");
  EXPECT_EQ(s.transport->sent[0]["params"], Json::array({"OVN_Northbound"}));
  EXPECT_EQ(s.transport->sent[1], Json::parse(R"({"id":"echo","result":[],"error":null})"));
  EXPECT_EQ(s.client->echoesAnswered(), 1u);
}

TEST(OvsdbClient, AnswersEchoWhileWaitingForUpdatesAndRefusesOtherRequests) {
  ScriptedClient s({R"({"id":7,"method":"echo","params":["x"]}{"id":8,"method":"lock","params":["l"]})"});
  auto none = s.client->nextUpdate(20ms);
  ASSERT_TRUE(none) << none.error().message();
  EXPECT_FALSE(*none);
  ASSERT_EQ(s.transport->sent.size(), 2u);
  EXPECT_EQ(s.transport->sent[0], Json::parse(R"({"id":7,"result":["x"],"error":null})"));
  EXPECT_EQ(s.transport->sent[1], Json::parse(R"({"id":8,"result":null,"error":"unknown method lock"})"));
}

TEST(OvsdbClient, SkipsALateReplyToAnEarlierCall) {
  ScriptedClient s({R"({"id":999,"result":"stale","error":null}{"id":$ID,"result":["x"],"error":null})"});
  auto echoed = s.client->echo(Json::array({"x"}));
  ASSERT_TRUE(echoed) << echoed.error().message();
  EXPECT_EQ(*echoed, Json::array({"x"}));
}

TEST(OvsdbClient, ReportsAJsonRpcErrorNamingTheMethod) {
  ScriptedClient s(
      {R"({"id":$ID,"result":null,"error":{"error":"unknown database","details":"get_schema request specifies unknown database Nope"}})"});
  auto schema = s.client->getSchema("Nope");
  ASSERT_FALSE(schema);
  EXPECT_EQ(schema.error().kind(), ErrorKind::NotFound);
  EXPECT_EQ(schema.error().message(),
            "get_schema: unknown database: get_schema request specifies unknown database Nope");
}

TEST(OvsdbClient, TimesOutWithoutAReplyAndFailsOnAClosedConnection) {
  ScriptedClient silent({});
  auto dbs = silent.client->listDbs();
  ASSERT_FALSE(dbs);
  EXPECT_EQ(dbs.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(dbs.error().message().find("no reply"), std::string::npos) << dbs.error().message();

  ScriptedClient closed({"EOF"});
  dbs = closed.client->listDbs();
  ASSERT_FALSE(dbs);
  EXPECT_EQ(dbs.error().message(), "list_dbs: the server closed the connection");
}

TEST(OvsdbEncoding, EncodesAndDecodesAtomsSetsAndMaps) {
  EXPECT_EQ(uuid("36bb").dump(), R"(["uuid","36bb"])");
  EXPECT_EQ(namedUuid("ls0").dump(), R"(["named-uuid","ls0"])");
  EXPECT_EQ(set({namedUuid("p0"), namedUuid("p1")}).dump(),
            R"(["set",[["named-uuid","p0"],["named-uuid","p1"]]])");
  EXPECT_EQ(map({{"iface-id", "web-1"}}).dump(), R"(["map",[["iface-id","web-1"]]])");

  EXPECT_EQ(decodeUuid(Json::parse(R"(["uuid","abc"])")).value(), "abc");
  EXPECT_FALSE(decodeUuid(Json("abc")));
  // A set of one may come as the bare atom, a uuid atom included.
  EXPECT_EQ(decodeSet(Json::parse(R"(["uuid","abc"])")).value().size(), 1u);
  EXPECT_EQ(decodeSet(Json("10.0.1.5")).value(), std::vector<Json>{"10.0.1.5"});
  EXPECT_EQ(decodeSet(Json::parse(R"(["set",[1,2]])")).value(), (std::vector<Json>{1, 2}));
  EXPECT_TRUE(decodeSet(Json::parse(R"(["set",[]])")).value().empty());
  EXPECT_FALSE(decodeSet(Json::parse(R"([1,2])")));
  auto pairs = decodeMap(Json::parse(R"(["map",[["a","1"],["b","2"]]])"));
  ASSERT_TRUE(pairs);
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ((*pairs)[1].first, "b");
  EXPECT_EQ((*pairs)[1].second, "2");
  EXPECT_FALSE(decodeMap(Json::parse(R"(["map",[["a"]]])")));
}

TEST(OvsdbEncoding, BuildsEachTransactOperation) {
  Where byName = {condition("name", "==", "ls0")};
  EXPECT_EQ(
      insertOp("Logical_Switch", {{"name", "ls0"}}, "ls0"),
      Json::parse(R"({"op":"insert","table":"Logical_Switch","row":{"name":"ls0"},"uuid-name":"ls0"})"));
  EXPECT_EQ(insertOp("Logical_Switch", {{"name", "ls0"}}),
            Json::parse(R"({"op":"insert","table":"Logical_Switch","row":{"name":"ls0"}})"));
  EXPECT_EQ(selectOp("Logical_Switch", byName, {"name", "ports"}),
            Json::parse(R"({"op":"select","table":"Logical_Switch","where":[["name","==","ls0"]],
                            "columns":["name","ports"]})"));
  EXPECT_EQ(updateOp("Logical_Switch", byName, {{"other_config", map({{"subnet", "10.0.1.0/24"}})}}),
            Json::parse(R"({"op":"update","table":"Logical_Switch","where":[["name","==","ls0"]],
                            "row":{"other_config":["map",[["subnet","10.0.1.0/24"]]]}})"));
  EXPECT_EQ(mutateOp("Logical_Switch", byName, {mutation("ports", "insert", set({namedUuid("p0")}))}),
            Json::parse(R"({"op":"mutate","table":"Logical_Switch","where":[["name","==","ls0"]],
                            "mutations":[["ports","insert",["set",[["named-uuid","p0"]]]]]})"));
  EXPECT_EQ(deleteOp("Logical_Switch", byName),
            Json::parse(R"({"op":"delete","table":"Logical_Switch","where":[["name","==","ls0"]]})"));
  EXPECT_EQ(waitOp("Logical_Switch", byName, {"name"}, "==", {{{"name", "ls0"}}}, 500),
            Json::parse(R"({"op":"wait","table":"Logical_Switch","where":[["name","==","ls0"]],
                            "columns":["name"],"until":"==","rows":[{"name":"ls0"}],"timeout":500})"));
}

TEST(OvsdbClient, TransactSendsTheDatabaseThenTheOperations) {
  ScriptedClient s({R"({"id":$ID,"result":[{"uuid":["uuid","7a1c"]},{"count":1}],"error":null})"});
  std::vector<Json> ops = {insertOp("Logical_Switch", {{"name", "ls0"}}, "ls0"),
                           deleteOp("Logical_Switch", {condition("name", "==", "old")})};
  auto results = s.client->transact("OVN_Northbound", ops);
  ASSERT_TRUE(results) << results.error().message();
  ASSERT_EQ(results->size(), 2u);
  EXPECT_EQ(decodeUuid((*results)[0]["uuid"]).value(), "7a1c");
  EXPECT_EQ((*results)[1]["count"], 1);
  const Json& params = s.transport->sent[0]["params"];
  ASSERT_EQ(params.size(), 3u);
  EXPECT_EQ(params[0], "OVN_Northbound");
  EXPECT_EQ(params[1], ops[0]);
  EXPECT_EQ(params[2], ops[1]);
}

TEST(OvsdbTransactResult, NamesTheFailingOperationOrTheCommit) {
  std::vector<Json> ops = {insertOp("Logical_Switch", {{"name", "ls0"}}),
                           insertOp("Logical_Switch_Port", {{"name", "p0"}})};
  auto failedOp = checkTransactResult(
      "OVN_Northbound", ops,
      Json::parse(R"([{"uuid":["uuid","1"]},{"error":"constraint violation","details":"bad port"}])"));
  ASSERT_FALSE(failedOp);
  EXPECT_EQ(failedOp.error().kind(), ErrorKind::Conflict);
  EXPECT_EQ(
      failedOp.error().message(),
      "transact OVN_Northbound: operation 1 (insert Logical_Switch_Port): constraint violation: bad port");

  // One result more than operations: the commit failed after every operation succeeded.
  auto failedCommit =
      checkTransactResult("OVN_Northbound", ops, Json::parse(R"([{"uuid":["uuid","1"]},{"uuid":["uuid","2"]},
                      {"error":"referential integrity violation","details":"dangling"}])"));
  ASSERT_FALSE(failedCommit);
  EXPECT_EQ(failedCommit.error().message(),
            "transact OVN_Northbound: commit: referential integrity violation: dangling");

  auto odd = checkTransactResult("OVN_Northbound", ops, Json::parse(R"([{"error":"syntax error"}])"));
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().kind(), ErrorKind::Internal);
  EXPECT_FALSE(checkTransactResult("OVN_Northbound", ops, Json::parse(R"([{}])")));  // too few results
  EXPECT_FALSE(checkTransactResult("OVN_Northbound", ops, Json::parse(R"({})")));
}

TEST(OvsdbClient, MonitorReturnsInitialRowsThenQueuesUpdates) {
  // The initial reply and an update notification arrive in one read, the next update split in two.
  ScriptedClient s(
      {R"({"id":$ID,"result":{"Logical_Switch":{"u1":{"new":{"name":"ls0"}}}},"error":null})"
       R"({"id":null,"method":"update","params":["m",{"Logical_Switch":{"u2":{"new":{"name":"ls1"}}}}]})",
       R"({"id":null,"method":"update","params":["m",{"Logical_Switch":{"u1":{"old":{"name":"ls0"}},)",
       R"("u2":{"old":{"name":"ls1"},"new":{"name":"ls2"}}}}]})"});
  auto initial = s.client->monitor("OVN_Northbound", "m",
                                   {{.table = "Logical_Switch", .columns = {"name"}, .where = {}}});
  ASSERT_TRUE(initial) << initial.error().message();
  ASSERT_EQ(initial->size(), 1u);
  EXPECT_EQ((*initial)[0].kind, RowChange::Kind::Initial);
  EXPECT_EQ((*initial)[0].uuid, "u1");
  EXPECT_EQ(s.transport->sent[0]["params"],
            Json::parse(R"(["OVN_Northbound","m",{"Logical_Switch":{"columns":["name"]}}])"));

  auto first = s.client->nextUpdate(100ms);
  ASSERT_TRUE(first && *first) << (first ? "none" : first.error().message());
  EXPECT_EQ((*first)->monitorId, "m");
  ASSERT_EQ((*first)->changes.size(), 1u);
  EXPECT_EQ((*first)->changes[0].kind, RowChange::Kind::Insert);
  EXPECT_EQ((*first)->changes[0].row["name"], "ls1");

  auto second = s.client->nextUpdate(100ms);
  ASSERT_TRUE(second && *second);
  ASSERT_EQ((*second)->changes.size(), 2u);
  EXPECT_EQ((*second)->changes[0].kind, RowChange::Kind::Delete);
  EXPECT_EQ((*second)->changes[1].kind, RowChange::Kind::Modify);
  EXPECT_EQ((*second)->changes[1].row["name"], "ls2");

  auto none = s.client->nextUpdate(10ms);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

TEST(OvsdbClient, MonitorCondSendsWhereClausesAndDecodesUpdate2) {
  ScriptedClient s(
      {R"({"id":$ID,"result":{"Logical_Switch_Port":{"p1":{"initial":{"name":"web-1"}}}},"error":null})",
       R"({"id":null,"method":"update2","params":["c",{"Logical_Switch_Port":{"p1":{"modify":{"up":true}},)"
       R"("p2":{"insert":{"name":"web-2"}},"p3":{"delete":null}}}]})"});
  auto initial = s.client->monitorCond(
      "OVN_Northbound", "c",
      {{.table = "Logical_Switch_Port", .columns = {"name", "up"}, .where = {condition("name", "!=", "")}}});
  ASSERT_TRUE(initial) << initial.error().message();
  ASSERT_EQ(initial->size(), 1u);
  EXPECT_EQ((*initial)[0].kind, RowChange::Kind::Initial);
  EXPECT_EQ(s.transport->sent[0]["params"][2],
            Json::parse(R"({"Logical_Switch_Port":[{"columns":["name","up"],"where":[["name","!=",""]]}]})"));
  auto update = s.client->nextUpdate(100ms);
  ASSERT_TRUE(update && *update);
  ASSERT_EQ((*update)->changes.size(), 3u);
  EXPECT_EQ((*update)->changes[0].kind, RowChange::Kind::Modify);
  EXPECT_EQ((*update)->changes[0].row, Json::parse(R"({"up":true})"));
  EXPECT_EQ((*update)->changes[1].kind, RowChange::Kind::Insert);
  EXPECT_EQ((*update)->changes[2].kind, RowChange::Kind::Delete);

  EXPECT_FALSE(decodeTableUpdates2(Json::parse(R"({"T":{"u":{"grow":{}}}})")));
  EXPECT_FALSE(decodeTableUpdates(Json::parse(R"({"T":{"u":{}}})"), false));
}

TEST(OvsdbRemote, ParsesUnixAndTcpAndNamesTheFieldWhenWrong) {
  auto unixRemote = parseRemote("unix:/run/ovn/ovnnb_db.sock");
  ASSERT_TRUE(unixRemote);
  EXPECT_EQ(unixRemote->kind, Remote::Kind::Unix);
  EXPECT_EQ(unixRemote->path, "/run/ovn/ovnnb_db.sock");
  auto tcpRemote = parseRemote("tcp:127.0.0.1:6641");
  ASSERT_TRUE(tcpRemote);
  EXPECT_EQ(tcpRemote->kind, Remote::Kind::Tcp);
  EXPECT_EQ(tcpRemote->address, "127.0.0.1");
  EXPECT_EQ(tcpRemote->port, 6641);
  for (std::string bad : {"unix:", "tcp:127.0.0.1", "tcp:localhost:6641", "tcp:127.0.0.1:0",
                          "tcp:127.0.0.1:70000", "ssl:127.0.0.1:6641", "/run/ovn/ovnnb_db.sock"}) {
    auto parsed = parseRemote(bad);
    ASSERT_FALSE(parsed) << bad;
    EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument) << bad;
    EXPECT_EQ(parsed.error().field(), "remote") << bad;
  }
}

}  // namespace
}  // namespace corral::net::ovsdb
