// The load balancers' HAProxy processes: namespaces and NICs, files, the supervising thread
// (daemon/load_balancer_processes.h).
#include "daemon/load_balancer_processes.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <system_error>

#include "core/failpoint.h"
#include "core/log.h"
#include "core/rollback.h"
#include "daemon/driver.h"
#include "net/netlink.h"
#include "net/netns.h"
#include "net/vpc_datapath.h"

namespace corral::daemon {
namespace {

using nlohmann::json;

// One that lived this long had a fair run: its next death restarts it without delay.
constexpr auto kHealthyRun = std::chrono::seconds(10);
// Each NIC but the first routes its own replies by a table of this number + its index (net/vpc_datapath.h).
constexpr uint32_t kFirstSourceTable = 100;

std::chrono::milliseconds restartDelay(int failures) {
  if (failures <= 1) return std::chrono::milliseconds(0);
  return std::min(std::chrono::milliseconds(100 << std::min(failures - 2, 6)),
                  std::chrono::milliseconds(5000));
}

// Write-temp-then-rename: HAProxy's reload (and a crash) sees the old file or the new one.
Status writeAtomically(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_CREAT)", temp)));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, fmt::format("write(\"{}\")", temp)));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(systemError(errno, fmt::format("fsync(\"{}\")", temp)));
  if (::rename(temp.c_str(), path.c_str()) != 0)
    return fail(systemError(errno, fmt::format("rename(\"{}\", \"{}\")", temp, path)));
  return {};
}

std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// /proc/PID/comm, without its newline; empty when unreadable.
std::string processName(pid_t pid) {
  std::ifstream comm(fmt::format("/proc/{}/comm", pid));
  std::string name;
  std::getline(comm, name);
  return name;
}

// Whether `pidfd`'s process has ended, waiting up to `timeout`.
bool endedWithin(int pidfd, std::chrono::milliseconds timeout) {
  pollfd p{.fd = pidfd, .events = POLLIN, .revents = 0};
  int ready;
  do {
    ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  return ready == 1;
}

// HAProxy's master and its workers share the session the master leads (startHaproxy calls setsid): the
// group gets SIGTERM (the master stops its workers), then SIGKILL if it has not ended within 3 s.
void stopGroup(pid_t pid, int pidfd) {
  ::kill(-pid, SIGTERM);
  if (pidfd >= 0 && endedWithin(pidfd, std::chrono::seconds(3))) {
    ::kill(-pid, SIGKILL);  // a worker still finishing
    return;
  }
  ::kill(-pid, SIGKILL);
  ::kill(pid, SIGKILL);
  if (pidfd >= 0) endedWithin(pidfd, std::chrono::seconds(1));
}

std::string waitStatusText(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("wait status {}", status);
}

}  // namespace

Result<std::unique_ptr<LoadBalancerProcesses>> LoadBalancerProcesses::open(
    LoadBalancerProcessesOptions options) {
  if (options.dir.empty()) return fail(invalidField("lb-dir", "must not be empty"));
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir -p \"{}\"", options.dir)));
  if (::chmod(options.dir.c_str(), 0700) != 0)
    return fail(systemError(errno, fmt::format("chmod(\"{}\", 0700)", options.dir)));
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return fail(systemError(errno, "eventfd()"));
  std::unique_ptr<LoadBalancerProcesses> processes(
      new LoadBalancerProcesses(std::move(options), std::move(wake)));
  try {
    processes->supervisor_ = std::thread([raw = processes.get()] { raw->supervise(); });
  } catch (const std::system_error& e) {
    return fail(internalError("starting the load balancers' supervising thread: {}", e.what()));
  }
  return processes;
}

LoadBalancerProcesses::LoadBalancerProcesses(LoadBalancerProcessesOptions options, UniqueFd wake)
    : options_(std::move(options)), wake_(std::move(wake)) {}

