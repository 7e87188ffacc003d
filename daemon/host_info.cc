// Host inspection for GET /v1/info: uname, hostname, cgroup mode and a /dev/kvm probe with advice.
#include "daemon/host_info.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <linux/kvm.h>
#include <pwd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <vector>

#include "container/cgroup_mode.h"
#include "core/unique_fd.h"

namespace corral::daemon {
namespace {

std::string userName(uid_t uid) {
  passwd entry{};
  passwd* found = nullptr;
  std::vector<char> buffer(4096);
  if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found) return found->pw_name;
  return std::to_string(uid);
}

std::string groupName(gid_t gid) {
  group entry{};
  group* found = nullptr;
  std::vector<char> buffer(4096);
  if (::getgrgid_r(gid, &entry, buffer.data(), buffer.size(), &found) == 0 && found) return found->gr_name;
  return std::to_string(gid);
}

}  // namespace

KvmProbe probeKvm(const std::string& device) {
  KvmProbe probe;
  probe.device = device;
  struct stat info {};
  if (::stat(device.c_str(), &info) != 0) {
    probe.openErrno = errno;
    return probe;
  }
  probe.present = true;
  probe.isCharDevice = S_ISCHR(info.st_mode);
  probe.mode = info.st_mode & 07777;
  probe.owner = userName(info.st_uid);
  probe.group = groupName(info.st_gid);

  UniqueFd kvm(::open(device.c_str(), O_RDWR | O_CLOEXEC));
  if (!kvm) {
    probe.openErrno = errno;
    return probe;
  }
  probe.accessible = true;
  int version = ::ioctl(kvm.get(), KVM_GET_API_VERSION, 0);
  if (version < 0) {
    probe.ioctlErrno = errno;
  } else {
    probe.apiVersion = version;
  }
  return probe;
}

KvmStatus assessKvm(const KvmProbe& probe) {
  KvmStatus status;
  status.probe = probe;
  const std::string& dev = probe.device;
  if (!probe.present) {
    status.reason = fmt::format(
        "{} is missing: the CPU has no virtualisation or the kvm module is not loaded "
        "(modprobe kvm_intel or kvm_amd; in a VM, enable nested virtualisation)",
        dev);
  } else if (!probe.isCharDevice) {
    status.reason = fmt::format("{} exists but is not a character device", dev);
  } else if (!probe.accessible) {
    if (probe.openErrno == EACCES || probe.openErrno == EPERM) {
      status.reason = fmt::format(
          "{0} is mode {1:04o} {2}:{3} and corrald is not allowed to open it: chgrp kvm {0} && chmod 660 {0}",
          dev, probe.mode, probe.owner, probe.group);
    } else {
      status.reason = fmt::format("open(\"{}\", O_RDWR) failed: {}", dev, std::strerror(probe.openErrno));
    }
  } else if (!probe.apiVersion) {
    status.reason = fmt::format("{} opens but ioctl(KVM_GET_API_VERSION) failed: {}", dev,
                                std::strerror(probe.ioctlErrno));
  } else if (*probe.apiVersion != KVM_API_VERSION) {
    status.reason = fmt::format("{} answers with KVM API {}, but only the stable API {} is supported", dev,
                                *probe.apiVersion, KVM_API_VERSION);
  } else {
    status.usable = true;
    status.reason = fmt::format(
        "{} answers (KVM API {}); whether it really boots a guest is probed when the first VM starts", dev,
        *probe.apiVersion);
  }
  return status;
}

std::optional<uint64_t> namespaceInode(std::string_view link) {
  const size_t open = link.find(":[");
  if (open == std::string_view::npos || open == 0 || !link.ends_with(']')) return std::nullopt;
  std::string_view digits = link.substr(open + 2, link.size() - open - 3);
  uint64_t inode = 0;
  auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), inode);
  if (digits.empty() || error != std::errc() || end != digits.data() + digits.size()) return std::nullopt;
  return inode;
}

HostInfo describeHost() {
  HostInfo host;
  utsname names{};
  if (::uname(&names) == 0) {
    host.kernelRelease = names.release;
    host.machine = names.machine;
  }
  char hostname[256] = {};
  if (::gethostname(hostname, sizeof hostname - 1) == 0) host.hostname = hostname;
  if (auto mode = container::detectCgroupMode()) {
    host.cgroupMode = container::cgroupModeName(*mode);
  } else {
    host.cgroupMode = fmt::format("unknown ({})", mode.error().message());
  }
  for (std::string_view ns : kHostNamespaces) {
    char target[256];
    const std::string path = fmt::format("/proc/self/ns/{}", ns);
    const ssize_t length = ::readlink(path.c_str(), target, sizeof target);
    host.namespaces[std::string(ns)] =
        length > 0 ? namespaceInode(std::string_view(target, static_cast<size_t>(length))) : std::nullopt;
  }
  return host;
}

HostInfo inspectHost() {
  HostInfo host = describeHost();
  host.kvm = assessKvm(probeKvm());
  return host;
}

}  // namespace corral::daemon
