// End-to-end tests of the real corrald and corral binaries over a Unix socket in a temporary directory:
// the HTTP contract, crash safety under SIGKILL, restarts, concurrency, slow clients and the CLI.
#include "api/api.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "api/client.h"
#include "core/unique_fd.h"
#include "daemon/store.h"
#include "tests/integration/harness.h"
#include "tests/integration/leaks.h"

extern char** environ;

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr auto kReadTimeout = 1500ms;

// ---- Harness ----

class TempDir {
 public:
  TempDir() {
    char pattern[] = "/tmp/corral-it-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

using corral::testing::readFile;
using corral::testing::withTestNetwork;

struct ProcessResult {
  int exitCode = -1;   // -1 when killed by a signal
  std::string out;     // stdout
  std::string err;     // stderr
  std::string output;  // both, for checks that do not care which
};

// Runs a program to completion, capturing its output, with a deadline.
ProcessResult runProgram(const std::vector<std::string>& args, const std::string& outputPath,
                         std::chrono::milliseconds deadline = 20s) {
  const std::string errorPath = outputPath + ".err";
  int spawnError = 0;
  pid_t pid = corral::testing::spawnProcess(args, outputPath, errorPath,
                                            corral::testing::OutputMode::Truncate, &spawnError);
  ProcessResult result;
  if (pid < 0) {
    result.exitCode = -2;
    result.output = fmt::format("posix_spawn({}): {}", args[0], std::strerror(spawnError));
    return result;
  }
  std::optional<int> waited = corral::testing::waitWithDeadline(pid, deadline);
  bool late = !waited;
  int status = waited.value_or(0);
  result.exitCode = late ? -3 : WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  result.out = readFile(outputPath);
  result.err = readFile(errorPath);
  result.output = result.out + result.err + (late ? "\n(killed: did not finish in time)" : "");
  return result;
}

struct Reply {
  int status = 0;
  json body;
  std::string raw;
};

// One HTTP exchange through the project's own client (a fresh connection each time).
Reply call(const std::string& socket, const std::string& method, const std::string& target,
           const std::string& body = {}) {
  api::Client client(socket, 10s);
  auto response = client.send({method, target, body});
  if (!response) return {.status = 0, .body = json(nullptr), .raw = response.error().message()};
  json parsed = json::parse(response->body, nullptr, false);
  return {.status = response->status, .body = parsed, .raw = response->body};
}

std::string describe(const Reply& reply) {
  return fmt::format("HTTP {}: {}", reply.status, reply.raw);
}

// A corrald child process in the foreground, its output in a file.
class Daemon {
 public:
  Daemon(std::string socket, std::string stateDir, std::string logPath)
      : socket_(std::move(socket)), stateDir_(std::move(stateDir)), logPath_(std::move(logPath)) {}
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  ~Daemon() { stop(); }

  // Ends corrald as a service manager would: SIGTERM, on which it stops the dnsmasqs and HAProxies it runs
  // (they outlive a SIGKILL by design, for the next corrald of the same prefix to reconcile, and no next
  // one comes after a test); SIGKILL if it has not ended within 10 s.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    corral::testing::waitWithDeadline(pid_, 10s);
    pid_ = 0;
  }

  // Starts and waits until GET /v1/info answers; the gtest failure says why if it does not.
  ::testing::AssertionResult start(std::vector<std::string> extraArgs = {}) {
    std::vector<std::string> args = {
        CORRALD_PATH,  "--foreground", "--socket",          socket_,
        "--state-dir", stateDir_,      "--read-timeout-ms", std::to_string(kReadTimeout.count())};
    for (std::string& arg : corral::testing::testNetworkArgs()) args.push_back(std::move(arg));
    // The load balancers' HAProxy files go with the state (not /run/corral/lb/PREFIX, which would stay).
    if (std::find(extraArgs.begin(), extraArgs.end(), "--lb-dir") == extraArgs.end())
      args.insert(args.end(), {"--lb-dir", stateDir_ + "/lb"});
    args.insert(args.end(), extraArgs.begin(), extraArgs.end());
    int rc = 0;
    pid_ = corral::testing::spawnProcess(args, logPath_, {}, corral::testing::OutputMode::Append, &rc);
    if (pid_ < 0) {
      pid_ = 0;
      return ::testing::AssertionFailure() << "posix_spawn(" << CORRALD_PATH << "): " << std::strerror(rc);
    }
    auto until = Clock::now() + 15s;
    while (Clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = 0;
        return ::testing::AssertionFailure() << "corrald exited during startup:\n" << readFile(logPath_);
      }
      Reply info = call(socket_, "GET", "/v1/info");
      if (info.status == 200) return ::testing::AssertionSuccess();
      std::this_thread::sleep_for(20ms);
    }
    return ::testing::AssertionFailure() << "corrald did not answer GET /v1/info within 15 s:\n"
                                         << readFile(logPath_);
  }

  // Sends `signal` and reaps; returns the exit code (-1 when the signal killed it).
  int kill(int signal) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, signal);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  bool running() const { return pid_ > 0; }
  const std::string& socket() const { return socket_; }
  std::string log() const { return readFile(logPath_); }

 private:
  std::string socket_;
  std::string stateDir_;
  std::string logPath_;
  pid_t pid_ = 0;
};

class CorraldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    socket_ = dir_.path() + "/s.sock";
    stateDir_ = dir_.path() + "/state";
    daemon_ = std::make_unique<Daemon>(socket_, stateDir_, dir_.path() + "/corrald.out");
    ASSERT_TRUE(daemon_->start());
  }
  // The daemon ends with SIGTERM and takes its VPCs' dnsmasqs and HAProxies with it. Its resolvers' files
  // are in the default --resolver-dir (this test process's network prefix under /run/corral/resolvers: the
  // temp dir is private, and dnsmasq runs as nobody), removed here.
  void TearDown() override {
    daemon_.reset();
    const std::string resolvers = "/run/corral/resolvers/" + corral::testing::testNetnsPrefix();
    EXPECT_EQ(corral::testing::join(corral::testing::processesNamingAny({"dnsmasq"}, resolvers + "/")), "");
    EXPECT_EQ(corral::testing::join(corral::testing::processesNamingAny({"haproxy"}, dir_.path() + "/")), "");
    std::error_code ignored;
    std::filesystem::remove_all(resolvers, ignored);
  }

  Reply get(const std::string& target) { return call(socket_, "GET", target); }
  Reply post(const std::string& target, const json& body) {
    return call(socket_, "POST", target, body.dump());
  }
  Reply patch(const std::string& target, const json& body) {
    return call(socket_, "PATCH", target, body.dump());
  }
  Reply del(const std::string& target) { return call(socket_, "DELETE", target); }

  void restart() {
    daemon_ = std::make_unique<Daemon>(socket_, stateDir_, dir_.path() + "/corrald.out");
    ASSERT_TRUE(daemon_->start());
  }

  TempDir dir_;
  std::string socket_;
  std::string stateDir_;
  std::unique_ptr<Daemon> daemon_;
};

