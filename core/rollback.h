// A guard that undoes one host-side effect (a veth, a cgroup directory, a mount, a stored row) unless
// dismissed once the whole operation succeeded, so a failure halfway leaves nothing behind. Create it right
// after the effect succeeded; guards made in order undo in reverse order, as their scope ends.
#pragma once

#include <functional>
#include <utility>

namespace corral {

class Rollback {
 public:
  explicit Rollback(std::function<void()> undo) : undo_(std::move(undo)) {}
  // Moved: the undo goes with it (a function hands its caller an effect to keep or undo).
  Rollback(Rollback&& other) noexcept : undo_(std::exchange(other.undo_, nullptr)) {}
  Rollback& operator=(Rollback&& other) noexcept {
    if (this != &other) {
      run();
      undo_ = std::exchange(other.undo_, nullptr);
    }
    return *this;
  }
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() { run(); }
  void dismiss() { undo_ = nullptr; }
  // Undoes now (once) instead of at the end of the scope.
  void run() {
    if (auto undo = std::exchange(undo_, nullptr)) undo();
  }

 private:
  std::function<void()> undo_;
};

}  // namespace corral
