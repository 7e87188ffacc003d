// Capability sets: Docker's defaults, --cap-add/--cap-drop resolution and naming errors, numbers, and (as
// root, in a forked child) the drop to exactly the kept set.
#include "container/caps.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

namespace corral::container {
namespace {

bool contains(const std::vector<std::string>& names, const std::string& name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

uint64_t maskOf(const std::vector<std::string>& names) {
  auto numbers = capabilityNumbers(names);
  EXPECT_TRUE(numbers.has_value()) << numbers.error().message();
  uint64_t mask = 0;
  for (int n : numbers.value_or(std::vector<int>{})) mask |= uint64_t{1} << n;
  return mask;
}

TEST(Capabilities, DockerDefaultsMatchDockersCapEff) {
  std::vector<std::string> defaults = dockerDefaultCapabilities();
  EXPECT_EQ(defaults.size(), 14u);
  // `grep CapEff /proc/self/status` in a default Docker container.
  EXPECT_EQ(maskOf(defaults), 0x00000000a80425fbULL);
}

TEST(Capabilities, NoFlagsGiveTheDefaults) {
  auto caps = resolveCapabilities({}, {});
  ASSERT_TRUE(caps.has_value()) << caps.error().message();
  EXPECT_EQ(*caps, dockerDefaultCapabilities());
}

TEST(Capabilities, AddAcceptsEverySpellingAndDropRemoves) {
  auto caps =
      resolveCapabilities({"NET_ADMIN", "cap_sys_ptrace", "CAP_SYS_TIME", "net_admin"}, {"chown", "MKNOD"});
  ASSERT_TRUE(caps.has_value()) << caps.error().message();
  EXPECT_TRUE(contains(*caps, "CAP_NET_ADMIN"));
  EXPECT_TRUE(contains(*caps, "CAP_SYS_PTRACE"));
  EXPECT_TRUE(contains(*caps, "CAP_SYS_TIME"));
  EXPECT_FALSE(contains(*caps, "CAP_CHOWN"));
  EXPECT_FALSE(contains(*caps, "CAP_MKNOD"));
  EXPECT_EQ(std::count(caps->begin(), caps->end(), "CAP_NET_ADMIN"), 1);
  EXPECT_EQ(caps->size(), 14u + 3u - 2u);
}

TEST(Capabilities, AddAllGivesEveryCapabilityMinusDrops) {
  auto caps = resolveCapabilities({"ALL"}, {"NET_RAW"});
  ASSERT_TRUE(caps.has_value()) << caps.error().message();
  EXPECT_TRUE(contains(*caps, "CAP_SYS_ADMIN"));
  EXPECT_TRUE(contains(*caps, "CAP_SYS_MODULE"));
  EXPECT_TRUE(contains(*caps, "CAP_CHOWN"));
  EXPECT_FALSE(contains(*caps, "CAP_NET_RAW"));
  EXPECT_GE(caps->size(), 37u);  // CAP_AUDIT_READ (37) is in every kernel we support
}

TEST(Capabilities, DropAllKeepsOnlyTheAdds) {
  auto caps = resolveCapabilities({"NET_BIND_SERVICE"}, {"all"});
  ASSERT_TRUE(caps.has_value()) << caps.error().message();
  EXPECT_EQ(*caps, (std::vector<std::string>{"CAP_NET_BIND_SERVICE"}));
  caps = resolveCapabilities({}, {"ALL"});
  ASSERT_TRUE(caps.has_value());
  EXPECT_TRUE(caps->empty());
}

TEST(Capabilities, UnknownNamesNameTheField) {
  auto caps = resolveCapabilities({"NET_ADMIN", "CAP_FLY"}, {});
  ASSERT_FALSE(caps.has_value());
  EXPECT_EQ(caps.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(caps.error().field(), "cap_add");
  EXPECT_NE(caps.error().message().find("cap_add[1]"), std::string::npos) << caps.error().message();
  EXPECT_NE(caps.error().message().find("CAP_FLY"), std::string::npos) << caps.error().message();

  caps = resolveCapabilities({}, {"teleport"});
  ASSERT_FALSE(caps.has_value());
  EXPECT_EQ(caps.error().field(), "cap_drop");

  // libcap would read "12" as capability 12; a number is not a name.
  caps = resolveCapabilities({"12"}, {});
  ASSERT_FALSE(caps.has_value());
  EXPECT_EQ(caps.error().field(), "cap_add");
  caps = resolveCapabilities({""}, {});
  ASSERT_FALSE(caps.has_value());
}

TEST(Capabilities, NumbersAreTheKernelsAndUnknownsFail) {
  auto numbers = capabilityNumbers({"CAP_CHOWN", "CAP_SYS_ADMIN", "net_raw", "CAP_CHOWN"});
  ASSERT_TRUE(numbers.has_value()) << numbers.error().message();
  EXPECT_EQ(*numbers, (std::vector<int>{CAP_CHOWN, CAP_SYS_ADMIN, CAP_NET_RAW}));
  auto bad = capabilityNumbers({"CAP_CHOWN", "CAP_NOPE"});
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().field(), "capabilities");
  EXPECT_NE(bad.error().message().find("CAP_NOPE"), std::string::npos);
}

uint64_t statusMask(const std::string& status, const std::string& key) {
  size_t at = status.find(key + ":\t");
  if (at == std::string::npos) return ~uint64_t{0};
  return std::stoull(status.substr(at + key.size() + 2, 16), nullptr, 16);
}

TEST(Capabilities, DropInChildKeepsExactlyTheSet) {
  if (geteuid() != 0) {
    if (std::getenv("CORRAL_REQUIRE_PRIVILEGED"))
      FAIL() << "needs root (CAP_SETPCAP) to drop the bounding set";
    GTEST_SKIP() << "needs root (CAP_SETPCAP) to drop the bounding set";
  }
  int pipeFds[2];
  ASSERT_EQ(pipe(pipeFds), 0);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(pipeFds[0]);
    int err = dropCapabilitiesInChild({CAP_KILL, CAP_CHOWN, CAP_NET_BIND_SERVICE});
    if (err != 0) _exit(100 + err);
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) _exit(2);
    char status[8192];
    ssize_t n = read(fd, status, sizeof status);
    if (n <= 0 || write(pipeFds[1], status, static_cast<size_t>(n)) != n) _exit(3);
    _exit(0);
  }
  close(pipeFds[1]);
  std::string status;
  char buffer[4096];
  for (ssize_t n; (n = read(pipeFds[0], buffer, sizeof buffer)) > 0;)
    status.append(buffer, static_cast<size_t>(n));
  close(pipeFds[0]);
  int wstatus = 0;
  ASSERT_EQ(waitpid(pid, &wstatus, 0), pid);
  ASSERT_TRUE(WIFEXITED(wstatus));
  ASSERT_EQ(WEXITSTATUS(wstatus), 0) << "dropCapabilitiesInChild failed with errno "
                                     << WEXITSTATUS(wstatus) - 100;
  uint64_t kept =
      (uint64_t{1} << CAP_KILL) | (uint64_t{1} << CAP_CHOWN) | (uint64_t{1} << CAP_NET_BIND_SERVICE);
  EXPECT_EQ(statusMask(status, "CapBnd"), kept) << status;
  EXPECT_EQ(statusMask(status, "CapPrm"), kept);
  EXPECT_EQ(statusMask(status, "CapEff"), kept);
  EXPECT_EQ(statusMask(status, "CapInh"), 0u);
  EXPECT_EQ(statusMask(status, "CapAmb"), 0u);
}

}  // namespace
}  // namespace corral::container
