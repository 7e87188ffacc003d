// Seccomp: Docker's default policy as an allow list, OCI/Docker JSON profiles, compiling a profile to BPF
// with libseccomp (plus an ENOSYS stub for syscalls newer than the profile) in the parent and installing
// the program in the child without allocating.
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
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>

#include "core/unique_fd.h"

namespace corral::container {
namespace {

using nlohmann::json;

constexpr int kEperm = EPERM;

// Docker's default.json (moby profiles/seccomp/default.json) as seen on x86-64: what every container
// may call. Since moby 25 it leaves out io_uring_setup/enter/register (io_uring has been a steady source
// of kernel bugs reachable from containers); the newest entries (cachestat .. futex_requeue) are moby's
// later additions. Names this libseccomp does not know are skipped when compiling.
const std::vector<const char*>& dockerAllowedSyscalls() {
  static const std::vector<const char*> names = {
      "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget", "capset",
      "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres",
      "clock_getres_time64", "clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64",
      "close", "close_range", "connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create",
      "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
      "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group", "faccessat",
      "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat",
      "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl", "fcntl64", "fdatasync", "fgetxattr",
      "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs",
      "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex", "futex_requeue", "futex_time64",
      "futex_wait", "futex_waitv", "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64",
      "getegid", "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
      "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom",
      "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage",
      "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid",
      "getuid32", "getxattr", "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch",
      "io_cancel", "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
      "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
      "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr", "link",
      "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat",
      "lstat64", "madvise", "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore",
      "mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
      "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
      "mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync",
      "munlock", "munlockall", "munmap", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2",
      "pause", "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect",
      "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2", "prlimit64",
      "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev", "pwritev2", "read",
      "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg", "recvmmsg_time64",
      "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat", "renameat2", "restart_syscall",
      "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn",
      "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo", "sched_getaffinity",
      "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
      "sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
      "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
      "semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
      "sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
      "setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32",
      "setresgid", "setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit",
      "set_robust_list", "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32",
      "setxattr", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4",
      "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs",
      "statfs64", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee",
      "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
      "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create", "timerfd_gettime",
      "timerfd_gettime64", "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
      "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "utime", "utimensat", "utimensat_time64",
      "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write", "writev",
      // x86 only (moby's "arches" includes): amd64/x32 and amd64/x32/x86.
      "arch_prctl", "modify_ldt"};
  return names;
}

// Syscalls the profile knows and refuses whatever the capabilities: named so that they count as part of
// the profile's table (EPERM, not ENOSYS; see SeccompProfile::knownSyscalls).
const std::vector<const char*>& dockerRefusedSyscalls() {
  static const std::vector<const char*> names = {"io_uring_setup",
                                                 "io_uring_enter",
                                                 "io_uring_register",
                                                 "add_key",
                                                 "keyctl",
                                                 "request_key",
                                                 "create_module",
                                                 "get_kernel_syms",
                                                 "nfsservctl",
                                                 "query_module",
                                                 "_sysctl",
                                                 "sysfs",
                                                 "uselib",
                                                 "userfaultfd",
                                                 "ustat",
                                                 "vm86",
                                                 "vm86old",
                                                 "kexec_load",
                                                 "kexec_file_load",
                                                 "move_pages",
                                                 "migrate_pages",
                                                 "swapon",
                                                 "swapoff"};
  return names;
}

// What a capability adds to the allow list (moby's "includes": {"caps": [...]}).
struct CapabilityGroup {
  const char* capability;
  std::vector<const char*> syscalls;
};

const std::vector<CapabilityGroup>& dockerCapabilityGroups() {
  static const std::vector<CapabilityGroup> groups = {
      {"CAP_DAC_READ_SEARCH", {"open_by_handle_at"}},
      // name_to_handle_at (moby: everyone) and pivot_root (moby: no one) stay where corral always had them.
      {"CAP_SYS_ADMIN",
       {"bpf",
        "clone",
        "clone3",
        "fanotify_init",
        "fsconfig",
        "fsmount",
        "fsopen",
        "fspick",
        "lookup_dcookie",
        "mount",
        "mount_setattr",
        "move_mount",
        "name_to_handle_at",
        "open_tree",
        "perf_event_open",
        "pivot_root",
        "quotactl",
        "quotactl_fd",
        "setdomainname",
        "sethostname",
        "setns",
        "syslog",
        "umount",
        "umount2",
        "unshare"}},
      {"CAP_SYS_BOOT", {"reboot"}},
      {"CAP_SYS_CHROOT", {"chroot"}},
      {"CAP_SYS_MODULE", {"delete_module", "init_module", "finit_module"}},
      {"CAP_SYS_PACCT", {"acct"}},
      {"CAP_SYS_PTRACE",
       {"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"}},
      {"CAP_SYS_RAWIO", {"iopl", "ioperm"}},
      {"CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_settime64"}},
      {"CAP_SYS_TTY_CONFIG", {"vhangup"}},
      {"CAP_SYS_NICE", {"get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"}},
      {"CAP_SYSLOG", {"syslog"}},
      {"CAP_BPF", {"bpf"}},
      {"CAP_PERFMON", {"perf_event_open"}},
  };
  return groups;
}

// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET: without CAP_SYS_ADMIN clone is
// allowed only when (flags & this) == 0.
constexpr uint64_t kNamespaceCloneFlags =
    CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET;
static_assert(kNamespaceCloneFlags == 0x7E020000);
constexpr uint64_t kAfVsock = 40;
// personality(2) values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and the query
// 0xffffffff.
constexpr uint64_t kAllowedPersonalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

std::string normalizeCapability(std::string_view name) {
  std::string upper;
  for (char c : name) upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  if (!upper.starts_with("CAP_")) upper = "CAP_" + upper;
  return upper;
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

// The profile may be any host file: errors name where in the structure it went wrong, never a key or
// value read from it (a secret in a mistaken file must not come back in an API error). An unknown key is
// reported on its parent.
Error unknownKey(const std::string& parent, std::string_view expected) {
  std::string where = parent.empty() ? std::string("the profile") : parent;
  return invalidField(parent, "{}: has a key that is not one of {}", where, expected);
}

Result<SeccompAction> parseAction(const json& value, const std::string& path) {
  if (!value.is_string())
    return fail(invalidField(path, "{}: must be a string like \"SCMP_ACT_ERRNO\", got {}", path,
                             describeJsonType(value)));
  const std::string& name = value.get_ref<const std::string&>();
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
                             "{}: {} needs a tracer or a notify listener, which corral does not provide",
                             path, name == "SCMP_ACT_TRACE" ? "SCMP_ACT_TRACE" : "SCMP_ACT_NOTIFY"));
  return fail(
      invalidField(path,
                   "{}: not an action corral knows (expected SCMP_ACT_ALLOW, SCMP_ACT_ERRNO, SCMP_ACT_KILL, "
                   "SCMP_ACT_KILL_PROCESS, SCMP_ACT_KILL_THREAD, SCMP_ACT_TRAP or SCMP_ACT_LOG)",
                   path));
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
      return fail(invalidField(itemPath, "{}: not an architecture libseccomp knows (e.g. SCMP_ARCH_X86_64)",
                               itemPath));
    if (arch == seccomp_arch_native()) native = true;
  }
  return native;
}

