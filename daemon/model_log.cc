#include "daemon/model_log.h"

#include <fmt/format.h>

#include <chrono>
#include <map>
#include <nlohmann/json.hpp>

#include "core/log.h"
#include "core/retry.h"

namespace corral::daemon {

using Json = nlohmann::json;
using namespace std::chrono_literals;

std::string modelEntryKey(uint64_t number) {
  return fmt::format("{}{:020}", kModelLogPrefix, number);
}

std::string encodeModelEntry(const ModelEntry& entry) {
  return Json{{"method", entry.method},
              {"target", entry.target},
              {"body", entry.body},
              {"now", entry.now},
              {"host", entry.host}}
      .dump();
}

Result<ModelEntry> decodeModelEntry(const std::string& key, const std::string& value) {
  auto bad = [&](std::string_view reason) {
    return fail(internalError("cluster model entry \"{}\": {}", key, reason));
  };
  if (!key.starts_with(kModelLogPrefix)) return bad("not under " + std::string(kModelLogPrefix));
  const std::string digits = key.substr(kModelLogPrefix.size());
  if (digits.size() != 20 || digits.find_first_not_of("0123456789") != std::string::npos)
    return bad("its number is not 20 digits");
  Json json = Json::parse(value, nullptr, false);
  if (!json.is_object()) return bad("the value is not a JSON object");
  ModelEntry entry;
  entry.number = std::stoull(digits);
  try {
    entry.method = json.at("method").get<std::string>();
    entry.target = json.at("target").get<std::string>();
    entry.body = json.at("body").get<std::string>();
    entry.now = json.at("now").get<int64_t>();
    entry.host = json.at("host").get<std::string>();
  } catch (const Json::exception& e) {
    return bad(e.what());
  }
  return entry;
}

ModelLog::~ModelLog() {
  stop_ = true;
  if (watcher_.joinable()) watcher_.join();
}

std::string encodeModelSnapshot(const ModelSnapshot& snapshot) {
  return Json{{"through", snapshot.through}, {"tables", snapshot.tables}}.dump();
}

Result<ModelSnapshot> decodeModelSnapshot(const std::string& value) {
  Json json = Json::parse(value, nullptr, false);
  if (!json.is_object() || !json.contains("through") || !json["through"].is_number_unsigned() ||
      !json.contains("tables") || !json["tables"].is_object())
    return fail(internalError("cluster model snapshot \"{}\": not {{\"through\": N, \"tables\": {{...}}}}",
                              kModelSnapshotKey));
  return ModelSnapshot{.through = json["through"].get<uint64_t>(), .tables = std::move(json["tables"])};
}

namespace {

// The entries in `kvs` after `after`, which must follow it without a gap.
Result<std::vector<ModelEntry>> entriesAfter(const std::vector<net::etcd::KeyValue>& kvs, uint64_t after) {
  std::vector<ModelEntry> entries;
  for (const net::etcd::KeyValue& kv : kvs) {
    auto entry = decodeModelEntry(kv.key, kv.value);
    if (!entry) return fail(std::move(entry.error()));
    if (entry->number <= after) continue;
    if (entry->number != after + 1 + entries.size())
      return fail(
          internalError("cluster model: entry {} follows entry {}", entry->number, after + entries.size()));
    entries.push_back(std::move(*entry));
  }
  return entries;
}

}  // namespace

Result<ModelTail> ModelLog::after(uint64_t applied) {
  auto client = client_();
  if (!client) return fail(std::move(client.error()).wrap("read the cluster's model"));
  // A read is safe to send again: while the members elect a new leader (the leader's host died a moment
  // ago) it is tried for up to 3 s before the caller sees "no quorum".
  auto retrying = [](auto&& read) {
    return retryWithin(
        3s, 200ms, [](const Error& error) { return error.kind() == ErrorKind::Unavailable; }, read);
  };
  auto read = retrying([&] {
    return (*client)->getRange(modelEntryKey(applied + 1), net::etcd::prefixRangeEnd(kModelLogPrefix));
  });
  if (!read) return fail(std::move(read.error()).wrap("read the cluster's model"));
  // The log holds entry applied + 1 when there is one: nothing was compacted past this host. A host that
  // applied nothing yet (joining) and finds no entry 1 looks for the snapshot; so does one that finds a gap.
  const bool compactedPast =
      read->kvs.empty() ? applied == 0 : read->kvs.front().key != modelEntryKey(applied + 1);
  ModelTail tail;
  uint64_t from = applied;
  if (compactedPast) {
    auto stored = retrying([&] { return (*client)->get(kModelSnapshotKey); });
    if (!stored) return fail(std::move(stored.error()).wrap("read the cluster's model snapshot"));
    if (!stored->kvs.empty()) {
      auto snapshot = decodeModelSnapshot(stored->kvs.front().value);
      if (!snapshot) return fail(std::move(snapshot.error()));
      if (snapshot->through > applied) {
        from = snapshot->through;
        tail.snapshot = std::move(*snapshot);
      }
    }
    // A compaction between the two reads deleted entries this read holds: those up to the snapshot's
    // number are in it, the rest follow it (none, when the read ended before it: the next read has them).
  }
  auto entries = entriesAfter(read->kvs, from);
  if (!entries) return fail(std::move(entries.error()));
  tail.entries = std::move(*entries);
  return tail;
}

Status ModelLog::recordApplied(const std::string& host, uint64_t applied) {
  auto client = client_();
  if (!client) return fail(std::move(client.error()).wrap("record the model entry applied"));
  auto put = (*client)->put(fmt::format("{}{}", kModelAppliedPrefix, host), std::to_string(applied));
  if (!put) return fail(std::move(put.error()).wrap("record the model entry applied"));
  return {};
}

Status ModelLog::forgetHost(const std::string& host) {
  auto client = client_();
  if (!client) return fail(std::move(client.error()).wrap("forget the model entry applied"));
  auto removed = (*client)->remove(fmt::format("{}{}", kModelAppliedPrefix, host));
  if (!removed) return fail(std::move(removed.error()).wrap("forget the model entry applied"));
  return {};
}

Result<CompactionResult> ModelLog::compact(const ModelSnapshot& snapshot) {
  auto wrap = [](Error error) { return fail(std::move(error).wrap("compact the cluster's model log")); };
  auto client = client_();
  if (!client) return wrap(std::move(client.error()));
  // The hosts, what each applied and the snapshot, read at one revision.
  constexpr std::string_view kHostsPrefix = "/corral/hosts/";
  auto read = (*client)->txn({}, {net::etcd::TxnOp::get(std::string(kHostsPrefix), true),
                                  net::etcd::TxnOp::get(std::string(kModelAppliedPrefix), true),
                                  net::etcd::TxnOp::get(std::string(kModelSnapshotKey))});
  if (!read) return wrap(std::move(read.error()));
  if (read->reads.size() != 3)
    return wrap(internalError("the read answered {} ranges, not 3", read->reads.size()));
  CompactionResult result;
  int64_t snapshotRevision = 0;
  if (!read->reads[2].kvs.empty()) {
    const net::etcd::KeyValue& kv = read->reads[2].kvs.front();
    auto stored = decodeModelSnapshot(kv.value);
    if (!stored) return wrap(std::move(stored.error()));
    result.snapshotThrough = stored->through;
    snapshotRevision = kv.modRevision;
  }
  if (snapshot.through <= result.snapshotThrough) {
    result.outcome = Compaction::Superseded;
    return result;
  }
  std::map<std::string, uint64_t> applied;
  for (const net::etcd::KeyValue& kv : read->reads[1].kvs) {
    const std::string host = kv.key.substr(kModelAppliedPrefix.size());
    applied[host] = kv.value.find_first_not_of("0123456789") == std::string::npos && !kv.value.empty()
                        ? std::stoull(kv.value)
                        : 0;
  }
  for (const net::etcd::KeyValue& kv : read->reads[0].kvs) {
    const std::string host = kv.key.substr(kHostsPrefix.size());
    if (host.empty() || host.find('/') != std::string::npos) continue;  // a host's own keys (alive)
    const uint64_t at = applied.contains(host) ? applied[host] : 0;
    if (at < snapshot.through) {
      result.outcome = Compaction::Waiting;
      result.detail = fmt::format("host {} applied entry {}", host, at);
      return result;
    }
  }
  std::string value = encodeModelSnapshot(snapshot);
  if (value.size() > kMaxModelSnapshotBytes) {
    result.outcome = Compaction::TooLarge;
    result.detail =
        fmt::format("the snapshot is {} bytes, etcd takes {} at most", value.size(), kMaxModelSnapshotBytes);
    return result;
  }
  const std::string key(kModelSnapshotKey);
  auto written =
      (*client)->txn({net::etcd::Compare::modRevision(key, snapshotRevision)},
                     {net::etcd::TxnOp::put(key, std::move(value)),
                      net::etcd::TxnOp::removeRange(modelEntryKey(1), modelEntryKey(snapshot.through + 1))});
  if (!written) return wrap(std::move(written.error()));
  result.outcome = written->succeeded ? Compaction::Done : Compaction::Superseded;
  if (written->succeeded) result.snapshotThrough = snapshot.through;
  return result;
}

Result<bool> ModelLog::append(const ModelEntry& entry) {
  const std::string key = modelEntryKey(entry.number);
  auto client = client_();
  if (!client) return fail(std::move(client.error()).wrap("change the cluster's model"));
  auto written = (*client)->txn({net::etcd::Compare::absent(key)},
                                {net::etcd::TxnOp::put(key, encodeModelEntry(entry))});
  if (!written) return fail(std::move(written.error()).wrap("change the cluster's model"));
  return written->succeeded;
}

void ModelLog::watch(std::function<void()> appended) {
  watcher_ = std::thread([this, appended = std::move(appended)] {
    std::unique_ptr<net::etcd::Watch> watch;
    while (!stop_) {
      if (!watch) {
        auto client = client_();
        auto made = client ? (*client)->watch(kModelLogPrefix)
                           : Result<std::unique_ptr<net::etcd::Watch>>(fail(std::move(client.error())));
        if (!made) {
          log::debug("cluster model: watch: {}", made.error().message());
          for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(100ms);
          continue;
        }
        watch = std::move(*made);
        appended();  // whatever was appended while there was no watch
      }
      auto event = watch->next(200ms);
      if (!event) {
        log::debug("cluster model: watch ended: {}", event.error().message());
        watch.reset();
        continue;
      }
      if (*event) appended();
    }
  });
}

}  // namespace corral::daemon
