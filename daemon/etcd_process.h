// This host's etcd member as a child of corrald (docs/cluster.md): forked from one supervising thread,
// which restarts it when it dies (with a growing delay while it keeps dying) until stopped. The child
// carries PR_SET_PDEATHSIG (etcd never changes its user, so the kernel keeps it): a corrald killed with -9
// takes its etcd along, and the next corrald starts it again on the same data. So that an etcd is never
// left behind unnamed, the child waits at a gate (a pipe) until its pid file ("PID STARTTIME") is on disk;
// reapLeftover() kills one an earlier corrald left (checked against its start time and name).
//
// Files under options.dir: data/ (etcd's data directory), etcd.pid, etcd.log (etcd's own output).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::daemon {

struct EtcdProcessOptions {
  std::string dir;            // created 0700
  std::string etcd = "etcd";  // looked up in PATH unless it holds a '/'
};

// What one etcd member is started with.
struct EtcdLaunch {
  std::string name;
  std::string clientUrl;       // listened on and advertised: http://ADDRESS:CLIENT_PORT
  std::string peerUrl;         // http://ADDRESS:PEER_PORT
  std::string initialCluster;  // NAME=PEER_URL,...
  bool newCluster = true;      // --initial-cluster-state new, else existing
  std::string clusterToken;    // --initial-cluster-token (a new cluster's)
  bool operator==(const EtcdLaunch&) const = default;
};

class EtcdProcess {
 public:
  static Result<std::unique_ptr<EtcdProcess>> open(EtcdProcessOptions options);
  ~EtcdProcess();  // kills and reaps the etcd it runs (its data stays)
  EtcdProcess(const EtcdProcess&) = delete;
  EtcdProcess& operator=(const EtcdProcess&) = delete;

  // Kills an etcd that an earlier corrald left running (its pid file), a line saying so; nullopt if none.
  std::optional<std::string> reapLeftover();
  // Starts etcd (and keeps it running); returns once the child runs past its gate.
  Status start(const EtcdLaunch& launch);
  // Kills and reaps it; it is not restarted. Its data stays.
  void stop();
  // Removes the data directory (after stop()).
  Status removeData();
  bool hasData() const;
  std::string dataDir() const { return options_.dir + "/data"; }
  std::string pidFile() const { return options_.dir + "/etcd.pid"; }
  std::string logFile() const { return options_.dir + "/etcd.log"; }
  std::optional<pid_t> pid() const;
  int restarts() const;

 private:
  using Clock = std::chrono::steady_clock;
  explicit EtcdProcess(EtcdProcessOptions options);
  void supervise();
  Status spawnLocked();
  void killLocked();

  EtcdProcessOptions options_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::optional<EtcdLaunch> wanted_;  // what should run; none: nothing
  bool startRequested_ = false;       // start(): the supervisor spawns and answers in startResult_
  std::optional<Status> startResult_;
  pid_t pid_ = -1;
  Clock::time_point startedAt_;
  Clock::time_point notBefore_;
  int failures_ = 0;
  int restarts_ = 0;
  bool stopping_ = false;
  std::thread supervisor_;
};

}  // namespace corral::daemon
