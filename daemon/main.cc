// corrald: parses options, daemonises (unless --foreground), opens the state and serves the API until a
// signal. Every startup failure exits non-zero with one clear line; the launching shell sees it too.

// GCC 12 at -O2 reports a "potential null pointer dereference" inside Boost (program_options' any_cast in
// typed_value::notify, Asio's scheduler) once inlined here; it is not in our code and -Werror would break the
// build. It must precede the Boost includes.
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include <execinfo.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <string>

#include "api/client.h"
#include "core/failpoint.h"
#include "core/log.h"
#include "core/unique_fd.h"
#include "daemon/http_server.h"
#include "daemon/install_layout.h"
#include "daemon/service.h"
#include "daemon/store.h"
#include "daemon/vm_image.h"
#include "daemon/vm_user.h"
#include "images/oci/image_store.h"
#include "net/netlink.h"
#include "net/ovsdb.h"
#include "schema/names.h"
#include "vmm/qemu_spawn.h"

namespace corral::daemon {
namespace {

namespace po = boost::program_options;

struct Options {
  std::string socketPath;
  std::string socketGroup;
  std::optional<gid_t> socketGroupId;
  std::string stateDir;
  std::string logFile;
  std::string pidFile;
  std::string imageDir;
  std::string registryAuth;
  std::string containersDir;
  std::string cgroupParent;
  std::string vmsDir;
  std::string libvirtUri;
  std::string domainPrefix;
  AcceleratorMode accelerator = AcceleratorMode::automatic;
  VmEngineMode vmEngine = VmEngineMode::automatic;
  VmUserChoice vmUser;
  std::string acceleratorCache;
  std::string reaperPath;
  std::string netnsPrefix;
  std::string uplinkNetns;
  std::string uplinkResolver;
  std::string resolverDir;
  std::string dnsmasq;
  std::string loadBalancerDir;
  std::string haproxy;
  std::string transitCidr;
  std::string publicCidr;
  std::string subuidFile;
  std::string subgidFile;
  int64_t vmBootTimeoutS = 90;
  int64_t groupPolicyPeriodS = 10;
  int64_t kvmProbeTimeoutS = 15;
  bool foreground = false;
  int64_t readTimeoutMs = 10'000;
  int64_t flowLogBuffer = net::kFlowCaptureBuffer;
  std::optional<uint16_t> httpPort;
  std::optional<PeerEndpoint> peerListen;
  std::string ovnNorthbound;
  std::string ovnSouthbound;
  std::string ovsDatabase;
  std::string ovsNetns;
  std::string ovnGatewayChassis;
  std::string ovnOutsideNetwork;
  std::string peerTokenFile;
  std::string clusterAddress;
  std::string hostName;
  int64_t clusterClientPort = 2379;
  int64_t clusterPeerPort = 2380;
  int64_t clusterAliveTtlS = 3;
  int64_t clusterApiPort = 0;
  int64_t clusterModelCompact = 1000;
  std::string etcd;
  log::Level logLevel = log::Level::Info;
};

// The cluster's token for the peer port (--peer-token-file), read at each request so a token written or
// replaced later counts at once: nullopt when the file is missing or empty, or when others may read it (a
// token anyone on the host can read authenticates nothing).
std::optional<std::string> readPeerToken(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd) return std::nullopt;
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0 || !S_ISREG(info.st_mode)) return std::nullopt;
  if ((info.st_mode & 077) != 0) {
    log::warn("--peer-token-file \"{}\": refusing peers: others may read it (mode {:04o}; chmod 600)", path,
              info.st_mode & 07777);
    return std::nullopt;
  }
  std::string token(256, '\0');
  const ssize_t n = ::read(fd.get(), token.data(), token.size());
  if (n <= 0) return std::nullopt;
  token.resize(static_cast<size_t>(n));
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  if (token.empty()) return std::nullopt;
  return token;
}

Result<log::Level> parseLogLevel(const std::string& text) {
  if (text == "debug") return log::Level::Debug;
  if (text == "info") return log::Level::Info;
  if (text == "warn") return log::Level::Warn;
  if (text == "error") return log::Level::Error;
  return fail(invalidField("log-level", "unknown log level \"{}\": use debug, info, warn or error", text));
}

