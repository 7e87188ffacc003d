// The container runtime on the real kernel (root): namespaces, cgroup, capabilities, seccomp, user
// namespace, rootfs/pivot_root, /proc masking, /dev, exec into a running container, and clean failures.
// Containers run corral-probe or busybox from the busybox image built by the image-busybox target.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/kcmp.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "container/caps.h"
#include "container/cgroup_mode.h"
#include "container/mounts.h"
#include "container/runtime.h"
#include "container/seccomp.h"
#include "tests/integration/host_needs.h"

namespace corral::container {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Per test process: ctest runs tests in parallel processes, and one test's teardown removes its parent.
const std::string kCgroupParent = fmt::format("corral-test-runtime-{}", ::getpid());
const fs::path kImageRootfs = fs::path(CORRAL_IMAGE_DIR) / "busybox" / "rootfs";
// Sanitized builds start containers on a copy of the starter's memory (container/child.h SharedMemoryClone).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kStartSharesMemory = false;
#else
constexpr bool kStartSharesMemory = true;
#endif

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trim(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) result.push_back(line);
  return result;
}

// Reads until EOF, or until `marker` has appeared when one is given; fails the test after 20 s.
std::string readFrom(int fd, std::string_view marker = {}) {
  std::string output;
  char buffer[4096];
  for (;;) {
    if (!marker.empty() && output.find(marker) != std::string::npos) return output;
    pollfd pfd{fd, POLLIN, 0};
    int ready = ::poll(&pfd, 1, 20000);
    if (ready <= 0) {
      ADD_FAILURE() << "timed out reading the container's output; so far: " << output;
      return output;
    }
    ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return output;
    output.append(buffer, static_cast<size_t>(n));
  }
}

uint64_t statusField(const std::string& status, const std::string& key, int base = 16) {
  for (const auto& line : lines(status)) {
    if (line.starts_with(key + ":")) return std::stoull(trim(line.substr(key.size() + 1)), nullptr, base);
  }
  ADD_FAILURE() << key << " not in /proc/self/status:\n" << status;
  return ~uint64_t{0};
}

uint64_t capabilityMask(const std::vector<std::string>& names) {
  auto numbers = capabilityNumbers(names);
  EXPECT_TRUE(numbers.has_value());
  uint64_t mask = 0;
  for (int n : numbers.value_or(std::vector<int>{})) mask |= uint64_t{1} << n;
  return mask;
}

std::string hostNamespace(const std::string& path) {
  std::error_code ec;
  return fs::read_symlink(path, ec).string();
}

struct Output {
  int status = -1;  // waitpid status
  std::string text;
  int exitCode() const { return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status); }
};

class ContainerRuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      if (std::getenv("CORRAL_REQUIRE_PRIVILEGED")) FAIL() << "container runtime tests need root";
      GTEST_SKIP() << "container runtime tests need root (namespaces, mounts, cgroups)";
    }
    ASSERT_TRUE(fs::exists(kImageRootfs / "bin" / "busybox")) << "missing image " << kImageRootfs;
    char pattern[] = "/tmp/corral-runtime-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    tempDir_ = pattern;
  }

  void TearDown() override {
    if (tempDir_.empty()) return;
    // Containers are gone by now (RunningContainer cleans up); the test's own cgroup parents and temp dir.
    for (const char* base : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(base, ec)) {
        ::rmdir((entry.path() / kCgroupParent).c_str());
      }
      ::rmdir((fs::path(base) / kCgroupParent).c_str());
    }
    std::error_code ec;
    fs::remove_all(tempDir_, ec);
  }

  ContainerConfig config(std::vector<std::string> argv) {
    static int counter = 0;
    ContainerConfig c;
    c.name = fmt::format("rt-{}-{}", ::getpid(), ++counter);
    c.lowerDirs = {kImageRootfs};
    c.bundleDir = tempDir_ / c.name;
    c.argv = std::move(argv);
    c.hostname = "web-1";
    c.capabilities = dockerDefaultCapabilities();
    c.seccomp = dockerDefaultProfile(c.capabilities);
    c.cgroupOptions.parent = kCgroupParent;
    return c;
  }

  // Starts the container, collects everything it writes to stdout/stderr and its exit status.
  // `afterExit` runs once the container has exited, before its bundle is removed.
  Output run(const ContainerConfig& c, const std::function<void()>& afterExit = {}) {
    int pipeFds[2];
    EXPECT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
    UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
    auto container = startContainer(c, Stdio{-1, writeEnd.get(), -1});
    writeEnd.reset();
    Output output;
    if (!container) {
      ADD_FAILURE() << container.error().message();
      return output;
    }
    output.text = readFrom(readEnd.get());
    EXPECT_EQ(::waitpid(container->pid(), &output.status, 0), container->pid());
    if (afterExit) afterExit();
    return output;
  }

  json probe(const ContainerConfig& c) {
    Output output = run(c);
    EXPECT_EQ(output.exitCode(), 0) << output.text;
    try {
      return json::parse(output.text);
    } catch (const std::exception& e) {
      ADD_FAILURE() << "probe output is not JSON (" << e.what() << "): " << output.text;
      return json::object();
    }
  }

  // Nothing of a container with this config remains on the host.
  void expectNothingLeft(const ContainerConfig& c) {
    EXPECT_EQ(readFile("/proc/self/mountinfo").find(c.bundleDir.string()), std::string::npos)
        << "a mount under " << c.bundleDir << " is left";
    for (const char* base : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(base, ec)) {
        EXPECT_FALSE(fs::exists(entry.path() / kCgroupParent / c.name))
            << entry.path() / kCgroupParent / c.name;
      }
      EXPECT_FALSE(fs::exists(fs::path(base) / kCgroupParent / c.name));
    }
    int status = 0;
    errno = 0;
    EXPECT_EQ(::waitpid(-1, &status, WNOHANG), -1) << "a child process is left";
    EXPECT_EQ(errno, ECHILD);
  }

  fs::path tempDir_;
};

TEST_F(ContainerRuntimeTest, ProbeSeesItsOwnNamespacesCapabilitiesAndSeccomp) {
  ContainerConfig c = config({"/usr/bin/corral-probe"});
  c.limits.memoryBytes = 64ull << 20;
  c.limits.pids = 64;
  json report = probe(c);
  ASSERT_TRUE(report.contains("namespaces")) << report.dump();

  // pid 1 of a pid namespace of its own, seeing only itself.
  EXPECT_EQ(report["pid"], 1);
  EXPECT_EQ(report["visiblePids"], json::array({1}));
  EXPECT_EQ(report["hostname"], "web-1");
  for (const char* ns : {"pid", "mnt", "uts", "ipc", "net", "cgroup"}) {
    std::string host = hostNamespace(fmt::format("/proc/self/ns/{}", ns));
    std::string inside = fmt::format("{}:[{}]", ns, report["namespaces"][ns].get<uint64_t>());
    EXPECT_NE(inside, host) << ns << " namespace is the host's";
  }
  EXPECT_EQ(fmt::format("user:[{}]", report["namespaces"]["user"].get<uint64_t>()),
            hostNamespace("/proc/self/ns/user"))
      << "no user namespace was asked for";
  EXPECT_EQ(report["interfaces"], json::array({"lo"}));

  for (const auto& line : report["cgroup"]) {
    EXPECT_TRUE(line.get<std::string>().ends_with(":/"))
        << line << ": the cgroup namespace root is not the container's";
  }

  uint64_t docker = capabilityMask(dockerDefaultCapabilities());
  EXPECT_EQ(report["capabilities"]["CapEff"], fmt::format("{:016x}", docker));
  EXPECT_EQ(report["capabilities"]["CapBnd"], fmt::format("{:016x}", docker));
  EXPECT_EQ(report["capabilities"]["CapPrm"], fmt::format("{:016x}", docker));
  EXPECT_EQ(report["capabilities"]["CapInh"], "0000000000000000");
  EXPECT_EQ(report["capabilities"]["CapAmb"], "0000000000000000");
  EXPECT_EQ(report["noNewPrivs"], 1);
  EXPECT_EQ(report["seccomp"], 2);
  EXPECT_EQ(report["uid"], 0);
}

