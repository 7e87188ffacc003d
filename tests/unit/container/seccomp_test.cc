// Seccomp profiles: Docker's default as an allow list, JSON profile parsing (every error names its JSON
// path), compiling to BPF, and a forked child that loads the default profile and sees what a container would.
#include "container/seccomp.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace corral::container {
namespace {

// Whether an unconditional allow rule of the profile names `name`.
bool allowed(const SeccompProfile& profile, const std::string& name) {
  return std::any_of(profile.rules.begin(), profile.rules.end(), [&](const SeccompRule& rule) {
    return rule.action == SeccompAction::Allow && rule.args.empty() &&
           std::find(rule.syscalls.begin(), rule.syscalls.end(), name) != rule.syscalls.end();
  });
}

// The rules naming `name`, whatever their action and conditions.
std::vector<SeccompRule> rulesFor(const SeccompProfile& profile, const std::string& name) {
  std::vector<SeccompRule> found;
  for (const auto& rule : profile.rules)
    if (std::find(rule.syscalls.begin(), rule.syscalls.end(), name) != rule.syscalls.end())
      found.push_back(rule);
  return found;
}

bool known(const SeccompProfile& profile, const std::string& name) {
  return std::find(profile.knownSyscalls.begin(), profile.knownSyscalls.end(), name) !=
         profile.knownSyscalls.end();
}

TEST(SeccompDefaultProfile, AllowListWithErrnoDefault) {
  SeccompProfile profile = dockerDefaultProfile({"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"});
  EXPECT_EQ(profile.name, "default");
  EXPECT_FALSE(profile.unconfined());
  EXPECT_EQ(profile.defaultAction, SeccompAction::Errno);
  EXPECT_EQ(profile.defaultErrno, EPERM);
  // What a static glibc program (the probe), busybox sh/ls/ps/ping/wget and a dynamic loader call.
  for (const char* name : {"read",
                           "write",
                           "openat",
                           "close",
                           "mmap",
                           "mprotect",
                           "munmap",
                           "brk",
                           "rt_sigaction",
                           "rt_sigprocmask",
                           "rt_sigreturn",
                           "execve",
                           "exit",
                           "exit_group",
                           "fork",
                           "vfork",
                           "wait4",
                           "getpid",
                           "getppid",
                           "gettid",
                           "arch_prctl",
                           "set_tid_address",
                           "set_robust_list",
                           "rseq",
                           "prlimit64",
                           "futex",
                           "getrandom",
                           "newfstatat",
                           "fstat",
                           "statx",
                           "getdents64",
                           "ioctl",
                           "fcntl",
                           "dup2",
                           "dup3",
                           "pipe2",
                           "poll",
                           "ppoll",
                           "nanosleep",
                           "clock_nanosleep",
                           "clock_gettime",
                           "connect",
                           "sendto",
                           "recvfrom",
                           "recvmsg",
                           "sendmsg",
                           "setsockopt",
                           "getsockopt",
                           "bind",
                           "listen",
                           "accept4",
                           "uname",
                           "getuid",
                           "geteuid",
                           "setuid",
                           "setgid",
                           "setgroups",
                           "capget",
                           "capset",
                           "prctl",
                           "kill",
                           "chdir",
                           "getcwd",
                           "readlink",
                           "unlinkat",
                           "mkdirat",
                           "renameat2",
                           "chroot",
                           "sched_getaffinity",
                           "sysinfo",
                           "umask",
                           "statfs",
                           "lseek",
                           "pread64",
                           "writev",
                           "sigaltstack",
                           "madvise",
                           "mremap",
                           "faccessat2",
                           "close_range",
                           "pidfd_open",
                           "epoll_pwait",
                           "timerfd_create",
                           "signalfd4",
                           "eventfd2",
                           "socketpair",
                           "ptrace"}) {
    EXPECT_TRUE(allowed(profile, name)) << name;
  }
  // Not allowed: io_uring (moby 25), and what Docker leaves to capabilities or refuses.
  for (const char* name : {"io_uring_setup",
                           "io_uring_enter",
                           "io_uring_register",
                           "keyctl",
                           "add_key",
                           "request_key",
                           "mount",
                           "umount2",
                           "unshare",
                           "setns",
                           "pivot_root",
                           "kexec_load",
                           "init_module",
                           "finit_module",
                           "delete_module",
                           "bpf",
                           "perf_event_open",
                           "reboot",
                           "swapon",
                           "settimeofday",
                           "clock_settime",
                           "iopl",
                           "ioperm",
                           "syslog",
                           "open_by_handle_at",
                           "userfaultfd",
                           "sethostname",
                           "kcmp",
                           "mbind"}) {
    EXPECT_TRUE(rulesFor(profile, name).empty()) << name;
    EXPECT_TRUE(known(profile, name)) << name << " must be in the table: EPERM, not ENOSYS";
  }
  // Conditional: socket but AF_VSOCK, personality's five values, clone without namespace flags.
  auto socket = rulesFor(profile, "socket");
  ASSERT_EQ(socket.size(), 1u);
  EXPECT_EQ(socket[0].action, SeccompAction::Allow);
  ASSERT_EQ(socket[0].args.size(), 1u);
  EXPECT_EQ(socket[0].args[0].op, SeccompCompare::NotEqual);
  EXPECT_EQ(socket[0].args[0].value, 40u);
  EXPECT_EQ(rulesFor(profile, "personality").size(), 5u);
  auto clone = rulesFor(profile, "clone");
  ASSERT_EQ(clone.size(), 1u);
  EXPECT_EQ(clone[0].action, SeccompAction::Allow);
  ASSERT_EQ(clone[0].args.size(), 1u);
  EXPECT_EQ(clone[0].args[0].op, SeccompCompare::MaskedEqual);
  EXPECT_EQ(clone[0].args[0].value, 0x7E020000u);
  EXPECT_EQ(clone[0].args[0].valueTwo, 0u);
  auto clone3 = rulesFor(profile, "clone3");
  ASSERT_EQ(clone3.size(), 1u);
  EXPECT_EQ(clone3[0].action, SeccompAction::Errno);
  EXPECT_EQ(clone3[0].errnoValue, ENOSYS);
  // Without CAP_SYS_CHROOT, no chroot.
  EXPECT_FALSE(allowed(dockerDefaultProfile({}), "chroot"));
}

TEST(SeccompDefaultProfile, CapabilitiesAddWhatDockerAdds) {
  SeccompProfile admin = dockerDefaultProfile({"CAP_SYS_ADMIN"});
  for (const char* name : {"mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "syslog",
                           "clone", "clone3", "sethostname", "pivot_root"})
    EXPECT_TRUE(allowed(admin, name)) << name;
  EXPECT_EQ(rulesFor(admin, "clone").size(), 1u);  // unconditional: no masked rule besides
  EXPECT_FALSE(allowed(admin, "keyctl"));
  EXPECT_FALSE(allowed(admin, "reboot"));
  EXPECT_FALSE(allowed(admin, "io_uring_setup"));

  // Names are accepted in any case, with or without the CAP_ prefix.
  SeccompProfile others = dockerDefaultProfile({"sys_boot", "CAP_SYS_MODULE", "cap_sys_time", "SYS_RAWIO",
                                                "CAP_SYSLOG", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE", "CAP_BPF",
                                                "CAP_PERFMON", "CAP_SYS_NICE", "CAP_DAC_READ_SEARCH"});
  for (const char* name : {"reboot", "init_module", "finit_module", "delete_module", "settimeofday",
                           "clock_settime", "iopl", "ioperm", "syslog", "chroot", "kcmp", "pidfd_getfd",
                           "bpf", "perf_event_open", "mbind", "open_by_handle_at"})
    EXPECT_TRUE(allowed(others, name)) << name;
  EXPECT_FALSE(allowed(others, "mount"));
  EXPECT_EQ(rulesFor(others, "clone").size(), 1u);
}

// The profile the API text `choice` names (the text must parse).
Result<SeccompProfile> resolveText(std::string_view choice) {
  auto parsed = schema::parseSeccompChoice(choice);
  if (!parsed) return fail(parsed.error());
  return resolveSeccompProfile(*parsed, {});
}

TEST(SeccompProfileResolve, ChoicesAndErrors) {
  auto def = resolveText("default");
  ASSERT_TRUE(def) << def.error().message();
  EXPECT_EQ(def->name, "default");
  EXPECT_EQ(def->mode, schema::SeccompMode::dockerDefault);
  EXPECT_FALSE(def->unconfined());
  auto unconfined = resolveText("unconfined");
  ASSERT_TRUE(unconfined);
  EXPECT_TRUE(unconfined->unconfined());

  auto relative = resolveText("profile.json");
  ASSERT_FALSE(relative);
  EXPECT_EQ(relative.error().field(), "seccomp");
  EXPECT_NE(relative.error().message().find("absolute path"), std::string::npos);

  auto missing = resolveText("/nonexistent/corral-profile.json");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(missing.error().field(), "seccomp");
  EXPECT_NE(missing.error().message().find("open(\"/nonexistent/corral-profile.json\")"), std::string::npos);

  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("corral-seccomp-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  {
    std::ofstream(dir / "good.json") << R"({"defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["keyctl"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]})";
    std::ofstream(dir / "bad.json") << R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["nope"],
        "action": "SCMP_ACT_ERRNO"}]})";
  }
  auto good = resolveText((dir / "good.json").string());
  ASSERT_TRUE(good) << good.error().message();
  EXPECT_EQ(good->name, (dir / "good.json").string());
  EXPECT_EQ(good->mode, schema::SeccompMode::profileFile);
  EXPECT_FALSE(good->unconfined());
  ASSERT_EQ(good->rules.size(), 1u);
  EXPECT_EQ(good->rules[0].errnoValue, 38);
  auto bad = resolveText((dir / "bad.json").string());
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field(), "seccomp.syscalls[0].names[0]");
  EXPECT_NE(bad.error().message().find("syscalls[0].names[0]: not a syscall this host's libseccomp knows"),
            std::string::npos)
      << bad.error().message();
  std::filesystem::remove_all(dir);
}

