// A small etcd v3 client over etcd 3.4's JSON gateway (POST /v3/kv/*, /v3/lease/*, /v3/watch; keys and
// values base64 in JSON, 64-bit numbers as strings): get, put, delete, compare-and-swap transactions,
// leases and prefix watches, across several endpoints. corral's cluster state lives in etcd
// (docs/cluster.md). The HTTP sits behind EtcdTransport, so the codec is unit-tested without etcd.
// It lives in net/ next to the OVSDB client: both are clients of the cluster's engines, and
// integration_cluster_tests links corral_net only.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/error.h"
#include "net/ovsdb.h"

namespace corral::net::etcd {

using Json = nlohmann::json;

// ---- Codec (pure) --------------------------------------------------------------------------------------

std::string encodeBase64(std::string_view bytes);
Result<std::string> decodeBase64(std::string_view text);
// The end of the range that holds every key starting with `prefix` (etcdctl's --prefix): the prefix with
// its last byte incremented ("/a/" -> "/a0"); "\0" (every key) for an empty prefix.
std::string prefixRangeEnd(std::string_view prefix);

struct KeyValue {
  std::string key;
  std::string value;
  int64_t createRevision = 0;
  int64_t modRevision = 0;
  int64_t version = 0;
  int64_t lease = 0;
  bool operator==(const KeyValue&) const = default;
};

struct RangeResult {
  int64_t revision = 0;  // the store's revision when the read was served
  std::vector<KeyValue> kvs;
  int64_t count = 0;
};

// One comparison of a transaction; a key that does not exist has create/mod revision and version 0.
struct Compare {
  enum class Target { Version, CreateRevision, ModRevision, Value };
  enum class Result { Equal, NotEqual, Greater, Less };
  std::string key;
  Target target = Target::ModRevision;
  Result result = Result::Equal;
  int64_t number = 0;  // Version, CreateRevision, ModRevision
  std::string value;   // Value
  static Compare modRevision(std::string key, int64_t revision, Result result = Result::Equal);
  static Compare createRevision(std::string key, int64_t revision, Result result = Result::Equal);
  static Compare valueIs(std::string key, std::string value, Result result = Result::Equal);
  // "the key does not exist": create_revision == 0.
  static Compare absent(std::string key) { return createRevision(std::move(key), 0); }
};

// One operation of a transaction's then or else branch.
struct TxnOp {
  enum class Kind { Get, Put, Delete };
  Kind kind = Kind::Get;
  std::string key;
  std::string value;    // Put
  int64_t lease = 0;    // Put: 0 for none
  bool prefix = false;  // Get, Delete: every key under `key`
  std::string rangeEnd;  // Delete: every key in [key, rangeEnd) when not empty
  static TxnOp get(std::string key, bool prefix = false) {
    return {Kind::Get, std::move(key), {}, 0, prefix, {}};
  }
  static TxnOp put(std::string key, std::string value, int64_t lease = 0) {
    return {Kind::Put, std::move(key), std::move(value), lease, false, {}};
  }
  static TxnOp remove(std::string key, bool prefix = false) {
    return {Kind::Delete, std::move(key), {}, 0, prefix, {}};
  }
  // Every key in [from, end) (keys sort as bytes).
  static TxnOp removeRange(std::string from, std::string end) {
    return {Kind::Delete, std::move(from), {}, 0, false, std::move(end)};
  }
};

struct TxnResult {
  bool succeeded = false;  // the compares held and the then-branch ran; otherwise the else-branch ran
  int64_t revision = 0;
  // One per operation of the branch that ran: the Get's result; empty for Put and Delete.
  std::vector<RangeResult> reads;
};

struct WatchEvent {
  enum class Type { Put, Delete };
  Type type = Type::Put;
  KeyValue kv;  // for Delete, the key and the revision of the deletion (mod_revision)
};

// One message of a watch stream.
struct WatchResponse {
  int64_t revision = 0;
  bool created = false;
  bool canceled = false;
  int64_t compactRevision = 0;  // set when the start revision was compacted away
  std::string cancelReason;
  std::vector<WatchEvent> events;
};

// `revision` 0: the latest; otherwise the keys as they were at that revision (until compacted).
Json rangeRequest(std::string_view key, bool prefix, int64_t revision = 0, bool serializable = false);
Json putRequest(std::string_view key, std::string_view value, int64_t lease);
Json deleteRequest(std::string_view key, bool prefix, std::string_view rangeEnd = {});
Json txnRequest(const std::vector<Compare>& compares, const std::vector<TxnOp>& then,
                const std::vector<TxnOp>& otherwise);
Json watchCreateRequest(std::string_view prefix, int64_t startRevision);

Result<RangeResult> decodeRange(const Json& reply);
Result<TxnResult> decodeTxn(const Json& reply);
Result<int64_t> decodeRevision(const Json& reply);  // header.revision
Result<WatchResponse> decodeWatchResponse(const Json& message);

// ---- Auth and membership (pure) ---------------------------------------------------------------------------
// etcd's own auth is the cluster's credential: a "root" user whose password is the join token, the "root"
// role granted to it, then auth enabled. A client authenticates with name and password and sends the simple
// token it gets back as the Authorization header; a wrong password is refused by etcd itself.

// One member of the etcd cluster (/v3/cluster/member/*). A member added but not started yet has no name
// and no client URLs.
struct Member {
  uint64_t id = 0;
  std::string name;
  std::vector<std::string> peerUrls;
  std::vector<std::string> clientUrls;
  bool learner = false;
  bool started() const { return !name.empty(); }
  bool operator==(const Member&) const = default;
};

struct MemberAddResult {
  Member added;
  std::vector<Member> members;  // every member after the add, the new one among them
};

Json authUserAddRequest(std::string_view user, std::string_view password);
Json authRoleAddRequest(std::string_view role);
Json authUserGrantRoleRequest(std::string_view user, std::string_view role);
Json authenticateRequest(std::string_view user, std::string_view password);
Json memberAddRequest(const std::vector<std::string>& peerUrls);
Json memberRemoveRequest(uint64_t id);

// The simple token of an /v3/auth/authenticate reply.
Result<std::string> decodeAuthenticate(const Json& reply);
Result<Member> decodeMember(const Json& member);
Result<std::vector<Member>> decodeMemberList(const Json& reply);  // "members"
Result<MemberAddResult> decodeMemberAdd(const Json& reply);       // "member" and "members"
// "m1=http://10.0.0.1:2380,m2=...": etcd's --initial-cluster for a member joining `members`; the member
// not started yet (the joining one) is named `joining`.
std::string initialClusterFlag(const std::vector<Member>& members, std::string_view joining);
// Whether a refusal means the simple token expired or was never valid (authenticate again).
bool isInvalidToken(long httpStatus, std::string_view body);

// The Error for a reply etcd refused: `operation` names the call and its key ("put \"/corral/x\"").
// Lost quorum (no leader, request timed out, deadline exceeded, gRPC Unavailable) is Unavailable
// "cluster store has no quorum (etcd: ...)"; anything else names etcd's reason.
Error errorFromReply(std::string_view operation, long httpStatus, std::string_view body);

// Splits a watch (or keepalive) stream into its messages, whatever the chunking: the gateway writes one
// JSON object per message, {"result": ...} or {"error": ...}.
class WatchStreamDecoder {
 public:
  void feed(std::string_view bytes) { splitter_.feed(bytes); }
  // The next whole response; std::nullopt when more bytes are needed; an error for an {"error": ...}
  // message or bytes that are not JSON.
  std::optional<Result<WatchResponse>> next();

