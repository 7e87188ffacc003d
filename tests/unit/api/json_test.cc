// Response bodies: error shape and status, and the CIDR calculator.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "api/api.h"

namespace corral::api {
namespace {

using nlohmann::json;

TEST(HttpStatus, OneStatusPerKind) {
  EXPECT_EQ(httpStatus(ErrorKind::InvalidArgument), 400);
  EXPECT_EQ(httpStatus(ErrorKind::NotFound), 404);
  EXPECT_EQ(httpStatus(ErrorKind::Conflict), 409);
  EXPECT_EQ(httpStatus(ErrorKind::Unavailable), 503);
  EXPECT_EQ(httpStatus(ErrorKind::Forbidden), 403);
  EXPECT_EQ(httpStatus(ErrorKind::Internal), 500);
}

TEST(ErrorJson, CarriesKindMessageAndField) {
  json withField = errorJson(invalidField("cidr", "\"10.0.0.1/16\" has host bits set"));
  EXPECT_EQ(withField, (json{{"error",
                              {{"kind", "invalid_argument"},
                               {"message", "\"10.0.0.1/16\" has host bits set"},
                               {"field", "cidr"}}}}));
}

TEST(ErrorJson, OmitsFieldWhenThereIsNone) {
  json body = errorJson(conflict("vpc \"prod\" still has subnets"));
  ASSERT_TRUE(body.contains("error"));
  EXPECT_EQ(body["error"]["kind"], "conflict");
  EXPECT_FALSE(body["error"].contains("field"));
}

schema::Cidr cidr(std::string_view text) {
  Result<schema::Cidr> parsed = schema::Cidr::parse(text);
  EXPECT_TRUE(parsed.has_value()) << text;
  return parsed.value_or(schema::Cidr{});
}

TEST(CidrJson, SlashTwentySixInTenDotZero) {
  json c = cidrJson(cidr("10.0.1.0/26"));
  EXPECT_EQ(c["network"], "10.0.1.0");
  EXPECT_EQ(c["netmask"], "255.255.255.192");
  EXPECT_EQ(c["prefix"], 26);
  EXPECT_EQ(c["broadcast"], "10.0.1.63");
  EXPECT_EQ(c["first_usable"], "10.0.1.4");
  EXPECT_EQ(c["last_usable"], "10.0.1.62");
  EXPECT_EQ(c["size"], 64);
  EXPECT_EQ(c["usable_aws"], 59);
  EXPECT_EQ(c["private"], true);
  EXPECT_EQ(c["class"], "A");
  EXPECT_THAT(c["explanation"].get<std::string>(), ::testing::HasSubstr("2^(32-26)"));
  EXPECT_THAT(c["explanation"].get<std::string>(), ::testing::HasSubstr("64 addresses"));
}

TEST(CidrJson, TinyBlocksHaveNoUsableRangeAndPublicOnesAreNotPrivate) {
  json host = cidrJson(cidr("8.8.8.8/32"));
  EXPECT_EQ(host["size"], 1);
  EXPECT_EQ(host["usable_aws"], 0);
  EXPECT_TRUE(host["first_usable"].is_null());
  EXPECT_TRUE(host["last_usable"].is_null());
  EXPECT_EQ(host["private"], false);
  json c = cidrJson(cidr("192.168.0.0/30"));
  EXPECT_TRUE(c["first_usable"].is_null());
  EXPECT_EQ(c["class"], "C");
  json everything = cidrJson(cidr("0.0.0.0/0"));
  EXPECT_EQ(everything["size"], uint64_t{1} << 32);
}

}  // namespace
}  // namespace corral::api
