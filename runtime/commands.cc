// corral-runtime's commands over container/ (the same runtime library corrald's containers use) and the
// per-container state directory (state.h). Order of create, as runc's: state dir and exec fifo →
// config.json parsed and checked → cgroup, clone, prestart/createRuntime/createContainer hooks → init
// set up and waiting on the fifo → console to the socket, state and pid file written. start opens the fifo.
#include "runtime/commands.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>

#include "container/caps.h"
#include "container/cgroup_mode.h"
#include "container/console.h"
#include "container/oci_config.h"
#include "container/runtime.h"
#include "container/seccomp.h"
#include "container/sync.h"
#include "core/log.h"
#include "core/rollback.h"
#include "runtime/hooks.h"
#include "runtime/state.h"

namespace corral::runtime {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

struct SignalName {
  const char* name;
  int number;
};
constexpr SignalName kSignals[] = {
    {"HUP", SIGHUP},   {"INT", SIGINT},       {"QUIT", SIGQUIT}, {"ILL", SIGILL},     {"TRAP", SIGTRAP},
    {"ABRT", SIGABRT}, {"IOT", SIGIOT},       {"BUS", SIGBUS},   {"FPE", SIGFPE},     {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"SEGV", SIGSEGV},     {"USR2", SIGUSR2}, {"PIPE", SIGPIPE},   {"ALRM", SIGALRM},
    {"TERM", SIGTERM}, {"STKFLT", SIGSTKFLT}, {"CHLD", SIGCHLD}, {"CONT", SIGCONT},   {"STOP", SIGSTOP},
    {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN},     {"TTOU", SIGTTOU}, {"URG", SIGURG},     {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ}, {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF}, {"WINCH", SIGWINCH}, {"IO", SIGIO},
    {"POLL", SIGPOLL}, {"PWR", SIGPWR},       {"SYS", SIGSYS},
};

StateDir stateDir(const GlobalOptions& global, const std::string& id) {
  return StateDir{global.root, id};
}

std::string hookState(const ContainerState& state, const char* status) {
  json document = {{"ociVersion", state.ociVersion},
                   {"id", state.id},
                   {"status", status},
                   {"pid", state.pid},
                   {"bundle", state.bundle.string()}};
  if (!state.annotations.empty()) document["annotations"] = state.annotations;
  return document.dump();
}

Status writePidFile(const std::string& path, pid_t pid) {
  if (path.empty()) return {};
  fs::path file = fs::absolute(path);
  return writeFileAtomically(file, std::to_string(pid), 0644);
}

// The bundle's config.json as the runtime takes it, with what the command line adds.
Result<container::OciBundleConfig> loadBundle(const fs::path& bundle, const std::string& id,
                                              const fs::path& configFile) {
  auto text = readTextFile(configFile);
  if (!text) return fail(text.error());
  container::OciParseContext context{bundle, id};
  auto config = container::parseOciConfig(*text, context);
  if (!config) return fail(config.error().wrap(fmt::format("\"{}\"", configFile.string())));
  for (const auto& ignored : config->ignored)
    log::warn("{}: {}: not a runtime-spec property, ignored", configFile.string(), ignored);
  return config;
}

// LISTEN_FDS (socket activation) passed on as runc does: the fds follow stdio and the process is told.
int listenFds(std::vector<std::string>* env) {
  const char* count = ::getenv("LISTEN_FDS");
  if (count == nullptr) return 0;
  int n = std::atoi(count);
  if (n <= 0) return 0;
  env->push_back(fmt::format("LISTEN_FDS={}", n));
  env->push_back("LISTEN_PID=1");
  return n;
}

struct Created {
  ContainerState state;
  container::OciBundleConfig bundle;
};

// create's work, shared with run: on success the container's init is set up and waits on the exec fifo,
// its state is recorded and the pid file written; on failure nothing is left (state dir, cgroup, process).
Result<Created> createContainer(const GlobalOptions& global, const CreateOptions& options) {
  if (auto ok = container::validateContainerId(options.id); !ok) return fail(ok.error());
  std::error_code error;
  fs::create_directories(global.root, error);
  if (error) return fail(systemError(error.value(), fmt::format("mkdir(\"{}\")", global.root.string())));
  const StateDir dir = stateDir(global, options.id);
  if (::mkdir(dir.dir().c_str(), 0700) != 0) {
    if (errno == EEXIST) return fail(conflict("container \"{}\" already exists", options.id));
    return fail(systemError(errno, fmt::format("mkdir(\"{}\")", dir.dir().string())));
  }
  Rollback removeStateDir([&] {
    std::error_code ignored;
    fs::remove_all(dir.dir(), ignored);
  });
  auto lock = lockStateDir(dir);
  if (!lock) return fail(lock.error());

  const fs::path bundle =
      fs::absolute(options.bundle.empty() ? fs::current_path() : options.bundle).lexically_normal();
  auto loaded = loadBundle(bundle, options.id, bundle / "config.json");
  if (!loaded) return fail(loaded.error());
  container::ContainerConfig& config = loaded->container;
  if (auto ok = container::checkBundleOnHost(config); !ok) return fail(ok.error());
  if (loaded->terminal && options.consoleSocket.empty())
    return fail(invalidField("console-socket",
                             "/process/terminal is true: --console-socket is required to receive "
                             "the terminal"));
  if (!loaded->terminal && !options.consoleSocket.empty())
    return fail(invalidField("console-socket", "--console-socket given, but /process/terminal is false"));
  if (loaded->terminal) {
    container::ConsoleSize size;
    if (loaded->consoleSize) {
      size.rows = static_cast<uint16_t>(loaded->consoleSize->height);
      size.cols = static_cast<uint16_t>(loaded->consoleSize->width);
    }
    config.console = size;
  }
  auto configText = readTextFile(bundle / "config.json");
  if (!configText) return fail(configText.error());
  if (auto ok = writeFileAtomically(dir.configFile(), *configText, 0600); !ok) return fail(ok.error());

  if (::mkfifo(dir.execFifo().c_str(), 0622) != 0)
    return fail(systemError(errno, fmt::format("mkfifo(\"{}\")", dir.execFifo().string())));
  // 0622 whatever the umask (runc clears it around its mkfifo): a process.user other than the container's
  // root opens it for writing as "other".
  if (::chmod(dir.execFifo().c_str(), 0622) != 0)
    return fail(systemError(errno, fmt::format("chmod(\"{}\", 0622)", dir.execFifo().string())));
  // Init opens it as the root of its user namespace, which host root's 0600 fifo refuses (runc chowns too).
  if (config.userNamespace) {
    auto root = config.userNamespace->hostRoot();
    if (!root) return fail(root.error());
    if (::chown(dir.execFifo().c_str(), root->uid, root->gid) != 0)
      return fail(systemError(
          errno, fmt::format("chown(\"{}\", {}, {})", dir.execFifo().string(), root->uid, root->gid)));
  }
  config.bundle->execFifo = dir.execFifo();
  config.bundle->preserveFds = options.preserveFds + listenFds(&config.env);

  ContainerState state;
  state.id = options.id;
  state.ociVersion = loaded->ociVersion;
  state.bundle = bundle;
  state.rootfs = config.bundle->root.rootfs;
  state.created = nowRfc3339();
  state.owner = ::geteuid();
  state.annotations = loaded->annotations;
  state.cgroupName = config.name;
  state.cgroupParent = config.cgroupOptions.parent;
  // Recorded before the cgroup exists, so a crash from here on leaves what delete --force can find.
  if (auto ok = saveState(dir, state); !ok) return fail(ok.error());

  const container::OciHooks& hooks = loaded->hooks;
  auto beforeStart = [&](pid_t pid) -> Status {
    ContainerState creating = state;
    creating.pid = pid;
    const std::string hookInput = hookState(creating, "creating");
    if (auto ok = runHooks(hooks.prestart, "prestart", hookInput); !ok) return ok;
    return runHooks(hooks.createRuntime, "createRuntime", hookInput);
  };
  // In the container's namespaces once its mounts are made, before pivot_root (runc's place for them).
  auto beforePivotRoot = [&](pid_t pid) -> Status {
    ContainerState creating = state;
    creating.pid = pid;
    return runHooks(hooks.createContainer, "createContainer", hookState(creating, "creating"), pid);
  };
  container::Stdio stdio{0, 1, 2};
  auto running = container::startContainer(
      config, stdio, beforeStart, hooks.createContainer.empty() ? container::ParentHook() : beforePivotRoot);
  if (!running) return fail(running.error());
  state.pid = running->pid();
  if (loaded->terminal) {
    UniqueFd master = running->takeConsole();
    if (!master) return fail(internalError("the container's terminal did not arrive"));
    if (auto ok = container::sendConsoleToSocket(options.consoleSocket, master.get()); !ok)
      return fail(ok.error().wrap("console socket"));
  }
  auto startTime = processStartTime(state.pid);
  if (!startTime) return fail(internalError("container init {} died during create", state.pid));
  state.pidStartTime = *startTime;
  if (auto ok = saveState(dir, state); !ok) return fail(ok.error());
  if (auto ok = writePidFile(options.pidFile, state.pid); !ok) return fail(ok.error().wrap("pid file"));
  running->release();
  removeStateDir.dismiss();
  // flock belongs to the open file description, which init's copy of the fd table shares until its
  // execve: unlock it explicitly, or the lock would be held as long as init waits for start.
  ::flock(lock->get(), LOCK_UN);
  return Created{std::move(state), std::move(*loaded)};
}

Status startContainerHooks(const StateDir& dir, const ContainerState& state) {
  auto loaded = loadBundle(state.bundle, state.id, dir.configFile());
  if (!loaded) return fail(loaded.error());
  if (loaded->hooks.startContainer.empty()) return {};
  auto cgroup = openContainerCgroup(state);
  if (!cgroup) return fail(cgroup.error());
  const std::string input = hookState(state, "created");
  for (size_t i = 0; i < loaded->hooks.startContainer.size(); ++i) {
    const container::OciHook& hook = loaded->hooks.startContainer[i];
    const std::string name = fmt::format("hooks.startContainer[{}] \"{}\"", i, hook.path);
    // In the container's namespaces, the path resolved in its root (runtime spec).
    int pipeFds[2];
    if (::pipe2(pipeFds, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2()"));
    UniqueFd readEnd(pipeFds[0]), writeEnd(pipeFds[1]);
    (void)!::write(writeEnd.get(), input.data(), input.size());
    writeEnd.reset();
    container::ContainerConfig config = loaded->container;
    config.env = hook.env;
    container::ExecOptions exec;
    exec.argv = {hook.path};
    if (hook.args.size() > 1) exec.argv.insert(exec.argv.end(), hook.args.begin() + 1, hook.args.end());
    exec.stdio = container::Stdio{readEnd.get(), 2, 2};
    auto pid = container::execInContainer(state.pid, **cgroup, config, exec);
    if (!pid) return fail(pid.error().wrap(name));
    UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, *pid, 0)));
    pollfd ready{pidfd.get(), POLLIN, 0};
    int timeout = hook.timeoutSeconds ? *hook.timeoutSeconds * 1000 : -1;
    int polled;
    do {
      polled = ::poll(&ready, 1, timeout);
    } while (polled < 0 && errno == EINTR);
    if (polled == 0) ::kill(*pid, SIGKILL);
    int status = 0;
    while (::waitpid(*pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (polled == 0) return fail(internalError("{}: timed out after {} s", name, *hook.timeoutSeconds));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      return fail(internalError("{}: {}", name,
                                WIFEXITED(status) ? fmt::format("exited with status {}", WEXITSTATUS(status))
                                                  : fmt::format("killed by signal {}", WTERMSIG(status))));
  }
  return {};
}

// After its byte init keeps the fifo open until execve closes it; a failure on the way (seccomp, execve)
// comes as a record before that. Reported as runc does: `start` (and `run`) fail with the message, and
// the container, its init gone, is stopped.
Status waitForExecve(const StateDir& dir, const ContainerState& state, int fifo, int pidfd) {
  char record[sizeof(container::SyncRecord)];
  size_t received = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd ready{fifo, POLLIN, 0};
    int polled = ::poll(&ready, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (polled < 0 && errno == EINTR) continue;
    if (polled < 0) return fail(systemError(errno, "poll(exec fifo)"));
    if (polled == 0) return {};  // still not exec'd: nothing more to wait for here (the state tells)
    ssize_t n = ::read(fifo, record + received, sizeof record - received);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) break;
    received += static_cast<size_t>(n);
    if (received == sizeof record) break;
  }
  auto failure = container::failureAfterStart(record, received);
  if (!failure) return {};
  // Init exits right after its record: wait for that, so the state reads `stopped` once start returns.
  pollfd exited{pidfd, POLLIN, 0};
  while (::poll(&exited, 1, 5000) < 0 && errno == EINTR) {
  }
  std::string call = "seccomp: load filter";
  if (failure->step == container::ChildStep::Execve) {
    auto loaded = loadBundle(state.bundle, state.id, dir.configFile());
    const std::string command = loaded && !loaded->container.argv.empty() ? loaded->container.argv.front()
                                                                          : std::string("process.args[0]");
    call = fmt::format("exec \"{}\": execve", command);
  }
  return fail(systemError(failure->errnum, fmt::format("container init {}: {}", state.pid, call)));
}

// Releases init from the exec fifo: open for reading (never blocking: init may have died), wait for its
// byte or its exit, then remove the fifo, which is what marks the container as started.
// The pidfd comes first: once the fifo is open, init may run its command, end and be reaped by its parent
// (a shim, conmon) before a pidfd_open of its pid could find it.
Status releaseInit(const StateDir& dir, const ContainerState& state) {
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, state.pid, 0)));
  if (!pidfd && errno == ESRCH)
    return fail(internalError("container init {} exited before start", state.pid));
  if (!pidfd) return fail(systemError(errno, fmt::format("pidfd_open({})", state.pid)));
  UniqueFd fifo(::open(dir.execFifo().c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC));
  if (!fifo) return fail(systemError(errno, fmt::format("open(\"{}\")", dir.execFifo().string())));
  for (;;) {
    pollfd fds[2] = {{fifo.get(), POLLIN, 0}, {pidfd.get(), POLLIN, 0}};
    int ready = ::poll(fds, 2, 10000);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return fail(systemError(errno, "poll(exec fifo)"));
    if (ready == 0)
      return fail(internalError("container init {} did not open its exec fifo in 10 s", state.pid));
    if (fds[0].revents & POLLIN) {
      char byte = 0;
      if (::read(fifo.get(), &byte, 1) == 1) break;
    }
    if (fds[1].revents & POLLIN)
      return fail(internalError("container init {} exited before start", state.pid));
  }
  if (::unlink(dir.execFifo().c_str()) != 0)
    return fail(systemError(errno, fmt::format("unlink(\"{}\")", dir.execFifo().string())));
  return waitForExecve(dir, state, fifo.get(), pidfd.get());
}

