// The container-start benchmark's measuring half (bench/container-start is the driver): times `/bin/true`
// through corral's runtime (in process), crun and runc (fork + exec of `RUNTIME run`), alternating them each
// round, then measures corral's memory overhead per idle container. Also writes the OCI config.json the
// peers run, derived from the same ContainerConfig and mount plan corral uses, so all three do the same work.
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "container/caps.h"
#include "container/cgroup_mode.h"
#include "container/mounts.h"
#include "container/runtime.h"
#include "container/seccomp.h"

namespace corral::bench {
namespace {

namespace fs = std::filesystem;
using container::ContainerConfig;
using Clock = std::chrono::steady_clock;

constexpr const char* kCgroupParent = "corral-bench";
constexpr const char* kHostname = "bench";

volatile std::sig_atomic_t stopRequested = 0;
void requestStop(int) {
  stopRequested = 1;
}

[[noreturn]] void usageError(const std::string& message) {
  std::fprintf(stderr,
               "container_start: %s\n"
               "usage: container_start oci-config --rootfs DIR --cgroups-path PATH --out FILE\n"
               "       container_start run --rootfs DIR --work DIR [--runs N] [--idle N]\n"
               "                           [--crun-bundle DIR] [--runc-bundle DIR] [--crun-hide-unified]\n",
               message.c_str());
  std::exit(2);
}

// The configuration corral runs and the OCI config mirrors: Docker's default capabilities and seccomp
// profile, the six namespaces (pid, mount, uts, ipc, net, cgroup) and no user namespace.
ContainerConfig benchConfig(const fs::path& rootfs, const fs::path& bundle, const std::string& name,
                            std::vector<std::string> argv) {
  ContainerConfig config;
  config.name = name;
  config.lowerDirs = {rootfs};
  config.bundleDir = bundle;
  config.argv = std::move(argv);
  config.hostname = kHostname;
  config.capabilities = container::dockerDefaultCapabilities();
  config.seccomp = container::dockerDefaultProfile(config.capabilities);
  config.cgroupOptions.parent = kCgroupParent;
  return config;
}

// ---- OCI config ------------------------------------------------------------------------------------------

std::vector<std::string> mountOptions(const container::MountEntry& entry) {
  std::vector<std::string> options;
  const std::pair<unsigned long, const char*> kFlags[] = {
      {MS_NOSUID, "nosuid"},           {MS_NODEV, "nodev"},      {MS_NOEXEC, "noexec"}, {MS_RDONLY, "ro"},
      {MS_STRICTATIME, "strictatime"}, {MS_RELATIME, "relatime"}};
  for (const auto& [flag, name] : kFlags)
    if (entry.flags & flag) options.emplace_back(name);
  std::stringstream data(entry.data);
  for (std::string option; std::getline(data, option, ',');)
    if (!option.empty()) options.push_back(option);
  return options;
}

std::string ociSeccompAction(container::SeccompAction action) {
  switch (action) {
    case container::SeccompAction::Allow:
      return "SCMP_ACT_ALLOW";
    case container::SeccompAction::Errno:
      return "SCMP_ACT_ERRNO";
    case container::SeccompAction::Kill:
      return "SCMP_ACT_KILL";
    case container::SeccompAction::Trap:
      return "SCMP_ACT_TRAP";
    case container::SeccompAction::Log:
      return "SCMP_ACT_LOG";
  }
  return "SCMP_ACT_KILL";
}

std::string ociSeccompCompare(container::SeccompCompare op) {
  switch (op) {
    case container::SeccompCompare::NotEqual:
      return "SCMP_CMP_NE";
    case container::SeccompCompare::Less:
      return "SCMP_CMP_LT";
    case container::SeccompCompare::LessOrEqual:
      return "SCMP_CMP_LE";
    case container::SeccompCompare::Equal:
      return "SCMP_CMP_EQ";
    case container::SeccompCompare::GreaterOrEqual:
      return "SCMP_CMP_GE";
    case container::SeccompCompare::Greater:
      return "SCMP_CMP_GT";
    case container::SeccompCompare::MaskedEqual:
      return "SCMP_CMP_MASKED_EQ";
  }
  return "SCMP_CMP_EQ";
}

Result<nlohmann::json> ociConfig(const fs::path& rootfs, const std::string& cgroupsPath) {
  const auto config = benchConfig(rootfs, "/nonexistent-bundle", "oci", {"/bin/true"});
  auto mode = container::detectCgroupMode();
  if (!mode) return fail(mode.error());
  // The plan's mounts without its first two (make "/" private, bind the rootfs onto itself: OCI runtimes do
  // those themselves) and without the device-node binds (OCI runtimes create the same default devices).
  container::MountPlanInput planInput;
  planInput.lowerDirs = {rootfs};
  planInput.bundleDir = "/nonexistent-bundle";
  planInput.cgroup2 = *mode == container::CgroupMode::Unified;
  auto plan = container::buildMountPlan(planInput);
  if (!plan) return fail(plan.error());
  nlohmann::json mounts = nlohmann::json::array();
  const bool cgroupV1 = *mode != container::CgroupMode::Unified;
  for (const auto& entry : plan->mounts) {
    if (entry.fstype.empty() || entry.target == "/") continue;
    // On v1 the OCI way to ask for what corral does (a tmpfs with every hierarchy, read-only) is one
    // "cgroup" mount, which crun and runc expand themselves.
    if (cgroupV1 && entry.target.starts_with("/sys/fs/cgroup")) {
      if (entry.target == "/sys/fs/cgroup")
        mounts.push_back({{"destination", entry.target},
                          {"type", "cgroup"},
                          {"source", "cgroup"},
                          {"options", {"nosuid", "noexec", "nodev", "relatime", "ro"}}});
      continue;
    }
    mounts.push_back({{"destination", entry.target},
                      {"type", entry.fstype},
                      {"source", entry.source},
                      {"options", mountOptions(entry)}});
  }
  nlohmann::json maskedPaths = nlohmann::json::array(), readonlyPaths = nlohmann::json::array();
  for (const auto& path : plan->maskedPaths) maskedPaths.push_back(path.path);
  for (const auto& path : plan->readOnlyPaths)
    if (!cgroupV1 || path.path != "/sys/fs/cgroup") readonlyPaths.push_back(path.path);

  nlohmann::json syscalls = nlohmann::json::array();
  for (const auto& rule : config.seccomp.rules) {
    nlohmann::json entry{{"names", rule.syscalls}, {"action", ociSeccompAction(rule.action)}};
    if (rule.action == container::SeccompAction::Errno) entry["errnoRet"] = rule.errnoValue;
    for (const auto& arg : rule.args) {
      entry["args"].push_back({{"index", arg.index},
                               {"value", arg.value},
                               {"valueTwo", arg.valueTwo},
                               {"op", ociSeccompCompare(arg.op)}});
    }
    syscalls.push_back(std::move(entry));
  }
  nlohmann::json seccomp{{"defaultAction", ociSeccompAction(config.seccomp.defaultAction)},
                         {"syscalls", syscalls}};
  if (config.seccomp.defaultAction == container::SeccompAction::Errno)
    seccomp["defaultErrnoRet"] = config.seccomp.defaultErrno;

  nlohmann::json namespaces = nlohmann::json::array();
  for (const char* type : {"pid", "mount", "uts", "ipc", "network", "cgroup"})
    namespaces.push_back({{"type", type}});

  return nlohmann::json{{"ociVersion", "1.0.2"},
                        {"process",
                         {{"terminal", false},
                          {"user", {{"uid", 0}, {"gid", 0}}},
                          {"args", config.argv},
                          {"env", {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
                          {"cwd", config.workingDir},
                          {"capabilities",
                           {{"bounding", config.capabilities},
                            {"effective", config.capabilities},
                            {"permitted", config.capabilities}}},
                          {"noNewPrivileges", true}}},
                        {"root", {{"path", rootfs.string()}, {"readonly", true}}},
                        {"hostname", config.hostname},
                        {"mounts", mounts},
                        {"linux",
                         {{"namespaces", namespaces},
                          {"cgroupsPath", cgroupsPath},
                          {"maskedPaths", maskedPaths},
                          {"readonlyPaths", readonlyPaths},
                          {"seccomp", seccomp}}}};
}

// ---- Measuring -------------------------------------------------------------------------------------------

double millisSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Series {
  std::vector<double> values;
  double median() const {
    if (values.empty()) return 0;
    auto sorted = values;
    std::sort(sorted.begin(), sorted.end());
    const size_t n = sorted.size();
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
  }
  double min() const { return values.empty() ? 0 : *std::min_element(values.begin(), values.end()); }
  double max() const { return values.empty() ? 0 : *std::max_element(values.begin(), values.end()); }
};

// Waits for a child we forked or cloned; a Ctrl-C only stops the rounds, this child is still reaped.
int waitForExit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, __WALL) < 0) {
    if (errno != EINTR) return -1;
  }
  return status;
}

std::string describeStatus(int status) {
  if (status < 0) return "waitpid failed";
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("killed by ") + strsignal(WTERMSIG(status));
  return "status " + std::to_string(status);
}

// One `RUNTIME --root STATE run --bundle BUNDLE ID`, timed from fork to reaped exit.
struct PeerRuntime {
  std::string name;  // "crun" | "runc"
  fs::path bundle, stateRoot, errorLog;
  bool hideUnifiedCgroup = false;  // crun on a hybrid host: see runPeerChild

