// Frame decoding, the TCP tracker, the trace text and pcap files, on frames built byte by byte here
// (the integration test compares the same decoding with tshark on real captured traffic).
#include "net/frames.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace corral::net {
namespace {

using Bytes = std::vector<uint8_t>;
using std::chrono::microseconds;

const Bytes kMacA = {0x02, 0xc0, 0xaa, 0x00, 0x00, 0x01};
const Bytes kMacB = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}
void putIp(Bytes& b, const char* address) {
  uint8_t raw[4];
  ASSERT_EQ(inet_pton(AF_INET, address, raw), 1);
  b.insert(b.end(), raw, raw + 4);
}
void append(Bytes& to, const Bytes& from) {
  to.insert(to.end(), from.begin(), from.end());
}

Bytes ethernet(uint16_t etherType, const Bytes& dst = kMacB, const Bytes& src = kMacA) {
  Bytes b = dst;
  append(b, src);
  put16(b, etherType);
  return b;
}

struct IpOptions {
  uint8_t ttl = 64;
  size_t optionWords = 0;
  uint16_t fragmentField = 0x4000;  // DF
};

Bytes ipv4(const char* src, const char* dst, uint8_t protocol, size_t l4Length, IpOptions o = {}) {
  Bytes b;
  const size_t headerLength = 20 + o.optionWords * 4;
  b.push_back(static_cast<uint8_t>(0x40 | headerLength / 4));
  b.push_back(0);
  put16(b, static_cast<uint16_t>(headerLength + l4Length));
  put16(b, 0x1234);
  put16(b, o.fragmentField);
  b.push_back(o.ttl);
  b.push_back(protocol);
  put16(b, 0);  // checksum: not checked
  putIp(b, src);
  putIp(b, dst);
  for (size_t i = 0; i < o.optionWords; ++i) put32(b, 0x01010101);  // NOPs
  return b;
}

Bytes tcp(uint16_t sp, uint16_t dp, uint32_t seq, uint32_t ack, uint8_t flags, size_t payload = 0,
          size_t optionWords = 0) {
  Bytes b;
  put16(b, sp);
  put16(b, dp);
  put32(b, seq);
  put32(b, ack);
  b.push_back(static_cast<uint8_t>((5 + optionWords) << 4));
  b.push_back(flags);
  put16(b, 64240);
  put32(b, 0);  // checksum, urgent pointer
  for (size_t i = 0; i < optionWords; ++i) put32(b, 0x01010101);
  b.insert(b.end(), payload, 'x');
  return b;
}

Bytes tcpFrame(const char* src, const char* dst, uint16_t sp, uint16_t dp, uint32_t seq, uint32_t ack,
               uint8_t flags, size_t payload = 0) {
  Bytes segment = tcp(sp, dp, seq, ack, flags, payload);
  Bytes b = ethernet(0x0800);
  append(b, ipv4(src, dst, 6, segment.size()));
  append(b, segment);
  return b;
}

Bytes udpFrame(size_t payload) {
  Bytes b = ethernet(0x0800);
  append(b, ipv4("10.0.1.4", "10.0.2.5", 17, 8 + payload));
  put16(b, 5353);
  put16(b, 53);
  put16(b, static_cast<uint16_t>(8 + payload));
  put16(b, 0);
  b.insert(b.end(), payload, 'u');
  return b;
}

Bytes arpFrame(uint16_t operation) {
  Bytes b = ethernet(0x0806, operation == 1 ? Bytes(6, 0xff) : kMacB);
  put16(b, 1);
  put16(b, 0x0800);
  b.push_back(6);
  b.push_back(4);
  put16(b, operation);
  append(b, kMacA);
  putIp(b, "10.0.1.4");
  append(b, operation == 1 ? Bytes(6, 0) : kMacB);
  putIp(b, "10.0.1.1");
  b.resize(60, 0);  // Ethernet minimum, padded
  return b;
}

DecodedFrame decode(const Bytes& b) {
  return decodeFrame(b);
}

