// EtcdProcess with a stand-in "etcd" (a shell script of that name that records its arguments and waits):
// the pid file names the running child with its start time, a child that dies is started again, stop()
// leaves nothing, and reapLeftover() kills only an etcd its pid file names (not a recycled pid).
#include "daemon/etcd_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>

#include "daemon/driver.h"

namespace corral::daemon {
namespace {

using namespace std::chrono_literals;

std::string readText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

bool eventually(const std::function<bool()>& happened, std::chrono::milliseconds deadline = 5s) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  while (!happened()) {
    if (std::chrono::steady_clock::now() > until) return false;
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

bool running(pid_t pid) {
  if (pid <= 0 || ::kill(pid, 0) != 0) return false;
  const std::string stat = readText("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] != 'Z';
}

class EtcdProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = "/tmp/corral-unit-etcd-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    // Its comm is "etcd" (a script keeps its own name), as reapLeftover() checks.
    fake_ = dir_ + "/bin/etcd";
    std::filesystem::create_directories(dir_ + "/bin");
    std::ofstream(fake_) << "#!/bin/sh\necho \"$@\" > " << dir_ << "/args\nwhile :; do sleep 0.05; done\n";
    ::chmod(fake_.c_str(), 0755);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
  std::string fake_;
};

EtcdLaunch launch() {
  return {.name = "h1",
          .clientUrl = "http://127.0.0.1:2379",
          .peerUrl = "http://127.0.0.1:2380",
          .initialCluster = "h1=http://127.0.0.1:2380",
          .newCluster = true,
          .clusterToken = "corral-t"};
}

TEST_F(EtcdProcessTest, RunsItWithThePidFileRestartsItWhenItDiesAndStopLeavesNothing) {
  auto process = EtcdProcess::open({.dir = dir_ + "/etcd", .etcd = fake_});
  ASSERT_TRUE(process) << process.error().message();
  ASSERT_TRUE((*process)->start(launch()));
  auto pid = (*process)->pid();
  ASSERT_TRUE(pid);
  EXPECT_TRUE(running(*pid));
  std::istringstream pidFile(readText((*process)->pidFile()));
  pid_t named = 0;
  int64_t startTime = 0;
  pidFile >> named >> startTime;
  EXPECT_EQ(named, *pid);
  EXPECT_EQ(processStartTime(*pid), startTime);
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(dir_ + "/args"); }));
  const std::string args = readText(dir_ + "/args");
  EXPECT_NE(args.find("--name h1 --data-dir " + dir_ + "/etcd/data"), std::string::npos) << args;
  EXPECT_NE(args.find("--initial-cluster-state new"), std::string::npos) << args;
  EXPECT_NE(args.find("--initial-cluster-token corral-t"), std::string::npos) << args;

  // Killed from outside: started again on the same data.
  ::kill(*pid, SIGKILL);
  ASSERT_TRUE(eventually([&] {
    auto now = (*process)->pid();
    return now && *now != *pid && running(*now);
  })) << "not started again";
  EXPECT_EQ((*process)->restarts(), 1);

  const pid_t last = *(*process)->pid();
  (*process)->stop();
  EXPECT_FALSE(running(last));
  EXPECT_FALSE((*process)->pid());
  EXPECT_FALSE(std::filesystem::exists((*process)->pidFile()));
  std::this_thread::sleep_for(400ms);
  EXPECT_FALSE((*process)->pid()) << "a stopped etcd was started again";
  EXPECT_TRUE(std::filesystem::exists((*process)->dataDir()));
  ASSERT_TRUE((*process)->removeData());
  EXPECT_FALSE(std::filesystem::exists((*process)->dataDir()));
}

TEST_F(EtcdProcessTest, ReapsOnlyTheEtcdItsPidFileNames) {
  const std::string etcdDir = dir_ + "/etcd";
  std::filesystem::create_directories(etcdDir);
  // An etcd an earlier corrald left: a process of its own, named in the pid file.
  pid_t left = ::fork();
  ASSERT_GE(left, 0);
  if (left == 0) {
    ::execl(fake_.c_str(), fake_.c_str(), "--name", "old", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ASSERT_TRUE(eventually([&] { return readText("/proc/" + std::to_string(left) + "/comm") == "etcd\n"; }));
  std::ofstream(etcdDir + "/etcd.pid") << left << " " << processStartTime(left).value_or(0) << "\n";
  {
    auto process = EtcdProcess::open({.dir = etcdDir, .etcd = fake_});
    ASSERT_TRUE(process) << process.error().message();
    auto done = (*process)->reapLeftover();
    ASSERT_TRUE(done);
    EXPECT_NE(done->find(std::to_string(left)), std::string::npos) << *done;
  }
  int status = 0;
  ASSERT_EQ(::waitpid(left, &status, 0), left);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_FALSE(std::filesystem::exists(etcdDir + "/etcd.pid"));

  // A pid file naming another process (a recycled pid: this test, not an etcd) kills nothing.
  std::ofstream(etcdDir + "/etcd.pid")
      << ::getpid() << " " << processStartTime(::getpid()).value_or(0) << "\n";
  auto process = EtcdProcess::open({.dir = etcdDir, .etcd = fake_});
  ASSERT_TRUE(process);
  EXPECT_FALSE((*process)->reapLeftover());
  EXPECT_FALSE(std::filesystem::exists(etcdDir + "/etcd.pid"));
}

}  // namespace
}  // namespace corral::daemon