TEST_F(ContainerRuntimeTest, CgroupOnTheHostHoldsTheLimitsAndTheInit) {
  ContainerConfig c = config({"sh", "-c", "cat /proc/self/cgroup; echo READY; exec sleep 600"});
  c.limits.memoryBytes = 96ull << 20;
  c.limits.pids = 50;
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  {
    auto container = startContainer(c, Stdio{-1, writeEnd.get(), -1});
    writeEnd.reset();
    ASSERT_TRUE(container.has_value()) << container.error().message();
    std::string output = readFrom(readEnd.get(), "READY\n");
    for (const auto& line : lines(output)) {
      if (line == "READY") break;
      EXPECT_TRUE(line.ends_with(":/")) << line;
    }

    auto mode = detectCgroupMode();
    ASSERT_TRUE(mode.has_value());
    std::string relative = container->cgroup().relativePath();
    fs::path memory, pids;
    std::string memoryFile;
    if (*mode == CgroupMode::Unified) {
      memory = pids = fs::path("/sys/fs/cgroup") / relative.substr(1);
      memoryFile = "memory.max";
    } else {
      memory = fs::path("/sys/fs/cgroup/memory") / relative.substr(1);
      pids = fs::path("/sys/fs/cgroup/pids") / relative.substr(1);
      memoryFile = "memory.limit_in_bytes";
    }
    EXPECT_EQ(trim(readFile(memory / memoryFile)), std::to_string(96ull << 20));
    EXPECT_EQ(trim(readFile(pids / "pids.max")), "50");
    std::string procs = readFile(memory / "cgroup.procs");
    EXPECT_NE(procs.find(std::to_string(container->pid())), std::string::npos) << procs;
    EXPECT_GE(container->pidfd(), 0);
  }  // destruction kills the container, removes its cgroup and bundle
  expectNothingLeft(c);
}

// On a v1/hybrid host the container sees each host hierarchy at /sys/fs/cgroup/<name>, rooted at its own
// cgroup (mounted from inside its cgroup namespace), read-only, with the limits it was given.
TEST_F(ContainerRuntimeTest, CgroupTreeInsideShowsItsOwnLimitsReadOnly) {
  auto mode = detectCgroupMode();
  ASSERT_TRUE(mode.has_value());
  // A pure v2 host mounts the cgroup2 tree instead.
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid, CgroupMode::Legacy}});
  ContainerConfig c =
      config({"sh", "-c",
              "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; "
              "cat /sys/fs/cgroup/memory/cgroup.procs; "
              "echo 1 > /sys/fs/cgroup/pids/pids.max && echo WROTE-LIMIT; "
              "mkdir /sys/fs/cgroup/extra && echo MADE-DIR; "
              "echo LIST; ls /sys/fs/cgroup; echo MOUNTS; grep ' /sys/fs/cgroup' /proc/self/mountinfo"});
  c.limits.memoryBytes = 80ull << 20;
  c.limits.pids = 40;
  Output output = run(c);
  EXPECT_EQ(output.exitCode(), 0) << output.text;
  std::vector<std::string> out = lines(output.text);
  ASSERT_GE(out.size(), 4u) << output.text;
  EXPECT_EQ(out[0], std::to_string(80ull << 20));
  EXPECT_EQ(out[1], "40");
  EXPECT_EQ(out[2], "1") << "the container's init is pid 1 in its own cgroup, the mount's root";
  EXPECT_EQ(output.text.find("WROTE-LIMIT"), std::string::npos) << output.text;
  EXPECT_EQ(output.text.find("MADE-DIR"), std::string::npos) << output.text;

  auto list = std::find(out.begin(), out.end(), "LIST");
  auto mounts = std::find(out.begin(), out.end(), "MOUNTS");
  ASSERT_NE(mounts, out.end()) << output.text;
  std::set<std::string> names(list + 1, mounts);
  std::set<std::string> hostNames;
  for (const auto& hierarchy : parseHostCgroupHierarchies(readFile("/proc/self/mountinfo")))
    hostNames.insert(hierarchy.name);
  EXPECT_EQ(names, hostNames) << output.text;
  // Every mount at or under /sys/fs/cgroup is read-only where it is visible: the top mount on each mount
  // point (the tmpfs is made read-only by a bind on top of it). Mount options are field 6 of a line.
  std::map<std::string, std::string> topOptions;
  for (auto line = mounts + 1; line != out.end(); ++line) {
    std::istringstream fields(*line);
    std::string field, mountPoint, options;
    for (int i = 0; i < 6 && fields >> field; ++i) {
      if (i == 4) mountPoint = field;
      options = field;
    }
    topOptions[mountPoint] = options;
  }
  EXPECT_EQ(topOptions.size(), hostNames.size() + 1) << output.text;
  for (const auto& [mountPoint, options] : topOptions)
    EXPECT_TRUE(options.starts_with("ro,") || options == "ro") << mountPoint << " " << options;
}

// The kernel refuses v1 cgroup mounts in a user namespace: /sys/fs/cgroup is there, empty and read-only.
TEST_F(ContainerRuntimeTest, UserNamespaceGetsAnEmptyReadOnlyCgroupDirectory) {
  auto mode = detectCgroupMode();
  ASSERT_TRUE(mode.has_value());
  // A pure v2 host mounts the cgroup2 tree instead.
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid, CgroupMode::Legacy}});
  ContainerConfig c =
      config({"sh", "-c", "echo \"[$(ls -A /sys/fs/cgroup)]\"; touch /sys/fs/cgroup/x && echo WROTE"});
  c.userNamespace = IdMapping::oneRange(200000, 65536);
  Output output = run(c);
  EXPECT_EQ(output.exitCode(), 1) << output.text;
  EXPECT_EQ(lines(output.text).front(), "[]") << output.text;
  EXPECT_EQ(output.text.find("WROTE"), std::string::npos) << output.text;
}

