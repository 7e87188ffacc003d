// The Unix-socket HTTP server: socket file lifecycle, one asynchronous session per connection with its own
// strand and deadline, and the mapping of transport failures (timeouts, limits, malformed HTTP) to replies.

// GCC 12 at -O2 reports a "potential null pointer dereference" inside Asio's scheduler (scheduler.ipp:325,
// thread-private work counting) once it inlines it here; the warning sits in Boost, not in our code, and
// -Werror would otherwise break the build. It must precede every Asio include, so it comes first.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include "daemon/http_server.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <deque>
#include <filesystem>
#include <optional>
#include <stop_token>
#include <thread>
#include <vector>

#include "api/api.h"
#include "api/terminal.h"
#include "core/log.h"
#include "core/unique_fd.h"
#include "daemon/web.h"

namespace corral::daemon {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using Local = asio::local::stream_protocol;
using Tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHeaderBytes = 16 * 1024;
// After refusing an oversized body we read and discard what the client is still sending (up to this much),
// so it can finish writing and read our 413 instead of failing with EPIPE.
constexpr size_t kMaxDiscardBytes = 8 * api::kMaxBodyBytes;
// The dashboard's event stream: how often it looks whether the view moved, the least time between two
// events (a burst of changes goes out as one), and the longest silence before a comment line.
constexpr std::chrono::milliseconds kEventTick{250};
constexpr std::chrono::milliseconds kEventGap{1000};
constexpr std::chrono::milliseconds kEventKeepAlive{15'000};

// ---- Socket file ----

Status createDirectories(const std::filesystem::path& dir) {
  if (dir.empty()) return {};
  struct stat info {};
  if (::stat(dir.c_str(), &info) == 0) {
    if (!S_ISDIR(info.st_mode)) return fail(conflict("\"{}\" exists and is not a directory", dir.string()));
    return {};
  }
  if (errno != ENOENT) return fail(systemError(errno, fmt::format("stat(\"{}\")", dir.string())));
  if (auto parent = createDirectories(dir.parent_path()); !parent) return parent;
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return fail(systemError(errno, fmt::format("mkdir(\"{}\", 0755)", dir.string())));
  }
  return {};
}

Result<sockaddr_un> socketAddress(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty()) return fail(invalidField("socket", "the socket path is empty"));
  if (path.size() >= sizeof address.sun_path) {
    return fail(invalidField("socket", "socket path \"{}\" is {} bytes; a Unix socket path must be under {}",
                             path, path.size(), sizeof address.sun_path));
  }
  path.copy(address.sun_path, path.size());
  return address;
}

}  // namespace

Result<std::optional<gid_t>> socketGroupId(const std::string& name) {
  const std::string wanted = name.empty() ? "corral" : name;
  group entry{};
  group* found = nullptr;
  std::vector<char> buffer(16384);
  int error = ::getgrnam_r(wanted.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (error == 0 && found) return std::optional<gid_t>(found->gr_gid);
  if (name.empty()) return std::optional<gid_t>();
  if (error != 0) {
    return fail(systemError(error, fmt::format("getgrnam_r(\"{}\")", name)).wrap("socket-group"));
  }
  return fail(
      invalidField("socket-group", "no group \"{}\" on this host (addgroup --system {})", name, name));
}

namespace {

// A socket file left by a daemon that died is removed; one that answers belongs to a running daemon.
Status removeStaleSocket(const std::string& path) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return {};
    return fail(systemError(errno, fmt::format("lstat(\"{}\")", path)));
  }
  if (!S_ISSOCK(info.st_mode)) {
    return fail(conflict("\"{}\" exists and is not a socket; refusing to remove it", path));
  }
  auto address = socketAddress(path);
  if (!address) return fail(address.error());
  UniqueFd probe(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!probe) return fail(systemError(errno, "socket(AF_UNIX)"));
  if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof *address) == 0) {
    return fail(conflict(
        "another corrald is already listening on \"{}\"; stop it first or choose another --socket", path));
  }
  int connectErrno = errno;
  if (connectErrno != ECONNREFUSED && connectErrno != ENOENT) {
    return fail(
        systemError(connectErrno, fmt::format("connect(\"{}\") to check for a running corrald", path)));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return fail(systemError(errno, fmt::format("unlink(\"{}\") of a stale socket", path)));
  }
  log::info("removed stale socket \"{}\" (nothing answered on it)", path);
  return {};
}

Status setSocketPermissions(const std::string& path, std::optional<gid_t> group) {
  if (::chmod(path.c_str(), 0660) != 0)
    return fail(systemError(errno, fmt::format("chmod(\"{}\", 0660)", path)));
  if (!group) {
    log::debug("no socket group: \"{}\" stays with the daemon's group", path);
    return {};
  }
  if (::chown(path.c_str(), static_cast<uid_t>(-1), *group) != 0) {
    return fail(systemError(errno, fmt::format("chown(\"{}\", -1, {})", path, *group)));
  }
  return {};
}

// ---- Terminals ----

// How long the end of a program waits for its output to drain (a pty whose slave a background process keeps
// open never reads EOF) before the exit frame goes out anyway.
constexpr std::chrono::milliseconds kOutputDrain{1000};
constexpr size_t kTerminalChunk = 32 * 1024;

