// The host side of the guest agent: line-delimited JSON over the virtio-serial channel's unix socket, with a
// deadline on every wait.
#include "vmm/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>

#include "vmm/agent_protocol.h"

namespace corral::vmm {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

constexpr auto kHelloInterval = std::chrono::milliseconds(500);
constexpr auto kConnectRetry = std::chrono::milliseconds(50);
// The guest enforces the exec timeout itself; this is how much longer we wait for its answer.
constexpr auto kExecSlack = std::chrono::seconds(5);
constexpr auto kShutdownAnswer = std::chrono::seconds(10);

int pollTimeoutMs(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 60'000));
}

// The host's wall-clock time now, as set_clock and set_identity carry it.
int64_t unixNowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

int64_t elapsedMs(Clock::time_point since) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - since).count();
}

Result<UniqueFd> connectUnix(const std::filesystem::path& socket) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string path = socket.string();
  if (path.size() >= sizeof(address.sun_path))
    return fail(invalidField("agent_socket", "socket path \"{}\" is too long for sockaddr_un", path));
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fail(systemError(errno, "socket(AF_UNIX)"));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) < 0)
    return fail(systemError(errno, fmt::format("connect(\"{}\")", path)));
  return fd;
}

// The "ready" event (unsolicited or the answer to hello), or nullopt for any other line.
std::optional<GuestReady> parseReady(const Json& message) {
  try {
    if (!message.is_object() || message.value("event", "") != "ready") return std::nullopt;
    GuestReady ready;
    ready.uptimeMs = message.value("uptime_ms", int64_t{0});
    ready.initStartedMs = message.value("init_started_ms", int64_t{0});
    ready.kernel = message.value("kernel", "");
    ready.hostname = message.value("hostname", "");
    return ready;
  } catch (const Json::exception&) {  // a field of the wrong type: not a ready we can use
    return std::nullopt;
  }
}

// The "poweroff" event, or nullopt for any other line.
std::optional<GuestPoweroff> parsePoweroff(const Json& message) {
  try {
    if (!message.is_object() || message.value("event", "") != "poweroff") return std::nullopt;
    GuestPoweroff poweroff;
    poweroff.reason = message.value("reason", "");
    if (auto workload = message.find("workload"); workload != message.end() && workload->is_object()) {
      poweroff.workloadEnded = true;
      if (auto code = workload->find("exit_code"); code != workload->end() && code->is_number_integer())
        poweroff.workloadExitCode = code->get<int>();
      if (auto signal = workload->find("signal"); signal != workload->end() && signal->is_number_integer())
        poweroff.workloadSignal = signal->get<int>();
    }
    return poweroff;
  } catch (const Json::exception&) {
    return std::nullopt;
  }
}

Json parseLine(const std::string& line) {
  return Json::parse(line, nullptr, /*allow_exceptions=*/false);
}

// An answer line to `op` parsed; the guest's {"error": ...} becomes the failure "guest OP: ...".
Result<Json> checkedAnswer(const std::string& line, std::string_view op) {
  Json answer = parseLine(line);
  if (auto error = answer.find("error"); error != answer.end())
    return fail(
        internalError("guest {}: {}", op, error->is_string() ? error->get<std::string>() : error->dump()));
  return answer;
}

bool answeredOk(const Json& answer) {
  auto ok = answer.find("ok");
  return ok != answer.end() && *ok == true;
}

std::optional<int> optionalInt(const Json& message, const char* key) {
  auto it = message.find(key);
  if (it == message.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer()) throw std::invalid_argument(fmt::format("\"{}\" is not an integer", key));
  return it->get<int>();
}

}  // namespace

Result<AgentClient> AgentClient::connect(const std::filesystem::path& socket, Clock::time_point deadline) {
  const auto start = Clock::now();
  for (;;) {
    auto fd = connectUnix(socket);
    if (fd) return fromConnected(std::move(*fd), deadline);
    const int errnum = fd.error().errnum();
    if (errnum != ENOENT && errnum != ECONNREFUSED && errnum != EAGAIN)
      return fail(fd.error().wrap("guest agent"));
    if (Clock::now() + kConnectRetry >= deadline)
      return fail(
          unavailable("guest agent not ready after {} ms: {}", elapsedMs(start), fd.error().message()));
    std::this_thread::sleep_for(kConnectRetry);
  }
}

