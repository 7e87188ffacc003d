// `corral compare`: the same image (busybox's userland, or any image of corrald's store) booted N times as a
// container and N times as a VM, measured side by side: boot time and its steps (or, with --ready-port, the
// time until the workload accepts a TCP connect), host memory, what a static probe sees inside
// (isolation), the network between them and the accelerator. Everything it starts it removes again, also
// on Ctrl-C.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "api/compare_render.h"
#include "cli/cli.h"

namespace corral::cli {
namespace {

// A command's output as it came, to be parsed (displayText escapes control characters, newlines too, for a
// terminal); what is printed of it goes through displayText or the JSON encoder.
std::string outputText(const json& value) {
  return value.is_string() ? value.get<std::string>() : std::string();
}

volatile sig_atomic_t interrupted = 0;

void onInterrupt(int) {
  interrupted = 1;
}

bool stopRequested() {
  return interrupted != 0;
}

const std::array<std::string, 2>& kKinds = api::kCompareKinds;
const std::array<std::string, 9> kNamespaces = {"cgroup",           "ipc",  "mnt",  "net", "pid",
                                                "pid_for_children", "time", "user", "uts"};

std::string instanceName(const std::string& kind, int64_t index) {
  return fmt::format("compare-{}-{}", kind == "vm" ? "v" : "c", index);
}

// The VMs `--warm` restores from the shared snapshot, next to the booted ones.
std::string warmCloneName(int64_t index) {
  return fmt::format("compare-w-{}", index);
}

// A warm start's steps from its boot record: the top-level ones (domain, agent, clock or identity) and
// the clone's domain steps (copy of the saved state, libvirt's restore, NIC), each in ms.
json warmSteps(const json& boot) {
  json steps = json::object();
  static const std::set<std::string> kNotSteps = {"total_ms", "requested_at_ms", "guest_uptime_ms"};
  for (const auto& [key, value] : boot.items()) {
    if (value.is_number() && key.ends_with("_ms") && !kNotSteps.count(key)) steps[key] = value;
  }
  static const std::set<std::string> kCloneSteps = {"copy_ms", "restore_ms", "nic_ms"};
  for (const auto& [key, value] : field(boot, "domain_steps").items()) {
    if (value.is_number() && kCloneSteps.count(key)) steps[key] = value;
  }
  return steps;
}

// ---- Numbers ----

// ---- One compare run ----

struct Sample {
  std::string name;
  std::string kind;
  json instance;   // the daemon's view once ready
  json probe;      // corral-probe's report, or null
  json readiness;  // what "ready" meant for this sample, and when (startedReadiness, portReadiness)
  std::string error;
};

// What "ready" means without --ready-port: what the daemon's boot.total_ms ends at.
json startedReadiness(const std::string& kind) {
  return kind == "vm" ? json{{"kind", "guest-agent"}, {"meaning", "the guest's agent answered corrald"}}
                      : json{{"kind", "exec"}, {"meaning", "the container's command was exec'd"}};
}

// With --ready-port: the daemon's answer to wait-port (docs/api.md) as the sample's readiness.
json portReadiness(const json& answer) {
  return {{"kind", "tcp-connect"},         {"meaning", "the workload accepted a TCP connect on the port"},
          {"port", field(answer, "port")}, {"ready_ms", field(answer, "ready_ms")},
          {"from", field(answer, "from")}, {"attempts", field(answer, "attempts")}};
}

constexpr int64_t kReadyPortTimeoutSeconds = 240;

class Compare {
 public:
  Compare(const Invocation& invocation, api::Client client)
      : invocation_(invocation),
        client_(std::move(client)),
        patient_(client_.socketPath(), std::chrono::minutes(5)) {}

  int run();

 private:
  Status checkNamesFree();
  Status checkImage();
  bool busybox() const { return image_ == "busybox"; }
  void startAll();
  // Starts it and, with --ready-port, waits for the port: the readiness to record, or null.
  Result<json> startOne(const std::string& kind, int64_t index);
  void waitForVms();
  void collect();
  json measureNetwork();
  json pingFrom(const std::string& from, const std::string& to);
  json tcpConnectFrom(const std::string& from, const std::string& to);
  json isolation(const json& host) const;
  json summary() const;
  void removeAll();
  // --warm: each booted VM stopped with --save and started again (resumed), and `runs` VMs restored from
  // the shared snapshot of the same boot files (run --warm); their boot records.
  json warmStarts();
  void printHuman(const json& result) const;
  Status writeSvg(const std::string& path, const json& result) const;
  void saveResult(json& result);
  Result<json> exec(const std::string& name, std::vector<std::string> command) const;

