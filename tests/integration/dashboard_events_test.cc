// The dashboard's event stream (GET /v1/dashboard/events) against a real corrald, read by a plain HTTP
// client over the loopback port and the Unix socket: the view arrives at once and again on a change, open
// streams hold up no other request, and a client that goes away frees its connection at once.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::TestDaemon;

// One open GET /v1/dashboard/events: reads the answer's header, then de-chunks the body and hands out its
// "dashboard" events one by one.
class EventStream {
 public:
  static std::unique_ptr<EventStream> overTcp(uint16_t port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return open(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  }
  static std::unique_ptr<EventStream> overUnix(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof address.sun_path - 1);
    return open(fd, reinterpret_cast<sockaddr*>(&address), sizeof address);
  }
  ~EventStream() { ::close(fd_); }

  const std::string& header() const { return header_; }
  // The last view until() passed over (for a failure's message).
  const json& last() const { return last_; }

  // The next "dashboard" event's data within `timeout`; nullopt when none came (or the stream ended).
  std::optional<json> next(std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (true) {
      if (auto event = takeEvent()) return event;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || !readSome(left)) return std::nullopt;
    }
  }
  // The next event whose view satisfies `wanted`, within `timeout`.
  std::optional<json> until(const std::function<bool(const json&)>& wanted,
                            std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      auto event = next(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
      if (!event) return std::nullopt;
      if (wanted(*event)) return event;
      last_ = *event;
    }
    return std::nullopt;
  }

 private:
  explicit EventStream(int fd) : fd_(fd) {}

  static std::unique_ptr<EventStream> open(int fd, const sockaddr* address, socklen_t length) {
    if (fd < 0) return nullptr;
    std::unique_ptr<EventStream> stream(new EventStream(fd));
    if (::connect(fd, address, length) != 0) return nullptr;
    const std::string request = "GET /v1/dashboard/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (::write(fd, request.data(), request.size()) != static_cast<ssize_t>(request.size())) return nullptr;
    const auto deadline = Clock::now() + 5s;
    while (stream->raw_.find("\r\n\r\n") == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0 || !stream->readSome(left)) return nullptr;
    }
    size_t end = stream->raw_.find("\r\n\r\n");
    stream->header_ = stream->raw_.substr(0, end + 2);
    stream->raw_.erase(0, end + 4);
    return stream;
  }

  bool readSome(std::chrono::milliseconds timeout) {
    pollfd ready{.fd = fd_, .events = POLLIN, .revents = 0};
    if (::poll(&ready, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char buffer[65536];
    ssize_t n = ::read(fd_, buffer, sizeof buffer);
    if (n <= 0) return false;
    raw_.append(buffer, static_cast<size_t>(n));
    return true;
  }

  // Moves whole chunks from raw_ to body_, then takes the first whole event off body_.
  std::optional<json> takeEvent() {
    while (true) {
      size_t line = raw_.find("\r\n");
      if (line == std::string::npos) break;
      size_t size = std::stoul(raw_.substr(0, line), nullptr, 16);
      if (raw_.size() < line + 2 + size + 2) break;
      body_ += raw_.substr(line + 2, size);
      raw_.erase(0, line + 2 + size + 2);
    }
    while (true) {
      size_t end = body_.find("\n\n");
      if (end == std::string::npos) return std::nullopt;
      std::string event = body_.substr(0, end + 1);
      body_.erase(0, end + 2);
      const bool whole = event.find("event: dashboard\n") != std::string::npos;
      const bool patch = event.find("event: dashboard-patch\n") != std::string::npos;
      size_t data = event.find("data: ");
      if ((!whole && !patch) || data == std::string::npos) continue;  // a comment line
      json sent = json::parse(event.substr(data + 6, event.find('\n', data) - data - 6));
      if (whole) {
        view_ = std::move(sent);
      } else {
        // As the page does: the parts that changed, the VPCs drawn again, the others as they were.
        EXPECT_FALSE(view_.is_null()) << "a patch before the whole view";
        patches_.push_back(sent);
        for (const auto& [key, value] : sent["parts"].items()) view_[key] = value;
        std::map<std::string, json> byName;
        for (const json& entry : view_["vpcs"]) byName[entry["vpc"]["name"]] = entry;
        for (const json& entry : sent["vpcs"]) byName[entry["vpc"]["name"]] = entry;
        json vpcs = json::array();
        for (const json& name : sent["vpc_order"]) vpcs.push_back(byName[name.get<std::string>()]);
        view_["vpcs"] = std::move(vpcs);
      }
      return view_;
    }
  }

 public:
  // The patches received so far (each "dashboard-patch" event's data).
  const std::vector<json>& patches() const { return patches_; }

 private:

  int fd_;
  std::string raw_, body_, header_;
  json last_;
  json view_;  // the whole view, patched as events come
  std::vector<json> patches_;
};

size_t openFds(pid_t pid) {
  size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(fmt::format("/proc/{}/fd", pid))) {
    (void)entry;
    ++count;
  }
  return count;
}

