// `corral ps`, `logs`, `exec`, `stop`, `start`, `rm` and `inspect`: looking after running instances. A
// container shares the host's kernel; treat it as cattle, not a pet: when one misbehaves, rm it and run
// another.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <iostream>
#include <thread>

#include "cli/cli.h"

namespace corral::cli {
namespace {

constexpr auto kLogPollInterval = std::chrono::milliseconds(50);
// exec runs to completion on the daemon's side; a long command must not trip the client's deadline.
constexpr auto kExecTimeout = std::chrono::hours(24);

std::string signalName(int64_t signal) {
  const char* abbreviation = signal > 0 && signal < 128 ? ::sigabbrev_np(static_cast<int>(signal)) : nullptr;
  return abbreviation ? fmt::format("SIG{}", abbreviation) : fmt::format("signal {}", signal);
}

// "3s", "5m", "2h", "4d" since a unix time.
std::string displayAge(const json& unixSeconds) {
  if (!unixSeconds.is_number()) return "-";
  double age = static_cast<double>(std::time(nullptr)) - unixSeconds.get<double>();
  if (age < 0) age = 0;
  auto seconds = static_cast<int64_t>(age);
  if (seconds < 60) return fmt::format("{}s", seconds);
  if (seconds < 3600) return fmt::format("{}m", seconds / 60);
  if (seconds < 86400) return fmt::format("{}h", seconds / 3600);
  return fmt::format("{}d", seconds / 86400);
}

void writeAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t written = ::write(fd, text.data(), text.size());
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return;  // a closed pipe: nobody is reading any more
    text.remove_prefix(static_cast<size_t>(written));
  }
}

std::string oneDecimal(const json& value) {
  return value.is_number() ? fmt::format("{:.1f}", value.get<double>()) : "?";
}

// "12.3 ms total = clone 1.0 + cgroup 7.4 + rootfs 2.8 + network 0.0 + exec 0.6", or a VM's
// "3412.0 ms total = domain 312.4 + firmware 401.2 + kernel 1830.0 + userspace 868.4 (guest uptime 2698 ms)"
std::string bootSplit(const json& boot) {
  if (!boot.is_object() || !field(boot, "total_ms").is_number()) return "-";
  if (field(boot, "restored") == true) {
    return fmt::format("{} total = restore {} + agent {} + clock {} (resumed from its saved state)",
                       displayMilliseconds(field(boot, "total_ms")), oneDecimal(field(boot, "domain_ms")),
                       oneDecimal(field(boot, "agent_ms")), oneDecimal(field(boot, "clock_ms")));
  }
  if (boot.contains("domain_ms")) {
    return fmt::format(
        "{} total = domain {} + firmware {} + kernel {} + userspace {} (guest uptime {} ms at ready)",
        displayMilliseconds(field(boot, "total_ms")), oneDecimal(field(boot, "domain_ms")),
        oneDecimal(field(boot, "firmware_ms")), oneDecimal(field(boot, "kernel_ms")),
        oneDecimal(field(boot, "userspace_ms")), oneDecimal(field(boot, "guest_uptime_ms")));
  }
  return fmt::format("{} total = clone {} + cgroup {} + rootfs {} + network {} + exec {}",
                     displayMilliseconds(field(boot, "total_ms")), oneDecimal(field(boot, "clone_ms")),
                     oneDecimal(field(boot, "cgroup_ms")), oneDecimal(field(boot, "rootfs_ms")),
                     oneDecimal(field(boot, "network_ms")), oneDecimal(field(boot, "exec_ms")));
}

std::string orNone(const json& value, std::string_view none) {
  std::string text = displayText(value);
  return text.empty() || text == "-" ? std::string(none) : text;
}

// argv as a shell would show it: words joined by spaces, quoted when they hold a blank.
std::string displayCommand(const json& command) {
  if (!command.is_array() || command.empty()) return "/bin/sh (the image's default)";
  std::string line;
  for (const json& word : command) {
    std::string text = displayText(word);
    if (text.empty() || text.find_first_of(" \t'\"") != std::string::npos) text = "'" + text + "'";
    line += (line.empty() ? "" : " ") + text;
  }
  return line;
}

