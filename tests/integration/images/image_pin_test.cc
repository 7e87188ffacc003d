// Pins (ImageStore::pin): an instance's hold on the manifest it runs keeps that manifest's blobs and layers
// through removal of the name, a pull that moves the name, and a reopened store; unpin lets them go; a
// damaged pin stops collection instead of deleting; a pin a crash left half written is cleared.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "images/oci/image_store.h"
#include "tests/integration/images/layout_builder.h"
#include "tests/integration/images/root_fixture.h"
#include "tests/integration/images/tar_builder.h"

namespace corral::images {
namespace {

namespace fs = std::filesystem;
using fixtures::LayoutBuilder;
using fixtures::TarBuilder;

class ImagePinTest : public fixtures::ImagesRootTest {
 protected:
  // An OCI layout with "v1" and "v2": one layer each, different contents.
  void SetUp() override {
    ImagesRootTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    LayoutBuilder layout(work_ / "layout");
    std::vector<std::pair<std::string, Descriptor>> made;
    for (const char* tag : {"v1", "v2"}) {
      TarBuilder layer;
      layer.file("version", tag);
      ImageConfig config;
      config.platform = {"linux", "amd64", ""};
      config.cmd = {"/bin/true"};
      made.push_back({tag, layout.image({&layer}, config)});
    }
    for (const auto& [tag, descriptor] : made) layout.name(tag, descriptor);  // name() ends the blob writing
  }
  Image import(ImageStore& store, const std::string& ref, const std::string& name) {
    auto image = store.importLayout(work_ / "layout", ref, name);
    EXPECT_TRUE(image.has_value()) << image.error().message();
    return image.value_or(Image{});
  }
};

TEST_F(ImagePinTest, APinKeepsTheManifestWhateverBecomesOfTheName) {
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store.has_value()) << store.error().message();
  Image v1 = import(*store, "v1", "app");
  auto pinned = store->pin("web", "app");
  ASSERT_TRUE(pinned.has_value()) << pinned.error().message();
  EXPECT_EQ(pinned->manifestDigest, v1.manifestDigest);

  // The name moves to v2: the pin still means v1, and v1's layer stays.
  Image v2 = import(*store, "v2", "app");
  ASSERT_NE(v2.manifestDigest, v1.manifestDigest);
  EXPECT_TRUE(fs::exists(v1.layerDirs[0])) << "v1's layer was collected under a pin";
  EXPECT_EQ(store->pinned("web")->manifestDigest, v1.manifestDigest);
  // pin() again returns what the holder has, not what the name means now.
  EXPECT_EQ(store->pin("web", "app")->manifestDigest, v1.manifestDigest);

  // The name goes and the store is reopened (open collects): v1 stays.
  ASSERT_TRUE(store->remove("app").has_value());
  auto reopened = ImageStore::open(work_ / "store");
  ASSERT_TRUE(reopened.has_value());
  EXPECT_TRUE(fs::exists(v1.layerDirs[0]));
  EXPECT_FALSE(fs::exists(v2.layerDirs[0])) << "v2 had no name and no pin";
  EXPECT_TRUE(reopened->blobs().contains(v1.manifestDigest));
  auto pins = reopened->pins();
  ASSERT_TRUE(pins.has_value());
  ASSERT_EQ(pins->size(), 1u);
  EXPECT_EQ((*pins)[0].first, "web");
  EXPECT_EQ((*pins)[0].second, v1.manifestDigest);

  // unpin: nothing holds v1 any more.
  ASSERT_TRUE(reopened->unpin("web").has_value());
  EXPECT_FALSE(fs::exists(v1.layerDirs[0]));
  EXPECT_FALSE(reopened->blobs().contains(v1.manifestDigest));
  EXPECT_EQ(reopened->pinned("web").error().kind(), ErrorKind::NotFound);
  EXPECT_TRUE(reopened->unpin("web").has_value()) << "no pin is fine";
}

TEST_F(ImagePinTest, RefusesUnknownImagesAndBadHolders) {
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store.has_value());
  auto unknown = store->pin("web", "nope");
  ASSERT_FALSE(unknown.has_value());
  EXPECT_EQ(unknown.error().kind(), ErrorKind::NotFound);
  import(*store, "v1", "app");
  for (const char* holder : {"", "../x", "a/b", ".hidden", "a.b"}) {
    auto bad = store->pin(holder, "app");
    ASSERT_FALSE(bad.has_value()) << holder;
    EXPECT_EQ(bad.error().field(), "holder") << holder;
  }
  EXPECT_TRUE(fs::is_empty(work_ / "store" / "pins"));
}

TEST_F(ImagePinTest, ADamagedPinStopsCollectionAndAHalfWrittenOneIsCleared) {
  {
    auto store = ImageStore::open(work_ / "store");
    ASSERT_TRUE(store.has_value());
    import(*store, "v1", "app");
  }
  std::ofstream(work_ / "store" / "pins" / "web.tmp-123") << "{\"na";
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store.has_value()) << store.error().message();
  EXPECT_FALSE(fs::exists(work_ / "store" / "pins" / "web.tmp-123"));

  std::ofstream(work_ / "store" / "pins" / "web") << "not json";
  Image image = *store->get("app");
  auto removed = store->remove("app");
  ASSERT_FALSE(removed.has_value()) << "collection went on past a damaged pin";
  EXPECT_NE(removed.error().message().find("pins/web"), std::string::npos) << removed.error().message();
  EXPECT_TRUE(fs::exists(image.layerDirs[0]));
}

// A start and a removal touch only their own pin: pinning, reading and dropping the pin of a named image
// reads no other holder's (a damaged one shows it), so their cost does not grow with the instances.
TEST_F(ImagePinTest, PinAndUnpinOfANamedImageReadOnlyTheirOwnPin) {
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store.has_value());
  Image v1 = import(*store, "v1", "app");
  std::ofstream(work_ / "store" / "pins" / "other") << "not json";
  auto pinned = store->pin("web", "app");
  ASSERT_TRUE(pinned.has_value()) << pinned.error().message();
  EXPECT_EQ(pinned->manifestDigest, v1.manifestDigest);
  EXPECT_EQ(store->pinned("web")->manifestDigest, v1.manifestDigest);
  EXPECT_EQ(store->pin("web", "app")->manifestDigest, v1.manifestDigest);
  auto dropped = store->unpin("web");
  ASSERT_TRUE(dropped.has_value()) << dropped.error().message();
  EXPECT_FALSE(fs::exists(work_ / "store" / "pins" / "web"));
  EXPECT_TRUE(fs::exists(v1.layerDirs[0])) << "the name still holds v1";
  // The pin of an image no name holds any more still frees it (a collection: it stops at the damaged pin).
  ASSERT_TRUE(store->pin("web", "app").has_value());
  fs::remove(work_ / "store" / "pins" / "other");
  ASSERT_TRUE(store->remove("app").has_value());
  EXPECT_TRUE(fs::exists(v1.layerDirs[0])) << "v1 is pinned";
  ASSERT_TRUE(store->unpin("web").has_value());
  EXPECT_FALSE(fs::exists(v1.layerDirs[0])) << "nothing holds v1 any more";
}

}  // namespace
}  // namespace corral::images
