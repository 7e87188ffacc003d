// What GET /v1/info reports about the host: kernel, hostname, cgroup layout and whether /dev/kvm can be used.
// The probing is here; turning probe facts into advice is a pure function so the wording is unit-tested.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace corral::daemon {

// Raw facts about a KVM device node, gathered without side effects beyond open() and one ioctl.
struct KvmProbe {
  std::string device = "/dev/kvm";
  bool present = false;
  bool accessible = false;          // open(O_RDWR | O_CLOEXEC) succeeded
  int openErrno = 0;                // why open() failed, when present but not accessible
  std::optional<int> apiVersion{};  // KVM_GET_API_VERSION, when accessible and the ioctl answered
  int ioctlErrno = 0;
  // The node's permission bits and owners, for advice on fixing access ("0600 root:root").
  unsigned mode = 0;
  std::string owner{};
  std::string group{};
  bool isCharDevice = false;
};

struct KvmStatus {
  KvmProbe probe;
  bool usable = false;
  std::string reason;  // one sentence a learner can act on
};

struct HostInfo {
  std::string kernelRelease;  // uname -r
  std::string machine;        // uname -m
  std::string hostname;
  std::string cgroupMode;  // cgroupModeName, or "unknown (<why>)"
  // The host's namespace ids ("net" -> 4026531840, null when unreadable), corrald's own: what `corral
  // compare` sets the ids seen inside an instance against.
  std::map<std::string, std::optional<uint64_t>> namespaces;
  KvmStatus kvm;
};

// The namespaces /proc/PID/ns lists that GET /v1/info reports.
inline constexpr std::string_view kHostNamespaces[] = {"cgroup",           "ipc",  "mnt",  "net", "pid",
                                                       "pid_for_children", "time", "user", "uts"};
// Pure: "net:[4026531840]" (a /proc/PID/ns link) -> 4026531840; nullopt for anything else.
std::optional<uint64_t> namespaceInode(std::string_view link);

KvmProbe probeKvm(const std::string& device = "/dev/kvm");
// Pure: decides usability and explains it. KVM's stable API version is 12; any other answer is unusable.
KvmStatus assessKvm(const KvmProbe& probe);
// Kernel, machine, hostname, cgroup mode and namespace ids; `kvm` left default.
HostInfo describeHost();
// describeHost() plus the KVM probe.
HostInfo inspectHost();

}  // namespace corral::daemon
