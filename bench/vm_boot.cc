// bench_vm_boot: VM boot time, corral vs raw QEMU, alternating run by run so both see the same host load.
// corral: `corral run --vm -d`, then boot.total_ms from `corral --json inspect` (the daemon's own
// measurement, request received → guest agent ready). raw: qemu-system-x86_64 with the same kernel,
// initramfs, machine, memory, accelerator and TCG translation cache, timed from spawn to the agent's
// "ready" through vmm::AgentClient. Prints medians, the ratio corral/raw and the RSS of an idle QEMU of
// each 3 s after ready (corral's from `inspect`'s usage, raw's from /proc). With --restore, also a warm start of each:
// corral: `corral stop --save` then `corral start` of the same VM (boot.total_ms of the restore, request →
// agent ready with the guest's clock set); raw: the booted QEMU migrated to a file (HMP `migrate
// "exec:cat > FILE"`), then a new QEMU with `-incoming "exec:cat FILE"` timed from spawn to the agent's
// "ready" and its set_clock answer. With --warm, also a warm clone in each run: corral's `run --vm -d --warm`
// (boot.total_ms: request → the clone's identity set; the run that made the shared snapshot is left out of
// the median) and raw QEMU restoring one state migrated once from a booted VM, to its agent's answer to
// set_identity. Run by bench/vm-boot.
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "vmm/agent.h"
#include "vmm/agent_protocol.h"
#include "vmm/boot_files.h"
#include "vmm/domain_xml.h"

namespace {

using Clock = std::chrono::steady_clock;
using nlohmann::json;

struct Options {
  std::string kernel;
  std::string initrd;
  std::string corral;        // the CLI; empty: raw side only
  std::string corralSocket;  // corrald's socket, when not the default
  std::string machine = "pc";
  std::string accel = "tcg";  // the accelerator corrald chose (bench/vm-boot reads it from corral info)
  std::string
      tscKhz;  // the host's TSC rate for the guest's command line (corrald gives it to corral's kernel
               // under TCG; Debian's needs it on microvm): TCG cannot calibrate the TSC reliably
  std::string kernelName;  // what corral is asked to boot: "corral", "debian" or empty (the --kernel file)
  int tbSizeMib = 0;  // raw QEMU's TCG translation cache (corrald's size, daemon/vm_driver.cc); 0: QEMU's
  std::string workDir = "/tmp";
  int runs = 10;
  int memoryMib = 128;
  bool restore = false;                         // also time a warm start (restore from a saved state) of each
  bool warm = false;  // also time a warm clone: corral's `run --warm`, raw QEMU restoring one shared state
  std::string namePrefix = "corral-bench-vm-";  // corral's instance names: PREFIX + run
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(
      stderr,
      "bench_vm_boot: %s\nusage: bench_vm_boot --kernel PATH --initrd PATH [--runs N] [--machine pc|microvm]"
      " [--memory-mib N] [--tb-size-mib N] [--tsc-khz N] [--corral CLI [--socket PATH] [--corral-kernel "
      "corral|debian] [--name-prefix P]] [--work-dir DIR] [--restore] [--warm]\n",
      why);
  std::exit(2);
}

Options parseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--restore") {
      options.restore = true;
      continue;
    }
    if (flag == "--warm") {
      options.warm = true;
      continue;
    }
    if (i + 1 >= argc) usage(("missing value for " + flag).c_str());
    const std::string value = argv[++i];
    if (flag == "--kernel")
      options.kernel = value;
    else if (flag == "--initrd")
      options.initrd = value;
    else if (flag == "--corral")
      options.corral = value;
    else if (flag == "--socket")
      options.corralSocket = value;
    else if (flag == "--machine")
      options.machine = value;
    else if (flag == "--accel")
      options.accel = value;
    else if (flag == "--tsc-khz")
      options.tscKhz = value;
    else if (flag == "--corral-kernel")
      options.kernelName = value;
    else if (flag == "--tb-size-mib")
      options.tbSizeMib = std::atoi(value.c_str());
    else if (flag == "--name-prefix")
      options.namePrefix = value;
    else if (flag == "--work-dir")
      options.workDir = value;
    else if (flag == "--runs")
      options.runs = std::atoi(value.c_str());
    else if (flag == "--memory-mib")
      options.memoryMib = std::atoi(value.c_str());
    else
      usage(("unknown flag " + flag).c_str());
  }
  if (options.kernel.empty() || options.initrd.empty()) usage("--kernel and --initrd are required");
  if (options.runs < 1) usage("--runs must be at least 1");
  if (options.memoryMib < 64) usage("--memory-mib must be at least 64");
  if (options.machine != "pc" && options.machine != "microvm") usage("--machine is pc or microvm");
  if (options.accel != "tcg" && options.accel != "kvm" && options.accel != "auto")
    usage("--accel is tcg, kvm or auto (what corrald chose; needs --corral)");
  if (options.accel == "auto" && options.corral.empty()) usage("--accel auto needs --corral");
  return options;
}

