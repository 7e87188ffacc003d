// The dashboard in a real browser: corrald with --http-port serves the page, headless Chromium loads it from
// the loopback port, and the test checks what the page shows both in its DOM and in screenshots (the
// pixels where the DOM says an instance or a chart bar is drawn), then changes the state through the API
// and watches the page follow. A group's card shows its target group: the load balancer in front of it and
// each target's health, following a failing health check live. Also: the port is read-only and answers only
// loopback host names, and the page is on the Unix socket too.
#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "tests/integration/browser.h"
#include "tests/integration/harness.h"
#include "tests/unit/api/cluster_view_fixture.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;
using testing::HeadlessBrowser;
using testing::Image;
using testing::TestDaemon;

// Colours the pictures use (api/topology_render.cc's style, api/compare_render.cc's bars).
constexpr std::array<uint8_t, 3> kContainerFill = {0xe2, 0xf4, 0xe0};
constexpr std::array<uint8_t, 3> kVmFill = {0xdb, 0xe8, 0xfb};
constexpr std::array<uint8_t, 3> kVmBar = {0xc0, 0x39, 0x2b};
constexpr std::array<uint8_t, 3> kContainerBar = {0x2a, 0x7a, 0xb0};

bool requireBrowser() {
  if (!testing::chromiumPath().empty()) return true;
  if (::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) ADD_FAILURE() << "chromium is not installed";
  return false;
}

struct Rect {
  int x = 0, y = 0, width = 0, height = 0;
  int area() const { return width * height; }
};

// Where the page draws the first element matching `selector` (CSS px; the screenshot is 1:1).
std::optional<Rect> boundsOf(HeadlessBrowser& browser, const std::string& selector) {
  auto value = browser.evaluate(fmt::format(
      "(() => {{ const e = document.querySelector({}); if (!e) return null; const r = "
      "e.getBoundingClientRect();"
      " return [Math.ceil(r.left), Math.ceil(r.top), Math.floor(r.width), Math.floor(r.height)]; }})()",
      json(selector).dump()));
  if (!value || !value->is_array()) return std::nullopt;
  return Rect{(*value)[0], (*value)[1], (*value)[2], (*value)[3]};
}

// The share of `rect`'s pixels (inset by 3 px, off the border) within 8 of `rgb` in the screenshot.
double shareNear(const Image& image, Rect rect, std::array<uint8_t, 3> rgb) {
  Rect inner{rect.x + 3, rect.y + 3, rect.width - 6, rect.height - 6};
  if (inner.area() <= 0) return 0;
  return static_cast<double>(image.countNear(inner.x, inner.y, inner.width, inner.height, rgb, 8)) /
         inner.area();
}

int count(HeadlessBrowser& browser, const std::string& selector) {
  auto value = browser.evaluate(fmt::format("document.querySelectorAll({}).length", json(selector).dump()));
  return value && value->is_number() ? value->get<int>() : -1;
}

// Keeps a screenshot for a person to look at (and for a failure's message).
std::string keepScreenshot(HeadlessBrowser& browser, const std::string& name) {
  const std::string path =
      (std::filesystem::temp_directory_path() / fmt::format("corral-{}.png", name)).string();
  if (auto png = browser.screenshotPng()) std::ofstream(path, std::ios::binary | std::ios::trunc) << *png;
  return path;
}

// One raw HTTP/1.1 request to 127.0.0.1:port with `hostLines` as its Host header lines (none, one or
// several); the whole answer, read until corrald closes (empty when nothing came back).
std::string rawAnswer(uint16_t port, const std::string& method, const std::string& target,
                      const std::vector<std::string>& hostLines, const std::string& body = "") {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    std::string hosts;
    for (const std::string& host : hostLines) hosts += "Host: " + host + "\r\n";
    std::string request = fmt::format(
        "{} {} HTTP/1.1\r\n{}Content-Type: application/json\r\n"
        "Content-Length: {}\r\nConnection: close\r\n\r\n{}",
        method, target, hosts, body.size(), body);
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;)
        answer.append(buffer, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return answer;
}

