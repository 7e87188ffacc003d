// Unit tests for corral-init's pure helpers: kernel command line parsing, request decoding, output capping,
// UTF-8 repair, line framing and the JSON it answers with. No root, no VM.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#define CORRAL_INIT_NO_MAIN
#include "images/guest/init.cc"

namespace corral::guest {
namespace {

std::string dotted(in_addr_t address) {
  char text[INET_ADDRSTRLEN];
  in_addr in{};
  in.s_addr = address;
  return inet_ntop(AF_INET, &in, text, sizeof(text));
}

TEST(GuestCmdline, ReadsCorralParameters) {
  const auto params = parseCmdline(
      "console=ttyS0 quiet corral.name=web-1 corral.ip=10.1.2.3/24 corral.gw=10.1.2.1 "
      "corral.mac=52:54:00:12:34:56\n");
  EXPECT_EQ(params.name, "web-1");
  EXPECT_EQ(params.effectiveHostname(), "web-1");
  ASSERT_TRUE(params.ip);
  EXPECT_EQ(dotted(*params.ip), "10.1.2.3");
  EXPECT_EQ(params.prefixLength, 24);
  ASSERT_TRUE(params.gateway);
  EXPECT_EQ(dotted(*params.gateway), "10.1.2.1");
  EXPECT_EQ(params.mac, "52:54:00:12:34:56");
  EXPECT_TRUE(params.errors.empty());
}

TEST(GuestCmdline, ResolverAndSearchDomainForResolvConf) {
  const auto params =
      parseCmdline("console=ttyS0 corral.name=a corral.dns=10.1.2.2 corral.search=lab.internal");
  ASSERT_TRUE(params.nameserver);
  EXPECT_EQ(dotted(*params.nameserver), "10.1.2.2");
  EXPECT_EQ(params.search, "lab.internal");
  EXPECT_TRUE(params.errors.empty());
  const auto bad = parseCmdline("corral.name=a corral.dns=10.1.2 corral.search=lab/internal");
  EXPECT_FALSE(bad.nameserver);
  EXPECT_EQ(bad.search, "");
  EXPECT_EQ(bad.errors.size(), 2u);
}

TEST(GuestCmdline, RootSerialSelectsTheImageRoot) {
  EXPECT_EQ(parseCmdline("console=ttyS0 corral.name=a corral.root=corral-root").rootSerial, "corral-root");
  EXPECT_EQ(parseCmdline("console=ttyS0 corral.name=a").rootSerial, "");
}

TEST(GuestWorkload, ParsesTheConfigDisk) {
  auto parsed = parseWorkload(
      R"({"argv": ["python3", "-m", "http.server"], "env": ["PATH=/opt/bin:/bin", "A=b=c"], "workdir": "/app",
          "user": "app:staff"})");
  ASSERT_TRUE(std::holds_alternative<Workload>(parsed)) << std::get<std::string>(parsed);
  const auto& workload = std::get<Workload>(parsed);
  EXPECT_EQ(workload.argv, (std::vector<std::string>{"python3", "-m", "http.server"}));
  EXPECT_EQ(workload.env, (std::vector<std::string>{"PATH=/opt/bin:/bin", "A=b=c"}));
  EXPECT_EQ(workload.workdir, "/app");
  EXPECT_EQ(workload.user, "app:staff");