  std::string id() const { return "corral-bench-" + name; }
};

// In the forked child. crun refuses hybrid hosts whose /sys/fs/cgroup/unified has no controllers, so it runs
// in a private mount namespace where that mount is gone: the same as `unshare -m sh -c 'umount
// /sys/fs/cgroup/unified; crun run ...'`, done with two system calls instead of three extra programs.
[[noreturn]] void runPeerChild(const PeerRuntime& peer, const std::vector<const char*>& argv) {
  if (peer.hideUnifiedCgroup) {
    if (::unshare(CLONE_NEWNS) != 0 || ::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 ||
        ::umount2("/sys/fs/cgroup/unified", MNT_DETACH) != 0) {
      std::perror("container_start: hiding /sys/fs/cgroup/unified");
      ::_exit(126);
    }
  }
  const int devNull = ::open("/dev/null", O_RDWR);
  const int errorLog = ::open(peer.errorLog.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (devNull < 0 || errorLog < 0 || ::dup2(devNull, 0) < 0 || ::dup2(devNull, 1) < 0 ||
      ::dup2(errorLog, 2) < 0)
    ::_exit(126);
  ::execvp(argv[0], const_cast<char* const*>(argv.data()));
  ::_exit(127);
}

Result<double> timePeerRun(const PeerRuntime& peer) {
  const std::string root = peer.stateRoot.string(), bundle = peer.bundle.string(), id = peer.id();
  const std::vector<const char*> argv{peer.name.c_str(), "--root",       root.c_str(), "run",
                                      "--bundle",        bundle.c_str(), id.c_str(),   nullptr};
  const auto start = Clock::now();
  const pid_t pid = ::fork();
  if (pid < 0) return fail(systemError(errno, "fork()"));
  if (pid == 0) runPeerChild(peer, argv);
  const int status = waitForExit(pid);
  const double elapsed = millisSince(start);
  if (status != 0) {
    std::ifstream log(peer.errorLog);
    std::string text;
    for (std::string line; std::getline(log, line);) text += line + "\n";
    return fail(internalError("{} run: {}: {}", peer.name, describeStatus(status), text));
  }
  return elapsed;
}

struct CorralSample {
  double total = 0;        // start → exit → cleanup (what `crun run` also does)
  double startToExit = 0;  // without the cleanup
  double cleanup = 0;
  container::StartTimings steps;
};

Result<CorralSample> timeCorralRun(const fs::path& rootfs, const fs::path& work, int round) {
  const auto name = "bench-" + std::to_string(round);
  const auto config = benchConfig(rootfs, work / "corral" / name, name, {"/bin/true"});
  CorralSample sample;
  const auto start = Clock::now();
  {
    std::optional<container::RunningContainer> running;
    if (auto started = container::startContainer(config, container::Stdio{}); started) {
      running.emplace(std::move(*started));
    } else {
      return fail(started.error());
    }
    const int status = waitForExit(running->pid());
    sample.startToExit = millisSince(start);
    sample.steps = running->timings();
    if (status != 0) return fail(internalError("corral: /bin/true ended with {}", describeStatus(status)));
    const auto cleanupStart = Clock::now();
    running.reset();  // kills what is left, removes the cgroup, unmounts and deletes the bundle
    sample.cleanup = millisSince(cleanupStart);
  }
  sample.total = millisSince(start);
  return sample;
}

void printSeries(const char* label, const Series& series) {
  std::printf("  %-34s median %8.2f ms   min %8.2f ms   max %8.2f ms   (n=%zu)\n", label, series.median(),
              series.min(), series.max(), series.values.size());
}

std::optional<uint64_t> procStatusKiB(const char* path, const char* field) {
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (line.starts_with(field) && line.size() > std::strlen(field) && line[std::strlen(field)] == ':')
      return std::strtoull(line.c_str() + std::strlen(field) + 1, nullptr, 10);
  }
  return std::nullopt;
}

// Starts `count` idle containers, reports what each costs, and removes them again.
int measureIdleMemory(const fs::path& rootfs, const fs::path& work, int count) {
  const auto rssBefore = procStatusKiB("/proc/self/status", "VmRSS").value_or(0);
  const auto availableBefore = procStatusKiB("/proc/meminfo", "MemAvailable").value_or(0);
  std::vector<container::RunningContainer> idle;
  idle.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count && !stopRequested; ++i) {
    const auto name = "bench-idle-" + std::to_string(i);
    auto running = container::startContainer(
        benchConfig(rootfs, work / "corral" / name, name, {"sleep", "1000"}), container::Stdio{});
    if (!running) {
      std::fprintf(stderr, "container_start: idle container %d: %s\n", i, running.error().message().c_str());
      return 1;
    }
    idle.push_back(std::move(*running));
  }
  if (stopRequested) return 130;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let the sleeps fault in their pages
  const auto rssAfter = procStatusKiB("/proc/self/status", "VmRSS").value_or(0);
  const auto availableAfter = procStatusKiB("/proc/meminfo", "MemAvailable").value_or(0);
  uint64_t cgroupBytes = 0;
  for (auto& running : idle) {
    auto stats = running.cgroup().stats();
    if (!stats) {
      std::fprintf(stderr, "container_start: %s\n", stats.error().message().c_str());
      return 1;
    }
    cgroupBytes += stats->memoryCurrentBytes;
  }
  const double n = static_cast<double>(idle.size());
  const double rssGrowth = static_cast<double>(rssAfter) - static_cast<double>(rssBefore);
  std::printf("\nMemory overhead per idle container (%zu x `sleep 1000` through corral's runtime)\n",
              idle.size());
  std::printf("  bench process RSS growth            %8.1f KiB/container   (%.0f KiB total)\n", rssGrowth / n,
              rssGrowth);
  std::printf("  containers' cgroup memory usage     %8.1f KiB/container   (%.0f KiB total)\n",
              static_cast<double>(cgroupBytes) / 1024 / n, static_cast<double>(cgroupBytes) / 1024);
  std::printf("  sum of the two                      %8.1f KiB/container\n",
              (rssGrowth + static_cast<double>(cgroupBytes) / 1024) / n);
  std::printf("  host MemAvailable drop (noisy; incl. kernel objects, page cache) %8.1f KiB/container\n",
              (static_cast<double>(availableBefore) - static_cast<double>(availableAfter)) / n);
  const auto cleanupStart = Clock::now();
  idle.clear();
  std::printf("  stopping and removing all %d took %.1f ms\n", count, millisSince(cleanupStart));
  return 0;
}

