// OCI hooks run by corral-runtime: each hook's program with the container's state JSON on its stdin,
// killed at its timeout; a failure names the hook ("hooks.prestart[1] \"/bin/x\": exited with status 2").
#pragma once

#include <string>
#include <vector>

#include "container/oci_config.h"
#include "core/error.h"

namespace corral::runtime {

// Runs `hooks` in order in the runtime's namespaces, stopping at the first failure. `stage` names them
// in messages ("prestart").
Status runHooks(const std::vector<container::OciHook>& hooks, const std::string& stage,
                const std::string& stateJson);

}  // namespace corral::runtime