// GET /v1/info over corrald's Unix socket with `headers` (CRLF-terminated lines); the whole answer.
std::string socketAnswer(const std::string& socketPath, const std::string& headers) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return {};
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  socketPath.copy(address.sun_path, sizeof address.sun_path - 1);
  timeval timeout{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  std::string answer;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
    const std::string request = "GET /v1/info HTTP/1.1\r\n" + headers + "Connection: close\r\n\r\n";
    if (::write(fd, request.data(), request.size()) == static_cast<ssize_t>(request.size())) {
      char buffer[65536];
      for (ssize_t n; (n = ::read(fd, buffer, sizeof buffer)) > 0;)
        answer.append(buffer, static_cast<size_t>(n));
    }
  }
  ::close(fd);
  return answer;
}

int statusOf(const std::string& answer) {
  std::smatch match;
  static const std::regex kStatus("^HTTP/1\\.1 (\\d{3}) ");
  return std::regex_search(answer, match, kStatus) ? std::stoi(match[1]) : 0;
}

// The status code of one raw request with one Host header (0 when nothing came back).
int rawStatus(uint16_t port, const std::string& method, const std::string& target, const std::string& host,
              const std::string& body = "") {
  return statusOf(rawAnswer(port, method, target, {host}, body));
}

json comparison() {
  auto sample = [](const std::string& name, const std::string& kind, double bootMs, double memory) {
    return json{{"name", name},
                {"kind", kind},
                {"boot", {{"total_ms", bootMs}, {kind == "vm" ? "kernel_ms" : "clone_ms", bootMs / 2}}},
                {"usage", {{"memory_bytes", memory}}},
                {"error", nullptr}};
  };
  auto stats = [](double a, double b) {
    return json{{"median", (a + b) / 2}, {"min", std::min(a, b)}, {"max", std::max(a, b)}, {"count", 2}};
  };
  return {
      {"runs", 2},
      {"parallel", false},
      {"accelerator", "tcg"},
      {"samples",
       {sample("compare-c-1", "container", 12, 2e6), sample("compare-c-2", "container", 15, 3e6),
        sample("compare-v-1", "vm", 3000, 150e6), sample("compare-v-2", "vm", 3400, 160e6)}},
      {"summary",
       {{"container",
         {{"boot_ms", stats(12, 15)},
          {"boot_steps_median_ms", {{"clone_ms", 6.75}}},
          {"memory_bytes", stats(2e6, 3e6)}}},
        {"vm",
         {{"boot_ms", stats(3000, 3400)},
          {"boot_steps_median_ms", {{"kernel_ms", 1600}}},
          {"memory_bytes", stats(150e6, 160e6)}}}}},
      {"isolation",
       {{"container", {{"kernel_release", "host-kernel"}, {"kernel_equals_host", true}, {"pid1", "sleep"}}},
        {"vm", {{"kernel_release", "guest-kernel"}, {"kernel_equals_host", false}, {"pid1", "init"}}},
        {"host", {{"kernel_release", "host-kernel"}}}}},
      {"network", nullptr}};
}

class Dashboard : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::requireRoot() || !requireBrowser()) GTEST_SKIP() << "needs root and chromium";
    ASSERT_TRUE(daemon_.start()) << daemon_.log();
    testing::Reply info = daemon_.call("GET", "/v1/info");
    ASSERT_EQ(info.status, 200);
    const json& url = info.body["dashboard"]["url"];
    ASSERT_TRUE(url.is_string()) << info.body.dump();
    url_ = url.get<std::string>();
    std::smatch match;
    ASSERT_TRUE(std::regex_match(url_, match, std::regex("http://127\\.0\\.0\\.1:(\\d+)/"))) << url_;
    port_ = static_cast<uint16_t>(std::stoi(match[1]));
  }

  void buildVpc() {
    daemon_.must("POST", "/v1/vpcs", {{"name", "shop"}, {"cidr", "10.0.0.0/16"}});
    daemon_.must("POST", "/v1/subnets",
                 {{"name", "front"}, {"vpc", "shop"}, {"cidr", "10.0.1.0/24"}, {"map_public_ip", true}});
    daemon_.must("POST", "/v1/subnets", {{"name", "back"}, {"vpc", "shop"}, {"cidr", "10.0.2.0/24"}});
    daemon_.must("POST", "/v1/internet-gateways", {{"name", "shop-igw"}, {"vpc", "shop"}});
  }

  TestDaemon daemon_{"dashboard", {"--http-port", "0", "--accelerator", "tcg"}};
  std::string url_;
  uint16_t port_ = 0;
};

