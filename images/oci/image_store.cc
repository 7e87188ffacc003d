// The image store: names, imports (OCI layouts, docker save archives, root filesystem tars), commit of
// pulled manifests, layer unpacking once per layer, and garbage collection.
#include "images/oci/image_store.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>

#include "core/text.h"
#include "core/unique_fd.h"
#include "images/oci/layer.h"

namespace corral::images {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr std::string_view kRefNameAnnotation = "org.opencontainers.image.ref.name";
constexpr size_t kMaxDocumentBytes = 4 << 20;

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string uniqueSuffix() {
  static std::atomic<uint64_t> counter{0};
  return fmt::format("{}-{}-{}", ::getpid(), counter.fetch_add(1), nowMs());
}

Result<std::string> readSmallFile(const fs::path& path, size_t maxBytes = kMaxDocumentBytes) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path.string())));
  std::string out;
  char buffer[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, fmt::format("read(\"{}\")", path.string())));
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
    if (out.size() > maxBytes) {
      return fail(invalidField("archive", "\"{}\" is larger than the {} bytes a document may have",
                               path.string(), maxBytes));
    }
  }
  return out;
}

Status writeFileDurably(const fs::path& path, std::string_view bytes) {
  fs::path temp = path;
  temp += fmt::format(".tmp-{}", uniqueSuffix());
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", temp.string())));
  size_t offset = 0;
  while (offset < bytes.size()) {
    ssize_t n = ::write(fd.get(), bytes.data() + offset, bytes.size() - offset);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int error = errno;
      ::unlink(temp.c_str());
      return fail(systemError(error, fmt::format("write(\"{}\")", temp.string())));
    }
    offset += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0 || ::rename(temp.c_str(), path.c_str()) != 0) {
    int error = errno;
    ::unlink(temp.c_str());
    return fail(systemError(error, fmt::format("replacing \"{}\"", path.string())));
  }
  UniqueFd dir(::open(path.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir) ::fsync(dir.get());
  return {};
}

// libarchive's message for its last failure, with errno's text when it has none (fmt throws on a null
// string).
std::string archiveReason(archive* handle) {
  if (const char* message = archive_error_string(handle); message != nullptr) return message;
  if (int error = archive_errno(handle); error > 0) return std::strerror(error);
  return "libarchive gave no reason";
}

// The entry names of a tar (any compression), for telling archive kinds apart. Reads headers only.
Result<std::set<std::string>> archiveEntryNames(const fs::path& path) {
  std::unique_ptr<archive, decltype(&archive_read_free)> reader(archive_read_new(), &archive_read_free);
  archive_read_support_filter_all(reader.get());
  archive_read_support_format_tar(reader.get());
  if (archive_read_open_filename(reader.get(), path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return fail(
        invalidField("archive", "\"{}\": opening it: {}", path.string(), archiveReason(reader.get())));
  }
  std::set<std::string> names;
  archive_entry* entry = nullptr;
  int status;
  while ((status = archive_read_next_header(reader.get(), &entry)) == ARCHIVE_OK || status == ARCHIVE_WARN) {
    auto name = normalizeLayerPath(archive_entry_pathname(entry) ? archive_entry_pathname(entry) : "");
    if (name) names.insert(*name);
    if (archive_read_data_skip(reader.get()) < ARCHIVE_WARN) {
      return fail(
          invalidField("archive", "\"{}\": skipping the data of \"{}\": {}", path.string(),
                       terminalSafe(archive_entry_pathname(entry) ? archive_entry_pathname(entry) : ""),
                       archiveReason(reader.get())));
    }
  }
  if (status != ARCHIVE_EOF) {
    return fail(invalidField("archive", "\"{}\": reading its entries: {}", path.string(),
                             archiveReason(reader.get())));
  }
  return names;
}

std::string_view layerMediaTypeOf(const fs::path& file) {
  unsigned char magic[4] = {};
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd && ::read(fd.get(), magic, sizeof(magic)) == static_cast<ssize_t>(sizeof(magic))) {
    if (magic[0] == 0x1f && magic[1] == 0x8b) return media::kOciLayerGzip;
    if (magic[0] == 0x28 && magic[1] == 0xb5 && magic[2] == 0x2f && magic[3] == 0xfd)
      return media::kOciLayerZstd;
  }
  return media::kOciLayer;
}

// Pins digests for the duration of an import so a concurrent remove's collection cannot take them.
class PinGuard {
 public:
  PinGuard(std::mutex& mutex, std::multiset<Digest>& pinned) : mutex_(mutex), pinned_(pinned) {}
  ~PinGuard() {
    std::lock_guard lock(mutex_);
    for (const Digest& digest : mine_) pinned_.erase(pinned_.find(digest));
  }
  void pin(const Digest& digest) {
    std::lock_guard lock(mutex_);
    pinned_.insert(digest);
    mine_.push_back(digest);
  }

 private:
  std::mutex& mutex_;
  std::multiset<Digest>& pinned_;
  std::vector<Digest> mine_;
};

}  // namespace

Status validateImageName(std::string_view name) {
  if (name.empty() || name.size() > 255) {
    return fail(invalidField("name", "an image name has 1 to 255 characters, not {}", name.size()));
  }
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-' || c == '/' ||
           c == ':' || c == '@';
  };
  if (!((name[0] >= 'a' && name[0] <= 'z') || (name[0] >= '0' && name[0] <= '9'))) {
    return fail(
        invalidField("name", "\"{}\" must start with a lowercase letter or a digit", terminalSafe(name)));
  }
  for (char c : name) {
    if (!allowed(c)) {
      return fail(invalidField("name", "\"{}\" has '{}': image names use a-z, 0-9 and . _ - / : @",
                               terminalSafe(name), terminalSafe(std::string_view(&c, 1))));
    }
  }
  return {};
}

ImageStore::ImageStore(fs::path root, BlobStore blobs)
    : root_(std::move(root)), blobs_(std::move(blobs)), mutex_(std::make_unique<std::mutex>()) {}
ImageStore::ImageStore(ImageStore&&) noexcept = default;
ImageStore::~ImageStore() = default;

Result<ImageStore> ImageStore::open(fs::path root) {
  auto blobs = BlobStore::open(root);
  if (!blobs) return fail(blobs.error().wrap("image store"));
  std::error_code error;
  for (const char* dir : {"layers", "pins"}) {
    fs::create_directories(root / dir, error);
    if (error) return fail(systemError(error.value(), fmt::format("mkdir(\"{}\")", (root / dir).string())));
  }
  ImageStore store(std::move(root), std::move(*blobs));
  std::lock_guard lock(*store.mutex_);
  if (auto collected = store.collectGarbageLocked(); !collected)
    return fail(collected.error().wrap("image store"));
  return store;
}

