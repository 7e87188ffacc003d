// The guest agent protocol: one JSON object per line over the virtio-serial port named kAgentChannel.
// Shared by the guest side (images/guest/init.cc, the guest's PID 1, which also serves the agent) and the
// host side (vmm/agent.{h,cc}). Header only, no dependencies, so the static guest binary can include it.
//
// Guest → host, unsolicited, once, as soon as the port is open (and again as the answer to every "hello"):
//   {"event": "ready", "uptime_ms": 812, "init_started_ms": 640, "kernel": "6.1.0-27-cloud-amd64",
//    "hostname": "web-1", "version": 2}
//   uptime_ms: the guest's CLOCK_BOOTTIME when it sent this; init_started_ms: CLOCK_BOOTTIME when /init
//   began (so kernel time ≈ init_started_ms, userspace time ≈ uptime_ms - init_started_ms).
// Guest → host, unsolicited, just before the guest powers off by its init (the agent's shutdown, the power
// button, or busybox's halt/poweroff/reboot signalling PID 1; not a `poweroff -f` that calls reboot(2)):
//   {"event": "poweroff", "reason": "poweroff (SIGUSR2)", "workload": {"exit_code": 3,
//    "signal": null} | null}
//   workload: how the image's workload ended; null when there is none or it still ran.
// Host → guest requests, each with a client-chosen integer "id" echoed in the one answer:
//   {"id": 1, "op": "hello"}                     → {"id": 1, "event": "ready", ...same fields as above}
//   {"id": 2, "op": "exec", "command": ["uname", "-r"], "env": ["K=V"], "timeout_ms": 60000}
//        → {"id": 2, "exit_code": 0 | null, "signal": null | 9, "stdout": "...", "stderr": "...",
//           "truncated": false, "timed_out": false}
//        stdout/stderr each capped at kAgentOutputCap bytes (truncated true when more came); bytes that are
//        not UTF-8 become U+FFFD. A command that cannot be started: exit_code 127 and the reason in stderr.
//   {"id": 3, "op": "shutdown"}                  → {"id": 3, "ok": true}, then sync() and power off.
//   {"id": 4, "op": "set_clock", "unix_ns": 1796000000123456789}
//        → {"id": 4, "ok": true} once CLOCK_REALTIME is set to unix_ns (clock_settime), or {"id": 4, "error":
//          "..."}. Sent by the host after a VM was restored from a saved state: the guest's clock stood
//          still while the state was on disk.
//   {"id": 5, "op": "set_identity", "hostname": "web-2", "mac": "52:54:00:12:34:56" | null,
//    "ip": "10.0.1.5/24" | null, "gateway": "10.0.1.1" | null, "nameserver": "10.0.1.2" | null,
//    "search": "lab.internal" | null (only with a nameserver),
//    "seed": "<32 to 512 bytes, lowercase hex>", "unix_ns": 1796000000123456789}
//        → {"id": 5, "ok": true, "hostname": "web-2", "mac": "52:54:00:12:34:56" | null, "seeded_bytes": 64}
//          or {"id": 5, "error": "..."}. Sent by the host to a VM restored from a shared warm snapshot: the
//          seed is mixed into the random pool and credited (RNDADDENTROPY), then the clock is set, then the
//          hostname, then eth0's MAC (eth0 down meanwhile), address and default route (null ip: eth0 down),
//          then /etc/resolv.conf when a nameserver is given (the template's names another subnet's resolver).
//          "mac" in the answer is eth0's address read back from /sys.
//   anything malformed                           → {"id": N | null, "error": "why"}
//
// Interactive sessions (version 2): a program whose stdio streams over the channel while other requests go
// on. The host picks the session number (unique per connection, so it can route events that come before
// the answer):
//   {"id": 6, "op": "open", "session": 7, "command": ["sh"] | [] (the guest's /bin/sh), "env": ["K=V"],
//    "tty": true, "rows": 24, "cols": 80, "stdin": true}
//        → {"id": 6, "ok": true, "session": 7, "pty": "/dev/pts/0" | null}, or {"id": 6, "error": "..."} (at
//          most kAgentMaxSessions at once; a command that cannot be started: the error names it and carries
//          "field": "command"). With "tty"
//          the program runs in a new session with a pty from the guest's devpts as its controlling terminal
//          and stdin/stdout/stderr, the window set to rows x cols (0: left alone); without, on three pipes.
//          "stdin": false: the program's stdin reads EOF at once (pipes) or gets no input (tty).
// Then, with no "id" and no answer (a session that already ended is ignored):
//   {"op": "input", "session": 7, "data": "<base64>"}     bytes for the program's stdin (the pty master)
//   {"op": "ack", "session": 7, "bytes": 4096}            the host passed that much output on (flow control)
//   {"op": "resize", "session": 7, "rows": 50, "cols": 132}  TIOCSWINSZ on the pty (SIGWINCH follows)
//   {"op": "close_input", "session": 7}                   pipes: the program's stdin reaches EOF
//   {"op": "signal", "session": 7, "signal": 2}           kill(2) of the program's process group
//   {"op": "close", "session": 7}                          the host detached: SIGKILL to the process group,
//                                                          the pty or pipes closed, no further event
// Guest → host, per session:
//   {"session": 7, "event": "output", "stream": "stdout" | "stderr", "data": "<base64>"}  (a tty: stdout)
//   {"session": 7, "event": "written", "bytes": 4096}     that much input reached the program (flow control)
//   {"session": 7, "event": "exit", "exit_code": 5 | null, "signal": null | 9}
//        last, once the program was reaped and its output read to the end (EOF, or 250 ms without output
//        after the program ended while a background process keeps the pty or a pipe open).
// Flow control: each side keeps at most kAgentSessionWindow bytes of a session's data in flight per
// direction. The guest sends output while the bytes sent minus the bytes acked are below the window (else
// it stops reading the pty, so the program blocks on a full terminal); the host sends input while the bytes
// sent minus the bytes "written" are below it. Neither side buffers more than a window per stream.
//
// Requests are served in order; an exec runs to its end before the next request is read (sessions wait
// meanwhile, their programs go on). Lines are at most kAgentMaxLine bytes.
// The host skips lines whose "id" is not the one it waits for (late answers to repeated hellos) and repeated
// "ready" events; an "error" with id null fails the request it is waiting for.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace corral::vmm {

