// A seeded random sequence of firewall model changes in one VPC (NICs coming and going with random groups,
// public addresses and published ports; security groups and their rules; network ACLs, their entries and
// subnet associations), shared by the delta planner's unit test and its kernel equivalence test
// (tests/integration/net/firewall_delta_test.cc).
#pragma once

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "net/datapath.h"
#include "net/firewall.h"
#include "net/nft.h"
#include "net/vpc.h"

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net::testing {

// VPC "lab" 10.0.0.0/16 with internet gateway lab-igw: subnet "pub" (10.0.1.0/24, public) and "priv"
// (10.0.2.0/24, main route table: isolated).
class FirewallSequence {
 public:
  enum class Step {
    AddNic,
    RemoveNic,
    CreateGroup,
    DeleteGroup,
    AddGroupRule,
    DeleteGroupRule,
    CreateAcl,
    AddAclRule,
    DeleteAclRule,
    AssociateAcl
  };

  explicit FirewallSequence(uint32_t seed) : random_(seed) {
    constexpr int64_t kNow = 1700000000;
    (void)topology_.createVpc({.name = "lab", .cidr = "10.0.0.0/16"}, kNow);
    (void)topology_.createInternetGateway({.name = "lab-igw", .vpc = "lab"}, kNow);
    (void)topology_.createRouteTable({.name = "lab-public", .vpc = "lab"}, kNow);
    (void)topology_.addRoute(
        "lab-public",
        {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "lab-igw"});
    (void)topology_.createSubnet(
        {.name = "pub", .vpc = "lab", .cidr = "10.0.1.0/24", .routeTable = "lab-public"}, kNow);
    (void)topology_.createSubnet({.name = "priv", .vpc = "lab", .cidr = "10.0.2.0/24"}, kNow);
    gateway_ = GatewayPlan{.name = "lab-igw",
                           .vpcLink = "crlgtest0001",
                           .uplinkLink = "crlutest0001",
                           .uplinkNetns = "",
                           .transit = *Cidr::parse("100.64.0.0/30"),
                           .vpcAddress = "100.64.0.2/30",
                           .uplinkAddress = "100.64.0.1/30",
                           .publicAddresses = {}};
  }

  // One random change; returns what kind it was (a change the model refuses still counts: it leaves the
  // model as it was, which the caller's delta must then find empty).
  Step next() {
    const Step step = static_cast<Step>(pick(10));
    constexpr int64_t kNow = 1700000000;
    previous_ = topology_;
    added_.reset();
    removed_.reset();
    switch (step) {
      case Step::AddNic: {
        if (nics_.size() >= 40) return next();
        NicAttachment nic;
        nic.instance = fmt::format("i{}", serial_++);
        nic.subnet = pick(3) == 0 ? "priv" : "pub";
        for (;;) {
          nic.address = fmt::format("{}.{}", nic.subnet == "pub" ? "10.0.1" : "10.0.2", 4 + pick(200));
          if (std::none_of(nics_.begin(), nics_.end(),
                           [&](const auto& n) { return n.address == nic.address; }))
            break;
        }
        for (const SecurityGroup* group : topology_.securityGroups("lab")) {
          if (pick(3) == 0) nic.securityGroups.push_back(group->name);
        }
        if (pick(4) == 0) nic.publicAddress = fmt::format("100.64.128.{}", 1 + serial_ % 250);
        if (pick(4) == 0) {
          nic.publish.push_back(PortForward{.protocol = pick(2) ? Protocol::Tcp : Protocol::Udp,
                                            .outsidePort = static_cast<uint16_t>(10000 + serial_),
                                            .instancePort = static_cast<uint16_t>(80 + pick(3))});
        }
        nic.linkKey = "seq-" + nic.instance;
        nic.vm = pick(5) == 0;
        added_ = nic;
        nics_.push_back(std::move(nic));
        break;
      }
      case Step::RemoveNic:
        if (!nics_.empty()) {
          auto gone = nics_.begin() + pick(nics_.size());
          removed_ = *gone;
          nics_.erase(gone);
        }
        break;
      case Step::CreateGroup:
        (void)topology_.createSecurityGroup({.name = fmt::format("g{}", serial_++), .vpc = "lab"}, kNow);
        break;
      case Step::DeleteGroup: {
        std::vector<const SecurityGroup*> groups = topology_.securityGroups("lab");
        const SecurityGroup* group = groups.at(pick(groups.size()));
        bool used = std::any_of(nics_.begin(), nics_.end(), [&](const NicAttachment& n) {
          return std::find(n.securityGroups.begin(), n.securityGroups.end(), group->name) !=
                 n.securityGroups.end();
        });
        if (!used && !group->isDefault) (void)topology_.deleteSecurityGroup(group->name);
        break;
      }
      case Step::AddGroupRule: {
        std::vector<const SecurityGroup*> groups = topology_.securityGroups("lab");
        const std::string group = groups.at(pick(groups.size()))->name;
        SecurityGroupRuleSpec rule{.direction = pick(2) ? "ingress" : "egress",
                                   .protocol = pick(2) ? "tcp" : "all"};
        if (rule.protocol == "tcp") rule.fromPort = rule.toPort = 1 + pick(1000);
        if (pick(2)) {
          rule.peerGroup = groups.at(pick(groups.size()))->name;
        } else {
          rule.cidr = fmt::format("10.{}.0.0/16", pick(4));
        }
        (void)topology_.addSecurityGroupRule(group, rule);
        break;
      }
      case Step::DeleteGroupRule: {
        std::vector<const SecurityGroup*> groups = topology_.securityGroups("lab");
        const SecurityGroup* group = groups.at(pick(groups.size()));
        if (!group->rules.empty())
          (void)topology_.deleteSecurityGroupRule(group->name, group->rules.at(pick(group->rules.size())).id);
        break;
      }
      case Step::CreateAcl:
        (void)topology_.createNetworkAcl({.name = fmt::format("acl{}", serial_++), .vpc = "lab"}, kNow);
        break;
      case Step::AddAclRule: {
        std::vector<const NetworkAcl*> acls = topology_.networkAcls("lab");
        (void)topology_.addNetworkAclRule(acls.at(pick(acls.size()))->name,
                                          {.number = static_cast<int64_t>(1 + pick(300)),
                                           .direction = pick(2) ? "ingress" : "egress",
                                           .action = pick(2) ? "allow" : "deny",
                                           .cidr = fmt::format("10.0.{}.0/24", pick(4))});
        break;
      }
      case Step::DeleteAclRule: {
        std::vector<const NetworkAcl*> acls = topology_.networkAcls("lab");
        const NetworkAcl* acl = acls.at(pick(acls.size()));
        if (!acl->rules.empty()) {
          const NetworkAclRule& rule = acl->rules.at(pick(acl->rules.size()));
          (void)topology_.deleteNetworkAclRule(acl->name, directionName(rule.direction), rule.number);
        }
        break;
      }
      case Step::AssociateAcl: {
        std::vector<const NetworkAcl*> acls = topology_.networkAcls("lab");
        (void)topology_.updateSubnet(pick(2) ? "pub" : "priv",
                                     {.networkAcl = acls.at(pick(acls.size()))->name});
        break;
      }
    }
    return step;
  }

  NftTable firewall() const { return vpcFirewall(topology_, "lab", nics_, &gateway_); }
  NftTable portGuards() const { return portGuardTable("lab", plansOf(nics_)); }
  // The tables of some NICs alone (the incremental planner's parts).
  NftTable firewallOf(const std::vector<NicAttachment>& nics) const {
    return vpcFirewall(topology_, "lab", nics, &gateway_);
  }
  NftTable portGuardsOf(const std::vector<NicAttachment>& nics) const {
    return portGuardTable("lab", plansOf(nics));
  }
  std::vector<NicPlan> plansOf(const std::vector<NicAttachment>& nics) const {
    std::vector<NicPlan> plans;
    for (const NicAttachment& nic : nics) plans.push_back(planNic(*topology_.findSubnet(nic.subnet), nic));
    return plans;
  }
  const std::vector<NicAttachment>& nics() const { return nics_; }
  const Topology& topology() const { return topology_; }
  // The model before the last step, and the NIC it added or removed (if it was such a step).
  const Topology& previousTopology() const { return previous_; }
  const std::optional<NicAttachment>& added() const { return added_; }
  const std::optional<NicAttachment>& removed() const { return removed_; }
  const GatewayPlan& gateway() const { return gateway_; }
  std::vector<std::string> links() const {
    std::vector<std::string> links;
    for (const NicAttachment& nic : nics_) {
      links.push_back(planNic(*topology_.findSubnet(nic.subnet), nic).link);
    }
    return links;
  }

 private:
  size_t pick(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(random_); }

  std::mt19937 random_;
  Topology topology_;
  Topology previous_;
  std::optional<NicAttachment> added_;
  std::optional<NicAttachment> removed_;
  GatewayPlan gateway_;
  std::vector<NicAttachment> nics_;
  uint32_t serial_ = 0;
};

}  // namespace corral::net::testing

#pragma GCC diagnostic pop
