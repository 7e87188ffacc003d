// An OCI runtime-spec config.json (a bundle's) read and validated into the runtime's ContainerConfig with
// its BundleSetup, plus what only the OCI command line uses (hooks, annotations, terminal). Pure: JSON in,
// values out; what needs the host (the rootfs exists, a bind source is a file) is checkBundleOnHost.
// Every known field the runtime does not implement is refused naming it as a JSON pointer
// ("/linux/resources/blockIO"); properties the spec does not know are reported in `ignored`, as the spec
// asks runtimes to ignore them.
#pragma once

#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "container/runtime.h"
#include "core/error.h"

namespace corral::container {

struct OciHook {
  std::string path;  // absolute, in the runtime's namespace
  std::vector<std::string> args;
  std::vector<std::string> env;
  std::optional<int> timeoutSeconds;
  bool operator==(const OciHook&) const = default;
};

struct OciHooks {
  std::vector<OciHook> prestart, createRuntime, createContainer, startContainer, poststart, poststop;
  bool operator==(const OciHooks&) const = default;
};

struct OciConsoleSize {
  unsigned height = 0, width = 0;
  bool operator==(const OciConsoleSize&) const = default;
};

struct OciBundleConfig {
  std::string ociVersion;
  ContainerConfig container;  // container.bundle is always set
  bool terminal = false;
  std::optional<OciConsoleSize> consoleSize;
  OciHooks hooks;
  std::map<std::string, std::string> annotations;
  std::vector<std::string> ignored;  // pointers of properties the runtime spec does not define
};

struct OciParseContext {
  std::filesystem::path bundleDir;  // absolute: relative root.path and bind sources are taken from here
  std::string id;                   // the container id: the cgroup name unless linux.cgroupsPath says
  std::string cgroupParent = "corral-runtime";  // the cgroup parent when linux.cgroupsPath is empty
};

// Container ids: [A-Za-z0-9][A-Za-z0-9_.-]*, at most 1024 characters (runc's rule, also safe as a file
// name under --root). Errors name `field`.
Status validateContainerId(std::string_view id, std::string_view field = "id");

Result<OciBundleConfig> parseOciConfig(std::string_view json, const OciParseContext& context);

// `exec --process FILE`: a process object replacing args, env, cwd, user, capabilities, rlimits,
// noNewPrivileges, oomScoreAdj and umask of `base` (the container's). Errors name "/process/...".
struct OciProcess {
  ContainerConfig config;
  bool terminal = false;
  std::optional<OciConsoleSize> consoleSize;
};
Result<OciProcess> parseOciProcess(std::string_view json, const ContainerConfig& base);

// What needs the host: the root directory exists (a missing one is "/root/path"), each bind's source
// exists and says whether its target is a file, and a user namespace joined by path is there: its maps
// become config.userNamespace (a failure names "/linux/namespaces").
Status checkBundleOnHost(ContainerConfig& config);

// runc's `spec`: a default config.json for a rootless-free container running "sh" (the runtime-spec
// example's namespaces, mounts, masked and read-only paths, capabilities).
std::string defaultOciSpec();

}  // namespace corral::container
