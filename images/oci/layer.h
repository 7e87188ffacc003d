// Unpacking one image layer (a tar, plain, gzip or zstd) into a directory of its own, as overlayfs wants
// its lower layers: the image spec's whiteouts become overlay whiteouts (a 0/0 character device), opaque
// markers become the trusted.overlay.opaque xattr, so stacking the layers' directories as lowerdirs gives
// the image's root filesystem without copying a byte (what containerd's overlay snapshotter does).
//
// The unpack runs in a child process chrooted into the directory: no entry, symlink or hard link can
// reach outside it whatever the archive holds. Entries with ".." or absolute paths are refused outright,
// as is writing through a symlink (whiteouts and opaque markers included) and a whiteout of "." or "..";
// device nodes are skipped (a container gets its own /dev); ownership, modes, times, hard links and xattrs
// are kept, except trusted.overlay.* (those are corral's to set).
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>

#include "core/error.h"

namespace corral::images {

struct UnpackStats {
  uint64_t entries = 0;    // every tar entry read
  uint64_t bytes = 0;      // file contents written
  uint64_t whiteouts = 0;  // ".wh.NAME" entries made overlay whiteouts
  uint64_t opaqueDirectories = 0;
  uint64_t hardlinks = 0;
  uint64_t skippedDevices = 0;  // character and block devices left out
  bool operator==(const UnpackStats&) const = default;
};

// `dir` must exist, be empty and live on a filesystem with trusted xattrs (ext4, xfs, tmpfs); root only.
// On failure the error names the entry ("layer entry \"a/../b\": ...") and `dir` may hold a partial tree:
// the caller unpacks into a temporary directory and removes it (see ImageStore).
Result<UnpackStats> unpackLayer(const std::filesystem::path& blob, const std::filesystem::path& dir);

// What unpackLayer's child does once chrooted, done in this process without the chroot: unpacks the tar
// read from `blobFd` (from its current offset) into the working directory. Only the checks of the unpacker
// and libarchive keep entries inside that directory here, which is what the layer_tar fuzz target
// (tests/fuzz/) exercises: the chroot would hide their failures, and a child's coverage is not seen.
Result<UnpackStats> unpackLayerInWorkingDirectory(int blobFd);

// The checks on one entry's path, pure (unit-tested): "./usr/bin/" → "usr/bin"; "" or "./" → "."; refuses
// absolute paths, ".." components and NUL-free control characters are kept (file names may have them).
Result<std::string> normalizeLayerPath(std::string_view path);

}  // namespace corral::images
