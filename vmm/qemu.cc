// The direct engine (vmm/qemu.h): QEMU spawned in its own session and mount namespace (vmm/qemu_spawn.h),
// watched through a pidfd and a QMP event monitor by one thread per VM, driven by QMP commands on a second
// monitor.
#include "vmm/qemu.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "core/log.h"
#include "core/rollback.h"
#include "vmm/qemu_argv.h"
#include "vmm/qemu_spawn.h"
#include "vmm/qmp.h"

namespace corral::vmm {
namespace {

using Clock = std::chrono::steady_clock;
using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr auto kSpawnTimeout = 30s;
constexpr auto kQmpTimeout = 10s;
constexpr auto kExitTimeout = 30s;
constexpr auto kMigrationTimeout = 600s;
constexpr auto kMigrationPoll = 5ms;
constexpr std::string_view kRecordFile = "domain.json";
// QEMU 7.2 caps migration at 32 MiB/s unless told otherwise; a save to a local file wants no cap (libvirt
// lifts it the same way for virDomainSave).
constexpr uint64_t kUnlimitedBandwidth = 1ull << 40;

double msSince(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// The last lines of QEMU's log (its stderr: why it did not start, or why it ended), for an error message.
std::string logTail(const std::filesystem::path& log) {
  std::string text = readFile(log);
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  if (text.size() > 2000) text = text.substr(text.size() - 2000);
  return text.empty() ? "(nothing in its log)" : text;
}

std::string newUuid() {
  std::string bytes = readFile("/proc/sys/kernel/random/uuid");
  while (!bytes.empty() && bytes.back() == '\n') bytes.pop_back();
  return bytes;
}

Result<UniqueFd> openPidfd(pid_t pid) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return fail(systemError(errno, fmt::format("pidfd_open({})", pid)));
  return UniqueFd(fd);
}

bool exited(int pidfd) {
  pollfd in{pidfd, POLLIN, 0};
  return ::poll(&in, 1, 0) == 1;
}

// Whether `pid` is the QEMU started with this pidfile: its command line names it (a recycled pid, or
// another process, does not).
bool isQemuOf(pid_t pid, const std::filesystem::path& pidFile) {
  const std::string cmdline = readFile(fmt::format("/proc/{}/cmdline", pid));
  const std::string needle = std::string("-pidfile") + '\0' + pidFile.string() + '\0';
  return cmdline.find(needle) != std::string::npos;
}

// Whether `pid` has QEMU's name (/proc/PID/stat's comm, which a zombie keeps; its cmdline is gone).
bool isQemuZombie(pid_t pid, const std::string& binary) {
  const std::string stat = readFile(fmt::format("/proc/{}/stat", pid));
  const std::string comm = std::filesystem::path(binary).filename().string().substr(0, 15);
  return stat.find("(" + comm + ") Z") != std::string::npos;
}

std::optional<pid_t> readPid(const std::filesystem::path& pidFile) {
  std::ifstream in(pidFile);
  long pid = 0;
  if (in >> pid && pid > 0) return static_cast<pid_t>(pid);
  return std::nullopt;
}

// Collects an ended QEMU's exit status when it is this process's child (started by this corrald); one
// adopted after a restart is init's, and waitid says ECHILD.
void reap(int pidfd) {
  siginfo_t info{};
  while (::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG) < 0 && errno == EINTR) {
  }
}

// Waits until QEMU answers on its event monitor a command its main loop runs (query-status): it has
// finished initialising (devices up, the tap open, the kernel loaded). A QEMU that ends first failed, and
// its log says why.
Result<QmpClient> awaitInitialised(const std::string& vmName, int pidfd, const QemuRunFiles& files) {
  const auto deadline = Clock::now() + kSpawnTimeout;
  for (;;) {
    if (exited(pidfd)) {
      reap(pidfd);
      return fail(internalError("QEMU did not start: {}", logTail(files.log)));
    }
    if (Clock::now() > deadline)
      return fail(Error(ErrorKind::Unavailable, fmt::format("QEMU did not initialise within {} s: {}",
                                                            kSpawnTimeout.count(), logTail(files.log))));
    auto events = QmpClient::connect(files.eventSocket, deadline);
    Status answered;
    if (!events) {
      answered = fail(events.error());
    } else if (auto status = events->execute("query-status", nullptr, deadline); !status) {
      answered = fail(status.error());
    } else {
      return std::move(*events);
    }
    // Unavailable: no socket yet (ENOENT), or nothing listening on it yet: QEMU is still reading its
    // options, and is asked again 2 ms later. Any other failure: a QEMU that fails closes the socket on
    // its way out, a moment before it has ended; it is given a second to end, and then its log says why.
    const bool early = answered.error().kind() == ErrorKind::Unavailable;
    pollfd in{pidfd, POLLIN, 0};
    if (::poll(&in, 1, early ? 2 : 1000) == 1) continue;
    if (!early) return fail(answered.error().wrap(fmt::format("VM {}: event monitor", vmName)));
  }
}

// The NIC's tap for a QEMU that cannot open it itself (not root), as QEMU would: not persistent (it goes with
// the last fd, QEMU's once corral closed its own), with the virtio-net header QEMU asks for when it can.
Result<UniqueFd> openTap(const std::string& name) {
  if (name.size() >= IFNAMSIZ) return fail(invalidField("nic", "tap name \"{}\" is too long", name));
  UniqueFd tun(::open("/dev/net/tun", O_RDWR | O_CLOEXEC));
  if (!tun) return fail(systemError(errno, "open(\"/dev/net/tun\")"));
  ifreq request{};
  request.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  std::memcpy(request.ifr_name, name.data(), name.size());
  if (::ioctl(tun.get(), TUNSETIFF, &request) != 0)
    return fail(systemError(errno, fmt::format("ioctl(TUNSETIFF, \"{}\")", name)));
  return tun;
}

// Gives the user a file or directory QEMU writes (chown; its mode stays).
Status handOver(const std::filesystem::path& path, const QemuSpawn::User& user) {
  if (::chown(path.c_str(), user.uid, user.gid) != 0)
    return fail(systemError(errno, fmt::format("chown(\"{}\", {}:{})", path.string(), user.uid, user.gid)));
  return {};
}

StopReason reasonOfShutdown(const std::string& reason) {
  if (reason == "guest-shutdown") return StopReason::Shutdown;
  if (reason == "guest-panic") return StopReason::Crashed;
  // guest-reset: with -no-reboot a reset ends QEMU, as libvirt's on_reboot='destroy' does (and reports
  // "destroyed"); host-qmp-quit, host-signal, host-ui: someone else ended it.
  return StopReason::Destroyed;
}

// The run directory's name: short whatever the domain's, since the QMP sockets in it are bound to paths of
// at most 107 bytes (a warm template's domain name alone is ~80).
std::string runDirName(std::string_view domainName) {
  uint64_t hash = 14695981039346656037ull;
  for (char c : domainName) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  return fmt::format("{:016x}", hash);
}

}  // namespace

