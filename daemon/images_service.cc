// The image store behind /v1/images: listing, inspecting, removing (refused while in use), and the pull,
// import and build operations with their progress and cancellation; the busybox rootfs kept as an image.
#include "daemon/images_service.h"

#include <fcntl.h>
#include <fmt/chrono.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>

#include "core/log.h"
#include "core/text.h"
#include "images/oci/debian_build.h"
#include "images/oci/reference.h"
#include "images/oci/registry.h"

namespace corral::daemon {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

std::string isoTime(int64_t unixMs) {
  std::time_t seconds = static_cast<std::time_t>(unixMs / 1000);
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  return fmt::format("{:%Y-%m-%dT%H:%M:%SZ}", utc);
}

// Bytes a directory tree takes (regular files' sizes); layers are shared, so this is per layer.
int64_t treeBytes(const fs::path& dir) {
  int64_t total = 0;
  std::error_code error;
  for (auto it = fs::recursive_directory_iterator(dir, fs::directory_options::skip_permission_denied, error);
       !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
    std::error_code ignored;
    if (it->is_regular_file(ignored) && !it->is_symlink(ignored)) {
      total += static_cast<int64_t>(it->file_size(ignored));
    }
  }
  return total;
}

std::string platformText(const images::Platform& platform) {
  std::string text = platform.os + "/" + platform.architecture;
  if (!platform.variant.empty()) text += "/" + platform.variant;
  return text;
}

// The image name an import takes when none is given: the file's name without its archive extensions.
std::string defaultImportName(const fs::path& path) {
  std::string name = path.filename().string();
  if (name.empty()) name = path.parent_path().filename().string();
  for (std::string_view suffix : {".gz", ".zst", ".tgz", ".tar", ".oci"}) {
    if (name.size() > suffix.size() && name.ends_with(suffix)) name.resize(name.size() - suffix.size());
  }
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  return name;
}

// The DebianBuild's field names ("packages[1]", "app_dir") as the API spells them ("debian[1]", "file").
Error inApiFields(Error error) {
  std::string field = error.field();
  if (field.starts_with("packages")) field = "debian" + field.substr(std::string_view("packages").size());
  if (field == "app_dir") field = "file";
  if (field == error.field()) return error;
  return Error(error.kind(), error.message(), field, error.errnum());
}

images::DebianBuild debianBuildOf(const api::BuildImage& build) {
  images::DebianBuild out;
  out.name = build.name;
  out.packages = build.debian;
  out.cmd = build.cmd;
  out.appDir = build.file;
  return out;
}

Status checkHostPath(const std::string& path, std::string_view field, bool wantDirectory) {
  if (path.empty()) return fail(invalidField(std::string(field), "must not be empty"));
  if (path.front() != '/') {
    return fail(invalidField(std::string(field),
                             "\"{}\" is not absolute: give a full path on corrald's host (the CLI makes "
                             "relative paths absolute)",
                             terminalSafe(path)));
  }
  struct stat info {};
  if (::stat(path.c_str(), &info) != 0) {
    return fail(invalidField(std::string(field), "\"{}\": {}", terminalSafe(path), std::strerror(errno)));
  }
  if (wantDirectory && !S_ISDIR(info.st_mode)) {
    return fail(invalidField(std::string(field), "\"{}\" is not a directory", terminalSafe(path)));
  }
  if (!S_ISDIR(info.st_mode) && !S_ISREG(info.st_mode)) {
    return fail(
        invalidField(std::string(field), "\"{}\" is neither a file nor a directory", terminalSafe(path)));
  }
  return {};
}

}  // namespace

Result<std::string> rootfsFingerprint(const fs::path& rootfs) {
  std::vector<std::string> entries;
  std::error_code error;
  auto it = fs::recursive_directory_iterator(rootfs, error);
  if (error) return fail(systemError(error.value(), fmt::format("opendir(\"{}\")", rootfs.string())));
  for (; it != fs::recursive_directory_iterator(); it.increment(error)) {
    if (error) return fail(systemError(error.value(), fmt::format("reading \"{}\"", rootfs.string())));
    struct stat info {};
    if (::lstat(it->path().c_str(), &info) != 0) {
      return fail(systemError(errno, fmt::format("lstat(\"{}\")", it->path().string())));
    }
    entries.push_back(fmt::format("{}\t{:o}\t{}\t{}.{}\t{}:{}", fs::relative(it->path(), rootfs).string(),
                                  info.st_mode, info.st_size, info.st_mtim.tv_sec, info.st_mtim.tv_nsec,
                                  info.st_uid, info.st_gid));
  }
  std::sort(entries.begin(), entries.end());
  images::Hasher hasher;
  for (const std::string& entry : entries) hasher.update(entry + "\n");
  return hasher.finish().text();
}

