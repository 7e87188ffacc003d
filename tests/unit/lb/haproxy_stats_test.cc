// `show stat` as HAProxy 2.6 writes it, read into target health and the firewall's per-rule counters.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "core/unique_fd.h"
#include "lb/haproxy.h"

#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace corral::lb {
namespace {

// The columns corral reads, in HAProxy's order, with others between them (what matters is the header).
constexpr std::string_view kStats =
    "# pxname,svname,qcur,scur,stot,dreq,status,weight,check_status,\n"
    "listener-80,FRONTEND,,,9,3,OPEN,,,\n"
    "deny-80-1,BACKEND,0,0,2,2,UP,0,,\n"
    "deny-80-3,BACKEND,0,0,1,1,UP,0,,\n"
    "tg-web,web-1,0,0,4,,UP,1,L7OK,\n"
    "tg-web,web-2,0,0,2,,DOWN,1,L4CON,\n"
    "tg-web,BACKEND,0,0,6,0,UP,1,,\n"
    "\n";

TEST(HaproxyStats, ParsedByHeader) {
  auto stats = parseShowStat(kStats);
  ASSERT_TRUE(stats) << stats.error().message();
  ASSERT_EQ(stats->size(), 6u);
  EXPECT_EQ((*stats)[3].proxy, "tg-web");
  EXPECT_EQ((*stats)[3].server, "web-1");
  EXPECT_EQ((*stats)[3].sessions, 4);
  EXPECT_EQ((*stats)[4].checkStatus, "L4CON");
  EXPECT_EQ((*stats)[1].denied, 2);
  EXPECT_FALSE(parseShowStat("pxname,svname\n"));
  EXPECT_FALSE(parseShowStat("# pxname,svname,stot\nx,y,1\n")) << "a needed column is missing";
}

// The requests policy's counter: a backend's req_tot (HTTP requests) where HAProxy writes one, else its
// stot (sessions, as a TCP backend's only count), and no figure for a group no backend serves.
TEST(HaproxyStats, TargetGroupRequestsFromReqTotElseStot) {
  constexpr std::string_view withReqTot =
      "# pxname,svname,stot,dreq,status,check_status,req_tot,\n"
      "tg-web,web-1,3,,UP,L7OK,,\n"
      "tg-web,BACKEND,3,0,UP,,41,\n"
      "tg-db,BACKEND,7,0,UP,,,\n";
  auto stats = parseShowStat(withReqTot);
  ASSERT_TRUE(stats) << stats.error().message();
  EXPECT_EQ(targetGroupRequests(TargetGroup{.name = "web"}, *stats), 41);
  EXPECT_EQ(targetGroupRequests(TargetGroup{.name = "db"}, *stats), 7) << "an empty req_tot: stot";
  EXPECT_EQ(targetGroupRequests(TargetGroup{.name = "api"}, *stats), std::nullopt);
  auto older = parseShowStat(kStats);
  ASSERT_TRUE(older);
  EXPECT_EQ(targetGroupRequests(TargetGroup{.name = "web"}, *older), 6) << "no req_tot column: stot";
}

TEST(HaproxyStats, TargetHealthAndFirewallCounts) {
  auto stats = parseShowStat(kStats);
  ASSERT_TRUE(stats);
  TargetGroup group{.name = "web", .targets = {"web-1", "web-2", "web-3", "web-4"}};
  auto health =
      targetHealth(group, *stats, {{"web-1", "10.0.1.10"}, {"web-2", "10.0.1.11"}, {"web-4", "10.0.1.13"}});
  ASSERT_EQ(health.size(), 4u);
  EXPECT_EQ(health[0].state, "healthy");
  EXPECT_EQ(health[0].requests, 4);
  EXPECT_EQ(health[1].state, "unhealthy");
  EXPECT_EQ(health[1].reason, "DOWN (L4CON)");
  EXPECT_EQ(health[2].state, "unused") << "no address: not running";
  EXPECT_EQ(health[3].state, "unknown") << "an address but no stats (a reload under way)";

  Listener listener{.port = 80, .firewall = {{.id = 1}, {.id = 2}, {.id = 3}}};
  EXPECT_EQ(firewallCounts(listener, *stats), (std::map<int64_t, int64_t>{{1, 2}, {2, 0}, {3, 1}}));
}

// A run directory under a long --lb-dir: the admin socket's path passes sun_path's 108 bytes, and is
// still reached (through its directory, /proc/self/fd/N/admin.sock). A test double answers one command.
TEST(HaproxyCommand, ReachesASocketWhosePathPassesSunPath) {
  char pattern[] = "/tmp/corral-lbsock-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::string top = pattern;
  const std::string dir = top + "/" + std::string(60, 'd') + "/" + std::string(60, 'e');
  std::filesystem::create_directories(dir);
  const std::string path = dir + "/admin.sock";
  ASSERT_GT(path.size(), sizeof(sockaddr_un::sun_path));

  UniqueFd directory(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  ASSERT_TRUE(directory);
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{.sun_family = AF_UNIX};
  const std::string bound = fmt::format("/proc/self/fd/{}/admin.sock", directory.get());
  std::memcpy(address.sun_path, bound.c_str(), bound.size() + 1);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0)
      << std::strerror(errno);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  std::string asked;
  std::thread server([&] {
    UniqueFd conn(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return;
    char buffer[64];
    ssize_t n = ::read(conn.get(), buffer, sizeof buffer);
    if (n > 0) asked.assign(buffer, static_cast<size_t>(n));
    (void)!::write(conn.get(), "Name: HAProxy\n", 14);
  });
  auto answer = haproxyCommand(path, "show info", std::chrono::seconds(5));
  server.join();
  std::filesystem::remove_all(top);
  ASSERT_TRUE(answer) << answer.error().message();
  EXPECT_EQ(*answer, "Name: HAProxy\n");
  EXPECT_EQ(asked, "show info\n");
}

}  // namespace
}  // namespace corral::lb