struct Qemu::Vm {
  std::string name;
  std::string instance;
  std::string owner;
  std::string uuid;
  std::filesystem::path runDir;
  QemuRunFiles files;
  std::filesystem::path agentSocket;  // QEMU's; left behind by a killed QEMU, removed with the run directory
  std::filesystem::path consoleSocket;  // the same (empty: the console goes to a file only)
  pid_t pid = 0;
  UniqueFd pidfd;
  UniqueFd wake;  // eventfd: the engine is closing, the watcher returns and leaves the VM running
  std::optional<QmpClient> events;
  std::mutex commandMutex;        // the command monitor takes one client at a time
  std::atomic<int> intended{-1};  // a StopReason corral asked for (Destroyed, Saved); -1: none
  std::mutex mutex;
  std::condition_variable changed;
  bool ended = false;          // under mutex: the process is gone and its directory removed
  std::string lastLog;         // under mutex, once ended: the tail of qemu.log (the directory is gone)
  std::string shutdownReason;  // the watcher's: the SHUTDOWN event's reason, if one came

  Result<Json> command(std::string_view command, const Json& arguments, int passFd = -1) {
    std::lock_guard lock(commandMutex);
    return commandLocked(command, arguments, passFd);
  }
  Result<Json> commandLocked(std::string_view command, const Json& arguments, int passFd = -1) {
    auto client = QmpClient::connect(files.qmpSocket, Clock::now() + kQmpTimeout);
    if (!client) return fail(client.error().wrap(fmt::format("VM {}", name)));
    auto answer = client->execute(command, arguments, Clock::now() + kQmpTimeout, passFd);
    if (!answer) return fail(answer.error().wrap(fmt::format("VM {}", name)));
    return answer;
  }
  bool waitEnded(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, timeout, [&] { return ended; });
  }
};

