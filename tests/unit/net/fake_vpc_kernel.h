// A recording fake of VpcKernel (net/vpc_kernel.h), like patchpanel's FakeSystem: it holds simulated
// namespaces (links, addresses, routes, rules, sysctls, the loaded nft tables) that its calls change as the
// kernel would, and records every call, reads included, one line each, so tests compare the whole list.
// failAt() makes one call fail, as the kernel would in the middle of a convergence.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "net/vpc_kernel.h"

namespace corral::net::testing {

struct FakeLink {
  std::string kind;  // "bridge", "veth", "tun", ""
  bool up = false;
  std::optional<std::string> master;
  std::vector<std::string> addresses;
  // A veth's other end: its namespace and name.
  std::optional<std::pair<std::string, std::string>> peer;
};

struct FakeNetns {
  uint64_t identity = 0;
  std::map<std::string, FakeLink> links;
  std::map<std::string, std::string> sysctls;
  std::vector<RouteEntry> routes;  // every table
  std::vector<RuleEntry> rules;
  std::optional<std::string> ruleset;     // table inet corral
  std::optional<std::string> portGuards;  // table bridge corral
  std::vector<std::string> guardedLinks;
};

class FakeVpcKernel final : public VpcKernel {
 public:
  // A namespace as `ip netns add` leaves it: lo down, forwarding off, strict reverse path filtering, the
  // kernel's three default rules. br_netfilter loaded unless told otherwise.
  FakeNetns& addNetns(const std::string& name, bool brNetfilter = true) {
    FakeNetns netns;
    netns.identity = nextIdentity();
    netns.links["lo"] = FakeLink{.kind = "", .up = false, .master = {}, .addresses = {}, .peer = {}};
    netns.sysctls = {{"net/ipv4/ip_forward", "0"},
                     {"net/ipv4/conf/all/rp_filter", "2"},
                     {"net/ipv4/conf/default/rp_filter", "2"}};
    if (brNetfilter) netns.sysctls["net/bridge/bridge-nf-call-iptables"] = "0";
    netns.rules = {RuleEntry{.priority = 0, .from = {}, .to = {}, .table = 255},
                   RuleEntry{.priority = 32766, .from = {}, .to = {}, .table = 254},
                   RuleEntry{.priority = 32767, .from = {}, .to = {}, .table = 253}};
    return namespaces_[name] = std::move(netns);
  }
  FakeNetns& netns(const std::string& name) { return namespaces_.at(name); }
  bool has(const std::string& name) const { return namespaces_.contains(name); }

  // The calls made so far, e.g. "corral-vpc-prod: addAddress crlb1a2b3c4d 10.0.1.1/24"; the caller's own
  // namespace shows as "(caller)". takeCalls() empties the list.
  const std::vector<std::string>& calls() const { return calls_; }
  std::vector<std::string> takeCalls() { return std::exchange(calls_, {}); }

  // The first call whose recorded line starts with `callPrefix` fails with `error` (and changes nothing).
  void failAt(std::string callPrefix, Error error) {
    failure_.emplace(std::move(callPrefix), std::move(error));
  }

  // ---- VpcKernel ----

  bool netnsExists(const std::string& netns) override {
    record(netns, "netnsExists");
    return namespaces_.contains(netns);
  }
  Status createNetns(const std::string& netns) override {
    if (auto s = call(netns, "createNetns"); !s) return s;
    if (namespaces_.contains(netns)) return fail(conflict("netns \"{}\" exists", netns));
    addNetns(netns);
    return {};
  }
  std::optional<uint64_t> netnsIdentity(const std::string& netns) override {
    record(netns, "netnsIdentity");
    auto it = namespaces_.find(netns);
    if (it == namespaces_.end()) return std::nullopt;
    return it->second.identity;
  }
  Result<std::vector<std::optional<std::string>>> readSysctls(const std::string& netns,
                                                              const std::vector<std::string>& keys) override {
    if (auto s = call(netns, fmt::format("readSysctls {}", fmt::join(keys, " "))); !s) return fail(s.error());
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    std::vector<std::optional<std::string>> values;
    for (const std::string& key : keys) {
      auto it = (*ns)->sysctls.find(key);
      values.push_back(it == (*ns)->sysctls.end() ? std::nullopt : std::optional(it->second));
    }
    return values;
  }
  Status writeSysctl(const std::string& netns, const std::string& key, const std::string& value) override {
    if (auto s = call(netns, fmt::format("writeSysctl {}={}", key, value)); !s) return s;
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    if (!(*ns)->sysctls.contains(key)) return fail(notFound("no sysctl {}", key));
    (*ns)->sysctls[key] = value;
    return {};
  }

