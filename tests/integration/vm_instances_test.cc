// VMs end to end through a real corrald, real libvirt and QEMU under TCG (as root): run, wait for the guest
// agent's "ready", exec (the guest's kernel is not the host's), logs (the guest's console), stop, start,
// rm, a daemon SIGKILLed while a VM runs, a guest that powers itself off, the accelerator probe, the CLI,
// and bad input that defines nothing in libvirt. Each test process uses its own domain prefix, so parallel
// tests and a real corrald on the same libvirtd never see each other's domains.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/client.h"
#include "tests/integration/harness.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using corral::testing::CliRun;
using corral::testing::ourDomains;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;
using corral::testing::virsh;

const std::string kPrefix = corral::testing::testDomainPrefix();

std::string hostKernel() {
  utsname u{};
  ::uname(&u);
  return u.release;
}

// corrald under TCG unless `extraArgs` say otherwise (its cgroup parent holds the containers some tests
// run beside the VMs).
TestDaemon vmDaemon(std::vector<std::string> extraArgs = {"--accelerator", "tcg"}) {
  return TestDaemon("vm", std::move(extraArgs));
}

json vmSpec(const std::string& name) {
  return {{"name", name}, {"kind", "vm"}, {"image", "busybox"}, {"memory", "128M"}};
}

// Runs a VM and waits for its guest; fails the test when it does not get there.
json runReady(const TestDaemon& daemon, const std::string& name, const json& extra = json::object()) {
  json spec = vmSpec(name);
  spec.update(extra);
  Reply created = daemon.call("POST", "/v1/instances", spec);
  EXPECT_EQ(created.status, 201) << created.body.dump();
  EXPECT_EQ(created.body.value("state", ""), "starting") << created.body.dump();
  json ready = daemon.waitWhile(name, "starting");
  EXPECT_EQ(ready.value("state", ""), "running") << ready.dump(2) << "\n" << daemon.log();
  return ready;
}