LoadBalancerProcesses::~LoadBalancerProcesses() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wakeSupervisor();
  if (supervisor_.joinable()) supervisor_.join();
  // Without a load balancer the directory is empty: it goes (rmdir leaves it when one has files there).
  ::rmdir(options_.dir.c_str());
}

lb::HaproxyFiles LoadBalancerProcesses::filesOf(const std::string& balancer) const {
  return lb::HaproxyFiles{.runDir = runDirOf(balancer)};
}

void LoadBalancerProcesses::wakeSupervisor() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

// The namespace holds exactly the plan's NICs: kept when it does (a restarted corrald's HAProxy keeps
// serving), else made afresh with HAProxy stopped (its sockets are bound in the old namespace).
Status LoadBalancerProcesses::ensureNamespaceLocked(Proxy& proxy) {
  if (!proxy.madeNics.empty() && proxy.madeNics == proxy.plan.nics) return {};
  const std::string netns = netnsOf(proxy.name);
  if (proxy.madeNics.empty() && !proxy.plan.nics.empty()) {
    // Not made by this corrald: the namespace of an earlier one is kept when it has every NIC.
    bool complete = false;
    if (auto inside = net::Netlink::open(netns); inside) {
      complete = true;
      for (size_t i = 0; i < proxy.plan.nics.size() && complete; ++i) {
        auto link = inside->link(fmt::format("eth{}", i));
        const auto& wanted = proxy.plan.nics[i].nic.addressWithPrefix;
        complete = link && link->has_value() &&
                   std::find((*link)->addresses.begin(), (*link)->addresses.end(), wanted) !=
                       (*link)->addresses.end();
      }
    }
    if (complete) {
      proxy.madeNics = proxy.plan.nics;
      return {};
    }
  }
  if (proxy.pid > 0) {
    log::info("load balancer \"{}\": its NICs change: stopping HAProxy {} to rebuild its namespace",
              proxy.name, proxy.pid);
    stopLocked(proxy);
  }
  proxy.madeNics.clear();
  if (auto gone = net::deleteNetns(netns); !gone) return fail(std::move(gone.error()));
  if (auto made = net::createNetns(netns); !made) return fail(std::move(made.error()));
  Rollback removeNetns([&] { (void)net::deleteNetns(netns); });
  for (size_t i = 0; i < proxy.plan.nics.size(); ++i) {
    const LoadBalancerNicPlan& nic = proxy.plan.nics[i];
    // With one NIC the default route is enough; with more each answers from its own address by its own
    // table, so a reply leaves by the subnet it came in from (the port guards drop anything else).
    std::optional<uint32_t> table;
    if (proxy.plan.nics.size() > 1) table = kFirstSourceTable + static_cast<uint32_t>(i);
    const std::string ifname = fmt::format("eth{}", i);
    auto attached = options_.attach ? options_.attach(nic, net::netnsPath(netns), ifname, i == 0, table)
                                    : net::attachNamespaceNic(nic.vpcNetns, nic.nic, net::netnsPath(netns),
                                                              ifname, i == 0, table);
    if (!attached) return fail(std::move(attached.error()));
  }
  removeNetns.dismiss();
  proxy.madeNics = proxy.plan.nics;
  return {};
}