struct RunOptions {
  fs::path rootfs, work;
  int runs = 30, idle = 50;
  std::vector<PeerRuntime> peers;
};

int runBenchmark(RunOptions options) {
  auto mode = container::detectCgroupMode();
  std::printf("Container start: /bin/true in the busybox rootfs %s\n", options.rootfs.c_str());
  std::printf(
      "  namespaces pid, mount, uts, ipc, net, cgroup (no user ns); Docker's default caps and seccomp\n");
  std::printf("  cgroups: %s, containers under \"%s\"\n",
              mode ? std::string(container::cgroupModeName(*mode)).c_str() : mode.error().message().c_str(),
              kCgroupParent);
  std::printf(
      "  corral: container::startContainer in this process (overlay rootfs), timed start → exit → cleanup\n");
  for (const auto& peer : options.peers) {
    std::printf(
        "  %s: `%s run` forked from this process (read-only root, same image), timed fork → exit%s\n",
        peer.name.c_str(), peer.name.c_str(),
        peer.hideUnifiedCgroup ? "; in a private mount ns without /sys/fs/cgroup/unified (hybrid host)" : "");
  }

  // One untimed round: warms the page cache and shows that each runtime works at all.
  if (auto warm = timeCorralRun(options.rootfs, options.work, -1); !warm) {
    std::fprintf(stderr, "container_start: corral: %s\n", warm.error().message().c_str());
    return 1;
  }
  for (auto it = options.peers.begin(); it != options.peers.end();) {
    if (auto warm = timePeerRun(*it); !warm) {
      std::printf("  %s left out: %s\n", it->name.c_str(), warm.error().message().c_str());
      it = options.peers.erase(it);
    } else {
      ++it;
    }
  }

  Series corralTotal, corralStartToExit, corralCleanup, stepClone, stepCgroup, stepRootfs, stepExec;
  std::map<std::string, Series> peerTimes;
  int rounds = 0;
  for (int round = 0; round < options.runs && !stopRequested; ++round, ++rounds) {
    auto sample = timeCorralRun(options.rootfs, options.work, round);
    if (!sample) {
      std::fprintf(stderr, "container_start: corral: %s\n", sample.error().message().c_str());
      return 1;
    }
    corralTotal.values.push_back(sample->total);
    corralStartToExit.values.push_back(sample->startToExit);
    corralCleanup.values.push_back(sample->cleanup);
    auto ms = [](std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000; };
    stepClone.values.push_back(ms(sample->steps.clone));
    stepCgroup.values.push_back(ms(sample->steps.cgroup));
    stepRootfs.values.push_back(ms(sample->steps.rootfs));
    stepExec.values.push_back(ms(sample->steps.exec));
    for (const auto& peer : options.peers) {
      if (stopRequested) break;
      auto elapsed = timePeerRun(peer);
      if (!elapsed) {
        std::fprintf(stderr, "container_start: %s\n", elapsed.error().message().c_str());
        return 1;
      }
      peerTimes[peer.name].values.push_back(*elapsed);
    }
  }
  if (stopRequested) std::printf("\nInterrupted after %d rounds.\n", rounds);

  std::printf("\nResults over %d rounds (corral, then each peer, alternating)\n", rounds);
  printSeries("corral (start, wait, clean up)", corralTotal);
  for (const auto& peer : options.peers) printSeries((peer.name + " run").c_str(), peerTimes[peer.name]);
  std::printf(
      "  corral breakdown (medians): clone %.2f ms, cgroup %.2f ms, rootfs %.2f ms, exec %.2f ms;\n"
      "    start→exit %.2f ms, cleanup (kill, cgroup rmdir, unmount, rm bundle) %.2f ms\n",
      stepClone.median(), stepCgroup.median(), stepRootfs.median(), stepExec.median(),
      corralStartToExit.median(), corralCleanup.median());
  for (const auto& peer : options.peers) {
    const double ratio = corralTotal.median() / peerTimes[peer.name].median();
    if (peer.name == "crun") {
      std::printf("  corral/crun = %.2fx (median)   target <= 0.80x: %s\n", ratio,
                  ratio <= 0.8 ? "met" : "NOT met");
    } else {
      std::printf("  corral/%s = %.2fx (median)\n", peer.name.c_str(), ratio);
    }
  }
  if (stopRequested) return 130;
  return measureIdleMemory(options.rootfs, options.work, options.idle);
}