Qemu::Qemu(QemuEngineOptions options, std::function<void(const DomainStopped&)> onStopped)
    : options_(std::move(options)), onStopped_(std::move(onStopped)) {}

Result<std::unique_ptr<Qemu>> Qemu::open(QemuEngineOptions options,
                                         std::function<void(const DomainStopped&)> onStopped) {
  std::error_code ec;
  std::unique_ptr<Qemu> engine(new Qemu(std::move(options), std::move(onStopped)));
  for (const auto& entry : std::filesystem::directory_iterator(engine->options_.runRoot, ec)) {
    if (entry.is_directory()) engine->adopt(entry.path());
  }
  // A cgroup whose VM is not running: its QEMU ended while no engine watched (and its run directory went
  // with an earlier open, or was never finished).
  if (engine->options_.cgroups) {
    for (const auto& name : engine->options_.cgroups->list())
      if (!engine->find(name)) engine->removeCgroup(name);
  }
  return engine;
}

Qemu::~Qemu() {
  std::map<std::string, std::shared_ptr<Vm>, std::less<>> vms;
  {
    std::lock_guard lock(mutex_);
    vms.swap(vms_);
  }
  for (auto& [name, vm] : vms) {
    const uint64_t one = 1;
    (void)!::write(vm->wake.get(), &one, sizeof(one));
  }
  std::unique_lock lock(mutex_);
  watchersDone_.wait(lock, [&] { return watchers_ == 0; });
}

// A run directory found at open: its QEMU is adopted when the pidfile names a live process started for
// this directory; otherwise the directory is a leftover (the VM ended while no engine watched it).
void Qemu::adopt(const std::filesystem::path& runDir) {
  auto vm = std::make_shared<Vm>();
  vm->runDir = runDir;
  vm->files = QemuRunFiles::in(runDir);
  Json record = Json::parse(readFile(runDir / kRecordFile), nullptr, false);
  auto pid = readPid(vm->files.pidFile);
  std::optional<UniqueFd> pidfd;
  if (pid) {
    if (auto opened = openPidfd(*pid); opened) pidfd = std::move(*opened);
  }
  // The pidfd is taken first: once the command line matches, the pidfd is that process's, whatever
  // happens to the pid number later.
  const bool live = record.is_object() && pidfd && isQemuOf(*pid, vm->files.pidFile) && !exited(pidfd->get());
  if (record.is_object() && record.contains("agent_socket") && record["agent_socket"].is_string())
    vm->agentSocket = record["agent_socket"].get<std::string>();
  if (record.is_object() && record.contains("console_socket") && record["console_socket"].is_string())
    vm->consoleSocket = record["console_socket"].get<std::string>();
  if (!live) {
    // Ended while no engine watched, and still a zombie child of this process (started by it, engine
    // closed and opened again): reaped, when the zombie's name says it is a QEMU (a pid is not reused
    // before its zombie is reaped). Its other threads may still be on their way out: a second for them.
    if (pidfd && isQemuZombie(*pid, options_.binary)) {
      pollfd in{pidfd->get(), POLLIN, 0};
      if (::poll(&in, 1, 1000) == 1) reap(pidfd->get());
    }
    log::info("qemu engine: removing \"{}\": its QEMU is gone", runDir.string());
    if (record.is_object() && record.contains("name") && record["name"].is_string())
      removeCgroup(record["name"].get<std::string>());
    std::error_code ec;
    if (!vm->agentSocket.empty()) std::filesystem::remove(vm->agentSocket, ec);
    if (!vm->consoleSocket.empty()) std::filesystem::remove(vm->consoleSocket, ec);
    std::filesystem::remove_all(runDir, ec);
    std::filesystem::remove(options_.runRoot, ec);  // when it was the last
    return;
  }
  vm->name = record.value("name", runDir.filename().string());
  vm->instance = record.value("instance", "");
  vm->owner = record.value("owner", "");
  vm->uuid = record.value("uuid", "");
  vm->pid = *pid;
  vm->pidfd = std::move(*pidfd);
  vm->wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  // Events again; a monitor that does not answer (another engine object still holds it) leaves the VM
  // watched by its pidfd alone, its end then reported without the guest's reason.
  if (auto events = QmpClient::connect(vm->files.eventSocket, Clock::now() + 2s); events) {
    vm->events = std::move(*events);
  } else {
    log::warn("qemu engine: VM {}: no event monitor ({}); watching its process only", vm->name,
              events.error().message());
  }
  {
    std::lock_guard lock(mutex_);
    vms_[vm->name] = vm;
  }
  watch(vm);
  log::info("qemu engine: adopted VM {} (pid {})", vm->name, vm->pid);
}

