// Flow logs' model: the guard prefixes round-trip and fit nft's limit, packets parse, records read as AWS's
// format and back from JSON, and the aggregator turns kernel reports into per-window records.
#include "net/flow_log.h"

#include <gtest/gtest.h>

#include <string>

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::net {
namespace {

uint32_t ip(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  return uint32_t{a} << 24 | uint32_t{b} << 16 | uint32_t{c} << 8 | d;
}

TEST(FlowLogPrefix, EveryGuardRoundTrips) {
  const FlowGuard guards[] = {
      {.kind = FlowGuard::Kind::None},
      {.kind = FlowGuard::Kind::SecurityGroup, .ingress = true, .name = "web"},
      {.kind = FlowGuard::Kind::SecurityGroup, .ingress = false, .name = "db.web"},
      {.kind = FlowGuard::Kind::NetworkAcl, .ingress = true, .name = "strict", .rule = 100},
      {.kind = FlowGuard::Kind::NetworkAcl, .ingress = false, .name = "strict", .rule = std::nullopt},
      {.kind = FlowGuard::Kind::NoRoute},
      {.kind = FlowGuard::Kind::IsolatedSubnet, .name = "private-a"},
      {.kind = FlowGuard::Kind::Unsolicited},
      {.kind = FlowGuard::Kind::RouterInbound},
  };
  for (const FlowGuard& guard : guards) {
    const std::string prefix = encodeLogPrefix(guard);
    SCOPED_TRACE(prefix);
    EXPECT_LE(prefix.size(), kMaxLogPrefix);
    EXPECT_EQ(prefix.find('"'), std::string::npos);
    auto decoded = decodeLogPrefix(prefix);
    ASSERT_TRUE(decoded.has_value());
    EXPECT_EQ(*decoded, guard);
  }
  EXPECT_EQ(encodeLogPrefix({.kind = FlowGuard::Kind::NetworkAcl, .ingress = true, .name = "a", .rule = 7}),
            "crl:n:i:7:a");
  EXPECT_EQ(encodeLogPrefix({.kind = FlowGuard::Kind::SecurityGroup, .ingress = false, .name = "web"}),
            "crl:s:o:web");
}

TEST(FlowLogPrefix, LongNamesAreCutToFit) {
  std::string combo;
  for (int i = 0; i < 5; ++i)
    combo += (combo.empty() ? "" : ".") + std::string(60, static_cast<char>('a' + i));
  const std::string prefix =
      encodeLogPrefix({.kind = FlowGuard::Kind::SecurityGroup, .ingress = true, .name = combo});
  EXPECT_EQ(prefix.size(), kMaxLogPrefix);
  EXPECT_EQ(prefix.back(), '+');
  auto decoded = decodeLogPrefix(prefix);
  ASSERT_TRUE(decoded.has_value());
  EXPECT_EQ(decoded->kind, FlowGuard::Kind::SecurityGroup);
  EXPECT_TRUE(combo.starts_with(decoded->name.substr(0, decoded->name.size() - 1)));
}

TEST(FlowLogPrefix, ForeignPrefixesAreNotOurs) {
  for (std::string_view prefix : {"", "crl", "crl:", "crl:z", "crl:s:x:web", "crl:n:i:abc:acl",
                                  "crl:n:i:1:", "crl:s:i:WEB", "IN=eth0 ", "crl:x:a b"}) {
    SCOPED_TRACE(prefix);
    EXPECT_FALSE(decodeLogPrefix(prefix).has_value());
  }
}

TEST(FlowLogText, GuardsInTheBuildingsWords) {
  EXPECT_EQ(flowGuardText({.kind = FlowGuard::Kind::SecurityGroup, .ingress = true, .name = "web"}),
            "security group web (inbound): no rule allows it");
  EXPECT_EQ(flowGuardText({.kind = FlowGuard::Kind::SecurityGroup, .ingress = false, .name = "db.web"}),
            "security groups db,web (outbound): no rule allows it");
  EXPECT_EQ(
      flowGuardText({.kind = FlowGuard::Kind::NetworkAcl, .ingress = true, .name = "strict", .rule = 90}),
      "network ACL strict rule 90 (inbound): deny");
  EXPECT_EQ(flowGuardText({.kind = FlowGuard::Kind::NetworkAcl, .ingress = false, .name = "strict"}),
            "network ACL strict (outbound): no rule matches, implicit deny");
}

TEST(FlowLogPacket, ParsesTcpAndUdpHeaders) {
  // IPv4, IHL 5, total length 60, TCP, 10.0.1.5 -> 10.0.2.6, ports 43512 -> 80.
  const unsigned char tcp[] = {0x45, 0, 0, 60, 0,  0, 0x40, 0, 64,   6,    0, 0,
                               10,   0, 1, 5,  10, 0, 2,    6, 0xa9, 0xf8, 0, 80};
  auto parsed = parseIpv4Packet(std::string_view(reinterpret_cast<const char*>(tcp), sizeof tcp));
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->first.source, ip(10, 0, 1, 5));
  EXPECT_EQ(parsed->first.destination, ip(10, 0, 2, 6));
  EXPECT_EQ(parsed->first.protocol, 6);
  EXPECT_EQ(parsed->first.sourcePort, 43512);
  EXPECT_EQ(parsed->first.destinationPort, 80);
  EXPECT_EQ(parsed->second, 60u);
  // Too short, or IPv6: not ours to read.
  EXPECT_FALSE(parseIpv4Packet(std::string_view(reinterpret_cast<const char*>(tcp), 12)).has_value());
  const unsigned char v6[20] = {0x60};
  EXPECT_FALSE(parseIpv4Packet(std::string_view(reinterpret_cast<const char*>(v6), sizeof v6)).has_value());
}

FlowDirectory twoNics() {
  FlowDirectory directory;
  directory.nics[ip(10, 0, 1, 5)] = {
      .instance = "web-1", .interfaceId = "crlv00000001", .subnet = "web", .groups = "web"};
  directory.nics[ip(10, 0, 2, 6)] = {
      .instance = "db-1", .interfaceId = "crlv00000002", .subnet = "db", .groups = "db"};
  directory.router = {ip(10, 0, 1, 1), ip(10, 0, 1, 2)};
  return directory;
}

TEST(FlowAggregator, RejectsAggregatePerWindowAtTheGuardedNic) {
  FlowAggregator aggregator("prod");
  const FlowDirectory directory = twoNics();
  const PacketTuple tuple{.source = ip(10, 0, 1, 5),
                          .destination = ip(10, 0, 2, 6),
                          .protocol = 6,
                          .sourcePort = 40000,
                          .destinationPort = 5432};
  const std::string ingress =
      encodeLogPrefix({.kind = FlowGuard::Kind::SecurityGroup, .ingress = true, .name = "db"});
  // Three SYNs (the retries) in one window, one more after it closed.
  for (int64_t at : {1'000'000, 1'001'000, 1'003'000}) {
    aggregator.addRejected({.prefix = ingress, .tuple = tuple, .bytes = 60, .atMs = at}, directory);
  }
  EXPECT_TRUE(aggregator.take(1'005'000).empty()) << "the window is still open";
  auto records = aggregator.take(1'000'000 + kFlowWindowMs);
  ASSERT_EQ(records.size(), 1u);
  const FlowRecord& r = records[0];
  EXPECT_EQ(r.vpc, "prod");
  EXPECT_EQ(r.interfaceId, "crlv00000002") << "an inbound security group guards the destination's NIC";
  EXPECT_EQ(r.instance, "db-1");
  EXPECT_EQ(r.packets, 3u);
  EXPECT_EQ(r.bytes, 180u);
  EXPECT_EQ(r.start, 1000);
  EXPECT_EQ(r.end, 1003);
  EXPECT_EQ(r.action, FlowAction::Reject);
  EXPECT_EQ(flowRecordLine(r),
            "2 crlv00000002 10.0.1.5 10.0.2.6 40000 5432 6 3 180 1000 1003 REJECT OK security group db "
            "(inbound): no rule allows it");
  // An outbound network ACL guards the source's NIC; a prefix we did not write is ignored.
  aggregator.addRejected({.prefix = "crl:n:o:100:strict", .tuple = tuple, .bytes = 60, .atMs = 2'000'000},
                         directory);
  aggregator.addRejected({.prefix = "nobody's", .tuple = tuple, .bytes = 60, .atMs = 2'000'000}, directory);
  records = aggregator.take(0, /*everything=*/true);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].interfaceId, "crlv00000001");
  EXPECT_EQ(records[0].guard.rule, 100);
  EXPECT_EQ(aggregator.openWindows(), 0u);
}

