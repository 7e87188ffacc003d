// Checks inside libFuzzer targets: a broken property prints what broke and aborts, which libFuzzer
// reports as a crash and saves the input that caused it.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

// A property of the code under test; `detail` (a std::string) says what was seen.
#define FUZZ_REQUIRE(condition, detail)                                                            \
  do {                                                                                             \
    if (!(condition)) {                                                                            \
      std::fprintf(stderr, "%s:%d: FUZZ_REQUIRE(%s) failed: %s\n", __FILE__, __LINE__, #condition, \
                   std::string(detail).c_str());                                                   \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)

// A target's own setup step (a Result) that must succeed.
#define FUZZ_CHECK(result)                                                        \
  do {                                                                            \
    auto fuzzCheckResult = (result);                                              \
    FUZZ_REQUIRE(fuzzCheckResult.has_value(), fuzzCheckResult.error().message()); \
  } while (0)
