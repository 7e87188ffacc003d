// The VPC firewall: builds table inet corral (and the port guards' table bridge corral) from the topology
// and the attached NICs as structured data (net/firewall.h), and loads it inside a VPC namespace through
// libnftables, whole or as a delta, each in one transaction.
//
// Shape of the forward chain, in order (see net/nft.h for the semantics):
//   1. IPv6 is dropped: VPCs are IPv4-only, so no IPv6 path may go around the rules below.
//   2. ct state invalid is dropped.
//   3. Network ACLs, before the conntrack shortcut because they are stateless: a packet leaving subnet S
//      for another address jumps to S's ACL egress chain, one entering T from another address to T's
//      ingress chain. An ACL "allow" is a `return` (the security groups still have their say), "deny" a
//      `drop`, and every ACL chain ends in the implicit `drop`.
//   4. ct state established,related accept: security groups are stateful.
//   5. A new connection from one of our NICs jumps, through the map sg-egress keyed by its address, to the
//      egress chain of that NIC's combination of groups (allow = `return`, else drop), then one to one of
//      our NICs through sg-ingress to its ingress chain (allow = `accept`, else drop).
// Every drop that a guard decides (an ACL's deny rule and implicit deny, a combination's final drop, the
// gateway's refusals, an isolated subnet) logs the packet first to NFLOG with the guard in the prefix
// (net/flow_log.h), and chain no-route logs new connections the routing decision will drop: the flow logs.
// The policy is accept: forwarded traffic that neither leaves nor enters one of our subnets and involves
// none of our NICs is not the security groups' business. Traffic to or from the router itself goes
// through the input/output hooks and is left alone, except on the internet gateway's link.
//
// With an internet gateway (link G, outside address O) the table also gets:
//   - forward, after ct state invalid: isolated subnets' traffic out through G is dropped; after the
//     conntrack shortcut: published ports' DNATed connections (original destination O, address and port in
//     the set `published`) are accepted, and
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
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <system_error>
#include <thread>
#include <utility>

#include "core/unique_fd.h"
#include "net/flow_log.h"

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
  std::vector<const SecurityGroup*> groups;  // sorted by name, each once
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

// The flow log's statement on a reject path (net/flow_log.h): the packet goes to the VPC namespace's NFLOG
// group with the deciding guard in its prefix, and on to the drop that follows. Only rejected packets
// pass here, so accepted traffic pays nothing for it.
std::string flowLog(const FlowGuard& guard) {
  return fmt::format("log prefix \"{}\" group {} snaplen {}", encodeLogPrefix(guard), kFlowLogGroup,
                     kFlowLogSnaplen);
}

std::string naclChainName(const NetworkAcl& acl, Direction direction) {
  return fmt::format("nacl-{}-{}", acl.name, directionName(direction));
}

std::string memberSetName(std::string_view group) {
  return fmt::format("sg-members-{}", group);
}

// The chain of one combination of groups: "sg-egress-web.db" (group names have no '.'), "sg-egress-.none"
// for none; a combination too long for nft's 255-byte names keeps its first group and a hash.
std::string comboChainName(const std::vector<const SecurityGroup*>& groups, Direction direction) {
  std::string combo;
  for (const SecurityGroup* group : groups) combo += (combo.empty() ? "" : ".") + group->name;
  if (combo.empty()) combo = ".none";
  if (combo.size() > 200) combo = fmt::format("{}.{:08x}", groups.front()->name, fnv1a32(combo));
  return fmt::format("sg-{}-{}", directionName(direction), combo);
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
        if (group != nullptr && group->vpc == vpc) nic.groups.push_back(group);
      }
    }
    // A combination is a set of groups: one chain however the NIC listed them.
    std::sort(nic.groups.begin(), nic.groups.end(),
              [](const SecurityGroup* a, const SecurityGroup* b) { return a->name < b->name; });
    nic.groups.erase(std::unique(nic.groups.begin(), nic.groups.end()), nic.groups.end());
    nics.push_back(std::move(nic));
  }
  // Deterministic whatever order the caller listed the NICs in.
  std::sort(nics.begin(), nics.end(), [](const Nic& a, const Nic& b) {
    return std::tie(a.address, a.addressText, a.instance) < std::tie(b.address, b.addressText, b.instance);
  });
  return nics;
}

