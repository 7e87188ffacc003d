// Trying a call again while it is refused for a passing reason (a store electing its leader, a member not
// yet healthy), within a time budget.
#pragma once

#include <chrono>
#include <thread>

#include "core/error.h"

namespace corral {

// Calls `attempt` (returning a Status or a Result) until it succeeds, its error is not `retryable`, or
// `budget` has passed, waiting `pause` between tries; returns the last try's result.
template <class Attempt, class Retryable>
auto retryWithin(std::chrono::milliseconds budget, std::chrono::milliseconds pause, Retryable retryable,
                 Attempt attempt) -> decltype(attempt()) {
  const auto deadline = std::chrono::steady_clock::now() + budget;
  auto result = attempt();
  while (!result && retryable(result.error()) && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(pause);
    result = attempt();
  }
  return result;
}

}  // namespace corral
