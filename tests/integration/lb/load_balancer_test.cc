// Load balancers end to end through a real corrald (as root): corrald runs one HAProxy per load balancer in
// a namespace of its own, joined to its subnet by a NIC with an address from IPAM, in front of containers
// serving HTTP with busybox httpd; a client container asks with busybox nc. Covers round robin across two
// healthy targets, a stopped target taken out of rotation and put back, a path rule, an L7 deny rule's 403
// and its counter, no failed request across reloads, a killed HAProxy started again, an instance removed
// leaving its target groups, bad input refused with nothing changed, a corrald killed with -9 whose
// successor adopts the HAProxy, and a deleted load balancer leaving no process, namespace or file. Then the
// rough edges: a stats socket that does not answer holds up no other request, and a --lb-dir long enough
// that its sockets' paths pass sun_path still runs HAProxy. And a public load balancer reached from the
// internet (the test's uplink namespace) at its public address, an internal one not. And `corral trace` on
// a load balancer's NIC: a client's HTTP request to it seen there, handshake and request.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api/api.h"
#include "core/unique_fd.h"
#include "net/netlink.h"
#include "net/netns.h"
#include "tests/integration/harness.h"
#include "tests/integration/leaks.h"
#include "tests/integration/netns_testing.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

// A container serving `name` at / (and at /api/ for an "api" one) and ok at /health.txt on port 8080.
json runServer(const TestDaemon& d, const std::string& name, const json& extra = json::object()) {
  const std::string script = fmt::format(
      "mkdir -p /tmp/www/api && echo {0} > /tmp/www/index.html && echo {0} api > /tmp/www/api/index.html && "
      "echo ok > /tmp/www/health.txt && exec httpd -f -p 8080 -h /tmp/www",
      name);
  json spec = {{"name", name}, {"image", "busybox"}, {"command", {"sh", "-c", script}}, {"subnet", "a"}};
  spec.update(extra);
  return d.must("POST", "/v1/instances", spec);
}

struct Fetched {
  int exitCode = -1;
  std::string out;
};

// `script` in the client container (sh -c); its exit code and stdout+stderr.
Fetched inClient(const TestDaemon& d, const std::string& script) {
  Reply run = d.call("POST", "/v1/instances/client/exec", {{"command", {"sh", "-c", script}}});
  Fetched fetched;
  const bool exited =
      run.status == 200 && run.body.contains("exit_code") && run.body["exit_code"].is_number();
  fetched.exitCode = exited ? run.body["exit_code"].get<int>() : -1;
  if (run.body.contains("stdout") && run.body["stdout"].is_string())
    fetched.out += run.body["stdout"].get<std::string>();
  if (run.body.contains("stderr") && run.body["stderr"].is_string())
    fetched.out += run.body["stderr"].get<std::string>();
  if (!exited) fetched.out = "exec: " + run.body.dump();
  return fetched;
}

// One HTTP/1.0 request from the client with busybox nc (busybox wget dies of SIGSEGV in this image, even
// for an address): the body, trimmed, when the status is 200; "HTTP NNN" otherwise.
std::string request(const TestDaemon& d, const std::string& address, const std::string& path) {
  Fetched f = inClient(
      d, fmt::format("printf 'GET {} HTTP/1.0\\r\\nHost: shop\\r\\n\\r\\n' | nc -w 5 {} 80", path, address));
  const std::string& out = f.out;
  const size_t headerEnd = out.find("\r\n\r\n");
  if (!out.starts_with("HTTP/1.") || out.size() < 12 || headerEnd == std::string::npos)
    return "no answer: " + out;
  const std::string status = out.substr(9, 3);
  if (status != "200") return "HTTP " + status;
  std::string body = out.substr(headerEnd + 4);
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
  return body;
}