TEST(FlowAggregator, AcceptedFlowsGiveEachNicBothDirectionsOnce) {
  FlowAggregator aggregator("prod");
  const FlowDirectory directory = twoNics();
  ConntrackFlow flow{.id = 7,
                     .original = {.source = ip(10, 0, 1, 5),
                                  .destination = ip(10, 0, 2, 6),
                                  .protocol = 6,
                                  .sourcePort = 40000,
                                  .destinationPort = 5432},
                     .reply = {.source = ip(10, 0, 2, 6),
                               .destination = ip(10, 0, 1, 5),
                               .protocol = 6,
                               .sourcePort = 5432,
                               .destinationPort = 40000},
                     .originalPackets = 10,
                     .originalBytes = 100'520,
                     .replyPackets = 8,
                     .replyBytes = 432,
                     .startMs = 5'000'000};
  aggregator.addFlow(flow, directory, 5'010'000);  // a dump while it runs
  auto records = aggregator.take(5'010'000);
  ASSERT_EQ(records.size(), 4u) << "two NICs, two directions each";
  EXPECT_EQ(records[0].interfaceId, "crlv00000001");
  EXPECT_EQ(records[0].bytes, 100'520u);
  EXPECT_EQ(records[0].sourceAddress, "10.0.1.5");
  EXPECT_EQ(records[1].sourceAddress, "10.0.2.6");
  EXPECT_EQ(records[1].bytes, 432u);
  EXPECT_EQ(records[2].interfaceId, "crlv00000002");
  EXPECT_EQ(records[0].start, 5000);
  EXPECT_EQ(records[0].end, 5010);
  EXPECT_EQ(records[0].action, FlowAction::Accept);
  // Each keeps what conntrack saw, for the daemon to ask the model what allowed it.
  ASSERT_TRUE(records[0].connection.has_value());
  EXPECT_EQ(records[0].connection->original, flow.original);
  EXPECT_EQ(records[0].connection->reply, flow.reply);
  EXPECT_FALSE(records[0].connection->replies);
  ASSERT_TRUE(records[1].connection.has_value());
  EXPECT_TRUE(records[1].connection->replies) << "the second record counts db-1's replies";
  EXPECT_EQ(flowRecordLine(records[0]),
            "2 crlv00000001 10.0.1.5 10.0.2.6 40000 5432 6 10 100520 5000 5010 ACCEPT OK -")
      << "no rule named until the daemon asked the model";
  // Its end: only what came since the dump; then nothing more is owed.
  flow.originalPackets = 12;
  flow.originalBytes = 100'640;
  flow.ended = true;
  aggregator.addFlow(flow, directory, 5'015'000);
  records = aggregator.take(5'015'000);
  ASSERT_EQ(records.size(), 2u) << "only the original direction moved";
  EXPECT_EQ(records[0].packets, 2u);
  EXPECT_EQ(records[0].bytes, 120u);
  EXPECT_EQ(records[0].start, 5010);
  aggregator.addFlow(flow, directory, 5'016'000);  // the same end again (after forgetting): counted anew
  EXPECT_EQ(aggregator.take(5'016'000).size(), 4u);
}

TEST(FlowAggregator, TrafficToTheRouterIsLeftOut) {
  FlowAggregator aggregator("prod");
  ConntrackFlow dns{.id = 1,
                    .original = {.source = ip(10, 0, 1, 5),
                                 .destination = ip(10, 0, 1, 2),
                                 .protocol = 17,
                                 .sourcePort = 5353,
                                 .destinationPort = 53},
                    .reply = {.source = ip(10, 0, 1, 2),
                              .destination = ip(10, 0, 1, 5),
                              .protocol = 17,
                              .sourcePort = 53,
                              .destinationPort = 5353},
                    .originalPackets = 1,
                    .originalBytes = 60,
                    .replyPackets = 1,
                    .replyBytes = 90};
  aggregator.addFlow(dns, twoNics(), 1000);
  EXPECT_TRUE(aggregator.take(1000).empty());
}

TEST(FlowRecordJson, RoundTrips) {
  FlowRecord record{
      .id = 42,
      .vpc = "prod",
      .interfaceId = "crlv00000002",
      .instance = "db-1",
      .subnet = "db",
      .sourceAddress = "10.0.1.5",
      .destinationAddress = "10.0.2.6",
      .sourcePort = 40000,
      .destinationPort = 5432,
      .protocol = 6,
      .packets = 3,
      .bytes = 180,
      .start = 1000,
      .end = 1003,
      .action = FlowAction::Reject,
      .logStatus = "OK",
      .guard = {.kind = FlowGuard::Kind::NetworkAcl, .ingress = true, .name = "strict", .rule = 90}};
  nlohmann::json json = flowRecordJson(record);
  EXPECT_EQ(json["action"], "REJECT");
  EXPECT_EQ(json["guard"]["kind"], "network-acl");
  EXPECT_EQ(json["guard"]["rule"], 90);
  EXPECT_EQ(json["protocol_name"], "tcp");
  auto back = flowRecordFromJson(json);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(*back, record);
  record.guard = {};
  record.action = FlowAction::Accept;
  back = flowRecordFromJson(flowRecordJson(record));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, record);
}