// The count once it settled at `expected` (a request's connection may still be closing), within 3 s.
size_t fdsSettledAt(pid_t pid, size_t expected) {
  const auto deadline = Clock::now() + 3s;
  while (openFds(pid) != expected && Clock::now() < deadline) std::this_thread::sleep_for(50ms);
  return openFds(pid);
}

bool hasVpc(const json& view, const std::string& name) {
  for (const json& vpc : view["vpcs"])
    if (vpc["vpc"]["name"] == name) return true;
  return false;
}

std::string stateIn(const json& view, const std::string& instance) {
  for (const json& shown : view["instances"])
    if (shown["name"] == instance) return shown["state"];
  return "";
}

class DashboardEvents : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::requireRoot()) GTEST_SKIP() << "needs root";
    ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
    testing::Reply info = daemon_.call("GET", "/v1/info");
    ASSERT_EQ(info.status, 200);
    std::smatch match;
    const std::string url = info.body["dashboard"]["url"];
    ASSERT_TRUE(std::regex_match(url, match, std::regex("http://127\\.0\\.0\\.1:(\\d+)/"))) << url;
    port_ = static_cast<uint16_t>(std::stoi(match[1]));
  }

  TestDaemon daemon_{"events", {"--http-port", "0"}};
  uint16_t port_ = 0;
};

