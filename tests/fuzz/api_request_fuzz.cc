// libFuzzer target: the API's request decoding (api::parseRequest), then the model's validation of the
// network requests it yields, as corrald runs them. Input: "METHOD TARGET\n" then the body.
// Checks, beyond the sanitizers: a refusal is never an internal error (bad input is the caller's mistake,
// named by field), and whatever parses renders back to HTTP that parses to the same rendering.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <type_traits>
#include <variant>

#include "api/api.h"
#include "daemon/network_json.h"
#include "net/vpc.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace corral;

// One VPC with one object of each kind, so requests naming them reach the model's deeper checks.
net::Topology startingTopology() {
  net::Topology topology;
  FUZZ_CHECK(topology.createVpc({.name = "v", .cidr = "10.0.0.0/16"}, 1));
  FUZZ_CHECK(topology.createSubnet({.name = "s", .vpc = "v", .cidr = "10.0.1.0/24"}, 1));
  FUZZ_CHECK(topology.createRouteTable({.name = "r", .vpc = "v"}, 1));
  FUZZ_CHECK(topology.createInternetGateway({.name = "i", .vpc = "v"}, 1));
  FUZZ_CHECK(topology.createNatGateway({.name = "n", .subnet = "s"}, 1));
  FUZZ_CHECK(topology.createSecurityGroup({.name = "g", .vpc = "v"}, 1));
  FUZZ_CHECK(topology.createNetworkAcl({.name = "a", .vpc = "v"}, 1));
  return topology;
}

// The model's answer to a network request; other requests are not the model's.
std::optional<Result<net::Changeset>> applyToModel(net::Topology& t, const api::Request& request) {
  return std::visit(
      [&](const auto& r) -> std::optional<Result<net::Changeset>> {
        using R = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<R, api::Create<net::VpcSpec>>)
          return t.createVpc(r.spec, 2);
        else if constexpr (std::is_same_v<R, api::Create<net::SubnetSpec>>)
          return t.createSubnet(r.spec, 2);
        else if constexpr (std::is_same_v<R, api::UpdateSubnet>)
          return t.updateSubnet(r.name, r.update);
        else if constexpr (std::is_same_v<R, api::Create<net::RouteTableSpec>>)
          return t.createRouteTable(r.spec, 2);
        else if constexpr (std::is_same_v<R, api::AddRoute>)
          return t.addRoute(r.table, r.spec);
        else if constexpr (std::is_same_v<R, api::DeleteRoute>)
          return t.deleteRoute(r.table, r.destination);
        else if constexpr (std::is_same_v<R, api::Create<net::InternetGatewaySpec>>)
          return t.createInternetGateway(r.spec, 2);
        else if constexpr (std::is_same_v<R, api::Create<net::NatGatewaySpec>>)
          return t.createNatGateway(r.spec, 2);
        else if constexpr (std::is_same_v<R, api::Create<net::SecurityGroupSpec>>)
          return t.createSecurityGroup(r.spec, 2);
        else if constexpr (std::is_same_v<R, api::AddSecurityGroupRule>)
          return t.addSecurityGroupRule(r.group, r.spec);
        else if constexpr (std::is_same_v<R, api::DeleteSecurityGroupRule>)
          return t.deleteSecurityGroupRule(r.group, r.id);
        else if constexpr (std::is_same_v<R, api::Create<net::NetworkAclSpec>>)
          return t.createNetworkAcl(r.spec, 2);
        else if constexpr (std::is_same_v<R, api::AddNetworkAclRule>)
          return t.addNetworkAclRule(r.acl, r.spec);
        else if constexpr (std::is_same_v<R, api::DeleteNetworkAclRule>)
          return t.deleteNetworkAclRule(r.acl, r.direction, r.number);
        else
          return std::nullopt;
      },
      request);
}

// The JSON answers of what the model now holds (derived facts included), as GET would render them.
void renderModel(const net::Topology& t) {
  for (const net::Vpc* vpc : t.vpcs()) daemon::toJson(t, *vpc).dump();
  for (const net::Subnet* subnet : t.subnets()) daemon::toJson(t, *subnet).dump();
  for (const net::RouteTable* table : t.routeTables()) daemon::toJson(t, *table).dump();
  for (const net::SecurityGroup* group : t.securityGroups()) daemon::toJson(*group).dump();
  for (const net::NetworkAcl* acl : t.networkAcls()) daemon::toJson(*acl).dump();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  size_t newline = input.find('\n');
  std::string_view requestLine = input.substr(0, newline);
  std::string_view body = newline == std::string_view::npos ? std::string_view() : input.substr(newline + 1);
  size_t space = requestLine.find(' ');
  if (space == std::string_view::npos) return 0;
  std::string_view method = requestLine.substr(0, space);
  std::string_view target = requestLine.substr(space + 1);

  Result<api::Request> parsed = api::parseRequest(method, target, body);
  if (!parsed) {
    FUZZ_REQUIRE(parsed.error().kind() != ErrorKind::Internal, parsed.error().message());
    // As corrald writes it (daemon/http_server.cc): a path's bytes need not be UTF-8.
    api::errorJson(parsed.error()).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    return 0;
  }

  api::HttpRequest rendered = api::renderRequest(*parsed);
  Result<api::Request> again = api::parseRequest(rendered.method, rendered.target, rendered.body);
  FUZZ_REQUIRE(again.has_value(), again ? "" : again.error().message());
  api::HttpRequest renderedAgain = api::renderRequest(*again);
  FUZZ_REQUIRE(
      renderedAgain.method == rendered.method && renderedAgain.target == rendered.target &&
          renderedAgain.body == rendered.body,
      rendered.target + " " + rendered.body + " -> " + renderedAgain.target + " " + renderedAgain.body);

  static const net::Topology kStart = startingTopology();
  net::Topology topology = kStart;
  if (auto result = applyToModel(topology, *parsed)) {
    if (!*result) {
      FUZZ_REQUIRE(result->error().kind() != ErrorKind::Internal, result->error().message());
    }
    renderModel(topology);
  }
  return 0;
}