// std::nullopt: --help or --version was answered, exit 0.
Result<std::optional<Options>> parseOptions(int argc, char** argv) {
  // As wide as corral's help; help2man turns this help into corrald(8) (packaging/install.cmake).
  po::options_description described("Options", 110, 55);
  std::string logLevel;
  std::string accelerator;
  std::string vmEngine;
  std::string vmUser;
  int64_t httpPort = -1;
  std::string peerListen;
  Options options;
  // Installed, the images and corral-reaper are under PREFIX/lib/corral; in a build tree next to corrald.
  const InstallLayout layout = currentInstallLayout();
  // clang-format off
  described.add_options()
      ("help,h", "print this help and exit")
      ("version", "print the version and exit")
      ("list-failpoints", "print the names of the crash points CORRAL_FAILPOINTS may arm (for tests) and exit")
      ("socket", po::value(&options.socketPath)->default_value(std::string(api::kDefaultSocketPath)),
       "Unix socket to serve the API on (mode 0660)")
      ("socket-group", po::value(&options.socketGroup)->value_name("GROUP"),
       "the socket's group: its members may use corral without root (default: \"corral\" when that group "
       "exists, else the daemon's own group)")
      ("state-dir", po::value(&options.stateDir)->default_value("/var/lib/corral"),
       "directory holding state.db (created 0700)")
      ("log-file", po::value(&options.logFile), "log file (default: STATE_DIR/corrald.log)")
      ("pid-file", po::value(&options.pidFile)->value_name("PATH"),
       "write corrald's pid here once the socket listens, removed when it stops (without an init system: "
       "corrald --pid-file /run/corral/corrald.pid, then kill $(cat /run/corral/corrald.pid))")
      ("image-dir", po::value(&options.imageDir)->value_name("DIR"),
       "directory of the built images (busybox/rootfs, busybox/vm, kernels/corral); busybox/rootfs is kept in "
       "the image store (STATE_DIR/images) as the image \"busybox\" (default: PREFIX/lib/corral/images when "
       "installed, else /var/lib/corral/images)")
      ("registry-auth", po::value(&options.registryAuth)->value_name("FILE"),
       "credentials for image pulls: a docker config.json ({\"auths\": {HOST: {\"auth\": BASE64}}})")
      ("containers-dir", po::value(&options.containersDir),
       "directory of container bundles and logs (default: STATE_DIR/containers)")
      ("cgroup-parent", po::value(&options.cgroupParent)->default_value("corral"),
       "cgroup under which every container's cgroup, and each direct-engine VM's corral-vm-DOMAIN, is created")
      ("vms-dir", po::value(&options.vmsDir),
       "directory of per-VM files: console.log, agent.sock (default: STATE_DIR/vms)")
      ("libvirt-uri", po::value(&options.libvirtUri)->default_value("qemu:///system"), "libvirt connection URI")
      ("domain-prefix", po::value(&options.domainPrefix)->default_value("corral-"),
       "libvirt domains of this daemon are named PREFIX + instance name (their metadata names this daemon's "
       "state directory: another corrald with the same prefix leaves them alone)")
      ("accelerator", po::value(&accelerator)->default_value("auto"),
       "auto (KVM when a probe boot under KVM reaches the guest's userspace, else TCG), kvm or tcg")
      ("vm-engine", po::value(&vmEngine)->default_value("auto"),
       "who runs a VM's QEMU: qemu (corrald itself, without libvirt's ~0.4 s per start), libvirt, or auto "
       "(qemu for microvm, libvirt for pc)")
      ("vm-user", po::value(&vmUser)->value_name("USER")->default_value("auto"),
       "the user the direct engine runs QEMU as: auto (libvirt-qemu, which Debian's libvirt makes, when it "
       "exists and can reach VMS_DIR, else root), root, or a user name")
      ("accelerator-cache", po::value(&options.acceleratorCache)->default_value("/run/corral/accelerator.json"),
       "where auto's probe result is kept for the rest of this host boot")
      ("reaper", po::value(&options.reaperPath)->value_name("PATH"),
       "corral-reaper, the static init `run --init` puts at a container's PID 1 (default: next to corrald's "
       "own binary in a build tree, PREFIX/lib/corral/corral-reaper when installed)")
      ("netns-prefix", po::value(&options.netnsPrefix)->default_value(std::string(net::kDefaultNetnsPrefix)),
       "each VPC's router is the network namespace PREFIX + \"vpc-\" + VPC name (/run/netns)")
      ("uplink-netns", po::value(&options.uplinkNetns),
       "where internet gateways lead: this named network namespace (a lab \"internet\") instead of the "
       "host, which otherwise forwards and masquerades VPC traffic out of its default route")
      ("uplink-resolver", po::value(&options.uplinkResolver)->value_name("ADDRESS[#PORT]"),
       "the resolver the VPC resolvers forward outside names to, for subnets that reach the internet "
       "(default: the host's first non-loopback nameserver in /etc/resolv.conf; none with --uplink-netns, "
       "then outside names are refused)")
      ("resolver-dir", po::value(&options.resolverDir)->value_name("DIR"),
       "where the VPC resolvers' dnsmasq files go (default: /run/corral/resolvers/ + the netns prefix)")
      ("dnsmasq", po::value(&options.dnsmasq)->default_value("dnsmasq"),
       "the dnsmasq binary each VPC's resolver runs (looked up in PATH)")
      ("lb-dir", po::value(&options.loadBalancerDir)->value_name("DIR"),
       "where the load balancers' HAProxy files go (default: /run/corral/lb/ + the netns prefix)")
      ("haproxy", po::value(&options.haproxy)->default_value("haproxy"),
       "the haproxy binary each load balancer runs (looked up in PATH)")
      ("transit-cidr", po::value(&options.transitCidr)->default_value("100.64.0.0/17"),
       "pool of the /30 links between internet gateways and the uplink")
      ("public-cidr", po::value(&options.publicCidr)->default_value("100.64.128.0/17"),
       "pool of public (1:1 NAT) addresses")
      ("subuid-file", po::value(&options.subuidFile)->default_value("/etc/subuid"),
       "a \"corral:START:COUNT\" line here (and the same in --subgid-file) is the pool of host ids that "
       "containers with a user namespace get 65536 each of; without one, 1879048192-2147352575")
      ("subgid-file", po::value(&options.subgidFile)->default_value("/etc/subgid"), "see --subuid-file")
      ("group-policy-period", po::value(&options.groupPolicyPeriodS)->default_value(10)->value_name("SECONDS"),
       "how often the groups' target-tracking policies sample their members' CPU; a policy scales out after 2 "
       "periods above its target, in after 3 below half of it, and waits 3 periods after each scaling")
      ("vm-boot-timeout", po::value(&options.vmBootTimeoutS)->default_value(90),
       "seconds a VM's guest has to become ready before it is destroyed")
      ("kvm-probe-timeout", po::value(&options.kvmProbeTimeoutS)->default_value(15),
       "seconds the KVM probe boot has to reach the guest's userspace")
      ("foreground", po::bool_switch(&options.foreground),
       "stay attached to the terminal instead of daemonising")
      ("flow-log-buffer", po::value(&options.flowLogBuffer)->value_name("BYTES")->default_value(net::kFlowCaptureBuffer),
       "receive buffer of each VPC's flow-log capture (NFLOG and conntrack events); what the kernel drops past "
       "it shows as a SKIPDATA flow-log record (4096 to 268435456)")
      ("read-timeout-ms", po::value(&options.readTimeoutMs)->default_value(10'000),
       "drop a connection that has not sent a complete request within this many milliseconds")
      ("http-port", po::value(&httpPort)->value_name("PORT"),
       "also serve the dashboard, read-only, on http://127.0.0.1:PORT/ (0 picks a free port; the page is "
       "always on the socket too)")
      ("peer-listen", po::value(&peerListen)->value_name("ADDRESS:PORT"),
       "also serve the whole API over TCP to the cluster's other corralds (the requests they forward to this "
       "host); each must carry the token of --peer-token-file (docs/cluster.md)")
      ("peer-token-file", po::value(&options.peerTokenFile)->value_name("PATH"),
       "the cluster's token, read at each peer request (mode 0600; missing: every peer request is refused)")
      ("ovn-northbound", po::value(&options.ovnNorthbound)->value_name("REMOTE"),
       "put the VPCs on OVN: their objects become rows of this northbound database (unix:PATH or tcp:IP:PORT) "
       "and container, VM and load balancer NICs ports of br-int (docs/cluster.md; needs --ovs-database)")
      ("ovn-southbound", po::value(&options.ovnSouthbound)->value_name("REMOTE"),
       "on OVN, the southbound database ovn-trace reads: `corral reach --verify` then also traces each path "
       "through OVN's logical flows (default: none, no traces)")
      ("ovs-database", po::value(&options.ovsDatabase)->value_name("REMOTE"),
       "this host's Open_vSwitch database, whose br-int ovn-controller binds (with --ovn-northbound)")
      ("ovs-netns", po::value(&options.ovsNetns)->value_name("NAME"),
       "the network namespace ovs-vswitchd runs in (default: corrald's own)")
      ("ovn-gateway-chassis", po::value(&options.ovnGatewayChassis)->value_name("SYSTEM_ID"),
       "on OVN, the chassis that carries the internet gateways (its ovn-controller's system-id); the same on "
       "every host of a cluster, as are --ovn-outside-network, --transit-cidr and --public-cidr (cluster init "
       "records them: join refuses a host with others, and a member does not start with others)")
      ("ovn-outside-network", po::value(&options.ovnOutsideNetwork)->value_name("NAME"),
       "on OVN, the physical network that chassis maps to the outside (ovn-bridge-mappings)")
      ("cluster-address", po::value(&options.clusterAddress)->value_name("IP"),
       "run as a host of a cluster (corral cluster init/join): the IPv4 address where this host's etcd member "
       "listens for clients and peers, and how the other hosts reach it; the cluster's hosts hold the same "
       "VPCs, and instances run on a host of their subnet's AZ (default: none, a single host)")
      ("host-name", po::value(&options.hostName)->value_name("NAME"),
       "this host's name in the cluster: 1-63 of a-z, 0-9 and '-' (default: the machine's hostname up to its "
       "first '.', lower-cased)")
      ("cluster-client-port", po::value(&options.clusterClientPort)->default_value(2379)->value_name("PORT"),
       "the TCP port of this host's etcd for clients (and the default port of `corral cluster join ADDR`)")
      ("cluster-peer-port", po::value(&options.clusterPeerPort)->default_value(2380)->value_name("PORT"),
       "the TCP port of this host's etcd for its peers")
      ("cluster-api-port", po::value(&options.clusterApiPort)->value_name("PORT"),
       "serve the peer API (the whole API for the cluster's other corralds, each request carrying the cluster's "
       "token) on CLUSTER_ADDRESS:PORT and advertise it in this host's key as api_url: the instances placed on "
       "this host and the requests for them come through it (default: none)")
      ("cluster-alive-ttl", po::value(&options.clusterAliveTtlS)->default_value(3)->value_name("SECONDS"),
       "the lease of this host's alive key (kept alive every third of it): a host whose corrald died is "
       "shown lost within this many seconds and one more, or a few more when its etcd member was the "
       "leader (an election, then etcd extends every lease) (1 to 60)")
      ("cluster-model-compact", po::value(&options.clusterModelCompact)->default_value(1000)->value_name("N"),
       "compact the cluster's model log once it holds more than N entries every host applied: a snapshot of "
       "the model replaces them (a host joining loads it); a host that is away holds compaction up (1 to "
       "1000000)")
      ("etcd", po::value(&options.etcd)->default_value("etcd"),
       "the etcd binary this host's cluster member runs (looked up in PATH)")
      ("log-level", po::value(&logLevel)->default_value("info"), "debug, info, warn or error");
  // clang-format on
  po::variables_map values;
  try {
    po::store(po::command_line_parser(argc, argv).options(described).run(), values);
    po::notify(values);
  } catch (const po::error& e) {
    return fail(Error(ErrorKind::InvalidArgument, fmt::format("{} (see corrald --help)", e.what())));
  }
  if (values.count("help")) {
    std::cout
        << "Usage: corrald [OPTIONS]\n\ncorrald: the corral daemon (REST/JSON API on a Unix socket).\n\n"
        << described << "\n";
    return std::nullopt;
  }
  if (values.count("list-failpoints")) {
    for (std::string_view name : failpoint::kFailpoints) std::cout << name << "\n";
    return std::nullopt;
  }
  if (values.count("version")) {
    std::cout << "corrald " CORRAL_VERSION "\n";
    return std::nullopt;
  }
  auto level = parseLogLevel(logLevel);
  if (!level) return fail(level.error());
  options.logLevel = *level;
  if (options.flowLogBuffer < 4096 || options.flowLogBuffer > (256 << 20)) {
    return fail(invalidField("flow-log-buffer", "{} is out of range: give 4096 to 268435456 bytes",
                             options.flowLogBuffer));
  }
  if (options.readTimeoutMs <= 0) {
    return fail(invalidField("read-timeout-ms", "must be a positive number of milliseconds, not {}",
                             options.readTimeoutMs));
  }
  if (values.count("http-port")) {
    if (httpPort < 0 || httpPort > 65535) {
      return fail(
          invalidField("http-port", "{} is not a TCP port: give 1 to 65535, or 0 for a free one", httpPort));
    }
    options.httpPort = static_cast<uint16_t>(httpPort);
  }
  if (values.count("peer-listen")) {
    auto peer = parsePeerEndpoint(peerListen, "peer-listen");
    if (!peer) return fail(peer.error());
    if (options.peerTokenFile.empty())
      return fail(
          invalidField("peer-token-file", "--peer-listen needs the file holding the cluster's token"));
    options.peerListen = *peer;
  }
  if (!options.ovnNorthbound.empty() || !options.ovsDatabase.empty()) {
    if (options.ovnNorthbound.empty())
      return fail(invalidField("ovn-northbound", "--ovs-database needs the northbound database too"));
    if (options.ovsDatabase.empty())
      return fail(
          invalidField("ovs-database", "--ovn-northbound needs this host's Open_vSwitch database too"));
    if (auto remote = net::ovsdb::parseRemote(options.ovnNorthbound); !remote)
      return fail(invalidField("ovn-northbound", "{}", remote.error().message()));
    if (auto remote = net::ovsdb::parseRemote(options.ovsDatabase); !remote)
      return fail(invalidField("ovs-database", "{}", remote.error().message()));
    if (!options.ovnSouthbound.empty()) {
      if (auto remote = net::ovsdb::parseRemote(options.ovnSouthbound); !remote)
        return fail(invalidField("ovn-southbound", "{}", remote.error().message()));
    }
  } else if (!options.ovsNetns.empty() || !options.ovnGatewayChassis.empty() ||
             !options.ovnOutsideNetwork.empty() || !options.ovnSouthbound.empty()) {
    return fail(
        invalidField("ovn-northbound",
                     "--ovs-netns, --ovn-southbound and --ovn-gateway-* belong to the OVN backend: give "
                     "--ovn-northbound and --ovs-database"));
  }
  if (options.ovnGatewayChassis.empty() != options.ovnOutsideNetwork.empty()) {
    return fail(
        invalidField(options.ovnGatewayChassis.empty() ? "ovn-gateway-chassis" : "ovn-outside-network",
                     "--ovn-gateway-chassis and --ovn-outside-network go together"));
  }
  if (options.stateDir.empty()) return fail(invalidField("state-dir", "must not be empty"));
  if (values.count("cluster-address")) {
    auto address = net::Ipv4Address::parse(options.clusterAddress, "cluster-address");
    if (!address) return fail(address.error());
    if (address->octet(0) == 0 || address->octet(0) >= 224) {
      return fail(invalidField("cluster-address",
                               "{} is not an address other hosts can reach: give this host's "
                               "unicast address",
                               options.clusterAddress));
    }
  }
  for (auto [flag, port] : {std::pair{"cluster-client-port", options.clusterClientPort},
                            std::pair{"cluster-peer-port", options.clusterPeerPort}}) {
    if (port < 1 || port > 65535)
      return fail(invalidField(flag, "{} is not a TCP port: give 1 to 65535", port));
  }
  if (options.clusterClientPort == options.clusterPeerPort) {
    return fail(invalidField("cluster-peer-port", "{} is the client port too: give two different ports",
                             options.clusterPeerPort));
  }
  if (values.count("cluster-api-port")) {
    if (options.clusterApiPort < 1 || options.clusterApiPort > 65535)
      return fail(
          invalidField("cluster-api-port", "{} is not a TCP port: give 1 to 65535", options.clusterApiPort));
    if (options.clusterAddress.empty())
      return fail(invalidField("cluster-api-port", "needs --cluster-address (the address it listens on)"));
    if (options.peerListen)
      return fail(
          invalidField("cluster-api-port", "--peer-listen names the peer port already: give one of them"));
    if (options.clusterApiPort == options.clusterClientPort ||
        options.clusterApiPort == options.clusterPeerPort) {
      return fail(invalidField("cluster-api-port", "{} is one of etcd's ports: give another",
                               options.clusterApiPort));
    }
    options.peerListen = PeerEndpoint{.address = options.clusterAddress,
                                      .port = static_cast<uint16_t>(options.clusterApiPort)};
  }
  if (options.clusterModelCompact < 1 || options.clusterModelCompact > 1000000) {
    return fail(invalidField("cluster-model-compact", "{} is out of range: give 1 to 1000000 entries",
                             options.clusterModelCompact));
  }
  if (options.clusterAliveTtlS < 1 || options.clusterAliveTtlS > 60) {
    return fail(invalidField("cluster-alive-ttl", "{} is out of range: give 1 to 60 seconds",
                             options.clusterAliveTtlS));
  }
  // Only a cluster host needs a name: a single host's machine name may be anything.
  const bool namedHost = values.count("host-name") > 0;
  if (!options.clusterAddress.empty() || namedHost) {
    if (!namedHost) {
      char name[256] = {};
      ::gethostname(name, sizeof name - 1);
      std::string text(name);
      text = text.substr(0, text.find('.'));
      std::transform(text.begin(), text.end(), text.begin(), [](unsigned char c) { return std::tolower(c); });
      options.hostName = text;
    }
    if (auto ok = schema::validateName(options.hostName, "host-name"); !ok) {
      return fail(
          Error(ErrorKind::InvalidArgument,
                ok.error().message() + (namedHost ? "" : " (the machine's hostname: give --host-name)"),
                "host-name"));
    }
  }
  if (options.logFile.empty()) options.logFile = options.stateDir + "/corrald.log";
  if (options.containersDir.empty()) options.containersDir = options.stateDir + "/containers";
  if (options.vmsDir.empty()) options.vmsDir = options.stateDir + "/vms";
  // Checked when an instance asks for --init, not here.
  if (options.reaperPath.empty()) options.reaperPath = (layout.helperDir / "corral-reaper").string();
  if (values.count("socket-group") && options.socketGroup.empty()) {
    return fail(invalidField("socket-group", "must not be empty: give a group name"));
  }
  auto socketGroup = socketGroupId(options.socketGroup);
  if (!socketGroup) return fail(socketGroup.error());
  options.socketGroupId = *socketGroup;
  auto acceleratorMode = parseAcceleratorMode(accelerator);
  if (!acceleratorMode) return fail(acceleratorMode.error());
  options.accelerator = *acceleratorMode;
  auto vmEngineMode = parseVmEngineMode(vmEngine);
  if (!vmEngineMode) return fail(vmEngineMode.error());
  options.vmEngine = *vmEngineMode;
  auto chosenVmUser = parseVmUser(vmUser);
  if (!chosenVmUser) return fail(chosenVmUser.error());
  options.vmUser = std::move(*chosenVmUser);
  if (options.vmBootTimeoutS < 1 || options.vmBootTimeoutS > 3600) {
    return fail(invalidField("vm-boot-timeout", "{} is out of range: give 1 to 3600 seconds",
                             options.vmBootTimeoutS));
  }
  if (options.netnsPrefix.empty() || options.netnsPrefix.size() > 40 ||
      options.netnsPrefix.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-") != std::string::npos) {
    return fail(invalidField("netns-prefix", "\"{}\" must be 1-40 of a-z, 0-9 and '-'", options.netnsPrefix));
  }
  if (!options.uplinkNetns.empty() &&
      (options.uplinkNetns.size() > 64 || options.uplinkNetns.find('/') != std::string::npos ||
       options.uplinkNetns.starts_with("."))) {
    return fail(
        invalidField("uplink-netns", "\"{}\" is not a namespace name under /run/netns", options.uplinkNetns));
  }
  if (!options.uplinkResolver.empty()) {
    const std::string& text = options.uplinkResolver;
    const size_t hash = text.find('#');
    auto address = net::Ipv4Address::parse(text.substr(0, hash), "uplink-resolver");
    if (!address) return fail(address.error());
    if (hash != std::string::npos) {
      const std::string port = text.substr(hash + 1);
      if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
          std::stoi(port) == 0 || std::stoi(port) > 65535)
        return fail(invalidField("uplink-resolver", "\"{}\": the port after '#' must be 1-65535", text));
    }
  }
  if (options.resolverDir.empty()) options.resolverDir = "/run/corral/resolvers/" + options.netnsPrefix;
  if (values.count("lb-dir") && options.loadBalancerDir.empty())
    return fail(invalidField("lb-dir", "must not be empty"));
  if (options.loadBalancerDir.empty()) options.loadBalancerDir = "/run/corral/lb/" + options.netnsPrefix;
  for (auto [field, text] :
       {std::pair{"transit-cidr", &options.transitCidr}, std::pair{"public-cidr", &options.publicCidr}}) {
    auto cidr = net::Cidr::parse(*text, field);
    if (!cidr) return fail(cidr.error());
    if (cidr->prefix() > 28) return fail(invalidField(field, "{} is too small: give a /28 or larger", *text));
  }
  if (options.groupPolicyPeriodS < 1 || options.groupPolicyPeriodS > 600) {
    return fail(invalidField("group-policy-period", "{} is out of range: give 1 to 600 seconds",
                             options.groupPolicyPeriodS));
  }
  if (options.kvmProbeTimeoutS < 1 || options.kvmProbeTimeoutS > 600) {
    return fail(invalidField("kvm-probe-timeout", "{} is out of range: give 1 to 600 seconds",
                             options.kvmProbeTimeoutS));
  }
  if (options.domainPrefix.empty() || options.domainPrefix.size() > 32 ||
      options.domainPrefix.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789-_") != std::string::npos) {
    return fail(
        invalidField("domain-prefix", "\"{}\" must be 1-32 of a-z, 0-9, '-' and '_'", options.domainPrefix));
  }
  if (values.count("image-dir") && options.imageDir.empty()) {
    return fail(invalidField("image-dir", "must not be empty"));
  }
  if (options.imageDir.empty()) {
    options.imageDir = layout.imageDir ? layout.imageDir->string() : "/var/lib/corral/images";
  }
  if (Status ok = net::validateName(options.cgroupParent, "cgroup-parent"); !ok) return fail(ok.error());
  // Absolute paths, because the daemon chdirs to / and the socket path is shown to clients.
  std::error_code ec;
  for (std::string* path :
       {&options.socketPath, &options.stateDir, &options.logFile, &options.imageDir, &options.containersDir,
        &options.vmsDir, &options.acceleratorCache, &options.reaperPath, &options.pidFile,
        &options.resolverDir, &options.loadBalancerDir}) {
    if (path->empty()) continue;
    auto absolute = std::filesystem::absolute(*path, ec);
    if (!ec) *path = absolute.lexically_normal().string();
  }
  return options;
}

