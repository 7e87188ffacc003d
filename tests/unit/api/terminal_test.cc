// The terminal protocol (api/terminal.h): frames, controls and upgraded targets both ways, the refusals,
// and the client's state machine (api/terminal_client.h) through whole sessions.
#include "api/terminal.h"

#include <gtest/gtest.h>

#include <csignal>

#include "api/terminal_client.h"

namespace corral::api {
namespace {

TEST(TerminalFrames, StreamFramesRoundTripWithTheirIdByte) {
  std::string frame = encodeStreamFrame(StdioStream::input, std::string("ls\r\0\xff", 5));
  ASSERT_EQ(frame.size(), 6u);
  EXPECT_EQ(frame[0], '\0');
  auto decoded = decodeClientFrame(frame);
  ASSERT_TRUE(decoded) << decoded.error().message();
  EXPECT_EQ(decoded->stream, StdioStream::input);
  EXPECT_EQ(decoded->data, std::string_view("ls\r\0\xff", 5));

  // A decoded frame views the bytes it was decoded from, so they must outlive it.
  std::string errorFrame = encodeStreamFrame(StdioStream::error, "oops");
  auto out = decodeServerFrame(errorFrame);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->stream, StdioStream::error);
  EXPECT_EQ(out->data, "oops");
  // An empty payload is a frame too (nothing to write).
  EXPECT_TRUE(decodeClientFrame(std::string(1, '\0')));
}

TEST(TerminalFrames, BadStreamIdsAreRefusedNamingTheField) {
  for (const std::string& bad :
       {std::string(), std::string("\x03x"), std::string("\x01x"), std::string("\x02x")}) {
    auto decoded = decodeClientFrame(bad);
    ASSERT_FALSE(decoded) << "accepted a client frame of stream " << (bad.empty() ? -1 : bad[0]);
    EXPECT_EQ(decoded.error().field(), "stream");
    EXPECT_EQ(decoded.error().kind(), ErrorKind::InvalidArgument);
  }
  auto fromServer = decodeServerFrame(std::string("\0x", 2));
  ASSERT_FALSE(fromServer);
  EXPECT_EQ(fromServer.error().field(), "stream");
  EXPECT_NE(decodeClientFrame("\x07").error().message().find("unknown stream id 7"), std::string::npos);
}

TEST(TerminalFrames, ControlsRoundTrip) {
  auto resize = parseClientControl(renderClientControl(ResizeControl{{40, 120}}));
  ASSERT_TRUE(resize);
  EXPECT_EQ(std::get<ResizeControl>(*resize).size, (TerminalSize{40, 120}));
  auto eof = parseClientControl(renderClientControl(InputEndControl{}));
  ASSERT_TRUE(eof);
  EXPECT_TRUE(std::holds_alternative<InputEndControl>(*eof));

  auto code = parseServerControl(renderServerControl(ExitControl{StdioExit{7, std::nullopt}}));
  ASSERT_TRUE(code);
  EXPECT_EQ(std::get<ExitControl>(*code).exit.exitCode, 7);
  auto signal = parseServerControl(renderServerControl(ExitControl{StdioExit{std::nullopt, SIGKILL}}));
  ASSERT_TRUE(signal);
  EXPECT_EQ(std::get<ExitControl>(*signal).exit.signal, SIGKILL);
  EXPECT_FALSE(std::get<ExitControl>(*signal).exit.exitCode);

  auto error = parseServerControl(renderServerControl(ErrorControl{invalidField("rows", "too tall")}));
  ASSERT_TRUE(error);
  const Error& carried = std::get<ErrorControl>(*error).error;
  EXPECT_EQ(carried.kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(carried.field(), "rows");
  EXPECT_EQ(carried.message(), "too tall");
}

TEST(TerminalFrames, BadControlsNameTheirField) {
  struct Case {
    std::string text, field;
  };
  for (const Case& c : {Case{"not json", "control"}, Case{"[1]", "control"}, Case{R"({"rows":1})", "type"},
                        Case{R"({"type":"shout"})", "type"}, Case{R"({"type":"resize","cols":80})", "rows"},
                        Case{R"({"type":"resize","rows":-1,"cols":80})", "rows"},
                        Case{R"({"type":"resize","rows":24,"cols":70000})", "cols"}}) {
    auto parsed = parseClientControl(c.text);
    ASSERT_FALSE(parsed) << c.text;
    EXPECT_EQ(parsed.error().field(), c.field) << c.text << ": " << parsed.error().message();
  }
  EXPECT_FALSE(parseServerControl(R"({"type":"exit"})"));
}

TEST(TerminalTargets, ExecAndConsoleRoundTrip) {
  TerminalTarget exec;
  exec.name = "web-1";
  exec.request.command = {"sh", "-c", "echo a&b=c %/ é"};
  exec.request.env = {"A=1 2"};
  exec.request.tty = true;
  exec.request.stdinOpen = true;
  exec.request.size = {24, 80};
  const std::string target = renderTerminalTarget(exec);
  EXPECT_TRUE(target.starts_with("/v1/instances/web-1/exec?command=sh&command=-c&command=")) << target;
  auto parsed = parseTerminalTarget("GET", target);
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_TRUE(*parsed);
  EXPECT_EQ((*parsed)->kind, TerminalTarget::Kind::exec);
  EXPECT_EQ((*parsed)->name, "web-1");
  EXPECT_EQ((*parsed)->request.command, exec.request.command);
  EXPECT_EQ((*parsed)->request.env, exec.request.env);
  EXPECT_TRUE((*parsed)->request.tty);
  EXPECT_TRUE((*parsed)->request.stdinOpen);
  EXPECT_EQ((*parsed)->request.size, (TerminalSize{24, 80}));

  TerminalTarget console;
  console.kind = TerminalTarget::Kind::console;
  console.name = "db";
  console.request.tty = true;
  console.request.size = {50, 132};
  auto attached = parseTerminalTarget("GET", renderTerminalTarget(console));
  ASSERT_TRUE(attached && *attached);
  EXPECT_EQ((*attached)->kind, TerminalTarget::Kind::console);
  EXPECT_EQ((*attached)->request.size, (TerminalSize{50, 132}));
}

TEST(TerminalTargets, OtherPathsAreLeftToTheRouterAndBadQueriesRefused) {
  for (auto [method, target] :
       {std::pair{"POST", "/v1/instances/a/exec"}, std::pair{"GET", "/v1/instances/a"},
        std::pair{"GET", "/v1/instances"}, std::pair{"GET", "/v1/vpcs/a/console"}}) {
    auto parsed = parseTerminalTarget(method, target);
    ASSERT_TRUE(parsed) << target;
    EXPECT_FALSE(*parsed) << target;
  }
  struct Case {
    std::string method, target, field;
  };
  for (const Case& c : {Case{"POST", "/v1/instances/a/console", "method"},
                        Case{"GET", "/v1/instances/a/exec?tty=maybe", "tty"},
                        Case{"GET", "/v1/instances/a/exec?tty=true&tty=false", "tty"},
                        Case{"GET", "/v1/instances/a/exec?rows=24", "rows"},  // a size without a tty
                        Case{"GET", "/v1/instances/a/exec?tty=true&cols=x", "cols"},
                        Case{"GET", "/v1/instances/a/exec?shell=bash", "shell"},
                        Case{"GET", "/v1/instances/a/exec?env=noequals", "env"},
                        Case{"GET", "/v1/instances/a/exec?command=", "command"},
                        Case{"GET", "/v1/instances/a/console?command=sh", "command"}}) {
    auto parsed = parseTerminalTarget(c.method, c.target);
    ASSERT_FALSE(parsed) << c.target;
    EXPECT_EQ(parsed.error().field(), c.field) << c.target << ": " << parsed.error().message();
  }
}

std::string stdinOf(const TerminalStep& step) {
  std::string typed;
  for (const auto& frame : step.send) {
    if (frame.text) continue;
    auto decoded = decodeClientFrame(frame.data);
    if (decoded) typed += decoded->data;
  }
  return typed;
}

TEST(TerminalClientMachine, AnExecSessionSendsInputShowsOutputAndEndsWithTheExitCode) {
  TerminalClient client("web-1", /*detachable=*/false, /*tty=*/true);
  TerminalStep resize = client.onResize({30, 100});
  ASSERT_EQ(resize.send.size(), 1u);
  EXPECT_TRUE(resize.send[0].text);
  EXPECT_EQ(std::get<ResizeControl>(*parseClientControl(resize.send[0].data)).size, (TerminalSize{30, 100}));
  // Ctrl-C and Ctrl-] are bytes for the program in an exec session.
  EXPECT_EQ(stdinOf(client.onInput("ls\r\x03\x1d")), "ls\r\x03\x1d");
  EXPECT_EQ(client.onServerFrame(false, encodeStreamFrame(StdioStream::output, "a b\r\n")).output, "a b\r\n");
  EXPECT_EQ(client.onServerFrame(false, encodeStreamFrame(StdioStream::error, "e")).error, "e");
  TerminalStep exit =
      client.onServerFrame(true, renderServerControl(ExitControl{StdioExit{7, std::nullopt}}));
  EXPECT_FALSE(exit.exitCode);  // the output may still come; the close ends it
  TerminalStep closed = client.onClosed();
  EXPECT_EQ(closed.exitCode, 7);
  EXPECT_TRUE(client.done());
  EXPECT_TRUE(client.onInput("late").send.empty());
}

TEST(TerminalClientMachine, ASignalledProgramGives128PlusTheSignal) {
  TerminalClient client("a", false, false);
  client.onServerFrame(true, renderServerControl(ExitControl{StdioExit{std::nullopt, SIGINT}}));
  EXPECT_EQ(client.onClosed().exitCode, 130);
}

TEST(TerminalClientMachine, TheDetachKeyLeavesAConsoleAfterSendingWhatCameBefore) {
  TerminalClient client("db", /*detachable=*/true, /*tty=*/true);
  TerminalStep step = client.onInput(
      "ab\x1d"
      "cd");
  EXPECT_EQ(stdinOf(step), "ab");
  EXPECT_EQ(step.exitCode, 0);
  EXPECT_TRUE(step.closeConnection);
  EXPECT_TRUE(client.detached());
  EXPECT_NE(step.notice.find("detached from db"), std::string::npos);
  // Without a tty (run -i) the byte is data.
  TerminalClient pipes("db", true, false);
  EXPECT_EQ(stdinOf(pipes.onInput("\x1d")), "\x1d");
  EXPECT_FALSE(pipes.done());
}

TEST(TerminalClientMachine, StdinEndIsSentOnceAndPipesHaveNoWindow) {
  TerminalClient client("a", false, false);
  EXPECT_TRUE(client.onResize({24, 80}).send.empty());
  TerminalStep end = client.onInputEnd();
  ASSERT_EQ(end.send.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<InputEndControl>(*parseClientControl(end.send[0].data)));
  EXPECT_TRUE(client.onInputEnd().send.empty());
  EXPECT_TRUE(client.onInput("more").send.empty());
}

TEST(TerminalClientMachine, ALostConnectionOrAnErrorEndsWithOne) {
  TerminalClient lost("a", false, true);
  TerminalStep step = lost.onClosed();
  EXPECT_EQ(step.exitCode, 1);
  EXPECT_NE(step.notice.find("corrald stopped?"), std::string::npos);

  TerminalClient refused("a", false, true);
  TerminalStep error = refused.onServerFrame(true, renderServerControl(ErrorControl{conflict("no tty")}));
  EXPECT_EQ(error.notice, "error: no tty");
  EXPECT_EQ(refused.onClosed().exitCode, 1);

  TerminalClient signalled("a", false, true);
  EXPECT_EQ(signalled.onSignal(SIGTERM).exitCode, 128 + SIGTERM);
  EXPECT_TRUE(signalled.done());
}

}  // namespace
}  // namespace corral::api
