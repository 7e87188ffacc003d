// corral-runtime: an OCI runtime with runc's command line (global flags, then a command, its flags and its
// arguments; --flag VALUE, --flag=VALUE and Go's single-dash -flag all read the same), built on container/.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "core/log.h"
#include "runtime/commands.h"
#include "runtime/state.h"

namespace corral::runtime {
namespace {

struct Logger {
  std::string file;
  bool json = false;
  bool debug = false;

  void write(const char* level, const std::string& message) const {
    if (file.empty()) return;
    std::string line;
    if (json) {
      line = nlohmann::json{{"level", level}, {"msg", message}, {"time", nowRfc3339()}}.dump() + "\n";
    } else {
      line = fmt::format("time=\"{}\" level={} msg=\"{}\"\n", nowRfc3339(), level, message);
    }
    int fd = ::open(file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return;
    (void)!::write(fd, line.data(), line.size());
    ::close(fd);
  }
  void error(const std::string& message) const {
    write("error", message);
    fmt::print(stderr, "corral-runtime: {}\n", message);
  }
  void debugLine(const std::string& message) const {
    if (!debug) return;
    write("debug", message);
    if (file.empty()) fmt::print(stderr, "corral-runtime: debug: {}\n", message);
  }
};

// One command's flags: which exist, which take a value; what was given.
struct FlagSpec {
  std::set<std::string> booleans;
  std::set<std::string> values;
  std::map<std::string, std::string> aliases;  // "b" → "bundle"
};

struct Parsed {
  std::map<std::string, std::vector<std::string>> values;
  std::set<std::string> booleans;
  std::vector<std::string> positional;
  bool has(const std::string& name) const { return booleans.count(name) || values.count(name); }
  std::string value(const std::string& name, std::string fallback = {}) const {
    auto it = values.find(name);
    return it == values.end() ? fallback : it->second.back();
  }
};

// Flags up to the first argument that is not one (or "--"); the rest is positional, as urfave/cli does.
Result<Parsed> parseFlags(const std::vector<std::string>& args, size_t from, const FlagSpec& spec,
                          const std::string& command, bool stopAtFirstPositional, size_t* next = nullptr) {
  Parsed parsed;
  size_t i = from;
  for (; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg.size() < 2 || arg[0] != '-') {
      if (stopAtFirstPositional) break;
      parsed.positional.push_back(arg);
      continue;
    }
    std::string name = arg.substr(arg[1] == '-' ? 2 : 1);
    std::optional<std::string> inlineValue;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      inlineValue = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (auto alias = spec.aliases.find(name); alias != spec.aliases.end()) name = alias->second;
    if (name == "help" || name == "h") {
      parsed.booleans.insert("help");
      continue;
    }
    if (spec.booleans.count(name)) {
      if (inlineValue && *inlineValue != "true" && *inlineValue != "false")
        return fail(
            invalidField(name, "{}: --{} takes true or false, not \"{}\"", command, name, *inlineValue));
      if (!inlineValue || *inlineValue == "true") parsed.booleans.insert(name);
      continue;
    }
    if (spec.values.count(name)) {
      if (!inlineValue) {
        if (i + 1 >= args.size()) return fail(invalidField(name, "{}: --{} needs a value", command, name));
        inlineValue = args[++i];
      }
      parsed.values[name].push_back(*inlineValue);
      continue;
    }
    return fail(invalidField(name, "{}: unknown flag \"{}\" (see {} --help)", command, arg, command));
  }
  if (next) *next = i;
  for (; i < args.size(); ++i) parsed.positional.push_back(args[i]);
  return parsed;
}

constexpr const char* kUsage = R"(corral-runtime: an OCI container runtime with runc's command line, built on
corral's container library (the one corrald's containers use).

Usage: corral-runtime [global options] COMMAND [command options] [arguments]

Global options:
  --root DIR            state of the containers (default /run/corral-runtime)
  --log FILE            write errors (and with --debug, debug lines) to FILE
  --log-format FORMAT   text (default) or json: one {"level","msg","time"} object per line
  --debug               log debug lines too
  --systemd-cgroup      refused: corral-runtime manages cgroups itself (cgroupfs paths)
  --version, -v         print the version
  --help, -h            this text; COMMAND --help for a command's

Commands:
  create    create a container (set up, waiting for start)
  start     start a created container's process
  run       create and start a container, and wait for it in the foreground
  state     print a container's state JSON
  kill      send a signal to a container's process (or, --all, to all of its processes)
  delete    delete a stopped container (--force: any container)
  exec      run a new process in a running container
  ps        list a container's processes
  list      list containers
  pause     freeze every process of a container
  resume    thaw a paused container
  features  print what this runtime supports (runtime-spec features JSON)
  spec      write a default config.json
)";

