// Pulling over the distribution API from real servers started here on 127.0.0.1: Debian's docker-registry
// (plain, and with TLS and htpasswd basic auth; images pushed with skopeo) and, for what a real registry
// cannot be made to do (a corrupt, truncated or stalled blob, a bearer-token challenge, redirected blobs),
// a stub serving an OCI layout. Every pulled image is compared with umoci's unpack of its source layout.
#include "images/oci/registry.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "tests/integration/images/layout_builder.h"
#include "tests/integration/images/process.h"
#include "tests/integration/images/root_fixture.h"
#include "tests/integration/images/tar_builder.h"
#include "tests/integration/images/tree.h"

namespace corral::images {
namespace {

namespace fs = std::filesystem;
using fixtures::ChildProcess;
using fixtures::LayoutBuilder;
using fixtures::readFile;
using fixtures::TarBuilder;
using fixtures::treeDifferences;

constexpr const char* kStub = CORRAL_SOURCE_DIR "/tests/integration/images/registry_stub.py";

class RegistryTest : public fixtures::ImagesRootTest {
 protected:
  void SetUp() override {
    ImagesRootTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    // "app": two layers, the top one with a whiteout, a hard link, a symlink and owners.
    TarBuilder base, top;
    base.directory("etc");
    base.file("etc/motd", "hello\n");
    base.file("etc/os-release", "ID=corral\n");
    base.file("usr/bin/tool", "#!/bin/sh\necho tool\n", 0755);
    base.file("var/big", std::string(300000, 'b'));
    top.file("etc/.wh.motd", "");
    top.file("srv/data", "payload", 0640, 1000, 1000);
    top.hardlink("srv/data-link", "srv/data");
    top.symlink("srv/current", "data");
    ImageConfig config;
    config.platform = hostPlatform();
    config.cmd = {"/usr/bin/tool"};
    LayoutBuilder layout(work_ / "L");
    app_ = layout.image({&base, &top}, config);
    layout.name("app", app_);
    for (const Descriptor& layer : layout.layers(app_)) appLayers_.push_back(layer.digest);
  }
  // docker-registry on 127.0.0.1; with `tls`, a self-signed certificate for 127.0.0.1 and htpasswd users.
  std::unique_ptr<ChildProcess> startRegistry(bool tls, int* port) {
    *port = fixtures::freeLoopbackPort();
    std::string config = fmt::format(
        "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}/registry-data\n"
        "http:\n  addr: 127.0.0.1:{}\n",
        work_.string(), *port);
    if (tls) {
      run("openssl req -x509 -newkey rsa:2048 -nodes -keyout key.pem -out cert.pem -days 2 -subj "
          "/CN=127.0.0.1 "
          "-addext subjectAltName=IP:127.0.0.1 && htpasswd -Bbn alice s3cret >htpasswd");
      config += fmt::format(
          "  tls:\n    certificate: {0}/cert.pem\n    key: {0}/key.pem\nauth:\n  htpasswd:\n    realm: "
          "corral-test\n"
          "    path: {0}/htpasswd\n",
          work_.string());
    }
    std::ofstream(work_ / "registry.yml") << config;
    auto registry = std::make_unique<ChildProcess>(
        std::vector<std::string>{"docker-registry", "serve", (work_ / "registry.yml").string()},
        (work_ / "registry.log").string());
    EXPECT_TRUE(fixtures::waitForListener(*port)) << readFile(work_ / "registry.log");
    return registry;
  }

  std::unique_ptr<ChildProcess> startStub(const std::vector<std::string>& flags, int* port) {
    std::vector<std::string> argv{"/usr/bin/python3", kStub, (work_ / "L").string()};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto stub = std::make_unique<ChildProcess>(argv, (work_ / "stub.log").string());
    auto line = stub->readLine();
    EXPECT_TRUE(line && line->starts_with("listening ")) << readFile(work_ / "stub.log");
    *port = line ? std::stoi(line->substr(10)) : 0;
    return stub;
  }

  Result<Image> pull(ImageStore& store, const std::string& text, const std::string& name,
                     RegistryOptions options = {}, std::vector<std::string>* steps = nullptr) {
    auto reference = parseReference(text);
    if (!reference) return fail(reference.error());
    Registry registry(*reference, options);
    return store.pull(registry, reference->manifestReference(), reference->digest, name,
                      [&](const ImportProgress& p) {
                        if (steps && (steps->empty() || steps->back() != p.step)) steps->push_back(p.step);
                      });
  }

