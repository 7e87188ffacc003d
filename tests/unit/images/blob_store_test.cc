// The blob store: nothing appears under a digest unless it is whole and verified.
#include "images/oci/blob_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

namespace corral::images {
namespace {

namespace fs = std::filesystem;

class BlobStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = fs::path(::testing::TempDir()) / fmt::format("blob-store-{}", ::getpid());
    fs::remove_all(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  size_t filesIn(const fs::path& dir) {
    size_t count = 0;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) count += entry.is_regular_file();
    return count;
  }

  fs::path root_;
};

TEST_F(BlobStoreTest, StoresVerifiedBlobsUnderTheirDigest) {
  auto store = BlobStore::open(root_);
  ASSERT_TRUE(store) << store.error().message();
  Digest expected = digestOf("hello, layer");
  auto writer = store->begin(expected, 12);
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->write("hello, "));
  ASSERT_TRUE(writer->write("layer"));
  EXPECT_FALSE(store->contains(expected)) << "visible before commit";
  auto committed = writer->commit();
  ASSERT_TRUE(committed) << committed.error().message();
  EXPECT_EQ(*committed, expected);
  EXPECT_TRUE(store->contains(expected));
  EXPECT_EQ(store->pathOf(expected), root_ / "blobs/sha256" / expected.hex);
  auto read = store->read(expected);
  ASSERT_TRUE(read);
  EXPECT_EQ(*read, "hello, layer");
  EXPECT_EQ(filesIn(root_ / "ingest"), 0u);
}

TEST_F(BlobStoreTest, ADigestMismatchStoresNothingAndNamesBothDigests) {
  auto store = BlobStore::open(root_);
  ASSERT_TRUE(store);
  Digest promised = digestOf("the real layer");
  auto writer = store->begin(promised, 14);
  ASSERT_TRUE(writer);
  ASSERT_TRUE(writer->write("a fake layer!!"));
  auto committed = writer->commit();
  ASSERT_FALSE(committed);
  EXPECT_EQ(committed.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(committed.error().field(), "digest");
  EXPECT_NE(committed.error().message().find(promised.text()), std::string::npos)
      << committed.error().message();
  EXPECT_NE(committed.error().message().find(digestOf("a fake layer!!").text()), std::string::npos);
  EXPECT_FALSE(store->contains(promised));
  EXPECT_FALSE(store->contains(digestOf("a fake layer!!")));
  EXPECT_EQ(filesIn(root_), 0u);
}

TEST_F(BlobStoreTest, RefusesMoreBytesThanPromisedAtOnceAndFewerAtCommit) {
  auto store = BlobStore::open(root_);
  ASSERT_TRUE(store);
  auto longer = store->begin(digestOf("abc"), 3);
  ASSERT_TRUE(longer);
  auto written = longer->write("abcd");
  ASSERT_FALSE(written);
  EXPECT_EQ(written.error().field(), "size");
  EXPECT_FALSE(longer->commit());

  auto shorter = store->begin(digestOf("abc"), 3);
  ASSERT_TRUE(shorter);
  ASSERT_TRUE(shorter->write("ab"));
  auto committed = shorter->commit();
  ASSERT_FALSE(committed);
  EXPECT_NE(committed.error().message().find("2 bytes arrived, its descriptor gives 3"), std::string::npos)
      << committed.error().message();
  EXPECT_EQ(filesIn(root_), 0u);
}

TEST_F(BlobStoreTest, AnAbandonedWriteLeavesNothing) {
  auto store = BlobStore::open(root_);
  ASSERT_TRUE(store);
  {
    auto writer = store->begin(digestOf("abc"), 3);
    ASSERT_TRUE(writer);
    ASSERT_TRUE(writer->write("ab"));
  }
  EXPECT_EQ(filesIn(root_), 0u);
}

TEST_F(BlobStoreTest, OpenClearsWhatACrashLeftInIngest) {
  ASSERT_TRUE(BlobStore::open(root_));
  std::ofstream(root_ / "ingest" / "12345-0-1") << "half a blob";
  auto reopened = BlobStore::open(root_);
  ASSERT_TRUE(reopened);
  EXPECT_EQ(filesIn(root_), 0u);
}

TEST_F(BlobStoreTest, PutListReadAndRemove) {
  auto store = BlobStore::open(root_);
  ASSERT_TRUE(store);
  auto a = store->put("{\"a\":1}");
  auto b = store->put("{\"b\":2}");
  ASSERT_TRUE(a && b);
  auto again = store->put("{\"a\":1}");
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, *a);
  auto listed = store->list();
  ASSERT_TRUE(listed);
  std::vector<Digest> want{*a, *b};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*listed, want);
  ASSERT_TRUE(store->remove(*a));
  ASSERT_TRUE(store->remove(*a)) << "removing twice is fine";
  EXPECT_FALSE(store->contains(*a));
  auto gone = store->read(*a);
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().kind(), ErrorKind::NotFound);
}

TEST_F(BlobStoreTest, ReadNoticesABlobChangedOnDisk) {
  auto store = BlobStore::open(root_);
  ASSERT_TRUE(store);
  auto digest = store->put("original");
  ASSERT_TRUE(digest);
  std::ofstream(store->pathOf(*digest)) << "tampered";
  auto read = store->read(*digest);
  ASSERT_FALSE(read);
  EXPECT_NE(read.error().message().find("no longer matches"), std::string::npos);
}

}  // namespace
}  // namespace corral::images
