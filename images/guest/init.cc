// corral-init: the VM's PID 1 and guest agent. Mounts the pseudo filesystems, loads the virtio modules,
// configures hostname and network from the kernel command line, with corral.root switches into an image's
// root disk and starts the image's workload there, then serves vmm/agent_protocol.h over the virtio-serial
// port and powers off on "shutdown" or the ACPI power button.
//
// The pure parts (command line parsing, request decoding, output capping, UTF-8 repair) are free functions
// so tests/unit/vmm/guest_init_test.cc can include this file with CORRAL_INIT_NO_MAIN and check them.
#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/input.h>
#include <linux/random.h>
#include <net/if.h>
#include <net/route.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "images/common/utf8.h"
#include "vmm/agent_protocol.h"

extern char** environ;

namespace corral::guest {

using nlohmann::json;

// ---- Pure helpers ------------------------------------------------------------------------------------

// What the init takes from the kernel command line (see vmm/agent_protocol.h).
struct BootParams {
  std::string name;
  std::string hostname;
  std::optional<in_addr_t> ip;  // network byte order
  int prefixLength = 0;
  std::optional<in_addr_t> gateway;
  std::string mac;
  std::string rootSerial;           // corral.root: the virtio disk holding the root filesystem
  std::optional<in_addr_t> nameserver;  // corral.dns: network byte order
  std::string search;                   // corral.search
  std::vector<std::string> errors;  // malformed corral.* values, logged to the console

  // corral.hostname, else corral.name, else "corral".
  std::string effectiveHostname() const {
    if (!hostname.empty()) return hostname;
    if (!name.empty()) return name;
    return "corral";
  }
};

// Splits a kernel command line on blanks; double quotes group blanks into one word and are dropped
// (the kernel's own next_arg() rules).
inline std::vector<std::string> splitCmdline(std::string_view cmdline) {
  std::vector<std::string> words;
  std::string word;
  bool inQuotes = false;
  bool haveWord = false;
  for (const char c : cmdline) {
    if (c == '"') {
      inQuotes = !inQuotes;
      haveWord = true;
    } else if (!inQuotes && (c == ' ' || c == '\t' || c == '\n')) {
      if (haveWord) words.push_back(std::move(word));
      word.clear();
      haveWord = false;
    } else {
      word.push_back(c);
      haveWord = true;
    }
  }
  if (haveWord) words.push_back(std::move(word));
  return words;
}

inline std::optional<in_addr_t> parseIpv4(std::string_view text) {
  const std::string copy(text);
  in_addr address{};
  if (copy.empty() || inet_pton(AF_INET, copy.c_str(), &address) != 1) return std::nullopt;
  return address.s_addr;
}

// A resolver search domain as corral writes it: lowercase letters, digits, dots and dashes, 1 to 253 bytes.
inline bool isDomainName(std::string_view text) {
  return !text.empty() && text.size() <= 253 &&
         text.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") == std::string_view::npos;
}

// "A.B.C.D/LEN" with LEN 0..32.
inline std::optional<std::pair<in_addr_t, int>> parseIpv4Cidr(std::string_view text) {
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const auto address = parseIpv4(text.substr(0, slash));
  const auto lengthText = text.substr(slash + 1);
  if (!address || lengthText.empty() || lengthText.size() > 2) return std::nullopt;
  int length = 0;
  for (const char c : lengthText) {
    if (c < '0' || c > '9') return std::nullopt;
    length = length * 10 + (c - '0');
  }
  if (length > 32) return std::nullopt;
  return std::pair{*address, length};
}

// Netmask in network byte order for a prefix length.
inline in_addr_t prefixToNetmask(int length) {
  const uint32_t host = length == 0 ? 0 : ~uint32_t{0} << (32 - length);
  return htonl(host);
}

inline BootParams parseCmdline(std::string_view cmdline) {
  BootParams params;
  for (const auto& word : splitCmdline(cmdline)) {
    const auto equals = word.find('=');
    if (equals == std::string::npos) continue;
    const std::string_view key = std::string_view(word).substr(0, equals);
    const std::string_view value = std::string_view(word).substr(equals + 1);
    if (key == vmm::kCmdlineName) {
      params.name = value;
    } else if (key == vmm::kCmdlineHostname) {
      params.hostname = value;
    } else if (key == vmm::kCmdlineIp) {
      if (const auto cidr = parseIpv4Cidr(value)) {
        params.ip = cidr->first;
        params.prefixLength = cidr->second;
      } else {
        params.errors.push_back(std::string(key) + "=\"" + std::string(value) + "\": not A.B.C.D/LEN");
      }
    } else if (key == vmm::kCmdlineGateway) {
      if (const auto gateway = parseIpv4(value)) {
        params.gateway = *gateway;
      } else {
        params.errors.push_back(std::string(key) + "=\"" + std::string(value) + "\": not A.B.C.D");
      }
    } else if (key == "corral.mac") {
      params.mac = value;
    } else if (key == vmm::kCmdlineRoot) {
      params.rootSerial = value;
    } else if (key == vmm::kCmdlineDns) {
      if (const auto server = parseIpv4(value)) {
        params.nameserver = *server;
      } else {
        params.errors.push_back(std::string(key) + "=\"" + std::string(value) + "\": not A.B.C.D");
      }
    } else if (key == vmm::kCmdlineSearch) {
      if (isDomainName(value)) {
        params.search = value;
      } else {
        params.errors.push_back(std::string(key) + "=\"" + std::string(value) + "\": not a domain name");
      }
    }
  }
  if (params.hostname.size() > 64) {
    params.errors.push_back("hostname \"" + params.hostname + "\" is longer than 64 bytes; cut");
    params.hostname.resize(64);
  }
  return params;
}

// Returns `text` with every byte that is not part of a well-formed UTF-8 sequence (overlong forms,
// surrogates and code points above U+10FFFF included) replaced by U+FFFD.
inline std::string toValidUtf8(std::string_view text) {
  static constexpr std::string_view kReplacement = "\xef\xbf\xbd";
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    if (size_t length = images::utf8SequenceLength(text, i); length > 0) {
      out.append(text.substr(i, length));
      i += length;
    } else {
      out.append(kReplacement);
      ++i;
    }
  }
  return out;
}

// Collects a stream up to a cap; what comes after is counted as truncation and dropped.
class CappedOutput {
 public:
  explicit CappedOutput(size_t cap) : cap_(cap) {}
  void append(std::string_view bytes) {
    const size_t room = data_.size() < cap_ ? cap_ - data_.size() : 0;
    if (bytes.size() > room) truncated_ = true;
    data_.append(bytes.substr(0, room));
  }
  const std::string& data() const { return data_; }
  bool truncated() const { return truncated_; }

 private:
  size_t cap_;
  std::string data_;
  bool truncated_ = false;
};

inline constexpr int kDefaultExecTimeoutMs = 60000;

struct HelloRequest {
  int64_t id;
};
struct ExecRequest {
  int64_t id;
  std::vector<std::string> command;
  std::vector<std::string> env;
  int timeoutMs = kDefaultExecTimeoutMs;
};
struct ShutdownRequest {
  int64_t id;
};
struct SetClockRequest {
  int64_t id;
  int64_t unixNs;
};
// set_identity: what a VM restored from a shared snapshot makes its own (the cold boot's corral.* command
// line parameters, plus a random seed and the clock, since every clone starts from the same memory).
struct SetIdentityRequest {
  int64_t id;
  std::string hostname;
  std::optional<std::array<uint8_t, 6>> mac;    // absent: no NIC, the network is left alone
  std::optional<std::pair<in_addr_t, int>> ip;  // absent: eth0 is left down
  std::optional<in_addr_t> gateway;
  std::optional<in_addr_t> nameserver;  // absent: /etc/resolv.conf is left as the snapshot has it
  std::string search;                   // the resolver's search domain; only with a nameserver
  std::vector<uint8_t> seed;  // host random bytes mixed into the guest's pool, credited as entropy
  int64_t unixNs = 0;
};
// "open": an interactive session (vmm/agent_protocol.h), the host's number for it.
struct OpenRequest {
  int64_t id;
  int64_t session;
  std::vector<std::string> command;  // never empty: /bin/sh when the host sent []
  std::vector<std::string> env;
  bool tty = false;
  bool stdinOpen = true;
  uint16_t rows = 0, cols = 0;
};
// The requests on a running session, which carry no id and get no answer.
struct SessionRequest {
  enum class Op { Input, Ack, Resize, CloseInput, Signal, Close } op;
  int64_t session;
  std::string data;    // input: the decoded bytes
  uint64_t bytes = 0;  // ack
  uint16_t rows = 0, cols = 0;
  int signal = 0;
};
struct BadRequest {
  std::optional<int64_t> id;
  std::string reason;
  bool answered = true;  // false: a malformed session request, which has no id to answer; logged instead
};
using Request = std::variant<HelloRequest, ExecRequest, ShutdownRequest, SetClockRequest, SetIdentityRequest,
                             OpenRequest, SessionRequest, BadRequest>;

// "rows"/"cols": absent or 0..65535.
inline std::optional<uint16_t> windowDimension(const json& request, const char* key) {
  const auto it = request.find(key);
  if (it == request.end() || it->is_null()) return uint16_t{0};
  if (!it->is_number_integer() || it->get<int64_t>() < 0 || it->get<int64_t>() > 65535) return std::nullopt;
  return static_cast<uint16_t>(it->get<int64_t>());
}

inline Request parseSessionRequest(const std::string& op, const json& request) {
  auto bad = [&](const std::string& why) { return BadRequest{std::nullopt, op + ": " + why, false}; };
  const auto session = request.find("session");
  if (session == request.end() || !session->is_number_integer()) return bad("\"session\" must be an integer");
  SessionRequest parsed{SessionRequest::Op::Input, session->get<int64_t>(), {}, 0, 0, 0, 0};
  if (op == "input") {
    const auto data = request.find("data");
    auto bytes = data != request.end() && data->is_string()
                     ? vmm::base64Decode(data->get_ref<const std::string&>())
                     : std::nullopt;
    if (!bytes) return bad("\"data\" must be base64");
    parsed.data = std::move(*bytes);
  } else if (op == "ack") {
    parsed.op = SessionRequest::Op::Ack;
    const auto bytes = request.find("bytes");
    if (bytes == request.end() || !bytes->is_number_unsigned())
      return bad("\"bytes\" must be a non-negative integer");
    parsed.bytes = bytes->get<uint64_t>();
  } else if (op == "resize") {
    parsed.op = SessionRequest::Op::Resize;
    const auto rows = windowDimension(request, "rows"), cols = windowDimension(request, "cols");
    if (!rows || !cols) return bad("\"rows\" and \"cols\" must be integers from 0 to 65535");
    parsed.rows = *rows, parsed.cols = *cols;
  } else if (op == "close_input") {
    parsed.op = SessionRequest::Op::CloseInput;
  } else if (op == "signal") {
    parsed.op = SessionRequest::Op::Signal;
    const auto signal = request.find("signal");
    if (signal == request.end() || !signal->is_number_integer() || signal->get<int64_t>() < 1 ||
        signal->get<int64_t>() > 64)
      return bad("\"signal\" must be a signal number from 1 to 64");
    parsed.signal = signal->get<int>();
  } else if (op == "close") {
    parsed.op = SessionRequest::Op::Close;
  } else {
    return bad("unknown op without an \"id\"");
  }
  return parsed;
}

