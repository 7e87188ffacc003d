// Links, addresses, routes and rules over libnl-route-3, on a socket opened inside a namespace by a
// short-lived helper thread (net/netns.h); the calling thread never moves.
#include "net/netlink.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <linux/fib_rules.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/errno.h>
#include <netlink/handlers.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>
#include <netlink/route/route.h>
#include <netlink/route/rule.h>
#include <netlink/socket.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <tuple>
#include <utility>

#include "net/cidr.h"

namespace corral::net {
namespace {

// libnl objects are reference counted; each owner drops its reference through its own put/free function.
template <auto Release>
struct Releaser {
  template <class T>
  void operator()(T* object) const {
    Release(object);
  }
};
using SocketPtr = std::unique_ptr<nl_sock, Releaser<nl_socket_free>>;
using LinkPtr = std::unique_ptr<rtnl_link, Releaser<rtnl_link_put>>;
using AddrPtr = std::unique_ptr<rtnl_addr, Releaser<rtnl_addr_put>>;
using RoutePtr = std::unique_ptr<rtnl_route, Releaser<rtnl_route_put>>;
using NlAddrPtr = std::unique_ptr<nl_addr, Releaser<nl_addr_put>>;
using CachePtr = std::unique_ptr<nl_cache, Releaser<nl_cache_free>>;
using RulePtr = std::unique_ptr<rtnl_rule, Releaser<rtnl_rule_put>>;
using CallbacksPtr = std::unique_ptr<nl_cb, Releaser<nl_cb_put>>;
using MessagePtr = std::unique_ptr<nl_msg, Releaser<nlmsg_free>>;

std::string whereText(const std::string& netns) {
  return netns.empty() ? std::string("the caller's netns") : fmt::format("netns \"{}\"", netns);
}

// `where` names the namespace: whereText(name) or the label openIn was given.
Error nlError(int err, std::string_view op, std::string_view object, std::string_view where) {
  std::string message = fmt::format("{}({} in {}): {}", op, object, where, nl_geterror(err));
  switch (err < 0 ? -err : err) {
    case NLE_EXIST:
      return Error(ErrorKind::Conflict, std::move(message));
    case NLE_OBJ_NOTFOUND:
    case NLE_NODEV:
      return Error(ErrorKind::NotFound, std::move(message));
    default:
      return Error(ErrorKind::Internal, std::move(message));
  }
}

// A link's hardware address as "02:c1:aa:bb:cc:dd"; empty when it has none of 6 bytes.
std::string macText(nl_addr* address) {
  if (address == nullptr || nl_addr_get_len(address) != 6) return "";
  const auto* bytes = static_cast<const unsigned char*>(nl_addr_get_binary_addr(address));
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", bytes[0], bytes[1], bytes[2], bytes[3],
                     bytes[4], bytes[5]);
}

// "10.0.1.1/24" -> address and prefix length.
struct ParsedAddress {
  Ipv4Address address;
  int prefix = 0;
};
Result<ParsedAddress> parseCidrAddress(std::string_view text, std::string_view field) {
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) {
    return fail(invalidField(std::string(field), "\"{}\" is not ADDRESS/PREFIX, e.g. 10.0.1.1/24", text));
  }
  auto address = Ipv4Address::parse(text.substr(0, slash), field);
  if (!address) return fail(std::move(address).error());
  std::string_view prefixText = text.substr(slash + 1);
  int prefix = -1;
  auto [end, ec] = std::from_chars(prefixText.data(), prefixText.data() + prefixText.size(), prefix);
  if (ec != std::errc() || end != prefixText.data() + prefixText.size() || prefix < 0 || prefix > 32) {
    return fail(invalidField(std::string(field), "prefix \"{}\" in \"{}\" is not 0-32", prefixText, text));
  }
  return ParsedAddress{*address, prefix};
}

Result<NlAddrPtr> ipv4NlAddr(Ipv4Address address, int prefix) {
  uint32_t networkOrder = htonl(address.value());
  NlAddrPtr addr(nl_addr_build(AF_INET, &networkOrder, sizeof(networkOrder)));
  if (!addr) return fail(internalError("nl_addr_build({}): out of memory", address.str()));
  nl_addr_set_prefixlen(addr.get(), prefix);
  return addr;
}

// A MAC address as libnl takes it; refused, naming the field, unless it is six bytes.
Result<NlAddrPtr> parseMac(const std::string& mac) {
  nl_addr* parsed = nullptr;
  if (int err = nl_addr_parse(mac.c_str(), AF_LLC, &parsed); err < 0) {
    return fail(invalidField("mac", "\"{}\" is not a MAC address: {}", mac, nl_geterror(err)));
  }
  NlAddrPtr address(parsed);
  if (nl_addr_get_len(address.get()) != 6) {
    return fail(invalidField("mac", "\"{}\" is not a 6-byte MAC address", mac));
  }
  return address;
}

std::string quoted(std::string_view kind, std::string_view name) {
  return fmt::format("{} \"{}\"", kind, name);
}

// "route 10.0.0.0/16 via 100.64.0.5 dev eth1 table 100", "blackhole route 10.9.0.0/16 table 100".
std::string routeText(const RouteEntry& route) {
  std::string text = fmt::format("{}route {}", route.blackhole ? "blackhole " : "", route.destination);
  if (route.gateway) text += fmt::format(" via {}", *route.gateway);
  if (route.device) text += fmt::format(" dev \"{}\"", *route.device);
  return text + fmt::format(" table {}", route.table);
}

