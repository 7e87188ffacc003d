// The OVSDB client: framing, codec, operations, monitors (net/ovsdb.h).
#include "net/ovsdb.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace corral::net::ovsdb {

// ---- Framing -------------------------------------------------------------------------------------------

namespace {
bool isJsonWhitespace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}
}  // namespace

std::optional<Result<Json>> JsonStreamSplitter::next() {
  if (broken_) return fail(internalError("json stream: unusable after an earlier framing error"));
  if (depth_ == 0) {
    while (start_ < buffer_.size() && isJsonWhitespace(buffer_[start_])) ++start_;
    scanned_ = start_;
    if (start_ == buffer_.size()) {
      buffer_.clear();
      start_ = scanned_ = 0;
      return std::nullopt;
    }
    char first = buffer_[start_];
    if (first != '{' && first != '[') {
      broken_ = true;
      return fail(internalError("json stream: a message starts with '{}', not '{{' or '['", first));
    }
  }
  for (size_t i = scanned_; i < buffer_.size(); ++i) {
    char c = buffer_[i];
    if (inString_) {
      if (escaped_) {
        escaped_ = false;
      } else if (c == '\\') {
        escaped_ = true;
      } else if (c == '"') {
        inString_ = false;
      }
      continue;
    }
    if (c == '"') {
      inString_ = true;
    } else if (c == '{' || c == '[') {
      ++depth_;
    } else if (c == '}' || c == ']') {
      if (--depth_ > 0) continue;
      std::string_view text(buffer_.data() + start_, i + 1 - start_);
      Json value = Json::parse(text, nullptr, /*allow_exceptions=*/false);
      start_ = scanned_ = i + 1;
      if (start_ * 2 >= buffer_.size()) {  // keep the buffer from growing with every message
        buffer_.erase(0, start_);
        start_ = scanned_ = 0;
      }
      if (value.is_discarded()) {
        broken_ = true;
        return fail(internalError("json stream: a message is not valid JSON: {:.200}", text));
      }
      return Result<Json>(std::move(value));
    }
  }
  scanned_ = buffer_.size();
  if (pending() > kMaxMessageBytes) {
    broken_ = true;
    return fail(internalError("json stream: a message exceeds {} bytes", kMaxMessageBytes));
  }
  return std::nullopt;
}

// ---- Transport -----------------------------------------------------------------------------------------

Result<Remote> parseRemote(std::string_view text) {
  Remote remote;
  if (text.starts_with("unix:")) {
    remote.kind = Remote::Kind::Unix;
    remote.path = std::string(text.substr(5));
    if (remote.path.empty()) return fail(invalidField("remote", "\"{}\": no socket path after unix:", text));
    if (remote.path.size() >= sizeof(sockaddr_un::sun_path)) {
      return fail(invalidField("remote", "\"{}\": the socket path is longer than {} bytes", text,
                               sizeof(sockaddr_un::sun_path) - 1));
    }
    return remote;
  }
  if (text.starts_with("tcp:")) {
    std::string_view rest = text.substr(4);
    size_t colon = rest.rfind(':');
    if (colon == std::string_view::npos) {
      return fail(invalidField("remote", "\"{}\": expected tcp:IP:PORT", text));
    }
    remote.kind = Remote::Kind::Tcp;
    remote.address = std::string(rest.substr(0, colon));
    in_addr parsed{};
    if (::inet_pton(AF_INET, remote.address.c_str(), &parsed) != 1) {
      return fail(invalidField("remote", "\"{}\": \"{}\" is not an IPv4 address", text, remote.address));
    }
    std::string_view portText = rest.substr(colon + 1);
    unsigned port = 0;
    auto [end, ec] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
    if (ec != std::errc() || end != portText.data() + portText.size() || port == 0 || port > 65535) {
      return fail(invalidField("remote", "\"{}\": the port must be 1-65535", text));
    }
    remote.port = static_cast<uint16_t>(port);
    return remote;
  }
  return fail(invalidField("remote", "\"{}\": expected unix:PATH or tcp:IP:PORT", text));
}

