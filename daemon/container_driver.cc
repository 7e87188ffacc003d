// ContainerDriver (daemon/container_driver.h): containers started by the runtime, watched by pidfd.
#include "daemon/container_driver.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <vector>

#include "container/cgroup_mode.h"
#include "container/cgroup_v2.h"
#include "container/runtime.h"
#include "core/failpoint.h"
#include "core/log.h"
#include "daemon/container_stdio.h"

namespace corral::daemon {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxExecOutput = 1 << 20;
constexpr auto kExecTimeout = std::chrono::seconds(60);

double millis(std::chrono::microseconds us) {
  return static_cast<double>(us.count()) / 1000.0;
}

int pidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int pidfdSendSignal(int pidfd, int signal) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, signal, nullptr, 0));
}

// True when the process behind `pidfd` has exited (readable), waiting at most `timeout`.
bool waitExited(int pidfd, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    pollfd p{pidfd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (rc > 0) return true;
    if (rc == 0) return false;
    if (errno != EINTR) return false;
  }
}

// Bytes as a JSON string: invalid UTF-8 is replaced (U+FFFD) rather than failing the whole response.
json textJson(const std::string& bytes) {
  return json::parse(json(bytes).dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace

// The descriptors every running container's kept usage files may hold together (CgroupUsageFiles, two a
// container): a quarter of the soft RLIMIT_NOFILE at start (5000 at 20000: 2,500 containers), leaving the
// rest to pidfds, log pipes, sockets and nft contexts. A container past it is sampled by opening and closing
// its files as before; one leaving gives its share back.
class UsageFileBudget {
 public:
  explicit UsageFileBudget(int64_t descriptors) : left_(descriptors) {}
  static int64_t fromLimit() {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return 4096;
    return static_cast<int64_t>(limit.rlim_cur / 4);
  }
  bool take(int64_t count) {
    int64_t left = left_.load();
    while (left >= count)
      if (left_.compare_exchange_weak(left, left - count)) return true;
    return false;
  }
  void give(int64_t count) { left_ += count; }
  int64_t left() const { return left_.load(); }

 private:
  std::atomic<int64_t> left_;
};

namespace {

// A running container's cgroup is shared: the watcher kills and removes it when the container exits while
// a stop or a forced remove may be killing it from a request thread (outside the manager's lock, so a slow
// kill holds up nobody else). One lock per cgroup keeps those calls from overlapping (a destroy() under a
// running killAll() would free what the kill is still walking). It also keeps the group's usage files open
// for the watcher's samples while the budget allows, and closes them before the group is removed.
class SharedCgroup : public container::Cgroup {
 public:
  SharedCgroup(std::unique_ptr<container::Cgroup> inner, std::shared_ptr<UsageFileBudget> budget)
      : inner_(std::move(inner)), budget_(std::move(budget)) {}
  ~SharedCgroup() override { closeUsageFiles(); }
  std::string path() const override { return inner_->path(); }  // fixed at creation
  Status addProcess(pid_t pid) override {
    std::lock_guard lock(mutex_);
    return inner_->addProcess(pid);
  }
  Result<container::CgroupJoin> openJoin() const override {
    std::lock_guard lock(mutex_);
    return inner_->openJoin();
  }
  Result<container::CgroupStats> stats() const override {
    std::lock_guard lock(mutex_);
    return inner_->stats();
  }
  // Through the kept files once opened (a failed read drops them: the next sample opens them again).
  Result<container::CgroupStats> usage() const override {
    std::lock_guard lock(mutex_);
    if (destroyed_) return inner_->usage();
    if (!usageFiles_ && !noUsageFiles_ && budget_ &&
        budget_->take(container::CgroupUsageFiles::kDescriptors)) {
      auto opened = inner_->openUsageFiles();
      if (opened) {
        usageFiles_ = std::move(*opened);
      } else {
        budget_->give(container::CgroupUsageFiles::kDescriptors);
        noUsageFiles_ = opened.error().kind() == ErrorKind::NotFound;
      }
    }
    if (usageFiles_) {
      if (auto read = usageFiles_->read(); read) return read;
      closeUsageFiles();
    }
    return inner_->usage();
  }
  Result<std::unique_ptr<container::CgroupUsageFiles>> openUsageFiles() const override {
    std::lock_guard lock(mutex_);
    return inner_->openUsageFiles();
  }
  // Once destroyed, the group is empty and gone: what a late kill or a second removal wanted.
  Status killAll() override {
    std::lock_guard lock(mutex_);
    if (destroyed_) return {};
    return inner_->killAll();
  }
  Status destroy() override {
    std::lock_guard lock(mutex_);
    if (destroyed_) return {};
    closeUsageFiles();  // an open control file would keep the removed group around, dying
    Status done = inner_->destroy();
    destroyed_ = done.has_value();
    return done;
  }
  void release() override {
    std::lock_guard lock(mutex_);
    inner_->release();
  }
  std::string relativePath() const override { return inner_->relativePath(); }

 private:
  void closeUsageFiles() const {
    if (!usageFiles_) return;
    usageFiles_.reset();
    budget_->give(container::CgroupUsageFiles::kDescriptors);
  }

  mutable std::mutex mutex_;
  std::unique_ptr<container::Cgroup> inner_;
  std::shared_ptr<UsageFileBudget> budget_;
  mutable std::unique_ptr<container::CgroupUsageFiles> usageFiles_;
  mutable bool noUsageFiles_ = false;  // the group has none (no memory controller): not asked again
  bool destroyed_ = false;
};

std::shared_ptr<container::Cgroup> shareCgroup(std::unique_ptr<container::Cgroup> cgroup,
                                               std::shared_ptr<UsageFileBudget> budget) {
  return std::make_shared<SharedCgroup>(std::move(cgroup), std::move(budget));
}

}  // namespace

struct ContainerDriver::Run {
  RunId id = 0;
  pid_t pid = -1;
  bool ourChild = false;  // false once adopted after a daemon restart: no waitpid
  std::shared_ptr<UniqueFd> pidfd;
  std::shared_ptr<container::Cgroup> cgroup;
  // Between start() and supervise(): destroying it kills the container and removes what it made.
  std::optional<container::RunningContainer> starting;
  int64_t oomKillsSeen = 0;  // the watcher's
  // The watcher's latest usage sample (under watchMutex_): what listings show, with no read of their own.
  std::optional<UsageReading> sample;
  // Started with -t or -i: its first process's pty master or stdin, kept for `corral console`.
  std::shared_ptr<ContainerConsole> console;
};

namespace {

struct ContainerHandle : InstanceHandle {
  std::optional<container::ContainerConfig> config;  // absent when the spec no longer validates
  bool pinAtReserve = false;  // a run's config: its store image is pinned by reserve(), under the lock
  std::shared_ptr<ContainerDriver::Run> run;  // while running
};

ContainerHandle& own(InstanceHandle& handle) {
  return static_cast<ContainerHandle&>(handle);
}
const ContainerHandle& own(const InstanceHandle& handle) {
  return static_cast<const ContainerHandle&>(handle);
}

// What an exec into a running container needs, copied under the instance's lock, which it then lets go.
struct ExecTarget {
  pid_t initPid;
  std::shared_ptr<container::Cgroup> cgroup;
  container::ContainerConfig config;
};
Result<ExecTarget> execTarget(InstanceHandle& handle, const InstanceRow& row,
                              std::unique_lock<std::mutex>& lock) {
  const ContainerHandle& container = own(handle);
  if (!container.config) return fail(conflict("instance \"{}\": its spec no longer validates", row.name));
  if (!container.run) return fail(conflict("instance \"{}\" is not running", row.name));
  ExecTarget target{
      .initPid = container.run->pid, .cgroup = container.run->cgroup, .config = *container.config};
  lock.unlock();
  return target;
}

}  // namespace

ContainerDriver::ContainerDriver(InstanceOptions options)
    : options_(std::move(options)),
      usageFileBudget_(std::make_shared<UsageFileBudget>(UsageFileBudget::fromLimit())),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)) {
  epoll_event wakeEvent{.events = EPOLLIN, .data = {.u64 = 0}};
  if (!wake_ || !epoll_ || ::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &wakeEvent) != 0)
    log::error("container watcher: eventfd/epoll_create1/epoll_ctl: {}", std::strerror(errno));
  if (auto pool = container::readIdPool(options_.subuidFile, options_.subgidFile); pool) {
    idRanges_ = container::IdRangeAllocator(*pool);
  } else {
    log::warn("user namespaces: {} (containers with one are refused until this is fixed)",
              pool.error().message());
    idPoolError_ = pool.error();
  }
}