// "rule 100 from 10.0.1.0/24 to all lookup 100", as `ip rule` prints it.
std::string ruleText(const RuleEntry& rule) {
  return fmt::format("rule {} from {} to {} lookup {}", rule.priority, rule.from.value_or("all"),
                     rule.to.value_or("all"), rule.table);
}

std::optional<Ipv4Address> ipv4Of(nl_addr* addr) {
  if (addr == nullptr || nl_addr_get_family(addr) != AF_INET || nl_addr_get_len(addr) != 4) return {};
  uint32_t networkOrder = 0;
  std::memcpy(&networkOrder, nl_addr_get_binary_addr(addr), sizeof(networkOrder));
  return Ipv4Address(ntohl(networkOrder));
}

std::optional<std::string> ipv4Text(nl_addr* addr) {
  auto address = ipv4Of(addr);
  if (!address) return {};
  return address->str();
}

// A rule's from/to: absent (all) when the kernel has no prefix for it.
std::optional<std::string> prefixText(nl_addr* addr) {
  auto address = ipv4Of(addr);
  if (!address || nl_addr_get_prefixlen(addr) == 0) return {};
  return Cidr::containing(*address, static_cast<int>(nl_addr_get_prefixlen(addr))).str();
}

// The kernel leaves RTA_DST out of a default route: 0.0.0.0/0.
Cidr routeDestination(rtnl_route* route) {
  nl_addr* dst = rtnl_route_get_dst(route);
  auto address = ipv4Of(dst);
  int prefix = dst != nullptr ? static_cast<int>(nl_addr_get_prefixlen(dst)) : 0;
  return Cidr::containing(address.value_or(Ipv4Address(0)), std::clamp(prefix, 0, 32));
}

// "10.0.1.1/24" of an IPv4 address object; nullopt for other families.
std::optional<std::string> addressText(rtnl_addr* address) {
  if (rtnl_addr_get_family(address) != AF_INET) return std::nullopt;
  nl_addr* local = rtnl_addr_get_local(address);
  if (local == nullptr || nl_addr_get_len(local) != 4) return std::nullopt;
  char text[INET_ADDRSTRLEN] = {};
  if (::inet_ntop(AF_INET, nl_addr_get_binary_addr(local), text, sizeof(text)) == nullptr)
    return std::nullopt;
  return fmt::format("{}/{}", text, rtnl_addr_get_prefixlen(address));
}

// What the kernel answered to one request: its errno (0: done) and its extended-ack text, if any.
struct KernelAnswer {
  int errnum = 0;
  std::string detail;
};

// NLMSG_ERROR carries the errno and, with NETLINK_EXT_ACK, attributes after the (maybe capped) request;
// NLMSGERR_ATTR_MSG is the kernel's own words ("Nexthop has invalid gateway").
int recordKernelError(sockaddr_nl* /*peer*/, nlmsgerr* error, void* arg) {
  auto* answer = static_cast<KernelAnswer*>(arg);
  answer->errnum = -error->error;
  const char* base = reinterpret_cast<const char*>(error) - NLMSG_HDRLEN;
  const auto* header = reinterpret_cast<const nlmsghdr*>(base);
  if ((header->nlmsg_flags & NLM_F_ACK_TLVS) == 0) return NL_STOP;
  size_t offset = NLMSG_HDRLEN + sizeof(nlmsgerr);
  if ((header->nlmsg_flags & NLM_F_CAPPED) == 0) offset += error->msg.nlmsg_len - NLMSG_HDRLEN;
  offset = NLMSG_ALIGN(offset);
  while (offset + sizeof(nlattr) <= header->nlmsg_len) {
    nlattr attribute{};
    std::memcpy(&attribute, base + offset, sizeof(attribute));
    if (attribute.nla_len < sizeof(nlattr) || offset + attribute.nla_len > header->nlmsg_len) break;
    if ((attribute.nla_type & NLA_TYPE_MASK) == NLMSGERR_ATTR_MSG) {
      std::string_view text(base + offset + sizeof(nlattr), attribute.nla_len - sizeof(nlattr));
      answer->detail = std::string(text.substr(0, text.find('\0')));
    }
    offset += NLA_ALIGN(attribute.nla_len);
  }
  return NL_STOP;
}

