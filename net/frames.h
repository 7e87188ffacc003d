// Decoding captured Ethernet frames layer by layer, the way a learner reads them: Ethernet (the switch's
// L2: MACs, EtherType), ARP, IPv4 (the router's L3: addresses, TTL, protocol), TCP (ports, flags,
// seq/ack, window), UDP, ICMP, and the payload size; and naming TCP's 3-way handshake and 4-way close
// when a sequence of frames shows them. Pure: bytes in, structs and text out (unit tested on captured
// bytes and compared with tshark's reading of the same capture). Also the classic pcap file format, which
// Wireshark and tshark open.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <tuple>
#include <vector>

#include "core/error.h"

namespace corral::net {

struct EthernetHeader {
  std::string source;       // "02:c0:aa:bb:cc:dd"
  std::string destination;  // "ff:ff:ff:ff:ff:ff" for broadcast
  uint16_t etherType = 0;   // 0x0800 IPv4, 0x0806 ARP, 0x86dd IPv6 (after any 802.1Q tag)
  std::optional<uint16_t> vlan;
};

struct ArpPacket {
  uint16_t operation = 0;  // 1 request, 2 reply
  std::string senderMac, senderIp, targetMac, targetIp;
};

struct Ipv4Header {
  std::string source, destination;  // dotted quads
  uint8_t ttl = 0;
  uint8_t protocol = 0;  // 1 ICMP, 6 TCP, 17 UDP
  uint16_t totalLength = 0;
  uint16_t identification = 0;
  bool dontFragment = false, moreFragments = false;
  uint16_t fragmentOffset = 0;  // in bytes
  uint8_t headerLength = 0;     // bytes
};

struct TcpHeader {
  uint16_t sourcePort = 0, destinationPort = 0;
  uint32_t seq = 0, ack = 0;
  uint8_t flags = 0;  // FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80
  uint16_t window = 0;
  uint8_t headerLength = 0;  // bytes, options included
};

struct UdpHeader {
  uint16_t sourcePort = 0, destinationPort = 0;
  uint16_t length = 0;
};

struct IcmpHeader {
  uint8_t type = 0, code = 0;  // 8/0 echo request, 0/0 echo reply, 3/x unreachable, 11/0 TTL exceeded
  std::optional<uint16_t> id, sequence;  // echo only
};

// One frame, as far as it could be read: layers that are absent or cut short stay empty, and `note`
// says why decoding stopped ("truncated TCP header", "IPv6 not decoded").
struct DecodedFrame {
  std::chrono::microseconds timestamp{0};  // since the epoch
  size_t length = 0;                       // on the wire
  size_t captured = 0;                     // bytes we have
  std::optional<EthernetHeader> ethernet;
  std::optional<ArpPacket> arp;
  std::optional<Ipv4Header> ipv4;
  std::optional<TcpHeader> tcp;
  std::optional<UdpHeader> udp;
  std::optional<IcmpHeader> icmp;
  size_t payloadBytes = 0;  // above the transport header (or above IPv4 for other protocols)
  std::string note;
};

DecodedFrame decodeFrame(std::span<const uint8_t> bytes, std::chrono::microseconds timestamp = {},
                         size_t wireLength = 0);  // 0: bytes.size()

// "SYN", "SYN,ACK", "FIN,ACK", "RST": the set flags in tcpdump's order.
std::string tcpFlagsText(uint8_t flags);

// --filter: tcp | udp | icmp | arp | all. Unknown text: InvalidArgument naming `field`.
enum class FrameFilter { All, Tcp, Udp, Icmp, Arp };
Result<FrameFilter> parseFrameFilter(std::string_view text, std::string_view field = "filter");
bool matchesFilter(const DecodedFrame& frame, FrameFilter filter);

// Follows TCP connections across frames (keyed by the 4-tuple, either direction) and says when a frame
// completes a step of the 3-way handshake or the 4-way close: "handshake 1/3 (SYN)", "handshake 2/3
// (SYN-ACK)", "handshake 3/3 (ACK): connection established", "close 1/4 (FIN)", ..., "close 4/4 (ACK):
// connection closed", "reset (RST)". Step 2/4 is a bare ACK of the first FIN; when the other side's FIN
// itself acknowledges it, that frame is "close 2+3/4 (FIN-ACK)", and when data acknowledges it (the other
// side still sends after a half-close) "data after FIN (half-close): acknowledges the FIN", after which its
// FIN is step 3/4. nullopt for frames that are none of these.
class TcpConversationTracker {
 public:
  std::optional<std::string> observe(const DecodedFrame& frame);

 private:
  struct State {
    int handshake = 0;  // steps seen
    uint32_t synSeq = 0, synAckSeq = 0;
    std::string client;  // "address:port" of the side that sent the SYN
    int closing = 0;
    uint32_t firstFinSeq = 0, secondFinSeq = 0;
    std::string firstFinFrom;
  };
  std::map<std::tuple<std::string, uint16_t, std::string, uint16_t>, State> connections_;
};

// The layer-by-layer text `corral trace` prints for one frame (several lines, indented), in
// CONCEPTS.md's words (switch/L2 for Ethernet, router/L3 for IPv4, ports/L4), with `event` (from the
// tracker) appended when present. `number` is the frame's index in the capture (1-based). The first line
// is the frame's header ("#3  T s  74 bytes", T the timestamp as given); `corral trace` replaces it with
// one whose time counts from the first frame shown (cli/trace.cc), so keep the layers below it.
std::string describeFrame(const DecodedFrame& frame, size_t number, const std::optional<std::string>& event);

// One line per frame, as the trace's list shows it: "10.0.1.4:41234 → 10.0.2.5:8080 TCP [SYN]".
std::string frameSummary(const DecodedFrame& frame);
// "0x0800"
std::string etherTypeText(uint16_t type);

// ---- pcap (libpcap's classic format, microsecond timestamps, LINKTYPE_ETHERNET) ----

std::string pcapFileHeader(uint32_t snapLength = 65535);
std::string pcapRecord(std::span<const uint8_t> bytes, std::chrono::microseconds timestamp,
                       size_t wireLength);

struct PcapFrame {
  std::chrono::microseconds timestamp{0};
  size_t wireLength = 0;
  std::vector<uint8_t> bytes;
};
// Reads a whole classic pcap file's frames (both byte orders); errors say what is wrong with it.
Result<std::vector<PcapFrame>> parsePcap(std::span<const uint8_t> file);

}  // namespace corral::net