TEST_F(ContainerRuntimeTest, HostnameHostsAndResolvConfAreGenerated) {
  const std::string script =
      "cat /etc/hostname; echo --; cat /etc/hosts; echo --; cat /etc/resolv.conf 2>/dev/null || echo NONE";
  ContainerConfig c = config({"sh", "-c", script});
  Output plain = run(c);
  EXPECT_EQ(plain.exitCode(), 0) << plain.text;
  std::string imageResolv = fs::exists(kImageRootfs / "etc" / "resolv.conf")
                                ? readFile(kImageRootfs / "etc" / "resolv.conf")
                                : std::string("NONE\n");
  EXPECT_EQ(
      plain.text,
      "web-1\n--\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\tweb-1\n--\n" +
          imageResolv);

  ContainerConfig addressed = config({"sh", "-c", script});
  addressed.hostname = "db-2";
  addressed.ipAddress = "10.20.0.7";
  addressed.nameservers = {"10.20.0.1", "fd00::53"};
  Output output = run(addressed);
  EXPECT_EQ(output.exitCode(), 0) << output.text;
  EXPECT_EQ(output.text,
            "db-2\n--\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.20.0.7\tdb-2\n--\n"
            "nameserver 10.20.0.1\nnameserver fd00::53\n");
  // The image itself is untouched: the files live in the container's writable layer.
  EXPECT_NE(readFile(kImageRootfs / "etc" / "hostname"), "db-2\n");
}

// With a user namespace the generated files belong to the container's root, which may edit them.
TEST_F(ContainerRuntimeTest, GeneratedEtcFilesAreEditableByAUserNamespaceRoot) {
  ContainerConfig c = config({"sh", "-c", "echo '10.0.0.9 extra' >> /etc/hosts && tail -n 1 /etc/hosts"});
  c.userNamespace = IdMapping::oneRange(200000, 65536);
  Output output = run(c);
  EXPECT_EQ(output.exitCode(), 0) << output.text;
  EXPECT_EQ(output.text, "10.0.0.9 extra\n");
}

// A hybrid host's unified mount is a real cgroup2 filesystem without controllers: with no limits, a
// container can run there with the v2 driver (forced by pointing the root at it).
TEST_F(ContainerRuntimeTest, ForcedV2OnTheUnifiedMountGroupsKillsAndCleansUp) {
  auto mode = detectCgroupMode();
  ASSERT_TRUE(mode.has_value());
  // A hybrid host's /sys/fs/cgroup/unified, and cgroup.kill for the last part.
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid},
                       .kernelFeatures = {::corral::testing::KernelFeature::CgroupKill}});
  const fs::path unified = "/sys/fs/cgroup/unified";

  // A container that exits on its own: populated 1 while it runs, 0 after.
  ContainerConfig c = config({"sh", "-c", "cat /proc/self/cgroup; echo READY; read line"});
  c.cgroupOptions.root = unified.string();
  fs::path dir;
  {
    int inFds[2], outFds[2];
    ASSERT_EQ(::pipe2(inFds, O_CLOEXEC), 0);
    ASSERT_EQ(::pipe2(outFds, O_CLOEXEC), 0);
    UniqueFd inRead(inFds[0]), inWrite(inFds[1]), outRead(outFds[0]), outWrite(outFds[1]);
    auto container = startContainer(c, Stdio{inRead.get(), outWrite.get(), -1});
    inRead.reset();
    outWrite.reset();
    ASSERT_TRUE(container.has_value()) << container.error().message();
    std::string output = readFrom(outRead.get(), "READY\n");
    EXPECT_TRUE(output.ends_with("\n0::/\nREADY\n"))
        << "the container sees its v2 group as its root: " << output;
    dir = unified / container->cgroup().relativePath().substr(1);
    EXPECT_EQ(container->cgroup().path(), dir.string());
    std::string hostView = readFile(fmt::format("/proc/{}/cgroup", container->pid()));
    EXPECT_NE(hostView.find("\n0::" + container->cgroup().relativePath() + "\n"), std::string::npos)
        << hostView;
    EXPECT_NE(readFile(dir / "cgroup.events").find("populated 1\n"), std::string::npos);
    // An exec'd process is cloned into the same group (its intermediate, by CLONE_INTO_CGROUP).
    ExecOptions options;
    options.argv = {"sleep", "600"};
    auto execPid = execInContainer(container->pid(), container->cgroup(), c, options);
    ASSERT_TRUE(execPid.has_value()) << execPid.error().message();
    std::string execView = readFile(fmt::format("/proc/{}/cgroup", *execPid));
    EXPECT_NE(execView.find("\n0::" + container->cgroup().relativePath() + "\n"), std::string::npos)
        << execView;
    ::kill(*execPid, SIGKILL);
    ASSERT_EQ(::waitpid(*execPid, nullptr, 0), *execPid);
    inWrite.reset();  // EOF: `read` returns and the shell exits
    int status = 0;
    ASSERT_EQ(::waitpid(container->pid(), &status, 0), container->pid());
    EXPECT_TRUE(WIFEXITED(status)) << status;
    EXPECT_NE(readFile(dir / "cgroup.events").find("populated 0\n"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir)) << dir;
  expectNothingLeft(c);

  // A container killed through the group: cgroup.kill (5.14+) takes every process down.
  ContainerConfig k = config({"sh", "-c", "sleep 600 & echo READY; exec sleep 600"});
  k.cgroupOptions.root = unified.string();
  {
    int outFds[2];
    ASSERT_EQ(::pipe2(outFds, O_CLOEXEC), 0);
    UniqueFd outRead(outFds[0]), outWrite(outFds[1]);
    auto container = startContainer(k, Stdio{-1, outWrite.get(), -1});
    outWrite.reset();
    ASSERT_TRUE(container.has_value()) << container.error().message();
    readFrom(outRead.get(), "READY\n");
    dir = unified / container->cgroup().relativePath().substr(1);
    ASSERT_TRUE(fs::exists(dir / "cgroup.kill")) << "the kernel release says it has cgroup.kill";
    EXPECT_EQ(lines(readFile(dir / "cgroup.procs")).size(), 2u);
    ASSERT_TRUE(container->cgroup().killAll());
    int status = 0;
    ASSERT_EQ(::waitpid(container->pid(), &status, 0), container->pid());
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << status;
    EXPECT_EQ(readFile(dir / "cgroup.procs"), "");
    EXPECT_NE(readFile(dir / "cgroup.events").find("populated 0\n"), std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir)) << dir;
  expectNothingLeft(k);
}

// The v1 hierarchies a container joins (cgroup_v1.cc) and, per pid, the group of each as /proc/PID/cgroup
// shows it from the host: controllers ("cpu,cpuacct") → path.
const std::set<std::string> kJoinedV1Controllers = {"memory", "cpu", "cpuacct", "pids", "freezer", "devices"};

std::map<std::string, std::string> v1Groups(pid_t pid) {
  std::map<std::string, std::string> groups;
  for (const auto& line : lines(readFile(fmt::format("/proc/{}/cgroup", pid)))) {
    size_t first = line.find(':'), second = line.find(':', first + 1);
    if (first == std::string::npos || second == std::string::npos) continue;
    std::string controllers = line.substr(first + 1, second - first - 1);
    if (!controllers.empty()) groups[controllers] = line.substr(second + 1);
  }
  return groups;
}

