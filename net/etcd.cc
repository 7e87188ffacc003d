// The etcd v3 JSON-gateway client: codec, libcurl transport, calls, leases and watches (etcd.h).
#include "net/etcd.h"

#include <curl/curl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <array>
#include <charconv>
#include <mutex>

namespace corral::net::etcd {

namespace {

constexpr std::string_view kBase64Alphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// The gateway writes int64 fields as strings ("revision": "5") and leaves out zero values.
Result<int64_t> int64Field(const Json& object, std::string_view name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return 0;
  if (it->is_number_integer()) return it->get<int64_t>();
  if (!it->is_string())
    return fail(internalError("etcd reply: \"{}\" is not a number: {}", name, it->dump()));
  const std::string& text = it->get_ref<const std::string&>();
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return fail(internalError("etcd reply: \"{}\" is not a number: \"{}\"", name, text));
  }
  return value;
}

Result<std::string> bytesField(const Json& object, std::string_view name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return std::string();
  if (!it->is_string())
    return fail(internalError("etcd reply: \"{}\" is not a string: {}", name, it->dump()));
  auto decoded = decodeBase64(it->get_ref<const std::string&>());
  if (!decoded) return fail(decoded.error().wrap(fmt::format("etcd reply: \"{}\"", name)));
  return decoded;
}

Result<KeyValue> decodeKeyValue(const Json& kv) {
  if (!kv.is_object()) return fail(internalError("etcd reply: a key-value is not an object: {}", kv.dump()));
  KeyValue out;
  auto key = bytesField(kv, "key");
  auto value = bytesField(kv, "value");
  auto create = int64Field(kv, "create_revision");
  auto mod = int64Field(kv, "mod_revision");
  auto version = int64Field(kv, "version");
  auto lease = int64Field(kv, "lease");
  for (const Error* e : {key ? nullptr : &key.error(), value ? nullptr : &value.error(),
                         create ? nullptr : &create.error(), mod ? nullptr : &mod.error(),
                         version ? nullptr : &version.error(), lease ? nullptr : &lease.error()}) {
    if (e != nullptr) return fail(*e);
  }
  out.key = std::move(*key);
  out.value = std::move(*value);
  out.createRevision = *create;
  out.modRevision = *mod;
  out.version = *version;
  out.lease = *lease;
  return out;
}

std::string_view compareTargetName(Compare::Target target) {
  switch (target) {
    case Compare::Target::Version:
      return "VERSION";
    case Compare::Target::CreateRevision:
      return "CREATE";
    case Compare::Target::ModRevision:
      return "MOD";
    case Compare::Target::Value:
      return "VALUE";
  }
  return "MOD";
}

std::string_view compareResultName(Compare::Result result) {
  switch (result) {
    case Compare::Result::Equal:
      return "EQUAL";
    case Compare::Result::NotEqual:
      return "NOT_EQUAL";
    case Compare::Result::Greater:
      return "GREATER";
    case Compare::Result::Less:
      return "LESS";
  }
  return "EQUAL";
}

Json requestOp(const TxnOp& op) {
  switch (op.kind) {
    case TxnOp::Kind::Get:
      return {{"request_range", rangeRequest(op.key, op.prefix)}};
    case TxnOp::Kind::Put:
      return {{"request_put", putRequest(op.key, op.value, op.lease)}};
    case TxnOp::Kind::Delete:
      return {{"request_delete_range", deleteRequest(op.key, op.prefix, op.rangeEnd)}};
  }
  return Json::object();
}

std::string quotedKey(std::string_view key) {
  return fmt::format("\"{}\"", key);
}

}  // namespace

