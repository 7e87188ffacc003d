// VPC flow logs, the model: which guard decided (encoded in the nft log prefix of each reject path and
// decoded again), the records in AWS's default flow-log format plus that guard, and the aggregation of
// what the kernel reports (rejected packets over NFLOG, accepted flows' conntrack counters) into records
// per capture window. Pure: net/flow_capture.h reads the kernel, daemon/flow_logs.h keeps the records.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "core/error.h"

namespace corral::net {

// Every VPC namespace logs its rejects to this NFLOG group; each namespace has its own NFLOG, so one
// fixed number does not mix VPCs.
inline constexpr uint16_t kFlowLogGroup = 1;
// The bytes of each rejected packet NFLOG copies: IPv4 header (up to 60) and the ports.
inline constexpr uint32_t kFlowLogSnaplen = 64;
// nft keeps at most 127 characters of a log prefix (NF_LOG_PREFIXLEN 128 with the NUL).
inline constexpr size_t kMaxLogPrefix = 127;
// AWS aggregates per capture window (1 or 10 minutes); corral's window is short enough to watch live.
inline constexpr int64_t kFlowWindowMs = 10'000;
// At most this many rejected flows (interface, 5-tuple, guard) are aggregated per VPC in the windows open
// at once: a flood of packets that are each a flow of their own (spoofed sources, a port scan) is counted
// as SKIPDATA past it instead of growing corrald's memory (about 300 bytes a flow: ~3 MB per VPC).
inline constexpr size_t kMaxFlowsPerWindow = 10'000;

enum class FlowAction { Accept, Reject };
std::string_view flowActionName(FlowAction action);  // "ACCEPT", "REJECT" (AWS's spelling)
// "accept" or "reject" in any case; InvalidArgument naming `field` otherwise.
Result<FlowAction> parseFlowAction(std::string_view text, std::string_view field = "action");

// The guard that decided a packet's fate.
struct FlowGuard {
  enum class Kind {
    None,            // accepted: the flow was allowed (no guard refused it)
    SecurityGroup,   // a NIC's security groups: no rule allows it (they only allow)
    NetworkAcl,      // a subnet's network ACL: a deny rule, or the implicit deny (no rule number)
    NoRoute,         // the route table has no route (or a blackhole route) for the destination
    IsolatedSubnet,  // a subnet without a route to the internet gateway sends out through it
    Unsolicited,     // from the internet, a new connection that no public address or published port takes
    RouterInbound,   // from the internet, to the router itself: only pings and replies get in
  };
  Kind kind = Kind::None;
  bool ingress = false;         // SecurityGroup, NetworkAcl: inbound (entering) or outbound (leaving)
  std::string name;             // the ACL, the groups ("web.db"), the isolated subnet
  std::optional<int64_t> rule;  // NetworkAcl: the deny rule's number; none: the implicit deny
  bool operator==(const FlowGuard&) const = default;
};
inline FlowGuard makeGuard(FlowGuard::Kind kind, bool ingress = false, std::string name = {},
                           std::optional<int64_t> rule = std::nullopt) {
  FlowGuard guard;
  guard.kind = kind;
  guard.ingress = ingress;
  guard.name = std::move(name);
  guard.rule = rule;
  return guard;
}
std::string_view flowGuardKindName(FlowGuard::Kind kind);  // "security-group", "network-acl", "no-route", ...
// "security group web.db (inbound): no rule allows it", "network ACL strict rule 100 (outbound): deny".
std::string flowGuardText(const FlowGuard& guard);

// The nft log prefix of a guard: "crl:s:i:web.db", "crl:n:o:100:strict", "crl:n:i:*:strict", "crl:r",
// "crl:u", "crl:g", "crl:x:SUBNET". Names longer than the prefix allows are cut and end in '+', which
// decodes as a partial name. Only characters nft accepts in a quoted prefix.
std::string encodeLogPrefix(const FlowGuard& guard);
// The inverse; nullopt for a prefix corral did not write.
std::optional<FlowGuard> decodeLogPrefix(std::string_view prefix);

// What the kernel reported, before it is a record.
struct PacketTuple {
  uint32_t source = 0;  // IPv4 in host order
  uint32_t destination = 0;
  uint8_t protocol = 0;     // IANA number: 6 tcp, 17 udp, 1 icmp
  uint16_t sourcePort = 0;  // 0 when the protocol has none
  uint16_t destinationPort = 0;
  auto operator<=>(const PacketTuple&) const = default;
};
// The IPv4 packet's tuple (its header and the first 4 bytes of TCP/UDP) and total length; nullopt when it
// is not IPv4 or too short.
std::optional<std::pair<PacketTuple, uint32_t>> parseIpv4Packet(std::string_view bytes);

struct RejectedPacket {
  std::string prefix;  // the nft log prefix
  PacketTuple tuple;
  uint32_t bytes = 0;    // IP total length
  int64_t atMs = 0;      // Unix milliseconds
  std::string inDevice;  // the link it came in on, in the VPC namespace
};

// One conntrack entry's counters since it began (a dump or its end).
struct ConntrackFlow {
  uint32_t id = 0;       // conntrack's id for the entry
  PacketTuple original;  // as the first packet had it
  PacketTuple reply;     // as the replies have it (after NAT: its source is the real destination)
  uint64_t originalPackets = 0, originalBytes = 0, replyPackets = 0, replyBytes = 0;
  int64_t startMs = 0;  // 0 when conntrack timestamps are off
  bool ended = false;   // a DESTROY event: the entry is gone
};

// Who an address is inside a VPC: an instance's NIC, or the router (its addresses answer for the VPC:
// DNS at .2, metadata, the gateways; AWS leaves that traffic out of flow logs, and so does corral).
struct FlowEndpoint {
  std::string instance;
  std::string interfaceId;  // the NIC's port link as corral shows it (crlv..., crlt...)
  std::string subnet;
  std::string groups;  // its security groups, "web.db"
};
struct FlowDirectory {
  std::map<uint32_t, FlowEndpoint> nics;  // by IPv4 address (host order)
  std::vector<uint32_t> router;           // addresses that are the router's own
  const FlowEndpoint* find(uint32_t address) const;
  bool isRouter(uint32_t address) const;
};

// One rule that allowed an accepted flow, computed from the model (net/reach.h flowAllowedBy: the
// kernel only says the flow was accepted).
struct FlowAllowingRule {
  enum class Kind {
    SecurityGroup,  // a rule of the group `name` allowed the connection (new connections only: stateful)
    NetworkAcl,     // rule `rule` of the ACL `name` allowed these packets across its subnet's boundary
    PublishedPort,  // instance `name` publishes the port: its own allow rule, no security group is asked
  };
  Kind kind = Kind::SecurityGroup;
  bool ingress = false;  // SecurityGroup, NetworkAcl: inbound (entering) or outbound (leaving)
  std::string name;      // the group, the ACL, the publishing instance
  int64_t rule = 0;      // the group rule's id, the ACL rule's number
  std::string matches;   // SecurityGroup: what the rule says ("tcp port 80 from 0.0.0.0/0"); a published
                         // port: "8080:80/tcp"
  bool reply = false;    // SecurityGroup: the record counts the replies of the connection the rule allowed
  bool operator==(const FlowAllowingRule&) const = default;
};
std::string_view flowAllowingKindName(FlowAllowingRule::Kind kind);  // "security-group", ...
// "security group web rule 2 (inbound) allows tcp port 80 from 0.0.0.0/0", "network ACL default rule 100
// (inbound) allows".
std::string flowAllowingRuleText(const FlowAllowingRule& rule);
// The rules joined by "; " (the record line's last column for an accepted flow); "-" when none.
std::string flowAllowedText(const std::vector<FlowAllowingRule>& rules);

// What conntrack saw of an accepted flow, kept with its record until the daemon asks the model what
// allowed it (it is not stored).
struct AcceptedConnection {
  PacketTuple original;  // as the client sent it (its destination before any DNAT)
  PacketTuple reply;     // as the server answered (its source is the server's real address)
  bool replies = false;  // the record counts the server's replies, not the client's packets
  bool operator==(const AcceptedConnection&) const = default;
};

// AWS's log-status values: the record counts traffic, or some records of its window were skipped (the
// kernel dropped messages the capture could not read in time, or the window held kMaxFlowsPerWindow).
inline constexpr std::string_view kLogStatusOk = "OK";
inline constexpr std::string_view kLogStatusSkipData = "SKIPDATA";

struct FlowRecord {
  int64_t id = 0;  // the store's number, growing; 0 before it is stored
  std::string vpc;
  std::string interfaceId;  // "-" when no NIC of ours saw it (e.g. refused at the internet gateway)
  std::string instance;     // the NIC's instance; empty with "-"
  std::string subnet;
  std::string sourceAddress, destinationAddress;
  uint16_t sourcePort = 0, destinationPort = 0;
  uint8_t protocol = 0;
  uint64_t packets = 0, bytes = 0;
  int64_t start = 0, end = 0;  // Unix seconds
  FlowAction action = FlowAction::Accept;
  std::string logStatus = std::string(kLogStatusOk);
  FlowGuard guard;                               // a reject's guard; Kind::None for an accepted flow
  std::vector<FlowAllowingRule> allowedBy;       // an accepted flow: the rules that allowed it, in path order
  std::optional<AcceptedConnection> connection;  // an accepted flow, until allowedBy is computed
  // SKIPDATA: what was lost in the window (start..end), in words; AWS leaves every other field "-". Its
  // `action` is the kind of records lost (the store files it under that action), not shown.
  std::string skipped;
  bool operator==(const FlowRecord&) const = default;
};

// AWS's default format, space-separated, and the guard after it: "2 crlv0a1b 10.0.1.5 10.0.2.6 43512 80 6
// 3 180 1700000000 1700000010 REJECT OK security group web (inbound): no rule allows it"; an accepted
// flow ends with the rules that allowed it, a SKIPDATA record has "-" where AWS has it and what was lost:
// "2 - - - - - - - - 1700000000 1700000010 - SKIPDATA NFLOG: ...".
std::string flowRecordLine(const FlowRecord& record);
// The API's shape (docs/api.md, Flow logs) and back.
nlohmann::json flowRecordJson(const FlowRecord& record);
Result<FlowRecord> flowRecordFromJson(const nlohmann::json& json);

// Turns what the kernel reports in one VPC into records, per capture window:
// - a rejected packet is counted into the record of its (interface, tuple, guard) for the window its
//   first packet opened (kFlowWindowMs); the record is given out once the window closes;
// - an accepted flow gives, for each NIC of ours at either end, one record per direction (as AWS logs a
//   flow at each network interface it passes) with the packets and bytes since the last report of that
//   entry: a dump reports a long flow's progress every window, its end the rest.
// - the rejects of one window are capped at kMaxFlowsPerWindow flows (so a flood of packets, each its
//   own flow, cannot grow the map without bound): a packet of a new flow beyond it is counted, not kept;
// - data lost (the cap, or the kernel dropping messages: noteLost) makes one SKIPDATA record per kind of
//   record lost for the window in which it happened (opened by the first loss, kFlowWindowMs long),
//   saying what was lost.
class FlowAggregator {
 public:
  explicit FlowAggregator(std::string vpc, size_t maxFlowsPerWindow = kMaxFlowsPerWindow)
      : vpc_(std::move(vpc)), maxFlows_(maxFlowsPerWindow) {}
  void addRejected(const RejectedPacket& packet, const FlowDirectory& directory);
  // The capture lost records of `kind` at `atMs` (the kernel dropped messages); `what` says which.
  void noteLost(int64_t atMs, FlowAction kind, const std::string& what);
  void addFlow(const ConntrackFlow& flow, const FlowDirectory& directory, int64_t nowMs);
  // Conntrack dumped every entry it has: the ids not in `live` ended without an event reaching us.
  void forgetAllBut(const std::vector<uint32_t>& live);
  // The records whose window closed by `nowMs` (all of them with `everything`), in the order they began.
  std::vector<FlowRecord> take(int64_t nowMs, bool everything = false);
  size_t openWindows() const { return windows_.size(); }