// Sends a request an rtnl_*_build_*_request made (`built` is its return value; the message is taken over)
// and waits for the acknowledgement. Unlike rtnl_link_add() and friends, which fold most errnos into
// "Unspecific failure", the error keeps the kernel's errno and text; errnos in `tolerated` are success.
Status sendRequest(nl_sock* socket, int built, nl_msg* rawMessage, std::string_view op,
                   std::string_view object, std::string_view where,
                   std::initializer_list<int> tolerated = {}) {
  MessagePtr message(rawMessage);
  if (built < 0) return fail(nlError(built, op, object, where));
  if (int err = nl_send_auto(socket, message.get()); err < 0) return fail(nlError(err, op, object, where));
  nl_cb* socketCallbacks = nl_socket_get_cb(socket);  // takes a reference
  CallbacksPtr callbacks(nl_cb_clone(socketCallbacks));
  nl_cb_put(socketCallbacks);
  if (!callbacks) return fail(internalError("nl_cb_clone: out of memory"));
  KernelAnswer answer;
  nl_cb_err(callbacks.get(), NL_CB_CUSTOM, recordKernelError, &answer);
  nl_cb_set(
      callbacks.get(), NL_CB_ACK, NL_CB_CUSTOM, [](nl_msg*, void*) -> int { return NL_STOP; }, nullptr);
  int err = nl_recvmsgs(socket, callbacks.get());
  if (answer.errnum != 0) {
    if (std::find(tolerated.begin(), tolerated.end(), answer.errnum) != tolerated.end()) return {};
    std::string text = fmt::format("{}({} in {}): {}", op, object, where, std::strerror(answer.errnum));
    if (!answer.detail.empty()) text += fmt::format(" ({})", answer.detail);
    ErrorKind kind = ErrorKind::Internal;
    if (answer.errnum == EEXIST || answer.errnum == EBUSY) kind = ErrorKind::Conflict;
    if (answer.errnum == ENODEV || answer.errnum == ENOENT || answer.errnum == ESRCH)
      kind = ErrorKind::NotFound;
    return fail(Error(kind, std::move(text), {}, answer.errnum));
  }
  if (err < 0) return fail(nlError(err, op, object, where));
  return {};
}

// Every IPv4 route the kernel has, each its own object. libnl's route cache is not used: it folds routes
// that share table, destination, tos and priority (a unicast and a blackhole route, say) into one.
Result<std::vector<RoutePtr>> dumpRoutes(nl_sock* socket, std::string_view where) {
  rtmsg request{};
  request.rtm_family = AF_INET;
  if (int err = nl_send_simple(socket, RTM_GETROUTE, NLM_F_DUMP, &request, sizeof(request)); err < 0) {
    return fail(nlError(err, "nl_send_simple[RTM_GETROUTE, NLM_F_DUMP]", "routes", where));
  }
  nl_cb* socketCallbacks = nl_socket_get_cb(socket);  // takes a reference
  CallbacksPtr callbacks(nl_cb_clone(socketCallbacks));
  nl_cb_put(socketCallbacks);
  if (!callbacks) return fail(internalError("nl_cb_clone: out of memory"));
  struct Dump {
    std::vector<RoutePtr> routes;
    int parseError = 0;
  } dump;
  auto collect = [](nl_msg* message, void* arg) -> int {
    auto* into = static_cast<Dump*>(arg);
    rtnl_route* route = nullptr;
    if (int err = rtnl_route_parse(nlmsg_hdr(message), &route); err < 0) {
      into->parseError = err;
      return NL_SKIP;  // read on to NLMSG_DONE so no rest of the dump is left for the next request
    }
    into->routes.emplace_back(route);
    return NL_OK;
  };
  nl_cb_set(callbacks.get(), NL_CB_VALID, NL_CB_CUSTOM, collect, &dump);
  int err = nl_recvmsgs(socket, callbacks.get());
  if (err >= 0 && dump.parseError < 0) err = dump.parseError;
  if (err < 0) return fail(nlError(err, "nl_recvmsgs[RTM_GETROUTE]", "routes", where));
  return std::move(dump.routes);
}

// An IPv4 rule "from FROM to TO lookup TABLE" at its priority, as a libnl request.
Result<RulePtr> ruleRequest(const RuleEntry& rule) {
  RulePtr request(rtnl_rule_alloc());
  if (!request) return fail(internalError("rtnl_rule_alloc: out of memory"));
  rtnl_rule_set_family(request.get(), AF_INET);
  rtnl_rule_set_prio(request.get(), rule.priority);
  rtnl_rule_set_table(request.get(), rule.table);
  rtnl_rule_set_action(request.get(), FR_ACT_TO_TBL);
  for (auto [field, prefix] : {std::pair{"from", &rule.from}, std::pair{"to", &rule.to}}) {
    if (!*prefix) continue;
    auto block = Cidr::parse(**prefix, field);
    if (!block) return fail(std::move(block).error());
    auto addr = ipv4NlAddr(block->network(), block->prefix());
    if (!addr) return fail(std::move(addr).error());
    bool isFrom = std::string_view(field) == "from";
    int err = isFrom ? rtnl_rule_set_src(request.get(), addr->get())
                     : rtnl_rule_set_dst(request.get(), addr->get());
    if (err < 0)
      return fail(
          internalError("rtnl_rule_set_{}({}): {}", isFrom ? "src" : "dst", **prefix, nl_geterror(err)));
  }
  return request;
}

}  // namespace

// ---- Netlink ----

struct Netlink::State {
  std::string netns;  // the name open() was given, or openIn's label
  std::string where;  // the namespace as errors name it
  SocketPtr socket;

  // The link as the kernel has it now, or NotFound naming it.
  Result<LinkPtr> kernelLink(const std::string& name, std::string_view op) const {
    rtnl_link* found = nullptr;
    int err = rtnl_link_get_kernel(socket.get(), 0, name.c_str(), &found);
    if (err < 0) return fail(nlError(err, op, quoted("link", name), where));
    return LinkPtr(found);
  }

