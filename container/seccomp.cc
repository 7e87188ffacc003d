// Seccomp: Docker's default policy as a deny list, OCI/Docker JSON profiles, compiling a profile to BPF with
// libseccomp in the parent and installing the program in the child without allocating.
#include "container/seccomp.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>

#include "core/unique_fd.h"

namespace corral::container {
namespace {

using nlohmann::json;

constexpr int kEperm = EPERM;

// Docker's default.json, seen as what its allow list leaves out (on a kernel >= 4.8, where Docker allows
// ptrace and process_vm_* to every container). Each group is re-enabled by the capability Docker names in
// its "includes.caps" for those syscalls; the first group has no capability that re-enables it.
struct CapabilityGroup {
  const char* capability;  // nullptr: denied whatever the capabilities
  std::vector<const char*> syscalls;
};

const std::vector<CapabilityGroup>& dockerDeniedGroups() {
  static const std::vector<CapabilityGroup> groups = {
      {nullptr,
       {"add_key", "create_module", "get_kernel_syms", "keyctl", "nfsservctl", "query_module", "request_key",
        "_sysctl", "sysfs", "uselib", "userfaultfd", "ustat", "vm86", "vm86old", "kexec_load",
        "kexec_file_load", "move_pages", "swapon", "swapoff"}},
      {"CAP_DAC_READ_SEARCH", {"open_by_handle_at"}},
      {"CAP_SYS_ADMIN",
       {"fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie", "mount",
        "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "pivot_root", "quotactl",
        "quotactl_fd", "setns", "umount", "umount2", "unshare"}},
      {"CAP_SYS_ADMIN_OR_BPF", {"bpf"}},
      {"CAP_SYS_ADMIN_OR_PERFMON", {"perf_event_open"}},
      {"CAP_SYS_BOOT", {"reboot"}},
      {"CAP_SYS_MODULE", {"delete_module", "init_module", "finit_module"}},
      {"CAP_SYS_PACCT", {"acct"}},
      {"CAP_SYS_PTRACE", {"kcmp", "pidfd_getfd", "process_madvise"}},
      {"CAP_SYS_RAWIO", {"iopl", "ioperm"}},
      {"CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_adjtime"}},
      {"CAP_SYS_TTY_CONFIG", {"vhangup"}},
      {"CAP_SYS_NICE", {"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}},
      {"CAP_SYSLOG_OR_SYS_ADMIN", {"syslog"}},
  };
  return groups;
}

// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: Docker allows clone only when
// (flags & 0x7E020000) == 0; as a deny list that is one MaskedEqual rule per flag bit.
constexpr uint64_t kNamespaceCloneFlags[] = {CLONE_NEWNS,   CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                             CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET};
constexpr uint64_t kAfVsock = 40;

std::string normalizeCapability(std::string_view name) {
  std::string upper;
  for (char c : name) upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  if (!upper.starts_with("CAP_")) upper = "CAP_" + upper;
  return upper;
}

bool groupEnabled(std::string_view group, const std::set<std::string>& caps) {
  if (group == "CAP_SYS_ADMIN_OR_BPF") return caps.contains("CAP_SYS_ADMIN") || caps.contains("CAP_BPF");
  if (group == "CAP_SYS_ADMIN_OR_PERFMON")
    return caps.contains("CAP_SYS_ADMIN") || caps.contains("CAP_PERFMON");
  if (group == "CAP_SYSLOG_OR_SYS_ADMIN")
    return caps.contains("CAP_SYSLOG") || caps.contains("CAP_SYS_ADMIN");
  return caps.contains(std::string(group));
}

// "6.18.0-foo" → {6, 18}.
std::pair<int, int> kernelVersion() {
  struct utsname u {};
  if (::uname(&u) != 0) return {0, 0};
  int major = 0, minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) < 2) return {0, 0};
  return {major, minor};
}

bool kernelAtLeast(int major, int minor) {
  auto [kmaj, kmin] = kernelVersion();
  return kmaj > major || (kmaj == major && kmin >= minor);
}

std::string actionName(SeccompAction action) {
  switch (action) {
    case SeccompAction::Allow:
      return "ALLOW";
    case SeccompAction::Errno:
      return "ERRNO";
    case SeccompAction::Kill:
      return "KILL_PROCESS";
    case SeccompAction::Trap:
      return "TRAP";
    case SeccompAction::Log:
      return "LOG";
  }
  return "?";
}

uint32_t libseccompAction(SeccompAction action, int errnoValue) {
  switch (action) {
    case SeccompAction::Allow:
      return SCMP_ACT_ALLOW;
    case SeccompAction::Errno:
      return SCMP_ACT_ERRNO(static_cast<uint32_t>(errnoValue));
    case SeccompAction::Kill:
      return SCMP_ACT_KILL_PROCESS;
    case SeccompAction::Trap:
      return SCMP_ACT_TRAP;
    case SeccompAction::Log:
      return SCMP_ACT_LOG;
  }
  return SCMP_ACT_KILL_PROCESS;
}

scmp_compare libseccompCompare(SeccompCompare op) {
  switch (op) {
    case SeccompCompare::NotEqual:
      return SCMP_CMP_NE;
    case SeccompCompare::Less:
      return SCMP_CMP_LT;
    case SeccompCompare::LessOrEqual:
      return SCMP_CMP_LE;
    case SeccompCompare::Equal:
      return SCMP_CMP_EQ;
    case SeccompCompare::GreaterOrEqual:
      return SCMP_CMP_GE;
    case SeccompCompare::Greater:
      return SCMP_CMP_GT;
    case SeccompCompare::MaskedEqual:
      return SCMP_CMP_MASKED_EQ;
  }
  return SCMP_CMP_EQ;
}

// ---- JSON profiles ----

std::string describeJsonType(const json& value) {
  return value.type_name();
}

Result<SeccompAction> parseAction(const json& value, const std::string& path) {
  if (!value.is_string())
    return fail(invalidField(path, "{}: must be a string like \"SCMP_ACT_ERRNO\", got {}", path,
                             describeJsonType(value)));
  const std::string name = value.get<std::string>();
  if (name == "SCMP_ACT_ALLOW") return SeccompAction::Allow;
  if (name == "SCMP_ACT_ERRNO") return SeccompAction::Errno;
  // KILL is thread-level in the kernel; corral kills the whole process for all three (a half-killed
  // container is worse than a dead one).
  if (name == "SCMP_ACT_KILL" || name == "SCMP_ACT_KILL_PROCESS" || name == "SCMP_ACT_KILL_THREAD")
    return SeccompAction::Kill;
  if (name == "SCMP_ACT_TRAP") return SeccompAction::Trap;
  if (name == "SCMP_ACT_LOG") return SeccompAction::Log;
  if (name == "SCMP_ACT_TRACE" || name == "SCMP_ACT_NOTIFY")
    return fail(invalidField(path,
                             "{}: action \"{}\" needs a tracer or a notify listener, which corral does "
                             "not provide",
                             path, name));
  return fail(
      invalidField(path,
                   "{}: unknown action \"{}\" (expected SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, "
                   "SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP or SCMP_ACT_LOG)",
                   path, name));
}

Result<int> parseErrno(const json& value, const std::string& path) {
  if (!value.is_number_integer())
    return fail(
        invalidField(path, "{}: must be an integer errno value, got {}", path, describeJsonType(value)));
  int64_t number = value.get<int64_t>();
  if (number < 0 || number > 4095)
    return fail(invalidField(path, "{}: errno {} is out of range (0-4095)", path, number));
  return static_cast<int>(number);
}

// "SCMP_ARCH_X86_64" or "x86_64" → libseccomp's token, 0 when unknown.
uint32_t resolveArchitecture(std::string name) {
  if (name.starts_with("SCMP_ARCH_")) name = name.substr(10);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return seccomp_arch_resolve_name(name.c_str());
}

Result<bool> listHasNativeArch(const json& list, const std::string& path) {
  if (!list.is_array()) return fail(invalidField(path, "{}: must be an array of architecture names", path));
  bool native = false;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string itemPath = fmt::format("{}[{}]", path, i);
    if (!list[i].is_string()) return fail(invalidField(itemPath, "{}: must be a string", itemPath));
    uint32_t arch = resolveArchitecture(list[i].get<std::string>());
    if (arch == 0)
      return fail(
          invalidField(itemPath, "{}: unknown architecture \"{}\"", itemPath, list[i].get<std::string>()));
    if (arch == seccomp_arch_native()) native = true;
  }
  return native;
}

