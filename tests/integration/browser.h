// A small Chrome DevTools Protocol client for integration tests: starts headless chromium in its own process
// group, drives one page over a loopback websocket (navigate, evaluate, wait, screenshot) with a deadline on
// every call, and decodes screenshots so tests can check pixels.
#pragma once

// GCC 12's -Wnull-dereference fires inside Asio's scheduler (and libstdc++'s streambuf) once they are
// inlined at -O2: false positives in library code, reported where the templates are instantiated, so they
// are silenced for the files that include this header (as api/client.cc and cli/cli.h do).
#pragma GCC diagnostic ignored "-Wnull-dereference"

#include <fcntl.h>
#include <png.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "api/api.h"

namespace corral::testing {

// A decoded PNG, 8-bit RGBA, rows top to bottom.
struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgba;

  // The pixel at (x, y); all zero outside the image.
  std::array<uint8_t, 4> at(int x, int y) const {
    if (x < 0 || y < 0 || x >= width || y >= height) return {0, 0, 0, 0};
    const size_t offset = (static_cast<size_t>(y) * static_cast<size_t>(width) + static_cast<size_t>(x)) * 4;
    return {rgba[offset], rgba[offset + 1], rgba[offset + 2], rgba[offset + 3]};
  }

  // Pixels in the rect (clipped to the image; CSS px == image px at deviceScaleFactor 1) whose RGB is within
  // `tolerance` of `rgb` in every channel.
  size_t countNear(int x, int y, int w, int h, std::array<uint8_t, 3> rgb, int tolerance) const {
    size_t count = 0;
    for (int row = std::max(y, 0); row < std::min(y + h, height); ++row) {
      for (int column = std::max(x, 0); column < std::min(x + w, width); ++column) {
        auto pixel = at(column, row);
        bool near = true;
        for (int channel = 0; channel < 3; ++channel) {
          if (std::abs(int{pixel[channel]} - int{rgb[channel]}) > tolerance) near = false;
        }
        if (near) ++count;
      }
    }
    return count;
  }
};

// libpng's simplified API; nullopt with libpng's message in `*error` when `bytes` is not a PNG.
inline std::optional<Image> decodePng(std::string_view bytes, std::string* error) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (png_image_begin_read_from_memory(&image, bytes.data(), bytes.size()) == 0) {
    if (error != nullptr) *error = std::string("png_image_begin_read_from_memory: ") + image.message;
    png_image_free(&image);
    return std::nullopt;
  }
  image.format = PNG_FORMAT_RGBA;
  Image decoded;
  decoded.width = static_cast<int>(image.width);
  decoded.height = static_cast<int>(image.height);
  decoded.rgba.resize(PNG_IMAGE_SIZE(image));
  if (png_image_finish_read(&image, nullptr, decoded.rgba.data(), 0, nullptr) == 0) {
    if (error != nullptr) *error = std::string("png_image_finish_read: ") + image.message;
    png_image_free(&image);
    return std::nullopt;
  }
  return decoded;
}

// The browser the tests drive: $CORRAL_CHROMIUM, else /usr/bin/chromium; empty when not installed.
inline std::string chromiumPath() {
  const char* configured = ::getenv("CORRAL_CHROMIUM");
  std::string path = configured != nullptr && *configured != '\0' ? configured : "/usr/bin/chromium";
  return ::access(path.c_str(), X_OK) == 0 ? path : std::string();
}

// Each process's pid and one file of its /proc entry ("cmdline", "stat"), read whole.
inline std::vector<std::pair<pid_t, std::string>> procFiles(const char* file) {
  std::vector<std::pair<pid_t, std::string>> found;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in(entry.path() / file);
    found.emplace_back(std::stoi(name),
                       std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>()));
  }
  return found;
}

// One headless chromium with one page, driven over the DevTools Protocol on 127.0.0.1. Every call has a
// deadline, so a hung browser fails a test instead of hanging it. Events that arrive while a call waits are
// queued; console errors and uncaught exceptions are collected from them.
class HeadlessBrowser {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kCallTimeout{10'000};