// "yes: root inside is host uid 1879048192 (host ids 1879048192-1879113727)", or "no".
std::string userNamespaceText(const json& wanted, const json& range) {
  if (wanted != true) return "no";
  if (!range.is_object() || !range.value("uid", json()).is_number_unsigned() ||
      !range.value("count", json()).is_number_unsigned())
    return "yes (no host id range yet)";
  uint64_t start = range["uid"].get<uint64_t>();
  return fmt::format("yes: root inside is host uid {} (host ids {}-{})", start, start,
                     start + range["count"].get<uint64_t>() - 1);
}

void printVm(const json& instance) {
  const json& spec = field(instance, "spec");
  const json& vm = field(instance, "vm");
  const json& boot = field(instance, "boot");
  std::string accelerator = displayText(field(vm, "accelerator"));
  if (field(vm, "accelerator_reason").is_string())
    accelerator += " (" + displayText(field(vm, "accelerator_reason")) + ")";
  std::vector<std::pair<std::string, std::string>> lines = {
      {"name", displayText(field(instance, "name"))},
      {"kind", "vm (its own kernel, on a hypervisor)"},
      {"state", displayInstanceState(instance)},
      {"image", displayText(field(instance, "image"))},
      {"command", field(spec, "command").is_array() && !field(spec, "command").empty()
                      ? displayCommand(field(spec, "command"))
                      : "the image's (Entrypoint + Cmd of a store image; none in a built-in one)"},
      {"user", orNone(field(spec, "user"), "the image's")},
      {"env", displayText(field(spec, "env"))},
      {"hostname", orNone(field(spec, "hostname"), displayText(field(instance, "name")))},
      {"domain", displayText(field(vm, "domain"))},
      {"accelerator", accelerator},
      {"qemu pid", displayText(field(instance, "pid"))},
      {"ip", displayText(field(instance, "ip"))},
      {"boot", bootSplit(boot)},
      {"guest kernel", boot.is_object() ? orNone(field(boot, "guest_kernel"), "-") : "-"},
      {"memory", field(vm, "memory_bytes").is_number()
                     ? fmt::format("{} MiB", field(vm, "memory_bytes").get<uint64_t>() >> 20)
                     : "-"},
      {"vcpus", displayText(field(vm, "vcpus"))},
      {"kernel",
       field(vm, "kernel_source").is_string()
           ? fmt::format("{} ({})", displayText(field(vm, "kernel_source")), displayText(field(vm, "kernel")))
           : displayText(field(vm, "kernel"))},
      {"machine", displayText(field(vm, "machine"))},
      {"initrd", displayText(field(vm, "initrd"))},
      {"remove on exit", displayText(field(spec, "remove_on_exit"))},
      {"created", displayTime(field(instance, "created_at"))},
      {"started", displayTime(field(instance, "started_at"))},
      {"finished", displayTime(field(instance, "finished_at"))},
      {"exit reason", displayText(field(instance, "exit_reason"))},
      {"exit note", displayText(field(instance, "exit_note"))},
      {"saved state", orNone(field(vm, "saved_state"), "-")},
      {"agent socket", displayText(field(vm, "agent_socket"))},
      {"console log", displayText(field(instance, "log_path"))},
  };
  printFields(lines);
}

void printInstance(const json& instance) {
  if (field(instance, "kind") == "vm") return printVm(instance);
  const json& spec = field(instance, "spec");
  std::vector<std::pair<std::string, std::string>> lines = {
      {"name", displayText(field(instance, "name"))},
      {"kind", displayText(field(instance, "kind")) + " (shares the host's kernel)"},
      {"state", displayInstanceState(instance)},
      {"image", displayText(field(instance, "image"))},
      {"command", displayCommand(field(spec, "command"))},
      {"hostname", orNone(field(spec, "hostname"), displayText(field(instance, "name")))},
      {"pid", displayText(field(instance, "pid"))},
      {"ip", displayText(field(instance, "ip"))},
      {"boot", bootSplit(field(instance, "boot"))},
      {"memory limit", orNone(field(spec, "memory"), "none")},
      {"cpus limit", orNone(field(spec, "cpus"), "none")},
      {"pids limit", orNone(field(spec, "pids"), "none")},
      {"env", displayText(field(spec, "env"))},
      {"cap add", displayText(field(spec, "cap_add"))},
      {"cap drop", displayText(field(spec, "cap_drop"))},
      {"seccomp", displayText(field(spec, "seccomp"))},
      {"user", orNone(field(spec, "user"), "the image's")},
      {"user namespace",
       userNamespaceText(field(spec, "user_namespace"), field(instance, "user_namespace_range"))},
      {"init", field(spec, "init") == true ? "yes (corral-reaper is PID 1, the command its child)" : "no"},
      {"remove on exit", displayText(field(spec, "remove_on_exit"))},
      {"created", displayTime(field(instance, "created_at"))},
      {"started", displayTime(field(instance, "started_at"))},
      {"finished", displayTime(field(instance, "finished_at"))},
      {"exit code", displayText(field(instance, "exit_code"))},
      {"exit signal", field(instance, "exit_signal").is_number_integer()
                          ? signalName(field(instance, "exit_signal").get<int64_t>())
                          : "-"},
      {"exit reason", displayText(field(instance, "exit_reason"))},
      {"exit note", displayText(field(instance, "exit_note"))},
      {"cgroup", displayText(field(instance, "cgroup"))},
      {"bundle", displayText(field(instance, "bundle"))},
      {"log", displayText(field(instance, "log_path"))},
  };
  printFields(lines);
}

