// A host's chassis and tunnels from its Open_vSwitch database (net/ovs_tunnels.h): the one read's results as
// ovsdb-server answers them decoded (only br-int's tunnel-typed interfaces, the chassis from the Port's
// ovn-chassis-id, link_state and BFD), and the published JSON form both ways with errors naming the field.
#include "net/ovs_tunnels.h"

#include <gtest/gtest.h>

namespace corral::net {
namespace {

using ovsdb::Json;

Json rows(Json list) {
  return Json{{"rows", std::move(list)}};
}

// What ovsdb-server answers for ovsChassisReadOperations() on host h1 of ovn_cluster.sh: two tunnels on
// br-int (one to h3 with link_state down), an instance port, and a geneve interface on another bridge.
std::vector<Json> h1Results() {
  return {
      rows(Json::array({{{"external_ids", ovsdb::map({{"system-id", "h1"},
                                                      {"ovn-encap-type", "geneve"},
                                                      {"ovn-encap-ip", "10.250.0.1"},
                                                      {"ovn-remote", "unix:/tmp/sb.sock"}})}}})),
      rows(Json::array(
          {{{"ports", ovsdb::set({ovsdb::uuid("p-h2"), ovsdb::uuid("p-h3"), ovsdb::uuid("p-nic")})}}})),
      rows(Json::array({
          {{"_uuid", ovsdb::uuid("p-h2")},
           {"name", "ovn-h2-0"},
           {"external_ids", ovsdb::map({{"ovn-chassis-id", "h2@10.250.0.2"}})}},
          {{"_uuid", ovsdb::uuid("p-h3")},
           {"name", "ovn-h3-0"},
           {"external_ids", ovsdb::map({{"ovn-chassis-id", "h3"}})}},
          {{"_uuid", ovsdb::uuid("p-nic")}, {"name", "crlv1"}, {"external_ids", ovsdb::map({})}},
          {{"_uuid", ovsdb::uuid("p-other")}, {"name", "stray"}, {"external_ids", ovsdb::map({})}},
      })),
      rows(Json::array({
          {{"name", "ovn-h3-0"},
           {"type", "geneve"},
           {"options", ovsdb::map({{"remote_ip", "10.250.0.3"}, {"key", "flow"}, {"csum", "true"}})},
           {"link_state", "down"},
           {"bfd_status", ovsdb::map({})}},
          {{"name", "ovn-h2-0"},
           {"type", "geneve"},
           {"options", ovsdb::map({{"remote_ip", "10.250.0.2"}, {"key", "flow"}})},
           {"link_state", ovsdb::set({})},
           {"bfd_status", ovsdb::map({{"state", "up"}, {"forwarding", "true"}})}},
          {{"name", "crlv1"},
           {"type", "internal"},
           {"options", ovsdb::map({})},
           {"link_state", "up"},
           {"bfd_status", ovsdb::map({})}},
          {{"name", "stray"},
           {"type", "geneve"},
           {"options", ovsdb::map({{"remote_ip", "10.9.9.9"}})},
           {"link_state", "up"},
           {"bfd_status", ovsdb::map({})}},
      })),
  };
}

TEST(OvsTunnelsTest, ReadsTheChassisAndBrIntsTunnels) {
  auto chassis = decodeOvsChassis(h1Results());
  ASSERT_TRUE(chassis) << chassis.error().message();
  EXPECT_EQ(chassis->chassis, "h1");
  EXPECT_EQ(chassis->encapType, "geneve");
  EXPECT_EQ(chassis->encapIp, "10.250.0.1");
  ASSERT_EQ(chassis->tunnels.size(), 2u) << "only br-int's tunnel interfaces";
  EXPECT_EQ(chassis->tunnels[0], (OvsTunnel{.port = "ovn-h2-0",
                                            .type = "geneve",
                                            .remoteChassis = "h2",
                                            .remoteIp = "10.250.0.2",
                                            .localIp = "",
                                            .linkState = "",
                                            .bfdState = "up"}));
  EXPECT_EQ(chassis->tunnels[1].remoteChassis, "h3");
  EXPECT_EQ(chassis->tunnels[1].linkState, "down");
  EXPECT_EQ(chassis->tunnels[1].bfdState, "");
}

TEST(OvsTunnelsTest, NoBrIntYetIsNoTunnels) {
  std::vector<Json> results = h1Results();
  results[1] = rows(Json::array());
  auto chassis = decodeOvsChassis(results);
  ASSERT_TRUE(chassis) << chassis.error().message();
  EXPECT_EQ(chassis->chassis, "h1");
  EXPECT_TRUE(chassis->tunnels.empty());
  EXPECT_FALSE(decodeOvsChassis({rows(Json::array())}));
}

TEST(OvsTunnelsTest, TheReadIsOneTransactionOfFourSelects) {
  const std::vector<Json> operations = ovsChassisReadOperations();
  ASSERT_EQ(operations.size(), 4u);
  for (const Json& operation : operations) EXPECT_EQ(operation["op"], "select");
  EXPECT_EQ(operations[1]["where"][0], ovsdb::condition("name", "==", "br-int"));
}

TEST(OvsTunnelsTest, PublishedFormRoundTripsAndNamesBadFields) {
  auto chassis = decodeOvsChassis(h1Results());
  ASSERT_TRUE(chassis);
  const nlohmann::json published = toJson(*chassis);
  EXPECT_EQ(published["tunnels"][1]["remote_ip"], "10.250.0.3");
  auto back = ovsChassisFromJson(published);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(*back, *chassis);

  nlohmann::json bad = published;
  bad["tunnels"][1]["remote_ip"] = 7;
  auto refused = ovsChassisFromJson(bad);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "tunnels[1].remote_ip");
  bad = published;
  bad["tunnels"] = "none";
  ASSERT_FALSE(ovsChassisFromJson(bad));
  EXPECT_EQ(ovsChassisFromJson(bad).error().field(), "tunnels");
  EXPECT_EQ(ovsChassisFromJson(nlohmann::json{{"chassis", 1}}).error().field(), "chassis");
  EXPECT_FALSE(ovsChassisFromJson(nlohmann::json::array()));
}

}  // namespace
}  // namespace corral::net