Result<int> startLocked(const StateDir& dir, const ContainerState& state) {
  ContainerStatus status = currentStatus(dir, state);
  if (status != ContainerStatus::Created)
    return fail(
        conflict("cannot start container \"{}\": it is {}, not created", state.id, statusName(status)));
  if (auto ok = startContainerHooks(dir, state); !ok) {
    ::kill(state.pid, SIGKILL);
    return fail(ok.error());
  }
  if (auto ok = releaseInit(dir, state); !ok) return fail(ok.error());
  auto loaded = loadBundle(state.bundle, state.id, dir.configFile());
  if (loaded) {
    // The runtime spec: a failing poststart hook is a warning; the container runs on.
    if (auto ok = runHooks(loaded->hooks.poststart, "poststart", hookState(state, "running")); !ok)
      log::warn("{}", ok.error().message());
  }
  return 0;
}

// delete's work with the lock held: the processes, the cgroup, poststop hooks, the state dir.
Status destroyContainer(const StateDir& dir, const ContainerState& state) {
  auto options = cgroupOptions(state);
  auto mode = container::detectCgroupMode(options.root);
  if (!mode) return fail(mode.error());
  // Whatever is left, also of a create that crashed: every process in the group, then the group.
  if (auto cleared = container::clearCgroup(*mode, state.cgroupName, options); !cleared)
    return fail(cleared.error().wrap("cgroup"));
  if (state.pid > 0 && processAlive(state)) ::kill(state.pid, SIGKILL);
  std::error_code error;
  if (fs::exists(dir.configFile(), error)) {
    if (auto loaded = loadBundle(state.bundle, state.id, dir.configFile())) {
      if (auto ok = runHooks(loaded->hooks.poststop, "poststop", hookState(state, "stopped")); !ok)
        log::warn("{}", ok.error().message());
    }
  }
  fs::remove_all(dir.dir(), error);
  if (error) return fail(systemError(error.value(), fmt::format("remove_all(\"{}\")", dir.dir().string())));
  return {};
}

int exitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

pid_t forwardTo = -1;
void forwardSignal(int signal) {
  if (forwardTo > 0) ::kill(forwardTo, signal);
}

// run and exec in the foreground: signals the runtime gets go to the container's process.
void forwardSignals(pid_t pid) {
  forwardTo = pid;
  struct sigaction action {};
  action.sa_handler = forwardSignal;
  ::sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  for (int signal : {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH})
    ::sigaction(signal, &action, nullptr);
}

int waitForExit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return 1;
  }
  return exitCodeOf(status);
}

}  // namespace

Result<int> parseSignal(const std::string& text) {
  if (text.empty()) return fail(invalidField("signal", "the signal is empty"));
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    int number = std::atoi(text.c_str());
    if (number <= 0 || number > SIGRTMAX)
      return fail(invalidField("signal", "{} is not a signal number", text));
    return number;
  }
  std::string name = text;
  for (char& c : name) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (name.starts_with("SIG")) name = name.substr(3);
  for (const SignalName& known : kSignals) {
    if (name == known.name) return known.number;
  }
  if (name.starts_with("RTMIN") || name.starts_with("RTMAX")) {
    int base = name.starts_with("RTMIN") ? SIGRTMIN : SIGRTMAX;
    std::string offset = name.substr(5);
    int delta = offset.empty() ? 0 : std::atoi(offset.c_str());
    int number = base + delta;
    if (number >= SIGRTMIN && number <= SIGRTMAX) return number;
  }
  return fail(invalidField("signal", "\"{}\" is not a signal name or number", text));
}

