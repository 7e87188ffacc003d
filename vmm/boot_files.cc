#include "vmm/boot_files.h"

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "core/unique_fd.h"

namespace corral::vmm {
namespace {

struct Mapping {
  uintptr_t start = 0, end = 0;
  uint64_t residentBytes = 0;
};

// A mapping's header line of /proc/PID/smaps: "start-end perms offset dev inode   path", the path the rest of
// the line (it may hold spaces; "" for an anonymous mapping). Field lines ("Rss:  4 kB") are not headers.
bool parseHeader(const std::string& line, Mapping& mapping, std::string& path) {
  const size_t firstSpace = line.find(' ');
  if (firstSpace == std::string::npos || line.find('-') > firstSpace) return false;
  unsigned long start = 0, end = 0;
  int pathAt = 0;
  if (std::sscanf(line.c_str(), "%lx-%lx %*s %*s %*s %*s %n", &start, &end, &pathAt) != 2 || pathAt == 0)
    return false;
  mapping.start = start;
  mapping.end = end;
  path = line.substr(static_cast<size_t>(pathAt));
  return end > start;
}

// The mappings of `pid` whose file is one of `paths` (canonical), with their resident bytes.
Result<std::vector<Mapping>> mappingsOf(pid_t pid, const std::vector<std::string>& paths) {
  const std::string smaps = fmt::format("/proc/{}/smaps", pid);
  std::ifstream in(smaps);
  if (!in) return fail(systemError(errno, fmt::format("open {}", smaps)));
  std::vector<Mapping> found;
  bool current = false;
  std::string line, path;
  while (std::getline(in, line)) {
    if (Mapping mapping; parseHeader(line, mapping, path)) {
      constexpr std::string_view kDeleted = " (deleted)";
      if (path.ends_with(kDeleted)) path.resize(path.size() - kDeleted.size());
      current = std::find(paths.begin(), paths.end(), path) != paths.end();
      if (current) found.push_back(mapping);
      continue;
    }
    unsigned long long kib = 0;
    if (current && std::sscanf(line.c_str(), "Rss: %llu kB", &kib) == 1)
      found.back().residentBytes = kib * 1024;
  }
  return found;
}

uint64_t residentBytes(const std::vector<Mapping>& mappings) {
  uint64_t total = 0;
  for (const auto& mapping : mappings) total += mapping.residentBytes;
  return total;
}

}  // namespace

Result<ReleasedFiles> releaseFileMappings(pid_t pid, const std::vector<std::filesystem::path>& files) {
  std::vector<std::string> paths;
  for (const auto& file : files) {
    std::error_code ec;
    auto canonical = std::filesystem::canonical(file, ec);
    paths.push_back(ec ? file.string() : canonical.string());
  }
  // The pidfd first: the mappings read after it are the process's it names, not a reused pid's.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  if (!pidfd) return fail(systemError(errno, fmt::format("pidfd_open({})", pid)));
  auto before = mappingsOf(pid, paths);
  if (!before) return fail(before.error());
  ReleasedFiles released{.mappings = static_cast<int>(before->size()),
                         .residentBefore = residentBytes(*before)};
  if (before->empty()) return released;
  std::vector<iovec> ranges;
  for (const auto& mapping : *before) {
    if (mapping.residentBytes == 0) continue;
    ranges.push_back({reinterpret_cast<void*>(mapping.start), mapping.end - mapping.start});
  }
  // Within UIO_MAXIOV (1024) ranges per call; a VM maps each boot file a few times.
  for (size_t first = 0; first < ranges.size(); first += 1024) {
    const size_t count = std::min<size_t>(1024, ranges.size() - first);
    if (::syscall(SYS_process_madvise, pidfd.get(), ranges.data() + first, count, MADV_PAGEOUT, 0) < 0)
      return fail(systemError(errno, fmt::format("process_madvise({}, MADV_PAGEOUT)", pid)));
  }
  auto after = mappingsOf(pid, paths);
  if (!after) return fail(after.error());
  released.residentAfter = residentBytes(*after);
  return released;
}

}  // namespace corral::vmm
