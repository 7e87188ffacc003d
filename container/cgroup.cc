// The cgroup factory: validates names and limits, picks the v2 or v1 driver for the host's mode, and the
// control-file helpers both drivers share.
#include "container/cgroup.h"

#include <dirent.h>
#include <fcntl.h>
#include <fmt/ranges.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "container/cgroup_v1.h"
#include "container/cgroup_v2.h"
#include "core/log.h"
#include "core/unique_fd.h"

namespace corral::container {

Status validateCgroupName(const std::string& name, const std::string& field) {
  if (name.empty()) return fail(invalidField(field, "must not be empty"));
  if (name == "." || name == "..") return fail(invalidField(field, "\"{}\" is not a cgroup name", name));
  if (name.find('/') != std::string::npos)
    return fail(invalidField(field, "\"{}\" must be one path component (no '/')", name));
  if (name.find('\0') != std::string::npos || name.find('\n') != std::string::npos)
    return fail(invalidField(field, "must not contain NUL or newline characters"));
  if (name.size() > 255) return fail(invalidField(field, "is {} characters long; at most 255", name.size()));
  return {};
}

Status validateResourceLimits(const ResourceLimits& limits) {
  constexpr uint64_t kMinMemory = 1 << 20;
  if (limits.memoryBytes && *limits.memoryBytes < kMinMemory)
    return fail(invalidField("memory", "{} bytes is below the minimum of 1 MiB", *limits.memoryBytes));
  // The kernel's smallest CFS quota is 1 ms per period.
  if (limits.cpuMillis && (*limits.cpuMillis < 10 || *limits.cpuMillis > 1000000))
    return fail(invalidField(
        "cpus", "{} thousandths of a CPU is out of range (10 = 1% of a CPU, up to 1000000 = 1000 CPUs)",
        *limits.cpuMillis));
  if (limits.pids && *limits.pids == 0) return fail(invalidField("pids", "must be at least 1"));
  return {};
}

CgroupFiles CgroupFiles::forTree(const std::string& dir) {
  struct statfs fs {};
  if (::statfs(dir.c_str(), &fs) != 0) return CgroupFiles(true);  // the caller's first access reports it
  return CgroupFiles(fs.f_type == CGROUP_SUPER_MAGIC || fs.f_type == CGROUP2_SUPER_MAGIC);
}

Result<std::string> CgroupFiles::read(const std::string& path) const {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT && !kernel_) return std::string();
    return fail(systemError(errno, fmt::format("open(\"{}\", O_RDONLY)", path)));
  }
  std::string text;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, fmt::format("read(\"{}\")", path)));
    if (n == 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

Status CgroupFiles::write(const std::string& path, std::string_view value) const {
  int flags = O_WRONLY | O_CLOEXEC | (kernel_ ? 0 : O_CREAT | O_TRUNC);
  UniqueFd fd(::open(path.c_str(), flags, 0644));
  if (!fd) return fail(systemError(errno, fmt::format("write(\"{}\", \"{}\"): open", path, value)));
  ssize_t n;
  do {
    n = ::write(fd.get(), value.data(), value.size());
  } while (n < 0 && errno == EINTR);
  if (n < 0) return fail(systemError(errno, fmt::format("write(\"{}\", \"{}\")", path, value)));
  if (static_cast<size_t>(n) != value.size())
    return fail(internalError("write(\"{}\", \"{}\"): short write of {} bytes", path, value, n));
  return {};
}

bool CgroupFiles::exists(const std::string& path) const {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

bool CgroupFiles::isDirectory(const std::string& path) const {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Status CgroupFiles::makeDirectory(const std::string& path) const {
  if (::mkdir(path.c_str(), 0755) != 0) return fail(systemError(errno, fmt::format("mkdir(\"{}\")", path)));
  return {};
}

Status CgroupFiles::removeDirectory(const std::string& path) const {
  if (!kernel_) {
    // The stand-in tree holds real files where the kernel would have virtual ones.
    if (DIR* dir = ::opendir(path.c_str())) {
      while (dirent* entry = ::readdir(dir)) {
        if (entry->d_type == DT_REG) ::unlinkat(::dirfd(dir), entry->d_name, 0);
      }
      ::closedir(dir);
    }
  }
  if (::rmdir(path.c_str()) == 0) return {};
  int err = errno;
  if (err == EBUSY || err == ENOTEMPTY)
    return fail(
        Error(ErrorKind::Conflict, fmt::format("rmdir(\"{}\"): cgroup still has processes", path), {}, err));
  return fail(systemError(err, fmt::format("rmdir(\"{}\")", path)));
}

Result<std::vector<pid_t>> CgroupFiles::readPids(const std::string& procsPath) const {
  auto text = read(procsPath);
  if (!text) return fail(text.error());
  std::vector<pid_t> pids;
  const char* p = text->data();
  const char* end = p + text->size();
  while (p < end) {
    while (p < end && (*p == '\n' || *p == ' ')) ++p;
    if (p == end) break;
    pid_t pid = 0;
    auto [next, ec] = std::from_chars(p, end, pid);
    if (ec != std::errc() || pid <= 0) return fail(internalError("\"{}\": not a list of pids", procsPath));
    pids.push_back(pid);
    p = next;
  }
  return pids;
}

Result<std::optional<uint64_t>> CgroupFiles::readNumber(const std::string& path) const {
  auto text = read(path);
  if (!text) return fail(text.error());
  std::string_view value(*text);
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
  if (value == "max") return std::optional<uint64_t>();
  if (value.empty() && !kernel_) return std::optional<uint64_t>(0);
  uint64_t number = 0;
  auto [next, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (ec != std::errc() || next != value.data() + value.size())
    return fail(internalError("\"{}\": expected a number, got \"{}\"", path, value));
  return std::optional<uint64_t>(number);
}

Result<uint64_t> CgroupFiles::readKeyed(const std::string& path, std::string_view key) const {
  auto text = read(path);
  if (!text) return fail(text.error());
  std::string_view rest(*text);
  while (!rest.empty()) {
    size_t newline = rest.find('\n');
    std::string_view line = rest.substr(0, newline);
    rest = newline == std::string_view::npos ? std::string_view() : rest.substr(newline + 1);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ') {
      std::string_view value = line.substr(key.size() + 1);
      uint64_t number = 0;
      auto [next, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
      if (ec != std::errc()) return fail(internalError("\"{}\": \"{}\" is not a number", path, line));
      return number;
    }
  }
  return uint64_t{0};
}

std::string formatPids(const std::vector<pid_t>& pids) {
  return fmt::format("[{}]", fmt::join(pids, ", "));
}

Result<std::unique_ptr<Cgroup>> createCgroup(CgroupMode mode, const std::string& name,
                                             const ResourceLimits& limits, const CgroupOptions& options,
                                             const std::vector<DeviceRule>& devices) {
  if (auto ok = validateCgroupName(name); !ok) return fail(ok.error());
  if (auto ok = validateCgroupName(options.parent, "cgroupOptions.parent"); !ok) return fail(ok.error());
  if (auto ok = validateResourceLimits(limits); !ok) return fail(ok.error());
  // Errors name the path and file already ("mkdir(\"/sys/fs/cgroup/memory/corral/web-1\")"); the caller adds
  // its own context ("create container web-1: cgroup: ...").
  auto create = [&] {
    return mode == CgroupMode::Unified ? createCgroupV2(name, limits, options, devices)
                                       : createCgroupV1(name, limits, options, devices);
  };
  auto created = create();
  if (created || created.error().kind() != ErrorKind::Conflict) return created;
  // Only a crash leaves a group behind (the daemon removes a container's group when it stops): it holds
  // nothing the new container may inherit, so its processes are killed and it is made afresh.
  auto cleared = clearCgroup(mode, name, options);
  if (!cleared) return fail(cleared.error().wrap(created.error().message()));
  log::warn("cgroup for \"{}\" was left over: killed its processes {} and removed {}; creating it again",
            name, formatPids(cleared->killed), fmt::join(cleared->removed, ", "));
  return create();
}

Result<ClearedCgroup> clearCgroup(CgroupMode mode, const std::string& name, const CgroupOptions& options) {
  if (auto ok = validateCgroupName(name); !ok) return fail(ok.error());
  if (auto ok = validateCgroupName(options.parent, "cgroupOptions.parent"); !ok) return fail(ok.error());
  auto cleared = mode == CgroupMode::Unified ? clearCgroupV2(name, options) : clearCgroupV1(name, options);
  if (!cleared) return fail(cleared.error().wrap(fmt::format("clear cgroup \"{}\"", name)));
  return cleared;
}

Result<std::unique_ptr<Cgroup>> openCgroup(CgroupMode mode, const std::string& name,
                                           const CgroupOptions& options) {
  if (auto ok = validateCgroupName(name); !ok) return fail(ok.error());
  if (auto ok = validateCgroupName(options.parent, "cgroupOptions.parent"); !ok) return fail(ok.error());
  return mode == CgroupMode::Unified ? openCgroupV2(name, options) : openCgroupV1(name, options);
}

}  // namespace corral::container
