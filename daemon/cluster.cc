// This host's membership of a corral cluster: init, join, hosts, set, leave and the heartbeat (cluster.h).
#include "daemon/cluster.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/random.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include "core/log.h"
#include "core/retry.h"
#include "core/unique_fd.h"
#include "daemon/cluster_view.h"
#include "schema/cidr.h"
#include "schema/names.h"

namespace corral::daemon {
namespace {

// etcd adds or removes a voting member only once every member has been connected for its health
// interval (5 s): such a refusal is worth sending again.
bool unhealthyCluster(const Error& error) {
  return error.message().find("unhealthy cluster") != std::string::npos;
}
// The store electing a leader (or without quorum a moment longer).
bool noQuorum(const Error& error) {
  return error.kind() == ErrorKind::Unavailable;
}

using json = nlohmann::json;
using net::etcd::Compare;
using net::etcd::EtcdClient;
using net::etcd::TxnOp;

constexpr std::string_view kHostsPrefix = "/corral/hosts/";
constexpr std::string_view kAliveSuffix = "/alive";
constexpr std::string_view kInstancesSuffix = "/instances";
constexpr std::string_view kChassisSuffix = "/chassis";
constexpr const char* kRootUser = "root";
constexpr std::string_view kGatewayKey = "/corral/gateway";

Result<std::string> randomHex(size_t bytes) {
  std::string raw(bytes, '\0');
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(raw.data() + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(systemError(errno, "getrandom()"));
    got += static_cast<size_t>(n);
  }
  std::string hex;
  for (unsigned char c : raw) hex += fmt::format("{:02x}", c);
  return hex;
}

int64_t nowSeconds() {
  return static_cast<int64_t>(std::time(nullptr));
}

std::string memberIdText(uint64_t id) {
  return fmt::format("{:x}", id);
}

// "10.0.0.1" or "10.0.0.1:2379" (the port defaulting to `defaultPort`) as an etcd client URL.
Result<std::string> clientUrlOf(const std::string& address, uint16_t defaultPort) {
  std::string host = address;
  uint16_t port = defaultPort;
  if (auto colon = address.rfind(':'); colon != std::string::npos) {
    host = address.substr(0, colon);
    const std::string text = address.substr(colon + 1);
    unsigned value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535)
      return fail(invalidField("address", "\"{}\": the port after ':' must be 1-65535", address));
    port = static_cast<uint16_t>(value);
  }
  auto ip = schema::Ipv4Address::parse(host, "address");
  if (!ip) return fail(ip.error());
  return fmt::format("http://{}:{}", host, port);
}

Status validateAz(const std::string& az) {
  return schema::validateName(az, "az");
}

bool isAuthFailure(const Error& error) {
  return error.message().find("authentication failed") != std::string::npos;
}

std::string shownSetting(const std::string& value) {
  return value.empty() ? std::string("not given") : fmt::format("\"{}\"", value);
}

}  // namespace

json gatewayJson(const GatewaySettings& settings) {
  return json{{"ovn_gateway_chassis", settings.ovnGatewayChassis},
              {"ovn_outside_network", settings.ovnOutsideNetwork},
              {"transit_cidr", settings.transitCidr},
              {"public_cidr", settings.publicCidr}};
}

GatewaySettings gatewayFromJson(const json& settings) {
  if (!settings.is_object()) return {};
  return {.ovnGatewayChassis = settings.value("ovn_gateway_chassis", std::string()),
          .ovnOutsideNetwork = settings.value("ovn_outside_network", std::string()),
          .transitCidr = settings.value("transit_cidr", std::string()),
          .publicCidr = settings.value("public_cidr", std::string())};
}

Status checkGatewaySettings(const GatewaySettings& here, const GatewaySettings& cluster) {
  for (auto [option, mine, theirs] :
       {std::tuple{"ovn-gateway-chassis", &here.ovnGatewayChassis, &cluster.ovnGatewayChassis},
        std::tuple{"ovn-outside-network", &here.ovnOutsideNetwork, &cluster.ovnOutsideNetwork},
        std::tuple{"transit-cidr", &here.transitCidr, &cluster.transitCidr},
        std::tuple{"public-cidr", &here.publicCidr, &cluster.publicCidr}}) {
    if (*mine == *theirs) continue;
    return fail(Error(
        ErrorKind::Conflict,
        fmt::format("--{} is {} on this host but {} in the cluster: every host plans the internet gateways "
                    "with the same settings (each writes the same OVN rows); start corrald with the "
                    "cluster's",
                    option, shownSetting(*mine), shownSetting(*theirs)),
        option));
  }
  return {};
}

