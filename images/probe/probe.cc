// corral-probe: a static, dependency-free program that runs inside containers and VMs and prints one JSON
// object describing what it sees (namespaces, ids, capabilities, seccomp, cgroups, devices, network).
//
// `corral-probe --syscall NAME` tries one syscall and reports its result and errno, so tests can check the
// seccomp filter and capability set from the inside. Every call made there is harmless even when allowed
// (invalid flags, empty images, a fresh namespace for the probe itself), so a probe run on a host never
// changes it. The parsing helpers are free functions so tests/unit/container/probe_test.cc can include
// this file with CORRAL_PROBE_NO_MAIN and check them directly.
#include <dirent.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <sys/sysmacros.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "images/common/utf8.h"
#include "images/probe/spoof.h"

namespace corral::probe {

// ---- JSON output ---------------------------------------------------------------------------------------

// Appends `text` as a JSON string literal. Control characters are \u-escaped and bytes that are not valid
// UTF-8 become U+FFFD, so whatever a file under /proc or /sys holds, the output stays valid JSON.
inline void appendJsonString(std::string& out, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.push_back('"');
  size_t i = 0;
  while (i < text.size()) {
    const auto byte = static_cast<unsigned char>(text[i]);
    if (byte == '"' || byte == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(byte));
      ++i;
    } else if (byte == '\n') {
      out += "\\n";
      ++i;
    } else if (byte == '\t') {
      out += "\\t";
      ++i;
    } else if (byte == '\r') {
      out += "\\r";
      ++i;
    } else if (byte < 0x20 || byte == 0x7f) {
      out += "\\u00";
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 0xf]);
      ++i;
    } else if (byte < 0x80) {
      out.push_back(static_cast<char>(byte));
      ++i;
    } else if (const size_t length = images::utf8SequenceLength(text, i); length > 0) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
  out.push_back('"');
}

// A small streaming writer: objects and arrays with automatic commas. Keys are written with key().
class JsonWriter {
 public:
  JsonWriter& beginObject() { return open('{'); }
  JsonWriter& endObject() { return close('}'); }
  JsonWriter& beginArray() { return open('['); }
  JsonWriter& endArray() { return close(']'); }
  JsonWriter& key(std::string_view name) {
    separate();
    appendJsonString(out_, name);
    out_.push_back(':');
    afterKey_ = true;
    return *this;
  }
  JsonWriter& value(std::string_view text) {
    separate();
    appendJsonString(out_, text);
    return *this;
  }
  JsonWriter& value(const char* text) { return value(std::string_view(text)); }
  JsonWriter& value(const std::string& text) { return value(std::string_view(text)); }
  JsonWriter& value(int64_t number) {
    separate();
    out_ += std::to_string(number);
    return *this;
  }
  JsonWriter& value(uint64_t number) {
    separate();
    out_ += std::to_string(number);
    return *this;
  }
  JsonWriter& value(int number) { return value(static_cast<int64_t>(number)); }
  JsonWriter& value(bool flag) {
    separate();
    out_ += flag ? "true" : "false";
    return *this;
  }
  JsonWriter& valueDouble(double number) {
    separate();
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%.2f", number);
    out_ += buffer;
    return *this;
  }
  JsonWriter& null() {
    separate();
    out_ += "null";
    return *this;
  }
  template <class T>
  JsonWriter& optional(const std::optional<T>& maybe) {
    return maybe ? value(*maybe) : null();
  }
  JsonWriter& stringArray(const std::vector<std::string>& items) {
    beginArray();
    for (const auto& item : items) value(item);
    return endArray();
  }
  const std::string& text() const { return out_; }

 private:
  JsonWriter& open(char bracket) {
    separate();
    out_.push_back(bracket);
    needComma_ = false;
    return *this;
  }
  JsonWriter& close(char bracket) {
    out_.push_back(bracket);
    needComma_ = true;
    return *this;
  }
  void separate() {
    if (afterKey_) {
      afterKey_ = false;
      return;
    }
    if (needComma_) out_.push_back(',');
    needComma_ = true;
  }
  std::string out_;
  bool needComma_ = false;
  bool afterKey_ = false;
};

// ---- Reading the system ----------------------------------------------------------------------------------

