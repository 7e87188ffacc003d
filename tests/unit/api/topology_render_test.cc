// `corral net show`'s renderings of a topology answer: golden text and DOT for a two-subnet VPC (public and
// private via NAT, an internet gateway, a VM and a container, one bridge missing from the kernel), a
// well-formed SVG holding every instance, the kernel check's verdicts, and escaping.
#include "api/topology_render.h"

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/unit/api/cluster_view_fixture.h"
#include "tests/unit/api/svg_testing.h"

namespace corral::api {
namespace {

using nlohmann::json;
using testing::expectWellFormedSvg;
using testing::xmlProblem;

const std::filesystem::path kGoldenDir = std::filesystem::path(__FILE__).parent_path() / "golden";

std::string readFile(const std::filesystem::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// CORRAL_UPDATE_GOLDEN=1 rewrites the golden files from the current output.
void expectGolden(const std::string& text, const std::string& name) {
  const auto path = kGoldenDir / name;
  if (getenv("CORRAL_UPDATE_GOLDEN")) std::ofstream(path) << text;
  EXPECT_EQ(text, readFile(path)) << "golden file " << path;
}

json fixture() {
  return json::parse(readFile(kGoldenDir / "topology.json"));
}

// The fixture with the kernel put right: db's bridge present and the VM's tap enslaved to it.
json consistentFixture() {
  json topology = fixture();
  json& links = topology["kernel"]["links"];
  links.push_back({{"name", "crlb22222222"},
                   {"kind", "bridge"},
                   {"up", true},
                   {"master", nullptr},
                   {"addresses", {"10.0.2.1/24"}}});
  for (json& link : links)
    if (link["name"] == "crlt33333333") link["master"] = "crlb22222222";
  return topology;
}

size_t count(const std::string& text, const std::string& word) {
  size_t n = 0;
  for (auto at = text.find(word); at != std::string::npos; at = text.find(word, at + 1)) ++n;
  return n;
}

TEST(TopologyRenderTest, TextMatchesGolden) {
  expectGolden(renderTopologyText(fixture()), "topology.txt");
}

TEST(TopologyRenderTest, DotMatchesGolden) {
  expectGolden(renderTopologyDot(fixture()), "topology.dot");
}

TEST(TopologyRenderTest, TextFlagsTheBridgeMissingFromTheKernel) {
  const std::string text = renderTopologyText(fixture());
  EXPECT_NE(text.find("MISSING  bridge crlb22222222 (switch of subnet db)"), std::string::npos) << text;
  // The VM's tap exists but, without its bridge, is nobody's port.
  EXPECT_NE(text.find("WRONG    link crlt33333333 (vm db-1): not a port of crlb22222222 (master: none)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("2 differences between the model and the kernel"), std::string::npos) << text;
  EXPECT_EQ(count(text, "MISSING"), 1u) << text;
}

TEST(TopologyRenderTest, TextShowsEachPortsSourceCheckDrops) {
  json topology = fixture();
  std::string text = renderTopologyText(topology);
  EXPECT_NE(
      text.find("source check: sends only from its own ip and mac; dropped mac 1, ip 3, arp 2, other 5"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("source check: sends only from its own ip and mac; dropped nothing"), std::string::npos)
      << text;
  topology["subnets"][0]["instances"][0]["spoof_drops"] = nullptr;
  text = renderTopologyText(topology);
  EXPECT_NE(text.find("drops unknown (no guard in the kernel)"), std::string::npos) << text;
}

// A peering: drawn as a corridor with its link and addresses, its route's target named, its link checked
// against the kernel (present and addressed: ok; gone: MISSING), and an edge in the DOT drawing.
TEST(TopologyRenderTest, PeeringIsDrawnAndItsLinkChecked) {
  json topology = consistentFixture();
  topology["peerings"] = json::array({{{"name", "prod-dev"},
                                       {"peer_vpc", "dev"},
                                       {"peer_cidr", "10.1.0.0/16"},
                                       {"link", "crlp55555555"},
                                       {"address", "169.254.248.1"},
                                       {"peer_address", "169.254.248.2"}}});
  topology["route_tables"][0]["routes"].push_back(
      {{"destination", "10.1.0.0/16"}, {"target", "peering prod-dev"}});
  topology["kernel"]["routes"].push_back({{"table", 100},
                                          {"destination", "10.1.0.0/16"},
                                          {"gateway", "169.254.248.2"},
                                          {"device", "crlp55555555"},
                                          {"blackhole", false}});
  json present = topology;
  present["kernel"]["links"].push_back({{"name", "crlp55555555"},
                                        {"kind", "veth"},
                                        {"up", true},
                                        {"master", nullptr},
                                        {"addresses", {"169.254.248.1/30"}}});
  std::string text = renderTopologyText(present);
  EXPECT_NE(text.find("peering prod-dev: a corridor to vpc dev (10.1.0.0/16), not transitive"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("10.1.0.0/16 → peering prod-dev (the corridor to the peer building)"),
            std::string::npos)
      << text;
  EXPECT_NE(
      text.find("ok       link crlp55555555 (peering prod-dev to vpc dev), up, address 169.254.248.1/30"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("the kernel matches the model"), std::string::npos) << text;
  text = renderTopologyText(topology);
  EXPECT_NE(text.find("MISSING  link crlp55555555 (peering prod-dev to vpc dev)"), std::string::npos) << text;
  const std::string dot = renderTopologyDot(present);
  EXPECT_NE(dot.find("\"peering/prod-dev\" [shape=cds"), std::string::npos) << dot;
  EXPECT_NE(dot.find("\"router\" -- \"peering/prod-dev\""), std::string::npos) << dot;
  const std::string svg = renderTopologySvg(present);
  EXPECT_NE(svg.find("peering prod-dev ⇄ VPC dev 10.1.0.0/16"), std::string::npos);
}

TEST(TopologyRenderTest, TextSaysWhenTheKernelMatches) {
  const std::string text = renderTopologyText(consistentFixture());
  EXPECT_NE(text.find("the kernel matches the model"), std::string::npos) << text;
  EXPECT_EQ(count(text, "MISSING"), 0u) << text;
  EXPECT_EQ(count(text, "WRONG"), 0u) << text;
}

TEST(TopologyRenderTest, TextFlagsMissingRulesRoutesAndUnknownLinks) {
  json topology = consistentFixture();
  topology["kernel"]["rules"].erase(3);   // from 10.0.2.0/24 lookup 101
  topology["kernel"]["routes"].erase(2);  // the blackhole
  topology["kernel"]["routes"][0]["blackhole"] = true;
  topology["kernel"]["links"].push_back({{"name", "crlv99999999"},
                                         {"kind", "veth"},
                                         {"up", true},
                                         {"master", nullptr},
                                         {"addresses", json::array()}});
  const std::string text = renderTopologyText(topology);
  EXPECT_NE(text.find("MISSING  rule from 10.0.2.0/24 lookup 101 (subnet db uses prod-private)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("MISSING  table 101: 192.168.0.0/16 blackhole"), std::string::npos) << text;
  EXPECT_NE(text.find("WRONG    table 100: blackhole 0.0.0.0/0 (should leave via the gateway)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("EXTRA    link crlv99999999 (veth): not in the model"), std::string::npos) << text;
  EXPECT_NE(text.find("4 differences"), std::string::npos) << text;
}

TEST(TopologyRenderTest, TextWithoutTheNamespaceOrUnreadable) {
  json topology = fixture();
  topology["kernel"] = {{"netns_present", false},
                        {"error", nullptr},
                        {"links", json::array()},
                        {"rules", json::array()},
                        {"routes", json::array()}};
  std::string text = renderTopologyText(topology);
  EXPECT_NE(text.find("MISSING  namespace corral-vpc-prod: nothing of this VPC is in the kernel"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("[kernel:"), std::string::npos) << text;

  topology["kernel"]["netns_present"] = true;
  topology["kernel"]["error"] = "setns: EPERM";
  text = renderTopologyText(topology);
  EXPECT_NE(text.find("kernel not read: setns: EPERM"), std::string::npos) << text;
  EXPECT_EQ(text.find("[kernel:"), std::string::npos) << text;

  // corrald without kernel access reports no namespace and says why: that is not drift.
  topology["kernel"]["netns_present"] = false;
  topology["kernel"]["error"] = "corrald runs without touching the kernel";
  text = renderTopologyText(topology);
  EXPECT_NE(text.find("kernel not read: corrald runs without touching the kernel"), std::string::npos)
      << text;
  EXPECT_EQ(count(text, "MISSING"), 0u) << text;
}

TEST(TopologyRenderTest, SvgIsWellFormedAndShowsEveryInstance) {
  const std::string svg = renderTopologySvg(fixture());
  expectWellFormedSvg(svg);
  for (const char* expected : {"vm db-1", "10.0.2.5", "container web-1", "10.0.1.4", "public 100.64.128.1",
                               "NAT gateway nat1", "internet gateway door", "internet", "legend"})
    EXPECT_NE(svg.find(expected), std::string::npos) << expected;
  // VMs and containers are drawn differently.
  EXPECT_EQ(count(svg, "class=\"vm-inner\""), 2u);  // db-1 and the legend's
  EXPECT_EQ(count(svg, "class=\"container\""), 2u);
  // Each instance is a group a page (and its browser test) can find by name, kind and state.
  EXPECT_NE(svg.find("data-name=\"db-1\" data-kind=\"vm\""), std::string::npos);
  EXPECT_NE(svg.find("data-name=\"web-1\" data-kind=\"container\""), std::string::npos);
}

TEST(TopologyRenderTest, SvgEscapesText) {
  json topology = fixture();
  topology["subnets"][1]["instances"][0]["ip"] = "10.0.1.4<&>\"'";
  topology["subnets"][0]["reachability"] = "<b>";
  const std::string svg = renderTopologySvg(topology);
  expectWellFormedSvg(svg);
  EXPECT_NE(svg.find("10.0.1.4&lt;&amp;&gt;&quot;&apos;"), std::string::npos);
  EXPECT_NE(svg.find("&lt;b&gt;"), std::string::npos);
}

TEST(TopologyRenderTest, DotEscapesQuotes) {
  json topology = fixture();
  topology["subnets"][1]["instances"][0]["mac"] = "a\"b\\c";
  const std::string dot = renderTopologyDot(topology);
  EXPECT_NE(dot.find("a\\\"b\\\\c"), std::string::npos) << dot;
}

TEST(TopologyRenderTest, EmptyOrPartialAnswersStillRender) {
  for (const json& topology :
       {json::object(), json{{"vpc", {{"name", "empty"}}}, {"subnets", "not an array"}},
        json{{"subnets", {{{"name", "x"}, {"instances", {json::object()}}}}}}}) {
    EXPECT_FALSE(renderTopologyText(topology).empty());
    EXPECT_EQ(count(renderTopologyDot(topology), "{"), count(renderTopologyDot(topology), "}"));
    expectWellFormedSvg(renderTopologySvg(topology));
  }
}

// A cluster host's answer: three hosts in two AZs (h3 lost), web-1 here on h1, db-1 on h2; h1's tunnel to
// h3 down because h3 is lost, h2 with no tunnel to h1 yet, h1 with one to a chassis of no host.
json clusterFixture() {
  json topology = consistentFixture();
  for (json& subnet : topology["subnets"])
    for (json& instance : subnet["instances"])
      if (instance["name"] == "db-1") instance["state"] = "on host h2";
  const auto tunnel = corral::testing::clusterTunnel;
  json h1 = {{"name", "h1"},
             {"az", "az1"},
             {"health", "alive"},
             {"chassis", "h1"},
             {"encap_ip", "10.250.0.1"},
             {"tunnels",
              {tunnel("h2", "10.250.0.1", "10.250.0.2", "up", nullptr),
               tunnel("h3", "10.250.0.1", "10.250.0.3", "down", "host h3 is lost"),
               {{"port", "ovn-gw0000-0"},
                {"type", "geneve"},
                {"remote_host", nullptr},
                {"remote_chassis", "gw"},
                {"local_ip", "10.250.0.1"},
                {"remote_ip", "10.250.0.9"},
                {"state", "up"},
                {"reason", "chassis gw is no host of this cluster"}}}}};
  json h2 = {{"name", "h2"},
             {"az", "az2"},
             {"health", "alive"},
             {"chassis", "h2"},
             {"encap_ip", "10.250.0.2"},
             {"tunnels",
              {tunnel("h1", "10.250.0.2", "10.250.0.1", "missing",
                      "no tunnel interface to chassis h1 on h2's br-int"),
               tunnel("h3", "10.250.0.2", "10.250.0.3", "down", "host h3 is lost")}}};
  json h3 = {{"name", "h3"},
             {"az", "az2"},
             {"health", "lost"},
             {"chassis", "h3"},
             {"encap_ip", "10.250.0.3"},
             {"tunnels",
              {tunnel("h1", "10.250.0.3", "10.250.0.1", "unknown",
                      "host h3 is lost: as its corrald last read them")}}};
  topology["cluster"] = {{"local_host", "h1"}, {"hosts", {h1, h2, h3}}};
  return topology;
}

TEST(TopologyRenderTest, ClusterHostsAzsAndTunnelsMatchGolden) {
  const std::string text = renderTopologyText(clusterFixture());
  expectGolden(text, "topology_cluster.txt");
  // The single-host picture is the cluster one without its cluster section.
  const std::string single = renderTopologyText(consistentFixture());
  EXPECT_EQ(single.find("cluster:"), std::string::npos);
  EXPECT_EQ(single.find("ovs-vsctl"), std::string::npos);
  EXPECT_NE(text.find("h1 (az1) ⇄ h2 (az2) geneve 10.250.0.1 ↔ 10.250.0.2 missing (h2: no tunnel interface"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("h1 (az1) ⇄ h3 (az2) geneve 10.250.0.1 ↔ 10.250.0.3 down (h1: host h3 is lost)"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("host h2 (chassis h2, 10.250.0.2): db-1"), std::string::npos) << text;
}

TEST(TopologyRenderTest, ClusterThatCannotBeReadOrHasNoChassis) {
  json topology = consistentFixture();
  topology["cluster"] = {{"error", "cluster ls: cluster store has no quorum"}};
  EXPECT_NE(renderTopologyText(topology).find(
                "cluster: the hosts cannot be read: cluster ls: cluster store has no quorum"),
            std::string::npos);
  topology["cluster"] = {
      {"local_host", "h1"},
      {"hosts", {{{"name", "h1"}, {"az", "az9"}, {"health", "alive"}, {"chassis", nullptr}}}}};
  const std::string text = renderTopologyText(topology);
  EXPECT_NE(text.find("none: no host reports a chassis"), std::string::npos) << text;
  EXPECT_NE(text.find("no host: an instance of these floors has nowhere to run"), std::string::npos) << text;
  EXPECT_NE(text.find("az9: no floor of this VPC"), std::string::npos) << text;
  topology["cluster"] = "garbage";
  EXPECT_NO_THROW(renderTopologyText(topology));
}

}  // namespace
}  // namespace corral::api
