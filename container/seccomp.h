// Seccomp profiles: the model (Docker's default, unconfined, or an OCI/Docker JSON profile file) and
// loading it into the calling thread with libseccomp (loadInChild, used right before execve).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "schema/instance.h"

namespace corral::container {

enum class SeccompAction { Allow, Errno, Kill, Trap, Log };

// A condition on one syscall argument (OCI's syscalls[].args[]): `arg[index] OP value`, or for MaskedEqual
// `(arg[index] & value) == valueTwo`.
enum class SeccompCompare { NotEqual, Less, LessOrEqual, Equal, GreaterOrEqual, Greater, MaskedEqual };
struct SeccompArg {
  unsigned index = 0;
  uint64_t value = 0;
  uint64_t valueTwo = 0;
  SeccompCompare op = SeccompCompare::Equal;
};

struct SeccompRule {
  std::vector<std::string> syscalls;  // names as libseccomp knows them
  SeccompAction action = SeccompAction::Errno;
  int errnoValue = 1;            // EPERM, for Errno
  std::vector<SeccompArg> args;  // all must hold for the rule to apply (empty: always)
};

struct SeccompProfile {
  SeccompAction defaultAction = SeccompAction::Allow;
  int defaultErrno = 1;
  std::vector<SeccompRule> rules;
  // With default action Errno, a syscall numbered above every syscall the profile names (in its rules or
  // here: the table it was written against, allowed or not) fails with ENOSYS instead of defaultErrno, so a
  // libc trying a syscall newer than the profile falls back to an older one, as it would on an older
  // kernel (runc and crun patch Docker's profile the same way). Numbers within the table keep defaultErrno.
  std::vector<std::string> knownSyscalls;
  schema::SeccompMode mode = schema::SeccompMode::profileFile;  // which policy this is
  std::string name;  // "default", "unconfined", or the file path: what error messages call it
  bool unconfined() const { return mode == schema::SeccompMode::unconfined; }
};

// Docker's default policy (moby 25 and later) as an allow list: default action ERRNO(EPERM); Docker's
// common list is allowed (io_uring_* not: moby 25 dropped them), socket for every family but AF_VSOCK,
// personality for Docker's five values, clone without namespace flags; clone3 fails with ENOSYS so libcs
// fall back to clone; syscalls newer than the table fail with ENOSYS (see knownSyscalls). Capabilities add
// what Docker's "includes.caps" add (e.g. CAP_SYS_ADMIN: mount, umount2, unshare, setns, clone with any
// flags, clone3), given as names like "CAP_SYS_ADMIN".
SeccompProfile dockerDefaultProfile(const std::vector<std::string>& capabilities);
SeccompProfile unconfinedProfile();
// An OCI/Docker JSON profile: defaultAction, defaultErrnoRet, syscalls[{names, action, errnoRet}].
// Unknown actions, unknown syscall names and malformed JSON are InvalidArgument naming the JSON path and
// the structural reason; no message quotes the file's content (it may be any host file). Syscall names
// this host's libseccomp does not know are skipped in SCMP_ACT_ALLOW entries (as runc does: nothing to
// allow), refused elsewhere.
Result<SeccompProfile> parseSeccompProfile(std::string_view json, std::string_view origin);
// The profile an instance's "seccomp" field chose (a file's problems are errors of field "seccomp").
Result<SeccompProfile> resolveSeccompProfile(const schema::SeccompChoice& choice,
                                             const std::vector<std::string>& capabilities);

// Compiles the profile to BPF now (in the parent: allocation is fine here) so the child only loads it.
class CompiledSeccomp {
 public:
  static Result<CompiledSeccomp> compile(const SeccompProfile& profile);
  CompiledSeccomp(CompiledSeccomp&&) noexcept = default;
  CompiledSeccomp& operator=(CompiledSeccomp&&) noexcept = default;
  // In the child, after no_new_privs: installs the filter with prctl/seccomp(2). Async-signal-safe; returns
  // an errno value (0 on success), never allocates.
  int loadInChild() const;
  bool empty() const { return program_.empty(); }

 private:
  CompiledSeccomp() = default;
  std::vector<unsigned char> program_;  // struct sock_filter[] exported by seccomp_export_bpf
};

}  // namespace corral::container