// One GET from inside a namespace of the test's own (no corrald needed): the body, trimmed.
std::string getFromNamespace(const std::string& netns, const std::string& url) {
  const std::string command = fmt::format("nsenter --net=/run/netns/{} curl -s -m 5 '{}' 2>&1", netns, url);
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return "";
  std::string out;
  char buffer[4096];
  size_t n;
  while ((n = ::fread(buffer, 1, sizeof buffer, pipe)) > 0) out.append(buffer, n);
  ::pclose(pipe);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

json balancer(const TestDaemon& d, const std::string& name) {
  Reply reply = d.call("GET", "/v1/load-balancers/" + name);
  return reply.status == 200 ? reply.body : json(nullptr);
}

// The health of `target` in `group` as the load balancer shows it ("healthy", "unhealthy", ...).
std::string healthOf(const TestDaemon& d, const std::string& group, const std::string& target) {
  json lb = balancer(d, "front");
  if (!lb.is_object() || !lb.contains("target_health") || !lb["target_health"].contains(group)) return "";
  for (const json& entry : lb["target_health"][group]) {
    if (entry.value("target", "") == target) return entry.value("state", "");
  }
  return "";
}

bool waitForHealth(const TestDaemon& d, const std::string& group, const std::string& target,
                   const std::string& state, std::chrono::seconds timeout = 30s) {
  for (auto end = Clock::now() + timeout; Clock::now() < end; std::this_thread::sleep_for(300ms)) {
    if (healthOf(d, group, target) == state) return true;
  }
  return false;
}

// HAProxy processes whose command line names `dir` (the test's --lb-dir).
std::vector<pid_t> haproxiesUnder(const std::string& dir) {
  return corral::testing::processesNaming("haproxy", dir);
}

class LoadBalancers : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "namespaces, containers and HAProxy need root";
    char pattern[] = "/tmp/corral-lbrun-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    lbDir_ = pattern;
    daemon_ = std::make_unique<TestDaemon>("lb", std::vector<std::string>{"--lb-dir", lbDir_});
    ASSERT_TRUE(daemon_->start()) << daemon_->log();
  }
  void TearDown() override {
    daemon_.reset();
    for (pid_t pid : haproxiesUnder(lbDir_)) ::kill(pid, SIGKILL);
    std::error_code ignored;
    if (!lbDir_.empty()) std::filesystem::remove_all(lbDir_, ignored);
  }
  std::string lbDir_;
  std::unique_ptr<TestDaemon> daemon_;
};