// One upgraded exec or console connection (api/terminal.h): the program's output descriptors are read
// with asio and sent as binary frames, the client's stdin frames are written to its input, its text frames
// resize or end the input. All handlers run on the connection's strand; no thread waits on a descriptor.
// The client going away detaches (core/stdio_session.h: an exec'd program is killed, a console is not).
template <class Protocol>
class TerminalBridge : public std::enable_shared_from_this<TerminalBridge<Protocol>> {
 public:
  TerminalBridge(beast::basic_stream<Protocol>&& stream, std::unique_ptr<StdioSession> session,
                 http::request<http::string_body> request, std::string what)
      : ws_(std::move(stream)),
        session_(std::move(session)),
        request_(std::move(request)),
        what_(std::move(what)),
        input_(ws_.get_executor()),
        output_(ws_.get_executor()),
        error_(ws_.get_executor()),
        exit_(ws_.get_executor()),
        drain_(ws_.get_executor()) {}

  void start() {
    beast::get_lowest_layer(ws_).expires_never();
    ws_.set_option(websocket::stream_base::timeout::suggested(beast::role_type::server));
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type& response) {
      response.set(http::field::server, "corrald/" CORRAL_VERSION);
    }));
    ws_.read_message_max(api::kMaxBodyBytes);
    ws_.async_accept(request_, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) {
        log::info("{}: WebSocket handshake: {}", self->what_, ec.message());
        return self->end(/*clientGone=*/true);
      }
      self->begin();
    });
  }

 private:
  using Descriptor = asio::posix::stream_descriptor;

  // A dup of the session's descriptor for asio to own (the session keeps its own).
  static bool assign(Descriptor& descriptor, int fd) {
    if (fd < 0) return false;
    int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0) return false;
    beast::error_code ec;
    descriptor.assign(copy, ec);
    if (ec) ::close(copy);
    return !ec;
  }

  void begin() {
    log::info("{}: attached ({})", what_, session_->tty() ? "tty" : "pipes");
    assign(input_, session_->inputFd());
    if (assign(output_, session_->outputFd())) readOutput(output_, api::StdioStream::output, outputBuffer_);
    if (assign(error_, session_->errorFd())) readOutput(error_, api::StdioStream::error, errorBuffer_);
    if (assign(exit_, session_->exitFd())) {
      exit_.async_wait(Descriptor::wait_read, [self = this->shared_from_this()](beast::error_code ec) {
        if (ec) return;
        self->exited_ = true;
        self->drain_.expires_after(kOutputDrain);
        self->drain_.async_wait([self](beast::error_code timer) {
          if (!timer) self->finish();
        });
        self->maybeFinish();
      });
    }
    readClient();
  }

  void readOutput(Descriptor& from, api::StdioStream stream, std::vector<char>& buffer) {
    ++outputsOpen_;
    buffer.resize(kTerminalChunk);
    readMore(from, stream, buffer);
  }

  void readMore(Descriptor& from, api::StdioStream stream, std::vector<char>& buffer) {
    from.async_read_some(asio::buffer(buffer), [self = this->shared_from_this(), &from, stream, &buffer](
                                                   beast::error_code ec, size_t n) {
      if (ec || n == 0) {  // EOF, or EIO once a pty's last slave closed: the program's output ended
        --self->outputsOpen_;
        return self->maybeFinish();
      }
      // The next read waits for this frame's write: a slow client slows the program, it does not fill memory.
      self->send(api::encodeStreamFrame(stream, std::string_view(buffer.data(), n)), false,
                 [self, &from, stream, &buffer] {
                   if (!self->ended_) self->readMore(from, stream, buffer);
                 });
    });
  }

  void readClient() {
    ws_.async_read(readBuffer_, [self = this->shared_from_this()](beast::error_code ec, size_t) {
      if (ec) return self->end(/*clientGone=*/true);
      const std::string frame = beast::buffers_to_string(self->readBuffer_.data());
      self->readBuffer_.consume(self->readBuffer_.size());
      if (self->ws_.got_text()) return self->onControl(frame);
      auto decoded = api::decodeClientFrame(frame);
      if (!decoded) {
        self->sendError(decoded.error());
        return self->readClient();
      }
      if (!self->input_.is_open()) {
        self->sendError(
            invalidField("stream", "stdin is not open: {}",
                         self->inputClosed_ ? "the client ended it (eof)" : "ask with stdin=true"));
        return self->readClient();
      }
      auto data = std::make_shared<std::string>(decoded->data);
      asio::async_write(self->input_, asio::buffer(*data), [self, data](beast::error_code wec, size_t) {
        if (wec) log::debug("{}: writing stdin: {}", self->what_, wec.message());
        self->readClient();
      });
    });
  }

  void onControl(const std::string& text) {
    auto control = api::parseClientControl(text);
    if (!control) {
      sendError(control.error());
    } else if (const auto* resize = std::get_if<api::ResizeControl>(&*control)) {
      if (Status resized = session_->resize(resize->size); !resized) sendError(resized.error());
    } else {
      beast::error_code ignored;
      input_.close(ignored);
      inputClosed_ = true;
      session_->closeInput();
    }
    readClient();
  }

  void sendError(const Error& error) {
    log::info("{}: refused: {}", what_, error.message());
    send(api::renderServerControl(api::ErrorControl{error}), true, {});
  }

  void send(std::string frame, bool text, std::function<void()> after) {
    if (ended_) return;
    queue_.push_back({std::move(frame), text, std::move(after)});
    if (queue_.size() == 1) writeNext();
  }

  void writeNext() {
    if (queue_.empty() || ended_) return;
    ws_.text(queue_.front().text);
    ws_.async_write(asio::buffer(queue_.front().frame),
                    [self = this->shared_from_this()](beast::error_code ec, size_t) {
                      if (ec) return self->end(/*clientGone=*/true);
                      auto after = std::move(self->queue_.front().after);
                      self->queue_.pop_front();
                      if (after) after();
                      if (self->closing_ && self->queue_.empty()) return self->closeSocket();
                      self->writeNext();
                    });
  }

  void maybeFinish() {
    if (outputsOpen_ > 0) return;
    if (exit_.is_open() && !exited_) return;
    finish();
  }

  // The program has ended and its output is sent: the exit frame, then a normal close.
  void finish() {
    if (finished_ || ended_) return;
    finished_ = true;
    auto status = session_->exitStatus();
    if (status) {
      log::info("{}: ended ({})", what_,
                status->signal ? fmt::format("signal {}", *status->signal)
                               : fmt::format("exit code {}", status->exitCode.value_or(0)));
      send(api::renderServerControl(api::ExitControl{*status}), true, {});
    } else {
      sendError(status.error());
    }
    closing_ = true;
    if (queue_.empty()) closeSocket();
  }

  void closeSocket() {
    ws_.async_close(websocket::close_code::normal,
                    [self = this->shared_from_this()](beast::error_code) { self->end(false); });
  }

  void end(bool clientGone) {
    if (ended_) return;
    ended_ = true;
    if (clientGone && !finished_) {
      log::info("{}: the client went away; detaching", what_);
      session_->detach();
    }
    beast::error_code ignored;
    input_.close(ignored);
    output_.close(ignored);
    error_.close(ignored);
    exit_.close(ignored);
    drain_.cancel();
    beast::get_lowest_layer(ws_).close();
  }

  struct Outgoing {
    std::string frame;
    bool text = false;
    std::function<void()> after;  // once written
  };

  websocket::stream<beast::basic_stream<Protocol>> ws_;
  std::unique_ptr<StdioSession> session_;
  http::request<http::string_body> request_;
  std::string what_;  // "exec in web-1", for the log
  Descriptor input_, output_, error_, exit_;
  asio::steady_timer drain_;
  std::vector<char> outputBuffer_, errorBuffer_;
  beast::flat_buffer readBuffer_;
  std::deque<Outgoing> queue_;
  int outputsOpen_ = 0;
  bool exited_ = false, finished_ = false, closing_ = false, ended_ = false, inputClosed_ = false;
};