  std::vector<std::string> compareWithUmoci(const Image& image) {
    if (!fs::exists(work_ / "oracle")) run("umoci unpack --image L:app oracle >/dev/null");
    fs::path merged = work_ / fmt::format("merged-{}", image.name);
    fs::create_directories(merged);
    std::string lower;
    for (auto it = image.layerDirs.rbegin(); it != image.layerDirs.rend(); ++it)
      lower += (lower.empty() ? "" : ":") + it->string();
    EXPECT_EQ(::mount("overlay", merged.c_str(), "overlay", MS_RDONLY, ("lowerdir=" + lower).c_str()), 0);
    auto differences = treeDifferences(merged, work_ / "oracle/rootfs");
    ::umount2(merged.c_str(), MNT_DETACH);
    return differences;
  }

  size_t blobCount(const ImageStore& store) {
    auto blobs = store.blobs().list();
    return blobs ? blobs->size() : 0;
  }

  Descriptor app_;
  std::vector<Digest> appLayers_;
};

TEST_F(RegistryTest, PullsFromAPlainLoopbackRegistryWhatSkopeoPushed) {
  int port = 0;
  auto registry = startRegistry(false, &port);
  run(fmt::format("skopeo copy --dest-tls-verify=false oci:L:app docker://127.0.0.1:{}/test/app:1", port));
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  std::vector<std::string> steps;
  auto image = pull(*store, fmt::format("127.0.0.1:{}/test/app:1", port), "app", {}, &steps);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(image->config.cmd, std::vector<std::string>{"/usr/bin/tool"});
  EXPECT_EQ(compareWithUmoci(*image), std::vector<std::string>{});
  EXPECT_NE(std::find(steps.begin(), steps.end(), "fetching layer 2/2"), steps.end());

  // Again, by digest: nothing is fetched twice.
  steps.clear();
  auto again = pull(*store, fmt::format("127.0.0.1:{}/test/app@{}", port, image->manifestDigest.text()),
                    "app-again", {}, &steps);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ(again->manifestDigest, image->manifestDigest);
  for (const std::string& step : steps) EXPECT_FALSE(step.starts_with("fetching")) << step;

  auto unknown = pull(*store, fmt::format("127.0.0.1:{}/test/nope:1", port), "nope");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().kind(), ErrorKind::NotFound) << unknown.error().message();
  EXPECT_NE(unknown.error().message().find("test/nope:1"), std::string::npos) << unknown.error().message();
  auto badDigest =
      pull(*store, fmt::format("127.0.0.1:{}/test/app@sha256:{}", port, std::string(64, '0')), "x");
  ASSERT_FALSE(badDigest);
}

TEST_F(RegistryTest, PullsOverTlsWithBasicAuthAndRefusesWithoutIt) {
  int port = 0;
  auto registry = startRegistry(true, &port);
  run(
      fmt::format("skopeo copy --dest-tls-verify=false --dest-creds alice:s3cret oci:L:app "
                  "docker://127.0.0.1:{}/test/app:1",
                  port));
  std::ofstream(work_ / "auth.json") << fmt::format(
      R"({{"auths":{{"127.0.0.1:{}":{{"auth":"YWxpY2U6czNjcmV0"}}}}}})", port);
  std::ofstream(work_ / "wrong.json")
      << fmt::format(R"({{"auths":{{"127.0.0.1:{}":{{"auth":"YWxpY2U6bm9wZQ=="}}}}}})", port);
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  std::string ref = fmt::format("127.0.0.1:{}/test/app:1", port);

  RegistryOptions anonymousOptions;
  anonymousOptions.caFile = work_ / "cert.pem";
  auto anonymous = pull(*store, ref, "app", anonymousOptions);
  ASSERT_FALSE(anonymous);
  EXPECT_EQ(anonymous.error().kind(), ErrorKind::Forbidden) << anonymous.error().message();
  EXPECT_NE(anonymous.error().message().find("needs a user name and password"), std::string::npos)
      << anonymous.error().message();
  RegistryOptions wrongOptions = anonymousOptions;
  wrongOptions.authFile = work_ / "wrong.json";
  auto wrong = pull(*store, ref, "app", wrongOptions);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().kind(), ErrorKind::Forbidden) << wrong.error().message();
  RegistryOptions untrustedOptions;
  untrustedOptions.authFile = work_ / "auth.json";
  auto untrusted = pull(*store, ref, "app", untrustedOptions);
  ASSERT_FALSE(untrusted) << "a self-signed certificate is not trusted without its CA";
  EXPECT_EQ(blobCount(*store), 0u);

