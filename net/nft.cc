// The VPC firewall: renders table inet corral from the topology and the attached NICs, and replaces it
// atomically inside a VPC namespace through libnftables.
//
// Shape of the forward chain, in order (see net/nft.h for the semantics):
//   1. IPv6 is dropped: VPCs are IPv4-only, so no IPv6 path may go around the rules below.
//   2. ct state invalid is dropped.
//   3. Network ACLs, before the conntrack shortcut because they are stateless: a packet leaving subnet S
//      for another address jumps to S's ACL egress chain, one entering T from another address to T's
//      ingress chain. An ACL "allow" is a `return` (the security groups still have their say), "deny" a
//      `drop`, and every ACL chain ends in the implicit `drop`.
//   4. ct state established,related accept: security groups are stateful.
//   5. A new connection from one of our NICs jumps to that NIC's egress chain (allow = `return`, else
//      drop), then one to one of our NICs to that NIC's ingress chain (allow = `accept`, else drop).
// The policy is accept: forwarded traffic that neither leaves nor enters one of our subnets and involves
// none of our NICs is not the security groups' business. Traffic to or from the router itself goes
// through the input/output hooks and is left alone, except on the internet gateway's link.
//
// With an internet gateway (link G, outside address O) the table also gets:
//   - forward, after ct state invalid: isolated subnets' traffic out through G is dropped; after the
//     conntrack shortcut: published ports' DNATed connections (original destination O) are accepted, and
//     any other new connection from G that was not DNATed is dropped (1:1 DNATed ones go on to the
//     security groups);
//   - input: on G only established/related traffic and ICMP echo requests reach the router;
//   - prerouting (dstnat) and postrouting (srcnat): see net/nft.h. A NIC's public address is used (both
//     directions) only when its subnet is public; published ports need a subnet that reaches the gateway
//     (public or private with NAT), since the replies follow the subnet's route table. What is left out
//     is said in a comment in the ruleset.
//
// Preconditions vpcRuleset does not check (the daemon validated them when it attached the NICs): NIC
// addresses are unique dotted quads inside their subnet, and named security groups belong to the VPC. A
// group that cannot be found contributes no rules, so a NIC naming only unknown groups gets nothing in.
#include "net/nft.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <nftables/libnftables.h>
#include <sched.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "core/unique_fd.h"