  // Applies `changes` to the link `name` (RTM_NEWLINK/RTM_SETLINK).
  Status change(const std::string& name, rtnl_link* changes, std::string_view what) const {
    auto original = kernelLink(name, "rtnl_link_get_kernel");
    if (!original)
      return fail(std::move(original).error().wrap(fmt::format("set link \"{}\" {}", name, what)));
    nl_msg* message = nullptr;
    int built = rtnl_link_build_change_request(original->get(), changes, 0, &message);
    return sendRequest(socket.get(), built, message, fmt::format("rtnl_link_change[{}]", what),
                       quoted("link", name), where);
  }
};

Netlink::Netlink(std::unique_ptr<State> state) : state_(std::move(state)) {}
Netlink::Netlink(Netlink&&) noexcept = default;
Netlink& Netlink::operator=(Netlink&&) noexcept = default;
Netlink::~Netlink() = default;

const std::string& Netlink::netns() const {
  return state_->netns;
}

namespace {

// A route netlink socket in the calling thread's namespace; `where` names that namespace in errors.
Result<SocketPtr> connectRouteSocket(std::string_view where) {
  SocketPtr socket(nl_socket_alloc());
  if (!socket) return fail(internalError("nl_socket_alloc: out of memory"));
  int err = nl_connect(socket.get(), NETLINK_ROUTE);
  if (err < 0) return fail(internalError("nl_connect(NETLINK_ROUTE in {}): {}", where, nl_geterror(err)));
  // The kernel's reason in words along with the errno; an old kernel without it still gives the errno.
  int one = 1;
  ::setsockopt(nl_socket_get_fd(socket.get()), SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof(one));
  return socket;
}

}  // namespace

Result<Netlink> Netlink::open(const std::string& netns) {
  std::string where = whereText(netns);
  auto connect = [&] { return connectRouteSocket(where); };
  // A netlink socket stays in the namespace it was created in, whichever thread uses it later.
  auto socket = netns.empty() ? connect() : runInNetns(netns, connect);
  if (!socket) return fail(std::move(socket).error());
  auto state = std::make_unique<State>();
  state->netns = netns;
  state->where = std::move(where);
  state->socket = std::move(*socket);
  return Netlink(std::move(state));
}

Result<Netlink> Netlink::openIn(int netnsFd, const std::string& label) {
  auto socket = runInNetnsFd(netnsFd, label, [&] { return connectRouteSocket(label); });
  if (!socket) return fail(std::move(socket).error());
  auto state = std::make_unique<State>();
  state->netns = label;
  state->where = label;
  state->socket = std::move(*socket);
  return Netlink(std::move(state));
}

Status Netlink::createBridge(const std::string& name, const std::optional<std::string>& mac) {
  LinkPtr bridge(rtnl_link_bridge_alloc());
  if (!bridge) return fail(internalError("rtnl_link_bridge_alloc: out of memory"));
  rtnl_link_set_name(bridge.get(), name.c_str());
  if (mac) {
    auto address = parseMac(*mac);
    if (!address) return fail(std::move(address).error());
    rtnl_link_set_addr(bridge.get(), address->get());
  }
  nl_msg* message = nullptr;
  int built = rtnl_link_build_add_request(bridge.get(), NLM_F_CREATE | NLM_F_EXCL, &message);
  return sendRequest(state_->socket.get(), built, message, "rtnl_link_add", quoted("bridge", name),
                     state_->where);
}

Status Netlink::createVethPair(const std::string& name, const std::string& peer) {
  return createVethPair(name, peer, -1, {});
}

Status Netlink::createVethPair(const std::string& name, const std::string& peer, int peerNetnsFd,
                               const std::optional<std::string>& peerMac) {
  LinkPtr veth(rtnl_link_veth_alloc());
  if (!veth) return fail(internalError("rtnl_link_veth_alloc: out of memory"));
  rtnl_link_set_name(veth.get(), name.c_str());
  LinkPtr peerLink(rtnl_link_veth_get_peer(veth.get()));  // takes a reference
  rtnl_link_set_name(peerLink.get(), peer.c_str());
  if (peerNetnsFd >= 0) rtnl_link_set_ns_fd(peerLink.get(), peerNetnsFd);
  if (peerMac) {
    auto address = parseMac(*peerMac);
    if (!address) return fail(std::move(address).error());
    rtnl_link_set_addr(peerLink.get(), address->get());
  }
  nl_msg* message = nullptr;
  int built = rtnl_link_build_add_request(veth.get(), NLM_F_CREATE | NLM_F_EXCL, &message);
  return sendRequest(state_->socket.get(), built, message, "rtnl_link_add",
                     peerNetnsFd >= 0
                         ? fmt::format("veth \"{}\" (peer \"{}\" in netns fd {})", name, peer, peerNetnsFd)
                         : fmt::format("veth \"{}\" (peer \"{}\")", name, peer),
                     state_->where);
}

Status Netlink::moveToNetns(const std::string& link, int netnsFd, const std::optional<std::string>& newName) {
  LinkPtr changes(rtnl_link_alloc());
  if (!changes) return fail(internalError("rtnl_link_alloc: out of memory"));
  rtnl_link_set_ns_fd(changes.get(), netnsFd);
  if (newName) rtnl_link_set_name(changes.get(), newName->c_str());
  return state_->change(link, changes.get(),
                        newName ? fmt::format("netns fd {}, name \"{}\"", netnsFd, *newName)
                                : fmt::format("netns fd {}", netnsFd));
}