Result<SeccompCompare> parseCompare(const json& value, const std::string& path) {
  if (!value.is_string()) return fail(invalidField(path, "{}: must be a string like \"SCMP_CMP_EQ\"", path));
  const std::string& name = value.get_ref<const std::string&>();
  if (name == "SCMP_CMP_NE") return SeccompCompare::NotEqual;
  if (name == "SCMP_CMP_LT") return SeccompCompare::Less;
  if (name == "SCMP_CMP_LE") return SeccompCompare::LessOrEqual;
  if (name == "SCMP_CMP_EQ") return SeccompCompare::Equal;
  if (name == "SCMP_CMP_GE") return SeccompCompare::GreaterOrEqual;
  if (name == "SCMP_CMP_GT") return SeccompCompare::Greater;
  if (name == "SCMP_CMP_MASKED_EQ") return SeccompCompare::MaskedEqual;
  return fail(invalidField(path,
                           "{}: not an operator corral knows (expected SCMP_CMP_NE, _LT, _LE, _EQ, _GE, _GT "
                           "or _MASKED_EQ)",
                           path));
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
      return fail(unknownKey(path, "index, value, valueTwo, op"));
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
      return fail(unknownKey(path, includes ? "arches, caps, minKernel" : "arches, caps"));
    }
  }
  return holds;
}

