#include "daemon/web.h"

#include <array>
#include <string>

namespace corral::daemon {
namespace {

std::string_view pathOf(std::string_view target) {
  return target.substr(0, target.find('?'));
}

// "localhost", "127.0.0.1" (any 127.x.y.z) or "[::1]", with or without ":PORT".
bool isLoopbackHost(std::string_view host) {
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

std::optional<Error> refuseOnDashboardPort(std::string_view method, std::string_view target,
                                           std::string_view host) {
  if (!isLoopbackHost(host)) {
    return Error(ErrorKind::Forbidden,
                 fmt::format("the dashboard port answers only requests for localhost, 127.0.0.1 or [::1]; "
                             "Host \"{}\" is not one of them",
                             host),
                 "host");
  }
  if (staticPage(method, target)) return std::nullopt;
  std::string_view path = pathOf(target);
  bool readable =
      path == "/v1/dashboard" || path == "/v1/comparisons" || path.starts_with("/v1/comparisons/");
  if (readable && method == "GET") return std::nullopt;
  return forbidden(
      "the dashboard port is read-only and answers GET /, /v1/dashboard and "
      "/v1/comparisons only, not {} {}; the whole API is on corrald's Unix socket",
      method, path);
}

}  // namespace corral::daemon