// Where the VPC resolvers send outside names: --uplink-resolver, else (the host being the uplink) the
// host's first nameserver that a VPC namespace can reach (not loopback: 127.0.0.53 is the host's alone).
std::optional<std::string> uplinkResolver(const Options& options) {
  if (!options.uplinkResolver.empty()) return options.uplinkResolver;
  if (!options.uplinkNetns.empty()) return std::nullopt;
  std::ifstream resolvConf("/etc/resolv.conf");
  std::string line;
  while (std::getline(resolvConf, line)) {
    std::istringstream words(line);
    std::string keyword, server;
    if (!(words >> keyword >> server) || keyword != "nameserver") continue;
    auto address = net::Ipv4Address::parse(server);
    if (address && address->octet(0) != 127) return server;
  }
  return std::nullopt;
}

// The state directory holds the database and nobody else's business: 0700, parents 0755.
Status prepareStateDir(const std::string& dir) {
  std::filesystem::path path(dir);
  std::error_code ec;
  if (path.has_parent_path() && !std::filesystem::exists(path.parent_path(), ec)) {
    std::filesystem::create_directories(path.parent_path(), ec);
    if (ec) return fail(systemError(ec.value(), fmt::format("mkdir -p \"{}\"", path.parent_path().string())));
  }
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return fail(systemError(errno, fmt::format("mkdir(\"{}\", 0700)", dir)));
  }
  struct stat info {};
  if (::stat(dir.c_str(), &info) != 0) return fail(systemError(errno, fmt::format("stat(\"{}\")", dir)));
  if (!S_ISDIR(info.st_mode)) return fail(Error(ErrorKind::InvalidArgument, "exists and is not a directory"));
  if (::access(dir.c_str(), W_OK | X_OK) != 0) {
    return fail(
        systemError(errno, fmt::format("access(\"{}\", W_OK) (the state directory must be writable)", dir)));
  }
  return {};
}

