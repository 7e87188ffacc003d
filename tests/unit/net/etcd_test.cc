// The etcd client without etcd: base64, the JSON requests it sends, the replies it decodes (ranges with and
// without kvs, txn succeeded or not, watch streams cut anywhere, error bodies), and which endpoint it tries,
// over a transport that plays back what etcd's gateway would answer and records what was sent.
#include "net/etcd.h"

#include <gtest/gtest.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace corral::net::etcd {
namespace {

using namespace std::chrono_literals;

// Replies captured from etcd 3.4.23's gateway.
constexpr const char* kHeader =
    R"("header":{"cluster_id":"3328081918592189295","member_id":"14172325984252081871","revision":"7","raft_term":"2"})";

Json reply(const std::string& rest = "") {
  return Json::parse("{" + std::string(kHeader) + rest + "}");
}

TEST(EtcdBase64, RoundTripsEveryLengthAndByte) {
  EXPECT_EQ(encodeBase64(""), "");
  EXPECT_EQ(encodeBase64("/a"), "L2E=");
  EXPECT_EQ(encodeBase64("1"), "MQ==");
  EXPECT_EQ(encodeBase64("abc"), "YWJj");
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(char(b));
  for (size_t n = 0; n <= all.size(); n += 37) {
    auto decoded = decodeBase64(encodeBase64(all.substr(0, n)));
    ASSERT_TRUE(decoded) << decoded.error().message();
    EXPECT_EQ(*decoded, all.substr(0, n));
  }
}

TEST(EtcdBase64, RefusesWhatIsNotBase64) {
  EXPECT_FALSE(decodeBase64("L2E"));
  EXPECT_FALSE(decodeBase64("L2!="));
  EXPECT_FALSE(decodeBase64("L=E="));
}

TEST(EtcdCodec, PrefixRangeEndIncrementsTheLastByte) {
  EXPECT_EQ(prefixRangeEnd("/corral/hosts/"), "/corral/hosts0");
  EXPECT_EQ(prefixRangeEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(prefixRangeEnd(""), std::string(1, '\0'));
}

TEST(EtcdCodec, RequestsCarryBase64KeysAndStringNumbers) {
  EXPECT_EQ(putRequest("/a", "1", 0), Json::parse(R"({"key":"L2E=","value":"MQ=="})"));
  EXPECT_EQ(putRequest("/a", "1", 42), Json::parse(R"({"key":"L2E=","value":"MQ==","lease":"42"})"));
  EXPECT_EQ(rangeRequest("/a/", true), Json::parse(R"({"key":"L2Ev","range_end":"L2Ew"})"));
  EXPECT_EQ(rangeRequest("/a", false, 12), Json::parse(R"({"key":"L2E=","revision":"12"})"));
  EXPECT_EQ(deleteRequest("/a", false), Json::parse(R"({"key":"L2E="})"));
  EXPECT_EQ(deleteRequest("/a", false, "/b"), Json::parse(R"({"key":"L2E=","range_end":"L2I="})"));
  EXPECT_EQ(watchCreateRequest("/a/", 5),
            Json::parse(R"({"create_request":{"key":"L2Ev","range_end":"L2Ew","start_revision":"5"}})"));
}

TEST(EtcdCodec, TxnRequestHasComparesAndBothBranches) {
  Json request =
      txnRequest({Compare::absent("/a"), Compare::modRevision("/b", 9), Compare::valueIs("/c", "x")},
                 {TxnOp::put("/a", "1", 3)}, {TxnOp::get("/a"), TxnOp::remove("/d/", true)});
  EXPECT_EQ(request["compare"][0],
            Json::parse(R"({"key":"L2E=","target":"CREATE","result":"EQUAL","create_revision":"0"})"));
  EXPECT_EQ(request["compare"][1],
            Json::parse(R"({"key":"L2I=","target":"MOD","result":"EQUAL","mod_revision":"9"})"));
  EXPECT_EQ(request["compare"][2],
            Json::parse(R"({"key":"L2M=","target":"VALUE","result":"EQUAL","value":"eA=="})"));
  EXPECT_EQ(request["success"][0],
            Json::parse(R"({"request_put":{"key":"L2E=","value":"MQ==","lease":"3"}})"));
  EXPECT_EQ(request["failure"][0], Json::parse(R"({"request_range":{"key":"L2E="}})"));
  EXPECT_EQ(request["failure"][1],
            Json::parse(R"({"request_delete_range":{"key":"L2Qv","range_end":"L2Qw"}})"));
}

TEST(EtcdCodec, DecodesARangeWithKvs) {
  auto range = decodeRange(reply(
      R"(,"kvs":[{"key":"L2E=","create_revision":"2","mod_revision":"5","version":"3","value":"MQ==","lease":"99"}],"count":"1")"));
  ASSERT_TRUE(range) << range.error().message();
  EXPECT_EQ(range->revision, 7);
  EXPECT_EQ(range->count, 1);
  ASSERT_EQ(range->kvs.size(), 1u);
  EXPECT_EQ(range->kvs[0], (KeyValue{"/a", "1", 2, 5, 3, 99}));
}

TEST(EtcdCodec, DecodesARangeWithoutKvs) {
  // etcd leaves out "kvs" and "count" when nothing matched.
  auto range = decodeRange(reply());
  ASSERT_TRUE(range) << range.error().message();
  EXPECT_EQ(range->revision, 7);
  EXPECT_TRUE(range->kvs.empty());
  EXPECT_EQ(range->count, 0);
}

TEST(EtcdCodec, RefusesARangeWithBrokenFields) {
  EXPECT_FALSE(decodeRange(Json::parse(R"({"kvs":[]})")));  // no header
  EXPECT_FALSE(decodeRange(reply(R"(,"kvs":[{"key":"L2E","mod_revision":"5"}])")));
  EXPECT_FALSE(decodeRange(reply(R"(,"kvs":[{"key":"L2E=","mod_revision":"five"}])")));
}

TEST(EtcdCodec, DecodesATxnThatSucceeded) {
  auto txn =
      decodeTxn(reply(R"(,"succeeded":true,"responses":[{"response_put":{"header":{"revision":"7"}}}])"));
  ASSERT_TRUE(txn) << txn.error().message();
  EXPECT_TRUE(txn->succeeded);
  EXPECT_EQ(txn->revision, 7);
  ASSERT_EQ(txn->reads.size(), 1u);
  EXPECT_TRUE(txn->reads[0].kvs.empty());
}

TEST(EtcdCodec, DecodesATxnThatFailedWithTheElseBranchRead) {
  // "succeeded" is left out when false; the else-branch's range comes back.
  auto txn = decodeTxn(reply(
      R"(,"responses":[{"response_range":{"header":{"revision":"7"},"kvs":[{"key":"L2E=","create_revision":"2","mod_revision":"2","version":"1","value":"MQ=="}],"count":"1"}}])"));
  ASSERT_TRUE(txn) << txn.error().message();
  EXPECT_FALSE(txn->succeeded);
  ASSERT_EQ(txn->reads.size(), 1u);
  ASSERT_EQ(txn->reads[0].kvs.size(), 1u);
  EXPECT_EQ(txn->reads[0].kvs[0].value, "1");
}

TEST(EtcdErrors, LostQuorumIsUnavailableNamingTheOperation) {
  for (const char* body :
       {R"({"error":"etcdserver: request timed out","message":"etcdserver: request timed out","code":14})",
        R"({"error":"etcdserver: no leader","message":"etcdserver: no leader","code":14})",
        R"({"error":"context deadline exceeded","message":"context deadline exceeded","code":2})"}) {
    Error e = errorFromReply("put \"/corral/a\"", 503, body);
    EXPECT_EQ(e.kind(), ErrorKind::Unavailable) << body;
    EXPECT_NE(e.message().find("put \"/corral/a\": cluster store has no quorum (etcd: "), std::string::npos)
        << e.message();
  }
}

TEST(EtcdErrors, ARefusalNamesTheOperationAndEtcdsReason) {
  Error invalid = errorFromReply("put \"!\"", 400,
                                 R"({"error":"illegal base64 data at input byte 0","message":"x","code":3})");
  EXPECT_EQ(invalid.kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(invalid.message(), "put \"!\": etcd refused: illegal base64 data at input byte 0");
  Error lease = errorFromReply("revoke lease 3039", 404,
                               R"({"error":"etcdserver: requested lease not found","code":5})");
  EXPECT_EQ(lease.kind(), ErrorKind::NotFound);
  Error notJson = errorFromReply("get \"/a\"", 500, "oops");
  EXPECT_EQ(notJson.kind(), ErrorKind::Internal);
  EXPECT_EQ(notJson.message(), "get \"/a\": etcd refused: HTTP 500: oops");
}

constexpr const char* kWatchStream =
    R"({"result":{"header":{"cluster_id":"1","member_id":"2","revision":"2","raft_term":"2"},"created":true}})"
    "\n"
    R"({"result":{"header":{"revision":"4"},"events":[{"kv":{"key":"L2EvMQ==","create_revision":"3","mod_revision":"3","version":"1","value":"eA=="}},{"type":"DELETE","kv":{"key":"L2EvMQ==","mod_revision":"4"}}]}})"
    "\n";

TEST(EtcdWatchStream, DecodesTheSameEventsWhereverTheStreamIsCut) {
  const std::string stream = kWatchStream;
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    for (size_t second = cut; second <= stream.size(); second += 17) {
      WatchStreamDecoder decoder;
      std::vector<WatchResponse> responses;
      for (auto part : {stream.substr(0, cut), stream.substr(cut, second - cut), stream.substr(second)}) {
        decoder.feed(part);
        while (auto next = decoder.next()) {
          ASSERT_TRUE(*next) << next->error().message();
          responses.push_back(**next);
        }
      }
      ASSERT_EQ(responses.size(), 2u) << "cut at " << cut << " and " << second;
      EXPECT_TRUE(responses[0].created);
      ASSERT_EQ(responses[1].events.size(), 2u);
      EXPECT_EQ(responses[1].events[0].type, WatchEvent::Type::Put);
      EXPECT_EQ(responses[1].events[0].kv, (KeyValue{"/a/1", "x", 3, 3, 1, 0}));
      EXPECT_EQ(responses[1].events[1].type, WatchEvent::Type::Delete);
      EXPECT_EQ(responses[1].events[1].kv.key, "/a/1");
      EXPECT_EQ(responses[1].events[1].kv.modRevision, 4);
    }
  }
}

TEST(EtcdWatchStream, AnErrorMessageIsAnError) {
  WatchStreamDecoder decoder;
  decoder.feed(
      R"({"error":{"grpc_code":14,"http_code":503,"message":"etcdserver: no leader","http_status":"Service Unavailable"}})");
  auto next = decoder.next();
  ASSERT_TRUE(next);
  ASSERT_FALSE(*next);
  EXPECT_EQ(next->error().kind(), ErrorKind::Unavailable) << next->error().message();
}

TEST(EtcdWatchStream, ACancelledWatchSaysSo) {
  WatchStreamDecoder decoder;
  decoder.feed(
      R"({"result":{"header":{"revision":"9"},"canceled":true,"compact_revision":"5","cancel_reason":"mvcc: required revision has been compacted"}})");
  auto next = decoder.next();
  ASSERT_TRUE(next && *next);
  EXPECT_TRUE((*next)->canceled);
  EXPECT_EQ((*next)->compactRevision, 5);
}

// ---- The client over a scripted transport ----

struct Sent {
  std::string endpoint;
  std::string path;
  Json body;
  std::string token;
};

class ScriptedTransport final : public EtcdTransport {
 public:
  std::deque<HttpResult> replies;
  std::vector<Sent> sent;
  std::vector<std::string> streamChunks;

  HttpResult post(const std::string& endpoint, const std::string& path, const std::string& body,
                  std::chrono::milliseconds, const std::string& token) override {
    sent.push_back({endpoint, path, Json::parse(body), token});
    if (replies.empty()) return std::unexpected(HttpFailure{true, false, endpoint + ": nothing scripted"});
    HttpResult next = std::move(replies.front());
    replies.pop_front();
    return next;
  }
  HttpResult stream(const std::string& endpoint, const std::string& path, const std::string& body,
                    const std::function<bool(std::string_view)>& onBytes, const std::atomic<bool>& stop,
                    const std::string& token) override {
    sent.push_back({endpoint, path, Json::parse(body), token});
    for (const auto& chunk : streamChunks) {
      if (!onBytes(chunk)) return HttpReply{200, ""};
    }
    while (!stop.load()) std::this_thread::sleep_for(5ms);
    return HttpReply{200, ""};
  }
};

HttpResult ok(const Json& body) {
  return HttpReply{200, body.dump()};
}
HttpResult refused(const std::string& endpoint) {
  return std::unexpected(HttpFailure{true, false, endpoint + "/v3/kv/put: Connection refused"});
}

TEST(EtcdClient, TriesTheNextEndpointWhenAConnectionIsRefused) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->replies = {refused("http://127.0.0.1:1"), ok(reply())};
  EtcdClient client({"http://127.0.0.1:1", "http://127.0.0.1:2"}, transport);
  auto revision = client.put("/corral/hosts/a", "x");
  ASSERT_TRUE(revision) << revision.error().message();
  EXPECT_EQ(*revision, 7);
  ASSERT_EQ(transport->sent.size(), 2u);
  EXPECT_EQ(transport->sent[1].endpoint, "http://127.0.0.1:2");
  EXPECT_EQ(transport->sent[1].path, "/v3/kv/put");
  EXPECT_EQ(transport->sent[1].body, putRequest("/corral/hosts/a", "x", 0));
}

TEST(EtcdClient, NeverResendsARequestThatMayHaveArrived) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->replies = {std::unexpected(HttpFailure{false, true, "http://127.0.0.1:1/v3/kv/txn: timed out"}),
                        ok(reply())};
  EtcdClient client({"http://127.0.0.1:1", "http://127.0.0.1:2"}, transport);
  auto txn =
      client.txn({Compare::absent("/corral/instances/i-1")}, {TxnOp::put("/corral/instances/i-1", "h1")});
  ASSERT_FALSE(txn);
  EXPECT_EQ(txn.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(txn.error().message().find("txn on \"/corral/instances/i-1\": cluster store has no quorum"),
            std::string::npos)
      << txn.error().message();
  EXPECT_EQ(transport->sent.size(), 1u);
}

TEST(EtcdClient, NoMemberReachableIsUnavailable) {
  auto transport = std::make_shared<ScriptedTransport>();
  EtcdClient client({"http://127.0.0.1:1", "http://127.0.0.1:2"}, transport);
  auto got = client.get("/corral/azs/az1");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(
      got.error().message().find("get \"/corral/azs/az1\": cluster store has no quorum (etcd: no member "
                                 "reachable: http://127.0.0.1:1: nothing scripted; http://127.0.0.1:2"),
      std::string::npos)
      << got.error().message();
}

TEST(EtcdClient, AFailedCompareIsAResultNotAnError) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->replies = {ok(reply(R"(,"responses":[{"response_range":{"header":{"revision":"7"}}}])"))};
  EtcdClient client({"http://127.0.0.1:1"}, transport);
  auto txn = client.txn({Compare::modRevision("/a", 3)}, {TxnOp::put("/a", "2")}, {TxnOp::get("/a")});
  ASSERT_TRUE(txn) << txn.error().message();
  EXPECT_FALSE(txn->succeeded);
}

