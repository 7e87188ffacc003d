// Debian images with mmdebstrap (see debian_build.h).
#include "images/oci/debian_build.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>

#include "core/text.h"
#include "core/unique_fd.h"

namespace corral::images {

namespace fs = std::filesystem;

namespace {

bool validPackageName(std::string_view name) {
  if (name.size() < 2 || name.size() > 128) return false;
  auto lowerAlnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lowerAlnum(name.front())) return false;
  for (char c : name) {
    if (!lowerAlnum(c) && c != '+' && c != '-' && c != '.') return false;
  }
  return true;
}

std::string quoteForShell(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'')
      out += "'\\''";
    else
      out += c;
  }
  return out + "'";
}

}  // namespace

Status validateDebianBuild(const DebianBuild& build) {
  if (auto valid = validateImageName(build.name); !valid) return fail(valid.error());
  if (build.packages.empty()) return fail(invalidField("packages", "name at least one Debian package"));
  for (size_t i = 0; i < build.packages.size(); ++i) {
    if (!validPackageName(build.packages[i])) {
      return fail(invalidField(fmt::format("packages[{}]", i),
                               "\"{}\" is not a Debian package name (lowercase letters, digits, + - .)",
                               terminalSafe(build.packages[i])));
    }
  }
  for (size_t i = 0; i < build.env.size(); ++i) {
    if (build.env[i].find('=') == std::string::npos || build.env[i].starts_with('=')) {
      return fail(
          invalidField(fmt::format("env[{}]", i), "\"{}\" is not NAME=VALUE", terminalSafe(build.env[i])));
    }
  }
  if (!build.workingDir.empty() && !build.workingDir.starts_with('/')) {
    return fail(
        invalidField("working_dir", "\"{}\" is not an absolute path", terminalSafe(build.workingDir)));
  }
  if (!build.appDir.empty() && !fs::is_directory(build.appDir)) {
    return fail(invalidField("app_dir", "\"{}\" is not a directory", terminalSafe(build.appDir.string())));
  }
  if (build.suite != "bookworm") {
    return fail(invalidField("suite", "\"{}\": corral builds Debian 12 (bookworm) images",
                             terminalSafe(build.suite)));
  }
  return {};
}

std::vector<std::string> mmdebstrapCommand(const DebianBuild& build, const fs::path& output) {
  std::string include;
  for (const std::string& package : build.packages) include += (include.empty() ? "" : ",") + package;
  std::vector<std::string> command{
      "mmdebstrap", "--variant=minbase", "--mode=root", "--format=tar", "--include=" + include,
      // No apt lists or caches in the image: they are the mirror's, not the app's.
      "--customize-hook=rm -rf \"$1\"/var/lib/apt/lists/* \"$1\"/var/cache/apt/*.bin"};
  if (!build.appDir.empty()) {
    command.push_back("--customize-hook=mkdir -p \"$1/app\"");
    command.push_back("--customize-hook=sync-in " + quoteForShell(build.appDir.string()) + " /app");
  }
  command.push_back(build.suite);
  command.push_back(output.string());
  if (!build.mirror.empty()) command.push_back(build.mirror);
  return command;
}

Result<Image> buildDebianImage(ImageStore& store, const DebianBuild& build, const ProgressCallback& progress,
                               std::stop_token stop) {
  if (auto valid = validateDebianBuild(build); !valid) return fail(valid.error());
  static std::atomic<uint64_t> counter{0};
  fs::path output = store.root() / fmt::format(".build-{}-{}.tar", ::getpid(), counter.fetch_add(1));
  struct RemoveOutput {
    fs::path path;
    ~RemoveOutput() { ::unlink(path.c_str()); }
  } removeOutput{output};

  std::vector<std::string> command = mmdebstrapCommand(build, output);
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2"));
  UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
  pid_t child = ::fork();
  if (child < 0) return fail(systemError(errno, "fork"));
  if (child == 0) {
    ::dup2(writeEnd.get(), 1);
    ::dup2(writeEnd.get(), 2);
    ::setpgid(0, 0);  // its own group: an interrupted build takes apt and dpkg down with it
    std::vector<char*> argv;
    for (std::string& arg : command) argv.push_back(arg.data());
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  writeEnd.reset();
  std::string pending, tail;
  char buffer[4096];
  for (;;) {
    pollfd ready{.fd = readEnd.get(), .events = POLLIN, .revents = 0};
    int polled = ::poll(&ready, 1, 100);
    if (stop.stop_requested()) {
      ::kill(-child, SIGKILL);
      ::kill(child, SIGKILL);  // before its setpgid, the group may not exist yet
      while (::waitpid(child, nullptr, 0) < 0 && errno == EINTR) {
      }
      return fail(operationCancelled());
    }
    if (polled < 0 && errno == EINTR) continue;
    if (polled == 0) continue;
    ssize_t n = ::read(readEnd.get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buffer, static_cast<size_t>(n));
    for (size_t newline; (newline = pending.find('\n')) != std::string::npos;) {
      std::string line = pending.substr(0, newline);
      pending.erase(0, newline + 1);
      if (progress && line.starts_with("I: ")) progress({"mmdebstrap: " + line.substr(3), 0, 0});
      tail += line + "\n";
      if (tail.size() > 2000) tail.erase(0, tail.size() - 2000);
    }
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) {
      return fail(unavailable("mmdebstrap is not installed (scripts/install-deps installs it)"));
    }
    // Most often a package that does not exist, or the mirror out of reach: mmdebstrap says which.
    return fail(invalidField("packages", "building {} with mmdebstrap failed: {}", build.name,
                             terminalSafeLines(tail)));
  }
  ImageConfig config;
  config.platform = hostPlatform();
  config.entrypoint = build.entrypoint;
  config.cmd =
      build.cmd.empty() && build.entrypoint.empty() ? std::vector<std::string>{"/bin/sh"} : build.cmd;
  config.env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"};
  config.env.insert(config.env.end(), build.env.begin(), build.env.end());
  config.workingDir = !build.workingDir.empty() ? build.workingDir : build.appDir.empty() ? "" : "/app";
  config.labels["org.opencontainers.image.description"] = "Debian 12 with " +
                                                          fmt::format("{}", fmt::join(build.packages, ", ")) +
                                                          " (corral image build --debian)";
  return store.importRootfs(output, build.name, config, progress, stop);
}

}  // namespace corral::images