Result<SeccompCompare> parseCompare(const json& value, const std::string& path) {
  if (!value.is_string()) return fail(invalidField(path, "{}: must be a string like \"SCMP_CMP_EQ\"", path));
  const std::string name = value.get<std::string>();
  if (name == "SCMP_CMP_NE") return SeccompCompare::NotEqual;
  if (name == "SCMP_CMP_LT") return SeccompCompare::Less;
  if (name == "SCMP_CMP_LE") return SeccompCompare::LessOrEqual;
  if (name == "SCMP_CMP_EQ") return SeccompCompare::Equal;
  if (name == "SCMP_CMP_GE") return SeccompCompare::GreaterOrEqual;
  if (name == "SCMP_CMP_GT") return SeccompCompare::Greater;
  if (name == "SCMP_CMP_MASKED_EQ") return SeccompCompare::MaskedEqual;
  return fail(invalidField(path,
                           "{}: unknown operator \"{}\" (expected SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT or "
                           "_MASKED_EQ)",
                           path, name));
}

Result<uint64_t> parseUnsigned(const json& value, const std::string& path) {
  if (!value.is_number_unsigned() && !(value.is_number_integer() && value.get<int64_t>() >= 0))
    return fail(invalidField(path, "{}: must be a non-negative integer", path));
  return value.get<uint64_t>();
}

