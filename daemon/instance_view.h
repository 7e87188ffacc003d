// What each way out of corrald shows of an instance (its JSON as InstanceManager renders it) and of a kept
// comparison: env values are masked unless asked for over the socket, and the dashboard, which the
// read-only loopback port serves to any local user, gets only what its page draws. Pure JSON in, JSON out.
#pragma once

#include <nlohmann/json.hpp>

namespace corral::daemon {

// How a masked env entry reads: "DB_PASSWORD=***" (an entry without '=' reads "***").
inline constexpr const char* kMaskedEnvValue = "***";

// The instance with each spec.env entry's value replaced by kMaskedEnvValue; everything else as it is.
nlohmann::json withEnvMasked(nlohmann::json instance);

// The dashboard's view of an instance (its shape: "instances" of GET /v1/dashboard in docs/api.md). No
// spec, env, command line, pid, host path or cgroup.
nlohmann::json dashboardInstance(const nlohmann::json& instance);

// The dashboard's view of the latest comparison (compact form with its "svg"; its shape: "comparison" of
// GET /v1/dashboard in docs/api.md): what the page draws and nothing else a client may have kept in it.
nlohmann::json dashboardComparison(const nlohmann::json& comparison);

}  // namespace corral::daemon
