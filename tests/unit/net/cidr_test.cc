// IPv4 address and CIDR parsing, formatting and arithmetic.
#include "net/cidr.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace corral::net {
namespace {

Ipv4Address addr(std::string_view text) {
  auto parsed = Ipv4Address::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text << ": " << parsed.error().message();
  return parsed.value_or(Ipv4Address());
}

Cidr cidr(std::string_view text) {
  auto parsed = Cidr::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text << ": " << parsed.error().message();
  return parsed.value_or(Cidr());
}

TEST(Ipv4Address, ParsesDottedQuads) {
  struct Case {
    std::string text;
    uint32_t value;
  };
  for (const Case& c : std::vector<Case>{{"0.0.0.0", 0},
                                         {"10.0.0.1", 0x0A000001u},
                                         {"192.168.1.254", 0xC0A801FEu},
                                         {"255.255.255.255", 0xFFFFFFFFu},
                                         {"172.16.0.0", 0xAC100000u}}) {
    auto parsed = Ipv4Address::parse(c.text);
    ASSERT_TRUE(parsed) << c.text << ": " << parsed.error().message();
    EXPECT_EQ(parsed->value(), c.value) << c.text;
    EXPECT_EQ(parsed->str(), c.text);
  }
}

TEST(Ipv4Address, OctetsAreIndexedFromTheLeft) {
  Ipv4Address a = addr("192.168.7.9");
  EXPECT_EQ(a.octet(0), 192);
  EXPECT_EQ(a.octet(1), 168);
  EXPECT_EQ(a.octet(2), 7);
  EXPECT_EQ(a.octet(3), 9);
}

TEST(Ipv4Address, RefusesMalformedInputNamingTheFieldAndQuotingTheInput) {
  struct Case {
    std::string text;
    std::string why;  // a fragment the message must contain
  };
  for (const Case& c : std::vector<Case>{{"", "empty"},
                                         {"300.1.1.1", "out of range"},
                                         {"256.0.0.0", "out of range"},
                                         {"10.0.0", "3 octets"},
                                         {"10.0.0.0.1", "more than four"},
                                         {"10..0.1", "empty octet"},
                                         {"10.0.0.", "empty octet"},
                                         {".10.0.0", "empty octet"},
                                         {"010.0.0.1", "leading zero"},
                                         {"10.0.0.01", "leading zero"},
                                         {"10.0.0.00", "leading zero"},
                                         {" 10.0.0.1", "whitespace"},
                                         {"10.0.0.1 ", "whitespace"},
                                         {"10.0. 0.1", "whitespace"},
                                         {"+10.0.0.1", "not a decimal"},
                                         {"-1.0.0.1", "not a decimal"},
                                         {"10.0.0.1x", "not a decimal"},
                                         {"10.0.0.1/24", "not a decimal"},
                                         {"a.b.c.d", "not a decimal"},
                                         {"99999999999.0.0.1", "out of range"}}) {
    auto parsed = Ipv4Address::parse(c.text, "gateway_ip");
    ASSERT_FALSE(parsed) << "accepted \"" << c.text << "\"";
    EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument) << c.text;
    EXPECT_EQ(parsed.error().field(), "gateway_ip") << c.text;
    EXPECT_NE(parsed.error().message().find("\"" + c.text + "\""), std::string::npos)
        << parsed.error().message();
    EXPECT_NE(parsed.error().message().find(c.why), std::string::npos)
        << c.text << ": " << parsed.error().message() << " lacks " << c.why;
  }
}

TEST(Ipv4Address, DefaultFieldIsAddress) {
  auto parsed = Ipv4Address::parse("1.2.3");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().field(), "address");
}

TEST(Ipv4Address, PrivateRangesAreExactlyRfc1918) {
  struct Case {
    std::string text;
    bool isPrivate;
  };
  for (const Case& c : std::vector<Case>{{"10.0.0.0", true},
                                         {"10.255.255.255", true},
                                         {"9.255.255.255", false},
                                         {"11.0.0.0", false},
                                         {"172.15.255.255", false},
                                         {"172.16.0.0", true},
                                         {"172.31.255.255", true},
                                         {"172.32.0.0", false},
                                         {"192.168.0.0", true},
                                         {"192.168.255.255", true},
                                         {"192.169.0.0", false},
                                         {"192.167.255.255", false},
                                         {"8.8.8.8", false},
                                         {"100.64.0.1", false}}) {
    EXPECT_EQ(addr(c.text).isPrivate(), c.isPrivate) << c.text;
  }
}

