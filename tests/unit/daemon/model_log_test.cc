// The cluster's model log (daemon/model_log.h) over an in-memory etcd (its JSON gateway's range, put, delete
// and txn, as net/etcd.h speaks them): entries round-trip, two hosts appending under one number get one win,
// the entries after a number come in order, and what corral did not write is refused naming the key;
// compaction waits for every host, replaces the entries with the snapshot, loses nothing when two hosts
// compact at once and refuses a snapshot larger than etcd takes.
#include "daemon/model_log.h"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace corral::daemon {
namespace {

using Json = nlohmann::json;
namespace etcd = net::etcd;

// Keys and values in a map, each with its create and mod revision: enough of etcd for range and txn.
class MemoryEtcd final : public etcd::EtcdTransport {
 public:
  etcd::HttpResult post(const std::string&, const std::string& path, const std::string& body,
                        std::chrono::milliseconds, const std::string&) override {
    Json request = Json::parse(body);
    Json reply;
    if (path == "/v3/kv/range") {
      reply = range(request);
    } else if (path == "/v3/kv/put") {
      putKey(decode(request["key"]), decode(request["value"]));
      reply = {{"header", {{"revision", std::to_string(revision_)}}}};
    } else if (path == "/v3/kv/deleterange") {
      removeRange(request);
      reply = {{"header", {{"revision", std::to_string(revision_)}}}};
    } else if (path == "/v3/kv/txn") {
      if (!request.value("compare", Json::array()).empty() && beforeGuardedTxn)
        std::exchange(beforeGuardedTxn, nullptr)();
      bool holds = true;
      for (const Json& compare : request.value("compare", Json::array())) {
        const std::string key = decode(compare["key"]);
        const bool present = kvs_.contains(key);
        if (compare["target"] == "CREATE")
          holds = holds && (present ? kvs_[key].created : 0) ==
                               std::stoll(compare.value("create_revision", std::string("0")));
        else if (compare["target"] == "MOD")
          holds = holds && (present ? kvs_[key].modified : 0) ==
                               std::stoll(compare.value("mod_revision", std::string("0")));
        else
          holds = false;
      }
      Json responses = Json::array();
      for (const Json& op : request.value(holds ? "success" : "failure", Json::array())) {
        if (op.contains("request_put")) {
          putKey(decode(op["request_put"]["key"]), decode(op["request_put"]["value"]));
          responses.push_back({{"response_put", Json::object()}});
        } else if (op.contains("request_range")) {
          responses.push_back({{"response_range", range(op["request_range"])}});
        } else if (op.contains("request_delete_range")) {
          removeRange(op["request_delete_range"]);
          responses.push_back({{"response_delete_range", Json::object()}});
        }
      }
      reply = {{"header", {{"revision", std::to_string(revision_)}}}, {"responses", responses}};
      if (holds) reply["succeeded"] = true;
    } else {
      return etcd::HttpReply{404, "{}"};
    }
    return etcd::HttpReply{200, reply.dump()};
  }
  etcd::HttpResult stream(const std::string&, const std::string&, const std::string&,
                          const std::function<bool(std::string_view)>&, const std::atomic<bool>&,
                          const std::string&) override {
    return std::unexpected(etcd::HttpFailure{.beforeSending = true, .timedOut = false, .reason = "no watch"});
  }
  void put(const std::string& key, const std::string& value) {
    ++revision_;
    kvs_[key] = Kv{value, revision_, revision_};
  }
  bool has(const std::string& key) const { return kvs_.contains(key); }
  std::string value(const std::string& key) const { return kvs_.contains(key) ? kvs_.at(key).value : ""; }
  // Runs once, before the next transaction with compares is looked at: another host's write in between.
  std::function<void()> beforeGuardedTxn;

