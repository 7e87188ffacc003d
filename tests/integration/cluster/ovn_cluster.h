// Test plumbing for OVSDB and OVN on one machine: a temp dir that goes away, processes that are killed and
// reaped when the test ends (also when it fails), a private ovsdb-server on a Unix socket in that dir,
// never the system's, and OvnCluster, the simulated multi-host OVN of ovn_cluster.sh as an object.
// Header-only: integration_cluster_tests.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "tests/integration/process.h"

namespace corral::testing {

// A directory under /tmp, removed with everything in it when the test ends.
class TempDir {
 public:
  explicit TempDir(const std::string& stem) {
    std::string pattern = "/tmp/" + stem + "-XXXXXX";
    if (::mkdtemp(pattern.data()) != nullptr) path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

struct ToolRun {
  int exitCode = -1;   // -1: did not start, or killed
  std::string output;  // stdout and stderr together
};

// Runs a tool to its end (given `deadline`) and returns what it printed.
inline ToolRun runTool(const std::vector<std::string>& args, const std::vector<std::string>& extraEnv = {},
                       std::chrono::milliseconds deadline = std::chrono::seconds(30)) {
  char pattern[] = "/tmp/corral-tool-XXXXXX";
  int fd = ::mkstemp(pattern);
  if (fd < 0) return {};
  ::close(fd);
  ToolRun run;
  pid_t pid = spawnProcess(args, pattern, {}, OutputMode::Truncate, nullptr, extraEnv);
  if (pid > 0) {
    auto status = waitWithDeadline(pid, deadline);
    if (status && WIFEXITED(*status)) run.exitCode = WEXITSTATUS(*status);
  }
  run.output = readFile(pattern);
  ::unlink(pattern);
  return run;
}

// Processes a test started: each is sent SIGTERM and reaped (SIGKILL after 5 s) when the set goes, last
// started first.
class ProcessSet {
 public:
  ProcessSet() = default;
  ProcessSet(const ProcessSet&) = delete;
  ProcessSet& operator=(const ProcessSet&) = delete;
  ~ProcessSet() { stopAll(); }
  void adopt(pid_t pid) { pids_.push_back(pid); }
  void stopAll() {
    for (auto it = pids_.rbegin(); it != pids_.rend(); ++it) {
      ::kill(*it, SIGTERM);
      waitWithDeadline(*it, std::chrono::seconds(5));
    }
    pids_.clear();
  }
  bool alive(pid_t pid) const { return ::kill(pid, 0) == 0; }

 private:
  std::vector<pid_t> pids_;
};

inline constexpr const char* kOvnNorthboundSchema = "/usr/share/ovn/ovn-nb.ovsschema";

// A private ovsdb-server with one database made from `schema`, listening on DIR/NAME.sock; its pid file,
// control socket and log in DIR too. OVS_RUNDIR/OVS_DBDIR/OVS_LOGDIR point at DIR so nothing defaults to
// the system's /run/openvswitch.
class OvsdbServer {
 public:
  // `extraArgs` go to ovsdb-server before the database (e.g. another --remote).
  OvsdbServer(const TempDir& dir, const std::string& name, const std::string& schema,
              const std::vector<std::string>& extraArgs = {})
      : dir_(dir.path()), name_(name) {
    const std::string db = dir / (name + ".db");
    ToolRun created = runTool({"ovsdb-tool", "create", db, schema});
    if (created.exitCode != 0) {
      error_ = "ovsdb-tool create " + db + " " + schema + ": " + created.output;
      return;
    }
    std::vector<std::string> args = {"ovsdb-server",
                                     "--remote=punix:" + socketPath(),
                                     "--no-chdir",
                                     "--pidfile=" + (dir / (name + ".pid")),
                                     "--unixctl=" + (dir / (name + ".ctl")),
                                     "--log-file=" + logPath()};
    args.insert(args.end(), extraArgs.begin(), extraArgs.end());
    args.push_back(db);
    pid_t pid = spawnProcess(args, dir / (name + ".out"), {}, OutputMode::Append, nullptr, environment());
    if (pid < 0) {
      error_ = "could not start ovsdb-server";
      return;
    }
    processes_.adopt(pid);
    if (!pollUntil([&] { return std::filesystem::exists(socketPath()); }, std::chrono::seconds(10))) {
      error_ =
          "ovsdb-server made no socket within 10 s: " + readFile(logPath()) + readFile(dir / (name + ".out"));
    }
  }
  // Empty when the server is up.
  const std::string& error() const { return error_; }
  std::string socketPath() const { return dir_ + "/" + name_ + ".sock"; }
  std::string remote() const { return "unix:" + socketPath(); }
  std::string logPath() const { return dir_ + "/" + name_ + ".log"; }
  std::vector<std::string> environment() const {
    return {"OVS_RUNDIR=" + dir_, "OVS_DBDIR=" + dir_, "OVS_LOGDIR=" + dir_};
  }
  void stop() { processes_.stopAll(); }

 private:
  std::string dir_;
  std::string name_;
  std::string error_;
  ProcessSet processes_;
};

// The multi-host OVN of tests/integration/cluster/ovn_cluster.sh, up while the object lives: `up` in the
// constructor, `down` in stop() or, at the latest, in the destructor (so a failed assertion halfway still
// leaves nothing). Namespaces are PREFIXovn-{c,u,h1..hN,w1..wN}; with the harness's prefix corral-t<PID>-
// scripts/sweep-test-leftovers removes what a killed test process left.
class OvnCluster {
 public:
  OvnCluster(std::string script, std::string dir, std::string prefix, int hosts = 2)
      : script_(std::move(script)), dir_(std::move(dir)), prefix_(std::move(prefix)), hosts_(hosts) {
    ToolRun up = runTool({"bash", script_, "up", dir_, prefix_, std::to_string(hosts_)}, {},
                         std::chrono::seconds(120));
    if (up.exitCode != 0)
      error_ = "ovn_cluster.sh up: exit " + std::to_string(up.exitCode) + ": " + up.output;
    running_ = true;
  }
  ~OvnCluster() { stop(); }
  OvnCluster(const OvnCluster&) = delete;
  OvnCluster& operator=(const OvnCluster&) = delete;

  // Empty when everything came up.
  const std::string& error() const { return error_; }
  // Kills every process and deletes every namespace; what `down` printed and its exit code (1 when
  // something was left).
  ToolRun stop() {
    if (!running_) return {0, ""};
    running_ = false;
    return runTool({"bash", script_, "down", dir_}, {}, std::chrono::seconds(60));
  }

  // Host `host`'s processes die (SIGKILL), as when the machine goes away; its namespaces stay until stop().
  ToolRun killHost(int host) { return runTool({"bash", script_, "kill-host", dir_, std::to_string(host)}); }

  // Another workload on host `host` bound to logical port `ifaceId` (ovn_cluster.sh add-workload): its
  // namespace is workloadNetns(name); it goes with the cluster.
  ToolRun addWorkload(int host, const std::string& name, const std::string& ifaceId, const std::string& mac,
                      const std::string& addressWithPrefix, const std::string& gateway) {
    ToolRun run = runTool({"bash", script_, "add-workload", dir_, prefix_, std::to_string(host), name,
                           ifaceId, mac, addressWithPrefix, gateway});
    if (run.exitCode == 0) extraWorkloads_.push_back(name);
    return run;
  }
  std::string workloadNetns(const std::string& name) const { return prefix_ + "ovn-v-" + name; }

  // "The outside" on host `host` (ovn_cluster.sh add-uplink): physical network `network` of that host leads
  // to link up0 of namespace outsideNetns(), which has no address until the caller gives it one.
  ToolRun addUplink(int host, const std::string& network) {
    ToolRun run = runTool({"bash", script_, "add-uplink", dir_, prefix_, std::to_string(host), network});
    if (run.exitCode == 0) uplink_ = true;
    return run;
  }
  std::string outsideNetns() const { return prefix_ + "ovn-i"; }

  std::string northbound() const { return "unix:" + dir_ + "/nb.sock"; }
  std::string southbound() const { return "unix:" + dir_ + "/sb.sock"; }
  const std::string& dir() const { return dir_; }
  std::string hostNetns(int host) const { return prefix_ + "ovn-h" + std::to_string(host); }
  std::string workloadNetns(int host) const { return prefix_ + "ovn-w" + std::to_string(host); }
  std::vector<std::string> namespaces() const {
    std::vector<std::string> names = {prefix_ + "ovn-c", prefix_ + "ovn-u"};
    for (int host = 1; host <= hosts_; ++host) {
      names.push_back(hostNetns(host));
      names.push_back(workloadNetns(host));
    }
    for (const std::string& name : extraWorkloads_) names.push_back(workloadNetns(name));
    if (uplink_) names.push_back(outsideNetns());
    return names;
  }
  // Every OVS/OVN log of the cluster, for a failure message.
  std::string logs() const {
    std::string all;
    std::error_code ignored;
    for (const auto& entry : std::filesystem::recursive_directory_iterator(dir_, ignored)) {
      if (entry.path().extension() == ".log") {
        all += "==> " + entry.path().string() + "\n" + readFile(entry.path().string());
      }
    }
    return all;
  }

 private:
  std::string script_;
  std::string dir_;
  std::string prefix_;
  int hosts_;
  std::vector<std::string> extraWorkloads_;
  bool uplink_ = false;
  std::string error_;
  bool running_ = false;
};

// Pids of processes whose command line mentions `text` (a test's temp dir: what it started is there).
inline std::vector<pid_t> processesMentioning(const std::string& text) {
  std::vector<pid_t> pids;
  std::error_code ignored;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ignored)) {
    const std::string name = entry.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::string cmdline = readFile(entry.path().string() + "/cmdline");
    if (cmdline.find(text) != std::string::npos) pids.push_back(std::stoi(name));
  }
  return pids;
}

}  // namespace corral::testing
