// The guest agent protocol: one JSON object per line over the virtio-serial port named kAgentChannel.
// Shared by the guest side (images/guest/init.cc, the guest's PID 1, which also serves the agent) and the
// host side (vmm/agent.{h,cc}). Header only, no dependencies, so the static guest binary can include it.
//
// Guest → host, unsolicited, once, as soon as the port is open (and again as the answer to every "hello"):
//   {"event": "ready", "uptime_ms": 812, "init_started_ms": 640, "kernel": "6.1.0-27-cloud-amd64",
//    "hostname": "web-1", "version": 1}
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
//    "ip": "10.0.1.5/24" | null, "gateway": "10.0.1.1" | null,
//    "seed": "<32 to 512 bytes, lowercase hex>", "unix_ns": 1796000000123456789}
//        → {"id": 5, "ok": true, "hostname": "web-2", "mac": "52:54:00:12:34:56" | null, "seeded_bytes": 64}
//          or {"id": 5, "error": "..."}. Sent by the host to a VM restored from a shared warm snapshot: the
//          seed is mixed into the random pool and credited (RNDADDENTROPY), then the clock is set, then the
//          hostname, then eth0's MAC (eth0 down meanwhile), address and default route (null ip: eth0 down).
//          "mac" in the answer is eth0's address read back from /sys.
//   anything malformed                           → {"id": N | null, "error": "why"}
// Requests are served one at a time, in order. Lines are at most kAgentMaxLine bytes.
// The host skips lines whose "id" is not the one it waits for (late answers to repeated hellos) and repeated
// "ready" events; an "error" with id null fails the request it is waiting for.
#pragma once

#include <cstddef>

namespace corral::vmm {

inline constexpr const char* kAgentChannel = "org.corral.agent.0";
// The virtio-serial device has this many ports: 0 (QEMU keeps it for a console) and the agent's.
inline constexpr int kAgentSerialPorts = 2;
inline constexpr int kAgentProtocolVersion = 1;
inline constexpr std::size_t kAgentOutputCap = 1 << 20;
inline constexpr std::size_t kAgentMaxLine = 8 << 20;
inline constexpr std::size_t kIdentitySeedBytes = 64;  // what the host sends in set_identity's "seed"

// Kernel command line parameters the guest init reads (besides console=...):
//   corral.name=NAME          the instance name (hostname unless corral.hostname is given)
//   corral.hostname=HOST
//   corral.ip=A.B.C.D/LEN     eth0's address; absent: eth0 stays down (lo is always up)
//   corral.gw=A.B.C.D         default route via this gateway
//   corral.mac=..             (informational)
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
inline constexpr const char* kRootDiskSerial = "corral-root";
inline constexpr const char* kConfigDiskSerial = "corral-config";

}  // namespace corral::vmm