// The strings of an "env" array, each K=V; an error names the op.
inline std::optional<std::string> parseEnv(const json& request, const char* op,
                                           std::vector<std::string>& out);

inline Request parseOpen(int64_t id, const json& request) {
  OpenRequest open{id, 0, {}, {}, false, true, 0, 0};
  const auto session = request.find("session");
  if (session == request.end() || !session->is_number_integer())
    return BadRequest{id, "open: \"session\" must be an integer"};
  open.session = session->get<int64_t>();
  if (const auto command = request.find("command"); command != request.end() && !command->is_null()) {
    if (!command->is_array()) return BadRequest{id, "open: \"command\" must be an array of strings"};
    for (const auto& word : *command) {
      if (!word.is_string()) return BadRequest{id, "open: \"command\" must be an array of strings"};
      open.command.push_back(word.get<std::string>());
    }
  }
  if (open.command.empty()) open.command = {"/bin/sh"};
  if (open.command.front().empty()) return BadRequest{id, "open: command[0] is empty"};
  if (auto error = parseEnv(request, "open", open.env)) return BadRequest{id, *error};
  for (const auto& [key, flag] : {std::pair{"tty", &open.tty}, std::pair{"stdin", &open.stdinOpen}}) {
    const auto it = request.find(key);
    if (it == request.end() || it->is_null()) continue;
    if (!it->is_boolean()) return BadRequest{id, std::string("open: \"") + key + "\" must be a boolean"};
    *flag = it->get<bool>();
  }
  const auto rows = windowDimension(request, "rows"), cols = windowDimension(request, "cols");
  if (!rows || !cols) return BadRequest{id, "open: \"rows\" and \"cols\" must be integers from 0 to 65535"};
  open.rows = *rows, open.cols = *cols;
  return open;
}

inline constexpr size_t kMinSeedBytes = 32;
inline constexpr size_t kMaxSeedBytes = 512;

// "52:54:00:ab:cd:ef" (either case).
inline std::optional<std::array<uint8_t, 6>> parseMac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  std::array<uint8_t, 6> mac{};
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < 6; ++i) {
    const int high = nibble(text[i * 3]), low = nibble(text[i * 3 + 1]);
    if (high < 0 || low < 0 || (i < 5 && text[i * 3 + 2] != ':')) return std::nullopt;
    mac[i] = static_cast<uint8_t>(high << 4 | low);
  }
  if (mac[0] & 1) return std::nullopt;  // a multicast address cannot be a NIC's
  return mac;
}

inline std::optional<std::vector<uint8_t>> parseHex(std::string_view text) {
  if (text.size() % 2 != 0) return std::nullopt;
  std::vector<uint8_t> bytes;
  bytes.reserve(text.size() / 2);
  for (size_t i = 0; i < text.size(); i += 2) {
    unsigned value = 0;
    for (const char c : text.substr(i, 2)) {
      value <<= 4;
      if (c >= '0' && c <= '9')
        value |= static_cast<unsigned>(c - '0');
      else if (c >= 'a' && c <= 'f')
        value |= static_cast<unsigned>(c - 'a' + 10);
      else
        return std::nullopt;
    }
    bytes.push_back(static_cast<uint8_t>(value));
  }
  return bytes;
}

inline Request parseSetIdentity(int64_t id, const json& request) {
  SetIdentityRequest identity{id, {}, std::nullopt, std::nullopt, std::nullopt, std::nullopt, {}, {}, 0};
  const auto hostname = request.find("hostname");
  if (hostname == request.end() || !hostname->is_string() ||
      hostname->get_ref<const std::string&>().empty() || hostname->get_ref<const std::string&>().size() > 64)
    return BadRequest{id, "set_identity: \"hostname\" must be a string of 1 to 64 bytes"};
  identity.hostname = hostname->get<std::string>();
  if (const auto mac = request.find("mac"); mac != request.end() && !mac->is_null()) {
    identity.mac = mac->is_string() ? parseMac(mac->get_ref<const std::string&>()) : std::nullopt;
    if (!identity.mac)
      return BadRequest{id, "set_identity: \"mac\" must be a unicast \"xx:xx:xx:xx:xx:xx\" or null"};
  }
  if (const auto ip = request.find("ip"); ip != request.end() && !ip->is_null()) {
    identity.ip = ip->is_string() ? parseIpv4Cidr(ip->get_ref<const std::string&>()) : std::nullopt;
    if (!identity.ip || !identity.mac)
      return BadRequest{id, "set_identity: \"ip\" must be \"A.B.C.D/LEN\" (with a \"mac\") or null"};
  }
  if (const auto gateway = request.find("gateway"); gateway != request.end() && !gateway->is_null()) {
    identity.gateway =
        gateway->is_string() ? parseIpv4(gateway->get_ref<const std::string&>()) : std::nullopt;
    if (!identity.gateway || !identity.ip)
      return BadRequest{id, "set_identity: \"gateway\" must be \"A.B.C.D\" (with an \"ip\") or null"};
  }
  if (const auto server = request.find("nameserver"); server != request.end() && !server->is_null()) {
    identity.nameserver =
        server->is_string() ? parseIpv4(server->get_ref<const std::string&>()) : std::nullopt;
    if (!identity.nameserver)
      return BadRequest{id, "set_identity: \"nameserver\" must be \"A.B.C.D\" or null"};
  }
  if (const auto search = request.find("search"); search != request.end() && !search->is_null()) {
    const bool domain = search->is_string() && isDomainName(search->get_ref<const std::string&>());
    if (!domain || !identity.nameserver)
      return BadRequest{id, "set_identity: \"search\" must be a domain name (with a \"nameserver\") or null"};
    identity.search = search->get<std::string>();
  }
  const auto seed = request.find("seed");
  auto bytes = seed != request.end() && seed->is_string() ? parseHex(seed->get_ref<const std::string&>())
                                                          : std::nullopt;
  if (!bytes || bytes->size() < kMinSeedBytes || bytes->size() > kMaxSeedBytes)
    return BadRequest{id, "set_identity: \"seed\" must be " + std::to_string(kMinSeedBytes) + " to " +
                              std::to_string(kMaxSeedBytes) + " bytes in lowercase hex"};
  identity.seed = std::move(*bytes);
  const auto unixNs = request.find("unix_ns");
  if (unixNs == request.end() || !unixNs->is_number_integer() || unixNs->get<int64_t>() <= 0)
    return BadRequest{id, "set_identity: \"unix_ns\" must be a positive integer (nanoseconds since 1970)"};
  identity.unixNs = unixNs->get<int64_t>();
  return identity;
}

// Decodes one request line; anything that does not follow the protocol becomes a BadRequest carrying the
// id when one could be read.
inline Request parseRequest(std::string_view line) {
  const json request = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) return BadRequest{std::nullopt, "request is not valid JSON"};
  if (!request.is_object()) return BadRequest{std::nullopt, "request is not a JSON object"};
  if (const auto op = request.find("op"); op != request.end() && op->is_string() && !request.contains("id"))
    return parseSessionRequest(op->get<std::string>(), request);
  const auto idField = request.find("id");
  if (idField == request.end() || !idField->is_number_integer()) {
    return BadRequest{std::nullopt, "request has no integer \"id\""};
  }
  const auto id = idField->get<int64_t>();
  const auto opField = request.find("op");
  if (opField == request.end() || !opField->is_string())
    return BadRequest{id, "request has no string \"op\""};
  const auto& op = opField->get_ref<const std::string&>();
  if (op == "hello") return HelloRequest{id};
  if (op == "shutdown") return ShutdownRequest{id};
  if (op == "set_clock") {
    const auto unixNs = request.find("unix_ns");
    if (unixNs == request.end() || !unixNs->is_number_integer() || unixNs->get<int64_t>() <= 0)
      return BadRequest{id, "set_clock: \"unix_ns\" must be a positive integer (nanoseconds since 1970)"};
    return SetClockRequest{id, unixNs->get<int64_t>()};
  }
  if (op == "set_identity") return parseSetIdentity(id, request);
  if (op == "open") return parseOpen(id, request);
  if (op != "exec") return BadRequest{id, "unknown op \"" + op + "\""};

  ExecRequest exec{id, {}, {}, kDefaultExecTimeoutMs};
  const auto command = request.find("command");
  if (command == request.end() || !command->is_array() || command->empty()) {
    return BadRequest{id, "exec: \"command\" must be a non-empty array of strings"};
  }
  for (const auto& word : *command) {
    if (!word.is_string()) return BadRequest{id, "exec: \"command\" must be a non-empty array of strings"};
    exec.command.push_back(word.get<std::string>());
  }
  if (exec.command.front().empty()) return BadRequest{id, "exec: command[0] is empty"};
  if (auto error = parseEnv(request, "exec", exec.env)) return BadRequest{id, *error};
  if (const auto timeout = request.find("timeout_ms"); timeout != request.end() && !timeout->is_null()) {
    if (!timeout->is_number_integer() || timeout->get<int64_t>() <= 0 ||
        timeout->get<int64_t>() > INT32_MAX) {
      return BadRequest{id, "exec: \"timeout_ms\" must be a positive integer"};
    }
    exec.timeoutMs = static_cast<int>(timeout->get<int64_t>());
  }
  return exec;
}

inline std::optional<std::string> parseEnv(const json& request, const char* op,
                                           std::vector<std::string>& out) {
  const auto env = request.find("env");
  if (env == request.end() || env->is_null()) return std::nullopt;
  const std::string notStrings = std::string(op) + ": \"env\" must be an array of \"K=V\" strings";
  if (!env->is_array()) return notStrings;
  for (const auto& entry : *env) {
    if (!entry.is_string()) return notStrings;
    const auto& text = entry.get_ref<const std::string&>();
    if (text.find('=') == std::string::npos || text.front() == '=')
      return std::string(op) + ": env entry \"" + toValidUtf8(text) + "\" is not K=V";
    out.push_back(text);
  }
  return std::nullopt;
}

