// InstanceManager's VM half: domains through libvirt (transient: a stopped VM is only a row in the store),
// readiness from the guest agent, stop by agent or ACPI then destroy, exec through the agent, libvirt's stop
// events recorded by the supervisor thread, the accelerator chosen once per host boot by a bounded probe.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "core/failpoint.h"
#include "core/log.h"
#include "daemon/instances.h"
#include "daemon/vm_image.h"
#include "vmm/agent_protocol.h"
#include "vmm/domain_xml.h"

namespace corral::daemon {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kExecTimeout = std::chrono::seconds(60);
constexpr auto kAgentReconnect = std::chrono::seconds(3);

int64_t now() {
  return static_cast<int64_t>(std::time(nullptr));
}

double msBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string readSmallFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

json textJson(const std::string& bytes) {
  return json::parse(json(bytes).dump(-1, ' ', false, json::error_handler_t::replace));
}

// The wall-clock time of a steady-clock point, in Unix milliseconds: how a boot's start survives a restart.
double unixMillisAt(Clock::time_point at) {
  auto wallNow = std::chrono::system_clock::now();
  auto wall = wallNow - std::chrono::duration_cast<std::chrono::system_clock::duration>(Clock::now() - at);
  return std::chrono::duration<double, std::milli>(wall.time_since_epoch()).count();
}

bool isActive(InstanceState state) {
  return state == InstanceState::starting || state == InstanceState::running;
}

}  // namespace

std::filesystem::path InstanceManager::instanceDir(const Instance& instance) const {
  return instance.row.kind == schema::InstanceKind::vm ? options_.vmsDir / instance.row.name
                                                       : options_.containersDir / instance.row.name;
}

// Opens libvirt on first need; a daemon without libvirtd still runs containers.
Result<vmm::Libvirt*> InstanceManager::libvirt() {
  std::lock_guard lock(libvirtMutex_);
  if (libvirt_) return libvirt_.get();
  auto opened = vmm::Libvirt::open(options_.libvirtUri, [this](const vmm::DomainStopped& event) {
    {
      std::lock_guard events(eventsMutex_);
      domainEvents_.push_back(event);
    }
    wakeSupervisor();
  });
  if (!opened) return fail(opened.error());
  libvirt_ = std::move(*opened);
  return libvirt_.get();
}

Result<std::string> InstanceManager::hypervisorVersion() {
  auto lv = libvirt();
  if (!lv) return fail(lv.error());
  return (*lv)->hypervisorVersion();
}

AcceleratorStatus InstanceManager::acceleratorStatus() {
  std::lock_guard lock(acceleratorStatusMutex_);
  return acceleratorStatus_;
}

// The cached decision of an earlier probe on this host boot (any corrald shares it: KVM's fitness is the
// host's, not one daemon's).
std::optional<vmm::AcceleratorChoice> InstanceManager::cachedAcceleratorChoice(const VmPlan&) {
  std::string bootId = readSmallFile("/proc/sys/kernel/random/boot_id");
  json cached = json::parse(readSmallFile(options_.acceleratorCache), nullptr, false);
  if (cached.is_discarded() || !cached.is_object() || cached.value("boot_id", "") != bootId)
    return std::nullopt;
  std::string name = cached.value("accelerator", "");
  if (name != "kvm" && name != "tcg") return std::nullopt;
  return vmm::AcceleratorChoice{name == "kvm" ? vmm::Accelerator::Kvm : vmm::Accelerator::Tcg,
                                cached.value("reason", "") + " (probed earlier on this host boot)"};
}

