// A VM engine's stop events (vmm/hypervisor.h DomainStopped), recorded from its event thread and waited for
// by the engine tests (vmm_test.cc for libvirt, qemu_engine_test.cc for the direct engine).
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "vmm/hypervisor.h"

namespace corral::testing {

class StopRecorder {
 public:
  void record(const vmm::DomainStopped& stopped) {
    std::lock_guard lock(mutex_);
    stops_.push_back(stopped);
    changed_.notify_all();
  }
  // The reason the last stop of `name` gave, once one came within `timeout`.
  std::optional<vmm::StopReason> waitFor(const std::string& name, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex_);
    std::optional<vmm::StopReason> reason;
    changed_.wait_for(lock, timeout, [&] {
      for (const auto& stop : stops_)
        if (stop.domainName == name) reason = stop.reason;
      return reason.has_value();
    });
    return reason;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<vmm::DomainStopped> stops_;
};

}  // namespace corral::testing
