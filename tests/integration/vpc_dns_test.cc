// The VPC resolver end to end through a real corrald (as root): real dnsmasq in the VPC's namespace at each
// subnet's .2, looked up with busybox nslookup from inside containers and a VM (TCG). "The internet" is
// the test's uplink namespace, where the test runs its own dnsmasq at 198.51.100.53 as the uplink's
// resolver (never a real outside resolver): it knows www.example.test. Covers names and reverse lookups in
// both kinds, names following instances, outside names forwarded only where the subnet reaches the
// internet, a killed resolver restarted, and nothing left after a SIGKILLed corrald or a deleted VPC.
// Then instance metadata at 169.254.169.254 (IMDSv2): a token first, each instance sees only itself, no
// token from a namespace nested behind an instance (TTL 1), and user data refused when malformed or too big.
#include <fcntl.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
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

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using corral::testing::readProcFile;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

// The uplink's resolver: a documentation address (RFC 5737) on the lo of the test's uplink namespace.
constexpr const char* kUplinkResolver = "198.51.100.53";
constexpr const char* kOutsideName = "www.example.test";
constexpr const char* kOutsideAddress = "203.0.113.77";

// dnsmasq processes whose command line names the test daemon's resolver directory.
std::vector<pid_t> ourDnsmasqs(const TestDaemon& d) {
  return corral::testing::processesNaming("dnsmasq", d.resolverDir() + "/");
}

bool running(pid_t pid) {
  const std::string text = readProcFile(fmt::format("/proc/{}/stat", pid));
  const size_t close = text.rfind(')');
  return close != std::string::npos && close + 2 < text.size() && text[close + 2] != 'Z';
}

// The uplink resolver's address on the uplink namespace's lo, and a dnsmasq there answering kOutsideName.
class UplinkResolver {
 public:
  bool start(std::string* why) {
    const std::string& uplink = corral::testing::testUplinkNetns();
    auto netlink = net::Netlink::open(uplink);
    if (!netlink) return *why = netlink.error().message(), false;
    auto lo = netlink->link("lo");
    if (!lo || !lo->has_value()) return *why = "no lo in the uplink namespace", false;
    const std::string wanted = std::string(kUplinkResolver) + "/32";
    if (std::find((*lo)->addresses.begin(), (*lo)->addresses.end(), wanted) == (*lo)->addresses.end()) {
      if (auto added = netlink->addAddress("lo", wanted); !added)
        return *why = added.error().message(), false;
    }
    if (auto up = netlink->setUp("lo"); !up) return *why = up.error().message(), false;
    char pattern[] = "/tmp/corral-uplink-dns-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) return *why = "mkdtemp", false;
    dir_ = pattern;
    std::ofstream(dir_ + "/dnsmasq.conf") << fmt::format(
        "no-hosts\nno-resolv\nbind-interfaces\nlisten-address={}\nlocal=/example.test/\nhost-record={},{}\n"
        "user=root\n",
        kUplinkResolver, kOutsideName, kOutsideAddress);
    pid_ = corral::testing::spawnProcess(
        {"/usr/bin/nsenter", "--net=/run/netns/" + uplink, "--", "/usr/sbin/dnsmasq", "--keep-in-foreground",
         "--conf-file=" + dir_ + "/dnsmasq.conf", "--pid-file=", "--log-facility=-"},
        dir_ + "/dnsmasq.log", {}, corral::testing::OutputMode::Truncate);
    if (pid_ <= 0) return *why = "spawning dnsmasq in the uplink namespace", false;
    return true;
  }
  ~UplinkResolver() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ignored;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ignored);
  }

 private:
  pid_t pid_ = 0;
  std::string dir_;
};

struct Lookup {
  bool ran = false;
  int exitCode = -1;
  std::string output;  // nslookup's stdout and stderr
  std::string detail;
};

// From inside instance `from`: `nslookup NAME` with the nameserver of its /etc/resolv.conf.
Lookup lookupOnce(const TestDaemon& d, const std::string& from, const std::string& name) {
  Reply run = d.call("POST", fmt::format("/v1/instances/{}/exec", from),
                     {{"command", {"sh", "-c", fmt::format("nslookup {} 2>&1", name)}}});
  Lookup lookup;
  lookup.ran = run.status == 200 && run.body.contains("exit_code") && run.body["exit_code"].is_number();
  lookup.exitCode = run.body.value("exit_code", -1);
  lookup.output = run.body.value("stdout", "");
  lookup.detail = fmt::format("{}: nslookup {}: HTTP {}, exit {}, output:\n{}", from, name, run.status,
                              lookup.exitCode, lookup.output.empty() ? run.body.dump() : lookup.output);
  return lookup;
}

