// QMP over a unix socket: line-delimited JSON (QEMU ends every message with CRLF), commands tagged with an
// id so a stale answer never matches, events queued while a command waits for its answer.
#include "vmm/qmp.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>

namespace corral::vmm {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;

int pollTimeoutMs(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<int64_t>(left, 60'000));
}

QmpEvent toEvent(const Json& message) {
  QmpEvent event{message.value("event", ""), Json::object()};
  if (message.contains("data") && message["data"].is_object()) event.data = message["data"];
  return event;
}

}  // namespace

Result<QmpClient> QmpClient::connect(const std::filesystem::path& socket, Clock::time_point deadline) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  const std::string path = socket.string();
  if (path.size() >= sizeof(address.sun_path))
    return fail(invalidField("qmp_socket", "socket path \"{}\" is too long for sockaddr_un", path));
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return fail(systemError(errno, "socket(AF_UNIX)"));
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) < 0) {
    const int error = errno;
    Error failed = systemError(error, fmt::format("connect(\"{}\")", path));
    // No QEMU behind the socket (gone, or never there): not an internal failure.
    if (error == ENOENT || error == ECONNREFUSED)
      return fail(Error(ErrorKind::Unavailable, failed.message()));
    return fail(std::move(failed));
  }
  return fromConnected(std::move(fd), deadline);
}

Result<QmpClient> QmpClient::fromConnected(UniqueFd fd, Clock::time_point deadline) {
  QmpClient client(std::move(fd));
  if (Status ok = client.handshake(deadline); !ok) return fail(ok.error());
  return client;
}

Status QmpClient::handshake(Clock::time_point deadline) {
  auto greeting = readMessage(deadline);
  if (!greeting) return fail(greeting.error().wrap("qmp greeting"));
  if (!greeting->contains("QMP") || !(*greeting)["QMP"].is_object())
    return fail(internalError("qmp greeting: not a QMP greeting: {}", greeting->dump()));
  greeting_ = (*greeting)["QMP"];
  auto negotiated = execute("qmp_capabilities", nullptr, deadline);
  if (!negotiated) return fail(negotiated.error());
  return {};
}

Result<Json> QmpClient::readMessage(Clock::time_point deadline) {
  for (;;) {
    if (size_t end = buffer_.find('\n'); end != std::string::npos) {
      std::string line = buffer_.substr(0, end);
      buffer_.erase(0, end + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty()) continue;
      Json message = Json::parse(line, nullptr, false);
      if (message.is_discarded() || !message.is_object())
        return fail(internalError("qmp: not a JSON object: {}", line.substr(0, 200)));
      return message;
    }
    if (closed_) return fail(unavailable("qmp: QEMU closed the monitor"));
    pollfd in{fd_.get(), POLLIN, 0};
    const int ready = ::poll(&in, 1, pollTimeoutMs(deadline));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return fail(systemError(errno, "poll(qmp)"));
    if (ready == 0) return fail(unavailable("qmp: no answer from QEMU in time"));
    char chunk[8192];
    const ssize_t n = ::read(fd_.get(), chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return fail(systemError(errno, "read(qmp)"));
    if (n == 0) {
      closed_ = true;
      continue;
    }
    buffer_.append(chunk, static_cast<size_t>(n));
  }
}

Result<Json> QmpClient::execute(std::string_view command, const Json& arguments, Clock::time_point deadline,
                                int passFd) {
  const int64_t id = nextId_++;
  Json request = {{"execute", command}, {"id", id}};
  if (!arguments.is_null()) request["arguments"] = arguments;
  std::string line = request.dump() + "\n";
  std::string_view left = line;
  while (!left.empty()) {
    iovec data{const_cast<char*>(left.data()), left.size()};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (passFd >= 0) {  // with the first bytes of the request, as QEMU expects
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(header), &passFd, sizeof(int));
    }
    const ssize_t n = ::sendmsg(fd_.get(), &message, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      pollfd out{fd_.get(), POLLOUT, 0};
      if (::poll(&out, 1, pollTimeoutMs(deadline)) <= 0)
        return fail(unavailable("qmp {}: QEMU does not read its monitor", command));
      continue;
    }
    if (n < 0) {
      const int error = errno;
      if (error == EPIPE || error == ECONNRESET)
        return fail(unavailable("qmp {}: QEMU closed the monitor", command));
      return fail(systemError(error, fmt::format("qmp {}: send", command)));
    }
    left.remove_prefix(static_cast<size_t>(n));
    passFd = -1;
  }
  for (;;) {
    auto message = readMessage(deadline);
    if (!message) return fail(message.error().wrap(fmt::format("qmp {}", command)));
    if (message->contains("event")) {
      events_.push_back(toEvent(*message));
      continue;
    }
    if (!message->contains("id") || (*message)["id"] != id) continue;  // an answer to someone else
    if (message->contains("error")) {
      const Json& error = (*message)["error"];
      return fail(
          internalError("qmp {}: {}: {}", command, error.value("class", "Error"), error.value("desc", "")));
    }
    return message->contains("return") ? (*message)["return"] : Json::object();
  }
}

Result<QmpEvent> QmpClient::nextEvent(Clock::time_point deadline) {
  for (;;) {
    if (!events_.empty()) {
      QmpEvent event = std::move(events_.front());
      events_.pop_front();
      return event;
    }
    auto message = readMessage(deadline);
    if (!message) return fail(message.error());
    if (message->contains("event")) return toEvent(*message);
  }
}

}  // namespace corral::vmm
