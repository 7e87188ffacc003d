// Control characters: what counts as one, and how the CLI shows them.
#include "core/text.h"

#include <gtest/gtest.h>

namespace corral {
namespace {

TEST(Text, EveryControlCharacterIsEscapedAndNothingElse) {
  EXPECT_EQ(terminalSafe("web-1"), "web-1");
  EXPECT_EQ(terminalSafe("\x1b]0;pwned\x07"), "\\x1b]0;pwned\\x07");
  EXPECT_EQ(terminalSafe("a\nb\tc\rd\x7f"), "a\\x0ab\\x09c\\x0dd\\x7f");
  EXPECT_EQ(terminalSafe(std::string_view("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(terminalSafe("\xc2\x9b"
                         "2J"),
            "\\u009b2J");  // C1 CSI, as UTF-8
  // Printable UTF-8 stays, ß (C3 9F) and U+00A0 (C2 A0) included; escaping twice changes nothing more.
  EXPECT_EQ(terminalSafe("Größe\xc2\xa0ok"), "Größe\xc2\xa0ok");
  EXPECT_EQ(terminalSafe(terminalSafe("\x1b[31m")), "\\x1b[31m");
  EXPECT_EQ(terminalSafeLines("one\ntwo\x1b[2J\n"), "one\ntwo\\x1b[2J\n");
}

TEST(Text, FirstControlCharacterIsSpelledAsItIsShown) {
  EXPECT_EQ(firstControlCharacter("plain text, ß"), std::nullopt);
  EXPECT_EQ(firstControlCharacter("a\x1b"
                                  "b\x07"),
            "\\x1b");
  EXPECT_EQ(firstControlCharacter("x\xc2\x85"), "\\u0085");
  EXPECT_EQ(firstControlCharacter("\x7f"), "\\x7f");
}

}  // namespace
}  // namespace corral
