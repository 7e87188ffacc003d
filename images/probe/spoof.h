// corral-probe --spoof: sends a few hand-made frames out of eth0 that carry someone else's address (or a
// VLAN tag), as an attacker with CAP_NET_RAW would, so tests can check the VPC's port guards
// (docs/networking.md, "Source check") from inside a container or a VM. The frame builders are pure
// functions, checked by tests/unit/container/probe_test.cc.
#pragma once

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netpacket/packet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace corral::probe {

using MacAddress = std::array<uint8_t, 6>;

inline constexpr std::string_view kSpoofPayload = "corral-spoof\n";
inline constexpr int kSpoofFrames = 3;

inline std::optional<MacAddress> parseMac(std::string_view text) {
  MacAddress mac{};
  unsigned parts[6];
  char tail = 0;
  const std::string copy(text);
  if (std::sscanf(copy.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &parts[0], &parts[1], &parts[2], &parts[3],
                  &parts[4], &parts[5], &tail) != 6) {
    return std::nullopt;
  }
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(parts[i]);
  return mac;
}

inline std::string macText(const MacAddress& mac) {
  char text[18];
  std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3], mac[4],
                mac[5]);
  return text;
}

// Network byte order, as in_addr holds it.
inline std::optional<uint32_t> parseIpv4(std::string_view text) {
  in_addr address{};
  if (::inet_pton(AF_INET, std::string(text).c_str(), &address) != 1) return std::nullopt;
  return address.s_addr;
}

inline std::string ipv4Text(uint32_t address) {
  char text[INET_ADDRSTRLEN] = {};
  in_addr in{.s_addr = address};
  ::inet_ntop(AF_INET, &in, text, sizeof text);
  return text;
}

namespace frame {

inline void put16(std::vector<uint8_t>& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value & 0xff));
}

inline void putBytes(std::vector<uint8_t>& out, const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  out.insert(out.end(), bytes, bytes + size);
}

inline uint16_t ipChecksum(const uint8_t* header, size_t size) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < size; i += 2) sum += static_cast<uint32_t>(header[i] << 8 | header[i + 1]);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

inline void ethernetHeader(std::vector<uint8_t>& out, const MacAddress& to, const MacAddress& from,
                           std::optional<uint16_t> vlan, uint16_t etherType) {
  putBytes(out, to.data(), to.size());
  putBytes(out, from.data(), from.size());
  if (vlan) {
    put16(out, 0x8100);
    put16(out, *vlan & 0x0fff);
  }
  put16(out, etherType);
}

}  // namespace frame

// Ethernet (+ an 802.1Q tag when `vlan`) / IPv4 / UDP carrying kSpoofPayload to `port`. Addresses in
// network byte order. The UDP checksum is 0 ("none"), which IPv4 receivers accept.
inline std::vector<uint8_t> udpFrame(const MacAddress& to, const MacAddress& from, uint32_t sourceIp,
                                     uint32_t destinationIp, uint16_t port,
                                     std::optional<uint16_t> vlan = std::nullopt) {
  std::vector<uint8_t> out;
  frame::ethernetHeader(out, to, from, vlan, 0x0800);
  const size_t ipStart = out.size();
  const uint16_t udpLength = static_cast<uint16_t>(8 + kSpoofPayload.size());
  out.push_back(0x45);  // IPv4, 20-byte header
  out.push_back(0);
  frame::put16(out, static_cast<uint16_t>(20 + udpLength));
  frame::put16(out, 0x5350);  // identification
  frame::put16(out, 0x4000);  // don't fragment
  out.push_back(64);          // ttl
  out.push_back(17);          // udp
  frame::put16(out, 0);       // checksum, below
  frame::putBytes(out, &sourceIp, 4);
  frame::putBytes(out, &destinationIp, 4);
  const uint16_t checksum = frame::ipChecksum(out.data() + ipStart, 20);
  out[ipStart + 10] = static_cast<uint8_t>(checksum >> 8);
  out[ipStart + 11] = static_cast<uint8_t>(checksum & 0xff);
  frame::put16(out, 40000);  // source port
  frame::put16(out, port);
  frame::put16(out, udpLength);
  frame::put16(out, 0);
  frame::putBytes(out, kSpoofPayload.data(), kSpoofPayload.size());
  return out;
}

