// Layer unpacking on the real kernel (root: chroot, mknod, trusted xattrs, overlayfs): what a layer holds
// arrives intact, the image spec's whiteouts become overlayfs', hostile paths never leave the layer, and
// a whole image stacked with overlayfs matches umoci's unpack of the same OCI layout (the oracle).
#include "images/oci/layer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "images/oci/blob_store.h"
#include "images/oci/manifest.h"
#include "tests/integration/images/layout_builder.h"
#include "tests/integration/images/root_fixture.h"
#include "tests/integration/images/tar_builder.h"
#include "tests/integration/images/tree.h"

namespace corral::images {
namespace {

namespace fs = std::filesystem;
using fixtures::lstatOf;
using fixtures::Node;
using fixtures::readFile;
using fixtures::TarBuilder;
using fixtures::walk;
using fixtures::xattrOf;

class LayerTest : public fixtures::ImagesRootTest {
 protected:
  fs::path writeBlob(const std::string& name, const std::string& bytes) {
    fs::path path = work_ / name;
    std::ofstream(path, std::ios::binary) << bytes;
    return path;
  }

  fs::path freshDir(const std::string& name) {
    fs::path dir = work_ / name;
    fs::create_directories(dir);
    return dir;
  }
};

TEST_F(LayerTest, KeepsWhatTheLayerHoldsInEveryCompression) {
  for (Compression compression : {Compression::none, Compression::gzip, Compression::zstd}) {
    TarBuilder tar;
    tar.directory("etc", 0755);
    tar.file("etc/hostname", "layer\n", 0644, 1000, 1001);
    tar.file("bin/tool", "#!/bin/sh\necho tool\n", 04755);  // setuid kept, parent made implicitly
    tar.symlink("bin/link", "tool");
    tar.hardlink("bin/tool-again", "bin/tool");
    tar.fifo("run/pipe");
    tar.device("dev/kvm", 10, 232);  // never: a container gets its own /dev
    tar.file("etc/with-xattrs", "x", 0600, 0, 0,
             {{"user.corral", "kept"}, {"trusted.overlay.redirect", "/etc"}});
    std::string label = fmt::format("compression-{}", static_cast<int>(compression));
    fs::path dir = freshDir(label);
    auto stats = unpackLayer(writeBlob(label + ".tar", tar.finish(compression)), dir);
    ASSERT_TRUE(stats) << label << ": " << stats.error().message();
    EXPECT_EQ(stats->skippedDevices, 1u);
    EXPECT_EQ(stats->hardlinks, 1u);
    EXPECT_EQ(readFile(dir / "etc/hostname"), "layer\n");
    struct stat hostname = lstatOf(dir / "etc/hostname");
    EXPECT_EQ(hostname.st_uid, 1000u);
    EXPECT_EQ(hostname.st_gid, 1001u);
    EXPECT_EQ(hostname.st_mode & 07777, 0644u);
    EXPECT_EQ(lstatOf(dir / "bin/tool").st_mode & 07777, 04755u);
    EXPECT_EQ(fs::read_symlink(dir / "bin/link"), "tool");
    EXPECT_EQ(lstatOf(dir / "bin/tool").st_ino, lstatOf(dir / "bin/tool-again").st_ino);
    EXPECT_TRUE(S_ISFIFO(lstatOf(dir / "run/pipe").st_mode));
    EXPECT_FALSE(fs::exists(fs::symlink_status(dir / "dev/kvm")));
    EXPECT_EQ(xattrOf(dir / "etc/with-xattrs", "user.corral"), "kept");
    EXPECT_EQ(xattrOf(dir / "etc/with-xattrs", "trusted.overlay.redirect"), "")
        << "overlayfs' own xattrs are dropped";
  }
}

TEST_F(LayerTest, TurnsTheSpecsWhiteoutsIntoOverlayfsOnes) {
  TarBuilder tar;
  tar.file("etc/.wh.motd", "");
  tar.directory("var/cache", 0755);
  tar.file("var/cache/.wh..wh..opq", "");
  tar.file("var/cache/new", "fresh");
  tar.file(".wh.gone-dir", "");
  tar.file("etc/.wh..wh.plnk", "");  // reserved name, ignored
  fs::path dir = freshDir("layer");
  auto stats = unpackLayer(writeBlob("layer.tar", tar.finish(Compression::gzip)), dir);
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(stats->whiteouts, 2u);
  EXPECT_EQ(stats->opaqueDirectories, 1u);
  for (const char* hidden : {"etc/motd", "gone-dir"}) {
    struct stat st = lstatOf(dir / hidden);
    EXPECT_TRUE(S_ISCHR(st.st_mode)) << hidden;
    EXPECT_EQ(st.st_rdev, makedev(0, 0)) << hidden;
  }
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir / "etc/.wh.motd")));
  EXPECT_EQ(xattrOf(dir / "var/cache", "trusted.overlay.opaque"), "y");
  EXPECT_FALSE(fs::exists(fs::symlink_status(dir / "var/cache/.wh..wh..opq")));
  EXPECT_EQ(readFile(dir / "var/cache/new"), "fresh");
}

