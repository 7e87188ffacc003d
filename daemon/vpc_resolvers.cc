// The VPC resolvers' dnsmasq processes: files, the supervising thread, forks into the VPC's namespace.
#include "daemon/vpc_resolvers.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

#include "core/failpoint.h"
#include "core/log.h"
#include "daemon/driver.h"
#include "daemon/gated_spawn.h"
#include "net/netns.h"

namespace corral::daemon {
namespace {

using net::ResolverRole;
using nlohmann::json;

constexpr ResolverRole kRoles[] = {ResolverRole::forwarding, ResolverRole::local};

// One that lived this long had a fair run: its next death restarts it without delay.
constexpr auto kHealthyRun = std::chrono::seconds(10);

std::chrono::milliseconds restartDelay(int failures) {
  if (failures <= 1) return std::chrono::milliseconds(0);
  return std::min(std::chrono::milliseconds(100 << std::min(failures - 2, 6)),
                  std::chrono::milliseconds(5000));
}

// Whether a written file must reach the disk before it replaces the old one. The hosts file and the
// configurations are derived: every corrald writes them afresh from its state at start, before it starts a
// dnsmasq, and a power loss ends the dnsmasqs too. Their fsync was the largest cost a NIC joining or
// leaving paid for names (/run is on the disk on some hosts: 1-15 ms per start and rm under a busy disk).
// The pid files are what the next corrald kills a crashed one's dnsmasqs by: synced.
enum class Durability { derived, synced };

// Write-temp-then-rename: dnsmasq (and a crash) sees the old file or the new one, never half of one. The
// temporary name starts with '.', which dnsmasq skips in a directory it watches.
Status writeAtomically(const std::string& path, const std::string& text, Durability durability) {
  const auto slash = path.rfind('/');
  const std::string temp = path.substr(0, slash + 1) + "." + path.substr(slash + 1) + ".tmp";
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_CREAT)", temp)));
  if (::fchmod(fd.get(), 0644) != 0)
    return fail(systemError(errno, fmt::format("fchmod(\"{}\", 0644)", temp)));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, fmt::format("write(\"{}\")", temp)));
    done += static_cast<size_t>(n);
  }
  if (durability == Durability::synced && ::fsync(fd.get()) != 0)
    return fail(systemError(errno, fmt::format("fsync(\"{}\")", temp)));
  if (::rename(temp.c_str(), path.c_str()) != 0)
    return fail(systemError(errno, fmt::format("rename(\"{}\", \"{}\")", temp, path)));
  return {};
}

std::string roleSuffix(ResolverRole role, std::string_view extension) {
  return fmt::format("{}.{}", net::resolverRoleName(role), extension);
}

// /proc/PID/comm, without its newline; empty when unreadable.
std::string processName(pid_t pid) {
  std::ifstream comm(fmt::format("/proc/{}/comm", pid));
  std::string name;
  std::getline(comm, name);
  return name;
}

std::string waitStatusText(int status) {
  if (WIFEXITED(status)) return fmt::format("exit status {}", WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return fmt::format("killed by signal {} ({})", WTERMSIG(status), strsignal(WTERMSIG(status)));
  return fmt::format("wait status {}", status);
}

}  // namespace