bool isJoinedHierarchy(const std::string& controllers) {
  std::stringstream in(controllers);
  for (std::string controller; std::getline(in, controller, ',');)
    if (kJoinedV1Controllers.contains(controller)) return true;
  return false;
}

// The child moves itself into each v1 hierarchy (a "0" written to `tasks`), and so does an exec's
// intermediate: both init and the exec'd process are in the container's group of every hierarchy it joins,
// and in the starter's group of the others.
TEST_F(ContainerRuntimeTest, CgroupV1InitAndExecAreInEveryJoinedHierarchy) {
  auto mode = detectCgroupMode();
  ASSERT_TRUE(mode.has_value());
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid, CgroupMode::Legacy}});  // v1 hierarchies
  ContainerConfig c = config({"sh", "-c", "echo READY; exec sleep 600"});
  c.limits.memoryBytes = 64ull << 20;
  c.limits.cpuMillis = 500;
  c.limits.pids = 20;
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  {
    auto container = startContainer(c, Stdio{-1, writeEnd.get(), -1});
    writeEnd.reset();
    ASSERT_TRUE(container.has_value()) << container.error().message();
    readFrom(readEnd.get(), "READY\n");
    const std::string relative = container->cgroup().relativePath();

    ExecOptions options;
    options.argv = {"sleep", "600"};
    auto execPid = execInContainer(container->pid(), container->cgroup(), c, options);
    ASSERT_TRUE(execPid.has_value()) << execPid.error().message();

    const auto starter = v1Groups(::getpid());
    for (pid_t pid : {container->pid(), *execPid}) {
      const auto groups = v1Groups(pid);
      size_t joined = 0;
      for (const auto& [controllers, path] : groups) {
        if (isJoinedHierarchy(controllers)) {
          EXPECT_EQ(path, relative) << "pid " << pid << ", hierarchy " << controllers;
          ++joined;
        } else if (starter.contains(controllers)) {
          EXPECT_EQ(path, starter.at(controllers)) << "pid " << pid << ", hierarchy " << controllers;
        }
      }
      EXPECT_GE(joined, 5u) << "memory, cpu(acct), pids, freezer and devices: "
                            << readFile(fmt::format("/proc/{}/cgroup", pid));
      const auto tasks = lines(readFile(fs::path("/sys/fs/cgroup/pids") / relative.substr(1) / "tasks"));
      EXPECT_NE(std::ranges::find(tasks, std::to_string(pid)), tasks.end()) << "pid " << pid;
    }
    ::kill(*execPid, SIGKILL);
    ASSERT_EQ(::waitpid(*execPid, nullptr, 0), *execPid);
  }
  expectNothingLeft(c);
}

// A group the child cannot join (here: removed from the pids hierarchy after creation, while the child
// waits for "go") fails the start naming the `tasks` write, and leaves nothing behind.
TEST_F(ContainerRuntimeTest, CgroupJoinFailureIsNamedAndLeavesNothing) {
  auto mode = detectCgroupMode();
  ASSERT_TRUE(mode.has_value());
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid, CgroupMode::Legacy}});  // v1 hierarchies
  ContainerConfig c = config({"true"});
  const fs::path pidsGroup = fs::canonical("/sys/fs/cgroup/pids") / kCgroupParent / c.name;
  auto container = startContainer(c, Stdio{}, [&](pid_t) -> Status {
    if (::rmdir(pidsGroup.c_str()) != 0) return fail(systemError(errno, "rmdir"));
    return {};
  });
  ASSERT_FALSE(container.has_value());
  EXPECT_EQ(container.error().message(),
            fmt::format("start container {}: cgroup: write(\"{}/tasks\", \"0\"): No such device", c.name,
                        pidsGroup.string()));
  EXPECT_EQ(container.error().errnum(), ENODEV);
  expectNothingLeft(c);
  EXPECT_FALSE(fs::exists(c.bundleDir)) << "the bundle the failed start created is removed";
}

// A start does not copy the starter's address space (issue 15: the copy, and its teardown at the child's
// execve, grew with corrald's heap): init runs on our memory (kcmp KCMP_VM) until its execve, and on its
// own after it. Sanitized builds copy (SharedMemoryClone in container/child.h says why).
TEST_F(ContainerRuntimeTest, InitSharesTheStartersMemoryUntilItsExecve) {
  ContainerConfig c = config({"sleep", "30"});
  long beforeGo = -2;
  {
    auto container = startContainer(c, Stdio{}, [&](pid_t pid) -> Status {
      beforeGo = ::syscall(SYS_kcmp, ::getpid(), pid, KCMP_VM, 0, 0);
      return {};
    });
    ASSERT_TRUE(container.has_value()) << container.error().message();
    ASSERT_GE(beforeGo, 0) << "kcmp(KCMP_VM): " << std::strerror(errno);
    // On a pure v2 host init is cloned straight into its group (clone3 CLONE_INTO_CGROUP), fork-like.
    auto mode = container::detectCgroupMode();
    ASSERT_TRUE(mode.has_value()) << mode.error().message();
    const bool shares = kStartSharesMemory && *mode != container::CgroupMode::Unified;
    EXPECT_EQ(beforeGo == 0, shares) << "kcmp(KCMP_VM) of init before \"go\": " << beforeGo;
    EXPECT_NE(::syscall(SYS_kcmp, ::getpid(), container->pid(), KCMP_VM, 0, 0), 0)
        << "after execve init has its own address space";
  }
  expectNothingLeft(c);
}

// A clone that fails (here: the starter's thread is in a v1 pids group that has room for the thread
// that clones and not for the child) names the call with its flags, and leaves nothing behind.
TEST_F(ContainerRuntimeTest, CloneFailureIsNamedAndLeavesNothing) {
  CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid, CgroupMode::Legacy}});  // a thread's own group
  const fs::path pidsRoot = fs::canonical("/sys/fs/cgroup/pids");
  std::string original;
  for (const auto& line : lines(readFile("/proc/thread-self/cgroup"))) {
    if (line.find(":pids:") != std::string::npos) original = line.substr(line.find(":pids:") + 6);
  }
  ASSERT_FALSE(original.empty()) << "no pids line in /proc/thread-self/cgroup";
  const fs::path limited = pidsRoot / kCgroupParent / "clone-limit";
  fs::create_directories(limited);
  auto writeTo = [](const fs::path& path, const std::string& value) {
    std::ofstream out(path);
    out << value;
    out.close();
    return out.good();
  };
  ASSERT_TRUE(writeTo(limited / "pids.max", "2"));
  ASSERT_TRUE(writeTo(limited / "tasks", std::to_string(::gettid())));
  ContainerConfig c = config({"true"});
  auto container = startContainer(c, Stdio{});
  EXPECT_TRUE(writeTo(pidsRoot / fs::path(original).relative_path() / "tasks", std::to_string(::gettid())));
  EXPECT_EQ(::rmdir(limited.c_str()), 0) << std::strerror(errno);
  ASSERT_FALSE(container.has_value());
  const std::string message = container.error().message();
  EXPECT_TRUE(message.starts_with(fmt::format("start container {}: clone({}CLONE_NEWPID", c.name,
                                              kStartSharesMemory ? "CLONE_VM|CLONE_VFORK|" : "")))
      << message;
  EXPECT_TRUE(message.ends_with("): Resource temporarily unavailable")) << message;
  EXPECT_EQ(container.error().errnum(), EAGAIN);
  expectNothingLeft(c);
  EXPECT_FALSE(fs::exists(c.bundleDir)) << "the bundle the failed start created is removed";
}

