// Instance metadata: the answers (pure) and the listeners in the VPC namespaces (asio + beast).

// GCC 12 at -O2 reports a "potential null pointer dereference" inside Asio's scheduler once it inlines it
// here (as in daemon/http_server.cc); it must precede every Asio include.
#pragma GCC diagnostic ignored "-Wnull-dereference"
#include "daemon/instance_metadata.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <netinet/in.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <charconv>
#include <future>

#include "api/api.h"
#include "core/log.h"
#include "core/unique_fd.h"
#include "net/netlink.h"
#include "net/netns.h"
#include "schema/instance.h"

namespace corral::daemon {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

constexpr auto kRequestTimeout = std::chrono::seconds(5);
constexpr size_t kMaxRequestBytes = 8 * 1024;

std::string randomToken() {
  unsigned char bytes[32];
  size_t got = 0;
  while (got < sizeof bytes) {
    ssize_t n = ::getrandom(bytes + got, sizeof bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    got += static_cast<size_t>(n);
  }
  std::string token;
  for (unsigned char b : bytes) token += fmt::format("{:02x}", b);
  return token;
}

}  // namespace

Result<std::string> decodeUserData(const std::string& base64) {
  auto decoded = api::base64Decode(base64, "user_data");
  if (!decoded) return fail(decoded.error());
  if (decoded->size() > schema::kMaxUserDataBytes)
    return fail(invalidField("user_data", "{} bytes; at most {} (16 KiB, as in AWS) are allowed",
                             decoded->size(), schema::kMaxUserDataBytes));
  return decoded;
}

std::string MetadataTokens::issue(const std::string& vpc, const std::string& source, std::chrono::seconds ttl,
                                  Clock::time_point now) {
  std::lock_guard lock(mutex_);
  for (auto it = grants_.begin(); it != grants_.end();) {
    it = it->second.expires <= now ? grants_.erase(it) : std::next(it);
  }
  std::string token = randomToken();
  grants_.insert_or_assign(token, Grant{.vpc = vpc, .source = source, .expires = now + ttl});
  return token;
}

bool MetadataTokens::valid(const std::string& token, const std::string& vpc, const std::string& source,
                           Clock::time_point now) {
  std::lock_guard lock(mutex_);
  auto it = grants_.find(token);
  return it != grants_.end() && it->second.expires > now && it->second.vpc == vpc &&
         it->second.source == source;
}

MetadataResponse answerMetadata(const MetadataRequest& request, const std::string& vpc,
                                const std::string& source, MetadataTokens& tokens,
                                const MetadataLookup& lookup, MetadataTokens::Clock::time_point now) {
  if (request.target == "/latest/api/token") {
    if (request.method != "PUT") return {405, "the token is asked for with PUT\n"};
    int64_t ttl = 0;
    const std::string text = request.tokenTtl.value_or("");
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ttl);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || ttl < 1 ||
        ttl > kMaxMetadataTokenTtlSeconds)
      return {400, fmt::format("X-aws-ec2-metadata-token-ttl-seconds must be 1-{}\n",
                               kMaxMetadataTokenTtlSeconds)};
    if (!lookup(vpc, source)) return {403, "no instance has this address\n"};
    return {200, tokens.issue(vpc, source, std::chrono::seconds(ttl), now)};
  }
  if (request.method != "GET") return {405, "metadata is read with GET\n"};
  if (!request.token || !tokens.valid(*request.token, vpc, source, now))
    return {401, "a valid X-aws-ec2-metadata-token is required (PUT /latest/api/token first)\n"};
  auto identity = lookup(vpc, source);
  if (!identity) return {404, "no instance has this address\n"};
  const std::string& path = request.target;
  auto found = [](std::string body) { return MetadataResponse{200, std::move(body)}; };
  if (path == "/latest/meta-data" || path == "/latest/meta-data/") {
    std::string listing = "hostname\ninstance-id\nlocal-ipv4\nmac\nplacement/\n";
    if (!identity->publicIpv4.empty()) listing += "public-ipv4\n";
    return found(listing + "security-groups");
  }
  if (path == "/latest/meta-data/instance-id") return found(identity->instanceId);
  if (path == "/latest/meta-data/local-ipv4") return found(identity->localIpv4);
  if (path == "/latest/meta-data/mac") return found(identity->mac);
  if (path == "/latest/meta-data/hostname") return found(identity->hostname);
  if (path == "/latest/meta-data/public-ipv4" && !identity->publicIpv4.empty())
    return found(identity->publicIpv4);
  if (path == "/latest/meta-data/security-groups")
    return found(fmt::format("{}", fmt::join(identity->securityGroups, "\n")));
  if (path == "/latest/meta-data/placement/" || path == "/latest/meta-data/placement")
    return found("availability-zone");
  if (path == "/latest/meta-data/placement/availability-zone") return found(identity->availabilityZone);
  if (path == "/latest/user-data" && !identity->userData.empty()) return found(identity->userData);
  return {404, "not found\n"};
}