// The environment of an exec'd command: a sane default with the request's K=V entries applied on top
// (a later entry for the same key wins).
inline std::vector<std::string> execEnvironment(const std::vector<std::string>& overrides) {
  std::vector<std::string> env = {"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                                  "HOME=/root", "TERM=linux"};
  for (const auto& entry : overrides) {
    const auto key = entry.substr(0, entry.find('=') + 1);
    bool replaced = false;
    for (auto& existing : env) {
      if (existing.starts_with(key)) {
        existing = entry;
        replaced = true;
        break;
      }
    }
    if (!replaced) env.push_back(entry);
  }
  return env;
}

// What runs in an image's root: the config disk's JSON (vmm/agent_protocol.h, corral.root).
struct Workload {
  std::vector<std::string> argv;  // empty: no workload, only the agent
  std::vector<std::string> env;   // "K=V", on top of execEnvironment's defaults
  std::string workdir = "/";
  std::string user;  // as the image says: "", "name", "uid", "uid:gid", "name:group"
};

// Parses the config disk's text (up to its first NUL); an error names the field.
inline std::variant<Workload, std::string> parseWorkload(std::string_view text) {
  const json config = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (config.is_discarded() || !config.is_object()) return std::string("config is not a JSON object");
  Workload workload;
  auto strings = [&](const char* field, std::vector<std::string>& out) -> std::optional<std::string> {
    const auto it = config.find(field);
    if (it == config.end() || it->is_null()) return std::nullopt;
    if (!it->is_array()) return std::string("\"") + field + "\" must be an array of strings";
    for (const auto& item : *it) {
      if (!item.is_string()) return std::string("\"") + field + "\" must be an array of strings";
      out.push_back(item.get<std::string>());
    }
    return std::nullopt;
  };
  if (auto error = strings("argv", workload.argv)) return *error;
  if (auto error = strings("env", workload.env)) return *error;
  for (const auto& entry : workload.env) {
    if (entry.find('=') == std::string::npos || entry.front() == '=')
      return "env entry \"" + toValidUtf8(entry) + "\" is not K=V";
  }
  if (!workload.argv.empty() && workload.argv.front().empty()) return std::string("argv[0] is empty");
  for (const char* field : {"workdir", "user"}) {
    const auto it = config.find(field);
    if (it == config.end() || it->is_null()) continue;
    if (!it->is_string()) return std::string("\"") + field + "\" must be a string";
    (std::string_view(field) == "workdir" ? workload.workdir : workload.user) = it->get<std::string>();
  }
  if (workload.workdir.empty()) workload.workdir = "/";
  if (workload.workdir.front() != '/') return "workdir \"" + workload.workdir + "\" is not absolute";
  return workload;
}

struct Identity {
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  // supplementary, from /etc/group's member lists
};

inline std::optional<uint32_t> parseId(std::string_view text) {
  if (text.empty() || text.size() > 10) return std::nullopt;
  uint64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  if (value > UINT32_MAX - 1) return std::nullopt;
  return static_cast<uint32_t>(value);
}

// Splits an /etc/passwd or /etc/group text into lines of colon-separated fields.
inline std::vector<std::vector<std::string>> colonTable(std::string_view text) {
  std::vector<std::vector<std::string>> table;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    std::vector<std::string> fields;
    size_t from = 0;
    while (true) {
      const size_t colon = line.find(':', from);
      fields.emplace_back(
          line.substr(from, colon == std::string_view::npos ? line.size() - from : colon - from));
      if (colon == std::string_view::npos) break;
      from = colon + 1;
    }
    table.push_back(std::move(fields));
  }
  return table;
}

// The first entry (of at least 4 fields) whose field `column` is `value`.
inline std::optional<std::vector<std::string>> findEntry(std::string_view text, std::string_view value,
                                                         size_t column) {
  for (auto& fields : colonTable(text)) {
    if (fields.size() >= 4 && fields[column] == value) return std::move(fields);
  }
  return std::nullopt;
}

// Docker's rules for an image's User: empty is root; a user name is looked up in /etc/passwd (its uid and
// primary group); a number is taken as is (with its passwd group when there is an entry, else 0); a group
// after ":" is a name from /etc/group or a number. Supplementary groups: those listing the user by name.
inline std::variant<Identity, std::string> resolveUser(std::string_view user, std::string_view passwd,
                                                       std::string_view group) {
  Identity identity;
  if (user.empty()) return identity;
  const size_t colon = user.find(':');
  const std::string_view userPart = user.substr(0, colon);
  std::string userName;
  if (const auto id = parseId(userPart)) {
    identity.uid = *id;
    if (const auto entry = findEntry(passwd, userPart, 2)) {
      userName = (*entry)[0];
      identity.gid = parseId((*entry)[3]).value_or(0);
    }
  } else if (const auto entry = findEntry(passwd, userPart, 0)) {
    const auto uid = parseId((*entry)[2]);
    const auto gid = parseId((*entry)[3]);
    if (!uid || !gid) return "user \"" + std::string(userPart) + "\": malformed /etc/passwd entry";
    identity.uid = *uid;
    identity.gid = *gid;
    userName = userPart;
  } else {
    return "user \"" + std::string(userPart) + "\": no such user in the image's /etc/passwd";
  }
  if (colon != std::string_view::npos) {
    const std::string_view groupPart = user.substr(colon + 1);
    if (const auto id = parseId(groupPart)) {
      identity.gid = *id;
    } else if (const auto entry = findEntry(group, groupPart, 0); entry && parseId((*entry)[2])) {
      identity.gid = *parseId((*entry)[2]);
    } else {
      return "group \"" + std::string(groupPart) + "\": no such group in the image's /etc/group";
    }
  }
  if (!userName.empty()) {
    for (const auto& fields : colonTable(group)) {
      if (fields.size() < 4) continue;
      const auto gid = parseId(fields[2]);
      std::string_view members = fields[3];
      while (gid && *gid != identity.gid && !members.empty()) {
        const size_t comma = members.find(',');
        if (members.substr(0, comma) == userName) {
          identity.groups.push_back(*gid);
          break;
        }
        if (comma == std::string_view::npos) break;
        members.remove_prefix(comma + 1);
      }
    }
  }
  return identity;
}

struct ReadyInfo {
  int64_t uptimeMs = 0;
  int64_t initStartedMs = 0;
  std::string kernel;
  std::string hostname;
};

inline json readyEvent(const ReadyInfo& info, std::optional<int64_t> id) {
  json event = json::object();
  if (id) event["id"] = *id;
  event["event"] = "ready";
  event["uptime_ms"] = info.uptimeMs;
  event["init_started_ms"] = info.initStartedMs;
  event["kernel"] = toValidUtf8(info.kernel);
  event["hostname"] = toValidUtf8(info.hostname);
  event["version"] = vmm::kAgentProtocolVersion;
  return event;
}

struct ExecOutcome {
  std::optional<int> exitCode;
  std::optional<int> signal;
  std::string stdoutData;
  std::string stderrData;
  bool truncated = false;
  bool timedOut = false;
};

// Turns a wait status into exit_code / signal.
inline void applyWaitStatus(ExecOutcome& outcome, int status) {
  if (WIFEXITED(status)) outcome.exitCode = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);
}

// What a signal to PID 1 asks for, as busybox's halt, poweroff and reboot (without -f) and the kernel's
// ctrl-alt-del send it.
inline const char* powerRequestName(int signal) {
  switch (signal) {
    case SIGUSR1:
      return "halt (SIGUSR1)";
    case SIGUSR2:
      return "poweroff (SIGUSR2)";
    case SIGTERM:
      return "reboot (SIGTERM)";
    case SIGINT:
      return "ctrl-alt-del (SIGINT)";
  }
  return "signal";
}

// {"event": "poweroff", "reason": WHY, "workload": {"exit_code": N, "signal": S} | null}: sent just before
// the guest powers off; workload null while it runs or when there is none.
inline json poweroffEvent(const std::string& why, std::optional<int> workloadStatus) {
  json event = json::object();
  event["event"] = "poweroff";
  event["reason"] = toValidUtf8(why);
  if (workloadStatus) {
    ExecOutcome ended;
    applyWaitStatus(ended, *workloadStatus);
    event["workload"] = {{"exit_code", ended.exitCode ? json(*ended.exitCode) : json(nullptr)},
                         {"signal", ended.signal ? json(*ended.signal) : json(nullptr)}};
  } else {
    event["workload"] = nullptr;
  }
  return event;
}

inline json execResult(int64_t id, const ExecOutcome& outcome) {
  json result = json::object();
  result["id"] = id;
  result["exit_code"] = outcome.exitCode ? json(*outcome.exitCode) : json(nullptr);
  result["signal"] = outcome.signal ? json(*outcome.signal) : json(nullptr);
  result["stdout"] = toValidUtf8(outcome.stdoutData);
  result["stderr"] = toValidUtf8(outcome.stderrData);
  result["truncated"] = outcome.truncated;
  result["timed_out"] = outcome.timedOut;
  return result;
}

inline json errorReply(std::optional<int64_t> id, std::string_view reason) {
  json reply = json::object();
  reply["id"] = id ? json(*id) : json(nullptr);
  reply["error"] = toValidUtf8(reason);
  return reply;
}

// Splits complete lines off a receive buffer. A line longer than maxLine is reported once as overlong and
// skipped up to its newline.
class LineReader {
 public:
  explicit LineReader(size_t maxLine) : maxLine_(maxLine) {}

  struct Line {
    std::string text;
    bool overlong = false;
  };

  void feed(std::string_view bytes) { buffer_.append(bytes); }

  std::optional<Line> next() {
    while (true) {
      const auto newline = buffer_.find('\n');
      if (skipping_) {
        if (newline == std::string::npos) {
          buffer_.clear();
          return std::nullopt;
        }
        buffer_.erase(0, newline + 1);
        skipping_ = false;
        continue;
      }
      if (newline == std::string::npos) {
        if (buffer_.size() > maxLine_) {
          buffer_.clear();
          skipping_ = true;
          return Line{{}, true};
        }
        return std::nullopt;
      }
      if (newline > maxLine_) {
        buffer_.erase(0, newline + 1);
        return Line{{}, true};
      }
      Line line{buffer_.substr(0, newline), false};
      buffer_.erase(0, newline + 1);
      if (!line.text.empty() && line.text.back() == '\r') line.text.pop_back();
      if (line.text.empty()) continue;
      return line;
    }
  }

 private:
  size_t maxLine_;
  std::string buffer_;
  bool skipping_ = false;
};

// ---- System side ---------------------------------------------------------------------------------------

