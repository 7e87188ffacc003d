// What an instance may leave on the host, scoped to one test daemon (its cgroup parent, its directory, its
// VPC namespaces), so tests running in parallel never see each other's: for crash and race tests.
#pragma once

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <initializer_list>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "core/unique_fd.h"
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

// A small /proc file whole (read(2): istreambuf_iterator trips GCC 12's -Wnull-dereference at -O2).
inline std::string readProcFile(const fs::path& path) {
  std::string text;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return text;
  char buffer[4096];
  ssize_t n = 0;
  while ((n = ::read(fd.get(), buffer, sizeof buffer)) > 0) text.append(buffer, static_cast<size_t>(n));
  return text;
}

// A process's state letter and parent, from /proc/PID/stat (past the command name, which may hold spaces
// and parentheses); nullopt when it is gone.
struct ProcStat {
  char state = '?';
  pid_t parent = 0;
};
inline std::optional<ProcStat> procStat(pid_t pid) {
  const std::string stat = readProcFile(fmt::format("/proc/{}/stat", pid));
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(stat.substr(close + 1));
  ProcStat found;
  if (!(fields >> found.state >> found.parent)) return std::nullopt;
  return found;
}

// Running (not zombie) processes of `program` (the last part of their argv[0]) whose command line names
// `dir`: the dnsmasqs (--conf-file=DIR/...) and HAProxies (-f DIR/...) a test daemon runs.
inline std::vector<pid_t> processesNaming(std::string_view program, const std::string& dir) {
  std::vector<pid_t> found;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = readProcFile(entry.path() / "cmdline");
    const std::string argv0 = cmdline.substr(0, cmdline.find('\0'));
    if (fs::path(argv0).filename() != program || cmdline.find(dir) == std::string::npos) continue;
    const pid_t pid = std::stoi(name);
    if (auto stat = procStat(pid); stat && stat->state == 'Z') continue;
    found.push_back(pid);
  }
  return found;
}

// processesNaming() for each of `programs`, as "PROGRAM PID".
inline std::vector<std::string> processesNamingAny(std::initializer_list<std::string_view> programs,
                                                   const std::string& dir) {
  std::vector<std::string> found;
  for (std::string_view program : programs)
    for (pid_t pid : processesNaming(program, dir)) found.push_back(fmt::format("{} {}", program, pid));
  return found;
}

// The dnsmasqs and HAProxies still running from the test daemon's directory (its --resolver-dir and
// --lb-dir), as "dnsmasq N" and "haproxy N".
inline std::vector<std::string> vpcProcessLeftovers(const TestDaemon& daemon) {
  return processesNamingAny({"dnsmasq", "haproxy"}, daemon.dir() + "/");
}

inline std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (const std::string& item : items) text += item + "\n";
  return text;
}

}  // namespace corral::testing
