// `corral trace` end to end through a real corrald (as root): a VPC with one subnet and two containers, a TCP
// connection between them while the daemon captures on the subnet's bridge (API) and on one container's
// port (CLI). Checks the decoded frames (the two containers' addresses and ports, the handshake's three
// steps in order, a close), the pcap (our reader and tshark read the same frames) and the refusals (bad
// count, seconds, filter; unknown target; a stopped instance). Every namespace carries this process's
// prefix, so nothing outside it is touched.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/api.h"
#include "api/client.h"
#include "net/frames.h"
#include "net/netlink.h"
#include "tests/integration/harness.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

// A VPC "tr" with subnet "tr-web", a server container answering "hi" on TCP 8080 and an idle client.
struct TraceNetwork {
  std::string serverIp, clientIp;
};
TraceNetwork buildNetwork(const TestDaemon& d) {
  d.must("POST", "/v1/vpcs", {{"name", "tr"}, {"cidr", "10.70.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "tr-web"}, {"vpc", "tr"}, {"cidr", "10.70.1.0/24"}});
  json server = d.must("POST", "/v1/instances",
                       {{"name", "tr-srv"},
                        {"image", "busybox"},
                        {"command", {"nc", "-ll", "-p", "8080", "-e", "/bin/echo", "hi"}},
                        {"subnet", "tr-web"}});
  json client = d.must(
      "POST", "/v1/instances",
      {{"name", "tr-cli"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "tr-web"}});
  return {server.value("ip", ""), client.value("ip", "")};
}

// tr-cli connects to the server and reads its answer; a few tries while the listener comes up.
std::string connectOnce(const TestDaemon& d, const std::string& serverIp) {
  Reply run = d.call("POST", "/v1/instances/tr-cli/exec",
                     {{"command", {"sh", "-c", fmt::format("nc -w 2 {} 8080 </dev/null", serverIp)}}});
  return run.body.value("stdout", "");
}

// corrald logs this once the capture socket is open: frames from then on are seen.
constexpr const char* kCapturing = "trace: capturing on ";

// Starts `trace` in a thread, waits until corrald says the capture is open, then makes one connection.
Reply traceAround(const TestDaemon& d, const json& trace, const std::string& serverIp, std::string* said) {
  Reply reply;
  const size_t before = corral::testing::occurrences(d.log(), kCapturing);
  std::thread tracer([&] { reply = d.call("POST", "/v1/trace", trace); });
  EXPECT_TRUE(
      corral::testing::waitUntil([&] { return corral::testing::occurrences(d.log(), kCapturing) > before; },
                                 10s, "corrald's \"trace: capturing on\" line"))
      << d.logTail();
  *said = connectOnce(d, serverIp);
  tracer.join();
  return reply;
}

std::vector<std::string> events(const json& answer) {
  std::vector<std::string> found;
  for (const json& frame : answer.value("frames", json::array())) {
    if (frame["event"].is_string()) found.push_back(frame["event"].get<std::string>());
  }
  return found;
}

// Index of the first event starting with `prefix` at or after `from`; -1 when there is none.
int findEvent(const std::vector<std::string>& all, const std::string& prefix, int from = 0) {
  for (size_t i = static_cast<size_t>(from); i < all.size(); ++i) {
    if (all[i].starts_with(prefix)) return static_cast<int>(i);
  }
  return -1;
}

std::string joined(const std::vector<std::string>& all) {
  std::string text;
  for (const std::string& item : all) text += (text.empty() ? "" : " | ") + item;
  return text;
}

// Runs a command to its end; its stdout (stderr goes next to it) and exit status (-1: did not exit in time).
std::pair<int, std::string> runTool(const std::vector<std::string>& args, const std::string& outPath,
                                    std::chrono::milliseconds deadline = 60s) {
  pid_t pid =
      corral::testing::spawnProcess(args, outPath, outPath + ".err", corral::testing::OutputMode::Truncate);
  if (pid < 0) return {-1, "spawn failed"};
  std::optional<int> status = corral::testing::waitWithDeadline(pid, deadline);
  std::string out = corral::testing::readFile(outPath);
  if (!status || !WIFEXITED(*status)) return {-1, out + corral::testing::readFile(outPath + ".err")};
  if (WEXITSTATUS(*status) != 0) out += corral::testing::readFile(outPath + ".err");
  return {WEXITSTATUS(*status), out};
}

TEST(Trace, SubnetBridgeShowsTheHandshakeAndCloseAndAPcap) {
  if (!requireRoot()) GTEST_SKIP() << "needs root (namespaces, bridges, containers)";
  TestDaemon d("trace", {"--accelerator", "tcg"});
  ASSERT_TRUE(d.start()) << d.logTail();
  TraceNetwork network = buildNetwork(d);
  ASSERT_FALSE(network.serverIp.empty());
  ASSERT_FALSE(network.clientIp.empty());
  // The listener may need a moment after the run answered.
  ASSERT_TRUE(corral::testing::waitUntil(
      [&] { return connectOnce(d, network.serverIp).find("hi") != std::string::npos; }, 10s,
      "the server container's listener"));

  std::string said;
  Reply reply = traceAround(d, {{"target", "tr-web"}, {"filter", "tcp"}, {"count", 12}, {"seconds", 8}},
                            network.serverIp, &said);
  EXPECT_NE(said.find("hi"), std::string::npos) << "the connection itself failed";
  ASSERT_EQ(reply.status, 200) << reply.body.dump(2) << "\n" << d.logTail();
  const json& answer = reply.body;
  EXPECT_EQ(answer["target"]["kind"], "subnet");
  EXPECT_EQ(answer["target"]["name"], "tr-web");
  EXPECT_EQ(answer["target"]["netns"], corral::testing::testNetnsPrefix() + "vpc-tr");
  EXPECT_TRUE(answer["target"]["link"].get<std::string>().starts_with("crlb")) << answer["target"].dump();

  const json& frames = answer["frames"];
  ASSERT_FALSE(frames.empty()) << answer.dump(2);
  EXPECT_EQ(answer["matched"].get<size_t>(), frames.size());
  EXPECT_GE(answer["seen"].get<size_t>(), frames.size());
  EXPECT_DOUBLE_EQ(frames[0]["time"].get<double>(), 0.0);
  for (size_t i = 0; i < frames.size(); ++i) {
    const json& frame = frames[i];
    SCOPED_TRACE(frame.dump());
    EXPECT_EQ(frame["number"].get<size_t>(), i + 1);
    ASSERT_TRUE(frame["tcp"].is_object()) << "filter tcp let through a frame without TCP";
    ASSERT_TRUE(frame["ipv4"].is_object());
    ASSERT_TRUE(frame["ethernet"].is_object());
    std::string from = frame["ipv4"]["source"], to = frame["ipv4"]["destination"];
    uint16_t fromPort = frame["tcp"]["source_port"], toPort = frame["tcp"]["destination_port"];
    // Every frame is between the two containers, with the server's side on port 8080.
    EXPECT_TRUE((from == network.clientIp && to == network.serverIp && toPort == 8080) ||
                (from == network.serverIp && to == network.clientIp && fromPort == 8080));
    EXPECT_NE(frame["summary"].get<std::string>().find("TCP"), std::string::npos);
    EXPECT_EQ(frame["summary"].get<std::string>().find('\n'), std::string::npos);
    EXPECT_FALSE(frame["text"].get<std::string>().empty());
  }
  EXPECT_EQ(frames[0]["tcp"]["flags"], "SYN");
  EXPECT_EQ(frames[0]["ipv4"]["source"], network.clientIp);

  std::vector<std::string> seenEvents = events(answer);
  int syn = findEvent(seenEvents, "handshake 1/3");
  int synAck = findEvent(seenEvents, "handshake 2/3", syn + 1);
  int ack = findEvent(seenEvents, "handshake 3/3", synAck + 1);
  EXPECT_GE(syn, 0) << joined(seenEvents);
  EXPECT_GT(synAck, syn) << joined(seenEvents);
  EXPECT_GT(ack, synAck) << joined(seenEvents);
  EXPECT_GT(findEvent(seenEvents, "close", ack + 1), ack) << joined(seenEvents);

  // The pcap: the same frames, readable by our reader and by tshark.
  Result<std::string> pcap = api::base64Decode(answer["pcap"].get<std::string>());
  ASSERT_TRUE(pcap.has_value()) << pcap.error().message();
  auto parsed = net::parsePcap(std::span(reinterpret_cast<const uint8_t*>(pcap->data()), pcap->size()));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  ASSERT_EQ(parsed->size(), frames.size());
  for (size_t i = 0; i < parsed->size(); ++i) {
    EXPECT_EQ((*parsed)[i].timestamp.count(), frames[i]["timestamp_us"].get<int64_t>());
    EXPECT_EQ((*parsed)[i].wireLength, frames[i]["length"].get<size_t>());
  }
  const std::string pcapPath = d.dir() + "/trace.pcap";
  {
    std::ofstream file(pcapPath, std::ios::binary);
    file << *pcap;
  }
  if (std::filesystem::exists("/usr/bin/tshark")) {
    // One line per frame: its TCP ports, as tshark decodes them.
    auto [code, out] = runTool(
        {"/usr/bin/tshark", "-n", "-r", pcapPath, "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.dstport"},
        d.dir() + "/tshark.out");
    ASSERT_EQ(code, 0) << out;
    size_t lines = 0;
    std::istringstream text(out);
    for (std::string line; std::getline(text, line);) {
      if (line.find("8080") != std::string::npos) ++lines;
    }
    EXPECT_EQ(lines, frames.size()) << out;
  }
}

TEST(Trace, InstancePortThroughTheCli) {
  if (!requireRoot()) GTEST_SKIP() << "needs root (namespaces, bridges, containers)";
  TestDaemon d("trace", {"--accelerator", "tcg"});
  ASSERT_TRUE(d.start()) << d.logTail();
  TraceNetwork network = buildNetwork(d);
  ASSERT_TRUE(corral::testing::waitUntil(
      [&] { return connectOnce(d, network.serverIp).find("hi") != std::string::npos; }, 10s,
      "the server container's listener"));

  const std::string pcapPath = d.dir() + "/port.pcap";
  const size_t before = corral::testing::occurrences(d.log(), kCapturing);
  pid_t cli = d.spawnCli(
      {"trace", "tr-srv", "--count", "3", "--filter", "tcp", "--seconds", "8", "--pcap", pcapPath});
  ASSERT_GT(cli, 0);
  EXPECT_TRUE(
      corral::testing::waitUntil([&] { return corral::testing::occurrences(d.log(), kCapturing) > before; },
                                 10s, "corrald's \"trace: capturing on\" line"))
      << d.logTail();
  EXPECT_NE(connectOnce(d, network.serverIp).find("hi"), std::string::npos);
  std::optional<int> status = corral::testing::waitWithDeadline(cli, 60s);
  std::string out = d.cliOut() + d.cliErr();
  ASSERT_TRUE(status && WIFEXITED(*status)) << out;
  EXPECT_EQ(WEXITSTATUS(*status), 0) << out << "\n" << d.logTail();
  EXPECT_NE(out.find("capturing on port crlv"), std::string::npos) << out;
  EXPECT_NE(out.find("of instance tr-srv"), std::string::npos) << out;
  EXPECT_NE(out.find("handshake 1/3"), std::string::npos) << out;
  EXPECT_NE(out.find("handshake 3/3"), std::string::npos) << out;
  EXPECT_NE(out.find("1 TCP handshake completed"), std::string::npos) << out;
  EXPECT_NE(out.find("wrote " + pcapPath), std::string::npos) << out;
  std::string pcap = corral::testing::readFile(pcapPath);
  auto parsed = net::parsePcap(std::span(reinterpret_cast<const uint8_t*>(pcap.data()), pcap.size()));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_EQ(parsed->size(), 3u);
}

TEST(Trace, RefusesBadInputAndStoppedInstances) {
  if (!requireRoot()) GTEST_SKIP() << "needs root (namespaces, bridges, containers)";
  TestDaemon d("trace", {"--accelerator", "tcg"});
  ASSERT_TRUE(d.start()) << d.logTail();
  buildNetwork(d);
  struct Case {
    json body;
    int status;
    std::string field;
  };
  const std::vector<Case> cases = {
      {{{"target", "tr-web"}, {"count", 0}}, 400, "count"},
      {{{"target", "tr-web"}, {"count", 10001}}, 400, "count"},
      {{{"target", "tr-web"}, {"seconds", 1000}}, 400, "seconds"},
      {{{"target", "tr-web"}, {"seconds", 0}}, 400, "seconds"},
      {{{"target", "tr-web"}, {"filter", "xyz"}}, 400, "filter"},
      {{{"target", "nothing-here"}}, 404, "target"},
  };
  for (const Case& c : cases) {
    Reply reply = d.call("POST", "/v1/trace", c.body);
    EXPECT_EQ(reply.status, c.status) << c.body.dump() << " → " << reply.body.dump();
    EXPECT_EQ(reply.body["error"].value("field", ""), c.field) << c.body.dump() << " → " << reply.body.dump();
  }

  // An instance without a NIC has no port; a stopped one has none any more.
  d.must("POST", "/v1/instances",
         {{"name", "tr-alone"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}});
  Reply alone = d.call("POST", "/v1/trace", {{"target", "tr-alone"}, {"seconds", 1}});
  EXPECT_EQ(alone.status, 409) << alone.body.dump();
  d.must("POST", "/v1/instances/tr-cli/stop", {{"grace_seconds", 1}}, 200);
  Reply stopped = d.call("POST", "/v1/trace", {{"target", "tr-cli"}, {"seconds", 1}});
  EXPECT_EQ(stopped.status, 409) << stopped.body.dump();
  EXPECT_NE(stopped.body["error"].value("message", "").find("tr-cli"), std::string::npos)
      << stopped.body.dump();

  // A trace with nothing to see ends after its seconds with no frames (and an empty but valid pcap).
  auto begin = Clock::now();
  Reply quiet = d.call("POST", "/v1/trace", {{"target", "tr-web"}, {"filter", "udp"}, {"seconds", 1}});
  EXPECT_LT(Clock::now() - begin, 10s);
  ASSERT_EQ(quiet.status, 200) << quiet.body.dump();
  EXPECT_EQ(quiet.body["matched"], 0);
  Result<std::string> pcap = api::base64Decode(quiet.body["pcap"].get<std::string>());
  ASSERT_TRUE(pcap.has_value());
  auto parsed = net::parsePcap(std::span(reinterpret_cast<const uint8_t*>(pcap->data()), pcap->size()));
  ASSERT_TRUE(parsed.has_value()) << parsed.error().message();
  EXPECT_TRUE(parsed->empty());
}

}  // namespace
}  // namespace corral
