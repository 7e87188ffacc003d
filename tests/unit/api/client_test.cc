// api::Client against a scripted one-shot server on a Unix socket in a temporary directory: what goes on the
// wire, how answers and errors come back, and the advice when nothing listens.
#include "api/client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

#include "core/unique_fd.h"

namespace corral::api {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/corral-client-test-XXXXXX";
    const char* made = ::mkdtemp(pattern);
    path_ = made ? made : "";
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

UniqueFd boundSocket(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0)
      << std::strerror(errno);
  return fd;
}

// Accepts one connection, records the raw request, answers with `response` (or nothing, when empty, and
// holds the connection open until stopped).
class OneShotServer {
 public:
  OneShotServer(const std::string& path, std::string response)
      : listener_(boundSocket(path)), response_(std::move(response)) {
    EXPECT_EQ(::listen(listener_.get(), 1), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~OneShotServer() {
    // Wakes a still-blocked accept(); a served connection ends when the client closes its side.
    ::shutdown(listener_.get(), SHUT_RDWR);
    thread_.join();
  }
  // Valid once the client's call has returned.
  const std::string& request() const { return request_; }

 private:
  void serve() {
    connection_ = UniqueFd(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!connection_.valid()) return;
    char buffer[4096];
    // Read the head, then as many body bytes as Content-Length says.
    while (true) {
      size_t headEnd = request_.find("\r\n\r\n");
      if (headEnd != std::string::npos) {
        size_t length = 0;
        if (size_t at = request_.find("Content-Length: "); at != std::string::npos) {
          length = std::stoul(request_.substr(at + 16));
        }
        if (request_.size() >= headEnd + 4 + length) break;
      }
      ssize_t n = ::read(connection_.get(), buffer, sizeof(buffer));
      if (n <= 0) return;
      request_.append(buffer, static_cast<size_t>(n));
    }
    if (response_.empty()) {
      // Stay silent until the test ends: the client must give up on its own.
      while (::read(connection_.get(), buffer, sizeof(buffer)) > 0) {
      }
      return;
    }
    EXPECT_EQ(::write(connection_.get(), response_.data(), response_.size()),
              static_cast<ssize_t>(response_.size()));
  }

  UniqueFd listener_;
  UniqueFd connection_;
  std::string response_;
  std::string request_;
  std::thread thread_;
};

std::string httpResponse(int status, std::string_view reason, std::string_view body) {
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
      status, reason, body.size(), body);
}

TEST(Client, MissingSocketSaysHowToStartTheDaemon) {
  TempDir dir;
  std::string path = dir.path() + "/corrald.sock";
  Result<json> r = Client(path).call(List<schema::ObjectKind::Vpc>{});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::Unavailable);
  EXPECT_THAT(r.error().message(), HasSubstr("corrald is not running (no socket at " + path + ")"));
  EXPECT_THAT(r.error().message(), HasSubstr("corrald --foreground --socket " + path));
}

TEST(Client, DefaultSocketAdviceHasNoSocketFlag) {
  Client client{std::string(kDefaultSocketPath)};
  if (std::filesystem::exists(kDefaultSocketPath))
    GTEST_SKIP() << "a corrald is running on the default socket";
  Result<HttpResponse> r = client.send({"GET", "/v1/info", ""});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(
      r.error().message(),
      "corrald is not running (no socket at /run/corral/corrald.sock); start it with: corrald --foreground");
}

TEST(Client, SocketWithoutListenerIsRefused) {
  TempDir dir;
  std::string path = dir.path() + "/stale.sock";
  UniqueFd bound = boundSocket(path);  // bound, never listening: connect() gets ECONNREFUSED
  Result<HttpResponse> r = Client(path).send({"GET", "/v1/info", ""});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::Unavailable);
  EXPECT_THAT(r.error().message(), HasSubstr("corrald is not running (nothing listens on " + path + ")"));
}

TEST(Client, SendsTheRenderedRequestAndParsesTheAnswer) {
  TempDir dir;
  std::string path = dir.path() + "/corrald.sock";
  OneShotServer server(path, httpResponse(201, "Created", R"({"name":"prod","cidr":"10.0.0.0/16"})"));
  Result<json> r = Client(path).call(Create<schema::VpcSpec>{{"prod", "10.0.0.0/16"}});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_EQ((*r)["cidr"], "10.0.0.0/16");
  EXPECT_THAT(server.request(), HasSubstr("POST /v1/vpcs HTTP/1.1\r\n"));
  EXPECT_THAT(server.request(), HasSubstr("Host: corrald\r\n"));
  EXPECT_THAT(server.request(), HasSubstr("Content-Type: application/json\r\n"));
  EXPECT_THAT(server.request(), HasSubstr(R"({"cidr":"10.0.0.0/16","name":"prod"})"));
}

TEST(Client, EmptySuccessBodyIsNull) {
  TempDir dir;
  std::string path = dir.path() + "/corrald.sock";
  OneShotServer server(path, "HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n");
  Result<json> r = Client(path).call(Delete<schema::ObjectKind::Vpc>{"prod"});
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(r->is_null());
  EXPECT_THAT(server.request(), HasSubstr("DELETE /v1/vpcs/prod HTTP/1.1\r\n"));
}

TEST(Client, ErrorBodyBecomesTheSameError) {
  TempDir dir;
  std::string path = dir.path() + "/corrald.sock";
  std::string body = errorJson(invalidField("from_port", "port 70000 is out of range 0-65535")).dump();
  OneShotServer server(path, httpResponse(400, "Bad Request", body));
  Result<json> r = Client(path).call(DeleteSecurityGroupRule{"sg", 1});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(r.error().message(), "port 70000 is out of range 0-65535");
  EXPECT_EQ(r.error().field(), "from_port");
}

TEST(Client, ErrorWithoutErrorBodyKeepsTheStatusKind) {
  TempDir dir;
  std::string path = dir.path() + "/corrald.sock";
  OneShotServer server(path, httpResponse(409, "Conflict", "busy"));
  Result<json> r = Client(path).call(GetInfo{});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::Conflict);
  EXPECT_THAT(r.error().message(), HasSubstr("HTTP 409"));
  EXPECT_THAT(r.error().message(), HasSubstr("busy"));
}

TEST(Client, SilentDaemonTimesOut) {
  TempDir dir;
  std::string path = dir.path() + "/corrald.sock";
  OneShotServer server(path, "");
  Result<json> r = Client(path, std::chrono::milliseconds(200)).call(GetInfo{});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().kind(), ErrorKind::Unavailable);
  EXPECT_THAT(r.error().message(), HasSubstr("did not answer GET /v1/info within 200 ms"));
}

}  // namespace
}  // namespace corral::api
