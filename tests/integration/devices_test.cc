// The device policy on the real kernel (root): a default container may make any node but open only the
// default ones, on v1 (its own devices group) and on v2 (a BPF program on its group, the v1 devices
// controller out of play); `--device` opens one more, through the runtime and through corrald.
#include "container/devices.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "container/caps.h"
#include "container/cgroup_mode.h"
#include "container/runtime.h"
#include "container/seccomp.h"
#include "tests/integration/harness.h"
#include "tests/integration/host_needs.h"

namespace corral::container {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using testing::readFile;

const std::string kCgroupParent = fmt::format("corral-test-devices-{}", ::getpid());
const fs::path kImageRootfs = fs::path(CORRAL_IMAGE_DIR) / "busybox" / "rootfs";
const fs::path kUnified = "/sys/fs/cgroup/unified";

// The host devices of the issue, each a hole in a container that has no device policy.
struct HostDevice {
  const char* name;
  uint32_t major, minor;
};
constexpr HostDevice kForbidden[] = {{"vcs1", 7, 1},    {"kvm", 10, 232},   {"tty1", 4, 1},
                                     {"ttyS0", 4, 64},  {"console", 5, 1},  {"userfaultfd", 10, 126},
                                     {"fuse", 10, 229}, {"vsock", 10, 121}, {"loop-control", 10, 237},
                                     {"hwrng", 10, 183}};

// A shell script running corral-probe --open-device once per line; its JSON lines, by path.
std::string probeScript(const std::vector<std::string>& probes) {
  std::string script;
  for (const auto& args : probes) script += "corral-probe --open-device " + args + "; ";
  return script;
}
std::string forbiddenProbes() {
  std::string script;
  for (const auto& d : kForbidden)
    script += fmt::format("corral-probe --open-device /tmp/{} r c {} {}; ", d.name, d.major, d.minor);
  return script;
}
std::vector<json> reports(const std::string& output) {
  std::vector<json> list;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);)
    if (line.starts_with("{")) list.push_back(json::parse(line));
  return list;
}
std::map<std::string, json> reportsByPath(const std::string& output) {
  std::map<std::string, json> byPath;
  for (json& report : reports(output)) byPath[report["path"].get<std::string>()] = report;
  return byPath;
}

std::string readUntilEof(int fd) {
  std::string output;
  char buffer[4096];
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 30000) <= 0) {
      ADD_FAILURE() << "timed out reading the container's output; so far: " << output;
      return output;
    }
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return output;
    output.append(buffer, static_cast<size_t>(n));
  }
}

// The programs attached to a cgroup directory for BPF_CGROUP_DEVICE.
int attachedDevicePrograms(const fs::path& dir) {
  UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return -1;
  uint32_t ids[16] = {};
  bpf_attr query{};
  query.query.target_fd = static_cast<uint32_t>(fd.get());
  query.query.attach_type = BPF_CGROUP_DEVICE;
  query.query.prog_ids = reinterpret_cast<uint64_t>(ids);
  query.query.prog_cnt = 16;
  if (::syscall(SYS_bpf, BPF_PROG_QUERY, &query, sizeof query) != 0) return -1;
  return static_cast<int>(query.query.prog_cnt);
}

// The v1 devices group of a process, as /proc/PID/cgroup names it ("" when devices is not mounted).
std::string devicesGroup(pid_t pid) {
  std::istringstream in(readFile(fmt::format("/proc/{}/cgroup", pid)));
  for (std::string line; std::getline(in, line);) {
    size_t first = line.find(':'), second = line.find(':', first + 1);
    if (line.substr(first + 1, second - first - 1) == "devices") return line.substr(second + 1);
  }
  return "";
}

class DevicePolicyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::requireRoot()) GTEST_SKIP() << "containers need root (namespaces, cgroups, mounts)";
    auto mode = detectCgroupMode();
    ASSERT_TRUE(mode.has_value()) << mode.error().message();
    mode_ = *mode;
    char pattern[] = "/tmp/corral-devices-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    tempDir_ = pattern;
  }

  void TearDown() override {
    if (tempDir_.empty()) return;
    for (const fs::path& base : {fs::path("/sys/fs/cgroup"), kUnified}) {
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(base, ec))
        ::rmdir((entry.path() / kCgroupParent).c_str());
      ::rmdir((base / kCgroupParent).c_str());
    }
    std::error_code ec;
    fs::remove_all(tempDir_, ec);
  }

  ContainerConfig config(const std::string& script) {
    static int counter = 0;
    ContainerConfig c;
    c.name = fmt::format("dev-{}-{}", ::getpid(), ++counter);
    c.lowerDirs = {kImageRootfs};
    c.bundleDir = tempDir_ / c.name;
    c.argv = {"sh", "-c", script};
    c.capabilities = dockerDefaultCapabilities();  // CAP_MKNOD among them
    c.seccomp = dockerDefaultProfile(c.capabilities);
    c.cgroupOptions.parent = kCgroupParent;
    return c;
  }

  // Runs the container to its end; `whileRunning` sees it after it printed "READY" and before its
  // stdin closes (it then reads a line and goes on).
  std::string run(const ContainerConfig& c, const std::function<void(RunningContainer&)>& whileRunning = {}) {
    int inFds[2], outFds[2];
    EXPECT_EQ(::pipe2(inFds, O_CLOEXEC), 0);
    EXPECT_EQ(::pipe2(outFds, O_CLOEXEC), 0);
    UniqueFd inRead(inFds[0]), inWrite(inFds[1]), outRead(outFds[0]), outWrite(outFds[1]);
    auto container = startContainer(c, Stdio{inRead.get(), outWrite.get(), -1});
    inRead.reset();
    outWrite.reset();
    if (!container) {
      ADD_FAILURE() << container.error().message();
      return "";
    }
    if (whileRunning) whileRunning(*container);
    inWrite.reset();
    std::string output = readUntilEof(outRead.get());
    int status = 0;
    EXPECT_EQ(::waitpid(container->pid(), &status, 0), container->pid());
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << output;
    return output;
  }

  // Every forbidden device can be made (mknod alone is allowed, as with runc) but not opened; the
  // defaults open (tty: the policy lets it through, the tty driver answers ENXIO without a terminal).
  void expectDefaultPolicy(const std::string& output) {
    auto reports = reportsByPath(output);
    for (const auto& d : kForbidden) {
      const std::string path = fmt::format("/tmp/{}", d.name);
      ASSERT_TRUE(reports.contains(path)) << path << " not probed:\n" << output;
      EXPECT_EQ(reports[path]["mknod"], "") << reports[path];
      EXPECT_EQ(reports[path]["open"], "EPERM")
          << d.name << " " << d.major << ":" << d.minor << " opens: " << reports[path];
    }
    for (const char* name : {"null", "zero", "full", "random", "urandom", "ptmx"}) {
      const std::string path = fmt::format("/dev/{}", name);
      ASSERT_TRUE(reports.contains(path)) << path << " not probed:\n" << output;
      EXPECT_EQ(reports[path]["open"], "") << reports[path];
    }
    ASSERT_TRUE(reports.contains("/dev/tty")) << output;
    EXPECT_EQ(reports["/dev/tty"]["open"], "ENXIO") << reports["/dev/tty"];
  }

  std::string defaultPolicyScript() {
    return "read line; " + forbiddenProbes() +
           probeScript({"/dev/null rw", "/dev/zero rw", "/dev/full rw", "/dev/random rw", "/dev/urandom rw",
                        "/dev/ptmx rw", "/dev/tty rw"});
  }

  CgroupMode mode_ = CgroupMode::Unified;
  fs::path tempDir_;
};