std::string encodeBase64(std::string_view bytes) {
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    uint32_t n = (uint8_t(bytes[i]) << 16) | (uint8_t(bytes[i + 1]) << 8) | uint8_t(bytes[i + 2]);
    for (int shift : {18, 12, 6, 0}) out.push_back(kBase64Alphabet[(n >> shift) & 63]);
  }
  if (size_t rest = bytes.size() - i; rest > 0) {
    uint32_t n = uint8_t(bytes[i]) << 16;
    if (rest == 2) n |= uint8_t(bytes[i + 1]) << 8;
    out.push_back(kBase64Alphabet[(n >> 18) & 63]);
    out.push_back(kBase64Alphabet[(n >> 12) & 63]);
    out.push_back(rest == 2 ? kBase64Alphabet[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

Result<std::string> decodeBase64(std::string_view text) {
  if (text.size() % 4 != 0)
    return fail(internalError("base64: length {} is not a multiple of 4", text.size()));
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (size_t i = 0; i < text.size(); i += 4) {
    uint32_t n = 0;
    int padding = 0;
    for (size_t j = 0; j < 4; ++j) {
      char c = text[i + j];
      uint32_t sextet = 0;
      if (c == '=' && i + 4 == text.size() && j >= 2) {
        ++padding;
      } else if (padding > 0) {
        return fail(internalError("base64: data after '=' at byte {}", i + j));
      } else {
        auto at = kBase64Alphabet.find(c);
        if (at == std::string_view::npos) return fail(internalError("base64: invalid byte at {}", i + j));
        sextet = uint32_t(at);
      }
      n = (n << 6) | sextet;
    }
    out.push_back(char((n >> 16) & 0xff));
    if (padding < 2) out.push_back(char((n >> 8) & 0xff));
    if (padding < 1) out.push_back(char(n & 0xff));
  }
  return out;
}

std::string prefixRangeEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (uint8_t(end.back()) < 0xff) {
      end.back() = char(uint8_t(end.back()) + 1);
      return end;
    }
    end.pop_back();  // 0xff cannot be incremented: the range ends after every key of the shorter prefix
  }
  return std::string(1, '\0');
}

Compare Compare::modRevision(std::string key, int64_t revision, Result result) {
  return {std::move(key), Target::ModRevision, result, revision, {}};
}
Compare Compare::createRevision(std::string key, int64_t revision, Result result) {
  return {std::move(key), Target::CreateRevision, result, revision, {}};
}
Compare Compare::valueIs(std::string key, std::string value, Result result) {
  return {std::move(key), Target::Value, result, 0, std::move(value)};
}

Json rangeRequest(std::string_view key, bool prefix, int64_t revision, bool serializable) {
  Json request = {{"key", encodeBase64(key)}};
  if (prefix) request["range_end"] = encodeBase64(prefixRangeEnd(key));
  if (revision > 0) request["revision"] = std::to_string(revision);
  if (serializable) request["serializable"] = true;
  return request;
}

Json putRequest(std::string_view key, std::string_view value, int64_t lease) {
  Json request = {{"key", encodeBase64(key)}, {"value", encodeBase64(value)}};
  if (lease != 0) request["lease"] = std::to_string(lease);
  return request;
}

Json deleteRequest(std::string_view key, bool prefix, std::string_view rangeEnd) {
  Json request = {{"key", encodeBase64(key)}};
  if (prefix) request["range_end"] = encodeBase64(prefixRangeEnd(key));
  if (!rangeEnd.empty()) request["range_end"] = encodeBase64(rangeEnd);
  return request;
}

Json txnRequest(const std::vector<Compare>& compares, const std::vector<TxnOp>& then,
                const std::vector<TxnOp>& otherwise) {
  Json compare = Json::array();
  for (const Compare& c : compares) {
    Json one = {{"key", encodeBase64(c.key)},
                {"target", compareTargetName(c.target)},
                {"result", compareResultName(c.result)}};
    switch (c.target) {
      case Compare::Target::Version:
        one["version"] = std::to_string(c.number);
        break;
      case Compare::Target::CreateRevision:
        one["create_revision"] = std::to_string(c.number);
        break;
      case Compare::Target::ModRevision:
        one["mod_revision"] = std::to_string(c.number);
        break;
      case Compare::Target::Value:
        one["value"] = encodeBase64(c.value);
        break;
    }
    compare.push_back(std::move(one));
  }
  Json success = Json::array();
  for (const TxnOp& op : then) success.push_back(requestOp(op));
  Json failure = Json::array();
  for (const TxnOp& op : otherwise) failure.push_back(requestOp(op));
  return {{"compare", compare}, {"success", success}, {"failure", failure}};
}

Json watchCreateRequest(std::string_view prefix, int64_t startRevision) {
  Json create = {{"key", encodeBase64(prefix)}, {"range_end", encodeBase64(prefixRangeEnd(prefix))}};
  if (startRevision > 0) create["start_revision"] = std::to_string(startRevision);
  return {{"create_request", create}};
}

Result<int64_t> decodeRevision(const Json& reply) {
  if (!reply.is_object()) return fail(internalError("etcd reply is not an object: {}", reply.dump()));
  auto header = reply.find("header");
  if (header == reply.end() || !header->is_object()) {
    return fail(internalError("etcd reply has no header: {}", reply.dump()));
  }
  return int64Field(*header, "revision");
}

Result<RangeResult> decodeRange(const Json& reply) {
  RangeResult out;
  auto revision = decodeRevision(reply);
  if (!revision) return fail(revision.error());
  out.revision = *revision;
  if (auto kvs = reply.find("kvs"); kvs != reply.end() && !kvs->is_null()) {
    if (!kvs->is_array()) return fail(internalError("etcd reply: \"kvs\" is not an array: {}", kvs->dump()));
    for (const Json& kv : *kvs) {
      auto decoded = decodeKeyValue(kv);
      if (!decoded) return fail(decoded.error());
      out.kvs.push_back(std::move(*decoded));
    }
  }
  auto count = int64Field(reply, "count");
  if (!count) return fail(count.error());
  out.count = *count;
  return out;
}

Result<TxnResult> decodeTxn(const Json& reply) {
  TxnResult out;
  auto revision = decodeRevision(reply);
  if (!revision) return fail(revision.error());
  out.revision = *revision;
  if (auto succeeded = reply.find("succeeded"); succeeded != reply.end() && !succeeded->is_null()) {
    if (!succeeded->is_boolean()) {
      return fail(internalError("etcd reply: \"succeeded\" is not a boolean: {}", succeeded->dump()));
    }
    out.succeeded = succeeded->get<bool>();
  }
  if (auto responses = reply.find("responses"); responses != reply.end() && responses->is_array()) {
    for (const Json& response : *responses) {
      if (auto range = response.find("response_range"); range != response.end()) {
        auto decoded = decodeRange(*range);
        if (!decoded) return fail(decoded.error().wrap("txn response_range"));
        out.reads.push_back(std::move(*decoded));
      } else {
        out.reads.emplace_back();
      }
    }
  }
  return out;
}

Result<WatchResponse> decodeWatchResponse(const Json& message) {
  if (!message.is_object())
    return fail(internalError("etcd watch message is not an object: {}", message.dump()));
  if (auto error = message.find("error"); error != message.end()) {
    return fail(errorFromReply("watch", 0, message.dump()));
  }
  auto result = message.find("result");
  if (result == message.end() || !result->is_object()) {
    return fail(internalError("etcd watch message has no result: {}", message.dump()));
  }
  WatchResponse out;
  auto revision = decodeRevision(*result);
  if (!revision) return fail(revision.error());
  out.revision = *revision;
  out.created = result->value("created", false);
  out.canceled = result->value("canceled", false);
  out.cancelReason = result->value("cancel_reason", std::string());
  auto compact = int64Field(*result, "compact_revision");
  if (!compact) return fail(compact.error());
  out.compactRevision = *compact;
  if (auto events = result->find("events"); events != result->end() && events->is_array()) {
    for (const Json& event : *events) {
      WatchEvent decoded;
      // The gateway leaves out the enum's zero value: no "type" is a PUT.
      const std::string type = event.value("type", std::string("PUT"));
      if (type == "DELETE") {
        decoded.type = WatchEvent::Type::Delete;
      } else if (type != "PUT") {
        return fail(internalError("etcd watch event of unknown type \"{}\"", type));
      }
      auto kv = decodeKeyValue(event.value("kv", Json::object()));
      if (!kv) return fail(kv.error().wrap("etcd watch event"));
      decoded.kv = std::move(*kv);
      out.events.push_back(std::move(decoded));
    }
  }
  return out;
}

// ---- Auth and membership codec -------------------------------------------------------------------------

namespace {

Result<uint64_t> uint64Field(const Json& object, std::string_view name) {
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return 0;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (!it->is_string())
    return fail(internalError("etcd reply: \"{}\" is not a number: {}", name, it->dump()));
  const std::string& text = it->get_ref<const std::string&>();
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) {
    return fail(internalError("etcd reply: \"{}\" is not a number: \"{}\"", name, text));
  }
  return value;
}

Result<std::vector<std::string>> stringsField(const Json& object, std::string_view name) {
  std::vector<std::string> out;
  auto it = object.find(name);
  if (it == object.end() || it->is_null()) return out;
  if (!it->is_array()) return fail(internalError("etcd reply: \"{}\" is not an array: {}", name, it->dump()));
  for (const Json& item : *it) {
    if (!item.is_string())
      return fail(internalError("etcd reply: \"{}\" holds a non-string: {}", name, item.dump()));
    out.push_back(item.get<std::string>());
  }
  return out;
}

}  // namespace