// The pid file, whole or not at all (write-tmp-then-rename), its directory made like the socket's.
Status writePidFile(const std::string& path) {
  std::filesystem::path file(path);
  std::error_code ec;
  std::filesystem::create_directories(file.parent_path(), ec);
  if (ec) return fail(systemError(ec.value(), fmt::format("mkdir -p \"{}\"", file.parent_path().string())));
  const std::string temporary = fmt::format("{}.tmp.{}", path, ::getpid());
  UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", temporary)));
  const std::string text = fmt::format("{}\n", ::getpid());
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    int error = errno;
    ::unlink(temporary.c_str());
    return fail(systemError(error, fmt::format("write(\"{}\")", temporary)));
  }
  fd.reset();
  if (::rename(temporary.c_str(), path.c_str()) != 0) {
    int error = errno;
    ::unlink(temporary.c_str());
    return fail(systemError(error, fmt::format("rename(\"{}\", \"{}\")", temporary, path)));
  }
  return {};
}

// Reports the daemon's startup outcome to the process that launched it, so `corrald && corral info` works:
// the launcher exits only once the socket listens, with the daemon's error if startup failed.
class StartupReport {
 public:
  StartupReport() = default;
  explicit StartupReport(UniqueFd pipe) : pipe_(std::move(pipe)) {}

