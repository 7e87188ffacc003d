// InstanceManager's own logic over a fake driver (tests/unit/daemon/fake_driver.h), a real Store in a
// temporary directory and a NetworkController that keeps the model only: a run failing at any step leaves
// no row, NIC, directory, reservation or run; stop, start and rm move the instance through the lifecycle;
// refusals are 409s; a restart adopts what the driver finds running and records the rest as lost.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "api/api.h"
#include "daemon/instances.h"
#include "daemon/store.h"
#include "tests/unit/daemon/fake_driver.h"

namespace corral::daemon {
namespace {

using nlohmann::json;
using testing::FakeDriver;

class InstanceManagerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/corral-instance-manager-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    dbPath_ = dir_ + "/state.db";
    auto store = Store::open(dbPath_);
    ASSERT_TRUE(store) << store.error().message();
    store_.emplace(std::move(*store));
    net::Topology topology;
    ASSERT_TRUE(topology.createVpc({.name = "v", .cidr = "10.0.0.0/16"}, 0));
    schema::SubnetSpec subnet;
    subnet.name = "s";
    subnet.vpc = "v";
    subnet.cidr = "10.0.1.0/24";
    ASSERT_TRUE(topology.createSubnet(subnet, 0));
    network_ = std::make_unique<NetworkController>(NetworkOptions{}, std::move(topology));
    load();
  }
  void TearDown() override {
    manager_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A new manager over the same store and network (a daemon restart), with a fresh fake set up by `setup`.
  void load(const std::function<void(FakeDriver&)>& setup = {}) {
    manager_.reset();
    // Forget the NICs as a restart does: load() restores them from the stored specs.
    for (const char* name : {"web", "a", "b", "c", "v1"}) network_->releaseNic(name);
    auto fake = std::make_unique<FakeDriver>();
    if (setup) setup(*fake);
    fake_ = fake.get();
    InstanceDrivers drivers;
    drivers[schema::InstanceKind::container] = std::move(fake);
    InstanceOptions options;
    options.domainPrefix = "fake-";
    options.usageMaxAge = usageMaxAge_;
    auto loaded = InstanceManager::load(*store_, options, network_.get(), std::move(drivers));
    ASSERT_TRUE(loaded) << loaded.error().message();
    manager_ = std::move(*loaded);
  }

  static schema::InstanceSpec spec(const std::string& name, bool withNic = true) {
    schema::InstanceSpec spec;
    spec.name = name;
    spec.image = "busybox";
    spec.command = {"sleep", "1000"};
    if (withNic) spec.subnet = "s";
    return spec;
  }

  std::vector<InstanceRow> rows() {
    auto listed = store_->listInstances();
    EXPECT_TRUE(listed) << listed.error().message();
    return listed ? *listed : std::vector<InstanceRow>{};
  }
  std::optional<InstanceRow> row(const std::string& name) {
    for (InstanceRow& r : rows())
      if (r.name == name) return r;
    return std::nullopt;
  }
  std::string state(const std::string& name) {
    auto got = manager_->get(name);
    return got ? (*got)["state"].get<std::string>() : "(" + got.error().message() + ")";
  }

  // Runs SQL on a second connection to the same database, e.g. to make the next write fail.
  void sql(const std::string& statement) {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(dbPath_.c_str(), &raw), SQLITE_OK);
    std::unique_ptr<sqlite3, decltype(&sqlite3_close)> db(raw, &sqlite3_close);
    char* message = nullptr;
    int rc = sqlite3_exec(db.get(), statement.c_str(), nullptr, nullptr, &message);
    std::string text = message ? message : "";
    sqlite3_free(message);
    ASSERT_EQ(rc, SQLITE_OK) << text;
  }

  // Nothing of `name` is left anywhere: row, entry, NIC, directory, reservation, run.
  void expectNothingLeft(const std::string& name) {
    EXPECT_FALSE(row(name)) << name << ": row";
    EXPECT_FALSE(manager_->get(name)) << name << ": entry";
    EXPECT_FALSE(network_->nic(name)) << name << ": NIC";
    std::lock_guard lock(fake_->mutex);
    EXPECT_FALSE(fake_->directories.contains(name)) << name << ": directory";
    EXPECT_FALSE(fake_->reserved.contains(name)) << name << ": reservation";
    EXPECT_FALSE(fake_->runs.contains(name)) << name << ": run";
  }

  int usageReads() {
    std::lock_guard lock(fake_->mutex);
    return fake_->usageReads;
  }

  std::chrono::milliseconds usageMaxAge_{std::chrono::hours(1)};
  std::string dir_, dbPath_;
  std::optional<Store> store_;
  std::unique_ptr<NetworkController> network_;
  std::unique_ptr<InstanceManager> manager_;
  FakeDriver* fake_ = nullptr;
};

