// A traced frame as POST /v1/trace answers it: times from the first frame shown, the layers as docs/api.md
// lists them (absent layers null), the summary line and the layer-by-layer text.
#include "daemon/trace_render.h"

#include <gtest/gtest.h>

namespace corral::daemon {
namespace {

using std::chrono::microseconds;

net::DecodedFrame synFrame() {
  net::DecodedFrame frame;
  frame.timestamp = microseconds(1700000002500000);
  frame.length = frame.captured = 74;
  frame.ethernet = net::EthernetHeader{"02:c0:aa:00:00:01", "52:54:00:12:34:56", 0x0800, std::nullopt};
  frame.ipv4 = net::Ipv4Header{.source = "10.0.1.4",
                               .destination = "10.0.2.5",
                               .ttl = 63,
                               .protocol = 6,
                               .totalLength = 60,
                               .identification = 0x1234,
                               .dontFragment = true,
                               .moreFragments = false,
                               .fragmentOffset = 0,
                               .headerLength = 20};
  frame.tcp = net::TcpHeader{.sourcePort = 41234,
                             .destinationPort = 8080,
                             .seq = 1000,
                             .ack = 0,
                             .flags = 0x02,
                             .window = 64240,
                             .headerLength = 40};
  return frame;
}

TEST(TraceFrameJson, TimesCountFromTheFirstFrameShown) {
  nlohmann::json out =
      traceFrameJson(synFrame(), 3, microseconds(1700000000000000), true, std::string("handshake 1/3 (SYN)"));
  EXPECT_EQ(out["number"], 3);
  EXPECT_DOUBLE_EQ(out["time"].get<double>(), 2.5);
  EXPECT_EQ(out["timestamp_us"], 1700000002500000);
  EXPECT_EQ(out["outgoing"], true);
  EXPECT_EQ(out["summary"], "10.0.1.4:41234 → 10.0.2.5:8080 TCP [SYN]");
  EXPECT_EQ(out["event"], "handshake 1/3 (SYN)");
  EXPECT_EQ(out["text"],
            "#3  2.500000 s  74 bytes\n"
            "  Ethernet (L2, the floor's switch): 02:c0:aa:00:00:01 → 52:54:00:12:34:56, IPv4\n"
            "  IPv4 (L3, the router): 10.0.1.4 → 10.0.2.5, TTL 63, TCP\n"
            "  TCP (L4): 41234 → 8080 [SYN] seq 1000 win 64240\n"
            "  payload: 0 bytes\n"
            "  ⇒ handshake 1/3 (SYN)\n");
}

TEST(TraceFrameJson, LayersAsDocumentedAndAbsentOnesNull) {
  nlohmann::json out = traceFrameJson(synFrame(), 1, microseconds(1700000002500000), false, std::nullopt);
  EXPECT_EQ(out["time"], 0.0);
  EXPECT_TRUE(out["event"].is_null());
  EXPECT_EQ(out["ethernet"], (nlohmann::json{{"source", "02:c0:aa:00:00:01"},
                                             {"destination", "52:54:00:12:34:56"},
                                             {"ether_type", "0x0800"},
                                             {"vlan", nullptr}}));
  EXPECT_EQ(out["ipv4"]["ttl"], 63);
  EXPECT_EQ(out["ipv4"]["dont_fragment"], true);
  EXPECT_EQ(out["tcp"], (nlohmann::json{{"source_port", 41234},
                                        {"destination_port", 8080},
                                        {"seq", 1000},
                                        {"ack", 0},
                                        {"flags", "SYN"},
                                        {"window", 64240},
                                        {"header_length", 40}}));
  for (const char* layer : {"arp", "udp", "icmp"}) EXPECT_TRUE(out[layer].is_null()) << layer;

  net::DecodedFrame arp;
  arp.ethernet = net::EthernetHeader{"02:c0:aa:00:00:01", "ff:ff:ff:ff:ff:ff", 0x0806, 7};
  arp.arp = net::ArpPacket{1, "02:c0:aa:00:00:01", "10.0.1.4", "00:00:00:00:00:00", "10.0.1.1"};
  nlohmann::json request = traceFrameJson(arp, 1, {}, false, std::nullopt);
  EXPECT_EQ(request["arp"]["operation"], "request");
  EXPECT_EQ(request["ethernet"]["vlan"], 7);
  EXPECT_EQ(request["summary"], "ARP who has 10.0.1.1? tell 10.0.1.4 (02:c0:aa:00:00:01)");
}

}  // namespace
}  // namespace corral::daemon
