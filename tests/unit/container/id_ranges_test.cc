// The user namespace id pool: /etc/subuid parsing, choosing the pool, and the range allocator.
#include "container/id_ranges.h"

#include <gtest/gtest.h>

#include <set>

namespace corral::container {
namespace {

std::string errorOf(const Result<std::vector<SubordinateEntry>>& parsed) {
  return parsed ? std::string("(parsed)") : parsed.error().message();
}

TEST(SubordinateIds, ParsesEntriesSkippingBlankAndCommentLines) {
  auto entries = parseSubordinateIds("alice:100000:65536\n\n# a comment\ncorral:1879048192:131072\n1001:5:6",
                                     "/etc/subuid");
  ASSERT_TRUE(entries) << entries.error().message();
  ASSERT_EQ(entries->size(), 3u);
  EXPECT_EQ((*entries)[0].owner, "alice");
  EXPECT_EQ((*entries)[0].range, (IdRange{100000, 65536}));
  EXPECT_EQ((*entries)[0].line, 1);
  EXPECT_EQ((*entries)[1].owner, "corral");
  EXPECT_EQ((*entries)[1].range, (IdRange{1879048192, 131072}));
  EXPECT_EQ((*entries)[1].line, 4);
  EXPECT_EQ((*entries)[2].owner, "1001");
  EXPECT_EQ((*entries)[2].line, 5);
}

// Each bad line is named by file and line, and no line's text (another user's entry, say) is echoed.
TEST(SubordinateIds, BadLinesNameFileAndLineWithoutQuotingAnyLine) {
  struct Case {
    std::string badLine, reason;
  };
  const Case cases[] = {
      {"secretuser", "not OWNER:START:COUNT"},
      {"secretuser:1:2:3", "not OWNER:START:COUNT"},
      {":100000:65536", "the owner is empty"},
      {"secretuser:abc:65536", "START is not a decimal number"},
      {"secretuser:-5:65536", "START is not a decimal number"},
      {"secretuser: 100000:65536", "START is not a decimal number"},
      {"secretuser:100000:", "COUNT is not a decimal number"},
      {"secretuser:100000:0x10", "COUNT is not a decimal number"},
      {"secretuser:100000:0", "COUNT is 0"},
      {"secretuser:4294967295:1", "the range does not fit below id 4294967295"},
      {"secretuser:99999999999:1", "START is not a decimal number"},
  };
  for (const Case& c : cases) {
    std::string text = "alice:100000:65536\n" + c.badLine + "\nbob:165536:65536\n";
    auto parsed = parseSubordinateIds(text, "/etc/subuid");
    ASSERT_FALSE(parsed) << c.badLine;
    EXPECT_EQ(parsed.error().message(), "/etc/subuid:2: " + c.reason) << c.badLine;
    EXPECT_EQ(parsed.error().field(), "user_namespace");
    for (std::string_view content : {"secretuser", "alice", "bob", "100000", "165536"})
      EXPECT_EQ(errorOf(parsed).find(content), std::string::npos) << content << " in " << errorOf(parsed);
  }
}

std::vector<SubordinateEntry> entries(std::string_view text, std::string_view file) {
  auto parsed = parseSubordinateIds(text, file);
  EXPECT_TRUE(parsed) << parsed.error().message();
  return parsed ? *parsed : std::vector<SubordinateEntry>{};
}

std::string poolError(std::string_view subuid, std::string_view subgid) {
  auto pool = chooseIdPool(entries(subuid, "/etc/subuid"), entries(subgid, "/etc/subgid"), "/etc/subuid",
                           "/etc/subgid");
  return pool ? std::string("(chosen)") : pool.error().message();
}

TEST(IdPool, WithoutACorralEntryTheDefaultPoolIsUsed) {
  auto pool = chooseIdPool(entries("alice:100000:65536\n", "u"), {}, "u", "g");
  ASSERT_TRUE(pool) << pool.error().message();
  EXPECT_EQ(*pool, kDefaultIdPool);
  EXPECT_EQ(kDefaultIdPool.start, 0x70000000u);
  EXPECT_EQ(kDefaultIdPool.end(), 0x7FFE0000u) << "ends where systemd's foreign range begins";
  EXPECT_EQ(kDefaultIdPool.count / kIdsPerContainer, 4094u);
}

TEST(IdPool, TheCorralEntryOfBothFilesIsThePool) {
  const char* text = "alice:100000:65536\ncorral:300000:196608\n";
  auto pool = chooseIdPool(entries(text, "u"), entries(text, "g"), "u", "g");
  ASSERT_TRUE(pool) << pool.error().message();
  EXPECT_EQ(*pool, (IdRange{300000, 196608}));
}

TEST(IdPool, UnusableCorralEntriesAreRefusedNamingFileAndLine) {
  EXPECT_EQ(poolError("corral:300000:65536\n", ""),
            "/etc/subuid:1: a corral entry, but /etc/subgid has none (both are needed)");
  EXPECT_EQ(poolError("", "x:1:1\ncorral:300000:65536\n"),
            "/etc/subgid:2: a corral entry, but /etc/subuid has none (both are needed)");
  EXPECT_EQ(
      poolError("corral:300000:65536\n", "corral:400000:65536\n"),
      "/etc/subgid:1: the corral range differs from /etc/subuid:1 (uids and gids are mapped alike: give "
      "both the same START:COUNT)");
  EXPECT_EQ(poolError("corral:300000:65536\ncorral:500000:65536\n", "corral:300000:65536\n"),
            "/etc/subuid:2: a second corral entry (the first is on line 1)");
  EXPECT_EQ(poolError("corral:300000:1000\n", "corral:300000:1000\n"),
            "/etc/subuid:1: the corral range has 1000 ids, fewer than one container's 65536");
  EXPECT_EQ(poolError("corral:0:1000000\n", "corral:0:1000000\n"),
            "/etc/subuid:1: the corral range starts at 0, among the host's own ids (below 65536)");
  EXPECT_EQ(poolError("alice:100000:65536\ncorral:150000:65536\n", "corral:150000:65536\n"),
            "/etc/subuid:2: the corral range overlaps /etc/subuid:1 (another owner's range)");
  EXPECT_EQ(poolError("mallory:1879048192:10\n", ""),
            "the default pool 1879048192-2147352575 overlaps /etc/subuid:1 (another owner's range)");
}

TEST(IdRangeAllocator, HandsOutDisjointRangesLowestFirstAndReusesFreedOnes) {
  IdRangeAllocator allocator(IdRange{1000000, 3 * kIdsPerContainer});
  auto a = allocator.allocate();
  auto b = allocator.allocate();
  auto c = allocator.allocate();
  ASSERT_TRUE(a && b && c);
  EXPECT_EQ(a->hostId, 1000000u);
  EXPECT_EQ(b->hostId, 1000000u + kIdsPerContainer);
  EXPECT_EQ(c->hostId, 1000000u + 2 * kIdsPerContainer);
  for (const auto* range : {&*a, &*b, &*c}) EXPECT_EQ(range->count, kIdsPerContainer);

  auto exhausted = allocator.allocate();
  ASSERT_FALSE(exhausted);
  EXPECT_EQ(exhausted.error().kind(), ErrorKind::Conflict);
  EXPECT_EQ(
      exhausted.error().message(),
      "user namespace: no free id range: all 3 ranges of 65536 ids in the pool 1000000-1196607 are in use "
      "(remove a container with a user namespace, or give corral a larger range in /etc/subuid and "
      "/etc/subgid)");

  allocator.release(b->hostId);
  auto again = allocator.allocate();
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->hostId, b->hostId) << "a freed range is given out again";
  EXPECT_EQ(allocator.inUse(), 3u);
}

TEST(IdRangeAllocator, ReservedRangesFromTheStoreAreNeverGivenOutAgain) {
  IdRangeAllocator allocator(IdRange{1000000, 4 * kIdsPerContainer});
  ASSERT_TRUE(allocator.reserve(1000000 + kIdsPerContainer));
  // A range stored under an older pool, straddling two of today's slots: both are skipped.
  ASSERT_TRUE(allocator.reserve(1000000 + 2 * kIdsPerContainer + 100));
  auto overlapping = allocator.reserve(1000000 + kIdsPerContainer + 65535);
  ASSERT_FALSE(overlapping);
  EXPECT_EQ(overlapping.error().kind(), ErrorKind::Conflict);
  EXPECT_FALSE(allocator.reserve(0)) << "never a range over the host's own ids";

  std::set<uint32_t> given;
  for (;;) {
    auto range = allocator.allocate();
    if (!range) break;
    given.insert(range->hostId);
  }
  EXPECT_EQ(given, (std::set<uint32_t>{1000000}));
}

TEST(IdRangeAllocator, ManyRangesNeverOverlap) {
  IdRangeAllocator allocator(kDefaultIdPool);
  std::vector<uint32_t> starts;
  for (int i = 0; i < 4094; ++i) {
    auto range = allocator.allocate();
    ASSERT_TRUE(range) << i << ": " << range.error().message();
    starts.push_back(range->hostId);
  }
  EXPECT_FALSE(allocator.allocate());
  for (size_t i = 1; i < starts.size(); ++i) EXPECT_GE(starts[i], starts[i - 1] + kIdsPerContainer);
  EXPECT_LE(uint64_t{starts.back()} + kIdsPerContainer, kDefaultIdPool.end());
}

}  // namespace
}  // namespace corral::container