  auto empty = parseWorkload("{}");
  ASSERT_TRUE(std::holds_alternative<Workload>(empty));
  EXPECT_TRUE(std::get<Workload>(empty).argv.empty());
  EXPECT_EQ(std::get<Workload>(empty).workdir, "/");
}

TEST(GuestWorkload, RefusesMalformedConfigsNamingTheField) {
  auto reason = [](std::string_view text) {
    auto parsed = parseWorkload(text);
    return std::holds_alternative<std::string>(parsed) ? std::get<std::string>(parsed)
                                                       : std::string("parsed");
  };
  EXPECT_EQ(reason("not json"), "config is not a JSON object");
  EXPECT_EQ(reason("[1]"), "config is not a JSON object");
  EXPECT_EQ(reason(R"({"argv": "sh"})"), "\"argv\" must be an array of strings");
  EXPECT_EQ(reason(R"({"argv": [""]})"), "argv[0] is empty");
  EXPECT_EQ(reason(R"({"env": ["NOEQUALS"]})"), "env entry \"NOEQUALS\" is not K=V");
  EXPECT_EQ(reason(R"({"workdir": 3})"), "\"workdir\" must be a string");
  EXPECT_EQ(reason(R"({"workdir": "app"})"), "workdir \"app\" is not absolute");
  EXPECT_EQ(reason(R"({"user": ["x"]})"), "\"user\" must be a string");
}

TEST(GuestWorkload, ResolvesUsersLikeDocker) {
  const std::string passwd =
      "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\nweb:x:33:33::/var/www:/bin/sh\n";
  const std::string group = "root:x:0:\nstaff:x:50:app,web\napp:x:1001:\naudio:x:29:web\n";
  auto resolve = [&](std::string_view user) { return resolveUser(user, passwd, group); };
  auto identity = [&](std::string_view user) {
    auto resolved = resolve(user);
    EXPECT_TRUE(std::holds_alternative<Identity>(resolved))
        << user << ": " << std::get<std::string>(resolved);
    return std::holds_alternative<Identity>(resolved) ? std::get<Identity>(resolved) : Identity{99, 99, {}};
  };
  auto root = identity("");
  EXPECT_EQ(root.uid, 0u);
  EXPECT_EQ(root.gid, 0u);
  auto app = identity("app");
  EXPECT_EQ(app.uid, 1000u);
  EXPECT_EQ(app.gid, 1001u);
  EXPECT_EQ(app.groups, std::vector<gid_t>{50});
  auto web = identity("33");
  EXPECT_EQ(web.uid, 33u);
  EXPECT_EQ(web.gid, 33u);
  EXPECT_EQ(web.groups, (std::vector<gid_t>{50, 29}));
  auto unknownId = identity("4242:7");
  EXPECT_EQ(unknownId.uid, 4242u);
  EXPECT_EQ(unknownId.gid, 7u);
  auto named = identity("app:staff");
  EXPECT_EQ(named.gid, 50u);
  EXPECT_TRUE(named.groups.empty()) << "staff is the primary group now";

  EXPECT_EQ(std::get<std::string>(resolve("nobody")),
            "user \"nobody\": no such user in the image's /etc/passwd");
  EXPECT_EQ(std::get<std::string>(resolve("app:wheel")),
            "group \"wheel\": no such group in the image's /etc/group");
}

TEST(GuestCmdline, HostnameOverridesNameAndDefaultsToCorral) {
  EXPECT_EQ(parseCmdline("corral.name=a corral.hostname=b").effectiveHostname(), "b");
  EXPECT_EQ(parseCmdline("console=ttyS0").effectiveHostname(), "corral");
}

TEST(GuestCmdline, QuotesGroupWords) {
  EXPECT_EQ(splitCmdline("a \"b c\" d=\"e f\"  "), (std::vector<std::string>{"a", "b c", "d=e f"}));
  EXPECT_EQ(parseCmdline("corral.name=\"x\"").name, "x");
}

TEST(GuestCmdline, NoIpLeavesEth0Down) {
  const auto params = parseCmdline("corral.name=a");
  EXPECT_FALSE(params.ip);
  EXPECT_FALSE(params.gateway);
}

TEST(GuestCmdline, MalformedAddressesAreReportedNotApplied) {
  for (const char* bad : {"corral.ip=10.0.0.1", "corral.ip=10.0.0.1/33", "corral.ip=10.0.0/24",
                          "corral.ip=10.0.0.1/", "corral.ip=10.0.0.1/2x", "corral.gw=300.1.1.1"}) {
    const auto params = parseCmdline(bad);
    EXPECT_FALSE(params.ip) << bad;
    EXPECT_FALSE(params.gateway) << bad;
    EXPECT_EQ(params.errors.size(), 1u) << bad;
  }
}

TEST(GuestCmdline, NetmaskFromPrefix) {
  EXPECT_EQ(dotted(prefixToNetmask(0)), "0.0.0.0");
  EXPECT_EQ(dotted(prefixToNetmask(24)), "255.255.255.0");
  EXPECT_EQ(dotted(prefixToNetmask(17)), "255.255.128.0");
  EXPECT_EQ(dotted(prefixToNetmask(32)), "255.255.255.255");
}

TEST(GuestUtf8, KeepsValidAndReplacesInvalid) {
  EXPECT_EQ(toValidUtf8("plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"),
            "plain \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
  EXPECT_EQ(toValidUtf8("a\xff"
                        "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(toValidUtf8("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");                  // overlong '/'
  EXPECT_EQ(toValidUtf8("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
  EXPECT_EQ(toValidUtf8("\xe2\x82"), "\xef\xbf\xbd\xef\xbf\xbd");                  // cut short at the end
  EXPECT_EQ(toValidUtf8(std::string("nul\0x", 5)), std::string("nul\0x", 5));
}

TEST(GuestOutput, CapsAndFlagsTruncation) {
  CappedOutput output(5);
  output.append("abc");
  EXPECT_FALSE(output.truncated());
  output.append("de");
  EXPECT_FALSE(output.truncated());
  output.append("f");
  EXPECT_TRUE(output.truncated());
  output.append("ghi");
  EXPECT_EQ(output.data(), "abcde");
}

TEST(GuestRequest, DecodesSetIdentity) {
  const std::string seed(64, 'a');
  const auto identity = std::get<SetIdentityRequest>(parseRequest(
      R"({"id": 7, "op": "set_identity", "hostname": "web-2", "mac": "52:54:00:AB:cd:0f", "ip": "10.0.1.5/24",
          "gateway": "10.0.1.1", "seed": ")" +
      seed + R"(", "unix_ns": 1796000000123456789})"));
  EXPECT_EQ(identity.id, 7);
  EXPECT_EQ(identity.hostname, "web-2");
  EXPECT_EQ(identity.mac, (std::array<uint8_t, 6>{0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f}));
  const auto noNic = std::get<SetIdentityRequest>(
      parseRequest(R"({"id": 8, "op": "set_identity", "hostname": "h", "mac": null, "seed": ")" + seed +
                   R"(", "unix_ns": 1})"));
  EXPECT_FALSE(noNic.mac);
  ASSERT_TRUE(identity.ip);
  EXPECT_EQ(identity.ip->first, inet_addr("10.0.1.5"));
  EXPECT_EQ(identity.ip->second, 24);
  EXPECT_EQ(identity.gateway, inet_addr("10.0.1.1"));
  EXPECT_EQ(identity.seed, std::vector<uint8_t>(32, 0xaa));
  EXPECT_EQ(identity.unixNs, 1796000000123456789);

  const auto noNetwork = std::get<SetIdentityRequest>(parseRequest(
      R"({"id": 8, "op": "set_identity", "hostname": "h", "mac": "52:54:00:00:00:01", "ip": null,
          "seed": ")" +
      seed + R"(", "unix_ns": 1})"));
  EXPECT_FALSE(noNetwork.ip);
  EXPECT_FALSE(noNetwork.gateway);
  EXPECT_FALSE(noNetwork.nameserver);
  EXPECT_TRUE(noNetwork.search.empty());
  const auto withResolver = std::get<SetIdentityRequest>(parseRequest(
      R"({"id": 8, "op": "set_identity", "hostname": "h", "mac": "52:54:00:00:00:01", "ip": "10.0.1.5/24",
          "nameserver": "10.0.1.2", "search": "lab.internal", "seed": ")" +
      seed + R"(", "unix_ns": 1})"));
  EXPECT_EQ(withResolver.nameserver, inet_addr("10.0.1.2"));
  EXPECT_EQ(withResolver.search, "lab.internal");

  // Each bad field is named in the refusal.
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"("hostname": "", "mac": "52:54:00:00:00:01", "seed": ")" + seed + R"(", "unix_ns": 1)", "hostname"},
      {R"("hostname": ")" + std::string(65, 'x') + R"(", "mac": "52:54:00:00:00:01", "seed": ")" + seed +
           R"(", "unix_ns": 1)",
       "hostname"},
      {R"("hostname": "h", "mac": "52:54:00:00:00", "seed": ")" + seed + R"(", "unix_ns": 1)", "mac"},
      {R"("hostname": "h", "mac": "01:54:00:00:00:01", "seed": ")" + seed + R"(", "unix_ns": 1)", "mac"},
      {R"("hostname": "h", "mac": "52-54-00-00-00-01", "seed": ")" + seed + R"(", "unix_ns": 1)", "mac"},
      {R"("hostname": "h", "mac": "52:54:00:00:00:01", "ip": "10.0.0.2", "seed": ")" + seed +
           R"(", "unix_ns": 1)",
       "ip"},
      {R"("hostname": "h", "ip": "10.0.0.2/24", "seed": ")" + seed + R"(", "unix_ns": 1)", "ip"},
      {R"("hostname": "h", "mac": "52:54:00:00:00:01", "gateway": "10.0.0.1", "seed": ")" + seed +
           R"(", "unix_ns": 1)",
       "gateway"},
      {R"("hostname": "h", "nameserver": "10.0.1", "seed": ")" + seed + R"(", "unix_ns": 1)", "nameserver"},
      {R"("hostname": "h", "nameserver": 5, "seed": ")" + seed + R"(", "unix_ns": 1)", "nameserver"},
      {R"("hostname": "h", "search": "lab.internal", "seed": ")" + seed + R"(", "unix_ns": 1)", "search"},
      {R"("hostname": "h", "nameserver": "10.0.1.2", "search": "Lab Internal", "seed": ")" + seed +
           R"(", "unix_ns": 1)",
       "search"},
      {R"("hostname": "h", "mac": "52:54:00:00:00:01", "seed": "abcd", "unix_ns": 1)", "seed"},
      {R"("hostname": "h", "mac": "52:54:00:00:00:01", "seed": ")" + std::string(63, 'a') +
           R"(", "unix_ns": 1)",
       "seed"},
      {R"("hostname": "h", "mac": "52:54:00:00:00:01", "seed": ")" + std::string(64, 'A') +
           R"(", "unix_ns": 1)",
       "seed"},
      {R"("hostname": "h", "mac": "52:54:00:00:00:01", "seed": ")" + std::string(1026, 'a') +
           R"(", "unix_ns": 1)",
       "seed"},
      {R"("hostname": "h", "mac": "52:54:00:00:00:01", "seed": ")" + seed + R"(")", "unix_ns"},
  };
  for (const auto& [fields, named] : bad) {
    const std::string line = R"({"id": 9, "op": "set_identity", )" + fields + "}";
    const Request parsed = parseRequest(line);
    ASSERT_TRUE(std::holds_alternative<BadRequest>(parsed)) << line;
    EXPECT_EQ(std::get<BadRequest>(parsed).id, 9) << line;
    EXPECT_NE(std::get<BadRequest>(parsed).reason.find('"' + named + '"'), std::string::npos)
        << line << " → " << std::get<BadRequest>(parsed).reason;
  }
}