Json authUserAddRequest(std::string_view user, std::string_view password) {
  return {{"name", user}, {"password", password}};
}
Json authRoleAddRequest(std::string_view role) {
  return {{"name", role}};
}
Json authUserGrantRoleRequest(std::string_view user, std::string_view role) {
  return {{"user", user}, {"role", role}};
}
Json authenticateRequest(std::string_view user, std::string_view password) {
  return {{"name", user}, {"password", password}};
}
Json memberAddRequest(const std::vector<std::string>& peerUrls) {
  return {{"peerURLs", peerUrls}};
}
Json memberRemoveRequest(uint64_t id) {
  return {{"ID", std::to_string(id)}};
}

Result<std::string> decodeAuthenticate(const Json& reply) {
  if (!reply.is_object()) return fail(internalError("etcd reply is not an object: {}", reply.dump()));
  auto token = reply.find("token");
  if (token == reply.end() || !token->is_string() || token->get_ref<const std::string&>().empty()) {
    return fail(internalError("etcd reply has no token: {}", reply.dump()));
  }
  return token->get<std::string>();
}

Result<Member> decodeMember(const Json& member) {
  if (!member.is_object())
    return fail(internalError("etcd reply: a member is not an object: {}", member.dump()));
  Member out;
  auto id = uint64Field(member, "ID");
  if (!id) return fail(id.error());
  auto peers = stringsField(member, "peerURLs");
  if (!peers) return fail(peers.error());
  auto clients = stringsField(member, "clientURLs");
  if (!clients) return fail(clients.error());
  out.id = *id;
  out.name = member.value("name", std::string());
  out.peerUrls = std::move(*peers);
  out.clientUrls = std::move(*clients);
  out.learner = member.value("isLearner", false);
  return out;
}

