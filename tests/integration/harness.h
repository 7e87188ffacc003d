// What the daemon-level integration tests share: the process plumbing of tests/integration/process.h, the
// test network's names, and TestDaemon, the one "corrald under test".
#pragma once

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <ostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "api/client.h"
#include "net/netlink.h"
#include "tests/integration/process.h"
#include "tests/integration/skip_guard.h"

namespace corral::testing {

// How often `what` occurs in `text` (log lines of an event, to wait for one more).
inline size_t occurrences(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

// This test process's network namespace prefix: every corrald a test starts names its VPC namespaces
// "corral-t<pid>-vpc-NAME", so parallel test processes (and a real corrald) never touch each other's.
inline std::string testNetnsPrefix() {
  return "corral-t" + std::to_string(::getpid()) + "-";
}

// The "internet" of this test process: a namespace internet gateways lead to, so no test ever touches the
// host's network. Created on first use; it and every other namespace of the prefix are deleted when the
// process exits.
inline const std::string& testUplinkNetns() {
  struct Uplink {
    std::string name = testNetnsPrefix() + "inet";
    Uplink() {
      if (!net::netnsExists(name)) {
        if (auto made = net::createNetns(name); !made) {
          std::fprintf(stderr, "creating the test uplink namespace %s: %s\n", name.c_str(),
                       made.error().message().c_str());
        }
      }
    }
    // Every namespace of this process's prefix goes when it exits: the VPCs its daemons made (a test
    // kills its daemon and removes its state, the kernel objects would stay) and the uplink itself.
    ~Uplink() {
      for (const std::string& netns : net::listNetns()) {
        if (!netns.starts_with(testNetnsPrefix())) continue;
        [[maybe_unused]] auto gone = net::deleteNetns(netns);
      }
    }
  };
  static Uplink uplink;
  return uplink.name;
}

// corrald's network options for tests: the prefix and the uplink above.
inline std::vector<std::string> testNetworkArgs() {
  return {"--netns-prefix", testNetnsPrefix(), "--uplink-netns", testUplinkNetns()};
}
inline std::vector<std::string> withTestNetwork(std::vector<std::string> args) {
  for (std::string& arg : testNetworkArgs()) args.push_back(std::move(arg));
  return args;
}

// ---- The daemon under test ----

// True as root. Otherwise false, and a test failure too when CORRAL_REQUIRE_PRIVILEGED is set (CI runs as
// root, so a skip there would hide a test that never ran). Use: `if (!requireRoot()) GTEST_SKIP() << why;`
inline bool requireRoot() {
  if (::geteuid() == 0) return true;
  if (::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) ADD_FAILURE() << "needs root";
  return false;
}

// This test process's libvirt domain prefix: every domain its daemons define is "corral-t<pid>-NAME".
inline std::string testDomainPrefix() {
  return "corral-t" + std::to_string(::getpid()) + "-";
}

// What `argv` printed on stdout (given 30 s), to see a tool's side of things with the tool itself.
inline std::string programOutput(const std::vector<std::string>& argv) {
  char pattern[] = "/tmp/corral-output-XXXXXX";
  int fd = ::mkstemp(pattern);
  if (fd < 0) return {};
  ::close(fd);
  pid_t pid = spawnProcess(argv, pattern, "/dev/null", OutputMode::Truncate);
  if (pid > 0) waitWithDeadline(pid, std::chrono::seconds(30));
  std::string out = readFile(pattern);
  ::unlink(pattern);
  return out;
}

// `virsh ARGS` against the system libvirtd: what it printed on stdout, to see libvirt's side with
// libvirt's own tool.
inline std::string virsh(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/bin/virsh", "-c", "qemu:///system"};
  argv.insert(argv.end(), args.begin(), args.end());
  return programOutput(argv);
}

// The QEMU processes running a domain of this test process, whichever engine started them (both name the
// guest in QEMU's "-name guest=NAME[,...]"), by pid; zombies (ended, not yet reaped) are not running.
inline std::vector<std::pair<int, std::string>> ourQemus() {
  std::vector<std::pair<int, std::string>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string pid = entry.path().filename().string();
    if (pid.empty() || pid.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string cmdline = readFile(entry.path().string() + "/cmdline");
    const std::string needle = std::string("-name") + '\0' + "guest=" + testDomainPrefix();
    const size_t at = cmdline.find(needle);
    if (at == std::string::npos) continue;
    const std::string stat = readFile(entry.path().string() + "/stat");
    const size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 2 >= stat.size() || stat[paren + 2] == 'Z') continue;
    const size_t from = at + 6 + 6;  // past "-name\0guest="
    const size_t end = cmdline.find_first_of(std::string(",\0", 2), from);
    found.emplace_back(std::stoi(pid), cmdline.substr(from, end - from));
  }
  return found;
}

// The domains of this test process (testDomainPrefix()) running now: libvirt's, and the direct engine's
// (vmm/qemu.h) QEMU processes.
inline std::vector<std::string> ourDomains() {
  std::vector<std::string> names;
  std::istringstream lines(virsh({"list", "--name"}));
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(testDomainPrefix())) names.push_back(line);
  }
  for (const auto& [pid, name] : ourQemus()) {
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::sort(names.begin(), names.end());
  return names;
}

