// Control characters in text that came from a user: found at input (names and descriptions refuse them)
// and made visible at output (the CLI prints what corrald sends through terminalSafe, since older state or
// other fields may still carry them).
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace corral {

// The first C0 control (U+0000-U+001F), DEL (U+007F) or C1 control (U+0080-U+009F, as UTF-8 C2 80..C2 9F)
// in `text`, spelled as terminalSafe shows it ("\x1b", "\u009b"); nullopt when there is none.
std::optional<std::string> firstControlCharacter(std::string_view text);

// `text` with every control character above written as an escape ("\x1b", "\x7f", "\u009b"), so printing
// it cannot move the cursor, retitle the window or hide what precedes it. Everything else is unchanged
// (a backslash too: escaping is idempotent).
std::string terminalSafe(std::string_view text);
// The same, but line breaks ('\n') stay, for multi-line text such as a rendered picture or frame dump.
std::string terminalSafeLines(std::string_view text);

}  // namespace corral
