// Gratuitous ARP: the frame (pure) and sending it with an AF_PACKET socket inside the NIC's namespace.
#include "net/announce.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstdio>
#include <system_error>
#include <thread>
#include <utility>

#include "core/unique_fd.h"
#include "net/netns.h"
#include "schema/cidr.h"

namespace corral::net {
namespace {

Result<std::array<uint8_t, 6>> parseMac(std::string_view text) {
  std::array<unsigned, 6> parts{};
  char end = 0;
  const std::string copy(text);
  if (text.size() != 17 || std::sscanf(copy.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &parts[0], &parts[1],
                                       &parts[2], &parts[3], &parts[4], &parts[5], &end) != 6) {
    return fail(invalidField("mac", "\"{}\" is not a MAC address (six hex pairs separated by ':')", text));
  }
  std::array<uint8_t, 6> bytes{};
  for (size_t i = 0; i < parts.size(); ++i) bytes[i] = static_cast<uint8_t>(parts[i]);
  return bytes;
}

void put16(std::vector<uint8_t>& out, uint16_t value) {
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value & 0xff));
}

void putAddress(std::vector<uint8_t>& out, const schema::Ipv4Address& address) {
  for (int i = 0; i < 4; ++i) out.push_back(address.octet(i));
}

// Closing an AF_PACKET socket waits for an RCU grace period (packet_release: synchronize_net), measured
// at 10-15 ms here: most of an attach, for nothing the attach needs. The close happens off its path.
void closeInBackground(UniqueFd fd) {
  try {
    std::thread([owned = std::move(fd)] {}).detach();
  } catch (const std::system_error&) {
    // No thread: closed here, when `fd` goes.
  }
}

}  // namespace

Result<std::vector<uint8_t>> gratuitousArp(std::string_view mac, std::string_view address) {
  auto sender = parseMac(mac);
  if (!sender) return fail(std::move(sender).error());
  auto ip = schema::Ipv4Address::parse(address, "address");
  if (!ip) return fail(std::move(ip).error());
  std::vector<uint8_t> frame;
  frame.reserve(42);
  frame.insert(frame.end(), 6, 0xff);                         // Ethernet: to everyone on the switch
  frame.insert(frame.end(), sender->begin(), sender->end());  // from the NIC
  put16(frame, ETH_P_ARP);
  put16(frame, 1);  // hardware: Ethernet
  put16(frame, ETH_P_IP);
  frame.push_back(6);  // MAC length
  frame.push_back(4);  // IPv4 address length
  put16(frame, 1);     // a request ("who has ADDRESS? tell ADDRESS"), as Linux's arp_notify sends
  frame.insert(frame.end(), sender->begin(), sender->end());
  putAddress(frame, *ip);
  frame.insert(frame.end(), 6, 0x00);
  putAddress(frame, *ip);
  return frame;
}

Status announceAddress(int netnsFd, std::string_view label, const std::string& link, const std::string& mac,
                       const std::string& address) {
  const std::string context =
      fmt::format("announce {} at {} on link \"{}\" (gratuitous ARP)", address, mac, link);
  auto frame = gratuitousArp(mac, address);
  if (!frame) return fail(std::move(frame).error().wrap(context));
  Status sent = runInNetnsFd(netnsFd, label, [&]() -> Status {
    const unsigned index = ::if_nametoindex(link.c_str());
    if (index == 0) return fail(systemError(errno, fmt::format("if_nametoindex(\"{}\")", link)));
    UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
    if (!fd) return fail(systemError(errno, "socket(AF_PACKET, SOCK_RAW)"));
    sockaddr_ll to{};
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_ARP);
    to.sll_ifindex = static_cast<int>(index);
    to.sll_halen = 6;
    for (int i = 0; i < 6; ++i) to.sll_addr[i] = 0xff;
    const ssize_t n = ::sendto(fd.get(), frame->data(), frame->size(), 0,
                               reinterpret_cast<const sockaddr*>(&to), sizeof to);
    const int sendError = n < 0 ? errno : EIO;
    closeInBackground(std::move(fd));
    if (n != static_cast<ssize_t>(frame->size())) {
      return fail(systemError(sendError,
                              fmt::format("sendto(AF_PACKET, ifindex {}, {} bytes)", index, frame->size())));
    }
    return {};
  });
  if (!sent) return fail(std::move(sent).error().wrap(context));
  return {};
}

}  // namespace corral::net
