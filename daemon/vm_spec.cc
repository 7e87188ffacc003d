#include "daemon/vm_spec.h"

#include <unistd.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "images/oci/launch.h"
#include "schema/names.h"

namespace corral::daemon {
namespace {

Result<std::filesystem::path> bootFile(const std::string& given, const std::filesystem::path& fromImage,
                                       const std::string& field, const std::string& image) {
  std::error_code ec;
  if (given.empty()) {
    if (!std::filesystem::is_regular_file(fromImage, ec)) {
      return fail(
          Error(ErrorKind::NotFound,
                fmt::format("image \"{}\" has no VM {} at \"{}\"; build it with `ninja image-busybox-vm` "
                            "(images/build-vm-image) or give --{} PATH",
                            image, field, fromImage.string(), field),
                "image"));
    }
    return fromImage;
  }
  std::filesystem::path path(given);
  if (!path.is_absolute()) return fail(invalidField(field, "\"{}\" must be an absolute path", given));
  if (!std::filesystem::exists(path, ec)) {
    return fail(Error(ErrorKind::NotFound, fmt::format("\"{}\" does not exist", given), field));
  }
  if (!std::filesystem::is_regular_file(path, ec)) {
    return fail(invalidField(field, "\"{}\" is not a regular file", given));
  }
  if (::access(path.c_str(), R_OK) != 0) return fail(invalidField(field, "\"{}\" is not readable", given));
  return path;
}

std::string gib(uint64_t bytes) {
  return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / static_cast<double>(1ull << 30));
}

// The spec's "machine": empty picks what the kernel boots best on (corral's: microvm, no firmware and no
// PCI; Debian's and other files: pc). Debian's cloud kernel on microvm is refused: without a PIT-calibrated
// TSC it hangs at boot under TCG (tsc_early_khz helps but ~1 boot in 10 still hung; images/README.md).
Result<vmm::Machine> chooseMachine(const std::string& given, GuestKernel kernel) {
  if (given.empty()) return kernel == GuestKernel::corral ? vmm::Machine::Microvm : vmm::Machine::Pc;
  if (given == "pc") return vmm::Machine::Pc;
  if (given != "microvm")
    return fail(invalidField("machine", "\"{}\" is not a machine type: give microvm or pc", given));
  if (kernel == GuestKernel::debian) {
    return fail(
        invalidField("machine",
                     "Debian's cloud kernel does not boot reliably on microvm (no PIT to calibrate "
                     "its TSC: it hangs under TCG); use --machine pc, or --kernel corral on microvm"));
  }
  return vmm::Machine::Microvm;
}

}  // namespace

std::string_view guestKernelName(GuestKernel kernel) {
  switch (kernel) {
    case GuestKernel::corral:
      return "corral";
    case GuestKernel::debian:
      return "debian";
    case GuestKernel::path:
      return "path";
  }
  return "path";
}

std::filesystem::path corralKernelPath(const std::filesystem::path& imageDir) {
  return imageDir / "kernels" / "corral" / "vmlinux";
}

