// Capturing real traffic: two namespaces joined by a veth pair, an AF_PACKET capture on one end while a
// TCP connection (connect, "hello", close) and a UDP datagram cross; the decoding must show the handshake
// and the close in order, and must agree field by field with tshark's reading of the same pcap file.
#include "net/capture.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "core/unique_fd.h"
#include "net/frames.h"
#include "net/netlink.h"
#include "tests/integration/netns_testing.h"

namespace corral::net {
namespace {

using corral::testing::acceptWithin;
using corral::testing::connectWithin;
using corral::testing::listenIn;
using corral::testing::runInNetns;
using corral::testing::socketAddress;
using corral::testing::tcpSocketIn;
using corral::testing::TestNamespaces;
using corral::testing::waitForFd;
using std::chrono::milliseconds;

constexpr milliseconds kTimeout{2000};
constexpr const char* kClientAddress = "10.79.0.1";
constexpr const char* kServerAddress = "10.79.0.2";
constexpr const char* kClientMac = "02:c0:aa:00:00:01";
constexpr const char* kServerMac = "02:c0:aa:00:00:02";
constexpr uint16_t kTcpPort = 8080;
constexpr uint16_t kUdpPort = 5353;

// Removes a temporary directory, also when the test fails halfway.
struct TempDir {
  std::filesystem::path path;
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "corral-capture-XXXXXX").string();
    if (::mkdtemp(pattern.data()) != nullptr) path = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path.empty()) std::filesystem::remove_all(path, ignored);
  }
};

// Test plumbing only: runs a command, stdout only (tshark's "running as root" warning goes elsewhere).
std::string runCommand(const std::string& command, int* status) {
  std::string output;
  FILE* pipe = ::popen((command + " 2>/dev/null").c_str(), "r");
  if (pipe == nullptr) return output;
  char buffer[4096];
  size_t n = 0;
  while ((n = fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  *status = ::pclose(pipe);
  return output;
}

std::vector<std::string> splitKeepingEmpty(const std::string& line, char separator) {
  std::vector<std::string> fields;
  std::string field;
  std::istringstream in(line);
  while (std::getline(in, field, separator)) fields.push_back(field);
  if (!line.empty() && line.back() == separator) fields.emplace_back();
  return fields;
}

class PacketCaptureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available())
      GTEST_SKIP() << "needs root: network namespaces, veth pairs and AF_PACKET sockets";
    for (auto [ns, suffix] : {std::pair{&client_, "cap-a"}, std::pair{&server_, "cap-b"}}) {
      auto made = namespaces_.make(suffix);
      ASSERT_TRUE(made) << made.error().message();
      *ns = *made;
    }
    auto serverFd = openNetns(server_);
    ASSERT_TRUE(serverFd) << serverFd.error().message();
    auto clientLinks = Netlink::open(client_);
    ASSERT_TRUE(clientLinks) << clientLinks.error().message();
    auto serverLinks = Netlink::open(server_);
    ASSERT_TRUE(serverLinks) << serverLinks.error().message();
    auto pair = clientLinks->createVethPair("va", "vb", serverFd->get(), std::string(kServerMac));
    ASSERT_TRUE(pair) << pair.error().message();
    for (auto [links, link, mac, address] : {std::tuple{&*clientLinks, "va", kClientMac, kClientAddress},
                                             std::tuple{&*serverLinks, "vb", kServerMac, kServerAddress}}) {
      if (std::string(link) == "va") {
        auto macSet = links->setMac(link, mac);
        ASSERT_TRUE(macSet) << macSet.error().message();
      }
      auto added = links->addAddress(link, std::string(address) + "/24");
      ASSERT_TRUE(added) << added.error().message();
      auto up = links->setUp(link);
      ASSERT_TRUE(up) << up.error().message();
    }
  }

  // Frames until none came for a while (or, should the link never fall quiet, for at most 10 s).
  std::vector<CapturedFrame> drain(PacketCapture& capture) {
    std::vector<CapturedFrame> frames;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      auto frame = capture.next(milliseconds(500));
      if (!frame) {
        ADD_FAILURE() << frame.error().message();
        break;
      }
      if (!*frame) break;
      frames.push_back(std::move(**frame));
    }
    return frames;
  }

  std::string client_, server_;
  TestNamespaces namespaces_;
};

TEST_F(PacketCaptureTest, MissingLinkOrNamespaceIsNotFound) {
  auto noLink = PacketCapture::open(client_, "nosuch0");
  ASSERT_FALSE(noLink);
  EXPECT_EQ(noLink.error().kind(), ErrorKind::NotFound);
  EXPECT_NE(noLink.error().message().find("\"nosuch0\""), std::string::npos) << noLink.error().message();
  EXPECT_NE(noLink.error().message().find(client_), std::string::npos) << noLink.error().message();

  auto noNetns = PacketCapture::open(client_ + "-gone", "va");
  ASSERT_FALSE(noNetns);
  EXPECT_EQ(noNetns.error().kind(), ErrorKind::NotFound);
  EXPECT_NE(noNetns.error().message().find(client_ + "-gone"), std::string::npos)
      << noNetns.error().message();
}