Result<std::vector<Member>> decodeMemberList(const Json& reply) {
  if (!reply.is_object()) return fail(internalError("etcd reply is not an object: {}", reply.dump()));
  std::vector<Member> out;
  auto members = reply.find("members");
  if (members == reply.end() || members->is_null()) return out;
  if (!members->is_array())
    return fail(internalError("etcd reply: \"members\" is not an array: {}", members->dump()));
  for (const Json& member : *members) {
    auto decoded = decodeMember(member);
    if (!decoded) return fail(decoded.error());
    out.push_back(std::move(*decoded));
  }
  return out;
}

Result<MemberAddResult> decodeMemberAdd(const Json& reply) {
  auto members = decodeMemberList(reply);
  if (!members) return fail(members.error());
  auto added = reply.find("member");
  if (added == reply.end()) return fail(internalError("etcd reply has no member: {}", reply.dump()));
  auto member = decodeMember(*added);
  if (!member) return fail(member.error());
  return MemberAddResult{std::move(*member), std::move(*members)};
}

std::string initialClusterFlag(const std::vector<Member>& members, std::string_view joining) {
  std::string flag;
  for (const Member& member : members) {
    for (const std::string& url : member.peerUrls) {
      if (!flag.empty()) flag += ',';
      flag += fmt::format("{}={}", member.started() ? std::string_view(member.name) : joining, url);
    }
  }
  return flag;
}

bool isInvalidToken(long httpStatus, std::string_view body) {
  return body.find("invalid auth token") != std::string_view::npos ||
         (httpStatus == 401 && body.find("auth") != std::string_view::npos);
}

Error errorFromReply(std::string_view operation, long httpStatus, std::string_view body) {
  std::string reason;
  int code = -1;
  Json parsed = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  // A stream's error is an object ({"error": {"grpc_code": 14, "http_code": 503, "message": ...}}).
  if (parsed.is_object()) {
    if (auto error = parsed.find("error"); error != parsed.end() && error->is_object()) {
      Json inner = *error;
      parsed = Json::object();
      parsed["message"] = inner.value("message", std::string());
      parsed["code"] = inner.value("grpc_code", -1);
      httpStatus = inner.value("http_code", httpStatus);
    }
  }
  if (parsed.is_object()) {
    if (auto error = parsed.find("error"); error != parsed.end() && error->is_string()) reason = *error;
    if (reason.empty()) {
      if (auto message = parsed.find("message"); message != parsed.end() && message->is_string()) {
        reason = *message;
      }
    }
    if (auto c = parsed.find("code"); c != parsed.end() && c->is_number_integer()) code = c->get<int>();
  }
  if (reason.empty()) reason = fmt::format("HTTP {}: {}", httpStatus, body.substr(0, 200));
  const bool noQuorum = code == 14 /* gRPC Unavailable */ || code == 4 /* DeadlineExceeded */ ||
                        reason.find("no leader") != std::string::npos ||
                        reason.find("timed out") != std::string::npos ||
                        reason.find("deadline exceeded") != std::string::npos ||
                        reason.find("leader changed") != std::string::npos || httpStatus == 503;
  if (noQuorum) return unavailable("{}: cluster store has no quorum (etcd: {})", operation, reason);
  switch (code) {
    case 3:
      return Error(ErrorKind::InvalidArgument, fmt::format("{}: etcd refused: {}", operation, reason));
    case 5:
      return notFound("{}: etcd refused: {}", operation, reason);
    case 6:
    case 9:
    case 11:
      return conflict("{}: etcd refused: {}", operation, reason);
    default:
      return internalError("{}: etcd refused: {}", operation, reason);
  }
}

