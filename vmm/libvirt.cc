// The libvirt connection: RAII handles, errors read right after each failing call, one process-wide thread
// running libvirt's default event loop, lifecycle events turned into DomainStopped, one reconnect.
#include "vmm/libvirt.h"

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <thread>

#include "core/log.h"
#include "vmm/domain_xml.h"

namespace corral::vmm {
namespace {

struct ConnectionCloser {
  void operator()(virConnectPtr conn) const { virConnectClose(conn); }
};
struct DomainFreer {
  void operator()(virDomainPtr domain) const { virDomainFree(domain); }
};
using ConnectionPtr = std::unique_ptr<virConnect, ConnectionCloser>;
using DomainPtr = std::unique_ptr<virDomain, DomainFreer>;

void ignoreLibvirtError(void*, virErrorPtr) {}

// The error of the call that just failed on this thread, with the caller's context in front.
Error lastError(std::string_view context) {
  const virError* error = virGetLastError();
  if (error == nullptr) return internalError("{}: unknown libvirt error", context);
  std::string text =
      fmt::format("{}: {}", context, error->message ? error->message : "unknown libvirt error");
  switch (error->code) {
    case VIR_ERR_NO_DOMAIN:
      return Error(ErrorKind::NotFound, std::move(text));
    case VIR_ERR_NO_CONNECT:
    case VIR_ERR_AUTH_FAILED:
    case VIR_ERR_AUTH_UNAVAILABLE:
      return Error(ErrorKind::Unavailable, std::move(text));
    default:
      return Error(ErrorKind::Internal, std::move(text));
  }
}

bool lastErrorIs(int code) {
  const virError* error = virGetLastError();
  return error != nullptr && error->code == code;
}

// libvirt's default event loop needs one thread calling virEventRunDefaultImpl; all Libvirt objects of the
// process share it. The first open starts it, the last close stops it.
class EventLoop {
 public:
  static Status acquire() {
    static std::once_flag registered;
    static int registerResult = 0;
    std::call_once(registered, [] {
      virSetErrorFunc(nullptr, ignoreLibvirtError);
      registerResult = virInitialize();
      if (registerResult == 0) registerResult = virEventRegisterDefaultImpl();
    });
    if (registerResult != 0) return fail(lastError("virEventRegisterDefaultImpl"));
    std::lock_guard lock(mutex());
    if (users()++ == 0) {
      stopping() = false;
      thread() = std::thread([] {
        while (!stopping()) {
          if (virEventRunDefaultImpl() < 0) {
            log::warn("virEventRunDefaultImpl: {}", virGetLastErrorMessage());
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
          }
        }
      });
    }
    return {};
  }

  static void release() {
    std::lock_guard lock(mutex());
    if (--users() > 0) return;
    stopping() = true;
    // A zero-period timeout makes the blocked iteration return so the loop sees the flag.
    const int wake = virEventAddTimeout(
        0, [](int, void*) {}, nullptr, nullptr);
    thread().join();
    if (wake >= 0) virEventRemoveTimeout(wake);
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static int& users() {
    static int n = 0;
    return n;
  }
  static std::atomic<bool>& stopping() {
    static std::atomic<bool> flag{false};
    return flag;
  }
  static std::thread& thread() {
    static std::thread t;
    return t;
  }
};

StopReason stopReasonFromDetail(int detail) {
  switch (detail) {
    case VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN:
      return StopReason::Shutdown;
    case VIR_DOMAIN_EVENT_STOPPED_DESTROYED:
      return StopReason::Destroyed;
    case VIR_DOMAIN_EVENT_STOPPED_CRASHED:
      return StopReason::Crashed;
    case VIR_DOMAIN_EVENT_STOPPED_FAILED:
      return StopReason::Failed;
    case VIR_DOMAIN_EVENT_STOPPED_SAVED:
      return StopReason::Saved;
    default:
      return StopReason::Other;
  }
}

std::optional<int> readQemuPid(const std::string& name) {
  std::ifstream in("/run/libvirt/qemu/" + name + ".pid");
  int pid = 0;
  if (in >> pid && pid > 0) return pid;
  return std::nullopt;
}

Result<DomainInfo> describe(virDomainPtr domain) {
  DomainInfo info;
  const char* name = virDomainGetName(domain);
  if (name == nullptr) return fail(lastError("virDomainGetName"));
  info.name = name;
  char uuid[VIR_UUID_STRING_BUFLEN] = {};
  if (virDomainGetUUIDString(domain, uuid) < 0) return fail(lastError("virDomainGetUUIDString"));
  info.uuid = uuid;
  const int active = virDomainIsActive(domain);
  if (active < 0) return fail(lastError("virDomainIsActive"));
  info.running = active == 1;
  if (info.running) info.qemuPid = readQemuPid(info.name);
  // No corral metadata (VIR_ERR_NO_DOMAIN_METADATA) is no owner, not a failure.
  if (char* metadata = virDomainGetMetadata(domain, VIR_DOMAIN_METADATA_ELEMENT, kMetadataNamespace, 0)) {
    info.owner = ownerOf(metadata);
    free(metadata);
  }
  int state = VIR_DOMAIN_NOSTATE;
  int reason = 0;
  if (info.running && virDomainGetState(domain, &state, &reason, 0) == 0)
    info.paused = state == VIR_DOMAIN_PAUSED;
  return info;
}

std::string versionText(unsigned long version) {
  return fmt::format("{}.{}.{}", version / 1000000, version / 1000 % 1000, version % 1000);
}

}  // namespace

struct Libvirt::State {
  std::string uri;
  std::function<void(const DomainStopped&)> onStopped;