TEST(Ipv4Address, ClassfulClassFollowsTheFirstOctet) {
  struct Case {
    std::string text;
    char addressClass;
  };
  for (const Case& c : std::vector<Case>{{"0.0.0.0", 'A'},
                                         {"10.1.2.3", 'A'},
                                         {"127.255.255.255", 'A'},
                                         {"128.0.0.0", 'B'},
                                         {"191.255.0.1", 'B'},
                                         {"192.0.0.0", 'C'},
                                         {"223.255.255.255", 'C'},
                                         {"224.0.0.1", 'D'},
                                         {"239.255.255.255", 'D'},
                                         {"240.0.0.0", 'E'},
                                         {"255.255.255.255", 'E'}}) {
    EXPECT_EQ(addr(c.text).addressClass(), c.addressClass) << c.text;
  }
}

TEST(Ipv4Address, OrdersByValue) {
  EXPECT_LT(addr("9.255.255.255"), addr("10.0.0.0"));
  EXPECT_EQ(addr("10.0.0.1"), Ipv4Address(0x0A000001u));
}

TEST(Cidr, ParsesAndFormatsEveryPrefixLength) {
  for (int prefix = 0; prefix <= 32; ++prefix) {
    std::string text = fmt::format("0.0.0.0/{}", prefix);
    Cidr block = cidr(text);
    EXPECT_EQ(block.prefix(), prefix);
    EXPECT_EQ(block.str(), text);
  }
  EXPECT_EQ(cidr("10.0.0.0/8").str(), "10.0.0.0/8");
  EXPECT_EQ(cidr("192.168.1.128/25").str(), "192.168.1.128/25");
  EXPECT_EQ(cidr("203.0.113.7/32").str(), "203.0.113.7/32");
}

TEST(Cidr, RefusesHostBitsAndNamesTheNetwork) {
  auto parsed = Cidr::parse("10.0.0.1/24", "cidr");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(parsed.error().field(), "cidr");
  EXPECT_EQ(parsed.error().message(), "\"10.0.0.1/24\" has host bits set; the network is 10.0.0.0/24");

  auto other = Cidr::parse("192.168.1.200/26", "destination");
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error().field(), "destination");
  EXPECT_NE(other.error().message().find("192.168.1.192/26"), std::string::npos) << other.error().message();
}

TEST(Cidr, RefusesMalformedInputNamingTheFieldAndQuotingTheInput) {
  struct Case {
    std::string text;
    std::string why;
  };
  for (const Case& c : std::vector<Case>{{"", "empty"},
                                         {"10.0.0.0", "no prefix length"},
                                         {"10.0.0.0/", "empty prefix length"},
                                         {"/8", "empty"},
                                         {"10.0.0.0/33", "out of range 0-32"},
                                         {"0.0.0.0/33", "out of range 0-32"},
                                         {"10.0.0.0/99999999999", "out of range"},
                                         {"300.1.1.1/32", "out of range 0-255"},
                                         {"10.0.0.0/8/8", "more than one '/'"},
                                         {" 10.0.0.0/8", "whitespace"},
                                         {"10.0.0.0/8 ", "whitespace"},
                                         {"10.0.0.0 /8", "whitespace"},
                                         {"10.0.0.0/ 8", "whitespace"},
                                         {"10.0.0.0\t/8", "whitespace"},
                                         {"010.0.0.0/8", "leading zero"},
                                         {"10.0.0.0/08", "leading zero"},
                                         {"10.0.0.0/00", "leading zero"},
                                         {"10..0.0/16", "empty octet"},
                                         {"10.0.0/16", "3 octets"},
                                         {"10.0.0.0/+8", "not a decimal"},
                                         {"10.0.0.0/-8", "not a decimal"},
                                         {"+10.0.0.0/8", "not a decimal"},
                                         {"10.0.0.0/8x", "not a decimal"},
                                         {"10.0.0.0x/8", "not a decimal"},
                                         {"banana", "no prefix length"}}) {
    auto parsed = Cidr::parse(c.text, "subnet_cidr");
    ASSERT_FALSE(parsed) << "accepted \"" << c.text << "\"";
    EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument) << c.text;
    EXPECT_EQ(parsed.error().field(), "subnet_cidr") << c.text;
    EXPECT_NE(parsed.error().message().find("\"" + c.text + "\""), std::string::npos)
        << parsed.error().message();
    EXPECT_NE(parsed.error().message().find(c.why), std::string::npos)
        << c.text << ": " << parsed.error().message() << " lacks " << c.why;
  }
}