TEST(VmInstances, RunExecLogsStopStartRemove) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon = vmDaemon();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json vm = runReady(daemon, "vm1");
  ASSERT_EQ(vm.value("state", ""), "running");

  // The boot split and the accelerator, recorded by the daemon.
  const json& boot = vm["boot"];
  for (const char* step :
       {"total_ms", "domain_ms", "firmware_ms", "kernel_ms", "userspace_ms", "guest_uptime_ms"}) {
    EXPECT_TRUE(boot.contains(step) && boot[step].is_number()) << step << ": " << boot.dump();
  }
  EXPECT_EQ(boot.value("accelerator", ""), "tcg");
  EXPECT_GT(boot["total_ms"].get<double>(), boot["domain_ms"].get<double>());
  // domain_ms split into its own steps, which add up to it; the engine's part split into the engine's own
  // steps (the default engine on microvm, corral's kernel's machine, is the direct one).
  EXPECT_EQ(boot.value("engine", ""), "qemu") << boot.dump();
  EXPECT_EQ(vm["vm"].value("engine", ""), "qemu") << vm["vm"].dump();
  double domainSteps = 0;
  for (const char* step : {"prepare_ms", "engine_ms", "nic_ms"}) {
    ASSERT_TRUE(boot["domain_steps"].contains(step) && boot["domain_steps"][step].is_number())
        << step << ": " << boot.dump();
    domainSteps += boot["domain_steps"][step].get<double>();
  }
  EXPECT_NEAR(domainSteps, boot["domain_ms"].get<double>(), 1.0) << boot.dump();
  double engineSteps = 0;
  for (const char* step : {"spawn_ms", "qmp_ms"}) {
    ASSERT_TRUE(boot["domain_steps"].contains(step) && boot["domain_steps"][step].is_number())
        << step << ": " << boot.dump();
    EXPECT_GT(boot["domain_steps"][step].get<double>(), 0) << boot.dump();
    engineSteps += boot["domain_steps"][step].get<double>();
  }
  EXPECT_LE(engineSteps, boot["domain_steps"]["engine_ms"].get<double>() + 0.01) << boot.dump();
  EXPECT_EQ(vm["vm"].value("domain", ""), kPrefix + "vm1");
  EXPECT_TRUE(vm["pid"].is_number()) << "the QEMU pid";
  EXPECT_EQ(ourDomains(), std::vector<std::string>{kPrefix + "vm1"});

  // The heart of the comparison: the guest runs its own kernel.
  Reply uname = daemon.call("POST", "/v1/instances/vm1/exec", {{"command", {"uname", "-r"}}});
  ASSERT_EQ(uname.status, 200) << uname.body.dump();
  std::string guestKernel = uname.body.value("stdout", "");
  while (!guestKernel.empty() && guestKernel.back() == '\n') guestKernel.pop_back();
  EXPECT_FALSE(guestKernel.empty());
  EXPECT_NE(guestKernel, hostKernel());
  EXPECT_EQ(guestKernel, boot.value("guest_kernel", ""));

  Reply probe = daemon.call("POST", "/v1/instances/vm1/exec", {{"command", {"/usr/bin/corral-probe"}}});
  ASSERT_EQ(probe.status, 200) << probe.body.dump();
  json report = json::parse(probe.body.value("stdout", ""), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << probe.body.dump();
  EXPECT_EQ(report.value("hostname", ""), "vm1") << report.dump();

  Reply exit3 =
      daemon.call("POST", "/v1/instances/vm1/exec", {{"command", {"sh", "-c", "echo oops >&2; exit 3"}}});
  ASSERT_EQ(exit3.status, 200);
  EXPECT_EQ(exit3.body["exit_code"], 3);
  EXPECT_EQ(exit3.body.value("stderr", ""), "oops\n");

  // The guest's console is the instance's log.
  Reply logs = daemon.call("GET", "/v1/instances/vm1/logs?offset=0");
  ASSERT_EQ(logs.status, 200);
  EXPECT_NE(logs.body.value("data", "").find("corral-init"), std::string::npos) << logs.body.dump();

  // Not twice, and not a second instance of the same name of either kind.
  EXPECT_EQ(daemon.call("POST", "/v1/instances", vmSpec("vm1")).status, 409);

  Reply stopped = daemon.call("POST", "/v1/instances/vm1/stop", {{"grace_seconds", 20}});
  ASSERT_EQ(stopped.status, 200) << stopped.body.dump();
  EXPECT_EQ(stopped.body.value("state", ""), "stopped");
  EXPECT_EQ(stopped.body.value("exit_reason", ""), "stopped");
  EXPECT_TRUE(ourDomains().empty()) << "a stopped VM is no libvirt domain";
  EXPECT_EQ(daemon.call("POST", "/v1/instances/vm1/exec", {{"command", {"true"}}}).status, 409);

  Reply started = daemon.call("POST", "/v1/instances/vm1/start");
  ASSERT_EQ(started.status, 200) << started.body.dump();
  json again = daemon.waitWhile("vm1", "starting");
  EXPECT_EQ(again.value("state", ""), "running") << again.dump();

  Reply removed = daemon.call("DELETE", "/v1/instances/vm1?force=true");
  EXPECT_EQ(removed.status, 200) << removed.body.dump();
  EXPECT_TRUE(ourDomains().empty());
  EXPECT_FALSE(std::filesystem::exists(daemon.vmsDir() + "/vm1"));
  EXPECT_EQ(daemon.call("GET", "/v1/instances/vm1").status, 404);
}

TEST(VmInstances, SurvivesDaemonKillAndRecordsGuestPoweroff) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon = vmDaemon();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  // The default kernel (corral's, on microvm: no ACPI, no power-off device): busybox's `poweroff` asks
  // PID 1, whose init resets the guest, and the reset ends the domain (images/README.md).
  json vm = runReady(daemon, "pet");
  ASSERT_EQ(vm.value("state", ""), "running");
  EXPECT_EQ(vm["vm"].value("kernel_source", ""), "corral") << vm.dump();
  EXPECT_EQ(vm["spec"].value("kernel", ""), "corral") << vm.dump();
  EXPECT_EQ(vm["spec"].value("machine", ""), "microvm") << vm.dump();
  double bootMs = vm["boot"]["total_ms"].get<double>();

  daemon.kill9();
  EXPECT_EQ(ourDomains(), std::vector<std::string>{kPrefix + "pet"}) << "the VM outlives corrald";
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json found = daemon.call("GET", "/v1/instances/pet").body;
  EXPECT_EQ(found.value("state", ""), "running") << found.dump();
  EXPECT_EQ(found["boot"]["total_ms"].get<double>(), bootMs);
  Reply hostname = daemon.call("POST", "/v1/instances/pet/exec", {{"command", {"hostname"}}});
  ASSERT_EQ(hostname.status, 200) << hostname.body.dump();
  EXPECT_EQ(hostname.body.value("stdout", ""), "pet\n");

  // The guest powers itself off: libvirt's event tells corrald, which records it.
  daemon.call("POST", "/v1/instances/pet/exec", {{"command", {"poweroff"}}});
  json off = daemon.waitWhile("pet", "running", 60s);
  EXPECT_EQ(off.value("state", ""), "stopped") << off.dump();
  EXPECT_EQ(off.value("exit_reason", ""), "shutdown") << off.dump();
  // Its init said why before the reset; the built-in image has no workload, so no exit code.
  ASSERT_TRUE(off["exit_note"].is_string()) << off.dump();
  EXPECT_NE(off["exit_note"].get<std::string>().find("the guest powered off: poweroff (SIGUSR2)"),
            std::string::npos)
      << off.dump();
  EXPECT_TRUE(off["exit_code"].is_null()) << off.dump();
  EXPECT_TRUE(ourDomains().empty());
}