Result<std::optional<SeccompRule>> parseSyscallEntry(const json& entry, const std::string& path) {
  if (!entry.is_object()) return fail(invalidField(path, "{}: must be an object", path));
  SeccompRule rule;
  bool haveAction = false, haveNames = false, applies = true;
  std::optional<int> errnoRet;
  std::optional<std::string> unknownNamePath;  // the first name this libseccomp does not know
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
        if (seccomp_syscall_resolve_name(name.c_str()) == __NR_SCMP_ERROR) {
          if (!unknownNamePath) unknownNamePath = namePath;
          continue;
        }
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
      return fail(unknownKey(path, "names, action, errnoRet, args, includes, excludes, comment"));
    }
  }
  if (!haveNames) return fail(invalidField(path + ".names", "{}.names: is required", path));
  if (!haveAction) return fail(invalidField(path + ".action", "{}.action: is required", path));
  // Allowing a syscall this host cannot name allows nothing; any other action would silently not apply.
  if (unknownNamePath && rule.action != SeccompAction::Allow)
    return fail(
        invalidField(*unknownNamePath, "{}: not a syscall this host's libseccomp knows", *unknownNamePath));
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
      return fail(unknownKey("",
                             "defaultAction, defaultErrnoRet, architectures, archMap, syscalls, flags, "
                             "comment"));
    }
  }
  if (!haveDefault) return fail(invalidField("defaultAction", "defaultAction: is required"));
  if (defaultErrno && profile.defaultAction != SeccompAction::Errno)
    return fail(invalidField("defaultErrnoRet", "defaultErrnoRet: only applies to SCMP_ACT_ERRNO"));
  profile.defaultErrno = defaultErrno.value_or(kEperm);
  return profile;
}

// ---- ENOSYS for syscalls newer than the profile ----

// The highest number any of `names` has on `arch`, or -1 (pseudo-syscalls resolve negative: skipped).
int highestSyscallNumber(const SeccompProfile& profile, uint32_t arch) {
  int highest = -1;
  auto consider = [&](const std::string& name) {
    highest = std::max(highest, seccomp_syscall_resolve_name_arch(arch, name.c_str()));
  };
  for (const auto& rule : profile.rules)
    for (const auto& name : rule.syscalls) consider(name);
  for (const auto& name : profile.knownSyscalls) consider(name);
  return highest;
}

// Classic BPF with forward jumps to numbered labels, resolved when the program is finished.
class StubProgram {
 public:
  void load(uint32_t offset) { code_.push_back(BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offset)); }
  // if (A op k) goto onTrue; else goto onFalse
  void jumpIf(uint16_t op, uint32_t k, int onTrue, int onFalse) {
    jumps_.push_back({code_.size(), onTrue, onFalse});
    code_.push_back(BPF_JUMP(BPF_JMP | op | BPF_K, k, 0, 0));
  }
  void goTo(int target) {
    jumps_.push_back({code_.size(), target, -1});
    code_.push_back(BPF_JUMP(BPF_JMP | BPF_JA, 0, 0, 0));
  }
  void ret(uint32_t value) { code_.push_back(BPF_STMT(BPF_RET | BPF_K, value)); }
  int newLabel() { return nextLabel_++; }
  void label(int id) { labels_[id] = code_.size(); }
  // Conditional jumps reach at most 255 instructions ahead; the stub is a few dozen long.
  std::vector<sock_filter> finish() {
    for (const auto& j : jumps_) {
      auto offset = [&](int target) { return labels_.at(target) - j.at - 1; };
      if (j.onFalse < 0) {
        code_[j.at].k = static_cast<uint32_t>(offset(j.onTrue));
      } else {
        code_[j.at].jt = static_cast<uint8_t>(offset(j.onTrue));
        code_[j.at].jf = static_cast<uint8_t>(offset(j.onFalse));
      }
    }
    return code_;
  }

 private:
  struct Jump {
    size_t at;
    int onTrue, onFalse;  // onFalse -1: an unconditional jump
  };
  std::vector<sock_filter> code_;
  std::vector<Jump> jumps_;
  std::map<int, size_t> labels_;
  int nextLabel_ = 0;
};

