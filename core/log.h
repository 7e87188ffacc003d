// Process-wide logging to stderr and, once configured, a file. Thread-safe; one line per call.
#pragma once

#include <string>
#include <string_view>

#include <fmt/format.h>

#include "core/error.h"

namespace corral::log {

enum class Level { Debug, Info, Warn, Error };

void setLevel(Level level);
// Appends to `path` as well as stderr. Fails if the file cannot be opened for appending.
Status openFile(const std::string& path);
void write(Level level, std::string_view text);

template <class... Args>
void debug(fmt::format_string<Args...> f, Args&&... a) { write(Level::Debug, fmt::format(f, std::forward<Args>(a)...)); }
template <class... Args>
void info(fmt::format_string<Args...> f, Args&&... a) { write(Level::Info, fmt::format(f, std::forward<Args>(a)...)); }
template <class... Args>
void warn(fmt::format_string<Args...> f, Args&&... a) { write(Level::Warn, fmt::format(f, std::forward<Args>(a)...)); }
template <class... Args>
void error(fmt::format_string<Args...> f, Args&&... a) { write(Level::Error, fmt::format(f, std::forward<Args>(a)...)); }

}  // namespace corral::log