// Spawns argv with stdin/stdout from /dev/null (or stdout into `capture` when given); returns the pid.
pid_t spawn(const std::vector<std::string>& args, int captureFd = -1) {
  std::vector<char*> argv;
  for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_RDWR);
    ::dup2(devnull, 0);
    ::dup2(captureFd >= 0 ? captureFd : devnull, 1);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  return pid;
}

// Waits for pid up to `timeout`, then SIGKILLs it; returns its wait status.
int waitFor(pid_t pid, std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return status;
}

// Runs a command to completion and returns its stdout; nullopt when it fails.
std::optional<std::string> runCapturing(const std::vector<std::string>& args,
                                        std::chrono::milliseconds timeout) {
  int pipeFds[2];
  if (::pipe2(pipeFds, O_CLOEXEC) != 0) return std::nullopt;
  const pid_t pid = spawn(args, pipeFds[1]);
  ::close(pipeFds[1]);
  std::string out;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(pipeFds[0], buffer, sizeof(buffer))) > 0) out.append(buffer, static_cast<size_t>(n));
  ::close(pipeFds[0]);
  const int status = waitFor(pid, timeout);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return std::nullopt;
  return out;
}

long rssKib(pid_t pid) {
  FILE* status = std::fopen(("/proc/" + std::to_string(pid) + "/status").c_str(), "r");
  if (status == nullptr) return -1;
  char line[256];
  long kib = -1;
  while (std::fgets(line, sizeof(line), status) != nullptr) {
    if (std::sscanf(line, "VmRSS: %ld kB", &kib) == 1) break;
  }
  std::fclose(status);
  return kib;
}

// How long after the agent's ready the idle RSS is read: the guest's free page reporting (corral's kernel
// with corrald's balloon) gives memory back 2 s after it was freed (vmm/README.md, "Free page reporting").
constexpr auto kIdleAfterReady = std::chrono::milliseconds(3000);

struct RawRun {
  double readyMs = 0;
  long rssKib = -1;
  std::optional<double> restoreMs;  // --restore: a new QEMU from the migrated state, spawn → ready + clock
};

