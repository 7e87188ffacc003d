// Kernel object names, uplink address choice, port forwards and the per-VPC plan (bridges, policy
// routing, internet gateway, NIC ports, ruleset), derived purely from the model.
#include "net/datapath.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <tuple>

#include "net/nft.h"
#include "net/resolver.h"

namespace corral::net {

uint32_t fnv1a32(std::string_view text) {
  uint32_t hash = 2166136261u;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 16777619u;
  }
  return hash;
}

namespace {

std::string hashedName(std::string_view kind, std::string_view input) {
  return fmt::format("{}{}{:08x}", kLinkPrefix, kind, fnv1a32(input));
}

std::string vpcNetnsPrefix(std::string_view prefix) {
  return fmt::format("{}vpc-", prefix);
}

Ipv4Address routerAddress(const Cidr& subnet) {
  return Ipv4Address(subnet.first().value() + 1);
}

Result<uint16_t> parsePort(std::string_view text, std::string_view what, std::string_view field) {
  if (text.empty() || !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return fail(invalidField(std::string(field), "{} port \"{}\" is not a number", what, text));
  }
  uint64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec == std::errc::result_out_of_range || value > 65535) {
    return fail(invalidField(std::string(field), "{} port {} is above 65535", what, text));
  }
  if (ec != std::errc() || end != text.data() + text.size()) {
    return fail(invalidField(std::string(field), "{} port \"{}\" is not a number", what, text));
  }
  if (value == 0) return fail(invalidField(std::string(field), "{} port 0 is not a usable port", what));
  return static_cast<uint16_t>(value);
}

// Byte `index` (0 = most significant) of `key`'s FNV-1a hash.
unsigned hashByte(std::string_view key, int index) {
  return (fnv1a32(key) >> (24 - 8 * index)) & 0xff;
}

// 02:KIND:... with four bytes of `key`'s hash: locally administered, unicast; KIND keeps corral's kinds of
// MAC (c0 containers, c1 subnet bridges) apart from each other and from other local MACs.
std::string localMac(unsigned kind, std::string_view key) {
  return fmt::format("02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", kind, hashByte(key, 0), hashByte(key, 1),
                     hashByte(key, 2), hashByte(key, 3));
}

}  // namespace

std::string vpcNetnsName(std::string_view prefix, std::string_view vpc) {
  return fmt::format("{}{}", vpcNetnsPrefix(prefix), vpc);
}

std::optional<std::string> vpcFromNetnsName(std::string_view prefix, std::string_view netns) {
  const std::string start = vpcNetnsPrefix(prefix);
  if (!netns.starts_with(start)) return std::nullopt;
  std::string_view vpc = netns.substr(start.size());
  if (!validateName(vpc)) return std::nullopt;
  return std::string(vpc);
}

std::string subnetBridgeName(std::string_view vpc, std::string_view subnet) {
  return hashedName("b", fmt::format("{}/{}", vpc, subnet));
}

std::string instanceVethName(std::string_view key) {
  return hashedName("v", key);
}

std::string instanceTapName(std::string_view key) {
  return hashedName("t", key);
}

std::string instanceMac(std::string_view instance, bool vm) {
  if (vm)
    return fmt::format("52:54:00:{:02x}:{:02x}:{:02x}", hashByte(instance, 1), hashByte(instance, 2),
                       hashByte(instance, 3));
  return localMac(0xc0, instance);
}

std::string subnetBridgeMac(std::string_view bridge) {
  return localMac(0xc1, bridge);
}

std::string gatewayLinkName(std::string_view netns) {
  return hashedName("g", netns);
}

std::string uplinkLinkName(std::string_view netns) {
  return hashedName("u", netns);
}

std::string peeringLinkName(std::string_view netns, std::string_view peering) {
  return hashedName("p", fmt::format("{}/{}", netns, peering));
}

// ---- Addresses outside the VPCs ----

