// Images on this host: named references to manifests whose blobs live in a BlobStore, with each layer
// unpacked once (layers/<blob hex>/) and shared by every container of every image that has it, as an
// overlayfs lowerdir. The names live in index.json, replaced whole (write, fsync, rename), and are written
// last: an import that dies halfway leaves only unreferenced blobs and layer directories, which the next
// open() or remove() collects, never a half image in the list.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <stop_token>
#include <string>
#include <vector>

#include "core/error.h"
#include "images/oci/blob_store.h"
#include "images/oci/manifest.h"

namespace corral::images {

struct Image {
  std::string name;
  Digest manifestDigest;
  ImageManifest manifest;
  Digest configDigest;
  ImageConfig config;
  std::vector<std::filesystem::path> layerDirs;  // base first (overlayfs wants them top first: reverse)
  int64_t size = 0;                              // manifest + config + layer blobs, as stored
  int64_t createdMs = 0;                         // when it was added to this store (Unix ms)
};

// What an import or pull reports as it goes (a terminal draws a progress line from these).
struct ImportProgress {
  std::string step;  // "reading", "unpacking layer 2/5", "done"
  int64_t bytesDone = 0;
  int64_t bytesTotal = 0;
  int64_t layersDone = 0;   // layers fetched, copied or unpacked so far (of the step's phase)
  int64_t layersTotal = 0;  // 0: not known
};
using ProgressCallback = std::function<void(const ImportProgress&)>;

// Every import, pull and build takes a std::stop_token: once another thread stops it (the API client went
// away) the operation stops at its next block written, layer or line of output, kills the child process it
// waits for, and fails with operationCancelled() (blob_store.h), leaving what any failure leaves: no image,
// and no blob once collected.

// Where a pull reads from: a registry (registry.h), or a fake in tests.
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  struct Document {
    std::string body;
    std::string contentType;
  };
  // The manifest or index `reference` names (a tag, or a digest's text).
  virtual Result<Document> manifest(std::string_view reference) = 0;
  // Streams the blob into `writer`, which counts and hashes; `progress` gets the bytes as they come.
  virtual Status blob(const Descriptor& descriptor, BlobStore::Writer& writer,
                      const std::function<void(int64_t bytes)>& progress) = 0;
};

// The kinds of archive `importArchive` tells apart by their contents.
enum class ArchiveKind { ociLayout, dockerSave, rootfs };

// Image names: 1-255 of [a-z0-9] and "._-/:@", starting with a letter or digit (docker references fit:
// "docker.io/library/nginx:1.25", "flask"); field "name".
Status validateImageName(std::string_view name);

class ImageStore {
 public:
  static Result<ImageStore> open(std::filesystem::path root);
  ImageStore(ImageStore&&) noexcept;
  ~ImageStore();

  const BlobStore& blobs() const { return blobs_; }
  const std::filesystem::path& root() const { return root_; }

  Result<std::vector<Image>> list() const;
  Result<Image> get(std::string_view name) const;

  // Adds `name` for a manifest whose config and layer blobs are already in blobs() (what a pull does
  // after fetching them): unpacks the layers not yet unpacked, then records the name. Replaces an image of
  // the same name (its old blobs are collected if nothing else uses them).
  Result<Image> commit(std::string_view name, const Digest& manifestDigest,
                       const ProgressCallback& progress = {}, std::stop_token stop = {});

  // Fetches `reference` (a tag or digest text) from `source`, resolving an index to this host's platform,
  // verifying every document and blob against its digest (a manifest fetched by tag against `expected`
  // when given), fetching only blobs the store lacks, then commits it as `name`. A failure at any point
  // leaves no image and no new blob.
  Result<Image> pull(ImageSource& source, std::string_view reference, std::optional<Digest> expected,
                     std::string_view name, const ProgressCallback& progress = {}, std::stop_token stop = {});

  // An OCI image layout directory: the manifest whose org.opencontainers.image.ref.name is `ref`, or the
  // only one when `ref` is empty; an index entry is resolved to this host's platform.
  Result<Image> importLayout(const std::filesystem::path& layout, std::string_view ref, std::string_view name,
                             const ProgressCallback& progress = {}, std::stop_token stop = {});
  // A tar file (plain, gzip or zstd): an OCI layout (`skopeo copy ... oci-archive:`), a `docker save`
  // archive, or else a root filesystem (like `docker import`; `config` gives what it runs).
  Result<Image> importArchive(const std::filesystem::path& archive, std::string_view name,
                              const ImageConfig& rootfsConfig = {}, const ProgressCallback& progress = {},
                              std::stop_token stop = {});
  // A root filesystem tar (any compression) as a one-layer image with `config` (platform: this host's).
  Result<Image> importRootfs(const std::filesystem::path& tar, std::string_view name, ImageConfig config,
                             const ProgressCallback& progress = {}, std::stop_token stop = {});

  // A root filesystem directory as a one-layer image with `config`: written as a tar (pax, numeric
  // owners, modes, times, xattrs, hard links; sorted, so one tree makes one digest) straight into the
  // layer's blob with libarchive, no external tar (corrald keeps the busybox rootfs so).
  Result<Image> importRootfsDirectory(const std::filesystem::path& dir, std::string_view name,
                                      ImageConfig config, const ProgressCallback& progress = {},
                                      std::stop_token stop = {});