// Put in front of libseccomp's program: per architecture, a syscall number above the profile's highest
// returns ENOSYS; everything else falls through to libseccomp's program, which loads what it needs itself
// (and kills foreign architectures). x32 shares AUDIT_ARCH_X86_64 and is told apart by
// __X32_SYSCALL_BIT, as libseccomp does.
std::vector<sock_filter> enosysStub(const SeccompProfile& profile, const std::vector<uint32_t>& arches) {
  constexpr uint32_t kX32Bit = 0x40000000;
  constexpr uint32_t kNr = offsetof(seccomp_data, nr), kArch = offsetof(seccomp_data, arch);
  const bool withX32 = std::find(arches.begin(), arches.end(), SCMP_ARCH_X32) != arches.end();
  StubProgram stub;
  const int toFilter = stub.newLabel(), toEnosys = stub.newLabel();
  stub.load(kArch);
  for (uint32_t arch : arches) {
    if (arch == SCMP_ARCH_X32) continue;  // reported as x86_64: handled there
    const int highest = highestSyscallNumber(profile, arch);
    if (highest < 0) continue;
    const int thisArch = stub.newLabel(), otherArch = stub.newLabel();
    stub.jumpIf(BPF_JEQ, arch, thisArch, otherArch);
    stub.label(thisArch);
    stub.load(kNr);
    if (arch == SCMP_ARCH_X86_64 && withX32) {
      const int native = stub.newLabel(), x32 = stub.newLabel();
      stub.jumpIf(BPF_JSET, kX32Bit, x32, native);
      stub.label(native);
      stub.jumpIf(BPF_JGT, static_cast<uint32_t>(highest), toEnosys, toFilter);
      stub.label(x32);
      const int highestX32 =
          std::max(highestSyscallNumber(profile, SCMP_ARCH_X32), static_cast<int>(kX32Bit));
      stub.jumpIf(BPF_JGT, static_cast<uint32_t>(highestX32), toEnosys, toFilter);
    } else {
      stub.jumpIf(BPF_JGT, static_cast<uint32_t>(highest), toEnosys, toFilter);
    }
    stub.label(otherArch);  // the accumulator still holds the architecture
  }
  stub.goTo(toFilter);
  stub.label(toEnosys);
  stub.ret(SECCOMP_RET_ERRNO | ENOSYS);
  stub.label(toFilter);
  return stub.finish();
}

// Generating BPF for an allow list over three architectures takes libseccomp ~100-250 ms here (a loaded
// 2-core host; the old deny list took ~10 ms), most of it in seccomp_export_bpf: too much for every
// container start. A profile compiles to the same program every time (the kernel version it depends on
// does not change under a running daemon), so programs are kept by the profile's content.
constexpr size_t kProgramCacheSize = 32;

std::mutex& programCacheMutex() {
  static std::mutex mutex;
  return mutex;
}
std::map<std::string, std::vector<unsigned char>>& programCache() {
  static auto* cache = new std::map<std::string, std::vector<unsigned char>>();  // never destroyed: exit-safe
  return *cache;
}