ContainerDriver::~ContainerDriver() {
  shutdown();
}

void ContainerDriver::bind(InstanceEvents& events) {
  events_ = &events;
  // Bundles a removal set aside and a crash kept from deleting: deleted now, before anything else runs.
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(asideDir(), error)) {
    if (auto removed = container::removeBundle(entry.path()); !removed)
      log::warn("a removed container's files: {}", removed.error().message());
    else
      log::info("deleted \"{}\", set aside by a removal that corrald did not finish", entry.path().string());
  }
  watcher_ = std::thread([this] { watch(); });
  deleter_ = std::thread([this] { deleteAside(); });
}

void ContainerDriver::shutdown() {
  quit_ = true;
  wake();
  if (watcher_.joinable()) watcher_.join();
  {
    std::lock_guard lock(asideMutex_);
    asideQuit_ = true;
  }
  asideWake_.notify_all();
  if (deleter_.joinable()) deleter_.join();
}

std::filesystem::path ContainerDriver::asideDir() const {
  // Beside the containers directory, not in it (which holds only instances' bundles).
  std::filesystem::path dir = options_.containersDir;
  if (!dir.has_filename()) dir = dir.parent_path();
  return dir.string() + ".removed";
}

// The deleter thread: empties what removeDirectory() set aside, in the background; what shutdown leaves
// is deleted by the next bind().
void ContainerDriver::deleteAside() {
  std::unique_lock lock(asideMutex_);
  for (;;) {
    asideWake_.wait(lock, [&] { return asideQuit_ || !aside_.empty(); });
    if (asideQuit_) return;
    std::filesystem::path path = std::move(aside_.front());
    aside_.pop_front();
    lock.unlock();
    if (auto removed = container::removeBundle(path); !removed)
      log::warn("a removed container's files: {}", removed.error().message());
    lock.lock();
  }
}

