// The peer port (corrald --peer-listen, docs/cluster.md): the whole API over TCP for the cluster's other
// corralds, each request carrying the cluster's token. What a peer creates there is what the host's own
// socket shows; a wrong token, none, a token file others may read or no token file at all refuse every
// request and change nothing; a token written later counts at once; bad options stop corrald at start.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <regex>
#include <string>

#include "api/client.h"
#include "tests/integration/harness.h"

namespace corral {
namespace {

using testing::TestDaemon;

const api::Request kListVpcs = api::List<api::ObjectKind::Vpc>{.vpc = {}};
const std::string kToken = "c0ffee0123456789abcdef0123456789abcdef0123456789abcdef0123456789";

void writeToken(const std::string& path, const std::string& token, mode_t mode) {
  ::unlink(path.c_str());
  std::ofstream(path) << token << "\n";
  ::chmod(path.c_str(), mode);
}

class PeerPort : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::requireRoot()) GTEST_SKIP() << "needs root";
    tokenFile_ = daemon_.dir() + "/cluster-token";
    writeToken(tokenFile_, kToken, 0600);
    ASSERT_TRUE(daemon_.start()) << daemon_.logTail();
    std::smatch match;
    const std::string log = daemon_.log();
    ASSERT_TRUE(std::regex_search(log, match, std::regex("peer API: 127\\.0\\.0\\.1:(\\d+)"))) << log;
    port_ = static_cast<uint16_t>(std::stoi(match[1]));
  }

  api::Client peer(const std::string& token) const { return api::Client::peer("127.0.0.1", port_, token); }

  // What the host's own socket lists.
  std::vector<std::string> vpcNames() {
    std::vector<std::string> names;
    for (const auto& vpc : daemon_.list("vpcs")) names.push_back(vpc["name"]);
    return names;
  }

  // A request without an Authorization header at all (curl, not our client, which always sends one).
  std::string withoutToken(const std::string& target) {
    return testing::programOutput({"/usr/bin/curl", "-s", "-w", " HTTP %{http_code}",
                                   fmt::format("http://127.0.0.1:{}{}", port_, target)});
  }

  TestDaemon daemon_{"peer"};
  std::string tokenFile_;
  uint16_t port_ = 0;

 public:
  PeerPort() {
    daemon_.setExtraArgs(
        {"--peer-listen", "127.0.0.1:0", "--peer-token-file", daemon_.dir() + "/cluster-token"});
  }
};

TEST_F(PeerPort, APeerWithTheTokenUsesTheWholeApi) {
  auto created =
      peer(kToken).call(api::Create<schema::VpcSpec>{.spec = {.name = "remote", .cidr = "10.61.0.0/16"}});
  ASSERT_TRUE(created) << created.error().message();
  EXPECT_EQ(vpcNames(), std::vector<std::string>{"remote"}) << "the host's own socket shows it";
  auto listed = peer(kToken).call(kListVpcs);
  ASSERT_TRUE(listed) << listed.error().message();
  ASSERT_EQ((*listed)["vpcs"].size(), 1u) << listed->dump();
  EXPECT_EQ((*listed)["vpcs"][0]["name"], "remote");
  auto removed = peer(kToken).call(api::Delete<api::ObjectKind::Vpc>{.name = "remote"});
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_TRUE(vpcNames().empty());
}

TEST_F(PeerPort, AWrongTokenOrNoneIsRefusedAndChangesNothing) {
  for (const std::string& token :
       {std::string("not-the-token"), kToken.substr(0, kToken.size() - 1) + "0", std::string()}) {
    auto created =
        peer(token).call(api::Create<schema::VpcSpec>{.spec = {.name = "intruder", .cidr = "10.62.0.0/16"}});
    ASSERT_FALSE(created) << "token \"" << token << "\"";
    EXPECT_EQ(created.error().kind(), ErrorKind::Forbidden) << created.error().message();
    EXPECT_EQ(created.error().field(), "authorization") << created.error().message();
  }
  const std::string bare = withoutToken("/v1/vpcs");
  EXPECT_NE(bare.find("HTTP 403"), std::string::npos) << bare;
  EXPECT_NE(bare.find("Authorization: Bearer TOKEN"), std::string::npos) << bare;
  EXPECT_TRUE(vpcNames().empty()) << "nothing was created";
}

TEST_F(PeerPort, TheTokenFileIsReadAtEachRequest) {
  // Others may read it: it authenticates nothing.
  writeToken(tokenFile_, kToken, 0644);
  auto open = peer(kToken).call(kListVpcs);
  ASSERT_FALSE(open);
  EXPECT_EQ(open.error().kind(), ErrorKind::Forbidden);
  EXPECT_NE(open.error().message().find("in no cluster"), std::string::npos) << open.error().message();
  EXPECT_NE(daemon_.log().find("others may read it"), std::string::npos) << daemon_.logTail();

  // Gone: this host is in no cluster.
  ::unlink(tokenFile_.c_str());
  auto none = peer(kToken).call(kListVpcs);
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("in no cluster"), std::string::npos) << none.error().message();

  // A new token counts at once; the old one no longer does.
  const std::string next = "feedface" + kToken.substr(8);
  writeToken(tokenFile_, next, 0600);
  EXPECT_TRUE(peer(next).call(kListVpcs));
  auto old = peer(kToken).call(kListVpcs);
  ASSERT_FALSE(old);
  EXPECT_EQ(old.error().field(), "authorization");
}

TEST(PeerPortOptions, BadOptionsStopCorraldAtStartNamingTheOption) {
  if (!testing::requireRoot()) GTEST_SKIP() << "needs root";
  struct Case {
    std::vector<std::string> args;
    std::string expected;
  };
  for (const Case& c : std::vector<Case>{
           {{"--peer-listen", "127.0.0.1:7443"}, "--peer-token-file: --peer-listen needs the file"},
           {{"--peer-listen", "localhost:7443", "--peer-token-file", "/nonexistent"},
            "--peer-listen: \"localhost\" is not an IP address"},
           {{"--peer-listen", "127.0.0.1:70000", "--peer-token-file", "/nonexistent"},
            "--peer-listen: \"70000\" is not a TCP port"},
           {{"--peer-listen", "127.0.0.1", "--peer-token-file", "/nonexistent"},
            "--peer-listen: \"127.0.0.1\" is not ADDRESS:PORT"},
           {{"--peer-listen", "192.0.2.1:7443", "--peer-token-file", "/nonexistent"},
            "--peer-listen: 192.0.2.1 is not an address of this host"},
       }) {
    TestDaemon daemon("peer-bad", c.args);
    EXPECT_FALSE(daemon.start()) << fmt::format("{}", fmt::join(c.args, " "));
    EXPECT_NE(daemon.log().find(c.expected), std::string::npos) << daemon.log();
  }
}

}  // namespace
}  // namespace corral