TEST(Cidr, DefaultFieldIsCidr) {
  auto parsed = Cidr::parse("10.0.0.0/33");
  ASSERT_FALSE(parsed);
  EXPECT_EQ(parsed.error().field(), "cidr");
}

TEST(Cidr, BlockArithmetic) {
  struct Case {
    std::string block;
    std::string netmask;
    std::string last;
    uint64_t size;
  };
  for (const Case& c : std::vector<Case>{{"10.0.0.0/8", "255.0.0.0", "10.255.255.255", 1u << 24},
                                         {"192.168.1.0/24", "255.255.255.0", "192.168.1.255", 256},
                                         {"192.168.1.64/26", "255.255.255.192", "192.168.1.127", 64},
                                         {"10.0.0.16/28", "255.255.255.240", "10.0.0.31", 16},
                                         {"10.0.0.8/31", "255.255.255.254", "10.0.0.9", 2},
                                         {"10.0.0.7/32", "255.255.255.255", "10.0.0.7", 1},
                                         {"172.16.0.0/12", "255.240.0.0", "172.31.255.255", 1u << 20},
                                         {"0.0.0.0/0", "0.0.0.0", "255.255.255.255", uint64_t{1} << 32}}) {
    Cidr block = cidr(c.block);
    EXPECT_EQ(block.netmask().str(), c.netmask) << c.block;
    EXPECT_EQ(block.mask(), block.netmask().value()) << c.block;
    EXPECT_EQ(block.first(), block.network()) << c.block;
    EXPECT_EQ(block.last().str(), c.last) << c.block;
    EXPECT_EQ(block.broadcast(), block.last()) << c.block;
    EXPECT_EQ(block.size(), c.size) << c.block;
  }
}

TEST(Cidr, ContainingClearsHostBits) {
  EXPECT_EQ(Cidr::containing(addr("10.1.2.3"), 16).str(), "10.1.0.0/16");
  EXPECT_EQ(Cidr::containing(addr("10.1.2.3"), 32).str(), "10.1.2.3/32");
  EXPECT_EQ(Cidr::containing(addr("10.1.2.3"), 0).str(), "0.0.0.0/0");
  EXPECT_EQ(Cidr::containing(addr("192.168.1.200"), 26).str(), "192.168.1.192/26");
}

TEST(Cidr, ContainsAddresses) {
  Cidr block = cidr("192.168.1.64/26");
  EXPECT_TRUE(block.contains(addr("192.168.1.64")));
  EXPECT_TRUE(block.contains(addr("192.168.1.127")));
  EXPECT_FALSE(block.contains(addr("192.168.1.63")));
  EXPECT_FALSE(block.contains(addr("192.168.1.128")));
  EXPECT_TRUE(cidr("0.0.0.0/0").contains(addr("255.255.255.255")));
  EXPECT_TRUE(cidr("10.0.0.5/32").contains(addr("10.0.0.5")));
  EXPECT_FALSE(cidr("10.0.0.5/32").contains(addr("10.0.0.4")));
}

TEST(Cidr, ContainsBlocksAndOverlaps) {
  struct Case {
    std::string outer;
    std::string inner;
    bool contains;
    bool overlaps;
  };
  for (const Case& c : std::vector<Case>{{"10.0.0.0/16", "10.0.1.0/24", true, true},
                                         {"10.0.0.0/16", "10.0.0.0/16", true, true},
                                         {"10.0.1.0/24", "10.0.0.0/16", false, true},
                                         {"10.0.0.0/16", "10.1.0.0/24", false, false},
                                         {"10.0.0.0/24", "10.0.1.0/24", false, false},
                                         {"10.0.0.0/23", "10.0.1.0/24", true, true},
                                         {"10.0.0.0/25", "10.0.0.128/25", false, false},
                                         {"0.0.0.0/0", "203.0.113.0/24", true, true},
                                         {"10.0.0.0/8", "11.0.0.0/8", false, false}}) {
    EXPECT_EQ(cidr(c.outer).contains(cidr(c.inner)), c.contains) << c.outer << " contains " << c.inner;
    EXPECT_EQ(cidr(c.outer).overlaps(cidr(c.inner)), c.overlaps) << c.outer << " overlaps " << c.inner;
    EXPECT_EQ(cidr(c.inner).overlaps(cidr(c.outer)), c.overlaps) << c.inner << " overlaps " << c.outer;
  }
}

