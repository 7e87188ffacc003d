// The device model without root: the default allow list as v1 lines, rule text both ways, the kernel's
// decision, and `--device` parsing with its errors (plus a stat of the host's /dev/null).
#include "container/devices.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace corral::container {
namespace {

std::vector<std::string> lines(const std::vector<DeviceRule>& rules) {
  std::vector<std::string> text;
  for (const auto& rule : rules) text.push_back(deviceRuleLine(rule));
  return text;
}

TEST(DeviceRules, DefaultsAreRuncsList) {
  EXPECT_EQ(lines(defaultDeviceRules()),
            (std::vector<std::string>{"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm",
                                      "c 1:8 rwm", "c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"}));
}

TEST(DeviceRules, TextRoundTrips) {
  for (const char* line : {"c 1:3 rwm", "b *:* m", "c 136:* rw", "b 7:0 r", "c *:5 w"}) {
    auto rule = parseDeviceRule(line, "rule");
    ASSERT_TRUE(rule) << line << ": " << rule.error().message();
    EXPECT_EQ(deviceRuleLine(*rule), line);
  }
  EXPECT_EQ(parseDeviceRule("c 10:229 mr", "rule").value(),
            (DeviceRule{DeviceType::Char, 10, 229, kDeviceRead | kDeviceMknod}));
}

TEST(DeviceRules, BadTextIsRefusedNamingTheField) {
  for (const char* bad : {"", "c", "c 1:3", "a *:* rwm", "x 1:3 r", "c 1-3 r", "c 1:3 rx", "c 1:3 rr",
                          "c -1:3 r", "c 1: r", "c 99999999999:1 r"}) {
    auto rule = parseDeviceRule(bad, "rules[2]");
    ASSERT_FALSE(rule) << bad;
    EXPECT_EQ(rule.error().field(), "rules[2]") << bad;
  }
}

TEST(DeviceRules, AccessMustBeGrantedByOneRule) {
  const auto defaults = defaultDeviceRules();
  const uint8_t rw = kDeviceRead | kDeviceWrite;
  EXPECT_TRUE(deviceAccessAllowed(defaults, DeviceType::Char, 1, 3, rw));
  EXPECT_TRUE(deviceAccessAllowed(defaults, DeviceType::Char, 136, 17, rw));
  EXPECT_FALSE(deviceAccessAllowed(defaults, DeviceType::Char, 10, 232, kDeviceRead)) << "/dev/kvm";
  EXPECT_FALSE(deviceAccessAllowed(defaults, DeviceType::Block, 1, 3, kDeviceRead)) << "type matters";
  EXPECT_TRUE(deviceAccessAllowed(defaults, DeviceType::Block, 8, 0, kDeviceMknod));
  // Read from one rule and write from another do not add up to read-write.
  std::vector<DeviceRule> split = {{DeviceType::Char, 10, 229, kDeviceRead},
                                   {DeviceType::Char, 10, 229, kDeviceWrite}};
  EXPECT_FALSE(deviceAccessAllowed(split, DeviceType::Char, 10, 229, rw));
  EXPECT_TRUE(deviceAccessAllowed(split, DeviceType::Char, 10, 229, kDeviceWrite));
}

TEST(DeviceMappings, DockerForms) {
  EXPECT_EQ(parseDeviceMapping("/dev/fuse", "d").value(),
            (DeviceMapping{"/dev/fuse", "/dev/fuse", kDeviceAllAccess}));
  EXPECT_EQ(parseDeviceMapping("/dev/fuse:r", "d").value(),
            (DeviceMapping{"/dev/fuse", "/dev/fuse", kDeviceRead}));
  EXPECT_EQ(parseDeviceMapping("/dev/fuse:/dev/f", "d").value(),
            (DeviceMapping{"/dev/fuse", "/dev/f", kDeviceAllAccess}));
  EXPECT_EQ(parseDeviceMapping("/dev/net/tun:/dev/net/tun:rw", "d").value(),
            (DeviceMapping{"/dev/net/tun", "/dev/net/tun", kDeviceRead | kDeviceWrite}));
}

TEST(DeviceMappings, BadFormsAreRefusedNamingTheEntry) {
  for (const char* bad : {"", "dev/fuse", "/dev/fuse:/dev/f:", "/dev/fuse:/dev/f:rwx", "/dev/fuse:/dev/f:rr",
                          "/dev/fuse:/tmp/f", "/dev/fuse:/dev/", "/dev/fuse:/dev/a/../b", "/dev/fuse:/dev//f",
                          "/dev/fuse:/dev/f/", "/dev/fuse:/dev/null", "/dev/fuse:/dev/pts/9",
                          "/dev/fuse:/dev/shm/x", "/dev/fuse:/dev/f:rw:x", "/dev/fuse:relative"}) {
    auto mapping = parseDeviceMapping(bad, "devices[3]");
    ASSERT_FALSE(mapping) << bad;
    EXPECT_EQ(mapping.error().kind(), ErrorKind::InvalidArgument) << bad;
    EXPECT_EQ(mapping.error().field(), "devices[3]") << bad;
  }
}

TEST(DeviceMappings, HostNodeGivesNumbersModeAndOwner) {
  auto node = deviceNodeFromHost({"/dev/null", "/dev/mine", kDeviceRead}, "devices[0]");
  ASSERT_TRUE(node) << node.error().message();
  EXPECT_EQ(node->path, "/dev/mine");
  EXPECT_EQ(node->hostPath, "/dev/null");
  EXPECT_EQ(node->type, DeviceType::Char);
  EXPECT_EQ(node->major, 1u);
  EXPECT_EQ(node->minor, 3u);
  EXPECT_EQ(node->mode, 0666u);
  EXPECT_EQ(deviceNodeRule(*node), (DeviceRule{DeviceType::Char, 1, 3, kDeviceRead}));

  auto missing = deviceNodeFromHost({"/dev/no-such-device", "/dev/x", kDeviceRead}, "devices[1]");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().field(), "devices[1]");
  EXPECT_NE(missing.error().message().find("\"/dev/no-such-device\""), std::string::npos)
      << missing.error().message();

  const std::string file = (std::filesystem::temp_directory_path() / "corral-devices-test-file").string();
  std::ofstream(file) << "x";
  auto regular = deviceNodeFromHost({file, "/dev/x", kDeviceRead}, "devices[2]");
  std::filesystem::remove(file);
  ASSERT_FALSE(regular);
  EXPECT_EQ(regular.error().field(), "devices[2]");
  EXPECT_NE(regular.error().message().find("not a character or block device"), std::string::npos);
}

}  // namespace
}  // namespace corral::container
