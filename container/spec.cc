// Validation of an InstanceSpec into the runtime's ContainerConfig: every field checked and named on error,
// the image looked up (the only I/O here).
#include "container/spec.h"

#include <unistd.h>

#include <cmath>
#include <system_error>

#include "container/caps.h"
#include "container/devices.h"
#include "container/seccomp.h"
#include "core/text.h"
#include "schema/names.h"

namespace corral::container {
namespace {

// Below this a container's runtime and shell are killed before they start (docker's floor is 6 MiB).
constexpr uint64_t kMinContainerMemoryBytes = uint64_t{4} << 20;
constexpr double kMaxCpus = 1024;
constexpr int64_t kMaxPids = 4194304;  // the kernel's PID_MAX_LIMIT

bool isEnvNameStart(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_';
}
bool isEnvNameChar(char c) {
  return isEnvNameStart(c) || (c >= '0' && c <= '9');
}

Status validateEnv(const std::vector<std::string>& env) {
  for (size_t i = 0; i < env.size(); ++i) {
    std::string field = fmt::format("env[{}]", i);
    const std::string& entry = env[i];
    size_t eq = entry.find('=');
    if (eq == std::string::npos) {
      return fail(invalidField(field, "\"{}\" is not KEY=VALUE (no '=')", entry));
    }
    std::string_view key(entry.data(), eq);
    bool valid = !key.empty() && isEnvNameStart(key.front());
    for (char c : key) valid = valid && isEnvNameChar(c);
    if (!valid) {
      return fail(invalidField(field, "\"{}\": the name must match [A-Za-z_][A-Za-z0-9_]*", key));
    }
    if (entry.find('\0') != std::string::npos) return fail(invalidField(field, "contains a NUL byte"));
  }
  return {};
}

// Each "--device" entry checked in form, against the others and against the host's node.
Result<std::vector<DeviceNode>> deviceNodes(const std::vector<std::string>& devices) {
  std::vector<DeviceNode> nodes;
  for (size_t i = 0; i < devices.size(); ++i) {
    const std::string field = fmt::format("devices[{}]", i);
    auto mapping = parseDeviceMapping(devices[i], field);
    if (!mapping) return fail(mapping.error());
    for (size_t j = 0; j < nodes.size(); ++j) {
      if (nodes[j].path == mapping->containerPath)
        return fail(invalidField(field, "container path \"{}\" is already given by devices[{}]",
                                 mapping->containerPath, j));
    }
    auto node = deviceNodeFromHost(*mapping, field);
    if (!node) return fail(node.error());
    nodes.push_back(std::move(*node));
  }
  return nodes;
}

Result<uint32_t> cpuMillis(double cpus) {
  long online = ::sysconf(_SC_NPROCESSORS_ONLN);
  double limit = std::min(kMaxCpus, online > 0 ? static_cast<double>(online) : kMaxCpus);
  if (!std::isfinite(cpus) || cpus <= 0 || cpus > limit) {
    return fail(invalidField("cpus", "{} is out of range: give more than 0 and at most {} (online CPUs)",
                             cpus, limit));
  }
  auto millis = static_cast<uint32_t>(std::llround(cpus * 1000));
  if (millis == 0) return fail(invalidField("cpus", "{} is less than a thousandth of a CPU", cpus));
  return millis;
}

}  // namespace

Result<ContainerConfig> toContainerConfig(const schema::InstanceSpec& spec,
                                          const ValidationContext& context) {
  ContainerConfig config;
  if (Status ok = schema::validateName(spec.name, "name"); !ok) return fail(ok.error());
  if (spec.kind != schema::InstanceKind::container) {
    return fail(invalidField("kind", "kind \"{}\" is not a container", schema::instanceKindName(spec.kind)));
  }
  config.name = spec.name;
  if (!spec.kernel.empty()) return fail(invalidField("kernel", "only a VM boots a kernel of its own"));
  if (!spec.initrd.empty()) return fail(invalidField("initrd", "only a VM boots an initramfs"));
  if (spec.warm) return fail(invalidField("warm", "only a VM restores from a snapshot"));

  if (!context.lowerDirs.empty()) {
    config.lowerDirs = context.lowerDirs;
  } else {
    // Image names follow name rules, so the path below cannot leave the image directory.
    if (Status ok = schema::validateName(spec.image, "image"); !ok) return fail(ok.error());
    const std::filesystem::path rootfs = context.imageDir / spec.image / "rootfs";
    config.lowerDirs = {rootfs};
    std::error_code error;
    if (!std::filesystem::is_directory(rootfs, error)) {
      return fail(Error(ErrorKind::NotFound,
                        fmt::format("image \"{}\" not found in {}", spec.image, context.imageDir.string()),
                        "image"));
    }
  }
  config.bundleDir = context.containersDir / spec.name;

  if (!spec.command.empty() && spec.command.front().empty()) {
    return fail(invalidField("command[0]", "the program to run is empty"));
  }
  config.argv = spec.command.empty() ? std::vector<std::string>{"/bin/sh"} : spec.command;
  if (Status ok = validateEnv(spec.env); !ok) return fail(ok.error());
  config.env = spec.env;
  config.hostname = spec.hostname.empty() ? spec.name : spec.hostname;
  if (Status ok = schema::validateHostname(config.hostname); !ok) return fail(ok.error());

  if (spec.memory) {
    auto bytes = schema::parseMemorySize(*spec.memory);
    if (!bytes) return fail(bytes.error());
    if (*bytes < kMinContainerMemoryBytes) {
      return fail(
          invalidField("memory", "\"{}\" is too little for a container: give at least 4M", *spec.memory));
    }
    config.limits.memoryBytes = *bytes;
  }
  if (spec.cpus) {
    auto millis = cpuMillis(*spec.cpus);
    if (!millis) return fail(millis.error());
    config.limits.cpuMillis = *millis;
  }
  if (spec.pids) {
    if (*spec.pids < 1 || *spec.pids > kMaxPids) {
      return fail(invalidField("pids", "{} is out of range: give 1 to {}", *spec.pids, kMaxPids));
    }
    config.limits.pids = static_cast<uint32_t>(*spec.pids);
  }

  auto capabilities = resolveCapabilities(spec.capAdd, spec.capDrop);
  if (!capabilities) return fail(capabilities.error());
  config.capabilities = std::move(*capabilities);
  auto seccompChoice = schema::parseSeccompChoice(spec.seccomp);
  if (!seccompChoice) return fail(seccompChoice.error());
  auto seccomp = resolveSeccompProfile(*seccompChoice, config.capabilities);
  if (!seccomp) return fail(seccomp.error());
  config.seccomp = std::move(*seccomp);

  auto devices = deviceNodes(spec.devices);
  if (!devices) return fail(devices.error());
  config.devices = std::move(*devices);

  if (spec.userNamespace)
    config.userNamespace =
        IdMapping::oneRange(context.userNamespaceRange.hostId, context.userNamespaceRange.count);
  if (spec.init) {
    std::error_code statError;
    if (context.reaperPath.empty() || !std::filesystem::is_regular_file(context.reaperPath, statError))
      return fail(invalidField("init", "corrald has no reaper binary at \"{}\" (see corrald --reaper)",
                               context.reaperPath.string()));
    config.initBinary = context.reaperPath;
  }
  config.cgroupOptions = context.cgroupOptions;
  return config;
}

}  // namespace corral::container