TEST(Frames, ArpRequestAndReply) {
  DecodedFrame request = decode(arpFrame(1));
  ASSERT_TRUE(request.ethernet && request.arp) << request.note;
  EXPECT_EQ(request.ethernet->destination, "ff:ff:ff:ff:ff:ff");
  EXPECT_EQ(request.ethernet->source, "02:c0:aa:00:00:01");
  EXPECT_EQ(request.ethernet->etherType, 0x0806);
  EXPECT_EQ(request.arp->operation, 1);
  EXPECT_EQ(request.arp->senderIp, "10.0.1.4");
  EXPECT_EQ(request.arp->senderMac, "02:c0:aa:00:00:01");
  EXPECT_EQ(request.arp->targetIp, "10.0.1.1");
  EXPECT_EQ(request.arp->targetMac, "00:00:00:00:00:00");
  EXPECT_FALSE(request.ipv4);
  EXPECT_EQ(request.note, "");
  EXPECT_EQ(describeFrame(request, 1, std::nullopt),
            "#1  0.000000 s  60 bytes\n"
            "  Ethernet (L2, the floor's switch): 02:c0:aa:00:00:01 → ff:ff:ff:ff:ff:ff, ARP\n"
            "  ARP (L2 asks for L3): who has 10.0.1.1? tell 10.0.1.4 (02:c0:aa:00:00:01)\n");

  DecodedFrame reply = decode(arpFrame(2));
  ASSERT_TRUE(reply.arp);
  EXPECT_EQ(reply.arp->operation, 2);
  EXPECT_EQ(reply.arp->targetMac, "52:54:00:12:34:56");
  EXPECT_NE(describeFrame(reply, 2, std::nullopt).find("10.0.1.4 is at 02:c0:aa:00:00:01"),
            std::string::npos);
}

TEST(Frames, IcmpEcho) {
  Bytes b = ethernet(0x0800);
  append(b, ipv4("10.0.1.4", "10.0.2.5", 1, 8 + 56, {.ttl = 63}));
  b.push_back(8);
  b.push_back(0);
  put16(b, 0);
  put16(b, 0x4d2);
  put16(b, 7);
  b.insert(b.end(), 56, 'p');
  DecodedFrame frame = decode(b);
  ASSERT_TRUE(frame.ipv4 && frame.icmp) << frame.note;
  EXPECT_EQ(frame.ipv4->ttl, 63);
  EXPECT_EQ(frame.ipv4->protocol, 1);
  EXPECT_EQ(frame.icmp->type, 8);
  EXPECT_EQ(frame.icmp->code, 0);
  EXPECT_EQ(frame.icmp->id, 1234);
  EXPECT_EQ(frame.icmp->sequence, 7);
  EXPECT_EQ(frame.payloadBytes, 56u);
  EXPECT_FALSE(frame.tcp || frame.udp);
  EXPECT_NE(describeFrame(frame, 1, std::nullopt)
                .find("ICMP (L3, the router's messages): echo request id 1234 seq 7"),
            std::string::npos);
}

TEST(Frames, TcpSynWithOptionsDescribed) {
  Bytes segment = tcp(41234, 8080, 1000, 0, 0x02, 0, 5);
  Bytes b = ethernet(0x0800);
  append(b, ipv4("10.0.1.4", "10.0.2.5", 6, segment.size(), {.ttl = 63}));
  append(b, segment);
  DecodedFrame frame = decodeFrame(b, microseconds(1700000000000412));
  ASSERT_TRUE(frame.tcp) << frame.note;
  EXPECT_EQ(frame.length, 74u);
  EXPECT_EQ(frame.captured, 74u);
  EXPECT_EQ(frame.tcp->sourcePort, 41234);
  EXPECT_EQ(frame.tcp->destinationPort, 8080);
  EXPECT_EQ(frame.tcp->seq, 1000u);
  EXPECT_EQ(frame.tcp->ack, 0u);
  EXPECT_EQ(frame.tcp->flags, 0x02);
  EXPECT_EQ(frame.tcp->window, 64240);
  EXPECT_EQ(frame.tcp->headerLength, 40);
  EXPECT_EQ(frame.payloadBytes, 0u);
  EXPECT_EQ(frame.ipv4->headerLength, 20);
  EXPECT_EQ(frame.ipv4->totalLength, 60);
  EXPECT_TRUE(frame.ipv4->dontFragment);
  EXPECT_EQ(frame.ipv4->identification, 0x1234);
  EXPECT_EQ(describeFrame(frame, 3, std::string("handshake 1/3 (SYN)")),
            "#3  1700000000.000412 s  74 bytes\n"
            "  Ethernet (L2, the floor's switch): 02:c0:aa:00:00:01 → 52:54:00:12:34:56, IPv4\n"
            "  IPv4 (L3, the router): 10.0.1.4 → 10.0.2.5, TTL 63, TCP\n"
            "  TCP (L4): 41234 → 8080 [SYN] seq 1000 win 64240\n"
            "  payload: 0 bytes\n"
            "  ⇒ handshake 1/3 (SYN)\n");
}

TEST(Frames, TcpDataAndAckText) {
  DecodedFrame frame = decode(tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1001, 5001, 0x18, 5));
  ASSERT_TRUE(frame.tcp);
  EXPECT_EQ(frame.payloadBytes, 5u);
  EXPECT_NE(describeFrame(frame, 4, std::nullopt)
                .find("[PSH,ACK] seq 1001 ack 5001 win 64240\n  payload: 5 bytes\n"),
            std::string::npos);
}

