// The load balancer vocabulary a request carries (issue 19): load balancers, listeners and their rules,
// target groups, and the L7 firewall's rules. Raw values: the load balancer model (lb/model.h) validates
// them against the VPC topology, naming the field. Pure and shared by corrald, the CLI and the API codec.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace corral::schema {

enum class LoadBalancerType { Application, Network };
enum class ListenerProtocol { Http, Tcp };
enum class ListenerActionType { Forward, FixedResponse };
// What an L7 firewall rule reads from the request.
enum class RequestPart { Path, Method, Header, Body };

std::string_view loadBalancerTypeName(LoadBalancerType t);      // "application", "network"
std::string_view listenerProtocolName(ListenerProtocol p);      // "http", "tcp"
std::string_view listenerActionTypeName(ListenerActionType a);  // "forward", "fixed-response"
std::string_view requestPartName(RequestPart p);                // "path", "method", "header", "body"
Result<LoadBalancerType> parseLoadBalancerType(std::string_view text, std::string_view field);
Result<ListenerProtocol> parseListenerProtocol(std::string_view text, std::string_view field);
Result<ListenerActionType> parseListenerActionType(std::string_view text, std::string_view field);
Result<RequestPart> parseRequestPart(std::string_view text, std::string_view field);

struct LoadBalancerSpec {
  std::string name;
  std::string vpc;
  std::vector<std::string> subnets;  // one NIC in each; at most one subnet per availability zone
  bool internal = false;             // false: internet-facing (an address at the internet gateway)
  std::string type = "application";
  std::string securityGroup;  // empty: the VPC's default group
  bool operator==(const LoadBalancerSpec&) const = default;
};

// Numbers are wide integers so that 70000 or -1 arrive here and are refused by name, not wrapped.
struct HealthCheckSpec {
  std::string path = "/";  // http target groups: GET path, healthy on 2xx/3xx
  std::optional<int64_t> intervalSeconds;
  std::optional<int64_t> timeoutSeconds;
  std::optional<int64_t> healthyThreshold;    // consecutive passes before a target is healthy again
  std::optional<int64_t> unhealthyThreshold;  // consecutive failures before it is taken out
  bool operator==(const HealthCheckSpec&) const = default;
};

struct TargetGroupSpec {
  std::string name;
  std::string vpc;
  std::optional<int64_t> port;  // the targets' port; default 80
  std::string protocol = "http";
  HealthCheckSpec healthCheck;
  std::vector<std::string> targets;  // instance names
  bool operator==(const TargetGroupSpec&) const = default;
};

struct ListenerActionSpec {
  std::string type = "forward";
  std::string targetGroup;                 // forward
  std::optional<int64_t> status;           // fixed-response; default 200
  std::string body;                        // fixed-response
  std::string contentType = "text/plain";  // fixed-response
  bool operator==(const ListenerActionSpec&) const = default;
};

struct ListenerSpec {
  std::optional<int64_t> port;
  std::string protocol = "http";
  ListenerActionSpec defaultAction;
  bool operator==(const ListenerSpec&) const = default;
};

// A rule on an application listener: the request's Host header and path, each optional (not both empty).
// A path pattern is exact ("/health") or a prefix ending in '*' ("/api/*"); a host is exact or "*.domain".
struct ListenerRuleSpec {
  std::optional<int64_t> priority;  // 1-50000, lower first
  std::string host;
  std::string path;
  ListenerActionSpec action;
  bool operator==(const ListenerRuleSpec&) const = default;
};

// An L7 firewall rule on an application listener: requests whose `part` matches are answered 403.
// path: a pattern as in a listener rule; method: exact ("DELETE"); header and body: `pattern` is a
// substring to look for (`~`), the header named by `header` (case-insensitive).
struct FirewallRuleSpec {
  std::string part;
  std::string header;
  std::string pattern;
  std::string description;
  bool operator==(const FirewallRuleSpec&) const = default;
};

}  // namespace corral::schema