Result<Cidr> chooseTransit(const UplinkSettings& settings, std::string_view vpc,
                           const std::set<Cidr>& taken) {
  const Cidr& pool = settings.transitPool;
  if (pool.prefix() > 30) {
    return fail(conflict("transit pool {} is smaller than one /30, no internet gateway fits", pool.str()));
  }
  const uint32_t count = uint32_t{1} << (30 - pool.prefix());  // at most 2^30: a /0 pool
  const uint32_t slot = fnv1a32(vpc) % count;
  for (uint32_t probe = 0; probe < count; ++probe) {
    const uint32_t index = (slot + probe) % count;
    const Cidr candidate = Cidr::containing(Ipv4Address(pool.network().value() + 4 * index), 30);
    // Overlap, not equality: a taken entry of another size still blocks the /30s it covers.
    bool used = std::any_of(taken.begin(), taken.end(), [&](const Cidr& t) { return t.overlaps(candidate); });
    if (!used) return candidate;
  }
  return fail(conflict("transit pool {} is full: all {} /30 blocks are used by other VPCs' internet gateways",
                       pool.str(), count));
}

Result<Cidr> transitInModel(const UplinkSettings& settings, const Topology& topology, std::string_view vpc) {
  std::vector<const Vpc*> withGateway;
  for (const Vpc* candidate : topology.vpcs()) {
    if (!topology.internetGateways(candidate->name).empty()) withGateway.push_back(candidate);
  }
  std::sort(withGateway.begin(), withGateway.end(), [](const Vpc* a, const Vpc* b) {
    return std::tie(a->createdAt, a->name) < std::tie(b->createdAt, b->name);
  });
  std::set<Cidr> taken;
  for (const Vpc* other : withGateway) {
    auto chosen = chooseTransit(settings, other->name, taken);
    if (!chosen) return fail(chosen.error());
    if (other->name == vpc) return chosen;
    taken.insert(*chosen);
  }
  return fail(notFound("vpc \"{}\" has no internet gateway, so no transit network", vpc));
}

Result<Ipv4Address> choosePublicAddress(const UplinkSettings& settings, const std::set<Ipv4Address>& taken) {
  const Cidr& pool = settings.publicPool;
  if (pool.size() > 2) {
    // 64-bit so that a pool ending at 255.255.255.255 cannot wrap.
    for (uint64_t value = uint64_t{pool.first().value()} + 1; value < pool.last().value(); ++value) {
      Ipv4Address candidate(static_cast<uint32_t>(value));
      if (!taken.contains(candidate)) return candidate;
    }
  }
  return fail(conflict("public address pool {} is exhausted", pool.str()));
}

// ---- NICs ----

Result<PortForward> parsePortForward(std::string_view text, std::string_view field) {
  PortForward forward;
  std::string_view ports = text;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    std::string_view protocol = text.substr(slash + 1);
    ports = text.substr(0, slash);
    if (protocol == "tcp") {
      forward.protocol = Protocol::Tcp;
    } else if (protocol == "udp") {
      forward.protocol = Protocol::Udp;
    } else {
      return fail(invalidField(std::string(field), "protocol must be tcp or udp, not \"{}\"", protocol));
    }
  }
  size_t colon = ports.find(':');
  if (colon == std::string_view::npos) {
    return fail(
        invalidField(std::string(field), "\"{}\" is not OUTSIDE_PORT:INSTANCE_PORT[/tcp|/udp]", text));
  }
  auto outside = parsePort(ports.substr(0, colon), "outside", field);
  if (!outside) return fail(outside.error());
  auto instance = parsePort(ports.substr(colon + 1), "instance", field);
  if (!instance) return fail(instance.error());
  forward.outsidePort = *outside;
  forward.instancePort = *instance;
  return forward;
}

std::string portForwardText(const PortForward& forward) {
  return fmt::format("{}:{}/{}", forward.outsidePort, forward.instancePort, protocolName(forward.protocol));
}

// ---- The plan ----

