// stop --save and start of a VM through a real corrald, libvirt and QEMU under TCG (as root): the guest
// resumes where it was (a process and a tmpfs file still there), its clock is set from the host's, the boot
// record says it was restored, a corrald killed between save and start loses nothing, a damaged saved state
// is refused clearly and leaves nothing in libvirt, and --save where it does not fit is refused naming the
// field.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "tests/integration/harness.h"
#include "vmm/qmp.h"

namespace corral {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

using corral::testing::CliRun;
using corral::testing::ourDomains;
using corral::testing::Reply;
using corral::testing::requireRoot;
using corral::testing::TestDaemon;

json vmSpec(const std::string& name) {
  return {{"name", name}, {"kind", "vm"}, {"image", "busybox"}, {"memory", "128M"}};
}

json runReady(const TestDaemon& daemon, const std::string& name) {
  Reply created = daemon.call("POST", "/v1/instances", vmSpec(name));
  EXPECT_EQ(created.status, 201) << created.body.dump();
  json ready = daemon.waitWhile(name, "starting");
  EXPECT_EQ(ready.value("state", ""), "running") << ready.dump(2) << "\n" << daemon.log();
  return ready;
}

std::string execOut(const TestDaemon& daemon, const std::string& name, const std::string& script) {
  Reply reply =
      daemon.call("POST", fmt::format("/v1/instances/{}/exec", name), {{"command", {"sh", "-c", script}}});
  EXPECT_EQ(reply.status, 200) << reply.body.dump();
  EXPECT_EQ(reply.body.value("exit_code", -1), 0) << script << ": " << reply.body.dump();
  std::string out = reply.body.value("stdout", "");
  while (!out.empty() && out.back() == '\n') out.pop_back();
  return out;
}

TEST(VmSave, ResumeKeepsProcessesFilesAndSetsTheClockAcrossADaemonKill) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vm", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  runReady(daemon, "keep");
  const std::string pid =
      execOut(daemon, "keep",
              "mkdir -p /mnt/t && mount -t tmpfs t /mnt/t && echo kept > /mnt/t/file && "
              "(setsid sleep 100000 </dev/null >/dev/null 2>&1 &) && sleep 0.2 && pidof sleep");
  ASSERT_FALSE(pid.empty());
  const std::string bootId = execOut(daemon, "keep", "cat /proc/sys/kernel/random/boot_id");

  CliRun saved = daemon.cli({"stop", "--save", "keep"});
  ASSERT_EQ(saved.code, 0) << saved.out << saved.err << daemon.log();
  EXPECT_NE(saved.out.find("stopped (saved)"), std::string::npos) << saved.out;
  json stopped = daemon.call("GET", "/v1/instances/keep").body;
  EXPECT_EQ(stopped.value("state", ""), "stopped") << stopped.dump();
  EXPECT_EQ(stopped.value("exit_reason", ""), "stopped") << stopped.dump();
  EXPECT_EQ(stopped["saved"], true) << stopped.dump();
  const std::string file = daemon.vmsDir() + "/keep/saved.state";
  EXPECT_EQ(stopped["vm"].value("saved_state", ""), file);
  EXPECT_TRUE(std::filesystem::exists(file));
  EXPECT_TRUE(ourDomains().empty()) << "a saved VM is no libvirt domain";
  json listed = daemon.call("GET", "/v1/instances?view=summary").body;
  ASSERT_EQ(listed["instances"].size(), 1u);
  EXPECT_EQ(listed["instances"][0]["saved"], true) << listed.dump();

  // corrald dies between the save and the start: the state is kept, nothing leaks.
  daemon.kill9();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  EXPECT_EQ(daemon.call("GET", "/v1/instances/keep").body["saved"], true);
  EXPECT_TRUE(ourDomains().empty());
  // The guest's clock stands still meanwhile: without corral setting it, it would be this far behind.
  std::this_thread::sleep_for(4s);

