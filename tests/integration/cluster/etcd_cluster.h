// A private three-member etcd cluster on 127.0.0.1 for tests: free ports, data dirs and logs in a temp dir
// (corral-t<PID>-etcd-*, swept by scripts/sweep-test-leftovers if the test is killed), never the system's
// etcd; a unique cluster token; members killed (SIGKILL, as a machine dies) and restarted one by one; every
// process killed and reaped when the object goes, also when the test failed halfway. Header-only:
// integration_cluster_tests.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "tests/integration/cluster/ovn_cluster.h"

namespace corral::testing {

inline constexpr const char* kEtcdBinary = "/usr/bin/etcd";
inline constexpr const char* kEtcdctlBinary = "/usr/bin/etcdctl";

// A TCP port on 127.0.0.1 that nothing listens on now (bound to port 0, read back, closed) and that this
// process was not handed before: the kernel may give a port just closed again, and two ports asked for in
// a row (a member's client and peer port) must differ.
inline uint16_t freeLoopbackPort() {
  static std::set<uint16_t> handedOut;
  for (int attempt = 0; attempt < 64; ++attempt) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    uint16_t port = 0;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
      port = ntohs(address.sin_port);
    }
    ::close(fd);
    if (port == 0) return 0;
    if (handedOut.insert(port).second) return port;
  }
  return 0;
}

class EtcdCluster {
 public:
  explicit EtcdCluster(int members = 3)
      : dir_("corral-t" + std::to_string(::getpid()) + "-etcd"),
        token_("corral-test-" + std::to_string(::getpid()) + "-" +
               std::to_string(std::chrono::steady_clock::now().time_since_epoch().count())) {
    if (dir_.path().empty()) {
      error_ = "mkdtemp failed";
      return;
    }
    std::string initialCluster;
    for (int i = 0; i < members; ++i) {
      Member m;
      m.name = "m" + std::to_string(i);
      m.clientPort = freeLoopbackPort();
      m.peerPort = freeLoopbackPort();
      if (m.clientPort == 0 || m.peerPort == 0 || m.clientPort == m.peerPort) {
        error_ = "no free loopback port";
        return;
      }
      initialCluster += (initialCluster.empty() ? "" : ",") + m.name + "=" + peerUrl(m);
      members_.push_back(m);
    }
    initialCluster_ = initialCluster;
    for (size_t i = 0; i < members_.size(); ++i) {
      if (!start(i)) return;
    }
  }
  ~EtcdCluster() {
    for (size_t i = 0; i < members_.size(); ++i) kill(i);
  }
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  const std::string& error() const { return error_; }
  const std::string& dir() const { return dir_.path(); }
  size_t size() const { return members_.size(); }
  std::string endpoint(size_t i) const {
    return "http://127.0.0.1:" + std::to_string(members_[i].clientPort);
  }
  std::vector<std::string> endpoints() const {
    std::vector<std::string> all;
    for (size_t i = 0; i < members_.size(); ++i) all.push_back(endpoint(i));
    return all;
  }
  bool running(size_t i) const { return members_[i].pid > 0; }

  // Starts member i (again: its data dir is kept, so it rejoins with what it had).
  bool start(size_t i) {
    Member& m = members_[i];
    if (m.pid > 0) return true;
    const std::string data = dir_ / m.name;
    m.pid = spawnProcess({kEtcdBinary,
                          "--name",
                          m.name,
                          "--data-dir",
                          data,
                          "--listen-client-urls",
                          endpoint(i),
                          "--advertise-client-urls",
                          endpoint(i),
                          "--listen-peer-urls",
                          peerUrl(m),
                          "--initial-advertise-peer-urls",
                          peerUrl(m),
                          "--initial-cluster",
                          initialCluster_,
                          "--initial-cluster-state",
                          "new",
                          "--initial-cluster-token",
                          token_,
                          "--heartbeat-interval",
                          "100",
                          "--election-timeout",
                          "1000"},
                         dir_ / (m.name + ".log"), {}, OutputMode::Append, nullptr, {});
    if (m.pid <= 0) {
      error_ = std::string("could not start ") + kEtcdBinary;
      return false;
    }
    return true;
  }
  // SIGKILL, as when the member's machine dies.
  void kill(size_t i) {
    Member& m = members_[i];
    if (m.pid <= 0) return;
    ::kill(m.pid, SIGKILL);
    int status = 0;
    ::waitpid(m.pid, &status, 0);
    m.pid = -1;
  }

  // `etcdctl ARGS` against `endpoints` (all members by default): the oracle.
  ToolRun etcdctl(std::vector<std::string> args, std::vector<std::string> endpoints = {}) const {
    if (endpoints.empty()) endpoints = this->endpoints();
    std::string joined;
    for (const auto& e : endpoints) joined += (joined.empty() ? "" : ",") + e;
    args.insert(args.begin(),
                {kEtcdctlBinary, "--endpoints=" + joined, "--dial-timeout=2s", "--command-timeout=5s"});
    return runTool(args, {"ETCDCTL_API=3"});
  }

  std::string log(size_t i) const { return readFile(dir_ / (members_[i].name + ".log")); }

 private:
  struct Member {
    std::string name;
    uint16_t clientPort = 0;
    uint16_t peerPort = 0;
    pid_t pid = -1;
  };
  static std::string peerUrl(const Member& m) { return "http://127.0.0.1:" + std::to_string(m.peerPort); }

  TempDir dir_;
  std::string token_;
  std::string initialCluster_;
  std::vector<Member> members_;
  std::string error_;
};

}  // namespace corral::testing
