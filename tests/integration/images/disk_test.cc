// VM disks from images: the ext4 base holds exactly what umoci unpacks of the image, is made once, and
// instance disks are qcow2 files backed by it.
#include "images/oci/disk.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/integration/images/layout_builder.h"
#include "tests/integration/images/root_fixture.h"
#include "tests/integration/images/tar_builder.h"
#include "tests/integration/images/tree.h"

namespace corral::images {
namespace {

namespace fs = std::filesystem;
using fixtures::readFile;
using fixtures::TarBuilder;

using DiskTest = fixtures::ImagesRootTest;

TEST_F(DiskTest, TheBaseDiskHoldsTheImageAndInstancesGetOverlays) {
  TarBuilder base, top;
  base.file("etc/motd", "hello\n");
  base.file("etc/os-release", "ID=corral\n");
  base.file("usr/bin/tool", "#!/bin/sh\necho tool\n", 04755);
  base.file("opt/caps", "x", 0644, 0, 0, {{"user.corral", "kept"}});
  top.file("etc/.wh.motd", "");
  top.file("srv/data", "payload", 0640, 1000, 1000);
  top.hardlink("srv/data-link", "srv/data");
  top.symlink("srv/current", "data");
  ImageConfig config;
  config.platform = hostPlatform();
  fixtures::LayoutBuilder layout(work_ / "L");
  layout.name("app", layout.image({&base, &top}, config));
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  auto image = store->importLayout(work_ / "L", "app", "app");
  ASSERT_TRUE(image) << image.error().message();

  auto disk = baseDisk(*store, *image);
  ASSERT_TRUE(disk) << disk.error().message();
  EXPECT_EQ(disk->parent_path(), work_ / "store/disks");
  auto again = baseDisk(*store, *image);
  ASSERT_TRUE(again);
  EXPECT_EQ(fs::last_write_time(*again), fs::last_write_time(*disk)) << "made once";

  run("umoci unpack --image L:app oracle >/dev/null && mkdir mnt && mount -o ro,loop " + disk->string() +
      " mnt");
  auto differences = fixtures::treeDifferences(work_ / "mnt", work_ / "oracle/rootfs");
  std::erase_if(differences, [](const std::string& d) { return d.starts_with("lost+found"); });
  EXPECT_EQ(differences, std::vector<std::string>{});
  run("umount mnt");

  ASSERT_TRUE(createInstanceDisk(*disk, work_ / "vm-1.qcow2"));
  ASSERT_TRUE(createInstanceDisk(*disk, work_ / "vm-2.qcow2"));
  auto exists = createInstanceDisk(*disk, work_ / "vm-1.qcow2");
  ASSERT_FALSE(exists);
  EXPECT_EQ(exists.error().kind(), ErrorKind::Conflict);
  run("qemu-img info --output=json vm-1.qcow2 >info.json");
  auto info = nlohmann::json::parse(readFile(work_ / "info.json"));
  EXPECT_EQ(info["format"], "qcow2");
  EXPECT_EQ(info["backing-filename"], disk->string());
  EXPECT_EQ(info["backing-filename-format"], "raw");

  ASSERT_TRUE(store->remove("app"));
  EXPECT_FALSE(fs::exists(*disk)) << "the disk goes with its image";
}

// A collection (an `image rm` of another image, an unpin) while a base disk is being built leaves the
// build's scratch files alone and the build succeeds: the build holds its image (ImageStore::Hold).
TEST_F(DiskTest, ACollectionDuringABuildLeavesTheBuildIntact) {
  TarBuilder base;
  for (int i = 0; i < 400; ++i) base.file(fmt::format("data/{}", i), std::string(8192, 'x'));
  ImageConfig config;
  config.platform = hostPlatform();
  fixtures::LayoutBuilder layout(work_ / "L");
  layout.name("big", layout.image({&base}, config));
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  auto image = store->importLayout(work_ / "L", "big", "big");
  ASSERT_TRUE(image) << image.error().message();

  std::atomic<bool> built{false};
  std::atomic<int> collections{0};
  std::atomic<int> sawScratch{0};
  std::thread collector([&] {
    while (!built) {
      std::error_code ignored;
      for (const auto& entry : fs::directory_iterator(work_ / "store/disks", ignored))
        sawScratch += entry.path().filename().string().starts_with(".tmp-");
      auto collected = store->collectGarbage();
      EXPECT_TRUE(collected) << collected.error().message();
      ++collections;
    }
  });
  auto disk = baseDisk(*store, *image);
  built = true;
  collector.join();
  ASSERT_TRUE(disk) << disk.error().message();
  EXPECT_GT(sawScratch.load(), 0) << "the collections ran while the build's scratch disk existed";
  EXPECT_GT(collections.load(), 1);
  run("e2fsck -fn " + disk->string() + " >/dev/null");
  std::vector<fs::path> left;
  for (const auto& entry : fs::directory_iterator(work_ / "store/disks")) left.push_back(entry.path());
  EXPECT_EQ(left, std::vector<fs::path>{*disk}) << "nothing else left in disks/";
}

TEST(DiskSize, LeavesRoomForTheGuest) {
  EXPECT_EQ(diskSizeFor(0, 0), 1024u << 20);
  EXPECT_EQ(diskSizeFor(100u << 20, 1000),
            ((100u << 20) + 1000 * 4096) * 5 / 4 / (1 << 20) * (1 << 20) + (1025u << 20));
}

}  // namespace
}  // namespace corral::images
