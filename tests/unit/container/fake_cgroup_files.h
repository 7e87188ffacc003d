// A recording fake of CgroupFiles (container/cgroup_files.h): an in-memory tree standing in for
// /sys/fs/cgroup that answers as the kernel's cgroup filesystems do, and records every call, one line each
// ("mkdir /sys/fs/cgroup/corral/web-1", "write /sys/fs/cgroup/corral/web-1/memory.max 67108864").
// Simulated: a new group gets cgroup.procs and tasks, and on v2 (its parent has cgroup.subtree_control)
// the files of the controllers its parent enables; writes to cgroup.subtree_control apply "+x -y"; writes
// to cgroup.procs add a member; cgroup.kill empties the group; rmdir refuses a group with members or
// children. Tests put what the kernel would report (memory.current, memory.events ...) with put().
#pragma once

#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "container/cgroup_files.h"

namespace corral::container::testing {

class FakeCgroupFiles final : public CgroupFiles {
 public:
  // ---- The tree, as a test sets it up (not recorded) ----
  void makeDirectories(const std::string& path) {
    for (std::string dir = path; !dir.empty() && dir != "/"; dir = parentOf(dir)) dirs_.insert(dir);
  }
  void put(const std::string& path, const std::string& text) {
    makeDirectories(parentOf(path));
    files_[path] = text;
  }
  void remove(const std::string& path) {
    files_.erase(path);
    std::erase_if(dirs_, [&](const std::string& d) { return d == path || d.starts_with(path + "/"); });
    std::erase_if(files_, [&](const auto& f) { return f.first.starts_with(path + "/"); });
    links_.erase(path);
  }
  void symlink(const std::string& path, const std::string& target) { links_[path] = target; }
  std::optional<std::string> file(const std::string& path) const {
    auto it = files_.find(resolve(path));
    if (it == files_.end()) return std::nullopt;
    return it->second;
  }
  bool hasDirectory(const std::string& path) const { return dirs_.contains(resolve(path)); }

  // The huge page sizes whose hugetlb files a new group gets (in a v1 "hugetlb" hierarchy, or on v2 with
  // the controller enabled), and whether the reservation files (.rsvd., Linux 5.7 and later) come too.
  std::vector<std::string> hugepageSizes = {"2MB", "1GB"};
  bool hugetlbReservations = true;

  const std::vector<std::string>& calls() const { return calls_; }
  std::vector<std::string> takeCalls() { return std::exchange(calls_, {}); }
  // The calls that change something (mkdir, write, rmdir, open, attach), without the reads.
  std::vector<std::string> changes() const {
    std::vector<std::string> result;
    for (const std::string& call : calls_) {
      for (std::string_view verb :
           {"mkdir ", "write ", "rmdir ", "openDirectory ", "openForWriting ", "attachDeviceProgram "}) {
        if (call.starts_with(verb)) result.push_back(call);
      }
    }
    return result;
  }

  // ---- CgroupFiles ----

  Result<std::string> read(const std::string& path) const override {
    record("read {}", path);
    auto text = file(path);
    if (!text) return fail(systemError(ENOENT, fmt::format("open(\"{}\", O_RDONLY)", path)));
    return *text;
  }

  Status write(const std::string& path, std::string_view value) const override {
    record("write {} {}", path, value);
    const std::string real = resolve(path);
    const std::string dir = parentOf(real);
    if (!dirs_.contains(dir) || dirs_.contains(real))
      return fail(systemError(ENOENT, fmt::format("write(\"{}\", \"{}\"): open", path, value)));
    const std::string name = real.substr(dir.size() + 1);
    if (name == "cgroup.subtree_control") {
      std::set<std::string> enabled = words(files_[real]);
      std::istringstream changes{std::string(value)};
      for (std::string change; changes >> change;) {
        if (change.size() < 2 || (change[0] != '+' && change[0] != '-'))
          return fail(systemError(EINVAL, fmt::format("write(\"{}\", \"{}\")", path, value)));
        if (change[0] == '+') {
          enabled.insert(change.substr(1));
        } else {
          enabled.erase(change.substr(1));
        }
      }
      files_[real] = enabled.empty() ? "" : fmt::format("{}\n", fmt::join(enabled, " "));
    } else if (name == "cgroup.procs") {
      files_[real] += fmt::format("{}\n", value);
    } else if (name == "cgroup.kill" && value == "1") {
      files_[dir + "/cgroup.procs"] = "";
    } else {
      files_[real] = std::string(value);
    }
    return {};
  }

