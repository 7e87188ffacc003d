// vmm/ against the real libvirtd (qemu:///system, TCG): domain XML accepted by virt-xml-validate, a booted
// guest answering its agent, lifecycle events, and the accelerator choice on this (nested PVM) host.
#include <gtest/gtest.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <sstream>

#include "vmm/accel.h"
#include "tests/integration/stop_recorder.h"
#include "vmm/agent.h"
#include "vmm/domain_xml.h"
#include "vmm/libvirt.h"

namespace corral::vmm {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const std::filesystem::path kVmImageDir = std::filesystem::path(CORRAL_IMAGE_DIR) / "busybox" / "vm";

std::string readText(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

using testing::StopRecorder;

class VmmTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (geteuid() != 0) return;
    workDir_ = std::filesystem::temp_directory_path() / ("corral-vmm-test-" + std::to_string(getpid()));
    std::filesystem::create_directories(workDir_);
    recorder_ = new StopRecorder;
    auto opened =
        Libvirt::open("qemu:///system", [](const DomainStopped& stopped) { recorder_->record(stopped); });
    if (!opened) {
      openError_ = opened.error().message();
      return;
    }
    libvirt_ = opened->release();
  }

  static void TearDownTestSuite() {
    if (libvirt_ != nullptr) {
      for (const auto& name : created_) (void)libvirt_->destroy(name);
      delete libvirt_;
      libvirt_ = nullptr;
    }
    delete recorder_;
    recorder_ = nullptr;
    if (!workDir_.empty()) std::filesystem::remove_all(workDir_);
  }

  void SetUp() override {
    if (geteuid() != 0) {
      if (getenv("CORRAL_REQUIRE_PRIVILEGED")) FAIL() << "needs root for qemu:///system";
      GTEST_SKIP() << "needs root for qemu:///system";
    }
    ASSERT_NE(libvirt_, nullptr) << openError_;
    ASSERT_TRUE(std::filesystem::exists(kVmImageDir / "vmlinuz"))
        << kVmImageDir << ": build image-busybox-vm";
    ASSERT_TRUE(std::filesystem::exists(kVmImageDir / "initramfs.img"));
  }

  // A TCG domain named corral-vmmtest-PID-SUFFIX, destroyed at the end of the suite whatever happens.
  static DomainConfig config(const std::string& suffix) {
    DomainConfig config;
    config.instanceName = fmt::format("vmmtest-{}-{}", getpid(), suffix);
    config.domainName = "corral-" + config.instanceName;
    config.accelerator = Accelerator::Tcg;
    config.memoryBytes = 256ull << 20;
    config.kernel = kVmImageDir / "vmlinuz";
    config.initrd = kVmImageDir / "initramfs.img";
    // Without "quiet", so the console log shows the kernel's own messages.
    config.cmdline = fmt::format("console=ttyS0 panic=-1 corral.name={}", config.instanceName);
    config.consoleLog = workDir_ / (suffix + ".console.log");
    config.agentSocket = workDir_ / (suffix + ".agent.sock");
    return config;
  }

  static Result<AgentClient> boot(const DomainConfig& config) {
    created_.push_back(config.domainName);
    auto created = libvirt_->createTransient(domainXml(config));
    if (!created) return fail(created.error());
    return AgentClient::connect(config.agentSocket, Clock::now() + 60s);
  }

  // One booted domain shared by the read-only tests, booted by the first one that needs it.
  static AgentClient* shared() {
    if (!shared_ && sharedError_.empty()) {
      auto agent = boot(config("shared"));
      if (agent)
        shared_.emplace(std::move(*agent));
      else
        sharedError_ = agent.error().message();
    }
    return shared_ ? &*shared_ : nullptr;
  }

  static inline std::filesystem::path workDir_;
  static inline Libvirt* libvirt_ = nullptr;
  static inline std::string openError_;
  static inline StopRecorder* recorder_ = nullptr;
  static inline std::vector<std::string> created_;
  static inline std::optional<AgentClient> shared_;
  static inline std::string sharedError_;
};