Cluster::Cluster(ClusterOptions options, std::function<size_t()> localInstances,
                 std::unique_ptr<EtcdProcess> etcd)
    : options_(std::move(options)), localInstances_(std::move(localInstances)), etcd_(std::move(etcd)) {}

Result<std::unique_ptr<Cluster>> Cluster::open(ClusterOptions options,
                                               std::function<size_t()> localInstances) {
  auto etcd = EtcdProcess::open({.dir = options.dir + "/etcd", .etcd = options.etcd});
  if (!etcd) return fail(etcd.error().wrap("cluster"));
  (*etcd)->reapLeftover();
  std::unique_ptr<Cluster> cluster(
      new Cluster(std::move(options), std::move(localInstances), std::move(*etcd)));
  auto saved = cluster->membership();
  if (saved && saved->gateway) {
    if (Status same = checkGatewaySettings(cluster->options_.gateway, *saved->gateway); !same)
      return fail(same.error().wrap(
          fmt::format("cluster: this host is a member (\"{}/member.json\")", cluster->options_.dir)));
  }
  if (saved) {
    // A member before: its etcd again on the same data (the flags past the data dir are not read again).
    EtcdLaunch launch{.name = cluster->options_.hostName,
                      .clientUrl = cluster->clientUrl(),
                      .peerUrl = cluster->peerUrl(),
                      .initialCluster = fmt::format("{}={}", cluster->options_.hostName, cluster->peerUrl()),
                      .newCluster = false,
                      .clusterToken = {}};
    if (Status started = cluster->etcd_->start(launch); !started)
      return fail(started.error().wrap("cluster: starting this host's etcd again"));
    auto client = std::make_shared<EtcdClient>(saved->endpoints, nullptr, cluster->options_.requestTimeout);
    std::lock_guard lock(cluster->mutex_);
    cluster->membership_ = std::move(*saved);
    cluster->client_ = std::move(client);  // authenticated by the heartbeat once the store answers
    log::info("cluster: host \"{}\" is a member (az {}); its etcd runs again", cluster->options_.hostName,
              cluster->membership_->az);
  }
  cluster->heartbeat_ = std::thread(&Cluster::heartbeat, cluster.get());
  return cluster;
}

Cluster::~Cluster() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (heartbeat_.joinable()) heartbeat_.join();
  etcd_.reset();
}

std::string Cluster::clientUrl() const {
  return fmt::format("http://{}:{}", options_.address, options_.clientPort);
}
std::string Cluster::peerUrl() const {
  return fmt::format("http://{}:{}", options_.address, options_.peerPort);
}
std::string Cluster::hostKey(std::string_view host) const {
  return fmt::format("{}{}", kHostsPrefix, host);
}

json Cluster::hostJson(const std::string& az, uint64_t memberId) const {
  json host = {
      {"name", options_.hostName}, {"address", options_.address}, {"az", az},
      {"client_url", clientUrl()}, {"peer_url", peerUrl()},       {"member_id", memberIdText(memberId)}};
  if (options_.apiPort != 0)
    host["api_url"] = fmt::format("http://{}:{}", options_.address, options_.apiPort);
  return host;
}

std::optional<std::string> Cluster::peerToken() const {
  std::lock_guard lock(mutex_);
  if (!membership_ || membership_->token.empty()) return std::nullopt;
  return membership_->token;
}

Status Cluster::saveMembership(const Membership& m) const {
  const std::string path = options_.dir + "/member.json";
  const std::string temp = path + ".tmp";
  json saved = {{"az", m.az}, {"token", m.token}, {"member_id", m.memberId}, {"endpoints", m.endpoints}};
  if (m.gateway) saved["gateway"] = gatewayJson(*m.gateway);
  const std::string text = saved.dump() + "\n";
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\", O_CREAT)", temp)));
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd.get()) != 0)
    return fail(systemError(errno, fmt::format("write(\"{}\")", temp)));
  if (::rename(temp.c_str(), path.c_str()) != 0)
    return fail(systemError(errno, fmt::format("rename(\"{}\", \"{}\")", temp, path)));
  return {};
}

