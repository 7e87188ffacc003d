// What the tests of corral-runtime share (its command line, and it under containerd and podman): the image's
// root, a per-test copy of it, and running a command with its output captured.
#pragma once

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace corral::runtime_tests {

inline const std::filesystem::path kImageRootfs =
    std::filesystem::path(CORRAL_IMAGE_DIR) / "busybox" / "rootfs";

// A copy of the image's root in `dir`: the runtimes and their callers write into a bundle's root (mount
// points, podman's /run/.containerenv, hooks' files), which must not change the built image.
inline std::filesystem::path copyImageRootfs(const std::filesystem::path& dir) {
  const std::filesystem::path rootfs = dir / "rootfs";
  std::filesystem::copy(
      kImageRootfs, rootfs,
      std::filesystem::copy_options::recursive | std::filesystem::copy_options::copy_symlinks);
  return rootfs;
}

struct Outcome {
  int exitCode = -1;
  std::string out;  // stdout and stderr together
};

// `argv` with stdin from an empty file of the test's own (OUTPUT.stdin) and its output in `outputFile`,
// waited for. Not /dev/null: crun (the reference) chowns the std streams of a container with a user
// namespace to the container's root, and would give the host's /dev/null to uid 100000.
inline Outcome runCommand(const std::vector<std::string>& argv, const std::filesystem::path& outputFile) {
  const std::string stdinFile = outputFile.string() + ".stdin";
  pid_t pid = ::fork();
  if (pid == 0) {
    int emptyIn = ::open(stdinFile.c_str(), O_RDWR | O_CREAT, 0644);
    int out = ::open(outputFile.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(emptyIn, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    std::vector<char*> args;
    for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
    args.push_back(nullptr);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::ifstream in(outputFile);
  std::stringstream text;
  text << in.rdbuf();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), text.str()};
}

}  // namespace corral::runtime_tests