Result<vmm::AcceleratorChoice> InstanceManager::accelerator(const VmPlan& plan) {
  if (options_.accelerator == "tcg") {
    return vmm::AcceleratorChoice{vmm::Accelerator::Tcg, "chosen by corrald --accelerator tcg"};
  }
  if (options_.accelerator == "kvm") {
    std::string problem = vmm::kvmDeviceProblem();
    if (!problem.empty()) return fail(unavailable("corrald --accelerator kvm, but {}", problem));
    return vmm::AcceleratorChoice{vmm::Accelerator::Kvm, "chosen by corrald --accelerator kvm (not probed)"};
  }
  std::lock_guard probing(acceleratorMutex_);  // one probe at a time; the others wait for its answer
  {
    std::lock_guard lock(acceleratorStatusMutex_);
    if (acceleratorStatus_.state == "decided") return *acceleratorStatus_.choice;
  }
  auto decide = [&](vmm::AcceleratorChoice choice) {
    std::lock_guard lock(acceleratorStatusMutex_);
    acceleratorStatus_ = {.state = "decided", .choice = choice};
    log::info("accelerator: {} ({})", vmm::acceleratorName(choice.accelerator), choice.reason);
    return choice;
  };
  if (auto cached = cachedAcceleratorChoice(plan)) return decide(*cached);
  // Across daemons too: a lock file beside the cache, so two corralds never boot two probes at once.
  std::error_code ec;
  std::filesystem::create_directories(options_.acceleratorCache.parent_path(), ec);
  std::string lockPath = options_.acceleratorCache.string() + ".lock";
  UniqueFd lockFd(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (lockFd) ::flock(lockFd.get(), LOCK_EX);
  if (auto cached = cachedAcceleratorChoice(plan)) return decide(*cached);

  vmm::AcceleratorChoice choice;
  if (std::string problem = vmm::kvmDeviceProblem(); !problem.empty()) {
    choice = {vmm::Accelerator::Tcg, problem};
  } else {
    auto lv = libvirt();
    if (!lv) return fail(lv.error());
    {
      std::lock_guard lock(acceleratorStatusMutex_);
      acceleratorStatus_.state = "probing";
    }
    log::info("accelerator: /dev/kvm answers; probing whether a guest really boots under KVM (at most {} ms)",
              options_.kvmProbeTimeout.count());
    std::filesystem::path workDir = options_.vmsDir / ".kvm-probe";
    std::filesystem::create_directories(workDir, ec);
    choice = vmm::chooseAccelerator(**lv, plan.kernel, plan.initrd, workDir, options_.kvmProbeTimeout,
                                    options_.domainPrefix + "kvm-probe");
    std::filesystem::remove_all(workDir, ec);
  }
  json cache = {{"boot_id", readSmallFile("/proc/sys/kernel/random/boot_id")},
                {"accelerator", vmm::acceleratorName(choice.accelerator)},
                {"reason", choice.reason},
                {"decided_at", now()}};
  std::string tmp = options_.acceleratorCache.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << cache.dump(2) << "\n";
  }
  if (std::rename(tmp.c_str(), options_.acceleratorCache.c_str()) != 0) {
    log::warn("accelerator: could not write the cache \"{}\": {}", options_.acceleratorCache.string(),
              std::strerror(errno));
  }
  return decide(choice);
}

Result<vmm::AcceleratorChoice> InstanceManager::acceleratorFor(const schema::InstanceSpec& spec) {
  auto plan = toVmPlan(spec, hostVmContext(options_.imageDir, options_.imageStore.get()));
  if (!plan) return fail(plan.error());
  return accelerator(*plan);
}