TEST(GuestRequest, DecodesHelloExecShutdown) {
  EXPECT_EQ(std::get<HelloRequest>(parseRequest(R"({"id": 1, "op": "hello"})")).id, 1);
  EXPECT_EQ(std::get<ShutdownRequest>(parseRequest(R"({"id": 3, "op": "shutdown"})")).id, 3);
  const auto setClock = std::get<SetClockRequest>(
      parseRequest(R"({"id": 5, "op": "set_clock", "unix_ns": 1796000000123456789})"));
  EXPECT_EQ(setClock.id, 5);
  EXPECT_EQ(setClock.unixNs, 1796000000123456789);
  for (const char* bad :
       {R"({"id": 6, "op": "set_clock"})", R"({"id": 6, "op": "set_clock", "unix_ns": "1"})",
        R"({"id": 6, "op": "set_clock", "unix_ns": -5})"}) {
    const auto refused = std::get<BadRequest>(parseRequest(bad));
    EXPECT_EQ(refused.id, 6) << bad;
    EXPECT_NE(refused.reason.find("unix_ns"), std::string::npos) << refused.reason;
  }
  const auto exec = std::get<ExecRequest>(parseRequest(
      R"({"id": 2, "op": "exec", "command": ["uname", "-r"], "env": ["K=V"], "timeout_ms": 500})"));
  EXPECT_EQ(exec.id, 2);
  EXPECT_EQ(exec.command, (std::vector<std::string>{"uname", "-r"}));
  EXPECT_EQ(exec.env, (std::vector<std::string>{"K=V"}));
  EXPECT_EQ(exec.timeoutMs, 500);
  const auto defaults =
      std::get<ExecRequest>(parseRequest(R"({"id": 4, "op": "exec", "command": ["true"]})"));
  EXPECT_TRUE(defaults.env.empty());
  EXPECT_EQ(defaults.timeoutMs, kDefaultExecTimeoutMs);
}