  void failed(const std::string& message) {
    std::string line = "corrald: " + message + "\n";
    if (pipe_) {
      writeAll(line);
      pipe_.reset();
    }
    // In the foreground stderr is the terminal (or the journal); detached it is /dev/null.
    std::fputs(line.c_str(), stderr);
  }
  void ready() {
    if (pipe_) {
      writeAll("OK");
      pipe_.reset();
    }
  }

 private:
  void writeAll(std::string_view text) {
    while (!text.empty()) {
      ssize_t n = ::write(pipe_.get(), text.data(), text.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return;
      text.remove_prefix(static_cast<size_t>(n));
    }
  }
  UniqueFd pipe_;
};

// Runs in the launching process: waits for the daemon's report and exits with it.
[[noreturn]] void waitForDaemon(UniqueFd report, pid_t child, const Options& options) {
  // The intermediate child exits right after forking the daemon.
  int status = 0;
  while (::waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }
  std::string text;
  char buffer[512];
  for (;;) {
    ssize_t n = ::read(report.get(), buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buffer, static_cast<size_t>(n));
  }
  if (text == "OK") std::_Exit(0);
  if (text.empty())
    text = fmt::format("corrald: the daemon exited during startup; see \"{}\"\n", options.logFile);
  std::fputs(text.c_str(), stderr);
  std::_Exit(1);
}

// Double fork + setsid: the daemon is not a session leader, so it can never reacquire a terminal.
Result<StartupReport> daemonise(const Options& options) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail(systemError(errno, "pipe2()"));
  UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
  std::fflush(nullptr);
  pid_t child = ::fork();
  if (child < 0) return fail(systemError(errno, "fork()"));
  if (child > 0) {
    writeEnd.reset();
    waitForDaemon(std::move(readEnd), child, options);
  }
  readEnd.reset();
  if (::setsid() < 0) std::_Exit(1);
  pid_t daemon = ::fork();
  if (daemon < 0) std::_Exit(1);
  if (daemon > 0) std::_Exit(0);

