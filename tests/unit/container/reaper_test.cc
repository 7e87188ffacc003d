// corral-reaper (images/reaper/reaper.cc), included without its main: the exit-code convention, argv
// handling, and run() itself in a forked child (a subreaper there, so orphans come to it as to a PID 1).
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>

#define CORRAL_REAPER_NO_MAIN
#include "images/reaper/reaper.cc"

namespace corral::reaper {
namespace {

TEST(Reaper, ExitCodeIsTheChildsOr128PlusSignal) {
  EXPECT_EQ(exitCodeFor(0), 0);
  EXPECT_EQ(exitCodeFor(7 << 8), 7);
  EXPECT_EQ(exitCodeFor(SIGKILL), 128 + SIGKILL);
  EXPECT_EQ(exitCodeFor(SIGTERM), 128 + SIGTERM);
  EXPECT_EQ(execFailureCode(ENOENT), 127);
  EXPECT_EQ(execFailureCode(EACCES), 126);
}

TEST(Reaper, CommandFollowsAnOptionalDoubleDash) {
  char self[] = "reaper", dashes[] = "--", sh[] = "sh";
  char* withDashes[] = {self, dashes, sh, nullptr};
  char* without[] = {self, sh, nullptr};
  char* empty[] = {self, dashes, nullptr};
  EXPECT_EQ(commandIndex(3, withDashes), 2);
  EXPECT_EQ(commandIndex(2, without), 1);
  EXPECT_EQ(commandIndex(2, empty), 2);  // nothing to run
}

// Runs the reaper with `command` (via /bin/sh -c) in a forked child made a subreaper; returns its wait
// status. `whileRunning` gets the reaper's pid once it runs.
int runReaper(const char* command, const std::function<void(pid_t)>& whileRunning = {}) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_CHILD_SUBREAPER, 1);
    char self[] = "corral-reaper", dashes[] = "--", sh[] = "/bin/sh", dashC[] = "-c";
    std::string text(command);
    char* argv[] = {self, dashes, sh, dashC, text.data(), nullptr};
    _exit(run(5, argv));
  }
  if (whileRunning) whileRunning(pid);
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

// Three orphans (re-parented to the reaper) end while the command sleeps; the command then counts the
// zombies whose parent is the reaper and exits with that count.
constexpr const char* kCountZombiesOfParent =
    "for i in 1 2 3; do (sleep 0.05 &); done; sleep 0.5; z=0; "
    "for f in /proc/[0-9]*/stat; do read -r line < $f 2>/dev/null || continue; set -- ${line##*) }; "
    "[ \"$1\" = Z ] && [ \"$2\" = \"$PPID\" ] && z=$((z+1)); done; exit $z";

TEST(Reaper, ReapsOrphansWhileTheCommandRuns) {
  int status = runReaper(kCountZombiesOfParent);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "zombies left under the reaper";
}

TEST(Reaper, PassesTheExitCodeOn) {
  int status = runReaper("sleep 0.05; exit 7");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 7);
  status = runReaper("kill -9 $$");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 128 + SIGKILL);
  status = runReaper("exec /nonexistent/corral-command");
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 127);
}

TEST(Reaper, ForwardsTermToTheCommand) {
  // The command traps TERM and exits 42 on it; the reaper itself must not die of TERM.
  // TERM goes once the command says its trap is set (a file appears), not after a guessed pause.
  const std::filesystem::path trapped =
      std::filesystem::temp_directory_path() / ("corral-reaper-trapped-" + std::to_string(getpid()));
  std::filesystem::remove(trapped);
  const std::string command =
      "trap 'exit 42' TERM; : > " + trapped.string() + "; while :; do sleep 0.02; done";
  int status = runReaper(command.c_str(), [&](pid_t reaper) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!std::filesystem::exists(trapped) && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    EXPECT_TRUE(std::filesystem::exists(trapped)) << "the command never set its trap (" << trapped << ")";
    kill(reaper, SIGTERM);
  });
  std::filesystem::remove(trapped);
  ASSERT_TRUE(WIFEXITED(status)) << "signal " << WTERMSIG(status);
  EXPECT_EQ(WEXITSTATUS(status), 42);
}

}  // namespace
}  // namespace corral::reaper
