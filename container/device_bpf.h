// The cgroup v2 side of the device policy: the allow list compiled to a BPF_PROG_TYPE_CGROUP_DEVICE
// program (pure, unit-tested by running it), and loading and attaching it to a container's group.
#pragma once

#include <linux/bpf.h>

#include <string>
#include <vector>

#include "container/devices.h"
#include "core/error.h"

namespace corral::container {

// Returns 1 (allow) when a rule matches the request in the context (struct bpf_cgroup_dev_ctx: access and
// type packed in one word, then major, minor), else 0. The kernel runs it on every open and mknod of a
// device node in the group, on top of deny-all.
std::vector<bpf_insn> deviceProgram(const std::vector<DeviceRule>& rules);

// bpf(BPF_PROG_LOAD) of deviceProgram(rules), then bpf(BPF_PROG_ATTACH) to the group's directory with
// BPF_F_ALLOW_MULTI, so a program attached above still has its say. The cgroup holds the program from
// then on: it lives as long as the group, across daemon restarts, with no fd or pin to keep.
Status attachDeviceProgram(int cgroupDirFd, const std::string& cgroupPath,
                           const std::vector<DeviceRule>& rules);

}  // namespace corral::container
