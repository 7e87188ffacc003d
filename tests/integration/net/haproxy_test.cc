// A load balancer's rendered HAProxy configuration, run by the real haproxy in a test namespace in front
// of real HTTP servers (busybox httpd): round robin across healthy targets, a stopped target taken out and
// put back, host and path rules, fixed responses, the L7 firewall's 403s and per-rule counters, and no
// failed request across reloads. The daemon's wiring (NICs, supervision) is tested with corrald.
#include "lb/haproxy.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "lb/haproxy_config.h"
#include "lb/model.h"
#include "net/datapath.h"
#include "net/vpc_datapath.h"
#include "tests/integration/netns_testing.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::lb {
namespace {

using corral::testing::TestNamespaces;
using namespace std::chrono_literals;

constexpr int64_t kNow = 1700000000;

// Child processes the test started, killed and reaped when it ends (also when it fails halfway).
class Children {
 public:
  ~Children() {
    for (pid_t pid : pids_) stop(pid);
  }
  pid_t spawn(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
    argv.push_back(nullptr);
    pid_t pid = ::fork();
    if (pid == 0) {
      int null = ::open("/dev/null", O_RDWR);
      ::dup2(null, STDIN_FILENO);
      ::dup2(null, STDOUT_FILENO);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    pids_.push_back(pid);
    return pid;
  }
  void adopt(pid_t pid) { pids_.push_back(pid); }
  static void stop(pid_t pid) {
    if (::kill(pid, SIGTERM) == 0) ::waitpid(pid, nullptr, 0);
  }

 private:
  std::vector<pid_t> pids_;
};

struct Response {
  int status = 0;  // 0: no HTTP answer at all
  std::string body;
};

// `text` as one single-quoted shell word.
std::string shellQuoted(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// One request from inside the namespace (a name or a path) with curl (bounded: 5 s).
Response request(const std::string& netns, const std::string& url,
                 const std::vector<std::string>& options = {}) {
  std::string command = "nsenter --net=" + testing::netnsPath(netns) + " curl -s -m 5 -w '\\n%{http_code}'";
  for (const auto& option : options) command += " " + shellQuoted(option);
  command += " " + shellQuoted(url) + " 2>/dev/null";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return {};
  std::string output;
  char buffer[4096];
  size_t n;
  while ((n = ::fread(buffer, 1, sizeof buffer, pipe)) > 0) output.append(buffer, n);
  ::pclose(pipe);
  Response response;
  auto newline = output.rfind('\n');
  if (newline == std::string::npos) return response;
  response.status = std::atoi(output.c_str() + newline + 1);
  response.body = output.substr(0, newline);
  while (!response.body.empty() && response.body.back() == '\n') response.body.pop_back();
  return response;
}

class HaproxyTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available()) GTEST_SKIP() << "needs root (network namespaces)";
    auto made = namespaces.make("lb");
    ASSERT_TRUE(made) << made.error().message();
    netns = *made;
    files.runDir = std::filesystem::temp_directory_path() / (TestNamespaces::nameOf("lb-run"));
    std::filesystem::remove_all(files.runDir);
    std::filesystem::create_directories(files.runDir);
    for (const auto& [name, address] : kServers) startServer(name, address);

    ok(topology.createVpc({.name = "prod", .cidr = "10.0.0.0/16"}, kNow));
    ok(topology.createSubnet({.name = "a", .vpc = "prod", .cidr = "10.0.1.0/24"}, kNow));
    placement = {{"web-1", {"prod"}}, {"web-2", {"prod"}}, {"api-1", {"prod"}}};
    ok(balancers.createTargetGroup({.name = "web",
                                    .vpc = "prod",
                                    .port = 8080,
                                    .healthCheck = {.path = "/health.txt",
                                                    .intervalSeconds = 5,
                                                    .timeoutSeconds = 2,
                                                    .healthyThreshold = 2,
                                                    .unhealthyThreshold = 2},
                                    .targets = {"web-1", "web-2"}},
                                   topology, placement, kNow));
    ok(balancers.createTargetGroup({.name = "api", .vpc = "prod", .port = 8080, .targets = {"api-1"}},
                                   topology, placement, kNow));
    ok(balancers.createLoadBalancer({.name = "front", .vpc = "prod", .subnets = {"a"}}, topology, kNow));
    ok(balancers.addListener("front", {.port = 80, .defaultAction = {.targetGroup = "web"}}));
  }
  void TearDown() override { std::filesystem::remove_all(files.runDir); }

  template <class T>
  static T ok(Result<T> result) {
    EXPECT_TRUE(result.has_value()) << result.error().message();
    return std::move(result).value();
  }