fs::path ImageStore::layerDir(const Digest& layer) const {
  return root_ / "layers" / layer.hex;
}

Result<std::vector<ImageStore::IndexEntry>> ImageStore::readIndex() const {
  std::vector<IndexEntry> entries;
  fs::path path = root_ / "index.json";
  if (!fs::exists(path)) return entries;
  auto text = readSmallFile(path);
  if (!text) return fail(text.error());
  json parsed = json::parse(*text, nullptr, false);
  if (parsed.is_discarded() || !parsed.contains("images") || !parsed["images"].is_array()) {
    return fail(internalError("\"{}\" is damaged (not the index corral writes)", path.string()));
  }
  for (const json& item : parsed["images"]) {
    if (!item.is_object() || !item.value("name", json()).is_string() ||
        !item.value("manifest", json()).is_string()) {
      return fail(internalError("\"{}\" is damaged: an entry without name or manifest", path.string()));
    }
    auto digest = parseDigest(item["manifest"].get<std::string>());
    if (!digest) return fail(internalError("\"{}\" is damaged: {}", path.string(), digest.error().message()));
    entries.push_back({item["name"].get<std::string>(), *digest, item.value("created_ms", int64_t{0})});
  }
  return entries;
}

Status ImageStore::writeIndex(const std::vector<IndexEntry>& entries) const {
  json images = json::array();
  for (const IndexEntry& entry : entries) {
    images.push_back(
        {{"name", entry.name}, {"manifest", entry.manifest.text()}, {"created_ms", entry.createdMs}});
  }
  return writeFileDurably(root_ / "index.json", json{{"images", std::move(images)}}.dump(1));
}

Result<Image> ImageStore::load(const IndexEntry& entry) const {
  Image image;
  image.name = entry.name;
  image.manifestDigest = entry.manifest;
  image.createdMs = entry.createdMs;
  auto manifestText = blobs_.read(entry.manifest, kMaxDocumentBytes);
  if (!manifestText) return fail(manifestText.error().wrap(fmt::format("image {}", entry.name)));
  auto document = parseManifestDocument(*manifestText);
  if (!document || !std::holds_alternative<ImageManifest>(*document)) {
    return fail(internalError("image {}: its manifest {} is not an image manifest", entry.name,
                              entry.manifest.text()));
  }
  image.manifest = std::get<ImageManifest>(*document);
  image.configDigest = image.manifest.config.digest;
  auto configText = blobs_.read(image.configDigest, kMaxDocumentBytes);
  if (!configText) return fail(configText.error().wrap(fmt::format("image {}", entry.name)));
  auto config = parseImageConfig(*configText);
  if (!config) return fail(config.error().wrap(fmt::format("image {}: config", entry.name)));
  image.config = std::move(*config);
  image.size = static_cast<int64_t>(manifestText->size()) + image.manifest.config.size;
  for (const Descriptor& layer : image.manifest.layers) {
    image.layerDirs.push_back(layerDir(layer.digest));
    image.size += layer.size;
  }
  return image;
}

Result<std::vector<Image>> ImageStore::list() const {
  std::lock_guard lock(*mutex_);
  auto entries = readIndex();
  if (!entries) return fail(entries.error());
  std::vector<Image> images;
  for (const IndexEntry& entry : *entries) {
    auto image = load(entry);
    if (!image) return fail(image.error());
    images.push_back(std::move(*image));
  }
  std::sort(images.begin(), images.end(), [](const Image& a, const Image& b) { return a.name < b.name; });
  return images;
}

Result<Image> ImageStore::get(std::string_view name) const {
  std::lock_guard lock(*mutex_);
  auto entries = readIndex();
  if (!entries) return fail(entries.error());
  for (const IndexEntry& entry : *entries) {
    if (entry.name == name) return load(entry);
  }
  return fail(notFound("no image named \"{}\"", terminalSafe(name)));
}

Status ImageStore::unpackLayers(const ImageManifest& manifest, const ProgressCallback& progress,
                                const std::stop_token& stop) {
  int64_t total = 0, done = 0;
  for (const Descriptor& layer : manifest.layers) total += layer.size;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    const Descriptor& layer = manifest.layers[i];
    if (stop.stop_requested()) return fail(operationCancelled());
    if (progress)
      progress({fmt::format("unpacking layer {}/{}", i + 1, manifest.layers.size()), done, total,
                static_cast<int64_t>(i), static_cast<int64_t>(manifest.layers.size())});
    fs::path target = layerDir(layer.digest);
    if (!fs::exists(target)) {
      fs::path temp = root_ / "layers" / fmt::format(".tmp-{}", uniqueSuffix());
      std::error_code error;
      fs::create_directory(temp, error);
      if (error) return fail(systemError(error.value(), fmt::format("mkdir(\"{}\")", temp.string())));
      auto stats = unpackLayer(blobs_.pathOf(layer.digest), temp, stop);
      if (!stats) {
        fs::remove_all(temp, error);
        return fail(stats.error().wrap(fmt::format("layer {} ({})", i + 1, layer.digest.text())));
      }
      if (::rename(temp.c_str(), target.c_str()) != 0) {
        int renameError = errno;
        fs::remove_all(temp, error);
        // Another import of an image with this layer got there first: theirs is as good as ours.
        if (renameError != EEXIST && renameError != ENOTEMPTY) {
          return fail(systemError(renameError,
                                  fmt::format("rename(\"{}\", \"{}\")", temp.string(), target.string())));
        }
      }
    }
    done += layer.size;
  }
  return {};
}