// Retries for up to `deadline` until `done` says the lookup is as expected (the resolver starts moments
// after the change that asks for it); the last lookup.
template <class Done>
Lookup lookupUntil(const TestDaemon& d, const std::string& from, const std::string& name, Done done,
                   std::chrono::milliseconds deadline = 15s) {
  const auto end = Clock::now() + deadline;
  Lookup last;
  while (true) {
    last = lookupOnce(d, from, name);
    if ((last.ran && done(last)) || Clock::now() > end) return last;
    std::this_thread::sleep_for(300ms);
  }
}

bool answers(const Lookup& lookup, const std::string& address) {
  return lookup.exitCode == 0 && lookup.output.find("Address: " + address) != std::string::npos;
}

Lookup resolves(const TestDaemon& d, const std::string& from, const std::string& name,
                const std::string& address) {
  return lookupUntil(d, from, name, [&](const Lookup& l) { return answers(l, address); });
}

Lookup resolvesNot(const TestDaemon& d, const std::string& from, const std::string& name) {
  return lookupUntil(d, from, name, [](const Lookup& l) { return l.exitCode != 0; });
}

json runContainer(const TestDaemon& d, const std::string& name, const std::string& subnet) {
  return d.must("POST", "/v1/instances",
                {{"name", name}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", subnet}});
}

std::string execOut(const TestDaemon& d, const std::string& instance, const std::string& script) {
  Reply run =
      d.call("POST", fmt::format("/v1/instances/{}/exec", instance), {{"command", {"sh", "-c", script}}});
  return run.body.value("stdout", "") + run.body.value("stderr", "");
}

// The VPC's resolver processes as the topology shows them.
json resolverOf(const TestDaemon& d, const std::string& vpc) {
  Reply topology = d.call("GET", fmt::format("/v1/vpcs/{}/topology", vpc));
  return topology.status == 200 ? topology.body.value("resolver", json(nullptr)) : json(nullptr);
}

// "lab": "pub" reaches the internet through the internet gateway, "iso" reaches nothing.
void buildLab(const TestDaemon& d) {
  d.must("POST", "/v1/vpcs", {{"name", "lab"}, {"cidr", "10.30.0.0/16"}});
  d.must("POST", "/v1/internet-gateways", {{"name", "door"}, {"vpc", "lab"}});
  d.must("POST", "/v1/route-tables", {{"name", "public"}, {"vpc", "lab"}});
  d.must("POST", "/v1/route-tables/public/routes",
         {{"destination", "0.0.0.0/0"}, {"target_type", "internet_gateway"}, {"target", "door"}});
  d.must("POST", "/v1/subnets",
         {{"name", "pub"}, {"vpc", "lab"}, {"cidr", "10.30.1.0/24"}, {"route_table", "public"}});
  d.must("POST", "/v1/subnets", {{"name", "iso"}, {"vpc", "lab"}, {"cidr", "10.30.2.0/24"}});
}

class VpcDns : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "VPC namespaces, dnsmasq and libvirt need root";
    std::string why;
    ASSERT_TRUE(uplinkResolver_.start(&why)) << why;
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }
  UplinkResolver uplinkResolver_;
  TestDaemon daemon_{"dns", {"--accelerator", "tcg", "--uplink-resolver", kUplinkResolver}};
};