// The root's overlay is in the container's mount namespace only, not in the starter's (issue 15: each
// clone(CLONE_NEWNS) copies the starter's table, and corrald's held every running container's overlay),
// with a user namespace (idmapped layers) too; what the container writes lands in its upper directory.
TEST_F(ContainerRuntimeTest, OverlayIsMountedInTheContainersNamespaceOnly) {
  for (bool userNamespace : {false, true}) {
    SCOPED_TRACE(userNamespace ? "user namespace" : "no user namespace");
    ContainerConfig c = config({"sh", "-c", "echo written > /root/file; exec sleep 30"});
    if (userNamespace) c.userNamespace = IdMapping::oneRange(200000, 65536);
    {
      auto container = startContainer(c, Stdio{});
      ASSERT_TRUE(container.has_value()) << container.error().message();
      EXPECT_EQ(readFile("/proc/self/mountinfo").find(c.bundleDir.string()), std::string::npos)
          << "the overlay is in the starter's mount table";
      // A fork-like start (pure v2: clone3 into the group) returns before init has switched roots: wait.
      bool rootIsOverlay = false;
      for (int i = 0; i < 200 && !rootIsOverlay; ++i) {
        if (i > 0) ::usleep(10000);
        for (const auto& line : lines(readFile(fmt::format("/proc/{}/mountinfo", container->pid())))) {
          std::istringstream fields(line);
          std::string id, parent, device, root, mountPoint;
          fields >> id >> parent >> device >> root >> mountPoint;
          const size_t separator = line.find(" - ");
          if (mountPoint == "/" && separator != std::string::npos)
            rootIsOverlay = line.compare(separator + 3, 8, "overlay ") == 0;
        }
      }
      EXPECT_TRUE(rootIsOverlay) << readFile(fmt::format("/proc/{}/mountinfo", container->pid()));
      const fs::path written = c.bundleDir / "upper" / "root" / "file";
      // The shell creates the file, then writes it: wait for the line, not only the file (under TCG the
      // pure-v2 guest read it in between).
      for (int i = 0; i < 200 && readFile(written) != "written\n"; ++i) ::usleep(10000);
      EXPECT_EQ(readFile(written), "written\n");
    }
    expectNothingLeft(c);
  }
}

TEST_F(ContainerRuntimeTest, CapAddAndDropAreReflected) {
  auto caps = resolveCapabilities({"NET_ADMIN"}, {"CHOWN", "NET_RAW"});
  ASSERT_TRUE(caps.has_value());
  ContainerConfig c = config({"cat", "/proc/self/status"});
  c.capabilities = *caps;
  c.seccomp = dockerDefaultProfile(c.capabilities);
  Output output = run(c);
  ASSERT_EQ(output.exitCode(), 0) << output.text;
  EXPECT_EQ(statusField(output.text, "CapEff"), capabilityMask(*caps));
  EXPECT_EQ(statusField(output.text, "CapBnd"), capabilityMask(*caps));
  uint64_t eff = statusField(output.text, "CapEff");
  EXPECT_TRUE(eff & (uint64_t{1} << 12)) << "CAP_NET_ADMIN";
  EXPECT_FALSE(eff & (uint64_t{1} << 0)) << "CAP_CHOWN";
  EXPECT_FALSE(eff & (uint64_t{1} << 13)) << "CAP_NET_RAW";
}

TEST_F(ContainerRuntimeTest, DefaultSeccompRefusesUnshareAndMount) {
  ContainerConfig c = config({"sh", "-c",
                              "unshare -m true; echo unshare=$?; mount -t tmpfs x /mnt; echo mount=$?; "
                              "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status"});
  // Even with CAP_SYS_ADMIN's mount rights taken away only by seccomp: give the capability, keep the profile.
  c.capabilities.push_back("CAP_SYS_ADMIN");
  c.seccomp = dockerDefaultProfile(dockerDefaultCapabilities());
  Output output = run(c);
  EXPECT_EQ(output.exitCode(), 0) << output.text;
  EXPECT_NE(output.text.find("unshare=1"), std::string::npos) << output.text;
  EXPECT_EQ(output.text.find("mount=0"), std::string::npos) << output.text;
  EXPECT_NE(output.text.find("Operation not permitted"), std::string::npos) << output.text;
  EXPECT_EQ(statusField(output.text, "Seccomp", 10), 2u);
  EXPECT_EQ(statusField(output.text, "NoNewPrivs", 10), 1u);
}

// The default profile is an allow list: io_uring (in the table, not allowed) is EPERM; a syscall newer than
// the table (statmount, Linux 6.8) is ENOSYS where the kernel would run it. Unconfined, the same probe
// calls reach the kernel, which is what makes the first two answers the filter's.
TEST_F(ContainerRuntimeTest, DefaultSeccompIsAnAllowList) {
  auto syscallReport = [&](const SeccompProfile& profile, const char* name) {
    ContainerConfig c = config({"/usr/bin/corral-probe", "--syscall", name});
    c.seccomp = profile;
    return probe(c);
  };
  const SeccompProfile profile = dockerDefaultProfile(dockerDefaultCapabilities());
  json ioUring = syscallReport(profile, "io_uring_setup");
  EXPECT_EQ(ioUring["result"], -1) << ioUring.dump();
  EXPECT_EQ(ioUring["error"], "EPERM") << ioUring.dump();
  json newer = syscallReport(profile, "statmount");
  EXPECT_EQ(newer["result"], -1) << newer.dump();
  EXPECT_EQ(newer["error"], "ENOSYS") << newer.dump();

  json ioUringUnconfined = syscallReport(unconfinedProfile(), "io_uring_setup");
  EXPECT_NE(ioUringUnconfined["error"], "ENOSYS")
      << "this kernel has no io_uring: " << ioUringUnconfined.dump();
  if (readFile("/proc/sys/kernel/io_uring_disabled").starts_with("0")) {
    EXPECT_EQ(ioUringUnconfined["error"], "EFAULT") << ioUringUnconfined.dump();
  }
  json newerUnconfined = syscallReport(unconfinedProfile(), "statmount");
  if (newerUnconfined["error"] == "ENOSYS") {
    ADD_FAILURE() << "this kernel predates statmount (6.8): the ENOSYS above proves nothing here";
  } else {
    EXPECT_EQ(newerUnconfined["error"], "EFAULT") << newerUnconfined.dump();
  }
}

// What busybox does every day still works under the allow list: a shell, ls, ps, ping on lo, sleep, a
// fork, a pipe.
TEST_F(ContainerRuntimeTest, BusyboxWorksUnderTheDefaultProfile) {
  ContainerConfig c =
      config({"sh", "-c",
              "ls -l / >/dev/null && ps >/dev/null && ping -c1 -W2 127.0.0.1 >/dev/null && "
              "sleep 0.1 && echo hi | grep -q hi && date >/dev/null && (cat /etc/hostname) && "
              "echo done"});
  Output output = run(c);
  EXPECT_EQ(output.exitCode(), 0) << output.text;
  EXPECT_EQ(output.text, "web-1\ndone\n");
}

