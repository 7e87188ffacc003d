// Named crash points for the crash tests: CORRAL_FAILPOINT("container.after-exec") kills the calling process
// with SIGKILL, as a crash there would, when the environment variable CORRAL_FAILPOINTS (comma-separated
// names) names it. Always compiled in; when the variable is unset a point costs one load and a compare.
// Every name is in kFailpoints (checked at compile time), which `corrald --list-failpoints` prints, so the
// crash test (tests/integration/crash_test.cc) and the code cannot drift apart. See docs/api.md.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cstdlib>
#include <string_view>

namespace corral::failpoint {

// Each is an effect boundary of an instance's lifecycle (or of a process corrald runs), in the order the
// effects happen.
inline constexpr std::string_view kFailpoints[] = {
    // Containers: run and start (daemon/instances.cc, daemon/container_driver.cc, container/start.cc)
    "run.after-insert",            // the row says "starting" (a VM's: "created"); nothing else exists yet
    "start.after-mark-starting",   // start of a stopped container: the row says "starting"
    "container.after-mount",       // the overlay is mounted at bundle/rootfs
    "container.after-cgroup",      // its cgroups exist, empty
    "container.after-clone",       // its init exists in its cgroups (NIC plugged in), waiting for "go"
    "container.after-exec",        // the command runs; the row still says "starting"
    "start.after-record-running",  // the row says "running"
    // Containers: stop and rm
    "stop.after-signal",        // SIGTERM sent (and the cgroup killed when the grace ran out)
    "exit.after-cgroup-kill",   // the supervisor saw init exit and killed its cgroup; the row says running
    "rm.after-kill",            // a forced rm killed the cgroup; the row is still there
    "rm.after-bundle-aside",    // the bundle is renamed aside (its name is free), not yet deleted
    "rm.after-bundle-removed",  // the bundle is gone; the row is still there
    // VMs (daemon/vm_driver.cc)
    "vm.before-define",          // the row is written; no domain yet
    "vm.after-define",           // the domain runs; the row does not say "starting" yet
    "vm.after-record-starting",  // the row says "starting"; the guest boots
    "vm.stop.before-destroy",    // a stop asked the guest to power off; the domain is about to be destroyed
    "vm.rm.after-destroy",       // a forced rm destroyed the domain; the row is still there
    // The processes corrald runs for a VPC (daemon/vpc_resolvers.cc, daemon/load_balancer_processes.cc)
    "resolver.before-pid-file",  // a VPC resolver's dnsmasq is forked, waiting at its gate; no pid file yet
    "resolver.after-start",      // the dnsmasq runs and its pid file names it
    "lb.before-pid-file",        // a load balancer's HAProxy is forked, waiting at its gate; no pid file yet
    "lb.after-start",            // the HAProxy answers and its pid file names it
};

consteval bool known(std::string_view name) {
  for (std::string_view failpoint : kFailpoints)
    if (failpoint == name) return true;
  return false;
}

// The armed names, read once (the variable is set when the process starts, never later).
inline const char* armed() {
  static const char* names = std::getenv("CORRAL_FAILPOINTS");
  return names;
}

inline void hit(std::string_view name) {
  const char* names = armed();
  if (names == nullptr) return;
  std::string_view rest(names);
  while (!rest.empty()) {
    size_t comma = rest.find(',');
    if (rest.substr(0, comma) == name) {
      // Only async-signal-safe calls: a point may sit where other threads hold locks.
      const char prefix[] = "failpoint ";
      [[maybe_unused]] ssize_t a = ::write(STDERR_FILENO, prefix, sizeof prefix - 1);
      [[maybe_unused]] ssize_t b = ::write(STDERR_FILENO, name.data(), name.size());
      [[maybe_unused]] ssize_t c = ::write(STDERR_FILENO, ": SIGKILL\n", 10);
      ::kill(::getpid(), SIGKILL);
      ::pause();
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
}

}  // namespace corral::failpoint

#define CORRAL_FAILPOINT(name)                                                                   \
  do {                                                                                           \
    static_assert(::corral::failpoint::known(name), "unknown failpoint: add it to kFailpoints"); \
    ::corral::failpoint::hit(name);                                                              \
  } while (false)
