// The QMP client against a scripted server on a socketpair: greeting and capabilities, answers matched by
// id, errors, events queued while a command waits, fd passing, a monitor that closes.
#include "vmm/qmp.h"

#include <gtest/gtest.h>
#include <sys/socket.h>

#include <thread>

namespace corral::vmm {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using namespace std::chrono_literals;

// The server's end: reads requests a line at a time, writes what QEMU would.
class FakeQemu {
 public:
  explicit FakeQemu(int fd) : fd_(fd) {}
  void send(const std::string& line) {
    ASSERT_EQ(::write(fd_, (line + "\r\n").data(), line.size() + 2), ssize_t(line.size() + 2));
  }
  // The next request, and the fd passed with it (-1: none).
  Json request(int* passed = nullptr) {
    while (buffer_.find('\n') == std::string::npos) {
      char chunk[4096];
      iovec data{chunk, sizeof(chunk)};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
      msghdr message{};
      message.msg_iov = &data;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      const ssize_t n = ::recvmsg(fd_, &message, 0);
      if (n <= 0) return Json();
      if (cmsghdr* header = CMSG_FIRSTHDR(&message); header && header->cmsg_type == SCM_RIGHTS && passed)
        std::memcpy(passed, CMSG_DATA(header), sizeof(int));
      buffer_.append(chunk, static_cast<size_t>(n));
    }
    const size_t end = buffer_.find('\n');
    Json request = Json::parse(buffer_.substr(0, end));
    buffer_.erase(0, end + 1);
    return request;
  }
  void greetAndNegotiate() {
    send(R"({"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": []}})");
    Json negotiation = request();
    EXPECT_EQ(negotiation["execute"], "qmp_capabilities");
    send(Json{{"return", Json::object()}, {"id", negotiation["id"]}}.dump());
  }

 private:
  int fd_;
  std::string buffer_;
};

struct Pair {
  UniqueFd client, server;
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    client = UniqueFd(fds[0]);
    server = UniqueFd(fds[1]);
  }
};

TEST(Qmp, NegotiatesThenMatchesAnswersByIdAndKeepsEvents) {
  Pair pair;
  std::thread server([fd = pair.server.get()] {
    FakeQemu qemu(fd);
    qemu.greetAndNegotiate();
    Json status = qemu.request();
    EXPECT_EQ(status["execute"], "query-status");
    EXPECT_FALSE(status.contains("arguments"));
    // An event and a stale answer come first; the client must skip to its own id.
    qemu.send(R"({"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 2}})");
    qemu.send(Json{{"return", {{"status", "stale"}}}, {"id", -5}}.dump());
    qemu.send(Json{{"return", {{"status", "paused"}, {"running", false}}}, {"id", status["id"]}}.dump());
    Json migrate = qemu.request();
    EXPECT_EQ(migrate["arguments"]["uri"], "fd:saving");
    qemu.send(
        Json{{"error", {{"class", "GenericError"}, {"desc", "no fd named saving"}}}, {"id", migrate["id"]}}
            .dump());
    qemu.send(R"({"event": "SHUTDOWN", "data": {"guest": true, "reason": "guest-shutdown"}})");
  });
  auto client = QmpClient::fromConnected(std::move(pair.client), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  EXPECT_EQ(client->greeting()["version"]["qemu"]["major"], 7);
  auto status = client->execute("query-status", nullptr, Clock::now() + 5s);
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_EQ((*status)["status"], "paused");
  auto migrate = client->execute("migrate", {{"uri", "fd:saving"}}, Clock::now() + 5s);
  ASSERT_FALSE(migrate);
  EXPECT_EQ(migrate.error().message(), "qmp migrate: GenericError: no fd named saving");
  auto stop = client->nextEvent(Clock::now() + 5s);
  ASSERT_TRUE(stop);
  EXPECT_EQ(stop->name, "STOP");
  auto shutdown = client->nextEvent(Clock::now() + 5s);
  ASSERT_TRUE(shutdown) << shutdown.error().message();
  EXPECT_EQ(shutdown->name, "SHUTDOWN");
  EXPECT_EQ(shutdown->data["reason"], "guest-shutdown");
  server.join();
}

TEST(Qmp, PassesAnFdWithTheRequest) {
  Pair pair;
  int received = -1;
  std::thread server([fd = pair.server.get(), &received] {
    FakeQemu qemu(fd);
    qemu.greetAndNegotiate();
    Json getfd = qemu.request(&received);
    EXPECT_EQ(getfd["execute"], "getfd");
    qemu.send(Json{{"return", Json::object()}, {"id", getfd["id"]}}.dump());
  });
  auto client = QmpClient::fromConnected(std::move(pair.client), Clock::now() + 5s);
  ASSERT_TRUE(client);
  int pipeFds[2];
  ASSERT_EQ(::pipe(pipeFds), 0);
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  ASSERT_TRUE(client->execute("getfd", {{"fdname", "x"}}, Clock::now() + 5s, writeEnd.get()));
  server.join();
  ASSERT_GE(received, 0);
  UniqueFd passed(received);
  ASSERT_EQ(::write(passed.get(), "!", 1), 1);  // the same pipe: what the server writes, we read
  char c = 0;
  ASSERT_EQ(::read(readEnd.get(), &c, 1), 1);
  EXPECT_EQ(c, '!');
}

TEST(Qmp, RefusesWhatIsNotQmpAndReportsAClosedMonitor) {
  {
    Pair pair;
    std::thread server([fd = pair.server.get()] { FakeQemu(fd).send(R"({"hello": 1})"); });
    auto client = QmpClient::fromConnected(std::move(pair.client), Clock::now() + 5s);
    server.join();
    ASSERT_FALSE(client);
    EXPECT_NE(client.error().message().find("not a QMP greeting"), std::string::npos)
        << client.error().message();
  }
  {
    Pair pair;
    std::thread server([&pair] {
      FakeQemu qemu(pair.server.get());
      qemu.greetAndNegotiate();
      qemu.request();
      pair.server.reset();  // QEMU went away with the command unanswered
    });
    auto client = QmpClient::fromConnected(std::move(pair.client), Clock::now() + 5s);
    ASSERT_TRUE(client);
    auto answer = client->execute("quit", nullptr, Clock::now() + 5s);
    server.join();
    ASSERT_FALSE(answer);
    EXPECT_EQ(answer.error().kind(), ErrorKind::Unavailable);
    EXPECT_TRUE(client->closed());
  }
  {
    Pair pair;
    std::thread server([fd = pair.server.get()] { FakeQemu(fd).greetAndNegotiate(); });
    auto client = QmpClient::fromConnected(std::move(pair.client), Clock::now() + 5s);
    server.join();
    ASSERT_TRUE(client);
    const auto started = Clock::now();
    auto none = client->nextEvent(Clock::now() + 100ms);
    ASSERT_FALSE(none);
    EXPECT_EQ(none.error().kind(), ErrorKind::Unavailable);
    EXPECT_GE(Clock::now() - started, 90ms);
  }
}

}  // namespace
}  // namespace corral::vmm