TEST(EtcdClient, ARefusedRequestNamesTheKey) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->replies = {HttpReply{400, R"({"error":"etcdserver: key is not provided","code":3})"}};
  EtcdClient client({"http://127.0.0.1:1"}, transport);
  auto put = client.put("", "x");
  ASSERT_FALSE(put);
  EXPECT_EQ(put.error().message(), "put \"\": etcd refused: etcdserver: key is not provided");
}

TEST(EtcdClient, LeasesGrantKeepAliveAndExpire) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->replies = {
      ok(reply(R"(,"ID":"7587869410432419841","TTL":"2")")),
      ok(Json::parse(std::string(R"({"result":{)") + kHeader + R"(,"ID":"7587869410432419841","TTL":"2"}})")),
      ok(Json::parse(std::string(R"({"result":{)") + kHeader + R"(,"ID":"7587869410432419841"}})"))};
  EtcdClient client({"http://127.0.0.1:1"}, transport);
  auto lease = client.grantLease(2);
  ASSERT_TRUE(lease) << lease.error().message();
  EXPECT_EQ(lease->id, 7587869410432419841);
  EXPECT_EQ(lease->ttlSeconds, 2);
  EXPECT_EQ(transport->sent[0].body, Json::parse(R"({"TTL":"2"})"));
  EXPECT_EQ(client.keepAliveOnce(lease->id).value_or(-1), 2);
  EXPECT_EQ(transport->sent[1].body, Json::parse(R"({"ID":"7587869410432419841"})"));
  EXPECT_EQ(client.keepAliveOnce(lease->id).value_or(-1), 0);  // expired: no TTL in the reply
}