Result<std::unique_ptr<VpcResolvers>> VpcResolvers::open(VpcResolversOptions options) {
  if (options.dir.empty()) return fail(invalidField("resolver-dir", "must not be empty"));
  // The directories made here are 0755 whatever corrald's umask: dnsmasq must pass through them.
  std::vector<std::filesystem::path> made;
  for (std::filesystem::path dir = options.dir;
       !dir.empty() && dir != dir.root_path() && !std::filesystem::exists(dir); dir = dir.parent_path())
    made.push_back(dir);
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir -p \"{}\"", options.dir)));
  for (const std::filesystem::path& dir : made) {
    if (::chmod(dir.c_str(), 0755) != 0)
      return fail(systemError(errno, fmt::format("chmod(\"{}\", 0755)", dir.string())));
  }
  // dnsmasq rereads the hosts file as nobody: the directory must let everyone through.
  if (::chmod(options.dir.c_str(), 0755) != 0)
    return fail(systemError(errno, fmt::format("chmod(\"{}\", 0755)", options.dir)));
  for (std::filesystem::path dir = std::filesystem::path(options.dir).parent_path();
       !dir.empty() && dir != dir.root_path(); dir = dir.parent_path()) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & S_IXOTH) == 0)
      return fail(invalidField("resolver-dir",
                               "\"{}\" is under \"{}\" (mode {:o}), which dnsmasq, running as "
                               "nobody, cannot pass through: choose a directory under world-searchable ones",
                               options.dir, dir.string(), st.st_mode & 07777));
  }
  UniqueFd wake(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake) return fail(systemError(errno, "eventfd()"));
  std::unique_ptr<VpcResolvers> resolvers(new VpcResolvers(std::move(options), std::move(wake)));
  try {
    resolvers->supervisor_ = std::thread([raw = resolvers.get()] { raw->supervise(); });
  } catch (const std::system_error& e) {
    return fail(internalError("starting the resolvers' supervising thread: {}", e.what()));
  }
  return resolvers;
}

VpcResolvers::VpcResolvers(VpcResolversOptions options, UniqueFd wake)
    : options_(std::move(options)), wake_(std::move(wake)) {}

VpcResolvers::~VpcResolvers() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wakeSupervisor();
  if (supervisor_.joinable()) supervisor_.join();
  // Its dnsmasqs are stopped; a directory no VPC uses any more does not stay behind (one holding a VPC's
  // files does: the next corrald of this prefix starts from them).
  ::rmdir(options_.dir.c_str());
}

std::string VpcResolvers::vpcDir(const std::string& vpc) const {
  return options_.dir + "/" + vpc;
}

std::string VpcResolvers::fileOf(const std::string& vpc, ResolverRole role,
                                 std::string_view extension) const {
  return vpcDir(vpc) + "/" + roleSuffix(role, extension);
}

void VpcResolvers::wakeSupervisor() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(wake_.get(), &one, sizeof one);
}

std::string VpcResolvers::hostsDir(const std::string& vpc) const {
  return vpcDir(vpc) + "/hosts.d";
}

Status VpcResolvers::writeHostLocked(const std::string& vpc,
                                     std::map<std::string, std::string, std::less<>>& written,
                                     const net::ResolverHost& host, std::string_view domain) {
  // Names are instance names (schema/names.h) or LB NICs' NAME.SUBNET.lb: never a path, never hidden.
  if (host.name.empty() || host.name.front() == '.' || host.name.find('/') != std::string::npos)
    return fail(internalError("vpc \"{}\": \"{}\" cannot name a host file", vpc, host.name));
  std::string text = net::resolverHostText(host, domain);
  auto it = written.find(host.name);
  if (it != written.end() && it->second == text) return {};
  if (auto ok = writeAtomically(hostsDir(vpc) + "/" + host.name, text, Durability::derived); !ok)
    return fail(ok.error());
  written.insert_or_assign(host.name, std::move(text));
  return {};
}

Status VpcResolvers::removeHostLocked(const std::string& vpc,
                                      std::map<std::string, std::string, std::less<>>& written,
                                      const std::string& name) {
  const std::string path = hostsDir(vpc) + "/" + name;
  if (::unlink(path.c_str()) != 0 && errno != ENOENT)
    return fail(systemError(errno, fmt::format("unlink(\"{}\")", path)));
  written.erase(name);
  return {};
}