json imageJson(const images::Image& image, const std::vector<std::string>& usedBy) {
  json layers = json::array();
  for (size_t i = 0; i < image.manifest.layers.size(); ++i) {
    const images::Descriptor& layer = image.manifest.layers[i];
    json entry = {{"digest", layer.digest.text()}, {"media_type", layer.mediaType}, {"size", layer.size}};
    if (i < image.config.diffIds.size()) entry["diff_id"] = image.config.diffIds[i].text();
    layers.push_back(std::move(entry));
  }
  const images::ImageConfig& config = image.config;
  return {{"name", image.name},
          {"digest", image.manifestDigest.text()},
          {"config_digest", image.configDigest.text()},
          {"platform", platformText(config.platform)},
          {"config",
           {{"entrypoint", config.entrypoint},
            {"cmd", config.cmd},
            {"env", config.env},
            {"working_dir", config.workingDir},
            {"user", config.user},
            {"exposed_ports", config.exposedPorts},
            {"labels", config.labels}}},
          {"layers", std::move(layers)},
          {"size", image.size},
          {"created_at", isoTime(image.createdMs)},
          {"used_by", usedBy}};
}

ImageService::ImageService(ImageServiceOptions options, std::shared_ptr<images::ImageStore> store)
    : options_(std::move(options)), store_(std::move(store)) {}

ImageService::~ImageService() {
  shutdown_.request_stop();
  std::unique_lock lock(mutex_);
  idle_.wait(lock, [&] { return running_ == 0; });
}

Result<std::unique_ptr<ImageService>> ImageService::open(ImageServiceOptions options) {
  std::error_code error;
  fs::create_directories(options.root, error);
  if (error) {
    return fail(systemError(error.value(), fmt::format("mkdir(\"{}\")", options.root.string())));
  }
  std::shared_ptr<images::ImageStore> store = options.store;
  if (!store) {
    auto opened = images::ImageStore::open(options.root);
    if (!opened)
      return fail(opened.error().wrap(fmt::format("image store \"{}\"", options.root.string())));
    store = std::make_shared<images::ImageStore>(std::move(*opened));
  }
  std::unique_ptr<ImageService> service(new ImageService(std::move(options), store));
  // Without it containers of busybox run from the build's directory: a failed import is told, not fatal.
  if (auto busybox = service->ensureBusybox(); !busybox) {
    log::warn("{}; containers of busybox run from \"{}\" instead",
              busybox.error().wrap("importing the busybox image into the store").message(),
              service->options_.busyboxRootfs.string());
  }
  return service;
}

Status ImageService::ensureBusybox() {
  const fs::path& rootfs = options_.busyboxRootfs;
  std::error_code error;
  if (rootfs.empty() || !fs::is_directory(rootfs, error)) {
    log::info("no busybox rootfs at \"{}\": the image store has no busybox image from this build",
              rootfs.string());
    return {};
  }
  auto fingerprint = rootfsFingerprint(rootfs);
  if (!fingerprint) return fail(fingerprint.error());
  if (auto existing = store_->get("busybox"); existing) {
    auto label = existing->config.labels.find(std::string(kRootfsFingerprintLabel));
    if (label != existing->config.labels.end() && label->second == *fingerprint) return {};
  }
  images::ImageConfig config;
  config.cmd = {"/bin/sh"};
  config.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  config.labels[std::string(kRootfsFingerprintLabel)] = *fingerprint;
  config.labels["org.opencontainers.image.description"] = "busybox and corral-probe, built with corral";
  auto image = store_->importRootfsDirectory(rootfs, "busybox", std::move(config));
  if (!image) return fail(image.error());
  log::info("image busybox imported from \"{}\" ({})", rootfs.string(), image->manifestDigest.text());
  return {};
}

Result<json> ImageService::list() {
  auto images = store_->list();
  if (!images) return fail(images.error());
  json out = json::array();
  for (const images::Image& image : *images) {
    out.push_back({{"name", image.name},
                   {"digest", image.manifestDigest.text()},
                   {"layers", image.manifest.layers.size()},
                   {"size", image.size},
                   {"created_at", isoTime(image.createdMs)}});
  }
  return json{{"images", std::move(out)}};
}

Result<json> ImageService::inspect(const std::string& name) {
  auto image = store_->get(name);
  if (!image) return fail(image.error());
  // Its users: the instances (of either kind) that pin its manifest.
  std::vector<std::string> usedBy;
  auto pins = store_->pins();
  if (!pins) return fail(pins.error());
  for (const auto& [holder, manifest] : *pins) {
    if (manifest == image->manifestDigest) usedBy.push_back(holder);
  }
  json out = imageJson(*image, usedBy);
  // On disk: the blobs as stored plus each layer unpacked (layers are shared by the images that have them).
  int64_t unpacked = 0;
  for (size_t i = 0; i < image->layerDirs.size(); ++i) {
    int64_t bytes = treeBytes(image->layerDirs[i]);
    unpacked += bytes;
    if (i < out["layers"].size()) out["layers"][i]["unpacked_size"] = bytes;
  }
  out["disk_size"] = image->size + unpacked;
  return out;
}