  Result<std::optional<LinkInfo>> link(const std::string& netns, const std::string& name) override {
    if (auto s = call(netns, fmt::format("link {}", name)); !s) return fail(s.error());
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    auto it = (*ns)->links.find(name);
    if (it == (*ns)->links.end()) return std::optional<LinkInfo>();
    return std::optional(info(it->first, it->second));
  }
  Result<std::vector<LinkInfo>> links(const std::string& netns) override {
    if (auto s = call(netns, "links"); !s) return fail(s.error());
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    std::vector<LinkInfo> all;
    for (const auto& [name, link] : (*ns)->links) all.push_back(info(name, link));
    return all;
  }
  Status createBridge(const std::string& netns, const std::string& name) override {
    if (auto s = call(netns, fmt::format("createBridge {}", name)); !s) return s;
    return addLink(netns, name,
                   FakeLink{.kind = "bridge", .up = false, .master = {}, .addresses = {}, .peer = {}});
  }
  Status createVethPair(const std::string& netns, const std::string& name, const std::string& peerNetns,
                        const std::string& peer) override {
    if (auto s = call(netns, fmt::format("createVethPair {} <-> {} in {}", name, peer, shown(peerNetns))); !s)
      return s;
    auto peerNs = find(peerNetns);
    if (!peerNs) return fail(peerNs.error());
    if ((*peerNs)->links.contains(peer))
      return fail(conflict("link {} exists in {}", peer, shown(peerNetns)));
    if (auto s = addLink(netns, name,
                         FakeLink{.kind = "veth",
                                  .up = false,
                                  .master = {},
                                  .addresses = {},
                                  .peer = std::pair(peerNetns, peer)});
        !s)
      return s;
    (*peerNs)->links[peer] =
        FakeLink{.kind = "veth", .up = false, .master = {}, .addresses = {}, .peer = std::pair(netns, name)};
    return {};
  }
  Status deleteLink(const std::string& netns, const std::string& name) override {
    if (auto s = call(netns, fmt::format("deleteLink {}", name)); !s) return s;
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    auto it = (*ns)->links.find(name);
    if (it == (*ns)->links.end()) return {};
    std::optional<std::pair<std::string, std::string>> peer = it->second.peer;
    removeLink(netns, name);
    // A veth's peer goes with it.
    if (peer && namespaces_.contains(peer->first)) removeLink(peer->first, peer->second);
    return {};
  }
  Status setUp(const std::string& netns, const std::string& link) override {
    if (auto s = call(netns, fmt::format("setUp {}", link)); !s) return s;
    auto found = findLink(netns, link);
    if (!found) return fail(found.error());
    (*found)->up = true;
    return {};
  }
  Status setMaster(const std::string& netns, const std::string& link, const std::string& bridge) override {
    if (auto s = call(netns, fmt::format("setMaster {} {}", link, bridge)); !s) return s;
    auto found = findLink(netns, link);
    if (!found) return fail(found.error());
    auto master = findLink(netns, bridge);
    if (!master) return fail(master.error());
    (*found)->master = bridge;
    return {};
  }
  Status addAddress(const std::string& netns, const std::string& link,
                    const std::string& cidrAddress) override {
    if (auto s = call(netns, fmt::format("addAddress {} {}", link, cidrAddress)); !s) return s;
    auto found = findLink(netns, link);
    if (!found) return fail(found.error());
    auto& addresses = (*found)->addresses;
    if (std::find(addresses.begin(), addresses.end(), cidrAddress) != addresses.end())
      return fail(conflict("address {} exists on {}", cidrAddress, link));
    addresses.push_back(cidrAddress);
    return {};
  }
  Status deleteAddress(const std::string& netns, const std::string& link,
                       const std::string& cidrAddress) override {
    if (auto s = call(netns, fmt::format("deleteAddress {} {}", link, cidrAddress)); !s) return s;
    auto found = findLink(netns, link);
    if (!found) return fail(found.error());
    std::erase((*found)->addresses, cidrAddress);
    return {};
  }
  Result<std::vector<RouteEntry>> routes(const std::string& netns, uint32_t table) override {
    if (auto s = call(netns, fmt::format("routes {}", table)); !s) return fail(s.error());
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    std::vector<RouteEntry> found;
    for (const RouteEntry& route : (*ns)->routes) {
      if (table == 0 ? route.table != 253 && route.table != 255 : route.table == table)
        found.push_back(route);
    }
    std::sort(found.begin(), found.end(), [](const RouteEntry& a, const RouteEntry& b) {
      return std::tie(a.table, a.destination) < std::tie(b.table, b.destination);
    });
    return found;
  }
  Status addRoute(const std::string& netns, const RouteEntry& route) override {
    if (auto s = call(netns, fmt::format("addRoute {}", text(route))); !s) return s;
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    if (route.device && !(*ns)->links.contains(*route.device))
      return fail(notFound("no link {} in {}", *route.device, shown(netns)));
    // Replaces a route with the same table and destination.
    std::erase_if((*ns)->routes, [&](const RouteEntry& r) { return sameRoute(r, route); });
    (*ns)->routes.push_back(route);
    return {};
  }
  Status deleteRoute(const std::string& netns, const RouteEntry& route) override {
    if (auto s = call(netns, fmt::format("deleteRoute {}", text(route))); !s) return s;
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    std::erase_if((*ns)->routes, [&](const RouteEntry& r) { return sameRoute(r, route); });
    return {};
  }
  Result<std::vector<RuleEntry>> rules(const std::string& netns) override {
    if (auto s = call(netns, "rules"); !s) return fail(s.error());
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    std::vector<RuleEntry> all = (*ns)->rules;
    std::sort(all.begin(), all.end());
    return all;
  }
  Status addRule(const std::string& netns, const RuleEntry& rule) override {
    if (auto s = call(netns, fmt::format("addRule {}", text(rule))); !s) return s;
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    if (std::find((*ns)->rules.begin(), (*ns)->rules.end(), rule) == (*ns)->rules.end())
      (*ns)->rules.push_back(rule);
    return {};
  }
  Status deleteRule(const std::string& netns, const RuleEntry& rule) override {
    if (auto s = call(netns, fmt::format("deleteRule {}", text(rule))); !s) return s;
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    std::erase((*ns)->rules, rule);
    return {};
  }