TEST(GuestRequest, MalformedRequestsKeepTheIdWhenThereIsOne) {
  const auto noJson = std::get<BadRequest>(parseRequest("{nope"));
  EXPECT_FALSE(noJson.id);
  EXPECT_FALSE(std::get<BadRequest>(parseRequest("[1]")).id);
  EXPECT_FALSE(std::get<BadRequest>(parseRequest(R"({"id": "1", "op": "hello"})")).id);
  for (const char* bad :
       {R"({"id": 7})", R"({"id": 7, "op": "reboot"})", R"({"id": 7, "op": "exec"})",
        R"({"id": 7, "op": "exec", "command": []})", R"({"id": 7, "op": "exec", "command": ["ls", 1]})",
        R"({"id": 7, "op": "exec", "command": [""]})",
        R"({"id": 7, "op": "exec", "command": ["ls"], "env": ["NOEQUALS"]})",
        R"({"id": 7, "op": "exec", "command": ["ls"], "env": "K=V"})",
        R"({"id": 7, "op": "exec", "command": ["ls"], "timeout_ms": 0})",
        R"({"id": 7, "op": "exec", "command": ["ls"], "timeout_ms": "5"})"}) {
    const auto request = parseRequest(bad);
    ASSERT_TRUE(std::holds_alternative<BadRequest>(request)) << bad;
    EXPECT_EQ(std::get<BadRequest>(request).id, 7) << bad;
    EXPECT_FALSE(std::get<BadRequest>(request).reason.empty()) << bad;
  }
}