std::optional<Result<WatchResponse>> WatchStreamDecoder::next() {
  auto message = splitter_.next();
  if (!message) return std::nullopt;
  if (!*message) return std::unexpected(message->error().wrap("etcd watch stream"));
  return decodeWatchResponse(**message);
}

// ---- libcurl -------------------------------------------------------------------------------------------

namespace {

struct CurlEasyDeleter {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
struct CurlListDeleter {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

void initCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Transfer {
  std::string body;
  const std::function<bool(std::string_view)>* onBytes = nullptr;
  const std::atomic<bool>* stop = nullptr;
  long status = 0;
  CURL* handle = nullptr;
};

size_t writeBody(char* data, size_t size, size_t count, void* user) {
  auto* transfer = static_cast<Transfer*>(user);
  const size_t bytes = size * count;
  if (transfer->onBytes == nullptr) {
    transfer->body.append(data, bytes);
    return bytes;
  }
  // An error reply is read whole; a 200 stream goes to the caller chunk by chunk.
  if (transfer->status == 0) curl_easy_getinfo(transfer->handle, CURLINFO_RESPONSE_CODE, &transfer->status);
  if (transfer->status != 200) {
    transfer->body.append(data, bytes);
    return bytes;
  }
  return (*transfer->onBytes)(std::string_view(data, bytes)) ? bytes : 0;
}

int progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* transfer = static_cast<Transfer*>(user);
  return transfer->stop != nullptr && transfer->stop->load() ? 1 : 0;
}

HttpResult perform(const std::string& endpoint, const std::string& path, const std::string& body,
                   std::optional<std::chrono::milliseconds> timeout, const std::string& token,
                   Transfer& transfer) {
  initCurlOnce();
  std::unique_ptr<CURL, CurlEasyDeleter> handle(curl_easy_init());
  if (!handle) return std::unexpected(HttpFailure{true, false, "curl_easy_init failed"});
  transfer.handle = handle.get();
  std::unique_ptr<curl_slist, CurlListDeleter> headers(
      curl_slist_append(nullptr, "Content-Type: application/json"));
  headers.reset(curl_slist_append(headers.release(), "Grpc-Metadata-hasleader: true"));
  if (!token.empty()) {
    const std::string authorization = "Authorization: " + token;
    headers.reset(curl_slist_append(headers.release(), authorization.c_str()));
  }
  const std::string url = endpoint + path;
  char errorText[CURL_ERROR_SIZE] = {};
  CURL* h = handle.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_NOPROXY, "*");  // a member on loopback is never behind a proxy
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.c_str());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, long(body.size()));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
  if (timeout) curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, long(timeout->count()));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, writeBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &transfer);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errorText);
  if (transfer.stop != nullptr) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, &transfer);
  }
  CURLcode rc = curl_easy_perform(h);
  long status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
  if (rc == CURLE_OK || ((rc == CURLE_WRITE_ERROR || rc == CURLE_ABORTED_BY_CALLBACK) && status == 200)) {
    return HttpReply{status, std::move(transfer.body)};
  }
  const std::string reason =
      fmt::format("{}: {}", url, errorText[0] != '\0' ? errorText : curl_easy_strerror(rc));
  const bool beforeSending = rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST;
  return std::unexpected(HttpFailure{beforeSending, rc == CURLE_OPERATION_TIMEDOUT, reason});
}

}  // namespace

HttpResult CurlTransport::post(const std::string& endpoint, const std::string& path, const std::string& body,
                               std::chrono::milliseconds timeout, const std::string& token) {
  Transfer transfer;
  return perform(endpoint, path, body, timeout, token, transfer);
}

