// The etcd client against a real, private three-member etcd on 127.0.0.1 (EtcdCluster), with etcdctl as the
// oracle: what the client writes etcdctl reads and the other way round; two clients racing a
// create-if-absent transaction, exactly one wins; a host's lease-bound key stays while kept alive and a
// watcher sees it deleted within TTL + 1 s once it is not; with one of three members killed writes go on,
// with two killed writes and linearizable reads fail with "cluster store has no quorum" within a bounded
// time and change nothing, and work again once the members are back.
#include "net/etcd.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/cluster/etcd_cluster.h"
#include "tests/integration/skip_guard.h"

namespace corral::net::etcd {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

class EtcdClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(testing::kEtcdBinary) || !std::filesystem::exists(testing::kEtcdctlBinary)) {
      GTEST_SKIP() << testing::kEtcdBinary << " or " << testing::kEtcdctlBinary
                   << " is missing: scripts/install-deps installs etcd-server and etcd-client";
    }
    cluster_.emplace();
    ASSERT_EQ(cluster_->error(), "");
    client_.emplace(cluster_->endpoints());
    ASSERT_TRUE(waitForWrites(20s)) << "the cluster did not take a write within 20 s; member 0's log:\n"
                                    << cluster_->log(0);
  }

  bool waitForWrites(std::chrono::milliseconds deadline) {
    return testing::pollUntil([&] { return client_->put("/corral-test/ready", "1").has_value(); }, deadline);
  }

  std::string etcdctlValue(const std::string& key) {
    testing::ToolRun run = cluster_->etcdctl({"get", key, "--print-value-only"});
    EXPECT_EQ(run.exitCode, 0) << run.output;
    std::string value = run.output;
    while (!value.empty() && value.back() == '\n') value.pop_back();
    return value;
  }

  std::optional<testing::EtcdCluster> cluster_;
  std::optional<EtcdClient> client_;
};

TEST_F(EtcdClusterTest, PutGetDeleteAgreeWithEtcdctl) {
  auto revision = client_->put("/corral/hosts/h1", R"({"address":"10.0.0.1","az":"az1"})");
  ASSERT_TRUE(revision) << revision.error().message();
  EXPECT_EQ(etcdctlValue("/corral/hosts/h1"), R"({"address":"10.0.0.1","az":"az1"})");

  testing::ToolRun put = cluster_->etcdctl({"put", "/corral/azs/az1", "h1"});
  ASSERT_EQ(put.exitCode, 0) << put.output;
  auto got = client_->get("/corral/azs/az1");
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_EQ(got->kvs.size(), 1u);
  EXPECT_EQ(got->kvs[0].value, "h1");
  EXPECT_GT(got->kvs[0].modRevision, *revision);
  EXPECT_EQ(got->kvs[0].createRevision, got->kvs[0].modRevision);

  // The same key as it was at the put's revision, before etcdctl's write.
  auto overwrite = cluster_->etcdctl({"put", "/corral/hosts/h1", "changed"});
  ASSERT_EQ(overwrite.exitCode, 0) << overwrite.output;
  auto then = client_->get("/corral/hosts/h1", /*prefix=*/false, *revision);
  ASSERT_TRUE(then) << then.error().message();
  ASSERT_EQ(then->kvs.size(), 1u);
  EXPECT_EQ(then->kvs[0].value, R"({"address":"10.0.0.1","az":"az1"})");
  EXPECT_EQ(then->kvs[0].modRevision, *revision);

  auto all = client_->get("/corral/", /*prefix=*/true);
  ASSERT_TRUE(all) << all.error().message();
  EXPECT_EQ(all->count, 2);

  auto deleted = client_->remove("/corral/hosts/h1");
  ASSERT_TRUE(deleted) << deleted.error().message();
  EXPECT_EQ(*deleted, 1);
  EXPECT_EQ(etcdctlValue("/corral/hosts/h1"), "");
  auto gone = client_->get("/corral/hosts/h1");
  ASSERT_TRUE(gone) << gone.error().message();
  EXPECT_TRUE(gone->kvs.empty());
}