TEST(GuestRequest, DecodesOpenAndTheSessionRequests) {
  const auto open = std::get<OpenRequest>(parseRequest(
      R"({"id": 9, "op": "open", "session": 12, "command": ["sh", "-c", "tty"], "env": ["TERM=xterm"],
          "tty": true, "rows": 40, "cols": 120, "stdin": true})"));
  EXPECT_EQ(open.id, 9);
  EXPECT_EQ(open.session, 12);
  EXPECT_EQ(open.command, (std::vector<std::string>{"sh", "-c", "tty"}));
  EXPECT_EQ(open.env, (std::vector<std::string>{"TERM=xterm"}));
  EXPECT_TRUE(open.tty);
  EXPECT_TRUE(open.stdinOpen);
  EXPECT_EQ(open.rows, 40);
  EXPECT_EQ(open.cols, 120);
  const auto shell =
      std::get<OpenRequest>(parseRequest(R"({"id": 9, "op": "open", "session": 13, "command": []})"));
  EXPECT_EQ(shell.command, (std::vector<std::string>{"/bin/sh"}));
  EXPECT_FALSE(shell.tty);
  EXPECT_TRUE(shell.stdinOpen);
  EXPECT_EQ(shell.rows, 0);

  using Op = SessionRequest::Op;
  const auto input =
      std::get<SessionRequest>(parseRequest(R"({"op": "input", "session": 12, "data": "AP9oaQ=="})"));
  EXPECT_EQ(input.op, Op::Input);
  EXPECT_EQ(input.session, 12);
  EXPECT_EQ(input.data, std::string("\0\xffhi", 4));
  EXPECT_EQ(std::get<SessionRequest>(parseRequest(R"({"op": "ack", "session": 12, "bytes": 4096})")).bytes,
            4096u);
  const auto resize =
      std::get<SessionRequest>(parseRequest(R"({"op": "resize", "session": 12, "rows": 50, "cols": 132})"));
  EXPECT_EQ(resize.op, Op::Resize);
  EXPECT_EQ(resize.rows, 50);
  EXPECT_EQ(resize.cols, 132);
  EXPECT_EQ(std::get<SessionRequest>(parseRequest(R"({"op": "close_input", "session": 12})")).op,
            Op::CloseInput);
  const auto signal =
      std::get<SessionRequest>(parseRequest(R"({"op": "signal", "session": 12, "signal": 2})"));
  EXPECT_EQ(signal.op, Op::Signal);
  EXPECT_EQ(signal.signal, 2);
  EXPECT_EQ(std::get<SessionRequest>(parseRequest(R"({"op": "close", "session": 12})")).op, Op::Close);
}

