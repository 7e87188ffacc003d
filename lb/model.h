// The load balancer model (issue 19): load balancers with listeners, listener rules and L7 firewall rules,
// and target groups of instances with health checks. Pure: no kernel, no I/O. Every mutation validates
// against the VPC topology and the instances' placement and names what it touched, so the daemon persists
// exactly that in one transaction. A target group's targets change only through registerTargets and
// deregisterTargets, so an auto scaling group can drive the same calls later.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "net/vpc.h"
#include "schema/load_balancer.h"

namespace corral::lb {

using schema::FirewallRuleSpec;
using schema::HealthCheckSpec;
using schema::ListenerActionSpec;
using schema::ListenerActionType;
using schema::ListenerProtocol;
using schema::ListenerRuleSpec;
using schema::ListenerSpec;
using schema::LoadBalancerSpec;
using schema::LoadBalancerType;
using schema::RequestPart;
using schema::TargetGroupSpec;

// AWS's limits where it has them.
inline constexpr int kMinRulePriority = 1;
inline constexpr int kMaxRulePriority = 50000;
inline constexpr int kMinHealthInterval = 5, kMaxHealthInterval = 300;
inline constexpr int kMinHealthTimeout = 2, kMaxHealthTimeout = 120;
inline constexpr int kMinThreshold = 2, kMaxThreshold = 10;
inline constexpr size_t kMaxPatternLength = 128;
inline constexpr size_t kMaxFixedBodyLength = 1024;

// Which VPCs each instance has a NIC in (instance name -> VPC names); the daemon fills it.
using InstancePlacement = std::map<std::string, std::set<std::string>, std::less<>>;

struct HealthCheck {
  std::string path = "/";
  int intervalSeconds = 10;
  int timeoutSeconds = 5;
  int healthyThreshold = 3;
  int unhealthyThreshold = 3;
  bool operator==(const HealthCheck&) const = default;
};

struct TargetGroup {
  std::string name;
  std::string vpc;
  uint16_t port = 80;
  ListenerProtocol protocol = ListenerProtocol::Http;
  HealthCheck healthCheck;
  std::set<std::string> targets;  // instance names
  int64_t createdAt = 0;
  bool operator==(const TargetGroup&) const = default;
};

struct ListenerAction {
  ListenerActionType type = ListenerActionType::Forward;
  std::string targetGroup;  // forward
  int status = 200;         // fixed-response
  std::string body;
  std::string contentType = "text/plain";
  bool operator==(const ListenerAction&) const = default;
};

// A path is exact ("/health") or a prefix ("/api/*": everything under /api/); so is a host ("*.example.com").
struct Pattern {
  std::string text;  // as given
  bool operator==(const Pattern&) const = default;
  bool isPrefix() const { return !text.empty() && (text.back() == '*' || text.front() == '*'); }
  bool empty() const { return text.empty(); }
  // True when every value this pattern matches is matched by `wider` too (an empty pattern matches all).
  bool coveredBy(const Pattern& wider) const;
};

struct ListenerRule {
  int priority = 0;
  Pattern host;
  Pattern path;
  ListenerAction action;
  bool operator==(const ListenerRule&) const = default;
};

struct FirewallRule {
  int64_t id = 0;  // unique within its listener, never reused: the counter's key
  RequestPart part = RequestPart::Path;
  std::string header;  // header rules
  std::string pattern;
  std::string description;
  bool operator==(const FirewallRule&) const = default;
};

struct Listener {
  uint16_t port = 0;
  ListenerProtocol protocol = ListenerProtocol::Http;
  ListenerAction defaultAction;
  std::vector<ListenerRule> rules;     // by priority
  std::vector<FirewallRule> firewall;  // by id; evaluated before any rule
  int64_t nextFirewallRuleId = 1;
  bool operator==(const Listener&) const = default;
};

// One NIC of a running load balancer: corrald gives it one per subnet, with an address from the subnet's
// IPAM (and a public one when it is internet-facing and the subnet reaches an internet gateway).
struct LoadBalancerNic {
  std::string subnet;
  std::string address;
  std::string publicAddress;  // empty: none
  bool operator==(const LoadBalancerNic&) const = default;
};

struct LoadBalancer {
  std::string name;
  std::string vpc;
  std::vector<std::string> subnets;  // as given
  bool internal = false;
  LoadBalancerType type = LoadBalancerType::Application;
  std::string securityGroup;
  std::vector<Listener> listeners;    // by port
  std::vector<LoadBalancerNic> nics;  // by subnet as in `subnets`; empty until corrald gave it NICs
  int64_t createdAt = 0;
  bool operator==(const LoadBalancer&) const = default;