// The error body is exactly {"error": {"kind", "message"[, "field"]}}.
::testing::AssertionResult isError(const Reply& reply, int status, const std::string& kind,
                                   const std::string& field = {}) {
  if (reply.status != status)
    return ::testing::AssertionFailure() << "want " << status << ", got " << describe(reply);
  if (!reply.body.is_object() || reply.body.size() != 1 || !reply.body.contains("error")) {
    return ::testing::AssertionFailure() << "not an error body: " << describe(reply);
  }
  const json& error = reply.body["error"];
  if (error.value("kind", "") != kind) return ::testing::AssertionFailure() << "kind: " << describe(reply);
  if (!error.contains("message") || !error["message"].is_string() ||
      error["message"].get<std::string>().empty()) {
    return ::testing::AssertionFailure() << "message: " << describe(reply);
  }
  for (const auto& [key, value] : error.items()) {
    if (key != "kind" && key != "message" && key != "field") {
      return ::testing::AssertionFailure() << "unexpected key " << key << ": " << describe(reply);
    }
  }
  if (!field.empty() && error.value("field", "") != field) {
    return ::testing::AssertionFailure() << "want field " << field << ": " << describe(reply);
  }
  return ::testing::AssertionSuccess();
}

// ---- Raw sockets, for what a well-behaved client would never send ----

UniqueFd connectRaw(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof address.sun_path - 1);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0)
    return UniqueFd();
  return fd;
}

