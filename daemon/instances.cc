// InstanceManager: the instance lifecycle over the container runtime, one supervisor thread polling the
// running containers' pidfds, every state change persisted to the store before it is answered.
#include "daemon/instances.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <ctime>
#include <string_view>

#include "api/api.h"
#include "container/cgroup_mode.h"
#include "container/cgroup_v2.h"
#include "core/failpoint.h"
#include "core/log.h"
#include "core/rollback.h"
#include "daemon/vm_image.h"

namespace corral::daemon {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int64_t kMaxLogChunk = 256 * 1024;
constexpr size_t kMaxExecOutput = 1 << 20;
constexpr auto kExecTimeout = std::chrono::seconds(60);
constexpr int64_t kMaxGraceSeconds = 3600;

int64_t now() {
  return static_cast<int64_t>(std::time(nullptr));
}

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

// The runtime's spec JSON is the API's own: render and parse it through the request codec.
// A running container's cgroup is shared: the supervisor kills and removes it when the container exits
// while a stop or a forced remove may be killing it from a request thread (outside the manager's lock, so
// a slow kill holds up nobody else). One lock per cgroup keeps those calls from overlapping (a destroy()
// under a running killAll() would free what the kill is still walking).
class SharedCgroup : public container::Cgroup {
 public:
  explicit SharedCgroup(std::unique_ptr<container::Cgroup> inner) : inner_(std::move(inner)) {}
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
  // Once destroyed, the group is empty and gone: what a late kill or a second removal wanted.
  Status killAll() override {
    std::lock_guard lock(mutex_);
    if (destroyed_) return {};
    return inner_->killAll();
  }
  Status destroy() override {
    std::lock_guard lock(mutex_);
    if (destroyed_) return {};
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
  mutable std::mutex mutex_;
  std::unique_ptr<container::Cgroup> inner_;
  bool destroyed_ = false;
};

std::shared_ptr<container::Cgroup> shareCgroup(std::unique_ptr<container::Cgroup> cgroup) {
  return std::make_shared<SharedCgroup>(std::move(cgroup));
}

std::string specText(const schema::InstanceSpec& spec) {
  return api::renderRequest(api::RunInstance{spec}).body;
}

Result<schema::InstanceSpec> specFromText(const std::string& text) {
  auto request = api::parseRequest("POST", "/v1/instances", text);
  if (!request) return fail(request.error());
  return std::get<api::RunInstance>(*request).spec;
}

json optionalJson(const std::optional<int64_t>& value) {
  return value ? json(*value) : json(nullptr);
}
json optionalJson(const std::optional<std::string>& value) {
  return value ? json(*value) : json(nullptr);
}

// Bytes as a JSON string: invalid UTF-8 is replaced (U+FFFD) rather than failing the whole response.
json textJson(const std::string& bytes) {
  return json::parse(json(bytes).dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace

void markLost(InstanceRow& row, std::string note) {
  row.state = InstanceState::stopped;
  row.finishedAt = now();
  row.exitCode.reset();
  row.exitSignal.reset();
  row.exitReason = "lost";
  row.exitNote = std::move(note);
  row.pid.reset();
  row.pidStartTime.reset();
}

std::optional<int64_t> processStartTime(pid_t pid) {
  UniqueFd fd(::open(fmt::format("/proc/{}/stat", pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buffer[4096];
  ssize_t got = ::read(fd.get(), buffer, sizeof buffer - 1);
  if (got <= 0) return std::nullopt;
  std::string text(buffer, static_cast<size_t>(got));
  // The command (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  // After ") " come fields 3, 4, ... separated by single spaces: field 22 is the 20th.
  std::string_view rest(text);
  rest.remove_prefix(close + 1);
  std::string_view field;
  for (int index = 3; index <= 22; ++index) {
    while (rest.starts_with(' ')) rest.remove_prefix(1);
    size_t space = rest.find(' ');
    field = rest.substr(0, space);
    if (field.empty()) return std::nullopt;
    rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space);
  }
  int64_t value = 0;
  auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (ec != std::errc{} || end != field.data() + field.size()) return std::nullopt;
  return value;
}

InstanceManager::InstanceManager(Store& store, InstanceOptions options, NetworkController* network)
    : store_(store),
      options_(std::move(options)),
      network_(network),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

Result<std::unique_ptr<InstanceManager>> InstanceManager::load(Store& store, InstanceOptions options,
                                                               NetworkController* network) {
  auto manager = std::make_unique<InstanceManager>(store, std::move(options), network);
  if (!manager->wake_) return fail(systemError(errno, "eventfd"));
  if (auto pool = container::readIdPool(manager->options_.subuidFile, manager->options_.subgidFile); pool) {
    manager->idRanges_ = container::IdRangeAllocator(*pool);
  } else {
    log::warn("user namespaces: {} (containers with one are refused until this is fixed)",
              pool.error().message());
    manager->idPoolError_ = pool.error();
  }
  auto rows = store.listInstances();
  if (!rows) return fail(rows.error().wrap("load instances"));
  for (InstanceRow& row : *rows) {
    if (row.userNamespaceStart) {
      if (auto kept = manager->idRanges_.reserve(static_cast<uint32_t>(*row.userNamespaceStart)); !kept)
        log::error("instance \"{}\": its user namespace range: {}", row.name, kept.error().message());
    }
    Instance instance;
    auto spec = specFromText(row.specJson);
    if (!spec) return fail(spec.error().wrap(fmt::format("load instance \"{}\": stored spec", row.name)));
    instance.spec = std::move(*spec);
    instance.row = std::move(row);
    if (network) {
      if (auto restored = network->restoreNic(instance.spec, manager->linkKey(instance.row.name)); !restored)
        log::warn("instance \"{}\": its NIC: {}", instance.row.name, restored.error().message());
    }
    if (instance.row.kind == schema::InstanceKind::vm) {
      if (auto plan = toVmPlan(instance.spec,
                               hostVmContext(manager->options_.imageDir, manager->options_.imageStore.get()));
          plan) {
        instance.vmPlan = std::move(*plan);
      } else {
        log::warn("instance \"{}\": its spec no longer validates: {}", instance.row.name,
                  plan.error().message());
      }
      if (instance.row.state == InstanceState::running || instance.row.state == InstanceState::starting)
        manager->reattachVm(instance);
      if (instance.row.state == InstanceState::created) {
        // run() crashed before the domain was recorded: reconcileDomains() below destroys the domain.
        log::warn(
            "instance \"{}\": corrald stopped while creating it; rolled back (its domain, if any, is "
            "destroyed) and recorded as lost",
            instance.row.name);
        markLost(instance.row, "corrald stopped while creating it; the start was rolled back");
        if (auto saved = store.putInstance(instance.row); !saved) return fail(saved.error());
      }
    } else {
      if (auto config =
              container::toContainerConfig(instance.spec, manager->validationContext(&instance.row));
          config) {
        instance.config = std::move(*config);
        if (!instance.spec.ip.empty()) instance.config->ipAddress = instance.spec.ip;
      } else {
        log::warn("instance \"{}\": its spec no longer validates: {}", instance.row.name,
                  config.error().message());
      }
      if (instance.row.state == InstanceState::running) {
        if (auto attached = manager->reattach(instance); !attached) return fail(attached.error());
      }
      if (instance.row.state != InstanceState::running) manager->rollBackContainer(instance);
    }
    std::string name = instance.row.name;
    manager->instances_.emplace(std::move(name), std::move(instance));
  }
  bool anyVm = std::any_of(manager->instances_.begin(), manager->instances_.end(), [](const auto& entry) {
    return entry.second.row.kind == schema::InstanceKind::vm;
  });
  std::error_code ec;
  if (anyVm || !std::filesystem::is_empty(manager->options_.vmsDir, ec)) manager->reconcileDomains();
  manager->supervisor_ = std::thread([raw = manager.get()] { raw->supervise(); });
  // Choose the accelerator early (a KVM probe boot can take seconds) when there is an image to boot.
  if (manager->options_.accelerator == "auto") {
    schema::InstanceSpec probeSpec;
    probeSpec.name = "kvm-probe";
    probeSpec.kind = schema::InstanceKind::vm;
    if (toVmPlan(probeSpec, hostVmContext(manager->options_.imageDir, manager->options_.imageStore.get()))) {
      manager->acceleratorProbe_ = std::thread([raw = manager.get(), probeSpec] {
        if (auto chosen = raw->acceleratorFor(probeSpec); !chosen)
          log::warn("accelerator: {}", chosen.error().message());
      });
    }
  }
  return manager;
}

InstanceManager::~InstanceManager() {
  quit_ = true;
  wakeSupervisor();
  if (supervisor_.joinable()) supervisor_.join();
  if (acceleratorProbe_.joinable()) acceleratorProbe_.join();
  std::vector<std::thread> boots;
  {
    std::lock_guard lock(bootThreadsMutex_);
    boots.swap(bootThreads_);
  }
  for (std::thread& boot : boots) boot.join();
  std::lock_guard lock(libvirtMutex_);
  libvirt_.reset();  // VMs keep running: their domains belong to libvirtd
}

container::ValidationContext InstanceManager::validationContext(const InstanceRow* row) const {
  container::IdMapping range{.hostId = 0, .count = container::kIdsPerContainer};  // none: refused at start
  if (row && row->userNamespaceStart) range.hostId = static_cast<uid_t>(*row->userNamespaceStart);
  return {.imageDir = options_.imageDir,
          .containersDir = options_.containersDir,
          .cgroupOptions = options_.cgroupOptions,
          .userNamespaceRange = range,
          .reaperPath = options_.reaperPath};
}

Status InstanceManager::assignIdRange(Instance& instance) {
  if (!instance.spec.userNamespace || instance.row.kind != schema::InstanceKind::container) return {};
  if (!instance.row.userNamespaceStart) {
    if (idPoolError_) return fail(*idPoolError_);
    auto range = idRanges_.allocate();
    if (!range) return fail(range.error());
    instance.row.userNamespaceStart = range->hostId;
  }
  if (instance.config) instance.config->userNamespace = validationContext(&instance.row).userNamespaceRange;
  return {};
}

void InstanceManager::releaseIdRange(const InstanceRow& row) {
  if (row.userNamespaceStart) idRanges_.release(static_cast<uint32_t>(*row.userNamespaceStart));
}

// After a daemon restart: the same process (pid and start time) is taken back under supervision, one that
// is gone is recorded as lost.
Status InstanceManager::reattach(Instance& instance) {
  InstanceRow& row = instance.row;
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
      instance.pidfd = std::make_shared<UniqueFd>(std::move(pidfd));
      instance.cgroup = shareCgroup(std::move(*cgroup));
      instance.cgroup->release();
      instance.ourChild = false;
      log::info("instance \"{}\": reattached to running pid {}", row.name, *row.pid);
      return {};
    }
    log::warn("instance \"{}\": pid {} is alive but could not be reattached ({}); recording it as lost",
              row.name, *row.pid, cgroup ? "pidfd_open failed" : cgroup.error().message());
  } else {
    log::warn("instance \"{}\": pid {} {}; it ended while corrald was down (recorded as lost)", row.name,
              row.pid.value_or(-1), ended ? "has exited (a zombie not yet reaped)" : "is gone");
  }
  markLost(row, "it ended while corrald was not running (nothing watched it), so its exit status is unknown");
  if (auto saved = store_.putInstance(row); !saved) return fail(saved.error());
  return {};
}

Result<std::string> InstanceManager::clearContainerLeftovers(const std::string& name) {
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
  const std::filesystem::path rootfs = options_.containersDir / name / "rootfs";
  int unmounted = 0;
  while (unmounted < 16 && ::umount2(rootfs.c_str(), MNT_DETACH) == 0) ++unmounted;
  if (unmounted > 0) found.push_back(fmt::format("unmounted its rootfs \"{}\"", rootfs.string()));
  return fmt::format("{}", fmt::join(found, ", "));
}

// A process found in the cgroups of a container that is not running is killed, not adopted: its start was
// never recorded complete, so nothing says it got its NIC, limits and lockdown before exec; and a "lost"
// record with a note tells the truth where an adopted one would guess.
void InstanceManager::rollBackContainer(Instance& instance) {
  InstanceRow& row = instance.row;
  const bool interrupted = row.state == InstanceState::created || row.state == InstanceState::starting;
  auto found = clearContainerLeftovers(row.name);
  if (!found) {
    log::error("instance \"{}\": clearing what an interrupted start left: {}", row.name,
               found.error().message());
  } else if (!found->empty()) {
    log::warn(
        "instance \"{}\" ({}): {}", row.name,
        interrupted ? "its start was interrupted by a corrald crash; rolled back" : "left over from a crash",
        *found);
  }
  if (!interrupted) return;
  if (network_) network_->detach(row.name);  // its link went with its processes' namespace; the rest too
  if (!found || found->empty())
    log::warn("instance \"{}\": its start was interrupted by a corrald crash before any effect", row.name);
  markLost(row, "corrald stopped while starting it; the start was rolled back" +
                    (found && !found->empty() ? " (" + *found + ")" : std::string()));
  if (auto saved = store_.putInstance(row); !saved)
    log::error("instance \"{}\": recording its rollback: {}", row.name, saved.error().message());
}

void InstanceManager::checkOomKills() {
  std::lock_guard lock(mutex_);
  for (auto& [name, instance] : instances_) {
    if (instance.row.state != InstanceState::running || !instance.cgroup) continue;
    auto stats = instance.cgroup->stats();
    if (!stats || static_cast<int64_t>(stats->oomKills) <= instance.row.oomKills) continue;
    log::warn("instance \"{}\": the kernel OOM-killed {} process(es) in its cgroup ({} since it started)",
              name, static_cast<int64_t>(stats->oomKills) - instance.row.oomKills, stats->oomKills);
    instance.row.oomKills = static_cast<int64_t>(stats->oomKills);
    if (auto saved = store_.putInstance(instance.row); !saved)
      log::error("instance \"{}\": recording its OOM kills: {}", name, saved.error().message());
  }
}

void InstanceManager::wakeSupervisor() {
  uint64_t one = 1;
  [[maybe_unused]] ssize_t ignored = ::write(wake_.get(), &one, sizeof one);
}

// One thread polls every running container's pidfd (and the wake eventfd); an exit is recorded under the
// lock.
void InstanceManager::supervise() {
  while (!quit_) {
    // OOM kills of a child are not seen in any pidfd: the cgroup's count is read once a second.
    if (Clock::now() - lastOomCheck_ >= std::chrono::seconds(1)) {
      lastOomCheck_ = Clock::now();
      checkOomKills();
    }
    std::vector<pollfd> fds{{wake_.get(), POLLIN, 0}};
    std::vector<std::pair<std::string, std::shared_ptr<UniqueFd>>> watched;
    {
      std::lock_guard lock(mutex_);
      for (auto& [name, instance] : instances_) {
        if (instance.row.state == InstanceState::running && instance.pidfd) {
          fds.push_back({instance.pidfd->get(), POLLIN, 0});
          watched.emplace_back(name, instance.pidfd);
        }
      }
    }
    int rc = ::poll(fds.data(), fds.size(), 1000);
    if (rc <= 0) continue;
    if (fds[0].revents != 0) {
      uint64_t value = 0;
      [[maybe_unused]] ssize_t ignored = ::read(wake_.get(), &value, sizeof value);
      handleDomainEvents();
    }
    std::lock_guard lock(mutex_);
    for (size_t i = 1; i < fds.size(); ++i) {
      if (fds[i].revents == 0) continue;
      auto it = instances_.find(watched[i - 1].first);
      // The same pidfd still: not already recorded and replaced by a new start.
      if (it == instances_.end() || it->second.pidfd != watched[i - 1].second) continue;
      recordExit(it->second);
    }
  }
}

// The container's init has exited: collect its status, clean up its cgroup, persist.
void InstanceManager::recordExit(Instance& instance) {
  InstanceRow& row = instance.row;
  std::optional<int64_t> code, signal;
  std::optional<std::string> note;
  std::string reason = "exited";
  if (instance.ourChild && row.pid) {
    int status = 0;
    pid_t waited = ::waitpid(static_cast<pid_t>(*row.pid), &status, 0);
    if (waited == *row.pid && WIFEXITED(status)) code = WEXITSTATUS(status);
    if (waited == *row.pid && WIFSIGNALED(status)) {
      signal = WTERMSIG(status);
      reason = "signaled";
    }
  } else {
    // Reattached after a restart: corrald saw it end but, not its parent, cannot know how (docs/api.md).
    reason = "lost";
    note = "it ended after corrald restarted; corrald was not its parent, so its exit status is unknown";
  }
  if (instance.cgroup) {
    auto stats = instance.cgroup->stats();
    if (signal == SIGKILL && stats && stats->oomKills > 0) reason = "oom-killed";
    if (stats) row.oomKills = std::max(row.oomKills, static_cast<int64_t>(stats->oomKills));
  }
  // A stop kills PID 1 with SIGKILL itself: an earlier OOM kill of a child does not make that an OOM.
  if (instance.stopAsked()) reason = "stopped";
  if (instance.cgroup) {
    if (auto killed = instance.cgroup->killAll(); !killed)
      log::warn("instance \"{}\": {}", row.name, killed.error().message());
    CORRAL_FAILPOINT("exit.after-cgroup-kill");
    if (auto destroyed = instance.cgroup->destroy(); !destroyed)
      log::warn("instance \"{}\": {}", row.name, destroyed.error().message());
  }
  // The overlay mount is made per start; unmount it so a later start does not stack another.
  ::umount2((options_.containersDir / row.name / "rootfs").c_str(), MNT_DETACH);
  instance.cgroup.reset();
  instance.pidfd.reset();
  log::info("instance \"{}\" exited: reason {}, code {}, signal {}", row.name, reason,
            code ? std::to_string(*code) : "none", signal ? std::to_string(*signal) : "none");
  recordStopped(instance, reason, code, signal, std::move(note));
}

void InstanceManager::recordStopped(Instance& instance, const std::string& reason,
                                    std::optional<int64_t> code, std::optional<int64_t> signal,
                                    std::optional<std::string> note) {
  InstanceRow& row = instance.row;
  row.state = InstanceState::stopped;
  row.finishedAt = now();
  row.exitCode = code;
  row.exitSignal = signal;
  row.exitReason = reason;
  row.exitNote = std::move(note);
  row.pid.reset();
  row.pidStartTime.reset();
  if (network_) network_->detach(row.name);
  if (instance.spec.removeOnExit) {
    const std::string name = row.name;
    if (row.kind == schema::InstanceKind::vm) {
      std::error_code ec;
      std::filesystem::remove_all(instanceDir(instance), ec);
    } else if (auto removed = container::removeBundle(options_.containersDir / name); !removed) {
      log::warn("instance \"{}\": {}", name, removed.error().message());
    }
    if (auto deleted = store_.deleteInstance(name); !deleted)
      log::error("instance \"{}\": {}", name, deleted.error().message());
    releaseIdRange(row);
    instances_.erase(name);
    releaseNic(name);
  } else if (auto saved = store_.putInstance(row); !saved) {
    log::error("instance \"{}\": recording its stop: {}", row.name, saved.error().message());
  }
  changed_.notify_all();
}

namespace {

// The host memory a running instance holds: its cgroup's usage for a container, the QEMU process's resident
// set for a VM (guest RAM it has touched plus QEMU itself). Null when not running or unreadable: rendering
// an instance never fails on it.
json usageJson(const InstanceRow& row, const container::Cgroup* cgroup) {
  if (row.state != InstanceState::running) return nullptr;
  if (row.kind == schema::InstanceKind::vm) {
    if (!row.pid) return nullptr;
    UniqueFd fd(::open(fmt::format("/proc/{}/status", *row.pid).c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return nullptr;
    std::string text(16384, '\0');
    ssize_t length = ::read(fd.get(), text.data(), text.size());
    if (length <= 0) return nullptr;
    text.resize(static_cast<size_t>(length));
    size_t at = text.find("\nVmRSS:");
    if (at == std::string::npos) return nullptr;
    at = text.find_first_of("0123456789", at);
    if (at == std::string::npos) return nullptr;
    uint64_t kib = 0;
    auto [end, ec] = std::from_chars(text.data() + at, text.data() + text.size(), kib);
    if (ec != std::errc{}) return nullptr;
    return {{"memory_bytes", kib * 1024}, {"source", "qemu rss"}};
  }
  if (cgroup == nullptr) return nullptr;
  Result<container::CgroupStats> stats = cgroup->stats();
  if (!stats) return nullptr;
  return {{"memory_bytes", stats->memoryCurrentBytes}, {"source", "cgroup"}, {"oom_kills", stats->oomKills}};
}

}  // namespace

json InstanceManager::render(const Instance& instance) const {
  const InstanceRow& row = instance.row;
  json boot = json::parse(row.bootStepsJson, nullptr, false);
  if (boot.is_discarded() || boot.empty()) boot = nullptr;
  json spec = json::parse(specText(instance.spec), nullptr, false);
  json vm = nullptr;
  if (row.kind == schema::InstanceKind::vm) {
    vm = {{"domain", domainName(row.name)},
          {"memory_bytes", instance.vmPlan ? json(instance.vmPlan->memoryBytes) : json(nullptr)},
          {"vcpus", instance.vmPlan ? json(instance.vmPlan->vcpus) : json(nullptr)},
          {"kernel", instance.vmPlan ? json(instance.vmPlan->kernel.string()) : json(nullptr)},
          {"initrd", instance.vmPlan ? json(instance.vmPlan->initrd.string()) : json(nullptr)},
          {"image_digest", instance.vmPlan && instance.vmPlan->rootImage
                               ? json(instance.vmPlan->rootImage->manifestDigest.text())
                               : json(nullptr)},
          {"accelerator",
           boot.is_object() && boot.contains("accelerator") ? boot["accelerator"] : json(nullptr)},
          {"accelerator_reason", boot.is_object() && boot.contains("accelerator_reason")
                                     ? boot["accelerator_reason"]
                                     : json(nullptr)},
          {"agent_socket", (instanceDir(instance) / "agent.sock").string()}};
  }
  bool active = row.state == InstanceState::running || row.state == InstanceState::starting;
  // A container's OOM kills in its cgroup since its last start (live while it runs); a VM's are the guest's.
  json oomKills = nullptr;
  if (row.kind != schema::InstanceKind::vm) {
    int64_t count = row.oomKills;
    if (row.state == InstanceState::running && instance.cgroup) {
      if (auto stats = instance.cgroup->stats(); stats)
        count = std::max(count, static_cast<int64_t>(stats->oomKills));
    }
    oomKills = count;
  }
  return {{"name", row.name},
          {"kind", schema::instanceKindName(row.kind)},
          {"image", instance.spec.image},
          {"command", instance.config ? json(instance.config->argv) : json(instance.spec.command)},
          {"state", instanceStateName(row.state)},
          {"pid", active ? optionalJson(row.pid) : json(nullptr)},
          {"created_at", row.createdAt},
          {"started_at", optionalJson(row.startedAt)},
          {"finished_at", optionalJson(row.finishedAt)},
          {"exit_code", optionalJson(row.exitCode)},
          {"exit_signal", optionalJson(row.exitSignal)},
          {"exit_reason", optionalJson(row.exitReason)},
          {"exit_note", optionalJson(row.exitNote)},
          {"oom_kills", std::move(oomKills)},
          {"boot", std::move(boot)},
          {"usage", usageJson(row, instance.cgroup.get())},
          {"spec", std::move(spec)},
          {"cgroup", instance.cgroup ? json(instance.cgroup->path()) : json(nullptr)},
          {"bundle", instanceDir(instance).string()},
          {"log_path", row.logPath},
          {"vm", std::move(vm)},
          {"ip", instance.spec.ip.empty() ? json(nullptr) : json(instance.spec.ip)},
          {"user_namespace_range", row.userNamespaceStart ? json{{"uid", *row.userNamespaceStart},
                                                                 {"gid", *row.userNamespaceStart},
                                                                 {"count", container::kIdsPerContainer}}
                                                          : json(nullptr)},
          {"network", networkJson(instance)}};
}

json InstanceManager::networkJson(const Instance& instance) const {
  if (!network_ || instance.spec.subnet.empty()) return nullptr;
  auto nic = network_->nicPlan(instance.row.name);
  if (!nic)
    return {{"subnet", instance.spec.subnet}, {"ip", instance.spec.ip}, {"error", nic.error().message()}};
  json publish = json::array();
  for (const net::PortForward& forward : nic->nic.publish) publish.push_back(net::portForwardText(forward));
  return {{"subnet", nic->nic.subnet},
          {"ip", nic->nic.address},
          {"address", nic->addressWithPrefix},
          {"gateway", nic->gateway},
          {"mac", nic->mac},
          {"link", nic->link},
          {"bridge", nic->bridge},
          {"public_ip", nic->nic.publicAddress ? json(*nic->nic.publicAddress) : json(nullptr)},
          {"security_groups", nic->nic.securityGroups},
          {"publish", std::move(publish)},
          {"spoof_drops", network_->spoofDropsJson(instance.row.name)}};
}

void InstanceManager::releaseNic(const std::string& instanceName) {
  if (network_) network_->releaseNic(instanceName);
}

void InstanceManager::replugNics() {
  if (!network_) return;
  std::lock_guard lock(mutex_);
  for (auto& [name, instance] : instances_) {
    if (instance.spec.subnet.empty() || !network_->nic(name) || network_->portPresent(name)) continue;
    if (instance.row.kind == schema::InstanceKind::vm) {
      if (instance.row.state == InstanceState::running || instance.row.state == InstanceState::starting)
        log::warn("instance \"{}\": its VM's NIC is gone (the VPC namespace was recreated); restart it",
                  name);
      continue;
    }
    if (instance.row.state != InstanceState::running || !instance.row.pid) continue;
    if (auto plugged = network_->attachContainer(name, static_cast<pid_t>(*instance.row.pid)); !plugged) {
      log::warn("instance \"{}\": plugging its NIC back in: {}", name, plugged.error().message());
    } else {
      log::info("instance \"{}\": NIC was missing, plugged back in", name);
    }
  }
}

Result<json> InstanceManager::run(const schema::InstanceSpec& spec) {
  auto received = Clock::now();
  const bool isVm = spec.kind == schema::InstanceKind::vm;
  Instance instance;
  std::optional<vmm::AcceleratorChoice> accel;
  if (isVm) {
    auto plan = toVmPlan(spec, hostVmContext(options_.imageDir, options_.imageStore.get()));
    if (!plan) return fail(plan.error());
    instance.vmPlan = std::move(*plan);
    {
      std::lock_guard lock(mutex_);
      if (instances_.contains(spec.name)) return fail(conflict("instance \"{}\" already exists", spec.name));
    }
    // Before taking the lock: the first VM on a host may wait for the KVM probe boot.
    auto chosen = accelerator(*instance.vmPlan);
    if (!chosen) return fail(chosen.error().wrap(fmt::format("run instance \"{}\"", spec.name)));
    accel = std::move(*chosen);
    // So is the first VM of an image: its base disk is made once (mkfs.ext4, seconds).
    if (instance.vmPlan->rootImage) {
      auto base = prepareBaseDisk(*options_.imageStore, *instance.vmPlan->rootImage);
      if (!base) return fail(base.error().wrap(fmt::format("run instance \"{}\"", spec.name)));
    }
  } else {
    auto config = container::toContainerConfig(spec, validationContext());
    if (!config) return fail(config.error());
    instance.config = std::move(*config);
  }
  std::unique_lock lock(mutex_);
  if (instances_.contains(spec.name)) return fail(conflict("instance \"{}\" already exists", spec.name));
  instance.spec = spec;
  if (auto assigned = assignIdRange(instance); !assigned)
    return fail(assigned.error().wrap(fmt::format("run instance \"{}\"", spec.name)));
  Rollback returnIdRange([this, start = instance.row.userNamespaceStart] {
    if (start) idRanges_.release(static_cast<uint32_t>(*start));
  });
  // Its NIC: addresses assigned now and written into the spec, so they stay the instance's.
  std::optional<net::NicAttachment> nic;
  if (network_) {
    auto reserved = network_->reserveNic(spec, linkKey(spec.name));
    if (!reserved) return fail(reserved.error());
    nic = std::move(*reserved);
  } else if (!spec.subnet.empty()) {
    return fail(invalidField("subnet", "this corrald manages no network"));
  }
  if (nic) {
    instance.spec.ip = nic->address;
    instance.spec.publicAddress = nic->publicAddress.value_or("");
    if (instance.config) instance.config->ipAddress = nic->address;
  }
  instance.row.name = spec.name;
  instance.row.kind = spec.kind;
  instance.row.specJson = specText(instance.spec);
  instance.row.createdAt = now();
  // A container's row says "starting" before any effect, so a restart after a crash knows to look for
  // what the start left (load()); a VM's says "created" until its domain runs (reconcileDomains()).
  if (!isVm) instance.row.state = InstanceState::starting;
  const std::filesystem::path dir = instanceDir(instance);
  instance.row.logPath = (dir / "console.log").string();
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    releaseNic(spec.name);
    return fail(
        conflict("instance \"{}\": directory \"{}\" already exists (left over?)", spec.name, dir.string()));
  }
  if (auto inserted = store_.insertInstance(instance.row); !inserted) {
    releaseNic(spec.name);
    return fail(inserted.error());
  }
  if (!isVm) CORRAL_FAILPOINT("run.after-insert");
  auto [it, added] = instances_.emplace(spec.name, std::move(instance));
  auto started = isVm ? startVmLocked(it->second, received, *accel) : startLocked(lock, it->second, received);
  if (!started) {
    // Nothing of a failed run stays behind: bundle, row, entry.
    if (isVm) {
      std::filesystem::remove_all(dir, ec);
    } else {
      [[maybe_unused]] auto removed = container::removeBundle(dir);
    }
    [[maybe_unused]] auto deleted = store_.deleteInstance(spec.name);
    instances_.erase(spec.name);
    releaseNic(spec.name);
    return fail(started.error().wrap(fmt::format("run instance \"{}\"", spec.name)));
  }
  returnIdRange.dismiss();
  return started;
}

// Starts the container of `instance` (created or stopped) and records it running. Called with the lock
// held; the start itself is quick (returns at execve), so it stays held.
Result<json> InstanceManager::startLocked(std::unique_lock<std::mutex>&, Instance& instance,
                                          Clock::time_point received) {
  if (!instance.config) {
    auto config = container::toContainerConfig(instance.spec, validationContext(&instance.row));
    if (!config) return fail(config.error());
    instance.config = std::move(*config);
  }
  if (auto assigned = assignIdRange(instance); !assigned) return fail(assigned.error());
  const std::filesystem::path bundle = options_.containersDir / instance.row.name;
  std::error_code ec;
  std::filesystem::create_directories(bundle, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir(\"{}\")", bundle.string())));
  // The container writes its log file itself, so output survives a daemon restart.
  UniqueFd log(::open(instance.row.logPath.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640));
  if (!log) return fail(systemError(errno, fmt::format("open(\"{}\")", instance.row.logPath)));
  container::Stdio stdio{.in = -1, .out = log.get(), .err = log.get()};
  if (!instance.spec.ip.empty()) instance.config->ipAddress = instance.spec.ip;
  // Recorded before any effect (run() inserted it so already): see run().
  std::optional<InstanceRow> before;
  if (instance.row.state != InstanceState::starting) {
    InstanceRow starting = instance.row;
    starting.state = InstanceState::starting;
    if (auto saved = store_.putInstance(starting); !saved) return fail(saved.error());
    before = std::exchange(instance.row, std::move(starting));
    CORRAL_FAILPOINT("start.after-mark-starting");
  }
  Rollback restoreRow([&] {
    if (!before) return;
    instance.row = *before;
    if (auto saved = store_.putInstance(*before); !saved)
      log::error("instance \"{}\": restoring its row: {}", before->name, saved.error().message());
  });
  // Its eth0 goes in while the child waits for "go": the command never runs without its network.
  container::ParentHook plugIn;
  if (network_ && !instance.spec.subnet.empty()) {
    plugIn = [this, name = instance.row.name](pid_t pid) { return network_->attachContainer(name, pid); };
  }
  auto running = container::startContainer(*instance.config, stdio, plugIn);
  if (!running) return fail(running.error());
  auto readyAt = Clock::now();
  pid_t pid = running->pid();
  UniqueFd pidfd(::fcntl(running->pidfd(), F_DUPFD_CLOEXEC, 0));
  if (!pidfd) return fail(systemError(errno, "fcntl(pidfd, F_DUPFD_CLOEXEC)"));
  auto mode = container::detectCgroupMode(options_.cgroupOptions.root);
  if (!mode) return fail(mode.error());
  auto cgroup = container::openCgroup(*mode, instance.row.name, options_.cgroupOptions);
  if (!cgroup) return fail(cgroup.error());
  const container::StartTimings& t = running->timings();
  json boot = {{"total_ms", std::chrono::duration<double, std::milli>(readyAt - received).count()},
               {"clone_ms", millis(t.clone)},
               {"cgroup_ms", millis(t.cgroup)},
               {"rootfs_ms", millis(t.rootfs)},
               {"network_ms", millis(t.network)},
               {"exec_ms", millis(t.exec)}};
  InstanceRow row = instance.row;
  row.state = InstanceState::running;
  row.pid = pid;
  row.pidStartTime = processStartTime(pid);
  row.startedAt = now();
  row.finishedAt.reset();
  row.exitCode.reset();
  row.exitSignal.reset();
  row.exitReason.reset();
  row.exitNote.reset();
  row.bootStepsJson = boot.dump();
  row.oomKills = 0;
  if (auto saved = store_.putInstance(row); !saved) return fail(saved.error());
  restoreRow.dismiss();
  CORRAL_FAILPOINT("start.after-record-running");
  // From here the manager supervises it: the RunningContainer no longer kills or cleans up on destruction.
  running->release();
  (*cgroup)->release();
  instance.row = std::move(row);
  instance.pidfd = std::make_shared<UniqueFd>(std::move(pidfd));
  instance.cgroup = shareCgroup(std::move(*cgroup));
  instance.ourChild = true;
  wakeSupervisor();
  log::info("instance \"{}\" running: pid {}, boot {:.1f} ms", instance.row.name, pid,
            boot["total_ms"].get<double>());
  return render(instance);
}

json InstanceManager::list() {
  std::lock_guard lock(mutex_);
  json items = json::array();
  for (const auto& [name, instance] : instances_) items.push_back(render(instance));
  return {{"instances", std::move(items)}};
}

size_t InstanceManager::count() {
  std::lock_guard lock(mutex_);
  return instances_.size();
}

Result<json> InstanceManager::get(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  return render(it->second);
}

// Waits (lock released meanwhile) until the supervisor has recorded `name` as no longer running.
Status InstanceManager::waitStopped(std::unique_lock<std::mutex>& lock, const std::string& name,
                                    std::chrono::milliseconds timeout) {
  bool done = changed_.wait_for(lock, timeout, [&] {
    auto it = instances_.find(name);
    return it == instances_.end() || (it->second.row.state != InstanceState::running &&
                                      it->second.row.state != InstanceState::starting);
  });
  if (!done) return fail(internalError("instance \"{}\" did not stop within {} ms", name, timeout.count()));
  return {};
}

Rollback InstanceManager::holdInProgress(std::unique_lock<std::mutex>& lock, Instance& instance,
                                         InstanceAction action) {
  instance.inProgress = inProgressState(action);
  return Rollback([this, &lock, name = instance.row.name] {
    if (!lock.owns_lock()) lock.lock();
    if (auto it = instances_.find(name); it != instances_.end()) it->second.inProgress.reset();
  });
}

Result<json> InstanceManager::stop(const std::string& name, int64_t graceSeconds) {
  if (graceSeconds < 0 || graceSeconds > kMaxGraceSeconds) {
    return fail(
        invalidField("grace_seconds", "{} is out of range: give 0 to {}", graceSeconds, kMaxGraceSeconds));
  }
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  Instance& instance = it->second;
  if (Status fits = checkAction(instance.row.kind, instance.state(), InstanceAction::stop, name); !fits)
    return fail(fits.error());
  Rollback settle = holdInProgress(lock, instance, InstanceAction::stop);
  if (instance.row.kind == schema::InstanceKind::vm) return stopVm(lock, instance, graceSeconds);
  std::shared_ptr<UniqueFd> pidfd = instance.pidfd;
  std::shared_ptr<container::Cgroup> cgroup = instance.cgroup;
  lock.unlock();
  // The grace wait happens without the lock: other requests go on meanwhile.
  pidfdSendSignal(pidfd->get(), SIGTERM);
  if (!waitExited(pidfd->get(), std::chrono::seconds(graceSeconds))) {
    if (auto killed = cgroup->killAll(); !killed)
      log::warn("stop \"{}\": {}", name, killed.error().message());
  }
  CORRAL_FAILPOINT("stop.after-signal");
  lock.lock();
  if (auto waited = waitStopped(lock, name, std::chrono::seconds(10)); !waited) return fail(waited.error());
  auto after = instances_.find(name);
  if (after == instances_.end()) return json{{"name", name}, {"state", "removed"}};
  return render(after->second);
}

Result<json> InstanceManager::start(const std::string& name) {
  auto received = Clock::now();
  std::optional<vmm::AcceleratorChoice> accel;
  {
    std::unique_lock lock(mutex_);
    auto it = instances_.find(name);
    if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
    if (Status fits = checkAction(it->second.row.kind, it->second.state(), InstanceAction::start, name);
        !fits)
      return fail(fits.error());
    if (it->second.row.kind == schema::InstanceKind::vm) {
      schema::InstanceSpec spec = it->second.spec;
      lock.unlock();
      auto chosen = acceleratorFor(spec);
      if (!chosen) return fail(chosen.error().wrap(fmt::format("start instance \"{}\"", name)));
      accel = std::move(*chosen);
    }
  }
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  // Checked again: the accelerator was chosen without the lock.
  if (Status fits = checkAction(it->second.row.kind, it->second.state(), InstanceAction::start, name); !fits)
    return fail(fits.error());
  auto started =
      accel ? startVmLocked(it->second, received, *accel) : startLocked(lock, it->second, received);
  if (!started) return fail(started.error().wrap(fmt::format("start instance \"{}\"", name)));
  return started;
}

Result<json> InstanceManager::remove(const std::string& name, bool force) {
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  const InstanceAction action = force ? InstanceAction::forceRemove : InstanceAction::remove;
  if (Status fits = checkAction(it->second.row.kind, it->second.state(), action, name); !fits)
    return fail(fits.error());
  // Held until the row is gone: a start, stop or exec meanwhile is refused rather than racing the kill.
  Rollback settle = holdInProgress(lock, it->second, action);
  const bool active =
      it->second.row.state == InstanceState::running || it->second.row.state == InstanceState::starting;
  if (active && it->second.row.kind == schema::InstanceKind::vm) {
    lock.unlock();
    auto lv = libvirt();
    if (!lv) return fail(lv.error().wrap(fmt::format("remove \"{}\"", name)));
    if (auto destroyed = (*lv)->destroy(domainName(name)); !destroyed)
      return fail(destroyed.error().wrap(fmt::format("remove \"{}\"", name)));
    CORRAL_FAILPOINT("vm.rm.after-destroy");
    lock.lock();
    if (auto waited = waitStopped(lock, name, std::chrono::seconds(15)); !waited) return fail(waited.error());
    it = instances_.find(name);
    if (it == instances_.end()) return json{{"deleted", {{"name", name}, {"state", "removed"}}}};
  } else if (it->second.row.state == InstanceState::running) {
    std::shared_ptr<container::Cgroup> cgroup = it->second.cgroup;
    lock.unlock();
    if (auto killed = cgroup->killAll(); !killed)
      return fail(killed.error().wrap(fmt::format("remove \"{}\"", name)));
    CORRAL_FAILPOINT("rm.after-kill");
    lock.lock();
    if (auto waited = waitStopped(lock, name, std::chrono::seconds(10)); !waited) return fail(waited.error());
    it = instances_.find(name);
    if (it == instances_.end()) return json{{"deleted", {{"name", name}, {"state", "removed"}}}};
  }
  json deleted = render(it->second);
  // Whatever the row says, nothing of the instance may outlive it: a crash may have left a process, cgroups,
  // a mount or a domain that no record names.
  if (it->second.row.kind == schema::InstanceKind::vm) {
    if (auto destroyed = destroyLeftoverDomain(name); !destroyed)
      return fail(destroyed.error().wrap(fmt::format("remove instance \"{}\"", name)));
  } else if (auto cleared = clearContainerLeftovers(name); !cleared) {
    return fail(cleared.error().wrap(fmt::format("remove instance \"{}\"", name)));
  } else if (!cleared->empty()) {
    log::warn("remove instance \"{}\": it was not running, yet {}", name, *cleared);
  }
  if (it->second.row.kind == schema::InstanceKind::vm) {
    std::error_code ec;
    std::filesystem::remove_all(instanceDir(it->second), ec);
    if (ec) {
      return fail(systemError(ec.value(), fmt::format("remove instance \"{}\": rm -r \"{}\"", name,
                                                      instanceDir(it->second).string())));
    }
  } else if (auto removed = container::removeBundle(options_.containersDir / name); !removed) {
    return fail(removed.error().wrap(fmt::format("remove instance \"{}\"", name)));
  }
  if (it->second.row.kind != schema::InstanceKind::vm) CORRAL_FAILPOINT("rm.after-bundle-removed");
  if (auto dropped = store_.deleteInstance(name); !dropped)
    return fail(dropped.error().wrap(fmt::format("remove instance \"{}\"", name)));
  releaseIdRange(it->second.row);
  instances_.erase(it);
  releaseNic(name);
  return json{{"deleted", std::move(deleted)}};
}

Result<json> InstanceManager::logs(const std::string& name, int64_t offset) {
  if (offset < 0) return fail(invalidField("offset", "{} is negative", offset));
  std::string path;
  json status;
  {
    std::lock_guard lock(mutex_);
    auto it = instances_.find(name);
    if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
    const InstanceRow& row = it->second.row;
    path = row.logPath;
    status = {{"state", instanceStateName(row.state)},
              {"exit_code", optionalJson(row.exitCode)},
              {"exit_signal", optionalJson(row.exitSignal)},
              {"exit_reason", optionalJson(row.exitReason)}};
  }
  std::string data;
  int64_t size = 0;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd) {
    struct stat st {};
    if (::fstat(fd.get(), &st) == 0) size = st.st_size;
    if (offset < size) {
      data.resize(static_cast<size_t>(std::min(kMaxLogChunk, size - offset)));
      ssize_t got = ::pread(fd.get(), data.data(), data.size(), offset);
      data.resize(got > 0 ? static_cast<size_t>(got) : 0);
    }
  } else if (errno != ENOENT) {
    return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  }
  json out = status;
  out["data"] = textJson(data);
  out["offset"] = offset;
  out["next_offset"] = offset + static_cast<int64_t>(data.size());
  out["eof"] = offset + static_cast<int64_t>(data.size()) >= size;
  return out;
}

Result<json> InstanceManager::exec(const std::string& name, const std::vector<std::string>& command,
                                   const std::vector<std::string>& env) {
  if (command.empty() || command.front().empty()) {
    return fail(invalidField("command", "give the program to run and its arguments"));
  }
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  if (Status fits = checkAction(it->second.row.kind, it->second.state(), InstanceAction::exec, name); !fits)
    return fail(fits.error());
  if (it->second.row.kind == schema::InstanceKind::vm) return execVm(lock, it->second, command, env);
  if (!it->second.config) return fail(conflict("instance \"{}\": its spec no longer validates", name));
  pid_t initPid = static_cast<pid_t>(*it->second.row.pid);
  std::shared_ptr<container::Cgroup> cgroup = it->second.cgroup;
  container::ContainerConfig config = *it->second.config;
  lock.unlock();

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

}  // namespace corral::daemon
