// IPv4 addresses and CIDR blocks: strict parsing, formatting and the arithmetic a learner checks by hand.
#pragma once

#include <compare>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace corral::schema {

class Ipv4Address {
 public:
  constexpr Ipv4Address() = default;
  constexpr explicit Ipv4Address(uint32_t hostOrder) : value_(hostOrder) {}

  // Dotted quad only: four decimal octets 0-255, no leading zeros ("010.0.0.1" is refused, as the
  // kernel's inet_aton would read it as octal), no spaces, nothing after. `field` names the input in errors.
  static Result<Ipv4Address> parse(std::string_view text, std::string_view field = "address");

  constexpr uint32_t value() const { return value_; }
  std::string str() const;
  uint8_t octet(int index) const { return static_cast<uint8_t>(value_ >> (24 - 8 * index)); }

  // RFC 1918: 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16.
  bool isPrivate() const;
  // Historical classful class: 'A' (0-127), 'B' (128-191), 'C' (192-223), 'D' multicast, 'E' reserved.
  char addressClass() const;

  constexpr auto operator<=>(const Ipv4Address&) const = default;

 private:
  uint32_t value_ = 0;
};

class Cidr {
 public:
  constexpr Cidr() = default;

  // "A.B.C.D/N" with 0 <= N <= 32 and no host bits set: "10.0.0.1/24" is refused (did you mean 10.0.0.0/24?).
  static Result<Cidr> parse(std::string_view text, std::string_view field = "cidr");
  // The block of `prefix` bits that contains `address` (host bits cleared).
  static Cidr containing(Ipv4Address address, int prefix);

  Ipv4Address network() const { return network_; }
  int prefix() const { return prefix_; }
  uint32_t mask() const;
  Ipv4Address netmask() const { return Ipv4Address(mask()); }
  Ipv4Address first() const { return network_; }
  Ipv4Address last() const;
  Ipv4Address broadcast() const { return last(); }
  // 2^(32 - prefix): a /26 has 64 addresses. 64-bit because /0 holds 2^32.
  uint64_t size() const { return uint64_t{1} << (32 - prefix_); }
  std::string str() const;

  bool contains(Ipv4Address address) const;
  bool contains(const Cidr& inner) const;
  bool overlaps(const Cidr& other) const;
  // The whole block lies inside one RFC 1918 range.
  bool isPrivate() const;

  auto operator<=>(const Cidr&) const = default;

 private:
  Cidr(Ipv4Address network, int prefix) : network_(network), prefix_(prefix) {}
  Ipv4Address network_;
  int prefix_ = 0;
};

}  // namespace corral::schema
