// InstanceManager: the instance lifecycle over the drivers, every state change stored before it is
// answered, each effect of a run or start undone by a Rollback guard if a later step fails.
#include "daemon/instances.h"

#include <fcntl.h>
#include <fmt/ranges.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <ctime>
#include <set>
#include <system_error>
#include <thread>

#include "api/api.h"
#include "core/failpoint.h"
#include "core/log.h"
#include "daemon/image_launch.h"
#include "daemon/instance_view.h"
#include "net/netns.h"
#include "schema/names.h"

namespace corral::daemon {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr int64_t kMaxLogChunk = 256 * 1024;
constexpr int64_t kMaxGraceSeconds = 3600;

int64_t now() {
  return static_cast<int64_t>(std::time(nullptr));
}

bool isActive(InstanceState state) {
  return state == InstanceState::starting || state == InstanceState::running;
}

// The stored spec is the API's own JSON: render and parse it through the request codec.
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
json optionalJson(const std::optional<ExitReason>& reason) {
  return reason ? json(exitReasonName(*reason)) : json(nullptr);
}

// Bytes as a JSON string: invalid UTF-8 is replaced (U+FFFD) rather than failing the whole response.
json textJson(const std::string& bytes) {
  return json::parse(json(bytes).dump(-1, ' ', false, json::error_handler_t::replace));
}

}  // namespace

// The steps of one removal and how long each took, for the log line that breaks an rm down (bench/scale
// prints it).
class StepClock {
 public:
  void mark(const char* step) {
    const auto now = Clock::now();
    steps_.emplace_back(step, std::chrono::duration<double, std::milli>(now - last_).count());
    last_ = now;
  }
  double totalMs() const { return std::chrono::duration<double, std::milli>(last_ - start_).count(); }
  std::string text() const {
    std::string out;
    for (const auto& [step, ms] : steps_)
      out += fmt::format("{}{} {:.1f}", out.empty() ? "" : ", ", step, ms);
    return out;
  }

 private:
  Clock::time_point start_ = Clock::now();
  Clock::time_point last_ = start_;
  std::vector<std::pair<const char*, double>> steps_;
};

namespace {

// An instance's NIC as its driver plugs it in, through the network service.
class NetworkNicPort final : public NicPort {
 public:
  NetworkNicPort(NetworkController& network, std::string instance)
      : network_(network), instance_(std::move(instance)) {}
  Result<net::NicPlan> plan() override { return network_.nicPlan(instance_); }
  Status plugIntoProcess(pid_t pid) override { return network_.attachContainer(instance_, pid); }
  Status plugIntoTap(std::optional<pid_t> qemuPid) override { return network_.attachVm(instance_, qemuPid); }

 private:
  NetworkController& network_;
  std::string instance_;
};

}  // namespace

InstanceManager::InstanceManager(Store& store, InstanceOptions options, NetworkController* network,
                                 InstanceDrivers drivers)
    : store_(store), options_(std::move(options)), network_(network), drivers_(std::move(drivers)) {
  for (auto& [kind, driver] : drivers_) {
    if (auto* vms = dynamic_cast<VmDriver*>(driver.get())) vmDriver_ = vms;
    driver->bind(*this);
  }
  if (vmDriver_ && network_) vmDriver_->setVmNicProfile(network_->vmNicProfile());
}

Result<std::unique_ptr<InstanceManager>> InstanceManager::load(Store& store, InstanceOptions options,
                                                               NetworkController* network) {
  InstanceDrivers drivers = hostDrivers(options);
  return load(store, std::move(options), network, std::move(drivers));
}

Result<std::unique_ptr<InstanceManager>> InstanceManager::load(Store& store, InstanceOptions options,
                                                               NetworkController* network,
                                                               InstanceDrivers drivers) {
  auto manager = std::make_unique<InstanceManager>(store, std::move(options), network, std::move(drivers));
  auto rows = store.listInstances();
  if (!rows) return fail(rows.error().wrap("load instances"));
  // Held while recovering: a driver's report (a resumed boot getting ready) waits for its instance.
  std::lock_guard lock(manager->mutex_);
  std::map<InstanceDriver*, std::pair<std::set<std::string>, std::set<std::string>>> names;  // active, all
  for (InstanceRow& row : *rows) {
    auto driver = manager->driverFor(row.kind);
    if (!driver) return fail(driver.error().wrap(fmt::format("load instance \"{}\"", row.name)));
    auto spec = specFromText(row.specJson);
    if (!spec) return fail(spec.error().wrap(fmt::format("load instance \"{}\": stored spec", row.name)));
    Instance instance;
    instance.spec = std::move(*spec);
    instance.row = std::move(row);
    instance.driver = *driver;
    instance.handle = instance.driver->newHandle();
    const std::string name = instance.row.name;
    if (network) {
      if (auto restored = network->restoreNic(instance.spec, manager->linkKey(name)); !restored)
        log::warn("instance \"{}\": its NIC: {}", name, restored.error().message());
    }
    if (Status configured = instance.driver->configure(*instance.handle, instance.spec, &instance.row);
        !configured) {
      log::warn("instance \"{}\": its spec no longer validates: {}", name, configured.error().message());
    }
    const InstanceState stored = instance.row.state;
    InstanceDriver::Recovery recovery = instance.driver->recover(*instance.handle, instance.row);
    instance.run = recovery.run;
    if (recovery.rowChanged) {
      if (auto saved = store.putInstance(instance.row); !saved) return fail(saved.error());
    }
    // An interrupted start's port went with its processes; whatever is left of it goes too.
    if (network && !isActive(instance.row.state) &&
        (stored == InstanceState::created || stored == InstanceState::starting))
      network->detach(name);
    names[instance.driver].second.insert(name);
    if (isActive(instance.row.state)) names[instance.driver].first.insert(name);
    instance.version = ++manager->revision_;
    manager->instances_.emplace(name, std::move(instance));
  }
  std::set<std::string> everyInstance;
  for (auto& [kind, driver] : manager->drivers_) {
    const auto& [active, all] = names[driver.get()];
    driver->reconcile(active, all);
    everyInstance.insert(all.begin(), all.end());
  }
  // Image pins are held by instances of both kinds (ContainerDriver, VmDriver): those of neither go.
  dropImagePinsExcept(manager->options_.imageStore.get(), everyInstance);
  return manager;
}