  // From here on failures go back to the launcher through the report pipe.
  StartupReport report(std::move(writeEnd));
  auto fatal = [&report](const Error& error) {
    report.failed(error.wrap("detaching").message());
    std::_Exit(1);
  };
  if (::chdir("/") != 0) fatal(systemError(errno, "chdir(\"/\")"));
  ::umask(022);
  UniqueFd devNull(::open("/dev/null", O_RDWR | O_CLOEXEC));
  if (!devNull) fatal(systemError(errno, "open(\"/dev/null\")"));
  for (int fd : {STDIN_FILENO, STDOUT_FILENO, STDERR_FILENO}) {
    if (::dup2(devNull.get(), fd) < 0) fatal(systemError(errno, fmt::format("dup2(/dev/null, {})", fd)));
  }
  return report;
}

int run(const Options& options, StartupReport& report) {
  log::setLevel(options.logLevel);
  if (auto dir = prepareStateDir(options.stateDir); !dir) {
    report.failed(dir.error().wrap(fmt::format("state directory \"{}\"", options.stateDir)).message());
    return 1;
  }
  if (auto logFile = log::openFile(options.logFile); !logFile) {
    report.failed(logFile.error().wrap("log file").message());
    return 1;
  }
  const std::string dbPath = options.stateDir + "/state.db";
  auto store = Store::open(dbPath);
  if (!store) {
    report.failed(store.error().wrap(fmt::format("state database \"{}\"", dbPath)).message());
    return 1;
  }
  std::error_code ec;
  for (const std::string& dir : {options.containersDir, options.vmsDir}) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      report.failed(fmt::format("directory \"{}\": mkdir: {}", dir, ec.message()));
      return 1;
    }
  }
  // --vm-user: QEMU opens its console log, agent socket and run directory under VMS_DIR as that user, so
  // the state directory lets it pass (0711) and keeps everything else in it private.
  VmUserChoice vmUser = options.vmUser;
  if (Status settled = settleVmUser(vmUser, options.stateDir, options.vmsDir); !settled) {
    const Error& error = settled.error();
    report.failed(error.field().empty() ? error.message()
                                        : fmt::format("--{}: {}", error.field(), error.message()));
    return 1;
  }
  if (vmUser.mode == VmUserChoice::Mode::automatic)
    log::info("vm-user auto: QEMU runs as {}: {}", vmUser.name, vmUser.reason);
  // One image store for the image API and the drivers; opening it clears what a crash mid-pull left.
  const std::string imagesRoot = options.stateDir + "/images";
  std::filesystem::create_directories(imagesRoot, ec);
  if (ec) {
    report.failed(fmt::format("directory \"{}\": mkdir: {}", imagesRoot, ec.message()));
    return 1;
  }
  auto imageStore = openImageStore(options.stateDir);
  if (!imageStore) {
    report.failed(imageStore.error().message());
    return 1;
  }
  std::shared_ptr<images::ImageStore> sharedImageStore = *imageStore;
  // The database, the log, the image store and the containers' directory exist now: none of them is the VM
  // user's business.
  if (Status kept = privatiseStateDir(options.stateDir, options.vmsDir); !kept) {
    report.failed(kept.error().wrap("state directory").message());
    return 1;
  }
  InstanceOptions instanceOptions{.imageDir = options.imageDir,
                                  .containersDir = options.containersDir,
                                  .cgroupOptions = {.root = "/sys/fs/cgroup", .parent = options.cgroupParent},
                                  .vmsDir = options.vmsDir,
                                  .libvirtUri = options.libvirtUri,
                                  .domainPrefix = options.domainPrefix,
                                  .accelerator = options.accelerator,
                                  .vmEngine = options.vmEngine,
                                  .vmUser = vmUser,
                                  .acceleratorCache = options.acceleratorCache,
                                  .vmBootTimeout = std::chrono::seconds(options.vmBootTimeoutS),
                                  .kvmProbeTimeout = std::chrono::seconds(options.kvmProbeTimeoutS),
                                  .reaperPath = options.reaperPath,
                                  .subuidFile = options.subuidFile,
                                  .subgidFile = options.subgidFile,
                                  .imageStore = sharedImageStore};
  NetworkOptions networkOptions{.netnsPrefix = options.netnsPrefix,
                                .uplink = {.netns = options.uplinkNetns,
                                           .transitPool = *net::Cidr::parse(options.transitCidr),
                                           .publicPool = *net::Cidr::parse(options.publicCidr)},
                                .kernel = true,
                                .resolverDir = options.resolverDir,
                                .dnsmasq = options.dnsmasq,
                                .upstreamResolver = uplinkResolver(options),
                                .loadBalancerDir = options.loadBalancerDir,
                                .haproxy = options.haproxy,
                                .flowLogBuffer = static_cast<int>(options.flowLogBuffer),
                                .ovn = std::nullopt,
                                .ovnGatewayChassis = options.ovnGatewayChassis,
                                .ovnOutsideNetwork = options.ovnOutsideNetwork};
  // A cluster host starting again (Cluster keeps what this host is in in STATE_DIR/cluster/member.json):
  // OVN's rows and the groups' passes wait for its copy of the cluster's model.
  std::error_code unreadableMember;
  const bool restartingMember =
      !options.clusterAddress.empty() &&
      std::filesystem::exists(options.stateDir + "/cluster/member.json", unreadableMember);
  if (!options.ovnNorthbound.empty()) {
    if (!options.ovsNetns.empty() && !net::netnsExists(options.ovsNetns)) {
      report.failed(fmt::format("--ovs-netns: namespace \"{}\" does not exist", options.ovsNetns));
      return 1;
    }
    networkOptions.ovn = OvnFabricOptions{.northbound = options.ovnNorthbound,
                                          .ovsDatabase = options.ovsDatabase,
                                          .ovsNetns = options.ovsNetns,
                                          .prefix = options.netnsPrefix,
                                          .southbound = options.ovnSouthbound};
    networkOptions.ovnAwaitCluster = restartingMember;
  }
  if (!networkOptions.uplink.netns.empty() && !net::netnsExists(networkOptions.uplink.netns)) {
    report.failed(fmt::format("--uplink-netns: namespace \"{}\" does not exist (ip netns add {})",
                              networkOptions.uplink.netns, networkOptions.uplink.netns));
    return 1;
  }
  GroupOptions groupOptions;
  groupOptions.policyPeriod = std::chrono::seconds(options.groupPolicyPeriodS);
  groupOptions.awaitCluster = restartingMember;
  auto service =
      Service::load(std::move(*store), std::move(instanceOptions), std::move(networkOptions), groupOptions);
  if (!service) {
    report.failed(service.error().message());
    return 1;
  }
  if (!options.clusterAddress.empty()) {
    if (auto cluster = (*service)->openCluster(
            {.address = options.clusterAddress,
             .hostName = options.hostName,
             .clientPort = static_cast<uint16_t>(options.clusterClientPort),
             .peerPort = static_cast<uint16_t>(options.clusterPeerPort),
             .dir = options.stateDir + "/cluster",
             .etcd = options.etcd,
             .aliveTtlSeconds = options.clusterAliveTtlS,
             .apiPort = static_cast<uint16_t>(options.clusterApiPort),
             .gateway = {.ovnGatewayChassis = options.ovnGatewayChassis,
                         .ovnOutsideNetwork = options.ovnOutsideNetwork,
                         .transitCidr = net::Cidr::parse(options.transitCidr)->str(),
                         .publicCidr = net::Cidr::parse(options.publicCidr)->str()},
             .modelCompactEntries = static_cast<uint64_t>(options.clusterModelCompact)});
        !cluster) {
      report.failed(cluster.error().message());
      return 1;
    }
  }
  if (auto images = (*service)->openImages({.root = imagesRoot,
                                            .busyboxRootfs = options.imageDir + "/busybox/rootfs",
                                            .authFile = options.registryAuth,
                                            .store = sharedImageStore});
      !images) {
    report.failed(images.error().wrap(fmt::format("images \"{}\"", imagesRoot)).message());
    return 1;
  }
  auto server = HttpServer::listen(
      **service,
      {.socketPath = options.socketPath,
       .socketGroup = options.socketGroupId,
       .readTimeout = std::chrono::milliseconds(options.readTimeoutMs),
       .dashboardPort = options.httpPort,
       .peer = options.peerListen,
       // --peer-token-file's token, else (--cluster-api-port) the cluster's while this host is in one.
       .peerToken = [file = options.peerTokenFile, service = service->get()]() -> std::optional<std::string> {
         if (!file.empty()) return readPeerToken(file);
         return service->clusterPeerToken();
       }});
  if (!server) {
    const Error& error = server.error();
    report.failed(error.field().empty() ? error.message()
                                        : fmt::format("--{}: {}", error.field(), error.message()));
    return 1;
  }
  std::optional<std::string> dashboardUrl;
  if (auto port = (*server)->dashboardPort()) dashboardUrl = fmt::format("http://127.0.0.1:{}/", *port);
  (*service)->setDashboardUrl(dashboardUrl);
  log::info("dashboard: {} (and http://corrald/ on the socket)",
            dashboardUrl.value_or("no TCP port (--http-port)"));
  if (auto port = (*server)->peerPort()) {
    log::info("peer API: {}:{} (requests carry {})", options.peerListen->address, *port,
              options.peerTokenFile.empty() ? std::string("the cluster's token")
                                            : fmt::format("the token of \"{}\"", options.peerTokenFile));
  }
  ObjectCounts n = (*service)->counts();
  log::info("corrald {} listening on \"{}\" (pid {})", CORRAL_VERSION, options.socketPath, ::getpid());
  log::info(
      "state \"{}\": {} vpcs, {} subnets, {} route tables, {} internet gateways, {} nat gateways, "
      "{} security groups, {} network acls",
      dbPath, n.vpcs, n.subnets, n.routeTables, n.internetGateways, n.natGateways, n.securityGroups,
      n.networkAcls);
  log::info("instances: {}; images in \"{}\", bundles in \"{}\", cgroup parent \"{}\"",
            (*service)->instanceCount(), options.imageDir, options.containersDir, options.cgroupParent);
  if (!options.pidFile.empty()) {
    if (auto written = writePidFile(options.pidFile); !written) {
      report.failed(written.error().wrap(fmt::format("--pid-file \"{}\"", options.pidFile)).message());
      return 1;
    }
  }
  report.ready();
  (*server)->run();
  if (!options.pidFile.empty()) ::unlink(options.pidFile.c_str());
  log::info("corrald stopped; socket \"{}\" removed", options.socketPath);
  return 0;
}

}  // namespace
}  // namespace corral::daemon