// What the API answered: the HTTP status (0 when the request did not get through, the body then says
// why under "transport") and the body parsed as JSON (discarded when it was not JSON).
struct Reply {
  int status = 0;
  nlohmann::json body;
};

// A run of the CLI to its end: the exit code (-1: killed by a signal or late) and what it printed.
struct CliRun {
  int code = -1;
  std::string out;
  std::string err;
};
inline std::ostream& operator<<(std::ostream& os, const CliRun& run) {
  return os << "exit " << run.code << "\nstdout: " << run.out << "\nstderr: " << run.err;
}

// corrald in the foreground with its own temp dir (socket, state, log, accelerator cache), cgroup parent,
// libvirt domain prefix and network prefix (testNetworkArgs()), so parallel test processes and a real
// corrald on the same host never see each other's objects. On destruction it leaves nothing: the
// instances and network objects it made (through the API; a SIGKILLed daemon is started again for that),
// then the daemon, the domains and VPC namespaces it could not remove, its temp dir and its cgroup parent.
class TestDaemon {
 public:
  // `name`: a short tag ("vpc", "compare", ...) in the temp dir /tmp/corral-NAME-XXXXXX and the cgroup
  // parent corral-test-NAME-<pid>; `extraArgs` go last on corrald's command line ({"--accelerator",
  // "tcg"}; an "--accelerator-cache" there replaces the temp dir's).
  explicit TestDaemon(std::string name, std::vector<std::string> extraArgs = {})
      : name_(std::move(name)), extraArgs_(std::move(extraArgs)) {
    std::string pattern = "/tmp/corral-" + name_ + "-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp(" + pattern + ") failed");
    dir_ = pattern;
    // Passable like /var/lib, so corrald's default --vm-user (auto: libvirt-qemu) can reach STATE_DIR/vms.
    ::chmod(dir_.c_str(), 0711);
  }
  // The next start() runs corrald with these instead (a restart with other options, same state).
  void setExtraArgs(std::vector<std::string> extraArgs) { extraArgs_ = std::move(extraArgs); }
  TestDaemon(const TestDaemon&) = delete;
  TestDaemon& operator=(const TestDaemon&) = delete;

  ~TestDaemon() {
    if (everStarted_) {
      if (pid_ <= 0) start();
      if (pid_ > 0) {
        removeEverything();
        stop();
      }
      // Whatever the daemon could not remove.
      for (const std::string& domain : ourDomains()) virsh({"destroy", domain});
      for (const auto& [pid, name] : ourQemus()) ::kill(pid, SIGKILL);  // the direct engine's
      for (const std::string& netns : net::listNetns()) {
        if (netns.starts_with(testNetnsPrefix() + "vpc-") || netns.starts_with(testNetnsPrefix() + "lb-"))
            [[maybe_unused]]
          auto gone = net::deleteNetns(netns);
      }
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    // The (empty) parent cgroup, on v2 and on every v1 controller.
    ::rmdir(("/sys/fs/cgroup/" + cgroupParent()).c_str());
    for (const auto& controller : std::filesystem::directory_iterator("/sys/fs/cgroup", ignored)) {
      ::rmdir((controller.path() / cgroupParent()).c_str());
    }
  }

  // Host-uplink mode, as real users run corrald: no --uplink-netns, so internet gateways lead to corrald's
  // own namespace, which here is `netns`, a namespace the test made to play the host (corrald is started
  // through `nsenter --net=/run/netns/NETNS`: only its network namespace differs). When the namespace is
  // missing, nsenter fails and corrald never starts: there is no falling back to the real host's network.
  void playHostIn(std::string netns) { hostNetns_ = std::move(netns); }

  // Spawns corrald and waits up to 30 s for GET /v1/info. False when it did not answer (or exited);
  // log() says why.
  bool start() {
    std::vector<std::string> args;
    if (!hostNetns_.empty()) args = {"/usr/bin/nsenter", "--net=/run/netns/" + hostNetns_, "--"};
    args.insert(args.end(), {CORRALD_PATH, "--foreground", "--socket", socket(), "--state-dir",
                             dir_ + "/state", "--image-dir", CORRAL_IMAGE_DIR, "--cgroup-parent",
                             cgroupParent(), "--domain-prefix", testDomainPrefix()});
    if (std::find(extraArgs_.begin(), extraArgs_.end(), "--accelerator-cache") == extraArgs_.end()) {
      args.insert(args.end(), {"--accelerator-cache", acceleratorCache()});
    }
    // The load balancers' HAProxy files and the VPC resolvers' dnsmasq files go with the temp dir (not
    // /run/corral/lb/PREFIX or /run/corral/resolvers/PREFIX, which would stay).
    if (std::find(extraArgs_.begin(), extraArgs_.end(), "--lb-dir") == extraArgs_.end()) {
      args.insert(args.end(), {"--lb-dir", dir_ + "/lb"});
    }
    if (std::find(extraArgs_.begin(), extraArgs_.end(), "--resolver-dir") == extraArgs_.end()) {
      args.insert(args.end(), {"--resolver-dir", resolverDir()});
    }
    if (hostNetns_.empty()) {
      for (std::string& arg : testNetworkArgs()) args.push_back(std::move(arg));
    } else {
      args.insert(args.end(), {"--netns-prefix", testNetnsPrefix()});
    }
    args.insert(args.end(), extraArgs_.begin(), extraArgs_.end());
    pid_ = spawnProcess(args, dir_ + "/corrald.out", {}, OutputMode::Append);
    if (pid_ < 0) {
      pid_ = 0;
      return false;
    }
    everStarted_ = true;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;  // exited during startup
        return false;
      }
      if (call("GET", "/v1/info", nullptr, std::chrono::seconds(5)).status == 200) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // SIGTERM, and a wait of up to 30 s (then SIGKILL). start() again afterwards works.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    waitWithDeadline(pid_, std::chrono::seconds(30));
    pid_ = 0;
  }

  // SIGKILL and reap, as a crash would (for reconciliation tests). start() again afterwards works.
  void kill9() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
  }

  // One request through the project's own client (a fresh connection each time).
  Reply call(const std::string& method, const std::string& target, const nlohmann::json& body = nullptr,
             std::chrono::milliseconds timeout = std::chrono::seconds(120)) const {
    api::Client client(socket(), timeout);
    auto response = client.send({method, target, body.is_null() ? std::string() : body.dump()});
    if (!response) return {0, nlohmann::json{{"transport", response.error().message()}}};
    return {response->status, nlohmann::json::parse(response->body, nullptr, false)};
  }

  // A call that must answer `status`; the test fails otherwise, with the log's tail. The body.
  nlohmann::json must(const std::string& method, const std::string& target, const nlohmann::json& body,
                      int status = 201) const {
    Reply reply = call(method, target, body);
    EXPECT_EQ(reply.status, status) << method << " " << target << " " << body.dump() << " → "
                                    << reply.body.dump() << "\n"
                                    << logTail();
    return reply.body;
  }

  // GET /v1/KIND's list ("instances", "vpcs", "route-tables", ...); empty when the call failed.
  nlohmann::json list(const std::string& kind) const {
    Reply reply = call("GET", "/v1/" + kind);
    if (reply.status != 200 || !reply.body.is_object() || !reply.body.contains(kind)) {
      return nlohmann::json::array();
    }
    return reply.body[kind];
  }
  nlohmann::json instances() const { return list("instances"); }

  // Polls GET /v1/instances/NAME every 100 ms until its state is no longer `state` (e.g. "starting"), at
  // most `deadline`. The last answer.
  nlohmann::json waitWhile(const std::string& name, const std::string& state,
                           std::chrono::milliseconds deadline = std::chrono::seconds(120)) const {
    auto until = std::chrono::steady_clock::now() + deadline;
    nlohmann::json instance;
    while (std::chrono::steady_clock::now() < until) {
      instance = call("GET", "/v1/instances/" + name).body;
      if (!instance.is_object() || instance.value("state", "") != state) return instance;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return instance;
  }

  // Force-removes every instance, then every network object, dependants first, through the API. Returns
  // the deletes that failed in the last pass (the earlier ones may fail on dependants deleted later).
  std::vector<std::string> removeEverything() const {
    std::vector<std::string> failed;
    auto remove = [&](const std::string& target) {
      Reply reply = call("DELETE", target);
      if (reply.status != 200) {
        failed.push_back(fmt::format("DELETE {} → {} {}", target, reply.status, reply.body.dump()));
      }
    };
    for (const nlohmann::json& instance : instances()) {
      remove(fmt::format("/v1/instances/{}?force=true", instance["name"].get<std::string>()));
    }
    if (!instances().empty()) return failed;
    for (int pass = 0; pass < 3; ++pass) {
      failed.clear();
      // Load balancers before the target groups they forward to, both before their VPC's objects.
      for (auto [kind, key] :
           {std::pair{"load-balancers", "load_balancers"}, std::pair{"target-groups", "target_groups"}}) {
        Reply listed = call("GET", fmt::format("/v1/{}", kind));
        if (listed.status != 200 || !listed.body.contains(key)) continue;
        for (const nlohmann::json& object : listed.body[key]) {
          remove(fmt::format("/v1/{}/{}", kind, object["name"].get<std::string>()));
        }
      }
      for (const nlohmann::json& table : list("route-tables")) {
        for (const nlohmann::json& route : table.value("routes", nlohmann::json::array())) {
          if (route.value("target_type", "") == "local") continue;
          remove(fmt::format("/v1/route-tables/{}/routes/{}", table["name"].get<std::string>(),
                             route["destination"].get<std::string>()));
        }
      }
      for (const char* kind : {"nat-gateways", "internet-gateways", "subnets", "route-tables",
                               "security-groups", "network-acls", "peerings", "vpcs"}) {
        for (const nlohmann::json& object : list(kind)) {
          // The main route tables, default ACLs and groups go with their VPC.
          if (object.value("main", false) || object.value("default", false)) continue;
          remove(fmt::format("/v1/{}/{}", kind, object["name"].get<std::string>()));
        }
      }
      if (list("vpcs").empty()) break;
    }
    return failed;
  }

  // Starts `corral --socket SOCKET ARGS` with stdout in cliOut() and stderr in cliErr(); the caller waits
  // for the pid (or signals it first). -1 when it could not be started.
  pid_t spawnCli(std::vector<std::string> args) const {
    args.insert(args.begin(), {CORRAL_CLI_PATH, "--socket", socket()});
    return spawnProcess(args, dir_ + "/cli.out", dir_ + "/cli.err", OutputMode::Truncate);
  }
  // Runs `corral --socket SOCKET ARGS` to its end (killed past `deadline`).
  CliRun cli(std::vector<std::string> args,
             std::chrono::milliseconds deadline = std::chrono::seconds(180)) const {
    CliRun run;
    pid_t pid = spawnCli(std::move(args));
    if (pid <= 0) return run;
    std::optional<int> status = waitWithDeadline(pid, deadline);
    run.code = status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
    run.out = cliOut();
    run.err = cliErr();
    return run;
  }
  std::string cliOut() const { return readFile(dir_ + "/cli.out"); }
  std::string cliErr() const { return readFile(dir_ + "/cli.err"); }

  std::string socket() const { return dir_ + "/s.sock"; }
  std::string dir() const { return dir_; }
  std::string resolverDir() const { return dir_ + "/resolvers"; }
  std::string containersDir() const { return dir_ + "/state/containers"; }
  std::string vmsDir() const { return dir_ + "/state/vms"; }
  std::string acceleratorCache() const { return dir_ + "/accelerator.json"; }
  std::string cgroupParent() const { return fmt::format("corral-test-{}-{}", name_, ::getpid()); }
  // corrald's stdout and stderr, over all its starts.
  std::string log() const { return readFile(dir_ + "/corrald.out"); }
  // The last 3000 characters of log(), for failure messages.
  std::string logTail() const {
    std::string all = log();
    return all.size() > 3000 ? "...\n" + all.substr(all.size() - 3000) : all;
  }
  // The running daemon's pid; 0 when it is not running.
  pid_t pid() const { return pid_; }

 private:
  std::string name_;
  std::vector<std::string> extraArgs_;
  std::string hostNetns_;  // playHostIn
  std::string dir_;
  pid_t pid_ = 0;
  bool everStarted_ = false;
};

// `command` run in instance `name` through POST /v1/instances/NAME/exec: {exit_code (-1 when the answer has
// none), stdout followed by stderr}.
inline std::pair<int, std::string> execIn(const TestDaemon& daemon, const std::string& name,
                                          const std::vector<std::string>& command) {
  Reply reply = daemon.call("POST", "/v1/instances/" + name + "/exec", {{"command", command}});
  EXPECT_EQ(reply.status, 200) << reply.body.dump();
  int code = reply.body.contains("exit_code") && reply.body["exit_code"].is_number()
                 ? reply.body["exit_code"].get<int>()
                 : -1;
  return {code, reply.body.value("stdout", "") + reply.body.value("stderr", "")};
}

}  // namespace corral::testing