TEST_F(Dashboard, ShowsTheBuildingTheInstancesAndTheComparisonAndFollowsChangesLive) {
  buildVpc();
  daemon_.must("POST", "/v1/instances",
               {{"name", "web-1"}, {"subnet", "front"}, {"command", {"sleep", "1000"}}});
  json vm = daemon_.must("POST", "/v1/instances", {{"name", "vm-1"}, {"kind", "vm"}, {"subnet", "back"}});
  ASSERT_EQ(daemon_.waitWhile("vm-1", "starting").value("state", ""), "running") << daemon_.logTail();
  daemon_.must("POST", "/v1/comparisons", comparison());

  std::string error;
  auto browser = HeadlessBrowser::launch(1280, 1900, &error);
  ASSERT_TRUE(browser) << error;
  ASSERT_TRUE(browser->navigate(url_, 20s)) << browser->lastError() << browser->log();
  ASSERT_TRUE(
      browser->waitFor("Number(document.body.dataset.updates) >= 1 && "
                       "document.querySelector('g.instance-node[data-name=\"vm-1\"]')",
                       15s))
      << browser->lastError();

  // Pushed, not polled: the page listens to GET /v1/dashboard/events.
  EXPECT_EQ(browser->evaluate("document.body.dataset.transport"), json("events"));

  // The DOM: the building with both floors and both instances, the table, the chart, the isolation table.
  EXPECT_EQ(count(*browser, "[data-vpc=\"shop\"] svg"), 1);
  EXPECT_EQ(count(*browser,
                  "g.instance-node[data-name=\"web-1\"][data-kind=\"container\"][data-state=\"running\"]"),
            1);
  EXPECT_EQ(count(*browser, "g.instance-node[data-name=\"vm-1\"][data-kind=\"vm\"][data-state=\"running\"]"),
            1);
  auto text = browser->evaluate("document.body.innerText");
  ASSERT_TRUE(text && text->is_string()) << browser->lastError();
  for (const char* shown : {"subnet front", "subnet back", "internet gateway shop-igw", "VMs under TCG",
                            "the host's", "guest-kernel", "(= host: shared kernel)", "live"}) {
    EXPECT_NE(text->get<std::string>().find(shown), std::string::npos) << shown;
  }
  EXPECT_EQ(count(*browser, "#instances tr[data-instance=\"web-1\"][data-state=\"running\"]"), 1);
  EXPECT_EQ(count(*browser, "#instances tr[data-instance=\"vm-1\"][data-kind=\"vm\"]"), 1);
  EXPECT_EQ(count(*browser, "#compare-chart circle.boot-sample"), 4);
  EXPECT_EQ(count(*browser, "#compare-chart rect.memory-bar"), 2);
  EXPECT_EQ(count(*browser, "#isolation-table tr"), 11);  // the header and ten rows
  // Every text of the chart lies inside its viewBox as the browser lays it out (the caption and the last
  // axis label used to run past the card's edge, where the SVG cuts them off).
  auto outside = browser->evaluate(
      "(() => { const svg = document.querySelector('#compare-chart svg'); if (!svg) return ['no chart'];"
      " const box = svg.viewBox.baseVal; const out = [];"
      " for (const t of svg.querySelectorAll('text')) { const b = t.getBBox();"
      "   if (b.x < 0 || b.y < 0 || b.x + b.width > box.width || b.y + b.height > box.height)"
      "     out.push(t.textContent + ' at ' + [b.x, b.y, b.width, b.height].map(Math.round).join(','));"
      " } return out; })()");
  ASSERT_TRUE(outside && outside->is_array()) << browser->lastError();
  EXPECT_TRUE(outside->empty()) << "chart texts past the viewBox: " << outside->dump();

  // The pixels: where the DOM says the container, the VM and the memory bars are, their colours are.
  auto image = browser->screenshot();
  ASSERT_TRUE(image) << browser->lastError();
  const std::string before = keepScreenshot(*browser, "dashboard-test");
  auto containerBox = boundsOf(*browser, "g.instance-node[data-name=\"web-1\"] rect");
  auto vmBox = boundsOf(*browser, "g.instance-node[data-name=\"vm-1\"] rect");
  auto vmBar = boundsOf(*browser, "#compare-chart rect.memory-bar[data-kind=\"vm\"]");
  auto containerSample = boundsOf(*browser, "#compare-chart circle.boot-sample[data-kind=\"container\"]");
  ASSERT_TRUE(containerBox && vmBox && vmBar && containerSample) << browser->lastError();
  ASSERT_LE(vmBar->y + vmBar->height, image->height) << "the chart is below the screenshot: " << before;
  EXPECT_GT(shareNear(*image, *containerBox, kContainerFill), 0.5)
      << "container box at " << containerBox->x << "," << containerBox->y << " in " << before;
  EXPECT_GT(shareNear(*image, *vmBox, kVmFill), 0.3) << "VM box in " << before;  // a frame inside, and text
  EXPECT_GT(shareNear(*image, *vmBar, kVmBar), 0.9) << "VM memory bar in " << before;
  EXPECT_GT(image->countNear(containerSample->x, containerSample->y, containerSample->width,
                             containerSample->height, kContainerBar, 8),
            10u)
      << "a container boot sample in " << before;
  // The two kinds are told apart on screen: the VM box is not drawn in the container's colour.
  EXPECT_LT(shareNear(*image, *vmBox, kContainerFill), 0.05) << before;

  // Live: a stop shows as "stopped" (and the box fades) without reloading; a new instance appears.
  daemon_.must("POST", "/v1/instances/web-1/stop", {{"grace_seconds", 0}}, 200);
  ASSERT_TRUE(browser->waitFor(
      "document.querySelector('g.instance-node[data-name=\"web-1\"][data-state=\"stopped\"]') && "
      "document.querySelector('#instances tr[data-instance=\"web-1\"][data-state=\"stopped\"]')",
      5s))
      << browser->lastError();
  auto faded = browser->screenshot();
  ASSERT_TRUE(faded) << browser->lastError();
  auto fadedBox = boundsOf(*browser, "g.instance-node[data-name=\"web-1\"] rect");
  ASSERT_TRUE(fadedBox);
  EXPECT_LT(shareNear(*faded, *fadedBox, kContainerFill), 0.05)
      << "the stopped container is still drawn at full colour: "
      << keepScreenshot(*browser, "dashboard-test-stopped");
  daemon_.must("POST", "/v1/instances",
               {{"name", "web-2"}, {"subnet", "front"}, {"command", {"sleep", "1000"}}});
  EXPECT_TRUE(browser->waitFor(
      "document.querySelector('g.instance-node[data-name=\"web-2\"][data-state=\"running\"]')", 5s))
      << browser->lastError();
  EXPECT_TRUE(browser->consoleErrors().empty()) << browser->consoleErrors().front();

  // The page cannot change anything through the port it came from.
  auto posted = browser->evaluate(
      "fetch('/v1/vpcs', {method: 'POST', body: JSON.stringify({name: 'x', cidr: '10.9.0.0/16'})})"
      ".then((r) => r.status)");
  ASSERT_TRUE(posted) << browser->lastError();
  EXPECT_EQ(*posted, 403);
  EXPECT_EQ(daemon_.list("vpcs").size(), 1u);

  // When corrald goes away the page says so.
  daemon_.kill9();
  EXPECT_TRUE(browser->waitFor("document.getElementById('live').classList.contains('d-down')", 5s))
      << browser->lastError();
}