Status Netlink::setMaster(const std::string& link, const std::string& bridge) {
  auto master = state_->kernelLink(bridge, "rtnl_link_get_kernel");
  if (!master) return fail(std::move(master).error().wrap(fmt::format("set master of \"{}\"", link)));
  LinkPtr changes(rtnl_link_alloc());
  if (!changes) return fail(internalError("rtnl_link_alloc: out of memory"));
  rtnl_link_set_master(changes.get(), rtnl_link_get_ifindex(master->get()));
  return state_->change(link, changes.get(), fmt::format("master \"{}\"", bridge));
}

Status Netlink::setUp(const std::string& link) {
  LinkPtr changes(rtnl_link_alloc());
  if (!changes) return fail(internalError("rtnl_link_alloc: out of memory"));
  rtnl_link_set_flags(changes.get(), IFF_UP);
  return state_->change(link, changes.get(), "up");
}

Status Netlink::setMac(const std::string& link, const std::string& mac) {
  auto address = parseMac(mac);
  if (!address) return fail(std::move(address).error());
  LinkPtr changes(rtnl_link_alloc());
  if (!changes) return fail(internalError("rtnl_link_alloc: out of memory"));
  rtnl_link_set_addr(changes.get(), address->get());
  return state_->change(link, changes.get(), fmt::format("address {}", mac));
}

Status Netlink::setMtu(const std::string& link, unsigned mtu) {
  LinkPtr changes(rtnl_link_alloc());
  if (!changes) return fail(internalError("rtnl_link_alloc: out of memory"));
  rtnl_link_set_mtu(changes.get(), mtu);
  return state_->change(link, changes.get(), fmt::format("mtu {}", mtu));
}

Status Netlink::addAddress(const std::string& link, const std::string& cidrAddress) {
  auto parsed = parseCidrAddress(cidrAddress, "address");
  if (!parsed) return fail(std::move(parsed).error());
  auto local = ipv4NlAddr(parsed->address, parsed->prefix);
  if (!local) return fail(std::move(local).error());
  auto target = state_->kernelLink(link, "rtnl_link_get_kernel");
  if (!target) return fail(std::move(target).error().wrap(fmt::format("add address {}", cidrAddress)));
  AddrPtr address(rtnl_addr_alloc());
  if (!address) return fail(internalError("rtnl_addr_alloc: out of memory"));
  rtnl_addr_set_ifindex(address.get(), rtnl_link_get_ifindex(target->get()));
  if (int err = rtnl_addr_set_local(address.get(), local->get()); err < 0) {
    return fail(internalError("rtnl_addr_set_local({}): {}", cidrAddress, nl_geterror(err)));
  }
  // The broadcast address `ip addr add ... brd +` would set; keeps subnet broadcasts working.
  if (parsed->prefix < 31) {
    Cidr block = Cidr::containing(parsed->address, parsed->prefix);
    auto broadcast = ipv4NlAddr(block.broadcast(), 32);
    if (!broadcast) return fail(std::move(broadcast).error());
    rtnl_addr_set_broadcast(address.get(), broadcast->get());
  }
  nl_msg* message = nullptr;
  int built = rtnl_addr_build_add_request(address.get(), NLM_F_CREATE | NLM_F_EXCL, &message);
  return sendRequest(state_->socket.get(), built, message, "rtnl_addr_add",
                     fmt::format("{} on link \"{}\"", cidrAddress, link), state_->where);
}

Status Netlink::addDefaultRoute(const std::string& gateway) {
  auto parsedGateway = Ipv4Address::parse(gateway, "gateway");
  if (!parsedGateway) return fail(std::move(parsedGateway).error());
  auto via = ipv4NlAddr(*parsedGateway, 32);
  if (!via) return fail(std::move(via).error());
  auto anywhere = ipv4NlAddr(Ipv4Address(0), 0);
  if (!anywhere) return fail(std::move(anywhere).error());
  RoutePtr route(rtnl_route_alloc());
  if (!route) return fail(internalError("rtnl_route_alloc: out of memory"));
  rtnl_route_set_family(route.get(), AF_INET);
  rtnl_route_set_table(route.get(), RT_TABLE_MAIN);
  rtnl_route_set_scope(route.get(), RT_SCOPE_UNIVERSE);
  rtnl_route_set_protocol(route.get(), RTPROT_STATIC);
  rtnl_route_set_type(route.get(), RTN_UNICAST);
  if (int err = rtnl_route_set_dst(route.get(), anywhere->get()); err < 0) {
    return fail(internalError("rtnl_route_set_dst(0.0.0.0/0): {}", nl_geterror(err)));
  }
  rtnl_nexthop* nexthop = rtnl_route_nh_alloc();
  if (nexthop == nullptr) return fail(internalError("rtnl_route_nh_alloc: out of memory"));
  rtnl_route_nh_set_gateway(nexthop, via->get());
  rtnl_route_add_nexthop(route.get(), nexthop);  // the route owns it from here
  nl_msg* message = nullptr;
  int built = rtnl_route_build_add_request(route.get(), NLM_F_CREATE | NLM_F_EXCL, &message);
  return sendRequest(state_->socket.get(), built, message, "rtnl_route_add",
                     fmt::format("default route via {}", gateway), state_->where);
}

