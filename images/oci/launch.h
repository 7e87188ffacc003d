// What a container of an image runs, by docker run's rules: the argv from Entrypoint, Cmd and the user's
// command, the environment, the working directory, and the image's User resolved to ids through the
// /etc/passwd and /etc/group of its layer stack. Kind-neutral: the runtime gets plain strings and numbers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "images/oci/manifest.h"

namespace corral::images {

struct LaunchUser {
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::vector<uint32_t> additionalGids;  // the groups of /etc/group that list the user by name
  std::string home = "/";                // from /etc/passwd; "/" when the user has no entry
  bool operator==(const LaunchUser&) const = default;
};

struct LaunchProcess {
  std::vector<std::string> argv;
  std::vector<std::string> env;  // "K=V"
  std::string workingDir;        // "/" when the image names none
  LaunchUser user;
  bool operator==(const LaunchProcess&) const = default;
};

// `docker run IMAGE [COMMAND...]`: a command replaces Cmd and keeps Entrypoint; without one, Entrypoint +
// Cmd. Nothing to run at all is refused (field "command").
Result<std::vector<std::string>> launchArgv(const ImageConfig& config,
                                            const std::vector<std::string>& command);

// The image's Env with the user's entries replacing those of the same name (and new ones after them), and
// HOME from the user's passwd entry when neither sets it (as runc does).
std::vector<std::string> launchEnv(const ImageConfig& config, const std::vector<std::string>& userEnv,
                                   const LaunchUser& user);

// runc's user lookup (libcontainer/user GetExecUser) for a User of "", "name", "uid", "name:group",
// "uid:gid", "name:gid" or "uid:group" against the texts of /etc/passwd and /etc/group (absent: nullopt):
// a name must have an entry; a number need not (its gid is then 0, or the entry's); an explicit group
// replaces the entry's gid and brings no supplementary groups, otherwise the groups listing the user's name
// are the supplementary ones. Refusals name field "user" and say which file lacks what.
// `source` says whose the text is in refusals ("image User", or "user" for an instance's own --user).
Result<LaunchUser> resolveUser(std::string_view user, const std::optional<std::string>& passwd,
                               const std::optional<std::string>& group, std::string_view source = "image User");

// resolveUser against the /etc/passwd and /etc/group the layer stack (base first) shows.
Result<LaunchUser> resolveUserThroughLayers(std::string_view user,
                                           const std::vector<std::filesystem::path>& layersBaseFirst,
                                           std::string_view source = "image User");

// Reads `path` (absolute, e.g. "/etc/passwd") through a stack of overlayfs layer directories given base
// first (Image::layerDirs), as the merged view would show it: the topmost layer that has it wins; a
// whiteout of it or of a parent directory, a non-directory over a parent, or an opaque parent directory
// (trusted.overlay.opaque) hides the layers below. nullopt when the merged view has no regular file there
// (a symlink there is not followed: it could point anywhere on the host). At most 4 MiB.
Result<std::optional<std::string>> readThroughLayers(
    const std::vector<std::filesystem::path>& layersBaseFirst, std::string_view path);

// All of it for one image: argv, env and working directory from `config` and the user's request, the User
// (or `userOverride`, docker run's --user, when given) resolved through the layers. Errors name the field
// ("command", "user").
Result<LaunchProcess> launchProcess(const ImageConfig& config,
                                    const std::vector<std::filesystem::path>& layersBaseFirst,
                                    const std::vector<std::string>& command, const std::vector<std::string>& env,
                                    std::string_view userOverride = {});

}  // namespace corral::images
