// The CLI's side of the wire: one HTTP/1.1 exchange with corrald over its Unix socket (Boost.Beast), with one
// deadline for connect + write + read, and the daemon's error body turned back into an Error.
#include "api/client.h"

// GCC 12's -Wnull-dereference fires inside Asio's scheduler once it is inlined here at -O2 (a false positive
// in boost/asio/detail/impl/scheduler.ipp); the diagnostic is about Boost's code, not ours.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <optional>

namespace corral::api {
namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using nlohmann::json;

// Lists can grow with the topology; this only stops a runaway peer from eating memory.
constexpr uint64_t kMaxResponseBytes = uint64_t{64} << 20;

std::string startHint(const std::string& socketPath) {
  if (socketPath == kDefaultSocketPath) return "corrald --foreground";
  return fmt::format("corrald --foreground --socket {}", socketPath);
}

Error connectError(const boost::system::error_code& ec, const std::string& socketPath) {
  if (ec == boost::system::errc::no_such_file_or_directory) {
    return unavailable("corrald is not running (no socket at {}); start it with: {}", socketPath,
                       startHint(socketPath));
  }
  if (ec == boost::system::errc::connection_refused) {
    return unavailable("corrald is not running (nothing listens on {}); start it with: {}", socketPath,
                       startHint(socketPath));
  }
  if (ec == boost::system::errc::permission_denied) {
    return unavailable("permission denied on {}: run corral as root or as a member of the corral group",
                       socketPath);
  }
  return unavailable("connect(\"{}\"): {}", socketPath, ec.message());
}

// A peer's port refused or unreachable: another host's corrald, not this one's.
Error peerConnectError(const boost::system::error_code& ec, const std::string& where) {
  return unavailable("the corrald at {} is not reachable: {}", where, ec.message());
}

std::optional<ErrorKind> errorKindFromName(std::string_view name) {
  for (ErrorKind kind : {ErrorKind::InvalidArgument, ErrorKind::NotFound, ErrorKind::Conflict,
                         ErrorKind::Unavailable, ErrorKind::Forbidden, ErrorKind::Internal}) {
    if (errorKindName(kind) == name) return kind;
  }
  return std::nullopt;
}

ErrorKind errorKindFromStatus(int status) {
  switch (status) {
    case 400:
      return ErrorKind::InvalidArgument;
    case 404:
      return ErrorKind::NotFound;
    case 409:
      return ErrorKind::Conflict;
    case 503:
      return ErrorKind::Unavailable;
    case 403:
      return ErrorKind::Forbidden;
    default:
      return ErrorKind::Internal;
  }
}

// {"error": {"kind", "message", "field"}} back into an Error, or the start of whatever else came.
Error errorFromResponse(const HttpResponse& response) {
  json body = json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_object() && body.contains("error")) return errorFromJson(body, response.status);
  std::string excerpt = response.body.substr(0, 200);
  return Error(errorKindFromStatus(response.status),
               fmt::format("corrald answered HTTP {} without an error body: {}", response.status,
                           excerpt.empty() ? "(empty)" : excerpt));
}

using Socket = asio::generic::stream_protocol::socket;
using Endpoint = asio::generic::stream_protocol::endpoint;

}  // namespace

Error errorFromJson(const json& body, int status) {
  if (body.is_object() && body.contains("error") && body["error"].is_object()) {
    const json& error = body["error"];
    if (error.contains("message") && error["message"].is_string()) {
      ErrorKind kind = errorKindFromStatus(status);
      if (error.contains("kind") && error["kind"].is_string()) {
        kind = errorKindFromName(error["kind"].get<std::string>()).value_or(kind);
      }
      std::string field;
      if (error.contains("field") && error["field"].is_string()) field = error["field"].get<std::string>();
      return Error(kind, error["message"].get<std::string>(), std::move(field));
    }
  }
  return Error(errorKindFromStatus(status),
               fmt::format("corrald answered HTTP {} with an error body it cannot read: {}", status,
                           body.dump().substr(0, 200)));
}

Client Client::peer(std::string address, uint16_t port, std::string token,
                    std::chrono::milliseconds timeout) {
  Client client(
      fmt::format("{}:{}", address.find(':') == std::string::npos ? address : "[" + address + "]", port),
      timeout);
  client.peer_ = PeerPort{.address = std::move(address), .port = port, .token = std::move(token)};
  return client;
}

namespace {

// Where a Client connects: its Unix socket, or a peer's TCP port (an address that is no IP throws, as an
// over-long socket path does; the callers turn that into Unavailable).
Endpoint endpointOf(const std::string& socketPath, const std::optional<std::string>& peerAddress,
                    uint16_t port) {
  if (peerAddress) return Endpoint(asio::ip::tcp::endpoint(asio::ip::make_address(*peerAddress), port));
  return Endpoint(asio::local::stream_protocol::endpoint(socketPath));
}

}  // namespace

