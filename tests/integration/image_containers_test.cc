// Containers from OCI images on the real kernel (root): a multi-layer image made with LayoutBuilder (a
// whiteout, an opaque directory, a hard link, a user with supplementary groups, a workdir that does not
// exist yet, Env), imported into an ImageStore and run with the runtime directly (with and without a user
// namespace, and with more layers than mount(2)'s page of options takes), then through corrald: its own
// Entrypoint + Cmd, the digest in inspect, the image pinned while the instance exists, and refusals that
// leave nothing behind.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "container/caps.h"
#include "container/runtime.h"
#include "container/seccomp.h"
#include "images/oci/image_store.h"
#include "images/oci/launch.h"
#include "tests/integration/harness.h"
#include "tests/integration/images/layout_builder.h"
#include "tests/integration/images/tar_builder.h"

namespace corral {
namespace {

namespace fs = std::filesystem;
using images::fixtures::LayoutBuilder;
using images::fixtures::TarBuilder;
using nlohmann::json;
using testing::TestDaemon;

const fs::path kBusybox = fs::path(CORRAL_IMAGE_DIR) / "busybox" / "rootfs" / "bin" / "busybox";
const std::string kCgroupParent = fmt::format("corral-test-imagerun-{}", ::getpid());

// What every test container prints, one KEY=VALUE a line.
constexpr const char* kReport =
    "echo uid=$(id -u) gid=$(id -g) groups=\"$(id -G)\"; echo pwd=$(pwd); echo greeting=$GREETING; "
    "echo mode=$MODE; echo home=$HOME; echo motd=$(cat /etc/motd); echo data=$(ls /data); "
    "if [ -e /gone.txt ]; then echo gone=present; else echo gone=absent; fi; "
    "echo links=$(stat -c %h /usr/share/a.txt); echo b=$(cat /usr/share/b.txt); "
    "echo motd_owner=$(stat -c %u /etc/motd); echo workdir_owner=$(stat -c %u .)";

std::string readWhole(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::map<std::string, std::string> keyValues(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    size_t eq = line.find('=');
    if (eq != std::string::npos) values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return values;
}

// busybox and the applets the report uses.
TarBuilder busyboxLayer() {
  TarBuilder base;
  base.directory("bin");
  base.file("bin/busybox", readWhole(kBusybox), 0755);
  for (const char* applet : {"sh", "id", "cat", "ls", "stat", "touch", "echo", "wc"})
    base.symlink(fmt::format("bin/{}", applet), "busybox");
  return base;
}

// Base first: busybox; /etc with passwd, group and motd, /gone.txt and /data/old.txt; then a layer that
// replaces passwd and group (app becomes 1234, in staff), whites out /gone.txt, makes /data opaque with a
// new file, and adds a hard-linked pair; then one that replaces motd.
images::Descriptor appImage(LayoutBuilder& layout, const std::string& user) {
  TarBuilder base = busyboxLayer();
  base.directory("etc");
  base.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n");
  base.file("etc/group", "root:x:0:\napp:x:1000:\n");
  base.file("etc/motd", "base\n");
  base.file("gone.txt", "soon gone\n");
  base.directory("data");
  base.file("data/old.txt", "old\n");
  TarBuilder middle;
  middle.directory("etc");
  middle.file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1234:1234:app:/home/app:/bin/sh\n");
  middle.file("etc/group", "root:x:0:\napp:x:1234:\nstaff:x:50:app\n");
  middle.file(".wh.gone.txt", "");
  middle.directory("data");
  middle.file("data/.wh..wh..opq", "");
  middle.file("data/new.txt", "new\n");
  middle.directory("usr");
  middle.directory("usr/share");
  middle.file("usr/share/a.txt", "linked\n");
  middle.hardlink("usr/share/b.txt", "usr/share/a.txt");
  TarBuilder top;
  top.directory("etc");
  top.file("etc/motd", "top\n");
  images::ImageConfig config;
  config.platform = {"linux", "amd64", ""};
  config.entrypoint = {"/bin/sh", "-c"};
  config.cmd = {kReport};
  config.env = {"PATH=/bin", "GREETING=hello", "MODE=image"};
  config.workingDir = "/srv/app";
  config.user = user;
  return layout.image({&base, &middle, &top}, config);
}

class ImageContainerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::requireRoot()) GTEST_SKIP() << "containers need root";
    ASSERT_TRUE(fs::exists(kBusybox)) << kBusybox;
    // Under /var/tmp: a real filesystem with trusted xattrs (the opaque directory), unlike some /tmp.
    dir_ =
        fs::path("/var/tmp") / fmt::format("corral-imagerun-{}-{}", ::getpid(),
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    for (const char* base : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
      std::error_code ec;
      for (const auto& entry : fs::directory_iterator(base, ec))
        ::rmdir((entry.path() / kCgroupParent).c_str());
      ::rmdir((fs::path(base) / kCgroupParent).c_str());
    }
    fs::remove_all(dir_);
  }

