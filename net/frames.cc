// Frame decoding, the TCP handshake/close tracker, the trace text and the classic pcap format: pure code,
// every read bounds-checked against the captured bytes.
#include "net/frames.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

namespace corral::net {
namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeArp = 0x0806;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88a8;
constexpr uint8_t kProtocolIcmp = 1;
constexpr uint8_t kProtocolTcp = 6;
constexpr uint8_t kProtocolUdp = 17;
constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

uint16_t be16(std::span<const uint8_t> b, size_t at) {
  return static_cast<uint16_t>(b[at] << 8 | b[at + 1]);
}
uint32_t be32(std::span<const uint8_t> b, size_t at) {
  return uint32_t{b[at]} << 24 | uint32_t{b[at + 1]} << 16 | uint32_t{b[at + 2]} << 8 | uint32_t{b[at + 3]};
}

std::string macText(std::span<const uint8_t> b, size_t at) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[at], b[at + 1], b[at + 2], b[at + 3],
                     b[at + 4], b[at + 5]);
}
std::string ipv4Text(std::span<const uint8_t> b, size_t at) {
  return fmt::format("{}.{}.{}.{}", b[at], b[at + 1], b[at + 2], b[at + 3]);
}

// Decodes the IPv4 packet at `at` (the Ethernet payload) into `frame`.
void decodeIpv4(std::span<const uint8_t> b, size_t at, DecodedFrame& frame) {
  if (b.size() < at + 20) {
    frame.note = "truncated IPv4 header";
    return;
  }
  if (b[at] >> 4 != 4) {
    frame.note = fmt::format("IP version {} in an IPv4 frame: not decoded", b[at] >> 4);
    return;
  }
  const size_t headerLength = size_t{b[at] & 0x0fu} * 4;
  if (headerLength < 20) {
    frame.note = fmt::format("bad IPv4 header length {}", headerLength);
    return;
  }
  if (b.size() < at + headerLength) {
    frame.note = "truncated IPv4 options";
    return;
  }
  Ipv4Header ip;
  ip.headerLength = static_cast<uint8_t>(headerLength);
  ip.totalLength = be16(b, at + 2);
  ip.identification = be16(b, at + 4);
  const uint16_t fragment = be16(b, at + 6);
  ip.dontFragment = (fragment & 0x4000) != 0;
  ip.moreFragments = (fragment & 0x2000) != 0;
  ip.fragmentOffset = static_cast<uint16_t>((fragment & 0x1fff) * 8);
  ip.ttl = b[at + 8];
  ip.protocol = b[at + 9];
  ip.source = ipv4Text(b, at + 12);
  ip.destination = ipv4Text(b, at + 16);
  frame.ipv4 = ip;
  if (ip.totalLength < headerLength) {
    frame.note = fmt::format("bad IPv4 total length {}", ip.totalLength);
    return;
  }
  // Lengths come from the IPv4 header, not the capture: Ethernet pads short frames, snap lengths cut
  // long ones.
  const size_t ipPayload = ip.totalLength - headerLength;
  const size_t l4 = at + headerLength;
  frame.payloadBytes = ipPayload;
  if (ip.fragmentOffset != 0) {
    frame.note = fmt::format("IPv4 fragment at offset {}: not decoded above IPv4", ip.fragmentOffset);
    return;
  }
  // What of the transport header is both captured and inside the IPv4 packet.
  const size_t available = std::min(b.size() - std::min(b.size(), l4), ipPayload);
  switch (ip.protocol) {
    case kProtocolTcp: {
      if (available < 20) {
        frame.note = "truncated TCP header";
        return;
      }
      TcpHeader tcp;
      tcp.sourcePort = be16(b, l4);
      tcp.destinationPort = be16(b, l4 + 2);
      tcp.seq = be32(b, l4 + 4);
      tcp.ack = be32(b, l4 + 8);
      tcp.headerLength = static_cast<uint8_t>((b[l4 + 12] >> 4) * 4);
      tcp.flags = b[l4 + 13];
      tcp.window = be16(b, l4 + 14);
      frame.tcp = tcp;
      if (tcp.headerLength < 20 || tcp.headerLength > ipPayload) {
        frame.note = fmt::format("bad TCP header length {}", tcp.headerLength);
        frame.payloadBytes = 0;
        return;
      }
      frame.payloadBytes = ipPayload - tcp.headerLength;
      if (available < tcp.headerLength) frame.note = "truncated TCP options";
      return;
    }
    case kProtocolUdp: {
      if (available < 8) {
        frame.note = "truncated UDP header";
        return;
      }
      frame.udp =
          UdpHeader{.sourcePort = be16(b, l4), .destinationPort = be16(b, l4 + 2), .length = be16(b, l4 + 4)};
      frame.payloadBytes = ipPayload - 8;
      return;
    }
    case kProtocolIcmp: {
      if (available < 4) {
        frame.note = "truncated ICMP header";
        return;
      }
      IcmpHeader icmp;
      icmp.type = b[l4];
      icmp.code = b[l4 + 1];
      const bool echo = icmp.type == 0 || icmp.type == 8;
      if (echo && available >= 8) {
        icmp.id = be16(b, l4 + 4);
        icmp.sequence = be16(b, l4 + 6);
      } else if (echo) {
        frame.note = "truncated ICMP echo header";
      }
      frame.icmp = icmp;
      frame.payloadBytes = ipPayload >= 8 ? ipPayload - 8 : 0;
      return;
    }
    default:
      frame.note = fmt::format("IP protocol {} not decoded", ip.protocol);
      return;
  }
}

