// InstanceSpec validation (container/spec.h): every bad field is refused by name, nothing else is touched.
#include "container/spec.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace corral::container {
namespace {

using schema::InstanceSpec;
using schema::parseMemorySize;

class SpecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/corral-spec-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    std::filesystem::create_directories(root_ / "images" / "busybox" / "rootfs");
    context_.imageDir = root_ / "images";
    context_.containersDir = root_ / "containers";
    context_.cgroupOptions.parent = "corral-test";
  }
  void TearDown() override { std::filesystem::remove_all(root_); }

  InstanceSpec spec() const {
    InstanceSpec s;
    s.name = "web";
    return s;
  }
  // The field of the error a spec fails with; "" when it passes.
  std::string failingField(const InstanceSpec& s) const {
    auto config = toContainerConfig(s, context_);
    return config ? std::string() : config.error().field();
  }

  std::filesystem::path root_;
  ValidationContext context_;
};

TEST(ParseMemorySize, AcceptsSuffixes) {
  EXPECT_EQ(parseMemorySize("64M"), 64ull << 20);
  EXPECT_EQ(parseMemorySize("1g"), 1ull << 30);
  EXPECT_EQ(parseMemorySize("1048576"), 1048576ull);
  EXPECT_EQ(parseMemorySize("512K"), 512ull << 10);
  EXPECT_EQ(parseMemorySize("1T"), 1ull << 40);
}

TEST(ParseMemorySize, RefusesBadSizesNamingMemory) {
  for (const char* bad : {"", "-1", "0", "0M", "1.5G", "2T", "64MiB", "M", "64 M", "99999999999999999999",
                          "1125899906842624K"}) {
    auto size = parseMemorySize(bad);
    ASSERT_FALSE(size) << bad;
    EXPECT_EQ(size.error().kind(), ErrorKind::InvalidArgument) << bad;
    EXPECT_EQ(size.error().field(), "memory") << bad;
  }
}

TEST_F(SpecTest, ValidSpecBuildsTheRuntimeConfig) {
  InstanceSpec s = spec();
  s.memory = "32M";
  s.cpus = 0.5;
  s.pids = 64;
  s.env = {"A=1"};
  auto config = toContainerConfig(s, context_);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->name, "web");
  EXPECT_EQ(config->hostname, "web");
  EXPECT_EQ(config->argv, std::vector<std::string>{"/bin/sh"});
  EXPECT_EQ(config->lowerDirs, std::vector<std::filesystem::path>{root_ / "images" / "busybox" / "rootfs"});
  EXPECT_EQ(config->bundleDir, root_ / "containers" / "web");
  EXPECT_EQ(config->limits.memoryBytes, 32ull << 20);
  EXPECT_EQ(config->limits.cpuMillis, 500u);
  EXPECT_EQ(config->limits.pids, 64u);
  EXPECT_EQ(config->cgroupOptions.parent, "corral-test");
  EXPECT_FALSE(config->capabilities.empty());
  EXPECT_FALSE(config->userNamespace);
  s.hostname = "other";
  s.command = {"echo", "hi"};
  config = toContainerConfig(s, context_);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->hostname, "other");
  EXPECT_EQ(config->argv, (std::vector<std::string>{"echo", "hi"}));
  // A host device: its node in /dev (the host's numbers) and, through it, its allow rule.
  s.devices = {"/dev/null:/dev/sink:rw"};
  config = toContainerConfig(s, context_);
  ASSERT_TRUE(config) << config.error().message();
  ASSERT_EQ(config->devices.size(), 1u);
  EXPECT_EQ(config->devices[0], (DeviceNode{"/dev/sink", "/dev/null", DeviceType::Char, 1, 3, 0666, 0, 0,
                                            kDeviceRead | kDeviceWrite}));
  // Nothing is created by validation.
  EXPECT_FALSE(std::filesystem::exists(root_ / "containers"));
}

TEST_F(SpecTest, InitUsesTheDaemonsReaperAndNeedsIt) {
  InstanceSpec s = spec();
  auto config = toContainerConfig(s, context_);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_TRUE(config->initBinary.empty());

  s.init = true;
  EXPECT_EQ(failingField(s), "init");  // no reaper configured
  context_.reaperPath = root_ / "corral-reaper";
  auto missing = toContainerConfig(s, context_);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().field(), "init");
  EXPECT_NE(missing.error().message().find((root_ / "corral-reaper").string()), std::string::npos)
      << missing.error().message();
  { std::ofstream(root_ / "corral-reaper") << "#!"; }
  config = toContainerConfig(s, context_);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->initBinary, root_ / "corral-reaper");
  EXPECT_EQ(config->argv, std::vector<std::string>{"/bin/sh"});  // the reaper is put in front by the runtime
}