TEST_F(DashboardEvents, TheViewArrivesAtOnceAndAgainOnEachChangeOnBothWaysIn) {
  auto port = EventStream::overTcp(port_);
  auto socket = EventStream::overUnix(daemon_.socket());
  ASSERT_TRUE(port && socket);
  for (EventStream* stream : {port.get(), socket.get()}) {
    EXPECT_NE(stream->header().find("HTTP/1.1 200 OK"), std::string::npos) << stream->header();
    EXPECT_NE(stream->header().find("Content-Type: text/event-stream"), std::string::npos)
        << stream->header();
    auto first = stream->next(3s);
    ASSERT_TRUE(first);
    EXPECT_TRUE((*first)["vpcs"].empty());
    EXPECT_TRUE((*first)["instances"].empty());
    EXPECT_FALSE((*first)["host"]["kernel"].get<std::string>().empty());
  }

  // A topology change is pushed to both, without asking.
  daemon_.must("POST", "/v1/vpcs", {{"name", "shop"}, {"cidr", "10.0.0.0/16"}});
  daemon_.must("POST", "/v1/subnets", {{"name", "front"}, {"vpc", "shop"}, {"cidr", "10.0.1.0/24"}});
  for (EventStream* stream : {port.get(), socket.get()}) {
    auto shown = stream->until(
        [](const json& view) { return hasVpc(view, "shop") && !view["vpcs"][0]["subnets"].empty(); }, 3s);
    ASSERT_TRUE(shown) << "no event showing vpc shop; " << daemon_.logTail();
  }

  // An instance's start and stop likewise, in the narrow view (no spec, env or pid).
  daemon_.must("POST", "/v1/instances",
               {{"name", "web-1"}, {"subnet", "front"}, {"command", {"sleep", "1000"}}});
  auto running = port->until([](const json& view) { return stateIn(view, "web-1") == "running"; }, 3s);
  ASSERT_TRUE(running) << "last view: " << port->last()["instances"].dump() << daemon_.logTail();
  for (const json& shown : (*running)["instances"]) {
    EXPECT_FALSE(shown.contains("spec"));
    EXPECT_FALSE(shown.contains("pid"));
  }
  daemon_.must("POST", "/v1/instances/web-1/stop", {{"grace_seconds", 0}}, 200);
  EXPECT_TRUE(port->until([](const json& view) { return stateIn(view, "web-1") == "stopped"; }, 3s));
  EXPECT_TRUE(socket->until([](const json& view) { return stateIn(view, "web-1") == "stopped"; }, 3s));

  // After the first, only patches come, and a change in another VPC does not send shop's entry again.
  EXPECT_FALSE(port->patches().empty());
  const size_t before = port->patches().size();
  daemon_.must("POST", "/v1/vpcs", {{"name", "lab"}, {"cidr", "10.9.0.0/16"}});
  ASSERT_TRUE(port->until([](const json& view) { return hasVpc(view, "lab"); }, 3s)) << daemon_.logTail();
  ASSERT_GT(port->patches().size(), before);
  for (size_t i = before; i < port->patches().size(); ++i) {
    for (const json& entry : port->patches()[i]["vpcs"])
      EXPECT_NE(entry["vpc"]["name"], "shop") << "shop did not change but was sent again";
  }

  // Nothing changes: nothing is sent but, after a while, the memory figures' refresh if they moved.
  auto quiet = port->next(1200ms);
  EXPECT_FALSE(quiet) << "an event without a change: " << quiet->dump().substr(0, 200);
}

// Each open stream holds no I/O thread: with more streams open than corrald has threads, requests are
// answered as quickly as ever; and a stream whose client went away is closed by corrald at once (its
// descriptor goes), not at the next write.
TEST_F(DashboardEvents, OpenStreamsHoldUpNothingAndAClosedOneIsFreedAtOnce) {
  const pid_t pid = daemon_.pid();
  ASSERT_GT(pid, 0);
  std::this_thread::sleep_for(200ms);  // SetUp's requests' connections close
  const size_t before = openFds(pid);
  std::vector<std::unique_ptr<EventStream>> streams;
  for (int i = 0; i < 8; ++i) {
    streams.push_back(i % 2 == 0 ? EventStream::overTcp(port_) : EventStream::overUnix(daemon_.socket()));
    ASSERT_TRUE(streams.back()) << i;
    ASSERT_TRUE(streams.back()->next(3s)) << i;
  }
  EXPECT_EQ(fdsSettledAt(pid, before + 8), before + 8);
  for (int i = 0; i < 5; ++i) {
    const auto asked = Clock::now();
    EXPECT_EQ(daemon_.call("GET", "/v1/info").status, 200);
    daemon_.must("POST", "/v1/vpcs",
                 {{"name", fmt::format("v{}", i)}, {"cidr", fmt::format("10.{}.0.0/16", i)}});
    EXPECT_LT(Clock::now() - asked, 2s);
  }
  // Every stream saw the last change.
  for (auto& stream : streams)
    EXPECT_TRUE(stream->until([](const json& view) { return hasVpc(view, "v4"); }, 3s));

  streams.clear();  // the clients close
  // Each VPC's namespace has its kept nftables context (a netlink socket, net/nft.h) until it goes.
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(daemon_.call("DELETE", fmt::format("/v1/vpcs/v{}", i)).status, 200) << i;
  EXPECT_EQ(fdsSettledAt(pid, before), before)
      << "corrald kept the descriptors of streams whose clients left";
  EXPECT_EQ(daemon_.call("GET", "/v1/info").status, 200);
}

}  // namespace
}  // namespace corral