InstanceManager::~InstanceManager() {
  for (auto& [kind, driver] : drivers_) driver->shutdown();
}

Result<InstanceDriver*> InstanceManager::driverFor(schema::InstanceKind kind) {
  auto it = drivers_.find(kind);
  if (it == drivers_.end())
    return fail(invalidField("kind", "this corrald runs no {} instances", schema::instanceKindName(kind)));
  return it->second.get();
}

AcceleratorStatus InstanceManager::acceleratorStatus() {
  return vmDriver_ ? vmDriver_->acceleratorStatus() : AcceleratorStatus{};
}

Result<std::string> InstanceManager::hypervisorVersion() {
  if (!vmDriver_) return fail(unavailable("this corrald runs no VMs"));
  return vmDriver_->hypervisorVersion();
}

Result<json> InstanceManager::vmSnapshots() {
  if (!vmDriver_) return fail(unavailable("this corrald runs no VMs"));
  return vmDriver_->listSnapshots();
}

Status InstanceManager::removeVmSnapshot(const std::string& key) {
  if (!vmDriver_) return fail(unavailable("this corrald runs no VMs"));
  return vmDriver_->removeSnapshot(key);
}

Result<std::vector<std::string>> InstanceManager::pruneVmSnapshots() {
  if (!vmDriver_) return std::vector<std::string>();
  return vmDriver_->pruneSnapshots();
}

void InstanceManager::instanceReady(const std::string& name, RunId run, json boot) {
  std::lock_guard lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end() || it->second.run != run || it->second.row.state != InstanceState::starting)
    return;
  InstanceRow row = it->second.row;
  row.state = InstanceState::running;
  row.bootStepsJson = boot.dump();
  if (auto saved = store_.putInstance(row); !saved)
    log::error("instance \"{}\": recording it ready: {}", name, saved.error().message());
  it->second.row = std::move(row);
  touch(it->second);
  changed_.notify_all();
}

void InstanceManager::instanceEnded(const std::string& name, RunId run, InstanceEnding ending) {
  std::lock_guard lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end() || it->second.run != run || !isActive(it->second.row.state)) return;
  Instance& instance = it->second;
  // A stop kills it itself: whatever the driver saw, the end was asked for (but a boot timeout stands).
  if (instance.stopAsked() && !ending.reasonStands) ending.reason = ExitReason::stopped;
  if (ending.oomKills) instance.row.oomKills = std::max(instance.row.oomKills, *ending.oomKills);
  instance.driver->forgetRun(*instance.handle);
  instance.run.reset();
  log::info("instance \"{}\" ({}) ended: reason {}, code {}, signal {}", name,
            schema::instanceKindName(instance.row.kind), exitReasonName(ending.reason),
            ending.exitCode ? std::to_string(*ending.exitCode) : "none",
            ending.exitSignal ? std::to_string(*ending.exitSignal) : "none");
  recordStopped(instance, ending.reason, ending.exitCode, ending.exitSignal, std::move(ending.note));
  if (endedListener_) endedListener_();
}

void InstanceManager::instanceOomKills(const std::string& name, RunId run, int64_t count) {
  std::lock_guard lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end() || it->second.run != run || it->second.row.state != InstanceState::running)
    return;
  InstanceRow& row = it->second.row;
  if (count <= row.oomKills) return;
  log::warn("instance \"{}\": the kernel OOM-killed {} process(es) in its cgroup ({} since it started)", name,
            count - row.oomKills, count);
  row.oomKills = count;
  touch(it->second);
  if (auto saved = store_.putInstance(row); !saved)
    log::error("instance \"{}\": recording its OOM kills: {}", name, saved.error().message());
}

void InstanceManager::recordStopped(Instance& instance, ExitReason reason, std::optional<int64_t> code,
                                    std::optional<int64_t> signal, std::optional<std::string> note) {
  InstanceRow& row = instance.row;
  row.state = InstanceState::stopped;
  row.finishedAt = now();
  row.exitCode = code;
  row.exitSignal = signal;
  row.exitReason = reason;
  row.exitNote = std::move(note);
  row.pid.reset();
  row.pidStartTime.reset();
  touch(instance);
  if (network_) network_->detach(row.name);
  if (instance.spec.removeOnExit) {
    const std::string name = row.name;
    if (auto removed = instance.driver->removeDirectory(name); !removed)
      log::warn("instance \"{}\": {}", name, removed.error().message());
    if (auto deleted = store_.deleteInstance(name); !deleted)
      log::error("instance \"{}\": {}", name, deleted.error().message());
    instance.driver->release(row);
    instances_.erase(name);
    releaseNic(name);
  } else if (auto saved = store_.putInstance(row); !saved) {
    log::error("instance \"{}\": recording its stop: {}", row.name, saved.error().message());
  }
  changed_.notify_all();
}

