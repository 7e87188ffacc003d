// VmDriver (daemon/vm_driver.h): domains through libvirt, the guest agent, the accelerator probe.
#include "daemon/vm_driver.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>

#include "core/failpoint.h"
#include "core/log.h"
#include "core/unique_fd.h"
#include "daemon/vm_image.h"
#include "daemon/vm_snapshot.h"
#include "images/oci/digest.h"
#include "vmm/agent.h"
#include "vmm/agent_protocol.h"
#include "vmm/boot_files.h"
#include "vmm/domain_xml.h"
#include "vmm/serial_console.h"

namespace corral::daemon {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr auto kExecTimeout = std::chrono::seconds(60);
constexpr auto kAgentReconnect = std::chrono::seconds(3);
constexpr auto kSessionOpen = std::chrono::seconds(10);  // the guest answers "open" once the program runs
constexpr auto kSetClockAnswer = std::chrono::seconds(5);
// stop --save's file in the VM's directory (libvirt's save image: the domain XML, device state and
// memory). Present: the next start restores it instead of booting, then removes it (the guest runs on).
// One whose restore failed is renamed kRejectedStateFile, kept for a look but never used again.
constexpr std::string_view kSavedStateFile = "saved.state";
constexpr std::string_view kRejectedStateFile = "saved.state.rejected";
// Warm snapshots: vmsDir/.snapshots/KEY/{saved.state,template.json,console.log} (no instance name starts
// with a dot).
constexpr std::string_view kSnapshotsDir = ".snapshots";
constexpr std::string_view kSnapshotRecordFile = "template.json";
constexpr std::string_view kSnapshotWorkPrefix = "new-";  // a template being made: .snapshots/new-KEY8
constexpr std::string_view kWarmStateFile =
    "warm.state";  // a clone's copy, its uuid patched, while restoring
// The direct engine's run directories (vmm/qemu.h): vmsDir/.qemu/HASH/.
constexpr std::string_view kQemuRunDir = ".qemu";

// The shared saved state copied for one clone (copy_file_range: a reflink where the filesystem has them),
// its header's domain XML and migration cookie made the clone's (names, paths, tap, uuid) in place, each
// padded with NULs to its old length: libvirt refuses a restore whose XML changes the name or uuid, and two
// domains may not share a uuid.
Status copySavedStateForClone(const std::filesystem::path& from, const std::filesystem::path& to,
                              const std::function<std::string(std::string)>& makeClones) {
  std::error_code ec;
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing, ec);
  if (ec)
    return fail(systemError(ec.value(), fmt::format("copy \"{}\" to \"{}\"", from.string(), to.string())));
  UniqueFd fd(::open(to.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", to.string())));
  unsigned char fixed[kSaveHeaderBytes];
  if (::pread(fd.get(), fixed, sizeof(fixed), 0) != static_cast<ssize_t>(sizeof(fixed)))
    return fail(internalError("\"{}\": shorter than a save header", from.string()));
  uint32_t length = 0, cookieOffset = 0;
  std::memcpy(&length, fixed + 20, sizeof(length));
  std::memcpy(&cookieOffset, fixed + 32, sizeof(cookieOffset));
  if (length == 0 || length > (16u << 20) || cookieOffset > length)
    return fail(internalError("\"{}\": a save header's XML length of {} bytes, cookie at {}", from.string(),
                              length, cookieOffset));
  std::string data(length, '\0');
  if (::pread(fd.get(), data.data(), length, kSaveHeaderBytes) != static_cast<ssize_t>(length))
    return fail(internalError("\"{}\": shorter than its header says", from.string()));
  const size_t xmlRoom = cookieOffset > 0 ? cookieOffset : length;
  for (const auto& [offset, room] : {std::pair<size_t, size_t>{0, xmlRoom}, {xmlRoom, length - xmlRoom}}) {
    if (room == 0) continue;
    const std::string part(data.c_str() + offset);  // NUL-terminated inside its room
    const std::string clone = makeClones(part);
    if (clone.size() >= room && clone != part)
      return fail(internalError("\"{}\": the clone's header XML ({} bytes) does not fit in {}", from.string(),
                                clone.size(), room));
    std::memcpy(data.data() + offset, clone.data(), clone.size());
    std::memset(data.data() + offset + clone.size(), 0, room - clone.size());
  }
  if (::pwrite(fd.get(), data.data(), length, kSaveHeaderBytes) != static_cast<ssize_t>(length))
    return fail(systemError(errno, fmt::format("pwrite(\"{}\")", to.string())));
  return {};
}
// QEMU's TCG translation cache (QEMU's default is 1 GiB, and what it fills stays resident), sized to the code
// the guest runs. Measured in vmm/README.md ("Idle memory: the last 30 MiB"): corral's kernel and
// the busybox initramfs boot and run the probe no slower with 16 MiB (7 MiB less idle RSS than with 32); a
// store image's userland (Debian's python) ran 1.6x slower with 16 than with 32, and faster again with 64.
constexpr uint64_t kTcgTranslationCacheMiB = 16;        // corral's kernel, the built-in busybox image
constexpr uint64_t kTcgTranslationCacheDebianMiB = 32;  // Debian's kernel, the built-in busybox image
constexpr uint64_t kTcgTranslationCacheImageMiB = 64;   // a store image's root filesystem

uint64_t tcgTranslationCacheMiB(const VmPlan& plan) {
  if (plan.rootImage) return kTcgTranslationCacheImageMiB;
  return plan.kernelSource == GuestKernel::corral ? kTcgTranslationCacheMiB : kTcgTranslationCacheDebianMiB;
}

int64_t now() {
  return static_cast<int64_t>(std::time(nullptr));
}

double msBetween(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::milli>(to - from).count();
}

std::string readSmallFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::string s = text.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

json textJson(const std::string& bytes) {
  return json::parse(json(bytes).dump(-1, ' ', false, json::error_handler_t::replace));
}

// The wall-clock time of a steady-clock point, in Unix milliseconds: how a boot's start survives a restart.
double unixMillisAt(Clock::time_point at) {
  auto wallNow = std::chrono::system_clock::now();
  auto wall = wallNow - std::chrono::duration_cast<std::chrono::system_clock::duration>(Clock::now() - at);
  return std::chrono::duration<double, std::milli>(wall.time_since_epoch()).count();
}

bool isActive(InstanceState state) {
  return state == InstanceState::starting || state == InstanceState::running;
}

// The host memory a running VM holds: the QEMU process's resident set (guest RAM it has touched plus QEMU
// itself). Null when unreadable: rendering an instance never fails on it.
json qemuUsage(int64_t pid) {
  UniqueFd fd(::open(fmt::format("/proc/{}/status", pid).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return nullptr;
  std::string text(16384, '\0');
  ssize_t length = ::read(fd.get(), text.data(), text.size());
  if (length <= 0) return nullptr;
  text.resize(static_cast<size_t>(length));
  size_t at = text.find("\nVmRSS:");
  if (at == std::string::npos) return nullptr;
  at = text.find_first_of("0123456789", at);
  if (at == std::string::npos) return nullptr;
  uint64_t kib = 0;
  auto [end, ec] = std::from_chars(text.data() + at, text.data() + text.size(), kib);
  if (ec != std::errc{}) return nullptr;
  return {{"memory_bytes", kib * 1024}, {"source", "qemu rss"}};
}

// The host's TSC rate in kHz, from /proc/cpuinfo's first "cpu MHz" (the TSC's rate on a host with an
// invariant TSC, which every KVM-capable x86 host has); nullopt when unreadable.
std::optional<uint64_t> hostTscKhz() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  std::string line;
  while (std::getline(cpuinfo, line)) {
    if (!line.starts_with("cpu MHz")) continue;
    size_t colon = line.find(':');
    if (colon == std::string::npos) return std::nullopt;
    double mhz = std::strtod(line.c_str() + colon + 1, nullptr);
    if (mhz <= 0) return std::nullopt;
    return static_cast<uint64_t>(mhz * 1000);
  }
  return std::nullopt;
}

// What corral's kernel is told on top of the common command line (vmm::corralKernelTuning); "" for another
// kernel. Under TCG the guest's TSC runs at the host's rate, but corral's kernel (no HPET, no ACPI PM timer)
// fails to calibrate it against the PIT on a loaded host, marks it unstable and falls back to jiffies: its
// clock then runs slow and the boot took ~10 s instead of ~6 s (raw QEMU, load 8; vmm/README.md).
std::string kernelTuning(const VmPlan& plan, const vmm::AcceleratorChoice& accel) {
  if (plan.kernelSource != GuestKernel::corral) return {};
  const bool tcg = accel.accelerator == vmm::Accelerator::Tcg;
  return vmm::corralKernelTuning(accel.accelerator, tcg ? hostTscKhz() : std::nullopt, plan.vcpus);
}

// What every VM of `plan` is, whatever it is called and wherever its files are: machine, memory, boot files,
// console and agent socket in `dir`; no disks, no NIC, no command line (the caller's).
vmm::DomainConfig planDomainConfig(const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                                   const std::string& domainName, const std::string& instanceName,
                                   const std::string& owner, const std::filesystem::path& dir) {
  return {.domainName = domainName,
          .instanceName = instanceName,
          .owner = owner,
          .accelerator = accel.accelerator,
          .machine = plan.machine,
          .memoryBytes = plan.memoryBytes,
          .vcpus = plan.vcpus,
          .kernel = plan.kernel,
          .initrd = plan.initrd,
          .cmdline = {},
          .consoleLog = dir / "console.log",
          .agentSocket = dir / "agent.sock",
          .consoleSocket = dir / "console.sock",
          .nic = std::nullopt,
          .disks = {},
          .tcgTranslationCacheMiB = tcgTranslationCacheMiB(plan),
          .freePageReporting = plan.kernelSource == GuestKernel::corral};
}

}  // namespace

struct VmDriver::Run {
  RunId id = 0;
  vmm::Hypervisor* engine = nullptr;  // the engine running its domain; null: not known (libvirtd away)
  std::string name;
  bool ended = false;  // under runsMutex_: its end was claimed (reported, or undone by the manager)
  json boot;           // the boot's steps as the start recorded them
  Clock::time_point received{}, domainStarted{};
  bool restored = false;  // resumed from stop --save's file or a warm snapshot, not booted
  std::optional<vmm::GuestIdentity> identity;  // warm: what set_identity gives the clone before it is ready
  std::timed_mutex agentMutex;                 // one agent request at a time
  std::optional<vmm::AgentClient> agent;

  // The agent channel (agentMutex held), connected again first where a failure dropped it.
  Result<vmm::AgentClient*> connectedAgent(const std::filesystem::path& socket) {
    if (!agent) {
      auto client = vmm::AgentClient::connect(socket, Clock::now() + kAgentReconnect);
      if (!client) return fail(client.error());
      agent = std::move(*client);
    }
    return &*agent;
  }
  // The attached console's token (under the instance's lock): QEMU serves one console client at a time.
  std::weak_ptr<void> console;
  std::optional<int> qemuPid;                    // when the engine knows it
  std::vector<std::filesystem::path> bootFiles;  // kernel and initramfs: paged out of QEMU once it is ready
};

namespace {

struct VmHandle : InstanceHandle {
  std::optional<VmPlan> plan;          // absent when the spec no longer validates
  std::shared_ptr<VmDriver::Run> run;  // while starting or running
  bool saved = false;                  // kSavedStateFile is there: the next start resumes it
};

VmHandle& own(InstanceHandle& handle) {
  return static_cast<VmHandle&>(handle);
}
const VmHandle& own(const InstanceHandle& handle) {
  return static_cast<const VmHandle&>(handle);
}

}  // namespace

std::string_view acceleratorStateName(AcceleratorState state) {
  switch (state) {
    case AcceleratorState::unknown:
      return "unknown";
    case AcceleratorState::probing:
      return "probing";
    case AcceleratorState::decided:
      return "decided";
  }
  return "unknown";
}

ExitReason exitReasonOf(vmm::StopReason reason) {
  switch (reason) {
    case vmm::StopReason::Shutdown:
      return ExitReason::shutdown;
    case vmm::StopReason::Destroyed:
      return ExitReason::destroyed;
    case vmm::StopReason::Crashed:
      return ExitReason::crashed;
    case vmm::StopReason::Failed:
      return ExitReason::failed;
    case vmm::StopReason::Saved:  // not by corral: its stop --save is an asked-for stop
    case vmm::StopReason::Other:
      return ExitReason::other;
  }
  return ExitReason::other;
}

VmDriver::VmDriver(InstanceOptions options) : options_(std::move(options)) {}

VmDriver::~VmDriver() {
  shutdown();
}

void VmDriver::bind(InstanceEvents& events) {
  events_ = &events;
  eventThread_ = std::thread([this] { handleDomainEvents(); });
}

void VmDriver::shutdown() {
  quit_ = true;
  eventsChanged_.notify_all();
  if (eventThread_.joinable()) eventThread_.join();
  if (acceleratorProbe_.joinable()) acceleratorProbe_.join();
  std::vector<std::thread> boots;
  {
    std::lock_guard lock(bootThreadsMutex_);
    boots.swap(bootThreads_);
  }
  for (std::thread& boot : boots) boot.join();
  {
    std::lock_guard lock(libvirtMutex_);
    libvirt_.reset();  // VMs keep running: their domains belong to libvirtd
  }
  std::lock_guard lock(qemuMutex_);
  qemu_.reset();  // VMs keep running: the next corrald's engine adopts them
}

std::filesystem::path VmDriver::directory(const std::string& name) const {
  return options_.vmsDir / name;
}

std::unique_ptr<InstanceHandle> VmDriver::newHandle() {
  return std::make_unique<VmHandle>();
}

Result<std::optional<images::Image>> VmDriver::pinnedImage(const std::string& name) const {
  if (!options_.imageStore || !options_.imageStore->hasPin(name)) return std::optional<images::Image>();
  auto pinned = options_.imageStore->pinned(name);
  if (!pinned && pinned.error().kind() == ErrorKind::NotFound) return std::optional<images::Image>();
  if (!pinned) return fail(pinned.error().wrap(fmt::format("image of instance \"{}\"", name)));
  return std::optional<images::Image>(std::move(*pinned));
}

Result<VmPlan> VmDriver::toPlan(const schema::InstanceSpec& spec) const {
  VmValidationContext context = hostVmContext(options_.imageDir, options_.imageStore.get());
  auto pinned = pinnedImage(spec.name);
  if (!pinned) return fail(pinned.error());
  context.pinnedImage = std::move(*pinned);
  return toVmPlan(spec, context);
}

Status VmDriver::configure(InstanceHandle& handle, const schema::InstanceSpec& spec, const InstanceRow*) {
  auto plan = toPlan(spec);
  if (!plan) return fail(plan.error());
  own(handle).plan = std::move(*plan);
  std::error_code ec;
  own(handle).saved = std::filesystem::exists(directory(spec.name) / kSavedStateFile, ec);
  return {};
}

void VmDriver::settleSpec(const InstanceHandle& handle, schema::InstanceSpec& spec) const {
  const VmHandle& vm = own(handle);
  if (!vm.plan) return;
  spec.kernel = vm.plan->kernelSource == GuestKernel::path
                    ? vm.plan->kernel.string()
                    : std::string(guestKernelName(vm.plan->kernelSource));
  spec.machine = std::string(vmm::machineName(vm.plan->machine));
}

// Under the manager's lock, so the name is the instance's: the image the plan found by name is pinned (or
// was at an earlier start: pin() then returns that one, and so does the plan).
Status VmDriver::reserve(InstanceHandle& handle, const schema::InstanceSpec& spec, InstanceRow& row) {
  VmHandle& vm = own(handle);
  if (!vm.plan) {
    if (Status configured = configure(handle, spec, &row); !configured) return fail(configured.error());
  }
  if (!vm.plan->rootImage || !options_.imageStore) return {};
  auto pinned = options_.imageStore->pin(spec.name, vm.plan->rootImage->name);
  if (!pinned && pinned.error().kind() == ErrorKind::NotFound) {
    return fail(Error(ErrorKind::NotFound,
                      fmt::format("image \"{}\" is no longer in the image store", spec.image), "image"));
  }
  if (!pinned) return fail(pinned.error());
  vm.plan->rootImage = std::move(*pinned);
  return {};
}

void VmDriver::release(const InstanceRow& row) {
  if (!options_.imageStore || !options_.imageStore->hasPin(row.name)) return;
  if (auto dropped = options_.imageStore->unpin(row.name); !dropped)
    log::warn("instance \"{}\": dropping its image pin: {}", row.name, dropped.error().message());
}

// Either engine's stop event, from its event thread: handed to ours (handleDomainEvents).
void VmDriver::queueDomainEvent(const vmm::DomainStopped& event) {
  {
    std::lock_guard events(eventsMutex_);
    domainEvents_.push_back(event);
  }
  eventsChanged_.notify_all();
}

// Opens libvirt on first need; a daemon without libvirtd still runs containers.
Result<vmm::Libvirt*> VmDriver::libvirt() {
  std::lock_guard lock(libvirtMutex_);
  if (libvirt_) return libvirt_.get();
  auto opened = vmm::Libvirt::open(options_.libvirtUri,
                                   [this](const vmm::DomainStopped& event) { queueDomainEvent(event); });
  if (!opened) return fail(opened.error());
  libvirt_ = std::move(*opened);
  return libvirt_.get();
}

Result<vmm::Qemu*> VmDriver::qemu() {
  std::lock_guard lock(qemuMutex_);
  if (qemu_) return qemu_.get();
  // Each VM's QEMU in <cgroup parent>/corral-vm-DOMAIN, beside the containers' groups.
  auto layout = vmm::detectCgroupLayout(options_.cgroupOptions.root, options_.cgroupOptions.parent);
  if (!layout) return fail(layout.error().wrap("VM cgroups"));
  auto opened = vmm::Qemu::open({.runRoot = options_.vmsDir / kQemuRunDir,
                                 .cgroups = vmm::kernelVmCgroups(*layout),
                                 .user = options_.vmUser.user},
                                [this](const vmm::DomainStopped& event) { queueDomainEvent(event); });
  if (!opened) return fail(opened.error());
  qemu_ = std::move(*opened);
  return qemu_.get();
}

vmm::Engine VmDriver::engineFor(const VmPlan& plan) const {
  switch (options_.vmEngine) {
    case VmEngineMode::libvirt:
      return vmm::Engine::Libvirt;
    case VmEngineMode::qemu:
      return vmm::Engine::Qemu;
    case VmEngineMode::automatic:
      break;
  }
  return plan.machine == vmm::Machine::Microvm ? vmm::Engine::Qemu : vmm::Engine::Libvirt;
}

Result<vmm::Hypervisor*> VmDriver::hypervisor(vmm::Engine engine) {
  if (engine == vmm::Engine::Qemu) {
    auto direct = qemu();
    if (!direct) return fail(direct.error());
    return static_cast<vmm::Hypervisor*>(*direct);
  }
  auto lv = libvirt();
  if (!lv) return fail(lv.error());
  return static_cast<vmm::Hypervisor*>(*lv);
}

// The direct engine is asked first: it needs no daemon, and a VM it runs is never libvirt's.
Result<vmm::Hypervisor*> VmDriver::runningEngine(const std::shared_ptr<Run>& run, const std::string& name) {
  if (run && run->engine) return run->engine;
  if (auto direct = qemu(); direct) {
    auto found = (*direct)->lookup(domainName(name));
    if (found && *found) return static_cast<vmm::Hypervisor*>(*direct);
  }
  auto lv = libvirt();
  if (!lv) return fail(lv.error());
  auto found = (*lv)->lookup(domainName(name));
  if (!found) return fail(found.error());
  return *found ? static_cast<vmm::Hypervisor*>(*lv) : nullptr;
}

Result<std::string> VmDriver::hypervisorVersion() {
  auto lv = libvirt();
  if (!lv) return fail(lv.error());
  return (*lv)->hypervisorVersion();
}

AcceleratorStatus VmDriver::acceleratorStatus() {
  std::lock_guard lock(acceleratorStatusMutex_);
  return acceleratorStatus_;
}

// The cached decision of an earlier probe on this host boot (any corrald shares it: KVM's fitness is the
// host's, not one daemon's).
std::optional<vmm::AcceleratorChoice> VmDriver::cachedAcceleratorChoice() {
  std::string bootId = readSmallFile("/proc/sys/kernel/random/boot_id");
  json cached = json::parse(readSmallFile(options_.acceleratorCache), nullptr, false);
  if (cached.is_discarded() || !cached.is_object() || cached.value("boot_id", "") != bootId)
    return std::nullopt;
  std::string name = cached.value("accelerator", "");
  if (name != "kvm" && name != "tcg") return std::nullopt;
  return vmm::AcceleratorChoice{name == "kvm" ? vmm::Accelerator::Kvm : vmm::Accelerator::Tcg,
                                cached.value("reason", "") + " (probed earlier on this host boot)"};
}

Result<vmm::AcceleratorChoice> VmDriver::accelerator(const VmPlan& plan) {
  if (options_.accelerator == AcceleratorMode::tcg) {
    return vmm::AcceleratorChoice{vmm::Accelerator::Tcg, "chosen by corrald --accelerator tcg"};
  }
  if (options_.accelerator == AcceleratorMode::kvm) {
    std::string problem = vmm::kvmDeviceProblem();
    if (!problem.empty()) return fail(unavailable("corrald --accelerator kvm, but {}", problem));
    return vmm::AcceleratorChoice{vmm::Accelerator::Kvm, "chosen by corrald --accelerator kvm (not probed)"};
  }
  std::lock_guard probing(acceleratorMutex_);  // one probe at a time; the others wait for its answer
  {
    std::lock_guard lock(acceleratorStatusMutex_);
    if (acceleratorStatus_.state == AcceleratorState::decided) return *acceleratorStatus_.choice;
  }
  auto decide = [&](vmm::AcceleratorChoice choice) {
    std::lock_guard lock(acceleratorStatusMutex_);
    acceleratorStatus_ = {.state = AcceleratorState::decided, .choice = choice};
    log::info("accelerator: {} ({})", vmm::acceleratorName(choice.accelerator), choice.reason);
    return choice;
  };
  if (auto cached = cachedAcceleratorChoice()) return decide(*cached);
  // Across daemons too: a lock file beside the cache, so two corralds never boot two probes at once.
  std::error_code ec;
  std::filesystem::create_directories(options_.acceleratorCache.parent_path(), ec);
  std::string lockPath = options_.acceleratorCache.string() + ".lock";
  UniqueFd lockFd(::open(lockPath.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (lockFd) ::flock(lockFd.get(), LOCK_EX);
  if (auto cached = cachedAcceleratorChoice()) return decide(*cached);

  vmm::AcceleratorChoice choice;
  if (std::string problem = vmm::kvmDeviceProblem(); !problem.empty()) {
    choice = {vmm::Accelerator::Tcg, problem};
  } else {
    auto lv = libvirt();
    if (!lv) return fail(lv.error());
    {
      std::lock_guard lock(acceleratorStatusMutex_);
      acceleratorStatus_.state = AcceleratorState::probing;
    }
    log::info("accelerator: /dev/kvm answers; probing whether a guest really boots under KVM (at most {} ms)",
              options_.kvmProbeTimeout.count());
    std::filesystem::path workDir = options_.vmsDir / ".kvm-probe";
    std::filesystem::create_directories(workDir, ec);
    // The first VM's own kernel and machine: KVM is chosen only if what VMs will boot boots under it.
    choice = vmm::chooseAccelerator(**lv, plan.kernel, plan.initrd, plan.machine, workDir,
                                    options_.kvmProbeTimeout, options_.domainPrefix + "kvm-probe");
    std::filesystem::remove_all(workDir, ec);
  }
  json cache = {{"boot_id", readSmallFile("/proc/sys/kernel/random/boot_id")},
                {"accelerator", vmm::acceleratorName(choice.accelerator)},
                {"reason", choice.reason},
                {"decided_at", now()}};
  std::string tmp = options_.acceleratorCache.string() + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << cache.dump(2) << "\n";
  }
  if (std::rename(tmp.c_str(), options_.acceleratorCache.c_str()) != 0) {
    log::warn("accelerator: could not write the cache \"{}\": {}", options_.acceleratorCache.string(),
              std::strerror(errno));
  }
  return decide(choice);
}

// Before the manager's lock: the first VM on a host may wait for the KVM probe boot.
Status VmDriver::preflight(const schema::InstanceSpec& spec) {
  auto plan = toPlan(spec);
  if (!plan) return fail(plan.error());
  auto chosen = accelerator(*plan);
  if (!chosen) return fail(chosen.error());
  // So is the first VM of a store image: its base disk is made once (mkfs.ext4, seconds).
  if (plan->rootImage) {
    auto base = prepareBaseDisk(*options_.imageStore, *plan->rootImage);
    if (!base) return fail(base.error());
  }
  // And a warm VM's snapshot, when its key has none yet (a template boots and is saved).
  if (spec.warm) {
    auto engine = hypervisor(engineFor(*plan));
    if (!engine) return fail(engine.error());
    json steps = json::object();
    auto snapshot = warmSnapshot(*plan, *chosen, **engine,
                                 spec.subnet.empty() ? std::nullopt : std::optional(vmNicProfile_), steps);
    if (!snapshot) return fail(snapshot.error().wrap(fmt::format("warm start of \"{}\"", spec.name)));
    std::lock_guard lock(madeInPreflightMutex_);
    if (steps.value("snapshot_made", false)) madeInPreflight_[spec.name] = std::move(steps);
  }
  return {};
}

std::shared_ptr<VmDriver::Run> VmDriver::newRun(const std::string& name, json boot) {
  auto run = std::make_shared<Run>();
  run->id = nextRunId();
  run->name = name;
  run->boot = std::move(boot);
  std::lock_guard lock(runsMutex_);
  runs_[name] = run;
  return run;
}

bool VmDriver::claimEnd(Run& run) {
  std::lock_guard lock(runsMutex_);
  if (run.ended) return false;
  run.ended = true;
  if (auto it = runs_.find(run.name); it != runs_.end() && it->second.get() == &run) runs_.erase(it);
  runEnded_.notify_all();
  return true;
}

// Boots the VM (created or stopped): a transient domain; supervise() then waits for the guest agent's
// "ready". Creating the domain takes a fraction of a second.
Result<StartedRun> VmDriver::start(InstanceHandle& handle, const schema::InstanceSpec& spec,
                                   const InstanceRow& row, NicPort* nic, Clock::time_point received) {
  VmHandle& vm = own(handle);
  if (!vm.plan) {
    if (Status configured = configure(handle, spec, &row); !configured) return fail(configured.error());
  }
  const VmPlan& plan = *vm.plan;
  auto accel = accelerator(plan);  // decided by preflight(): quick
  if (!accel) return fail(accel.error());
  const std::filesystem::path dir = directory(plan.name);
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir(\"{}\")", dir.string())));
  std::filesystem::remove(dir / "agent.sock", ec);
  std::filesystem::remove(dir / "console.sock", ec);
  if (vm.saved) return restore(handle, plan, *accel, nic, received);
  auto engine = hypervisor(engineFor(plan));
  if (!engine) return fail(engine.error());
  // A warm VM of a store image restores the template's disk with its memory, once: a later start boots its
  // own disk cold, which holds what the VM wrote since (a restore would pair the template's memory with it).
  const bool ownDisk = plan.rootImage && std::filesystem::exists(dir / kVmRootDiskFile, ec);
  if (plan.warm && !ownDisk) return warmStart(handle, plan, *accel, **engine, nic, received);

  std::optional<net::NicPlan> planned;
  if (nic) {
    auto nicPlan = nic->plan();
    if (!nicPlan) return fail(nicPlan.error());
    planned = std::move(*nicPlan);
  }
  auto config = domainConfig(plan, *accel, planned);
  if (!config) return fail(config.error());
  CORRAL_FAILPOINT("vm.before-define");
  const auto creating = Clock::now();
  auto domain = (*engine)->create(*config, /*paused=*/nic != nullptr);
  if (!domain) return fail(domain.error());
  const auto created = Clock::now();
  Rollback destroyDomain([engine = *engine, name = config->domainName] { (void)engine->destroy(name); });
  if (nic) {
    Status plugged = nic->plugIntoTap(domain->qemuPid);
    if (plugged) plugged = (*engine)->resume(config->domainName);
    if (!plugged) return fail(plugged.error());
  }
  auto domainStarted = Clock::now();
  CORRAL_FAILPOINT("vm.after-define");

  // domain_ms split: the plan and the instance's disks, the engine's steps (libvirt's virDomainCreateXML:
  // define, cgroup, namespace, QEMU spawn, QMP handshake; the direct engine's spawn and QMP connection), the
  // NIC moved in while paused, and resume.
  json domainSteps = {{"prepare_ms", msBetween(received, creating)}};
  for (const auto& [step, ms] : domain->steps) domainSteps[step + "_ms"] = ms;
  domainSteps["engine_ms"] = msBetween(creating, created);
  domainSteps["nic_ms"] = msBetween(created, domainStarted);
  json boot = bootRecord(plan, *accel, received, domainStarted);
  boot["engine"] = vmm::engineName((*engine)->engine());
  boot["domain_steps"] = std::move(domainSteps);
  if (plan.warm) boot["warm_note"] = "booted cold: the VM's own disk holds its writes since its warm start";
  std::shared_ptr<Run> run = newRun(plan.name, boot);
  run->bootFiles = {plan.kernel, plan.initrd};
  run->engine = *engine;
  run->received = received;
  run->domainStarted = domainStarted;
  destroyDomain.dismiss();
  StartedRun started = handOver(run, domain->qemuPid, std::move(boot), *engine, config->domainName);
  vm.run = std::move(run);
  log::info("instance \"{}\": domain {} started by {} ({}, {} kernel on {}), waiting for the guest",
            plan.name, config->domainName, vmm::engineName((*engine)->engine()),
            vmm::acceleratorName(accel->accelerator), guestKernelName(plan.kernelSource),
            vmm::machineName(plan.machine));
  return started;
}

Result<vmm::DomainConfig> VmDriver::domainConfig(const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                                                 const std::optional<net::NicPlan>& planned) {
  const std::filesystem::path dir = directory(plan.name);
  vmm::DomainConfig config = planDomainConfig(plan, accel, domainName(plan.name), plan.name, owner(), dir);
  config.cmdline = vmm::kernelCommandLine(plan.name, plan.hostname, std::nullopt, std::nullopt);
  // A store image's root: its overlay and config disk, found by the guest init through corral.root.
  std::optional<std::string> rootSerial;
  if (plan.rootImage) {
    auto disks = prepareInstanceDisks(*options_.imageStore, *plan.rootImage, dir, plan.user, diskReaders());
    if (!disks) return fail(disks.error());
    config.disks = std::move(*disks);
    rootSerial = vmm::kRootDiskSerial;
    config.cmdline = vmm::kernelCommandLine(plan.name, plan.hostname, std::nullopt, std::nullopt, rootSerial);
  }
  // Its NIC: QEMU opens the tap in our namespace; it moves into the VPC's while the CPUs are paused, and
  // the guest's init takes its address from the kernel command line.
  if (planned) {
    config.nic = vmm::NicConfig{.tapName = planned->link,
                                .mac = planned->mac,
                                .mtu = planned->mtu,
                                .hostOffloads = planned->guestOffloads};
    config.cmdline = vmm::kernelCommandLine(plan.name, plan.hostname, planned->addressWithPrefix,
                                            planned->gateway, rootSerial);
    config.cmdline += vmm::resolverCommandLine(planned->resolver, planned->searchDomain);
  }
  config.cmdline += kernelTuning(plan, accel);
  if (Status ok = vmm::validate(config); !ok) return fail(ok.error());
  return config;
}

// What every start's boot record says: when the domain was asked for and running, and on what.
json VmDriver::bootRecord(const VmPlan& plan, const vmm::AcceleratorChoice& accel, Clock::time_point received,
                          Clock::time_point domainStarted) {
  return {
      {"domain_ms", msBetween(received, domainStarted)},        {"requested_at_ms", unixMillisAt(received)},
      {"accelerator", vmm::acceleratorName(accel.accelerator)}, {"accelerator_reason", accel.reason},
      {"kernel_source", guestKernelName(plan.kernelSource)},    {"machine", vmm::machineName(plan.machine)}};
}

// A running domain (booted or restored) handed to the instance manager as `run` (the caller keeps it as
// the VM's). Undone: its stop event is not reported, the domain goes.
StartedRun VmDriver::handOver(const std::shared_ptr<Run>& run, std::optional<int> qemuPid, json boot,
                              vmm::Hypervisor* engine, const std::string& domain) {
  run->qemuPid = qemuPid;
  StartedRun started;
  started.run = run->id;
  started.state = InstanceState::starting;
  started.pid = qemuPid ? std::optional<int64_t>(*qemuPid) : std::nullopt;
  started.pidStartTime = started.pid ? processStartTime(static_cast<pid_t>(*started.pid)) : std::nullopt;
  started.boot = std::move(boot);
  started.undo = Rollback([this, engine, run, domain] {
    claimEnd(*run);
    (void)engine->destroy(domain);
  });
  return started;
}

// A start of a VM stopped with --save: a new transient domain from the saved file (its XML names the same
// disks, tap, sockets), the NIC plugged in while paused, as a boot does. The disks are used as they are:
// they hold what the saved memory expects. A file libvirt cannot restore is renamed aside, so the next
// start boots cold, and nothing stays in libvirt.
Result<StartedRun> VmDriver::restore(InstanceHandle& handle, const VmPlan& plan,
                                     const vmm::AcceleratorChoice& accel, NicPort* nic,
                                     Clock::time_point received) {
  VmHandle& vm = own(handle);
  const std::filesystem::path dir = directory(plan.name);
  const std::filesystem::path file = dir / kSavedStateFile;
  const std::string domain = domainName(plan.name);
  vmm::Hypervisor* engine = nullptr;
  auto setAside = [&](const Error& error) -> Result<StartedRun> {
    std::error_code ec;
    if (engine) {
      if (auto left = engine->lookup(domain); left && *left) (void)engine->destroy(domain);
    }
    std::filesystem::rename(file, dir / kRejectedStateFile, ec);
    if (ec) std::filesystem::remove(file, ec);
    vm.saved = false;
    return fail(error.wrap(fmt::format(
        "resume from the saved state \"{}\" (set aside as \"{}\"; the next start boots the VM cold)",
        file.string(), kRejectedStateFile)));
  };
  // Whoever saved it restores it: libvirt's file and QEMU's stream are not each other's.
  const std::optional<vmm::Engine> savedBy = vmm::savedStateEngine(file);
  if (!savedBy) return setAside(internalError("neither a libvirt save file nor a QEMU migration stream"));
  auto chosen = hypervisor(*savedBy);
  if (!chosen)
    return fail(chosen.error().wrap(fmt::format("resume from the saved state \"{}\"", file.string())));
  engine = *chosen;
  std::optional<net::NicPlan> planned;
  if (nic) {
    auto nicPlan = nic->plan();
    if (!nicPlan) return fail(nicPlan.error());
    planned = std::move(*nicPlan);
  }
  // The direct engine starts QEMU with the devices of the saved VM, which are this plan's (the disks hold
  // what the saved memory expects); libvirt reads them from the file.
  auto config = domainConfig(plan, accel, planned);
  if (!config) return fail(config.error());
  // The console log goes on after the boot's lines (the domain XML truncates it at a start: append='off').
  auto appendConsole = [](std::string xml) {
    for (size_t at = xml.find("append='off'"); at != std::string::npos; at = xml.find("append='off'", at))
      xml.replace(at, std::string_view("append='off'").size(), "append='on'");
    return xml;
  };
  const auto restoring = Clock::now();
  auto restored = engine->restoreFromFile(
      {.file = file, .config = *config, .paused = nic != nullptr, .editXml = appendConsole});
  if (!restored) return setAside(restored.error());
  const auto restoredAt = Clock::now();
  Rollback destroyDomain([engine, domain] { (void)engine->destroy(domain); });
  if (nic) {
    Status plugged = nic->plugIntoTap(restored->qemuPid);
    if (plugged) plugged = engine->resume(domain);
    if (!plugged) return fail(plugged.error());
  }
  auto domainStarted = Clock::now();
  json boot = bootRecord(plan, accel, received, domainStarted);
  boot["restored"] = true;
  boot["engine"] = vmm::engineName(engine->engine());
  json domainSteps = {{"prepare_ms", msBetween(received, restoring)}};
  for (const auto& [step, ms] : restored->steps) domainSteps[step + "_ms"] = ms;
  domainSteps["engine_ms"] = msBetween(restoring, restoredAt);
  domainSteps["nic_ms"] = msBetween(restoredAt, domainStarted);
  boot["domain_steps"] = std::move(domainSteps);
  std::shared_ptr<Run> run = newRun(plan.name, boot);
  run->bootFiles = {plan.kernel, plan.initrd};
  run->engine = engine;
  run->received = received;
  run->domainStarted = domainStarted;
  run->restored = true;
  destroyDomain.dismiss();
  StartedRun started = handOver(run, restored->qemuPid, std::move(boot), engine, domain);
  vm.run = std::move(run);
  log::info("instance \"{}\": domain {} restored by {} from \"{}\", waiting for the guest agent", plan.name,
            domain, vmm::engineName(engine->engine()), file.string());
  return started;
}

// The shared snapshot a warm start restores (daemon/vm_snapshot.h), made now if there is none: a template
// domain of the plan's boot files, machine, memory and vCPUs (and a NIC of its own when the VM has one,
// since a restore cannot add one, with the clone's MTU and offloads, since a restore cannot change them),
// booted cold without an address until its agent is ready, then saved.
// It is made in a directory of its own and renamed into place, so a snapshot directory is always complete.
Result<std::filesystem::path> VmDriver::warmSnapshot(const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                                                     vmm::Hypervisor& engine,
                                                     std::optional<net::NicProfile> nic, json& steps) {
  const bool withNic = nic.has_value();
  const auto started = Clock::now();
  auto kernel = bootFileDigests_.of(plan.kernel);
  if (!kernel) return fail(kernel.error().wrap(fmt::format("hash the kernel \"{}\"", plan.kernel.string())));
  auto initrd = bootFileDigests_.of(plan.initrd);
  if (!initrd)
    return fail(initrd.error().wrap(fmt::format("hash the initramfs \"{}\"", plan.initrd.string())));
  // A store image's template mounts the image's disk and starts its workload: both are in the key.
  std::string imageDigest, workloadDigest;
  if (plan.rootImage) {
    imageDigest = plan.rootImage->manifestDigest.text();
    workloadDigest = images::digestOf(instanceConfigDisk(*plan.rootImage, plan.user)).text();
  }
  const std::string tuning = kernelTuning(plan, accel);
  const std::string key = snapshotKey({.kernelDigest = *kernel,
                                       .initrdDigest = *initrd,
                                       .machine = plan.machine,
                                       .accelerator = accel.accelerator,
                                       .memoryBytes = plan.memoryBytes,
                                       .vcpus = plan.vcpus,
                                       .kernelTuning = tuning,
                                       .withNic = withNic,
                                       .nic = nic.value_or(net::NicProfile{}),
                                       .engine = engine.engine(),
                                       .imageDigest = imageDigest,
                                       .workloadDigest = workloadDigest});
  const std::filesystem::path dir = options_.vmsDir / kSnapshotsDir / key;
  steps["snapshot"] = key;
  steps["hash_ms"] = msBetween(started, Clock::now());
  std::lock_guard making(snapshotMutex_);  // one template per key at a time; a second warm run waits for it
  std::error_code ec;
  if (std::filesystem::is_regular_file(dir / kSavedStateFile, ec)) {
    steps["snapshot_made"] = false;
    return dir;
  }
  const auto making_started = Clock::now();
  // Made beside it under a short name (only one template is made at a time: snapshotMutex_), so that its
  // console and agent sockets' paths stay within a Unix socket address with a long --state-dir.
  const std::filesystem::path work =
      dir.parent_path() / (std::string(kSnapshotWorkPrefix) + key.substr(0, 8));
  std::filesystem::remove_all(work, ec);
  std::filesystem::remove_all(dir, ec);  // a directory without its state: a leftover, never complete
  std::filesystem::create_directories(work, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir(\"{}\")", work.string())));
  Rollback removeWork([work] {
    std::error_code ignored;
    std::filesystem::remove_all(work, ignored);
  });
  SnapshotTemplate made = snapshotTemplate(key, options_.domainPrefix, work, withNic);
  made.imageName = plan.rootImage ? plan.rootImage->name : std::string();
  made.imageDigest = imageDigest;
  made.kernel = plan.kernel.string();
  made.kernelDigest = *kernel;
  made.initrd = plan.initrd.string();
  made.initrdDigest = *initrd;
  made.machine = vmm::machineName(plan.machine);
  made.memoryBytes = plan.memoryBytes;
  made.madeAtUnix = now();
  made.nic = nic.value_or(net::NicProfile{});
  // A store image's template has an overlay of its own (and the config disk), copied for each clone.
  if (plan.rootImage) {
    auto disks = prepareInstanceDisks(*options_.imageStore, *plan.rootImage, work, plan.user, diskReaders());
    if (!disks) return fail(disks.error().wrap("warm snapshot template"));
  }
  const vmm::DomainConfig config = warmTemplateConfig(plan, accel, made, key, nic);
  if (Status ok = vmm::validate(config); !ok) return fail(ok.error().wrap("warm snapshot template"));
  auto domain = engine.create(config, /*paused=*/false);
  if (!domain) return fail(domain.error().wrap("warm snapshot template"));
  Rollback destroyDomain([&engine, name = made.domainName] { (void)engine.destroy(name); });
  auto agent = vmm::AgentClient::connect(config.agentSocket, Clock::now() + options_.vmBootTimeout);
  if (!agent) return fail(agent.error().wrap(fmt::format("warm snapshot template {}", made.domainName)));
  const auto booted = Clock::now();
  if (Status saved = engine.saveToFile(made.domainName, work / kSavedStateFile); !saved)
    return fail(saved.error().wrap(fmt::format("warm snapshot template {}", made.domainName)));
  destroyDomain.dismiss();  // the save ended it
  {
    std::ofstream out(work / kSnapshotRecordFile);
    out << templateRecord(made);
    out.close();
    if (!out)
      return fail(systemError(errno, fmt::format("write(\"{}\")", (work / kSnapshotRecordFile).string())));
  }
  std::filesystem::rename(work, dir, ec);
  if (ec)
    return fail(systemError(ec.value(), fmt::format("rename(\"{}\", \"{}\")", work.string(), dir.string())));
  removeWork.dismiss();
  steps["snapshot_made"] = true;
  steps["snapshot_boot_ms"] = msBetween(making_started, booted);
  steps["snapshot_save_ms"] = msBetween(booted, Clock::now());
  log::info("warm snapshot {} made in {:.0f} ms (boot {:.0f} ms, save {:.0f} ms)", key,
            msBetween(making_started, Clock::now()), msBetween(making_started, booted),
            msBetween(booted, Clock::now()));
  return dir;
}