// An ARP reply "`claimedIp` is at `from`", sent to `to` / `targetIp`.
inline std::vector<uint8_t> arpReply(const MacAddress& to, const MacAddress& from, uint32_t claimedIp,
                                     uint32_t targetIp) {
  std::vector<uint8_t> out;
  frame::ethernetHeader(out, to, from, std::nullopt, 0x0806);
  frame::put16(out, 1);       // Ethernet
  frame::put16(out, 0x0800);  // IPv4
  out.push_back(6);
  out.push_back(4);
  frame::put16(out, 2);  // reply
  frame::putBytes(out, from.data(), from.size());
  frame::putBytes(out, &claimedIp, 4);
  frame::putBytes(out, to.data(), to.size());
  frame::putBytes(out, &targetIp, 4);
  while (out.size() < 60) out.push_back(0);  // Ethernet minimum without the FCS
  return out;
}

// The next hop towards `destination` (network byte order) from /proc/net/route's text: the gateway of
// the longest matching route, or the destination itself when it is on-link. nullopt without a route.
inline std::optional<uint32_t> nextHop(std::string_view routeTable, uint32_t destination) {
  std::istringstream lines{std::string(routeTable)};
  std::string line;
  std::getline(lines, line);  // header
  std::optional<uint32_t> best;
  int bestPrefix = -1;
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string device, dest, gateway, flags, refcnt, use, metric, mask;
    if (!(fields >> device >> dest >> gateway >> flags >> refcnt >> use >> metric >> mask)) continue;
    // The kernel prints these in host order of the in-memory (network order) value.
    const auto destValue = static_cast<uint32_t>(std::stoul(dest, nullptr, 16));
    const auto gatewayValue = static_cast<uint32_t>(std::stoul(gateway, nullptr, 16));
    const auto maskValue = static_cast<uint32_t>(std::stoul(mask, nullptr, 16));
    if ((destination & maskValue) != destValue) continue;
    const int prefix = __builtin_popcount(maskValue);
    if (prefix <= bestPrefix) continue;
    bestPrefix = prefix;
    best = gatewayValue != 0 ? gatewayValue : destination;
  }
  return best;
}

// The complete entry for `address` in /proc/net/arp's text.
inline std::optional<MacAddress> arpEntry(std::string_view arpTable, uint32_t address) {
  std::istringstream lines{std::string(arpTable)};
  std::string line;
  std::getline(lines, line);  // header
  while (std::getline(lines, line)) {
    std::istringstream fields(line);
    std::string ip, type, flags, mac;
    if (!(fields >> ip >> type >> flags >> mac)) continue;
    if (parseIpv4(ip) != address || (std::stoul(flags, nullptr, 16) & 0x2) == 0) continue;
    return parseMac(mac);
  }
  return std::nullopt;
}