Result<AgentClient> AgentClient::fromConnected(UniqueFd fd, Clock::time_point deadline) {
  const auto start = Clock::now();
  if (::fcntl(fd.get(), F_SETFL, ::fcntl(fd.get(), F_GETFL) | O_NONBLOCK) < 0)
    return fail(systemError(errno, "fcntl(O_NONBLOCK)"));
  AgentClient client(std::move(fd));
  // The unsolicited "ready" may have gone out before we connected; hello asks for it again.
  auto nextHello = Clock::now();
  for (;;) {
    if (Clock::now() >= nextHello) {
      const Json hello = {{"id", takeId()}, {"op", "hello"}};
      if (auto sent = client.sendLine(hello.dump(), std::min(deadline, Clock::now() + kHelloInterval));
          !sent) {
        if (sent.error().kind() != ErrorKind::Unavailable)
          return fail(sent.error().wrap("guest agent hello"));
      }
      nextHello = Clock::now() + kHelloInterval;
    }
    auto line = client.readLine(std::min(deadline, nextHello));
    if (!line) {
      if (Clock::now() < deadline && line.error().kind() == ErrorKind::Unavailable &&
          line.error().errnum() == ETIMEDOUT)
        continue;
      return fail(
          unavailable("guest agent not ready after {} ms: {}", elapsedMs(start), line.error().message()));
    }
    if (auto ready = parseReady(parseLine(*line))) {
      client.ready_ = std::move(*ready);
      return client;
    }
  }
}

Status AgentClient::sendLine(const std::string& line, Clock::time_point deadline) {
  if (line.find('\n') != std::string::npos)
    return fail(internalError("guest agent: request contains a newline"));
  const std::string data = line + "\n";
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd_.get(), data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) return fail(systemError(errno, "send(guest agent)"));
    pollfd pfd{fd_.get(), POLLOUT, 0};
    const int ready = ::poll(&pfd, 1, pollTimeoutMs(deadline));
    if (ready < 0 && errno != EINTR) return fail(systemError(errno, "poll(guest agent)"));
    if (ready == 0)
      return fail(Error(ErrorKind::Unavailable, "guest agent: timed out writing a request", {}, ETIMEDOUT));
  }
  return {};
}

Result<std::string> AgentClient::readLine(Clock::time_point deadline) {
  for (;;) {
    if (auto newline = buffer_.find('\n'); newline != std::string::npos) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      return line;
    }
    if (buffer_.size() > kAgentMaxLine)
      return fail(internalError("guest agent: line longer than {} bytes", kAgentMaxLine));
    pollfd pfd{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&pfd, 1, pollTimeoutMs(deadline));
    if (ready < 0) {
      if (errno == EINTR) continue;
      return fail(systemError(errno, "poll(guest agent)"));
    }
    if (ready == 0)
      return fail(Error(ErrorKind::Unavailable, "guest agent: no answer in time", {}, ETIMEDOUT));
    char chunk[65536];
    const ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return fail(systemError(errno, "read(guest agent)"));
    }
    if (n == 0) return fail(unavailable("guest agent closed the channel"));
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

int64_t AgentClient::takeId() {
  static std::atomic<int64_t> next{1};
  return next.fetch_add(1);
}

Result<std::string> AgentClient::awaitAnswer(int64_t id, Clock::time_point deadline) {
  for (;;) {
    auto line = readLine(deadline);
    if (!line) return fail(line.error());
    const Json message = parseLine(*line);
    if (message.is_discarded() || !message.is_object())
      return fail(internalError("guest agent: malformed answer \"{}\"", line->substr(0, 200)));
    auto answerId = message.find("id");
    if (auto poweroff = parsePoweroff(message)) poweroff_ = std::move(poweroff);
    if (answerId == message.end() || answerId->is_null()) {
      // An unsolicited event ("ready") is fine; an error without id means the guest could not read ours.
      if (auto error = message.find("error"); error != message.end())
        return fail(
            internalError("guest agent: {}", error->is_string() ? error->get<std::string>() : error->dump()));
      continue;
    }
    if (!answerId->is_number_integer())
      return fail(internalError("guest agent: malformed answer \"{}\"", line->substr(0, 200)));
    if (answerId->get<int64_t>() != id) continue;  // late answer to an earlier hello
    return std::move(*line);
  }
}

Result<ExecResult> AgentClient::exec(const std::vector<std::string>& command,
                                     const std::vector<std::string>& env, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout + kExecSlack;
  const int64_t id = takeId();
  const Json request = {
      {"id", id}, {"op", "exec"}, {"command", command}, {"env", env}, {"timeout_ms", timeout.count()}};
  if (auto sent = sendLine(request.dump(), deadline); !sent) return fail(sent.error().wrap("guest exec"));
  auto line = awaitAnswer(id, deadline);
  if (!line) return fail(line.error().wrap("guest exec"));
  const Json answer = parseLine(*line);
  if (auto error = answer.find("error"); error != answer.end())
    return fail(
        internalError("guest exec: {}", error->is_string() ? error->get<std::string>() : error->dump()));
  try {
    ExecResult result;
    result.exitCode = optionalInt(answer, "exit_code");
    result.signal = optionalInt(answer, "signal");
    result.stdoutText = answer.at("stdout").get<std::string>();
    result.stderrText = answer.at("stderr").get<std::string>();
    result.truncated = answer.value("truncated", false);
    result.timedOut = answer.value("timed_out", false);
    return result;
  } catch (const std::exception& e) {
    return fail(internalError("guest exec: malformed answer: {}", e.what()));
  }
}