 private:
  struct Kv {
    std::string value;
    int64_t created = 0, modified = 0;
  };
  static std::string decode(const Json& text) { return *etcd::decodeBase64(text.get<std::string>()); }
  void putKey(const std::string& key, const std::string& value) {
    ++revision_;
    Kv& kv = kvs_[key];
    if (kv.created == 0) kv.created = revision_;
    kv.modified = revision_;
    kv.value = value;
  }
  void removeRange(const Json& request) {
    const std::string from = decode(request["key"]);
    const std::string end = request.contains("range_end") ? decode(request["range_end"]) : "";
    ++revision_;
    for (auto it = kvs_.begin(); it != kvs_.end();)
      it = (end.empty() ? it->first == from : it->first >= from && it->first < end) ? kvs_.erase(it)
                                                                                    : std::next(it);
  }
  Json range(const Json& request) {
    const std::string from = decode(request["key"]);
    const std::string end = request.contains("range_end") ? decode(request["range_end"]) : "";
    Json kvs = Json::array();
    for (const auto& [key, kv] : kvs_) {
      if (end.empty() ? key != from : (key < from || key >= end)) continue;
      kvs.push_back({{"key", etcd::encodeBase64(key)},
                     {"value", etcd::encodeBase64(kv.value)},
                     {"create_revision", std::to_string(kv.created)},
                     {"mod_revision", std::to_string(kv.modified)},
                     {"version", "1"}});
    }
    Json reply = {{"header", {{"revision", std::to_string(revision_)}}},
                  {"count", std::to_string(kvs.size())}};
    if (!kvs.empty()) reply["kvs"] = kvs;
    return reply;
  }
  std::map<std::string, Kv> kvs_;
  int64_t revision_ = 1;
};

ModelEntry entry(uint64_t number, std::string host, std::string body = R"({"name":"lab"})") {
  return ModelEntry{.number = number,
                    .method = "POST",
                    .target = "/v1/vpcs",
                    .body = std::move(body),
                    .now = 1700000000 + static_cast<int64_t>(number),
                    .host = std::move(host)};
}

TEST(ModelLog, EntriesRoundTripAndKeysSortAsNumbers) {
  const ModelEntry one = entry(7, "h2");
  EXPECT_EQ(modelEntryKey(7), "/corral/model/log/00000000000000000007");
  EXPECT_LT(modelEntryKey(9), modelEntryKey(10));
  auto back = decodeModelEntry(modelEntryKey(7), encodeModelEntry(one));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, one);
}

TEST(ModelLog, WhatCorralDidNotWriteIsRefusedNamingTheKey) {
  auto notJson = decodeModelEntry(modelEntryKey(1), "{");
  ASSERT_FALSE(notJson);
  EXPECT_NE(notJson.error().message().find("/corral/model/log/00000000000000000001"), std::string::npos);
  EXPECT_FALSE(decodeModelEntry(modelEntryKey(1), R"({"method": "POST"})"));
  EXPECT_FALSE(decodeModelEntry("/corral/model/log/12", encodeModelEntry(entry(12, "h1"))));
  EXPECT_FALSE(decodeModelEntry("/corral/other/00000000000000000001", encodeModelEntry(entry(1, "h1"))));
}

TEST(ModelLog, OneNumberIsWonByOneHostAndEntriesComeInOrder) {
  auto memory = std::make_shared<MemoryEtcd>();
  auto client = std::make_shared<etcd::EtcdClient>(std::vector<std::string>{"http://127.0.0.1:2379"}, memory);
  ModelLog log([client] { return Result<std::shared_ptr<etcd::EtcdClient>>(client); });

  auto first = log.append(entry(1, "h1"));
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_TRUE(*first);
  auto raced = log.append(entry(1, "h2", R"({"name":"other"})"));
  ASSERT_TRUE(raced) << raced.error().message();
  EXPECT_FALSE(*raced) << "the number was h1's";
  ASSERT_TRUE(log.append(entry(2, "h2")).value_or(false));
  ASSERT_TRUE(log.append(entry(3, "h3")).value_or(false));

  auto all = log.after(0);
  ASSERT_TRUE(all) << all.error().message();
  EXPECT_FALSE(all->snapshot);
  ASSERT_EQ(all->entries.size(), 3u);
  EXPECT_EQ(all->entries[0], entry(1, "h1"));
  EXPECT_EQ(all->entries[2].host, "h3");
  auto rest = log.after(2);
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest->entries.size(), 1u);
  EXPECT_EQ(rest->entries[0].number, 3u);
  auto none = log.after(3);
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->entries.empty());
  EXPECT_FALSE(none->snapshot);

  // A gap (an entry missing) is refused rather than skipped.
  memory->put(modelEntryKey(5), encodeModelEntry(entry(5, "h1")));
  auto gap = log.after(3);
  ASSERT_FALSE(gap) << "no snapshot explains it";
  EXPECT_NE(gap.error().message().find("entry 5 follows entry 3"), std::string::npos)
      << gap.error().message();
}

