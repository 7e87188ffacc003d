// A guard that undoes one host-side effect (a veth, a cgroup directory, a mount) unless dismissed once the
// whole operation succeeded, so a failure halfway leaves nothing behind.
#pragma once

#include <functional>
#include <utility>

namespace corral {

class Rollback {
 public:
  explicit Rollback(std::function<void()> undo) : undo_(std::move(undo)) {}
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() {
    if (undo_) undo_();
  }
  void dismiss() { undo_ = nullptr; }

 private:
  std::function<void()> undo_;
};

}  // namespace corral