Status Netlink::deleteAddress(const std::string& link, const std::string& cidrAddress) {
  auto parsed = parseCidrAddress(cidrAddress, "address");
  if (!parsed) return fail(std::move(parsed).error());
  auto local = ipv4NlAddr(parsed->address, parsed->prefix);
  if (!local) return fail(std::move(local).error());
  auto target = state_->kernelLink(link, "rtnl_link_get_kernel");
  if (!target) return fail(std::move(target).error().wrap(fmt::format("delete address {}", cidrAddress)));
  AddrPtr address(rtnl_addr_alloc());
  if (!address) return fail(internalError("rtnl_addr_alloc: out of memory"));
  rtnl_addr_set_ifindex(address.get(), rtnl_link_get_ifindex(target->get()));
  if (int err = rtnl_addr_set_local(address.get(), local->get()); err < 0) {
    return fail(internalError("rtnl_addr_set_local({}): {}", cidrAddress, nl_geterror(err)));
  }
  nl_msg* message = nullptr;
  int built = rtnl_addr_build_delete_request(address.get(), 0, &message);
  // EADDRNOTAVAIL: the link does not have that address.
  return sendRequest(state_->socket.get(), built, message, "rtnl_addr_delete",
                     fmt::format("{} on link \"{}\"", cidrAddress, link), state_->where, {EADDRNOTAVAIL});
}

Status Netlink::addRoute(const RouteEntry& route) {
  std::string what = routeText(route);
  auto destination = Cidr::parse(route.destination, "destination");
  if (!destination) return fail(std::move(destination).error());
  if (route.blackhole && (route.gateway || route.device)) {
    return fail(invalidField("gateway", "{}: a blackhole route has neither gateway nor device", what));
  }
  if (!route.blackhole && !route.gateway && !route.device) {
    return fail(invalidField("gateway", "{}: a route needs a gateway, a device or both", what));
  }
  auto dst = ipv4NlAddr(destination->network(), destination->prefix());
  if (!dst) return fail(std::move(dst).error());

  RoutePtr request(rtnl_route_alloc());
  if (!request) return fail(internalError("rtnl_route_alloc: out of memory"));
  rtnl_route_set_family(request.get(), AF_INET);
  rtnl_route_set_table(request.get(), route.table);
  rtnl_route_set_protocol(request.get(), RTPROT_STATIC);
  if (int err = rtnl_route_set_dst(request.get(), dst->get()); err < 0) {
    return fail(internalError("rtnl_route_set_dst({}): {}", route.destination, nl_geterror(err)));
  }
  if (route.blackhole) {
    rtnl_route_set_type(request.get(), RTN_BLACKHOLE);
    rtnl_route_set_scope(request.get(), RT_SCOPE_UNIVERSE);
  } else {
    rtnl_route_set_type(request.get(), RTN_UNICAST);
    // As `ip route` does: a route through a gateway reaches beyond the link, one without stays on it.
    rtnl_route_set_scope(request.get(), route.gateway ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK);
    rtnl_nexthop* nexthop = rtnl_route_nh_alloc();
    if (nexthop == nullptr) return fail(internalError("rtnl_route_nh_alloc: out of memory"));
    rtnl_route_add_nexthop(request.get(), nexthop);  // the route owns it from here
    if (route.gateway) {
      auto gateway = Ipv4Address::parse(*route.gateway, "gateway");
      if (!gateway) return fail(std::move(gateway).error());
      auto via = ipv4NlAddr(*gateway, 32);
      if (!via) return fail(std::move(via).error());
      rtnl_route_nh_set_gateway(nexthop, via->get());
    }
    if (route.device) {
      auto device = state_->kernelLink(*route.device, "rtnl_link_get_kernel");
      if (!device) return fail(std::move(device).error().wrap(fmt::format("add {}", what)));
      rtnl_route_nh_set_ifindex(nexthop, rtnl_link_get_ifindex(device->get()));
    }
  }
  // NLM_F_REPLACE (libnl adds NLM_F_CREATE): a route with the same table and destination is replaced.
  nl_msg* message = nullptr;
  int built = rtnl_route_build_add_request(request.get(), NLM_F_CREATE | NLM_F_REPLACE, &message);
  return sendRequest(state_->socket.get(), built, message, "rtnl_route_add", what, state_->where);
}

Status Netlink::deleteRoute(const RouteEntry& route) {
  auto destination = Cidr::parse(route.destination, "destination");
  if (!destination) return fail(std::move(destination).error());
  auto existing = dumpRoutes(state_->socket.get(), state_->where);
  if (!existing) return fail(std::move(existing).error().wrap(fmt::format("delete {}", routeText(route))));
  // The kernel's own objects are deleted, so that type, scope and protocol match whatever they are.
  for (const RoutePtr& kernelRoute : *existing) {
    rtnl_route* candidate = kernelRoute.get();
    if (rtnl_route_get_family(candidate) != AF_INET || rtnl_route_get_table(candidate) != route.table)
      continue;
    if (routeDestination(candidate) != *destination) continue;
    nl_msg* message = nullptr;
    int built = rtnl_route_build_del_request(candidate, 0, &message);
    auto deleted = sendRequest(state_->socket.get(), built, message, "rtnl_route_delete", routeText(route),
                               state_->where, {ESRCH});
    if (!deleted) return deleted;
  }
  return {};
}

