// Accelerator choice: /dev/kvm checks, then a bounded KVM probe boot that must reach the guest agent.
#include "vmm/accel.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>

#include "core/log.h"
#include "core/unique_fd.h"
#include "vmm/agent.h"

namespace corral::vmm {
namespace {

constexpr const char* kProbeInstance = "kvm-probe";
constexpr uint64_t kProbeMemory = 256ull << 20;

void destroyProbe(Libvirt& libvirt, const std::string& name) {
  if (auto destroyed = libvirt.destroy(name); !destroyed)
    log::warn("KVM probe: destroy {}: {}", name, destroyed.error().message());
}

// libvirt passes QEMU's stderr through, several lines; the reason is shown on one line.
std::string oneLine(std::string text) {
  while (!text.empty() && text.back() == '\n') text.pop_back();
  for (size_t at = text.find('\n'); at != std::string::npos; at = text.find('\n', at))
    text.replace(at, 1, "; ");
  return text;
}

std::string secondsText(std::chrono::milliseconds timeout) {
  if (timeout.count() % 1000 == 0) return fmt::format("{} s", timeout.count() / 1000);
  return fmt::format("{} ms", timeout.count());
}

}  // namespace

std::string kvmDeviceProblem() {
  UniqueFd kvm(::open("/dev/kvm", O_RDWR | O_CLOEXEC));
  if (!kvm) {
    if (errno == ENOENT) return "/dev/kvm: missing";
    return fmt::format("open(\"/dev/kvm\", O_RDWR): {}", std::strerror(errno));
  }
  const int version = ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  if (version < 0) return fmt::format("ioctl(/dev/kvm, KVM_GET_API_VERSION): {}", std::strerror(errno));
  if (version != KVM_API_VERSION)
    return fmt::format("/dev/kvm: KVM API version {}, expected {}", version, KVM_API_VERSION);
  return {};
}

AcceleratorChoice chooseAccelerator(Libvirt& libvirt, const std::filesystem::path& kernel,
                                    const std::filesystem::path& initrd, Machine machine,
                                    const std::filesystem::path& workDir, std::chrono::milliseconds timeout,
                                    const std::string& domainName) {
  if (auto problem = kvmDeviceProblem(); !problem.empty()) return {Accelerator::Tcg, problem};

  // A probe left by a crashed corrald would make the create below fail.
  destroyProbe(libvirt, domainName);

  DomainConfig config;
  config.domainName = domainName;
  config.instanceName = kProbeInstance;
  config.accelerator = Accelerator::Kvm;
  config.machine = machine;
  config.memoryBytes = kProbeMemory;
  config.kernel = kernel;
  config.initrd = initrd;
  config.cmdline = kernelCommandLine(kProbeInstance, kProbeInstance, std::nullopt, std::nullopt);
  config.consoleLog = workDir / "kvm-probe.console.log";
  config.agentSocket = workDir / "kvm-probe.agent.sock";
  if (auto valid = validate(config); !valid)
    return {Accelerator::Tcg, fmt::format("KVM probe not attempted: {}", valid.error().message())};
  std::error_code ignored;
  std::filesystem::create_directories(workDir, ignored);
  std::filesystem::remove(config.agentSocket, ignored);

  const auto start = std::chrono::steady_clock::now();
  auto created = libvirt.createTransient(domainXml(config));
  if (!created) {
    destroyProbe(libvirt, domainName);
    return {Accelerator::Tcg,
            fmt::format("KVM probe domain did not start: {}", oneLine(created.error().message()))};
  }
  auto agent = AgentClient::connect(config.agentSocket, start + timeout);
  const auto elapsed =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
  destroyProbe(libvirt, domainName);
  std::filesystem::remove(config.agentSocket, ignored);
  if (!agent)
    return {Accelerator::Tcg,
            fmt::format("KVM probe boot did not reach userspace within {} (nested virtualization?)",
                        secondsText(timeout))};
  return {Accelerator::Kvm, fmt::format("KVM probe boot ({} on {}) reached userspace in {} ms",
                                        kernel.filename().string(), machineName(machine), elapsed.count())};
}

}  // namespace corral::vmm
