// Domain XML: validation, kernel command line, and the rendered XML compared with golden files.
#include "vmm/domain_xml.h"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "tests/unit/vmm/golden.h"
#include "vmm/agent_protocol.h"

namespace corral::vmm {
namespace {

DomainConfig baseConfig() {
  DomainConfig config;
  config.domainName = "corral-web-1";
  config.instanceName = "web-1";
  config.memoryBytes = 256ull << 20;
  config.vcpus = 1;
  config.kernel = "/var/lib/corral/images/busybox/vm/vmlinuz";
  config.initrd = "/var/lib/corral/images/busybox/vm/initramfs.img";
  config.cmdline = kernelCommandLine("web-1", "web-1", std::nullopt, std::nullopt);
  config.consoleLog = "/var/lib/corral/instances/web-1/console.log";
  config.agentSocket = "/run/corral/instances/web-1/agent.sock";
  config.consoleSocket = "/run/corral/instances/web-1/console.sock";
  return config;
}

DomainConfig withNic(DomainConfig config) {
  config.nic = NicConfig{"crl-t-web1", "52:54:00:12:34:56"};
  config.cmdline = kernelCommandLine("web-1", "web-1", "10.0.1.5/24", "10.0.1.1");
  return config;
}

TEST(DomainXml, TcgPcWithoutNic) {
  auto config = baseConfig();
  ASSERT_TRUE(validate(config));
  expectGolden(domainXml(config), "tcg_pc_no_nic.xml");
}

TEST(DomainXml, KvmPcWithNic) {
  auto config = withNic(baseConfig());
  config.accelerator = Accelerator::Kvm;
  config.vcpus = 2;
  ASSERT_TRUE(validate(config));
  expectGolden(domainXml(config), "kvm_pc_nic.xml");
}

TEST(DomainXml, OvnNicHasGenevesMtuAndNoOffloads) {
  auto config = withNic(baseConfig());
  config.nic->mtu = 1400;
  config.nic->hostOffloads = false;
  ASSERT_TRUE(validate(config));
  const auto xml = domainXml(config);
  EXPECT_NE(xml.find("      <mtu size='1400'/>\n"), std::string::npos) << xml;
  EXPECT_NE(xml.find("<driver>\n        <host csum='off' tso4='off' tso6='off'/>\n      </driver>"),
            std::string::npos)
      << xml;
  config.nic->mtu = 40;
  auto refused = validate(config);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "nic.mtu") << refused.error().message();
}

TEST(DomainXml, TcgMicrovmWithNic) {
  auto config = withNic(baseConfig());
  config.machine = Machine::Microvm;
  ASSERT_TRUE(validate(config));
  const auto xml = domainXml(config);
  expectGolden(xml, "tcg_microvm_nic.xml");
  EXPECT_EQ(xml.find("<acpi/>"), std::string::npos);
  EXPECT_EQ(xml.find("type='pci'"), std::string::npos);
}

DomainConfig withImageDisks(DomainConfig config) {
  config.disks = {{"/var/lib/corral/vms/web-1/root.qcow2", DiskFormat::Qcow2, kRootDiskSerial, false},
                  {"/var/lib/corral/vms/web-1/config.img", DiskFormat::Raw, kConfigDiskSerial, true}};
  config.cmdline = kernelCommandLine("web-1", "web-1", std::nullopt, std::nullopt, kRootDiskSerial);
  return config;
}

TEST(DomainXml, TcgPcWithImageDisks) {
  auto config = withImageDisks(baseConfig());
  ASSERT_TRUE(validate(config));
  const auto xml = domainXml(config);
  expectGolden(xml, "tcg_pc_image_disks.xml");
  EXPECT_NE(xml.find("<target dev='vdb' bus='virtio'/>"), std::string::npos);
}

TEST(DomainXml, TcgMicrovmWithImageDisks) {
  auto config = withNic(withImageDisks(baseConfig()));
  config.machine = Machine::Microvm;
  config.cmdline = kernelCommandLine("web-1", "web-1", "10.0.1.5/24", "10.0.1.1", kRootDiskSerial);
  ASSERT_TRUE(validate(config));
  const auto xml = domainXml(config);
  expectGolden(xml, "tcg_microvm_image_disks.xml");
  EXPECT_EQ(xml.find("type='pci'"), std::string::npos);
}

// corral's own kernel (a PVH vmlinux) on microvm under TCG with a small translation cache: the default
// shape of a VM once `ninja guest-kernel` has run.
TEST(DomainXml, TcgMicrovmCorralKernelWithTranslationCache) {
  auto config = withNic(baseConfig());
  config.machine = Machine::Microvm;
  config.kernel = "/var/lib/corral/images/kernels/corral/vmlinux";
  config.memoryBytes = 128ull << 20;
  config.tcgTranslationCacheMiB = 32;
  config.freePageReporting = true;
  ASSERT_TRUE(validate(config));
  const auto xml = domainXml(config);
  expectGolden(xml, "tcg_microvm_corral_tb_cache.xml");
  EXPECT_NE(xml.find("    <memballoon model='virtio' freePageReporting='on'>\n"
                     "      <address type='virtio-mmio'/>\n    </memballoon>\n"),
            std::string::npos)
      << "the balloon sits on virtio-mmio like every other device of microvm";
  EXPECT_NE(xml.find("<tb-cache unit='MiB'>32</tb-cache>"), std::string::npos);
  EXPECT_EQ(xml.find("<acpi/>"), std::string::npos);
  EXPECT_EQ(xml.find("<rom"), std::string::npos) << "virtio-mmio has no option ROM";
}

TEST(DomainXml, TcgPcWithTranslationCacheAndNoNicRom) {
  auto config = withNic(baseConfig());
  config.tcgTranslationCacheMiB = 48;
  ASSERT_TRUE(validate(config));
  const auto xml = domainXml(config);
  expectGolden(xml, "tcg_pc_nic_tb_cache.xml");
  EXPECT_NE(xml.find("    <acpi/>\n    <tcg>\n      <tb-cache unit='MiB'>48</tb-cache>"), std::string::npos);
  EXPECT_NE(xml.find("<rom enabled='no'/>"), std::string::npos);
}

TEST(DomainXml, NoBalloonWithoutFreePageReporting) {
  auto config = baseConfig();
  EXPECT_NE(domainXml(config).find("<memballoon model='none'/>"), std::string::npos);
  config.freePageReporting = true;
  const auto xml = domainXml(config);
  EXPECT_NE(xml.find("<memballoon model='virtio' freePageReporting='on'>\n    </memballoon>"),
            std::string::npos)
      << "on pc libvirt gives it a PCI slot: " << xml;
}

TEST(DomainXml, KvmHasNoTranslationCache) {
  auto config = baseConfig();
  config.accelerator = Accelerator::Kvm;
  config.tcgTranslationCacheMiB = 32;
  EXPECT_EQ(domainXml(config).find("tb-cache"), std::string::npos);
}

TEST(DomainXml, ValidateRefusesBadDisks) {
  auto config = withImageDisks(baseConfig());
  config.disks[1].path = "config.img";
  auto result = validate(config);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error().field(), "disks[1].path");
  for (std::string serial : {"", "a serial", "012345678901234567890", "x'y"}) {
    config = withImageDisks(baseConfig());
    config.disks[0].serial = serial;
    result = validate(config);
    ASSERT_FALSE(result) << serial;
    EXPECT_EQ(result.error().field(), "disks[0].serial") << serial;
  }
}

