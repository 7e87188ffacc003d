// The image store on the real kernel: imports of OCI layouts (made by umoci), OCI and docker save archives
// (made by skopeo) and root filesystem tars, each checked against `umoci unpack` of the same image; layers
// shared between images unpacked once; failed imports and removals leave nothing behind.
#include "images/oci/image_store.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/integration/images/root_fixture.h"
#include "tests/integration/images/tar_builder.h"
#include "tests/integration/images/tree.h"

namespace corral::images {
namespace {

namespace fs = std::filesystem;
using fixtures::readFile;
using fixtures::TarBuilder;
using fixtures::treeDifferences;

class ImageStoreTest : public fixtures::ImagesRootTest {
 protected:
  void SetUp() override {
    ImagesRootTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    makeLayout();
  }
  // An OCI layout "L" with two images made by umoci: "base" (two layers) and "app" (base's layers plus one
  // that deletes a file and replaces a directory, so its layer has whiteouts).
  void makeLayout() {
    run("umoci init --layout L && umoci new --image L:base && umoci unpack --image L:base B >/dev/null");
    run("mkdir -p B/rootfs/etc B/rootfs/var/cache B/rootfs/usr/bin && echo hello >B/rootfs/etc/motd && "
        "echo cached >B/rootfs/var/cache/a && printf '#!/bin/sh\\necho tool\\n' >B/rootfs/usr/bin/tool && "
        "chmod 755 B/rootfs/usr/bin/tool && ln -s tool B/rootfs/usr/bin/tool-link && "
        "ln B/rootfs/etc/motd B/rootfs/etc/motd.hard && chown 1000:1000 B/rootfs/var/cache/a");
    run("umoci repack --image L:base B && umoci config --image L:base --config.cmd /usr/bin/tool "
        "--config.env GREETING=hello --config.workingdir /etc");
    run("umoci unpack --image L:base A >/dev/null && rm A/rootfs/etc/motd.hard && rm -r A/rootfs/var/cache "
        "&& "
        "mkdir A/rootfs/var/cache && echo fresh >A/rootfs/var/cache/b && umoci repack --image L:app A && "
        "umoci tag --image L:app app && umoci gc --layout L");
    run("rm -rf A B");
  }

  // What umoci makes of `ref` in layout `layout`, and what our store made of `image` (stacked with
  // overlayfs).
  std::vector<std::string> compareWithUmoci(const Image& image, const std::string& ref) {
    std::string bundle = fmt::format("oracle-{}", ref);
    if (!fs::exists(work_ / bundle)) run(fmt::format("umoci unpack --image L:{} {} >/dev/null", ref, bundle));
    fs::path merged = work_ / fmt::format("merged-{}", image.name);
    fs::create_directories(merged);
    std::string lower;
    for (auto it = image.layerDirs.rbegin(); it != image.layerDirs.rend(); ++it) {
      lower += (lower.empty() ? "" : ":") + it->string();
    }
    // One layer: overlayfs wants two lowerdirs without an upper; give it an empty second one.
    if (image.layerDirs.size() == 1) {
      fs::create_directories(work_ / "empty");
      lower += ":" + (work_ / "empty").string();
    }
    EXPECT_EQ(::mount("overlay", merged.c_str(), "overlay", MS_RDONLY, ("lowerdir=" + lower).c_str()), 0)
        << std::strerror(errno);
    auto differences = treeDifferences(merged, work_ / bundle / "rootfs");
    ::umount2(merged.c_str(), MNT_DETACH);
    return differences;
  }

  size_t filesUnder(const fs::path& dir) {
    size_t count = 0;
    for (const auto& entry : fs::recursive_directory_iterator(dir)) count += !entry.is_directory();
    return count;
  }
};

TEST_F(ImageStoreTest, ImportsAnOciLayoutAsUmociUnpacksIt) {
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store) << store.error().message();
  std::vector<std::string> steps;
  auto base = store->importLayout(work_ / "L", "base", "base",
                                  [&](const ImportProgress& p) { steps.push_back(p.step); });
  ASSERT_TRUE(base) << base.error().message();
  EXPECT_EQ(base->config.cmd, std::vector<std::string>{"/usr/bin/tool"});
  EXPECT_EQ(base->config.workingDir, "/etc");
  EXPECT_NE(std::find(base->config.env.begin(), base->config.env.end(), "GREETING=hello"),
            base->config.env.end());
  EXPECT_FALSE(steps.empty());
  EXPECT_EQ(steps.back(), "done");
  EXPECT_EQ(compareWithUmoci(*base, "base"), std::vector<std::string>{});

