// One real probe through the kernel, the counterpart of the reachability analyzer's verdict (net/reach.h):
// a TCP exchange, a UDP datagram or an ICMP echo from one network namespace to an address, with a
// listener of its own in the destination's namespace for the duration, so that "no answer" means a guard
// dropped it and not that nothing listened. Used by `corral reach --verify` and the reach property test.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/error.h"
#include "net/datapath.h"

namespace corral::net {

enum class ProbeVerdict {
  Reached,       // tcp: the handshake and one reply came through; udp: the datagram arrived; icmp: echo reply
  Blocked,       // nothing came through within the timeout, or the kernel said no route
  Undetermined,  // the probe could not be set up fairly (udp: the port is taken in the destination)
};
std::string_view probeVerdictName(ProbeVerdict verdict);  // "reached", "blocked", "undetermined"

struct ProbeResult {
  ProbeVerdict verdict = ProbeVerdict::Blocked;
  std::string detail;  // one sentence: "connected and answered", "no answer within 600 ms", ...
};

struct ProbeSpec {
  Protocol protocol = Protocol::Tcp;
  int fromNetns = -1;                      // a namespace fd (of /proc/PID/ns/net or /run/netns/NAME)
  std::optional<std::string> fromAddress;  // binds the sending socket (an address `fromNetns` holds)
  int toNetns = -1;                        // tcp, udp: where the listener goes; unused for icmp
  std::string address;                     // where the packet is sent
  uint16_t port = 0;                       // tcp, udp: the destination port the sender uses
  uint16_t listenPort = 0;                 // tcp, udp: the listener's port when it differs (a port forward)
  uint16_t icmpId = 0;                     // icmp: the echo identifier its reply is recognised by
  std::chrono::milliseconds timeout{600};  // for each wait (connect, accept, reply)
};

// Sends the probe and says what came through. TCP with a program of the destination already listening on
// the port uses that listener (the handshake decides). Errors: this side failed (a namespace that cannot
// be joined, a socket, a malformed address), never "blocked".
Result<ProbeResult> sendProbe(const ProbeSpec& spec);

}  // namespace corral::net