TEST_F(InstanceManagerTest, RunRecordsTheRowTheNicAndTheRun) {
  auto ran = manager_->run(spec("web"));
  ASSERT_TRUE(ran) << ran.error().message();
  EXPECT_EQ((*ran)["state"], "running");
  EXPECT_EQ((*ran)["pid"], 4242);
  EXPECT_EQ((*ran)["kind"], "container");
  EXPECT_EQ((*ran)["configured"], true);  // the driver's part of the JSON
  ASSERT_TRUE(network_->nic("web"));
  EXPECT_EQ((*ran)["ip"], network_->nic("web")->address);
  auto stored = row("web");
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->state, InstanceState::running);
  EXPECT_EQ(stored->pid, 4242);
  EXPECT_NE(stored->specJson.find(network_->nic("web")->address), std::string::npos);
  EXPECT_EQ(stored->logPath, "/nonexistent/corral-fake/web/console.log");
  EXPECT_TRUE(fake_->called("supervise web"));
  EXPECT_TRUE(fake_->plugged.contains("web"));
  EXPECT_NE(fake_->runOf("web"), 0u);
}

TEST_F(InstanceManagerTest, RunFailingAtEachStepLeavesNothingBehind) {
  for (const char* step : {"configure", "preflight", "reserve", "start", "start.after-plug"}) {
    SCOPED_TRACE(step);
    fake_->failAt = {step};
    auto ran = manager_->run(spec("web"));
    ASSERT_FALSE(ran);
    EXPECT_NE(ran.error().message().find(std::string("the fake fails at ") + step), std::string::npos)
        << ran.error().message();
    expectNothingLeft("web");
    EXPECT_EQ(manager_->count(), 0u);
  }
  // And nothing blocks the same name afterwards.
  fake_->failAt.clear();
  ASSERT_TRUE(manager_->run(spec("web")));
  EXPECT_EQ(state("web"), "running");
}

TEST_F(InstanceManagerTest, RunWhoseRunningRowCannotBeWrittenUndoesTheStartedRun) {
  sql("CREATE TRIGGER refuse BEFORE INSERT ON instances WHEN NEW.state = 'running' "
      "BEGIN SELECT RAISE(ABORT, 'disk full'); END");
  auto ran = manager_->run(spec("web"));
  ASSERT_FALSE(ran);
  EXPECT_NE(ran.error().message().find("disk full"), std::string::npos) << ran.error().message();
  EXPECT_TRUE(fake_->called("undo web"));
  EXPECT_FALSE(fake_->called("supervise web"));
  expectNothingLeft("web");
}

TEST_F(InstanceManagerTest, RunRefusesATakenNameAndAKindWithoutADriver) {
  ASSERT_TRUE(manager_->run(spec("web")));
  auto again = manager_->run(spec("web"));
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().kind(), ErrorKind::Conflict);
  schema::InstanceSpec vm = spec("v1");
  vm.kind = schema::InstanceKind::vm;
  auto refused = manager_->run(vm);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().kind(), ErrorKind::InvalidArgument);
  EXPECT_EQ(refused.error().field(), "kind");
  expectNothingLeft("v1");
}

TEST_F(InstanceManagerTest, StopStartAndRemoveMoveThroughTheLifecycle) {
  ASSERT_TRUE(manager_->run(spec("web")));
  const RunId first = fake_->runOf("web");
  auto stopped = manager_->stop("web", 5);
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ((*stopped)["state"], "stopped");
  EXPECT_EQ((*stopped)["exit_reason"], "stopped");  // the driver said "exited", but the stop asked
  EXPECT_EQ((*stopped)["exit_code"], 143);
  EXPECT_EQ(row("web")->state, InstanceState::stopped);
  EXPECT_TRUE(network_->nic("web"));  // a stopped instance keeps its addresses

  auto started = manager_->start("web");
  ASSERT_TRUE(started) << started.error().message();
  EXPECT_EQ((*started)["state"], "running");
  EXPECT_NE(fake_->runOf("web"), first);
  // A late report about the earlier run changes nothing.
  fake_->reportEnd("web", first, InstanceEnding::because(ExitReason::exited));
  EXPECT_EQ(state("web"), "running");

  auto removed = manager_->remove("web", /*force=*/false);
  ASSERT_FALSE(removed);
  EXPECT_EQ(removed.error().kind(), ErrorKind::Conflict);
  removed = manager_->remove("web", /*force=*/true);
  ASSERT_TRUE(removed) << removed.error().message();
  EXPECT_TRUE(fake_->called("kill web"));
  EXPECT_TRUE(fake_->called("clear-leftovers web"));
  EXPECT_TRUE(fake_->called("release web"));
  expectNothingLeft("web");
}