// The VM's thread: its events (the SHUTDOWN reason) until the process ends, then the directory goes and the
// stop is reported.
void Qemu::watch(const std::shared_ptr<Vm>& vm) {
  {
    std::lock_guard lock(mutex_);
    ++watchers_;
  }
  std::thread([this, vm] {
    Rollback countOut([this] {
      std::lock_guard lock(mutex_);
      if (--watchers_ == 0) watchersDone_.notify_all();
    });
    for (;;) {
      pollfd fds[3] = {{vm->pidfd.get(), POLLIN, 0},
                       {vm->wake.get(), POLLIN, 0},
                       {vm->events && !vm->events->closed() ? vm->events->fd() : -1, POLLIN, 0}};
      if (::poll(fds, 3, -1) < 0) {
        if (errno == EINTR) continue;
        log::warn("qemu engine: VM {}: poll: {}", vm->name, std::strerror(errno));
        std::this_thread::sleep_for(100ms);
        continue;
      }
      if (fds[1].revents != 0) return;  // the engine closes; the VM runs on
      if (fds[2].revents != 0) {
        // Every event already readable, none waited for.
        while (auto event = vm->events->nextEvent(Clock::now())) {
          if (event->name == "SHUTDOWN") vm->shutdownReason = event->data.value("reason", "");
        }
      }
      if (fds[0].revents != 0) break;
    }
    reap(vm->pidfd.get());
    removeCgroup(vm->name);
    // Whatever QEMU still had to say before it went.
    if (vm->events) {
      while (auto event = vm->events->nextEvent(Clock::now())) {
        if (event->name == "SHUTDOWN") vm->shutdownReason = event->data.value("reason", "");
      }
    }
    StopReason reason = StopReason::Crashed;  // no SHUTDOWN event: the process died
    if (const int intended = vm->intended.load(); intended >= 0)
      reason = static_cast<StopReason>(intended);
    else if (!vm->shutdownReason.empty())
      reason = reasonOfShutdown(vm->shutdownReason);
    const std::string lastLog = logTail(vm->files.log);
    if (reason == StopReason::Crashed)
      log::warn("qemu engine: VM {} (pid {}) ended without a shutdown: {}", vm->name, vm->pid, lastLog);
    vm->events.reset();
    std::error_code ec;
    if (!vm->agentSocket.empty()) std::filesystem::remove(vm->agentSocket, ec);
    if (!vm->consoleSocket.empty()) std::filesystem::remove(vm->consoleSocket, ec);
    std::filesystem::remove_all(vm->runDir, ec);
    {
      std::lock_guard lock(mutex_);
      if (auto it = vms_.find(vm->name); it != vms_.end() && it->second == vm) vms_.erase(it);
      // The root goes with the last VM: a corrald that ran VMs leaves no empty directory behind.
      if (vms_.empty()) std::filesystem::remove(options_.runRoot, ec);
    }
    {
      std::lock_guard lock(vm->mutex);
      vm->ended = true;
      vm->lastLog = lastLog;
    }
    vm->changed.notify_all();
    if (onStopped_) onStopped_(DomainStopped{vm->name, reason});
  }).detach();
}

