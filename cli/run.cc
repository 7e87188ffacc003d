// `corral run`: create and start an instance in one step. A container shares the host's kernel, so it is
// ready in milliseconds; in the foreground its output streams here and its exit code becomes ours.
#include <charconv>
#include <cmath>
#include <fstream>
#include <iostream>
#include <iterator>
#include <random>

#include "cli/cli.h"

namespace corral::cli {
namespace {

volatile sig_atomic_t interrupted = 0;

double parseCpusFlag(std::string_view text) {
  double value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() || !std::isfinite(value)) {
    throw UsageError(fmt::format("--cpus: \"{}\" is not a number of CPUs (e.g. 0.5 for half a CPU)", text));
  }
  return value;
}

// --user-data FILE: its bytes, base64 as the API takes them; the size is corrald's to refuse, but a file
// that cannot be read is ours.
std::string userDataFromFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) throw UsageError(fmt::format("--user-data: cannot read \"{}\"", path));
  std::string bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (file.bad()) throw UsageError(fmt::format("--user-data: error reading \"{}\"", path));
  return api::base64Encode(bytes);
}

// Cattle get numbers, not names: "busybox-3f9a1c" when --name is left out; an image reference gives its
// last path part without tag or digest ("docker.io/library/nginx:1.25" → "nginx-3f9a1c").
std::string generatedName(const std::string& image) {
  std::string base = image.substr(image.rfind('/') + 1);  // npos + 1 == 0: no '/'
  base = base.substr(0, base.find_first_of(":@"));
  for (char& c : base) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'))) c = '-';
  }
  base = base.substr(0, 40);
  while (!base.empty() && base.front() == '-') base.erase(base.begin());
  while (!base.empty() && base.back() == '-') base.pop_back();
  std::random_device random;
  return fmt::format("{}-{:06x}", base.empty() ? "instance" : base, random() & 0xffffff);
}

std::vector<std::string> values(const Invocation& invocation, const std::string& name) {
  if (!invocation.options.count(name)) return {};
  return invocation.options[name].as<std::vector<std::string>>();
}

}  // namespace

schema::InstanceSpec specFromFlags(const Invocation& invocation) {
  if (invocation.flag("vm") && invocation.flag("container")) {
    throw UsageError("--vm and --container cannot be used together");
  }
  schema::InstanceSpec spec;
  spec.kind = invocation.flag("vm") ? schema::InstanceKind::vm : schema::InstanceKind::container;
  // With --image and no command the image runs its own (a store image's Entrypoint + Cmd); a plain
  // `corral run` still asks for one.
  if (spec.kind == schema::InstanceKind::container && invocation.command.empty() &&
      !invocation.value("image")) {
    throw UsageError("no command given: put it after \"--\", e.g. -- echo hi (or give --image)");
  }
  spec.image = invocation.value("image").value_or("busybox");
  spec.name = invocation.value("name").value_or(generatedName(spec.image));
  // A VM runs its image's init; the command runs through its guest agent once it is ready.
  if (spec.kind == schema::InstanceKind::container) spec.command = invocation.command;
  // A container's first process gets the terminal (or stdin) itself; a VM's command gets them through exec.
  if (spec.kind == schema::InstanceKind::container) {
    spec.tty = invocation.flag("tty");
    spec.stdinOpen = invocation.flag("interactive");
  }
  spec.kernel = invocation.value("kernel").value_or("");
  spec.machine = invocation.value("machine").value_or("");
  spec.initrd = invocation.value("initrd").value_or("");
  spec.warm = invocation.flag("warm");
  spec.env = values(invocation, "env");
  spec.hostname = invocation.value("hostname").value_or("");
  if (auto file = invocation.value("user-data")) spec.userData = userDataFromFile(*file);
  spec.memory = invocation.value("memory");
  if (auto cpus = invocation.value("cpus")) spec.cpus = parseCpusFlag(*cpus);
  if (auto pids = invocation.value("pids")) spec.pids = parseIntegerFlag("--pids", *pids);
  spec.capAdd = values(invocation, "cap-add");
  spec.capDrop = values(invocation, "cap-drop");
  spec.seccomp = invocation.value("seccomp").value_or("default");
  spec.userNamespace = invocation.flag("user-ns");
  spec.user = invocation.value("user").value_or("");
  spec.devices = values(invocation, "device");
  spec.init = invocation.flag("init");
  spec.subnet = invocation.value("subnet").value_or("");
  spec.host = invocation.value("host").value_or("");
  spec.ip = invocation.value("ip").value_or("");
  spec.securityGroups = values(invocation, "sg");
  spec.publish = values(invocation, "publish");
  if (invocation.flag("public-ip") && invocation.flag("no-public-ip")) {
    throw UsageError("--public-ip and --no-public-ip cannot be used together");
  }
  if (invocation.flag("public-ip")) spec.publicIp = true;
  if (invocation.flag("no-public-ip")) spec.publicIp = false;
  // In the foreground the CLI removes the instance itself once it has read all the output; the daemon's
  // own removal could race the last read of the logs.
  // A VM without a command keeps running after `corral run` returns: --rm then applies when it stops.
  spec.removeOnExit =
      invocation.flag("rm") &&
      (invocation.flag("detach") || (spec.kind == schema::InstanceKind::vm && invocation.command.empty()));
  return spec;
}