// `corral reach --verify` probes from an instance's network namespace: only a running one has one to give.
TEST_F(InstanceManagerTest, ANetworkNamespaceIsOpenedOnlyForARunningContainer) {
  auto unknown = manager_->openNetworkNamespace("nobody", "source");
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().kind(), ErrorKind::NotFound);
  ASSERT_TRUE(manager_->run(spec("web")));
  ASSERT_TRUE(manager_->stop("web", 5));
  auto stopped = manager_->openNetworkNamespace("web", "destination");
  ASSERT_FALSE(stopped);
  EXPECT_EQ(stopped.error().kind(), ErrorKind::Conflict);
  EXPECT_NE(stopped.error().message().find("instance \"web\" is stopped"), std::string::npos)
      << stopped.error().message();
}

TEST_F(InstanceManagerTest, StartFailingRestoresTheStoppedRow) {
  ASSERT_TRUE(manager_->run(spec("web")));
  ASSERT_TRUE(manager_->stop("web", 0));
  for (const char* step : {"preflight", "start", "start.after-plug"}) {
    SCOPED_TRACE(step);
    fake_->failAt = {step};
    auto started = manager_->start("web");
    ASSERT_FALSE(started);
    EXPECT_EQ(state("web"), "stopped");
    EXPECT_EQ(row("web")->state, InstanceState::stopped);
    EXPECT_EQ(row("web")->exitReason, ExitReason::stopped);
    EXPECT_EQ(fake_->runOf("web"), 0u);
  }
  fake_->failAt.clear();
  ASSERT_TRUE(manager_->start("web"));
}

TEST_F(InstanceManagerTest, AnEndTheDriverReportsIsRecordedAndRemoveOnExitForgetsIt) {
  ASSERT_TRUE(manager_->run(spec("web")));
  fake_->exit("web", 3);
  auto got = manager_->get("web");
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)["state"], "stopped");
  EXPECT_EQ((*got)["exit_reason"], "exited");
  EXPECT_EQ((*got)["exit_code"], 3);
  EXPECT_EQ(row("web")->exitCode, 3);

  schema::InstanceSpec once = spec("a");
  once.removeOnExit = true;
  ASSERT_TRUE(manager_->run(once));
  fake_->exit("a", 0);
  expectNothingLeft("a");
  EXPECT_TRUE(fake_->called("remove-directory a"));
}

TEST_F(InstanceManagerTest, RequestsThatDoNotFitTheStateAre409s) {
  ASSERT_TRUE(manager_->run(spec("web")));
  auto expectConflict = [](const Result<json>& result, const std::string& words) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind(), ErrorKind::Conflict) << result.error().message();
    EXPECT_NE(result.error().message().find(words), std::string::npos) << result.error().message();
  };
  expectConflict(manager_->start("web"), "only a stopped instance can be started");
  ASSERT_TRUE(manager_->stop("web", 0));
  expectConflict(manager_->stop("web", 0), "not running");
  expectConflict(manager_->exec("web", {"true"}, {}), "not running");
  EXPECT_EQ(manager_->start("nope").error().kind(), ErrorKind::NotFound);
  EXPECT_EQ(manager_->stop("web", -1).error().field(), "grace_seconds");
}

TEST_F(InstanceManagerTest, WhileAStopWorksWithoutTheLockOtherRequestsAreRefused) {
  ASSERT_TRUE(manager_->run(spec("web")));
  ASSERT_TRUE(manager_->run(spec("a")));
  fake_->blockAt = "stop";
  auto stopping = std::async(std::launch::async, [&] { return manager_->stop("web", 10); });
  ASSERT_TRUE(fake_->waitBlocked());
  // The lock is free: other instances and reads go on; this one's requests are refused.
  EXPECT_EQ(state("web"), "running");  // shown as the state it left
  EXPECT_TRUE(manager_->exec("a", {"true"}, {}));
  for (auto result : {manager_->stop("web", 0), manager_->start("web"), manager_->remove("web", true)}) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind(), ErrorKind::Conflict);
    EXPECT_NE(result.error().message().find("stopping"), std::string::npos) << result.error().message();
  }
  fake_->release();
  auto stopped = stopping.get();
  ASSERT_TRUE(stopped) << stopped.error().message();
  EXPECT_EQ((*stopped)["state"], "stopped");
  EXPECT_EQ(state("a"), "running");
}

