// The headless-browser client (browser.h) against real chromium: file:// pages the tests write, scripts
// seen through evaluate(), pixels checked in screenshots (also after a live change), exceptions and console
// errors reported, calls to a stopped (hung) browser keeping their deadlines, PNG decoding refusing garbage,
// and no chromium process left behind or unreaped.
#include "tests/integration/browser.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace corral {
namespace {

using namespace std::chrono_literals;
using testing::Image;

constexpr int kWidth = 480;
constexpr int kHeight = 320;
// The box every page draws: 200x100 CSS px at (40, 60) on a light grey background.
constexpr int kBoxX = 40, kBoxY = 60, kBoxW = 200, kBoxH = 100;
constexpr std::array<uint8_t, 3> kBackground = {240, 240, 240};
constexpr std::array<uint8_t, 3> kRed = {200, 30, 60};
constexpr std::array<uint8_t, 3> kBlue = {30, 120, 220};
constexpr int kTolerance = 8;

std::string pageHtml(const std::string& script) {
  return R"(<!doctype html>
<html><head><style>
  html, body { margin: 0; padding: 0; background: rgb(240, 240, 240); }
  #box { position: absolute; left: 40px; top: 60px; width: 200px; height: 100px;
         background: rgb(200, 30, 60); color: rgb(200, 30, 60); font: 10px sans-serif; }
</style></head>
<body><div id="box"></div>
<script>
)" + script +
         R"(
</script></body></html>
)";
}

// Processes whose command line names `needle` (the browser's own profile dir, so another test's chromium
// running at the same time does not count).
std::vector<std::string> processesNaming(const std::string& needle) {
  std::vector<std::string> found;
  for (auto [pid, cmdline] : testing::procFiles("cmdline")) {
    std::replace(cmdline.begin(), cmdline.end(), '\0', ' ');
    if (cmdline.find(needle) != std::string::npos)
      found.push_back(std::to_string(pid) + ": " + cmdline.substr(0, 120));
  }
  return found;
}

// The suite's fixture; browser tests call startBrowser() first (the PNG test needs no browser).
// This process's children that died and were not reaped (the browser reaps the helpers it inherits).
std::vector<std::string> zombieChildren() {
  std::vector<std::string> found;
  for (const auto& [pid, stat] : testing::procFiles("stat")) {
    // "pid (comm) state ppid ...": comm may hold spaces, so parse after the last ')'.
    auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 1));
    std::string state;
    pid_t parent = 0;
    rest >> state >> parent;
    if (state == "Z" && parent == ::getpid())
      found.push_back(std::to_string(pid) + " " + stat.substr(0, close + 1));
  }
  return found;
}

class HeadlessBrowser : public ::testing::Test {
 protected:
  void startBrowser() {
    if (testing::chromiumPath().empty()) {
      if (::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) FAIL() << "chromium is not installed";
      GTEST_SKIP() << "chromium is not installed (/usr/bin/chromium or $CORRAL_CHROMIUM)";
    }
    char pattern[] = "/tmp/corral-browser-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    pageDir_ = pattern;
    std::string error;
    browser_ = testing::HeadlessBrowser::launch(kWidth, kHeight, &error);
    ASSERT_NE(browser_, nullptr) << error;
    profileDir_ = browser_->userDataDir();
  }

  void TearDown() override {
    browser_.reset();
    if (!profileDir_.empty()) {
      EXPECT_EQ(processesNaming(profileDir_), std::vector<std::string>{}) << "chromium processes left behind";
      EXPECT_FALSE(std::filesystem::exists(profileDir_));
      EXPECT_EQ(zombieChildren(), std::vector<std::string>{}) << "chromium processes not reaped";
    }
    if (!pageDir_.empty()) std::filesystem::remove_all(pageDir_);
  }

  std::string writePage(const std::string& name, const std::string& script) {
    const std::string path = pageDir_ + "/" + name;
    std::ofstream(path) << pageHtml(script);
    return "file://" + path;
  }

  // The screenshot, decoded; its PNG goes to $CORRAL_TEST_ARTIFACTS when set.
  std::optional<Image> screenshot(const std::string& name) {
    auto png = browser_->screenshotPng();
    if (!png) return std::nullopt;
    if (const char* artifacts = ::getenv("CORRAL_TEST_ARTIFACTS"); artifacts != nullptr) {
      std::ofstream(std::string(artifacts) + "/browser-" + name + ".png", std::ios::binary) << *png;
    }
    std::string error;
    auto image = testing::decodePng(*png, &error);
    EXPECT_TRUE(image.has_value()) << error;
    return image;
  }