// Without any network hook (no --subnet) the container's own loopback is up: 127.0.0.1 answers.
TEST_F(ContainerRuntimeTest, LoopbackIsUpWithoutANetwork) {
  ContainerConfig c =
      config({"sh", "-c", "cat /sys/class/net/lo/flags; ping -c1 -W2 127.0.0.1 >/dev/null; echo ping=$?"});
  Output output = run(c);
  EXPECT_EQ(output.exitCode(), 0) << output.text;
  auto got = lines(output.text);
  ASSERT_EQ(got.size(), 2u) << output.text;
  EXPECT_TRUE(std::stoul(got[0], nullptr, 16) & 0x1) << "IFF_UP not set on lo: " << output.text;
  EXPECT_EQ(got[1], "ping=0") << output.text;
}

// With initBinary the reaper is PID 1 and the command its child; a TERM sent to the container's init
// (what corrald's stop does) reaches the command.
TEST_F(ContainerRuntimeTest, InitForwardsTermAndReapsOrphans) {
  ContainerConfig c = config({"sh", "-c",
                              "echo ppid=$PPID; cat /proc/1/cmdline | tr '\\0' ' '; echo; "
                              "trap 'echo term; exit 42' TERM; echo ready; while :; do sleep 0.05; done"});
  c.initBinary = CORRAL_REAPER_PATH;
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  auto container = startContainer(c, Stdio{-1, writeEnd.get(), -1});
  writeEnd.reset();
  ASSERT_TRUE(container) << container.error().message();
  std::string text = readFrom(readEnd.get(), "ready\n");
  ASSERT_EQ(::kill(container->pid(), SIGTERM), 0);
  text += readFrom(readEnd.get());
  int status = 0;
  ASSERT_EQ(::waitpid(container->pid(), &status, 0), container->pid());
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status) << "; " << text;
  EXPECT_EQ(WEXITSTATUS(status), 42) << text;
  EXPECT_NE(text.find("ppid=1\n/dev/init -- sh -c"), std::string::npos) << text;
  EXPECT_NE(text.find("term\n"), std::string::npos) << text;
}

TEST_F(ContainerRuntimeTest, UnconfinedHasNoFilter) {
  ContainerConfig c = config({"cat", "/proc/self/status"});
  c.seccomp = unconfinedProfile();
  Output output = run(c);
  ASSERT_EQ(output.exitCode(), 0) << output.text;
  EXPECT_EQ(statusField(output.text, "Seccomp", 10), 0u);
  EXPECT_EQ(statusField(output.text, "NoNewPrivs", 10), 1u);
}

TEST_F(ContainerRuntimeTest, UserNamespaceMapsRootToAnUnprivilegedHostId) {
  ContainerConfig c = config({"sh", "-c",
                              "cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /tmp/made-inside; "
                              "echo made=$?; grep CapEff /proc/self/status"});
  c.userNamespace = IdMapping::oneRange(231072, 65536);
  struct stat st {};
  int statResult = -1;
  Output output =
      run(c, [&] { statResult = ::stat((c.bundleDir / "upper" / "tmp" / "made-inside").c_str(), &st); });
  ASSERT_EQ(output.exitCode(), 0) << output.text;
  auto out = lines(output.text);
  ASSERT_GE(out.size(), 5u) << output.text;
  auto squeeze = [](std::string line) {
    std::istringstream in(line);
    std::string word, result;
    while (in >> word) result += (result.empty() ? "" : " ") + word;
    return result;
  };
  EXPECT_EQ(squeeze(out[0]), "0 231072 65536");
  EXPECT_EQ(squeeze(out[1]), "0 231072 65536");
  EXPECT_EQ(out[2], "0") << "root inside";
  EXPECT_EQ(out[3], "made=0");
  EXPECT_EQ(statusField(output.text, "CapEff"), capabilityMask(dockerDefaultCapabilities()));
  ASSERT_EQ(statResult, 0) << "the file is in the container's upper layer";
  EXPECT_EQ(st.st_uid, 231072u) << "root inside is not root outside";
  EXPECT_EQ(st.st_gid, 231072u);
}

// The image is seen through the mapping (an idmapped lower layer): its root-owned files are root's
// inside, root may write wherever it could without a user namespace (the image's /etc and /root), and
// what it creates lands in upper/ owned on the host by the mapped ids: START for root, START+1000 for 1000.
TEST_F(ContainerRuntimeTest, UserNamespaceRootOwnsTheIdmappedImageAndWritesAsItsMappedIds) {
  constexpr uid_t kStart = 362144;
  ContainerConfig c =
      config({"sh", "-c",
              "echo hi > /etc/x && cat /etc/x && ls -ln /bin/busybox | awk '{print $3, $4}' && "
              "stat -c '%u:%g %n' /etc/passwd /etc/hosts /run/host/container-manager / && touch /root/x && "
              "touch /owned && chown 1000:1000 /owned && mkdir -p /var/new && echo DONE"});
  c.userNamespace = IdMapping::oneRange(kStart, 65536);
  std::map<std::string, std::string> hostOwners;  // path under upper/ → "uid:gid" on the host
  Output output = run(c, [&] {
    for (const char* path : {"", "etc/x", "root/x", "owned", "var/new", "etc/hosts"}) {
      struct stat st {};
      hostOwners[path] = ::lstat((c.bundleDir / "upper" / path).c_str(), &st) == 0
                             ? fmt::format("{}:{}", st.st_uid, st.st_gid)
                             : std::string("missing");
    }
  });
  ASSERT_EQ(output.exitCode(), 0) << output.text;
  EXPECT_EQ(output.text,
            "hi\n0 0\n0:0 /etc/passwd\n0:0 /etc/hosts\n0:0 /run/host/container-manager\n0:0 /\nDONE\n");
  const std::string root = fmt::format("{}:{}", kStart, kStart);
  EXPECT_EQ(hostOwners[""], root) << "upper/ itself";
  EXPECT_EQ(hostOwners["etc/x"], root);
  EXPECT_EQ(hostOwners["root/x"], root);
  EXPECT_EQ(hostOwners["var/new"], root);
  EXPECT_EQ(hostOwners["etc/hosts"], root);
  EXPECT_EQ(hostOwners["owned"], fmt::format("{}:{}", kStart + 1000, kStart + 1000));
  struct stat image {};
  ASSERT_EQ(::stat((kImageRootfs / "bin" / "busybox").c_str(), &image), 0);
  EXPECT_EQ(image.st_uid, 0u) << "the image itself is untouched";
  EXPECT_FALSE(fs::exists(kImageRootfs / "etc" / "x"));
  expectNothingLeft(c);
}