// Boots the VM of `instance` (created or stopped): a transient domain, then a thread waits for the guest
// agent's "ready". Called with the lock held; creating the domain takes a fraction of a second.
Result<json> InstanceManager::startVmLocked(Instance& instance, Clock::time_point received,
                                            const vmm::AcceleratorChoice& accel) {
  if (!instance.vmPlan) {
    auto plan = toVmPlan(instance.spec, hostVmContext(options_.imageDir, options_.imageStore.get()));
    if (!plan) return fail(plan.error());
    instance.vmPlan = std::move(*plan);
  }
  const VmPlan& plan = *instance.vmPlan;
  auto lv = libvirt();
  if (!lv) return fail(lv.error());
  const std::filesystem::path dir = instanceDir(instance);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir(\"{}\")", dir.string())));
  std::filesystem::remove(dir / "agent.sock", ec);

  vmm::DomainConfig config{
      .domainName = domainName(plan.name),
      .instanceName = plan.name,
      .accelerator = accel.accelerator,
      .machine = vmm::Machine::Pc,
      .memoryBytes = plan.memoryBytes,
      .vcpus = plan.vcpus,
      .kernel = plan.kernel,
      .initrd = plan.initrd,
      .cmdline = vmm::kernelCommandLine(plan.name, plan.hostname, std::nullopt, std::nullopt),
      .consoleLog = dir / "console.log",
      .agentSocket = dir / "agent.sock",
      .nic = std::nullopt,
      .disks = {}};
  // A store image's root: its overlay and config disk, found by the guest init through corral.root.
  std::optional<std::string> rootSerial;
  if (plan.rootImage) {
    auto disks = prepareInstanceDisks(*options_.imageStore, *plan.rootImage, dir);
    if (!disks) return fail(disks.error());
    config.disks = std::move(*disks);
    rootSerial = vmm::kRootDiskSerial;
    config.cmdline = vmm::kernelCommandLine(plan.name, plan.hostname, std::nullopt, std::nullopt, rootSerial);
  }
  // Its NIC: QEMU opens the tap in our namespace; it moves into the VPC's while the CPUs are paused, and
  // the guest's init takes its address from the kernel command line.
  std::optional<net::NicPlan> nic;
  if (network_ && !instance.spec.subnet.empty()) {
    auto planned = network_->nicPlan(plan.name);
    if (!planned) return fail(planned.error());
    nic = std::move(*planned);
    config.nic = vmm::NicConfig{.tapName = nic->link, .mac = nic->mac};
    config.cmdline =
        vmm::kernelCommandLine(plan.name, plan.hostname, nic->addressWithPrefix, nic->gateway, rootSerial);
  }
  if (Status ok = vmm::validate(config); !ok) return fail(ok.error());
  CORRAL_FAILPOINT("vm.before-define");
  auto domain = (*lv)->createTransient(vmm::domainXml(config), /*paused=*/nic.has_value());
  if (!domain) return fail(domain.error());
  if (nic) {
    Status plugged = network_->attachVm(plan.name);
    if (plugged) plugged = (*lv)->resume(config.domainName);
    if (!plugged) {
      [[maybe_unused]] auto destroyed = (*lv)->destroy(config.domainName);
      return fail(plugged.error());
    }
  }
  auto domainStarted = Clock::now();
  CORRAL_FAILPOINT("vm.after-define");

  json boot = {{"domain_ms", msBetween(received, domainStarted)},
               {"requested_at_ms", unixMillisAt(received)},
               {"accelerator", vmm::acceleratorName(accel.accelerator)},
               {"accelerator_reason", accel.reason}};
  InstanceRow row = instance.row;
  row.state = InstanceState::starting;
  row.pid = domain->qemuPid ? std::optional<int64_t>(*domain->qemuPid) : std::nullopt;
  row.pidStartTime = row.pid ? processStartTime(static_cast<pid_t>(*row.pid)) : std::nullopt;
  row.startedAt = now();
  row.finishedAt.reset();
  row.exitCode.reset();
  row.exitSignal.reset();
  row.exitReason.reset();
  row.exitNote.reset();
  row.logPath = config.consoleLog.string();
  row.bootStepsJson = boot.dump();
  if (auto saved = store_.putInstance(row); !saved) {
    [[maybe_unused]] auto destroyed = (*lv)->destroy(config.domainName);
    return fail(saved.error());
  }
  CORRAL_FAILPOINT("vm.after-record-starting");
  instance.row = std::move(row);
  instance.vm = std::make_shared<VmSession>();
  startBootWaiter(plan.name, instance.vm, received, domainStarted);
  log::info("instance \"{}\": domain {} started ({}), waiting for the guest", plan.name, config.domainName,
            vmm::acceleratorName(accel.accelerator));
  return render(instance);
}

void InstanceManager::startBootWaiter(const std::string& name, std::shared_ptr<VmSession> session,
                                      Clock::time_point received, Clock::time_point domainStarted) {
  std::lock_guard lock(bootThreadsMutex_);
  bootThreads_.emplace_back([this, name, session = std::move(session), received, domainStarted]() mutable {
    waitForGuest(std::move(name), std::move(session), received, domainStarted);
  });
}

