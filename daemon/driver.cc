// What every driver shares (daemon/driver.h): the host's drivers, run ids, the "lost" record, a process's
// start time.
#include "daemon/driver.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <charconv>
#include <ctime>
#include <string_view>

#include "core/text.h"
#include "core/unique_fd.h"
#include "daemon/container_driver.h"
#include "daemon/vm_driver.h"

namespace corral::daemon {

InstanceDrivers hostDrivers(const InstanceOptions& options) {
  InstanceDrivers drivers;
  drivers[schema::InstanceKind::container] = std::make_unique<ContainerDriver>(options);
  drivers[schema::InstanceKind::vm] = std::make_unique<VmDriver>(options);
  return drivers;
}

std::string_view acceleratorModeName(AcceleratorMode mode) {
  switch (mode) {
    case AcceleratorMode::automatic:
      return "auto";
    case AcceleratorMode::kvm:
      return "kvm";
    case AcceleratorMode::tcg:
      return "tcg";
  }
  return "auto";
}

Result<AcceleratorMode> parseAcceleratorMode(std::string_view text) {
  for (AcceleratorMode mode : {AcceleratorMode::automatic, AcceleratorMode::kvm, AcceleratorMode::tcg}) {
    if (text == acceleratorModeName(mode)) return mode;
  }
  return fail(invalidField("accelerator", "\"{}\" is not one of auto, kvm, tcg", terminalSafe(text)));
}

std::string_view vmEngineModeName(VmEngineMode mode) {
  switch (mode) {
    case VmEngineMode::automatic:
      return "auto";
    case VmEngineMode::libvirt:
      return "libvirt";
    case VmEngineMode::qemu:
      return "qemu";
  }
  return "auto";
}

Result<VmEngineMode> parseVmEngineMode(std::string_view text) {
  for (VmEngineMode mode : {VmEngineMode::automatic, VmEngineMode::libvirt, VmEngineMode::qemu}) {
    if (text == vmEngineModeName(mode)) return mode;
  }
  return fail(invalidField("vm-engine", "\"{}\" is not one of auto, libvirt, qemu", terminalSafe(text)));
}

RunId nextRunId() {
  static std::atomic<RunId> last{0};
  return ++last;
}

void markLost(InstanceRow& row, std::string note) {
  row.state = InstanceState::stopped;
  row.finishedAt = static_cast<int64_t>(std::time(nullptr));
  row.exitCode.reset();
  row.exitSignal.reset();
  row.exitReason = ExitReason::lost;
  row.exitNote = std::move(note);
  row.pid.reset();
  row.pidStartTime.reset();
}

std::optional<int64_t> processStartTime(pid_t pid) {
  UniqueFd fd(::open(fmt::format("/proc/{}/stat", pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return std::nullopt;
  char buffer[4096];
  ssize_t got = ::read(fd.get(), buffer, sizeof buffer - 1);
  if (got <= 0) return std::nullopt;
  std::string text(buffer, static_cast<size_t>(got));
  // The command (field 2) may contain spaces and parentheses: fields resume after the last ')'.
  size_t close = text.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  // After ") " come fields 3, 4, ... separated by single spaces: field 22 is the 20th.
  std::string_view rest(text);
  rest.remove_prefix(close + 1);
  std::string_view field;
  for (int index = 3; index <= 22; ++index) {
    while (rest.starts_with(' ')) rest.remove_prefix(1);
    size_t space = rest.find(' ');
    field = rest.substr(0, space);
    if (field.empty()) return std::nullopt;
    rest = space == std::string_view::npos ? std::string_view{} : rest.substr(space);
  }
  int64_t value = 0;
  auto [end, ec] = std::from_chars(field.data(), field.data() + field.size(), value);
  if (ec != std::errc{} || end != field.data() + field.size()) return std::nullopt;
  return value;
}

}  // namespace corral::daemon