Status LoadBalancerProcesses::apply(const LoadBalancerRunPlan& plan) {
  const std::string dir = runDirOf(plan.name);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return fail(systemError(errno, fmt::format("mkdir(\"{}\")", dir)));
  const lb::HaproxyFiles files = filesOf(plan.name);
  const std::string context = fmt::format("load balancer \"{}\"", plan.name);

  std::lock_guard lock(mutex_);
  auto [it, fresh] = proxies_.try_emplace(plan.name);
  Proxy& proxy = it->second;
  if (fresh) proxy.name = plan.name;
  proxy.plan = plan;
  if (auto ok = ensureNamespaceLocked(proxy); !ok) {
    proxy.error = ok.error().message();
    return fail(std::move(ok.error()).wrap(context));
  }
  if (proxy.pid > 0 && proxy.runningConfig == plan.config) return {};
  // A configuration HAProxy refuses is never written where a restart would read it.
  const std::string candidate = files.runDir + "/haproxy.cfg.new";
  if (auto ok = writeAtomically(candidate, plan.config); !ok)
    return fail(std::move(ok.error()).wrap(context));
  if (auto checked = lb::checkHaproxyConfig(candidate, options_.haproxy); !checked) {
    proxy.error = checked.error().message();
    return fail(std::move(checked.error()).wrap(context));
  }
  if (::rename(candidate.c_str(), files.config().c_str()) != 0)
    return fail(
        systemError(errno, fmt::format("rename(\"{}\", \"{}\")", candidate, files.config())).wrap(context));
  if (proxy.pid > 0) {
    if (auto reloaded = lb::reloadHaproxy(files); !reloaded) {
      proxy.error = reloaded.error().message();
      return fail(std::move(reloaded.error()).wrap(context));
    }
    proxy.runningConfig = plan.config;
    ++proxy.reloads;
    proxy.error.clear();
    log::info("load balancer \"{}\": HAProxy {} reloaded", plan.name, proxy.pid);
    return {};
  }
  proxy.failures = 0;
  proxy.notBefore = Clock::time_point{};
  auto spawned = spawnLocked(proxy);
  wakeSupervisor();
  if (!spawned) return fail(std::move(spawned.error()).wrap(context));
  return {};
}

Status LoadBalancerProcesses::remove(const std::string& balancer) {
  {
    std::lock_guard lock(mutex_);
    if (auto it = proxies_.find(balancer); it != proxies_.end()) {
      stopLocked(it->second);
      proxies_.erase(it);
    }
  }
  wakeSupervisor();
  Status result;
  if (auto gone = net::deleteNetns(netnsOf(balancer)); !gone) result = fail(std::move(gone.error()));
  std::error_code ec;
  std::filesystem::remove_all(runDirOf(balancer), ec);
  if (ec && result) result = fail(systemError(ec.value(), fmt::format("rm -r \"{}\"", runDirOf(balancer))));
  return result;
}

std::vector<std::string> LoadBalancerProcesses::reconcile(const std::set<std::string>& balancers) {
  std::vector<std::string> done;
  std::error_code ec;
  std::lock_guard lock(mutex_);
  for (const auto& entry : std::filesystem::directory_iterator(options_.dir, ec)) {
    if (!entry.is_directory(ec)) continue;
    const std::string name = entry.path().filename().string();
    const bool kept = balancers.contains(name);
    const std::string pidFile = filesOf(name).runDir + "/haproxy.pid";
    std::ifstream in(pidFile);
    pid_t pid = 0;
    int64_t startTime = 0;
    // Only the very process an earlier corrald started: a recycled pid is someone else's.
    if (in >> pid >> startTime && pid > 0 && processStartTime(pid) == startTime &&
        processName(pid) == "haproxy") {
      UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
      // One started elsewhere than its run directory (by a corrald from before the sockets' paths were
      // relative to it) would bind the next configuration's sockets there on a reload: started afresh.
      // (The same directory, not the same text: --lb-dir may pass through a symlink such as /var/run.)
      std::error_code cwdError;
      const bool inRunDir =
          std::filesystem::equivalent(fmt::format("/proc/{}/cwd", pid), entry.path(), cwdError) && !cwdError;
      if (kept && pidfd && inRunDir) {
        Proxy& proxy = proxies_[name];
        proxy.name = name;
        proxy.pid = pid;
        proxy.child = false;
        proxy.pidfd = std::move(pidfd);
        proxy.startedAt = Clock::now();
        proxy.runningConfig = readFile(filesOf(name).config());
        log::info("load balancers: adopted HAProxy {} of load balancer \"{}\" left by an earlier corrald",
                  pid, name);
        done.push_back(fmt::format("adopted haproxy {} of load balancer {}", pid, name));
        continue;
      }
      stopGroup(pid, pidfd.get());
      log::info("load balancers: killed HAProxy {} of load balancer \"{}\" left by an earlier corrald", pid,
                name);
      done.push_back(fmt::format("killed haproxy {} of load balancer {}", pid, name));
    }
    ::unlink(pidFile.c_str());
    if (kept) continue;
    (void)net::deleteNetns(netnsOf(name));
    std::filesystem::remove_all(entry.path(), ec);
    log::info("load balancers: removed \"{}\" (load balancer \"{}\" is not in the state)",
              entry.path().string(), name);
    done.push_back(
        fmt::format("removed the namespace and files of load balancer {} (not in the state)", name));
  }
  // Namespaces without a directory (the files went, the namespace stayed).
  const std::string prefix = options_.netnsPrefix + "lb-";
  for (const std::string& netns : net::listNetns()) {
    if (!netns.starts_with(prefix) || balancers.contains(netns.substr(prefix.size()))) continue;
    if (net::deleteNetns(netns))
      done.push_back(fmt::format("removed namespace {} (not in the state)", netns));
  }
  return done;
}

