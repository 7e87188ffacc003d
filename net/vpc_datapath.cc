// The sys side of a VPC: converges a namespace to its VpcPlan (links, addresses, policy routing, the
// internet gateway's veth pair, the ruleset) and plugs instance NICs into subnet bridges.
#include "net/vpc_datapath.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <system_error>
#include <thread>
#include <utility>

#include "core/log.h"
#include "core/rollback.h"
#include "core/unique_fd.h"
#include "net/announce.h"
#include "net/netlink.h"
#include "net/nft.h"
#include "net/vpc_kernel.h"

namespace corral::net {
namespace {

// Our objects in the VPC namespace: rule priorities and routing tables (datapath.h allocates from these).
constexpr uint32_t kFirstOurRulePriority = 900;
constexpr uint32_t kLastOurRulePriority = 1999;
constexpr uint32_t kFirstOurTable = 100;
constexpr uint32_t kLastOurTable = 1099;
constexpr uint32_t kMainTable = 254;
// How long an attach waits for the bridge to take its new port before announcing the address anyway
// (typically well under a millisecond: the kernel's linkwatch runs urgently for a veth's carrier).
constexpr std::chrono::milliseconds kPortRunningWait{500};

// default (253), main (254) and local (255) lie inside our range but are the kernel's.
bool isReservedTable(uint32_t id) {
  return id >= 253 && id <= 255;
}

const std::string kBridgePrefix = fmt::format("{}b", kLinkPrefix);
const std::string kVethPrefix = fmt::format("{}v", kLinkPrefix);
const std::string kTapPrefix = fmt::format("{}t", kLinkPrefix);
const std::string kGatewayPrefix = fmt::format("{}g", kLinkPrefix);
const std::string kPeeringPrefix = fmt::format("{}p", kLinkPrefix);

bool hasPrefix(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

// "100.64.0.5/30" -> "100.64.0.5".
std::string hostPart(const std::string& cidrAddress) {
  return cidrAddress.substr(0, cidrAddress.find('/'));
}

// "net/ipv4/ip_forward" -> "net.ipv4.ip_forward", as sysctl(8) spells it.
std::string sysctlName(std::string key) {
  std::replace(key.begin(), key.end(), '/', '.');
  return key;
}

std::string ruleText(const RuleEntry& rule) {
  std::string text = fmt::format("{}", rule.priority);
  if (rule.from) text += fmt::format(" from {}", *rule.from);
  if (rule.to) text += fmt::format(" to {}", *rule.to);
  return text +
         (rule.table == kMainTable ? std::string(" lookup main") : fmt::format(" lookup {}", rule.table));
}

std::string routeText(const RouteEntry& route) {
  if (route.blackhole) return fmt::format("blackhole {}", route.destination);
  std::string text = route.destination;
  if (route.gateway) text += fmt::format(" via {}", *route.gateway);
  if (route.device) text += fmt::format(" dev {}", *route.device);
  return text;
}

const LinkInfo* findLink(const std::vector<LinkInfo>& links, std::string_view name) {
  auto it = std::find_if(links.begin(), links.end(), [&](const LinkInfo& l) { return l.name == name; });
  return it == links.end() ? nullptr : &*it;
}

// What this process knows about a namespace it converged, so that a convergence with nothing to do
// stays cheap: nft has no cheap "is this what is loaded" (and reloading would be logged as a change).
// Reset when the namespace is made anew (another identity) and by destroyVpc.
struct NetnsMemo {
  uint64_t identity = 0;
  std::optional<std::string> ruleset;     // last applied
  std::optional<std::string> portGuards;  // last applied
};
std::mutex memosMutex;
std::map<std::string, NetnsMemo>& memos() {
  static std::map<std::string, NetnsMemo> all;
  return all;
}

NetnsMemo freshMemo(uint64_t identity) {
  NetnsMemo memo;
  memo.identity = identity;
  return memo;
}

NetnsMemo loadMemo(VpcKernel& kernel, const std::string& netns) {
  std::optional<uint64_t> identity = kernel.netnsIdentity(netns);
  std::lock_guard lock(memosMutex);
  auto it = memos().find(netns);
  if (!identity || it == memos().end() || it->second.identity != *identity) {
    return freshMemo(identity.value_or(0));
  }
  return it->second;
}

void storeMemo(const std::string& netns, const NetnsMemo& memo) {
  if (memo.identity == 0) return;
  std::lock_guard lock(memosMutex);
  memos()[netns] = memo;
}

void forgetMemo(const std::string& netns) {
  std::lock_guard lock(memosMutex);
  memos().erase(netns);
}

// One convergence run: each step reads the kernel's state and fixes what differs from the plan.
class Converger {
 public:
  Converger(const VpcPlan& plan, VpcKernel& kernel) : plan_(plan), kernel_(kernel) {}

  Status run() {
    if (auto s = step("namespace", [&] { return convergeNamespace(); }); !s) return s;
    if (auto s = step("sysctls", [&] { return convergeSysctls(); }); !s) return s;
    if (auto s = step("bridges", [&] { return convergeBridges(); }); !s) return s;
    if (auto s = step("port guards", [&] { return convergePortGuards(); }); !s) return s;
    if (auto s = step("internet gateway", [&] { return convergeGateway(); }); !s) return s;
    if (auto s = step("peerings", [&] { return convergePeerings(); }); !s) return s;
    if (auto s = step("NIC ports", [&] { return convergeNicPorts(); }); !s) return s;
    if (auto s = step("routes", [&] { return convergeRoutes(); }); !s) return s;
    if (auto s = step("rules", [&] { return convergeRules(); }); !s) return s;
    return step("ruleset", [&] { return convergeRuleset(); });
  }

  ChangeLog takeLog() { return std::move(log_); }

 private:
  template <class Work>
  Status step(std::string_view name, Work&& work) {
    Status status = work();
    if (!status) return fail(std::move(status).error().wrap(name));
    return {};
  }

  template <class... Args>
  void record(fmt::format_string<Args...> format, Args&&... args) {
    log_.push_back(fmt::format(format, std::forward<Args>(args)...));
  }

  Status convergeNamespace() {
    bool created = false;
    if (!kernel_.netnsExists(plan_.netns)) {
      if (auto s = kernel_.createNetns(plan_.netns); !s) return s;
      record("created netns {}", plan_.netns);
      created = true;
    }
    memo_ = loadMemo(kernel_, plan_.netns);
    // A namespace made just now knows nothing yet, even if its inode number was used before.
    if (created) memo_ = freshMemo(memo_.identity);
    auto lo = kernel_.link(plan_.netns, "lo");
    if (!lo) return fail(std::move(lo).error());
    if (*lo && !(*lo)->up) {
      if (auto s = kernel_.setUp(plan_.netns, "lo"); !s) return s;
      record("set link lo up");
    }
    return {};
  }

  Status convergeSysctls() {
    static const std::vector<std::pair<std::string, std::string>> kWanted = {
        {"net/ipv4/ip_forward", "1"},
        // Bridged (same-subnet) traffic through the inet forward chain, for security groups.
        {"net/bridge/bridge-nf-call-iptables", "1"},
        // Replies to DNATed and 1:1 traffic come back on another link than a strict check expects.
        {"net/ipv4/conf/all/rp_filter", "0"},
        {"net/ipv4/conf/default/rp_filter", "0"},
    };
    std::vector<std::string> keys;
    for (const auto& [key, value] : kWanted) keys.push_back(key);
    auto current = kernel_.readSysctls(plan_.netns, keys);
    if (!current) return fail(std::move(current).error());
    for (size_t i = 0; i < kWanted.size(); ++i) {
      const auto& [key, value] = kWanted[i];
      const std::optional<std::string>& now = (*current)[i];
      if (!now) {
        if (hasPrefix(key, "net/bridge/")) {
          return fail(unavailable(
              "{} does not exist in netns \"{}\": the br_netfilter kernel module is not loaded (run "
              "`modprobe br_netfilter` on the host); without it security groups cannot filter traffic "
              "inside a subnet",
              sysctlName(key), plan_.netns));
        }
        return fail(unavailable("{} does not exist in netns \"{}\"", sysctlName(key), plan_.netns));
      }
      if (*now == value) continue;
      if (auto s = kernel_.writeSysctl(plan_.netns, key, value); !s) return s;
      record("set {}={} (was {})", sysctlName(key), value, *now);
    }
    return {};
  }

  // Exactly `wanted` on `link` (whose current addresses are `current`), and up.
  Status ensureAddressAndUp(const std::string& netns, const std::string& kind, const std::string& link,
                            const std::vector<std::string>& current, bool up, const std::string& wanted,
                            std::string_view where) {
    return ensureAddressesAndUp(netns, kind, link, current, up, {wanted}, where);
  }
  Status ensureAddressesAndUp(const std::string& netns, const std::string& kind, const std::string& link,
                              const std::vector<std::string>& current, bool up,
                              const std::vector<std::string>& wanted, std::string_view where) {
    for (const std::string& address : current) {
      if (std::find(wanted.begin(), wanted.end(), address) != wanted.end()) continue;
      if (auto s = kernel_.deleteAddress(netns, link, address); !s) return s;
      record("removed address {} from {} {}{}", address, kind, link, where);
    }
    for (const std::string& address : wanted) {
      if (std::find(current.begin(), current.end(), address) != current.end()) continue;
      if (auto s = kernel_.addAddress(netns, link, address); !s) return s;
      record("added address {} to {} {}{}", address, kind, link, where);
    }
    if (!up) {
      if (auto s = kernel_.setUp(netns, link); !s) return s;
      record("set {} {} up{}", kind, link, where);
    }
    return {};
  }

  Status convergeBridges() {
    auto links = kernel_.links(plan_.netns);
    if (!links) return fail(std::move(links).error());
    // Stale ones first: a deleted subnet's CIDR may come back as another subnet's.
    for (const LinkInfo& link : *links) {
      if (!hasPrefix(link.name, kBridgePrefix)) continue;
      bool planned = std::any_of(plan_.bridges.begin(), plan_.bridges.end(),
                                 [&](const BridgePlan& b) { return b.bridge == link.name; });
      if (planned) continue;
      if (auto s = kernel_.deleteLink(plan_.netns, link.name); !s) return s;
      record("removed bridge {} (subnet no longer exists)", link.name);
    }
    for (const BridgePlan& bridge : plan_.bridges) {
      const LinkInfo* existing = findLink(*links, bridge.bridge);
      if (existing != nullptr && existing->kind != "bridge") {
        if (auto s = kernel_.deleteLink(plan_.netns, bridge.bridge); !s) return s;
        record("removed link {} (a {} where subnet {}'s bridge belongs)", bridge.bridge,
               existing->kind.empty() ? std::string("link") : existing->kind, bridge.subnet);
        existing = nullptr;
      }
      std::vector<std::string> addresses;
      bool up = false;
      if (existing == nullptr) {
        if (auto s = kernel_.createBridge(plan_.netns, bridge.bridge); !s) return s;
        record("created bridge {} for subnet {}", bridge.bridge, bridge.subnet);
      } else {
        addresses = existing->addresses;
        up = existing->up;
      }
      // The router first: the kernel makes the first address of a prefix primary (the source of the
      // router's own packets), the resolver's a secondary.
      if (auto s = ensureAddressesAndUp(plan_.netns, "bridge", bridge.bridge, addresses, up,
                                        {bridge.routerAddress, bridge.resolverAddress}, "");
          !s)
        return s;
    }
    return {};
  }

  Status convergeGateway() {
    auto links = kernel_.links(plan_.netns);
    if (!links) return fail(std::move(links).error());
    const GatewayPlan* gateway = plan_.gateway ? &*plan_.gateway : nullptr;
    // Gateway links of ours that the plan does not name (no gateway any more): the uplink side dies
    // with its veth peer.
    for (const LinkInfo& link : *links) {
      if (!hasPrefix(link.name, kGatewayPrefix) || (gateway != nullptr && link.name == gateway->vpcLink)) {
        continue;
      }
      if (auto s = kernel_.deleteLink(plan_.netns, link.name); !s) return s;
      record("removed gateway link {} (internet gateway no longer exists)", link.name);
    }
    if (gateway == nullptr) return {};

    const std::string uplinkWhere = gateway->uplinkNetns.empty()
                                        ? std::string(" in the uplink namespace")
                                        : fmt::format(" in netns {}", gateway->uplinkNetns);
    const std::string& uplink = gateway->uplinkNetns;
    auto uplinkLinks = kernel_.links(uplink);
    if (!uplinkLinks) return fail(std::move(uplinkLinks).error());

    const LinkInfo* vpcSide = findLink(*links, gateway->vpcLink);
    const LinkInfo* uplinkSide = findLink(*uplinkLinks, gateway->uplinkLink);
    // Both ends where they belong; anything else (a half-made pair from an interrupted run, an uplink
    // namespace made anew) is rebuilt.
    bool pairIntact = vpcSide != nullptr && vpcSide->kind == "veth" && uplinkSide != nullptr &&
                      uplinkSide->kind == "veth" && findLink(*links, gateway->uplinkLink) == nullptr;
    if (!pairIntact) {
      if (auto s = kernel_.deleteLink(plan_.netns, gateway->vpcLink); !s) return s;
      if (auto s = kernel_.deleteLink(plan_.netns, gateway->uplinkLink); !s) return s;
      if (auto s = kernel_.deleteLink(uplink, gateway->uplinkLink); !s) return s;
      if (auto s = createGatewayPair(*gateway); !s) return s;
      record("created gateway veth pair {} <-> {}{} for internet gateway {}", gateway->vpcLink,
             gateway->uplinkLink, uplinkWhere, gateway->name);
      links = kernel_.links(plan_.netns);
      if (!links) return fail(std::move(links).error());
      uplinkLinks = kernel_.links(uplink);
      if (!uplinkLinks) return fail(std::move(uplinkLinks).error());
      vpcSide = findLink(*links, gateway->vpcLink);
      uplinkSide = findLink(*uplinkLinks, gateway->uplinkLink);
      if (vpcSide == nullptr || uplinkSide == nullptr) {
        return fail(internalError("gateway veth pair {} <-> {} is missing right after it was created",
                                  gateway->vpcLink, gateway->uplinkLink));
      }
    }
    if (auto s = ensureAddressAndUp(plan_.netns, "gateway link", gateway->vpcLink, vpcSide->addresses,
                                    vpcSide->up, gateway->vpcAddress, "");
        !s)
      return s;
    if (auto s =
            ensureAddressAndUp(gateway->uplinkNetns, "uplink link", gateway->uplinkLink,
                               uplinkSide->addresses, uplinkSide->up, gateway->uplinkAddress, uplinkWhere);
        !s)
      return s;

    // Public addresses: routed by the uplink side to the VPC side of the pair.
    const std::string via = hostPart(gateway->vpcAddress);
    std::vector<RouteEntry> wanted;
    for (Ipv4Address address : gateway->publicAddresses) {
      wanted.push_back(RouteEntry{.destination = fmt::format("{}/32", address.str()),
                                  .gateway = via,
                                  .device = gateway->uplinkLink,
                                  .table = kMainTable,
                                  .blackhole = false});
    }
    auto current = kernel_.routes(uplink, kMainTable);
    if (!current) return fail(std::move(current).error());
    for (const RouteEntry& route : *current) {
      bool ours = route.device == gateway->uplinkLink && route.gateway.has_value() &&
                  route.destination.ends_with("/32");
      if (!ours || std::find(wanted.begin(), wanted.end(), route) != wanted.end()) continue;
      if (auto s = kernel_.deleteRoute(uplink, route); !s) return s;
      record("removed route {}{} (public address no longer in use)", routeText(route), uplinkWhere);
    }
    for (const RouteEntry& route : wanted) {
      if (std::find(current->begin(), current->end(), route) != current->end()) continue;
      if (auto s = kernel_.addRoute(uplink, route); !s) return s;
      record("added route {}{}", routeText(route), uplinkWhere);
    }
    return {};
  }

  // The veth pair made in the VPC namespace, its uplink end made in the uplink namespace.
  Status createGatewayPair(const GatewayPlan& gateway) {
    return kernel_.createVethPair(plan_.netns, gateway.vpcLink, gateway.uplinkNetns, gateway.uplinkLink);
  }

  // Each peering's veth pair between the two VPC namespaces. The peer's namespace may not exist yet (a
  // reconcile converges VPCs one by one): then the pair waits for the peer's own converge, and routes
  // through it are left out until then.
  Status convergePeerings() {
    auto links = kernel_.links(plan_.netns);
    if (!links) return fail(std::move(links).error());
    for (const LinkInfo& link : *links) {
      if (!hasPrefix(link.name, kPeeringPrefix)) continue;
      bool planned = std::any_of(plan_.peerings.begin(), plan_.peerings.end(),
                                 [&](const PeeringPlan& p) { return p.link == link.name; });
      if (planned) continue;
      // The peer's end goes with it.
      if (auto s = kernel_.deleteLink(plan_.netns, link.name); !s) return s;
      record("removed peering link {} (peering no longer exists)", link.name);
    }
    for (const PeeringPlan& peering : plan_.peerings) {
      const std::string where = fmt::format(" (peering {} to vpc {})", peering.name, peering.peerVpc);
      const bool peerExists = kernel_.netnsExists(peering.peerNetns);
      const LinkInfo* ours = findLink(*links, peering.link);
      if (ours == nullptr) {
        if (!peerExists) continue;
        // A leftover end on the peer's side (its pair was cut) is in the way of the new pair.
        if (auto s = kernel_.deleteLink(peering.peerNetns, peering.peerLink); !s) return s;
        if (auto s = kernel_.createVethPair(plan_.netns, peering.link, peering.peerNetns, peering.peerLink);
            !s)
          return s;
        record("created peering link {} <-> {} in netns {}{}", peering.link, peering.peerLink,
               peering.peerNetns, where);
      }
      auto mine = kernel_.link(plan_.netns, peering.link);
      if (!mine) return fail(std::move(mine).error());
      if (!*mine)
        return fail(internalError("peering link {} is missing right after it was created", peering.link));
      if (auto s = ensureAddressAndUp(plan_.netns, "peering link", peering.link, (*mine)->addresses,
                                      (*mine)->up, peering.address, where);
          !s)
        return s;
      if (!peerExists) continue;
      auto theirs = kernel_.link(peering.peerNetns, peering.peerLink);
      if (!theirs) return fail(std::move(theirs).error());
      if (!*theirs) continue;  // not our pair's end: the peer's converge sorts it out
      if (auto s = ensureAddressAndUp(peering.peerNetns, "peering link", peering.peerLink,
                                      (*theirs)->addresses, (*theirs)->up, peering.peerAddress,
                                      fmt::format("{} in netns {}", where, peering.peerNetns));
          !s)
        return s;
      connected_.insert(peering.name);
    }
    return {};
  }

  Status convergeNicPorts() {
    auto links = kernel_.links(plan_.netns);
    if (!links) return fail(std::move(links).error());
    for (const LinkInfo& link : *links) {
      if (!hasPrefix(link.name, kVethPrefix) && !hasPrefix(link.name, kTapPrefix)) continue;
      auto nic = std::find_if(plan_.nics.begin(), plan_.nics.end(),
                              [&](const NicPlan& n) { return n.link == link.name; });
      if (nic == plan_.nics.end()) {
        if (auto s = kernel_.deleteLink(plan_.netns, link.name); !s) return s;
        record("removed NIC port {} (its instance is no longer in the VPC)", link.name);
        continue;
      }
      if (link.master != nic->bridge) {
        if (auto s = kernel_.setMaster(plan_.netns, link.name, nic->bridge); !s) return s;
        record("attached NIC port {} of instance {} to bridge {}", link.name, nic->nic.instance, nic->bridge);
      }
      if (!link.up) {
        if (auto s = kernel_.setUp(plan_.netns, link.name); !s) return s;
        record("set NIC port {} of instance {} up", link.name, nic->nic.instance);
      }
    }
    return {};
  }

  std::vector<RouteEntry> wantedRoutes(const RouteTablePlan& table) const {
    std::vector<RouteEntry> routes;
    for (const RoutePlan& route : table.routes) {
      RouteEntry entry;
      entry.destination = route.destination.str();
      entry.table = table.tableId;
      if (route.blackhole) {
        entry.blackhole = true;
      } else if (!route.peering.empty()) {
        auto peering = std::find_if(plan_.peerings.begin(), plan_.peerings.end(),
                                    [&](const PeeringPlan& p) { return p.name == route.peering; });
        if (peering == plan_.peerings.end() || !connected_.contains(route.peering)) continue;
        entry.gateway = hostPart(peering->peerAddress);
        entry.device = peering->link;
      } else {
        // planVpc leaves out routes to a missing gateway; a plan made by hand might not.
        if (!plan_.gateway) continue;
        entry.gateway = hostPart(plan_.gateway->uplinkAddress);
        entry.device = plan_.gateway->vpcLink;
      }
      routes.push_back(std::move(entry));
    }
    return routes;
  }

  Status convergeRoutes() {
    // One dump of every table: the kernel cannot list a single table's routes any cheaper.
    auto all = kernel_.routes(plan_.netns, 0);
    if (!all) return fail(std::move(all).error());
    std::map<uint32_t, std::vector<RouteEntry>> byTable;
    for (RouteEntry& route : *all) {
      if (route.table < kFirstOurTable || route.table > kLastOurTable || isReservedTable(route.table))
        continue;
      byTable[route.table].push_back(std::move(route));
    }
    std::set<uint32_t> planned;
    for (const RouteTablePlan& table : plan_.routeTables) {
      planned.insert(table.tableId);
      std::vector<RouteEntry> wanted = wantedRoutes(table);
      const std::vector<RouteEntry>& current = byTable[table.tableId];
      for (const RouteEntry& route : current) {
        bool keep = std::any_of(wanted.begin(), wanted.end(),
                                [&](const RouteEntry& w) { return w.destination == route.destination; });
        if (keep) continue;
        if (auto s = kernel_.deleteRoute(plan_.netns, route); !s) return s;
        record("removed route {} from table {} (route table {})", routeText(route), table.tableId,
               table.name);
      }
      for (const RouteEntry& route : wanted) {
        auto existing = std::find_if(current.begin(), current.end(),
                                     [&](const RouteEntry& c) { return c.destination == route.destination; });
        if (existing != current.end() && *existing == route) continue;
        if (auto s = kernel_.addRoute(plan_.netns, route); !s) return s;
        if (existing == current.end()) {
          record("added route {} to table {} (route table {})", routeText(route), table.tableId, table.name);
        } else {
          record("replaced route {} in table {} with {} (route table {})", routeText(*existing),
                 table.tableId, routeText(route), table.name);
        }
      }
    }
    // Tables of route tables that no longer exist (ids shift when one is deleted).
    for (const auto& [id, routes] : byTable) {
      if (planned.contains(id)) continue;
      for (const RouteEntry& route : routes) {
        if (auto s = kernel_.deleteRoute(plan_.netns, route); !s) return s;
        record("removed route {} from table {} (route table no longer exists)", routeText(route), id);
      }
    }
    return {};
  }

  Status convergeRules() {
    std::vector<RuleEntry> wanted;
    wanted.push_back(RuleEntry{
        .priority = kLocalRulePriority, .from = std::nullopt, .to = plan_.cidr.str(), .table = kMainTable});
    uint32_t index = 0;
    for (const RouteTablePlan& table : plan_.routeTables) {
      for (const Cidr& subnet : table.subnets) {
        wanted.push_back(RuleEntry{.priority = kSubnetRulePriority + index++,
                                   .from = subnet.str(),
                                   .to = std::nullopt,
                                   .table = table.tableId});
      }
    }
    auto current = kernel_.rules(plan_.netns);
    if (!current) return fail(std::move(current).error());
    // New rules before the old ones go, so a subnet is never without its table.
    for (const RuleEntry& rule : wanted) {
      if (std::find(current->begin(), current->end(), rule) != current->end()) continue;
      if (auto s = kernel_.addRule(plan_.netns, rule); !s) return s;
      record("added rule {}", ruleText(rule));
    }
    for (const RuleEntry& rule : *current) {
      if (rule.priority < kFirstOurRulePriority || rule.priority > kLastOurRulePriority) continue;
      if (std::find(wanted.begin(), wanted.end(), rule) != wanted.end()) continue;
      if (auto s = kernel_.deleteRule(plan_.netns, rule); !s) return s;
      record("removed rule {}", ruleText(rule));
    }
    return {};
  }

  // Before any port is checked or plugged in: a port is never up without its guard.
  Status convergePortGuards() {
    if (memo_.portGuards == plan_.portGuards) return {};
    std::vector<std::string> links;
    for (const NicPlan& nic : plan_.nics) links.push_back(nic.link);
    auto removed = kernel_.applyPortGuards(plan_.netns, plan_.portGuards, links);
    if (!removed) return fail(std::move(removed).error());
    record("{} port guards for {} NIC(s) (table bridge corral)", memo_.portGuards ? "replaced" : "loaded",
           links.size());
    for (const std::string& link : *removed)
      record("removed the port guard of {} (NIC no longer in the VPC)", link);
    memo_.portGuards = plan_.portGuards;
    storeMemo(plan_.netns, memo_);
    return {};
  }

  Status convergeRuleset() {
    if (memo_.ruleset == plan_.ruleset) return {};
    if (auto s = kernel_.applyRuleset(plan_.netns, plan_.ruleset); !s) return s;
    record("{} ruleset (table inet corral)", memo_.ruleset ? "replaced" : "loaded");
    memo_.ruleset = plan_.ruleset;
    storeMemo(plan_.netns, memo_);
    return {};
  }

  const VpcPlan& plan_;
  VpcKernel& kernel_;
  std::set<std::string> connected_;  // peerings whose pair is up on both ends (routes may use them)
  NetnsMemo memo_;
  ChangeLog log_;
};

}  // namespace

Result<ChangeLog> convergeVpc(const VpcPlan& plan) {
  LinuxVpcKernel kernel;
  return convergeVpc(plan, kernel);
}

Result<ChangeLog> convergeVpc(const VpcPlan& plan, VpcKernel& kernel) {
  Converger converger(plan, kernel);
  if (auto s = converger.run(); !s) {
    return fail(
        std::move(s).error().wrap(fmt::format("converge vpc \"{}\" (netns \"{}\")", plan.vpc, plan.netns)));
  }
  return converger.takeLog();
}

Status applyFirewallDeltas(const std::string& netns, const std::vector<NftDelta>& deltas) {
  {
    std::lock_guard lock(memosMutex);
    if (auto it = memos().find(netns); it != memos().end()) {
      it->second.ruleset.reset();
      it->second.portGuards.reset();
    }
  }
  return applyDeltas(netns, deltas);
}

Status destroyVpc(const std::string& netns) {
  forgetMemo(netns);
  if (!netnsExists(netns)) return {};
  // The kernel frees a namespace (and the veths in it) asynchronously once its last user is gone;
  // deleting the gateway veth here makes its uplink side vanish before we return.
  {
    auto netlink = Netlink::open(netns);
    if (!netlink)
      return fail(std::move(netlink).error().wrap(fmt::format("destroy vpc netns \"{}\"", netns)));
    auto links = netlink->links();
    if (!links) return fail(std::move(links).error().wrap(fmt::format("destroy vpc netns \"{}\"", netns)));
    for (const LinkInfo& link : *links) {
      // Peering links too: their other ends live in the peers' namespaces.
      if (!hasPrefix(link.name, kGatewayPrefix) && !hasPrefix(link.name, kPeeringPrefix)) continue;
      if (auto s = netlink->deleteLink(link.name); !s) {
        return fail(std::move(s).error().wrap(fmt::format("destroy vpc netns \"{}\"", netns)));
      }
    }
  }
  if (auto s = deleteNetns(netns); !s) {
    return fail(std::move(s).error().wrap(fmt::format("destroy vpc netns \"{}\"", netns)));
  }
  return {};
}

std::vector<std::string> listVpcNetns(std::string_view netnsPrefix) {
  std::vector<std::string> result;
  for (std::string& name : listNetns()) {
    if (vpcFromNetnsName(netnsPrefix, name)) result.push_back(std::move(name));
  }
  return result;
}

namespace {

// The address may have been another instance's a moment ago (the IPAM hands out the lowest free one):
// tell the neighbours its new MAC with a gratuitous ARP. The bridge forwards from the port once the
// kernel's linkwatch has seen its carrier (the peer's up, asynchronously, up to a second later): a frame
// sent earlier is dropped at the port. Both the wait and the frame's flood to every port of the floor (500
// ports in a class lab) happen on a thread of their own, off the attach's path; a failure is logged.
void announceWhenPortRuns(Netlink vpc, const NicPlan& nic, int targetNs, const std::string& ifname) {
  UniqueFd instanceNs(::fcntl(targetNs, F_DUPFD_CLOEXEC, 0));
  if (!instanceNs) {
    log::warn("instance {}: no gratuitous ARP for {}: {}", nic.nic.instance, nic.nic.address,
              std::system_category().message(errno));
    return;
  }
  auto announce = [vpc = std::move(vpc), instanceNs = std::move(instanceNs), port = nic.link, ifname,
                   mac = nic.mac, address = nic.nic.address, instance = nic.nic.instance]() mutable {
    for (auto until = std::chrono::steady_clock::now() + kPortRunningWait;;) {
      auto link = vpc.link(port);
      if (!link || !*link) return;  // the port is gone: its instance went before it was announced
      if ((*link)->running || std::chrono::steady_clock::now() >= until) break;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (auto s =
            announceAddress(instanceNs.get(), fmt::format("instance {}", instance), ifname, mac, address);
        !s) {
      log::warn("instance {}: {}", instance, s.error().message());
    }
  };
  try {
    std::thread(std::move(announce)).detach();
  } catch (const std::system_error& e) {
    log::warn("instance {}: no gratuitous ARP for {}: {}", nic.nic.instance, nic.nic.address, e.what());
  }
}

// A veth port of nic.bridge whose peer is born inside `targetNs` as `ifname`, with the NIC's MAC and
// address, up, lo up, and (when `defaultRoute`) a default route via the subnet's router.
Status attachVethInto(const std::string& netns, const NicPlan& nic, int targetNs, const std::string& ifname,
                      bool defaultRoute) {
  auto vpc = Netlink::open(netns);
  if (!vpc) return fail(std::move(vpc).error());
  // A stale port from an earlier run takes its peer with it.
  if (auto s = vpc->deleteLink(nic.link); !s) return fail(std::move(s).error());
  // The peer is born inside the target namespace: moving a link there afterwards would wait for RCU
  // grace periods (~15 ms here), ten times the rest of the attach.
  if (auto s = vpc->createVethPair(nic.link, ifname, targetNs, nic.mac); !s)
    return fail(std::move(s).error());
  Rollback removePort([&] { (void)vpc->deleteLink(nic.link); });
  if (auto s = vpc->setMaster(nic.link, nic.bridge); !s) return fail(std::move(s).error());
  if (auto s = vpc->setUp(nic.link); !s) return fail(std::move(s).error());

  auto inside = Netlink::openIn(targetNs, fmt::format("instance {}", nic.nic.instance));
  if (!inside) return fail(std::move(inside).error());
  if (auto s = inside->addAddress(ifname, nic.addressWithPrefix); !s) return fail(std::move(s).error());
  if (auto s = inside->setUp(ifname); !s) return fail(std::move(s).error());
  if (auto s = inside->setUp("lo"); !s) return fail(std::move(s).error());
  if (defaultRoute) {
    if (auto s = inside->addDefaultRoute(nic.gateway); !s) return fail(std::move(s).error());
  }
  removePort.dismiss();
  announceWhenPortRuns(std::move(*vpc), nic, targetNs, ifname);
  return {};
}

Status checkVethPortName(const NicPlan& nic) {
  if (!hasPrefix(nic.link, kVethPrefix) || nic.link.size() <= kVethPrefix.size()) {
    return fail(
        invalidField("link", "\"{}\" is not a container NIC port name ({}...)", nic.link, kVethPrefix));
  }
  return {};
}

}  // namespace

Status attachContainerNic(const std::string& netns, const NicPlan& nic, pid_t pid) {
  const std::string context =
      fmt::format("attach NIC of instance {} to subnet {} (pid {})", nic.nic.instance, nic.nic.subnet, pid);
  auto wrapped = [&](Error error) { return fail(std::move(error).wrap(context)); };
  if (auto s = checkVethPortName(nic); !s) return wrapped(std::move(s).error());
  const std::string nsPath = fmt::format("/proc/{}/ns/net", pid);
  UniqueFd instanceNs(::open(nsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!instanceNs) return wrapped(systemError(errno, fmt::format("open(\"{}\")", nsPath)));
  if (auto s = attachVethInto(netns, nic, instanceNs.get(), "eth0", true); !s)
    return wrapped(std::move(s).error());
  return {};
}

Status attachNamespaceNic(const std::string& netns, const NicPlan& nic, const std::string& targetNetnsPath,
                          const std::string& ifname, bool defaultRoute, std::optional<uint32_t> sourceTable) {
  const std::string context = fmt::format("attach NIC {} of {} to subnet {} (netns \"{}\")", ifname,
                                          nic.nic.instance, nic.nic.subnet, targetNetnsPath);
  auto wrapped = [&](Error error) { return fail(std::move(error).wrap(context)); };
  if (auto s = checkVethPortName(nic); !s) return wrapped(std::move(s).error());
  UniqueFd targetNs(::open(targetNetnsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!targetNs) return wrapped(systemError(errno, fmt::format("open(\"{}\")", targetNetnsPath)));
  if (auto s = attachVethInto(netns, nic, targetNs.get(), ifname, defaultRoute); !s)
    return wrapped(std::move(s).error());
  if (!sourceTable) return {};
  if (auto s = addNicSourceTable(targetNs.get(), targetNetnsPath, nic, ifname, *sourceTable); !s)
    return wrapped(std::move(s).error());
  return {};
}

Status addNicSourceTable(int targetNetnsFd, const std::string& label, const NicPlan& nic,
                         const std::string& ifname, uint32_t sourceTable) {
  auto wrapped = [](Error error) { return fail(std::move(error)); };
  // Replies leave by the NIC that owns their source address: its subnet's port guard drops anything else.
  auto inside = Netlink::openIn(targetNetnsFd, label);
  if (!inside) return wrapped(std::move(inside).error());
  const size_t slash = nic.addressWithPrefix.find('/');
  const std::string address = nic.addressWithPrefix.substr(0, slash);
  auto parsed = Ipv4Address::parse(address, "address");
  if (!parsed) return wrapped(std::move(parsed).error());
  const Cidr network = Cidr::containing(*parsed, std::stoi(nic.addressWithPrefix.substr(slash + 1)));
  if (auto s = inside->addRoute({.destination = network.str(),
                                 .gateway = std::nullopt,
                                 .device = ifname,
                                 .table = sourceTable,
                                 .blackhole = false});
      !s)
    return wrapped(std::move(s).error());
  if (auto s = inside->addRoute({.destination = "0.0.0.0/0",
                                 .gateway = nic.gateway,
                                 .device = ifname,
                                 .table = sourceTable,
                                 .blackhole = false});
      !s)
    return wrapped(std::move(s).error());
  if (auto s = inside->addRule(
          {.priority = sourceTable, .from = address + "/32", .to = std::nullopt, .table = sourceTable});
      !s)
    return wrapped(std::move(s).error());
  return {};
}

Status attachVmTap(const std::string& netns, const NicPlan& nic) {
  const std::string context =
      fmt::format("attach tap {} of instance {} to subnet {}", nic.link, nic.nic.instance, nic.nic.subnet);
  auto wrapped = [&](Error error) { return fail(std::move(error).wrap(context)); };
  auto vpc = Netlink::open(netns);
  if (!vpc) return wrapped(std::move(vpc).error());
  auto here = Netlink::open("");
  if (!here) return wrapped(std::move(here).error());
  auto tap = here->link(nic.link);
  if (!tap) return wrapped(std::move(tap).error());
  if (*tap) {
    auto vpcNs = openNetns(netns);
    if (!vpcNs) return wrapped(std::move(vpcNs).error());
    if (auto s = here->moveToNetns(nic.link, vpcNs->get()); !s) return wrapped(std::move(s).error());
  } else {
    // Already moved by an earlier attach (e.g. before a daemon restart)?
    auto moved = vpc->link(nic.link);
    if (!moved) return wrapped(std::move(moved).error());
    if (!*moved) {
      return wrapped(
          notFound("tap \"{}\" exists neither in the daemon's netns nor in netns \"{}\"", nic.link, netns));
    }
  }
  if (auto s = vpc->setMaster(nic.link, nic.bridge); !s) return wrapped(std::move(s).error());
  if (auto s = vpc->setUp(nic.link); !s) return wrapped(std::move(s).error());
  return {};
}

Status detachNic(const std::string& netns, const NicPlan& nic) {
  if (!netnsExists(netns)) return {};
  auto vpc = Netlink::open(netns);
  if (!vpc)
    return fail(std::move(vpc).error().wrap(fmt::format("detach NIC of instance {}", nic.nic.instance)));
  if (auto s = vpc->deleteLink(nic.link); !s) {
    return fail(std::move(s).error().wrap(fmt::format("detach NIC of instance {}", nic.nic.instance)));
  }
  return {};
}

}  // namespace corral::net