// Reads a whole file with read(2): /proc and /sys files report size 0, so read until EOF.
inline std::optional<std::string> readFile(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  std::string content;
  char buffer[4096];
  for (;;) {
    const ssize_t got = read(fd, buffer, sizeof buffer);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      close(fd);
      return std::nullopt;
    }
    if (got == 0) break;
    content.append(buffer, static_cast<size_t>(got));
  }
  close(fd);
  return content;
}

inline std::string trim(std::string_view text) {
  const auto begin = text.find_first_not_of(" \t\n\r");
  if (begin == std::string_view::npos) return {};
  const auto end = text.find_last_not_of(" \t\n\r");
  return std::string(text.substr(begin, end - begin + 1));
}

// Non-empty lines, each with runs of blanks collapsed to one space ("0 0 4294967295" for a uid_map line).
inline std::vector<std::string> normalizedLines(std::string_view text) {
  std::vector<std::string> lines;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::string word, joined;
    while (words >> word) joined += (joined.empty() ? "" : " ") + word;
    if (!joined.empty()) lines.push_back(joined);
  }
  return lines;
}

// The value of "Name:\tvalue" in a /proc/PID/status-style text.
inline std::optional<std::string> statusField(std::string_view status, std::string_view name) {
  size_t pos = 0;
  while (pos < status.size()) {
    auto end = status.find('\n', pos);
    if (end == std::string_view::npos) end = status.size();
    const auto line = status.substr(pos, end - pos);
    if (line.size() > name.size() && line.substr(0, name.size()) == name && line[name.size()] == ':')
      return trim(line.substr(name.size() + 1));
    pos = end + 1;
  }
  return std::nullopt;
}

inline std::optional<int64_t> parseInteger(std::string_view text) {
  const auto trimmed = trim(text);
  if (trimmed.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const long long parsed = std::strtoll(trimmed.c_str(), &end, 10);
  if (errno != 0 || *end != '\0') return std::nullopt;
  return parsed;
}

// Capability numbers as in linux/capability.h, CAP_CHOWN (0) to CAP_CHECKPOINT_RESTORE (40).
inline constexpr const char* kCapabilityNames[] = {
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};

// "00000000a80425fb" → names of the set bits; bits past the table come out as "CAP_<n>".
inline std::optional<std::vector<std::string>> decodeCapabilities(std::string_view hex) {
  const auto trimmed = trim(hex);
  if (trimmed.empty() || trimmed.size() > 16) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const unsigned long long mask = std::strtoull(trimmed.c_str(), &end, 16);
  if (errno != 0 || *end != '\0') return std::nullopt;
  std::vector<std::string> names;
  constexpr size_t kKnown = std::size(kCapabilityNames);
  for (unsigned bit = 0; bit < 64; ++bit) {
    if ((mask >> bit) & 1)
      names.push_back(bit < kKnown ? kCapabilityNames[bit] : "CAP_" + std::to_string(bit));
  }
  return names;
}

// The inode number in a /proc/self/ns/* link target such as "net:[4026531840]".
inline std::optional<uint64_t> namespaceInode(std::string_view link) {
  const auto open = link.find(":[");
  if (open == std::string_view::npos || link.empty() || link.back() != ']') return std::nullopt;
  const std::string digits(link.substr(open + 2, link.size() - open - 3));
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string::npos) return std::nullopt;
  return std::strtoull(digits.c_str(), nullptr, 10);
}

struct MountEntry {
  std::string mountPoint, fsType, source;
};

