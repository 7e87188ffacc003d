// The one rule for names: instances, images and every network object are named alike, so a name is always
// safe as a path segment, a libvirt domain suffix and a netns name part.
#pragma once

#include <cstddef>
#include <string_view>

#include "core/error.h"

namespace corral::schema {

inline constexpr size_t kMaxNameLength = 63;

// DNS-label-like: 1-63 of [a-z0-9-], starting with a letter or digit, not ending with '-'.
Status validateName(std::string_view name, std::string_view field = "name");

}  // namespace corral::schema