  HeadlessBrowser(const HeadlessBrowser&) = delete;
  HeadlessBrowser& operator=(const HeadlessBrowser&) = delete;

  // Starts chromium (its output goes to chromium.log in a fresh temp dir, which also holds the profile) and
  // connects to its first page. nullptr with `*error` when any step fails; what was started is cleaned up.
  static std::unique_ptr<HeadlessBrowser> launch(int width, int height, std::string* error) {
    std::unique_ptr<HeadlessBrowser> browser(new HeadlessBrowser());
    if (!browser->start(width, height)) {
      if (error != nullptr) *error = browser->lastError_;
      return nullptr;
    }
    return browser;
  }

  ~HeadlessBrowser() {
    if (websocket_) {
      boost::system::error_code ignored;
      boost::beast::get_lowest_layer(*websocket_).socket().close(ignored);
      // Lets a pending read finish (aborted) before the stream goes away.
      ioContext_.restart();
      ioContext_.run_for(std::chrono::seconds(1));
      websocket_.reset();
    }
    stopProcessGroup();
    if (!userDataDir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(userDataDir_, ignored);
    }
  }

  // The profile and log directory; no process has it on its command line once the browser is destroyed.
  const std::string& userDataDir() const { return userDataDir_; }
  // The browser's process group (tests stop it with SIGSTOP to check that calls time out).
  pid_t processGroup() const { return processGroup_; }
  // Chromium's stdout and stderr so far (for a failing test's message).
  std::string log() const {
    std::ifstream in(userDataDir_ + "/chromium.log");
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
  }

  // Page.navigate, then waits for Page.loadEventFired.
  bool navigate(const std::string& url, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::erase_if(events_,
                  [](const nlohmann::json& event) { return event["method"] == "Page.loadEventFired"; });
    auto result = call("Page.navigate", {{"url", url}}, deadline);
    if (!result) return false;
    if (const std::string failure = result->value("errorText", ""); !failure.empty()) {
      lastError_ = "Page.navigate " + url + ": " + failure;
      return false;
    }
    if (!waitForEvent("Page.loadEventFired", deadline)) {
      lastError_ = "navigate " + url + ": " + lastError_;
      return false;
    }
    return true;
  }

  // Runtime.evaluate with returnByValue and awaitPromise: the value (null for undefined), or nullopt with
  // lastError() naming the expression and the exception.
  std::optional<nlohmann::json> evaluate(const std::string& expression,
                                         std::chrono::milliseconds timeout = kCallTimeout) {
    auto result = call("Runtime.evaluate",
                       {{"expression", expression}, {"returnByValue", true}, {"awaitPromise", true}},
                       Clock::now() + timeout);
    if (!result) return std::nullopt;
    if (result->contains("exceptionDetails")) {
      lastError_ = "evaluate `" + expression + "`: " + exceptionText((*result)["exceptionDetails"]);
      return std::nullopt;
    }
    const nlohmann::json remote = result->value("result", nlohmann::json::object());
    if (!remote.is_object()) {
      lastError_ = "evaluate `" + expression + "`: no result object in " + result->dump();
      return std::nullopt;
    }
    if (remote.contains("value")) return remote["value"];
    if (remote.value("type", "") == "undefined") return nlohmann::json();
    // Values JSON cannot carry (NaN, Infinity, -0, bigint) come as unserializableValue.
    if (remote.contains("unserializableValue")) return remote["unserializableValue"];
    lastError_ = "evaluate `" + expression + "`: no value in " + remote.dump();
    return std::nullopt;
  }