  std::mutex mutex;  // guards conn and lifecycleCallback; serialises all calls on the connection
  ConnectionPtr conn;
  int lifecycleCallback = -1;
  std::atomic<bool> dead{false};  // set by the close callback when libvirtd goes away

  std::mutex callbackMutex;  // held while onStopped runs, so the destructor can wait it out
  bool closing = false;

  static void onClose(virConnectPtr, int reason, void* opaque) {
    auto* state = static_cast<State*>(opaque);
    state->dead = true;
    log::warn("libvirt connection {} closed (reason {})", state->uri, reason);
  }

  static int onLifecycle(virConnectPtr, virDomainPtr domain, int event, int detail, void* opaque) {
    if (event != VIR_DOMAIN_EVENT_STOPPED) return 0;
    auto* state = static_cast<State*>(opaque);
    const char* name = virDomainGetName(domain);
    DomainStopped stopped{name ? name : "", stopReasonFromDetail(detail)};
    std::lock_guard lock(state->callbackMutex);
    if (!state->closing && state->onStopped) state->onStopped(stopped);
    return 0;
  }

  // Opens the connection and registers both callbacks. Caller holds mutex.
  Status connectLocked() {
    ConnectionPtr opened(virConnectOpen(uri.c_str()));
    if (!opened) {
      std::string why = virGetLastErrorMessage();
      return fail(unavailable(
          "virConnectOpen(\"{}\"): {} (is libvirtd running? start it: virtlogd -d; libvirtd -d, or systemctl "
          "start libvirtd)",
          uri, why));
    }
    if (virConnectRegisterCloseCallback(opened.get(), onClose, this, nullptr) < 0)
      return fail(lastError("virConnectRegisterCloseCallback"));
    // libvirt declares one generic callback type; void(*)() is the cast GCC accepts between function types.
    auto callback = reinterpret_cast<virConnectDomainEventGenericCallback>(
        reinterpret_cast<void (*)()>(static_cast<virConnectDomainEventCallback>(onLifecycle)));
    const int id = virConnectDomainEventRegisterAny(opened.get(), nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                    callback, this, nullptr);
    if (id < 0) {
      auto error = lastError("virConnectDomainEventRegisterAny(LIFECYCLE)");
      virConnectUnregisterCloseCallback(opened.get(), onClose);
      return fail(std::move(error));
    }
    conn = std::move(opened);
    lifecycleCallback = id;
    dead = false;
    return {};
  }

  void disconnectLocked() {
    if (!conn) return;
    if (lifecycleCallback >= 0) virConnectDomainEventDeregisterAny(conn.get(), lifecycleCallback);
    lifecycleCallback = -1;
    virConnectUnregisterCloseCallback(conn.get(), onClose);
    conn.reset();
  }

  bool connectionLost() { return dead || !conn || virConnectIsAlive(conn.get()) != 1; }

