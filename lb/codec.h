// Load balancers and target groups as JSON: the shape the API returns (docs/api.md, "Load balancers") and
// the store keeps. Reading checks every field's type and value, naming the field: a stored document that
// corral did not write is refused, not half-loaded.
#pragma once

#include <nlohmann/json.hpp>

#include "core/error.h"
#include "lb/model.h"

namespace corral::lb {

nlohmann::json toJson(const TargetGroup& group);
nlohmann::json toJson(const LoadBalancer& balancer);
Result<TargetGroup> targetGroupFromJson(const nlohmann::json& json);
Result<LoadBalancer> loadBalancerFromJson(const nlohmann::json& json);

}  // namespace corral::lb
