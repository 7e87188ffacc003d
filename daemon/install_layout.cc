// Build tree or installed tree: decided by what lies next to corrald's binary (daemon/install_layout.h).
#include "daemon/install_layout.h"

#include <system_error>

#ifndef CORRAL_PKGLIBDIR_FROM_BINDIR
#error "CMakeLists.txt defines CORRAL_PKGLIBDIR_FROM_BINDIR for this file"
#endif

namespace corral::daemon {

std::string_view pkgLibDirFromBinDir() {
  return CORRAL_PKGLIBDIR_FROM_BINDIR;
}

InstallLayout resolveInstallLayout(const std::filesystem::path& executable, std::string_view fromBinDir) {
  const std::filesystem::path binDir = executable.parent_path();
  std::error_code ec;
  InstallLayout layout;
  if (std::filesystem::exists(binDir / "corral-reaper", ec)) {
    layout.helperDir = binDir;
    return layout;
  }
  layout.helperDir = (binDir / fromBinDir).lexically_normal();
  layout.installed = true;
  if (std::filesystem::is_directory(layout.helperDir / "images", ec))
    layout.imageDir = layout.helperDir / "images";
  return layout;
}

InstallLayout currentInstallLayout() {
  std::error_code ec;
  std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) {
    InstallLayout buildTree;
    buildTree.helperDir = ".";
    return buildTree;
  }
  return resolveInstallLayout(self, pkgLibDirFromBinDir());
}

}  // namespace corral::daemon
