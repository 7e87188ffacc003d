// What a VM instance's spec means: the InstanceSpec (the same schema as containers) validated into the
// kernel, initramfs, root image, memory and vCPUs to boot with. Pure but for looking the files and the image
// store up. Fields that only
// make sense for a container (capabilities, seccomp, pids, user namespace, env, command) are refused by
// name: a VM has a kernel of its own, so those knobs live inside the guest.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

#include "core/error.h"
#include "images/oci/image_store.h"
#include "schema/instance.h"
#include "vmm/domain_xml.h"

namespace corral::daemon {

inline constexpr uint64_t kVmDefaultMemory = 128ull << 20;
inline constexpr uint64_t kVmMinMemory = 32ull << 20;
// The built-in image whose kernel and initramfs boot a VM whose root filesystem is a store image.
inline constexpr const char* kVmBootImage = "busybox";

// Which kernel a VM boots (the spec's "kernel": "corral", "debian" or an absolute path; empty: corral's
// when it is built, else Debian's): corral's own minimal kernel (images/build-guest-kernel, a PVH vmlinux
// in IMAGE_DIR/kernels/corral/), the image's Debian cloud kernel (IMAGE_DIR/IMAGE/vm/vmlinuz), or a file.
enum class GuestKernel { corral, debian, path };
std::string_view guestKernelName(GuestKernel kernel);  // "corral" | "debian" | "path"
// Where images/build-guest-kernel puts corral's kernel under an image directory.
std::filesystem::path corralKernelPath(const std::filesystem::path& imageDir);

struct VmPlan {
  std::string name;
  std::string hostname;
  GuestKernel kernelSource = GuestKernel::debian;
  std::filesystem::path kernel;
  std::filesystem::path initrd;
  // The spec's "machine", else microvm for corral's kernel and pc for the others.
  vmm::Machine machine = vmm::Machine::Pc;
  // An image of the store: its root filesystem is the VM's (a disk, daemon/vm_image.h), its config the
  // workload the guest init starts. Absent for a built-in image, whose initramfs is the whole guest.
  std::optional<images::Image> rootImage;
  // The workload's user when the spec gives one (--user), instead of the image's User; checked against the
  // image's /etc/passwd and /etc/group here, resolved by the guest init the same way.
  std::string user;
  uint64_t memoryBytes = kVmDefaultMemory;
  int vcpus = 1;
  // --warm: restored from the shared snapshot of its boot files, machine, memory and vCPUs (and of a store
  // image's manifest and workload: daemon/vm_snapshot.h), not booted.
  bool warm = false;
};

// `image` is a built-in VM image when imageDir/NAME/vm exists (booted from its initramfs alone), else an
// image of `imageStore` (its disk as the root, booted with kVmBootImage's kernel and initramfs).
struct VmValidationContext {
  std::filesystem::path imageDir;  // an image's VM files: imageDir/NAME/vm/{vmlinuz,initramfs.img}
  const images::ImageStore* imageStore = nullptr;  // absent: built-in images only
  // The store image the instance pins (VmDriver::reserve): what it boots, whatever `image` names now.
  std::optional<images::Image> pinnedImage{};
  uint64_t hostMemoryBytes = 0;  // MemTotal: a VM may not ask for more
  int hostCpus = 1;              // online CPUs: a VM may not ask for more vCPUs
};

Result<VmPlan> toVmPlan(const schema::InstanceSpec& spec, const VmValidationContext& context);

// MemTotal from /proc/meminfo and the online CPU count, for VmValidationContext.
VmValidationContext hostVmContext(std::filesystem::path imageDir,
                                  const images::ImageStore* imageStore = nullptr);

}  // namespace corral::daemon
