// The libvirt domain XML for one corral VM, generated from a plain struct (pure: no libvirt calls), so unit
// tests compare it with golden files and an integration test runs virt-xml-validate on it.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"

namespace corral::vmm {

enum class Accelerator { Kvm, Tcg };
std::string_view acceleratorName(Accelerator accelerator);  // "kvm" | "tcg"

enum class Machine { Pc, Microvm };
std::string_view machineName(Machine machine);  // "pc" | "microvm"

struct NicConfig {      // filled by the networking milestone; absent: no NIC at all
  std::string tapName;  // "crl-t-web1", created by QEMU (libvirt <interface type='ethernet'>), or by
                        // corral for a QEMU that is not root (vmm/qemu.h)
  std::string mac;      // "52:54:00:xx:xx:xx"
  // The guest's MTU, offered by virtio-net (host_mtu; libvirt <mtu>, which also sets the tap's): the guest's
  // driver takes it at probe, before its init runs. 0: the 1500-byte default. Less where a tunnel's overhead
  // must fit under a 1500-byte underlay (1400 on corrald's OVN backend, docs/cluster.md).
  unsigned mtu = 0;
  // False: the guest computes its own checksums and segments its own TCP (virtio-net without csum and
  // host_tso4/6). Needed when the tap is read by OVS's userspace datapath, whose AF_PACKET socket gets the
  // guest's partial checksums unfinished and its 64 KiB TSO segments unsplit (corrald's OVN backend).
  bool hostOffloads = true;
};

// A virtio-blk disk. The guest finds it by its serial (/sys/block/vdX/serial), not by its vdX letter: the
// order is the bus's, which differs between pc (PCI slots) and microvm (virtio-mmio).
enum class DiskFormat { Raw, Qcow2 };
struct DiskConfig {
  std::filesystem::path path;  // a qcow2 overlay's backing file is read from its header (qemu-img -F)
  DiskFormat format = DiskFormat::Raw;
  std::string serial;  // 1..20 of [A-Za-z0-9_-]: "corral-root"
  bool readOnly = false;
};

struct DomainConfig {
  std::string domainName;    // "corral-web-1": virsh list shows which instance it is
  std::string instanceName;  // "web-1", also stored in <metadata> under corral's namespace
  // Which corrald made it (its VM directory), stored in the same <metadata> element: two corralds that
  // share a domain prefix leave each other's domains alone (ownerOf). Empty: no owner attribute.
  std::string owner;
  Accelerator accelerator = Accelerator::Tcg;
  Machine machine = Machine::Pc;
  uint64_t memoryBytes = 128ull << 20;  // rounded up to whole MiB in the XML
  int vcpus = 1;
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  std::string cmdline;                // the whole kernel command line
  std::filesystem::path consoleLog;   // serial console (ttyS0) written to this file, truncated at start
  std::filesystem::path agentSocket;  // virtio-serial channel kAgentChannel, libvirt binds this socket
  // The serial console as a unix socket QEMU listens on (`corral console`), its output still logged to
  // consoleLog; empty: the console goes to consoleLog only.
  std::filesystem::path consoleSocket;
  std::optional<NicConfig> nic;
  std::vector<DiskConfig> disks = {};  // vda, vdb, ... in this order
  // TCG only: QEMU's translation cache in MiB (libvirt's <tb-cache>); 0 leaves QEMU's default, 1 GiB,
  // which a small guest fills with code it runs once and keeps resident (vmm/README.md: measured RSS).
  uint64_t tcgTranslationCacheMiB = 0;
  // A virtio-balloon device with free page reporting (libvirt's <memballoon freePageReporting='on'>, QEMU's
  // virtio-balloon-{device,pci},free-page-reporting=on): the guest reports the memory it freed and QEMU
  // drops it from its resident set. Off: no balloon at all (vmm/README.md, "idle memory": what it saves).
  bool freePageReporting = false;
};

// Refuses what libvirt would refuse later with a worse message: empty names, relative paths, memory below
// 32 MiB or above 1 TiB, vcpus outside 1..64, a disk with a relative path or a bad serial (field names:
// "memory", "cpus", "kernel", "initrd", "disks[N].path", "disks[N].serial").
Status validate(const DomainConfig& config);

// corral's namespace for the <metadata> element domainXml writes, and the element's owner attribute read
// back from what virDomainGetMetadata returns for that namespace ("" when the element has none: a domain
// made before owners were recorded, or by hand).
inline constexpr const char* kMetadataNamespace = "https://corral.dev/xmlns/instance/1";
std::string ownerOf(std::string_view metadataElement);

// The XML: <domain type='kvm'|'qemu'>, <os> with <kernel>/<initrd>/<cmdline>, on_poweroff/reboot/crash all
// 'destroy', QEMU run as root (static DAC seclabel, relabel='no': nothing of ours is chowned), the disks as
// virtio-blk (none by default), no graphics, serial console to consoleLog, the agent channel, the NIC if any.
// For Machine::Microvm: no PCI device at all (usb controller 'none', virtio-mmio addresses). The balloon
// is 'none' unless freePageReporting. KVM adds <cpu mode='host-passthrough'/>; TCG with
// tcgTranslationCacheMiB its <tb-cache>. A NIC on pc loads no option ROM (no iPXE: the kernel is booted
// directly).
std::string domainXml(const DomainConfig& config);

// "console=ttyS0 quiet panic=-1 corral.name=web-1 ..." for the guest init (vmm/agent_protocol.h);
// `rootSerial`: the guest mounts the virtio disk with that serial as its root (corral.root=SERIAL).
std::string kernelCommandLine(const std::string& instanceName, const std::string& hostname,
                              const std::optional<std::string>& ipWithPrefix,
                              const std::optional<std::string>& gateway,
                              const std::optional<std::string>& rootSerial = std::nullopt);
// The resolver words for a VM in a VPC: " corral.dns=A.B.C.D corral.search=DOMAIN" (empty `search`: no
// search word).
std::string resolverCommandLine(const std::string& nameserver, const std::string& search);

// What corral's minimal kernel (images/build-guest-kernel) is told on top of kernelCommandLine(), each
// measured in vmm/README.md ("Where the cold boot's time goes"): " pty.legacy_count=0" always (pty_init
// made 512 legacy PTY nodes nobody uses); under TCG also " tsc=reliable tsc_early_khz=N" when the host's
// TSC rate is known (the kernel cannot calibrate it against the PIT on a loaded host) and, with one vCPU,
// " noapictimer" (the local APIC timer's calibration spins on emulated ticks; the PIT ticks instead).
std::string corralKernelTuning(Accelerator accelerator, std::optional<uint64_t> tscKhz, int vcpus);

}  // namespace corral::vmm
