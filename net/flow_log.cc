// VPC flow logs, the model: guard prefixes, records and their aggregation (net/flow_log.h).
#include "net/flow_log.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <set>

namespace corral::net {
namespace {

constexpr std::string_view kPrefixHead = "crl:";

std::optional<int64_t> parseNumber(std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 0) return std::nullopt;
  return value;
}

std::vector<std::string_view> splitColons(std::string_view text, size_t parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    size_t colon = text.find(':');
    if (colon == std::string_view::npos) break;
    out.push_back(text.substr(0, colon));
    text.remove_prefix(colon + 1);
  }
  out.push_back(text);
  return out;
}

// Names are a-z, 0-9, '-' and '.' (a combination of groups); anything else would not be ours.
bool plainName(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '+';
  });
}

std::string withName(std::string head, std::string_view name) {
  if (head.size() + name.size() <= kMaxLogPrefix) return head + std::string(name);
  const size_t room = kMaxLogPrefix - head.size() - 1;
  return head + std::string(name.substr(0, room)) + "+";
}

std::string_view protocolText(uint8_t protocol) {
  switch (protocol) {
    case 1:
      return "icmp";
    case 6:
      return "tcp";
    case 17:
      return "udp";
    default:
      return "";
  }
}

}  // namespace

std::string ipv4Text(uint32_t address) {
  return fmt::format("{}.{}.{}.{}", address >> 24, (address >> 16) & 0xff, (address >> 8) & 0xff,
                     address & 0xff);
}

std::string_view flowActionName(FlowAction action) {
  return action == FlowAction::Accept ? "ACCEPT" : "REJECT";
}

Result<FlowAction> parseFlowAction(std::string_view text, std::string_view field) {
  std::string lower(text);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (lower == "accept") return FlowAction::Accept;
  if (lower == "reject") return FlowAction::Reject;
  return fail(invalidField(std::string(field), "action must be accept or reject, got \"{}\"", text));
}

std::string_view flowGuardKindName(FlowGuard::Kind kind) {
  switch (kind) {
    case FlowGuard::Kind::None:
      return "none";
    case FlowGuard::Kind::SecurityGroup:
      return "security-group";
    case FlowGuard::Kind::NetworkAcl:
      return "network-acl";
    case FlowGuard::Kind::NoRoute:
      return "no-route";
    case FlowGuard::Kind::IsolatedSubnet:
      return "isolated-subnet";
    case FlowGuard::Kind::Unsolicited:
      return "unsolicited-inbound";
    case FlowGuard::Kind::RouterInbound:
      return "router-inbound";
  }
  return "none";
}

std::string flowGuardText(const FlowGuard& guard) {
  const std::string_view way = guard.ingress ? "inbound" : "outbound";
  switch (guard.kind) {
    case FlowGuard::Kind::None:
      return "-";
    case FlowGuard::Kind::SecurityGroup: {
      std::string names = guard.name;
      std::replace(names.begin(), names.end(), '.', ',');
      const bool several = names.find(',') != std::string::npos;
      return fmt::format("security group{} {} ({}): no rule allows it", several ? "s" : "", names, way);
    }
    case FlowGuard::Kind::NetworkAcl:
      if (guard.rule) return fmt::format("network ACL {} rule {} ({}): deny", guard.name, *guard.rule, way);
      return fmt::format("network ACL {} ({}): no rule matches, implicit deny", guard.name, way);
    case FlowGuard::Kind::NoRoute:
      return "no route: the subnet's route table has no route to the destination (or a blackhole)";
    case FlowGuard::Kind::IsolatedSubnet:
      return fmt::format("no route: subnet {} has no route to the internet gateway", guard.name);
    case FlowGuard::Kind::Unsolicited:
      return "internet gateway / NAT: unsolicited inbound (no public address or published port takes it)";
    case FlowGuard::Kind::RouterInbound:
      return "router: from the internet it answers only pings and replies";
  }
  return "-";
}

std::string_view flowAllowingKindName(FlowAllowingRule::Kind kind) {
  switch (kind) {
    case FlowAllowingRule::Kind::SecurityGroup:
      return "security-group";
    case FlowAllowingRule::Kind::NetworkAcl:
      return "network-acl";
    case FlowAllowingRule::Kind::PublishedPort:
      return "published-port";
  }
  return "security-group";
}

