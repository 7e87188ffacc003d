// The VPC resolver (AWS's "Amazon-provided DNS" at each subnet's .2) planned purely from the model: which
// addresses it answers on, which of them forward outside names, and the names it knows (every NIC as
// NAME and NAME.VPC.internal, with the reverse PTR). Rendered as dnsmasq configuration and an addn-hosts
// file; daemon/vpc_resolvers.h runs the dnsmasq processes in the VPC's namespace.
//
// A subnet that reaches the internet (public, or private with a NAT gateway) is answered by the VPC's
// forwarding resolver, which sends outside names to the uplink's resolver; an isolated subnet by its local
// resolver, which knows only the VPC's names and refuses the rest (dnsmasq without servers answers
// REFUSED), the lesson that a private subnet without NAT cannot even look the internet up. Two dnsmasq
// processes at most per VPC, each listening on its subnets' .2 only: the split is by listening address.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net/cidr.h"
#include "net/datapath.h"
#include "net/vpc.h"

namespace corral::net {

// The subnet's resolver address: its network address + 2, as AWS reserves it.
Ipv4Address resolverAddress(const Cidr& subnet);
// "VPC.internal": the domain of the VPC's instance names (AWS: REGION.compute.internal).
std::string vpcDomain(std::string_view vpc);

enum class ResolverRole { forwarding, local };
std::string_view resolverRoleName(ResolverRole role);  // "forwarding", "local"

struct ResolverHost {
  std::string address;
  std::string name;  // the instance name; the file also lists NAME.DOMAIN
  bool operator==(const ResolverHost&) const = default;
};

struct ResolverPlan {
  std::string vpc;
  std::string netns;
  std::string domain;                         // vpcDomain(vpc)
  std::vector<std::string> forwardingListen;  // .2 of the subnets that reach the internet, sorted by subnet
  std::vector<std::string> localListen;       // .2 of the isolated subnets, sorted by subnet
  // The address the forwarding resolver sends its upstream queries from: the first forwarding subnet's
  // .2, so they leave by that subnet's route table and NAT, as an instance's would. Empty without one.
  std::string upstreamSource;
  std::vector<ResolverHost> hosts;  // sorted by name
  bool operator==(const ResolverPlan&) const = default;
};

// The resolver of `vpc` (which must be in the topology) with these NICs (others' are ignored).
ResolverPlan planResolver(const Topology& topology, std::string_view vpc, std::string_view netnsPrefix,
                          const std::vector<NicAttachment>& nics);

// One host's file in the resolver's hosts directory: "ADDRESS\tNAME.DOMAIN NAME\n" (the first name is
// what PTR answers). One file per instance, so an instance coming or going writes or removes its own file
// and dnsmasq (watching the directory) reads only that one: the cost of a change does not grow with the VPC.
std::string resolverHostText(const ResolverHost& host, std::string_view domain);

// Where a resolver's files are, as its configuration names them.
struct ResolverFiles {
  std::string hostsDir;  // one file per host, named after it (resolverHostText)
};

// One dnsmasq's configuration file for `role`; nullopt when the plan has no subnet of that role. The
// forwarding role sends outside names to `upstream` ("ADDRESS" or "ADDRESS#PORT") from plan.upstreamSource;
// without an upstream it answers like the local role.
std::optional<std::string> dnsmasqConfig(const ResolverPlan& plan, ResolverRole role,
                                         const std::optional<std::string>& upstream,
                                         const ResolverFiles& files);

}  // namespace corral::net