// Runs on its own thread: connects to the agent until the guest says "ready" or the boot timeout passes.
void InstanceManager::waitForGuest(std::string name, std::shared_ptr<VmSession> session,
                                   Clock::time_point received, Clock::time_point domainStarted) {
  const auto deadline = received + options_.vmBootTimeout;
  const std::filesystem::path socket = options_.vmsDir / name / "agent.sock";
  std::optional<vmm::AgentClient> client;
  Error lastError = unavailable("guest agent not ready");
  while (!quit_ && Clock::now() < deadline) {
    // Short attempts, so a daemon shutdown is never held up by a slow guest.
    auto attempt =
        vmm::AgentClient::connect(socket, std::min(deadline, Clock::now() + std::chrono::seconds(1)));
    if (attempt) {
      client = std::move(*attempt);
      break;
    }
    lastError = attempt.error();
    // The domain may have died already: its stop event ends this wait.
    std::lock_guard lock(mutex_);
    auto it = instances_.find(name);
    if (it == instances_.end() || it->second.vm != session || it->second.row.state != InstanceState::starting)
      return;
  }
  if (quit_) return;  // the next corrald picks the boot up again (reattachVm)
  auto readyAt = Clock::now();
  std::lock_guard lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end() || it->second.vm != session || it->second.row.state != InstanceState::starting)
    return;
  Instance& instance = it->second;
  if (!client) {
    std::string tail = consoleTail(instance.row.logPath, 20);
    if (auto lv = libvirt(); lv) {
      if (auto destroyed = (*lv)->destroy(domainName(name)); !destroyed)
        log::warn("instance \"{}\": {}", name, destroyed.error().message());
    }
    recordVmExit(instance, "boot-timeout",
                 fmt::format("the guest was not ready after {} ms ({}); the console's last lines:\n{}",
                             options_.vmBootTimeout.count(), lastError.message(), tail),
                 /*reasonStands=*/true);
    return;
  }
  const vmm::GuestReady& ready = client->ready();
  json boot = json::parse(instance.row.bootStepsJson, nullptr, false);
  if (!boot.is_object()) boot = json::object();
  // The guest's own clock splits the time since the domain started: firmware and loading (until the
  // kernel's clock starts), the kernel (until /init), userspace (until the agent said ready).
  double sinceDomain = msBetween(domainStarted, readyAt);
  double guestUptime = static_cast<double>(ready.uptimeMs);
  boot["total_ms"] = msBetween(received, readyAt);
  boot["firmware_ms"] = std::max(0.0, sinceDomain - guestUptime);
  boot["kernel_ms"] = static_cast<double>(ready.initStartedMs);
  boot["userspace_ms"] = static_cast<double>(ready.uptimeMs - ready.initStartedMs);
  boot["guest_uptime_ms"] = guestUptime;
  boot["guest_kernel"] = ready.kernel;
  InstanceRow row = instance.row;
  row.state = InstanceState::running;
  row.bootStepsJson = boot.dump();
  if (auto saved = store_.putInstance(row); !saved) {
    log::error("instance \"{}\": recording it ready: {}", name, saved.error().message());
  }
  instance.row = std::move(row);
  {
    std::lock_guard agent(session->mutex);
    session->agent = std::move(client);
  }
  changed_.notify_all();
  log::info("instance \"{}\" ready: guest kernel {}, boot {:.0f} ms", name, ready.kernel,
            boot["total_ms"].get<double>());
}

// The domain is gone: record why, drop the agent session, remove the instance if it asked (--rm).
void InstanceManager::recordVmExit(Instance& instance, std::string reason, std::optional<std::string> note,
                                   bool reasonStands) {
  if (instance.stopAsked() && !reasonStands) reason = "stopped";
  instance.vm.reset();
  log::info("instance \"{}\" (vm) stopped: {}", instance.row.name, reason);
  std::error_code ec;
  std::filesystem::remove(instanceDir(instance) / "agent.sock", ec);
  recordStopped(instance, reason, std::nullopt, std::nullopt, std::move(note));
}

// Supervisor thread: libvirt's stop events, queued by the event thread, applied under the lock.
void InstanceManager::handleDomainEvents() {
  std::vector<vmm::DomainStopped> events;
  {
    std::lock_guard lock(eventsMutex_);
    events.swap(domainEvents_);
  }
  if (events.empty()) return;
  std::lock_guard lock(mutex_);
  for (const vmm::DomainStopped& event : events) {
    if (!event.domainName.starts_with(options_.domainPrefix)) continue;
    auto it = instances_.find(event.domainName.substr(options_.domainPrefix.size()));
    if (it == instances_.end() || it->second.row.kind != schema::InstanceKind::vm ||
        !isActive(it->second.row.state))
      continue;
    std::string reason(vmm::stopReasonName(event.reason));
    std::optional<std::string> note;
    if (event.reason == vmm::StopReason::Crashed || event.reason == vmm::StopReason::Failed) {
      note = "the console's last lines:\n" + consoleTail(it->second.row.logPath, 20);
    }
    recordVmExit(it->second, reason, note);
  }
}

