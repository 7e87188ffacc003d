// AgentClient against a fake guest on a socketpair: ready handshake, exec, errors and deadlines.
#include "vmm/agent.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <thread>

#include "vmm/agent_protocol.h"

namespace corral::vmm {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using namespace std::chrono_literals;

const std::string kReady =
    R"({"event":"ready","uptime_ms":812,"init_started_ms":640,"kernel":"6.1.0-27-cloud-amd64","hostname":"web-1","version":1})";

// The guest end of the channel: reads request lines, runs the script on each, writes what it returns.
class FakeGuest {
 public:
  using Script = std::function<std::string(const Json& request)>;

  FakeGuest(std::string greeting, Script script) {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    host_ = UniqueFd(fds[0]);
    guest_ = UniqueFd(fds[1]);
    thread_ = std::thread([this, greeting = std::move(greeting), script = std::move(script)] {
      if (!greeting.empty()) writeAll(greeting);
      std::string buffer;
      char chunk[4096];
      for (;;) {
        const ssize_t n = read(guest_.get(), chunk, sizeof(chunk));
        if (n <= 0) return;
        buffer.append(chunk, static_cast<size_t>(n));
        for (auto newline = buffer.find('\n'); newline != std::string::npos; newline = buffer.find('\n')) {
          const auto request = Json::parse(buffer.substr(0, newline));
          buffer.erase(0, newline + 1);
          requests_.push_back(request);
          writeAll(script(request));
        }
      }
    });
  }
  ~FakeGuest() {
    shutdown(guest_.get(), SHUT_RDWR);
    thread_.join();
  }

  UniqueFd takeHostEnd() { return std::move(host_); }
  // Read only after the client is done (the thread has answered everything by then).
  const std::vector<Json>& requests() const { return requests_; }

 private:
  void writeAll(const std::string& text) {
    for (size_t sent = 0; sent < text.size();) {
      // One byte at a time for the first line, so the client sees partial reads.
      const size_t chunk = sent < 10 ? 1 : text.size() - sent;
      const ssize_t n = send(guest_.get(), text.data() + sent, chunk, MSG_NOSIGNAL);
      if (n <= 0) return;
      sent += static_cast<size_t>(n);
    }
  }

  UniqueFd host_;
  UniqueFd guest_;
  std::vector<Json> requests_;
  std::thread thread_;
};

std::string answerHello(const Json& request) {
  Json ready = Json::parse(kReady);
  ready["id"] = request["id"];
  return ready.dump() + "\n";
}

std::string answerExecUname(const Json& request) {
  if (request["op"] == "hello") return answerHello(request);
  if (request["op"] == "exec") {
    EXPECT_EQ(request["command"], Json::array({"uname", "-r"}));
    EXPECT_EQ(request["env"], Json::array({"K=V"}));
    EXPECT_EQ(request["timeout_ms"], 2000);
    // A stale hello answer and an unsolicited event first: the client must skip both.
    return answerHello(Json{{"id", 0}}) + kReady + "\n" +
           Json{{"id", request["id"]}, {"exit_code", 0},     {"signal", nullptr}, {"stdout", "6.1.0\n"},
                {"stderr", ""},        {"truncated", false}, {"timed_out", false}}
               .dump() +
           "\n";
  }
  if (request["op"] == "shutdown") return Json{{"id", request["id"]}, {"ok", true}}.dump() + "\n";
  return "";
}

TEST(AgentClient, ReadyUnsolicited) {
  FakeGuest guest(kReady + "\n", [](const Json&) { return std::string(); });
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  EXPECT_EQ(client->ready().uptimeMs, 812);
  EXPECT_EQ(client->ready().initStartedMs, 640);
  EXPECT_EQ(client->ready().kernel, "6.1.0-27-cloud-amd64");
  EXPECT_EQ(client->ready().hostname, "web-1");
}

TEST(AgentClient, ReadyOnlyAfterHello) {
  FakeGuest guest("", answerHello);
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  EXPECT_EQ(client->ready().hostname, "web-1");
}

TEST(AgentClient, HelloIsRepeatedUntilAnswered) {
  int hellos = 0;
  FakeGuest guest("",
                  [&](const Json& request) { return ++hellos < 3 ? std::string() : answerHello(request); });
  const auto start = Clock::now();
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), start + 5s);
  ASSERT_TRUE(client) << client.error().message();
  EXPECT_GE(Clock::now() - start, 900ms);  // the third hello goes out after two 500 ms intervals
}

TEST(AgentClient, ExecRoundTripAndShutdown) {
  FakeGuest guest(kReady + "\n", answerExecUname);
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  auto result = client->exec({"uname", "-r"}, {"K=V"}, 2000ms);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->exitCode, 0);
  EXPECT_FALSE(result->signal);
  EXPECT_EQ(result->stdoutText, "6.1.0\n");
  EXPECT_FALSE(result->truncated);
  EXPECT_FALSE(result->timedOut);
  auto down = client->shutdown();
  EXPECT_TRUE(down) << down.error().message();
}

