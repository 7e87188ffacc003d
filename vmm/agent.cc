// The host side of the guest agent: line-delimited JSON over the virtio-serial channel's unix socket, with a
// deadline on every wait; interactive sessions demultiplexed by a reader thread (AgentChannel::pump).
#include "vmm/agent.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
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
    ready.version = message.value("version", 1);
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

// A session's state on the host: what the reader thread (pump) moves between the channel and the session's
// socketpairs. Guarded by the channel's mutex.
struct AgentSessionState {
  int64_t number = 0;
  bool tty = false;
  bool stdinOpen = false;
  UniqueFd inputPeer;  // the pump reads the client's input here (a tty: the same socket as outputPeers[0])
  UniqueFd outputPeers[2];     // the pump writes stdout and stderr here (a tty: one socket, stderr unused)
  std::string pending[2];      // output from the guest not yet written into the socket: at most a window
  uint64_t inputInFlight = 0;  // sent to the guest and not "written" yet
  bool inputEnded = false;     // the client's input reached EOF and close_input went out
  std::optional<StdioExit> exit;
  std::optional<Error> failure;
  UniqueFd exitEvent;  // eventfd, written once the session ended (exit or failure) and its output is written
  bool ended = false;
};

// The connection to the guest agent. Without sessions, the blocking calls read and write the socket
// themselves. From the first session on, pump() on its own thread is the only one to touch the socket:
// it writes the queued lines, routes session events, and queues every other line for readLine.
class AgentChannel {
 public:
  explicit AgentChannel(UniqueFd fd) : fd_(std::move(fd)) {}
  AgentChannel(const AgentChannel&) = delete;
  AgentChannel& operator=(const AgentChannel&) = delete;
  ~AgentChannel() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    wakePump();
    thread_.join();
  }

  Status sendLine(const std::string& line, Clock::time_point deadline) {
    if (line.find('\n') != std::string::npos)
      return fail(internalError("guest agent: request contains a newline"));
    {
      std::lock_guard lock(mutex_);
      if (thread_.joinable()) {
        if (closed_) return fail(unavailable("guest agent: {}", closedWhy_));
        outgoing_ += line;
        outgoing_ += '\n';
        wakePump();
        return {};
      }
    }
    return sendDirect(line + "\n", deadline);
  }

  Result<std::string> readLine(Clock::time_point deadline) {
    std::unique_lock lock(mutex_);
    if (!thread_.joinable()) {
      lock.unlock();
      return readDirect(deadline);
    }
    if (!lineReady_.wait_until(lock, deadline, [&] { return !lines_.empty() || closed_; }))
      return fail(Error(ErrorKind::Unavailable, "guest agent: no answer in time", {}, ETIMEDOUT));
    if (lines_.empty()) return fail(unavailable("guest agent: {}", closedWhy_));
    std::string line = std::move(lines_.front());
    lines_.pop_front();
    return line;
  }

  // Registers the session (before its "open" goes out: its first events may come before the answer) and
  // starts the pump if it does not run yet.
  Status addSession(std::shared_ptr<AgentSessionState> session) {
    std::lock_guard lock(mutex_);
    if (!wake_) {
      wake_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
      if (!wake_) return fail(systemError(errno, "eventfd"));
    }
    if (closed_) return fail(unavailable("guest agent: {}", closedWhy_));
    sessions_[session->number] = std::move(session);
    if (!thread_.joinable()) thread_ = std::thread([this] { pump(); });
    wakePump();
    return {};
  }

  // The host is done with the session: unless it ended (or `tellGuest` is false: the guest refused to open
  // it), the guest kills its program (op "close").
  void dropSession(int64_t number, bool tellGuest = true) {
    std::lock_guard lock(mutex_);
    auto found = sessions_.find(number);
    if (found == sessions_.end()) return;
    if (tellGuest && !found->second->ended && !closed_) queueLocked({{"op", "close"}, {"session", number}});
    endLocked(*found->second, std::nullopt);
    sessions_.erase(found);
  }

  // A request on a running session (input, resize, signal); a session that ended or a closed channel: false.
  bool sendOnSession(int64_t number, const Json& request) {
    std::lock_guard lock(mutex_);
    auto found = sessions_.find(number);
    if (closed_ || found == sessions_.end() || found->second->ended) return false;
    queueLocked(request);
    return true;
  }

  std::mutex& mutex() { return mutex_; }

 private:
  // At most this many lines wait for readLine: unsolicited events nobody asks for (repeated "ready"s) are
  // dropped oldest first.
  static constexpr size_t kMaxQueuedLines = 256;

  void wakePump() {
    if (!wake_) return;
    const uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wake_.get(), &one, sizeof(one));
  }

  void queueLocked(const Json& request) {
    outgoing_ += request.dump();
    outgoing_ += '\n';
    wakePump();
  }

  Status sendDirect(const std::string& data, Clock::time_point deadline) {
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

  Result<std::string> readDirect(Clock::time_point deadline) {
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

  // The session ended: its output sockets are closed (the client reads what they hold, then EOF) and its
  // exit eventfd fires. `failure`: why it ended without an exit event.
  static void endLocked(AgentSessionState& session, std::optional<Error> failure) {
    if (session.ended) return;
    session.ended = true;
    if (failure && !session.exit) session.failure = std::move(failure);
    session.inputPeer.reset();
    session.outputPeers[0].reset();
    session.outputPeers[1].reset();
    const uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(session.exitEvent.get(), &one, sizeof(one));
  }

  void closeLocked(std::string why) {
    closed_ = true;
    closedWhy_ = std::move(why);
    for (auto& [number, session] : sessions_) endLocked(*session, unavailable("guest agent: {}", closedWhy_));
    sessions_.clear();
    lineReady_.notify_all();
  }

  // One line from the guest: a session's event goes to it, anything else to readLine.
  void routeLocked(std::string line) {
    const Json message = parseLine(line);
    const bool sessionEvent = message.is_object() && message.contains("session") &&
                              message.contains("event") && !message.contains("id");
    if (!sessionEvent) {
      if (lines_.size() >= kMaxQueuedLines) lines_.pop_front();
      lines_.push_back(std::move(line));
      lineReady_.notify_all();
      return;
    }
    try {
      auto found = sessions_.find(message.at("session").get<int64_t>());
      if (found == sessions_.end()) return;  // dropped by the host, or an event crossing its "close"
      AgentSessionState& session = *found->second;
      const std::string event = message.at("event").get<std::string>();
      if (event == "output") {
        const int stream = message.value("stream", "stdout") == "stderr" && !session.tty ? 1 : 0;
        auto bytes = base64Decode(message.at("data").get<std::string>());
        if (!bytes) throw std::invalid_argument("\"data\" is not base64");
        if (session.pending[stream].size() + bytes->size() > kAgentSessionWindow)
          throw std::invalid_argument("output beyond the flow-control window");
        session.pending[stream] += *bytes;
      } else if (event == "written") {
        session.inputInFlight -= std::min(session.inputInFlight, message.at("bytes").get<uint64_t>());
      } else if (event == "exit") {
        session.exit = StdioExit{optionalInt(message, "exit_code"), optionalInt(message, "signal")};
      }
    } catch (const std::exception& e) {
      auto found = sessions_.find(message.value("session", int64_t{0}));
      if (found == sessions_.end()) return;
      queueLocked({{"op", "close"}, {"session", found->first}});
      endLocked(*found->second, internalError("guest session: malformed event: {}", e.what()));
      sessions_.erase(found);
    }
  }

  // The socketpairs' side of each session: output written (and acked to the guest), input read within the
  // window, the session ended once its exit came and its output is out.
  void moveSessionBytesLocked() {
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      AgentSessionState& session = *it->second;
      for (int stream = 0; stream < 2; ++stream) {
        std::string& pending = session.pending[stream];
        if (pending.empty() || !session.outputPeers[stream]) continue;
        const ssize_t n = ::send(session.outputPeers[stream].get(), pending.data(), pending.size(),
                                 MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          pending.erase(0, static_cast<size_t>(n));
          queueLocked({{"op", "ack"}, {"session", session.number}, {"bytes", n}});
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          pending.clear();  // the client closed its end: the output has nowhere to go
          session.outputPeers[stream].reset();
          if (session.tty) session.inputPeer.reset();
        }
      }
      while (session.stdinOpen && !session.inputEnded && session.inputPeer &&
             session.inputInFlight < kAgentSessionWindow) {
        char chunk[kAgentSessionChunk];
        const size_t room = std::min(sizeof(chunk), kAgentSessionWindow - session.inputInFlight);
        const ssize_t n = ::recv(session.inputPeer.get(), chunk, room, MSG_DONTWAIT);
        if (n > 0) {
          queueLocked({{"op", "input"},
                       {"session", session.number},
                       {"data", base64Encode(std::string_view(chunk, static_cast<size_t>(n)))}});
          session.inputInFlight += static_cast<uint64_t>(n);
          continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
        // EOF (closeInput's shutdown, or the client closed the socket): pipes reach EOF in the guest.
        session.inputEnded = true;
        if (!session.tty) queueLocked({{"op", "close_input"}, {"session", session.number}});
      }
      const bool written = session.pending[0].empty() && session.pending[1].empty();
      if (session.exit && written) {
        endLocked(session, std::nullopt);
        it = sessions_.erase(it);
      } else {
        ++it;
      }
    }
  }

  void pump() {
    std::unique_lock lock(mutex_);
    // Lines a blocking call read past its answer are the pump's now.
    for (size_t newline; (newline = buffer_.find('\n')) != std::string::npos;) {
      std::string line = buffer_.substr(0, newline);
      buffer_.erase(0, newline + 1);
      routeLocked(std::move(line));
    }
    while (!stopping_ && !closed_) {
      moveSessionBytesLocked();
      std::vector<pollfd> fds = {
          {wake_.get(), POLLIN, 0},
          {fd_.get(), static_cast<short>(POLLIN | (outgoing_.empty() ? 0 : POLLOUT)), 0}};
      for (const auto& [number, session] : sessions_) {
        for (int stream = 0; stream < 2; ++stream) {
          if (!session->pending[stream].empty() && session->outputPeers[stream])
            fds.push_back({session->outputPeers[stream].get(), POLLOUT, 0});
        }
        if (session->stdinOpen && !session->inputEnded && session->inputPeer &&
            session->inputInFlight < kAgentSessionWindow)
          fds.push_back({session->inputPeer.get(), POLLIN, 0});
      }
      lock.unlock();
      const int ready = ::poll(fds.data(), fds.size(), -1);
      lock.lock();
      if (ready < 0 && errno != EINTR) {
        closeLocked(fmt::format("poll: {}", std::strerror(errno)));
        break;
      }
      uint64_t wakes = 0;
      [[maybe_unused]] const auto drained = ::read(wake_.get(), &wakes, sizeof(wakes));
      if (!outgoing_.empty()) {
        const ssize_t n = ::send(fd_.get(), outgoing_.data(), outgoing_.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          outgoing_.erase(0, static_cast<size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          closeLocked(fmt::format("send: {}", std::strerror(errno)));
          break;
        }
      }
      char chunk[65536];
      const ssize_t n = ::recv(fd_.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
      if (n == 0) {
        closeLocked("the guest closed the channel");
        break;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) {
        closeLocked(fmt::format("read: {}", std::strerror(errno)));
        break;
      }
      if (n > 0) buffer_.append(chunk, static_cast<size_t>(n));
      for (size_t newline; (newline = buffer_.find('\n')) != std::string::npos;) {
        std::string line = buffer_.substr(0, newline);
        buffer_.erase(0, newline + 1);
        routeLocked(std::move(line));
      }
      if (buffer_.size() > kAgentMaxLine) {
        closeLocked(fmt::format("line longer than {} bytes", kAgentMaxLine));
        break;
      }
    }
  }

  UniqueFd fd_;
  std::string buffer_;  // bytes read past the last full line
  std::mutex mutex_;
  std::condition_variable lineReady_;
  std::deque<std::string> lines_;  // lines for readLine, once the pump runs
  std::string outgoing_;           // lines for the guest the pump has not written yet
  std::map<int64_t, std::shared_ptr<AgentSessionState>> sessions_;
  UniqueFd wake_;  // eventfd: the pump looks at outgoing_ and sessions_ again
  bool stopping_ = false;
  bool closed_ = false;
  std::string closedWhy_;
  std::thread thread_;
};

namespace {

// StdioSession over an agent session: the daemon's ends of the socketpairs the pump serves.
class AgentSession final : public StdioSession {
 public:
  AgentSession(std::shared_ptr<AgentChannel> channel, std::shared_ptr<AgentSessionState> state,
               UniqueFd input, UniqueFd output, UniqueFd error)
      : channel_(std::move(channel)),
        state_(std::move(state)),
        input_(std::move(input)),
        output_(std::move(output)),
        error_(std::move(error)) {}
  ~AgentSession() override { channel_->dropSession(state_->number); }

  bool tty() const override { return state_->tty; }
  int inputFd() const override { return state_->tty ? output_.get() : input_.get(); }
  int outputFd() const override { return output_.get(); }
  int errorFd() const override { return state_->tty ? -1 : error_.get(); }
  void closeInput() override {
    if (!state_->tty && input_) ::shutdown(input_.get(), SHUT_WR);
  }
  Status resize(TerminalSize size) override {
    if (!state_->tty) return {};
    if (!channel_->sendOnSession(
            state_->number,
            {{"op", "resize"}, {"session", state_->number}, {"rows", size.rows}, {"cols", size.cols}}))
      return fail(conflict("the session has ended"));
    return {};
  }
  int exitFd() const override { return state_->exitEvent.get(); }
  Result<StdioExit> exitStatus() override {
    std::lock_guard lock(channel_->mutex());
    if (state_->exit) return *state_->exit;
    if (state_->failure) return fail(*state_->failure);
    return fail(conflict("the program still runs"));
  }
  void detach() override { channel_->dropSession(state_->number); }

 private:
  std::shared_ptr<AgentChannel> channel_;
  std::shared_ptr<AgentSessionState> state_;
  UniqueFd input_, output_, error_;  // the daemon's ends; a tty: output_ only, both ways
};

Result<std::pair<UniqueFd, UniqueFd>> socketPair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, fds) != 0)
    return fail(systemError(errno, "socketpair(AF_UNIX)"));
  return std::pair{UniqueFd(fds[0]), UniqueFd(fds[1])};
}

}  // namespace

