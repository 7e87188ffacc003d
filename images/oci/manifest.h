// The OCI image format's documents (image-spec v1.1) and Docker's schema 2 equivalents, parsed into one
// model: descriptors, image manifests, image indexes (Docker manifest lists) and image configs. Pure: no
// I/O. Every refusal names the field ("manifests[1].platform.architecture") and the reason.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/error.h"
#include "images/oci/digest.h"

namespace corral::images {

namespace media {
inline constexpr std::string_view kOciManifest = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view kOciIndex = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view kOciConfig = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view kOciLayer = "application/vnd.oci.image.layer.v1.tar";
inline constexpr std::string_view kOciLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view kOciLayerZstd = "application/vnd.oci.image.layer.v1.tar+zstd";
inline constexpr std::string_view kDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view kDockerManifestList =
    "application/vnd.docker.distribution.manifest.list.v2+json";
inline constexpr std::string_view kDockerConfig = "application/vnd.docker.container.image.v1+json";
inline constexpr std::string_view kDockerLayerGzip = "application/vnd.docker.image.rootfs.diff.tar.gzip";
// What a registry is asked for (the Accept header of a manifest GET), most wanted first.
inline constexpr std::string_view kManifestAccept =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
}  // namespace media

struct Platform {
  std::string os;            // "linux"
  std::string architecture;  // "amd64", "arm64"
  std::string variant;       // "v8"; often empty
  bool operator==(const Platform&) const = default;
};

Platform hostPlatform();  // linux/amd64 on the machines corral runs on (from the compiler's target)

struct Descriptor {
  std::string mediaType;
  Digest digest;
  int64_t size = 0;
  std::optional<Platform> platform;                // index entries
  std::map<std::string, std::string> annotations;  // e.g. org.opencontainers.image.ref.name
  bool operator==(const Descriptor&) const = default;
};

struct ImageManifest {
  std::string mediaType;  // kOciManifest or kDockerManifest
  Descriptor config;
  std::vector<Descriptor> layers;  // base layer first
  bool operator==(const ImageManifest&) const = default;
};

struct ImageIndex {
  std::string mediaType;  // kOciIndex or kDockerManifestList
  std::vector<Descriptor> manifests;
  bool operator==(const ImageIndex&) const = default;
};

using ManifestDocument = std::variant<ImageManifest, ImageIndex>;

// What a container of this image runs, and how.
struct ImageConfig {
  Platform platform;
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;
  std::vector<std::string> env;  // "K=V"
  std::string workingDir;
  std::string user;                       // "", "1000", "1000:1000", "nobody", "app:app"
  std::vector<std::string> exposedPorts;  // "80/tcp"
  std::map<std::string, std::string> labels;
  std::vector<Digest> diffIds;  // rootfs.diff_ids: digests of the uncompressed layers, base first
  bool operator==(const ImageConfig&) const = default;
};

enum class LayerCompression { none, gzip, zstd };

// A manifest or an index. `contentType` is the registry's Content-Type header or the descriptor's media
// type (empty: take the document's own mediaType field; OCI documents may leave it out, then the shape
// decides). Docker schema 1 and unknown types are refused: "unsupported media type ...".
Result<ManifestDocument> parseManifestDocument(std::string_view body, std::string_view contentType = {});

Result<ImageConfig> parseImageConfig(std::string_view body);

// The entry of `index` for `wanted` (os and architecture equal; a wanted variant must match too). Refused
// with the platforms the index has when there is none.
Result<Descriptor> pickPlatform(const ImageIndex& index, const Platform& wanted);

// The compression a layer media type implies; refuses types that are not layers (field "layers[i]").
Result<LayerCompression> layerCompression(std::string_view mediaType);

// The JSON documents corral writes for images it makes itself (import of a rootfs tar, build --debian):
// OCI media types, keys in a fixed order, so the same input gives the same digests.
std::string renderImageConfig(const ImageConfig& config);
std::string renderManifest(const ImageManifest& manifest);

}  // namespace corral::images