NftChain naclChain(const NetworkAcl& acl, Direction direction) {
  NftChain chain;
  // Ingress rules name the packet's source, egress rules its destination.
  std::string_view peer = direction == Direction::Ingress ? "ip saddr" : "ip daddr";
  std::vector<const NetworkAclRule*> rules;
  for (const NetworkAclRule& rule : acl.rules) {
    if (rule.direction == direction) rules.push_back(&rule);
  }
  std::sort(rules.begin(), rules.end(),
            [](const NetworkAclRule* a, const NetworkAclRule* b) { return a->number < b->number; });
  const bool ingress = direction == Direction::Ingress;
  for (const NetworkAclRule* rule : rules) {
    const bool allow = rule->action == RuleAction::Allow;
    const FlowGuard guard = makeGuard(FlowGuard::Kind::NetworkAcl, ingress, acl.name, rule->number);
    chain.rules.push_back(fmt::format(
        "{} comment \"rule {}\"",
        joinParts({fmt::format("{} {}", peer, rule->cidr.str()), protocolMatch(rule->protocol, rule->ports),
                   allow ? "return" : flowLog(guard) + " drop"}),
        rule->number));
  }
  chain.rules.push_back(fmt::format("{} drop comment \"implicit deny\"",
                                    flowLog(makeGuard(FlowGuard::Kind::NetworkAcl, ingress, acl.name))));
  return chain;
}

