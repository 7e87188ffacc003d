// Addresses and CIDR blocks live in the schema (schema/cidr.h): requests carry them and the CLI's
// calculator parses them without the network library. These names keep the network code reading as before.
#pragma once

#include "schema/cidr.h"

namespace corral::net {

using schema::Cidr;
using schema::Ipv4Address;

}  // namespace corral::net
