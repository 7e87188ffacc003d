// The direct engine (vmm/qemu.h) on its own, as root under TCG: corral's kernel booted on microvm with a NIC
// until its agent answers, QEMU detached from this process, a second engine object adopting the running VM
// and reporting its end, a VM that ended while no engine watched cleared at the next open, save and restore
// through QEMU's migration stream, and failures (a kernel QEMU cannot load, a corrupted state file) that
// leave nothing: no process, no tap, no socket, no run directory; QEMU in a mount namespace of its own
// with a private /dev.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include "core/rollback.h"
#include "tests/integration/harness.h"
#include "tests/integration/stop_recorder.h"
#include "vmm/agent.h"
#include "vmm/qemu.h"
#include "vmm/vm_cgroup.h"

namespace corral::vmm {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const fs::path kCorralKernel = fs::path(CORRAL_IMAGE_DIR) / "kernels/corral/vmlinux";
const fs::path kInitrd = fs::path(CORRAL_IMAGE_DIR) / "busybox/vm/initramfs.img";

using testing::StopRecorder;

std::string readText(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Running: not gone and not a zombie (QEMU's parent is init, which reaps it a moment after it ends).
bool processAlive(int pid) {
  const std::string stat = readText(fmt::format("/proc/{}/stat", pid));
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

class QemuEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::requireRoot()) GTEST_SKIP() << "needs root for QEMU's tap";
    ASSERT_TRUE(fs::is_regular_file(kCorralKernel)) << kCorralKernel << ": `ninja guest-kernel`";
    ASSERT_TRUE(fs::is_regular_file(kInitrd)) << kInitrd << ": build image-busybox-vm";
    dir_ = fs::temp_directory_path() / fmt::format("corral-qemu-engine-{}", ::getpid());
    fs::create_directories(dir_);
  }
  void TearDown() override {
    engine_.reset();
    // Whatever a failed test left: a new engine adopts it and destroys it.
    if (!dir_.empty()) {
      if (auto engine = open(); engine) {
        if (auto left = (*engine)->listDomains(""); left)
          for (const auto& vm : *left) (void)(*engine)->destroy(vm.name);
      }
      fs::remove_all(dir_);
    }
  }

  Result<std::unique_ptr<Qemu>> open(std::shared_ptr<VmCgroups> cgroups = nullptr,
                                     std::optional<QemuSpawn::User> user = std::nullopt) {
    return Qemu::open({.runRoot = dir_ / "run", .cgroups = std::move(cgroups), .user = std::move(user)},
                      [this](const DomainStopped& stopped) { stops_.record(stopped); });
  }

  DomainConfig config(const std::string& suffix, bool withNic) {
    DomainConfig config;
    config.instanceName = fmt::format("qe{}-{}", ::getpid(), suffix);
    config.domainName = "corral-" + config.instanceName;
    config.owner = dir_.string();
    config.machine = Machine::Microvm;
    config.memoryBytes = 128ull << 20;
    config.kernel = kCorralKernel;
    config.initrd = kInitrd;
    config.cmdline = kernelCommandLine(config.instanceName, config.instanceName, std::nullopt, std::nullopt) +
                     corralKernelTuning(Accelerator::Tcg, std::nullopt, 1);
    config.consoleLog = dir_ / (suffix + ".console.log");
    config.agentSocket = dir_ / (suffix + ".agent.sock");
    config.tcgTranslationCacheMiB = 32;
    if (withNic)
      config.nic =
          NicConfig{fmt::format("crlq{}{}", ::getpid() % 100000, suffix.substr(0, 2)), "52:54:00:aa:bb:01"};
    return config;
  }

  // Whether a run directory of the engine records this VM.
  bool hasRunDir(const std::string& domainName) {
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir_ / "run", ec))
      if (readText(entry.path() / "domain.json").find("\"" + domainName + "\"") != std::string::npos)
        return true;
    return false;
  }

  // Nothing of the VM is left on the host.
  void expectGone(const DomainConfig& config, int pid) {
    EXPECT_FALSE(processAlive(pid)) << "QEMU pid " << pid;
    EXPECT_FALSE(fs::exists(fmt::format("/proc/{}", pid))) << "QEMU pid " << pid << " not reaped";
    EXPECT_FALSE(hasRunDir(config.domainName)) << "run directory";
    EXPECT_FALSE(fs::exists(config.agentSocket)) << config.agentSocket;
    if (config.nic) {
      EXPECT_FALSE(fs::exists("/sys/class/net/" + config.nic->tapName)) << config.nic->tapName;
    }
  }

  fs::path dir_;
  StopRecorder stops_;
  std::unique_ptr<Qemu> engine_;
};

