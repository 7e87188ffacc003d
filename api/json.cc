// Response bodies shared by corrald and the CLI: errors with their HTTP status, and the CIDR calculator's
// facts (corrald renders the VPC objects themselves: daemon/network_json.h).
#include <string>

#include "api/api.h"

namespace corral::api {
namespace {

using nlohmann::json;

// AWS keeps five addresses of every subnet: network, .1 router, .2 DNS, .3 future use, broadcast.
constexpr uint64_t kAwsReservedPerSubnet = 5;

uint64_t awsUsable(const schema::Cidr& cidr) {
  return cidr.size() > kAwsReservedPerSubnet ? cidr.size() - kAwsReservedPerSubnet : 0;
}

schema::Ipv4Address offset(const schema::Cidr& cidr, uint32_t by) {
  return schema::Ipv4Address(cidr.network().value() + by);
}

std::string classText(const schema::Cidr& cidr) {
  return std::string(1, cidr.network().addressClass());
}

}  // namespace

int httpStatus(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::InvalidArgument:
      return 400;
    case ErrorKind::NotFound:
      return 404;
    case ErrorKind::Conflict:
      return 409;
    case ErrorKind::Unavailable:
      return 503;
    case ErrorKind::Forbidden:
      return 403;
    case ErrorKind::Internal:
      return 500;
  }
  return 500;
}

// "field" is left out when the error names none, so its presence alone tells a client there is one.
json errorJson(const Error& error) {
  json body = {{"kind", errorKindName(error.kind())}, {"message", error.message()}};
  if (!error.field().empty()) body["field"] = error.field();
  return {{"error", std::move(body)}};
}

json cidrJson(const schema::Cidr& cidr) {
  uint64_t usable = awsUsable(cidr);
  int hostBits = 32 - cidr.prefix();
  return {
      {"cidr", cidr.str()},
      {"network", cidr.network().str()},
      {"netmask", cidr.netmask().str()},
      {"prefix", cidr.prefix()},
      {"broadcast", cidr.broadcast().str()},
      // AWS hands out network+4 .. broadcast-1; a block with nothing left has no usable range at all.
      {"first_usable", usable > 0 ? json(offset(cidr, 4).str()) : json(nullptr)},
      {"last_usable",
       usable > 0 ? json(schema::Ipv4Address(cidr.broadcast().value() - 1).str()) : json(nullptr)},
      {"size", cidr.size()},
      {"usable_aws", usable},
      {"private", cidr.isPrivate()},
      {"class", classText(cidr)},
      {"explanation", fmt::format("a /{} fixes the first {} bits: 2^(32-{}) = 2^{} = {} addresses",
                                  cidr.prefix(), cidr.prefix(), cidr.prefix(), hostBits, cidr.size())},
  };
}

}  // namespace corral::api