json InstanceManager::render(const Instance& instance, json network) const {
  const InstanceRow& row = instance.row;
  json boot = json::parse(row.bootStepsJson, nullptr, false);
  if (boot.is_discarded() || boot.empty()) boot = nullptr;
  if (!instance.specView) instance.specView = json::parse(specText(instance.spec), nullptr, false);
  json out = {{"name", row.name},
              {"kind", schema::instanceKindName(row.kind)},
              {"image", instance.spec.image},
              {"state", instanceStateName(row.state)},
              {"pid", isActive(row.state) ? optionalJson(row.pid) : json(nullptr)},
              {"created_at", row.createdAt},
              {"started_at", optionalJson(row.startedAt)},
              {"finished_at", optionalJson(row.finishedAt)},
              {"exit_code", optionalJson(row.exitCode)},
              {"exit_signal", optionalJson(row.exitSignal)},
              {"exit_reason", optionalJson(row.exitReason)},
              {"exit_note", optionalJson(row.exitNote)},
              {"saved", instance.driver->hasSavedState(*instance.handle)},
              {"boot", std::move(boot)},
              {"spec", *instance.specView},
              {"log_path", row.logPath},
              {"ip", instance.spec.ip.empty() ? json(nullptr) : json(instance.spec.ip)},
              {"network", std::move(network)}};
  json usage = usageJson(instance);
  instance.driver->describe(*instance.handle, instance.spec, row, usage, out);
  out["usage"] = std::move(usage);
  return out;
}