void Cluster::forgetMembership() {
  ::unlink((options_.dir + "/member.json").c_str());
}

Result<Cluster::Membership> Cluster::membership() const {
  const std::string path = options_.dir + "/member.json";
  std::ifstream in(path);
  if (!in) return fail(notFound("cluster: this host is in no cluster"));
  std::stringstream text;
  text << in.rdbuf();
  json saved = json::parse(text.str(), nullptr, false);
  if (!saved.is_object()) return fail(internalError("cluster: \"{}\" is not JSON", path));
  Membership m;
  m.az = saved.value("az", std::string("az1"));
  m.token = saved.value("token", std::string());
  m.memberId = saved.value("member_id", uint64_t{0});
  m.endpoints = saved.value("endpoints", std::vector<std::string>{});
  if (m.endpoints.empty()) m.endpoints.push_back(clientUrl());
  if (saved.contains("gateway")) m.gateway = gatewayFromJson(saved["gateway"]);
  return m;
}

Status Cluster::waitUntilServing(EtcdClient& client, const std::string* password,
                                 std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  Error last = unavailable("etcd did not answer");
  while (std::chrono::steady_clock::now() < deadline) {
    if (!etcd_->pid())
      return fail(unavailable("this host's etcd ended at start; see \"{}\"", etcd_->logFile()));
    Status ready = password ? client.authenticate(kRootUser, *password) : Status{};
    if (ready) {
      auto read = client.get(kHostsPrefix, true);
      if (read) return {};
      ready = fail(read.error());
    }
    last = ready.error();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return fail(last.wrap(
      fmt::format("this host's etcd at {} did not serve within {} s", clientUrl(), timeout.count())));
}

Status Cluster::registerAlive(EtcdClient& client) {
  auto lease = client.grantLease(options_.aliveTtlSeconds);
  if (!lease) return fail(lease.error());
  if (auto put = client.put(hostKey(options_.hostName) + std::string(kAliveSuffix), "1", lease->id); !put) {
    (void)client.revokeLease(lease->id);
    return fail(put.error());
  }
  std::lock_guard lock(mutex_);
  lease_ = lease->id;
  publishedInstances_ = -1;  // the count goes on the new lease at the next beat
  return {};
}

Result<json> Cluster::init(const std::string& az) {
  std::lock_guard serial(requests_);
  if (Status ok = validateAz(az); !ok) return fail(ok.error());
  {
    std::lock_guard lock(mutex_);
    if (membership_)
      return fail(conflict("cluster: this host is already in a cluster (corral cluster leave first)"));
  }
  auto token = randomHex(16);
  if (!token) return fail(token.error());
  auto clusterToken = randomHex(8);
  if (!clusterToken) return fail(clusterToken.error());
  if (Status cleared = etcd_->removeData(); !cleared) return fail(cleared.error());
  EtcdLaunch launch{.name = options_.hostName,
                    .clientUrl = clientUrl(),
                    .peerUrl = peerUrl(),
                    .initialCluster = fmt::format("{}={}", options_.hostName, peerUrl()),
                    .newCluster = true,
                    .clusterToken = "corral-" + *clusterToken};
  auto undo = [this](Error error) -> Result<json> {
    etcd_->stop();
    (void)etcd_->removeData();
    return fail(std::move(error).wrap("cluster init"));
  };
  if (Status started = etcd_->start(launch); !started) return undo(started.error());
  auto client =
      std::make_shared<EtcdClient>(std::vector<std::string>{clientUrl()}, nullptr, options_.requestTimeout);
  if (Status serving = waitUntilServing(*client, nullptr, std::chrono::seconds(20)); !serving)
    return undo(serving.error());
  // The etcd that answers is the one just started (not another one on the same port).
  auto members = client->memberList();
  if (!members) return undo(members.error());
  if (members->size() != 1 || members->front().name != options_.hostName ||
      members->front().peerUrls != std::vector<std::string>{peerUrl()})
    return undo(
        conflict("another etcd answers at {}: its members are not this host's new cluster", clientUrl()));
  const uint64_t memberId = members->front().id;
  if (Status auth = client->enableAuth(kRootUser, *token); !auth) return undo(auth.error());
  if (Status auth = client->authenticate(kRootUser, *token); !auth) return undo(auth.error());
  if (auto put = client->put(hostKey(options_.hostName), hostJson(az, memberId).dump()); !put)
    return undo(put.error());
  if (auto put = client->put(kGatewayKey, gatewayJson(options_.gateway).dump()); !put)
    return undo(put.error());
  if (Status alive = registerAlive(*client); !alive) return undo(alive.error());
  Membership m{.az = az,
               .token = *token,
               .memberId = memberId,
               .endpoints = {clientUrl()},
               .gateway = options_.gateway};
  if (Status saved = saveMembership(m); !saved) return undo(saved.error());
  {
    std::lock_guard lock(mutex_);
    membership_ = m;
    client_ = client;
    heartbeatPaused_ = false;
  }
  wake_.notify_all();
  log::info("cluster: initialised with host \"{}\" (az {}), etcd at {}", options_.hostName, az, clientUrl());
  return json{{"host", options_.hostName},
              {"az", az},
              {"address", options_.address},
              {"client_url", clientUrl()},
              {"token", *token}};
}

Result<json> Cluster::join(const std::string& address, const std::string& token, const std::string& az) {
  std::lock_guard serial(requests_);
  auto remoteUrl = clientUrlOf(address, options_.clientPort);
  if (!remoteUrl) return fail(remoteUrl.error());
  if (token.empty())
    return fail(invalidField("token", "the join token is empty (corral cluster token shows it)"));
  if (Status ok = validateAz(az); !ok) return fail(ok.error());
  {
    std::lock_guard lock(mutex_);
    if (membership_)
      return fail(conflict("cluster: this host is already in a cluster (corral cluster leave first)"));
  }
  EtcdClient remote({*remoteUrl}, nullptr, options_.requestTimeout);
  if (Status auth = remote.authenticate(kRootUser, token); !auth) {
    if (isAuthFailure(auth.error()))
      return fail(invalidField("token", "token: refused by the cluster at {}", address));
    return fail(auth.error().wrap(fmt::format("cluster join {}", address)));
  }
  // The cluster's gateway settings, before anything changes. A cluster made before they were recorded has
  // none: this host's become the cluster's (created if still absent, below).
  auto recorded = remote.get(kGatewayKey);
  if (!recorded) return fail(recorded.error().wrap(fmt::format("cluster join {}", address)));
  if (!recorded->kvs.empty()) {
    const GatewaySettings theirs = gatewayFromJson(json::parse(recorded->kvs.front().value, nullptr, false));
    if (Status same = checkGatewaySettings(options_.gateway, theirs); !same)
      return fail(same.error().wrap(fmt::format("cluster join {}", address)));
  }
  // The name taken, atomically: a reservation that says the host is joining.
  const std::string key = hostKey(options_.hostName);
  json reservation = hostJson(az, 0);
  reservation["joining"] = true;
  auto reserved = remote.txn({Compare::absent(key)}, {TxnOp::put(key, reservation.dump())});
  if (!reserved) return fail(reserved.error().wrap(fmt::format("cluster join {}", address)));
  if (!reserved->succeeded)
    return fail(Error(ErrorKind::Conflict,
                      fmt::format("name: host {} is already in the cluster", options_.hostName), "name"));
  auto dropReservation = [&] {
    (void)remote.txn({Compare::valueIs(key, reservation.dump())}, {TxnOp::remove(key)});
  };
  // etcd adds a voting member only once every member has been connected for its health interval (5 s):
  // a host that joined moments ago makes the next add wait ("unhealthy cluster"; refused, so resent).
  auto added = retryWithin(std::chrono::seconds(20), std::chrono::milliseconds(250), unhealthyCluster,
                           [&] { return remote.memberAdd({peerUrl()}); });
  if (!added) {
    dropReservation();
    return fail(added.error().wrap(fmt::format("cluster join {}", address)));
  }
  if (Status cleared = etcd_->removeData(); !cleared) return fail(cleared.error());
  EtcdLaunch launch{.name = options_.hostName,
                    .clientUrl = clientUrl(),
                    .peerUrl = peerUrl(),
                    .initialCluster = net::etcd::initialClusterFlag(added->members, options_.hostName),
                    .newCluster = false,
                    .clusterToken = {}};
  const uint64_t memberId = added->added.id;
  auto undo = [&](Error error) -> Result<json> {
    etcd_->stop();
    (void)etcd_->removeData();
    (void)remote.memberRemove(memberId);
    dropReservation();
    return fail(std::move(error).wrap(fmt::format("cluster join {}", address)));
  };
  if (Status started = etcd_->start(launch); !started) return undo(started.error());
  std::vector<std::string> endpoints{clientUrl()};
  for (const auto& member : added->members) {
    for (const auto& url : member.clientUrls)
      if (url != clientUrl()) endpoints.push_back(url);
  }
  auto local =
      std::make_shared<EtcdClient>(std::vector<std::string>{clientUrl()}, nullptr, options_.requestTimeout);
  if (Status serving = waitUntilServing(*local, &token, std::chrono::seconds(30)); !serving)
    return undo(serving.error());
  auto client = std::make_shared<EtcdClient>(endpoints, nullptr, options_.requestTimeout);
  if (Status auth = client->authenticate(kRootUser, token); !auth) return undo(auth.error());
  if (auto put = client->put(key, hostJson(az, memberId).dump()); !put) return undo(put.error());
  if (recorded->kvs.empty()) {
    auto put = client->txn({Compare::absent(std::string(kGatewayKey))},
                           {TxnOp::put(std::string(kGatewayKey), gatewayJson(options_.gateway).dump())});
    if (!put) return undo(put.error());
  }
  if (Status alive = registerAlive(*client); !alive) return undo(alive.error());
  Membership m{
      .az = az, .token = token, .memberId = memberId, .endpoints = endpoints, .gateway = options_.gateway};
  if (Status saved = saveMembership(m); !saved) return undo(saved.error());
  {
    std::lock_guard lock(mutex_);
    membership_ = m;
    client_ = client;
    heartbeatPaused_ = false;
  }
  wake_.notify_all();
  log::info("cluster: host \"{}\" joined the cluster at {} (az {}), etcd member {}", options_.hostName,
            address, az, memberIdText(memberId));
  return json{{"host", options_.hostName},
              {"az", az},
              {"address", options_.address},
              {"client_url", clientUrl()},
              {"member_id", memberIdText(memberId)}};
}

bool Cluster::member() const {
  std::lock_guard lock(mutex_);
  return membership_.has_value();
}

Result<std::shared_ptr<EtcdClient>> Cluster::memberClient() {
  std::shared_ptr<EtcdClient> client;
  std::string token;
  {
    std::lock_guard lock(mutex_);
    if (!membership_)
      return fail(conflict("cluster: this host is in no cluster (corral cluster init, or join)"));
    client = client_;
    token = membership_->token;
  }
  if (!client->authenticated()) {
    if (Status auth = client->authenticate(kRootUser, token); !auth) return fail(auth.error());
  }
  return client;
}

Result<json> Cluster::hosts() {
  auto authed = memberClient();
  if (!authed) return fail(authed.error().wrap("cluster ls"));
  std::shared_ptr<EtcdClient> client = *authed;
  auto read = client->get(kHostsPrefix, true);
  if (!read) return fail(read.error().wrap("cluster ls"));
  auto members = client->memberList();
  if (!members) return fail(members.error().wrap("cluster ls"));
  std::map<std::string, json> hosts;
  std::map<std::string, bool> alive;
  std::map<std::string, json> instances;
  std::map<std::string, net::OvsChassis> fabric;
  for (const auto& kv : read->kvs) {
    std::string rest = kv.key.substr(kHostsPrefix.size());
    if (rest.ends_with(kAliveSuffix)) {
      alive[rest.substr(0, rest.size() - kAliveSuffix.size())] = true;
      continue;
    }
    if (rest.ends_with(kChassisSuffix)) {
      json published = json::parse(kv.value, nullptr, false);
      if (auto chassis = net::ovsChassisFromJson(published); chassis)
        fabric[rest.substr(0, rest.size() - kChassisSuffix.size())] = std::move(*chassis);
      continue;
    }
    if (rest.ends_with(kInstancesSuffix)) {
      json count = json::parse(kv.value, nullptr, false);
      if (count.is_number_integer()) instances[rest.substr(0, rest.size() - kInstancesSuffix.size())] = count;
      continue;
    }
    json host = json::parse(kv.value, nullptr, false);
    if (!host.is_object()) continue;
    hosts[rest] = std::move(host);
  }
  std::map<std::string, int64_t> lostAt;
  {
    std::lock_guard lock(mutex_);
    lostAt = lostAt_;
  }
  json list = json::array();
  std::vector<std::string> endpoints{clientUrl()};
  for (auto& [name, host] : hosts) {
    json out = {{"name", name},
                {"address", host.value("address", "")},
                {"az", host.value("az", "")},
                {"health", alive.contains(name) ? "alive" : "lost"},
                {"lost_since", nullptr},
                {"member", "none"},
                {"member_id", host.value("member_id", "")},
                {"api_url", host.contains("api_url") ? host["api_url"] : json(nullptr)},
                {"instances", nullptr},
                {"local", name == options_.hostName}};
    if (host.value("joining", false)) out["health"] = "joining";
    if (!alive.contains(name))
      if (auto it = lostAt.find(name); it != lostAt.end()) out["lost_since"] = it->second;
    for (const auto& member : *members) {
      const bool same = member.started() ? member.name == name : memberIdText(member.id) == out["member_id"];
      if (!same) continue;
      out["member"] = member.learner ? "learner" : member.started() ? "started" : "unstarted";
      out["member_id"] = memberIdText(member.id);
    }
    if (name == options_.hostName) {
      out["instances"] = localInstances_ ? localInstances_() : 0;
    } else if (auto it = instances.find(name); it != instances.end() && alive.contains(name)) {
      out["instances"] = it->second;  // as its corrald last published it
    }
    list.push_back(std::move(out));
  }
  // This host's chassis as it is now (as published when its database does not answer); the others' as
  // their corralds last published them.
  ChassisSource source;
  {
    std::lock_guard lock(mutex_);
    source = chassisSource_;
  }
  if (source) {
    if (auto chassis = source(); chassis) fabric[options_.hostName] = std::move(*chassis);
  }
  addTunnels(list, fabric);
  for (const auto& member : *members) {
    for (const auto& url : member.clientUrls)
      if (url != clientUrl()) endpoints.push_back(url);
  }
  {
    std::lock_guard lock(mutex_);
    if (membership_ && membership_->endpoints != endpoints) {
      membership_->endpoints = endpoints;
      (void)saveMembership(*membership_);
    }
  }
  json answer{{"hosts", list}, {"local_host", options_.hostName}, {"members", members->size()}};
  {
    std::lock_guard lock(mutex_);
    lastHosts_ = answer;
  }
  return answer;
}

void Cluster::setChassisSource(ChassisSource source) {
  std::lock_guard lock(mutex_);
  chassisSource_ = std::move(source);
}

std::optional<json> Cluster::lastHosts() const {
  std::lock_guard lock(mutex_);
  if (!membership_) return std::nullopt;
  return lastHosts_;
}

void Cluster::publishChassis(EtcdClient& client) {
  ChassisSource source;
  std::optional<json> published;
  {
    std::lock_guard lock(mutex_);
    source = chassisSource_;
    published = publishedChassis_;
  }
  if (!source) return;
  auto chassis = source();
  if (!chassis) return;  // its database away a moment: the others keep what was published
  json now = net::toJson(*chassis);
  if (published == now) return;
  if (auto put = client.put(hostKey(options_.hostName) + std::string(kChassisSuffix), now.dump()); put) {
    std::lock_guard lock(mutex_);
    publishedChassis_ = std::move(now);
  }
}

Result<json> Cluster::token() {
  std::lock_guard lock(mutex_);
  if (!membership_)
    return fail(conflict("cluster: this host is in no cluster (corral cluster init, or join)"));
  return json{{"token", membership_->token}};
}

Result<json> Cluster::setAz(const std::string& host, const std::string& az) {
  std::lock_guard serial(requests_);
  if (Status ok = schema::validateName(host, "name"); !ok) return fail(ok.error());
  if (Status ok = validateAz(az); !ok) return fail(ok.error());
  auto authed = memberClient();
  if (!authed) return fail(authed.error().wrap(fmt::format("cluster set {}", host)));
  std::shared_ptr<EtcdClient> client = *authed;
  const std::string key = hostKey(host);
  for (int attempt = 0; attempt < 5; ++attempt) {
    auto read = client->get(key);
    if (!read) return fail(read.error().wrap(fmt::format("cluster set {}", host)));
    if (read->kvs.empty()) return fail(notFound("cluster set: no host {} in the cluster", host));
    json value = json::parse(read->kvs.front().value, nullptr, false);
    if (!value.is_object()) return fail(internalError("cluster set: {} is not JSON", key));
    value["az"] = az;
    auto txn = client->txn({Compare::modRevision(key, read->kvs.front().modRevision)},
                           {TxnOp::put(key, value.dump())});
    if (!txn) return fail(txn.error().wrap(fmt::format("cluster set {}", host)));
    if (!txn->succeeded) continue;  // changed since the read: read again
    if (host == options_.hostName) {
      std::lock_guard lock(mutex_);
      if (membership_) {
        membership_->az = az;
        (void)saveMembership(*membership_);
      }
    }
    log::info("cluster: host \"{}\" is in az {} now", host, az);
    return json{{"name", host}, {"az", az}};
  }
  return fail(conflict("cluster set {}: its key kept changing; try again", host));
}

Result<json> Cluster::leave() {
  std::lock_guard serial(requests_);
  auto authed = memberClient();
  if (!authed) return fail(authed.error().wrap("cluster leave"));
  std::shared_ptr<EtcdClient> client = *authed;
  Membership m;
  int64_t lease = 0;
  {
    // The heartbeat paused, and a beat under way finished: none puts the alive key back after its delete.
    std::unique_lock lock(mutex_);
    if (!membership_) return fail(conflict("cluster: this host is in no cluster"));
    heartbeatPaused_ = true;
    wake_.wait(lock, [this] { return !beating_; });
    m = *membership_;
    lease = lease_;
  }
  auto resume = [this] {
    std::lock_guard lock(mutex_);
    heartbeatPaused_ = false;
  };
  auto members = client->memberList();
  if (!members) {
    resume();
    return fail(members.error().wrap("cluster leave"));
  }
  const std::string key = hostKey(options_.hostName);
  const std::vector<TxnOp> removeKeys{TxnOp::remove(key), TxnOp::remove(key + "/", /*prefix=*/true)};
  const bool last = members->size() <= 1;
  std::optional<std::string> warning;
  if (last) {
    // The last host: its keys go with its etcd's data; deleting them first tells a store without quorum.
    if (auto removed = client->txn({}, removeKeys); !removed) {
      resume();
      return fail(removed.error().wrap("cluster leave"));
    }
  } else {
    // The member is removed first (through another member where there is one: this one stops serving
    // once removed); refused without quorum, and then nothing has changed.
    std::vector<std::string> others;
    for (const auto& url : m.endpoints)
      if (url != clientUrl()) others.push_back(url);
    others.push_back(clientUrl());
    EtcdClient through(others, nullptr, options_.requestTimeout);
    if (Status auth = through.authenticate(kRootUser, m.token); !auth) {
      resume();
      return fail(auth.error().wrap("cluster leave"));
    }
    uint64_t id = m.memberId;
    for (const auto& member : *members)
      if (member.name == options_.hostName) id = member.id;
    // Like an add, a remove waits until every member has been connected for etcd's health interval.
    Status gone = retryWithin(std::chrono::seconds(20), std::chrono::milliseconds(250), unhealthyCluster,
                              [&] { return through.memberRemove(id); });
    if (!gone) {
      resume();
      return fail(gone.error().wrap("cluster leave: member remove"));
    }
    // Then its keys, through the members that stay.
    EtcdClient staying(std::vector<std::string>(others.begin(), others.end() - 1), nullptr,
                       options_.requestTimeout);
    // When the member that left was the leader, the others elect one first ("leader changed", "no
    // leader"): the keys go once they have (a second or two).
    auto removed = retryWithin(std::chrono::seconds(10), std::chrono::milliseconds(250), noQuorum, [&] {
      Status auth = staying.authenticate(kRootUser, m.token);
      return auth ? staying.txn({}, removeKeys) : Result<net::etcd::TxnResult>(fail(auth.error()));
    });
    if (!removed) {
      warning = fmt::format("the member was removed but its host keys stay: {}", removed.error().message());
      log::warn("cluster leave: {}", *warning);
    }
    if (lease != 0) (void)staying.revokeLease(lease);
  }
  etcd_->stop();
  Status cleared = etcd_->removeData();
  forgetMembership();
  {
    std::lock_guard lock(mutex_);
    membership_.reset();
    client_.reset();
    lease_ = 0;
    lostAt_.clear();
    publishedChassis_.reset();
    lastHosts_.reset();
    heartbeatPaused_ = false;
  }
  if (!cleared) log::warn("cluster leave: {}", cleared.error().message());
  log::info("cluster: host \"{}\" left the cluster{}", options_.hostName,
            last ? " (the last: the cluster ended)" : "");
  json answer{{"host", options_.hostName}, {"cluster_ended", last}};
  if (warning) answer["warning"] = *warning;
  return answer;
}

// Keeps this host's alive key on a lease (a keepalive every third of the TTL; a new lease and key when the
// old lease expired or was never granted), and watches /corral/hosts/ to note when another host's alive
// key goes (it is "lost" from then on, within the TTL of its last keepalive).
void Cluster::heartbeat() {
  std::unique_ptr<net::etcd::Watch> watch;
  std::shared_ptr<EtcdClient> watching;
  bool complained = false;
  const auto period = std::chrono::milliseconds(std::max<int64_t>(options_.aliveTtlSeconds * 1000 / 3, 200));
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (!membership_ || heartbeatPaused_ || !client_) {
      watch.reset();
      watching.reset();
      wake_.wait_for(lock, period);
      continue;
    }
    auto client = client_;
    const std::string token = membership_->token;
    int64_t lease = lease_;
    beating_ = true;
    lock.unlock();
    Status beat = {};
    if (lease == 0) {
      beat = client->authenticate(kRootUser, token);
      if (beat) beat = registerAlive(*client);
      if (beat) log::info("cluster: host \"{}\" is alive in the cluster store", options_.hostName);
    } else {
      auto ttl = client->keepAliveOnce(lease);
      if (!ttl) {
        beat = fail(ttl.error());
      } else if (*ttl <= 0) {
        log::warn("cluster: the alive lease of host \"{}\" expired; a new one", options_.hostName);
        std::lock_guard relock(mutex_);
        if (lease_ == lease) lease_ = 0;
      }
    }
    if (beat && localInstances_) {
      // This host's instance count for the other hosts' `cluster ls`, on the alive lease (gone with it).
      const int64_t count = static_cast<int64_t>(localInstances_());
      int64_t published = 0, onLease = 0;
      {
        std::lock_guard relock(mutex_);
        published = publishedInstances_;
        onLease = lease_;
      }
      if (count != published && onLease != 0) {
        auto put = client->put(hostKey(options_.hostName) + std::string(kInstancesSuffix),
                               std::to_string(count), onLease);
        if (put) {
          std::lock_guard relock(mutex_);
          if (lease_ == onLease) publishedInstances_ = count;
        }
      }
    }
    if (beat) publishChassis(*client);
    {
      std::lock_guard relock(mutex_);
      beating_ = false;
    }
    wake_.notify_all();
    if (beat) (void)hosts();  // lastHosts_, for the dashboard
    if (!beat && !complained) log::warn("cluster: heartbeat: {}", beat.error().message());
    complained = !beat;
    if (watching != client) {
      watch.reset();
      watching.reset();
    }
    if (!watch && beat) {
      auto started = client->watch(kHostsPrefix);
      if (started) {
        watch = std::move(*started);
        watching = client;
      }
    }
    const auto until = std::chrono::steady_clock::now() + period;
    while (watch && std::chrono::steady_clock::now() < until) {
      auto event = watch->next(
          std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now()));
      if (!event) {
        watch.reset();
        watching.reset();
        break;
      }
      if (!*event) break;
      const std::string& key = (*event)->kv.key;
      if (!key.ends_with(kAliveSuffix)) continue;
      const std::string host =
          key.substr(kHostsPrefix.size(), key.size() - kHostsPrefix.size() - kAliveSuffix.size());
      std::lock_guard relock(mutex_);
      if ((*event)->type == net::etcd::WatchEvent::Type::Delete) {
        lostAt_[host] = nowSeconds();
        log::warn("cluster: host \"{}\" lost (its alive key went)", host);
      } else if (lostAt_.erase(host) > 0) {
        log::info("cluster: host \"{}\" is alive again", host);
      }
    }
    lock.lock();
    if (!watch) wake_.wait_until(lock, until);
  }
}

}  // namespace corral::daemon
