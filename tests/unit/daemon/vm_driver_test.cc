// The VM side's typed text: corrald --accelerator, the accelerator decision's state in GET /v1/info, and
// libvirt's stop reasons as exit reasons, and the kernel and machine a new VM's spec is settled with.
#include "daemon/vm_driver.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
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

// The kernel and machine a VM's plan chose are written into its spec at creation, so a corral kernel built
// later does not change the kernel of a VM made before it, and a new VM names the kernel it got.
TEST(VmDriverSettleSpec, TheKernelAndMachineChosenAtCreationAreWrittenIntoTheSpec) {
  char pattern[] = "/tmp/corral-vmdriver-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::filesystem::path dir = pattern;
  std::filesystem::create_directories(dir / "busybox/vm");
  std::ofstream(dir / "busybox/vm/vmlinuz") << "kernel";
  std::ofstream(dir / "busybox/vm/initramfs.img") << "initrd";
  InstanceOptions options;
  options.imageDir = dir;
  VmDriver driver(options);
  auto settled = [&](schema::InstanceSpec spec) {
    auto handle = driver.newHandle();
    Status configured = driver.configure(*handle, spec, nullptr);
    EXPECT_TRUE(configured) << configured.error().message();
    driver.settleSpec(*handle, spec);
    return spec;
  };
  schema::InstanceSpec spec;
  spec.name = "vm1";
  spec.kind = schema::InstanceKind::vm;

  // No corral kernel yet: Debian's on pc, by name.
  schema::InstanceSpec early = settled(spec);
  EXPECT_EQ(early.kernel, "debian");
  EXPECT_EQ(early.machine, "pc");
  // corral's kernel appears: the early VM keeps Debian's on pc; a new one gets corral's on microvm.
  std::filesystem::create_directories(dir / "kernels/corral");
  std::ofstream(dir / "kernels/corral/vmlinux") << "vmlinux";
  schema::InstanceSpec again = settled(early);
  EXPECT_EQ(again.kernel, "debian");
  EXPECT_EQ(again.machine, "pc");
  schema::InstanceSpec late = settled(spec);
  EXPECT_EQ(late.kernel, "corral");
  EXPECT_EQ(late.machine, "microvm");
  // A kernel file stays its path; a machine given stays.
  std::ofstream(dir / "own-kernel") << "kernel";
  spec.kernel = (dir / "own-kernel").string();
  spec.machine = "microvm";
  schema::InstanceSpec own = settled(spec);
  EXPECT_EQ(own.kernel, (dir / "own-kernel").string());
  EXPECT_EQ(own.machine, "microvm");
  // corral's kernel removed: the late VM's start is refused naming the kernel, not moved to Debian's.
  std::filesystem::remove(dir / "kernels/corral/vmlinux");
  auto handle = driver.newHandle();
  Status refused = driver.configure(*handle, late, nullptr);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "kernel");
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace corral::daemon
