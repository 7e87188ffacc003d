// The flow logs' kernel readers in a VPC namespace (net/flow_capture.h): NFLOG and conntrack.
#include "net/flow_capture.h"

// libnetfilter_log's header uses these types without including what declares them.
#include <netinet/in.h>
#include <stdint.h>
#include <sys/types.h>
// clang-format off
#include <libnetfilter_log/libnetfilter_log.h>
#include <libnetfilter_conntrack/libnetfilter_conntrack.h>
// clang-format on
#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <future>
#include <optional>
#include <system_error>
#include <thread>

#include "core/log.h"
#include "core/unique_fd.h"

namespace corral::net {
namespace {

int64_t nowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Written from the capture's thread, which is in the VPC namespace: /proc/sys/net is the namespace's.
Status writeProcSys(const char* path, const char* value) {
  UniqueFd fd(::open(path, O_WRONLY | O_CLOEXEC));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
  if (::write(fd.get(), value, std::strlen(value)) < 0)
    return fail(systemError(errno, fmt::format("write(\"{}\")", path)));
  return {};
}

void setNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) ::fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

PacketTuple tupleOf(const nf_conntrack* ct, bool reply) {
  PacketTuple t;
  t.source = ntohl(nfct_get_attr_u32(ct, reply ? ATTR_REPL_IPV4_SRC : ATTR_ORIG_IPV4_SRC));
  t.destination = ntohl(nfct_get_attr_u32(ct, reply ? ATTR_REPL_IPV4_DST : ATTR_ORIG_IPV4_DST));
  t.protocol = nfct_get_attr_u8(ct, ATTR_ORIG_L4PROTO);
  if (t.protocol == IPPROTO_TCP || t.protocol == IPPROTO_UDP) {
    t.sourcePort = ntohs(nfct_get_attr_u16(ct, reply ? ATTR_REPL_PORT_SRC : ATTR_ORIG_PORT_SRC));
    t.destinationPort = ntohs(nfct_get_attr_u16(ct, reply ? ATTR_REPL_PORT_DST : ATTR_ORIG_PORT_DST));
  }
  return t;
}

std::optional<ConntrackFlow> flowOf(const nf_conntrack* ct) {
  if (nfct_get_attr_u8(ct, ATTR_L3PROTO) != AF_INET) return std::nullopt;
  ConntrackFlow flow;
  flow.id = nfct_get_attr_u32(ct, ATTR_ID);
  flow.original = tupleOf(ct, false);
  flow.reply = tupleOf(ct, true);
  flow.originalPackets = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_PACKETS);
  flow.originalBytes = nfct_get_attr_u64(ct, ATTR_ORIG_COUNTER_BYTES);
  flow.replyPackets = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_PACKETS);
  flow.replyBytes = nfct_get_attr_u64(ct, ATTR_REPL_COUNTER_BYTES);
  if (nfct_attr_is_set(ct, ATTR_TIMESTAMP_START) > 0)
    flow.startMs = static_cast<int64_t>(nfct_get_attr_u64(ct, ATTR_TIMESTAMP_START) / 1'000'000);
  return flow;
}

}  // namespace

struct FlowCapture::State {
  std::string netns;
  std::chrono::milliseconds dumpEvery{kFlowWindowMs};
  int receiveBuffer = kFlowCaptureBuffer;
  FlowCaptureSink sink;
  UniqueFd stop;  // an eventfd: written to stop the thread
  std::thread thread;
  // Owned by the thread once it runs.
  nflog_handle* log = nullptr;
  nflog_g_handle* group = nullptr;
  nfct_handle* events = nullptr;
  nfct_handle* dumps = nullptr;
  std::vector<uint32_t> live;  // ids seen by the running dump

  ~State() {
    if (group) nflog_unbind_group(group);
    if (log) nflog_close(log);
    if (events) nfct_close(events);
    if (dumps) nfct_close(dumps);
  }