vmm::DomainConfig VmDriver::warmTemplateConfig(const VmPlan& plan, const vmm::AcceleratorChoice& accel,
                                               const SnapshotTemplate& made, const std::string& key,
                                               std::optional<net::NicProfile> nic) const {
  const std::string tuning = kernelTuning(plan, accel);
  vmm::DomainConfig config =
      planDomainConfig(plan, accel, made.domainName, made.instanceName, owner(), made.directory);
  config.cmdline =
      vmm::kernelCommandLine(made.instanceName.substr(1), "corral-warm", std::nullopt, std::nullopt) + tuning;
  // A store image's root: the overlay and config disk in the template's directory (a clone's copies in its
  // own, warmStart()).
  if (plan.rootImage) {
    config.disks = instanceDisks(made.directory);
    config.cmdline = vmm::kernelCommandLine(made.instanceName.substr(1), "corral-warm", std::nullopt,
                                            std::nullopt, std::string(vmm::kRootDiskSerial)) +
                     tuning;
  }
  // The template's MAC is every clone's device MAC until its agent sets the clone's own on eth0, which
  // stays down until then. Its MTU (virtio-net's host_mtu, read by the guest at boot) and offloads are the
  // clone's: QEMU restores the device's features as saved.
  if (nic)
    config.nic = vmm::NicConfig{
        .tapName = made.tapName,
        .mac = "52:54:00:" + key.substr(0, 2) + ":" + key.substr(2, 2) + ":" + key.substr(4, 2),
        .mtu = nic->mtu,
        .hostOffloads = nic->guestOffloads};
  return config;
}

