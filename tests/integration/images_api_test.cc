// The image API and CLI through a real corrald (TestDaemon): the busybox rootfs kept as an image, imports
// of a layout and a rootfs tar, pulls from Debian's docker-registry on 127.0.0.1 (images pushed with
// skopeo) with their progress stream, rm refused while an instance uses the image, and what a kill -9 of
// corrald or a Ctrl-C of the CLI in the middle of a pull leaves: nothing (a stalled blob from the test
// registry stub holds the pull there).
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api/client.h"
#include "tests/integration/harness.h"
#include "tests/integration/host_needs.h"
#include "tests/integration/images/layout_builder.h"
#include "tests/integration/images/process.h"
#include "tests/integration/images/tar_builder.h"

namespace corral::testing {
namespace {

namespace fs = std::filesystem;
using images::fixtures::ChildProcess;
using images::fixtures::LayoutBuilder;
using images::fixtures::TarBuilder;
using nlohmann::json;

constexpr const char* kStub = CORRAL_SOURCE_DIR "/tests/integration/images/registry_stub.py";

class ImagesApi : public ::testing::Test {
 protected:
  void SetUp() override {
    CORRAL_REQUIRE_HOST({.tools = {"/usr/bin/skopeo", "/usr/bin/docker-registry", "/usr/bin/python3"}});
    daemon_ = std::make_unique<TestDaemon>("img", std::vector<std::string>{"--accelerator", "tcg"});
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
    work_ = fs::path(daemon_->dir()) / "work";
    fs::create_directories(work_);
    // "app": two layers (the top one deletes a file) and a config that says what it runs.
    TarBuilder base, top;
    base.file("etc/motd", "hello\n");
    base.file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0755);
    base.file("var/big", std::string(400000, 'b'));
    top.file("etc/.wh.motd", "");
    top.file("srv/data", "payload", 0640, 1000, 1000);
    images::ImageConfig config;
    config.platform = images::hostPlatform();
    config.entrypoint = {"/usr/bin/tool"};
    config.cmd = {"--serve"};
    config.env = {"PATH=/usr/bin:/bin", "MODE=test"};
    config.workingDir = "/srv";
    config.user = "1000:1000";
    LayoutBuilder layout(work_ / "L");
    app_ = layout.image({&base, &top}, config);
    layout.name("app", app_);
    for (const images::Descriptor& layer : layout.layers(app_)) appLayers_.push_back(layer.digest);
  }

  void TearDown() override { daemon_.reset(); }

  void shell(const std::string& command) {
    std::string full = fmt::format("cd '{}' && ( {} ) >>tools.log 2>&1", work_.string(), command);
    ASSERT_EQ(std::system(full.c_str()), 0) << command << "\n" << readFile((work_ / "tools.log").string());
  }

  // A pull, import or build through the project's client, its progress kept.
  Result<json> stream(const api::Request& request, std::vector<api::ProgressEvent>* progress = nullptr) {
    api::Client client(daemon_->socket());
    return client.stream(request, [&](const api::ProgressEvent& event) {
      if (progress) progress->push_back(event);
    });
  }

  std::vector<std::string> imageNames() {
    std::vector<std::string> names;
    for (const json& image : daemon_->list("images")) names.push_back(image.value("name", ""));
    return names;
  }

  std::unique_ptr<ChildProcess> startRegistry(int* port) {
    *port = images::fixtures::freeLoopbackPort();
    std::ofstream(work_ / "registry.yml") << fmt::format(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/registry-data\n"
        "http:\n  addr: 127.0.0.1:{}\n",
        work_.string(), *port);
    auto registry = std::make_unique<ChildProcess>(
        std::vector<std::string>{"docker-registry", "serve", (work_ / "registry.yml").string()},
        (work_ / "registry.log").string());
    EXPECT_TRUE(images::fixtures::waitForListener(*port)) << readFile((work_ / "registry.log").string());
    return registry;
  }

