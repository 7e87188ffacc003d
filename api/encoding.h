// Encodings of the API's text: percent-encoding (RFC 3986) of names inside request paths. Base64 for binary
// data inside JSON answers is declared with the API (api/api.h); both are defined in api/encoding.cc.
#pragma once

#include <string>
#include <string_view>

#include "core/error.h"

namespace corral::api {

// Every byte but RFC 3986's unreserved ones as %XX. Names are DNS-label-like today, but a path must
// survive any input. `keep` lists characters left as they are (the '/' inside a route destination, for
// readability).
std::string percentEncode(std::string_view text, std::string_view keep = {});
// percentEncode's inverse; a '%' not followed by two hex digits is InvalidArgument naming `field`.
Result<std::string> percentDecode(std::string_view text, std::string_view field);

}  // namespace corral::api