Argument instanceArgument() {
  return {"NAME", "the instance's name"};
}

}  // namespace

std::string displayInstanceState(const json& instance) {
  std::string state = displayText(field(instance, "state"));
  if (state != "stopped") return state;  // "created", "running"
  const json& reason = field(instance, "exit_reason");
  const json& signal = field(instance, "exit_signal");
  const json& code = field(instance, "exit_code");
  std::string how;
  if (signal.is_number_integer())
    how = fmt::format(" ({})", signalName(signal.get<int64_t>()));
  else if (code.is_number_integer())
    how = fmt::format(" ({})", code.get<int64_t>());
  if (reason == "oom-killed") return "oom-killed";
  if (reason == "lost") return "lost";  // it ended while corrald was not watching
  if (reason == "stopped" && field(instance, "saved") == true) return "stopped (saved)";
  if (reason == "stopped") return "stopped" + how;
  if (reason.is_string() && field(instance, "kind") == "vm")
    return displayText(reason);  // shutdown, crashed, ...
  if (signal.is_number_integer()) return "killed" + how;
  if (code.is_number_integer()) return "exited" + how;
  return state;
}

std::string displayMilliseconds(const json& milliseconds) {
  if (!milliseconds.is_number()) return "-";
  return fmt::format("{:.1f} ms", milliseconds.get<double>());
}

int instanceExitCode(const json& instance) {
  const json& signal =
      instance.contains("exit_signal") ? field(instance, "exit_signal") : field(instance, "signal");
  if (signal.is_number_integer()) return 128 + static_cast<int>(signal.get<int64_t>());
  const json& code = field(instance, "exit_code");
  if (code.is_number_integer()) return static_cast<int>(code.get<int64_t>());
  return 1;  // no code known: the command cannot be said to have succeeded
}

void printExecOutput(const json& result) {
  const json& out = field(result, "stdout");
  const json& err = field(result, "stderr");
  if (out.is_string()) writeAll(STDOUT_FILENO, out.get_ref<const std::string&>());
  if (err.is_string()) writeAll(STDERR_FILENO, err.get_ref<const std::string&>());
  if (field(result, "truncated") == true) {
    std::cerr << "corral: (output cut: corrald keeps at most 1 MiB of each stream)\n";
  }
  if (field(result, "timed_out") == true) {
    std::cerr << "corral: the command ran too long and corrald killed it\n";
  }
}

std::string displayReady(const json& instance) {
  const json& boot = field(instance, "boot");
  if (field(instance, "kind") != "vm") {
    return fmt::format("running (ready in {})", displayMilliseconds(field(boot, "total_ms")));
  }
  return fmt::format("running: guest {} in {} ({}, guest kernel {})",
                     field(boot, "restored") == true ? "resumed from its saved state" : "ready",
                     displayMilliseconds(field(boot, "total_ms")), displayText(field(boot, "accelerator")),
                     displayText(field(boot, "guest_kernel")));
}