TEST(Frames, ShortFramePaddingIsNotPayload) {
  Bytes b = tcpFrame("10.0.1.4", "10.0.2.5", 1, 2, 3, 4, 0x10);
  ASSERT_EQ(b.size(), 54u);
  b.resize(60, 0);
  DecodedFrame frame = decode(b);
  ASSERT_TRUE(frame.tcp);
  EXPECT_EQ(frame.payloadBytes, 0u);
  EXPECT_EQ(frame.note, "");
}

TEST(Frames, Udp) {
  DecodedFrame frame = decode(udpFrame(33));
  ASSERT_TRUE(frame.udp) << frame.note;
  EXPECT_EQ(frame.udp->sourcePort, 5353);
  EXPECT_EQ(frame.udp->destinationPort, 53);
  EXPECT_EQ(frame.udp->length, 41);
  EXPECT_EQ(frame.payloadBytes, 33u);
  EXPECT_FALSE(frame.tcp);
  EXPECT_NE(
      describeFrame(frame, 1, std::nullopt).find("  UDP (L4): 5353 → 53, length 41\n  payload: 33 bytes\n"),
      std::string::npos);
}

TEST(Frames, TruncatedFramesDecodeAsFarAsTheyGo) {
  Bytes full = tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1000, 0, 0x02, 100);
  DecodedFrame cut = decodeFrame(std::span(full).first(44), {}, full.size());
  EXPECT_EQ(cut.length, full.size());
  EXPECT_EQ(cut.captured, 44u);
  ASSERT_TRUE(cut.ethernet && cut.ipv4);
  EXPECT_EQ(cut.ipv4->destination, "10.0.2.5");
  EXPECT_FALSE(cut.tcp);
  EXPECT_EQ(cut.note, "truncated TCP header");
  EXPECT_NE(describeFrame(cut, 1, std::nullopt).find("154 bytes (44 captured)"), std::string::npos);

  // Cut inside the payload: all headers there, the payload size from the IPv4 header.
  DecodedFrame snapped = decodeFrame(std::span(full).first(60), {}, full.size());
  ASSERT_TRUE(snapped.tcp);
  EXPECT_EQ(snapped.payloadBytes, 100u);

  EXPECT_EQ(decode(Bytes(full.begin(), full.begin() + 10)).note, "truncated Ethernet header");
  EXPECT_EQ(decode(Bytes(full.begin(), full.begin() + 30)).note, "truncated IPv4 header");
  Bytes arp = arpFrame(1);
  EXPECT_EQ(decode(Bytes(arp.begin(), arp.begin() + 30)).note, "truncated ARP packet");

  // Every prefix of every kind of frame decodes without reading past its end.
  for (const Bytes& frame : {full, udpFrame(3), arp}) {
    for (size_t n = 0; n <= frame.size(); ++n) {
      Bytes prefix(frame.begin(), frame.begin() + static_cast<std::ptrdiff_t>(n));
      prefix.shrink_to_fit();
      DecodedFrame d = decodeFrame(prefix, {}, frame.size());
      EXPECT_EQ(d.captured, n);
      if (d.tcp) {
        EXPECT_GE(n, 54u);
      }
      if (d.udp || d.arp) {
        EXPECT_GE(n, 42u);
      }
    }
  }
}

TEST(Frames, VlanTagIsSkipped) {
  Bytes plain = tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1000, 0, 0x02);
  Bytes tagged(plain.begin(), plain.begin() + 12);
  put16(tagged, 0x8100);
  put16(tagged, 0x2000 | 42);  // priority 1, VLAN 42
  tagged.insert(tagged.end(), plain.begin() + 12, plain.end());
  DecodedFrame frame = decode(tagged);
  ASSERT_TRUE(frame.ethernet && frame.tcp) << frame.note;
  EXPECT_EQ(frame.ethernet->vlan, 42);
  EXPECT_EQ(frame.ethernet->etherType, 0x0800);
  EXPECT_EQ(frame.tcp->destinationPort, 8080);
  EXPECT_NE(describeFrame(frame, 1, std::nullopt).find("VLAN 42, IPv4"), std::string::npos);
}

TEST(Frames, Ipv4OptionsHonoured) {
  Bytes segment = tcp(1111, 2222, 77, 0, 0x02);
  Bytes b = ethernet(0x0800);
  append(b, ipv4("10.0.1.4", "10.0.2.5", 6, segment.size(), {.optionWords = 2}));
  append(b, segment);
  DecodedFrame frame = decode(b);
  ASSERT_TRUE(frame.tcp) << frame.note;
  EXPECT_EQ(frame.ipv4->headerLength, 28);
  EXPECT_EQ(frame.tcp->sourcePort, 1111);
  EXPECT_EQ(frame.tcp->seq, 77u);
}