HttpResult CurlTransport::stream(const std::string& endpoint, const std::string& path,
                                 const std::string& body,
                                 const std::function<bool(std::string_view)>& onBytes,
                                 const std::atomic<bool>& stop, const std::string& token) {
  Transfer transfer;
  transfer.onBytes = &onBytes;
  transfer.stop = &stop;
  return perform(endpoint, path, body, std::nullopt, token, transfer);
}

// ---- The client ----------------------------------------------------------------------------------------

EtcdClient::EtcdClient(std::vector<std::string> endpoints, std::shared_ptr<EtcdTransport> transport,
                       std::chrono::milliseconds requestTimeout)
    : endpoints_(std::move(endpoints)),
      transport_(transport ? std::move(transport) : std::make_shared<CurlTransport>()),
      requestTimeout_(requestTimeout) {}

std::string EtcdClient::token() const {
  std::lock_guard lock(auth_->mutex);
  return auth_->token;
}

Result<Json> EtcdClient::callOnce(std::string_view operation, const std::string& path,
                                  const std::string& body, const std::string& token, bool& invalidToken) {
  std::vector<std::string> unreachable;
  for (const std::string& endpoint : endpoints_) {
    HttpResult reply = transport_->post(endpoint, path, body, requestTimeout_, token);
    if (!reply) {
      if (reply.error().beforeSending) {
        unreachable.push_back(reply.error().reason);
        continue;
      }
      // The request may have reached the member: sending it elsewhere could apply it twice.
      return fail(unavailable("{}: cluster store has no quorum (etcd: {})", operation, reply.error().reason));
    }
    if (reply->status != 200) {
      invalidToken = !token.empty() && isInvalidToken(reply->status, reply->body);
      return fail(errorFromReply(operation, reply->status, reply->body));
    }
    Json parsed = Json::parse(reply->body, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_discarded()) {
      return fail(internalError("{}: etcd reply is not JSON: {}", operation, reply->body.substr(0, 200)));
    }
    return parsed;
  }
  return fail(unavailable("{}: cluster store has no quorum (etcd: no member reachable: {})", operation,
                          fmt::join(unreachable, "; ")));
}

Result<Json> EtcdClient::call(std::string_view operation, const std::string& path, const Json& request) {
  const std::string body = request.dump();
  bool invalidToken = false;
  auto reply = callOnce(operation, path, body, token(), invalidToken);
  if (reply || !invalidToken) return reply;
  // Simple tokens expire after minutes unused: a refused token was not applied, so authenticate and resend.
  std::string user, password;
  {
    std::lock_guard lock(auth_->mutex);
    user = auth_->user;
    password = auth_->password;
  }
  if (user.empty()) return reply;
  if (Status renewed = authenticate(user, password); !renewed) return fail(renewed.error().wrap(operation));
  return callOnce(operation, path, body, token(), invalidToken);
}

Status EtcdClient::authenticate(std::string user, std::string password) {
  const std::string operation = fmt::format("authenticate as {}", user);
  bool invalidToken = false;
  auto reply = callOnce(operation, "/v3/auth/authenticate", authenticateRequest(user, password).dump(), "",
                        invalidToken);
  if (!reply) return fail(reply.error());
  auto token = decodeAuthenticate(*reply);
  if (!token) return fail(token.error().wrap(operation));
  std::lock_guard lock(auth_->mutex);
  auth_->user = std::move(user);
  auth_->password = std::move(password);
  auth_->token = std::move(*token);
  return {};
}

Status EtcdClient::enableAuth(std::string_view user, std::string_view password) {
  if (auto added =
          call(fmt::format("add user {}", user), "/v3/auth/user/add", authUserAddRequest(user, password));
      !added)
    return fail(added.error());
  if (auto role = call("add role root", "/v3/auth/role/add", authRoleAddRequest("root")); !role)
    return fail(role.error());
  if (auto granted = call(fmt::format("grant role root to {}", user), "/v3/auth/user/grant",
                          authUserGrantRoleRequest(user, "root"));
      !granted)
    return fail(granted.error());
  if (auto enabled = call("enable auth", "/v3/auth/enable", Json::object()); !enabled)
    return fail(enabled.error());
  return {};
}

Result<std::vector<Member>> EtcdClient::memberList() {
  auto reply = call("member list", "/v3/cluster/member/list", Json::object());
  if (!reply) return fail(reply.error());
  auto members = decodeMemberList(*reply);
  if (!members) return fail(members.error().wrap("member list"));
  return members;
}

