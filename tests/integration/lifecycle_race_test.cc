// Start, stop and a forced rm raced on one name, through a real corrald (as root), for a container and for
// a VM: every answer is a legal one (2xx, 404 once removed, or 409 with a message of the transition table,
// daemon/lifecycle.cc), the rm wins in the end, and nothing of the instance is left: no process, cgroup or
// mount, no libvirt domain, no NIC link in its VPC's namespace, no bundle or VM directory. Before the typed
// lifecycle a start could slip into a forced rm's unlocked kill window and the rm then failed with a 500
// after waiting for a stop that never came.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "tests/integration/leaks.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

using corral::testing::cgroupLeftovers;
using corral::testing::join;
using corral::testing::linksIn;
using corral::testing::mountLeftovers;
using corral::testing::ourDomains;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

// Every refusal the table can give `name` (daemon/lifecycle.cc), and the 404 once it is gone.
bool legalRefusal(const std::string& name, int status, const std::string& message) {
  const std::string quoted = "instance \"" + name + "\"";
  if (status == 404) return message == quoted + " not found";
  if (status != 409 || !message.starts_with(quoted + " is ")) return false;
  static const std::regex kTable(
      "(being removed|already stopping|stopping; remove it once it has stopped"
      "|(created|starting|running|stopping|stopped); only a stopped instance can be started"
      "|(created|starting|stopped), not running|(starting|running); stop it first or remove it with force"
      "|starting; wait until its guest is ready)");
  return std::regex_match(message.substr(quoted.size() + 4), kTable);
}

class LifecycleRace : public ::testing::Test {
 protected:
  // One VPC with one subnet, so every start plugs a NIC whose link must go with the instance.
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "running containers and VMs needs root";
    daemon_ = std::make_unique<TestDaemon>("race", std::vector<std::string>{"--accelerator", "tcg"});
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
    daemon_->must("POST", "/v1/vpcs", {{"name", "v"}, {"cidr", "10.78.0.0/16"}});
    daemon_->must("POST", "/v1/subnets", {{"name", "s"}, {"vpc", "v"}, {"cidr", "10.78.1.0/24"}});
    netns_ = corral::testing::testNetnsPrefix() + "vpc-v";
    linksBefore_ = linksIn(netns_);
  }

  // Runs `spec`, then races a stream of starts, one stop and a forced rm (retried while the table says to
  // wait) on it. Each answer is checked; at the end the instance and everything it held are gone.
  void raceOnce(const json& spec, int round) {
    const std::string name = spec["name"];
    const std::string context = fmt::format("round {}", round);
    ASSERT_EQ(daemon_->call("POST", "/v1/instances", spec).status, 201) << context << daemon_->logTail();
    std::mutex mutex;
    std::vector<std::string> illegal;
    int startsRun = 0;
    auto check = [&](const std::string& request, const Reply& reply) {
      std::lock_guard lock(mutex);
      if (reply.status == 200) {
        if (request == "start") ++startsRun;
        return;
      }
      std::string message;
      if (reply.body.is_object() && reply.body.contains("error"))
        message = reply.body["error"].value("message", "");
      if (!legalRefusal(name, reply.status, message))
        illegal.push_back(fmt::format("{}: {} {}", request, reply.status, reply.body.dump()));
    };
    std::atomic<bool> removed{false};
    std::thread starter([&] {
      while (!removed)
        check("start", daemon_->call("POST", "/v1/instances/" + name + "/start", nullptr, 60s));
    });
    std::thread stopper([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(round % 4));
      check("stop", daemon_->call("POST", "/v1/instances/" + name + "/stop", {{"grace_seconds", 0}}, 60s));
    });
    std::thread remover([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(round % 7));
      for (int attempt = 0; attempt < 200; ++attempt) {
        Reply reply = daemon_->call("DELETE", "/v1/instances/" + name + "?force=true", nullptr, 60s);
        check("rm", reply);
        if (reply.status != 409) break;
        std::this_thread::sleep_for(20ms);
      }
      removed = true;
    });
    remover.join();
    stopper.join();
    starter.join();
    EXPECT_EQ(join(illegal), "") << context << "\n" << daemon_->logTail();
    EXPECT_EQ(daemon_->call("GET", "/v1/instances/" + name).status, 404) << context << ": the rm did not win";
    EXPECT_EQ(join(cgroupLeftovers(*daemon_)), "") << context;
    EXPECT_EQ(join(mountLeftovers(*daemon_)), "") << context;
    EXPECT_TRUE(ourDomains().empty()) << context << ": " << join(ourDomains());
    // Counted, not compared: the subnet's bridge changes its flags and address once a port joined it.
    EXPECT_EQ(linksIn(netns_).size(), linksBefore_.size()) << context << ":\n" << join(linksIn(netns_));
    EXPECT_FALSE(fs::exists(daemon_->containersDir() + "/" + name)) << context;
    EXPECT_FALSE(fs::exists(daemon_->vmsDir() + "/" + name)) << context;
    RecordProperty(fmt::format("round{}_starts", round), startsRun);
  }

  std::unique_ptr<TestDaemon> daemon_;
  std::string netns_;
  std::vector<std::string> linksBefore_;
};

TEST_F(LifecycleRace, ContainerStartStopAndForcedRmOnOneName) {
  for (int round = 0; round < 25 && !HasFailure(); ++round) {
    raceOnce({{"name", "race"}, {"image", "busybox"}, {"command", {"sleep", "600"}}, {"subnet", "s"}}, round);
  }
}

// TCG boots take seconds: few rounds, each racing over a boot and a running guest.
TEST_F(LifecycleRace, VmStartStopAndForcedRmOnOneName) {
  for (int round = 0; round < 3 && !HasFailure(); ++round) {
    raceOnce({{"name", "race-vm"}, {"kind", "vm"}, {"image", "busybox"}, {"subnet", "s"}}, round);
  }
}

}  // namespace
}  // namespace corral