Result<Image> ImageStore::commit(std::string_view name, const Digest& manifestDigest,
                                 const ProgressCallback& progress, std::stop_token stop) {
  if (auto valid = validateImageName(name); !valid) return fail(valid.error());
  auto manifestText = blobs_.read(manifestDigest, kMaxDocumentBytes);
  if (!manifestText) return fail(manifestText.error());
  auto document = parseManifestDocument(*manifestText);
  if (!document) return fail(document.error().wrap(fmt::format("manifest {}", manifestDigest.text())));
  if (!std::holds_alternative<ImageManifest>(*document)) {
    return fail(invalidField("manifest", "{} is an index, not an image manifest", manifestDigest.text()));
  }
  const auto& manifest = std::get<ImageManifest>(*document);
  PinGuard pins(*mutex_, pinned_);
  pins.pin(manifestDigest);
  pins.pin(manifest.config.digest);
  for (const Descriptor& layer : manifest.layers) pins.pin(layer.digest);
  auto configText = blobs_.read(manifest.config.digest, kMaxDocumentBytes);
  if (!configText) return fail(configText.error().wrap("config"));
  auto config = parseImageConfig(*configText);
  if (!config) return fail(config.error().wrap(fmt::format("config {}", manifest.config.digest.text())));
  if (config->diffIds.size() != manifest.layers.size()) {
    return fail(invalidField("config.rootfs.diff_ids", "{} diff ids for the manifest's {} layers",
                             config->diffIds.size(), manifest.layers.size()));
  }
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    if (!blobs_.contains(manifest.layers[i].digest)) {
      return fail(
          notFound("layer {} ({}) is not in the blob store", i + 1, manifest.layers[i].digest.text()));
    }
  }
  if (auto unpacked = unpackLayers(manifest, progress, stop); !unpacked) return fail(unpacked.error());
  if (stop.stop_requested()) return fail(operationCancelled());

  std::lock_guard lock(*mutex_);
  auto entries = readIndex();
  if (!entries) return fail(entries.error());
  std::erase_if(*entries, [&](const IndexEntry& entry) { return entry.name == name; });
  entries->push_back({std::string(name), manifestDigest, nowMs()});
  if (auto written = writeIndex(*entries); !written) return fail(written.error());
  if (auto collected = collectGarbageLocked(); !collected) return fail(collected.error());
  if (progress) progress({"done", 1, 1});
  return load(entries->back());
}

Result<Digest> ImageStore::storeFile(const fs::path& file, const std::optional<Digest>& expected,
                                     int64_t expectedSize, const std::stop_token& stop) {
  if (expected && blobs_.contains(*expected)) return *expected;
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", file.string())));
  auto writer = blobs_.begin(expected, expectedSize);
  if (!writer) return fail(writer.error());
  writer->stopOn(stop);
  std::vector<std::byte> buffer(1 << 16);
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, fmt::format("read(\"{}\")", file.string())));
    if (n == 0) break;
    if (auto written = writer->write(std::span(buffer.data(), static_cast<size_t>(n))); !written) {
      return fail(written.error());
    }
  }
  return writer->commit();
}

Result<Image> ImageStore::importLayoutPinned(const fs::path& layout, std::string_view ref,
                                             std::string_view name, const ProgressCallback& progress,
                                             const std::stop_token& stop) {
  if (auto valid = validateImageName(name); !valid) return fail(valid.error());
  if (!fs::exists(layout / "oci-layout")) {
    return fail(
        invalidField("path", "\"{}\" is not an OCI image layout (no oci-layout file)", layout.string()));
  }
  auto indexText = readSmallFile(layout / "index.json");
  if (!indexText) return fail(indexText.error().wrap("OCI layout"));
  auto indexDocument = parseManifestDocument(*indexText, media::kOciIndex);
  if (!indexDocument) return fail(indexDocument.error().wrap(fmt::format("{}/index.json", layout.string())));
  const auto& index = std::get<ImageIndex>(*indexDocument);

  std::optional<Descriptor> chosen;
  std::vector<std::string> refs;
  for (const Descriptor& entry : index.manifests) {
    auto it = entry.annotations.find(std::string(kRefNameAnnotation));
    std::string entryRef = it == entry.annotations.end() ? std::string() : it->second;
    refs.push_back(entryRef.empty() ? entry.digest.text() : entryRef);
    if (ref.empty() ? index.manifests.size() == 1 : entryRef == ref) chosen = entry;
  }
  if (!chosen) {
    std::string have;
    for (const std::string& r : refs) have += (have.empty() ? "" : ", ") + terminalSafe(r);
    return fail(ref.empty()
                    ? invalidField("ref", "the layout has {} images ({}): name one", refs.size(), have)
                    : notFound("the layout has no image \"{}\" (it has: {})", terminalSafe(ref),
                               have.empty() ? "none" : have));
  }

  PinGuard pins(*mutex_, pinned_);
  auto fetch = [&](const Descriptor& descriptor) -> Result<Digest> {
    pins.pin(descriptor.digest);
    fs::path file = layout / "blobs" /
                    (descriptor.digest.algorithm == DigestAlgorithm::sha256 ? "sha256" : "sha512") /
                    descriptor.digest.hex;
    auto stored = storeFile(file, descriptor.digest, descriptor.size, stop);
    if (!stored) return fail(stored.error());
    return *stored;
  };
  // An index entry (a multi-platform image) resolves to this host's platform.
  for (int depth = 0;
       depth < 4 && chosen->mediaType != media::kOciManifest && chosen->mediaType != media::kDockerManifest;
       ++depth) {
    if (auto stored = fetch(*chosen); !stored) return fail(stored.error());
    auto nestedText = blobs_.read(chosen->digest, kMaxDocumentBytes);
    if (!nestedText) return fail(nestedText.error());
    auto nested = parseManifestDocument(*nestedText, chosen->mediaType);
    if (!nested) return fail(nested.error().wrap(chosen->digest.text()));
    if (!std::holds_alternative<ImageIndex>(*nested)) break;
    auto picked = pickPlatform(std::get<ImageIndex>(*nested), hostPlatform());
    if (!picked) return fail(picked.error());
    chosen = *picked;
  }
  if (auto stored = fetch(*chosen); !stored) return fail(stored.error());
  auto manifestText = blobs_.read(chosen->digest, kMaxDocumentBytes);
  if (!manifestText) return fail(manifestText.error());
  auto document = parseManifestDocument(*manifestText, chosen->mediaType);
  if (!document) return fail(document.error().wrap(chosen->digest.text()));
  if (!std::holds_alternative<ImageManifest>(*document)) {
    return fail(invalidField("manifests", "{} is not an image manifest", chosen->digest.text()));
  }
  const auto& manifest = std::get<ImageManifest>(*document);
  int64_t total = manifest.config.size, done = 0;
  for (const Descriptor& layer : manifest.layers) total += layer.size;
  if (auto stored = fetch(manifest.config); !stored) return fail(stored.error().wrap("config"));
  done += manifest.config.size;
  for (size_t i = 0; i < manifest.layers.size(); ++i) {
    if (progress) {
      progress({fmt::format("copying layer {}/{}", i + 1, manifest.layers.size()), done, total,
                static_cast<int64_t>(i), static_cast<int64_t>(manifest.layers.size())});
    }
    if (auto stored = fetch(manifest.layers[i]); !stored) {
      return fail(stored.error().wrap(fmt::format("layer {}", i + 1)));
    }
    done += manifest.layers[i].size;
  }
  return commit(name, chosen->digest, progress, stop);
}