TEST(Frames, NonFirstFragmentIsNotDecodedAsUdp) {
  Bytes b = ethernet(0x0800);
  append(b, ipv4("10.0.1.4", "10.0.2.5", 17, 40, {.fragmentField = 185}));  // offset 1480, last
  b.insert(b.end(), 40, 0x35);
  DecodedFrame frame = decode(b);
  ASSERT_TRUE(frame.ipv4);
  EXPECT_EQ(frame.ipv4->fragmentOffset, 1480);
  EXPECT_FALSE(frame.ipv4->moreFragments);
  EXPECT_FALSE(frame.udp);
  EXPECT_EQ(frame.payloadBytes, 40u);
  EXPECT_EQ(frame.note, "IPv4 fragment at offset 1480: not decoded above IPv4");
  EXPECT_TRUE(matchesFilter(frame, FrameFilter::Udp));

  Bytes first = ethernet(0x0800);
  append(first, ipv4("10.0.1.4", "10.0.2.5", 17, 16, {.fragmentField = 0x2000}));  // more fragments
  put16(first, 5353);
  put16(first, 53);
  put16(first, 1500);
  put16(first, 0);
  first.insert(first.end(), 8, 0);
  DecodedFrame head = decode(first);
  ASSERT_TRUE(head.udp);
  EXPECT_TRUE(head.ipv4->moreFragments);
}

TEST(Frames, Ipv6OnlyNoted) {
  Bytes b = ethernet(0x86dd);
  b.resize(14 + 40, 0x60);
  DecodedFrame frame = decode(b);
  ASSERT_TRUE(frame.ethernet);
  EXPECT_EQ(frame.ethernet->etherType, 0x86dd);
  EXPECT_FALSE(frame.ipv4);
  EXPECT_EQ(frame.note, "IPv6 not decoded");
  EXPECT_NE(describeFrame(frame, 1, std::nullopt).find(", IPv6\n  note: IPv6 not decoded\n"),
            std::string::npos);
}

// The trace list's one line per frame (moved here from corrald's trace handler, next to the decoder).
TEST(Frames, SummaryIsOneLinePerLayerStack) {
  EXPECT_EQ(frameSummary(decode(arpFrame(1))), "ARP who has 10.0.1.1? tell 10.0.1.4 (02:c0:aa:00:00:01)");
  EXPECT_EQ(frameSummary(decode(arpFrame(2))), "ARP 10.0.1.4 is at 02:c0:aa:00:00:01");
  EXPECT_EQ(frameSummary(decode(tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1, 0, 0x02))),
            "10.0.1.4:41234 → 10.0.2.5:8080 TCP [SYN]");
  EXPECT_EQ(frameSummary(decode(tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1, 9, 0x18, 5))),
            "10.0.1.4:41234 → 10.0.2.5:8080 TCP [PSH,ACK] 5 bytes");
  EXPECT_EQ(frameSummary(decode(udpFrame(33))), "10.0.1.4:5353 → 10.0.2.5:53 UDP 33 bytes");

  Bytes echo = ethernet(0x0800);
  append(echo, ipv4("10.0.1.4", "10.0.2.5", 1, 8));
  for (uint8_t byte : {8, 0, 0, 0, 0, 1, 0, 1}) echo.push_back(byte);
  EXPECT_EQ(frameSummary(decode(echo)), "10.0.1.4 → 10.0.2.5 ICMP echo request");
  Bytes gre = ethernet(0x0800);
  append(gre, ipv4("10.0.1.4", "10.0.2.5", 47, 4));
  gre.resize(gre.size() + 4, 0);
  EXPECT_EQ(frameSummary(decode(gre)), "10.0.1.4 → 10.0.2.5 IPv4 protocol 47");

  Bytes ipv6 = ethernet(0x86dd);
  ipv6.resize(14 + 40, 0x60);
  EXPECT_EQ(frameSummary(decode(ipv6)),
            "02:c0:aa:00:00:01 → 52:54:00:12:34:56 EtherType 0x86dd (IPv6 not decoded)");
  EXPECT_EQ(frameSummary(decode(Bytes(6, 0))), "truncated Ethernet header");
  EXPECT_EQ(frameSummary(DecodedFrame{}), "unreadable frame");
}

TEST(Frames, FlagsText) {
  EXPECT_EQ(tcpFlagsText(0x02), "SYN");
  EXPECT_EQ(tcpFlagsText(0x12), "SYN,ACK");
  EXPECT_EQ(tcpFlagsText(0x11), "FIN,ACK");
  EXPECT_EQ(tcpFlagsText(0x04), "RST");
  EXPECT_EQ(tcpFlagsText(0x18), "PSH,ACK");
  EXPECT_EQ(tcpFlagsText(0xff), "FIN,SYN,RST,PSH,ACK,URG,ECE,CWR");
  EXPECT_EQ(tcpFlagsText(0), "none");
}

