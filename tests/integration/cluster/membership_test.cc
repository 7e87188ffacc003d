// `corral cluster` through three real corralds (each its own socket, state and prefixes) and the etcd
// members they run on free loopback ports, with etcdctl as the oracle: init on one, join the others with
// the token; every host lists the same three hosts alive with their AZs and instance counts; a wrong token
// and a taken host name are refused and change nothing (no member added); set moves a host's AZ; a corrald
// killed with -9 takes its etcd along and the others show it lost within TTL + 1 s and still change cluster
// state; with a second one killed a change fails with "cluster store has no quorum"; a corrald started again
// runs its etcd on the same data and the store has quorum again; each host leaves, the last one ending the
// cluster; no etcd process and no data dir is left.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/cluster/etcd_cluster.h"
#include "tests/integration/harness.h"

namespace corral::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using nlohmann::json;

constexpr int kAliveTtlSeconds = 2;

struct Host {
  std::string name;
  uint16_t clientPort = 0;
  uint16_t peerPort = 0;
  std::unique_ptr<TestDaemon> daemon;

  std::string etcdDir() const { return daemon->dir() + "/state/cluster/etcd"; }
  // The etcd this host's corrald runs, from its pid file; 0 when none.
  pid_t etcdPid() const {
    std::ifstream in(etcdDir() + "/etcd.pid");
    pid_t pid = 0;
    in >> pid;
    return pid;
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(clientPort); }
};

// Running (a zombie waiting for its reaper is not).
bool processAlive(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  std::string text = readFile("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = text.rfind(')');
  return paren != std::string::npos && paren + 2 < text.size() && text[paren + 2] != 'Z';
}

class ClusterMembershipTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kEtcdBinary) || !std::filesystem::exists(kEtcdctlBinary)) {
      GTEST_SKIP() << kEtcdBinary << " or " << kEtcdctlBinary
                   << " is missing: scripts/install-deps installs etcd-server and etcd-client";
    }
  }

  // A host's corrald, named `name` in the cluster, with free loopback ports; started.
  Host& addHost(const std::string& name) {
    Host host;
    host.name = name;
    host.clientPort = freeLoopbackPort();
    host.peerPort = freeLoopbackPort();
    // t<PID> in the temp dir's name: scripts/sweep-test-leftovers finds a killed test's corralds and etcds.
    host.daemon = std::make_unique<TestDaemon>(
        "t" + std::to_string(::getpid()) + "-clusterd",
        std::vector<std::string>{"--cluster-address", "127.0.0.1", "--host-name", name,
                                 "--cluster-client-port", std::to_string(host.clientPort),
                                 "--cluster-peer-port", std::to_string(host.peerPort), "--cluster-alive-ttl",
                                 std::to_string(kAliveTtlSeconds), "--etcd", kEtcdBinary});
    EXPECT_TRUE(host.daemon->start()) << host.daemon->logTail();
    hosts_.push_back(std::move(host));
    return hosts_.back();
  }

  // `etcdctl member list` at `host`'s etcd, authenticated with the token: one line per member.
  std::vector<std::string> memberList(const Host& host) {
    ToolRun run = runTool({kEtcdctlBinary, "--endpoints=http://" + host.address(), "--user", "root:" + token_,
                           "--dial-timeout=2s", "--command-timeout=5s", "member", "list"},
                          {"ETCDCTL_API=3"});
    EXPECT_EQ(run.exitCode, 0) << run.output;
    std::vector<std::string> lines;
    std::istringstream text(run.output);
    for (std::string line; std::getline(text, line);)
      if (!line.empty()) lines.push_back(line);
    return lines;
  }

  // GET /v1/cluster/hosts at `host`, by name: {"az", "health", ...}.
  std::map<std::string, json> listed(const Host& host) {
    Reply reply = host.daemon->call("GET", "/v1/cluster/hosts");
    std::map<std::string, json> byName;
    if (reply.status != 200) return byName;
    for (const json& entry : reply.body["hosts"]) byName[entry["name"].get<std::string>()] = entry;
    return byName;
  }

  std::vector<Host> hosts_;
  std::string token_;
};