// The direct engine's QEMU is confined as libvirt's was (vmm/README.md "Confinement"): a mount namespace of
// its own whose /dev holds only QEMU's nodes, and a cgroup of its own under corrald's cgroup parent that
// goes with the VM: at rm, at rm after corrald was SIGKILLed and started again, and at that start when the
// VM's QEMU ended meanwhile.
TEST(VmInstances, DirectEngineQemuHasItsOwnDevAndCgroupAndLeavesNoCgroup) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for QEMU's tap and cgroups";
  TestDaemon daemon = vmDaemon();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  // Where the memory controller's VM cgroups are, and the path /proc/PID/cgroup shows for them.
  const std::string memoryRoot =
      std::filesystem::exists("/sys/fs/cgroup/memory") ? "/sys/fs/cgroup/memory" : "/sys/fs/cgroup";
  auto cgroupOf = [&](const std::string& name) {
    return "/" + daemon.cgroupParent() + "/corral-vm-" + kPrefix + name;
  };
  auto memoryCgroupOfPid = [](int pid) {
    std::istringstream lines(corral::testing::readFile(fmt::format("/proc/{}/cgroup", pid)));
    for (std::string line; std::getline(lines, line);) {
      const size_t first = line.find(':'), second = line.find(':', first + 1);
      const std::string controllers = line.substr(first + 1, second - first - 1);
      if (controllers == "memory" ||
          (controllers.empty() && !std::filesystem::exists("/sys/fs/cgroup/memory")))
        return line.substr(second + 1);
    }
    return std::string();
  };

  json vm = runReady(daemon, "jail");
  ASSERT_TRUE(vm["pid"].is_number()) << vm.dump();
  const int pid = vm["pid"].get<int>();
  EXPECT_NE(std::filesystem::read_symlink(fmt::format("/proc/{}/ns/mnt", pid)),
            std::filesystem::read_symlink(fmt::format("/proc/{}/ns/mnt", daemon.pid())))
      << "QEMU in corrald's mount namespace";
  std::vector<std::string> devNodes;
  const std::filesystem::path dev = fmt::format("/proc/{}/root/dev", pid);
  for (const auto& entry : std::filesystem::recursive_directory_iterator(dev))
    if (!entry.is_directory()) devNodes.push_back(std::filesystem::relative(entry.path(), dev).string());
  std::sort(devNodes.begin(), devNodes.end());
  EXPECT_EQ(devNodes, (std::vector<std::string>{"full", "net/tun", "null", "random", "urandom", "zero"}));
  EXPECT_EQ(memoryCgroupOfPid(pid), cgroupOf("jail"));
  EXPECT_NE(memoryCgroupOfPid(daemon.pid()), cgroupOf("jail"));
  const std::string jailDir = memoryRoot + cgroupOf("jail");
  ASSERT_TRUE(std::filesystem::is_directory(jailDir));
  Reply removed = daemon.call("DELETE", "/v1/instances/jail?force=true");
  EXPECT_EQ(removed.status, 200) << removed.body.dump();
  EXPECT_FALSE(std::filesystem::exists(jailDir)) << "the VM's cgroup outlived it";

  // corrald SIGKILLed with two VMs running; one's QEMU ends while no corrald runs.
  json kept = runReady(daemon, "kept");
  json lost = runReady(daemon, "lost");
  ASSERT_TRUE(kept["pid"].is_number() && lost["pid"].is_number());
  daemon.kill9();
  ASSERT_EQ(::kill(lost["pid"].get<int>(), SIGKILL), 0);
  for (int i = 0; i < 250 && std::filesystem::exists(fmt::format("/proc/{}", lost["pid"].get<int>())); ++i)
    std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(std::filesystem::exists(memoryRoot + cgroupOf("lost"))) << "a leftover to reconcile";
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json found = daemon.call("GET", "/v1/instances/lost").body;
  EXPECT_NE(found.value("state", ""), "running") << found.dump();
  EXPECT_FALSE(std::filesystem::exists(memoryRoot + cgroupOf("lost"))) << "left after the restart";
  EXPECT_EQ(memoryCgroupOfPid(kept["pid"].get<int>()), cgroupOf("kept"));
  removed = daemon.call("DELETE", "/v1/instances/kept?force=true");
  EXPECT_EQ(removed.status, 200) << removed.body.dump();
  EXPECT_FALSE(std::filesystem::exists(memoryRoot + cgroupOf("kept")))
      << "an adopted VM's cgroup outlived it";
}