  bool exists(const std::string& path) const override {
    record("exists {}", path);
    const std::string real = resolve(path);
    return files_.contains(real) || dirs_.contains(real);
  }

  bool isDirectory(const std::string& path) const override {
    record("isDirectory {}", path);
    return dirs_.contains(resolve(path));
  }

  Status makeDirectory(const std::string& path) const override {
    record("mkdir {}", path);
    const std::string real = resolve(path);
    const std::string parent = parentOf(real);
    int err = 0;
    if (dirs_.contains(real) || files_.contains(real)) {
      err = EEXIST;
    } else if (files_.contains(parent)) {
      err = ENOTDIR;
    } else if (!dirs_.contains(parent)) {
      err = ENOENT;
    }
    if (err != 0) return fail(systemError(err, fmt::format("mkdir(\"{}\")", path)));
    dirs_.insert(real);
    files_[real + "/cgroup.procs"] = "";
    auto parentControl = files_.find(parent + "/cgroup.subtree_control");
    if (parentControl == files_.end()) {
      files_[real + "/tasks"] = "";  // v1
      if (real.find("/hugetlb/") != std::string::npos) addHugetlbFiles(real, "limit_in_bytes");
      return {};
    }
    const std::set<std::string> enabled = words(parentControl->second);
    files_[real + "/cgroup.controllers"] = parentControl->second;
    files_[real + "/cgroup.subtree_control"] = "";
    files_[real + "/cgroup.kill"] = "";
    if (enabled.contains("memory")) {
      files_[real + "/memory.current"] = "0\n";
      files_[real + "/memory.max"] = "max\n";
      files_[real + "/memory.events"] = "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n";
    }
    if (enabled.contains("cpu")) files_[real + "/cpu.max"] = "max 100000\n";
    if (enabled.contains("hugetlb")) addHugetlbFiles(real, "max");
    if (enabled.contains("pids")) {
      files_[real + "/pids.current"] = "0\n";
      files_[real + "/pids.max"] = "max\n";
    }
    return {};
  }

  Status removeDirectory(const std::string& path) const override {
    record("rmdir {}", path);
    const std::string real = resolve(path);
    if (!dirs_.contains(real)) return fail(systemError(ENOENT, fmt::format("rmdir(\"{}\")", path)));
    bool busy =
        !words(files_[real + "/cgroup.procs"]).empty() ||
        std::any_of(dirs_.begin(), dirs_.end(), [&](const std::string& d) { return parentOf(d) == real; });
    if (busy)
      return fail(Error(ErrorKind::Conflict, fmt::format("rmdir(\"{}\"): cgroup still has processes", path),
                        {}, EBUSY));
    dirs_.erase(real);
    std::erase_if(files_, [&](const auto& f) { return parentOf(f.first) == real; });
    return {};
  }

  std::vector<std::string> list(const std::string& dir) const override {
    record("list {}", dir);
    const std::string real = resolve(dir);
    std::set<std::string> names;
    auto add = [&](const std::string& path) {
      if (parentOf(path) == real) names.insert(path.substr(real.size() + 1));
    };
    for (const std::string& d : dirs_) add(d);
    for (const auto& [f, text] : files_) add(f);
    for (const auto& [l, target] : links_) add(l);
    return {names.begin(), names.end()};
  }

  std::optional<std::string> realPath(const std::string& path) const override {
    record("realPath {}", path);
    const std::string real = resolve(path);
    if (!dirs_.contains(real) && !files_.contains(real)) return std::nullopt;
    return real;
  }