Result<SeccompArg> parseArg(const json& value, const std::string& path) {
  if (!value.is_object()) return fail(invalidField(path, "{}: must be an object", path));
  SeccompArg arg;
  bool haveIndex = false, haveOp = false;
  for (const auto& [key, item] : value.items()) {
    std::string itemPath = fmt::format("{}.{}", path, key);
    if (key == "index") {
      auto index = parseUnsigned(item, itemPath);
      if (!index) return fail(index.error());
      if (*index > 5)
        return fail(invalidField(itemPath, "{}: syscalls have arguments 0-5, not {}", itemPath, *index));
      arg.index = static_cast<unsigned>(*index);
      haveIndex = true;
    } else if (key == "value") {
      auto number = parseUnsigned(item, itemPath);
      if (!number) return fail(number.error());
      arg.value = *number;
    } else if (key == "valueTwo") {
      auto number = parseUnsigned(item, itemPath);
      if (!number) return fail(number.error());
      arg.valueTwo = *number;
    } else if (key == "op") {
      auto op = parseCompare(item, itemPath);
      if (!op) return fail(op.error());
      arg.op = *op;
      haveOp = true;
    } else {
      return fail(invalidField(itemPath, "{}: unknown key (expected index, value, valueTwo, op)", itemPath));
    }
  }
  if (!haveIndex) return fail(invalidField(path + ".index", "{}.index: is required", path));
  if (!haveOp) return fail(invalidField(path + ".op", "{}.op: is required", path));
  return arg;
}