  // The stub serving layout L; with `stallTop`, the top layer's blob stops halfway (it prints "stalled").
  std::unique_ptr<ChildProcess> startStub(bool stallTop, int* port) {
    std::vector<std::string> argv{"/usr/bin/python3", kStub, (work_ / "L").string()};
    if (stallTop) argv.insert(argv.end(), {"--stall", appLayers_[1].text()});
    auto stub = std::make_unique<ChildProcess>(argv, (work_ / "stub.log").string());
    auto line = stub->readLine();
    EXPECT_TRUE(line && line->starts_with("listening ")) << readFile((work_ / "stub.log").string());
    *port = line ? std::stoi(line->substr(10)) : 0;
    return stub;
  }

  fs::path store() const { return fs::path(daemon_->dir()) / "state/images"; }
  size_t blobCount() const {
    size_t n = 0;
    for (const auto& entry : fs::directory_iterator(store() / "blobs/sha256")) n += entry.is_regular_file();
    return n;
  }
  size_t ingestCount() const {
    return static_cast<size_t>(
        std::distance(fs::directory_iterator(store() / "ingest"), fs::directory_iterator()));
  }

  std::unique_ptr<TestDaemon> daemon_;
  fs::path work_;
  images::Descriptor app_;
  std::vector<images::Digest> appLayers_;
};

TEST_F(ImagesApi, BusyboxIsAnOrdinaryImageImportedOnce) {
  json busybox = daemon_->must("GET", "/v1/images/busybox", nullptr, 200);
  EXPECT_EQ(busybox["config"]["cmd"], json::array({"/bin/sh"}));
  ASSERT_EQ(busybox["layers"].size(), 1u);
  EXPECT_GT(busybox["layers"][0]["size"].get<int64_t>(), 100000);
  EXPECT_GT(busybox["disk_size"].get<int64_t>(), busybox["size"].get<int64_t>());
  EXPECT_TRUE(busybox["digest"].get<std::string>().starts_with("sha256:"));

  // A restart finds the same rootfs: no second import (same digest, same time, one log line).
  daemon_->stop();
  ASSERT_TRUE(daemon_->start()) << daemon_->log();
  json again = daemon_->must("GET", "/v1/images/busybox", nullptr, 200);
  EXPECT_EQ(again["digest"], busybox["digest"]);
  EXPECT_EQ(again["created_at"], busybox["created_at"]);
  std::string log = daemon_->log();
  size_t first = log.find("image busybox imported");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("image busybox imported", first + 1), std::string::npos) << log;
}

TEST_F(ImagesApi, ImportsALayoutAndARootfsTarAndInspectsThem) {
  std::vector<api::ProgressEvent> progress;
  auto app = stream(api::ImportImage{(work_ / "L").string(), "app"}, &progress);
  ASSERT_TRUE(app) << app.error().message() << daemon_->logTail();
  EXPECT_EQ((*app)["digest"], app_.digest.text());
  EXPECT_FALSE(progress.empty());

  json inspected = daemon_->must("GET", "/v1/images/app", nullptr, 200);
  EXPECT_EQ(inspected["config"]["entrypoint"], json::array({"/usr/bin/tool"}));
  EXPECT_EQ(inspected["config"]["cmd"], json::array({"--serve"}));
  EXPECT_EQ(inspected["config"]["env"], json::array({"PATH=/usr/bin:/bin", "MODE=test"}));
  EXPECT_EQ(inspected["config"]["working_dir"], "/srv");
  EXPECT_EQ(inspected["config"]["user"], "1000:1000");
  ASSERT_EQ(inspected["layers"].size(), 2u);
  EXPECT_EQ(inspected["layers"][0]["digest"], appLayers_[0].text());
  EXPECT_GT(inspected["layers"][0]["unpacked_size"].get<int64_t>(), 400000);

  TarBuilder rootfs;
  rootfs.file("bin/hello", "#!/bin/sh\necho hi\n", 0755);
  std::ofstream(work_ / "tiny.tar.gz", std::ios::binary) << rootfs.finish(images::Compression::gzip);
  auto tiny = stream(api::ImportImage{(work_ / "tiny.tar.gz").string(), ""});
  ASSERT_TRUE(tiny) << tiny.error().message();
  EXPECT_EQ((*tiny)["name"], "tiny") << "the name comes from the file without .tar.gz";
  EXPECT_EQ((*tiny)["layers"].size(), 1u);

  std::vector<std::string> names = imageNames();
  EXPECT_NE(std::find(names.begin(), names.end(), "app"), names.end());
  EXPECT_NE(std::find(names.begin(), names.end(), "tiny"), names.end());

  // Bad input answers 400 naming the field, before any work.
  Reply relative = daemon_->call("POST", "/v1/images/import", {{"path", "L"}});
  EXPECT_EQ(relative.status, 400);
  EXPECT_EQ(relative.body["error"]["field"], "path") << relative.body.dump();
  Reply missing = daemon_->call("POST", "/v1/images/import", {{"name", "x"}});
  EXPECT_EQ(missing.status, 400);
  EXPECT_EQ(missing.body["error"]["field"], "path");
  Reply badName =
      daemon_->call("POST", "/v1/images/import", {{"path", (work_ / "L").string()}, {"name", "Bad Name"}});
  EXPECT_EQ(badName.status, 400);
  EXPECT_EQ(badName.body["error"]["field"], "name") << badName.body.dump();
  Reply badPackage =
      daemon_->call("POST", "/v1/images/build", {{"name", "x"}, {"debian", {"python3", "No Such"}}});
  EXPECT_EQ(badPackage.status, 400);
  EXPECT_EQ(badPackage.body["error"]["field"], "debian[1]") << badPackage.body.dump();
  EXPECT_EQ(daemon_->call("GET", "/v1/images/nothing").status, 404);
}

