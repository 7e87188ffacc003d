// `corral image build NAME --debian PKG,...`: a Debian 12 image made from Debian's own packages with
// mmdebstrap (one root filesystem tar), imported as a one-layer OCI image. Real software where no
// registry is reachable: only Debian's mirror is needed.
#pragma once

#include <filesystem>
#include <stop_token>
#include <string>
#include <vector>

#include "core/error.h"
#include "images/oci/image_store.h"

namespace corral::images {

struct DebianBuild {
  std::string name;                   // the image's name in the store
  std::vector<std::string> packages;  // Debian package names, added to the minbase variant
  std::vector<std::string> entrypoint;
  std::vector<std::string> cmd;  // empty: /bin/sh
  std::vector<std::string> env;  // "K=V", after the default PATH
  std::string workingDir;        // empty: /, or /app with `appDir`
  std::filesystem::path appDir;  // a host directory copied to /app; empty: none
  std::string suite = "bookworm";
  std::string mirror;  // empty: mmdebstrap's default (deb.debian.org); or a URL, or a sources file
};

// Field names match the API's (`packages[2]`, `app_dir`). Package names follow Debian policy: lowercase
// letters, digits, + - . and at least two characters, starting with a letter or digit.
Status validateDebianBuild(const DebianBuild& build);

// The mmdebstrap command line for `build`, writing the tar to `output` (pure, unit-tested).
std::vector<std::string> mmdebstrapCommand(const DebianBuild& build, const std::filesystem::path& output);

// Runs mmdebstrap (its progress lines go to `progress` as steps), then imports the tar into `store`.
// A failure or interruption leaves no image and no partial tar; a stop kills mmdebstrap's process group.
Result<Image> buildDebianImage(ImageStore& store, const DebianBuild& build,
                               const ProgressCallback& progress = {}, std::stop_token stop = {});

}  // namespace corral::images