json InstanceManager::usageJson(const Instance& instance) const {
  const auto now = Clock::now();
  auto& kept = instance.usage;
  const bool sameRun = kept && kept->run == instance.run && kept->state == instance.row.state &&
                       kept->oomKills == instance.row.oomKills;
  // The driver's background sample, when it is of the current run, fresh enough and aware of every
  // recorded OOM kill, is shown as it is (no read); else a reading kept for usageMaxAge.
  auto sample = instance.run ? instance.driver->sampledUsage(*instance.handle, instance.row) : std::nullopt;
  const bool sampleFits = sample && now - sample->at < options_.usageSampleMaxAge &&
                          sample->value.value("oom_kills", instance.row.oomKills) >= instance.row.oomKills;
  if (sampleFits) {
    if (!sameRun || kept->at != sample->at) {
      kept = Instance::UsageReading{.run = instance.run,
                                    .state = instance.row.state,
                                    .oomKills = instance.row.oomKills,
                                    .at = sample->at,
                                    .value = std::move(sample->value)};
    }
  } else if (!sameRun || now - kept->at >= options_.usageMaxAge) {
    kept = Instance::UsageReading{.run = instance.run,
                                  .state = instance.row.state,
                                  .oomKills = instance.row.oomKills,
                                  .at = now,
                                  .value = instance.driver->readUsage(*instance.handle, instance.row)};
  }
  json usage = kept->value;
  if (usage.is_object())
    usage["age_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(now - kept->at).count();
  return usage;
}

namespace {

json nicJson(const net::NicPlan& nic, json spoofDrops) {
  json publish = json::array();
  for (const net::PortForward& forward : nic.nic.publish) publish.push_back(net::portForwardText(forward));
  return {{"subnet", nic.nic.subnet},
          {"ip", nic.nic.address},
          {"address", nic.addressWithPrefix},
          {"gateway", nic.gateway},
          {"mac", nic.mac},
          {"link", nic.link},
          {"bridge", nic.bridge},
          {"public_ip", nic.nic.publicAddress ? json(*nic.nic.publicAddress) : json(nullptr)},
          {"security_groups", nic.nic.securityGroups},
          {"publish", std::move(publish)},
          {"spoof_drops", std::move(spoofDrops)}};
}

}  // namespace

json InstanceManager::networkJson(const Instance& instance, Counters counters) const {
  if (!network_ || instance.spec.subnet.empty()) return nullptr;
  auto nic = network_->nicPlan(instance.row.name);
  if (!nic)
    return {{"subnet", instance.spec.subnet}, {"ip", instance.spec.ip}, {"error", nic.error().message()}};
  return nicJson(*nic,
                 counters == Counters::read ? network_->spoofDropsJson(instance.row.name) : json(nullptr));
}

void InstanceManager::releaseNic(const std::string& instanceName) {
  if (network_) network_->releaseNic(instanceName);
  if (InstanceClaims* claims = claims_.load()) claims->release({instanceName});
}

void InstanceManager::releaseNicsOf(const std::vector<std::string>& instanceNames) {
  if (InstanceClaims* claims = claims_.load(); claims && !instanceNames.empty())
    claims->release(instanceNames);
  if (!network_) return;
  if (auto ok = network_->releaseNics(instanceNames); !ok)
    log::warn("releasing the NICs of {}: {}", fmt::join(instanceNames, ", "), ok.error().message());
}

void InstanceManager::replugNics() {
  if (!network_) return;
  std::lock_guard lock(mutex_);
  for (auto& [name, instance] : instances_) {
    if (instance.spec.subnet.empty() || !network_->nic(name) || network_->portPresent(name)) continue;
    NetworkNicPort port(*network_, name);
    instance.driver->replugNic(*instance.handle, instance.row, port);
  }
}

Result<json> InstanceManager::run(const schema::InstanceSpec& spec) {
  auto received = Clock::now();
  // Refused before anything is reserved: what the instance metadata would serve at /latest/user-data.
  if (!spec.userData.empty()) {
    if (auto decoded = decodeUserData(spec.userData); !decoded) return fail(decoded.error());
  }
  auto driver = driverFor(spec.kind);
  if (!driver) return fail(driver.error());
  Instance instance;
  instance.driver = *driver;
  instance.handle = instance.driver->newHandle();
  if (Status valid = instance.driver->configure(*instance.handle, spec, nullptr); !valid)
    return fail(valid.error());
  {
    std::lock_guard lock(mutex_);
    if (instances_.contains(spec.name)) return fail(conflict("instance \"{}\" already exists", spec.name));
  }
  // Before taking the lock: the first VM on a host may wait for the KVM probe boot.
  if (Status ready = instance.driver->preflight(spec); !ready)
    return fail(ready.error().wrap(fmt::format("run instance \"{}\"", spec.name)));

  std::unique_lock lock(mutex_);
  if (instances_.contains(spec.name)) return fail(conflict("instance \"{}\" already exists", spec.name));
  instance.spec = spec;
  instance.driver->settleSpec(*instance.handle, instance.spec);
  instance.row.name = spec.name;
  instance.row.kind = spec.kind;
  if (auto reserved = instance.driver->reserve(*instance.handle, instance.spec, instance.row); !reserved)
    return fail(reserved.error().wrap(fmt::format("run instance \"{}\"", spec.name)));
  Rollback releaseReserved([driver = instance.driver, row = instance.row] { driver->release(row); });
  // Its NIC: addresses assigned now and written into the spec, so they stay the instance's.
  // On a cluster host the name and the addresses are claimed in the cluster store too: an address another
  // host gave a moment ago is learnt, and another is reserved.
  std::optional<net::NicAttachment> nic;
  InstanceClaims* claims = claims_.load();
  if (!network_ && !spec.subnet.empty())
    return fail(invalidField("subnet", "this corrald manages no network"));
  // Only what this run reserved goes back: a NIC of that name may be another host's instance's.
  auto unreserve = [&] {
    if (nic) network_->releaseNic(spec.name);
    nic.reset();
  };
  constexpr int kClaimAttempts = 5;
  for (int attempt = 1;; ++attempt) {
    if (network_) {
      auto reservedNic = network_->reserveNic(spec, linkKey(spec.name));
      if (!reservedNic) return fail(reservedNic.error());
      nic = std::move(*reservedNic);
    }
    if (nic) {
      instance.spec.ip = nic->address;
      instance.spec.publicAddress = nic->publicAddress.value_or("");
    }
    if (!claims) break;
    auto claimed = claims->claim(instance.spec, linkKey(spec.name));
    if (!claimed) {
      unreserve();
      return fail(claimed.error());
    }
    if (*claimed) break;
    unreserve();
    if (!spec.ip.empty() || attempt == kClaimAttempts) {
      return fail(conflict("instance \"{}\": address {} is another instance's in the cluster", spec.name,
                           instance.spec.ip));
    }
  }
  Rollback giveNicBack([this, name = spec.name, reserved = nic.has_value()] {
    if (reserved && network_) network_->releaseNic(name);
    if (InstanceClaims* held = claims_.load()) held->release({name});
  });
  instance.row.specJson = specText(instance.spec);
  instance.row.createdAt = now();
  // The row says "starting" before any effect when the driver wants a crash to leave that trace (a
  // container: load() then looks for what the start left); else "created" until it runs (a VM: its
  // domain is found by name).
  instance.row.state =
      instance.driver->recordsStartingFirst() ? InstanceState::starting : InstanceState::created;
  const std::filesystem::path dir = instance.driver->directory(spec.name);
  instance.row.logPath = (dir / "console.log").string();
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) {
    return fail(
        conflict("instance \"{}\": directory \"{}\" already exists (left over?)", spec.name, dir.string()));
  }
  if (auto inserted = store_.insertInstance(instance.row); !inserted) return fail(inserted.error());
  Rollback deleteRow([this, name = spec.name] {
    if (auto deleted = store_.deleteInstance(name); !deleted)
      log::error("instance \"{}\": removing its row: {}", name, deleted.error().message());
  });
  CORRAL_FAILPOINT("run.after-insert");
  auto [it, added] = instances_.emplace(spec.name, std::move(instance));
  touch(it->second);
  Rollback forgetEntry([this, name = spec.name] {
    instances_.erase(name);
    ++revision_;
  });
  Rollback removeDirectory([driver = it->second.driver, name = spec.name] {
    if (auto removed = driver->removeDirectory(name); !removed)
      log::error("instance \"{}\": {}", name, removed.error().message());
  });
  auto started = startLocked(it->second, received);
  if (!started) return fail(started.error().wrap(fmt::format("run instance \"{}\"", spec.name)));
  removeDirectory.dismiss();
  forgetEntry.dismiss();
  deleteRow.dismiss();
  giveNicBack.dismiss();
  releaseReserved.dismiss();
  return started;
}