namespace corral::net {
namespace {

// "table inet T\ndelete table inet T\n": creating first makes the delete succeed on a fresh namespace.
// T must be a plain nft identifier, so that it cannot smuggle other commands in.
Result<std::string> replacePrologue(std::string_view table) {
  auto plain = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_'; };
  if (table.empty() || !std::isalpha(static_cast<unsigned char>(table.front())) ||
      !std::all_of(table.begin(), table.end(), plain)) {
    return fail(invalidField("table", "nft table name \"{}\" is not a plain name", table));
  }
  return fmt::format("table inet {0}\ndelete table inet {0}\n", table);
}

struct Nic {
  Ipv4Address address;
  std::string addressText;
  std::string instance;
  std::string subnet;
  std::optional<std::string> publicAddress;
  std::vector<PortForward> publish;
  std::vector<const SecurityGroup*> groups;
  std::string ingressChain;
  std::string egressChain;
};

std::string joinParts(std::initializer_list<std::string> parts) {
  std::string out;
  for (const std::string& part : parts) {
    if (part.empty()) continue;
    if (!out.empty()) out += ' ';
    out += part;
  }
  return out;
}

// The layer-4 match: nothing for all protocols, the protocol alone when every port is allowed.
std::string protocolMatch(Protocol protocol, const std::optional<PortRange>& ports) {
  switch (protocol) {
    case Protocol::All:
      return {};
    case Protocol::Icmp:
      return "meta l4proto icmp";
    case Protocol::Tcp:
    case Protocol::Udp: {
      std::string_view name = protocolName(protocol);
      if (!ports || (ports->from == 0 && ports->to == 65535)) return fmt::format("meta l4proto {}", name);
      if (ports->from == ports->to) return fmt::format("{} dport {}", name, ports->from);
      return fmt::format("{} dport {}-{}", name, ports->from, ports->to);
    }
  }
  return {};
}

std::string naclChainName(const NetworkAcl& acl, Direction direction) {
  return fmt::format("nacl-{}-{}", acl.name, directionName(direction));
}

std::vector<Nic> resolveNics(const Topology& topology, std::string_view vpc,
                             const std::vector<NicAttachment>& attachments) {
  std::vector<Nic> nics;
  const SecurityGroup* defaultGroup = topology.defaultSecurityGroup(vpc);
  for (const NicAttachment& attachment : attachments) {
    Nic nic;
    nic.address = Ipv4Address::parse(attachment.address).value_or(Ipv4Address());
    nic.addressText = attachment.address;
    nic.instance = attachment.instance;
    nic.subnet = attachment.subnet;
    nic.publicAddress = attachment.publicAddress;
    nic.publish = attachment.publish;
    if (attachment.securityGroups.empty()) {
      if (defaultGroup != nullptr) nic.groups.push_back(defaultGroup);
    } else {
      for (const std::string& name : attachment.securityGroups) {
        const SecurityGroup* group = topology.findSecurityGroup(name);
        if (group != nullptr && group->vpc == vpc &&
            std::find(nic.groups.begin(), nic.groups.end(), group) == nic.groups.end()) {
          nic.groups.push_back(group);
        }
      }
    }
    nic.ingressChain = fmt::format("sg-ingress-{}-{}", nic.instance, nic.addressText);
    nic.egressChain = fmt::format("sg-egress-{}-{}", nic.instance, nic.addressText);
    nics.push_back(std::move(nic));
  }
  // Deterministic text whatever order the caller listed the NICs in.
  std::sort(nics.begin(), nics.end(), [](const Nic& a, const Nic& b) {
    return std::tie(a.address, a.addressText, a.instance) < std::tie(b.address, b.addressText, b.instance);
  });
  return nics;
}

// The addresses of the NICs in `group`, as an anonymous set; empty when it has no members.
std::string memberSet(const std::vector<Nic>& nics, std::string_view group) {
  std::string members;
  for (const Nic& nic : nics) {
    bool member = std::any_of(nic.groups.begin(), nic.groups.end(),
                              [&](const SecurityGroup* g) { return g->name == group; });
    if (!member) continue;
    members += members.empty() ? "{ " : ", ";
    members += nic.addressText;
  }
  return members.empty() ? members : members + " }";
}

void renderNaclChain(std::string& out, const NetworkAcl& acl, Direction direction) {
  out += fmt::format("  chain {} {{\n", naclChainName(acl, direction));
  // Ingress rules name the packet's source, egress rules its destination.
  std::string_view peer = direction == Direction::Ingress ? "ip saddr" : "ip daddr";
  std::vector<const NetworkAclRule*> rules;
  for (const NetworkAclRule& rule : acl.rules) {
    if (rule.direction == direction) rules.push_back(&rule);
  }
  std::sort(rules.begin(), rules.end(),
            [](const NetworkAclRule* a, const NetworkAclRule* b) { return a->number < b->number; });
  for (const NetworkAclRule* rule : rules) {
    out += fmt::format(
        "    {} comment \"rule {}\"\n",
        joinParts({fmt::format("{} {}", peer, rule->cidr.str()), protocolMatch(rule->protocol, rule->ports),
                   rule->action == RuleAction::Allow ? "return" : "drop"}),
        rule->number);
  }
  out += "    drop comment \"implicit deny\"\n";
  out += "  }\n";
}

void renderNicChain(std::string& out, const Nic& nic, const std::vector<Nic>& nics, Direction direction) {
  const bool ingress = direction == Direction::Ingress;
  out += fmt::format("  chain {} {{\n", ingress ? nic.ingressChain : nic.egressChain);
  std::string_view peer = ingress ? "ip saddr" : "ip daddr";
  for (const SecurityGroup* group : nic.groups) {
    for (const SecurityGroupRule& rule : group->rules) {
      if (rule.direction != direction) continue;
      std::string peerMatch;
      if (rule.cidr) {
        peerMatch = fmt::format("{} {}", peer, rule.cidr->str());
      } else if (rule.peerGroup) {
        std::string members = memberSet(nics, *rule.peerGroup);
        if (members.empty()) {
          out += fmt::format("    # {} rule {}: peer group {} has no members\n", group->name, rule.id,
                             *rule.peerGroup);
          continue;
        }
        peerMatch = fmt::format("{} {}", peer, members);
      }
      out += fmt::format(
          "    {} comment \"{} rule {}\"\n",
          joinParts({peerMatch, protocolMatch(rule.protocol, rule.ports), ingress ? "accept" : "return"}),
          group->name, rule.id);
    }
  }
  out += "    drop\n";
  out += "  }\n";
}

// What the internet gateway's NAT and filter rules need, resolved once per ruleset.
struct GatewayNat {
  std::string link;     // quoted for nft: "\"crlg...\""
  std::string outside;  // the gateway's outside address, without prefix
  std::map<std::string, SubnetReachability, std::less<>> reachability;  // of the VPC's subnets, by name

