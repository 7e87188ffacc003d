// The per-container state directory: its lock, state.json, and the status derived from the live process.
#include "runtime/state.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "container/cgroup_mode.h"

namespace corral::runtime {

using nlohmann::json;

const char* statusName(ContainerStatus status) {
  switch (status) {
    case ContainerStatus::Creating:
      return "creating";
    case ContainerStatus::Created:
      return "created";
    case ContainerStatus::Running:
      return "running";
    case ContainerStatus::Paused:
      return "paused";
    case ContainerStatus::Stopped:
      return "stopped";
  }
  return "unknown";
}

Result<UniqueFd> lockStateDir(const StateDir& dir) {
  UniqueFd fd(::open(dir.dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return fail(notFound("container \"{}\" does not exist", dir.id));
    return fail(systemError(errno, fmt::format("open(\"{}\")", dir.dir().string())));
  }
  while (::flock(fd.get(), LOCK_EX) != 0) {
    if (errno != EINTR) return fail(systemError(errno, fmt::format("flock(\"{}\")", dir.dir().string())));
  }
  return fd;
}

Status writeFileAtomically(const std::filesystem::path& path, const std::string& text, mode_t mode) {
  const std::string temporary = path.string() + ".tmp";
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", temporary)));
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, fmt::format("write(\"{}\")", temporary)));
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return fail(systemError(errno, fmt::format("fsync(\"{}\")", temporary)));
  if (::rename(temporary.c_str(), path.c_str()) != 0)
    return fail(systemError(errno, fmt::format("rename(\"{}\", \"{}\")", temporary, path.string())));
  return {};
}

Result<std::string> readTextFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return fail(systemError(errno, fmt::format("open(\"{}\")", path.string())));
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

std::string nowRfc3339() {
  auto now = std::chrono::system_clock::now();
  auto seconds = std::chrono::system_clock::to_time_t(now);
  auto nanos =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count() % 1000000000;
  std::tm utc{};
  ::gmtime_r(&seconds, &utc);
  char text[64];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &utc);
  return fmt::format("{}.{:09d}Z", text, nanos);
}

Status saveState(const StateDir& dir, const ContainerState& state) {
  json record = {{"id", state.id},
                 {"ociVersion", state.ociVersion},
                 {"pid", state.pid},
                 {"pidStartTime", state.pidStartTime},
                 {"bundle", state.bundle.string()},
                 {"rootfs", state.rootfs.string()},
                 {"created", state.created},
                 {"owner", state.owner},
                 {"annotations", state.annotations},
                 {"cgroupName", state.cgroupName},
                 {"cgroupParent", state.cgroupParent}};
  return writeFileAtomically(dir.stateFile(), record.dump() + "\n", 0600);
}

Result<ContainerState> loadState(const StateDir& dir) {
  std::error_code error;
  if (!std::filesystem::exists(dir.dir(), error))
    return fail(notFound("container \"{}\" does not exist", dir.id));
  auto text = readTextFile(dir.stateFile());
  if (!text) return fail(text.error().wrap(fmt::format("container \"{}\": state", dir.id)));
  try {
    json record = json::parse(*text);
    ContainerState state;
    state.id = record.at("id").get<std::string>();
    state.ociVersion = record.at("ociVersion").get<std::string>();
    state.pid = record.at("pid").get<pid_t>();
    state.pidStartTime = record.at("pidStartTime").get<uint64_t>();
    state.bundle = record.at("bundle").get<std::string>();
    state.rootfs = record.at("rootfs").get<std::string>();
    state.created = record.at("created").get<std::string>();
    state.owner = record.at("owner").get<uid_t>();
    state.annotations = record.at("annotations").get<std::map<std::string, std::string>>();
    state.cgroupName = record.at("cgroupName").get<std::string>();
    state.cgroupParent = record.at("cgroupParent").get<std::string>();
    return state;
  } catch (const json::exception& e) {
    return fail(internalError("container \"{}\": state file \"{}\" is damaged: {}", dir.id,
                              dir.stateFile().string(), e.what()));
  }
}

Result<LockedState> lockAndLoadState(const StateDir& dir) {
  auto lock = lockStateDir(dir);
  if (!lock) return fail(lock.error());
  auto state = loadState(dir);
  if (!state) return fail(state.error());
  return LockedState{std::move(*lock), std::move(*state)};
}

std::optional<uint64_t> processStartTime(pid_t pid) {
  if (pid <= 0) return std::nullopt;
  auto text = readTextFile(fmt::format("/proc/{}/stat", pid));
  if (!text) return std::nullopt;
  // "PID (COMM) S ...": the command may hold spaces and parentheses; fields count from the last ')'.
  size_t close = text->rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream fields(text->substr(close + 2));
  std::string field;
  std::string stateLetter;
  fields >> stateLetter;
  if (stateLetter == "Z" || stateLetter == "X") return std::nullopt;
  // Field 3 was the state; the start time is field 22.
  for (int index = 4; index <= 22; ++index) {
    if (!(fields >> field)) return std::nullopt;
  }
  try {
    return std::stoull(field);
  } catch (...) {
    return std::nullopt;
  }
}

bool processAlive(const ContainerState& state) {
  auto start = processStartTime(state.pid);
  return start && *start == state.pidStartTime;
}

container::CgroupOptions cgroupOptions(const ContainerState& state) {
  container::CgroupOptions options;
  options.parent = state.cgroupParent;
  return options;
}

Result<std::unique_ptr<container::Cgroup>> openContainerCgroup(const ContainerState& state) {
  auto options = cgroupOptions(state);
  auto mode = container::detectCgroupMode(options.root);
  if (!mode) return fail(mode.error());
  auto cgroup = container::openCgroup(*mode, state.cgroupName, options);
  if (cgroup) (*cgroup)->release();
  return cgroup;
}

ContainerStatus currentStatus(const StateDir& dir, const ContainerState& state) {
  if (state.pid == 0) return ContainerStatus::Creating;
  if (!processAlive(state)) return ContainerStatus::Stopped;
  std::error_code error;
  if (std::filesystem::exists(dir.execFifo(), error)) return ContainerStatus::Created;
  if (auto cgroup = openContainerCgroup(state)) {
    auto frozen = (*cgroup)->frozen();
    if (frozen && *frozen) return ContainerStatus::Paused;
  }
  return ContainerStatus::Running;
}

std::string stateJson(const ContainerState& state, ContainerStatus status, bool pretty) {
  json document = {
      {"ociVersion", state.ociVersion},  {"id", state.id},
      {"status", statusName(status)},    {"pid", status == ContainerStatus::Stopped ? 0 : state.pid},
      {"bundle", state.bundle.string()}, {"rootfs", state.rootfs.string()},
      {"created", state.created},        {"owner", state.owner == 0 ? "root" : std::to_string(state.owner)}};
  if (!state.annotations.empty()) document["annotations"] = state.annotations;
  return pretty ? document.dump(2) : document.dump();
}

}  // namespace corral::runtime