  // busybox httpd serving "<name>" at / and /api/, and /health.txt, on address:8080.
  void startServer(const std::string& name, const std::string& address) {
    const auto root = std::filesystem::path(files.runDir) / ("www-" + name);
    std::filesystem::create_directories(root / "api");
    std::ofstream(root / "index.html") << name << "\n";
    std::ofstream(root / "api" / "index.html") << name << " api\n";
    std::ofstream(root / "health.txt") << "ok\n";
    serverPids[name] = children.spawn({"ip", "netns", "exec", netns, "busybox", "httpd", "-f", "-p",
                                       address + ":8080", "-h", root.string()});
  }

  // Renders the configuration for the model as it is now into haproxy.cfg.
  void writeConfig() {
    HaproxyInputs inputs{.balancer = balancers.findLoadBalancer("front"), .listenAddresses = {"127.0.0.1"}};
    for (const auto& [name, address] : kServers) inputs.targetAddresses[name] = address;
    for (const auto* group : balancers.targetGroups()) inputs.groups[group->name] = group;
    std::ofstream(files.config()) << renderHaproxyConfig(inputs);
    auto checked = checkHaproxyConfig(files.config());
    ASSERT_TRUE(checked) << checked.error().message();
  }

  void start() {
    writeConfig();
    auto pid = startHaproxy(testing::netnsPath(netns), files);
    ASSERT_TRUE(pid) << pid.error().message();
    children.adopt(*pid);
  }

  std::vector<ProxyStat> stats() {
    auto csv = haproxyCommand(files.adminSocket(), "show stat");
    EXPECT_TRUE(csv) << csv.error().message();
    if (!csv) return {};
    return ok(parseShowStat(*csv));
  }

  // Waits (bounded) until target `name` of "web" is in `state`.
  bool waitForTarget(const std::string& name, const std::string& state, std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      for (const auto& health :
           targetHealth(*balancers.findTargetGroup("web"), stats(), {{"web-1", "x"}, {"web-2", "x"}})) {
        if (health.target == name && health.state == state) return true;
      }
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }

  const std::vector<std::pair<std::string, std::string>> kServers = {
      {"web-1", "127.0.0.11"}, {"web-2", "127.0.0.12"}, {"api-1", "127.0.0.13"}};
  TestNamespaces namespaces;
  std::string netns;
  HaproxyFiles files;
  Children children;
  std::map<std::string, pid_t> serverPids;
  net::Topology topology;
  InstancePlacement placement;
  Balancers balancers;
};

TEST_F(HaproxyTest, RoundRobinAcrossHealthyTargetsAndAStoppedOneTakenOutAndBack) {
  start();
  ASSERT_TRUE(waitForTarget("web-1", "healthy", 10s));
  ASSERT_TRUE(waitForTarget("web-2", "healthy", 10s));
  std::map<std::string, int> seen;
  for (int i = 0; i < 6; ++i) {
    auto response = request(netns, "http://127.0.0.1/");
    ASSERT_EQ(response.status, 200) << response.body;
    ++seen[response.body];
  }
  EXPECT_EQ(seen, (std::map<std::string, int>{{"web-1", 3}, {"web-2", 3}}));

  // web-2's server stops: after two failed checks it is out, and every request goes to web-1.
  Children::stop(serverPids["web-2"]);
  ASSERT_TRUE(waitForTarget("web-2", "unhealthy", 20s));
  for (int i = 0; i < 4; ++i) {
    auto response = request(netns, "http://127.0.0.1/");
    EXPECT_EQ(response.status, 200);
    EXPECT_EQ(response.body, "web-1");
  }
  auto health = targetHealth(*balancers.findTargetGroup("web"), stats(), {{"web-1", "x"}, {"web-2", "x"}});
  ASSERT_EQ(health.size(), 2u);
  EXPECT_EQ(health[1].state, "unhealthy");
  EXPECT_NE(health[1].reason.find("DOWN"), std::string::npos) << health[1].reason;

  // Back: two passing checks and it takes its share again.
  startServer("web-2", "127.0.0.12");
  ASSERT_TRUE(waitForTarget("web-2", "healthy", 20s));
  seen.clear();
  for (int i = 0; i < 4; ++i) ++seen[request(netns, "http://127.0.0.1/").body];
  EXPECT_EQ(seen, (std::map<std::string, int>{{"web-1", 2}, {"web-2", 2}}));
}

