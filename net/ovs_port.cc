// An instance's NIC as an internal port of br-int (net/ovs_port.h): the Open_vSwitch database's rows
// through net/ovsdb, then the Linux side through net/netlink.
#include "net/ovs_port.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <thread>
#include <utility>

#include "core/unique_fd.h"
#include "net/netlink.h"
#include "net/netns.h"

namespace corral::net {
namespace {

using ovsdb::Json;

constexpr size_t kMaxLinkName = 15;  // IFNAMSIZ - 1
constexpr std::chrono::milliseconds kPollInterval{20};

Status checkOvsName(std::string_view field, std::string_view name) {
  if (name.empty() || name.size() > kMaxLinkName) {
    return fail(invalidField(std::string(field), "\"{}\" must have 1-{} characters (a Linux link's name)",
                             name, kMaxLinkName));
  }
  auto bad = std::find_if(name.begin(), name.end(), [](char c) {
    return c == '/' || c == ':' || static_cast<unsigned char>(c) <= ' ' || c == 0x7f;
  });
  if (bad != name.end()) {
    return fail(
        invalidField(std::string(field), "\"{}\" holds '{}', which a Linux link's name cannot", name, *bad));
  }
  return {};
}

Json stringMap(const std::map<std::string, std::string>& values) {
  std::vector<std::pair<Json, Json>> pairs;
  for (const auto& [key, value] : values) pairs.emplace_back(key, value);
  return ovsdb::map(std::move(pairs));
}

Result<std::map<std::string, std::string>> decodeStringMap(const Json& value) {
  auto pairs = ovsdb::decodeMap(value);
  if (!pairs) return fail(std::move(pairs).error());
  std::map<std::string, std::string> result;
  for (const auto& [key, item] : *pairs) {
    if (!key.is_string() || !item.is_string())
      return fail(internalError("ovsdb: a string map holds {}", value.dump()));
    result[key.get<std::string>()] = item.get<std::string>();
  }
  return result;
}

// An optional column ("min": 0, "max": 1) is an empty set when absent, else the value itself.
std::optional<Json> optionalValue(const Json& value) {
  if (value.is_array() && value.size() == 2 && value[0] == "set" && value[1].is_array() && value[1].empty())
    return std::nullopt;
  return value;
}

Result<std::vector<Json>> selectRows(ovsdb::OvsdbClient& db, std::string_view table, ovsdb::Where where,
                                     std::vector<std::string> columns) {
  auto results =
      db.transact(kOpenVswitchDatabase, {ovsdb::selectOp(table, std::move(where), std::move(columns))});
  if (!results) return fail(std::move(results).error());
  const Json& rows = results->at(0)["rows"];
  if (!rows.is_array())
    return fail(internalError("ovsdb: select from {} returned {}", table, results->at(0).dump()));
  return std::vector<Json>(rows.begin(), rows.end());
}

struct InterfaceRow {
  std::optional<int64_t> ofport;
  std::string error;
  std::map<std::string, std::string> externalIds;
};

// An Interface row's ofport, error and external_ids.
Result<InterfaceRow> decodeInterface(const Json& row) {
  InterfaceRow result;
  if (auto ofport = optionalValue(row["ofport"]); ofport && ofport->is_number_integer())
    result.ofport = ofport->get<int64_t>();
  if (auto error = optionalValue(row["error"]); error && error->is_string())
    result.error = error->get<std::string>();
  auto ids = decodeStringMap(row["external_ids"]);
  if (!ids) return fail(std::move(ids).error());
  result.externalIds = std::move(*ids);
  return result;
}

const std::vector<std::string> kInterfaceColumns = {"name", "ofport", "error", "external_ids"};

Result<std::optional<InterfaceRow>> readInterface(ovsdb::OvsdbClient& db, std::string_view name) {
  auto rows = selectRows(db, "Interface", {ovsdb::condition("name", "==", name)}, kInterfaceColumns);
  if (!rows) return fail(std::move(rows).error());
  if (rows->empty()) return std::optional<InterfaceRow>();
  auto decoded = decodeInterface(rows->front());
  if (!decoded) return fail(std::move(decoded).error());
  return std::optional<InterfaceRow>(std::move(*decoded));
}

}  // namespace

Result<std::vector<Json>> addOvsPortOperations(const OvsPort& port) {
  if (port.bridge.empty()) return fail(invalidField("bridge", "must name the integration bridge (br-int)"));
  if (auto s = checkOvsName("name", port.name); !s) return fail(std::move(s).error());
  if (port.ifaceId.empty()) return fail(invalidField("iface_id", "must name the logical switch port"));
  std::map<std::string, std::string> ids = port.externalIds;
  ids["iface-id"] = port.ifaceId;
  return std::vector<Json>{
      // All or nothing: the bridge is there and no port has the name (a wait that does not hold at once
      // fails the transaction).
      ovsdb::waitOp("Bridge", {ovsdb::condition("name", "==", port.bridge)}, {"name"},
                    "==", {Json{{"name", port.bridge}}}, 0),
      ovsdb::waitOp("Port", {ovsdb::condition("name", "==", port.name)}, {"name"}, "==", {}, 0),
      ovsdb::insertOp("Interface",
                      {{"name", port.name}, {"type", port.type}, {"external_ids", stringMap(ids)}}, "iface"),
      ovsdb::insertOp("Port", {{"name", port.name}, {"interfaces", ovsdb::namedUuid("iface")}}, "port"),
      ovsdb::mutateOp("Bridge", {ovsdb::condition("name", "==", port.bridge)},
                      {ovsdb::mutation("ports", "insert", ovsdb::set({ovsdb::namedUuid("port")}))}),
  };
}

Status addOvsPort(ovsdb::OvsdbClient& db, const OvsPort& port, std::chrono::milliseconds timeout) {
  const std::string context =
      fmt::format("add port \"{}\" to {} (iface-id {})", port.name, port.bridge, port.ifaceId);
  auto operations = addOvsPortOperations(port);
  if (!operations) return fail(std::move(operations).error());
  // The clear errors first; the transaction's waits keep it right if another writer comes in between.
  auto bridges = selectRows(db, "Bridge", {ovsdb::condition("name", "==", port.bridge)}, {"name"});
  if (!bridges) return fail(std::move(bridges).error().wrap(context));
  if (bridges->empty())
    return fail(notFound("{}: no bridge \"{}\" in the Open_vSwitch database", context, port.bridge));
  auto ports = selectRows(db, "Port", {ovsdb::condition("name", "==", port.name)}, {"name"});
  if (!ports) return fail(std::move(ports).error().wrap(context));
  if (!ports->empty()) return fail(conflict("{}: a port of that name is already there", context));
  if (auto done = db.transact(kOpenVswitchDatabase, *operations); !done)
    return fail(std::move(done).error().wrap(context));

  for (auto until = std::chrono::steady_clock::now() + timeout;;) {
    auto row = readInterface(db, port.name);
    if (!row) return fail(std::move(row).error().wrap(context));
    if (*row && (*row)->ofport && *(*row)->ofport > 0) return {};
    if (*row && !(*row)->error.empty())
      return fail(internalError("{}: ovs-vswitchd could not make it: {}", context, (*row)->error));
    if (std::chrono::steady_clock::now() >= until) {
      return fail(unavailable("{}: ovs-vswitchd made no port within {} ms (is it running on this host?)",
                              context, timeout.count()));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

Status removeOvsPort(ovsdb::OvsdbClient& db, std::string_view bridge, std::string_view name) {
  const std::string context = fmt::format("remove port \"{}\" from {}", name, bridge);
  auto ports = selectRows(db, "Port", {ovsdb::condition("name", "==", name)}, {"_uuid"});
  if (!ports) return fail(std::move(ports).error().wrap(context));
  if (ports->empty()) return {};
  auto uuid = ovsdb::decodeUuid(ports->front()["_uuid"]);
  if (!uuid) return fail(std::move(uuid).error().wrap(context));
  // Dropping the bridge's reference is enough: Port and Interface are not root tables, so OVSDB deletes
  // rows nothing refers to any more.
  auto done =
      db.transact(kOpenVswitchDatabase,
                  {ovsdb::mutateOp("Bridge", {ovsdb::condition("name", "==", bridge)},
                                   {ovsdb::mutation("ports", "delete", ovsdb::set({ovsdb::uuid(*uuid)}))})});
  if (!done) return fail(std::move(done).error().wrap(context));
  return {};
}

Result<std::vector<OvsPortState>> listOvsPorts(ovsdb::OvsdbClient& db, std::string_view bridge) {
  const std::string context = fmt::format("list ports of {}", bridge);
  // One read: the bridge's ports, every Port's name and every Interface (a port and its interface share
  // their name here, as ovs-vsctl add-port makes them).
  auto results = db.transact(
      kOpenVswitchDatabase,
      {ovsdb::selectOp("Bridge", {ovsdb::condition("name", "==", bridge)}, {"ports"}),
       ovsdb::selectOp("Port", {}, {"_uuid", "name"}), ovsdb::selectOp("Interface", {}, kInterfaceColumns)});
  if (!results) return fail(std::move(results).error().wrap(context));
  auto rowsOf = [&](size_t i) { return results->at(i).value("rows", Json::array()); };
  const Json bridges = rowsOf(0);
  if (bridges.empty())
    return fail(notFound("{}: no bridge \"{}\" in the Open_vSwitch database", context, bridge));
  auto portSet = ovsdb::decodeSet(bridges.front()["ports"]);
  if (!portSet) return fail(std::move(portSet).error().wrap(context));
  std::map<std::string, std::string> portNames;  // uuid -> name
  for (const Json& row : rowsOf(1)) {
    auto uuid = ovsdb::decodeUuid(row["_uuid"]);
    if (uuid && row["name"].is_string()) portNames[*uuid] = row["name"].get<std::string>();
  }
  std::map<std::string, Json> interfaces;  // name -> row
  for (const Json& row : rowsOf(2)) {
    if (row["name"].is_string()) interfaces[row["name"].get<std::string>()] = row;
  }
  std::vector<OvsPortState> result;
  for (const Json& portRef : *portSet) {
    auto uuid = ovsdb::decodeUuid(portRef);
    if (!uuid) return fail(std::move(uuid).error().wrap(context));
    auto name = portNames.find(*uuid);
    if (name == portNames.end()) continue;
    OvsPortState state;
    state.name = name->second;
    if (auto row = interfaces.find(state.name); row != interfaces.end()) {
      auto iface = decodeInterface(row->second);
      if (!iface) return fail(std::move(iface).error().wrap(context));
      state.ofport = iface->ofport;
      state.error = iface->error;
      state.externalIds = std::move(iface->externalIds);
      if (auto it = state.externalIds.find("iface-id"); it != state.externalIds.end())
        state.ifaceId = it->second;
    }
    result.push_back(std::move(state));
  }
  std::sort(result.begin(), result.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  return result;
}

Status readyTapForOvs(const std::string& tap, const std::string& tapNetnsPath, const std::string& ovsNetns,
                      unsigned mtu) {
  const std::string ovsWhere = ovsNetns.empty() ? "corrald's namespace" : "namespace " + ovsNetns;
  const std::string context = fmt::format("tap \"{}\" into ovs-vswitchd's ({})", tap, ovsWhere);
  auto wrapped = [&](Error error) { return fail(std::move(error).wrap(context)); };
  if (auto s = checkOvsName("name", tap); !s) return fail(std::move(s).error());
  UniqueFd source(::open(tapNetnsPath.c_str(), O_RDONLY | O_CLOEXEC));
  if (!source) return wrapped(systemError(errno, fmt::format("open(\"{}\")", tapNetnsPath)));
  Result<UniqueFd> target = [&]() -> Result<UniqueFd> {
    if (!ovsNetns.empty()) return openNetns(ovsNetns);
    UniqueFd own(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC));
    if (!own) return fail(systemError(errno, "open(\"/proc/self/ns/net\")"));
    return own;
  }();
  if (!target) return wrapped(std::move(target).error());
  struct stat from {};
  struct stat to {};
  if (::fstat(source.get(), &from) != 0 || ::fstat(target->get(), &to) != 0)
    return wrapped(systemError(errno, "fstat(a network namespace)"));
  if (from.st_dev != to.st_dev || from.st_ino != to.st_ino) {
    auto qemuSide = Netlink::openIn(source.get(), tapNetnsPath);
    if (!qemuSide) return wrapped(std::move(qemuSide).error());
    auto found = qemuSide->link(tap);
    if (!found) return wrapped(std::move(found).error());
    // Not there: moved by an earlier attach (a restarted corrald), looked for below.
    if (*found) {
      if (auto s = qemuSide->moveToNetns(tap, target->get()); !s) return wrapped(std::move(s).error());
    }
  }
  auto ovs = Netlink::openIn(target->get(), ovsWhere);
  if (!ovs) return wrapped(std::move(ovs).error());
  auto there = ovs->link(tap);
  if (!there) return wrapped(std::move(there).error());
  if (!*there) {
    return wrapped(notFound("no tap \"{}\" in QEMU's namespace ({}) nor in ovs-vswitchd's: did QEMU open it?",
                            tap, tapNetnsPath));
  }
  if (mtu != 0) {
    if (auto s = ovs->setMtu(tap, mtu); !s) return wrapped(std::move(s).error());
  }
  if (auto s = ovs->setUp(tap); !s) return wrapped(std::move(s).error());
  return {};
}

Status plugOvsPort(const std::string& port, const OvsPlug& plug, std::chrono::milliseconds timeout) {
  const std::string context = fmt::format("plug port \"{}\" into {} as {}", port, plug.label, plug.ifname);
  auto wrapped = [&](Error error) { return fail(std::move(error).wrap(context)); };
  if (auto s = checkOvsName("ifname", plug.ifname); !s) return fail(std::move(s).error());
  auto host = Netlink::open(plug.hostNetns);
  if (!host) return wrapped(std::move(host).error());
  for (auto until = std::chrono::steady_clock::now() + timeout;;) {
    auto link = host->link(port);
    if (!link) return wrapped(std::move(link).error());
    if (*link) break;
    if (std::chrono::steady_clock::now() >= until) {
      return wrapped(unavailable("ovs-vswitchd made no link \"{}\" in {} within {} ms", port,
                                 plug.hostNetns.empty() ? "this namespace" : "namespace " + plug.hostNetns,
                                 timeout.count()));
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  if (auto s = host->moveToNetns(port, plug.targetNetnsFd, plug.ifname); !s)
    return wrapped(std::move(s).error());
  auto inside = Netlink::openIn(plug.targetNetnsFd, plug.label);
  if (!inside) return wrapped(std::move(inside).error());
  if (auto s = inside->setMac(plug.ifname, plug.mac); !s) return wrapped(std::move(s).error());
  if (auto s = inside->setMtu(plug.ifname, plug.mtu); !s) return wrapped(std::move(s).error());
  if (auto s = inside->addAddress(plug.ifname, plug.addressWithPrefix); !s)
    return wrapped(std::move(s).error());
  if (auto s = inside->setUp(plug.ifname); !s) return wrapped(std::move(s).error());
  if (auto s = inside->setUp("lo"); !s) return wrapped(std::move(s).error());
  if (plug.gateway) {
    if (auto s = inside->addDefaultRoute(*plug.gateway); !s) return wrapped(std::move(s).error());
  }
  return {};
}

}  // namespace corral::net