Result<std::vector<RouteEntry>> Netlink::routes(uint32_t table) {
  // A route's device by index, each asked of the kernel once: routes go through the few bridges and
  // gateway links, so this does not dump the (many) ports.
  std::map<int, std::optional<std::string>> deviceNames;
  auto deviceName = [&](int index) -> std::optional<std::string> {
    auto [it, fresh] = deviceNames.try_emplace(index);
    if (fresh) {
      rtnl_link* raw = nullptr;
      if (rtnl_link_get_kernel(state_->socket.get(), index, nullptr, &raw) >= 0) {
        LinkPtr device(raw);
        if (const char* name = rtnl_link_get_name(device.get())) it->second = name;
      }
    }
    return it->second;
  };
  auto all = dumpRoutes(state_->socket.get(), state_->where);
  if (!all) return fail(std::move(all).error().wrap(fmt::format("routes of table {}", table)));

  std::vector<std::pair<Cidr, RouteEntry>> found;
  for (const RoutePtr& kernelRoute : *all) {
    rtnl_route* route = kernelRoute.get();
    if (rtnl_route_get_family(route) != AF_INET) continue;
    const uint32_t routeTable = rtnl_route_get_table(route);
    // The kernel's own local and default tables are never ours to show or change.
    if (table == 0 ? (routeTable == RT_TABLE_LOCAL || routeTable == RT_TABLE_DEFAULT) : routeTable != table)
      continue;
    uint8_t type = rtnl_route_get_type(route);
    if (type != RTN_UNICAST && type != RTN_BLACKHOLE) continue;
    Cidr destination = routeDestination(route);
    RouteEntry entry;
    entry.destination = destination.str();
    entry.table = routeTable;
    entry.blackhole = type == RTN_BLACKHOLE;
    // Multipath routes are not made by corral; the first hop stands for them.
    if (rtnl_nexthop* nexthop = rtnl_route_nexthop_n(route, 0); nexthop != nullptr && !entry.blackhole) {
      entry.gateway = ipv4Text(rtnl_route_nh_get_gateway(nexthop));
      if (int index = rtnl_route_nh_get_ifindex(nexthop); index > 0) entry.device = deviceName(index);
    }
    found.emplace_back(destination, std::move(entry));
  }
  std::sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return std::tie(a.second.table, a.first) < std::tie(b.second.table, b.first);
  });
  std::vector<RouteEntry> result;
  result.reserve(found.size());
  for (auto& [destination, entry] : found) result.push_back(std::move(entry));
  return result;
}

Status Netlink::addRule(const RuleEntry& rule) {
  std::string what = ruleText(rule);
  auto request = ruleRequest(rule);
  if (!request) return fail(std::move(request).error());
  // NLM_F_EXCL: without it the kernel would add an identical rule a second time.
  nl_msg* message = nullptr;
  int built = rtnl_rule_build_add_request(request->get(), NLM_F_CREATE | NLM_F_EXCL, &message);
  return sendRequest(state_->socket.get(), built, message, "rtnl_rule_add", what, state_->where, {EEXIST});
}

Status Netlink::deleteRule(const RuleEntry& rule) {
  std::string what = ruleText(rule);
  auto request = ruleRequest(rule);
  if (!request) return fail(std::move(request).error());
  // The kernel matches a delete loosely (an absent `from` matches any), so only an identical rule goes.
  auto existing = rules();
  if (!existing) return fail(std::move(existing).error().wrap(fmt::format("delete {}", what)));
  if (std::find(existing->begin(), existing->end(), rule) == existing->end()) return {};
  nl_msg* message = nullptr;
  int built = rtnl_rule_build_delete_request(request->get(), 0, &message);
  return sendRequest(state_->socket.get(), built, message, "rtnl_rule_delete", what, state_->where, {ENOENT});
}

Result<std::vector<RuleEntry>> Netlink::rules() {
  nl_cache* rawRules = nullptr;
  if (int err = rtnl_rule_alloc_cache(state_->socket.get(), AF_INET, &rawRules); err < 0) {
    return fail(nlError(err, "rtnl_rule_alloc_cache", "rules", state_->where));
  }
  CachePtr ruleCache(rawRules);
  std::vector<RuleEntry> result;
  for (nl_object* object = nl_cache_get_first(ruleCache.get()); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* rule = reinterpret_cast<rtnl_rule*>(object);
    // RuleEntry describes table lookups only; blackhole/goto/nop rules are not corral's.
    if (rtnl_rule_get_family(rule) != AF_INET || rtnl_rule_get_action(rule) != FR_ACT_TO_TBL) continue;
    RuleEntry entry;
    entry.priority = rtnl_rule_get_prio(rule);
    entry.table = rtnl_rule_get_table(rule);
    entry.from = prefixText(rtnl_rule_get_src(rule));
    entry.to = prefixText(rtnl_rule_get_dst(rule));
    result.push_back(std::move(entry));
  }
  std::sort(result.begin(), result.end());
  return result;
}

Status Netlink::deleteLink(const std::string& name) {
  LinkPtr link(rtnl_link_alloc());
  if (!link) return fail(internalError("rtnl_link_alloc: out of memory"));
  rtnl_link_set_name(link.get(), name.c_str());
  nl_msg* message = nullptr;
  int built = rtnl_link_build_delete_request(link.get(), &message);
  return sendRequest(state_->socket.get(), built, message, "rtnl_link_delete", quoted("link", name),
                     state_->where, {ENODEV});
}

