// The web side of corrald's HTTP front end, apart from the API: the dashboard page it serves, and what the
// optional loopback TCP port (corrald --http-port) may answer. Pure, so it is tested without sockets.
#pragma once

#include <optional>
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

// The loopback TCP port is for a browser on this host, and read-only: anyone on the host can connect to
// it, while the Unix socket is limited to root and group "corral". It answers the page, GET /v1/dashboard
// and GET /v1/comparisons[/ID] only, and only to a request whose Host header names the loopback (so a web
// page elsewhere cannot reach it through a DNS name rebound to 127.0.0.1). The refusal, or nullopt.
std::optional<Error> refuseOnDashboardPort(std::string_view method, std::string_view target,
                                           std::string_view host);

// Headers every page answer carries: no caching, no framing, no outside resources.
inline constexpr std::string_view kPageSecurityPolicy =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

}  // namespace corral::daemon