// Containers and a VM find each other by NAME and NAME.lab.internal and by address (PTR); the public
// subnet resolves outside names through the uplink's resolver, the isolated one is refused; a removed
// instance's name stops resolving, a new one's starts.
TEST_F(VpcDns, InstancesResolveEachOtherAndOnlyAPublicSubnetResolvesTheInternet) {
  TestDaemon& d = daemon_;
  buildLab(d);
  const std::string web = runContainer(d, "web-1", "pub").value("ip", "");
  const std::string db = runContainer(d, "db", "iso").value("ip", "");
  json vm =
      d.must("POST", "/v1/instances",
             {{"name", "vm1"}, {"kind", "vm"}, {"image", "busybox"}, {"memory", "128M"}, {"subnet", "pub"}});
  json ready = d.waitWhile("vm1", "starting");
  ASSERT_EQ(ready.value("state", ""), "running") << ready.dump(2) << "\n" << d.logTail();
  const std::string vmIp = ready.value("ip", "");
  ASSERT_FALSE(HasFailure());

  // Both kinds are told the subnet's .2 and the VPC's domain.
  EXPECT_EQ(execOut(d, "web-1", "cat /etc/resolv.conf"), "nameserver 10.30.1.2\nsearch lab.internal\n");
  EXPECT_EQ(execOut(d, "db", "cat /etc/resolv.conf"), "nameserver 10.30.2.2\nsearch lab.internal\n");
  EXPECT_EQ(execOut(d, "vm1", "cat /etc/resolv.conf"), "nameserver 10.30.1.2\nsearch lab.internal\n");

  Lookup shortName = resolves(d, "web-1", "db", db);
  EXPECT_TRUE(answers(shortName, db)) << shortName.detail << "\n" << d.logTail();
  Lookup fullName = resolves(d, "db", "web-1.lab.internal", web);
  EXPECT_TRUE(answers(fullName, web)) << fullName.detail;
  Lookup fromVm = resolves(d, "vm1", "web-1", web);
  EXPECT_TRUE(answers(fromVm, web)) << fromVm.detail;
  Lookup toVm = resolves(d, "db", "vm1.lab.internal", vmIp);
  EXPECT_TRUE(answers(toVm, vmIp)) << toVm.detail;
  Lookup reverse = lookupUntil(d, "web-1", db, [](const Lookup& l) { return l.exitCode == 0; });
  EXPECT_NE(reverse.output.find("name = db.lab.internal"), std::string::npos) << reverse.detail;
  Lookup reverseVm = lookupUntil(d, "vm1", vmIp, [](const Lookup& l) { return l.exitCode == 0; });
  EXPECT_NE(reverseVm.output.find("name = vm1.lab.internal"), std::string::npos) << reverseVm.detail;

  // Outside names: forwarded from the public subnet (container and VM), refused in the isolated one.
  Lookup outside = resolves(d, "web-1", kOutsideName, kOutsideAddress);
  EXPECT_TRUE(answers(outside, kOutsideAddress)) << outside.detail << "\n" << d.logTail();
  Lookup outsideVm = resolves(d, "vm1", kOutsideName, kOutsideAddress);
  EXPECT_TRUE(answers(outsideVm, kOutsideAddress)) << outsideVm.detail;
  Lookup refused = lookupOnce(d, "db", kOutsideName);
  EXPECT_TRUE(refused.ran) << refused.detail;
  EXPECT_NE(refused.exitCode, 0) << refused.detail;
  EXPECT_NE(refused.output.find("REFUSED"), std::string::npos) << refused.detail;

  // Names follow instances: db removed stops resolving, a new one resolves.
  d.must("DELETE", "/v1/instances/db?force=true", nullptr, 200);
  Lookup gone = resolvesNot(d, "web-1", "db");
  EXPECT_NE(gone.exitCode, 0) << gone.detail;
  EXPECT_NE(gone.output.find("NXDOMAIN"), std::string::npos) << gone.detail;
  const std::string late = runContainer(d, "late", "iso").value("ip", "");
  Lookup arrived = resolves(d, "vm1", "late", late);
  EXPECT_TRUE(answers(arrived, late)) << arrived.detail;

  // Given the public route table, the isolated subnet's .2 moves to the forwarding resolver: outside names
  // resolve there too.
  d.must("PATCH", "/v1/subnets/iso", {{"route_table", "public"}}, 200);
  Lookup nowPublic = resolves(d, "late", kOutsideName, kOutsideAddress);
  EXPECT_TRUE(answers(nowPublic, kOutsideAddress)) << nowPublic.detail << "\n" << d.logTail();
}