const std::map<std::string, std::string> kCommandHelp = {
    {"create", R"(Usage: corral-runtime create [options] ID

Creates container ID from the bundle's config.json: namespaces, cgroup, mounts, pivot_root, capabilities,
seccomp; the process then waits until `start`. The pid file is written when create returns.

Options:
  --bundle, -b DIR        the bundle (default: the working directory)
  --pid-file FILE         write the container process's pid here
  --console-socket PATH   AF_UNIX socket the terminal's master is sent to (process.terminal: true)
  --preserve-fds N        pass fds 3 .. 3+N-1 on to the process (LISTEN_FDS adds its own)
  --no-pivot              refused: corral-runtime always uses pivot_root
  --no-new-keyring        accepted: corral-runtime never creates a session keyring
)"},
    {"start",
     "Usage: corral-runtime start ID\n\nStarts the process of created container ID (runs startContainer and "
     "poststart hooks).\nFails, naming the call and its error, when the process cannot be started (its "
     "execve fails, say); the container is then stopped.\n"},
    {"run", R"(Usage: corral-runtime run [options] ID

create, then start, then wait for the process in the foreground, forwarding signals, and delete it once it
exits; the exit status is the process's (128+N when killed by signal N).

Options: those of create, and
  --detach, -d            return after start (the container stays; delete it later)
)"},
    {"state",
     "Usage: corral-runtime state ID\n\nPrints the runtime spec's state JSON of container ID (status: "
     "created, running, paused, stopped).\n"},
    {"kill", R"(Usage: corral-runtime kill [options] ID [SIGNAL]

Sends SIGNAL (a name: TERM, SIGTERM, or a number; default TERM) to container ID's process.

Options:
  --all, -a               send it to every process of the container
)"},
    {"delete", R"(Usage: corral-runtime delete [options] ID

Deletes container ID: its processes, cgroup and state (poststop hooks run). A created, running or paused
container is refused without --force.

Options:
  --force, -f             kill the container's processes first
)"},
    {"exec", R"(Usage: corral-runtime exec [options] ID [COMMAND [ARG...]]

Runs a new process in container ID's namespaces and cgroup, with its capabilities and seccomp profile.

Options:
  --process, -p FILE      the process as a runtime-spec process JSON (instead of COMMAND)
  --detach, -d            return once the process runs
  --pid-file FILE         write the process's pid here
  --console-socket PATH   send the terminal's master here (with --tty)
  --tty, -t               give the process a terminal of the container's devpts
  --env, -e KEY=VALUE     add or replace an environment variable (repeatable)
  --cwd DIR               working directory inside the container
  --user, -u UID[:GID]    run as these ids
  --cap, -c CAP           add a capability to every set (repeatable)
  --no-new-privs          set no_new_privs
  --preserve-fds N        pass fds 3 .. 3+N-1 on to the process
)"},
    {"ps", R"(Usage: corral-runtime ps [options] ID [PS ARGS...]

Lists container ID's processes: ps(1)'s table (default arguments -ef) for the container's pids.

Options:
  --format, -f FORMAT     table (default) or json (the pids)
)"},
    {"list", R"(Usage: corral-runtime list [options]

Options:
  --format, -f FORMAT     table (default) or json (state objects)
  --quiet, -q             ids only
)"},
    {"pause",
     "Usage: corral-runtime pause ID\n\nFreezes every process of running container ID (cgroup freezer).\n"},
    {"resume", "Usage: corral-runtime resume ID\n\nThaws paused container ID.\n"},
    {"features",
     "Usage: corral-runtime features\n\nPrints the runtime-spec features JSON: hooks, mount options, "
     "namespaces, capabilities, cgroup, seccomp.\n"},
    {"spec", R"(Usage: corral-runtime spec [options]

Writes a default config.json (a shell on a terminal; the runtime spec's usual mounts and namespaces).

Options:
  --bundle, -b DIR        where to write it (default: the working directory)
  --rootless              refused: corral-runtime runs as root (a user namespace with uidMappings is fine)
)"},
};

Result<std::string> onlyId(const Parsed& parsed, const std::string& command, size_t extraAllowed = 0) {
  if (parsed.positional.empty()) return fail(invalidField("id", "{}: a container id is required", command));
  if (parsed.positional.size() > 1 + extraAllowed)
    return fail(
        invalidField("id", "{}: unexpected argument \"{}\"", command, parsed.positional[1 + extraAllowed]));
  return parsed.positional.front();
}

// --preserve-fds N of create, run and exec; 0 when not given.
Result<int> preserveFdsFlag(const Parsed& parsed) {
  if (!parsed.values.count("preserve-fds")) return 0;
  const std::string text = parsed.value("preserve-fds");
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
      text.size() > 6)
    return fail(invalidField("preserve-fds", "--preserve-fds \"{}\" is not a count", text));
  return std::atoi(text.c_str());
}