  RegistryOptions goodOptions = anonymousOptions;
  goodOptions.authFile = work_ / "auth.json";
  auto image = pull(*store, ref, "app", goodOptions);
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(compareWithUmoci(*image), std::vector<std::string>{});
}

TEST_F(RegistryTest, PicksThisHostsPlatformFromAnIndex) {
  TarBuilder amd, arm;
  amd.file("arch", "amd64\n");
  arm.file("arch", "arm64\n");
  ImageConfig amdConfig, armConfig;
  amdConfig.platform = {"linux", "amd64", ""};
  armConfig.platform = {"linux", "arm64", ""};
  LayoutBuilder layout(work_ / "M");
  auto index = layout.index({layout.image({&arm}, armConfig), layout.image({&amd}, amdConfig)});
  layout.name("multi", index);
  int port = 0;
  auto registry = startRegistry(false, &port);
  run(fmt::format("skopeo copy --all --dest-tls-verify=false oci:M:multi docker://127.0.0.1:{}/test/multi:1",
                  port));
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  auto image = pull(*store, fmt::format("127.0.0.1:{}/test/multi:1", port), "multi");
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(image->config.platform.architecture, "amd64");
  EXPECT_EQ(readFile(image->layerDirs.at(0) / "arch"), "amd64\n");
}

TEST_F(RegistryTest, AnswersABearerChallengeAndFollowsBlobRedirects) {
  int port = 0;
  auto stub = startStub({"--bearer", "--redirect"}, &port);
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  auto image = pull(*store, fmt::format("127.0.0.1:{}/test/app:app", port), "app");
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(compareWithUmoci(*image), std::vector<std::string>{});
}

TEST_F(RegistryTest, ACorruptOrTruncatedBlobLeavesNothing) {
  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store);
  for (std::string_view how : {"--corrupt", "--truncate"}) {
    int port = 0;
    auto stub = startStub({std::string(how), appLayers_[1].text()}, &port);
    auto image = pull(*store, fmt::format("127.0.0.1:{}/test/app:app", port), "app");
    ASSERT_FALSE(image) << how;
    EXPECT_NE(image.error().message().find(appLayers_[1].text()), std::string::npos)
        << how << ": " << image.error().message();
    EXPECT_NE(image.error().message().find("layer 2/2"), std::string::npos)
        << how << ": " << image.error().message();
    EXPECT_EQ(blobCount(*store), 0u) << how;
    auto listed = store->list();
    ASSERT_TRUE(listed);
    EXPECT_TRUE(listed->empty()) << how;
  }
}

TEST_F(RegistryTest, AKilledPullLeavesNoImageAndCanBeRepeated) {
  int port = 0;
  auto stalled = startStub({"--stall", appLayers_[1].text()}, &port);
  pid_t child = ::fork();
  if (child == 0) {
    auto store = ImageStore::open(work_ / "store");
    if (store) (void)pull(*store, fmt::format("127.0.0.1:{}/test/app:app", port), "app");
    ::_exit(0);
  }
  // Killed once the blob is half sent (the stub says so), as a kill -9 of corrald would.
  auto line = stalled->readLine();
  ASSERT_TRUE(line && line->starts_with("stalled")) << readFile(work_ / "stub.log");
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  EXPECT_FALSE(fs::is_empty(work_ / "store/ingest")) << "the half blob was being written";

  auto store = ImageStore::open(work_ / "store");
  ASSERT_TRUE(store) << store.error().message();
  auto listed = store->list();
  ASSERT_TRUE(listed);
  EXPECT_TRUE(listed->empty());
  EXPECT_TRUE(fs::is_empty(work_ / "store/ingest"));
  EXPECT_EQ(blobCount(*store), 0u) << "blobs of the killed pull are collected";
  int healthyPort = 0;
  auto healthy = startStub({}, &healthyPort);
  auto image = pull(*store, fmt::format("127.0.0.1:{}/test/app:app", healthyPort), "app");
  ASSERT_TRUE(image) << image.error().message();
  EXPECT_EQ(compareWithUmoci(*image), std::vector<std::string>{});
}

}  // namespace
}  // namespace corral::images