// After a corrald restart: a VM whose domain still runs is taken back (agent reconnected, or the boot wait
// resumed); one whose domain is gone is recorded as lost.
void InstanceManager::reattachVm(Instance& instance) {
  const std::string& name = instance.row.name;
  auto lv = libvirt();
  if (!lv) {
    log::warn("instance \"{}\": cannot check its domain: {}; it stays {} until libvirtd answers", name,
              lv.error().message(), instanceStateName(instance.row.state));
    instance.vm = std::make_shared<VmSession>();
    return;
  }
  auto domain = (*lv)->lookup(domainName(name));
  if (domain && *domain && (*domain)->running) {
    instance.vm = std::make_shared<VmSession>();
    if (instance.row.state == InstanceState::starting) {
      // The boot is measured from the request the earlier corrald received (its wall-clock time is in the
      // record), so the total still covers every step; the record says a restart happened in between.
      json boot = json::parse(instance.row.bootStepsJson, nullptr, false);
      if (!boot.is_object()) boot = json::object();
      auto at = Clock::now();
      Clock::time_point received = at, domainStarted = at;
      if (boot.contains("requested_at_ms") && boot["requested_at_ms"].is_number() &&
          boot.contains("domain_ms") && boot["domain_ms"].is_number()) {
        double ago = unixMillisAt(at) - boot["requested_at_ms"].get<double>();
        received = at - std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double, std::milli>(std::max(0.0, ago)));
        domainStarted =
            received + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double, std::milli>(boot["domain_ms"].get<double>()));
      } else {
        boot["boot_note"] =
            "corrald restarted during the boot and the record has no request time: total_ms and "
            "firmware_ms count from the restart only";
      }
      boot["daemon_restarted"] = true;
      instance.row.bootStepsJson = boot.dump();
      startBootWaiter(name, instance.vm, received, domainStarted);
      log::info("instance \"{}\": domain still running; waiting again for its guest", name);
      return;
    }
    auto client =
        vmm::AgentClient::connect(options_.vmsDir / name / "agent.sock", Clock::now() + kAgentReconnect);
    if (client) instance.vm->agent = std::move(*client);
    log::info("instance \"{}\": reattached to domain {}{}", name, domainName(name),
              client ? "" : " (agent not answering yet; exec will retry)");
    return;
  }
  if (!domain) log::warn("instance \"{}\": {}", name, domain.error().message());
  markLost(instance.row, "its domain was gone when corrald restarted");
  if (auto saved = store_.putInstance(instance.row); !saved)
    log::error("instance \"{}\": {}", name, saved.error().message());
}

// Domains named with our prefix that no active VM instance owns (a crash between creating the domain and
// recording it) are destroyed; so are per-VM directories no instance owns.
void InstanceManager::reconcileDomains() {
  auto lv = libvirt();
  if (!lv) {
    log::info("libvirt not reachable ({}); VMs unavailable until it is", lv.error().message());
    return;
  }
  auto domains = (*lv)->listDomains(options_.domainPrefix);
  if (!domains) {
    log::warn("reconcile: {}", domains.error().message());
    return;
  }
  for (const vmm::DomainInfo& domain : *domains) {
    std::string name = domain.name.substr(options_.domainPrefix.size());
    auto it = instances_.find(name);
    bool owned = it != instances_.end() && it->second.row.kind == schema::InstanceKind::vm &&
                 isActive(it->second.row.state);
    if (owned || domain.name == options_.domainPrefix + "kvm-probe") continue;
    log::warn("reconcile: destroying domain {}: no running corral instance owns it", domain.name);
    if (auto destroyed = (*lv)->destroy(domain.name); !destroyed)
      log::warn("reconcile: {}", destroyed.error().message());
  }
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.vmsDir, ec)) {
    std::string name = entry.path().filename().string();
    if (name.starts_with(".") || instances_.contains(name)) continue;
    log::warn("reconcile: removing \"{}\": no instance owns it", entry.path().string());
    std::filesystem::remove_all(entry.path(), ec);
  }
}

Status InstanceManager::destroyLeftoverDomain(const std::string& instanceName) {
  auto lv = libvirt();
  if (!lv) {
    // Without libvirtd no domain can run either; the next corrald start reconciles.
    log::info("remove \"{}\": libvirt not reachable ({}); no domain to look for", instanceName,
              lv.error().message());
    return {};
  }
  auto domain = (*lv)->lookup(domainName(instanceName));
  if (!domain) return fail(domain.error());
  if (!*domain) return {};
  log::warn("remove \"{}\": its domain {} exists though the instance is not running; destroying it",
            instanceName, domainName(instanceName));
  return (*lv)->destroy(domainName(instanceName));
}