void Qemu::removeCgroup(const std::string& name) {
  if (!options_.cgroups) return;
  if (Status ok = options_.cgroups->remove(name); !ok)
    log::warn("qemu engine: VM {}: cgroup not removed: {}", name, ok.error().message());
}

std::shared_ptr<Qemu::Vm> Qemu::find(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = vms_.find(name);
  return it == vms_.end() ? nullptr : it->second;
}

Result<DomainInfo> Qemu::launch(const DomainConfig& config, bool paused, bool incoming) {
  if (Status ok = validate(config); !ok) return fail(ok.error());
  if (config.domainName.find('/') != std::string::npos || config.domainName.starts_with("."))
    return fail(invalidField("name", "domain name \"{}\" is not a directory name", config.domainName));
  if (find(config.domainName)) return fail(conflict("VM {} is running already", config.domainName));
  auto vm = std::make_shared<Vm>();
  vm->name = config.domainName;
  vm->instance = config.instanceName;
  vm->owner = config.owner;
  vm->uuid = newUuid();
  vm->runDir = options_.runRoot / runDirName(config.domainName);
  vm->files = QemuRunFiles::in(vm->runDir);
  vm->agentSocket = config.agentSocket;
  vm->consoleSocket = config.consoleSocket;
  std::error_code ec;
  {
    std::lock_guard lock(mutex_);                         // the last VM's watcher removes the root under it
    std::filesystem::remove_all(vm->runDir, ec);          // a leftover of a VM that is not running
    std::filesystem::create_directories(vm->runDir, ec);  // the root too: made at the first VM
  }
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir(\"{}\")", vm->runDir.string())));
  Rollback removeDir([this, vm] {
    std::error_code ignored;
    std::lock_guard lock(mutex_);
    std::filesystem::remove_all(vm->runDir, ignored);
    if (vms_.empty()) std::filesystem::remove(options_.runRoot, ignored);
  });
  {
    std::ofstream out(vm->runDir / kRecordFile);
    out << Json{{"name", vm->name},
                {"instance", vm->instance},
                {"owner", vm->owner},
                {"uuid", vm->uuid},
                {"agent_socket", config.agentSocket.string()},
                {"console_socket", config.consoleSocket.string()}}
               .dump()
        << "\n";
    if (!out)
      return fail(systemError(errno, fmt::format("write(\"{}\")", (vm->runDir / kRecordFile).string())));
  }
  std::filesystem::remove(config.agentSocket, ec);
  if (!config.consoleSocket.empty()) std::filesystem::remove(config.consoleSocket, ec);
  DomainInfo info;
  const auto spawning = Clock::now();
  UniqueFd tap;
  if (options_.user) {
    // What a QEMU that is not root opens: its run directory (pidfile, QMP sockets), the console log (made
    // here when missing), the agent socket's directory, the disks.
    std::vector<std::filesystem::path> handed = {vm->runDir, config.consoleLog,
                                                 config.agentSocket.parent_path()};
    if (!config.consoleSocket.empty() &&
        config.consoleSocket.parent_path() != config.agentSocket.parent_path())
      handed.push_back(config.consoleSocket.parent_path());
    if (!std::filesystem::exists(config.consoleLog)) {
      UniqueFd made(::open(config.consoleLog.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
      if (!made) return fail(systemError(errno, fmt::format("open(\"{}\")", config.consoleLog.string())));
    }
    for (const auto& disk : config.disks) handed.push_back(disk.path);  // read-only ones are opened too
    for (const auto& path : handed) {
      if (Status ok = handOver(path, *options_.user); !ok)
        return fail(ok.error().wrap(fmt::format("start VM {}", vm->name)));
    }
    // The agent socket's directory (the VM's, where its disks are) is the user's alone.
    if (::chmod(config.agentSocket.parent_path().c_str(), 0700) != 0) {
      return fail(systemError(errno, fmt::format("start VM {}: chmod(\"{}\", 0700)", vm->name,
                                                 config.agentSocket.parent_path().string())));
    }
    if (config.nic) {
      auto opened = openTap(config.nic->tapName);
      if (!opened) return fail(opened.error().wrap(fmt::format("start VM {}", vm->name)));
      tap = std::move(*opened);
    }
  }
  auto argv = qemuArgv(config, vm->files,
                       {.paused = paused,
                        .incoming = incoming,
                        .uuid = vm->uuid,
                        .tapFd = tap ? std::optional<int>(kTapFd) : std::nullopt,
                        .binary = options_.binary});
  const bool kvm = config.accelerator == Accelerator::Kvm;
  std::vector<UniqueFd> cgroupJoin;
  Rollback removeCgroupDir([this, vm] { removeCgroup(vm->name); });
  if (options_.cgroups) {
    // QEMU's default TCG translation cache is 1 GiB, allocated as it fills.
    const uint32_t translationCacheMiB =
        kvm ? 0 : (config.tcgTranslationCacheMiB ? config.tcgTranslationCacheMiB : 1024);
    auto joined = options_.cgroups->create(vm->name, vmMemoryLimit(config.memoryBytes, translationCacheMiB));
    if (!joined) return fail(joined.error().wrap(fmt::format("start VM {}: cgroup", vm->name)));
    cgroupJoin = std::move(*joined);
  }
  QemuSpawn spawn{.argv = std::move(argv),
                  .log = vm->files.log,
                  .devNodes = qemuDevNodes(kvm),
                  .cgroupProcs = {},
                  .tapFd = tap ? tap.get() : -1,
                  .user = options_.user};
  for (const auto& fd : cgroupJoin) spawn.cgroupProcs.push_back(fd.get());
  auto pid = spawnConfinedQemu(spawn);
  cgroupJoin.clear();
  tap.reset();  // QEMU's copy is the tap's only one now
  if (!pid) return fail(pid.error().wrap(fmt::format("start VM {}", vm->name)));
  // A child's pid is not reused before it is reaped: this pidfd is that QEMU's.
  auto pidfd = openPidfd(*pid);
  if (!pidfd) {
    ::kill(*pid, SIGKILL);
    while (::waitpid(*pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    return fail(pidfd.error().wrap(fmt::format("start VM {}", vm->name)));
  }
  vm->pid = *pid;
  vm->pidfd = std::move(*pidfd);
  Rollback kill([vm] {
    ::syscall(SYS_pidfd_send_signal, vm->pidfd.get(), SIGKILL, nullptr, 0);
    pollfd in{vm->pidfd.get(), POLLIN, 0};
    ::poll(&in, 1, static_cast<int>(std::chrono::milliseconds(kExitTimeout).count()));
    reap(vm->pidfd.get());
  });
  info.steps.emplace_back("spawn", msSince(spawning));
  const auto connecting = Clock::now();
  auto events = awaitInitialised(vm->name, vm->pidfd.get(), vm->files);
  if (!events) return fail(events.error().wrap(fmt::format("start VM {}", vm->name)));
  vm->events = std::move(*events);
  vm->wake = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!vm->wake) return fail(systemError(errno, "eventfd"));
  info.steps.emplace_back("qmp", msSince(connecting));
  {
    std::lock_guard lock(mutex_);
    vms_[vm->name] = vm;
  }
  watch(vm);
  kill.dismiss();
  removeCgroupDir.dismiss();
  removeDir.dismiss();
  info.name = vm->name;
  info.uuid = vm->uuid;
  info.running = true;
  info.paused = paused || incoming;
  info.qemuPid = vm->pid;
  info.owner = vm->owner;
  return info;
}

Result<DomainInfo> Qemu::create(const DomainConfig& config, bool paused) {
  return launch(config, paused, /*incoming=*/false);
}

Result<DomainInfo> Qemu::restoreFromFile(const RestoreRequest& request) {
  UniqueFd file(::open(request.file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) return fail(systemError(errno, fmt::format("open(\"{}\")", request.file.string())));
  auto launched = launch(request.config, request.paused, /*incoming=*/true);
  if (!launched) return fail(launched.error());
  const std::string& name = request.config.domainName;
  Rollback destroyVm([this, name] { (void)destroy(name); });
  auto vm = find(name);
  if (!vm) return fail(internalError("restore VM {}: it ended at its start", name));
  const auto loading = Clock::now();
  auto loadError = [&](const Error& error) {
    // A stream QEMU cannot load ends it, and its log says why; the watcher keeps the log's tail when it
    // removes the directory.
    std::string why;
    if (vm->waitEnded(2s)) {
      std::lock_guard lock(vm->mutex);
      why = vm->lastLog;
    } else {
      why = logTail(vm->files.log);
    }
    return error.wrap(fmt::format("restore VM {} from \"{}\" (QEMU: {})", name, request.file.string(), why));
  };
  {
    std::lock_guard lock(vm->commandMutex);
    auto client = QmpClient::connect(vm->files.qmpSocket, Clock::now() + kQmpTimeout);
    if (!client) return fail(loadError(client.error()));
    const auto deadline = Clock::now() + kQmpTimeout;
    if (auto ok = client->execute("getfd", {{"fdname", "incoming"}}, deadline, file.get()); !ok)
      return fail(loadError(ok.error()));
    if (auto ok = client->execute("migrate-incoming", {{"uri", "fd:incoming"}}, deadline); !ok)
      return fail(loadError(ok.error()));
    // Loaded when QEMU leaves "inmigrate": "paused" with -S, else "running". A stream it cannot load ends
    // the process (the monitor closes).
    const auto migrationDeadline = Clock::now() + kMigrationTimeout;
    for (;;) {
      auto status = client->execute("query-status", nullptr, Clock::now() + kQmpTimeout);
      if (!status) return fail(loadError(status.error()));
      const std::string state = status->value("status", "");
      if (state != "inmigrate") {
        if (state != "paused" && state != "running")
          return fail(loadError(internalError("VM state \"{}\" after the incoming migration", state)));
        break;
      }
      if (Clock::now() > migrationDeadline)
        return fail(loadError(unavailable("still loading after {} s", kMigrationTimeout.count())));
      std::this_thread::sleep_for(kMigrationPoll);
    }
    // The stream carries the saved VM's run state, which save() stopped first: QEMU keeps it paused
    // whatever -S says (libvirt's restore resumes it the same way).
    if (!request.paused) {
      if (auto ok = client->execute("cont", nullptr, Clock::now() + kQmpTimeout); !ok)
        return fail(loadError(ok.error()));
    }
  }
  launched->steps.emplace_back("incoming", msSince(loading));
  launched->paused = request.paused;
  destroyVm.dismiss();
  return launched;
}

Status Qemu::resume(const std::string& name) {
  auto vm = find(name);
  if (!vm) return fail(notFound("VM {} is not running", name));
  auto answer = vm->command("cont", nullptr);
  if (!answer) return fail(answer.error());
  return {};
}

Result<DomainInfo> Qemu::describe(const std::shared_ptr<Vm>& vm) {
  DomainInfo info{.name = vm->name,
                  .uuid = vm->uuid,
                  .running = true,
                  .paused = false,
                  .qemuPid = vm->pid,
                  .owner = vm->owner};
  auto status = vm->command("query-status", nullptr);
  if (status) info.paused = !status->value("running", true);
  return info;
}

Result<std::optional<DomainInfo>> Qemu::lookup(const std::string& name) {
  auto vm = find(name);
  if (!vm) return std::optional<DomainInfo>();
  auto info = describe(vm);
  if (!info) return fail(info.error());
  return std::optional<DomainInfo>(std::move(*info));
}

Result<std::vector<DomainInfo>> Qemu::listDomains(std::string_view prefix) {
  std::vector<std::shared_ptr<Vm>> vms;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, vm] : vms_)
      if (name.starts_with(prefix)) vms.push_back(vm);
  }
  std::vector<DomainInfo> result;
  for (const auto& vm : vms) {
    auto info = describe(vm);
    if (info) result.push_back(std::move(*info));
  }
  return result;
}

