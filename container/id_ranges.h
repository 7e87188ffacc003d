// Host id ranges for containers with a user namespace: the pool they come from (a `corral` entry in
// /etc/subuid and /etc/subgid, or the default pool) and the allocator handing out one range per container.
#pragma once

#include <cstdint>
#include <filesystem>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "container/runtime.h"
#include "core/error.h"

namespace corral::container {

// Each container maps ids 0..65535 (root, the image's users, nobody) onto a range of its own.
inline constexpr uint32_t kIdsPerContainer = 65536;

struct IdRange {
  uint32_t start = 0;
  uint32_t count = 0;
  uint64_t end() const { return uint64_t{start} + count; }  // one past the last id
  bool operator==(const IdRange&) const = default;
};

// Without a `corral` entry: 0x70000000 up to 0x7FFE0000, room for 4094 containers. It lies above what
// useradd hands out to users in /etc/subuid (SUB_UID_MAX 600100000), above systemd's container range
// (0x00080000-0x6FFFFFFF, used by nspawn and homed) and below systemd's foreign range (0x7FFE0000-0x7FFEFFFF)
// and the upper half of the id space, which some tools still read as negative (systemd's UIDS-GIDS.md).
inline constexpr IdRange kDefaultIdPool{0x70000000, 0x7FFE0000 - 0x70000000};

// One line of /etc/subuid or /etc/subgid: "OWNER:START:COUNT" (OWNER is a user name or a uid).
struct SubordinateEntry {
  std::string owner;
  IdRange range;
  int line = 0;  // 1-based
};

// Parses the text of `file` (named in errors). Blank lines and lines starting with '#' are skipped. Every
// other line must be OWNER:START:COUNT with decimal START and COUNT, COUNT > 0 and the range inside the
// 32-bit id space; an error names the file and line ("/etc/subuid:3: ...") and never quotes a line's text:
// the file lists other users' ranges.
Result<std::vector<SubordinateEntry>> parseSubordinateIds(std::string_view text, std::string_view file);

// corrald's pool: the `corral` entry when both files have one (the same range in both: uids and gids are
// mapped alike), else kDefaultIdPool. Refused (field "user_namespace", naming the file and line): a corral
// entry in only one file, or two corral entries in a file; a pool smaller than one container's range, or
// reaching below id 65536 (the host's own users and nobody) or to 4294967295 (the invalid id); a pool
// that overlaps another owner's entry in either file.
Result<IdRange> chooseIdPool(const std::vector<SubordinateEntry>& subuid,
                             const std::vector<SubordinateEntry>& subgid, std::string_view subuidFile,
                             std::string_view subgidFile);

// Reads both files (a missing file has no entries) and chooses the pool.
Result<IdRange> readIdPool(const std::filesystem::path& subuidFile, const std::filesystem::path& subgidFile);

// Hands out ranges of kIdsPerContainer ids from a pool, lowest free first, never two overlapping ones.
// Ranges taken before (stored with their instances) are reserved back when the daemon starts.
class IdRangeAllocator {
 public:
  explicit IdRangeAllocator(IdRange pool = kDefaultIdPool) : pool_(pool) {}
  const IdRange& pool() const { return pool_; }
  // Conflict when every range of the pool is in use.
  Result<IdMapRange> allocate();  // "0 START 65536": the line of both maps
  // Marks the range at `start` as in use, even outside the pool (the pool may have changed since it was
  // given); Conflict when it overlaps a range in use.
  Status reserve(uint32_t start);
  void release(uint32_t start);
  size_t inUse() const { return taken_.size(); }

 private:
  bool overlapsTaken(uint64_t start) const;
  IdRange pool_;
  std::set<uint64_t> taken_;  // starts of the ranges in use
};

}  // namespace corral::container
