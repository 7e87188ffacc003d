// What corrald asks of a VM engine, whichever runs QEMU: libvirt (vmm/libvirt.h, transient domains of
// libvirtd) or corral itself (vmm/qemu.h, QEMU spawned and watched directly). Both name a VM by its domain
// name, report its end through a DomainStopped callback on a thread of their own, and save a running VM to a
// file another start of the same engine restores.
#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/error.h"
#include "vmm/domain_xml.h"

namespace corral::vmm {

// Which engine runs a VM.
enum class Engine { Libvirt, Qemu };
std::string_view engineName(Engine engine);  // "libvirt" | "qemu"

// Why a VM stopped. Libvirt: VIR_DOMAIN_EVENT_STOPPED's detail. Direct: the QMP SHUTDOWN event's reason, or
// what corral asked for (vmm/qemu.h). Saved: its state and memory went to a file and it ended.
enum class StopReason { Shutdown, Destroyed, Crashed, Failed, Saved, Other };
// "shutdown" | "destroyed" | "crashed" | "failed" | "saved" | "other"
std::string_view stopReasonName(StopReason reason);

struct DomainStopped {
  std::string domainName;
  StopReason reason;
};

struct DomainInfo {
  std::string name;
  std::string uuid;
  bool running = false;
  bool paused = false;         // active with its CPUs stopped (started paused, or being saved)
  std::optional<int> qemuPid;  // the QEMU process, when known
  std::string owner;           // the owner mark of the corrald that made it; "" when it has none
  // What the engine did to start it, in order, with their milliseconds: libvirt's one call, or the direct
  // engine's spawn, QMP connection and incoming migration.
  std::vector<std::pair<std::string, double>> steps = {};
};

// A restore: the file save() wrote. The direct engine starts QEMU with `config` (the devices must be the
// saved VM's; paths, tap and name are the new VM's own); libvirt reads the domain XML saved in the file,
// with `editXml` applied, and uses config.domainName only.
struct RestoreRequest {
  std::filesystem::path file;
  DomainConfig config;
  bool paused = false;  // the CPUs wait for resume() (a NIC is plugged in meanwhile)
  std::function<std::string(std::string)> editXml = nullptr;
};

class Hypervisor {
 public:
  virtual ~Hypervisor() = default;
  virtual Engine engine() const = 0;
  // Starts a VM from `config` (validated first); `paused`: the CPUs wait for resume().
  virtual Result<DomainInfo> create(const DomainConfig& config, bool paused) = 0;
  virtual Status resume(const std::string& name) = 0;
  virtual Result<std::optional<DomainInfo>> lookup(const std::string& name) = 0;     // nullopt: none
  virtual Result<std::vector<DomainInfo>> listDomains(std::string_view prefix) = 0;  // running ones
  virtual Status destroy(const std::string& name) = 0;       // hard stop; no such VM is not an error
  virtual Status shutdownAcpi(const std::string& name) = 0;  // the ACPI power button
  // The VM's device state and memory into `file`, then it ends (stop reason Saved). On failure it keeps
  // running and `file` may be partly written (the caller removes it).
  virtual Status saveToFile(const std::string& name, const std::filesystem::path& file) = 0;
  // A new VM from a file saveToFile of the same engine wrote. A file that is not a complete save fails
  // here and leaves no VM.
  virtual Result<DomainInfo> restoreFromFile(const RestoreRequest& request) = 0;
  virtual Result<std::string> hypervisorVersion() = 0;  // "QEMU 7.2.0 via libvirt 9.0.0"
};

// Which engine wrote a saved state, by the file's first bytes: libvirt's save header ("LibvirtQemudSave")
// or QEMU's own migration stream ("QEVM"). nullopt: neither (or unreadable).
std::optional<Engine> savedStateEngine(const std::filesystem::path& file);

}  // namespace corral::vmm
