// The VPC resolver's plan and its dnsmasq files, from the model alone.
#include "net/resolver.h"

#include <fmt/format.h>

#include <algorithm>

namespace corral::net {

Ipv4Address resolverAddress(const Cidr& subnet) {
  return Ipv4Address(subnet.first().value() + 2);
}

std::string vpcDomain(std::string_view vpc) {
  return fmt::format("{}.internal", vpc);
}

std::string_view resolverRoleName(ResolverRole role) {
  return role == ResolverRole::forwarding ? "forwarding" : "local";
}

ResolverPlan planResolver(const Topology& topology, std::string_view vpc, std::string_view netnsPrefix,
                          const std::vector<NicAttachment>& nics) {
  ResolverPlan plan;
  plan.vpc = std::string(vpc);
  plan.netns = vpcNetnsName(netnsPrefix, vpc);
  plan.domain = vpcDomain(vpc);
  // subnets() is sorted by name.
  for (const Subnet* subnet : topology.subnets(vpc)) {
    const std::string address = resolverAddress(subnet->cidr).str();
    if (topology.reachability(*subnet) == SubnetReachability::Isolated) {
      plan.localListen.push_back(address);
    } else {
      plan.forwardingListen.push_back(address);
    }
  }
  if (!plan.forwardingListen.empty()) plan.upstreamSource = plan.forwardingListen.front();
  for (const NicAttachment& nic : nics) {
    const Subnet* subnet = topology.findSubnet(nic.subnet);
    if (subnet == nullptr || subnet->vpc != vpc) continue;
    plan.hosts.push_back(ResolverHost{.address = nic.address, .name = nic.instance});
  }
  std::sort(plan.hosts.begin(), plan.hosts.end(),
            [](const ResolverHost& a, const ResolverHost& b) { return a.name < b.name; });
  return plan;
}

std::string resolverHostText(const ResolverHost& host, std::string_view domain) {
  return fmt::format("{}\t{}.{} {}\n", host.address, host.name, domain, host.name);
}

std::optional<std::string> dnsmasqConfig(const ResolverPlan& plan, ResolverRole role,
                                         const std::optional<std::string>& upstream,
                                         const ResolverFiles& files) {
  const std::vector<std::string>& listen =
      role == ResolverRole::forwarding ? plan.forwardingListen : plan.localListen;
  if (listen.empty()) return std::nullopt;
  const bool forwards = role == ResolverRole::forwarding && upstream && !plan.upstreamSource.empty();
  std::string text = fmt::format(
      "# corral: the {} resolver of vpc {} (generated; rewritten on every change)\n"
      "# Nothing of the host's: no /etc/hosts, no /etc/resolv.conf.\n"
      "no-hosts\n"
      "no-resolv\n"
      "no-poll\n"
      "# Only the subnets' .2 addresses, which may come and go with the bridges.\n"
      "bind-dynamic\n",
      resolverRoleName(role), plan.vpc);
  for (const std::string& address : listen) text += fmt::format("listen-address={}\n", address);
  text += fmt::format(
      "# One file per instance, read when it is written or removed (inotify): no reload, no cache flush.\n"
      "hostsdir={}\n"
      "# The VPC's names are answered here or not at all; so are reverse lookups of private addresses.\n"
      "local=/{}/\n"
      "domain-needed\n"
      "bogus-priv\n"
      "# Names follow instances as they come and go: short TTLs.\n"
      "local-ttl=5\n"
      "user=nobody\n"
      "group=nogroup\n",
      files.hostsDir, plan.domain);
  if (forwards) {
    text +=
        fmt::format("# Outside names go to the uplink's resolver, from {} (its subnet's routes and NAT).\n",
                    plan.upstreamSource);
    text += fmt::format("server={}@{}\n", *upstream, plan.upstreamSource);
  } else {
    text += "# No way out: names outside the VPC are refused.\n";
  }
  return text;
}

}  // namespace corral::net
