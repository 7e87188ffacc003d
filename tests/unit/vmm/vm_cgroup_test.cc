// A direct-engine VM's cgroup (vmm/vm_cgroup.h): what is made on v1 and v2, and the memory limit.
#include "vmm/vm_cgroup.h"

#include <gtest/gtest.h>

namespace corral::vmm {
namespace {

CgroupLayout hybridV1() {
  return {.version = CgroupVersion::V1,
          .hierarchies = {{"/sys/fs/cgroup/cpu,cpuacct", {"cpu", "cpuacct"}},
                          {"/sys/fs/cgroup/memory", {"memory"}},
                          {"/sys/fs/cgroup/pids", {"pids"}}},
          .parent = "corral"};
}

CgroupLayout unified() {
  return {.version = CgroupVersion::V2,
          .hierarchies = {{"/sys/fs/cgroup", {"cpu", "memory", "pids"}}},
          .parent = "corral.slice"};
}

TEST(VmCgroupPlan, V1MakesOneDirectoryPerHierarchyAndJoinsByTasks) {
  const VmCgroupPlan plan = planVmCgroup(hybridV1(), "corral-web-1", 400ull << 20);
  const VmCgroupPlan expected{
      .directories = {"/sys/fs/cgroup/cpu,cpuacct/corral/corral-vm-corral-web-1",
                      "/sys/fs/cgroup/memory/corral/corral-vm-corral-web-1",
                      "/sys/fs/cgroup/pids/corral/corral-vm-corral-web-1"},
      .writes = {{"/sys/fs/cgroup/memory/corral/corral-vm-corral-web-1/memory.limit_in_bytes", "419430400"}},
      .joinFiles = {"/sys/fs/cgroup/cpu,cpuacct/corral/corral-vm-corral-web-1/tasks",
                    "/sys/fs/cgroup/memory/corral/corral-vm-corral-web-1/tasks",
                    "/sys/fs/cgroup/pids/corral/corral-vm-corral-web-1/tasks"}};
  EXPECT_EQ(plan, expected);
}

TEST(VmCgroupPlan, V2EnablesTheControllersDownToTheVmAndJoinsByCgroupProcs) {
  const VmCgroupPlan plan = planVmCgroup(unified(), "corral-web-1", 400ull << 20);
  const VmCgroupPlan expected{
      .directories = {"/sys/fs/cgroup/corral.slice/corral-vm-corral-web-1"},
      .writes = {{"/sys/fs/cgroup/cgroup.subtree_control", "+memory"},
                 {"/sys/fs/cgroup/corral.slice/cgroup.subtree_control", "+memory"},
                 {"/sys/fs/cgroup/cgroup.subtree_control", "+pids"},
                 {"/sys/fs/cgroup/corral.slice/cgroup.subtree_control", "+pids"},
                 {"/sys/fs/cgroup/cgroup.subtree_control", "+cpu"},
                 {"/sys/fs/cgroup/corral.slice/cgroup.subtree_control", "+cpu"},
                 {"/sys/fs/cgroup/corral.slice/corral-vm-corral-web-1/memory.max", "419430400"}},
      .joinFiles = {"/sys/fs/cgroup/corral.slice/corral-vm-corral-web-1/cgroup.procs"}};
  EXPECT_EQ(plan, expected);
}

TEST(VmCgroupPlan, NoLimitIsAccountingOnly) {
  for (const auto& layout : {hybridV1(), unified()}) {
    const VmCgroupPlan plan = planVmCgroup(layout, "corral-web-1", std::nullopt);
    for (const auto& [file, value] : plan.writes)
      EXPECT_EQ(file.filename(), "cgroup.subtree_control") << file << " = " << value;
  }
}

TEST(VmCgroupPlan, AControllerTheHostLacksIsNotEnabled) {
  CgroupLayout layout = unified();
  layout.hierarchies[0].controllers = {"pids"};
  const VmCgroupPlan plan = planVmCgroup(layout, "x", 1ull << 30);
  ASSERT_EQ(plan.writes.size(), 2u) << "pids twice, no memory.max without the memory controller";
  EXPECT_EQ(plan.writes[0].second, "+pids");
}

TEST(VmMemoryLimit, IsTheGuestsMemoryTheTranslationCacheAndQemusOverhead) {
  EXPECT_EQ(vmMemoryLimit(128ull << 20, 16), (128ull << 20) + (16ull << 20) + kVmMemoryOverhead);
  EXPECT_EQ(vmMemoryLimit(1ull << 30, 0), (1ull << 30) + kVmMemoryOverhead);
}

}  // namespace
}  // namespace corral::vmm
