// corral-runtime's record of one container under --root (ROOT/ID/state.json, written tmp-then-rename),
// the lock every command takes on it, and the container's status as the runtime spec names it, derived
// each time from the process, the exec fifo and the freezer rather than stored.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>

#include "container/cgroup.h"
#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::runtime {

enum class ContainerStatus { Creating, Created, Running, Paused, Stopped };
const char* statusName(ContainerStatus status);

struct ContainerState {
  std::string id;
  std::string ociVersion;
  pid_t pid = 0;              // 0 while creating
  uint64_t pidStartTime = 0;  // /proc/PID/stat field 22: tells a reused pid from ours
  std::filesystem::path bundle;
  std::filesystem::path rootfs;
  std::string created;  // RFC 3339, UTC
  uid_t owner = 0;
  std::map<std::string, std::string> annotations;
  std::string cgroupName, cgroupParent;
};

struct StateDir {
  std::filesystem::path root;  // --root
  std::string id;
  std::filesystem::path dir() const { return root / id; }
  std::filesystem::path stateFile() const { return dir() / "state.json"; }
  std::filesystem::path configFile() const { return dir() / "config.json"; }
  std::filesystem::path execFifo() const { return dir() / "exec.fifo"; }
};

// flock(LOCK_EX) on the container's directory, held until destruction: one command at a time per
// container (runc holds the same kind of lock).
Result<UniqueFd> lockStateDir(const StateDir& dir);
Status saveState(const StateDir& dir, const ContainerState& state);
// NotFound "container \"ID\" does not exist" when there is no such container.
Result<ContainerState> loadState(const StateDir& dir);
// The lock and then the state: what most commands begin with. `state` is valid while `lock` is held.
struct LockedState {
  UniqueFd lock;
  ContainerState state;
};
Result<LockedState> lockAndLoadState(const StateDir& dir);

// The start time of `pid` from /proc/PID/stat; nullopt when it is gone or a zombie.
std::optional<uint64_t> processStartTime(pid_t pid);
bool processAlive(const ContainerState& state);

container::CgroupOptions cgroupOptions(const ContainerState& state);
Result<std::unique_ptr<container::Cgroup>> openContainerCgroup(const ContainerState& state);
ContainerStatus currentStatus(const StateDir& dir, const ContainerState& state);

// The runtime spec's state JSON (ociVersion, id, status, pid, bundle, annotations; runc's rootfs, created
// and owner too).
std::string stateJson(const ContainerState& state, ContainerStatus status, bool pretty);

// Writes `text` to `path` through a temporary file in the same directory and rename(2).
Status writeFileAtomically(const std::filesystem::path& path, const std::string& text, mode_t mode = 0644);
Result<std::string> readTextFile(const std::filesystem::path& path);
std::string nowRfc3339();

}  // namespace corral::runtime