// A resolver that dies is started again; the dnsmasq of a corrald killed with -9 are killed by the next
// one, which starts its own; deleting the VPC kills its resolvers and removes their files.
TEST_F(VpcDns, ResolversAreSupervisedAndLeaveNothingBehind) {
  TestDaemon& d = daemon_;
  buildLab(d);
  const std::string web = runContainer(d, "web-1", "pub").value("ip", "");
  ASSERT_FALSE(HasFailure());
  ASSERT_TRUE(answers(resolves(d, "web-1", "web-1", web), web)) << d.logTail();
  json resolver = resolverOf(d, "lab");
  ASSERT_TRUE(resolver.is_object()) << resolver.dump();
  ASSERT_TRUE(resolver["forwarding"].is_object() && resolver["local"].is_object()) << resolver.dump();
  EXPECT_EQ(resolver["forwarding"]["listen"], json({"10.30.1.2"})) << resolver.dump();
  EXPECT_EQ(resolver["local"]["listen"], json({"10.30.2.2"})) << resolver.dump();
  const pid_t first = resolver["forwarding"].value("pid", 0);
  ASSERT_GT(first, 0) << resolver.dump();
  EXPECT_EQ(ourDnsmasqs(d).size(), 2u);

  // Killed: restarted, and it answers again.
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  pid_t second = 0;
  for (auto end = Clock::now() + 10s; Clock::now() < end; std::this_thread::sleep_for(100ms)) {
    json now = resolverOf(d, "lab");
    second = now.is_object() && now["forwarding"].is_object() ? now["forwarding"].value("pid", 0) : 0;
    if (second > 0 && second != first) break;
  }
  EXPECT_GT(second, 0);
  EXPECT_NE(second, first);
  EXPECT_EQ(resolverOf(d, "lab")["forwarding"].value("restarts", 0), 1);
  Lookup again = resolves(d, "web-1", "web-1.lab.internal", web);
  EXPECT_TRUE(answers(again, web)) << again.detail << "\n" << d.logTail();

  // corrald killed with -9 (dnsmasq, having dropped to nobody, outlives it: the kernel clears the
  // parent-death signal on that change): the next corrald kills the leftovers from their pid files and runs
  // its own; the container, which lived on, resolves.
  const std::vector<pid_t> before = ourDnsmasqs(d);
  ASSERT_EQ(before.size(), 2u);
  // One file per name in the hosts directory: web-1's alone.
  const std::string hostsDir = d.resolverDir() + "/lab/hosts.d";
  auto hostFiles = [&] {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(hostsDir))
      names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  };
  EXPECT_EQ(hostFiles(), std::vector<std::string>{"web-1"});
  d.kill9();
  // A name whose instance went while no corrald ran: the next one removes its file before its dnsmasqs
  // start (they would read it), so it does not resolve.
  {
    std::ofstream ghost(hostsDir + "/ghost");
    ghost << "10.30.1.99\tghost.lab.internal ghost\n";
  }
  ASSERT_TRUE(d.start()) << d.log();
  EXPECT_EQ(hostFiles(), std::vector<std::string>{"web-1"});
  Lookup ghostGone = resolvesNot(d, "web-1", "ghost");
  EXPECT_NE(ghostGone.output.find("NXDOMAIN"), std::string::npos) << ghostGone.detail;
  for (pid_t pid : before) EXPECT_FALSE(running(pid)) << "dnsmasq " << pid << " of the killed corrald";
  Lookup afterRestart = resolves(d, "web-1", "web-1", web);
  EXPECT_TRUE(answers(afterRestart, web)) << afterRestart.detail << "\n" << d.logTail();
  // Both roles' dnsmasqs run again (the second may still be starting while the first already answers).
  EXPECT_TRUE(
      corral::testing::pollUntil([&] { return ourDnsmasqs(d).size() == 2u; }, std::chrono::seconds(5)))
      << ourDnsmasqs(d).size() << " dnsmasqs\n"
      << d.logTail();
  const std::vector<pid_t> after = ourDnsmasqs(d);
  for (pid_t pid : after) EXPECT_EQ(std::find(before.begin(), before.end(), pid), before.end()) << pid;
  EXPECT_NE(d.log().find("left by an earlier corrald"), std::string::npos) << d.logTail();

  // Deleting everything: no dnsmasq, no files.
  std::vector<std::string> failed = d.removeEverything();
  EXPECT_TRUE(failed.empty()) << fmt::format("{}", fmt::join(failed, "\n"));
  EXPECT_TRUE(ourDnsmasqs(d).empty());
  EXPECT_FALSE(std::filesystem::exists(d.resolverDir() + "/lab")) << d.resolverDir();
}

