// VPC flow logs in corrald: one capture per VPC namespace (net/flow_capture.h), its reports aggregated per
// capture window (net/flow_log.h) and the records kept in the store, the newest kFlowLogsPerVpc of each
// VPC, so they survive a restart. The reader threads are corrald's; the nft log rules are part of each
// VPC's ruleset, so a killed corrald leaves nothing that reconcile does not already handle. Records of a
// window still open when corrald is killed are lost (at most kFlowWindowMs of rejects; accepted flows are
// read again from conntrack).
#pragma once

#include <sys/types.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "daemon/store.h"
#include "net/flow_capture.h"
#include "net/flow_log.h"

namespace corral::daemon {

// How many records corrald keeps per VPC (older ones go as new ones come).
inline constexpr size_t kFlowLogsPerVpc = 10'000;

// Fills an accepted record's allowedBy from its connection (the model's answer: net::flowAllowedBy).
// Called with a batch of one VPC's records, at most once a second, outside every lock of FlowLogs.
using FlowExplainer = std::function<void(const std::string& vpc, std::vector<net::FlowRecord*>& accepted)>;

class FlowLogs {
 public:
  // `store` must outlive this object. `captureBuffer`: each capture's socket receive buffer in bytes
  // (corrald --flow-log-buffer); what the kernel drops past it is a SKIPDATA record.
  explicit FlowLogs(Store& store, int captureBuffer = net::kFlowCaptureBuffer);
  // Stops every capture, and stores what the open windows hold.
  ~FlowLogs();
  FlowLogs(const FlowLogs&) = delete;
  FlowLogs& operator=(const FlowLogs&) = delete;

  // Reads `vpc`'s namespace from now on (a capture is started unless one reads that very namespace) and
  // resolves addresses through `directory` (the NICs as they are now).
  Status watch(const std::string& vpc, const std::string& netns, net::FlowDirectory directory);
  // NICs joining (an endpoint) or leaving (nullopt) a VPC already read in that very namespace: its directory
  // patched in place, O(NICs changed). False (nothing done) when the VPC is not read there: watch() then.
  bool updateNics(const std::string& vpc, const std::string& netns,
                  const std::vector<std::pair<uint32_t, std::optional<net::FlowEndpoint>>>& nics);
  // The VPC is deleted: its capture stops (before its namespace goes: the sockets would hold it) and its
  // records go.
  void forget(const std::string& vpc);

  // The stored records `filter` wants, oldest first, each with its id.
  Result<std::vector<net::FlowRecord>> list(const FlowLogFilter& filter) const;
  // Moves whenever records are stored.
  uint64_t revision() const { return revision_.load(); }
  // Stores every closed window now (tests and shutdown; the flusher does it every second).
  void flush(bool everything = false);
  // Who says what allowed accepted flows (the network controller, which has the model); null: nobody,
  // their records name no rule. Waits for a running call to end, so that after it the old one is not
  // called again.
  void setExplainer(FlowExplainer explainer);

 private:
  struct VpcFlows {
    std::mutex mutex;
    net::FlowAggregator aggregator;
    net::FlowDirectory directory;
    explicit VpcFlows(std::string vpc) : aggregator(std::move(vpc)) {}
  };
  struct Watched {
    std::string netns;
    ino_t inode = 0;
    std::shared_ptr<VpcFlows> flows;
    std::unique_ptr<net::FlowCapture> capture;
  };

  Store& store_;
  int captureBuffer_;
  std::mutex explainMutex_;  // held while explainer_ runs
  FlowExplainer explainer_;
  mutable std::mutex mutex_;
  std::map<std::string, Watched, std::less<>> watched_;
  std::atomic<uint64_t> revision_{0};
  std::mutex flushing_;  // one flush at a time, so records are stored in the order they were taken
  std::mutex stopMutex_;
  std::condition_variable stopSignal_;
  bool stopping_ = false;
  std::thread flusher_;
};

}  // namespace corral::daemon