// corrald --vm-user: the direct engine's QEMU runs as that user (auto, the default: libvirt-qemu where
// Debian's libvirt made it), the VM works as root's does, and an unknown user is refused at start, naming
// the option. A user that cannot reach VMS_DIR: refused when named, root (and why, in /v1/info) for auto.
TEST(VmInstances, DirectEngineRunsQemuAsTheVmUser) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for QEMU's tap and setuid";
  const passwd* account = ::getpwnam("libvirt-qemu");
  if (account == nullptr) account = ::getpwnam("nobody");
  ASSERT_NE(account, nullptr);
  const std::string user = account->pw_name;
  const uid_t uid = account->pw_uid;
  {
    TestDaemon refused = vmDaemon({"--accelerator", "tcg", "--vm-user", "corral-no-such-user"});
    EXPECT_FALSE(refused.start());
    EXPECT_NE(refused.log().find("vm-user"), std::string::npos) << refused.log();
  }
  TestDaemon daemon = vmDaemon({"--accelerator", "tcg", "--vm-user", user});
  // The test's temp directory above the state directory closed: a named user is refused, auto is root.
  ASSERT_EQ(::chmod(daemon.dir().c_str(), 0700), 0);
  EXPECT_FALSE(daemon.start()) << "VMS_DIR unreachable by " << user;
  EXPECT_NE(daemon.log().find("--vm-user: \"" + daemon.dir() + "\" is not searchable"), std::string::npos)
      << daemon.log();
  if (user == "libvirt-qemu") {
    daemon.setExtraArgs({"--accelerator", "tcg"});
    ASSERT_TRUE(daemon.start()) << daemon.log();
    json qemuUser = daemon.call("GET", "/v1/info").body["vms"]["qemu_user"];
    EXPECT_EQ(qemuUser.value("mode", ""), "auto") << qemuUser.dump();
    EXPECT_EQ(qemuUser.value("name", ""), "root") << qemuUser.dump();
    EXPECT_NE(qemuUser.value("reason", "").find("cannot reach VMS_DIR"), std::string::npos)
        << qemuUser.dump();
    struct stat state {};
    ASSERT_EQ(::stat((daemon.dir() + "/state").c_str(), &state), 0);
    EXPECT_EQ(state.st_mode & 0777, 0700u) << "a state directory nobody needs to pass kept passable";
    daemon.stop();
  }
  daemon.setExtraArgs({"--accelerator", "tcg", "--vm-user", user});
  ASSERT_EQ(::chmod(daemon.dir().c_str(), 0711), 0);
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json vm = runReady(daemon, "unpriv");
  ASSERT_TRUE(vm["pid"].is_number()) << vm.dump() << daemon.logTail();
  const std::string status = corral::testing::readFile(fmt::format("/proc/{}/status", vm["pid"].get<int>()));
  EXPECT_NE(status.find(fmt::format("\nUid:\t{0}\t{0}\t{0}\t{0}\n", uid)), std::string::npos) << status;
  Reply hostname = daemon.call("POST", "/v1/instances/unpriv/exec", {{"command", {"hostname"}}});
  ASSERT_EQ(hostname.status, 200) << hostname.body.dump();
  EXPECT_EQ(hostname.body.value("stdout", ""), "unpriv\n");
  Reply stopped = daemon.call("POST", "/v1/instances/unpriv/stop", {{"grace_seconds", 20}});
  ASSERT_EQ(stopped.status, 200) << stopped.body.dump();
  Reply started = daemon.call("POST", "/v1/instances/unpriv/start");
  ASSERT_EQ(started.status, 200) << started.body.dump();
  json again = daemon.waitWhile("unpriv", "starting");
  EXPECT_EQ(again.value("state", ""), "running") << again.dump() << daemon.logTail();
  Reply removed = daemon.call("DELETE", "/v1/instances/unpriv?force=true");
  EXPECT_EQ(removed.status, 200) << removed.body.dump();
}