void decodeArp(std::span<const uint8_t> b, size_t at, DecodedFrame& frame) {
  if (b.size() < at + 8) {
    frame.note = "truncated ARP header";
    return;
  }
  // Only the Ethernet/IPv4 kind (hardware 1, protocol 0x0800, lengths 6 and 4) has the fields we name.
  if (be16(b, at) != 1 || be16(b, at + 2) != kEtherTypeIpv4 || b[at + 4] != 6 || b[at + 5] != 4) {
    frame.note = "ARP for other than Ethernet/IPv4: not decoded";
    return;
  }
  if (b.size() < at + 28) {
    frame.note = "truncated ARP packet";
    return;
  }
  frame.arp = ArpPacket{.operation = be16(b, at + 6),
                        .senderMac = macText(b, at + 8),
                        .senderIp = ipv4Text(b, at + 14),
                        .targetMac = macText(b, at + 18),
                        .targetIp = ipv4Text(b, at + 24)};
}

std::string etherTypeName(uint16_t etherType) {
  switch (etherType) {
    case kEtherTypeIpv4:
      return "IPv4";
    case kEtherTypeArp:
      return "ARP";
    case kEtherTypeIpv6:
      return "IPv6";
    default:
      return fmt::format("EtherType 0x{:04x}", etherType);
  }
}

std::string protocolName(uint8_t protocol) {
  switch (protocol) {
    case kProtocolIcmp:
      return "ICMP";
    case kProtocolTcp:
      return "TCP";
    case kProtocolUdp:
      return "UDP";
    default:
      return fmt::format("protocol {}", protocol);
  }
}

std::string icmpText(const IcmpHeader& icmp) {
  std::string text;
  switch (icmp.type) {
    case 0:
      text = "echo reply";
      break;
    case 8:
      text = "echo request";
      break;
    case 3:
      text = fmt::format("destination unreachable (code {})", icmp.code);
      break;
    case 11:
      text = fmt::format("time exceeded (code {})", icmp.code);
      break;
    default:
      text = fmt::format("type {} code {}", icmp.type, icmp.code);
      break;
  }
  if (icmp.id && icmp.sequence) text += fmt::format(" id {} seq {}", *icmp.id, *icmp.sequence);
  return text;
}

std::string endpoint(const std::string& address, uint16_t port) {
  return fmt::format("{}:{}", address, port);
}

// pcap integers in the file's byte order.
struct PcapReader {
  std::span<const uint8_t> file;
  bool bigEndian = false;
  uint32_t u32(size_t at) const {
    if (bigEndian) return be32(file, at);
    return uint32_t{file[at]} | uint32_t{file[at + 1]} << 8 | uint32_t{file[at + 2]} << 16 |
           uint32_t{file[at + 3]} << 24;
  }
  uint16_t u16(size_t at) const {
    return bigEndian ? be16(file, at) : static_cast<uint16_t>(file[at] | file[at + 1] << 8);
  }
};