  auto app = store->importLayout(work_ / "L", "app", "app");
  ASSERT_TRUE(app) << app.error().message();
  EXPECT_EQ(compareWithUmoci(*app, "app"), std::vector<std::string>{});
  // app's lower layers are base's: one directory each, shared.
  ASSERT_GT(app->layerDirs.size(), base->layerDirs.size());
  for (size_t i = 0; i < base->layerDirs.size(); ++i) EXPECT_EQ(app->layerDirs[i], base->layerDirs[i]);
  size_t layerDirs = 0;
  for (const auto& entry : fs::directory_iterator(work_ / "store/layers")) layerDirs += entry.is_directory();
  EXPECT_EQ(layerDirs, app->layerDirs.size());

  auto listed = store->list();
  ASSERT_TRUE(listed);
  ASSERT_EQ(listed->size(), 2u);
  EXPECT_EQ((*listed)[0].name, "app");
  EXPECT_EQ((*listed)[1].manifestDigest, base->manifestDigest);

  // Reopened (a daemon restart), the same images.
  auto reopened = ImageStore::open(work_ / "store");
  ASSERT_TRUE(reopened);
  auto again = reopened->get("app");
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->manifestDigest, app->manifestDigest);
}

TEST_F(ImageStoreTest, ImportsOciAndDockerSaveArchivesMadeBySkopeo) {
  run("skopeo copy oci:L:app oci-archive:app-oci.tar && skopeo copy oci:L:app "
      "docker-archive:app-docker.tar:app:1");
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  for (std::string_view archive : {"app-oci.tar", "app-docker.tar"}) {
    std::string name = fmt::format("from-{}", archive.substr(0, archive.size() - 4));
    auto image = store->importArchive(work_ / archive, name);
    ASSERT_TRUE(image) << archive << ": " << image.error().message();
    EXPECT_EQ(image->config.cmd, std::vector<std::string>{"/usr/bin/tool"}) << archive;
    EXPECT_EQ(compareWithUmoci(*image, "app"), std::vector<std::string>{}) << archive;
  }
  EXPECT_FALSE(fs::exists(work_ / "store/.import-")) << "scratch directories are removed";
  for (const auto& entry : fs::directory_iterator(work_ / "store")) {
    EXPECT_FALSE(entry.path().filename().string().starts_with(".import-")) << entry.path();
  }
}

TEST_F(ImageStoreTest, ImportsARootFilesystemTarAsOneLayer) {
  TarBuilder tar;
  tar.directory("bin");
  tar.file("bin/hello", "#!/bin/sh\necho hi\n", 0755);
  tar.file("etc/hostname", "rootfs\n");
  std::ofstream(work_ / "rootfs.tar.gz", std::ios::binary) << tar.finish(Compression::gzip);
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  ImageConfig config;
  config.cmd = {"/bin/hello"};
  auto image = store->importArchive(work_ / "rootfs.tar.gz", "plain", config);
  ASSERT_TRUE(image) << image.error().message();
  ASSERT_EQ(image->layerDirs.size(), 1u);
  EXPECT_EQ(image->config.cmd, config.cmd);
  EXPECT_EQ(image->config.platform, hostPlatform());
  EXPECT_EQ(image->manifest.layers[0].mediaType, media::kOciLayer);
  EXPECT_EQ(image->config.diffIds[0], image->manifest.layers[0].digest)
      << "stored uncompressed: digest = diff id";
  EXPECT_EQ(readFile(image->layerDirs[0] / "etc/hostname"), "rootfs\n");
}