void addInstanceTemplateOptions(po::options_description& options) {
  options.add_options()                                                                                //
      ("container", "run a container, which shares the host's kernel (the default)")                   //
      ("vm", "run a virtual machine with its own kernel (libvirt/QEMU; KVM or TCG, see corral info)")  //
      ("kernel", po::value<std::string>()->value_name("corral|debian|PATH"),
       "VMs: corral's minimal kernel (the default once built: ninja guest-kernel), the image's Debian "
       "cloud kernel, or a kernel file")  //
      ("machine", po::value<std::string>()->value_name("microvm|pc"),
       "VMs: QEMU's machine type: microvm (virtio-mmio, no PCI or firmware; the default with corral's "
       "kernel) or pc (the default with the others; Debian's kernel boots on pc only)")  //
      ("initrd", po::value<std::string>()->value_name("PATH"),
       "VMs: this initramfs instead of the image's")  //
      ("warm",
       "VMs: restore from a snapshot of a booted guest (made by the first --warm run with the same "
       "kernel, initramfs, image, machine, memory, vCPUs and NIC settings: a corrald on OVN keeps its own, "
       "with the NIC's MTU at 1400), then give it its own hostname, MAC, address and random seed; a store "
       "image's VM runs on its own copy of the template's disk")  //
      ("image", po::value<std::string>()->value_name("NAME"),
       "the image (default busybox): any name `corral image ls` shows (pulled, imported or built with corral "
       "image; busybox is one) or a built-in image of corrald's --image-dir; a store image runs its own "
       "Entrypoint + Cmd, Env, WorkingDir and User")  //
      ("user,u", po::value<std::string>()->value_name("USER[:GROUP]"),
       "run as this user instead of the image's User: a name or uid, :GROUP by name or gid, looked up in "
       "the image's /etc/passwd and /etc/group (VMs: store images only)")  //
      ("memory", po::value<std::string>()->value_name("SIZE"),
       "memory limit, e.g. 64M or 1G; above it the kernel's OOM killer ends the command")                //
      ("cpus", po::value<std::string>()->value_name("N"), "CPU limit, e.g. 0.5 for half a CPU")          //
      ("pids", po::value<std::string>()->value_name("N"), "most processes at once (stops fork bombs)")   //
      ("hostname", po::value<std::string>()->value_name("NAME"), "the hostname inside (default: NAME)")  //
      ("user-data", po::value<std::string>()->value_name("FILE"),
       "what the instance metadata serves at /latest/user-data (at most 16 KiB, as in AWS)")  //
      ("env,e", po::value<std::vector<std::string>>()->value_name("K=V"),
       "an environment variable (repeatable)")  //
      ("cap-add", po::value<std::vector<std::string>>()->value_name("CAP"),
       "keep one more capability, e.g. NET_ADMIN (repeatable)")  //
      ("cap-drop", po::value<std::vector<std::string>>()->value_name("CAP"),
       "drop a capability from the default set, or ALL (repeatable)")  //
      ("seccomp", po::value<std::string>()->value_name("PROFILE"),
       "default (Docker's allow list: other syscalls fail), unconfined, or a JSON profile's path")  //
      ("user-ns", "a user namespace: root inside is an unprivileged user on the host")              //
      ("device", po::value<std::vector<std::string>>()->value_name("HOST[:CONTAINER][:PERMS]"),
       "give the container a host device, e.g. /dev/fuse or /dev/fuse:/dev/fuse:rw (PERMS of rwm, default "
       "rwm; repeatable); every other device stays closed")                                  //
      ("init", "run a tiny init as PID 1 that forwards signals and reaps orphaned zombies")  //
      ("sg", po::value<std::vector<std::string>>()->value_name("GROUP"),
       "a security group (a guard at its door; repeatable; default: the VPC's default group)");
}