json VmDriver::listSnapshots() {
  json list = json::array();
  std::lock_guard lock(snapshotMutex_);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.vmsDir / kSnapshotsDir, ec)) {
    const std::string key = entry.path().filename().string();
    if (!isSnapshotKey(key)) continue;  // KEY.new: one being made
    auto record = parseTemplateRecord(readSmallFile(entry.path() / kSnapshotRecordFile));
    uintmax_t bytes = 0;
    for (const auto& file : std::filesystem::directory_iterator(entry.path(), ec)) {
      std::error_code sizeError;
      const uintmax_t size = file.is_regular_file(sizeError) ? file.file_size(sizeError) : 0;
      if (!sizeError) bytes += size;
    }
    json item = {{"key", key}, {"directory", entry.path().string()}, {"size_bytes", bytes}};
    if (record) {
      auto orNull = [](const std::string& text) { return text.empty() ? json(nullptr) : json(text); };
      item["image"] = orNull(record->imageName);
      item["image_digest"] = orNull(record->imageDigest);
      item["kernel"] = orNull(record->kernel);
      item["machine"] = orNull(record->machine);
      item["memory_bytes"] = record->memoryBytes ? json(record->memoryBytes) : json(nullptr);
      item["with_nic"] = !record->tapName.empty();
      item["nic_mtu"] =
          record->tapName.empty() ? json(nullptr) : json(record->nic.mtu ? record->nic.mtu : 1500);
      item["nic_offloads"] = record->tapName.empty() ? json(nullptr) : json(record->nic.guestOffloads);
      item["made_at"] = record->madeAtUnix ? json(record->madeAtUnix) : json(nullptr);
    } else {
      item["problem"] = record.error().message();
    }
    list.push_back(std::move(item));
  }
  std::sort(list.begin(), list.end(), [](const json& a, const json& b) { return a["key"] < b["key"]; });
  return json{{"snapshots", std::move(list)}};
}