// Two corralds on one libvirtd with one domain prefix (two state directories, as a second checkout's
// corrald would be): the second one's start-up reconcile and its rm of a same-named instance leave the first
// one's running domain alone, because the domain's metadata names the corrald that made it.
TEST(VmInstances, AnotherCorraldWithTheSamePrefixLeavesOurDomainsAlone) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  // libvirt's metadata is what this is about; the direct engine keeps its VMs under each corrald's own
  // VMS_DIR, where another corrald never looks.
  TestDaemon first = vmDaemon({"--accelerator", "tcg", "--vm-engine", "libvirt"});
  ASSERT_TRUE(first.start()) << first.log();
  json vm = runReady(first, "shared");
  ASSERT_EQ(vm.value("state", ""), "running");
  const std::string owner = virsh({"metadata", kPrefix + "shared", "https://corral.dev/xmlns/instance/1"});
  EXPECT_NE(owner.find(first.vmsDir()), std::string::npos) << owner;

  // The second corrald has a VM of its own, so its restart reconciles the prefix's domains.
  TestDaemon second("vm-other", {"--accelerator", "tcg", "--vm-engine", "libvirt"});
  ASSERT_TRUE(second.start()) << second.log();
  ASSERT_EQ(runReady(second, "mine").value("state", ""), "running");
  second.kill9();
  ASSERT_TRUE(second.start()) << second.log();
  std::vector<std::string> both = ourDomains();
  std::sort(both.begin(), both.end());
  EXPECT_EQ(both, (std::vector<std::string>{kPrefix + "mine", kPrefix + "shared"})) << second.log();
  EXPECT_EQ(second.call("GET", "/v1/instances/mine").body.value("state", ""), "running");
  EXPECT_EQ(second.call("DELETE", "/v1/instances/mine?force=true").status, 200);
  // The same name in the second corrald cannot get the domain name: refused, and its clean-up (the failed
  // run's rollback, then rm) destroys nothing of the first's.
  Reply created = second.call("POST", "/v1/instances", vmSpec("shared"));
  if (created.status == 201) {
    json ended = second.waitWhile("shared", "starting");
    EXPECT_NE(ended.value("state", ""), "running") << ended.dump();
  } else {
    EXPECT_NE(created.body.dump().find("already exists"), std::string::npos) << created.body.dump();
  }
  second.call("DELETE", "/v1/instances/shared?force=true");
  EXPECT_EQ(ourDomains(), std::vector<std::string>{kPrefix + "shared"}) << second.log();
  Reply hostname = first.call("POST", "/v1/instances/shared/exec", {{"command", {"hostname"}}});
  EXPECT_EQ(hostname.status, 200) << hostname.body.dump();
  EXPECT_EQ(first.call("DELETE", "/v1/instances/shared?force=true").status, 200);
  EXPECT_TRUE(ourDomains().empty());
}

