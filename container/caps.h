// Linux capabilities for a container: Docker's default set, adjusted by --cap-add / --cap-drop, and
// dropping to exactly that set in the child (bounding, permitted, effective, inheritable, ambient cleared).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace corral::container {

// CHOWN DAC_OVERRIDE FSETID FOWNER MKNOD NET_RAW SETGID SETUID SETFCAP SETPCAP NET_BIND_SERVICE
// SYS_CHROOT KILL AUDIT_WRITE, as "CAP_CHOWN", ...
std::vector<std::string> dockerDefaultCapabilities();

// Applies adds then drops; names accept "NET_ADMIN", "cap_net_admin" or "CAP_NET_ADMIN"; "ALL" adds or
// drops every capability. Unknown names are InvalidArgument with field "cap_add" / "cap_drop".
Result<std::vector<std::string>> resolveCapabilities(const std::vector<std::string>& add,
                                                     const std::vector<std::string>& drop);

// Every capability the running kernel knows, "CAP_CHOWN" ..., in numeric order.
std::vector<std::string> allCapabilityNames();

// Names → capability numbers, computed in the parent so the child does no lookups.
Result<std::vector<int>> capabilityNumbers(const std::vector<std::string>& names);

// The five sets of an OCI process as numbers (computed in the parent).
struct CapabilityNumbers {
  std::vector<int> bounding, effective, permitted, inheritable, ambient;
};
// In the child, after its user is set (still holding every capability): drops from the bounding set what
// `sets.bounding` lacks, sets effective, permitted and inheritable exactly, then raises the ambient ones.
// Returns 0 or an errno; does not allocate.
int applyCapabilitySetsInChild(const CapabilityNumbers& sets);

// In the child, as root inside its namespaces, before no_new_privs and seccomp: keeps only `keep` in every
// set. Returns 0 or an errno; does not allocate.
int dropCapabilitiesInChild(const std::vector<int>& keep);

}  // namespace corral::container