// ---- Sessions ----

std::string jsonText(const nlohmann::json& body) {
  return body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// Which way a connection came in: the Unix socket serves everything, the loopback TCP port only the
// dashboard (daemon/web.h), the peer port everything to the cluster's corralds that show its token.
enum class Door { UnixSocket, DashboardPort, PeerPort };

using PeerToken = std::function<std::optional<std::string>()>;

// Compares every byte the two have in common whatever they hold, so the time taken tells nothing of how
// much of a guess was right (only whether its length was: tokens have one length).
bool sameToken(std::string_view presented, std::string_view token) {
  if (token.empty()) return false;
  unsigned differ = presented.size() == token.size() ? 0 : 1;
  const size_t common = std::min(presented.size(), token.size());
  for (size_t i = 0; i < common; ++i)
    differ |= static_cast<unsigned>(static_cast<unsigned char>(presented[i]) ^
                                    static_cast<unsigned char>(token[i]));
  return differ == 0;
}

// The peer port's door: the cluster's token as a bearer credential (RFC 6750), or Forbidden.
std::optional<Error> refuseOnPeerPort(std::string_view authorization, const PeerToken& peerToken) {
  std::optional<std::string> token = peerToken ? peerToken() : std::nullopt;
  if (!token || token->empty())
    return forbidden("this corrald takes no requests from peers: it is in no cluster");
  constexpr std::string_view kBearer = "Bearer ";
  if (!authorization.starts_with(kBearer)) {
    return Error(ErrorKind::Forbidden,
                 "a request on the peer port needs \"Authorization: Bearer TOKEN\" with the cluster's token",
                 "authorization");
  }
  if (!sameToken(authorization.substr(kBearer.size()), *token))
    return Error(ErrorKind::Forbidden, "the token is not this cluster's", "authorization");
  return std::nullopt;
}

template <class Protocol>
class Session : public std::enable_shared_from_this<Session<Protocol>> {
 public:
  Session(typename Protocol::socket socket, Service& service, std::chrono::milliseconds timeout, Door door,
          std::shared_ptr<ActiveStreams> streams, const PeerToken* peerToken = nullptr)
      : stream_(std::move(socket)),
        service_(service),
        timeout_(timeout),
        door_(door),
        streams_(std::move(streams)),
        peerToken_(peerToken) {}

  void start() { readRequest(); }

 private:
  using Response = http::response<http::string_body>;

  void readRequest() {
    parser_.emplace();
    parser_->header_limit(kMaxHeaderBytes);
    parser_->body_limit(api::kMaxBodyBytes);
    // One deadline for the whole request: a client trickling bytes cannot extend it.
    stream_.expires_after(timeout_);
    http::async_read_header(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onHeader(ec); });
  }

  void onHeader(beast::error_code ec) {
    if (ec) return onReadError(ec);
    auto& header = parser_->get();
    if (beast::iequals(header[http::field::expect], "100-continue")) {
      // curl waits for this before sending a larger body.
      auto interim =
          std::make_shared<http::response<http::empty_body>>(http::status::continue_, header.version());
      http::async_write(stream_, *interim,
                        [self = this->shared_from_this(), interim](beast::error_code wec, size_t) {
                          if (wec) return self->close();
                          self->readBody();
                        });
      return;
    }
    readBody();
  }

  void readBody() {
    http::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->onRequest(ec); });
  }

  void onReadError(beast::error_code ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::connection_reset ||
        ec == http::error::partial_message || ec == asio::error::operation_aborted) {
      // The client went away; nobody is left to answer.
      return close();
    }
    if (ec == beast::error::timeout) {
      log::info("dropping a connection: no complete request within {} ms", timeout_.count());
      return close();
    }
    if (ec == http::error::body_limit) {
      return replyAndClose(
          413, invalidField("body", "request body is larger than the limit of {} bytes", api::kMaxBodyBytes),
          /*drain=*/true);
    }
    if (ec == http::error::header_limit) {
      return replyAndClose(
          431,
          invalidField("headers", "request headers are larger than the limit of {} bytes", kMaxHeaderBytes),
          /*drain=*/false);
    }
    replyAndClose(400,
                  Error(ErrorKind::InvalidArgument, fmt::format("malformed HTTP request: {}", ec.message())),
                  /*drain=*/false);
  }

  void onRequest(beast::error_code ec) {
    if (ec) return onReadError(ec);
    auto started = Clock::now();
    http::request<http::string_body> request = parser_->release();
    std::string method(request.method_string());
    std::string target(request.target());
    bool keepAlive = request.keep_alive();
    auto response = std::make_shared<Response>(http::status::ok, request.version());
    response->set(http::field::server, "corrald/" CORRAL_VERSION);
    response->keep_alive(keepAlive);

    std::vector<std::string_view> hosts;
    for (auto range = request.equal_range(http::field::host); range.first != range.second; ++range.first)
      hosts.emplace_back(range.first->value().data(), range.first->value().size());
    std::optional<Error> refused = door_ == Door::DashboardPort ? refuseOnDashboardPort(method, target, hosts)
                                                                : refuseRepeatedHost(hosts.size());
    if (!refused && door_ == Door::PeerPort) {
      const auto authorization = request[http::field::authorization];
      refused = refuseOnPeerPort(std::string_view(authorization.data(), authorization.size()),
                                 peerToken_ ? *peerToken_ : PeerToken());
    }
    if (!refused && isDashboardEvents(method, target)) {
      log::debug("{} {} 200 (event stream)", method, target);
      return startEvents(request.version());
    }
    // An upgraded exec or console (api/terminal.h): not on the dashboard port (it is read-only).
    std::optional<Error> terminalRefused;
    if (!refused && door_ != Door::DashboardPort) {
      auto terminal = api::parseTerminalTarget(method, target);
      if (!terminal) {
        terminalRefused = terminal.error();
      } else if (*terminal && !websocket::is_upgrade(request)) {
        terminalRefused = invalidField("upgrade",
                                       "{} {} needs \"Connection: Upgrade\" and \"Upgrade: websocket\" "
                                       "(docs/api.md, Terminals)",
                                       method, (*terminal)->name);
      } else if (*terminal) {
        auto session = service_.openTerminal(**terminal);
        if (session) {
          const bool exec = (*terminal)->kind == api::TerminalTarget::Kind::exec;
          std::string what = fmt::format("{} {}", exec ? "exec in" : "console of", (*terminal)->name);
          log::info("{} {} 101 {:.1f}ms", method, target,
                    std::chrono::duration<double, std::milli>(Clock::now() - started).count());
          return std::make_shared<TerminalBridge<Protocol>>(std::move(stream_), std::move(*session),
                                                            std::move(request), std::move(what))
              ->start();
        }
        terminalRefused = session.error();
      }
    }
    if (!refused && terminalRefused) refused = std::move(terminalRefused);
    std::optional<StaticPage> page = refused ? std::nullopt : staticPage(method, target);
    if (page) {
      response->set(http::field::content_type, std::string(page->contentType));
      response->set(http::field::cache_control, "no-store");
      response->set("Content-Security-Policy", std::string(kPageSecurityPolicy));
      response->set("X-Content-Type-Options", "nosniff");
      response->set("Referrer-Policy", "no-referrer");
      response->body() = std::string(page->body);
      response->prepare_payload();
      if (method == "HEAD") response->body().clear();  // the length stays the page's
    } else {
      daemon::Response answer;
      if (refused) {
        answer = errorResponse(*refused);
      } else if (auto parsed = api::parseRequest(method, target, request.body())) {
        if (Service::followsFlowLogs(*parsed)) {
          auto filter = service_.flowLogFilter(std::get<api::GetFlowLogs>(*parsed));
          if (filter) {
            log::info("{} {} 200 (flow log stream)", method, target);
            return startFlowLogs(std::move(*filter), request.version());
          }
          answer = errorResponse(filter.error());
        } else if (Service::streams(*parsed)) {
          Status checked = service_.checkImageOperation(*parsed);
          if (checked) return startStream(std::move(*parsed), method, target, request.version());
          answer = errorResponse(checked.error());
        } else {
          answer = service_.handle(*parsed);
        }
      } else {
        answer = errorResponse(parsed.error());
      }
      response->result(static_cast<http::status>(answer.status));
      response->set(http::field::content_type, "application/json");
      if (door_ == Door::DashboardPort) response->set("X-Content-Type-Options", "nosniff");
      response->body() = jsonText(answer.body);
      response->prepare_payload();
    }
    auto elapsed = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    // The dashboard asks every second; its answers are logged at debug level so the log stays readable.
    const bool poll = method == "GET" && (target == "/v1/dashboard" || page);
    log::write(poll ? log::Level::Debug : log::Level::Info,
               fmt::format("{} {} {} {:.1f}ms", method, target, response->result_int(), elapsed));
    write(response, keepAlive ? AfterWrite::ReadNext : AfterWrite::Close);
  }

  // Pull, import and build: a chunked NDJSON answer (api/images.h) written from a thread of its own, since
  // the operation takes minutes and must not hold an I/O thread. The client going away (a hangup seen on
  // the socket, or a write failing) stops the operation, which then leaves no image.
  void startStream(api::Request request, std::string method, std::string target, unsigned version) {
    stream_.expires_never();
    {
      std::lock_guard lock(streams_->mutex);
      ++streams_->count;
    }
    std::thread([self = this->shared_from_this(), request = std::move(request), method = std::move(method),
                 target = std::move(target), version] {
      self->runStream(request, method, target, version);
      std::lock_guard lock(self->streams_->mutex);
      --self->streams_->count;
      self->streams_->idle.notify_all();
    }).detach();
  }

  void runStream(const api::Request& request, const std::string& method, const std::string& target,
                 unsigned version) {
    auto started = Clock::now();
    auto& socket = stream_.socket();
    beast::error_code ec;
    http::response<http::empty_body> header{http::status::ok, version};
    header.set(http::field::server, "corrald/" CORRAL_VERSION);
    header.set(http::field::content_type, std::string(api::kProgressContentType));
    header.set(http::field::cache_control, "no-store");
    header.chunked(true);
    header.keep_alive(false);
    http::response_serializer<http::empty_body> serializer{header};
    http::write_header(socket, serializer, ec);

    std::stop_source stop;
    if (ec) stop.request_stop();
    auto send = [&](const nlohmann::json& line) {
      if (stop.stop_requested()) return;
      std::string text = jsonText(line);
      asio::write(socket, http::make_chunk(asio::buffer(text)), ec);
      if (ec) stop.request_stop();
    };
    // The request was read whole, so anything but more bytes from the client is it going away.
    std::atomic<bool> finished{false};
    std::thread watcher([&, fd = socket.native_handle()] {
      while (!finished && !stop.stop_requested()) {
        pollfd peer{.fd = fd, .events = POLLRDHUP, .revents = 0};
        int ready = ::poll(&peer, 1, 100);
        if (ready > 0 && (peer.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
          stop.request_stop();
          return;
        }
        if (ready > 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
    });
    auto result = service_.runImageOperation(
        request, [&](const api::ProgressEvent& event) { send(api::progressJson(event)); }, stop.get_token());
    finished = true;
    watcher.join();
    const bool clientLeft = stop.stop_requested();
    if (!clientLeft) {
      send(result ? nlohmann::json{{"image", *result}} : api::errorJson(result.error()));
      asio::write(socket, http::make_chunk_last(), ec);
    }
    auto elapsed = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
    log::info("{} {} 200 (stream) {:.1f}ms: {}", method, target, elapsed,
              clientLeft ? "cancelled, the client went away"
              : result   ? "done"
                         : result.error().message());
    close();
  }

  // GET /v1/dashboard/events: the dashboard's view (Service::dashboard) as server-sent events, the whole
  // view first ("dashboard"), then a "dashboard-patch" (daemon/service.h dashboardPatch) whenever it
  // differs from the last one sent, until the client goes. No thread waits:
  // a timer on this session's strand looks every kEventTick whether the view may have moved (the cheap
  // Service::dashboardRevision, or usage due), and a read that ends only when the client closes ends it.
  void startEvents(unsigned version) { startStream(version, kEventStreamContentType, &Session::sendEvents); }

  // The head of an endless chunked response (the dashboard's events, the flow logs followed), then `send`
  // on this session's strand and a read that ends the stream when the client closes.
  void startStream(unsigned version, std::string_view contentType, void (Session::*send)()) {
    stream_.expires_never();
    eventsOpen_ = true;
    eventTimer_.emplace(stream_.get_executor());
    auto header = std::make_shared<http::response<http::empty_body>>(http::status::ok, version);
    header->set(http::field::server, "corrald/" CORRAL_VERSION);
    header->set(http::field::content_type, std::string(contentType));
    header->set(http::field::cache_control, "no-store");
    header->set("X-Content-Type-Options", "nosniff");
    header->chunked(true);
    header->keep_alive(false);
    auto serializer = std::make_shared<http::response_serializer<http::empty_body>>(*header);
    http::async_write_header(
        stream_, *serializer,
        [self = this->shared_from_this(), header, serializer, send](beast::error_code ec, size_t) {
          if (ec) return self->endEvents();
          self->watchPeer();
          ((*self).*send)();
        });
  }

  // The client sends nothing more; the read ends when it closes (or the connection breaks).
  void watchPeer() {
    drainBuffer_.resize(4096);
    stream_.async_read_some(asio::buffer(drainBuffer_),
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->endEvents();
                              self->watchPeer();
                            });
  }

  // GET /v1/flow-logs?follow=true: newline-delimited JSON, the newest records the filter wants first, then
  // every record stored after them, until the client goes. Like the dashboard's events, no thread waits: a
  // timer on this session's strand looks every kEventTick whether the flow logs' revision moved, and an
  // empty line now and then finds a client that vanished.
  void startFlowLogs(FlowLogFilter filter, unsigned version) {
    flowFilter_ = std::move(filter);
    startStream(version, "application/x-ndjson", &Session::sendFlowLogs);
  }

  void sendFlowLogs() {
    if (!eventsOpen_) return;
    const auto now = Clock::now();
    std::string text;
    const uint64_t revision = service_.flowLogRevision();
    if (!flowStarted_ || revision != seenRevision_) {
      seenRevision_ = revision;
      auto records = service_.flowLogRecords(flowFilter_);
      if (records) {
        for (const nlohmann::json& record : *records) {
          text += record.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
          text += '\n';
          flowFilter_.afterId = std::max(flowFilter_.afterId, record.value("id", int64_t{0}));
        }
      } else {
        log::warn("GET /v1/flow-logs (follow): {}", records.error().message());
      }
      if (!flowStarted_) {
        // Only the newest at first; afterwards, everything new however much it is.
        flowStarted_ = true;
        flowFilter_.newest = kFlowLogsPerVpc;
      }
    }
    if (text.empty() && now - lastWrite_ >= kEventKeepAlive) text = "\n";
    if (text.empty()) {
      eventTimer_->expires_after(kEventTick);
      eventTimer_->async_wait([self = this->shared_from_this()](beast::error_code ec) {
        if (!ec) self->sendFlowLogs();
      });
      return;
    }
    lastWrite_ = now;
    auto chunk = std::make_shared<std::string>(std::move(text));
    asio::async_write(stream_, http::make_chunk(asio::buffer(*chunk)),
                      [self = this->shared_from_this(), chunk](beast::error_code ec, size_t) {
                        if (ec) return self->endEvents();
                        self->eventTimer_->expires_after(kEventTick);
                        self->eventTimer_->async_wait([self](beast::error_code wec) {
                          if (!wec) self->sendFlowLogs();
                        });
                      });
  }

  void sendEvents() {
    if (!eventsOpen_) return;
    const auto now = Clock::now();
    std::string text;
    const uint64_t revision = service_.dashboardRevision();
    if (sentSequence_ == 0 || revision != seenRevision_ || now - lastAsked_ >= kDashboardUsageEvery) {
      seenRevision_ = revision;
      lastAsked_ = now;
      DashboardView view = service_.dashboard();
      if (view.body && view.sequence != sentSequence_) {
        if (sentSequence_ == 0) {
          // The whole view first; it also tells the browser how soon to reconnect after a drop.
          text = fmt::format("retry: 2000\nevent: dashboard\nid: {}\ndata: {}\n\n", view.sequence,
                             view.body->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        } else {
          // Then only what changed: a VPC not drawn again is not sent again (~1 KB per instance).
          text = fmt::format(
              "event: dashboard-patch\nid: {}\ndata: {}\n\n", view.sequence,
              dashboardPatch(sent_, view).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
        }
        sentSequence_ = view.sequence;
        sent_ = std::move(view);
      }
    }
    // A comment now and then: a client that vanished without a close is found by the failing write.
    if (text.empty() && now - lastWrite_ >= kEventKeepAlive) text = ": still here\n\n";
    if (text.empty()) return waitForEvents(kEventTick);
    lastWrite_ = now;
    auto chunk = std::make_shared<std::string>(std::move(text));
    asio::async_write(stream_, http::make_chunk(asio::buffer(*chunk)),
                      [self = this->shared_from_this(), chunk](beast::error_code ec, size_t) {
                        if (ec) return self->endEvents();
                        self->waitForEvents(kEventGap);
                      });
  }

  void waitForEvents(std::chrono::milliseconds after) {
    eventTimer_->expires_after(after);
    eventTimer_->async_wait([self = this->shared_from_this()](beast::error_code ec) {
      if (!ec) self->sendEvents();
    });
  }

  void endEvents() {
    if (!eventsOpen_) return;
    eventsOpen_ = false;
    eventTimer_->cancel();
    log::debug("GET /v1/dashboard/events: the stream ended");
    close();
  }

  enum class AfterWrite { ReadNext, Close, DrainThenClose };

  void replyAndClose(int status, const Error& error, bool drain) {
    log::info("rejecting a request: {} {}", status, error.message());
    auto response = std::make_shared<Response>(static_cast<http::status>(status), 11);
    response->set(http::field::server, "corrald/" CORRAL_VERSION);
    response->set(http::field::content_type, "application/json");
    response->body() = jsonText(api::errorJson(error));
    response->keep_alive(false);
    response->prepare_payload();
    write(response, drain ? AfterWrite::DrainThenClose : AfterWrite::Close);
  }

  void write(std::shared_ptr<Response> response, AfterWrite next) {
    // A client that never reads its answer is dropped on the same deadline as one that never asks.
    stream_.expires_after(timeout_);
    http::async_write(stream_, *response,
                      [self = this->shared_from_this(), response, next](beast::error_code ec, size_t) {
                        if (ec) return self->close();
                        switch (next) {
                          case AfterWrite::ReadNext:
                            return self->readRequest();
                          case AfterWrite::Close:
                            return self->close();
                          case AfterWrite::DrainThenClose:
                            return self->drainThenClose();
                        }
                      });
  }

  // A lingering close: tell the client we are done, then swallow what it still sends until it closes.
  void drainThenClose() {
    beast::error_code ignored;
    stream_.socket().shutdown(Protocol::socket::shutdown_send, ignored);
    drainBuffer_.resize(64 * 1024);
    stream_.expires_after(timeout_);
    discard();
  }

  void discard() {
    stream_.async_read_some(asio::buffer(drainBuffer_),
                            [self = this->shared_from_this()](beast::error_code ec, size_t n) {
                              self->discarded_ += n;
                              if (ec || self->discarded_ > kMaxDiscardBytes) return self->close();
                              self->discard();
                            });
  }

  void close() {
    beast::error_code ignored;
    stream_.socket().shutdown(Protocol::socket::shutdown_both, ignored);
    stream_.close();
  }

  beast::basic_stream<Protocol> stream_;
  Service& service_;
  std::chrono::milliseconds timeout_;
  Door door_;
  std::shared_ptr<ActiveStreams> streams_;
  const PeerToken* peerToken_;  // the server's, which outlives every session
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::vector<char> drainBuffer_;
  size_t discarded_ = 0;
  // The dashboard's event stream (startEvents).
  bool eventsOpen_ = false;
  std::optional<asio::steady_timer> eventTimer_;
  uint64_t sentSequence_ = 0;  // of the last view sent; 0 before the first
  DashboardView sent_;         // the last view sent, what the next patch is computed from
  uint64_t seenRevision_ = 0;
  Clock::time_point lastAsked_{}, lastWrite_{};
  // The flow log stream (startFlowLogs): what it follows, past the last record sent.
  FlowLogFilter flowFilter_;
  bool flowStarted_ = false;
};

}  // namespace

Result<PeerEndpoint> parsePeerEndpoint(std::string_view text, std::string_view field) {
  const std::string name(field);
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon == 0)
    return fail(invalidField(name, "\"{}\" is not ADDRESS:PORT (e.g. 10.0.0.5:7443, [::1]:7443)", text));
  std::string_view address = text.substr(0, colon);
  if (address.starts_with('[') && address.ends_with(']')) address = address.substr(1, address.size() - 2);
  beast::error_code ec;
  asio::ip::make_address(std::string(address), ec);
  if (ec) return fail(invalidField(name, "\"{}\" is not an IP address (a name is not taken)", address));
  const std::string_view portText = text.substr(colon + 1);
  unsigned port = 0;
  auto [end, error] = std::from_chars(portText.data(), portText.data() + portText.size(), port);
  if (portText.empty() || error != std::errc() || end != portText.data() + portText.size() || port > 65535)
    return fail(
        invalidField(name, "\"{}\" is not a TCP port: give 1 to 65535, or 0 for a free one", portText));
  return PeerEndpoint{.address = std::string(address), .port = static_cast<uint16_t>(port)};
}

HttpServer::HttpServer(Service& service, ServerOptions options)
    : service_(service),
      options_(std::move(options)),
      control_(asio::make_strand(io_)),
      acceptor_(control_),
      dashboard_(control_),
      peers_(control_),
      signals_(control_, SIGTERM, SIGINT) {}

Result<std::unique_ptr<HttpServer>> HttpServer::listen(Service& service, ServerOptions options) {
  const std::string path = options.socketPath;
  auto context = [](const Error& e) { return e.wrap("API socket"); };
  if (auto address = socketAddress(path); !address) return fail(context(address.error()));
  if (auto dir = createDirectories(std::filesystem::path(path).parent_path()); !dir)
    return fail(context(dir.error()));
  if (auto stale = removeStaleSocket(path); !stale) return fail(context(stale.error()));

  std::unique_ptr<HttpServer> server(new HttpServer(service, std::move(options)));
  beast::error_code ec;
  Local::endpoint endpoint(path);
  server->acceptor_.open(endpoint.protocol(), ec);
  if (ec) return fail(context(systemError(ec.value(), "socket(AF_UNIX)")));
  server->acceptor_.bind(endpoint, ec);
  if (ec) {
    if (ec == asio::error::address_in_use) {
      return fail(
          context(conflict("another process bound \"{}\" at the same moment: {}", path, ec.message())));
    }
    return fail(context(systemError(ec.value(), fmt::format("bind(\"{}\")", path))));
  }
  struct stat bound {};
  if (::stat(path.c_str(), &bound) == 0) {
    server->socketDevice_ = bound.st_dev;
    server->socketInode_ = bound.st_ino;
  }
  if (auto permissions = setSocketPermissions(path, server->options_.socketGroup); !permissions)
    return fail(context(permissions.error()));
  server->acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(context(systemError(ec.value(), fmt::format("listen(\"{}\")", path))));
  if (server->options_.dashboardPort) {
    // Loopback only: the port is read-only, but what it shows is still for this host's users.
    Tcp::endpoint loopback(asio::ip::address_v4::loopback(), *server->options_.dashboardPort);
    auto portContext = [](const Error& e) { return e.wrap("dashboard port"); };
    server->dashboard_.open(loopback.protocol(), ec);
    if (!ec) server->dashboard_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) server->dashboard_.bind(loopback, ec);
    if (ec == asio::error::address_in_use) {
      return fail(Error(ErrorKind::Conflict,
                        fmt::format("127.0.0.1:{} is in use by another program; choose another --http-port "
                                    "(0 picks a free one)",
                                    *server->options_.dashboardPort),
                        "http-port"));
    }
    if (!ec) server->dashboard_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return fail(portContext(
          systemError(ec.value(), fmt::format("listen on 127.0.0.1:{}", *server->options_.dashboardPort))));
    }
    server->dashboardBound_ = server->dashboard_.local_endpoint(ec).port();
  }
  if (server->options_.peer) {
    const PeerEndpoint& peer = *server->options_.peer;
    auto address = asio::ip::make_address(peer.address, ec);
    if (ec) return fail(invalidField("peer-listen", "\"{}\" is not an IP address", peer.address));
    Tcp::endpoint peerEndpoint(address, peer.port);
    server->peers_.open(peerEndpoint.protocol(), ec);
    if (!ec) server->peers_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) server->peers_.bind(peerEndpoint, ec);
    if (ec == asio::error::address_in_use) {
      return fail(invalidField("peer-listen", "{}:{} is in use by another program", peer.address, peer.port));
    }
    if (ec == boost::system::errc::address_not_available) {
      return fail(invalidField("peer-listen", "{} is not an address of this host", peer.address));
    }
    if (!ec) server->peers_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      return fail(
          systemError(ec.value(), fmt::format("peer port: listen on {}:{}", peer.address, peer.port)));
    }
    server->peerBound_ = server->peers_.local_endpoint(ec).port();
  }
  return server;
}