TEST_F(QemuEngineTest, BootsDetachedIsAdoptedByANewEngineAndLeavesNothing) {
  auto opened = open();
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  const DomainConfig vm = config("boot", /*withNic=*/true);
  auto created = engine_->create(vm, /*paused=*/false);
  ASSERT_TRUE(created) << created.error().message();
  ASSERT_TRUE(created->qemuPid);
  const int pid = *created->qemuPid;
  ASSERT_EQ(created->steps.size(), 2u);
  EXPECT_EQ(created->steps[0].first, "spawn");
  EXPECT_EQ(created->steps[1].first, "qmp");
  // Detached: in a session of its own (it is our child until we end: the engine reaps it); its tap exists.
  std::istringstream stat(readText(fmt::format("/proc/{}/stat", pid)));
  std::string field;
  std::vector<std::string> fields;
  while (stat >> field) fields.push_back(field);
  ASSERT_GT(fields.size(), 6u);
  EXPECT_NE(std::stoi(fields[5]), ::getsid(0)) << "session";
  EXPECT_TRUE(fs::exists("/sys/class/net/" + vm.nic->tapName));

  auto agent = AgentClient::connect(vm.agentSocket, Clock::now() + 120s);
  ASSERT_TRUE(agent) << agent.error().message() << "\n" << readText(vm.consoleLog);
  auto uname = agent->exec({"uname", "-r"}, {}, 20s);
  ASSERT_TRUE(uname) << uname.error().message();
  EXPECT_EQ(uname->exitCode, 0);

  auto listed = engine_->listDomains("corral-qe");
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 1u);
  EXPECT_EQ((*listed)[0].owner, dir_.string());
  EXPECT_FALSE((*listed)[0].paused);

  // A new engine (corrald restarted) adopts it: same pid, same uuid, and its end reported there.
  engine_.reset();
  ASSERT_TRUE(processAlive(pid)) << "the VM ended with its engine";
  opened = open();
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  auto found = engine_->lookup(vm.domainName);
  ASSERT_TRUE(found) << found.error().message();
  ASSERT_TRUE(*found);
  EXPECT_EQ((*found)->qemuPid, pid);
  EXPECT_EQ((*found)->uuid, created->uuid);
  // corral's init powers off by a reset on microvm (no ACPI); with -no-reboot that ends QEMU, reported as
  // libvirt reports on_reboot='destroy' (the driver tells it from a kill by the guest's last words).
  ASSERT_TRUE(agent->shutdown());
  EXPECT_EQ(stops_.waitFor(vm.domainName, 60s), StopReason::Destroyed);
  expectGone(vm, pid);
  auto none = engine_->lookup(vm.domainName);
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

// QEMU's seccomp filter (-sandbox, as libvirt's qemu.conf sets it) is on in a running VM, and holds: the
// kernel counts a filter, and no new privileges can be gained (elevateprivileges=deny).
TEST_F(QemuEngineTest, RunsUnderQemusSeccompFilter) {
  auto opened = open();
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  const DomainConfig vm = config("seccomp", /*withNic=*/true);
  auto created = engine_->create(vm, /*paused=*/true);
  ASSERT_TRUE(created) << created.error().message();
  ASSERT_TRUE(created->qemuPid);
  const std::string status = readText(fmt::format("/proc/{}/status", *created->qemuPid));
  EXPECT_NE(status.find("\nSeccomp:\t2\n"), std::string::npos) << status;
  EXPECT_EQ(status.find("\nSeccomp_filters:\t0\n"), std::string::npos) << status;
  EXPECT_NE(status.find("\nNoNewPrivs:\t1\n"), std::string::npos) << status;
  ASSERT_TRUE(engine_->destroy(vm.domainName));
  expectGone(vm, *created->qemuPid);
}