Result<MemberAddResult> EtcdClient::memberAdd(const std::vector<std::string>& peerUrls) {
  const std::string operation = fmt::format("member add {}", fmt::join(peerUrls, ","));
  auto reply = call(operation, "/v3/cluster/member/add", memberAddRequest(peerUrls));
  if (!reply) return fail(reply.error());
  auto added = decodeMemberAdd(*reply);
  if (!added) return fail(added.error().wrap(operation));
  return added;
}

Status EtcdClient::memberRemove(uint64_t id) {
  auto reply =
      call(fmt::format("member remove {:x}", id), "/v3/cluster/member/remove", memberRemoveRequest(id));
  if (!reply) return fail(reply.error());
  return {};
}

Result<RangeResult> EtcdClient::getRange(std::string_view from, std::string_view end) {
  const std::string operation = fmt::format("get {} to {}", quotedKey(from), quotedKey(end));
  Json request = rangeRequest(from, false);
  request["range_end"] = encodeBase64(end);
  auto reply = call(operation, "/v3/kv/range", request);
  if (!reply) return fail(reply.error());
  auto decoded = decodeRange(*reply);
  if (!decoded) return fail(decoded.error().wrap(operation));
  return decoded;
}

Result<RangeResult> EtcdClient::get(std::string_view key, bool prefix, int64_t revision) {
  const std::string operation = revision > 0 ? fmt::format("get {} at revision {}", quotedKey(key), revision)
                                             : fmt::format("get {}", quotedKey(key));
  auto reply = call(operation, "/v3/kv/range", rangeRequest(key, prefix, revision));
  if (!reply) return fail(reply.error());
  auto decoded = decodeRange(*reply);
  if (!decoded) return fail(decoded.error().wrap(operation));
  return decoded;
}

Result<int64_t> EtcdClient::put(std::string_view key, std::string_view value, int64_t lease) {
  const std::string operation = fmt::format("put {}", quotedKey(key));
  auto reply = call(operation, "/v3/kv/put", putRequest(key, value, lease));
  if (!reply) return fail(reply.error());
  auto revision = decodeRevision(*reply);
  if (!revision) return fail(revision.error().wrap(operation));
  return revision;
}

Result<int64_t> EtcdClient::remove(std::string_view key, bool prefix) {
  const std::string operation = fmt::format("delete {}", quotedKey(key));
  auto reply = call(operation, "/v3/kv/deleterange", deleteRequest(key, prefix));
  if (!reply) return fail(reply.error());
  auto deleted = int64Field(*reply, "deleted");
  if (!deleted) return fail(deleted.error().wrap(operation));
  return deleted;
}

Result<TxnResult> EtcdClient::txn(const std::vector<Compare>& compares, const std::vector<TxnOp>& then,
                                  const std::vector<TxnOp>& otherwise) {
  std::string keys;
  for (const Compare& c : compares) keys += (keys.empty() ? "" : ", ") + quotedKey(c.key);
  const std::string operation = fmt::format("txn on {}", keys.empty() ? "no key" : keys);
  auto reply = call(operation, "/v3/kv/txn", txnRequest(compares, then, otherwise));
  if (!reply) return fail(reply.error());
  auto decoded = decodeTxn(*reply);
  if (!decoded) return fail(decoded.error().wrap(operation));
  return decoded;
}

Result<Lease> EtcdClient::grantLease(int64_t ttlSeconds) {
  const std::string operation = fmt::format("grant a lease of {} s", ttlSeconds);
  auto reply = call(operation, "/v3/lease/grant", Json{{"TTL", std::to_string(ttlSeconds)}});
  if (!reply) return fail(reply.error());
  if (auto error = reply->find("error"); error != reply->end() && error->is_string() && !error->empty()) {
    return fail(internalError("{}: etcd refused: {}", operation, error->get<std::string>()));
  }
  auto id = int64Field(*reply, "ID");
  auto ttl = int64Field(*reply, "TTL");
  if (!id) return fail(id.error().wrap(operation));
  if (!ttl) return fail(ttl.error().wrap(operation));
  return Lease{*id, *ttl};
}

Result<int64_t> EtcdClient::keepAliveOnce(int64_t lease) {
  const std::string operation = fmt::format("keep lease {:x} alive", lease);
  auto reply = call(operation, "/v3/lease/keepalive", Json{{"ID", std::to_string(lease)}});
  if (!reply) return fail(reply.error());
  auto result = reply->find("result");
  if (result == reply->end() || !result->is_object()) {
    return fail(internalError("{}: etcd reply has no result: {}", operation, reply->dump()));
  }
  auto ttl = int64Field(*result, "TTL");
  if (!ttl) return fail(ttl.error().wrap(operation));
  return ttl;
}