  // In the namespace: accounting on, then the sockets.
  Status open() {
    const std::string path = "/run/netns/" + netns;
    UniqueFd nsFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!nsFd) return fail(systemError(errno, fmt::format("open(\"{}\")", path)));
    if (::setns(nsFd.get(), CLONE_NEWNET) != 0)
      return fail(systemError(errno, fmt::format("setns(\"{}\", CLONE_NEWNET)", path)));
    // Packet and byte counters on every conntrack entry, and when it began.
    if (auto ok = writeProcSys("/proc/sys/net/netfilter/nf_conntrack_acct", "1"); !ok) return ok;
    if (auto ok = writeProcSys("/proc/sys/net/netfilter/nf_conntrack_timestamp", "1"); !ok) return ok;

    log = nflog_open();
    if (!log) return fail(systemError(errno, "nflog_open()"));
    // Older kernels want the family bound first; newer ones ignore it.
    nflog_bind_pf(log, AF_INET);
    group = nflog_bind_group(log, kFlowLogGroup);
    if (!group) return fail(systemError(errno, fmt::format("nflog_bind_group({})", kFlowLogGroup)));
    if (nflog_set_mode(group, NFULNL_COPY_PACKET, kFlowLogSnaplen) < 0)
      return fail(systemError(errno, "nflog_set_mode(NFULNL_COPY_PACKET)"));
    nflog_callback_register(group, &State::onLog, this);
    setNonBlocking(nflog_fd(log));

    events = nfct_open(CONNTRACK, NF_NETLINK_CONNTRACK_DESTROY);
    if (!events) return fail(systemError(errno, "nfct_open(CONNTRACK, NF_NETLINK_CONNTRACK_DESTROY)"));
    nfct_callback_register(events, NFCT_T_DESTROY, &State::onEvent, this);
    setNonBlocking(nfct_fd(events));
    const int size = receiveBuffer;
    ::setsockopt(nfct_fd(events), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);
    ::setsockopt(nflog_fd(log), SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size);

    dumps = nfct_open(CONNTRACK, 0);
    if (!dumps) return fail(systemError(errno, "nfct_open(CONNTRACK, 0)"));
    nfct_callback_register(dumps, NFCT_T_ALL, &State::onDump, this);
    return {};
  }

  static int onLog(nflog_g_handle*, nfgenmsg*, nflog_data* data, void* self) {
    auto* state = static_cast<State*>(self);
    char* payload = nullptr;
    const int length = nflog_get_payload(data, &payload);
    const char* prefix = nflog_get_prefix(data);
    if (length <= 0 || prefix == nullptr) return 0;
    auto parsed = parseIpv4Packet(std::string_view(payload, static_cast<size_t>(length)));
    if (!parsed) return 0;
    RejectedPacket packet{
        .prefix = prefix, .tuple = parsed->first, .bytes = parsed->second, .atMs = nowMs(), .inDevice = {}};
    timeval tv{};
    if (nflog_get_timestamp(data, &tv) == 0 && tv.tv_sec > 0)
      packet.atMs = static_cast<int64_t>(tv.tv_sec) * 1000 + tv.tv_usec / 1000;
    char name[IF_NAMESIZE] = {};
    if (const uint32_t index = nflog_get_indev(data); index != 0 && ::if_indextoname(index, name) != nullptr)
      packet.inDevice = name;
    if (state->sink.rejected) state->sink.rejected(packet);
    return 0;
  }

  static int onEvent(nf_conntrack_msg_type, nf_conntrack* ct, void* self) {
    auto* state = static_cast<State*>(self);
    if (auto flow = flowOf(ct)) {
      flow->ended = true;
      if (state->sink.flow) state->sink.flow(*flow);
    }
    return NFCT_CB_CONTINUE;
  }

  static int onDump(nf_conntrack_msg_type, nf_conntrack* ct, void* self) {
    auto* state = static_cast<State*>(self);
    if (auto flow = flowOf(ct)) {
      state->live.push_back(flow->id);
      if (state->sink.flow) state->sink.flow(*flow);
    }
    return NFCT_CB_CONTINUE;
  }

  void lost(FlowAction kind, std::string_view what) {
    if (sink.lost) sink.lost(kind, std::string(what));
  }

  void readLog() {
    char buffer[65536];
    for (;;) {
      const ssize_t n = ::recv(nflog_fd(log), buffer, sizeof buffer, 0);
      if (n < 0) {
        if (errno == ENOBUFS) {
          lost(FlowAction::Reject, "NFLOG: the socket's buffer overflowed, rejected packets were not logged");
          continue;
        }
        return;  // EAGAIN: all read
      }
      nflog_handle_packet(log, buffer, static_cast<int>(n));
    }
  }

  void readEvents() {
    // Non-blocking: nfct_catch returns once the socket is empty.
    if (nfct_catch(events) < 0 && errno == ENOBUFS)
      lost(FlowAction::Accept,
           "conntrack: the event socket's buffer overflowed, ended flows were not logged");
  }

  void dump() {
    live.clear();
    uint32_t family = AF_INET;
    if (nfct_query(dumps, NFCT_Q_DUMP, &family) < 0) {
      log::warn("flow logs in netns \"{}\": conntrack dump: {}", netns, std::strerror(errno));
      return;
    }
    if (sink.dumped) sink.dumped(live);
  }

  void run() {
    auto nextDump = std::chrono::steady_clock::now() + dumpEvery;
    for (;;) {
      const auto wait =
          std::chrono::duration_cast<std::chrono::milliseconds>(nextDump - std::chrono::steady_clock::now());
      pollfd fds[3] = {{.fd = stop.get(), .events = POLLIN, .revents = 0},
                       {.fd = nflog_fd(log), .events = POLLIN, .revents = 0},
                       {.fd = nfct_fd(events), .events = POLLIN, .revents = 0}};
      const int ready = ::poll(fds, 3, static_cast<int>(std::max<int64_t>(0, wait.count())));
      if (ready < 0 && errno != EINTR) {
        log::error("flow logs in netns \"{}\": poll: {}", netns, std::strerror(errno));
        return;
      }
      if (fds[0].revents != 0) return;
      if (fds[1].revents != 0) readLog();
      if (fds[2].revents != 0) readEvents();
      if (std::chrono::steady_clock::now() >= nextDump) {
        dump();
        nextDump = std::chrono::steady_clock::now() + dumpEvery;
      }
    }
  }
};

