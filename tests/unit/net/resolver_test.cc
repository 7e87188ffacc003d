// The VPC resolver's plan and dnsmasq files, purely: which .2 addresses forward outside names and which
// refuse them, the names it knows, and the configuration text.
#include "net/resolver.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

// Specs are written with designated initializers that leave the other fields at their defaults on purpose.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

constexpr int64_t kNow = 1700000000;

template <class T>
T ok(Result<T> result) {
  EXPECT_TRUE(result.has_value()) << result.error().message();
  return std::move(result).value();
}

// prod: a public subnet (IGW), a private one with a NAT gateway, an isolated one; other: one subnet.
Topology threeKinds() {
  Topology t;
  ok(t.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
  ok(t.createRouteTable({.name = "public-rt", .vpc = "prod"}, kNow));
  ok(t.createRouteTable({.name = "private-rt", .vpc = "prod"}, kNow));
  ok(t.createSubnet({.name = "a-public", .vpc = "prod", .cidr = "10.0.1.0/24", .routeTable = "public-rt"},
                    kNow));
  ok(t.createSubnet({.name = "b-private", .vpc = "prod", .cidr = "10.0.2.0/24", .routeTable = "private-rt"},
                    kNow));
  ok(t.createSubnet({.name = "c-isolated", .vpc = "prod", .cidr = "10.0.3.0/24"}, kNow));
  ok(t.createInternetGateway({.name = "igw", .vpc = "prod"}, kNow));
  ok(t.createNatGateway({.name = "nat", .subnet = "a-public"}, kNow));
  ok(t.addRoute("public-rt",
                {.destination = "0.0.0.0/0", .targetType = "internet_gateway", .targetName = "igw"}));
  ok(t.addRoute("private-rt",
                {.destination = "0.0.0.0/0", .targetType = "nat_gateway", .targetName = "nat"}));
  ok(t.createVpc({.name = "other", .cidr = "10.1.0.0/16"}, kNow));
  ok(t.createSubnet({.name = "other-net", .vpc = "other", .cidr = "10.1.1.0/24"}, kNow));
  return t;
}

std::vector<NicAttachment> nics() {
  return {{.instance = "web-1", .subnet = "a-public", .address = "10.0.1.10"},
          {.instance = "db", .vm = true, .subnet = "c-isolated", .address = "10.0.3.7"},
          {.instance = "stranger", .subnet = "other-net", .address = "10.1.1.5"}};
}

TEST(Resolver, AnswersOnEachSubnetsSecondAddressSplitByWhetherItReachesTheInternet) {
  EXPECT_EQ(resolverAddress(*Cidr::parse("10.0.1.0/24")).str(), "10.0.1.2");
  EXPECT_EQ(resolverAddress(*Cidr::parse("172.16.0.16/28")).str(), "172.16.0.18");
  ResolverPlan plan = planResolver(threeKinds(), "prod", "corral-t7-", nics());
  EXPECT_EQ(plan.netns, "corral-t7-vpc-prod");
  EXPECT_EQ(plan.domain, "prod.internal");
  EXPECT_EQ(plan.forwardingListen, (std::vector<std::string>{"10.0.1.2", "10.0.2.2"}));
  EXPECT_EQ(plan.localListen, (std::vector<std::string>{"10.0.3.2"}));
  EXPECT_EQ(plan.upstreamSource, "10.0.1.2");
  // Only this VPC's instances, by name.
  EXPECT_EQ(plan.hosts, (std::vector<ResolverHost>{{"10.0.3.7", "db"}, {"10.0.1.10", "web-1"}}));
  EXPECT_EQ(resolverHostText(plan.hosts[0], plan.domain), "10.0.3.7\tdb.prod.internal db\n");
  EXPECT_EQ(resolverHostText(plan.hosts[1], plan.domain), "10.0.1.10\tweb-1.prod.internal web-1\n");
}

TEST(Resolver, ARouteChangeMovesASubnetBetweenTheResolvers) {
  Topology t = threeKinds();
  ok(t.deleteRoute("private-rt", "0.0.0.0/0"));
  ResolverPlan plan = planResolver(t, "prod", "corral-", nics());
  EXPECT_EQ(plan.forwardingListen, (std::vector<std::string>{"10.0.1.2"}));
  EXPECT_EQ(plan.localListen, (std::vector<std::string>{"10.0.2.2", "10.0.3.2"}));

  ResolverPlan other = planResolver(t, "other", "corral-", nics());
  EXPECT_TRUE(other.forwardingListen.empty());
  EXPECT_EQ(other.upstreamSource, "");
  EXPECT_EQ(other.hosts, (std::vector<ResolverHost>{{"10.1.1.5", "stranger"}}));
}

TEST(Resolver, ForwardingConfigSendsOutsideNamesUpstreamFromAPublicSubnet) {
  ResolverPlan plan = planResolver(threeKinds(), "prod", "corral-", nics());
  const ResolverFiles files{.hostsDir = "/run/corral/resolvers/corral-/prod/hosts.d"};
  auto forwarding = dnsmasqConfig(plan, ResolverRole::forwarding, "198.51.100.53", files);
  ASSERT_TRUE(forwarding.has_value());
  for (const char* line :
       {"\nno-hosts\n", "\nno-resolv\n", "\nbind-dynamic\n", "\nlisten-address=10.0.1.2\n",
        "\nlisten-address=10.0.2.2\n", "\nhostsdir=/run/corral/resolvers/corral-/prod/hosts.d\n",
        "\nlocal=/prod.internal/\n", "\nbogus-priv\n", "\nserver=198.51.100.53@10.0.1.2\n"}) {
    EXPECT_NE(forwarding->find(line), std::string::npos) << line << " in\n" << *forwarding;
  }
  EXPECT_EQ(forwarding->find("10.0.3.2"), std::string::npos) << "the isolated subnet is the local one's";

  auto local = dnsmasqConfig(plan, ResolverRole::local, "198.51.100.53", files);
  ASSERT_TRUE(local.has_value());
  EXPECT_NE(local->find("\nlisten-address=10.0.3.2\n"), std::string::npos) << *local;
  EXPECT_EQ(local->find("server="), std::string::npos) << "an isolated subnet's resolver forwards nothing";

  // No upstream known: the forwarding role refuses too.
  auto noUpstream = dnsmasqConfig(plan, ResolverRole::forwarding, std::nullopt, files);
  ASSERT_TRUE(noUpstream.has_value());
  EXPECT_EQ(noUpstream->find("server="), std::string::npos);
  // A VPC without isolated subnets has no local resolver.
  EXPECT_FALSE(dnsmasqConfig(planResolver(threeKinds(), "other", "corral-", {}), ResolverRole::forwarding,
                             "198.51.100.53", files)
                   .has_value());
}

}  // namespace
}  // namespace corral::net
