// The web side of corrald's HTTP front end, apart from the API: the dashboard page it serves, and what the
// optional loopback TCP port (corrald --http-port) may answer. Pure, so it is tested without sockets.
#pragma once

#include <optional>
#include <span>
#include <string_view>

#include "core/error.h"

namespace corral::daemon {

// The dashboard: one self-contained HTML page (styles and script inline, no outside resource), built into
// the binary from daemon/dashboard/index.html.
std::string_view dashboardPage();

struct StaticPage {
  std::string_view contentType;
  std::string_view body;
};

// The page for GET (or HEAD) of "/", "/dashboard" or "/index.html" (any query); nullopt for anything else,
// which is then an API request.
std::optional<StaticPage> staticPage(std::string_view method, std::string_view target);

// GET /v1/dashboard/events (any query): the dashboard's view pushed as server-sent events (docs/api.md),
// served by daemon/http_server.cc on either way in.
bool isDashboardEvents(std::string_view method, std::string_view target);
inline constexpr std::string_view kEventStreamContentType = "text/event-stream";

// The loopback TCP port is for a browser on this host, and read-only: anyone on the host can connect to
// it, while the Unix socket is limited to root and group "corral". It answers the page, GET /v1/dashboard,
// its event stream and GET /v1/flow-logs only (what the page draws, daemon/instance_view.h), and only to a
// request with exactly one Host header that names the loopback, in any letter case and with any port (so a
// web page elsewhere cannot reach it through a DNS name rebound to 127.0.0.1). `hosts` are the request's Host
// header values. The refusal (403, or 400 for a missing or repeated Host), or nullopt.
std::optional<Error> refuseOnDashboardPort(std::string_view method, std::string_view target,
                                           std::span<const std::string_view> hosts);
inline std::optional<Error> refuseOnDashboardPort(std::string_view method, std::string_view target,
                                                  std::string_view host) {
  return refuseOnDashboardPort(method, target, std::span<const std::string_view>(&host, 1));
}

// HTTP/1.1 (RFC 9112 3.2) requires a 400 for a request with more than one Host header, on either way in;
// which one a check read would otherwise depend on the reader. The refusal, or nullopt.
std::optional<Error> refuseRepeatedHost(size_t hostHeaders);

// Headers every page answer carries: no caching, no framing, no outside resources.
inline constexpr std::string_view kPageSecurityPolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

}  // namespace corral::daemon