Status VmDriver::removeSnapshot(const std::string& key) {
  if (!isSnapshotKey(key))
    return fail(invalidField("key", "snapshot key \"{}\" is not 32 lowercase hex digits", key));
  const std::filesystem::path dir = options_.vmsDir / kSnapshotsDir / key;
  std::lock_guard lock(snapshotMutex_);
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) return fail(notFound("warm snapshot \"{}\"", key));
  // Clones restored from it have their own copies: removing it only makes the next warm run make a new one.
  std::filesystem::remove_all(dir, ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("rm -r \"{}\"", dir.string())));
  log::info("warm snapshot {} removed", key);
  return {};
}

Result<std::vector<std::string>> VmDriver::pruneSnapshots() {
  std::vector<std::string> removed;
  if (!options_.imageStore) return removed;
  std::set<std::string> liveDigests;
  auto named = options_.imageStore->list();
  if (!named) return fail(named.error().wrap("warm snapshots: the image store's images"));
  for (const images::Image& image : *named) liveDigests.insert(image.manifestDigest.text());
  auto pins = options_.imageStore->pins();
  if (!pins) return fail(pins.error().wrap("warm snapshots: the image store's pins"));
  for (const auto& [holder, manifest] : *pins) liveDigests.insert(manifest.text());
  std::lock_guard lock(snapshotMutex_);
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(options_.vmsDir / kSnapshotsDir, ec)) {
    const std::string key = entry.path().filename().string();
    if (key.starts_with(kSnapshotWorkPrefix) ||
        (key.ends_with(".new") && isSnapshotKey(key.substr(0, key.size() - 4)))) {
      // A template a crashed corrald was making: none is being made while snapshotMutex_ is ours.
      std::error_code removeError;
      std::filesystem::remove_all(entry.path(), removeError);
      continue;
    }
    if (!isSnapshotKey(key)) continue;
    auto record = parseTemplateRecord(readSmallFile(entry.path() / kSnapshotRecordFile));
    if (!record) continue;
    // A boot file that is gone or changed (a rebuilt kernel or initramfs): its key is never asked again.
    auto bootFileChanged = [&](const std::string& path, const std::string& digest) {
      if (path.empty() || digest.empty()) return false;
      auto now = bootFileDigests_.of(path);
      return !now || *now != digest;
    };
    const bool imageGone = !record->imageDigest.empty() && !liveDigests.contains(record->imageDigest);
    if (!imageGone && !bootFileChanged(record->kernel, record->kernelDigest) &&
        !bootFileChanged(record->initrd, record->initrdDigest))
      continue;
    std::error_code removeError;
    std::filesystem::remove_all(entry.path(), removeError);
    if (removeError) {
      log::warn("warm snapshot {}: rm -r: {}", key, removeError.message());
      continue;
    }
    log::info("warm snapshot {} removed: {}", key,
              imageGone ? fmt::format("its image {} ({}) is gone", record->imageName, record->imageDigest)
                        : std::string("its kernel or initramfs changed or is gone"));
    removed.push_back(key);
  }
  return removed;
}

