// A VM's root disk from an image: the layers stacked (overlayfs, read-only) and written into an ext4
// filesystem image with `mkfs.ext4 -d` once per image (disks/<manifest hex>.ext4, sparse, with room for
// the guest's writes), and a qcow2 overlay per instance backed by it, so instances never write into the
// shared base and a second VM of the image starts from the same clean tree.
#pragma once

#include <cstdint>
#include <filesystem>

#include "core/error.h"
#include "images/oci/image_store.h"

namespace corral::images {

// The base disk of `image` in `store` (made on first use; later calls return the same file). Root only.
Result<std::filesystem::path> baseDisk(const ImageStore& store, const Image& image);

// A new qcow2 file at `path` whose backing file is `base` (raw); fails if `path` exists.
// A relative `base` is taken relative to `path`'s directory (and kept relative in the file).
Status createInstanceDisk(const std::filesystem::path& base, const std::filesystem::path& path);
// Points the overlay at `path` to another backing file `base` (raw) with the same contents (qemu-img rebase
// -u: only the header changes).
Status rebaseInstanceDisk(const std::filesystem::path& path, const std::filesystem::path& base);

// The size the ext4 image gets for a tree of `bytes` in `inodes` files: the tree with 25 % slack plus
// 1 GiB for the guest's writes, rounded to MiB (sparse: unused space costs nothing on the host). Pure.
uint64_t diskSizeFor(uint64_t bytes, uint64_t inodes);

}  // namespace corral::images
