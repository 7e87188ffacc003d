// What a user asks an instance (a container or a VM) to be: the one schema filled from CLI flags, the JSON
// API and, later, a config file. Pure: container/ and daemon/ map it to their own configs and check what
// needs the host (images, devices, CPUs) there.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace corral::schema {

enum class InstanceKind { container, vm };
std::string_view instanceKindName(InstanceKind kind);  // "container" | "vm": the API's and the store's text
Result<InstanceKind> parseInstanceKind(std::string_view text, std::string_view field = "kind");

// What the "seccomp" field chooses: Docker's default policy, none, or an OCI/Docker JSON profile file
// (container/seccomp.h reads it; VMs take only the default, having their own kernel).
enum class SeccompMode { dockerDefault, unconfined, profileFile };
struct SeccompChoice {
  SeccompMode mode = SeccompMode::dockerDefault;
  std::string profilePath;  // profileFile: an absolute path
  bool operator==(const SeccompChoice&) const = default;
};
// "default" | "unconfined" | an absolute path; anything else is InvalidArgument naming `field`.
Result<SeccompChoice> parseSeccompChoice(std::string_view text, std::string_view field = "seccomp");

struct InstanceSpec {
  std::string name;
  InstanceKind kind = InstanceKind::container;
  std::string image = "busybox";      // an image name under the daemon's image directory
  std::vector<std::string> command;   // argv; empty: the image's default, /bin/sh
  std::vector<std::string> env;       // "K=V"
  std::string hostname;               // empty: the name
  std::optional<std::string> memory;  // "64M", "1G", "1048576"; absent: no limit
  std::optional<double> cpus;         // 0.5 = half a CPU; absent: no limit
  std::optional<int64_t> pids;        // max processes; absent: no limit
  std::vector<std::string> capAdd;
  std::vector<std::string> capDrop;
  std::string seccomp = "default";  // parseSeccompChoice's text: "default" | "unconfined" | a profile path
  bool userNamespace = false;       // root inside maps to an unprivileged host range
  // The process's user, overriding the image's User: "USER[:GROUP]", each a name or a number, resolved
  // through the image's /etc/passwd and /etc/group as the image's User is (images/oci/launch.h). Empty:
  // the image's.
  std::string user;
  std::vector<std::string>
      devices;                // host devices: "HOST_PATH[:CONTAINER_PATH][:PERMS]" (container/devices.h)
  bool init = false;          // --init: corral-reaper is PID 1, runs the command and reaps orphans
  bool removeOnExit = false;  // --rm
  // Containers: the first process gets a pty of the container's devpts (and /dev/console), whose master
  // corrald keeps for `corral console` (-t); its stdin stays open for the console's client (-i).
  bool tty = false;
  bool stdinOpen = false;
  // VMs: "corral" (corral's minimal kernel, images/build-guest-kernel), "debian" (the image's
  // vm/vmlinuz) or an absolute path; empty: corral's when built, else Debian's.
  std::string kernel;
  std::string machine;        // VMs: "microvm" | "pc"; empty: microvm for corral's kernel, else pc
  std::string initrd;         // VMs: an initramfs instead of the image's vm/initramfs.img
  // VMs: restored from a snapshot of a booted guest shared by every VM with the same kernel, initramfs,
  // machine, memory and vCPUs (made by the first such run), then given their own identity by the agent.
  bool warm = false;
  // Networking: without a subnet the instance has only loopback. corrald validates these against the VPC
  // model and writes the assigned addresses back (ip, public_address), so an instance keeps them across
  // stop/start and daemon restarts, like an AWS instance's private IP.
  std::string subnet;
  std::string ip;                           // the private address wanted; empty: the lowest free one
  std::vector<std::string> securityGroups;  // empty: the VPC's default group
  std::vector<std::string> publish;         // "8080:80" or "5353:53/udp": gateway port → instance port
  std::optional<bool> publicIp;             // 1:1 public address; absent: the subnet's map_public_ip
  std::string publicAddress;                // the public address wanted (or assigned)
  // What the instance metadata serves at /latest/user-data: base64 (as AWS's API takes it) of at most
  // kMaxUserDataBytes bytes. Empty: none.
  std::string userData;
  // The group (daemon/groups.h) this instance is a member of: set by corrald on the members it launches,
  // refused in a user's POST /v1/instances, so a user's own instance is never taken for a member.
  std::string group;
  // A cluster host (docs/cluster.md): the host to run on, `corral run --host`; empty: the host of the
  // subnet's availability zone with the fewest instances (this one when it is such a host), or this host
  // without a subnet. A single-host corrald refuses it.
  std::string host;

  bool operator==(const InstanceSpec&) const = default;
};

// "64M" → 67108864. Accepts an integer with an optional K/M/G/T suffix (powers of 1024, also "Ki"/"MiB"
// spellings may be refused); refuses 0, negatives, fractions, absurd sizes (> 1 TiB) with field "memory".
Result<uint64_t> parseMemorySize(std::string_view text);

inline constexpr size_t kMaxUserDataBytes = 16 * 1024;  // AWS's limit, before base64

// RFC 1123 label: 1-63 letters, digits and '-', not starting or ending with '-' (field "hostname").
Status validateHostname(std::string_view hostname);

}  // namespace corral::schema