// A mistaken path must not turn the loader into a file reader: the error says the file is not a profile
// and where its structure fails, and quotes nothing from it.
TEST(SeccompProfileResolve, ErrorsNeverEchoTheFile) {
  std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("corral-seccomp-secret-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  struct Case {
    const char* file;
    const char* text;
    const char* field;
    const char* reason;
  };
  const Case cases[] = {
      {"env", "DB_PASSWORD=hunter2-s3cr3t\nAWS_KEY=AKIAhunter2\n", "seccomp",
       "not JSON (syntax error at byte"},
      {"shadow.json", R"({"hunter2-s3cr3t": "AKIAhunter2"})", "seccomp", "has a key that is not one of"},
      {"action.json", R"({"defaultAction": "hunter2-s3cr3t"})", "seccomp.defaultAction",
       "not an action corral knows"},
      {"arch.json", R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["hunter2-s3cr3t"]})",
       "seccomp.architectures[0]", "not an architecture libseccomp knows"},
      {"name.json", R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["hunter2-s3cr3t"],
          "action": "SCMP_ACT_ERRNO"}]})",
       "seccomp.syscalls[0].names[0]", "not a syscall this host's libseccomp knows"},
      {"op.json", R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "hunter2-s3cr3t"}]}]})",
       "seccomp.syscalls[0].args[0].op", "not an operator corral knows"},
      {"nested.json", R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"],
          "action": "SCMP_ACT_ERRNO", "hunter2-s3cr3t": 1}]})",
       "seccomp.syscalls[0]", "has a key that is not one of"},
  };
  for (const Case& c : cases) {
    std::ofstream(dir / c.file) << c.text;
    auto profile = resolveText((dir / c.file).string());
    ASSERT_FALSE(profile) << c.file;
    const std::string& message = profile.error().message();
    EXPECT_EQ(profile.error().field(), c.field) << message;
    EXPECT_NE(message.find(fmt::format("\"{}\" is not a seccomp profile", (dir / c.file).string())),
              std::string::npos)
        << message;
    EXPECT_NE(message.find(c.reason), std::string::npos) << message;
    EXPECT_EQ(message.find("hunter2"), std::string::npos) << message;
    EXPECT_EQ(message.find("AKIA"), std::string::npos) << message;
  }
  std::filesystem::remove_all(dir);
}