  // Forgets `name` and collects what no image references any more. NotFound if there is none.
  Status remove(std::string_view name);
  // The same, but refused (Conflict, naming the holders) while a pin holds the manifest `name` names: the
  // check and the removal under one lock, so no pin can come in between.
  Status removeUnlessPinned(std::string_view name);
  // Deletes blobs and layer directories no image references (and none being imported); returns how many.
  Result<size_t> collectGarbage();

  // An instance's hold on the image it runs (`holder`: the instance's name). pins/<holder> records the
  // manifest, and collection keeps that manifest's blobs, layers and disk while the file exists: across
  // restarts of corrald, and whatever becomes of the name (removed, or moved to another manifest by a
  // pull). pin() of a holder that has a pin returns the pinned image, the one it first started with.
  // Holder names: 1-255 of [A-Za-z0-9_-] (field "holder").
  Result<Image> pin(std::string_view holder, std::string_view name);
  // Whether `holder` has a pin: one stat, no lock, no read (the callers' fast path for instances of
  // built-in images); false for a name no holder may have.
  bool hasPin(std::string_view holder) const;
  // The image `holder` pinned (its name as it was when pinned); NotFound when there is no pin.
  Result<Image> pinned(std::string_view holder) const;
  // Drops the pin (none is fine) and collects what nothing references any more.
  Status unpin(std::string_view holder);
  // Every pin: holder and manifest, sorted by holder (`image rm` names the holders of its manifest).
  Result<std::vector<std::pair<std::string, Digest>>> pins() const;

  // Keeps `image`'s blobs, layers and VM base disk, and every scratch file of the store, from collection
  // while it lives, as an import in progress keeps its own: a VM base-disk build (disk.h) holds one.
  class Hold {
   public:
    Hold(Hold&& other) noexcept;
    Hold& operator=(Hold&&) = delete;
    ~Hold();

   private:
    friend class ImageStore;
    Hold(std::mutex& mutex, std::multiset<Digest>& held, std::vector<Digest> digests);
    std::mutex* mutex_;
    std::multiset<Digest>* held_;
    std::vector<Digest> digests_;
  };
  Hold hold(const Image& image) const;

 private:
  struct IndexEntry {
    std::string name;
    Digest manifest;
    int64_t createdMs = 0;
  };
  ImageStore(std::filesystem::path root, BlobStore blobs);

  Result<std::vector<IndexEntry>> readIndex() const;
  Status writeIndex(const std::vector<IndexEntry>& entries) const;
  Result<Image> load(const IndexEntry& entry) const;
  // Every pin: holder → the image's name when pinned and its manifest (as IndexEntry).
  Result<std::vector<std::pair<std::string, IndexEntry>>> readPins() const;
  // One holder's pin (nullopt when it has none): one file read, whatever the number of pins.
  Result<std::optional<IndexEntry>> readPin(std::string_view holder) const;
  Result<Image> importLayoutPinned(const std::filesystem::path& layout, std::string_view ref,
                                   std::string_view name, const ProgressCallback& progress,
                                   const std::stop_token& stop);
  Result<Image> importRootfsPinned(const std::filesystem::path& tar, std::string_view name,
                                   ImageConfig config, const ProgressCallback& progress,
                                   const std::stop_token& stop);
  Result<Image> importRootfsDirectoryPinned(const std::filesystem::path& dir, std::string_view name,
                                            ImageConfig config, const ProgressCallback& progress,
                                            const std::stop_token& stop);
  // The image of one uncompressed layer already stored: its config and manifest written, then commit();
  // `pin` holds each blob until then.
  Result<Image> commitOneLayerImage(const Digest& layer, int64_t layerSize, std::string_view name,
                                    ImageConfig config, const std::function<void(const Digest&)>& pin,
                                    const ProgressCallback& progress, const std::stop_token& stop);
  Result<Image> importArchivePinned(const std::filesystem::path& archive, std::string_view name,
                                    const ImageConfig& rootfsConfig, const ProgressCallback& progress,
                                    const std::stop_token& stop);
  Result<Image> pullPinned(ImageSource& source, std::string_view reference, std::optional<Digest> expected,
                           std::string_view name, const ProgressCallback& progress,
                           const std::stop_token& stop);
  Result<Image> collectingOnFailure(Result<Image> result);
  Status unpackLayers(const ImageManifest& manifest, const ProgressCallback& progress,
                      const std::stop_token& stop);
  Result<size_t> collectGarbageLocked();
  std::filesystem::path layerDir(const Digest& layer) const;
  Result<Digest> storeFile(const std::filesystem::path& file, const std::optional<Digest>& expected,
                           int64_t expectedSize, const std::stop_token& stop);

  std::filesystem::path root_;
  BlobStore blobs_;
  std::unique_ptr<std::mutex> mutex_;  // guards index.json and the pinned set
  // Blobs of imports in progress and of Holds: never collected. Mutable: a Hold changes no content.
  mutable std::multiset<Digest> pinned_;
};

}  // namespace corral::images
