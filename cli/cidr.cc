// `corral cidr`: the CIDR calculator, computed here with schema::Cidr; no daemon needed.
#include "schema/cidr.h"

#include <iostream>

#include "cli/cli.h"

namespace corral::cli {
namespace {

// 255.255.255.192 as 11111111.11111111.11111111.11000000: the prefix is the run of ones.
std::string maskBits(uint32_t mask) {
  std::string bits;
  for (int bit = 31; bit >= 0; --bit) {
    bits += (mask >> bit) & 1 ? '1' : '0';
    if (bit % 8 == 0 && bit > 0) bits += '.';
  }
  return bits;
}

int runCidr(const Invocation& invocation) {
  Result<schema::Cidr> cidr = schema::Cidr::parse(invocation.arguments[0], "cidr");
  if (!cidr) {
    printError(cidr.error());
    return 1;
  }
  json facts = api::cidrJson(*cidr);
  if (invocation.global.json) {
    std::cout << facts.dump(2) << "\n";
    return 0;
  }
  std::string usable = displayText(facts["usable_aws"]);
  if (!facts["first_usable"].is_null()) {
    usable += fmt::format(": {} - {}", displayText(facts["first_usable"]), displayText(facts["last_usable"]));
  }
  usable += " (AWS keeps the network address, .1 router, .2 DNS, .3 reserved and the broadcast)";
  printFields({
      {"cidr", displayText(facts["cidr"])},
      {"network", displayText(facts["network"])},
      {"netmask", fmt::format("{} (/{})", displayText(facts["netmask"]), cidr->prefix())},
      {"netmask bits", maskBits(cidr->mask())},
      {"broadcast", displayText(facts["broadcast"])},
      {"size", displayText(facts["size"]) + " addresses"},
      {"usable (AWS)", usable},
      {"private", facts["private"] == true ? "yes (inside an RFC 1918 range: 10/8, 172.16/12, 192.168/16)"
                                           : "no (not entirely inside an RFC 1918 range)"},
      {"class",
       displayText(facts["class"]) + " (historical; CIDR replaced classes to waste fewer addresses)"},
  });
  std::cout << "\n" << displayText(facts["explanation"]) << "\n";
  return 0;
}

}  // namespace

Command cidrCommand() {
  return leaf(
      "cidr",
      "the CIDR calculator: network, netmask, broadcast and usable addresses of a block (no daemon needed)",
      {{"CIDR", "an IPv4 block, e.g. 10.0.1.0/26"}}, "", nullptr, runCidr);
}

}  // namespace corral::cli
