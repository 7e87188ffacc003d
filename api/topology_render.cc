// Renders a VPC topology answer as text, DOT and SVG. The model half of the answer says what corral meant
// to build; the "kernel" half says what the VPC's namespace holds; the text's kernel check compares them.
#include "api/topology_render.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/xml.h"

namespace corral::api {
namespace {

using nlohmann::json;

// ---- Reading the answer without trusting its shape ----

const json& member(const json& object, std::string_view key) {
  static const json absent;
  if (!object.is_object()) return absent;
  auto it = object.find(key);
  return it == object.end() ? absent : *it;
}

// The array under `key`, or an empty one.
const json& items(const json& object, std::string_view key) {
  static const json none = json::array();
  const json& value = member(object, key);
  return value.is_array() ? value : none;
}

// Strings as they are, numbers in decimal, null or absent as "".
std::string str(const json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_integer()) return std::to_string(value.get<int64_t>());
  if (value.is_boolean()) return value.get<bool>() ? "true" : "false";
  if (value.is_number()) return value.dump();
  return "";
}

std::string str(const json& object, std::string_view key) {
  return str(member(object, key));
}

bool truthy(const json& object, std::string_view key) {
  return member(object, key) == true;
}

std::string joined(const json& array, std::string_view separator = ", ") {
  std::string out;
  for (const json& item : array) {
    if (!out.empty()) out += separator;
    out += str(item);
  }
  return out;
}

std::string orNone(std::string text, std::string_view none = "none") {
  return text.empty() ? std::string(none) : text;
}

// "10.0.1.0/24" → "/24"; "" when the CIDR has no prefix.
std::string prefixOf(const std::string& cidr) {
  auto slash = cidr.find('/');
  return slash == std::string::npos ? "" : cidr.substr(slash);
}

// The router's address as it sits on the bridge: "10.0.1.1/24".
std::string routerWithPrefix(const json& subnet) {
  return str(subnet, "router") + prefixOf(str(subnet, "cidr"));
}

const json* findByName(const json& array, const std::string& name) {
  for (const json& item : array)
    if (str(item, "name") == name) return &item;
  return nullptr;
}

bool contains(const json& array, const std::string& text) {
  return std::any_of(array.begin(), array.end(), [&](const json& item) { return str(item) == text; });
}

// A route's target: "local", "blackhole", "internet_gateway door", "nat_gateway nat1", "peering p1".
struct Target {
  std::string kind;
  std::string name;
};

Target parseTarget(const std::string& target) {
  auto space = target.find(' ');
  if (space == std::string::npos) return {target, ""};
  return {target.substr(0, space), target.substr(space + 1)};
}

std::string targetText(const Target& target) {
  if (target.kind == "local") return "local (inside the building)";
  if (target.kind == "blackhole") return "blackhole (dropped)";
  if (target.kind == "internet_gateway") return "internet gateway " + target.name + " (the front door)";
  if (target.kind == "nat_gateway") return "NAT gateway " + target.name;
  if (target.kind == "peering") return "peering " + target.name + " (the corridor to the peer building)";
  return target.kind + (target.name.empty() ? "" : " " + target.name);
}

std::string tableName(const json& table) {
  if (table.is_number_integer()) {
    switch (table.get<int64_t>()) {
      case 253:
        return "default";
      case 254:
        return "main";
      case 255:
        return "local";
    }
  }
  return str(table);
}

// ---- What the kernel holds ----

struct Kernel {
  const json& kernel;
  bool readable() const { return truthy(kernel, "netns_present") && member(kernel, "error").is_null(); }
  const json* link(const std::string& name) const { return findByName(items(kernel, "links"), name); }
  // The rule "from CIDR lookup TABLE" (or "to CIDR" with `to`).
  const json* rule(const std::string& cidr, const json& table, bool to) const {
    for (const json& rule : items(kernel, "rules"))
      if (str(rule, to ? "to" : "from") == cidr && member(rule, "table") == table) return &rule;
    return nullptr;
  }
  const json* route(const json& table, const std::string& destination) const {
    for (const json& route : items(kernel, "routes"))
      if (member(route, "table") == table && str(route, "destination") == destination) return &route;
    return nullptr;
  }
};

std::string ruleText(const json& rule) {
  std::string text = "rule " + str(rule, "priority") + ":";
  if (!member(rule, "from").is_null()) text += " from " + str(rule, "from");
  if (!member(rule, "to").is_null()) text += " to " + str(rule, "to");
  return text + " lookup " + tableName(member(rule, "table"));
}

std::string kernelRouteText(const json& route) {
  std::string text = "table " + tableName(member(route, "table")) + ": ";
  if (truthy(route, "blackhole")) return text + "blackhole " + str(route, "destination");
  text += str(route, "destination");
  if (!member(route, "gateway").is_null()) text += " via " + str(route, "gateway");
  if (!member(route, "device").is_null()) text += " dev " + str(route, "device");
  return text;
}

// One comparison of the model with the kernel.
struct Check {
  std::string status;  // "ok", "MISSING", "WRONG", "EXTRA"
  std::string text;
};

// What one model route became in the kernel, and whether that is right.
Check checkRoute(const Kernel& kernel, const json& vpc, const json& table, const json& route,
                 bool haveInternetGateway) {
  const std::string destination = str(route, "destination");
  const Target target = parseTarget(str(route, "target"));
  const json& tableId = member(table, "table_id");
  if (target.kind == "local") {
    const json* rule = kernel.rule(str(vpc, "cidr"), json(254), true);
    if (!rule) return {"MISSING", fmt::format("rule to {} lookup main (the local route)", str(vpc, "cidr"))};
    return {"ok", ruleText(*rule)};
  }
  const json* found = kernel.route(tableId, destination);
  const std::string where = "table " + str(tableId) + ": " + destination;
  if (target.kind == "blackhole") {
    if (!found) return {"MISSING", where + " blackhole"};
    if (!truthy(*found, "blackhole")) return {"WRONG", kernelRouteText(*found) + " (should be a blackhole)"};
    return {"ok", kernelRouteText(*found)};
  }
  if (target.kind == "peering") {
    if (!found) return {"MISSING", where + " via peering " + target.name};
    return {"ok", kernelRouteText(*found)};
  }
  if (!found) {
    if (!haveInternetGateway) return {"ok", where + " left out: no internet gateway to leave through"};
    return {"MISSING", where + " via the internet gateway"};
  }
  if (truthy(*found, "blackhole"))
    return {"WRONG", kernelRouteText(*found) + " (should leave via the gateway)"};
  return {"ok", kernelRouteText(*found)};
}

// Every comparison, in the order the text lists them.
std::vector<Check> kernelChecks(const json& topology) {
  std::vector<Check> checks;
  const json& vpc = member(topology, "vpc");
  const Kernel kernel{member(topology, "kernel")};
  const json& gateway = member(topology, "internet_gateway");
  std::vector<std::string> known;  // link names the model accounts for

  for (const json& subnet : items(topology, "subnets")) {
    const std::string bridge = str(subnet, "bridge");
    known.push_back(bridge);
    const std::string what = fmt::format("bridge {} (switch of subnet {})", bridge, str(subnet, "name"));
    const json* link = kernel.link(bridge);
    if (!link) {
      checks.push_back({"MISSING", what});
    } else if (!contains(items(*link, "addresses"), routerWithPrefix(subnet))) {
      checks.push_back(
          {"WRONG", fmt::format("{}: without the router address {}", what, routerWithPrefix(subnet))});
    } else if (!truthy(*link, "up")) {
      checks.push_back({"WRONG", what + ": down"});
    } else {
      checks.push_back({"ok", fmt::format("{}, up, router address {}", what, routerWithPrefix(subnet))});
    }
    for (const json& instance : items(subnet, "instances")) {
      const std::string name = str(instance, "link");
      known.push_back(name);
      const std::string nic =
          fmt::format("link {} ({} {})", name, str(instance, "kind"), str(instance, "name"));
      const json* port = kernel.link(name);
      const bool running = str(instance, "state") == "running";
      if (!port) {
        if (running) {
          checks.push_back({"MISSING", nic});
        } else {
          checks.push_back(
              {"ok", fmt::format("{}: absent, the instance is {}", nic, str(instance, "state"))});
        }
      } else if (str(*port, "master") != bridge) {
        checks.push_back({"WRONG", fmt::format("{}: not a port of {} (master: {})", nic, bridge,
                                               orNone(str(*port, "master")))});
      } else if (!truthy(*port, "up")) {
        checks.push_back({"WRONG", fmt::format("{}: down", nic)});
      } else {
        checks.push_back({"ok", fmt::format("{}, up, port of {}", nic, bridge)});
      }
    }
  }

  if (gateway.is_object()) {
    const std::string link = str(gateway, "link");
    known.push_back(link);
    const std::string what = fmt::format("link {} (internet gateway {})", link, str(gateway, "name"));
    const std::string address = str(gateway, "outside_address") + prefixOf(str(gateway, "transit"));
    const json* found = kernel.link(link);
    if (!found) {
      checks.push_back({"MISSING", what});
    } else if (!contains(items(*found, "addresses"), address)) {
      checks.push_back({"WRONG", fmt::format("{}: without the outside address {}", what, address)});
    } else {
      checks.push_back({"ok", fmt::format("{}, outside address {}", what, address)});
    }
  }

  for (const json& peering : items(topology, "peerings")) {
    const std::string link = str(peering, "link");
    known.push_back(link);
    const std::string what =
        fmt::format("link {} (peering {} to vpc {})", link, str(peering, "name"), str(peering, "peer_vpc"));
    const std::string address = str(peering, "address") + "/30";
    const json* found = kernel.link(link);
    if (!found) {
      checks.push_back({"MISSING", what});
    } else if (!contains(items(*found, "addresses"), address)) {
      checks.push_back({"WRONG", fmt::format("{}: without its address {}", what, address)});
    } else if (!truthy(*found, "up")) {
      checks.push_back({"WRONG", what + ": down"});
    } else {
      checks.push_back({"ok", fmt::format("{}, up, address {}", what, address)});
    }
  }

  const bool haveGateway = gateway.is_object();
  for (const json& table : items(topology, "route_tables")) {
    const json& tableId = member(table, "table_id");
    for (const json& subnetName : items(table, "subnets")) {
      const json* subnet = findByName(items(topology, "subnets"), str(subnetName));
      if (!subnet) continue;
      const json* rule = kernel.rule(str(*subnet, "cidr"), tableId, false);
      if (!rule) {
        checks.push_back(
            {"MISSING", fmt::format("rule from {} lookup {} (subnet {} uses {})", str(*subnet, "cidr"),
                                    str(tableId), str(subnetName), str(table, "name"))});
      } else {
        checks.push_back({"ok", ruleText(*rule)});
      }
    }
    for (const json& route : items(table, "routes")) {
      Check check = checkRoute(kernel, vpc, table, route, haveGateway);
      // The local route is one rule for the whole VPC: checked once, with the first table.
      if (parseTarget(str(route, "target")).kind == "local" &&
          std::any_of(checks.begin(), checks.end(), [&](const Check& c) { return c.text == check.text; }))
        continue;
      checks.push_back(std::move(check));
    }
  }

  for (const json& link : items(member(topology, "kernel"), "links")) {
    const std::string name = str(link, "name");
    if (name.starts_with("crl") && std::find(known.begin(), known.end(), name) == known.end())
      checks.push_back(
          {"EXTRA", fmt::format("link {} ({}): not in the model", name, orNone(str(link, "kind"), "?"))});
  }
  return checks;
}

// ---- Text ----

struct Node {
  std::string text;
  std::vector<Node> children;
  Node& add(std::string child) {
    children.push_back({std::move(child), {}});
    return children.back();
  }
};

void renderChildren(const Node& node, const std::string& prefix, std::string& out) {
  for (size_t i = 0; i < node.children.size(); ++i) {
    const bool last = i + 1 == node.children.size();
    out += prefix + (last ? "└─ " : "├─ ") + node.children[i].text + "\n";
    renderChildren(node.children[i], prefix + (last ? "   " : "│  "), out);
  }
}

std::string renderTree(const Node& root) {
  std::string out = root.text + "\n";
  renderChildren(root, "", out);
  return out;
}

std::string reachabilityText(const std::string& reachability) {
  if (reachability == "public") return "public: its route table leads to the front door";
  if (reachability == "private (NAT)") return "private (NAT): out through a NAT gateway, nobody comes in";
  if (reachability == "isolated") return "isolated: no way out of the building";
  return reachability;
}

// "dropped nothing" or "dropped mac 0, ip 3, arp 1, other 5" (frames refused at the port, by reason).
std::string spoofDropsText(const json& drops) {
  if (!drops.is_object()) return "drops unknown (no guard in the kernel)";
  uint64_t total = 0;
  std::string counts;
  for (const char* reason : {"mac", "ip", "arp", "other"}) {
    const uint64_t count =
        drops.contains(reason) && drops[reason].is_number_unsigned() ? drops[reason].get<uint64_t>() : 0;
    total += count;
    counts += fmt::format("{}{} {}", counts.empty() ? "" : ", ", reason, count);
  }
  return total == 0 ? "dropped nothing" : "dropped " + counts;
}

Node instanceNode(const json& instance, const std::string& bridge) {
  const bool vm = str(instance, "kind") == "vm";
  const bool balancer = str(instance, "kind") == "load-balancer";
  Node node{balancer
                ? fmt::format("load balancer {}: NIC {} ({}): its HAProxy listens here, in a namespace "
                              "of its own",
                              str(instance, "load_balancer"), str(instance, "name"), str(instance, "state"))
                : fmt::format("{} {} ({}){}", vm ? "vm" : "container", str(instance, "name"),
                              str(instance, "state"), vm ? ": own kernel" : ": shares the host's kernel"),
            {}};
  const json& publicIp = member(instance, "public_ip");
  node.add(fmt::format("ip {}, {}", str(instance, "ip"),
                       publicIp.is_null() ? std::string("no public ip")
                                          : "public ip " + str(publicIp) + " (1:1 NAT at the front door)"));
  node.add(fmt::format("mac {}, link {} ({}, port of {})", str(instance, "mac"), str(instance, "link"),
                       vm ? "tap" : "veth", bridge));
  node.add("door guards (security groups): " + orNone(joined(items(instance, "security_groups"))));
  node.add("published ports (outside:inside): " + orNone(joined(items(instance, "publish"))));
  node.add("source check: sends only from its own ip and mac; " +
           spoofDropsText(member(instance, "spoof_drops")));
  return node;
}

Node buildingNode(const json& topology) {
  const json& vpc = member(topology, "vpc");
  Node root{fmt::format("VPC {} {}: the building", str(vpc, "name"), str(vpc, "cidr")), {}};
  root.add(fmt::format("VPC router (L3): network namespace {}", str(vpc, "netns")));
  for (const json& subnet : items(topology, "subnets")) {
    const std::string bridge = str(subnet, "bridge");
    Node& floor = root.add(fmt::format("subnet {} {} in {}: a floor, {}", str(subnet, "name"),
                                       str(subnet, "cidr"), orNone(str(subnet, "availability_zone"), "-"),
                                       reachabilityText(str(subnet, "reachability"))));
    floor.add("switch (L2): bridge " + bridge);
    floor.add(fmt::format("router address: {} (the floor's way to the router, on the bridge)",
                          routerWithPrefix(subnet)));
    floor.add("stairs and corridors (route table): " + str(subnet, "route_table"));
    floor.add("floor guard (network ACL): " + str(subnet, "network_acl"));
    for (const json& nat : items(topology, "nat_gateways"))
      if (str(nat, "subnet") == str(subnet, "name"))
        floor.add(
            fmt::format("NAT gateway {}: takes private floors out through the front door", str(nat, "name")));
    for (const json& instance : items(subnet, "instances"))
      floor.children.push_back(instanceNode(instance, bridge));
    if (items(subnet, "instances").empty()) floor.add("no instances");
  }
  if (items(topology, "subnets").empty()) root.add("no subnets (floors) yet");
  return root;
}

Node routeTablesNode(const json& topology) {
  Node root{"route tables: the stairs and corridors (each a kernel routing table, chosen by source address)",
            {}};
  const json& vpc = member(topology, "vpc");
  const Kernel kernel{member(topology, "kernel")};
  const bool haveGateway = member(topology, "internet_gateway").is_object();
  for (const json& table : items(topology, "route_tables")) {
    const json& tableId = member(table, "table_id");
    Node& node = root.add(fmt::format("{}{}: kernel table {}, for subnets: {}", str(table, "name"),
                                      truthy(table, "main") ? " (main)" : "", str(tableId),
                                      orNone(joined(items(table, "subnets")))));
    for (const json& subnetName : items(table, "subnets")) {
      const json* subnet = findByName(items(topology, "subnets"), str(subnetName));
      if (!subnet) continue;
      std::string line = fmt::format("subnet {} selects it: ", str(subnetName));
      if (!kernel.readable()) {
        line += fmt::format("rule from {} lookup {}", str(*subnet, "cidr"), str(tableId));
      } else if (const json* rule = kernel.rule(str(*subnet, "cidr"), tableId, false)) {
        line += ruleText(*rule);
      } else {
        line += fmt::format("MISSING rule from {} lookup {}", str(*subnet, "cidr"), str(tableId));
      }
      node.add(line);
    }
    for (const json& route : items(table, "routes")) {
      std::string line =
          fmt::format("{} → {}", str(route, "destination"), targetText(parseTarget(str(route, "target"))));
      if (kernel.readable()) {
        Check check = checkRoute(kernel, vpc, table, route, haveGateway);
        line += "  [kernel: " + (check.status == "ok" ? "" : check.status + " ") + check.text + "]";
      }
      node.add(line);
    }
  }
  if (items(topology, "route_tables").empty()) root.add("none");
  return root;
}

Node gatewaysNode(const json& topology) {
  Node root{"gateways", {}};
  const json& gateway = member(topology, "internet_gateway");
  if (gateway.is_object()) {
    Node& door = root.add(fmt::format("internet gateway {}: the front door", str(gateway, "name")));
    door.add(fmt::format("link {} in the VPC namespace, outside address {}", str(gateway, "link"),
                         str(gateway, "outside_address")));
    door.add(fmt::format("peer link {} on the uplink ({}), address {}", str(gateway, "uplink_link"),
                         str(gateway, "uplink"), str(gateway, "uplink_address")));
    door.add(fmt::format(
        "transit {}: instances without a public ip go out as {} (SNAT), published ports listen there",
        str(gateway, "transit"), str(gateway, "outside_address")));
    for (const json& subnet : items(topology, "subnets"))
      for (const json& instance : items(subnet, "instances"))
        if (!member(instance, "public_ip").is_null())
          door.add(fmt::format("public ip {} ↔ {} ({})", str(instance, "public_ip"), str(instance, "ip"),
                               str(instance, "name")));
  } else {
    root.add("no internet gateway: the building has no front door");
  }
  for (const json& nat : items(topology, "nat_gateways"))
    root.add(fmt::format("NAT gateway {} in subnet {}: private floors go out through it, nobody comes in",
                         str(nat, "name"), str(nat, "subnet")));
  for (const json& peering : items(topology, "peerings")) {
    Node& corridor =
        root.add(fmt::format("peering {}: a corridor to vpc {} ({}), not transitive", str(peering, "name"),
                             str(peering, "peer_vpc"), str(peering, "peer_cidr")));
    corridor.add(fmt::format("link {} in the VPC namespace, address {}; the peer router at {}",
                             str(peering, "link"), str(peering, "address"), str(peering, "peer_address")));
  }
  return root;
}

Node guardsNode(const json& topology) {
  Node root{"guards", {}};
  // A member that is a load balancer's NIC is named as such (the subnets' members say whose it is).
  std::map<std::string, std::string> balancerOf;
  for (const json& subnet : items(topology, "subnets")) {
    for (const json& instance : items(subnet, "instances")) {
      if (str(instance, "kind") == "load-balancer")
        balancerOf[str(instance, "name")] = str(instance, "load_balancer");
    }
  }
  Node& groups = root.add("security groups: at each instance's door, stateful (answers come back in)");
  for (const json& group : items(topology, "security_groups")) {
    json members = json::array();
    for (const json& name : items(group, "members")) {
      auto balancer = balancerOf.find(str(name));
      members.push_back(balancer == balancerOf.end()
                            ? str(name)
                            : fmt::format("load balancer {} (NIC {})", balancer->second, str(name)));
    }
    groups.add(fmt::format("{}{}: {}", str(group, "name"), truthy(group, "default") ? " (default)" : "",
                           orNone(joined(members), "no members")));
  }
  Node& acls = root.add("network ACLs: at each floor's entrance, stateless (each direction checked alone)");
  for (const json& acl : items(topology, "network_acls"))
    acls.add(fmt::format("{}{}: {}", str(acl, "name"), truthy(acl, "default") ? " (default)" : "",
                         orNone(joined(items(acl, "subnets")), "no subnets")));
  return root;
}

Node kernelNode(const json& topology) {
  const std::string netns = str(member(topology, "vpc"), "netns");
  const json& kernel = member(topology, "kernel");
  Node root{"kernel check: the model next to what namespace " + netns + " holds", {}};
  // An error comes first: without the kernel's view (e.g. corrald not touching the kernel) nothing is
  // missing.
  if (!member(kernel, "error").is_null()) {
    root.add("kernel not read: " + str(kernel, "error"));
    return root;
  }
  if (!truthy(kernel, "netns_present")) {
    root.add(fmt::format("MISSING  namespace {}: nothing of this VPC is in the kernel", netns));
    return root;
  }
  size_t problems = 0;
  for (const Check& check : kernelChecks(topology)) {
    if (check.status != "ok") ++problems;
    root.add(fmt::format("{:<8} {}", check.status, check.text));
  }
  root.add(problems == 0 ? std::string("the kernel matches the model")
                         : fmt::format("{} difference{} between the model and the kernel", problems,
                                       problems == 1 ? "" : "s"));
  return root;
}

// The cluster behind the building (a cluster host's answer only): the VPC's floors and the hosts by
// availability zone, each host's instances, and the Geneve tunnels between the hosts, one line per pair of
// hosts with what each end's br-int reports.
const json* tunnelTo(const json& host, const std::string& remote) {
  for (const json& tunnel : items(host, "tunnels"))
    if (str(tunnel, "remote_host") == remote) return &tunnel;
  return nullptr;
}

std::string hostLabel(const json& host) {
  std::string label = str(host, "name");
  if (str(host, "health") != "alive") label += " " + orNone(str(host, "health"), "unknown");
  return label;
}

Node clusterNode(const json& topology) {
  const json& cluster = member(topology, "cluster");
  if (!member(cluster, "error").is_null())
    return {"cluster: the hosts cannot be read: " + str(cluster, "error"), {}};
  const json& hosts = items(cluster, "hosts");
  const std::string self = str(cluster, "local_host");
  Node root{fmt::format("cluster: {} host{} (this one is {}), the floors and hosts by availability zone",
                        hosts.size(), hosts.size() == 1 ? "" : "s", orNone(self, "?")),
            {}};
  // Each host's instances of this VPC: another host's are drawn "on host H".
  std::map<std::string, std::vector<std::string>> instancesOn;
  std::map<std::string, std::vector<std::string>> subnetsIn;
  std::set<std::string> zones;
  for (const json& subnet : items(topology, "subnets")) {
    const std::string az = str(subnet, "availability_zone");
    subnetsIn[az].push_back(str(subnet, "name"));
    zones.insert(az);
    for (const json& instance : items(subnet, "instances")) {
      const std::string state = str(instance, "state");
      const std::string host = state.starts_with("on host ") ? state.substr(8) : self;
      instancesOn[host].push_back(str(instance, "name"));
    }
  }
  for (const json& host : hosts) zones.insert(str(host, "az"));
  for (const std::string& az : zones) {
    std::vector<std::string> here;
    for (const json& host : hosts) {
      if (str(host, "az") != az) continue;
      std::string text = hostLabel(host);
      if (!str(host, "chassis").empty())
        text += fmt::format(" (chassis {}, {})", str(host, "chassis"),
                            orNone(str(host, "encap_ip"), "no encap ip"));
      const auto& names = instancesOn[str(host, "name")];
      text += names.empty() ? ": no instances of this VPC" : ": " + fmt::format("{}", fmt::join(names, ", "));
      here.push_back(std::move(text));
    }
    const auto& floors = subnetsIn[az];
    Node& zone =
        root.add(fmt::format("{}: {}", orNone(az, "-"),
                             floors.empty() ? std::string("no floor of this VPC")
                                            : "floors " + fmt::format("{}", fmt::join(floors, ", "))));
    for (std::string& text : here) zone.add("host " + text);
    if (here.empty()) zone.add("no host: an instance of these floors has nowhere to run");
  }
  // One line per pair of hosts: "h1 (az1) ⇄ h2 (az2) geneve 10.0.0.1 ↔ 10.0.0.2 up".
  Node& tunnels = root.add("tunnels (Geneve: the overlay that carries a floor across hosts)");
  auto rank = [](const std::string& state) {
    return state == "down" ? 3 : state == "missing" ? 2 : state == "up" ? 1 : 0;
  };
  for (size_t i = 0; i < hosts.size(); ++i) {
    for (size_t j = i + 1; j < hosts.size(); ++j) {
      const json& a = hosts[i];
      const json& b = hosts[j];
      const json* ab = tunnelTo(a, str(b, "name"));
      const json* ba = tunnelTo(b, str(a, "name"));
      if (!ab && !ba) continue;
      std::string state = "unknown";
      std::vector<std::string> reasons;
      for (const json* tunnel : {ab, ba})
        if (tunnel && rank(str(*tunnel, "state")) > rank(state)) state = str(*tunnel, "state");
      // The reasons of the ends that see it so (a lost host's own "unknown" says nothing more).
      for (auto [end, tunnel] : {std::pair{&a, ab}, std::pair{&b, ba}}) {
        if (tunnel && state != "up" && str(*tunnel, "state") == state && !str(*tunnel, "reason").empty())
          reasons.push_back(fmt::format("{}: {}", str(*end, "name"), str(*tunnel, "reason")));
      }
      const json& any = ab ? *ab : *ba;
      tunnels.add(fmt::format(
          "{} ({}) ⇄ {} ({}) {} {} ↔ {} {}{}", str(a, "name"), orNone(str(a, "az"), "-"), str(b, "name"),
          orNone(str(b, "az"), "-"), orNone(str(any, "type"), "geneve"), orNone(str(a, "encap_ip"), "?"),
          orNone(str(b, "encap_ip"), "?"), state,
          reasons.empty() ? std::string() : " (" + fmt::format("{}", fmt::join(reasons, "; ")) + ")"));
    }
  }
  // Tunnels to a chassis that is no host of the cluster (a gateway chassis of another deployment).
  for (const json& host : hosts) {
    for (const json& tunnel : items(host, "tunnels")) {
      if (!str(tunnel, "remote_host").empty()) continue;
      tunnels.add(fmt::format("{} ({}) → chassis {} {} {} ↔ {} {}", str(host, "name"),
                              orNone(str(host, "az"), "-"), orNone(str(tunnel, "remote_chassis"), "?"),
                              orNone(str(tunnel, "type"), "geneve"), orNone(str(tunnel, "local_ip"), "?"),
                              orNone(str(tunnel, "remote_ip"), "?"), str(tunnel, "state")));
    }
  }
  if (tunnels.children.empty()) tunnels.add("none: no host reports a chassis (corrald without OVN)");
  return root;
}

// ---- DOT ----

std::string dotEscape(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// A quoted DOT string of lines joined by DOT's "\n".
std::string dotLabel(const std::vector<std::string>& lines) {
  std::string out = "\"";
  for (size_t i = 0; i < lines.size(); ++i) out += (i ? "\\n" : "") + dotEscape(lines[i]);
  return out + "\"";
}

std::string dotId(std::string_view text) {
  return "\"" + dotEscape(text) + "\"";
}

// ---- SVG ----

constexpr int kMargin = 20;
constexpr int kBoxWidth = 160;
constexpr int kBoxHeight = 58;
constexpr int kBoxGap = 16;
constexpr int kFloorHeaderHeight = 26;
constexpr int kFloorHeight = kFloorHeaderHeight + kBoxHeight + 30;
constexpr int kFloorGap = 12;
constexpr int kFloorMinWidth = 420;
constexpr int kRouterWidth = 130;

struct Svg {
  std::string body;
  void text(int x, int y, std::string_view content, std::string_view cls, std::string_view anchor = "start") {
    body += fmt::format("<text x=\"{}\" y=\"{}\" class=\"{}\" text-anchor=\"{}\">{}</text>\n", x, y, cls,
                        anchor, escapeXml(content));
  }
  void rect(int x, int y, int width, int height, std::string_view cls, int radius = 0) {
    body += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" rx=\"{}\" class=\"{}\"/>\n", x, y,
                        width, height, radius, cls);
  }
  void line(int x1, int y1, int x2, int y2, std::string_view cls) {
    body +=
        fmt::format("<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" class=\"{}\"/>\n", x1, y1, x2, y2, cls);
  }
  // A VM: a box with a second frame inside (its own kernel). A container: a rounded, dashed box.
  // Each instance is one group naming it, its kind and state (the dashboard and its browser test find
  // instances by these); a stopped one is drawn faded.
  void instance(int x, int y, const json& instance) {
    const bool vm = str(instance, "kind") == "vm";
    const bool balancer = str(instance, "kind") == "load-balancer";
    const std::string state = str(instance, "state");
    const std::string kind = vm ? "vm" : balancer ? "load-balancer" : "container";
    body += fmt::format("<g class=\"instance-node{}\" data-name=\"{}\" data-kind=\"{}\" data-state=\"{}\">\n",
                        state == "stopped" ? " stopped" : "", escapeXml(str(instance, "name")), kind,
                        escapeXml(state));
    if (balancer) {
      // A load balancer's NIC: a plain box, its load balancer's name on it (not an instance).
      rect(x, y, kBoxWidth, kBoxHeight, "load-balancer", 2);
    } else if (vm) {
      rect(x, y, kBoxWidth, kBoxHeight, "vm");
      rect(x + 4, y + 4, kBoxWidth - 8, kBoxHeight - 8, "vm-inner");
    } else {
      rect(x, y, kBoxWidth, kBoxHeight, "container", 10);
    }
    const int middle = x + kBoxWidth / 2;
    text(middle, y + 18,
         balancer ? "load balancer " + str(instance, "load_balancer")
                  : fmt::format("{} {}", vm ? "vm" : "container", str(instance, "name")),
         "name", "middle");
    text(middle, y + 33, str(instance, "ip"), "small", "middle");
    const json& publicIp = member(instance, "public_ip");
    text(middle, y + 47, publicIp.is_null() ? str(instance, "state") : "public " + str(publicIp), "small",
         "middle");
    body += "</g>\n";
  }
  void natGateway(int x, int y, const json& nat) {
    rect(x, y, kBoxWidth, kBoxHeight, "nat", 4);
    text(x + kBoxWidth / 2, y + 24, "NAT gateway " + str(nat, "name"), "name", "middle");
    text(x + kBoxWidth / 2, y + 40, "private floors go out here", "small", "middle");
  }
};

constexpr std::string_view kSvgStyle =
    "text { font-family: sans-serif; fill: #222; }\n"
    ".title { font-size: 16px; font-weight: bold; }\n"
    ".stopped { opacity: 0.45; }\n"
    ".heading { font-size: 13px; font-weight: bold; }\n"
    ".name { font-size: 12px; font-weight: bold; }\n"
    ".small { font-size: 10px; }\n"
    ".building { fill: #f4f1ea; stroke: #6b5b45; stroke-width: 3; }\n"
    ".floor { fill: #ffffff; stroke: #9c8c74; stroke-width: 1.5; }\n"
    ".vm { fill: #dbe8fb; stroke: #2f5f9e; stroke-width: 1.5; }\n"
    ".vm-inner { fill: none; stroke: #2f5f9e; stroke-width: 1; }\n"
    ".container { fill: #e2f4e0; stroke: #3c7d35; stroke-width: 1.5; stroke-dasharray: 5 3; }\n"
    ".load-balancer { fill: #f8e6f0; stroke: #8a3b6c; stroke-width: 1.5; }\n"
    ".nat { fill: #fdf0d5; stroke: #b07a12; stroke-width: 1.5; }\n"
    ".router { fill: #efe3f6; stroke: #6c3b8a; stroke-width: 2; }\n"
    ".door { fill: #c98b4a; stroke: #6b4218; stroke-width: 2; }\n"
    ".cloud { fill: #eef5fb; stroke: #5d86ad; stroke-width: 1.5; }\n"
    ".bridge { stroke: #444; stroke-width: 3; }\n"
    ".wire { stroke: #666; stroke-width: 1.5; }\n"
    ".uplink { stroke: #6b4218; stroke-width: 2; stroke-dasharray: 6 3; }\n";

}  // namespace