Result<std::vector<lb::ProxyStat>> LoadBalancerProcesses::stats(const std::string& balancer) const {
  auto csv = lb::haproxyCommand(filesOf(balancer).adminSocket(), "show stat", std::chrono::seconds(1));
  if (!csv) return fail(std::move(csv.error()));
  return lb::parseShowStat(*csv);
}

json LoadBalancerProcesses::statusJson(const std::string& balancer) const {
  std::lock_guard lock(mutex_);
  auto it = proxies_.find(balancer);
  if (it == proxies_.end()) return nullptr;
  const Proxy& proxy = it->second;
  const char* state = proxy.pid > 0 ? "running" : proxy.error.empty() ? "starting" : "failed";
  return {{"state", state},
          {"pid", proxy.pid > 0 ? json(proxy.pid) : json(nullptr)},
          {"netns", netnsOf(balancer)},
          {"restarts", proxy.restarts},
          {"reloads", proxy.reloads},
          {"error", proxy.error.empty() ? json(nullptr) : json(proxy.error)}};
}

// ---- The supervising thread ----

void LoadBalancerProcesses::supervise() {
  std::unique_lock lock(mutex_);
  while (true) {
    if (stopping_) {
      for (auto& [name, proxy] : proxies_) stopLocked(proxy);
      return;
    }
    const Clock::time_point now = Clock::now();
    std::optional<Clock::time_point> nextStart;
    for (auto& [name, proxy] : proxies_) {
      if (proxy.pid > 0 || proxy.plan.config.empty()) continue;
      if (proxy.notBefore <= now) {
        if (auto ok = ensureNamespaceLocked(proxy); !ok) {
          proxy.error = ok.error().message();
        } else if (auto spawned = spawnLocked(proxy); !spawned) {
          log::error("load balancer \"{}\": starting HAProxy: {}", name, spawned.error().message());
        }
        if (proxy.pid <= 0) {
          ++proxy.failures;
          proxy.notBefore = now + std::max(restartDelay(proxy.failures), std::chrono::milliseconds(500));
        }
      }
      if (proxy.pid <= 0 && (!nextStart || proxy.notBefore < *nextStart)) nextStart = proxy.notBefore;
    }

    std::vector<pollfd> fds{{.fd = wake_.get(), .events = POLLIN, .revents = 0}};
    std::vector<std::string> names{""};
    for (const auto& [name, proxy] : proxies_) {
      if (proxy.pid <= 0 || !proxy.pidfd) continue;
      fds.push_back({.fd = proxy.pidfd.get(), .events = POLLIN, .revents = 0});
      names.push_back(name);
    }
    int timeout = -1;
    if (nextStart) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*nextStart - Clock::now()).count();
      timeout = static_cast<int>(std::clamp<int64_t>(left, 0, 60000));
    }
    lock.unlock();
    int ready = ::poll(fds.data(), fds.size(), timeout);
    lock.lock();
    if (ready <= 0) continue;
    if (fds[0].revents & POLLIN) {
      uint64_t count = 0;
      [[maybe_unused]] ssize_t n = ::read(wake_.get(), &count, sizeof count);
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!(fds[i].revents & (POLLIN | POLLHUP))) continue;
      auto it = proxies_.find(names[i]);
      if (it == proxies_.end() || it->second.pid <= 0 || it->second.pidfd.get() != fds[i].fd) continue;
      Proxy& proxy = it->second;
      // The fd polled may have been closed and its number reused by the next HAProxy's pidfd meanwhile.
      if (!endedWithin(proxy.pidfd.get(), std::chrono::milliseconds(0))) continue;
      int status = 0;
      std::string how = "ended";
      if (proxy.child && ::waitpid(proxy.pid, &status, WNOHANG) == proxy.pid) how = waitStatusText(status);
      log::warn("load balancer \"{}\": HAProxy {} {}; restarting it (see \"{}/haproxy.log\")", proxy.name,
                proxy.pid, how, runDirOf(proxy.name));
      ::kill(-proxy.pid, SIGKILL);  // workers of a master that died
      ::unlink((runDirOf(proxy.name) + "/haproxy.pid").c_str());
      proxy.pid = -1;
      proxy.pidfd.reset();
      proxy.runningConfig.clear();
      const auto ended = Clock::now();
      proxy.failures = ended - proxy.startedAt >= kHealthyRun ? 1 : proxy.failures + 1;
      ++proxy.restarts;
      proxy.notBefore = ended + restartDelay(proxy.failures);
    }
  }
}