TEST(SeccompProfileParse, DockerStyleProfile) {
  auto profile = parseSeccompProfile(R"({
    "comment": "a small profile",
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 1,
    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
    "syscalls": [
      {"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW", "comment": "basics"},
      {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
      {"names": ["vm86"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["x86"]}},
      {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
      {"names": ["getpid"], "action": "SCMP_ACT_KILL_PROCESS", "excludes": {"arches": ["s390x"]}},
      {"name": "gettid", "action": "SCMP_ACT_LOG"}
    ]})",
                                     "test");
  ASSERT_TRUE(profile) << profile.error().message();
  EXPECT_EQ(profile->defaultAction, SeccompAction::Errno);
  EXPECT_EQ(profile->name, "test");
  ASSERT_EQ(profile->rules.size(), 5u);  // the x86-only vm86 rule does not apply on x86_64
  EXPECT_EQ(profile->rules[0].syscalls, (std::vector<std::string>{"read", "write", "exit_group"}));
  ASSERT_EQ(profile->rules[1].args.size(), 1u);
  EXPECT_EQ(profile->rules[1].args[0].value, 8u);
  EXPECT_EQ(profile->rules[2].syscalls[0], "ptrace");
  EXPECT_EQ(profile->rules[3].action, SeccompAction::Kill);
  EXPECT_EQ(profile->rules[4].action, SeccompAction::Log);
  EXPECT_EQ(profile->rules[4].syscalls[0], "gettid");
  auto compiled = CompiledSeccomp::compile(*profile);
  ASSERT_TRUE(compiled) << compiled.error().message();
  EXPECT_FALSE(compiled->empty());
}

