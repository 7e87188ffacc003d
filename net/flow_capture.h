// The sys side of VPC flow logs: inside one VPC namespace, reads the rejected packets the ruleset logs to
// NFLOG group kFlowLogGroup (libnetfilter_log) and the accepted flows' conntrack counters (libnetfilter_
// conntrack: DESTROY events, and a dump every capture window for flows still open), on a thread of its own
// that entered the namespace, so every socket it opens is the namespace's. It turns on conntrack's byte
// accounting and timestamps there (net.netfilter.nf_conntrack_acct and _timestamp are per namespace).
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/error.h"
#include "net/flow_log.h"

namespace corral::net {

// The default receive buffer of the capture's sockets: a burst of short flows ends at once.
inline constexpr int kFlowCaptureBuffer = 4 << 20;

// Called on the capture's thread; keep them short.
struct FlowCaptureSink {
  std::function<void(const RejectedPacket&)> rejected;
  // An entry's counters so far (a dump), or at its end (flow.ended).
  std::function<void(const ConntrackFlow&)> flow;
  // After a whole dump: the ids of every entry the namespace has now.
  std::function<void(const std::vector<uint32_t>&)> dumped;
  // Messages the kernel could not queue for us (the socket's buffer was full): records of that kind are
  // missing (NFLOG: rejects; conntrack events: accepted flows that ended).
  std::function<void(FlowAction, const std::string&)> lost;
};

class FlowCapture {
 public:
  // Enters /run/netns/`netns` on a new thread, turns on accounting, opens the NFLOG group and the
  // conntrack sockets there; answers once they are open (or why not: the group taken by another reader
  // is EBUSY). `dumpEvery` is how often open flows are dumped; `receiveBuffer` is the NFLOG and conntrack
  // event sockets' receive buffer in bytes (SO_RCVBUFFORCE; the kernel doubles it and keeps a minimum):
  // what the kernel queues while this thread reads, beyond which it drops messages (sink.lost).
  static Result<std::unique_ptr<FlowCapture>> start(const std::string& netns,
                                                    std::chrono::milliseconds dumpEvery, int receiveBuffer,
                                                    FlowCaptureSink sink);
  // Stops the thread and closes the sockets (they hold the namespace alive until then).
  ~FlowCapture();
  FlowCapture(const FlowCapture&) = delete;
  FlowCapture& operator=(const FlowCapture&) = delete;

  const std::string& netns() const;
  struct State;

 private:
  explicit FlowCapture(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace corral::net