Result<int> createCommand(const GlobalOptions& global, const CreateOptions& options) {
  auto created = createContainer(global, options);
  if (!created) return fail(created.error().wrap(fmt::format("create container \"{}\"", options.id)));
  return 0;
}

Result<int> startCommand(const GlobalOptions& global, const std::string& id) {
  const StateDir dir = stateDir(global, id);
  auto locked = lockAndLoadState(dir);
  if (!locked) return fail(locked.error());
  const ContainerState* state = &locked->state;
  return startLocked(dir, *state);
}

Result<int> runCommand(const GlobalOptions& global, const CreateOptions& options) {
  auto created = createContainer(global, options);
  if (!created) return fail(created.error().wrap(fmt::format("run container \"{}\"", options.id)));
  const StateDir dir = stateDir(global, options.id);
  {
    auto lock = lockStateDir(dir);
    if (!lock) return fail(lock.error());
    auto started = startLocked(dir, created->state);
    if (!started) {
      (void)destroyContainer(dir, created->state);
      return fail(started.error());
    }
  }
  if (options.detach) return 0;
  forwardSignals(created->state.pid);
  int code = waitForExit(created->state.pid);
  auto lock = lockStateDir(dir);
  if (!lock) return fail(lock.error());
  if (auto ok = destroyContainer(dir, created->state); !ok) return fail(ok.error());
  return code;
}