// Undoes the octal escapes (\040 for a space) that mountinfo uses in paths.
inline std::string unescapeMountField(std::string_view field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    const auto isOctal = [&](size_t k) { return field[k] >= '0' && field[k] <= '7'; };
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] <= '3' && isOctal(i + 1) && isOctal(i + 2) &&
        isOctal(i + 3)) {
      out.push_back(
          static_cast<char>((field[i + 1] - '0') * 64 + (field[i + 2] - '0') * 8 + (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

// Parses /proc/PID/mountinfo: "36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw".
inline std::vector<MountEntry> parseMountinfo(std::string_view text) {
  std::vector<MountEntry> entries;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream words(line);
    std::vector<std::string> fields;
    std::string word;
    while (words >> word) fields.push_back(word);
    const auto separator = std::find(fields.begin(), fields.end(), "-");
    if (fields.size() < 5 || separator == fields.end() || std::distance(separator, fields.end()) < 3)
      continue;
    entries.push_back(
        {unescapeMountField(fields[4]), *(separator + 1), unescapeMountField(*(separator + 2))});
  }
  return entries;
}

// The mount that is visible at "/": the last entry for "/" (later mounts stack on earlier ones).
inline std::optional<MountEntry> rootMount(const std::vector<MountEntry>& entries) {
  for (auto it = entries.rbegin(); it != entries.rend(); ++it)
    if (it->mountPoint == "/") return *it;
  return std::nullopt;
}

inline std::vector<std::string> listDirectory(const std::string& path) {
  std::vector<std::string> names;
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return names;
  while (const dirent* entry = readdir(dir)) {
    const std::string_view name = entry->d_name;
    if (name != "." && name != "..") names.emplace_back(name);
  }
  closedir(dir);
  std::sort(names.begin(), names.end());
  return names;
}

// The transport a virtio device sits on, from its sysfs path (/sys/bus/virtio/devices/virtioN resolved):
// "pci" on machine pc (/sys/devices/pci0000:00/...), "mmio" on microvm (/sys/devices/platform/virtio-mmio.N/
// or, with devices from the kernel command line, .../virtio-mmio-cmdline/...), else "other".
inline std::string virtioTransport(std::string_view devicePath) {
  if (devicePath.find("/virtio-mmio") != std::string_view::npos) return "mmio";
  if (devicePath.find("/devices/pci") != std::string_view::npos) return "pci";
  return "other";
}

// The transports of every virtio device this system has, each once: what machine type a guest runs on.
inline std::vector<std::string> virtioTransports() {
  std::vector<std::string> transports;
  for (const auto& device : listDirectory("/sys/bus/virtio/devices")) {
    char resolved[PATH_MAX];
    if (realpath(("/sys/bus/virtio/devices/" + device).c_str(), resolved) == nullptr) continue;
    std::string transport = virtioTransport(resolved);
    if (std::find(transports.begin(), transports.end(), transport) == transports.end())
      transports.push_back(std::move(transport));
  }
  std::sort(transports.begin(), transports.end());
  return transports;
}

inline std::vector<int64_t> visiblePids() {
  std::vector<int64_t> pids;
  for (const auto& name : listDirectory("/proc")) {
    if (name.find_first_not_of("0123456789") == std::string::npos) pids.push_back(std::stoll(name));
  }
  std::sort(pids.begin(), pids.end());
  return pids;
}

// Interface names in this process's network namespace (sysfs may show another namespace's); on failure
// the errno, e.g. EPERM when seccomp refuses socket(AF_NETLINK).
inline std::vector<std::string> interfaceNamesFromNetlink(int* errnum) {
  std::vector<std::string> names;
  ifaddrs* list = nullptr;
  *errnum = 0;
  if (getifaddrs(&list) != 0) {
    *errnum = errno;
    return names;
  }
  for (const ifaddrs* it = list; it != nullptr; it = it->ifa_next) {
    if (it->ifa_name != nullptr) names.emplace_back(it->ifa_name);
  }
  freeifaddrs(list);
  std::sort(names.begin(), names.end());
  names.erase(std::unique(names.begin(), names.end()), names.end());
  return names;
}

inline const char* errnoName(int errnum) {
  const char* name = strerrorname_np(errnum);
  return name != nullptr ? name : "unknown";
}

// ---- The report ------------------------------------------------------------------------------------------

inline void writeOptionalFile(JsonWriter& json, std::string_view key, const std::string& path) {
  json.key(key);
  if (auto content = readFile(path)) {
    json.value(trim(*content));
  } else {
    json.null();
  }
}

inline std::string report() {
  JsonWriter json;
  json.beginObject();

  utsname uts{};
  if (uname(&uts) == 0) {
    json.key("kernel").beginObject();
    json.key("sysname").value(uts.sysname);
    json.key("release").value(uts.release);
    json.key("version").value(uts.version);
    json.key("machine").value(uts.machine);
    json.endObject();
    json.key("hostname").value(uts.nodename);
  } else {
    json.key("kernel").null().key("hostname").null();
  }

  json.key("pid").value(static_cast<int64_t>(getpid()));
  json.key("ppid").value(static_cast<int64_t>(getppid()));
  writeOptionalFile(json, "pid1Comm", "/proc/1/comm");
  const auto pids = visiblePids();
  json.key("visiblePidCount").value(static_cast<uint64_t>(pids.size()));
  json.key("visiblePids").beginArray();
  for (const auto pid : pids) json.value(pid);
  json.endArray();

  json.key("namespaces").beginObject();
  for (const char* ns : {"cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "user", "uts"}) {
    char target[256];
    const std::string link = std::string("/proc/self/ns/") + ns;
    const ssize_t length = readlink(link.c_str(), target, sizeof target - 1);
    json.key(ns);
    if (length < 0) {
      json.null();
      continue;
    }
    json.optional(namespaceInode(std::string_view(target, static_cast<size_t>(length))));
  }
  json.endObject();

  json.key("uid").value(static_cast<int64_t>(getuid()));
  json.key("euid").value(static_cast<int64_t>(geteuid()));
  json.key("gid").value(static_cast<int64_t>(getgid()));
  json.key("egid").value(static_cast<int64_t>(getegid()));
  for (const char* map : {"uid_map", "gid_map"}) {
    json.key(std::string(map) == "uid_map" ? "uidMap" : "gidMap");
    if (auto content = readFile(std::string("/proc/self/") + map)) {
      json.stringArray(normalizedLines(*content));
    } else {
      json.null();
    }
  }

  const auto status = readFile("/proc/self/status").value_or("");
  json.key("capabilities").beginObject();
  for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    json.key(set).optional(statusField(status, set));
  }
  json.key("effectiveNames");
  const auto effectiveNames = decodeCapabilities(statusField(status, "CapEff").value_or(""));
  if (effectiveNames) {
    json.stringArray(*effectiveNames);
  } else {
    json.null();
  }
  json.endObject();
  for (const auto& [key, field] :
       {std::pair{"seccomp", "Seccomp"}, std::pair{"seccompFilters", "Seccomp_filters"},
        std::pair{"noNewPrivs", "NoNewPrivs"}}) {
    json.key(key);
    const auto number = parseInteger(statusField(status, field).value_or(""));
    json.optional(number);
  }

  json.key("cgroup");
  if (auto content = readFile("/proc/self/cgroup")) {
    json.stringArray(normalizedLines(*content));
  } else {
    json.null();
  }
  // Whatever limit files this cgroup view exposes, keyed by path: v2 in the unified mount, v1 per controller.
  json.key("cgroupLimits").beginObject();
  for (const char* path : {"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/pids.max", "/sys/fs/cgroup/cpu.max",
                           "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/pids/pids.max",
                           "/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"}) {
    if (auto content = readFile(path)) json.key(path).value(trim(*content));
  }
  json.endObject();

  json.key("cpus").beginObject();
  json.key("online").value(static_cast<int64_t>(sysconf(_SC_NPROCESSORS_ONLN)));
  cpu_set_t affinity;
  CPU_ZERO(&affinity);
  json.key("affinity");
  if (sched_getaffinity(0, sizeof affinity, &affinity) == 0) {
    json.value(static_cast<int64_t>(CPU_COUNT(&affinity)));
  } else {
    json.null();
  }
  json.endObject();

  json.key("memTotalKiB");
  {
    std::optional<int64_t> kib;
    if (auto meminfo = readFile("/proc/meminfo")) {
      auto field = statusField(*meminfo, "MemTotal");
      if (field && field->size() > 3 && field->ends_with(" kB"))
        kib = parseInteger(field->substr(0, field->size() - 3));
    }
    json.optional(kib);
  }

  int interfacesErrno = 0;
  const auto interfaces = interfaceNamesFromNetlink(&interfacesErrno);
  json.key("interfaces");
  if (interfacesErrno == 0) {
    json.stringArray(interfaces);
  } else {
    json.null().key("interfacesError").value(errnoName(interfacesErrno));
  }
  json.key("sysClassNet");
  struct stat info {};
  if (stat("/sys/class/net", &info) == 0) {
    json.stringArray(listDirectory("/sys/class/net"));
  } else {
    json.null();
  }
  json.key("devKvm").value(stat("/dev/kvm", &info) == 0);
  // A VM's machine type shows in its virtio transports: ["pci"] on pc, ["mmio"] on microvm; [] elsewhere.
  json.key("virtioTransports").stringArray(virtioTransports());

  json.key("mounts").beginObject();
  if (auto mountinfo = readFile("/proc/self/mountinfo")) {
    const auto entries = parseMountinfo(*mountinfo);
    json.key("count").value(static_cast<uint64_t>(entries.size()));
    json.key("root");
    if (auto root = rootMount(entries)) {
      json.beginObject().key("source").value(root->source).key("fstype").value(root->fsType).endObject();
    } else {
      json.null();
    }
  } else {
    json.key("count").null().key("root").null();
  }
  json.endObject();

  json.key("containerEnv");
  if (const char* container = std::getenv("container")) {
    json.value(container);
  } else {
    json.null();
  }
  writeOptionalFile(json, "containerManager", "/run/host/container-manager");

  json.key("uptimeSeconds");
  if (auto uptime = readFile("/proc/uptime")) {
    json.valueDouble(std::strtod(uptime->c_str(), nullptr));
  } else if (struct sysinfo system{}; sysinfo(&system) == 0) {
    json.valueDouble(static_cast<double>(system.uptime));
  } else {
    json.null();
  }

  json.endObject();
  return json.text();
}

// ---- --syscall -------------------------------------------------------------------------------------------

inline constexpr const char* kProbeSyscalls[] = {"keyctl",         "unshare",     "mount",  "add_key",
                                                 "kexec_load",     "init_module", "clone3", "getpid",
                                                 "io_uring_setup", "statmount"};

// Makes the named call in a form that changes nothing outside this process even when it is allowed.
// Returns the raw result and errno, or nullopt for a name outside kProbeSyscalls.
inline std::optional<std::pair<long, int>> trySyscall(std::string_view name) {
  long result = 0;
  errno = 0;
  if (name == "keyctl") {
    constexpr long kKeyctlGetKeyringId = 0, kKeySpecProcessKeyring = -2;
    result = syscall(SYS_keyctl, kKeyctlGetKeyringId, kKeySpecProcessKeyring, 0L);
  } else if (name == "unshare") {
    result = unshare(CLONE_NEWUTS);  // only this process moves
  } else if (name == "mount") {
    // MS_MOVE without a source: EPERM without CAP_SYS_ADMIN or under seccomp, EINVAL once the permission
    // check passes (the source is checked after it); nothing is ever mounted or moved.
    result = mount(nullptr, "/", nullptr, MS_MOVE, nullptr);
  } else if (name == "add_key") {
    constexpr long kKeySpecProcessKeyring = -2;
    result = syscall(SYS_add_key, "user", "corral-probe", "x", 1L, kKeySpecProcessKeyring);
  } else if (name == "kexec_load") {
    // An undefined flag bit: EPERM without CAP_SYS_BOOT or under seccomp, EINVAL otherwise (ENOSYS on
    // kernels built without kexec); never loads.
    result = syscall(SYS_kexec_load, 0L, 0L, nullptr, 0x8000UL);
  } else if (name == "init_module") {
    // An empty image: EPERM without CAP_SYS_MODULE or under seccomp, ENOEXEC otherwise (ENOSYS
    // on kernels built without module support).
    result = syscall(SYS_init_module, nullptr, 0L, "");
  } else if (name == "clone3") {
    // A NULL argument of size 0: EINVAL when allowed, ENOSYS under Docker's profile; never forks.
    result = syscall(SYS_clone3, nullptr, 0L);
  } else if (name == "getpid") {
    result = syscall(SYS_getpid);
  } else if (name == "io_uring_setup") {
    // NULL params: EFAULT when allowed (EPERM when the kernel.io_uring_disabled sysctl or seccomp refuses);
    // never sets up a ring.
    constexpr long kIoUringSetup = 425;  // x86-64 and the generic table
    result = syscall(kIoUringSetup, 1L, nullptr);
  } else if (name == "statmount") {
    // A syscall newer than Docker's table (Linux 6.8). NULL request: EFAULT when allowed, ENOSYS on an
    // older kernel or under a profile that predates it; reads nothing.
    constexpr long kStatmount = 457;
    result = syscall(kStatmount, nullptr, nullptr, 0L, 0L);
  } else {
    return std::nullopt;
  }
  return std::pair{result, result < 0 ? errno : 0};
}

inline std::string syscallReport(std::string_view name, long result, int errnum) {
  JsonWriter json;
  json.beginObject();
  json.key("syscall").value(name);
  json.key("result").value(static_cast<int64_t>(result));
  json.key("errno").value(errnum);
  json.key("error").value(errnum == 0 ? "" : errnoName(errnum));
  json.endObject();
  return json.text();
}

// ---- --open-device ---------------------------------------------------------------------------------------

// The device policy as the container meets it: with TYPE MAJOR MINOR the node is made first (mknod at
// PATH, after removing what is there), then PATH is opened for MODE (r, w or rw) without blocking (a
// serial line would wait for its carrier) and without becoming the controlling terminal, and closed.
// "" is success; an errno name otherwise; mknod is "skipped" without numbers. nullopt for bad arguments.
inline std::optional<std::string> openDeviceReport(const char* path, std::string_view mode, int extra,
                                                   char** numbers) {
  int access = mode == "r" ? O_RDONLY : mode == "w" ? O_WRONLY : mode == "rw" ? O_RDWR : -1;
  if (access < 0 || (extra != 0 && extra != 3)) return std::nullopt;
  std::string mknodResult = "skipped";
  if (extra == 3) {
    const std::string_view type = numbers[0];
    auto major = parseInteger(numbers[1]);
    auto minor = parseInteger(numbers[2]);
    if ((type != "c" && type != "b") || !major || !minor || *major < 0 || *minor < 0) return std::nullopt;
    unlink(path);
    const mode_t kind = type == "c" ? S_IFCHR : S_IFBLK;
    mknodResult =
        mknod(path, kind | 0600, makedev(static_cast<unsigned>(*major), static_cast<unsigned>(*minor))) == 0
            ? ""
            : errnoName(errno);
  }
  int fd = open(path, access | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  std::string openResult = fd >= 0 ? "" : errnoName(errno);
  if (fd >= 0) close(fd);
  JsonWriter json;
  json.beginObject();
  json.key("path").value(path);
  json.key("mknod").value(mknodResult);
  json.key("open").value(openResult);
  json.endObject();
  return json.text();
}

inline std::string usage() {
  std::string text =
      "usage: corral-probe [--syscall NAME | --open-device PATH r|w|rw [c|b MAJOR MINOR] | --spoof KIND ...]\n"
      "  NAME is one of:";
  for (const char* name : kProbeSyscalls) text += std::string(" ") + name;
  return text + "\n" + spoofUsage();
}

// Returns the exit status; writes the JSON line to `out` and messages to `err`.
inline int run(int argc, char** argv, std::FILE* out, std::FILE* err) {
  if (argc == 1) {
    std::fprintf(out, "%s\n", report().c_str());
    return 0;
  }
  const std::string_view option = argv[1];
  if (option == "--help" || option == "-h") {
    std::fputs(usage().c_str(), out);
    return 0;
  }
  if (option == "--syscall") {
    if (argc != 3) {
      std::fprintf(err, "corral-probe: --syscall needs exactly one NAME\n%s", usage().c_str());
      return 2;
    }
    const auto outcome = trySyscall(argv[2]);
    if (!outcome) {
      std::fprintf(err, "corral-probe: --syscall: unknown syscall \"%s\"\n%s", argv[2], usage().c_str());
      return 2;
    }
    std::fprintf(out, "%s\n", syscallReport(argv[2], outcome->first, outcome->second).c_str());
    return 0;
  }
  if (option == "--open-device") {
    auto report = argc >= 4 ? openDeviceReport(argv[2], argv[3], argc - 4, argv + 4) : std::nullopt;
    if (!report) {
      std::fprintf(err, "corral-probe: --open-device needs PATH r|w|rw [c|b MAJOR MINOR]\n%s",
                   usage().c_str());
      return 2;
    }
    std::fprintf(out, "%s\n", report->c_str());
    return 0;
  }
  if (option == "--spoof") {
    const SpoofOutcome outcome = spoof(std::vector<std::string_view>(argv + 2, argv + argc));
    JsonWriter json;
    json.beginObject();
    json.key("spoof").value(outcome.kind);
    json.key("device").value(outcome.device);
    json.key("source_mac").value(outcome.sourceMac);
    json.key("source_ip").value(outcome.sourceIp);
    json.key("destination_mac").value(outcome.destinationMac);
    json.key("destination_ip").value(outcome.destinationIp);
    json.key("frames").value(outcome.frames);
    json.key("error").value(outcome.error);
    json.endObject();
    std::fprintf(out, "%s\n", json.text().c_str());
    return outcome.error.empty() ? 0 : 1;
  }
  std::fprintf(err, "corral-probe: unknown option \"%s\"\n%s", argv[1], usage().c_str());
  return 2;
}

}  // namespace corral::probe

#ifndef CORRAL_PROBE_NO_MAIN
int main(int argc, char** argv) {
  const int status = corral::probe::run(argc, argv, stdout, stderr);
  if (std::fflush(stdout) != 0) {
    std::perror("corral-probe: writing stdout");
    return 1;
  }
  return status;
}
#endif