Result<int> dispatch(const GlobalOptions& global, const std::string& command,
                     const std::vector<std::string>& args, size_t from) {
  auto help = [&]() -> Result<int> {
    fmt::print("{}", kCommandHelp.at(command));
    return 0;
  };
  if (command == "create" || command == "run") {
    FlagSpec spec{{"no-pivot", "no-new-keyring", "detach"},
                  {"bundle", "pid-file", "console-socket", "preserve-fds"},
                  {{"b", "bundle"}, {"d", "detach"}}};
    if (command == "create") spec.booleans.erase("detach");
    auto parsed = parseFlags(args, from, spec, command, false);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    if (parsed->has("no-pivot"))
      return fail(
          invalidField("no-pivot", "--no-pivot is not supported: corral-runtime always uses pivot_root"));
    auto id = onlyId(*parsed, command);
    if (!id) return fail(id.error());
    CreateOptions options;
    options.id = *id;
    options.bundle = parsed->value("bundle");
    options.pidFile = parsed->value("pid-file");
    options.consoleSocket = parsed->value("console-socket");
    auto preserveFds = preserveFdsFlag(*parsed);
    if (!preserveFds) return fail(preserveFds.error());
    options.preserveFds = *preserveFds;
    options.detach = parsed->has("detach");
    return command == "create" ? createCommand(global, options) : runCommand(global, options);
  }
  if (command == "start" || command == "state" || command == "pause" || command == "resume") {
    auto parsed = parseFlags(args, from, FlagSpec{}, command, false);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    auto id = onlyId(*parsed, command);
    if (!id) return fail(id.error());
    if (command == "start") return startCommand(global, *id);
    if (command == "state") return stateCommand(global, *id);
    return pauseCommand(global, *id, command == "pause");
  }
  if (command == "kill") {
    auto parsed = parseFlags(args, from, FlagSpec{{"all"}, {}, {{"a", "all"}}}, command, false);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    auto id = onlyId(*parsed, command, 1);
    if (!id) return fail(id.error());
    std::string signal = parsed->positional.size() > 1 ? parsed->positional[1] : "TERM";
    return killCommand(global, *id, signal, parsed->has("all"));
  }
  if (command == "delete") {
    auto parsed = parseFlags(args, from, FlagSpec{{"force"}, {}, {{"f", "force"}}}, command, false);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    auto id = onlyId(*parsed, command);
    if (!id) return fail(id.error());
    return deleteCommand(global, *id, parsed->has("force"));
  }
  if (command == "exec") {
    FlagSpec spec{
        {"detach", "tty", "no-new-privs"},
        {"process", "pid-file", "console-socket", "env", "cwd", "user", "cap", "preserve-fds"},
        {{"p", "process"}, {"d", "detach"}, {"t", "tty"}, {"e", "env"}, {"u", "user"}, {"c", "cap"}}};
    auto parsed = parseFlags(args, from, spec, command, true);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    if (parsed->positional.empty()) return fail(invalidField("id", "exec: a container id is required"));
    ExecCommandOptions options;
    options.id = parsed->positional.front();
    options.args.assign(parsed->positional.begin() + 1, parsed->positional.end());
    options.processFile = parsed->value("process");
    if (!options.processFile.empty() && !options.args.empty())
      return fail(invalidField("process", "exec: give --process or a command, not both"));
    if (parsed->values.count("env")) options.env = parsed->values.at("env");
    if (parsed->values.count("cap")) options.capabilities = parsed->values.at("cap");
    if (parsed->values.count("cwd")) options.cwd = parsed->value("cwd");
    if (parsed->values.count("user")) options.user = parsed->value("user");
    options.tty = parsed->has("tty");
    options.detach = parsed->has("detach");
    options.noNewPrivileges = parsed->has("no-new-privs");
    options.pidFile = parsed->value("pid-file");
    options.consoleSocket = parsed->value("console-socket");
    auto preserveFds = preserveFdsFlag(*parsed);
    if (!preserveFds) return fail(preserveFds.error());
    options.preserveFds = *preserveFds;
    return execCommand(global, options);
  }
  if (command == "ps") {
    auto parsed = parseFlags(args, from, FlagSpec{{}, {"format"}, {{"f", "format"}}}, command, true);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    if (parsed->positional.empty()) return fail(invalidField("id", "ps: a container id is required"));
    std::vector<std::string> psArgs(parsed->positional.begin() + 1, parsed->positional.end());
    return psCommand(global, parsed->positional.front(), parsed->value("format", "table"), psArgs);
  }
  if (command == "list") {
    auto parsed = parseFlags(args, from, FlagSpec{{"quiet"}, {"format"}, {{"f", "format"}, {"q", "quiet"}}},
                             command, false);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    if (!parsed->positional.empty())
      return fail(invalidField("list", "list: unexpected argument \"{}\"", parsed->positional[0]));
    return listCommand(global, parsed->value("format", "table"), parsed->has("quiet"));
  }
  if (command == "features") {
    auto parsed = parseFlags(args, from, FlagSpec{}, command, false);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    return featuresCommand();
  }
  if (command == "spec") {
    auto parsed =
        parseFlags(args, from, FlagSpec{{"rootless"}, {"bundle"}, {{"b", "bundle"}}}, command, false);
    if (!parsed) return fail(parsed.error());
    if (parsed->has("help")) return help();
    if (parsed->has("rootless"))
      return fail(invalidField("rootless",
                               "spec --rootless is not supported: corral-runtime runs as root (add a user "
                               "namespace with uidMappings/gidMappings to the spec instead)"));
    return specCommand(parsed->value("bundle"));
  }
  return fail(invalidField("command", "unknown command \"{}\" (see corral-runtime --help)", command));
}