struct BadProfile {
  const char* json;
  const char* field;
  const char* message;
};

class SeccompProfileErrors : public ::testing::TestWithParam<BadProfile> {};

TEST_P(SeccompProfileErrors, NameTheJsonPath) {
  auto profile = parseSeccompProfile(GetParam().json, "p.json");
  ASSERT_FALSE(profile) << GetParam().json;
  EXPECT_EQ(profile.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(profile.error().field(), GetParam().field) << profile.error().message();
  EXPECT_NE(profile.error().message().find(GetParam().message), std::string::npos)
      << profile.error().message();
  EXPECT_TRUE(profile.error().message().starts_with("p.json is not a seccomp profile: "))
      << profile.error().message();
}

INSTANTIATE_TEST_SUITE_P(
    AllPaths, SeccompProfileErrors,
    ::testing::Values(
        BadProfile{"{", "", "not JSON (syntax error at byte"}, BadProfile{"[]", "", "must be a JSON object"},
        BadProfile{"{}", "defaultAction", "defaultAction: is required"},
        BadProfile{R"({"defaultAction": 3})", "defaultAction", "must be a string"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_MAYBE"})", "defaultAction",
                   "defaultAction: not an action corral knows"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_NOTIFY"})", "defaultAction", "notify listener"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000})", "defaultErrnoRet",
                   "out of range"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1})", "defaultErrnoRet",
                   "only applies to SCMP_ACT_ERRNO"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]})",
                   "architectures", "does not include"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]})",
                   "architectures[0]", "architectures[0]: not an architecture libseccomp knows"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{}]})", "archMap[0]", "architecture"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]})", "flags",
                   "not supported"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x"})", "listenerPath",
                   "not supported"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "colour": "blue"})", "",
                   "the profile: has a key that is not one of defaultAction"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}})", "syscalls", "must be an array"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [7]})", "syscalls[0]",
                   "must be an object"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"action": "SCMP_ACT_ERRNO"}]})",
                   "syscalls[0].names", "is required"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"]}]})",
                   "syscalls[0].action", "is required"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": "read", "action": "SCMP_ACT_LOG"}]})",
            "syscalls[0].names", "must be an array"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read", "not_a_syscall"],
                   "action": "SCMP_ACT_LOG"}]})",
                   "syscalls[0].names[1]",
                   "syscalls[0].names[1]: not a syscall this host's libseccomp knows"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_LOG",
                   "errnoRet": 1}]})",
            "syscalls[0].errnoRet", "only applies to SCMP_ACT_ERRNO"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "errnoRet": -1}]})",
            "syscalls[0].errnoRet", "out of range"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 9, "value": 1, "op": "SCMP_CMP_EQ"}]}]})",
            "syscalls[0].args[0].index", "arguments 0-5"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_ABOUT"}]}]})",
            "syscalls[0].args[0].op", "not an operator corral knows"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 1}]}]})",
            "syscalls[0].args[0].op", "is required"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "op": "SCMP_CMP_EQ", "valueThree": 1}]}]})",
            "syscalls[0].args[0]", "syscalls[0].args[0]: has a key that is not one of index"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                   "includes": {"caps": ["CAP_SYS_ADMIN"]}}]})",
            "syscalls[0].includes.caps", "capability-conditional rules are not supported"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                   "excludes": {"minKernel": "4.8"}}]})",
            "syscalls[0].excludes", "syscalls[0].excludes: has a key that is not one of arches, caps"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                   "includes": {"minKernel": "four"}}]})",
            "syscalls[0].includes.minKernel", "kernel version"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "priority": 1}]})",
            "syscalls[0]", "syscalls[0]: has a key that is not one of names"}));