  SubnetReachability reachabilityOf(std::string_view subnet) const {
    auto it = reachability.find(subnet);
    return it == reachability.end() ? SubnetReachability::Isolated : it->second;
  }
  // 1:1 NAT works both ways only when the subnet's default route is the internet gateway (AWS's rule).
  bool usesPublicAddress(const Nic& nic) const {
    return nic.publicAddress && reachabilityOf(nic.subnet) == SubnetReachability::Public;
  }
  // The replies of a published port follow the subnet's route table, so it must lead to the gateway.
  bool publishes(const Nic& nic) const {
    return !nic.publish.empty() && reachabilityOf(nic.subnet) != SubnetReachability::Isolated;
  }
};

GatewayNat resolveGateway(const Topology& topology, const std::vector<const Subnet*>& subnets,
                          const GatewayPlan& gateway) {
  GatewayNat nat;
  nat.link = fmt::format("\"{}\"", gateway.vpcLink);
  nat.outside = gateway.vpcAddress.substr(0, gateway.vpcAddress.find('/'));
  for (const Subnet* subnet : subnets) nat.reachability.emplace(subnet->name, topology.reachability(*subnet));
  return nat;
}

void renderGatewayInput(std::string& out, const GatewayNat& nat) {
  out += "  chain input {\n";
  out += "    type filter hook input priority filter; policy accept;\n";
  out += fmt::format("    iifname {} ct state established,related accept\n", nat.link);
  out += fmt::format("    iifname {} icmp type echo-request accept\n", nat.link);
  out +=
      fmt::format("    iifname {} drop comment \"the router answers nothing else from outside\"\n", nat.link);
  out += "  }\n";
}

void renderGatewayPrerouting(std::string& out, const GatewayNat& nat, const std::vector<Nic>& nics) {
  out += "  chain prerouting {\n";
  out += "    type nat hook prerouting priority dstnat; policy accept;\n";
  for (const Nic& nic : nics) {
    if (nat.usesPublicAddress(nic)) {
      out += fmt::format("    iifname {} ip daddr {} dnat ip to {} comment \"public address of {}\"\n",
                         nat.link, *nic.publicAddress, nic.addressText, nic.instance);
    } else if (nic.publicAddress) {
      out += fmt::format("    # {}: public address {} unused: subnet {} is not public\n", nic.instance,
                         *nic.publicAddress, nic.subnet);
    }
    for (const PortForward& forward : nic.publish) {
      if (!nat.publishes(nic)) {
        out += fmt::format("    # {}: publish {} unused: subnet {} has no route to the internet gateway\n",
                           nic.instance, portForwardText(forward), nic.subnet);
        continue;
      }
      out +=
          fmt::format("    iifname {} ip daddr {} {} dport {} dnat ip to {}:{} comment \"{} publishes {}\"\n",
                      nat.link, nat.outside, protocolName(forward.protocol), forward.outsidePort,
                      nic.addressText, forward.instancePort, nic.instance, portForwardText(forward));
    }
  }
  out += "  }\n";
}

void renderGatewayPostrouting(std::string& out, const GatewayNat& nat, const std::vector<Nic>& nics,
                              const std::vector<const Subnet*>& subnets) {
  out += "  chain postrouting {\n";
  out += "    type nat hook postrouting priority srcnat; policy accept;\n";
  // The NICs' own public addresses first: they are more specific than their subnet's rule.
  for (const Nic& nic : nics) {
    if (!nat.usesPublicAddress(nic)) continue;
    out += fmt::format("    oifname {} ip saddr {} snat ip to {} comment \"public address of {}\"\n",
                       nat.link, nic.addressText, *nic.publicAddress, nic.instance);
  }
  for (const Subnet* subnet : subnets) {
    SubnetReachability reachability = nat.reachabilityOf(subnet->name);
    if (reachability == SubnetReachability::Isolated) continue;
    out += fmt::format("    oifname {} ip saddr {} snat ip to {} comment \"subnet {}: {}\"\n", nat.link,
                       subnet->cidr.str(), nat.outside, subnet->name, subnetReachabilityName(reachability));
  }
  out += "  }\n";
}

// Freeing a context closes its netfilter socket, and after a commit that close waits ~10 ms for the
// kernel (measured: most of a subnet's creation time). Nothing depends on it, so it happens off the
// caller's path.
void freeInBackground(nft_ctx* ctx) {
  try {
    std::thread([ctx] { nft_ctx_free(ctx); }).detach();
  } catch (const std::system_error&) {
    nft_ctx_free(ctx);
  }
}

// Runs `commands` through a fresh libnftables context, in the calling thread's network namespace; what
// nft printed (for list commands).
Result<std::string> runCommands(const std::string& commands) {
  std::unique_ptr<nft_ctx, decltype(&freeInBackground)> ctx(nft_ctx_new(NFT_CTX_DEFAULT), freeInBackground);
  if (!ctx) return fail(internalError("nft_ctx_new failed"));
  if (nft_ctx_buffer_output(ctx.get()) != 0 || nft_ctx_buffer_error(ctx.get()) != 0) {
    return fail(internalError("nft_ctx_buffer_output/error failed"));
  }
  if (nft_run_cmd_from_buffer(ctx.get(), commands.c_str()) != 0) {
    std::string text = nft_ctx_get_error_buffer(ctx.get());
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return fail(internalError("nft refused the commands: {}", text.empty() ? "(no message)" : text));
  }
  return std::string(nft_ctx_get_output_buffer(ctx.get()));
}

// Runs `commands` through libnftables inside /run/netns/`netns` (empty: the caller's own namespace), from
// a helper thread so that the caller's own network namespace never changes.
Result<std::string> runInNamespace(const std::string& netns, const std::string& commands) {
  if (netns.empty()) return runCommands(commands);
  if (netns.find('/') != std::string::npos || netns == "." || netns == "..") {
    return fail(invalidField("netns", "network namespace name \"{}\" is not a plain name", netns));
  }
  const std::string path = "/run/netns/" + netns;
  UniqueFd nsFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsFd) {
    if (errno == ENOENT) return fail(notFound("network namespace \"{}\" does not exist", netns));
    return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  }