namespace {

void addRunOptions(po::options_description& options) {
  addInstanceTemplateOptions(options);
  options.add_options()  //
      ("name", po::value<std::string>()->value_name("NAME"),
       "1-63 of a-z, 0-9 and '-' (default: IMAGE-RANDOM; cattle, not pets)")  //
      ("count", po::value<std::string>()->value_name("N"),
       "start N instances at once, NAME-1..NAME-N (implies -d; all or none: if one fails, those started are "
       "removed)")  //
      ("subnet", po::value<std::string>()->value_name("SUBNET"),
       "plug it into this subnet (its floor's switch); without it the instance has only loopback")  //
      ("host", po::value<std::string>()->value_name("HOST"),
       "a cluster's host to run it on (corral cluster ls; it must be in the subnet's availability zone); "
       "default: a host of the subnet's zone")  //
      ("ip", po::value<std::string>()->value_name("A.B.C.D"),
       "its private address in the subnet (default: the lowest free one)")  //
      ("publish,p", po::value<std::vector<std::string>>()->value_name("PORT:PORT[/udp]"),
       "forward the internet gateway's PORT to the instance's PORT (repeatable)")  //
      ("public-ip", "give it a public address (1:1 NAT at the internet gateway)")  //
      ("no-public-ip", "no public address even if the subnet maps one")            //
      ("interactive,i",
       "keep stdin open: what we read reaches the command (echo hi | corral run -i --rm -- cat); a "
       "container's "
       "stays open for corral console")  //
      ("tty,t",
       "a terminal for the command (containers: a pty of its own devpts, also its /dev/console; VMs: one the "
       "guest agent opens); ours goes raw while attached, Ctrl-] detaches from a container's")  //
      ("rm", "remove the instance once its command exits")                                      //
      ("detach,d", "start it and return at once, printing the boot time");
}

void onInterrupt(int) {
  interrupted = 1;
}

// Ctrl-C in the foreground stops the container, as it would stop a command run directly.
int stopAfterInterrupt(const api::Client& client, const std::string& name, bool remove) {
  std::cerr << "corral: stopping " << name << " (SIGTERM, then SIGKILL after 10 s)\n";
  api::Client patient(client.socketPath(), std::chrono::seconds(60));
  if (Result<json> stopped = patient.call(api::StopInstance{name, 10}); !stopped) printError(stopped.error());
  if (remove) {
    Result<json> removed = patient.call(api::RemoveInstance{name, true});
    if (!removed && removed.error().kind() != ErrorKind::NotFound) printError(removed.error());
  }
  return 130;
}

// A VM: wait for its guest (with progress on a terminal), then run the command, if any, through the agent.
int finishVmRun(const api::Client& client, json instance, const Invocation& invocation, bool detach,
                bool remove) {
  const std::string name = displayText(field(instance, "name"));
  Result<json> ready = waitUntilReady(client, std::move(instance), detach ? nullptr : &interrupted);
  if (interrupted) return stopAfterInterrupt(client, name, remove);
  if (!ready) {
    printError(ready.error());
    if (remove) [[maybe_unused]]
      auto removed = client.call(api::RemoveInstance{name, true});
    return 1;
  }
  if (invocation.command.empty() || detach) {
    if (invocation.global.json) {
      std::cout << ready->dump(2) << "\n";
    } else {
      fmt::print("{} {}\n", name, displayReady(*ready));
    }
    return 0;
  }
  api::Client patient(client.socketPath(), std::chrono::hours(24));
  if (invocation.flag("tty") || invocation.flag("interactive")) {
    // -it: the command runs through the agent with a terminal (exec -it), its exit code ours.
    api::TerminalTarget target;
    target.name = name;
    target.request.command = invocation.command;
    target.request.tty = invocation.flag("tty");
    target.request.stdinOpen = invocation.flag("interactive");
    int code = runTerminal(client.socketPath(), std::move(target));
    if (remove) {
      Result<json> removed = patient.call(api::RemoveInstance{name, true});
      if (!removed && removed.error().kind() != ErrorKind::NotFound) printError(removed.error());
    }
    return code;
  }
  Result<json> result = patient.call(api::ExecInstance{name, invocation.command, {}});
  int code = 1;
  if (!result) {
    printError(result.error());
  } else {
    printExecOutput(*result);
    code = instanceExitCode(*result);
  }
  if (remove) {
    Result<json> removed = patient.call(api::RemoveInstance{name, true});
    if (!removed && removed.error().kind() != ErrorKind::NotFound) printError(removed.error());
  }
  return code;
}

// --count N: BASE-1..BASE-N, all or none: one request each, and when one fails the ones started are
// removed (force) before the error is shown, so nothing is left half-done.
int runMany(const Invocation& invocation, int64_t count) {
  if (count < 1 || count > 100) throw UsageError(fmt::format("--count: {} is not between 1 and 100", count));
  for (const char* shared : {"ip", "publish", "interactive", "tty"}) {
    if (invocation.flag(shared))
      throw UsageError(fmt::format("--{} cannot be shared by the {} instances of --count", shared, count));
  }
  schema::InstanceSpec spec = specFromFlags(invocation);
  const std::string base = spec.name;
  if (base.empty()) throw UsageError("--count needs --name BASE: the instances are BASE-1..BASE-N");
  api::Client client(invocation.global.socketPath);
  std::vector<std::string> started;
  json answers = json::array();
  for (int64_t i = 1; i <= count; ++i) {
    spec.name = fmt::format("{}-{}", base, i);
    Result<json> instance = client.call(api::RunInstance{spec});
    if (!instance) {
      printError(instance.error());
      if (!started.empty()) {
        std::cerr << fmt::format("corral: removing the {} instance(s) already started: {}\n", started.size(),
                                 fmt::join(started, ", "));
        api::Client patient(client.socketPath(), std::chrono::seconds(120));
        if (Result<json> removed = patient.call(api::RemoveInstances{started, true}); !removed)
          printError(removed.error());
      }
      return 1;
    }
    started.push_back(spec.name);
    answers.push_back(std::move(*instance));
  }
  if (invocation.global.json) {
    std::cout << json{{"instances", answers}}.dump(2) << "\n";
    return 0;
  }
  for (const json& instance : answers)
    fmt::print("{} {}\n", displayText(field(instance, "name")), displayText(field(instance, "state")));
  return 0;
}

int runInstance(const Invocation& invocation) {
  if (auto count = invocation.value("count")) return runMany(invocation, parseIntegerFlag("--count", *count));
  schema::InstanceSpec spec = specFromFlags(invocation);
  bool detach = invocation.flag("detach");
  bool remove = invocation.flag("rm");
  if (!detach) {
    struct sigaction action {};
    action.sa_handler = onInterrupt;
    sigemptyset(&action.sa_mask);
    ::sigaction(SIGINT, &action, nullptr);
  }

  api::Client client(invocation.global.socketPath);
  Result<json> instance = client.call(api::RunInstance{spec});
  if (!instance) {
    printError(instance.error());
    return 1;
  }
  const std::string name = spec.name;
  if (spec.kind == schema::InstanceKind::vm)
    return finishVmRun(client, *instance, invocation, detach, remove);
  if (detach) {
    if (invocation.global.json) {
      std::cout << instance->dump(2) << "\n";
    } else {
      fmt::print("{} running (ready in {})\n", name,
                 displayMilliseconds(field(field(*instance, "boot"), "total_ms")));
    }
    return 0;
  }
  if (interrupted) return stopAfterInterrupt(client, name, remove);
  if (spec.tty || spec.stdinOpen) {
    // Attached to its first process's terminal or stdin through its console; leaving with Ctrl-] keeps it.
    api::TerminalTarget target;
    target.kind = api::TerminalTarget::Kind::console;
    target.name = name;
    target.request.tty = spec.tty;
    target.request.stdinOpen = true;
    bool detached = false;
    int code = runTerminal(client.socketPath(), std::move(target), &detached);
    if (remove && !detached) {
      Result<json> removed = client.call(api::RemoveInstance{name, true});
      if (!removed && removed.error().kind() != ErrorKind::NotFound) printError(removed.error());
    }
    return code;
  }

  Result<json> logs = streamLogs(client, name, /*follow=*/true, &interrupted);
  if (interrupted) return stopAfterInterrupt(client, name, remove);
  if (!logs) {
    printError(logs.error());
    return 1;
  }
  // The logs answer has the exit code; the instance has the signal and the reason (OOM) as well.
  json finished = *logs;
  if (Result<json> full = client.call(api::GetInstance{name})) finished = *full;
  if (field(finished, "exit_reason") == "oom-killed") {
    std::cerr << "corral: " << name << " was OOM-killed (it used more than its memory limit)\n";
  }
  int code = instanceExitCode(finished);
  if (remove) {
    Result<json> removed = client.call(api::RemoveInstance{name, true});
    if (!removed && removed.error().kind() != ErrorKind::NotFound) printError(removed.error());
  }
  return code;
}

}  // namespace

