// OCI / Docker schema 2 documents: parsing with field-naming errors, platform choice, and rendering.
#include "images/oci/manifest.h"

#include <nlohmann/json.hpp>

#include "core/text.h"

namespace corral::images {

namespace {

using nlohmann::json;

std::string joinField(std::string_view parent, std::string_view child) {
  if (parent.empty()) return std::string(child);
  if (child.starts_with('[')) return fmt::format("{}{}", parent, child);
  return fmt::format("{}.{}", parent, child);
}

Result<json> parseJson(std::string_view body, std::string_view what) {
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return fail(invalidField(std::string(what), "not valid JSON"));
  if (!parsed.is_object()) return fail(invalidField(std::string(what), "not a JSON object"));
  return parsed;
}

// A member that must be a string when present; nullopt when absent or null.
Result<std::optional<std::string>> optionalString(const json& object, std::string_view key,
                                                  std::string_view field) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return std::optional<std::string>();
  if (!it->is_string()) return fail(invalidField(joinField(field, key), "must be a string"));
  return std::optional<std::string>(it->get<std::string>());
}

Result<std::string> requiredString(const json& object, std::string_view key, std::string_view field) {
  auto value = optionalString(object, key, field);
  if (!value) return fail(value.error());
  if (!*value) return fail(invalidField(joinField(field, key), "is missing"));
  return **value;
}

Result<std::vector<std::string>> optionalStrings(const json& object, std::string_view key,
                                                 std::string_view field) {
  std::vector<std::string> out;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return out;
  if (!it->is_array()) return fail(invalidField(joinField(field, key), "must be an array of strings"));
  for (size_t i = 0; i < it->size(); ++i) {
    if (!(*it)[i].is_string()) {
      return fail(invalidField(fmt::format("{}[{}]", joinField(field, key), i), "must be a string"));
    }
    out.push_back((*it)[i].get<std::string>());
  }
  return out;
}

Result<std::map<std::string, std::string>> optionalStringMap(const json& object, std::string_view key,
                                                             std::string_view field) {
  std::map<std::string, std::string> out;
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return out;
  if (!it->is_object()) return fail(invalidField(joinField(field, key), "must be an object of strings"));
  for (const auto& [name, value] : it->items()) {
    if (!value.is_string()) {
      return fail(invalidField(fmt::format("{}[\"{}\"]", joinField(field, key), terminalSafe(name)),
                               "must be a string"));
    }
    out.emplace(name, value.get<std::string>());
  }
  return out;
}

Result<Platform> parsePlatform(const json& object, std::string_view field) {
  if (!object.is_object()) return fail(invalidField(std::string(field), "must be an object"));
  Platform platform;
  auto os = requiredString(object, "os", field);
  if (!os) return fail(os.error());
  auto architecture = requiredString(object, "architecture", field);
  if (!architecture) return fail(architecture.error());
  auto variant = optionalString(object, "variant", field);
  if (!variant) return fail(variant.error());
  platform.os = *os;
  platform.architecture = *architecture;
  platform.variant = variant->value_or("");
  return platform;
}

Result<Descriptor> parseDescriptor(const json& object, std::string_view field) {
  if (!object.is_object()) return fail(invalidField(std::string(field), "must be an object"));
  Descriptor descriptor;
  auto mediaType = requiredString(object, "mediaType", field);
  if (!mediaType) return fail(mediaType.error());
  descriptor.mediaType = *mediaType;
  auto digestText = requiredString(object, "digest", field);
  if (!digestText) return fail(digestText.error());
  auto digest = parseDigest(*digestText, joinField(field, "digest"));
  if (!digest) return fail(digest.error());
  descriptor.digest = *digest;
  auto size = object.find("size");
  if (size == object.end()) return fail(invalidField(joinField(field, "size"), "is missing"));
  if (!size->is_number_integer() || size->get<int64_t>() < 0) {
    return fail(invalidField(joinField(field, "size"), "must be a non-negative integer"));
  }
  descriptor.size = size->get<int64_t>();
  if (auto platform = object.find("platform"); platform != object.end() && !platform->is_null()) {
    auto parsed = parsePlatform(*platform, joinField(field, "platform"));
    if (!parsed) return fail(parsed.error());
    descriptor.platform = *parsed;
  }
  auto annotations = optionalStringMap(object, "annotations", field);
  if (!annotations) return fail(annotations.error());
  descriptor.annotations = std::move(*annotations);
  return descriptor;
}

Result<std::vector<Descriptor>> parseDescriptors(const json& object, std::string_view key) {
  auto it = object.find(key);
  if (it == object.end()) return fail(invalidField(std::string(key), "is missing"));
  if (!it->is_array()) return fail(invalidField(std::string(key), "must be an array"));
  std::vector<Descriptor> out;
  for (size_t i = 0; i < it->size(); ++i) {
    auto descriptor = parseDescriptor((*it)[i], fmt::format("{}[{}]", key, i));
    if (!descriptor) return fail(descriptor.error());
    out.push_back(std::move(*descriptor));
  }
  return out;
}

bool isManifestType(std::string_view type) {
  return type == media::kOciManifest || type == media::kDockerManifest;
}
bool isIndexType(std::string_view type) {
  return type == media::kOciIndex || type == media::kDockerManifestList;
}

Error unsupportedType(std::string_view type) {
  if (type.starts_with("application/vnd.docker.distribution.manifest.v1")) {
    return invalidField("mediaType",
                        "unsupported media type \"{}\" (Docker schema 1, retired by registries in 2019; "
                        "push the image again with a current client)",
                        terminalSafe(type));
  }
  return invalidField("mediaType", "unsupported media type \"{}\"", terminalSafe(type));
}

Result<ImageManifest> parseManifest(const json& object, std::string mediaType) {
  ImageManifest manifest;
  manifest.mediaType = std::move(mediaType);
  auto config = object.find("config");
  if (config == object.end()) return fail(invalidField("config", "is missing"));
  auto descriptor = parseDescriptor(*config, "config");
  if (!descriptor) return fail(descriptor.error());
  if (descriptor->mediaType != media::kOciConfig && descriptor->mediaType != media::kDockerConfig) {
    return fail(invalidField("config.mediaType", "\"{}\" is not an image config (want {} or {})",
                             terminalSafe(descriptor->mediaType), media::kOciConfig, media::kDockerConfig));
  }
  manifest.config = std::move(*descriptor);
  auto layers = parseDescriptors(object, "layers");
  if (!layers) return fail(layers.error());
  for (size_t i = 0; i < layers->size(); ++i) {
    auto compression = layerCompression((*layers)[i].mediaType);
    if (!compression) return fail(std::move(compression.error()).inField(fmt::format("layers[{}]", i)));
  }
  manifest.layers = std::move(*layers);
  return manifest;
}

Result<ImageIndex> parseIndex(const json& object, std::string mediaType) {
  ImageIndex index;
  index.mediaType = std::move(mediaType);
  auto manifests = parseDescriptors(object, "manifests");
  if (!manifests) return fail(manifests.error());
  index.manifests = std::move(*manifests);
  return index;
}

std::string_view architectureOfThisBuild() {
#if defined(__x86_64__)
  return "amd64";
#elif defined(__aarch64__)
  return "arm64";
#else
#error "corral knows the OCI architecture name only for x86_64 and aarch64"
#endif
}

json descriptorJson(const Descriptor& descriptor) {
  json out = {
      {"mediaType", descriptor.mediaType}, {"digest", descriptor.digest.text()}, {"size", descriptor.size}};
  if (descriptor.platform) {
    json platform = {{"os", descriptor.platform->os}, {"architecture", descriptor.platform->architecture}};
    if (!descriptor.platform->variant.empty()) platform["variant"] = descriptor.platform->variant;
    out["platform"] = std::move(platform);
  }
  if (!descriptor.annotations.empty()) out["annotations"] = descriptor.annotations;
  return out;
}

}  // namespace