// A malformed --uplink-resolver stops corrald at once, naming the option.
TEST_F(VpcDns, AMalformedUplinkResolverIsRefused) {
  for (const char* bad : {"198.51.100", "198.51.100.53#0", "198.51.100.53#x", "dns.example"}) {
    TestDaemon refused{"dns-bad", {"--uplink-resolver", bad}};
    EXPECT_FALSE(refused.start()) << bad;
    EXPECT_NE(refused.log().find("uplink-resolver"), std::string::npos) << bad << ": " << refused.log();
  }
}

// ---- Instance metadata ----

// An HTTP/1.0 request to 169.254.169.254 from inside `from` (busybox nc); what came back, headers and all.
std::string metadataCall(const TestDaemon& d, const std::string& from, const std::string& method,
                         const std::string& path, const std::string& header) {
  const std::string request = fmt::format("{} {} HTTP/1.0\\r\\n{}\\r\\n", method, path,
                                          header.empty() ? std::string() : header + "\\r\\n");
  return execOut(d, from, fmt::format("printf '{}' | nc -w 3 169.254.169.254 80", request));
}

std::string bodyOf(const std::string& response) {
  const size_t end = response.find("\r\n\r\n");
  return end == std::string::npos ? std::string() : response.substr(end + 4);
}

std::string tokenFor(const TestDaemon& d, const std::string& from) {
  const std::string response =
      metadataCall(d, from, "PUT", "/latest/api/token", "X-aws-ec2-metadata-token-ttl-seconds: 60");
  EXPECT_NE(response.find(" 200 "), std::string::npos) << from << ": " << response;
  return bodyOf(response);
}

std::string metadataGet(const TestDaemon& d, const std::string& from, const std::string& path,
                        const std::string& token) {
  return metadataCall(d, from, "GET", path, token.empty() ? "" : "X-aws-ec2-metadata-token: " + token);
}

// Runs a command on the host (the test's own namespaces only); its exit code.
int hostRun(const std::vector<std::string>& args) {
  pid_t pid = corral::testing::spawnProcess(args, "/dev/null", {}, corral::testing::OutputMode::Truncate);
  if (pid <= 0) return -1;
  auto status = corral::testing::waitWithDeadline(pid, std::chrono::seconds(20));
  return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1;
}

class VpcMetadata : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!requireRoot()) GTEST_SKIP() << "VPC namespaces need root";
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
  }
  void TearDown() override {
    for (const std::string& netns : made_) hostRun({"/usr/sbin/ip", "netns", "delete", netns});
  }
  TestDaemon daemon_{"imds", {"--accelerator", "tcg"}};
  std::vector<std::string> made_;
};

// Each instance reads its own metadata with a token and nobody else's; without a token: 401; only port 80
// answers at that address.
TEST_F(VpcMetadata, EachInstanceReadsItsOwnMetadataWithAToken) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "meta"}, {"cidr", "10.40.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "a"}, {"vpc", "meta"}, {"cidr", "10.40.1.0/24"}});
  const std::string userData = "#!/bin/sh\necho hello from user data\n";
  json one = d.must("POST", "/v1/instances",
                    {{"name", "one"},
                     {"image", "busybox"},
                     {"command", {"sleep", "3600"}},
                     {"subnet", "a"},
                     {"hostname", "first"},
                     {"user_data", api::base64Encode(userData)}});
  json two = runContainer(d, "two", "a");
  ASSERT_FALSE(HasFailure());

  const std::string token = tokenFor(d, "one");
  ASSERT_EQ(token.size(), 64u) << token;
  EXPECT_EQ(bodyOf(metadataGet(d, "one", "/latest/meta-data/instance-id", token)), "one");
  EXPECT_EQ(bodyOf(metadataGet(d, "one", "/latest/meta-data/local-ipv4", token)), one.value("ip", ""));
  EXPECT_EQ(bodyOf(metadataGet(d, "one", "/latest/meta-data/hostname", token)), "first");
  EXPECT_EQ(bodyOf(metadataGet(d, "one", "/latest/meta-data/security-groups", token)), "meta-default");
  EXPECT_EQ(bodyOf(metadataGet(d, "one", "/latest/user-data", token)), userData);
  EXPECT_FALSE(bodyOf(metadataGet(d, "one", "/latest/meta-data/mac", token)).empty());
  EXPECT_FALSE(bodyOf(metadataGet(d, "one", "/latest/meta-data/placement/availability-zone", token)).empty());

  // No token, or another instance's: 401.
  EXPECT_NE(metadataGet(d, "one", "/latest/meta-data/instance-id", "").find(" 401 "), std::string::npos);
  EXPECT_NE(metadataGet(d, "two", "/latest/meta-data/instance-id", token).find(" 401 "), std::string::npos)
      << "two read one's metadata with one's token";
  const std::string own = tokenFor(d, "two");
  EXPECT_EQ(bodyOf(metadataGet(d, "two", "/latest/meta-data/instance-id", own)), "two");
  EXPECT_EQ(bodyOf(metadataGet(d, "two", "/latest/meta-data/local-ipv4", own)), two.value("ip", ""));
  EXPECT_NE(metadataGet(d, "two", "/latest/user-data", own).find(" 404 "), std::string::npos);

  // Nothing but the metadata service at that address.
  const std::string vpcNetns = corral::testing::testNetnsPrefix() + "vpc-meta";
  for (uint16_t port : {22, 53, 443, 8080}) {
    auto connects = net::tcpConnectsInNetns(vpcNetns, "169.254.169.254", port, 1s);
    ASSERT_TRUE(connects.has_value()) << connects.error().message();
    EXPECT_FALSE(*connects) << "port " << port;
  }
}

