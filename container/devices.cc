// The device model: default allow list and nodes, rule text both ways, the decision the kernel makes, and
// `--device` parsing plus the one stat(2) of the host node it names.
#include "container/devices.h"

#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <algorithm>
#include <charconv>

namespace corral::container {
namespace {

// What corral itself puts in every container's /dev (mounts.cc): a --device may not land on or under it.
constexpr std::string_view kProvidedDevPaths[] = {"null", "zero",  "full",   "random", "urandom",
                                                  "tty",  "ptmx",  "pts",    "shm",    "mqueue",
                                                  "fd",   "stdin", "stdout", "stderr"};

std::string numberText(const std::optional<uint32_t>& number) {
  return number ? std::to_string(*number) : std::string("*");
}

Result<std::optional<uint32_t>> parseNumber(std::string_view text, std::string_view line,
                                            const std::string& field) {
  if (text == "*") return std::optional<uint32_t>();
  uint32_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return fail(invalidField(field, "\"{}\": \"{}\" is not a device number or '*'", line, text));
  return std::optional<uint32_t>(value);
}

bool isAccessText(std::string_view text) {
  return !text.empty() && text.size() <= 3 &&
         std::all_of(text.begin(), text.end(), [](char c) { return c == 'r' || c == 'w' || c == 'm'; });
}

}  // namespace

std::vector<DeviceRule> defaultDeviceRules() {
  return {
      {DeviceType::Char, {}, {}, kDeviceMknod},   {DeviceType::Block, {}, {}, kDeviceMknod},
      {DeviceType::Char, 1, 3, kDeviceAllAccess}, {DeviceType::Char, 1, 5, kDeviceAllAccess},
      {DeviceType::Char, 1, 7, kDeviceAllAccess}, {DeviceType::Char, 1, 8, kDeviceAllAccess},
      {DeviceType::Char, 1, 9, kDeviceAllAccess}, {DeviceType::Char, 5, 0, kDeviceAllAccess},
      {DeviceType::Char, 5, 2, kDeviceAllAccess}, {DeviceType::Char, 136, {}, kDeviceAllAccess},
  };
}

std::string deviceAccessText(uint8_t access) {
  std::string text;
  if (access & kDeviceRead) text += 'r';
  if (access & kDeviceWrite) text += 'w';
  if (access & kDeviceMknod) text += 'm';
  return text;
}

Result<uint8_t> parseDeviceAccess(std::string_view text, const std::string& field) {
  uint8_t access = 0;
  for (char c : text) {
    uint8_t bit = c == 'r' ? kDeviceRead : c == 'w' ? kDeviceWrite : c == 'm' ? kDeviceMknod : 0;
    if (bit == 0 || (access & bit))
      return fail(
          invalidField(field, "permissions \"{}\" must be letters of \"rwm\", each at most once", text));
    access |= bit;
  }
  if (access == 0) return fail(invalidField(field, "permissions are empty; give some of \"rwm\""));
  return access;
}

std::string deviceRuleLine(const DeviceRule& rule) {
  return fmt::format("{} {}:{} {}", static_cast<char>(rule.type), numberText(rule.major),
                     numberText(rule.minor), deviceAccessText(rule.access));
}

Result<DeviceRule> parseDeviceRule(std::string_view line, const std::string& field) {
  // TYPE MAJOR:MINOR ACCESS
  size_t space = line.find(' ');
  size_t lastSpace = line.rfind(' ');
  if (space == std::string_view::npos || space == lastSpace || line.size() < 2)
    return fail(invalidField(field, "\"{}\" is not \"TYPE MAJOR:MINOR ACCESS\" (e.g. \"c 1:3 rwm\")", line));
  std::string_view type = line.substr(0, space);
  std::string_view numbers = line.substr(space + 1, lastSpace - space - 1);
  std::string_view access = line.substr(lastSpace + 1);
  DeviceRule rule;
  if (type == "c") {
    rule.type = DeviceType::Char;
  } else if (type == "b") {
    rule.type = DeviceType::Block;
  } else {
    return fail(invalidField(field, "\"{}\": the type must be c or b", line));
  }
  size_t colon = numbers.find(':');
  if (colon == std::string_view::npos)
    return fail(invalidField(field, "\"{}\": \"{}\" is not MAJOR:MINOR", line, numbers));
  auto major = parseNumber(numbers.substr(0, colon), line, field);
  if (!major) return fail(major.error());
  auto minor = parseNumber(numbers.substr(colon + 1), line, field);
  if (!minor) return fail(minor.error());
  auto bits = parseDeviceAccess(access, field);
  if (!bits) return fail(bits.error());
  rule.major = *major;
  rule.minor = *minor;
  rule.access = *bits;
  return rule;
}

bool deviceAccessAllowed(const std::vector<DeviceRule>& rules, DeviceType type, uint32_t major,
                         uint32_t minor, uint8_t access) {
  return std::any_of(rules.begin(), rules.end(), [&](const DeviceRule& rule) {
    return rule.type == type && (!rule.major || *rule.major == major) &&
           (!rule.minor || *rule.minor == minor) && (access & ~rule.access) == 0;
  });
}

std::vector<DeviceNode> defaultDeviceNodes() {
  auto node = [](const char* name, uint32_t major, uint32_t minor) {
    std::string path = fmt::format("/dev/{}", name);
    return DeviceNode{path, path, DeviceType::Char, major, minor, 0666, 0, 0, kDeviceAllAccess};
  };
  return {node("null", 1, 3),   node("zero", 1, 5),    node("full", 1, 7),
          node("random", 1, 8), node("urandom", 1, 9), node("tty", 5, 0)};
}

DeviceRule deviceNodeRule(const DeviceNode& node) {
  return DeviceRule{node.type, node.major, node.minor, node.access};
}

Result<DeviceMapping> parseDeviceMapping(std::string_view text, const std::string& field) {
  std::vector<std::string_view> parts;
  for (std::string_view rest = text;;) {
    size_t colon = rest.find(':');
    parts.push_back(rest.substr(0, colon));
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  if (parts.size() > 3)
    return fail(invalidField(field, "\"{}\" is not HOST_PATH[:CONTAINER_PATH][:PERMS]", text));
  DeviceMapping mapping;
  mapping.hostPath = std::string(parts[0]);
  std::string_view perms;
  if (parts.size() == 3) {
    mapping.containerPath = std::string(parts[1]);
    perms = parts[2];
  } else if (parts.size() == 2 && isAccessText(parts[1])) {
    perms = parts[1];
  } else if (parts.size() == 2) {
    mapping.containerPath = std::string(parts[1]);
  }
  if (mapping.hostPath.empty() || mapping.hostPath.front() != '/')
    return fail(invalidField(field, "host path \"{}\" is not an absolute path", mapping.hostPath));
  if (mapping.containerPath.empty()) mapping.containerPath = mapping.hostPath;
  if (!perms.empty() || parts.size() == 3) {
    auto access = parseDeviceAccess(perms, field);
    if (!access) return fail(access.error());
    mapping.access = *access;
  }

  const std::string& path = mapping.containerPath;
  if (!path.starts_with("/dev/") || path.size() == 5)
    return fail(invalidField(field, "container path \"{}\" is not a path under /dev/", path));
  std::string_view relative = std::string_view(path).substr(5);
  for (std::string_view rest = relative;;) {
    size_t slash = rest.find('/');
    std::string_view component = rest.substr(0, slash);
    if (component.empty() || component == "." || component == "..")
      return fail(invalidField(
          field, "container path \"{}\" is not a normalized path (no empty, '.' or '..' parts)", path));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (path.find('\0') != std::string::npos || path.find('\n') != std::string::npos)
    return fail(invalidField(field, "container path must not contain NUL or newline characters"));
  std::string_view first = relative.substr(0, relative.find('/'));
  if (std::find(std::begin(kProvidedDevPaths), std::end(kProvidedDevPaths), first) !=
      std::end(kProvidedDevPaths))
    return fail(
        invalidField(field, "container path \"{}\" is one corral provides in every container's /dev", path));
  return mapping;
}

Result<DeviceNode> deviceNodeFromHost(const DeviceMapping& mapping, const std::string& field) {
  struct stat st {};
  if (::stat(mapping.hostPath.c_str(), &st) != 0)
    return fail(invalidField(field, "host device \"{}\": stat: {}", mapping.hostPath, std::strerror(errno)));
  if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
    return fail(invalidField(field, "host path \"{}\" is not a character or block device", mapping.hostPath));
  DeviceNode node;
  node.path = mapping.containerPath;
  node.hostPath = mapping.hostPath;
  node.type = S_ISCHR(st.st_mode) ? DeviceType::Char : DeviceType::Block;
  node.major = ::major(st.st_rdev);
  node.minor = ::minor(st.st_rdev);
  node.mode = st.st_mode & 07777;
  node.uid = st.st_uid;
  node.gid = st.st_gid;
  node.access = mapping.access;
  return node;
}

}  // namespace corral::container