TEST(DomainXml, EscapesTextAndAttributes) {
  auto config = baseConfig();
  config.kernel = "/tmp/a&b/<k>'\"";
  config.instanceName = "x'y";
  const auto xml = domainXml(config);
  EXPECT_NE(xml.find("<kernel>/tmp/a&amp;b/&lt;k&gt;&apos;&quot;</kernel>"), std::string::npos) << xml;
  EXPECT_NE(xml.find("name='x&apos;y'"), std::string::npos) << xml;
}

// The owner (which corrald made the domain) goes into corral's metadata element and reads back from what
// libvirt returns for it: libxml2 re-serialises with double quotes and entities.
TEST(DomainXml, OwnerIsWrittenAndReadBack) {
  auto config = baseConfig();
  EXPECT_EQ(domainXml(config).find("owner="), std::string::npos) << "no owner, no attribute";
  config.owner = "/var/lib/o'k&<vms>";
  const auto xml = domainXml(config);
  EXPECT_NE(xml.find("owner='/var/lib/o&apos;k&amp;&lt;vms&gt;'"), std::string::npos) << xml;
  const size_t start = xml.find("<corral:instance");
  const std::string element = xml.substr(start, xml.find("/>", start) + 2 - start);
  EXPECT_EQ(ownerOf(element), config.owner) << element;
  EXPECT_EQ(ownerOf("<corral:instance xmlns:corral=\"https://corral.dev/xmlns/instance/1\" name=\"w\" "
                    "owner=\"/srv/a &quot;b&quot;/vms\"/>"),
            "/srv/a \"b\"/vms");
  EXPECT_EQ(ownerOf("<corral:instance name=\"w\"/>"), "");
  EXPECT_EQ(ownerOf("<corral:instance name=\"xowner=1\" notowner='no'/>"), "") << "only the owner attribute";
  EXPECT_EQ(ownerOf("<corral:instance owner=\"/cut"), "") << "an unterminated value is no owner";
}

TEST(DomainXml, MemoryRoundsUpToWholeMiB) {
  auto config = baseConfig();
  config.memoryBytes = (64ull << 20) + 1;
  EXPECT_NE(domainXml(config).find("<memory unit='KiB'>66560</memory>"), std::string::npos);
}