TEST_F(SpecTest, UnknownImageIsNotFoundNamingImage) {
  InstanceSpec s = spec();
  s.image = "alpine";
  auto config = toContainerConfig(s, context_);
  ASSERT_FALSE(config);
  EXPECT_EQ(config.error().kind(), ErrorKind::NotFound);
  EXPECT_EQ(config.error().field(), "image");
  EXPECT_EQ(config.error().message(), "image \"alpine\" not found in " + (root_ / "images").string());
}

// `--memory 1` used to pass here and fail later in the cgroup as "memoryBytes": it is the spec's "memory".
TEST_F(SpecTest, TooLittleMemoryIsRefusedUpFrontNamingMemory) {
  for (const char* tiny : {"1", "4095K", "1M", "3M"}) {
    InstanceSpec s = spec();
    s.memory = tiny;
    auto config = toContainerConfig(s, context_);
    ASSERT_FALSE(config) << tiny;
    EXPECT_EQ(config.error().field(), "memory") << tiny;
    EXPECT_NE(config.error().message().find("at least 4M"), std::string::npos) << config.error().message();
  }
  InstanceSpec enough = spec();
  enough.memory = "4M";
  auto config = toContainerConfig(enough, context_);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->limits.memoryBytes, 4ull << 20);
}

TEST_F(SpecTest, EveryBadFieldIsNamed) {
  auto with = [&](auto change) {
    InstanceSpec s = spec();
    change(s);
    return failingField(s);
  };
  EXPECT_EQ(with([](InstanceSpec& s) { s.image = "../x"; }), "image");
  EXPECT_EQ(with([](InstanceSpec& s) { s.image = "/etc"; }), "image");
  EXPECT_EQ(with([](InstanceSpec& s) { s.name = "../x"; }), "name");
  EXPECT_EQ(with([](InstanceSpec& s) { s.name = ""; }), "name");
  EXPECT_EQ(with([](InstanceSpec& s) { s.kind = schema::InstanceKind::vm; }), "kind");
  EXPECT_EQ(with([](InstanceSpec& s) { s.memory = "-1"; }), "memory");
  EXPECT_EQ(with([](InstanceSpec& s) { s.memory = "5000T"; }), "memory");
  EXPECT_EQ(with([](InstanceSpec& s) { s.cpus = 0; }), "cpus");
  EXPECT_EQ(with([](InstanceSpec& s) { s.cpus = -1; }), "cpus");
  EXPECT_EQ(with([](InstanceSpec& s) { s.cpus = 5000; }), "cpus");
  EXPECT_EQ(with([](InstanceSpec& s) { s.pids = 0; }), "pids");
  EXPECT_EQ(with([](InstanceSpec& s) { s.pids = -5; }), "pids");
  EXPECT_EQ(with([](InstanceSpec& s) { s.pids = 5000000; }), "pids");
  EXPECT_EQ(with([](InstanceSpec& s) { s.env = {"A=1", "NOEQUALS"}; }), "env[1]");
  EXPECT_EQ(with([](InstanceSpec& s) { s.env = {"1A=x"}; }), "env[0]");
  EXPECT_EQ(with([](InstanceSpec& s) { s.env = {"=x"}; }), "env[0]");
  EXPECT_EQ(with([](InstanceSpec& s) { s.capAdd = {"NOT_A_CAP"}; }), "cap_add");
  EXPECT_EQ(with([](InstanceSpec& s) { s.capDrop = {"BOGUS"}; }), "cap_drop");
  EXPECT_EQ(with([](InstanceSpec& s) { s.seccomp = "/nonexistent/profile.json"; }), "seccomp");
  EXPECT_EQ(with([](InstanceSpec& s) { s.hostname = "bad_host"; }), "hostname");
  EXPECT_EQ(with([](InstanceSpec& s) { s.hostname = std::string(64, 'a'); }), "hostname");
  EXPECT_EQ(with([](InstanceSpec& s) { s.command = {""}; }), "command[0]");
  EXPECT_EQ(with([](InstanceSpec& s) {
              s.devices = {"/dev/null:/dev/a", "/dev/nonexistent-device"};
            }),
            "devices[1]");
  EXPECT_EQ(with([](InstanceSpec& s) { s.devices = {"/etc/passwd"}; }), "devices[0]") << "not a device";
  EXPECT_EQ(with([](InstanceSpec& s) { s.devices = {"/dev/null:/dev/a:rwx"}; }), "devices[0]");
  EXPECT_EQ(with([](InstanceSpec& s) { s.devices = {"/dev/null:/tmp/a"}; }), "devices[0]");
  EXPECT_EQ(with([](InstanceSpec& s) {
              s.devices = {"/dev/null:/dev/a", "/dev/zero:/dev/a"};
            }),
            "devices[1]")
      << "one container path twice";
  EXPECT_EQ(with([](InstanceSpec&) {}), "");
}

}  // namespace
}  // namespace corral::container
