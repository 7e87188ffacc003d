// OCI hooks run by corral-runtime: each hook's program with the container's state JSON on its stdin,
// killed at its timeout; a failure names the hook ("hooks.prestart[1] \"/bin/x\": exited with status 2").
#pragma once

#include <string>
#include <vector>

#include "container/oci_config.h"
#include "core/error.h"

namespace corral::runtime {

// Runs `hooks` in order, stopping at the first failure. `stage` names them in messages ("prestart").
// In the runtime's namespaces, or with `namespacesOf` in that process's (each one it does not share with
// us: user first, mount last; a pid namespace through one more fork), as runc runs createContainer hooks
// from its init before pivot_root. The hook's path is resolved where the process stands then.
Status runHooks(const std::vector<container::OciHook>& hooks, const std::string& stage,
                const std::string& stateJson, pid_t namespacesOf = 0);

}  // namespace corral::runtime