void putLe32(std::string& out, uint32_t value) {
  for (int shift = 0; shift < 32; shift += 8) out.push_back(static_cast<char>((value >> shift) & 0xff));
}
void putLe16(std::string& out, uint16_t value) {
  out.push_back(static_cast<char>(value & 0xff));
  out.push_back(static_cast<char>(value >> 8));
}

Error badPcap(std::string message) {
  return Error(ErrorKind::InvalidArgument, "pcap: " + std::move(message));
}

}  // namespace

DecodedFrame decodeFrame(std::span<const uint8_t> bytes, std::chrono::microseconds timestamp,
                         size_t wireLength) {
  DecodedFrame frame;
  frame.timestamp = timestamp;
  frame.captured = bytes.size();
  frame.length = wireLength == 0 ? bytes.size() : wireLength;
  if (bytes.size() < 14) {
    frame.note = "truncated Ethernet header";
    return frame;
  }
  EthernetHeader ethernet;
  ethernet.source = macText(bytes, 6);
  ethernet.destination = macText(bytes, 0);
  ethernet.etherType = be16(bytes, 12);
  size_t at = 14;
  // 802.1Q (and 802.1ad outer) tags: the VLAN id of the outermost, the EtherType after the last.
  while (ethernet.etherType == kEtherTypeVlan || ethernet.etherType == kEtherTypeQinQ) {
    if (bytes.size() < at + 4) {
      frame.ethernet = ethernet;
      frame.note = "truncated 802.1Q tag";
      return frame;
    }
    if (!ethernet.vlan) ethernet.vlan = static_cast<uint16_t>(be16(bytes, at) & 0x0fff);
    ethernet.etherType = be16(bytes, at + 2);
    at += 4;
  }
  frame.ethernet = ethernet;
  switch (ethernet.etherType) {
    case kEtherTypeIpv4:
      decodeIpv4(bytes, at, frame);
      break;
    case kEtherTypeArp:
      decodeArp(bytes, at, frame);
      break;
    case kEtherTypeIpv6:
      frame.note = "IPv6 not decoded";
      break;
    default:
      frame.note = fmt::format("{} not decoded", etherTypeName(ethernet.etherType));
      break;
  }
  return frame;
}

std::string tcpFlagsText(uint8_t flags) {
  static constexpr const char* kNames[] = {"FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"};
  std::string text;
  for (int bit = 0; bit < 8; ++bit) {
    if ((flags & (1u << bit)) == 0) continue;
    if (!text.empty()) text += ',';
    text += kNames[bit];
  }
  return text.empty() ? "none" : text;
}

Result<FrameFilter> parseFrameFilter(std::string_view text, std::string_view field) {
  if (text == "all") return FrameFilter::All;
  if (text == "tcp") return FrameFilter::Tcp;
  if (text == "udp") return FrameFilter::Udp;
  if (text == "icmp") return FrameFilter::Icmp;
  if (text == "arp") return FrameFilter::Arp;
  return fail(
      invalidField(std::string(field), "unknown filter \"{}\": expected tcp, udp, icmp, arp or all", text));
}

bool matchesFilter(const DecodedFrame& frame, FrameFilter filter) {
  // By the protocol the lower layer names, so truncated and fragmented packets still match.
  const auto ipProtocol = [&](uint8_t protocol) { return frame.ipv4 && frame.ipv4->protocol == protocol; };
  switch (filter) {
    case FrameFilter::All:
      return true;
    case FrameFilter::Tcp:
      return ipProtocol(kProtocolTcp);
    case FrameFilter::Udp:
      return ipProtocol(kProtocolUdp);
    case FrameFilter::Icmp:
      return ipProtocol(kProtocolIcmp);
    case FrameFilter::Arp:
      return frame.ethernet && frame.ethernet->etherType == kEtherTypeArp;
  }
  return false;
}

