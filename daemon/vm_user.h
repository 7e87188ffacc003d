// corrald --vm-user: who the direct engine's QEMU runs as, and the state directory's modes that let that user
// reach its VMs' files under VMS_DIR and nothing else of corrald's (the database, the image store's layers,
// the containers' roots).
#pragma once

#include <filesystem>
#include <optional>
#include <string>

#include "core/error.h"
#include "vmm/qemu_spawn.h"

namespace corral::daemon {

// What auto picks: the user Debian's libvirt makes for its own QEMUs (primary group kvm).
inline constexpr const char* kAutoVmUser = "libvirt-qemu";

struct VmUserChoice {
  enum class Mode { automatic, root, named };
  Mode mode = Mode::root;
  std::optional<vmm::QemuSpawn::User> user = std::nullopt;  // none: QEMU runs as root
  std::string name = "root";                                // the user QEMU runs as
  std::string reason;                                       // why auto chose `name`
};

std::string_view vmUserModeName(VmUserChoice::Mode mode);  // "auto" | "root" | "named"

// The option's text: "auto" (kAutoVmUser when it exists, else root), "root", or a user that must exist (else
// InvalidArgument naming vm-user). Looks the users up.
Result<VmUserChoice> parseVmUser(const std::string& text);

// Fine when `user` may pass through every directory from / down to `dir` and into it; else an error naming
// the first directory that stops it.
Status reachableBy(const std::filesystem::path& dir, const vmm::QemuSpawn::User& user);

// Sets the modes for `choice` and checks the user can reach `vmsDir`. With a user: the state directory
// 0711 (passable, not listable) and VMS_DIR 0711; without: the state directory 0700. A named user that cannot
// reach VMS_DIR is an error naming vm-user and the directory; auto falls back to root, saying why in
// `choice.reason`.
Status settleVmUser(VmUserChoice& choice, const std::filesystem::path& stateDir,
                    const std::filesystem::path& vmsDir);

// Every entry of the state directory but VMS_DIR loses its group and other bits (0600, 0700): once the
// directory is passable, nothing in it may be reachable by a guessed name. Symlinks are left alone.
Status privatiseStateDir(const std::filesystem::path& stateDir, const std::filesystem::path& vmsDir);

}  // namespace corral::daemon