  images::Image import(const std::function<images::Descriptor(LayoutBuilder&)>& make) {
    LayoutBuilder layout(dir_ / "layout");
    layout.name("app", make(layout));
    auto store = images::ImageStore::open(dir_ / "store");
    EXPECT_TRUE(store.has_value()) << store.error().message();
    auto image = store->importLayout(dir_ / "layout", "app", "app");
    EXPECT_TRUE(image.has_value()) << image.error().message();
    return image.value_or(images::Image{});
  }

  container::ContainerConfig configFor(const images::Image& image, std::vector<std::string> command = {}) {
    auto launch = images::launchProcess(image.config, image.layerDirs, command, {"MODE=user"});
    EXPECT_TRUE(launch.has_value()) << launch.error().message();
    container::ContainerConfig c;
    c.name = fmt::format("img-{}-{}", ::getpid(), ++counter_);
    c.lowerDirs.assign(image.layerDirs.rbegin(), image.layerDirs.rend());
    c.bundleDir = dir_ / "bundles" / c.name;
    c.argv = launch->argv;
    c.env = launch->env;
    c.workingDir = launch->workingDir;
    c.user = {launch->user.uid,
              launch->user.gid,
              {launch->user.additionalGids.begin(), launch->user.additionalGids.end()}};
    c.hostname = "img";
    c.capabilities = container::dockerDefaultCapabilities();
    c.seccomp = container::dockerDefaultProfile(c.capabilities);
    c.cgroupOptions.parent = kCgroupParent;
    return c;
  }

  // Runs the container to its end; its output (stdout and stderr) and exit code.
  std::pair<std::string, int> run(const container::ContainerConfig& c) {
    int fds[2];
    EXPECT_EQ(::pipe2(fds, O_CLOEXEC), 0);
    UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
    auto started = container::startContainer(c, {-1, writeEnd.get(), -1});
    writeEnd.reset();
    if (!started) {
      ADD_FAILURE() << started.error().message();
      return {"", -1};
    }
    std::string output;
    char buffer[4096];
    for (ssize_t n; (n = ::read(readEnd.get(), buffer, sizeof buffer)) > 0;) output.append(buffer, size_t(n));
    int status = 0;
    EXPECT_EQ(::waitpid(started->pid(), &status, 0), started->pid());
    return {output, WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status)};
  }

  void expectTheImagesView(const std::string& output, const std::string& motdOwner) {
    auto values = keyValues(output);
    EXPECT_NE(output.find("uid=1234 gid=1234 groups=1234 50\n"), std::string::npos) << output;
    EXPECT_EQ(values["pwd"], "/srv/app") << output;
    EXPECT_EQ(values["greeting"], "hello");
    EXPECT_EQ(values["mode"], "user") << "the user's env replaces the image's";
    EXPECT_EQ(values["home"], "/home/app");
    EXPECT_EQ(values["motd"], "top") << "the topmost layer wins";
    EXPECT_EQ(values["data"], "new.txt") << "the opaque directory hides the base's old.txt";
    EXPECT_EQ(values["gone"], "absent") << "the whiteout hides /gone.txt";
    EXPECT_EQ(values["links"], "2") << "a.txt and b.txt are one file";
    EXPECT_EQ(values["b"], "linked");
    EXPECT_EQ(values["motd_owner"], motdOwner);
    // Made by the runtime as the container's root, as docker does: not the user's to write in.
    EXPECT_EQ(values["workdir_owner"], "0") << output;
  }

  fs::path dir_;
  int counter_ = 0;
};

TEST_F(ImageContainerTest, RunsTheLayerStackAsTheImagesUserInItsWorkdirWithItsEnv) {
  images::Image image = import([](LayoutBuilder& layout) { return appImage(layout, "app"); });
  ASSERT_EQ(image.layerDirs.size(), 3u);
  container::ContainerConfig c = configFor(image);
  EXPECT_EQ(c.argv, (std::vector<std::string>{"/bin/sh", "-c", kReport}));
  auto [output, code] = run(c);
  EXPECT_EQ(code, 0) << output;
  expectTheImagesView(output, "0");
  EXPECT_FALSE(fs::exists(c.bundleDir)) << "the bundle goes with the container";
}

