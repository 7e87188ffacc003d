// Process plumbing shared by the integration tests (tests/integration/harness.h and the cluster tests'
// cluster/ovn_cluster.h): start a real binary with its output in files and, if asked, more environment;
// wait for it with a deadline; read what it wrote; poll for an event. No corral library needed.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace corral::testing {

inline std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

enum class OutputMode { Truncate, Append };

// Starts args[0] (a path, or a name looked up in PATH) with stdin from /dev/null, stdout into `outPath` and
// stderr into `errPath` (into `outPath` too when `errPath` is empty), and `extraEnv` ("NAME=value") added to
// this process's environment. Returns the pid, or -1 with posix_spawn's error number in `*spawnError`.
inline pid_t spawnProcess(const std::vector<std::string>& args, const std::string& outPath,
                          const std::string& errPath, OutputMode mode, int* spawnError = nullptr,
                          const std::vector<std::string>& extraEnv = {}) {
  const int flags = O_WRONLY | O_CREAT | (mode == OutputMode::Append ? O_APPEND : O_TRUNC);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, outPath.c_str(), flags, 0644);
  if (errPath.empty()) {
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  } else {
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errPath.c_str(), flags, 0644);
  }
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> envStrings;
  for (char** e = environ; *e != nullptr; ++e) envStrings.emplace_back(*e);
  envStrings.insert(envStrings.end(), extraEnv.begin(), extraEnv.end());
  std::vector<char*> envp;
  for (auto& e : envStrings) envp.push_back(e.data());
  envp.push_back(nullptr);
  pid_t pid = 0;
  int rc = ::posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  if (spawnError != nullptr) *spawnError = rc;
  return rc == 0 ? pid : -1;
}

// Reaps `pid`; past `deadline` kills it with SIGKILL first. The wait status, or nullopt when it was late.
inline std::optional<int> waitWithDeadline(pid_t pid, std::chrono::milliseconds deadline) {
  int status = 0;
  auto until = std::chrono::steady_clock::now() + deadline;
  while (::waitpid(pid, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > until) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return std::nullopt;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status;
}

// Polls `happened` every 20 ms until it is true (true) or `deadline` passed (false).
inline bool pollUntil(const std::function<bool()>& happened, std::chrono::milliseconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!happened()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

// Waits for an event instead of sleeping: pollUntil, with a failure naming `what` when it never happened.
// Use: ASSERT_TRUE(waitUntil(..., 10s, "..."));
inline ::testing::AssertionResult waitUntil(const std::function<bool()>& happened,
                                            std::chrono::milliseconds deadline, const std::string& what) {
  if (pollUntil(happened, deadline)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "waited " << deadline.count() << " ms for " << what << ": it did not happen";
}

}  // namespace corral::testing
