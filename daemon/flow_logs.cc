// VPC flow logs in corrald (daemon/flow_logs.h).
#include "daemon/flow_logs.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <chrono>

#include "core/log.h"

namespace corral::daemon {
namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

ino_t netnsInode(const std::string& netns) {
  struct stat st {};
  if (::stat(("/run/netns/" + netns).c_str(), &st) != 0) return 0;
  return st.st_ino;
}

}  // namespace

FlowLogs::FlowLogs(Store& store, int captureBuffer) : store_(store), captureBuffer_(captureBuffer) {
  flusher_ = std::thread([this] {
    std::unique_lock lock(stopMutex_);
    while (!stopping_) {
      stopSignal_.wait_for(lock, std::chrono::seconds(1));
      if (stopping_) break;
      lock.unlock();
      flush();
      lock.lock();
    }
  });
}

FlowLogs::~FlowLogs() {
  {
    std::lock_guard lock(stopMutex_);
    stopping_ = true;
  }
  stopSignal_.notify_all();
  if (flusher_.joinable()) flusher_.join();
  {
    std::lock_guard lock(mutex_);
    for (auto& [vpc, watched] : watched_) watched.capture.reset();
  }
  flush(/*everything=*/true);
}

bool FlowLogs::updateNics(const std::string& vpc, const std::string& netns,
                          const std::vector<std::pair<uint32_t, std::optional<net::FlowEndpoint>>>& nics) {
  std::lock_guard lock(mutex_);
  auto it = watched_.find(vpc);
  // The same test as watch()'s: only a capture reading that very namespace keeps its directory.
  if (it == watched_.end() || !it->second.capture || it->second.netns != netns ||
      it->second.inode != netnsInode(netns))
    return false;
  std::lock_guard flowsLock(it->second.flows->mutex);
  std::map<uint32_t, net::FlowEndpoint>& directory = it->second.flows->directory.nics;
  for (const auto& [address, endpoint] : nics) {
    if (endpoint) {
      directory.insert_or_assign(address, *endpoint);
    } else {
      directory.erase(address);
    }
  }
  return true;
}

Status FlowLogs::watch(const std::string& vpc, const std::string& netns, net::FlowDirectory directory) {
  std::unique_ptr<net::FlowCapture> replaced;  // stopped outside the lock
  std::lock_guard lock(mutex_);
  const ino_t inode = netnsInode(netns);
  auto it = watched_.find(vpc);
  if (it != watched_.end() && it->second.capture && it->second.netns == netns && it->second.inode == inode) {
    std::lock_guard flowsLock(it->second.flows->mutex);
    it->second.flows->directory = std::move(directory);
    return {};
  }
  std::shared_ptr<VpcFlows> flows = it != watched_.end() ? it->second.flows : std::make_shared<VpcFlows>(vpc);
  {
    std::lock_guard flowsLock(flows->mutex);
    flows->directory = std::move(directory);
  }
  if (it != watched_.end()) replaced = std::move(it->second.capture);
  replaced.reset();  // its sockets belong to a namespace that is gone, or another one
  net::FlowCaptureSink sink{
      .rejected =
          [flows](const net::RejectedPacket& packet) {
            std::lock_guard flowsLock(flows->mutex);
            flows->aggregator.addRejected(packet, flows->directory);
          },
      .flow =
          [flows](const net::ConntrackFlow& flow) {
            std::lock_guard flowsLock(flows->mutex);
            flows->aggregator.addFlow(flow, flows->directory, nowMs());
          },
      .dumped =
          [flows](const std::vector<uint32_t>& live) {
            std::lock_guard flowsLock(flows->mutex);
            flows->aggregator.forgetAllBut(live);
          },
      .lost =
          [vpc, flows](net::FlowAction kind, const std::string& what) {
            log::warn("flow logs of vpc \"{}\": {}", vpc, what);
            std::lock_guard flowsLock(flows->mutex);
            flows->aggregator.noteLost(nowMs(), kind, what);
          },
  };
  auto capture = net::FlowCapture::start(netns, std::chrono::milliseconds(net::kFlowWindowMs), captureBuffer_,
                                         std::move(sink));
  watched_[vpc] = Watched{
      .netns = netns, .inode = inode, .flows = flows, .capture = capture ? std::move(*capture) : nullptr};
  if (!capture) return fail(std::move(capture.error()).wrap(fmt::format("flow logs of vpc \"{}\"", vpc)));
  log::info("flow logs of vpc \"{}\": reading netns \"{}\"", vpc, netns);
  return {};
}

void FlowLogs::forget(const std::string& vpc) {
  Watched gone;
  {
    std::lock_guard lock(mutex_);
    auto it = watched_.find(vpc);
    if (it != watched_.end()) {
      gone = std::move(it->second);
      watched_.erase(it);
    }
  }
  gone.capture.reset();
  if (auto ok = store_.deleteFlowLogs(vpc); !ok) log::warn("{}", ok.error().message());
  revision_++;
}

void FlowLogs::flush(bool everything) {
  std::lock_guard flushLock(flushing_);
  std::vector<std::shared_ptr<VpcFlows>> all;
  {
    std::lock_guard lock(mutex_);
    for (auto& [vpc, watched] : watched_) all.push_back(watched.flows);
  }
  std::vector<Store::NewFlowLog> rows;
  const int64_t now = nowMs();
  for (const auto& flows : all) {
    std::vector<net::FlowRecord> records;
    {
      std::lock_guard flowsLock(flows->mutex);
      records = flows->aggregator.take(now, everything);
    }
    std::vector<net::FlowRecord*> accepted;
    for (net::FlowRecord& record : records) {
      if (record.connection) accepted.push_back(&record);
    }
    if (!accepted.empty()) {
      std::lock_guard explainLock(explainMutex_);
      if (explainer_) explainer_(accepted.front()->vpc, accepted);
    }
    for (const net::FlowRecord& record : records) {
      // A SKIPDATA record is filed under the kind of records it lost (it shows no action, as in AWS).
      rows.push_back({.vpc = record.vpc,
                      .subnet = record.subnet,
                      .instance = record.instance,
                      .action = std::string(net::flowActionName(record.action)),
                      .recordJson = net::flowRecordJson(record).dump()});
    }
  }
  if (rows.empty()) return;
  if (auto ok = store_.insertFlowLogs(rows, kFlowLogsPerVpc); !ok) {
    log::warn("flow logs: {} records lost: {}", rows.size(), ok.error().message());
    return;
  }
  revision_++;
}

void FlowLogs::setExplainer(FlowExplainer explainer) {
  std::lock_guard explainLock(explainMutex_);
  explainer_ = std::move(explainer);
}

Result<std::vector<net::FlowRecord>> FlowLogs::list(const FlowLogFilter& filter) const {
  auto rows = store_.listFlowLogs(filter);
  if (!rows) return fail(std::move(rows.error()));
  std::vector<net::FlowRecord> records;
  for (const FlowLogRow& row : *rows) {
    nlohmann::json json = nlohmann::json::parse(row.recordJson, nullptr, /*allow_exceptions=*/false);
    Result<net::FlowRecord> record = fail(invalidField("record", "not a JSON object"));
    if (json.is_object()) {
      json["id"] = row.id;
      record = net::flowRecordFromJson(json);
    }
    if (!record) {
      log::warn("flow logs: record {} in the store does not read: {}", row.id, record.error().message());
      continue;
    }
    records.push_back(std::move(*record));
  }
  return records;
}

}  // namespace corral::daemon