// A group of one busybox httpd behind a load balancer: its card names the target group, the load balancer
// and the member's health as HAProxy judges it (healthy, then unhealthy with HAProxy's reason once its
// health file is gone), drawn from what corrald already read (GET /v1/dashboard's target_health).
TEST_F(Dashboard, AGroupsCardShowsItsTargetGroupAndEachTargetsHealth) {
  buildVpc();
  struct GroupGone {  // before the fixture's daemon removes the member (the group would launch another)
    TestDaemon& daemon;
    ~GroupGone() { daemon.call("DELETE", "/v1/groups/web?force=true"); }
  } groupGone{daemon_};
  daemon_.must("POST", "/v1/target-groups",
               {{"name", "tg"},
                {"vpc", "shop"},
                {"port", 8080},
                {"health_check",
                 {{"path", "/health.txt"},
                  {"interval", 5},
                  {"timeout", 2},
                  {"healthy_threshold", 2},
                  {"unhealthy_threshold", 2}}}});
  daemon_.must("POST", "/v1/load-balancers", {{"name", "edge"}, {"vpc", "shop"}, {"subnets", {"back"}}});
  daemon_.must("POST", "/v1/load-balancers/edge/listeners",
               {{"port", 80}, {"default_action", {{"target_group", "tg"}}}});
  daemon_.must(
      "POST", "/v1/groups",
      {{"name", "web"},
       {"template",
        {{"image", "busybox"},
         {"command",
          {"sh", "-c",
           "mkdir -p /tmp/www && echo ok > /tmp/www/health.txt && exec httpd -f -p 8080 -h /tmp/www"}}}},
       {"subnets", {"back"}},
       {"min", 1},
       {"max", 1},
       {"target_group", "tg"}});

  std::string error;
  auto browser = HeadlessBrowser::launch(1280, 1400, &error);
  ASSERT_TRUE(browser) << error;
  ASSERT_TRUE(browser->navigate(url_, 20s)) << browser->lastError() << browser->log();
  const std::string card = "#groups .d-group[data-group=\"web\"] .d-target-group[data-target-group=\"tg\"]";
  ASSERT_TRUE(
      browser->waitFor(fmt::format("document.querySelector({})",
                                   json(card + " tr[data-target=\"web-1\"] td.d-health-healthy").dump()),
                       40s))
      << browser->lastError() << daemon_.call("GET", "/v1/dashboard").body["groups"].dump();
  auto text = browser->evaluate(fmt::format("document.querySelector({}).innerText", json(card).dump()));
  ASSERT_TRUE(text && text->is_string()) << browser->lastError();
  for (const char* shown :
       {"target group tg", "behind edge", "1 healthy of 1", "health checks of edge", "web-1"})
    EXPECT_NE(text->get<std::string>().find(shown), std::string::npos) << shown << " in " << *text;
  keepScreenshot(*browser, "dashboard-test-target-group");

  // Its health check fails from now on: HAProxy marks it DOWN after two checks, and the card follows.
  daemon_.must("POST", "/v1/instances/web-1/exec", {{"command", {"rm", "/tmp/www/health.txt"}}}, 200);
  EXPECT_TRUE(
      browser->waitFor(fmt::format("document.querySelector({})",
                                   json(card + " tr[data-target=\"web-1\"] td.d-health-unhealthy").dump()),
                       30s))
      << browser->lastError() << daemon_.call("GET", "/v1/dashboard").body["groups"].dump();
  auto down = browser->evaluate(fmt::format("document.querySelector({}).innerText", json(card).dump()));
  ASSERT_TRUE(down && down->is_string());
  EXPECT_NE(down->get<std::string>().find("DOWN"), std::string::npos) << *down;
  EXPECT_TRUE(browser->consoleErrors().empty()) << browser->consoleErrors().front();
}