TEST_F(LoadBalancers, HaproxyRunByCorraldBalancesChecksFiltersReloadsAndIsAdopted) {
  TestDaemon& d = *daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "shop"}, {"cidr", "10.50.0.0/16"}});
  d.must("POST", "/v1/vpcs", {{"name", "dev"}, {"cidr", "10.51.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "a"}, {"vpc", "shop"}, {"cidr", "10.50.1.0/24"}});
  d.must("POST", "/v1/subnets", {{"name", "d"}, {"vpc", "dev"}, {"cidr", "10.51.1.0/24"}});
  runServer(d, "web-1");
  runServer(d, "web-2");
  runServer(d, "api-1");
  d.must("POST", "/v1/instances",
         {{"name", "client"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "a"}});
  const json health = {{"path", "/health.txt"},
                       {"interval", 5},
                       {"timeout", 2},
                       {"healthy_threshold", 2},
                       {"unhealthy_threshold", 2}};
  d.must("POST", "/v1/target-groups",
         {{"name", "web"}, {"vpc", "shop"}, {"port", 8080}, {"health_check", health}});
  d.must("POST", "/v1/target-groups",
         {{"name", "api"}, {"vpc", "shop"}, {"port", 8080}, {"health_check", health}});
  d.must("POST", "/v1/target-groups", {{"name", "elsewhere"}, {"vpc", "dev"}, {"port", 8080}});
  d.must("POST", "/v1/target-groups/web/register", {{"targets", {"web-1", "web-2"}}}, 200);
  d.must("POST", "/v1/target-groups/api/register", {{"targets", {"api-1"}}}, 200);
  ASSERT_FALSE(HasFailure());

  // Bad input: an unknown subnet, then a listener forwarding to another VPC's group: refused by field,
  // nothing made (no load balancer, no namespace, no address taken).
  Reply unknown =
      d.call("POST", "/v1/load-balancers", {{"name", "front"}, {"vpc", "shop"}, {"subnets", {"nope"}}});
  EXPECT_EQ(unknown.status, 404) << unknown.body.dump();
  EXPECT_NE(unknown.body["error"].value("message", "").find("subnets[0]"), std::string::npos)
      << unknown.body.dump();
  EXPECT_NE(unknown.body["error"].value("message", "").find("\"nope\""), std::string::npos)
      << unknown.body.dump();
  EXPECT_EQ(d.call("GET", "/v1/load-balancers").body["load_balancers"], json::array());
  EXPECT_FALSE(net::netnsExists(corral::testing::testNetnsPrefix() + "lb-front"));

  json created =
      d.must("POST", "/v1/load-balancers", {{"name", "front"}, {"vpc", "shop"}, {"subnets", {"a"}}});
  ASSERT_EQ(created["nics"].size(), 1u) << created.dump(2);
  const std::string address = created["nics"][0].value("address", "");
  EXPECT_TRUE(address.starts_with("10.50.1.")) << created.dump(2);
  EXPECT_TRUE(net::netnsExists(corral::testing::testNetnsPrefix() + "lb-front"));

  Reply crossVpc = d.call("POST", "/v1/load-balancers/front/listeners",
                          {{"port", 80}, {"default_action", {{"target_group", "elsewhere"}}}});
  EXPECT_EQ(crossVpc.status, 400) << crossVpc.body.dump();
  EXPECT_EQ(crossVpc.body["error"].value("field", ""), "default_action.target_group") << crossVpc.body.dump();
  EXPECT_EQ(balancer(d, "front")["listeners"], json::array());

  d.must("POST", "/v1/load-balancers/front/listeners",
         {{"port", 80}, {"default_action", {{"target_group", "web"}}}});
  ASSERT_FALSE(HasFailure());
  json running = balancer(d, "front");
  EXPECT_EQ(running.value("state", ""), "running") << running.dump(2) << "\n" << d.logTail();

  // Round robin across two healthy targets.
  ASSERT_TRUE(waitForHealth(d, "web", "web-1", "healthy")) << balancer(d, "front").dump(2) << d.logTail();
  ASSERT_TRUE(waitForHealth(d, "web", "web-2", "healthy")) << balancer(d, "front").dump(2);
  const std::string url = fmt::format("http://{}/", address);
  std::map<std::string, int> seen;
  for (int i = 0; i < 6; ++i) ++seen[request(d, address, "/")];
  EXPECT_EQ(seen, (std::map<std::string, int>{{"web-1", 3}, {"web-2", 3}}));

  // web-2 stopped: out of rotation after two failed checks; started again: back in.
  d.must("POST", "/v1/instances/web-2/stop", json::object(), 200);
  ASSERT_TRUE(waitForHealth(d, "web", "web-2", "unhealthy")) << balancer(d, "front").dump(2);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(request(d, address, "/"), "web-1");
  d.must("POST", "/v1/instances/web-2/start", json::object(), 200);
  ASSERT_TRUE(waitForHealth(d, "web", "web-2", "healthy")) << balancer(d, "front").dump(2);
  seen.clear();
  for (int i = 0; i < 4; ++i) ++seen[request(d, address, "/")];
  EXPECT_EQ(seen, (std::map<std::string, int>{{"web-1", 2}, {"web-2", 2}}));

  // A path rule sends /api/ to the api group.
  d.must("POST", "/v1/load-balancers/front/listeners/80/rules",
         {{"priority", 10}, {"path", "/api/*"}, {"action", {{"target_group", "api"}}}});
  ASSERT_TRUE(waitForHealth(d, "api", "api-1", "healthy")) << balancer(d, "front").dump(2);
  EXPECT_EQ(request(d, address, "/api/"), "api-1 api");

  // An L7 deny rule: 403, and its counter counts.
  json denied = d.must("POST", "/v1/load-balancers/front/listeners/80/firewall",
                       {{"part", "path"}, {"pattern", "/admin*"}, {"description", "no admin"}});
  EXPECT_EQ(request(d, address, "/admin/"), "HTTP 403");
  EXPECT_EQ(request(d, address, "/admin/x"), "HTTP 403");
  json counted = balancer(d, "front");
  EXPECT_EQ(counted["listeners"][0]["firewall"][0]["denied"], 2) << counted.dump(2);
  auto shown = d.cli({"lb", "show", "front"});
  EXPECT_EQ(shown.code, 0) << shown;
  EXPECT_NE(shown.out.find("healthy"), std::string::npos) << shown;
  EXPECT_NE(shown.out.find("no admin"), std::string::npos) << shown;

  // No failed request across reloads: 300 requests from the client while the rules change five times.
  ASSERT_TRUE(waitForHealth(d, "web", "web-1", "healthy"));
  const int reloadsBefore = balancer(d, "front")["process"].value("reloads", 0);
  std::atomic<bool> looping{true};
  Fetched loop;
  std::thread client([&] {
    loop = inClient(
        d, fmt::format("ok=0; for i in $(seq 1 300); do if printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {} "
                       "80 | head -1 | grep -q ' 200 '; then ok=$((ok+1)); else echo FAIL $i; fi; done; "
                       "echo ok=$ok",
                       address));
    looping = false;
  });
  int changes = 0;
  for (int i = 0; i < 5 && looping; ++i) {
    d.must("POST", "/v1/load-balancers/front/listeners/80/rules",
           {{"priority", 20 + i}, {"path", fmt::format("/v{}/*", i)}, {"action", {{"target_group", "api"}}}});
    ++changes;
  }
  client.join();
  EXPECT_EQ(loop.exitCode, 0) << loop.out;
  EXPECT_NE(loop.out.find("ok=300"), std::string::npos) << loop.out;
  EXPECT_EQ(loop.out.find("FAIL"), std::string::npos) << loop.out;
  EXPECT_GE(changes, 2) << "the request loop ended before the reloads";
  EXPECT_EQ(balancer(d, "front")["process"].value("reloads", 0), reloadsBefore + changes);

  // A HAProxy that dies is started again, and serves.
  const pid_t killed = balancer(d, "front")["process"].value("pid", 0);
  ASSERT_GT(killed, 0);
  ASSERT_EQ(::kill(killed, SIGKILL), 0);
  json restarted;
  for (auto end = Clock::now() + 15s; Clock::now() < end; std::this_thread::sleep_for(200ms)) {
    restarted = balancer(d, "front");
    const json& process = restarted["process"];
    if (process.is_object() && process["pid"].is_number() && process["pid"].get<pid_t>() != killed) break;
  }
  EXPECT_EQ(restarted["process"].value("restarts", 0), 1) << restarted.dump(2) << "\n" << d.logTail();
  EXPECT_EQ(restarted.value("state", ""), "running") << restarted.dump(2);
  ASSERT_TRUE(waitForHealth(d, "web", "web-1", "healthy")) << balancer(d, "front").dump(2);
  ASSERT_TRUE(waitForHealth(d, "web", "web-2", "healthy")) << balancer(d, "front").dump(2);
  EXPECT_NE(request(d, address, "/"), "") << d.logTail();
  EXPECT_EQ(request(d, address, "/admin/"), "HTTP 403");

  // An instance removed leaves its target groups.
  d.must("DELETE", "/v1/instances/api-1?force=true", nullptr, 200);
  EXPECT_EQ(d.call("GET", "/v1/target-groups/api").body["targets"], json::array());

  // corrald killed with -9: HAProxy lives on and serves; the next corrald adopts it.
  const std::vector<pid_t> before = haproxiesUnder(lbDir_);
  const pid_t master = balancer(d, "front")["process"].value("pid", 0);
  ASSERT_GT(master, 0);
  d.kill9();
  EXPECT_EQ(getFromNamespace(corral::testing::testNetnsPrefix() + "lb-front", url), "web-1")
      << "served while no corrald runs";
  ASSERT_TRUE(d.start()) << d.log();
  json adopted = balancer(d, "front");
  EXPECT_EQ(adopted["process"].value("pid", 0), master) << adopted.dump(2) << "\n" << d.logTail();
  EXPECT_NE(d.log().find("adopted HAProxy"), std::string::npos) << d.logTail();
  seen.clear();
  for (int i = 0; i < 4; ++i) ++seen[request(d, address, "/")];
  EXPECT_EQ(seen, (std::map<std::string, int>{{"web-1", 2}, {"web-2", 2}}));
  for (pid_t pid : haproxiesUnder(lbDir_))
    EXPECT_NE(std::find(before.begin(), before.end(), pid), before.end()) << "haproxy " << pid << " is new";

  // Deleted: no HAProxy, no namespace, no files; its address is free again.
  d.must("DELETE", "/v1/load-balancers/front", nullptr, 200);
  EXPECT_TRUE(haproxiesUnder(lbDir_).empty());
  EXPECT_FALSE(net::netnsExists(corral::testing::testNetnsPrefix() + "lb-front"));
  EXPECT_FALSE(std::filesystem::exists(lbDir_ + "/front"));
  json again = d.must("POST", "/v1/load-balancers", {{"name", "back"}, {"vpc", "shop"}, {"subnets", {"a"}}});
  EXPECT_EQ(again["nics"].size(), 1u) << again.dump(2);
}

// "The internet host": a documentation address (RFC 5737) on the lo of the test's uplink namespace, as in
// tests/integration/vpc_test.cc; and an attacker's, another one there.
constexpr const char* kInternetHost = "198.51.100.10";
constexpr const char* kAttacker = "198.51.100.66";

void ensureInternetHost() {
  auto netlink = net::Netlink::open(corral::testing::testUplinkNetns());
  ASSERT_TRUE(netlink.has_value()) << netlink.error().message();
  auto lo = netlink->link("lo");
  ASSERT_TRUE(lo.has_value() && lo->has_value());
  for (const char* host : {kInternetHost, kAttacker}) {
    const std::string wanted = std::string(host) + "/32";
    if (std::find((*lo)->addresses.begin(), (*lo)->addresses.end(), wanted) == (*lo)->addresses.end()) {
      auto added = netlink->addAddress("lo", wanted);
      ASSERT_TRUE(added.has_value()) << added.error().message();
    }
  }
  auto up = netlink->setUp("lo");
  ASSERT_TRUE(up.has_value()) << up.error().message();
}

// GET `path` from the internet host to address:80: the body, trimmed, on a 200; else "HTTP NNN", or
// "no connection: WHY" when the TCP handshake did not complete.
std::string getFromInternet(const std::string& address, const std::string& path = "/",
                            const char* from = kInternetHost) {
  using namespace corral::testing;
  UniqueFd client = tcpSocketIn(testUplinkNetns());
  if (!client) return "no connection: no socket in the uplink namespace";
  if (!bindTo(client, from)) return std::string("no connection: bind: ") + std::strerror(errno);
  const std::string notConnected = connectWithin(client, address, 80, 2s);
  if (!notConnected.empty()) return "no connection: " + notConnected;
  const std::string ask = fmt::format("GET {} HTTP/1.0\r\nHost: shop\r\n\r\n", path);
  if (::send(client.get(), ask.data(), ask.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(ask.size()))
    return std::string("send: ") + std::strerror(errno);
  std::string out;
  char buffer[4096];
  while (waitForFd(client.get(), POLLIN, 5s)) {
    ssize_t n = ::read(client.get(), buffer, sizeof buffer);
    if (n <= 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  const size_t headerEnd = out.find("\r\n\r\n");
  if (!out.starts_with("HTTP/1.") || out.size() < 12 || headerEnd == std::string::npos)
    return "no answer: " + out;
  if (out.substr(9, 3) != "200") return "HTTP " + out.substr(9, 3);
  std::string body = out.substr(headerEnd + 4);
  while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
  return body;
}

// Issue 19: "A public load balancer gets an address at the internet gateway like an instance's public IP."
// An internet-facing load balancer in a public subnet gets a public address; the internet host sends HTTP
// there and reaches both targets in turn. An internal one gets none, and the internet reaches it by no
// address.
TEST_F(LoadBalancers, APublicLoadBalancerIsReachedFromTheInternetAndAnInternalOneIsNot) {
  TestDaemon& d = *daemon_;
  ensureInternetHost();
  d.must("POST", "/v1/vpcs", {{"name", "shop"}, {"cidr", "10.52.0.0/16"}});
  d.must("POST", "/v1/internet-gateways", {{"name", "door"}, {"vpc", "shop"}});
  d.must("POST", "/v1/route-tables", {{"name", "public"}, {"vpc", "shop"}});
  d.must("POST", "/v1/route-tables/public/routes",
         {{"destination", "0.0.0.0/0"}, {"target_type", "internet_gateway"}, {"target", "door"}});
  d.must("POST", "/v1/subnets",
         {{"name", "a"}, {"vpc", "shop"}, {"cidr", "10.52.1.0/24"}, {"route_table", "public"}});
  // The load balancer's guard admits HTTP from anywhere; its targets admit 8080 from inside the VPC.
  d.must("POST", "/v1/security-groups", {{"name", "web"}, {"vpc", "shop"}, {"description", "web"}});
  d.must("POST", "/v1/security-groups/web/rules",
         {{"direction", "ingress"},
          {"protocol", "tcp"},
          {"from_port", 80},
          {"to_port", 80},
          {"cidr", "0.0.0.0/0"}});
  d.must("POST", "/v1/security-groups/web/rules",
         {{"direction", "ingress"},
          {"protocol", "tcp"},
          {"from_port", 8080},
          {"to_port", 8080},
          {"cidr", "10.52.0.0/16"}});
  const json guarded = {{"security_groups", {"web"}}, {"public_ip", false}};
  runServer(d, "web-1", guarded);
  runServer(d, "web-2", guarded);
  d.must("POST", "/v1/target-groups",
         {{"name", "web"},
          {"vpc", "shop"},
          {"port", 8080},
          {"health_check",
           {{"path", "/health.txt"}, {"interval", 5}, {"timeout", 2}, {"healthy_threshold", 2}}}});
  d.must("POST", "/v1/target-groups/web/register", {{"targets", {"web-1", "web-2"}}}, 200);
  ASSERT_FALSE(HasFailure());

  json front = d.must("POST", "/v1/load-balancers",
                      {{"name", "front"}, {"vpc", "shop"}, {"subnets", {"a"}}, {"security_group", "web"}});
  json inner = d.must("POST", "/v1/load-balancers",
                      {{"name", "inner"},
                       {"vpc", "shop"},
                       {"subnets", {"a"}},
                       {"security_group", "web"},
                       {"internal", true}});
  ASSERT_FALSE(HasFailure());
  const std::string publicAddress = front["nics"][0].value("public_address", "");
  EXPECT_TRUE(publicAddress.starts_with("100.64.")) << front.dump(2);
  EXPECT_TRUE(inner["nics"][0]["public_address"].is_null()) << inner.dump(2);
  const std::string innerAddress = inner["nics"][0].value("address", "");
  for (const char* name : {"front", "inner"}) {
    d.must("POST", fmt::format("/v1/load-balancers/{}/listeners", name),
           {{"port", 80}, {"default_action", {{"target_group", "web"}}}});
  }
  ASSERT_TRUE(waitForHealth(d, "web", "web-1", "healthy")) << balancer(d, "front").dump(2) << d.logTail();
  ASSERT_TRUE(waitForHealth(d, "web", "web-2", "healthy")) << balancer(d, "front").dump(2);

  // From the internet to the public address: round robin over the two targets.
  std::map<std::string, int> seen;
  for (int i = 0; i < 4; ++i) ++seen[getFromInternet(publicAddress)];
  EXPECT_EQ(seen, (std::map<std::string, int>{{"web-1", 2}, {"web-2", 2}})) << d.logTail();

  // L4 passes, L7 stops: an attack on /admin from the internet is admitted by the load balancer's
  // security group (tcp/80 from anywhere: a flow-log ACCEPT at its NIC) and answered 403 by the L7
  // firewall's rule, which counts it.
  d.must("POST", "/v1/load-balancers/front/listeners/80/firewall",
         {{"part", "path"}, {"pattern", "/admin*"}, {"description", "no admin"}});
  EXPECT_EQ(getFromInternet(publicAddress, "/admin/login", kAttacker), "HTTP 403");
  json counted = balancer(d, "front");
  EXPECT_EQ(counted["listeners"][0]["firewall"][0]["denied"], 1) << counted.dump(2);
  const std::string frontAddress = front["nics"][0].value("address", "");
  json accepted;
  ASSERT_TRUE(corral::testing::waitUntil(
      [&] {
        for (const json& r : d.call("GET", "/v1/flow-logs?instance=front.a.lb&action=accept")
                                 .body.value("records", json::array())) {
          if (r.value("srcaddr", "") == kAttacker && r.value("dstaddr", "") == frontAddress &&
              r.value("dstport", 0) == 80) {
            accepted = r;
            return true;
          }
        }
        std::this_thread::sleep_for(500ms);
        return false;
      },
      40s, "the attack's flow record"))
      << d.call("GET", "/v1/flow-logs?vpc=shop").body.dump(1);
  EXPECT_EQ(accepted["action"], "ACCEPT") << accepted.dump();
  EXPECT_EQ(accepted["instance"], "front.a.lb") << "at the load balancer's NIC: " << accepted.dump();
  // The L4 guard let it through, and says which rule did; the L7 rule stopped it (the 403 above).
  EXPECT_EQ(accepted["guard"].value("kind", ""), "allowed") << accepted.dump();
  EXPECT_NE(accepted["guard"].value("text", "").find("security group web rule 2 (inbound) allows tcp port 80"),
            std::string::npos)
      << accepted.dump();
  auto shown = d.cli({"lb", "show", "front"});
  EXPECT_NE(shown.out.find("no admin"), std::string::npos) << shown;
  auto flows = d.cli({"flow-logs", "front.a.lb", "--action", "accept"});
  EXPECT_NE(flows.out.find(kAttacker), std::string::npos) << flows;

  // The internal one: no public address, and its private one is not reachable from the internet.
  const std::string fromInternet = getFromInternet(innerAddress);
  EXPECT_TRUE(fromInternet.starts_with("no connection")) << fromInternet;
  // It does serve inside the VPC (so the refusal above is the internet's, not a dead load balancer).
  d.must("POST", "/v1/instances",
         {{"name", "client"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "a"}});
  const std::string inside = request(d, innerAddress, "/");
  EXPECT_TRUE(inside == "web-1" || inside == "web-2") << inside;
}

// A load balancer in subnet "a" of VPC "shop" with a listener on 80 answering a fixed response, running.
void fixedResponseBalancer(const TestDaemon& d) {
  d.must("POST", "/v1/vpcs", {{"name", "shop"}, {"cidr", "10.50.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "a"}, {"vpc", "shop"}, {"cidr", "10.50.1.0/24"}});
  d.must("POST", "/v1/load-balancers", {{"name", "front"}, {"vpc", "shop"}, {"subnets", {"a"}}});
  d.must("POST", "/v1/load-balancers/front/listeners",
         {{"port", 80}, {"default_action", {{"type", "fixed-response"}, {"body", "hello"}}}});
  d.must("POST", "/v1/load-balancers/front/listeners/80/firewall",
         {{"part", "path"}, {"pattern", "/admin*"}});
}

// GET /v1/load-balancers/NAME reads HAProxy's stats socket without the service's lock: while its read waits
// on a socket that accepts and never answers (a test double in place of HAProxy's), another request is
// answered. The proof is causal, not a timing: the other answer arrives while the stats connection is
// still open (the read gives up after 1 s and closes it).
TEST_F(LoadBalancers, AStatsSocketThatDoesNotAnswerHoldsUpNoOtherRequest) {
  TestDaemon& d = *daemon_;
  fixedResponseBalancer(d);
  ASSERT_FALSE(HasFailure());
  ASSERT_EQ(balancer(d, "front").value("state", ""), "running") << balancer(d, "front").dump(2);

  const std::string path = lbDir_ + "/front/admin.sock";
  ASSERT_EQ(::unlink(path.c_str()), 0);
  UniqueFd stuck(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{.sun_family = AF_UNIX, .sun_path = {}};
  ASSERT_LT(path.size(), sizeof address.sun_path);
  std::memcpy(address.sun_path, path.c_str(), path.size() + 1);
  ASSERT_EQ(::bind(stuck.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(stuck.get(), 4), 0);

  Reply slow;
  std::thread reader([&] { slow = d.call("GET", "/v1/load-balancers/front"); });
  pollfd incoming{.fd = stuck.get(), .events = POLLIN, .revents = 0};
  ASSERT_EQ(::poll(&incoming, 1, 10000), 1) << "corrald never asked the stats socket";
  UniqueFd asked(::accept4(stuck.get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(asked);
  char command[64];
  ASSERT_GT(::read(asked.get(), command, sizeof command), 0);

  Reply other = d.call("GET", "/v1/vpcs/shop");
  EXPECT_EQ(other.status, 200) << other.body.dump();
  pollfd closed{.fd = asked.get(), .events = POLLIN, .revents = 0};
  EXPECT_EQ(::poll(&closed, 1, 0), 0)
      << "the stats read had ended (its connection closed) before the other request was answered";
  reader.join();
  EXPECT_EQ(slow.status, 200) << slow.body.dump();
  EXPECT_EQ(slow.body.value("state", ""), "running") << slow.body.dump(2);
  EXPECT_TRUE(slow.body["listeners"][0]["firewall"][0]["denied"].is_null())
      << "no stats: no counter, rather than a made-up 0: " << slow.body.dump(2);
}

// `corral trace` at a load balancer's NIC (its port on the subnet's switch): a client's HTTP request to the
// listener is seen there as the 3-way handshake and then the request itself (its bytes in the pcap), next
// to HAProxy's own connection on to the target. Bad input names the field.
TEST_F(LoadBalancers, TraceCapturesAtTheLoadBalancersNic) {
  TestDaemon& d = *daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "shop"}, {"cidr", "10.50.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "a"}, {"vpc", "shop"}, {"cidr", "10.50.1.0/24"}});
  runServer(d, "web-1");
  d.must("POST", "/v1/instances",
         {{"name", "client"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "a"}});
  d.must("POST", "/v1/target-groups",
         {{"name", "web"},
          {"vpc", "shop"},
          {"port", 8080},
          {"health_check", {{"path", "/health.txt"}, {"interval", 5}, {"timeout", 2}}}});
  d.must("POST", "/v1/target-groups/web/register", {{"targets", {"web-1"}}}, 200);
  json created =
      d.must("POST", "/v1/load-balancers", {{"name", "front"}, {"vpc", "shop"}, {"subnets", {"a"}}});
  const std::string address = created["nics"][0].value("address", "");
  d.must("POST", "/v1/load-balancers/front/listeners",
         {{"port", 80}, {"default_action", {{"target_group", "web"}}}});
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(waitForHealth(d, "web", "web-1", "healthy")) << balancer(d, "front").dump(2) << d.logTail();
  ASSERT_EQ(request(d, address, "/"), "web-1");

  Reply unknown = d.call("POST", "/v1/trace", {{"load_balancer", "nope"}, {"seconds", 1}});
  EXPECT_EQ(unknown.status, 404) << unknown.body.dump();
  EXPECT_EQ(unknown.body["error"].value("field", ""), "load_balancer") << unknown.body.dump();
  Reply badSubnet =
      d.call("POST", "/v1/trace", {{"load_balancer", "front"}, {"subnet", "b"}, {"seconds", 1}});
  EXPECT_EQ(badSubnet.status, 400) << badSubnet.body.dump();
  EXPECT_EQ(badSubnet.body["error"].value("field", ""), "subnet") << badSubnet.body.dump();

  Reply reply;
  const size_t before = corral::testing::occurrences(d.log(), "trace: capturing on ");
  std::thread tracer([&] {
    reply = d.call(
        "POST", "/v1/trace",
        {{"load_balancer", "front"}, {"subnet", "a"}, {"filter", "tcp"}, {"count", 40}, {"seconds", 6}});
  });
  EXPECT_TRUE(corral::testing::waitUntil(
      [&] { return corral::testing::occurrences(d.log(), "trace: capturing on ") > before; }, 10s,
      "corrald's \"trace: capturing on\" line"))
      << d.logTail();
  const std::string answered = request(d, address, "/");
  tracer.join();
  EXPECT_EQ(answered, "web-1");
  ASSERT_EQ(reply.status, 200) << reply.body.dump(2) << d.logTail();
  const json& answer = reply.body;
  EXPECT_EQ(answer["target"]["kind"], "load-balancer") << answer["target"].dump();
  EXPECT_EQ(answer["target"]["name"], "front.a.lb") << answer["target"].dump();
  EXPECT_EQ(answer["target"]["vpc"], "shop");

  // The client's connection to the listener: its frames, in order, with the handshake's three steps
  // before the request's bytes.
  std::vector<std::string> steps;
  std::string requestPayload;
  bool toTarget = false;
  for (const json& frame : answer["frames"]) {
    if (!frame["tcp"].is_object() || !frame["ipv4"].is_object()) continue;
    const bool toListener = frame["ipv4"]["destination"] == address && frame["tcp"]["destination_port"] == 80;
    const bool fromListener = frame["ipv4"]["source"] == address && frame["tcp"]["source_port"] == 80;
    if (frame["tcp"]["destination_port"] == 8080 && frame["ipv4"]["source"] == address) toTarget = true;
    if (!toListener && !fromListener) continue;
    if (frame["event"].is_string()) steps.push_back(frame["event"].get<std::string>());
    if (toListener && frame["payload_bytes"].get<size_t>() > 0 && steps.size() >= 3 && requestPayload.empty())
      requestPayload = "after the handshake";
  }
  ASSERT_GE(steps.size(), 3u) << answer.dump(2);
  EXPECT_TRUE(steps[0].starts_with("handshake 1/3")) << steps[0];
  EXPECT_TRUE(steps[1].starts_with("handshake 2/3")) << steps[1];
  EXPECT_TRUE(steps[2].starts_with("handshake 3/3")) << steps[2];
  EXPECT_EQ(requestPayload, "after the handshake") << answer.dump(2);
  EXPECT_TRUE(toTarget) << "HAProxy's own connection on to the target leaves from the same NIC";
  Result<std::string> pcap = api::base64Decode(answer["pcap"].get<std::string>());
  ASSERT_TRUE(pcap) << pcap.error().message();
  EXPECT_NE(pcap->find("GET / HTTP/1.0\r\nHost: shop"), std::string::npos) << "the HTTP request at the NIC";

  // The CLI: a load balancer's name as the target (it has one NIC), and its NIC's name as net show lists it.
  auto byName = d.cli({"trace", "front", "--filter", "arp", "--seconds", "1"});
  EXPECT_EQ(byName.code, 0) << byName.out << byName.err;
  EXPECT_NE(byName.out.find("port "), std::string::npos) << byName.out;
  EXPECT_NE(byName.out.find("of load-balancer front.a.lb"), std::string::npos) << byName.out;
  auto byNic = d.cli({"trace", "front.a.lb", "--filter", "arp", "--seconds", "1"});
  EXPECT_EQ(byNic.code, 0) << byNic.out << byNic.err;
  auto bySubnet = d.cli({"trace", "front", "--subnet", "b", "--seconds", "1"});
  EXPECT_NE(bySubnet.code, 0) << bySubnet.out;
  EXPECT_NE(bySubnet.err.find("subnet"), std::string::npos) << bySubnet.err;
}

// A --lb-dir whose sockets' absolute paths pass sun_path (108 bytes) and HAProxy's own limit (97): HAProxy
// binds them relative to its run directory and corrald reaches them through it, so the load balancer runs
// and its counters are read.
TEST(LoadBalancerDir, LongerThanASocketPathStillRunsHaproxyAndReadsItsStats) {
  if (!requireRoot()) GTEST_SKIP() << "namespaces and HAProxy need root";
  char pattern[] = "/tmp/corral-lblong-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string top = pattern;
  const std::string dir = top + "/" + std::string(50, 'l') + "/" + std::string(50, 'b');
  ASSERT_GT((dir + "/front/admin.sock").size(), sizeof(sockaddr_un::sun_path));
  {
    TestDaemon d("lblong", {"--lb-dir", dir});
    ASSERT_TRUE(d.start()) << d.log();
    fixedResponseBalancer(d);
    json shown = balancer(d, "front");
    EXPECT_EQ(shown.value("state", ""), "running") << shown.dump(2) << "\n" << d.logTail();
    EXPECT_TRUE(shown["process"]["error"].is_null()) << shown.dump(2);
    EXPECT_EQ(shown["listeners"][0]["firewall"][0]["denied"], 0) << "the stats were read: " << shown.dump(2);
    EXPECT_TRUE(std::filesystem::exists(dir + "/front/admin.sock"));
    d.must("DELETE", "/v1/load-balancers/front", nullptr, 200);
    EXPECT_TRUE(haproxiesUnder(dir).empty());
  }
  for (pid_t pid : haproxiesUnder(dir)) ::kill(pid, SIGKILL);
  std::error_code ignored;
  std::filesystem::remove_all(top, ignored);
}

}  // namespace
}  // namespace corral
