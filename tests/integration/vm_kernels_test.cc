// Issue 16's kernels and machines through a real corrald, libvirt and QEMU under TCG (as root): corral's own
// kernel (images/build-guest-kernel, built before these tests by CMake) on microvm and on pc, and Debian's
// cloud kernel on pc, each booted once with a NIC: the boot record and inspect say which kernel and machine
// ran, the probe inside agrees (its kernel release, the virtio transport), the guest reaches a container on
// the same subnet, and a stop through the agent ends the domain. Debian's kernel on microvm, an unknown
// kernel name, a missing kernel file and an unknown machine are refused naming the field, defining nothing.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace corral {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using corral::testing::execIn;
using corral::testing::ourDomains;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

const fs::path kCorralKernel = fs::path(CORRAL_IMAGE_DIR) / "kernels/corral/vmlinux";

struct Pair {
  std::string kernel;   // the spec's "kernel"
  std::string machine;  // the spec's "machine"; empty: the kernel's default
  std::string expectedMachine;
};

TEST(VmKernels, EachKernelBootsOnItsMachinesRunsTheProbeAndReachesAContainer) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  ASSERT_TRUE(fs::is_regular_file(kCorralKernel))
      << kCorralKernel << " is missing: `ninja guest-kernel` (a dependency of integration_tests) builds it";
  TestDaemon daemon("vmkern", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  daemon.must("POST", "/v1/vpcs", {{"name", "lab"}, {"cidr", "10.9.0.0/16"}});
  daemon.must("POST", "/v1/subnets", {{"name", "lab-a"}, {"vpc", "lab"}, {"cidr", "10.9.1.0/24"}});
  // A container on the subnet answering every connection with its name.
  json web = daemon.must("POST", "/v1/instances",
                         {{"name", "web"},
                          {"image", "busybox"},
                          {"command", {"sh", "-c", "nc -ll -p 80 -e /bin/echo web-answers"}},
                          {"subnet", "lab-a"}});
  const std::string webIp = web.value("ip", "");
  ASSERT_FALSE(webIp.empty()) << web.dump();

  const std::vector<Pair> pairs = {{"", "", "microvm"},  // the default once corral's kernel is built
                                   {"corral", "pc", "pc"},
                                   {"debian", "", "pc"}};
  for (size_t i = 0; i < pairs.size(); ++i) {
    const Pair& pair = pairs[i];
    const std::string expectedKernel = pair.kernel.empty() ? "corral" : pair.kernel;
    SCOPED_TRACE(fmt::format("kernel \"{}\" machine \"{}\"", expectedKernel, pair.expectedMachine));
    const std::string name = fmt::format("vm{}", i);
    json spec = {{"name", name}, {"kind", "vm"}, {"memory", "128M"}, {"subnet", "lab-a"}};
    if (!pair.kernel.empty()) spec["kernel"] = pair.kernel;
    if (!pair.machine.empty()) spec["machine"] = pair.machine;
    Reply created = daemon.call("POST", "/v1/instances", spec);
    ASSERT_EQ(created.status, 201) << created.body.dump() << "\n" << daemon.logTail();
    json vm = daemon.waitWhile(name, "starting");
    ASSERT_EQ(vm.value("state", ""), "running") << vm.dump(2) << "\n" << daemon.logTail();

    // corrald's record: the boot and inspect name the kernel and the machine.
    EXPECT_EQ(vm["boot"].value("kernel_source", ""), expectedKernel) << vm["boot"];
    EXPECT_EQ(vm["boot"].value("machine", ""), pair.expectedMachine) << vm["boot"];
    EXPECT_EQ(vm["vm"].value("kernel_source", ""), expectedKernel) << vm["vm"];
    EXPECT_EQ(vm["vm"].value("machine", ""), pair.expectedMachine) << vm["vm"];
    if (expectedKernel == "corral") {
      EXPECT_EQ(fs::path(vm["vm"].value("kernel", "")), kCorralKernel);
    }

    // The guest's own view: its kernel release and the bus its virtio devices sit on.
    auto [probeCode, probeOut] = execIn(daemon, name, {"/usr/bin/corral-probe"});
    ASSERT_EQ(probeCode, 0) << probeOut;
    json report = json::parse(probeOut, nullptr, false);
    ASSERT_FALSE(report.is_discarded()) << probeOut;
    const std::string release = report["kernel"].value("release", "");
    EXPECT_EQ(release, vm["boot"].value("guest_kernel", ""));
    EXPECT_EQ(release.ends_with("-corral"), expectedKernel == "corral") << release;
    EXPECT_EQ(report["virtioTransports"], json::array({pair.expectedMachine == "microvm" ? "mmio" : "pci"}))
        << report.dump();
    EXPECT_EQ(report.value("hostname", ""), name);

    // The VPC: the guest reaches the container on its subnet, and the container's answer comes back.
    std::string answer;
    for (int attempt = 0; attempt < 4 && answer.find("web-answers") == std::string::npos; ++attempt) {
      answer = execIn(daemon, name, {"sh", "-c", fmt::format("nc -w 3 {} 80 </dev/null", webIp)}).second;
      if (answer.find("web-answers") == std::string::npos) std::this_thread::sleep_for(300ms);
    }
    EXPECT_NE(answer.find("web-answers"), std::string::npos) << name << " → " << webIp << ": " << answer;

    // No module errors from the init: corral's kernel has no module support and needs none.
    Reply logs = daemon.call("GET", "/v1/instances/" + name + "/logs?offset=0");
    EXPECT_EQ(logs.body.value("data", "").find("finit_module"), std::string::npos) << logs.body.dump();

    // A stop through the agent ends the domain itself (a kernel without ACPI resets instead of powering
    // off): it does not wait out the grace period for the destroy.
    const auto stopping = Clock::now();
    Reply stopped = daemon.call("POST", "/v1/instances/" + name + "/stop", {{"grace_seconds", 30}});
    ASSERT_EQ(stopped.status, 200) << stopped.body.dump();
    EXPECT_EQ(stopped.body.value("state", ""), "stopped");
    EXPECT_LT(Clock::now() - stopping, 25s) << "the guest did not end its domain; the stop destroyed it";
    // ... cleanly, with no panic on the way. (Before the init reset such a kernel, its reboot(RB_POWER_OFF)
    // became a halt and QEMU ran on: a raw boot of the old init was still running 20 s after "shutdown".)
    Reply after = daemon.call("GET", "/v1/instances/" + name + "/logs?offset=0");
    EXPECT_EQ(after.body.value("data", "").find("Kernel panic"), std::string::npos) << after.body.dump();
    EXPECT_EQ(daemon.call("DELETE", "/v1/instances/" + name + "?force=true").status, 200);
  }
  EXPECT_TRUE(ourDomains().empty());
}