Result<int> stateCommand(const GlobalOptions& global, const std::string& id) {
  const StateDir dir = stateDir(global, id);
  auto locked = lockAndLoadState(dir);
  if (!locked) return fail(locked.error());
  const ContainerState* state = &locked->state;
  fmt::print("{}\n", stateJson(*state, currentStatus(dir, *state), true));
  return 0;
}

Result<int> killCommand(const GlobalOptions& global, const std::string& id, const std::string& signalText,
                        bool all) {
  auto signal = parseSignal(signalText);
  if (!signal) return fail(signal.error());
  const StateDir dir = stateDir(global, id);
  auto locked = lockAndLoadState(dir);
  if (!locked) return fail(locked.error());
  const ContainerState* state = &locked->state;
  ContainerStatus status = currentStatus(dir, *state);
  if (status == ContainerStatus::Stopped || status == ContainerStatus::Creating)
    return fail(conflict("cannot kill container \"{}\": it is {}", id, statusName(status)));
  if (all) {
    auto cgroup = openContainerCgroup(*state);
    if (!cgroup) return fail(cgroup.error());
    auto pids = (*cgroup)->processes();
    if (!pids) return fail(pids.error());
    for (pid_t pid : *pids) ::kill(pid, *signal);
    // A paused container's processes get it when they thaw; SIGKILL should not wait for resume.
    if (status == ContainerStatus::Paused && *signal == SIGKILL) (void)(*cgroup)->setFrozen(false);
    return 0;
  }
  // Through a pidfd of the process we checked: the pid cannot be reused under us.
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, state->pid, 0)));
  if (!pidfd || !processAlive(*state))
    return fail(conflict("cannot kill container \"{}\": it has stopped", id));
  if (::syscall(SYS_pidfd_send_signal, pidfd.get(), *signal, nullptr, 0) != 0)
    return fail(systemError(errno, fmt::format("pidfd_send_signal({}, {})", state->pid, *signal)));
  return 0;
}