TEST_F(InstanceManagerTest, WhileAForcedRemoveKillsEverythingElseIsRefused) {
  ASSERT_TRUE(manager_->run(spec("web")));
  fake_->blockAt = "kill";
  auto removing = std::async(std::launch::async, [&] { return manager_->remove("web", true); });
  ASSERT_TRUE(fake_->waitBlocked());
  for (auto result : {manager_->stop("web", 0), manager_->start("web"), manager_->exec("web", {"true"}, {}),
                      manager_->remove("web", true)}) {
    ASSERT_FALSE(result);
    EXPECT_EQ(result.error().kind(), ErrorKind::Conflict);
    EXPECT_NE(result.error().message().find("being removed"), std::string::npos) << result.error().message();
  }
  fake_->release();
  ASSERT_TRUE(removing.get());
  expectNothingLeft("web");
}

TEST_F(InstanceManagerTest, RemoveFailingKeepsTheInstanceAndItsNic) {
  ASSERT_TRUE(manager_->run(spec("web")));
  ASSERT_TRUE(manager_->stop("web", 0));
  for (const char* step : {"clear-leftovers", "remove-directory"}) {
    SCOPED_TRACE(step);
    fake_->failAt = {step};
    auto removed = manager_->remove("web", false);
    ASSERT_FALSE(removed);
    EXPECT_TRUE(row("web"));
    EXPECT_TRUE(network_->nic("web"));
    EXPECT_EQ(state("web"), "stopped");  // not stuck "removing"
  }
  fake_->failAt.clear();
  ASSERT_TRUE(manager_->remove("web", false));
  expectNothingLeft("web");
}

TEST_F(InstanceManagerTest, RemoveManyRemovesEachAndReportsTheOthersByName) {
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(manager_->run(spec(name)));
  ASSERT_TRUE(manager_->stop("b", 0));
  auto unforced = manager_->removeMany({"a", "b"}, false);
  ASSERT_TRUE(unforced) << unforced.error().message();
  ASSERT_EQ(unforced->size(), 2u);
  ASSERT_FALSE((*unforced)[0]);
  EXPECT_EQ((*unforced)[0].error().kind(), ErrorKind::Conflict);
  ASSERT_TRUE((*unforced)[1]) << (*unforced)[1].error().message();
  EXPECT_EQ((*(*unforced)[1])["deleted"]["name"], "b");
  expectNothingLeft("b");
  EXPECT_EQ(state("a"), "running");

  auto forced = manager_->removeMany({"a", "nope", "c"}, true);
  ASSERT_TRUE(forced) << forced.error().message();
  ASSERT_EQ(forced->size(), 3u);
  EXPECT_TRUE((*forced)[0]) << (*forced)[0].error().message();
  ASSERT_FALSE((*forced)[1]);
  EXPECT_EQ((*forced)[1].error().kind(), ErrorKind::NotFound);
  EXPECT_NE((*forced)[1].error().message().find("\"nope\""), std::string::npos);
  EXPECT_TRUE((*forced)[2]) << (*forced)[2].error().message();
  for (const char* name : {"a", "c"}) expectNothingLeft(name);
  EXPECT_EQ(manager_->count(), 0u);
}

