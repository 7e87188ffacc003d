// A small OVSDB client (RFC 7047, JSON-RPC 1.0 over a stream): the framing, OVSDB's JSON encodings, the
// transact operations, monitors and the echo keep-alive. The cluster backend (docs/cluster.md) talks to
// OVN's northbound database through it. The socket sits behind OvsdbTransport, so the framing and the codec
// are unit-tested with a scripted transport and no server.
#pragma once

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::net::ovsdb {

using Json = nlohmann::json;

// ---- Framing -------------------------------------------------------------------------------------------

// Splits a byte stream into JSON values. JSON-RPC over a stream has no delimiter between messages (RFC
// 7047 section 4): a message ends where its outermost object or array closes. Braces inside strings, and
// escaped quotes inside strings, do not count.
class JsonStreamSplitter {
 public:
  // A message larger than this is a broken or hostile peer, not a database reply.
  static constexpr size_t kMaxMessageBytes = 64u << 20;

  void feed(std::string_view bytes) { buffer_.append(bytes); }
  // The next complete value, std::nullopt when more bytes are needed, an error when the stream is not JSON
  // (after an error the splitter is unusable: the connection must be dropped).
  std::optional<Result<Json>> next();
  // Bytes received but not yet returned as a value (whitespace included).
  size_t pending() const { return buffer_.size() - start_; }

 private:
  std::string buffer_;
  size_t start_ = 0;    // where the current value begins
  size_t scanned_ = 0;  // how far the scan of the current value got (resumes there)
  int depth_ = 0;
  bool inString_ = false;
  bool escaped_ = false;
  bool broken_ = false;
};

// ---- Transport -----------------------------------------------------------------------------------------

// The byte stream to the server: a seam so tests script what the server says and record what was sent.
class OvsdbTransport {
 public:
  virtual ~OvsdbTransport() = default;
  virtual Status send(std::string_view bytes) = 0;
  // Some bytes, std::nullopt when none came within `timeout`; an error when the peer closed or failed.
  virtual Result<std::optional<std::string>> receive(std::chrono::milliseconds timeout) = 0;
};

// Where a server listens, as OVS writes it: "unix:PATH" or "tcp:IP:PORT" (IPv4).
struct Remote {
  enum class Kind { Unix, Tcp };
  Kind kind = Kind::Unix;
  std::string path;     // Unix
  std::string address;  // Tcp
  uint16_t port = 0;    // Tcp
};
Result<Remote> parseRemote(std::string_view text);

// A connected stream socket (blocking connect, then poll()ed reads with a timeout).
class SocketTransport final : public OvsdbTransport {
 public:
  static Result<std::unique_ptr<SocketTransport>> connect(const Remote& remote);
  Status send(std::string_view bytes) override;
  Result<std::optional<std::string>> receive(std::chrono::milliseconds timeout) override;

 private:
  explicit SocketTransport(UniqueFd fd, std::string label) : fd_(std::move(fd)), label_(std::move(label)) {}
  UniqueFd fd_;
  std::string label_;  // "unix:/tmp/x/nb.sock", for errors
};

// ---- OVSDB's JSON encodings (RFC 7047 section 5.1) -----------------------------------------------------

Json uuid(std::string_view value);      // ["uuid", "0f3e..."]
Json namedUuid(std::string_view name);  // ["named-uuid", "ls0"]: a row inserted earlier in this transact
Json set(std::vector<Json> elements);   // ["set", [...]]
Json map(std::vector<std::pair<Json, Json>> pairs);  // ["map", [[k, v], ...]]
// Decoders accept both of OVSDB's spellings of a set: a bare atom is a set of one.
Result<std::string> decodeUuid(const Json& value);
Result<std::vector<Json>> decodeSet(const Json& value);
Result<std::vector<std::pair<Json, Json>>> decodeMap(const Json& value);

// A condition of a where clause: [column, function, value], e.g. condition("name", "==", "ls0").
Json condition(std::string_view column, std::string_view function, Json value);
using Where = std::vector<Json>;

// ---- Transact operations (RFC 7047 section 5.2) --------------------------------------------------------

// `uuidName` names the new row for named-uuid references later in the same transact.
Json insertOp(std::string_view table, Json row, std::string_view uuidName = {});
Json selectOp(std::string_view table, Where where, std::vector<std::string> columns = {});
Json updateOp(std::string_view table, Where where, Json row);
// mutations: [column, mutator, value], e.g. mutation("ports", "insert", set({namedUuid("p0")})).
Json mutation(std::string_view column, std::string_view mutator, Json value);
Json mutateOp(std::string_view table, Where where, std::vector<Json> mutations);
Json deleteOp(std::string_view table, Where where);
// Waits until the rows matching `where` (their `columns`) are (until "==") or are not (until "!=")
// exactly `rows`; timeoutMs 0 means check once.
Json waitOp(std::string_view table, Where where, std::vector<std::string> columns, std::string_view until,
            std::vector<Json> rows, int timeoutMs = 0);

// Turns a transact reply into its per-operation results or into an Error that names the failing operation
// ("transact OVN_Northbound: operation 1 (insert Logical_Switch_Port): constraint violation: ...").
// Exposed for the unit tests; OvsdbClient::transact uses it.
Result<std::vector<Json>> checkTransactResult(std::string_view database, const std::vector<Json>& operations,
                                              const Json& result);

// ---- Monitors ------------------------------------------------------------------------------------------

// One row's change as a monitor reports it. `row` is the new row for Initial/Insert, the new row for
// a `monitor` Modify but only the changed columns for a `monitor_cond` Modify (OVSDB's update2 sends a
// diff), and the old row (or null) for Delete.
struct RowChange {
  enum class Kind { Initial, Insert, Modify, Delete };
  std::string table;
  std::string uuid;
  Kind kind = Kind::Insert;
  Json row;
};
std::string_view rowChangeKindName(RowChange::Kind kind);

struct MonitorUpdate {
  Json monitorId;
  std::vector<RowChange> changes;
};

// What to watch in one table: the columns (empty: all) and, for monitor_cond, a where clause.
struct MonitorRequest {
  std::string table;
  std::vector<std::string> columns;
  Where where;  // monitor_cond only; empty: every row
};

// Decoders of table-updates (monitor's <table-updates>, monitor_cond's <table-updates2>); `initial`
// marks the rows of a monitor's first reply.
Result<std::vector<RowChange>> decodeTableUpdates(const Json& updates, bool initial);
Result<std::vector<RowChange>> decodeTableUpdates2(const Json& updates);

// ---- The client ----------------------------------------------------------------------------------------

// One connection to one ovsdb-server. Calls are synchronous: a call sends its request and reads messages
// until its reply comes; meanwhile it answers the server's echo keep-alives and queues monitor updates for
// nextUpdate(). Not thread-safe: one thread uses one client.
class OvsdbClient {
 public:
  explicit OvsdbClient(std::unique_ptr<OvsdbTransport> transport,
                       std::chrono::milliseconds callTimeout = std::chrono::seconds(10))
      : transport_(std::move(transport)), callTimeout_(callTimeout) {}
  static Result<OvsdbClient> connect(std::string_view remote,
                                     std::chrono::milliseconds callTimeout = std::chrono::seconds(10));

  Result<std::vector<std::string>> listDbs();
  Result<Json> getSchema(std::string_view database);
  // The operations' results, one per operation; any operation's or the commit's error is an Error.
  Result<std::vector<Json>> transact(std::string_view database, const std::vector<Json>& operations);
  Result<Json> echo(Json payload = Json::array());
  // Starts a monitor and returns its initial rows (kind Initial); later changes come from nextUpdate().
  Result<std::vector<RowChange>> monitor(std::string_view database, const Json& monitorId,
                                         const std::vector<MonitorRequest>& requests);
  Result<std::vector<RowChange>> monitorCond(std::string_view database, const Json& monitorId,
                                             const std::vector<MonitorRequest>& requests);
  Status monitorCancel(const Json& monitorId);
  // The next monitor update, reading from the server for at most `timeout`; std::nullopt when none came.
  Result<std::optional<MonitorUpdate>> nextUpdate(std::chrono::milliseconds timeout);

  // How many of the server's echo requests this client answered (its keep-alive: over TCP, ovsdb-server
  // drops a connection that leaves them unanswered).
  uint64_t echoesAnswered() const { return echoesAnswered_; }

  // A raw JSON-RPC call: its "result", or an Error from its "error".
  Result<Json> call(std::string_view method, Json params);

 private:
  // Reads and handles one message (echo answered, update queued, reply returned). std::nullopt when no
  // reply came within `timeout` (or a message that was not a reply was handled).
  Result<std::optional<Json>> readOne(std::chrono::milliseconds timeout);
  Status handleNotification(const Json& message);

  std::unique_ptr<OvsdbTransport> transport_;
  std::chrono::milliseconds callTimeout_;
  JsonStreamSplitter splitter_;
  std::deque<MonitorUpdate> updates_;
  uint64_t nextId_ = 1;
  uint64_t echoesAnswered_ = 0;
};

}  // namespace corral::net::ovsdb
