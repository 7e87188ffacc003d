// Each host's tunnels joined with the hosts at their other ends (daemon/cluster_view.h): up, down by
// link_state, by BFD or because the host at the other end is lost, missing between two alive hosts,
// unknown for a lost host's own, a chassis of no host, and a host without OVN.
#include "daemon/cluster_view.h"

#include <gtest/gtest.h>

namespace corral::daemon {
namespace {

using nlohmann::json;

net::OvsTunnel tunnelTo(const std::string& host, const std::string& ip) {
  return {.port = "ovn-" + host + "-0", .type = "geneve", .remoteChassis = host, .remoteIp = ip};
}

// The tunnel of `host` to `remote` (null: to a chassis of no host).
const json* find(const json& host, const json& remote) {
  for (const json& tunnel : host["tunnels"])
    if (tunnel["remote_host"] == remote) return &tunnel;
  return nullptr;
}

TEST(ClusterViewTest, TunnelsJoinedWithTheirHostsAndStates) {
  json hosts = json::array({{{"name", "h1"}, {"health", "alive"}},
                            {{"name", "h2"}, {"health", "alive"}},
                            {{"name", "h3"}, {"health", "lost"}},
                            {{"name", "h4"}, {"health", "alive"}},
                            {{"name", "plain"}, {"health", "alive"}}});
  std::map<std::string, net::OvsChassis> fabric;
  fabric["h1"] = {
      .chassis = "c1",
      .encapType = "geneve",
      .encapIp = "10.0.0.1",
      .tunnels = {{.port = "ovn-c2-0", .type = "geneve", .remoteChassis = "c2", .remoteIp = "10.0.0.2"},
                  {.port = "ovn-c3-0", .type = "geneve", .remoteIp = "10.0.0.3"},  // by its IP
                  {.port = "ovn-gw-0", .type = "geneve", .remoteChassis = "gw", .remoteIp = "10.0.0.9"}}};
  fabric["h2"] = {.chassis = "c2",
                  .encapIp = "10.0.0.2",
                  .tunnels = {{.port = "ovn-c1-0",
                               .type = "geneve",
                               .remoteChassis = "c1",
                               .remoteIp = "10.0.0.1",
                               .linkState = "down"},
                              {.port = "ovn-c4-0",
                               .type = "geneve",
                               .remoteChassis = "c4",
                               .remoteIp = "10.0.0.4",
                               .bfdState = "init"}}};
  fabric["h3"] = {.chassis = "c3", .encapIp = "10.0.0.3", .tunnels = {tunnelTo("c1", "10.0.0.1")}};
  fabric["h4"] = {.chassis = "c4", .encapIp = "10.0.0.4"};
  addTunnels(hosts, fabric);

  const json& h1 = hosts[0];
  EXPECT_EQ(h1["chassis"], "c1");
  EXPECT_EQ(h1["encap_ip"], "10.0.0.1");
  ASSERT_NE(find(h1, "h2"), nullptr) << h1.dump();
  EXPECT_EQ((*find(h1, "h2"))["state"], "up");
  EXPECT_EQ((*find(h1, "h2"))["local_ip"], "10.0.0.1");
  EXPECT_EQ((*find(h1, "h2"))["reason"], nullptr);
  ASSERT_NE(find(h1, "h3"), nullptr) << "matched by its remote_ip";
  EXPECT_EQ((*find(h1, "h3"))["state"], "down");
  EXPECT_EQ((*find(h1, "h3"))["reason"], "host h3 is lost");
  ASSERT_NE(find(h1, json(nullptr)), nullptr) << h1.dump();
  EXPECT_EQ((*find(h1, json(nullptr)))["remote_chassis"], "gw");
  EXPECT_EQ((*find(h1, json(nullptr)))["reason"], "chassis gw is no host of this cluster");
  ASSERT_NE(find(h1, "h4"), nullptr);
  EXPECT_EQ((*find(h1, "h4"))["state"], "missing");
  EXPECT_EQ((*find(h1, "h4"))["port"], nullptr);
  EXPECT_EQ((*find(h1, "h4"))["remote_ip"], "10.0.0.4");

  const json& h2 = hosts[1];
  EXPECT_EQ((*find(h2, "h1"))["state"], "down");
  EXPECT_EQ((*find(h2, "h1"))["reason"], "link_state down");
  EXPECT_EQ((*find(h2, "h4"))["reason"], "bfd init");
  EXPECT_EQ(find(h2, "h3"), nullptr) << "no tunnel to a lost host is not missing";

  const json& h3 = hosts[2];
  ASSERT_EQ(h3["tunnels"].size(), 1u) << "a lost host's own, nothing missing";
  EXPECT_EQ(h3["tunnels"][0]["state"], "unknown");

  const json& plain = hosts[4];
  EXPECT_EQ(plain["chassis"], nullptr);
  EXPECT_EQ(plain["encap_ip"], nullptr);
  EXPECT_TRUE(plain["tunnels"].empty());
}

TEST(ClusterViewTest, NoFabricAtAllIsNoTunnels) {
  json hosts = json::array({{{"name", "h1"}, {"health", "alive"}}});
  addTunnels(hosts, {});
  EXPECT_EQ(hosts[0]["chassis"], nullptr);
  EXPECT_EQ(hosts[0]["tunnels"], json::array());
}

}  // namespace
}  // namespace corral::daemon