TEST_F(LayerTest, HostilePathsAreRefusedAndNothingLandsOutsideTheLayer) {
  struct Hostile {
    std::string name;
    std::function<void(TarBuilder&)> build;
    std::string says;
  };
  std::vector<Hostile> cases = {
      {"dotdot", [](TarBuilder& t) { t.file("../escaped", "x"); }, "\"..\" would leave the layer"},
      {"deep-dotdot", [](TarBuilder& t) { t.file("a/../../escaped", "x"); }, "\"..\" would leave the layer"},
      {"absolute", [](TarBuilder& t) { t.file("/escaped", "x"); }, "an absolute path"},
      {"hardlink-out", [](TarBuilder& t) { t.hardlink("etc/shadow-copy", "../../../../etc/shadow"); },
       "would leave"},
      {"through-symlink",
       [](TarBuilder& t) {
         t.symlink("sneaky", "/var/tmp");
         t.file("sneaky/escaped", "x");
       },
       "sneaky"},
      {"through-relative-symlink",
       [](TarBuilder& t) {
         t.symlink("up", "../..");
         t.file("up/escaped", "x");
       },
       "up"},
      // Whiteouts and opaque markers are made by the unpacker itself, not libarchive: the same rules.
      {"whiteout-through-symlink",
       [](TarBuilder& t) {
         t.symlink("up", "..");
         t.file("up/.wh.escaped", "");
       },
       "a parent directory is a symlink"},
      {"opaque-through-symlink",
       [](TarBuilder& t) {
         t.symlink("up", "/var/tmp");
         t.file("up/.wh..wh..opq", "");
       },
       "a parent directory is a symlink"},
      {"whiteout-of-dotdot", [](TarBuilder& t) { t.file(".wh...", ""); }, "a whiteout must name a file"},
      {"whiteout-of-dot", [](TarBuilder& t) { t.file("etc/.wh..", ""); }, "a whiteout must name a file"},
  };
  for (const Hostile& hostile : cases) {
    TarBuilder tar;
    hostile.build(tar);
    fs::path outer = freshDir(hostile.name);
    fs::path dir = outer / "layer";
    fs::create_directories(dir);
    auto stats = unpackLayer(writeBlob(hostile.name + ".tar", tar.finish(Compression::none)), dir);
    ASSERT_FALSE(stats) << hostile.name;
    EXPECT_EQ(stats.error().kind(), ErrorKind::InvalidArgument)
        << hostile.name << ": " << stats.error().message();
    EXPECT_NE(stats.error().message().find(hostile.says), std::string::npos)
        << hostile.name << ": " << stats.error().message();
    EXPECT_FALSE(fs::exists(outer / "escaped")) << hostile.name;
    EXPECT_FALSE(fs::exists("/var/tmp/escaped")) << hostile.name;
    EXPECT_FALSE(fs::exists(work_ / "escaped")) << hostile.name;
  }
}

// A GNU long-name header ('L') announcing a 122-byte name, cut off 5 bytes into it: libarchive fails with
// no error string at all (found by the layer_tar fuzz target; formatting the null ended the child).
std::string truncatedLongName() {
  std::string header(512, '\0');
  auto put = [&](size_t offset, std::string_view text) { header.replace(offset, text.size(), text); };
  put(0, "././@LongLink");
  put(100, "0000000");
  put(108, "0000000");
  put(116, "0000000");
  put(124, "00000000172");
  put(136, "00000000000");
  put(148, "        ");  // the checksum counts its own field as spaces
  put(156, "L");
  put(257, "ustar  ");
  unsigned sum = 0;
  for (unsigned char c : header) sum += c;
  put(148, fmt::format("{:06o}", sum));
  header[154] = '\0';
  return header + "ddddd";
}

TEST_F(LayerTest, ATruncatedOrCorruptLayerIsTheImagesFault) {
  TarBuilder tar;
  tar.file("big", std::string(200000, 'z'));
  std::string gz = tar.finish(Compression::gzip);
  for (auto [name, bytes] :
       std::vector<std::pair<std::string, std::string>>{{"truncated", gz.substr(0, gz.size() / 2)},
                                                        {"garbage", std::string(4096, '\x5a')},
                                                        {"truncated-long-name", truncatedLongName()}}) {
    auto stats = unpackLayer(writeBlob(name, bytes), freshDir(name + "-dir"));
    ASSERT_FALSE(stats) << name;
    EXPECT_EQ(stats.error().kind(), ErrorKind::InvalidArgument) << name << ": " << stats.error().message();
    EXPECT_EQ(stats.error().field(), "layer") << name;
  }
}

TEST_F(LayerTest, DiskFullIsTheHostsFaultAndSaysSo) {
  fs::path small = freshDir("small");
  ASSERT_EQ(::mount("tmpfs", small.c_str(), "tmpfs", 0, "size=256k"), 0) << std::strerror(errno);
  TarBuilder tar;
  tar.file("big", std::string(1 << 20, 'z'));
  fs::path dir = small / "layer";
  fs::create_directories(dir);
  auto stats = unpackLayer(writeBlob("big.tar", tar.finish(Compression::gzip)), dir);
  ::umount2(small.c_str(), MNT_DETACH);
  ASSERT_FALSE(stats);
  EXPECT_EQ(stats.error().kind(), ErrorKind::Internal) << stats.error().message();
  EXPECT_NE(stats.error().message().find("big"), std::string::npos) << stats.error().message();
}