// The guest's "poweroff" event after the shutdown's answer: read once the guest is gone, with how the
// workload ended; a guest that said nothing leaves none after the deadline.
TEST(AgentClient, LastWordsAreThePoweroffEvent) {
  FakeGuest guest(kReady + "\n", [](const Json& request) {
    return Json{{"id", request["id"]}, {"ok", true}}.dump() + "\n" +
           R"({"event":"poweroff","reason":"shutdown request","workload":{"exit_code":3,"signal":null}})" +
           "\n";
  });
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  ASSERT_TRUE(client->shutdown());
  auto words = client->lastWords(Clock::now() + 2s);
  ASSERT_TRUE(words);
  EXPECT_EQ(words->reason, "shutdown request");
  EXPECT_TRUE(words->workloadEnded);
  EXPECT_EQ(words->workloadExitCode, 3);
  EXPECT_FALSE(words->workloadSignal);

  FakeGuest quiet(kReady + "\n", [](const Json&) { return std::string(); });
  auto silent = AgentClient::fromConnected(quiet.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(silent) << silent.error().message();
  EXPECT_FALSE(silent->lastWords(Clock::now() + 100ms));
}

// set_clock carries the host's wall-clock time of the moment it is sent; a guest's error fails it.
TEST(AgentClient, SetClockSendsTheHostsTimeAndReadsTheAnswer) {
  FakeGuest guest(kReady + "\n", [](const Json& request) -> std::string {
    if (request["op"] == "hello") return answerHello(request);
    return Json{{"id", request["id"]}, {"ok", true}}.dump() + "\n";
  });
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  const auto before = std::chrono::system_clock::now();
  auto set = client->setClock(Clock::now() + 5s);
  const auto after = std::chrono::system_clock::now();
  ASSERT_TRUE(set) << set.error().message();
  const Json& sent = guest.requests().back();
  EXPECT_EQ(sent["op"], "set_clock");
  const auto unixNs = std::chrono::nanoseconds(sent["unix_ns"].get<int64_t>());
  EXPECT_GE(unixNs, before.time_since_epoch());
  EXPECT_LE(unixNs, after.time_since_epoch());

  FakeGuest refusing(kReady + "\n", [](const Json& request) -> std::string {
    if (request["op"] == "hello") return answerHello(request);
    return Json{{"id", request["id"]}, {"error", "clock_settime(CLOCK_REALTIME): EPERM"}}.dump() + "\n";
  });
  auto other = AgentClient::fromConnected(refusing.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(other) << other.error().message();
  auto refused = other->setClock(Clock::now() + 5s);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("guest set_clock: clock_settime"), std::string::npos)
      << refused.error().message();
}

// set_identity sends the identity, fresh host random bytes and the host's time; an answer that does not
// report what was asked fails it, as does the guest's error.
TEST(AgentClient, SetIdentitySendsASeedAndChecksTheAnswer) {
  const GuestIdentity identity{"web-2",    "52:54:00:12:34:56", "10.0.1.5/24",
                               "10.0.1.1", "10.0.1.2",          "lab.internal"};
  auto echoing = [](const Json& request) -> std::string {
    if (request["op"] == "hello") return answerHello(request);
    return Json{{"id", request["id"]},
                {"ok", true},
                {"hostname", request["hostname"]},
                {"mac", request["mac"]},
                {"seeded_bytes", request["seed"].get<std::string>().size() / 2}}
               .dump() +
           "\n";
  };
  FakeGuest guest(kReady + "\n", echoing);
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  auto answer = client->setIdentity(identity, Clock::now() + 5s);
  ASSERT_TRUE(answer) << answer.error().message();
  EXPECT_EQ(answer->seededBytes, kIdentitySeedBytes);
  auto again = client->setIdentity(identity, Clock::now() + 5s);
  ASSERT_TRUE(again) << again.error().message();
  const auto& sent = guest.requests();
  ASSERT_GE(sent.size(), 2u);
  const Json& first = sent[sent.size() - 2];
  const Json& second = sent.back();
  EXPECT_EQ(first["op"], "set_identity");
  EXPECT_EQ(first["hostname"], "web-2");
  EXPECT_EQ(first["mac"], "52:54:00:12:34:56");
  EXPECT_EQ(first["ip"], "10.0.1.5/24");
  EXPECT_EQ(first["gateway"], "10.0.1.1");
  EXPECT_EQ(first["nameserver"], "10.0.1.2");
  EXPECT_EQ(first["search"], "lab.internal");
  EXPECT_EQ(first["seed"].get<std::string>().size(), 2 * kIdentitySeedBytes);
  EXPECT_NE(first["seed"], second["seed"]);  // each call draws its own bytes
  EXPECT_GT(first["unix_ns"].get<int64_t>(), 0);

  FakeGuest lying(kReady + "\n", [](const Json& request) -> std::string {
    if (request["op"] == "hello") return answerHello(request);
    return Json{{"id", request["id"]},
                {"ok", true},
                {"hostname", request["hostname"]},
                {"mac", "52:54:00:00:00:01"},
                {"seeded_bytes", 64}}
               .dump() +
           "\n";
  });
  auto other = AgentClient::fromConnected(lying.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(other) << other.error().message();
  auto wrongMac = other->setIdentity(identity, Clock::now() + 5s);
  ASSERT_FALSE(wrongMac);
  EXPECT_NE(wrongMac.error().message().find("MAC 52:54:00:00:00:01, 64 seed bytes"), std::string::npos)
      << wrongMac.error().message();

  FakeGuest refusing(kReady + "\n", [](const Json& request) -> std::string {
    if (request["op"] == "hello") return answerHello(request);
    return Json{{"id", request["id"]}, {"error", "ioctl(SIOCSIFHWADDR, \"eth0\"): EBUSY"}}.dump() + "\n";
  });
  auto third = AgentClient::fromConnected(refusing.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(third) << third.error().message();
  auto refused = third->setIdentity(identity, Clock::now() + 5s);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("guest set_identity: ioctl(SIOCSIFHWADDR"), std::string::npos)
      << refused.error().message();
}

TEST(AgentClient, ExecKilledBySignal) {
  FakeGuest guest(kReady + "\n", [](const Json& request) {
    return Json{{"id", request["id"]}, {"exit_code", nullptr}, {"signal", 9},      {"stdout", ""},
                {"stderr", "x"},       {"truncated", true},    {"timed_out", true}}
               .dump() +
           "\n";
  });
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  auto result = client->exec({"sleep", "100"}, {}, 100ms);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_FALSE(result->exitCode);
  EXPECT_EQ(result->signal, 9);
  EXPECT_TRUE(result->truncated);
  EXPECT_TRUE(result->timedOut);
}

TEST(AgentClient, MalformedAnswerIsAnError) {
  FakeGuest guest(kReady + "\n", [](const Json&) { return std::string("{not json\n"); });
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  auto result = client->exec({"true"}, {}, 1000ms);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("malformed"), std::string::npos) << result.error().message();
}

TEST(AgentClient, WrongFieldTypeIsAnError) {
  FakeGuest guest(kReady + "\n", [](const Json& request) {
    return Json{{"id", request["id"]}, {"exit_code", "zero"}, {"stdout", ""}, {"stderr", ""}}.dump() + "\n";
  });
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  auto result = client->exec({"true"}, {}, 1000ms);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("malformed"), std::string::npos) << result.error().message();
}