Command runCommand() {
  Command command = leaf(
      "run",
      "create and start an instance. A container shares the host's kernel, so it boots in milliseconds;\n"
      "without -d its output streams here and corral exits with its command's exit code (Ctrl-C stops it).\n"
      "A --vm boots its own kernel (seconds under TCG): corral waits until its guest is ready, showing\n"
      "progress; CMD, if given, then runs in the guest through its agent (like corral exec).\n"
      "--image NAME is any image of corrald's store (corral image ls: pull, import or build one with\n"
      "corral image) or a built-in one. Without CMD a container of it runs the image's own command\n"
      "(Entrypoint + Cmd); with one, CMD replaces Cmd and keeps Entrypoint, as docker run does.\n"
      "-it gives the command a terminal (a container's first process: a pty of its own devpts and its\n"
      "/dev/console; a VM's command: through exec -it), -i alone pipes our stdin to it; Ctrl-] detaches "
      "from\n"
      "a container's, corral console NAME attaches again.\n"
      "Instances are cattle, not pets: give them --rm and run a fresh one rather than repairing an old one.\n"
      "--count N starts NAME-1..NAME-N at once (detached; all or none). For a herd that heals and scales\n"
      "itself, see corral group.",
      {},
      "[--container | --vm] [--image NAME] [--user USER[:GROUP]] [--kernel corral|debian|PATH] "
      "[--machine microvm|pc] [--initrd PATH] [--warm] [--name NAME] [--memory SIZE] "
      "[--cpus N] [--pids N] [--hostname H] "
      "[--env K=V]... [--cap-add CAP]... [--cap-drop CAP]... [--seccomp PROFILE] [--user-ns] [--init] "
      "[--subnet SUBNET [--ip A.B.C.D] [--sg GROUP]... [--publish PORT:PORT]... [--public-ip]] [-i] [-t] "
      "[--rm] [-d] [--count N] "
      "[-- CMD [ARGS...]]",
      addRunOptions, runInstance);
  command.takesCommand = true;
  command.commandOptional = true;  // a VM or an --image needs none; busybox does (checked in specFromFlags)
  return command;
}

}  // namespace corral::cli