// On this host's cgroup layout (v1 on a hybrid host): the container's own devices group holds the list.
TEST_F(DevicePolicyTest, DefaultContainerOpensOnlyTheDefaultDevices) {
  ContainerConfig c = config(defaultPolicyScript());
  std::string output = run(c, [&](RunningContainer& container) {
    if (mode_ == CgroupMode::Unified) {
      EXPECT_EQ(attachedDevicePrograms(container.cgroup().path()), 1);
      return;
    }
    EXPECT_EQ(devicesGroup(container.pid()), container.cgroup().relativePath()) << "joined its devices group";
    const fs::path group = fs::path("/sys/fs/cgroup/devices") / container.cgroup().relativePath().substr(1);
    std::string expected;
    for (const auto& rule : defaultDeviceRules()) expected += deviceRuleLine(rule) + "\n";
    EXPECT_EQ(readFile(group / "devices.list"), expected);
  });
  expectDefaultPolicy(output);
}

// A container on the hybrid host's bare cgroup2 mount: the refusals come from the BPF program alone (the
// container stays in the starter's v1 devices group, which allows everything).
TEST_F(DevicePolicyTest, V2DeviceProgramRefusesWithoutTheV1Controller) {
  // A v1-only host has no cgroup2 mount to run a v2 container on.
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Unified, CgroupMode::Hybrid}});
  ContainerConfig c = config(defaultPolicyScript());
  if (mode_ == CgroupMode::Hybrid) c.cgroupOptions.root = kUnified.string();
  std::string output = run(c, [&](RunningContainer& container) {
    EXPECT_EQ(attachedDevicePrograms(container.cgroup().path()), 1) << container.cgroup().path();
    if (mode_ != CgroupMode::Hybrid) return;
    const std::string group = devicesGroup(container.pid());
    EXPECT_EQ(group, devicesGroup(::getpid())) << "not in a devices group of its own";
    const fs::path v1 = fs::path("/sys/fs/cgroup/devices") / group.substr(1);
    EXPECT_EQ(readFile(v1 / "devices.list"), "a *:* rwm\n") << "the v1 group refuses nothing";
  });
  expectDefaultPolicy(output);
}

// An exec'd process is held to the same policy (it joins the same groups).
TEST_F(DevicePolicyTest, ExecIsRefusedToo) {
  ContainerConfig c = config("read line; true");
  run(c, [&](RunningContainer& container) {
    int outFds[2];
    ASSERT_EQ(::pipe2(outFds, O_CLOEXEC), 0);
    UniqueFd outRead(outFds[0]), outWrite(outFds[1]);
    ExecOptions exec;
    exec.argv = {"corral-probe", "--open-device", "/tmp/kvm", "r", "c", "10", "232"};
    exec.stdio = Stdio{-1, outWrite.get(), -1};
    auto pid = execInContainer(container.pid(), container.cgroup(), c, exec);
    ASSERT_TRUE(pid.has_value()) << pid.error().message();
    outWrite.reset();
    std::string output = readUntilEof(outRead.get());
    ASSERT_EQ(::waitpid(*pid, nullptr, 0), *pid);
    EXPECT_EQ(reportsByPath(output)["/tmp/kvm"]["open"], "EPERM") << output;
  });
}

// --device: the node appears where asked with the host's numbers and mode, opens for the perms given and
// no more, and every other device stays closed.
TEST_F(DevicePolicyTest, GivenDeviceOpensAndNothingElse) {
  ASSERT_TRUE(fs::exists("/dev/fuse")) << "this host has /dev/fuse (10:229); pick another char device if not";
  auto fuse = deviceNodeFromHost({"/dev/fuse", "/dev/sub/fuse", kDeviceRead}, "devices[0]");
  ASSERT_TRUE(fuse) << fuse.error().message();
  ContainerConfig c = config("read line; stat -c '%F %t:%T %a' /dev/sub/fuse; " +
                             probeScript({"/dev/sub/fuse r", "/dev/sub/fuse w", "/tmp/fuse r c 10 229",
                                          "/tmp/kvm r c 10 232", "/tmp/vcs1 r c 7 1"}));
  c.devices = {*fuse};
  // The host's own layout, then (on a hybrid host) v2 on its bare cgroup2 mount.
  std::vector<std::string> roots = {c.cgroupOptions.root};
  if (mode_ == CgroupMode::Hybrid) roots.push_back(kUnified.string());
  for (const std::string& root : roots) {
    c.cgroupOptions.root = root;
    SCOPED_TRACE(root);
    std::string output = run(c);
    EXPECT_NE(output.find(fmt::format("character special file a:e5 {:o}\n", fuse->mode)), std::string::npos)
        << output;
    auto probed = reports(output);
    ASSERT_EQ(probed.size(), 5u) << output;
    EXPECT_EQ(probed[0]["open"], "") << "/dev/sub/fuse for reading: " << output;
    EXPECT_EQ(probed[1]["open"], "EPERM") << "/dev/sub/fuse for writing, which was not given: " << output;
    EXPECT_EQ(probed[2]["open"], "") << "the rule is for the device, wherever its node is: " << output;
    EXPECT_EQ(probed[3]["open"], "EPERM") << "kvm: " << output;
    EXPECT_EQ(probed[4]["open"], "EPERM") << "vcs1: " << output;
  }
}