TEST(EtcdClient, AWatchDeliversEventsInOrder) {
  auto transport = std::make_shared<ScriptedTransport>();
  const std::string stream = kWatchStream;
  transport->streamChunks = {stream.substr(0, 50), stream.substr(50, 200), stream.substr(250)};
  EtcdClient client({"http://127.0.0.1:1"}, transport);
  auto watch = client.watch("/a/", 2);
  ASSERT_TRUE(watch) << watch.error().message();
  auto first = (*watch)->next(2s);
  ASSERT_TRUE(first && *first);
  EXPECT_EQ((*first)->type, WatchEvent::Type::Put);
  auto second = (*watch)->next(2s);
  ASSERT_TRUE(second && *second);
  EXPECT_EQ((*second)->type, WatchEvent::Type::Delete);
  auto none = (*watch)->next(20ms);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  watch->reset();  // stops the stream and joins the thread
  EXPECT_EQ(transport->sent[0].body, watchCreateRequest("/a/", 2));
}

// ---- Auth and membership ----

TEST(EtcdAuthCodec, RequestsNameUserRoleAndPassword) {
  EXPECT_EQ(authUserAddRequest("root", "s3cret"), Json::parse(R"({"name":"root","password":"s3cret"})"));
  EXPECT_EQ(authRoleAddRequest("root"), Json::parse(R"({"name":"root"})"));
  EXPECT_EQ(authUserGrantRoleRequest("root", "root"), Json::parse(R"({"user":"root","role":"root"})"));
  EXPECT_EQ(authenticateRequest("root", "t"), Json::parse(R"({"name":"root","password":"t"})"));
}