  std::optional<Result<std::string>> result;
  auto work = [&] {
    if (::setns(nsFd.get(), CLONE_NEWNET) != 0) {
      result.emplace(fail(systemError(errno, fmt::format("setns(\"{}\", CLONE_NEWNET)", path))));
      return;
    }
    result.emplace(runCommands(commands));
  };
  try {
    std::thread worker(work);
    worker.join();
  } catch (const std::system_error& e) {
    return fail(systemError(e.code().value(), "std::thread (nft helper)"));
  }
  if (!*result) return fail(std::move(result->error()).wrap(fmt::format("netns \"{}\"", netns)));
  return std::move(**result);
}

constexpr std::string_view kPortGuardTable = "bridge corral";

// The names declared by `keyword` ("chain", "counter") in nft's listing of a table, in order.
std::vector<std::string> declaredNames(std::string_view listing, std::string_view keyword) {
  std::vector<std::string> names;
  size_t start = 0;
  while (start < listing.size()) {
    size_t end = listing.find('\n', start);
    if (end == std::string_view::npos) end = listing.size();
    std::string_view line = listing.substr(start, end - start);
    start = end + 1;
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;
    line.remove_prefix(first);
    // A declaration ("counter NAME {"), not a rule that starts with the same word ("counter name ... drop").
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t')) line.remove_suffix(1);
    if (!line.starts_with(keyword) || line.size() <= keyword.size() || line[keyword.size()] != ' ' ||
        !line.ends_with(" {")) {
      continue;
    }
    line.remove_prefix(keyword.size() + 1);
    names.emplace_back(line.substr(0, line.find(' ')));
  }
  return names;
}

// The listing of table bridge corral in `netns`; empty when the table does not exist.
Result<std::string> listPortGuards(const std::string& netns) {
  // Creating it first (a no-op when present) keeps "no such table" apart from real failures.
  return runInNamespace(netns, fmt::format("add table {0}\nlist table {0}\n", kPortGuardTable));
}

}  // namespace

