// The instance transition table, every state × action × kind: which requests fit, and that each refusal is
// a Conflict (409) naming the instance and its state.
#include "daemon/lifecycle.h"

#include <gtest/gtest.h>

#include <set>
#include <tuple>

namespace corral::daemon {
namespace {

using schema::InstanceKind;
using S = InstanceState;
using A = InstanceAction;

// What fits, written out by hand: anything not listed here must be refused.
const std::set<std::tuple<InstanceKind, S, A>> kAllowed = {
    // containers
    {InstanceKind::container, S::stopped, A::start},
    {InstanceKind::container, S::running, A::stop},
    {InstanceKind::container, S::created, A::remove},
    {InstanceKind::container, S::stopped, A::remove},
    {InstanceKind::container, S::created, A::forceRemove},
    {InstanceKind::container, S::starting, A::forceRemove},
    {InstanceKind::container, S::running, A::forceRemove},
    {InstanceKind::container, S::stopped, A::forceRemove},
    {InstanceKind::container, S::running, A::exec},
    // VMs: also stoppable (and force-removable) while their guest boots
    {InstanceKind::vm, S::stopped, A::start},
    {InstanceKind::vm, S::starting, A::stop},
    {InstanceKind::vm, S::running, A::stop},
    {InstanceKind::vm, S::running, A::save},
    {InstanceKind::vm, S::created, A::remove},
    {InstanceKind::vm, S::stopped, A::remove},
    {InstanceKind::vm, S::created, A::forceRemove},
    {InstanceKind::vm, S::starting, A::forceRemove},
    {InstanceKind::vm, S::running, A::forceRemove},
    {InstanceKind::vm, S::stopped, A::forceRemove},
    {InstanceKind::vm, S::running, A::exec},
};

TEST(Lifecycle, EveryStateActionAndKind) {
  int refusals = 0;
  for (InstanceKind kind : {InstanceKind::container, InstanceKind::vm}) {
    for (S state : kAllInstanceStates) {
      for (A action : kAllInstanceActions) {
        SCOPED_TRACE(fmt::format("{} {} {}", schema::instanceKindName(kind), instanceStateName(state),
                                 instanceActionName(action)));
        Status checked = checkAction(kind, state, action, "web-1");
        if (kAllowed.contains({kind, state, action})) {
          EXPECT_TRUE(checked.has_value()) << checked.error().message();
          continue;
        }
        ++refusals;
        ASSERT_FALSE(checked.has_value());
        if (kind == InstanceKind::container && action == A::save) {
          // The request, not the state, is wrong: a container has no VM state to save.
          EXPECT_EQ(checked.error().kind(), ErrorKind::InvalidArgument);
          EXPECT_EQ(checked.error().field(), "save");
        } else {
          EXPECT_EQ(checked.error().kind(), ErrorKind::Conflict);
        }
        EXPECT_NE(checked.error().message().find("instance \"web-1\""), std::string::npos)
            << checked.error().message();
      }
    }
  }
  EXPECT_EQ(refusals, 2 * 6 * 6 - static_cast<int>(kAllowed.size()));
}

TEST(Lifecycle, RefusalsSayWhatToDo) {
  auto message = [](InstanceKind kind, S state, A action) {
    return checkAction(kind, state, action, "web").error().message();
  };
  EXPECT_EQ(message(InstanceKind::container, S::running, A::start),
            "instance \"web\" is running; only a stopped instance can be started");
  EXPECT_EQ(message(InstanceKind::container, S::stopped, A::stop),
            "instance \"web\" is stopped, not running");
  EXPECT_EQ(message(InstanceKind::vm, S::stopping, A::stop), "instance \"web\" is already stopping");
  EXPECT_EQ(message(InstanceKind::container, S::running, A::remove),
            "instance \"web\" is running; stop it first or remove it with force");
  EXPECT_EQ(message(InstanceKind::vm, S::starting, A::exec),
            "instance \"web\" is starting; wait until its guest is ready");
  EXPECT_EQ(message(InstanceKind::container, S::stopping, A::forceRemove),
            "instance \"web\" is stopping; remove it once it has stopped");
  EXPECT_EQ(message(InstanceKind::vm, S::stopped, A::save),
            "instance \"web\" is stopped, not running: only a running VM can be saved");
  EXPECT_EQ(message(InstanceKind::container, S::running, A::save),
            "instance \"web\" is a container; only a VM's state and memory can be saved");
  // A removal in progress owns the instance: everything else is refused, a second removal too.
  for (A action : kAllInstanceActions) {
    if (action == A::save) continue;  // a container's save is refused for its kind first
    EXPECT_EQ(message(InstanceKind::container, S::removing, action), "instance \"web\" is being removed");
  }
}

TEST(Lifecycle, OnlySettledStatesAreStored) {
  for (S state : kAllInstanceStates) {
    auto parsed = parseStoredInstanceState(instanceStateName(state));
    bool settled = state != S::stopping && state != S::removing;
    EXPECT_EQ(parsed.has_value(), settled) << instanceStateName(state);
    if (settled) {
      EXPECT_EQ(*parsed, state);
    }
  }
  EXPECT_FALSE(parseStoredInstanceState("exited").has_value());
}

TEST(Lifecycle, ExitReasonsRoundTripThroughTheirText) {
  std::set<std::string_view> names;
  for (ExitReason reason : kAllExitReasons) {
    std::string_view name = exitReasonName(reason);
    EXPECT_TRUE(names.insert(name).second) << name << " names two reasons";
    auto parsed = parseExitReason(name);
    ASSERT_TRUE(parsed) << parsed.error().message();
    EXPECT_EQ(*parsed, reason) << name;
  }
  // The store's and the API's spellings (docs/api.md "exit_reason"), unchanged by the enum.
  EXPECT_EQ(names,
            (std::set<std::string_view>{"exited", "signaled", "oom-killed", "stopped", "lost", "shutdown",
                                        "crashed", "destroyed", "failed", "other", "boot-timeout"}));
}

TEST(Lifecycle, AnUnknownExitReasonIsRefusedNamingTheField) {
  for (std::string_view text : {"", "oomKilled", "Exited", "exited ", "killed"}) {
    auto parsed = parseExitReason(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(parsed.error().field(), "exit_reason");
    EXPECT_NE(parsed.error().message().find("is not an exit reason"), std::string::npos)
        << parsed.error().message();
  }
}

TEST(Lifecycle, LongRequestsHoldAnInProgressState) {
  EXPECT_EQ(inProgressState(A::stop), S::stopping);
  EXPECT_EQ(inProgressState(A::forceRemove), S::removing);
  EXPECT_EQ(inProgressState(A::start), std::nullopt);
  EXPECT_EQ(inProgressState(A::exec), std::nullopt);
}

}  // namespace
}  // namespace corral::daemon