inline int64_t boottimeMs() {
  timespec now{};
  clock_gettime(CLOCK_BOOTTIME, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

inline int64_t monotonicMs() {
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC, &now);
  return static_cast<int64_t>(now.tv_sec) * 1000 + now.tv_nsec / 1000000;
}

// Console log lines: "corral-init: ..." on /dev/console (fd 2 once the console is set up).
template <class... Args>
void logConsole(const char* format, Args... args) {
  std::string line = "corral-init: ";
  char buffer[1024];
  std::snprintf(buffer, sizeof(buffer), format, args...);
  line += buffer;
  line += '\n';
  [[maybe_unused]] const auto written = ::write(STDERR_FILENO, line.data(), line.size());
}

inline std::string readSmallFile(const char* path) {
  std::string content;
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return content;
  char buffer[4096];
  ssize_t n;
  while ((n = ::read(fd, buffer, sizeof(buffer))) > 0) content.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  return content;
}

inline void mountPseudoFilesystems() {
  struct Mount {
    const char* source;
    const char* target;
    const char* type;
    unsigned long flags;
    const char* data;
  };
  static constexpr Mount kMounts[] = {
      {"devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755"},
      {"proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr},
      {"devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=0620,ptmxmode=0666"},
      {"tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
      {"tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755"},
      {"tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777"},
  };
  for (const auto& m : kMounts) {
    ::mkdir(m.target, 0755);
    if (::mount(m.source, m.target, m.type, m.flags, m.data) != 0 && errno != EBUSY) {
      logConsole("mount(\"%s\", \"%s\", \"%s\"): %s", m.source, m.target, m.type, std::strerror(errno));
    }
  }
}

// Free page reporting (virtio-balloon, vmm/README.md "idle memory") reports free blocks of
// page_reporting_order pages only, and only while a zone has 32 such blocks free above its low watermark.
// Linux 6.1 sets the order to pageblock_order when the balloon registers (10 in corral's kernel, which has
// no huge pages: 4 MiB blocks, so a 128 MiB guest never has the 128 MiB free it needs) and ignores the
// command line's page_reporting.page_reporting_order; set after the registration, order 5 (128 KiB) is
// reported from the next free of that size on. Without a balloon the file is absent: nothing to do.
inline void lowerPageReportingOrder() {
  const int fd = ::open("/sys/module/page_reporting/parameters/page_reporting_order", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return;
  if (::write(fd, "5\n", 2) != 2) logConsole("page_reporting_order: write: %s", std::strerror(errno));
  ::close(fd);
}

// Before /dev is mounted the kernel may have given us no fds at all; afterwards 0, 1, 2 are the console.
inline void attachConsole() {
  const int console = ::open("/dev/console", O_RDWR | O_NOCTTY);
  if (console < 0) return;
  for (int fd = 0; fd <= 2; ++fd) ::dup2(console, fd);
  if (console > 2) ::close(console);
}

inline void loadModules(const char* loadOrderPath) {
  const std::string list = readSmallFile(loadOrderPath);
  size_t start = 0;
  while (start < list.size()) {
    size_t end = list.find('\n', start);
    if (end == std::string::npos) end = list.size();
    const std::string path = list.substr(start, end - start);
    start = end + 1;
    if (path.empty()) continue;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
      logConsole("open(\"%s\"): %s", path.c_str(), std::strerror(errno));
      continue;
    }
    const bool loaded = ::syscall(SYS_finit_module, fd, "", 0) == 0;
    const int error = errno;
    ::close(fd);
    // A kernel without module support (corral's own, images/build-guest-kernel) has all of it built in:
    // the initramfs's modules are for Debian's kernel, and no error.
    if (!loaded && error == ENOSYS) return;
    if (!loaded && error != EEXIST)
      logConsole("finit_module(\"%s\"): %s", path.c_str(), std::strerror(error));
  }
}

inline bool setInterfaceUp(int sock, const char* name) {
  ifreq request{};
  std::strncpy(request.ifr_name, name, IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &request) != 0) {
    logConsole("ioctl(SIOCGIFFLAGS, \"%s\"): %s", name, std::strerror(errno));
    return false;
  }
  request.ifr_flags |= IFF_UP | IFF_RUNNING;
  if (::ioctl(sock, SIOCSIFFLAGS, &request) != 0) {
    logConsole("ioctl(SIOCSIFFLAGS, \"%s\", up): %s", name, std::strerror(errno));
    return false;
  }
  return true;
}

inline void setIpv4(int sock, const char* name, unsigned long request, in_addr_t address, const char* what) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = address;
  std::memcpy(&ifr.ifr_addr, &sin, sizeof(sin));
  if (::ioctl(sock, request, &ifr) != 0)
    logConsole("ioctl(%s, \"%s\"): %s", what, name, std::strerror(errno));
}

// "nameserver A.B.C.D" and "search DOMAIN" from corral.dns and corral.search, into the root the workload
// sees (after corral.root switched to the image's). A symlink there (systemd-resolved's) is replaced.
// Empty on success, else what failed (also logged on the console).
inline std::string writeResolvConf(const BootParams& params) {
  if (!params.nameserver) return {};
  char server[INET_ADDRSTRLEN] = {};
  in_addr address{.s_addr = *params.nameserver};
  ::inet_ntop(AF_INET, &address, server, sizeof server);
  std::string text = std::string("nameserver ") + server + "\n";
  if (!params.search.empty()) text += "search " + params.search + "\n";
  auto failed = [](const char* what) {
    std::string error = std::string(what) + ": " + std::strerror(errno);
    logConsole("%s", error.c_str());
    return error;
  };
  if (::mkdir("/etc", 0755) != 0 && errno != EEXIST) return failed("mkdir(\"/etc\")");
  ::unlink("/etc/resolv.conf");
  const int fd = ::open("/etc/resolv.conf", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) return failed("open(\"/etc/resolv.conf\")");
  std::string error;
  if (::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()))
    error = failed("write(\"/etc/resolv.conf\")");
  ::close(fd);
  return error;
}

inline void configureNetwork(const BootParams& params) {
  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    logConsole("socket(AF_INET, SOCK_DGRAM): %s", std::strerror(errno));
    return;
  }
  setInterfaceUp(sock, "lo");
  if (params.ip) {
    // virtio_net registers eth0 while its module loads; the short wait covers a slow probe.
    for (int attempt = 0; attempt < 100 && ::access("/sys/class/net/eth0", F_OK) != 0; ++attempt) {
      ::usleep(10000);
    }
    setIpv4(sock, "eth0", SIOCSIFADDR, *params.ip, "SIOCSIFADDR");
    setIpv4(sock, "eth0", SIOCSIFNETMASK, prefixToNetmask(params.prefixLength), "SIOCSIFNETMASK");
    // A gratuitous ARP as eth0 comes up (arp_notify): a VM given the address of an instance that just went
    // is found at once by the router, the load balancers and its neighbours (a container's NIC does the
    // same: net/vpc_datapath.cc).
    if (const int notify = ::open("/proc/sys/net/ipv4/conf/eth0/arp_notify", O_WRONLY | O_CLOEXEC);
        notify >= 0) {
      if (::write(notify, "1", 1) != 1) logConsole("write(arp_notify): %s", std::strerror(errno));
      ::close(notify);
    }
    if (setInterfaceUp(sock, "eth0") && params.gateway) {
      rtentry route{};
      sockaddr_in any{};
      any.sin_family = AF_INET;
      std::memcpy(&route.rt_dst, &any, sizeof(any));
      std::memcpy(&route.rt_genmask, &any, sizeof(any));
      sockaddr_in gateway{};
      gateway.sin_family = AF_INET;
      gateway.sin_addr.s_addr = *params.gateway;
      std::memcpy(&route.rt_gateway, &gateway, sizeof(gateway));
      route.rt_flags = RTF_UP | RTF_GATEWAY;
      char device[] = "eth0";
      route.rt_dev = device;
      if (::ioctl(sock, SIOCADDRT, &route) != 0 && errno != EEXIST) {
        logConsole("ioctl(SIOCADDRT, default via gateway): %s", std::strerror(errno));
      }
    }
  }
  ::close(sock);
}

