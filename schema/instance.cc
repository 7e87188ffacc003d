// The instance schema's pure parsers: kinds, memory sizes and hostnames, shared by the CLI and corrald.
#include "schema/instance.h"

#include <fmt/format.h>

#include <charconv>
#include <system_error>

#include "core/text.h"

namespace corral::schema {
namespace {

constexpr uint64_t kMaxMemoryBytes = uint64_t{1} << 40;  // 1 TiB
constexpr size_t kMaxHostnameLength = 63;

}  // namespace

std::string_view instanceKindName(InstanceKind kind) {
  switch (kind) {
    case InstanceKind::container:
      return "container";
    case InstanceKind::vm:
      return "vm";
  }
  return "container";
}

Result<InstanceKind> parseInstanceKind(std::string_view text, std::string_view field) {
  for (InstanceKind kind : {InstanceKind::container, InstanceKind::vm}) {
    if (text == instanceKindName(kind)) return kind;
  }
  return fail(invalidField(std::string(field), "\"{}\" is not a kind (kinds: \"container\", \"vm\")",
                           terminalSafe(text)));
}

Result<SeccompChoice> parseSeccompChoice(std::string_view text, std::string_view field) {
  if (text == "default") return SeccompChoice{.mode = SeccompMode::dockerDefault, .profilePath = {}};
  if (text == "unconfined") return SeccompChoice{.mode = SeccompMode::unconfined, .profilePath = {}};
  if (text.empty() || text.front() != '/') {
    return fail(invalidField(std::string(field),
                             "must be \"default\", \"unconfined\" or an absolute path to a JSON profile, "
                             "got \"{}\"",
                             terminalSafe(text)));
  }
  return SeccompChoice{.mode = SeccompMode::profileFile, .profilePath = std::string(text)};
}

// RFC 1123 label: 1-63 of letters, digits and '-', not starting or ending with '-'.
Status validateHostname(std::string_view hostname) {
  if (hostname.empty() || hostname.size() > kMaxHostnameLength) {
    return fail(invalidField("hostname", "\"{}\" must be 1-{} characters long", terminalSafe(hostname),
                             kMaxHostnameLength));
  }
  if (auto control = firstControlCharacter(hostname)) {
    return fail(invalidField("hostname",
                             "\"{}\" contains the control character {}; use letters, digits and '-'",
                             terminalSafe(hostname), *control));
  }
  for (char c : hostname) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
    if (!allowed) {
      return fail(invalidField("hostname", "\"{}\" contains '{}'; only letters, digits and '-' are allowed",
                               hostname, c));
    }
  }
  if (hostname.front() == '-' || hostname.back() == '-') {
    return fail(invalidField("hostname", "\"{}\" must not start or end with '-'", hostname));
  }
  return {};
}

Result<uint64_t> parseMemorySize(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return fail(invalidField("memory",
                             "\"{}\" {}; give a whole number of bytes with an optional K, M, G or T "
                             "suffix (powers of 1024), e.g. \"64M\"",
                             text, why));
  };
  if (text.empty()) return bad("is empty");
  uint64_t number = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), number);
  if (end == text.data()) return bad("does not start with a digit");
  if (ec == std::errc::result_out_of_range) return bad("is too large (at most 1T)");
  std::string_view suffix(end, static_cast<size_t>(text.data() + text.size() - end));
  unsigned shift = 0;
  if (suffix.size() == 1) {
    switch (suffix.front()) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      case 't':
      case 'T':
        shift = 40;
        break;
      default:
        return bad(fmt::format("has an unknown suffix \"{}\"", suffix));
    }
  } else if (!suffix.empty()) {
    return bad(fmt::format("has an unknown suffix \"{}\"", suffix));
  }
  if (number == 0) return bad("is zero");
  if (number > (kMaxMemoryBytes >> shift)) return bad("is more than 1T");
  return number << shift;
}

}  // namespace corral::schema
