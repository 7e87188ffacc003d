// The trace's frame as JSON; see trace_render.h.
#include "daemon/trace_render.h"

#include <utility>

namespace corral::daemon {
namespace {

using json = nlohmann::json;

json optionalJson(const std::optional<uint16_t>& value) {
  return value ? json(*value) : json(nullptr);
}

// The frame's text with its time counted from the first frame shown, as in "time".
std::string describeRelative(net::DecodedFrame frame, size_t number, std::chrono::microseconds first,
                             const std::optional<std::string>& event) {
  frame.timestamp -= first;
  return net::describeFrame(frame, number, event);
}

}  // namespace

json traceFrameJson(const net::DecodedFrame& frame, size_t number, std::chrono::microseconds first,
                    bool outgoing, const std::optional<std::string>& event) {
  json out = {{"number", number},
              {"time", static_cast<double>((frame.timestamp - first).count()) / 1e6},
              {"timestamp_us", frame.timestamp.count()},
              {"length", frame.length},
              {"captured", frame.captured},
              {"outgoing", outgoing},
              {"summary", net::frameSummary(frame)},
              {"text", describeRelative(frame, number, first, event)},
              {"event", event ? json(*event) : json(nullptr)},
              {"payload_bytes", frame.payloadBytes},
              {"note", frame.note}};
  out["ethernet"] = nullptr;
  if (frame.ethernet) {
    const net::EthernetHeader& e = *frame.ethernet;
    out["ethernet"] = {{"source", e.source},
                       {"destination", e.destination},
                       {"ether_type", net::etherTypeText(e.etherType)},
                       {"vlan", optionalJson(e.vlan)}};
  }
  out["arp"] = nullptr;
  if (frame.arp) {
    const net::ArpPacket& a = *frame.arp;
    out["arp"] = {{"operation", a.operation == 1   ? json("request")
                                : a.operation == 2 ? json("reply")
                                                   : json(a.operation)},
                  {"sender_mac", a.senderMac},
                  {"sender_ip", a.senderIp},
                  {"target_mac", a.targetMac},
                  {"target_ip", a.targetIp}};
  }
  out["ipv4"] = nullptr;
  if (frame.ipv4) {
    const net::Ipv4Header& ip = *frame.ipv4;
    out["ipv4"] = {{"source", ip.source},
                   {"destination", ip.destination},
                   {"ttl", ip.ttl},
                   {"protocol", ip.protocol},
                   {"total_length", ip.totalLength},
                   {"identification", ip.identification},
                   {"dont_fragment", ip.dontFragment},
                   {"more_fragments", ip.moreFragments},
                   {"fragment_offset", ip.fragmentOffset},
                   {"header_length", ip.headerLength}};
  }
  out["tcp"] = nullptr;
  if (frame.tcp) {
    const net::TcpHeader& t = *frame.tcp;
    out["tcp"] = {{"source_port", t.sourcePort},
                  {"destination_port", t.destinationPort},
                  {"seq", t.seq},
                  {"ack", t.ack},
                  {"flags", net::tcpFlagsText(t.flags)},
                  {"window", t.window},
                  {"header_length", t.headerLength}};
  }
  out["udp"] = nullptr;
  if (frame.udp) {
    out["udp"] = {{"source_port", frame.udp->sourcePort},
                  {"destination_port", frame.udp->destinationPort},
                  {"length", frame.udp->length}};
  }
  out["icmp"] = nullptr;
  if (frame.icmp) {
    out["icmp"] = {{"type", frame.icmp->type},
                   {"code", frame.icmp->code},
                   {"id", optionalJson(frame.icmp->id)},
                   {"sequence", optionalJson(frame.icmp->sequence)}};
  }
  return out;
}

}  // namespace corral::daemon
