// The domain XML for one corral VM, as text built from DomainConfig (pure, golden-tested).
#include "vmm/domain_xml.h"

#include <fmt/format.h>
#include <sys/un.h>

#include <algorithm>
#include <cctype>

#include "core/xml.h"
#include "vmm/agent_protocol.h"

namespace corral::vmm {
namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kMinMemory = 32 * kMiB;
constexpr uint64_t kMaxMemory = 1ull << 40;

std::string escapePath(const std::filesystem::path& path) {
  return escapeXml(path.string());
}

Status validatePath(const std::filesystem::path& path, std::string_view field) {
  if (path.empty()) return fail(invalidField(std::string(field), "{} path is empty", field));
  if (!path.is_absolute())
    return fail(invalidField(std::string(field), "{} path \"{}\" is not absolute", field, path.string()));
  return {};
}

// A socket QEMU listens on: absolute, and short enough for sockaddr_un's sun_path with its NUL.
Status validateSocketPath(const std::filesystem::path& path, std::string_view field) {
  if (auto ok = validatePath(path, field); !ok) return ok;
  constexpr size_t kMax = sizeof(sockaddr_un::sun_path) - 1;
  if (path.string().size() > kMax)
    return fail(
        invalidField(std::string(field),
                     "{} path \"{}\" is {} bytes, more than the {} a Unix socket address holds (a shorter "
                     "--state-dir or --vms-dir helps)",
                     field, path.string(), path.string().size(), kMax));
  return {};
}

}  // namespace

std::string_view acceleratorName(Accelerator accelerator) {
  switch (accelerator) {
    case Accelerator::Kvm:
      return "kvm";
    case Accelerator::Tcg:
      return "tcg";
  }
  return "tcg";
}

std::string_view machineName(Machine machine) {
  switch (machine) {
    case Machine::Pc:
      return "pc";
    case Machine::Microvm:
      return "microvm";
  }
  return "pc";
}

Status validate(const DomainConfig& config) {
  if (config.domainName.empty()) return fail(invalidField("name", "domain name is empty"));
  if (config.instanceName.empty()) return fail(invalidField("name", "instance name is empty"));
  if (config.memoryBytes < kMinMemory || config.memoryBytes > kMaxMemory)
    return fail(invalidField("memory", "memory {} bytes is outside 32 MiB..1 TiB", config.memoryBytes));
  if (config.vcpus < 1 || config.vcpus > 64)
    return fail(invalidField("cpus", "cpus {} is outside 1..64", config.vcpus));
  if (auto ok = validatePath(config.kernel, "kernel"); !ok) return ok;
  if (auto ok = validatePath(config.initrd, "initrd"); !ok) return ok;
  if (auto ok = validatePath(config.consoleLog, "console_log"); !ok) return ok;
  if (auto ok = validateSocketPath(config.agentSocket, "agent_socket"); !ok) return ok;
  if (!config.consoleSocket.empty()) {
    if (auto ok = validateSocketPath(config.consoleSocket, "console_socket"); !ok) return ok;
  }
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const DiskConfig& disk = config.disks[i];
    if (auto ok = validatePath(disk.path, fmt::format("disks[{}].path", i)); !ok) return ok;
    const bool serialOk = !disk.serial.empty() && disk.serial.size() <= 20 &&
                          std::all_of(disk.serial.begin(), disk.serial.end(), [](char c) {
                            return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
                          });
    // virtio-blk serials are at most 20 bytes (VIRTIO_BLK_ID_BYTES); the guest finds its disks by them.
    if (!serialOk) {
      return fail(invalidField(fmt::format("disks[{}].serial", i),
                               "serial \"{}\" must be 1..20 of [A-Za-z0-9_-]", disk.serial));
    }
  }
  if (config.nic) {
    if (config.nic->tapName.empty() || config.nic->tapName.size() > 15)
      return fail(invalidField("nic.tap", "tap name \"{}\" must be 1..15 characters", config.nic->tapName));
    if (config.nic->mac.size() != 17)
      return fail(
          invalidField("nic.mac", "mac \"{}\" is not of the form 52:54:00:xx:xx:xx", config.nic->mac));
    if (config.nic->mtu != 0 && (config.nic->mtu < 68 || config.nic->mtu > 65535))
      return fail(
          invalidField("nic.mtu", "{} is not an Ethernet MTU (68..65535, or 0 for 1500)", config.nic->mtu));
  }
  return {};
}