TEST(AgentClient, GuestErrorIsReported) {
  FakeGuest guest(kReady + "\n", [](const Json& request) {
    return Json{{"id", request["id"]}, {"error", "unknown op"}}.dump() + "\n";
  });
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  auto result = client->exec({"true"}, {}, 1000ms);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("unknown op"), std::string::npos) << result.error().message();
}

TEST(AgentClient, ReadyDeadline) {
  FakeGuest guest("", [](const Json&) { return std::string(); });
  const auto start = Clock::now();
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), start + 700ms);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(client.error().message().find("not ready after"), std::string::npos) << client.error().message();
  EXPECT_LT(Clock::now() - start, 2s);
}

TEST(AgentClient, ExecDeadline) {
  FakeGuest guest(kReady + "\n", [](const Json&) { return std::string(); });
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  ASSERT_TRUE(client) << client.error().message();
  // The guest never answers: the client gives up after the timeout plus its slack (5 s).
  const auto start = Clock::now();
  auto result = client->exec({"true"}, {}, 100ms);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().kind(), ErrorKind::Unavailable);
  EXPECT_LT(Clock::now() - start, 8s);
}

TEST(AgentClient, ConnectRetriesUntilTheSocketExists) {
  const auto dir = std::filesystem::temp_directory_path() / ("corral-agent-test-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  const auto path = dir / "agent.sock";
  std::thread listener([&] {
    std::this_thread::sleep_for(300ms);
    UniqueFd server(socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strcpy(address.sun_path, path.c_str());
    ASSERT_EQ(bind(server.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)), 0);
    ASSERT_EQ(listen(server.get(), 1), 0);
    UniqueFd conn(accept4(server.get(), nullptr, nullptr, SOCK_CLOEXEC));
    const std::string line = kReady + "\n";
    ASSERT_EQ(send(conn.get(), line.data(), line.size(), MSG_NOSIGNAL), static_cast<ssize_t>(line.size()));
    char byte;
    (void)read(conn.get(), &byte, 1);  // until the client closes
  });
  {
    auto client = AgentClient::connect(path, Clock::now() + 5s);
    EXPECT_TRUE(client) << client.error().message();
  }
  listener.join();
  std::filesystem::remove_all(dir);
}

TEST(AgentClient, ConnectDeadlineWithoutSocket) {
  auto client = AgentClient::connect("/nonexistent/corral/agent.sock", Clock::now() + 300ms);
  ASSERT_FALSE(client);
  EXPECT_EQ(client.error().kind(), ErrorKind::Unavailable);
}

}  // namespace
}  // namespace corral::vmm
