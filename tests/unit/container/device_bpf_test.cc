// The cgroup v2 device program without root: its instructions for one rule read as intended, and for
// several rule lists a small interpreter of the eBPF subset it uses gives the model's answer
// (deviceAccessAllowed) for every request tried.
#include "container/device_bpf.h"

#include <gtest/gtest.h>

#include <cstring>

namespace corral::container {
namespace {

// Runs `program` on one request as the kernel would: r1 points at bpf_cgroup_dev_ctx, r0 is the verdict.
// Fails the test on any instruction outside what deviceProgram emits.
uint64_t run(const std::vector<bpf_insn>& program, DeviceType type, uint32_t major, uint32_t minor,
             uint8_t access) {
  bpf_cgroup_dev_ctx ctx{};
  ctx.access_type =
      (uint32_t{access} << 16) | (type == DeviceType::Char ? BPF_DEVCG_DEV_CHAR : BPF_DEVCG_DEV_BLOCK);
  ctx.major = major;
  ctx.minor = minor;
  uint64_t r[11] = {};
  for (size_t pc = 0, steps = 0; pc < program.size() && steps < 10000; ++pc, ++steps) {
    const bpf_insn& insn = program[pc];
    const uint64_t imm = static_cast<uint64_t>(static_cast<int64_t>(insn.imm));
    switch (insn.code) {
      case BPF_LDX | BPF_MEM | BPF_W: {
        EXPECT_EQ(insn.src_reg, BPF_REG_1);
        uint32_t word = 0;
        EXPECT_TRUE(insn.off >= 0 && insn.off + 4 <= static_cast<int>(sizeof ctx)) << insn.off;
        std::memcpy(&word, reinterpret_cast<const char*>(&ctx) + insn.off, 4);
        r[insn.dst_reg] = word;
        break;
      }
      case BPF_ALU64 | BPF_MOV | BPF_X:
        r[insn.dst_reg] = r[insn.src_reg];
        break;
      case BPF_ALU64 | BPF_MOV | BPF_K:
        r[insn.dst_reg] = imm;
        break;
      case BPF_ALU64 | BPF_AND | BPF_K:
        r[insn.dst_reg] &= imm;
        break;
      case BPF_ALU64 | BPF_RSH | BPF_K:
        r[insn.dst_reg] >>= insn.imm;
        break;
      case BPF_JMP | BPF_JNE | BPF_K:
        if (r[insn.dst_reg] != imm) pc += static_cast<size_t>(insn.off);
        break;
      case BPF_JMP | BPF_JSET | BPF_K:
        if (r[insn.dst_reg] & imm) pc += static_cast<size_t>(insn.off);
        break;
      case BPF_JMP | BPF_EXIT:
        return r[0];
      default:
        ADD_FAILURE() << "unexpected instruction code " << int{insn.code} << " at " << pc;
        return 99;
    }
  }
  ADD_FAILURE() << "ran off the end of the program";
  return 99;
}

std::vector<DeviceRule> rules(std::initializer_list<const char*> lines) {
  std::vector<DeviceRule> list;
  for (const char* line : lines) list.push_back(parseDeviceRule(line, "rule").value());
  return list;
}

TEST(DeviceProgram, OneRuleReadsAsItsTests) {
  auto program = deviceProgram(rules({"c 10:229 rw"}));
  // Prologue (6), then: type, access, major, minor tests, each jumping past the rest and the allow (2).
  ASSERT_EQ(program.size(), 6u + 4 + 2 + 2);
  EXPECT_EQ(program[6].code, BPF_JMP | BPF_JNE | BPF_K);
  EXPECT_EQ(program[6].imm, BPF_DEVCG_DEV_CHAR);
  EXPECT_EQ(program[6].off, 5);
  EXPECT_EQ(program[7].code, BPF_JMP | BPF_JSET | BPF_K);
  EXPECT_EQ(program[7].imm, BPF_DEVCG_ACC_MKNOD) << "mknod is the one bit the rule does not grant";
  EXPECT_EQ(program[7].off, 4);
  EXPECT_EQ(program[8].imm, 10);
  EXPECT_EQ(program[8].off, 3);
  EXPECT_EQ(program[9].imm, 229);
  EXPECT_EQ(program[9].off, 2);
  EXPECT_EQ(program[10].code, BPF_ALU64 | BPF_MOV | BPF_K);
  EXPECT_EQ(program[10].imm, 1);
  EXPECT_EQ(program[12].imm, 0) << "the end: deny";
  // Wildcards and full access add no test.
  EXPECT_EQ(deviceProgram(rules({"c *:* rwm"})).size(), 6u + 1 + 2 + 2);
  EXPECT_EQ(deviceProgram({}).size(), 6u + 2) << "no rule: deny everything";
}

TEST(DeviceProgram, AgreesWithTheModelOnEveryRequest) {
  const std::vector<std::vector<DeviceRule>> lists = {
      defaultDeviceRules(),
      {},
      rules({"c 10:229 r"}),
      rules({"b 7:* rw", "c *:3 w"}),
      rules({"c 1:3 m", "c 1:3 r", "b *:* rwm"}),
  };
  const uint32_t numbers[] = {0, 1, 3, 5, 7, 9, 10, 136, 229, 232, 65535, 0xfffff};
  int checked = 0;
  for (const auto& list : lists) {
    const auto program = deviceProgram(list);
    for (DeviceType type : {DeviceType::Char, DeviceType::Block}) {
      for (uint32_t major : numbers) {
        for (uint32_t minor : numbers) {
          for (uint8_t access = 1; access <= kDeviceAllAccess; ++access) {
            bool expected = deviceAccessAllowed(list, type, major, minor, access);
            ASSERT_EQ(run(program, type, major, minor, access), expected ? 1u : 0u)
                << static_cast<char>(type) << " " << major << ":" << minor << " " << deviceAccessText(access)
                << " under " << list.size() << " rules";
            ++checked;
          }
        }
      }
    }
  }
  EXPECT_EQ(checked, 5 * 2 * 12 * 12 * 7);
}

TEST(DeviceProgram, DefaultsOpenTheUsualNodesOnly) {
  const auto program = deviceProgram(defaultDeviceRules());
  const uint8_t rw = kDeviceRead | kDeviceWrite;
  EXPECT_EQ(run(program, DeviceType::Char, 1, 3, rw), 1u) << "/dev/null";
  EXPECT_EQ(run(program, DeviceType::Char, 136, 4, rw), 1u) << "a pts terminal";
  EXPECT_EQ(run(program, DeviceType::Char, 10, 232, kDeviceRead), 0u) << "/dev/kvm";
  EXPECT_EQ(run(program, DeviceType::Char, 7, 1, kDeviceRead), 0u) << "vcs1";
  EXPECT_EQ(run(program, DeviceType::Char, 10, 232, kDeviceMknod), 1u) << "mknod alone is allowed";
  EXPECT_EQ(run(program, DeviceType::Block, 253, 0, kDeviceRead), 0u) << "a disk";
}

}  // namespace
}  // namespace corral::container
