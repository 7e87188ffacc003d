// The host side of the guest agent (vmm/agent_protocol.h): connects to the unix socket libvirt made for the
// virtio-serial channel, waits for the guest's "ready", runs commands, asks for a shutdown, opens
// interactive sessions. Blocking calls with deadlines; one client per VM, used by one thread at a time (the
// daemon serialises per instance). Once a session is open, a thread of the client's own reads the channel:
// it routes the sessions' events to their descriptors and hands every other line to the blocking calls.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "core/stdio_session.h"
#include "core/unique_fd.h"

namespace corral::vmm {

struct GuestReady {
  int64_t uptimeMs = 0;       // guest CLOCK_BOOTTIME when ready
  int64_t initStartedMs = 0;  // guest CLOCK_BOOTTIME when /init began
  std::string kernel;         // the guest's uname -r
  std::string hostname;
  int version = 1;  // the protocol the guest speaks (kAgentProtocolVersion when it is current)
};

// The guest's "poweroff" event (vmm/agent_protocol.h): why its init powered off, how the workload ended.
struct GuestPoweroff {
  std::string reason;
  bool workloadEnded = false;
  std::optional<int> workloadExitCode;
  std::optional<int> workloadSignal;
};

struct ExecResult {
  std::optional<int> exitCode;
  std::optional<int> signal;
  std::string stdoutText;
  std::string stderrText;
  bool truncated = false;
  bool timedOut = false;
};

// What set_identity gives a VM restored from a shared snapshot (see agent_protocol.h).
struct GuestIdentity {
  std::string hostname;
  std::optional<std::string> mac;  // "52:54:00:xx:xx:xx"; none: no NIC
  std::optional<std::string> ip;   // "A.B.C.D/LEN" (with a MAC); none: eth0 stays down
  std::optional<std::string> gateway;
  std::optional<std::string> nameserver;  // "A.B.C.D": the guest rewrites /etc/resolv.conf; none: left alone
  std::optional<std::string> search;      // the resolver's search domain (with a nameserver)
};
struct IdentityAnswer {
  std::string hostname;
  std::optional<std::string> mac;  // eth0's address as the guest reads it back; none: not asked
  size_t seededBytes = 0;
};

class AgentChannel;

class AgentClient {
 public:
  // Connects (retrying while the socket does not exist yet or refuses) and waits for "ready": reads the
  // unsolicited event, and sends {"op":"hello"} every 500 ms in case it was sent before we connected.
  // Deadline passed → ErrorKind::Unavailable "guest agent not ready after N ms".
  static Result<AgentClient> connect(const std::filesystem::path& socket,
                                     std::chrono::steady_clock::time_point deadline);
  // The same wait for "ready" on a stream socket that is already connected (tests use a socketpair).
  static Result<AgentClient> fromConnected(UniqueFd fd, std::chrono::steady_clock::time_point deadline);
  const GuestReady& ready() const { return ready_; }

  Result<ExecResult> exec(const std::vector<std::string>& command, const std::vector<std::string>& env,
                          std::chrono::milliseconds timeout);
  Status shutdown();  // sends shutdown and waits for the "ok" (the guest powers off after it)
  // Once the guest is gone: its "poweroff" event, if it sent one (read here until the channel closes or
  // `deadline`, or seen earlier while awaiting an answer).
  std::optional<GuestPoweroff> lastWords(std::chrono::steady_clock::time_point deadline);
  // set_clock: the guest's CLOCK_REALTIME becomes the host's now (the request carries the host's time as it
  // is sent; the channel's latency, well under a millisecond, is not corrected).
  Status setClock(std::chrono::steady_clock::time_point deadline);
  // set_identity: `identity` plus kIdentitySeedBytes from the host's getrandom() and the host's now. The
  // answer is checked: the guest must report the hostname and MAC it was given.
  Result<IdentityAnswer> setIdentity(const GuestIdentity& identity,
                                     std::chrono::steady_clock::time_point deadline);
  // open: `request` runs in the guest on a pty or pipes (vmm/agent_protocol.h "open"). The session's
  // descriptors are socketpairs this client's reader thread pumps, its exitFd an eventfd; it stays usable
  // after this client is gone (the channel lives as long as a session does), and ends with an error when the
  // channel closes. A guest older than protocol version 2: ErrorKind::Conflict.
  Result<std::unique_ptr<StdioSession>> openSession(const StdioRequest& request,
                                                    std::chrono::steady_clock::time_point deadline);

 private:
  explicit AgentClient(UniqueFd fd);
  Status sendLine(const std::string& line, std::chrono::steady_clock::time_point deadline);
  // The next full line; ErrorKind::Unavailable when the deadline passes or the guest closes the channel.
  Result<std::string> readLine(std::chrono::steady_clock::time_point deadline);
  // Reads lines until the answer carrying `id`, skipping stale answers and repeated "ready" events.
  Result<std::string> awaitAnswer(int64_t id, std::chrono::steady_clock::time_point deadline);
  // sendLine(request) then awaitAnswer(id), failures named "guest OP".
  Result<std::string> roundTrip(int64_t id, const std::string& request, std::string_view op,
                                std::chrono::steady_clock::time_point deadline);
  // Request ids are unique in the whole process, not per connection: the guest keeps answering hellos a
  // previous connection left in the channel, and such a stale answer must never match a new request.
  static int64_t takeId();
  std::shared_ptr<AgentChannel> channel_;  // the connection, shared with the sessions
  GuestReady ready_;
  std::optional<GuestPoweroff> poweroff_;
};

}  // namespace corral::vmm