// Everything compile() reads from the profile, in one string.
std::string cacheKey(const SeccompProfile& profile) {
  std::string key = fmt::format("{} {} {}|", static_cast<int>(profile.defaultAction), profile.defaultErrno,
                                profile.mode == schema::SeccompMode::dockerDefault);
  for (const auto& rule : profile.rules) {
    key += fmt::format("{} {}:", static_cast<int>(rule.action), rule.errnoValue);
    for (const auto& arg : rule.args)
      key += fmt::format("{},{},{},{};", arg.index, static_cast<int>(arg.op), arg.value, arg.valueTwo);
    for (const auto& name : rule.syscalls) key += name + ",";
    key += "|";
  }
  for (const auto& name : profile.knownSyscalls) key += name + ",";
  return key;
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
  profile.mode = schema::SeccompMode::dockerDefault;
  profile.name = "default";
  profile.defaultAction = SeccompAction::Errno;
  profile.defaultErrno = EPERM;

  SeccompRule allowed{.syscalls = {}, .action = SeccompAction::Allow, .errnoValue = 0, .args = {}};
  for (const char* name : dockerAllowedSyscalls()) allowed.syscalls.emplace_back(name);
  // Docker lets every container ptrace (its own processes) since 4.8 fixed the seccomp bypass via ptrace.
  if (kernelAtLeast(4, 8)) {
    for (const char* name : {"ptrace", "process_vm_readv", "process_vm_writev"})
      allowed.syscalls.emplace_back(name);
  }
  for (const auto& group : dockerCapabilityGroups()) {
    if (!caps.contains(group.capability)) continue;
    for (const char* name : group.syscalls) {
      if (std::find(allowed.syscalls.begin(), allowed.syscalls.end(), name) == allowed.syscalls.end())
        allowed.syscalls.emplace_back(name);
    }
  }
  profile.rules.push_back(std::move(allowed));

  auto allowWhen = [&](const char* name, SeccompArg arg) {
    profile.rules.push_back(
        {.syscalls = {name}, .action = SeccompAction::Allow, .errnoValue = 0, .args = {arg}});
  };
  // Every socket family but AF_VSOCK (the host's vsock services are not the container's business).
  allowWhen("socket", {.index = 0, .value = kAfVsock, .valueTwo = 0, .op = SeccompCompare::NotEqual});
  for (uint64_t persona : kAllowedPersonalities)
    allowWhen("personality", {.index = 0, .value = persona, .valueTwo = 0, .op = SeccompCompare::Equal});
  if (!caps.contains("CAP_SYS_ADMIN")) {
    allowWhen("clone",
              {.index = 0, .value = kNamespaceCloneFlags, .valueTwo = 0, .op = SeccompCompare::MaskedEqual});
    // clone3 passes its flags in memory BPF cannot read: ENOSYS makes libcs fall back to clone(2).
    profile.rules.push_back(
        {.syscalls = {"clone3"}, .action = SeccompAction::Errno, .errnoValue = ENOSYS, .args = {}});
  }

  // The whole table the profile was written against, allowed or not: newer syscalls get ENOSYS.
  for (const char* name : dockerAllowedSyscalls()) profile.knownSyscalls.emplace_back(name);
  for (const char* name : dockerRefusedSyscalls()) profile.knownSyscalls.emplace_back(name);
  for (const auto& group : dockerCapabilityGroups())
    for (const char* name : group.syscalls) profile.knownSyscalls.emplace_back(name);
  for (const char* name :
       {"ptrace", "process_vm_readv", "process_vm_writev", "socket", "personality", "clone", "clone3"})
    profile.knownSyscalls.emplace_back(name);
  return profile;
}

SeccompProfile unconfinedProfile() {
  SeccompProfile profile;
  profile.mode = schema::SeccompMode::unconfined;
  profile.name = "unconfined";
  profile.defaultAction = SeccompAction::Allow;
  return profile;
}

Result<SeccompProfile> parseSeccompProfile(std::string_view text, std::string_view origin) {
  json root;
  try {
    root = json::parse(text);
  } catch (const json::parse_error& e) {
    // Not e.what(): nlohmann quotes the bytes it last read.
    return fail(
        invalidField("", "{} is not a seccomp profile: not JSON (syntax error at byte {})", origin, e.byte));
  }
  auto profile = parseProfileObject(root, origin);
  if (!profile) return fail(profile.error().wrap(fmt::format("{} is not a seccomp profile", origin)));
  return profile;
}

