// Capability sets for containers: Docker's defaults, --cap-add/--cap-drop resolution with libcap's names
// (in the parent), and the allocation-free drop to exactly the kept set in the child.
#include "container/caps.h"

#include <linux/capability.h>
#include <sys/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <optional>

namespace corral::container {
namespace {

struct CapNameDeleter {
  void operator()(char* name) const { cap_free(name); }
};

// "net_admin", "CAP_NET_ADMIN", " cap_net_admin " → "CAP_NET_ADMIN".
std::string normalizeCapabilityName(std::string_view raw) {
  while (!raw.empty() && std::isspace(static_cast<unsigned char>(raw.front()))) raw.remove_prefix(1);
  while (!raw.empty() && std::isspace(static_cast<unsigned char>(raw.back()))) raw.remove_suffix(1);
  std::string name(raw);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
  if (name != "ALL" && !name.starts_with("CAP_")) name = "CAP_" + name;
  return name;
}

// libcap's number for "CAP_X"; it also accepts bare digits, which we refuse by always passing "cap_...".
std::optional<int> capabilityNumber(const std::string& normalized) {
  if (normalized.size() <= 4) return std::nullopt;
  std::string lower = normalized;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  cap_value_t value = 0;
  if (cap_from_name(lower.c_str(), &value) != 0) return std::nullopt;
  return static_cast<int>(value);
}

// Every capability the running kernel knows, by name, in numeric order (for "ALL").
std::vector<std::string> allCapabilities() {
  std::vector<std::string> names;
  int count = static_cast<int>(cap_max_bits());
  for (int value = 0; value < count; ++value) {
    std::unique_ptr<char, CapNameDeleter> name(cap_to_name(static_cast<cap_value_t>(value)));
    if (!name) continue;
    std::string normalized = normalizeCapabilityName(name.get());
    // libcap prints capabilities it has no name for as their number; those cannot be named by users.
    if (capabilityNumber(normalized) == value) names.push_back(std::move(normalized));
  }
  return names;
}

Result<std::vector<std::string>> normalizeList(const std::vector<std::string>& raw, const char* field) {
  std::vector<std::string> names;
  for (size_t i = 0; i < raw.size(); ++i) {
    std::string name = normalizeCapabilityName(raw[i]);
    if (name != "ALL" && !capabilityNumber(name)) {
      return fail(invalidField(field, "{}[{}]: unknown capability \"{}\"", field, i, raw[i]));
    }
    names.push_back(std::move(name));
  }
  return names;
}

bool contains(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

std::vector<std::string> dockerDefaultCapabilities() {
  return {"CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",
          "CAP_MKNOD",   "CAP_NET_RAW",      "CAP_SETGID",           "CAP_SETUID",
          "CAP_SETFCAP", "CAP_SETPCAP",      "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
          "CAP_KILL",    "CAP_AUDIT_WRITE"};
}

// Docker's semantics (moby TweakCapabilities): "ALL" in cap_add starts from every capability and then
// drops; "ALL" in cap_drop starts from nothing and then adds; otherwise defaults + adds − drops.
Result<std::vector<std::string>> resolveCapabilities(const std::vector<std::string>& add,
                                                     const std::vector<std::string>& drop) {
  auto adds = normalizeList(add, "cap_add");
  if (!adds) return fail(adds.error());
  auto drops = normalizeList(drop, "cap_drop");
  if (!drops) return fail(drops.error());

  std::vector<std::string> result;
  auto append = [&](const std::string& name) {
    if (name != "ALL" && !contains(result, name)) result.push_back(name);
  };
  if (contains(*adds, "ALL")) {
    for (const auto& name : allCapabilities()) append(name);
  } else if (!contains(*drops, "ALL")) {
    for (const auto& name : dockerDefaultCapabilities()) append(name);
  }
  for (const auto& name : *adds) append(name);
  if (!contains(*drops, "ALL")) {
    std::erase_if(result, [&](const std::string& name) { return contains(*drops, name); });
  }
  return result;
}

std::vector<std::string> allCapabilityNames() {
  return allCapabilities();
}

Result<std::vector<int>> capabilityNumbers(const std::vector<std::string>& names) {
  std::vector<int> numbers;
  for (size_t i = 0; i < names.size(); ++i) {
    auto number = capabilityNumber(normalizeCapabilityName(names[i]));
    if (!number) {
      return fail(invalidField("capabilities", "capabilities[{}]: unknown capability \"{}\"", i, names[i]));
    }
    if (std::find(numbers.begin(), numbers.end(), *number) == numbers.end()) numbers.push_back(*number);
  }
  return numbers;
}

int applyCapabilitySetsInChild(const CapabilityNumbers& sets) {
  auto mask = [](const std::vector<int>& caps) {
    uint64_t bits = 0;
    for (int cap : caps) bits |= uint64_t{1} << cap;
    return bits;
  };
  const uint64_t bounding = mask(sets.bounding);
  for (int cap = 0; cap < 64; ++cap) {
    int inBounding = ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (inBounding < 0) break;
    if (inBounding == 1 && (bounding & (uint64_t{1} << cap)) == 0 &&
        ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0)
      return errno;
  }
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  const uint64_t effective = mask(sets.effective), permitted = mask(sets.permitted),
                 inheritable = mask(sets.inheritable);
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  data[0].effective = static_cast<uint32_t>(effective);
  data[1].effective = static_cast<uint32_t>(effective >> 32);
  data[0].permitted = static_cast<uint32_t>(permitted);
  data[1].permitted = static_cast<uint32_t>(permitted >> 32);
  data[0].inheritable = static_cast<uint32_t>(inheritable);
  data[1].inheritable = static_cast<uint32_t>(inheritable >> 32);
  if (::syscall(SYS_capset, &header, data) != 0) return errno;
  // The kernel raises an ambient capability only when it is permitted and inheritable; like runc and crun,
  // the others of the list are left out (OCI configs commonly list ambient ones without inheritable).
  for (int cap : sets.ambient) {
    const uint64_t bit = uint64_t{1} << cap;
    if ((permitted & bit) == 0 || (inheritable & bit) == 0) continue;
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) != 0) return errno;
  }
  return 0;
}

// Runs in the forked child: only system calls, no allocation. We stay uid 0 inside the container, so
// keep-caps/securebits do not come into play: at execve root gets permitted = effective = bounding set
// (file capabilities of a root exec are treated as full), which is why the bounding set is the one that
// matters. Inheritable is left empty as Docker does since CVE-2022-24769; ambient is cleared.
int dropCapabilitiesInChild(const std::vector<int>& keep) {
  auto kept = [&keep](int cap) {
    for (int k : keep) {
      if (k == cap) return true;
    }
    return false;
  };
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;

  uint64_t permitted = 0;
  for (int cap = 0; cap < 64; ++cap) {
    int inBounding = ::prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
    if (inBounding < 0) break;  // EINVAL: past the kernel's last capability
    if (kept(cap)) {
      // Only what is still in our bounding set can be permitted (capset refuses the rest).
      if (inBounding == 1) permitted |= uint64_t{1} << cap;
      continue;
    }
    if (inBounding == 1 && ::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return errno;
  }

  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  data[0].effective = data[0].permitted = static_cast<uint32_t>(permitted);
  data[1].effective = data[1].permitted = static_cast<uint32_t>(permitted >> 32);
  if (::syscall(SYS_capset, &header, data) != 0) return errno;
  return 0;
}

}  // namespace corral::container