std::string flowAllowingRuleText(const FlowAllowingRule& rule) {
  const std::string_view way = rule.ingress ? "inbound" : "outbound";
  switch (rule.kind) {
    case FlowAllowingRule::Kind::SecurityGroup:
      return fmt::format("security group {} rule {} ({}) allows {}{}", rule.name, rule.rule, way,
                         rule.matches, rule.reply ? " (its replies pass with it: stateful)" : "");
    case FlowAllowingRule::Kind::NetworkAcl:
      return fmt::format("network ACL {} rule {} ({}) allows", rule.name, rule.rule, way);
    case FlowAllowingRule::Kind::PublishedPort:
      return fmt::format("{} publishes {} (its own allow rule, no security group asked)", rule.name,
                         rule.matches);
  }
  return "-";
}

std::string flowAllowedText(const std::vector<FlowAllowingRule>& rules) {
  std::string text;
  for (const FlowAllowingRule& rule : rules) text += (text.empty() ? "" : "; ") + flowAllowingRuleText(rule);
  return text.empty() ? "-" : text;
}

std::string encodeLogPrefix(const FlowGuard& guard) {
  const std::string way = guard.ingress ? "i" : "o";
  switch (guard.kind) {
    case FlowGuard::Kind::None:
      return std::string(kPrefixHead) + "a";
    case FlowGuard::Kind::SecurityGroup:
      return withName(fmt::format("{}s:{}:", kPrefixHead, way), guard.name);
    case FlowGuard::Kind::NetworkAcl:
      return withName(
          fmt::format("{}n:{}:{}:", kPrefixHead, way, guard.rule ? std::to_string(*guard.rule) : "*"),
          guard.name);
    case FlowGuard::Kind::NoRoute:
      return std::string(kPrefixHead) + "r";
    case FlowGuard::Kind::IsolatedSubnet:
      return withName(fmt::format("{}x:", kPrefixHead), guard.name);
    case FlowGuard::Kind::Unsolicited:
      return std::string(kPrefixHead) + "u";
    case FlowGuard::Kind::RouterInbound:
      return std::string(kPrefixHead) + "g";
  }
  return std::string(kPrefixHead);
}

std::optional<FlowGuard> decodeLogPrefix(std::string_view prefix) {
  if (!prefix.starts_with(kPrefixHead)) return std::nullopt;
  prefix.remove_prefix(kPrefixHead.size());
  FlowGuard guard;
  if (prefix == "a") return guard;
  if (prefix == "r") return makeGuard(FlowGuard::Kind::NoRoute);
  if (prefix == "u") return makeGuard(FlowGuard::Kind::Unsolicited);
  if (prefix == "g") return makeGuard(FlowGuard::Kind::RouterInbound);
  if (prefix.starts_with("x:")) {
    if (!plainName(prefix.substr(2))) return std::nullopt;
    return makeGuard(FlowGuard::Kind::IsolatedSubnet, false, std::string(prefix.substr(2)));
  }
  auto wayOf = [](std::string_view way) -> std::optional<bool> {
    if (way == "i") return true;
    if (way == "o") return false;
    return std::nullopt;
  };
  if (prefix.starts_with("s:")) {
    auto parts = splitColons(prefix.substr(2), 2);
    if (parts.size() != 2 || !plainName(parts[1])) return std::nullopt;
    auto ingress = wayOf(parts[0]);
    if (!ingress) return std::nullopt;
    return makeGuard(FlowGuard::Kind::SecurityGroup, *ingress, std::string(parts[1]));
  }
  if (prefix.starts_with("n:")) {
    auto parts = splitColons(prefix.substr(2), 3);
    if (parts.size() != 3 || !plainName(parts[2])) return std::nullopt;
    auto ingress = wayOf(parts[0]);
    if (!ingress) return std::nullopt;
    guard = makeGuard(FlowGuard::Kind::NetworkAcl, *ingress, std::string(parts[2]));
    if (parts[1] != "*") {
      guard.rule = parseNumber(parts[1]);
      if (!guard.rule) return std::nullopt;
    }
    return guard;
  }
  return std::nullopt;
}