Result<json> waitUntilReady(const api::Client& client, json instance,
                            const volatile sig_atomic_t* interrupted) {
  const std::string name = displayText(field(instance, "name"));
  const bool tty = ::isatty(STDERR_FILENO) != 0;
  auto began = std::chrono::steady_clock::now();
  int64_t offset = 0;
  std::string lastLine;
  bool drew = false;
  while (field(instance, "state") == "starting" && !(interrupted && *interrupted)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (tty) {
      // The console's newest line says how far the guest has come.
      if (Result<json> logs = client.call(api::GetInstanceLogs{name, offset}); logs) {
        offset =
            field(*logs, "next_offset").is_number() ? field(*logs, "next_offset").get<int64_t>() : offset;
        std::string data = displayText(field(*logs, "data"));
        std::erase(data, '\r');
        while (!data.empty() && data.back() == '\n') data.pop_back();
        if (!data.empty())
          lastLine = data.substr(data.rfind('\n') == std::string::npos ? 0 : data.rfind('\n') + 1);
      }
      double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count();
      std::string line =
          fmt::format("starting {} [{}] {:.1f} s  {}", name,
                      displayText(field(field(instance, "boot"), "accelerator")), seconds, lastLine);
      if (line.size() > 100) line.resize(100);
      std::cerr << "\r\033[K" << line << std::flush;
      drew = true;
    }
    Result<json> now = client.call(api::GetInstance{name});
    if (!now) {
      if (drew) std::cerr << "\r\033[K" << std::flush;
      return now;
    }
    instance = std::move(*now);
  }
  if (drew) std::cerr << "\r\033[K" << std::flush;
  if (field(instance, "state") == "running") return instance;
  if (interrupted && *interrupted) return instance;
  return fail(Error(ErrorKind::Unavailable,
                    fmt::format("{} did not become ready: {}\n{}", name, displayInstanceState(instance),
                                displayText(field(instance, "exit_note")))));
}

Result<json> streamLogs(const api::Client& client, const std::string& name, bool follow,
                        const volatile sig_atomic_t* interrupted) {
  api::GetInstanceLogs request{name, 0};
  json last;
  while (!(interrupted && *interrupted)) {
    Result<json> logs = client.call(request);
    if (!logs) return logs;
    last = *logs;
    const json& data = field(last, "data");
    bool gotData = data.is_string() && !data.get_ref<const std::string&>().empty();
    if (gotData) {
      writeAll(STDOUT_FILENO, data.get_ref<const std::string&>());
      const json& next = field(last, "next_offset");
      if (next.is_number_integer()) {
        request.offset = next.get<int64_t>();
      } else {
        request.offset += static_cast<int64_t>(data.get_ref<const std::string&>().size());
      }
      continue;  // there may be more already
    }
    // Caught up; with -f, done only once the instance has ended and its last output is in (eof).
    if (!follow) break;
    if (field(last, "state") != "running" && field(last, "eof") != false) break;
    std::this_thread::sleep_for(kLogPollInterval);
  }
  return last;
}

int64_t parseCountFlag(std::string_view flag, std::string_view text) {
  int64_t value = parseIntegerFlag(flag, text);
  if (value < 0) throw UsageError(fmt::format("{}: \"{}\" must not be negative", flag, text));
  return value;
}

Command psCommand() {
  return leaf(
      "ps", "list instances, running and stopped (a container shares the host's kernel)", {}, "", nullptr,
      [](const Invocation& invocation) {
        // The summary unless --json asks for everything: a few fields of each, cheap at hundreds.
        return respond(invocation, api::ListInstances{!invocation.global.json}, [](const json& response) {
          const json& items = field(response, "instances");
          // A cluster host lists every host's instances, each with its host.
          bool clustered = false;
          for (const json& instance : items.is_array() ? items : json::array())
            clustered = clustered || instance.contains("host");
          std::vector<std::string> columns{"name", "kind", "state", "ip", "image", "boot", "age"};
          if (clustered) columns.insert(columns.begin() + 1, "host");
          Table table(columns);
          for (const json& instance : items.is_array() ? items : json::array()) {
            std::vector<std::string> row{displayText(field(instance, "name")),
                                         displayText(field(instance, "kind")),
                                         displayInstanceState(instance),
                                         displayText(field(instance, "ip")),
                                         displayText(field(instance, "image")),
                                         displayMilliseconds(field(field(instance, "boot"), "total_ms")),
                                         displayAge(field(instance, "created_at"))};
            if (clustered) row.insert(row.begin() + 1, displayText(field(instance, "host")));
            table.add(row);
          }
          printList(table, "run one with: corral run --image busybox --name web-1 -d -- sleep 1000");
        });
      });
}

Command logsCommand() {
  return leaf(
      "logs", "print an instance's output (stdout and stderr, as its command wrote them)",
      {instanceArgument()}, "[-f]",
      [](po::options_description& options) {
        options.add_options()("follow,f", "keep printing new output until the instance stops");
      },
      [](const Invocation& invocation) {
        api::Client client(invocation.global.socketPath);
        static volatile sig_atomic_t interrupted = 0;
        std::signal(SIGINT, [](int) { interrupted = 1; });
        Result<json> logs =
            streamLogs(client, invocation.arguments[0], invocation.flag("follow"), &interrupted);
        if (!logs) {
          printError(logs.error());
          return 1;
        }
        return interrupted ? 130 : 0;
      });
}