  const Invocation& invocation_;
  api::Client client_;
  api::Client patient_;  // for exec and VM starts, which may take long under TCG
  int64_t runs_ = 3;
  std::string image_ = "busybox";
  std::optional<uint16_t> readyPort_;
  std::string subnet_;
  std::string memory_;
  std::vector<std::string> started_;  // every name a start was asked for: removed at the end
  std::vector<Sample> samples_;
  std::string dashboardUrl_;
  std::vector<std::string> notes_;
};

Result<json> Compare::exec(const std::string& name, std::vector<std::string> command) const {
  return patient_.call(api::ExecInstance{name, std::move(command), {}});
}

Status Compare::checkNamesFree() {
  Result<json> list = client_.call(api::ListInstances{});
  if (!list) return fail(list.error().wrap("listing instances"));
  std::set<std::string> ours;
  for (int64_t i = 1; i <= runs_; ++i) {
    for (const std::string& kind : kKinds) ours.insert(instanceName(kind, i));
    if (invocation_.flag("warm")) ours.insert(warmCloneName(i));
  }
  std::vector<std::string> taken;
  const json& items = list->is_object() && list->contains("instances") ? (*list)["instances"] : *list;
  for (const json& item : items) {
    std::string name = displayText(field(item, "name"));
    if (ours.count(name)) taken.push_back(name);
  }
  if (taken.empty()) return {};
  std::string names;
  for (const std::string& name : taken) names += (names.empty() ? "" : " ") + name;
  return fail(Error(
      ErrorKind::Conflict,
      fmt::format("instances from an earlier compare exist: {} (remove them with corral rm -f)", names)));
}

// Before anything starts: an image the store does not have is refused naming it.
Status Compare::checkImage() {
  Result<json> image = client_.call(api::GetImage{image_});
  if (!image) return fail(image.error().wrap(fmt::format("--image {}", image_)));
  return {};
}

Result<json> Compare::startOne(const std::string& kind, int64_t index) {
  Result<schema::InstanceKind> instanceKind = schema::parseInstanceKind(kind);
  if (!instanceKind) return fail(instanceKind.error());
  schema::InstanceSpec spec;
  spec.kind = *instanceKind;
  spec.image = image_;
  spec.name = instanceName(kind, index);
  // busybox's container would run its default shell and end; another image runs its own Entrypoint + Cmd.
  if (spec.kind == schema::InstanceKind::container && busybox()) spec.command = {"sleep", "100000"};
  spec.memory = memory_;
  spec.subnet = subnet_;
  {
    // Recorded before asking, so an answer lost to Ctrl-C still leaves the name to remove.
    static std::mutex mutex;
    std::lock_guard lock(mutex);
    started_.push_back(spec.name);
  }
  Result<json> instance = patient_.call(api::RunInstance{spec});
  if (!instance) return fail(instance.error().wrap(fmt::format("starting {}", spec.name)));
  if (!readyPort_) return json(nullptr);
  // Asked at once: corrald counts from the start request, and a port that answered before the first
  // connect would be recorded late.
  api::Client waiter(client_.socketPath(), std::chrono::seconds(kReadyPortTimeoutSeconds + 30));
  Result<json> answered =
      waiter.call(api::WaitInstancePort{spec.name, *readyPort_, kReadyPortTimeoutSeconds});
  if (!answered)
    return fail(answered.error().wrap(fmt::format("waiting for port {} of {}", *readyPort_, spec.name)));
  return portReadiness(*answered);
}

void Compare::startAll() {
  std::vector<std::pair<std::string, int64_t>> order;
  for (int64_t i = 1; i <= runs_; ++i) {
    for (const std::string& kind : kKinds) order.emplace_back(kind, i);
  }
  std::map<std::string, std::string> errors;
  std::map<std::string, json> readiness;
  auto record = [&](const std::string& name, Result<json> started) {
    if (!started) {
      errors[name] = started.error().message();
    } else if (!started->is_null()) {
      readiness[name] = std::move(*started);
    }
  };
  if (invocation_.flag("parallel")) {
    std::mutex mutex;
    std::vector<std::thread> threads;
    for (const auto& [kind, index] : order) {
      threads.emplace_back([&, kind = kind, index = index] {
        Result<json> started = startOne(kind, index);
        std::lock_guard lock(mutex);
        record(instanceName(kind, index), std::move(started));
      });
    }
    for (std::thread& thread : threads) thread.join();
    for (const auto& [kind, index] : order) {
      samples_.push_back({instanceName(kind, index), kind, nullptr, nullptr, nullptr, ""});
    }
  } else {
    // One at a time: each VM is ready before the next instance starts, so they do not share the CPUs.
    for (const auto& [kind, index] : order) {
      if (stopRequested()) return;
      std::string name = instanceName(kind, index);
      if (!invocation_.global.json) {
        std::cerr << "corral: starting " << name
                  << (readyPort_ ? fmt::format(" and waiting for port {}", *readyPort_) : "") << "\n";
      }
      record(name, startOne(kind, index));
      samples_.push_back({name, kind, nullptr, nullptr, nullptr, ""});
      if (kind == "vm" && !errors.count(name)) {
        Result<json> now = client_.call(api::GetInstance{name});
        Result<json> ready = now ? waitUntilReady(client_, *now, &interrupted) : now;
        if (!ready) errors[name] = ready.error().message();
      }
    }
  }
  for (Sample& sample : samples_) {
    if (errors.count(sample.name)) sample.error = errors[sample.name];
    sample.readiness = readiness.count(sample.name) ? readiness[sample.name] : startedReadiness(sample.kind);
  }
}

void Compare::waitForVms() {
  for (Sample& sample : samples_) {
    if (stopRequested()) return;
    if (!sample.error.empty()) continue;
    Result<json> now = client_.call(api::GetInstance{sample.name});
    if (now && sample.kind == "vm") now = waitUntilReady(client_, *now, &interrupted);
    if (!now) {
      sample.error = now.error().message();
      continue;
    }
    sample.instance = *now;
    if (field(*now, "state") != "running")
      sample.error = fmt::format("{} is {}", sample.name, displayInstanceState(*now));
  }
}

void Compare::collect() {
  for (Sample& sample : samples_) {
    if (stopRequested()) return;
    if (!sample.error.empty()) continue;
    // The instance again: memory in use now that it is up, not the first moment.
    if (Result<json> now = client_.call(api::GetInstance{sample.name})) sample.instance = *now;
    Result<json> probe = exec(sample.name, {"corral-probe"});
    json report = probe ? json::parse(outputText(field(*probe, "stdout")), nullptr, false) : json(nullptr);
    if (!report.is_object() && !busybox()) {
      // busybox's rootfs carries the probe and a VM gets it from its initramfs; another image's container
      // has only what the image has.
      notes_.push_back(fmt::format(
          "{}: no corral-probe report from the image {} ({}): its isolation is not shown", sample.name,
          image_, probe ? displayText(field(*probe, "stderr")) : probe.error().message()));
      continue;
    }
    if (!probe) {
      sample.error = probe.error().wrap("corral-probe").message();
      continue;
    }
    if (report.is_discarded() || !report.is_object()) {
      sample.error = fmt::format("corral-probe in {} printed no report: {}", sample.name,
                                 displayText(field(*probe, "stderr")));
      continue;
    }
    sample.probe = std::move(report);
  }
}

// "round-trip min/avg/max = 0.061/0.089/0.117 ms" from busybox ping -q.
json Compare::pingFrom(const std::string& from, const std::string& to) {
  json result = {{"from", from}, {"to", to}};
  Result<json> ping = exec(from, {"ping", "-c", "5", "-q", "-W", "2", to});
  if (!ping) {
    result["error"] = ping.error().message();
    return result;
  }
  std::string out = outputText(field(*ping, "stdout"));
  std::smatch match;
  static const std::regex kRtt(R"(min/avg/max = ([0-9.]+)/([0-9.]+)/([0-9.]+) ms)");
  static const std::regex kLoss(R"(([0-9]+)% packet loss)");
  if (std::regex_search(out, match, kRtt)) {
    result["rtt_ms"] = {
        {"min", std::stod(match[1])}, {"avg", std::stod(match[2])}, {"max", std::stod(match[3])}};
  } else {
    result["rtt_ms"] = nullptr;
    result["error"] = fmt::format("no reply: {}{}", out, displayText(field(*ping, "stderr")));
  }
  if (std::regex_search(out, match, kLoss)) result["loss_percent"] = std::stoi(match[1]);
  return result;
}

// busybox's nc cannot time itself (no -z) nor its date (no %N), but its `ts -i` stamps each line with the
// microseconds since the previous one: a line before and one after `nc` bracket the connect. The number
// includes starting nc (a fork and exec inside the instance) and closing: an upper bound on the connect.
json Compare::tcpConnectFrom(const std::string& from, const std::string& to) {
  json result = {{"from", from}, {"to", to}, {"port", 7000}, {"includes", "starting nc inside the instance"}};
  std::string script =
      fmt::format("(echo start; nc -w 3 {} 7000 </dev/null; echo \"done $?\") | ts -i %.s", to);
  Result<json> timed = exec(from, {"sh", "-c", script});
  if (!timed) {
    result["error"] = timed.error().message();
    return result;
  }
  std::string out = outputText(field(*timed, "stdout"));
  std::smatch match;
  static const std::regex kDone(R"(([0-9]+\.[0-9]+) done ([0-9]+))");
  if (std::regex_search(out, match, kDone) && match[2] == "0") {
    result["connect_ms"] = std::stod(match[1]) * 1000;
  } else {
    result["connect_ms"] = nullptr;
    result["error"] = fmt::format("nc {} 7000 failed: {}{}", to, out, displayText(field(*timed, "stderr")));
  }
  return result;
}

json Compare::measureNetwork() {
  const Sample* container = nullptr;
  const Sample* vm = nullptr;
  for (const Sample& sample : samples_) {
    if (!sample.error.empty() || !sample.probe.is_object()) continue;
    if (sample.kind == "container" && !container) container = &sample;
    if (sample.kind == "vm" && !vm) vm = &sample;
  }
  if (!container || !vm) return {{"error", "no container and VM pair is running"}};
  auto ipOf = [](const Sample& sample) {
    return displayText(field(field(sample.instance, "network"), "ip"));
  };
  std::string router = displayText(field(field(container->instance, "network"), "gateway"));
  json network = {{"subnet", subnet_},
                  {"container", {{"name", container->name}, {"ip", ipOf(*container)}}},
                  {"vm", {{"name", vm->name}, {"ip", ipOf(*vm)}}},
                  {"router", router},
                  {"ping", json::array()},
                  {"tcp_connect", json::array()}};
  std::vector<std::pair<const Sample*, std::string>> pings = {
      {container, ipOf(*vm)}, {vm, ipOf(*container)}, {container, router}, {vm, router}};
  for (const auto& [from, to] : pings) {
    if (stopRequested()) return network;
    json ping = pingFrom(from->name, to);
    network["ping"].push_back(std::move(ping));
  }
  // A listener on each side (busybox nc -ll: accepts again and again), then a timed connect from the other.
  for (const auto& [listener, client] : {std::pair{vm, container}, std::pair{container, vm}}) {
    if (stopRequested()) return network;
    Result<json> listening = exec(
        listener->name, {"sh", "-c", "nc -ll -p 7000 -e true </dev/null >/dev/null 2>&1 & usleep 300000"});
    if (!listening) {
      network["tcp_connect"].push_back(
          {{"from", client->name}, {"to", ipOf(*listener)}, {"error", listening.error().message()}});
      continue;
    }
    network["tcp_connect"].push_back(tcpConnectFrom(client->name, ipOf(*listener)));
  }
  return network;
}

json Compare::isolation(const json& host) const {
  json table = json::object();
  for (const std::string& kind : kKinds) {
    const Sample* sample = nullptr;
    for (const Sample& s : samples_) {
      if (s.kind == kind && s.probe.is_object()) {
        sample = &s;
        break;
      }
    }
    if (!sample) {
      table[kind] = nullptr;
      continue;
    }
    const json& probe = sample->probe;
    json release = field(field(probe, "kernel"), "release");
    json namespaces = json::object();
    int shared = 0;
    for (const std::string& ns : kNamespaces) {
      json inode = field(field(probe, "namespaces"), ns);
      // A VM's kernel numbers its own namespaces from the same starting ids as the host's: equal numbers
      // mean the same namespace only under the same kernel.
      bool same = release == field(host, "kernel_release") && inode.is_number() &&
                  inode == field(field(host, "namespaces"), ns);
      if (same) ++shared;
      namespaces[ns] = {{"inode", inode}, {"equals_host", same}};
    }
    json interfaces = field(probe, "interfaces");
    table[kind] = {{"instance", sample->name},
                   {"kernel_release", release},
                   {"kernel_equals_host", release.is_string() && release == field(host, "kernel_release")},
                   {"pid1", field(probe, "pid1Comm")},
                   {"probe_pid", field(probe, "pid")},
                   {"visible_processes", field(probe, "visiblePidCount")},
                   {"namespaces", std::move(namespaces)},
                   {"namespaces_shared_with_host", shared},
                   {"capabilities", field(field(probe, "capabilities"), "effectiveNames")},
                   {"seccomp", field(probe, "seccomp")},
                   {"no_new_privs", field(probe, "noNewPrivs")},
                   {"cgroup_limits", field(probe, "cgroupLimits")},
                   {"cpus", field(field(probe, "cpus"), "online")},
                   {"memory_total_kib", field(probe, "memTotalKiB")},
                   {"dev_kvm", field(probe, "devKvm")},
                   {"virtio_transports", field(probe, "virtioTransports")},
                   {"mounts", field(field(probe, "mounts"), "count")},
                   {"root_mount", field(field(probe, "mounts"), "root")},
                   {"interfaces", interfaces}};
  }
  table["host"] = host;
  return table;
}

json Compare::warmStarts() {
  json resumes = json::array(), clones = json::array();
  for (const Sample& sample : samples_) {
    if (stopRequested()) break;
    if (sample.kind != "vm" || !sample.error.empty()) continue;
    json resume = {{"name", sample.name}};
    Result<json> saved = patient_.call(api::StopInstance{sample.name, 10, true});
    Result<json> started = saved ? patient_.call(api::StartInstance{sample.name}) : saved;
    Result<json> ready = started ? waitUntilReady(client_, *started, &interrupted) : started;
    if (ready && field(*ready, "state") == "running") {
      resume["boot"] = field(*ready, "boot");
    } else {
      resume["error"] = ready ? fmt::format("{} is {}", sample.name, displayInstanceState(*ready))
                              : ready.error().message();
    }
    resumes.push_back(std::move(resume));
  }
  for (int64_t i = 1; i <= runs_ && !stopRequested(); ++i) {
    schema::InstanceSpec spec;
    spec.kind = schema::InstanceKind::vm;
    spec.image = image_;
    spec.name = warmCloneName(i);
    spec.memory = memory_;
    spec.subnet = subnet_;
    spec.warm = true;
    started_.push_back(spec.name);
    if (!invocation_.global.json) std::cerr << "corral: starting " << spec.name << " (--warm)\n";
    json clone = {{"name", spec.name}};
    Result<json> started = patient_.call(api::RunInstance{spec});
    Result<json> ready = started ? waitUntilReady(client_, *started, &interrupted) : started;
    if (ready && field(*ready, "state") == "running") {
      clone["boot"] = field(*ready, "boot");
    } else {
      clone["error"] =
          ready ? fmt::format("{} is {}", spec.name, displayInstanceState(*ready)) : ready.error().message();
    }
    clones.push_back(std::move(clone));
  }
  // Medians: a clone whose start made the snapshot (the first, unless one was kept from before) booted a
  // template first and is left out of them.
  auto summarize = [](const json& starts, bool skipMade) {
    std::vector<double> totals;
    std::map<std::string, std::vector<double>> steps;
    int made = 0;
    for (const json& start : starts) {
      const json& boot = field(start, "boot");
      if (!boot.is_object() || !field(boot, "total_ms").is_number()) continue;
      if (skipMade && field(field(boot, "domain_steps"), "snapshot_made") == true) {
        ++made;
        continue;
      }
      totals.push_back(boot["total_ms"].get<double>());
      const json startSteps = warmSteps(boot);  // kept: items() of a temporary would dangle
      for (const auto& [key, value] : startSteps.items()) steps[key].push_back(value.get<double>());
    }
    json split = json::object();
    for (const auto& [key, values] : steps) split[key] = api::median(values);
    json out = {{"total_ms", api::summarize(totals)}, {"steps_median_ms", std::move(split)}};
    if (skipMade) out["made_the_snapshot"] = made;
    return out;
  };
  return {{"resumes", resumes},
          {"clones", clones},
          {"summary", {{"resume", summarize(resumes, false)}, {"clone", summarize(clones, true)}}}};
}

json Compare::summary() const {
  json result = json::object();
  for (const std::string& kind : kKinds) {
    std::vector<double> totals, memory, ready;
    std::map<std::string, std::vector<double>> steps;
    for (const Sample& sample : samples_) {
      if (sample.kind != kind || !sample.error.empty()) continue;
      const json& boot = field(sample.instance, "boot");
      if (boot.is_object()) {
        for (const auto& [key, value] : boot.items()) {
          if (!value.is_number()) continue;
          if (key == "total_ms") totals.push_back(value.get<double>());
          if (api::isBootStep(key)) steps[key].push_back(value.get<double>());
        }
      }
      const json& used = field(field(sample.instance, "usage"), "memory_bytes");
      if (used.is_number()) memory.push_back(used.get<double>());
      const json& readyMs = field(sample.readiness, "ready_ms");
      if (readyMs.is_number()) ready.push_back(readyMs.get<double>());
    }
    json split = json::object();
    for (const auto& [key, values] : steps) split[key] = api::median(values);
    result[kind] = {{"boot_ms", api::summarize(totals)},
                    {"boot_steps_median_ms", std::move(split)},
                    {"memory_bytes", api::summarize(memory)}};
    if (readyPort_) result[kind]["ready_ms"] = api::summarize(ready);
  }
  return result;
}

// corrald keeps the result (the newest 20) for the dashboard and `corral compare --show`; each sample's
// whole instance document stays out (its boot and usage are in the sample already).
void Compare::saveResult(json& result) {
  if (invocation_.flag("no-save")) return;
  json kept = result;
  for (json& sample : kept["samples"]) sample.erase("instance");
  Result<json> saved = client_.call(api::SaveComparison{std::move(kept)});
  if (!saved) {
    notes_.push_back(fmt::format("corrald did not keep this result: {}", saved.error().message()));
    return;
  }
  result["saved_as"] = field(*saved, "id");
  Result<json> info = client_.call(api::GetInfo{});
  const json& url = info ? field(field(*info, "dashboard"), "url") : json(nullptr);
  dashboardUrl_ = url.is_string()
                      ? url.get<std::string>()
                      : "http://corrald/ on the socket (start corrald with --http-port for a browser)";
}

void Compare::removeAll() {
  // Ctrl-C from here on must not cut the cleanup short: the flag is no longer looked at.
  // Many per request (POST /v1/instances/remove): corrald kills them in parallel and changes each VPC's
  // network once per request, not once per instance.
  constexpr size_t kPerRequest = 50;
  api::Client remover(client_.socketPath(), std::chrono::minutes(2));
  for (size_t first = 0; first < started_.size(); first += kPerRequest) {
    const size_t end = std::min(started_.size(), first + kPerRequest);
    std::vector<std::string> names(started_.begin() + static_cast<std::ptrdiff_t>(first),
                                   started_.begin() + static_cast<std::ptrdiff_t>(end));
    Result<json> removed = remover.call(api::RemoveInstances{std::move(names), true});
    if (!removed) {
      printError(removed.error());
      continue;
    }
    const json& results = field(*removed, "results");
    for (const json& result : results.is_array() ? results : json::array()) {
      if (!result.contains("error")) continue;
      Error error = api::errorFromJson(json{{"error", result["error"]}}, 500);
      if (error.kind() != ErrorKind::NotFound) printError(error);
    }
  }
}

void printIsolationRow(Table& table, const std::string& label, const json& isolation,
                       const std::function<std::string(const json&)>& cell) {
  std::vector<std::string> row = {label};
  for (const char* kind : {"container", "vm", "host"}) {
    const json& side = field(isolation, kind);
    row.push_back(side.is_object() ? cell(side) : "-");
  }
  table.add(std::move(row));
}

void Compare::printHuman(const json& result) const {
  const json& summary = result["summary"];
  fmt::print("accelerator: {} (VMs), {} runs of each kind{}\n", displayText(field(result, "accelerator")),
             displayText(field(result, "runs")),
             field(result, "parallel") == true ? ", started all at once" : ", started one at a time");
  if (const json& vmKernel = field(result, "vm_kernel"); vmKernel.is_object()) {
    fmt::print("VM kernel: {} ({}) on machine {}\n", displayText(field(vmKernel, "kernel_source")),
               displayText(field(vmKernel, "guest_kernel")), displayText(field(vmKernel, "machine")));
  }
  const json& readyPort = field(result, "ready_port");
  if (field(result, "image").is_string()) {
    fmt::print(
        "image: {}; ready means {}\n", displayText(result["image"]),
        readyPort.is_number()
            ? fmt::format("port {} accepts a TCP connect from corrald (the VPC's router), counted from "
                          "the start request",
                          displayText(readyPort))
            : std::string("the command exec'd (container) or the guest agent answered (VM)"));
  }
  fmt::print("\n");

  Table boot({"", "container", "vm"});
  if (readyPort.is_number()) {
    for (const char* stat : {"median", "min", "max"}) {
      boot.add({fmt::format("ready (port {}) {}", displayText(readyPort), stat),
                api::millisecondsText(field(field(summary["container"], "ready_ms"), stat)),
                api::millisecondsText(field(field(summary["vm"], "ready_ms"), stat))});
    }
  }
  for (const char* stat : {"median", "min", "max"}) {
    boot.add({fmt::format("boot {}", stat),
              api::millisecondsText(field(field(summary["container"], "boot_ms"), stat)),
              api::millisecondsText(field(field(summary["vm"], "boot_ms"), stat))});
  }
  std::set<std::string> steps;
  for (const std::string& kind : kKinds) {
    for (const auto& [key, value] : summary[kind]["boot_steps_median_ms"].items()) steps.insert(key);
  }
  for (const std::string& step : steps) {
    boot.add({"  " + step.substr(0, step.size() - 3),
              api::millisecondsText(field(summary["container"]["boot_steps_median_ms"], step)),
              api::millisecondsText(field(summary["vm"]["boot_steps_median_ms"], step))});
  }
  boot.add({"memory median", api::bytesText(field(field(summary["container"], "memory_bytes"), "median")),
            api::bytesText(field(field(summary["vm"], "memory_bytes"), "median"))});
  boot.print();

  if (const json& warm = field(field(result, "warm"), "summary"); warm.is_object()) {
    fmt::print("\nwarm VM starts (--warm), next to the cold boot above:\n");
    Table starts({"", "median", "min", "max", "steps (medians)"});
    auto row = [&](const std::string& label, const json& side) {
      std::string split;
      for (const auto& [key, value] : field(side, "steps_median_ms").items()) {
        split += fmt::format("{}{} {}", split.empty() ? "" : ", ", key.substr(0, key.size() - 3),
                             api::millisecondsText(value));
      }
      const json& total = field(side, "total_ms");
      starts.add({label, api::millisecondsText(field(total, "median")),
                  api::millisecondsText(field(total, "min")), api::millisecondsText(field(total, "max")),
                  split.empty() ? "-" : split});
    };
    row("resume (stop --save, start)", field(warm, "resume"));
    row("clone of a snapshot (run --warm)", field(warm, "clone"));
    starts.print();
    if (field(field(warm, "clone"), "made_the_snapshot").is_number() &&
        field(warm, "clone")["made_the_snapshot"] != 0)
      fmt::print(
          "({} clone made the shared snapshot first, a template's cold boot and save: not in the row)\n",
          displayText(field(warm, "clone")["made_the_snapshot"]));
  }

  fmt::print("\nper instance:\n");
  Table instances({"name", "kind", "boot", "ready", "memory", "memory source", "error"});
  for (const json& sample : result["samples"]) {
    const json& usage = field(sample, "usage");
    const json& readiness = field(sample, "readiness");
    instances.add({displayText(sample["name"]), displayText(sample["kind"]),
                   api::millisecondsText(field(field(sample, "boot"), "total_ms")),
                   field(readiness, "ready_ms").is_number()
                       ? api::millisecondsText(readiness["ready_ms"]) + " (port " +
                             displayText(field(readiness, "port")) + ")"
                       : displayText(field(readiness, "kind")),
                   api::bytesText(field(usage, "memory_bytes")), displayText(field(usage, "source")),
                   displayText(field(sample, "error"))});
  }
  instances.print();

  const json& isolation = result["isolation"];
  fmt::print("\nisolation (what corral-probe sees inside; host = as corrald sees it):\n");
  Table table({"", "container", "vm", "host"});
  printIsolationRow(table, "kernel release", isolation, [](const json& side) {
    std::string release = displayText(field(side, "kernel_release"));
    if (field(side, "kernel_equals_host") == true) release += " (= host)";
    return release;
  });
  const json& host = field(isolation, "host");
  printIsolationRow(table, "pid 1", isolation,
                    [](const json& side) { return displayText(field(side, "pid1")); });
  printIsolationRow(table, "processes seen", isolation,
                    [](const json& side) { return displayText(field(side, "visible_processes")); });
  for (const std::string& ns : kNamespaces) {
    printIsolationRow(table, ns + " namespace", isolation, [&](const json& side) {
      if (side.contains("namespaces") && field(side, "namespaces").contains(ns) &&
          field(side, "namespaces")[ns].is_object()) {
        const json& entry = field(side, "namespaces")[ns];
        std::string mark = field(entry, "equals_host") == true          ? " (= host)"
                           : field(side, "kernel_equals_host") == false ? " (own kernel)"
                                                                        : "";
        return displayText(field(entry, "inode")) + mark;
      }
      return displayText(field(field(host, "namespaces"), ns));
    });
  }
  printIsolationRow(table, "capabilities", isolation, [](const json& side) {
    const json& caps = field(side, "capabilities");
    return caps.is_array() ? fmt::format("{} effective", caps.size()) : "-";
  });
  printIsolationRow(table, "seccomp / no_new_privs", isolation, [](const json& side) {
    return fmt::format("{} / {}", displayText(field(side, "seccomp")),
                       displayText(field(side, "no_new_privs")));
  });
  printIsolationRow(table, "cgroup limits seen", isolation, [](const json& side) {
    const json& limits = field(side, "cgroup_limits");
    if (!limits.is_object()) return std::string("-");
    std::string text;
    for (const auto& [path, value] : limits.items()) {
      if (path.ends_with("memory.max") || path.ends_with("limit_in_bytes"))
        text = "memory " + displayText(value);
    }
    if (limits.empty()) return std::string("none");
    return text.empty() ? fmt::format("{} files", limits.size()) : text;
  });
  printIsolationRow(table, "CPUs seen", isolation,
                    [](const json& side) { return displayText(field(side, "cpus")); });
  printIsolationRow(table, "memory seen", isolation, [](const json& side) {
    const json& kib = field(side, "memory_total_kib");
    return kib.is_number() ? api::bytesText(kib.get<double>() * 1024) : "-";
  });
  printIsolationRow(table, "/dev/kvm visible", isolation,
                    [](const json& side) { return displayText(field(side, "dev_kvm")); });
  // The VM's machine type as its guest sees it: virtio on PCI (pc) or on MMIO (microvm).
  printIsolationRow(table, "virtio transport", isolation,
                    [](const json& side) { return displayText(field(side, "virtio_transports")); });
  printIsolationRow(table, "mounts seen", isolation,
                    [](const json& side) { return displayText(field(side, "mounts")); });
  printIsolationRow(table, "network interfaces", isolation,
                    [](const json& side) { return displayText(field(side, "interfaces")); });
  table.print();

  if (result.contains("network") && result["network"].is_object()) {
    const json& network = result["network"];
    fmt::print("\nnetwork on subnet {}:\n", displayText(field(network, "subnet")));
    if (network.contains("error")) {
      fmt::print("  {}\n", displayText(network["error"]));
    } else {
      Table pings({"from", "to", "ping avg", "min", "max", "tcp connect"});
      auto nameOf = [&](const std::string& ip) {
        if (ip == displayText(network["vm"]["ip"])) return displayText(network["vm"]["name"]) + " " + ip;
        if (ip == displayText(network["container"]["ip"]))
          return displayText(network["container"]["name"]) + " " + ip;
        return "router " + ip;
      };
      for (const json& ping : network["ping"]) {
        const json& rtt = field(ping, "rtt_ms");
        std::string connect = "";
        for (const json& tcp : network["tcp_connect"]) {
          if (field(tcp, "from") == field(ping, "from") && field(tcp, "to") == field(ping, "to")) {
            connect = field(tcp, "connect_ms").is_number() ? api::millisecondsText(tcp["connect_ms"]) + " *"
                                                           : "failed";
          }
        }
        pings.add({displayText(ping["from"]), nameOf(displayText(ping["to"])),
                   rtt.is_object() ? api::millisecondsText(rtt["avg"]) : "failed",
                   rtt.is_object() ? api::millisecondsText(rtt["min"]) : "-",
                   rtt.is_object() ? api::millisecondsText(rtt["max"]) : "-", connect});
      }
      pings.print();
      fmt::print("  * nc timed inside the instance (busybox ts): includes starting nc, an upper bound\n");
    }
  }
  for (const std::string& note : notes_) fmt::print("\nnote: {}\n", note);
}

// The chart corrald's dashboard draws too (api/compare_render.h), from the same compact result.
Status Compare::writeSvg(const std::string& path, const json& result) const {
  std::ofstream out(path, std::ios::trunc);
  out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << api::renderComparisonSvg(api::compactComparison(result));
  out.close();
  if (!out) return fail(Error(ErrorKind::Internal, fmt::format("writing {}", path)));
  return {};
}

// `corral compare --list`: the kept comparisons, newest first, one line each.
int listComparisons(const Invocation& invocation, api::Client& client) {
  Result<json> list = client.call(api::ListComparisons{});
  if (!list) {
    printError(list.error());
    return 1;
  }
  if (invocation.global.json) {
    std::cout << list->dump(2) << "\n";
    return 0;
  }
  Table table({"ID", "WHEN", "RUNS", "ACCELERATOR", "CONTAINER BOOT", "VM BOOT", "CONTAINER MEM", "VM MEM"});
  for (const json& item : field(*list, "comparisons")) {
    const json& summary = field(item, "summary");
    auto statistic = [&](const char* kind, const char* what) {
      return field(field(field(summary, kind), what), "median");
    };
    std::time_t when = field(item, "created_at").is_number() ? item["created_at"].get<std::time_t>() : 0;
    char stamp[32] = "-";
    if (std::tm local{}; when > 0 && ::localtime_r(&when, &local) != nullptr)
      std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &local);
    table.add({displayText(field(item, "id")), stamp, displayText(field(item, "runs")),
               displayText(field(item, "accelerator")),
               api::millisecondsText(statistic("container", "boot_ms")),
               api::millisecondsText(statistic("vm", "boot_ms")),
               api::bytesText(statistic("container", "memory_bytes")),
               api::bytesText(statistic("vm", "memory_bytes"))});
  }
  table.print();
  return 0;
}

int Compare::run() {
  if (invocation_.flag("list")) return listComparisons(invocation_, client_);
  if (auto shown = invocation_.value("show")) {
    Result<json> kept = client_.call(api::GetComparison{*shown});
    if (!kept) {
      printError(kept.error());
      return 1;
    }
    const json& result = field(*kept, "result");
    if (invocation_.global.json) {
      std::cout << kept->dump(2) << "\n";
    } else {
      fmt::print("comparison {}\n", displayText(field(*kept, "id")));
      printHuman(result);
    }
    if (auto svg = invocation_.value("svg")) {
      if (Status written = writeSvg(*svg, result); !written) {
        printError(written.error());
        return 1;
      }
      if (!invocation_.global.json) fmt::print("\nchart written to {}\n", *svg);
    }
    return 0;
  }
  if (auto runs = invocation_.value("runs")) runs_ = parseCountFlag("--runs", *runs);
  if (runs_ < 1 || runs_ > 20) throw UsageError("--runs: between 1 and 20");
  subnet_ = invocation_.value("subnet").value_or("");
  memory_ = invocation_.value("memory").value_or("128M");
  if (auto image = invocation_.value("image")) {
    if (image->empty())
      throw UsageError("--image: give the name of an image of corrald's store (corral image ls)");
    image_ = *image;
  }
  if (auto port = invocation_.value("ready-port")) {
    int64_t value = parseCountFlag("--ready-port", *port);
    if (value < 1 || value > 65535)
      throw UsageError(fmt::format("--ready-port: a TCP port between 1 and 65535, got {}", value));
    if (subnet_.empty()) {
      throw UsageError(
          "--ready-port needs --subnet: corrald connects to the port at each instance's address on that "
          "subnet, the same way for a container and a VM");
    }
    readyPort_ = static_cast<uint16_t>(value);
  }

  if (Status free = checkNamesFree(); !free) {
    printError(free.error());
    return 1;
  }
  if (invocation_.value("image")) {
    if (Status known = checkImage(); !known) {
      printError(known.error());
      return 1;
    }
  }
  struct sigaction action {};
  action.sa_handler = onInterrupt;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGTERM, &action, nullptr);