  Result<std::vector<std::string>> applyPortGuards(const std::string& netns, const std::string& ruleset,
                                                   const std::vector<std::string>& links) override {
    // The text itself is golden-tested with nft_test; its size tells a change apart here.
    if (auto s = call(netns, fmt::format("applyPortGuards ({} bytes) for [{}]", ruleset.size(),
                                         fmt::join(links, ", ")));
        !s)
      return fail(s.error());
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    std::vector<std::string> removed;
    for (const std::string& link : (*ns)->guardedLinks) {
      if (std::find(links.begin(), links.end(), link) == links.end()) removed.push_back(link);
    }
    (*ns)->portGuards = ruleset;
    (*ns)->guardedLinks = links;
    return removed;
  }
  Status applyRuleset(const std::string& netns, const std::string& ruleset) override {
    if (auto s = call(netns, fmt::format("applyRuleset ({} bytes)", ruleset.size())); !s) return s;
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    (*ns)->ruleset = ruleset;
    return {};
  }

  static std::string text(const RouteEntry& route) {
    std::string line = fmt::format("table {} {}", route.table, route.destination);
    if (route.blackhole) line += " blackhole";
    if (route.gateway) line += fmt::format(" via {}", *route.gateway);
    if (route.device) line += fmt::format(" dev {}", *route.device);
    return line;
  }
  static std::string text(const RuleEntry& rule) {
    std::string line = fmt::format("{}", rule.priority);
    if (rule.from) line += fmt::format(" from {}", *rule.from);
    if (rule.to) line += fmt::format(" to {}", *rule.to);
    return line + fmt::format(" lookup {}", rule.table);
  }

 private:
  static uint64_t nextIdentity() {
    // Unique in the process, as inodes are on one host: convergeVpc remembers namespaces by identity.
    static uint64_t last = 4026531000;
    return ++last;
  }
  static std::string shown(const std::string& netns) { return netns.empty() ? "(caller)" : netns; }
  static bool sameRoute(const RouteEntry& a, const RouteEntry& b) {
    return a.table == b.table && a.destination == b.destination;
  }
  static LinkInfo info(const std::string& name, const FakeLink& link) {
    return LinkInfo{.name = name,
                    .index = 0,
                    .kind = link.kind,
                    .up = link.up,
                    .running = link.up,
                    .mac = "",
                    .master = link.master,
                    .addresses = link.addresses};
  }

  void record(const std::string& netns, const std::string& what) {
    calls_.push_back(fmt::format("{}: {}", shown(netns), what));
  }
  // Records the call; the injected failure, when this is the call it names.
  Status call(const std::string& netns, const std::string& what) {
    record(netns, what);
    if (failure_ && calls_.back().starts_with(failure_->first)) {
      Error error = std::move(failure_->second);
      failure_.reset();
      return fail(std::move(error));
    }
    return {};
  }
  Result<FakeNetns*> find(const std::string& netns) {
    auto it = namespaces_.find(netns);
    if (it == namespaces_.end())
      return fail(notFound("open(\"/run/netns/{}\"): No such file or directory", netns));
    return &it->second;
  }
  Result<FakeLink*> findLink(const std::string& netns, const std::string& name) {
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    auto it = (*ns)->links.find(name);
    if (it == (*ns)->links.end()) return fail(notFound("no link {} in {}", name, shown(netns)));
    return &it->second;
  }
  Status addLink(const std::string& netns, const std::string& name, FakeLink link) {
    auto ns = find(netns);
    if (!ns) return fail(ns.error());
    if ((*ns)->links.contains(name)) return fail(conflict("link {} exists in {}", name, shown(netns)));
    (*ns)->links[name] = std::move(link);
    return {};
  }
  // The kernel takes the link's routes and its ports' membership with it.
  void removeLink(const std::string& netns, const std::string& name) {
    FakeNetns& ns = namespaces_.at(netns);
    ns.links.erase(name);
    std::erase_if(ns.routes, [&](const RouteEntry& r) { return r.device == name; });
    for (auto& [other, link] : ns.links) {
      if (link.master == name) link.master.reset();
    }
  }

  std::map<std::string, FakeNetns> namespaces_;
  std::vector<std::string> calls_;
  std::optional<std::pair<std::string, Error>> failure_;
};

}  // namespace corral::net::testing
