// OCI image layouts for tests, written directly (gzip layers with correct diff ids, so umoci and skopeo
// accept them), including multi-platform indexes a tool would need a second machine to make.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "images/oci/blob_store.h"
#include "images/oci/manifest.h"
#include "tests/integration/images/tar_builder.h"

namespace corral::images::fixtures {

class LayoutBuilder {
 public:
  explicit LayoutBuilder(std::filesystem::path dir) : dir_(std::move(dir)) {
    auto store = BlobStore::open(dir_);
    if (!store) throw std::runtime_error(store.error().message());
    store_.emplace(std::move(*store));
  }

  // An image manifest of these layers (base first) and config; not yet named in index.json.
  Descriptor image(const std::vector<const TarBuilder*>& layers, ImageConfig config) {
    ImageManifest manifest;
    manifest.mediaType = std::string(media::kOciManifest);
    config.diffIds.clear();
    for (const TarBuilder* layer : layers) {
      std::string plain = layer->finish(Compression::none);
      std::string gz = TarBuilder::gzip(plain);
      config.diffIds.push_back(digestOf(plain));
      manifest.layers.push_back(
          {std::string(media::kOciLayerGzip), put(gz), static_cast<int64_t>(gz.size()), {}, {}});
    }
    std::string configJson = renderImageConfig(config);
    manifest.config = {
        std::string(media::kOciConfig), put(configJson), static_cast<int64_t>(configJson.size()), {}, {}};
    std::string manifestJson = renderManifest(manifest);
    return {std::string(media::kOciManifest),
            put(manifestJson),
            static_cast<int64_t>(manifestJson.size()),
            config.platform,
            {}};
  }

  // An index over manifests (each with its platform); not yet named.
  Descriptor index(const std::vector<Descriptor>& manifests) {
    nlohmann::json entries = nlohmann::json::array();
    for (const Descriptor& m : manifests) {
      entries.push_back({{"mediaType", m.mediaType},
                         {"digest", m.digest.text()},
                         {"size", m.size},
                         {"platform", {{"os", m.platform->os}, {"architecture", m.platform->architecture}}}});
    }
    std::string body =
        nlohmann::json{{"schemaVersion", 2}, {"mediaType", media::kOciIndex}, {"manifests", entries}}.dump();
    return {std::string(media::kOciIndex), put(body), static_cast<int64_t>(body.size()), {}, {}};
  }

  // Names `descriptor` as `ref` in index.json (org.opencontainers.image.ref.name) and writes oci-layout.
  void name(const std::string& ref, const Descriptor& descriptor) {
    named_.push_back({{"mediaType", descriptor.mediaType},
                      {"digest", descriptor.digest.text()},
                      {"size", descriptor.size},
                      {"annotations", {{"org.opencontainers.image.ref.name", ref}}}});
    std::ofstream(dir_ / "index.json") << nlohmann::json{{"schemaVersion", 2}, {"manifests", named_}}.dump();
    std::ofstream(dir_ / "oci-layout") << R"({"imageLayoutVersion":"1.0.0"})";
    std::filesystem::remove_all(dir_ / "ingest");
  }

  std::filesystem::path blobPath(const Digest& digest) const { return store_->pathOf(digest); }

  // The layer descriptors (base first) of an image manifest image() made.
  std::vector<Descriptor> layers(const Descriptor& manifest) const {
    auto body = store_->read(manifest.digest);
    if (!body) throw std::runtime_error(body.error().message());
    auto document = parseManifestDocument(*body);
    if (!document) throw std::runtime_error(document.error().message());
    return std::get<ImageManifest>(*document).layers;
  }

 private:
  Digest put(const std::string& bytes) {
    auto digest = store_->put(bytes);
    if (!digest) throw std::runtime_error(digest.error().message());
    std::filesystem::remove_all(dir_ / "ingest");
    std::filesystem::create_directories(dir_ / "ingest");
    return *digest;
  }

  std::filesystem::path dir_;
  std::optional<BlobStore> store_;
  nlohmann::json named_ = nlohmann::json::array();
};

}  // namespace corral::images::fixtures