std::string vpcRuleset(const Topology& topology, std::string_view vpc, const std::vector<NicAttachment>& nics,
                       const GatewayPlan* gateway) {
  const std::vector<Nic> resolved = resolveNics(topology, vpc, nics);
  const std::vector<const Subnet*> subnets = topology.subnets(vpc);
  std::optional<GatewayNat> nat;
  if (gateway != nullptr) nat = resolveGateway(topology, subnets, *gateway);
  std::map<std::string, const NetworkAcl*> acls;  // the ACLs our subnets use, by name
  for (const Subnet* subnet : subnets) {
    if (const NetworkAcl* acl = topology.findNetworkAcl(subnet->networkAcl)) acls.emplace(acl->name, acl);
  }

  std::string out = fmt::format("# vpc {}: generated by corral, replaced as a whole on every change\n", vpc);
  out += "table inet corral {\n";
  for (const auto& [name, acl] : acls) {
    renderNaclChain(out, *acl, Direction::Ingress);
    renderNaclChain(out, *acl, Direction::Egress);
  }
  for (const Nic& nic : resolved) {
    renderNicChain(out, nic, resolved, Direction::Ingress);
    renderNicChain(out, nic, resolved, Direction::Egress);
  }

  out += "  chain forward {\n";
  out += "    type filter hook forward priority filter; policy accept;\n";
  out += "    meta nfproto ipv6 drop\n";
  out += "    ct state invalid drop\n";
  if (nat) {
    for (const Subnet* subnet : subnets) {
      if (nat->reachabilityOf(subnet->name) != SubnetReachability::Isolated) continue;
      out += fmt::format("    ip saddr {} oifname {} drop comment \"isolated subnet {}\"\n",
                         subnet->cidr.str(), nat->link, subnet->name);
    }
  }
  for (const Subnet* subnet : subnets) {
    const NetworkAcl* acl = topology.findNetworkAcl(subnet->networkAcl);
    if (acl == nullptr) continue;
    const std::string cidr = subnet->cidr.str();
    out += fmt::format("    ip saddr {0} ip daddr != {0} jump {1} comment \"leaving {2}\"\n", cidr,
                       naclChainName(*acl, Direction::Egress), subnet->name);
    out += fmt::format("    ip daddr {0} ip saddr != {0} jump {1} comment \"entering {2}\"\n", cidr,
                       naclChainName(*acl, Direction::Ingress), subnet->name);
  }
  out += "    ct state established,related accept\n";
  if (nat) {
    // Publishing a port is its allow rule; `ct original` keeps a 1:1 NATed connection to the same
    // address and port facing the security groups.
    for (const Nic& nic : resolved) {
      if (!nat->publishes(nic)) continue;
      for (const PortForward& forward : nic.publish) {
        out += fmt::format(
            "    iifname {} ct status dnat ct original ip daddr {} ip daddr {} {} dport {} accept comment "
            "\"{} "
            "publishes {}\"\n",
            nat->link, nat->outside, nic.addressText, protocolName(forward.protocol), forward.instancePort,
            nic.instance, portForwardText(forward));
      }
    }
    out +=
        fmt::format("    iifname {} ct status & dnat == 0 drop comment \"unsolicited inbound\"\n", nat->link);
  }
  if (!resolved.empty()) {
    std::string egress;
    std::string ingress;
    for (const Nic& nic : resolved) {
      egress += fmt::format("{}{} : jump {}", egress.empty() ? "" : ", ", nic.addressText, nic.egressChain);
      ingress +=
          fmt::format("{}{} : jump {}", ingress.empty() ? "" : ", ", nic.addressText, nic.ingressChain);
    }
    out += fmt::format("    ip saddr vmap {{ {} }}\n", egress);
    out += fmt::format("    ip daddr vmap {{ {} }}\n", ingress);
  }
  out += "  }\n";
  if (nat) {
    renderGatewayInput(out, *nat);
    renderGatewayPrerouting(out, *nat, resolved);
    renderGatewayPostrouting(out, *nat, resolved, subnets);
  }
  out += "}\n";
  return out;
}

