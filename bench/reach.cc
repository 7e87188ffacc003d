// bench_reach: how long the reachability analyzer (net/reach.h) takes on a VPC of 50 instances and 200
// rules (issue 18's target: <= 50 ms per `corral reach`). Pure: the model in memory, no daemon, no kernel.
//   bench_reach [--rounds N]     (default 200)
#include "net/reach.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace {

using namespace corral::net;
using Clock = std::chrono::steady_clock;

constexpr int64_t kNow = 1700000000;
constexpr int kInstances = 50;
constexpr int kGroups = 5;
constexpr int kRulesPerGroup = 30;  // 150 security group rules
constexpr int kAclRules = 25;       // per direction, the catch-all included: 50 network ACL rules

void must(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "bench_reach: setting up: %s failed\n", what.c_str());
    std::exit(1);
  }
}

// VPC "bench" 10.0.0.0/16: floors pub (igw), app (nat), db (isolated); 50 instances spread over them,
// 5 groups of 30 rules (peer groups and CIDRs) and one ACL of 25 rules each way on app: 200 rules.
Topology buildTopology(std::vector<NicAttachment>& nics) {
  Topology t;
  must(t.createVpc({.name = "bench", .cidr = "10.0.0.0/16"}, kNow).has_value(), "vpc");
  must(t.createInternetGateway({.name = "igw", .vpc = "bench"}, kNow).has_value(), "igw");
  must(t.createRouteTable({.name = "public", .vpc = "bench"}, kNow).has_value(), "table public");
  must(t.createRouteTable({.name = "private", .vpc = "bench"}, kNow).has_value(), "table private");
  must(t.addRoute("public",
                  {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "igw"})
           .has_value(),
       "route public");
  const char* floors[] = {"pub", "app", "db"};
  const char* tables[] = {"public", "private", ""};
  for (int i = 0; i < 3; ++i) {
    must(t.createSubnet({.name = floors[i],
                         .vpc = "bench",
                         .cidr = fmt::format("10.0.{}.0/24", i + 1),
                         .routeTable = tables[i]},
                        kNow)
             .has_value(),
         floors[i]);
  }
  must(t.createNatGateway({.name = "nat", .subnet = "pub"}, kNow).has_value(), "nat");
  must(t.addRoute("private", {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "nat"})
           .has_value(),
       "route private");
  int rules = 0;
  for (int g = 0; g < kGroups; ++g) {
    must(t.createSecurityGroup({.name = fmt::format("g{}", g), .vpc = "bench"}, kNow).has_value(), "group");
  }
  for (int g = 0; g < kGroups; ++g) {
    const std::string group = fmt::format("g{}", g);
    ++rules;  // its allow-all egress
    for (int r = 1; r < kRulesPerGroup; ++r) {
      SecurityGroupRuleSpec rule{.direction = "ingress", .protocol = r % 3 == 0 ? "udp" : "tcp"};
      rule.fromPort = 1000 + r * 10;
      rule.toPort = 1000 + r * 10 + 5;
      if (r % 4 == 0) {
        rule.peerGroup = fmt::format("g{}", (g + 1) % kGroups);
      } else {
        rule.cidr = fmt::format("10.0.{}.{}/32", 1 + r % 3, 10 + r);
      }
      must(t.addSecurityGroupRule(group, rule).has_value(), group + " rule");
      ++rules;
    }
  }
  {
    must(t.createNetworkAcl({.name = "acl-app", .vpc = "bench"}, kNow).has_value(), "acl");
    for (const char* direction : {"ingress", "egress"}) {
      for (int r = 1; r < kAclRules; ++r) {
        NetworkAclRuleSpec rule{.number = r * 10,
                                .direction = direction,
                                .action = r % 5 == 0 ? "deny" : "allow",
                                .protocol = "tcp"};
        rule.fromPort = 2000 + r;
        rule.toPort = 2000 + r;
        rule.cidr = fmt::format("10.0.{}.0/24", 1 + r % 3);
        must(t.addNetworkAclRule("acl-app", rule).has_value(), "acl rule");
        ++rules;
      }
      must(t.addNetworkAclRule("acl-app", {.number = 1000, .direction = direction, .action = "allow"})
               .has_value(),
           "acl catch-all");
      ++rules;
    }
    must(t.updateSubnet("app", {.networkAcl = "acl-app"}).has_value(), "acl on app");
  }
  for (int i = 0; i < kInstances; ++i) {
    const int floor = i % 3;
    nics.push_back(NicAttachment{.instance = fmt::format("i{:02}", i),
                                 .subnet = floors[floor],
                                 .address = fmt::format("10.0.{}.{}", floor + 1, 10 + i),
                                 .securityGroups = {fmt::format("g{}", i % kGroups)}});
  }
  std::printf("vpc bench: 3 subnets, %d instances, %d rules (%d security group, %d network ACL)\n",
              kInstances, rules, kGroups * kRulesPerGroup, rules - kGroups * kRulesPerGroup);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 200;
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], "--rounds") == 0) rounds = std::max(1, std::atoi(argv[i + 1]));
  }
  std::vector<NicAttachment> nics;
  const Topology topology = buildTopology(nics);
  struct Case {
    const char* label;
    const char* source;
    const char* destination;
    const char* protocol;
    std::optional<int64_t> port;
  };
  const Case cases[] = {
      {"instance -> instance, across floors", "i00", "i01", "tcp", 1010},
      {"instance -> internet", "i01", "internet", "tcp", 443},
      {"internet -> instance", "internet", "i00", "tcp", 80},
      {"subnet -> instance (17 paths)", "pub", "i02", "tcp", 1040},
  };
  std::printf("%-40s %10s %10s %10s\n", "query", "median", "p99", "max");
  double worst = 0;
  for (const Case& c : cases) {
    auto query = makeReachQuery(c.source, c.destination, c.protocol, c.port);
    if (!query) {
      std::fprintf(stderr, "bench_reach: %s\n", query.error().message().c_str());
      return 1;
    }
    std::vector<double> ms;
    for (int r = 0; r < rounds; ++r) {
      const auto start = Clock::now();
      auto paths = analyzeReach(topology, nics, *query);
      const auto took = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (!paths) {
        std::fprintf(stderr, "bench_reach: %s\n", paths.error().message().c_str());
        return 1;
      }
      ms.push_back(took);
    }
    std::sort(ms.begin(), ms.end());
    const double median = ms[ms.size() / 2], p99 = ms[ms.size() * 99 / 100], max = ms.back();
    worst = std::max(worst, max);
    std::printf("%-40s %8.3f ms %7.3f ms %7.3f ms\n", c.label, median, p99, max);
  }
  std::printf("slowest single analysis %.3f ms (target <= 50 ms: %s)\n", worst,
              worst <= 50 ? "met" : "missed");
  return 0;
}
