// The instance schema's vocabulary: kind names both ways, and the pure parsers the CLI and corrald share.
#include "schema/instance.h"

#include <gtest/gtest.h>

namespace corral::schema {
namespace {

TEST(InstanceKind, NamesRoundTrip) {
  for (InstanceKind kind : {InstanceKind::container, InstanceKind::vm}) {
    auto parsed = parseInstanceKind(instanceKindName(kind));
    ASSERT_TRUE(parsed.has_value());
    EXPECT_EQ(*parsed, kind);
  }
  EXPECT_EQ(instanceKindName(InstanceKind::container), "container");
  EXPECT_EQ(instanceKindName(InstanceKind::vm), "vm");
}

TEST(InstanceKind, UnknownIsRefusedNamingTheField) {
  auto parsed = parseInstanceKind("Vm", "spec.kind");
  ASSERT_FALSE(parsed.has_value());
  EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(parsed.error().field(), "spec.kind");
  EXPECT_NE(parsed.error().message().find("\"container\", \"vm\""), std::string::npos);
}

TEST(SeccompChoice, TheThreeFormsOfTheText) {
  auto dockerDefault = parseSeccompChoice("default");
  ASSERT_TRUE(dockerDefault);
  EXPECT_EQ(*dockerDefault, (SeccompChoice{.mode = SeccompMode::dockerDefault, .profilePath = {}}));
  auto unconfined = parseSeccompChoice("unconfined");
  ASSERT_TRUE(unconfined);
  EXPECT_EQ(*unconfined, (SeccompChoice{.mode = SeccompMode::unconfined, .profilePath = {}}));
  auto file = parseSeccompChoice("/etc/corral/default");
  ASSERT_TRUE(file);
  EXPECT_EQ(*file, (SeccompChoice{.mode = SeccompMode::profileFile, .profilePath = "/etc/corral/default"}));
  // The spec's default is Docker's policy.
  EXPECT_EQ(parseSeccompChoice(InstanceSpec{}.seccomp)->mode, SeccompMode::dockerDefault);
}

TEST(SeccompChoice, AnythingElseIsRefusedNamingTheField) {
  for (std::string_view text : {"", "Default", "unconfined ", "profile.json", "./p.json"}) {
    auto parsed = parseSeccompChoice(text);
    ASSERT_FALSE(parsed) << text;
    EXPECT_EQ(parsed.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(parsed.error().field(), "seccomp");
    EXPECT_NE(parsed.error().message().find("absolute path to a JSON profile"), std::string::npos)
        << parsed.error().message();
  }
  EXPECT_EQ(parseSeccompChoice("nope", "spec.seccomp").error().field(), "spec.seccomp");
}

TEST(InstanceSpec, EqualityComparesEveryField) {
  InstanceSpec a;
  a.name = "web";
  EXPECT_EQ(a, a);
  InstanceSpec b = a;
  b.kind = InstanceKind::vm;
  EXPECT_NE(a, b);
  b = a;
  b.publicIp = false;
  EXPECT_NE(a, b);
}

TEST(Hostname, LabelRules) {
  EXPECT_TRUE(validateHostname("web-1").has_value());
  EXPECT_EQ(validateHostname("-web").error().field(), "hostname");
  EXPECT_EQ(validateHostname(std::string(64, 'a')).error().field(), "hostname");
}

}  // namespace
}  // namespace corral::schema
