// Capturing frames with an AF_PACKET socket made inside the link's namespace: promiscuous membership on
// that link only (dropped by the kernel when the socket closes), kernel receive timestamps.
#include "net/capture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <thread>

#include "net/netlink.h"

namespace corral::net {
namespace {

std::string where(const std::string& netns, const std::string& link) {
  return netns.empty() ? fmt::format("capture on link \"{}\"", link)
                       : fmt::format("capture on link \"{}\" in namespace \"{}\"", link, netns);
}

// In the namespace the calling thread is in: the bound, promiscuous, timestamping socket.
Result<UniqueFd> openPacketSocketHere(const std::string& link) {
  const unsigned index = ::if_nametoindex(link.c_str());
  if (index == 0) {
    if (errno == ENODEV) return fail(notFound("no link \"{}\"", link));
    return fail(systemError(errno, fmt::format("if_nametoindex(\"{}\")", link)));
  }
  // Protocol 0 until bound: a socket made with ETH_P_ALL would queue every link's frames in the gap
  // between socket() and bind().
  UniqueFd fd(::socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0));
  if (!fd) return fail(systemError(errno, "socket(AF_PACKET, SOCK_RAW)"));
  int one = 1;
  if (::setsockopt(fd.get(), SOL_SOCKET, SO_TIMESTAMP, &one, sizeof one) != 0) {
    return fail(systemError(errno, "setsockopt(SO_TIMESTAMP)"));
  }
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ALL);
  address.sll_ifindex = static_cast<int>(index);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return fail(systemError(errno, fmt::format("bind(AF_PACKET, ifindex {})", index)));
  }
  packet_mreq membership{};
  membership.mr_ifindex = static_cast<int>(index);
  membership.mr_type = PACKET_MR_PROMISC;
  if (::setsockopt(fd.get(), SOL_PACKET, PACKET_ADD_MEMBERSHIP, &membership, sizeof membership) != 0) {
    return fail(systemError(errno, "setsockopt(PACKET_ADD_MEMBERSHIP, PACKET_MR_PROMISC)"));
  }
  return fd;
}

}  // namespace

Result<PacketCapture> PacketCapture::open(const std::string& netns, const std::string& link,
                                          uint32_t snapLength) {
  if (snapLength == 0)
    return fail(invalidField("snapLength", "{}: the snap length must be positive", where(netns, link)));
  Result<UniqueFd> fd = fail(internalError("not run"));
  if (netns.empty()) {
    fd = openPacketSocketHere(link);
  } else {
    auto nsFd = openNetns(netns);
    if (!nsFd) return fail(std::move(nsFd).error().wrap(where(netns, link)));
    // The socket keeps the namespace it was made in; only this short-lived thread ever changes namespace.
    std::thread([&] {
      if (::setns(nsFd->get(), CLONE_NEWNET) != 0) {
        fd = fail(systemError(errno, fmt::format("setns(\"{}\")", netns)));
        return;
      }
      fd = openPacketSocketHere(link);
    }).join();
  }
  if (!fd) return fail(std::move(fd).error().wrap(where(netns, link)));
  return PacketCapture(std::move(*fd), link, snapLength);
}

Result<std::optional<CapturedFrame>> PacketCapture::next(std::chrono::milliseconds timeout) {
  pollfd p{.fd = fd_.get(), .events = POLLIN, .revents = 0};
  const int ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(timeout.count(), 0)));
  if (ready < 0) {
    if (errno == EINTR) return std::nullopt;
    return fail(systemError(errno, "poll").wrap(fmt::format("capture on link \"{}\"", link_)));
  }
  if (ready == 0) return std::nullopt;

  CapturedFrame frame;
  frame.bytes.resize(snapLength_);
  sockaddr_ll from{};
  iovec iov{.iov_base = frame.bytes.data(), .iov_len = frame.bytes.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(timeval))];
  msghdr message{};
  message.msg_name = &from;
  message.msg_namelen = sizeof from;
  message.msg_iov = &iov;
  message.msg_iovlen = 1;
  message.msg_control = control;
  message.msg_controllen = sizeof control;
  // MSG_TRUNC: a packet socket then returns the frame's full length even when the buffer held less.
  const ssize_t length = ::recvmsg(fd_.get(), &message, MSG_TRUNC | MSG_DONTWAIT);
  if (length < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return std::nullopt;
    return fail(systemError(errno, "recvmsg").wrap(fmt::format("capture on link \"{}\"", link_)));
  }
  frame.wireLength = static_cast<size_t>(length);
  frame.bytes.resize(std::min<size_t>(frame.wireLength, snapLength_));
  frame.outgoing = from.sll_pkttype == PACKET_OUTGOING;
  for (cmsghdr* c = CMSG_FIRSTHDR(&message); c != nullptr; c = CMSG_NXTHDR(&message, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMP) {
      timeval tv{};
      std::memcpy(&tv, CMSG_DATA(c), sizeof tv);
      frame.timestamp = std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec);
    }
  }
  if (frame.timestamp.count() == 0) {
    // No timestamp came with it (should not happen with SO_TIMESTAMP): the time of reading is the next best.
    frame.timestamp = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::system_clock::now().time_since_epoch());
  }
  return frame;
}

}  // namespace corral::net
