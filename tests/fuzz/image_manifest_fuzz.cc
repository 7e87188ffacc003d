// libFuzzer target: the JSON documents a registry or an image archive hands over (images/oci/manifest.h):
// OCI manifests, indexes and configs and Docker schema 2 manifests and manifest lists, then the platform
// choice in an index. Input: the Content-Type the document came with, a newline, then the document.
// Beyond the sanitizers: a refusal is the document's fault and names a field; a parsed manifest or config
// renders back to JSON that parses to the same value and renders to the same bytes (its digest is stable);
// pickPlatform returns the first entry that fits, and refuses only when none does.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include "images/oci/manifest.h"
#include "tests/fuzz/fuzz_check.h"

using namespace corral;
using namespace corral::images;

namespace {

void requireRefusal(const Error& error) {
  FUZZ_REQUIRE(error.kind() == ErrorKind::InvalidArgument, error.message());
  FUZZ_REQUIRE(!error.field().empty(), error.message());
}

bool fits(const Descriptor& entry, const Platform& wanted) {
  return entry.platform &&
         (entry.mediaType == media::kOciManifest || entry.mediaType == media::kDockerManifest) &&
         entry.platform->os == wanted.os && entry.platform->architecture == wanted.architecture &&
         (wanted.variant.empty() || entry.platform->variant == wanted.variant);
}

void checkPick(const ImageIndex& index, const Platform& wanted) {
  Result<Descriptor> picked = pickPlatform(index, wanted);
  const Descriptor* first = nullptr;
  for (const Descriptor& entry : index.manifests) {
    if (fits(entry, wanted)) {
      first = &entry;
      break;
    }
  }
  if (first == nullptr) {
    FUZZ_REQUIRE(!picked && picked.error().kind() == ErrorKind::NotFound,
                 picked ? "picked " + picked->digest.text() : picked.error().message());
  } else {
    FUZZ_REQUIRE(picked && *picked == *first, picked ? picked->digest.text() : picked.error().message());
  }
}

void checkManifest(const ImageManifest& manifest) {
  for (const Descriptor& layer : manifest.layers) {
    FUZZ_REQUIRE(layerCompression(layer.mediaType).has_value(), layer.mediaType);
  }
  std::string rendered = renderManifest(manifest);
  for (std::string_view contentType : {std::string_view(), std::string_view(manifest.mediaType)}) {
    Result<ManifestDocument> again = parseManifestDocument(rendered, contentType);
    FUZZ_REQUIRE(again.has_value(), rendered + ": " + (again ? "" : again.error().message()));
    const auto* reparsed = std::get_if<ImageManifest>(&*again);
    FUZZ_REQUIRE(reparsed != nullptr, rendered + ": parsed as an index");
    FUZZ_REQUIRE(*reparsed == manifest, rendered + " -> " + renderManifest(*reparsed));
    FUZZ_REQUIRE(renderManifest(*reparsed) == rendered, rendered + " -> " + renderManifest(*reparsed));
  }
}

void checkIndex(const ImageIndex& index) {
  checkPick(index, hostPlatform());
  for (const Descriptor& entry : index.manifests) {
    if (entry.platform) checkPick(index, *entry.platform);
  }
}

void checkConfig(const ImageConfig& config) {
  std::string rendered = renderImageConfig(config);
  Result<ImageConfig> again = parseImageConfig(rendered);
  FUZZ_REQUIRE(again.has_value(), rendered + ": " + (again ? "" : again.error().message()));
  FUZZ_REQUIRE(*again == config, rendered + " -> " + renderImageConfig(*again));
  FUZZ_REQUIRE(renderImageConfig(*again) == rendered, rendered + " -> " + renderImageConfig(*again));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t newline = input.find('\n');
  if (newline == std::string_view::npos) return 0;
  std::string_view contentType = input.substr(0, newline);
  std::string_view body = input.substr(newline + 1);

  if (Result<ManifestDocument> document = parseManifestDocument(body, contentType); !document) {
    requireRefusal(document.error());
  } else if (const auto* manifest = std::get_if<ImageManifest>(&*document)) {
    checkManifest(*manifest);
  } else {
    checkIndex(std::get<ImageIndex>(*document));
  }

  if (Result<ImageConfig> config = parseImageConfig(body); !config) {
    requireRefusal(config.error());
  } else {
    checkConfig(*config);
  }

  if (Result<LayerCompression> compression = layerCompression(contentType); !compression) {
    requireRefusal(compression.error());
  }
  return 0;
}
