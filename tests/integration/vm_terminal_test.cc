// Terminals into a real VM (corral's kernel + the busybox initramfs, microvm under TCG), on both engines
// (libvirt and the direct QEMU one): interactive sessions through the guest agent (a pty with its size and
// exit code, pipes that close, several at once, an exec meanwhile, a detached one killed, a fast writer held
// back by the flow-control window) and the serial console as a socket whose output still reaches its log.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "tests/integration/harness.h"
#include "tests/integration/stop_recorder.h"
#include "vmm/agent.h"
#include "vmm/libvirt.h"
#include "vmm/qemu.h"
#include "vmm/serial_console.h"

namespace corral::vmm {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

const fs::path kCorralKernel = fs::path(CORRAL_IMAGE_DIR) / "kernels/corral/vmlinux";
const fs::path kInitrd = fs::path(CORRAL_IMAGE_DIR) / "busybox/vm/initramfs.img";

std::string readText(const fs::path& path) {
  std::ifstream in(path);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

// Reads `fd` until `done(text)` holds, EOF, or the deadline; returns what it read.
std::string readUntil(int fd, const std::function<bool(const std::string&)>& done,
                      std::chrono::milliseconds timeout = 30s) {
  std::string text;
  const auto deadline = Clock::now() + timeout;
  while (!done(text) && Clock::now() < deadline) {
    pollfd in{fd, POLLIN, 0};
    if (::poll(&in, 1, 100) != 1) continue;
    char chunk[65536];
    const ssize_t n = ::read(fd, chunk, sizeof(chunk));
    if (n == 0) break;
    if (n > 0) text.append(chunk, static_cast<size_t>(n));
  }
  return text;
}

std::string readToEnd(int fd, std::chrono::milliseconds timeout = 30s) {
  return readUntil(
      fd, [](const std::string&) { return false; }, timeout);
}

bool readable(int fd, int timeoutMs) {
  pollfd in{fd, POLLIN, 0};
  return ::poll(&in, 1, timeoutMs) == 1;
}

void writeAll(int fd, std::string_view text) {
  while (!text.empty()) {
    pollfd out{fd, POLLOUT, 0};
    ::poll(&out, 1, 1000);
    const ssize_t n = ::write(fd, text.data(), text.size());
    if (n > 0) text.remove_prefix(static_cast<size_t>(n));
  }
}

// One booted VM per engine, shared by the tests (booted by the first that needs it, destroyed at the end).
struct BootedVm {
  std::unique_ptr<Hypervisor> engine;
  DomainConfig config;
  std::optional<AgentClient> agent;
  std::string error;
};

class VmTerminalTest : public ::testing::TestWithParam<Engine> {
 protected:
  static void TearDownTestSuite() {
    for (auto& [engine, vm] : vms_) {
      if (vm.engine) (void)vm.engine->destroy(vm.config.domainName);
    }
    vms_.clear();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  void SetUp() override {
    if (!testing::requireRoot()) GTEST_SKIP() << "needs root for qemu:///system and QEMU";
    ASSERT_TRUE(fs::is_regular_file(kCorralKernel)) << kCorralKernel << ": `ninja guest-kernel`";
    ASSERT_TRUE(fs::is_regular_file(kInitrd)) << kInitrd << ": build image-busybox-vm";
    vm_ = &booted(GetParam());
    ASSERT_TRUE(vm_->agent) << vm_->error;
  }

  static BootedVm& booted(Engine kind) {
    BootedVm& vm = vms_[kind];
    if (vm.agent || !vm.error.empty()) return vm;
    if (dir_.empty()) {
      dir_ = fs::temp_directory_path() / fmt::format("corral-vm-terminal-{}", ::getpid());
      fs::create_directories(dir_);
    }
    const std::string suffix = kind == Engine::Qemu ? "q" : "l";
    auto& config = vm.config;
    config.instanceName = fmt::format("vmterm{}-{}", ::getpid(), suffix);
    config.domainName = "corral-" + config.instanceName;
    config.owner = dir_.string();
    config.machine = Machine::Microvm;
    config.memoryBytes = 128ull << 20;
    config.kernel = kCorralKernel;
    config.initrd = kInitrd;
    config.cmdline = kernelCommandLine(config.instanceName, config.instanceName, std::nullopt, std::nullopt) +
                     corralKernelTuning(Accelerator::Tcg, std::nullopt, 1);
    config.consoleLog = dir_ / (suffix + ".console.log");
    config.agentSocket = dir_ / (suffix + ".agent.sock");
    config.consoleSocket = dir_ / (suffix + ".console.sock");
    config.tcgTranslationCacheMiB = 32;
    auto ignoreStops = [](const DomainStopped&) {};
    if (kind == Engine::Qemu) {
      auto opened = Qemu::open({.runRoot = dir_ / "run"}, ignoreStops);
      if (!opened) return vm.error = opened.error().message(), vm;
      vm.engine = std::move(*opened);
    } else {
      auto opened = Libvirt::open("qemu:///system", ignoreStops);
      if (!opened) return vm.error = opened.error().message(), vm;
      vm.engine = std::move(*opened);
    }
    if (auto created = vm.engine->create(config, false); !created)
      return vm.error = created.error().message(), vm;
    auto agent = AgentClient::connect(config.agentSocket, Clock::now() + 120s);
    if (!agent) return vm.error = agent.error().message() + "\n" + readText(config.consoleLog), vm;
    vm.agent.emplace(std::move(*agent));
    return vm;
  }

  std::unique_ptr<StdioSession> open(const StdioRequest& request) {
    auto session = vm_->agent->openSession(request, Clock::now() + 30s);
    EXPECT_TRUE(session) << session.error().message();
    return session ? std::move(*session) : nullptr;
  }

  // The processes in the guest whose command line contains `marker`, by an exec.
  int countProcesses(const std::string& marker) {
    auto ps = vm_->agent->exec(
        {"sh", "-c", fmt::format("ps | grep -c '[{}]{}'", marker.substr(0, 1), marker.substr(1))}, {}, 20s);
    EXPECT_TRUE(ps) << ps.error().message();
    return ps ? std::stoi(ps->stdoutText) : -1;
  }

  BootedVm* vm_ = nullptr;
  static inline std::map<Engine, BootedVm> vms_;
  static inline fs::path dir_;
};

TEST_P(VmTerminalTest, TtySessionHasItsSizeAPtyAndTheExitCode) {
  auto session =
      open({.command = {}, .env = {}, .tty = true, .stdinOpen = true, .size = {.rows = 37, .cols = 91}});
  ASSERT_TRUE(session);
  writeAll(session->inputFd(), "stty size; tty; exit 5\n");
  ASSERT_TRUE(readable(session->exitFd(), 30000));
  const std::string output = readToEnd(session->outputFd());
  EXPECT_NE(output.find("37 91"), std::string::npos) << output;
  EXPECT_NE(output.find("/dev/pts/"), std::string::npos) << output;
  auto status = session->exitStatus();
  ASSERT_TRUE(status) << status.error().message();
  EXPECT_EQ(status->exitCode, 5);
}

TEST_P(VmTerminalTest, ResizeAndCtrlCReachTheProgram) {
  auto session =
      open({.command = {"sh"}, .env = {}, .tty = true, .stdinOpen = true, .size = {.rows = 10, .cols = 20}});
  ASSERT_TRUE(session);
  ASSERT_TRUE(session->resize({.rows = 44, .cols = 144}));
  writeAll(session->inputFd(), "stty size\n");
  std::string output = readUntil(
      session->outputFd(), [](const std::string& text) { return text.find("44 144") != std::string::npos; });
  EXPECT_NE(output.find("44 144"), std::string::npos) << output;
  // ^C interrupts the foreground sleep (the pty's line discipline signals it), the shell goes on.
  writeAll(session->inputFd(), "sleep 600\n");
  std::this_thread::sleep_for(1s);
  writeAll(session->inputFd(), "\x03");
  writeAll(session->inputFd(), "echo after-$((40+2))\n");
  output = readUntil(session->outputFd(),
                     [](const std::string& text) { return text.find("after-42") != std::string::npos; });
  EXPECT_NE(output.find("after-42"), std::string::npos) << output;
  writeAll(session->inputFd(), "exit\n");
  ASSERT_TRUE(readable(session->exitFd(), 30000));
  EXPECT_EQ(session->exitStatus().value_or(StdioExit{}).exitCode, 0);
}

TEST_P(VmTerminalTest, PipeSessionEchoesStdinAndEndsAtCloseInput) {
  auto session = open({.command = {"sh", "-c", "cat; echo to-stderr >&2; exit 3"},
                       .env = {},
                       .tty = false,
                       .stdinOpen = true,
                       .size = {}});
  ASSERT_TRUE(session);
  writeAll(session->inputFd(), "hello\n");
  const std::string echoed =
      readUntil(session->outputFd(), [](const std::string& text) { return text == "hello\n"; });
  EXPECT_EQ(echoed, "hello\n");
  EXPECT_FALSE(readable(session->exitFd(), 500)) << "cat ended before its input did";
  session->closeInput();
  ASSERT_TRUE(readable(session->exitFd(), 30000));
  EXPECT_EQ(readToEnd(session->outputFd()), "");
  EXPECT_EQ(readToEnd(session->errorFd()), "to-stderr\n");
  EXPECT_EQ(session->exitStatus().value_or(StdioExit{}).exitCode, 3);
}

TEST_P(VmTerminalTest, AProgramThatCannotStartIsTheCommandsError) {
  auto session = vm_->agent->openSession(
      {.command = {"/no/such/program"}, .env = {}, .tty = true, .stdinOpen = true, .size = {}},
      Clock::now() + 30s);
  ASSERT_FALSE(session);
  EXPECT_EQ(session.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(session.error().field(), "command");
  EXPECT_NE(session.error().message().find("No such file or directory"), std::string::npos)
      << session.error().message();
  // The channel is still good.
  auto exec = vm_->agent->exec({"true"}, {}, 20s);
  ASSERT_TRUE(exec) << exec.error().message();
}

TEST_P(VmTerminalTest, SessionsRunSideBySideWithAnExec) {
  std::vector<std::unique_ptr<StdioSession>> sessions;
  for (int i = 0; i < 3; ++i) {
    sessions.push_back(open({.command = {"sh", "-c", fmt::format("read line; echo session-{}-$line", i)},
                             .env = {},
                             .tty = false,
                             .stdinOpen = true,
                             .size = {}}));
    ASSERT_TRUE(sessions.back());
  }
  auto exec = vm_->agent->exec({"echo", "exec-meanwhile"}, {}, 20s);
  ASSERT_TRUE(exec) << exec.error().message();
  EXPECT_EQ(exec->stdoutText, "exec-meanwhile\n");
  for (int i = 2; i >= 0; --i) {
    writeAll(sessions[i]->inputFd(), "x\n");
    ASSERT_TRUE(readable(sessions[i]->exitFd(), 30000)) << i;
    EXPECT_EQ(readToEnd(sessions[i]->outputFd()), fmt::format("session-{}-x\n", i));
    EXPECT_EQ(sessions[i]->exitStatus().value_or(StdioExit{}).exitCode, 0);
  }
}

TEST_P(VmTerminalTest, ADetachedSessionIsKilled) {
  auto session = open({.command = {"sh", "-c", "echo started; exec sleep 12345"},
                       .env = {},
                       .tty = true,
                       .stdinOpen = true,
                       .size = {}});
  ASSERT_TRUE(session);
  const std::string started = readUntil(
      session->outputFd(), [](const std::string& text) { return text.find("started") != std::string::npos; });
  ASSERT_NE(started.find("started"), std::string::npos) << started;
  EXPECT_EQ(countProcesses("sleep 12345"), 1);
  session->detach();
  session.reset();
  int left = -1;
  for (auto deadline = Clock::now() + 20s; Clock::now() < deadline && left != 0;) {
    left = countProcesses("sleep 12345");
    if (left != 0) std::this_thread::sleep_for(200ms);
  }
  EXPECT_EQ(left, 0);
}

// A program that writes faster than the client reads is held back (its pty fills) rather than buffered
// without bound, and every byte arrives once the client reads.
TEST_P(VmTerminalTest, AFastWriterWaitsForTheClient) {
  constexpr size_t kBytes = 1 << 20;
  auto session = open({.command = {"head", "-c", std::to_string(kBytes), "/dev/zero"},
                       .env = {},
                       .tty = false,
                       .stdinOpen = false,
                       .size = {}});
  ASSERT_TRUE(session);
  EXPECT_FALSE(readable(session->exitFd(), 3000)) << "the writer ended though nobody read its output";
  size_t received = 0;
  bool onlyZeros = true;
  const auto deadline = Clock::now() + 120s;
  while (Clock::now() < deadline) {
    pollfd in{session->outputFd(), POLLIN, 0};
    if (::poll(&in, 1, 100) != 1) continue;
    char chunk[65536];
    const ssize_t n = ::read(session->outputFd(), chunk, sizeof(chunk));
    if (n == 0) break;
    if (n < 0) continue;
    received += static_cast<size_t>(n);
    onlyZeros = onlyZeros && std::all_of(chunk, chunk + n, [](char c) { return c == '\0'; });
  }
  EXPECT_EQ(received, kBytes);
  EXPECT_TRUE(onlyZeros);
  ASSERT_TRUE(readable(session->exitFd(), 30000));
  EXPECT_EQ(session->exitStatus().value_or(StdioExit{}).exitCode, 0);
}

TEST_P(VmTerminalTest, SerialConsoleShowsTheGuestAndRunsAShell) {
  auto console = attachSerialConsole(vm_->config.consoleSocket);
  ASSERT_TRUE(console) << console.error().message();
  EXPECT_TRUE((*console)->tty());
  EXPECT_EQ((*console)->exitFd(), -1);
  // Enter starts the shell; the command's output comes back over the socket and lands in the log too.
  writeAll((*console)->inputFd(), "\n");
  std::this_thread::sleep_for(500ms);
  writeAll((*console)->inputFd(), "echo console-$((6*7)); tty\n");
  const std::string output = readUntil((*console)->outputFd(), [](const std::string& text) {
    return text.find("console-42") != std::string::npos && text.find("/dev/ttyS0") != std::string::npos;
  });
  EXPECT_NE(output.find("console-42"), std::string::npos) << output;
  EXPECT_NE(output.find("/dev/ttyS0"), std::string::npos) << output;
  writeAll((*console)->inputFd(), "exit\n");
  (*console)->detach();
  std::string log;
  for (auto deadline = Clock::now() + 10s; Clock::now() < deadline; std::this_thread::sleep_for(100ms)) {
    log = readText(vm_->config.consoleLog);
    if (log.find("console-42") != std::string::npos) break;
  }
  EXPECT_NE(log.find("corral-init: ready in"), std::string::npos) << log;
  EXPECT_NE(log.find("press Enter on the console for a shell"), std::string::npos) << log;
  EXPECT_NE(log.find("console-42"), std::string::npos) << log;
}

INSTANTIATE_TEST_SUITE_P(Engines, VmTerminalTest, ::testing::Values(Engine::Libvirt, Engine::Qemu),
                         [](const auto& param) { return param.param == Engine::Qemu ? "Qemu" : "Libvirt"; });

}  // namespace
}  // namespace corral::vmm