// QEMU runs in a mount namespace of its own whose /dev holds only the nodes it needs (vmm/qemu_spawn.h),
// and the host's unmounts still reach that namespace: a filesystem unmounted on the host (its mount point
// kept, as a container's rootfs is) is not held by QEMU's copy of the mount.
TEST_F(QemuEngineTest, RunsInAMountNamespaceOfItsOwnWithAPrivateDev) {
  // A shared mount (as / and /run/netns are on systemd hosts) with a tmpfs in it.
  const fs::path shared = dir_ / "shared", inner = dir_ / "shared/inner";
  fs::create_directories(shared);
  ASSERT_EQ(::mount(shared.c_str(), shared.c_str(), nullptr, MS_BIND, nullptr), 0) << std::strerror(errno);
  Rollback unmountShared([&] { ::umount2(shared.c_str(), MNT_DETACH); });
  ASSERT_EQ(::mount(nullptr, shared.c_str(), nullptr, MS_SHARED, nullptr), 0) << std::strerror(errno);
  fs::create_directories(inner);
  ASSERT_EQ(::mount("corral-test", inner.c_str(), "tmpfs", 0, "size=64k"), 0) << std::strerror(errno);
  Rollback unmountInner([&] { ::umount2(inner.c_str(), MNT_DETACH); });
  auto opened = open();
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  const DomainConfig vm = config("devs", /*withNic=*/true);
  auto created = engine_->create(vm, /*paused=*/false);
  ASSERT_TRUE(created) << created.error().message();
  ASSERT_TRUE(created->qemuPid);
  const int pid = *created->qemuPid;
  EXPECT_NE(fs::read_symlink(fmt::format("/proc/{}/ns/mnt", pid)), fs::read_symlink("/proc/self/ns/mnt"))
      << "QEMU shares corrald's mount namespace";
  const fs::path dev = fmt::format("/proc/{}/root/dev", pid);
  std::set<std::string> nodes;
  for (const auto& entry : fs::recursive_directory_iterator(dev)) {
    const std::string name = fs::relative(entry.path(), dev).string();
    if (entry.is_directory()) continue;
    nodes.insert(name);
    struct stat st {};
    ASSERT_EQ(::stat(entry.path().c_str(), &st), 0) << name;
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << name;
  }
  const std::set<std::string> allowed = {"null", "zero", "full", "random", "urandom", "net/tun"};
  EXPECT_EQ(nodes, allowed);
  // The tap was opened through the private /dev/net/tun, and the guest boots.
  EXPECT_TRUE(fs::exists("/sys/class/net/" + vm.nic->tapName));
  auto agent = AgentClient::connect(vm.agentSocket, Clock::now() + 120s);
  ASSERT_TRUE(agent) << agent.error().message() << "\n" << readText(vm.consoleLog);

  const std::string mounted = " " + inner.string() + " ";
  EXPECT_NE(readText(fmt::format("/proc/{}/mountinfo", pid)).find(mounted), std::string::npos)
      << "QEMU's namespace is a copy of the host's";
  ASSERT_EQ(::umount2(inner.c_str(), 0), 0) << std::strerror(errno);
  unmountInner.dismiss();
  EXPECT_EQ(readText(fmt::format("/proc/{}/mountinfo", pid)).find(mounted), std::string::npos)
      << "the host's unmount did not reach QEMU's namespace: it keeps that filesystem";
  // QEMU's /dev is its own: the host's is untouched.
  EXPECT_TRUE(fs::exists("/dev/pts"));
  ASSERT_TRUE(engine_->destroy(vm.domainName));
  expectGone(vm, pid);
}

// The line of /proc/PID/cgroup for `hierarchy` ("memory", or "" for v2's "0::"), its path.
std::string cgroupOfPid(int pid, const std::string& hierarchy) {
  std::istringstream lines(readText(fmt::format("/proc/{}/cgroup", pid)));
  for (std::string line; std::getline(lines, line);) {
    const size_t first = line.find(':'), second = line.find(':', first + 1);
    if (line.substr(first + 1, second - first - 1) == hierarchy) return line.substr(second + 1);
  }
  return "";
}