std::filesystem::path ContainerDriver::directory(const std::string& name) const {
  return options_.containersDir / name;
}

std::unique_ptr<InstanceHandle> ContainerDriver::newHandle() {
  return std::make_unique<ContainerHandle>();
}

Result<container::ContainerConfig> ContainerDriver::toConfig(const schema::InstanceSpec& spec,
                                                             const InstanceRow* row, ImageLaunch::Pin pin) {
  container::IdMapRange range{.hostId = 0, .count = container::kIdsPerContainer};  // none: refused at start
  if (row && row->userNamespaceStart) range.hostId = static_cast<uid_t>(*row->userNamespaceStart);
  auto config = imageLaunch_.containerConfig(spec,
                                             {.imageDir = options_.imageDir,
                                              .lowerDirs = {},
                                              .containersDir = options_.containersDir,
                                              .cgroupOptions = options_.cgroupOptions,
                                              .userNamespaceRange = range,
                                              .reaperPath = options_.reaperPath},
                                             pin);
  if (!config) return fail(config.error());
  if (!spec.ip.empty()) config->ipAddress = spec.ip;
  return config;
}

Status ContainerDriver::configure(InstanceHandle& handle, const schema::InstanceSpec& spec,
                                  const InstanceRow* row) {
  // A run (no row yet) checks its image without pinning it: the name is not the instance's until the
  // manager's lock says so, and reserve() pins it then.
  auto config = toConfig(spec, row, row ? ImageLaunch::Pin::existing : ImageLaunch::Pin::lookup);
  if (!config) return fail(config.error());
  own(handle).config = std::move(*config);
  own(handle).pinAtReserve = row == nullptr;
  return {};
}

// A container with a user namespace gets its host id range once (run, or the first start of a row stored
// before ranges were) and keeps it, stored with the row, until it is removed.
Status ContainerDriver::reserve(InstanceHandle& handle, const schema::InstanceSpec& spec, InstanceRow& row) {
  ContainerHandle& container = own(handle);
  if (container.pinAtReserve) {
    auto config = toConfig(spec, &row, ImageLaunch::Pin::create);
    if (!config) return fail(config.error());
    container.config = std::move(*config);
    container.pinAtReserve = false;
  }
  if (!spec.userNamespace) return {};
  if (!row.userNamespaceStart) {
    std::lock_guard lock(idMutex_);
    if (idPoolError_) return fail(*idPoolError_);
    auto range = idRanges_.allocate();
    if (!range) return fail(range.error());
    row.userNamespaceStart = range->hostId;
  }
  if (container.config)
    container.config->userNamespace = container::IdMapping::oneRange(
        static_cast<uint32_t>(*row.userNamespaceStart), container::kIdsPerContainer);
  return {};
}

void ContainerDriver::release(const InstanceRow& row) {
  imageLaunch_.release(row.name);
  std::lock_guard lock(idMutex_);
  if (row.userNamespaceStart) idRanges_.release(static_cast<uint32_t>(*row.userNamespaceStart));
}

// Image pins of instances corrald no longer has go in InstanceManager::load, which knows both kinds'.
void ContainerDriver::reconcile(const std::set<std::string>&, const std::set<std::string>&) {}