  startAll();
  if (!stopRequested()) waitForVms();
  if (!stopRequested()) collect();
  json network = nullptr;
  if (!subnet_.empty() && !stopRequested()) {
    network = busybox()
                  ? measureNetwork()
                  : json{{"subnet", subnet_},
                         {"error", fmt::format("ping and the timed connect run busybox's tools inside the "
                                               "instances; the image {} is measured by --ready-port only",
                                               image_)}};
  }

  json warm = nullptr;
  if (invocation_.flag("warm") && !stopRequested()) warm = warmStarts();

  json result;
  if (!stopRequested()) {
    json info = client_.call(api::GetInfo{}).value_or(json(nullptr));
    json accelerator = field(field(field(info, "vms"), "accelerator"), "name");
    if (!accelerator.is_string()) {
      for (const Sample& sample : samples_) {
        if (sample.kind == "vm" && field(field(sample.instance, "boot"), "accelerator").is_string())
          accelerator = sample.instance["boot"]["accelerator"];
      }
    }
    // Which kernel and machine the VMs booted (corrald's boot record of the first that did).
    json vmKernel = nullptr;
    for (const Sample& sample : samples_) {
      const json& boot = field(sample.instance, "boot");
      if (sample.kind == "vm" && vmKernel.is_null() && field(boot, "kernel_source").is_string()) {
        vmKernel = {{"kernel_source", boot["kernel_source"]},
                    {"machine", field(boot, "machine")},
                    {"guest_kernel", field(boot, "guest_kernel")}};
      }
    }
    json samples = json::array();
    for (const Sample& sample : samples_) {
      samples.push_back({{"name", sample.name},
                         {"kind", sample.kind},
                         {"boot", field(sample.instance, "boot")},
                         {"usage", field(sample.instance, "usage")},
                         {"readiness", sample.readiness},
                         {"instance", sample.instance},
                         {"probe", sample.probe},
                         {"error", sample.error.empty() ? json(nullptr) : json(sample.error)}});
    }
    result = {{"runs", runs_},
              {"image", image_},
              {"ready_port", readyPort_ ? json(*readyPort_) : json(nullptr)},
              {"parallel", invocation_.flag("parallel")},
              {"memory", memory_},
              {"accelerator", accelerator},
              {"vm_kernel", vmKernel},
              {"samples", std::move(samples)},
              {"summary", summary()},
              {"isolation", isolation(field(info, "host"))},
              {"network", network},
              {"warm", warm}};
  }

