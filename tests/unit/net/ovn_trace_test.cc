// The legs handed to ovn-trace and the reading of its --detailed output (net/ovn_trace.h). The outputs below
// are ovn-trace 23.03's, from a router between two switches with a port group's allow-related ACL for tcp/80
// and a drop below it.
#include "net/ovn_trace.h"

#include <gtest/gtest.h>

#include "net/datapath.h"

namespace corral::net {
namespace {

const OvnTraceEnd kWeb{
    .instance = "web-1", .vm = false, .vpc = "prod", .subnet = "front", .address = "10.0.1.5"};
const OvnTraceEnd kDb{.instance = "db-1", .vm = true, .vpc = "prod", .subnet = "back", .address = "10.0.2.5"};
const OvnTraceEnd kApi{
    .instance = "api-1", .vm = false, .vpc = "prod", .subnet = "front", .address = "10.0.1.6"};

TEST(OvnTrace, TcpIsANewConnectionAndItsReplyRoutedThroughTheSourceFloorsRouterPort) {
  std::vector<OvnTraceLeg> legs = ovnTraceLegs(kWeb, kDb, schema::Protocol::Tcp, 5432);
  ASSERT_EQ(legs.size(), 2u);
  const OvnTraceLeg& forward = legs[0];
  EXPECT_EQ(forward.name, "forward");
  EXPECT_EQ(forward.expectedPort, "corral.nic.db-1");
  ASSERT_GE(forward.args.size(), 3u);
  EXPECT_EQ(forward.args.front(), "--detailed");
  EXPECT_EQ(forward.args[1], "--ct=new,trk");
  EXPECT_EQ(forward.args[forward.args.size() - 2], "corral.subnet.front");
  EXPECT_EQ(
      forward.args.back(),
      "inport == \"corral.nic.web-1\" && eth.src == " + instanceMac("web-1", false) +
          " && eth.dst == " + subnetBridgeMac(subnetBridgeName("prod", "front")) +
          " && ip4.src == 10.0.1.5 && ip4.dst == 10.0.2.5 && ip.ttl == 64 && tcp && tcp.src == 40000 && "
          "tcp.dst == 5432");
  const OvnTraceLeg& reply = legs[1];
  EXPECT_EQ(reply.name, "reply");
  EXPECT_EQ(reply.expectedPort, "corral.nic.web-1");
  EXPECT_EQ(reply.args[1], "--ct=est,rpl,trk");
  EXPECT_EQ(reply.args[reply.args.size() - 2], "corral.subnet.back");
  EXPECT_EQ(reply.args.back(),
            "inport == \"corral.nic.db-1\" && eth.src == " + instanceMac("db-1", true) +
                " && eth.dst == " + subnetBridgeMac(subnetBridgeName("prod", "back")) +
                " && ip4.src == 10.0.2.5 && ip4.dst == 10.0.1.5 && ip.ttl == 64 && tcp && tcp.src == 5432 && "
                "tcp.dst == 40000");
}

TEST(OvnTrace, OneFloorIsAddressedToTheDestinationItselfUdpIsOneWayIcmpAnEchoAndItsReply) {
  std::vector<OvnTraceLeg> udp = ovnTraceLegs(kWeb, kApi, schema::Protocol::Udp, 53);
  ASSERT_EQ(udp.size(), 1u);
  EXPECT_NE(udp[0].args.back().find("eth.dst == " + instanceMac("api-1", false)), std::string::npos)
      << udp[0].args.back();
  EXPECT_NE(udp[0].args.back().find("udp.dst == 53"), std::string::npos);
  std::vector<OvnTraceLeg> icmp = ovnTraceLegs(kWeb, kApi, schema::Protocol::Icmp, std::nullopt);
  ASSERT_EQ(icmp.size(), 2u);
  EXPECT_NE(icmp[0].args.back().find("icmp4.type == 8"), std::string::npos);
  EXPECT_NE(icmp[1].args.back().find("icmp4.type == 0"), std::string::npos);
}

TEST(OvnTrace, DeliveredDroppedAndGoingNowhereAreTold) {
  const std::string delivered = R"(# tcp,reg14=0x2,dl_src=0a:00:00:00:00:01,nw_dst=10.0.2.5,tp_dst=80
ingress(dp="sa", inport="p1")
-----------------------------
 25. ls_in_l2_lkup (northd.c:9122): eth.dst == 02:00:00:00:01:01, priority 50, uuid fc5d5c3d
    outport = "sa-r";
    output;
    /* output to "sa-r", type "patch" */

egress(dp="sb", inport="sb-r", outport="p2")
--------------------------------------------
 9. ls_out_apply_port_sec (northd.c:5777): 1, priority 0, uuid efe38cf0
    output;
    /* output to "p2", type "" */
)";
  OvnTraceOutcome reached = readOvnTrace(delivered, "p2");
  EXPECT_TRUE(reached.delivered);
  EXPECT_EQ(reached.detail, "output to p2");

  const std::string blocked = R"(egress(dp="sa", inport="p1", outport="sa-r")
 0. ls_out_pre_acl (northd.c:5924): ip, priority 100, uuid e77c4859
    /* output to "sa-r", type "patch" */
ct_next(ct_state=new|trk)
-------------------------
 3. ls_out_acl_hint (northd.c:6190): ct.new && !ct.est, priority 7, uuid bfaeda61
    reg0[7] = 1;
    next;
 4. ls_out_acl (northd.c:6543): reg0[9] == 1 && (outport == @pg2 && ip4), priority 2000, uuid 0835dccc
    drop;
)";
  OvnTraceOutcome dropped = readOvnTrace(blocked, "p2");
  EXPECT_FALSE(dropped.delivered);
  EXPECT_EQ(dropped.detail,
            "dropped at ls_out_acl (priority 2000): reg0[9] == 1 && (outport == @pg2 && ip4)");

  OvnTraceOutcome wrongPort = readOvnTrace("    /* output to \"sa-r\", type \"patch\" */\n", "p2");
  EXPECT_FALSE(wrongPort.delivered);
  EXPECT_EQ(wrongPort.detail, "output to sa-r, never to p2");
  OvnTraceOutcome nothing = readOvnTrace("# tcp,reg14=0x2\n", "p2");
  EXPECT_FALSE(nothing.delivered);
  EXPECT_EQ(nothing.detail, "no logical flow outputs it (never to p2)");
}

}  // namespace
}  // namespace corral::net
