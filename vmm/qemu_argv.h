// The QEMU command line of one corral VM on the direct engine (vmm/qemu.h), from the same DomainConfig the
// libvirt engine renders as domain XML: the same machine, devices and files. Pure; golden-tested.
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "vmm/domain_xml.h"

namespace corral::vmm {

// The files of one running VM in its run directory (vmm/qemu.h).
struct QemuRunFiles {
  std::filesystem::path pidFile;      // -pidfile: written by QEMU once it runs
  std::filesystem::path qmpSocket;    // commands, one connection at a time
  std::filesystem::path eventSocket;  // a second QMP monitor the engine keeps open for events
  std::filesystem::path log;          // QEMU's stdout and stderr (vmm/qemu.cc), timestamped (-msg)
  static QemuRunFiles in(const std::filesystem::path& runDir);
};

struct QemuLaunch {
  bool paused = false;  // -S: the CPUs wait for QMP cont
  // -incoming defer: the VM's state and memory are to come from QMP migrate-incoming (a file QMP migrate
  // wrote). The console log is then appended to, not truncated (it holds the boot before the save).
  bool incoming = false;
  std::string uuid;  // -uuid
  // The NIC's tap, opened by corral and passed as this fd (-netdev tap,fd=N, as libvirt does): a QEMU that
  // is not root cannot create it. Absent: QEMU opens the tap by its name itself.
  std::optional<int> tapFd = std::nullopt;
  std::string binary = "qemu-system-x86_64";
};

// argv[0] is launch.binary. QEMU under its seccomp filter (-sandbox with libvirt's defaults; it cannot then
// -daemonize, whose fork and setsid the filter forbids: vmm/qemu.cc detaches it), -nodefaults
// with each device listed: microvm's on virtio-mmio (no ACPI: the kernel learns them from its command line),
// pc's on PCI with ACPI; -no-reboot, so a guest that resets or powers off ends the process.
std::vector<std::string> qemuArgv(const DomainConfig& config, const QemuRunFiles& files,
                                  const QemuLaunch& launch);

}  // namespace corral::vmm
