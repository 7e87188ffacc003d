// OCI and Docker schema 2 documents: what is accepted, and what is refused with which field.
#include "images/oci/manifest.h"

#include <gtest/gtest.h>

namespace corral::images {
namespace {

std::string hexOf(char c) {
  return std::string(64, c);
}

std::string ociManifest(std::string_view layerType = media::kOciLayerGzip) {
  return fmt::format(R"({{"schemaVersion":2,"mediaType":"{}",
    "config":{{"mediaType":"{}","digest":"sha256:{}","size":123}},
    "layers":[{{"mediaType":"{}","digest":"sha256:{}","size":1000}},
              {{"mediaType":"{}","digest":"sha256:{}","size":2000}}]}})",
                     media::kOciManifest, media::kOciConfig, hexOf('c'), layerType, hexOf('1'), layerType,
                     hexOf('2'));
}

TEST(Manifest, ParsesAnOciManifest) {
  auto document = parseManifestDocument(ociManifest(), media::kOciManifest);
  ASSERT_TRUE(document) << document.error().message();
  const auto& manifest = std::get<ImageManifest>(*document);
  EXPECT_EQ(manifest.config.digest.hex, hexOf('c'));
  EXPECT_EQ(manifest.config.size, 123);
  ASSERT_EQ(manifest.layers.size(), 2u);
  EXPECT_EQ(manifest.layers[1].digest.hex, hexOf('2'));
  EXPECT_EQ(manifest.layers[1].size, 2000);
}

TEST(Manifest, ParsesDockerSchema2AndTellsCompressions) {
  std::string body = fmt::format(R"({{"schemaVersion":2,"mediaType":"{}",
    "config":{{"mediaType":"{}","digest":"sha256:{}","size":7}},
    "layers":[{{"mediaType":"{}","digest":"sha256:{}","size":9}}]}})",
                                 media::kDockerManifest, media::kDockerConfig, hexOf('a'),
                                 media::kDockerLayerGzip, hexOf('b'));
  auto document =
      parseManifestDocument(body, "application/vnd.docker.distribution.manifest.v2+json; charset=utf-8");
  ASSERT_TRUE(document) << document.error().message();
  EXPECT_EQ(std::get<ImageManifest>(*document).mediaType, media::kDockerManifest);
  EXPECT_EQ(layerCompression(media::kDockerLayerGzip), LayerCompression::gzip);
  EXPECT_EQ(layerCompression(media::kOciLayerZstd), LayerCompression::zstd);
  EXPECT_EQ(layerCompression(media::kOciLayer), LayerCompression::none);
}

TEST(Manifest, TellsAnIndexFromAManifestWhenMediaTypeIsLeftOut) {
  std::string index = fmt::format(R"({{"schemaVersion":2,"manifests":[
    {{"mediaType":"{}","digest":"sha256:{}","size":10,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}},
    {{"mediaType":"{}","digest":"sha256:{}","size":11,"platform":{{"os":"linux","architecture":"amd64"}}}}]}})",
                                  media::kOciManifest, hexOf('a'), media::kOciManifest, hexOf('b'));
  auto document = parseManifestDocument(index);
  ASSERT_TRUE(document) << document.error().message();
  const auto& parsed = std::get<ImageIndex>(*document);
  EXPECT_EQ(parsed.mediaType, media::kOciIndex);
  auto amd64 = pickPlatform(parsed, Platform{"linux", "amd64", ""});
  ASSERT_TRUE(amd64);
  EXPECT_EQ(amd64->digest.hex, hexOf('b'));
  auto arm = pickPlatform(parsed, Platform{"linux", "arm64", "v8"});
  ASSERT_TRUE(arm);
  EXPECT_EQ(arm->digest.hex, hexOf('a'));
  auto riscv = pickPlatform(parsed, Platform{"linux", "riscv64", ""});
  ASSERT_FALSE(riscv);
  EXPECT_EQ(riscv.error().kind(), ErrorKind::NotFound);
  EXPECT_NE(riscv.error().message().find("it has: linux/arm64/v8, linux/amd64"), std::string::npos)
      << riscv.error().message();
  EXPECT_EQ(hostPlatform(), (Platform{"linux", "amd64", ""}));
}

struct Refusal {
  std::string body;
  std::string contentType;
  std::string field;
  std::string says;
};

