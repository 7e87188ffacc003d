// The sys side of a load balancer: one HAProxy in master-worker mode inside the load balancer's network
// namespace, reloaded through its master CLI (the new worker takes the listening sockets over from the
// old one, which finishes its requests: no connection is refused across a reload), and its admin stats
// socket read for target health and the L7 firewall's counters. Files live in the load balancer's run
// directory: haproxy.cfg, admin.sock, master.sock.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "lb/model.h"

namespace corral::lb {

struct HaproxyFiles {
  std::string runDir;
  std::string config() const { return runDir + "/haproxy.cfg"; }
  std::string adminSocket() const { return runDir + "/admin.sock"; }
  std::string masterSocket() const { return runDir + "/master.sock"; }
};

// Checks a configuration with `haproxy -c` (run in no namespace: it binds nothing). The error holds
// HAProxy's own complaint.
Status checkHaproxyConfig(const std::string& configPath, const std::string& binary = "haproxy");

// Starts `haproxy -W -S unix@master.sock -f haproxy.cfg` in the namespace at `netnsPath` (/run/netns/NAME)
// as a child of this process, working in `files.runDir` (its sockets' paths are relative to it, so a run
// directory of any length works), and waits until its admin socket answers. The master's pid.
// `recordPid`, when given, runs in this process while the forked child waits, before it may exec HAProxy:
// where the caller writes the pid down (HAProxy outlives its parent, so a parent killed before that would
// leave one nobody knows of). Its failure is returned, and the child ends without running HAProxy; a
// parent that dies meanwhile takes the waiting child with it.
Result<pid_t> startHaproxy(const std::string& netnsPath, const HaproxyFiles& files,
                           std::chrono::milliseconds timeout = std::chrono::seconds(10),
                           const std::string& binary = "haproxy",
                           const std::function<Status(pid_t)>& recordPid = {});

// One command on a HAProxy CLI socket (admin or master); the whole answer. A path longer than sun_path is
// reached through its directory (/proc/self/fd/N/NAME).
Result<std::string> haproxyCommand(const std::string& socketPath, std::string_view command,
                                   std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Reloads from the configuration file through the master CLI and waits until the new worker runs it
// (the master's reload count went up and its admin socket answers). A configuration HAProxy refuses is
// reported with its complaint and leaves the old worker serving.
Status reloadHaproxy(const HaproxyFiles& files, std::chrono::milliseconds timeout = std::chrono::seconds(10));

// One row of `show stat`: a frontend, a backend, or one server of a backend.
struct ProxyStat {
  std::string proxy;        // pxname
  std::string server;       // svname: FRONTEND, BACKEND or the server's name
  std::string status;       // UP, DOWN, MAINT, OPEN, "no check", ...
  std::string checkStatus;  // L7OK, L4CON, L7STS, ... (servers with checks)
  int64_t sessions = 0;     // stot: requests (sessions) sent to it
  int64_t denied = 0;       // dreq
  int64_t requests = 0;     // req_tot (HTTP requests, frontends and backends), else stot
};
Result<std::vector<ProxyStat>> parseShowStat(std::string_view csv);

// What `corral tg show` says about one target, from the stats of its backend.
struct TargetHealth {
  std::string target;
  std::string state;   // "healthy", "unhealthy", "unused" (no address: not running), "unknown" (no stats)
  std::string reason;  // HAProxy's check status when not healthy
  int64_t requests = 0;
};
std::vector<TargetHealth> targetHealth(const TargetGroup& group, const std::vector<ProxyStat>& stats,
                                       const std::map<std::string, std::string>& targetAddresses);

// The cumulative requests a target group's backend forwarded (its BACKEND row's `requests`), or nullopt
// when the stats have no such backend (no listener of this load balancer forwards to the group).
std::optional<int64_t> targetGroupRequests(const TargetGroup& group, const std::vector<ProxyStat>& stats);

// Requests each firewall rule of `listener` denied since the last reload, by rule id.
std::map<int64_t, int64_t> firewallCounts(const Listener& listener, const std::vector<ProxyStat>& stats);

}  // namespace corral::lb