// A VM's QEMU in a cgroup of its own on the host's hierarchy (v1 here: cpu, cpuacct, memory, pids each
// mounted apart), joined before exec, with the memory limit; removed when it is destroyed, and at the next
// open when it ended while no engine watched.
TEST_F(QemuEngineTest, RunsInACgroupOfItsOwnRemovedWhenItEnds) {
  const std::string parent = fmt::format("corral-qe{}", ::getpid());
  auto layout = detectCgroupLayout("/sys/fs/cgroup", parent);
  ASSERT_TRUE(layout) << layout.error().message();
  const bool v2 = layout->version == CgroupVersion::V2;
  const fs::path memoryRoot = v2 ? fs::path("/sys/fs/cgroup") : fs::path("/sys/fs/cgroup/memory");
  Rollback removeParent([&] {
    for (const auto& hierarchy : layout->hierarchies) ::rmdir((hierarchy.root / parent).c_str());
  });
  std::shared_ptr<VmCgroups> cgroups = kernelVmCgroups(*layout);
  auto opened = open(cgroups);
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  const DomainConfig first = config("cg1", /*withNic=*/false);
  const DomainConfig second = config("cg2", /*withNic=*/false);
  auto a = engine_->create(first, /*paused=*/true);
  ASSERT_TRUE(a) << a.error().message();
  const fs::path dirA = memoryRoot / parent / vmCgroupName(first.domainName);
  EXPECT_EQ(cgroupOfPid(*a->qemuPid, v2 ? "" : "memory"),
            "/" + parent + "/" + vmCgroupName(first.domainName));
  EXPECT_EQ(readText(dirA / (v2 ? "memory.max" : "memory.limit_in_bytes")),
            fmt::format("{}\n", vmMemoryLimit(first.memoryBytes, first.tcgTranslationCacheMiB)));
  if (!v2) {
    for (const char* hierarchy : {"cpu", "cpuacct", "pids"})
      EXPECT_EQ(cgroupOfPid(*a->qemuPid, hierarchy), "/" + parent + "/" + vmCgroupName(first.domainName))
          << hierarchy;
  }
  ASSERT_TRUE(engine_->destroy(first.domainName));
  EXPECT_FALSE(fs::exists(dirA)) << "the cgroup outlived its VM";

  auto b = engine_->create(second, /*paused=*/true);
  ASSERT_TRUE(b) << b.error().message();
  const fs::path dirB = memoryRoot / parent / vmCgroupName(second.domainName);
  engine_.reset();
  ASSERT_EQ(::kill(*b->qemuPid, SIGKILL), 0);
  for (int i = 0; i < 100 && processAlive(*b->qemuPid); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(fs::exists(dirB));
  opened = open(cgroups);
  ASSERT_TRUE(opened);
  engine_ = std::move(*opened);
  EXPECT_FALSE(fs::exists(dirB)) << "a cgroup left by a VM that ended unwatched";
  expectGone(second, *b->qemuPid);
}

// The v2 side of the seam on a real cgroup2 mount: the unified root on a v2 host, the hybrid layout's
// controller-less v2 mount (/sys/fs/cgroup/unified) here. QEMU joins through cgroup.procs before exec, and
// the group goes with it.
TEST_F(QemuEngineTest, JoinsACgroupV2ThroughCgroupProcs) {
  const fs::path root =
      fs::exists("/sys/fs/cgroup/unified/cgroup.procs") ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";
  const std::string parent = fmt::format("corral-qe{}-v2", ::getpid());
  auto layout = detectCgroupLayout(root, parent);
  ASSERT_TRUE(layout) << layout.error().message();
  ASSERT_EQ(layout->version, CgroupVersion::V2) << root << " is no cgroup2 mount";
  Rollback removeParent([&] { ::rmdir((root / parent).c_str()); });
  auto opened = open(kernelVmCgroups(*layout));
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  const DomainConfig vm = config("v2", /*withNic=*/false);
  auto created = engine_->create(vm, /*paused=*/true);
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(cgroupOfPid(*created->qemuPid, ""), "/" + parent + "/" + vmCgroupName(vm.domainName));
  EXPECT_EQ(readText(root / parent / vmCgroupName(vm.domainName) / "cgroup.procs"),
            fmt::format("{}\n", *created->qemuPid));
  ASSERT_TRUE(engine_->destroy(vm.domainName));
  EXPECT_FALSE(fs::exists(root / parent / vmCgroupName(vm.domainName)));
}

// QEMU as a user that is not root (libvirt-qemu, as Debian's libvirt runs it; nobody where that user does
// not exist): set before exec, its tap opened by corral and passed as an fd. It boots, its agent answers, it
// saves and restores, and it leaves nothing.
TEST_F(QemuEngineTest, RunsAsAnUnprivilegedUserWithItsTapPassed) {
  const passwd* account = ::getpwnam("libvirt-qemu");
  if (account == nullptr) account = ::getpwnam("nobody");
  ASSERT_NE(account, nullptr) << "neither libvirt-qemu nor nobody exists";
  const QemuSpawn::User user{.uid = account->pw_uid, .gid = account->pw_gid, .groups = {account->pw_gid}};
  auto opened = open(nullptr, user);
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  const DomainConfig vm = config("user", /*withNic=*/true);
  auto created = engine_->create(vm, /*paused=*/false);
  ASSERT_TRUE(created) << created.error().message();
  const std::string status = readText(fmt::format("/proc/{}/status", *created->qemuPid));
  const std::string uid = std::to_string(user.uid);
  EXPECT_NE(status.find(fmt::format("\nUid:\t{0}\t{0}\t{0}\t{0}\n", uid)), std::string::npos) << status;
  EXPECT_NE(status.find(fmt::format("\nGid:\t{0}\t{0}\t{0}\t{0}\n", user.gid)), std::string::npos) << status;
  EXPECT_NE(readText(fmt::format("/proc/{}/cmdline", *created->qemuPid)).find("tap,id=net0,fd=3"),
            std::string::npos);
  EXPECT_TRUE(fs::exists("/sys/class/net/" + vm.nic->tapName));
  {
    auto agent = AgentClient::connect(vm.agentSocket, Clock::now() + 120s);
    ASSERT_TRUE(agent) << agent.error().message() << "\n" << readText(vm.consoleLog);
    ASSERT_TRUE(agent->exec({"sh", "-c", "echo as-user > /tmp/mark"}, {}, 20s));
  }
  const fs::path state = dir_ / "user.state";
  ASSERT_TRUE(engine_->saveToFile(vm.domainName, state));
  expectGone(vm, *created->qemuPid);
  auto restored = engine_->restoreFromFile({.file = state, .config = vm, .paused = false});
  ASSERT_TRUE(restored) << restored.error().message();
  auto agent = AgentClient::connect(vm.agentSocket, Clock::now() + 60s);
  ASSERT_TRUE(agent) << agent.error().message();
  auto mark = agent->exec({"cat", "/tmp/mark"}, {}, 20s);
  ASSERT_TRUE(mark) << mark.error().message();
  EXPECT_EQ(mark->stdoutText, "as-user\n");
  ASSERT_TRUE(engine_->destroy(vm.domainName));
  expectGone(vm, *restored->qemuPid);
}

TEST_F(QemuEngineTest, DestroyEndsItAndAVmThatEndedUnwatchedIsClearedAtOpen) {
  auto opened = open();
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  const DomainConfig first = config("kill", /*withNic=*/true);
  const DomainConfig second = config("gone", /*withNic=*/false);
  auto a = engine_->create(first, /*paused=*/true);
  ASSERT_TRUE(a) << a.error().message();
  auto b = engine_->create(second, /*paused=*/true);
  ASSERT_TRUE(b) << b.error().message();
  auto paused = engine_->lookup(first.domainName);
  ASSERT_TRUE(paused && *paused);
  EXPECT_TRUE((*paused)->paused);
  auto again = engine_->create(first, false);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind(), ErrorKind::Conflict);

  ASSERT_TRUE(engine_->destroy(first.domainName));
  EXPECT_EQ(stops_.waitFor(first.domainName, 5s), StopReason::Destroyed);
  expectGone(first, *a->qemuPid);
  EXPECT_TRUE(engine_->destroy(first.domainName)) << "no such VM is not an error";

  // The second ends while no engine watches it (killed from outside): the next open clears its leftovers.
  engine_.reset();
  ASSERT_EQ(::kill(*b->qemuPid, SIGKILL), 0);
  for (int i = 0; i < 100 && processAlive(*b->qemuPid); ++i) std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(hasRunDir(second.domainName));
  opened = open();
  ASSERT_TRUE(opened);
  engine_ = std::move(*opened);
  auto listed = engine_->listDomains("");
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  expectGone(second, *b->qemuPid);
}