inline constexpr const char* kAgentChannel = "org.corral.agent.0";
// The virtio-serial device has this many ports: 0 (QEMU keeps it for a console) and the agent's.
inline constexpr int kAgentSerialPorts = 2;
inline constexpr int kAgentProtocolVersion = 2;
inline constexpr int kAgentSessionsSince = 2;  // the first version with "open"
inline constexpr std::size_t kAgentMaxSessions = 16;
// Per session and direction: small, since each output event costs a line on a virtio-serial port whose
// guest buffers are a few pages; 64 KiB keeps a fast writer (`yes`, `cat` of a big file) moving.
inline constexpr std::size_t kAgentSessionWindow = 64 << 10;
inline constexpr std::size_t kAgentSessionChunk = 16 << 10;  // at most this many raw bytes per event
inline constexpr std::size_t kAgentOutputCap = 1 << 20;
inline constexpr std::size_t kAgentMaxLine = 8 << 20;
inline constexpr std::size_t kIdentitySeedBytes = 64;  // what the host sends in set_identity's "seed"

// Kernel command line parameters the guest init reads (besides console=...):
//   corral.name=NAME          the instance name (hostname unless corral.hostname is given)
//   corral.hostname=HOST
//   corral.ip=A.B.C.D/LEN     eth0's address; absent: eth0 stays down (lo is always up)
//   corral.gw=A.B.C.D         default route via this gateway
//   corral.mac=..             (informational)
//   corral.dns=A.B.C.D        /etc/resolv.conf gets "nameserver A.B.C.D" (the subnet's VPC resolver, .2)
//   corral.search=DOMAIN      and "search DOMAIN" (the VPC's VPC.internal); written in the image's root
//                             when there is one
//   corral.root=SERIAL        the root filesystem is the ext4 on the virtio disk with this serial: the init
//                             mounts it, moves /dev /proc /sys /run into it, chroots there and runs the
//                             workload the disk with serial kConfigDiskSerial describes (its bytes up to
//                             the first NUL are a JSON object: {"argv": [...], "env": ["K=V"],
//                             "workdir": "/app", "user": "app:app"}); the agent's exec runs there too
inline constexpr const char* kCmdlineName = "corral.name";
inline constexpr const char* kCmdlineHostname = "corral.hostname";
inline constexpr const char* kCmdlineIp = "corral.ip";
inline constexpr const char* kCmdlineGateway = "corral.gw";
inline constexpr const char* kCmdlineRoot = "corral.root";
inline constexpr const char* kCmdlineDns = "corral.dns";
inline constexpr const char* kCmdlineSearch = "corral.search";
inline constexpr const char* kRootDiskSerial = "corral-root";
inline constexpr const char* kConfigDiskSerial = "corral-config";

// Base64 (RFC 4648, with padding) for the session's bytes, which need not be UTF-8.
inline std::string base64Encode(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 2 < bytes.size(); i += 3) {
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | uint32_t(uint8_t(bytes[i + 1])) << 8 |
                       uint32_t(uint8_t(bytes[i + 2]));
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (i < bytes.size()) {
    const bool two = i + 1 < bytes.size();
    const uint32_t v = uint32_t(uint8_t(bytes[i])) << 16 | (two ? uint32_t(uint8_t(bytes[i + 1])) << 8 : 0);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += two ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// nullopt for anything that is not canonical padded base64.
inline std::optional<std::string> base64Decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 4 * 3);
  for (std::size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    const int pad = last ? (text[i + 3] == '=') + (text[i + 2] == '=') : 0;
    if (pad == 1 && text[i + 2] == '=') return std::nullopt;  // "x=y=" or similar
    int v[4];
    for (int k = 0; k < 4 - pad; ++k) {
      v[k] = value(text[i + static_cast<std::size_t>(k)]);
      if (v[k] < 0) return std::nullopt;
    }
    const uint32_t bits = uint32_t(v[0]) << 18 | uint32_t(v[1]) << 12 | (pad < 2 ? uint32_t(v[2]) << 6 : 0) |
                          (pad < 1 ? uint32_t(v[3]) : 0);
    // Canonical: the bits padding drops must be zero.
    if ((pad == 2 && (bits & 0xffff)) || (pad == 1 && (bits & 0xff))) return std::nullopt;
    out += static_cast<char>(bits >> 16);
    if (pad < 2) out += static_cast<char>((bits >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(bits & 0xff);
  }
  return out;
}

}  // namespace corral::vmm