Status VpcResolvers::apply(const net::ResolverPlan& plan) {
  const std::string dir = vpcDir(plan.vpc);
  for (const std::string& made : {dir, hostsDir(plan.vpc)}) {
    if (::mkdir(made.c_str(), 0755) != 0 && errno != EEXIST)
      return fail(systemError(errno, fmt::format("mkdir(\"{}\")", made)));
    if (::chmod(made.c_str(), 0755) != 0)
      return fail(systemError(errno, fmt::format("chmod(\"{}\", 0755)", made)));
  }
  const net::ResolverFiles files{.hostsDir = hostsDir(plan.vpc)};

  std::lock_guard lock(mutex_);
  auto [known, first] = hostFiles_.try_emplace(plan.vpc);
  auto& written = known->second;
  std::set<std::string, std::less<>> wanted;
  for (const net::ResolverHost& host : plan.hosts) wanted.insert(host.name);
  if (first) {
    // Whatever an earlier corrald left: every file not in the plan goes (temporaries too), and the single
    // hosts file of corrald before hosts.d.
    if (const std::string old = dir + "/hosts"; ::unlink(old.c_str()) != 0 && errno != ENOENT)
      log::warn("vpc \"{}\": unlink(\"{}\"): {}", plan.vpc, old, std::strerror(errno));
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(files.hostsDir, ec)) {
      const std::string name = entry.path().filename().string();
      if (!wanted.contains(name)) {
        if (auto ok = removeHostLocked(plan.vpc, written, name); !ok) {
          hostFiles_.erase(known);
          return fail(ok.error());
        }
      }
    }
    if (ec) {
      hostFiles_.erase(known);
      return fail(systemError(ec.value(), fmt::format("listing \"{}\"", files.hostsDir)));
    }
  } else {
    std::vector<std::string> gone;
    for (const auto& [name, text] : written) {
      if (!wanted.contains(name)) gone.push_back(name);
    }
    for (const std::string& name : gone) {
      if (auto ok = removeHostLocked(plan.vpc, written, name); !ok) return fail(ok.error());
    }
  }
  for (const net::ResolverHost& host : plan.hosts) {
    if (auto ok = writeHostLocked(plan.vpc, written, host, plan.domain); !ok) return fail(ok.error());
  }
  bool wake = false;
  for (ResolverRole role : kRoles) {
    auto config = net::dnsmasqConfig(plan, role, options_.upstream, files);
    auto it = resolvers_.find(Key(plan.vpc, role));
    if (!config) {
      if (it != resolvers_.end() && it->second.wanted) {
        it->second.wanted = false;
        wake = true;
      }
      continue;
    }
    if (it == resolvers_.end()) {
      it = resolvers_.emplace(Key(plan.vpc, role), Resolver{}).first;
      it->second.vpc = plan.vpc;
      it->second.role = role;
    }
    Resolver& resolver = it->second;
    if (!resolver.wanted || resolver.config != *config || resolver.netns != plan.netns) {
      if (auto ok = writeAtomically(fileOf(plan.vpc, role, "conf"), *config, Durability::derived); !ok)
        return fail(ok.error());
      resolver.config = *config;
      resolver.netns = plan.netns;
      resolver.listen = role == ResolverRole::forwarding ? plan.forwardingListen : plan.localListen;
      resolver.wanted = true;
      resolver.failures = 0;
      resolver.notBefore = Clock::time_point{};
      wake = true;
    }
  }
  if (wake) wakeSupervisor();
  return {};
}

Status VpcResolvers::updateHosts(const std::string& vpc, std::string_view domain,
                                 const std::vector<net::ResolverHost>& joined,
                                 const std::vector<std::string>& left) {
  std::lock_guard lock(mutex_);
  auto known = hostFiles_.find(vpc);
  if (known == hostFiles_.end()) return fail(conflict("vpc \"{}\": its resolver has not been applied", vpc));
  for (const std::string& name : left) {
    if (auto ok = removeHostLocked(vpc, known->second, name); !ok) return fail(ok.error());
  }
  for (const net::ResolverHost& host : joined) {
    if (auto ok = writeHostLocked(vpc, known->second, host, domain); !ok) return fail(ok.error());
  }
  return {};
}

Status VpcResolvers::remove(const std::string& vpc) {
  {
    std::lock_guard lock(mutex_);
    for (ResolverRole role : kRoles) {
      auto it = resolvers_.find(Key(vpc, role));
      if (it == resolvers_.end()) continue;
      stopLocked(it->second);
      resolvers_.erase(it);
    }
    hostFiles_.erase(vpc);
  }
  std::error_code ec;
  std::filesystem::remove_all(vpcDir(vpc), ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("rm -r \"{}\"", vpcDir(vpc))));
  return {};
}