TEST(CompiledSeccomp, DefaultCompilesUnconfinedIsEmpty) {
  auto compiled = CompiledSeccomp::compile(dockerDefaultProfile({}));
  ASSERT_TRUE(compiled) << compiled.error().message();
  EXPECT_FALSE(compiled->empty());
  auto unconfined = CompiledSeccomp::compile(unconfinedProfile());
  ASSERT_TRUE(unconfined);
  EXPECT_TRUE(unconfined->empty());
  EXPECT_EQ(unconfined->loadInChild(), 0);
}

// A default-allow profile has no ENOSYS stub in front of libseccomp's program. Found by the sanitized build
// (scripts/test-sanitized): the empty stub was copied with memcpy from a null pointer, which UBSan reports.
TEST(CompiledSeccomp, ADefaultAllowProfileIsLibseccompsProgramAlone) {
  SeccompProfile profile;
  profile.name = "/deny-read.json";
  profile.defaultAction = SeccompAction::Allow;
  SeccompRule rule;
  rule.syscalls = {"read"};
  profile.rules = {rule};
  auto compiled = CompiledSeccomp::compile(profile);
  ASSERT_TRUE(compiled) << compiled.error().message();
  EXPECT_FALSE(compiled->empty());
}

TEST(CompiledSeccomp, RejectedRulesNameTheSyscall) {
  SeccompProfile profile;
  profile.name = "/p.json";
  SeccompRule rule;
  rule.syscalls = {"read"};
  rule.args = {{.index = 7, .value = 1, .valueTwo = 0, .op = SeccompCompare::Equal}};
  profile.rules = {rule};
  auto compiled = CompiledSeccomp::compile(profile);
  ASSERT_FALSE(compiled);
  EXPECT_NE(compiled.error().message().find("seccomp_rule_add(\"read\", ERRNO(1), 1 argument condition(s))"),
            std::string::npos)
      << compiled.error().message();

  // A built profile naming a syscall libseccomp does not know is refused (only "default" may skip names).
  profile.rules[0] = SeccompRule{};
  profile.rules[0].syscalls = {"frobnicate"};
  compiled = CompiledSeccomp::compile(profile);
  ASSERT_FALSE(compiled);
  EXPECT_NE(compiled.error().message().find("\"frobnicate\" is not a syscall this host's libseccomp knows"),
            std::string::npos)
      << compiled.error().message();
  profile.rules[0].action = SeccompAction::Allow;  // allowing what the host cannot name allows nothing
  EXPECT_TRUE(CompiledSeccomp::compile(profile));
  profile.rules[0].action = SeccompAction::Errno;
  profile.mode = schema::SeccompMode::dockerDefault;
  EXPECT_TRUE(CompiledSeccomp::compile(profile));
}

