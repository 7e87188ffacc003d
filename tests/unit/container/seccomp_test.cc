// Seccomp profiles: Docker's default as a deny list, JSON profile parsing (every error names its JSON path),
// compiling to BPF, and a forked child that loads the default profile and sees what a container would.
#include "container/seccomp.h"

#include <fcntl.h>
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

// The action the profile takes for `name` called with no argument conditions, or nullopt for the default.
std::optional<SeccompRule> unconditionalRuleFor(const SeccompProfile& profile, const std::string& name) {
  for (const auto& rule : profile.rules) {
    if (!rule.args.empty()) continue;
    if (std::find(rule.syscalls.begin(), rule.syscalls.end(), name) != rule.syscalls.end()) return rule;
  }
  return std::nullopt;
}

bool deniedWithEperm(const SeccompProfile& profile, const std::string& name) {
  auto rule = unconditionalRuleFor(profile, name);
  return rule && rule->action == SeccompAction::Errno && rule->errnoValue == EPERM;
}

TEST(SeccompDefaultProfile, DeniesWhatDockerDeniesAndAllowsTheRest) {
  SeccompProfile profile = dockerDefaultProfile({"CAP_CHOWN", "CAP_NET_BIND_SERVICE"});
  EXPECT_EQ(profile.name, "default");
  EXPECT_FALSE(profile.unconfined());
  EXPECT_EQ(profile.defaultAction, SeccompAction::Allow);
  for (const char* name : {"keyctl",       "add_key",           "request_key",  "mount",
                           "umount2",      "unshare",           "setns",        "pivot_root",
                           "kexec_load",   "init_module",       "finit_module", "delete_module",
                           "bpf",          "perf_event_open",   "reboot",       "swapon",
                           "settimeofday", "clock_settime",     "iopl",         "ioperm",
                           "syslog",       "open_by_handle_at", "userfaultfd",  "chroot"}) {
    EXPECT_TRUE(deniedWithEperm(profile, name)) << name;
  }
  for (const char* name : {"read", "write", "openat", "execve", "clone", "getpid", "ptrace", "socket"}) {
    EXPECT_FALSE(unconditionalRuleFor(profile, name).has_value()) << name;
  }
  auto clone3 = unconditionalRuleFor(profile, "clone3");
  ASSERT_TRUE(clone3);
  EXPECT_EQ(clone3->errnoValue, ENOSYS);
  // clone with any namespace flag: one masked rule per flag bit.
  int namespaceRules = 0;
  for (const auto& rule : profile.rules) {
    if (rule.syscalls == std::vector<std::string>{"clone"}) {
      ASSERT_EQ(rule.args.size(), 1u);
      EXPECT_EQ(rule.args[0].op, SeccompCompare::MaskedEqual);
      EXPECT_EQ(rule.args[0].value, rule.args[0].valueTwo);
      EXPECT_NE(rule.args[0].value & 0x7E020000u, 0u);
      ++namespaceRules;
    }
  }
  EXPECT_EQ(namespaceRules, 7);
}