Status ImageService::remove(const std::string& name) {
  return store_->removeUnlessPinned(name);
}

bool ImageService::isOperation(const api::Request& request) {
  return std::holds_alternative<api::PullImage>(request) ||
         std::holds_alternative<api::ImportImage>(request) ||
         std::holds_alternative<api::BuildImage>(request);
}

Status ImageService::check(const api::Request& operation) const {
  if (const auto* pull = std::get_if<api::PullImage>(&operation)) {
    auto reference = images::parseReference(pull->reference);
    if (!reference) return fail(reference.error());
    std::string name = pull->name.empty() ? pull->reference : pull->name;
    if (auto valid = images::validateImageName(name); !valid) return fail(valid.error());
    return {};
  }
  if (const auto* import = std::get_if<api::ImportImage>(&operation)) {
    if (auto path = checkHostPath(import->path, "path", false); !path) return fail(path.error());
    std::string name = import->name.empty() ? defaultImportName(import->path) : import->name;
    if (auto valid = images::validateImageName(name); !valid) {
      if (!import->name.empty()) return fail(valid.error());
      return fail(invalidField("name", "the name taken from the path (\"{}\") is not an image name: give one",
                               terminalSafe(name)));
    }
    return {};
  }
  if (const auto* build = std::get_if<api::BuildImage>(&operation)) {
    if (build->debian.empty()) return fail(invalidField("debian", "name at least one Debian package"));
    if (!build->file.empty()) {
      if (auto path = checkHostPath(build->file, "file", true); !path) return fail(path.error());
    }
    if (auto valid = images::validateImageName(build->name); !valid) return fail(valid.error());
    if (auto valid = images::validateDebianBuild(debianBuildOf(*build)); !valid) {
      return fail(inApiFields(valid.error()));
    }
    return {};
  }
  return fail(internalError("not an image operation"));
}

Result<images::Image> ImageService::runOperation(const api::Request& operation,
                                                 const images::ProgressCallback& progress,
                                                 const std::stop_token& stop) {
  if (const auto* pull = std::get_if<api::PullImage>(&operation)) {
    auto reference = images::parseReference(pull->reference);
    if (!reference) return fail(reference.error());
    images::RegistryOptions registryOptions;
    registryOptions.insecure = pull->insecure;
    registryOptions.authFile = options_.authFile;
    images::Registry registry(*reference, registryOptions);
    std::string name = pull->name.empty() ? pull->reference : pull->name;
    auto image =
        store_->pull(registry, reference->manifestReference(), reference->digest, name, progress, stop);
    if (!image) return fail(image.error().wrap(fmt::format("pull {}", reference->text())));
    return image;
  }
  if (const auto* import = std::get_if<api::ImportImage>(&operation)) {
    std::string name = import->name.empty() ? defaultImportName(import->path) : import->name;
    images::ImageConfig rootfsConfig;
    rootfsConfig.cmd = {"/bin/sh"};
    rootfsConfig.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
    std::error_code error;
    auto image = fs::is_directory(import->path, error)
                     ? store_->importLayout(import->path, "", name, progress, stop)
                     : store_->importArchive(import->path, name, rootfsConfig, progress, stop);
    if (!image) return fail(image.error().wrap(fmt::format("import \"{}\"", terminalSafe(import->path))));
    return image;
  }
  if (const auto* build = std::get_if<api::BuildImage>(&operation)) {
    auto image = images::buildDebianImage(*store_, debianBuildOf(*build), progress, stop);
    if (!image) return fail(inApiFields(image.error()).wrap(fmt::format("build {}", build->name)));
    return image;
  }
  return fail(internalError("not an image operation"));
}

Result<json> ImageService::run(const api::Request& operation,
                               const std::function<void(const api::ProgressEvent&)>& report,
                               std::stop_token stop) {
  if (auto valid = check(operation); !valid) return fail(valid.error());
  {
    std::lock_guard lock(mutex_);
    ++running_;
  }
  struct Done {
    ImageService& service;
    ~Done() {
      std::lock_guard lock(service.mutex_);
      --service.running_;
      service.idle_.notify_all();
    }
  } done{*this};
  // Stopped by the client going away, or by corrald shutting down.
  std::stop_source combined;
  std::stop_callback fromClient(stop, [&] { combined.request_stop(); });
  std::stop_callback fromShutdown(shutdown_.get_token(), [&] { combined.request_stop(); });

  std::string lastStep;
  Clock::time_point lastSent{};
  images::ProgressCallback progress = [&](const images::ImportProgress& event) {
    if (!report) return;
    auto now = Clock::now();
    if (event.step == lastStep && now - lastSent < std::chrono::milliseconds(100)) return;
    lastStep = event.step;
    lastSent = now;
    report({event.step, event.bytesDone, event.bytesTotal, event.layersDone, event.layersTotal});
  };
  auto image = runOperation(operation, progress, combined.get_token());
  if (!image) return fail(image.error());
  return imageJson(*image, {});
}

}  // namespace corral::daemon