// --warm: a new transient domain restored from the shared snapshot with the clone's name, paths and tap,
// its NIC plugged in while paused; waitForGuest() then gives the guest its identity. A snapshot the engine
// cannot restore is removed (nothing stays running), so the next warm run makes a new one. libvirt restores
// a copy whose header names the clone; the direct engine reads the shared file itself, QEMU started with
// the clone's files and tap (nothing of those is in QEMU's migration stream).
Result<StartedRun> VmDriver::warmStart(InstanceHandle& handle, const VmPlan& plan,
                                       const vmm::AcceleratorChoice& accel, vmm::Hypervisor& engine,
                                       NicPort* nic, Clock::time_point received) {
  VmHandle& vm = own(handle);
  const std::filesystem::path dir = directory(plan.name);
  const std::string domain = domainName(plan.name);
  std::optional<net::NicPlan> planned;
  if (nic) {
    auto nicPlan = nic->plan();
    if (!nicPlan) return fail(nicPlan.error());
    planned = std::move(*nicPlan);
  }
  json steps = json::object();
  const std::optional<net::NicProfile> nicProfile =
      planned ? std::optional(planned->profile()) : std::nullopt;
  auto snapshot = warmSnapshot(plan, accel, engine, nicProfile, steps);
  if (!snapshot) return fail(snapshot.error().wrap(fmt::format("warm start of \"{}\"", plan.name)));
  {
    // Made by this run's preflight: its making is this start's (the lookup just now found it).
    std::lock_guard lock(madeInPreflightMutex_);
    if (auto made = madeInPreflight_.extract(plan.name);
        !made.empty() && made.mapped().value("snapshot", "") == steps.value("snapshot", "")) {
      const double lookupMs = steps.value("hash_ms", 0.0);
      steps = std::move(made.mapped());
      steps["lookup_ms"] = lookupMs;
    }
  }
  auto discardSnapshot = [&](Error error) -> Result<StartedRun> {
    if (auto left = engine.lookup(domain); left && *left) (void)engine.destroy(domain);
    std::error_code ec;
    std::filesystem::remove_all(*snapshot, ec);
    return fail(
        error.wrap(fmt::format("warm start of \"{}\" from the snapshot \"{}\" (removed; the next warm "
                               "run makes a new one)",
                               plan.name, snapshot->string())));
  };
  auto record = parseTemplateRecord(readSmallFile(*snapshot / kSnapshotRecordFile));
  if (!record) return discardSnapshot(record.error());
  const auto restoring = Clock::now();
  // A store image's clone gets its own copy of the template's disks, as the saved memory left them. Removed
  // again unless the clone starts.
  Rollback removeDisks([dir] {
    std::error_code ignored;
    std::filesystem::remove(dir / kVmRootDiskFile, ignored);
    std::filesystem::remove(dir / kVmConfigDiskFile, ignored);
    std::filesystem::remove(dir / kVmBaseDiskLink, ignored);
  });
  if (plan.rootImage) {
    if (Status copied = copyTemplateDisks(*snapshot, dir); !copied) return discardSnapshot(copied.error());
  } else {
    removeDisks.dismiss();
  }
  Rollback removeCopy([file = dir / kWarmStateFile] {
    std::error_code ignored;
    std::filesystem::remove(file, ignored);
  });
  Result<vmm::DomainInfo> restored;
  Clock::time_point copied = restoring;
  if (engine.engine() == vmm::Engine::Qemu) {
    vmm::DomainConfig config =
        warmTemplateConfig(plan, accel, *record, steps.value("snapshot", ""), nicProfile);
    config.domainName = domain;
    config.instanceName = plan.name;
    config.consoleLog = dir / "console.log";
    config.agentSocket = dir / "agent.sock";
    config.consoleSocket = dir / "console.sock";
    if (planned) config.nic->tapName = planned->link;
    if (plan.rootImage) config.disks = instanceDisks(dir);
    restored = engine.restoreFromFile(
        {.file = *snapshot / kSavedStateFile, .config = config, .paused = nic != nullptr});
  } else {
    const std::string uuid = randomUuid();
    auto makeClones = [&](std::string xml) {
      return cloneDomainXml(std::move(xml), *record, domain, plan.name, dir,
                            planned ? planned->link : std::string(), uuid);
    };
    auto copy = copySavedStateForClone(*snapshot / kSavedStateFile, dir / kWarmStateFile, makeClones);
    if (!copy) return discardSnapshot(copy.error());
    copied = Clock::now();
    vmm::DomainConfig config;
    config.domainName = domain;
    restored =
        engine.restoreFromFile({.file = dir / kWarmStateFile, .config = config, .paused = nic != nullptr});
  }
  if (!restored) return discardSnapshot(restored.error());
  Rollback destroyDomain([&engine, domain] { (void)engine.destroy(domain); });
  const auto restoredAt = Clock::now();
  if (nic) {
    Status plugged = nic->plugIntoTap(restored->qemuPid);
    if (plugged) plugged = engine.resume(domain);
    if (!plugged) return fail(plugged.error());
  }
  auto domainStarted = Clock::now();
  if (engine.engine() == vmm::Engine::Libvirt) steps["copy_ms"] = msBetween(restoring, copied);
  steps["restore_ms"] = msBetween(copied, restoredAt);
  for (const auto& [step, ms] : restored->steps) steps[step + "_ms"] = ms;
  steps["nic_ms"] = msBetween(restoredAt, domainStarted);
  json boot = bootRecord(plan, accel, received, domainStarted);
  boot["restored"] = true;
  boot["warm"] = true;
  boot["engine"] = vmm::engineName(engine.engine());
  boot["domain_steps"] = std::move(steps);
  std::shared_ptr<Run> run = newRun(plan.name, boot);
  run->bootFiles = {plan.kernel, plan.initrd};
  run->engine = &engine;
  run->received = received;
  run->domainStarted = domainStarted;
  run->restored = true;
  run->identity = vmm::GuestIdentity{
      .hostname = plan.hostname,
      .mac = planned ? std::optional<std::string>(planned->mac) : std::nullopt,
      .ip = planned ? std::optional<std::string>(planned->addressWithPrefix) : std::nullopt,
      .gateway =
          planned && !planned->gateway.empty() ? std::optional<std::string>(planned->gateway) : std::nullopt,
      .nameserver = planned && !planned->resolver.empty() ? std::optional<std::string>(planned->resolver)
                                                          : std::nullopt,
      .search = planned && !planned->resolver.empty() && !planned->searchDomain.empty()
                    ? std::optional<std::string>(planned->searchDomain)
                    : std::nullopt};
  destroyDomain.dismiss();
  removeDisks.dismiss();
  StartedRun started = handOver(run, restored->qemuPid, std::move(boot), &engine, domain);
  vm.run = std::move(run);
  log::info("instance \"{}\": domain {} restored from the warm snapshot \"{}\", waiting for the guest agent",
            plan.name, domain, snapshot->string());
  return started;
}

