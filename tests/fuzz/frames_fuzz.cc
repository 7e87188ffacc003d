// libFuzzer target: the frame decoder and the pcap reader (net/frames.h), which read bytes captured off a
// bridge or a pcap file handed to `corral trace`. The input is decoded as one frame and read as a pcap
// file; each frame of the file is decoded, followed by the TCP tracker, described, and written back as a
// pcap record that must read back the same.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "net/frames.h"
#include "tests/fuzz/fuzz_check.h"

using namespace corral;

namespace {

void decodeAndDescribe(std::span<const uint8_t> bytes, std::chrono::microseconds timestamp, size_t wireLength,
                       size_t number, net::TcpConversationTracker& tracker) {
  net::DecodedFrame frame = net::decodeFrame(bytes, timestamp, wireLength);
  FUZZ_REQUIRE(frame.captured == bytes.size(), frame.note);
  std::optional<std::string> event = tracker.observe(frame);
  net::describeFrame(frame, number, event);
  for (auto filter : {net::FrameFilter::All, net::FrameFilter::Tcp, net::FrameFilter::Udp,
                      net::FrameFilter::Icmp, net::FrameFilter::Arp}) {
    (void)net::matchesFilter(frame, filter);
  }
  if (frame.tcp) net::tcpFlagsText(frame.tcp->flags);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  net::TcpConversationTracker tracker;
  decodeAndDescribe(input, {}, 0, 1, tracker);

  auto frames = net::parsePcap(input);
  if (!frames) return 0;
  for (size_t i = 0; i < frames->size(); ++i) {
    const net::PcapFrame& frame = (*frames)[i];
    FUZZ_REQUIRE(frame.wireLength >= frame.bytes.size(), "wire length below the captured length");
    decodeAndDescribe(frame.bytes, frame.timestamp, frame.wireLength, i + 1, tracker);

    std::string file =
        net::pcapFileHeader() + net::pcapRecord(frame.bytes, frame.timestamp, frame.wireLength);
    auto reread = net::parsePcap(std::span(reinterpret_cast<const uint8_t*>(file.data()), file.size()));
    FUZZ_REQUIRE(reread && reread->size() == 1, reread ? "not one frame" : reread.error().message());
    const net::PcapFrame& back = reread->front();
    FUZZ_REQUIRE(
        back.bytes == frame.bytes && back.wireLength == frame.wireLength && back.timestamp == frame.timestamp,
        "a pcap record does not read back as written");
  }
  return 0;
}