// One idmapped mount per layer: the image's root-owned files belong to the container's root, and the
// supplementary group needs setgroups "allow".
TEST_F(ImageContainerTest, RunsTheLayerStackInAUserNamespace) {
  images::Image image = import([](LayoutBuilder& layout) { return appImage(layout, "app"); });
  container::ContainerConfig c = configFor(image);
  c.userNamespace = container::IdMapping::oneRange(300000, 65536);
  auto [output, code] = run(c);
  EXPECT_EQ(code, 0) << output;
  expectTheImagesView(output, "0");
  EXPECT_FALSE(fs::exists(c.bundleDir));
}

// 46 layers of store paths take more than a page of mount options: the runtime stacks them with fsconfig's
// "lowerdir+"; with a user namespace the idmapped mount points are short enough for mount(2).
TEST_F(ImageContainerTest, StacksMoreLayersThanMountOptionsHold) {
  constexpr int kLayers = 45;
  images::Image image = import([&](LayoutBuilder& layout) {
    std::vector<TarBuilder> layers(kLayers + 1);
    layers[0] = busyboxLayer();
    for (int i = 1; i <= kLayers; ++i) {
      layers[static_cast<size_t>(i)].directory("layers");
      layers[static_cast<size_t>(i)].file(fmt::format("layers/{}", i), fmt::format("{}\n", i));
      layers[static_cast<size_t>(i)].file("layers/top", fmt::format("{}\n", i));
    }
    std::vector<const TarBuilder*> pointers;
    for (const TarBuilder& layer : layers) pointers.push_back(&layer);
    images::ImageConfig config;
    config.platform = {"linux", "amd64", ""};
    config.cmd = {"/bin/sh", "-c",
                  "echo count=$(ls /layers | wc -l) top=$(cat /layers/top) first=$(cat /layers/1)"};
    return layout.image(pointers, config);
  });
  ASSERT_EQ(image.layerDirs.size(), size_t{kLayers + 1});
  size_t optionBytes = 0;
  for (const fs::path& layer : image.layerDirs) optionBytes += layer.string().size() + 1;
  ASSERT_GT(optionBytes, 4096u) << "the layers' paths must not fit in one page for this test";
  for (bool userNamespace : {false, true}) {
    container::ContainerConfig c = configFor(image);
    if (userNamespace) c.userNamespace = container::IdMapping::oneRange(300000, 65536);
    auto [output, code] = run(c);
    EXPECT_EQ(code, 0) << output;
    EXPECT_NE(output.find(fmt::format("count={} top={} first=1", kLayers + 1, kLayers)), std::string::npos)
        << "user namespace: " << userNamespace << "\n"
        << output;
  }
}

// ---- Through corrald ----

// Imports the app image into the daemon's store (<state dir>/images) as `name`.
images::Image importIntoDaemon(const TestDaemon& daemon, const std::string& name, const std::string& user) {
  fs::path layoutDir = fs::path(daemon.dir()) / ("layout-" + name);
  LayoutBuilder layout(layoutDir);
  layout.name(name, appImage(layout, user));
  auto store = images::ImageStore::open(fs::path(daemon.dir()) / "state" / "images");
  EXPECT_TRUE(store.has_value()) << store.error().message();
  auto image = store->importLayout(layoutDir, name, name);
  EXPECT_TRUE(image.has_value()) << image.error().message();
  return image.value_or(images::Image{});
}