Result<json> InstanceManager::startLocked(Instance& instance, Clock::time_point received) {
  InstanceDriver& driver = *instance.driver;
  const std::string name = instance.row.name;
  if (auto reserved = driver.reserve(*instance.handle, instance.spec, instance.row); !reserved)
    return fail(reserved.error());
  // Recorded before any effect when the driver asks (run() inserted it so already).
  std::optional<InstanceRow> before;
  if (driver.recordsStartingFirst() && instance.row.state != InstanceState::starting) {
    InstanceRow starting = instance.row;
    starting.state = InstanceState::starting;
    if (auto saved = store_.putInstance(starting); !saved) return fail(saved.error());
    before = std::exchange(instance.row, std::move(starting));
    touch(instance);
    CORRAL_FAILPOINT("start.after-mark-starting");
  }
  Rollback restoreRow([&] {
    if (!before) return;
    instance.row = *before;
    touch(instance);
    if (auto saved = store_.putInstance(*before); !saved)
      log::error("instance \"{}\": restoring its row: {}", name, saved.error().message());
  });
  std::optional<NetworkNicPort> port;
  if (network_ && !instance.spec.subnet.empty()) port.emplace(*network_, name);
  // Whatever the driver plugs in goes again if the start does not complete.
  Rollback unplug([&] {
    if (port) network_->detach(name);
  });
  auto started =
      driver.start(*instance.handle, instance.spec, instance.row, port ? &*port : nullptr, received);
  if (!started) return fail(started.error());
  // From here the driver's run is undone (killed, destroyed) unless the row records it.
  InstanceRow row = instance.row;
  row.state = started->state;
  row.pid = started->pid;
  row.pidStartTime = started->pidStartTime;
  row.startedAt = now();
  row.finishedAt.reset();
  row.exitCode.reset();
  row.exitSignal.reset();
  row.exitReason.reset();
  row.exitNote.reset();
  row.bootStepsJson = started->boot.dump();
  row.oomKills = 0;
  if (auto saved = store_.putInstance(row); !saved) {
    started->undo.run();
    return fail(saved.error());
  }
  started->undo.dismiss();
  unplug.dismiss();
  restoreRow.dismiss();
  instance.row = std::move(row);
  instance.run = started->run;
  touch(instance);
  instance.startReceived = received;
  driver.supervise(*instance.handle, name);
  if (instance.row.state == InstanceState::running) {
    log::info("instance \"{}\" running: pid {}, boot {:.1f} ms", name, instance.row.pid.value_or(-1),
              started->boot.value("total_ms", 0.0));
  }
  // A new NIC's counters are all 0: not read (an nft listing of the VPC's namespace grows with the VPC).
  return render(instance, networkJson(instance, Counters::skipped));
}

json InstanceManager::list(Listing listing) {
  std::lock_guard lock(mutex_);
  std::map<std::string, net::NicPlan, std::less<>> nics;
  if (network_ && listing == Listing::full) nics = network_->nicPlans();
  json items = json::array();
  for (const auto& [name, instance] : instances_) {
    if (!network_ || instance.spec.subnet.empty() || listing == Listing::withoutNetwork) {
      items.push_back(render(instance, nullptr));
    } else if (auto nic = nics.find(name); nic != nics.end()) {
      // The port guard's counters are read for one instance only (get()): a listing reads no kernel.
      items.push_back(render(instance, nicJson(nic->second, nullptr)));
    } else {
      // Not in a plan: networkJson() says why.
      items.push_back(render(instance, networkJson(instance, Counters::skipped)));
    }
  }
  return {{"instances", std::move(items)}};
}

json InstanceManager::dashboardInstances() {
  std::lock_guard lock(mutex_);
  json items = json::array();
  for (const auto& [name, instance] : instances_) {
    json usage = usageJson(instance);
    if (usage.is_object()) usage.erase("age_ms");  // the page shows no age: a new age is no change
    auto& kept = instance.dashboardEntry;
    if (!kept || kept->version != instance.version || kept->usage != usage) {
      // Only an instance that changed is rendered again (its usage as just kept: no second reading).
      kept = Instance::DashboardEntry{
          .version = instance.version, .usage = usage, .entry = dashboardInstance(render(instance, nullptr))};
    }
    items.push_back(kept->entry);
  }
  return items;
}

std::vector<InstanceManager::GroupMember> InstanceManager::groupMembers() {
  std::lock_guard lock(mutex_);
  std::vector<GroupMember> members;
  for (const auto& [name, instance] : instances_) {
    if (instance.spec.group.empty()) continue;
    members.push_back({.name = name,
                       .group = instance.spec.group,
                       .subnet = instance.spec.subnet,
                       .state = instance.state(),
                       .exitReason = instance.row.exitReason,
                       .exitCode = instance.row.exitCode,
                       .exitSignal = instance.row.exitSignal,
                       .host = {},
                       .lost = false});
  }
  return members;
}

Status InstanceManager::check(const schema::InstanceSpec& spec) {
  auto driver = driverFor(spec.kind);
  if (!driver) return fail(driver.error());
  auto handle = (*driver)->newHandle();
  return (*driver)->configure(*handle, spec, nullptr);
}

