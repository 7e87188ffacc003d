// Terminals end to end (issue 17): the real corral binary on a real pseudo-terminal (forkpty: corral's
// stdin/stdout are the pty's slave, the test types on its master as a user would) against a real corrald
// with real containers: exec -it (type, echo, resize, Ctrl-C, exit code, the container's own devpts), exec -i
// through pipes, the terminal put back after corrald dies mid-session, and the refusals.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"

namespace corral {
namespace {

using namespace std::chrono_literals;
using corral::testing::CliRun;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

// `corral ARGS` with a pty for its stdin, stdout and stderr (its controlling terminal).
class PtyClient {
 public:
  PtyClient(const TestDaemon& daemon, std::vector<std::string> args, unsigned short rows = 24,
            unsigned short cols = 80) {
    args.insert(args.begin(), {CORRAL_CLI_PATH, "--socket", daemon.socket()});
    winsize window{.ws_row = rows, .ws_col = cols, .ws_xpixel = 0, .ws_ypixel = 0};
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    pid_ = ::forkpty(&master_, nullptr, nullptr, &window);
    if (pid_ == 0) {
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    // The terminal as corral finds it (cooked, echo on): what it must leave behind.
    ::tcgetattr(master_, &before_);
  }
  ~PtyClient() {
    if (pid_ > 0 && !exitCode_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (master_ >= 0) ::close(master_);
  }

  // Reads until `text` has appeared after the last expect() (or `deadline`); true when it did.
  bool expect(const std::string& text, std::chrono::milliseconds deadline = 20s) {
    auto until = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      size_t at = seen_.find(text, consumed_);
      if (at != std::string::npos) {
        consumed_ = at + text.size();
        return true;
      }
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      if (left.count() <= 0 || !readSome(left)) return false;
    }
  }
  void type(const std::string& bytes) {
    [[maybe_unused]] auto n = ::write(master_, bytes.data(), bytes.size());
  }
  void resize(unsigned short rows, unsigned short cols) {
    winsize window{.ws_row = rows, .ws_col = cols, .ws_xpixel = 0, .ws_ypixel = 0};
    ::ioctl(master_, TIOCSWINSZ,
            &window);  // the kernel sends SIGWINCH to corral, as a terminal emulator does
  }
  // corral's exit code once it ended (reading what it still writes), -1 past the deadline.
  int wait(std::chrono::milliseconds deadline = 20s) {
    auto until = std::chrono::steady_clock::now() + deadline;
    while (std::chrono::steady_clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        ::tcgetattr(master_, &after_);
        exitCode_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        while (readSome(50ms)) {
        }
        return *exitCode_;
      }
      readSome(50ms);
    }
    return -1;
  }
  // After wait(): the terminal's modes equal those before corral ran (what `stty -g` compares).
  bool terminalRestored() const {
    return before_.c_iflag == after_.c_iflag && before_.c_oflag == after_.c_oflag &&
           before_.c_lflag == after_.c_lflag && before_.c_cflag == after_.c_cflag;
  }
  const std::string& transcript() const { return seen_; }

 private:
  bool readSome(std::chrono::milliseconds timeout) {
    pollfd ready{master_, POLLIN, 0};
    if (::poll(&ready, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char buffer[4096];
    ssize_t got = ::read(master_, buffer, sizeof buffer);
    if (got <= 0) return false;
    seen_.append(buffer, static_cast<size_t>(got));
    return true;
  }

  int master_ = -1;
  pid_t pid_ = -1;
  termios before_{}, after_{};
  std::string seen_;
  size_t consumed_ = 0;
  std::optional<int> exitCode_;
};

class TerminalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "containers need root (namespaces, cgroups, mounts)";
    ASSERT_TRUE(daemon_.start()) << "corrald did not answer within 30 s (or exited):\n" << daemon_.log();
  }
  CliRun cli(std::vector<std::string> args) const { return daemon_.cli(std::move(args), 30s); }
  // Runs `sh -c TEXT` with CORRAL as the corral command line; its stdout and exit code.
  std::pair<std::string, int> shell(const std::string& text) const {
    std::string corral = fmt::format("{} --socket {}", CORRAL_CLI_PATH, daemon_.socket());
    std::string command = text;
    for (size_t at; (at = command.find("CORRAL")) != std::string::npos;) command.replace(at, 6, corral);
    FILE* pipe = ::popen(command.c_str(), "r");
    std::string out;
    char buffer[4096];
    for (size_t got; pipe && (got = ::fread(buffer, 1, sizeof buffer, pipe)) > 0;) out.append(buffer, got);
    int status = pipe ? ::pclose(pipe) : -1;
    return {out, WIFEXITED(status) ? WEXITSTATUS(status) : -1};
  }