TEST(VmInstances, BadInputDefinesNothing) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon = vmDaemon();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  ASSERT_EQ(daemon.call("POST", "/v1/instances", {{"name", "taken"}, {"command", {"sleep", "100"}}}).status,
            201);

  struct Case {
    json patch;
    int status;
    std::string field;
  };
  std::vector<Case> cases = {
      {{{"kernel", "/nonexistent/vmlinuz"}}, 404, "kernel"},
      {{{"kernel", "relative/vmlinuz"}}, 400, "kernel"},
      {{{"initrd", "/etc"}}, 400, "initrd"},
      {{{"memory", "1T"}}, 400, "memory"},
      {{{"memory", "1M"}}, 400, "memory"},
      {{{"memory", "-5M"}}, 400, "memory"},
      {{{"cpus", 0.5}}, 400, "cpus"},
      {{{"cpus", 4096}}, 400, "cpus"},
      {{{"cap_add", {"NET_ADMIN"}}}, 400, "cap_add"},
      {{{"pids", 10}}, 400, "pids"},
      {{{"command", {"sh"}}}, 400, "command"},
      {{{"image", "../etc"}}, 400, "image"},
      {{{"image", "nosuchimage"}}, 404, "image"},
      {{{"kind", "lxc"}}, 400, "kind"},
      {{{"name", "taken"}}, 409, ""},
  };
  for (const Case& c : cases) {
    json spec = vmSpec("bad");
    spec.update(c.patch);
    Reply reply = daemon.call("POST", "/v1/instances", spec);
    EXPECT_EQ(reply.status, c.status) << spec.dump() << " → " << reply.body.dump();
    if (!c.field.empty()) {
      EXPECT_EQ(reply.body["error"].value("field", ""), c.field) << reply.body.dump();
    }
    EXPECT_FALSE(reply.body["error"].value("message", "").empty());
  }
  EXPECT_TRUE(ourDomains().empty()) << "nothing was defined in libvirt";
  json all = daemon.call("GET", "/v1/instances").body;
  ASSERT_EQ(all["instances"].size(), 1u) << all.dump();
  EXPECT_EQ(all["instances"][0].value("kind", ""), "container");
  std::error_code ec;
  EXPECT_TRUE(std::filesystem::is_empty(daemon.vmsDir(), ec)) << "no per-VM directory left";
}

TEST(VmInstances, CliRunsACommandInTheGuestAndRemovesIt) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon = vmDaemon();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  CliRun run = daemon.cli({"run", "--vm", "--rm", "--name", "once", "--", "uname", "-r"});
  EXPECT_EQ(run.code, 0) << run.out << run.err << daemon.log();
  EXPECT_FALSE(run.out.empty());
  EXPECT_EQ(run.out.find(hostKernel()), std::string::npos)
      << "the guest's kernel, not the host's: " << run.out;
  EXPECT_EQ(daemon.call("GET", "/v1/instances/once").status, 404) << "--rm removed it";
  EXPECT_TRUE(ourDomains().empty());

  CliRun failing = daemon.cli({"run", "--vm", "--rm", "--name", "fails", "--", "sh", "-c", "exit 7"});
  EXPECT_EQ(failing.code, 7) << failing.out << failing.err;

  CliRun refused = daemon.cli({"run", "--vm", "--name", "nope", "--memory", "1M"});
  EXPECT_NE(refused.code, 0);
  EXPECT_NE(refused.err.find("memory"), std::string::npos) << refused.err;
}

// auto: /dev/kvm answering is not enough; a bounded probe boot decides (here: nested PVM hangs → TCG).
TEST(VmInstances, AcceleratorAutoProbesWithoutHangingAndLeavesNoProbeDomain) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  // The cache is the daemon's own (in its temp dir), so the probe runs here whatever the host decided.
  TestDaemon daemon = vmDaemon({"--accelerator", "auto", "--kvm-probe-timeout", "10"});
  const std::string cache = daemon.acceleratorCache();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json accelerator;
  auto until = Clock::now() + 60s;
  while (Clock::now() < until) {
    accelerator = daemon.call("GET", "/v1/info").body["vms"]["accelerator"];
    if (accelerator.value("state", "") == "decided") break;
    std::this_thread::sleep_for(200ms);
  }
  ASSERT_EQ(accelerator.value("state", ""), "decided") << accelerator.dump() << daemon.log();
  std::string name = accelerator.value("name", "");
  EXPECT_TRUE(name == "kvm" || name == "tcg") << accelerator.dump();
  EXPECT_FALSE(accelerator.value("reason", "").empty());
  EXPECT_EQ(virsh({"list", "--name"}).find(kPrefix + "kvm-probe"), std::string::npos);
  EXPECT_EQ(virsh({"list", "--name"}).find("corral-kvm-probe"), std::string::npos);
  json cached = json::parse(corral::testing::readFile(cache), nullptr, false);
  EXPECT_EQ(cached.value("accelerator", ""), name) << "the decision is kept for this host boot";

  // A VM boots under the chosen accelerator, and says so.
  json vm = runReady(daemon, "accel");
  EXPECT_EQ(vm["boot"].value("accelerator", ""), name) << vm.dump();
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