// A malformed "open" is answered (it has an id); a malformed session request has none to answer and is
// only logged, so it never fails the request the host waits for.
TEST(GuestRequest, MalformedSessionRequestsAreNotAnswered) {
  for (const char* bad : {R"({"id": 7, "op": "open"})", R"({"id": 7, "op": "open", "session": "1"})",
                          R"({"id": 7, "op": "open", "session": 1, "command": "sh"})",
                          R"({"id": 7, "op": "open", "session": 1, "command": [""]})",
                          R"({"id": 7, "op": "open", "session": 1, "tty": "yes"})",
                          R"({"id": 7, "op": "open", "session": 1, "rows": 70000})",
                          R"({"id": 7, "op": "open", "session": 1, "env": ["NOEQUALS"]})"}) {
    const auto request = parseRequest(bad);
    ASSERT_TRUE(std::holds_alternative<BadRequest>(request)) << bad;
    EXPECT_EQ(std::get<BadRequest>(request).id, 7) << bad;
    EXPECT_TRUE(std::get<BadRequest>(request).answered) << bad;
  }
  for (const char* bad :
       {R"({"op": "input", "session": 1, "data": "not base64"})", R"({"op": "input", "session": 1})",
        R"({"op": "input", "data": "AA=="})", R"({"op": "ack", "session": 1, "bytes": -1})",
        R"({"op": "resize", "session": 1, "rows": -1, "cols": 80})",
        R"({"op": "signal", "session": 1, "signal": 0})", R"({"op": "reboot", "session": 1})"}) {
    const auto request = parseRequest(bad);
    ASSERT_TRUE(std::holds_alternative<BadRequest>(request)) << bad;
    EXPECT_FALSE(std::get<BadRequest>(request).answered) << bad;
    EXPECT_FALSE(std::get<BadRequest>(request).reason.empty()) << bad;
  }
}

TEST(GuestRequest, EnvironmentOverridesDefaults) {
  const auto env = execEnvironment({"PATH=/opt/bin", "FOO=1", "FOO=2", "HOMEDIR=x"});
  EXPECT_EQ(env,
            (std::vector<std::string>{"PATH=/opt/bin", "HOME=/root", "TERM=linux", "FOO=2", "HOMEDIR=x"}));
}

