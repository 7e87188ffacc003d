// Rollback (core/rollback.h): undoes unless dismissed, once, in reverse order, and moves with its undo.
#include "core/rollback.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace corral {
namespace {

TEST(Rollback, UndoesAtScopeEndUnlessDismissed) {
  int undone = 0;
  {
    Rollback guard([&] { ++undone; });
  }
  EXPECT_EQ(undone, 1);
  {
    Rollback guard([&] { ++undone; });
    guard.dismiss();
  }
  EXPECT_EQ(undone, 1);
}

TEST(Rollback, GuardsUndoInReverseOrder) {
  std::vector<std::string> undone;
  {
    Rollback row([&] { undone.push_back("row"); });
    Rollback nic([&] { undone.push_back("nic"); });
    Rollback bundle([&] { undone.push_back("bundle"); });
  }
  EXPECT_EQ(undone, (std::vector<std::string>{"bundle", "nic", "row"}));
}

TEST(Rollback, RunUndoesOnceAndEarly) {
  int undone = 0;
  {
    Rollback guard([&] { ++undone; });
    guard.run();
    EXPECT_EQ(undone, 1);
  }
  EXPECT_EQ(undone, 1);
}

TEST(Rollback, MovedGuardCarriesTheUndoAndTheSourceIsEmpty) {
  int undone = 0;
  {
    Rollback first([&] { ++undone; });
    Rollback second(std::move(first));
    EXPECT_EQ(undone, 0);
  }
  EXPECT_EQ(undone, 1);
  {
    Rollback kept([&] { undone += 10; });
    Rollback dismissedLater([&] { undone += 100; });
    kept = std::move(dismissedLater);  // the overwritten guard's undo runs now
    EXPECT_EQ(undone, 11);
    kept.dismiss();
  }
  EXPECT_EQ(undone, 11);
}

}  // namespace
}  // namespace corral