// Each check in the child reports a distinct exit code so a failure says which one went wrong.
enum ChildCheck {
  kOk = 0,
  kNoNewPrivs = 10,
  kLoad,
  kGetpid,
  kKeyctl,
  kUnshare,
  kClone3,
  kCloneNewns,
  kFork,
  kVsock,
  kMount,
  kIoUring,
  kNewerThanTable,
  kBeyondAnyTable,
  kPersonality,
  kRead,
};

// x86-64 numbers, so the test does not depend on this libc's headers knowing them.
constexpr long kIoUringSetup = 425;
constexpr long kStatmount = 457;  // Linux 6.8, newer than Docker's table: ENOSYS, as on an older kernel

int runChecksUnderDefaultProfile(const CompiledSeccomp& compiled) {
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return kNoNewPrivs;
  if (compiled.loadInChild() != 0) return kLoad;
  if (syscall(SYS_getpid) != getpid() || getpid() <= 0) return kGetpid;
  errno = 0;
  if (syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0) != -1 || errno != EPERM) return kKeyctl;
  errno = 0;
  if (unshare(0) != -1 || errno != EPERM) return kUnshare;
  errno = 0;
  if (syscall(SYS_clone3, nullptr, 0) != -1 || errno != ENOSYS) return kClone3;
  errno = 0;
  if (syscall(SYS_clone, CLONE_NEWNS | SIGCHLD, nullptr, nullptr, nullptr, 0) != -1 || errno != EPERM)
    return kCloneNewns;
  errno = 0;
  if (mount("none", "/nonexistent-corral-seccomp-test", "tmpfs", 0, nullptr) != -1 || errno != EPERM)
    return kMount;
  errno = 0;
  if (socket(40 /* AF_VSOCK */, SOCK_STREAM, 0) != -1 || errno != EPERM) return kVsock;
  // In the table and not allowed: EPERM (io_uring_setup would give EFAULT for the NULL params if let
  // through).
  errno = 0;
  if (syscall(kIoUringSetup, 1, nullptr) != -1 || errno != EPERM) return kIoUring;
  // Above the table: ENOSYS whether the kernel has the syscall (statmount on >= 6.8: EFAULT if allowed)
  // or not.
  errno = 0;
  if (syscall(kStatmount, nullptr, nullptr, 0, 0) != -1 || errno != ENOSYS) return kNewerThanTable;
  errno = 0;
  if (syscall(1000) != -1 || errno != ENOSYS) return kBeyondAnyTable;
  errno = 0;
  if (syscall(SYS_personality, 0xffffffffUL) == -1) return kPersonality;  // the query
  if (syscall(SYS_personality, 0x0400000UL) != -1 || errno != EPERM)
    return kPersonality;  // READ_IMPLIES_EXEC
  char byte = 0;
  int pipeFds[2];
  if (pipe(pipeFds) != 0 || write(pipeFds[1], "x", 1) != 1 || read(pipeFds[0], &byte, 1) != 1 || byte != 'x')
    return kRead;
  pid_t child = fork();  // plain clone without namespace flags still works
  if (child < 0) return kFork;
  if (child == 0) _exit(0);
  int status = 0;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return kFork;
  return kOk;
}

