// A QMP client (QEMU's JSON monitor protocol) on a unix socket: the greeting, qmp_capabilities, commands
// with a deadline, and the asynchronous events QEMU sends in between. One client per connection, used by
// one thread at a time; the direct engine (vmm/qemu.h) keeps one connection for events and opens another
// for each command.
#pragma once

#include <chrono>
#include <deque>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::vmm {

struct QmpEvent {
  std::string name;     // "SHUTDOWN", "RESET", "STOP", ...
  nlohmann::json data;  // the event's "data" (an object; empty when it has none)
};

class QmpClient {
 public:
  // Connects (no retry: the direct engine retries while QEMU starts, vmm/qemu.cc), reads the greeting and
  // negotiates capabilities. ErrorKind::Unavailable when QEMU does not answer by `deadline`.
  static Result<QmpClient> connect(const std::filesystem::path& socket,
                                   std::chrono::steady_clock::time_point deadline);
  // The same on a stream socket that is already connected (tests use a socketpair).
  static Result<QmpClient> fromConnected(UniqueFd fd, std::chrono::steady_clock::time_point deadline);

  // Runs `command` with `arguments` (an object, or null for none) and returns its "return" value; a QMP
  // error is ErrorKind::Internal "qmp COMMAND: CLASS: DESC". Events read meanwhile are kept for nextEvent().
  // `passFd` (>= 0) goes along as SCM_RIGHTS, for getfd.
  Result<nlohmann::json> execute(std::string_view command, const nlohmann::json& arguments,
                                 std::chrono::steady_clock::time_point deadline, int passFd = -1);
  // The next event (kept ones first); ErrorKind::Unavailable when the deadline passes or QEMU closes the
  // socket (closed() tells which).
  Result<QmpEvent> nextEvent(std::chrono::steady_clock::time_point deadline);
  bool closed() const { return closed_; }
  int fd() const { return fd_.get(); }                          // to poll for readability beside other fds
  const nlohmann::json& greeting() const { return greeting_; }  // {"version":..., "capabilities":...}

 private:
  explicit QmpClient(UniqueFd fd) : fd_(std::move(fd)) {}
  Status handshake(std::chrono::steady_clock::time_point deadline);
  // The next JSON message (one per line, as QEMU writes them).
  Result<nlohmann::json> readMessage(std::chrono::steady_clock::time_point deadline);
  UniqueFd fd_;
  std::string buffer_;
  std::deque<QmpEvent> events_;
  nlohmann::json greeting_;
  int64_t nextId_ = 1;
  bool closed_ = false;
};

}  // namespace corral::vmm
