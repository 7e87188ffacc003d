// The sys side of the datapath: links, addresses, routes and rules through libnl-route-3, inside a named
// network namespace (net/netns.h) or any other — never by running `ip`.
// Every call names the netlink operation, the object and the namespace on error, e.g.
// `rtnl_link_add(bridge "crlb1a2b3c4d" in netns "corral-vpc-prod"): File exists`.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/unique_fd.h"
#include "net/netns.h"

namespace corral::net {

struct LinkInfo {
  std::string name;
  int index = 0;
  std::string kind;  // "bridge", "veth", "tun", "" for others
  bool up = false;
  // IFF_RUNNING: operationally up (a veth once its peer is up too, as the kernel's linkwatch saw it).
  bool running = false;
  std::string mac;                     // "02:c1:aa:bb:cc:dd"; empty for a link without one of 6 bytes
  std::optional<std::string> master;   // the bridge it is a port of
  std::vector<std::string> addresses;  // "10.0.1.1/24"
};

struct RouteEntry {
  std::string destination;             // "10.0.0.0/16", "0.0.0.0/0"
  std::optional<std::string> gateway;  // "100.64.0.5"
  std::optional<std::string> device;   // output link name
  uint32_t table = 254;                // RT_TABLE_MAIN
  bool blackhole = false;
  auto operator<=>(const RouteEntry&) const = default;
};

struct RuleEntry {
  uint32_t priority = 0;
  std::optional<std::string> from;  // "10.0.1.0/24"; absent: all
  std::optional<std::string> to;
  uint32_t table = 254;
  auto operator<=>(const RuleEntry&) const = default;
};

// A route netlink socket opened inside one namespace (or the caller's when netns is empty): sockets keep
// the namespace they were created in, so all calls act there, from any thread.
class Netlink {
 public:
  static Result<Netlink> open(const std::string& netns = {});
  // The same inside the namespace `netnsFd` refers to (e.g. a container's /proc/PID/ns/net); `label`
  // names it in errors ("container web-1").
  static Result<Netlink> openIn(int netnsFd, const std::string& label);
  Netlink(Netlink&&) noexcept;
  Netlink& operator=(Netlink&&) noexcept;
  ~Netlink();

  // With `mac`, the bridge keeps that address whichever ports come and go.
  Status createBridge(const std::string& name, const std::optional<std::string>& mac = {});
  // A veth pair `name` <-> `peer`, both here; then moveToNetns(peer or name, fd).
  Status createVethPair(const std::string& name, const std::string& peer);
  // The same with the peer made directly inside the namespace `peerNetnsFd` (with `peerMac` if given):
  // much cheaper than moving it there afterwards (a move waits for the kernel's RCU grace periods).
  Status createVethPair(const std::string& name, const std::string& peer, int peerNetnsFd,
                        const std::optional<std::string>& peerMac);
  Status moveToNetns(const std::string& link, int netnsFd, const std::optional<std::string>& newName = {});
  Status setMaster(const std::string& link, const std::string& bridge);
  Status setUp(const std::string& link);
  Status setMac(const std::string& link, const std::string& mac);
  Status setMtu(const std::string& link, unsigned mtu);
  Status addAddress(const std::string& link, const std::string& cidrAddress);     // "10.0.1.1/24"
  Status deleteAddress(const std::string& link, const std::string& cidrAddress);  // missing: not an error
  Status addDefaultRoute(const std::string& gateway);                             // via gateway, main table
  // Routes and policy rules (IPv4). addRoute replaces a route with the same table and destination.
  Status addRoute(const RouteEntry& route);
  Status deleteRoute(const RouteEntry& route);  // by table + destination; missing: not an error
  // Unicast and blackhole routes of one table (254 = main), protocol kernel included, sorted by destination;
  // table 0: of every table but the kernel's local (255) and default (253), sorted by table, destination.
  Result<std::vector<RouteEntry>> routes(uint32_t table);
  Status addRule(const RuleEntry& rule);       // an existing identical rule: not an error
  Status deleteRule(const RuleEntry& rule);    // missing: not an error
  Result<std::vector<RuleEntry>> rules();      // IPv4 rules, the kernel's defaults (0, 32766, 32767) included
  Status deleteLink(const std::string& name);  // missing: not an error
  // One link by name, looked up by the kernel (RTM_GETLINK with IFLA_IFNAME: its cost does not grow with
  // the number of links there); nullopt when there is none of that name. A name no link can have (empty,
  // longer than 15 characters): InvalidArgument naming field "link".
  Result<std::optional<LinkInfo>> link(const std::string& name);
  Result<std::vector<LinkInfo>> links();  // every link (a dump), sorted by index
  const std::string& netns() const;

 private:
  struct State;
  explicit Netlink(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace corral::net