Platform hostPlatform() {
  return Platform{"linux", std::string(architectureOfThisBuild()), ""};
}

Result<ManifestDocument> parseManifestDocument(std::string_view body, std::string_view contentType) {
  auto object = parseJson(body, "manifest");
  if (!object) return fail(object.error());
  auto declared = optionalString(*object, "mediaType", "");
  if (!declared) return fail(declared.error());
  // A registry's Content-Type may carry parameters ("; charset=utf-8").
  std::string type(contentType.substr(0, contentType.find(';')));
  while (!type.empty() && type.back() == ' ') type.pop_back();
  if (type.empty() || type == "application/json" || type == "application/octet-stream") {
    type = declared->value_or("");
  } else if (*declared && **declared != type) {
    return fail(invalidField("mediaType", "the document says \"{}\" but was served as \"{}\"",
                             terminalSafe(**declared), terminalSafe(type)));
  }
  if (auto version = object->find("schemaVersion"); version != object->end()) {
    if (!version->is_number_integer() || version->get<int64_t>() != 2) {
      if (type.starts_with("application/vnd.docker.distribution.manifest.v1") ||
          (version->is_number_integer() && version->get<int64_t>() == 1)) {
        return fail(unsupportedType("application/vnd.docker.distribution.manifest.v1+json"));
      }
      return fail(invalidField("schemaVersion", "must be 2"));
    }
  }
  if (type.empty()) {
    // OCI lets both documents leave mediaType out; the shape tells them apart.
    if (object->contains("manifests"))
      type = media::kOciIndex;
    else if (object->contains("config") && object->contains("layers"))
      type = media::kOciManifest;
    else
      return fail(
          invalidField("mediaType", "is missing and the document is neither a manifest nor an index"));
  }
  if (isManifestType(type)) {
    auto manifest = parseManifest(*object, type);
    if (!manifest) return fail(manifest.error());
    return ManifestDocument(std::move(*manifest));
  }
  if (isIndexType(type)) {
    auto index = parseIndex(*object, type);
    if (!index) return fail(index.error());
    return ManifestDocument(std::move(*index));
  }
  return fail(unsupportedType(type));
}