TEST(EtcdAuthCodec, DecodesTheTokenAndRefusesAReplyWithout) {
  auto token = decodeAuthenticate(Json::parse(std::string("{") + kHeader + R"(,"token":"abc.42"})"));
  ASSERT_TRUE(token) << token.error().message();
  EXPECT_EQ(*token, "abc.42");
  EXPECT_FALSE(decodeAuthenticate(Json::parse(std::string("{") + kHeader + "}")));
}

TEST(EtcdAuthCodec, AnExpiredTokenIsToldFromAWrongPassword) {
  EXPECT_TRUE(isInvalidToken(401, R"({"error":"etcdserver: invalid auth token","code":16})"));
  EXPECT_FALSE(isInvalidToken(
      400, R"({"error":"etcdserver: authentication failed, invalid user ID or password","code":3})"));
  Error wrong = errorFromReply(
      "authenticate as root", 400,
      R"({"error":"etcdserver: authentication failed, invalid user ID or password","code":3})");
  EXPECT_EQ(wrong.kind(), ErrorKind::InvalidArgument);
  EXPECT_NE(wrong.message().find("authentication failed"), std::string::npos);
}

constexpr const char* kMembers = R"("members":[
  {"ID":"10276657743932975437","name":"h1","peerURLs":["http://127.0.0.1:2380"],"clientURLs":["http://127.0.0.1:2379"]},
  {"ID":"18249187646912138824","peerURLs":["http://127.0.0.2:2380"],"isLearner":true}])";

