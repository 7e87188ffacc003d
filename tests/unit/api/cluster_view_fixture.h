// One tunnel of a cluster host as GET /v1/cluster/hosts and the views carry it (daemon/cluster_view.h),
// shared by the text view's unit test (topology_render_test.cc) and the dashboard's page test
// (tests/integration/dashboard_test.cc).
#pragma once

#include <fmt/format.h>

#include <nlohmann/json.hpp>

namespace corral::testing {

// A geneve tunnel from the host at `local` to host `remote` at `ip`; `reason` null when it is up.
inline nlohmann::json clusterTunnel(const char* remote, const char* local, const char* ip, const char* state,
                                    nlohmann::json reason) {
  return nlohmann::json{{"port", fmt::format("ovn-{}-0", remote)},
                        {"type", "geneve"},
                        {"remote_host", remote},
                        {"remote_chassis", remote},
                        {"local_ip", local},
                        {"remote_ip", ip},
                        {"state", state},
                        {"reason", std::move(reason)}};
}

}  // namespace corral::testing
