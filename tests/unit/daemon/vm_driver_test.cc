// The VM side's typed text: corrald --accelerator, the accelerator decision's state in GET /v1/info, and
// libvirt's stop reasons as exit reasons.
#include "daemon/vm_driver.h"

#include <gtest/gtest.h>

#include <set>
#include <string_view>

namespace corral::daemon {
namespace {

TEST(AcceleratorMode, NamesRoundTrip) {
  std::set<std::string_view> names;
  for (AcceleratorMode mode : {AcceleratorMode::automatic, AcceleratorMode::kvm, AcceleratorMode::tcg}) {
    names.insert(acceleratorModeName(mode));
    auto parsed = parseAcceleratorMode(acceleratorModeName(mode));
    ASSERT_TRUE(parsed) << parsed.error().message();
    EXPECT_EQ(*parsed, mode);
  }
  EXPECT_EQ(names, (std::set<std::string_view>{"auto", "kvm", "tcg"}));
  EXPECT_EQ(InstanceOptions{}.accelerator, AcceleratorMode::automatic);
}

TEST(AcceleratorMode, AnUnknownModeIsRefusedNamingTheOption) {
  for (std::string_view text : {"", "KVM", "automatic", "hvf"}) {
    auto parsed = parseAcceleratorMode(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(parsed.error().field(), "accelerator");
    EXPECT_NE(parsed.error().message().find("is not one of auto, kvm, tcg"), std::string::npos)
        << parsed.error().message();
  }
}

// Only rendered (GET /v1/info "accelerator.state"), never read back.
TEST(AcceleratorState, NamesAreTheInfoText) {
  EXPECT_EQ(acceleratorStateName(AcceleratorState::unknown), "unknown");
  EXPECT_EQ(acceleratorStateName(AcceleratorState::probing), "probing");
  EXPECT_EQ(acceleratorStateName(AcceleratorState::decided), "decided");
  EXPECT_EQ(AcceleratorStatus{}.state, AcceleratorState::unknown);
}

// A VM's end is recorded under libvirt's name for it, as before the enum.
TEST(ExitReason, EachLibvirtStopReasonIsTheExitReasonOfItsName) {
  for (vmm::StopReason reason : {vmm::StopReason::Shutdown, vmm::StopReason::Destroyed,
                                 vmm::StopReason::Crashed, vmm::StopReason::Failed, vmm::StopReason::Other}) {
    EXPECT_EQ(exitReasonName(exitReasonOf(reason)), vmm::stopReasonName(reason));
  }
  // A save corral did not ask for (virsh save of its domain) leaves no state corral knows of: "other".
  // corral's own stop --save is recorded as asked, "stopped".
  EXPECT_EQ(exitReasonOf(vmm::StopReason::Saved), ExitReason::other);
}

}  // namespace
}  // namespace corral::daemon