// corrald keeps the busybox rootfs as an image so: libarchive writes the tree into the layer's blob, with
// no tar program (PATH leads nowhere here, as in a guest with busybox alone).
TEST_F(ImageStoreTest, ImportsARootFilesystemDirectoryWithoutATarProgram) {
  const fs::path tree = work_ / "tree";
  run("mkdir -p tree/bin tree/etc tree/srv && printf '#!/bin/sh\\necho hi\\n' >tree/bin/hello && "
      "chmod 755 tree/bin/hello && echo rootfs >tree/etc/hostname && ln tree/etc/hostname "
      "tree/etc/hostname.hard "
      "&& ln -s ../etc/hostname tree/srv/link && echo secret >tree/srv/data && chown 1000:50 tree/srv/data "
      "&& "
      "chmod 640 tree/srv/data && mkdir -m 1777 tree/tmp");
  ASSERT_EQ(::setxattr((tree / "srv/data").c_str(), "user.corral", "kept", 4, 0), 0) << std::strerror(errno);
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  ImageConfig config;
  config.cmd = {"/bin/sh"};
  const std::string path = std::getenv("PATH") ? std::getenv("PATH") : "";
  fs::create_directories(work_ / "no-tools");
  ::setenv("PATH", (work_ / "no-tools").c_str(), 1);
  auto image = store->importRootfsDirectory(tree, "rootfs", config);
  auto again = store->importRootfsDirectory(tree, "rootfs-again", config);
  ::setenv("PATH", path.c_str(), 1);
  ASSERT_TRUE(image) << image.error().message();
  ASSERT_TRUE(again) << again.error().message();
  ASSERT_EQ(image->layerDirs.size(), 1u);
  EXPECT_EQ(image->config.cmd, config.cmd);
  EXPECT_EQ(image->config.diffIds[0], image->manifest.layers[0].digest);
  EXPECT_EQ(treeDifferences(image->layerDirs[0], tree), std::vector<std::string>{});
  EXPECT_EQ(again->manifestDigest, image->manifestDigest) << "one tree, one digest";
  struct stat data {};
  ASSERT_EQ(::stat((image->layerDirs[0] / "srv/data").c_str(), &data), 0);
  EXPECT_EQ(data.st_uid, 1000u);
  EXPECT_EQ(data.st_gid, 50u);
  char value[16] = {};
  EXPECT_EQ(::getxattr((image->layerDirs[0] / "srv/data").c_str(), "user.corral", value, sizeof(value)), 4);
  EXPECT_STREQ(value, "kept");

  auto missing = store->importRootfsDirectory(work_ / "nowhere", "gone", config);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().field(), "path") << missing.error().message();
  EXPECT_NE(missing.error().message().find("nowhere"), std::string::npos) << missing.error().message();
}