TEST_F(EtcdClusterTest, CompareRevisionTransactionsSeeTheirOwnReads) {
  ASSERT_TRUE(client_->put("/corral/instances/i-1", "h1"));
  auto read = client_->get("/corral/instances/i-1");
  ASSERT_TRUE(read && read->kvs.size() == 1);
  const int64_t seen = read->kvs[0].modRevision;
  auto moved = client_->txn({Compare::modRevision("/corral/instances/i-1", seen)},
                            {TxnOp::put("/corral/instances/i-1", "h2")});
  ASSERT_TRUE(moved) << moved.error().message();
  EXPECT_TRUE(moved->succeeded);
  // The same compare again is stale now: not an error, the else-branch's read says what is there.
  auto stale =
      client_->txn({Compare::modRevision("/corral/instances/i-1", seen)},
                   {TxnOp::put("/corral/instances/i-1", "h3")}, {TxnOp::get("/corral/instances/i-1")});
  ASSERT_TRUE(stale) << stale.error().message();
  EXPECT_FALSE(stale->succeeded);
  ASSERT_EQ(stale->reads.size(), 1u);
  ASSERT_EQ(stale->reads[0].kvs.size(), 1u);
  EXPECT_EQ(stale->reads[0].kvs[0].value, "h2");
  EXPECT_EQ(etcdctlValue("/corral/instances/i-1"), "h2");
}

TEST_F(EtcdClusterTest, TwoClientsRacingACreateIfAbsentExactlyOneWins) {
  // Each client starts at a different member, so the race is decided by Raft, not by one member's lock.
  std::vector<std::string> fromSecond = cluster_->endpoints();
  std::rotate(fromSecond.begin(), fromSecond.begin() + 1, fromSecond.end());
  EtcdClient a(cluster_->endpoints());
  EtcdClient b(fromSecond);
  constexpr int kRounds = 20;
  for (int round = 0; round < kRounds; ++round) {
    const std::string key = "/corral/instances/race-" + std::to_string(round);
    std::optional<Result<TxnResult>> resultA;
    std::optional<Result<TxnResult>> resultB;
    std::thread ta([&] { resultA = a.txn({Compare::absent(key)}, {TxnOp::put(key, "host-a")}); });
    std::thread tb([&] { resultB = b.txn({Compare::absent(key)}, {TxnOp::put(key, "host-b")}); });
    ta.join();
    tb.join();
    ASSERT_TRUE(*resultA) << resultA->error().message();
    ASSERT_TRUE(*resultB) << resultB->error().message();
    ASSERT_NE((*resultA)->succeeded, (*resultB)->succeeded) << "round " << round << ": both or neither won";
    EXPECT_EQ(etcdctlValue(key), (*resultA)->succeeded ? "host-a" : "host-b") << "round " << round;
  }
}

TEST_F(EtcdClusterTest, AKeptAliveLeaseStaysAndAStoppedOneExpiresSeenByAWatcher) {
  auto lease = client_->grantLease(2);
  ASSERT_TRUE(lease) << lease.error().message();
  auto written = client_->put("/corral/hosts/h1/alive", "1", lease->id);
  ASSERT_TRUE(written) << written.error().message();
  auto watch = client_->watch("/corral/hosts/", *written + 1);
  ASSERT_TRUE(watch) << watch.error().message();

  auto keeper = client_->keepAlive(*lease);
  std::this_thread::sleep_for(5s);  // two and a half TTLs
  EXPECT_EQ(etcdctlValue("/corral/hosts/h1/alive"), "1") << "the key went while its lease was kept alive";
  EXPECT_GE(keeper->renewals(), 3u);
  auto quiet = (*watch)->next(0ms);
  ASSERT_TRUE(quiet) << quiet.error().message();
  EXPECT_FALSE(quiet->has_value()) << "an event while the lease was kept alive";

  // The host "dies": nobody keeps its lease alive any more.
  keeper->stop();
  const auto stopped = Clock::now();
  auto event = (*watch)->next(2s + 1s);
  const auto seenAfter = Clock::now() - stopped;
  ASSERT_TRUE(event) << event.error().message();
  ASSERT_TRUE(event->has_value()) << "no delete within TTL + 1 s";
  EXPECT_EQ((*event)->type, WatchEvent::Type::Delete);
  EXPECT_EQ((*event)->kv.key, "/corral/hosts/h1/alive");
  EXPECT_LE(seenAfter, 3s);
  RecordProperty("delete_seen_after_ms",
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(seenAfter).count()));
  EXPECT_EQ(etcdctlValue("/corral/hosts/h1/alive"), "");
  EXPECT_EQ(client_->keepAliveOnce(lease->id).value_or(-1), 0) << "the lease outlived its TTL";
}

TEST_F(EtcdClusterTest, RevokingALeaseDeletesItsKeys) {
  auto lease = client_->grantLease(60);
  ASSERT_TRUE(lease) << lease.error().message();
  ASSERT_TRUE(client_->put("/corral/hosts/h2/alive", "1", lease->id));
  auto revoked = client_->revokeLease(lease->id);
  ASSERT_TRUE(revoked) << revoked.error().message();
  EXPECT_EQ(etcdctlValue("/corral/hosts/h2/alive"), "");
  auto again = client_->revokeLease(lease->id);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind(), ErrorKind::NotFound) << again.error().message();
}