std::string hostUplinkRuleset(const UplinkSettings& settings, std::string_view table) {
  const std::string uplinks = fmt::format("\"{}u*\"", kLinkPrefix);
  std::string out =
      fmt::format("# corral uplink: generated by corral, replaced as a whole on every change\n");
  out += fmt::format("table inet {} {{\n", table);
  out += "  chain forward {\n";
  out += "    type filter hook forward priority filter; policy accept;\n";
  out += fmt::format("    iifname {} accept comment \"from the VPCs' internet gateways\"\n", uplinks);
  out += fmt::format("    oifname {} ct state established,related accept comment \"replies to them\"\n",
                     uplinks);
  out += "  }\n";
  out += "  chain postrouting {\n";
  out += "    type nat hook postrouting priority srcnat; policy accept;\n";
  out += fmt::format(
      "    ip saddr {{ {}, {} }} oifname != {} masquerade comment \"VPC traffic leaving the host\"\n",
      settings.transitPool.str(), settings.publicPool.str(), uplinks);
  out += "  }\n";
  out += "}\n";
  return out;
}

Status applyRuleset(const std::string& netns, const std::string& ruleset, std::string_view table) {
  auto prologue = replacePrologue(table);
  if (!prologue) return fail(std::move(prologue.error()).wrap("apply nft ruleset"));
  // One transaction: create-if-missing, delete, refill. nft refusing any line leaves the old table.
  std::string commands = *prologue + ruleset;
  if (auto s = runInNamespace(netns, commands); !s)
    return fail(std::move(s.error()).wrap("apply nft ruleset"));
  return {};
}

Status deleteRuleset(const std::string& netns, std::string_view table) {
  auto prologue = replacePrologue(table);
  if (!prologue) return fail(std::move(prologue.error()).wrap("delete nft ruleset"));
  if (auto s = runInNamespace(netns, *prologue); !s) {
    return fail(std::move(s.error()).wrap("delete nft ruleset"));
  }
  return {};
}

}  // namespace corral::net