Result<ImageConfig> parseImageConfig(std::string_view body) {
  auto object = parseJson(body, "config");
  if (!object) return fail(object.error());
  ImageConfig config;
  auto os = requiredString(*object, "os", "");
  if (!os) return fail(os.error());
  auto architecture = requiredString(*object, "architecture", "");
  if (!architecture) return fail(architecture.error());
  auto variant = optionalString(*object, "variant", "");
  if (!variant) return fail(variant.error());
  config.platform = Platform{*os, *architecture, variant->value_or("")};

  if (auto run = object->find("config"); run != object->end() && !run->is_null()) {
    if (!run->is_object()) return fail(invalidField("config", "must be an object"));
    auto entrypoint = optionalStrings(*run, "Entrypoint", "config");
    if (!entrypoint) return fail(entrypoint.error());
    auto cmd = optionalStrings(*run, "Cmd", "config");
    if (!cmd) return fail(cmd.error());
    auto env = optionalStrings(*run, "Env", "config");
    if (!env) return fail(env.error());
    for (size_t i = 0; i < env->size(); ++i) {
      if ((*env)[i].find('=') == std::string::npos || (*env)[i].starts_with('=')) {
        return fail(invalidField(fmt::format("config.Env[{}]", i), "\"{}\" is not NAME=VALUE",
                                 terminalSafe((*env)[i])));
      }
    }
    auto workingDir = optionalString(*run, "WorkingDir", "config");
    if (!workingDir) return fail(workingDir.error());
    if (*workingDir && !(*workingDir)->empty() && !(*workingDir)->starts_with('/')) {
      return fail(
          invalidField("config.WorkingDir", "\"{}\" is not an absolute path", terminalSafe(**workingDir)));
    }
    auto user = optionalString(*run, "User", "config");
    if (!user) return fail(user.error());
    auto labels = optionalStringMap(*run, "Labels", "config");
    if (!labels) return fail(labels.error());
    if (auto ports = run->find("ExposedPorts"); ports != run->end() && !ports->is_null()) {
      if (!ports->is_object()) return fail(invalidField("config.ExposedPorts", "must be an object"));
      for (const auto& [port, ignored] : ports->items()) config.exposedPorts.push_back(port);
    }
    config.entrypoint = std::move(*entrypoint);
    config.cmd = std::move(*cmd);
    config.env = std::move(*env);
    config.workingDir = workingDir->value_or("");
    config.user = user->value_or("");
    config.labels = std::move(*labels);
  }

  auto rootfs = object->find("rootfs");
  if (rootfs == object->end()) return fail(invalidField("rootfs", "is missing"));
  if (!rootfs->is_object()) return fail(invalidField("rootfs", "must be an object"));
  auto type = requiredString(*rootfs, "type", "rootfs");
  if (!type) return fail(type.error());
  if (*type != "layers")
    return fail(invalidField("rootfs.type", "must be \"layers\", not \"{}\"", terminalSafe(*type)));
  auto diffIds = optionalStrings(*rootfs, "diff_ids", "rootfs");
  if (!diffIds) return fail(diffIds.error());
  for (size_t i = 0; i < diffIds->size(); ++i) {
    auto digest = parseDigest((*diffIds)[i], fmt::format("rootfs.diff_ids[{}]", i));
    if (!digest) return fail(digest.error());
    config.diffIds.push_back(*digest);
  }
  return config;
}