// The library takes any ranges (corral-runtime's bundles give them): uid 1000 and up map through a second
// uid range, gids through their own. The parent's files for the container (upper/, the generated /etc
// files) belong to the host ids uid 0 and gid 0 map to, and the idmapped image is root's inside.
TEST_F(ContainerRuntimeTest, UserNamespaceWithSeveralRangesMapsEachIdThroughItsRange) {
  ContainerConfig c = config({"sh", "-c",
                              "cat /proc/self/uid_map /proc/self/gid_map; stat -c '%u:%g' /bin/busybox "
                              "/etc/hosts; touch /owned && chown 1000:1000 /owned && echo DONE"});
  c.userNamespace =
      IdMapping{.uids = {{0, 500000, 1000}, {1000, 600000, 64536}}, .gids = {{0, 700000, 65536}}};
  std::map<std::string, std::string> hostOwners;  // path under upper/ → "uid:gid" on the host
  Output output = run(c, [&] {
    for (const char* path : {"", "owned", "etc/hosts"}) {
      struct stat st {};
      hostOwners[path] = ::lstat((c.bundleDir / "upper" / path).c_str(), &st) == 0
                             ? fmt::format("{}:{}", st.st_uid, st.st_gid)
                             : std::string("missing");
    }
  });
  ASSERT_EQ(output.exitCode(), 0) << output.text;
  EXPECT_EQ(
      output.text,
      "         0     500000       1000\n      1000     600000      64536\n         0     700000      65536\n"
      "0:0\n0:0\nDONE\n");
  EXPECT_EQ(hostOwners[""], "500000:700000") << "upper/ itself";
  EXPECT_EQ(hostOwners["etc/hosts"], "500000:700000");
  EXPECT_EQ(hostOwners["owned"], "600000:701000");
  expectNothingLeft(c);

  // An id no range maps is refused before anything is made, naming it.
  c.user = {.uid = 70000, .gid = 0, .additionalGids = {}};
  auto refused = startContainer(c, Stdio{});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "user") << refused.error().message();
  EXPECT_NE(refused.error().message().find("uid 70000 is not mapped"), std::string::npos)
      << refused.error().message();
  // Overlapping host ranges are refused naming the range.
  c.user = {};
  c.userNamespace->uids[1].hostId = 500500;
  auto overlapping = startContainer(c, Stdio{});
  ASSERT_FALSE(overlapping);
  EXPECT_EQ(overlapping.error().field(), "user_namespace.uids[1].hostID") << overlapping.error().message();
  expectNothingLeft(c);
}