TEST_F(Dashboard, ThePortIsReadOnlyAndLoopbackOnlyAndThePageIsOnTheSocketToo) {
  EXPECT_EQ(rawStatus(port_, "GET", "/", "127.0.0.1"), 200);
  EXPECT_EQ(rawStatus(port_, "GET", "/v1/dashboard", "localhost:1234"), 200);
  EXPECT_EQ(rawStatus(port_, "GET", "/v1/comparisons", "[::1]"), 403);
  EXPECT_EQ(rawStatus(port_, "POST", "/v1/vpcs", "127.0.0.1", R"({"name":"x","cidr":"10.9.0.0/16"})"), 403);
  EXPECT_EQ(rawStatus(port_, "GET", "/v1/instances", "127.0.0.1"), 403);
  EXPECT_EQ(rawStatus(port_, "POST", "/v1/comparisons", "127.0.0.1", comparison().dump()), 403);
  EXPECT_EQ(rawStatus(port_, "GET", "/", "attacker.example"), 403) << "a rebound DNS name is refused";
  EXPECT_TRUE(daemon_.list("vpcs").empty());
  EXPECT_TRUE(daemon_.call("GET", "/v1/comparisons").body["comparisons"].empty());

  api::Client client(daemon_.socket(), 10s);
  auto page = client.send({"GET", "/", ""});
  ASSERT_TRUE(page) << page.error().message();
  EXPECT_EQ(page->status, 200);
  EXPECT_TRUE(page->body.starts_with("<!doctype html>"));
}