  // Runs call(conn) under the mutex; when the connection turns out dead (before or after the call),
  // reconnects once and retries.
  template <class Call>
  auto withConnection(Call&& call) -> decltype(call(std::declval<virConnectPtr>())) {
    std::lock_guard lock(mutex);
    if (connectionLost()) {
      disconnectLocked();
      if (auto ok = connectLocked(); !ok) return fail(ok.error());
    }
    auto result = call(conn.get());
    if (result || !connectionLost()) return result;
    log::warn("libvirt connection {} lost, reconnecting", uri);
    disconnectLocked();
    if (auto ok = connectLocked(); !ok) return fail(ok.error());
    return call(conn.get());
  }
};

Libvirt::Libvirt(std::unique_ptr<State> state) : state_(std::move(state)) {}

Result<std::unique_ptr<Libvirt>> Libvirt::open(std::string uri,
                                               std::function<void(const DomainStopped&)> onStopped) {
  if (auto ok = EventLoop::acquire(); !ok) return fail(ok.error());
  auto state = std::make_unique<State>();
  state->uri = std::move(uri);
  state->onStopped = std::move(onStopped);
  Status connected;
  {
    std::lock_guard lock(state->mutex);
    connected = state->connectLocked();
  }
  if (!connected) {
    EventLoop::release();
    return fail(connected.error());
  }
  return std::unique_ptr<Libvirt>(new Libvirt(std::move(state)));
}

Libvirt::~Libvirt() {
  {
    std::lock_guard lock(state_->callbackMutex);
    state_->closing = true;
  }
  {
    std::lock_guard lock(state_->mutex);
    state_->disconnectLocked();
  }
  EventLoop::release();
}

const std::string& Libvirt::uri() const {
  return state_->uri;
}

Result<DomainInfo> Libvirt::createTransient(const std::string& xml, bool paused) {
  return state_->withConnection([&](virConnectPtr conn) -> Result<DomainInfo> {
    DomainPtr domain(
        virDomainCreateXML(conn, xml.c_str(), paused ? VIR_DOMAIN_START_PAUSED : VIR_DOMAIN_NONE));
    if (!domain) return fail(lastError("virDomainCreateXML"));
    return describe(domain.get());
  });
}

Result<DomainInfo> Libvirt::create(const DomainConfig& config, bool paused) {
  if (Status ok = validate(config); !ok) return fail(ok.error());
  const auto started = std::chrono::steady_clock::now();
  auto created = createTransient(domainXml(config), paused);
  if (!created) return fail(created.error());
  created->steps.emplace_back(
      "libvirt_create",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  return created;
}

Result<DomainInfo> Libvirt::restoreFromFile(const RestoreRequest& request) {
  const auto started = std::chrono::steady_clock::now();
  auto restored = restoreFromFile(request.file, request.config.domainName, request.paused, request.editXml);
  if (!restored) return fail(restored.error());
  restored->steps.emplace_back(
      "libvirt_restore",
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count());
  return restored;
}

Status Libvirt::resume(const std::string& name) {
  return state_->withConnection([&](virConnectPtr conn) -> Status {
    DomainPtr domain(virDomainLookupByName(conn, name.c_str()));
    if (!domain) return fail(lastError(fmt::format("virDomainLookupByName(\"{}\")", name)));
    if (virDomainResume(domain.get()) < 0)
      return fail(lastError(fmt::format("virDomainResume(\"{}\")", name)));
    return {};
  });
}

Status Libvirt::saveToFile(const std::string& name, const std::filesystem::path& file) {
  return state_->withConnection([&](virConnectPtr conn) -> Status {
    DomainPtr domain(virDomainLookupByName(conn, name.c_str()));
    if (!domain) return fail(lastError(fmt::format("virDomainLookupByName(\"{}\")", name)));
    if (virDomainSaveFlags(domain.get(), file.c_str(), nullptr, 0) < 0)
      return fail(lastError(fmt::format("virDomainSaveFlags(\"{}\", \"{}\")", name, file.string())));
    return {};
  });
}

Result<DomainInfo> Libvirt::restoreFromFile(const std::filesystem::path& file, const std::string& name,
                                            bool paused,
                                            const std::function<std::string(std::string)>& editXml) {
  return state_->withConnection([&](virConnectPtr conn) -> Result<DomainInfo> {
    const unsigned flags = paused ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING;
    std::string xml;
    if (editXml) {
      char* saved = virDomainSaveImageGetXMLDesc(conn, file.c_str(), VIR_DOMAIN_SAVE_IMAGE_XML_SECURE);
      if (saved == nullptr)
        return fail(lastError(fmt::format("virDomainSaveImageGetXMLDesc(\"{}\")", file.string())));
      xml = editXml(saved);
      std::free(saved);
    }
    if (virDomainRestoreFlags(conn, file.c_str(), editXml ? xml.c_str() : nullptr, flags) < 0)
      return fail(lastError(fmt::format("virDomainRestoreFlags(\"{}\")", file.string())));
    DomainPtr domain(virDomainLookupByName(conn, name.c_str()));
    if (!domain) return fail(lastError(fmt::format("virDomainLookupByName(\"{}\")", name)));
    return describe(domain.get());
  });
}

Result<std::optional<DomainInfo>> Libvirt::lookup(const std::string& name) {
  return state_->withConnection([&](virConnectPtr conn) -> Result<std::optional<DomainInfo>> {
    DomainPtr domain(virDomainLookupByName(conn, name.c_str()));
    if (!domain) {
      if (lastErrorIs(VIR_ERR_NO_DOMAIN)) return std::nullopt;
      return fail(lastError(fmt::format("virDomainLookupByName(\"{}\")", name)));
    }
    auto info = describe(domain.get());
    if (!info) {
      if (info.error().kind() == ErrorKind::NotFound) return std::nullopt;  // went away meanwhile
      return fail(info.error());
    }
    return std::optional<DomainInfo>(std::move(*info));
  });
}

Result<std::vector<DomainInfo>> Libvirt::listDomains(std::string_view prefix) {
  return state_->withConnection([&](virConnectPtr conn) -> Result<std::vector<DomainInfo>> {
    virDomainPtr* domains = nullptr;
    const int count = virConnectListAllDomains(conn, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
    if (count < 0) return fail(lastError("virConnectListAllDomains"));
    std::vector<DomainPtr> owned;
    for (int i = 0; i < count; ++i) owned.emplace_back(domains[i]);
    free(domains);
    std::vector<DomainInfo> result;
    for (const auto& domain : owned) {
      const char* name = virDomainGetName(domain.get());
      if (name == nullptr || !std::string_view(name).starts_with(prefix)) continue;
      auto info = describe(domain.get());
      if (!info) {
        if (info.error().kind() == ErrorKind::NotFound) continue;
        return fail(info.error());
      }
      result.push_back(std::move(*info));
    }
    return result;
  });
}

Status Libvirt::destroy(const std::string& name) {
  return state_->withConnection([&](virConnectPtr conn) -> Status {
    DomainPtr domain(virDomainLookupByName(conn, name.c_str()));
    if (!domain) {
      if (lastErrorIs(VIR_ERR_NO_DOMAIN)) return {};
      return fail(lastError(fmt::format("virDomainLookupByName(\"{}\")", name)));
    }
    if (virDomainDestroy(domain.get()) < 0) {
      // Stopped between lookup and destroy: what the caller wanted.
      if (lastErrorIs(VIR_ERR_NO_DOMAIN) || lastErrorIs(VIR_ERR_OPERATION_INVALID)) return {};
      return fail(lastError(fmt::format("virDomainDestroy(\"{}\")", name)));
    }
    return {};
  });
}

Status Libvirt::shutdownAcpi(const std::string& name) {
  return state_->withConnection([&](virConnectPtr conn) -> Status {
    DomainPtr domain(virDomainLookupByName(conn, name.c_str()));
    if (!domain) return fail(lastError(fmt::format("virDomainLookupByName(\"{}\")", name)));
    if (virDomainShutdownFlags(domain.get(), VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN) < 0)
      return fail(lastError(fmt::format("virDomainShutdownFlags(\"{}\", ACPI_POWER_BTN)", name)));
    return {};
  });
}

Result<std::string> Libvirt::hypervisorVersion() {
  return state_->withConnection([&](virConnectPtr conn) -> Result<std::string> {
    const char* type = virConnectGetType(conn);
    if (type == nullptr) return fail(lastError("virConnectGetType"));
    unsigned long hypervisor = 0;
    if (virConnectGetVersion(conn, &hypervisor) < 0) return fail(lastError("virConnectGetVersion"));
    unsigned long library = 0;
    if (virConnectGetLibVersion(conn, &library) < 0) return fail(lastError("virConnectGetLibVersion"));
    return fmt::format("{} {} via libvirt {}", type, versionText(hypervisor), versionText(library));
  });
}

}  // namespace corral::vmm
