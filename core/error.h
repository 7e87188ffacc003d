// Error values that cross module boundaries: a closed set of kinds, an errno and a message chain.
#pragma once

#include <fmt/format.h>

#include <expected>
#include <string>
#include <string_view>
#include <utility>

namespace corral {

// Each kind maps to exactly one HTTP status in the API (api::httpStatus, api/api.h).
enum class ErrorKind {
  InvalidArgument,  // bad input: a field that fails validation (400)
  NotFound,         // the named object does not exist (404)
  Conflict,         // the request does not fit the current state: duplicate, dependency, wrong state (409)
  Unavailable,      // a service we depend on is not there (libvirtd, the daemon itself) (503)
  Forbidden,        // not allowed on this way in, whatever the input (the read-only dashboard port) (403)
  Internal,         // a system call or library failed (500)
};

std::string_view errorKindName(ErrorKind kind);

class Error {
 public:
  Error(ErrorKind kind, std::string message, std::string field = {}, int errnum = 0)
      : kind_(kind), errnum_(errnum), message_(std::move(message)), field_(std::move(field)) {}

  ErrorKind kind() const { return kind_; }
  int errnum() const { return errnum_; }
  // The whole chain, outermost context first: "create vpc prod: state: sqlite3_step: disk I/O error".
  const std::string& message() const { return message_; }
  // The request field at fault, for InvalidArgument; empty otherwise.
  const std::string& field() const { return field_; }

  // Adds the caller's context in front, keeping kind, errno and field (crun_error_wrap).
  Error wrap(std::string_view context) const&;
  Error wrap(std::string_view context) &&;

  // Prefixes the field with a parent's name: "cidr" inside "rules[2]" becomes "rules[2].cidr".
  Error inField(std::string_view parent) &&;

 private:
  ErrorKind kind_;
  int errnum_;
  std::string message_;
  std::string field_;
};

template <class T>
using Result = std::expected<T, Error>;
using Status = std::expected<void, Error>;

inline std::unexpected<Error> fail(Error e) {
  return std::unexpected<Error>(std::move(e));
}

template <class... Args>
Error invalidField(std::string field, fmt::format_string<Args...> format, Args&&... args) {
  return Error(ErrorKind::InvalidArgument, fmt::format(format, std::forward<Args>(args)...),
               std::move(field));
}
template <class... Args>
Error notFound(fmt::format_string<Args...> format, Args&&... args) {
  return Error(ErrorKind::NotFound, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
Error conflict(fmt::format_string<Args...> format, Args&&... args) {
  return Error(ErrorKind::Conflict, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
Error internalError(fmt::format_string<Args...> format, Args&&... args) {
  return Error(ErrorKind::Internal, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
Error forbidden(fmt::format_string<Args...> format, Args&&... args) {
  return Error(ErrorKind::Forbidden, fmt::format(format, std::forward<Args>(args)...));
}
template <class... Args>
Error unavailable(fmt::format_string<Args...> format, Args&&... args) {
  return Error(ErrorKind::Unavailable, fmt::format(format, std::forward<Args>(args)...));
}
// A failed system call: "open("/x"): No such file or directory", kind Internal, errno kept.
Error systemError(int errnum, std::string_view what);

}  // namespace corral
