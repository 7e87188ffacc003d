// toVmPlan: a VM's spec validated field by field, container-only knobs refused by name, files looked up.
#include "daemon/vm_spec.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace corral::daemon {
namespace {

class VmSpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/corral-vmspec-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    std::filesystem::create_directories(dir_ / "images/busybox/vm");
    std::filesystem::create_directories(dir_ / "images/rootfs-only/rootfs");
    std::ofstream(dir_ / "images/busybox/vm/vmlinuz") << "kernel";
    std::ofstream(dir_ / "images/busybox/vm/initramfs.img") << "initrd";
    std::ofstream(dir_ / "other-kernel") << "kernel";
    context_ = {.imageDir = dir_ / "images", .hostMemoryBytes = 4ull << 30, .hostCpus = 2};
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  schema::InstanceSpec spec() const {
    schema::InstanceSpec s;
    s.name = "vm1";
    s.kind = schema::InstanceKind::vm;
    return s;
  }
  // The field a refused spec names.
  std::string refusedField(const schema::InstanceSpec& s) const {
    auto plan = toVmPlan(s, context_);
    EXPECT_FALSE(plan.has_value());
    return plan ? "" : plan.error().field();
  }

  std::filesystem::path dir_;
  VmValidationContext context_;
};

TEST_F(VmSpecTest, DefaultsComeFromTheImage) {
  auto plan = toVmPlan(spec(), context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->kernel, dir_ / "images/busybox/vm/vmlinuz");
  EXPECT_EQ(plan->initrd, dir_ / "images/busybox/vm/initramfs.img");
  EXPECT_EQ(plan->memoryBytes, kVmDefaultMemory);
  EXPECT_EQ(plan->vcpus, 1);
  EXPECT_EQ(plan->hostname, "vm1");
}

TEST_F(VmSpecTest, ExplicitKernelMemoryCpusHostname) {
  auto s = spec();
  s.kernel = (dir_ / "other-kernel").string();
  s.memory = "256M";
  s.cpus = 2;
  s.hostname = "pet";
  auto plan = toVmPlan(s, context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->kernel, dir_ / "other-kernel");
  EXPECT_EQ(plan->memoryBytes, 256ull << 20);
  EXPECT_EQ(plan->vcpus, 2);
  EXPECT_EQ(plan->hostname, "pet");
}

TEST_F(VmSpecTest, RefusesBadFilesByName) {
  auto s = spec();
  s.kernel = "/nonexistent/vmlinuz";
  auto missing = toVmPlan(s, context_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().field(), "kernel");
  EXPECT_EQ(missing.error().kind(), ErrorKind::NotFound);
  s.kernel = "relative/vmlinuz";
  EXPECT_EQ(refusedField(s), "kernel");
  s = spec();
  s.initrd = dir_.string();  // a directory
  EXPECT_EQ(refusedField(s), "initrd");
  s = spec();
  s.image = "rootfs-only";  // a container image without VM files
  auto noVm = toVmPlan(s, context_);
  ASSERT_FALSE(noVm);
  EXPECT_EQ(noVm.error().field(), "image");
  EXPECT_NE(noVm.error().message().find("image-busybox-vm"), std::string::npos) << noVm.error().message();
  s.image = "../etc";
  EXPECT_EQ(refusedField(s), "image");
}

