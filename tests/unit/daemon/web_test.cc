// What corrald's front end answers outside the API: the dashboard page, and the loopback port's limits.
#include "daemon/web.h"

#include <gtest/gtest.h>

#include <string_view>
#include <vector>

namespace corral::daemon {
namespace {

TEST(Web, ThePageIsServedAtTheRootAndOnlyForGetOrHead) {
  for (const char* target : {"/", "/dashboard", "/index.html", "/?vpc=prod"}) {
    auto page = staticPage("GET", target);
    ASSERT_TRUE(page) << target;
    EXPECT_EQ(page->contentType, "text/html; charset=utf-8");
    EXPECT_EQ(page->body, dashboardPage());
  }
  EXPECT_TRUE(staticPage("HEAD", "/"));
  EXPECT_FALSE(staticPage("POST", "/"));
  EXPECT_FALSE(staticPage("GET", "/v1/dashboard"));
  EXPECT_FALSE(staticPage("GET", "/dashboard/x"));
}

TEST(Web, ThePageIsSelfContainedListensToTheEventsAndCanPoll) {
  const std::string_view page = dashboardPage();
  EXPECT_TRUE(page.starts_with("<!doctype html>"));
  EXPECT_NE(page.find("fetch(\"/v1/dashboard\""), std::string_view::npos);
  EXPECT_NE(page.find("new EventSource(\"/v1/dashboard/events\")"), std::string_view::npos);
  EXPECT_NE(page.find("addEventListener(\"dashboard-patch\""), std::string_view::npos)
      << "after the whole view corrald sends patches";
  // No outside resource: the page must work on a host without internet, and the policy forbids them.
  for (const char* outside : {"http://", "https://", "src=\"//", "href=\"//"}) {
    EXPECT_EQ(page.find(outside), std::string_view::npos) << outside;
  }
  EXPECT_NE(kPageSecurityPolicy.find("default-src 'none'"), std::string_view::npos);
}

TEST(Web, TheDashboardPortIsReadOnly) {
  EXPECT_FALSE(refuseOnDashboardPort("GET", "/", "127.0.0.1:8080"));
  EXPECT_FALSE(refuseOnDashboardPort("GET", "/v1/dashboard", "localhost:8080"));
  EXPECT_FALSE(refuseOnDashboardPort("GET", "/v1/dashboard?x=1", "[::1]:8080"));
  EXPECT_FALSE(refuseOnDashboardPort("GET", "/v1/dashboard/events", "127.0.0.1:8080"));
  EXPECT_FALSE(refuseOnDashboardPort("GET", "/v1/flow-logs?follow=true&limit=30", "127.0.0.1:8080"));
  EXPECT_TRUE(isDashboardEvents("GET", "/v1/dashboard/events?since=3"));
  EXPECT_FALSE(isDashboardEvents("POST", "/v1/dashboard/events"));
  EXPECT_FALSE(isDashboardEvents("GET", "/v1/dashboard/events/x"));
  // Only what the page draws: a kept comparison as sent, or an instance (even asking for its env), is not.
  for (auto [method, target] :
       {std::pair{"POST", "/v1/vpcs"}, std::pair{"GET", "/v1/instances"},
        std::pair{"GET", "/v1/instances/web"}, std::pair{"GET", "/v1/instances/web?show_env=true"},
        std::pair{"GET", "/v1/instances/web/logs"}, std::pair{"DELETE", "/v1/vpcs/prod"},
        std::pair{"GET", "/v1/comparisons"}, std::pair{"GET", "/v1/comparisons/latest"},
        std::pair{"POST", "/v1/comparisons"}, std::pair{"POST", "/v1/trace"}, std::pair{"GET", "/v1/info"},
        std::pair{"POST", "/v1/dashboard/events"}, std::pair{"POST", "/v1/flow-logs"}}) {
    auto refused = refuseOnDashboardPort(method, target, "127.0.0.1:8080");
    ASSERT_TRUE(refused) << method << " " << target;
    EXPECT_EQ(refused->kind(), ErrorKind::Forbidden);
    EXPECT_NE(refused->message().find("read-only"), std::string::npos) << refused->message();
  }
}

TEST(Web, TheDashboardPortAnswersOnlyLoopbackHostNames) {
  for (const char* host : {"127.0.0.1:1", "127.1.2.3:9000", "localhost", "[::1]"}) {
    EXPECT_FALSE(refuseOnDashboardPort("GET", "/", host)) << host;
  }
  // A DNS name rebound to 127.0.0.1 by some web page, or a sloppy look-alike, is refused.
  for (const char* host : {"evil.example:8080", "", "127.0.0.1.evil.example", "localhost.evil",
                           "127.0.0.1:80x", "[::1]x", "128.0.0.1:80", "127.0.0:80"}) {
    auto refused = refuseOnDashboardPort("GET", "/", host);
    ASSERT_TRUE(refused) << host;
    EXPECT_EQ(refused->field(), "host");
  }
}

// Host names are case-insensitive (RFC 3986), so LOCALHOST is the loopback too; which of two Host headers a
// check reads must not matter, so two are a 400, as HTTP/1.1 requires.
TEST(Web, TheHostCheckIgnoresLetterCaseAndRefusesTwoHostHeaders) {
  for (const char* host : {"LOCALHOST", "LocalHost:8080", "localhost:1"}) {
    EXPECT_FALSE(refuseOnDashboardPort("GET", "/v1/dashboard", host)) << host;
  }
  for (const char* host : {"EVIL.example", "LOCALHOST.evil", "localhost:8o"}) {
    auto refused = refuseOnDashboardPort("GET", "/", host);
    ASSERT_TRUE(refused) << host;
    EXPECT_EQ(refused->kind(), ErrorKind::Forbidden);
  }
  const std::vector<std::vector<std::string_view>> bad = {
      {"127.0.0.1", "evil.example"}, {"evil.example", "127.0.0.1"}, {"localhost", "localhost"}, {}};
  for (const auto& hosts : bad) {
    auto refused = refuseOnDashboardPort("GET", "/v1/dashboard", hosts);
    ASSERT_TRUE(refused) << hosts.size();
    EXPECT_EQ(refused->kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(refused->field(), "host");
  }
  EXPECT_FALSE(refuseRepeatedHost(0));
  EXPECT_FALSE(refuseRepeatedHost(1));
  ASSERT_TRUE(refuseRepeatedHost(2));
  EXPECT_EQ(refuseRepeatedHost(2)->kind(), ErrorKind::InvalidArgument);
}

}  // namespace
}  // namespace corral::daemon