Result<std::unique_ptr<SocketTransport>> SocketTransport::connect(const Remote& remote) {
  std::string label;
  UniqueFd fd;
  int rc = -1;
  if (remote.kind == Remote::Kind::Unix) {
    label = "unix:" + remote.path;
    fd.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail(systemError(errno, "socket(AF_UNIX)"));
    sockaddr_un sa{};
    sa.sun_family = AF_UNIX;
    std::memcpy(sa.sun_path, remote.path.data(), remote.path.size());
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  } else {
    label = fmt::format("tcp:{}:{}", remote.address, remote.port);
    fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd) return fail(systemError(errno, "socket(AF_INET)"));
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(remote.port);
    ::inet_pton(AF_INET, remote.address.c_str(), &sa.sin_addr);
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  }
  if (rc != 0) {
    Error error = systemError(errno, fmt::format("connect(\"{}\")", label));
    return fail(Error(ErrorKind::Unavailable, error.message(), {}, error.errnum()));
  }
  return std::unique_ptr<SocketTransport>(new SocketTransport(std::move(fd), std::move(label)));
}

Status SocketTransport::send(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(systemError(errno, fmt::format("send(\"{}\")", label_)));
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return {};
}

Result<std::optional<std::string>> SocketTransport::receive(std::chrono::milliseconds timeout) {
  pollfd p{.fd = fd_.get(), .events = POLLIN, .revents = 0};
  int ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(timeout.count(), 0)));
  if (ready < 0) {
    if (errno == EINTR) return std::optional<std::string>();
    return fail(systemError(errno, fmt::format("poll(\"{}\")", label_)));
  }
  if (ready == 0) return std::optional<std::string>();
  std::string chunk(64 * 1024, '\0');
  ssize_t n = ::recv(fd_.get(), chunk.data(), chunk.size(), 0);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN) return std::optional<std::string>();
    return fail(systemError(errno, fmt::format("recv(\"{}\")", label_)));
  }
  if (n == 0) return fail(unavailable("\"{}\": the server closed the connection", label_));
  chunk.resize(static_cast<size_t>(n));
  return std::optional<std::string>(std::move(chunk));
}

// ---- Encodings -----------------------------------------------------------------------------------------

Json uuid(std::string_view value) {
  return Json::array({"uuid", value});
}
Json namedUuid(std::string_view name) {
  return Json::array({"named-uuid", name});
}
Json set(std::vector<Json> elements) {
  return Json::array({"set", Json(std::move(elements))});
}
Json map(std::vector<std::pair<Json, Json>> pairs) {
  Json list = Json::array();
  for (auto& [key, value] : pairs) list.push_back(Json::array({std::move(key), std::move(value)}));
  return Json::array({"map", std::move(list)});
}

namespace {
bool isTagged(const Json& value, std::string_view tag) {
  return value.is_array() && value.size() == 2 && value[0].is_string() && value[0].get<std::string>() == tag;
}
}  // namespace

Result<std::string> decodeUuid(const Json& value) {
  if (!isTagged(value, "uuid") || !value[1].is_string()) {
    return fail(internalError("ovsdb: expected [\"uuid\", ...], got {:.200}", value.dump()));
  }
  return value[1].get<std::string>();
}

Result<std::vector<Json>> decodeSet(const Json& value) {
  if (isTagged(value, "set")) {
    if (!value[1].is_array()) return fail(internalError("ovsdb: a set's elements are not an array"));
    return value[1].get<std::vector<Json>>();
  }
  // A set of exactly one element may be written as the bare atom (RFC 7047 5.1), and a uuid atom is
  // itself an array: ["uuid", "..."].
  if (value.is_array() && !isTagged(value, "uuid") && !isTagged(value, "named-uuid")) {
    return fail(internalError("ovsdb: expected a set or an atom, got {:.200}", value.dump()));
  }
  return std::vector<Json>{value};
}

Result<std::vector<std::pair<Json, Json>>> decodeMap(const Json& value) {
  if (!isTagged(value, "map") || !value[1].is_array()) {
    return fail(internalError("ovsdb: expected [\"map\", [...]], got {:.200}", value.dump()));
  }
  std::vector<std::pair<Json, Json>> pairs;
  for (const Json& pair : value[1]) {
    if (!pair.is_array() || pair.size() != 2) {
      return fail(internalError("ovsdb: a map entry is not a [key, value] pair: {:.200}", pair.dump()));
    }
    pairs.emplace_back(pair[0], pair[1]);
  }
  return pairs;
}

Json condition(std::string_view column, std::string_view function, Json value) {
  return Json::array({column, function, std::move(value)});
}

// ---- Operations ----------------------------------------------------------------------------------------

Json insertOp(std::string_view table, Json row, std::string_view uuidName) {
  Json op = {{"op", "insert"}, {"table", table}, {"row", std::move(row)}};
  if (!uuidName.empty()) op["uuid-name"] = uuidName;
  return op;
}