// Docker's "includes"/"excludes": architecture and kernel conditions are honoured; capability conditions
// are refused, since a file profile is resolved without the container's capabilities.
Result<bool> conditionHolds(const json& value, const std::string& path, bool includes) {
  if (!value.is_object()) return fail(invalidField(path, "{}: must be an object", path));
  bool holds = true;
  for (const auto& [key, item] : value.items()) {
    std::string itemPath = fmt::format("{}.{}", path, key);
    if (key == "arches") {
      auto native = listHasNativeArch(item, itemPath);
      if (!native) return fail(native.error());
      if (!item.empty()) holds = holds && (includes ? *native : !*native);
    } else if (key == "minKernel" && includes) {
      int major = 0, minor = 0;
      if (!item.is_string() || std::sscanf(item.get<std::string>().c_str(), "%d.%d", &major, &minor) != 2)
        return fail(invalidField(itemPath, "{}: must be a kernel version like \"4.8\"", itemPath));
      holds = holds && kernelAtLeast(major, minor);
    } else if (key == "caps") {
      if (!item.is_array()) return fail(invalidField(itemPath, "{}: must be an array", itemPath));
      if (!item.empty())
        return fail(
            invalidField(itemPath,
                         "{}: capability-conditional rules are not supported in profile files; use "
                         "\"default\" for Docker's default profile, or list the syscalls unconditionally",
                         itemPath));
    } else {
      return fail(invalidField(itemPath, "{}: unknown key (expected {})", itemPath,
                               includes ? "arches, caps, minKernel" : "arches, caps"));
    }
  }
  return holds;
}

Result<std::optional<SeccompRule>> parseSyscallEntry(const json& entry, const std::string& path) {
  if (!entry.is_object()) return fail(invalidField(path, "{}: must be an object", path));
  SeccompRule rule;
  bool haveAction = false, haveNames = false, applies = true;
  std::optional<int> errnoRet;
  for (const auto& [key, item] : entry.items()) {
    std::string itemPath = fmt::format("{}.{}", path, key);
    if (key == "names" || key == "name") {
      json names = key == "name" ? json::array({item}) : item;
      if (key == "names" && !item.is_array())
        return fail(invalidField(itemPath, "{}: must be an array of syscall names", itemPath));
      for (size_t i = 0; i < names.size(); ++i) {
        std::string namePath = key == "name" ? itemPath : fmt::format("{}[{}]", itemPath, i);
        if (!names[i].is_string()) return fail(invalidField(namePath, "{}: must be a string", namePath));
        std::string name = names[i].get<std::string>();
        if (seccomp_syscall_resolve_name(name.c_str()) == __NR_SCMP_ERROR)
          return fail(invalidField(namePath, "{}: unknown syscall \"{}\"", namePath, name));
        rule.syscalls.push_back(std::move(name));
      }
      haveNames = true;
    } else if (key == "action") {
      auto action = parseAction(item, itemPath);
      if (!action) return fail(action.error());
      rule.action = *action;
      haveAction = true;
    } else if (key == "errnoRet") {
      auto value = parseErrno(item, itemPath);
      if (!value) return fail(value.error());
      errnoRet = *value;
    } else if (key == "args") {
      if (item.is_null()) continue;
      if (!item.is_array()) return fail(invalidField(itemPath, "{}: must be an array", itemPath));
      for (size_t i = 0; i < item.size(); ++i) {
        auto arg = parseArg(item[i], fmt::format("{}[{}]", itemPath, i));
        if (!arg) return fail(arg.error());
        rule.args.push_back(*arg);
      }
    } else if (key == "includes" || key == "excludes") {
      auto holds = conditionHolds(item, itemPath, key == "includes");
      if (!holds) return fail(holds.error());
      applies = applies && *holds;
    } else if (key == "comment") {
      if (!item.is_string()) return fail(invalidField(itemPath, "{}: must be a string", itemPath));
    } else {
      return fail(invalidField(itemPath,
                               "{}: unknown key (expected names, action, errnoRet, args, includes, excludes, "
                               "comment)",
                               itemPath));
    }
  }
  if (!haveNames) return fail(invalidField(path + ".names", "{}.names: is required", path));
  if (!haveAction) return fail(invalidField(path + ".action", "{}.action: is required", path));
  if (errnoRet && rule.action != SeccompAction::Errno)
    return fail(invalidField(path + ".errnoRet", "{}.errnoRet: only applies to SCMP_ACT_ERRNO", path));
  rule.errnoValue = errnoRet.value_or(kEperm);
  if (!applies) return std::optional<SeccompRule>();
  return std::optional<SeccompRule>(std::move(rule));
}

