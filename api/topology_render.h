// `corral net show`'s pictures of a VPC topology (the GET /v1/vpcs/NAME/topology answer, docs/api.md):
// a text tree in the building metaphor with the kernel names behind each part, Graphviz DOT, and a
// self-drawn SVG. Pure: JSON in, text out; absent or null fields are drawn as absent, never thrown on.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace corral::api {

// The tree a learner reads: VPC → subnets → instances, then route tables with the rules and kernel routes
// they became, the gateways, the guards, and a kernel check that marks model objects the kernel lacks
// ("MISSING") or holds differently ("WRONG"), and corral links the model does not know ("EXTRA").
std::string renderTopologyText(const nlohmann::json& topology);

// Graphviz DOT (`dot -Tsvg`): a cluster for the VPC and one per subnet, instance nodes (box3d for VMs,
// component for containers), the VPC router, the gateways and the internet, edges labelled with
// addresses and routes.
std::string renderTopologyDot(const nlohmann::json& topology);

// A standalone SVG document laid out deterministically: the VPC as a building, subnets as stacked floors
// with their instances, the router on the side, the internet gateway as the front door to the internet,
// and a legend. All text is XML-escaped.
std::string renderTopologySvg(const nlohmann::json& topology);

}  // namespace corral::api