  CliRun started = daemon.cli({"start", "keep"});
  ASSERT_EQ(started.code, 0) << started.out << started.err << daemon.log();
  EXPECT_NE(started.out.find("resumed from its saved state"), std::string::npos) << started.out;
  json resumed = daemon.waitWhile("keep", "starting");
  ASSERT_EQ(resumed.value("state", ""), "running") << resumed.dump(2) << daemon.log();
  const json& boot = resumed["boot"];
  EXPECT_EQ(boot["restored"], true) << boot.dump();
  EXPECT_EQ(boot["clock_set"], true) << boot.dump();
  for (const char* step : {"total_ms", "domain_ms", "agent_ms", "clock_ms", "guest_uptime_ms"}) {
    EXPECT_TRUE(boot.contains(step) && boot[step].is_number()) << step << ": " << boot.dump();
  }
  EXPECT_FALSE(boot.contains("kernel_ms")) << "a restore boots no kernel: " << boot.dump();
  EXPECT_EQ(resumed["saved"], false) << "the saved state is spent once the VM runs on";
  EXPECT_FALSE(std::filesystem::exists(file));
  Reply logs = daemon.call("GET", "/v1/instances/keep/logs?offset=0");
  EXPECT_NE(logs.body.value("data", "").find("corral-init: ready"), std::string::npos)
      << "the console log of the boot before the save is kept: " << logs.body.dump();
  CliRun inspected = daemon.cli({"inspect", "keep"});
  EXPECT_NE(inspected.out.find("total = restore "), std::string::npos) << inspected.out;

  // The same machine, where it was.
  EXPECT_EQ(execOut(daemon, "keep", fmt::format("kill -0 {} && cat /mnt/t/file", pid)), "kept");
  EXPECT_EQ(execOut(daemon, "keep", "cat /proc/sys/kernel/random/boot_id"), bootId);
  // Its clock is the host's (to the second; `date` has no finer unit in busybox).
  const int64_t before = static_cast<int64_t>(std::time(nullptr));
  const int64_t guest = std::stoll(execOut(daemon, "keep", "date +%s"));
  const int64_t after = static_cast<int64_t>(std::time(nullptr));
  EXPECT_GE(guest, before - 1);
  EXPECT_LE(guest, after + 1);

  Reply removed = daemon.call("DELETE", "/v1/instances/keep?force=true");
  EXPECT_EQ(removed.status, 200) << removed.body.dump();
  EXPECT_TRUE(ourDomains().empty());
  EXPECT_FALSE(std::filesystem::exists(daemon.vmsDir() + "/keep"));
}

// Snapshot housekeeping: a warm snapshot whose initramfs file changed since it was made (a rebuilt image)
// is removed when corrald starts, and so is a half-made template (KEY.new); while the file is unchanged a
// restart keeps the snapshot.
TEST(VmSave, WarmSnapshotOfAChangedInitramfsIsPrunedAtStartup) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vmprune", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  const std::filesystem::path initrd = std::filesystem::path(daemon.dir()) / "initramfs-copy.img";
  std::filesystem::copy_file(std::filesystem::path(CORRAL_IMAGE_DIR) / "busybox/vm/initramfs.img", initrd);
  json spec = vmSpec("warm-prune");
  spec["warm"] = true;
  spec["initrd"] = initrd.string();
  Reply created = daemon.call("POST", "/v1/instances", spec);
  ASSERT_EQ(created.status, 201) << created.body.dump() << "\n" << daemon.log();
  json ready = daemon.waitWhile("warm-prune", "starting");
  ASSERT_EQ(ready.value("state", ""), "running") << ready.dump(2) << "\n" << daemon.log();
  const std::string key = ready["boot"]["domain_steps"].value("snapshot", "");
  const std::filesystem::path snapshot = std::filesystem::path(daemon.vmsDir()) / ".snapshots" / key;
  ASSERT_TRUE(std::filesystem::exists(snapshot / "saved.state")) << ready["boot"].dump();
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/warm-prune?force=true").status, 200);

  daemon.stop();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  EXPECT_TRUE(std::filesystem::exists(snapshot)) << "unchanged boot files: kept across a restart";

  {
    std::ofstream out(initrd, std::ios::app | std::ios::binary);
    out << std::string(512, '\0');  // the cpio archive's padding grows: another file as far as the key goes
  }
  // And a template a crashed corrald left half made.
  const std::filesystem::path halfMade = snapshot.parent_path() / (std::string(32, 'e') + ".new");
  std::filesystem::create_directories(halfMade);
  daemon.stop();
  ASSERT_TRUE(daemon.start()) << daemon.log();
  EXPECT_FALSE(std::filesystem::exists(snapshot)) << daemon.log();
  EXPECT_FALSE(std::filesystem::exists(halfMade));
  EXPECT_EQ(daemon.must("GET", "/v1/vm-snapshots", nullptr, 200)["snapshots"], json::array());
}