TEST(Manifest, RefusesBadDocumentsNamingTheField) {
  std::string good = ociManifest();
  auto replaced = [&](std::string_view from, std::string_view to) {
    std::string out = good;
    out.replace(out.find(from), from.size(), to);
    return out;
  };
  std::vector<Refusal> cases = {
      {"not json", "", "manifest", "not valid JSON"},
      {"[1,2]", "", "manifest", "not a JSON object"},
      {good, std::string(media::kOciIndex), "mediaType", "served as"},
      {R"({"schemaVersion":1,"name":"library/busybox","fsLayers":[]})", "", "mediaType", "schema 1"},
      {"{}", "application/vnd.docker.distribution.manifest.v1+prettyjws", "mediaType", "schema 1"},
      {"{}", "application/vnd.example.thing+json", "mediaType", "unsupported media type"},
      {replaced("\"size\":123", "\"size\":-1"), "", "config.size", "non-negative"},
      {replaced("\"size\":1000", "\"size\":\"1000\""), "", "layers[0].size", "non-negative"},
      {replaced(fmt::format("sha256:{}", hexOf('2')), "sha256:xyz"), "", "layers[1].digest", "hex digits"},
      {replaced(media::kOciConfig, "text/plain"), "", "config.mediaType", "not an image config"},
      {ociManifest("application/vnd.oci.image.layer.v1.tar+lz4"), "", "layers[0].mediaType",
       "unsupported layer"},
      {replaced("\"schemaVersion\":2", "\"schemaVersion\":3"), "", "schemaVersion", "must be 2"},
  };
  for (const Refusal& refusal : cases) {
    auto document = parseManifestDocument(refusal.body, refusal.contentType);
    ASSERT_FALSE(document) << refusal.body;
    EXPECT_EQ(document.error().kind(), ErrorKind::InvalidArgument) << refusal.body;
    EXPECT_EQ(document.error().field(), refusal.field) << refusal.body << ": " << document.error().message();
    EXPECT_NE(document.error().message().find(refusal.says), std::string::npos)
        << refusal.body << ": " << document.error().message();
  }
}

TEST(ImageConfig, ParsesWhatAContainerRuns) {
  std::string body = fmt::format(R"({{"architecture":"amd64","os":"linux",
    "config":{{"Entrypoint":["/docker-entrypoint.sh"],"Cmd":["nginx","-g","daemon off;"],
               "Env":["PATH=/usr/local/sbin:/usr/bin","NGINX_VERSION=1.25.3"],"WorkingDir":"/srv",
               "User":"101:101","ExposedPorts":{{"80/tcp":{{}}}},"Labels":{{"maintainer":"NGINX"}}}},
    "rootfs":{{"type":"layers","diff_ids":["sha256:{}","sha256:{}"]}},
    "history":[{{"created_by":"ignored"}}]}})",
                                 hexOf('d'), hexOf('e'));
  auto config = parseImageConfig(body);
  ASSERT_TRUE(config) << config.error().message();
  EXPECT_EQ(config->platform, (Platform{"linux", "amd64", ""}));
  EXPECT_EQ(config->entrypoint, std::vector<std::string>{"/docker-entrypoint.sh"});
  EXPECT_EQ(config->cmd, (std::vector<std::string>{"nginx", "-g", "daemon off;"}));
  EXPECT_EQ(config->env.size(), 2u);
  EXPECT_EQ(config->workingDir, "/srv");
  EXPECT_EQ(config->user, "101:101");
  EXPECT_EQ(config->exposedPorts, std::vector<std::string>{"80/tcp"});
  EXPECT_EQ(config->labels.at("maintainer"), "NGINX");
  ASSERT_EQ(config->diffIds.size(), 2u);
  EXPECT_EQ(config->diffIds[1].hex, hexOf('e'));
}

TEST(ImageConfig, RefusesBadFieldsByName) {
  std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"os":"linux","rootfs":{"type":"layers","diff_ids":[]}})", "architecture"},
      {R"({"os":"linux","architecture":"amd64"})", "rootfs"},
      {R"({"os":"linux","architecture":"amd64","rootfs":{"type":"zip","diff_ids":[]}})", "rootfs.type"},
      {R"({"os":"linux","architecture":"amd64","rootfs":{"type":"layers","diff_ids":["sha256:1"]}})",
       "rootfs.diff_ids[0]"},
      {R"({"os":"linux","architecture":"amd64","config":{"Env":["NOEQUALS"]},"rootfs":{"type":"layers"}})",
       "config.Env[0]"},
      {R"({"os":"linux","architecture":"amd64","config":{"Cmd":"sh -c x"},"rootfs":{"type":"layers"}})",
       "config.Cmd"},
      {R"({"os":"linux","architecture":"amd64","config":{"WorkingDir":"srv"},"rootfs":{"type":"layers"}})",
       "config.WorkingDir"},
  };
  for (const auto& [body, field] : cases) {
    auto config = parseImageConfig(body);
    ASSERT_FALSE(config) << body;
    EXPECT_EQ(config.error().field(), field) << body << ": " << config.error().message();
  }
}

TEST(ImageConfig, RendersDeterministicallyAndRoundTrips) {
  ImageConfig config;
  config.platform = hostPlatform();
  config.cmd = {"flask", "--app", "/app", "run"};
  config.env = {"PATH=/usr/bin:/bin"};
  config.workingDir = "/app";
  config.exposedPorts = {"5000/tcp"};
  config.diffIds = {digestOf("layer")};
  std::string rendered = renderImageConfig(config);
  EXPECT_EQ(rendered, renderImageConfig(config));
  auto parsed = parseImageConfig(rendered);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(*parsed, config);

  ImageManifest manifest;
  manifest.mediaType = std::string(media::kOciManifest);
  manifest.config = Descriptor{std::string(media::kOciConfig),
                               digestOf(rendered),
                               static_cast<int64_t>(rendered.size()),
                               std::nullopt,
                               {}};
  manifest.layers = {Descriptor{std::string(media::kOciLayerGzip), digestOf("gz"), 2, std::nullopt, {}}};
  auto document = parseManifestDocument(renderManifest(manifest));
  ASSERT_TRUE(document) << document.error().message();
  EXPECT_EQ(std::get<ImageManifest>(*document), manifest);
}

}  // namespace
}  // namespace corral::images