TEST(ImageInstances, RunsAStoreImageWithItsOwnEntrypointAndKeepsItPinned) {
  if (!testing::requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("imagerun", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  images::Image image = importIntoDaemon(daemon, "example.org/app:1", "app");
  ASSERT_FALSE(image.layerDirs.empty());

  json spec = {{"name", "web"}, {"image", "example.org/app:1"}, {"env", {"MODE=user"}}};
  json created = daemon.must("POST", "/v1/instances", spec);
  EXPECT_EQ(created["image_digest"], image.manifestDigest.text()) << created.dump();
  EXPECT_EQ(created["command"], (json{"/bin/sh", "-c", kReport}));
  json done = daemon.waitWhile("web", "running");
  EXPECT_EQ(done["exit_code"], 0) << done.dump();
  json logs = daemon.must("GET", "/v1/instances/web/logs?offset=0", nullptr, 200);
  std::string output = logs["data"].get<std::string>();
  auto values = keyValues(output);
  EXPECT_NE(output.find("uid=1234 gid=1234"), std::string::npos) << output;
  EXPECT_EQ(values["pwd"], "/srv/app") << output;
  EXPECT_EQ(values["greeting"], "hello");
  EXPECT_EQ(values["mode"], "user");
  EXPECT_EQ(values["data"], "new.txt");
  EXPECT_EQ(values["gone"], "absent");
  EXPECT_EQ(daemon.must("GET", "/v1/instances/web", nullptr, 200)["image_digest"],
            image.manifestDigest.text());

  // The CLI names an instance of a reference after its last part.
  testing::CliRun cli = daemon.cli({"run", "-d", "--image", "example.org/app:1"});
  EXPECT_EQ(cli.code, 0) << cli.out << cli.err;
  const std::string cliName = cli.out.substr(0, cli.out.find(' '));
  EXPECT_TRUE(cliName.starts_with("app-")) << cli.out << cli.err;
  daemon.must("DELETE", "/v1/instances/" + cliName + "?force=true", nullptr, 200);

  // The image loses its name while the stopped instance still has it: its layers stay, and the instance
  // starts again from them after a daemon restart.
  {
    auto store = images::ImageStore::open(fs::path(daemon.dir()) / "state" / "images");
    ASSERT_TRUE(store.has_value());
    ASSERT_TRUE(store->remove("example.org/app:1").has_value());
  }
  for (const fs::path& layer : image.layerDirs) EXPECT_TRUE(fs::exists(layer)) << layer << " was collected";
  daemon.stop();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  for (const fs::path& layer : image.layerDirs) EXPECT_TRUE(fs::exists(layer)) << layer << " was collected";
  json restarted = daemon.must("POST", "/v1/instances/web/start", json::object(), 200);
  EXPECT_EQ(restarted["image_digest"], image.manifestDigest.text());
  EXPECT_EQ(daemon.waitWhile("web", "running")["exit_code"], 0);

  // rm drops the pin; the nameless image's layers are collected.
  daemon.must("DELETE", "/v1/instances/web", nullptr, 200);
  for (const fs::path& layer : image.layerDirs) EXPECT_FALSE(fs::exists(layer)) << layer << " stayed";
  EXPECT_TRUE(fs::is_empty(fs::path(daemon.dir()) / "state" / "images" / "pins"));
}

TEST(ImageInstances, RefusalsNameTheFieldAndLeaveNothingBehind) {
  if (!testing::requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("imagebad", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  importIntoDaemon(daemon, "ghostly", "ghost");
  const fs::path pins = fs::path(daemon.dir()) / "state" / "images" / "pins";

  testing::Reply unknown = daemon.call("POST", "/v1/instances", {{"name", "a"}, {"image", "no-such-image"}});
  EXPECT_EQ(unknown.status, 404) << unknown.body.dump();
  EXPECT_EQ(unknown.body["error"]["field"], "image") << unknown.body.dump();

  testing::Reply ghost = daemon.call("POST", "/v1/instances", {{"name", "b"}, {"image", "ghostly"}});
  EXPECT_EQ(ghost.status, 400) << ghost.body.dump();
  EXPECT_EQ(ghost.body["error"]["field"], "user") << ghost.body.dump();
  EXPECT_NE(ghost.body.dump().find("no user \\\"ghost\\\" in the image's /etc/passwd"), std::string::npos)
      << ghost.body.dump();

  EXPECT_TRUE(daemon.instances().empty());
  EXPECT_TRUE(fs::is_empty(pins)) << "a refused run pins nothing";
  EXPECT_TRUE(!fs::exists(daemon.containersDir()) || fs::is_empty(daemon.containersDir()));
}

// `user` (corral run --user) replaces the image's User, resolved by the same rules through the image's
// files; one the files do not resolve is refused naming the field, leaving nothing behind.
TEST(ImageInstances, UserOverridesTheImagesUser) {
  if (!testing::requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("imageuser", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  importIntoDaemon(daemon, "example.org/app:1", "app");
  const fs::path pins = fs::path(daemon.dir()) / "state" / "images" / "pins";
  auto runAs = [&](const std::string& name, const std::string& user) {
    json created = daemon.must("POST", "/v1/instances",
                               {{"name", name}, {"image", "example.org/app:1"}, {"user", user}});
    EXPECT_EQ(created["spec"]["user"], user) << created.dump();
    EXPECT_EQ(daemon.waitWhile(name, "running")["exit_code"], 0);
    return keyValues(daemon.must("GET", "/v1/instances/" + name + "/logs?offset=0", nullptr, 200)["data"]
                         .get<std::string>());
  };
  auto root = runAs("asroot", "root");
  EXPECT_EQ(root["uid"], "0 gid=0 groups=0");
  EXPECT_EQ(root["home"], "/root") << "HOME from the given user's entry";
  auto staff = runAs("asstaff", "app:staff");
  EXPECT_EQ(staff["uid"], "1234 gid=50 groups=50");
  auto numeric = runAs("numeric", "4321:4321");
  EXPECT_EQ(numeric["uid"], "4321 gid=4321 groups=4321");

  // busybox too (a store image now), and its built-in directory's files would say the same.
  json busybox = daemon.must("POST", "/v1/instances",
                             {{"name", "bb"},
                              {"image", "busybox"},
                              {"user", "1000:1000"},
                              {"command", {"/bin/sh", "-c", "echo id=$(id -u):$(id -g)"}}});
  EXPECT_EQ(daemon.waitWhile("bb", "running")["exit_code"], 0);
  EXPECT_NE(
      daemon.must("GET", "/v1/instances/bb/logs?offset=0", nullptr, 200)["data"].get<std::string>().find(
          "id=1000:1000"),
      std::string::npos);

  testing::Reply ghost = daemon.call("POST", "/v1/instances",
                                     {{"name", "ghost"}, {"image", "example.org/app:1"}, {"user", "ghost"}});
  EXPECT_EQ(ghost.status, 400) << ghost.body.dump();
  EXPECT_EQ(ghost.body["error"]["field"], "user") << ghost.body.dump();
  EXPECT_NE(ghost.body.dump().find("user \\\"ghost\\\": no user"), std::string::npos) << ghost.body.dump();
  testing::Reply group = daemon.call(
      "POST", "/v1/instances", {{"name", "nogroup"}, {"image", "example.org/app:1"}, {"user", "app:wheel"}});
  EXPECT_EQ(group.status, 400) << group.body.dump();
  EXPECT_EQ(group.body["error"]["field"], "user") << group.body.dump();
  EXPECT_FALSE(fs::exists(pins / "ghost"));
  EXPECT_FALSE(fs::exists(pins / "nogroup"));
  EXPECT_EQ(daemon.call("GET", "/v1/instances/ghost").status, 404);
}

// busybox is an ordinary store image (imported at startup): a container of it runs its layer from the
// store, pinned like any image's, with the image's PATH; without a command it runs the image's Cmd, /bin/sh.
TEST(ImageInstances, BusyboxRunsFromTheStoreLikeAnyImage) {
  if (!testing::requireRoot()) GTEST_SKIP() << "running containers needs root";
  TestDaemon daemon("imagebusybox", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  const fs::path storeDir = fs::path(daemon.dir()) / "state" / "images";
  const json busybox = daemon.must("GET", "/v1/images/busybox", nullptr, 200);
  ASSERT_EQ(busybox["layers"].size(), 1u) << busybox.dump();
  const std::string layerDir =
      (storeDir / "layers" / busybox["layers"][0]["digest"].get<std::string>().substr(7)).string();

  json spec = {{"name", "bb"},
               {"image", "busybox"},
               {"command",
                {"/bin/sh", "-c",
                 "echo path=$PATH; grep -q '" + layerDir + "' /proc/self/mountinfo && echo lower=store"}}};
  json created = daemon.must("POST", "/v1/instances", spec);
  EXPECT_EQ(created["image_digest"], busybox["digest"]) << created.dump();
  EXPECT_TRUE(fs::exists(storeDir / "pins" / "bb")) << "a busybox container pins its image";
  EXPECT_EQ(daemon.waitWhile("bb", "running")["exit_code"], 0);
  const std::string output =
      daemon.must("GET", "/v1/instances/bb/logs?offset=0", nullptr, 200)["data"].get<std::string>();
  auto values = keyValues(output);
  EXPECT_EQ(values["path"], "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin") << output;
  EXPECT_EQ(values["lower"], "store") << "the root's lower directory is the store's layer: " << output;

  // Without a command: the image's Cmd (/bin/sh, which ends at once on /dev/null), as the built-in did.
  json shell = daemon.must("POST", "/v1/instances", {{"name", "sh"}, {"image", "busybox"}});
  EXPECT_EQ(shell["command"], json::array({"/bin/sh"})) << shell.dump();
  EXPECT_EQ(daemon.waitWhile("sh", "running")["exit_code"], 0);

  // The pin outlives the name: a stopped container keeps its image (rm refuses), rm of the instance frees it.
  testing::Reply refused = daemon.call("DELETE", "/v1/images/busybox");
  EXPECT_EQ(refused.status, 409) << refused.body.dump();
  daemon.must("DELETE", "/v1/instances/bb", nullptr, 200);
  daemon.must("DELETE", "/v1/instances/sh", nullptr, 200);
  EXPECT_TRUE(fs::is_empty(storeDir / "pins"));
  daemon.must("DELETE", "/v1/images/busybox", nullptr, 200);
}

}  // namespace
}  // namespace corral
