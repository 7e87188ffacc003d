// Golden files of the vmm tests (tests/unit/vmm/golden/): the domain XML and the direct engine's command
// line. CORRAL_UPDATE_GOLDEN=1 rewrites them from the current output (run from the build directory).
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

namespace corral::vmm {

inline const std::filesystem::path kGoldenDir = std::filesystem::path(__FILE__).parent_path() / "golden";

inline std::string readGoldenFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

inline void expectGolden(const std::string& text, const std::string& name) {
  const auto path = kGoldenDir / name;
  if (std::getenv("CORRAL_UPDATE_GOLDEN")) std::ofstream(path) << text;
  ASSERT_TRUE(std::filesystem::exists(path)) << path;
  EXPECT_EQ(text, readGoldenFile(path)) << "golden file " << path;
}

}  // namespace corral::vmm