// Starts the container and returns at its execve; the manager records it running, then supervise().
Result<StartedRun> ContainerDriver::start(InstanceHandle& handle, const schema::InstanceSpec& spec,
                                          const InstanceRow& row, NicPort* nic, Clock::time_point received) {
  ContainerHandle& container = own(handle);
  if (!container.config) {
    if (Status configured = configure(handle, spec, &row); !configured) return fail(configured.error());
  }
  if (!spec.ip.empty()) container.config->ipAddress = spec.ip;
  // In a VPC its resolv.conf names the subnet's VPC resolver and searches the VPC's domain.
  if (nic) {
    auto planned = nic->plan();
    if (!planned) return fail(planned.error());
    container.config->nameservers = {planned->resolver};
    container.config->searchDomains = {planned->searchDomain};
  }
  const std::filesystem::path bundle = directory(row.name);
  std::error_code ec;
  std::filesystem::create_directories(bundle, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir(\"{}\")", bundle.string())));
  // The container writes its log file itself, so output survives a daemon restart. With -t or -i corrald
  // holds the other end of its stdio (a pty master, pipes) and its console pump writes the log: a -t
  // container's terminal hangs up (SIGHUP) and a -i one's pipes break when corrald stops (docs/api.md).
  UniqueFd log(::open(row.logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!log) return fail(systemError(errno, fmt::format("open(\"{}\")", row.logPath)));
  container::Stdio stdio{.in = -1, .out = log.get(), .err = log.get()};
  const container::ContainerConfig* config = &*container.config;
  std::optional<container::ContainerConfig> withConsole;
  UniqueFd stdinRead, stdinWrite, stdoutRead, stdoutWrite, stderrRead, stderrWrite;
  if (spec.tty) {
    withConsole = *container.config;
    withConsole->console = container::ConsoleSize{};  // the client's window comes with its first attach
    config = &*withConsole;
  } else if (spec.stdinOpen) {
    for (auto [read, write] : {std::pair{&stdinRead, &stdinWrite}, std::pair{&stdoutRead, &stdoutWrite},
                               std::pair{&stderrRead, &stderrWrite}}) {
      int ends[2];
      if (::pipe2(ends, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2(O_CLOEXEC)"));
      read->reset(ends[0]);
      write->reset(ends[1]);
    }
    stdio = {.in = stdinRead.get(), .out = stdoutWrite.get(), .err = stderrWrite.get()};
  }
  // Its eth0 goes in while the child waits for "go": the command never runs without its network.
  container::ParentHook plugIn;
  if (nic) plugIn = [nic](pid_t pid) { return nic->plugIntoProcess(pid); };
  auto running = container::startContainer(*config, stdio, plugIn);
  if (!running) return fail(running.error());
  std::shared_ptr<ContainerConsole> console;
  if (spec.tty || spec.stdinOpen) {
    stdinRead.reset();
    stdoutWrite.reset();
    stderrWrite.reset();
    UniqueFd master = running->takeConsole();
    if (spec.tty && !master)
      return fail(internalError("instance \"{}\": its terminal's master did not come back", row.name));
    auto started = ContainerConsole::start(row.name, spec.tty, std::move(master), std::move(stdinWrite),
                                           std::move(stdoutRead), std::move(stderrRead), std::move(log));
    if (!started) return fail(started.error().wrap("console"));
    console = std::move(*started);
  }
  auto readyAt = Clock::now();
  auto run = std::make_shared<Run>();
  run->id = nextRunId();
  run->pid = running->pid();
  run->ourChild = true;
  run->console = std::move(console);
  run->pidfd = std::make_shared<UniqueFd>(::fcntl(running->pidfd(), F_DUPFD_CLOEXEC, 0));
  if (!*run->pidfd) return fail(systemError(errno, "fcntl(pidfd, F_DUPFD_CLOEXEC)"));
  auto mode = container::detectCgroupMode(options_.cgroupOptions.root);
  if (!mode) return fail(mode.error());
  auto cgroup = container::openCgroup(*mode, row.name, options_.cgroupOptions);
  if (!cgroup) return fail(cgroup.error());
  (*cgroup)->release();  // the RunningContainer removes it on failure; the watcher once it exits
  run->cgroup = shareCgroup(std::move(*cgroup), usageFileBudget_);
  const container::StartTimings& t = running->timings();
  run->starting.emplace(std::move(*running));

  StartedRun started;
  started.run = run->id;
  started.state = InstanceState::running;
  started.pid = run->pid;
  started.pidStartTime = processStartTime(run->pid);
  started.boot = {{"total_ms", std::chrono::duration<double, std::milli>(readyAt - received).count()},
                  {"clone_ms", millis(t.clone)},
                  {"cgroup_ms", millis(t.cgroup)},
                  {"rootfs_ms", millis(t.rootfs)},
                  {"network_ms", millis(t.network)},
                  {"exec_ms", millis(t.exec)}};
  started.undo = Rollback([run] { run->starting.reset(); });
  container.run = std::move(run);
  return started;
}

void ContainerDriver::supervise(InstanceHandle& handle, const std::string& name) {
  CORRAL_FAILPOINT("start.after-record-running");
  std::shared_ptr<Run> run = own(handle).run;
  // From here the watcher supervises it: the RunningContainer no longer kills or cleans up on destruction.
  if (run->starting) {
    run->starting->release();
    run->starting.reset();
  }
  {
    std::lock_guard lock(watchMutex_);
    watched_[run->id] = {name, run};
    watchPidfd(*run);
  }
}

void ContainerDriver::forgetRun(InstanceHandle& handle) {
  own(handle).run.reset();
}

Status ContainerDriver::stop(InstanceHandle& handle, const std::string& name,
                             std::unique_lock<std::mutex>& lock, std::chrono::seconds grace) {
  std::shared_ptr<Run> run = own(handle).run;
  if (!run) return {};
  lock.unlock();
  // The grace wait happens without the lock: other requests go on meanwhile.
  pidfdSendSignal(run->pidfd->get(), SIGTERM);
  if (!waitExited(run->pidfd->get(), grace)) {
    if (auto killed = run->cgroup->killAll(); !killed)
      log::warn("stop \"{}\": {}", name, killed.error().message());
  }
  CORRAL_FAILPOINT("stop.after-signal");
  lock.lock();
  return {};
}

Status ContainerDriver::kill(InstanceHandle& handle, const std::string&, std::unique_lock<std::mutex>& lock) {
  std::shared_ptr<Run> run = own(handle).run;
  if (!run) return {};
  lock.unlock();
  Status killed = run->cgroup->killAll();
  if (killed) CORRAL_FAILPOINT("rm.after-kill");
  lock.lock();
  return killed;
}

Result<json> ContainerDriver::exec(InstanceHandle& handle, const InstanceRow& row,
                                   std::unique_lock<std::mutex>& lock,
                                   const std::vector<std::string>& command,
                                   const std::vector<std::string>& env) {
  auto target = execTarget(handle, row, lock);
  if (!target) return fail(target.error());
  const std::string name = row.name;
  auto& [initPid, cgroup, config] = *target;

  int outPipe[2], errPipe[2];
  if (::pipe2(outPipe, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2"));
  UniqueFd outRead(outPipe[0]), outWrite(outPipe[1]);
  if (::pipe2(errPipe, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2"));
  UniqueFd errRead(errPipe[0]), errWrite(errPipe[1]);
  container::ExecOptions options{
      .argv = command, .env = env, .stdio = {.in = -1, .out = outWrite.get(), .err = errWrite.get()}};
  auto pid = container::execInContainer(initPid, *cgroup, config, options);
  if (!pid) return fail(pid.error().wrap(fmt::format("exec in instance \"{}\"", name)));
  outWrite.reset();
  errWrite.reset();

  std::string out, err;
  bool truncated = false, timedOut = false;
  auto deadline = Clock::now() + kExecTimeout;
  std::vector<pollfd> fds{{outRead.get(), POLLIN, 0}, {errRead.get(), POLLIN, 0}};
  std::string* sinks[] = {&out, &err};
  int open = 2;
  while (open > 0) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) {
      timedOut = true;
      ::kill(*pid, SIGKILL);
      break;
    }
    int rc = ::poll(fds.data(), fds.size(), static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0) break;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[65536];
      ssize_t got = ::read(fds[i].fd, buffer, sizeof buffer);
      if (got <= 0) {
        fds[i].fd = -1;
        --open;
        continue;
      }
      size_t room = kMaxExecOutput - std::min(kMaxExecOutput, sinks[i]->size());
      if (static_cast<size_t>(got) > room) truncated = true;
      sinks[i]->append(buffer, std::min(room, static_cast<size_t>(got)));
    }
  }
  int status = 0;
  if (timedOut) {
    ::waitpid(*pid, &status, 0);
  } else {
    // Output closed; the process may still linger (a daemonised child kept nothing open): bounded wait.
    while (::waitpid(*pid, &status, WNOHANG) == 0) {
      if (Clock::now() > deadline) {
        timedOut = true;
        ::kill(*pid, SIGKILL);
        ::waitpid(*pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  json exitCode = WIFEXITED(status) ? json(WEXITSTATUS(status)) : json(nullptr);
  json signal = WIFSIGNALED(status) ? json(WTERMSIG(status)) : json(nullptr);
  return json{{"exit_code", exitCode},   {"signal", signal},       {"stdout", textJson(out)},
              {"stderr", textJson(err)}, {"truncated", truncated}, {"timed_out", timedOut}};
}

// exec -it: a pty of the container's own devpts (container/console.h) is the program's controlling terminal
// and stdio, its master comes back here; exec -i: pipes. The program is corrald's child, like exec's.
Result<std::unique_ptr<StdioSession>> ContainerDriver::execInteractive(InstanceHandle& handle,
                                                                       const InstanceRow& row,
                                                                       std::unique_lock<std::mutex>& lock,
                                                                       const StdioRequest& request) {
  auto target = execTarget(handle, row, lock);
  if (!target) return fail(target.error());
  const std::string name = row.name;
  auto& [initPid, cgroup, config] = *target;

  container::ExecOptions options{
      .argv = request.command.empty() ? std::vector<std::string>{"/bin/sh"} : request.command,
      .env = request.env,
      .stdio = {}};
  container::ExecExtras extras;
  UniqueFd master, stdinWrite, stdoutRead, stderrRead, stdinRead, stdoutWrite, stderrWrite;
  auto pipe = [](UniqueFd& read, UniqueFd& write) -> Status {
    int ends[2];
    if (::pipe2(ends, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2(O_CLOEXEC)"));
    read.reset(ends[0]);
    write.reset(ends[1]);
    return {};
  };
  if (request.tty) {
    extras.console = container::ConsoleSize{request.size.rows, request.size.cols};
    extras.consoleMaster = &master;
  } else {
    if (request.stdinOpen) {
      if (auto made = pipe(stdinRead, stdinWrite); !made) return fail(made.error());
    }
    if (auto made = pipe(stdoutRead, stdoutWrite); !made) return fail(made.error());
    if (auto made = pipe(stderrRead, stderrWrite); !made) return fail(made.error());
    options.stdio = {.in = stdinRead.get(), .out = stdoutWrite.get(), .err = stderrWrite.get()};
  }
  auto pid = container::execInContainer(initPid, *cgroup, config, options, extras);
  if (!pid) return fail(pid.error().wrap(fmt::format("exec in instance \"{}\"", name)));
  if (request.tty && !master) {
    ::kill(*pid, SIGKILL);
    ::waitpid(*pid, nullptr, 0);
    return fail(internalError("exec in instance \"{}\": the terminal's master did not come back", name));
  }
  return execSession(*pid, std::move(master), std::move(stdinWrite), std::move(stdoutRead),
                     std::move(stderrRead));
}

Result<std::unique_ptr<StdioSession>> ContainerDriver::attachConsole(InstanceHandle& handle,
                                                                     const InstanceRow& row,
                                                                     std::unique_lock<std::mutex>&) {
  const ContainerHandle& container = own(handle);
  if (!container.run) return fail(conflict("instance \"{}\" is not running", row.name));
  if (!container.run->console)
    return fail(conflict("instance \"{}\" has no console: it was started without -t or -i", row.name));
  return container.run->console->attach();
}

// What corrald may leave of a container when it dies mid-way (core/failpoint.h names the points): the
// processes in its cgroups, the cgroups, the overlay at its rootfs.
Result<std::string> ContainerDriver::clearLeftovers(const std::string& name) {
  std::vector<std::string> found;
  auto mode = container::detectCgroupMode(options_.cgroupOptions.root);
  if (!mode) return fail(mode.error());
  auto cleared = container::clearCgroup(*mode, name, options_.cgroupOptions);
  if (!cleared) return fail(cleared.error());
  if (!cleared->killed.empty())
    found.push_back(fmt::format("killed its processes {}", container::formatPids(cleared->killed)));
  if (!cleared->removed.empty())
    found.push_back(fmt::format("removed its cgroups {}", fmt::join(cleared->removed, ", ")));
  // Several interrupted starts may have stacked overlays.
  const std::filesystem::path rootfs = directory(name) / "rootfs";
  int unmounted = 0;
  while (unmounted < 16 && ::umount2(rootfs.c_str(), MNT_DETACH) == 0) ++unmounted;
  if (unmounted > 0) found.push_back(fmt::format("unmounted its rootfs \"{}\"", rootfs.string()));
  return fmt::format("{}", fmt::join(found, ", "));
}

// The bundle is unmounted and renamed aside (its name is free at once) and deleted in the background by
// the deleter thread: an overlay's upper and work directories take many unlinks, each a chance for a busy
// host to schedule corrald out. A crash after the rename leaves it in asideDir(), which bind() empties.
Status ContainerDriver::removeDirectory(const std::string& name) {
  const std::filesystem::path aside = asideDir() / fmt::format("{}.{}", name, ++asideCount_);
  auto moved = container::moveBundleAside(directory(name), aside);
  if (!moved) return fail(moved.error());
  if (!*moved) return {};
  CORRAL_FAILPOINT("rm.after-bundle-aside");
  {
    std::lock_guard lock(asideMutex_);
    aside_.push_back(aside);
  }
  asideWake_.notify_one();
  return {};
}

// After a daemon restart: the same process (pid and start time) is taken back under supervision, one that
// is gone is recorded as lost.
std::optional<RunId> ContainerDriver::adopt(InstanceHandle& handle, InstanceRow& row) {
  std::optional<int64_t> startTime = row.pid ? processStartTime(static_cast<pid_t>(*row.pid)) : std::nullopt;
  bool same = startTime && row.pidStartTime && *startTime == *row.pidStartTime;
  UniqueFd pidfd(same ? pidfdOpen(static_cast<pid_t>(*row.pid)) : -1);
  // One that ended while corrald was down may linger as a zombie under a slow reaper (same pid, same start
  // time): its pidfd is readable already. It ended unwatched, as one that is gone did.
  const bool ended = pidfd && waitExited(pidfd.get(), std::chrono::milliseconds(0));
  if (same && !ended) {
    auto mode = container::detectCgroupMode(options_.cgroupOptions.root);
    Result<std::unique_ptr<container::Cgroup>> cgroup =
        mode ? container::openCgroup(*mode, row.name, options_.cgroupOptions)
             : Result<std::unique_ptr<container::Cgroup>>(std::unexpected(mode.error()));
    if (pidfd && cgroup) {
      auto run = std::make_shared<Run>();
      run->id = nextRunId();
      run->pid = static_cast<pid_t>(*row.pid);
      run->ourChild = false;
      run->pidfd = std::make_shared<UniqueFd>(std::move(pidfd));
      run->cgroup = shareCgroup(std::move(*cgroup), usageFileBudget_);
      run->cgroup->release();
      run->oomKillsSeen = row.oomKills;
      own(handle).run = run;
      {
        std::lock_guard lock(watchMutex_);
        watched_[run->id] = {row.name, run};
        watchPidfd(*run);
      }
      log::info("instance \"{}\": reattached to running pid {}", row.name, *row.pid);
      return run->id;
    }
    log::warn("instance \"{}\": pid {} is alive but could not be reattached ({}); recording it as lost",
              row.name, *row.pid, cgroup ? "pidfd_open failed" : cgroup.error().message());
  } else {
    log::warn("instance \"{}\": pid {} {}; it ended while corrald was down (recorded as lost)", row.name,
              row.pid.value_or(-1), ended ? "has exited (a zombie not yet reaped)" : "is gone");
  }
  markLost(row, "it ended while corrald was not running (nothing watched it), so its exit status is unknown");
  return std::nullopt;
}

// A process found in the cgroups of a container that is not running is killed, not adopted: its start was
// never recorded complete, so nothing says it got its NIC, limits and lockdown before exec; and a "lost"
// record with a note tells the truth where an adopted one would guess.
InstanceDriver::Recovery ContainerDriver::recover(InstanceHandle& handle, InstanceRow& row) {
  if (row.userNamespaceStart) {
    std::lock_guard lock(idMutex_);
    if (auto kept = idRanges_.reserve(static_cast<uint32_t>(*row.userNamespaceStart)); !kept)
      log::error("instance \"{}\": its user namespace range: {}", row.name, kept.error().message());
  }
  Recovery recovery;
  if (row.state == InstanceState::running) {
    recovery.run = adopt(handle, row);
    if (recovery.run) return recovery;
    recovery.rowChanged = true;
  }
  const bool interrupted = row.state == InstanceState::created || row.state == InstanceState::starting;
  auto found = clearLeftovers(row.name);
  if (!found) {
    log::error("instance \"{}\": clearing what an interrupted start left: {}", row.name,
               found.error().message());
  } else if (!found->empty()) {
    log::warn(
        "instance \"{}\" ({}): {}", row.name,
        interrupted ? "its start was interrupted by a corrald crash; rolled back" : "left over from a crash",
        *found);
  }
  if (!interrupted) return recovery;
  if (!found || found->empty())
    log::warn("instance \"{}\": its start was interrupted by a corrald crash before any effect", row.name);
  markLost(row, "corrald stopped while starting it; the start was rolled back" +
                    (found && !found->empty() ? " (" + *found + ")" : std::string()));
  recovery.rowChanged = true;
  return recovery;
}

void ContainerDriver::replugNic(InstanceHandle&, const InstanceRow& row, NicPort& nic) {
  if (row.state != InstanceState::running || !row.pid) return;
  if (auto plugged = nic.plugIntoProcess(static_cast<pid_t>(*row.pid)); !plugged) {
    log::warn("instance \"{}\": plugging its NIC back in: {}", row.name, plugged.error().message());
  } else {
    log::info("instance \"{}\": NIC was missing, plugged back in", row.name);
  }
}

json ContainerDriver::readUsage(const InstanceHandle& handle, const InstanceRow& row) const {
  const ContainerHandle& container = own(handle);
  if (row.state != InstanceState::running || !container.run || !container.run->cgroup) return nullptr;
  auto stats = container.run->cgroup->stats();
  if (!stats) return nullptr;
  // Its cgroup's memory usage, and the OOM kills in it since its last start.
  return {{"memory_bytes", stats->memoryCurrentBytes}, {"source", "cgroup"}, {"oom_kills", stats->oomKills}};
}

std::optional<UsageSample> ContainerDriver::sampledUsage(const InstanceHandle& handle,
                                                         const InstanceRow& row) const {
  const ContainerHandle& container = own(handle);
  if (row.state != InstanceState::running || !container.run) return std::nullopt;
  std::optional<UsageReading> sample;
  {
    std::lock_guard lock(watchMutex_);
    sample = container.run->sample;
  }
  if (!sample) return std::nullopt;
  return UsageSample{
      .value = {{"memory_bytes", sample->memoryBytes}, {"source", "cgroup"}, {"oom_kills", sample->oomKills}},
      .at = sample->at};
}

void ContainerDriver::describe(const InstanceHandle& handle, const schema::InstanceSpec& spec,
                               const InstanceRow& row, const json& usage, json& out) const {
  const ContainerHandle& container = own(handle);
  const bool running = row.state == InstanceState::running && container.run && container.run->cgroup;
  // Its OOM kills in its cgroup since its last start (live while it runs, as of the usage reading).
  int64_t oomKills = row.oomKills;
  if (usage.is_object() && usage.contains("oom_kills") && usage["oom_kills"].is_number_integer())
    oomKills = std::max(oomKills, usage["oom_kills"].get<int64_t>());
  out["command"] = container.config ? json(container.config->argv) : json(spec.command);
  // The manifest digest of the store image it runs; null for a built-in image.
  const std::optional<std::string> digest = imageLaunch_.imageDigest(row.name);
  out["image_digest"] = digest ? json(*digest) : json(nullptr);
  out["oom_kills"] = oomKills;
  out["cgroup"] = running ? json(container.run->cgroup->path()) : json(nullptr);
  out["bundle"] = directory(row.name).string();
  out["vm"] = nullptr;
  out["user_namespace_range"] = row.userNamespaceStart ? json{{"uid", *row.userNamespaceStart},
                                                              {"gid", *row.userNamespaceStart},
                                                              {"count", container::kIdsPerContainer}}
                                                       : json(nullptr);
}

// The watcher's epoll set: each watched run's pidfd, keyed by its run id (0 is the wake eventfd).
void ContainerDriver::watchPidfd(const Run& run) {
  epoll_event event{.events = EPOLLIN, .data = {.u64 = run.id}};
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, run.pidfd->get(), &event) != 0)
    log::error("container watcher: epoll_ctl(ADD, pidfd of pid {}): {}", run.pid, std::strerror(errno));
}

void ContainerDriver::wake() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
}

// The watcher thread: waits on an epoll set of every running container's pidfd (and the wake eventfd), so
// a wait costs the same with 500 containers as with one; an exit is collected here and reported. OOM kills
// of a child are not seen in any pidfd: every running container's cgroup is sampled once a second (memory
// usage and OOM kills), which is also the usage listings show.
void ContainerDriver::watch() {
  auto lastSample = Clock::time_point{};
  std::array<epoll_event, 64> events{};
  while (!quit_) {
    auto now = Clock::now();
    if (now - lastSample >= kUsageSampleEvery) {
      lastSample = now;
      sampleUsage();
    }
    const auto untilSample =
        std::chrono::duration_cast<std::chrono::milliseconds>(lastSample + kUsageSampleEvery - Clock::now());
    const int ready = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()),
                                   static_cast<int>(std::clamp<int64_t>(untilSample.count() + 1, 1, 1000)));
    for (int i = 0; i < ready && !quit_; ++i) {
      const RunId id = events[static_cast<size_t>(i)].data.u64;
      if (id == 0) {
        uint64_t value = 0;
        [[maybe_unused]] ssize_t ignored = ::read(wake_.get(), &value, sizeof value);
        continue;
      }
      std::string name;
      std::shared_ptr<Run> run;
      {
        std::lock_guard lock(watchMutex_);
        auto it = watched_.find(id);
        if (it == watched_.end()) continue;
        name = it->second.first;
        run = it->second.second;
        watched_.erase(it);
        ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, run->pidfd->get(), nullptr);
      }
      InstanceEnding ending = collectExit(name, *run);
      if (run->console) {
        // The attached client (if any) gets the first process's end as its exit frame.
        StdioExit exit;
        if (ending.exitSignal) {
          exit.signal = static_cast<int>(*ending.exitSignal);
        } else {
          exit.exitCode = static_cast<int>(ending.exitCode.value_or(0));
        }
        run->console->ended(exit);
      }
      events_->instanceEnded(name, run->id, std::move(ending));
    }
  }
}

// The container's init has exited: its status collected, its cgroup killed and removed, its overlay
// unmounted so a later start does not stack another.
InstanceEnding ContainerDriver::collectExit(const std::string& name, Run& run) {
  InstanceEnding ending = InstanceEnding::because(ExitReason::exited);
  if (run.ourChild) {
    int status = 0;
    pid_t waited = ::waitpid(run.pid, &status, 0);
    if (waited == run.pid && WIFEXITED(status)) ending.exitCode = WEXITSTATUS(status);
    if (waited == run.pid && WIFSIGNALED(status)) {
      ending.exitSignal = WTERMSIG(status);
      ending.reason = ExitReason::signaled;
    }
  } else {
    // Adopted after a restart: corrald saw it end but, not its parent, cannot know how (docs/api.md).
    ending.reason = ExitReason::lost;
    ending.note =
        "it ended after corrald restarted; corrald was not its parent, so its exit status is unknown";
  }
  auto stats = run.cgroup->stats();
  // A stop kills PID 1 with SIGKILL itself: the manager reads such an end as "stopped" whatever this says.
  if (ending.exitSignal == SIGKILL && stats && stats->oomKills > 0) ending.reason = ExitReason::oomKilled;
  if (stats) ending.oomKills = static_cast<int64_t>(stats->oomKills);
  if (auto killed = run.cgroup->killAll(); !killed)
    log::warn("instance \"{}\": {}", name, killed.error().message());
  CORRAL_FAILPOINT("exit.after-cgroup-kill");
  if (auto destroyed = run.cgroup->destroy(); !destroyed)
    log::warn("instance \"{}\": {}", name, destroyed.error().message());
  ::umount2((directory(name) / "rootfs").c_str(), MNT_DETACH);
  return ending;
}

void ContainerDriver::sampleUsage() {
  // Read without the watch lock (a listing takes it to show a sample), then kept under it. The vectors
  // keep their capacity from one second to the next: a sample of 500 allocates nothing.
  std::vector<std::shared_ptr<Run>>& runs = sampleRuns_;
  {
    std::lock_guard lock(watchMutex_);
    runs.clear();
    for (auto& [id, entry] : watched_) runs.push_back(entry.second);
  }
  std::vector<UsageReading>& samples = samples_;
  samples.assign(runs.size(), UsageReading{});
  for (size_t i = 0; i < runs.size(); ++i) {
    auto usage = runs[i]->cgroup->usage();
    if (!usage) continue;  // `at` stays empty: the run keeps its last sample
    samples[i] = {.memoryBytes = usage->memoryCurrentBytes, .oomKills = usage->oomKills, .at = Clock::now()};
  }
  std::vector<std::tuple<std::string, RunId, int64_t>> rises;
  {
    std::lock_guard lock(watchMutex_);
    for (size_t i = 0; i < runs.size(); ++i) {
      Run& run = *runs[i];
      if (samples[i].at == Clock::time_point{}) continue;
      run.sample = samples[i];
      const auto oomKills = static_cast<int64_t>(samples[i].oomKills);
      if (oomKills <= run.oomKillsSeen) continue;
      run.oomKillsSeen = oomKills;
      auto watched = watched_.find(run.id);
      if (watched != watched_.end()) rises.emplace_back(watched->second.first, run.id, oomKills);
    }
  }
  runs.clear();  // no run is kept alive by the sampler until the next second
  for (auto& [name, id, count] : rises) events_->instanceOomKills(name, id, count);
}

}  // namespace corral::daemon
