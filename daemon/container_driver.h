// Containers as instances (daemon/driver.h): the runtime (container/runtime.h) starts them, one thread
// watches every running container's pidfd and reads its cgroup's OOM kills, and after a daemon restart a
// container still running (same pid and start time) is adopted by pidfd and cgroup name.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "container/id_ranges.h"
#include "container/spec.h"
#include "core/unique_fd.h"
#include "daemon/driver.h"
#include "daemon/image_launch.h"

namespace corral::daemon {

class UsageFileBudget;  // container_driver.cc

class ContainerDriver final : public InstanceDriver {
 public:
  explicit ContainerDriver(InstanceOptions options);
  ~ContainerDriver() override;

  void bind(InstanceEvents& events) override;
  void shutdown() override;
  std::filesystem::path directory(const std::string& name) const override;
  std::unique_ptr<InstanceHandle> newHandle() override;
  Status configure(InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow* row) override;
  Status preflight(const schema::InstanceSpec&) override { return {}; }
  bool recordsStartingFirst() const override { return true; }
  Status reserve(InstanceHandle& handle, const schema::InstanceSpec& spec, InstanceRow& row) override;
  void release(const InstanceRow& row) override;
  Result<StartedRun> start(InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow& row,
                           NicPort* nic, std::chrono::steady_clock::time_point received) override;
  void supervise(InstanceHandle& handle, const std::string& name) override;
  void forgetRun(InstanceHandle& handle) override;
  Status stop(InstanceHandle& handle, const std::string& name, std::unique_lock<std::mutex>& lock,
              std::chrono::seconds grace) override;
  Status kill(InstanceHandle& handle, const std::string& name, std::unique_lock<std::mutex>& lock) override;
  std::chrono::milliseconds settleTimeout() const override { return std::chrono::seconds(10); }
  Result<nlohmann::json> exec(InstanceHandle& handle, const InstanceRow& row,
                              std::unique_lock<std::mutex>& lock, const std::vector<std::string>& command,
                              const std::vector<std::string>& env) override;
  Result<std::unique_ptr<StdioSession>> execInteractive(InstanceHandle& handle, const InstanceRow& row,
                                                        std::unique_lock<std::mutex>& lock,
                                                        const StdioRequest& request) override;
  Result<std::unique_ptr<StdioSession>> attachConsole(InstanceHandle& handle, const InstanceRow& row,
                                                      std::unique_lock<std::mutex>& lock) override;
  Result<std::string> clearLeftovers(const std::string& name) override;
  Status removeDirectory(const std::string& name) override;
  Recovery recover(InstanceHandle& handle, InstanceRow& row) override;
  void reconcile(const std::set<std::string>& active, const std::set<std::string>& all) override;
  void replugNic(InstanceHandle& handle, const InstanceRow& row, NicPort& nic) override;
  nlohmann::json readUsage(const InstanceHandle& handle, const InstanceRow& row) const override;
  std::optional<UsageSample> sampledUsage(const InstanceHandle& handle,
                                          const InstanceRow& row) const override;
  // How often the watcher samples every running container's cgroup (usage and OOM kills).
  static constexpr std::chrono::seconds kUsageSampleEvery{1};
  void describe(const InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow& row,
                const nlohmann::json& usage, nlohmann::json& out) const override;

  struct Run;  // one start: its pid, pidfd and cgroup
  // A running container's usage as the watcher sampled it: numbers only (the JSON is made when a listing
  // asks, not for 500 containers every second).
  struct UsageReading {
    uint64_t memoryBytes = 0;
    uint64_t oomKills = 0;
    std::chrono::steady_clock::time_point at;  // empty: the read failed
  };

 private:
  // Where a container's root filesystem and limits come from: the spec validated against its image (a
  // built-in imageDir/IMAGE/rootfs, or a store image's layers and process config: daemon/image_launch.h),
  // its bundle directory and, with a user namespace, the row's id range.
  Result<container::ContainerConfig> toConfig(const schema::InstanceSpec& spec, const InstanceRow* row,
                                              ImageLaunch::Pin pin);
  std::optional<RunId> adopt(InstanceHandle& handle, InstanceRow& row);
  void watch();
  void wake();
  void watchPidfd(const Run& run);  // under watchMutex_
  InstanceEnding collectExit(const std::string& name, Run& run);
  void sampleUsage();
  std::filesystem::path asideDir() const;  // "<containers dir>.removed": bundles being deleted
  void deleteAside();

  InstanceOptions options_;
  InstanceEvents* events_ = nullptr;
  // Which image each container runs, and its pin (in corrald's one store, shared with VmDriver).
  ImageLaunch imageLaunch_{options_.imageStore};

  std::mutex idMutex_;
  container::IdRangeAllocator idRanges_;
  std::optional<Error> idPoolError_;  // the id files are unusable: user namespaces are refused

  // Shared by every running container's cgroup: how many more usage-file descriptors may be kept open.
  std::shared_ptr<UsageFileBudget> usageFileBudget_;

  // The watcher: the runs it polls (by run id), the eventfd that says the set changed.
  mutable std::mutex watchMutex_;
  std::map<RunId, std::pair<std::string, std::shared_ptr<Run>>> watched_;
  UniqueFd wake_;
  UniqueFd epoll_;  // the watcher's: wake_ and every watched run's pidfd
  // sampleUsage()'s buffers, reused every second (the watcher thread's own).
  std::vector<std::shared_ptr<Run>> sampleRuns_;
  std::vector<UsageReading> samples_;
  std::atomic<bool> quit_{false};
  std::thread watcher_;

  // Bundles set aside by removeDirectory(), deleted by the deleter thread.
  std::mutex asideMutex_;
  std::condition_variable asideWake_;
  std::deque<std::filesystem::path> aside_;
  bool asideQuit_ = false;
  std::atomic<uint64_t> asideCount_{0};
  std::thread deleter_;
};

}  // namespace corral::daemon