TEST(GuestReply, ReadyEventFollowsTheProtocol) {
  const auto unsolicited = readyEvent({812, 640, "6.1.0-27-cloud-amd64", "web-1"}, std::nullopt);
  EXPECT_FALSE(unsolicited.contains("id"));
  EXPECT_EQ(unsolicited["event"], "ready");
  EXPECT_EQ(unsolicited["uptime_ms"], 812);
  EXPECT_EQ(unsolicited["init_started_ms"], 640);
  EXPECT_EQ(unsolicited["kernel"], "6.1.0-27-cloud-amd64");
  EXPECT_EQ(unsolicited["hostname"], "web-1");
  EXPECT_EQ(unsolicited["version"], vmm::kAgentProtocolVersion);
  EXPECT_EQ(readyEvent({1, 1, "k", "h"}, 5)["id"], 5);
}

TEST(GuestReply, PoweroffEventSaysHowTheWorkloadEnded) {
  const auto exited = poweroffEvent(powerRequestName(SIGUSR2), 7 << 8);  // exit(7)
  EXPECT_FALSE(exited.contains("id"));
  EXPECT_EQ(exited["event"], "poweroff");
  EXPECT_EQ(exited["reason"], "poweroff (SIGUSR2)");
  EXPECT_STREQ(powerRequestName(SIGUSR1), "halt (SIGUSR1)");
  EXPECT_STREQ(powerRequestName(SIGTERM), "reboot (SIGTERM)");
  EXPECT_EQ(exited["workload"]["exit_code"], 7);
  EXPECT_TRUE(exited["workload"]["signal"].is_null());
  EXPECT_EQ(poweroffEvent("power button", SIGKILL)["workload"]["signal"], SIGKILL);
  EXPECT_TRUE(poweroffEvent("shutdown request", std::nullopt)["workload"].is_null());
}

TEST(GuestReply, ExecResultEncodesStatusAndRepairsOutput) {
  ExecOutcome exited;
  applyWaitStatus(exited, 3 << 8);  // exit(3)
  exited.stdoutData = "out\xff";
  const auto result = execResult(2, exited);
  EXPECT_EQ(result["id"], 2);
  EXPECT_EQ(result["exit_code"], 3);
  EXPECT_TRUE(result["signal"].is_null());
  EXPECT_EQ(result["stdout"], "out\xef\xbf\xbd");
  EXPECT_EQ(result["stderr"], "");
  EXPECT_EQ(result["truncated"], false);
  EXPECT_EQ(result["timed_out"], false);
  EXPECT_NO_THROW((void)result.dump());

  ExecOutcome killed;
  applyWaitStatus(killed, SIGKILL);
  killed.timedOut = true;
  const auto killedResult = execResult(9, killed);
  EXPECT_TRUE(killedResult["exit_code"].is_null());
  EXPECT_EQ(killedResult["signal"], SIGKILL);
  EXPECT_EQ(killedResult["timed_out"], true);

  const auto error = errorReply(std::nullopt, "bad");
  EXPECT_TRUE(error["id"].is_null());
  EXPECT_EQ(error["error"], "bad");
}

TEST(GuestFraming, SplitsLinesAndSkipsOverlongOnes) {
  LineReader reader(8);
  reader.feed("{\"a\":1}\n\r\n{\"b\"");
  auto line = reader.next();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->text, "{\"a\":1}");
  EXPECT_FALSE(reader.next());  // the empty CRLF line is skipped, "{"b"" is incomplete
  reader.feed(":2}\r\n");
  line = reader.next();
  ASSERT_TRUE(line);
  EXPECT_EQ(line->text, "{\"b\":2}");

  reader.feed("0123456789");  // longer than 8 without a newline yet
  line = reader.next();
  ASSERT_TRUE(line);
  EXPECT_TRUE(line->overlong);
  reader.feed("more\nok\n");
  line = reader.next();
  ASSERT_TRUE(line);
  EXPECT_FALSE(line->overlong);
  EXPECT_EQ(line->text, "ok");
  EXPECT_FALSE(reader.next());
}

}  // namespace
}  // namespace corral::guest
