#include "core/error.h"

#include <cstring>

namespace corral {

std::string_view errorKindName(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument:
      return "invalid_argument";
    case ErrorKind::NotFound:
      return "not_found";
    case ErrorKind::Conflict:
      return "conflict";
    case ErrorKind::Unavailable:
      return "unavailable";
    case ErrorKind::Forbidden:
      return "forbidden";
    case ErrorKind::Internal:
      return "internal";
  }
  return "internal";
}

Error Error::wrap(std::string_view context) const& {
  Error copy = *this;
  return std::move(copy).wrap(context);
}

Error Error::wrap(std::string_view context) && {
  message_ = fmt::format("{}: {}", context, message_);
  return std::move(*this);
}

Error Error::inField(std::string_view parent) && {
  if (!parent.empty()) field_ = field_.empty() ? std::string(parent) : fmt::format("{}.{}", parent, field_);
  return std::move(*this);
}

Error systemError(int errnum, std::string_view what) {
  return Error(ErrorKind::Internal, fmt::format("{}: {}", what, std::strerror(errnum)), {}, errnum);
}

}  // namespace corral
