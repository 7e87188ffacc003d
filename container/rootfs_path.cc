// Symlink-safe lookups inside a container's root (see rootfs_path.h): openat2's RESOLVE_IN_ROOT, which is
// what runc's securejoin and crun's safe_openat do, with a strict walk for kernels without it.
#include "container/rootfs_path.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>

namespace corral::container {
namespace {

// Closes `fd` without touching errno (the caller reports the error that came before).
void closeKeepingErrno(int fd) {
  int saved = errno;
  ::close(fd);
  errno = saved;
}

const char* withoutLeadingSlashes(const char* path) {
  while (*path == '/') ++path;
  return *path == '\0' ? "." : path;
}

}  // namespace

int openInRoot(int rootFd, const char* path, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, rootFd, withoutLeadingSlashes(path), &how, sizeof how);
  if (fd < 0 && errno == ENOSYS) return openInRootByWalk(rootFd, path, flags);
  return static_cast<int>(fd);
}

int openInRootByWalk(int rootFd, const char* path, int flags) {
  int current = ::openat(rootFd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (current < 0) return -1;
  int depth = 0;  // components below the root: ".." at 0 stays at the root, as RESOLVE_IN_ROOT does
  const char* next = path;
  for (;;) {
    while (*next == '/') ++next;
    if (*next == '\0') {  // nothing (more) to walk: the directory reached, opened with the caller's flags
      int fd = ::openat(current, ".", flags | O_CLOEXEC);
      closeKeepingErrno(current);
      return fd;
    }
    const char* end = next;
    while (*end != '\0' && *end != '/') ++end;
    const char* after = end;
    while (*after == '/') ++after;
    const bool last = *after == '\0';
    char name[NAME_MAX + 1];
    const size_t length = static_cast<size_t>(end - next);
    if (length > NAME_MAX) {
      closeKeepingErrno(current);
      errno = ENAMETOOLONG;
      return -1;
    }
    ::memcpy(name, next, length);
    name[length] = '\0';
    next = end;
    const bool dot = ::strcmp(name, ".") == 0;
    const bool dotDot = ::strcmp(name, "..") == 0;
    if (dot || (dotDot && depth == 0)) continue;
    // Each component opened as itself (O_PATH|O_NOFOLLOW), so a symlink is seen and refused, never
    // followed; the last one then opened again with the caller's flags.
    int child = ::openat(current, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    struct stat st {};
    if (child >= 0 && ::fstat(child, &st) == 0) {
      if (S_ISLNK(st.st_mode)) {
        errno = ELOOP;
      } else if (!last && !S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
      } else if (last && (flags & ~O_CLOEXEC) != O_PATH) {
        ::close(child);
        child = ::openat(current, name, flags | O_NOFOLLOW | O_CLOEXEC);
        closeKeepingErrno(current);
        return child;
      } else {
        errno = 0;
      }
    }
    closeKeepingErrno(current);
    if (child < 0 || errno != 0) {
      if (child >= 0) closeKeepingErrno(child);
      return -1;
    }
    depth += dotDot ? -1 : 1;
    if (last) return child;
    current = child;
  }
}

namespace {

// One walk of makeDirectoriesInRoot over `path` (of `*length` bytes, in a PATH_MAX buffer). Returns the
// directory's fd, -1 with errno, or kRewritten when a component was a symlink to nothing: `path` then
// holds the walk to do instead (the link's target, inside the root, in the link's place).
constexpr int kRewritten = -2;
int makeDirectoriesOnce(int rootFd, char* path, size_t* length) {
  char prefix[PATH_MAX];
  int current = openInRoot(rootFd, ".", O_PATH | O_DIRECTORY);
  if (current < 0) return -1;
  size_t at = 0;
  for (;;) {
    while (at < *length && path[at] == '/') ++at;
    if (at == *length) return current;
    const size_t start = at;
    while (at < *length && path[at] != '/') ++at;
    ::memcpy(prefix, path, at);
    prefix[at] = '\0';
    int next = openInRoot(rootFd, prefix, O_PATH | O_DIRECTORY);
    if (next < 0 && errno == ENOENT) {
      // Made in the directory the prefix so far resolved to; then looked up again from the root.
      char name[NAME_MAX + 1];
      if (at - start > NAME_MAX) {
        closeKeepingErrno(current);
        errno = ENAMETOOLONG;
        return -1;
      }
      ::memcpy(name, path + start, at - start);
      name[at - start] = '\0';
      if (::mkdirat(current, name, 0755) != 0) {
        if (errno != EEXIST) {
          closeKeepingErrno(current);
          return -1;
        }
        char target[PATH_MAX];
        ssize_t targetLength = ::readlinkat(current, name, target, sizeof target);
        if (targetLength > 0) {
          ::close(current);
          const size_t kept = target[0] == '/' ? 0 : start;
          const size_t rest = *length - at;
          if (kept + static_cast<size_t>(targetLength) + rest >= PATH_MAX) {
            errno = ENAMETOOLONG;
            return -1;
          }
          ::memmove(path + kept + static_cast<size_t>(targetLength), path + at, rest + 1);
          ::memcpy(path + kept, target, static_cast<size_t>(targetLength));
          *length = kept + static_cast<size_t>(targetLength) + rest;
          return kRewritten;
        }
      }
      next = openInRoot(rootFd, prefix, O_PATH | O_DIRECTORY);
    }
    closeKeepingErrno(current);
    if (next < 0) return -1;
    current = next;
  }
}

}  // namespace

int makeDirectoriesInRoot(int rootFd, const char* given) {
  int fd = openInRoot(rootFd, given, O_PATH | O_DIRECTORY);
  if (fd >= 0 || errno != ENOENT) return fd;
  char path[PATH_MAX];
  size_t length = ::strnlen(given, PATH_MAX);
  if (length >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  ::memcpy(path, given, length + 1);
  // A symlink to nothing on the way: its target (inside the root) is made instead, as runc's
  // securejoin.MkdirAll does; 40 such links are a loop (the kernel's own limit).
  for (int rewrites = 0; rewrites <= 40; ++rewrites) {
    fd = makeDirectoriesOnce(rootFd, path, &length);
    if (fd != kRewritten) return fd;
  }
  errno = ELOOP;
  return -1;
}

int openParentInRoot(int rootFd, const char* path, const char** name) {
  size_t end = ::strnlen(path, PATH_MAX);
  if (end >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return -1;
  }
  while (end > 0 && path[end - 1] == '/') --end;
  size_t start = end;
  while (start > 0 && path[start - 1] != '/') --start;
  const size_t nameLength = end - start;
  if (nameLength == 0 || (nameLength == 1 && path[start] == '.') ||
      (nameLength == 2 && path[start] == '.' && path[start + 1] == '.')) {
    errno = EINVAL;
    return -1;
  }
  char parent[PATH_MAX];
  ::memcpy(parent, path, start);
  parent[start] = '\0';
  *name = path + start;
  return makeDirectoriesInRoot(rootFd, parent);
}

int makeFileInRoot(int rootFd, const char* path) {
  int fd = openInRoot(rootFd, path, O_PATH);
  if (fd >= 0 || errno != ENOENT) return fd;
  const char* name = nullptr;
  int parent = openParentInRoot(rootFd, path, &name);
  if (parent < 0) return -1;
  // mknodat makes a regular file without opening it (a FIFO or device already there is left alone).
  if (::mknodat(parent, name, S_IFREG | 0644, 0) != 0 && errno != EEXIST) {
    closeKeepingErrno(parent);
    return -1;
  }
  ::close(parent);
  return openInRoot(rootFd, path, O_PATH);
}

FdPath::FdPath(int fd) : text{} {
  static constexpr char kPrefix[] = "/proc/self/fd/";
  ::memcpy(text, kPrefix, sizeof kPrefix - 1);
  char digits[12];
  int count = 0;
  unsigned value = fd < 0 ? 0U : static_cast<unsigned>(fd);
  do {
    digits[count++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  size_t at = sizeof kPrefix - 1;
  while (count > 0) text[at++] = digits[--count];
  text[at] = '\0';
}

}  // namespace corral::container
