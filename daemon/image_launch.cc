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

// The process's ids; with a user namespace they must be among the ids it maps.
Status setUser(container::ContainerConfig& config, const images::LaunchUser& user,
               std::string_view userText) {
  config.user = {.uid = user.uid,
                 .gid = user.gid,
                 .additionalGids = {user.additionalGids.begin(), user.additionalGids.end()}};
  if (!config.userNamespace) return {};
  const container::IdMapping& map = *config.userNamespace;
  const bool mapped = map.hostUid(config.user.uid) && map.hostGid(config.user.gid) &&
                      std::all_of(config.user.additionalGids.begin(), config.user.additionalGids.end(),
                                  [&](gid_t gid) { return map.hostGid(gid).has_value(); });
  if (mapped) return {};
  return fail(invalidField("user", "user \"{}\" (uid {}, gid {}) needs ids its user namespace does not map",
                           terminalSafe(userText), config.user.uid, config.user.gid));
}

}  // namespace

Result<std::optional<images::Image>> ImageLaunch::lookUpInStore(const schema::InstanceSpec& spec, Pin pin) {
  if (!store_) return std::optional<images::Image>();
  if (auto valid = images::validateImageName(spec.image); !valid) {
    if (schema::validateName(spec.image, "image")) return std::optional<images::Image>();  // built-in only
    return fail(Error(ErrorKind::InvalidArgument, valid.error().message(), "image"));
  }
  if (Status name = schema::validateName(spec.name, "name"); !name) return fail(name.error());
  auto found = pin == Pin::create ? store_->pin(spec.name, spec.image) : store_->get(spec.image);
  if (!found && found.error().kind() == ErrorKind::NotFound) return std::optional<images::Image>();
  if (!found) return fail(found.error());
  return std::optional<images::Image>(std::move(*found));
}

Result<container::ContainerConfig> ImageLaunch::containerConfig(const schema::InstanceSpec& spec,
                                                                container::ValidationContext context,
                                                                Pin pin) {
  // The store is asked only when it may hold the instance's image.
  std::optional<images::Image> image;
  if (pin != Pin::lookup && store_ && store_->hasPin(spec.name)) {
    auto pinned = store_->pinned(spec.name);
    if (!pinned) return fail(pinned.error().wrap(fmt::format("image of instance \"{}\"", spec.name)));
    image = std::move(*pinned);
  }
  if (!image && pin != Pin::existing) {
    auto found = lookUpInStore(spec, pin);
    if (!found) return fail(found.error());
    image = std::move(*found);
  }
  // The built-in image's directory: for an instance created from it (no pin), and for a run when the store
  // lacks the image (busybox's import at startup failed; corrald logged why).
  if (!image && isBuiltInImage(spec, context)) {
    auto config = container::toContainerConfig(spec, context);
    if (!config) return fail(config.error());
    if (!spec.user.empty()) {
      auto user =
          images::resolveUserThroughLayers(spec.user, {context.imageDir / spec.image / "rootfs"}, "user");
      if (!user) return fail(user.error().wrap(fmt::format("image \"{}\"", spec.image)));
      if (Status mapped = setUser(*config, *user, spec.user); !mapped)
        return fail(mapped.error().wrap(fmt::format("image \"{}\"", spec.image)));
    }
    if (pin != Pin::lookup) {
      std::lock_guard lock(mutex_);
      digests_.erase(spec.name);
    }
    return config;
  }
  if (!image) return fail(imageNotFound(spec, context));

  const std::string what =
      fmt::format("image \"{}\" ({})", terminalSafe(image->name), image->manifestDigest.text());
  if (image->layerDirs.empty()) return fail(invalidField("image", "{} has no layers", what));
  context.lowerDirs.assign(image->layerDirs.rbegin(), image->layerDirs.rend());  // overlayfs: top first
  auto launch = images::launchProcess(image->config, image->layerDirs, spec.command, spec.env, spec.user);
  if (!launch) return fail(launch.error().wrap(what));
  auto config = container::toContainerConfig(spec, context);
  if (!config) return fail(config.error());
  config->argv = std::move(launch->argv);
  config->env = std::move(launch->env);
  config->workingDir = std::move(launch->workingDir);
  if (Status mapped = setUser(*config, launch->user, spec.user.empty() ? image->config.user : spec.user);
      !mapped)
    return fail(mapped.error().wrap(what));
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
  if (!store_ || !store_->hasPin(instanceName)) return;
  if (auto dropped = store_->unpin(instanceName); !dropped)
    log::warn("instance \"{}\": dropping its image pin: {}", instanceName, dropped.error().message());
}

void dropImagePinsExcept(images::ImageStore* store, const std::set<std::string>& instanceNames) {
  std::error_code error;
  if (!store || std::filesystem::is_empty(store->root() / "pins", error) || error) return;  // nothing pinned
  auto pins = store->pins();
  if (!pins) {
    log::warn("image pins: {}", pins.error().message());
    return;
  }
  for (const auto& [holder, manifest] : *pins) {
    if (instanceNames.contains(holder)) continue;
    log::warn("image pin of \"{}\" ({}): no such instance (corrald stopped while creating it); dropped",
              holder, manifest.text());
    if (auto dropped = store->unpin(holder); !dropped)
      log::warn("image pin of \"{}\": {}", holder, dropped.error().message());
  }
}

}  // namespace corral::daemon