Result<json> InstanceManager::stopVm(std::unique_lock<std::mutex>& lock, Instance& instance,
                                     int64_t graceSeconds) {
  const std::string name = instance.row.name;
  std::shared_ptr<VmSession> session = instance.vm;
  lock.unlock();
  auto lv = libvirt();
  if (!lv) return fail(lv.error().wrap(fmt::format("stop \"{}\"", name)));
  // Ask nicely: the agent (which powers off), else the ACPI power button; then destroy after the grace.
  bool asked = false;
  if (session) {
    std::unique_lock agentLock(session->mutex, std::try_to_lock);
    if (agentLock && session->agent) asked = static_cast<bool>(session->agent->shutdown());
  }
  if (!asked) {
    if (auto acpi = (*lv)->shutdownAcpi(domainName(name)); !acpi)
      log::info("stop \"{}\": ACPI shutdown: {}", name, acpi.error().message());
  }
  lock.lock();
  bool down = changed_.wait_for(lock, std::chrono::seconds(graceSeconds), [&] {
    auto it = instances_.find(name);
    return it == instances_.end() || !isActive(it->second.row.state);
  });
  if (!down) {
    lock.unlock();
    CORRAL_FAILPOINT("vm.stop.before-destroy");
    if (auto destroyed = (*lv)->destroy(domainName(name)); !destroyed)
      log::warn("stop \"{}\": {}", name, destroyed.error().message());
    lock.lock();
  }
  if (auto waited = waitStopped(lock, name, std::chrono::seconds(15)); !waited) return fail(waited.error());
  auto after = instances_.find(name);
  if (after == instances_.end()) return json{{"name", name}, {"state", "removed"}};
  return render(after->second);
}

Result<json> InstanceManager::execVm(std::unique_lock<std::mutex>& lock, Instance& instance,
                                     const std::vector<std::string>& command,
                                     const std::vector<std::string>& env) {
  const std::string name = instance.row.name;
  std::shared_ptr<VmSession> session = instance.vm;
  if (!session) return fail(conflict("instance \"{}\" has no guest agent session", name));
  lock.unlock();
  std::lock_guard agentLock(session->mutex);
  if (!session->agent) {
    auto client =
        vmm::AgentClient::connect(options_.vmsDir / name / "agent.sock", Clock::now() + kAgentReconnect);
    if (!client) return fail(client.error().wrap(fmt::format("exec in instance \"{}\"", name)));
    session->agent = std::move(*client);
  }
  auto result = session->agent->exec(command, env, kExecTimeout);
  if (!result) {
    session->agent.reset();  // the next exec reconnects
    return fail(result.error().wrap(fmt::format("exec in instance \"{}\"", name)));
  }
  json exitCode = result->exitCode ? json(*result->exitCode) : json(nullptr);
  json signal = result->signal ? json(*result->signal) : json(nullptr);
  return json{{"exit_code", exitCode},
              {"signal", signal},
              {"stdout", textJson(result->stdoutText)},
              {"stderr", textJson(result->stderrText)},
              {"truncated", result->truncated},
              {"timed_out", result->timedOut}};
}

std::string InstanceManager::consoleTail(const std::string& logPath, size_t lines) const {
  UniqueFd fd(::open(logPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return "(no console output)";
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || st.st_size == 0) return "(no console output)";
  constexpr off_t kWindow = 16 * 1024;
  off_t from = std::max<off_t>(0, st.st_size - kWindow);
  std::string data(static_cast<size_t>(st.st_size - from), '\0');
  ssize_t got = ::pread(fd.get(), data.data(), data.size(), from);
  data.resize(got > 0 ? static_cast<size_t>(got) : 0);
  std::erase(data, '\r');
  while (!data.empty() && data.back() == '\n') data.pop_back();
  size_t pos = data.size();
  for (size_t n = 0; n < lines && pos != std::string::npos && pos > 0; ++n) {
    pos = data.rfind('\n', pos - 1);
  }
  return pos == std::string::npos ? data : data.substr(pos + 1);
}

}  // namespace corral::daemon
