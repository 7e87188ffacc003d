// Interactive sessions over the guest agent channel (vmm/agent_protocol.h "open"): the base64 codec, and
// AgentClient's demultiplexer against a scripted guest on a socketpair: events routed to the session's
// descriptors, answers to the blocking calls, flow control both ways, detach and a closed channel.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "vmm/agent.h"
#include "vmm/agent_protocol.h"

namespace corral::vmm {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using namespace std::chrono_literals;

const Json kReadyV2 = Json::parse(
    R"({"event":"ready","uptime_ms":812,"init_started_ms":640,"kernel":"6.1","hostname":"web-1","version":2})");

TEST(AgentCodec, Base64FollowsRfc4648) {
  const std::pair<std::string, std::string> vectors[] = {{"", ""},
                                                         {"f", "Zg=="},
                                                         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},
                                                         {"foob", "Zm9vYg=="},
                                                         {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    EXPECT_EQ(base64Encode(plain), encoded);
    EXPECT_EQ(base64Decode(encoded), plain);
  }
  std::string every;
  for (int byte = 0; byte < 256; ++byte) every += static_cast<char>(byte);
  EXPECT_EQ(base64Decode(base64Encode(every)), every);
  EXPECT_EQ(base64Decode(base64Encode(every.substr(1))), every.substr(1));
  for (const char* bad : {"Zg=", "Zg", "Z===", "Zh==", "Zm9=", "Zm9v!A==", "=Zm9", "Zg==Zg=="})
    EXPECT_FALSE(base64Decode(bad)) << bad;
}

// The guest's end: lines in, lines out, on the test's own thread.
class ScriptedGuest {
 public:
  ScriptedGuest() {
    int fds[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    host_ = UniqueFd(fds[0]);
    guest_ = UniqueFd(fds[1]);
  }
  UniqueFd takeHostEnd() { return std::move(host_); }
  void send(const Json& message) {
    const std::string line = message.dump() + "\n";
    ASSERT_EQ(::send(guest_.get(), line.data(), line.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(line.size()));
  }
  // The next request, or null after `timeout`.
  Json next(std::chrono::milliseconds timeout = 5s) {
    const auto deadline = Clock::now() + timeout;
    for (;;) {
      if (auto newline = buffer_.find('\n'); newline != std::string::npos) {
        Json request = Json::parse(buffer_.substr(0, newline));
        buffer_.erase(0, newline + 1);
        return request;
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return nullptr;
      pollfd in{guest_.get(), POLLIN, 0};
      if (::poll(&in, 1, static_cast<int>(left.count())) != 1) return nullptr;
      char chunk[65536];
      const ssize_t n = ::read(guest_.get(), chunk, sizeof(chunk));
      if (n <= 0) return nullptr;
      buffer_.append(chunk, static_cast<size_t>(n));
    }
  }
  // The next request whose op is `op`, skipping acks and others (kept in skipped()).
  Json nextOp(const std::string& op, std::chrono::milliseconds timeout = 5s) {
    for (;;) {
      Json request = next(timeout);
      if (request.is_null() || request.value("op", "") == op) return request;
      skipped_.push_back(request);
    }
  }
  const std::vector<Json>& skipped() const { return skipped_; }
  void close() { guest_.reset(); }

 private:
  UniqueFd host_, guest_;
  std::string buffer_;
  std::vector<Json> skipped_;
};

AgentClient readyClient(ScriptedGuest& guest, Json ready = kReadyV2) {
  guest.send(ready);
  auto client = AgentClient::fromConnected(guest.takeHostEnd(), Clock::now() + 5s);
  EXPECT_TRUE(client) << client.error().message();
  return std::move(*client);
}

// Opens a session on a thread while the guest answers it (sending `early` before the answer).
std::unique_ptr<StdioSession> openAnswered(AgentClient& client, ScriptedGuest& guest,
                                           const StdioRequest& request, Json* openRequest,
                                           std::vector<Json> early = {}) {
  Result<std::unique_ptr<StdioSession>> session = fail(internalError("not run"));
  std::thread host([&] { session = client.openSession(request, Clock::now() + 5s); });
  Json open = guest.nextOp("open");
  if (openRequest) *openRequest = open;
  for (auto& event : early) {
    event["session"] = open["session"];
    guest.send(event);
  }
  guest.send({{"id", open["id"]}, {"ok", true}, {"session", open["session"]}, {"pty", nullptr}});
  host.join();
  EXPECT_TRUE(session) << session.error().message();
  return session ? std::move(*session) : nullptr;
}

// Everything readable from `fd` until EOF or `timeout`.
std::string readToEnd(int fd, std::chrono::milliseconds timeout = 5s) {
  std::string out;
  const auto deadline = Clock::now() + timeout;
  while (Clock::now() < deadline) {
    pollfd in{fd, POLLIN, 0};
    if (::poll(&in, 1, 50) != 1) continue;
    char chunk[65536];
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n == 0) break;
    if (n > 0) out.append(chunk, static_cast<size_t>(n));
  }
  return out;
}

bool readable(int fd, int timeoutMs) {
  pollfd in{fd, POLLIN, 0};
  return ::poll(&in, 1, timeoutMs) == 1;
}

Json output(const std::string& stream, const std::string& bytes) {
  return {{"event", "output"}, {"stream", stream}, {"data", base64Encode(bytes)}};
}

TEST(AgentSession, PipesCarryInputOutputAndTheExitCode) {
  ScriptedGuest guest;
  AgentClient client = readyClient(guest);
  Json open;
  auto session = openAnswered(
      client, guest, {.command = {"cat"}, .env = {"K=V"}, .tty = false, .stdinOpen = true, .size = {}}, &open,
      {output("stdout", "before the answer\n")});
  ASSERT_TRUE(session);
  EXPECT_EQ(open["command"], Json::array({"cat"}));
  EXPECT_EQ(open["env"], Json::array({"K=V"}));
  EXPECT_EQ(open["tty"], false);
  EXPECT_EQ(open["stdin"], true);
  EXPECT_FALSE(session->tty());
  EXPECT_GE(session->errorFd(), 0);
  EXPECT_NE(session->inputFd(), session->outputFd());

  ASSERT_EQ(::write(session->inputFd(), "abc", 3), 3);
  session->closeInput();
  Json input = guest.nextOp("input");
  EXPECT_EQ(input["session"], open["session"]);
  EXPECT_EQ(base64Decode(input["data"].get<std::string>()), "abc");
  EXPECT_EQ(guest.nextOp("close_input")["session"], open["session"]);

  guest.send(Json{{"session", open["session"]}, {"event", "written"}, {"bytes", 3}});
  Json err = output("stderr", std::string("\0\xff", 2));
  err["session"] = open["session"];
  guest.send(err);
  guest.send(Json{{"session", open["session"]}, {"event", "exit"}, {"exit_code", 5}, {"signal", nullptr}});
  // An exec answered in the middle of it all reaches the blocking call.
  std::thread execAnswer([&] {
    Json exec = guest.nextOp("exec");
    guest.send({{"id", exec["id"]},
                {"exit_code", 0},
                {"signal", nullptr},
                {"stdout", "x"},
                {"stderr", ""},
                {"truncated", false},
                {"timed_out", false}});
  });
  auto exec = client.exec({"true"}, {}, 2s);
  execAnswer.join();
  ASSERT_TRUE(exec) << exec.error().message();
  EXPECT_EQ(exec->stdoutText, "x");

  ASSERT_TRUE(readable(session->exitFd(), 5000));
  EXPECT_EQ(readToEnd(session->outputFd()), "before the answer\n");
  EXPECT_EQ(readToEnd(session->errorFd()), std::string("\0\xff", 2));
  auto status = session->exitStatus();
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_EQ(status->exitCode, 5);
  EXPECT_FALSE(status->signal);
  // The output the host passed on was acked.
  uint64_t acked = 0;
  for (Json ack = guest.nextOp("ack", 500ms); !ack.is_null(); ack = guest.nextOp("ack", 500ms))
    acked += ack["bytes"].get<uint64_t>();
  for (const auto& skipped : guest.skipped())
    if (skipped.value("op", "") == "ack") acked += skipped["bytes"].get<uint64_t>();
  EXPECT_EQ(acked, std::string("before the answer\n").size() + 2);
}

TEST(AgentSession, TtyIsOneSocketAndResizeGoesToTheGuest) {
  ScriptedGuest guest;
  AgentClient client = readyClient(guest);
  Json open;
  auto session = openAnswered(
      client, guest,
      {.command = {}, .env = {}, .tty = true, .stdinOpen = true, .size = {.rows = 33, .cols = 101}}, &open);
  ASSERT_TRUE(session);
  EXPECT_EQ(open["rows"], 33);
  EXPECT_EQ(open["cols"], 101);
  EXPECT_EQ(open["command"], Json::array());
  EXPECT_TRUE(session->tty());
  EXPECT_EQ(session->inputFd(), session->outputFd());
  EXPECT_EQ(session->errorFd(), -1);
  ASSERT_TRUE(session->resize({.rows = 50, .cols = 132}));
  Json resize = guest.nextOp("resize");
  EXPECT_EQ(resize["rows"], 50);
  EXPECT_EQ(resize["cols"], 132);
  ASSERT_EQ(::write(session->inputFd(), "\x03", 1), 1);
  EXPECT_EQ(base64Decode(guest.nextOp("input")["data"].get<std::string>()), "\x03");
  session->closeInput();  // a tty: nothing is sent
  Json event = output("stdout", "$ ");
  event["session"] = open["session"];
  guest.send(event);
  char buffer[8];
  ASSERT_TRUE(readable(session->outputFd(), 5000));
  EXPECT_EQ(::read(session->outputFd(), buffer, sizeof(buffer)), 2);
  EXPECT_TRUE(guest.nextOp("close_input", 300ms).is_null());
}

// The host reads the client's input only while less than a window is unacknowledged by "written".
TEST(AgentSession, InputStopsAtTheWindowUntilTheGuestWroteIt) {
  ScriptedGuest guest;
  AgentClient client = readyClient(guest);
  Json open;
  auto session = openAnswered(
      client, guest, {.command = {"cat"}, .env = {}, .tty = false, .stdinOpen = true, .size = {}}, &open);
  ASSERT_TRUE(session);
  const std::string big(3 * kAgentSessionWindow, 'i');
  std::thread writer([&] {
    size_t sent = 0;
    while (sent < big.size()) {
      pollfd out{session->inputFd(), POLLOUT, 0};
      ::poll(&out, 1, 100);
      const ssize_t n = ::write(session->inputFd(), big.data() + sent, big.size() - sent);
      if (n > 0) sent += static_cast<size_t>(n);
    }
  });
  size_t received = 0;
  auto drain = [&] {
    for (Json input = guest.nextOp("input", 300ms); !input.is_null(); input = guest.nextOp("input", 300ms))
      received += base64Decode(input["data"].get<std::string>())->size();
  };
  drain();
  EXPECT_EQ(received, kAgentSessionWindow);
  guest.send(Json{{"session", open["session"]}, {"event", "written"}, {"bytes", kAgentSessionWindow}});
  drain();
  EXPECT_EQ(received, 2 * kAgentSessionWindow);
  guest.send(Json{{"session", open["session"]}, {"event", "written"}, {"bytes", 2 * kAgentSessionWindow}});
  drain();
  EXPECT_EQ(received, big.size());
  writer.join();
}

// Output comes within the window the acks open: a guest that sends more ends the session with an error,
// so a runaway guest cannot grow the host's memory.
TEST(AgentSession, OutputBeyondTheWindowEndsTheSession) {
  ScriptedGuest guest;
  AgentClient client = readyClient(guest);
  Json open;
  auto session = openAnswered(
      client, guest, {.command = {"yes"}, .env = {}, .tty = false, .stdinOpen = false, .size = {}}, &open);
  ASSERT_TRUE(session);
  const std::string chunk(kAgentSessionChunk, 'y');
  // Nobody reads the session's output: the socketpair fills, then the pending buffer up to the window.
  for (size_t i = 0; i < 64 && !readable(session->exitFd(), 0); ++i) {
    Json event = output("stdout", chunk);
    event["session"] = open["session"];
    guest.send(event);
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_TRUE(readable(session->exitFd(), 5000));
  auto status = session->exitStatus();
  ASSERT_FALSE(status);
  EXPECT_NE(status.error().message().find("flow-control window"), std::string::npos)
      << status.error().message();
  EXPECT_EQ(guest.nextOp("close")["session"], open["session"]);
}

TEST(AgentSession, DetachTellsTheGuestToCloseIt) {
  ScriptedGuest guest;
  AgentClient client = readyClient(guest);
  Json open;
  auto session = openAnswered(
      client, guest, {.command = {"sleep", "99"}, .env = {}, .tty = true, .stdinOpen = true, .size = {}},
      &open);
  ASSERT_TRUE(session);
  session->detach();
  EXPECT_EQ(guest.nextOp("close")["session"], open["session"]);
  session.reset();
  EXPECT_TRUE(guest.nextOp("close", 300ms).is_null());  // once
}

TEST(AgentSession, AClosedChannelEndsTheSessionsWithAnError) {
  ScriptedGuest guest;
  AgentClient client = readyClient(guest);
  auto session = openAnswered(
      client, guest, {.command = {"sh"}, .env = {}, .tty = true, .stdinOpen = true, .size = {}}, nullptr);
  ASSERT_TRUE(session);
  guest.close();
  ASSERT_TRUE(readable(session->exitFd(), 5000));
  EXPECT_EQ(readToEnd(session->outputFd()), "");
  auto status = session->exitStatus();
  ASSERT_FALSE(status);
  EXPECT_EQ(status.error().kind(), ErrorKind::Unavailable);
  auto exec = client.exec({"true"}, {}, 1s);
  ASSERT_FALSE(exec);
  EXPECT_EQ(exec.error().kind(), ErrorKind::Unavailable);
}

TEST(AgentSession, TheGuestsRefusalIsTheError) {
  ScriptedGuest guest;
  AgentClient client = readyClient(guest);
  Result<std::unique_ptr<StdioSession>> session = fail(internalError("not run"));
  std::thread host([&] {
    session = client.openSession(
        {.command = {"nope"}, .env = {}, .tty = false, .stdinOpen = false, .size = {}}, Clock::now() + 5s);
  });
  Json open = guest.nextOp("open");
  guest.send({{"id", open["id"]},
              {"error", "open: start \"nope\": No such file or directory"},
              {"field", "command"}});
  host.join();
  ASSERT_FALSE(session);
  EXPECT_NE(session.error().message().find("No such file or directory"), std::string::npos);
  EXPECT_EQ(session.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(session.error().field(), "command");
  // The failed session is forgotten, nothing asked of the guest.
  EXPECT_TRUE(guest.nextOp("close", 300ms).is_null());
}

TEST(AgentSession, BadInputIsRefusedNamingTheField) {
  ScriptedGuest guest;
  AgentClient client = readyClient(guest);
  auto emptyProgram = client.openSession(
      {.command = {""}, .env = {}, .tty = false, .stdinOpen = false, .size = {}}, Clock::now() + 1s);
  ASSERT_FALSE(emptyProgram);
  EXPECT_EQ(emptyProgram.error().field(), "command");
  auto badEnv = client.openSession(
      {.command = {"sh"}, .env = {"NOEQUALS"}, .tty = false, .stdinOpen = false, .size = {}},
      Clock::now() + 1s);
  ASSERT_FALSE(badEnv);
  EXPECT_EQ(badEnv.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(badEnv.error().field(), "env");
  EXPECT_NE(badEnv.error().message().find("NOEQUALS"), std::string::npos);
  EXPECT_TRUE(guest.nextOp("open", 200ms).is_null());
}

TEST(AgentSession, AnOldAgentIsRefusedBeforeAnythingIsSent) {
  ScriptedGuest guest;
  Json v1 = kReadyV2;
  v1["version"] = 1;
  AgentClient client = readyClient(guest, v1);
  auto session = client.openSession(
      {.command = {"sh"}, .env = {}, .tty = true, .stdinOpen = true, .size = {}}, Clock::now() + 1s);
  ASSERT_FALSE(session);
  EXPECT_EQ(session.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(session.error().message().find("protocol version 1"), std::string::npos);
  EXPECT_TRUE(guest.nextOp("open", 200ms).is_null());
}

}  // namespace
}  // namespace corral::vmm