TEST(FlowRecordJson, AnAcceptedFlowNamesTheRulesThatAllowedIt) {
  FlowRecord record{.id = 7,
                    .vpc = "prod",
                    .interfaceId = "crlv00000002",
                    .instance = "web-1",
                    .subnet = "pub",
                    .sourceAddress = "10.0.2.6",
                    .destinationAddress = "10.0.1.5",
                    .sourcePort = 40000,
                    .destinationPort = 80,
                    .protocol = 6,
                    .packets = 5,
                    .bytes = 400,
                    .start = 1000,
                    .end = 1010,
                    .action = FlowAction::Accept};
  record.allowedBy = {
      {.kind = FlowAllowingRule::Kind::SecurityGroup,
       .ingress = false,
       .name = "app",
       .rule = 1,
       .matches = "all traffic to 0.0.0.0/0"},
      {.kind = FlowAllowingRule::Kind::NetworkAcl, .ingress = false, .name = "strict", .rule = 90},
      {.kind = FlowAllowingRule::Kind::NetworkAcl, .ingress = true, .name = "default", .rule = 100},
      {.kind = FlowAllowingRule::Kind::SecurityGroup,
       .ingress = true,
       .name = "web",
       .rule = 2,
       .matches = "tcp port 80 from 0.0.0.0/0"},
  };
  EXPECT_EQ(
      flowRecordLine(record),
      "2 crlv00000002 10.0.2.6 10.0.1.5 40000 80 6 5 400 1000 1010 ACCEPT OK security group app rule 1 "
      "(outbound) allows all traffic to 0.0.0.0/0; network ACL strict rule 90 (outbound) allows; network "
      "ACL default rule 100 (inbound) allows; security group web rule 2 (inbound) allows tcp port 80 "
      "from 0.0.0.0/0");
  const nlohmann::json json = flowRecordJson(record);
  EXPECT_EQ(json["guard"]["kind"], "allowed");
  ASSERT_EQ(json["guard"]["rules"].size(), 4u);
  EXPECT_EQ(
      json["guard"]["rules"][3],
      (nlohmann::json{{"kind", "security-group"},
                      {"direction", "inbound"},
                      {"name", "web"},
                      {"rule", 2},
                      {"matches", "tcp port 80 from 0.0.0.0/0"},
                      {"reply", false},
                      {"text", "security group web rule 2 (inbound) allows tcp port 80 from 0.0.0.0/0"}}));
  EXPECT_EQ(json["guard"]["rules"][2]["rule"], 100);
  EXPECT_FALSE(json["guard"]["rules"][2].contains("matches"));
  auto back = flowRecordFromJson(json);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(*back, record);

  // The replies pass a stateful group because it allowed the connection; a published port is its own rule.
  EXPECT_EQ(
      flowAllowingRuleText({.kind = FlowAllowingRule::Kind::SecurityGroup,
                            .ingress = true,
                            .name = "web",
                            .rule = 2,
                            .matches = "tcp port 80 from 0.0.0.0/0",
                            .reply = true}),
      "security group web rule 2 (inbound) allows tcp port 80 from 0.0.0.0/0 (its replies pass with it: "
      "stateful)");
  EXPECT_EQ(flowAllowingRuleText({.kind = FlowAllowingRule::Kind::PublishedPort,
                                  .ingress = true,
                                  .name = "app-1",
                                  .matches = "9000:8080/tcp"}),
            "app-1 publishes 9000:8080/tcp (its own allow rule, no security group asked)");
  // Records stored before rules were named read back as they were.
  record.allowedBy.clear();
  EXPECT_EQ(flowRecordJson(record)["guard"], nullptr);
}

