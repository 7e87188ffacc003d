// Containers from images of corrald's image store (issue 14): the store at <state dir>/images (corrald's one
// ImageStore, InstanceOptions::imageStore, shared with VMs), each container's pin on the image it runs
// (ImageStore::pin), and the image's launch config (images/oci/launch.h) mapped onto the runtime's.
#pragma once

#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>

#include "container/runtime.h"
#include "container/spec.h"
#include "core/error.h"
#include "images/oci/image_store.h"
#include "schema/instance.h"

namespace corral::daemon {

class ImageLaunch {
 public:
  // `store` is corrald's store (null: none, and only built-in images run).
  explicit ImageLaunch(std::shared_ptr<images::ImageStore> store) : store_(std::move(store)) {}

  // existing: only the instance's pin or a built-in image (a stored instance); lookup: also the store
  // image named spec.image, not pinned (a run's check before the name is its own); create: that image,
  // pinned for the instance now (under the lock that makes the name the instance's).
  enum class Pin { existing, lookup, create };
  // The runtime config of container `spec`. The image is, in this order: the store image the instance
  // pins (whatever its name means now: a container keeps the image it was created from, as docker's
  // does); for a run (lookup, create), the store image named spec.image, pinned for the instance with
  // Pin::create; a built-in image directory (imageDir/NAME/rootfs, its default command /bin/sh), for an
  // instance created from it before busybox was a store image, or when the store lacks the image (its
  // import failed). A store image's Entrypoint/Cmd, Env, WorkingDir and User apply by docker run's rules.
  // Refusals name the field: "image" (no such image: NotFound), "user" (not in the image's /etc/passwd or
  // /etc/group, or beyond a user namespace's ids), "command" (nothing to run).
  Result<container::ContainerConfig> containerConfig(const schema::InstanceSpec& spec,
                                                     container::ValidationContext context, Pin pin);
  // The manifest digest ("sha256:...") of the store image `instanceName` runs; nullopt for a built-in
  // image, or before containerConfig saw the instance.
  std::optional<std::string> imageDigest(const std::string& instanceName) const;
  // The instance is gone: its pin goes, and with it whatever of the image nothing else holds if the image
  // lost its name meanwhile. Failures are logged (the pin then holds the image until the next restart).
  void release(const std::string& instanceName);

 private:
  // The store image named spec.image (pinned for spec.name with Pin::create); nullopt when the store has
  // none of that name, or there is no store.
  Result<std::optional<images::Image>> lookUpInStore(const schema::InstanceSpec& spec, Pin pin);

  std::shared_ptr<images::ImageStore> store_;
  mutable std::mutex mutex_;                                 // guards digests_
  std::map<std::string, std::string, std::less<>> digests_;  // instance → manifest digest
};

// At load, once every instance of either kind is known: pins of instances corrald no longer has (a crash
// between pin and record) go. Failures are logged. Without a store, nothing to do.
void dropImagePinsExcept(images::ImageStore* store, const std::set<std::string>& instanceNames);

}  // namespace corral::daemon