Result<Image> ImageStore::importRootfsPinned(const fs::path& tar, std::string_view name, ImageConfig config,
                                             const ProgressCallback& progress, const std::stop_token& stop) {
  if (auto valid = validateImageName(name); !valid) return fail(valid.error());
  // The layer is stored uncompressed: its digest is then also its diff id, and nothing is decompressed
  // twice.
  std::unique_ptr<archive, decltype(&archive_read_free)> reader(archive_read_new(), &archive_read_free);
  archive_read_support_filter_all(reader.get());
  archive_read_support_format_raw(reader.get());
  if (archive_read_open_filename(reader.get(), tar.c_str(), 1 << 16) != ARCHIVE_OK) {
    return fail(invalidField("path", "\"{}\": opening it: {}", tar.string(), archiveReason(reader.get())));
  }
  archive_entry* entry = nullptr;
  if (int status = archive_read_next_header(reader.get(), &entry); status != ARCHIVE_OK) {
    return fail(
        invalidField("path", "\"{}\": {}", tar.string(),
                     status == ARCHIVE_EOF ? std::string("it is empty") : archiveReason(reader.get())));
  }
  PinGuard pins(*mutex_, pinned_);
  auto writer = blobs_.begin(std::nullopt);
  if (!writer) return fail(writer.error());
  writer->stopOn(stop);
  for (;;) {
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    int status = archive_read_data_block(reader.get(), &block, &size, &offset);
    if (status == ARCHIVE_EOF) break;
    if (status < ARCHIVE_OK) {
      return fail(invalidField("path", "\"{}\": reading it at byte {}: {}", tar.string(), writer->written(),
                               archiveReason(reader.get())));
    }
    if (auto written = writer->write(std::span(static_cast<const std::byte*>(block), size)); !written) {
      return fail(written.error());
    }
    if (progress) progress({"reading", writer->written(), 0});
  }
  int64_t layerSize = writer->written();
  auto layer = writer->commit();
  if (!layer) return fail(layer.error());
  return commitOneLayerImage(
      *layer, layerSize, name, std::move(config), [&](const Digest& digest) { pins.pin(digest); }, progress,
      stop);
}

namespace {

// Where libarchive's tar writer puts its blocks: the blob being written (which hashes and counts them).
struct TarIntoBlob {
  BlobStore::Writer* writer;
  std::optional<Error> error;
};

la_ssize_t writeTarBlock(archive*, void* client, const void* block, size_t size) {
  auto* into = static_cast<TarIntoBlob*>(client);
  if (auto written = into->writer->write(std::span(static_cast<const std::byte*>(block), size)); !written) {
    into->error = written.error();
    return -1;
  }
  return static_cast<la_ssize_t>(size);
}

// Every path under `dir` (not `dir` itself), sorted, so one tree always makes the same tar. Symlinks are
// entries, never followed (hence lexically_relative, not fs::relative, for their names).
Result<std::vector<fs::path>> sortedTree(const fs::path& dir) {
  std::vector<fs::path> paths;
  std::error_code error;
  auto it = fs::recursive_directory_iterator(dir, error);
  for (; !error && it != fs::recursive_directory_iterator(); it.increment(error)) paths.push_back(it->path());
  if (error) return fail(systemError(error.value(), fmt::format("reading the tree \"{}\"", dir.string())));
  std::sort(paths.begin(), paths.end());
  return paths;
}

}  // namespace