// ---- The server ----

struct InstanceMetadataServer::Listener {
  std::string vpc;
  std::string netns;
  tcp::acceptor acceptor;
  Listener(asio::io_context& io, std::string v, std::string n)
      : vpc(std::move(v)), netns(std::move(n)), acceptor(io) {}
};

namespace {

class MetadataSession : public std::enable_shared_from_this<MetadataSession> {
 public:
  MetadataSession(tcp::socket socket, std::string vpc, MetadataTokens& tokens, const MetadataLookup& lookup)
      : stream_(std::move(socket)), vpc_(std::move(vpc)), tokens_(tokens), lookup_(lookup) {}

  void run() {
    beast::error_code ec;
    auto remote = stream_.socket().remote_endpoint(ec);
    if (ec) return;
    source_ = remote.address().to_string();
    parser_.body_limit(kMaxRequestBytes);
    parser_.header_limit(kMaxRequestBytes);
    stream_.expires_after(kRequestTimeout);
    http::async_read(stream_, buffer_, parser_,
                     [self = shared_from_this()](beast::error_code rec, size_t) { self->onRequest(rec); });
  }

 private:
  void onRequest(beast::error_code ec) {
    if (ec) return;
    const auto& request = parser_.get();
    MetadataRequest asked{.method = std::string(request.method_string()),
                          .target = std::string(request.target()),
                          .token = std::nullopt,
                          .tokenTtl = std::nullopt};
    if (auto it = request.find("X-aws-ec2-metadata-token"); it != request.end())
      asked.token = std::string(it->value());
    if (auto it = request.find("X-aws-ec2-metadata-token-ttl-seconds"); it != request.end())
      asked.tokenTtl = std::string(it->value());
    MetadataResponse answer =
        answerMetadata(asked, vpc_, source_, tokens_, lookup_, MetadataTokens::Clock::now());
    response_ = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(answer.status),
                                                                    request.version());
    response_->set(http::field::server, "corrald");
    response_->set(http::field::content_type, "text/plain");
    response_->keep_alive(false);
    response_->body() = std::move(answer.body);
    response_->prepare_payload();
    http::async_write(stream_, *response_, [self = shared_from_this()](beast::error_code, size_t) {
      beast::error_code ignored;
      self->stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    });
  }

  beast::tcp_stream stream_;
  std::string vpc_;
  std::string source_;
  MetadataTokens& tokens_;
  const MetadataLookup& lookup_;
  beast::flat_buffer buffer_;
  http::request_parser<http::string_body> parser_;
  std::shared_ptr<http::response<http::string_body>> response_;
};

