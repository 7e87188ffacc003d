// Digests: parsing (what may become a file name) and hashing against known values.
#include "images/oci/digest.h"

#include <gtest/gtest.h>

#include <fstream>

namespace corral::images {
namespace {

constexpr std::string_view kAbcSha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(Digest, ParsesAndPrintsSha256) {
  auto digest = parseDigest(fmt::format("sha256:{}", kAbcSha256));
  ASSERT_TRUE(digest) << digest.error().message();
  EXPECT_EQ(digest->algorithm, DigestAlgorithm::sha256);
  EXPECT_EQ(digest->hex, kAbcSha256);
  EXPECT_EQ(digest->text(), fmt::format("sha256:{}", kAbcSha256));
}

TEST(Digest, RefusesWhatCouldNotBeAFileNameWithTheField) {
  for (std::string_view bad : {"", "sha256", "sha256:", "md5:900150983cd24fb0d6963f7d28e17f72",
                               "sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
                               "sha256:ba7816bf", "sha256:../../../../etc/passwd",
                               "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad0"}) {
    auto digest = parseDigest(bad, "layers[0].digest");
    ASSERT_FALSE(digest) << bad;
    EXPECT_EQ(digest.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(digest.error().field(), "layers[0].digest") << bad;
  }
}

TEST(Digest, HashesKnownValues) {
  EXPECT_EQ(digestOf("abc").hex, kAbcSha256);
  EXPECT_EQ(digestOf("abc", DigestAlgorithm::sha512).hex,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd"
            "454d4423643ce80e2a9ac94fa54ca49f");
  Hasher incremental;
  incremental.update("a");
  incremental.update("bc");
  EXPECT_EQ(incremental.finish().hex, kAbcSha256);
}

TEST(Digest, HashesAFile) {
  std::string path = ::testing::TempDir() + "/digest-test-file";
  std::ofstream(path) << "abc";
  auto digest = digestOfFile(path);
  ASSERT_TRUE(digest) << digest.error().message();
  EXPECT_EQ(digest->hex, kAbcSha256);
  auto missing = digestOfFile(path + ".missing");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("digest-test-file.missing"), std::string::npos);
}

}  // namespace
}  // namespace corral::images