std::optional<std::pair<PacketTuple, uint32_t>> parseIpv4Packet(std::string_view bytes) {
  auto byte = [&](size_t i) { return static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])); };
  if (bytes.size() < 20 || (byte(0) >> 4) != 4) return std::nullopt;
  const size_t headerLength = (byte(0) & 0x0f) * 4;
  if (headerLength < 20 || bytes.size() < headerLength) return std::nullopt;
  PacketTuple tuple;
  const uint32_t totalLength = byte(2) << 8 | byte(3);
  tuple.protocol = static_cast<uint8_t>(byte(9));
  tuple.source = byte(12) << 24 | byte(13) << 16 | byte(14) << 8 | byte(15);
  tuple.destination = byte(16) << 24 | byte(17) << 16 | byte(18) << 8 | byte(19);
  const bool firstFragment = ((byte(6) & 0x1f) << 8 | byte(7)) == 0;
  if ((tuple.protocol == 6 || tuple.protocol == 17) && firstFragment && bytes.size() >= headerLength + 4) {
    tuple.sourcePort = static_cast<uint16_t>(byte(headerLength) << 8 | byte(headerLength + 1));
    tuple.destinationPort = static_cast<uint16_t>(byte(headerLength + 2) << 8 | byte(headerLength + 3));
  }
  return std::pair{tuple, totalLength};
}

const FlowEndpoint* FlowDirectory::find(uint32_t address) const {
  auto it = nics.find(address);
  return it == nics.end() ? nullptr : &it->second;
}

bool FlowDirectory::isRouter(uint32_t address) const {
  return std::find(router.begin(), router.end(), address) != router.end();
}

std::string flowRecordLine(const FlowRecord& r) {
  if (r.logStatus == kLogStatusSkipData) {
    return fmt::format("2 {} - - - - - - - {} {} - {} {}", r.interfaceId, r.start, r.end, r.logStatus,
                       r.skipped.empty() ? "-" : r.skipped);
  }
  if (r.action == FlowAction::Accept) {
    return fmt::format("2 {} {} {} {} {} {} {} {} {} {} {} {} {}", r.interfaceId, r.sourceAddress,
                       r.destinationAddress, r.sourcePort, r.destinationPort, r.protocol, r.packets, r.bytes,
                       r.start, r.end, flowActionName(r.action), r.logStatus, flowAllowedText(r.allowedBy));
  }
  return fmt::format("2 {} {} {} {} {} {} {} {} {} {} {} {} {}", r.interfaceId, r.sourceAddress,
                     r.destinationAddress, r.sourcePort, r.destinationPort, r.protocol, r.packets, r.bytes,
                     r.start, r.end, flowActionName(r.action), r.logStatus, flowGuardText(r.guard));
}

nlohmann::json flowRecordJson(const FlowRecord& r) {
  nlohmann::json guard = {{"kind", flowGuardKindName(r.guard.kind)}, {"text", flowGuardText(r.guard)}};
  if (r.guard.kind == FlowGuard::Kind::SecurityGroup || r.guard.kind == FlowGuard::Kind::NetworkAcl) {
    guard["direction"] = r.guard.ingress ? "inbound" : "outbound";
  }
  if (!r.guard.name.empty()) guard["name"] = r.guard.name;
  if (r.guard.rule) guard["rule"] = *r.guard.rule;
  if (r.guard.kind == FlowGuard::Kind::None) guard = nullptr;
  if (r.action == FlowAction::Accept && !r.allowedBy.empty()) {
    nlohmann::json rules = nlohmann::json::array();
    for (const FlowAllowingRule& rule : r.allowedBy) {
      nlohmann::json item = {{"kind", flowAllowingKindName(rule.kind)},
                             {"direction", rule.ingress ? "inbound" : "outbound"},
                             {"name", rule.name},
                             {"text", flowAllowingRuleText(rule)}};
      if (rule.kind != FlowAllowingRule::Kind::PublishedPort) item["rule"] = rule.rule;
      if (!rule.matches.empty()) item["matches"] = rule.matches;
      if (rule.kind == FlowAllowingRule::Kind::SecurityGroup) item["reply"] = rule.reply;
      rules.push_back(std::move(item));
    }
    guard = {{"kind", "allowed"}, {"text", flowAllowedText(r.allowedBy)}, {"rules", std::move(rules)}};
  }
  if (r.logStatus == kLogStatusSkipData) {
    // AWS's "-": nothing of a flow to fill in, only the window and what was lost in it.
    return {{"id", r.id},
            {"vpc", r.vpc},
            {"version", 2},
            {"interface_id", r.interfaceId},
            {"instance", nullptr},
            {"subnet", nullptr},
            {"srcaddr", nullptr},
            {"dstaddr", nullptr},
            {"srcport", nullptr},
            {"dstport", nullptr},
            {"protocol", nullptr},
            {"protocol_name", nullptr},
            {"packets", nullptr},
            {"bytes", nullptr},
            {"start", r.start},
            {"end", r.end},
            {"action", nullptr},
            {"log_status", r.logStatus},
            {"skipped", r.skipped},
            {"guard", nullptr},
            {"line", flowRecordLine(r)}};
  }
  const std::string_view protocolName = protocolText(r.protocol);
  return {{"id", r.id},
          {"vpc", r.vpc},
          {"version", 2},
          {"interface_id", r.interfaceId},
          {"instance", r.instance.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.instance)},
          {"subnet", r.subnet.empty() ? nlohmann::json(nullptr) : nlohmann::json(r.subnet)},
          {"srcaddr", r.sourceAddress},
          {"dstaddr", r.destinationAddress},
          {"srcport", r.sourcePort},
          {"dstport", r.destinationPort},
          {"protocol", r.protocol},
          {"protocol_name", protocolName.empty() ? nlohmann::json(nullptr) : nlohmann::json(protocolName)},
          {"packets", r.packets},
          {"bytes", r.bytes},
          {"start", r.start},
          {"end", r.end},
          {"action", flowActionName(r.action)},
          {"log_status", r.logStatus},
          {"guard", guard},
          {"line", flowRecordLine(r)}};
}