Status Qemu::destroy(const std::string& name) {
  auto vm = find(name);
  if (!vm) return {};
  vm->intended = static_cast<int>(StopReason::Destroyed);
  if (::syscall(SYS_pidfd_send_signal, vm->pidfd.get(), SIGKILL, nullptr, 0) != 0 && errno != ESRCH)
    return fail(systemError(errno, fmt::format("pidfd_send_signal(VM {}, pid {}, SIGKILL)", name, vm->pid)));
  if (!vm->waitEnded(kExitTimeout))
    return fail(unavailable("VM {} (pid {}) did not end {} s after SIGKILL", name, vm->pid,
                            std::chrono::seconds(kExitTimeout).count()));
  return {};
}

Status Qemu::shutdownAcpi(const std::string& name) {
  auto vm = find(name);
  if (!vm) return fail(notFound("VM {} is not running", name));
  auto answer = vm->command("system_powerdown", nullptr);
  if (!answer) return fail(answer.error());
  return {};
}

Status Qemu::saveToFile(const std::string& name, const std::filesystem::path& file) {
  auto vm = find(name);
  if (!vm) return fail(notFound("VM {} is not running", name));
  UniqueFd out(::open(file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out) return fail(systemError(errno, fmt::format("open(\"{}\")", file.string())));
  std::unique_lock lock(vm->commandMutex);
  auto client = QmpClient::connect(vm->files.qmpSocket, Clock::now() + kQmpTimeout);
  if (!client) return fail(client.error().wrap(fmt::format("save VM {}", name)));
  auto run = [&](std::string_view command, const Json& arguments, int passFd = -1) -> Result<Json> {
    auto answer = client->execute(command, arguments, Clock::now() + kQmpTimeout, passFd);
    if (!answer) return fail(answer.error().wrap(fmt::format("save VM {}", name)));
    return answer;
  };
  auto status = run("query-status", nullptr);
  if (!status) return fail(status.error());
  const bool wasRunning = status->value("running", false);
  // Stopped first, as libvirt's save does: one pass over memory that no longer changes.
  if (auto ok = run("stop", nullptr); !ok) return fail(ok.error());
  Rollback continueCpus([&] {
    if (wasRunning) (void)run("cont", nullptr);
  });
  if (auto ok = run("migrate-set-parameters", {{"max-bandwidth", kUnlimitedBandwidth}}); !ok)
    return fail(ok.error());
  if (auto ok = run("getfd", {{"fdname", "saving"}}, out.get()); !ok) return fail(ok.error());
  if (auto ok = run("migrate", {{"uri", "fd:saving"}}); !ok) return fail(ok.error());
  const auto deadline = Clock::now() + kMigrationTimeout;
  for (;;) {
    auto migration = run("query-migrate", nullptr);
    if (!migration) return fail(migration.error());
    const std::string state = migration->value("status", "");
    if (state == "completed") break;
    if (state == "failed" || state == "cancelled")
      return fail(
          internalError("save VM {}: migration {}: {}", name, state, migration->value("error-desc", "")));
    if (Clock::now() > deadline) {
      (void)run("migrate_cancel", nullptr);
      return fail(unavailable("save VM {}: not written after {} s", name, kMigrationTimeout.count()));
    }
    std::this_thread::sleep_for(kMigrationPoll);
  }
  if (::fdatasync(out.get()) != 0)
    return fail(systemError(errno, fmt::format("fdatasync(\"{}\")", file.string())));
  continueCpus.dismiss();
  vm->intended = static_cast<int>(StopReason::Saved);
  (void)run("quit", nullptr);  // QEMU may close the monitor before it answers
  lock.unlock();
  if (!vm->waitEnded(kExitTimeout)) {
    ::syscall(SYS_pidfd_send_signal, vm->pidfd.get(), SIGKILL, nullptr, 0);
    vm->waitEnded(kExitTimeout);
  }
  return {};
}

Result<std::string> Qemu::hypervisorVersion() {
  static const std::string version = [this] {
    std::string command = options_.binary + " --version 2>/dev/null";
    std::string text;
    if (FILE* pipe = ::popen(command.c_str(), "re")) {
      char line[256];
      if (std::fgets(line, sizeof(line), pipe)) text = line;
      ::pclose(pipe);
    }
    // "QEMU emulator version 7.2.22 (Debian ...)"
    constexpr std::string_view kPrefix = "QEMU emulator version ";
    if (!text.starts_with(kPrefix)) return std::string();
    text = text.substr(kPrefix.size());
    return text.substr(0, text.find_first_of(" \n"));
  }();
  if (version.empty()) return fail(unavailable("{} --version did not answer", options_.binary));
  return fmt::format("QEMU {} (direct, corral runs it)", version);
}

}  // namespace corral::vmm