TEST_F(ImagesApi, PullsFromARealRegistryWithProgress) {
  int port = 0;
  auto registry = startRegistry(&port);
  shell(fmt::format("skopeo copy --dest-tls-verify=false oci:L:app docker://127.0.0.1:{}/test/app:1", port));
  std::vector<api::ProgressEvent> progress;
  std::string reference = fmt::format("127.0.0.1:{}/test/app:1", port);
  auto pulled = stream(api::PullImage{reference, false, ""}, &progress);
  ASSERT_TRUE(pulled) << pulled.error().message() << daemon_->logTail();
  EXPECT_EQ((*pulled)["name"], reference);
  EXPECT_EQ((*pulled)["layers"].size(), 2u);
  bool sawLayerBytes = false, sawAllLayers = false;
  for (const api::ProgressEvent& event : progress) {
    if (event.step.find("layer") != std::string::npos && event.bytesTotal > 0 && event.bytesDone > 0)
      sawLayerBytes = true;
    if (event.layersTotal == 2 && event.layersDone == 2) sawAllLayers = true;
  }
  EXPECT_TRUE(sawLayerBytes);
  EXPECT_TRUE(sawAllLayers);
  json inspected = daemon_->must("GET", api::renderRequest(api::GetImage{reference}).target, nullptr,
                                 200);  // ':' and '/' in a path
  EXPECT_EQ(inspected["config"]["entrypoint"], json::array({"/usr/bin/tool"}));

  // An unknown repository: the error names the reference.
  auto missing = stream(api::PullImage{fmt::format("127.0.0.1:{}/test/nothing:1", port), false, "nothing"});
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find(fmt::format("127.0.0.1:{}/test/nothing:1", port)),
            std::string::npos)
      << missing.error().message();
}

TEST_F(ImagesApi, RemoveIsRefusedWhileAnInstanceUsesTheImage) {
  json spec = {{"name", "user"}, {"image", "busybox"}, {"command", {"sleep", "1000"}}};
  daemon_->must("POST", "/v1/instances", spec);
  Reply refused = daemon_->call("DELETE", "/v1/images/busybox");
  EXPECT_EQ(refused.status, 409);
  EXPECT_NE(refused.body.dump().find("user"), std::string::npos)
      << "names the instance: " << refused.body.dump();
  EXPECT_EQ(daemon_->must("GET", "/v1/images/busybox", nullptr, 200)["used_by"], json::array({"user"}));
  size_t blobsWithBusybox = blobCount();

  daemon_->must("DELETE", "/v1/instances/user?force=true", nullptr, 200);
  daemon_->must("DELETE", "/v1/images/busybox", nullptr, 200);
  EXPECT_EQ(imageNames(), std::vector<std::string>{});
  EXPECT_EQ(blobCount(), blobsWithBusybox - 3) << "its manifest, config and layer are collected";
  EXPECT_TRUE(fs::is_empty(store() / "layers"));
}