Result<std::unique_ptr<FlowCapture>> FlowCapture::start(const std::string& netns,
                                                        std::chrono::milliseconds dumpEvery,
                                                        int receiveBuffer, FlowCaptureSink sink) {
  if (netns.empty() || netns.find('/') != std::string::npos || netns == "." || netns == "..")
    return fail(invalidField("netns", "network namespace name \"{}\" is not a plain name", netns));
  auto state = std::make_unique<State>();
  state->netns = netns;
  state->dumpEvery = dumpEvery;
  state->receiveBuffer = receiveBuffer;
  state->sink = std::move(sink);
  state->stop = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!state->stop) return fail(systemError(errno, "eventfd()"));
  std::promise<Status> opened;
  std::future<Status> answer = opened.get_future();
  State* raw = state.get();
  try {
    state->thread = std::thread([raw, &opened] {
      Status ok = raw->open();
      const bool running = ok.has_value();
      opened.set_value(std::move(ok));
      if (running) raw->run();
    });
  } catch (const std::system_error& e) {
    return fail(systemError(e.code().value(), "std::thread (flow capture)"));
  }
  Status ok = answer.get();
  if (!ok) {
    state->thread.join();
    return fail(std::move(ok.error()).wrap(fmt::format("flow logs in netns \"{}\"", netns)));
  }
  return std::unique_ptr<FlowCapture>(new FlowCapture(std::move(state)));
}

FlowCapture::FlowCapture(std::unique_ptr<State> state) : state_(std::move(state)) {}

FlowCapture::~FlowCapture() {
  const uint64_t one = 1;
  if (::write(state_->stop.get(), &one, sizeof one) < 0) {
    // An eventfd write only fails on overflow, which one write cannot reach.
  }
  if (state_->thread.joinable()) state_->thread.join();
}

const std::string& FlowCapture::netns() const {
  return state_->netns;
}

}  // namespace corral::net