TEST_F(VmmTest, VirtXmlValidateAcceptsAllVariants) {
  for (auto machine : {Machine::Pc, Machine::Microvm}) {
    for (bool withNic : {false, true}) {
      auto domain = config("validate");
      domain.machine = machine;
      domain.accelerator = withNic ? Accelerator::Kvm : Accelerator::Tcg;
      domain.kernel = "/tmp/a&b/vmlinuz";  // escaping must keep the XML valid
      if (withNic) domain.nic = NicConfig{"crl-t-x", "52:54:00:12:34:56"};
      // An image VM's disks: its qcow2 overlay and the read-only config disk.
      if (withNic) {
        domain.disks = {{"/var/lib/corral/vms/x/root.qcow2", DiskFormat::Qcow2, "corral-root", false},
                        {"/var/lib/corral/vms/x/config.img", DiskFormat::Raw, "corral-config", true}};
      }
      const auto path = workDir_ / "domain.xml";
      std::ofstream(path) << domainXml(domain);
      const std::string command = fmt::format("virt-xml-validate '{}' domain >/dev/null 2>&1", path.string());
      EXPECT_EQ(std::system(command.c_str()), 0)
          << machineName(machine) << (withNic ? " with NIC" : "") << "\n"
          << readText(path);
    }
  }
}

TEST_F(VmmTest, GuestRunsCommandsWithItsOwnKernel) {
  auto* agent = shared();
  ASSERT_NE(agent, nullptr) << sharedError_;
  EXPECT_FALSE(agent->ready().kernel.empty());
  EXPECT_GT(agent->ready().uptimeMs, 0);
  auto uname = agent->exec({"uname", "-r"}, {}, 20s);
  ASSERT_TRUE(uname) << uname.error().message();
  EXPECT_EQ(uname->exitCode, 0) << uname->stderrText;
  utsname host{};
  ASSERT_EQ(::uname(&host), 0);
  std::string release = uname->stdoutText;
  while (!release.empty() && release.back() == '\n') release.pop_back();
  EXPECT_FALSE(release.empty());
  EXPECT_NE(release, host.release);
  EXPECT_EQ(release, agent->ready().kernel);
}

TEST_F(VmmTest, ProbeReportsJson) {
  auto* agent = shared();
  ASSERT_NE(agent, nullptr) << sharedError_;
  auto probe = agent->exec({"/usr/bin/corral-probe"}, {}, 30s);
  ASSERT_TRUE(probe) << probe.error().message();
  EXPECT_EQ(probe->exitCode, 0) << probe->stderrText;
  auto report = nlohmann::json::parse(probe->stdoutText, nullptr, false);
  EXPECT_FALSE(report.is_discarded()) << probe->stdoutText;
  EXPECT_TRUE(report.is_object()) << probe->stdoutText;
}

TEST_F(VmmTest, LookupAndListSeeTheRunningDomain) {
  ASSERT_NE(shared(), nullptr) << sharedError_;
  const auto name = config("shared").domainName;
  auto found = libvirt_->lookup(name);
  ASSERT_TRUE(found) << found.error().message();
  ASSERT_TRUE(found->has_value());
  EXPECT_TRUE((*found)->running);
  EXPECT_EQ((*found)->uuid.size(), 36u);
  ASSERT_TRUE((*found)->qemuPid.has_value());
  // The static DAC seclabel: QEMU runs as root.
  std::ifstream status(fmt::format("/proc/{}/status", *(*found)->qemuPid));
  std::string line;
  while (std::getline(status, line) && !line.starts_with("Uid:")) {
  }
  EXPECT_TRUE(line.starts_with("Uid:\t0\t")) << line;

  auto listed = libvirt_->listDomains("corral-");
  ASSERT_TRUE(listed) << listed.error().message();
  bool seen = false;
  for (const auto& domain : *listed) {
    EXPECT_TRUE(domain.name.starts_with("corral-"));
    seen = seen || domain.name == name;
  }
  EXPECT_TRUE(seen);
  auto none = libvirt_->listDomains("no-such-prefix-");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->empty());
}

TEST_F(VmmTest, ConsoleLogHasTheKernelBanner) {
  ASSERT_NE(shared(), nullptr) << sharedError_;
  EXPECT_NE(readText(config("shared").consoleLog).find("Linux version"), std::string::npos);
}

