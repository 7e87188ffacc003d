// What an instance may leave on the host, scoped to one test daemon (its cgroup parent, its directory, its
// VPC namespaces), so tests running in parallel never see each other's: for crash and race tests.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/harness.h"

namespace corral::testing {

namespace fs = std::filesystem;

// Every mounted hierarchy under /sys/fs/cgroup (v1 controllers and the unified v2 mount), once each.
inline std::vector<fs::path> cgroupHierarchies() {
  std::set<fs::path> seen;
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/sys/fs/cgroup", ec)) {
    fs::path real = fs::canonical(entry.path(), ec);
    if (!ec && fs::is_directory(real, ec) && seen.insert(real).second) found.push_back(real);
  }
  if (fs::exists("/sys/fs/cgroup/cgroup.procs")) found.push_back("/sys/fs/cgroup");  // v2 only
  return found;
}

// What is left under the test's cgroup parent: "DIR" for each group directory, "pid N in DIR" for each
// process; empty when nothing is.
inline std::vector<std::string> cgroupLeftovers(const TestDaemon& daemon) {
  std::vector<std::string> left;
  for (const fs::path& hierarchy : cgroupHierarchies()) {
    fs::path parent = hierarchy / daemon.cgroupParent();
    std::error_code ec;
    if (!fs::is_directory(parent, ec)) continue;
    for (const auto& entry : fs::recursive_directory_iterator(parent, ec)) {
      if (entry.is_directory()) left.push_back(entry.path().string());
    }
    for (const auto& entry : fs::recursive_directory_iterator(parent, ec)) {
      if (entry.path().filename() != "cgroup.procs") continue;
      std::istringstream pids(readFile(entry.path().string()));
      for (std::string pid; pids >> pid;)
        left.push_back("pid " + pid + " in " + entry.path().parent_path().string());
    }
  }
  return left;
}

// Mounts under the test daemon's directory (its containers' overlays).
inline std::vector<std::string> mountLeftovers(const TestDaemon& daemon) {
  std::vector<std::string> left;
  std::istringstream lines(readFile("/proc/self/mountinfo"));
  for (std::string line; std::getline(lines, line);)
    if (line.find(daemon.dir()) != std::string::npos) left.push_back(line);
  return left;
}

inline std::vector<std::string> linksIn(const std::string& netns) {
  std::string out = fs::temp_directory_path() / fmt::format("corral-links-{}", ::getpid());
  pid_t pid = corral::testing::spawnProcess({"/usr/sbin/ip", "-n", netns, "-o", "link", "show"}, out,
                                            "/dev/null", corral::testing::OutputMode::Truncate);
  if (pid > 0) corral::testing::waitWithDeadline(pid, std::chrono::seconds(10));
  std::vector<std::string> links;
  std::istringstream lines(readFile(out));
  for (std::string line; std::getline(lines, line);) links.push_back(line);
  fs::remove(out);
  return links;
}

inline std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += item + "\n";
  return text;
}

}  // namespace corral::testing
