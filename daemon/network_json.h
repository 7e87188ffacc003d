// The VPC objects as JSON response bodies (GET/POST of /v1/vpcs, /v1/subnets, ...): each object with the
// derived facts a learner wants (a subnet's size, usable addresses, router address, whether it is public).
#pragma once

#include <nlohmann/json.hpp>

#include "net/reach.h"
#include "net/vpc.h"

namespace corral::daemon {

nlohmann::json toJson(const net::Topology& topology, const net::Vpc& vpc);
nlohmann::json toJson(const net::Topology& topology, const net::Subnet& subnet);
nlohmann::json toJson(const net::RouteTable& table);
// The same plus "subnets": the names of the subnets associated with the table (needs the topology).
nlohmann::json toJson(const net::Topology& topology, const net::RouteTable& table);
nlohmann::json toJson(const net::InternetGateway& gateway);
nlohmann::json toJson(const net::NatGateway& gateway);
// With "peer_cidr" and "vpc_cidr" (needs the topology) and "link" (its /30).
nlohmann::json toJson(const net::Topology& topology, const net::Peering& peering);
nlohmann::json toJson(const net::SecurityGroup& group);
nlohmann::json toJson(const net::SecurityGroupRule& rule);
nlohmann::json toJson(const net::NetworkAcl& acl);
nlohmann::json toJson(const net::NetworkAclRule& rule);
// One path of `corral reach` (docs/api.md "Reachability").
nlohmann::json toJson(const net::ReachPath& path);

}  // namespace corral::daemon