int main(int argc, char** argv) {
  // A C++ exception nothing caught ends corrald: its message and where it was thrown go to the log (stderr),
  // so the crash can be found (addr2line -C -f -e corrald OFFSET), then the default abort.
  std::set_terminate([] {
    if (std::exception_ptr current = std::current_exception()) {
      try {
        std::rethrow_exception(current);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "corrald: terminating on an uncaught exception: %s\n", e.what());
      } catch (...) {
        std::fprintf(stderr, "corrald: terminating on an uncaught exception\n");
      }
    }
    void* frames[64];
    backtrace_symbols_fd(frames, backtrace(frames, 64), 2);
    std::abort();
  });
  using namespace corral::daemon;
  auto options = parseOptions(argc, argv);
  if (!options) {
    const corral::Error& error = options.error();
    std::string where = error.field().empty() ? "" : "--" + error.field() + ": ";
    std::fprintf(stderr, "corrald: %s%s\n", where.c_str(), error.message().c_str());
    return 2;
  }
  if (!*options) return 0;
  // A client that hangs up mid-response must cost us an EPIPE, not the process.
  std::signal(SIGPIPE, SIG_IGN);
  StartupReport report;
  if (!(*options)->foreground) {
    auto detached = daemonise(**options);
    if (!detached) {
      std::fprintf(stderr, "corrald: %s\n", detached.error().message().c_str());
      return 1;
    }
    report = std::move(*detached);
  }
  return run(**options, report);
}
