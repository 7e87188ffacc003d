// Control characters: finding and escaping them (core/text.h).
#include "core/text.h"

#include <fmt/format.h>

namespace corral {
namespace {

// The length of the control character starting at text[i] (1 for C0 and DEL, 2 for a UTF-8 C1), or 0.
size_t controlLength(std::string_view text, size_t i) {
  auto byte = static_cast<unsigned char>(text[i]);
  if (byte < 0x20 || byte == 0x7f) return 1;
  if (byte == 0xc2 && i + 1 < text.size()) {
    auto next = static_cast<unsigned char>(text[i + 1]);
    if (next >= 0x80 && next <= 0x9f) return 2;
  }
  return 0;
}

std::string escape(std::string_view control) {
  if (control.size() == 1) return fmt::format("\\x{:02x}", static_cast<unsigned char>(control[0]));
  return fmt::format("\\u{:04x}", static_cast<unsigned char>(control[1]));
}

std::string escapeControls(std::string_view text, bool keepNewlines) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    size_t length = keepNewlines && text[i] == '\n' ? 0 : controlLength(text, i);
    if (length > 0) {
      out += escape(text.substr(i, length));
      i += length - 1;
    } else {
      out += text[i];
    }
  }
  return out;
}

}  // namespace

std::optional<std::string> firstControlCharacter(std::string_view text) {
  for (size_t i = 0; i < text.size(); ++i) {
    if (size_t length = controlLength(text, i)) return escape(text.substr(i, length));
  }
  return std::nullopt;
}

std::string terminalSafe(std::string_view text) {
  return escapeControls(text, /*keepNewlines=*/false);
}

std::string terminalSafeLines(std::string_view text) {
  return escapeControls(text, /*keepNewlines=*/true);
}

}  // namespace corral