TEST(FlowRecordJson, SkipDataHasDashesWhereAwsHasThem) {
  FlowRecord record{.id = 9, .vpc = "prod", .interfaceId = "-", .start = 1000, .end = 1010};
  record.logStatus = std::string(kLogStatusSkipData);
  record.skipped = "NFLOG: the socket's buffer overflowed, rejected packets were not logged";
  EXPECT_EQ(flowRecordLine(record),
            "2 - - - - - - - - 1000 1010 - SKIPDATA NFLOG: the socket's buffer overflowed, rejected packets "
            "were not logged");
  const nlohmann::json json = flowRecordJson(record);
  EXPECT_EQ(json["log_status"], "SKIPDATA");
  EXPECT_EQ(json["action"], nullptr);
  EXPECT_EQ(json["srcaddr"], nullptr);
  EXPECT_EQ(json["packets"], nullptr);
  EXPECT_EQ(json["skipped"], record.skipped);
  auto back = flowRecordFromJson(json);
  ASSERT_TRUE(back.has_value()) << back.error().message();
  EXPECT_EQ(*back, record);
}

PacketTuple scanTuple(uint16_t port) {
  return {.source = ip(10, 0, 1, 5),
          .destination = ip(10, 0, 2, 6),
          .protocol = 6,
          .sourcePort = 40000,
          .destinationPort = port};
}

