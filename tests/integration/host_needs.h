// A test's needs of the host beyond root, declared and checked: which cgroup modes it can run on, which
// kernel features and which installed tools it uses. CORRAL_REQUIRE_HOST compares them with what this host
// has and skips only when the host truly lacks one; a missing tool (scripts/install-deps installs them) or
// root is a failure under CORRAL_REQUIRE_PRIVILEGED. Any other skip fails there (skip_guard.h).
#pragma once

#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "container/cgroup_mode.h"
#include "tests/integration/skip_guard.h"

namespace corral::testing {

enum class KernelFeature {
  CgroupKill,  // cgroup.kill in v2 groups (5.14)
};

struct KernelVersion {
  int major = 0;
  int minor = 0;
  auto operator<=>(const KernelVersion&) const = default;
};

// "6.1.0-18-amd64" -> 6.1; nullopt when the release does not start with MAJOR.MINOR.
inline std::optional<KernelVersion> parseKernelRelease(const std::string& release) {
  KernelVersion version;
  char dot = 0;
  if (std::sscanf(release.c_str(), "%d%c%d", &version.major, &dot, &version.minor) != 3 || dot != '.')
    return std::nullopt;
  return version;
}

inline KernelVersion firstKernelWith(KernelFeature feature) {
  switch (feature) {
    case KernelFeature::CgroupKill:
      return {5, 14};
  }
  return {};
}

inline const char* featureName(KernelFeature feature) {
  switch (feature) {
    case KernelFeature::CgroupKill:
      return "cgroup.kill";
  }
  return "?";
}

struct HostNeeds {
  bool root = true;
  std::vector<container::CgroupMode> cgroupModes{};  // empty: any
  std::vector<KernelFeature> kernelFeatures{};
  std::vector<std::string> tools{};  // absolute paths of programs the test runs
};

struct HostFacts {
  bool root = false;
  container::CgroupMode cgroupMode = container::CgroupMode::Unified;
  std::string kernelRelease{};
  std::vector<std::string> missingTools{};  // of the needs' tools, those not on this host
};

enum class Verdict { Run, Skip, Fail };
struct HostDecision {
  Verdict verdict = Verdict::Run;
  std::string reason;
};

// The whole decision, pure. A host that lacks a cgroup mode or kernel feature cannot run the test whatever
// CI wants, so that skip stands; root and tools can be had, so CI (requirePrivileged) fails without them.
inline HostDecision decideHost(const HostNeeds& needs, const HostFacts& host, bool requirePrivileged) {
  auto missing = [&](std::string reason) {
    return HostDecision{requirePrivileged ? Verdict::Fail : Verdict::Skip, std::move(reason)};
  };
  if (needs.root && !host.root) return missing("needs root (namespaces, cgroups, mounts, libvirt)");
  if (!needs.cgroupModes.empty() && std::find(needs.cgroupModes.begin(), needs.cgroupModes.end(),
                                              host.cgroupMode) == needs.cgroupModes.end()) {
    std::string wanted;
    for (container::CgroupMode mode : needs.cgroupModes)
      wanted += (wanted.empty() ? "" : " or ") + std::string(container::cgroupModeName(mode));
    return {Verdict::Skip, "needs a " + wanted + " host; this host is " +
                               std::string(container::cgroupModeName(host.cgroupMode))};
  }
  for (KernelFeature feature : needs.kernelFeatures) {
    std::optional<KernelVersion> version = parseKernelRelease(host.kernelRelease);
    if (!version) return {Verdict::Fail, "cannot read the kernel release \"" + host.kernelRelease + "\""};
    KernelVersion first = firstKernelWith(feature);
    if (*version < first) {
      return {Verdict::Skip, std::string("needs ") + featureName(feature) + " (Linux " +
                                 std::to_string(first.major) + "." + std::to_string(first.minor) +
                                 "); this kernel is " + host.kernelRelease};
    }
  }
  if (!host.missingTools.empty())
    return missing(host.missingTools.front() + " is missing (scripts/install-deps installs it)");
  return {};
}

// What this host has, as far as `needs` asks.
inline HostFacts observeHost(const HostNeeds& needs) {
  HostFacts host;
  host.root = ::geteuid() == 0;
  if (auto mode = container::detectCgroupMode()) host.cgroupMode = *mode;
  struct utsname names {};
  if (::uname(&names) == 0) host.kernelRelease = names.release;
  for (const std::string& tool : needs.tools)
    if (!std::filesystem::exists(tool)) host.missingTools.push_back(tool);
  return host;
}

inline HostDecision checkHost(const HostNeeds& needs) {
  HostDecision decision =
      decideHost(needs, observeHost(needs), std::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr);
  if (decision.verdict == Verdict::Skip) declareCheckedSkip(decision.reason);
  return decision;
}

}  // namespace corral::testing

// In a test body or SetUp: `CORRAL_REQUIRE_HOST({.cgroupModes = {CgroupMode::Hybrid}});`.
#define CORRAL_REQUIRE_HOST(...)                                                                       \
  do {                                                                                                 \
    const ::corral::testing::HostDecision corral_host_ = ::corral::testing::checkHost(__VA_ARGS__);    \
    if (corral_host_.verdict == ::corral::testing::Verdict::Fail) FAIL() << corral_host_.reason;       \
    if (corral_host_.verdict == ::corral::testing::Verdict::Skip) GTEST_SKIP() << corral_host_.reason; \
  } while (false)