void LoadBalancerProcesses::stopLocked(Proxy& proxy) {
  if (proxy.pid <= 0) return;
  stopGroup(proxy.pid, proxy.pidfd.get());
  if (proxy.child) {
    int status = 0;
    while (::waitpid(proxy.pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ::unlink((runDirOf(proxy.name) + "/haproxy.pid").c_str());
  proxy.pid = -1;
  proxy.pidfd.reset();
  proxy.runningConfig.clear();
}

// HAProxy runs in its own session (startHaproxy) without a parent-death signal: it outlives a corrald
// killed with -9, and the next one adopts it (reconcile()). Its pid file is written before it may exec, so
// there is no moment when a HAProxy runs that no pid file names.
Status LoadBalancerProcesses::spawnLocked(Proxy& proxy) {
  const lb::HaproxyFiles files = filesOf(proxy.name);
  const std::string pidFile = files.runDir + "/haproxy.pid";
  auto recordPid = [&](pid_t child) -> Status {
    CORRAL_FAILPOINT("lb.before-pid-file");
    return writeAtomically(pidFile, fmt::format("{} {}\n", child, processStartTime(child).value_or(0)));
  };
  auto pid = lb::startHaproxy(net::netnsPath(netnsOf(proxy.name)), files, std::chrono::seconds(10),
                              options_.haproxy, recordPid);
  if (!pid) {
    ::unlink(pidFile.c_str());
    proxy.error = pid.error().message();
    return fail(std::move(pid.error()));
  }
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0)));
  if (!pidfd) {
    int error = errno;
    stopGroup(*pid, -1);
    ::waitpid(*pid, nullptr, 0);
    proxy.error = fmt::format("pidfd_open({}): {}", *pid, std::strerror(error));
    return fail(systemError(error, fmt::format("pidfd_open({})", *pid)));
  }
  proxy.pid = *pid;
  proxy.child = true;
  proxy.pidfd = std::move(pidfd);
  proxy.runningConfig = readFile(files.config());
  proxy.startedAt = Clock::now();
  proxy.error.clear();
  CORRAL_FAILPOINT("lb.after-start");
  log::info("load balancer \"{}\": HAProxy {} started in netns {}", proxy.name, *pid, netnsOf(proxy.name));
  return {};
}

}  // namespace corral::daemon