TEST_F(ImageStoreTest, AFailedImportLeavesTheStoreAsItWas) {
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->importLayout(work_ / "L", "base", "base"));
  size_t before = filesUnder(work_ / "store");

  // A layer blob whose bytes no longer match its digest (a corrupt or tampered layout).
  run("umoci unpack --image L:app C >/dev/null && echo more >C/rootfs/extra && umoci repack --image L:bad C "
      "&& rm -rf C");
  auto bad = store->importLayout(work_ / "L", "bad", "bad");
  ASSERT_TRUE(bad) << "the untampered image imports: " << bad.error().message();
  ASSERT_TRUE(store->remove("bad"));
  {
    // Its own top layer (the store still has the others, shared with base, and never copies those again).
    fs::path layer = work_ / "L/blobs/sha256" / bad->manifest.layers.back().digest.hex;
    std::fstream blob(layer, std::ios::in | std::ios::out | std::ios::binary);
    blob.seekp(20);
    blob.put('\x42');
  }
  auto tampered = store->importLayout(work_ / "L", "bad", "bad");
  ASSERT_FALSE(tampered);
  EXPECT_NE(tampered.error().message().find("hashes to"), std::string::npos) << tampered.error().message();
  EXPECT_EQ(filesUnder(work_ / "store"), before) << "nothing of the failed import is left";

  // A layout whose layer writes outside its directory.
  TarBuilder hostile;
  hostile.file("../../escaped", "x");
  std::ofstream(work_ / "hostile.tar", std::ios::binary) << hostile.finish(Compression::none);
  auto escaped = store->importArchive(work_ / "hostile.tar", "hostile");
  ASSERT_FALSE(escaped);
  EXPECT_EQ(escaped.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_NE(escaped.error().message().find("would leave the layer"), std::string::npos)
      << escaped.error().message();
  EXPECT_FALSE(fs::exists(work_ / "escaped"));
  EXPECT_EQ(filesUnder(work_ / "store"), before);
  auto names = store->list();
  ASSERT_TRUE(names);
  EXPECT_EQ(names->size(), 1u) << "no half image is listed";

  for (std::string_view badName : {"", "Upper", "-dash", "has space", "semi;colon"}) {
    auto refused = store->importLayout(work_ / "L", "base", badName);
    ASSERT_FALSE(refused) << badName;
    EXPECT_EQ(refused.error().field(), "name") << badName;
  }
  auto noRef = store->importLayout(work_ / "L", "", "x");
  ASSERT_FALSE(noRef);
  EXPECT_NE(noRef.error().message().find("name one"), std::string::npos) << noRef.error().message();
  auto unknownRef = store->importLayout(work_ / "L", "nope", "x");
  ASSERT_FALSE(unknownRef);
  EXPECT_EQ(unknownRef.error().kind(), ErrorKind::NotFound);
}

TEST_F(ImageStoreTest, RemoveCollectsWhatNoImageUsesAndKeepsSharedLayers) {
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  auto base = store->importLayout(work_ / "L", "base", "base");
  auto app = store->importLayout(work_ / "L", "app", "app");
  ASSERT_TRUE(base && app);
  ASSERT_TRUE(store->remove("app"));
  for (const fs::path& dir : base->layerDirs) EXPECT_TRUE(fs::exists(dir)) << dir;
  EXPECT_FALSE(fs::exists(app->layerDirs.back())) << "app's own layer is collected";
  EXPECT_FALSE(store->blobs().contains(app->manifestDigest));
  EXPECT_TRUE(store->blobs().contains(base->manifestDigest));
  auto missing = store->remove("app");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().kind(), ErrorKind::NotFound);
  ASSERT_TRUE(store->remove("base"));
  EXPECT_EQ(filesUnder(work_ / "store"), 1u) << "only index.json";
}

TEST_F(ImageStoreTest, OpenClearsWhatACrashLeftHalfway) {
  {
    auto store = ImageStore::open(work_ / "store");
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->importLayout(work_ / "L", "base", "base"));
  }
  // What a kill -9 in the middle of an import leaves: a partial blob, a half-unpacked layer, a blob and a
  // layer no image names yet, a scratch directory.
  fs::path store = work_ / "store";
  std::ofstream(store / "ingest/123-0-1") << "half";
  fs::create_directories(store / "layers/.tmp-123-0-1/usr");
  fs::create_directories(store / "layers" / std::string(64, 'a') / "etc");
  std::ofstream(store / "blobs/sha256" / std::string(64, 'b')) << "orphan";
  fs::create_directories(store / ".import-123-0-1/blobs");
  auto reopened = ImageStore::open(store);
  ASSERT_TRUE(reopened) << reopened.error().message();
  EXPECT_FALSE(fs::exists(store / "ingest/123-0-1"));
  EXPECT_FALSE(fs::exists(store / "layers/.tmp-123-0-1"));
  EXPECT_FALSE(fs::exists(store / "layers" / std::string(64, 'a')));
  EXPECT_FALSE(fs::exists(store / "blobs/sha256" / std::string(64, 'b')));
  EXPECT_FALSE(fs::exists(store / ".import-123-0-1"));
  auto base = reopened->get("base");
  ASSERT_TRUE(base) << base.error().message();
  for (const fs::path& dir : base->layerDirs) EXPECT_TRUE(fs::exists(dir));
}

}  // namespace
}  // namespace corral::images