TEST_F(HaproxyTest, HostAndPathRulesAndFixedResponses) {
  ok(balancers.addRule("front", 80, {.priority = 10, .path = "/api/*", .action = {.targetGroup = "api"}}));
  ok(balancers.addRule("front", 80,
                       {.priority = 20,
                        .host = "old.example",
                        .action = {.type = "fixed-response", .status = 410, .body = "moved away"}}));
  ok(balancers.addRule("front", 80,
                       {.priority = 30, .host = "*.api.example", .action = {.targetGroup = "api"}}));
  start();
  auto api = request(netns, "http://127.0.0.1/api/");
  EXPECT_EQ(api.status, 200);
  EXPECT_EQ(api.body, "api-1 api");
  auto gone = request(netns, "http://127.0.0.1/", {"-H", "Host: OLD.example:80"});
  EXPECT_EQ(gone.status, 410);
  EXPECT_EQ(gone.body, "moved away");
  auto byHost = request(netns, "http://127.0.0.1/", {"-H", "Host: eu.api.example"});
  EXPECT_EQ(byHost.status, 200);
  EXPECT_EQ(byHost.body, "api-1");
  auto rest = request(netns, "http://127.0.0.1/", {"-H", "Host: api.example"});
  EXPECT_EQ(rest.status, 200);
  EXPECT_TRUE(rest.body == "web-1" || rest.body == "web-2") << rest.body;
}

TEST_F(HaproxyTest, FirewallDeniesWith403AndCountsPerRule) {
  ok(balancers.addFirewallRule("front", 80, {.part = "path", .pattern = "/admin*"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "method", .pattern = "DELETE"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "header", .header = "User-Agent", .pattern = "sqlmap"}));
  ok(balancers.addFirewallRule("front", 80, {.part = "body", .pattern = "' OR 1=1"}));
  start();
  EXPECT_EQ(request(netns, "http://127.0.0.1/admin/users").status, 403);
  EXPECT_EQ(request(netns, "http://127.0.0.1/administrator").status, 403);
  EXPECT_EQ(request(netns, "http://127.0.0.1/", {"-X", "DELETE"}).status, 403);
  EXPECT_EQ(request(netns, "http://127.0.0.1/", {"-A", "Mozilla/5.0 sqlmap/1.7"}).status, 403);
  EXPECT_EQ(request(netns, "http://127.0.0.1/", {"--data", "user=x' or 1=1 --"}).status, 403);
  // The same listener lets ordinary requests through.
  EXPECT_EQ(request(netns, "http://127.0.0.1/").status, 200);
  EXPECT_EQ(request(netns, "http://127.0.0.1/health.txt", {"-A", "curl"}).status, 200);
  auto counts = firewallCounts(balancers.findLoadBalancer("front")->listeners[0], stats());
  EXPECT_EQ(counts, (std::map<int64_t, int64_t>{{1, 2}, {2, 1}, {3, 1}, {4, 1}}));
}

TEST_F(HaproxyTest, NoFailedRequestAcrossReloads) {
  start();
  ASSERT_TRUE(waitForTarget("web-1", "healthy", 10s));
  ASSERT_TRUE(waitForTarget("web-2", "healthy", 10s));
  std::atomic<bool> done = false;
  int requests = 0, failures = 0;
  std::thread client([&] {
    // Bounded: at most 400 requests, each bounded by curl's 5 s.
    while (!done && requests < 400) {
      ++requests;
      if (request(netns, "http://127.0.0.1/").status != 200) ++failures;
    }
  });
  for (int priority = 1; priority <= 4; ++priority) {
    std::this_thread::sleep_for(300ms);
    // Each reload brings a real change: one more rule.
    ok(balancers.addRule("front", 80,
                         {.priority = priority,
                          .path = "/p" + std::to_string(priority),
                          .action = {.type = "fixed-response", .status = 204}}));
    writeConfig();
    auto reloaded = reloadHaproxy(files);
    EXPECT_TRUE(reloaded) << reloaded.error().message();
  }
  std::this_thread::sleep_for(300ms);
  done = true;
  client.join();
  EXPECT_GT(requests, 20);
  EXPECT_EQ(failures, 0) << "of " << requests << " requests";
  EXPECT_EQ(request(netns, "http://127.0.0.1/p4").status, 204) << "the last configuration is the one serving";
}

TEST_F(HaproxyTest, ARefusedConfigurationLeavesTheOldOneServing) {
  start();
  std::ofstream(files.config(), std::ios::app) << "\nbackend broken\n    server x\n";
  auto reloaded = reloadHaproxy(files);
  ASSERT_FALSE(reloaded);
  EXPECT_NE(reloaded.error().message().find("refused the configuration"), std::string::npos)
      << reloaded.error().message();
  EXPECT_EQ(request(netns, "http://127.0.0.1/").status, 200);
}

