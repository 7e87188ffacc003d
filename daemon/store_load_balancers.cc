// The load_balancers and target_groups tables: each object one JSON document (lb/codec.h).
#include <fmt/format.h>

#include <string>
#include <utility>

#include "daemon/store.h"
#include "daemon/store_sqlite.h"
#include "lb/codec.h"

namespace corral::daemon {

using namespace sql;

namespace {

Result<nlohmann::json> parseDocument(const RowReader& r, const std::string& text) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    return fail(r.bad("document", "is not JSON: {}", e.what()));
  }
}

}  // namespace

Result<lb::Balancers> Store::loadBalancers() const {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) {
    return fail(std::move(error).wrap(fmt::format("store \"{}\": load balancers", path_)));
  };
  auto transaction = Transaction::beginRead(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  lb::Balancers balancers;
  auto readGroup = [&](sqlite3_stmt* statement) -> Status {
    RowReader r(statement, "target_groups", keyColumn(statement, 0));
    std::string text;
    CORRAL_READ(text, r.text(1, "document"));
    auto json = parseDocument(r, text);
    if (!json) return fail(std::move(json.error()));
    auto group = lb::targetGroupFromJson(*json);
    if (!group) return fail(r.bad("document", "{}", group.error().message()));
    balancers.insert(std::move(*group));
    return {};
  };
  auto readBalancer = [&](sqlite3_stmt* statement) -> Status {
    RowReader r(statement, "load_balancers", keyColumn(statement, 0));
    std::string text;
    CORRAL_READ(text, r.text(1, "document"));
    auto json = parseDocument(r, text);
    if (!json) return fail(std::move(json.error()));
    auto balancer = lb::loadBalancerFromJson(*json);
    if (!balancer) return fail(r.bad("document", "{}", balancer.error().message()));
    balancers.insert(std::move(*balancer));
    return {};
  };
  if (auto status =
          forEachRow(db_.get(), "SELECT name, document FROM target_groups ORDER BY name", readGroup);
      !status)
    return wrap(std::move(status.error()));
  if (auto status =
          forEachRow(db_.get(), "SELECT name, document FROM load_balancers ORDER BY name", readBalancer);
      !status)
    return wrap(std::move(status.error()));
  if (auto committed = transaction->commit(); !committed) return wrap(std::move(committed.error()));
  return balancers;
}

Status Store::apply(const lb::Balancers& after, const lb::Changes& changes) {
  std::lock_guard lock(*mutex_);
  auto wrap = [&](Error error) { return fail(std::move(error).wrap(fmt::format("store \"{}\"", path_))); };
  auto transaction = Transaction::beginImmediate(db_.get());
  if (!transaction) return wrap(std::move(transaction.error()));
  auto upsert = [&](std::string_view table, const std::string& name, const std::string& vpc,
                    const nlohmann::json& document) {
    return runBound(db_.get(),
                    fmt::format("INSERT OR REPLACE INTO {} (name, vpc, document) VALUES (?, ?, ?)", table),
                    [&](Binder& b) { b.text(name).text(vpc).text(document.dump()); });
  };
  auto remove = [&](std::string_view table, const std::string& name) {
    return runBound(db_.get(), fmt::format("DELETE FROM {} WHERE name = ?", table),
                    [&](Binder& b) { b.text(name); });
  };
  for (const auto& name : changes.upsertedTargetGroups) {
    const auto* group = after.findTargetGroup(name);
    if (group == nullptr) return wrap(internalError("write target group \"{}\": not in the model", name));
    if (auto status = upsert("target_groups", name, group->vpc, lb::toJson(*group)); !status)
      return wrap(std::move(status.error()).wrap(fmt::format("write target group \"{}\"", name)));
  }
  for (const auto& name : changes.upsertedLoadBalancers) {
    const auto* balancer = after.findLoadBalancer(name);
    if (balancer == nullptr) return wrap(internalError("write load balancer \"{}\": not in the model", name));
    if (auto status = upsert("load_balancers", name, balancer->vpc, lb::toJson(*balancer)); !status)
      return wrap(std::move(status.error()).wrap(fmt::format("write load balancer \"{}\"", name)));
  }
  for (const auto& name : changes.deletedTargetGroups) {
    if (auto status = remove("target_groups", name); !status)
      return wrap(std::move(status.error()).wrap(fmt::format("delete target group \"{}\"", name)));
  }
  for (const auto& name : changes.deletedLoadBalancers) {
    if (auto status = remove("load_balancers", name); !status)
      return wrap(std::move(status.error()).wrap(fmt::format("delete load balancer \"{}\"", name)));
  }
  if (auto status = transaction->commit(); !status) return wrap(std::move(status.error()));
  return {};
}

}  // namespace corral::daemon