Result<HttpResponse> Client::send(const HttpRequest& request) const {
  try {
    http::verb verb = http::string_to_verb(request.method);
    if (verb == http::verb::unknown) {
      return fail(invalidField("method", "unknown HTTP method \"{}\"", request.method));
    }
    http::request<http::string_body> message{verb, request.target, 11};
    message.set(http::field::host, "corrald");
    message.set(http::field::user_agent, "corral/" CORRAL_VERSION);
    if (peer_) message.set(http::field::authorization, "Bearer " + peer_->token);
    message.keep_alive(false);
    if (!request.body.empty()) {
      message.set(http::field::content_type, "application/json");
      message.body() = request.body;
    }
    message.prepare_payload();

    asio::io_context io;
    Socket socket(io);
    const Endpoint endpoint = endpointOf(socketPath_, peer_ ? std::optional(peer_->address) : std::nullopt,
                                         peer_ ? peer_->port : 0);
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBytes);

    // Each step starts the next from its completion handler; run_for() bounds the whole exchange.
    enum class Step { Connecting, Writing, Reading, Done } step = Step::Connecting;
    boost::system::error_code failure;
    socket.async_connect(endpoint, [&](boost::system::error_code ec) {
      if (ec) {
        failure = ec;
        return;
      }
      step = Step::Writing;
      http::async_write(socket, message, [&](boost::system::error_code writeEc, size_t) {
        if (writeEc) {
          failure = writeEc;
          return;
        }
        step = Step::Reading;
        http::async_read(socket, buffer, parser, [&](boost::system::error_code readEc, size_t) {
          if (readEc) {
            failure = readEc;
            return;
          }
          step = Step::Done;
        });
      });
    });
    io.run_for(timeout_);

    if (failure) {
      if (step == Step::Connecting)
        return fail(peer_ ? peerConnectError(failure, socketPath_) : connectError(failure, socketPath_));
      return fail(unavailable("{} {} on {}: {} failed: {}", request.method, request.target, socketPath_,
                              step == Step::Writing ? "sending the request" : "reading the answer",
                              failure.message()));
    }
    if (step != Step::Done) {
      return fail(unavailable("corrald on {} did not answer {} {} within {} ms", socketPath_, request.method,
                              request.target, timeout_.count()));
    }
    const auto& response = parser.get();
    return HttpResponse{static_cast<int>(response.result_int()), response.body()};
  } catch (const std::exception& e) {
    // The endpoint constructor throws for a path longer than sun_path; Beast may throw on allocation.
    return fail(unavailable("talking to corrald on {}: {}", socketPath_, e.what()));
  }
}

// The opening of the streamed calls (stream, follow): connects `socket` to corrald and sends `rendered`,
// asking for `accept`, on a connection that ends with the answer.
static Status sendStreamRequest(Socket& socket, const std::string& socketPath, const Endpoint& endpoint,
                                const std::optional<std::string>& token, const HttpRequest& rendered,
                                std::string_view accept) {
  boost::system::error_code ec;
  socket.connect(endpoint, ec);
  if (ec) return fail(token ? peerConnectError(ec, socketPath) : connectError(ec, socketPath));
  http::request<http::string_body> message{http::string_to_verb(rendered.method), rendered.target, 11};
  message.set(http::field::host, "corrald");
  message.set(http::field::user_agent, "corral/" CORRAL_VERSION);
  message.set(http::field::accept, std::string(accept));
  if (token) message.set(http::field::authorization, "Bearer " + *token);
  message.keep_alive(false);
  if (!rendered.body.empty()) {
    message.set(http::field::content_type, "application/json");
    message.body() = rendered.body;
  }
  message.prepare_payload();
  http::write(socket, message, ec);
  if (ec) {
    return fail(unavailable("{} {} on {}: sending the request failed: {}", rendered.method, rendered.target,
                            socketPath, ec.message()));
  }
  return {};
}