  TestDaemon daemon_{"term", {"--accelerator", "tcg"}};
};

TEST_F(TerminalTest, ExecItTypesResizesInterruptsAndPassesTheExitCode) {
  ASSERT_EQ(cli({"run", "-d", "--name", "t1", "--", "sleep", "1000"}).code, 0);
  PtyClient term(daemon_, {"exec", "-it", "t1", "--", "sh"}, 24, 80);
  ASSERT_TRUE(term.expect("# ")) << term.transcript() << daemon_.logTail();
  // What is typed comes back through the container's pty (its echo), and the command's output after it.
  term.type("echo he''llo\r");
  EXPECT_TRUE(term.expect("hello\r\n")) << term.transcript();
  // The window size at start, then a resize.
  term.type("stty size\r");
  EXPECT_TRUE(term.expect("24 80")) << term.transcript();
  term.resize(33, 101);
  std::this_thread::sleep_for(300ms);
  term.type("stty size\r");
  EXPECT_TRUE(term.expect("33 101")) << term.transcript();
  // A pty of the container's own devpts: /dev/pts/N inside, and its devpts holds only the container's.
  term.type("tty; ls /dev/pts | wc -w\r");
  EXPECT_TRUE(term.expect("/dev/pts/0")) << term.transcript();
  // Ctrl-C reaches sleep (the pty's line discipline signals the foreground group), the shell goes on.
  term.type("sleep 100\r");
  std::this_thread::sleep_for(500ms);
  term.type("\x03");
  std::this_thread::sleep_for(300ms);
  term.type("echo after-$?\r");
  EXPECT_TRUE(term.expect("after-130")) << term.transcript();
  term.type("exit 7\r");
  EXPECT_EQ(term.wait(), 7) << term.transcript();
  EXPECT_TRUE(term.terminalRestored());
}

TEST_F(TerminalTest, ExecIPipesStdinAndItsEnd) {
  ASSERT_EQ(cli({"run", "-d", "--name", "p1", "--", "sleep", "1000"}).code, 0);
  auto [out, code] = shell("printf 'hi\\nthere\\n' | CORRAL exec -i p1 -- cat");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "hi\nthere\n");
  // stdout and stderr stay apart without a tty, and the exit code comes back.
  auto [split, splitCode] = shell(
      "CORRAL exec -i p1 -- sh -c 'read x; echo out-$x; echo err-$x >&2; exit 4' "
      "2>/dev/null <<EOF\nv\nEOF");
  EXPECT_EQ(splitCode, 4);
  EXPECT_EQ(split, "out-v\n");
}

TEST_F(TerminalTest, TheTerminalIsRestoredWhenCorraldDiesMidSession) {
  ASSERT_EQ(cli({"run", "-d", "--name", "d1", "--", "sleep", "1000"}).code, 0);
  PtyClient term(daemon_, {"exec", "-it", "d1", "--", "sh"});
  ASSERT_TRUE(term.expect("# ")) << term.transcript();
  daemon_.kill9();
  EXPECT_EQ(term.wait(), 1) << term.transcript();
  EXPECT_NE(term.transcript().find("corrald stopped?"), std::string::npos) << term.transcript();
  EXPECT_TRUE(term.terminalRestored());
  ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
}

TEST_F(TerminalTest, RefusalsAreClearAndChangeNothing) {
  ASSERT_EQ(cli({"run", "-d", "--name", "r1", "--", "sleep", "1000"}).code, 0);
  ASSERT_EQ(cli({"stop", "-t", "1", "r1"}).code, 0);
  CliRun stopped = cli({"exec", "-it", "r1", "--", "sh"});
  EXPECT_EQ(stopped.code, 1);
  EXPECT_NE(stopped.err.find("not running"), std::string::npos) << stopped;
  CliRun missing = cli({"exec", "-i", "nosuch", "--", "sh"});
  EXPECT_EQ(missing.code, 1);
  EXPECT_NE(missing.err.find("not found"), std::string::npos) << missing;
  CliRun noConsole = cli({"console", "r1"});
  EXPECT_EQ(noConsole.code, 1);
  EXPECT_NE(noConsole.err.find("not running"), std::string::npos) << noConsole;
}

TEST_F(TerminalTest, RunItGivesTheFirstProcessATerminalToDetachFromAndAttachTo) {
  PtyClient run(daemon_, {"run", "-it", "--name", "c1", "--", "sh"}, 24, 80);
  // The prompt printed before corral attached comes first (the console's unseen output).
  ASSERT_TRUE(run.expect("# ")) << run.transcript() << daemon_.logTail();
  // Its terminal is a pty of its own devpts, and /dev/console is that same terminal.
  run.type("tty; stat -L -c %t:%T /dev/console $(tty) | uniq -c\r");
  EXPECT_TRUE(run.expect("/dev/pts/0")) << run.transcript();
  EXPECT_TRUE(run.expect("2 88:0")) << run.transcript();
  run.type("stty size\r");
  EXPECT_TRUE(run.expect("24 80")) << run.transcript();
  run.type("echo typed-before-detach\r");
  ASSERT_TRUE(run.expect("typed-before-detach\r\n"));
  run.type("\x1d");  // Ctrl-]
  EXPECT_EQ(run.wait(), 0) << run.transcript();
  EXPECT_NE(run.transcript().find("detached from c1"), std::string::npos) << run.transcript();
  EXPECT_TRUE(run.terminalRestored());

  CliRun ps = cli({"ps"});
  EXPECT_NE(ps.out.find("running"), std::string::npos) << ps;
  // What went by is in its log, attached or not.
  CliRun logs = cli({"logs", "c1"});
  EXPECT_NE(logs.out.find("typed-before-detach"), std::string::npos) << logs;

  PtyClient again(daemon_, {"console", "c1"}, 30, 90);
  again.type("echo back-$((40+2))\r");
  ASSERT_TRUE(again.expect("back-42")) << again.transcript();
  // One client at a time.
  CliRun second = cli({"console", "c1"});
  EXPECT_EQ(second.code, 1);
  EXPECT_NE(second.err.find("another client is attached"), std::string::npos) << second;
  again.type("exit 3\r");
  EXPECT_EQ(again.wait(), 3) << again.transcript();
  EXPECT_TRUE(again.terminalRestored());
}

TEST_F(TerminalTest, RunIPipesStdinToTheFirstProcess) {
  auto [out, code] = shell("echo hi | CORRAL run -i --rm -- cat");
  EXPECT_EQ(code, 0);
  EXPECT_EQ(out, "hi\n");
  auto [five, fiveCode] = shell("echo 5 | CORRAL run -i --rm -- sh -c 'read n; exit $n'");
  EXPECT_EQ(fiveCode, 5) << five;
}

TEST_F(TerminalTest, ATtyContainersTerminalHangsUpWhenCorraldStops) {
  // Documented in docs/api.md: corrald holds the master; its end is the terminal's hang-up.
  ASSERT_EQ(cli({"run", "-d", "-t", "--name", "h1", "--", "sh", "-c",
                 "trap 'echo got-hup; exit 9' HUP; "
                 "while :; do sleep 0.1; done"})
                .code,
            0);
  daemon_.stop();
  ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
  bool ended = false;
  for (int i = 0; i < 100 && !ended; ++i) {
    ended = cli({"ps"}).out.find("running") == std::string::npos;
    if (!ended) std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(ended) << cli({"ps"}).out;
  CliRun console = cli({"console", "h1"});
  EXPECT_EQ(console.code, 1);
  EXPECT_NE(console.err.find("not running"), std::string::npos) << console;
}

// VMs: the same client and bridge over the guest agent's sessions (VmDriver::execInteractive) and the serial
// console (attachConsole).
TEST_F(TerminalTest, VmRunItAndExecIt) {
  ASSERT_EQ(cli({"run", "--vm", "-d", "--name", "v1"}).code, 0);
  PtyClient term(daemon_, {"exec", "-it", "v1", "--", "sh"}, 24, 80);
  ASSERT_TRUE(term.expect("# ", 60s)) << term.transcript() << daemon_.logTail();
  term.type("echo he''llo\r");
  EXPECT_TRUE(term.expect("hello\r\n")) << term.transcript();
  term.resize(33, 101);
  std::this_thread::sleep_for(300ms);
  term.type("stty size\r");
  EXPECT_TRUE(term.expect("33 101")) << term.transcript();
  term.type("sleep 100\r");
  std::this_thread::sleep_for(500ms);
  term.type("\x03");
  std::this_thread::sleep_for(300ms);
  term.type("echo after-$?\r");
  EXPECT_TRUE(term.expect("after-130")) << term.transcript();
  term.type("exit 7\r");
  EXPECT_EQ(term.wait(), 7) << term.transcript();
  EXPECT_TRUE(term.terminalRestored());

  // The serial console: Enter gives the guest's shell on ttyS0, Ctrl-] detaches and the VM runs on; one
  // client at a time.
  PtyClient console(daemon_, {"console", "v1"}, 24, 80);
  console.type("\r");
  ASSERT_TRUE(console.expect("# ", 30s)) << console.transcript();
  console.type("echo serial-$((40+2)); tty\r");
  EXPECT_TRUE(console.expect("serial-42")) << console.transcript();
  EXPECT_TRUE(console.expect("/dev/ttyS0")) << console.transcript();
  CliRun second = cli({"console", "v1"});
  EXPECT_EQ(second.code, 1) << second;
  console.type("\x1d");  // Ctrl-]
  EXPECT_EQ(console.wait(), 0) << console.transcript();
  EXPECT_TRUE(console.terminalRestored());
  EXPECT_NE(cli({"ps"}).out.find("running"), std::string::npos);

  PtyClient run(daemon_, {"run", "-it", "--vm", "--rm", "--", "sh"}, 24, 80);
  ASSERT_TRUE(run.expect("# ", 120s)) << run.transcript();
  run.type("exit 4\r");
  EXPECT_EQ(run.wait(60s), 4) << run.transcript();
  EXPECT_TRUE(run.terminalRestored());
}

}  // namespace
}  // namespace corral