  // Evaluates `expression` every 100 ms until it is truthy or `timeout` passes (collecting events in
  // between). A throwing expression counts as not yet true; lastError() then says why it never became true.
  bool waitFor(const std::string& expression, std::chrono::milliseconds timeout) {
    const auto deadline = Clock::now() + timeout;
    std::string lastReason = "never evaluated";
    while (true) {
      auto remaining = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (remaining.count() <= 0) break;
      auto value = evaluate("!!(" + expression + ")", remaining);
      if (value && *value == true) return true;
      if (broken_) return false;
      lastReason = value ? "it stayed false" : lastError_;
      pumpEvents(std::min(Clock::now() + std::chrono::milliseconds(100), deadline));
    }
    lastError_ = "waitFor `" + expression + "`: not true after " + std::to_string(timeout.count()) + " ms (" +
                 lastReason + ")";
    return false;
  }

  // Page.captureScreenshot as PNG, decoded.
  std::optional<Image> screenshot() {
    auto png = screenshotPng();
    if (!png) return std::nullopt;
    std::string error;
    auto image = decodePng(*png, &error);
    if (!image) lastError_ = "screenshot: " + error;
    return image;
  }

  // The raw PNG bytes of Page.captureScreenshot (tests save them as artifacts).
  std::optional<std::string> screenshotPng() {
    auto result = call("Page.captureScreenshot", {{"format", "png"}}, Clock::now() + kCallTimeout);
    if (!result) return std::nullopt;
    if (!result->contains("data") || !(*result)["data"].is_string()) {
      lastError_ = "Page.captureScreenshot: no data in the answer";
      return std::nullopt;
    }
    auto bytes = api::base64Decode((*result)["data"].get<std::string>(), "data");
    if (!bytes) {
      lastError_ = "Page.captureScreenshot: " + bytes.error().message();
      return std::nullopt;
    }
    return std::move(*bytes);
  }

  // Uncaught exceptions (Runtime.exceptionThrown) and console.error messages seen so far.
  std::vector<std::string> consoleErrors() const { return consoleErrors_; }

  const std::string& lastError() const { return lastError_; }

 private:
  HeadlessBrowser() = default;

  using WebSocket = boost::beast::websocket::stream<boost::beast::tcp_stream>;

  bool start(int width, int height) {
    const std::string browserPath = chromiumPath();
    if (browserPath.empty()) return failWith("chromium is not installed (set CORRAL_CHROMIUM)");
    char dirTemplate[] = "/tmp/corral-browser-XXXXXX";
    if (::mkdtemp(dirTemplate) == nullptr) return failWith(std::string("mkdtemp: ") + strerror(errno));
    userDataDir_ = dirTemplate;
    if (!spawnBrowser(browserPath, width, height)) return false;
    const auto deadline = Clock::now() + std::chrono::seconds(30);
    auto port = waitForDevToolsPort(deadline);
    if (!port) return false;
    port_ = *port;
    auto pagePath = findPageTarget(deadline);
    if (!pagePath) return false;
    if (!connectWebSocket(*pagePath, deadline)) return false;
    if (!call("Page.enable", nlohmann::json::object(), deadline)) return false;
    if (!call("Runtime.enable", nlohmann::json::object(), deadline)) return false;
    // The window size alone does not pin the viewport or the device scale; with this, CSS px == image px.
    return call("Emulation.setDeviceMetricsOverride",
                {{"width", width}, {"height", height}, {"deviceScaleFactor", 1}, {"mobile", false}}, deadline)
        .has_value();
  }

  bool failWith(std::string message) {
    lastError_ = std::move(message);
    return false;
  }