  bool keep = invocation_.flag("keep") && !stopRequested();
  if (!keep) removeAll();
  if (stopRequested()) {
    std::cerr << "corral: compare interrupted; removed what it started\n";
    return 130;
  }
  if (keep) result["kept"] = started_;
  saveResult(result);
  if (auto svg = invocation_.value("svg")) {
    if (Status written = writeSvg(*svg, result); !written) {
      printError(written.error());
      return 1;
    }
  }
  if (invocation_.global.json) {
    std::cout << result.dump(2) << "\n";
  } else {
    printHuman(result);
    if (auto svg = invocation_.value("svg")) fmt::print("\nchart written to {}\n", *svg);
    if (result.contains("saved_as")) {
      fmt::print(
          "kept by corrald as comparison {} (corral compare --show {}); the dashboard draws the latest: {}\n",
          displayText(result["saved_as"]), displayText(result["saved_as"]), dashboardUrl_);
    }
  }
  int failed = 0;
  for (const Sample& sample : samples_) {
    if (sample.error.empty()) continue;
    if (!invocation_.global.json) std::cerr << "corral: " << sample.name << ": " << sample.error << "\n";
    ++failed;
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace

Command compareCommand() {
  return leaf(
      "compare",
      "boot N containers and N VMs from the same image (busybox's userland, or --image) and set boot time "
      "(or "
      "time until the workload answers), memory, isolation and network side by side",
      {},
      "[--runs N] [--image NAME] [--subnet SUBNET [--ready-port PORT]] [--memory SIZE] [--parallel] [--warm] "
      "[--svg FILE] [--keep] [--no-save] | --list | --show ID",
      [](po::options_description& options) {
        options.add_options()                                                                          //
            ("runs", po::value<std::string>()->value_name("N"), "instances of each kind (default 3)")  //
            ("image", po::value<std::string>()->value_name("NAME"),
             "an image of corrald's store (corral image ls) instead of busybox; its containers and VMs run "
             "the image's own Entrypoint + Cmd")  //
            ("ready-port", po::value<std::string>()->value_name("PORT"),
             "ready means the workload accepts a TCP connect on PORT (time to workload, not to init), "
             "for both kinds: corrald connects from the subnet's router, counting from the start request; "
             "needs --subnet")  //
            ("subnet", po::value<std::string>()->value_name("SUBNET"),
             "plug them all into this subnet and also measure the network (ping, TCP connect)")  //
            ("memory", po::value<std::string>()->value_name("SIZE"),
             "the memory limit of each container and the RAM of each VM (default 128M)")  //
            ("parallel", "start all instances at once instead of one at a time")          //
            ("warm",
             "also time warm VM starts: each VM stopped with --save and started again (resumed), and N "
             "VMs restored from one shared snapshot (run --warm), with their steps")  //
            ("svg", po::value<std::string>()->value_name("FILE"),
             "also draw the boot times and memory as a chart")                         //
            ("keep", "leave the instances running afterwards (default: remove them)")  //
            ("no-save",
             "do not keep the result in corrald (by default the newest 20 are kept; the dashboard "
             "draws the latest)")                                                           //
            ("list", "list the comparisons corrald keeps, newest first, and boot nothing")  //
            ("show", po::value<std::string>()->value_name("ID"),
             "print a kept comparison (an id from --list, or latest) and boot nothing; with --svg, draw it");
      },
      [](const Invocation& invocation) {
        Compare compare(invocation, api::Client(invocation.global.socketPath));
        return compare.run();
      });
}

}  // namespace corral::cli