Result<SeccompProfile> parseProfileObject(const json& root, std::string_view origin) {
  if (!root.is_object()) return fail(invalidField("", "the profile must be a JSON object"));
  SeccompProfile profile;
  profile.name = std::string(origin);
  bool haveDefault = false;
  std::optional<int> defaultErrno;
  for (const auto& [key, item] : root.items()) {
    if (key == "defaultAction") {
      auto action = parseAction(item, key);
      if (!action) return fail(action.error());
      profile.defaultAction = *action;
      haveDefault = true;
    } else if (key == "defaultErrnoRet") {
      auto value = parseErrno(item, key);
      if (!value) return fail(value.error());
      defaultErrno = *value;
    } else if (key == "architectures") {
      auto native = listHasNativeArch(item, key);
      if (!native) return fail(native.error());
      if (!item.empty() && !*native)
        return fail(invalidField(key, "architectures: does not include this host's architecture ({})",
                                 seccomp_arch_native() == SCMP_ARCH_X86_64 ? "x86_64" : "native"));
    } else if (key == "archMap") {
      if (!item.is_array()) return fail(invalidField(key, "archMap: must be an array"));
      for (size_t i = 0; i < item.size(); ++i) {
        std::string path = fmt::format("archMap[{}]", i);
        if (!item[i].is_object() || !item[i].contains("architecture"))
          return fail(invalidField(path, "{}: must be an object with \"architecture\"", path));
        auto native = listHasNativeArch(json::array({item[i]["architecture"]}), path + ".architecture");
        if (!native) return fail(native.error());
        if (item[i].contains("subArchitectures")) {
          auto sub = listHasNativeArch(item[i]["subArchitectures"], path + ".subArchitectures");
          if (!sub) return fail(sub.error());
        }
      }
    } else if (key == "syscalls") {
      if (item.is_null()) continue;
      if (!item.is_array()) return fail(invalidField(key, "syscalls: must be an array"));
      for (size_t i = 0; i < item.size(); ++i) {
        auto rule = parseSyscallEntry(item[i], fmt::format("syscalls[{}]", i));
        if (!rule) return fail(rule.error());
        if (*rule) profile.rules.push_back(std::move(**rule));
      }
    } else if (key == "flags") {
      if (!item.is_array() || !item.empty())
        return fail(invalidField(key, "flags: seccomp filter flags are not supported (only an empty list)"));
    } else if (key == "comment") {
      if (!item.is_string()) return fail(invalidField(key, "comment: must be a string"));
    } else if (key == "listenerPath" || key == "listenerMetadata") {
      return fail(invalidField(key, "{}: seccomp notify listeners are not supported", key));
    } else {
      return fail(
          invalidField(key,
                       "{}: unknown key (expected defaultAction, defaultErrnoRet, architectures, archMap, "
                       "syscalls, flags, comment)",
                       key));
    }
  }
  if (!haveDefault) return fail(invalidField("defaultAction", "defaultAction: is required"));
  if (defaultErrno && profile.defaultAction != SeccompAction::Errno)
    return fail(invalidField("defaultErrnoRet", "defaultErrnoRet: only applies to SCMP_ACT_ERRNO"));
  profile.defaultErrno = defaultErrno.value_or(kEperm);
  return profile;
}

struct SeccompContextDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using SeccompContext = std::unique_ptr<void, SeccompContextDeleter>;

}  // namespace

