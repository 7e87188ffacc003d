// The instance transition table. One switch per action, so a reader sees at once which states it accepts
// and what a refusal says.
#include "daemon/lifecycle.h"

#include <fmt/format.h>

#include "core/text.h"

namespace corral::daemon {

using schema::InstanceKind;

std::string_view instanceStateName(InstanceState state) {
  switch (state) {
    case InstanceState::created:
      return "created";
    case InstanceState::starting:
      return "starting";
    case InstanceState::running:
      return "running";
    case InstanceState::stopping:
      return "stopping";
    case InstanceState::stopped:
      return "stopped";
    case InstanceState::removing:
      return "removing";
  }
  return "stopped";
}

Result<InstanceState> parseStoredInstanceState(std::string_view text) {
  for (InstanceState state :
       {InstanceState::created, InstanceState::starting, InstanceState::running, InstanceState::stopped}) {
    if (text == instanceStateName(state)) return state;
  }
  return fail(invalidField("state",
                           "\"{}\" is not a stored instance state (created, starting, running, stopped)",
                           terminalSafe(text)));
}

std::string_view exitReasonName(ExitReason reason) {
  switch (reason) {
    case ExitReason::exited:
      return "exited";
    case ExitReason::signaled:
      return "signaled";
    case ExitReason::oomKilled:
      return "oom-killed";
    case ExitReason::stopped:
      return "stopped";
    case ExitReason::lost:
      return "lost";
    case ExitReason::shutdown:
      return "shutdown";
    case ExitReason::crashed:
      return "crashed";
    case ExitReason::destroyed:
      return "destroyed";
    case ExitReason::failed:
      return "failed";
    case ExitReason::other:
      return "other";
    case ExitReason::bootTimeout:
      return "boot-timeout";
  }
  return "other";
}

Result<ExitReason> parseExitReason(std::string_view text) {
  std::string known;
  for (ExitReason reason : kAllExitReasons) {
    if (text == exitReasonName(reason)) return reason;
    known += fmt::format("{}{}", known.empty() ? "" : ", ", exitReasonName(reason));
  }
  return fail(invalidField("exit_reason", "\"{}\" is not an exit reason ({})", terminalSafe(text), known));
}

std::string_view instanceActionName(InstanceAction action) {
  switch (action) {
    case InstanceAction::start:
      return "start";
    case InstanceAction::stop:
      return "stop";
    case InstanceAction::save:
      return "stop --save";
    case InstanceAction::remove:
      return "rm";
    case InstanceAction::forceRemove:
      return "rm --force";
    case InstanceAction::exec:
      return "exec";
  }
  return "?";
}

std::optional<InstanceState> inProgressState(InstanceAction action) {
  switch (action) {
    case InstanceAction::stop:
    case InstanceAction::save:
      return InstanceState::stopping;
    case InstanceAction::forceRemove:
      return InstanceState::removing;
    case InstanceAction::start:
    case InstanceAction::remove:
    case InstanceAction::exec:
      return std::nullopt;
  }
  return std::nullopt;
}

Status checkAction(InstanceKind kind, InstanceState state, InstanceAction action, std::string_view name) {
  const bool vm = kind == InstanceKind::vm;
  const std::string_view is = instanceStateName(state);
  auto refuse = [&](std::string message) { return fail(Error(ErrorKind::Conflict, std::move(message))); };
  if (action == InstanceAction::save && !vm) {
    return fail(invalidField(
        "save", "instance \"{}\" is a container; only a VM's state and memory can be saved", name));
  }
  // A request that works outside the lock owns the instance until it is done.
  if (state == InstanceState::removing) {
    return refuse(fmt::format("instance \"{}\" is being removed", name));
  }
  switch (action) {
    case InstanceAction::start:
      if (state == InstanceState::stopped) return {};
      return refuse(fmt::format("instance \"{}\" is {}; only a stopped instance can be started", name, is));
    case InstanceAction::stop:
      if (state == InstanceState::running || (vm && state == InstanceState::starting)) return {};
      if (state == InstanceState::stopping)
        return refuse(fmt::format("instance \"{}\" is already stopping", name));
      return refuse(fmt::format("instance \"{}\" is {}, not running", name, is));
    case InstanceAction::save:
      if (state == InstanceState::running) return {};
      if (state == InstanceState::starting) {
        return refuse(fmt::format(
            "instance \"{}\" is starting; its state can be saved once its guest is ready (or stop it)",
            name));
      }
      if (state == InstanceState::stopping)
        return refuse(fmt::format("instance \"{}\" is already stopping", name));
      return refuse(
          fmt::format("instance \"{}\" is {}, not running: only a running VM can be saved", name, is));
    case InstanceAction::remove:
      if (state == InstanceState::stopped || state == InstanceState::created) return {};
      return refuse(fmt::format("instance \"{}\" is {}; stop it first or remove it with force", name, is));
    case InstanceAction::forceRemove:
      if (state == InstanceState::stopping) {
        return refuse(fmt::format("instance \"{}\" is stopping; remove it once it has stopped", name));
      }
      return {};
    case InstanceAction::exec:
      if (state == InstanceState::running) return {};
      if (vm && state == InstanceState::starting) {
        return refuse(fmt::format("instance \"{}\" is starting; wait until its guest is ready", name));
      }
      return refuse(fmt::format("instance \"{}\" is {}, not running", name, is));
  }
  return refuse(fmt::format("instance \"{}\": unknown request", name));
}

}  // namespace corral::daemon
