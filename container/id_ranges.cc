// The user namespace id pool (parsed from /etc/subuid and /etc/subgid, or the default) and its allocator.
#include "container/id_ranges.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <optional>
#include <tuple>

#include "core/unique_fd.h"

namespace corral::container {
namespace {

constexpr uint64_t kIdSpaceEnd = 0xFFFFFFFF;  // (uid_t)-1 is no id: a range ends at or before it

std::optional<uint64_t> decimal(std::string_view text) {
  uint64_t value = 0;
  if (text.empty() || text.size() > 10) return std::nullopt;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size()) return std::nullopt;
  return value;
}

bool overlap(const IdRange& a, const IdRange& b) {
  return a.start < b.end() && b.start < a.end();
}

// The corral entry, or null when there is none.
Result<const SubordinateEntry*> findCorral(const std::vector<SubordinateEntry>& entries,
                                           std::string_view file) {
  const SubordinateEntry* found = nullptr;
  for (const auto& entry : entries) {
    if (entry.owner != "corral") continue;
    if (found) {
      return fail(invalidField("user_namespace", "{}:{}: a second corral entry (the first is on line {})",
                               file, entry.line, found->line));
    }
    found = &entry;
  }
  return found;
}

// A missing file reads as empty: a host without /etc/subgid simply has no entries.
Result<std::string> readWholeFile(const std::filesystem::path& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd && errno == ENOENT) return std::string();
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path.string())));
  std::string text;
  char buffer[8192];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, fmt::format("read(\"{}\")", path.string())));
    if (n == 0) return text;
    text.append(buffer, static_cast<size_t>(n));
  }
}

}  // namespace

Result<std::vector<SubordinateEntry>> parseSubordinateIds(std::string_view text, std::string_view file) {
  std::vector<SubordinateEntry> entries;
  int number = 0;
  while (!text.empty()) {
    size_t newline = text.find('\n');
    std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    ++number;
    if (line.empty() || line.front() == '#') continue;
    auto bad = [&](std::string_view why) {
      return fail(invalidField("user_namespace", "{}:{}: {}", file, number, why));
    };
    size_t first = line.find(':');
    size_t second = first == std::string_view::npos ? first : line.find(':', first + 1);
    if (second == std::string_view::npos || line.find(':', second + 1) != std::string_view::npos)
      return bad("not OWNER:START:COUNT");
    std::string_view owner = line.substr(0, first);
    if (owner.empty()) return bad("the owner is empty");
    auto start = decimal(line.substr(first + 1, second - first - 1));
    if (!start) return bad("START is not a decimal number");
    auto count = decimal(line.substr(second + 1));
    if (!count) return bad("COUNT is not a decimal number");
    if (*count == 0) return bad("COUNT is 0");
    if (*start + *count > kIdSpaceEnd) return bad("the range does not fit below id 4294967295");
    entries.push_back(SubordinateEntry{
        std::string(owner), IdRange{static_cast<uint32_t>(*start), static_cast<uint32_t>(*count)}, number});
  }
  return entries;
}

