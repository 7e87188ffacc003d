// Instance metadata's answers, purely: tokens bound to (VPC, address) and their TTL, 401 without one, each
// path, and user data's limits.
#include "daemon/instance_metadata.h"

#include <gtest/gtest.h>

#include <string>

#include "api/api.h"

namespace corral::daemon {
namespace {

using Clock = MetadataTokens::Clock;

std::optional<MetadataIdentity> twoInstances(const std::string& vpc, const std::string& source) {
  if (vpc == "lab" && source == "10.0.1.4")
    return MetadataIdentity{.instanceId = "web-1",
                            .localIpv4 = "10.0.1.4",
                            .mac = "02:c0:0a:00:01:04",
                            .hostname = "web",
                            .publicIpv4 = "100.64.128.1",
                            .securityGroups = {"lab-default", "web"},
                            .availabilityZone = "az1",
                            .userData = "#!/bin/sh\necho hi\n"};
  if (vpc == "lab" && source == "10.0.1.5")
    return MetadataIdentity{.instanceId = "db",
                            .localIpv4 = "10.0.1.5",
                            .mac = "02:c0:0a:00:01:05",
                            .hostname = "db",
                            .publicIpv4 = "",
                            .securityGroups = {"lab-default"},
                            .availabilityZone = "az1",
                            .userData = ""};
  return std::nullopt;
}

MetadataResponse ask(MetadataTokens& tokens, const std::string& method, const std::string& target,
                     const std::string& source, std::optional<std::string> token = std::nullopt,
                     std::optional<std::string> ttl = std::nullopt,
                     Clock::time_point now = Clock::time_point{}) {
  return answerMetadata(
      {.method = method, .target = target, .token = std::move(token), .tokenTtl = std::move(ttl)}, "lab",
      source, tokens, twoInstances, now);
}

TEST(InstanceMetadata, ATokenFirstThenEachPathWithIt) {
  MetadataTokens tokens;
  EXPECT_EQ(ask(tokens, "GET", "/latest/meta-data/local-ipv4", "10.0.1.4").status, 401);
  EXPECT_EQ(ask(tokens, "GET", "/latest/meta-data/local-ipv4", "10.0.1.4", "made-up").status, 401);
  MetadataResponse token = ask(tokens, "PUT", "/latest/api/token", "10.0.1.4", std::nullopt, "60");
  ASSERT_EQ(token.status, 200) << token.body;
  EXPECT_EQ(token.body.size(), 64u);
  auto get = [&](const std::string& path) { return ask(tokens, "GET", path, "10.0.1.4", token.body); };
  EXPECT_EQ(get("/latest/meta-data/instance-id").body, "web-1");
  EXPECT_EQ(get("/latest/meta-data/local-ipv4").body, "10.0.1.4");
  EXPECT_EQ(get("/latest/meta-data/mac").body, "02:c0:0a:00:01:04");
  EXPECT_EQ(get("/latest/meta-data/hostname").body, "web");
  EXPECT_EQ(get("/latest/meta-data/public-ipv4").body, "100.64.128.1");
  EXPECT_EQ(get("/latest/meta-data/security-groups").body, "lab-default\nweb");
  EXPECT_EQ(get("/latest/meta-data/placement/availability-zone").body, "az1");
  EXPECT_EQ(get("/latest/user-data").body, "#!/bin/sh\necho hi\n");
  EXPECT_EQ(get("/latest/meta-data/iam/security-credentials/").status, 404);
  EXPECT_EQ(ask(tokens, "POST", "/latest/meta-data/mac", "10.0.1.4", token.body).status, 405);
}

TEST(InstanceMetadata, OneInstancesTokenIsNothingToAnother) {
  MetadataTokens tokens;
  MetadataResponse web = ask(tokens, "PUT", "/latest/api/token", "10.0.1.4", std::nullopt, "60");
  ASSERT_EQ(web.status, 200);
  EXPECT_EQ(ask(tokens, "GET", "/latest/meta-data/instance-id", "10.0.1.5", web.body).status, 401);
  EXPECT_EQ(answerMetadata({.method = "GET",
                            .target = "/latest/meta-data/instance-id",
                            .token = web.body,
                            .tokenTtl = std::nullopt},
                           "other-vpc", "10.0.1.4", tokens, twoInstances, Clock::time_point{})
                .status,
            401)
      << "the same address in another VPC is another instance";
  MetadataResponse db = ask(tokens, "PUT", "/latest/api/token", "10.0.1.5", std::nullopt, "60");
  ASSERT_EQ(db.status, 200);
  EXPECT_EQ(ask(tokens, "GET", "/latest/meta-data/instance-id", "10.0.1.5", db.body).body, "db");
  EXPECT_EQ(ask(tokens, "GET", "/latest/meta-data/public-ipv4", "10.0.1.5", db.body).status, 404);
  EXPECT_EQ(ask(tokens, "GET", "/latest/user-data", "10.0.1.5", db.body).status, 404);
  // Nobody at the address: no token.
  EXPECT_EQ(ask(tokens, "PUT", "/latest/api/token", "10.0.1.9", std::nullopt, "60").status, 403);
}

TEST(InstanceMetadata, TokensNeedAValidTtlAndExpire) {
  MetadataTokens tokens;
  for (const char* bad : {"", "0", "21601", "-5", "60s", "1e3"}) {
    EXPECT_EQ(ask(tokens, "PUT", "/latest/api/token", "10.0.1.4", std::nullopt, std::string(bad)).status, 400)
        << bad;
  }
  EXPECT_EQ(ask(tokens, "PUT", "/latest/api/token", "10.0.1.4").status, 400) << "no TTL header";
  EXPECT_EQ(ask(tokens, "GET", "/latest/api/token", "10.0.1.4", std::nullopt, "60").status, 405);
  const Clock::time_point start{};
  MetadataResponse token = ask(tokens, "PUT", "/latest/api/token", "10.0.1.4", std::nullopt, "2", start);
  ASSERT_EQ(token.status, 200);
  EXPECT_EQ(ask(tokens, "GET", "/latest/meta-data/mac", "10.0.1.4", token.body, std::nullopt,
                start + std::chrono::seconds(1))
                .status,
            200);
  EXPECT_EQ(ask(tokens, "GET", "/latest/meta-data/mac", "10.0.1.4", token.body, std::nullopt,
                start + std::chrono::seconds(2))
                .status,
            401);
}

TEST(InstanceMetadata, UserDataIsBase64OfAtMost16KiB) {
  EXPECT_EQ(decodeUserData(api::base64Encode("#!/bin/sh\n")).value(), "#!/bin/sh\n");
  EXPECT_EQ(decodeUserData(api::base64Encode(std::string(16 * 1024, 'x'))).value().size(), 16u * 1024);
  auto big = decodeUserData(api::base64Encode(std::string(16 * 1024 + 1, 'x')));
  ASSERT_FALSE(big.has_value());
  EXPECT_EQ(big.error().field(), "user_data");
  EXPECT_NE(big.error().message().find("16385 bytes"), std::string::npos) << big.error().message();
  auto malformed = decodeUserData("not base64!");
  ASSERT_FALSE(malformed.has_value());
  EXPECT_EQ(malformed.error().field(), "user_data");
}

}  // namespace
}  // namespace corral::daemon