// 169.254.169.254/32 on the namespace's lo, and a listening socket there with TTL 1 (inherited by every
// accepted connection, so its SYN-ACK too).
Result<UniqueFd> listenIn(const std::string& netns) {
  auto netlink = net::Netlink::open(netns);
  if (!netlink) return fail(netlink.error());
  auto lo = netlink->link("lo");
  if (!lo) return fail(lo.error());
  const std::string address = fmt::format("{}/32", kMetadataAddress);
  if (!*lo) return fail(internalError("netns \"{}\" has no lo", netns));
  const auto& addresses = (*lo)->addresses;
  if (std::find(addresses.begin(), addresses.end(), address) == addresses.end()) {
    if (auto added = netlink->addAddress("lo", address); !added) return fail(added.error());
  }
  return net::runInNetns(netns, [&]() -> Result<UniqueFd> {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd) return fail(systemError(errno, "socket(AF_INET, SOCK_STREAM)"));
    int one = 1;
    int ttl = 1;
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
      return fail(systemError(errno, "setsockopt(SO_REUSEADDR)"));
    if (::setsockopt(fd.get(), IPPROTO_IP, IP_TTL, &ttl, sizeof ttl) != 0)
      return fail(systemError(errno, "setsockopt(IP_TTL, 1)"));
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_port = htons(kMetadataPort);
    ::inet_pton(AF_INET, kMetadataAddress, &sin.sin_addr);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0)
      return fail(systemError(errno, fmt::format("bind({}:{})", kMetadataAddress, kMetadataPort)));
    if (::listen(fd.get(), 64) != 0) return fail(systemError(errno, "listen()"));
    return fd;
  });
}

}  // namespace

Result<std::unique_ptr<InstanceMetadataServer>> InstanceMetadataServer::open(MetadataLookup lookup) {
  std::unique_ptr<InstanceMetadataServer> server(new InstanceMetadataServer(std::move(lookup)));
  // The io_context's reactor (an epoll fd, its interrupter and timer fds) is made by the first socket
  // object: made now, so the descriptors corrald holds stay flat as VPCs come and go.
  { tcp::acceptor reactorNow(server->io_); }
  try {
    server->thread_ = std::thread([raw = server.get()] {
      auto work = asio::make_work_guard(raw->io_);
      raw->io_.run();
    });
  } catch (const std::system_error& e) {
    return fail(internalError("starting the instance metadata thread: {}", e.what()));
  }
  return server;
}

InstanceMetadataServer::InstanceMetadataServer(MetadataLookup lookup) : lookup_(std::move(lookup)) {}

InstanceMetadataServer::~InstanceMetadataServer() {
  io_.stop();
  if (thread_.joinable()) thread_.join();
}

Status InstanceMetadataServer::listen(const std::string& vpc, const std::string& netns) {
  std::lock_guard lock(mutex_);
  if (auto it = listeners_.find(vpc); it != listeners_.end() && it->second->netns == netns) return {};
  auto fd = listenIn(netns);
  if (!fd) return fail(fd.error().wrap(fmt::format("instance metadata in netns \"{}\"", netns)));
  auto listener = std::make_shared<Listener>(io_, vpc, netns);
  beast::error_code ec;
  listener->acceptor.assign(tcp::v4(), fd->release(), ec);
  if (ec) return fail(internalError("instance metadata: adopting the listening socket: {}", ec.message()));
  listeners_.insert_or_assign(vpc, listener);
  asio::post(io_, [this, listener] { accept(listener); });
  return {};
}

void InstanceMetadataServer::close(const std::string& vpc) {
  std::shared_ptr<Listener> listener;
  {
    std::lock_guard lock(mutex_);
    auto it = listeners_.find(vpc);
    if (it == listeners_.end()) return;
    listener = it->second;
    listeners_.erase(it);
  }
  // Closed on the io thread, and waited for: the socket keeps its namespace alive until it is closed.
  auto closed = std::make_shared<std::promise<void>>();
  auto done = closed->get_future();
  asio::post(io_, [listener, closed] {
    beast::error_code ignored;
    listener->acceptor.close(ignored);
    closed->set_value();
  });
  // Bounded: a session on the io thread may be waiting for a lock our caller holds.
  done.wait_for(std::chrono::seconds(2));
}

void InstanceMetadataServer::accept(const std::shared_ptr<Listener>& listener) {
  listener->acceptor.async_accept([this, listener](beast::error_code ec, tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !listener->acceptor.is_open()) return;
    if (!ec) std::make_shared<MetadataSession>(std::move(socket), listener->vpc, tokens_, lookup_)->run();
    accept(listener);
  });
}

}  // namespace corral::daemon
