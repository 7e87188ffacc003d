// Paths inside a container's root as the container will see them: an image's symlink (to "/", to
// "../../etc", to a host path) never leads the runtime's mounts, masks, mkdirs or mknods out of the root.
// Child side: only system calls, no allocation (buffers on the stack).
#pragma once

#include <sys/types.h>

namespace corral::container {

// Opens `path` inside the directory `rootFd` as if that were "/": ".." stops at it, an absolute symlink
// starts from it, magic links (/proc/PID/fd/N) are refused. "" and "." are the root itself; an absolute
// path means the same as the relative one. openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS), Linux 5.6 and
// later; before (ENOSYS) openInRootByWalk. Returns the new fd (O_CLOEXEC added) or -1 with errno.
int openInRoot(int rootFd, const char* path, int flags);

// The fallback: one component at a time with O_NOFOLLOW, ".." clamped at the root, and any symlink on the
// way refused with ELOOP (safe, stricter than openat2: a symlinked mount point fails instead).
int openInRootByWalk(int rootFd, const char* path, int flags);

// mkdir -p inside the root (mode 0755): each missing component is made in its parent as resolved by
// openInRoot; a symlink to nothing on the way gets its target made (inside the root). Returns an O_PATH
// fd of the directory or -1 with errno (ENOTDIR for a file on the way, ELOOP for a symlink loop).
int makeDirectoriesInRoot(int rootFd, const char* path);

// `path`'s parent directory, made as by makeDirectoriesInRoot, as an O_PATH fd; `*name` points to the last
// component within `path`. -1 with errno on failure (EINVAL: `path` names the root itself).
int openParentInRoot(int rootFd, const char* path, const char** name);

// An empty regular file at `path` unless something is there already (its parents made as above). Returns
// an O_PATH fd of what is at `path` then, or -1 with errno.
int makeFileInRoot(int rootFd, const char* path);

// "/proc/self/fd/N": the name by which mount(2) reaches what an fd resolved (runc's way). The kernel
// follows this magic link itself, so nothing is looked up by name again.
struct FdPath {
  explicit FdPath(int fd);
  const char* c_str() const { return text; }
  char text[32];
};

}  // namespace corral::container
