// Image references as docker spells them, WWW-Authenticate challenges and docker credential files.
#include "images/oci/reference.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "images/oci/registry.h"

namespace corral::images {
namespace {

TEST(Reference, FillsInWhatDockerFillsIn) {
  struct Case {
    std::string text, registry, repository, tag, printed;
  };
  for (const Case& c : std::vector<Case>{
           {"busybox", "docker.io", "library/busybox", "latest", "docker.io/library/busybox:latest"},
           {"nginx:1.25-alpine", "docker.io", "library/nginx", "1.25-alpine",
            "docker.io/library/nginx:1.25-alpine"},
           {"bitnami/redis", "docker.io", "bitnami/redis", "latest", "docker.io/bitnami/redis:latest"},
           {"index.docker.io/library/redis:7", "docker.io", "library/redis", "7",
            "docker.io/library/redis:7"},
           {"ghcr.io/owner/app/sub:v1.2.3", "ghcr.io", "owner/app/sub", "v1.2.3",
            "ghcr.io/owner/app/sub:v1.2.3"},
           {"127.0.0.1:5000/test/app", "127.0.0.1:5000", "test/app", "latest",
            "127.0.0.1:5000/test/app:latest"},
           {"localhost/app_x__y.z-w:t", "localhost", "app_x__y.z-w", "t", "localhost/app_x__y.z-w:t"},
       }) {
    auto ref = parseReference(c.text);
    ASSERT_TRUE(ref) << c.text << ": " << ref.error().message();
    EXPECT_EQ(ref->registry, c.registry) << c.text;
    EXPECT_EQ(ref->repository, c.repository) << c.text;
    EXPECT_EQ(ref->tag, c.tag) << c.text;
    EXPECT_EQ(ref->text(), c.printed) << c.text;
    EXPECT_FALSE(ref->digest);
  }
  auto docker = parseReference("redis");
  EXPECT_EQ(docker->apiHost(), "registry-1.docker.io");
  auto pinned = parseReference("ghcr.io/a/b@sha256:" + std::string(64, 'e'));
  ASSERT_TRUE(pinned);
  EXPECT_EQ(pinned->tag, "");
  EXPECT_EQ(pinned->manifestReference(), "sha256:" + std::string(64, 'e'));
  auto both = parseReference("a/b:1@sha256:" + std::string(64, 'e'));
  ASSERT_TRUE(both);
  EXPECT_EQ(both->tag, "1");
  EXPECT_EQ(both->text(), "docker.io/a/b:1@sha256:" + std::string(64, 'e'));
}

TEST(Reference, RefusesBadReferencesSayingWhichPart) {
  for (auto [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"", "is empty"},
           {"UPPER/case", "repository"},
           {"app:", "tag"},
           {"app:-x", "tag"},
           {"app:" + std::string(129, 'a'), "tag"},
           {"a//b", "repository"},
           {"-a", "repository"},
           {"a@sha256:xyz", "hex digits"},
           {"ghcr.io/", "names no repository"},
           {"bad_host!.io/x", "is not a host name"},
       }) {
    auto ref = parseReference(text);
    ASSERT_FALSE(ref) << text;
    EXPECT_EQ(ref.error().field(), "reference") << text;
    EXPECT_NE(ref.error().message().find(says), std::string::npos) << text << ": " << ref.error().message();
  }
}

TEST(Reference, KnowsLoopbackRegistries) {
  for (std::string_view yes :
       {"localhost", "localhost:5000", "127.0.0.1", "127.0.0.1:40000", "127.1.2.3:1", "[::1]:5000"}) {
    EXPECT_TRUE(isLoopbackRegistry(yes)) << yes;
  }
  for (std::string_view no :
       {"docker.io", "127.0.0.1.example.com", "10.0.0.1:5000", "[::2]:5000", "localhost.evil"}) {
    EXPECT_FALSE(isLoopbackRegistry(no)) << no;
  }
}

TEST(Challenge, ParsesBearerAndBasic) {
  auto bearer = parseChallenge(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull")");
  ASSERT_TRUE(bearer);
  EXPECT_EQ(bearer->scheme, "Bearer");
  EXPECT_EQ(bearer->parameters.at("realm"), "https://auth.docker.io/token");
  EXPECT_EQ(bearer->parameters.at("service"), "registry.docker.io");
  EXPECT_EQ(bearer->parameters.at("scope"), "repository:library/busybox:pull");
  auto basic = parseChallenge(R"(Basic realm="Registry Realm")");
  ASSERT_TRUE(basic);
  EXPECT_EQ(basic->scheme, "Basic");
  EXPECT_EQ(basic->parameters.at("realm"), "Registry Realm");
  EXPECT_FALSE(parseChallenge("garbage"));
}

TEST(Credentials, ReadsDockerConfigFiles) {
  std::filesystem::path file = std::filesystem::path(::testing::TempDir()) / "corral-docker-config.json";
  std::ofstream(file) << R"({"auths":{"127.0.0.1:5000":{"auth":"YWxpY2U6czNjcjN0OndpdGg6Y29sb25z"},
                             "https://index.docker.io/v1/":{"auth":"Ym9iOnB3"},
                             "ghcr.io":{"username":"carol","password":"tok"},
                             "bad.io":{"auth":"bm9jb2xvbg=="}}})";
  auto alice = credentialsFor(file, "127.0.0.1:5000");
  ASSERT_TRUE(alice && *alice);
  EXPECT_EQ((*alice)->username, "alice");
  EXPECT_EQ((*alice)->password, "s3cr3t:with:colons");
  auto bob = credentialsFor(file, "docker.io");
  ASSERT_TRUE(bob && *bob);
  EXPECT_EQ((*bob)->username, "bob");
  EXPECT_EQ((*bob)->password, "pw");
  auto carol = credentialsFor(file, "ghcr.io");
  ASSERT_TRUE(carol && *carol);
  EXPECT_EQ((*carol)->password, "tok");
  auto none = credentialsFor(file, "quay.io");
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
  auto bad = credentialsFor(file, "bad.io");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().field(), "auth_file");
  std::filesystem::remove(file);
}

}  // namespace
}  // namespace corral::images