Json selectOp(std::string_view table, Where where, std::vector<std::string> columns) {
  Json op = {{"op", "select"}, {"table", table}, {"where", std::move(where)}};
  if (!columns.empty()) op["columns"] = std::move(columns);
  return op;
}

Json updateOp(std::string_view table, Where where, Json row) {
  return {{"op", "update"}, {"table", table}, {"where", std::move(where)}, {"row", std::move(row)}};
}

Json mutation(std::string_view column, std::string_view mutator, Json value) {
  return Json::array({column, mutator, std::move(value)});
}

Json mutateOp(std::string_view table, Where where, std::vector<Json> mutations) {
  return {
      {"op", "mutate"}, {"table", table}, {"where", std::move(where)}, {"mutations", std::move(mutations)}};
}

Json deleteOp(std::string_view table, Where where) {
  return {{"op", "delete"}, {"table", table}, {"where", std::move(where)}};
}

Json waitOp(std::string_view table, Where where, std::vector<std::string> columns, std::string_view until,
            std::vector<Json> rows, int timeoutMs) {
  return {{"op", "wait"},
          {"table", table},
          {"where", std::move(where)},
          {"columns", std::move(columns)},
          {"until", until},
          {"rows", std::move(rows)},
          {"timeout", timeoutMs}};
}

namespace {

// The kind of an OVSDB error string (RFC 7047 sections 4.1.3 and 5.2): a refusal because of the data
// (constraint, reference, a wait that did not hold) is a conflict; the rest is a fault of ours or the
// server's.
ErrorKind kindOfOvsdbError(std::string_view error) {
  if (error == "constraint violation" || error == "referential integrity violation" || error == "timed out" ||
      error == "not owner" || error == "aborted") {
    return ErrorKind::Conflict;
  }
  if (error == "unknown database") return ErrorKind::NotFound;
  return ErrorKind::Internal;
}

// "constraint violation: Transaction causes multiple rows ..." from {"error": ..., "details": ...}.
std::string describeOvsdbError(const Json& error) {
  if (error.is_string()) return error.get<std::string>();
  if (!error.is_object()) return error.dump();
  std::string text = error.value("error", std::string("error"));
  if (auto details = error.find("details"); details != error.end() && details->is_string()) {
    text += ": " + details->get<std::string>();
  }
  return text;
}

std::string errorName(const Json& error) {
  if (error.is_string()) return error.get<std::string>();
  if (error.is_object()) return error.value("error", std::string());
  return {};
}

}  // namespace

Result<std::vector<Json>> checkTransactResult(std::string_view database, const std::vector<Json>& operations,
                                              const Json& result) {
  if (!result.is_array()) {
    return fail(internalError("transact {}: the reply is not an array: {:.200}", database, result.dump()));
  }
  for (size_t i = 0; i < result.size(); ++i) {
    const Json& entry = result[i];
    if (!entry.is_object() || !entry.contains("error")) continue;
    std::string where;
    if (i < operations.size()) {
      const Json& op = operations[i];
      where = fmt::format("operation {} ({} {})", i, op.value("op", std::string("?")),
                          op.value("table", std::string("?")));
    } else {
      where = "commit";  // one result more than operations: the commit itself failed (RFC 7047 4.1.3)
    }
    return fail(Error(kindOfOvsdbError(errorName(entry)),
                      fmt::format("transact {}: {}: {}", database, where, describeOvsdbError(entry))));
  }
  if (result.size() < operations.size()) {
    return fail(internalError("transact {}: {} results for {} operations", database, result.size(),
                              operations.size()));
  }
  return result.get<std::vector<Json>>();
}

// ---- Monitors ------------------------------------------------------------------------------------------

std::string_view rowChangeKindName(RowChange::Kind kind) {
  switch (kind) {
    case RowChange::Kind::Initial:
      return "initial";
    case RowChange::Kind::Insert:
      return "insert";
    case RowChange::Kind::Modify:
      return "modify";
    case RowChange::Kind::Delete:
      return "delete";
  }
  return "?";
}

