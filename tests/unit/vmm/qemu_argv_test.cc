// The direct engine's QEMU command line (vmm/qemu_argv.h), one argument a line, compared with golden files.
#include "vmm/qemu_argv.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include "tests/unit/vmm/golden.h"
#include "vmm/hypervisor.h"

namespace corral::vmm {
namespace {

DomainConfig microvmConfig() {
  DomainConfig config;
  config.domainName = "corral-web-1";
  config.instanceName = "web-1";
  config.machine = Machine::Microvm;
  config.memoryBytes = 128ull << 20;
  config.kernel = "/var/lib/corral/kernels/corral/vmlinux";
  config.initrd = "/var/lib/corral/images/busybox/vm/initramfs.img";
  config.cmdline = kernelCommandLine("web-1", "web-1", "10.0.1.5/24", "10.0.1.1");
  config.consoleLog = "/var/lib/corral/vms/web-1/console.log";
  config.agentSocket = "/var/lib/corral/vms/web-1/agent.sock";
  config.consoleSocket = "/var/lib/corral/vms/web-1/console.sock";
  config.nic = NicConfig{"crl-t-web1", "52:54:00:12:34:56"};
  config.tcgTranslationCacheMiB = 32;
  config.freePageReporting = true;
  return config;
}

void expectGolden(const std::vector<std::string>& argv, const std::string& name) {
  std::string text;
  for (const auto& arg : argv) text += arg + "\n";
  vmm::expectGolden(text, name);
}

const QemuRunFiles kFiles = QemuRunFiles::in("/var/lib/corral/vms/.qemu/corral-web-1");

TEST(QemuArgv, TcgMicrovmWithNic) {
  expectGolden(
      qemuArgv(microvmConfig(), kFiles, {.paused = true, .uuid = "0b7c5c7e-1b55-4b0e-9a3f-2d7c1f1e9a01"}),
      "qemu_tcg_microvm_nic.args");
}

// On the OVN backend: Geneve's MTU offered to the guest, and no checksum or TSO offload (br-int's userspace
// datapath reads the tap through AF_PACKET, which finishes neither).
TEST(QemuArgv, OvnNicHasGenevesMtuAndNoOffloads) {
  DomainConfig config = microvmConfig();
  config.nic->mtu = 1400;
  config.nic->hostOffloads = false;
  auto argv = qemuArgv(config, kFiles, {.paused = true, .uuid = "0b7c5c7e-1b55-4b0e-9a3f-2d7c1f1e9a01"});
  EXPECT_NE(
      std::find(argv.begin(), argv.end(),
                "virtio-net-device,netdev=net0,mac=52:54:00:12:34:56,host_mtu=1400,csum=off,host_tso4=off,"
                "host_tso6=off"),
      argv.end());
}

TEST(QemuArgv, KvmPcWithDisksRestoring) {
  DomainConfig config = microvmConfig();
  config.machine = Machine::Pc;
  config.accelerator = Accelerator::Kvm;
  config.vcpus = 2;
  config.nic.reset();
  config.disks = {
      {.path = "/var/lib/corral/vms/web-1/root.qcow2", .format = DiskFormat::Qcow2, .serial = "corral-root"},
      {.path = "/var/lib/corral/vms/web-1/config.img", .serial = "corral-config", .readOnly = true}};
  expectGolden(
      qemuArgv(config, kFiles,
               {.incoming = true, .uuid = "0b7c5c7e-1b55-4b0e-9a3f-2d7c1f1e9a01", .binary = "/usr/bin/qemu"}),
      "qemu_kvm_pc_disks_incoming.args");
}

// QEMU's option syntax: a comma inside a path is doubled, or it would start another option.
TEST(QemuArgv, CommasInPathsAreDoubled) {
  DomainConfig config = microvmConfig();
  config.consoleLog = "/tmp/a,b/console.log";
  config.consoleSocket = "/tmp/a,b/console.sock";
  auto argv = qemuArgv(config, kFiles, {.uuid = "u"});
  EXPECT_NE(std::find(argv.begin(), argv.end(),
                      "socket,id=console,path=/tmp/a,,b/console.sock,server=on,wait=off,"
                      "logfile=/tmp/a,,b/console.log,logappend=off"),
            argv.end());
  config.consoleSocket.clear();
  argv = qemuArgv(config, kFiles, {.uuid = "u"});
  EXPECT_NE(std::find(argv.begin(), argv.end(), "file,id=console,path=/tmp/a,,b/console.log"), argv.end());
}

// A restored VM's console log goes on after the boot's lines, with a socket as with a file.
TEST(QemuArgv, ConsoleSocketLogAppendsWhenRestoring) {
  DomainConfig config = microvmConfig();
  auto argv = qemuArgv(config, kFiles, {.incoming = true, .uuid = "u"});
  const auto console = std::find_if(
      argv.begin(), argv.end(), [](const std::string& arg) { return arg.starts_with("socket,id=console,"); });
  ASSERT_NE(console, argv.end());
  EXPECT_TRUE(console->ends_with(",logappend=on")) << *console;
}

// No balloon device without free page reporting (Debian's kernel: the libvirt engine's memballoon 'none').
TEST(QemuArgv, NoBalloonWithoutFreePageReporting) {
  DomainConfig config = microvmConfig();
  config.freePageReporting = false;
  for (const auto& arg : qemuArgv(config, kFiles, {.uuid = "u"}))
    EXPECT_EQ(arg.find("balloon"), std::string::npos) << arg;
}

// A QEMU that is not root gets its tap as an fd corral opened (vmm/qemu.h), by number instead of by name.
TEST(QemuArgv, APassedTapIsNamedByItsFd) {
  auto argv = qemuArgv(microvmConfig(), kFiles, {.uuid = "u", .tapFd = 3});
  EXPECT_NE(std::find(argv.begin(), argv.end(), "tap,id=net0,fd=3"), argv.end());
  for (const auto& arg : argv) EXPECT_EQ(arg.find("ifname="), std::string::npos) << arg;
}

TEST(SavedStateEngine, TellsLibvirtFromQemuStreams) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("corral-saved-engine-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "libvirt") << "LibvirtQemudSave" << std::string(100, '\0');
  std::ofstream(dir / "qemu") << "QEVM" << std::string(100, '\1');
  std::ofstream(dir / "other") << "something else entirely";
  std::ofstream(dir / "short") << "QE";
  EXPECT_EQ(savedStateEngine(dir / "libvirt"), Engine::Libvirt);
  EXPECT_EQ(savedStateEngine(dir / "qemu"), Engine::Qemu);
  EXPECT_EQ(savedStateEngine(dir / "other"), std::nullopt);
  EXPECT_EQ(savedStateEngine(dir / "short"), std::nullopt);
  EXPECT_EQ(savedStateEngine(dir / "missing"), std::nullopt);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace corral::vmm
