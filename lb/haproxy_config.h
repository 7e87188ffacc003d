// One load balancer's HAProxy configuration, rendered purely from the model (lb/model.h): a frontend per
// listener (the L7 firewall's deny rules first, then the listener rules by priority, then the default
// action), a backend per target group with health checks, and the admin stats socket corrald reads for
// target health and counters (`admin.sock` in HAProxy's working directory, its run directory: a path of
// any length fits, see startHaproxy). Golden-tested (tests/unit/lb/golden/).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lb/model.h"

namespace corral::lb {

struct HaproxyInputs {
  const LoadBalancer* balancer = nullptr;
  std::map<std::string, const TargetGroup*> groups;    // every group the listeners forward to, by name
  std::vector<std::string> listenAddresses;            // the load balancer's NIC addresses
  std::map<std::string, std::string> targetAddresses;  // instance name -> IPv4 address in the VPC
};

std::string renderHaproxyConfig(const HaproxyInputs& inputs);

// HAProxy proxy names: what the stats socket reports counters under.
std::string frontendName(const Listener& listener);                                   // "listener-80"
std::string targetGroupBackendName(std::string_view group);                           // "tg-web"
std::string firewallBackendName(const Listener& listener, const FirewallRule& rule);  // "deny-80-3"
std::string fixedResponseBackendName(const Listener& listener, int priority);  // "fixed-80-10", 0: default

}  // namespace corral::lb
