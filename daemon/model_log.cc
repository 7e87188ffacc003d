#include "daemon/model_log.h"

#include <fmt/format.h>

#include <chrono>
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

Result<std::vector<ModelEntry>> ModelLog::after(uint64_t applied) {
  auto client = client_();
  if (!client) return fail(std::move(client.error()).wrap("read the cluster's model"));
  // A read is safe to send again: while the members elect a new leader (the leader's host died a moment
  // ago) it is tried for up to 3 s before the caller sees "no quorum".
  auto read = retryWithin(
      3s, 200ms, [](const Error& error) { return error.kind() == ErrorKind::Unavailable; },
      [&] {
        return (*client)->getRange(modelEntryKey(applied + 1), net::etcd::prefixRangeEnd(kModelLogPrefix));
      });
  if (!read) return fail(std::move(read.error()).wrap("read the cluster's model"));
  std::vector<ModelEntry> entries;
  for (const net::etcd::KeyValue& kv : read->kvs) {
    auto entry = decodeModelEntry(kv.key, kv.value);
    if (!entry) return fail(std::move(entry.error()));
    if (entry->number != applied + 1 + entries.size())
      return fail(
          internalError("cluster model: entry {} follows entry {}", entry->number, applied + entries.size()));
    entries.push_back(std::move(*entry));
  }
  return entries;
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