TEST(Cidr, PrivateOnlyWhenWhollyInsideOneRfc1918Range) {
  struct Case {
    std::string block;
    bool isPrivate;
  };
  for (const Case& c : std::vector<Case>{{"10.0.0.0/8", true},
                                         {"10.20.0.0/16", true},
                                         {"8.0.0.0/6", false},  // contains 10/8 but also public space
                                         {"172.16.0.0/12", true},
                                         {"172.31.0.0/16", true},
                                         {"172.0.0.0/11", false},  // 172.0-172.31: only half private
                                         {"172.32.0.0/16", false},
                                         {"192.168.0.0/16", true},
                                         {"192.168.10.0/24", true},
                                         {"192.168.0.0/15", false},
                                         {"0.0.0.0/0", false},
                                         {"100.64.0.0/10", false},
                                         {"203.0.113.0/24", false}}) {
    EXPECT_EQ(cidr(c.block).isPrivate(), c.isPrivate) << c.block;
  }
}

TEST(Cidr, ComparesByNetworkThenPrefix) {
  EXPECT_EQ(cidr("10.0.0.0/16"), cidr("10.0.0.0/16"));
  EXPECT_NE(cidr("10.0.0.0/16"), cidr("10.0.0.0/24"));
  EXPECT_LT(cidr("10.0.0.0/24"), cidr("10.0.1.0/24"));
}

}  // namespace
}  // namespace corral::net

namespace corral::net {
namespace {

// Every refusal reads as a sentence: the field, the input quoted, and what is wrong with which part of it
// (once: "it prefix length ..." and "it has a bad address: it ..." were glued from two halves).
TEST(Cidr, ErrorsSayWhichPartIsWrongInPlainWords) {
  struct Case {
    std::string text;
    std::string message;
  };
  for (const Case& c : std::vector<Case>{
           {"10.0.0.0/x",
            "\"10.0.0.0/x\" is not a CIDR block: its prefix length \"x\" is not a decimal number"},
           {"10.0.0.0/33",
            "\"10.0.0.0/33\" is not a CIDR block: its prefix length \"33\" is out of range 0-32"},
           {"10.0.0.0/08",
            "\"10.0.0.0/08\" is not a CIDR block: its prefix length \"08\" has a leading zero (some tools "
            "would "
            "read it as octal)"},
           {"10.0.0.0/",
            "\"10.0.0.0/\" is not a CIDR block: it has an empty prefix length (expected A.B.C.D/N)"},
           {"10.0.0/16", "\"10.0.0/16\" is not a CIDR block: its address has 3 octets, not four"},
           {"10..0.0/16", "\"10..0.0/16\" is not a CIDR block: its address has an empty octet"},
           {"300.0.0.0/8",
            "\"300.0.0.0/8\" is not a CIDR block: its address has octet \"300\", which is out of range "
            "0-255"},
           {"/8", "\"/8\" is not a CIDR block: its address is empty"},
           {"banana", "\"banana\" is not a CIDR block: it has no prefix length (expected A.B.C.D/N)"},
       }) {
    auto parsed = Cidr::parse(c.text, "cidr");
    ASSERT_FALSE(parsed) << c.text;
    EXPECT_EQ(parsed.error().field(), "cidr");
    EXPECT_EQ(parsed.error().message(), c.message);
  }
  auto address = Ipv4Address::parse("10.0.x.1", "gateway_ip");
  ASSERT_FALSE(address);
  EXPECT_EQ(address.error().message(),
            "\"10.0.x.1\" is not an IPv4 address: it has octet \"x\", which is not a decimal number");
  for (const char* text : {"10.0.0.0/x", "1.2.3/8", "a.b.c.d/8", "10.0.0.0/-1", "10.0.0.1.5/8", ""}) {
    auto refused = Cidr::parse(text, "cidr");
    ASSERT_FALSE(refused) << text;
    for (const char* glued : {": it prefix", ": it octet", "it has a bad address: it", ": it is not"}) {
      EXPECT_EQ(refused.error().message().find(glued), std::string::npos) << refused.error().message();
    }
  }
}

}  // namespace
}  // namespace corral::net
