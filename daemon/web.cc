#include "daemon/web.h"

#include <array>
#include <cctype>
#include <string>

namespace corral::daemon {
namespace {

std::string_view pathOf(std::string_view target) {
  return target.substr(0, target.find('?'));
}

// "localhost", "127.0.0.1" (any 127.x.y.z) or "[::1]", with or without ":PORT", in any letter case (host
// names are case-insensitive, RFC 3986 3.2.2).
bool isLoopbackHost(std::string_view original) {
  std::string lower(original);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view host = lower;
  if (host.starts_with("[::1]")) {
    std::string_view rest = host.substr(5);
    return rest.empty() || (rest.front() == ':' && rest.size() > 1 &&
                            rest.substr(1).find_first_not_of("0123456789") == std::string_view::npos);
  }
  std::string_view name = host.substr(0, host.find(':'));
  if (size_t colon = host.find(':'); colon != std::string_view::npos) {
    std::string_view port = host.substr(colon + 1);
    if (port.empty() || port.find_first_not_of("0123456789") != std::string_view::npos) return false;
  }
  if (name == "localhost") return true;
  if (!name.starts_with("127.")) return false;
  int dots = 0;
  for (char c : name) {
    if (c == '.') {
      ++dots;
    } else if (c < '0' || c > '9') {
      return false;
    }
  }
  return dots == 3;
}

}  // namespace

std::optional<StaticPage> staticPage(std::string_view method, std::string_view target) {
  if (method != "GET" && method != "HEAD") return std::nullopt;
  std::string_view path = pathOf(target);
  if (path == "/" || path == "/dashboard" || path == "/index.html") {
    return StaticPage{"text/html; charset=utf-8", dashboardPage()};
  }
  return std::nullopt;
}

bool isDashboardEvents(std::string_view method, std::string_view target) {
  return method == "GET" && pathOf(target) == "/v1/dashboard/events";
}

std::optional<Error> refuseRepeatedHost(size_t hostHeaders) {
  if (hostHeaders <= 1) return std::nullopt;
  return Error(ErrorKind::InvalidArgument,
               fmt::format("the request has {} Host headers; HTTP/1.1 allows exactly one", hostHeaders),
               "host");
}

std::optional<Error> refuseOnDashboardPort(std::string_view method, std::string_view target,
                                           std::span<const std::string_view> hosts) {
  if (hosts.empty()) {
    return Error(ErrorKind::InvalidArgument, "the request has no Host header; HTTP/1.1 requires one", "host");
  }
  if (auto repeated = refuseRepeatedHost(hosts.size())) return repeated;
  if (!isLoopbackHost(hosts.front())) {
    return Error(ErrorKind::Forbidden,
                 fmt::format("the dashboard port answers only requests for localhost, 127.0.0.1 or [::1]; "
                             "Host \"{}\" is not one of them",
                             hosts.front()),
                 "host");
  }
  if (staticPage(method, target)) return std::nullopt;
  std::string_view path = pathOf(target);
  if ((path == "/v1/dashboard" && method == "GET") || isDashboardEvents(method, target)) return std::nullopt;
  // The flow log panel reads them (and follows them) too.
  if (path == "/v1/flow-logs" && method == "GET") return std::nullopt;
  return forbidden(
      "the dashboard port is read-only and answers GET /, /v1/dashboard, /v1/dashboard/events and "
      "/v1/flow-logs only, not "
      "{} {}; the whole API is on corrald's Unix socket",
      method, path);
}

}  // namespace corral::daemon