TEST_F(InstanceManagerTest, RemoveManyRefusesBadNamesBeforeRemovingAny) {
  for (const char* name : {"a", "b"}) ASSERT_TRUE(manager_->run(spec(name)));
  struct Bad {
    std::vector<std::string> names;
    std::string field;
  };
  for (const Bad& bad : {Bad{{}, "names"}, Bad{{"a", "b", "a"}, "names[2]"}, Bad{{"a", "B!"}, "names[1]"},
                         Bad{{"a", ""}, "names[1]"}}) {
    auto removed = manager_->removeMany(bad.names, true);
    ASSERT_FALSE(removed) << bad.field;
    EXPECT_EQ(removed.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(removed.error().field(), bad.field) << removed.error().message();
  }
  for (const char* name : {"a", "b"}) {
    EXPECT_EQ(state(name), "running");
    EXPECT_TRUE(network_->nic(name));
  }
}

// The running ones are killed at once: both kills are under way while the first still blocks.
TEST_F(InstanceManagerTest, RemoveManyKillsInParallelAndHoldsEachAsBeingRemoved) {
  for (const char* name : {"a", "b"}) ASSERT_TRUE(manager_->run(spec(name)));
  fake_->blockAt = "kill";
  auto removing = std::async(std::launch::async, [&] { return manager_->removeMany({"a", "b"}, true); });
  ASSERT_TRUE(fake_->waitBlocked());
  auto bothKilling = [&] {
    std::lock_guard lock(fake_->mutex);
    return std::count(fake_->calls.begin(), fake_->calls.end(), "kill a") == 1 &&
           std::count(fake_->calls.begin(), fake_->calls.end(), "kill b") == 1;
  };
  for (int i = 0; i < 500 && !bothKilling(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_TRUE(bothKilling());
  auto meanwhile = manager_->stop("b", 0);
  ASSERT_FALSE(meanwhile);
  EXPECT_NE(meanwhile.error().message().find("being removed"), std::string::npos)
      << meanwhile.error().message();
  fake_->release();
  auto removed = removing.get();
  ASSERT_TRUE(removed) << removed.error().message();
  for (const auto& result : *removed) EXPECT_TRUE(result) << result.error().message();
  for (const char* name : {"a", "b"}) expectNothingLeft(name);
}

TEST_F(InstanceManagerTest, RemoveManyWhoseKillsFailKeepsTheInstancesAndTheirNics) {
  for (const char* name : {"a", "b"}) ASSERT_TRUE(manager_->run(spec(name)));
  fake_->failAt = {"kill"};
  auto removed = manager_->removeMany({"a", "b"}, true);
  ASSERT_TRUE(removed) << removed.error().message();
  for (const auto& result : *removed) {
    ASSERT_FALSE(result);
    EXPECT_NE(result.error().message().find("the fake fails at kill"), std::string::npos);
  }
  for (const char* name : {"a", "b"}) {
    EXPECT_EQ(state(name), "running");  // not stuck "removing"
    EXPECT_TRUE(row(name));
    EXPECT_TRUE(network_->nic(name));
  }
  fake_->failAt.clear();
  ASSERT_TRUE(manager_->removeMany({"a", "b"}, true));
  for (const char* name : {"a", "b"}) expectNothingLeft(name);
}

TEST_F(InstanceManagerTest, SeveralInstancesLiveSideBySide) {
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(manager_->run(spec(name)));
  EXPECT_EQ(manager_->list()["instances"].size(), 3u);
  std::set<std::string> addresses;
  for (const char* name : {"a", "b", "c"}) addresses.insert(network_->nic(name)->address);
  EXPECT_EQ(addresses.size(), 3u);
  ASSERT_TRUE(manager_->stop("b", 0));
  ASSERT_TRUE(manager_->remove("a", true));
  EXPECT_EQ(state("b"), "stopped");
  EXPECT_EQ(state("c"), "running");
  expectNothingLeft("a");
  EXPECT_EQ(manager_->count(), 2u);
}

TEST_F(InstanceManagerTest, ARestartAdoptsWhatRunsAndRecordsTheRestAsLost) {
  ASSERT_TRUE(manager_->run(spec("a")));
  ASSERT_TRUE(manager_->run(spec("b")));
  ASSERT_TRUE(manager_->run(spec("c")));
  ASSERT_TRUE(manager_->stop("c", 0));
  // A run interrupted by a crash: its row says "starting".
  InstanceRow interrupted = *row("c");
  interrupted.name = "web";
  interrupted.state = InstanceState::starting;
  interrupted.specJson = api::renderRequest(api::RunInstance{spec("web", /*withNic=*/false)}).body;
  ASSERT_TRUE(store_->insertInstance(interrupted));

  load([](FakeDriver& fake) { fake.adopts = {"a"}; });
  EXPECT_TRUE(fake_->called("recover a"));
  EXPECT_EQ(state("a"), "running");
  EXPECT_EQ(state("b"), "stopped");
  EXPECT_EQ(row("b")->exitReason, ExitReason::lost);
  EXPECT_EQ(row("b")->exitNote, "the fake found it gone");
  EXPECT_EQ(state("c"), "stopped");
  EXPECT_EQ(row("c")->exitReason, ExitReason::stopped);  // untouched
  EXPECT_EQ(row("web")->state, InstanceState::stopped);
  EXPECT_EQ(row("web")->exitReason, ExitReason::lost);
  EXPECT_EQ(fake_->reconciledActive, (std::set<std::string>{"a"}));
  EXPECT_EQ(fake_->reconciledAll, (std::set<std::string>{"a", "b", "c", "web"}));
  EXPECT_TRUE(network_->nic("a"));  // restored from the stored spec

  // The adopted run is watched again: its end is recorded, and it can be started and removed.
  fake_->exit("a", 0);
  EXPECT_EQ(state("a"), "stopped");
  ASSERT_TRUE(manager_->start("a"));
  ASSERT_TRUE(manager_->remove("a", true));
  expectNothingLeft("a");
}

TEST_F(InstanceManagerTest, AStoredSpecThatNoLongerValidatesIsConfiguredAgainAtStart) {
  ASSERT_TRUE(manager_->run(spec("web")));
  ASSERT_TRUE(manager_->stop("web", 0));
  load([](FakeDriver& fake) { fake.invalid = {"web"}; });
  auto got = manager_->get("web");
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)["configured"], false);
  auto refused = manager_->start("web");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "image");
  EXPECT_EQ(state("web"), "stopped");
  fake_->invalid.clear();
  ASSERT_TRUE(manager_->start("web"));
  EXPECT_EQ((*manager_->get("web"))["configured"], true);
}

