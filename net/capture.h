// Capturing frames on a link inside a network namespace (a subnet's bridge, an instance's port) with an
// AF_PACKET socket: no libpcap, no tcpdump. The socket is made from a helper thread that setns()es into
// the namespace, so the caller's thread never changes namespace; after that it works from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"

namespace corral::net {

struct CapturedFrame {
  std::chrono::microseconds timestamp{0};  // kernel receive time, since the epoch
  size_t wireLength = 0;
  std::vector<uint8_t> bytes;  // at most the snap length
  bool outgoing = false;       // PACKET_OUTGOING: sent by this link rather than received
};

class PacketCapture {
 public:
  // Binds to `link` in named namespace `netns` (empty: the caller's). Promiscuous on that link only while
  // open. NotFound when the link or namespace does not exist.
  static Result<PacketCapture> open(const std::string& netns, const std::string& link,
                                    uint32_t snapLength = 65535);
  // The next frame within `timeout`; nullopt when none came.
  Result<std::optional<CapturedFrame>> next(std::chrono::milliseconds timeout);
  const std::string& link() const { return link_; }

 private:
  PacketCapture(UniqueFd fd, std::string link, uint32_t snapLength)
      : fd_(std::move(fd)), link_(std::move(link)), snapLength_(snapLength) {}
  UniqueFd fd_;
  std::string link_;
  uint32_t snapLength_;
};

}  // namespace corral::net