// An env value (a password passed with -e) never leaves through the loopback port, whatever is asked of it,
// and over the socket only when asked for by name (`corral inspect --show-env`).
TEST_F(Dashboard, EnvValuesNeverLeaveThroughThePortAndOverTheSocketOnlyWhenAskedFor) {
  buildVpc();
  daemon_.must("POST", "/v1/instances",
               {{"name", "sec-1"},
                {"subnet", "front"},
                {"env", json::array({"DB_PASSWORD=hunter2"})},
                {"command", {"sleep", "1000"}}});
  daemon_.must("POST", "/v1/comparisons", comparison());
  for (const char* target :
       {"/", "/dashboard", "/index.html", "/v1/dashboard", "/v1/instances", "/v1/instances/sec-1",
        "/v1/instances/sec-1?show_env=true", "/v1/instances/sec-1/logs", "/v1/comparisons",
        "/v1/comparisons/latest", "/v1/info", "/v1/vpcs/shop/topology"}) {
    const std::string answer = rawAnswer(port_, "GET", target, {"127.0.0.1"});
    ASSERT_NE(statusOf(answer), 0) << target;
    EXPECT_EQ(answer.find("hunter2"), std::string::npos) << target << ": " << answer.substr(0, 2000);
  }
  EXPECT_EQ(rawStatus(port_, "GET", "/v1/instances/sec-1?show_env=true", "localhost"), 403);

  // What the dashboard shows of an instance: what the page draws, no env, command line, pid or host path.
  const std::string dashboard = rawAnswer(port_, "GET", "/v1/dashboard", {"127.0.0.1"});
  ASSERT_EQ(statusOf(dashboard), 200) << dashboard;
  json shown = json::parse(dashboard.substr(dashboard.find("\r\n\r\n") + 4), nullptr, false);
  ASSERT_TRUE(shown.is_object()) << dashboard;
  ASSERT_EQ(shown["instances"].size(), 1u) << shown.dump();
  const json& instance = shown["instances"][0];
  EXPECT_EQ(instance["name"], "sec-1");
  EXPECT_EQ(instance["state"], "running");
  EXPECT_EQ(instance["subnet"], "front");
  EXPECT_TRUE(instance["ip"].is_string());
  for (const char* hidden :
       {"spec", "env", "command", "pid", "cgroup", "bundle", "log_path", "vm", "network"})
    EXPECT_FALSE(instance.contains(hidden)) << hidden << " in " << instance.dump();
  const std::string stateDir = std::filesystem::path(daemon_.socket()).parent_path().string();
  for (const std::string& path : {std::string("/var/lib"), std::string("/sys/fs/cgroup"), stateDir})
    EXPECT_EQ(dashboard.find(path), std::string::npos) << path;
  EXPECT_FALSE(shown["comparison"].contains("samples")) << shown["comparison"].dump();

  // Over the socket: masked everywhere an instance is echoed, shown only with show_env.
  auto masked = [](const json& body) {
    EXPECT_EQ(body.dump().find("hunter2"), std::string::npos) << body.dump();
  };
  testing::Reply got = daemon_.call("GET", "/v1/instances/sec-1");
  ASSERT_EQ(got.status, 200);
  EXPECT_EQ(got.body["spec"]["env"], json::array({"DB_PASSWORD=***"}));
  masked(daemon_.call("GET", "/v1/instances").body);
  masked(daemon_.call("GET", "/v1/dashboard").body);
  testing::Reply unmasked = daemon_.call("GET", "/v1/instances/sec-1?show_env=true");
  ASSERT_EQ(unmasked.status, 200);
  EXPECT_EQ(unmasked.body["spec"]["env"], json::array({"DB_PASSWORD=hunter2"}));

  testing::CliRun inspect = daemon_.cli({"inspect", "sec-1"});
  EXPECT_EQ(inspect.code, 0) << inspect;
  EXPECT_NE(inspect.out.find("DB_PASSWORD=***"), std::string::npos) << inspect;
  EXPECT_EQ(inspect.out.find("hunter2"), std::string::npos) << inspect;
  testing::CliRun shownEnv = daemon_.cli({"inspect", "sec-1", "--show-env"});
  EXPECT_EQ(shownEnv.code, 0) << shownEnv;
  EXPECT_NE(shownEnv.out.find("DB_PASSWORD=hunter2"), std::string::npos) << shownEnv;
  testing::CliRun ps = daemon_.cli({"--json", "ps"});
  EXPECT_EQ(ps.code, 0) << ps;
  EXPECT_EQ(ps.out.find("hunter2"), std::string::npos) << ps;

  masked(daemon_.must("POST", "/v1/instances/sec-1/stop", {{"grace_seconds", 0}}, 200));
  masked(daemon_.must("POST", "/v1/instances/sec-1/start", json::object(), 200));
  masked(daemon_.must("DELETE", "/v1/instances/sec-1?force=true", nullptr, 200));
}

