// Error values: kinds, context chains and field paths.
#include "core/error.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>

#include "core/unique_fd.h"

namespace corral {
namespace {

TEST(Error, WrapPrependsContextAndKeepsKindErrnoAndField) {
  Error inner = systemError(EACCES, "mkdir(\"/sys/fs/cgroup/memory/corral/web-1\")");
  Error outer = inner.wrap("cgroup").wrap("create container web-1");
  EXPECT_EQ(
      outer.message(),
      "create container web-1: cgroup: mkdir(\"/sys/fs/cgroup/memory/corral/web-1\"): Permission denied");
  EXPECT_EQ(outer.kind(), ErrorKind::Internal);
  EXPECT_EQ(outer.errnum(), EACCES);
  EXPECT_EQ(inner.message(), "mkdir(\"/sys/fs/cgroup/memory/corral/web-1\"): Permission denied");
}

TEST(Error, InFieldBuildsADottedPath) {
  Error e = invalidField("cidr", "\"{}\" is not a CIDR block", "banana");
  EXPECT_EQ(e.kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(e.message(), "\"banana\" is not a CIDR block");
  Error nested = std::move(e).inField("rules[2]");
  EXPECT_EQ(nested.field(), "rules[2].cidr");
  Error bare = std::move(Error(ErrorKind::InvalidArgument, "empty")).inField("body");
  EXPECT_EQ(bare.field(), "body");
}

TEST(Error, KindNamesAreStable) {
  EXPECT_EQ(errorKindName(ErrorKind::InvalidArgument), "invalid_argument");
  EXPECT_EQ(errorKindName(ErrorKind::NotFound), "not_found");
  EXPECT_EQ(errorKindName(ErrorKind::Conflict), "conflict");
  EXPECT_EQ(errorKindName(ErrorKind::Unavailable), "unavailable");
  EXPECT_EQ(errorKindName(ErrorKind::Forbidden), "forbidden");
  EXPECT_EQ(errorKindName(ErrorKind::Internal), "internal");
}

TEST(UniqueFd, ClosesOnDestructionAndMoves) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  int readEnd = fds[0];
  {
    UniqueFd a(fds[0]);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), readEnd);
  }
  EXPECT_EQ(::fcntl(readEnd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);
  ::close(fds[1]);
}

}  // namespace
}  // namespace corral
