// Every file operation the cgroup drivers (cgroup_v1.cc, cgroup_v2.cc) make, behind one interface:
// kernelCgroupFiles() acts on the real cgroup filesystems; unit tests pass a recording fake that simulates
// the kernel's control files (tests/unit/container/fake_cgroup_files.h).
#pragma once

#include <sys/types.h>

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "container/devices.h"
#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::container {

class CgroupFiles {
 public:
  virtual ~CgroupFiles() = default;

  virtual Result<std::string> read(const std::string& path) const = 0;
  // One write(2) of `value`; errors read `write("PATH", "VALUE"): strerror`.
  virtual Status write(const std::string& path, std::string_view value) const = 0;
  virtual bool exists(const std::string& path) const = 0;
  virtual bool isDirectory(const std::string& path) const = 0;
  // mkdir(path, 0755); the error keeps errno (EEXIST for callers to turn into Conflict).
  virtual Status makeDirectory(const std::string& path) const = 0;
  // rmdir(path); EBUSY/ENOTEMPTY become Conflict "cgroup still has processes".
  virtual Status removeDirectory(const std::string& path) const = 0;
  // The names in a directory (no "." or ".."); empty when it cannot be read.
  virtual std::vector<std::string> list(const std::string& dir) const = 0;
  // Symlinks resolved; nullopt when the path does not exist.
  virtual std::optional<std::string> realPath(const std::string& path) const = 0;
  // For a child that joins by itself (CgroupJoin): the group's directory (O_DIRECTORY) and a `tasks` file
  // opened for writing, both O_CLOEXEC.
  virtual Result<UniqueFd> openDirectory(const std::string& path) const = 0;
  virtual Result<UniqueFd> openForWriting(const std::string& path) const = 0;
  // A control file kept open to be read again and again (CgroupUsageFiles), O_RDONLY | O_CLOEXEC.
  virtual Result<UniqueFd> openForReading(const std::string& path) const = 0;
  // The text of a file opened by openForReading, as of now, in `buffer`: one pread(2) at offset 0 (a
  // cgroup control file renders its value afresh for each read from the start). `path` is for messages.
  virtual Result<std::string_view> readOpen(const UniqueFd& fd, const std::string& path,
                                            std::span<char> buffer) const = 0;
  // v2's device policy: a BPF program attached to the group at `dir` (device_bpf.h).
  virtual Status attachDeviceProgram(const std::string& dir, const std::vector<DeviceRule>& rules) const = 0;

  // Parsers over read().
  // The pids listed in a cgroup.procs file.
  Result<std::vector<pid_t>> readPids(const std::string& procsPath) const;
  // A number from a file holding one ("123\n"); "max" is nullopt.
  Result<std::optional<uint64_t>> readNumber(const std::string& path) const;
  // The value of `key` in a flat-keyed file ("oom_kill 3" lines), 0 when the key is absent.
  Result<uint64_t> readKeyed(const std::string& path, std::string_view key) const;
};

// The parsers themselves, over text already read (`path` names the file in errors).
Result<std::optional<uint64_t>> parseNumber(std::string_view text, const std::string& path);
Result<uint64_t> parseKeyed(std::string_view text, std::string_view key, const std::string& path);

// The real cgroup filesystems (one instance for the process).
const CgroupFiles& kernelCgroupFiles();

}  // namespace corral::container