TEST_F(EtcdClusterTest, WithoutQuorumWritesAndLinearizableReadsFailClearlyAndChangeNothing) {
  // One member of three lost: the other two are a majority, writes go on (the client's first endpoint
  // refuses connections now, so it goes on to the next).
  cluster_->kill(0);
  ASSERT_TRUE(testing::pollUntil([&] { return client_->put("/corral/azs/az1", "before").has_value(); }, 10s))
      << "no write within 10 s with two members of three";
  cluster_->kill(1);
  // The client starts at the dead members: connections refused, so it goes on to the survivor.
  const auto start = Clock::now();
  auto put = client_->put("/corral/azs/az1", "after");
  const auto took = Clock::now() - start;
  ASSERT_FALSE(put) << "a write succeeded on one member of three";
  EXPECT_EQ(put.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(put.error().message().find("put \"/corral/azs/az1\": cluster store has no quorum (etcd: "),
            std::string::npos)
      << put.error().message();
  RecordProperty("write_failed_after_ms",
                 std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(took).count()));
  RecordProperty("write_error", put.error().message());
  EXPECT_LE(took, 10s) << "the write took " << std::chrono::duration_cast<std::chrono::seconds>(took).count()
                       << " s to fail";

  auto read = client_->get("/corral/azs/az1");
  ASSERT_FALSE(read) << "a linearizable read succeeded without quorum";
  EXPECT_EQ(read.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(read.error().message().find("cluster store has no quorum"), std::string::npos)
      << read.error().message();

  auto txn =
      client_->txn({Compare::absent("/corral/instances/i-9")}, {TxnOp::put("/corral/instances/i-9", "h1")});
  ASSERT_FALSE(txn);
  EXPECT_EQ(txn.error().kind(), ErrorKind::Unavailable) << txn.error().message();

  // Nothing changed: the survivor's own (serializable) read still has the old value and no new key.
  testing::ToolRun local =
      cluster_->etcdctl({"get", "/corral/", "--prefix", "--consistency=s"}, {cluster_->endpoint(2)});
  EXPECT_EQ(local.exitCode, 0) << local.output;
  EXPECT_NE(local.output.find("before"), std::string::npos) << local.output;
  EXPECT_EQ(local.output.find("after"), std::string::npos) << local.output;
  EXPECT_EQ(local.output.find("i-9"), std::string::npos) << local.output;

  ASSERT_TRUE(cluster_->start(0));
  ASSERT_TRUE(cluster_->start(1));
  const auto restarted = Clock::now();
  ASSERT_TRUE(testing::pollUntil([&] { return client_->put("/corral/azs/az1", "after").has_value(); }, 30s))
      << "writes did not come back within 30 s of the members' restart";
  RecordProperty(
      "writes_back_after_ms",
      std::to_string(
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - restarted).count()));
  EXPECT_EQ(etcdctlValue("/corral/azs/az1"), "after");
}

TEST_F(EtcdClusterTest, AWatchWhoseMemberDiesSaysSo) {
  EtcdClient onlyFirst({cluster_->endpoint(0)});
  // From the next revision, so the put below is seen however late the watch's stream is set up.
  auto now = onlyFirst.get("/corral/hosts/", /*prefix=*/true);
  ASSERT_TRUE(now) << now.error().message();
  auto watch = onlyFirst.watch("/corral/hosts/", now->revision + 1);
  ASSERT_TRUE(watch) << watch.error().message();
  ASSERT_TRUE(client_->put("/corral/hosts/h1", "x"));
  auto event = (*watch)->next(3s);
  ASSERT_TRUE(event && event->has_value()) << "the watch saw no put";
  cluster_->kill(0);
  auto after = (*watch)->next(3s);
  ASSERT_FALSE(after) << "the watch went on after its member died";
  EXPECT_EQ(after.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(after.error().message().find("watch \"/corral/hosts/\": cluster store has no quorum"),
            std::string::npos)
      << after.error().message();
}

TEST_F(EtcdClusterTest, NoMemberReachableIsUnavailable) {
  EtcdClient nowhere({"http://127.0.0.1:" + std::to_string(testing::freeLoopbackPort())});
  auto got = nowhere.get("/corral/hosts/h1");
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(got.error().message().find("cluster store has no quorum (etcd: no member reachable"),
            std::string::npos)
      << got.error().message();
}

TEST_F(EtcdClusterTest, StoppingTheClusterLeavesNoProcess) {
  const std::string dir = cluster_->dir();
  EXPECT_EQ(testing::processesMentioning(dir).size(), cluster_->size());
  client_.reset();
  cluster_.reset();
  EXPECT_TRUE(testing::processesMentioning(dir).empty());
  EXPECT_FALSE(std::filesystem::exists(dir));
}

}  // namespace
}  // namespace corral::net::etcd