// stop --save: libvirt writes the domain's state and memory into the VM's directory and ends the domain
// (its stop event ends the run, recorded as an asked-for stop). A failed save leaves the domain running
// and no file. The file is written in place, not renamed into place: a crash of corrald meanwhile leaves
// the save to libvirtd, which finishes it, and the next corrald finds the domain gone and the file there
// (recover()), so the state is not lost.
Status VmDriver::save(InstanceHandle& handle, const std::string& name, std::unique_lock<std::mutex>& lock) {
  VmHandle& vm = own(handle);
  const std::filesystem::path file = directory(name) / kSavedStateFile;
  lock.unlock();
  Rollback relock([&] { lock.lock(); });
  auto engine = runningEngine(vm.run, name);
  if (!engine) return fail(engine.error().wrap(fmt::format("stop --save \"{}\"", name)));
  if (!*engine) return fail(conflict("stop --save \"{}\": its domain is not running", name));
  std::error_code ec;
  std::filesystem::remove(directory(name) / kRejectedStateFile, ec);
  auto started = Clock::now();
  if (Status saved = (*engine)->saveToFile(domainName(name), file); !saved) {
    std::filesystem::remove(file, ec);
    return fail(saved.error().wrap(fmt::format("stop --save \"{}\"", name)));
  }
  log::info("instance \"{}\": state and memory saved to \"{}\" in {:.0f} ms", name, file.string(),
            msBetween(started, Clock::now()));
  relock.dismiss();
  lock.lock();
  vm.saved = true;  // the instance is held as stopping: the handle is still its
  return {};
}

bool VmDriver::hasSavedState(const InstanceHandle& handle) const {
  return own(handle).saved;
}

void VmDriver::supervise(InstanceHandle& handle, const std::string& name) {
  CORRAL_FAILPOINT("vm.after-record-starting");
  VmHandle& vm = own(handle);
  std::shared_ptr<Run> run = vm.run;
  // The row says it runs from the restored state: that file is spent (the guest and its disk move on; a
  // second restore of it would pair old memory with a newer disk).
  if (run->restored) {
    std::error_code ec;
    std::filesystem::remove(directory(name) / kSavedStateFile, ec);
    if (ec) log::warn("instance \"{}\": removing its spent saved state: {}", name, ec.message());
    vm.saved = false;
  }
  startBootWaiter(run, run->received, run->domainStarted);
}

void VmDriver::forgetRun(InstanceHandle& handle) {
  own(handle).run.reset();
}

void VmDriver::startBootWaiter(std::shared_ptr<Run> run, Clock::time_point received,
                               Clock::time_point domainStarted) {
  std::lock_guard lock(bootThreadsMutex_);
  bootThreads_.emplace_back([this, run = std::move(run), received, domainStarted]() mutable {
    waitForGuest(std::move(run), received, domainStarted);
  });
}

// Runs on its own thread: connects to the agent until the guest says "ready" or the boot timeout passes.
void VmDriver::waitForGuest(std::shared_ptr<Run> run, Clock::time_point received,
                            Clock::time_point domainStarted) {
  const std::string& name = run->name;
  const auto deadline = received + options_.vmBootTimeout;
  const std::filesystem::path socket = directory(name) / "agent.sock";
  auto ended = [&] {
    std::lock_guard lock(runsMutex_);
    return run->ended;
  };
  std::optional<vmm::AgentClient> client;
  Error lastError = unavailable("guest agent not ready");
  while (!quit_ && Clock::now() < deadline) {
    // Short attempts, so a daemon shutdown is never held up by a slow guest.
    auto attempt =
        vmm::AgentClient::connect(socket, std::min(deadline, Clock::now() + std::chrono::seconds(1)));
    if (attempt) {
      client = std::move(*attempt);
      break;
    }
    lastError = attempt.error();
    if (ended()) return;  // the domain died already: its stop event ended the run
  }
  if (quit_) return;  // the next corrald picks the boot up again (recover())
  auto readyAt = Clock::now();
  if (!client) {
    if (!claimEnd(*run)) return;
    std::string tail = consoleTail(name, 20);
    if (auto engine = runningEngine(run, name); engine && *engine) {
      if (auto destroyed = (*engine)->destroy(domainName(name)); !destroyed)
        log::warn("instance \"{}\": {}", name, destroyed.error().message());
    }
    std::error_code ec;
    std::filesystem::remove(socket, ec);
    InstanceEnding ending = InstanceEnding::because(ExitReason::bootTimeout);
    ending.note = fmt::format("the guest was not ready after {} ms ({}); the console's last lines:\n{}",
                              options_.vmBootTimeout.count(), lastError.message(), tail);
    ending.reasonStands = true;
    events_->instanceEnded(name, run->id, std::move(ending));
    return;
  }
  if (ended()) return;
  const vmm::GuestReady& ready = client->ready();
  json boot = run->boot.is_object() ? run->boot : json::object();
  if (run->identity) {
    // A clone of a warm snapshot is the template until its agent makes it this VM (random pool, clock,
    // hostname, MAC, address): it is not ready, and does not stay, if that fails.
    auto identity = client->setIdentity(*run->identity, Clock::now() + kSetClockAnswer);
    auto identityAt = Clock::now();
    if (!identity) {
      if (!claimEnd(*run)) return;
      if (auto engine = runningEngine(run, name); engine && *engine)
        (void)(*engine)->destroy(domainName(name));
      InstanceEnding ending = InstanceEnding::because(ExitReason::failed);
      ending.note = fmt::format("the warm clone did not take its identity: {}", identity.error().message());
      ending.reasonStands = true;
      events_->instanceEnded(name, run->id, std::move(ending));
      return;
    }
    boot["total_ms"] = msBetween(received, identityAt);
    boot["agent_ms"] = msBetween(domainStarted, readyAt);
    boot["identity_ms"] = msBetween(readyAt, identityAt);
    boot["identity"] = {{"hostname", identity->hostname},
                        {"mac", identity->mac ? json(*identity->mac) : json(nullptr)},
                        {"seeded_bytes", identity->seededBytes}};
    boot["guest_uptime_ms"] = static_cast<double>(ready.uptimeMs);
    boot["guest_kernel"] = ready.kernel;
    log::info("instance \"{}\" ready: warm clone in {:.0f} ms", name, boot["total_ms"].get<double>());
    {
      std::lock_guard agent(run->agentMutex);
      run->agent = std::move(client);
    }
    events_->instanceReady(name, run->id, std::move(boot));
    releaseBootFiles(*run);
    return;
  }
  if (run->restored) {
    // The guest's clock stood still while its state was on disk: it is set from the host's before the
    // VM counts as ready. Its uptime goes on from the boot before the save: no kernel or userspace split.
    Status clockSet = client->setClock(Clock::now() + kSetClockAnswer);
    auto clockAt = Clock::now();
    if (!clockSet) log::warn("instance \"{}\": {}", name, clockSet.error().message());
    boot["total_ms"] = msBetween(received, clockAt);
    boot["agent_ms"] = msBetween(domainStarted, readyAt);
    boot["clock_ms"] = msBetween(readyAt, clockAt);
    boot["clock_set"] = static_cast<bool>(clockSet);
    boot["guest_uptime_ms"] = static_cast<double>(ready.uptimeMs);
    boot["guest_kernel"] = ready.kernel;
    log::info("instance \"{}\" ready: restored from its saved state in {:.0f} ms", name,
              boot["total_ms"].get<double>());
    {
      std::lock_guard agent(run->agentMutex);
      run->agent = std::move(client);
    }
    events_->instanceReady(name, run->id, std::move(boot));
    releaseBootFiles(*run);
    return;
  }
  // The guest's own clock splits the time since the domain started: firmware and loading (until the
  // kernel's clock starts), the kernel (until /init), userspace (until the agent said ready).
  double sinceDomain = msBetween(domainStarted, readyAt);
  double guestUptime = static_cast<double>(ready.uptimeMs);
  if (guestUptime > sinceDomain && boot.contains("domain_ms") && boot["domain_ms"].is_number()) {
    // The guest's clock started before the engine's step ended (without a NIC the direct engine lets the
    // guest run while it still waits for QMP): that overlap is the guest's, so domain_ms ends where the
    // guest's clock began and the steps still add up to total_ms.
    boot["domain_ms"] = std::max(0.0, boot["domain_ms"].get<double>() - (guestUptime - sinceDomain));
  }
  boot["total_ms"] = msBetween(received, readyAt);
  boot["firmware_ms"] = std::max(0.0, sinceDomain - guestUptime);
  boot["kernel_ms"] = static_cast<double>(ready.initStartedMs);
  boot["userspace_ms"] = static_cast<double>(ready.uptimeMs - ready.initStartedMs);
  boot["guest_uptime_ms"] = guestUptime;
  boot["guest_kernel"] = ready.kernel;
  log::info("instance \"{}\" ready: guest kernel {}, boot {:.0f} ms", name, ready.kernel,
            boot["total_ms"].get<double>());
  {
    std::lock_guard agent(run->agentMutex);
    run->agent = std::move(client);
  }
  events_->instanceReady(name, run->id, std::move(boot));
  releaseBootFiles(*run);
}

// Once the guest is up, QEMU's copies of the kernel and initramfs (kept for a reset these VMs never do)
// leave its resident set (vmm/boot_files.h): after the ready event, so no start waits for it.
void VmDriver::releaseBootFiles(const Run& run) {
  if (!run.qemuPid || run.bootFiles.empty()) return;
  auto released = vmm::releaseFileMappings(static_cast<pid_t>(*run.qemuPid), run.bootFiles);
  if (!released) {
    log::warn("instance \"{}\": its boot files stay in QEMU's memory: {}", run.name,
              released.error().message());
    return;
  }
  constexpr double kMiB = 1024.0 * 1024.0;
  log::info(
      "instance \"{}\": {:.1f} MiB of QEMU's copies of its boot files paged out ({:.1f} MiB shared with "
      "another VM stay)",
      run.name,
      static_cast<double>(released->residentBefore -
                          std::min(released->residentBefore, released->residentAfter)) /
          kMiB,
      static_cast<double>(released->residentAfter) / kMiB);
}

