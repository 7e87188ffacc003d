// corrald's images: the OCI image store at STATE_DIR/images (images/oci/image_store.h) behind /v1/images,
// the built busybox rootfs kept in it as the image "busybox", and the pull, import and build operations
// that answer with a progress stream (api/images.h) and stop when their client goes away.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include "api/api.h"
#include "core/error.h"
#include "images/oci/image_store.h"

namespace corral::daemon {

struct ImageServiceOptions {
  std::filesystem::path root;           // the store: STATE_DIR/images
  std::filesystem::path busyboxRootfs;  // the build's images/busybox/rootfs; empty or absent: none
  std::filesystem::path authFile;       // docker config.json credentials for pulls; empty: none
  // The store corrald opened once and shares with the container and VM drivers (two ImageStore objects on
  // one directory would each clear the other's pulls at open); null: opened here at `root`.
  std::shared_ptr<images::ImageStore> store;
};

// The label that records which busybox rootfs the "busybox" image was imported from.
inline constexpr std::string_view kRootfsFingerprintLabel = "org.corral.rootfs-fingerprint";

class ImageService {
 public:
  // Opens the store (which clears what a crash mid-pull, import or build left: ingest/, .import-*,
  // .build-*, unreferenced blobs and layers), then imports the busybox rootfs when it is new or changed.
  static Result<std::unique_ptr<ImageService>> open(ImageServiceOptions options);
  ImageService(const ImageService&) = delete;
  ImageService& operator=(const ImageService&) = delete;
  // Stops every operation still running and waits for it.
  ~ImageService();

  Result<nlohmann::json> list();
  Result<nlohmann::json> inspect(const std::string& name);
  // Refused (409, naming them) while instances of either kind pin the image: ImageStore::pins, checked and
  // removed under the store's lock.
  Status remove(const std::string& name);

  // Pull, import and build: true for the requests that answer with a progress stream.
  static bool isOperation(const api::Request& request);
  // What an operation's fields must be, checked before its stream starts so a bad field answers 400.
  Status check(const api::Request& operation) const;
  // Runs an operation to the end; `report` gets its progress (at most every 100 ms, and each new step).
  // Once `stop` is stopped it ends with operationCancelled() and leaves no image.
  Result<nlohmann::json> run(const api::Request& operation,
                             const std::function<void(const api::ProgressEvent&)>& report,
                             std::stop_token stop);

  // Stops every running operation (as if each client went away); does not wait.
  void stopAll() { shutdown_.request_stop(); }

  // Imports the busybox rootfs as "busybox" unless the image has its fingerprint already.
  Status ensureBusybox();

 private:
  ImageService(ImageServiceOptions options, std::shared_ptr<images::ImageStore> store);
  Result<images::Image> runOperation(const api::Request& operation, const images::ProgressCallback& progress,
                                     const std::stop_token& stop);

  ImageServiceOptions options_;
  std::shared_ptr<images::ImageStore> store_;
  std::stop_source shutdown_;
  std::mutex mutex_;
  std::condition_variable idle_;
  int running_ = 0;
};

// What a root filesystem tree looks like, cheaply: a digest of every entry's path, type, mode, size and
// mtime, so an unchanged rootfs is not imported again on each start.
Result<std::string> rootfsFingerprint(const std::filesystem::path& rootfs);

// The image as GET /v1/images/NAME shows it (docs/api.md); `usedBy` the instances that run it.
nlohmann::json imageJson(const images::Image& image, const std::vector<std::string>& usedBy);

}  // namespace corral::daemon