// The rules of every group of the combination in one direction, then the drop. A peer group is its
// member set (@sg-members-NAME), so a NIC joining or leaving changes an element, not the chain.
NftChain comboChain(const std::vector<const SecurityGroup*>& groups, const NftTable& table,
                    Direction direction) {
  const bool ingress = direction == Direction::Ingress;
  NftChain chain;
  std::string_view peer = ingress ? "ip saddr" : "ip daddr";
  for (const SecurityGroup* group : groups) {
    for (const SecurityGroupRule& rule : group->rules) {
      if (rule.direction != direction) continue;
      std::string peerMatch;
      if (rule.cidr) {
        peerMatch = fmt::format("{} {}", peer, rule.cidr->str());
      } else if (rule.peerGroup) {
        if (!table.sets.contains(memberSetName(*rule.peerGroup))) {
          chain.rules.push_back(fmt::format("# {} rule {}: peer group {} is not in this vpc", group->name,
                                            rule.id, *rule.peerGroup));
          continue;
        }
        peerMatch = fmt::format("{} @{}", peer, memberSetName(*rule.peerGroup));
      }
      chain.rules.push_back(fmt::format(
          "{} comment \"{} rule {}\"",
          joinParts({peerMatch, protocolMatch(rule.protocol, rule.ports), ingress ? "accept" : "return"}),
          group->name, rule.id));
    }
  }
  std::string names;
  for (const SecurityGroup* group : groups) names += (names.empty() ? "" : ".") + group->name;
  if (names.empty()) names = "none";
  chain.rules.push_back(flowLog(makeGuard(FlowGuard::Kind::SecurityGroup, ingress, names)) + " drop");
  return chain;
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

// The gateway's per-NIC parts are elements: published ports (forward's accept and prerouting's DNAT) and
// public addresses (DNAT in, SNAT out). A lookup that misses makes the rule not match.
void addGateway(NftTable& table, const GatewayNat& nat, const std::vector<Nic>& nics,
                const std::vector<const Subnet*>& subnets) {
  NftSet& published = table.sets["published"];
  published.keyType = "ipv4_addr . inet_proto . inet_service";
  NftSet& forwards = table.sets["published-ports"];
  forwards.keyType = "inet_proto . inet_service";
  forwards.valueType = "ipv4_addr . inet_service";
  NftSet& inbound = table.sets["public-to-private"];
  inbound.keyType = "ipv4_addr";
  inbound.valueType = "ipv4_addr";
  NftSet& outbound = table.sets["private-to-public"];
  outbound.keyType = "ipv4_addr";
  outbound.valueType = "ipv4_addr";

  NftChain& prerouting = table.chains["prerouting"];
  prerouting.hook = "type nat hook prerouting priority dstnat; policy accept;";
  prerouting.rules.push_back(fmt::format(
      "iifname {} dnat ip to ip daddr map @public-to-private comment \"public addresses (1:1)\"", nat.link));
  prerouting.rules.push_back(
      fmt::format("iifname {} ip daddr {} dnat ip to meta l4proto . th dport map @published-ports comment "
                  "\"published ports\"",
                  nat.link, nat.outside));
  for (const Nic& nic : nics) {
    if (nat.usesPublicAddress(nic)) {
      const std::string comment = fmt::format("public address of {}", nic.instance);
      inbound.elements.emplace(*nic.publicAddress, NftElement{.value = nic.addressText, .comment = comment});
      outbound.elements.emplace(nic.addressText, NftElement{.value = *nic.publicAddress, .comment = comment});
    } else if (nic.publicAddress) {
      prerouting.rules.push_back(fmt::format("# {}: public address {} unused: subnet {} is not public",
                                             nic.instance, *nic.publicAddress, nic.subnet));
    }
    for (const PortForward& forward : nic.publish) {
      if (!nat.publishes(nic)) {
        prerouting.rules.push_back(
            fmt::format("# {}: publish {} unused: subnet {} has no route to the internet gateway",
                        nic.instance, portForwardText(forward), nic.subnet));
        continue;
      }
      const std::string protocol(protocolName(forward.protocol));
      const std::string comment = fmt::format("{} publishes {}", nic.instance, portForwardText(forward));
      forwards.elements.emplace(
          fmt::format("{} . {}", protocol, forward.outsidePort),
          NftElement{.value = fmt::format("{} . {}", nic.addressText, forward.instancePort),
                     .comment = comment});
      published.elements.emplace(fmt::format("{} . {} . {}", nic.addressText, protocol, forward.instancePort),
                                 NftElement{.value = {}, .comment = comment});
    }
  }

  NftChain& input = table.chains["input"];
  input.hook = "type filter hook input priority filter; policy accept;";
  input.rules = {fmt::format("iifname {} ct state established,related accept", nat.link),
                 fmt::format("iifname {} icmp type echo-request accept", nat.link),
                 fmt::format("iifname {} {} drop comment \"the router answers nothing else from outside\"",
                             nat.link, flowLog(makeGuard(FlowGuard::Kind::RouterInbound)))};

  NftChain& postrouting = table.chains["postrouting"];
  postrouting.hook = "type nat hook postrouting priority srcnat; policy accept;";
  // The NICs' own public addresses first: they are more specific than their subnet's rule.
  postrouting.rules.push_back(fmt::format(
      "oifname {} snat ip to ip saddr map @private-to-public comment \"public addresses (1:1)\"", nat.link));
  for (const Subnet* subnet : subnets) {
    SubnetReachability reachability = nat.reachabilityOf(subnet->name);
    if (reachability == SubnetReachability::Isolated) continue;
    postrouting.rules.push_back(fmt::format("oifname {} ip saddr {} snat ip to {} comment \"subnet {}: {}\"",
                                            nat.link, subnet->cidr.str(), nat.outside, subnet->name,
                                            subnetReachabilityName(reachability)));
  }
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

// Runs `commands` through the libnftables context `ctx`, in the calling thread's network namespace; what
// nft printed (for list commands). Both buffers are read every time: reading one empties it for the next
// command of a kept context.
Result<std::string> runCommandsIn(nft_ctx* ctx, const std::string& commands, bool json) {
  const unsigned flags = nft_ctx_output_get_flags(ctx);
  nft_ctx_output_set_flags(ctx, json ? flags | NFT_CTX_OUTPUT_JSON : flags & ~NFT_CTX_OUTPUT_JSON);
  const int status = nft_run_cmd_from_buffer(ctx, commands.c_str());
  std::string output = nft_ctx_get_output_buffer(ctx);
  std::string text = nft_ctx_get_error_buffer(ctx);
  if (status != 0) {
    while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
    return fail(internalError("nft refused the commands: {}", text.empty() ? "(no message)" : text));
  }
  return output;
}

// A new libnftables context with buffered output and errors, its netfilter socket in the calling thread's
// network namespace; null when libnftables failed.
nft_ctx* newContext() {
  nft_ctx* ctx = nft_ctx_new(NFT_CTX_DEFAULT);
  if (ctx == nullptr) return nullptr;
  if (nft_ctx_buffer_output(ctx) != 0 || nft_ctx_buffer_error(ctx) != 0) {
    nft_ctx_free(ctx);
    return nullptr;
  }
  return ctx;
}

// Runs `commands` through a fresh libnftables context, in the calling thread's network namespace.
Result<std::string> runCommands(const std::string& commands, bool json = false) {
  std::unique_ptr<nft_ctx, decltype(&freeInBackground)> ctx(newContext(), freeInBackground);
  if (!ctx) return fail(internalError("nft_ctx_new or nft_ctx_buffer_output/error failed"));
  return runCommandsIn(ctx.get(), commands, json);
}

// One libnftables context per named namespace, kept from one transaction to the next. A fresh context
// per transaction cost a netfilter socket's close after each commit, which the kernel makes wait ~8-12 ms
// under load, and the next commit in that namespace waited behind it (measured: 15 ms per transaction
// back to back, 0.1-0.3 ms with a kept context). The context's socket holds its namespace alive, so it
// is tied to the namespace's identity (the nsfs inode of /run/netns/NAME): a namespace deleted and made
// again under the same name gets a new context, and deleteNetns() frees the kept one first
// (forgetNftContext), so a deleted namespace is never kept alive by corrald.
struct KeptContext {
  ino_t namespaceInode = 0;
  std::mutex inUse;  // a libnftables context is not thread-safe
  std::unique_ptr<nft_ctx, decltype(&nft_ctx_free)> ctx{nullptr, nft_ctx_free};  // made on first use
};

struct KeptContexts {
  std::mutex lock;
  std::map<std::string, std::shared_ptr<KeptContext>, std::less<>> byNamespace;
};

KeptContexts& keptContexts() {
  static KeptContexts* contexts = new KeptContexts();  // never destroyed: threads may use it at exit
  return *contexts;
}

// The kept context of namespace `netns` whose nsfs inode is `inode`, or a new empty one in its place
// (a different inode: the namespace was made again; the old context is freed when its last user is done).
std::shared_ptr<KeptContext> keptContextFor(const std::string& netns, ino_t inode) {
  std::shared_ptr<KeptContext> replaced;  // freed after the registry's lock is let go
  KeptContexts& contexts = keptContexts();
  std::lock_guard guard(contexts.lock);
  std::shared_ptr<KeptContext>& kept = contexts.byNamespace[netns];
  if (!kept || kept->namespaceInode != inode) {
    replaced = std::move(kept);
    kept = std::make_shared<KeptContext>();
    kept->namespaceInode = inode;
  }
  return kept;
}

// Runs `commands` through libnftables inside /run/netns/`netns` (empty: the caller's own namespace, with a
// fresh context), on a helper thread that setns()es there so that the caller's own network namespace never
// changes and anything libnftables opens lands in `netns`.
Result<std::string> runInNamespace(const std::string& netns, const std::string& commands, bool json = false) {
  if (netns.empty()) return runCommands(commands, json);
  if (netns.find('/') != std::string::npos || netns == "." || netns == "..") {
    return fail(invalidField("netns", "network namespace name \"{}\" is not a plain name", netns));
  }
  const std::string path = "/run/netns/" + netns;
  UniqueFd nsFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!nsFd) {
    if (errno == ENOENT) {
      forgetNftContext(netns);
      return fail(notFound("network namespace \"{}\" does not exist", netns));
    }
    return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  }
  struct stat identity {};
  if (::fstat(nsFd.get(), &identity) != 0)
    return fail(systemError(errno, fmt::format("fstat(\"{}\")", path)));
  std::shared_ptr<KeptContext> kept = keptContextFor(netns, identity.st_ino);

  std::optional<Result<std::string>> result;
  auto work = [&] {
    if (::setns(nsFd.get(), CLONE_NEWNET) != 0) {
      result.emplace(fail(systemError(errno, fmt::format("setns(\"{}\", CLONE_NEWNET)", path))));
      return;
    }
    std::lock_guard guard(kept->inUse);
    if (!kept->ctx) kept->ctx.reset(newContext());
    if (!kept->ctx) {
      result.emplace(fail(internalError("nft_ctx_new or nft_ctx_buffer_output/error failed")));
      return;
    }
    result.emplace(runCommandsIn(kept->ctx.get(), commands, json));
  };
  try {
    std::thread worker(work);
    worker.join();
  } catch (const std::system_error& e) {
    return fail(systemError(e.code().value(), "std::thread (nft helper)"));
  }
  // Deleted (or made again) while this ran: the context kept for it must not outlive it.
  struct stat now {};
  if (::stat(path.c_str(), &now) != 0 || now.st_ino != identity.st_ino) forgetNftContext(netns);
  if (!*result) return fail(std::move(result->error()).wrap(fmt::format("netns \"{}\"", netns)));
  return std::move(**result);
}

constexpr std::string_view kPortGuardTable = "bridge corral";

// The lines of an nft listing that are not blank, without their indentation.
std::vector<std::string_view> listingLines(std::string_view listing) {
  std::vector<std::string_view> lines;
  size_t start = 0;
  while (start < listing.size()) {
    size_t end = listing.find('\n', start);
    if (end == std::string_view::npos) end = listing.size();
    std::string_view line = listing.substr(start, end - start);
    start = end + 1;
    const size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos) continue;
    line.remove_prefix(first);
    lines.push_back(line);
  }
  return lines;
}