std::string domainXml(const DomainConfig& config) {
  const bool microvm = config.machine == Machine::Microvm;
  // microvm has no PCI bus: every virtio device sits on virtio-mmio, and libvirt must not add PCI defaults.
  const std::string address = microvm ? "      <address type='virtio-mmio'/>\n" : "";
  const uint64_t memoryKiB = (config.memoryBytes + kMiB - 1) / kMiB * 1024;

  std::string xml;
  auto out = std::back_inserter(xml);
  fmt::format_to(out, "<domain type='{}'>\n", config.accelerator == Accelerator::Kvm ? "kvm" : "qemu");
  fmt::format_to(out, "  <name>{}</name>\n", escapeXml(config.domainName));
  fmt::format_to(out,
                 "  <metadata>\n"
                 "    <corral:instance xmlns:corral='{}' name='{}'{}/>\n"
                 "  </metadata>\n",
                 kMetadataNamespace, escapeXml(config.instanceName),
                 config.owner.empty() ? std::string() : fmt::format(" owner='{}'", escapeXml(config.owner)));
  fmt::format_to(out, "  <memory unit='KiB'>{}</memory>\n", memoryKiB);
  fmt::format_to(out, "  <vcpu>{}</vcpu>\n", config.vcpus);
  fmt::format_to(out, "  <os>\n    <type arch='x86_64' machine='{}'>hvm</type>\n",
                 machineName(config.machine));
  fmt::format_to(out, "    <kernel>{}</kernel>\n", escapePath(config.kernel));
  fmt::format_to(out, "    <initrd>{}</initrd>\n", escapePath(config.initrd));
  fmt::format_to(out, "    <cmdline>{}</cmdline>\n  </os>\n", escapeXml(config.cmdline));
  // ACPI gives shutdownAcpi() a power button on pc; microvm is powered off by the agent only.
  const bool tbCache = config.accelerator == Accelerator::Tcg && config.tcgTranslationCacheMiB > 0;
  if (!microvm || tbCache) {
    xml += "  <features>\n";
    if (!microvm) xml += "    <acpi/>\n";
    if (tbCache) {
      fmt::format_to(out, "    <tcg>\n      <tb-cache unit='MiB'>{}</tb-cache>\n    </tcg>\n",
                     config.tcgTranslationCacheMiB);
    }
    xml += "  </features>\n";
  }
  if (config.accelerator == Accelerator::Kvm) xml += "  <cpu mode='host-passthrough'/>\n";
  xml +=
      "  <on_poweroff>destroy</on_poweroff>\n"
      "  <on_reboot>destroy</on_reboot>\n"
      "  <on_crash>destroy</on_crash>\n"
      "  <devices>\n";
  // No USB controller: on pc a needless PCI device, on microvm refused by libvirt. The balloon only for free
  // page reporting (below).
  xml += "    <controller type='usb' model='none'/>\n";
  // Two ports (0, which QEMU keeps for a console, and the agent's) instead of QEMU's 31: each port has two
  // virtqueues the guest sets up (vmm/README.md, "Idle memory").
  fmt::format_to(out, "    <controller type='virtio-serial' index='0' ports='{}'>\n{}    </controller>\n",
                 kAgentSerialPorts, microvm ? "      <address type='virtio-mmio'/>\n" : "");
  if (config.consoleSocket.empty()) {
    fmt::format_to(out,
                   "    <serial type='file'>\n"
                   "      <source path='{0}' append='off'/>\n"
                   "      <target port='0'/>\n"
                   "    </serial>\n"
                   "    <console type='file'>\n"
                   "      <source path='{0}' append='off'/>\n"
                   "      <target type='serial' port='0'/>\n"
                   "    </console>\n",
                   escapePath(config.consoleLog));
  } else {
    // QEMU listens on the socket without waiting for a client; what the guest writes also goes to the log,
    // connected or not.
    fmt::format_to(out,
                   "    <serial type='unix'>\n"
                   "      <source mode='bind' path='{0}'/>\n"
                   "      <log file='{1}' append='off'/>\n"
                   "      <target port='0'/>\n"
                   "    </serial>\n"
                   "    <console type='unix'>\n"
                   "      <source mode='bind' path='{0}'/>\n"
                   "      <log file='{1}' append='off'/>\n"
                   "      <target type='serial' port='0'/>\n"
                   "    </console>\n",
                   escapePath(config.consoleSocket), escapePath(config.consoleLog));
  }
  fmt::format_to(out,
                 "    <channel type='unix'>\n"
                 "      <source mode='bind' path='{}'/>\n"
                 "      <target type='virtio' name='{}'/>\n"
                 "    </channel>\n",
                 escapePath(config.agentSocket), kAgentChannel);
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const DiskConfig& disk = config.disks[i];
    // cache='none' is refused on tmpfs (no O_DIRECT); 'unsafe' would lose the guest's flushes on a host
    // crash. The default (writeback, flushes honoured) it is.
    fmt::format_to(out,
                   "    <disk type='file' device='disk'>\n"
                   "      <driver name='qemu' type='{}'/>\n"
                   "      <source file='{}'/>\n"
                   "      <target dev='vd{}' bus='virtio'/>\n"
                   "      <serial>{}</serial>\n"
                   "{}{}"
                   "    </disk>\n",
                   disk.format == DiskFormat::Qcow2 ? "qcow2" : "raw", escapePath(disk.path),
                   static_cast<char>('a' + i), escapeXml(disk.serial),
                   disk.readOnly ? "      <readonly/>\n" : "", address);
  }
  if (config.nic) {
    fmt::format_to(out,
                   "    <interface type='ethernet'>\n"
                   "      <target dev='{}' managed='yes'/>\n"
                   "      <mac address='{}'/>\n"
                   "      <model type='virtio'/>\n"
                   "{}{}{}"
                   "    </interface>\n",
                   escapeXml(config.nic->tapName), escapeXml(config.nic->mac),
                   config.nic->mtu ? fmt::format("      <mtu size='{}'/>\n", config.nic->mtu) : std::string(),
                   config.nic->hostOffloads
                       ? std::string()
                       : std::string("      <driver>\n        <host csum='off' tso4='off' tso6='off'/>\n"
                                     "      </driver>\n"),
                   // virtio-net-pci's iPXE ROM is firmware for network boot: QEMU reads and maps it for
                   // nothing when the kernel is booted directly. virtio-mmio has no ROM.
                   microvm ? address : std::string("      <rom enabled='no'/>\n"));
  }
  if (config.freePageReporting) {
    fmt::format_to(out, "    <memballoon model='virtio' freePageReporting='on'>\n{}    </memballoon>\n",
                   address);
  } else {
    xml += "    <memballoon model='none'/>\n";
  }
  xml += "  </devices>\n";
  // QEMU runs as root and libvirt relabels nothing: the kernel, initrd, console log and agent socket stay
  // owned by corrald.
  xml +=
      "  <seclabel type='static' model='dac' relabel='no'>\n"
      "    <label>+0:+0</label>\n"
      "  </seclabel>\n"
      "</domain>\n";
  return xml;
}

