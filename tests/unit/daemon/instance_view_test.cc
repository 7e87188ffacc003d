// What leaves corrald of an instance: env values masked, and the dashboard's narrow view of instances and
// of the latest comparison (what the read-only loopback port serves to any local user).
#include "daemon/instance_view.h"

#include <gtest/gtest.h>

namespace corral::daemon {
namespace {

using nlohmann::json;

// An instance as InstanceManager renders it, with a secret in each place one could hide.
json fullInstance() {
  return json::parse(R"({
    "name": "web-1", "kind": "container", "image": "busybox",
    "command": ["sh", "-c", "echo hunter2-in-argv"], "state": "running", "pid": 4242,
    "created_at": 1700000000, "started_at": 1700000001, "finished_at": null,
    "exit_code": null, "exit_signal": null, "exit_reason": null, "exit_note": null,
    "boot": {"total_ms": 41.5, "clone_ms": 2.0, "guest_kernel": null},
    "usage": {"memory_bytes": 1048576, "source": "cgroup"},
    "spec": {"name": "web-1", "kind": "container", "image": "busybox", "subnet": "front",
             "command": ["sh", "-c", "echo hunter2-in-argv"],
             "env": ["DB_PASSWORD=hunter2", "EMPTY=", "ODD=a=b=hunter2", "NOEQUALS-hunter2"]},
    "cgroup": "/sys/fs/cgroup/memory/corral/web-1", "bundle": "/var/lib/corral/containers/web-1",
    "log_path": "/var/lib/corral/containers/web-1/console.log", "vm": null, "ip": "10.0.1.4",
    "network": {"subnet": "front", "ip": "10.0.1.4", "link": "cv-web-1"}})");
}

TEST(InstanceView, EnvValuesAreMaskedAndEverythingElseStays) {
  json masked = withEnvMasked(fullInstance());
  EXPECT_EQ(masked["spec"]["env"], json::array({"DB_PASSWORD=***", "EMPTY=***", "ODD=***", "***"}));
  EXPECT_EQ(masked.dump().find("hunter2\""), std::string::npos) << masked.dump();
  json expected = fullInstance();
  expected["spec"]["env"] = masked["spec"]["env"];
  EXPECT_EQ(masked, expected);
  // No spec or no env (a deleted instance's short form): unchanged.
  EXPECT_EQ(withEnvMasked(json{{"name", "x"}, {"state", "removed"}}),
            (json{{"name", "x"}, {"state", "removed"}}));
  EXPECT_EQ(withEnvMasked(json{{"spec", {{"name", "x"}}}}), (json{{"spec", {{"name", "x"}}}}));
}

TEST(InstanceView, TheDashboardSeesOnlyWhatThePageDraws) {
  json view = dashboardInstance(fullInstance());
  EXPECT_EQ(view, json::parse(R"({"name": "web-1", "kind": "container", "state": "running",
                                  "ip": "10.0.1.4", "subnet": "front", "started_at": 1700000001,
                                  "boot": {"total_ms": 41.5, "guest_kernel": null},
                                  "usage": {"memory_bytes": 1048576, "source": "cgroup"}})"));
  const std::string text = view.dump();
  for (const char* hidden : {"hunter2", "4242", "/sys/fs/cgroup", "/var/lib/corral", "console.log", "env",
                             "command", "pid", "spec", "cv-web-1"}) {
    EXPECT_EQ(text.find(hidden), std::string::npos) << hidden << " in " << text;
  }
  // A VM reports its guest kernel; a stopped instance has no boot or usage.
  json vm = fullInstance();
  vm["kind"] = "vm";
  vm["boot"]["guest_kernel"] = "6.1.0";
  vm["usage"] = nullptr;
  EXPECT_EQ(dashboardInstance(vm)["boot"]["guest_kernel"], "6.1.0");
  EXPECT_TRUE(dashboardInstance(vm)["usage"].is_null());
}

TEST(InstanceView, TheDashboardComparisonKeepsTheDrawnPartsOnly) {
  json compact = json::parse(R"({
    "id": 3, "created_at": 1700000000, "runs": 2, "parallel": false, "memory": "128M", "accelerator": "tcg",
    "svg": "<svg/>", "summary": {"container": {}}, "samples": [{"name": "compare-c-1", "error": "/root/x"}],
    "isolation": {"container": {"kernel_release": "6.1", "pid1": "sleep", "instance": "compare-c-1",
                                "secret": "hunter2"},
                  "vm": {"kernel_release": "6.2", "capabilities": ["cap_chown"]},
                  "host": {"kernel_release": "6.1", "hostname_file": "/etc/hostname"}},
    "network": {"subnet": "front", "ping": [{"from": "a", "to": "b", "rtt_ms": {"avg": 0.1, "raw": "hunter2"}},
                                            {"from": "a", "to": "c", "rtt_ms": null, "error": "hunter2"}],
                "extra": "hunter2"},
    "kept_by_a_client": "hunter2"})");
  json view = dashboardComparison(compact);
  EXPECT_EQ(view, json::parse(R"({
    "id": 3, "created_at": 1700000000, "runs": 2, "parallel": false, "accelerator": "tcg", "svg": "<svg/>",
    "isolation": {"container": {"kernel_release": "6.1", "pid1": "sleep"},
                  "vm": {"kernel_release": "6.2", "capabilities": ["cap_chown"]},
                  "host": {"kernel_release": "6.1"}},
    "network": {"subnet": "front", "ping": [{"from": "a", "to": "b", "rtt_ms": {"avg": 0.1}},
                                            {"from": "a", "to": "c", "rtt_ms": null}]}})"));
  EXPECT_TRUE(dashboardComparison(nullptr).is_null());
  EXPECT_TRUE(dashboardComparison(json{{"id", 1}, {"network", nullptr}})["network"].is_null());
}

}  // namespace
}  // namespace corral::daemon