Result<VmPlan> toVmPlan(const schema::InstanceSpec& spec, const VmValidationContext& context) {
  VmPlan plan;
  if (Status ok = schema::validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (spec.kind != schema::InstanceKind::vm)
    return fail(invalidField("kind", "kind \"{}\" is not a VM", schema::instanceKindName(spec.kind)));
  plan.name = spec.name;

  // What belongs to containers only: refused by name rather than silently ignored.
  if (!spec.command.empty()) {
    return fail(invalidField("command",
                             "a VM runs its image's init; run commands in it with `corral exec NAME -- CMD` "
                             "(`corral run --vm ... -- CMD` does that for you once the guest is ready)"));
  }
  if (!spec.env.empty())
    return fail(invalidField("env", "a VM's environment is its own; pass env to corral exec"));
  if (spec.pids)
    return fail(
        invalidField("pids", "a VM has its own kernel and process table; pids limits are for containers"));
  if (!spec.capAdd.empty())
    return fail(invalidField("cap_add", "capabilities are for containers; a VM has its own kernel"));
  if (!spec.capDrop.empty())
    return fail(invalidField("cap_drop", "capabilities are for containers; a VM has its own kernel"));
  if (auto seccomp = schema::parseSeccompChoice(spec.seccomp);
      !seccomp || seccomp->mode != schema::SeccompMode::dockerDefault)
    return fail(invalidField("seccomp", "seccomp profiles are for containers; a VM has its own kernel"));
  if (spec.userNamespace) return fail(invalidField("user_namespace", "user namespaces are for containers"));
  if (!spec.devices.empty())
    return fail(
        invalidField("devices", "host devices are for containers; a VM has its own virtual hardware"));
  if (spec.init)
    return fail(invalidField("init", "a VM's PID 1 is corral-init already; --init is for containers"));
  if (spec.tty || spec.stdinOpen)
    return fail(
        invalidField(spec.tty ? "tty" : "stdin",
                     "a VM's console is its serial line (corral console NAME); corral run -it --vm runs "
                     "its command through exec -it once the guest is ready"));

  // The image the instance pins; else a built-in image (its own kernel and initramfs); else an image of
  // the store, whose disk becomes the root under the built-in boot image's kernel and init.
  Status builtInName = schema::validateName(spec.image, "image");
  std::error_code ec;
  std::string bootImage = spec.image;
  if (context.pinnedImage) {
    plan.rootImage = context.pinnedImage;
    bootImage = kVmBootImage;
  } else if (!builtInName || !std::filesystem::is_directory(context.imageDir / spec.image / "vm", ec)) {
    // A name no image may have (built-in or stored) is the request's mistake, not a missing image.
    if (Status storeName = images::validateImageName(spec.image); !builtInName && !storeName)
      return fail(Error(ErrorKind::InvalidArgument, storeName.error().message(), "image"));
    if (context.imageStore) {
      auto image = context.imageStore->get(spec.image);
      if (image) {
        plan.rootImage = std::move(*image);
        bootImage = kVmBootImage;
      } else if (image.error().kind() != ErrorKind::NotFound) {
        return fail(image.error().wrap(fmt::format("image \"{}\"", spec.image)));
      }
    }
    const bool kernelFile = !spec.kernel.empty() && spec.kernel != "corral" && spec.kernel != "debian";
    if (!plan.rootImage && context.imageStore && !kernelFile) {
      return fail(Error(ErrorKind::NotFound,
                        fmt::format("image \"{}\" is neither in the image store nor a built-in VM image "
                                    "(\"{}\")",
                                    spec.image, (context.imageDir / spec.image / "vm").string()),
                        "image"));
    }
    if (!plan.rootImage && !builtInName) return fail(builtInName.error());
  }
  // --user: the guest init runs a store image's workload as that user; a built-in image has no workload.
  if (!spec.user.empty()) {
    if (!plan.rootImage) {
      return fail(invalidField("user",
                               "image \"{}\" is a built-in VM image: its guest has no workload to run as a "
                               "user (run commands as any user with corral exec ... -- su); --user is for "
                               "store images (corral image ls)",
                               spec.image));
    }
    auto user = images::resolveUserThroughLayers(spec.user, plan.rootImage->layerDirs, "user");
    if (!user) return fail(user.error().wrap(fmt::format("image \"{}\"", plan.rootImage->name)));
    plan.user = spec.user;
  }
  const std::filesystem::path vmDir = context.imageDir / bootImage / "vm";
  const std::filesystem::path corralKernel = corralKernelPath(context.imageDir);
  if (spec.kernel == "corral" ||
      (spec.kernel.empty() && std::filesystem::is_regular_file(corralKernel, ec))) {
    if (!std::filesystem::is_regular_file(corralKernel, ec)) {
      return fail(Error(ErrorKind::NotFound,
                        fmt::format("corral's guest kernel is not built (no \"{}\"); build it with `ninja "
                                    "guest-kernel` (images/build-guest-kernel) or give --kernel debian",
                                    corralKernel.string()),
                        "kernel"));
    }
    plan.kernelSource = GuestKernel::corral;
    plan.kernel = corralKernel;
  } else {
    const bool debian = spec.kernel.empty() || spec.kernel == "debian";
    if (!debian && !std::filesystem::path(spec.kernel).is_absolute()) {
      return fail(
          invalidField("kernel", "\"{}\" is neither corral, debian nor an absolute path", spec.kernel));
    }
    auto kernel = bootFile(debian ? std::string() : spec.kernel, vmDir / "vmlinuz", "kernel", bootImage);
    if (!kernel) return fail(kernel.error());
    plan.kernelSource = debian ? GuestKernel::debian : GuestKernel::path;
    plan.kernel = std::move(*kernel);
  }
  auto machine = chooseMachine(spec.machine, plan.kernelSource);
  if (!machine) return fail(machine.error());
  plan.machine = *machine;
  auto initrd = bootFile(spec.initrd, vmDir / "initramfs.img", "initrd", bootImage);
  if (!initrd) return fail(initrd.error());
  plan.initrd = std::move(*initrd);

  plan.warm = spec.warm;

  plan.hostname = spec.hostname.empty() ? spec.name : spec.hostname;
  if (Status ok = schema::validateHostname(plan.hostname); !ok) return fail(ok.error());

  if (spec.memory) {
    auto bytes = schema::parseMemorySize(*spec.memory);
    if (!bytes) return fail(bytes.error());
    if (*bytes < kVmMinMemory) {
      return fail(
          invalidField("memory", "\"{}\" is too little for a Linux guest: give at least 32M", *spec.memory));
    }
    if (context.hostMemoryBytes > 0 && *bytes > context.hostMemoryBytes) {
      return fail(invalidField("memory", "\"{}\" is more than this host's memory ({})", *spec.memory,
                               gib(context.hostMemoryBytes)));
    }
    plan.memoryBytes = *bytes;
  }
  if (spec.cpus) {
    double cpus = *spec.cpus;
    if (!std::isfinite(cpus) || cpus < 1 || cpus != std::floor(cpus)) {
      return fail(invalidField("cpus", "{} is not a whole number of vCPUs (1, 2, ...)", cpus));
    }
    if (cpus > context.hostCpus) {
      return fail(invalidField("cpus", "{} vCPUs is more than this host's {} CPUs", cpus, context.hostCpus));
    }
    plan.vcpus = static_cast<int>(cpus);
  }
  return plan;
}

VmValidationContext hostVmContext(std::filesystem::path imageDir, const images::ImageStore* imageStore) {
  VmValidationContext context{.imageDir = std::move(imageDir), .imageStore = imageStore};
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (meminfo >> key >> kib >> unit) {
    if (key == "MemTotal:") {
      context.hostMemoryBytes = kib * 1024;
      break;
    }
  }
  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  context.hostCpus = cpus > 0 ? static_cast<int>(cpus) : 1;
  return context;
}

}  // namespace corral::daemon
