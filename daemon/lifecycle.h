// An instance's lifecycle: its states, the requests that move it, and the one table that says which
// request fits which state. Every 409 an instance request gets for its state comes from checkAction().
// Pure: the manager (daemon/instances.cc) holds the states and asks the table.
#pragma once

#include <optional>
#include <string_view>

#include "core/error.h"
#include "schema/instance.h"

namespace corral::daemon {

// Settled states are stored and shown (created, starting, running, stopped). The in-progress ones
// (stopping, removing) are held in memory while a request works on the instance without the manager's
// lock; they are shown as the state they left, since a stop or a removal that fails leaves it there.
enum class InstanceState { created, starting, running, stopping, stopped, removing };
inline constexpr InstanceState kAllInstanceStates[] = {InstanceState::created, InstanceState::starting,
                                                       InstanceState::running, InstanceState::stopping,
                                                       InstanceState::stopped, InstanceState::removing};

// "created", "starting", ...: the text of the store's state column and the API's "state".
std::string_view instanceStateName(InstanceState state);
// A settled state's text back (the store's column); an in-progress state is never stored.
Result<InstanceState> parseStoredInstanceState(std::string_view text);

// Why an instance's last run ended: the store's exit_reason column and the API's "exit_reason"
// (docs/api.md). Containers end exited, signaled or oom-killed; VMs as libvirt says (shutdown, crashed,
// destroyed, failed, other) or boot-timeout; any instance stopped (asked for) or lost (ended unseen).
enum class ExitReason {
  exited,
  signaled,
  oomKilled,
  stopped,
  lost,
  shutdown,
  crashed,
  destroyed,
  failed,
  other,
  bootTimeout
};
inline constexpr ExitReason kAllExitReasons[] = {
    ExitReason::exited, ExitReason::signaled, ExitReason::oomKilled,  ExitReason::stopped,
    ExitReason::lost,   ExitReason::shutdown, ExitReason::crashed,    ExitReason::destroyed,
    ExitReason::failed, ExitReason::other,    ExitReason::bootTimeout};
std::string_view exitReasonName(ExitReason reason);  // "exited", "oom-killed", "boot-timeout", ...
// The store's text back; anything else is InvalidArgument naming "exit_reason".
Result<ExitReason> parseExitReason(std::string_view text);

// What a request asks of an existing instance. save: stop a VM by saving its state and memory (stop --save),
// so its next start resumes it.
enum class InstanceAction { start, stop, save, remove, forceRemove, exec };
inline constexpr InstanceAction kAllInstanceActions[] = {InstanceAction::start,       InstanceAction::stop,
                                                         InstanceAction::save,        InstanceAction::remove,
                                                         InstanceAction::forceRemove, InstanceAction::exec};
// "start", "stop", "stop --save", "rm", "rm --force", "exec"
std::string_view instanceActionName(InstanceAction action);

// The transition table: nothing when `action` fits an instance of `kind` in `state`, else a Conflict
// naming the instance, its state and what to do instead. A save asked of a container is InvalidArgument
// naming the field "save", in any state: only a VM has a state and memory to save.
Status checkAction(schema::InstanceKind kind, InstanceState state, InstanceAction action,
                   std::string_view name);

// The state `action` puts the instance in while it runs (stopping, removing), if any.
std::optional<InstanceState> inProgressState(InstanceAction action);

}  // namespace corral::daemon