TEST(Frames, FilterParsingAndMatching) {
  EXPECT_EQ(parseFrameFilter("tcp"), FrameFilter::Tcp);
  EXPECT_EQ(parseFrameFilter("udp"), FrameFilter::Udp);
  EXPECT_EQ(parseFrameFilter("icmp"), FrameFilter::Icmp);
  EXPECT_EQ(parseFrameFilter("arp"), FrameFilter::Arp);
  EXPECT_EQ(parseFrameFilter("all"), FrameFilter::All);
  auto bad = parseFrameFilter("sctp", "protocol");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(bad.error().field(), "protocol");
  EXPECT_NE(bad.error().message().find("\"sctp\""), std::string::npos);
  EXPECT_FALSE(parseFrameFilter(""));

  DecodedFrame syn = decode(tcpFrame("10.0.1.4", "10.0.2.5", 1, 2, 3, 0, 0x02));
  DecodedFrame udp = decode(udpFrame(1));
  DecodedFrame arp = decode(arpFrame(1));
  EXPECT_TRUE(matchesFilter(syn, FrameFilter::Tcp));
  EXPECT_FALSE(matchesFilter(syn, FrameFilter::Udp));
  EXPECT_TRUE(matchesFilter(udp, FrameFilter::Udp));
  EXPECT_FALSE(matchesFilter(udp, FrameFilter::Icmp));
  EXPECT_TRUE(matchesFilter(arp, FrameFilter::Arp));
  EXPECT_FALSE(matchesFilter(arp, FrameFilter::Tcp));
  for (const DecodedFrame* f : {&syn, &udp, &arp}) EXPECT_TRUE(matchesFilter(*f, FrameFilter::All));
}

// A client 10.0.1.4:41234 and a server 10.0.2.5:8080.
DecodedFrame fromClient(uint32_t seq, uint32_t ack, uint8_t flags, size_t payload = 0,
                        uint16_t port = 41234) {
  return decode(tcpFrame("10.0.1.4", "10.0.2.5", port, 8080, seq, ack, flags, payload));
}
DecodedFrame fromServer(uint32_t seq, uint32_t ack, uint8_t flags, size_t payload = 0,
                        uint16_t port = 41234) {
  return decode(tcpFrame("10.0.2.5", "10.0.1.4", 8080, port, seq, ack, flags, payload));
}
using Events = std::vector<std::optional<std::string>>;
Events observeAll(TcpConversationTracker& tracker, const std::vector<DecodedFrame>& frames) {
  Events events;
  for (const DecodedFrame& f : frames) events.push_back(tracker.observe(f));
  return events;
}

TEST(TcpTracker, HandshakeDataAndFourWayClose) {
  TcpConversationTracker tracker;
  Events events = observeAll(
      tracker, {fromClient(1000, 0, 0x02), fromServer(5000, 1001, 0x12), fromClient(1001, 5001, 0x10),
                fromClient(1001, 5001, 0x18, 5), fromServer(5001, 1006, 0x10), fromClient(1006, 5001, 0x11),
                fromServer(5001, 1007, 0x10), fromServer(5001, 1007, 0x11), fromClient(1007, 5002, 0x10)});
  EXPECT_EQ(events, (Events{"handshake 1/3 (SYN)", "handshake 2/3 (SYN-ACK)",
                            "handshake 3/3 (ACK): connection established", std::nullopt, std::nullopt,
                            "close 1/4 (FIN)", "close 2/4 (ACK)", "close 3/4 (FIN)",
                            "close 4/4 (ACK): connection closed"}));
}

TEST(TcpTracker, ServerClosesFirstAndFinCarriesData) {
  TcpConversationTracker tracker;
  Events events = observeAll(tracker, {fromServer(5000, 1000, 0x19, 4), fromClient(1000, 5005, 0x10),
                                       fromClient(1000, 5005, 0x11), fromServer(5005, 1001, 0x10)});
  EXPECT_EQ(events, (Events{"close 1/4 (FIN)", "close 2/4 (ACK)", "close 3/4 (FIN)",
                            "close 4/4 (ACK): connection closed"}));
}

TEST(TcpTracker, ThreeWayClose) {
  TcpConversationTracker tracker;
  Events events = observeAll(
      tracker, {fromClient(1006, 5001, 0x11), fromServer(5001, 1007, 0x11), fromClient(1007, 5002, 0x10)});
  EXPECT_EQ(events,
            (Events{"close 1/4 (FIN)", "close 2+3/4 (FIN-ACK)", "close 4/4 (ACK): connection closed"}));
}