TEST(CompiledSeccomp, ChildUnderDefaultProfile) {
  auto compiled = CompiledSeccomp::compile(dockerDefaultProfile({"CAP_CHOWN"}));
  ASSERT_TRUE(compiled) << compiled.error().message();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(runChecksUnderDefaultProfile(*compiled));
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), kOk) << "failing check code " << WEXITSTATUS(status);
}

// A user's allow list in Docker's form: it loads (names this libseccomp does not know are skipped in allow
// entries), what it lists works, what it leaves out inside its table is the default errno, and numbers above
// its highest entry are ENOSYS.
TEST(CompiledSeccomp, UserAllowListProfile) {
  auto profile = parseSeccompProfile(R"({
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": 13,
    "syscalls": [
      {"names": ["read", "write", "exit", "exit_group", "getpid", "rt_sigreturn", "a_syscall_of_2040"],
       "action": "SCMP_ACT_ALLOW"}
    ]})",
                                     "allow.json");
  ASSERT_TRUE(profile) << profile.error().message();
  EXPECT_EQ(profile->rules[0].syscalls.size(), 6u);
  auto compiled = CompiledSeccomp::compile(*profile);
  ASSERT_TRUE(compiled) << compiled.error().message();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || compiled->loadInChild() != 0) _exit(2);
    if (syscall(SYS_getpid) <= 0) _exit(3);
    errno = 0;
    if (syscall(SYS_getppid) != -1 || errno != 13) _exit(4);  // 110: below exit_group (231)
    errno = 0;
    if (syscall(SYS_fanotify_init, 0, 0) != -1 || errno != ENOSYS) _exit(5);  // 300: above it
    errno = 0;
    if (syscall(1000) != -1 || errno != ENOSYS) _exit(6);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "child died by signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 0) << "failing check code " << WEXITSTATUS(status);
}

// Compiled programs are cached by profile content: a second profile differing only by a capability must
// not get the first one's program.
TEST(CompiledSeccomp, CachedProgramsFollowTheProfile) {
  auto plain = CompiledSeccomp::compile(dockerDefaultProfile({"CAP_CHOWN"}));
  auto admin = CompiledSeccomp::compile(dockerDefaultProfile({"CAP_CHOWN", "CAP_SYS_ADMIN"}));
  auto plainAgain = CompiledSeccomp::compile(dockerDefaultProfile({"CAP_CHOWN"}));
  ASSERT_TRUE(plain && admin && plainAgain);
  auto unshareErrno = [](const CompiledSeccomp& compiled) {
    pid_t pid = fork();
    if (pid == 0) {
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || compiled.loadInChild() != 0) _exit(255);
      errno = 0;
      syscall(SYS_unshare, 0x80000000UL);  // an invalid flag: EINVAL when allowed, EPERM when filtered
      _exit(errno);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_EQ(unshareErrno(*plain), EPERM);
  EXPECT_EQ(unshareErrno(*admin), EINVAL);
  EXPECT_EQ(unshareErrno(*plainAgain), EPERM);
}

TEST(CompiledSeccomp, KillActionKillsTheProcess) {
  SeccompProfile profile;
  profile.name = "/kill.json";
  profile.rules = {{.syscalls = {"getppid"}, .action = SeccompAction::Kill, .errnoValue = 0, .args = {}}};
  auto compiled = CompiledSeccomp::compile(profile);
  ASSERT_TRUE(compiled) << compiled.error().message();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || compiled->loadInChild() != 0) _exit(2);
    syscall(SYS_getppid);
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "exit status " << WEXITSTATUS(status);
  EXPECT_EQ(WTERMSIG(status), SIGSYS);
}

}  // namespace
}  // namespace corral::container
