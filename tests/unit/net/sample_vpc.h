// The sample VPC of the backends' golden tests (nft_test.cc for nftables, vpc_ovn_test.cc for OVN): two
// subnets, "public" on the default ACL and "private" on "strict", whose deny rule 50 comes before the
// allow rule 100 (added out of number order on purpose: rendering sorts by number), with ephemeral ports
// out; groups "web" (tcp/8080 from the public subnet, ssh from the "admin" group, icmp from anywhere) and
// "admin" (an egress restriction of its own); three NICs, db in the default group.
#pragma once

#include <gtest/gtest.h>

#include <vector>

#include "net/datapath.h"
#include "net/vpc.h"

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net::sample {

inline constexpr int64_t kCreatedAt = 1700000000;

inline void expectOk(const Result<Changeset>& result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
}

inline Topology topology() {
  Topology t;
  expectOk(t.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kCreatedAt));
  expectOk(t.createSubnet({.name = "public", .vpc = "prod", .cidr = "10.0.1.0/24"}, kCreatedAt));
  expectOk(t.createNetworkAcl({.name = "strict", .vpc = "prod"}, kCreatedAt));
  expectOk(t.createSubnet({.name = "private", .vpc = "prod", .cidr = "10.0.2.0/24", .networkAcl = "strict"},
                          kCreatedAt));
  expectOk(t.addNetworkAclRule(
      "strict",
      {.number = 100, .direction = "ingress", .action = "allow", .protocol = "all", .cidr = "10.0.0.0/16"}));
  expectOk(t.addNetworkAclRule("strict", {.number = 50,
                                          .direction = "ingress",
                                          .action = "deny",
                                          .protocol = "tcp",
                                          .fromPort = 22,
                                          .toPort = 22,
                                          .cidr = "10.0.1.0/24"}));
  expectOk(t.addNetworkAclRule("strict", {.number = 100,
                                          .direction = "egress",
                                          .action = "allow",
                                          .protocol = "tcp",
                                          .fromPort = 1024,
                                          .toPort = 65535,
                                          .cidr = "0.0.0.0/0"}));
  expectOk(t.createSecurityGroup({.name = "web", .vpc = "prod", .description = "web servers"}, kCreatedAt));
  expectOk(t.createSecurityGroup({.name = "admin", .vpc = "prod", .description = "bastions"}, kCreatedAt));
  expectOk(t.addSecurityGroupRule(
      "web",
      {.direction = "ingress", .protocol = "tcp", .fromPort = 8080, .toPort = 8080, .cidr = "10.0.1.0/24"}));
  expectOk(t.addSecurityGroupRule(
      "web",
      {.direction = "ingress", .protocol = "tcp", .fromPort = 22, .toPort = 22, .peerGroup = "admin"}));
  expectOk(t.addSecurityGroupRule("web", {.direction = "ingress", .protocol = "icmp", .cidr = "0.0.0.0/0"}));
  expectOk(t.addSecurityGroupRule(
      "admin",
      {.direction = "egress", .protocol = "udp", .fromPort = 5000, .toPort = 5100, .cidr = "10.0.2.0/24"}));
  return t;
}

// web-1 and bastion in "public", db in "private"; `dbIsVm`: db is a VM (its NIC a tap with a guest MAC).
inline std::vector<NicAttachment> nics(bool dbIsVm = false) {
  return {
      {.instance = "web-1", .subnet = "public", .address = "10.0.1.10", .securityGroups = {"web"}},
      {.instance = "bastion", .subnet = "public", .address = "10.0.1.5", .securityGroups = {"admin"}},
      {.instance = "db", .vm = dbIsVm, .subnet = "private", .address = "10.0.2.7", .securityGroups = {}},
  };
}

}  // namespace corral::net::sample
