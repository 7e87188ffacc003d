// corrald's HTTP/1.1 front end on a Unix socket (Boost.Beast/Asio): owns the listening socket file, the
// connections and their timeouts, and turns each request into api::Request → Service::handle → JSON;
// also serves the dashboard page, there and on an optional read-only loopback TCP port.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/strand.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "daemon/service.h"

namespace corral::daemon {

// Where the peer API listens: an IPv4 or IPv6 address (no name) and a port.
struct PeerEndpoint {
  std::string address;
  uint16_t port = 0;
};
// "10.0.0.5:7443", "[::1]:7443": an InvalidArgument naming `field` otherwise.
Result<PeerEndpoint> parsePeerEndpoint(std::string_view text, std::string_view field);

struct ServerOptions {
  std::string socketPath;
  // The socket's group (socketGroupId()); nullopt leaves it with the daemon's group.
  std::optional<gid_t> socketGroup;
  // A connection that has not delivered a complete request (or taken its response) within this long is
  // dropped, so a silent client holds nothing but its own socket.
  std::chrono::milliseconds readTimeout{10'000};
  unsigned threads = 4;
  // Also serve the dashboard (read-only, daemon/web.h) on 127.0.0.1:PORT; 0 picks a free port.
  std::optional<uint16_t> dashboardPort;
  // Also serve the whole API to the cluster's other corralds on ADDRESS:PORT (TCP; port 0 picks a free one),
  // for the requests they forward (docs/cluster.md). Every request there must carry
  // "Authorization: Bearer TOKEN" with the token `peerToken` returns at that moment; nullopt (this host is
  // in no cluster) refuses them all.
  std::optional<PeerEndpoint> peer;
  std::function<std::optional<std::string>()> peerToken;
};

// The socket's group for corrald's --socket-group: the named group, which must exist (else an error naming
// the field); without a name, "corral" when that group exists (the Debian package creates it), else nullopt.
Result<std::optional<gid_t>> socketGroupId(const std::string& name);

// The progress streams (pull, import, build) being written, each from a thread of its own: run() waits for
// them after the I/O threads stop, so none outlives the sockets' io_context.
struct ActiveStreams {
  std::mutex mutex;
  std::condition_variable idle;
  int count = 0;
};

class HttpServer {
 public:
  // Prepares the socket file and starts listening: creates the parent directory (0755), removes a stale
  // socket nobody answers on, refuses (Conflict) if another daemon is listening, binds, chmods 0660 and
  // gives it to options.socketGroup. Requests are served only once run() is called.
  static Result<std::unique_ptr<HttpServer>> listen(Service& service, ServerOptions options);

  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  // Removes the socket file if it is still the one this server bound.
  ~HttpServer();

  // Serves on `options.threads` threads until SIGTERM or SIGINT arrives or stop() is called; then stops
  // accepting and removes the socket file. Requests already being handled finish first.
  void run();
  // Thread-safe; makes run() return.
  void stop();

  const std::string& socketPath() const { return options_.socketPath; }
  // The dashboard's loopback port as bound (the chosen one when asked for 0), or nullopt without one.
  std::optional<uint16_t> dashboardPort() const { return dashboardBound_; }
  // The peer API's port as bound, or nullopt without one.
  std::optional<uint16_t> peerPort() const { return peerBound_; }

 private:
  HttpServer(Service& service, ServerOptions options);
  void accept();
  void acceptDashboard();
  void acceptPeers();
  void shutdown();
  void removeSocketFile();

  Service& service_;
  ServerOptions options_;
  boost::asio::io_context io_;
  std::shared_ptr<ActiveStreams> streams_ = std::make_shared<ActiveStreams>();
  // The acceptor and the signal set are touched only on this strand, so a signal arriving on one worker
  // thread cannot race the accept loop on another.
  boost::asio::strand<boost::asio::io_context::executor_type> control_;
  boost::asio::local::stream_protocol::acceptor acceptor_;
  boost::asio::ip::tcp::acceptor dashboard_;
  std::optional<uint16_t> dashboardBound_;
  boost::asio::ip::tcp::acceptor peers_;
  std::optional<uint16_t> peerBound_;
  boost::asio::signal_set signals_;
  // Identity of the socket file we bound, so we never unlink a file another process put there since.
  dev_t socketDevice_ = 0;
  ino_t socketInode_ = 0;
};

}  // namespace corral::daemon
