// One real probe between network namespaces (net/probe.h). Sockets are made on helper threads that join a
// namespace (runInNetnsFd); a socket stays in the namespace it was made in, so the waiting happens here.
#include "net/probe.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"
#include "net/netns.h"

namespace corral::net {
namespace {

Result<sockaddr_in> socketAddress(const std::string& address, uint16_t port) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  if (::inet_pton(AF_INET, address.c_str(), &sa.sin_addr) != 1)
    return fail(internalError("probe: \"{}\" is no IPv4 address", address));
  return sa;
}

// A socket of `type` made inside the namespace `netns`.
Result<UniqueFd> socketIn(int netns, std::string_view label, int type, int protocol) {
  return runInNetnsFd(netns, label, [&]() -> Result<UniqueFd> {
    UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, protocol));
    if (!fd) return fail(systemError(errno, fmt::format("socket(AF_INET, {}) in the {}", type, label)));
    return fd;
  });
}

Status bindTo(const UniqueFd& fd, const std::string& address, uint16_t port) {
  auto sa = socketAddress(address, port);
  if (!sa) return fail(sa.error());
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&*sa), sizeof *sa) != 0)
    return fail(systemError(errno, fmt::format("bind({}:{})", address, port)));
  return {};
}

// Whether `events` showed up on `fd` within `timeout`.
bool waitFor(int fd, short events, std::chrono::milliseconds timeout) {
  pollfd p{.fd = fd, .events = events, .revents = 0};
  int ready;
  do {
    ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  return ready == 1 && (p.revents & events) != 0;
}

ProbeResult reached(std::string detail) {
  return {.verdict = ProbeVerdict::Reached, .detail = std::move(detail)};
}
ProbeResult blocked(std::string detail) {
  return {.verdict = ProbeVerdict::Blocked, .detail = std::move(detail)};
}

std::string noAnswer(std::string_view what, std::chrono::milliseconds timeout) {
  return fmt::format("{} within {} ms: dropped on the way", what, timeout.count());
}

Result<ProbeResult> probeTcp(const ProbeSpec& spec) {
  const uint16_t listenPort = spec.listenPort != 0 ? spec.listenPort : spec.port;
  // The destination's listener for the duration; a program of the destination already on the port keeps
  // it (EADDRINUSE), and then the handshake alone decides.
  auto listener = socketIn(spec.toNetns, "destination's namespace", SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (!listener) return fail(listener.error());
  int one = 1;
  ::setsockopt(listener->get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  bool ownListener = true;
  if (Status bound = bindTo(*listener, "0.0.0.0", listenPort); !bound) {
    if (bound.error().errnum() != EADDRINUSE) return fail(bound.error());
    ownListener = false;
  } else if (::listen(listener->get(), 4) != 0) {
    return fail(systemError(errno, "listen(probe listener)"));
  }

  auto client = socketIn(spec.fromNetns, "source's namespace", SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (!client) return fail(client.error());
  if (spec.fromAddress) {
    if (Status bound = bindTo(*client, *spec.fromAddress, 0); !bound) return fail(bound.error());
  }
  auto to = socketAddress(spec.address, spec.port);
  if (!to) return fail(to.error());
  if (::connect(client->get(), reinterpret_cast<const sockaddr*>(&*to), sizeof *to) != 0 &&
      errno != EINPROGRESS) {
    return blocked(fmt::format("connect: {}", std::strerror(errno)));
  }
  if (!waitFor(client->get(), POLLOUT, spec.timeout)) return blocked(noAnswer("no SYN-ACK", spec.timeout));
  int soError = 0;
  socklen_t length = sizeof soError;
  if (::getsockopt(client->get(), SOL_SOCKET, SO_ERROR, &soError, &length) != 0)
    return fail(systemError(errno, "getsockopt(SO_ERROR)"));
  if (soError == ECONNREFUSED) {
    // A reset: the SYN got to the destination's kernel, which had no listener for it (corral's guards
    // drop, they never answer).
    return reached("connection refused by the destination (the SYN arrived; nothing listens there)");
  }
  if (soError != 0) return blocked(fmt::format("connect: {}", std::strerror(soError)));
  if (!ownListener) return reached("the handshake completed (a program of the destination listens)");

  // The other way too: the listener accepts and answers, the client must read the answer.
  if (!waitFor(listener->get(), POLLIN, spec.timeout))
    return blocked("the handshake completed, but not with the probe's listener (answered on the way)");
  UniqueFd server(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!server) return fail(systemError(errno, "accept4(probe listener)"));
  if (::write(server.get(), "pong", 4) != 4) return fail(systemError(errno, "write(probe answer)"));
  if (!waitFor(client->get(), POLLIN, spec.timeout))
    return blocked(noAnswer("connected, but the answer did not come back", spec.timeout));
  char answer[8] = {};
  if (::read(client->get(), answer, sizeof answer) != 4 || std::memcmp(answer, "pong", 4) != 0)
    return blocked("connected, but the answer came back garbled");
  return reached("connected, and the answer came back");
}

Result<ProbeResult> probeUdp(const ProbeSpec& spec) {
  const uint16_t listenPort = spec.listenPort != 0 ? spec.listenPort : spec.port;
  auto receiver = socketIn(spec.toNetns, "destination's namespace", SOCK_DGRAM | SOCK_NONBLOCK, 0);
  if (!receiver) return fail(receiver.error());
  if (Status bound = bindTo(*receiver, "0.0.0.0", listenPort); !bound) {
    if (bound.error().errnum() != EADDRINUSE) return fail(bound.error());
    return ProbeResult{
        .verdict = ProbeVerdict::Undetermined,
        .detail = fmt::format("port {}/udp is taken in the destination: a datagram would go to "
                              "its program, where the probe cannot see it",
                              listenPort)};
  }
  auto sender = socketIn(spec.fromNetns, "source's namespace", SOCK_DGRAM, 0);
  if (!sender) return fail(sender.error());
  if (spec.fromAddress) {
    if (Status bound = bindTo(*sender, *spec.fromAddress, 0); !bound) return fail(bound.error());
  }
  auto to = socketAddress(spec.address, spec.port);
  if (!to) return fail(to.error());
  if (::sendto(sender->get(), "ping", 4, 0, reinterpret_cast<const sockaddr*>(&*to), sizeof *to) != 4)
    return blocked(fmt::format("sendto: {}", std::strerror(errno)));
  if (!waitFor(receiver->get(), POLLIN, spec.timeout)) return blocked(noAnswer("no datagram", spec.timeout));
  char data[8] = {};
  if (::recv(receiver->get(), data, sizeof data, 0) != 4)
    return blocked("a datagram of another size arrived");
  return reached("the datagram arrived");
}

uint16_t icmpChecksum(const uint8_t* data, size_t length) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < length; i += 2) sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
  if (length % 2 != 0) sum += static_cast<uint32_t>(data[length - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// An echo request on a raw socket (no ping binary needed), answered by the destination's kernel.
Result<ProbeResult> probeIcmp(const ProbeSpec& spec) {
  auto raw = socketIn(spec.fromNetns, "source's namespace", SOCK_RAW, IPPROTO_ICMP);
  if (!raw) return fail(raw.error());
  if (spec.fromAddress) {
    if (Status bound = bindTo(*raw, *spec.fromAddress, 0); !bound) return fail(bound.error());
  }
  const uint16_t id = spec.icmpId;
  uint8_t request[16] = {
      8,   0,   0,   0,  static_cast<uint8_t>(id >> 8), static_cast<uint8_t>(id), 0, 1, 'c', 'o', 'r', 'r',
      'a', 'l', '!', '!'};
  const uint16_t sum = icmpChecksum(request, sizeof request);
  request[2] = static_cast<uint8_t>(sum >> 8);
  request[3] = static_cast<uint8_t>(sum);
  auto to = socketAddress(spec.address, 0);
  if (!to) return fail(to.error());
  if (::sendto(raw->get(), request, sizeof request, 0, reinterpret_cast<const sockaddr*>(&*to), sizeof *to) !=
      static_cast<ssize_t>(sizeof request))
    return blocked(fmt::format("sendto: {}", std::strerror(errno)));
  const auto deadline = std::chrono::steady_clock::now() + spec.timeout;
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !waitFor(raw->get(), POLLIN, left))
      return blocked(noAnswer("no echo reply", spec.timeout));
    uint8_t packet[256];
    ssize_t n = ::recv(raw->get(), packet, sizeof packet, 0);
    if (n < 20) continue;
    const size_t header = static_cast<size_t>(packet[0] & 0x0f) * 4;
    if (static_cast<size_t>(n) < header + 8) continue;
    const uint8_t* icmp = packet + header;
    if (icmp[0] == 0 && (icmp[4] << 8 | icmp[5]) == id) return reached("the echo reply came back");
  }
}

}  // namespace

std::string_view probeVerdictName(ProbeVerdict verdict) {
  switch (verdict) {
    case ProbeVerdict::Reached:
      return "reached";
    case ProbeVerdict::Blocked:
      return "blocked";
    case ProbeVerdict::Undetermined:
      return "undetermined";
  }
  return "unknown";
}

Result<ProbeResult> sendProbe(const ProbeSpec& spec) {
  switch (spec.protocol) {
    case Protocol::Tcp:
      return probeTcp(spec);
    case Protocol::Udp:
      return probeUdp(spec);
    case Protocol::Icmp:
      return probeIcmp(spec);
    case Protocol::All:
      break;
  }
  return fail(invalidField("protocol", "a probe is tcp, udp or icmp"));
}

}  // namespace corral::net