// Host names are case-insensitive; a request with two Host headers is a 400 whichever comes first (which
// one a check reads must not decide whether a rebound name gets through), on the socket too.
TEST_F(Dashboard, TheHostCheckIgnoresCaseAndRefusesTwoHostHeaders) {
  EXPECT_EQ(statusOf(rawAnswer(port_, "GET", "/v1/dashboard", {"LOCALHOST:" + std::to_string(port_)})), 200);
  EXPECT_EQ(statusOf(rawAnswer(port_, "GET", "/", {"LocalHost"})), 200);
  EXPECT_EQ(statusOf(rawAnswer(port_, "GET", "/v1/dashboard", {"127.0.0.1", "attacker.example"})), 400);
  EXPECT_EQ(statusOf(rawAnswer(port_, "GET", "/v1/dashboard", {"attacker.example", "127.0.0.1"})), 400);
  EXPECT_EQ(statusOf(rawAnswer(port_, "GET", "/", {"localhost", "localhost"})), 400);
  EXPECT_EQ(statusOf(rawAnswer(port_, "GET", "/", {"ATTACKER.example"})), 403);
  EXPECT_EQ(statusOf(rawAnswer(port_, "GET", "/", {})), 400);

  EXPECT_EQ(statusOf(socketAnswer(daemon_.socket(), "Host: a\r\nHost: b\r\n")), 400);
  EXPECT_EQ(statusOf(socketAnswer(daemon_.socket(), "Host: a\r\n")), 200);
}

TEST(DashboardPort, ABusyPortIsRefusedWithTheFlagNamed) {
  if (!testing::requireRoot()) GTEST_SKIP() << "needs root";
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t length = sizeof address;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length), 0);
  const std::string busy = std::to_string(ntohs(address.sin_port));
  TestDaemon daemon("dashboard-busy", {"--http-port", busy});
  EXPECT_FALSE(daemon.start());
  EXPECT_NE(daemon.log().find("--http-port: 127.0.0.1:" + busy + " is in use"), std::string::npos)
      << daemon.log();
  ::close(fd);
  TestDaemon bad("dashboard-bad", {"--http-port", "70000"});
  EXPECT_FALSE(bad.start());
  EXPECT_NE(bad.log().find("--http-port: 70000 is not a TCP port"), std::string::npos) << bad.log();
}

// ---- A cluster's hosts, AZs and tunnels (the page alone, fed a view) -------------------------------------

// The page as corrald serves it, written to `dir` with `view` as every GET /v1/dashboard's answer (no
// event stream: the page polls) and the flow log stream never answering.
std::string pageWithView(const std::string& dir, const json& view) {
  std::ifstream in(CORRAL_SOURCE_DIR "/daemon/dashboard/index.html");
  std::stringstream text;
  text << in.rdbuf();
  std::string page = text.str();
  const std::string stub =
      "<script>window.EventSource = undefined; window.fetch = (url) => String(url).startsWith("
      "'/v1/dashboard') ? Promise.resolve({ok: true, json: () => Promise.resolve(" +
      view.dump() + ")}) : new Promise(() => {});</script>\n";
  const size_t at = page.find("<script>");
  if (at == std::string::npos) return "";
  page.insert(at, stub);
  const std::string path = dir + "/dashboard.html";
  std::ofstream(path) << page;
  return "file://" + path;
}

json viewWith(json cluster) {
  json view = {{"generated_at_ms", 1795829462123},
               {"host", {{"hostname", "h1"}, {"kernel", "6.1"}, {"version", "0.1.0"}}},
               {"vpcs", json::array()},
               {"instances", json::array()},
               {"groups", json::array()},
               {"comparison", nullptr}};
  if (!cluster.is_null()) view["cluster"] = std::move(cluster);
  return view;
}

