// The names of Hypervisor's enums, and which engine wrote a saved state.
#include "vmm/hypervisor.h"

#include <fstream>

namespace corral::vmm {

std::string_view engineName(Engine engine) {
  switch (engine) {
    case Engine::Libvirt:
      return "libvirt";
    case Engine::Qemu:
      return "qemu";
  }
  return "libvirt";
}

std::string_view stopReasonName(StopReason reason) {
  switch (reason) {
    case StopReason::Shutdown:
      return "shutdown";
    case StopReason::Destroyed:
      return "destroyed";
    case StopReason::Crashed:
      return "crashed";
    case StopReason::Failed:
      return "failed";
    case StopReason::Saved:
      return "saved";
    case StopReason::Other:
      return "other";
  }
  return "other";
}

std::optional<Engine> savedStateEngine(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  char magic[16] = {};
  if (!in.read(magic, sizeof(magic))) return std::nullopt;
  const std::string_view head(magic, sizeof(magic));
  // libvirt's QEMU save header; QEMU_VM_FILE_MAGIC, big-endian, as the migration stream starts.
  if (head == "LibvirtQemudSave") return Engine::Libvirt;
  if (head.starts_with("QEVM")) return Engine::Qemu;
  return std::nullopt;
}

}  // namespace corral::vmm
