// A driver for InstanceManager's unit tests (daemon/driver.h): no process, no domain. It records every call
// and the effects it holds (directories, runs, reservations), fails at any named step when told, can hold a
// step until the test releases it, and reports ends and readiness when the test says so.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "daemon/driver.h"

namespace corral::daemon::testing {

class FakeDriver final : public InstanceDriver {
 public:
  // Steps that can fail or block: configure, preflight, reserve, start, start.after-plug (after the NIC
  // went in), stop, kill, exec, clear-leftovers, remove-directory.
  std::set<std::string> failAt;
  std::string blockAt;
  bool startsStarting = false;    // a VM's way: "starting" until ready()
  bool recordsStarting = true;    // recordsStartingFirst()
  std::set<std::string> adopts;   // recover() finds these still running
  std::set<std::string> invalid;  // configure() refuses these names
  std::string settledMachine;     // settleSpec() writes it into a new spec's machine (a VM driver's choice)

  // What the fake holds, and what it was told.
  mutable std::mutex mutex;
  std::vector<std::string> calls;     // "start web", ...
  std::set<std::string> directories;  // made by start, gone with removeDirectory
  std::map<std::string, RunId> runs;  // started or adopted and not ended
  std::set<std::string> reserved;     // reserve() .. release()
  std::set<std::string> plugged;      // NICs plugged in by a start
  std::set<std::string> reconciledActive, reconciledAll;
  mutable int usageReads = 0;  // readUsage() calls
  mutable int describes = 0;   // describe() calls: one per rendering of an instance
  // When set: sampledUsage() offers a background sample of every running instance, taken then.
  std::optional<std::chrono::steady_clock::time_point> sampleAt;

  ~FakeDriver() override = default;

  // ---- The test's controls ----
  // The instance's run ends by itself (reported as a driver's thread would, without the manager's lock).
  void exit(const std::string& name, int64_t code) {
    RunId run = takeRun(name);
    InstanceEnding ending = InstanceEnding::because(ExitReason::exited);
    ending.exitCode = code;
    if (run != 0) events_->instanceEnded(name, run, std::move(ending));
  }
  // An end of `run` as the driver saw it (the run may be an earlier one).
  void reportEnd(const std::string& name, RunId run, InstanceEnding ending) {
    {
      std::lock_guard lock(mutex);
      if (auto it = runs.find(name); it != runs.end() && it->second == run) runs.erase(it);
    }
    events_->instanceEnded(name, run, std::move(ending));
  }
  void ready(const std::string& name) {
    RunId run = runOf(name);
    events_->instanceReady(name, run, {{"total_ms", 1.0}, {"guest_kernel", "fake"}});
  }
  // The kernel OOM-killed processes in its cgroup: `count` since its start, as the driver's watcher reports.
  void oomKills(const std::string& name, int64_t count) { events_->instanceOomKills(name, runOf(name), count); }
  RunId runOf(const std::string& name) const {
    std::lock_guard lock(mutex);
    auto it = runs.find(name);
    return it == runs.end() ? 0 : it->second;
  }
  bool called(const std::string& call) const {
    std::lock_guard lock(mutex);
    return std::find(calls.begin(), calls.end(), call) != calls.end();
  }
  // Waits (at most 10 s) until a blocked step was entered; then release() lets it go on.
  [[nodiscard]] bool waitBlocked() {
    std::unique_lock lock(mutex);
    return changed_.wait_for(lock, std::chrono::seconds(10), [&] { return blocked_; });
  }
  void release() {
    std::lock_guard lock(mutex);
    released_ = true;
    changed_.notify_all();
  }