// What the driver chose for a new spec (a VM's kernel and machine) is stored with it: a restart's driver,
// which would choose otherwise, starts the instance with the stored choice.
TEST_F(InstanceManagerTest, WhatTheDriverSettlesInANewSpecIsStoredWithIt) {
  fake_->settledMachine = "chosen-at-run";
  ASSERT_TRUE(manager_->run(spec("web")));
  auto stored = row("web");
  ASSERT_TRUE(stored);
  EXPECT_EQ(nlohmann::json::parse(stored->specJson).value("machine", ""), "chosen-at-run")
      << stored->specJson;
  ASSERT_TRUE(manager_->stop("web", 0));
  load([](FakeDriver& fake) { fake.settledMachine = "chosen-later"; });
  ASSERT_TRUE(manager_->start("web"));
  auto got = manager_->get("web");
  ASSERT_TRUE(got);
  EXPECT_EQ((*got)["spec"].value("machine", ""), "chosen-at-run") << got->dump();
  EXPECT_EQ(nlohmann::json::parse(row("web")->specJson).value("machine", ""), "chosen-at-run");
}

// A kind whose runs start as "starting" (a VM's) and whose driver records the row only once it runs.
class InstanceManagerBootingTest : public InstanceManagerTest {
 protected:
  void SetUp() override {
    InstanceManagerTest::SetUp();
    load([](FakeDriver& fake) {
      fake.startsStarting = true;
      fake.recordsStarting = false;
    });
  }
};

TEST_F(InstanceManagerBootingTest, StartingBecomesRunningWhenTheDriverSaysReady) {
  ASSERT_TRUE(manager_->run(spec("web")));
  EXPECT_EQ(state("web"), "starting");
  EXPECT_EQ(row("web")->state, InstanceState::starting);
  fake_->ready("web");
  EXPECT_EQ(state("web"), "running");
  EXPECT_EQ(row("web")->state, InstanceState::running);
  EXPECT_EQ((*manager_->get("web"))["boot"]["guest_kernel"], "fake");
}

// stateOf is the "state" get() shows, as the enum (the trace handler asks it), through a whole lifecycle.
TEST_F(InstanceManagerBootingTest, StateOfIsTheStateGetShows) {
  auto expectState = [&](const std::string& name, std::optional<InstanceState> expected) {
    EXPECT_EQ(manager_->stateOf(name), expected);
    if (expected) {
      EXPECT_EQ(state(name), instanceStateName(*expected));
    }
  };
  expectState("web", std::nullopt);
  ASSERT_TRUE(manager_->run(spec("web")));
  expectState("web", InstanceState::starting);
  fake_->ready("web");
  expectState("web", InstanceState::running);
  fake_->blockAt = "stop";
  auto stopping = std::async(std::launch::async, [&] { return manager_->stop("web", 10); });
  ASSERT_TRUE(fake_->waitBlocked());
  expectState("web", InstanceState::running);  // a stop in progress shows the state it left
  fake_->release();
  ASSERT_TRUE(stopping.get());
  expectState("web", InstanceState::stopped);
  ASSERT_TRUE(manager_->remove("web", false));
  expectState("web", std::nullopt);
}

TEST_F(InstanceManagerBootingTest, ARunFailingAtStartLeavesNoCreatedRow) {
  fake_->failAt = {"start"};
  ASSERT_FALSE(manager_->run(spec("web")));
  expectNothingLeft("web");
}

TEST_F(InstanceManagerBootingTest, WhileStoppingAnEndReadsStoppedUnlessItsReasonStands) {
  for (bool stands : {false, true}) {
    SCOPED_TRACE(stands ? "a boot timeout" : "a power-off");
    ASSERT_TRUE(manager_->run(spec("web")));
    fake_->ready("web");
    fake_->blockAt = "stop";
    auto stopping = std::async(std::launch::async, [&] { return manager_->stop("web", 10); });
    ASSERT_TRUE(fake_->waitBlocked());
    InstanceEnding ending = InstanceEnding::because(stands ? ExitReason::bootTimeout : ExitReason::shutdown);
    ending.reasonStands = stands;
    fake_->reportEnd("web", fake_->runOf("web"), std::move(ending));
    fake_->release();
    auto stopped = stopping.get();
    ASSERT_TRUE(stopped) << stopped.error().message();
    EXPECT_EQ((*stopped)["exit_reason"], stands ? "boot-timeout" : "stopped");
    EXPECT_EQ(row("web")->exitReason, stands ? ExitReason::bootTimeout : ExitReason::stopped);
    ASSERT_TRUE(manager_->remove("web", false));
    load([](FakeDriver& fake) {
      fake.startsStarting = true;
      fake.recordsStarting = false;
    });
  }
}