// The load balancer inside a real VPC: its own namespace with one NIC per subnet, plugged like an
// instance's (a port of the subnet's bridge, in the VPC firewall with the load balancer's security group).
// Targets admit port 8080 from the load balancer's group only; the client reaches the targets through the
// load balancer and not directly; an L7 rule stops a request the security group let through.
//
// VPC "a" 10.0.0.0/16: subnet s1 10.0.1.0/24 (az1), s2 10.0.2.0/24 (az2). The load balancer "front":
// 10.0.1.5 and 10.0.2.5, group lb-sg (tcp/80 from the VPC). Targets t1 10.0.1.10, t2 10.0.2.10 in group
// targets (tcp/8080 from lb-sg). Client c 10.0.1.20 in the default group.
class LoadBalancerInVpcTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!TestNamespaces::available()) GTEST_SKIP() << "needs root (network namespaces, bridges, nftables)";
    files.runDir = std::filesystem::temp_directory_path() / TestNamespaces::nameOf("lbvpc-run");
    std::filesystem::remove_all(files.runDir);
    std::filesystem::create_directories(files.runDir);

    ASSERT_TRUE(topology.createVpc({.name = "a", .cidr = "10.0.0.0/16"}, kNow));
    ASSERT_TRUE(topology.createSubnet(
        {.name = "s1", .vpc = "a", .cidr = "10.0.1.0/24", .availabilityZone = "az1"}, kNow));
    ASSERT_TRUE(topology.createSubnet(
        {.name = "s2", .vpc = "a", .cidr = "10.0.2.0/24", .availabilityZone = "az2"}, kNow));
    ASSERT_TRUE(topology.createSecurityGroup({.name = "lb-sg", .vpc = "a"}, kNow));
    ASSERT_TRUE(topology.addSecurityGroupRule(
        "lb-sg",
        {.direction = "ingress", .protocol = "tcp", .fromPort = 80, .toPort = 80, .cidr = "10.0.0.0/16"}));
    ASSERT_TRUE(topology.createSecurityGroup({.name = "targets", .vpc = "a"}, kNow));
    ASSERT_TRUE(topology.addSecurityGroupRule(
        "targets",
        {.direction = "ingress", .protocol = "tcp", .fromPort = 8080, .toPort = 8080, .peerGroup = "lb-sg"}));

    const std::string prefix = TestNamespaces::prefix();
    auto nic = [&](const std::string& owner, const std::string& subnet, const std::string& address,
                   std::vector<std::string> groups) {
      return net::NicAttachment{.instance = owner,
                                .subnet = subnet,
                                .address = address,
                                .securityGroups = std::move(groups),
                                .linkKey = prefix + owner};
    };
    std::vector<net::NicAttachment> nics = {
        nic("lb/front/s1", "s1", "10.0.1.5", {"lb-sg"}),
        nic("lb/front/s2", "s2", "10.0.2.5", {"lb-sg"}),
        nic("t1", "s1", "10.0.1.10", {"targets"}),
        nic("t2", "s2", "10.0.2.10", {"targets"}),
        nic("c", "s1", "10.0.1.20", {}),
    };
    plan = net::planVpc(topology, "a", prefix, nics, net::UplinkSettings{}, std::nullopt);
    namespaces.holdVpc(plan.netns);
    auto converged = net::convergeVpc(plan);
    ASSERT_TRUE(converged) << converged.error().message();

    // The load balancer's namespace: eth0 in s1 (the default route), eth1 in s2.
    auto lbNs = namespaces.make("lb-front");
    ASSERT_TRUE(lbNs) << lbNs.error().message();
    lbNetns = *lbNs;
    for (const auto& planned : plan.nics) {
      const std::string& owner = planned.nic.instance;
      std::string target, ifname = "eth0";
      bool defaultRoute = true;
      std::optional<uint32_t> sourceTable;
      if (owner.starts_with("lb/")) {
        // One NIC per subnet; each answers from its own table, so a reply leaves by the NIC it came in on.
        target = lbNetns;
        sourceTable = planned.nic.subnet == "s1" ? 101 : 102;
        if (planned.nic.subnet == "s2") ifname = "eth1", defaultRoute = false;
      } else {
        auto made = namespaces.make(owner);
        ASSERT_TRUE(made) << made.error().message();
        target = netnsOf[owner] = *made;
      }
      auto attached = net::attachNamespaceNic(plan.netns, planned, testing::netnsPath(target), ifname,
                                              defaultRoute, sourceTable);
      ASSERT_TRUE(attached) << attached.error().message();
    }
    for (const auto& [name, address] : {std::pair{"t1", "10.0.1.10"}, std::pair{"t2", "10.0.2.10"}}) {
      const auto root = std::filesystem::path(files.runDir) / name;
      std::filesystem::create_directories(root);
      std::ofstream(root / "index.html") << name << "\n";
      children.spawn({"nsenter", "--net=" + testing::netnsPath(netnsOf[name]), "busybox", "httpd", "-f", "-p",
                      std::string(address) + ":8080", "-h", root.string()});
    }

    InstancePlacement placement{{"t1", {"a"}}, {"t2", {"a"}}};
    ASSERT_TRUE(balancers.createTargetGroup({.name = "web",
                                             .vpc = "a",
                                             .port = 8080,
                                             .healthCheck = {.intervalSeconds = 5,
                                                             .timeoutSeconds = 2,
                                                             .healthyThreshold = 2,
                                                             .unhealthyThreshold = 2},
                                             .targets = {"t1", "t2"}},
                                            topology, placement, kNow));
    ASSERT_TRUE(balancers.createLoadBalancer(
        {.name = "front", .vpc = "a", .subnets = {"s1", "s2"}, .securityGroup = "lb-sg"}, topology, kNow));
    ASSERT_TRUE(balancers.addListener("front", {.port = 80, .defaultAction = {.targetGroup = "web"}}));
    ASSERT_TRUE(balancers.addFirewallRule("front", 80, {.part = "path", .pattern = "/admin*"}));
    HaproxyInputs inputs{.balancer = balancers.findLoadBalancer("front"),
                         .groups = {{"web", balancers.findTargetGroup("web")}},
                         .listenAddresses = {"10.0.1.5", "10.0.2.5"},
                         .targetAddresses = {{"t1", "10.0.1.10"}, {"t2", "10.0.2.10"}}};
    std::ofstream(files.config()) << renderHaproxyConfig(inputs);
    auto pid = startHaproxy(testing::netnsPath(lbNetns), files);
    ASSERT_TRUE(pid) << pid.error().message();
    children.adopt(*pid);
  }
  void TearDown() override { std::filesystem::remove_all(files.runDir); }

  bool waitForHealthy(std::chrono::seconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      auto csv = haproxyCommand(files.adminSocket(), "show stat");
      if (csv) {
        auto stats = parseShowStat(*csv);
        if (stats) {
          int healthy = 0;
          for (const auto& h :
               targetHealth(*balancers.findTargetGroup("web"), *stats, {{"t1", "x"}, {"t2", "x"}}))
            healthy += h.state == "healthy";
          if (healthy == 2) return true;
        }
      }
      std::this_thread::sleep_for(200ms);
    }
    return false;
  }

  TestNamespaces namespaces;  // destroyed last: the processes in them go first
  Children children;
  HaproxyFiles files;
  net::Topology topology;
  net::VpcPlan plan;
  std::string lbNetns;
  std::map<std::string, std::string> netnsOf;
  Balancers balancers;
};