ModelSnapshot snapshotThrough(uint64_t through, std::string filler = "") {
  return {.through = through,
          .tables = {{"vpcs",
                      {{"columns", {"name", "cidr"}},
                       {"rows", {{"lab", "10.20.0.0/16"}, {"filler", std::move(filler)}}}}}}};
}

TEST(ModelLog, SnapshotsRoundTripAndWhatCorralDidNotWriteIsRefused) {
  const ModelSnapshot snapshot = snapshotThrough(12);
  auto back = decodeModelSnapshot(encodeModelSnapshot(snapshot));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, snapshot);
  EXPECT_FALSE(decodeModelSnapshot(R"({"through": -1, "tables": {}})"));
  EXPECT_FALSE(decodeModelSnapshot(R"({"tables": {}})"));
  EXPECT_FALSE(decodeModelSnapshot("["));
}

TEST(ModelLog, CompactionWaitsForEveryHostThenASnapshotReplacesTheEntries) {
  auto memory = std::make_shared<MemoryEtcd>();
  auto client = std::make_shared<etcd::EtcdClient>(std::vector<std::string>{"http://127.0.0.1:2379"}, memory);
  ModelLog log([client] { return Result<std::shared_ptr<etcd::EtcdClient>>(client); });
  memory->put("/corral/hosts/h1", "{}");
  memory->put("/corral/hosts/h1/alive", "1");
  memory->put("/corral/hosts/h2", "{}");
  for (uint64_t number = 1; number <= 6; ++number)
    ASSERT_TRUE(log.append(entry(number, "h1")).value_or(false));

  ASSERT_TRUE(log.recordApplied("h1", 6));
  auto waiting = log.compact(snapshotThrough(6));
  ASSERT_TRUE(waiting) << waiting.error().message();
  EXPECT_EQ(waiting->outcome, Compaction::Waiting);
  EXPECT_EQ(waiting->detail, "host h2 applied entry 0");
  ASSERT_TRUE(log.recordApplied("h2", 4));
  EXPECT_EQ(log.compact(snapshotThrough(6)).value_or(CompactionResult{}).detail, "host h2 applied entry 4");
  EXPECT_TRUE(memory->has(modelEntryKey(1))) << "nothing compacted while a host waits for the entries";

  ASSERT_TRUE(log.recordApplied("h2", 6));
  auto done = log.compact(snapshotThrough(6));
  ASSERT_TRUE(done) << done.error().message();
  EXPECT_EQ(done->outcome, Compaction::Done);
  EXPECT_EQ(done->snapshotThrough, 6u);
  for (uint64_t number = 1; number <= 6; ++number) EXPECT_FALSE(memory->has(modelEntryKey(number)));
  EXPECT_EQ(decodeModelSnapshot(memory->value(std::string(kModelSnapshotKey))).value_or(ModelSnapshot{}),
            snapshotThrough(6));
  EXPECT_EQ(log.compact(snapshotThrough(5)).value_or(CompactionResult{}).outcome, Compaction::Superseded);

  // A host joining (nothing applied) gets the snapshot, then the entries after it; one up to date only
  // the entries; one the log was compacted past the snapshot too.
  ASSERT_TRUE(log.append(entry(7, "h2")).value_or(false));
  auto joining = log.after(0);
  ASSERT_TRUE(joining) << joining.error().message();
  ASSERT_TRUE(joining->snapshot);
  EXPECT_EQ(*joining->snapshot, snapshotThrough(6));
  ASSERT_EQ(joining->entries.size(), 1u);
  EXPECT_EQ(joining->entries[0].number, 7u);
  auto current = log.after(6);
  ASSERT_TRUE(current);
  EXPECT_FALSE(current->snapshot);
  EXPECT_EQ(current->entries.size(), 1u);
  auto behind = log.after(3);
  ASSERT_TRUE(behind) << behind.error().message();
  EXPECT_TRUE(behind->snapshot);
  EXPECT_EQ(behind->entries.size(), 1u);

  // A host that left is not waited for; one that joined and applied nothing yet is.
  ASSERT_TRUE(log.forgetHost("h2"));
  EXPECT_FALSE(memory->has("/corral/model/applied/h2"));
  memory->put("/corral/hosts/h3", "{}");
  ASSERT_TRUE(log.recordApplied("h1", 7));
  EXPECT_EQ(log.compact(snapshotThrough(7)).value_or(CompactionResult{}).detail, "host h2 applied entry 0")
      << "h2's host key is still listed";
}