  // ---- InstanceDriver ----
  void bind(InstanceEvents& events) override { events_ = &events; }
  void shutdown() override { note("shutdown"); }
  std::filesystem::path directory(const std::string& name) const override {
    return std::filesystem::path("/nonexistent/corral-fake") / name;
  }
  std::unique_ptr<InstanceHandle> newHandle() override { return std::make_unique<Handle>(); }
  Status configure(InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow*) override {
    if (Status ok = step("configure", spec.name); !ok) return ok;
    if (invalid.contains(spec.name)) return fail(invalidField("image", "the fake refuses \"{}\"", spec.name));
    static_cast<Handle&>(handle).configured = true;
    return {};
  }
  void settleSpec(const InstanceHandle&, schema::InstanceSpec& spec) const override {
    if (!settledMachine.empty()) spec.machine = settledMachine;
  }
  Status preflight(const schema::InstanceSpec& spec) override { return step("preflight", spec.name); }
  bool recordsStartingFirst() const override { return recordsStarting; }
  Status reserve(InstanceHandle&, const schema::InstanceSpec&, InstanceRow& row) override {
    if (Status ok = step("reserve", row.name); !ok) return ok;
    std::lock_guard lock(mutex);
    reserved.insert(row.name);
    return {};
  }
  void release(const InstanceRow& row) override {
    note("release " + row.name);
    std::lock_guard lock(mutex);
    reserved.erase(row.name);
  }
  Result<StartedRun> start(InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow& row,
                           NicPort* nic, std::chrono::steady_clock::time_point) override {
    if (!static_cast<Handle&>(handle).configured) {
      if (Status configured = configure(handle, spec, &row); !configured) return fail(configured.error());
    }
    if (Status ok = step("start", row.name); !ok) return fail(ok.error());
    {
      std::lock_guard lock(mutex);
      directories.insert(row.name);
    }
    if (nic) {
      if (Status in = nic->plugIntoProcess(4242); !in) return fail(in.error());
      std::lock_guard lock(mutex);
      plugged.insert(row.name);
    }
    if (Status ok = step("start.after-plug", row.name); !ok) return fail(ok.error());
    RunId run = nextRunId();
    {
      std::lock_guard lock(mutex);
      runs[row.name] = run;
    }
    StartedRun started;
    started.run = run;
    started.state = startsStarting ? InstanceState::starting : InstanceState::running;
    started.pid = 4242;
    started.boot = {{"total_ms", 0.5}};
    started.undo = Rollback([this, name = row.name] {
      note("undo " + name);
      takeRun(name);
    });
    return started;
  }
  void supervise(InstanceHandle&, const std::string& name) override { note("supervise " + name); }
  void forgetRun(InstanceHandle&) override {}
  Status stop(InstanceHandle&, const std::string& name, std::unique_lock<std::mutex>& lock,
              std::chrono::seconds) override {
    lock.unlock();
    Status ok = step("stop", name);
    if (ok) exit(name, 143);  // a SIGTERM'd process's exit, read as "stopped" since the stop asked
    lock.lock();
    return ok;
  }
  Status kill(InstanceHandle&, const std::string& name, std::unique_lock<std::mutex>& lock) override {
    lock.unlock();
    Status ok = step("kill", name);
    if (ok) exit(name, 137);
    lock.lock();
    return ok;
  }
  std::chrono::milliseconds settleTimeout() const override { return std::chrono::milliseconds(2000); }
  Result<nlohmann::json> exec(InstanceHandle&, const InstanceRow& row, std::unique_lock<std::mutex>& lock,
                              const std::vector<std::string>& command,
                              const std::vector<std::string>&) override {
    lock.unlock();
    if (Status ok = step("exec", row.name); !ok) return fail(ok.error());
    return nlohmann::json{{"exit_code", 0}, {"stdout", command.front()}};
  }
  Result<std::string> clearLeftovers(const std::string& name) override {
    if (Status ok = step("clear-leftovers", name); !ok) return fail(ok.error());
    return std::string();
  }
  Status removeDirectory(const std::string& name) override {
    if (Status ok = step("remove-directory", name); !ok) return ok;
    std::lock_guard lock(mutex);
    directories.erase(name);
    return {};
  }
  Recovery recover(InstanceHandle&, InstanceRow& row) override {
    note("recover " + row.name);
    Recovery recovery;
    const bool active = row.state == InstanceState::running || row.state == InstanceState::starting;
    if (active && adopts.contains(row.name)) {
      recovery.run = nextRunId();
      std::lock_guard lock(mutex);
      runs[row.name] = *recovery.run;
      return recovery;
    }
    if (active || row.state == InstanceState::created) {
      markLost(row, "the fake found it gone");
      recovery.rowChanged = true;
    }
    return recovery;
  }
  void reconcile(const std::set<std::string>& active, const std::set<std::string>& all) override {
    std::lock_guard lock(mutex);
    reconciledActive = active;
    reconciledAll = all;
  }
  void replugNic(InstanceHandle&, const InstanceRow& row, NicPort&) override { note("replug " + row.name); }
  // Counts its reads (usageReads): what a listing costs the kernel.
  nlohmann::json readUsage(const InstanceHandle&, const InstanceRow& row) const override {
    std::lock_guard lock(mutex);
    ++usageReads;
    if (row.state != InstanceState::running) return nullptr;
    return {{"memory_bytes", 1000 + usageReads}, {"source", "fake"}};
  }
  std::optional<UsageSample> sampledUsage(const InstanceHandle&, const InstanceRow& row) const override {
    std::lock_guard lock(mutex);
    if (!sampleAt || row.state != InstanceState::running) return std::nullopt;
    return UsageSample{.value = {{"memory_bytes", 77}, {"source", "fake sample"}}, .at = *sampleAt};
  }
  void describe(const InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow&,
                const nlohmann::json&, nlohmann::json& out) const override {
    {
      std::lock_guard lock(mutex);
      ++describes;
    }
    out["command"] = spec.command;
    out["configured"] = static_cast<const Handle&>(handle).configured;
  }

 private:
  struct Handle : InstanceHandle {
    bool configured = false;
  };
  void note(std::string call) {
    std::lock_guard lock(mutex);
    calls.push_back(std::move(call));
  }
  RunId takeRun(const std::string& name) {
    std::lock_guard lock(mutex);
    auto it = runs.find(name);
    if (it == runs.end()) return 0;
    RunId run = it->second;
    runs.erase(it);
    return run;
  }
  // Records the call, blocks there if told (until release()), fails there if told.
  Status step(const std::string& what, const std::string& name) {
    note(what + " " + name);
    if (blockAt == what) {
      std::unique_lock lock(mutex);
      blocked_ = true;
      changed_.notify_all();
      changed_.wait(lock, [&] { return released_; });
    }
    if (failAt.contains(what)) return fail(internalError("the fake fails at {}", what));
    return {};
  }

  InstanceEvents* events_ = nullptr;
  std::condition_variable changed_;
  bool blocked_ = false;
  bool released_ = false;
};

}  // namespace corral::daemon::testing
