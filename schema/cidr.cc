// IPv4 address and CIDR parsing, formatting and block arithmetic. Parsing is strict on purpose: a learner
// who types "10.0.0.1/24" or "010.0.0.0/8" is told exactly what is wrong instead of getting a guess.
#include "schema/cidr.h"

#include <fmt/format.h>

#include <array>
#include <optional>

namespace corral::schema {
namespace {

bool isDigit(char c) {
  return c >= '0' && c <= '9';
}

// A decimal number made of digits only, no sign, no leading zero (unless it is "0"), at most `maxValue`.
// On failure, what is wrong with it as a predicate ("is out of range 0-32"), so each caller names the
// number its own way: "its prefix length \"33\" is out of range 0-32".
struct DecimalParse {
  std::optional<uint32_t> value;
  std::string problem;
};

DecimalParse parseStrictDecimal(std::string_view text, uint32_t maxValue) {
  if (text.empty()) return {std::nullopt, "is empty"};
  for (char c : text) {
    if (!isDigit(c)) return {std::nullopt, "is not a decimal number"};
  }
  if (text.size() > 1 && text[0] == '0') {
    return {std::nullopt, "has a leading zero (some tools would read it as octal)"};
  }
  const std::string outOfRange = fmt::format("is out of range 0-{}", maxValue);
  // Digits only and no leading zero: more than 10 digits is certainly out of range; avoid overflow.
  if (text.size() > 10) return {std::nullopt, outOfRange};
  uint64_t value = 0;
  for (char c : text) value = value * 10 + static_cast<uint64_t>(c - '0');
  if (value > maxValue) return {std::nullopt, outOfRange};
  return {static_cast<uint32_t>(value), {}};
}

bool containsWhitespace(std::string_view text) {
  return text.find_first_of(" \t\r\n\v\f") != std::string_view::npos;
}

// Parses a dotted quad and returns either the address or what is wrong with it, as a phrase about the
// address ("has 3 octets, not four"), so callers can say "it ..." or "its address ...".
struct AddressParse {
  std::optional<Ipv4Address> address;
  std::string problem;
};

AddressParse parseDottedQuad(std::string_view text) {
  if (text.empty()) return {std::nullopt, "is empty"};
  if (containsWhitespace(text)) return {std::nullopt, "contains whitespace"};
  std::array<std::string_view, 4> octets;
  size_t count = 0;
  size_t start = 0;
  while (true) {
    size_t dot = text.find('.', start);
    std::string_view part =
        text.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (count == octets.size()) return {std::nullopt, "has more than four octets"};
    octets[count++] = part;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  if (count != octets.size()) return {std::nullopt, fmt::format("has {} octets, not four", count)};
  uint32_t value = 0;
  for (size_t i = 0; i < octets.size(); ++i) {
    if (octets[i].empty()) return {std::nullopt, "has an empty octet"};
    DecimalParse octet = parseStrictDecimal(octets[i], 255);
    if (!octet.value)
      return {std::nullopt, fmt::format("has octet \"{}\", which {}", octets[i], octet.problem)};
    value = (value << 8) | *octet.value;
  }
  return {Ipv4Address(value), {}};
}

uint32_t prefixMask(int prefix) {
  return prefix == 0 ? 0 : ~uint32_t{0} << (32 - prefix);
}

struct PrivateRange {
  uint32_t network;
  int prefix;
};
constexpr std::array<PrivateRange, 3> kRfc1918Ranges = {{
    {0x0A000000u, 8},   // 10.0.0.0/8
    {0xAC100000u, 12},  // 172.16.0.0/12
    {0xC0A80000u, 16},  // 192.168.0.0/16
}};

}  // namespace

Result<Ipv4Address> Ipv4Address::parse(std::string_view text, std::string_view field) {
  AddressParse parsed = parseDottedQuad(text);
  if (!parsed.address) {
    return fail(
        invalidField(std::string(field), "\"{}\" is not an IPv4 address: it {}", text, parsed.problem));
  }
  return *parsed.address;
}

std::string Ipv4Address::str() const {
  return fmt::format("{}.{}.{}.{}", octet(0), octet(1), octet(2), octet(3));
}

bool Ipv4Address::isPrivate() const {
  for (const PrivateRange& range : kRfc1918Ranges) {
    if ((value_ & prefixMask(range.prefix)) == range.network) return true;
  }
  return false;
}

char Ipv4Address::addressClass() const {
  uint8_t first = octet(0);
  if (first < 128) return 'A';
  if (first < 192) return 'B';
  if (first < 224) return 'C';
  if (first < 240) return 'D';
  return 'E';
}

Result<Cidr> Cidr::parse(std::string_view text, std::string_view field) {
  // `reason` is a whole clause: "it has no prefix length", "its address has an empty octet".
  auto refuse = [&](std::string_view reason) {
    return fail(invalidField(std::string(field), "\"{}\" is not a CIDR block: {}", text, reason));
  };
  if (text.empty()) return refuse("it is empty (expected A.B.C.D/N)");
  if (containsWhitespace(text)) return refuse("it contains whitespace");
  size_t slash = text.find('/');
  if (slash == std::string_view::npos) return refuse("it has no prefix length (expected A.B.C.D/N)");
  if (text.find('/', slash + 1) != std::string_view::npos) return refuse("it has more than one '/'");

  AddressParse address = parseDottedQuad(text.substr(0, slash));
  if (!address.address) return refuse(fmt::format("its address {}", address.problem));
  std::string_view prefixText = text.substr(slash + 1);
  if (prefixText.empty()) return refuse("it has an empty prefix length (expected A.B.C.D/N)");
  DecimalParse prefix = parseStrictDecimal(prefixText, 32);
  if (!prefix.value) return refuse(fmt::format("its prefix length \"{}\" {}", prefixText, prefix.problem));

  Cidr block = containing(*address.address, static_cast<int>(*prefix.value));
  if (block.network() != *address.address) {
    return fail(
        invalidField(std::string(field), "\"{}\" has host bits set; the network is {}", text, block.str()));
  }
  return block;
}

Cidr Cidr::containing(Ipv4Address address, int prefix) {
  if (prefix < 0) prefix = 0;
  if (prefix > 32) prefix = 32;
  return Cidr(Ipv4Address(address.value() & prefixMask(prefix)), prefix);
}

uint32_t Cidr::mask() const {
  return prefixMask(prefix_);
}

Ipv4Address Cidr::last() const {
  return Ipv4Address(network_.value() | ~mask());
}

std::string Cidr::str() const {
  return fmt::format("{}/{}", network_.str(), prefix_);
}

bool Cidr::contains(Ipv4Address address) const {
  return (address.value() & mask()) == network_.value();
}

bool Cidr::contains(const Cidr& inner) const {
  return inner.prefix_ >= prefix_ && contains(inner.network_);
}

bool Cidr::overlaps(const Cidr& other) const {
  return contains(other) || other.contains(*this);
}

bool Cidr::isPrivate() const {
  for (const PrivateRange& range : kRfc1918Ranges) {
    if (Cidr(Ipv4Address(range.network), range.prefix).contains(*this)) return true;
  }
  return false;
}

}  // namespace corral::schema