Result<std::vector<RowChange>> decodeTableUpdates(const Json& updates, bool initial) {
  if (!updates.is_object()) return fail(internalError("ovsdb: table-updates is not an object"));
  std::vector<RowChange> changes;
  for (const auto& [table, rows] : updates.items()) {
    if (!rows.is_object()) return fail(internalError("ovsdb: table-update of {} is not an object", table));
    for (const auto& [rowUuid, update] : rows.items()) {
      bool hasOld = update.contains("old"), hasNew = update.contains("new");
      RowChange change{.table = table, .uuid = rowUuid, .kind = RowChange::Kind::Insert, .row = {}};
      if (hasNew) {
        change.kind =
            initial ? RowChange::Kind::Initial : (hasOld ? RowChange::Kind::Modify : RowChange::Kind::Insert);
        change.row = update["new"];
      } else if (hasOld) {
        change.kind = RowChange::Kind::Delete;
        change.row = update["old"];
      } else {
        return fail(internalError("ovsdb: row-update of {} {} has neither old nor new", table, rowUuid));
      }
      changes.push_back(std::move(change));
    }
  }
  return changes;
}

Result<std::vector<RowChange>> decodeTableUpdates2(const Json& updates) {
  if (!updates.is_object()) return fail(internalError("ovsdb: table-updates2 is not an object"));
  std::vector<RowChange> changes;
  for (const auto& [table, rows] : updates.items()) {
    if (!rows.is_object()) return fail(internalError("ovsdb: table-update2 of {} is not an object", table));
    for (const auto& [rowUuid, update] : rows.items()) {
      if (!update.is_object() || update.size() != 1) {
        return fail(internalError("ovsdb: row-update2 of {} {} is not a one-member object", table, rowUuid));
      }
      // The object's one member; items() would hand out a proxy that dies with its temporary iterator.
      const std::string& what = update.begin().key();
      const Json& row = update.begin().value();
      RowChange change{.table = table, .uuid = rowUuid, .kind = RowChange::Kind::Insert, .row = row};
      if (what == "initial") {
        change.kind = RowChange::Kind::Initial;
      } else if (what == "insert") {
        change.kind = RowChange::Kind::Insert;
      } else if (what == "modify") {
        change.kind = RowChange::Kind::Modify;
      } else if (what == "delete") {
        change.kind = RowChange::Kind::Delete;
      } else {
        return fail(internalError("ovsdb: row-update2 of {} {}: unknown \"{}\"", table, rowUuid, what));
      }
      changes.push_back(std::move(change));
    }
  }
  return changes;
}

// ---- The client ----------------------------------------------------------------------------------------

Result<OvsdbClient> OvsdbClient::connect(std::string_view remote, std::chrono::milliseconds callTimeout) {
  auto parsed = parseRemote(remote);
  if (!parsed) return fail(parsed.error());
  auto transport = SocketTransport::connect(*parsed);
  if (!transport) return fail(transport.error().wrap("ovsdb"));
  return OvsdbClient(std::move(*transport), callTimeout);
}

Status OvsdbClient::handleNotification(const Json& message) {
  const std::string method = message["method"].is_string() ? message["method"].get<std::string>() : "";
  const Json params = message.value("params", Json::array());
  const Json& id = message.contains("id") ? message["id"] : Json();
  if (method == "echo" && !id.is_null()) {
    // ovsdb-server's keep-alive: unanswered, it drops the connection after its inactivity probe.
    Json reply = {{"result", params}, {"error", nullptr}, {"id", id}};
    ++echoesAnswered_;
    return transport_->send(reply.dump());
  }
  if ((method == "update" || method == "update2") && params.is_array() && params.size() == 2) {
    auto changes = method == "update" ? decodeTableUpdates(params[1], false) : decodeTableUpdates2(params[1]);
    if (!changes) return fail(changes.error().wrap(fmt::format("ovsdb: {} notification", method)));
    updates_.push_back(MonitorUpdate{.monitorId = params[0], .changes = std::move(*changes)});
    return {};
  }
  if (!id.is_null()) {  // a request we do not serve: say so, as JSON-RPC asks
    Json reply = {{"result", nullptr}, {"error", "unknown method " + method}, {"id", id}};
    return transport_->send(reply.dump());
  }
  return {};  // other notifications (locked, stolen) concern features we do not use
}

Result<std::optional<Json>> OvsdbClient::readOne(std::chrono::milliseconds timeout) {
  auto message = splitter_.next();
  if (!message) {
    auto bytes = transport_->receive(timeout);
    if (!bytes) return fail(bytes.error());
    if (!*bytes) return std::optional<Json>();
    splitter_.feed(**bytes);
    message = splitter_.next();
    if (!message) return std::optional<Json>();
  }
  if (!*message) return fail(message->error());
  Json& value = **message;
  if (!value.is_object())
    return fail(internalError("ovsdb: a message is not an object: {:.200}", value.dump()));
  if (value.contains("method")) {
    if (auto handled = handleNotification(value); !handled) return fail(handled.error());
    return std::optional<Json>();
  }
  return std::optional<Json>(std::move(value));
}