json InstanceManager::summaries() {
  std::lock_guard lock(mutex_);
  json items = json::array();
  for (const auto& [name, instance] : instances_) {
    const InstanceRow& row = instance.row;
    json boot = nullptr;
    if (!row.bootStepsJson.empty()) {
      json steps = json::parse(row.bootStepsJson, nullptr, false);
      if (steps.is_object() && steps.contains("total_ms")) boot = {{"total_ms", steps["total_ms"]}};
    }
    items.push_back({{"name", name},
                     {"kind", schema::instanceKindName(row.kind)},
                     {"state", instanceStateName(row.state)},
                     {"exit_reason", optionalJson(row.exitReason)},
                     {"exit_code", optionalJson(row.exitCode)},
                     {"exit_signal", optionalJson(row.exitSignal)},
                     {"saved", instance.driver->hasSavedState(*instance.handle)},
                     {"ip", instance.spec.ip.empty() ? json(nullptr) : json(instance.spec.ip)},
                     {"image", instance.spec.image},
                     {"boot", std::move(boot)},
                     {"created_at", row.createdAt}});
  }
  return {{"instances", std::move(items)}};
}

json InstanceManager::statesJson() {
  std::lock_guard lock(mutex_);
  json items = json::array();
  for (const auto& [name, instance] : instances_)
    items.push_back({{"name", name}, {"state", instanceStateName(instance.row.state)}});
  return {{"instances", std::move(items)}};
}

uint64_t InstanceManager::revision() {
  return revision_.load();
}