// A namespace nested behind an instance (forwarded and masqueraded by it) reaches the VPC but not the
// metadata service: its answers leave with TTL 1 and die at the instance.
TEST_F(VpcMetadata, ANamespaceNestedBehindAnInstanceGetsNoToken) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "meta"}, {"cidr", "10.40.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "a"}, {"vpc", "meta"}, {"cidr", "10.40.1.0/24"}});
  json host =
      d.must("POST", "/v1/instances",
             {{"name", "host"}, {"image", "busybox"}, {"command", {"sleep", "3600"}}, {"subnet", "a"}});
  json peer = d.must("POST", "/v1/instances",
                     {{"name", "peer"},
                      {"image", "busybox"},
                      {"command", {"sh", "-c", "nc -ll -p 8080 -e /bin/echo peer"}},
                      {"subnet", "a"}});
  ASSERT_FALSE(HasFailure());
  const int pid = d.must("GET", "/v1/instances/host", nullptr, 200).value("pid", 0);
  ASSERT_GT(pid, 0);

  const std::string outer = corral::testing::testNetnsPrefix() + "imds-host";
  const std::string nested = corral::testing::testNetnsPrefix() + "imds-nested";
  const std::string ip = "/usr/sbin/ip";
  ASSERT_EQ(hostRun({ip, "netns", "attach", outer, std::to_string(pid)}), 0);
  made_.push_back(outer);
  ASSERT_EQ(hostRun({ip, "netns", "add", nested}), 0);
  made_.push_back(nested);
  for (const std::vector<std::string>& step : std::vector<std::vector<std::string>>{
           {ip, "-n", outer, "link", "add", "nst0", "type", "veth", "peer", "name", "nst1", "netns", nested},
           {ip, "-n", outer, "addr", "add", "192.168.77.1/24", "dev", "nst0"},
           {ip, "-n", outer, "link", "set", "nst0", "up"},
           {ip, "-n", nested, "addr", "add", "192.168.77.2/24", "dev", "nst1"},
           {ip, "-n", nested, "link", "set", "nst1", "up"},
           {ip, "-n", nested, "link", "set", "lo", "up"},
           {ip, "-n", nested, "route", "add", "default", "via", "192.168.77.1"},
           {ip, "netns", "exec", outer, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
           {ip, "netns", "exec", outer, "nft",
            "add table ip nested; add chain ip nested post { type nat hook "
            "postrouting priority srcnat; }; add rule ip nested post oifname eth0 masquerade"}}) {
    ASSERT_EQ(hostRun(step), 0) << fmt::format("{}", fmt::join(step, " "));
  }

  // The instance itself reaches the service; the nested namespace reaches a neighbour through it, but not
  // the service.
  auto fromInstance = net::tcpConnectsInNetns(outer, "169.254.169.254", 80, 2s);
  ASSERT_TRUE(fromInstance.has_value()) << fromInstance.error().message();
  EXPECT_TRUE(*fromInstance);
  bool neighbour = false;
  for (int attempt = 0; attempt < 10 && !neighbour; ++attempt) {
    auto connects = net::tcpConnectsInNetns(nested, peer.value("ip", ""), 8080, 2s);
    ASSERT_TRUE(connects.has_value()) << connects.error().message();
    neighbour = *connects;
    if (!neighbour) std::this_thread::sleep_for(300ms);
  }
  EXPECT_TRUE(neighbour) << "the nested namespace does not reach the VPC at all: the test proves nothing";
  auto fromNested = net::tcpConnectsInNetns(nested, "169.254.169.254", 80, 2s);
  ASSERT_TRUE(fromNested.has_value()) << fromNested.error().message();
  EXPECT_FALSE(*fromNested) << "a namespace behind the instance reached the metadata service";
  (void)host;
}

// A VM asks the same service through its own kernel: its token, its identity and user data; a container
// beside it cannot use the VM's token.
TEST_F(VpcMetadata, AVmReadsItsOwnMetadata) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "meta"}, {"cidr", "10.40.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "a"}, {"vpc", "meta"}, {"cidr", "10.40.1.0/24"}});
  const std::string userData = "#cloud-config\nhostname: from-user-data\n";
  d.must("POST", "/v1/instances",
         {{"name", "vm1"},
          {"kind", "vm"},
          {"image", "busybox"},
          {"memory", "128M"},
          {"subnet", "a"},
          {"user_data", api::base64Encode(userData)}});
  json vm = d.waitWhile("vm1", "starting");
  ASSERT_EQ(vm.value("state", ""), "running") << vm.dump(2) << "\n" << d.logTail();
  runContainer(d, "box", "a");
  ASSERT_FALSE(HasFailure());

  const std::string token = tokenFor(d, "vm1");
  ASSERT_EQ(token.size(), 64u) << token << "\n" << d.logTail();
  EXPECT_EQ(bodyOf(metadataGet(d, "vm1", "/latest/meta-data/instance-id", token)), "vm1");
  EXPECT_EQ(bodyOf(metadataGet(d, "vm1", "/latest/meta-data/local-ipv4", token)), vm.value("ip", ""));
  EXPECT_EQ(bodyOf(metadataGet(d, "vm1", "/latest/meta-data/mac", token)), vm["network"].value("mac", ""));
  EXPECT_EQ(bodyOf(metadataGet(d, "vm1", "/latest/user-data", token)), userData);
  EXPECT_NE(metadataGet(d, "vm1", "/latest/meta-data/instance-id", "").find(" 401 "), std::string::npos);
  EXPECT_NE(metadataGet(d, "box", "/latest/meta-data/instance-id", token).find(" 401 "), std::string::npos)
      << "a container read the VM's metadata with the VM's token";
}

