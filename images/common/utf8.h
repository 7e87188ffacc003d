// UTF-8 well-formedness for the guest init and the probe, which report text they did not write (command
// output, kernel strings) inside JSON and must never emit a byte JSON parsers reject.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace corral::images {

// The length of the well-formed UTF-8 sequence starting at text[i] (1 for ASCII), or 0 when the bytes
// there are not one: a stray continuation byte, a sequence cut short, an overlong form, a surrogate or a
// code point above U+10FFFF.
inline size_t utf8SequenceLength(std::string_view text, size_t i) {
  const auto byte = static_cast<unsigned char>(text[i]);
  if (byte < 0x80) return 1;
  size_t length = 0;
  uint32_t lowest = 0;
  if ((byte & 0xe0) == 0xc0) length = 2, lowest = 0x80;
  if ((byte & 0xf0) == 0xe0) length = 3, lowest = 0x800;
  if ((byte & 0xf8) == 0xf0) length = 4, lowest = 0x10000;
  if (length == 0 || i + length > text.size()) return 0;
  uint32_t codepoint = byte & (0x7f >> length);
  for (size_t k = 1; k < length; ++k) {
    const auto next = static_cast<unsigned char>(text[i + k]);
    if ((next & 0xc0) != 0x80) return 0;
    codepoint = (codepoint << 6) | (next & 0x3f);
  }
  if (codepoint < lowest || codepoint > 0x10ffff || (codepoint >= 0xd800 && codepoint <= 0xdfff)) return 0;
  return length;
}

}  // namespace corral::images