Result<FlowRecord> flowRecordFromJson(const nlohmann::json& j) {
  try {
    FlowRecord r;
    r.id = j.at("id").get<int64_t>();
    r.vpc = j.at("vpc").get<std::string>();
    r.interfaceId = j.at("interface_id").get<std::string>();
    if (j.value("log_status", "") == kLogStatusSkipData) {
      r.logStatus = std::string(kLogStatusSkipData);
      r.start = j.at("start").get<int64_t>();
      r.end = j.at("end").get<int64_t>();
      r.skipped = j.value("skipped", "");
      return r;
    }
    if (j.at("instance").is_string()) r.instance = j["instance"].get<std::string>();
    if (j.at("subnet").is_string()) r.subnet = j["subnet"].get<std::string>();
    r.sourceAddress = j.at("srcaddr").get<std::string>();
    r.destinationAddress = j.at("dstaddr").get<std::string>();
    r.sourcePort = j.at("srcport").get<uint16_t>();
    r.destinationPort = j.at("dstport").get<uint16_t>();
    r.protocol = j.at("protocol").get<uint8_t>();
    r.packets = j.at("packets").get<uint64_t>();
    r.bytes = j.at("bytes").get<uint64_t>();
    r.start = j.at("start").get<int64_t>();
    r.end = j.at("end").get<int64_t>();
    auto action = parseFlowAction(j.at("action").get<std::string>());
    if (!action) return fail(action.error());
    r.action = *action;
    r.logStatus = j.at("log_status").get<std::string>();
    const nlohmann::json& guard = j.at("guard");
    if (guard.is_object() && guard.value("kind", "") == "allowed") {
      for (const nlohmann::json& item : guard.at("rules")) {
        FlowAllowingRule rule;
        const std::string kind = item.at("kind").get<std::string>();
        bool known = false;
        for (auto candidate : {FlowAllowingRule::Kind::SecurityGroup, FlowAllowingRule::Kind::NetworkAcl,
                               FlowAllowingRule::Kind::PublishedPort}) {
          if (flowAllowingKindName(candidate) == kind) {
            rule.kind = candidate;
            known = true;
          }
        }
        if (!known) return fail(invalidField("guard.rules.kind", "unknown rule kind \"{}\"", kind));
        rule.ingress = item.value("direction", "") == "inbound";
        rule.name = item.at("name").get<std::string>();
        rule.rule = item.value("rule", int64_t{0});
        rule.matches = item.value("matches", "");
        rule.reply = item.value("reply", false);
        r.allowedBy.push_back(std::move(rule));
      }
    } else if (!guard.is_null()) {
      const std::string kind = guard.at("kind").get<std::string>();
      bool known = false;
      for (auto candidate :
           {FlowGuard::Kind::SecurityGroup, FlowGuard::Kind::NetworkAcl, FlowGuard::Kind::NoRoute,
            FlowGuard::Kind::IsolatedSubnet, FlowGuard::Kind::Unsolicited, FlowGuard::Kind::RouterInbound}) {
        if (flowGuardKindName(candidate) == kind) {
          r.guard.kind = candidate;
          known = true;
        }
      }
      if (!known) return fail(invalidField("guard.kind", "unknown guard kind \"{}\"", kind));
      r.guard.ingress = guard.value("direction", "") == "inbound";
      r.guard.name = guard.value("name", "");
      if (guard.contains("rule")) r.guard.rule = guard["rule"].get<int64_t>();
    }
    return r;
  } catch (const nlohmann::json::exception& e) {
    return fail(invalidField("record", "flow record: {}", e.what()));
  }
}

