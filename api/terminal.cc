// The terminal protocol's frames and upgraded targets (api/terminal.h).
#include "api/terminal.h"

#include <charconv>
#include <limits>
#include <nlohmann/json.hpp>
#include <vector>

#include "api/api.h"
#include "api/encoding.h"
#include "api/paths.h"

namespace corral::api {
namespace {

using nlohmann::json;

Result<StreamFrame> decodeFrame(std::string_view frame, bool fromClient) {
  if (frame.empty()) return fail(invalidField("stream", "a binary frame needs its stream id byte first"));
  const auto id = static_cast<uint8_t>(frame.front());
  if (id > static_cast<uint8_t>(StdioStream::error))
    return fail(invalidField("stream", "unknown stream id {} (0 stdin, 1 stdout, 2 stderr)", id));
  const auto stream = static_cast<StdioStream>(id);
  if (fromClient && stream != StdioStream::input)
    return fail(invalidField("stream", "a client sends stream 0 (stdin) only, not {}", id));
  if (!fromClient && stream == StdioStream::input)
    return fail(invalidField("stream", "corrald sends streams 1 and 2 only, not 0"));
  return StreamFrame{stream, frame.substr(1)};
}

Result<json> parseObject(std::string_view text) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded() || !body.is_object())
    return fail(invalidField("control", "a text frame must be one JSON object"));
  if (!body.contains("type") || !body["type"].is_string())
    return fail(invalidField("type", "a control frame needs a \"type\" string"));
  return body;
}

Result<uint16_t> dimension(const json& body, const char* name) {
  if (!body.contains(name) || !body[name].is_number_unsigned() ||
      body[name].get<uint64_t>() > std::numeric_limits<uint16_t>::max())
    return fail(invalidField(name, "{} must be a whole number from 0 to 65535", name));
  return body[name].get<uint16_t>();
}

Result<uint16_t> dimensionText(const std::string& text, const char* name) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc{} || end != text.data() + text.size() ||
      value > std::numeric_limits<uint16_t>::max())
    return fail(invalidField(name, "query parameter {} must be a whole number from 0 to 65535, got \"{}\"",
                             name, text));
  return static_cast<uint16_t>(value);
}

Result<bool> boolText(const std::string& text, const char* name) {
  if (text == "true" || text == "1") return true;
  if (text == "false" || text == "0") return false;
  return fail(invalidField(name, "query parameter {} must be true or false, got \"{}\"", name, text));
}

}  // namespace

std::string encodeStreamFrame(StdioStream stream, std::string_view data) {
  std::string frame;
  frame.reserve(data.size() + 1);
  frame.push_back(static_cast<char>(stream));
  frame.append(data);
  return frame;
}

Result<StreamFrame> decodeClientFrame(std::string_view frame) {
  return decodeFrame(frame, true);
}
Result<StreamFrame> decodeServerFrame(std::string_view frame) {
  return decodeFrame(frame, false);
}

std::string renderClientControl(const ClientControl& control) {
  if (const auto* resize = std::get_if<ResizeControl>(&control))
    return json{{"type", "resize"}, {"rows", resize->size.rows}, {"cols", resize->size.cols}}.dump();
  return json{{"type", "eof"}}.dump();
}

Result<ClientControl> parseClientControl(std::string_view text) {
  auto body = parseObject(text);
  if (!body) return fail(body.error());
  const std::string type = (*body)["type"].get<std::string>();
  if (type == "resize") {
    auto rows = dimension(*body, "rows");
    if (!rows) return fail(rows.error());
    auto cols = dimension(*body, "cols");
    if (!cols) return fail(cols.error());
    return ResizeControl{{*rows, *cols}};
  }
  if (type == "eof") return InputEndControl{};
  return fail(invalidField("type", "unknown control \"{}\" (resize or eof)", type));
}