SeccompProfile dockerDefaultProfile(const std::vector<std::string>& capabilities) {
  std::set<std::string> caps;
  for (const auto& name : capabilities) caps.insert(normalizeCapability(name));

  SeccompProfile profile;
  profile.name = "default";
  profile.defaultAction = SeccompAction::Allow;

  SeccompRule denied;
  denied.action = SeccompAction::Errno;
  denied.errnoValue = EPERM;
  for (const auto& group : dockerDeniedGroups()) {
    if (group.capability && groupEnabled(group.capability, caps)) continue;
    for (const char* name : group.syscalls) denied.syscalls.emplace_back(name);
  }
  // Docker lets every container ptrace (its own processes) since 4.8 fixed the seccomp bypass via ptrace.
  if (!kernelAtLeast(4, 8) && !caps.contains("CAP_SYS_PTRACE")) {
    for (const char* name : {"ptrace", "process_vm_readv", "process_vm_writev"})
      denied.syscalls.emplace_back(name);
  }
  if (!caps.contains("CAP_SYS_CHROOT")) denied.syscalls.emplace_back("chroot");
  profile.rules.push_back(std::move(denied));

  if (!caps.contains("CAP_SYS_ADMIN")) {
    // clone3 passes its flags in memory BPF cannot read: ENOSYS makes libcs fall back to clone(2).
    profile.rules.push_back(
        {.syscalls = {"clone3"}, .action = SeccompAction::Errno, .errnoValue = ENOSYS, .args = {}});
    for (uint64_t flag : kNamespaceCloneFlags) {
      profile.rules.push_back(
          {.syscalls = {"clone"},
           .action = SeccompAction::Errno,
           .errnoValue = EPERM,
           .args = {{.index = 0, .value = flag, .valueTwo = flag, .op = SeccompCompare::MaskedEqual}}});
    }
  }
  // Docker's allow list admits socket() for every family but AF_VSOCK.
  profile.rules.push_back({.syscalls = {"socket"},
                           .action = SeccompAction::Errno,
                           .errnoValue = EPERM,
                           .args = {{.index = 0, .value = kAfVsock, .op = SeccompCompare::Equal}}});
  return profile;
}

SeccompProfile unconfinedProfile() {
  SeccompProfile profile;
  profile.name = "unconfined";
  profile.defaultAction = SeccompAction::Allow;
  return profile;
}

Result<SeccompProfile> parseSeccompProfile(std::string_view text, std::string_view origin) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    return fail(invalidField("", "seccomp profile {}: malformed JSON: {}", origin, e.what()));
  }
  auto profile = parseProfileObject(root, origin);
  if (!profile) return fail(profile.error().wrap(fmt::format("seccomp profile {}", origin)));
  return profile;
}

Result<SeccompProfile> resolveSeccompProfile(std::string_view choice,
                                             const std::vector<std::string>& capabilities) {
  if (choice == "default") return dockerDefaultProfile(capabilities);
  if (choice == "unconfined") return unconfinedProfile();
  if (choice.empty() || choice.front() != '/')
    return fail(invalidField("seccomp",
                             "must be \"default\", \"unconfined\" or an absolute path to a JSON profile, "
                             "got \"{}\"",
                             choice));
  std::string path(choice);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    Error e = systemError(errno, fmt::format("open(\"{}\")", path));
    return fail(Error(ErrorKind::InvalidArgument, e.message(), "seccomp", e.errnum()));
  }
  std::string text;
  char buffer[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      Error e = systemError(errno, fmt::format("read(\"{}\")", path));
      return fail(Error(ErrorKind::InvalidArgument, e.message(), "seccomp", e.errnum()));
    }
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
    if (text.size() > (16u << 20))
      return fail(invalidField("seccomp", "\"{}\" is larger than 16 MiB; not a seccomp profile", path));
  }
  auto profile = parseSeccompProfile(text, fmt::format("\"{}\"", path));
  if (!profile) return fail(std::move(profile.error()).inField("seccomp"));
  profile->name = path;
  return profile;
}