  bool spawnBrowser(const std::string& browserPath, int width, int height) {
    std::vector<std::string> args = {browserPath,
                                     "--headless=new",
                                     "--no-sandbox",
                                     "--disable-gpu",
                                     "--remote-debugging-port=0",
                                     "--user-data-dir=" + userDataDir_,
                                     "--window-size=" + std::to_string(width) + "," + std::to_string(height),
                                     "--hide-scrollbars",
                                     "--no-first-run",
                                     "about:blank"};
    const std::string logPath = userDataDir_ + "/chromium.log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, logPath.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                     0644);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    // Its own process group, so the destructor reaches the renderers and helpers too.
    posix_spawnattr_t attributes;
    posix_spawnattr_init(&attributes);
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    // HOME and the XDG dirs point into the temp dir: nothing is written to the real profile, and the crash
    // handlers (which leave the process group) name the temp dir on their command line, so they can be found.
    std::vector<std::string> environment;
    for (char** variable = environ; *variable != nullptr; ++variable) {
      std::string_view entry(*variable);
      if (entry.starts_with("HOME=") || entry.starts_with("XDG_CONFIG_HOME=") ||
          entry.starts_with("XDG_CACHE_HOME="))
        continue;
      environment.emplace_back(entry);
    }
    environment.push_back("HOME=" + userDataDir_);
    environment.push_back("XDG_CONFIG_HOME=" + userDataDir_ + "/config");
    environment.push_back("XDG_CACHE_HOME=" + userDataDir_ + "/cache");
    std::vector<char*> envp;
    for (auto& entry : environment) envp.push_back(entry.data());
    envp.push_back(nullptr);
    enableSubreaper();
    pid_t pid = 0;
    int rc = ::posix_spawn(&pid, argv[0], &actions, &attributes, argv.data(), envp.data());
    posix_spawnattr_destroy(&attributes);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
      disableSubreaper();
      return failWith("posix_spawn(\"" + browserPath + "\"): " + strerror(rc));
    }
    pid_ = pid;
    processGroup_ = pid;
    return true;
  }

