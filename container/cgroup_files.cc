// kernelCgroupFiles(): the cgroup drivers' file operations on the real cgroup filesystems, and the parsers
// of control-file text every implementation shares.
#include "container/cgroup_files.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>

#include "container/device_bpf.h"

namespace corral::container {
namespace {

class KernelCgroupFiles final : public CgroupFiles {
 public:
  Result<std::string> read(const std::string& path) const override {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_RDONLY)", path)));
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

  Status write(const std::string& path, std::string_view value) const override {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
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

  bool exists(const std::string& path) const override {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0;
  }

  bool isDirectory(const std::string& path) const override {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  Status makeDirectory(const std::string& path) const override {
    if (::mkdir(path.c_str(), 0755) != 0) return fail(systemError(errno, fmt::format("mkdir(\"{}\")", path)));
    return {};
  }

  Status removeDirectory(const std::string& path) const override {
    if (::rmdir(path.c_str()) == 0) return {};
    int err = errno;
    if (err == EBUSY || err == ENOTEMPTY)
      return fail(Error(ErrorKind::Conflict, fmt::format("rmdir(\"{}\"): cgroup still has processes", path),
                        {}, err));
    return fail(systemError(err, fmt::format("rmdir(\"{}\")", path)));
  }

  std::vector<std::string> list(const std::string& dir) const override {
    std::vector<std::string> names;
    DIR* stream = ::opendir(dir.c_str());
    if (!stream) return names;
    while (dirent* entry = ::readdir(stream)) {
      std::string_view name = entry->d_name;
      if (name != "." && name != "..") names.emplace_back(name);
    }
    ::closedir(stream);
    return names;
  }

  std::optional<std::string> realPath(const std::string& path) const override {
    char* real = ::realpath(path.c_str(), nullptr);
    if (!real) return std::nullopt;
    std::string result(real);
    ::free(real);
    return result;
  }

  Result<UniqueFd> openDirectory(const std::string& path) const override {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_DIRECTORY)", path)));
    return fd;
  }

  Result<UniqueFd> openForWriting(const std::string& path) const override {
    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
    if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_WRONLY)", path)));
    return fd;
  }

  Result<UniqueFd> openForReading(const std::string& path) const override {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_RDONLY)", path)));
    return fd;
  }

  Result<std::string_view> readOpen(const UniqueFd& fd, const std::string& path,
                                    std::span<char> buffer) const override {
    ssize_t n;
    do {
      n = ::pread(fd.get(), buffer.data(), buffer.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return fail(systemError(errno, fmt::format("pread(\"{}\", 0)", path)));
    if (static_cast<size_t>(n) == buffer.size())
      return fail(internalError("pread(\"{}\", 0): more than {} bytes", path, buffer.size()));
    return std::string_view(buffer.data(), static_cast<size_t>(n));
  }

  Status attachDeviceProgram(const std::string& dir, const std::vector<DeviceRule>& rules) const override {
    auto directory = openDirectory(dir);
    if (!directory) return fail(directory.error());
    return container::attachDeviceProgram(directory->get(), dir, rules);
  }
};

}  // namespace

const CgroupFiles& kernelCgroupFiles() {
  static const KernelCgroupFiles files;
  return files;
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
  return parseNumber(*text, path);
}

Result<uint64_t> CgroupFiles::readKeyed(const std::string& path, std::string_view key) const {
  auto text = read(path);
  if (!text) return fail(text.error());
  return parseKeyed(*text, key, path);
}

Result<std::optional<uint64_t>> parseNumber(std::string_view value, const std::string& path) {
  while (!value.empty() && (value.back() == '\n' || value.back() == ' ')) value.remove_suffix(1);
  if (value == "max") return std::optional<uint64_t>();
  uint64_t number = 0;
  auto [next, ec] = std::from_chars(value.data(), value.data() + value.size(), number);
  if (ec != std::errc() || next != value.data() + value.size())
    return fail(internalError("\"{}\": expected a number, got \"{}\"", path, value));
  return std::optional<uint64_t>(number);
}

Result<uint64_t> parseKeyed(std::string_view rest, std::string_view key, const std::string& path) {
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

}  // namespace corral::container
