// Process plumbing shared by the integration tests: start a real binary with its output in files, wait for
// it with a deadline, read what it wrote.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "net/netlink.h"

namespace corral::testing {

inline std::string readFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

enum class OutputMode { Truncate, Append };

// Starts args[0] with stdin from /dev/null, stdout into `outPath` and stderr into `errPath` (into `outPath`
// too when `errPath` is empty). Returns the pid, or -1 with posix_spawn's error number in `*spawnError`.
inline pid_t spawnProcess(const std::vector<std::string>& args, const std::string& outPath,
                          const std::string& errPath, OutputMode mode, int* spawnError = nullptr) {
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
  pid_t pid = 0;
  int rc = ::posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
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

// This test process's network namespace prefix: every corrald a test starts names its VPC namespaces
// "corral-t<pid>-vpc-NAME", so parallel test processes (and a real corrald) never touch each other's.
inline std::string testNetnsPrefix() {
  return "corral-t" + std::to_string(::getpid()) + "-";
}

// The "internet" of this test process: a namespace internet gateways lead to, so no test ever touches the
// host's network. Created on first use; it and every other namespace of the prefix are deleted when the
// process exits.
inline const std::string& testUplinkNetns() {
  struct Uplink {
    std::string name = testNetnsPrefix() + "inet";
    Uplink() {
      if (!net::netnsExists(name)) {
        if (auto made = net::createNetns(name); !made) {
          std::fprintf(stderr, "creating the test uplink namespace %s: %s\n", name.c_str(),
                       made.error().message().c_str());
        }
      }
    }
    // Every namespace of this process's prefix goes when it exits: the VPCs its daemons made (a test
    // kills its daemon and removes its state, the kernel objects would stay) and the uplink itself.
    ~Uplink() {
      for (const std::string& netns : net::listNetns()) {
        if (!netns.starts_with(testNetnsPrefix())) continue;
        [[maybe_unused]] auto gone = net::deleteNetns(netns);
      }
    }
  };
  static Uplink uplink;
  return uplink.name;
}

// corrald's network options for tests: the prefix and the uplink above.
inline std::vector<std::string> testNetworkArgs() {
  return {"--netns-prefix", testNetnsPrefix(), "--uplink-netns", testUplinkNetns()};
}
inline std::vector<std::string> withTestNetwork(std::vector<std::string> args) {
  for (std::string& arg : testNetworkArgs()) args.push_back(std::move(arg));
  return args;
}

}  // namespace corral::testing