Status EtcdClient::revokeLease(int64_t lease) {
  auto reply =
      call(fmt::format("revoke lease {:x}", lease), "/v3/lease/revoke", Json{{"ID", std::to_string(lease)}});
  if (!reply) return fail(reply.error());
  return {};
}

std::unique_ptr<LeaseKeeper> EtcdClient::keepAlive(const Lease& lease) {
  std::unique_ptr<LeaseKeeper> keeper(new LeaseKeeper());
  const auto period = std::chrono::milliseconds(std::max<int64_t>(lease.ttlSeconds * 1000 / 3, 100));
  // A copy of the client (endpoints and the shared transport), so the keeper may outlive this one.
  keeper->thread_ = std::thread([client = *this, keeper = keeper.get(), id = lease.id, period]() mutable {
    std::unique_lock lock(keeper->mutex_);
    while (!keeper->stop_.load()) {
      lock.unlock();
      auto ttl = client.keepAliveOnce(id);
      if (ttl && *ttl > 0) keeper->renewals_.fetch_add(1);
      lock.lock();
      keeper->wake_.wait_for(lock, period, [keeper] { return keeper->stop_.load(); });
    }
  });
  return keeper;
}

void LeaseKeeper::stop() {
  {
    std::lock_guard lock(mutex_);
    stop_.store(true);
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<std::unique_ptr<Watch>> EtcdClient::watch(std::string_view prefix, int64_t startRevision) {
  if (endpoints_.empty())
    return fail(invalidField("endpoints", "no etcd endpoint to watch {}", quotedKey(prefix)));
  std::unique_ptr<Watch> watch(new Watch());
  watch->thread_ =
      std::thread(&Watch::run, watch.get(), std::ref(*transport_), endpoints_,
                  watchCreateRequest(prefix, startRevision).dump(), std::string(prefix), token());
  return watch;
}

void Watch::run(EtcdTransport& transport, std::vector<std::string> endpoints, std::string body,
                std::string prefix, std::string token) {
  const std::string operation = fmt::format("watch \"{}\"", prefix);
  std::vector<std::string> unreachable;
  for (const std::string& endpoint : endpoints) {
    WatchStreamDecoder decoder;
    std::optional<Error> streamError;
    auto onBytes = [&](std::string_view bytes) {
      decoder.feed(bytes);
      while (auto message = decoder.next()) {
        std::lock_guard lock(mutex_);
        if (!*message) {
          streamError = message->error().wrap(operation);
          return false;
        }
        if ((*message)->canceled) {
          streamError =
              conflict("{}: etcd cancelled the watch: {}{}", operation, (*message)->cancelReason,
                       (*message)->compactRevision != 0
                           ? fmt::format(" (compacted up to revision {})", (*message)->compactRevision)
                           : "");
          return false;
        }
        for (WatchEvent& event : (*message)->events) events_.push_back(std::move(event));
        changed_.notify_all();
      }
      return true;
    };
    HttpResult reply = transport.stream(endpoint, "/v3/watch", body, onBytes, stop_, token);
    std::lock_guard lock(mutex_);
    if (stop_.load()) return;
    if (!reply && reply.error().beforeSending) {
      unreachable.push_back(reply.error().reason);
      continue;
    }
    if (streamError) {
      failure_ = std::move(*streamError);
    } else if (!reply) {
      failure_ = unavailable("{}: cluster store has no quorum (etcd: {})", operation, reply.error().reason);
    } else if (reply->status != 200) {
      failure_ = errorFromReply(operation, reply->status, reply->body);
    } else {
      failure_ =
          unavailable("{}: cluster store has no quorum (etcd: {} ended the stream)", operation, endpoint);
    }
    changed_.notify_all();
    return;
  }
  std::lock_guard lock(mutex_);
  failure_ = unavailable("{}: cluster store has no quorum (etcd: no member reachable: {})", operation,
                         fmt::join(unreachable, "; "));
  changed_.notify_all();
}

Result<std::optional<WatchEvent>> Watch::next(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [this] { return !events_.empty() || failure_.has_value(); });
  if (!events_.empty()) {
    WatchEvent event = std::move(events_.front());
    events_.pop_front();
    return event;
  }
  if (failure_) return fail(*failure_);
  return std::nullopt;
}

Watch::~Watch() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

}  // namespace corral::net::etcd
