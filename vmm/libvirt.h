// The libvirt side: one connection to qemu:///system (RAII handles, errors read with virGetLastError right
// after the failing call), a thread running libvirt's default event loop, and lifecycle events delivered to
// a callback. corral's domains are transient (virDomainCreateXML): a stopped VM is no libvirt object, the
// daemon's SQLite state is the only record, so a crash can leak at most a running domain named
// "corral-*", which reconciliation finds with listDomains(kDomainPrefix).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "vmm/domain_xml.h"
#include "vmm/hypervisor.h"

namespace corral::vmm {

inline constexpr std::string_view kDomainPrefix = "corral-";

class Libvirt final : public Hypervisor {
 public:
  // Registers the default event implementation (once per process), starts the event thread and opens the
  // connection. Unreachable libvirtd → ErrorKind::Unavailable with what to do ("start it: libvirtd -d
  // (virtlogd -d first), or systemctl start libvirtd"). onStopped runs on the event thread; keep it short.
  static Result<std::unique_ptr<Libvirt>> open(std::string uri,
                                               std::function<void(const DomainStopped&)> onStopped);
  ~Libvirt() override;  // deregisters callbacks, closes the connection, stops and joins the event thread
  Libvirt(const Libvirt&) = delete;
  Libvirt& operator=(const Libvirt&) = delete;

  // All calls are thread safe and reconnect once when libvirtd went away and came back.
  // virDomainCreateXML; `paused`: the CPUs wait for resume() (a NIC is plugged in meanwhile).
  Result<DomainInfo> createTransient(const std::string& xml, bool paused = false);
  Engine engine() const override { return Engine::Libvirt; }
  // Hypervisor::create: createTransient(domainXml(config)), its one step "libvirt_create".
  Result<DomainInfo> create(const DomainConfig& config, bool paused) override;
  Status resume(const std::string& name) override;                                // virDomainResume
  Result<std::optional<DomainInfo>> lookup(const std::string& name) override;     // nullopt: no such domain
  Result<std::vector<DomainInfo>> listDomains(std::string_view prefix) override;  // active domains only
  Status destroy(const std::string& name) override;       // virDomainDestroy; no such domain is not an error
  Status shutdownAcpi(const std::string& name) override;  // virDomainShutdownFlags(ACPI_POWER_BTN)
  // virDomainSaveFlags: the domain's device state and memory go to `file` (written by libvirtd, as root)
  // and the domain ends (its stop event says Saved). On failure the domain keeps running.
  Status saveToFile(const std::string& name, const std::filesystem::path& file) override;
  // virDomainRestoreFlags: a new transient domain from a file saveToFile wrote, with the saved XML (its
  // name, disks, tap, sockets) as `editXml` changes it (virDomainSaveImageGetXMLDesc; libvirt refuses a
  // change of what the guest sees, such as its MAC); `paused`: the CPUs wait for resume(). A file that is
  // not a complete save fails here and leaves no domain (libvirt kills the QEMU whose incoming migration
  // failed).
  Result<DomainInfo> restoreFromFile(const std::filesystem::path& file, const std::string& name, bool paused,
                                     const std::function<std::string(std::string)>& editXml = nullptr);
  // Hypervisor::restoreFromFile: the above with request.config.domainName and request.editXml.
  Result<DomainInfo> restoreFromFile(const RestoreRequest& request) override;
  Result<std::string> hypervisorVersion() override;  // "QEMU 7.2.0 via libvirt 9.0.0"
  const std::string& uri() const;

 private:
  struct State;
  explicit Libvirt(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace corral::vmm