TEST_F(ContainerRuntimeTest, RootfsIsPivotedAndProcAndDevAreLockedDown) {
  std::string hostOnly = (tempDir_ / "host-only-marker").string();
  std::ofstream(hostOnly) << "x";
  ContainerConfig c = config(
      {"sh", "-c",
       fmt::format(
           "test -e {} && echo host-visible; readlink /proc/1/root; "
           "(echo x > /proc/sys/kernel/hostname) 2>/dev/null || echo procsys=ro; "
           "echo masked=$(cat /proc/keys /proc/timer_list /proc/interrupts /proc/kcore 2>/dev/null | wc -c); "
           "ls -A /dev | tr '\\n' ' '; echo; "
           "echo container=$container; cat /run/host/container-manager; "
           "echo PATH=$PATH; ls /sys/firmware | wc -l",
           hostOnly)});
  Output output = run(c);
  ASSERT_EQ(output.exitCode(), 0) << output.text;
  auto out = lines(output.text);
  ASSERT_EQ(out.size(), 8u) << output.text;
  EXPECT_EQ(out[0], "/");
  EXPECT_EQ(out[1], "procsys=ro");
  EXPECT_EQ(out[2], "masked=0") << "/proc/keys, timer_list, interrupts (and kcore where it exists)";
  EXPECT_EQ(out[3], "fd full mqueue null ptmx pts random shm stderr stdin stdout tty urandom zero ");
  EXPECT_EQ(out[4], "container=corral");
  EXPECT_EQ(out[5], "corral");
  EXPECT_EQ(out[6], "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  EXPECT_EQ(out[7], "0") << "/sys/firmware is masked by an empty tmpfs";
}

TEST_F(ContainerRuntimeTest, DevNodesWorkAndPtsIsAPrivateInstance) {
  ContainerConfig c = config({"sh", "-c",
                              "head -c 4 /dev/zero | wc -c; echo hi > /dev/null && echo null-ok; "
                              "grep -E ' /dev/pts ' /proc/self/mounts; readlink /dev/ptmx; ls /dev/pts"});
  Output output = run(c);
  ASSERT_EQ(output.exitCode(), 0) << output.text;
  auto out = lines(output.text);
  ASSERT_GE(out.size(), 4u) << output.text;
  EXPECT_EQ(out[0], "4");
  EXPECT_EQ(out[1], "null-ok");
  EXPECT_NE(out[2].find("devpts"), std::string::npos) << out[2];
  EXPECT_NE(out[2].find("ptmxmode=666"), std::string::npos) << out[2];
  EXPECT_EQ(out[3], "pts/ptmx");
  ASSERT_EQ(out.size(), 5u) << output.text;
  EXPECT_EQ(out[4], "ptmx") << "a new devpts instance has no host terminals";
}

TEST_F(ContainerRuntimeTest, ExecJoinsTheSameNamespacesCgroupAndRestrictions) {
  ContainerConfig c = config({"sh", "-c", "echo READY; exec sleep 600"});
  c.limits.pids = 40;
  c.env = {"GREETING=hello", "MODE=init"};
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  {
    auto container = startContainer(c, Stdio{-1, writeEnd.get(), -1});
    writeEnd.reset();
    ASSERT_TRUE(container.has_value()) << container.error().message();
    readFrom(readEnd.get(), "READY\n");

    int execPipe[2];
    ASSERT_EQ(::pipe2(execPipe, O_CLOEXEC), 0);
    UniqueFd execRead(execPipe[0]), execWrite(execPipe[1]);
    ExecOptions options;
    options.argv = {"sh", "-c",
                    "for n in pid mnt uts ipc net cgroup user; do readlink /proc/self/ns/$n; done; hostname; "
                    "cat /proc/self/cgroup | grep -v ':/$' | wc -l; echo pid=$$; echo container=$container; "
                    "echo env=$GREETING,$MODE; "
                    "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; exit 7"};
    options.env = {"MODE=exec"};
    options.stdio = Stdio{-1, execWrite.get(), -1};
    auto pid = execInContainer(container->pid(), container->cgroup(), c, options);
    execWrite.reset();
    ASSERT_TRUE(pid.has_value()) << pid.error().message();
    std::string output = readFrom(execRead.get());
    int status = 0;
    ASSERT_EQ(::waitpid(*pid, &status, 0), *pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 7) << "the exec's exit status is the command's";

    auto out = lines(output);
    ASSERT_GE(out.size(), 13u) << output;
    const char* names[] = {"pid", "mnt", "uts", "ipc", "net", "cgroup", "user"};
    for (int i = 0; i < 7; ++i) {
      EXPECT_EQ(out[i], hostNamespace(fmt::format("/proc/{}/ns/{}", container->pid(), names[i]))) << names[i];
    }
    EXPECT_EQ(out[7], "web-1");
    EXPECT_EQ(out[8], "0") << "every /proc/self/cgroup line reads \"/\"";
    EXPECT_NE(out[9], "pid=1");
    EXPECT_EQ(out[10], "container=corral");
    EXPECT_EQ(out[11], "env=hello,exec") << "the container's environment, with the exec's entries winning";
    uint64_t docker = capabilityMask(dockerDefaultCapabilities());
    EXPECT_EQ(statusField(output, "CapEff"), docker);
    EXPECT_EQ(statusField(output, "CapBnd"), docker);
    EXPECT_EQ(statusField(output, "NoNewPrivs", 10), 1u);
    EXPECT_EQ(statusField(output, "Seccomp", 10), 2u);

    // A command that does not exist fails with the step named, and leaves no process.
    ExecOptions missing;
    missing.argv = {"no-such-command"};
    auto failed = execInContainer(container->pid(), container->cgroup(), c, missing);
    ASSERT_FALSE(failed.has_value());
    EXPECT_NE(failed.error().message().find("exec in container " + c.name), std::string::npos)
        << failed.error().message();
    EXPECT_NE(failed.error().message().find("execve(\"no-such-command\"): No such file or directory"),
              std::string::npos)
        << failed.error().message();
  }
  expectNothingLeft(c);
}

TEST_F(ContainerRuntimeTest, ExecInAUserNamespaceContainer) {
  ContainerConfig c = config({"sh", "-c", "echo READY; exec sleep 600"});
  c.userNamespace = IdMapping::oneRange(296608, 65536);
  int pipeFds[2];
  ASSERT_EQ(::pipe2(pipeFds, O_CLOEXEC), 0);
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  {
    auto container = startContainer(c, Stdio{-1, writeEnd.get(), -1});
    writeEnd.reset();
    ASSERT_TRUE(container.has_value()) << container.error().message();
    readFrom(readEnd.get(), "READY\n");
    int execPipe[2];
    ASSERT_EQ(::pipe2(execPipe, O_CLOEXEC), 0);
    UniqueFd execRead(execPipe[0]), execWrite(execPipe[1]);
    ExecOptions options;
    options.argv = {"sh", "-c", "id -u; readlink /proc/self/ns/user"};
    options.stdio = Stdio{-1, execWrite.get(), -1};
    auto pid = execInContainer(container->pid(), container->cgroup(), c, options);
    execWrite.reset();
    ASSERT_TRUE(pid.has_value()) << pid.error().message();
    std::string output = readFrom(execRead.get());
    int status = 0;
    ASSERT_EQ(::waitpid(*pid, &status, 0), *pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
    auto out = lines(output);
    ASSERT_EQ(out.size(), 2u) << output;
    EXPECT_EQ(out[0], "0");
    EXPECT_EQ(out[1], hostNamespace(fmt::format("/proc/{}/ns/user", container->pid())));
  }
  expectNothingLeft(c);
}

TEST_F(ContainerRuntimeTest, MissingCommandFailsNamingExecveAndLeavesNothing) {
  ContainerConfig c = config({"/no/such/command", "arg"});
  auto container = startContainer(c, Stdio{});
  ASSERT_FALSE(container.has_value());
  EXPECT_EQ(
      container.error().message(),
      fmt::format("start container {}: execve(\"/no/such/command\"): No such file or directory", c.name));
  EXPECT_EQ(container.error().errnum(), ENOENT);
  expectNothingLeft(c);
  EXPECT_FALSE(fs::exists(c.bundleDir)) << "the bundle the failed start created is removed";
}

TEST_F(ContainerRuntimeTest, BadRootfsPathFailsBeforeAnythingIsCreated) {
  ContainerConfig c = config({"true"});
  c.lowerDirs = {kImageRootfs, tempDir_ / "no-such-image"};
  auto container = startContainer(c, Stdio{});
  ASSERT_FALSE(container.has_value());
  EXPECT_EQ(container.error().message(),
            fmt::format("start container {}: lower_dirs[1]: stat(\"{}\"): No such file or directory", c.name,
                        c.lowerDirs[1].string()));
  expectNothingLeft(c);
}

TEST_F(ContainerRuntimeTest, FailureAfterPivotRootRollsBackEverything) {
  ContainerConfig c = config({"true"});
  c.workingDir = "/bin/busybox/dir";  // a missing directory would be made; one under a file cannot be
  c.limits.pids = 10;
  bool hookRan = false;
  auto container = startContainer(c, Stdio{}, [&](pid_t pid) -> Status {
    hookRan = pid > 0 && fs::exists(fmt::format("/proc/{}/ns/net", pid));
    return {};
  });
  ASSERT_FALSE(container.has_value());
  EXPECT_TRUE(hookRan);
  EXPECT_EQ(container.error().message(),
            fmt::format("start container {}: chdir(\"/bin/busybox/dir\"): Not a directory", c.name));
  expectNothingLeft(c);
}

TEST_F(ContainerRuntimeTest, FailingParentHookStopsTheStart) {
  ContainerConfig c = config({"true"});
  auto container = startContainer(c, Stdio{}, [](pid_t) -> Status {
    return fail(internalError("network: move veth into namespace: boom"));
  });
  ASSERT_FALSE(container.has_value());
  EXPECT_EQ(container.error().message(),
            fmt::format("start container {}: network: move veth into namespace: boom", c.name));
  expectNothingLeft(c);
}

TEST_F(ContainerRuntimeTest, RemoveBundleUnmountsAndDeletes) {
  ContainerConfig c = config({"sh", "-c", "echo data > /root/file"});
  int status = 0;
  {
    auto container = startContainer(c, Stdio{});
    ASSERT_TRUE(container.has_value()) << container.error().message();
    ASSERT_EQ(::waitpid(container->pid(), &status, 0), container->pid());
    container->release();  // destruction now leaves the cgroup and the bundle to us
  }
  EXPECT_TRUE(fs::exists(c.bundleDir / "upper" / "root" / "file"));
  ASSERT_TRUE(fs::create_directories(c.bundleDir / "lower" / "0"));  // what a crash mid-start leaves
  ASSERT_EQ(::mount("tmpfs", (c.bundleDir / "rootfs").c_str(), "tmpfs", 0, nullptr), 0)
      << std::strerror(errno);
  ASSERT_EQ(::mount("tmpfs", (c.bundleDir / "lower" / "0").c_str(), "tmpfs", 0, nullptr), 0);
  auto removed = removeBundle(c.bundleDir);
  ASSERT_TRUE(removed.has_value()) << removed.error().message();
  EXPECT_FALSE(fs::exists(c.bundleDir));
  EXPECT_TRUE(fs::exists(kImageRootfs / "bin" / "busybox")) << "the image itself is untouched";
  EXPECT_TRUE(removeBundle(c.bundleDir).has_value()) << "removing twice is fine";

  auto mode = detectCgroupMode();
  ASSERT_TRUE(mode.has_value());
  auto cgroup = openCgroup(*mode, c.name, c.cgroupOptions);
  ASSERT_TRUE(cgroup.has_value()) << cgroup.error().message();
  EXPECT_TRUE((*cgroup)->destroy().has_value());
}

}  // namespace
}  // namespace corral::container