AgentClient::AgentClient(UniqueFd fd) : channel_(std::make_shared<AgentChannel>(std::move(fd))) {}

Result<std::unique_ptr<StdioSession>> AgentClient::openSession(const StdioRequest& request,
                                                               Clock::time_point deadline) {
  if (ready_.version < kAgentSessionsSince)
    return fail(
        conflict("the guest agent speaks protocol version {}; interactive sessions need {} (an image "
                 "or warm snapshot made before them: remake it)",
                 ready_.version, kAgentSessionsSince));
  // Bad input is refused here, naming the field, before anything reaches the guest.
  if (!request.command.empty() && request.command.front().empty())
    return fail(invalidField("command", "command[0] is empty"));
  for (const auto& entry : request.env) {
    if (entry.find('=') == std::string::npos || entry.front() == '=')
      return fail(invalidField("env", "env entry \"{}\" is not K=V", entry));
  }
  auto state = std::make_shared<AgentSessionState>();
  state->number = takeId();
  state->tty = request.tty;
  state->stdinOpen = request.stdinOpen;
  state->exitEvent = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!state->exitEvent) return fail(systemError(errno, "eventfd"));
  UniqueFd input, output, error;
  auto pairInto = [](UniqueFd& daemonEnd, UniqueFd& pumpEnd) -> Status {
    auto pair = socketPair();
    if (!pair) return fail(pair.error());
    daemonEnd = std::move(pair->first);
    pumpEnd = std::move(pair->second);
    return {};
  };
  if (auto made = pairInto(output, state->outputPeers[0]); !made) return fail(made.error());
  if (request.tty) {
    state->inputPeer = UniqueFd(::fcntl(state->outputPeers[0].get(), F_DUPFD_CLOEXEC, 0));
    if (!state->inputPeer) return fail(systemError(errno, "fcntl(F_DUPFD_CLOEXEC)"));
  } else {
    if (auto made = pairInto(input, state->inputPeer); !made) return fail(made.error());
    if (auto made = pairInto(error, state->outputPeers[1]); !made) return fail(made.error());
  }
  const int64_t number = state->number;
  if (auto added = channel_->addSession(state); !added) return fail(added.error().wrap("guest open"));
  const int64_t id = takeId();
  Json open = {{"id", id},
               {"op", "open"},
               {"session", number},
               {"command", request.command},
               {"env", request.env},
               {"tty", request.tty},
               {"stdin", request.stdinOpen},
               {"rows", request.size.rows},
               {"cols", request.size.cols}};
  auto session =
      std::make_unique<AgentSession>(channel_, state, std::move(input), std::move(output), std::move(error));
  auto line = roundTrip(id, open.dump(), "open", deadline);
  if (!line) return fail(line.error());  // the session's destructor drops it
  auto answer = checkedAnswer(*line, "open");
  if (!answer) {
    channel_->dropSession(number, /*tellGuest=*/false);
    // The guest could not start the command (no such program): the request's fault, named.
    const Json refusal = parseLine(*line);
    if (refusal.is_object() && refusal.value("field", "") == "command")
      return fail(invalidField("command", "{}", answer.error().message()));
    return fail(answer.error());
  }
  if (!answeredOk(*answer)) return fail(internalError("guest open: malformed answer \"{}\"", *line));
  return std::unique_ptr<StdioSession>(std::move(session));
}

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
  return channel_->sendLine(line, deadline);
}

Result<std::string> AgentClient::readLine(Clock::time_point deadline) {
  return channel_->readLine(deadline);
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
  request["nameserver"] = identity.nameserver ? Json(*identity.nameserver) : Json(nullptr);
  request["search"] = identity.search ? Json(*identity.search) : Json(nullptr);
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