Result<nlohmann::json> Client::stream(const Request& request,
                                      const std::function<void(const ProgressEvent&)>& onProgress) const {
  HttpRequest rendered = renderRequest(request);
  try {
    asio::io_context io;
    Socket socket(io);
    const Endpoint endpoint = endpointOf(socketPath_, peer_ ? std::optional(peer_->address) : std::nullopt,
                                         peer_ ? peer_->port : 0);
    if (auto sent = sendStreamRequest(socket, socketPath_, endpoint,
                                      peer_ ? std::optional(peer_->token) : std::nullopt, rendered,
                                      kProgressContentType);
        !sent)
      return fail(sent.error());
    boost::system::error_code ec;

    // Each chunk's bytes are cut into lines here, as they arrive; the last line is the outcome.
    std::string pending;
    std::optional<StreamLine> outcome;
    std::optional<Error> broken;
    auto takeLines = [&] {
      for (size_t newline; (newline = pending.find('\n')) != std::string::npos;) {
        std::string line = pending.substr(0, newline);
        pending.erase(0, newline + 1);
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
        auto parsed = parseStreamLine(line);
        if (!parsed) {
          if (!broken) broken = parsed.error();
          continue;
        }
        if (parsed->kind == StreamLine::Kind::progress) {
          if (onProgress) onProgress(parsed->progress);
        } else {
          outcome = std::move(*parsed);
        }
      }
    };
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBytes);
    auto onChunk = [&](uint64_t, boost::beast::string_view body, boost::system::error_code&) -> size_t {
      pending.append(body.data(), body.size());
      takeLines();
      return body.size();
    };
    parser.on_chunk_body(onChunk);
    http::read(socket, buffer, parser, ec);
    if (ec) {
      return fail(unavailable("{} {} on {}: reading the answer failed: {} (corrald stopped?)",
                              rendered.method, rendered.target, socketPath_, ec.message()));
    }
    const auto& response = parser.get();
    int status = static_cast<int>(response.result_int());
    if (!parser.chunked()) {
      // Refused before any work began (a bad field): an ordinary JSON answer.
      HttpResponse plain{status, response.body()};
      if (status < 200 || status >= 300) return fail(errorFromResponse(plain));
      json body = json::parse(plain.body, nullptr, /*allow_exceptions=*/false);
      if (body.is_object() && body.contains("image")) return body["image"];
      return fail(internalError("corrald answered HTTP {} without a progress stream: {}", status,
                                plain.body.substr(0, 200)));
    }
    pending += "\n";
    takeLines();
    if (broken) return fail(*broken);
    if (!outcome) return fail(unavailable("corrald ended the progress stream without a result"));
    if (outcome->kind == StreamLine::Kind::error) return fail(*outcome->error);
    return outcome->result;
  } catch (const std::exception& e) {
    return fail(unavailable("talking to corrald on {}: {}", socketPath_, e.what()));
  }
}

Status Client::follow(const Request& request,
                      const std::function<bool(const nlohmann::json&)>& onLine) const {
  HttpRequest rendered = renderRequest(request);
  try {
    asio::io_context io;
    Socket socket(io);
    const Endpoint endpoint = endpointOf(socketPath_, peer_ ? std::optional(peer_->address) : std::nullopt,
                                         peer_ ? peer_->port : 0);
    if (auto sent = sendStreamRequest(socket, socketPath_, endpoint,
                                      peer_ ? std::optional(peer_->token) : std::nullopt, rendered,
                                      "application/x-ndjson");
        !sent)
      return fail(sent.error());
    boost::system::error_code ec;
    std::string pending;
    bool stopped = false;
    auto takeLines = [&] {
      for (size_t newline; !stopped && (newline = pending.find('\n')) != std::string::npos;) {
        std::string line = pending.substr(0, newline);
        pending.erase(0, newline + 1);
        if (line.find_first_not_of(" \t\r") == std::string::npos) continue;  // a keep-alive
        json parsed = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (parsed.is_discarded()) continue;
        if (!onLine(parsed)) stopped = true;
      }
    };
    boost::beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxResponseBytes);
    auto onChunk = [&](uint64_t, boost::beast::string_view body, boost::system::error_code& cec) -> size_t {
      pending.append(body.data(), body.size());
      takeLines();
      if (stopped) cec = boost::asio::error::operation_aborted;
      return body.size();
    };
    parser.on_chunk_body(onChunk);
    http::read(socket, buffer, parser, ec);
    if (stopped) return {};
    if (ec) {
      return fail(unavailable("{} {} on {}: reading the answer failed: {} (corrald stopped?)",
                              rendered.method, rendered.target, socketPath_, ec.message()));
    }
    const auto& response = parser.get();
    const int status = static_cast<int>(response.result_int());
    if (!parser.chunked()) {
      HttpResponse plain{status, response.body()};
      if (status < 200 || status >= 300) return fail(errorFromResponse(plain));
      return fail(
          internalError("corrald answered HTTP {} without a stream: {}", status, plain.body.substr(0, 200)));
    }
    pending += "\n";
    takeLines();
    return {};
  } catch (const std::exception& e) {
    return fail(unavailable("talking to corrald on {}: {}", socketPath_, e.what()));
  }
}

Result<nlohmann::json> Client::call(const Request& request) const {
  Result<HttpResponse> response = send(renderRequest(request));
  if (!response) return fail(response.error());
  if (response->status < 200 || response->status >= 300) return fail(errorFromResponse(*response));
  if (response->body.find_first_not_of(" \t\r\n") == std::string::npos) return json(nullptr);
  json body = json::parse(response->body, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) {
    return fail(internalError("corrald answered HTTP {} with a body that is not JSON: {}", response->status,
                              response->body.substr(0, 200)));
  }
  return body;
}

}  // namespace corral::api