// `nc -e`: the client sends and shuts down its side; the server's answer is data that acknowledges the
// client's FIN, then the server closes its side too.
TEST(TcpTracker, DataAckingTheFinIsNotCloseStepTwo) {
  TcpConversationTracker tracker;
  Events events = observeAll(tracker, {fromClient(1001, 5001, 0x18, 5), fromClient(1006, 5001, 0x11),
                                       fromServer(5001, 1007, 0x18, 6), fromClient(1007, 5007, 0x10),
                                       fromServer(5007, 1007, 0x11), fromClient(1007, 5008, 0x10)});
  EXPECT_EQ(events,
            (Events{std::nullopt, "close 1/4 (FIN)", "data after FIN (half-close): acknowledges the FIN",
                    std::nullopt, "close 3/4 (FIN)", "close 4/4 (ACK): connection closed"}));
}

// The same, and the server's data comes in two segments before a bare ACK would have been sent: only the
// first that acknowledges the FIN is named, the bare ACK that follows is no step of its own.
TEST(TcpTracker, MoreDataAndAcksAfterTheFinAreNotSteps) {
  TcpConversationTracker tracker;
  Events events = observeAll(tracker, {fromClient(1006, 5001, 0x11), fromServer(5001, 1006, 0x18, 3),
                                       fromServer(5004, 1007, 0x18, 3), fromServer(5007, 1007, 0x10),
                                       fromServer(5007, 1007, 0x11), fromClient(1007, 5008, 0x10)});
  EXPECT_EQ(events,
            (Events{"close 1/4 (FIN)", std::nullopt, "data after FIN (half-close): acknowledges the FIN",
                    std::nullopt, "close 3/4 (FIN)", "close 4/4 (ACK): connection closed"}));
}

// The server's FIN carries its answer and acknowledges the client's FIN at once.
TEST(TcpTracker, ThreeWayCloseWithDataOnTheFin) {
  TcpConversationTracker tracker;
  Events events = observeAll(
      tracker, {fromClient(1006, 5001, 0x11), fromServer(5001, 1007, 0x19, 6), fromClient(1007, 5008, 0x10)});
  EXPECT_EQ(events,
            (Events{"close 1/4 (FIN)", "close 2+3/4 (FIN-ACK)", "close 4/4 (ACK): connection closed"}));
}

TEST(TcpTracker, AcksThatDoNotMatchAreNotSteps) {
  TcpConversationTracker tracker;
  Events events = observeAll(
      tracker, {fromClient(1000, 0, 0x02), fromServer(5000, 999, 0x12), fromServer(5000, 1001, 0x12),
                fromClient(1001, 5000, 0x10), fromServer(5001, 1001, 0x10), fromClient(1001, 5001, 0x10)});
  EXPECT_EQ(events, (Events{"handshake 1/3 (SYN)", std::nullopt, "handshake 2/3 (SYN-ACK)", std::nullopt,
                            std::nullopt, "handshake 3/3 (ACK): connection established"}));
}

TEST(TcpTracker, Reset) {
  TcpConversationTracker tracker;
  Events events =
      observeAll(tracker, {fromClient(1000, 0, 0x02), fromServer(0, 1001, 0x14), fromClient(1000, 0, 0x10)});
  EXPECT_EQ(events, (Events{"handshake 1/3 (SYN)", "reset (RST)", std::nullopt}));
}

TEST(TcpTracker, InterleavedConnections) {
  TcpConversationTracker tracker;
  Events events = observeAll(tracker, {fromClient(1000, 0, 0x02, 0, 1), fromClient(7000, 0, 0x02, 0, 2),
                                       fromServer(9000, 7001, 0x12, 0, 2), fromServer(5000, 1001, 0x12, 0, 1),
                                       fromClient(1001, 5001, 0x10, 0, 1), fromClient(7001, 9001, 0x10, 0, 2),
                                       fromClient(7001, 9001, 0x11, 0, 2), fromClient(1001, 5001, 0x11, 0, 1),
                                       fromServer(5001, 1002, 0x11, 0, 1), fromServer(9001, 7002, 0x10, 0, 2),
                                       fromClient(1002, 5002, 0x10, 0, 1)});
  EXPECT_EQ(events,
            (Events{"handshake 1/3 (SYN)", "handshake 1/3 (SYN)", "handshake 2/3 (SYN-ACK)",
                    "handshake 2/3 (SYN-ACK)", "handshake 3/3 (ACK): connection established",
                    "handshake 3/3 (ACK): connection established", "close 1/4 (FIN)", "close 1/4 (FIN)",
                    "close 2+3/4 (FIN-ACK)", "close 2/4 (ACK)", "close 4/4 (ACK): connection closed"}));
}

