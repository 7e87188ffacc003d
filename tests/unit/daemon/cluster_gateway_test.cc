// The gateway settings every host of a cluster must share (daemon/cluster.h GatewaySettings): equal ones
// pass, the first option that differs is a Conflict naming it, and the record in etcd and member.json
// reads back as written.
#include <gtest/gtest.h>

#include "daemon/cluster.h"

namespace corral::daemon {
namespace {

const GatewaySettings kCluster{.ovnGatewayChassis = "h1",
                               .ovnOutsideNetwork = "corral-uplink",
                               .transitCidr = "100.64.0.0/17",
                               .publicCidr = "100.64.128.0/17"};

TEST(ClusterGatewaySettings, TheSameSettingsAgree) {
  EXPECT_TRUE(checkGatewaySettings(kCluster, kCluster));
  EXPECT_TRUE(checkGatewaySettings(GatewaySettings{}, GatewaySettings{}));
}

TEST(ClusterGatewaySettings, TheFirstOptionThatDiffersIsNamed) {
  GatewaySettings here = kCluster;
  here.ovnGatewayChassis = "h3";
  here.transitCidr = "100.65.0.0/17";
  Status refused = checkGatewaySettings(here, kCluster);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind(), ErrorKind::Conflict);
  EXPECT_EQ(refused.error().field(), "ovn-gateway-chassis");
  EXPECT_NE(refused.error().message().find("--ovn-gateway-chassis is \"h3\" on this host but \"h1\" in the "
                                           "cluster"),
            std::string::npos)
      << refused.error().message();

  here.ovnGatewayChassis = "h1";
  refused = checkGatewaySettings(here, kCluster);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "transit-cidr");
}

TEST(ClusterGatewaySettings, AHostWithoutAGatewayDiffersFromOneWith) {
  GatewaySettings here = kCluster;
  here.ovnGatewayChassis.clear();
  here.ovnOutsideNetwork.clear();
  Status refused = checkGatewaySettings(here, kCluster);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "ovn-gateway-chassis");
  EXPECT_NE(refused.error().message().find("is not given on this host but \"h1\""), std::string::npos)
      << refused.error().message();
  refused = checkGatewaySettings(kCluster, here);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("is \"h1\" on this host but not given in the cluster"),
            std::string::npos)
      << refused.error().message();
}

TEST(ClusterGatewaySettings, TheRecordReadsBackAsWritten) {
  EXPECT_EQ(gatewayFromJson(gatewayJson(kCluster)), kCluster);
  EXPECT_EQ(
      gatewayJson(kCluster).dump(),
      R"({"ovn_gateway_chassis":"h1","ovn_outside_network":"corral-uplink","public_cidr":"100.64.128.0/17",)"
      R"("transit_cidr":"100.64.0.0/17"})");
  EXPECT_EQ(gatewayFromJson(nlohmann::json("not an object")), GatewaySettings{});
}

}  // namespace
}  // namespace corral::daemon
