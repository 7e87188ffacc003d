// The cluster's model log (daemon/model_log.h) over an in-memory etcd (its JSON gateway's range and txn, as
// net/etcd.h speaks them): entries round-trip, two hosts appending under one number get one win, the
// entries after a number come in order, and what corral did not write is refused naming the key.
#include "daemon/model_log.h"

#include <gtest/gtest.h>

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
    } else if (path == "/v3/kv/txn") {
      bool holds = true;
      for (const Json& compare : request.value("compare", Json::array())) {
        const std::string key = decode(compare["key"]);
        const int64_t created = kvs_.contains(key) ? kvs_[key].created : 0;
        holds = holds && compare["target"] == "CREATE" &&
                created == std::stoll(compare.value("create_revision", std::string("0")));
      }
      Json responses = Json::array();
      for (const Json& op : request.value(holds ? "success" : "failure", Json::array())) {
        if (op.contains("request_put")) {
          const std::string key = decode(op["request_put"]["key"]);
          ++revision_;
          Kv& kv = kvs_[key];
          if (kv.created == 0) kv.created = revision_;
          kv.modified = revision_;
          kv.value = decode(op["request_put"]["value"]);
          responses.push_back({{"response_put", Json::object()}});
        } else if (op.contains("request_range")) {
          responses.push_back({{"response_range", range(op["request_range"])}});
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

 private:
  struct Kv {
    std::string value;
    int64_t created = 0, modified = 0;
  };
  static std::string decode(const Json& text) { return *etcd::decodeBase64(text.get<std::string>()); }
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
  ASSERT_EQ(all->size(), 3u);
  EXPECT_EQ((*all)[0], entry(1, "h1"));
  EXPECT_EQ((*all)[2].host, "h3");
  auto rest = log.after(2);
  ASSERT_TRUE(rest);
  ASSERT_EQ(rest->size(), 1u);
  EXPECT_EQ((*rest)[0].number, 3u);
  EXPECT_TRUE(log.after(3).value_or(std::vector<ModelEntry>{ModelEntry{}}).empty());

  // A gap (an entry missing) is refused rather than skipped.
  memory->put(modelEntryKey(5), encodeModelEntry(entry(5, "h1")));
  auto gap = log.after(3);
  ASSERT_FALSE(gap);
  EXPECT_NE(gap.error().message().find("entry 5 follows entry 3"), std::string::npos)
      << gap.error().message();
}

}  // namespace
}  // namespace corral::daemon