std::string renderTopologyText(const json& topology) {
  std::string out = renderTree(buildingNode(topology)) + "\n";
  out += renderTree(routeTablesNode(topology)) + "\n";
  out += renderTree(gatewaysNode(topology)) + "\n";
  out += renderTree(guardsNode(topology)) + "\n";
  out += renderTree(kernelNode(topology)) + "\n";
  if (!member(topology, "cluster").is_null()) out += renderTree(clusterNode(topology)) + "\n";

  // The commands that show the same objects, with this VPC's names filled in.
  const std::string exec = "ip netns exec " + str(member(topology, "vpc"), "netns");
  const json& tables = items(topology, "route_tables");
  const std::string table = tables.empty() ? std::string("100") : str(tables[0], "table_id");
  out += "look for yourself (as root):\n";
  out += fmt::format(
      "  {} ip -br link                # bridges (crlb), ports (crlv, crlt), gateway (crlg), peerings "
      "(crlp)\n",
      exec);
  out += fmt::format("  {} bridge link                # which port is on which floor's switch\n", exec);
  out += fmt::format("  {} ip rule                    # which subnet uses which routing table\n", exec);
  out += fmt::format("  {} ip route show table {:<5}  # a route table as the kernel has it\n", exec, table);
  out += fmt::format("  {} nft list ruleset           # the guards and the NAT: table inet corral\n", exec);
  if (!member(topology, "cluster").is_null())
    out +=
        "  ovs-vsctl find Interface type=geneve  # on each host: its tunnels to the others "
        "(options:remote_ip)\n";
  return out;
}