Result<Image> ImageStore::importRootfsDirectoryPinned(const fs::path& dir, std::string_view name,
                                                      ImageConfig config, const ProgressCallback& progress,
                                                      const std::stop_token& stop) {
  if (auto valid = validateImageName(name); !valid) return fail(valid.error());
  std::error_code error;
  if (!fs::is_directory(dir, error))
    return fail(invalidField("path", "\"{}\" is not a directory", dir.string()));
  auto tree = sortedTree(dir);
  if (!tree) return fail(tree.error());
  PinGuard pins(*mutex_, pinned_);
  auto writer = blobs_.begin(std::nullopt);
  if (!writer) return fail(writer.error());
  writer->stopOn(stop);

  // pax: numeric owners, modes, times, xattrs and hard links kept, as the layer unpacker restores them.
  TarIntoBlob into{&*writer, std::nullopt};
  std::unique_ptr<archive, decltype(&archive_write_free)> tar(archive_write_new(), &archive_write_free);
  std::unique_ptr<archive, decltype(&archive_read_free)> disk(archive_read_disk_new(), &archive_read_free);
  if (!tar || !disk) return fail(systemError(ENOMEM, "archive_write_new"));
  auto tarFailure = [&](std::string_view doing) {
    if (into.error) return into.error->wrap(fmt::format("\"{}\": {}", dir.string(), doing));
    return internalError("\"{}\": {}: {}", dir.string(), doing, archiveReason(tar.get()));
  };
  if (archive_write_set_format_pax_restricted(tar.get()) != ARCHIVE_OK ||
      archive_write_set_bytes_in_last_block(tar.get(), 1) != ARCHIVE_OK ||
      archive_write_open2(tar.get(), &into, nullptr, writeTarBlock, nullptr, nullptr) != ARCHIVE_OK)
    return fail(tarFailure("starting its tar"));
  // The first path of each inode with more than one link; later ones are written as hard links to it.
  std::map<std::pair<dev_t, ino_t>, std::string> firstLinks;
  std::vector<char> buffer(1 << 16);
  std::vector<fs::path> paths = {dir};
  paths.insert(paths.end(), tree->begin(), tree->end());
  for (const fs::path& path : paths) {
    const std::string relative = path == dir ? "./" : "./" + path.lexically_relative(dir).string();
    struct stat info {};
    if (::lstat(path.c_str(), &info) != 0)
      return fail(systemError(errno, fmt::format("lstat(\"{}\")", path.string())));
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                        &archive_entry_free);
    archive_entry_copy_pathname(entry.get(), relative.c_str());
    archive_entry_copy_sourcepath(entry.get(), path.c_str());
    // Mode, owners, times, symlink target and xattrs; no owner names (the layer is read by numbers).
    if (archive_read_disk_entry_from_file(disk.get(), entry.get(), -1, &info) != ARCHIVE_OK) {
      return fail(
          internalError("\"{}\": reading its metadata: {}", path.string(), archiveReason(disk.get())));
    }
    // Reading the tree moves access times: without them (and ctime) the same tree makes the same digest.
    archive_entry_unset_atime(entry.get());
    archive_entry_unset_ctime(entry.get());
    archive_entry_unset_birthtime(entry.get());
    UniqueFd data;
    if (S_ISREG(info.st_mode)) {
      if (info.st_nlink > 1) {
        auto [first, isFirst] = firstLinks.try_emplace({info.st_dev, info.st_ino}, relative);
        if (!isFirst) {
          archive_entry_copy_hardlink(entry.get(), first->second.c_str());
          archive_entry_set_size(entry.get(), 0);
        }
      }
      if (archive_entry_size(entry.get()) > 0) {
        data = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
        if (!data) return fail(systemError(errno, fmt::format("open(\"{}\")", path.string())));
      }
    }
    if (archive_write_header(tar.get(), entry.get()) < ARCHIVE_WARN)
      return fail(tarFailure(fmt::format("writing the header of \"{}\"", relative)));
    for (la_int64_t left = data ? archive_entry_size(entry.get()) : 0; left > 0;) {
      ssize_t n =
          ::read(data.get(), buffer.data(), std::min<size_t>(buffer.size(), static_cast<size_t>(left)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return fail(systemError(errno, fmt::format("read(\"{}\")", path.string())));
      if (n == 0) return fail(internalError("\"{}\" shrank while it was read", path.string()));
      if (archive_write_data(tar.get(), buffer.data(), static_cast<size_t>(n)) < 0)
        return fail(tarFailure(fmt::format("writing the data of \"{}\"", relative)));
      left -= n;
    }
    if (progress) progress({"reading", writer->written(), 0});
  }
  if (archive_write_close(tar.get()) != ARCHIVE_OK) return fail(tarFailure("ending its tar"));
  int64_t layerSize = writer->written();
  auto layer = writer->commit();
  if (!layer) return fail(layer.error());
  return commitOneLayerImage(
      *layer, layerSize, name, std::move(config), [&](const Digest& digest) { pins.pin(digest); }, progress,
      stop);
}

Result<Image> ImageStore::commitOneLayerImage(const Digest& layer, int64_t layerSize, std::string_view name,
                                              ImageConfig config,
                                              const std::function<void(const Digest&)>& pin,
                                              const ProgressCallback& progress, const std::stop_token& stop) {
  pin(layer);
  if (config.platform.os.empty()) config.platform = hostPlatform();
  config.diffIds = {layer};
  std::string configJson = renderImageConfig(config);
  auto configDigest = blobs_.put(configJson);
  if (!configDigest) return fail(configDigest.error());
  pin(*configDigest);
  ImageManifest manifest;
  manifest.mediaType = std::string(media::kOciManifest);
  manifest.config = {std::string(media::kOciConfig),
                     *configDigest,
                     static_cast<int64_t>(configJson.size()),
                     std::nullopt,
                     {}};
  manifest.layers = {{std::string(media::kOciLayer), layer, layerSize, std::nullopt, {}}};
  auto manifestDigest = blobs_.put(renderManifest(manifest));
  if (!manifestDigest) return fail(manifestDigest.error());
  pin(*manifestDigest);
  return commit(name, *manifestDigest, progress, stop);
}

Result<Image> ImageStore::importArchivePinned(const fs::path& archivePath, std::string_view name,
                                              const ImageConfig& rootfsConfig,
                                              const ProgressCallback& progress, const std::stop_token& stop) {
  if (auto valid = validateImageName(name); !valid) return fail(valid.error());
  auto names = archiveEntryNames(archivePath);
  if (!names) return fail(names.error());
  ArchiveKind kind = names->contains("oci-layout")      ? ArchiveKind::ociLayout
                     : names->contains("manifest.json") ? ArchiveKind::dockerSave
                                                        : ArchiveKind::rootfs;
  if (kind == ArchiveKind::rootfs) return importRootfsPinned(archivePath, name, rootfsConfig, progress, stop);

  // Both other kinds are unpacked to a scratch directory first (with the layer unpacker: the same
  // refusal of hostile paths), then read like a layout.
  fs::path scratch = root_ / fmt::format(".import-{}", uniqueSuffix());
  std::error_code error;
  fs::create_directory(scratch, error);
  if (error) return fail(systemError(error.value(), fmt::format("mkdir(\"{}\")", scratch.string())));
  struct RemoveScratch {
    fs::path path;
    ~RemoveScratch() {
      std::error_code ignored;
      fs::remove_all(path, ignored);
    }
  } removeScratch{scratch};
  if (progress) progress({"reading archive", 0, 0});
  if (auto unpacked = unpackLayer(archivePath, scratch, stop); !unpacked) {
    return fail(unpacked.error().wrap(fmt::format("archive \"{}\"", archivePath.string())));
  }
  if (kind == ArchiveKind::ociLayout) {
    return importLayoutPinned(scratch, {}, name, progress, stop);
  }

  // docker save: manifest.json lists, per image, its config file and layer tars (base first).
  auto manifestText = readSmallFile(scratch / "manifest.json");
  if (!manifestText) return fail(manifestText.error());
  json saved = json::parse(*manifestText, nullptr, false);
  if (saved.is_discarded() || !saved.is_array() || saved.empty()) {
    return fail(invalidField("archive", "manifest.json of a docker save archive must be a non-empty array"));
  }
  if (saved.size() != 1) {
    return fail(
        invalidField("archive", "the docker save archive holds {} images; save one at a time", saved.size()));
  }
  const json& item = saved[0];
  if (!item.is_object() || !item.value("Config", json()).is_string() ||
      !item.value("Layers", json()).is_array()) {
    return fail(invalidField("archive", "manifest.json[0] needs Config (a string) and Layers (an array)"));
  }
  auto inScratch = [&](const json& value, std::string_view field) -> Result<fs::path> {
    if (!value.is_string()) return fail(invalidField(std::string(field), "must be a string"));
    auto relative = normalizeLayerPath(value.get<std::string>());
    if (!relative) return fail(std::move(relative.error()).inField(field));
    return scratch / *relative;
  };
  PinGuard pins(*mutex_, pinned_);
  auto configPath = inScratch(item["Config"], "Config");
  if (!configPath) return fail(configPath.error());
  auto configText = readSmallFile(*configPath);
  if (!configText) return fail(configText.error());
  auto config = parseImageConfig(*configText);
  if (!config) return fail(config.error().wrap("docker save config"));
  ImageManifest manifest;
  manifest.mediaType = std::string(media::kOciManifest);
  for (size_t i = 0; i < item["Layers"].size(); ++i) {
    auto layerPath = inScratch(item["Layers"][i], fmt::format("Layers[{}]", i));
    if (!layerPath) return fail(layerPath.error());
    std::error_code sizeError;
    auto size = static_cast<int64_t>(fs::file_size(*layerPath, sizeError));
    if (sizeError)
      return fail(systemError(sizeError.value(), fmt::format("stat(\"{}\")", layerPath->string())));
    if (progress) {
      progress({fmt::format("copying layer {}/{}", i + 1, item["Layers"].size()), 0, 0,
                static_cast<int64_t>(i), static_cast<int64_t>(item["Layers"].size())});
    }
    auto digest = storeFile(*layerPath, std::nullopt, size, stop);
    if (!digest) return fail(digest.error().wrap(fmt::format("layer {}", i + 1)));
    pins.pin(*digest);
    manifest.layers.push_back({std::string(layerMediaTypeOf(*layerPath)), *digest, size, std::nullopt, {}});
  }
  auto configDigest = blobs_.put(*configText);
  if (!configDigest) return fail(configDigest.error());
  pins.pin(*configDigest);
  manifest.config = {std::string(media::kOciConfig),
                     *configDigest,
                     static_cast<int64_t>(configText->size()),
                     std::nullopt,
                     {}};
  auto manifestDigest = blobs_.put(renderManifest(manifest));
  if (!manifestDigest) return fail(manifestDigest.error());
  pins.pin(*manifestDigest);
  return commit(name, *manifestDigest, progress, stop);
}

// An import that fails has stored blobs and maybe layers no image references: collect them once its pins
// are gone, so a failed import leaves the store as it was.
Result<Image> ImageStore::collectingOnFailure(Result<Image> result) {
  if (!result) (void)collectGarbage();
  return result;
}

Result<Image> ImageStore::importLayout(const fs::path& layout, std::string_view ref, std::string_view name,
                                       const ProgressCallback& progress, std::stop_token stop) {
  return collectingOnFailure(importLayoutPinned(layout, ref, name, progress, stop));
}

Result<Image> ImageStore::importRootfs(const fs::path& tar, std::string_view name, ImageConfig config,
                                       const ProgressCallback& progress, std::stop_token stop) {
  return collectingOnFailure(importRootfsPinned(tar, name, std::move(config), progress, stop));
}

Result<Image> ImageStore::importRootfsDirectory(const fs::path& dir, std::string_view name,
                                                ImageConfig config, const ProgressCallback& progress,
                                                std::stop_token stop) {
  return collectingOnFailure(importRootfsDirectoryPinned(dir, name, std::move(config), progress, stop));
}

Result<Image> ImageStore::importArchive(const fs::path& archive, std::string_view name,
                                        const ImageConfig& rootfsConfig, const ProgressCallback& progress,
                                        std::stop_token stop) {
  return collectingOnFailure(importArchivePinned(archive, name, rootfsConfig, progress, stop));
}

Result<Image> ImageStore::pull(ImageSource& source, std::string_view reference,
                               std::optional<Digest> expected, std::string_view name,
                               const ProgressCallback& progress, std::stop_token stop) {
  return collectingOnFailure(pullPinned(source, reference, std::move(expected), name, progress, stop));
}

Result<Image> ImageStore::pullPinned(ImageSource& source, std::string_view reference,
                                     std::optional<Digest> expected, std::string_view name,
                                     const ProgressCallback& progress, const std::stop_token& stop) {
  if (auto valid = validateImageName(name); !valid) return fail(valid.error());
  PinGuard pins(*mutex_, pinned_);
  if (progress) progress({"resolving", 0, 0});
  // A document is stored only once its bytes hash to what named it; a tag names nothing, so a manifest
  // fetched by tag is taken as it hashes (and checked against `expected` when the caller has a digest).
  auto storeDocument = [&](const ImageSource::Document& document,
                           const std::optional<Digest>& want) -> Result<Digest> {
    Digest actual = digestOf(document.body, want ? want->algorithm : DigestAlgorithm::sha256);
    if (want && actual != *want) {
      return fail(invalidField("digest", "manifest {}: the registry sent a document that hashes to {}",
                               want->text(), actual.text()));
    }
    pins.pin(actual);
    auto writer = blobs_.begin(actual, static_cast<int64_t>(document.body.size()));
    if (!writer) return fail(writer.error());
    if (auto written = writer->write(document.body); !written) return fail(written.error());
    return writer->commit();
  };
  auto fetched = source.manifest(reference);
  if (!fetched) return fail(fetched.error());
  auto manifestDigest = storeDocument(*fetched, expected);
  if (!manifestDigest) return fail(manifestDigest.error());
  auto document = parseManifestDocument(fetched->body, fetched->contentType);
  if (!document) return fail(document.error().wrap(fmt::format("manifest {}", manifestDigest->text())));
  if (std::holds_alternative<ImageIndex>(*document)) {
    auto picked = pickPlatform(std::get<ImageIndex>(*document), hostPlatform());
    if (!picked) return fail(picked.error());
    auto platformManifest = source.manifest(picked->digest.text());
    if (!platformManifest) return fail(platformManifest.error());
    manifestDigest = storeDocument(*platformManifest, picked->digest);
    if (!manifestDigest) return fail(manifestDigest.error());
    document = parseManifestDocument(platformManifest->body, platformManifest->contentType);
    if (!document) return fail(document.error().wrap(fmt::format("manifest {}", manifestDigest->text())));
    if (!std::holds_alternative<ImageManifest>(*document)) {
      return fail(invalidField("manifests", "{} is an index inside an index", manifestDigest->text()));
    }
  }
  const auto& manifest = std::get<ImageManifest>(*document);
  std::vector<const Descriptor*> wanted{&manifest.config};
  for (const Descriptor& layer : manifest.layers) wanted.push_back(&layer);
  int64_t total = 0, done = 0, layersDone = 0;
  const auto layersTotal = static_cast<int64_t>(manifest.layers.size());
  for (const Descriptor* descriptor : wanted) total += descriptor->size;
  for (size_t i = 0; i < wanted.size(); ++i) {
    const Descriptor& descriptor = *wanted[i];
    pins.pin(descriptor.digest);
    std::string what = i == 0 ? std::string("config") : fmt::format("layer {}/{}", i, manifest.layers.size());
    if (stop.stop_requested()) return fail(operationCancelled());
    if (!blobs_.contains(descriptor.digest)) {
      auto writer = blobs_.begin(descriptor.digest, descriptor.size);
      if (!writer) return fail(writer.error());
      writer->stopOn(stop);
      int64_t before = done;
      auto fetchedBlob = source.blob(descriptor, *writer, [&](int64_t bytes) {
        if (progress) progress({"fetching " + what, before + bytes, total, layersDone, layersTotal});
      });
      if (!fetchedBlob)
        return fail(fetchedBlob.error().wrap(fmt::format("{} {}", what, descriptor.digest.text())));
      if (auto committed = writer->commit(); !committed) {
        return fail(committed.error().wrap(fmt::format("{}", what)));
      }
    }
    done += descriptor.size;
    if (i > 0) ++layersDone;
    if (progress) progress({"fetched " + what, done, total, layersDone, layersTotal});
  }
  return commit(name, *manifestDigest, progress, stop);
}

Status ImageStore::remove(std::string_view name) {
  std::lock_guard lock(*mutex_);
  auto entries = readIndex();
  if (!entries) return fail(entries.error());
  size_t before = entries->size();
  std::erase_if(*entries, [&](const IndexEntry& entry) { return entry.name == name; });
  if (entries->size() == before) return fail(notFound("no image named \"{}\"", terminalSafe(name)));
  if (auto written = writeIndex(*entries); !written) return fail(written.error());
  if (auto collected = collectGarbageLocked(); !collected) return fail(collected.error());
  return {};
}

Status ImageStore::removeUnlessPinned(std::string_view name) {
  std::lock_guard lock(*mutex_);
  auto entries = readIndex();
  if (!entries) return fail(entries.error());
  auto named =
      std::find_if(entries->begin(), entries->end(), [&](const IndexEntry& e) { return e.name == name; });
  if (named == entries->end()) return fail(notFound("no image named \"{}\"", terminalSafe(name)));
  auto pins = readPins();
  if (!pins) return fail(pins.error());
  std::vector<std::string> holders;
  for (const auto& [holder, entry] : *pins) {
    if (entry.manifest == named->manifest) holders.push_back(holder);
  }
  if (!holders.empty()) {
    std::string list;
    for (const std::string& holder : holders) list += (list.empty() ? "" : ", ") + holder;
    return fail(conflict("image \"{}\" is used by {} instance{}: {}; remove {} first", terminalSafe(name),
                         holders.size(), holders.size() == 1 ? "" : "s", list,
                         holders.size() == 1 ? "it" : "them"));
  }
  entries->erase(named);
  if (auto written = writeIndex(*entries); !written) return fail(written.error());
  if (auto collected = collectGarbageLocked(); !collected) return fail(collected.error());
  return {};
}

ImageStore::Hold::Hold(std::mutex& mutex, std::multiset<Digest>& held, std::vector<Digest> digests)
    : mutex_(&mutex), held_(&held), digests_(std::move(digests)) {
  std::lock_guard lock(*mutex_);
  held_->insert(digests_.begin(), digests_.end());
}

ImageStore::Hold::Hold(Hold&& other) noexcept
    : mutex_(other.mutex_), held_(other.held_), digests_(std::move(other.digests_)) {
  other.digests_.clear();
}

ImageStore::Hold::~Hold() {
  if (digests_.empty()) return;
  std::lock_guard lock(*mutex_);
  for (const Digest& digest : digests_) held_->erase(held_->find(digest));
}

ImageStore::Hold ImageStore::hold(const Image& image) const {
  std::vector<Digest> digests = {image.manifestDigest, image.configDigest};
  for (const Descriptor& layer : image.manifest.layers) digests.push_back(layer.digest);
  return Hold(*mutex_, pinned_, std::move(digests));
}

Result<size_t> ImageStore::collectGarbage() {
  std::lock_guard lock(*mutex_);
  return collectGarbageLocked();
}

Result<size_t> ImageStore::collectGarbageLocked() {
  auto entries = readIndex();
  if (!entries) return fail(entries.error());
  std::set<Digest> keep(pinned_.begin(), pinned_.end());
  std::set<std::string> keepLayers;
  for (const IndexEntry& entry : *entries) {
    keep.insert(entry.manifest);
    auto image = load(entry);
    if (!image) return fail(image.error().wrap("collecting garbage"));  // never delete on a damaged index
    keep.insert(image->configDigest);
    for (const Descriptor& layer : image->manifest.layers) {
      keep.insert(layer.digest);
      keepLayers.insert(layer.digest.hex);
    }
  }
  for (const Digest& digest : pinned_) keepLayers.insert(digest.hex);
  auto pins = readPins();
  if (!pins) return fail(pins.error().wrap("collecting garbage"));  // never delete on a damaged pin either
  for (const auto& [holder, entry] : *pins) {
    if (keep.contains(entry.manifest)) continue;  // its image was loaded already (pins often share one)
    auto image = load(entry);
    if (!image) return fail(image.error().wrap(fmt::format("collecting garbage: the pin of \"{}\"", holder)));
    keep.insert(entry.manifest);
    keep.insert(image->configDigest);
    for (const Descriptor& layer : image->manifest.layers) {
      keep.insert(layer.digest);
      keepLayers.insert(layer.digest.hex);
    }
  }
  size_t removed = 0;
  auto blobs = blobs_.list();
  if (!blobs) return fail(blobs.error());
  for (const Digest& digest : *blobs) {
    if (keep.contains(digest)) continue;
    if (auto gone = blobs_.remove(digest); !gone) return fail(gone.error());
    ++removed;
  }
  std::error_code error;
  for (const auto& dir : fs::directory_iterator(root_ / "layers", error)) {
    std::string name = dir.path().filename().string();
    if (keepLayers.contains(name)) continue;
    // .tmp-* of an unpack in progress belongs to a pinned import; only an idle store (open) clears those.
    if (name.starts_with(".tmp-") && !pinned_.empty()) continue;
    std::error_code ignored;
    fs::remove_all(dir.path(), ignored);
    ++removed;
  }
  // VM base disks (disk.h) of images that are gone, and what an interrupted disk build left.
  std::set<std::string> keepDisks;
  for (const IndexEntry& entry : *entries) keepDisks.insert(entry.manifest.hex + ".ext4");
  for (const auto& [holder, entry] : *pins) keepDisks.insert(entry.manifest.hex + ".ext4");
  for (const Digest& digest : pinned_) keepDisks.insert(digest.hex + ".ext4");
  for (const auto& disk : fs::directory_iterator(root_ / "disks", error)) {
    std::string name = disk.path().filename().string();
    if (keepDisks.contains(name) || (name.starts_with('.') && !pinned_.empty())) continue;
    std::error_code ignored;
    fs::remove_all(disk.path(), ignored);
    ++removed;
  }
  // A pin a crash left half written (pins are written under the lock this holds, so none is under way).
  error.clear();
  for (const auto& file : fs::directory_iterator(root_ / "pins", error)) {
    if (file.path().filename().string().find(".tmp-") == std::string::npos) continue;
    std::error_code ignored;
    fs::remove(file.path(), ignored);
  }
  error.clear();
  for (const auto& dir : fs::directory_iterator(root_, error)) {
    std::string name = dir.path().filename().string();
    // Scratch of imports and builds (`.build-*.tar`, debian_build.cc) a crash left behind.
    if ((name.starts_with(".import-") || name.starts_with(".build-")) && pinned_.empty()) {
      std::error_code ignored;
      fs::remove_all(dir.path(), ignored);
    }
  }
  return removed;
}

namespace {

Status validateHolder(std::string_view holder) {
  bool valid = !holder.empty() && holder.size() <= 255;
  for (char c : holder) {
    valid = valid && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                      c == '_' || c == '-');
  }
  if (!valid) {
    return fail(invalidField("holder", "\"{}\" is not a pin holder's name (1-255 of A-Z a-z 0-9 _ -)",
                             terminalSafe(holder)));
  }
  return {};
}

}  // namespace