 private:
  ovsdb::JsonStreamSplitter splitter_;
};

// ---- Transport -----------------------------------------------------------------------------------------

struct HttpReply {
  long status = 0;
  std::string body;
};
// A request that got no reply. `beforeSending`: the connection was never made (refused, unreachable), so
// nothing reached etcd and another endpoint may be tried; otherwise it may have been applied.
struct HttpFailure {
  bool beforeSending = false;
  bool timedOut = false;
  std::string reason;
};
using HttpResult = std::expected<HttpReply, HttpFailure>;

class EtcdTransport {
 public:
  virtual ~EtcdTransport() = default;
  // POSTs `body` to ENDPOINT PATH (endpoint "http://127.0.0.1:2379") and waits at most `timeout`.
  // `token`: the Authorization header's value (an auth token), none when empty.
  virtual HttpResult post(const std::string& endpoint, const std::string& path, const std::string& body,
                          std::chrono::milliseconds timeout, const std::string& token) = 0;
  // A streaming POST: `onBytes` gets each chunk as it comes and returns false to end the stream; the call
  // also ends when `stop` is set (checked at least every 100 ms). The reply's body is empty for 200.
  virtual HttpResult stream(const std::string& endpoint, const std::string& path, const std::string& body,
                            const std::function<bool(std::string_view)>& onBytes,
                            const std::atomic<bool>& stop, const std::string& token) = 0;
};

// libcurl, one easy handle per request. Every request carries "Grpc-Metadata-hasleader: true" so that a
// member without a leader refuses at once ("etcdserver: no leader") instead of waiting out its timeout.
class CurlTransport final : public EtcdTransport {
 public:
  HttpResult post(const std::string& endpoint, const std::string& path, const std::string& body,
                  std::chrono::milliseconds timeout, const std::string& token) override;
  HttpResult stream(const std::string& endpoint, const std::string& path, const std::string& body,
                    const std::function<bool(std::string_view)>& onBytes, const std::atomic<bool>& stop,
                    const std::string& token) override;
};

// ---- The client ----------------------------------------------------------------------------------------

class EtcdClient;

// A watch of every key under a prefix from a revision, read on a thread of its own; events are polled
// with next(). Ends (and joins its thread) when destroyed.
class Watch {
 public:
  ~Watch();
  Watch(const Watch&) = delete;
  Watch& operator=(const Watch&) = delete;
  // The next event within `timeout`; std::nullopt when none came; an error when the stream failed or
  // etcd cancelled the watch (then the watch is over).
  Result<std::optional<WatchEvent>> next(std::chrono::milliseconds timeout);