TEST_F(ClusterMembershipTest, InitJoinListSetLoseQuorumAndLeave) {
  hosts_.reserve(4);
  Host& a = addHost("h1");
  Host& b = addHost("h2");
  Host& c = addHost("h3");
  ASSERT_FALSE(HasFailure());

  // Single-host corrald refuses nothing of its own; a cluster request before init is refused clearly.
  Reply before = a.daemon->call("GET", "/v1/cluster/hosts");
  EXPECT_EQ(before.status, 409) << before.body.dump();

  // Bad input: named field, nothing started.
  Reply badAz = a.daemon->call("POST", "/v1/cluster", json{{"az", "Bad_AZ"}});
  EXPECT_EQ(badAz.status, 400);
  EXPECT_EQ(badAz.body["error"]["field"], "az") << badAz.body.dump();
  EXPECT_EQ(a.etcdPid(), 0);

  json init = a.daemon->must("POST", "/v1/cluster", json{{"az", "az1"}});
  ASSERT_TRUE(init.contains("token")) << init.dump();
  token_ = init["token"].get<std::string>();
  EXPECT_EQ(token_.size(), 32u);
  EXPECT_EQ(a.daemon->must("GET", "/v1/cluster/token", nullptr, 200)["token"], token_);
  EXPECT_TRUE(processAlive(a.etcdPid()));

  // A wrong token: refused by etcd itself, nothing changed anywhere.
  Reply wrong = b.daemon->call("POST", "/v1/cluster/join",
                               json{{"address", a.address()}, {"token", "0123456789abcdef0123456789abcdef"}});
  EXPECT_EQ(wrong.status, 400) << wrong.body.dump();
  EXPECT_EQ(wrong.body["error"]["message"], "token: refused by the cluster at " + a.address());
  EXPECT_EQ(wrong.body["error"]["field"], "token");
  EXPECT_EQ(memberList(a).size(), 1u);
  EXPECT_EQ(listed(a).size(), 1u);
  EXPECT_EQ(b.etcdPid(), 0);
  // Bad addresses name the field.
  Reply badAddress =
      b.daemon->call("POST", "/v1/cluster/join", json{{"address", "127.0.0.1:99999"}, {"token", token_}});
  EXPECT_EQ(badAddress.status, 400);
  EXPECT_EQ(badAddress.body["error"]["field"], "address") << badAddress.body.dump();

  // Join the others (through the CLI for one of them).
  b.daemon->must("POST", "/v1/cluster/join",
                 json{{"address", a.address()}, {"token", token_}, {"az", "az2"}});
  CliRun joined = c.daemon->cli({"cluster", "join", a.address(), "--token", token_, "--az", "az3"});
  ASSERT_EQ(joined.code, 0) << joined << c.daemon->logTail();
  EXPECT_NE(joined.out.find("host h3 joined the cluster (az az3)"), std::string::npos) << joined.out;
  EXPECT_EQ(memberList(a).size(), 3u);

  // Every host answers with the same three hosts, alive, with their AZs.
  for (Host* host : {&a, &b, &c}) {
    std::map<std::string, json> seen;
    ASSERT_TRUE(pollUntil(
        [&] {
          seen = listed(*host);
          return seen.size() == 3 && seen["h1"]["health"] == "alive" && seen["h2"]["health"] == "alive" &&
                 seen["h3"]["health"] == "alive" && seen["h1"]["instances"] == 0 &&
                 seen["h2"]["instances"] == 0 && seen["h3"]["instances"] == 0;
        },
        10s))
        << host->name << " lists " << json(seen).dump();
    EXPECT_EQ(seen["h1"]["az"], "az1");
    EXPECT_EQ(seen["h2"]["az"], "az2");
    EXPECT_EQ(seen["h3"]["az"], "az3");
    for (const auto& [name, entry] : seen) {
      EXPECT_EQ(entry["member"], "started") << entry.dump();
      EXPECT_EQ(entry["local"], name == host->name);
    }
  }
  CliRun ls = b.daemon->cli({"cluster", "ls"});
  EXPECT_EQ(ls.code, 0) << ls;
  EXPECT_NE(ls.out.find("h2 *"), std::string::npos) << ls.out;

  // A fourth corrald with a name already taken: refused, nothing changed.
  Host& d = addHost("h2");
  Reply taken = d.daemon->call("POST", "/v1/cluster/join", json{{"address", a.address()}, {"token", token_}});
  EXPECT_EQ(taken.status, 409) << taken.body.dump();
  EXPECT_EQ(taken.body["error"]["message"], "name: host h2 is already in the cluster");
  EXPECT_EQ(memberList(a).size(), 3u);
  EXPECT_EQ(listed(a).size(), 3u);
  EXPECT_EQ(d.etcdPid(), 0);
  d.daemon->stop();

  // set: a host's AZ, seen from another host; bad input names the field.
  a.daemon->must("PATCH", "/v1/cluster/hosts/h3", json{{"az", "az9"}}, 200);
  EXPECT_EQ(listed(c)["h3"]["az"], "az9");
  Reply badSet = a.daemon->call("PATCH", "/v1/cluster/hosts/h3", json{{"az", "AZ 9"}});
  EXPECT_EQ(badSet.status, 400);
  EXPECT_EQ(badSet.body["error"]["field"], "az");
  EXPECT_EQ(a.daemon->call("PATCH", "/v1/cluster/hosts/nobody", json{{"az", "az2"}}).status, 404);

  // h3's corrald killed (-9): its etcd goes with it; the others show h3 lost within TTL + 1 s and still
  // change cluster state.
  const pid_t etcdOfC = c.etcdPid();
  ASSERT_TRUE(processAlive(etcdOfC));
  const auto killedAt = Clock::now();
  c.daemon->kill9();
  EXPECT_TRUE(pollUntil([&] { return !processAlive(etcdOfC); }, 2s))
      << "etcd " << etcdOfC << " outlived its corrald";
  std::map<std::string, json> seen;
  ASSERT_TRUE(pollUntil(
      [&] {
        seen = listed(a);
        return seen["h3"]["health"] == "lost";
      },
      std::chrono::seconds(kAliveTtlSeconds + 1) + 2s))
      << json(seen).dump();
  const auto lostAfter = Clock::now() - killedAt;
  EXPECT_LT(lostAfter, std::chrono::seconds(kAliveTtlSeconds + 1))
      << std::chrono::duration_cast<std::chrono::milliseconds>(lostAfter).count() << " ms";
  EXPECT_EQ(listed(b)["h3"]["health"], "lost");
  EXPECT_TRUE(pollUntil([&] { return listed(a)["h3"]["lost_since"].is_number(); }, 3s))
      << "h1's watch did not note h3 lost";
  a.daemon->must("PATCH", "/v1/cluster/hosts/h2", json{{"az", "az5"}}, 200);
  EXPECT_EQ(listed(b)["h2"]["az"], "az5");

  // A second one killed: no quorum; a change fails with the no-quorum error and changes nothing.
  b.daemon->kill9();
  Reply noQuorum = a.daemon->call("PATCH", "/v1/cluster/hosts/h2", json{{"az", "az7"}});
  EXPECT_EQ(noQuorum.status, 503) << noQuorum.body.dump();
  EXPECT_NE(noQuorum.body.dump().find("cluster store has no quorum"), std::string::npos)
      << noQuorum.body.dump();
  Reply noRead = a.daemon->call("GET", "/v1/cluster/hosts");
  EXPECT_EQ(noRead.status, 503) << noRead.body.dump();
  CliRun cliNoQuorum = a.daemon->cli({"cluster", "set", "h1", "--az", "az8"});
  EXPECT_NE(cliNoQuorum.code, 0);
  EXPECT_NE(cliNoQuorum.err.find("cluster store has no quorum"), std::string::npos) << cliNoQuorum;

  // Both corralds started again: each runs its etcd on the same data, the store has quorum again and
  // shows nothing of the refused change.
  ASSERT_TRUE(b.daemon->start()) << b.daemon->logTail();
  ASSERT_TRUE(c.daemon->start()) << c.daemon->logTail();
  ASSERT_TRUE(pollUntil(
      [&] {
        seen = listed(a);
        return seen.size() == 3 && seen["h1"]["health"] == "alive" && seen["h2"]["health"] == "alive" &&
               seen["h3"]["health"] == "alive";
      },
      30s))
      << json(seen).dump() << "\n"
      << b.daemon->logTail();
  EXPECT_EQ(seen["h2"]["az"], "az5");
  EXPECT_EQ(seen["h1"]["az"], "az1");

  // Each leaves: member removed, keys deleted, etcd stopped, data removed; the last ends the cluster.
  for (Host* host : {&c, &b, &a}) {
    const pid_t etcd = host->etcdPid();
    json left = host->daemon->must("POST", "/v1/cluster/leave", json::object(), 200);
    EXPECT_EQ(left["cluster_ended"], host == &a) << left.dump();
    EXPECT_TRUE(pollUntil([&] { return !processAlive(etcd); }, 2s)) << host->name << "'s etcd " << etcd;
    EXPECT_FALSE(std::filesystem::exists(host->etcdDir() + "/data")) << host->name;
    EXPECT_EQ(host->daemon->call("GET", "/v1/cluster/hosts").status, 409);
    if (host != &a) {
      EXPECT_FALSE(listed(a).contains(host->name));
      EXPECT_EQ(memberList(a).size(), host == &c ? 2u : 1u);
    }
  }
}

}  // namespace
}  // namespace corral::testing