Result<Json> OvsdbClient::call(std::string_view method, Json params) {
  const uint64_t id = nextId_++;
  Json request = {{"method", method}, {"params", std::move(params)}, {"id", id}};
  if (auto sent = transport_->send(request.dump()); !sent) return fail(sent.error().wrap(method));
  const auto deadline = std::chrono::steady_clock::now() + callTimeout_;
  while (true) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return fail(
          unavailable("{}: no reply from the ovsdb server within {} ms", method, callTimeout_.count()));
    }
    auto message = readOne(left);
    if (!message) return fail(message.error().wrap(method));
    if (!*message) continue;
    const Json& reply = **message;
    if (reply.value("id", Json()) != Json(id)) continue;  // a late reply to an earlier, timed-out call
    if (reply.contains("error") && !reply["error"].is_null()) {
      return fail(Error(kindOfOvsdbError(errorName(reply["error"])),
                        fmt::format("{}: {}", method, describeOvsdbError(reply["error"]))));
    }
    return reply.value("result", Json());
  }
}

Result<std::vector<std::string>> OvsdbClient::listDbs() {
  auto result = call("list_dbs", Json::array());
  if (!result) return fail(result.error());
  if (!result->is_array()) return fail(internalError("list_dbs: the reply is not an array"));
  std::vector<std::string> names;
  for (const Json& name : *result) {
    if (!name.is_string()) return fail(internalError("list_dbs: a database name is not a string"));
    names.push_back(name.get<std::string>());
  }
  return names;
}

Result<Json> OvsdbClient::getSchema(std::string_view database) {
  return call("get_schema", Json::array({database}));
}

Result<std::vector<Json>> OvsdbClient::transact(std::string_view database,
                                                const std::vector<Json>& operations) {
  Json params = Json::array({database});
  for (const Json& op : operations) params.push_back(op);
  auto result = call("transact", std::move(params));
  if (!result) return fail(result.error());
  return checkTransactResult(database, operations, *result);
}

Result<Json> OvsdbClient::echo(Json payload) {
  return call("echo", std::move(payload));
}

Result<std::vector<RowChange>> OvsdbClient::monitor(std::string_view database, const Json& monitorId,
                                                    const std::vector<MonitorRequest>& requests) {
  Json tables = Json::object();
  for (const MonitorRequest& request : requests) {
    Json one = Json::object();
    if (!request.columns.empty()) one["columns"] = request.columns;
    tables[request.table] = std::move(one);
  }
  auto result = call("monitor", Json::array({database, monitorId, std::move(tables)}));
  if (!result) return fail(result.error());
  return decodeTableUpdates(*result, /*initial=*/true);
}

Result<std::vector<RowChange>> OvsdbClient::monitorCond(std::string_view database, const Json& monitorId,
                                                        const std::vector<MonitorRequest>& requests) {
  Json tables = Json::object();
  for (const MonitorRequest& request : requests) {
    Json one = Json::object();
    if (!request.columns.empty()) one["columns"] = request.columns;
    if (!request.where.empty()) one["where"] = request.where;
    tables[request.table] = Json::array({std::move(one)});
  }
  auto result = call("monitor_cond", Json::array({database, monitorId, std::move(tables)}));
  if (!result) return fail(result.error());
  return decodeTableUpdates2(*result);
}

Status OvsdbClient::monitorCancel(const Json& monitorId) {
  auto result = call("monitor_cancel", Json::array({monitorId}));
  if (!result) return fail(result.error());
  return {};
}

Result<std::optional<MonitorUpdate>> OvsdbClient::nextUpdate(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (updates_.empty()) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    auto message = readOne(std::max(left, std::chrono::milliseconds(0)));
    if (!message) return fail(message.error().wrap("waiting for a monitor update"));
    if (left.count() <= 0 && !*message) break;  // out of time and nothing more buffered to read
  }
  if (updates_.empty()) return std::optional<MonitorUpdate>();
  MonitorUpdate update = std::move(updates_.front());
  updates_.pop_front();
  return std::optional<MonitorUpdate>(std::move(update));
}

}  // namespace corral::net::ovsdb
