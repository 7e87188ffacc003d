// Containers from store images: which image an instance runs (its pin, a built-in directory, or the store
// image it is created from), and that image's process config on the runtime's terms.
#include "daemon/image_launch.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/log.h"
#include "core/text.h"
#include "images/oci/launch.h"
#include "schema/names.h"

namespace corral::daemon {
namespace {

bool isBuiltInImage(const schema::InstanceSpec& spec, const container::ValidationContext& context) {
  std::error_code error;
  return schema::validateName(spec.image, "image") &&
         std::filesystem::is_directory(context.imageDir / spec.image / "rootfs", error);
}

Error imageNotFound(const schema::InstanceSpec& spec, const container::ValidationContext& context) {
  return Error(
      ErrorKind::NotFound,
      fmt::format("image \"{}\" not found: no image of that name in the store (corral image ls) nor in {}",
                  terminalSafe(spec.image), context.imageDir.string()),
      "image");
}

}  // namespace

Result<images::ImageStore*> ImageLaunch::store() {
  if (!store_)
    return fail(Error(ErrorKind::NotFound,
                      fmt::format("corrald has no image store (\"{}\")", storeRoot_.string()), "image"));
  return store_.get();
}

Result<container::ContainerConfig> ImageLaunch::containerConfig(const schema::InstanceSpec& spec,
                                                                container::ValidationContext context,
                                                                Pin pin) {
  // The store is asked only when it may hold the instance's image.
  std::optional<images::Image> image;
  std::error_code error;
  if (pin != Pin::lookup && schema::validateName(spec.name, "name") &&
      std::filesystem::exists(storeRoot_ / "pins" / spec.name, error)) {
    auto images = store();
    if (!images) return fail(images.error());
    auto pinned = (*images)->pinned(spec.name);
    if (!pinned) return fail(pinned.error().wrap(fmt::format("image of instance \"{}\"", spec.name)));
    image = std::move(*pinned);
  }
  if (!image && isBuiltInImage(spec, context)) {
    if (pin != Pin::lookup) {
      std::lock_guard lock(mutex_);
      digests_.erase(spec.name);
    }
    return container::toContainerConfig(spec, context);
  }
  if (!image) {
    if (pin == Pin::existing) return fail(imageNotFound(spec, context));
    auto images = store();
    if (!images) return fail(images.error());
    if (auto valid = images::validateImageName(spec.image); !valid)
      return fail(Error(ErrorKind::InvalidArgument, valid.error().message(), "image"));
    if (Status name = schema::validateName(spec.name, "name"); !name) return fail(name.error());
    auto pinned = pin == Pin::create ? (*images)->pin(spec.name, spec.image) : (*images)->get(spec.image);
    if (!pinned && pinned.error().kind() == ErrorKind::NotFound) return fail(imageNotFound(spec, context));
    if (!pinned) return fail(pinned.error());
    image = std::move(*pinned);
  }

  const std::string what =
      fmt::format("image \"{}\" ({})", terminalSafe(image->name), image->manifestDigest.text());
  if (image->layerDirs.empty()) return fail(invalidField("image", "{} has no layers", what));
  context.lowerDirs.assign(image->layerDirs.rbegin(), image->layerDirs.rend());  // overlayfs: top first
  auto launch = images::launchProcess(image->config, image->layerDirs, spec.command, spec.env);
  if (!launch) return fail(launch.error().wrap(what));
  auto config = container::toContainerConfig(spec, context);
  if (!config) return fail(config.error());
  config->argv = std::move(launch->argv);
  config->env = std::move(launch->env);
  config->workingDir = std::move(launch->workingDir);
  config->user = {.uid = launch->user.uid,
                  .gid = launch->user.gid,
                  .additionalGids = {launch->user.additionalGids.begin(), launch->user.additionalGids.end()}};
  if (config->userNamespace) {
    const uint32_t count = config->userNamespace->count;
    const bool mapped = config->user.uid < count && config->user.gid < count &&
                        std::all_of(config->user.additionalGids.begin(), config->user.additionalGids.end(),
                                    [&](gid_t gid) { return gid < count; });
    if (!mapped) {
      return fail(invalidField(
          "user", "{}: its User \"{}\" (uid {}, gid {}) needs ids beyond the {} a user namespace maps", what,
          terminalSafe(image->config.user), config->user.uid, config->user.gid, count));
    }
  }
  if (pin != Pin::lookup) {
    std::lock_guard lock(mutex_);
    digests_[spec.name] = image->manifestDigest.text();
  }
  return config;
}

std::optional<std::string> ImageLaunch::imageDigest(const std::string& instanceName) const {
  std::lock_guard lock(mutex_);
  auto it = digests_.find(instanceName);
  if (it == digests_.end()) return std::nullopt;
  return it->second;
}

void ImageLaunch::release(const std::string& instanceName) {
  {
    std::lock_guard lock(mutex_);
    digests_.erase(instanceName);
  }
  std::error_code error;
  if (!std::filesystem::exists(storeRoot_ / "pins" / instanceName, error)) return;
  auto images = store();
  if (!images) return;  // no store, no pin
  if (Status name = schema::validateName(instanceName, "name"); !name) return;
  if (auto dropped = (*images)->unpin(instanceName); !dropped)
    log::warn("instance \"{}\": dropping its image pin: {}", instanceName, dropped.error().message());
}

void ImageLaunch::dropPinsExcept(const std::set<std::string>& instanceNames) {
  std::error_code error;
  if (std::filesystem::is_empty(storeRoot_ / "pins", error) || error) return;  // no store, or nothing pinned
  auto images = store();
  if (!images) {
    log::warn("{}", images.error().message());
    return;
  }
  auto pins = (*images)->pins();
  if (!pins) {
    log::warn("image pins: {}", pins.error().message());
    return;
  }
  for (const auto& [holder, manifest] : *pins) {
    if (instanceNames.contains(holder)) continue;
    log::warn("image pin of \"{}\" ({}): no such instance (corrald stopped while creating it); dropped",
              holder, manifest.text());
    if (auto dropped = (*images)->unpin(holder); !dropped)
      log::warn("image pin of \"{}\": {}", holder, dropped.error().message());
  }
}

}  // namespace corral::daemon