TEST_F(QemuEngineTest, SavesToAFileAndRestoresIt) {
  auto opened = open();
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  const DomainConfig vm = config("save", /*withNic=*/true);
  auto created = engine_->create(vm, false);
  ASSERT_TRUE(created) << created.error().message();
  {
    auto agent = AgentClient::connect(vm.agentSocket, Clock::now() + 120s);
    ASSERT_TRUE(agent) << agent.error().message();
    ASSERT_TRUE(agent->exec(
        {"sh", "-c", "echo before-save > /tmp/mark; echo console-before-save > /dev/console"}, {}, 20s));
  }
  const fs::path state = dir_ / "saved.state";
  ASSERT_TRUE(engine_->saveToFile(vm.domainName, state));
  EXPECT_EQ(stops_.waitFor(vm.domainName, 10s), StopReason::Saved);
  expectGone(vm, *created->qemuPid);
  EXPECT_EQ(savedStateEngine(state), Engine::Qemu);

  auto restored = engine_->restoreFromFile({.file = state, .config = vm, .paused = true});
  ASSERT_TRUE(restored) << restored.error().message();
  ASSERT_EQ(restored->steps.size(), 3u);
  EXPECT_EQ(restored->steps[2].first, "incoming");
  EXPECT_TRUE(restored->paused);
  ASSERT_TRUE(engine_->resume(vm.domainName));
  auto agent = AgentClient::connect(vm.agentSocket, Clock::now() + 60s);
  ASSERT_TRUE(agent) << agent.error().message();
  auto mark = agent->exec({"cat", "/tmp/mark"}, {}, 20s);
  ASSERT_TRUE(mark) << mark.error().message();
  EXPECT_EQ(mark->stdoutText, "before-save\n") << "the guest went on from where it was saved";
  // The console log goes on after the boot's lines.
  EXPECT_NE(readText(vm.consoleLog).find("console-before-save"), std::string::npos);
  // Saved again and restored running (not paused): the guest goes on without a resume.
  ASSERT_TRUE(engine_->saveToFile(vm.domainName, state));
  expectGone(vm, *restored->qemuPid);
  restored = engine_->restoreFromFile({.file = state, .config = vm, .paused = false});
  ASSERT_TRUE(restored) << restored.error().message();
  auto running = engine_->lookup(vm.domainName);
  ASSERT_TRUE(running && *running);
  EXPECT_FALSE((*running)->paused);
  agent = AgentClient::connect(vm.agentSocket, Clock::now() + 60s);
  ASSERT_TRUE(agent) << agent.error().message();
  ASSERT_TRUE(engine_->destroy(vm.domainName));
  expectGone(vm, *restored->qemuPid);

  // A corrupted state: QEMU cannot load it; the restore fails with QEMU's reason and leaves nothing.
  {
    std::fstream file(state, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(4096);
    const std::string junk(4096, 'x');
    file.write(junk.data(), junk.size());
  }
  auto corrupt = engine_->restoreFromFile({.file = state, .config = vm, .paused = false});
  ASSERT_FALSE(corrupt);
  EXPECT_NE(corrupt.error().message().find("restore VM " + vm.domainName), std::string::npos)
      << corrupt.error().message();
  EXPECT_NE(corrupt.error().message().find("load of migration failed"), std::string::npos)
      << "QEMU's own reason: " << corrupt.error().message();
  auto left = engine_->lookup(vm.domainName);
  ASSERT_TRUE(left);
  EXPECT_FALSE(*left);
  EXPECT_FALSE(fs::exists(dir_ / "run")) << "the run root goes with its last VM";
  EXPECT_FALSE(fs::exists("/sys/class/net/" + vm.nic->tapName));
}

TEST_F(QemuEngineTest, QemusOwnErrorIsTheStartsAndNothingStays) {
  auto opened = open();
  ASSERT_TRUE(opened) << opened.error().message();
  engine_ = std::move(*opened);
  DomainConfig vm = config("bad", /*withNic=*/true);
  vm.kernel = dir_ / "no-such-vmlinux";
  auto created = engine_->create(vm, false);
  ASSERT_FALSE(created);
  EXPECT_NE(created.error().message().find("no-such-vmlinux"), std::string::npos)
      << created.error().message();
  EXPECT_FALSE(fs::exists(dir_ / "run")) << "the run root goes with its last VM";
  EXPECT_FALSE(fs::exists("/sys/class/net/" + vm.nic->tapName));
  vm.memoryBytes = 1;
  auto invalid = engine_->create(vm, false);
  ASSERT_FALSE(invalid);
  EXPECT_EQ(invalid.error().field(), "memory");
}

}  // namespace
}  // namespace corral::vmm