Result<std::vector<LinkInfo>> Netlink::links() {
  nl_cache* rawLinks = nullptr;
  if (int err = rtnl_link_alloc_cache(state_->socket.get(), AF_UNSPEC, &rawLinks); err < 0) {
    return fail(nlError(err, "rtnl_link_alloc_cache", "links", state_->where));
  }
  CachePtr linkCache(rawLinks);
  nl_cache* rawAddrs = nullptr;
  if (int err = rtnl_addr_alloc_cache(state_->socket.get(), &rawAddrs); err < 0) {
    return fail(nlError(err, "rtnl_addr_alloc_cache", "addresses", state_->where));
  }
  CachePtr addrCache(rawAddrs);

  std::vector<LinkInfo> result;
  for (nl_object* object = nl_cache_get_first(linkCache.get()); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* link = reinterpret_cast<rtnl_link*>(object);
    LinkInfo info;
    info.name = rtnl_link_get_name(link) ? rtnl_link_get_name(link) : "";
    info.index = rtnl_link_get_ifindex(link);
    const char* kind = rtnl_link_get_type(link);
    info.kind = kind ? kind : "";
    info.up = (rtnl_link_get_flags(link) & IFF_UP) != 0;
    info.running = (rtnl_link_get_flags(link) & IFF_RUNNING) != 0;
    info.mac = macText(rtnl_link_get_addr(link));
    if (int master = rtnl_link_get_master(link); master > 0) {
      char name[IFNAMSIZ + 1] = {};
      if (rtnl_link_i2name(linkCache.get(), master, name, sizeof(name)) != nullptr) info.master = name;
    }
    result.push_back(std::move(info));
  }
  for (nl_object* object = nl_cache_get_first(addrCache.get()); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* address = reinterpret_cast<rtnl_addr*>(object);
    auto text = addressText(address);
    if (!text) continue;
    int index = rtnl_addr_get_ifindex(address);
    auto owner =
        std::find_if(result.begin(), result.end(), [&](const LinkInfo& l) { return l.index == index; });
    if (owner != result.end()) owner->addresses.push_back(std::move(*text));
  }
  std::sort(result.begin(), result.end(),
            [](const LinkInfo& a, const LinkInfo& b) { return a.index < b.index; });
  return result;
}

Result<std::optional<LinkInfo>> Netlink::link(const std::string& name) {
  // The kernel looks the name up itself (RTM_GETLINK with IFLA_IFNAME): no dump of every link, whose cost
  // grows with the ports of a VPC's namespace (500 instances: 500 veths).
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return fail(invalidField("link", "\"{}\" is not a link name (1 to {} characters)", name, IFNAMSIZ - 1));
  }
  rtnl_link* raw = nullptr;
  if (int err = rtnl_link_get_kernel(state_->socket.get(), 0, name.c_str(), &raw); err < 0) {
    const int code = err < 0 ? -err : err;
    if (code == NLE_NODEV || code == NLE_OBJ_NOTFOUND) return std::optional<LinkInfo>();
    return fail(nlError(err, "rtnl_link_get_kernel", quoted("link", name), state_->where));
  }
  LinkPtr found(raw);
  LinkInfo info;
  info.name = rtnl_link_get_name(found.get()) ? rtnl_link_get_name(found.get()) : name;
  info.index = rtnl_link_get_ifindex(found.get());
  const char* kind = rtnl_link_get_type(found.get());
  info.kind = kind ? kind : "";
  info.up = (rtnl_link_get_flags(found.get()) & IFF_UP) != 0;
  info.running = (rtnl_link_get_flags(found.get()) & IFF_RUNNING) != 0;
  info.mac = macText(rtnl_link_get_addr(found.get()));
  if (int master = rtnl_link_get_master(found.get()); master > 0) {
    rtnl_link* rawMaster = nullptr;
    if (int err = rtnl_link_get_kernel(state_->socket.get(), master, nullptr, &rawMaster); err < 0) {
      return fail(nlError(err, "rtnl_link_get_kernel",
                          fmt::format("master (index {}) of link \"{}\"", master, name), state_->where));
    }
    LinkPtr masterLink(rawMaster);
    if (const char* masterName = rtnl_link_get_name(masterLink.get())) info.master = masterName;
  }
  // Addresses: a namespace's addresses are its router's and gateways' (an instance's own live in the
  // instance's namespace), so their dump does not grow with the ports.
  nl_cache* rawAddrs = nullptr;
  if (int err = rtnl_addr_alloc_cache(state_->socket.get(), &rawAddrs); err < 0) {
    return fail(nlError(err, "rtnl_addr_alloc_cache", "addresses", state_->where));
  }
  CachePtr addrCache(rawAddrs);
  for (nl_object* object = nl_cache_get_first(addrCache.get()); object != nullptr;
       object = nl_cache_get_next(object)) {
    auto* address = reinterpret_cast<rtnl_addr*>(object);
    if (rtnl_addr_get_ifindex(address) != info.index) continue;
    if (auto text = addressText(address)) info.addresses.push_back(std::move(*text));
  }
  return std::optional<LinkInfo>(std::move(info));
}

}  // namespace corral::net