void FlowAggregator::addRejected(const RejectedPacket& packet, const FlowDirectory& directory) {
  std::optional<FlowGuard> guard = decodeLogPrefix(packet.prefix);
  if (!guard) return;
  const PacketTuple& t = packet.tuple;
  // The NIC the guard stood for: a security group's own NIC, else the one of ours at the side the packet
  // was leaving or entering; a packet no NIC of ours sent or would have got is logged without one.
  const FlowEndpoint* source = directory.find(t.source);
  const FlowEndpoint* destination = directory.find(t.destination);
  const FlowEndpoint* nic = nullptr;
  if (guard->kind == FlowGuard::Kind::SecurityGroup || guard->kind == FlowGuard::Kind::NetworkAcl) {
    nic = guard->ingress ? destination : source;
    if (nic == nullptr) nic = guard->ingress ? source : destination;
  } else {
    nic = source != nullptr ? source : destination;
  }
  // A security group chain is shared by every NIC with the same groups: the NIC's own list is the whole
  // name even when the prefix had to cut it.
  if (guard->kind == FlowGuard::Kind::SecurityGroup && nic != nullptr && !nic->groups.empty())
    guard->name = nic->groups;
  WindowKey key{.interfaceId = nic ? nic->interfaceId : "-", .tuple = t, .prefix = packet.prefix};
  if (windows_.size() >= maxFlows_ && !windows_.contains(key)) {
    openSkipped(FlowAction::Reject, packet.atMs).flowsOverCap += 1;
    return;
  }
  auto [it, opened] = windows_.try_emplace(key);
  FlowRecord& record = it->second;
  if (opened) {
    record.vpc = vpc_;
    record.interfaceId = key.interfaceId;
    if (nic) {
      record.instance = nic->instance;
      record.subnet = nic->subnet;
    }
    record.sourceAddress = ipv4Text(t.source);
    record.destinationAddress = ipv4Text(t.destination);
    record.sourcePort = t.sourcePort;
    record.destinationPort = t.destinationPort;
    record.protocol = t.protocol;
    record.start = packet.atMs / 1000;
    record.action = FlowAction::Reject;
    record.guard = *guard;
    windowOpenedMs_[key] = packet.atMs;
  }
  record.packets += 1;
  record.bytes += packet.bytes;
  record.end = std::max(record.end, packet.atMs / 1000);
}

FlowAggregator::Skipped& FlowAggregator::openSkipped(FlowAction kind, int64_t atMs) {
  auto [it, opened] = skipped_.try_emplace(kind);
  if (opened) it->second.openedMs = atMs;
  return it->second;
}

void FlowAggregator::noteLost(int64_t atMs, FlowAction kind, const std::string& what) {
  Skipped& skipped = openSkipped(kind, atMs);
  auto it = std::find_if(skipped.lost.begin(), skipped.lost.end(),
                         [&](const auto& seen) { return seen.first == what; });
  if (it == skipped.lost.end()) {
    skipped.lost.emplace_back(what, 1);
  } else {
    it->second += 1;
  }
}

FlowRecord FlowAggregator::skipRecord(FlowAction kind, const Skipped& skipped) const {
  FlowRecord r;
  r.vpc = vpc_;
  r.interfaceId = "-";
  r.start = skipped.openedMs / 1000;
  r.end = (skipped.openedMs + kFlowWindowMs) / 1000;
  r.action = kind;
  r.logStatus = std::string(kLogStatusSkipData);
  for (const auto& [what, times] : skipped.lost) {
    r.skipped += fmt::format("{}{}{}", r.skipped.empty() ? "" : "; ", what,
                             times > 1 ? fmt::format(" ({} times)", times) : "");
  }
  if (skipped.flowsOverCap > 0) {
    r.skipped += fmt::format(
        "{}{} packet{} of new rejected flows not logged: the window already held {} flows, the most corrald "
        "keeps per VPC",
        r.skipped.empty() ? "" : "; ", skipped.flowsOverCap, skipped.flowsOverCap == 1 ? "" : "s", maxFlows_);
  }
  return r;
}

