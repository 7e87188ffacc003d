// HAProxy as a process: start in a namespace, reload through the master CLI, read the stats (lb/haproxy.h).
#include "lb/haproxy.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <thread>

#include "core/unique_fd.h"
#include "lb/haproxy_config.h"

namespace corral::lb {
namespace {

using Clock = std::chrono::steady_clock;

// Runs argv to completion with stdout+stderr captured; the exit status and the output.
struct Captured {
  int status = -1;
  std::string output;
};

Result<Captured> runCaptured(const std::vector<std::string>& args) {
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2()"));
  UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) return fail(systemError(errno, "fork()"));
  if (pid == 0) {
    ::dup2(writeEnd.get(), STDOUT_FILENO);
    ::dup2(writeEnd.get(), STDERR_FILENO);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  writeEnd.reset();
  Captured result;
  char buffer[4096];
  for (;;) {
    ssize_t n = ::read(readEnd.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    result.output.append(buffer, static_cast<size_t>(n));
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  result.status = status;
  return result;
}

// A path longer than sun_path (108 bytes with its NUL, under a long --lb-dir) is reached through its
// directory: opened O_PATH, the socket is /proc/self/fd/N/NAME (as systemd's connect_unix_path does).
Result<UniqueFd> connectUnix(const std::string& path) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  UniqueFd directory;
  std::string reachable = path;
  if (path.size() >= sizeof address.sun_path) {
    const size_t slash = path.rfind('/');
    const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
    directory = UniqueFd(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!directory) return fail(systemError(errno, fmt::format("open(\"{}\", O_PATH)", parent)));
    reachable = fmt::format("/proc/self/fd/{}/{}", directory.get(), path.substr(slash + 1));
    if (reachable.size() >= sizeof address.sun_path)
      return fail(invalidField("path", "socket name \"{}\" is too long", path.substr(slash + 1)));
  }
  std::memcpy(address.sun_path, reachable.c_str(), reachable.size() + 1);
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fail(systemError(errno, "socket(AF_UNIX)"));
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
    return fail(systemError(errno, fmt::format("connect(\"{}\")", path)));
  return fd;
}

// The master's reload count from `show proc`: the third column of the "master" line.
Result<int64_t> masterReloads(const std::string& masterSocket) {
  // The master CLI keeps a connection open after a command unless told to quit.
  auto answer = haproxyCommand(masterSocket, "show proc;quit");
  if (!answer) return fail(std::move(answer.error()));
  std::istringstream lines(*answer);
  std::string line;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string pid, type;
    int64_t reloads = -1;
    if (fields >> pid >> type >> reloads && type == "master") return reloads;
  }
  return fail(internalError("\"show proc\" on \"{}\" names no master: {}", masterSocket, *answer));
}

std::vector<std::string> splitCsv(std::string_view line) {
  std::vector<std::string> fields;
  size_t start = 0;
  for (;;) {
    size_t comma = line.find(',', start);
    fields.emplace_back(
        line.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (comma == std::string_view::npos) return fields;
    start = comma + 1;
  }
}

}  // namespace

Status checkHaproxyConfig(const std::string& configPath, const std::string& binary) {
  auto run = runCaptured({binary, "-c", "-q", "-f", configPath});
  if (!run) return fail(std::move(run.error()).wrap(fmt::format("{} -c", binary)));
  if (WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0) return {};
  return fail(
      internalError("{} -c -f \"{}\": refused the configuration: {}", binary, configPath, run->output));
}

Result<pid_t> startHaproxy(const std::string& netnsPath, const HaproxyFiles& files,
                           std::chrono::milliseconds timeout, const std::string& binary,
                           const std::function<Status(pid_t)>& recordPid) {
  UniqueFd netns(::open(netnsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!netns) return fail(systemError(errno, fmt::format("open(\"{}\")", netnsPath)));
  // A stale socket from a killed predecessor would answer nothing; HAProxy binds afresh.
  ::unlink(files.adminSocket().c_str());
  ::unlink(files.masterSocket().c_str());
  // The sockets' paths are relative to the run directory, HAProxy's working directory (a reload's re-exec
  // keeps it): under a long --lb-dir an absolute one would not fit sun_path.
  const std::string runDir = files.runDir;
  const std::vector<std::string> args = {binary, "-W", "-S", "unix@master.sock", "-f", files.config()};
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const std::string log = files.runDir + "/haproxy.log";
  int statusPipe[2];
  if (::pipe2(statusPipe, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2()"));
  UniqueFd statusRead(statusPipe[0]), statusWrite(statusPipe[1]);
  int gatePipe[2];
  if (::pipe2(gatePipe, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2()"));
  UniqueFd gateRead(gatePipe[0]), gateWrite(gatePipe[1]);
  pid_t pid = ::fork();
  if (pid < 0) return fail(systemError(errno, "fork()"));
  if (pid == 0) {
    // No allocation from here on: each failing step sends {step, errno} and exits.
    auto die = [&](int step) {
      int record[2] = {step, errno};
      (void)!::write(statusWrite.get(), record, sizeof record);
      ::_exit(127);
    };
    ::setsid();
    // The gate: one byte once the parent has written the pid down; its end (nothing read) when the
    // parent refused or died, and then no HAProxy runs.
    ::close(gateWrite.get());  // the child's copy, or the gate would never end
    char go = 0;
    ssize_t got;
    do {
      got = ::read(gateRead.get(), &go, 1);
    } while (got < 0 && errno == EINTR);
    if (got != 1) ::_exit(126);
    if (::setns(netns.get(), CLONE_NEWNET) != 0) die(1);
    if (::chdir(runDir.c_str()) != 0) die(5);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (out < 0) die(2);
    ::dup2(out, STDOUT_FILENO);
    ::dup2(out, STDERR_FILENO);
    int null = ::open("/dev/null", O_RDONLY);
    if (null >= 0) ::dup2(null, STDIN_FILENO);
    // Nothing else of the parent goes along (corrald's API socket, its database): HAProxy outlives it, and
    // an inherited listening socket would make the next corrald believe one still listens.
    if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) != 0) die(4);
    ::execvp(argv[0], argv.data());
    die(3);
  }
  statusWrite.reset();
  gateRead.reset();
  if (recordPid) {
    if (Status recorded = recordPid(pid); !recorded) {
      gateWrite.reset();
      ::waitpid(pid, nullptr, 0);
      return fail(std::move(recorded.error()));
    }
  }
  const char go = 1;
  if (::write(gateWrite.get(), &go, 1) != 1) {
    const int error = errno;
    gateWrite.reset();
    ::waitpid(pid, nullptr, 0);
    return fail(systemError(error, "start haproxy: write(the child's gate)"));
  }
  gateWrite.reset();
  int record[2] = {0, 0};
  ssize_t n;
  do {
    n = ::read(statusRead.get(), record, sizeof record);
  } while (n < 0 && errno == EINTR);
  if (n == sizeof record) {
    ::waitpid(pid, nullptr, 0);
    if (record[0] == 4)
      return fail(systemError(record[1], "start haproxy: close_range(3, ~0, CLOSE_RANGE_CLOEXEC)"));
    const char* steps[] = {"", "setns(\"", "open(\"", "execvp(\"", "", "chdir(\""};
    const int step = record[0] >= 1 && record[0] <= 5 ? record[0] : 0;
    const std::string& what = step == 1 ? netnsPath : step == 2 ? log : step == 5 ? runDir : binary;
    return fail(systemError(record[1], fmt::format("start haproxy: {}{}\")", steps[step], what)));
  }
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    if (haproxyCommand(files.adminSocket(), "show info", std::chrono::seconds(1))) return pid;
    int status = 0;
    if (::waitpid(pid, &status, WNOHANG) == pid) {
      return fail(
          internalError("haproxy (pid {}) exited with status {} before its admin socket answered; see \"{}\"",
                        pid, status, log));
    }
    if (Clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      return fail(
          internalError("haproxy (pid {}): admin socket \"{}\" did not answer within {} ms; see \"{}\"", pid,
                        files.adminSocket(), timeout.count(), log));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::string> haproxyCommand(const std::string& socketPath, std::string_view command,
                                   std::chrono::milliseconds timeout) {
  auto fd = connectUnix(socketPath);
  if (!fd) return fail(std::move(fd.error()));
  std::string line = fmt::format("{}\n", command);
  if (::send(fd->get(), line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size()))
    return fail(systemError(errno, fmt::format("send(\"{}\", \"{}\")", socketPath, command)));
  std::string answer;
  const auto deadline = Clock::now() + timeout;
  char buffer[8192];
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    pollfd p{.fd = fd->get(), .events = POLLIN, .revents = 0};
    if (left <= 0 || ::poll(&p, 1, static_cast<int>(left)) != 1)
      return fail(internalError("\"{}\" on \"{}\": no complete answer within {} ms", command, socketPath,
                                timeout.count()));
    ssize_t n = ::read(fd->get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, fmt::format("read(\"{}\")", socketPath)));
    if (n == 0) return answer;  // HAProxy closes the connection after one command
    answer.append(buffer, static_cast<size_t>(n));
  }
}

Status reloadHaproxy(const HaproxyFiles& files, std::chrono::milliseconds timeout) {
  if (auto checked = checkHaproxyConfig(files.config()); !checked) return checked;
  auto before = masterReloads(files.masterSocket());
  if (!before) return fail(std::move(before.error()).wrap("reload haproxy"));
  // The master re-executes itself: the connection may close without an answer.
  (void)haproxyCommand(files.masterSocket(), "reload", timeout);
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    auto now = masterReloads(files.masterSocket());
    if (now && *now > *before && haproxyCommand(files.adminSocket(), "show info", std::chrono::seconds(1)))
      return {};
    if (Clock::now() > deadline)
      return fail(internalError("reload haproxy \"{}\": no new worker within {} ms", files.config(),
                                timeout.count()));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

Result<std::vector<ProxyStat>> parseShowStat(std::string_view csv) {
  if (!csv.starts_with("# "))
    return fail(internalError("show stat: no header line in \"{}\"", csv.substr(0, 80)));
  size_t end = csv.find('\n');
  auto header = splitCsv(csv.substr(2, end == std::string_view::npos ? std::string_view::npos : end - 2));
  auto column = [&](std::string_view name) -> int {
    for (size_t i = 0; i < header.size(); ++i) {
      if (header[i] == name) return static_cast<int>(i);
    }
    return -1;
  };
  const int pxname = column("pxname"), svname = column("svname"), status = column("status"),
            checkStatus = column("check_status"), stot = column("stot"), dreq = column("dreq"),
            reqTot = column("req_tot");  // absent from older HAProxy's CSV, empty on TCP rows
  if (pxname < 0 || svname < 0 || status < 0 || stot < 0 || dreq < 0 || checkStatus < 0)
    return fail(internalError("show stat: header lacks pxname, svname, status, check_status, stot or dreq"));
  std::vector<ProxyStat> stats;
  auto number = [](const std::string& text) -> int64_t { return text.empty() ? 0 : std::stoll(text); };
  while (end != std::string_view::npos) {
    size_t start = end + 1;
    end = csv.find('\n', start);
    std::string_view line =
        csv.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
    if (line.empty()) continue;
    auto fields = splitCsv(line);
    if (fields.size() < header.size()) return fail(internalError("show stat: short line \"{}\"", line));
    try {
      const int64_t sessions = number(fields[stot]);
      stats.push_back(
          {.proxy = fields[pxname],
           .server = fields[svname],
           .status = fields[status],
           .checkStatus = fields[checkStatus],
           .sessions = sessions,
           .denied = number(fields[dreq]),
           .requests = reqTot >= 0 && !fields[reqTot].empty() ? number(fields[reqTot]) : sessions});
    } catch (const std::exception&) {
      return fail(internalError("show stat: a counter in \"{}\" is not a number", line));
    }
  }
  return stats;
}

std::vector<TargetHealth> targetHealth(const TargetGroup& group, const std::vector<ProxyStat>& stats,
                                       const std::map<std::string, std::string>& targetAddresses) {
  const std::string backend = targetGroupBackendName(group.name);
  std::vector<TargetHealth> health;
  for (const auto& target : group.targets) {
    TargetHealth entry{.target = target, .state = "unknown", .reason = {}, .requests = 0};
    if (!targetAddresses.contains(target)) {
      entry.state = "unused";
      entry.reason = "no address in the VPC (not running)";
    }
    for (const auto& stat : stats) {
      if (stat.proxy != backend || stat.server != target) continue;
      entry.requests = stat.sessions;
      // "UP", or "UP 1/3" / "DOWN 1/2" while a check streak is under way: the state it is in now.
      entry.state = stat.status.starts_with("UP") ? "healthy" : "unhealthy";
      if (entry.state != "healthy")
        entry.reason = stat.status + (stat.checkStatus.empty() ? "" : " (" + stat.checkStatus + ")");
    }
    health.push_back(std::move(entry));
  }
  return health;
}

std::optional<int64_t> targetGroupRequests(const TargetGroup& group, const std::vector<ProxyStat>& stats) {
  const std::string backend = targetGroupBackendName(group.name);
  for (const auto& stat : stats)
    if (stat.proxy == backend && stat.server == "BACKEND") return stat.requests;
  return std::nullopt;
}

std::map<int64_t, int64_t> firewallCounts(const Listener& listener, const std::vector<ProxyStat>& stats) {
  std::map<int64_t, int64_t> counts;
  for (const auto& rule : listener.firewall) {
    const std::string backend = firewallBackendName(listener, rule);
    counts[rule.id] = 0;
    for (const auto& stat : stats) {
      if (stat.proxy == backend && stat.server == "BACKEND") counts[rule.id] = stat.denied;
    }
  }
  return counts;
}

}  // namespace corral::lb
