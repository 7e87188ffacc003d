// A blocking HTTP/1.1 client for corrald's Unix socket (Boost.Beast). Used by the CLI and by tests; and by
// one corrald for another's peer port (TCP, with the cluster's token: docs/cluster.md).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "api/api.h"
#include "core/error.h"

namespace corral::api {

inline constexpr std::string_view kDefaultSocketPath = "/run/corral/corrald.sock";

struct HttpResponse {
  int status = 0;
  std::string body;
};

class Client {
 public:
  explicit Client(std::string socketPath, std::chrono::milliseconds timeout = std::chrono::seconds(30))
      : socketPath_(std::move(socketPath)), timeout_(timeout) {}
  // Another corrald's peer port (corrald --peer-listen): `address` an IP address, each request carrying
  // "Authorization: Bearer TOKEN".
  static Client peer(std::string address, uint16_t port, std::string token,
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

  // One request on a fresh connection. Unavailable (with what to do) when nothing listens on the socket.
  Result<HttpResponse> send(const HttpRequest& request) const;
  // send() plus decoding: a 2xx body as JSON, or the daemon's error turned back into an Error with its
  // kind, message and field.
  Result<nlohmann::json> call(const Request& request) const;
  // For pull, import and build (api/images.h): sends `request`, hands each progress line to `onProgress`
  // as it arrives, and returns the final line's image (or its error). No deadline while the stream flows:
  // these take minutes. Closing the connection (the CLI killed by Ctrl-C) cancels the operation in corrald.
  Result<nlohmann::json> stream(const Request& request,
                                const std::function<void(const ProgressEvent&)>& onProgress) const;

  // For a newline-delimited JSON answer (GET /v1/flow-logs?follow=true): sends `request` and hands each
  // line to `onLine` as it arrives, until corrald ends the stream or `onLine` returns false. An error
  // answer (a bad field) is returned as the Error it carries. No deadline while the stream flows.
  Status follow(const Request& request, const std::function<bool(const nlohmann::json&)>& onLine) const;

  // The socket's path, or "ADDRESS:PORT" of a peer port: what errors name.
  const std::string& socketPath() const { return socketPath_; }

 private:
  struct PeerPort {
    std::string address;
    uint16_t port = 0;
    std::string token;
  };
  std::string socketPath_;
  std::chrono::milliseconds timeout_;
  std::optional<PeerPort> peer_;
};

}  // namespace corral::api
