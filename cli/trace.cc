// `corral trace SUBNET|INSTANCE|LOAD_BALANCER`: watch the frames on a floor's switch (the subnet's bridge),
// at one instance's door (its port) or at a load balancer's NIC (its port), decoded layer by layer, with
// TCP's handshake and close named as they happen. corrald captures and decodes; the CLI prints its answer and
// writes the pcap file.
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <iostream>

#include "cli/cli.h"
#include "core/text.h"

namespace corral::cli {
namespace {

// The daemon answers once the capture is over, so the client waits longer than the capture itself.
constexpr std::chrono::seconds kAnswerMargin{30};

std::string targetText(const json& target) {
  const std::string kind = field(target, "kind").is_string() ? target["kind"].get<std::string>() : "";
  const std::string what = kind == "subnet" ? "bridge" : "port";
  return fmt::format("{} {} of {} {} (netns {})", what, displayText(field(target, "link")), kind,
                     displayText(field(target, "name")), displayText(field(target, "netns")));
}

// The frame's text from the daemon, with its first line (number, capture time, length) replaced by one
// whose time counts from the first frame shown, as tshark's does: "#3  +0.000412 s  74 bytes".
std::string frameText(const json& frame) {
  std::string text = field(frame, "text").is_string() ? frame["text"].get<std::string>() : "";
  const json &number = field(frame, "number"), &time = field(frame, "time"), &length = field(frame, "length");
  if (!number.is_number() || !time.is_number() || !length.is_number()) return text;
  const size_t lineEnd = text.find('\n');
  std::string header = fmt::format("#{}  {:+.6f} s  {} bytes", number.get<int64_t>(), time.get<double>(),
                                   length.get<int64_t>());
  const json& captured = field(frame, "captured");
  if (captured.is_number() && captured.get<int64_t>() < length.get<int64_t>()) {
    header += fmt::format(" ({} captured)", captured.get<int64_t>());
  }
  return header + (lineEnd == std::string::npos ? std::string("\n") : text.substr(lineEnd));
}

int trace(const Invocation& invocation) {
  api::TraceCapture request;
  request.target = invocation.arguments[0];
  if (auto subnet = invocation.value("subnet")) {
    // Only a load balancer has a NIC per subnet.
    request.loadBalancer = request.target;
    request.target.clear();
    request.subnet = *subnet;
  }
  const std::string shown = request.target.empty() ? request.loadBalancer : request.target;
  if (auto count = invocation.value("count")) request.count = parseCountFlag("--count", *count);
  if (auto seconds = invocation.value("seconds")) request.seconds = parseCountFlag("--seconds", *seconds);
  if (auto filter = invocation.value("filter")) request.filter = *filter;
  const std::optional<std::string> pcapPath = invocation.value("pcap");

  if (!invocation.global.json && ::isatty(STDERR_FILENO) != 0) {
    fmt::print(stderr, "tracing {}: waiting for up to {} frames or {} s ...\n", shown, request.count,
               request.seconds);
  }
  api::Client client(invocation.global.socketPath, std::chrono::seconds(request.seconds) + kAnswerMargin);
  Result<json> answer = client.call(request);
  if (!answer) {
    printError(answer.error());
    return 1;
  }

  Result<std::string> pcap = api::base64Decode(
      field(*answer, "pcap").is_string() ? (*answer)["pcap"].get<std::string>() : std::string());
  if (invocation.global.json) {
    std::cout << answer->dump(2) << "\n";
  } else {
    fmt::print("capturing on {}: up to {} frames or {} s, filter {}\n", targetText(field(*answer, "target")),
               request.count, request.seconds, request.filter);
    int handshakes = 0, closes = 0, resets = 0;
    for (const json& frame : field(*answer, "frames")) {
      const std::string text = terminalSafeLines(frameText(frame));
      fmt::print("{}{}\n", text, text.ends_with('\n') ? "" : "\n");  // a blank line between frames
      const json& event = field(frame, "event");
      if (!event.is_string()) continue;
      const std::string name = event.get<std::string>();
      if (name.starts_with("handshake 3/3")) ++handshakes;
      if (name.starts_with("close 4/4")) ++closes;
      if (name.starts_with("reset")) ++resets;
    }
    fmt::print(
        "{} frames seen on the link, {} matched {}; {} TCP handshake{} completed, {} connection{} closed",
        displayText(field(*answer, "seen")), displayText(field(*answer, "matched")), request.filter,
        handshakes, handshakes == 1 ? "" : "s", closes, closes == 1 ? "" : "s");
    if (resets > 0) fmt::print(", {} reset", resets);
    fmt::print("\n");
  }
  if (!pcapPath) return 0;
  if (!pcap) {
    printError(pcap.error().wrap("the daemon's pcap"));
    return 1;
  }
  std::ofstream file(*pcapPath, std::ios::binary | std::ios::trunc);
  file << *pcap;
  file.close();
  if (!file) {
    printError(systemError(errno, fmt::format("write \"{}\"", *pcapPath)));
    return 1;
  }
  // With --json stdout is the answer alone.
  fmt::print(invocation.global.json ? stderr : stdout, "wrote {} (open it with wireshark or tshark -r {})\n",
             *pcapPath, *pcapPath);
  return 0;
}

}  // namespace

Command traceCommand() {
  return leaf(
      "trace",
      "watch the frames on a subnet's switch (its bridge), at an instance's port or at a load balancer's "
      "NIC, layer by layer: Ethernet (L2, the switch's MACs), IPv4 (L3, the router's addresses, TTL), "
      "TCP/UDP (L4 ports, flags), with "
      "TCP's "
      "3-way handshake and close named",
      {{"TARGET",
        "a subnet (capture on its bridge: the floor's L2 switch, every frame between its instances and the "
        "router), an instance (capture on its port: only its own frames; it must be running), or a load "
        "balancer (capture on its NIC's port: the clients' connections to its listeners and its own to the "
        "targets; with a NIC in several subnets give --subnet; NAME.SUBNET.lb as `corral net show` lists it "
        "also works). An instance of the same name comes before a load balancer"}},
      "[--subnet S] [--count N] [--filter tcp|udp|icmp|arp|all] [--seconds S] [--pcap FILE]",
      [](po::options_description& options) {
        options.add_options()  //
            ("subnet", po::value<std::string>()->value_name("S"),
             "TARGET is a load balancer: trace its NIC in subnet S")  //
            ("count", po::value<std::string>()->value_name("N"),
             "stop after N frames that match the filter (1-10000, default 20)")  //
            ("filter", po::value<std::string>()->value_name("PROTO"),
             "which frames to show: tcp or udp (L4: ports), icmp (L3: the router's messages), arp (L2: who "
             "has which MAC address) or all (default)")  //
            ("seconds", po::value<std::string>()->value_name("S"),
             "stop after S seconds even when fewer frames came (1-300, default 10)")  //
            ("pcap", po::value<std::string>()->value_name("FILE"),
             "also write the matched frames to FILE in pcap format (wireshark, tshark -r FILE)");
      },
      trace);
}

}  // namespace corral::cli