TEST(DomainXml, ValidateRefusesBadFields) {
  auto expectField = [](DomainConfig config, const std::string& field) {
    auto result = validate(config);
    ASSERT_FALSE(result) << field;
    EXPECT_EQ(result.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(result.error().field(), field) << result.error().message();
  };
  auto config = baseConfig();
  config.memoryBytes = 16ull << 20;
  expectField(config, "memory");
  config = baseConfig();
  config.memoryBytes = (1ull << 40) + 1;
  expectField(config, "memory");
  config = baseConfig();
  config.vcpus = 0;
  expectField(config, "cpus");
  config = baseConfig();
  config.vcpus = 65;
  expectField(config, "cpus");
  config = baseConfig();
  config.kernel = "vmlinuz";
  expectField(config, "kernel");
  config = baseConfig();
  config.initrd.clear();
  expectField(config, "initrd");
  config = baseConfig();
  config.domainName.clear();
  expectField(config, "name");
}

// Without a console socket the serial line goes to the log file only (the accelerator probe's VM).
TEST(DomainXml, ConsoleWithoutSocketIsAFile) {
  auto config = baseConfig();
  EXPECT_NE(domainXml(config).find("<serial type='unix'>\n      <source mode='bind' "
                                   "path='/run/corral/instances/web-1/console.sock'/>\n      <log "
                                   "file='/var/lib/corral/instances/web-1/console.log' append='off'/>"),
            std::string::npos);
  config.consoleSocket.clear();
  const std::string xml = domainXml(config);
  EXPECT_EQ(xml.find("console.sock"), std::string::npos);
  EXPECT_NE(xml.find("<serial type='file'>\n      <source path='/var/lib/corral/instances/web-1/console.log' "
                     "append='off'/>"),
            std::string::npos);
  config.consoleSocket = "console.sock";
  auto refused = validate(config);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "console_socket");
  // Longer than a Unix socket address holds: refused here, not by QEMU at start.
  config.consoleSocket = "/var/lib/" + std::string(90, 'd') + "/console.sock";
  auto tooLong = validate(config);
  ASSERT_FALSE(tooLong);
  EXPECT_EQ(tooLong.error().field(), "console_socket");
  EXPECT_NE(tooLong.error().message().find("112 bytes, more than the 107"), std::string::npos)
      << tooLong.error().message();
  config.consoleSocket = "/run/corral/instances/web-1/console.sock";
  config.agentSocket = "/var/lib/" + std::string(100, 'd') + "/agent.sock";
  auto agentTooLong = validate(config);
  ASSERT_FALSE(agentTooLong);
  EXPECT_EQ(agentTooLong.error().field(), "agent_socket");
}

TEST(DomainXml, KernelCommandLine) {
  EXPECT_EQ(kernelCommandLine("web-1", "web-1", std::nullopt, std::nullopt),
            "console=ttyS0 quiet panic=-1 corral.name=web-1");
  EXPECT_EQ(kernelCommandLine("web-1", "www", "10.0.1.5/24", "10.0.1.1"),
            "console=ttyS0 quiet panic=-1 corral.name=web-1 corral.hostname=www corral.ip=10.0.1.5/24 "
            "corral.gw=10.0.1.1");
  EXPECT_EQ(kernelCommandLine("web-1", "web-1", std::nullopt, std::nullopt, "corral-root"),
            "console=ttyS0 quiet panic=-1 corral.name=web-1 corral.root=corral-root");
}

TEST(DomainXml, Names) {
  EXPECT_EQ(acceleratorName(Accelerator::Kvm), "kvm");
  EXPECT_EQ(acceleratorName(Accelerator::Tcg), "tcg");
  EXPECT_EQ(machineName(Machine::Pc), "pc");
  EXPECT_EQ(machineName(Machine::Microvm), "microvm");
}

// corral's kernel: no legacy PTYs anywhere; under TCG the host's TSC rate when known and, with one vCPU,
// the PIT instead of the local APIC timer (its calibration is the slow part under TCG).
TEST(CorralKernelTuning, TcgAddsTheTscRateAndOneVcpuTheNoApicTimer) {
  EXPECT_EQ(corralKernelTuning(Accelerator::Tcg, 2596142, 1),
            " pty.legacy_count=0 tsc=reliable tsc_early_khz=2596142 noapictimer");
  EXPECT_EQ(corralKernelTuning(Accelerator::Tcg, std::nullopt, 1), " pty.legacy_count=0 noapictimer");
  EXPECT_EQ(corralKernelTuning(Accelerator::Tcg, 2596142, 2),
            " pty.legacy_count=0 tsc=reliable tsc_early_khz=2596142");
  EXPECT_EQ(corralKernelTuning(Accelerator::Kvm, 2596142, 1), " pty.legacy_count=0");
}

}  // namespace
}  // namespace corral::vmm
