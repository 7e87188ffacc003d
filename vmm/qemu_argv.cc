// The QEMU command line of a direct-engine VM, built from DomainConfig (pure).
#include "vmm/qemu_argv.h"

#include <fmt/format.h>

#include "vmm/agent_protocol.h"

namespace corral::vmm {
namespace {

constexpr uint64_t kMiB = 1ull << 20;

// QEMU's option syntax: a comma in a value is written twice.
std::string optionValue(const std::string& value) {
  std::string escaped;
  for (char c : value) {
    escaped += c;
    if (c == ',') escaped += ',';
  }
  return escaped;
}

}  // namespace

QemuRunFiles QemuRunFiles::in(const std::filesystem::path& runDir) {
  return {.pidFile = runDir / "qemu.pid",
          .qmpSocket = runDir / "qmp.sock",
          .eventSocket = runDir / "events.sock",
          .log = runDir / "qemu.log"};
}

std::vector<std::string> qemuArgv(const DomainConfig& config, const QemuRunFiles& files,
                                  const QemuLaunch& launch) {
  const bool microvm = config.machine == Machine::Microvm;
  // virtio-mmio devices are "-device"s, PCI ones "-pci".
  const std::string bus = microvm ? "device" : "pci";
  const uint64_t memoryMiB = (config.memoryBytes + kMiB - 1) / kMiB;
  std::vector<std::string> argv = {launch.binary,    "-name",     "guest=" + optionValue(config.domainName),
                                   "-uuid",          launch.uuid, "-nodefaults",
                                   "-no-user-config"};
  // As libvirt starts a microvm domain: no ACPI. pc keeps it, for the power button (shutdownAcpi).
  argv.insert(argv.end(), {"-machine", microvm ? "microvm,acpi=off" : "pc"});
  if (config.accelerator == Accelerator::Kvm) {
    argv.insert(argv.end(), {"-accel", "kvm", "-cpu", "host"});
  } else {
    argv.insert(argv.end(), {"-accel", config.tcgTranslationCacheMiB > 0
                                           ? fmt::format("tcg,tb-size={}", config.tcgTranslationCacheMiB)
                                           : std::string("tcg")});
  }
  argv.insert(argv.end(), {"-m", std::to_string(memoryMiB), "-smp", std::to_string(config.vcpus), "-display",
                           "none", "-no-reboot", "-kernel", config.kernel.string(), "-initrd",
                           config.initrd.string(), "-append", config.cmdline});
  const std::string consoleBackend =
      config.consoleSocket.empty()
          ? fmt::format("file,id=console,path={}{}", optionValue(config.consoleLog.string()),
                        launch.incoming ? ",append=on" : "")
          : fmt::format("socket,id=console,path={},server=on,wait=off,logfile={},logappend={}",
                        optionValue(config.consoleSocket.string()), optionValue(config.consoleLog.string()),
                        launch.incoming ? "on" : "off");
  argv.insert(argv.end(), {"-chardev", consoleBackend, "-serial", "chardev:console"});
  argv.insert(argv.end(), {"-chardev",
                           fmt::format("socket,id=agent,path={},server=on,wait=off",
                                       optionValue(config.agentSocket.string())),
                           "-device", fmt::format("virtio-serial-{},max_ports={}", bus, kAgentSerialPorts),
                           "-device", fmt::format("virtserialport,chardev=agent,name={}", kAgentChannel)});
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const DiskConfig& disk = config.disks[i];
    // cache: QEMU's default (writeback, flushes honoured), as the libvirt engine's XML (vmm/README.md).
    argv.insert(argv.end(),
                {"-drive",
                 fmt::format("file={},format={},if=none,id=disk{}{}", optionValue(disk.path.string()),
                             disk.format == DiskFormat::Qcow2 ? "qcow2" : "raw", i,
                             disk.readOnly ? ",readonly=on" : ""),
                 "-device", fmt::format("virtio-blk-{},drive=disk{},serial={}", bus, i, disk.serial)});
  }
  if (config.nic) {
    // QEMU opens the tap itself, or holds the only fd of the one corral opened for it: either way it is
    // not persistent and goes with the process, nothing to clean up after.
    argv.insert(argv.end(),
                {"-netdev",
                 launch.tapFd ? fmt::format("tap,id=net0,fd={}", *launch.tapFd)
                              : fmt::format("tap,id=net0,ifname={},script=no,downscript=no",
                                            optionValue(config.nic->tapName)),
                 "-device",
                 // No iPXE option ROM on pc: network-boot firmware a directly booted kernel never uses.
                 fmt::format("virtio-net-{},netdev=net0,mac={}{}{}{}", bus, config.nic->mac,
                             config.nic->mtu ? fmt::format(",host_mtu={}", config.nic->mtu) : std::string(),
                             config.nic->hostOffloads ? "" : ",csum=off,host_tso4=off,host_tso6=off",
                             microvm ? "" : ",romfile=")});
  }
  // Free page reporting: the guest's kernel reports pages it freed and QEMU gives them back to the host (as
  // the libvirt engine's <memballoon freePageReporting='on'>; vmm/README.md, "Free page reporting").
  if (config.freePageReporting)
    argv.insert(argv.end(), {"-device", fmt::format("virtio-balloon-{},free-page-reporting=on", bus)});
  argv.insert(argv.end(),
              {"-qmp", fmt::format("unix:{},server=on,wait=off", optionValue(files.qmpSocket.string())),
               "-qmp", fmt::format("unix:{},server=on,wait=off", optionValue(files.eventSocket.string())),
               "-pidfile", files.pidFile.string(), "-msg", "timestamp=on"});
  // QEMU's seccomp filter, as libvirt's qemu.conf default sets it: no obsolete system calls, no setuid and
  // friends, no fork or exec, no scheduler or CPU-affinity changes. It is why QEMU is not -daemonize'd
  // (daemonizing forks and calls setsid, which the filter then forbids): corral detaches it (vmm/qemu.cc).
  argv.insert(argv.end(),
              {"-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"});
  // No -chroot: QEMU's block layer opens a disk image again by its path when a migration (a save, a
  // restore) changes what it may do with it, which fails in an empty root (vmm/README.md, "Confinement").
  if (launch.paused) argv.push_back("-S");
  if (launch.incoming) argv.insert(argv.end(), {"-incoming", "defer"});
  return argv;
}

}  // namespace corral::vmm
