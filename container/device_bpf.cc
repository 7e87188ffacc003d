// Device rules → eBPF instructions, and the two bpf(2) calls that put them on a cgroup.
#include "container/device_bpf.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/unique_fd.h"

namespace corral::container {
namespace {

// Registers after the prologue: the request's type, access, major and minor.
constexpr uint8_t kCtx = BPF_REG_1, kType = BPF_REG_2, kAccess = BPF_REG_3, kMajor = BPF_REG_4,
                  kMinor = BPF_REG_5;

bpf_insn instruction(uint8_t code, uint8_t dst, uint8_t src, int16_t offset, int32_t imm) {
  bpf_insn insn{};
  insn.code = code;
  insn.dst_reg = dst & 0xf;
  insn.src_reg = src & 0xf;
  insn.off = offset;
  insn.imm = imm;
  return insn;
}
bpf_insn loadWord(uint8_t dst, int16_t offset) {
  return instruction(BPF_LDX | BPF_MEM | BPF_W, dst, kCtx, offset, 0);
}
bpf_insn jumpIfNotEqual(uint8_t reg, uint32_t value, int16_t skip) {
  return instruction(BPF_JMP | BPF_JNE | BPF_K, reg, 0, skip, static_cast<int32_t>(value));
}
bpf_insn returnValue(int32_t value) {
  return instruction(BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, value);
}
bpf_insn exitProgram() {
  return instruction(BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
}

int bpf(int command, bpf_attr* attr) {
  return static_cast<int>(::syscall(SYS_bpf, command, attr, sizeof *attr));
}

}  // namespace

std::vector<bpf_insn> deviceProgram(const std::vector<DeviceRule>& rules) {
  std::vector<bpf_insn> program = {
      loadWord(kType, offsetof(bpf_cgroup_dev_ctx, access_type)),
      instruction(BPF_ALU64 | BPF_MOV | BPF_X, kAccess, kType, 0, 0),
      instruction(BPF_ALU64 | BPF_AND | BPF_K, kType, 0, 0, 0xffff),  // BPF_DEVCG_DEV_*
      instruction(BPF_ALU64 | BPF_RSH | BPF_K, kAccess, 0, 0, 16),    // BPF_DEVCG_ACC_*
      loadWord(kMajor, offsetof(bpf_cgroup_dev_ctx, major)),
      loadWord(kMinor, offsetof(bpf_cgroup_dev_ctx, minor)),
  };
  for (const DeviceRule& rule : rules) {
    // Each test skips to the next rule on a mismatch: past the tests after it and the 2-instruction allow.
    std::vector<bpf_insn> tests;
    tests.push_back(
        jumpIfNotEqual(kType, rule.type == DeviceType::Char ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK, 0));
    const uint32_t refused = ~uint32_t{rule.access} & kDeviceAllAccess;
    if (refused != 0)
      tests.push_back(instruction(BPF_JMP | BPF_JSET | BPF_K, kAccess, 0, 0, static_cast<int32_t>(refused)));
    if (rule.major) tests.push_back(jumpIfNotEqual(kMajor, *rule.major, 0));
    if (rule.minor) tests.push_back(jumpIfNotEqual(kMinor, *rule.minor, 0));
    for (size_t i = 0; i < tests.size(); ++i) tests[i].off = static_cast<int16_t>(tests.size() - i - 1 + 2);
    program.insert(program.end(), tests.begin(), tests.end());
    program.push_back(returnValue(1));
    program.push_back(exitProgram());
  }
  program.push_back(returnValue(0));
  program.push_back(exitProgram());
  return program;
}

Status attachDeviceProgram(int cgroupDirFd, const std::string& cgroupPath,
                           const std::vector<DeviceRule>& rules) {
  const std::vector<bpf_insn> program = deviceProgram(rules);
  static constexpr char kLicense[] = "GPL";  // no helpers are called; any text would do
  bpf_attr load{};
  load.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
  load.insns = reinterpret_cast<uint64_t>(program.data());
  load.insn_cnt = static_cast<uint32_t>(program.size());
  load.license = reinterpret_cast<uint64_t>(kLicense);
  UniqueFd prog(bpf(BPF_PROG_LOAD, &load));
  if (!prog) {
    int err = errno;
    // Again with the verifier's log, which says which instruction it refused.
    std::string log(1 << 16, '\0');
    load.log_level = 1;
    load.log_buf = reinterpret_cast<uint64_t>(log.data());
    load.log_size = static_cast<uint32_t>(log.size());
    prog.reset(bpf(BPF_PROG_LOAD, &load));
    if (!prog) {
      log.resize(std::strlen(log.c_str()));
      return fail(
          systemError(err, fmt::format("bpf(BPF_PROG_LOAD, BPF_PROG_TYPE_CGROUP_DEVICE, {} instructions){}{}",
                                       program.size(), log.empty() ? "" : ": ", log)));
    }
  }
  bpf_attr attach{};
  attach.target_fd = static_cast<uint32_t>(cgroupDirFd);
  attach.attach_bpf_fd = static_cast<uint32_t>(prog.get());
  attach.attach_type = BPF_CGROUP_DEVICE;
  attach.attach_flags = BPF_F_ALLOW_MULTI;
  if (bpf(BPF_PROG_ATTACH, &attach) != 0)
    return fail(systemError(
        errno,
        fmt::format("bpf(BPF_PROG_ATTACH, \"{}\", BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)", cgroupPath)));
  return {};
}

}  // namespace corral::container
