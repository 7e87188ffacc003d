// Under CORRAL_REQUIRE_PRIVILEGED (CI) a skipped test is a failed test, unless it skipped through
// CORRAL_REQUIRE_HOST (host_needs.h): a declared need checked against what the host has. CI never passes
// by skipping. Header-only: the guard installs itself in every test binary that includes it.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <string>

namespace corral::testing {

// The current test's checked skip: it may skip even under CORRAL_REQUIRE_PRIVILEGED, for `reason`.
inline std::map<std::string, std::string>& declaredSkips() {
  static std::map<std::string, std::string> skips;
  return skips;
}
inline std::string currentTestName() {
  const ::testing::TestInfo* info = ::testing::UnitTest::GetInstance()->current_test_info();
  return info == nullptr ? std::string() : std::string(info->test_suite_name()) + "." + info->name();
}
inline void declareCheckedSkip(const std::string& reason) {
  declaredSkips()[currentTestName()] = reason;
}

// Whether a skipped test counts as failed: under CORRAL_REQUIRE_PRIVILEGED, unless its skip was declared
// and checked.
inline bool skipIsFailure(bool requirePrivileged, bool declared) {
  return requirePrivileged && !declared;
}

class SkipGuard : public ::testing::EmptyTestEventListener {
 public:
  // Runs while the test is still current, so the failure is the test's own.
  void OnTestEnd(const ::testing::TestInfo& info) override {
    const ::testing::TestResult* result = info.result();
    if (result == nullptr || !result->Skipped()) return;
    const bool declared = declaredSkips().contains(currentTestName());
    if (!skipIsFailure(std::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr, declared)) return;
    std::string why;
    for (int i = 0; i < result->total_part_count(); ++i)
      if (result->GetTestPartResult(i).skipped()) why = result->GetTestPartResult(i).message();
    ADD_FAILURE() << "skipped under CORRAL_REQUIRE_PRIVILEGED (" << why
                  << "): only a need declared with CORRAL_REQUIRE_HOST and missing on this host may skip";
  }
};

// Appended after the result printer: gtest calls OnTestEnd in reverse order, so the guard's failure is in
// before the printer reports the test (as failed, never "[  SKIPPED ]", which ctest would count as a skip).
inline bool installSkipGuard() {
  ::testing::UnitTest::GetInstance()->listeners().Append(new SkipGuard);
  return true;
}
inline const bool kSkipGuardInstalled = installSkipGuard();

}  // namespace corral::testing