Result<IdRange> chooseIdPool(const std::vector<SubordinateEntry>& subuid,
                             const std::vector<SubordinateEntry>& subgid, std::string_view subuidFile,
                             std::string_view subgidFile) {
  auto uidFound = findCorral(subuid, subuidFile);
  if (!uidFound) return fail(uidFound.error());
  auto gidFound = findCorral(subgid, subgidFile);
  if (!gidFound) return fail(gidFound.error());
  const SubordinateEntry* uidEntry = *uidFound;
  const SubordinateEntry* gidEntry = *gidFound;
  if (static_cast<bool>(uidEntry) != static_cast<bool>(gidEntry)) {
    const SubordinateEntry* present = uidEntry ? uidEntry : gidEntry;
    return fail(invalidField("user_namespace", "{}:{}: a corral entry, but {} has none (both are needed)",
                             uidEntry ? subuidFile : subgidFile, present->line,
                             uidEntry ? subgidFile : subuidFile));
  }
  if (uidEntry && uidEntry->range != gidEntry->range) {
    return fail(invalidField("user_namespace",
                             "{}:{}: the corral range differs from {}:{} (uids and gids are "
                             "mapped alike: give both the same START:COUNT)",
                             subgidFile, gidEntry->line, subuidFile, uidEntry->line));
  }
  IdRange pool = uidEntry ? uidEntry->range : kDefaultIdPool;
  auto where = [&](const SubordinateEntry* entry, std::string_view file) {
    return entry ? fmt::format("{}:{}: the corral range", file, entry->line)
                 : fmt::format("the default pool {}-{}", pool.start, pool.end() - 1);
  };
  if (pool.count < kIdsPerContainer) {
    return fail(invalidField("user_namespace", "{} has {} ids, fewer than one container's {}",
                             where(uidEntry, subuidFile), pool.count, kIdsPerContainer));
  }
  if (pool.start < kIdsPerContainer) {
    return fail(invalidField("user_namespace", "{} starts at {}, among the host's own ids (below {})",
                             where(uidEntry, subuidFile), pool.start, kIdsPerContainer));
  }
  for (const auto& [entries, file, own] :
       {std::tuple{&subuid, subuidFile, uidEntry}, std::tuple{&subgid, subgidFile, gidEntry}}) {
    for (const auto& entry : *entries) {
      if (&entry == own || !overlap(entry.range, pool)) continue;
      return fail(invalidField("user_namespace", "{} overlaps {}:{} (another owner's range)",
                               where(own, file), file, entry.line));
    }
  }
  return pool;
}

Result<IdRange> readIdPool(const std::filesystem::path& subuidFile, const std::filesystem::path& subgidFile) {
  std::vector<SubordinateEntry> parsed[2];
  const std::filesystem::path* files[2] = {&subuidFile, &subgidFile};
  for (int i = 0; i < 2; ++i) {
    auto text = readWholeFile(*files[i]);
    if (!text) return fail(text.error());
    auto entries = parseSubordinateIds(*text, files[i]->string());
    if (!entries) return fail(entries.error());
    parsed[i] = std::move(*entries);
  }
  return chooseIdPool(parsed[0], parsed[1], subuidFile.string(), subgidFile.string());
}

bool IdRangeAllocator::overlapsTaken(uint64_t start) const {
  // Every taken range is kIdsPerContainer wide: one overlaps [start, start + width) iff it starts within
  // width - 1 below start or anywhere before its end.
  auto it = taken_.lower_bound(start >= kIdsPerContainer - 1 ? start - (kIdsPerContainer - 1) : 0);
  return it != taken_.end() && *it < start + kIdsPerContainer;
}

Result<IdMapRange> IdRangeAllocator::allocate() {
  for (uint64_t start = pool_.start; start + kIdsPerContainer <= pool_.end(); start += kIdsPerContainer) {
    if (overlapsTaken(start)) continue;
    taken_.insert(start);
    return IdMapRange{.containerId = 0, .hostId = static_cast<uint32_t>(start), .count = kIdsPerContainer};
  }
  return fail(
      conflict("user namespace: no free id range: all {} ranges of {} ids in the pool {}-{} are in use "
               "(remove a container with a user namespace, or give corral a larger range in "
               "/etc/subuid and /etc/subgid)",
               pool_.count / kIdsPerContainer, kIdsPerContainer, pool_.start, pool_.end() - 1));
}

Status IdRangeAllocator::reserve(uint32_t start) {
  if (uint64_t{start} + kIdsPerContainer > kIdSpaceEnd || start < kIdsPerContainer)
    return fail(invalidField("user_namespace", "range {}+{} is outside the usable id space", start,
                             kIdsPerContainer));
  if (overlapsTaken(start))
    return fail(conflict("user namespace: range {}+{} overlaps a range in use", start, kIdsPerContainer));
  taken_.insert(start);
  return {};
}

void IdRangeAllocator::release(uint32_t start) {
  taken_.erase(start);
}

}  // namespace corral::container
