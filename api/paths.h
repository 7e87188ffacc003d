// The /v1 path segments beside the object collections (collectionName in api/api.h): what the router
// (api/router.cc) reads and the request renderer (api/request_render.cc) writes.
#pragma once

#include <string_view>

namespace corral::api {

inline constexpr std::string_view kInstances = "instances";
inline constexpr std::string_view kImages = "images";
inline constexpr std::string_view kGroups = "groups";
inline constexpr std::string_view kTrace = "trace";
inline constexpr std::string_view kReach = "reach";
inline constexpr std::string_view kFlowLogs = "flow-logs";
inline constexpr std::string_view kComparisons = "comparisons";
inline constexpr std::string_view kDashboard = "dashboard";
inline constexpr std::string_view kVmSnapshots = "vm-snapshots";
inline constexpr std::string_view kCluster = "cluster";
inline constexpr std::string_view kLoadBalancers = "load-balancers";
inline constexpr std::string_view kTargetGroups = "target-groups";

}  // namespace corral::api
