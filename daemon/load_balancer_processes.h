// The load balancers as processes (issue 19): for each load balancer one HAProxy in master-worker mode
// (lb/haproxy.h) inside a namespace of its own, joined to each of its subnets by a NIC (a veth port of the
// subnet's bridge, the address from the subnet's IPAM, under the load balancer's security group), like an
// instance. Its configuration is rewritten (temp + rename) and reloaded through the master CLI on every
// change: the new worker takes the listening sockets over, so no connection is refused. One thread
// supervises them: a HAProxy that dies is started again (with a growing delay while it keeps dying).
//
// A corrald killed with -9 leaves them running (HAProxy runs in its own session, without a parent-death
// signal); reconcile() in the next one adopts those of load balancers it still has (from their pid files,
// checked against the start time and name) and kills the others, with their namespaces and files. A
// corrald that stops normally stops them.
//
// Files, per load balancer under options.dir/NAME/ (0700): haproxy.cfg, admin.sock (stats, `show stat`),
// master.sock (reload), haproxy.pid ("PID STARTTIME"), haproxy.log (HAProxy's own output).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"
#include "lb/haproxy.h"
#include "net/datapath.h"

namespace corral::daemon {

// What one load balancer needs to run.
struct LoadBalancerNicPlan {
  net::NicPlan nic;      // its port, bridge, MAC, address and router, as an instance's NIC
  std::string vpcNetns;  // where the port goes
  bool operator==(const LoadBalancerNicPlan&) const = default;
};

// Plugs one NIC into the load balancer's namespace (at targetNetnsPath) as ifname; the default route only
// with defaultRoute; with a source table, replies by the NIC they came in on (net::attachNamespaceNic's
// arguments).
using LoadBalancerNicAttach =
    std::function<Status(const LoadBalancerNicPlan& nic, const std::string& targetNetnsPath,
                         const std::string& ifname, bool defaultRoute, std::optional<uint32_t> sourceTable)>;

struct LoadBalancerProcessesOptions {
  std::string dir;                  // created 0700 with its missing parents
  std::string haproxy = "haproxy";  // looked up in PATH unless it holds a '/'
  std::string netnsPrefix;          // each load balancer's namespace: PREFIX + "lb-" + NAME
  // How a NIC is plugged in; empty: a veth port of the subnet's bridge in nic.vpcNetns
  // (net::attachNamespaceNic). The OVN backend plugs a br-int port instead (NetworkController).
  LoadBalancerNicAttach attach;
};
struct LoadBalancerRunPlan {
  std::string name;
  std::vector<LoadBalancerNicPlan> nics;  // eth0, eth1, ... in this order; eth0 carries the default route
  std::string config;                     // haproxy.cfg (lb/haproxy_config.h)
};

class LoadBalancerProcesses {
 public:
  // Creates the directory and starts the supervising thread.
  static Result<std::unique_ptr<LoadBalancerProcesses>> open(LoadBalancerProcessesOptions options);
  ~LoadBalancerProcesses();  // stops every HAProxy it runs (namespaces and files stay for the next start)
  LoadBalancerProcesses(const LoadBalancerProcesses&) = delete;
  LoadBalancerProcesses& operator=(const LoadBalancerProcesses&) = delete;

  const LoadBalancerProcessesOptions& options() const { return options_; }
  std::string netnsOf(const std::string& balancer) const { return options_.netnsPrefix + "lb-" + balancer; }
  std::string runDirOf(const std::string& balancer) const { return options_.dir + "/" + balancer; }

  // Makes the load balancer run `plan`: its namespace and NICs are made when missing or different
  // (HAProxy is stopped for that), the configuration written, and HAProxy reloaded when it runs with
  // another configuration, started when it does not run. A configuration HAProxy refuses leaves the old
  // one serving and is the error.
  Status apply(const LoadBalancerRunPlan& plan);
  // The load balancer is gone: its HAProxy is stopped, its namespace (and with it its NICs' ports) and
  // files removed.
  Status remove(const std::string& balancer);
  // At start, before any apply(): adopts the HAProxies of `balancers` an earlier corrald left running, kills
  // the others, and removes the namespaces and files of load balancers not in `balancers`. One line per
  // thing done.
  std::vector<std::string> reconcile(const std::set<std::string>& balancers);

  // `show stat` of the load balancer's HAProxy (an error when it does not run or answer).
  Result<std::vector<lb::ProxyStat>> stats(const std::string& balancer) const;
  // {"state": "running"|"starting"|"failed", "pid": N|null, "netns", "restarts", "reloads", "error":
  // text|null}; null for a load balancer it does not run.
  nlohmann::json statusJson(const std::string& balancer) const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Proxy {
    std::string name;
    LoadBalancerRunPlan plan;
    std::vector<LoadBalancerNicPlan> madeNics;  // what its namespace holds (empty: to be checked or made)
    std::string runningConfig;                  // what the running HAProxy was started or reloaded with
    pid_t pid = -1;
    bool child = false;  // started by this corrald (reaped with waitpid) or adopted
    UniqueFd pidfd;
    Clock::time_point startedAt;
    Clock::time_point notBefore;
    int failures = 0;  // deaths or failed starts in a row (reset once one lived 10 s)
    int restarts = 0;
    int reloads = 0;
    std::string error;  // the last failure, until the next success
  };

  LoadBalancerProcesses(LoadBalancerProcessesOptions options, UniqueFd wake);
  lb::HaproxyFiles filesOf(const std::string& balancer) const;
  void supervise();
  void wakeSupervisor();
  Status ensureNamespaceLocked(Proxy& proxy);
  Status spawnLocked(Proxy& proxy);
  void stopLocked(Proxy& proxy);

  LoadBalancerProcessesOptions options_;
  UniqueFd wake_;  // eventfd: apply/remove/stop tell the supervisor to look again
  mutable std::mutex mutex_;
  std::map<std::string, Proxy> proxies_;
  bool stopping_ = false;
  std::thread supervisor_;
};

}  // namespace corral::daemon