TEST(FlowAggregator, LostDataIsOneSkipDataRecordPerWindowAndKind) {
  FlowAggregator aggregator("prod");
  const FlowDirectory directory = twoNics();
  const std::string ingress =
      encodeLogPrefix({.kind = FlowGuard::Kind::SecurityGroup, .ingress = true, .name = "db"});
  aggregator.addRejected({.prefix = ingress, .tuple = scanTuple(1), .bytes = 60, .atMs = 999'000}, directory);
  aggregator.noteLost(1'000'000, FlowAction::Reject, "NFLOG: lost");
  aggregator.noteLost(1'002'000, FlowAction::Accept, "conntrack: lost");
  aggregator.noteLost(1'004'000, FlowAction::Reject, "NFLOG: lost");
  aggregator.addRejected({.prefix = ingress, .tuple = scanTuple(2), .bytes = 60, .atMs = 1'001'000},
                         directory);
  EXPECT_TRUE(aggregator.take(1'005'000).empty()) << "no window closed yet";
  auto records = aggregator.take(1'000'000 + kFlowWindowMs);
  ASSERT_EQ(records.size(), 2u) << "the reject that opened first, then the rejects' SKIPDATA window";
  EXPECT_EQ(records[0].logStatus, "OK");
  const FlowRecord& skipped = records[1];
  EXPECT_EQ(skipped.logStatus, kLogStatusSkipData);
  EXPECT_EQ(skipped.action, FlowAction::Reject) << "filed under the kind it lost";
  EXPECT_EQ(skipped.vpc, "prod");
  EXPECT_EQ(skipped.interfaceId, "-");
  EXPECT_EQ(skipped.start, 1000);
  EXPECT_EQ(skipped.end, 1010);
  EXPECT_EQ(skipped.skipped, "NFLOG: lost (2 times)");
  records = aggregator.take(1'002'000 + kFlowWindowMs);
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].destinationPort, 2);
  EXPECT_EQ(records[1].action, FlowAction::Accept);
  EXPECT_EQ(records[1].skipped, "conntrack: lost");
  EXPECT_EQ(records[1].start, 1002);
  // Nothing lost since: no SKIPDATA; a later loss opens a window of its own.
  EXPECT_TRUE(aggregator.take(2'000'000, /*everything=*/true).empty());
  aggregator.noteLost(3'000'000, FlowAction::Reject, "NFLOG: lost");
  records = aggregator.take(0, /*everything=*/true);
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].start, 3000);
  EXPECT_EQ(records[0].skipped, "NFLOG: lost");
}