  const Listener* findListener(uint16_t port) const;
};

// What one mutation touched: objects to write whole and objects to remove.
struct Changes {
  std::vector<std::string> upsertedLoadBalancers;
  std::vector<std::string> deletedLoadBalancers;
  std::vector<std::string> upsertedTargetGroups;
  std::vector<std::string> deletedTargetGroups;
  bool operator==(const Changes&) const = default;
};

class Balancers {
 public:
  Result<Changes> createTargetGroup(const TargetGroupSpec& spec, const net::Topology& topology,
                                    const InstancePlacement& placement, int64_t now);
  // Refused while a listener or rule forwards to it.
  Result<Changes> deleteTargetGroup(std::string_view name);
  // Registering a target that is already there, or deregistering one that is not, is refused by name.
  Result<Changes> registerTargets(std::string_view group, const std::vector<std::string>& instances,
                                  const InstancePlacement& placement);
  Result<Changes> deregisterTargets(std::string_view group, const std::vector<std::string>& instances);
  // An instance going away: removed from every group holding it (nothing to do when none does).
  Changes forgetInstance(std::string_view instance);

  Result<Changes> createLoadBalancer(const LoadBalancerSpec& spec, const net::Topology& topology,
                                     int64_t now);
  Result<Changes> deleteLoadBalancer(std::string_view name);
  // The NICs corrald gave the load balancer (one per subnet, in the order of its subnets).
  Result<Changes> setNics(std::string_view name, std::vector<LoadBalancerNic> nics);

  Result<Changes> addListener(std::string_view balancer, const ListenerSpec& spec);
  Result<Changes> deleteListener(std::string_view balancer, int64_t port);
  Result<Changes> addRule(std::string_view balancer, int64_t port, const ListenerRuleSpec& spec);
  Result<Changes> deleteRule(std::string_view balancer, int64_t port, int64_t priority);
  // On success the new rule is the listener's last firewall rule.
  Result<Changes> addFirewallRule(std::string_view balancer, int64_t port, const FirewallRuleSpec& spec);
  Result<Changes> deleteFirewallRule(std::string_view balancer, int64_t port, int64_t id);

  const LoadBalancer* findLoadBalancer(std::string_view name) const;
  const TargetGroup* findTargetGroup(std::string_view name) const;
  Result<const LoadBalancer*> loadBalancer(std::string_view name) const;
  Result<const TargetGroup*> targetGroup(std::string_view name) const;
  std::vector<const LoadBalancer*> loadBalancers() const;
  std::vector<const TargetGroup*> targetGroups() const;
  // The load balancers that forward to `group` (by name).
  std::vector<std::string> loadBalancersUsing(std::string_view group) const;
  // True when a VPC still holds a load balancer or target group (the VPC cannot be deleted then).
  bool holdsAnything(std::string_view vpc) const;

  // Loading persisted state: inserts without validation (the store wrote only validated objects).
  void insert(LoadBalancer balancer);
  void insert(TargetGroup group);

 private:
  Result<LoadBalancer*> mutableBalancer(std::string_view name);
  Result<Listener*> mutableListener(LoadBalancer& balancer, int64_t port);
  Result<ListenerAction> validateAction(const ListenerActionSpec& spec, const LoadBalancer& balancer,
                                        ListenerProtocol protocol, std::string_view field) const;

  std::map<std::string, LoadBalancer, std::less<>> balancers_;
  std::map<std::string, TargetGroup, std::less<>> groups_;
};

// Pattern checks, shared with the renderer's tests: a path starts with '/', may end in '*', and holds only
// URL characters; a host is a DNS name, optionally starting with "*.".
Result<Pattern> parsePathPattern(std::string_view text, std::string_view field);
Result<Pattern> parseHostPattern(std::string_view text, std::string_view field);

}  // namespace corral::lb