TEST_F(LoadBalancerInVpcTest, ClientReachesTargetsOnlyThroughTheLoadBalancer) {
  ASSERT_TRUE(waitForHealthy(15s)) << "both targets healthy through the VPC (checks pass the targets' group)";
  std::map<std::string, int> seen;
  for (const std::string address : {"10.0.1.5", "10.0.1.5", "10.0.2.5", "10.0.2.5"}) {
    auto response = request(netnsOf["c"], "http://" + address + "/");
    EXPECT_EQ(response.status, 200) << address;
    ++seen[response.body];
  }
  EXPECT_EQ(seen, (std::map<std::string, int>{{"t1", 2}, {"t2", 2}})) << "round robin across two subnets";
  // The targets' group admits the load balancer's group only.
  EXPECT_EQ(request(netnsOf["c"], "http://10.0.1.10:8080/", {"-m", "1"}).status, 0)
      << "the client directly: dropped";
  // The security group lets port 80 through; the L7 rule stops the request.
  EXPECT_EQ(request(netnsOf["c"], "http://10.0.1.5/admin/").status, 403);
  auto csv = haproxyCommand(files.adminSocket(), "show stat");
  ASSERT_TRUE(csv) << csv.error().message();
  auto stats = parseShowStat(*csv);
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(firewallCounts(balancers.findLoadBalancer("front")->listeners[0], *stats),
            (std::map<int64_t, int64_t>{{1, 1}}));
}

}  // namespace
}  // namespace corral::lb