TEST(TcpTracker, IgnoresOtherFrames) {
  TcpConversationTracker tracker;
  EXPECT_EQ(tracker.observe(decode(udpFrame(3))), std::nullopt);
  EXPECT_EQ(tracker.observe(decode(arpFrame(1))), std::nullopt);
  EXPECT_EQ(tracker.observe(fromClient(1, 2, 0x10)), std::nullopt);
}

// Real bytes: a capture the integration test took on the client's end of a veth pair (ARP, a TCP
// connection 10.79.0.1 -> 10.79.0.2:8080 with "hello" and a 3-way close, two IPv6 MLD reports, a UDP
// datagram to port 5353); tshark read the same file as checked below.
TEST(Frames, CapturedSession) {
  const auto path = std::filesystem::path(__FILE__).parent_path() / "golden" / "frames_tcp_udp.pcap";
  std::ifstream in(path, std::ios::binary);
  ASSERT_TRUE(in) << path;
  const Bytes file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto frames = parsePcap(file);
  ASSERT_TRUE(frames) << frames.error().message();
  ASSERT_EQ(frames->size(), 13u);
  TcpConversationTracker tracker;
  std::vector<DecodedFrame> decoded;
  Events events;
  for (const PcapFrame& f : *frames) {
    decoded.push_back(decodeFrame(f.bytes, f.timestamp, f.wireLength));
    events.push_back(tracker.observe(decoded.back()));
  }
  ASSERT_TRUE(decoded[0].arp && decoded[1].arp);
  EXPECT_EQ(decoded[0].arp->operation, 1);
  EXPECT_EQ(decoded[0].arp->targetIp, "10.79.0.2");
  EXPECT_EQ(decoded[1].arp->operation, 2);
  EXPECT_EQ(decoded[1].arp->senderMac, "02:c0:aa:00:00:02");
  EXPECT_EQ(events, (Events{std::nullopt, std::nullopt, "handshake 1/3 (SYN)", "handshake 2/3 (SYN-ACK)",
                            "handshake 3/3 (ACK): connection established", std::nullopt, std::nullopt,
                            "close 1/4 (FIN)", "close 2+3/4 (FIN-ACK)", "close 4/4 (ACK): connection closed",
                            std::nullopt, std::nullopt, std::nullopt}));
  // As tshark read them: 3,02:c0:aa:00:00:01,02:c0:aa:00:00:02,10.79.0.1,10.79.0.2,64,37266,8080,0x0002,
  // 3386464272,0 and 4,...,8080,37266,0x0012,2231514165,3386464273.
  ASSERT_TRUE(decoded[2].tcp && decoded[3].tcp);
  EXPECT_EQ(decoded[2].tcp->sourcePort, 37266);
  EXPECT_EQ(decoded[2].tcp->seq, 3386464272u);
  EXPECT_EQ(decoded[3].tcp->flags, 0x12);
  EXPECT_EQ(decoded[3].tcp->seq, 2231514165u);
  EXPECT_EQ(decoded[3].tcp->ack, 3386464273u);
  EXPECT_EQ(decoded[5].payloadBytes, 5u);
  EXPECT_EQ(tcpFlagsText(decoded[5].tcp->flags), "PSH,ACK");
  EXPECT_EQ(decoded[10].note, "IPv6 not decoded");
  ASSERT_TRUE(decoded[12].udp);
  EXPECT_EQ(decoded[12].udp->sourcePort, 34778);
  EXPECT_EQ(decoded[12].udp->destinationPort, 5353);
  EXPECT_EQ(decoded[12].payloadBytes, 4u);
  // Times relative to the first frame: the caller subtracts before describing.
  DecodedFrame relative = decoded[2];
  relative.timestamp -= decoded[0].timestamp;
  EXPECT_EQ(describeFrame(relative, 3, events[2]).substr(0, 3), "#3 ");
  EXPECT_NE(describeFrame(relative, 3, events[2]).find("  TCP (L4): 37266 → 8080 [SYN] seq 3386464272 win "),
            std::string::npos);
}

