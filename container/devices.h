// Which devices a container may use, as data: the allow list its cgroup enforces (everything else is
// denied; runc's and crun's defaults), the nodes its /dev gets, and `--device HOST[:CONTAINER][:PERMS]`.
// Pure: rendered to v1 `devices.allow` lines here and to a BPF program in device_bpf.h.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace corral::container {

enum class DeviceType : char { Char = 'c', Block = 'b' };

// Access bits, as the kernel's devices cgroup knows them (and BPF_DEVCG_ACC_*: the same values).
enum DeviceAccess : uint8_t { kDeviceMknod = 1, kDeviceRead = 2, kDeviceWrite = 4 };
constexpr uint8_t kDeviceAllAccess = kDeviceRead | kDeviceWrite | kDeviceMknod;

// One allow rule: "c 1:3 rwm". An absent major or minor is the wildcard '*'.
struct DeviceRule {
  DeviceType type = DeviceType::Char;
  std::optional<uint32_t> major;
  std::optional<uint32_t> minor;
  uint8_t access = kDeviceAllAccess;
  bool operator==(const DeviceRule&) const = default;
};

// mknod of any node (opening it is still refused), then null, zero, full, random, urandom, tty, ptmx and
// the pts terminals: runc's and crun's default list.
std::vector<DeviceRule> defaultDeviceRules();

// "rwm" ↔ bits. parseDeviceAccess refuses empty text, repeats and letters other than r, w and m.
std::string deviceAccessText(uint8_t access);
Result<uint8_t> parseDeviceAccess(std::string_view text, const std::string& field);

// The v1 `devices.allow` line: "c 1:3 rwm", "c *:* m", "c 136:* rwm".
std::string deviceRuleLine(const DeviceRule& rule);
// The inverse, for rules given as text; errors name `field`.
Result<DeviceRule> parseDeviceRule(std::string_view line, const std::string& field);

// What the kernel decides for a request under deny-all plus `rules`: allowed when one rule matches the
// type, major and minor and grants every requested bit. Both renderings implement exactly this.
bool deviceAccessAllowed(const std::vector<DeviceRule>& rules, DeviceType type, uint32_t major,
                         uint32_t minor, uint8_t access);

// A node in the container's /dev. Without a user namespace the child makes it with mknod(2) (its own
// inode: chmod inside cannot reach the host's); in one, where mknod is refused, it binds `hostPath`.
struct DeviceNode {
  std::string path;      // inside the container: "/dev/null", "/dev/net/tun"
  std::string hostPath;  // the host's node of the same device: "/dev/null"
  DeviceType type = DeviceType::Char;
  uint32_t major = 0;
  uint32_t minor = 0;
  mode_t mode = 0666;  // permission bits only
  uid_t uid = 0;
  gid_t gid = 0;
  uint8_t access = kDeviceAllAccess;  // what the container may do with it (its allow rule)
  bool operator==(const DeviceNode&) const = default;
};

// null, zero, full, random, urandom and tty (ptmx is pts/ptmx, from the container's own devpts).
std::vector<DeviceNode> defaultDeviceNodes();
// The allow rule for a node: its type, major:minor and access.
DeviceRule deviceNodeRule(const DeviceNode& node);

// `--device HOST[:CONTAINER][:PERMS]`, as docker reads it: "/dev/fuse", "/dev/fuse:r",
// "/dev/fuse:/dev/f", "/dev/fuse:/dev/f:rw". PERMS default to "rwm", CONTAINER to HOST.
struct DeviceMapping {
  std::string hostPath;
  std::string containerPath;
  uint8_t access = kDeviceAllAccess;
  bool operator==(const DeviceMapping&) const = default;
};
// Checks the form only (no I/O): absolute host path; container path normalized, under /dev/ and not one
// of the paths corral puts there itself (null, pts/, shm/, ...); perms a subset of "rwm".
Result<DeviceMapping> parseDeviceMapping(std::string_view text, const std::string& field);

// Looks at the host's node (stat(2), following symlinks: /dev/disk/by-id/...): it must be a character or
// block device. The node takes the host's numbers, mode and owner, as docker does.
Result<DeviceNode> deviceNodeFromHost(const DeviceMapping& mapping, const std::string& field);

}  // namespace corral::container