TEST(ModelLog, TwoHostsCompactingAtOnceLoseNothing) {
  auto memory = std::make_shared<MemoryEtcd>();
  auto client = std::make_shared<etcd::EtcdClient>(std::vector<std::string>{"http://127.0.0.1:2379"}, memory);
  ModelLog log([client] { return Result<std::shared_ptr<etcd::EtcdClient>>(client); });
  memory->put("/corral/hosts/h1", "{}");
  for (uint64_t number = 1; number <= 8; ++number)
    ASSERT_TRUE(log.append(entry(number, "h1")).value_or(false));
  ASSERT_TRUE(log.recordApplied("h1", 8));
  // Between this host's read and its write, another writes its snapshot through 8.
  memory->beforeGuardedTxn = [&] {
    memory->put(std::string(kModelSnapshotKey), encodeModelSnapshot(snapshotThrough(8, "theirs")));
  };
  auto raced = log.compact(snapshotThrough(5, "mine"));
  ASSERT_TRUE(raced) << raced.error().message();
  EXPECT_EQ(raced->outcome, Compaction::Superseded);
  EXPECT_EQ(decodeModelSnapshot(memory->value(std::string(kModelSnapshotKey))).value_or(ModelSnapshot{}),
            snapshotThrough(8, "theirs"))
      << "an older snapshot never replaces a newer one";
  EXPECT_TRUE(memory->has(modelEntryKey(1))) << "the losing transaction deleted nothing";
}

TEST(ModelLog, ASnapshotLargerThanEtcdTakesIsRefusedAndTheLogStays) {
  auto memory = std::make_shared<MemoryEtcd>();
  auto client = std::make_shared<etcd::EtcdClient>(std::vector<std::string>{"http://127.0.0.1:2379"}, memory);
  ModelLog log([client] { return Result<std::shared_ptr<etcd::EtcdClient>>(client); });
  memory->put("/corral/hosts/h1", "{}");
  ASSERT_TRUE(log.append(entry(1, "h1")).value_or(false));
  ASSERT_TRUE(log.recordApplied("h1", 1));
  auto large = log.compact(snapshotThrough(1, std::string(kMaxModelSnapshotBytes, 'x')));
  ASSERT_TRUE(large) << large.error().message();
  EXPECT_EQ(large->outcome, Compaction::TooLarge);
  EXPECT_NE(large->detail.find("etcd takes 1556480 at most"), std::string::npos) << large->detail;
  EXPECT_FALSE(memory->has(std::string(kModelSnapshotKey)));
  EXPECT_TRUE(memory->has(modelEntryKey(1)));
}

}  // namespace
}  // namespace corral::daemon
