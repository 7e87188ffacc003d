// Accelerator choice: KVM when it really boots a guest, else TCG, and always why. /dev/kvm answering ioctls
// is not enough: under nested PVM (this project's CI host) a normal Linux guest hangs under KVM. So the
// choice is made by a bounded probe boot of the real kernel + initramfs under KVM; the guest must reach
// its agent's "ready" before the deadline, else the probe domain is destroyed and TCG is chosen.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "vmm/domain_xml.h"
#include "vmm/libvirt.h"

namespace corral::vmm {

struct AcceleratorChoice {
  Accelerator accelerator = Accelerator::Tcg;
  std::string reason;  // "KVM probe boot reached userspace in 412 ms" | "/dev/kvm: missing" |
                       // "KVM probe boot did not reach userspace within 15 s (nested virtualization?)"
};

// Cheap checks without booting: /dev/kvm exists, opens read-write, KVM_GET_API_VERSION == 12.
// Returns the reason it cannot be used, or empty when it looks usable.
std::string kvmDeviceProblem();

// The full decision: device checks, then a probe boot of kernel+initrd as transient domain
// `domainName` on `machine` (agent socket and console log in workDir) under KVM with the given deadline.
// Never throws, never hangs past timeout + a few seconds, always leaves no probe domain behind.
AcceleratorChoice chooseAccelerator(Libvirt& libvirt, const std::filesystem::path& kernel,
                                    const std::filesystem::path& initrd, Machine machine,
                                    const std::filesystem::path& workDir, std::chrono::milliseconds timeout,
                                    const std::string& domainName = "corral-kvm-probe");

}  // namespace corral::vmm