std::optional<std::string> TcpConversationTracker::observe(const DecodedFrame& frame) {
  if (!frame.ipv4 || !frame.tcp) return std::nullopt;
  const TcpHeader& tcp = *frame.tcp;
  const std::string from = endpoint(frame.ipv4->source, tcp.sourcePort);
  const std::string to = endpoint(frame.ipv4->destination, tcp.destinationPort);
  auto key =
      std::make_tuple(frame.ipv4->source, tcp.sourcePort, frame.ipv4->destination, tcp.destinationPort);
  auto reversed =
      std::make_tuple(frame.ipv4->destination, tcp.destinationPort, frame.ipv4->source, tcp.sourcePort);
  if (reversed < key) key = reversed;
  const bool syn = tcp.flags & kTcpSyn, ack = tcp.flags & kTcpAck, fin = tcp.flags & kTcpFin;

  const auto handshakeState = [](uint32_t synSeq, const std::string& client) {
    State state;
    state.handshake = 1;
    state.synSeq = synSeq;
    state.client = client;
    return state;
  };

  if (tcp.flags & kTcpRst) {
    connections_.erase(key);
    return "reset (RST)";
  }
  if (syn && !ack) {
    connections_[key] = handshakeState(tcp.seq, from);
    return "handshake 1/3 (SYN)";
  }
  auto found = connections_.find(key);
  if (syn) {
    // A SYN-ACK: it answers the SYN seen (or starts the story when the capture began after the SYN).
    if (found == connections_.end()) {
      found = connections_.emplace(key, handshakeState(tcp.ack - 1, to)).first;
    }
    State& state = found->second;
    if (state.handshake < 1 || state.handshake > 2 || from == state.client || tcp.ack != state.synSeq + 1) {
      return std::nullopt;
    }
    state.handshake = 2;
    state.synAckSeq = tcp.seq;
    return "handshake 2/3 (SYN-ACK)";
  }
  if (fin) {
    if (found == connections_.end()) found = connections_.emplace(key, State{}).first;
    State& state = found->second;
    // A FIN's sequence number comes after its payload; the ACK of it acknowledges that plus one.
    const uint32_t finSeq = tcp.seq + static_cast<uint32_t>(frame.payloadBytes);
    if (state.closing == 0) {
      state.closing = 1;
      state.firstFinSeq = finSeq;
      state.firstFinFrom = from;
      return "close 1/4 (FIN)";
    }
    if (from == state.firstFinFrom || state.closing > 2) return std::nullopt;  // a retransmission
    const bool acksFirstFin = ack && tcp.ack == state.firstFinSeq + 1;
    const bool combined = state.closing == 1 && acksFirstFin;
    state.closing = 3;
    state.secondFinSeq = finSeq;
    return combined ? "close 2+3/4 (FIN-ACK)" : "close 3/4 (FIN)";
  }
  if (!ack || found == connections_.end()) return std::nullopt;
  State& state = found->second;
  if (state.handshake == 2 && from == state.client && tcp.ack == state.synAckSeq + 1) {
    state.handshake = 3;
    return "handshake 3/3 (ACK): connection established";
  }
  if (state.closing == 1 && from != state.firstFinFrom && tcp.ack == state.firstFinSeq + 1) {
    state.closing = 2;
    // Step 2 is the bare ACK. Data that acknowledges the FIN (a server answering a client that shut down
    // its sending side, as `nc -e` does) also moves the close on, but is named for what it is.
    if (frame.payloadBytes > 0) return "data after FIN (half-close): acknowledges the FIN";
    return "close 2/4 (ACK)";
  }
  if (state.closing == 3 && from == state.firstFinFrom && tcp.ack == state.secondFinSeq + 1) {
    connections_.erase(found);
    return "close 4/4 (ACK): connection closed";
  }
  return std::nullopt;
}

std::string etherTypeText(uint16_t type) {
  return fmt::format("0x{:04x}", type);
}

