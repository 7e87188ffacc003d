// `corral compare` end to end through a real corrald, libvirt and QEMU under TCG (as root): the JSON has
// every sample (the VM's kernel is its own, the container's the host's), memory and the accelerator; with a
// subnet the network numbers; and nothing is left running afterwards, also when the CLI gets SIGINT.
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api/client.h"
#include "tests/integration/harness.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const std::string kPrefix = fmt::format("corral-t{}-", ::getpid());

bool requireRoot() {
  if (::geteuid() == 0) return true;
  if (::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) ADD_FAILURE() << "needs root";
  return false;
}

std::string hostKernel() {
  utsname u{};
  ::uname(&u);
  return u.release;
}

struct Reply {
  int status = 0;
  json body;
};

// One corrald under TCG with its own socket, state, cgroup parent, domain and namespace prefix; on the way
// out it force-removes whatever instances remain and stops.
class CompareDaemon {
 public:
  CompareDaemon() {
    char pattern[] = "/tmp/corral-compare-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    dir_ = pattern;
  }
  ~CompareDaemon() {
    if (pid_ > 0) {
      for (const json& instance : instances()) {
        call("DELETE", fmt::format("/v1/instances/{}?force=true", instance["name"].get<std::string>()));
      }
      ::kill(pid_, SIGTERM);
      int status = 0;
      ::waitpid(pid_, &status, 0);
    }
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
    const std::string parent = cgroupParent();
    ::rmdir(fmt::format("/sys/fs/cgroup/{}", parent).c_str());
    for (const auto& controller : std::filesystem::directory_iterator("/sys/fs/cgroup", ignored)) {
      ::rmdir((controller.path() / parent).c_str());
    }
  }

  bool start() {
    std::vector<std::string> args = {CORRALD_PATH,
                                     "--foreground",
                                     "--socket",
                                     socket(),
                                     "--state-dir",
                                     dir_ + "/state",
                                     "--image-dir",
                                     CORRAL_IMAGE_DIR,
                                     "--cgroup-parent",
                                     cgroupParent(),
                                     "--domain-prefix",
                                     kPrefix,
                                     "--accelerator",
                                     "tcg",
                                     "--accelerator-cache",
                                     dir_ + "/accelerator.json"};
    for (std::string& arg : corral::testing::testNetworkArgs()) args.push_back(std::move(arg));
    pid_ =
        corral::testing::spawnProcess(args, dir_ + "/corrald.out", {}, corral::testing::OutputMode::Append);
    if (pid_ < 0) return false;
    auto until = Clock::now() + 30s;
    while (Clock::now() < until) {
      if (call("GET", "/v1/info").status == 200) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  Reply call(const std::string& method, const std::string& target, const json& body = nullptr) const {
    api::Client client(socket(), 120s);
    auto response = client.send({method, target, body.is_null() ? std::string() : body.dump()});
    if (!response) return {0, json{{"transport", response.error().message()}}};
    return {response->status, json::parse(response->body, nullptr, false)};
  }

  json instances() const {
    Reply all = call("GET", "/v1/instances");
    return all.body.is_object() && all.body.contains("instances") ? all.body["instances"] : json::array();
  }

  // Starts `corral compare ARGS` with the output in files; the caller waits (or signals first).
  pid_t spawnCompare(std::vector<std::string> args) const {
    args.insert(args.begin(), {CORRAL_CLI_PATH, "--socket", socket(), "compare"});
    return corral::testing::spawnProcess(args, dir_ + "/cli.out", dir_ + "/cli.err",
                                         corral::testing::OutputMode::Truncate);
  }
  std::string out() const { return corral::testing::readFile(dir_ + "/cli.out"); }
  std::string err() const { return corral::testing::readFile(dir_ + "/cli.err"); }
  std::string log() const { return corral::testing::readFile(dir_ + "/corrald.out"); }
  std::string socket() const { return dir_ + "/s.sock"; }
  std::string dir() const { return dir_; }

 private:
  std::string cgroupParent() const { return fmt::format("corral-test-compare-{}", ::getpid()); }

  std::string dir_;
  pid_t pid_ = 0;
};

int exitCode(std::optional<int> status) {
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

// Runs `corral compare --json ARGS` to the end and parses what it printed (null when it was not JSON).
json compareJson(const CompareDaemon& daemon, std::vector<std::string> args, int* code) {
  args.push_back("--json");
  pid_t pid = daemon.spawnCompare(args);
  *code = exitCode(corral::testing::waitWithDeadline(pid, 150s));
  json result = json::parse(daemon.out(), nullptr, false);
  return result.is_discarded() ? json(nullptr) : result;
}

TEST(Compare, TwoOfEachKindUnderTcg) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt and cgroups";
  CompareDaemon daemon;
  ASSERT_TRUE(daemon.start()) << daemon.log();

  int code = -1;
  json result = compareJson(daemon, {"--runs", "2", "--svg", daemon.dir() + "/chart.svg"}, &code);
  ASSERT_EQ(code, 0) << daemon.out() << daemon.err() << daemon.log();
  ASSERT_TRUE(result.is_object()) << daemon.out();

  EXPECT_EQ(result["accelerator"], "tcg");
  ASSERT_EQ(result["samples"].size(), 4u) << result.dump(2);
  int containers = 0, vms = 0;
  for (const json& sample : result["samples"]) {
    SCOPED_TRACE(sample["name"].get<std::string>());
    EXPECT_TRUE(sample["error"].is_null()) << sample["error"];
    EXPECT_GT(sample["boot"].value("total_ms", 0.0), 0.0);
    ASSERT_TRUE(sample["usage"].is_object()) << sample.dump(2);
    EXPECT_GT(sample["usage"].value("memory_bytes", 0), 0);
    const std::string release = sample["probe"]["kernel"].value("release", "");
    if (sample["kind"] == "vm") {
      ++vms;
      EXPECT_EQ(sample["usage"]["source"], "qemu rss");
      EXPECT_NE(release, hostKernel());
      EXPECT_FALSE(release.empty());
    } else {
      ++containers;
      EXPECT_EQ(sample["usage"]["source"], "cgroup");
      EXPECT_EQ(release, hostKernel());
    }
  }
  EXPECT_EQ(containers, 2);
  EXPECT_EQ(vms, 2);
  EXPECT_EQ(result["isolation"]["container"]["kernel_equals_host"], true);
  EXPECT_EQ(result["isolation"]["vm"]["kernel_equals_host"], false);
  EXPECT_EQ(result["isolation"]["vm"]["namespaces_shared_with_host"], 0);
  // A container has its own pid and mount namespaces (the VM is not a host namespace at all).
  EXPECT_EQ(result["isolation"]["container"]["namespaces"]["pid"]["equals_host"], false);
  EXPECT_EQ(result["isolation"]["container"]["namespaces"]["mnt"]["equals_host"], false);
  EXPECT_EQ(result["summary"]["vm"]["boot_ms"]["count"], 2);
  EXPECT_EQ(result["summary"]["container"]["boot_ms"]["count"], 2);
  EXPECT_GT(result["summary"]["vm"]["memory_bytes"].value("median", 0.0), 0.0);

  std::string svg = corral::testing::readFile(daemon.dir() + "/chart.svg");
  EXPECT_TRUE(svg.starts_with("<?xml")) << svg;
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  EXPECT_EQ(std::count(svg.begin(), svg.end(), '<') - std::count(svg.begin(), svg.end(), '>'), 0);

  EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);

  // Names of an earlier compare still in use: refused before anything starts.
  Reply taken = daemon.call(
      "POST", "/v1/instances",
      {{"name", "compare-c-1"}, {"kind", "container"}, {"image", "busybox"}, {"command", {"sleep", "1000"}}});
  ASSERT_EQ(taken.status, 201) << taken.body.dump();
  pid_t pid = daemon.spawnCompare({"--runs", "1"});
  EXPECT_EQ(exitCode(corral::testing::waitWithDeadline(pid, 30s)), 1);
  EXPECT_NE(daemon.err().find("compare-c-1"), std::string::npos) << daemon.err();
  EXPECT_EQ(daemon.instances().size(), 1u) << daemon.instances().dump(2);
}

TEST(Compare, NetworkOnASubnet) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt, cgroups and namespaces";
  CompareDaemon daemon;
  ASSERT_TRUE(daemon.start()) << daemon.log();
  ASSERT_EQ(daemon.call("POST", "/v1/vpcs", {{"name", "cmp"}, {"cidr", "10.91.0.0/16"}}).status, 201);
  ASSERT_EQ(
      daemon.call("POST", "/v1/subnets", {{"name", "lab"}, {"vpc", "cmp"}, {"cidr", "10.91.1.0/24"}}).status,
      201);

