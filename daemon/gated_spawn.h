// Starting a helper process (a VPC's dnsmasq, this host's etcd member) so that no crash of corrald can leave
// it running unknown to the next corrald: the child is forked with PR_SET_PDEATHSIG (corrald dies, it
// dies), then waits at a gate (a pipe) until corrald has recorded its pid (the pid file the next corrald
// reads); corrald killed before that, the gate closes and the child exits without having run anything.
// Only then does it exec. The child of a threaded parent makes async-signal-safe calls only until exec.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "core/error.h"

namespace corral::daemon {

struct GatedSpawn {
  std::vector<std::string> args;  // args[0] looked up in PATH
  int stdinFd = -1;               // becomes the child's stdin
  int outputFd = -1;              // becomes its stdout and stderr (and takes the lines below)
  int netnsFd = -1;               // when >= 0: setns(CLONE_NEWNET) into it before exec
  bool ownProcessGroup = false;   // setpgid(0, 0): a terminal's ^C is corrald's to handle, not the child's
  // Written to outputFd when setns or exec fails ("corrald: execvp(dnsmasq) failed (is dnsmasq
  // installed?)"): the exit code is then 126 (setns) or 127 (exec).
  std::string setnsFailed;
  std::string execFailed;
};

// Forks the child and calls `record(pid)` while it waits at the gate. When `record` fails, the child is
// killed and reaped and its error returned; else the gate opens and the pid is returned.
Result<pid_t> spawnGated(const GatedSpawn& spawn, const std::function<Status(pid_t)>& record);

}  // namespace corral::daemon