Result<std::string> AgentClient::roundTrip(int64_t id, const std::string& request, std::string_view op,
                                           Clock::time_point deadline) {
  if (auto sent = sendLine(request, deadline); !sent)
    return fail(sent.error().wrap(fmt::format("guest {}", op)));
  auto line = awaitAnswer(id, deadline);
  if (!line) return fail(line.error().wrap(fmt::format("guest {}", op)));
  return line;
}

Status AgentClient::shutdown() {
  const auto deadline = Clock::now() + kShutdownAnswer;
  const int64_t id = takeId();
  auto line = roundTrip(id, Json{{"id", id}, {"op", "shutdown"}}.dump(), "shutdown", deadline);
  if (!line) return fail(line.error());
  auto answer = checkedAnswer(*line, "shutdown");
  if (!answer) return fail(answer.error());
  if (!answeredOk(*answer)) return fail(internalError("guest shutdown: malformed answer \"{}\"", *line));
  return {};
}

std::optional<GuestPoweroff> AgentClient::lastWords(Clock::time_point deadline) {
  while (!poweroff_) {
    auto line = readLine(deadline);
    if (!line) break;
    if (auto poweroff = parsePoweroff(parseLine(*line))) poweroff_ = std::move(poweroff);
  }
  return poweroff_;
}

Status AgentClient::setClock(Clock::time_point deadline) {
  const int64_t id = takeId();
  const Json request = {{"id", id}, {"op", "set_clock"}, {"unix_ns", unixNowNs()}};
  auto line = roundTrip(id, request.dump(), "set_clock", deadline);
  if (!line) return fail(line.error());
  auto answer = checkedAnswer(*line, "set_clock");
  if (!answer) return fail(answer.error());
  if (!answeredOk(*answer)) return fail(internalError("guest set_clock: malformed answer \"{}\"", *line));
  return {};
}

Result<IdentityAnswer> AgentClient::setIdentity(const GuestIdentity& identity, Clock::time_point deadline) {
  auto fail = [](Error error) -> Result<IdentityAnswer> { return std::unexpected(std::move(error)); };
  std::array<uint8_t, kIdentitySeedBytes> seed{};
  if (::getrandom(seed.data(), seed.size(), 0) != static_cast<ssize_t>(seed.size()))
    return fail(
        internalError("guest set_identity: getrandom({} bytes): {}", seed.size(), std::strerror(errno)));
  std::string seedHex;
  for (const uint8_t byte : seed) seedHex += fmt::format("{:02x}", byte);
  const int64_t id = takeId();
  Json request = {{"id", id},
                  {"op", "set_identity"},
                  {"hostname", identity.hostname},
                  {"seed", seedHex},
                  {"unix_ns", unixNowNs()}};
  request["mac"] = identity.mac ? Json(*identity.mac) : Json(nullptr);
  request["ip"] = identity.ip ? Json(*identity.ip) : Json(nullptr);
  request["gateway"] = identity.gateway ? Json(*identity.gateway) : Json(nullptr);
  auto line = roundTrip(id, request.dump(), "set_identity", deadline);
  if (!line) return fail(line.error());
  auto checked = checkedAnswer(*line, "set_identity");
  if (!checked) return fail(checked.error());
  const Json& answer = *checked;
  IdentityAnswer result;
  if (answer.value("ok", false) != true || !answer.contains("hostname") || !answer["hostname"].is_string() ||
      !answer.contains("mac") || !(answer["mac"].is_string() || answer["mac"].is_null()) ||
      !answer.contains("seeded_bytes") || !answer["seeded_bytes"].is_number_unsigned())
    return fail(internalError("guest set_identity: malformed answer \"{}\"", *line));
  result.hostname = answer["hostname"].get<std::string>();
  if (answer["mac"].is_string()) result.mac = answer["mac"].get<std::string>();
  result.seededBytes = answer["seeded_bytes"].get<size_t>();
  if (result.hostname != identity.hostname || (identity.mac && result.mac != identity.mac) ||
      result.seededBytes != seed.size())
    return fail(
        internalError("guest set_identity: the guest reports hostname \"{}\", MAC {}, {} seed bytes; "
                      "asked for \"{}\", {}, {}",
                      result.hostname, result.mac.value_or("none"), result.seededBytes, identity.hostname,
                      identity.mac.value_or("none"), seed.size()));
  return result;
}

}  // namespace corral::vmm