Result<Descriptor> pickPlatform(const ImageIndex& index, const Platform& wanted) {
  for (const Descriptor& entry : index.manifests) {
    if (!entry.platform || !isManifestType(entry.mediaType)) continue;
    if (entry.platform->os == wanted.os && entry.platform->architecture == wanted.architecture &&
        (wanted.variant.empty() || entry.platform->variant == wanted.variant)) {
      return entry;
    }
  }
  std::string have;
  for (const Descriptor& entry : index.manifests) {
    if (!entry.platform) continue;
    if (!have.empty()) have += ", ";
    have += entry.platform->os + "/" + entry.platform->architecture;
    if (!entry.platform->variant.empty()) have += "/" + entry.platform->variant;
  }
  return fail(notFound("the image index has no {}/{} image (it has: {})", wanted.os, wanted.architecture,
                       have.empty() ? "no platform entries" : terminalSafe(have)));
}

Result<LayerCompression> layerCompression(std::string_view mediaType) {
  // Non-distributable ("foreign") layers are still ordinary tars once fetched.
  if (mediaType == media::kOciLayer ||
      mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar") {
    return LayerCompression::none;
  }
  if (mediaType == media::kOciLayerGzip || mediaType == media::kDockerLayerGzip ||
      mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
      mediaType == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip") {
    return LayerCompression::gzip;
  }
  if (mediaType == media::kOciLayerZstd ||
      mediaType == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd") {
    return LayerCompression::zstd;
  }
  return fail(invalidField("mediaType", "unsupported layer media type \"{}\"", terminalSafe(mediaType)));
}

std::string renderImageConfig(const ImageConfig& config) {
  json run = json::object();
  if (!config.entrypoint.empty()) run["Entrypoint"] = config.entrypoint;
  if (!config.cmd.empty()) run["Cmd"] = config.cmd;
  if (!config.env.empty()) run["Env"] = config.env;
  if (!config.workingDir.empty()) run["WorkingDir"] = config.workingDir;
  if (!config.user.empty()) run["User"] = config.user;
  if (!config.labels.empty()) run["Labels"] = config.labels;
  if (!config.exposedPorts.empty()) {
    json ports = json::object();
    for (const std::string& port : config.exposedPorts) ports[port] = json::object();
    run["ExposedPorts"] = std::move(ports);
  }
  json diffIds = json::array();
  for (const Digest& digest : config.diffIds) diffIds.push_back(digest.text());
  json out = {{"architecture", config.platform.architecture},
              {"os", config.platform.os},
              {"config", std::move(run)},
              {"rootfs", {{"type", "layers"}, {"diff_ids", std::move(diffIds)}}}};
  if (!config.platform.variant.empty()) out["variant"] = config.platform.variant;
  return out.dump();
}

std::string renderManifest(const ImageManifest& manifest) {
  json layers = json::array();
  for (const Descriptor& layer : manifest.layers) layers.push_back(descriptorJson(layer));
  json out = {
      {"schemaVersion", 2},
      {"mediaType", manifest.mediaType.empty() ? std::string(media::kOciManifest) : manifest.mediaType},
      {"config", descriptorJson(manifest.config)},
      {"layers", std::move(layers)}};
  return out.dump();
}

}  // namespace corral::images