std::string frameSummary(const DecodedFrame& frame) {
  if (frame.arp) {
    const ArpPacket& arp = *frame.arp;
    if (arp.operation == 1)
      return fmt::format("ARP who has {}? tell {} ({})", arp.targetIp, arp.senderIp, arp.senderMac);
    if (arp.operation == 2) return fmt::format("ARP {} is at {}", arp.senderIp, arp.senderMac);
    return fmt::format("ARP operation {} from {}", arp.operation, arp.senderIp);
  }
  if (frame.ipv4) {
    const Ipv4Header& ip = *frame.ipv4;
    if (frame.tcp) {
      std::string text =
          fmt::format("{}:{} → {}:{} TCP [{}]", ip.source, frame.tcp->sourcePort, ip.destination,
                      frame.tcp->destinationPort, tcpFlagsText(frame.tcp->flags));
      if (frame.payloadBytes > 0) text += fmt::format(" {} bytes", frame.payloadBytes);
      return text;
    }
    if (frame.udp) {
      return fmt::format("{}:{} → {}:{} UDP {} bytes", ip.source, frame.udp->sourcePort, ip.destination,
                         frame.udp->destinationPort, frame.payloadBytes);
    }
    if (frame.icmp) {
      std::string kind = frame.icmp->type == 8   ? "echo request"
                         : frame.icmp->type == 0 ? "echo reply"
                         : frame.icmp->type == 3 ? "destination unreachable"
                         : frame.icmp->type == 11
                             ? "time exceeded"
                             : fmt::format("type {} code {}", frame.icmp->type, frame.icmp->code);
      return fmt::format("{} → {} ICMP {}", ip.source, ip.destination, kind);
    }
    return fmt::format("{} → {} IPv4 protocol {}", ip.source, ip.destination, ip.protocol);
  }
  if (frame.ethernet) {
    std::string text = fmt::format("{} → {} EtherType {}", frame.ethernet->source,
                                   frame.ethernet->destination, etherTypeText(frame.ethernet->etherType));
    if (!frame.note.empty()) text += " (" + frame.note + ")";
    return text;
  }
  return frame.note.empty() ? std::string("unreadable frame") : frame.note;
}

std::string describeFrame(const DecodedFrame& frame, size_t number, const std::optional<std::string>& event) {
  const auto micros = frame.timestamp.count();
  std::string text = fmt::format("#{}  {}{}.{:06} s  {} bytes", number, micros < 0 ? "-" : "",
                                 std::abs(micros) / 1000000, std::abs(micros) % 1000000, frame.length);
  if (frame.captured < frame.length) text += fmt::format(" ({} captured)", frame.captured);
  text += '\n';
  if (frame.ethernet) {
    const EthernetHeader& eth = *frame.ethernet;
    text += fmt::format("  Ethernet (L2, the floor's switch): {} → {}, ", eth.source, eth.destination);
    if (eth.vlan) text += fmt::format("VLAN {}, ", *eth.vlan);
    text += etherTypeName(eth.etherType) + '\n';
  }
  if (frame.arp) {
    const ArpPacket& arp = *frame.arp;
    if (arp.operation == 1) {
      text += fmt::format("  ARP (L2 asks for L3): who has {}? tell {} ({})\n", arp.targetIp, arp.senderIp,
                          arp.senderMac);
    } else if (arp.operation == 2) {
      text += fmt::format("  ARP (L2 asks for L3): {} is at {} (to {} at {})\n", arp.senderIp, arp.senderMac,
                          arp.targetIp, arp.targetMac);
    } else {
      text += fmt::format("  ARP (L2 asks for L3): operation {} from {} ({}) to {} ({})\n", arp.operation,
                          arp.senderIp, arp.senderMac, arp.targetIp, arp.targetMac);
    }
  }
  if (frame.ipv4) {
    const Ipv4Header& ip = *frame.ipv4;
    text += fmt::format("  IPv4 (L3, the router): {} → {}, TTL {}, {}", ip.source, ip.destination, ip.ttl,
                        protocolName(ip.protocol));
    if (ip.fragmentOffset != 0 || ip.moreFragments) {
      text += fmt::format(", fragment id {} offset {}{}", ip.identification, ip.fragmentOffset,
                          ip.moreFragments ? " (more follow)" : "");
    }
    text += '\n';
  }
  if (frame.tcp) {
    const TcpHeader& tcp = *frame.tcp;
    text += fmt::format("  TCP (L4): {} → {} [{}] seq {}", tcp.sourcePort, tcp.destinationPort,
                        tcpFlagsText(tcp.flags), tcp.seq);
    if (tcp.flags & kTcpAck) text += fmt::format(" ack {}", tcp.ack);
    text += fmt::format(" win {}\n", tcp.window);
  }
  if (frame.udp) {
    text += fmt::format("  UDP (L4): {} → {}, length {}\n", frame.udp->sourcePort, frame.udp->destinationPort,
                        frame.udp->length);
  }
  if (frame.icmp) text += fmt::format("  ICMP (L3, the router's messages): {}\n", icmpText(*frame.icmp));
  if (frame.ipv4) text += fmt::format("  payload: {} bytes\n", frame.payloadBytes);
  if (!frame.note.empty()) text += fmt::format("  note: {}\n", frame.note);
  if (event) text += fmt::format("  ⇒ {}\n", *event);
  return text;
}