int benchMain(int argc, char** argv) {
  if (argc < 2) usageError("a command is required");
  const std::string command = argv[1];
  std::map<std::string, std::string> values;
  bool hideUnified = false;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--crun-hide-unified") {
      hideUnified = true;
      continue;
    }
    if (!arg.starts_with("--") || i + 1 >= argc) usageError("option " + arg + " needs a value");
    values[arg.substr(2)] = argv[++i];
  }
  auto take = [&](const std::string& key, bool required) -> std::string {
    auto it = values.find(key);
    if (it == values.end()) {
      if (required) usageError("--" + key + " is required");
      return {};
    }
    std::string value = it->second;
    values.erase(it);
    return value;
  };
  auto number = [&](const std::string& key, int fallback) {
    const std::string text = take(key, false);
    if (text.empty()) return fallback;
    char* end = nullptr;
    const long parsed = std::strtol(text.c_str(), &end, 10);
    if (*end != '\0' || parsed < 1 || parsed > 100000)
      usageError("--" + key + ": not a positive count: " + text);
    return static_cast<int>(parsed);
  };

  if (command == "oci-config") {
    const fs::path rootfs = take("rootfs", true), out = take("out", true);
    const std::string cgroupsPath = take("cgroups-path", true);
    if (!values.empty()) usageError("unknown option --" + values.begin()->first);
    auto config = ociConfig(rootfs, cgroupsPath);
    if (!config) {
      std::fprintf(stderr, "container_start: oci-config: %s\n", config.error().message().c_str());
      return 1;
    }
    std::ofstream file(out);
    file << config->dump(2) << "\n";
    if (!file.flush()) {
      std::fprintf(stderr, "container_start: writing \"%s\" failed\n", out.c_str());
      return 1;
    }
    return 0;
  }
  if (command != "run") usageError("unknown command " + command);

  RunOptions options;
  options.rootfs = take("rootfs", true);
  options.work = take("work", true);
  options.runs = number("runs", 30);
  options.idle = number("idle", 50);
  for (const std::string name : {"crun", "runc"}) {
    const std::string bundle = take(name + "-bundle", false);
    if (bundle.empty()) continue;
    options.peers.push_back(PeerRuntime{name, bundle, options.work / (name + "-state"),
                                        options.work / (name + ".stderr"), name == "crun" && hideUnified});
  }
  if (!values.empty()) usageError("unknown option --" + values.begin()->first);

  struct sigaction action {};
  action.sa_handler = requestStop;  // no SA_RESTART: a blocked waitpid returns EINTR and the loop ends
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  return runBenchmark(std::move(options));
}

}  // namespace
}  // namespace corral::bench

int main(int argc, char** argv) {
  return corral::bench::benchMain(argc, argv);
}