// ---- the oracle: a three-layer OCI image, unpacked by umoci and by us ----

TEST_F(LayerTest, StackedLayersMatchUmocisUnpack) {
  // Base: a small tree; the middle layer deletes a file and replaces a directory (opaque); the top adds a
  // hard link pair, a symlink, a fifo and owners, and deletes a whole directory.
  TarBuilder base;
  base.directory("etc", 0755);
  base.file("etc/motd", "welcome\n");
  base.file("etc/os-release", "ID=corral\n");
  base.directory("var/cache/apt", 0755);
  base.file("var/cache/apt/pkgcache.bin", std::string(5000, 'p'));
  base.file("var/cache/keep-me-not", "old");
  base.directory("opt/tool", 0750, 10, 10);
  base.file("opt/tool/run", "#!/bin/sh\n", 0755, 10, 10);
  TarBuilder middle;
  middle.file("etc/.wh.motd", "");
  middle.directory("var/cache", 0700);
  middle.file("var/cache/.wh..wh..opq", "");
  middle.file("var/cache/fresh", "new cache");
  middle.file("etc/os-release", "ID=corral\nVERSION=2\n", 0644, 0, 0, {{"user.corral", "v2"}});
  TarBuilder top;
  top.file("srv/app/data", "payload", 0640, 1000, 1000);
  top.hardlink("srv/app/data-link", "srv/app/data");
  top.symlink("srv/current", "app");
  top.fifo("srv/app/fifo");
  top.file("opt/.wh.tool", "");

  // An OCI layout (the way `image import` will read it), with correct diff ids so umoci verifies.
  fs::path layout = work_ / "layout";
  fixtures::LayoutBuilder builder(layout);
  ImageConfig config;
  config.platform = hostPlatform();
  config.cmd = {"/bin/sh"};
  Descriptor manifest = builder.image({&base, &middle, &top}, config);
  builder.name("test", manifest);
  std::vector<fs::path> layerBlobs;
  for (const Descriptor& layer : builder.layers(manifest))
    layerBlobs.push_back(builder.blobPath(layer.digest));

  fs::path bundle = work_ / "umoci-bundle";
  std::string command = fmt::format("umoci unpack --image '{}:test' '{}' >'{}/umoci.log' 2>&1",
                                    layout.string(), bundle.string(), work_.string());
  ASSERT_EQ(std::system(command.c_str()), 0) << readFile(work_ / "umoci.log");

  std::vector<fs::path> layerDirs;
  for (size_t i = 0; i < layerBlobs.size(); ++i) {
    fs::path dir = freshDir(fmt::format("layer{}", i));
    auto stats = unpackLayer(layerBlobs[i], dir);
    ASSERT_TRUE(stats) << stats.error().message();
    layerDirs.push_back(dir);
  }
  fs::path merged = freshDir("merged");
  std::string lower =
      fmt::format("{}:{}:{}", layerDirs[2].string(), layerDirs[1].string(), layerDirs[0].string());
  ASSERT_EQ(::mount("overlay", merged.c_str(), "overlay", MS_RDONLY, ("lowerdir=" + lower).c_str()), 0)
      << std::strerror(errno);
  std::map<std::string, std::set<std::string>> ourLinks, umociLinks;
  auto ours = walk(merged, &ourLinks);
  auto theirs = walk(bundle / "rootfs", &umociLinks);
  ::umount2(merged.c_str(), MNT_DETACH);

  EXPECT_EQ(ourLinks, umociLinks);
  for (const auto& [path, node] : theirs) {
    auto found = ours.find(path);
    if (found == ours.end()) {
      ADD_FAILURE() << "umoci has " << path << ", the overlay stack does not";
      continue;
    }
    EXPECT_EQ(found->second, node) << path << ": ours " << found->second.type << " " << std::oct
                                   << found->second.mode << " " << std::dec << found->second.uid << ":"
                                   << found->second.gid << " vs umoci's " << node.type << " " << std::oct
                                   << node.mode << std::dec << " " << node.uid << ":" << node.gid;
  }
  for (const auto& [path, node] : ours) {
    if (!theirs.contains(path)) ADD_FAILURE() << "the overlay stack has " << path << ", umoci does not";
  }
  // What the image's layers say, checked directly too (so a bug shared with umoci cannot hide).
  EXPECT_FALSE(ours.contains("etc/motd"));
  EXPECT_FALSE(ours.contains("var/cache/apt"));
  EXPECT_FALSE(ours.contains("opt/tool"));
  EXPECT_EQ(ours.at("var/cache/fresh").content, "new cache");
  EXPECT_EQ(ours.at("etc/os-release").userXattr, "v2");
}

}  // namespace
}  // namespace corral::images