std::string pcapFileHeader(uint32_t snapLength) {
  std::string header;
  putLe32(header, 0xa1b2c3d4);
  putLe16(header, 2);
  putLe16(header, 4);
  putLe32(header, 0);  // thiszone: timestamps are UTC
  putLe32(header, 0);  // sigfigs
  putLe32(header, snapLength);
  putLe32(header, 1);  // LINKTYPE_ETHERNET
  return header;
}

std::string pcapRecord(std::span<const uint8_t> bytes, std::chrono::microseconds timestamp,
                       size_t wireLength) {
  std::string record;
  const auto micros = timestamp.count();
  putLe32(record, static_cast<uint32_t>(micros / 1000000));
  putLe32(record, static_cast<uint32_t>(micros % 1000000));
  putLe32(record, static_cast<uint32_t>(bytes.size()));
  putLe32(record, static_cast<uint32_t>(std::max(wireLength, bytes.size())));
  record.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  return record;
}

Result<std::vector<PcapFrame>> parsePcap(std::span<const uint8_t> file) {
  if (file.size() < 24)
    return fail(badPcap(fmt::format("{} bytes is too short for the file header", file.size())));
  PcapReader reader{.file = file};
  const uint32_t magic = reader.u32(0);
  bool nanoseconds = false;
  if (magic == 0xa1b2c3d4 || magic == 0xa1b23c4d) {
    nanoseconds = magic == 0xa1b23c4d;
  } else {
    reader.bigEndian = true;
    const uint32_t swapped = reader.u32(0);
    if (swapped != 0xa1b2c3d4 && swapped != 0xa1b23c4d) {
      return fail(badPcap(fmt::format("magic 0x{:08x} is not a classic pcap file's", magic)));
    }
    nanoseconds = swapped == 0xa1b23c4d;
  }
  if (reader.u16(4) != 2)
    return fail(badPcap(fmt::format("version {}.{} is not 2.x", reader.u16(4), reader.u16(6))));
  if (const uint32_t linkType = reader.u32(20); linkType != 1) {
    return fail(badPcap(fmt::format("link type {} is not Ethernet (1)", linkType)));
  }
  std::vector<PcapFrame> frames;
  size_t at = 24;
  while (at < file.size()) {
    const size_t number = frames.size() + 1;
    if (file.size() - at < 16)
      return fail(badPcap(fmt::format("record {}: truncated record header", number)));
    const uint64_t seconds = reader.u32(at), fraction = reader.u32(at + 4);
    const size_t included = reader.u32(at + 8), original = reader.u32(at + 12);
    at += 16;
    // A fraction of a second is below one second; a writer that says otherwise wrote a broken file (and
    // its timestamp could not be written back).
    if (const uint64_t perSecond = nanoseconds ? 1'000'000'000 : 1'000'000; fraction >= perSecond) {
      return fail(badPcap(fmt::format("record {}: {} {} is not below one second", number, fraction,
                                      nanoseconds ? "nanoseconds" : "microseconds")));
    }
    if (file.size() - at < included) {
      return fail(badPcap(fmt::format("record {}: {} bytes announced, {} left in the file", number, included,
                                      file.size() - at)));
    }
    PcapFrame frame;
    frame.timestamp = std::chrono::microseconds(
        static_cast<int64_t>(seconds * 1000000 + (nanoseconds ? fraction / 1000 : fraction)));
    frame.wireLength = std::max(original, included);
    frame.bytes.assign(file.begin() + static_cast<std::ptrdiff_t>(at),
                       file.begin() + static_cast<std::ptrdiff_t>(at + included));
    at += included;
    frames.push_back(std::move(frame));
  }
  return frames;
}

}  // namespace corral::net