std::string kernelCommandLine(const std::string& instanceName, const std::string& hostname,
                              const std::optional<std::string>& ipWithPrefix,
                              const std::optional<std::string>& gateway,
                              const std::optional<std::string>& rootSerial) {
  std::string cmdline = fmt::format("console=ttyS0 quiet panic=-1 {}={}", kCmdlineName, instanceName);
  if (!hostname.empty() && hostname != instanceName)
    cmdline += fmt::format(" {}={}", kCmdlineHostname, hostname);
  if (ipWithPrefix) cmdline += fmt::format(" {}={}", kCmdlineIp, *ipWithPrefix);
  if (gateway) cmdline += fmt::format(" {}={}", kCmdlineGateway, *gateway);
  if (rootSerial) cmdline += fmt::format(" {}={}", kCmdlineRoot, *rootSerial);
  return cmdline;
}

std::string resolverCommandLine(const std::string& nameserver, const std::string& search) {
  std::string words = fmt::format(" {}={}", kCmdlineDns, nameserver);
  if (!search.empty()) words += fmt::format(" {}={}", kCmdlineSearch, search);
  return words;
}

std::string ownerOf(std::string_view element) {
  // libvirt hands the element back as libxml2 serialised it: attribute values in either quote, with the
  // five predefined entities (escapeXml wrote at most those).
  size_t at = 0;
  while ((at = element.find("owner=", at)) != std::string_view::npos) {
    const bool attributeStart = at > 0 && std::isspace(static_cast<unsigned char>(element[at - 1]));
    at += 6;
    if (!attributeStart || at >= element.size() || (element[at] != '\'' && element[at] != '"')) continue;
    const char quote = element[at];
    const size_t end = element.find(quote, at + 1);
    if (end == std::string_view::npos) return {};
    std::string_view raw = element.substr(at + 1, end - at - 1);
    std::string value;
    for (size_t i = 0; i < raw.size(); ++i) {
      if (raw[i] != '&') {
        value += raw[i];
        continue;
      }
      static constexpr std::pair<std::string_view, char> kEntities[] = {
          {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
      bool known = false;
      for (const auto& [entity, c] : kEntities) {
        if (raw.substr(i).starts_with(entity)) {
          value += c;
          i += entity.size() - 1;
          known = true;
          break;
        }
      }
      if (!known) value += '&';
    }
    return value;
  }
  return {};
}

std::string corralKernelTuning(Accelerator accelerator, std::optional<uint64_t> tscKhz, int vcpus) {
  std::string tuning = " pty.legacy_count=0";
  if (accelerator != Accelerator::Tcg) return tuning;
  if (tscKhz) tuning += fmt::format(" tsc=reliable tsc_early_khz={}", *tscKhz);
  // Several vCPUs would each need the PIT's broadcast ticks instead of a timer of their own.
  if (vcpus == 1) tuning += " noapictimer";
  return tuning;
}

}  // namespace corral::vmm
