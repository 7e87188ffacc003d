// This host's etcd member: the pid file, the gate, the supervising thread (etcd_process.h).
#include "daemon/etcd_process.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/log.h"
#include "daemon/driver.h"
#include "daemon/gated_spawn.h"

namespace corral::daemon {
namespace {

// One that lived this long had a fair run: its next death restarts it at once.
constexpr auto kHealthyRun = std::chrono::seconds(10);

std::chrono::milliseconds restartDelay(int failures) {
  if (failures <= 1) return std::chrono::milliseconds(200);
  return std::min(std::chrono::milliseconds(200 << std::min(failures - 1, 5)),
                  std::chrono::milliseconds(5000));
}

// /proc/PID/comm without its newline; empty when unreadable.
std::string commOf(pid_t pid) {
  std::ifstream comm(fmt::format("/proc/{}/comm", pid));
  std::string name;
  std::getline(comm, name);
  return name;
}

// Write-temp-then-rename, synced: a crash leaves the old file or the new one.
Status writeFileAtomically(const std::string& path, const std::string& text) {
  const std::string temp = path + ".tmp";
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_CREAT)", temp)));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    return fail(systemError(errno, fmt::format("write(\"{}\")", temp)));
  if (::fsync(fd.get()) != 0) return fail(systemError(errno, fmt::format("fsync(\"{}\")", temp)));
  if (::rename(temp.c_str(), path.c_str()) != 0)
    return fail(systemError(errno, fmt::format("rename(\"{}\", \"{}\")", temp, path)));
  return {};
}

}  // namespace

EtcdProcess::EtcdProcess(EtcdProcessOptions options) : options_(std::move(options)) {}

Result<std::unique_ptr<EtcdProcess>> EtcdProcess::open(EtcdProcessOptions options) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir -p \"{}\"", options.dir)));
  ::chmod(options.dir.c_str(), 0700);
  std::unique_ptr<EtcdProcess> process(new EtcdProcess(std::move(options)));
  process->supervisor_ = std::thread(&EtcdProcess::supervise, process.get());
  return process;
}

EtcdProcess::~EtcdProcess() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (supervisor_.joinable()) supervisor_.join();
}

std::optional<std::string> EtcdProcess::reapLeftover() {
  std::ifstream in(pidFile());
  pid_t pid = 0;
  int64_t startTime = 0;
  std::optional<std::string> done;
  if ((in >> pid >> startTime) && pid > 0 && processStartTime(pid) == startTime && commOf(pid) == "etcd") {
    if (::kill(pid, SIGKILL) == 0) {
      done = fmt::format("killed etcd {} left by an earlier corrald", pid);
      log::info("cluster: {}", *done);
    }
  }
  ::unlink(pidFile().c_str());
  return done;
}

Status EtcdProcess::start(const EtcdLaunch& launch) {
  std::unique_lock lock(mutex_);
  if (stopping_) return fail(conflict("etcd: corrald is stopping"));
  if (pid_ > 0 && wanted_ == launch) return {};
  if (pid_ > 0) killLocked();
  wanted_ = launch;
  failures_ = 0;
  notBefore_ = Clock::now();
  startRequested_ = true;
  startResult_.reset();
  changed_.notify_all();
  changed_.wait(lock, [this] { return startResult_.has_value() || stopping_; });
  if (!startResult_) return fail(conflict("etcd: corrald is stopping"));
  Status result = std::move(*startResult_);
  startResult_.reset();
  return result;
}

void EtcdProcess::stop() {
  std::lock_guard lock(mutex_);
  wanted_.reset();
  startRequested_ = false;
  killLocked();
  changed_.notify_all();
}

Status EtcdProcess::removeData() {
  std::error_code ec;
  std::filesystem::remove_all(dataDir(), ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("rm -r \"{}\"", dataDir())));
  return {};
}

bool EtcdProcess::hasData() const {
  std::error_code ec;
  return std::filesystem::exists(dataDir() + "/member", ec);
}

std::optional<pid_t> EtcdProcess::pid() const {
  std::lock_guard lock(mutex_);
  if (pid_ <= 0) return std::nullopt;
  return pid_;
}