TEST(FlowAggregator, OpenRejectFlowsStopAtTheCapAndTheRestIsSkipData) {
  FlowAggregator aggregator("prod");
  const FlowDirectory directory = twoNics();
  const std::string ingress =
      encodeLogPrefix({.kind = FlowGuard::Kind::SecurityGroup, .ingress = true, .name = "db"});
  // A port scan: every packet a flow of its own, kMaxFlowsPerWindow + 5 of them.
  for (size_t port = 1; port <= kMaxFlowsPerWindow + 5; ++port) {
    aggregator.addRejected({.prefix = ingress,
                            .tuple = scanTuple(static_cast<uint16_t>(port)),
                            .bytes = 60,
                            .atMs = 1'000'000 + static_cast<int64_t>(port % 1000)},
                           directory);
  }
  EXPECT_EQ(aggregator.openWindows(), kMaxFlowsPerWindow);
  // At the cap a flow already open still counts its packets.
  aggregator.addRejected({.prefix = ingress, .tuple = scanTuple(1), .bytes = 60, .atMs = 1'002'000},
                         directory);
  aggregator.addRejected({.prefix = ingress, .tuple = scanTuple(60'000), .bytes = 60, .atMs = 1'002'000},
                         directory);
  EXPECT_EQ(aggregator.openWindows(), kMaxFlowsPerWindow);
  auto records = aggregator.take(0, /*everything=*/true);
  ASSERT_EQ(records.size(), kMaxFlowsPerWindow + 1);
  size_t skipData = 0;
  for (const FlowRecord& record : records) {
    if (record.logStatus != kLogStatusSkipData) {
      if (record.destinationPort == 1) {
        EXPECT_EQ(record.packets, 2u);
      }
      continue;
    }
    ++skipData;
    EXPECT_EQ(record.skipped,
              "6 packets of new rejected flows not logged: the window already held 10000 flows, the most "
              "corrald keeps per VPC");
  }
  EXPECT_EQ(skipData, 1u);
  // Once the windows closed there is room again.
  aggregator.addRejected({.prefix = ingress, .tuple = scanTuple(60'000), .bytes = 60, .atMs = 2'000'000},
                         directory);
  EXPECT_EQ(aggregator.openWindows(), 1u);
}

TEST(FlowAggregator, TheCapIsPerAggregator) {
  FlowAggregator aggregator("prod", /*maxFlowsPerWindow=*/2);
  const FlowDirectory directory = twoNics();
  for (uint16_t port = 1; port <= 3; ++port)
    aggregator.addRejected({.prefix = "crl:r", .tuple = scanTuple(port), .bytes = 60, .atMs = 1'000'000},
                           directory);
  auto records = aggregator.take(0, /*everything=*/true);
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[2].logStatus, kLogStatusSkipData) << "opened at the same ms: after the flows";
  EXPECT_NE(records[2].skipped.find("1 packet of new rejected flows not logged"), std::string::npos)
      << records[2].skipped;
}

TEST(FlowAction, ParsesEitherCaseAndNamesTheField) {
  EXPECT_EQ(parseFlowAction("REJECT"), FlowAction::Reject);
  EXPECT_EQ(parseFlowAction("accept"), FlowAction::Accept);
  auto bad = parseFlowAction("drop");
  ASSERT_FALSE(bad.has_value());
  EXPECT_EQ(bad.error().field(), "action");
}

}  // namespace
}  // namespace corral::net
