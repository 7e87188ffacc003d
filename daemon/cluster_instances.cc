#include "daemon/cluster_instances.h"

#include <fmt/format.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <set>

#include "api/api.h"
#include "core/log.h"

namespace corral::daemon {

using Json = nlohmann::json;
using namespace std::chrono_literals;
namespace etcd = net::etcd;

namespace {

std::string instanceKey(std::string_view name) {
  return fmt::format("{}{}", kInstancesPrefix, name);
}

// The keys an instance's addresses hold while it has them.
std::vector<std::string> addressKeys(const schema::InstanceSpec& spec) {
  std::vector<std::string> keys;
  if (!spec.subnet.empty() && !spec.ip.empty())
    keys.push_back(fmt::format("/corral/addresses/{}/{}", spec.subnet, spec.ip));
  if (!spec.publicAddress.empty())
    keys.push_back(fmt::format("/corral/public-addresses/{}", spec.publicAddress));
  return keys;
}

}  // namespace

ClusterInstances::ClusterInstances(ModelLog::ClientSource client, std::string host,
                                   NetworkController* network)
    : client_(std::move(client)), host_(std::move(host)), network_(network) {}

ClusterInstances::~ClusterInstances() {
  stop_ = true;
  if (follower_.joinable()) follower_.join();
}

std::string ClusterInstances::encode(const Record& record) {
  return Json{{"host", record.host},
              {"spec", Json::parse(api::renderRequest(api::RunInstance{record.spec}).body)},
              {"link_key", record.linkKey},
              {"keys", record.keys}}
      .dump();
}

Result<ClusterInstances::Record> ClusterInstances::decode(const std::string& key, const std::string& value) {
  auto bad = [&](std::string_view reason) {
    return fail(internalError("cluster instance \"{}\": {}", key, reason));
  };
  Json json = Json::parse(value, nullptr, false);
  if (!json.is_object() || !json.contains("spec")) return bad("not an instance record");
  Record record;
  try {
    record.host = json.at("host").get<std::string>();
    record.linkKey = json.at("link_key").get<std::string>();
    record.keys = json.at("keys").get<std::vector<std::string>>();
  } catch (const Json::exception& e) {
    return bad(e.what());
  }
  auto request = api::parseRequest("POST", "/v1/instances", json["spec"].dump());
  if (!request) return bad(request.error().message());
  record.spec = std::get<api::RunInstance>(*request).spec;
  return record;
}

Result<bool> ClusterInstances::claim(const schema::InstanceSpec& spec, const std::string& linkKey) {
  auto client = client_();
  if (!client) return fail(std::move(client.error()).wrap(fmt::format("run instance \"{}\"", spec.name)));
  Record record{.host = host_, .spec = spec, .linkKey = linkKey, .keys = addressKeys(spec)};
  const std::string key = instanceKey(spec.name);
  std::vector<etcd::Compare> compares{etcd::Compare::absent(key)};
  std::vector<etcd::TxnOp> then{etcd::TxnOp::put(key, encode(record))};
  std::vector<etcd::TxnOp> otherwise{etcd::TxnOp::get(key)};
  for (const std::string& address : record.keys) {
    compares.push_back(etcd::Compare::absent(address));
    then.push_back(etcd::TxnOp::put(address, spec.name));
    otherwise.push_back(etcd::TxnOp::get(address));
  }
  auto written = (*client)->txn(compares, then, otherwise);
  if (!written) return fail(std::move(written.error()).wrap(fmt::format("run instance \"{}\"", spec.name)));
  if (written->succeeded) return true;
  if (!written->reads.empty() && !written->reads[0].kvs.empty()) {
    auto holder = decode(key, written->reads[0].kvs[0].value);
    return fail(Error(ErrorKind::Conflict,
                      fmt::format("instance \"{}\" already exists (on host {})", spec.name,
                                  holder ? holder->host : std::string("?")),
                      "name"));
  }
  // An address is another instance's: learn that instance, so the network reserves around it.
  for (size_t i = 1; i < written->reads.size(); ++i) {
    if (written->reads[i].kvs.empty()) continue;
    const std::string holder = written->reads[i].kvs[0].value;
    auto read = (*client)->get(instanceKey(holder));
    if (!read) return fail(std::move(read.error()).wrap(fmt::format("run instance \"{}\"", spec.name)));
    if (read->kvs.empty()) continue;  // gone meanwhile: the next claim may get the address
    auto other = decode(read->kvs[0].key, read->kvs[0].value);
    if (!other) return fail(std::move(other.error()));
    std::lock_guard lock(mutex_);
    if (other->host != host_) seenLocked(holder, std::move(*other));
  }
  return false;
}

void ClusterInstances::release(const std::vector<std::string>& names) {
  auto client = client_();
  if (!client) {
    log::warn("cluster: giving back {}: {}", fmt::join(names, ", "), client.error().message());
    return;
  }
  for (const std::string& name : names) {
    const std::string key = instanceKey(name);
    auto read = (*client)->get(key);
    if (!read || read->kvs.empty()) continue;
    auto record = decode(key, read->kvs[0].value);
    if (!record || record->host != host_) continue;  // another host's claim of the name
    std::vector<etcd::TxnOp> removes{etcd::TxnOp::remove(key)};
    for (const std::string& address : record->keys) removes.push_back(etcd::TxnOp::remove(address));
    auto removed = (*client)->txn({etcd::Compare::modRevision(key, read->kvs[0].modRevision)}, removes);
    if (!removed) log::warn("cluster: giving back instance \"{}\": {}", name, removed.error().message());
  }
}

void ClusterInstances::seenLocked(const std::string& name, Record record) {
  auto it = remote_.find(name);
  if (it != remote_.end() && it->second.host == record.host && it->second.spec == record.spec) return;
  if (network_) {
    if (auto adopted = network_->adoptNic(record.spec, record.linkKey); !adopted)
      log::warn("cluster: instance \"{}\" of host {}: {}", name, record.host, adopted.error().message());
  }
  remote_.insert_or_assign(name, Remote{.host = record.host, .spec = std::move(record.spec)});
}

void ClusterInstances::goneLocked(const std::string& name) {
  if (remote_.erase(name) == 0) return;
  if (network_) network_->releaseNic(name);
}

Result<int64_t> ClusterInstances::syncLocked() {
  auto client = client_();
  if (!client) return fail(std::move(client.error()));
  auto read = (*client)->get(kInstancesPrefix, true);
  if (!read) return fail(std::move(read.error()));
  std::set<std::string> present;
  for (const etcd::KeyValue& kv : read->kvs) {
    auto record = decode(kv.key, kv.value);
    if (!record) {
      log::warn("{}", record.error().message());
      continue;
    }
    if (record->host == host_) continue;
    const std::string name = kv.key.substr(kInstancesPrefix.size());
    present.insert(name);
    seenLocked(name, std::move(*record));
  }
  std::vector<std::string> gone;
  for (const auto& [name, remote] : remote_)
    if (!present.contains(name)) gone.push_back(name);
  for (const std::string& name : gone) goneLocked(name);
  return read->revision;
}

std::map<std::string, ClusterInstances::Remote> ClusterInstances::remote() const {
  std::lock_guard lock(mutex_);
  return remote_;
}

Result<std::optional<std::string>> ClusterInstances::ownerOf(const std::string& name) {
  auto client = client_();
  if (!client) return fail(std::move(client.error()));
  auto read = (*client)->get(instanceKey(name));
  if (!read) return fail(std::move(read.error()));
  if (read->kvs.empty()) return std::optional<std::string>();
  auto record = decode(read->kvs[0].key, read->kvs[0].value);
  if (!record) return fail(std::move(record.error()));
  return std::optional<std::string>(record->host);
}

void ClusterInstances::start(std::function<void()> synced) {
  onSynced_ = std::move(synced);
  follower_ = std::thread([this] { follow(); });
}

void ClusterInstances::follow() {
  std::unique_ptr<etcd::Watch> watch;
  while (!stop_) {
    if (!watch) {
      Result<int64_t> revision = [&] {
        std::lock_guard lock(mutex_);
        return syncLocked();
      }();
      auto client = revision ? client_() : Result<std::shared_ptr<etcd::EtcdClient>>(fail(revision.error()));
      auto made = client ? (*client)->watch(kInstancesPrefix, *revision + 1)
                         : Result<std::unique_ptr<etcd::Watch>>(fail(client.error()));
      if (!made) {
        log::debug("cluster instances: {}", made.error().message());
        for (int i = 0; i < 10 && !stop_; ++i) std::this_thread::sleep_for(100ms);
        continue;
      }
      watch = std::move(*made);
      synced_ = true;
      if (onSynced_) onSynced_();
    }
    auto event = watch->next(200ms);
    if (!event) {
      log::debug("cluster instances: watch ended: {}", event.error().message());
      watch.reset();
      continue;
    }
    if (!*event) continue;
    const etcd::WatchEvent& change = **event;
    const std::string name = change.kv.key.substr(kInstancesPrefix.size());
    std::lock_guard lock(mutex_);
    if (change.type == etcd::WatchEvent::Type::Delete) {
      goneLocked(name);
      continue;
    }
    auto record = decode(change.kv.key, change.kv.value);
    if (!record) {
      log::warn("{}", record.error().message());
    } else if (record->host != host_) {
      seenLocked(name, std::move(*record));
    }
  }
}

}  // namespace corral::daemon