// ps at scale: a listing reads each instance's usage from the kernel only when its kept reading is older
// than usageMaxAge (here an hour), not once per instance per listing.
TEST_F(InstanceManagerTest, ListingsWithinTheUsageAgeReadNoInstanceAgain) {
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(manager_->run(spec(name)));
  const int afterRuns = usageReads();
  for (int i = 0; i < 5; ++i) {
    json listed = manager_->list();
    ASSERT_EQ(listed["instances"].size(), 3u);
    for (const json& instance : listed["instances"]) {
      ASSERT_TRUE(instance["usage"].is_object()) << instance.dump();
      EXPECT_EQ(instance["usage"]["source"], "fake");
      EXPECT_GE(instance["usage"]["age_ms"].get<int64_t>(), 0);
    }
  }
  EXPECT_EQ(usageReads(), afterRuns) << "a listing read usage the manager already held";
  // get() shows the same kept reading.
  auto one = manager_->get("b");
  ASSERT_TRUE(one);
  EXPECT_EQ(usageReads(), afterRuns);
}

TEST_F(InstanceManagerTest, AStopOrANewRunReadsUsageAgainAtOnce) {
  ASSERT_TRUE(manager_->run(spec("a")));
  ASSERT_TRUE(manager_->list()["instances"][0]["usage"].is_object());
  ASSERT_TRUE(manager_->stop("a", 0));
  // The stop's own answer already read it again: a stopped instance holds nothing.
  EXPECT_TRUE(manager_->list()["instances"][0]["usage"].is_null());
  const int stopped = usageReads();
  ASSERT_TRUE(manager_->start("a"));
  json usage = manager_->list()["instances"][0]["usage"];
  ASSERT_TRUE(usage.is_object()) << usage.dump();
  EXPECT_GT(usageReads(), stopped);
}

// A recorded OOM kill is news the kept reading cannot hold yet: the next answer reads usage again, so its
// oom_kills and its usage's agree.
TEST_F(InstanceManagerTest, ARecordedOomKillReadsUsageAgainAtOnce) {
  ASSERT_TRUE(manager_->run(spec("a")));
  ASSERT_TRUE(manager_->list()["instances"][0]["usage"].is_object());
  const int kept = usageReads();
  manager_->list();
  EXPECT_EQ(usageReads(), kept);
  fake_->oomKills("a", 1);
  manager_->list();
  EXPECT_EQ(usageReads(), kept + 1);
}

class InstanceManagerFreshUsageTest : public InstanceManagerTest {
 protected:
  void SetUp() override {
    usageMaxAge_ = std::chrono::milliseconds(0);
    InstanceManagerTest::SetUp();
  }
};

TEST_F(InstanceManagerFreshUsageTest, WithNoAgeEveryListingReadsEveryInstance) {
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(manager_->run(spec(name)));
  const int before = usageReads();
  manager_->list();
  manager_->list();
  EXPECT_EQ(usageReads(), before + 6);
}

TEST_F(InstanceManagerTest, TheListingShowsEachNicAsGetDoes) {
  for (const char* name : {"a", "b"}) ASSERT_TRUE(manager_->run(spec(name)));
  ASSERT_TRUE(manager_->run(spec("c", /*withNic=*/false)));
  json listed = manager_->list()["instances"];
  ASSERT_EQ(listed.size(), 3u);
  for (const json& instance : listed) {
    auto got = manager_->get(instance["name"]);
    ASSERT_TRUE(got);
    EXPECT_EQ(instance["network"], (*got)["network"]) << instance["name"];  // spoof_drops null in both here
  }
  EXPECT_EQ(listed[0]["network"]["subnet"], "s");
  EXPECT_TRUE(listed[2]["network"].is_null());
  const json bare = manager_->list(InstanceManager::Listing::withoutNetwork);
  for (const json& instance : bare["instances"]) EXPECT_TRUE(instance["network"].is_null());
}