int runtimeMain(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  FlagSpec globalSpec{
      {"debug", "systemd-cgroup", "version", "rootless"}, {"root", "log", "log-format"}, {{"v", "version"}}};
  size_t next = 1;
  Logger logger;
  auto globals = parseFlags(args, 1, globalSpec, "corral-runtime", true, &next);
  if (!globals) {
    logger.error(globals.error().message());
    return 1;
  }
  logger.file = globals->value("log");
  std::string format = globals->value("log-format", "text");
  if (format != "text" && format != "json") {
    logger.error(fmt::format("--log-format \"{}\": give text or json", format));
    return 1;
  }
  logger.json = format == "json";
  logger.debug = globals->has("debug");
  log::setLevel(logger.debug ? log::Level::Debug : log::Level::Warn);
  if (globals->has("version")) {
    fmt::print("corral-runtime version {}\nspec: 1.1.0\n", CORRAL_VERSION);
    return 0;
  }
  if (globals->has("help") || globals->positional.empty()) {
    fmt::print("{}", kUsage);
    return globals->has("help") ? 0 : 1;
  }
  if (globals->has("systemd-cgroup")) {
    const bool systemd = ::access("/run/systemd/system", F_OK) == 0;
    logger.error(systemd
                     ? "--systemd-cgroup is not supported: corral-runtime manages cgroups through cgroupfs "
                       "(give a cgroupfs linux.cgroupsPath instead)"
                     : "--systemd-cgroup: systemd is not running on this host (/run/systemd/system is "
                       "missing); use cgroupfs (drop the flag)");
    return 1;
  }
  if (globals->has("rootless")) {
    logger.error(
        "--rootless is not supported: corral-runtime runs as root (a container may still have a user "
        "namespace: linux.uidMappings/gidMappings)");
    return 1;
  }
  GlobalOptions global;
  if (globals->values.count("root")) global.root = globals->value("root");
  const std::string command = args[next];
  std::string joined;
  for (size_t i = 1; i < args.size(); ++i) joined += (i > 1 ? " " : "") + args[i];
  logger.debugLine(fmt::format("corral-runtime {}", joined));
  auto code = dispatch(global, command, args, next + 1);
  if (!code) {
    logger.error(code.error().message());
    return 1;
  }
  return *code;
}

}  // namespace
}  // namespace corral::runtime

int main(int argc, char** argv) {
  return corral::runtime::runtimeMain(argc, argv);
}