HttpServer::~HttpServer() {
  removeSocketFile();
}

void HttpServer::removeSocketFile() {
  if (socketInode_ == 0) return;
  struct stat current {};
  if (::lstat(options_.socketPath.c_str(), &current) == 0 && current.st_dev == socketDevice_ &&
      current.st_ino == socketInode_) {
    if (::unlink(options_.socketPath.c_str()) != 0) {
      log::warn("unlink(\"{}\"): {}", options_.socketPath, std::strerror(errno));
    }
  }
  socketInode_ = 0;
}

void HttpServer::accept() {
  acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, Local::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (ec) {
      // EMFILE and friends: keep serving the connections we have and try again.
      log::warn("accept on \"{}\": {}", options_.socketPath, ec.message());
    } else {
      std::make_shared<Session<Local>>(std::move(socket), service_, options_.readTimeout, Door::UnixSocket,
                                       streams_)
          ->start();
    }
    accept();
  });
}

void HttpServer::acceptDashboard() {
  dashboard_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, Tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !dashboard_.is_open()) return;
    if (ec) {
      log::warn("accept on the dashboard port: {}", ec.message());
    } else {
      std::make_shared<Session<Tcp>>(std::move(socket), service_, options_.readTimeout, Door::DashboardPort,
                                     streams_)
          ->start();
    }
    acceptDashboard();
  });
}