TEST_F(VmmTest, LookupOfMissingDomainIsEmpty) {
  auto found = libvirt_->lookup(fmt::format("corral-vmmtest-{}-missing", getpid()));
  ASSERT_TRUE(found) << found.error().message();
  EXPECT_FALSE(found->has_value());
  EXPECT_TRUE(libvirt_->destroy(fmt::format("corral-vmmtest-{}-missing", getpid())));
}

TEST_F(VmmTest, UnreachableLibvirtdIsUnavailable) {
  auto opened = Libvirt::open("qemu+unix:///system?socket=/nonexistent/libvirt-sock", {});
  ASSERT_FALSE(opened);
  EXPECT_EQ(opened.error().kind(), ErrorKind::Unavailable);
  EXPECT_NE(opened.error().message().find("libvirtd -d"), std::string::npos) << opened.error().message();
}

TEST_F(VmmTest, HypervisorVersion) {
  auto version = libvirt_->hypervisorVersion();
  ASSERT_TRUE(version) << version.error().message();
  EXPECT_TRUE(version->starts_with("QEMU ")) << *version;
  EXPECT_NE(version->find(" via libvirt "), std::string::npos) << *version;
}

TEST_F(VmmTest, CreateFailureCarriesLibvirtsMessage) {
  auto domain = config("bad");
  domain.kernel = workDir_ / "no-such-kernel";
  auto created = libvirt_->createTransient(domainXml(domain));
  created_.push_back(domain.domainName);
  ASSERT_FALSE(created);
  EXPECT_TRUE(created.error().message().starts_with("virDomainCreateXML: ")) << created.error().message();
}

// Shutdown through the agent and destroy, booted side by side to halve the wait.
TEST_F(VmmTest, StopEventsCarryTheReason) {
  const auto forShutdown = config("shutdown");
  const auto forDestroy = config("destroy");
  created_.push_back(forShutdown.domainName);
  created_.push_back(forDestroy.domainName);
  auto first = libvirt_->createTransient(domainXml(forShutdown));
  ASSERT_TRUE(first) << first.error().message();
  auto second = libvirt_->createTransient(domainXml(forDestroy));
  ASSERT_TRUE(second) << second.error().message();

  auto agent = AgentClient::connect(forShutdown.agentSocket, Clock::now() + 60s);
  ASSERT_TRUE(agent) << agent.error().message();
  auto down = agent->shutdown();
  ASSERT_TRUE(down) << down.error().message();
  EXPECT_EQ(recorder_->waitFor(forShutdown.domainName, 30s), StopReason::Shutdown);

  ASSERT_TRUE(libvirt_->destroy(forDestroy.domainName));
  EXPECT_EQ(recorder_->waitFor(forDestroy.domainName, 10s), StopReason::Destroyed);
  auto gone = libvirt_->lookup(forDestroy.domainName);
  ASSERT_TRUE(gone);
  EXPECT_FALSE(gone->has_value());
}

TEST_F(VmmTest, ChooseAcceleratorFallsBackToTcgOnThisHost) {
  const auto timeout = 8000ms;
  const auto start = Clock::now();
  auto choice = chooseAccelerator(*libvirt_, kVmImageDir / "vmlinuz", kVmImageDir / "initramfs.img",
                                  Machine::Pc, workDir_ / "kvm-probe", timeout);
  EXPECT_LT(Clock::now() - start, timeout + 10s);
  // This project's host is nested PVM: KVM answers ioctls but a guest hangs. Elsewhere KVM may work.
  if (choice.accelerator == Accelerator::Kvm) {
    EXPECT_NE(choice.reason.find("reached userspace"), std::string::npos) << choice.reason;
  } else {
    EXPECT_FALSE(choice.reason.empty());
  }
  std::cerr << "accelerator: " << acceleratorName(choice.accelerator) << ": " << choice.reason << "\n";
  auto probe = libvirt_->lookup("corral-kvm-probe");
  ASSERT_TRUE(probe) << probe.error().message();
  EXPECT_FALSE(probe->has_value());
}

}  // namespace
}  // namespace corral::vmm