TEST_F(ImagesApi, AKill9OfCorraldMidPullLeavesNothingAndThePullRepeats) {
  int port = 0;
  auto stalled = startStub(true, &port);
  size_t blobsBefore = blobCount();
  std::string reference = fmt::format("127.0.0.1:{}/test/app:app", port);
  auto pull = std::async(std::launch::async, [&] { return stream(api::PullImage{reference, false, "app"}); });
  auto line = stalled->readLine();
  ASSERT_TRUE(line && line->starts_with("stalled")) << readFile((work_ / "stub.log").string());
  EXPECT_GT(ingestCount(), 0u) << "the half blob is being written";
  daemon_->kill9();
  EXPECT_FALSE(pull.get()) << "the stream ends with the daemon";

  ASSERT_TRUE(daemon_->start()) << daemon_->log();
  EXPECT_EQ(imageNames(), std::vector<std::string>{"busybox"});
  EXPECT_EQ(ingestCount(), 0u);
  EXPECT_EQ(blobCount(), blobsBefore) << "the killed pull's blobs are collected at start";

  int healthyPort = 0;
  auto healthy = startStub(false, &healthyPort);
  auto again = stream(api::PullImage{fmt::format("127.0.0.1:{}/test/app:app", healthyPort), false, "app"});
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ((*again)["digest"], app_.digest.text());
}

TEST_F(ImagesApi, CtrlCOfTheCliMidPullCancelsItInCorrald) {
  int port = 0;
  auto stalled = startStub(true, &port);
  size_t blobsBefore = blobCount();
  pid_t cli =
      daemon_->spawnCli({"image", "pull", fmt::format("127.0.0.1:{}/test/app:app", port), "--name", "app"});
  ASSERT_GT(cli, 0);
  auto line = stalled->readLine();
  ASSERT_TRUE(line && line->starts_with("stalled")) << readFile((work_ / "stub.log").string());
  ::kill(cli, SIGINT);
  int status = 0;
  ASSERT_EQ(::waitpid(cli, &status, 0), cli);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 130) << status;

  // corrald notices the closed connection, stops the transfer and collects what it had.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline &&
         daemon_->log().find("cancelled, the client went away") == std::string::npos) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(daemon_->log().find("cancelled, the client went away"), std::string::npos) << daemon_->logTail();
  EXPECT_EQ(imageNames(), std::vector<std::string>{"busybox"});
  EXPECT_EQ(ingestCount(), 0u);
  EXPECT_EQ(blobCount(), blobsBefore);
}

TEST_F(ImagesApi, CliShowsProgressLinesAndTheImage) {
  int port = 0;
  auto registry = startRegistry(&port);
  shell(fmt::format("skopeo copy --dest-tls-verify=false oci:L:app docker://127.0.0.1:{}/test/app:1", port));
  CliRun pull =
      daemon_->cli({"image", "pull", fmt::format("127.0.0.1:{}/test/app:1", port), "--name", "app"});
  ASSERT_EQ(pull.code, 0) << pull;
  // Not a terminal: one plain line per step, with bytes and layers.
  EXPECT_NE(pull.err.find("fetching layer 1/2"), std::string::npos) << pull;
  EXPECT_NE(pull.err.find("layers 2/2"), std::string::npos) << pull;
  EXPECT_EQ(pull.err.find('\r'), std::string::npos) << "no redrawn line when not on a terminal";
  EXPECT_NE(pull.out.find("app " + app_.digest.text()), std::string::npos) << pull;

  CliRun ls = daemon_->cli({"image", "ls"});
  ASSERT_EQ(ls.code, 0) << ls;
  EXPECT_NE(ls.out.find("app"), std::string::npos) << ls;
  CliRun inspect = daemon_->cli({"--json", "image", "inspect", "app"});
  ASSERT_EQ(inspect.code, 0) << inspect;
  EXPECT_EQ(json::parse(inspect.out)["digest"], app_.digest.text());
  CliRun rm = daemon_->cli({"image", "rm", "app"});
  EXPECT_EQ(rm.code, 0) << rm;
  CliRun gone = daemon_->cli({"image", "inspect", "app"});
  EXPECT_EQ(gone.code, 1) << gone;
}

}  // namespace
}  // namespace corral::testing