std::optional<InstanceState> InstanceManager::stateOf(const std::string& name) {
  std::lock_guard lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return std::nullopt;
  return it->second.row.state;
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

Status InstanceManager::waitStopped(std::unique_lock<std::mutex>& lock, const std::string& name,
                                    std::chrono::milliseconds timeout) {
  bool done = changed_.wait_for(lock, timeout, [&] {
    auto it = instances_.find(name);
    return it == instances_.end() || !isActive(it->second.row.state);
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

Result<json> InstanceManager::stop(const std::string& name, int64_t graceSeconds, bool save) {
  if (graceSeconds < 0 || graceSeconds > kMaxGraceSeconds) {
    return fail(
        invalidField("grace_seconds", "{} is out of range: give 0 to {}", graceSeconds, kMaxGraceSeconds));
  }
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  Instance& instance = it->second;
  const InstanceAction action = save ? InstanceAction::save : InstanceAction::stop;
  if (Status fits = checkAction(instance.row.kind, instance.state(), action, name); !fits)
    return fail(fits.error());
  Rollback settle = holdInProgress(lock, instance, action);
  InstanceDriver& driver = *instance.driver;
  // The driver releases the lock while it waits: other requests go on meanwhile.
  Status stopped = save ? driver.save(*instance.handle, name, lock)
                        : driver.stop(*instance.handle, name, lock, std::chrono::seconds(graceSeconds));
  if (!stopped) return fail(stopped.error());
  if (auto waited = waitStopped(lock, name, driver.settleTimeout()); !waited) return fail(waited.error());
  auto after = instances_.find(name);
  if (after == instances_.end()) return json{{"name", name}, {"state", "removed"}};
  if (save) touch(after->second);  // "saved" changed after its end was recorded
  return render(after->second);
}

Result<json> InstanceManager::start(const std::string& name) {
  auto received = Clock::now();
  InstanceDriver* driver = nullptr;
  schema::InstanceSpec spec;
  {
    std::lock_guard lock(mutex_);
    auto it = instances_.find(name);
    if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
    if (Status fits = checkAction(it->second.row.kind, it->second.state(), InstanceAction::start, name);
        !fits)
      return fail(fits.error());
    driver = it->second.driver;
    spec = it->second.spec;
  }
  if (Status ready = driver->preflight(spec); !ready)
    return fail(ready.error().wrap(fmt::format("start instance \"{}\"", name)));
  std::lock_guard lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  // Checked again: the preflight ran without the lock.
  if (Status fits = checkAction(it->second.row.kind, it->second.state(), InstanceAction::start, name); !fits)
    return fail(fits.error());
  auto started = startLocked(it->second, received);
  if (!started) return fail(started.error().wrap(fmt::format("start instance \"{}\"", name)));
  return started;
}

Result<json> InstanceManager::remove(const std::string& name, bool force) {
  StepClock clock;
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  const InstanceAction action = force ? InstanceAction::forceRemove : InstanceAction::remove;
  if (Status fits = checkAction(it->second.row.kind, it->second.state(), action, name); !fits)
    return fail(fits.error());
  // Held until the row is gone: a start, stop or exec meanwhile is refused rather than racing the kill.
  Rollback settle = holdInProgress(lock, it->second, action);
  InstanceDriver& driver = *it->second.driver;
  if (isActive(it->second.row.state)) {
    if (Status killed = driver.kill(*it->second.handle, name, lock); !killed)
      return fail(killed.error().wrap(fmt::format("remove \"{}\"", name)));
    if (auto waited = waitStopped(lock, name, driver.settleTimeout()); !waited) return fail(waited.error());
    clock.mark("kill and end");
    it = instances_.find(name);
    if (it == instances_.end()) return json{{"deleted", {{"name", name}, {"state", "removed"}}}};
  }
  auto deleted = dropStopped(it, &clock);
  if (!deleted) return fail(deleted.error());
  releaseNicsOf({name});
  clock.mark("NIC");
  log::info("instance \"{}\" removed in {:.1f} ms: {}", name, clock.totalMs(), clock.text());
  return json{{"deleted", std::move(*deleted)}};
}

Result<std::vector<Result<json>>> InstanceManager::removeMany(const std::vector<std::string>& names,
                                                              bool force) {
  if (names.empty()) return fail(invalidField("names", "give at least one instance name"));
  std::map<std::string_view, size_t> seen;
  for (size_t i = 0; i < names.size(); ++i) {
    const std::string field = fmt::format("names[{}]", i);
    if (Status valid = schema::validateName(names[i], field); !valid) return fail(valid.error());
    if (auto [first, fresh] = seen.emplace(names[i], i); !fresh)
      return fail(invalidField(field, "\"{}\" is given twice (also names[{}])", names[i], first->second));
  }
  const InstanceAction action = force ? InstanceAction::forceRemove : InstanceAction::remove;
  std::vector<Result<json>> results(names.size());
  std::unique_lock lock(mutex_);
  // Each one that fits its state is held as being removed until its row is gone (as in remove()).
  std::vector<Rollback> settles;
  std::vector<size_t> going;
  std::vector<std::string> active;
  for (size_t i = 0; i < names.size(); ++i) {
    auto it = instances_.find(names[i]);
    if (it == instances_.end()) {
      results[i] = fail(notFound("instance \"{}\" not found", names[i]));
      continue;
    }
    if (Status fits = checkAction(it->second.row.kind, it->second.state(), action, names[i]); !fits) {
      results[i] = fail(fits.error());
      continue;
    }
    settles.push_back(holdInProgress(lock, it->second, action));
    going.push_back(i);
    if (isActive(it->second.row.state)) active.push_back(names[i]);
  }
  std::vector<Status> killed = killInParallel(lock, active);
  std::map<std::string_view, Error> killErrors;
  for (size_t k = 0; k < active.size(); ++k) {
    if (!killed[k]) killErrors.emplace(active[k], killed[k].error());
  }
  std::vector<std::string> removed;
  for (size_t i : going) {
    const std::string& name = names[i];
    if (auto error = killErrors.find(name); error != killErrors.end()) {
      results[i] = fail(error->second.wrap(fmt::format("remove \"{}\"", name)));
      continue;
    }
    auto it = instances_.find(name);
    if (it != instances_.end() && isActive(it->second.row.state)) {
      // Killed with the others: its end is reported by its driver's watcher.
      if (auto waited = waitStopped(lock, name, it->second.driver->settleTimeout()); !waited) {
        results[i] = fail(waited.error());
        continue;
      }
      it = instances_.find(name);
    }
    if (it == instances_.end()) {  // run with --rm: its end removed it
      results[i] = json{{"deleted", {{"name", name}, {"state", "removed"}}}};
      continue;
    }
    auto deleted = dropStopped(it);
    if (!deleted) {
      results[i] = fail(deleted.error());
      continue;
    }
    results[i] = json{{"deleted", std::move(*deleted)}};
    removed.push_back(name);
  }
  releaseNicsOf(removed);
  return results;
}

std::vector<Status> InstanceManager::killInParallel(std::unique_lock<std::mutex>& lock,
                                                    const std::vector<std::string>& names) {
  // A container's kill freezes its cgroup and polls until it is frozen and empty (5-10 ms steps), a VM's
  // destroys its domain: each waits on its own, so a few at once take the time of the slowest.
  constexpr size_t kMaxKillers = 8;
  std::vector<Status> statuses(names.size());
  if (names.empty()) return statuses;
  lock.unlock();
  std::atomic<size_t> next{0};
  auto killSome = [&] {
    for (size_t i = next++; i < names.size(); i = next++) {
      std::unique_lock own(mutex_);
      auto it = instances_.find(names[i]);
      if (it == instances_.end() || !isActive(it->second.row.state)) continue;
      statuses[i] = it->second.driver->kill(*it->second.handle, names[i], own);
    }
  };
  {
    std::vector<std::jthread> killers;
    try {
      for (size_t k = 1; k < std::min(kMaxKillers, names.size()); ++k) killers.emplace_back(killSome);
    } catch (const std::system_error& e) {
      log::warn("removing {} instances: fewer threads to kill them ({}); the others do the rest",
                names.size(), e.what());
    }
    killSome();
  }  // the killers are joined here
  lock.lock();
  return statuses;
}

Result<json> InstanceManager::dropStopped(std::map<std::string, Instance, std::less<>>::iterator it,
                                          StepClock* clock) {
  auto mark = [clock](const char* step) {
    if (clock) clock->mark(step);
  };
  const std::string name = it->first;
  InstanceDriver& driver = *it->second.driver;
  // The port guard's counters are not read for an instance that goes (an nft listing of its VPC's whole
  // namespace: the cost would grow with the VPC).
  json deleted = render(it->second, networkJson(it->second, Counters::skipped));
  mark("render");
  // Whatever the row says, nothing of the instance may outlive it: a crash may have left a process, cgroups,
  // a mount or a domain that no record names.
  if (auto cleared = driver.clearLeftovers(name); !cleared) {
    return fail(cleared.error().wrap(fmt::format("remove instance \"{}\"", name)));
  } else if (!cleared->empty()) {
    log::warn("remove instance \"{}\": it was not running, yet {}", name, *cleared);
  }
  mark("leftovers");
  if (auto removed = driver.removeDirectory(name); !removed)
    return fail(removed.error().wrap(fmt::format("remove instance \"{}\"", name)));
  mark("files");
  CORRAL_FAILPOINT("rm.after-bundle-removed");
  if (auto dropped = store_.deleteInstance(name); !dropped)
    return fail(dropped.error().wrap(fmt::format("remove instance \"{}\"", name)));
  mark("store");
  driver.release(it->second.row);
  instances_.erase(it);
  ++revision_;
  mark("release");
  return deleted;
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
  // A VM's log is in a directory its (unprivileged) QEMU owns: never followed through a link, nor read
  // unless it is a regular file.
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (fd) {
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
      return fail(internalError("log \"{}\" is not a regular file", path));
    size = st.st_size;
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
  return it->second.driver->exec(*it->second.handle, it->second.row, lock, command, env);
}

Result<std::unique_ptr<StdioSession>> InstanceManager::execInteractive(const std::string& name,
                                                                       const StdioRequest& request) {
  if (!request.command.empty() && request.command.front().empty())
    return fail(invalidField("command", "the program to run is empty"));
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  if (Status fits = checkAction(it->second.row.kind, it->second.state(), InstanceAction::exec, name); !fits)
    return fail(fits.error());
  return it->second.driver->execInteractive(*it->second.handle, it->second.row, lock, request);
}

Result<std::unique_ptr<StdioSession>> InstanceManager::attachConsole(const std::string& name) {
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  if (it->second.state() != InstanceState::running)
    return fail(conflict("instance \"{}\" is {}, not running: it has no console to attach to", name,
                         instanceStateName(it->second.state())));
  return it->second.driver->attachConsole(*it->second.handle, it->second.row, lock);
}

Result<UniqueFd> InstanceManager::openNetworkNamespace(const std::string& name, std::string_view field) {
  std::lock_guard lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  const Instance& instance = it->second;
  if (instance.row.kind != schema::InstanceKind::container) {
    return fail(
        invalidField(std::string(field),
                     "instance \"{}\" is a VM: its network stack is its guest's own kernel, which "
                     "corrald cannot send a probe from or listen in; --verify works between containers",
                     name));
  }
  if (instance.state() != InstanceState::running || !instance.row.pid) {
    return fail(conflict("instance \"{}\" is {}: a probe needs it running", name,
                         instanceStateName(instance.state())));
  }
  // The driver holds the container's pidfd while it runs, so the pid names no other process.
  const std::string path = fmt::format("/proc/{}/ns/net", *instance.row.pid);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd && errno == ENOENT) {
    // Its init has ended and is not reaped yet (a zombie has no namespaces): it is no longer running.
    return fail(conflict("instance \"{}\": its program has ended: a probe needs it running", name));
  }
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  return fd;
}

Result<json> InstanceManager::waitForPort(const std::string& name, uint16_t port,
                                          std::chrono::milliseconds timeout) {
  using std::chrono::duration;
  const auto asked = Clock::now();
  const auto deadline = asked + timeout;
  std::unique_lock lock(mutex_);
  auto it = instances_.find(name);
  if (it == instances_.end()) return fail(notFound("instance \"{}\" not found", name));
  if (it->second.state() != InstanceState::starting && it->second.state() != InstanceState::running) {
    return fail(conflict("instance \"{}\" is {}: nothing of it listens on port {}", name,
                         instanceStateName(it->second.state()), port));
  }
  if (!network_)
    return fail(unavailable("the network is not managed by this service: no path to \"{}\"", name));
  auto path = network_->routerPathTo(name);
  if (!path) return fail(path.error());
  const std::optional<RunId> run = it->second.run;
  const std::optional<Clock::time_point> received = it->second.startReceived;
  lock.unlock();

  // Each attempt waits at most this long for an answer: a guest whose network is not up yet answers
  // nothing (no ARP reply), while a closed port answers at once with a reset.
  constexpr auto kAttemptTimeout = std::chrono::milliseconds(200);
  // Between attempts: the resolution of the answer, small next to a container's ~10 ms start.
  constexpr auto kPause = std::chrono::milliseconds(5);
  int64_t attempts = 0;
  while (true) {
    ++attempts;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto attemptTimeout = std::clamp(left, std::chrono::milliseconds(1), kAttemptTimeout);
    auto connected = net::tcpConnectsInNetns(path->netns, path->address, port, attemptTimeout);
    auto at = Clock::now();
    if (!connected)
      return fail(connected.error().wrap(fmt::format("connecting to {}:{}", path->address, port)));
    if (*connected) {
      return json{
          {"instance", name},
          {"address", path->address},
          {"port", port},
          {"from", fmt::format("router namespace {}", path->netns)},
          {"ready_ms", received ? json(duration<double, std::milli>(at - *received).count()) : json(nullptr)},
          {"waited_ms", duration<double, std::milli>(at - asked).count()},
          {"attempts", attempts}};
    }
    lock.lock();
    it = instances_.find(name);
    if (it == instances_.end() || it->second.run != run ||
        (it->second.state() != InstanceState::starting && it->second.state() != InstanceState::running)) {
      std::string now =
          it == instances_.end() ? "removed" : std::string(instanceStateName(it->second.state()));
      if (it != instances_.end() && it->second.row.exitReason)
        now += fmt::format(" ({})", exitReasonName(*it->second.row.exitReason));
      return fail(conflict("instance \"{}\" is {}: it ended before port {} answered", name, now, port));
    }
    lock.unlock();
    if (Clock::now() >= deadline) {
      return fail(
          unavailable("port {} of instance \"{}\" ({}) did not accept a connection within {} s ({} attempts)",
                      port, name, path->address, duration<double>(timeout).count(), attempts));
    }
    std::this_thread::sleep_for(kPause);
  }
}

}  // namespace corral::daemon