TEST_F(VmSpecTest, WithAStoreABuiltInImageStaysBuiltInAndAnUnknownOneNamesBoth) {
  auto store = images::ImageStore::open(dir_ / "store");
  ASSERT_TRUE(store) << store.error().message();
  context_.imageStore = &*store;
  auto plan = toVmPlan(spec(), context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_FALSE(plan->rootImage) << "busybox boots from its initramfs";
  EXPECT_EQ(plan->kernel, dir_ / "images/busybox/vm/vmlinuz");
  for (const char* image : {"rootfs-only", "docker.io/library/debian:12"}) {
    auto s = spec();
    s.image = image;
    auto unknown = toVmPlan(s, context_);
    ASSERT_FALSE(unknown) << image;
    EXPECT_EQ(unknown.error().kind(), ErrorKind::NotFound) << image;
    EXPECT_EQ(unknown.error().field(), "image") << image;
    EXPECT_NE(unknown.error().message().find("neither in the image store nor a built-in VM image"),
              std::string::npos)
        << unknown.error().message();
  }
}

TEST_F(VmSpecTest, WithoutCorralsKernelTheDefaultIsDebiansOnPc) {
  auto plan = toVmPlan(spec(), context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->kernelSource, GuestKernel::debian);
  EXPECT_EQ(plan->machine, vmm::Machine::Pc);
  auto s = spec();
  s.kernel = "corral";
  auto missing = toVmPlan(s, context_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind(), ErrorKind::NotFound);
  EXPECT_EQ(missing.error().field(), "kernel");
  EXPECT_NE(missing.error().message().find("ninja guest-kernel"), std::string::npos)
      << missing.error().message();
}

TEST_F(VmSpecTest, CorralsKernelOnceBuiltIsTheDefaultOnMicrovm) {
  std::filesystem::create_directories(dir_ / "images/kernels/corral");
  std::ofstream(dir_ / "images/kernels/corral/vmlinux") << "vmlinux";
  EXPECT_EQ(corralKernelPath(dir_ / "images"), dir_ / "images/kernels/corral/vmlinux");
  auto plan = toVmPlan(spec(), context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->kernelSource, GuestKernel::corral);
  EXPECT_EQ(plan->kernel, dir_ / "images/kernels/corral/vmlinux");
  EXPECT_EQ(plan->initrd, dir_ / "images/busybox/vm/initramfs.img");
  EXPECT_EQ(plan->machine, vmm::Machine::Microvm);

  auto s = spec();
  s.machine = "pc";
  plan = toVmPlan(s, context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->kernelSource, GuestKernel::corral);
  EXPECT_EQ(plan->machine, vmm::Machine::Pc);

  s = spec();
  s.kernel = "debian";
  plan = toVmPlan(s, context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->kernelSource, GuestKernel::debian);
  EXPECT_EQ(plan->kernel, dir_ / "images/busybox/vm/vmlinuz");
  EXPECT_EQ(plan->machine, vmm::Machine::Pc);

  // A kernel file is the user's: pc unless asked, microvm when asked.
  s = spec();
  s.kernel = (dir_ / "other-kernel").string();
  s.machine = "microvm";
  plan = toVmPlan(s, context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_EQ(plan->kernelSource, GuestKernel::path);
  EXPECT_EQ(plan->machine, vmm::Machine::Microvm);
}

TEST_F(VmSpecTest, RefusesUnknownKernelsAndMachinesAndDebianOnMicrovm) {
  auto s = spec();
  s.kernel = "linux";  // neither a name nor an absolute path
  auto unknown = toVmPlan(s, context_);
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().field(), "kernel");
  EXPECT_NE(unknown.error().message().find("neither corral, debian nor an absolute path"), std::string::npos)
      << unknown.error().message();
  s = spec();
  for (const char* machine : {"q35", "PC", "microVM", " pc"}) {
    s.machine = machine;
    EXPECT_EQ(refusedField(s), "machine") << machine;
  }
  s = spec();
  s.kernel = "debian";
  s.machine = "microvm";
  auto debianMicrovm = toVmPlan(s, context_);
  ASSERT_FALSE(debianMicrovm);
  EXPECT_EQ(debianMicrovm.error().field(), "machine");
  EXPECT_NE(debianMicrovm.error().message().find("--machine pc"), std::string::npos)
      << debianMicrovm.error().message();
}

TEST_F(VmSpecTest, RefusesAbsurdResources) {
  auto s = spec();
  for (const char* memory : {"1M", "31M", "8G", "0", "-1M", "lots"}) {
    s.memory = memory;
    EXPECT_EQ(refusedField(s), "memory") << memory;
  }
  s = spec();
  for (double cpus : {0.0, 0.5, -1.0, 3.0, 1.5}) {
    s.cpus = cpus;
    EXPECT_EQ(refusedField(s), "cpus") << cpus;
  }
}

TEST_F(VmSpecTest, RefusesContainerOnlyFieldsByName) {
  auto s = spec();
  s.command = {"sh"};
  EXPECT_EQ(refusedField(s), "command");
  s = spec();
  s.env = {"A=B"};
  EXPECT_EQ(refusedField(s), "env");
  s = spec();
  s.pids = 10;
  EXPECT_EQ(refusedField(s), "pids");
  s = spec();
  s.capAdd = {"NET_ADMIN"};
  EXPECT_EQ(refusedField(s), "cap_add");
  s = spec();
  s.capDrop = {"ALL"};
  EXPECT_EQ(refusedField(s), "cap_drop");
  s = spec();
  s.seccomp = "unconfined";
  EXPECT_EQ(refusedField(s), "seccomp");
  s = spec();
  s.userNamespace = true;
  EXPECT_EQ(refusedField(s), "user_namespace");
  s = spec();
  s.devices = {"/dev/fuse"};
  EXPECT_EQ(refusedField(s), "devices");
  s = spec();
  s.init = true;
  EXPECT_EQ(refusedField(s), "init");
  s = spec();
  s.hostname = "-bad-";
  EXPECT_EQ(refusedField(s), "hostname");
  s = spec();
  s.name = "Bad Name";
  EXPECT_EQ(refusedField(s), "name");
}

// The image the instance pins is what it boots, whatever `image` names; --user is checked against that
// image's own /etc/passwd and /etc/group, and refused for a built-in image (no workload to run as it).
TEST_F(VmSpecTest, APinnedImageBootsAndUserIsCheckedAgainstItsFiles) {
  std::filesystem::create_directories(dir_ / "layer/etc");
  std::ofstream(dir_ / "layer/etc/passwd")
      << "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
  std::ofstream(dir_ / "layer/etc/group") << "root:x:0:\napp:x:1000:\nstaff:x:50:app\n";
  images::Image pinned;
  pinned.name = "app";
  pinned.layerDirs = {dir_ / "layer"};
  context_.pinnedImage = pinned;
  auto s = spec();
  s.image = "moved-elsewhere";
  s.user = "app:staff";
  auto plan = toVmPlan(s, context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  ASSERT_TRUE(plan->rootImage.has_value());
  EXPECT_EQ(plan->rootImage->name, "app");
  EXPECT_EQ(plan->user, "app:staff");
  EXPECT_EQ(plan->kernel, dir_ / "images/busybox/vm/vmlinuz") << "booted with busybox's kernel";

  s.user = "ghost";
  auto ghost = toVmPlan(s, context_);
  ASSERT_FALSE(ghost.has_value());
  EXPECT_EQ(ghost.error().field(), "user");
  EXPECT_NE(ghost.error().message().find("no user \"ghost\""), std::string::npos) << ghost.error().message();

  context_.pinnedImage.reset();
  s.image = "busybox";
  s.user = "app";
  EXPECT_EQ(refusedField(s), "user") << "a built-in VM image has no workload to run as a user";
}

// --warm is planned for a built-in image and for a store image's VM (its clones get copies of the
// template's disk: daemon/vm_driver.cc warmStart).
TEST_F(VmSpecTest, WarmIsPlannedForBothKindsOfImage) {
  auto s = spec();
  s.warm = true;
  auto plan = toVmPlan(s, context_);
  ASSERT_TRUE(plan.has_value()) << plan.error().message();
  EXPECT_TRUE(plan->warm);
  images::Image pinned;
  pinned.name = "app";
  context_.pinnedImage = pinned;
  auto store = toVmPlan(s, context_);
  ASSERT_TRUE(store.has_value()) << store.error().message();
  EXPECT_TRUE(store->warm);
  ASSERT_TRUE(store->rootImage.has_value());
  s.warm = false;
  auto cold = toVmPlan(s, context_);
  ASSERT_TRUE(cold.has_value());
  EXPECT_FALSE(cold->warm);
}

TEST(VmSpecHost, ReadsThisHostsMemoryAndCpus) {
  VmValidationContext context = hostVmContext("/nonexistent");
  EXPECT_GT(context.hostMemoryBytes, 64ull << 20);
  EXPECT_GE(context.hostCpus, 1);
}

}  // namespace
}  // namespace corral::daemon