// A guest that powered itself off (its init: the agent's shutdown, busybox's poweroff, the power button)
// said why and how its workload ended on the agent channel just before (vmm/agent_protocol.h): the run
// ends as "shutdown", with the workload's exit code or signal. A reset is how corral's kernel powers off
// on microvm (no ACPI: the init reboots, on_reboot is 'destroy', and libvirt reports "destroyed").
void VmDriver::applyLastWords(Run& run, InstanceEnding& ending) {
  // An exec in flight fails as the channel closes, and lets go of the agent.
  std::unique_lock agentLock(run.agentMutex, std::defer_lock);
  if (!agentLock.try_lock_for(std::chrono::seconds(1)) || !run.agent) return;
  auto words = run.agent->lastWords(Clock::now() + std::chrono::milliseconds(200));
  if (!words) return;
  ending.reason = ExitReason::shutdown;
  ending.note = fmt::format("the guest powered off: {}", words->reason);
  if (!words->workloadEnded) return;
  ending.exitCode = words->workloadExitCode;
  ending.exitSignal = words->workloadSignal;
  *ending.note += fmt::format(", after its workload {}",
                              words->workloadSignal
                                  ? fmt::format("was killed by signal {}", *words->workloadSignal)
                                  : fmt::format("exited with {}", words->workloadExitCode.value_or(-1)));
}

// Our thread: libvirt's stop events, queued by its event thread, end the runs of their domains.
void VmDriver::handleDomainEvents() {
  while (!quit_) {
    std::vector<vmm::DomainStopped> events;
    {
      std::unique_lock lock(eventsMutex_);
      eventsChanged_.wait_for(lock, std::chrono::seconds(1), [&] { return quit_ || !domainEvents_.empty(); });
      events.swap(domainEvents_);
    }
    for (const vmm::DomainStopped& event : events) {
      if (quit_ || !event.domainName.starts_with(options_.domainPrefix)) continue;
      std::string name = event.domainName.substr(options_.domainPrefix.size());
      std::shared_ptr<Run> run;
      {
        std::lock_guard lock(runsMutex_);
        auto it = runs_.find(name);
        if (it == runs_.end()) continue;
        run = it->second;
      }
      if (!claimEnd(*run)) continue;
      InstanceEnding ending = InstanceEnding::because(exitReasonOf(event.reason));
      if (event.reason == vmm::StopReason::Crashed || event.reason == vmm::StopReason::Failed) {
        ending.note = "the console's last lines:\n" + consoleTail(name, 20);
      }
      // A guest without ACPI powers off by a reset, which libvirt turns into "destroyed" (on_reboot):
      // its last words tell it from a destroy by someone else.
      if (event.reason == vmm::StopReason::Shutdown || event.reason == vmm::StopReason::Destroyed)
        applyLastWords(*run, ending);
      std::error_code ec;
      std::filesystem::remove(directory(name) / "agent.sock", ec);
      events_->instanceEnded(name, run->id, std::move(ending));
    }
  }
}

Status VmDriver::stop(InstanceHandle& handle, const std::string& name, std::unique_lock<std::mutex>& lock,
                      std::chrono::seconds grace) {
  std::shared_ptr<Run> run = own(handle).run;
  lock.unlock();
  Rollback relock([&] { lock.lock(); });
  auto engine = runningEngine(run, name);
  if (!engine) return fail(engine.error().wrap(fmt::format("stop \"{}\"", name)));
  // Ask nicely: the agent (which powers off), else the ACPI power button; then destroy after the grace.
  bool asked = false;
  if (run) {
    std::unique_lock agentLock(run->agentMutex, std::try_to_lock);
    if (agentLock && run->agent) asked = static_cast<bool>(run->agent->shutdown());
  }
  if (!asked && *engine) {
    if (auto acpi = (*engine)->shutdownAcpi(domainName(name)); !acpi)
      log::info("stop \"{}\": ACPI shutdown: {}", name, acpi.error().message());
  }
  bool down = false;
  {
    std::unique_lock runs(runsMutex_);
    down = runEnded_.wait_for(runs, grace, [&] { return !run || run->ended; });
  }
  if (!down && *engine) {
    CORRAL_FAILPOINT("vm.stop.before-destroy");
    if (auto destroyed = (*engine)->destroy(domainName(name)); !destroyed)
      log::warn("stop \"{}\": {}", name, destroyed.error().message());
  }
  return {};
}

Status VmDriver::kill(InstanceHandle&, const std::string& name, std::unique_lock<std::mutex>& lock) {
  lock.unlock();
  Rollback relock([&] { lock.lock(); });
  auto engine = runningEngine(nullptr, name);
  if (!engine) return fail(engine.error());
  if (*engine) {
    if (auto destroyed = (*engine)->destroy(domainName(name)); !destroyed) return fail(destroyed.error());
  }
  CORRAL_FAILPOINT("vm.rm.after-destroy");
  return {};
}

Result<json> VmDriver::exec(InstanceHandle& handle, const InstanceRow& row,
                            std::unique_lock<std::mutex>& lock, const std::vector<std::string>& command,
                            const std::vector<std::string>& env) {
  const std::string name = row.name;
  std::shared_ptr<Run> run = own(handle).run;
  if (!run) return fail(conflict("instance \"{}\" has no guest agent session", name));
  lock.unlock();
  std::lock_guard agentLock(run->agentMutex);
  auto agent = run->connectedAgent(directory(name) / "agent.sock");
  if (!agent) return fail(agent.error().wrap(fmt::format("exec in instance \"{}\"", name)));
  auto result = (*agent)->exec(command, env, kExecTimeout);
  if (!result) {
    run->agent.reset();  // the next exec reconnects
    return fail(result.error().wrap(fmt::format("exec in instance \"{}\"", name)));
  }
  json exitCode = result->exitCode ? json(*result->exitCode) : json(nullptr);
  json signal = result->signal ? json(*result->signal) : json(nullptr);
  return json{{"exit_code", exitCode},
              {"signal", signal},
              {"stdout", textJson(result->stdoutText)},
              {"stderr", textJson(result->stderrText)},
              {"truncated", result->truncated},
              {"timed_out", result->timedOut}};
}

Result<std::unique_ptr<StdioSession>> VmDriver::execInteractive(InstanceHandle& handle,
                                                                const InstanceRow& row,
                                                                std::unique_lock<std::mutex>& lock,
                                                                const StdioRequest& request) {
  const std::string name = row.name;
  std::shared_ptr<Run> run = own(handle).run;
  if (!run) return fail(conflict("instance \"{}\" has no guest agent session", name));
  lock.unlock();
  std::lock_guard agentLock(run->agentMutex);
  auto agent = run->connectedAgent(directory(name) / "agent.sock");
  if (!agent) return fail(agent.error().wrap(fmt::format("exec in instance \"{}\"", name)));
  auto session = (*agent)->openSession(request, Clock::now() + kSessionOpen);
  if (!session) {
    // Only a channel that failed is dropped (the next request reconnects); the guest refusing (no such
    // program, too many sessions, an old agent) or bad input leaves it good.
    if (session.error().kind() == ErrorKind::Unavailable) run->agent.reset();
    return fail(session.error().wrap(fmt::format("exec in instance \"{}\"", name)));
  }
  return session;
}

// A wrapper that gives the console's token back when the client is done with it.
class VmDriver::HeldConsole final : public StdioSession {
 public:
  HeldConsole(std::unique_ptr<StdioSession> console, std::shared_ptr<void> token)
      : console_(std::move(console)), token_(std::move(token)) {}
  bool tty() const override { return console_->tty(); }
  int inputFd() const override { return console_->inputFd(); }
  int outputFd() const override { return console_->outputFd(); }
  int errorFd() const override { return console_->errorFd(); }
  void closeInput() override { console_->closeInput(); }
  Status resize(TerminalSize size) override { return console_->resize(size); }
  int exitFd() const override { return console_->exitFd(); }
  Result<StdioExit> exitStatus() override { return console_->exitStatus(); }
  void detach() override { console_->detach(); }

 private:
  std::unique_ptr<StdioSession> console_;
  std::shared_ptr<void> token_;
};

Result<std::unique_ptr<StdioSession>> VmDriver::attachConsole(InstanceHandle& handle, const InstanceRow& row,
                                                              std::unique_lock<std::mutex>& lock) {
  const std::string name = row.name;
  std::shared_ptr<Run> run = own(handle).run;
  if (!run) return fail(conflict("instance \"{}\" is not running", name));
  if (!run->console.expired())
    return fail(conflict("the console of instance \"{}\" is attached already (one client at a time)", name));
  auto console = vmm::attachSerialConsole(directory(name) / "console.sock");
  if (!console) return fail(console.error().wrap(fmt::format("console of instance \"{}\"", name)));
  auto token = std::make_shared<int>(0);
  run->console = token;
  lock.unlock();
  return std::unique_ptr<StdioSession>(std::make_unique<HeldConsole>(std::move(*console), std::move(token)));
}

// rm of a VM that is not active: its domain, should a crash have left one running, is destroyed.
Result<std::string> VmDriver::clearLeftovers(const std::string& name) {
  // The direct engine's first (no daemon needed): a VM it runs is ours (its run directory is in vmsDir).
  if (auto direct = qemu(); direct) {
    auto found = (*direct)->lookup(domainName(name));
    if (found && *found) {
      if (Status destroyed = (*direct)->destroy(domainName(name)); !destroyed) return fail(destroyed.error());
      return fmt::format("destroyed its VM {} (direct engine)", domainName(name));
    }
  }
  auto lv = libvirt();
  if (!lv) {
    // Without libvirtd no domain can run either; the next corrald start reconciles.
    log::info("remove \"{}\": libvirt not reachable ({}); no domain to look for", name, lv.error().message());
    return std::string();
  }
  auto domain = (*lv)->lookup(domainName(name));
  if (!domain) return fail(domain.error());
  if (!*domain) return std::string();
  if (!ours(**domain)) {
    return fmt::format("left domain {} alone: another corrald made it ({})", domainName(name),
                       (*domain)->owner);
  }
  if (Status destroyed = (*lv)->destroy(domainName(name)); !destroyed) return fail(destroyed.error());
  return fmt::format("destroyed its domain {}", domainName(name));
}

Status VmDriver::removeDirectory(const std::string& name) {
  std::error_code ec;
  std::filesystem::remove_all(directory(name), ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("rm -r \"{}\"", directory(name).string())));
  return {};
}

