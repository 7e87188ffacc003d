#include "core/log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <ctime>
#include <mutex>

#include "core/unique_fd.h"

namespace corral::log {
namespace {

std::atomic<Level> minimum{Level::Info};
std::mutex fileMutex;
UniqueFd logFile;

std::string_view levelName(Level level) {
  switch (level) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warn";
    case Level::Error: return "error";
  }
  return "info";
}

void writeAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::write(fd, text.data(), text.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    text.remove_prefix(static_cast<size_t>(n));
  }
}

}  // namespace

void setLevel(Level level) { minimum = level; }

Status openFile(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
  if (fd < 0) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  std::lock_guard lock(fileMutex);
  logFile.reset(fd);
  return {};
}

void write(Level level, std::string_view text) {
  if (level < minimum.load()) return;
  timeval now{};
  ::gettimeofday(&now, nullptr);
  tm utc{};
  ::gmtime_r(&now.tv_sec, &utc);
  std::string line = fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z {} {}\n", utc.tm_year + 1900,
                                 utc.tm_mon + 1, utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec,
                                 now.tv_usec / 1000, levelName(level), text);
  std::lock_guard lock(fileMutex);
  writeAll(STDERR_FILENO, line);
  if (logFile) writeAll(logFile.get(), line);
}

}  // namespace corral::log