Result<int> deleteCommand(const GlobalOptions& global, const std::string& id, bool force) {
  const StateDir dir = stateDir(global, id);
  auto lock = lockStateDir(dir);
  if (!lock) return fail(lock.error());
  auto state = loadState(dir);
  if (!state) {
    // A create that crashed before its first state write: nothing but the directory.
    if (force && state.error().kind() != ErrorKind::NotFound) {
      std::error_code error;
      fs::remove_all(dir.dir(), error);
      return 0;
    }
    return fail(state.error());
  }
  ContainerStatus status = currentStatus(dir, *state);
  if (status != ContainerStatus::Stopped && !force)
    return fail(conflict("cannot delete container \"{}\": it is {} (stop it, or use --force)", id,
                         statusName(status)));
  if (auto ok = destroyContainer(dir, *state); !ok)
    return fail(ok.error().wrap(fmt::format("delete \"{}\"", id)));
  return 0;
}

Result<int> execCommand(const GlobalOptions& global, const ExecCommandOptions& options) {
  const StateDir dir = stateDir(global, options.id);
  ContainerState state;
  container::ContainerConfig config;
  bool terminal = options.tty;
  std::optional<container::ConsoleSize> consoleSize;
  {
    auto locked = lockAndLoadState(dir);
    if (!locked) return fail(locked.error());
    state = locked->state;
    ContainerStatus status = currentStatus(dir, state);
    if (status != ContainerStatus::Running && status != ContainerStatus::Created)
      return fail(conflict("cannot exec in container \"{}\": it is {}", options.id, statusName(status)));
    auto loaded = loadBundle(state.bundle, state.id, dir.configFile());
    if (!loaded) return fail(loaded.error());
    config = loaded->container;
  }
  if (!options.processFile.empty()) {
    auto text = readTextFile(options.processFile);
    if (!text) return fail(text.error().wrap("--process"));
    auto process = container::parseOciProcess(*text, config);
    if (!process) return fail(process.error().wrap(fmt::format("--process \"{}\"", options.processFile)));
    config = std::move(process->config);
    terminal = process->terminal;
    if (process->consoleSize) {
      consoleSize = container::ConsoleSize{static_cast<uint16_t>(process->consoleSize->height),
                                           static_cast<uint16_t>(process->consoleSize->width)};
    }
  } else {
    if (options.args.empty()) return fail(invalidField("args", "exec needs a command (or --process)"));
    config.argv = options.args;
  }
  for (const std::string& entry : options.env) {
    if (entry.find('=') == std::string::npos || entry.front() == '=')
      return fail(invalidField("env", "--env \"{}\" is not KEY=VALUE", entry));
  }
  // --env entries replace the container's of the same name.
  for (const std::string& entry : options.env) {
    const std::string key = entry.substr(0, entry.find('=') + 1);
    std::erase_if(config.env, [&](const std::string& existing) { return existing.starts_with(key); });
    config.env.push_back(entry);
  }
  if (options.user) {
    const std::string& user = *options.user;
    size_t colon = user.find(':');
    try {
      size_t used = 0;
      config.user.uid = static_cast<uid_t>(std::stoul(user.substr(0, colon), &used));
      if (used != user.substr(0, colon).size()) throw std::invalid_argument("uid");
      if (colon != std::string::npos) {
        config.user.gid = static_cast<gid_t>(std::stoul(user.substr(colon + 1), &used));
        if (used != user.size() - colon - 1) throw std::invalid_argument("gid");
      }
    } catch (const std::exception&) {
      return fail(invalidField("user", "--user \"{}\" is not UID[:GID] (numbers)", user));
    }
  }
  for (const std::string& cap : options.capabilities) {
    if (!container::capabilityNumbers({cap}))
      return fail(invalidField("cap", "--cap \"{}\" is not a capability", cap));
    auto& sets = config.bundle->capabilities;
    for (auto* set : {&sets.bounding, &sets.effective, &sets.permitted, &sets.inheritable, &sets.ambient})
      set->push_back(cap);
  }
  if (options.noNewPrivileges) config.bundle->noNewPrivileges = true;
  if (terminal && options.consoleSocket.empty())
    return fail(invalidField("console-socket", "--tty needs --console-socket to receive the terminal"));
  auto cgroup = openContainerCgroup(state);
  if (!cgroup) return fail(cgroup.error());
  container::ExecOptions exec;
  exec.argv = config.argv;
  exec.stdio = container::Stdio{0, 1, 2};
  container::ExecExtras extras;
  UniqueFd master;
  if (terminal) {
    extras.console = consoleSize.value_or(container::ConsoleSize{});
    extras.consoleMaster = &master;
  }
  if (options.cwd) extras.workingDir = *options.cwd;
  extras.preserveFds = options.preserveFds;
  auto pid = container::execInContainer(state.pid, **cgroup, config, exec, extras);
  if (!pid) return fail(pid.error());
  if (terminal) {
    if (auto ok = container::sendConsoleToSocket(options.consoleSocket, master.get()); !ok) {
      ::kill(*pid, SIGKILL);
      waitForExit(*pid);
      return fail(ok.error().wrap("console socket"));
    }
    master.reset();
  }
  if (auto ok = writePidFile(options.pidFile, *pid); !ok) return fail(ok.error().wrap("pid file"));
  if (options.detach) return 0;
  forwardSignals(*pid);
  return waitForExit(*pid);
}