// After a corrald restart: a VM whose domain still runs is taken back (agent reconnected, or the boot wait
// resumed); one whose domain is gone is recorded as lost; one whose run crashed before its domain was
// recorded is rolled back (reconcile() destroys the domain).
InstanceDriver::Recovery VmDriver::recover(InstanceHandle& handle, InstanceRow& row) {
  const std::string name = row.name;
  Recovery recovery;
  if (row.state == InstanceState::created) {
    log::warn(
        "instance \"{}\": corrald stopped while creating it; rolled back (its domain, if any, is destroyed) "
        "and recorded as lost",
        name);
    markLost(row, "corrald stopped while creating it; the start was rolled back");
    recovery.rowChanged = true;
    return recovery;
  }
  if (!isActive(row.state)) return recovery;
  VmHandle& vm = own(handle);
  json boot = json::parse(row.bootStepsJson, nullptr, false);
  if (!boot.is_object()) boot = json::object();
  // The engine its boot record names (none before the direct engine: libvirt).
  const vmm::Engine recordedEngine =
      boot.value("engine", "libvirt") == "qemu" ? vmm::Engine::Qemu : vmm::Engine::Libvirt;
  auto engine = hypervisor(recordedEngine);
  if (!engine) {
    log::warn("instance \"{}\": cannot check its domain: {}; it stays {} until its engine answers", name,
              engine.error().message(), instanceStateName(row.state));
    vm.run = newRun(name, boot);
    recovery.run = vm.run->id;
    return recovery;
  }
  auto domain = (*engine)->lookup(domainName(name));
  if (domain && *domain && !ours(**domain)) {
    log::warn("instance \"{}\": domain {} belongs to another corrald ({}); not taking it over", name,
              domainName(name), (*domain)->owner);
    markLost(row,
             fmt::format("its domain {} was another corrald's when corrald restarted", domainName(name)));
    recovery.rowChanged = true;
    return recovery;
  }
  if (domain && *domain && (*domain)->running && (*domain)->paused && row.state == InstanceState::running &&
      (*engine)->engine() == vmm::Engine::Qemu) {
    // The direct engine's save is corrald's own work: one killed between its stop and its quit left the
    // CPUs stopped and the file partial. The guest goes on from its memory; the file goes.
    log::warn("instance \"{}\": its CPUs were stopped by a save corrald did not finish; continuing them",
              name);
    if (Status resumed = (*engine)->resume(domainName(name)); !resumed)
      log::warn("instance \"{}\": {}", name, resumed.error().message());
    std::error_code ec;
    std::filesystem::remove(directory(name) / kSavedStateFile, ec);
    vm.saved = false;
    if (auto again = (*engine)->lookup(domainName(name)); again) domain = std::move(again);
  }
  if (domain && *domain && (*domain)->running && vm.saved && !(*domain)->paused) {
    // A restore whose row said so before supervise() removed the spent file: the guest runs on from it.
    std::error_code ec;
    std::filesystem::remove(directory(name) / kSavedStateFile, ec);
    vm.saved = false;
  }
  if (domain && *domain && (*domain)->running) {
    if (row.state == InstanceState::starting) {
      // The boot is measured from the request the earlier corrald received (its wall-clock time is in the
      // record), so the total still covers every step; the record says a restart happened in between.
      auto at = Clock::now();
      Clock::time_point received = at, domainStarted = at;
      if (boot.contains("requested_at_ms") && boot["requested_at_ms"].is_number() &&
          boot.contains("domain_ms") && boot["domain_ms"].is_number()) {
        double ago = unixMillisAt(at) - boot["requested_at_ms"].get<double>();
        received = at - std::chrono::duration_cast<Clock::duration>(
                            std::chrono::duration<double, std::milli>(std::max(0.0, ago)));
        domainStarted =
            received + std::chrono::duration_cast<Clock::duration>(
                           std::chrono::duration<double, std::milli>(boot["domain_ms"].get<double>()));
      } else {
        boot["boot_note"] =
            "corrald restarted during the boot and the record has no request time: total_ms and "
            "firmware_ms count from the restart only";
      }
      boot["daemon_restarted"] = true;
      row.bootStepsJson = boot.dump();
      vm.run = newRun(name, boot);
      vm.run->engine = *engine;
      vm.run->qemuPid = (*domain)->qemuPid;
      if (vm.plan) vm.run->bootFiles = {vm.plan->kernel, vm.plan->initrd};
      recovery.run = vm.run->id;
      startBootWaiter(vm.run, received, domainStarted);
      log::info("instance \"{}\": domain still running; waiting again for its guest", name);
      return recovery;
    }
    vm.run = newRun(name, boot);
    vm.run->engine = *engine;
    recovery.run = vm.run->id;
    auto client = vmm::AgentClient::connect(directory(name) / "agent.sock", Clock::now() + kAgentReconnect);
    if (client) vm.run->agent = std::move(*client);
    log::info("instance \"{}\": reattached to domain {}{}", name, domainName(name),
              client ? "" : " (agent not answering yet; exec will retry)");
    return recovery;
  }
  if (!domain) log::warn("instance \"{}\": {}", name, domain.error().message());
  if (vm.saved) {
    // corrald stopped during a stop --save that libvirtd finished: the state is in the file.
    markLost(row, "its domain was gone when corrald restarted; its saved state is kept, start resumes it");
    recovery.rowChanged = true;
    return recovery;
  }
  markLost(row, "its domain was gone when corrald restarted");
  recovery.rowChanged = true;
  return recovery;
}

// Domains named with our prefix that no active VM instance owns (a crash between creating the domain and
// recording it) are destroyed; so are per-VM directories no instance owns. Then, with an image to boot, the
// accelerator is chosen early (a KVM probe boot can take seconds).
void VmDriver::reconcile(const std::set<std::string>& active, const std::set<std::string>& all) {
  std::error_code ec;
  if (!all.empty() || !std::filesystem::is_empty(options_.vmsDir, ec)) {
    // The direct engine's VMs: opening it adopted the running ones and cleared the rest.
    if (auto direct = qemu(); !direct) {
      log::warn("reconcile: direct engine: {}", direct.error().message());
    } else if (auto vms = (*direct)->listDomains(options_.domainPrefix); vms) {
      for (const vmm::DomainInfo& domain : *vms) {
        std::string name = domain.name.substr(options_.domainPrefix.size());
        if (active.contains(name) || !ours(domain)) continue;
        log::warn("reconcile: destroying VM {}: no running corral instance owns it", domain.name);
        if (auto destroyed = (*direct)->destroy(domain.name); !destroyed)
          log::warn("reconcile: {}", destroyed.error().message());
      }
    }
    if (auto lv = libvirt(); !lv) {
      log::info("libvirt not reachable ({}); VMs unavailable until it is", lv.error().message());
    } else if (auto domains = (*lv)->listDomains(options_.domainPrefix); !domains) {
      log::warn("reconcile: {}", domains.error().message());
    } else {
      for (const vmm::DomainInfo& domain : *domains) {
        std::string name = domain.name.substr(options_.domainPrefix.size());
        if (active.contains(name) || domain.name == options_.domainPrefix + "kvm-probe") continue;
        if (!ours(domain)) {
          log::info("reconcile: leaving domain {} alone: another corrald made it ({})", domain.name,
                    domain.owner);
          continue;
        }
        log::warn("reconcile: destroying domain {}: no running corral instance owns it", domain.name);
        if (auto destroyed = (*lv)->destroy(domain.name); !destroyed)
          log::warn("reconcile: {}", destroyed.error().message());
      }
      for (const auto& entry : std::filesystem::directory_iterator(options_.vmsDir, ec)) {
        std::string name = entry.path().filename().string();
        if (name.starts_with(".") || all.contains(name)) continue;
        log::warn("reconcile: removing \"{}\": no instance owns it", entry.path().string());
        std::filesystem::remove_all(entry.path(), ec);
      }
    }
  }
  if (auto pruned = pruneSnapshots(); !pruned) log::warn("reconcile: {}", pruned.error().message());
  if (options_.accelerator != AcceleratorMode::automatic) return;
  schema::InstanceSpec probeSpec;
  probeSpec.name = "kvm-probe";
  probeSpec.kind = schema::InstanceKind::vm;
  if (auto plan = toPlan(probeSpec); plan) {
    acceleratorProbe_ = std::thread([this, plan = *plan] {
      if (auto chosen = accelerator(plan); !chosen) log::warn("accelerator: {}", chosen.error().message());
    });
  }
}

void VmDriver::replugNic(InstanceHandle&, const InstanceRow& row, NicPort&) {
  if (isActive(row.state))
    log::warn("instance \"{}\": its VM's NIC is gone (the VPC namespace was recreated); restart it",
              row.name);
}

json VmDriver::readUsage(const InstanceHandle&, const InstanceRow& row) const {
  return row.state == InstanceState::running && row.pid ? qemuUsage(*row.pid) : json(nullptr);
}

void VmDriver::describe(const InstanceHandle& handle, const schema::InstanceSpec& spec,
                        const InstanceRow& row, const json&, json& out) const {
  const VmHandle& vm = own(handle);
  json boot = json::parse(row.bootStepsJson, nullptr, false);
  auto fromBoot = [&](const char* key) {
    return boot.is_object() && boot.contains(key) ? boot[key] : json(nullptr);
  };
  out["command"] = spec.command;
  // The store image booted as the root disk; null for a built-in image (its initramfs is the guest).
  out["image_digest"] =
      vm.plan && vm.plan->rootImage ? json(vm.plan->rootImage->manifestDigest.text()) : json(nullptr);
  out["oom_kills"] = nullptr;  // a VM's are the guest's
  out["cgroup"] = nullptr;
  out["bundle"] = directory(row.name).string();
  out["user_namespace_range"] = nullptr;
  out["vm"] = {
      {"domain", domainName(row.name)},
      {"memory_bytes", vm.plan ? json(vm.plan->memoryBytes) : json(nullptr)},
      {"vcpus", vm.plan ? json(vm.plan->vcpus) : json(nullptr)},
      {"kernel", vm.plan ? json(vm.plan->kernel.string()) : json(nullptr)},
      {"kernel_source", vm.plan ? json(guestKernelName(vm.plan->kernelSource)) : json(nullptr)},
      {"machine", vm.plan ? json(vmm::machineName(vm.plan->machine)) : json(nullptr)},
      {"initrd", vm.plan ? json(vm.plan->initrd.string()) : json(nullptr)},
      {"engine", fromBoot("engine")},
      {"accelerator", fromBoot("accelerator")},
      {"accelerator_reason", fromBoot("accelerator_reason")},
      {"agent_socket", (directory(row.name) / "agent.sock").string()},
      {"saved_state", vm.saved ? json((directory(row.name) / kSavedStateFile).string()) : json(nullptr)}};
}

std::string VmDriver::consoleTail(const std::string& name, size_t lines) const {
  const std::string logPath = (directory(name) / "console.log").string();
  // In the directory the VM's QEMU owns: not followed through a link, read only as a regular file.
  UniqueFd fd(::open(logPath.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  if (!fd) return "(no console output)";
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size == 0) return "(no console output)";
  constexpr off_t kWindow = 16 * 1024;
  off_t from = std::max<off_t>(0, st.st_size - kWindow);
  std::string data(static_cast<size_t>(st.st_size - from), '\0');
  ssize_t got = ::pread(fd.get(), data.data(), data.size(), from);
  data.resize(got > 0 ? static_cast<size_t>(got) : 0);
  std::erase(data, '\r');
  while (!data.empty() && data.back() == '\n') data.pop_back();
  size_t pos = data.size();
  for (size_t n = 0; n < lines && pos != std::string::npos && pos > 0; ++n) {
    pos = data.rfind('\n', pos - 1);
  }
  return pos == std::string::npos ? data : data.substr(pos + 1);
}

}  // namespace corral::daemon
