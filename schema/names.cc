// The one rule for names of instances, images and network objects.
#include "schema/names.h"

#include <fmt/format.h>

#include "core/text.h"

namespace corral::schema {

Status validateName(std::string_view name, std::string_view field) {
  if (name.empty()) {
    return fail(
        invalidField(std::string(field), "the name is empty; use 1-{} of a-z, 0-9 and '-'", kMaxNameLength));
  }
  // Quoted through terminalSafe: the message goes back to a terminal, and the name may carry escapes.
  if (name.size() > kMaxNameLength) {
    return fail(invalidField(std::string(field), "\"{}\" is {} characters long; at most {} are allowed",
                             terminalSafe(name), name.size(), kMaxNameLength));
  }
  if (auto control = firstControlCharacter(name)) {
    return fail(invalidField(std::string(field),
                             "\"{}\" contains the control character {}; use a-z, 0-9 and '-'",
                             terminalSafe(name), *control));
  }
  for (char c : name) {
    bool allowed = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
    if (!allowed) {
      return fail(invalidField(std::string(field),
                               "\"{}\" contains '{}'; only lowercase letters a-z, digits and '-' are allowed",
                               terminalSafe(name), terminalSafe(std::string_view(&c, 1))));
    }
  }
  if (name.front() == '-') {
    return fail(invalidField(std::string(field), "\"{}\" must start with a letter or digit", name));
  }
  if (name.back() == '-') return fail(invalidField(std::string(field), "\"{}\" must not end with '-'", name));
  return {};
}

}  // namespace corral::schema