Result<int> psCommand(const GlobalOptions& global, const std::string& id, const std::string& format,
                      const std::vector<std::string>& psArgs) {
  const StateDir dir = stateDir(global, id);
  std::vector<pid_t> pids;
  {
    auto locked = lockAndLoadState(dir);
    if (!locked) return fail(locked.error());
    const ContainerState* state = &locked->state;
    if (currentStatus(dir, *state) == ContainerStatus::Stopped) {
      pids.clear();
    } else {
      auto cgroup = openContainerCgroup(*state);
      if (!cgroup) return fail(cgroup.error());
      auto listed = (*cgroup)->processes();
      if (!listed) return fail(listed.error());
      pids = *listed;
    }
  }
  if (format == "json") {
    fmt::print("{}\n", json(pids).dump());
    return 0;
  }
  if (format != "table") return fail(invalidField("format", "--format \"{}\": give table or json", format));
  // runc's way: ps(1) with the given options, its rows kept for the container's pids.
  std::string command = "ps";
  for (const auto& arg : psArgs.empty() ? std::vector<std::string>{"-ef"} : psArgs) {
    command += " '";
    for (char c : arg) command += c == '\'' ? std::string("'\\''") : std::string(1, c);
    command += "'";
  }
  FILE* ps = ::popen(command.c_str(), "r");
  if (ps == nullptr) return fail(systemError(errno, "popen(\"ps\")"));
  std::string output;
  char buffer[4096];
  while (size_t n = std::fread(buffer, 1, sizeof buffer, ps)) output.append(buffer, n);
  int status = ::pclose(ps);
  if (status != 0) return fail(internalError("{} failed (status {})", command, status));
  size_t lineEnd = output.find('\n');
  std::string header = output.substr(0, lineEnd);
  size_t pidColumn = std::string::npos;
  {
    size_t at = 0, column = 0;
    while (at < header.size()) {
      while (at < header.size() && header[at] == ' ') ++at;
      size_t end = header.find(' ', at);
      if (header.substr(at, end - at) == "PID") {
        pidColumn = column;
        break;
      }
      ++column;
      at = end;
    }
  }
  if (pidColumn == std::string::npos) return fail(internalError("ps output has no PID column"));
  fmt::print("{}\n", header);
  size_t at = lineEnd == std::string::npos ? output.size() : lineEnd + 1;
  while (at < output.size()) {
    size_t end = output.find('\n', at);
    if (end == std::string::npos) end = output.size();
    std::string line = output.substr(at, end - at);
    at = end + 1;
    std::istringstream fields(line);
    std::string field;
    for (size_t column = 0; column <= pidColumn; ++column) fields >> field;
    pid_t pid = static_cast<pid_t>(std::atoi(field.c_str()));
    if (std::find(pids.begin(), pids.end(), pid) != pids.end()) fmt::print("{}\n", line);
  }
  return 0;
}