// Mixes `seed` into the kernel's pool and credits it as entropy (RNDADDENTROPY): clones of one snapshot share
// the pool's state, so without this their /dev/urandom would give the same bytes. Empty on success.
inline std::string addEntropy(const std::vector<uint8_t>& seed) {
  const int fd = ::open("/dev/urandom", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return std::string("open(\"/dev/urandom\"): ") + std::strerror(errno);
  std::vector<int> words(2 + (seed.size() + sizeof(int) - 1) / sizeof(int), 0);
  auto* pool = reinterpret_cast<rand_pool_info*>(words.data());
  pool->entropy_count = static_cast<int>(seed.size() * 8);
  pool->buf_size = static_cast<int>(seed.size());
  std::memcpy(pool->buf, seed.data(), seed.size());
  const bool added = ::ioctl(fd, RNDADDENTROPY, pool) == 0;
  const int error = errno;
  ::close(fd);
  if (!added) return std::string("ioctl(\"/dev/urandom\", RNDADDENTROPY): ") + std::strerror(error);
  return {};
}

// eth0 gets the new MAC (down while it changes: virtio-net without the control queue's MAC command refuses a
// live change), then the address, prefix and default route a cold boot takes from the command line; without
// an address it stays down. Empty on success.
inline std::string applyNetworkIdentity(const SetIdentityRequest& identity) {
  const int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return std::string("socket(AF_INET, SOCK_DGRAM): ") + std::strerror(errno);
  std::string error;
  ifreq flags{};
  std::strncpy(flags.ifr_name, "eth0", IFNAMSIZ - 1);
  ifreq hardware = flags;
  hardware.ifr_hwaddr.sa_family = 1;  // ARPHRD_ETHER
  std::memcpy(hardware.ifr_hwaddr.sa_data, identity.mac->data(), identity.mac->size());
  if (::ioctl(sock, SIOCGIFFLAGS, &flags) != 0) {
    error = std::string("ioctl(SIOCGIFFLAGS, \"eth0\"): ") + std::strerror(errno);
  } else if (flags.ifr_flags &= static_cast<short>(~IFF_UP); ::ioctl(sock, SIOCSIFFLAGS, &flags) != 0) {
    error = std::string("ioctl(SIOCSIFFLAGS, \"eth0\", down): ") + std::strerror(errno);
  } else if (::ioctl(sock, SIOCSIFHWADDR, &hardware) != 0) {
    error = std::string("ioctl(SIOCSIFHWADDR, \"eth0\"): ") + std::strerror(errno);
  }
  ::close(sock);
  if (!error.empty() || !identity.ip) return error;
  BootParams params;
  params.ip = identity.ip->first;
  params.prefixLength = identity.ip->second;
  params.gateway = identity.gateway;
  configureNetwork(params);  // logs its own failures to the console, as at a cold boot
  return {};
}

// "/dev/vda" for the virtio disk whose serial is `serial`, waiting up to waitMs for virtio_blk to probe it
// (the module loads asynchronously); empty when there is none.
inline std::string findDiskBySerial(const std::string& serial, int64_t waitMs) {
  const int64_t deadline = monotonicMs() + waitMs;
  while (true) {
    if (DIR* dir = ::opendir("/sys/block")) {
      std::string found;
      while (const dirent* entry = ::readdir(dir)) {
        if (std::strncmp(entry->d_name, "vd", 2) != 0) continue;
        std::string text = readSmallFile((std::string("/sys/block/") + entry->d_name + "/serial").c_str());
        while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
        if (text == serial) found = std::string("/dev/") + entry->d_name;
      }
      ::closedir(dir);
      if (!found.empty() && ::access(found.c_str(), F_OK) == 0) return found;
    }
    if (monotonicMs() >= deadline) return {};
    ::usleep(10000);
  }
}

// mkdir -p with mode 0755; true when `path` is a directory in the end.
inline bool makeDirectories(const std::string& path) {
  for (size_t slash = path.find('/', 1);; slash = path.find('/', slash + 1)) {
    const std::string prefix = path.substr(0, slash);
    if (!prefix.empty() && ::mkdir(prefix.c_str(), 0755) != 0 && errno != EEXIST) return false;
    if (slash == std::string::npos) break;
  }
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

// The config disk's JSON: its bytes up to the first NUL (at most 1 MiB); an empty workload without one.
inline std::variant<Workload, std::string> readWorkload() {
  // Probed with the root disk, which was found already: a short wait covers the order of the two probes.
  const std::string device = findDiskBySerial(vmm::kConfigDiskSerial, 1000);
  if (device.empty()) return Workload{};
  const int fd = ::open(device.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "open(\"" + device + "\"): " + std::strerror(errno);
  std::string text;
  char buffer[4096];
  ssize_t n;
  while (text.size() < (1 << 20) && (n = ::read(fd, buffer, sizeof(buffer))) > 0) {
    const auto chunk = std::string_view(buffer, static_cast<size_t>(n));
    const size_t nul = chunk.find('\0');
    text.append(chunk.substr(0, nul));
    if (nul != std::string_view::npos) break;
  }
  ::close(fd);
  return parseWorkload(text);
}

// corral.root: mounts the image's disk on /newroot, moves /dev /proc /sys /run into it, binds the probe in
// (the image may lack it; the file it is bound over lands in the instance's overlay only) and makes it the
// root (switch_root's MS_MOVE + chroot: the initramfs stays in memory, nothing to free on a VM this small).
// Returns why not; the caller powers off, since serving exec in the wrong root would mislead.
inline std::string enterImageRoot(const std::string& rootSerial) {
  const std::string device = findDiskBySerial(rootSerial, 5000);
  if (device.empty()) return "no virtio disk with serial \"" + rootSerial + "\" (is virtio_blk loaded?)";
  ::mkdir("/newroot", 0755);
  if (::mount(device.c_str(), "/newroot", "ext4", 0, nullptr) != 0)
    return "mount(\"" + device + "\", \"/newroot\", \"ext4\"): " + std::strerror(errno);
  const char* probe = "/usr/bin/corral-probe";
  const std::string probeTarget = std::string("/newroot") + probe;
  if (::access(probe, X_OK) == 0 && makeDirectories("/newroot/usr/bin")) {
    const int fd = ::open(probeTarget.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0755);
    if (fd >= 0) ::close(fd);
    if (::mount(probe, probeTarget.c_str(), nullptr, MS_BIND, nullptr) != 0)
      logConsole("mount(\"%s\", \"%s\", MS_BIND): %s", probe, probeTarget.c_str(), std::strerror(errno));
  }
  for (const char* mountPoint : {"/dev", "/proc", "/sys", "/run"}) {
    const std::string target = std::string("/newroot") + mountPoint;
    if (!makeDirectories(target)) return "mkdir(\"" + target + "\"): " + std::strerror(errno);
    if (::mount(mountPoint, target.c_str(), nullptr, MS_MOVE, nullptr) != 0)
      return std::string("mount(\"") + mountPoint + "\", \"" + target +
             "\", MS_MOVE): " + std::strerror(errno);
  }
  if (::chdir("/newroot") != 0) return std::string("chdir(\"/newroot\"): ") + std::strerror(errno);
  if (::mount(".", "/", nullptr, MS_MOVE, nullptr) != 0)
    return std::string("mount(\"/newroot\", \"/\", MS_MOVE): ") + std::strerror(errno);
  if (::chroot(".") != 0) return std::string("chroot(\".\"): ") + std::strerror(errno);
  if (::chdir("/") != 0) return std::string("chdir(\"/\"): ") + std::strerror(errno);
  return {};
}

// "/dev/vport1p1" for the port named kAgentChannel, or empty.
inline std::string findAgentPort() {
  DIR* dir = ::opendir("/sys/class/virtio-ports");
  if (dir == nullptr) return {};
  std::string found;
  while (const dirent* entry = ::readdir(dir)) {
    if (entry->d_name[0] == '.') continue;
    const std::string base = std::string("/sys/class/virtio-ports/") + entry->d_name;
    std::string name = readSmallFile((base + "/name").c_str());
    while (!name.empty() && (name.back() == '\n' || name.back() == '\0')) name.pop_back();
    if (name == vmm::kAgentChannel) {
      found = std::string("/dev/") + entry->d_name;
      break;
    }
  }
  ::closedir(dir);
  return found;
}

inline std::vector<int> openPowerButtons() {
  std::vector<int> fds;
  DIR* dir = ::opendir("/dev/input");
  if (dir == nullptr) return fds;
  while (const dirent* entry = ::readdir(dir)) {
    if (std::strncmp(entry->d_name, "event", 5) != 0) continue;
    const std::string path = std::string("/dev/input/") + entry->d_name;
    const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) continue;
    unsigned long keys[KEY_MAX / (8 * sizeof(unsigned long)) + 1] = {};
    if (::ioctl(fd, EVIOCGBIT(EV_KEY, sizeof(keys)), keys) >= 0 &&
        (keys[KEY_POWER / (8 * sizeof(unsigned long))] >> (KEY_POWER % (8 * sizeof(unsigned long)))) & 1) {
      fds.push_back(fd);
    } else {
      ::close(fd);
    }
  }
  ::closedir(dir);
  return fds;
}

inline bool powerButtonPressed(int fd) {
  input_event events[16];
  ssize_t n;
  bool pressed = false;
  while ((n = ::read(fd, events, sizeof(events))) > 0) {
    for (size_t i = 0; i < static_cast<size_t>(n) / sizeof(input_event); ++i) {
      if (events[i].type == EV_KEY && events[i].code == KEY_POWER && events[i].value == 1) pressed = true;
    }
  }
  return pressed;
}

[[noreturn]] inline void powerOff(const char* why) {
  logConsole("powering off (%s)", why);
  ::kill(-1, SIGTERM);
  ::sync();
  // Without ACPI (corral's kernel; microvm has none) there is no power-off device: the kernel would halt
  // and QEMU keep running. A reset ends the domain as well (on_reboot is 'destroy': QEMU exits).
  const bool acpi = ::access("/sys/firmware/acpi", F_OK) == 0;
  ::reboot(acpi ? RB_POWER_OFF : RB_AUTOBOOT);
  // Only reached when reboot() fails; PID 1 must not exit.
  logConsole("reboot(%s): %s", acpi ? "RB_POWER_OFF" : "RB_AUTOBOOT", std::strerror(errno));
  while (true) ::pause();
}

// What a child of the init sets up between fork() and execvp(): the workload's and exec's children differ
// only in these.
struct ChildLaunch {
  char* const* argv;
  char** envp;
  const char* what;                       // "workload", "exec": in the console line of a failed step
  const char* workdir;                    // chdir here,
  const char* fallbackWorkdir = nullptr;  // or here when that fails (nullptr: the step fails)
  const Identity* who = nullptr;          // the ids to run as (nullptr: root, as the init)
  int stdinFd = -1;                       // -1: /dev/null
  int stdoutFd = -1;                      // -1: the console stays
  int stderrFd = -1;
  int failureFd = -1;  // a failed step's errno is written here; -1: it is logged on the console
  // A terminal to make the controlling one and stdin, stdout and stderr (a session's pty slave, the
  // console's tty); the fds above are then unused.
  const char* terminal = nullptr;
};

// In the forked child, async-signal-safe calls only: signals unblocked, a session of its own, stdin
// /dev/null, the launch's outputs, working directory and ids, then execvp. A failed step is reported and
// the child exits 127.
[[noreturn]] void execChild(const ChildLaunch& launch) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::setsid();
  const char* step = "chdir";
  bool ready = true;
  if (launch.terminal != nullptr) {
    step = "open terminal";
    const int terminal = ::open(launch.terminal, O_RDWR);
    ready = terminal >= 0 && (step = "TIOCSCTTY", ::ioctl(terminal, TIOCSCTTY, 1) == 0);
    if (ready) {
      for (int fd = 0; fd <= 2; ++fd) ::dup2(terminal, fd);
      if (terminal > 2) ::close(terminal);
    }
  } else {
    const int input = launch.stdinFd >= 0 ? launch.stdinFd : ::open("/dev/null", O_RDONLY);
    if (input >= 0) ::dup2(input, 0);
    if (launch.stdoutFd >= 0) ::dup2(launch.stdoutFd, 1);
    if (launch.stderrFd >= 0) ::dup2(launch.stderrFd, 2);
  }
  if (ready) step = "chdir";
  ready = ready && (::chdir(launch.workdir) == 0 ||
                    (launch.fallbackWorkdir != nullptr && ::chdir(launch.fallbackWorkdir) == 0));
  if (ready && launch.who != nullptr) {
    const Identity& who = *launch.who;
    ready = (step = "setgroups", ::setgroups(who.groups.size(), who.groups.data()) == 0) &&
            (step = "setgid", ::setgid(who.gid) == 0) && (step = "setuid", ::setuid(who.uid) == 0);
  }
  if (ready) {
    step = "execvp";
    environ = launch.envp;
    ::execvp(launch.argv[0], launch.argv);
  }
  const int error = errno;
  if (launch.failureFd >= 0) {
    [[maybe_unused]] const auto written = ::write(launch.failureFd, &error, sizeof(error));
  } else {
    logConsole("%s: %s(\"%s\"): %s", launch.what, step, launch.argv[0], std::strerror(error));
  }
  ::_exit(127);
}

class Init {
 public:
  Init(int64_t initStartedMs, BootParams params) : initStartedMs_(initStartedMs), params_(std::move(params)) {
    utsname uts{};
    if (::uname(&uts) == 0) kernel_ = uts.release;
  }

  // SIGCHLD, and the requests a guest's own tools send PID 1: busybox's halt, poweroff and reboot (without
  // -f) signal it USR1, USR2 and TERM, the kernel's ctrl-alt-del INT. Each ends the VM (powerOff).
  void setupSignals() {
    sigset_t mask;
    sigemptyset(&mask);
    for (const int signal : {SIGCHLD, SIGUSR1, SIGUSR2, SIGTERM, SIGINT}) sigaddset(&mask, signal);
    ::sigprocmask(SIG_BLOCK, &mask, nullptr);
    signalFd_ = ::signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (signalFd_ < 0)
      logConsole("signalfd(SIGCHLD, SIGUSR1, SIGUSR2, SIGTERM, SIGINT): %s", std::strerror(errno));
  }

  // The image's workload, on the console, in its own session. Its end is logged (reapChildren); the VM
  // keeps running for exec, as a container's stopped process would not, since the guest is more than it.
  void startWorkload(const Workload& workload) {
    baseEnv_ = workload.env;
    if (workload.argv.empty()) return;
    const auto identity =
        resolveUser(workload.user, readSmallFile("/etc/passwd"), readSmallFile("/etc/group"));
    if (const auto* error = std::get_if<std::string>(&identity)) {
      logConsole("workload not started: %s", error->c_str());
      return;
    }
    const Identity& who = std::get<Identity>(identity);
    if (!makeDirectories(workload.workdir)) {
      logConsole("workload not started: workdir \"%s\": %s", workload.workdir.c_str(), std::strerror(errno));
      return;
    }
    const auto env = execEnvironment(workload.env);
    std::vector<char*> argv, envp;
    for (const auto& word : workload.argv) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    for (const auto& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      execChild({.argv = argv.data(),
                 .envp = envp.data(),
                 .what = "workload",
                 .workdir = workload.workdir.c_str(),
                 .who = &who});
    }
    if (pid < 0) {
      logConsole("workload: fork: %s", std::strerror(errno));
      return;
    }
    workloadPid_ = pid;
    logConsole("workload started: pid %d, %s as %u:%u in %s", pid, workload.argv.front().c_str(), who.uid,
               who.gid, workload.workdir.c_str());
  }

  void openPort(int64_t waitMs) {
    const int64_t deadline = monotonicMs() + waitMs;
    while (true) {
      const std::string path = findAgentPort();
      if (!path.empty()) {
        // The device node appears in devtmpfs shortly after the sysfs entry.
        portFd_ = ::open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
        if (portFd_ >= 0) return;
      }
      if (monotonicMs() >= deadline) break;
      ::usleep(10000);
    }
    if (waitMs > 0) logConsole("no virtio-serial port named %s; the agent is off", vmm::kAgentChannel);
  }

  void run() {
    powerButtons_ = openPowerButtons();
    const int64_t readyMs = boottimeMs();
    logConsole("ready in %lld ms (kernel %lld ms, init %lld ms), hostname %s",
               static_cast<long long>(readyMs), static_cast<long long>(initStartedMs_),
               static_cast<long long>(readyMs - initStartedMs_), params_.effectiveHostname().c_str());
    if (portFd_ >= 0) readyPending_ = true;
    consoleTerminal_ = consoleDevice();
    if (!consoleTerminal_.empty()) logConsole("press Enter on the console for a shell");

    while (true) {
      // A request signalled while a command ran was read off the signalfd by then: acted on before polling.
      if (powerSignal_ != 0) powerOffTellingHost(powerRequestName(powerSignal_));
      std::vector<pollfd> fds;
      if (signalFd_ >= 0) fds.push_back({signalFd_, POLLIN, 0});
      const size_t buttonsIndex = fds.size();
      for (const int fd : powerButtons_) fds.push_back({fd, POLLIN, 0});
      const size_t portIndex = fds.size();
      // While the host side is closed the port polls as HUP; then it is looked at again every 50 ms.
      const bool watchPort = portFd_ >= 0 && !hostClosed_;
      if (watchPort) fds.push_back({portFd_, static_cast<short>(POLLIN | (readyPending_ ? POLLOUT : 0)), 0});
      // The console's input, while no shell runs there: a line (Enter) starts one.
      const bool watchConsole = consoleShellPid_ < 0 && !consoleTerminal_.empty();
      const size_t consoleIndex = fds.size();
      if (watchConsole) fds.push_back({STDIN_FILENO, POLLIN, 0});
      const bool sessionsEnding = pollSessions(fds);
      int timeout = portFd_ < 0 ? 1000 : (hostClosed_ ? 50 : -1);
      if (sessionsEnding) timeout = timeout < 0 ? 50 : std::min(timeout, 50);
      const int n = ::poll(fds.data(), fds.size(), timeout);
      if (n < 0 && errno != EINTR) {
        logConsole("poll: %s", std::strerror(errno));
        ::usleep(100000);
        continue;
      }
      hostClosed_ = false;
      reapChildren();
      if (powerSignal_ != 0) powerOffTellingHost(powerRequestName(powerSignal_));
      for (size_t i = buttonsIndex; i < portIndex; ++i) {
        if ((fds[i].revents & POLLIN) && powerButtonPressed(fds[i].fd)) powerOffTellingHost("power button");
      }
      if (watchConsole && (fds[consoleIndex].revents & POLLIN)) startConsoleShell();
      if (portFd_ >= 0 && !hostClosed_) serviceSessions();
      if (portFd_ < 0) {
        openPort(0);
        if (portFd_ >= 0) readyPending_ = true;
        continue;
      }
      if (!watchPort) continue;
      const short revents = fds[portIndex].revents;
      if (revents & POLLIN) {
        readPort();
        // A request may have changed a session without a descriptor to wake the next poll (close_input).
        if (!hostClosed_) serviceSessions();
      } else if (revents & (POLLHUP | POLLERR)) {
        hostWentAway();
        continue;
      }
      if (readyPending_ && (revents & POLLOUT)) {
        if (send(readyEvent(ready(), std::nullopt))) readyPending_ = false;
      }
    }
  }

 private:
  ReadyInfo ready() const { return {boottimeMs(), initStartedMs_, kernel_, params_.effectiveHostname()}; }

  void readPort() {
    char buffer[65536];
    const ssize_t n = ::read(portFd_, buffer, sizeof(buffer));
    if (n == 0) {
      hostWentAway();
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) hostWentAway();
      return;
    }
    reader_.feed(std::string_view(buffer, static_cast<size_t>(n)));
    while (auto line = reader_.next()) {
      if (line->overlong) {
        send(errorReply(std::nullopt, "request line longer than " + std::to_string(vmm::kAgentMaxLine)));
        continue;
      }
      handle(parseRequest(line->text));
    }
  }

  void handle(const Request& request) {
    if (const auto* hello = std::get_if<HelloRequest>(&request)) {
      if (send(readyEvent(ready(), hello->id))) readyPending_ = false;
    } else if (const auto* exec = std::get_if<ExecRequest>(&request)) {
      send(execResult(exec->id, runCommand(*exec)));
    } else if (const auto* setClock = std::get_if<SetClockRequest>(&request)) {
      const timespec to{static_cast<time_t>(setClock->unixNs / 1'000'000'000),
                        static_cast<long>(setClock->unixNs % 1'000'000'000)};
      if (::clock_settime(CLOCK_REALTIME, &to) != 0) {
        send(errorReply(setClock->id, std::string("clock_settime(CLOCK_REALTIME): ") + std::strerror(errno)));
      } else {
        json reply = json::object();
        reply["id"] = setClock->id;
        reply["ok"] = true;
        send(reply);
      }
    } else if (const auto* identity = std::get_if<SetIdentityRequest>(&request)) {
      setIdentity(*identity);
    } else if (const auto* open = std::get_if<OpenRequest>(&request)) {
      openSession(*open);
    } else if (const auto* onSession = std::get_if<SessionRequest>(&request)) {
      sessionRequest(*onSession);
    } else if (const auto* shutdown = std::get_if<ShutdownRequest>(&request)) {
      json reply = json::object();
      reply["id"] = shutdown->id;
      reply["ok"] = true;
      send(reply);
      powerOffTellingHost("shutdown request");
    } else {
      const auto& bad = std::get<BadRequest>(request);
      if (bad.answered)
        send(errorReply(bad.id, bad.reason));
      else
        logConsole("agent: %s", bad.reason.c_str());
    }
  }

  // In this order: the random pool first (nothing after it reads the clone's shared state), the clock, the
  // hostname, the network. The answer carries what the guest now is, so the host can check it.
  void setIdentity(const SetIdentityRequest& identity) {
    std::string error = addEntropy(identity.seed);
    const timespec to{static_cast<time_t>(identity.unixNs / 1'000'000'000),
                      static_cast<long>(identity.unixNs % 1'000'000'000)};
    if (error.empty() && ::clock_settime(CLOCK_REALTIME, &to) != 0)
      error = std::string("clock_settime(CLOCK_REALTIME): ") + std::strerror(errno);
    if (error.empty() && ::sethostname(identity.hostname.data(), identity.hostname.size()) != 0)
      error = "sethostname(\"" + identity.hostname + "\"): " + std::strerror(errno);
    if (error.empty() && identity.mac) error = applyNetworkIdentity(identity);
    if (error.empty() && identity.nameserver) {
      // The snapshot's resolv.conf is the template's: the clone's subnet has its own resolver.
      BootParams resolver;
      resolver.nameserver = identity.nameserver;
      resolver.search = identity.search;
      error = writeResolvConf(resolver);
    }
    if (!error.empty()) {
      send(errorReply(identity.id, error));
      return;
    }
    params_.hostname = identity.hostname;
    json reply = json::object();
    reply["id"] = identity.id;
    reply["ok"] = true;
    reply["hostname"] = identity.hostname;
    reply["seeded_bytes"] = identity.seed.size();
    if (identity.mac) {
      std::string mac = readSmallFile("/sys/class/net/eth0/address");
      if (!mac.empty() && mac.back() == '\n') mac.pop_back();
      reply["mac"] = mac;
    } else {
      reply["mac"] = nullptr;
    }
    send(reply);
  }

  // The guest's last words on the agent port, then powerOff(): the host reads them after the domain ended
  // and records how the workload ended (vmm/agent_protocol.h "poweroff"). At most 500 ms go to a host that
  // does not read.
  [[noreturn]] void powerOffTellingHost(const char* why) {
    reapChildren();
    if (portFd_ >= 0 && !hostClosed_) send(poweroffEvent(why, workloadEnd_), 500);
    powerOff(why);
  }

  // Writes one JSON line. Gives up (dropping the line) when the host makes no progress for `patienceMs`
  // (10 s) or closes its side, so a missing reader never wedges PID 1.
  bool send(const json& message, int64_t patienceMs = 10000) {
    std::string line = message.dump(-1, ' ', false, json::error_handler_t::replace);
    line.push_back('\n');
    size_t offset = 0;
    int64_t lastProgress = monotonicMs();
    while (offset < line.size()) {
      const ssize_t n = ::write(portFd_, line.data() + offset, line.size() - offset);
      if (n > 0) {
        offset += static_cast<size_t>(n);
        lastProgress = monotonicMs();
        continue;
      }
      if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
      const int64_t waited = monotonicMs() - lastProgress;
      if (waited >= patienceMs) return false;
      pollfd out{portFd_, POLLOUT, 0};
      if (::poll(&out, 1, static_cast<int>(patienceMs - waited)) > 0 && (out.revents & (POLLHUP | POLLERR)) &&
          !(out.revents & POLLOUT)) {
        if (offset == 0) return false;
        // Half a line already went out; wait for the host to come back rather than corrupt the stream.
        ::usleep(50000);
      }
    }
    return true;
  }

  // Reaps every exited child; the exec'd command's status is kept for runCommand.
  void reapChildren() {
    if (signalFd_ >= 0) {
      signalfd_siginfo info;
      while (::read(signalFd_, &info, sizeof(info)) == sizeof(info)) {
        if (info.ssi_signo != SIGCHLD) powerSignal_ = static_cast<int>(info.ssi_signo);
      }
    }
    int status = 0;
    pid_t pid;
    while ((pid = ::waitpid(-1, &status, WNOHANG)) > 0) {
      if (pid == execPid_) execStatus_ = status;
      for (auto& [number, session] : sessions_) {
        if (pid != session.pid) continue;
        session.status = status;
        session.endedAt = monotonicMs();
      }
      if (pid == consoleShellPid_) {
        consoleShellPid_ = -1;
        logConsole("console shell ended; press Enter for another");
      }
      if (pid == workloadPid_) {
        if (WIFEXITED(status)) logConsole("workload exited with status %d", WEXITSTATUS(status));
        if (WIFSIGNALED(status)) logConsole("workload killed by signal %d", WTERMSIG(status));
        workloadPid_ = -1;
        workloadEnd_ = status;
      }
    }
  }

  ExecOutcome runCommand(const ExecRequest& request) {
    ExecOutcome outcome;
    // The image's Env first, the request's on top (docker exec inherits the container's environment).
    std::vector<std::string> overrides = baseEnv_;
    overrides.insert(overrides.end(), request.env.begin(), request.env.end());
    const auto env = execEnvironment(overrides);
    std::vector<char*> argv;
    for (const auto& word : request.command) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (const auto& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);

    int out[2], err[2], failure[2];
    if (::pipe2(out, O_CLOEXEC) != 0) return startFailure("pipe2");
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(out[0]), ::close(out[1]);
      return startFailure("pipe2");
    }
    if (::pipe2(failure, O_CLOEXEC) != 0) {
      ::close(out[0]), ::close(out[1]), ::close(err[0]), ::close(err[1]);
      return startFailure("pipe2");
    }
    const pid_t pid = ::fork();
    if (pid == 0) {
      execChild({.argv = argv.data(),
                 .envp = envp.data(),
                 .what = "exec",
                 .workdir = "/root",
                 .fallbackWorkdir = "/",
                 .stdoutFd = out[1],
                 .stderrFd = err[1],
                 .failureFd = failure[1]});
    }
    ::close(out[1]), ::close(err[1]), ::close(failure[1]);
    if (pid < 0) {
      ::close(out[0]), ::close(err[0]), ::close(failure[0]);
      return startFailure("fork");
    }
    execPid_ = pid;
    execStatus_.reset();
    // Non-blocking read ends: one quiet stream must not stall draining the other, nor the timeout.
    for (const int fd : {out[0], err[0]}) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);

    int execErrno = 0;
    const bool execFailed = ::read(failure[0], &execErrno, sizeof(execErrno)) == sizeof(execErrno);
    ::close(failure[0]);

    CappedOutput stdoutData(vmm::kAgentOutputCap), stderrData(vmm::kAgentOutputCap);
    int streams[2] = {out[0], err[0]};
    CappedOutput* sinks[2] = {&stdoutData, &stderrData};
    const int64_t deadline = monotonicMs() + request.timeoutMs;
    int64_t exitedAt = -1;
    bool killed = false;
    while (true) {
      reapChildren();
      const int64_t now = monotonicMs();
      if (execStatus_ && exitedAt < 0) exitedAt = now;
      const bool streamsOpen = streams[0] >= 0 || streams[1] >= 0;
      if (execStatus_ && !streamsOpen) break;
      // Background processes that keep the pipes open get a short grace after the command itself exited.
      if (execStatus_ && now - exitedAt > 250) break;
      if (!killed && now >= deadline) {
        ::kill(-pid, SIGKILL);
        ::kill(pid, SIGKILL);
        killed = true;
        outcome.timedOut = true;
      }
      std::vector<pollfd> fds;
      for (const int fd : streams) {
        if (fd >= 0) fds.push_back({fd, POLLIN, 0});
      }
      if (signalFd_ >= 0) fds.push_back({signalFd_, POLLIN, 0});
      int timeout = execStatus_ ? 50 : static_cast<int>(std::max<int64_t>(deadline - now, 0));
      if (killed || signalFd_ < 0) timeout = 50;
      ::poll(fds.data(), fds.size(), timeout);
      for (int s = 0; s < 2; ++s) {
        if (streams[s] < 0) continue;
        char buffer[65536];
        const ssize_t n = ::read(streams[s], buffer, sizeof(buffer));
        if (n > 0) {
          sinks[s]->append(std::string_view(buffer, static_cast<size_t>(n)));
        } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
          ::close(streams[s]);
          streams[s] = -1;
        }
      }
    }
    for (const int fd : streams) {
      if (fd >= 0) ::close(fd);
    }
    execPid_ = -1;

    outcome.stdoutData = stdoutData.data();
    outcome.stderrData = stderrData.data();
    outcome.truncated = stdoutData.truncated() || stderrData.truncated();
    if (execFailed) {
      outcome.exitCode = 127;
      outcome.stderrData = "exec \"" + request.command.front() + "\": " + std::strerror(execErrno) + "\n";
      return outcome;
    }
    applyWaitStatus(outcome, *execStatus_);
    return outcome;
  }

  // ---- Interactive sessions (vmm/agent_protocol.h "open") ----

  // A session's program and its streams. With a tty, input and stdout are the same pty master.
  struct Session {
    pid_t pid = -1;
    bool tty = false;
    int input = -1;             // the pty master or the write end of the program's stdin; -1 once closed
    int outputs[2] = {-1, -1};  // the read ends of stdout (the pty master) and stderr
    std::string pendingInput;   // from the host, not yet written: at most a window
    bool closeInputWhenWritten = false;
    uint64_t outputInFlight = 0;  // sent to the host and not acked yet
    std::optional<int> status;    // the wait status once reaped
    int64_t endedAt = 0, lastOutputAt = 0;
  };

  static void closeSession(Session& session) {
    int closed[3] = {-1, -1, -1};
    int count = 0;
    for (const int fd : {session.input, session.outputs[0], session.outputs[1]}) {
      if (fd < 0 || std::find(closed, closed + count, fd) != closed + count) continue;
      ::close(fd);
      closed[count++] = fd;
    }
    session.input = session.outputs[0] = session.outputs[1] = -1;
  }

  void openSession(const OpenRequest& request) {
    if (sessions_.count(request.session) != 0) {
      send(errorReply(request.id, "open: session " + std::to_string(request.session) + " is already open"));
      return;
    }
    if (sessions_.size() >= vmm::kAgentMaxSessions) {
      send(errorReply(request.id,
                      "open: " + std::to_string(vmm::kAgentMaxSessions) + " sessions are open already"));
      return;
    }
    Session session;
    session.tty = request.tty;
    std::string ptyPath;
    int childIn = -1, childOut = -1, childErr = -1;
    auto failed = [&](const std::string& what) {
      const std::string reason = "open: " + what + ": " + std::strerror(errno);
      closeSession(session);
      for (const int fd : {childIn, childOut, childErr}) {
        if (fd >= 0) ::close(fd);
      }
      send(errorReply(request.id, reason));
    };
    if (request.tty) {
      const int master = ::open("/dev/pts/ptmx", O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
      if (master < 0) return failed("open(\"/dev/pts/ptmx\")");
      session.input = session.outputs[0] = master;
      int unlock = 0, number = -1;
      if (::ioctl(master, TIOCSPTLCK, &unlock) != 0 || ::ioctl(master, TIOCGPTN, &number) != 0)
        return failed("ioctl(TIOCSPTLCK, TIOCGPTN)");
      ptyPath = "/dev/pts/" + std::to_string(number);
      if (request.rows != 0 || request.cols != 0) {
        const winsize size{request.rows, request.cols, 0, 0};
        if (::ioctl(master, TIOCSWINSZ, &size) != 0) return failed("ioctl(TIOCSWINSZ)");
      }
    } else {
      int in[2] = {-1, -1}, out[2], err[2];
      if (request.stdinOpen && ::pipe2(in, O_CLOEXEC) != 0) return failed("pipe2");
      session.input = in[1], childIn = in[0];
      if (::pipe2(out, O_CLOEXEC) != 0) return failed("pipe2");
      session.outputs[0] = out[0], childOut = out[1];
      if (::pipe2(err, O_CLOEXEC) != 0) return failed("pipe2");
      session.outputs[1] = err[0], childErr = err[1];
      for (const int fd : {session.input, session.outputs[0], session.outputs[1]}) {
        if (fd >= 0) ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
      }
    }
    int failure[2];
    if (::pipe2(failure, O_CLOEXEC) != 0) return failed("pipe2");
    std::vector<std::string> overrides = baseEnv_;
    overrides.insert(overrides.end(), request.env.begin(), request.env.end());
    const auto env = execEnvironment(overrides);
    std::vector<char*> argv, envp;
    for (const auto& word : request.command) argv.push_back(const_cast<char*>(word.c_str()));
    argv.push_back(nullptr);
    for (const auto& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);
    const pid_t pid = ::fork();
    if (pid == 0) {
      execChild({.argv = argv.data(),
                 .envp = envp.data(),
                 .what = "session",
                 .workdir = "/root",
                 .fallbackWorkdir = "/",
                 .stdinFd = childIn,
                 .stdoutFd = childOut,
                 .stderrFd = childErr,
                 .failureFd = failure[1],
                 .terminal = request.tty ? ptyPath.c_str() : nullptr});
    }
    ::close(failure[1]);
    if (pid < 0) {
      ::close(failure[0]);
      return failed("fork");
    }
    for (const int fd : {childIn, childOut, childErr}) {
      if (fd >= 0) ::close(fd);
    }
    childIn = childOut = childErr = -1;
    int childErrno = 0;
    const bool startFailed = ::read(failure[0], &childErrno, sizeof(childErrno)) == sizeof(childErrno);
    ::close(failure[0]);
    if (startFailed) {
      closeSession(session);  // the child exited 127; reapChildren reaps it
      // "field": the request's command is what failed (no such program, not executable), not the guest.
      json reply = errorReply(
          request.id, "open: start \"" + request.command.front() + "\": " + std::strerror(childErrno));
      reply["field"] = "command";
      send(reply);
      return;
    }
    session.pid = pid;
    sessions_.emplace(request.session, std::move(session));
    json reply = json::object();
    reply["id"] = request.id;
    reply["ok"] = true;
    reply["session"] = request.session;
    reply["pty"] = request.tty ? json(ptyPath) : json(nullptr);
    send(reply);
  }

  void sessionRequest(const SessionRequest& request) {
    const auto found = sessions_.find(request.session);
    if (found == sessions_.end()) return;  // ended (its exit event may cross this request) or never opened
    Session& session = found->second;
    using Op = SessionRequest::Op;
    switch (request.op) {
      case Op::Input:
        // The host keeps within the window; more is dropped rather than buffered without bound.
        if (session.input >= 0 &&
            session.pendingInput.size() + request.data.size() <= vmm::kAgentSessionWindow)
          session.pendingInput += request.data;
        else
          sendWritten(request.session, request.data.size());
        break;
      case Op::Ack:
        session.outputInFlight -= std::min<uint64_t>(request.bytes, session.outputInFlight);
        break;
      case Op::Resize:
        if (session.tty && session.input >= 0) {
          const winsize size{request.rows, request.cols, 0, 0};
          ::ioctl(session.input, TIOCSWINSZ, &size);
        }
        break;
      case Op::CloseInput:
        if (!session.tty) session.closeInputWhenWritten = true;
        break;
      case Op::Signal:
        ::kill(-session.pid, request.signal);
        break;
      case Op::Close:
        if (!session.status) {
          ::kill(-session.pid, SIGKILL);
          ::kill(session.pid, SIGKILL);
        }
        closeSession(session);
        sessions_.erase(found);  // reapChildren reaps the program
        break;
    }
  }

  // The host closed its end of the channel (corrald stopped or lost the connection): nobody reads the
  // sessions any more, and a later connection numbers its own from 1 again, so they end here, killed.
  void hostWentAway() {
    hostClosed_ = true;
    for (auto& [number, session] : sessions_) {
      if (!session.status) {
        ::kill(-session.pid, SIGKILL);
        ::kill(session.pid, SIGKILL);
      }
      closeSession(session);
    }
    sessions_.clear();
  }

  void sendWritten(int64_t number, size_t bytes) {
    json event = json::object();
    event["session"] = number;
    event["event"] = "written";
    event["bytes"] = bytes;
    send(event);
  }

  // Adds the sessions' streams to `fds`: output while the host's window has room, input while bytes wait.
  // True when a session's program ended and its output is still being read (poll then wakes every 50 ms).
  bool pollSessions(std::vector<pollfd>& fds) const {
    bool ending = false;
    for (const auto& [number, session] : sessions_) {
      const bool room = session.outputInFlight < vmm::kAgentSessionWindow;
      for (const int fd : session.outputs) {
        if (fd >= 0 && room) fds.push_back({fd, POLLIN, 0});
      }
      if (session.input >= 0 && !session.pendingInput.empty()) fds.push_back({session.input, POLLOUT, 0});
      if (session.status) ending = true;
    }
    return ending;
  }

  // Moves bytes both ways without blocking, then ends the sessions whose program ended and whose output
  // was read to the end.
  void serviceSessions() {
    const int64_t now = monotonicMs();
    for (auto it = sessions_.begin(); it != sessions_.end();) {
      const int64_t number = it->first;
      Session& session = it->second;
      if (session.input >= 0 && !session.pendingInput.empty()) {
        const ssize_t n = ::write(session.input, session.pendingInput.data(), session.pendingInput.size());
        if (n > 0) {
          session.pendingInput.erase(0, static_cast<size_t>(n));
          sendWritten(number, static_cast<size_t>(n));
        } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
          // The program closed its stdin (EPIPE; PID 1 gets no SIGPIPE): what waits is dropped, and acked
          // so the host does not stall.
          sendWritten(number, session.pendingInput.size());
          session.pendingInput.clear();
          if (!session.tty) session.closeInputWhenWritten = true;
        }
      }
      if (session.closeInputWhenWritten && session.pendingInput.empty() && session.input >= 0) {
        ::close(session.input);
        session.input = -1;
      }
      for (int stream = 0; stream < 2; ++stream) {
        while (session.outputs[stream] >= 0 && session.outputInFlight < vmm::kAgentSessionWindow) {
          char buffer[vmm::kAgentSessionChunk];
          const size_t room =
              std::min<size_t>(sizeof(buffer), vmm::kAgentSessionWindow - session.outputInFlight);
          const ssize_t n = ::read(session.outputs[stream], buffer, room);
          if (n > 0) {
            json event = json::object();
            event["session"] = number;
            event["event"] = "output";
            event["stream"] = stream == 0 ? "stdout" : "stderr";
            event["data"] = vmm::base64Encode(std::string_view(buffer, static_cast<size_t>(n)));
            send(event);
            session.outputInFlight += static_cast<uint64_t>(n);
            session.lastOutputAt = now;
            continue;
          }
          if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
          // EOF, or EIO from a pty master whose slave every process closed.
          if (session.tty) {
            closeSession(session);
          } else {
            ::close(session.outputs[stream]);
            session.outputs[stream] = -1;
          }
        }
      }
      const bool outputOpen = session.outputs[0] >= 0 || session.outputs[1] >= 0;
      const bool canRead = session.outputInFlight < vmm::kAgentSessionWindow;
      // A background process may keep the pty or a pipe open: 250 ms without output after the program
      // ended (while the host's window had room) ends the session, as for exec.
      const bool quiet = canRead && now - std::max(session.endedAt, session.lastOutputAt) >= 250;
      if (!session.status || (outputOpen && !quiet)) {
        ++it;
        continue;
      }
      ExecOutcome ended;
      applyWaitStatus(ended, *session.status);
      json event = json::object();
      event["session"] = number;
      event["event"] = "exit";
      event["exit_code"] = ended.exitCode ? json(*ended.exitCode) : json(nullptr);
      event["signal"] = ended.signal ? json(*ended.signal) : json(nullptr);
      send(event);
      closeSession(session);
      it = sessions_.erase(it);
    }
  }

  // ---- The console shell ----

  // The tty behind /dev/console (the last of /sys/class/tty/console/active), or "" when the console is no
  // terminal (then no shell is offered).
  static std::string consoleDevice() {
    if (!::isatty(STDIN_FILENO)) return {};
    std::string active = readSmallFile("/sys/class/tty/console/active");
    while (!active.empty() && (active.back() == '\n' || active.back() == ' ')) active.pop_back();
    const size_t space = active.rfind(' ');
    const std::string name = space == std::string::npos ? active : active.substr(space + 1);
    if (name.empty()) return {};
    return "/dev/" + name;
  }

  // A root shell (the image's /bin/sh, or the initramfs's) in a session of its own with the console's tty
  // as its controlling terminal; no login, as the console is reachable only through corrald.
  void startConsoleShell() {
    ::tcflush(STDIN_FILENO, TCIFLUSH);  // the Enter that asked for it
    const auto env = execEnvironment(baseEnv_);
    std::vector<char*> envp;
    for (const auto& entry : env) envp.push_back(const_cast<char*>(entry.c_str()));
    envp.push_back(nullptr);
    char shell[] = "/bin/sh";
    char* argv[] = {shell, nullptr};
    const pid_t pid = ::fork();
    if (pid == 0) {
      execChild({.argv = argv,
                 .envp = envp.data(),
                 .what = "console shell",
                 .workdir = "/root",
                 .fallbackWorkdir = "/",
                 .terminal = consoleTerminal_.c_str()});
    }
    if (pid < 0) {
      logConsole("console shell: fork: %s", std::strerror(errno));
      return;
    }
    consoleShellPid_ = pid;
  }

  static ExecOutcome startFailure(const char* what) {
    ExecOutcome outcome;
    outcome.exitCode = 127;
    outcome.stderrData = std::string(what) + ": " + std::strerror(errno) + "\n";
    return outcome;
  }

  int64_t initStartedMs_;
  BootParams params_;
  std::string kernel_;
  int signalFd_ = -1;
  int portFd_ = -1;
  std::vector<int> powerButtons_;
  bool readyPending_ = false;
  bool hostClosed_ = false;
  LineReader reader_{vmm::kAgentMaxLine};
  pid_t execPid_ = -1;
  std::optional<int> execStatus_;
  pid_t workloadPid_ = -1;
  std::optional<int> workloadEnd_;  // the workload's wait status once it ended
  int powerSignal_ = 0;             // a halt, poweroff or reboot request signalled to PID 1
  std::vector<std::string> baseEnv_;
  std::map<int64_t, Session> sessions_;  // by the host's session number
  std::string consoleTerminal_;          // "/dev/ttyS0"; "" when the console offers no shell
  pid_t consoleShellPid_ = -1;
};

// The boot sequence, in order: pseudo filesystems → console → page reporting order → modules → command line →
// hostname → network → (corral.root: the image's root and its workload config) → agent port → workload →
// serve.
[[noreturn]] inline void runInit() {
  const int64_t initStartedMs = boottimeMs();
  mountPseudoFilesystems();
  attachConsole();
  lowerPageReportingOrder();
  ::setenv("PATH", "/usr/sbin:/usr/bin:/sbin:/bin", 1);
  ::setenv("HOME", "/root", 1);
  loadModules("/lib/modules/load-order");
  BootParams params = parseCmdline(readSmallFile("/proc/cmdline"));
  for (const auto& error : params.errors) logConsole("kernel command line: %s", error.c_str());
  const std::string hostname = params.effectiveHostname();
  if (::sethostname(hostname.data(), hostname.size()) != 0) {
    logConsole("sethostname(\"%s\"): %s", hostname.c_str(), std::strerror(errno));
  }
  configureNetwork(params);
  std::optional<Workload> workload;
  if (!params.rootSerial.empty()) {
    if (const std::string error = enterImageRoot(params.rootSerial); !error.empty()) {
      logConsole("root disk: %s", error.c_str());
      powerOff("no root filesystem");
    }
    auto config = readWorkload();  // /dev moved along: the config disk's node is still /dev/vdX
    if (const auto* error = std::get_if<std::string>(&config)) {
      logConsole("config disk: %s", error->c_str());
      powerOff("bad workload config");
    }
    workload = std::get<Workload>(std::move(config));
  }
  writeResolvConf(params);
  Init init(initStartedMs, std::move(params));
  init.setupSignals();
  init.openPort(5000);
  if (workload) init.startWorkload(*workload);
  init.run();
  powerOff("agent loop ended");
}

}  // namespace corral::guest

#ifndef CORRAL_INIT_NO_MAIN
int main() {
  try {
    corral::guest::runInit();
  } catch (const std::exception& e) {
    corral::guest::logConsole("fatal: %s", e.what());
  } catch (...) {
    corral::guest::logConsole("fatal: unknown exception");
  }
  corral::guest::powerOff("init failed");
}
#endif