 private:
  struct WindowKey {
    std::string interfaceId;
    PacketTuple tuple;
    std::string prefix;
    auto operator<=>(const WindowKey&) const = default;
  };
  struct Reported {
    uint64_t originalPackets = 0, originalBytes = 0, replyPackets = 0, replyBytes = 0;
    int64_t lastMs = 0;
  };
  std::string vpc_;
  std::map<WindowKey, FlowRecord> windows_;
  std::map<WindowKey, int64_t> windowOpenedMs_;
  std::map<uint32_t, Reported> reported_;  // by conntrack id
  std::vector<FlowRecord> ready_;
  size_t maxFlows_;
  // An open SKIPDATA window, one per kind of record lost (rejects, accepted flows): when it opened, what
  // was lost (in the order first seen, each once, with how often), and the new reject flows the cap
  // turned away.
  struct Skipped {
    int64_t openedMs = 0;
    std::vector<std::pair<std::string, uint64_t>> lost;
    uint64_t flowsOverCap = 0;
  };
  std::map<FlowAction, Skipped> skipped_;
  Skipped& openSkipped(FlowAction kind, int64_t atMs);
  FlowRecord skipRecord(FlowAction kind, const Skipped& skipped) const;
};

std::string ipv4Text(uint32_t address);

}  // namespace corral::net