Result<SeccompProfile> resolveSeccompProfile(const schema::SeccompChoice& choice,
                                             const std::vector<std::string>& capabilities) {
  switch (choice.mode) {
    case schema::SeccompMode::dockerDefault:
      return dockerDefaultProfile(capabilities);
    case schema::SeccompMode::unconfined:
      return unconfinedProfile();
    case schema::SeccompMode::profileFile:
      break;
  }
  const std::string& path = choice.profilePath;
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
  const std::string key = cacheKey(profile);
  {
    std::lock_guard lock(programCacheMutex());
    auto cached = programCache().find(key);
    if (cached != programCache().end()) {
      compiled.program_ = cached->second;
      return compiled;
    }
  }

  const uint32_t defaultAction = libseccompAction(profile.defaultAction, profile.defaultErrno);
  SeccompContext ctx(seccomp_init(defaultAction));
  if (!ctx) return fail(internalError("seccomp_init({}): failed", actionName(profile.defaultAction)));
  // The child sets no_new_privs itself, right before loading (STYLE.md's order); keep libseccomp out of it.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc < 0)
    return fail(systemError(-rc, "seccomp_attr_set(SCMP_FLTATR_CTL_NNP, 0)"));

  // A binary search over syscall numbers instead of libseccomp's default linear chain: an allow list of
  // ~350 syscalls would otherwise cost a hundred comparisons on a late one (libseccomp >= 2.5).
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2); rc < 0)
    return fail(systemError(-rc, "seccomp_attr_set(SCMP_FLTATR_CTL_OPTIMIZE, 2)"));

  // As Docker's archMap does, 32-bit x86 and x32 programs get the same rules instead of being killed as a
  // foreign architecture.
  std::vector<uint32_t> arches = {seccomp_arch_native()};
  if (seccomp_arch_native() == SCMP_ARCH_X86_64) {
    for (uint32_t arch : {SCMP_ARCH_X86, SCMP_ARCH_X32}) {
      if (int rc = seccomp_arch_add(ctx.get(), arch); rc < 0 && rc != -EEXIST)
        return fail(
            systemError(-rc, fmt::format("seccomp_arch_add({})", arch == SCMP_ARCH_X86 ? "x86" : "x32")));
      arches.push_back(arch);
    }
  }

  // Built-in profiles may name syscalls this libseccomp does not know (Docker's list spans kernels); so
  // may allow rules (nothing to allow: the default action applies, or ENOSYS above the table).
  const bool builtin = profile.mode == schema::SeccompMode::dockerDefault;
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
        if (builtin || rule.action == SeccompAction::Allow) continue;
        return fail(
            invalidField("syscalls", "syscalls: \"{}\" is not a syscall this host's libseccomp knows", name));
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
  std::vector<sock_filter> stub;
  if (profile.defaultAction == SeccompAction::Errno) stub = enosysStub(profile, arches);
  const size_t stubBytes = stub.size() * sizeof(sock_filter);
  const size_t instructions = stub.size() + static_cast<size_t>(size) / sizeof(sock_filter);
  if (instructions > BPF_MAXINSNS)
    return fail(invalidField("seccomp",
                             "the profile compiles to {} BPF instructions; the kernel takes at most {}",
                             instructions, BPF_MAXINSNS));
  compiled.program_.resize(stubBytes + static_cast<size_t>(size));
  // Only with a stub: an empty stub's data() may be null, and memcpy from null is undefined even for 0 bytes.
  if (stubBytes > 0) std::memcpy(compiled.program_.data(), stub.data(), stubBytes);
  size_t done = 0;
  while (stubBytes + done < compiled.program_.size()) {
    ssize_t n = ::pread(memfd.get(), compiled.program_.data() + stubBytes + done,
                        compiled.program_.size() - stubBytes - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(systemError(n < 0 ? errno : EIO, "pread(seccomp memfd)"));
    done += static_cast<size_t>(n);
  }
  std::lock_guard lock(programCacheMutex());
  if (programCache().size() >= kProgramCacheSize) programCache().clear();
  programCache().emplace(key, compiled.program_);
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