TEST_F(PacketCaptureTest, TcpHandshakeCloseAndUdpAgreeWithTshark) {
  auto capture = PacketCapture::open(client_, "va");
  ASSERT_TRUE(capture) << capture.error().message();
  EXPECT_EQ(capture->link(), "va");

  // TCP: connect, "hello", the client closes, the server reads the end and closes too.
  UniqueFd listener = listenIn(server_, kTcpPort);
  ASSERT_TRUE(listener);
  uint16_t clientPort = 0;
  {
    UniqueFd client = tcpSocketIn(client_);
    ASSERT_TRUE(client);
    ASSERT_EQ(connectWithin(client, kServerAddress, kTcpPort, kTimeout), "");
    sockaddr_in local{};
    socklen_t localLength = sizeof local;
    ASSERT_EQ(::getsockname(client.get(), reinterpret_cast<sockaddr*>(&local), &localLength), 0);
    clientPort = ntohs(local.sin_port);
    UniqueFd server = acceptWithin(listener, kTimeout);
    ASSERT_TRUE(server);
    ASSERT_EQ(::write(client.get(), "hello", 5), 5);
    ASSERT_TRUE(waitForFd(server.get(), POLLIN, kTimeout));
    char buffer[16] = {};
    ASSERT_EQ(::read(server.get(), buffer, sizeof buffer), 5);
    client.reset();
    ASSERT_TRUE(waitForFd(server.get(), POLLIN, kTimeout));
    ASSERT_EQ(::read(server.get(), buffer, sizeof buffer), 0);
  }
  // Then one UDP datagram to a socket that takes it (so no ICMP unreachable comes back).
  UniqueFd udpReceiver, udpSender;
  ASSERT_TRUE(
      runInNetns(server_, [&] { udpReceiver.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)); }));
  sockaddr_in udpAddress = socketAddress(kServerAddress, kUdpPort);
  ASSERT_EQ(::bind(udpReceiver.get(), reinterpret_cast<sockaddr*>(&udpAddress), sizeof udpAddress), 0);
  ASSERT_TRUE(runInNetns(client_, [&] { udpSender.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)); }));
  ASSERT_EQ(
      ::sendto(udpSender.get(), "ping", 4, 0, reinterpret_cast<sockaddr*>(&udpAddress), sizeof udpAddress),
      4);
  ASSERT_TRUE(waitForFd(udpReceiver.get(), POLLIN, kTimeout));

  std::vector<CapturedFrame> captured = drain(*capture);
  ASSERT_FALSE(captured.empty());

  // The decoding: the handshake and the close in order, with the right addresses and ports.
  TcpConversationTracker tracker;
  std::vector<std::string> events;
  bool sawUdp = false, sawArp = false, sawHello = false;
  std::string trace;
  for (size_t i = 0; i < captured.size(); ++i) {
    const CapturedFrame& c = captured[i];
    DecodedFrame frame = decodeFrame(c.bytes, c.timestamp, c.wireLength);
    auto event = tracker.observe(frame);
    trace += describeFrame(frame, i + 1, event);
    ASSERT_TRUE(frame.ethernet);
    EXPECT_GT(c.timestamp.count(), 0);
    // The client's end: what leaves it is outgoing, what the server sends is not.
    EXPECT_EQ(c.outgoing, frame.ethernet->source == kClientMac) << trace;
    if (frame.arp) sawArp = true;
    if (frame.udp) {
      sawUdp = true;
      EXPECT_EQ(frame.ipv4->source, kClientAddress);
      EXPECT_EQ(frame.ipv4->destination, kServerAddress);
      EXPECT_EQ(frame.udp->destinationPort, kUdpPort);
      EXPECT_EQ(frame.payloadBytes, 4u);
      EXPECT_EQ(frame.ethernet->destination, kServerMac);
    }
    if (!frame.tcp) continue;
    const bool fromClient = frame.ipv4->source == kClientAddress;
    EXPECT_EQ(frame.ipv4->destination, fromClient ? kServerAddress : kClientAddress);
    EXPECT_EQ(fromClient ? frame.tcp->sourcePort : frame.tcp->destinationPort, clientPort);
    EXPECT_EQ(fromClient ? frame.tcp->destinationPort : frame.tcp->sourcePort, kTcpPort);
    EXPECT_EQ(frame.ipv4->ttl, 64);
    if (fromClient && frame.payloadBytes == 5) sawHello = true;
    if (event) events.push_back(*event);
  }
  SCOPED_TRACE(trace);
  EXPECT_TRUE(sawArp);
  EXPECT_TRUE(sawUdp);
  EXPECT_TRUE(sawHello);
  ASSERT_GE(events.size(), 6u);
  EXPECT_EQ(events[0], "handshake 1/3 (SYN)");
  EXPECT_EQ(events[1], "handshake 2/3 (SYN-ACK)");
  EXPECT_EQ(events[2], "handshake 3/3 (ACK): connection established");
  EXPECT_EQ(events[3], "close 1/4 (FIN)");
  // The server's ACK of the client's FIN goes alone or rides on its own FIN, depending on timing.
  const std::vector<std::string> fourWay = {"close 2/4 (ACK)", "close 3/4 (FIN)",
                                            "close 4/4 (ACK): connection closed"};
  const std::vector<std::string> threeWay = {"close 2+3/4 (FIN-ACK)", "close 4/4 (ACK): connection closed"};
  const std::vector<std::string> rest(events.begin() + 4, events.end());
  EXPECT_TRUE(rest == fourWay || rest == threeWay);

  // The same frames as a pcap file, read back by us and by tshark.
  TempDir dir;
  ASSERT_FALSE(dir.path.empty());
  const std::filesystem::path file = dir.path / "capture.pcap";
  {
    std::ofstream out(file, std::ios::binary);
    out << pcapFileHeader();
    for (const CapturedFrame& c : captured) out << pcapRecord(c.bytes, c.timestamp, c.wireLength);
  }
  std::ifstream in(file, std::ios::binary);
  const std::vector<uint8_t> fileBytes((std::istreambuf_iterator<char>(in)),
                                       std::istreambuf_iterator<char>());
  auto parsed = parsePcap(fileBytes);
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_EQ(parsed->size(), captured.size());
  for (size_t i = 0; i < captured.size(); ++i) {
    EXPECT_EQ((*parsed)[i].bytes, captured[i].bytes);
    EXPECT_EQ((*parsed)[i].timestamp, captured[i].timestamp);
    EXPECT_EQ((*parsed)[i].wireLength, captured[i].wireLength);
  }
  if (const char* keep = getenv("CORRAL_KEEP_CAPTURE")) std::filesystem::copy_file(file, keep);

  if (!std::filesystem::exists("/usr/bin/tshark")) {
    if (getenv("CORRAL_REQUIRE_PRIVILEGED"))
      FAIL() << "/usr/bin/tshark is missing (scripts/install-deps installs it)";
    GTEST_SKIP() << "/usr/bin/tshark is missing: the comparison with tshark is skipped";
  }
  int status = -1;
  const std::string output = runCommand(
      "/usr/bin/tshark -r " + file.string() +
          " -T fields -e frame.number -e eth.src -e eth.dst -e ip.src -e ip.dst -e ip.ttl -e tcp.srcport"
          " -e tcp.dstport -e tcp.flags -e tcp.seq_raw -e tcp.ack_raw -e udp.srcport -e udp.dstport -E "
          "separator=,",
      &status);
  ASSERT_EQ(status, 0) << output;
  std::istringstream lines(output);
  std::string line;
  size_t rows = 0;
  const auto text = [](const auto& value) { return std::to_string(value); };
  while (std::getline(lines, line)) {
    std::vector<std::string> f = splitKeepingEmpty(line, ',');
    ASSERT_EQ(f.size(), 13u) << line;
    const size_t number = std::stoul(f[0]);
    ASSERT_EQ(number, ++rows) << line;
    ASSERT_LE(number, parsed->size());
    const PcapFrame& p = (*parsed)[number - 1];
    DecodedFrame d = decodeFrame(p.bytes, p.timestamp, p.wireLength);
    SCOPED_TRACE(line + "\n" + describeFrame(d, number, std::nullopt));
    ASSERT_TRUE(d.ethernet);
    EXPECT_EQ(f[1], d.ethernet->source);
    EXPECT_EQ(f[2], d.ethernet->destination);
    EXPECT_EQ(f[3], d.ipv4 ? d.ipv4->source : "");
    EXPECT_EQ(f[4], d.ipv4 ? d.ipv4->destination : "");
    EXPECT_EQ(f[5], d.ipv4 ? text(d.ipv4->ttl) : "");
    EXPECT_EQ(f[6], d.tcp ? text(d.tcp->sourcePort) : "");
    EXPECT_EQ(f[7], d.tcp ? text(d.tcp->destinationPort) : "");
    if (d.tcp) {
      ASSERT_FALSE(f[8].empty());
      EXPECT_EQ(std::stoul(f[8], nullptr, 16), d.tcp->flags);
    } else {
      EXPECT_EQ(f[8], "");
    }
    EXPECT_EQ(f[9], d.tcp ? text(d.tcp->seq) : "");
    EXPECT_EQ(f[10], d.tcp ? text(d.tcp->ack) : "");
    EXPECT_EQ(f[11], d.udp ? text(d.udp->sourcePort) : "");
    EXPECT_EQ(f[12], d.udp ? text(d.udp->destinationPort) : "");
  }
  EXPECT_EQ(rows, parsed->size());
}

}  // namespace
}  // namespace corral::net