int EtcdProcess::restarts() const {
  std::lock_guard lock(mutex_);
  return restarts_;
}

void EtcdProcess::killLocked() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  ::unlink(pidFile().c_str());
  pid_ = -1;
}

// The one thread that forks etcd: PR_SET_PDEATHSIG follows the thread that forked, and this one lives as
// long as the object (and so as corrald).
void EtcdProcess::supervise() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (startRequested_) {
      startRequested_ = false;
      startResult_ = spawnLocked();
      changed_.notify_all();
      continue;
    }
    if (pid_ > 0) {
      int status = 0;
      pid_t reaped = ::waitpid(pid_, &status, WNOHANG);
      if (reaped == pid_) {
        const bool healthy = Clock::now() - startedAt_ >= kHealthyRun;
        failures_ = healthy ? 1 : failures_ + 1;
        log::warn("cluster: etcd {} ended ({}); starting it again on the same data", pid_,
                  WIFSIGNALED(status) ? fmt::format("signal {}", WTERMSIG(status))
                                      : fmt::format("exit {}", WEXITSTATUS(status)));
        ::unlink(pidFile().c_str());
        pid_ = -1;
        ++restarts_;
        notBefore_ = Clock::now() + restartDelay(failures_);
      }
    } else if (wanted_ && Clock::now() >= notBefore_) {
      if (Status spawned = spawnLocked(); !spawned) {
        log::warn("cluster: starting etcd again: {}", spawned.error().message());
        ++failures_;
        notBefore_ = Clock::now() + restartDelay(failures_);
      }
    }
    changed_.wait_for(lock, std::chrono::milliseconds(100));
  }
  killLocked();
}

Status EtcdProcess::spawnLocked() {
  if (!wanted_) return fail(internalError("etcd: nothing to start"));
  const EtcdLaunch& launch = *wanted_;
  std::error_code ec;
  std::filesystem::create_directories(dataDir(), ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir -p \"{}\"", dataDir())));
  ::chmod(dataDir().c_str(), 0700);
  UniqueFd log(::open(logFile().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
  if (!log) return fail(systemError(errno, fmt::format("open(\"{}\")", logFile())));
  UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!devNull) return fail(systemError(errno, "open(\"/dev/null\")"));
  std::vector<std::string> args{options_.etcd,
                                "--name",
                                launch.name,
                                "--data-dir",
                                dataDir(),
                                "--listen-client-urls",
                                launch.clientUrl,
                                "--advertise-client-urls",
                                launch.clientUrl,
                                "--listen-peer-urls",
                                launch.peerUrl,
                                "--initial-advertise-peer-urls",
                                launch.peerUrl,
                                "--initial-cluster",
                                launch.initialCluster,
                                "--initial-cluster-state",
                                launch.newCluster ? "new" : "existing",
                                "--heartbeat-interval",
                                "100",
                                "--election-timeout",
                                "1000"};
  if (launch.newCluster && !launch.clusterToken.empty()) {
    args.push_back("--initial-cluster-token");
    args.push_back(launch.clusterToken);
  }
  auto started = spawnGated({.args = std::move(args),
                             .stdinFd = devNull.get(),
                             .outputFd = log.get(),
                             .netnsFd = -1,
                             .ownProcessGroup = true,
                             .setnsFailed = {},
                             .execFailed = "corrald: execvp(etcd) failed (is etcd-server installed?)\n"},
                            [&](pid_t child) -> Status {
                              const std::string pidText =
                                  fmt::format("{} {}\n", child, processStartTime(child).value_or(0));
                              return writeFileAtomically(pidFile(), pidText);
                            });
  if (!started) {
    ::unlink(pidFile().c_str());
    return fail(started.error());
  }
  const pid_t pid = *started;
  pid_ = pid;
  startedAt_ = Clock::now();
  log::info("cluster: etcd {} started as member \"{}\" (clients {}, peers {}, {} cluster)", pid, launch.name,
            launch.clientUrl, launch.peerUrl, launch.newCluster ? "new" : "existing");
  return {};
}

}  // namespace corral::daemon