TEST(DashboardPage, DrawsAClustersZonesHostsInstancesAndTunnels) {
  if (!requireBrowser()) GTEST_SKIP() << "needs chromium";
  char pattern[] = "/tmp/corral-dashboard-cluster-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  struct Removed {
    std::string path;
    ~Removed() { std::filesystem::remove_all(path); }
  } dir{pattern};
  const auto tunnel = corral::testing::clusterTunnel;
  auto host = [](const char* name, const char* az, const char* health, const char* ip, json tunnels,
                 json instances) {
    return json{{"name", name},          {"az", az},
                {"health", health},      {"chassis", name},
                {"encap_ip", ip},        {"tunnels", std::move(tunnels)},
                {"lost_since", nullptr}, {"instances", std::move(instances)}};
  };
  const json cluster = {{"local_host", "h1"},
                        {"hosts",
                         {host("h1", "az1", "alive", "10.250.0.1",
                               {tunnel("h2", "10.250.0.1", "10.250.0.2", "up", nullptr),
                                tunnel("h3", "10.250.0.1", "10.250.0.3", "down", "host h3 is lost")},
                               {"x1"}),
                          host("h2", "az2", "alive", "10.250.0.2",
                               {tunnel("h1", "10.250.0.2", "10.250.0.1", "up", nullptr),
                                tunnel("h3", "10.250.0.2", "10.250.0.3", "down", "host h3 is lost")},
                               {"x2", "x4"}),
                          host("h3", "az2", "lost", "10.250.0.3", json::array(), json::array())}}};
  std::string error;
  auto browser = HeadlessBrowser::launch(1280, 900, &error);
  ASSERT_NE(browser, nullptr) << error;
  ASSERT_TRUE(browser->navigate(pageWithView(dir.path, viewWith(cluster)), 15s)) << browser->lastError();
  ASSERT_TRUE(browser->waitFor("document.querySelectorAll('#cluster .d-host').length === 3", 10s))
      << browser->lastError();
  EXPECT_EQ(browser->evaluate("document.getElementById('cluster-section').hidden"), json(false));
  EXPECT_EQ(count(*browser, "#cluster .d-az"), 2) << "one box per AZ";
  EXPECT_EQ(count(*browser, "#cluster .d-tunnel[data-state=up]"), 1);
  EXPECT_EQ(count(*browser, "#cluster .d-tunnel[data-state=down]"), 2);
  auto h2 = browser->evaluate("document.querySelector('#cluster .d-host[data-host=h2]').textContent");
  ASSERT_TRUE(h2 && h2->is_string()) << browser->lastError();
  EXPECT_NE(h2->get<std::string>().find("x4"), std::string::npos) << *h2;
  auto text = browser->evaluate("document.getElementById('cluster').innerText");
  ASSERT_TRUE(text && text->is_string()) << browser->lastError();
  EXPECT_NE(text->get<std::string>().find("h1 (az1) ⇄ h2 (az2) geneve 10.250.0.1 ↔ 10.250.0.2 up"),
            std::string::npos)
      << *text;
  EXPECT_NE(text->get<std::string>().find(
                "h2 (az2) ⇄ h3 (az2) geneve 10.250.0.2 ↔ 10.250.0.3 down (h2: host h3 is lost)"),
            std::string::npos)
      << *text;
  // Both ends of h1 ⇄ h3 are placed: the line joins two hosts' boxes in different AZs.
  auto line = browser->evaluate(
      "(() => { const l = document.querySelector('#cluster .d-tunnel[data-state=down] line'); return l ? "
      "[+l.getAttribute('x1'), +l.getAttribute('x2')] : null; })()");
  ASSERT_TRUE(line && line->is_array()) << browser->lastError();
  EXPECT_NE((*line)[0], (*line)[1]);
  EXPECT_TRUE(browser->consoleErrors().empty()) << browser->consoleErrors().front();

  // A single host's view has no cluster: the section stays hidden, the page as before.
  ASSERT_TRUE(browser->navigate(pageWithView(dir.path, viewWith(nullptr)), 15s)) << browser->lastError();
  ASSERT_TRUE(browser->waitFor("document.body.dataset.updates >= 1", 10s)) << browser->lastError();
  EXPECT_EQ(browser->evaluate("document.getElementById('cluster-section').hidden"), json(true));
  EXPECT_EQ(count(*browser, "#cluster .d-host"), 0);
}

}  // namespace
}  // namespace corral