TEST(VmKernels, BadKernelOrMachineIsRefusedNamingTheFieldAndDefinesNothing) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vmkernbad", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  struct Case {
    json patch;
    int status;
    std::string field;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{{"kernel", "linux"}}, 400, "kernel", "neither corral, debian nor an absolute path"},
      {{{"kernel", "/nonexistent/vmlinux"}}, 404, "kernel", "does not exist"},
      {{{"machine", "q35"}}, 400, "machine", "not a machine type"},
      {{{"kernel", "debian"}, {"machine", "microvm"}}, 400, "machine", "--machine pc"},
  };
  for (const Case& c : cases) {
    json spec = {{"name", "bad"}, {"kind", "vm"}, {"memory", "128M"}};
    spec.update(c.patch);
    Reply reply = daemon.call("POST", "/v1/instances", spec);
    EXPECT_EQ(reply.status, c.status) << spec.dump() << " → " << reply.body.dump();
    EXPECT_EQ(reply.body["error"].value("field", ""), c.field) << reply.body.dump();
    EXPECT_NE(reply.body["error"].value("message", "").find(c.says), std::string::npos) << reply.body.dump();
  }
  // The CLI takes the same names and says the same.
  auto run = daemon.cli({"run", "--vm", "--name", "bad", "--machine", "arm"});
  EXPECT_NE(run.code, 0);
  EXPECT_NE(run.err.find("machine"), std::string::npos) << run.err;
  EXPECT_TRUE(ourDomains().empty()) << "nothing was defined in libvirt";
  EXPECT_TRUE(daemon.instances().empty()) << daemon.instances().dump();
  std::error_code ec;
  EXPECT_TRUE(fs::is_empty(daemon.vmsDir(), ec)) << "no per-VM directory left";
}

}  // namespace
}  // namespace corral