std::string renderTopologyDot(const json& topology) {
  const json& vpc = member(topology, "vpc");
  const json& gateway = member(topology, "internet_gateway");
  std::string out = fmt::format("// corral net show {} --format dot; draw it with: dot -Tsvg -o vpc.svg\n",
                                str(vpc, "name"));
  out += fmt::format("graph {} {{\n", dotId("vpc " + str(vpc, "name")));
  out += "  graph [rankdir=LR, fontname=\"Helvetica\", fontsize=11];\n";
  out += "  node [fontname=\"Helvetica\", fontsize=10];\n";
  out += "  edge [fontname=\"Helvetica\", fontsize=9];\n";
  out += "  \"internet\" [shape=ellipse, style=dashed, label=\"internet\"];\n";
  out += fmt::format("  subgraph {} {{\n", dotId("cluster_vpc"));
  out += fmt::format("    label={};\n", dotLabel({"VPC " + str(vpc, "name") + " (the building)",
                                                  str(vpc, "cidr"), "netns " + str(vpc, "netns")}));
  out += fmt::format("    \"router\" [shape=diamond, label={}];\n",
                     dotLabel({"VPC router (L3)", str(vpc, "netns")}));
  if (gateway.is_object()) {
    out += fmt::format("    {} [shape=house, label={}];\n", dotId("igw/" + str(gateway, "name")),
                       dotLabel({"internet gateway " + str(gateway, "name"), "(the front door)",
                                 str(gateway, "link") + " " + str(gateway, "outside_address")}));
  }
  for (const json& subnet : items(topology, "subnets")) {
    const std::string name = str(subnet, "name");
    out += fmt::format("    subgraph {} {{\n", dotId("cluster_subnet_" + name));
    out += fmt::format("      label={};\n",
                       dotLabel({"subnet " + name + " (a floor)",
                                 str(subnet, "cidr") + " " + str(subnet, "availability_zone"),
                                 str(subnet, "reachability")}));
    out += fmt::format("      {} [shape=box, style=rounded, label={}];\n", dotId("bridge/" + name),
                       dotLabel({"switch (L2)", "bridge " + str(subnet, "bridge")}));
    for (const json& instance : items(subnet, "instances")) {
      const bool vm = str(instance, "kind") == "vm";
      const bool balancer = str(instance, "kind") == "load-balancer";
      std::vector<std::string> lines{balancer ? "load balancer " + str(instance, "load_balancer") + " (NIC " +
                                                    str(instance, "name") + ")"
                                              : (vm ? "vm " : "container ") + str(instance, "name"),
                                     str(instance, "ip")};
      if (!member(instance, "public_ip").is_null()) lines.push_back("public " + str(instance, "public_ip"));
      lines.push_back(str(instance, "mac"));
      out += fmt::format("      {} [shape={}, label={}];\n", dotId("instance/" + str(instance, "name")),
                         vm         ? "box3d"
                         : balancer ? "hexagon"
                                    : "component",
                         dotLabel(lines));
    }
    for (const json& nat : items(topology, "nat_gateways"))
      if (str(nat, "subnet") == name)
        out += fmt::format("      {} [shape=octagon, label={}];\n", dotId("nat/" + str(nat, "name")),
                           dotLabel({"NAT gateway " + str(nat, "name")}));
    out += "    }\n";
  }
  out += "  }\n";

  for (const json& subnet : items(topology, "subnets")) {
    const std::string name = str(subnet, "name");
    for (const json& instance : items(subnet, "instances"))
      out += fmt::format("  {} -- {} [label={}];\n", dotId("instance/" + str(instance, "name")),
                         dotId("bridge/" + name), dotLabel({str(instance, "link")}));
    for (const json& nat : items(topology, "nat_gateways"))
      if (str(nat, "subnet") == name)
        out += fmt::format("  {} -- {};\n", dotId("nat/" + str(nat, "name")), dotId("bridge/" + name));
    out += fmt::format("  {} -- \"router\" [label={}];\n", dotId("bridge/" + name),
                       dotLabel({routerWithPrefix(subnet)}));
  }

  // Routes leaving the building, grouped by where they lead: "prod-main: 0.0.0.0/0".
  std::vector<std::pair<std::string, std::vector<std::string>>> exits;
  for (const json& table : items(topology, "route_tables")) {
    for (const json& route : items(table, "routes")) {
      const Target target = parseTarget(str(route, "target"));
      std::string node;
      if (target.kind == "internet_gateway" && gateway.is_object()) node = "igw/" + target.name;
      if (target.kind == "nat_gateway") node = "nat/" + target.name;
      if (target.kind == "peering") node = "peering/" + target.name;
      if (target.kind == "blackhole") node = "blackhole";
      if (node.empty()) continue;
      auto it =
          std::find_if(exits.begin(), exits.end(), [&](const auto& exit) { return exit.first == node; });
      if (it == exits.end()) it = exits.insert(exits.end(), {node, {}});
      it->second.push_back(str(table, "name") + ": " + str(route, "destination"));
    }
  }
  for (const json& peering : items(topology, "peerings")) {
    const std::string node = "peering/" + str(peering, "name");
    out +=
        fmt::format("  {} [shape=cds, label={}];\n", dotId(node),
                    dotLabel({"peering " + str(peering, "name"),
                              "to vpc " + str(member(peering, "peer_vpc")) + " " + str(peering, "peer_cidr"),
                              str(peering, "link") + " " + str(peering, "address")}));
    if (std::none_of(exits.begin(), exits.end(), [&](const auto& exit) { return exit.first == node; }))
      out += fmt::format("  \"router\" -- {} [style=dashed, label={}];\n", dotId(node),
                         dotLabel({"no route uses it"}));
  }
  for (const auto& [node, routes] : exits) {
    if (node == "blackhole") out += "  \"blackhole\" [shape=point, xlabel=\"blackhole (dropped)\"];\n";
    out += fmt::format("  \"router\" -- {} [label={}];\n", dotId(node), dotLabel(routes));
  }
  if (gateway.is_object()) {
    out += fmt::format("  {} -- \"internet\" [label={}];\n", dotId("igw/" + str(gateway, "name")),
                       dotLabel({"transit " + str(gateway, "transit"),
                                 str(gateway, "outside_address") + " ↔ " + str(gateway, "uplink_address"),
                                 "uplink: " + str(gateway, "uplink")}));
  }
  out += "}\n";
  return out;
}

