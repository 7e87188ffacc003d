// VMs from images of the store (issue 14), through a real corrald, libvirt and QEMU under TCG (as root): the
// image's disk is the guest's root, the image's entrypoint runs there with its env, workdir and user,
// `corral exec` runs inside it, a VM's writes go to its own overlay (a second VM of the image does not see
// them), a stop/start keeps them, and rm removes the overlay. Boots cost ~5 s each: the tests are few.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "images/oci/debian_build.h"
#include "images/oci/image_store.h"
#include "tests/integration/harness.h"

namespace corral {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using namespace std::chrono_literals;

using corral::testing::execIn;
using corral::testing::ourDomains;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

// A two-part image made as a rootfs tar: the busybox userland the project builds, plus an app user, its
// home, and a marker file the initramfs does not have. The entrypoint writes what it sees into its workdir.
images::Image importAppImage(const TestDaemon& daemon, const std::string& name) {
  const fs::path work = fs::path(daemon.dir()) / "image-src";
  const fs::path rootfs = work / "rootfs";
  fs::create_directories(work);
  const std::string copy = fmt::format(
      "cp -a '{}/busybox/rootfs' '{}' && echo from-the-image >'{}/etc/image-marker' && "
      "echo 'app:x:1000:1000::/home/app:/bin/sh' >>'{}/etc/passwd' && mkdir -p '{}/home/app' && "
      "chown 1000:1000 '{}/home/app' && tar -C '{}' -cf '{}/rootfs.tar' .",
      CORRAL_IMAGE_DIR, rootfs.string(), rootfs.string(), rootfs.string(), rootfs.string(), rootfs.string(),
      rootfs.string(), work.string());
  EXPECT_EQ(std::system(copy.c_str()), 0) << copy;
  // The daemon reads the store's index on every lookup; this handle only adds the image.
  auto store = images::ImageStore::open(fs::path(daemon.dir()) / "state/images");
  EXPECT_TRUE(store) << store.error().message();
  images::ImageConfig config;
  config.platform = images::hostPlatform();
  config.entrypoint = {"/bin/sh", "-c"};
  config.cmd = {
      "echo \"greeting=$GREETING uid=$(id -u) gid=$(id -g) pwd=$(pwd)\" >entry.out; "
      "echo workload-says-hello"};
  config.env = {"GREETING=hello-vm", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
  config.workingDir = "/home/app";
  config.user = "app";
  auto image = store->importRootfs(work / "rootfs.tar", name, config);
  EXPECT_TRUE(image) << image.error().message();
  return *image;
}

json vmOf(const std::string& name, const std::string& image) {
  return {{"name", name}, {"kind", "vm"}, {"image", image}, {"memory", "128M"}};
}

json runReady(const TestDaemon& daemon, const std::string& name, const std::string& image) {
  Reply created = daemon.call("POST", "/v1/instances", vmOf(name, image));
  EXPECT_EQ(created.status, 201) << created.body.dump() << "\n" << daemon.log();
  json ready = daemon.waitWhile(name, "starting");
  EXPECT_EQ(ready.value("state", ""), "running") << ready.dump(2) << "\n" << daemon.log();
  return ready;
}

// The uid a running instance's QEMU has (the Uid: line of /proc/PID/status); -1 when unreadable.
long qemuUid(const json& instance) {
  if (!instance["pid"].is_number()) return -1;
  const std::string status =
      corral::testing::readFile(fmt::format("/proc/{}/status", instance["pid"].get<int>()));
  const size_t at = status.find("\nUid:\t");
  return at == std::string::npos ? -1 : std::strtol(status.c_str() + at + 6, nullptr, 10);
}

// corrald's default --vm-user (auto): libvirt-qemu, which Debian's libvirt makes.
long defaultVmUid() {
  const passwd* account = ::getpwnam("libvirt-qemu");
  return account == nullptr ? 0 : static_cast<long>(account->pw_uid);
}

mode_t modeOf(const fs::path& path) {
  struct stat st {};
  return ::lstat(path.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

TEST(VmImage, BootsTheImageRunsItsEntrypointAndKeepsWritesPerInstance) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vmimg", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  images::Image image = importAppImage(daemon, "app");
  ASSERT_FALSE(HasFailure());

  json a = runReady(daemon, "img-a", "app");
  ASSERT_EQ(a.value("state", ""), "running");
  EXPECT_EQ(a.value("image_digest", ""), image.manifestDigest.text()) << a.dump(2);
  EXPECT_FALSE(a["vm"].contains("image_digest")) << a.dump(2);
  // corral's kernel (built before the integration tests) on microvm: the image's disks on virtio-mmio.
  EXPECT_EQ(a["vm"].value("kernel_source", ""), "corral") << a.dump(2);
  EXPECT_EQ(a["vm"].value("machine", ""), "microvm") << a.dump(2);
  // Run by corral's own engine as the default VM user, who reaches the image's base disk only through the
  // VM directory's hard link (the overlay's relative backing file); the state directory is passable, not
  // listable, and the database and the image store in it stay root's.
  EXPECT_EQ(qemuUid(a), defaultVmUid()) << a.dump(2);
  const fs::path stateDir = fs::path(daemon.dir()) / "state";
  EXPECT_EQ(modeOf(stateDir), defaultVmUid() == 0 ? 0700u : 0711u);
  EXPECT_EQ(modeOf(stateDir / "state.db"), 0600u);
  EXPECT_EQ(modeOf(stateDir / "images"), 0700u);
  EXPECT_EQ(modeOf(stateDir / "containers"), 0700u);
  EXPECT_EQ(modeOf(fs::path(daemon.vmsDir()) / "img-a"), 0700u);
  const std::string backing = corral::testing::programOutput(
      {"/usr/bin/qemu-img", "info", "-U", (fs::path(daemon.vmsDir()) / "img-a/root.qcow2").string()});
  EXPECT_NE(backing.find("backing file: base.ext4"), std::string::npos) << backing;
  EXPECT_EQ(modeOf(fs::path(daemon.vmsDir()) / "img-a/base.ext4"), defaultVmUid() == 0 ? 0644u : 0640u);

  // exec runs in the image's root (the initramfs has no such file), with the image's Env.
  EXPECT_EQ(execIn(daemon, "img-a", {"cat", "/etc/image-marker"}),
            std::make_pair(0, std::string("from-the-image\n")));
  EXPECT_EQ(execIn(daemon, "img-a", {"sh", "-c", "echo $GREETING"}),
            std::make_pair(0, std::string("hello-vm\n")));
  // The entrypoint ran as the image's user in its workdir, with its env.
  std::string entry;
  ASSERT_TRUE(corral::testing::waitUntil(
      [&] {
        entry = execIn(daemon, "img-a", {"cat", "/home/app/entry.out"}).second;
        return entry.starts_with("greeting=");
      },
      20s, "the entrypoint's output file"));
  EXPECT_EQ(entry, "greeting=hello-vm uid=1000 gid=1000 pwd=/home/app\n");
  // Its stdout reaches the logs through the serial console, after the file: wait for it too.
  Reply logs;
  EXPECT_TRUE(corral::testing::waitUntil(
      [&] {
        logs = daemon.call("GET", "/v1/instances/img-a/logs?offset=0");
        return logs.body.value("data", "").find("workload-says-hello") != std::string::npos;
      },
      20s, "the entrypoint's stdout in the logs"))
      << logs.body.dump();

  // `corral inspect` shows what the VM runs and as whom, as it does for a container.
  corral::testing::CliRun inspect = daemon.cli({"inspect", "img-a"});
  EXPECT_EQ(inspect.code, 0) << inspect.err;
  EXPECT_NE(inspect.out.find("\ncommand:"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("the image's (Entrypoint + Cmd"), std::string::npos) << inspect.out;
  EXPECT_NE(inspect.out.find("\nuser:"), std::string::npos) << inspect.out;

  // The probe still reports, from inside the image's root.
  auto [probeCode, probeOut] = execIn(daemon, "img-a", {"/usr/bin/corral-probe"});
  ASSERT_EQ(probeCode, 0) << probeOut;
  json report = json::parse(probeOut, nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << probeOut;
  EXPECT_EQ(report.value("hostname", ""), "img-a") << report.dump();

  // A write in one VM goes to its own overlay: the base disk is untouched, a second VM does not see it.
  const fs::path overlayA = fs::path(daemon.vmsDir()) / "img-a/root.qcow2";
  EXPECT_TRUE(fs::exists(overlayA));
  const fs::path base = fs::path(daemon.dir()) / "state/images/disks" / (image.manifestDigest.hex + ".ext4");
  ASSERT_TRUE(fs::exists(base));
  const auto baseTime = fs::last_write_time(base);
  EXPECT_EQ(execIn(daemon, "img-a", {"sh", "-c", "echo mine >/written-by-a && sync"}).first, 0);
  json b = runReady(daemon, "img-b", "app");
  ASSERT_EQ(b.value("state", ""), "running");
  EXPECT_EQ(execIn(daemon, "img-b", {"cat", "/etc/image-marker"}).first, 0);
  EXPECT_EQ(execIn(daemon, "img-b", {"test", "-e", "/written-by-a"}).first, 1) << "a's write reached b";
  EXPECT_EQ(execIn(daemon, "img-a", {"cat", "/written-by-a"}), std::make_pair(0, std::string("mine\n")));
  EXPECT_EQ(fs::last_write_time(base), baseTime) << "the base disk was written";

  // rm takes the instance's overlay and config disk with it; the base disk stays the image's.
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/img-b?force=true").status, 200);
  EXPECT_FALSE(fs::exists(fs::path(daemon.vmsDir()) / "img-b"));
  EXPECT_TRUE(fs::exists(base));

  // A stopped VM keeps its writes until rm. Its workload's exit code (the entrypoint exited 0 long ago)
  // comes with the guest's poweroff.
  Reply stopped = daemon.call("POST", "/v1/instances/img-a/stop", {{"grace_seconds", 20}});
  ASSERT_EQ(stopped.status, 200) << stopped.body.dump();
  EXPECT_EQ(stopped.body.value("exit_code", json(nullptr)), json(0)) << stopped.body.dump();
  ASSERT_TRUE(stopped.body["exit_note"].is_string()) << stopped.body.dump();
  EXPECT_NE(stopped.body["exit_note"].get<std::string>().find("after its workload exited with 0"),
            std::string::npos)
      << stopped.body.dump();
  EXPECT_TRUE(fs::exists(overlayA));
  Reply started = daemon.call("POST", "/v1/instances/img-a/start");
  ASSERT_EQ(started.status, 200) << started.body.dump();
  json again = daemon.waitWhile("img-a", "starting");
  ASSERT_EQ(again.value("state", ""), "running") << again.dump(2) << "\n" << daemon.log();
  EXPECT_EQ(execIn(daemon, "img-a", {"cat", "/written-by-a"}), std::make_pair(0, std::string("mine\n")));
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/img-a?force=true").status, 200);
  EXPECT_FALSE(fs::exists(overlayA));
  EXPECT_TRUE(ourDomains().empty());
}

// A store image's VM saved with --save resumes on the same overlay: a write still in the guest's page cache
// at the save is there after the restore, and on the disk after a later sync and a cold stop and start
// (the memory and the disk the restore paired belong together).
TEST(VmImage, ASavedImageVmResumesOnItsOwnOverlay) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vmimg", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  importAppImage(daemon, "app");
  ASSERT_FALSE(HasFailure());
  json vm = runReady(daemon, "img-s", "app");
  ASSERT_EQ(vm.value("state", ""), "running");
  EXPECT_EQ(execIn(daemon, "img-s", {"sh", "-c", "echo cached >/home/app/cached"}).first, 0);

  Reply saved = daemon.call("POST", "/v1/instances/img-s/stop", {{"save", true}});
  ASSERT_EQ(saved.status, 200) << saved.body.dump() << "\n" << daemon.log();
  EXPECT_EQ(saved.body["saved"], true) << saved.body.dump();
  Reply started = daemon.call("POST", "/v1/instances/img-s/start");
  ASSERT_EQ(started.status, 200) << started.body.dump() << "\n" << daemon.log();
  json resumed = daemon.waitWhile("img-s", "starting");
  ASSERT_EQ(resumed.value("state", ""), "running") << resumed.dump(2) << "\n" << daemon.log();
  EXPECT_EQ(resumed["boot"]["restored"], true) << resumed["boot"].dump();
  EXPECT_EQ(execIn(daemon, "img-s", {"cat", "/home/app/cached"}), std::make_pair(0, std::string("cached\n")));
  EXPECT_EQ(execIn(daemon, "img-s", {"cat", "/etc/image-marker"}),
            std::make_pair(0, std::string("from-the-image\n")));

  EXPECT_EQ(execIn(daemon, "img-s", {"sync"}).first, 0);
  ASSERT_EQ(daemon.call("POST", "/v1/instances/img-s/stop", {{"grace_seconds", 20}}).status, 200);
  ASSERT_EQ(daemon.call("POST", "/v1/instances/img-s/start").status, 200);
  json cold = daemon.waitWhile("img-s", "starting");
  ASSERT_EQ(cold.value("state", ""), "running") << cold.dump(2) << "\n" << daemon.log();
  EXPECT_FALSE(cold["boot"].contains("restored")) << cold["boot"].dump();
  EXPECT_EQ(execIn(daemon, "img-s", {"cat", "/home/app/cached"}), std::make_pair(0, std::string("cached\n")));
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/img-s?force=true").status, 200);
  EXPECT_FALSE(fs::exists(fs::path(daemon.vmsDir()) / "img-s"));
  EXPECT_TRUE(ourDomains().empty());
}

// A VM pins its image from run to rm: `image rm` is refused while it exists (running or stopped), and a
// later start, even after a corrald restart and with the name moved to another image, boots the same one.
TEST(VmImage, AVmKeepsItsImagePinnedAcrossRestartsAndNameMoves) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vmpin", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  images::Image first = importAppImage(daemon, "app");
  ASSERT_FALSE(HasFailure());
  const fs::path storeDir = fs::path(daemon.dir()) / "state/images";

  json a = runReady(daemon, "pinned", "app");
  ASSERT_EQ(a.value("state", ""), "running");
  EXPECT_TRUE(fs::exists(storeDir / "pins/pinned"));
  Reply running = daemon.call("DELETE", "/v1/images/app");
  EXPECT_EQ(running.status, 409) << running.body.dump();
  ASSERT_EQ(daemon.call("POST", "/v1/instances/pinned/stop", {{"grace_seconds", 20}}).status, 200);
  Reply stopped = daemon.call("DELETE", "/v1/images/app");
  EXPECT_EQ(stopped.status, 409) << stopped.body.dump();
  EXPECT_NE(stopped.body.dump().find("pinned"), std::string::npos) << "names the VM: " << stopped.body.dump();
  EXPECT_EQ(daemon.must("GET", "/v1/images/app", nullptr, 200)["used_by"], json::array({"pinned"}));

  // The name moves to another image (same tree, another Env), and corrald restarts.
  {
    auto store = images::ImageStore::open(storeDir);
    ASSERT_TRUE(store);
    images::ImageConfig config = first.config;
    config.env = {"GREETING=second-image", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    auto second = store->importRootfs(fs::path(daemon.dir()) / "image-src/rootfs.tar", "app", config);
    ASSERT_TRUE(second) << second.error().message();
    ASSERT_NE(second->manifestDigest, first.manifestDigest);
  }
  daemon.stop();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  EXPECT_TRUE(fs::exists(storeDir / "pins/pinned")) << "the restart kept the VM's pin";
  EXPECT_EQ(daemon.must("GET", "/v1/instances/pinned", nullptr, 200)["image_digest"],
            first.manifestDigest.text());
  ASSERT_EQ(daemon.call("POST", "/v1/instances/pinned/start").status, 200);
  json again = daemon.waitWhile("pinned", "starting");
  ASSERT_EQ(again.value("state", ""), "running") << again.dump(2) << "\n" << daemon.log();
  EXPECT_EQ(execIn(daemon, "pinned", {"sh", "-c", "echo $GREETING"}),
            std::make_pair(0, std::string("hello-vm\n")))
      << "boots the image it was created from";

  // rm lets the pin go: the first image, nameless now, is collected with its disk.
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/pinned?force=true").status, 200);
  EXPECT_FALSE(fs::exists(storeDir / "pins/pinned"));
  EXPECT_FALSE(fs::exists(storeDir / "disks" / (first.manifestDigest.hex + ".ext4")));
  EXPECT_TRUE(ourDomains().empty());
}

// The test, VM half: a `build --debian python3` image's python3 answers in the VM what it answers
// run straight from the image's tree on the host (the container half runs the same image as a container).
TEST(VmImage, ADebianPython3ImageRunsItsOwnPython) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt, mmdebstrap and layer unpacking";
  TestDaemon daemon("vmdeb", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  auto store = images::ImageStore::open(fs::path(daemon.dir()) / "state/images");
  ASSERT_TRUE(store) << store.error().message();
  images::DebianBuild build;
  build.name = "py";
  build.packages = {"python3"};
  build.cmd = {"python3", "-c", "import sys; print('entrypoint python', sys.version_info[0])"};
  auto image = images::buildDebianImage(*store, build);
  ASSERT_TRUE(image) << image.error().message();
  ASSERT_EQ(image->layerDirs.size(), 1u);
  const std::string oracleCommand = fmt::format("chroot '{}' python3 --version >'{}/oracle' 2>&1",
                                                image->layerDirs[0].string(), daemon.dir());
  ASSERT_EQ(std::system(oracleCommand.c_str()), 0);
  std::string oracle = corral::testing::readFile(daemon.dir() + "/oracle");
  ASSERT_TRUE(oracle.starts_with("Python 3.")) << oracle;

  json vm = runReady(daemon, "py-vm", "py");
  ASSERT_EQ(vm.value("state", ""), "running");
  EXPECT_EQ(execIn(daemon, "py-vm", {"python3", "--version"}), std::make_pair(0, oracle));
  auto [osCode, osRelease] = execIn(daemon, "py-vm", {"cat", "/etc/os-release"});
  EXPECT_EQ(osCode, 0);
  EXPECT_NE(osRelease.find("Debian GNU/Linux 12"), std::string::npos) << osRelease;
  EXPECT_TRUE(corral::testing::waitUntil(
      [&] {
        Reply logs = daemon.call("GET", "/v1/instances/py-vm/logs?offset=0");
        return logs.body.value("data", "").find("entrypoint python 3") != std::string::npos;
      },
      30s, "the image's entrypoint printing on the console"));
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/py-vm?force=true").status, 200);
  EXPECT_TRUE(ourDomains().empty());
}

json warmRunReady(const TestDaemon& daemon, const std::string& name, const std::string& image) {
  json spec = vmOf(name, image);
  spec["warm"] = true;
  Reply created = daemon.call("POST", "/v1/instances", spec);
  EXPECT_EQ(created.status, 201) << created.body.dump() << "\n" << daemon.log();
  json ready = daemon.waitWhile(name, "starting");
  EXPECT_EQ(ready.value("state", ""), "running") << ready.dump(2) << "\n" << daemon.log();
  EXPECT_EQ(ready["boot"].value("warm", false), true) << ready["boot"].dump();
  return ready;
}

// --warm for a store image (issue 16): the clones of one snapshot run on their own copies of the template's
// disk (the workload's file is there, a clone's writes are its own), each with its own hostname; a stopped
// clone boots its own disk cold. The image changed under the same name gets a new snapshot (the old key
// would boot the old image's workload and env), and removing the image removes both snapshots.
TEST(VmImage, WarmClonesOfAStoreImageHaveTheirOwnDisksAndAChangedImageANewSnapshot) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vmwarm", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  images::Image first = importAppImage(daemon, "app");
  ASSERT_FALSE(HasFailure());
  const fs::path snapshots = fs::path(daemon.vmsDir()) / ".snapshots";

  json w1 = warmRunReady(daemon, "w-1", "app");
  ASSERT_EQ(w1.value("state", ""), "running");
  const std::string key1 = w1["boot"]["domain_steps"].value("snapshot", "");
  EXPECT_EQ(w1["boot"]["domain_steps"].value("snapshot_made", false), true) << w1["boot"].dump();
  json w2 = warmRunReady(daemon, "w-2", "app");
  ASSERT_EQ(w2.value("state", ""), "running");
  EXPECT_EQ(w2["boot"]["domain_steps"].value("snapshot", ""), key1);
  EXPECT_EQ(w2["boot"]["domain_steps"].value("snapshot_made", true), false) << w2["boot"].dump();

  // Clones run as the default VM user too, on their own link to the base disk.
  EXPECT_EQ(qemuUid(w1), defaultVmUid()) << w1.dump(2);
  EXPECT_EQ(qemuUid(w2), defaultVmUid()) << w2.dump(2);
  EXPECT_TRUE(fs::exists(fs::path(daemon.vmsDir()) / "w-2/base.ext4"));
  for (const char* name : {"w-1", "w-2"}) {
    SCOPED_TRACE(name);
    EXPECT_EQ(execIn(daemon, name, {"hostname"}), std::make_pair(0, std::string(name) + "\n"));
    EXPECT_EQ(execIn(daemon, name, {"cat", "/etc/image-marker"}),
              std::make_pair(0, std::string("from-the-image\n")));
    EXPECT_EQ(execIn(daemon, name, {"sh", "-c", "echo $GREETING"}),
              std::make_pair(0, std::string("hello-vm\n")));
    EXPECT_EQ(execIn(daemon, name, {"cat", "/home/app/entry.out"}).first, 0)
        << "the template's workload ran on the disk the clone copied";
    EXPECT_TRUE(fs::exists(fs::path(daemon.vmsDir()) / name / "root.qcow2"));
  }
  EXPECT_EQ(execIn(daemon, "w-1", {"sh", "-c", "echo mine >/home/app/w1-only && sync"}).first, 0);
  EXPECT_NE(execIn(daemon, "w-2", {"cat", "/home/app/w1-only"}).first, 0) << "w-2 runs on its own disk";

  // Listed with what it is of.
  json listed = daemon.must("GET", "/v1/vm-snapshots", nullptr, 200);
  ASSERT_EQ(listed["snapshots"].size(), 1u) << listed.dump();
  EXPECT_EQ(listed["snapshots"][0]["key"], key1);
  EXPECT_EQ(listed["snapshots"][0]["image"], "app");
  EXPECT_EQ(listed["snapshots"][0]["image_digest"], first.manifestDigest.text());
  EXPECT_GT(listed["snapshots"][0].value("size_bytes", 0), 1 << 20);

  // A stopped clone starts again on its own disk, cold.
  ASSERT_EQ(daemon.call("POST", "/v1/instances/w-1/stop", {{"grace_seconds", 20}}).status, 200);
  ASSERT_EQ(daemon.call("POST", "/v1/instances/w-1/start").status, 200);
  json again = daemon.waitWhile("w-1", "starting");
  ASSERT_EQ(again.value("state", ""), "running") << again.dump(2) << "\n" << daemon.log();
  EXPECT_FALSE(again["boot"].contains("restored")) << again["boot"].dump();
  EXPECT_TRUE(again["boot"].contains("warm_note")) << again["boot"].dump();
  EXPECT_EQ(execIn(daemon, "w-1", {"cat", "/home/app/w1-only"}), std::make_pair(0, std::string("mine\n")));

  // The name moves to a changed image: a new key, the new image's env.
  {
    auto store = images::ImageStore::open(fs::path(daemon.dir()) / "state/images");
    ASSERT_TRUE(store);
    images::ImageConfig config = first.config;
    config.env = {"GREETING=second-image", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    auto second = store->importRootfs(fs::path(daemon.dir()) / "image-src/rootfs.tar", "app", config);
    ASSERT_TRUE(second) << second.error().message();
  }
  json w3 = warmRunReady(daemon, "w-3", "app");
  ASSERT_EQ(w3.value("state", ""), "running");
  const std::string key2 = w3["boot"]["domain_steps"].value("snapshot", "");
  EXPECT_NE(key2, key1) << "a changed image must not use the old image's snapshot";
  EXPECT_EQ(execIn(daemon, "w-3", {"sh", "-c", "echo $GREETING"}),
            std::make_pair(0, std::string("second-image\n")));

  // Bad keys: named, nothing removed.
  Reply bad = daemon.call("DELETE", "/v1/vm-snapshots/..%2Fw-1");
  EXPECT_EQ(bad.status, 400) << bad.body.dump();
  EXPECT_EQ(bad.body["error"].value("field", ""), "key") << bad.body.dump();
  EXPECT_EQ(daemon.call("DELETE", "/v1/vm-snapshots/" + std::string(32, '0')).status, 404);
  EXPECT_TRUE(fs::exists(snapshots / key1));

  // The clones go, then the image: both snapshots go with it (the first manifest has no name nor pin).
  for (const char* name : {"w-1", "w-2", "w-3"})
    EXPECT_EQ(daemon.call("DELETE", std::string("/v1/instances/") + name + "?force=true").status, 200);
  EXPECT_TRUE(fs::exists(snapshots / key1)) << "kept until the image goes";
  Reply removed = daemon.call("DELETE", "/v1/images/app");
  ASSERT_EQ(removed.status, 200) << removed.body.dump();
  std::set<std::string> gone;
  for (const json& key : removed.body["vm_snapshots_removed"]) gone.insert(key.get<std::string>());
  EXPECT_EQ(gone, (std::set<std::string>{key1, key2})) << removed.body.dump();
  EXPECT_FALSE(fs::exists(snapshots / key1));
  EXPECT_FALSE(fs::exists(snapshots / key2));
  EXPECT_EQ(daemon.must("GET", "/v1/vm-snapshots", nullptr, 200)["snapshots"], json::array());
  EXPECT_TRUE(ourDomains().empty());
}

TEST(VmImage, AnImageNowhereIsRefusedNamingTheField) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vmimg", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  Reply refused = daemon.call("POST", "/v1/instances", vmOf("nowhere", "no-such-image"));
  EXPECT_EQ(refused.status, 404) << refused.body.dump();
  ASSERT_TRUE(refused.body.contains("error")) << refused.body.dump();
  EXPECT_EQ(refused.body["error"].value("field", ""), "image") << refused.body.dump();
  EXPECT_NE(refused.body.dump().find("image store"), std::string::npos) << refused.body.dump();
  EXPECT_FALSE(fs::exists(fs::path(daemon.vmsDir()) / "nowhere"));
  EXPECT_TRUE(ourDomains().empty());
  EXPECT_EQ(daemon.call("GET", "/v1/instances/nowhere").status, 404);
}

}  // namespace
}  // namespace corral