// One HMP command over QEMU's monitor socket; returns what it printed up to the next "(qemu) " prompt.
std::optional<std::string> hmp(int fd, const std::string& command) {
  const std::string line = command + "\n";
  if (::write(fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) return std::nullopt;
  std::string out;
  char buffer[4096];
  while (!out.ends_with("(qemu) ")) {
    pollfd in{fd, POLLIN, 0};
    if (::poll(&in, 1, 30'000) <= 0) return std::nullopt;
    const ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n <= 0) return std::nullopt;
    out.append(buffer, static_cast<size_t>(n));
  }
  return out;
}

int connectMonitor(const std::string& path) {
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::snprintf(address.sun_path, sizeof(address.sun_path), "%s", path.c_str());
    if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0) return fd;
    ::close(fd);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return -1;
}

// The running raw VM's state and memory into `file` (QEMU's migration stream, as libvirt's save writes
// after its header); the source QEMU is left paused.
bool migrateToFile(const std::string& monitor, const std::string& file) {
  const int fd = connectMonitor(monitor);
  if (fd < 0) return false;
  bool done = false;
  if (hmp(fd, "") && hmp(fd, "migrate \"exec:cat > " + file + "\"")) {
    for (int poll = 0; poll < 600 && !done; ++poll) {
      const auto status = hmp(fd, "info migrate");
      if (!status || status->find("Migration status: failed") != std::string::npos) break;
      done = status->find("Migration status: completed") != std::string::npos;
      if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ::close(fd);
  return done;
}

// raw QEMU's command line for one VM: what corrald's domain XML gives libvirt, with the agent's socket
// and the console file as named.
std::vector<std::string> rawQemuArgs(const Options& options, const std::string& name,
                                     const std::string& socket, const std::string& console) {
  // The same kernel command line and console-to-file as corral's domains, so both do the same work.
  std::string append = corral::vmm::kernelCommandLine(name, name, std::nullopt, std::nullopt);
  std::vector<std::string> args = {"qemu-system-x86_64",
                                   "-nodefaults",
                                   "-no-user-config",
                                   "-accel",
                                   options.accel == "tcg" && options.tbSizeMib > 0
                                       ? "tcg,tb-size=" + std::to_string(options.tbSizeMib)
                                       : options.accel,
                                   "-m",
                                   std::to_string(options.memoryMib),
                                   "-smp",
                                   "1",
                                   "-display",
                                   "none",
                                   "-no-reboot",
                                   "-kernel",
                                   options.kernel,
                                   "-initrd",
                                   options.initrd,
                                   "-serial",
                                   "file:" + console,
                                   "-chardev",
                                   "socket,id=agent,path=" + socket + ",server=on,wait=off"};
  // corral's kernel gets what corrald gives it (vmm/domain_xml.h corralKernelTuning), one vCPU as here.
  if (options.kernelName == "corral") {
    std::optional<uint64_t> khz;
    if (!options.tscKhz.empty()) khz = std::stoull(options.tscKhz);
    append += corral::vmm::corralKernelTuning(
        options.accel == "kvm" ? corral::vmm::Accelerator::Kvm : corral::vmm::Accelerator::Tcg, khz, 1);
  } else if (!options.tscKhz.empty()) {
    append += " tsc=reliable tsc_early_khz=" + options.tscKhz;
  }
  if (options.machine == "microvm") {
    // As libvirt starts it: no ACPI (QEMU then lists the virtio-mmio devices on the kernel command line).
    args.insert(args.end(),
                {"-machine", "microvm,acpi=off", "-device",
                 "virtio-serial-device,max_ports=" + std::to_string(corral::vmm::kAgentSerialPorts)});
  } else {
    args.insert(args.end(),
                {"-machine", "pc", "-device",
                 "virtio-serial-pci,max_ports=" + std::to_string(corral::vmm::kAgentSerialPorts)});
  }
  args.insert(args.end(),
              {"-device", std::string("virtserialport,chardev=agent,name=") + corral::vmm::kAgentChannel,
               "-append", append});
  // corrald gives corral's kernel a balloon with free page reporting (DomainConfig::freePageReporting).
  if (options.kernelName == "corral") {
    args.insert(args.end(),
                {"-device", options.machine == "microvm" ? "virtio-balloon-device,free-page-reporting=on"
                                                         : "virtio-balloon-pci,free-page-reporting=on"});
  }
  return args;
}

std::optional<RawRun> bootRaw(const Options& options, int run) {
  const std::string socket = options.workDir + "/raw-" + std::to_string(run) + ".sock";
  std::filesystem::remove(socket);
  const std::string name = "bench-raw-" + std::to_string(run);
  const std::string console = options.workDir + "/raw-" + std::to_string(run) + ".console";
  const std::vector<std::string> args = rawQemuArgs(options, name, socket, console);
  const std::string monitor = options.workDir + "/raw-" + std::to_string(run) + ".monitor";
  const std::string stateFile = options.workDir + "/raw-" + std::to_string(run) + ".state";
  std::vector<std::string> bootArgs = args;
  if (options.restore)
    bootArgs.insert(bootArgs.end(), {"-monitor", "unix:" + monitor + ",server=on,wait=off"});

  const auto started = Clock::now();
  const pid_t pid = spawn(bootArgs);
  if (pid < 0) return std::nullopt;
  auto agent = corral::vmm::AgentClient::connect(socket, started + std::chrono::seconds(120));
  std::optional<RawRun> result;
  if (agent) {
    result = RawRun{std::chrono::duration<double, std::milli>(Clock::now() - started).count(), -1, {}};
    // As corrald does once a guest is ready: QEMU's copies of the boot files out of its memory.
    (void)corral::vmm::releaseFileMappings(pid, {options.kernel, options.initrd});
    std::this_thread::sleep_for(kIdleAfterReady);  // idle: the agent waits for requests
    result->rssKib = rssKib(pid);
    if (options.restore) {
      const bool migrated = migrateToFile(monitor, stateFile);
      ::kill(pid, SIGKILL);
      if (!migrated) std::fprintf(stderr, "bench_vm_boot: raw run %d: migrate to a file failed\n", run);
      waitFor(pid, std::chrono::seconds(30));
      std::filesystem::remove(socket);
      if (migrated) {
        std::vector<std::string> restoreArgs = args;
        restoreArgs.insert(restoreArgs.end(), {"-incoming", "exec:cat " + stateFile});
        const auto restoring = Clock::now();
        const pid_t restored = spawn(restoreArgs);
        auto again = corral::vmm::AgentClient::connect(socket, restoring + std::chrono::seconds(120));
        if (again && again->setClock(Clock::now() + std::chrono::seconds(10))) {
          result->restoreMs = std::chrono::duration<double, std::milli>(Clock::now() - restoring).count();
        } else {
          std::fprintf(stderr, "bench_vm_boot: raw run %d: the restored guest did not answer\n", run);
        }
        ::kill(restored, SIGKILL);
        waitFor(restored, std::chrono::seconds(30));
      }
    } else if (!agent->shutdown()) {
      ::kill(pid, SIGTERM);
    }
  } else {
    std::fprintf(stderr, "bench_vm_boot: raw run %d: %s\n", run, agent.error().message().c_str());
    ::kill(pid, SIGKILL);
  }
  waitFor(pid, std::chrono::seconds(30));
  std::filesystem::remove(socket);
  std::filesystem::remove(console);
  std::filesystem::remove(monitor);
  std::filesystem::remove(stateFile);
  return result;
}

// --warm, raw side: one VM booted and migrated to `stateFile` once (the shared snapshot, as corrald's
// template); false when it did not work.
bool makeRawSnapshot(const Options& options, const std::string& stateFile) {
  const std::string socket = options.workDir + "/raw-warm.sock";
  const std::string monitor = options.workDir + "/raw-warm.monitor";
  std::filesystem::remove(socket);
  std::vector<std::string> args =
      rawQemuArgs(options, "bench-raw-warm", socket, options.workDir + "/raw-warm.console");
  args.insert(args.end(), {"-monitor", "unix:" + monitor + ",server=on,wait=off"});
  const pid_t pid = spawn(args);
  if (pid < 0) return false;
  auto agent = corral::vmm::AgentClient::connect(socket, Clock::now() + std::chrono::seconds(120));
  const bool migrated = agent && migrateToFile(monitor, stateFile);
  ::kill(pid, SIGKILL);
  waitFor(pid, std::chrono::seconds(30));
  std::filesystem::remove(socket);
  std::filesystem::remove(monitor);
  return migrated;
}

// --warm, raw side: a new QEMU restoring the shared state, timed from spawn to the agent's answer to
// set_identity (the clone's hostname, clock and seed: what corrald's warm start waits for).
std::optional<double> restoreRawClone(const Options& options, int run, const std::string& stateFile) {
  const std::string socket = options.workDir + "/raw-warm.sock";  // the template's: in the saved state
  std::filesystem::remove(socket);
  std::vector<std::string> args =
      rawQemuArgs(options, "bench-raw-warm", socket, options.workDir + "/raw-warm.console");
  args.insert(args.end(), {"-incoming", "exec:cat " + stateFile});
  const auto started = Clock::now();
  const pid_t pid = spawn(args);
  if (pid < 0) return std::nullopt;
  std::optional<double> ms;
  auto agent = corral::vmm::AgentClient::connect(socket, started + std::chrono::seconds(120));
  if (agent) {
    auto identity = agent->setIdentity({.hostname = "bench-raw-clone-" + std::to_string(run),
                                        .mac = std::nullopt,
                                        .ip = std::nullopt,
                                        .gateway = std::nullopt,
                                        .nameserver = std::nullopt,
                                        .search = std::nullopt},
                                       Clock::now() + std::chrono::seconds(10));
    if (identity) ms = std::chrono::duration<double, std::milli>(Clock::now() - started).count();
  }
  if (!ms) std::fprintf(stderr, "bench_vm_boot: raw warm clone %d did not answer\n", run);
  ::kill(pid, SIGKILL);
  waitFor(pid, std::chrono::seconds(30));
  std::filesystem::remove(socket);
  return ms;
}

std::vector<std::string> corralCommand(const Options& options, std::vector<std::string> tail) {
  std::vector<std::string> args = {options.corral};
  if (!options.corralSocket.empty()) args.insert(args.end(), {"--socket", options.corralSocket});
  args.insert(args.end(), tail.begin(), tail.end());
  return args;
}

struct CorralRun {
  double readyMs = 0;
  long rssKib = -1;             // usage.memory_bytes (QEMU's RSS) of the idle VM
  double engineMs = -1;  // boot.domain_steps.engine_ms: the engine's share of the start (libvirt or direct)
  std::string engine;    // boot.engine
  std::optional<double> restoreMs;  // --restore: boot.total_ms of `corral start` after `stop --save`
  json restoreSteps;                // its boot record: domain_ms (libvirt's restore), agent_ms, clock_ms
};

// The instance as `corral --json inspect` shows it, or a discarded json.
json inspect(const Options& options, const std::string& name) {
  const auto out =
      runCapturing(corralCommand(options, {"--json", "inspect", name}), std::chrono::seconds(30));
  return out ? json::parse(*out, nullptr, false) : json(json::value_t::discarded);
}

// boot.total_ms of one `corral run --vm -d` and its idle RSS, or nullopt.
std::optional<CorralRun> bootCorral(const Options& options, int run) {
  const std::string name = options.namePrefix + std::to_string(run);
  std::optional<double> total;
  double engineMs = -1;
  std::string engine;
  long rssKib = -1;
  const auto started = Clock::now();
  if (runCapturing(corralCommand(options, {"run", "--vm", "-d", "--name", name, "--memory",
                                           std::to_string(options.memoryMib) + "M", "--kernel",
                                           options.kernelName.empty() ? options.kernel : options.kernelName,
                                           "--machine", options.machine, "--initrd", options.initrd}),
                   std::chrono::seconds(180))) {
    // The daemon records total_ms when the agent says ready; -d may return before that.
    while (!total && Clock::now() - started < std::chrono::seconds(180)) {
      const auto out =
          runCapturing(corralCommand(options, {"--json", "inspect", name}), std::chrono::seconds(30));
      if (out) {
        const json instance = json::parse(*out, nullptr, false);
        const json* boot = instance.is_object() && instance.contains("boot") ? &instance["boot"] : nullptr;
        if (boot != nullptr && boot->is_object() && boot->contains("total_ms") &&
            (*boot)["total_ms"].is_number()) {
          total = (*boot)["total_ms"].get<double>();
          const json steps = boot->value("domain_steps", json::object());
          // engine_ms since the direct engine; libvirt_create_ms was the same step before.
          for (const char* step : {"engine_ms", "libvirt_create_ms"}) {
            if (engineMs < 0 && steps.is_object() && steps.contains(step) && steps[step].is_number())
              engineMs = steps[step].get<double>();
          }
          engine = boot->value("engine", "libvirt");
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  if (total) {
    std::this_thread::sleep_for(kIdleAfterReady);  // idle, as the raw side measures it
    const json instance = inspect(options, name);
    if (instance.is_object() && instance.contains("usage") && instance["usage"].is_object() &&
        instance["usage"].contains("memory_bytes") && instance["usage"]["memory_bytes"].is_number())
      rssKib = static_cast<long>(instance["usage"]["memory_bytes"].get<double>() / 1024);
  } else {
    std::fprintf(stderr, "bench_vm_boot: corral run %d (%s): no boot.total_ms\n", run, name.c_str());
  }
  std::optional<double> restoreMs;
  json restoreSteps;
  if (total && options.restore) {
    // `corral start` waits until the guest is ready; its boot then is the restore's.
    if (runCapturing(corralCommand(options, {"stop", "--save", name}), std::chrono::seconds(120)) &&
        runCapturing(corralCommand(options, {"start", name}), std::chrono::seconds(180))) {
      const json instance = inspect(options, name);
      if (instance.is_object() && instance.contains("boot") && instance["boot"].is_object() &&
          instance["boot"].value("restored", false) && instance["boot"]["total_ms"].is_number()) {
        restoreMs = instance["boot"]["total_ms"].get<double>();
        restoreSteps = instance["boot"];
      }
    }
    if (!restoreMs)
      std::fprintf(stderr, "bench_vm_boot: corral run %d (%s): no restore\n", run, name.c_str());
  }
  runCapturing(corralCommand(options, {"rm", "-f", name}), std::chrono::seconds(60));
  if (!total) return std::nullopt;
  return CorralRun{*total, rssKib, engineMs, engine, restoreMs, restoreSteps};
}

struct CorralClone {
  double readyMs = 0;
  bool madeSnapshot = false;  // its start booted and saved the template first
  json boot;
};

// --warm, corral side: `corral run --vm -d --warm`, boot.total_ms of the clone (request → identity set).
std::optional<CorralClone> warmCorral(const Options& options, int run) {
  const std::string name = options.namePrefix + "w" + std::to_string(run);
  std::optional<CorralClone> clone;
  const auto started = Clock::now();
  if (runCapturing(corralCommand(options, {"run", "--vm", "-d", "--warm", "--name", name, "--memory",
                                           std::to_string(options.memoryMib) + "M", "--kernel",
                                           options.kernelName.empty() ? options.kernel : options.kernelName,
                                           "--machine", options.machine, "--initrd", options.initrd}),
                   std::chrono::seconds(240))) {
    while (!clone && Clock::now() - started < std::chrono::seconds(180)) {
      const json instance = inspect(options, name);
      if (instance.is_object() && instance.contains("boot") && instance["boot"].is_object() &&
          instance["boot"].value("warm", false) && instance["boot"].contains("total_ms") &&
          instance["boot"]["total_ms"].is_number()) {
        const json& boot = instance["boot"];
        const json steps = boot.value("domain_steps", json::object());
        clone = CorralClone{boot["total_ms"].get<double>(), steps.value("snapshot_made", false), boot};
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }
  if (!clone)
    std::fprintf(stderr, "bench_vm_boot: corral warm run %d (%s): no boot.total_ms\n", run, name.c_str());
  runCapturing(corralCommand(options, {"rm", "-f", name}), std::chrono::seconds(60));
  return clone;
}

// The 1-minute load average, printed with the numbers it inflates.
std::string loadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one;
  in >> one;
  return one.empty() ? "?" : one;
}

double median(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 == 1 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

}  // namespace

// The accelerator corrald decided (its KVM probe may take a few seconds), so raw QEMU uses the same.
std::optional<std::string> corraldAccelerator(const Options& options) {
  const auto until = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < until) {
    if (const auto out = runCapturing(corralCommand(options, {"--json", "info"}), std::chrono::seconds(30))) {
      const json info = json::parse(*out, nullptr, false);
      if (info.is_object() && info.contains("vms") && info["vms"].is_object()) {
        const json& accelerator = info["vms"]["accelerator"];
        if (accelerator.is_object() && accelerator.value("state", "") == "decided" &&
            accelerator["name"].is_string())
          return accelerator["name"].get<std::string>();
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return std::nullopt;
}

int main(int argc, char** argv) {
  Options options = parseOptions(argc, argv);
  if (options.accel == "auto") {
    auto chosen = corraldAccelerator(options);
    if (!chosen) {
      std::fprintf(stderr, "bench_vm_boot: corrald did not decide an accelerator within 60 s\n");
      return 1;
    }
    options.accel = *chosen;
  }
  std::string corralEngine;
  std::vector<double> corralMs, corralRss, corralEngineMs, rawMs, rawRss, corralRestoreMs, rawRestoreMs;
  std::vector<double> corralCloneMs, corralCloneRestoreMs, rawCloneMs;
  const std::string rawWarmState = options.workDir + "/raw-warm.state";
  bool rawSnapshot = false;
  if (options.warm) {
    rawSnapshot = makeRawSnapshot(options, rawWarmState);
    if (!rawSnapshot) std::fprintf(stderr, "bench_vm_boot: the raw warm snapshot could not be made\n");
  }
  std::printf(
      "VM boot, kernel %s, machine %s, %d MiB, %s (translation cache %s), %d runs each, alternating, "
      "load average %s\n",
      options.kernel.c_str(), options.machine.c_str(), options.memoryMib, options.accel.c_str(),
      options.tbSizeMib > 0 ? (std::to_string(options.tbSizeMib) + " MiB").c_str() : "QEMU's default",
      options.runs, loadAverage().c_str());
  for (int run = 0; run < options.runs; ++run) {
    if (!options.corral.empty()) {
      if (const auto booted = bootCorral(options, run)) {
        corralMs.push_back(booted->readyMs);
        if (booted->rssKib > 0) corralRss.push_back(static_cast<double>(booted->rssKib));
        if (booted->engineMs >= 0) corralEngineMs.push_back(booted->engineMs);
        corralEngine = booted->engine;
        std::printf("  run %2d corral %8.1f ms  (qemu rss %ld KiB)", run, booted->readyMs, booted->rssKib);
        if (booted->restoreMs) {
          corralRestoreMs.push_back(*booted->restoreMs);
          const json& steps = booted->restoreSteps;
          std::printf("  restore %8.1f ms (domain %.0f, agent %.0f, clock %.0f)", *booted->restoreMs,
                      steps.value("domain_ms", 0.0), steps.value("agent_ms", 0.0),
                      steps.value("clock_ms", 0.0));
          const json restoreSteps = steps.value("domain_steps", json::object());
          if (restoreSteps.is_object() && restoreSteps.contains("incoming_ms"))
            std::printf(" (incoming %.0f)", restoreSteps.value("incoming_ms", 0.0));
        }
        std::printf("\n");
      }
    }
    if (const auto raw = bootRaw(options, run)) {
      rawMs.push_back(raw->readyMs);
      if (raw->rssKib > 0) rawRss.push_back(static_cast<double>(raw->rssKib));
      std::printf("  run %2d raw    %8.1f ms  (qemu rss %ld KiB)", run, raw->readyMs, raw->rssKib);
      if (raw->restoreMs) {
        rawRestoreMs.push_back(*raw->restoreMs);
        std::printf("  restore %8.1f ms", *raw->restoreMs);
      }
      std::printf("\n");
    }
    if (options.warm && !options.corral.empty()) {
      if (const auto clone = warmCorral(options, run)) {
        const json steps = clone->boot.value("domain_steps", json::object());
        std::printf(
            "  run %2d corral warm clone %8.1f ms (copy %.0f, restore %.0f, agent %.0f, identity %.0f)%s\n",
            run, clone->readyMs, steps.value("copy_ms", 0.0), steps.value("restore_ms", 0.0),
            clone->boot.value("agent_ms", 0.0), clone->boot.value("identity_ms", 0.0),
            clone->madeSnapshot ? " (made the snapshot first: not in the median)" : "");
        if (!clone->madeSnapshot) {
          corralCloneMs.push_back(clone->readyMs);
          corralCloneRestoreMs.push_back(steps.value("restore_ms", 0.0));
        }
      }
    }
    if (rawSnapshot) {
      if (const auto ms = restoreRawClone(options, run, rawWarmState)) {
        rawCloneMs.push_back(*ms);
        std::printf("  run %2d raw warm clone    %8.1f ms\n", run, *ms);
      }
    }
    std::fflush(stdout);
  }
  std::filesystem::remove(rawWarmState);
  if (rawMs.empty()) {
    std::fprintf(stderr, "bench_vm_boot: no raw run reached ready\n");
    return 1;
  }
  std::printf("raw qemu   median %8.1f ms to agent ready (%zu/%d runs)\n", median(rawMs), rawMs.size(),
              options.runs);
  if (!rawRss.empty()) std::printf("raw qemu   median RSS per idle VM %.1f MiB\n", median(rawRss) / 1024);
  if (!options.corral.empty()) {
    if (corralMs.empty()) {
      std::fprintf(stderr, "bench_vm_boot: no corral run reached ready\n");
      return 1;
    }
    const double ratio = median(corralMs) / median(rawMs);
    std::printf("corral     median %8.1f ms to agent ready (%zu/%d runs)\n", median(corralMs),
                corralMs.size(), options.runs);
    if (!corralRss.empty())
      std::printf("corral     median RSS per idle VM %.1f MiB\n", median(corralRss) / 1024);
    if (!corralEngineMs.empty())
      std::printf("corral     median engine start, %s (boot.domain_steps.engine_ms) %.1f ms\n",
                  corralEngine.c_str(), median(corralEngineMs));
    std::printf("ratio corral/raw %.2f (target <= 1.15)\n", ratio);
  }
  if (options.restore) {
    if (!rawRestoreMs.empty())
      std::printf("raw qemu   median %8.1f ms warm (restore to agent ready + clock, %zu/%d runs)\n",
                  median(rawRestoreMs), rawRestoreMs.size(), options.runs);
    if (!corralRestoreMs.empty())
      std::printf("corral     median %8.1f ms warm (start after stop --save, %zu/%d runs; target <= 300)\n",
                  median(corralRestoreMs), corralRestoreMs.size(), options.runs);
    if (!rawRestoreMs.empty() && !corralRestoreMs.empty())
      std::printf("ratio corral/raw warm %.2f\n", median(corralRestoreMs) / median(rawRestoreMs));
  }
  if (options.warm) {
    if (!rawCloneMs.empty())
      std::printf(
          "raw qemu   median %8.1f ms warm clone (one shared state restored, to set_identity answered, "
          "%zu/%d runs)\n",
          median(rawCloneMs), rawCloneMs.size(), options.runs);
    if (!corralCloneMs.empty())
      std::printf(
          "corral     median %8.1f ms warm clone (run --warm, %zu runs; the %s engine's restore %.1f ms; "
          "target <= 300)\n",
          median(corralCloneMs), corralCloneMs.size(), corralEngine.empty() ? "?" : corralEngine.c_str(),
          median(corralCloneRestoreMs));
    if (!rawCloneMs.empty() && !corralCloneMs.empty())
      std::printf("ratio corral/raw warm clone %.2f\n", median(corralCloneMs) / median(rawCloneMs));
  }
  std::printf("load average at the end %s\n", loadAverage().c_str());
  return 0;
}