std::string renderTopologySvg(const json& topology) {
  const json& vpc = member(topology, "vpc");
  const json& gateway = member(topology, "internet_gateway");
  const json& subnets = items(topology, "subnets");
  const json& nats = items(topology, "nat_gateways");

  auto natsOn = [&](const json& subnet) {
    std::vector<const json*> found;
    for (const json& nat : nats)
      if (str(nat, "subnet") == str(subnet, "name")) found.push_back(&nat);
    return found;
  };
  size_t widest = 1;
  for (const json& subnet : subnets)
    widest = std::max(widest, items(subnet, "instances").size() + natsOn(subnet).size());
  auto floorHeading = [](const json& subnet) {
    return fmt::format("subnet {}  {}  {}  ·  {}  ·  table {}", str(subnet, "name"), str(subnet, "cidr"),
                       str(subnet, "availability_zone"), str(subnet, "reachability"),
                       str(subnet, "route_table"));
  };
  int floorWidth = std::max(kFloorMinWidth, static_cast<int>(widest) * (kBoxWidth + kBoxGap) + kBoxGap);
  // About 7.5 px per character of the 13 px bold heading, so it stays on its floor.
  for (const json& subnet : subnets)
    floorWidth = std::max(floorWidth, static_cast<int>(floorHeading(subnet).size()) * 15 / 2 + 16);
  const int floorCount = std::max<int>(1, static_cast<int>(subnets.size()));

  const int buildingX = kMargin;
  const int buildingY = kMargin + 30;
  const int floorX = buildingX + 16;
  const int firstFloorY = buildingY + 48;
  const int floorsHeight = floorCount * kFloorHeight + (floorCount - 1) * kFloorGap;
  const int routerX = floorX + floorWidth + 40;
  const int buildingWidth = routerX + kRouterWidth + 30 - buildingX;
  const int buildingHeight = firstFloorY - buildingY + floorsHeight + 20;
  const int buildingRight = buildingX + buildingWidth;
  const int cloudX = buildingRight + 260;
  const int width = cloudX + 110 + kMargin;
  const int legendY = buildingY + buildingHeight + 30;
  const int height = legendY + kBoxHeight + 40 + kMargin;

  Svg svg;
  svg.text(kMargin, kMargin + 10,
           fmt::format("VPC {}: the building, its floors and its front door", str(vpc, "name")), "title");
  svg.rect(buildingX, buildingY, buildingWidth, buildingHeight, "building", 6);
  svg.text(buildingX + 14, buildingY + 22, fmt::format("VPC {}  {}", str(vpc, "name"), str(vpc, "cidr")),
           "heading");
  svg.text(buildingX + 14, buildingY + 38, "network namespace " + str(vpc, "netns"), "small");

  // The router runs the building's full height beside the floors: every floor's switch is wired to it.
  svg.rect(routerX, firstFloorY, kRouterWidth, floorsHeight, "router", 6);
  svg.text(routerX + kRouterWidth / 2, firstFloorY + 20, "VPC router (L3)", "name", "middle");
  svg.text(routerX + kRouterWidth / 2, firstFloorY + 34, "route tables pick the way", "small", "middle");

  if (subnets.empty())
    svg.text(floorX + 10, firstFloorY + kFloorHeight / 2, "no subnets (floors) yet", "heading");
  for (size_t i = 0; i < subnets.size(); ++i) {
    const json& subnet = subnets[i];
    const int floorY = firstFloorY + static_cast<int>(i) * (kFloorHeight + kFloorGap);
    svg.rect(floorX, floorY, floorWidth, kFloorHeight, "floor", 3);
    svg.text(floorX + 8, floorY + 17, floorHeading(subnet), "heading");
    const int boxY = floorY + kFloorHeaderHeight;
    const int bridgeY = boxY + kBoxHeight + 16;
    int x = floorX + kBoxGap;
    for (const json& instance : items(subnet, "instances")) {
      svg.instance(x, boxY, instance);
      svg.line(x + kBoxWidth / 2, boxY + kBoxHeight, x + kBoxWidth / 2, bridgeY, "wire");
      x += kBoxWidth + kBoxGap;
    }
    for (const json* nat : natsOn(subnet)) {
      svg.natGateway(x, boxY, *nat);
      svg.line(x + kBoxWidth / 2, boxY + kBoxHeight, x + kBoxWidth / 2, bridgeY, "wire");
      x += kBoxWidth + kBoxGap;
    }
    // The switch: a bus along the floor, continuing to the router.
    svg.line(floorX + 8, bridgeY, routerX, bridgeY, "bridge");
    svg.text(floorX + 10, bridgeY + 12, "switch (L2): bridge " + str(subnet, "bridge"), "small");
    svg.text(routerX - 6, bridgeY - 4, routerWithPrefix(subnet), "small", "end");
  }

  // The front door on the building's right wall, opening to the internet.
  const int doorY = firstFloorY + floorsHeight / 2 - 30;
  const int cloudY = doorY + 30;
  if (gateway.is_object()) {
    svg.line(routerX + kRouterWidth, cloudY, buildingRight - 12, cloudY, "wire");
    svg.rect(buildingRight - 12, doorY, 24, 60, "door", 2);
    svg.text(buildingRight + 18, doorY - 6, "internet gateway " + str(gateway, "name"), "name");
    svg.line(buildingRight + 12, cloudY, cloudX - 80, cloudY, "uplink");
    svg.text(buildingRight + 20, cloudY - 8,
             str(gateway, "outside_address") + " → " + str(gateway, "uplink_address"), "small");
    svg.text(buildingRight + 20, cloudY + 16, "transit " + str(gateway, "transit"), "small");
  } else {
    svg.text(buildingRight + 20, cloudY - 8, "no front door", "small");
  }
  // Peerings: corridors from the router out of the building's wall towards the peer VPCs, below the door.
  int corridorY = firstFloorY + floorsHeight - 16;
  for (const json& peering : items(topology, "peerings")) {
    svg.line(routerX + kRouterWidth, corridorY, buildingRight + 40, corridorY, "uplink");
    svg.text(buildingRight + 46, corridorY + 4,
             fmt::format("peering {} ⇄ VPC {} {}", str(peering, "name"), str(peering, "peer_vpc"),
                         str(peering, "peer_cidr")),
             "name");
    svg.text(buildingRight + 46, corridorY + 18,
             fmt::format("{} {} → {}", str(peering, "link"), str(peering, "address"),
                         str(peering, "peer_address")),
             "small");
    corridorY -= 40;
  }
  svg.body +=
      fmt::format("<ellipse cx=\"{}\" cy=\"{}\" rx=\"80\" ry=\"36\" class=\"cloud\"/>\n", cloudX, cloudY);
  svg.text(cloudX, cloudY + 5, "internet", "heading", "middle");

  // Legend.
  svg.text(kMargin, legendY - 8, "legend", "heading");
  int legendX = kMargin;
  svg.instance(legendX, legendY,
               json{{"kind", "vm"}, {"name", "NAME"}, {"ip", "IP"}, {"state", "its own kernel"}});
  legendX += kBoxWidth + kBoxGap;
  svg.instance(
      legendX, legendY,
      json{{"kind", "container"}, {"name", "NAME"}, {"ip", "IP"}, {"state", "shares the host kernel"}});
  legendX += kBoxWidth + kBoxGap;
  svg.natGateway(legendX, legendY, json{{"name", "NAME"}});
  legendX += kBoxWidth + kBoxGap;
  svg.rect(legendX, legendY, 24, kBoxHeight, "door", 2);
  svg.text(legendX + 32, legendY + 20, "internet gateway:", "small");
  svg.text(legendX + 32, legendY + 34, "the front door", "small");
  legendX += 140;
  svg.line(legendX, legendY + 20, legendX + 40, legendY + 20, "bridge");
  svg.text(legendX + 48, legendY + 24, "switch (subnet bridge)", "small");
  svg.rect(legendX, legendY + 34, 40, 20, "router", 4);
  svg.text(legendX + 48, legendY + 48, "VPC router", "small");

  std::string out = fmt::format(
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{0}\" height=\"{1}\" viewBox=\"0 0 {0} {1}\">\n",
      width, height);
  out += fmt::format("<title>{}</title>\n", escapeXml("VPC " + str(vpc, "name") + " topology"));
  out += "<style>\n" + std::string(kSvgStyle) + "</style>\n";
  out += svg.body;
  out += "</svg>\n";
  return out;
}

}  // namespace corral::api