namespace corral::net {

std::string_view spoofReasonName(SpoofReason reason) {
  switch (reason) {
    case SpoofReason::Mac:
      return "mac";
    case SpoofReason::Ip:
      return "ip";
    case SpoofReason::Arp:
      return "arp";
    case SpoofReason::Other:
      return "other";
  }
  return "other";
}

std::string portGuardChainName(std::string_view link) {
  return fmt::format("port-{}", link);
}

std::string portGuardCounterName(std::string_view link, SpoofReason reason) {
  return fmt::format("spoof-{}-{}", link, spoofReasonName(reason));
}

std::string portGuardRuleset(std::string_view vpc, const std::vector<NicPlan>& nics) {
  std::vector<const NicPlan*> sorted;
  for (const NicPlan& nic : nics) sorted.push_back(&nic);
  std::sort(sorted.begin(), sorted.end(),
            [](const NicPlan* a, const NicPlan* b) { return a->link < b->link; });

  std::string out = fmt::format(
      "# vpc {}: port guards (source check), generated by corral, refilled on every change\n", vpc);
  out += fmt::format("table {} {{\n", kPortGuardTable);
  for (const NicPlan* nic : sorted) {
    for (SpoofReason reason : kSpoofReasons) {
      out += fmt::format("  counter {} {{ }}\n", portGuardCounterName(nic->link, reason));
    }
  }
  for (const NicPlan* nic : sorted) {
    auto counter = [&](SpoofReason reason) {
      return fmt::format("counter name \"{}\"", portGuardCounterName(nic->link, reason));
    };
    const std::string& ip = nic->nic.address;
    out += fmt::format("  chain {} {{\n", portGuardChainName(nic->link));
    out += fmt::format("    ether saddr != {} {} drop comment \"{}: not its mac\"\n", nic->mac,
                       counter(SpoofReason::Mac), nic->nic.instance);
    out += fmt::format("    ether type ip ip saddr != {} {} drop comment \"{}: not its address\"\n", ip,
                       counter(SpoofReason::Ip), nic->nic.instance);
    out += "    ether type ip accept\n";
    out += fmt::format(
        "    ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 "
        "arp operation {{ request, reply }} arp saddr ether {} arp saddr ip {} accept\n",
        nic->mac, ip);
    out += fmt::format("    ether type arp {} drop comment \"{}: arp for another address\"\n",
                       counter(SpoofReason::Arp), nic->nic.instance);
    out += fmt::format("    {} drop comment \"{}: not ipv4 or arp\"\n", counter(SpoofReason::Other),
                       nic->nic.instance);
    out += "  }\n";
  }
  out += "  chain prerouting {\n";
  out += "    type filter hook prerouting priority filter; policy accept;\n";
  if (!sorted.empty()) {
    std::string ports;
    for (const NicPlan* nic : sorted) {
      ports += fmt::format("{}\"{}\" : jump {}", ports.empty() ? "" : ", ", nic->link,
                           portGuardChainName(nic->link));
    }
    out += fmt::format("    iifname vmap {{ {} }}\n", ports);
  }
  out += "  }\n";
  out += "}\n";
  return out;
}

Result<std::vector<std::string>> applyPortGuards(const std::string& netns, const std::string& ruleset,
                                                 const std::vector<std::string>& links) {
  auto wrapped = [&](Error error) { return fail(std::move(error).wrap("apply port guards")); };
  if (netns.empty()) {
    // The guards belong in a VPC's namespace; the caller's own (the host's) is never touched.
    return wrapped(invalidField("netns", "port guards need a VPC namespace, not the caller's"));
  }
  auto listing = listPortGuards(netns);
  if (!listing) return wrapped(std::move(listing).error());
  std::set<std::string> wantedChains{"prerouting"};
  std::set<std::string> wantedCounters;
  for (const std::string& link : links) {
    wantedChains.insert(portGuardChainName(link));
    for (SpoofReason reason : kSpoofReasons) wantedCounters.insert(portGuardCounterName(link, reason));
  }
  // One transaction: the old rules go, the stale chains and counters go, the new rules and any new
  // counters come; counters that stay keep their values (adding an existing counter leaves it alone).
  std::string commands = fmt::format("flush table {}\n", kPortGuardTable);
  std::set<std::string> removedPorts;
  for (const std::string& chain : declaredNames(*listing, "chain")) {
    if (wantedChains.contains(chain)) continue;
    commands += fmt::format("delete chain {} {}\n", kPortGuardTable, chain);
    if (chain.starts_with("port-")) removedPorts.insert(chain.substr(5));
  }
  for (const std::string& counter : declaredNames(*listing, "counter")) {
    if (wantedCounters.contains(counter)) continue;
    commands += fmt::format("delete counter {} {}\n", kPortGuardTable, counter);
  }
  commands += ruleset;
  if (auto s = runInNamespace(netns, commands); !s) return wrapped(std::move(s).error());
  return std::vector<std::string>(removedPorts.begin(), removedPorts.end());
}

Result<std::map<std::string, SpoofDrops>> spoofDrops(const std::string& netns) {
  std::map<std::string, SpoofDrops> drops;
  if (netns.empty()) return drops;
  // Every bridge table's counters: succeeds (empty) when the table does not exist yet, and reading
  // never creates it.
  auto listing = runInNamespace(netns, "list counters bridge\n");
  if (!listing) return fail(std::move(listing).error().wrap("read port guard counters"));
  // "table bridge corral {", "counter spoof-LINK-REASON {", "packets N bytes M".
  std::istringstream lines(*listing);
  std::string line;
  std::string current;
  bool ours = false;
  while (std::getline(lines, line)) {
    std::istringstream words(line);
    std::string word;
    words >> word;
    if (word == "table") {
      std::string family, table;
      words >> family >> table;
      ours = fmt::format("{} {}", family, table) == kPortGuardTable;
      continue;
    }
    if (!ours) continue;
    if (word == "counter") {
      words >> current;
      continue;
    }
    if (word != "packets" || current.empty()) continue;
    uint64_t packets = 0;
    words >> packets;
    const std::string name = std::exchange(current, std::string());
    if (!name.starts_with("spoof-")) continue;
    const size_t dash = name.rfind('-');
    if (dash <= 6) continue;
    const std::string link = name.substr(6, dash - 6);
    const std::string_view reason = std::string_view(name).substr(dash + 1);
    SpoofDrops& port = drops[link];
    if (reason == spoofReasonName(SpoofReason::Mac)) port.mac = packets;
    if (reason == spoofReasonName(SpoofReason::Ip)) port.ip = packets;
    if (reason == spoofReasonName(SpoofReason::Arp)) port.arp = packets;
    if (reason == spoofReasonName(SpoofReason::Other)) port.other = packets;
  }
  return drops;
}

}  // namespace corral::net