  int code = -1;
  json result = compareJson(daemon, {"--runs", "1", "--subnet", "lab"}, &code);
  ASSERT_EQ(code, 0) << daemon.out() << daemon.err() << daemon.log();
  ASSERT_TRUE(result.is_object()) << daemon.out();
  const json& network = result["network"];
  ASSERT_TRUE(network.is_object()) << result.dump(2);
  EXPECT_EQ(network["router"], "10.91.1.1");
  ASSERT_EQ(network["ping"].size(), 4u) << network.dump(2);
  for (const json& ping : network["ping"]) {
    ASSERT_TRUE(ping["rtt_ms"].is_object()) << ping.dump(2);
    EXPECT_GT(ping["rtt_ms"].value("avg", 0.0), 0.0) << ping.dump(2);
  }
  ASSERT_EQ(network["tcp_connect"].size(), 2u) << network.dump(2);
  for (const json& tcp : network["tcp_connect"]) {
    EXPECT_GT(tcp.value("connect_ms", 0.0), 0.0) << tcp.dump(2);
  }
  EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);
}

TEST(Compare, InterruptedRemovesEverything) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt and cgroups";
  CompareDaemon daemon;
  ASSERT_TRUE(daemon.start()) << daemon.log();

  pid_t pid = daemon.spawnCompare({"--runs", "2"});
  ASSERT_GT(pid, 0);
  // SIGINT once the first VM exists (it is booting: the CLI is waiting for it).
  auto until = Clock::now() + 60s;
  bool sawVm = false;
  while (Clock::now() < until && !sawVm) {
    for (const json& instance : daemon.instances()) sawVm = sawVm || instance.value("kind", "") == "vm";
    if (!sawVm) std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(sawVm) << daemon.err();
  ::kill(pid, SIGINT);
  std::this_thread::sleep_for(100ms);
  ::kill(pid, SIGINT);  // a second Ctrl-C must not cut the cleanup short
  EXPECT_EQ(exitCode(corral::testing::waitWithDeadline(pid, 60s)), 130) << daemon.err();
  EXPECT_EQ(daemon.instances().size(), 0u) << daemon.instances().dump(2);
}

}  // namespace
}  // namespace corral