Command execCommand() {
  Command command = leaf(
      "exec",
      "run one more command inside a running instance (same namespaces, cgroup and limits); with -i its\n"
      "stdin is ours, with -t it gets a terminal (exec -it NAME -- sh: a shell; its exit code is ours)",
      {instanceArgument()}, "[-i] [-t] [--env K=V]... -- CMD [ARGS...]",
      [](po::options_description& options) {
        options.add_options()("env,e", po::value<std::vector<std::string>>()->value_name("K=V"),
                              "an environment variable for the command (repeatable)")             //
            ("interactive,i", "keep stdin open: what we read reaches the command (its EOF too)")  //
            ("tty,t",
             "a terminal for the command (a pty of the instance's own devpts); ours goes raw while it runs, "
             "the window size follows ours; Ctrl-C and Ctrl-D reach the command");
      },
      [](const Invocation& invocation) {
        std::vector<std::string> env;
        if (invocation.options.count("env")) env = invocation.options["env"].as<std::vector<std::string>>();
        if (invocation.flag("interactive") || invocation.flag("tty")) {
          if (invocation.global.json) throw UsageError("--json does not go with -i or -t");
          api::TerminalTarget target;
          target.kind = api::TerminalTarget::Kind::exec;
          target.name = invocation.arguments[0];
          target.request.command = invocation.command;
          target.request.env = env;
          target.request.tty = invocation.flag("tty");
          target.request.stdinOpen = invocation.flag("interactive");
          return runTerminal(invocation.global.socketPath, std::move(target));
        }
        api::ExecInstance request;
        request.name = invocation.arguments[0];
        request.command = invocation.command;
        request.env = env;
        api::Client client(invocation.global.socketPath, kExecTimeout);
        Result<json> result = client.call(request);
        if (!result) {
          printError(result.error());
          return 1;
        }
        if (invocation.global.json) {
          std::cout << result->dump(2) << "\n";
        } else {
          printExecOutput(*result);
        }
        return instanceExitCode(*result);
      });
  command.takesCommand = true;
  return command;
}

Command consoleCommand() {
  return leaf(
      "console",
      "attach to an instance's console: a VM's serial line, or the terminal (-t) or stdin (-i) of a\n"
      "container's first process. Ctrl-] detaches and leaves it running; one client at a time. Output while\n"
      "nobody is attached still goes to corral logs (and its last 16 KiB is shown at the next attach).",
      {instanceArgument()}, "", [](po::options_description&) {},
      [](const Invocation& invocation) {
        if (invocation.global.json) throw UsageError("--json does not go with console");
        api::TerminalTarget target;
        target.kind = api::TerminalTarget::Kind::console;
        target.name = invocation.arguments[0];
        target.request.tty = true;
        target.request.stdinOpen = true;
        return runTerminal(invocation.global.socketPath, std::move(target));
      });
}

// Runs `act` for each NAME of `corral stop|start|rm NAME...` in order, as docker does: a failure is
// reported (the daemon's message names the instance) and the others still go ahead. With --json, the
// answer of one name is printed as it is, of several as an array of those that succeeded. Exit status 1
// when any name failed.
int forEachInstance(const Invocation& invocation, const std::function<Result<json>(const std::string&)>& act,
                    const std::function<void(const std::string&, const json&)>& printHuman) {
  bool failed = false;
  json answers = json::array();
  for (const std::string& name : invocation.arguments) {
    Result<json> answer = act(name);
    if (!answer) {
      printError(answer.error());
      failed = true;
      continue;
    }
    if (!invocation.global.json) {
      printHuman(name, *answer);
    } else if (!answer->is_null()) {
      answers.push_back(std::move(*answer));
    }
  }
  if (invocation.global.json && !answers.empty())
    std::cout << (invocation.arguments.size() == 1 ? answers.front() : answers).dump(2) << "\n";
  return failed ? 1 : 0;
}

