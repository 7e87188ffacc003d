// libFuzzer target: the net/ parsers that take text from users (addresses, CIDR blocks, port forwards,
// rule enum words). Beyond the sanitizers: what parses prints back as text that parses to the same value,
// and a block's arithmetic agrees with itself.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "net/cidr.h"
#include "net/datapath.h"
#include "net/frames.h"
#include "net/vpc.h"
#include "tests/fuzz/fuzz_check.h"

using namespace corral;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto address = net::Ipv4Address::parse(text)) {
    FUZZ_REQUIRE(address->str() == text, address->str());
    FUZZ_REQUIRE(net::Cidr::containing(*address, 32).network() == *address, address->str());
  }

  if (auto cidr = net::Cidr::parse(text)) {
    FUZZ_REQUIRE(cidr->str() == text, cidr->str());
    auto reparsed = net::Cidr::parse(cidr->str());
    FUZZ_REQUIRE(reparsed && *reparsed == *cidr, cidr->str());
    FUZZ_REQUIRE(cidr->contains(cidr->first()) && cidr->contains(cidr->last()) && cidr->contains(*cidr),
                 cidr->str());
    FUZZ_REQUIRE(uint64_t{cidr->last().value()} - cidr->first().value() + 1 == cidr->size(), cidr->str());
    FUZZ_REQUIRE(net::Cidr::containing(cidr->network(), cidr->prefix()) == *cidr, cidr->str());
    FUZZ_REQUIRE(cidr->netmask().value() == cidr->mask(), cidr->str());
    (void)cidr->isPrivate();
    (void)cidr->network().addressClass();
  }

  if (auto forward = net::parsePortForward(text, "publish[0]")) {
    FUZZ_REQUIRE(forward->outsidePort != 0 && forward->instancePort != 0, std::string(text));
    auto reparsed = net::parsePortForward(net::portForwardText(*forward), "publish[0]");
    FUZZ_REQUIRE(reparsed && *reparsed == *forward, net::portForwardText(*forward));
  } else {
    FUZZ_REQUIRE(forward.error().field() == "publish[0]", forward.error().message());
  }

  if (auto protocol = net::parseProtocol(text, "protocol"))
    FUZZ_REQUIRE(net::protocolName(*protocol) == text, "");
  if (auto direction = net::parseDirection(text, "direction")) {
    FUZZ_REQUIRE(net::directionName(*direction) == text, "");
  }
  if (auto action = net::parseRuleAction(text, "action"))
    FUZZ_REQUIRE(net::ruleActionName(*action) == text, "");
  if (auto type = net::parseRouteTargetType(text, "target_type")) {
    FUZZ_REQUIRE(net::routeTargetTypeName(*type) == text, "");
  }
  (void)net::parseFrameFilter(text, "filter");
  (void)net::validateName(text);
  return 0;
}
