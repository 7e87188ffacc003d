// Where corrald finds what it needs besides itself: corral-reaper and the built images (busybox's rootfs and
// VM image, corral's guest kernel). In a build tree they sit next to corrald (build/corral-reaper,
// build/images); once installed (cmake --install, the Debian package) under PREFIX/lib/corral, found from
// corrald's own path so an installed tree can be moved as a whole (--prefix /opt/corral works too).
#pragma once

#include <filesystem>
#include <optional>
#include <string_view>

namespace corral::daemon {

struct InstallLayout {
  std::filesystem::path helperDir;  // holds corral-reaper
  // The installed images (PREFIX/lib/corral/images), when corrald runs from an installed tree that has them;
  // nullopt in a build tree, where --image-dir is given (tests, scripts/demo) or defaults to STATE_DIR's.
  std::optional<std::filesystem::path> imageDir;
  bool installed = false;
};

// The package library directory as seen from the binary directory, fixed at configure time
// (CMakeLists.txt: CORRAL_INSTALL_PKGLIBDIR relative to CMAKE_INSTALL_BINDIR, "../lib/corral").
std::string_view pkgLibDirFromBinDir();

// `executable` is corrald's own path (/proc/self/exe). A build tree has corral-reaper next to it; otherwise
// it is an installed tree and `fromBinDir` (pkgLibDirFromBinDir()) leads from its directory to the helpers.
InstallLayout resolveInstallLayout(const std::filesystem::path& executable, std::string_view fromBinDir);

// The layout of the running corrald; a build-tree layout around "." when /proc/self/exe cannot be read.
InstallLayout currentInstallLayout();

}  // namespace corral::daemon