std::vector<std::string> VpcResolvers::reconcile(const std::set<std::string>& vpcs) {
  std::vector<std::string> done;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.dir, ec)) {
    if (!entry.is_directory(ec)) continue;
    const std::string vpc = entry.path().filename().string();
    for (ResolverRole role : kRoles) {
      const std::string pidFile = fileOf(vpc, role, "pid");
      std::ifstream in(pidFile);
      pid_t pid = 0;
      int64_t startTime = 0;
      if (!(in >> pid >> startTime) || pid <= 0) continue;
      // Only the very process we started: a recycled pid is someone else's.
      if (processStartTime(pid) == startTime && processName(pid) == "dnsmasq") {
        if (::kill(pid, SIGKILL) == 0) {
          log::info("resolvers: killed dnsmasq {} left by an earlier corrald (vpc \"{}\", {})", pid, vpc,
                    net::resolverRoleName(role));
          done.push_back(fmt::format("killed dnsmasq {} of vpc {} ({} resolver)", pid, vpc,
                                     net::resolverRoleName(role)));
        }
      }
      ::unlink(pidFile.c_str());
    }
    if (vpcs.contains(vpc)) continue;
    std::filesystem::remove_all(entry.path(), ec);
    log::info("resolvers: removed \"{}\" (vpc \"{}\" is not in the state)", entry.path().string(), vpc);
    done.push_back(fmt::format("removed resolver files of vpc {} (not in the state)", vpc));
  }
  return done;
}

json VpcResolvers::statusJson(const std::string& vpc) const {
  std::lock_guard lock(mutex_);
  json status = json::object();
  for (ResolverRole role : kRoles) {
    auto it = resolvers_.find(Key(vpc, role));
    if (it == resolvers_.end() || !it->second.wanted) {
      status[std::string(net::resolverRoleName(role))] = nullptr;
      continue;
    }
    const Resolver& resolver = it->second;
    status[std::string(net::resolverRoleName(role))] = {
        {"pid", resolver.pid > 0 ? json(resolver.pid) : json(nullptr)},
        {"listen", resolver.listen},
        {"restarts", resolver.restarts}};
  }
  return status;
}

// ---- The supervising thread ----

void VpcResolvers::supervise() {
  std::unique_lock lock(mutex_);
  while (true) {
    if (stopping_) {
      for (auto& [key, resolver] : resolvers_) stopLocked(resolver);
      return;
    }
    const Clock::time_point now = Clock::now();
    std::optional<Clock::time_point> nextStart;
    for (auto it = resolvers_.begin(); it != resolvers_.end();) {
      Resolver& resolver = it->second;
      if (resolver.pid > 0 && (!resolver.wanted || resolver.runningConfig != resolver.config)) {
        log::info("vpc \"{}\": {} its {} resolver (dnsmasq {})", resolver.vpc,
                  resolver.wanted ? "restarting" : "stopping", net::resolverRoleName(resolver.role),
                  resolver.pid);
        stopLocked(resolver);
      }
      if (!resolver.wanted) {
        ::unlink(fileOf(resolver.vpc, resolver.role, "conf").c_str());
        it = resolvers_.erase(it);
        continue;
      }
      if (resolver.pid <= 0) {
        if (resolver.notBefore <= now) {
          if (auto ok = spawnLocked(resolver); !ok) {
            ++resolver.failures;
            resolver.notBefore =
                now + std::max(restartDelay(resolver.failures), std::chrono::milliseconds(200));
            log::error("vpc \"{}\": starting its {} resolver: {}", resolver.vpc,
                       net::resolverRoleName(resolver.role), ok.error().message());
          }
        }
        if (resolver.pid <= 0 && (!nextStart || resolver.notBefore < *nextStart))
          nextStart = resolver.notBefore;
      }
      ++it;
    }

    std::vector<pollfd> fds{{.fd = wake_.get(), .events = POLLIN, .revents = 0}};
    std::vector<Key> keys{Key{}};
    for (const auto& [key, resolver] : resolvers_) {
      if (resolver.pid <= 0) continue;
      fds.push_back({.fd = resolver.pidfd.get(), .events = POLLIN, .revents = 0});
      keys.push_back(key);
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
      auto it = resolvers_.find(keys[i]);
      if (it == resolvers_.end() || it->second.pid <= 0 || it->second.pidfd.get() != fds[i].fd) continue;
      int status = 0;
      if (::waitpid(it->second.pid, &status, WNOHANG) != it->second.pid) continue;
      reapedLocked(it->second, status);
    }
  }
}

