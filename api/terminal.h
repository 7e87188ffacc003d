// The terminal protocol (docs/api.md "Terminals"): which upgraded requests open a program's stdio
// (`exec` with tty/stdin options, `console`), and the WebSocket frames that carry it afterwards — binary
// frames with a one-byte stream id in front (0 stdin, 1 stdout, 2 stderr, as channel.k8s.io numbers them),
// text frames with one JSON control message each. Pure: the daemon and the client share it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/error.h"
#include "core/stdio_session.h"

namespace corral::api {

enum class StdioStream : uint8_t { input = 0, output = 1, error = 2 };

// A binary frame: the stream id byte, then the bytes as they are.
std::string encodeStreamFrame(StdioStream stream, std::string_view data);
struct StreamFrame {
  StdioStream stream;
  std::string_view data;  // into the frame given to decode
};
// What a client may send is stdin only; what the daemon sends is stdout or stderr. Anything else (an empty
// frame, an unknown id, a stream going the wrong way) is InvalidArgument naming the field "stream".
Result<StreamFrame> decodeClientFrame(std::string_view frame);
Result<StreamFrame> decodeServerFrame(std::string_view frame);

// Text frames from the client.
struct ResizeControl {  // {"type":"resize","rows":R,"cols":C}
  TerminalSize size;
  bool operator==(const ResizeControl&) const = default;
};
struct InputEndControl {  // {"type":"eof"}: the client's stdin ended (the program reads EOF, pipes only)
  bool operator==(const InputEndControl&) const = default;
};
using ClientControl = std::variant<ResizeControl, InputEndControl>;
std::string renderClientControl(const ClientControl& control);
Result<ClientControl> parseClientControl(std::string_view text);

// Text frames from the daemon: the program's end (last frame but the close), or why the session ended.
struct ExitControl {  // {"type":"exit","exit_code":N} or {"type":"exit","signal":N}
  StdioExit exit;
};
struct ErrorControl {  // {"type":"error","error":{"kind","message","field"}}: the API's error JSON
  Error error;
};
using ServerControl = std::variant<ExitControl, ErrorControl>;
std::string renderServerControl(const ServerControl& control);
Result<ServerControl> parseServerControl(std::string_view text);

// The upgraded requests: `GET /v1/instances/NAME/exec?command=sh&command=-c&...&tty=true&stdin=true&rows=R&
// cols=C&env=K%3DV` and `GET /v1/instances/NAME/console?rows=R&cols=C`.
struct TerminalTarget {
  enum class Kind { exec, console } kind = Kind::exec;
  std::string name;
  StdioRequest request;  // console: only size (and tty/stdinOpen, always true)
};
// nullopt when the path is no terminal path (the ordinary router then answers it); an error for a terminal
// path with a wrong method or query (InvalidArgument naming the parameter).
Result<std::optional<TerminalTarget>> parseTerminalTarget(std::string_view method, std::string_view target);
std::string renderTerminalTarget(const TerminalTarget& target);

}  // namespace corral::api