Result<std::optional<ImageStore::IndexEntry>> ImageStore::readPin(std::string_view holder) const {
  const fs::path file = root_ / "pins" / std::string(holder);
  std::error_code error;
  if (!fs::exists(file, error)) return std::optional<IndexEntry>();
  auto text = readSmallFile(file);
  if (!text) return fail(text.error());
  json parsed = json::parse(*text, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object() || !parsed.value("name", json()).is_string() ||
      !parsed.value("manifest", json()).is_string()) {
    return fail(internalError("\"{}\" is damaged (not a pin corral writes)", file.string()));
  }
  auto digest = parseDigest(parsed["manifest"].get<std::string>());
  if (!digest) return fail(internalError("\"{}\" is damaged: {}", file.string(), digest.error().message()));
  return IndexEntry{parsed["name"].get<std::string>(), *digest, 0};
}

Result<std::vector<std::pair<std::string, ImageStore::IndexEntry>>> ImageStore::readPins() const {
  std::vector<std::pair<std::string, IndexEntry>> pins;
  std::error_code error;
  for (const auto& file : fs::directory_iterator(root_ / "pins", error)) {
    std::string holder = file.path().filename().string();
    // A pin being written (writeFileDurably's "<holder>.tmp-*"; holders have no '.'), or a crash's.
    if (holder.find('.') != std::string::npos) continue;
    auto entry = readPin(holder);
    if (!entry) return fail(entry.error());
    if (*entry) pins.push_back({holder, std::move(**entry)});
  }
  if (error && error != std::errc::no_such_file_or_directory)
    return fail(systemError(error.value(), fmt::format("list \"{}\"", (root_ / "pins").string())));
  std::sort(pins.begin(), pins.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  return pins;
}

Result<Image> ImageStore::pin(std::string_view holder, std::string_view name) {
  if (auto ok = validateHolder(holder); !ok) return fail(ok.error());
  std::lock_guard lock(*mutex_);
  // Only the holder's own pin file is read: a start costs the same however many instances hold pins.
  auto own = readPin(holder);
  if (!own) return fail(own.error());
  if (*own) return load(**own);
  auto entries = readIndex();
  if (!entries) return fail(entries.error());
  auto named =
      std::find_if(entries->begin(), entries->end(), [&](const IndexEntry& e) { return e.name == name; });
  if (named == entries->end()) return fail(notFound("no image named \"{}\"", terminalSafe(name)));
  auto image = load(*named);
  if (!image) return fail(image.error());
  std::error_code error;
  fs::create_directories(root_ / "pins", error);
  json pinJson = {{"name", named->name}, {"manifest", named->manifest.text()}};
  if (auto written = writeFileDurably(root_ / "pins" / std::string(holder), pinJson.dump()); !written)
    return fail(written.error().wrap(fmt::format("pin image \"{}\" for \"{}\"", terminalSafe(name), holder)));
  return image;
}

bool ImageStore::hasPin(std::string_view holder) const {
  std::error_code error;
  return validateHolder(holder) && fs::exists(root_ / "pins" / std::string(holder), error);
}

Result<Image> ImageStore::pinned(std::string_view holder) const {
  if (auto ok = validateHolder(holder); !ok) return fail(ok.error());
  std::lock_guard lock(*mutex_);
  auto own = readPin(holder);
  if (!own) return fail(own.error());
  if (*own) return load(**own);
  return fail(notFound("\"{}\" pins no image", holder));
}

Status ImageStore::unpin(std::string_view holder) {
  if (auto ok = validateHolder(holder); !ok) return fail(ok.error());
  std::lock_guard lock(*mutex_);
  fs::path file = root_ / "pins" / std::string(holder);
  // A damaged pin is dropped all the same; the collection then finds out what is still referenced.
  auto dropped = readPin(holder);
  if (::unlink(file.c_str()) != 0) {
    if (errno == ENOENT) return {};
    return fail(systemError(errno, fmt::format("unlink(\"{}\")", file.string())));
  }
  // The pin of a manifest the index still names frees nothing (the index keeps all of that image), so
  // the collection, which reads every pin, is left out: removing an instance of a named image costs the
  // same however many instances there are.
  if (dropped && *dropped) {
    auto entries = readIndex();
    if (entries && std::any_of(entries->begin(), entries->end(), [&](const IndexEntry& entry) {
          return entry.manifest == (*dropped)->manifest;
        }))
      return {};
  }
  if (auto collected = collectGarbageLocked(); !collected) return fail(collected.error());
  return {};
}

Result<std::vector<std::pair<std::string, Digest>>> ImageStore::pins() const {
  std::lock_guard lock(*mutex_);
  auto pins = readPins();
  if (!pins) return fail(pins.error());
  std::vector<std::pair<std::string, Digest>> result;
  for (const auto& [holder, entry] : *pins) result.push_back({holder, entry.manifest});
  return result;
}

}  // namespace corral::images