Result<CompiledSeccomp> CompiledSeccomp::compile(const SeccompProfile& profile) {
  CompiledSeccomp compiled;
  if (profile.unconfined()) return compiled;

  const uint32_t defaultAction = libseccompAction(profile.defaultAction, profile.defaultErrno);
  SeccompContext ctx(seccomp_init(defaultAction));
  if (!ctx) return fail(internalError("seccomp_init({}): failed", actionName(profile.defaultAction)));
  // The child sets no_new_privs itself, right before loading (STYLE.md's order); keep libseccomp out of it.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc < 0)
    return fail(systemError(-rc, "seccomp_attr_set(SCMP_FLTATR_CTL_NNP, 0)"));

  // As Docker's archMap does, 32-bit x86 and x32 programs get the same rules instead of being killed as a
  // foreign architecture.
  if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
    for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
      if (int rc = seccomp_arch_add(ctx.get(), arch); rc < 0 && rc != -EEXIST)
        return fail(
            systemError(-rc, fmt::format("seccomp_arch_add({})", arch == SCMP_ARCH_X86 ? "x86" : "x32")));
    }
  }

  // Only built-in profiles may name syscalls this libseccomp does not know (Docker's list spans kernels).
  const bool builtin = profile.name == "default";
  for (const auto& rule : profile.rules) {
    const uint32_t action = libseccompAction(rule.action, rule.errnoValue);
    if (action == defaultAction) continue;  // libseccomp refuses rules that repeat the default
    std::vector<scmp_arg_cmp> cmps;
    for (const auto& arg : rule.args) {
      cmps.push_back(scmp_arg_cmp{
          .arg = arg.index, .op = libseccompCompare(arg.op), .datum_a = arg.value, .datum_b = arg.valueTwo});
      // MaskedEqual keeps its mask in datum_a and the expected value in datum_b.
    }
    for (const auto& name : rule.syscalls) {
      int nr = seccomp_syscall_resolve_name(name.c_str());
      if (nr == __NR_SCMP_ERROR) {
        if (builtin) continue;
        return fail(invalidField("syscalls", "unknown syscall \"{}\"", name));
      }
      int rc = seccomp_rule_add_array(ctx.get(), action, nr, static_cast<unsigned>(cmps.size()),
                                      cmps.empty() ? nullptr : cmps.data());
      if (rc < 0) {
        std::string what = fmt::format(
            "seccomp_rule_add(\"{}\", {}{}, {} argument condition(s))", name, actionName(rule.action),
            rule.action == SeccompAction::Errno ? fmt::format("({})", rule.errnoValue) : "", cmps.size());
        return fail(systemError(-rc, what));
      }
    }
  }

  UniqueFd memfd(::memfd_create("corral-seccomp", MFD_CLOEXEC));
  if (!memfd) return fail(systemError(errno, "memfd_create(\"corral-seccomp\")"));
  if (int rc = seccomp_export_bpf(ctx.get(), memfd.get()); rc < 0)
    return fail(systemError(-rc, "seccomp_export_bpf"));
  off_t size = ::lseek(memfd.get(), 0, SEEK_END);
  if (size < 0) return fail(systemError(errno, "lseek(memfd, 0, SEEK_END)"));
  if (size == 0 || size % sizeof(sock_filter) != 0)
    return fail(
        internalError("seccomp_export_bpf wrote {} bytes, not a whole number of BPF instructions", size));
  if (static_cast<size_t>(size) / sizeof(sock_filter) > BPF_MAXINSNS)
    return fail(invalidField("seccomp",
                             "the profile compiles to {} BPF instructions; the kernel takes at most {}",
                             static_cast<size_t>(size) / sizeof(sock_filter), BPF_MAXINSNS));
  compiled.program_.resize(static_cast<size_t>(size));
  size_t done = 0;
  while (done < compiled.program_.size()) {
    ssize_t n = ::pread(memfd.get(), compiled.program_.data() + done, compiled.program_.size() - done,
                        static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(systemError(n < 0 ? errno : EIO, "pread(seccomp memfd)"));
    done += static_cast<size_t>(n);
  }
  return compiled;
}

int CompiledSeccomp::loadInChild() const {
  if (program_.empty()) return 0;  // unconfined
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(program_.size() / sizeof(sock_filter));
  // The kernel copies the program; it only reads through this pointer.
  prog.filter = reinterpret_cast<sock_filter*>(const_cast<unsigned char*>(program_.data()));
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0) return 0;
  int err = errno;
  if (err != ENOSYS) return err;
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) == 0) return 0;
  return errno;
}

}  // namespace corral::container