 private:
  friend class EtcdClient;
  Watch() = default;
  void run(EtcdTransport& transport, std::vector<std::string> endpoints, std::string body, std::string prefix,
           std::string token);

  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<WatchEvent> events_;
  std::optional<Error> failure_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Keeps a lease alive from a thread of its own (a keepalive every third of its TTL) until destroyed or
// stopped; a key attached to the lease then expires within the TTL.
class LeaseKeeper {
 public:
  ~LeaseKeeper() { stop(); }
  LeaseKeeper(const LeaseKeeper&) = delete;
  LeaseKeeper& operator=(const LeaseKeeper&) = delete;
  void stop();
  // How many keepalives etcd answered with the lease still alive.
  uint64_t renewals() const { return renewals_.load(); }

 private:
  friend class EtcdClient;
  LeaseKeeper() = default;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> renewals_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
  std::thread thread_;
};

struct Lease {
  int64_t id = 0;
  int64_t ttlSeconds = 0;
};

// The cluster store's client. Each call tries the endpoints in order, moving to the next only when a
// connection could not be made (a request that reached a member is never sent twice). Thread-safe: calls
// share no state but the transport.
class EtcdClient {
 public:
  EtcdClient(std::vector<std::string> endpoints, std::shared_ptr<EtcdTransport> transport = nullptr,
             std::chrono::milliseconds requestTimeout = std::chrono::seconds(5));

  // A linearizable read of `key` (or of every key under it, `prefix`), as it is now or, with `revision`, as
  // it was at that revision.
  Result<RangeResult> get(std::string_view key, bool prefix = false, int64_t revision = 0);
  // A linearizable read of every key in [from, end) (keys sort as bytes), in key order.
  Result<RangeResult> getRange(std::string_view from, std::string_view end);
  // The new revision.
  Result<int64_t> put(std::string_view key, std::string_view value, int64_t lease = 0);
  // How many keys were deleted.
  Result<int64_t> remove(std::string_view key, bool prefix = false);
  // A compare that does not hold is not an error: succeeded is false and the else-branch ran.
  Result<TxnResult> txn(const std::vector<Compare>& compares, const std::vector<TxnOp>& then,
                        const std::vector<TxnOp>& otherwise = {});

  Result<Lease> grantLease(int64_t ttlSeconds);
  // The lease's remaining TTL; 0 when it expired (or never was).
  Result<int64_t> keepAliveOnce(int64_t lease);
  Status revokeLease(int64_t lease);
  std::unique_ptr<LeaseKeeper> keepAlive(const Lease& lease);

  // Auth: from a successful authenticate() on, every request (and watch) carries the token, and a request
  // refused for an expired token authenticates again once and is sent again (it was not applied). A wrong
  // password is InvalidArgument "authenticate as USER: etcd refused: ...authentication failed...".
  Status authenticate(std::string user, std::string password);
  bool authenticated() const { return !token().empty(); }
  // Turns auth on: the user with `password`, the root role granted to it, auth enabled (etcdctl's
  // `user add root` and `auth enable`). The caller authenticates afterwards.
  Status enableAuth(std::string_view user, std::string_view password);

  // Membership (/v3/cluster/member/*).
  Result<std::vector<Member>> memberList();
  Result<MemberAddResult> memberAdd(const std::vector<std::string>& peerUrls);
  Status memberRemove(uint64_t id);

  // Events on keys under `prefix` from `startRevision` (0: from now).
  Result<std::unique_ptr<Watch>> watch(std::string_view prefix, int64_t startRevision = 0);

  const std::vector<std::string>& endpoints() const { return endpoints_; }

 private:
  // POSTs to the first endpoint that accepts a connection; errors name `operation`.
  Result<Json> call(std::string_view operation, const std::string& path, const Json& request);

  Result<Json> callOnce(std::string_view operation, const std::string& path, const std::string& body,
                        const std::string& token, bool& invalidToken);
  std::string token() const;

  // Shared by copies of the client (a LeaseKeeper's), so a token renewed by one serves all.
  struct Auth {
    mutable std::mutex mutex;
    std::string user, password, token;
  };

  std::vector<std::string> endpoints_;
  std::shared_ptr<EtcdTransport> transport_;
  std::chrono::milliseconds requestTimeout_;
  std::shared_ptr<Auth> auth_ = std::make_shared<Auth>();
};

}  // namespace corral::net::etcd