// libvirt's save file and QEMU's own migration stream are not each other's: a VM saved under one
// --vm-engine is restored by that engine after corrald restarted with the other, and runs on from where it
// was; boot.engine says which engine restored it.
TEST(VmSave, ASavedStateIsRestoredByTheEngineThatSavedIt) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  for (const auto& [saver, other] :
       {std::pair<std::string, std::string>{"libvirt", "qemu"}, {"qemu", "libvirt"}}) {
    SCOPED_TRACE("saved by " + saver);
    TestDaemon daemon("vm-" + saver, {"--accelerator", "tcg", "--vm-engine", saver});
    ASSERT_TRUE(daemon.start()) << daemon.log();
    json booted = runReady(daemon, "cross");
    EXPECT_EQ(booted["boot"].value("engine", ""), saver) << booted["boot"].dump();
    execOut(daemon, "cross", "echo " + saver + " > /tmp/mark");
    CliRun saved = daemon.cli({"stop", "--save", "cross"});
    ASSERT_EQ(saved.code, 0) << saved.out << saved.err << daemon.log();
    daemon.stop();
    daemon.setExtraArgs({"--accelerator", "tcg", "--vm-engine", other});
    ASSERT_TRUE(daemon.start()) << daemon.log();
    CliRun started = daemon.cli({"start", "cross"});
    ASSERT_EQ(started.code, 0) << started.out << started.err << daemon.log();
    json resumed = daemon.waitWhile("cross", "starting");
    ASSERT_EQ(resumed.value("state", ""), "running") << resumed.dump(2) << daemon.logTail();
    EXPECT_EQ(resumed["boot"].value("engine", ""), saver) << resumed["boot"].dump();
    EXPECT_EQ(resumed["boot"]["restored"], true) << resumed["boot"].dump();
    EXPECT_EQ(execOut(daemon, "cross", "cat /tmp/mark"), saver);
    EXPECT_EQ(daemon.call("DELETE", "/v1/instances/cross?force=true").status, 200);
    EXPECT_TRUE(ourDomains().empty());
  }
}

