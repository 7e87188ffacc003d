// libFuzzer target: a request as it arrives on corrald's sockets. Raw bytes go through the HTTP/1.1 parser
// with the server's limits (Boost.Beast, as daemon/http_server.cc reads them), then through what corrald
// decides before any handler runs: the Host checks of each door (daemon/web.h), the static page, and the
// API decoding (api::parseRequest). Beyond the sanitizers: the dashboard port lets through only the page
// and GET /v1/dashboard, whatever the bytes.
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "api/api.h"
#include "daemon/web.h"
#include "tests/fuzz/fuzz_check.h"

using namespace corral;
namespace http = boost::beast::http;

namespace {

constexpr size_t kMaxHeaderBytes = 16 * 1024;  // daemon/http_server.cc

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(kMaxHeaderBytes);
  parser.body_limit(api::kMaxBodyBytes);
  parser.eager(true);
  boost::beast::error_code ec;
  size_t at = 0;
  while (at < size && !parser.is_done()) {
    size_t used = parser.put(boost::asio::buffer(data + at, size - at), ec);
    if (ec == http::error::need_more) break;
    if (ec) return 0;
    at += used;
    if (used == 0) break;
  }
  if (!parser.is_done()) return 0;

  http::request<http::string_body> request = parser.release();
  std::string method(request.method_string());
  std::string target(request.target());
  std::vector<std::string_view> hosts;
  for (auto range = request.equal_range(http::field::host); range.first != range.second; ++range.first)
    hosts.emplace_back(range.first->value().data(), range.first->value().size());

  // The Unix socket: the page, or the API.
  if (!daemon::refuseRepeatedHost(hosts.size()) && !daemon::staticPage(method, target)) {
    auto parsed = api::parseRequest(method, target, request.body());
    if (!parsed) FUZZ_REQUIRE(parsed.error().kind() != ErrorKind::Internal, parsed.error().message());
  }

  // The loopback TCP port: read-only.
  if (!daemon::refuseOnDashboardPort(method, target, hosts)) {
    if (daemon::staticPage(method, target)) return 0;
    auto parsed = api::parseRequest(method, target, request.body());
    FUZZ_REQUIRE(!parsed || std::holds_alternative<api::GetDashboard>(*parsed),
                 "the dashboard port let through " + method + " " + target);
  }
  return 0;
}