// What the dashboard and a VPC's topology need of the instances, without rendering them.
TEST_F(InstanceManagerTest, StatesAndTheRevisionFollowWhatTheDashboardShows) {
  const uint64_t empty = manager_->revision();
  ASSERT_TRUE(manager_->run(spec("a")));
  const uint64_t running = manager_->revision();
  EXPECT_NE(running, empty);
  EXPECT_EQ(manager_->statesJson(), json::parse(R"({"instances": [{"name": "a", "state": "running"}]})"));
  manager_->list();
  EXPECT_EQ(manager_->revision(), running) << "a listing is no change";
  ASSERT_TRUE(manager_->stop("a", 0));
  EXPECT_NE(manager_->revision(), running);
  EXPECT_EQ(manager_->statesJson()["instances"][0]["state"], "stopped");
  const uint64_t stopped = manager_->revision();
  ASSERT_TRUE(manager_->remove("a", false));
  EXPECT_GT(manager_->revision(), stopped) << "a removal moves the revision on (it never comes back)";
  EXPECT_NE(manager_->revision(), empty);
}

// `corral ps`'s summary: the fields it shows, as the whole listing has them, with no usage read.
TEST_F(InstanceManagerFreshUsageTest, TheSummaryListingHasPsFieldsAndReadsNoUsage) {
  for (const char* name : {"a", "b"}) ASSERT_TRUE(manager_->run(spec(name)));
  ASSERT_TRUE(manager_->stop("b", 0));
  const json full = manager_->list()["instances"];
  const int reads = usageReads();
  const int rendered = fake_->describes;
  const json summary = manager_->summaries()["instances"];
  EXPECT_EQ(usageReads(), reads) << "a summary read usage";
  EXPECT_EQ(fake_->describes, rendered) << "a summary rendered instances";
  ASSERT_EQ(summary.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    for (const char* key :
         {"name", "kind", "state", "exit_reason", "exit_code", "exit_signal", "ip", "image", "created_at"})
      EXPECT_EQ(summary[i][key], full[i][key]) << key;
    if (full[i]["boot"].is_object() && full[i]["boot"].contains("total_ms"))
      EXPECT_EQ(summary[i]["boot"]["total_ms"], full[i]["boot"]["total_ms"]);
    else
      EXPECT_TRUE(summary[i]["boot"].is_null()) << summary[i].dump();
    EXPECT_FALSE(summary[i].contains("usage"));
  }
  EXPECT_EQ(summary[1]["state"], "stopped");
}

// The dashboard's view is kept per instance: after a change, only the changed instance is rendered again.
TEST_F(InstanceManagerTest, TheDashboardViewRendersOnlyTheInstanceThatChanged) {
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(manager_->run(spec(name)));
  const json first = manager_->dashboardInstances();
  ASSERT_EQ(first.size(), 3u);
  EXPECT_EQ(first[1]["name"], "b");
  EXPECT_EQ(first[1]["state"], "running");
  const int rendered = fake_->describes;
  EXPECT_EQ(manager_->dashboardInstances(), first);
  EXPECT_EQ(fake_->describes, rendered) << "nothing changed, yet instances were rendered again";
  ASSERT_TRUE(manager_->stop("b", 0));
  const int afterStop = fake_->describes;
  const json second = manager_->dashboardInstances();
  EXPECT_EQ(fake_->describes, afterStop + 1) << "only \"b\" changed";
  EXPECT_EQ(second[1]["state"], "stopped");
  EXPECT_EQ(second[0], first[0]);
  EXPECT_EQ(second[2], first[2]);
}

// ps at 500: the driver's background sample is shown as it is, with its own age; a listing reads nothing.
TEST_F(InstanceManagerFreshUsageTest, ListingsShowTheDriversSampleWithoutAReading) {
  for (const char* name : {"a", "b", "c"}) ASSERT_TRUE(manager_->run(spec(name)));
  fake_->sampleAt = std::chrono::steady_clock::now() - std::chrono::milliseconds(400);
  const int before = usageReads();
  for (int i = 0; i < 3; ++i) {
    const json listing = manager_->list();
    for (const json& instance : listing["instances"]) {
      ASSERT_TRUE(instance["usage"].is_object()) << instance.dump();
      EXPECT_EQ(instance["usage"]["source"], "fake sample");
      EXPECT_GE(instance["usage"]["age_ms"].get<int64_t>(), 400) << "the sample's own age";
    }
  }
  EXPECT_EQ(usageReads(), before) << "a listing read usage the driver had sampled";
  // A sample too old (the sampler is stuck) is not shown: the instance is read.
  fake_->sampleAt = std::chrono::steady_clock::now() - std::chrono::seconds(10);
  EXPECT_EQ(manager_->list()["instances"][0]["usage"]["source"], "fake");
  EXPECT_EQ(usageReads(), before + 3);
}

}  // namespace
}  // namespace corral::daemon