inline std::string readWholeFile(const char* path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct SpoofOutcome {
  std::string kind;
  std::string device = "eth0";
  std::string sourceMac, sourceIp, destinationMac, destinationIp;
  int frames = 0;
  std::string error;
};

// `args`: KIND then its operands (see spoofUsage). Sends kSpoofFrames frames out of eth0.
inline SpoofOutcome spoof(const std::vector<std::string_view>& args) {
  SpoofOutcome outcome;
  auto failWith = [&](std::string why) {
    outcome.error = std::move(why);
    return outcome;
  };
  if (args.empty()) return failWith("missing KIND");
  outcome.kind = std::string(args[0]);
  if (outcome.kind != "ip" && outcome.kind != "mac" && outcome.kind != "arp" && outcome.kind != "vlan")
    return failWith("unknown KIND \"" + outcome.kind + "\"");
  const size_t operands = outcome.kind == "ip" || outcome.kind == "mac" ? 3 : 2;
  if (args.size() != 1 + operands) return failWith("wrong number of operands for " + outcome.kind);

  const unsigned index = ::if_nametoindex(outcome.device.c_str());
  if (index == 0) return failWith("if_nametoindex(eth0): " + std::string(std::strerror(errno)));
  const int query = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (query < 0) return failWith("socket(AF_INET): " + std::string(std::strerror(errno)));
  ifreq request{};
  std::strncpy(request.ifr_name, outcome.device.c_str(), IFNAMSIZ - 1);
  MacAddress ownMac{};
  uint32_t ownIp = 0;
  if (::ioctl(query, SIOCGIFHWADDR, &request) == 0) std::memcpy(ownMac.data(), request.ifr_hwaddr.sa_data, 6);
  if (::ioctl(query, SIOCGIFADDR, &request) == 0)
    ownIp = reinterpret_cast<sockaddr_in*>(&request.ifr_addr)->sin_addr.s_addr;

  const std::string_view toText = outcome.kind == "vlan" ? args[1] : args[2];
  const auto to = parseIpv4(toText);
  if (!to) {
    ::close(query);
    return failWith("TO_IP \"" + std::string(toText) + "\" is not an IPv4 address");
  }
  outcome.destinationIp = ipv4Text(*to);
  uint16_t port = 9;
  if (outcome.kind != "arp") {
    const std::string portText(args.back());
    port = static_cast<uint16_t>(std::strtoul(portText.c_str(), nullptr, 10));
  }

  // The next hop's MAC: the kernel resolves it when a real datagram goes there first.
  const auto hop = nextHop(readWholeFile("/proc/net/route"), *to);
  if (!hop) {
    ::close(query);
    return failWith("no route to " + outcome.destinationIp);
  }
  sockaddr_in discard{};
  discard.sin_family = AF_INET;
  discard.sin_port = htons(9);
  discard.sin_addr.s_addr = *to;
  std::optional<MacAddress> hopMac;
  for (int attempt = 0; attempt < 30 && !hopMac; ++attempt) {
    if (attempt % 10 == 0) ::sendto(query, "", 0, 0, reinterpret_cast<sockaddr*>(&discard), sizeof discard);
    hopMac = arpEntry(readWholeFile("/proc/net/arp"), *hop);
    if (!hopMac) {
      timespec pause{0, 100'000'000};
      ::nanosleep(&pause, nullptr);
    }
  }
  ::close(query);
  if (!hopMac) return failWith("the next hop " + ipv4Text(*hop) + " did not answer ARP");

  MacAddress sourceMac = ownMac;
  uint32_t sourceIp = ownIp;
  std::vector<uint8_t> bytes;
  if (outcome.kind == "ip") {
    const auto fake = parseIpv4(args[1]);
    if (!fake) return failWith("FAKE_IP \"" + std::string(args[1]) + "\" is not an IPv4 address");
    sourceIp = *fake;
    bytes = udpFrame(*hopMac, sourceMac, sourceIp, *to, port);
  } else if (outcome.kind == "mac") {
    const auto fake = parseMac(args[1]);
    if (!fake) return failWith("FAKE_MAC \"" + std::string(args[1]) + "\" is not a MAC address");
    sourceMac = *fake;
    bytes = udpFrame(*hopMac, sourceMac, sourceIp, *to, port);
  } else if (outcome.kind == "arp") {
    const auto claimed = parseIpv4(args[1]);
    if (!claimed) return failWith("CLAIMED_IP \"" + std::string(args[1]) + "\" is not an IPv4 address");
    sourceIp = *claimed;
    bytes = arpReply(*hopMac, sourceMac, sourceIp, *to);
  } else {
    bytes = udpFrame(*hopMac, sourceMac, sourceIp, *to, port, uint16_t{7});
  }
  outcome.sourceMac = macText(sourceMac);
  outcome.sourceIp = ipv4Text(sourceIp);
  outcome.destinationMac = macText(*hopMac);

  const int raw = ::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
  if (raw < 0) return failWith("socket(AF_PACKET, SOCK_RAW): " + std::string(std::strerror(errno)));
  sockaddr_ll link{};
  link.sll_family = AF_PACKET;
  link.sll_ifindex = static_cast<int>(index);
  link.sll_halen = 6;
  std::memcpy(link.sll_addr, hopMac->data(), 6);
  for (int i = 0; i < kSpoofFrames; ++i) {
    if (::sendto(raw, bytes.data(), bytes.size(), 0, reinterpret_cast<sockaddr*>(&link), sizeof link) < 0) {
      outcome.error = "sendto(AF_PACKET): " + std::string(std::strerror(errno));
      break;
    }
    ++outcome.frames;
    timespec pause{0, 20'000'000};
    ::nanosleep(&pause, nullptr);
  }
  ::close(raw);
  return outcome;
}

inline std::string spoofUsage() {
  return "  --spoof ip FAKE_IP TO_IP PORT     UDP to TO_IP:PORT from FAKE_IP (our MAC)\n"
         "  --spoof mac FAKE_MAC TO_IP PORT   UDP to TO_IP:PORT from our IP with source MAC FAKE_MAC\n"
         "  --spoof arp CLAIMED_IP TO_IP      ARP reply to TO_IP: \"CLAIMED_IP is at our MAC\"\n"
         "  --spoof vlan TO_IP PORT           UDP from our addresses, tagged VLAN 7\n"
         "  Each sends 3 frames out of eth0 to the next hop's MAC (needs CAP_NET_RAW).\n";
}

}  // namespace corral::probe