// The default nodes are the container's own inodes (mknod), not the host's bound in: chmod or chown
// inside could otherwise change the host's /dev/null.
TEST_F(DevicePolicyTest, DefaultNodesAreNotTheHostsInodes) {
  ContainerConfig c = config("read line; stat -c '%d:%i %t:%T %a %F' /dev/null /dev/tty");
  std::string output = run(c);
  struct stat host {};
  ASSERT_EQ(::stat("/dev/null", &host), 0);
  EXPECT_EQ(output.find(fmt::format("{}:{} ", host.st_dev, host.st_ino)), std::string::npos)
      << "the host's /dev/null inode is in the container: " << output;
  EXPECT_NE(output.find(" 1:3 666 character special file\n"), std::string::npos) << output;
  EXPECT_NE(output.find(" 5:0 666 character special file\n"), std::string::npos) << output;
}

}  // namespace
}  // namespace corral::container

namespace corral {
namespace {

using namespace std::chrono_literals;

// Through corrald and the CLI: `corral run --device`, and a bad entry named by the API.
TEST(DevicePolicyCli, RunDeviceFlagOpensThatDeviceOnly) {
  if (!testing::requireRoot()) GTEST_SKIP() << "containers need root (namespaces, cgroups, mounts)";
  testing::TestDaemon daemon{"devices", {"--accelerator", "tcg"}};
  ASSERT_TRUE(daemon.start()) << daemon.log();
  const std::vector<std::string> probe = {"sh", "-c",
                                          "corral-probe --open-device /tmp/f r c 10 229; "
                                          "corral-probe --open-device /tmp/k r c 10 232"};
  auto args = [&](std::vector<std::string> flags) {
    std::vector<std::string> all = {"run", "--rm"};
    all.insert(all.end(), flags.begin(), flags.end());
    all.push_back("--");
    all.insert(all.end(), probe.begin(), probe.end());
    return all;
  };
  testing::CliRun plain = daemon.cli(args({}), 30s);
  ASSERT_EQ(plain.code, 0) << plain;
  EXPECT_NE(plain.out.find(R"({"path":"/tmp/f","mknod":"","open":"EPERM"})"), std::string::npos) << plain;
  EXPECT_NE(plain.out.find(R"({"path":"/tmp/k","mknod":"","open":"EPERM"})"), std::string::npos) << plain;

  testing::CliRun fuse = daemon.cli(args({"--device", "/dev/fuse:r"}), 30s);
  ASSERT_EQ(fuse.code, 0) << fuse;
  EXPECT_NE(fuse.out.find(R"({"path":"/tmp/f","mknod":"","open":""})"), std::string::npos) << fuse;
  EXPECT_NE(fuse.out.find(R"({"path":"/tmp/k","mknod":"","open":"EPERM"})"), std::string::npos) << fuse;

  testing::CliRun bad = daemon.cli(args({"--device", "/dev/fuse", "--device", "/etc/passwd:/dev/p"}), 30s);
  EXPECT_EQ(bad.code, 1) << bad;
  EXPECT_NE(bad.err.find("devices[1]"), std::string::npos) << bad;
  EXPECT_NE(bad.err.find("not a character or block device"), std::string::npos) << bad;
}

}  // namespace
}  // namespace corral