void VpcResolvers::reapedLocked(Resolver& resolver, int status) {
  const Clock::time_point now = Clock::now();
  log::warn("vpc \"{}\": its {} resolver (dnsmasq {}) ended: {}; restarting it (see \"{}\")", resolver.vpc,
            net::resolverRoleName(resolver.role), resolver.pid, waitStatusText(status),
            fileOf(resolver.vpc, resolver.role, "log"));
  ::unlink(fileOf(resolver.vpc, resolver.role, "pid").c_str());
  resolver.pid = -1;
  resolver.pidfd.reset();
  resolver.runningConfig.clear();
  resolver.failures = now - resolver.startedAt >= kHealthyRun ? 1 : resolver.failures + 1;
  ++resolver.restarts;
  resolver.notBefore = now + restartDelay(resolver.failures);
}

void VpcResolvers::stopLocked(Resolver& resolver) {
  if (resolver.pid <= 0) return;
  ::kill(resolver.pid, SIGKILL);
  int status = 0;
  while (::waitpid(resolver.pid, &status, 0) < 0 && errno == EINTR) {
  }
  ::unlink(fileOf(resolver.vpc, resolver.role, "pid").c_str());
  resolver.pid = -1;
  resolver.pidfd.reset();
  resolver.runningConfig.clear();
}

// Forked from the supervising thread, which lives as long as this object: PR_SET_PDEATHSIG follows the
// thread that forked. It covers the child until dnsmasq drops to nobody (the kernel clears it then); after
// that a corrald killed with -9 leaves it running, and the next one's reconcile() kills it. So reconcile()
// can find every dnsmasq, the child waits at a gate (a pipe) until its pid file is on disk: killed before,
// corrald takes the waiting child with it; killed after, the pid file names it.
Status VpcResolvers::spawnLocked(Resolver& resolver) {
  auto netns = net::openNetns(resolver.netns);
  if (!netns) return fail(netns.error());
  const std::string logPath = fileOf(resolver.vpc, resolver.role, "log");
  UniqueFd log(::open(logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!log) return fail(systemError(errno, fmt::format("open(\"{}\")", logPath)));
  UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devNull) return fail(systemError(errno, "open(\"/dev/null\")"));

  const std::string configPath = fileOf(resolver.vpc, resolver.role, "conf");
  std::vector<std::string> args{options_.dnsmasq, "--keep-in-foreground", "--conf-file=" + configPath,
                                "--pid-file=", "--log-facility=-"};
  const std::string pidFile = fileOf(resolver.vpc, resolver.role, "pid");
  UniqueFd pidfd;
  auto started = spawnGated({.args = std::move(args),
                             .stdinFd = devNull.get(),
                             .outputFd = log.get(),
                             .netnsFd = netns->get(),
                             .ownProcessGroup = false,
                             .setnsFailed = "corrald: setns(CLONE_NEWNET) into the vpc's namespace failed\n",
                             .execFailed = "corrald: execvp(dnsmasq) failed (is dnsmasq installed?)\n"},
                            [&](pid_t child) -> Status {
                              pidfd = UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, child, 0)));
                              if (!pidfd)
                                return fail(systemError(errno, fmt::format("pidfd_open({})", child)));
                              CORRAL_FAILPOINT("resolver.before-pid-file");
                              const std::string pidText =
                                  fmt::format("{} {}\n", child, processStartTime(child).value_or(0));
                              return writeAtomically(pidFile, pidText, Durability::synced);
                            });
  if (!started) {
    ::unlink(pidFile.c_str());
    return fail(started.error());
  }
  const pid_t pid = *started;
  resolver.pid = pid;
  resolver.pidfd = std::move(pidfd);
  resolver.runningConfig = resolver.config;
  resolver.startedAt = Clock::now();
  CORRAL_FAILPOINT("resolver.after-start");
  log::info("vpc \"{}\": {} resolver started (dnsmasq {}, in netns {}, on {})", resolver.vpc,
            net::resolverRoleName(resolver.role), pid, resolver.netns, fmt::join(resolver.listen, ", "));
  return {};
}

}  // namespace corral::daemon