// An initramfs whose /init is busybox's own init: it boots, but no agent ever says ready.
std::string buildSilentInitramfs(const std::string& dir) {
  std::filesystem::create_directories(dir + "/root/bin");
  std::filesystem::copy_file("/bin/busybox", dir + "/root/init");
  std::string image = dir + "/silent.img";
  pid_t pid = corral::testing::spawnProcess(
      {"/bin/sh", "-c", fmt::format("cd {}/root && find . | /bin/busybox cpio -o -H newc > {}", dir, image)},
      dir + "/cpio.out", {}, corral::testing::OutputMode::Truncate);
  auto status = corral::testing::waitWithDeadline(pid, 30s);
  return status && WIFEXITED(*status) && WEXITSTATUS(*status) == 0 ? image : std::string();
}

TEST(VmInstances, GuestThatNeverGetsReadyIsDestroyedWithTheConsoleTail) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon = vmDaemon({"--accelerator", "tcg", "--vm-boot-timeout", "10"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  std::string initrd = buildSilentInitramfs(daemon.dir() + "/silent");
  ASSERT_FALSE(initrd.empty());
  json spec = vmSpec("silent");
  spec["initrd"] = initrd;
  Reply created = daemon.call("POST", "/v1/instances", spec);
  ASSERT_EQ(created.status, 201) << created.body.dump();
  json after = daemon.waitWhile("silent", "starting", 60s);
  EXPECT_EQ(after.value("state", ""), "stopped") << after.dump();
  EXPECT_EQ(after.value("exit_reason", ""), "boot-timeout") << after.dump();
  std::string note = after.value("exit_note", "");
  EXPECT_NE(note.find("console's last lines"), std::string::npos) << note;
  EXPECT_GT(note.size(), std::string("console's last lines").size() + 40) << "the tail itself: " << note;
  EXPECT_TRUE(ourDomains().empty()) << "the domain was destroyed";

  // The CLI says so too, with the console's last lines, and fails.
  CliRun run = daemon.cli({"run", "--vm", "--name", "silent2", "--initrd", initrd});
  EXPECT_EQ(run.code, 1) << run.out << run.err;
  EXPECT_NE(run.err.find("did not become ready"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("boot-timeout"), std::string::npos) << run.err;
}

TEST(VmInstances, UnreachableLibvirtIsAClearErrorAndContainersStillRun) {
  if (!requireRoot()) GTEST_SKIP() << "needs root";
  TestDaemon daemon = vmDaemon({"--accelerator", "tcg", "--vm-engine", "libvirt", "--libvirt-uri",
                                "qemu+unix:///system?socket=/nonexistent/libvirt-sock"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  Reply vm = daemon.call("POST", "/v1/instances", vmSpec("vm1"));
  EXPECT_EQ(vm.status, 503) << vm.body.dump();
  EXPECT_NE(vm.body["error"].value("message", "").find("libvirtd"), std::string::npos) << vm.body.dump();
  EXPECT_EQ(daemon.call("GET", "/v1/instances/vm1").status, 404) << "nothing recorded";
  json info = daemon.call("GET", "/v1/info").body;
  EXPECT_EQ(info["vms"]["libvirt"]["reachable"], false) << info.dump();
  EXPECT_EQ(info["vms"]["engine"], "libvirt") << info.dump();
  Reply container = daemon.call("POST", "/v1/instances", {{"name", "c1"}, {"command", {"true"}}});
  EXPECT_EQ(container.status, 201) << container.body.dump();
  daemon.stop();

  // The direct engine needs no libvirtd: the same corrald with the default engine boots the microvm VM.
  TestDaemon direct("vm-direct", {"--accelerator", "tcg", "--libvirt-uri",
                                  "qemu+unix:///system?socket=/nonexistent/libvirt-sock"});
  ASSERT_TRUE(direct.start()) << direct.log();
  EXPECT_EQ(direct.call("GET", "/v1/info").body["vms"]["engine"], "auto");
  json booted = runReady(direct, "vm2");
  EXPECT_EQ(booted.value("state", ""), "running") << booted.dump() << direct.logTail();
  EXPECT_EQ(booted["boot"].value("engine", ""), "qemu") << booted.dump();
  EXPECT_EQ(direct.call("DELETE", "/v1/instances/vm2?force=true").status, 200);
  EXPECT_TRUE(ourDomains().empty());
}

}  // namespace
}  // namespace corral