bool sendAll(int fd, std::string_view text) {
  while (!text.empty()) {
    ssize_t n = ::send(fd, text.data(), text.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    text.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads until the peer closes or `deadline` passes; `closed` tells which.
std::string readUntilClosed(int fd, std::chrono::milliseconds deadline, bool& closed) {
  std::string text;
  closed = false;
  auto until = Clock::now() + deadline;
  while (Clock::now() < until) {
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - Clock::now()).count();
    if (::poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 1))) <= 0) continue;
    char buffer[4096];
    ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) {
      closed = true;
      break;
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

// ---- Info ----

// `host` is corrald's own view (its namespace ids and kernel), which `corral compare` sets the ids seen
// inside instances against, wherever the CLI itself runs.
TEST_F(CorraldTest, InfoReportsTheDaemonsNamespaceIds) {
  Reply info = get("/v1/info");
  ASSERT_EQ(info.status, 200) << describe(info);
  const json& host = info.body["host"];
  ASSERT_TRUE(host.is_object()) << info.body.dump();
  utsname names{};
  ASSERT_EQ(::uname(&names), 0);
  EXPECT_EQ(host["kernel_release"], names.release);
  const int pid = info.body["pid"].get<int>();
  ASSERT_EQ(host["namespaces"].size(), 9u) << host.dump();
  for (const char* ns : {"cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "user", "uts"}) {
    struct stat st {};
    ASSERT_EQ(::stat(fmt::format("/proc/{}/ns/{}", pid, ns).c_str(), &st), 0) << ns;
    EXPECT_EQ(host["namespaces"][ns], static_cast<uint64_t>(st.st_ino)) << ns;
  }
}

TEST_F(CorraldTest, InfoDescribesDaemonHostAndState) {
  Reply info = get("/v1/info");
  ASSERT_EQ(info.status, 200) << describe(info);
  EXPECT_EQ(info.body["version"], CORRAL_VERSION);
  EXPECT_EQ(info.body["api"], "v1");
  EXPECT_FALSE(info.body["kernel"].get<std::string>().empty());
  EXPECT_FALSE(info.body["hostname"].get<std::string>().empty());
  EXPECT_FALSE(info.body["cgroup_mode"].get<std::string>().empty());
  const json& kvm = info.body["kvm"];
  EXPECT_EQ(kvm["device"], "/dev/kvm");
  EXPECT_EQ(kvm["present"], std::filesystem::exists("/dev/kvm"));
  EXPECT_TRUE(kvm["accessible"].is_boolean());
  EXPECT_TRUE(kvm["usable"].is_boolean());
  EXPECT_TRUE(kvm["api_version"].is_null() || kvm["api_version"].is_number_integer());
  EXPECT_FALSE(kvm["reason"].get<std::string>().empty());
  if (kvm["usable"] == true) {
    EXPECT_EQ(kvm["api_version"], 12);
  }
  EXPECT_EQ(info.body["state"]["path"], stateDir_ + "/state.db");
  EXPECT_EQ(info.body["state"]["schema_version"], corral::daemon::kSchemaVersion);
  for (const char* collection : {"vpcs", "subnets", "route-tables", "internet-gateways", "nat-gateways",
                                 "security-groups", "network-acls"}) {
    EXPECT_EQ(info.body["counts"][collection], 0) << collection;
  }
  // The response is JSON with a trailing newline, as promised to shell users.
  EXPECT_EQ(info.raw.back(), '\n');

  // The state directory is private and the socket group-accessible.
  struct stat st {};
  ASSERT_EQ(::stat(stateDir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);
}

// ---- CRUD over HTTP ----

TEST_F(CorraldTest, FullCrudOfEveryKind) {
  // VPC
  Reply vpc = post("/v1/vpcs", {{"name", "prod"}, {"cidr", "10.0.0.0/16"}});
  ASSERT_EQ(vpc.status, 201) << describe(vpc);
  EXPECT_EQ(vpc.body["name"], "prod");
  EXPECT_EQ(vpc.body["main_route_table"], "prod-main");
  EXPECT_TRUE(isError(post("/v1/vpcs", {{"name", "prod"}, {"cidr", "10.1.0.0/16"}}), 409, "conflict"));
  EXPECT_TRUE(
      isError(post("/v1/vpcs", {{"name", "wide"}, {"cidr", "10.0.0.0/8"}}), 400, "invalid_argument", "cidr"));
  EXPECT_EQ(get("/v1/vpcs/prod").body, vpc.body);
  Reply vpcs = get("/v1/vpcs");
  ASSERT_EQ(vpcs.status, 200);
  ASSERT_EQ(vpcs.body["vpcs"].size(), 1u);

  // Subnets
  Reply web = post("/v1/subnets", {{"name", "web"}, {"vpc", "prod"}, {"cidr", "10.0.1.0/24"}});
  ASSERT_EQ(web.status, 201) << describe(web);
  EXPECT_EQ(web.body["route_table"], "prod-main");
  EXPECT_EQ(web.body["network_acl"], "prod-default");
  EXPECT_EQ(web.body["usable"], 251);
  Reply app = post("/v1/subnets", {{"name", "app"}, {"vpc", "prod"}, {"cidr", "10.0.2.0/24"}});
  ASSERT_EQ(app.status, 201) << describe(app);
  EXPECT_TRUE(isError(post("/v1/subnets", {{"name", "bad"}, {"vpc", "prod"}, {"cidr", "10.0.1.300/24"}}), 400,
                      "invalid_argument", "cidr"));
  EXPECT_TRUE(isError(post("/v1/subnets", {{"name", "lost"}, {"vpc", "nope"}, {"cidr", "10.0.9.0/24"}}), 404,
                      "not_found"));
  EXPECT_TRUE(isError(post("/v1/subnets", {{"name", "dup"}, {"vpc", "prod"}, {"cidr", "10.0.1.0/25"}}), 409,
                      "conflict"));
  EXPECT_EQ(get("/v1/subnets?vpc=prod").body["subnets"].size(), 2u);
  EXPECT_EQ(get("/v1/subnets?vpc=other").body["subnets"].size(), 0u);

  // Route tables, gateways and routes
  Reply rt = post("/v1/route-tables", {{"name", "public"}, {"vpc", "prod"}});
  ASSERT_EQ(rt.status, 201) << describe(rt);
  EXPECT_EQ(rt.body["main"], false);
  Reply igw = post("/v1/internet-gateways", {{"name", "igw"}, {"vpc", "prod"}});
  ASSERT_EQ(igw.status, 201) << describe(igw);
  Reply route = post("/v1/route-tables/public/routes",
                     {{"destination", "0.0.0.0/0"}, {"target_type", "internet_gateway"}, {"target", "igw"}});
  ASSERT_EQ(route.status, 201) << describe(route);
  EXPECT_EQ(route.body["name"], "public");
  EXPECT_EQ(route.body["routes"].size(), 2u);
  EXPECT_TRUE(
      isError(post("/v1/route-tables/public/routes",
                   {{"destination", "0.0.0.0/0"}, {"target_type", "internet_gateway"}, {"target", "nope"}}),
              404, "not_found"));
  Reply attached = patch("/v1/subnets/web", {{"route_table", "public"}});
  ASSERT_EQ(attached.status, 200) << describe(attached);
  EXPECT_EQ(attached.body["route_table"], "public");
  EXPECT_EQ(attached.body["reachability"], "public");
  EXPECT_EQ(get("/v1/route-tables/public").body["subnets"], json::array({"web"}));
  EXPECT_TRUE(isError(del("/v1/route-tables/public"), 409, "conflict"));  // web uses it

  Reply nat = post("/v1/nat-gateways", {{"name", "nat"}, {"subnet", "web"}});
  ASSERT_EQ(nat.status, 201) << describe(nat);
  EXPECT_EQ(nat.body["vpc"], "prod");
  Reply natRoute = post("/v1/route-tables/prod-main/routes",
                        {{"destination", "0.0.0.0/0"}, {"target_type", "nat_gateway"}, {"target", "nat"}});
  ASSERT_EQ(natRoute.status, 201) << describe(natRoute);
  EXPECT_EQ(get("/v1/subnets/app").body["reachability"], "private (NAT)");
  Reply unrouted = del("/v1/route-tables/prod-main/routes/0.0.0.0/0");
  ASSERT_EQ(unrouted.status, 200) << describe(unrouted);
  EXPECT_EQ(unrouted.body["routes"].size(), 1u);
  EXPECT_TRUE(isError(del("/v1/route-tables/prod-main/routes/0.0.0.0/0"), 404, "not_found"));

  // Security groups and rules
  Reply sg =
      post("/v1/security-groups", {{"name", "web-sg"}, {"vpc", "prod"}, {"description", "web servers"}});
  ASSERT_EQ(sg.status, 201) << describe(sg);
  Reply sgRule = post("/v1/security-groups/web-sg/rules",
                      {{"protocol", "tcp"}, {"from_port", 443}, {"to_port", 443}, {"cidr", "0.0.0.0/0"}});
  ASSERT_EQ(sgRule.status, 201) << describe(sgRule);
  ASSERT_FALSE(sgRule.body["rules"].empty());
  int64_t ruleId = sgRule.body["rules"].back()["id"].get<int64_t>();
  EXPECT_EQ(sgRule.body["rules"].back()["from_port"], 443);
  Reply badPort =
      post("/v1/security-groups/web-sg/rules",
           {{"protocol", "tcp"}, {"from_port", 70000}, {"to_port", 70000}, {"cidr", "0.0.0.0/0"}});
  EXPECT_TRUE(isError(badPort, 400, "invalid_argument"));
  EXPECT_NE(badPort.body["error"].value("field", "").find("port"), std::string::npos) << describe(badPort);
  Reply sgRuleGone = del(fmt::format("/v1/security-groups/web-sg/rules/{}", ruleId));
  ASSERT_EQ(sgRuleGone.status, 200) << describe(sgRuleGone);
  EXPECT_EQ(sgRuleGone.body["rules"].size(), sgRule.body["rules"].size() - 1);
  EXPECT_TRUE(isError(del(fmt::format("/v1/security-groups/web-sg/rules/{}", ruleId)), 404, "not_found"));

  // Network ACLs and rules
  Reply acl = post("/v1/network-acls", {{"name", "strict"}, {"vpc", "prod"}});
  ASSERT_EQ(acl.status, 201) << describe(acl);
  Reply aclRule = post("/v1/network-acls/strict/rules", {{"number", 100},
                                                         {"direction", "ingress"},
                                                         {"action", "allow"},
                                                         {"protocol", "tcp"},
                                                         {"from_port", 22},
                                                         {"to_port", 22},
                                                         {"cidr", "10.0.0.0/16"}});
  ASSERT_EQ(aclRule.status, 201) << describe(aclRule);
  EXPECT_TRUE(isError(post("/v1/network-acls/strict/rules",
                           {{"number", 100}, {"action", "deny"}, {"protocol", "all"}, {"cidr", "0.0.0.0/0"}}),
                      409, "conflict"));
  EXPECT_TRUE(
      isError(post("/v1/network-acls/strict/rules",
                   {{"number", 40000}, {"action", "deny"}, {"protocol", "all"}, {"cidr", "0.0.0.0/0"}}),
              400, "invalid_argument", "number"));
  Reply aclRuleGone = del("/v1/network-acls/strict/rules/ingress/100");
  ASSERT_EQ(aclRuleGone.status, 200) << describe(aclRuleGone);
  EXPECT_TRUE(isError(del("/v1/network-acls/strict/rules/ingress/100"), 404, "not_found"));

  // Every list answers under its collection name.
  for (const char* collection : {"vpcs", "subnets", "route-tables", "internet-gateways", "nat-gateways",
                                 "security-groups", "network-acls"}) {
    Reply list = get(fmt::format("/v1/{}", collection));
    ASSERT_EQ(list.status, 200) << describe(list);
    EXPECT_TRUE(list.body[collection].is_array()) << describe(list);
    EXPECT_FALSE(list.body[collection].empty()) << collection;
  }

  // The VPC refuses to go while it holds anything; then everything is deleted in dependency order.
  EXPECT_TRUE(isError(del("/v1/vpcs/prod"), 409, "conflict"));
  for (const std::string target :
       {"/v1/nat-gateways/nat", "/v1/subnets/web", "/v1/subnets/app", "/v1/route-tables/public",
        "/v1/internet-gateways/igw", "/v1/security-groups/web-sg", "/v1/network-acls/strict",
        "/v1/vpcs/prod"}) {
    Reply gone = del(target);
    ASSERT_EQ(gone.status, 200) << target << ": " << describe(gone);
    EXPECT_EQ(gone.body["deleted"]["name"], target.substr(target.rfind('/') + 1));
    EXPECT_TRUE(gone.body["deleted"]["kind"].is_string());
    EXPECT_TRUE(isError(get(target), 404, "not_found")) << target;
    EXPECT_TRUE(isError(del(target), 404, "not_found")) << target;
  }
  Reply info = get("/v1/info");
  for (const auto& [collection, count] : info.body["counts"].items()) EXPECT_EQ(count, 0) << collection;
}

// A load balancer's JSON without what its running HAProxy reports (state, process, health, counters): the
// model, which a refused change or a restart leaves as it was.
json balancerModel(json balancer) {
  for (const char* runtime : {"state", "process", "target_health"}) balancer.erase(runtime);
  for (json& listener : balancer["listeners"]) {
    for (json& rule : listener["firewall"]) rule.erase("denied");
  }
  return balancer;
}
json groupsModel(json groups) {
  for (json& group : groups["target_groups"]) group.erase("target_health");
  return groups;
}

// Load balancers and target groups through the API: created, shown, refused by field with nothing changed
// (a target group of another VPC, a rule an earlier one covers, a port out of range, an unknown instance),
// kept across a restart, and guarding the VPC objects they use.
TEST_F(CorraldTest, LoadBalancersAndTargetGroupsAreValidatedAndKept) {
  ASSERT_EQ(post("/v1/vpcs", {{"name", "prod"}, {"cidr", "10.0.0.0/16"}}).status, 201);
  ASSERT_EQ(post("/v1/vpcs", {{"name", "dev"}, {"cidr", "10.1.0.0/16"}}).status, 201);
  ASSERT_EQ(post("/v1/subnets",
                 {{"name", "a"}, {"vpc", "prod"}, {"cidr", "10.0.1.0/24"}, {"availability_zone", "az1"}})
                .status,
            201);
  ASSERT_EQ(post("/v1/subnets",
                 {{"name", "b"}, {"vpc", "prod"}, {"cidr", "10.0.2.0/24"}, {"availability_zone", "az2"}})
                .status,
            201);
  Reply web =
      post("/v1/target-groups", {{"name", "web"},
                                 {"vpc", "prod"},
                                 {"port", 8080},
                                 {"health_check", {{"path", "/health"}, {"interval", 5}, {"timeout", 2}}}});
  ASSERT_EQ(web.status, 201) << describe(web);
  EXPECT_EQ(web.body["health_check"]["healthy_threshold"], 3);
  EXPECT_EQ(web.body["target_health"], json::array());
  ASSERT_EQ(post("/v1/target-groups", {{"name", "api"}, {"vpc", "prod"}}).status, 201);
  ASSERT_EQ(post("/v1/target-groups", {{"name", "devtg"}, {"vpc", "dev"}}).status, 201);
  Reply front = post("/v1/load-balancers", {{"name", "front"}, {"vpc", "prod"}, {"subnets", {"a", "b"}}});
  ASSERT_EQ(front.status, 201) << describe(front);
  EXPECT_EQ(front.body["scheme"], "internet-facing");
  EXPECT_EQ(front.body["availability_zones"][1]["availability_zone"], "az2");
  Reply listener = post("/v1/load-balancers/front/listeners",
                        {{"port", 80}, {"default_action", {{"target_group", "web"}}}});
  ASSERT_EQ(listener.status, 201) << describe(listener);
  Reply rule = post("/v1/load-balancers/front/listeners/80/rules",
                    {{"priority", 10}, {"path", "/api/*"}, {"action", {{"target_group", "api"}}}});
  ASSERT_EQ(rule.status, 201) << describe(rule);
  Reply deny = post("/v1/load-balancers/front/listeners/80/firewall",
                    {{"part", "header"}, {"header", "User-Agent"}, {"pattern", "sqlmap"}});
  ASSERT_EQ(deny.status, 201) << describe(deny);
  EXPECT_EQ(deny.body["listeners"][0]["firewall"][0]["id"], 1);

  const json before = balancerModel(get("/v1/load-balancers/front").body);
  const json groupsBefore = groupsModel(get("/v1/target-groups").body);
  EXPECT_TRUE(isError(post("/v1/load-balancers/front/listeners",
                           {{"port", 8080}, {"default_action", {{"target_group", "devtg"}}}}),
                      400, "invalid_argument", "default_action.target_group"));
  EXPECT_TRUE(isError(post("/v1/load-balancers/front/listeners/80/rules",
                           {{"priority", 20}, {"path", "/api/v1/*"}, {"action", {{"target_group", "web"}}}}),
                      400, "invalid_argument", "priority"));
  EXPECT_TRUE(isError(post("/v1/load-balancers/front/listeners/80/rules",
                           {{"priority", 10}, {"path", "/other"}, {"action", {{"target_group", "web"}}}}),
                      409, "conflict"));
  EXPECT_TRUE(isError(post("/v1/load-balancers/front/listeners",
                           {{"port", 70000}, {"default_action", {{"target_group", "web"}}}}),
                      400, "invalid_argument", "port"));
  EXPECT_TRUE(isError(post("/v1/load-balancers/front/listeners",
                           {{"port", 80}, {"default_action", {{"target_group", "web"}}}}),
                      409, "conflict"));
  EXPECT_TRUE(isError(post("/v1/target-groups/web/register", {{"targets", {"ghost"}}}), 404, "not_found"));
  EXPECT_TRUE(isError(
      post("/v1/target-groups", {{"name", "x"}, {"vpc", "prod"}, {"health_check", {{"interval", 1}}}}), 400,
      "invalid_argument", "health_check.interval"));
  EXPECT_TRUE(
      isError(post("/v1/load-balancers", {{"name", "x"}, {"vpc", "prod"}, {"subnets", json::array()}}), 400,
              "invalid_argument", "subnets"));
  EXPECT_EQ(balancerModel(get("/v1/load-balancers/front").body), before) << "refused changes changed nothing";
  EXPECT_EQ(groupsModel(get("/v1/target-groups").body), groupsBefore);

  // What they use cannot go from under them.
  EXPECT_TRUE(isError(del("/v1/subnets/a"), 409, "conflict"));
  EXPECT_TRUE(isError(del("/v1/target-groups/web"), 409, "conflict"));
  EXPECT_TRUE(isError(del("/v1/vpcs/dev"), 409, "conflict")) << "it holds target group devtg";

  restart();
  EXPECT_EQ(balancerModel(get("/v1/load-balancers/front").body), before) << "kept across a restart";
  EXPECT_EQ(get("/v1/load-balancers?vpc=prod").body["load_balancers"].size(), 1u);
  EXPECT_EQ(get("/v1/load-balancers?vpc=dev").body["load_balancers"].size(), 0u);

  ASSERT_EQ(del("/v1/load-balancers/front").status, 200);
  for (const char* group : {"web", "api", "devtg"})
    ASSERT_EQ(del(fmt::format("/v1/target-groups/{}", group)).status, 200);
  EXPECT_EQ(del("/v1/vpcs/dev").status, 200);
  EXPECT_TRUE(isError(get("/v1/load-balancers/front"), 404, "not_found"));
}

TEST_F(CorraldTest, RequestErrorsNameTheProblem) {
  Reply badJson = call(socket_, "POST", "/v1/vpcs", "{\"name\": \"prod\",");
  EXPECT_TRUE(isError(badJson, 400, "invalid_argument", "body"));

  Reply unknownField = post("/v1/vpcs", {{"name", "prod"}, {"cidrr", "10.0.0.0/16"}});
  EXPECT_TRUE(isError(unknownField, 400, "invalid_argument", "cidrr"));
  EXPECT_NE(unknownField.body["error"]["message"].get<std::string>().find("cidrr"), std::string::npos);

  Reply missing = post("/v1/vpcs", {{"name", "prod"}});
  EXPECT_TRUE(isError(missing, 400, "invalid_argument", "cidr"));

  EXPECT_TRUE(isError(get("/v1/nothing-here"), 404, "not_found"));
  EXPECT_TRUE(isError(get("/v2/vpcs"), 404, "not_found"));
  EXPECT_TRUE(isError(get("/nothing"), 404, "not_found"));
  EXPECT_TRUE(isError(call(socket_, "POST", "/", "{}"), 404, "not_found")) << "the page is only for GET";
  EXPECT_TRUE(isError(call(socket_, "PUT", "/v1/vpcs", "{}"), 400, "invalid_argument", "method"));

  // Nothing was created by any of that.
  EXPECT_TRUE(get("/v1/vpcs").body["vpcs"].empty());
}

// A field of the wrong JSON type deep in a body is refused by name; reading it as text must not throw
// (nlohmann's type_error would end corrald, which catches nothing around a request).
TEST_F(CorraldTest, AComparisonSampleWhoseKindIsNotTextIs400AndTheDaemonLives) {
  json comparison = {{"runs", 1},
                     {"summary", {{"container", json::object()}, {"vm", json::object()}}},
                     {"samples", {{{"name", "c-1"}, {"kind", 5}}}}};
  EXPECT_TRUE(isError(post("/v1/comparisons", comparison), 400, "invalid_argument", "samples[0].kind"));
  comparison["samples"][0]["kind"] = "lxc";
  Reply unknown = post("/v1/comparisons", comparison);
  EXPECT_TRUE(isError(unknown, 400, "invalid_argument", "samples[0].kind"));
  EXPECT_NE(unknown.body["error"]["message"].get<std::string>().find("\"lxc\" is not a kind"),
            std::string::npos)
      << unknown.body.dump();
  EXPECT_EQ(get("/v1/info").status, 200);
  EXPECT_TRUE(get("/v1/comparisons").body["comparisons"].empty());
}

TEST_F(CorraldTest, BodyTooLargeIs413) {
  std::string huge =
      fmt::format("{{\"name\": \"prod\", \"cidr\": \"{}\"}}", std::string(api::kMaxBodyBytes + 10, 'x'));
  Reply reply = call(socket_, "POST", "/v1/vpcs", huge);
  EXPECT_TRUE(isError(reply, 413, "invalid_argument", "body"));
  // The daemon is still fine.
  EXPECT_EQ(get("/v1/info").status, 200);
}

TEST_F(CorraldTest, MalformedHttpGets400ThenClose) {
  UniqueFd fd = connectRaw(socket_);
  ASSERT_TRUE(fd);
  ASSERT_TRUE(sendAll(fd.get(), "THIS IS NOT HTTP\r\n\r\n"));
  bool closed = false;
  std::string text = readUntilClosed(fd.get(), 5s, closed);
  EXPECT_TRUE(closed);
  ASSERT_TRUE(text.starts_with("HTTP/1.1 400")) << text;
  EXPECT_NE(text.find("application/json"), std::string::npos) << text;
  json body = json::parse(text.substr(text.find("\r\n\r\n") + 4), nullptr, false);
  EXPECT_EQ(body["error"]["kind"], "invalid_argument") << text;
}

TEST_F(CorraldTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  UniqueFd fd = connectRaw(socket_);
  ASSERT_TRUE(fd);
  std::string create = R"({"name":"prod","cidr":"10.0.0.0/16"})";
  ASSERT_TRUE(sendAll(
      fd.get(), std::string("GET /v1/info HTTP/1.1\r\nHost: x\r\n\r\n") +
                    fmt::format("POST /v1/vpcs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                "Content-Length: {}\r\n\r\n{}",
                                create.size(), create) +
                    "GET /v1/vpcs/prod HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
  bool closed = false;
  std::string text = readUntilClosed(fd.get(), 5s, closed);
  EXPECT_TRUE(closed);
  size_t first = text.find("HTTP/1.1 200");
  size_t second = text.find("HTTP/1.1 201", first);
  size_t third = text.find("HTTP/1.1 200", second);
  EXPECT_NE(first, std::string::npos) << text;
  EXPECT_NE(second, std::string::npos) << text;
  EXPECT_NE(third, std::string::npos) << text;
}

// ---- Many and misbehaving clients ----

TEST_F(CorraldTest, FiftyClientsAtOnceAllSucceed) {
  constexpr int kClients = 50;
  std::vector<std::thread> clients;
  std::vector<Reply> replies(kClients);
  std::atomic<bool> go{false};
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&, i] {
      while (!go) std::this_thread::yield();
      replies[i] = i % 2 == 0 ? call(socket_, "POST", "/v1/vpcs",
                                     json{{"name", fmt::format("vpc-{}", i)}, {"cidr", "10.0.0.0/16"}}.dump())
                              : call(socket_, "GET", "/v1/info");
    });
  }
  go = true;
  for (auto& client : clients) client.join();
  for (int i = 0; i < kClients; ++i)
    EXPECT_EQ(replies[i].status, i % 2 == 0 ? 201 : 200) << describe(replies[i]);
  EXPECT_EQ(get("/v1/vpcs").body["vpcs"].size(), static_cast<size_t>(kClients / 2));
}

TEST_F(CorraldTest, ASlowClientBlocksNobodyAndIsDropped) {
  UniqueFd silent = connectRaw(socket_);
  UniqueFd slow = connectRaw(socket_);
  ASSERT_TRUE(silent);
  ASSERT_TRUE(slow);
  auto started = Clock::now();
  ASSERT_TRUE(sendAll(slow.get(), "POST /v1/vpcs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"na"));

  for (int i = 0; i < 5; ++i) {
    auto before = Clock::now();
    Reply info = get("/v1/info");
    EXPECT_EQ(info.status, 200) << describe(info);
    // Far below the read timeout: nobody waited for the slow client.
    EXPECT_LT(Clock::now() - before, 500ms);
  }

  bool closed = false;
  readUntilClosed(slow.get(), kReadTimeout + 3s, closed);
  EXPECT_TRUE(closed) << "the slow client was not dropped";
  EXPECT_GE(Clock::now() - started, kReadTimeout - 100ms);
  readUntilClosed(silent.get(), 3s, closed);
  EXPECT_TRUE(closed) << "the silent client was not dropped";
  // Its half-sent VPC was never created.
  EXPECT_TRUE(get("/v1/vpcs").body["vpcs"].empty());
}

// ---- Lifecycle ----

TEST_F(CorraldTest, StateSurvivesSigtermAndTheSocketIsRemoved) {
  ASSERT_EQ(post("/v1/vpcs", {{"name", "prod"}, {"cidr", "10.0.0.0/16"}}).status, 201);
  ASSERT_EQ(post("/v1/subnets", {{"name", "web"}, {"vpc", "prod"}, {"cidr", "10.0.1.0/24"}}).status, 201);
  json before = get("/v1/subnets/web").body;

  EXPECT_EQ(daemon_->kill(SIGTERM), 0) << daemon_->log();
  EXPECT_FALSE(std::filesystem::exists(socket_)) << "socket file left behind after SIGTERM";
  EXPECT_EQ(call(socket_, "GET", "/v1/info").status, 0);

  restart();
  EXPECT_EQ(get("/v1/subnets/web").body, before);
  EXPECT_EQ(get("/v1/info").body["counts"]["vpcs"], 1);
  EXPECT_NE(daemon_->log().find("1 vpcs"), std::string::npos) << daemon_->log();
}

TEST_F(CorraldTest, ASecondDaemonOnTheSameSocketRefusesToStart) {
  TempDir other;
  ProcessResult second = runProgram(withTestNetwork({CORRALD_PATH, "--foreground", "--socket", socket_,
                                                     "--state-dir", other.path() + "/state"}),
                                    other.path() + "/out");
  EXPECT_NE(second.exitCode, 0);
  EXPECT_NE(second.output.find("already listening"), std::string::npos) << second.output;
  // The first one is untouched and its socket still there.
  EXPECT_EQ(get("/v1/info").status, 200);
}

TEST_F(CorraldTest, AStaleSocketFromACrashIsReplaced) {
  daemon_->kill(SIGKILL);
  ASSERT_TRUE(std::filesystem::exists(socket_))
      << "SIGKILL cannot clean up; the socket should still be there";
  restart();
  EXPECT_EQ(get("/v1/info").status, 200);
}

// Every object present must be whole: each VPC with its main table, default ACL and default group, and every
// reference between objects resolving.
void expectConsistent(const std::string& socket) {
  auto list = [&](const std::string& collection) {
    Reply reply = call(socket, "GET", "/v1/" + collection);
    EXPECT_EQ(reply.status, 200) << describe(reply);
    return reply.body[collection];
  };
  json vpcs = list("vpcs"), subnets = list("subnets"), tables = list("route-tables"),
       groups = list("security-groups"), acls = list("network-acls");
  std::set<std::string> vpcNames, tableNames, aclNames;
  for (const json& v : vpcs) vpcNames.insert(v["name"]);
  for (const json& t : tables) tableNames.insert(t["name"]);
  for (const json& a : acls) aclNames.insert(a["name"]);
  for (const json& v : vpcs) {
    std::string name = v["name"];
    ASSERT_EQ(v["main_route_table"], name + "-main") << v.dump();
    ASSERT_EQ(v["default_network_acl"], name + "-default") << v.dump();
    ASSERT_EQ(v["default_security_group"], name + "-default") << v.dump();
    Reply table = call(socket, "GET", "/v1/route-tables/" + name + "-main");
    ASSERT_EQ(table.status, 200) << describe(table);
    EXPECT_EQ(table.body["main"], true);
    EXPECT_EQ(table.body["vpc"], name);
    EXPECT_FALSE(table.body["routes"].empty());
  }
  for (const json& s : subnets) {
    EXPECT_TRUE(vpcNames.contains(s["vpc"])) << s.dump();
    EXPECT_TRUE(tableNames.contains(s["route_table"])) << s.dump();
    EXPECT_TRUE(aclNames.contains(s["network_acl"])) << s.dump();
  }
  for (const json& collection : {tables, groups, acls}) {
    for (const json& object : collection) EXPECT_TRUE(vpcNames.contains(object["vpc"])) << object.dump();
  }
  Reply info = call(socket, "GET", "/v1/info");
  EXPECT_EQ(info.body["counts"]["vpcs"], vpcs.size());
  EXPECT_EQ(info.body["counts"]["route-tables"], tables.size());
  EXPECT_EQ(info.body["counts"]["security-groups"], groups.size());
  EXPECT_EQ(info.body["counts"]["subnets"], subnets.size());
}

TEST_F(CorraldTest, SigkillDuringConcurrentWritesLosesNothingAcknowledged) {
  constexpr int kThreads = 4;
  constexpr int kRounds = 3;
  std::mt19937 random(12345);
  // What each round's writers were told succeeded: target path of the object → expected JSON name.
  std::vector<std::string> acknowledged;
  std::mutex acknowledgedMutex;

  for (int round = 0; round < kRounds; ++round) {
    size_t before = acknowledged.size();
    std::atomic<bool> killed{false};
    std::vector<std::thread> writers;
    for (int t = 0; t < kThreads; ++t) {
      writers.emplace_back([&, t, round] {
        for (int i = 0;; ++i) {
          std::string vpc = fmt::format("r{}-t{}-{}", round, t, i);
          Reply made = call(socket_, "POST", "/v1/vpcs", json{{"name", vpc}, {"cidr", "10.0.0.0/16"}}.dump());
          if (made.status == 201) {
            std::lock_guard lock(acknowledgedMutex);
            acknowledged.push_back("/v1/vpcs/" + vpc);
          } else if (killed) {
            return;
          } else {
            ADD_FAILURE() << "before the kill: " << describe(made);
            return;
          }
          Reply subnet = call(socket_, "POST", "/v1/subnets",
                              json{{"name", vpc + "-a"}, {"vpc", vpc}, {"cidr", "10.0.1.0/24"}}.dump());
          if (subnet.status == 201) {
            std::lock_guard lock(acknowledgedMutex);
            acknowledged.push_back("/v1/subnets/" + vpc + "-a");
          } else if (killed) {
            return;
          }
          Reply group =
              call(socket_, "POST", "/v1/security-groups", json{{"name", vpc + "-sg"}, {"vpc", vpc}}.dump());
          if (group.status == 201) {
            std::lock_guard lock(acknowledgedMutex);
            acknowledged.push_back("/v1/security-groups/" + vpc + "-sg");
          } else if (killed) {
            return;
          }
        }
      });
    }
    // The kill lands while writes are in flight: after the round's first acknowledgement (a sanitized
    // corrald on a loaded host can take longer than a fixed sleep to answer one), then a random moment.
    EXPECT_TRUE(testing::waitUntil(
        [&] {
          std::lock_guard lock(acknowledgedMutex);
          return acknowledged.size() > before;
        },
        std::chrono::seconds(30), fmt::format("round {}'s first acknowledged write", round)));
    std::this_thread::sleep_for(std::chrono::milliseconds(random() % 250));
    killed = true;
    daemon_->kill(SIGKILL);
    for (auto& writer : writers) writer.join();

    restart();
    size_t count = 0;
    {
      std::lock_guard lock(acknowledgedMutex);
      count = acknowledged.size();
      for (const std::string& target : acknowledged) {
        Reply found = get(target);
        EXPECT_EQ(found.status, 200) << "acknowledged but lost after SIGKILL: " << target;
      }
    }
    EXPECT_GT(count, before) << "round " << round << " acknowledged nothing before the kill";
    expectConsistent(socket_);
  }
}

TEST(CorraldStartup, RefusesAnUnwritableStateDirectory) {
  TempDir dir;
  ProcessResult result = runProgram(
      {CORRALD_PATH, "--foreground", "--socket", dir.path() + "/s.sock", "--state-dir", "/proc/corral-state"},
      dir.path() + "/out");
  EXPECT_NE(result.exitCode, 0);
  EXPECT_NE(result.output.find("/proc/corral-state"), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/s.sock"));
}

TEST(CorraldStartup, RefusesADatabaseFromANewerCorral) {
  TempDir dir;
  std::filesystem::create_directories(dir.path() + "/state");
  ProcessResult made =
      runProgram({"/usr/bin/sqlite3", dir.path() + "/state/state.db", "PRAGMA user_version = 99;"},
                 dir.path() + "/sqlite.out");
  ASSERT_EQ(made.exitCode, 0) << "the sqlite3 CLI is needed (scripts/install-deps installs it): "
                              << made.output;
  ProcessResult result = runProgram({CORRALD_PATH, "--foreground", "--socket", dir.path() + "/s.sock",
                                     "--state-dir", dir.path() + "/state"},
                                    dir.path() + "/out");
  EXPECT_NE(result.exitCode, 0);
  EXPECT_NE(result.output.find("99"), std::string::npos) << result.output;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/s.sock"));
}

TEST(CorraldStartup, RefusesBadOptions) {
  TempDir dir;
  ProcessResult result = runProgram({CORRALD_PATH, "--foreground", "--no-such-option"}, dir.path() + "/out");
  EXPECT_NE(result.exitCode, 0);
  EXPECT_NE(result.output.find("no-such-option"), std::string::npos) << result.output;
  result = runProgram({CORRALD_PATH, "--foreground", "--read-timeout-ms", "0", "--socket",
                       dir.path() + "/s.sock", "--state-dir", dir.path() + "/state"},
                      dir.path() + "/out");
  EXPECT_NE(result.exitCode, 0);
  EXPECT_NE(result.output.find("read-timeout-ms"), std::string::npos) << result.output;
  result = runProgram({CORRALD_PATH, "--foreground", "--flow-log-buffer", "100", "--socket",
                       dir.path() + "/s.sock", "--state-dir", dir.path() + "/state"},
                      dir.path() + "/out");
  EXPECT_NE(result.exitCode, 0);
  EXPECT_NE(result.output.find("flow-log-buffer"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("give 4096 to 268435456 bytes"), std::string::npos) << result.output;
  result = runProgram({CORRALD_PATH, "--version"}, dir.path() + "/out");
  EXPECT_EQ(result.exitCode, 0);
  EXPECT_NE(result.output.find(CORRAL_VERSION), std::string::npos) << result.output;
}

// Without --foreground the launcher returns only once the socket listens, so the next command can use it.
TEST(CorraldStartup, DaemonisesAndIsReadyWhenTheLauncherReturns) {
  TempDir dir;
  std::string socket = dir.path() + "/run/s.sock";  // the parent directory is created too
  ProcessResult launched =
      runProgram(withTestNetwork({CORRALD_PATH, "--socket", socket, "--state-dir", dir.path() + "/state"}),
                 dir.path() + "/out");
  ASSERT_EQ(launched.exitCode, 0) << launched.output;
  Reply info = call(socket, "GET", "/v1/info");
  ASSERT_EQ(info.status, 200) << describe(info);
  pid_t pid = info.body["pid"].get<pid_t>();
  ASSERT_GT(pid, 1);
  EXPECT_NE(readFile(dir.path() + "/state/corrald.log").find("listening on"), std::string::npos);

  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  auto until = Clock::now() + 10s;
  while (std::filesystem::exists(socket) && Clock::now() < until) std::this_thread::sleep_for(20ms);
  EXPECT_FALSE(std::filesystem::exists(socket));
  while (::kill(pid, 0) == 0 && Clock::now() < until) std::this_thread::sleep_for(20ms);
  EXPECT_NE(::kill(pid, 0), 0) << "corrald did not exit on SIGTERM";

  // A detached startup failure still reaches the launcher's stderr with a non-zero exit.
  ProcessResult failed = runProgram({CORRALD_PATH, "--socket", socket, "--state-dir", "/proc/corral-state"},
                                    dir.path() + "/out2");
  EXPECT_NE(failed.exitCode, 0);
  EXPECT_NE(failed.output.find("/proc/corral-state"), std::string::npos) << failed.output;
}

// --socket-group: the socket's group, whose members may use corral without root (the Debian package's
// "corral" group is the default); a group that does not exist is refused before anything is made.
// --pid-file (the init-less way to run it): the daemon's pid once the socket listens, gone when it stops.
TEST(CorraldStartup, TheSocketGroupAndThePidFile) {
  TempDir dir;
  struct group* daemonGroup = ::getgrnam("daemon");  // in Debian's base-passwd, gid 1
  ASSERT_NE(daemonGroup, nullptr);
  const gid_t wanted = daemonGroup->gr_gid;
  std::string socket = dir.path() + "/run/s.sock";
  ProcessResult refused = runProgram({CORRALD_PATH, "--socket", socket, "--state-dir", dir.path() + "/state",
                                      "--socket-group", "corral-no-such-group"},
                                     dir.path() + "/refused.out");
  EXPECT_EQ(refused.exitCode, 2);
  EXPECT_NE(refused.output.find("--socket-group: no group \"corral-no-such-group\""), std::string::npos)
      << refused.output;
  EXPECT_FALSE(std::filesystem::exists(dir.path() + "/state"));
  EXPECT_FALSE(std::filesystem::exists(socket));

  const std::string pidFile = dir.path() + "/run/corrald.pid";
  ProcessResult launched =
      runProgram(withTestNetwork({CORRALD_PATH, "--socket", socket, "--state-dir", dir.path() + "/state",
                                  "--socket-group", "daemon", "--pid-file", pidFile}),
                 dir.path() + "/out");
  ASSERT_EQ(launched.exitCode, 0) << launched.output;
  struct stat st {};
  ASSERT_EQ(::stat(socket.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, wanted);
  EXPECT_EQ(st.st_mode & 0777, 0660u);
  Reply info = call(socket, "GET", "/v1/info");
  ASSERT_EQ(info.status, 200) << describe(info);
  pid_t pid = info.body["pid"].get<pid_t>();
  ASSERT_GT(pid, 1);
  EXPECT_EQ(readFile(pidFile), std::to_string(pid) + "\n");
  ASSERT_EQ(::kill(pid, SIGTERM), 0);
  auto until = Clock::now() + 10s;
  while (::kill(pid, 0) == 0 && Clock::now() < until) std::this_thread::sleep_for(20ms);
  EXPECT_NE(::kill(pid, 0), 0) << "corrald did not exit on SIGTERM";
  EXPECT_FALSE(std::filesystem::exists(pidFile));
}

// ---- The CLI against a real daemon ----

ProcessResult corral(const std::string& socket, const std::string& scratch, std::vector<std::string> args) {
  std::vector<std::string> argv = {CORRAL_CLI_PATH, "--socket", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return runProgram(argv, scratch + "/cli.out");
}

TEST_F(CorraldTest, CliCreatesAndListsVpcs) {
  ProcessResult created = corral(socket_, dir_.path(), {"vpc", "create", "prod", "--cidr", "10.0.0.0/16"});
  ASSERT_EQ(created.exitCode, 0) << created.output;
  EXPECT_NE(created.out.find("prod"), std::string::npos) << created.output;
  EXPECT_EQ(get("/v1/vpcs/prod").body["cidr"], "10.0.0.0/16");

  ProcessResult listed = corral(socket_, dir_.path(), {"vpc", "ls"});
  ASSERT_EQ(listed.exitCode, 0) << listed.output;
  EXPECT_NE(listed.out.find("prod"), std::string::npos) << listed.output;
  EXPECT_NE(listed.out.find("10.0.0.0/16"), std::string::npos) << listed.output;

  ProcessResult asJson = corral(socket_, dir_.path(), {"--json", "vpc", "ls"});
  ASSERT_EQ(asJson.exitCode, 0) << asJson.output;
  json body = json::parse(asJson.out, nullptr, false);
  ASSERT_FALSE(body.is_discarded()) << asJson.output;
  ASSERT_EQ(body["vpcs"].size(), 1u) << asJson.output;
  EXPECT_EQ(body["vpcs"][0]["name"], "prod");
}

TEST_F(CorraldTest, CliReportsABadCidrByField) {
  ASSERT_EQ(post("/v1/vpcs", {{"name", "prod"}, {"cidr", "10.0.0.0/16"}}).status, 201);
  ProcessResult refused =
      corral(socket_, dir_.path(), {"subnet", "create", "web", "--vpc", "prod", "--cidr", "10.0.1.1/24"});
  EXPECT_EQ(refused.exitCode, 1) << refused.output;
  EXPECT_NE(refused.err.find("cidr"), std::string::npos) << refused.output;
  EXPECT_TRUE(get("/v1/subnets").body["subnets"].empty());
}

TEST(CorralCli, SaysClearlyWhenNoDaemonRuns) {
  TempDir dir;
  ProcessResult result = corral(dir.path() + "/nobody.sock", dir.path(), {"info"});
  EXPECT_NE(result.exitCode, 0);
  EXPECT_NE(result.err.find("not running"), std::string::npos) << result.output;
  EXPECT_NE(result.err.find(dir.path() + "/nobody.sock"), std::string::npos) << result.output;
}

}  // namespace
}  // namespace corral