Command stopCommand() {
  Command command = leaf(
      "stop",
      "stop instances: SIGTERM, then SIGKILL after the grace period (their files are kept); each NAME in "
      "turn. --save (VMs): save the VM's state and memory instead; `corral start` resumes it where it was",
      {instanceArgument()}, "[-t GRACE] [--save]",
      [](po::options_description& options) {
        options.add_options()("time,t", po::value<std::string>()->value_name("GRACE"),
                              "seconds between SIGTERM and SIGKILL (default 10)")(
            "save", "VMs: save state and memory (corral start resumes it, the guest's clock set again)");
      },
      [](const Invocation& invocation) {
        api::StopInstance request;
        if (auto grace = invocation.value("time")) request.graceSeconds = parseCountFlag("-t/--time", *grace);
        request.save = invocation.flag("save");
        api::Client client(invocation.global.socketPath,
                           std::chrono::seconds(request.graceSeconds) + std::chrono::seconds(30));
        return forEachInstance(
            invocation,
            [&](const std::string& name) {
              request.name = name;
              return client.call(request);
            },
            [](const std::string& name, const json& instance) {
              fmt::print("stopped {}: {}\n", name, displayInstanceState(instance));
            });
      });
  command.lastArgumentRepeats = true;
  return command;
}

Command startCommand() {
  Command command =
      leaf("start", "start stopped instances again (same writable layer, fresh process); each NAME in turn",
           {instanceArgument()}, "", nullptr, [](const Invocation& invocation) {
             api::Client client(invocation.global.socketPath);
             return forEachInstance(
                 invocation,
                 [&](const std::string& name) -> Result<json> {
                   Result<json> instance = client.call(api::StartInstance{name});
                   if (!instance) return instance;
                   return waitUntilReady(client, std::move(*instance), nullptr);
                 },
                 [](const std::string&, const json& instance) {
                   fmt::print("{} {}\n", displayText(field(instance, "name")), displayReady(instance));
                 });
           });
  command.lastArgumentRepeats = true;
  return command;
}

// `corral rm a b c`: one request for all (POST /v1/instances/remove), so corrald kills them in parallel and
// changes each VPC's network once; each name's failure is reported (the daemon's message names it) and
// does not hold up the others. Prints as forEachInstance does.
int removeMany(const Invocation& invocation) {
  const std::vector<std::string>& names = invocation.arguments;
  // Each instance may take its kill's settle time, though most are killed in parallel.
  api::Client client(invocation.global.socketPath,
                     std::chrono::seconds(30) + std::chrono::seconds(static_cast<int64_t>(names.size())));
  Result<json> answer = client.call(api::RemoveInstances{names, invocation.flag("force")});
  if (!answer) {
    printError(answer.error());
    return 1;
  }
  bool failed = false;
  json removed = json::array();
  const json& results = field(*answer, "results");
  for (const json& result : results.is_array() ? results : json::array()) {
    if (result.contains("error")) {
      printError(api::errorFromJson(json{{"error", result["error"]}}, 500));
      failed = true;
    } else if (invocation.global.json) {
      removed.push_back(json{{"deleted", field(result, "deleted")}});
    } else {
      fmt::print("removed {}\n", displayText(field(result, "name")));
    }
  }
  if (invocation.global.json && !removed.empty()) std::cout << removed.dump(2) << "\n";
  return failed ? 1 : 0;
}

Command removeInstanceCommand() {
  Command command = leaf(
      "rm",
      "remove instances and their writable layers (cattle, not pets: run a new one instead of fixing it); "
      "several NAMEs go in one request, the running ones (with -f) killed in parallel",
      {instanceArgument()}, "[-f]",
      [](po::options_description& options) {
        options.add_options()("force,f", "stop each first if it is running");
      },
      [](const Invocation& invocation) {
        if (invocation.arguments.size() > 1) return removeMany(invocation);
        api::Client client(invocation.global.socketPath);
        return forEachInstance(
            invocation,
            [&](const std::string& name) {
              return client.call(api::RemoveInstance{name, invocation.flag("force")});
            },
            [](const std::string& name, const json&) { fmt::print("removed {}\n", name); });
      });
  command.lastArgumentRepeats = true;
  return command;
}

Command inspectCommand() {
  return leaf(
      "inspect", "everything about one instance: state, boot time split, limits, capabilities, exit",
      {instanceArgument()}, "[--show-env]",
      [](po::options_description& options) {
        options.add_options()("show-env", "show the env values (otherwise each reads KEY=***)");
      },
      [](const Invocation& invocation) {
        return respond(invocation, api::GetInstance{invocation.arguments[0], invocation.flag("show-env")},
                       printInstance);
      });
}

}  // namespace corral::cli