  void expectBox(const Image& image, std::array<uint8_t, 3> colour) {
    ASSERT_EQ(image.width, kWidth);
    ASSERT_EQ(image.height, kHeight);
    const size_t area = static_cast<size_t>(kBoxW) * kBoxH;
    EXPECT_GE(image.countNear(kBoxX, kBoxY, kBoxW, kBoxH, colour, kTolerance), area * 9 / 10);
    // Around the box: the strips above, left of, right of and below it are all background.
    EXPECT_EQ(image.countNear(0, 0, kWidth, kBoxY, kBackground, kTolerance), size_t{kWidth} * kBoxY);
    EXPECT_EQ(image.countNear(0, kBoxY, kBoxX, kBoxH, kBackground, kTolerance), size_t{kBoxX} * kBoxH);
    const int rightX = kBoxX + kBoxW, belowY = kBoxY + kBoxH;
    EXPECT_EQ(image.countNear(rightX, kBoxY, kWidth - rightX, kBoxH, kBackground, kTolerance),
              static_cast<size_t>(kWidth - rightX) * kBoxH);
    EXPECT_EQ(image.countNear(0, belowY, kWidth, kHeight - belowY, kBackground, kTolerance),
              static_cast<size_t>(kHeight - belowY) * kWidth);
    // The colour is in the box and nowhere else.
    EXPECT_EQ(image.countNear(0, 0, kWidth, kHeight, colour, kTolerance),
              image.countNear(kBoxX, kBoxY, kBoxW, kBoxH, colour, kTolerance));
  }

  std::string pageDir_;
  std::string profileDir_;
  std::unique_ptr<testing::HeadlessBrowser> browser_;
};

TEST_F(HeadlessBrowser, LoadsPageRunsScriptAndScreenshotsIt) {
  startBrowser();
  if (IsSkipped() || HasFatalFailure()) return;
  const std::string url = writePage("static.html", R"(
    document.getElementById('box').textContent = 'ready ' + (6 * 7);
    window.scriptResult = { answer: 42, items: ['a', 'b'] };
  )");
  ASSERT_TRUE(browser_->navigate(url, 15s)) << browser_->lastError() << "\n" << browser_->log();

  auto text = browser_->evaluate("document.getElementById('box').textContent");
  ASSERT_TRUE(text.has_value()) << browser_->lastError();
  EXPECT_EQ(*text, "ready 42");
  auto result = browser_->evaluate("window.scriptResult");
  ASSERT_TRUE(result.has_value()) << browser_->lastError();
  EXPECT_EQ(*result, (nlohmann::json{{"answer", 42}, {"items", {"a", "b"}}}));
  auto awaited = browser_->evaluate("new Promise(resolve => setTimeout(() => resolve('later'), 50))");
  ASSERT_TRUE(awaited.has_value()) << browser_->lastError();
  EXPECT_EQ(*awaited, "later");
  auto undefinedValue = browser_->evaluate("undefined");
  ASSERT_TRUE(undefinedValue.has_value()) << browser_->lastError();
  EXPECT_TRUE(undefinedValue->is_null());

  auto image = screenshot("static");
  ASSERT_TRUE(image.has_value()) << browser_->lastError();
  expectBox(*image, kRed);
  EXPECT_EQ(image->at(kBoxX + kBoxW / 2, kBoxY + kBoxH - 5), (std::array<uint8_t, 4>{200, 30, 60, 255}));
  EXPECT_EQ(image->at(5, 5), (std::array<uint8_t, 4>{240, 240, 240, 255}));
  EXPECT_TRUE(browser_->consoleErrors().empty()) << browser_->consoleErrors().front();
}

TEST_F(HeadlessBrowser, WaitsForLiveChangeAndScreenshotsItAgain) {
  startBrowser();
  if (IsSkipped() || HasFatalFailure()) return;
  // The change starts when the test asks for it, so the first screenshot cannot race the timer.
  const std::string url = writePage("live.html", R"(
    window.startChange = () => setTimeout(() => {
      document.getElementById('box').style.background = 'rgb(30, 120, 220)';
      document.body.dataset.state = 'changed';
    }, 300);
  )");
  ASSERT_TRUE(browser_->navigate(url, 15s)) << browser_->lastError() << "\n" << browser_->log();
  auto before = screenshot("live-before");
  ASSERT_TRUE(before.has_value()) << browser_->lastError();
  expectBox(*before, kRed);

  const std::string changed = "document.body.dataset.state === 'changed'";
  EXPECT_FALSE(browser_->waitFor("document.body.dataset.state === 'never'", 300ms));
  EXPECT_NE(browser_->lastError().find("not true after 300 ms"), std::string::npos) << browser_->lastError();
  ASSERT_TRUE(browser_->evaluate("window.startChange(), true").has_value()) << browser_->lastError();
  EXPECT_EQ(browser_->evaluate(changed), false) << "changed before the timer ran";
  ASSERT_TRUE(browser_->waitFor(changed, 10s)) << browser_->lastError();

  auto after = screenshot("live-after");
  ASSERT_TRUE(after.has_value()) << browser_->lastError();
  expectBox(*after, kBlue);
  EXPECT_EQ(after->countNear(kBoxX, kBoxY, kBoxW, kBoxH, kRed, kTolerance), 0u);
}