Bytes fileBytes(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

TEST(Pcap, RoundTrip) {
  Bytes syn = tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1000, 0, 0x02);
  Bytes arp = arpFrame(1);
  std::string file = pcapFileHeader(96) + pcapRecord(syn, microseconds(1700000000123456), syn.size()) +
                     pcapRecord(std::span(arp).first(20), microseconds(1700000001000001), arp.size());
  const Bytes header = fileBytes(file.substr(0, 24));
  EXPECT_EQ(header,
            (Bytes{0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 96, 0, 0, 0, 1, 0, 0, 0}));
  auto frames = parsePcap(fileBytes(file));
  ASSERT_TRUE(frames) << frames.error().message();
  ASSERT_EQ(frames->size(), 2u);
  EXPECT_EQ((*frames)[0].bytes, syn);
  EXPECT_EQ((*frames)[0].timestamp, microseconds(1700000000123456));
  EXPECT_EQ((*frames)[0].wireLength, syn.size());
  EXPECT_EQ((*frames)[1].bytes, Bytes(arp.begin(), arp.begin() + 20));
  EXPECT_EQ((*frames)[1].wireLength, 60u);
  EXPECT_EQ((*frames)[1].timestamp, microseconds(1700000001000001));
}

TEST(Pcap, BigEndianFile) {
  Bytes syn = tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1000, 0, 0x02);
  Bytes file;
  put32(file, 0xa1b2c3d4);
  put16(file, 2);
  put16(file, 4);
  put32(file, 0);
  put32(file, 0);
  put32(file, 65535);
  put32(file, 1);
  put32(file, 1700000000);
  put32(file, 42);
  put32(file, static_cast<uint32_t>(syn.size()));
  put32(file, 1514);
  append(file, syn);
  auto frames = parsePcap(file);
  ASSERT_TRUE(frames) << frames.error().message();
  ASSERT_EQ(frames->size(), 1u);
  EXPECT_EQ((*frames)[0].timestamp, microseconds(1700000000000042));
  EXPECT_EQ((*frames)[0].wireLength, 1514u);
  EXPECT_EQ((*frames)[0].bytes, syn);
}

TEST(Pcap, BadFilesAreRefusedWithTheReason) {
  Bytes syn = tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1000, 0, 0x02);
  std::string good = pcapFileHeader() + pcapRecord(syn, microseconds(1), syn.size());
  EXPECT_TRUE(parsePcap(fileBytes(pcapFileHeader())));  // no frames: fine

  auto shortFile = parsePcap(fileBytes(good.substr(0, 10)));
  ASSERT_FALSE(shortFile);
  EXPECT_NE(shortFile.error().message().find("too short"), std::string::npos);

  std::string badMagic = good;
  badMagic[0] = 'x';
  auto magic = parsePcap(fileBytes(badMagic));
  ASSERT_FALSE(magic);
  EXPECT_NE(magic.error().message().find("magic"), std::string::npos);

  std::string otherLink = good;
  otherLink[20] = 113;  // Linux cooked capture
  auto link = parsePcap(fileBytes(otherLink));
  ASSERT_FALSE(link);
  EXPECT_NE(link.error().message().find("link type 113"), std::string::npos);

  auto cut = parsePcap(fileBytes(good.substr(0, good.size() - 1)));
  ASSERT_FALSE(cut);
  EXPECT_NE(cut.error().message().find("record 1"), std::string::npos);
  auto cutHeader = parsePcap(fileBytes(good.substr(0, 30)));
  ASSERT_FALSE(cutHeader);
  EXPECT_NE(cutHeader.error().message().find("record 1: truncated record header"), std::string::npos);
}

// Found by tests/fuzz/frames_fuzz.cc: a microsecond field of 1966079 was read as 1.97 s more, so a record
// with seconds 0xffffffff read back as a time that no pcap record can hold.
TEST(Pcap, AFractionOfASecondAboveOneSecondIsRefused) {
  Bytes syn = tcpFrame("10.0.1.4", "10.0.2.5", 41234, 8080, 1000, 0, 0x02);
  std::string good = pcapFileHeader() + pcapRecord(syn, microseconds(1), syn.size());
  Bytes micro = fileBytes(good);
  micro[28] = 0x40, micro[29] = 0x42, micro[30] = 0x0f, micro[31] = 0;  // 1000000 µs
  auto refused = parsePcap(micro);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("record 1: 1000000 microseconds is not below one second"),
            std::string::npos)
      << refused.error().message();
  micro[28] = 0x3f;  // 999999 µs
  auto read = parsePcap(micro);
  ASSERT_TRUE(read) << read.error().message();
  EXPECT_EQ(read->front().timestamp, microseconds(999999));

  Bytes nano = fileBytes(good);
  nano[0] = 0x4d, nano[1] = 0x3c;                                      // 0xa1b23c4d: nanosecond timestamps
  nano[28] = 0x00, nano[29] = 0xca, nano[30] = 0x9a, nano[31] = 0x3b;  // 1000000000 ns
  auto refusedNano = parsePcap(nano);
  ASSERT_FALSE(refusedNano);
  EXPECT_NE(refusedNano.error().message().find("1000000000 nanoseconds is not below one second"),
            std::string::npos)
      << refusedNano.error().message();
}

}  // namespace
}  // namespace corral::net