TEST(SeccompDefaultProfile, CapabilitiesReEnableWhatDockerReEnables) {
  SeccompProfile admin = dockerDefaultProfile({"CAP_SYS_ADMIN"});
  for (const char* name : {"mount", "umount2", "unshare", "setns", "bpf", "perf_event_open", "syslog"})
    EXPECT_FALSE(deniedWithEperm(admin, name)) << name;
  EXPECT_FALSE(unconditionalRuleFor(admin, "clone3"));
  for (const auto& rule : admin.rules) EXPECT_NE(rule.syscalls, std::vector<std::string>{"clone"});
  EXPECT_TRUE(deniedWithEperm(admin, "keyctl"));
  EXPECT_TRUE(deniedWithEperm(admin, "reboot"));

  // Names are accepted in any case, with or without the CAP_ prefix.
  SeccompProfile others = dockerDefaultProfile({"sys_boot", "CAP_SYS_MODULE", "cap_sys_time", "SYS_RAWIO",
                                                "CAP_SYSLOG", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE"});
  for (const char* name : {"reboot", "init_module", "finit_module", "delete_module", "settimeofday",
                           "clock_settime", "clock_adjtime", "iopl", "ioperm", "syslog", "chroot", "kcmp"})
    EXPECT_FALSE(deniedWithEperm(others, name)) << name;
  EXPECT_TRUE(deniedWithEperm(others, "mount"));
}

TEST(SeccompProfileResolve, ChoicesAndErrors) {
  auto def = resolveSeccompProfile("default", {});
  ASSERT_TRUE(def) << def.error().message();
  EXPECT_EQ(def->name, "default");
  auto unconfined = resolveSeccompProfile("unconfined", {});
  ASSERT_TRUE(unconfined);
  EXPECT_TRUE(unconfined->unconfined());

  auto relative = resolveSeccompProfile("profile.json", {});
  ASSERT_FALSE(relative);
  EXPECT_EQ(relative.error().field(), "seccomp");
  EXPECT_NE(relative.error().message().find("absolute path"), std::string::npos);

  auto missing = resolveSeccompProfile("/nonexistent/corral-profile.json", {});
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
  auto good = resolveSeccompProfile((dir / "good.json").string(), {});
  ASSERT_TRUE(good) << good.error().message();
  EXPECT_EQ(good->name, (dir / "good.json").string());
  ASSERT_EQ(good->rules.size(), 1u);
  EXPECT_EQ(good->rules[0].errnoValue, 38);
  auto bad = resolveSeccompProfile((dir / "bad.json").string(), {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field(), "seccomp.syscalls[0].names[0]");
  EXPECT_NE(bad.error().message().find("unknown syscall \"nope\""), std::string::npos)
      << bad.error().message();
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
  EXPECT_TRUE(profile.error().message().starts_with("seccomp profile p.json: ")) << profile.error().message();
}

INSTANTIATE_TEST_SUITE_P(
    AllPaths, SeccompProfileErrors,
    ::testing::Values(
        BadProfile{"{", "", "malformed JSON"}, BadProfile{"[]", "", "must be a JSON object"},
        BadProfile{"{}", "defaultAction", "defaultAction: is required"},
        BadProfile{R"({"defaultAction": 3})", "defaultAction", "must be a string"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_MAYBE"})", "defaultAction",
                   "unknown action \"SCMP_ACT_MAYBE\""},
        BadProfile{R"({"defaultAction": "SCMP_ACT_NOTIFY"})", "defaultAction", "notify listener"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 5000})", "defaultErrnoRet",
                   "out of range"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1})", "defaultErrnoRet",
                   "only applies to SCMP_ACT_ERRNO"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_AARCH64"]})",
                   "architectures", "does not include"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_PDP11"]})",
                   "architectures[0]", "unknown architecture \"SCMP_ARCH_PDP11\""},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{}]})", "archMap[0]", "architecture"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]})", "flags",
                   "not supported"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x"})", "listenerPath",
                   "not supported"},
        BadProfile{R"({"defaultAction": "SCMP_ACT_ALLOW", "colour": "blue"})", "colour", "unknown key"},
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
                   "syscalls[0].names[1]", "unknown syscall \"not_a_syscall\""},
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
            "syscalls[0].args[0].op", "unknown operator"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "value": 1}]}]})",
            "syscalls[0].args[0].op", "is required"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "args": [{"index": 0, "op": "SCMP_CMP_EQ", "valueThree": 1}]}]})",
            "syscalls[0].args[0].valueThree", "unknown key"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                   "includes": {"caps": ["CAP_SYS_ADMIN"]}}]})",
            "syscalls[0].includes.caps", "capability-conditional rules are not supported"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                   "excludes": {"minKernel": "4.8"}}]})",
            "syscalls[0].excludes.minKernel", "unknown key"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mount"], "action": "SCMP_ACT_ALLOW",
                   "includes": {"minKernel": "four"}}]})",
            "syscalls[0].includes.minKernel", "kernel version"},
        BadProfile{
            R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO",
                   "priority": 1}]})",
            "syscalls[0].priority", "unknown key"}));

TEST(CompiledSeccomp, DefaultCompilesUnconfinedIsEmpty) {
  auto compiled = CompiledSeccomp::compile(dockerDefaultProfile({}));
  ASSERT_TRUE(compiled) << compiled.error().message();
  EXPECT_FALSE(compiled->empty());
  auto unconfined = CompiledSeccomp::compile(unconfinedProfile());
  ASSERT_TRUE(unconfined);
  EXPECT_TRUE(unconfined->empty());
  EXPECT_EQ(unconfined->loadInChild(), 0);
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
  EXPECT_NE(compiled.error().message().find("unknown syscall \"frobnicate\""), std::string::npos);
  profile.name = "default";
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
};

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