  // A real descriptor (of /dev/null) stands for the group's: the runtime only passes it on.
  Result<UniqueFd> openDirectory(const std::string& path) const override {
    record("openDirectory {}", path);
    if (!dirs_.contains(resolve(path)))
      return fail(systemError(ENOENT, fmt::format("open(\"{}\", O_DIRECTORY)", path)));
    return UniqueFd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  }

  Result<UniqueFd> openForWriting(const std::string& path) const override {
    record("openForWriting {}", path);
    if (!files_.contains(resolve(path)))
      return fail(systemError(ENOENT, fmt::format("open(\"{}\", O_WRONLY)", path)));
    return UniqueFd(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  }

  // A real descriptor (of /dev/null) stands for the file's; readOpen() answers with the file's text as it
  // is at that moment (what a pread at offset 0 of a kernel control file gives). openFiles() counts them.
  Result<UniqueFd> openForReading(const std::string& path) const override {
    record("openForReading {}", path);
    if (!files_.contains(resolve(path)))
      return fail(systemError(ENOENT, fmt::format("open(\"{}\", O_RDONLY)", path)));
    UniqueFd fd(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    opened_[fd.get()] = path;
    return fd;
  }

  Result<std::string_view> readOpen(const UniqueFd& fd, const std::string& path,
                                    std::span<char> buffer) const override {
    record("readOpen {}", path);
    auto it = opened_.find(fd.get());
    if (it == opened_.end() || it->second != path)
      return fail(systemError(EBADF, fmt::format("pread(\"{}\", 0): not opened by openForReading", path)));
    auto text = file(path);
    if (!text) return fail(systemError(ENODEV, fmt::format("pread(\"{}\", 0)", path)));  // removed meanwhile
    if (text->size() >= buffer.size())
      return fail(internalError("pread(\"{}\", 0): more than {} bytes", path, buffer.size()));
    std::copy(text->begin(), text->end(), buffer.begin());
    return std::string_view(buffer.data(), text->size());
  }

  Status attachDeviceProgram(const std::string& dir, const std::vector<DeviceRule>& rules) const override {
    std::vector<std::string> lines;
    for (const DeviceRule& rule : rules) lines.push_back(deviceRuleLine(rule));
    record("attachDeviceProgram {} [{}]", dir, fmt::join(lines, ", "));
    if (!dirs_.contains(resolve(dir)))
      return fail(systemError(ENOENT, fmt::format("open(\"{}\", O_DIRECTORY)", dir)));
    return {};
  }

 private:
  void addHugetlbFiles(const std::string& dir, const std::string& suffix) const {
    for (const std::string& size : hugepageSizes) {
      files_[fmt::format("{}/hugetlb.{}.{}", dir, size, suffix)] =
          suffix == "max" ? "max\n" : "9223372036854771712\n";
      if (hugetlbReservations)
        files_[fmt::format("{}/hugetlb.{}.rsvd.{}", dir, size, suffix)] =
            suffix == "max" ? "max\n" : "9223372036854771712\n";
    }
  }

  static std::string parentOf(const std::string& path) {
    size_t slash = path.rfind('/');
    return slash == 0 || slash == std::string::npos ? std::string("/") : path.substr(0, slash);
  }
  static std::set<std::string> words(const std::string& text) {
    std::set<std::string> result;
    std::istringstream in(text);
    for (std::string word; in >> word;) result.insert(word);
    return result;
  }
  // One level of symlinks, as /sys/fs/cgroup/cpu -> cpu,cpuacct.
  std::string resolve(const std::string& path) const {
    for (const auto& [link, target] : links_) {
      if (path == link) return target;
      if (path.starts_with(link + "/")) return target + path.substr(link.size());
    }
    return path;
  }
  template <class... Args>
  void record(fmt::format_string<Args...> format, Args&&... args) const {
    calls_.push_back(fmt::format(format, std::forward<Args>(args)...));
  }

  mutable std::set<std::string> dirs_;
  mutable std::map<std::string, std::string> files_;
  std::map<std::string, std::string> links_;  // path -> absolute target
  mutable std::vector<std::string> calls_;
  mutable std::map<int, std::string> opened_;  // openForReading's descriptors (a reused number is replaced)
};

}  // namespace corral::container::testing