Result<int> listCommand(const GlobalOptions& global, const std::string& format, bool quiet) {
  if (format != "table" && format != "json")
    return fail(invalidField("format", "--format \"{}\": give table or json", format));
  std::vector<std::pair<ContainerState, ContainerStatus>> containers;
  std::error_code error;
  if (fs::is_directory(global.root, error)) {
    std::vector<std::string> ids;
    for (const auto& entry : fs::directory_iterator(global.root, error)) {
      if (entry.is_directory()) ids.push_back(entry.path().filename().string());
    }
    std::sort(ids.begin(), ids.end());
    for (const auto& id : ids) {
      const StateDir dir = stateDir(global, id);
      auto lock = lockStateDir(dir);
      if (!lock) continue;
      auto state = loadState(dir);
      if (!state) continue;
      containers.emplace_back(*state, currentStatus(dir, *state));
    }
  }
  if (quiet) {
    for (const auto& [state, status] : containers) fmt::print("{}\n", state.id);
    return 0;
  }
  if (format == "json") {
    json list = json::array();
    for (const auto& [state, status] : containers)
      list.push_back(json::parse(stateJson(state, status, false)));
    fmt::print("{}\n", list.dump());
    return 0;
  }
  fmt::print("{:<20} {:<8} {:<10} {:<40} {:<32} {}\n", "ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER");
  for (const auto& [state, status] : containers) {
    fmt::print("{:<20} {:<8} {:<10} {:<40} {:<32} {}\n", state.id,
               status == ContainerStatus::Stopped ? 0 : state.pid, statusName(status), state.bundle.string(),
               state.created, state.owner == 0 ? "root" : std::to_string(state.owner));
  }
  return 0;
}

Result<int> pauseCommand(const GlobalOptions& global, const std::string& id, bool pause) {
  const StateDir dir = stateDir(global, id);
  auto locked = lockAndLoadState(dir);
  if (!locked) return fail(locked.error());
  const ContainerState* state = &locked->state;
  ContainerStatus status = currentStatus(dir, *state);
  if (pause && status != ContainerStatus::Running)
    return fail(conflict("cannot pause container \"{}\": it is {}, not running", id, statusName(status)));
  if (!pause && status != ContainerStatus::Paused)
    return fail(conflict("cannot resume container \"{}\": it is {}, not paused", id, statusName(status)));
  auto cgroup = openContainerCgroup(*state);
  if (!cgroup) return fail(cgroup.error());
  if (auto ok = (*cgroup)->setFrozen(pause); !ok) return fail(ok.error());
  return 0;
}

Result<int> featuresCommand() {
  json caps = json::array();
  for (const auto& name : container::allCapabilityNames()) caps.push_back(name);
  json features = {
      {"ociVersionMin", "1.0.0"},
      {"ociVersionMax", "1.1.0"},
      {"hooks", {"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"}},
      {"mountOptions",
       {"async",   "atime",  "bind",       "dev",         "diratime", "dirsync",    "exec",          "mand",
        "noatime", "nodev",  "nodiratime", "noexec",      "nomand",   "norelatime", "nostrictatime", "nosuid",
        "private", "rbind",  "relatime",   "rprivate",    "rshared",  "rslave",     "runbindable",   "ro",
        "rw",      "shared", "slave",      "strictatime", "suid",     "sync",       "unbindable"}},
      {"linux",
       {{"namespaces", {"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"}},
        {"capabilities", caps},
        {"cgroup", {{"v1", true}, {"v2", true}, {"systemd", false}, {"systemdUser", false}}},
        {"seccomp",
         {{"enabled", true},
          {"actions",
           {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
            "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRAP"}},
          {"operators",
           {"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ",
            "SCMP_CMP_NE"}},
          {"archs",
           {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"}}}},
        {"apparmor", {{"enabled", false}}},
        {"selinux", {{"enabled", false}}}}},
      {"annotations", {{"org.corral.runtime.version", CORRAL_VERSION}}},
  };
  fmt::print("{}\n", features.dump(4));
  return 0;
}

Result<int> specCommand(const fs::path& bundle) {
  const fs::path file = (bundle.empty() ? fs::current_path() : bundle) / "config.json";
  std::error_code error;
  if (fs::exists(file, error)) return fail(conflict("\"{}\" exists already: remove it first", file.string()));
  if (auto ok = writeFileAtomically(file, container::defaultOciSpec(), 0644); !ok) return fail(ok.error());
  return 0;
}

}  // namespace corral::runtime