// The direct engine's save is corrald's own QMP work: corrald killed after the save stopped the CPUs and
// began the file leaves a paused QEMU and a partial saved.state. The next corrald continues the guest (the
// instance was running and still is) and drops the file, so no later start restores it.
TEST(VmSave, ADirectSaveCutShortByACrashLeavesTheVmRunning) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for QEMU's tap";
  TestDaemon daemon("vm-cut", {"--accelerator", "tcg", "--vm-engine", "qemu"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  runReady(daemon, "cut");
  execOut(daemon, "cut", "echo before > /tmp/mark");
  // The state a save leaves when corrald dies in it: the CPUs stopped (QMP stop), a partial file.
  std::string qmpSocket;
  for (const auto& entry : std::filesystem::directory_iterator(daemon.vmsDir() + "/.qemu"))
    qmpSocket = (entry.path() / "qmp.sock").string();
  ASSERT_FALSE(qmpSocket.empty());
  {
    auto qmp = vmm::QmpClient::connect(qmpSocket, std::chrono::steady_clock::now() + 10s);
    ASSERT_TRUE(qmp) << qmp.error().message();
    ASSERT_TRUE(qmp->execute("stop", nullptr, std::chrono::steady_clock::now() + 10s));
  }
  daemon.kill9();
  { std::ofstream(daemon.vmsDir() + "/cut/saved.state") << "QEVM" << std::string(4096, '\0'); }
  ASSERT_TRUE(daemon.start()) << daemon.log();
  json found = daemon.call("GET", "/v1/instances/cut").body;
  EXPECT_EQ(found.value("state", ""), "running") << found.dump();
  EXPECT_EQ(found["saved"], false) << found.dump();
  EXPECT_FALSE(std::filesystem::exists(daemon.vmsDir() + "/cut/saved.state"));
  EXPECT_EQ(execOut(daemon, "cut", "cat /tmp/mark"), "before") << "the guest runs again";
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/cut?force=true").status, 200);
  EXPECT_TRUE(ourDomains().empty());
}

TEST(VmSave, DamagedSavedStateIsRefusedClearlyAndTheNextStartBootsCold) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vm", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  runReady(daemon, "dmg");
  Reply saved = daemon.call("POST", "/v1/instances/dmg/stop", {{"save", true}});
  ASSERT_EQ(saved.status, 200) << saved.body.dump() << daemon.log();
  const std::string file = daemon.vmsDir() + "/dmg/saved.state";
  const auto size = std::filesystem::file_size(file);
  ASSERT_GT(size, 4096u);
  std::filesystem::resize_file(file, size / 2);

  Reply refused = daemon.call("POST", "/v1/instances/dmg/start");
  EXPECT_GE(refused.status, 400) << refused.body.dump();
  const std::string message = refused.body["error"].value("message", "");
  EXPECT_NE(message.find("saved state \"" + file + "\""), std::string::npos) << message;
  EXPECT_NE(message.find("the next start boots the VM cold"), std::string::npos) << message;
  EXPECT_TRUE(ourDomains().empty()) << "nothing left in libvirt";
  json after = daemon.call("GET", "/v1/instances/dmg").body;
  EXPECT_EQ(after.value("state", ""), "stopped") << after.dump();
  EXPECT_EQ(after["saved"], false) << after.dump();
  EXPECT_TRUE(std::filesystem::exists(file + ".rejected"));

  Reply cold = daemon.call("POST", "/v1/instances/dmg/start");
  ASSERT_EQ(cold.status, 200) << cold.body.dump();
  json running = daemon.waitWhile("dmg", "starting");
  EXPECT_EQ(running.value("state", ""), "running") << running.dump();
  EXPECT_FALSE(running["boot"].contains("restored")) << running["boot"].dump();
  EXPECT_TRUE(running["boot"].contains("kernel_ms")) << running["boot"].dump();
  EXPECT_EQ(daemon.call("DELETE", "/v1/instances/dmg?force=true").status, 200);
  EXPECT_TRUE(ourDomains().empty());
}

TEST(VmSave, SaveWhereItDoesNotFitIsRefusedNamingTheField) {
  if (!requireRoot()) GTEST_SKIP() << "needs root for libvirt";
  TestDaemon daemon("vm", {"--accelerator", "tcg"});
  ASSERT_TRUE(daemon.start()) << daemon.log();
  ASSERT_EQ(daemon.call("POST", "/v1/instances", {{"name", "box"}, {"command", {"sleep", "100"}}}).status,
            201);
  Reply container = daemon.call("POST", "/v1/instances/box/stop", {{"save", true}});
  EXPECT_EQ(container.status, 400) << container.body.dump();
  EXPECT_EQ(container.body["error"].value("field", ""), "save") << container.body.dump();
  EXPECT_EQ(daemon.call("GET", "/v1/instances/box").body.value("state", ""), "running");

  runReady(daemon, "off");
  ASSERT_EQ(daemon.call("POST", "/v1/instances/off/stop").status, 200);
  Reply stopped = daemon.call("POST", "/v1/instances/off/stop", {{"save", true}});
  EXPECT_EQ(stopped.status, 409) << stopped.body.dump();
  EXPECT_NE(stopped.body["error"].value("message", "").find("only a running VM can be saved"),
            std::string::npos)
      << stopped.body.dump();
  CliRun cli = daemon.cli({"stop", "--save", "off"});
  EXPECT_NE(cli.code, 0);
  EXPECT_NE(cli.err.find("only a running VM can be saved"), std::string::npos) << cli.err;
  EXPECT_TRUE(ourDomains().empty());
  EXPECT_FALSE(std::filesystem::exists(daemon.vmsDir() + "/off/saved.state"));
}

}  // namespace
}  // namespace corral