void FlowAggregator::addFlow(const ConntrackFlow& flow, const FlowDirectory& directory, int64_t nowMs) {
  Reported& last = reported_[flow.id];
  // A counter that went down is another entry under a reused id: count from zero.
  if (flow.originalPackets < last.originalPackets || flow.replyPackets < last.replyPackets) last = Reported{};
  const uint64_t originalPackets = flow.originalPackets - last.originalPackets;
  const uint64_t originalBytes = flow.originalBytes - last.originalBytes;
  const uint64_t replyPackets = flow.replyPackets - last.replyPackets;
  const uint64_t replyBytes = flow.replyBytes - last.replyBytes;
  const int64_t startMs = last.lastMs != 0 ? last.lastMs : (flow.startMs != 0 ? flow.startMs : nowMs);
  last = Reported{flow.originalPackets, flow.originalBytes, flow.replyPackets, flow.replyBytes, nowMs};
  if (flow.ended) reported_.erase(flow.id);
  if (originalPackets == 0 && replyPackets == 0) return;

  // The client as it sent; the server as it answered (after DNAT the reply's source is the real one).
  const uint32_t client = flow.original.source;
  const uint32_t server = flow.reply.source;
  if (directory.isRouter(client) || directory.isRouter(server)) return;
  const uint16_t clientPort = flow.original.sourcePort;
  const uint16_t serverPort = flow.reply.sourcePort;
  for (uint32_t at : {client, server}) {
    const FlowEndpoint* nic = directory.find(at);
    if (nic == nullptr || (at == server && client == server)) continue;
    auto record = [&](bool replies, uint32_t from, uint16_t fromPort, uint32_t to, uint16_t toPort,
                      uint64_t packets, uint64_t bytes) {
      if (packets == 0) return;
      FlowRecord r;
      r.vpc = vpc_;
      r.interfaceId = nic->interfaceId;
      r.instance = nic->instance;
      r.subnet = nic->subnet;
      r.sourceAddress = ipv4Text(from);
      r.destinationAddress = ipv4Text(to);
      r.sourcePort = fromPort;
      r.destinationPort = toPort;
      r.protocol = flow.original.protocol;
      r.packets = packets;
      r.bytes = bytes;
      r.start = startMs / 1000;
      r.end = nowMs / 1000;
      r.action = FlowAction::Accept;
      r.connection = AcceptedConnection{.original = flow.original, .reply = flow.reply, .replies = replies};
      ready_.push_back(std::move(r));
    };
    record(false, client, clientPort, server, serverPort, originalPackets, originalBytes);
    record(true, server, serverPort, client, clientPort, replyPackets, replyBytes);
  }
}

void FlowAggregator::forgetAllBut(const std::vector<uint32_t>& live) {
  std::set<uint32_t> keep(live.begin(), live.end());
  std::erase_if(reported_, [&](const auto& entry) { return !keep.contains(entry.first); });
}

std::vector<FlowRecord> FlowAggregator::take(int64_t nowMs, bool everything) {
  // The closed windows by when they opened: the rejects' and the SKIPDATA ones (no key).
  std::vector<std::tuple<int64_t, int, std::optional<WindowKey>, FlowAction>> closed;
  for (const auto& [key, opened] : windowOpenedMs_) {
    if (everything || nowMs - opened >= kFlowWindowMs)
      closed.emplace_back(opened, 0, key, FlowAction::Reject);
  }
  for (const auto& [kind, skipped] : skipped_) {
    if (everything || nowMs - skipped.openedMs >= kFlowWindowMs)
      closed.emplace_back(skipped.openedMs, 1, std::nullopt, kind);
  }
  std::sort(closed.begin(), closed.end());
  std::vector<FlowRecord> out = std::move(ready_);
  ready_.clear();
  for (const auto& [opened, order, key, kind] : closed) {
    if (!key) {
      out.push_back(skipRecord(kind, skipped_.at(kind)));
      skipped_.erase(kind);
      continue;
    }
    out.push_back(std::move(windows_.at(*key)));
    windows_.erase(*key);
    windowOpenedMs_.erase(*key);
  }
  return out;
}

}  // namespace corral::net