VpcPlan planVpc(const Topology& topology, std::string_view vpc, std::string_view netnsPrefix,
                const std::vector<NicAttachment>& nics, const UplinkSettings& uplink,
                const std::optional<Cidr>& transit) {
  VpcPlan plan;
  plan.vpc = std::string(vpc);
  plan.netns = vpcNetnsName(netnsPrefix, vpc);
  if (const Vpc* v = topology.findVpc(vpc)) plan.cidr = v->cidr;

  // subnets() is sorted by name already.
  const std::vector<const Subnet*> subnets = topology.subnets(vpc);
  for (const Subnet* subnet : subnets) {
    plan.bridges.push_back(BridgePlan{
        .subnet = subnet->name,
        .bridge = subnetBridgeName(vpc, subnet->name),
        .cidr = subnet->cidr,
        .routerAddress = fmt::format("{}/{}", routerAddress(subnet->cidr).str(), subnet->cidr.prefix()),
        .resolverAddress = fmt::format("{}/{}", resolverAddress(subnet->cidr).str(), subnet->cidr.prefix())});
  }

  // The NICs of this VPC: a NIC belongs where its subnet does. Those of peered VPCs matter only as
  // members of groups our rules may name.
  std::vector<NicAttachment> ours;
  std::vector<NicAttachment> peered;
  for (const NicAttachment& nic : nics) {
    const Subnet* subnet = topology.findSubnet(nic.subnet);
    if (subnet == nullptr) continue;
    if (subnet->vpc == vpc) {
      ours.push_back(nic);
    } else if (topology.peeringBetween(vpc, subnet->vpc)) {
      peered.push_back(nic);
    }
  }
  std::sort(peered.begin(), peered.end(),
            [](const NicAttachment& a, const NicAttachment& b) { return a.instance < b.instance; });

  // peerings() is sorted by name.
  for (const Peering* peering : topology.peerings(vpc)) {
    const bool requester = peering->vpc == vpc;
    const std::string& peerVpc = peering->otherSide(vpc);
    const Vpc* peer = topology.findVpc(peerVpc);
    if (peer == nullptr) continue;
    const std::string peerNetns = vpcNetnsName(netnsPrefix, peerVpc);
    auto address = [&](uint32_t host) {
      return fmt::format("{}/{}", Ipv4Address(peering->link.network().value() + host).str(),
                         peering->link.prefix());
    };
    plan.peerings.push_back(PeeringPlan{.name = peering->name,
                                        .peerVpc = peerVpc,
                                        .link = peeringLinkName(plan.netns, peering->name),
                                        .peerNetns = peerNetns,
                                        .peerLink = peeringLinkName(peerNetns, peering->name),
                                        .address = address(requester ? 1 : 2),
                                        .peerAddress = address(requester ? 2 : 1),
                                        .peerCidr = peer->cidr});
  }
  std::sort(ours.begin(), ours.end(), [](const NicAttachment& a, const NicAttachment& b) {
    return std::tie(a.instance, a.address) < std::tie(b.instance, b.address);
  });

  // The gateway needs both the internet gateway object and its transit; without either, nothing can be
  // sent through it, so routes towards it are left out like routes to a deleted gateway.
  const std::vector<const InternetGateway*> internetGateways = topology.internetGateways(vpc);
  if (!internetGateways.empty() && transit) {
    GatewayPlan gateway{.name = internetGateways.front()->name,
                        .vpcLink = gatewayLinkName(plan.netns),
                        .uplinkLink = uplinkLinkName(plan.netns),
                        .uplinkNetns = uplink.netns,
                        .transit = *transit,
                        .vpcAddress = fmt::format("{}/{}", Ipv4Address(transit->network().value() + 2).str(),
                                                  transit->prefix()),
                        .uplinkAddress = fmt::format(
                            "{}/{}", Ipv4Address(transit->network().value() + 1).str(), transit->prefix()),
                        .publicAddresses = {}};
    for (const NicAttachment& nic : ours) {
      if (!nic.publicAddress) continue;
      if (auto address = Ipv4Address::parse(*nic.publicAddress)) gateway.publicAddresses.push_back(*address);
    }
    std::sort(gateway.publicAddresses.begin(), gateway.publicAddresses.end());
    gateway.publicAddresses.erase(std::unique(gateway.publicAddresses.begin(), gateway.publicAddresses.end()),
                                  gateway.publicAddresses.end());
    plan.gateway = std::move(gateway);
  }

  // routeTables() is sorted by name: the table ids follow that order.
  uint32_t tableId = 100;
  for (const RouteTable* table : topology.routeTables(vpc)) {
    RouteTablePlan tablePlan{.name = table->name, .tableId = tableId++, .subnets = {}, .routes = {}};
    for (const Subnet* subnet : subnets) {
      if (subnet->routeTable == table->name) tablePlan.subnets.push_back(subnet->cidr);
    }
    std::sort(tablePlan.subnets.begin(), tablePlan.subnets.end());
    for (const Route& route : table->routes) {
      switch (route.target.type) {
        case RouteTargetType::Local:
          break;  // one rule for the whole VPC (kLocalRulePriority)
        case RouteTargetType::Blackhole:
          tablePlan.routes.push_back(
              RoutePlan{.destination = route.destination, .blackhole = true, .peering = {}});
          break;
        case RouteTargetType::InternetGateway: {
          const InternetGateway* gateway = topology.findInternetGateway(route.target.name);
          if (plan.gateway && gateway != nullptr && gateway->name == plan.gateway->name) {
            tablePlan.routes.push_back(
                RoutePlan{.destination = route.destination, .blackhole = false, .peering = {}});
          }
          break;
        }
        case RouteTargetType::NatGateway: {
          // A NAT gateway sends its traffic on through the VPC's internet gateway (as in AWS).
          const NatGateway* gateway = topology.findNatGateway(route.target.name);
          if (plan.gateway && gateway != nullptr && gateway->vpc == vpc) {
            tablePlan.routes.push_back(
                RoutePlan{.destination = route.destination, .blackhole = false, .peering = {}});
          }
          break;
        }
        case RouteTargetType::Peering: {
          bool planned = std::any_of(plan.peerings.begin(), plan.peerings.end(),
                                     [&](const PeeringPlan& p) { return p.name == route.target.name; });
          if (planned) {
            tablePlan.routes.push_back(RoutePlan{
                .destination = route.destination, .blackhole = false, .peering = route.target.name});
          }
          break;
        }
      }
    }
    plan.routeTables.push_back(std::move(tablePlan));
  }

  for (const NicAttachment& nic : ours) plan.nics.push_back(planNic(*topology.findSubnet(nic.subnet), nic));

  plan.firewall = vpcFirewall(topology, vpc, ours, plan.gateway ? &*plan.gateway : nullptr, peered);
  plan.portGuardTable = portGuardTable(vpc, plan.nics);
  plan.ruleset = renderTable(plan.firewall);
  plan.portGuards = renderTable(plan.portGuardTable);
  return plan;
}

NicPlan planNic(const Subnet& subnet, const NicAttachment& nic) {
  return NicPlan{.nic = nic,
                 .link = nic.vm ? instanceTapName(nic.linkKey) : instanceVethName(nic.linkKey),
                 .bridge = subnetBridgeName(subnet.vpc, subnet.name),
                 .mac = instanceMac(nic.instance, nic.vm),
                 .addressWithPrefix = fmt::format("{}/{}", nic.address, subnet.cidr.prefix()),
                 .gateway = routerAddress(subnet.cidr).str(),
                 .resolver = resolverAddress(subnet.cidr).str(),
                 .searchDomain = vpcDomain(subnet.vpc)};
}

bool sameLinksAndRoutes(const VpcPlan& a, const VpcPlan& b) {
  return a.vpc == b.vpc && a.netns == b.netns && a.cidr == b.cidr && a.bridges == b.bridges &&
         a.routeTables == b.routeTables && a.gateway == b.gateway && a.peerings == b.peerings;
}

}  // namespace corral::net