void HttpServer::acceptPeers() {
  peers_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, Tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !peers_.is_open()) return;
    if (ec) {
      log::warn("accept on the peer port: {}", ec.message());
    } else {
      std::make_shared<Session<Tcp>>(std::move(socket), service_, options_.readTimeout, Door::PeerPort,
                                     streams_, &options_.peerToken)
          ->start();
    }
    acceptPeers();
  });
}

void HttpServer::shutdown() {
  beast::error_code ignored;
  acceptor_.close(ignored);
  dashboard_.close(ignored);
  peers_.close(ignored);
  signals_.cancel(ignored);
  removeSocketFile();
  // Handlers already running (a request in Service::handle) complete; the rest are abandoned.
  io_.stop();
}

void HttpServer::run() {
  asio::post(control_, [this] {
    signals_.async_wait([this](beast::error_code ec, int signal) {
      if (ec) return;
      log::info("received {}, stopping", signal == SIGTERM ? "SIGTERM" : "SIGINT");
      shutdown();
    });
    accept();
    if (dashboard_.is_open()) acceptDashboard();
    if (peers_.is_open()) acceptPeers();
  });
  std::vector<std::thread> workers;
  for (unsigned i = 1; i < std::max(1u, options_.threads); ++i) workers.emplace_back([this] { io_.run(); });
  io_.run();
  for (auto& worker : workers) worker.join();
  // Pulls, imports and builds still streaming are stopped (each leaves no image) and waited for.
  service_.stopImageOperations();
  {
    std::unique_lock lock(streams_->mutex);
    streams_->idle.wait(lock, [&] { return streams_->count == 0; });
  }
  removeSocketFile();
}

void HttpServer::stop() {
  asio::post(control_, [this] { shutdown(); });
}

}  // namespace corral::daemon