TEST_F(HeadlessBrowser, ReportsExceptionsAndConsoleErrors) {
  startBrowser();
  if (IsSkipped() || HasFatalFailure()) return;
  const std::string url = writePage("errors.html", R"(
    console.error('dashboard failed:', 503);
    setTimeout(() => { window.thrown = true; throw new Error('late boom'); }, 50);
  )");
  ASSERT_TRUE(browser_->navigate(url, 15s)) << browser_->lastError() << "\n" << browser_->log();

  EXPECT_FALSE(browser_->evaluate("(() => { throw new Error('boom from the test'); })()").has_value());
  EXPECT_NE(browser_->lastError().find("boom from the test"), std::string::npos) << browser_->lastError();
  EXPECT_FALSE(browser_->evaluate("noSuchVariable + 1").has_value());
  EXPECT_NE(browser_->lastError().find("noSuchVariable is not defined"), std::string::npos)
      << browser_->lastError();
  EXPECT_FALSE(browser_->evaluate("Promise.reject(new Error('rejected later'))").has_value());
  EXPECT_NE(browser_->lastError().find("rejected later"), std::string::npos) << browser_->lastError();
  // A failed evaluate does not break the connection.
  EXPECT_EQ(browser_->evaluate("1 + 1"), 2) << browser_->lastError();

  ASSERT_TRUE(browser_->waitFor("window.thrown === true", 10s)) << browser_->lastError();
  // The exception event is sent while the timer runs, before the answer that saw window.thrown.
  auto errors = browser_->consoleErrors();
  auto mentions = [&](const std::string& text) {
    return std::any_of(errors.begin(), errors.end(),
                       [&](const std::string& error) { return error.find(text) != std::string::npos; });
  };
  EXPECT_TRUE(mentions("dashboard failed: 503")) << ::testing::PrintToString(errors);
  EXPECT_TRUE(mentions("late boom")) << ::testing::PrintToString(errors);
}

TEST_F(HeadlessBrowser, HungBrowserFailsCallsInsteadOfHanging) {
  startBrowser();
  if (IsSkipped() || HasFatalFailure()) return;
  ASSERT_TRUE(browser_->navigate(writePage("hung.html", "window.ready = true;"), 15s))
      << browser_->lastError();
  EXPECT_FALSE(browser_->navigate("file://" + pageDir_ + "/missing.html", 15s));
  EXPECT_NE(browser_->lastError().find("ERR_FILE_NOT_FOUND"), std::string::npos) << browser_->lastError();

  ASSERT_EQ(::kill(-browser_->processGroup(), SIGSTOP), 0);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(browser_->evaluate("1 + 1", 500ms).has_value());
  EXPECT_NE(browser_->lastError().find("deadline"), std::string::npos) << browser_->lastError();
  EXPECT_FALSE(browser_->waitFor("true", 500ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "calls did not keep their deadlines";
  ASSERT_EQ(::kill(-browser_->processGroup(), SIGCONT), 0);

  // The late answers are skipped; the connection still works.
  EXPECT_EQ(browser_->evaluate("2 + 2"), 4) << browser_->lastError();
}

TEST_F(HeadlessBrowser, DecodePngRefusesGarbage) {
  std::string error;
  EXPECT_FALSE(testing::decodePng("definitely not a png", &error).has_value());
  EXPECT_FALSE(error.empty());
  error.clear();
  EXPECT_FALSE(testing::decodePng("", &error).has_value());
  EXPECT_FALSE(error.empty());
  // A real PNG header cut short is refused too.
  error.clear();
  EXPECT_FALSE(
      testing::decodePng(std::string_view("\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR", 16), &error).has_value());
  EXPECT_FALSE(error.empty());
}

}  // namespace
}  // namespace corral