  // Chromium writes the port it picked into DevToolsActivePort once it listens.
  std::optional<int> waitForDevToolsPort(Clock::time_point deadline) {
    const std::string path = userDataDir_ + "/DevToolsActivePort";
    while (Clock::now() < deadline) {
      std::ifstream in(path);
      int port = 0;
      if (in >> port && port > 0) return port;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;  // reaped; the group may still hold helpers, stopProcessGroup handles that
        lastError_ = "chromium exited before listening (status " + std::to_string(status) + "): " + log();
        return std::nullopt;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    lastError_ = "no " + path + " after 30 s: " + log();
    return std::nullopt;
  }

  // The path of the first page target's webSocketDebuggerUrl ("/devtools/page/ID"), from /json/list.
  std::optional<std::string> findPageTarget(Clock::time_point deadline) {
    std::string lastAnswer;
    while (Clock::now() < deadline) {
      auto body = httpGet("/json/list", deadline);
      if (body) {
        lastAnswer = *body;
        auto targets = nlohmann::json::parse(*body, nullptr, false);
        if (targets.is_array()) {
          for (const auto& target : targets) {
            if (!target.is_object() || target.value("type", "") != "page" ||
                !target.contains("webSocketDebuggerUrl"))
              continue;
            // ws://127.0.0.1:PORT/devtools/page/ID: we only ever connect to loopback, so keep just the path.
            std::string url = target["webSocketDebuggerUrl"].get<std::string>();
            auto hostStart = url.find("://");
            auto pathStart = hostStart == std::string::npos ? hostStart : url.find('/', hostStart + 3);
            if (pathStart != std::string::npos) return url.substr(pathStart);
          }
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    lastError_ = "no page target in GET /json/list within 30 s (last: " + lastError_ + lastAnswer + ")";
    return std::nullopt;
  }

  // Runs the io_context until `done` or the deadline; false when the deadline came first.
  bool runUntil(const bool& done, Clock::time_point deadline) {
    ioContext_.restart();
    while (!done) {
      if (ioContext_.run_one_until(deadline) == 0) return done;
    }
    return true;
  }

  // Chromium's DevTools endpoint (it listens on the loopback only).
  boost::asio::ip::tcp::endpoint devToolsEndpoint() const {
    return {boost::asio::ip::make_address_v4("127.0.0.1"), static_cast<unsigned short>(port_)};
  }

  std::optional<std::string> httpGet(const std::string& target, Clock::time_point deadline) {
    namespace http = boost::beast::http;
    boost::beast::tcp_stream stream(ioContext_);
    const auto endpoint = devToolsEndpoint();
    boost::system::error_code result;
    bool done = false;
    auto finish = [&](boost::system::error_code ec, auto&&...) {
      result = ec;
      done = true;
    };
    auto step = [&](auto&& startOperation, const char* what) -> bool {
      done = false;
      startOperation();
      if (!runUntil(done, deadline)) {
        stream.close();
        runUntil(done, Clock::now() + std::chrono::seconds(1));
        lastError_ = std::string("GET ") + target + ": " + what + ": timed out";
        return false;
      }
      if (result) {
        lastError_ = std::string("GET ") + target + ": " + what + ": " + result.message();
        return false;
      }
      return true;
    };
    http::request<http::empty_body> request(http::verb::get, target, 11);
    request.set(http::field::host, "127.0.0.1:" + std::to_string(port_));
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> response;
    if (!step([&] { stream.async_connect(endpoint, finish); }, "connect")) return std::nullopt;
    if (!step([&] { http::async_write(stream, request, finish); }, "write")) return std::nullopt;
    if (!step([&] { http::async_read(stream, buffer, response, finish); }, "read")) return std::nullopt;
    boost::system::error_code ignored;
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    if (response.result() != http::status::ok) {
      lastError_ = "GET " + target + ": HTTP " + std::to_string(response.result_int());
      return std::nullopt;
    }
    return response.body();
  }

  bool connectWebSocket(const std::string& path, Clock::time_point deadline) {
    websocket_ = std::make_unique<WebSocket>(ioContext_);
    const auto endpoint = devToolsEndpoint();
    boost::system::error_code result;
    bool done = false;
    auto finish = [&](boost::system::error_code ec, auto&&...) {
      result = ec;
      done = true;
    };
    boost::beast::get_lowest_layer(*websocket_).async_connect(endpoint, finish);
    if (!runUntil(done, deadline) || result) return breakConnection("websocket connect", result, done);
    // Screenshots are large: allow big messages.
    websocket_->read_message_max(256 * 1024 * 1024);
    done = false;
    websocket_->async_handshake("127.0.0.1:" + std::to_string(port_), path, finish);
    if (!runUntil(done, deadline) || result) return breakConnection("websocket handshake", result, done);
    return true;
  }

  // A timed-out or failed socket operation leaves the connection in an unknown state: close it for good.
  bool breakConnection(const std::string& what, boost::system::error_code result, bool& done) {
    lastError_ = what + ": " + (done ? result.message() : std::string("timed out"));
    broken_ = true;
    if (websocket_) {
      boost::system::error_code ignored;
      boost::beast::get_lowest_layer(*websocket_).socket().close(ignored);
      runUntil(done, Clock::now() + std::chrono::seconds(1));
    }
    return false;
  }

  // Sends one command and reads messages (queueing events) until its answer: the result, or nullopt with
  // lastError() set on a protocol error, a broken connection or the deadline.
  std::optional<nlohmann::json> call(const std::string& method, const nlohmann::json& params,
                                     Clock::time_point deadline) {
    if (broken_ || !websocket_) {
      lastError_ = method + ": no connection to the browser (" + lastError_ + ")";
      return std::nullopt;
    }
    const int id = ++lastId_;
    const std::string text = nlohmann::json{{"id", id}, {"method", method}, {"params", params}}.dump();
    boost::system::error_code result;
    bool done = false;
    websocket_->text(true);
    websocket_->async_write(boost::asio::buffer(text), [&](boost::system::error_code ec, size_t) {
      result = ec;
      done = true;
    });
    if (!runUntil(done, deadline) || result) {
      breakConnection(method + ": send", result, done);
      return std::nullopt;
    }
    while (true) {
      auto message = readMessage(deadline);
      if (!message) {
        lastError_ = method + ": " + lastError_;
        return std::nullopt;
      }
      if (!message->contains("id")) {
        handleEvent(std::move(*message));
        continue;
      }
      if ((*message)["id"] != id) continue;  // the late answer of a call that timed out
      if (message->contains("error")) {
        const auto& failure = (*message)["error"];
        lastError_ =
            method + ": " + (failure.is_object() ? failure.value("message", failure.dump()) : failure.dump());
        return std::nullopt;
      }
      return message->contains("result") ? (*message)["result"] : nlohmann::json::object();
    }
  }

  // The next message from the browser. The read stays pending across deadlines (a timeout does not break
  // the connection): a message that arrives later is read by the next call.
  std::optional<nlohmann::json> readMessage(Clock::time_point deadline) {
    if (broken_) {
      lastError_ = "no connection to the browser (" + lastError_ + ")";
      return std::nullopt;
    }
    if (inbox_.empty() && !readPending_) {
      readPending_ = true;
      websocket_->async_read(readBuffer_, [this](boost::system::error_code ec, size_t) {
        readPending_ = false;
        if (ec) {
          readError_ = ec;
          return;
        }
        inbox_.push_back(boost::beast::buffers_to_string(readBuffer_.data()));
        readBuffer_.consume(readBuffer_.size());
      });
    }
    ioContext_.restart();
    while (inbox_.empty() && !readError_) {
      if (ioContext_.run_one_until(deadline) == 0) break;
    }
    if (inbox_.empty()) {
      if (readError_) {
        broken_ = true;
        lastError_ = "reading from the browser: " + readError_.message();
      } else {
        lastError_ = "no answer from the browser before the deadline";
      }
      return std::nullopt;
    }
    std::string text = std::move(inbox_.front());
    inbox_.pop_front();
    auto message = nlohmann::json::parse(text, nullptr, false);
    if (message.is_discarded() || !message.is_object()) {
      lastError_ = "not a JSON object from the browser: " + text.substr(0, 200);
      return std::nullopt;
    }
    return message;
  }

  // Reads and queues events until the deadline (the time between waitFor's polls).
  void pumpEvents(Clock::time_point deadline) {
    const std::string savedError = lastError_;
    while (Clock::now() < deadline && !broken_) {
      auto message = readMessage(deadline);
      if (!message) break;
      if (!message->contains("id")) handleEvent(std::move(*message));
    }
    if (!broken_) lastError_ = savedError;
  }

  bool waitForEvent(const std::string& method, Clock::time_point deadline) {
    while (true) {
      for (auto it = events_.begin(); it != events_.end(); ++it) {
        if ((*it)["method"] == method) {
          events_.erase(it);
          return true;
        }
      }
      auto message = readMessage(deadline);
      if (!message) {
        lastError_ = "waiting for " + method + ": " + lastError_;
        return false;
      }
      if (!message->contains("id")) handleEvent(std::move(*message));
    }
  }

  void handleEvent(nlohmann::json event) {
    const std::string method = event.value("method", "");
    const nlohmann::json params = event.value("params", nlohmann::json::object());
    // An event of an unexpected shape is not worth failing a call over: nlohmann's type errors stop here.
    try {
      if (method == "Runtime.exceptionThrown" && params.contains("exceptionDetails")) {
        consoleErrors_.push_back(exceptionText(params["exceptionDetails"]));
      } else if (method == "Runtime.consoleAPICalled" && params.value("type", "") == "error") {
        std::string text;
        for (const auto& arg : params.value("args", nlohmann::json::array())) {
          if (!text.empty()) text += ' ';
          if (arg.contains("value")) {
            text += arg["value"].is_string() ? arg["value"].get<std::string>() : arg["value"].dump();
          } else {
            text += arg.value("description", arg.value("type", ""));
          }
        }
        consoleErrors_.push_back(text);
      }
    } catch (const nlohmann::json::exception& e) {
      consoleErrors_.push_back(method + " (unreadable: " + e.what() + ")");
    }
    // Only Page events are waited for; keep the queue from growing with console chatter.
    if (method.starts_with("Page.")) events_.push_back(std::move(event));
  }

  // "Uncaught Error: boom\n    at <anonymous>:1:7" from a Runtime.ExceptionDetails.
  static std::string exceptionText(const nlohmann::json& details) {
    if (!details.is_object()) return details.dump();
    std::string text = details.value("text", "exception");
    if (details.contains("exception") && details["exception"].is_object()) {
      const auto& exception = details["exception"];
      if (exception.contains("description") && exception["description"].is_string()) {
        text += " " + exception["description"].get<std::string>();
      } else if (exception.contains("value")) {
        text += " " + exception["value"].dump();
      }
    }
    return text;
  }

  // While a browser lives this process is a child subreaper: chromium's helpers (renderers left behind by the
  // browser process, the double-forked crash handlers) become our children when their parents exit, so we
  // can reap them. Otherwise they would be zombies of an init that may not reap (as in some containers).
  static void enableSubreaper() {
    if (subreaperUsers_++ > 0) return;
    int already = 0;
    ::prctl(PR_GET_CHILD_SUBREAPER, &already, 0, 0, 0);
    subreaperWasSet_ = already != 0;
    if (!subreaperWasSet_) ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
  }
  static void disableSubreaper() {
    if (--subreaperUsers_ > 0) return;
    if (!subreaperWasSet_) ::prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
  }

  // Live processes whose command line names the temp dir: the whole group, plus the crash handlers that
  // left it (they run in sessions of their own).
  std::vector<pid_t> processesOfThisBrowser() const {
    std::vector<pid_t> found;
    for (const auto& [pid, cmdline] : procFiles("cmdline")) {
      if (cmdline.find(userDataDir_) != std::string::npos) found.push_back(pid);
    }
    return found;
  }

  // SIGTERM to the whole group, SIGKILL after 5 s; then kills what still names the temp dir and reaps every
  // process of the browser that became our child, within 5 s more.
  void stopProcessGroup() {
    if (processGroup_ <= 0) return;
    const pid_t group = processGroup_;
    std::vector<pid_t> outsiders;  // the crash handlers, found while they still have a command line
    for (pid_t pid : processesOfThisBrowser()) {
      if (::getpgid(pid) != group) outsiders.push_back(pid);
    }
    ::kill(-group, SIGTERM);
    auto until = Clock::now() + std::chrono::seconds(5);
    while (pid_ > 0 && Clock::now() < until) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_)
        pid_ = -1;
      else
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::kill(-group, SIGKILL);
    if (pid_ > 0) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    until = Clock::now() + std::chrono::seconds(5);
    while (Clock::now() < until) {
      for (pid_t pid : processesOfThisBrowser()) ::kill(pid, SIGKILL);
      int status = 0;
      while (::waitpid(-group, &status, WNOHANG) > 0) {
      }
      std::erase_if(outsiders, [](pid_t pid) {
        int outsiderStatus = 0;
        pid_t reaped = ::waitpid(pid, &outsiderStatus, WNOHANG);
        // Reaped, or not our child (gone, or its parent reaps it).
        return reaped == pid || (reaped < 0 && errno == ECHILD);
      });
      const bool groupGone = ::kill(-group, 0) != 0 && errno == ESRCH;
      if (groupGone && outsiders.empty() && processesOfThisBrowser().empty()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    processGroup_ = -1;
    disableSubreaper();
  }

  boost::asio::io_context ioContext_;
  std::unique_ptr<WebSocket> websocket_;
  boost::beast::flat_buffer readBuffer_;
  bool readPending_ = false;
  boost::system::error_code readError_;
  std::deque<std::string> inbox_;
  bool broken_ = false;
  int lastId_ = 0;
  std::deque<nlohmann::json> events_;
  std::vector<std::string> consoleErrors_;
  std::string lastError_;
  std::string userDataDir_;
  pid_t pid_ = -1;
  pid_t processGroup_ = -1;  // stays known after the leader is reaped
  int port_ = 0;
  static inline int subreaperUsers_ = 0;
  static inline bool subreaperWasSet_ = false;
};

}  // namespace corral::testing