// The names declared by `keyword` ("chain", "counter") in nft's listing of a table, in order.
std::vector<std::string> declaredNames(std::string_view listing, std::string_view keyword) {
  std::vector<std::string> names;
  for (std::string_view line : listingLines(listing)) {
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

NftTable vpcFirewall(const Topology& topology, std::string_view vpc, const std::vector<NicAttachment>& nics,
                     const GatewayPlan* gateway, const std::vector<NicAttachment>& peerNics) {
  const std::vector<Nic> resolved = resolveNics(topology, vpc, nics);
  const std::vector<const Subnet*> subnets = topology.subnets(vpc);
  std::optional<GatewayNat> nat;
  if (gateway != nullptr) nat = resolveGateway(topology, subnets, *gateway);

  NftTable table;
  table.family = "inet";
  table.name = "corral";
  table.header = fmt::format("vpc {}: generated by corral; NICs and rules come and go as set elements", vpc);
  for (const Subnet* subnet : subnets) {
    const NetworkAcl* acl = topology.findNetworkAcl(subnet->networkAcl);
    if (acl == nullptr || table.chains.contains(naclChainName(*acl, Direction::Ingress))) continue;
    table.chains.emplace(naclChainName(*acl, Direction::Ingress), naclChain(*acl, Direction::Ingress));
    table.chains.emplace(naclChainName(*acl, Direction::Egress), naclChain(*acl, Direction::Egress));
  }

  // Security groups: who is in each (for peer-group rules), one chain pair per combination of groups NICs
  // have, and the maps from a NIC's address to its combination's chains.
  for (const SecurityGroup* group : topology.securityGroups(vpc)) {
    table.sets[memberSetName(group->name)].keyType = "ipv4_addr";
  }
  // Groups of peered VPCs that our rules name: their members, from the peer's NICs.
  for (const SecurityGroup* group : topology.securityGroups(vpc)) {
    for (const SecurityGroupRule& rule : group->rules) {
      if (!rule.peerGroup) continue;
      const SecurityGroup* peer = topology.findSecurityGroup(*rule.peerGroup);
      if (peer == nullptr || peer->vpc == vpc || !topology.peeringBetween(vpc, peer->vpc)) continue;
      NftSet& members = table.sets[memberSetName(peer->name)];
      members.keyType = "ipv4_addr";
      for (const NicAttachment& nic : peerNics) {
        const Subnet* subnet = topology.findSubnet(nic.subnet);
        if (subnet == nullptr || subnet->vpc != peer->vpc) continue;
        bool member = nic.securityGroups.empty()
                          ? peer->isDefault
                          : std::find(nic.securityGroups.begin(), nic.securityGroups.end(), peer->name) !=
                                nic.securityGroups.end();
        if (member) members.elements.emplace(nic.address, NftElement{.value = {}, .comment = nic.instance});
      }
    }
  }
  NftSet& egress = table.sets["sg-egress"];
  egress.keyType = "ipv4_addr";
  egress.valueType = "verdict";
  NftSet& ingress = table.sets["sg-ingress"];
  ingress.keyType = "ipv4_addr";
  ingress.valueType = "verdict";
  for (const Nic& nic : resolved) {
    for (const SecurityGroup* group : nic.groups) {
      table.sets[memberSetName(group->name)].elements.emplace(
          nic.addressText, NftElement{.value = {}, .comment = nic.instance});
    }
    for (Direction direction : {Direction::Egress, Direction::Ingress}) {
      const std::string chain = comboChainName(nic.groups, direction);
      if (!table.chains.contains(chain))
        table.chains.emplace(chain, comboChain(nic.groups, table, direction));
      NftSet& map = direction == Direction::Egress ? egress : ingress;
      map.elements.emplace(nic.addressText, NftElement{.value = "jump " + chain, .comment = nic.instance});
    }
  }

  NftChain& forward = table.chains["forward"];
  forward.hook = "type filter hook forward priority filter; policy accept;";
  forward.rules = {"meta nfproto ipv6 drop", "ct state invalid drop"};
  if (!topology.peerings(vpc).empty()) {
    if (const Vpc* own = topology.findVpc(vpc)) {
      // A peering carries only traffic between the two VPCs themselves (AWS): what arrives through one
      // goes to this VPC's addresses, what leaves through one comes from them. So no VPC reaches a third
      // through us, and nothing goes between a peering and the internet gateway either way.
      const std::string peeringLinks = fmt::format("\"{}p*\"", kLinkPrefix);
      forward.rules.push_back(
          fmt::format("iifname {} ip daddr != {} drop comment \"peering: only to this vpc (not transitive)\"",
                      peeringLinks, own->cidr.str()));
      forward.rules.push_back(fmt::format(
          "oifname {} ip saddr != {} drop comment \"peering: only from this vpc (not transitive)\"",
          peeringLinks, own->cidr.str()));
    }
  }
  if (nat) {
    for (const Subnet* subnet : subnets) {
      if (nat->reachabilityOf(subnet->name) != SubnetReachability::Isolated) continue;
      forward.rules.push_back(fmt::format(
          "ip saddr {} oifname {} {} drop comment \"isolated subnet {}\"", subnet->cidr.str(), nat->link,
          flowLog(makeGuard(FlowGuard::Kind::IsolatedSubnet, false, subnet->name)), subnet->name));
    }
  }
  for (const Subnet* subnet : subnets) {
    const NetworkAcl* acl = topology.findNetworkAcl(subnet->networkAcl);
    if (acl == nullptr) continue;
    const std::string cidr = subnet->cidr.str();
    forward.rules.push_back(fmt::format("ip saddr {0} ip daddr != {0} jump {1} comment \"leaving {2}\"", cidr,
                                        naclChainName(*acl, Direction::Egress), subnet->name));
    forward.rules.push_back(fmt::format("ip daddr {0} ip saddr != {0} jump {1} comment \"entering {2}\"",
                                        cidr, naclChainName(*acl, Direction::Ingress), subnet->name));
  }
  forward.rules.push_back("ct state established,related accept");
  if (nat) {
    // Publishing a port is its allow rule; `ct original` keeps a 1:1 NATed connection to the same
    // address and port facing the security groups.
    forward.rules.push_back(
        fmt::format("iifname {} ct status dnat ct original ip daddr {} ip daddr . meta l4proto . th dport "
                    "@published accept comment \"published ports\"",
                    nat->link, nat->outside));
    forward.rules.push_back(
        fmt::format("iifname {} ct status & dnat == 0 {} drop comment \"unsolicited inbound\"", nat->link,
                    flowLog(makeGuard(FlowGuard::Kind::Unsolicited))));
  }
  forward.rules.push_back("ip saddr vmap @sg-egress");
  forward.rules.push_back("ip daddr vmap @sg-ingress");
  // The routing decision drops a packet that has no route (or a blackhole one) before any hook sees it
  // drop; this looks the route up first (the kernel's lookup includes the source, so the subnet's own
  // route table answers) and logs the new connections that will find none. It drops nothing itself.
  NftChain& noRoute = table.chains["no-route"];
  noRoute.hook = "type filter hook prerouting priority filter; policy accept;";
  noRoute.rules = {
      fmt::format("meta nfproto ipv4 ct state new meta pkttype host fib daddr type != local fib "
                  "daddr oif missing {}",
                  flowLog(makeGuard(FlowGuard::Kind::NoRoute)))};
  if (nat) addGateway(table, *nat, resolved, subnets);
  return table;
}

std::optional<NftDelta> vpcFirewallRulesDelta(const NftTable& applied, const Topology& before,
                                              const Topology& after, std::string_view vpc,
                                              const std::vector<NicAttachment>& nics,
                                              const GatewayPlan* gateway,
                                              const std::vector<NicAttachment>& peerNics) {
  // A NIC's elements follow from its list of groups (and its own addresses): one NIC per list stands for
  // all that share it. Publishing and public addresses are left out (elements and notes, not chains).
  std::map<std::vector<std::string>, NicAttachment> representatives;
  for (const NicAttachment& nic : nics) {
    std::vector<std::string> groups = nic.securityGroups;
    std::sort(groups.begin(), groups.end());
    if (representatives.contains(groups)) continue;
    NicAttachment stand = nic;
    stand.publish.clear();
    stand.publicAddress.reset();
    representatives.emplace(std::move(groups), std::move(stand));
  }
  std::vector<NicAttachment> stands;
  for (auto& [groups, nic] : representatives) stands.push_back(std::move(nic));
  // The peer VPCs' NICs are elements (of their groups' member sets): all of them, so that a set that stays
  // shows no element change and a new one is refused below (its elements need the whole plan).
  const NftTable was = vpcFirewall(before, vpc, stands, gateway, peerNics);
  const NftTable will = vpcFirewall(after, vpc, stands, gateway, peerNics);
  // `applied` must be what `before` plans in everything but elements.
  if (was.chains != applied.chains || was.sets.size() != applied.sets.size()) return std::nullopt;
  for (const auto& [name, set] : was.sets) {
    auto held = applied.sets.find(name);
    if (held == applied.sets.end() || held->second.keyType != set.keyType ||
        held->second.valueType != set.valueType || held->second.counter != set.counter)
      return std::nullopt;
  }
  auto delta = diffTables(was, will);
  if (!delta) return std::nullopt;
  for (const NftCommand& command : delta->commands) {
    if (command.kind == NftCommand::Kind::AddElement || command.kind == NftCommand::Kind::DeleteElement)
      return std::nullopt;
    // A set going whole takes its elements along: only an empty one (a deleted group's, unused) may go.
    if (command.kind == NftCommand::Kind::DeleteSet && !applied.sets.at(command.name).elements.empty())
      return std::nullopt;
  }
  return delta;
}

std::string vpcRuleset(const Topology& topology, std::string_view vpc, const std::vector<NicAttachment>& nics,
                       const GatewayPlan* gateway) {
  return renderTable(vpcFirewall(topology, vpc, nics, gateway));
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

void forgetNftContext(const std::string& netns) {
  std::shared_ptr<KeptContext> dropped;  // freed after the registry's lock is let go
  KeptContexts& contexts = keptContexts();
  std::lock_guard guard(contexts.lock);
  if (auto it = contexts.byNamespace.find(netns); it != contexts.byNamespace.end()) {
    dropped = std::move(it->second);
    contexts.byNamespace.erase(it);
  }
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

std::string portGuardDropSetName(SpoofReason reason) {
  return fmt::format("drops-{}", spoofReasonName(reason));
}

NftTable portGuardTable(std::string_view vpc, const std::vector<NicPlan>& nics) {
  NftTable table;
  table.family = "bridge";
  table.name = "corral";
  table.header = fmt::format("vpc {}: port guards (source check), generated by corral", vpc);
  NftSet& ports = table.sets["ports"];
  ports.keyType = "ifname";
  NftSet& macs = table.sets["port-mac"];
  macs.keyType = "ifname . ether_addr";
  NftSet& addresses = table.sets["port-ip"];
  addresses.keyType = "ifname . ipv4_addr";
  NftSet& senders = table.sets["port-arp"];
  senders.keyType = "ifname . ether_addr . ipv4_addr";
  for (SpoofReason reason : kSpoofReasons) {
    NftSet& drops = table.sets[portGuardDropSetName(reason)];
    drops.keyType = "ifname";
    drops.counter = true;
  }
  for (const NicPlan& nic : nics) {
    const std::string port = fmt::format("\"{}\"", nic.link);
    const NftElement element{.value = {}, .comment = nic.nic.instance};
    ports.elements.emplace(port, element);
    macs.elements.emplace(fmt::format("{} . {}", port, nic.mac), element);
    addresses.elements.emplace(fmt::format("{} . {}", port, nic.nic.address), element);
    senders.elements.emplace(fmt::format("{} . {} . {}", port, nic.mac, nic.nic.address), element);
    for (SpoofReason reason : kSpoofReasons)
      table.sets[portGuardDropSetName(reason)].elements.emplace(port, element);
  }
  // One chain for every port: a frame from a port of ours must match that port's elements. Each drop
  // looks its port up in the reason's counter set, which counts the frame on the port's element.
  NftChain& prerouting = table.chains["prerouting"];
  prerouting.hook = "type filter hook prerouting priority filter; policy accept;";
  prerouting.rules = {
      "iifname != @ports accept comment \"not an instance's port\"",
      "iifname . ether saddr != @port-mac iifname @drops-mac drop comment \"not its mac\"",
      "ether type ip iifname . ip saddr != @port-ip iifname @drops-ip drop comment \"not its address\"",
      "ether type ip accept",
      "ether type arp arp htype 1 arp ptype ip arp hlen 6 arp plen 4 arp operation { request, reply } "
      "iifname . arp saddr ether . arp saddr ip @port-arp accept",
      "ether type arp iifname @drops-arp drop comment \"arp for another address\"",
      "iifname @drops-other drop comment \"not ipv4 or arp\""};
  return table;
}

std::string portGuardRuleset(std::string_view vpc, const std::vector<NicPlan>& nics) {
  return renderTable(portGuardTable(vpc, nics));
}

namespace {

// The packets counted on each element of the drop counter sets in nft's listing of table bridge corral
// (`set drops-ip { ... elements = { "crlv0001" counter packets 3 bytes 180 comment "web-1", ... } }`): by
// port, by reason.
std::map<std::string, SpoofDrops> parseDropSets(std::string_view listing,
                                                std::set<std::string>* ports = nullptr) {
  std::map<std::string, SpoofDrops> drops;
  bool inDropSet = false;
  SpoofReason reason = SpoofReason::Other;  // of the set being read
  for (std::string_view line : listingLines(listing)) {
    if (line.starts_with("set ") || line.starts_with("map ") || line.starts_with("chain ")) {
      inDropSet = false;
      for (SpoofReason candidate : kSpoofReasons) {
        if (line != fmt::format("set {} {{", portGuardDropSetName(candidate))) continue;
        inDropSet = true;
        reason = candidate;
      }
      continue;
    }
    if (!inDropSet) continue;
    // Every element: a quoted port name followed by its counter.
    constexpr std::string_view kCounted = "\" counter packets ";
    for (size_t at = line.find(kCounted); at != std::string_view::npos; at = line.find(kCounted, at + 1)) {
      const size_t open = line.rfind('"', at - 1);
      if (open == std::string_view::npos) break;
      const std::string port(line.substr(open + 1, at - open - 1));
      uint64_t packets = 0;
      for (size_t digit = at + kCounted.size();
           digit < line.size() && std::isdigit(static_cast<unsigned char>(line[digit])); ++digit)
        packets = packets * 10 + static_cast<uint64_t>(line[digit] - '0');
      SpoofDrops& counts = drops[port];
      switch (reason) {
        case SpoofReason::Mac:
          counts.mac = packets;
          break;
        case SpoofReason::Ip:
          counts.ip = packets;
          break;
        case SpoofReason::Arp:
          counts.arp = packets;
          break;
        case SpoofReason::Other:
          counts.other = packets;
          break;
      }
      if (ports != nullptr) ports->insert(port);
    }
  }
  return drops;
}

// In which drop counter sets of the listing each port has an element.
std::map<std::string, std::vector<SpoofReason>> dropSetMembers(std::string_view listing) {
  std::map<std::string, std::vector<SpoofReason>> members;
  for (SpoofReason reason : kSpoofReasons) {
    const std::string header = fmt::format("set {} {{", portGuardDropSetName(reason));
    const size_t at = listing.find(header);
    if (at == std::string_view::npos) continue;
    const size_t close = listing.find("\n\t}", at);
    std::set<std::string> ports;
    (void)parseDropSets(
        listing.substr(at, close == std::string_view::npos ? std::string_view::npos : close - at), &ports);
    for (const std::string& port : ports) members[port].push_back(reason);
  }
  return members;
}

}  // namespace

Result<std::vector<std::string>> applyPortGuards(const std::string& netns, const std::string& ruleset,
                                                 const std::vector<std::string>& links) {
  auto wrapped = [&](Error error) { return fail(std::move(error).wrap("apply port guards")); };
  if (netns.empty()) {
    // The guards belong in a VPC's namespace; the caller's own (the host's) is never touched.
    return wrapped(invalidField("netns", "port guards need a VPC namespace, not the caller's"));
  }
  auto listing = listPortGuards(netns);
  if (!listing) return wrapped(std::move(listing).error());
  const std::set<std::string> wanted(links.begin(), links.end());
  std::set<std::string> dropSets;
  for (SpoofReason reason : kSpoofReasons) dropSets.insert(portGuardDropSetName(reason));
  // One transaction that keeps the counts of the ports still guarded: those live on the elements of the
  // drop counter sets, which stay (the ruleset adds what is missing; an element that exists keeps its
  // count). Everything else is emptied or deleted and refilled by the ruleset: the chains' rules first (so
  // nothing refers to what goes), then every other set and map (an older layout's verdict map jumps to
  // per-port chains), then chains other than prerouting and the named counters of that layout, then the
  // elements of ports no longer guarded.
  std::string commands;
  const std::vector<std::string> chains = declaredNames(*listing, "chain");
  for (const std::string& chain : chains)
    commands += fmt::format("flush chain {} {}\n", kPortGuardTable, chain);
  for (std::string_view keyword : {"set", "map"}) {
    for (const std::string& set : declaredNames(*listing, keyword)) {
      if (keyword == "set" && dropSets.contains(set)) continue;
      commands += fmt::format("delete {} {} {}\n", keyword, kPortGuardTable, set);
    }
  }
  std::set<std::string> removedPorts;
  for (const std::string& chain : chains) {
    if (chain == "prerouting") continue;
    commands += fmt::format("delete chain {} {}\n", kPortGuardTable, chain);
    if (chain.starts_with("port-") && !wanted.contains(chain.substr(5))) removedPorts.insert(chain.substr(5));
  }
  for (const std::string& counter : declaredNames(*listing, "counter"))
    commands += fmt::format("delete counter {} {}\n", kPortGuardTable, counter);
  for (const auto& [port, reasons] : dropSetMembers(*listing)) {
    if (wanted.contains(port)) continue;
    for (SpoofReason reason : reasons) {
      commands += fmt::format("delete element {} {} {{ \"{}\" }}\n", kPortGuardTable,
                              portGuardDropSetName(reason), port);
    }
    removedPorts.insert(port);
  }
  commands += ruleset;
  if (auto s = runInNamespace(netns, commands); !s) return wrapped(std::move(s).error());
  return std::vector<std::string>(removedPorts.begin(), removedPorts.end());
}

Result<std::map<std::string, SpoofDrops>> spoofDrops(const std::string& netns) {
  if (netns.empty()) return std::map<std::string, SpoofDrops>();
  // Every bridge table: succeeds (empty) when ours does not exist yet, and reading never creates it.
  auto listing = runInNamespace(netns, "list ruleset bridge\n");
  if (!listing) return fail(std::move(listing).error().wrap("read port guard counters"));
  const size_t at = listing->find(fmt::format("table {} {{", kPortGuardTable));
  if (at == std::string::npos) return std::map<std::string, SpoofDrops>();
  const size_t next = listing->find("\ntable ", at);
  return parseDropSets(
      std::string_view(*listing).substr(at, next == std::string::npos ? std::string::npos : next - at));
}

Result<SpoofDrops> spoofDropsOf(const std::string& netns, const std::string& link) {
  if (netns.empty()) return fail(invalidField("netns", "port guards live in a VPC namespace"));
  // One element of each counter set, not the table's listing (nft still caches every element, net/nft.h).
  std::string commands;
  for (SpoofReason reason : kSpoofReasons)
    commands +=
        fmt::format("get element {} {} {{ \"{}\" }}\n", kPortGuardTable, portGuardDropSetName(reason), link);
  auto listing = runInNamespace(netns, commands);
  if (!listing)
    return fail(std::move(listing).error().wrap(fmt::format("read port guard counters of {}", link)));
  auto drops = parseDropSets(*listing);
  auto it = drops.find(link);
  if (it == drops.end()) return fail(notFound("port {} has no guard", link));
  return it->second;
}

Status applyDeltas(const std::string& netns, const std::vector<NftDelta>& deltas) {
  if (netns.empty()) {
    return fail(invalidField("netns", "nft deltas belong in a VPC namespace, not the caller's")
                    .wrap("apply nft delta"));
  }
  std::string commands;
  for (const NftDelta& delta : deltas) commands += delta.text();
  if (commands.empty()) return {};
  if (auto s = runInNamespace(netns, commands); !s) return fail(std::move(s).error().wrap("apply nft delta"));
  return {};
}

Result<std::string> listTableJson(const std::string& netns, std::string_view family, std::string_view table) {
  auto listing = runInNamespace(netns, fmt::format("list table {} {}\n", family, table), true);
  if (!listing) return fail(std::move(listing).error().wrap(fmt::format("list table {} {}", family, table)));
  return listing;
}

}  // namespace corral::net
