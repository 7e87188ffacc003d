// Announcing a NIC's address on its subnet with a gratuitous ARP. The IPAM gives a freed address to the
// next instance (a group's replacement of a killed member gets the dead one's), whose MAC differs (it is
// derived from the instance's name): a neighbour that talked to the old owner, such as a load balancer,
// keeps sending to the old MAC until its ARP entry expires (up to ~45 s with Linux's defaults). A
// gratuitous ARP updates such an entry at once; entries for other addresses are left alone.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"

namespace corral::net {

// Pure: the Ethernet frame of a gratuitous ARP request from `mac` ("02:c0:aa:bb:cc:dd") for `address`
// ("10.0.1.12"): broadcast, sender and target address both `address`, target MAC zero. 42 bytes (the
// kernel pads it to the Ethernet minimum).
Result<std::vector<uint8_t>> gratuitousArp(std::string_view mac, std::string_view address);

// Sends gratuitousArp(mac, address) out of `link` in the namespace `netnsFd` refers to (`label` names it
// in errors), from a helper thread that setns()es there.
Status announceAddress(int netnsFd, std::string_view label, const std::string& link, const std::string& mac,
                       const std::string& address);

}  // namespace corral::net
