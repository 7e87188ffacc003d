// The direct engine's private /dev (vmm/qemu_spawn.h): what QEMU gets of the host's device nodes.
#include "vmm/qemu_spawn.h"

#include <gtest/gtest.h>

namespace corral::vmm {
namespace {

TEST(QemuDevNodes, TcgGetsTheRandomAndNullDevicesAndTunOnly) {
  const std::vector<DevNode> expected = {
      {"null", 1, 3, 0666},   {"zero", 1, 5, 0666},    {"full", 1, 7, 0666},
      {"random", 1, 8, 0666}, {"urandom", 1, 9, 0666}, {"net/tun", 10, 200, 0666},
  };
  EXPECT_EQ(qemuDevNodes(/*kvm=*/false), expected);
}

TEST(QemuDevNodes, KvmAddsDevKvmOnly) {
  auto tcg = qemuDevNodes(false);
  auto kvm = qemuDevNodes(true);
  ASSERT_EQ(kvm.size(), tcg.size() + 1);
  EXPECT_EQ(kvm.back(), (DevNode{"kvm", 10, 232, 0660}));
  kvm.pop_back();
  EXPECT_EQ(kvm, tcg);
}

}  // namespace
}  // namespace corral::vmm