TEST(EtcdMemberCodec, RequestsCarryPeerUrlsAndIdsAsStrings) {
  EXPECT_EQ(memberAddRequest({"http://127.0.0.2:2380"}),
            Json::parse(R"({"peerURLs":["http://127.0.0.2:2380"]})"));
  EXPECT_EQ(memberRemoveRequest(18249187646912138824ull), Json::parse(R"({"ID":"18249187646912138824"})"));
}

TEST(EtcdMemberCodec, DecodesAListWithAnUnstartedMember) {
  auto members = decodeMemberList(Json::parse(std::string("{") + kHeader + "," + kMembers + "}"));
  ASSERT_TRUE(members) << members.error().message();
  ASSERT_EQ(members->size(), 2u);
  EXPECT_EQ((*members)[0].id, 10276657743932975437ull);
  EXPECT_EQ((*members)[0].name, "h1");
  EXPECT_TRUE((*members)[0].started());
  EXPECT_EQ((*members)[0].clientUrls, std::vector<std::string>{"http://127.0.0.1:2379"});
  EXPECT_FALSE((*members)[1].started());
  EXPECT_TRUE((*members)[1].learner);
  EXPECT_TRUE((*members)[1].clientUrls.empty());
  EXPECT_EQ(initialClusterFlag(*members, "h2"), "h1=http://127.0.0.1:2380,h2=http://127.0.0.2:2380");
  EXPECT_TRUE(decodeMemberList(Json::parse(std::string("{") + kHeader + "}"))->empty());
  EXPECT_FALSE(decodeMemberList(Json::parse(R"({"members":[{"ID":"x"}]})")));
  EXPECT_FALSE(decodeMemberList(Json::parse(R"({"members":[{"ID":"1","peerURLs":"http://a"}]})")));
}

TEST(EtcdMemberCodec, DecodesAnAddWithTheNewMemberAndTheList) {
  auto added = decodeMemberAdd(Json::parse(
      std::string("{") + kHeader +
      R"(,"member":{"ID":"18249187646912138824","peerURLs":["http://127.0.0.2:2380"]},)" + kMembers + "}"));
  ASSERT_TRUE(added) << added.error().message();
  EXPECT_EQ(added->added.id, 18249187646912138824ull);
  EXPECT_FALSE(added->added.started());
  EXPECT_EQ(added->members.size(), 2u);
  EXPECT_FALSE(decodeMemberAdd(Json::parse(std::string("{") + kHeader + "," + kMembers + "}")));
}

TEST(EtcdClient, AuthenticatesThenSendsTheTokenAndRenewsAnExpiredOne) {
  auto transport = std::make_shared<ScriptedTransport>();
  const std::string expired = R"({"error":"etcdserver: invalid auth token","code":16})";
  transport->replies = {ok(reply(R"(,"token":"tok.1")")), ok(reply()), HttpReply{401, expired},
                        ok(reply(R"(,"token":"tok.2")")), ok(reply())};
  EtcdClient client({"http://127.0.0.1:1"}, transport);
  ASSERT_TRUE(client.authenticate("root", "pw"));
  EXPECT_EQ(transport->sent[0].path, "/v3/auth/authenticate");
  EXPECT_EQ(transport->sent[0].token, "");
  ASSERT_TRUE(client.put("/a", "1"));
  EXPECT_EQ(transport->sent[1].token, "tok.1");
  auto again = client.put("/a", "2");
  ASSERT_TRUE(again) << again.error().message();
  ASSERT_EQ(transport->sent.size(), 5u);
  EXPECT_EQ(transport->sent[3].path, "/v3/auth/authenticate");
  EXPECT_EQ(transport->sent[3].body, authenticateRequest("root", "pw"));
  EXPECT_EQ(transport->sent[4].token, "tok.2");
  EXPECT_EQ(transport->sent[4].body, putRequest("/a", "2", 0));
}

TEST(EtcdClient, AWrongPasswordIsRefusedByEtcd) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->replies = {HttpReply{
      400, R"({"error":"etcdserver: authentication failed, invalid user ID or password","code":3})"}};
  EtcdClient client({"http://127.0.0.1:1"}, transport);
  Status status = client.authenticate("root", "wrong");
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(
      status.error().message(),
      "authenticate as root: etcd refused: etcdserver: authentication failed, invalid user ID or password");
}

TEST(EtcdClient, EnableAuthAddsTheUserAndRoleThenEnables) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->replies = {ok(reply()), ok(reply()), ok(reply()), ok(reply())};
  EtcdClient client({"http://127.0.0.1:1"}, transport);
  ASSERT_TRUE(client.enableAuth("root", "tok"));
  ASSERT_EQ(transport->sent.size(), 4u);
  EXPECT_EQ(transport->sent[0].path, "/v3/auth/user/add");
  EXPECT_EQ(transport->sent[1].path, "/v3/auth/role/add");
  EXPECT_EQ(transport->sent[2].path, "/v3/auth/user/grant");
  EXPECT_EQ(transport->sent[3].path, "/v3/auth/enable");
}

TEST(EtcdClient, MemberAddListAndRemove) {
  auto transport = std::make_shared<ScriptedTransport>();
  transport->replies = {
      ok(Json::parse(std::string("{") + kHeader +
                     R"(,"member":{"ID":"18249187646912138824","peerURLs":["http://127.0.0.2:2380"]},)" +
                     kMembers + "}")),
      ok(Json::parse(std::string("{") + kHeader + "," + kMembers + "}")), ok(reply())};
  EtcdClient client({"http://127.0.0.1:1"}, transport);
  auto added = client.memberAdd({"http://127.0.0.2:2380"});
  ASSERT_TRUE(added) << added.error().message();
  EXPECT_EQ(transport->sent[0].path, "/v3/cluster/member/add");
  auto members = client.memberList();
  ASSERT_TRUE(members) << members.error().message();
  EXPECT_EQ(members->size(), 2u);
  EXPECT_EQ(transport->sent[1].path, "/v3/cluster/member/list");
  ASSERT_TRUE(client.memberRemove(added->added.id));
  EXPECT_EQ(transport->sent[2].path, "/v3/cluster/member/remove");
  EXPECT_EQ(transport->sent[2].body, memberRemoveRequest(18249187646912138824ull));
}

}  // namespace
}  // namespace corral::net::etcd