// Malformed or too-big user data: 400 naming user_data, and no instance.
TEST_F(VpcMetadata, BadUserDataIsRefusedAndChangesNothing) {
  TestDaemon& d = daemon_;
  d.must("POST", "/v1/vpcs", {{"name", "meta"}, {"cidr", "10.40.0.0/16"}});
  d.must("POST", "/v1/subnets", {{"name", "a"}, {"vpc", "meta"}, {"cidr", "10.40.1.0/24"}});
  for (const std::string& userData :
       {std::string("not base64!"), api::base64Encode(std::string(16 * 1024 + 1, 'x'))}) {
    Reply refused = d.call("POST", "/v1/instances",
                           {{"name", "bad"},
                            {"image", "busybox"},
                            {"command", {"sleep", "1"}},
                            {"subnet", "a"},
                            {"user_data", userData}});
    EXPECT_EQ(refused.status, 400) << refused.body.dump();
    EXPECT_EQ(refused.body["error"].value("field", ""), "user_data") << refused.body.dump();
    EXPECT_EQ(d.call("GET", "/v1/instances/bad").status, 404);
  }
  EXPECT_TRUE(d.list("instances").empty()) << d.list("instances").dump();
  // The CLI reads the file; corrald refuses its size.
  const std::string big = d.dir() + "/big-user-data";
  std::ofstream(big) << std::string(16 * 1024 + 1, 'x');
  auto run = d.cli({"run", "-d", "--name", "bad", "--subnet", "a", "--user-data", big, "--", "sleep", "1"});
  EXPECT_NE(run.code, 0) << run.out << run.err;
  EXPECT_NE(run.err.find("user_data"), std::string::npos) << run.err;
  EXPECT_NE(run.err.find("16385 bytes"), std::string::npos) << run.err;
  EXPECT_TRUE(d.list("instances").empty());
}

}  // namespace
}  // namespace corral