std::string renderServerControl(const ServerControl& control) {
  if (const auto* exit = std::get_if<ExitControl>(&control)) {
    json body{{"type", "exit"}};
    if (exit->exit.signal) {
      body["signal"] = *exit->exit.signal;
    } else {
      body["exit_code"] = exit->exit.exitCode.value_or(0);
    }
    return body.dump();
  }
  json body = errorJson(std::get<ErrorControl>(control).error);
  body["type"] = "error";
  return body.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<ServerControl> parseServerControl(std::string_view text) {
  auto body = parseObject(text);
  if (!body) return fail(body.error());
  const std::string type = (*body)["type"].get<std::string>();
  if (type == "exit") {
    StdioExit exit;
    if (body->contains("signal") && (*body)["signal"].is_number_integer()) {
      exit.signal = (*body)["signal"].get<int>();
    } else if (body->contains("exit_code") && (*body)["exit_code"].is_number_integer()) {
      exit.exitCode = (*body)["exit_code"].get<int>();
    } else {
      return fail(invalidField("exit_code", "an exit frame needs exit_code or signal"));
    }
    return ExitControl{exit};
  }
  if (type == "error") return ErrorControl{errorFromJson(*body, 500)};
  return fail(invalidField("type", "unknown control \"{}\" (exit or error)", type));
}

Result<std::optional<TerminalTarget>> parseTerminalTarget(std::string_view method, std::string_view target) {
  const size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  std::string_view query =
      question == std::string_view::npos ? std::string_view{} : target.substr(question + 1);
  const std::string prefix = fmt::format("/v1/{}/", kInstances);
  if (!path.starts_with(prefix)) return std::nullopt;
  const std::string_view rest = path.substr(prefix.size());
  const size_t slash = rest.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  const std::string_view action = rest.substr(slash + 1);
  TerminalTarget out;
  if (action == "console") {
    out.kind = TerminalTarget::Kind::console;
    out.request.tty = true;
    out.request.stdinOpen = true;
  } else if (action == "exec") {
    // POST .../exec (run to completion) stays the ordinary route; only the upgrade's GET is a terminal.
    if (method != "GET") return std::nullopt;
  } else {
    return std::nullopt;
  }
  if (method != "GET")
    return fail(
        invalidField("method", "{} takes GET with an Upgrade: websocket header, not {}", path, method));
  auto name = percentDecode(rest.substr(0, slash), "name");
  if (!name) return fail(name.error());
  out.name = std::move(*name);
  bool sawTty = false, sawStdin = false;
  while (!query.empty()) {
    const size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const size_t eq = pair.find('=');
    auto key = percentDecode(pair.substr(0, eq), "query");
    if (!key) return fail(key.error());
    auto value = percentDecode(eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), *key);
    if (!value) return fail(value.error());
    const bool exec = out.kind == TerminalTarget::Kind::exec;
    if (*key == "rows" || *key == "cols") {
      auto number = dimensionText(*value, key->c_str());
      if (!number) return fail(number.error());
      (*key == "rows" ? out.request.size.rows : out.request.size.cols) = *number;
    } else if (exec && *key == "command") {
      out.request.command.push_back(std::move(*value));
    } else if (exec && *key == "env") {
      if (value->find('=') == std::string::npos || value->front() == '=')
        return fail(invalidField("env", "\"{}\" is not K=V", *value));
      out.request.env.push_back(std::move(*value));
    } else if (exec && (*key == "tty" || *key == "stdin")) {
      bool& seen = *key == "tty" ? sawTty : sawStdin;
      if (seen) return fail(invalidField(*key, "query parameter \"{}\" given twice", *key));
      seen = true;
      auto flag = boolText(*value, key->c_str());
      if (!flag) return fail(flag.error());
      (*key == "tty" ? out.request.tty : out.request.stdinOpen) = *flag;
    } else {
      return fail(invalidField(*key, "unknown query parameter \"{}\" on {}", *key, path));
    }
  }
  if (out.kind == TerminalTarget::Kind::exec && !out.request.tty &&
      (out.request.size.rows != 0 || out.request.size.cols != 0))
    return fail(invalidField(out.request.size.rows != 0 ? "rows" : "cols",
                             "a window size needs tty=true (pipes have no window)"));
  if (out.kind == TerminalTarget::Kind::exec && !out.request.command.empty() &&
      out.request.command.front().empty())
    return fail(invalidField("command", "the program to run is empty"));
  return std::optional<TerminalTarget>(std::move(out));
}

std::string renderTerminalTarget(const TerminalTarget& target) {
  std::vector<std::string> params;
  const bool exec = target.kind == TerminalTarget::Kind::exec;
  if (exec) {
    for (const auto& word : target.request.command) params.push_back("command=" + percentEncode(word));
    for (const auto& variable : target.request.env) params.push_back("env=" + percentEncode(variable));
    params.push_back(fmt::format("tty={}", target.request.tty));
    params.push_back(fmt::format("stdin={}", target.request.stdinOpen));
  }
  if (target.request.tty && (target.request.size.rows != 0 || target.request.size.cols != 0)) {
    params.push_back(fmt::format("rows={}", target.request.size.rows));
    params.push_back(fmt::format("cols={}", target.request.size.cols));
  }
  std::string out =
      fmt::format("/v1/{}/{}/{}", kInstances, percentEncode(target.name), exec ? "exec" : "console");
  for (size_t i = 0; i < params.size(); ++i) out += (i == 0 ? "?" : "&") + params[i];
  return out;
}

}  // namespace corral::api
