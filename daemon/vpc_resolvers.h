// The VPC resolvers as processes: for each VPC, up to two dnsmasq (net/resolver.h: the forwarding one
// for subnets that reach the internet, the local one for isolated subnets) run by corrald inside the VPC's
// namespace, listening on the subnets' .2 addresses. Supervised from one thread, which forks them,
// restarts one that dies (with a growing delay while it keeps dying), and restarts one whose
// configuration changed. They outlive a corrald killed with -9 (PR_SET_PDEATHSIG is cleared when dnsmasq
// drops to nobody): reconcile() in the next one kills them from their pid files. An instance coming or
// going writes or removes only its own file in the VPC's hosts directory (temp + rename), which dnsmasq
// watches and reads by itself: no signal, no reread of the others, no cache flush.
//
// Files, per VPC under options.dir/VPC/: hosts.d/NAME (one per host), ROLE.conf, ROLE.pid ("PID
// STARTTIME", what reconcile() kills after a crash), ROLE.log (dnsmasq's own log). The directories are 0755
// and the files 0644: dnsmasq drops to nobody and reads the host files as nobody.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"
#include "net/resolver.h"

namespace corral::daemon {

struct VpcResolversOptions {
  std::string dir;                  // created 0755 with its missing parents
  std::string dnsmasq = "dnsmasq";  // looked up in PATH unless it holds a '/'
  // The uplink's resolver outside names are forwarded to ("ADDRESS" or "ADDRESS#PORT"); none: every
  // subnet's resolver refuses them.
  std::optional<std::string> upstream;
};

class VpcResolvers {
 public:
  // Creates the directory and starts the supervising thread.
  static Result<std::unique_ptr<VpcResolvers>> open(VpcResolversOptions options);
  ~VpcResolvers();  // stops every dnsmasq it runs (their files stay for the next start to reconcile)
  VpcResolvers(const VpcResolvers&) = delete;
  VpcResolvers& operator=(const VpcResolvers&) = delete;

  const VpcResolversOptions& options() const { return options_; }

  // Makes the VPC's resolvers match `plan`: the host files that differ and the configurations are written
  // now (running dnsmasqs see host files at once); processes are started, restarted or stopped by the
  // supervising thread moments later. The first apply of a VPC since corrald started also removes host
  // files the plan does not name.
  Status apply(const net::ResolverPlan& plan);
  // Hosts of an applied VPC came or went: writes the files of `joined`, removes those of `left`, touching
  // nothing else. A conflict when the VPC has not been applied since corrald started (apply it).
  Status updateHosts(const std::string& vpc, std::string_view domain,
                     const std::vector<net::ResolverHost>& joined, const std::vector<std::string>& left);
  // The VPC is gone: its dnsmasq are killed and reaped, its directory removed.
  Status remove(const std::string& vpc);
  // At start, before any apply(): kills dnsmasq left by an earlier corrald (from their pid files, checked
  // against the process's start time and name), removes the directories of VPCs not in `vpcs` and every
  // stale pid file. One line per thing done.
  std::vector<std::string> reconcile(const std::set<std::string>& vpcs);

  // {"forwarding": {"pid": N|null, "listen": [...], "restarts": N}, "local": ...} for the VPC (null for a
  // role it does not have).
  nlohmann::json statusJson(const std::string& vpc) const;

 private:
  using Clock = std::chrono::steady_clock;
  struct Resolver {
    std::string vpc;
    net::ResolverRole role = net::ResolverRole::forwarding;
    std::string netns;
    std::vector<std::string> listen;
    std::string config;         // wanted
    std::string runningConfig;  // what the running process was started with
    bool wanted = true;
    pid_t pid = -1;
    UniqueFd pidfd;
    Clock::time_point startedAt;
    Clock::time_point notBefore;
    int failures = 0;  // deaths in a row (reset once one lived 10 s)
    int restarts = 0;  // deaths since corrald started, for statusJson
  };
  using Key = std::pair<std::string, net::ResolverRole>;

  explicit VpcResolvers(VpcResolversOptions options, UniqueFd wake);
  std::string vpcDir(const std::string& vpc) const;
  std::string fileOf(const std::string& vpc, net::ResolverRole role, std::string_view suffix) const;
  void supervise();
  void wakeSupervisor();
  Status spawnLocked(Resolver& resolver);
  void stopLocked(Resolver& resolver);
  void reapedLocked(Resolver& resolver, int status);
  std::string hostsDir(const std::string& vpc) const;
  Status writeHostLocked(const std::string& vpc, std::map<std::string, std::string, std::less<>>& written,
                         const net::ResolverHost& host, std::string_view domain);
  Status removeHostLocked(const std::string& vpc, std::map<std::string, std::string, std::less<>>& written,
                          const std::string& name);

  VpcResolversOptions options_;
  UniqueFd wake_;  // eventfd: apply/remove/stop tell the supervisor to look again
  mutable std::mutex mutex_;
  std::map<Key, Resolver> resolvers_;
  // By VPC, then host name: each host file as last written. A VPC is here once applied.
  std::map<std::string, std::map<std::string, std::string, std::less<>>> hostFiles_;
  bool stopping_ = false;
  std::thread supervisor_;
};

}  // namespace corral::daemon
