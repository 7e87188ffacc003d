// corral-runtime driven as conmon and containerd's shim drive runc, on the busybox image, against crun (the
// oracle; on this hybrid-cgroup host run with /sys/fs/cgroup/unified hidden, as bench/container_start.cc
// does) and runc: exit codes, output, state, kill, exec, ps, pid file, console socket, hooks, bad configs.
// Each test makes its own bundle and --root; what a container leaves (state dir, cgroup) is checked gone.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "container/oci_config.h"
#include "tests/integration/runtime/runtime_test_support.h"
#include "tests/integration/skip_guard.h"

namespace corral {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

using runtime_tests::kImageRootfs;

struct Outcome {
  int exitCode = -1;
  std::string out, err;
};

std::string readFile(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void writeFile(const fs::path& path, const std::string& text,
               fs::perms perms = fs::perms::owner_read | fs::perms::owner_write) {
  std::ofstream(path) << text;
  fs::permissions(path, perms);
}

// One runtime binary and its --root; every command runs with stdout and stderr in files, so a container
// inheriting them (create) cannot keep the command's output open.
struct Runtime {
  std::string name;
  std::vector<std::string> prefix;  // binary [wrapper args] --root DIR
  fs::path root;
  fs::path work;
  int serial = 0;

  Outcome run(const std::vector<std::string>& args, const fs::path& cwd = {}) {
    const fs::path out = work / fmt("out", serial), err = work / fmt("err", serial);
    ++serial;
    std::vector<std::string> all = prefix;
    all.insert(all.end(), args.begin(), args.end());
    pid_t pid = ::fork();
    if (pid == 0) {
      int devNull = ::open("/dev/null", O_RDONLY);
      int outFd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int errFd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(devNull, 0);
      ::dup2(outFd, 1);
      ::dup2(errFd, 2);
      if (!cwd.empty() && ::chdir(cwd.c_str()) != 0) ::_exit(126);
      std::vector<char*> argv;
      for (auto& arg : all) argv.push_back(arg.data());
      argv.push_back(nullptr);
      ::execvp(argv[0], argv.data());
      ::_exit(127);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    Outcome outcome;
    outcome.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    outcome.out = readFile(out);
    outcome.err = readFile(err);
    return outcome;
  }
  static std::string fmt(const char* what, int n) { return std::string(what) + "-" + std::to_string(n); }

  json state(const std::string& id) {
    Outcome outcome = run({"state", id});
    if (outcome.exitCode != 0) return json();
    return json::parse(outcome.out, nullptr, false);
  }
  std::string status(const std::string& id) {
    json document = state(id);
    return document.is_object() ? document.value("status", "") : "(none)";
  }
};

// A container's init is reparented to us (a subreaper, as conmon and the shim are) once `create` exits;
// this reaps it and reports its status, or -1 on timeout. Every other child is reaped meanwhile too, as a
// subreaper must: a dying pid namespace's init waits until each of its processes is reaped, exec'd ones
// whose parent we became included.
int waitForProcess(pid_t pid, std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  static std::map<pid_t, int> reapedStatus;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    pid_t reaped;
    while ((reaped = ::waitpid(-1, &status, WNOHANG)) > 0)
      reapedStatus[reaped] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (auto found = reapedStatus.find(pid); found != reapedStatus.end()) {
      int code = found->second;
      reapedStatus.erase(found);
      return code;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return -1;
}

bool cgroupExists(const std::string& parent, const std::string& name) {
  for (const char* hierarchy : {"memory", "pids", "freezer", "devices", "cpu,cpuacct", "unified"}) {
    if (fs::exists(fs::path("/sys/fs/cgroup") / hierarchy / parent / name)) return true;
  }
  return fs::exists(fs::path("/sys/fs/cgroup") / parent / name);
}

class RuntimeCli : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) {
      if (std::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) FAIL() << "needs root";
      GTEST_SKIP() << "needs root";
    }
    ASSERT_TRUE(fs::exists(kImageRootfs / "bin" / "busybox")) << "missing image " << kImageRootfs;
    char pattern[] = "/tmp/corral-runtime-test-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    rootfs_ = runtime_tests::copyImageRootfs(dir_);
    // Container inits outlive `create`; as conmon and containerd's shim are, we are their subreaper.
    ::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    // crun 1.8 refuses a hybrid host whose /sys/fs/cgroup/unified offers controllers: it runs with that
    // mount hidden in a private mount namespace of its own (the container is unaffected).
    const fs::path wrapper = dir_ / "crun-hybrid";
    writeFile(wrapper,
              "#!/bin/sh\nexec unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified "
              "2>/dev/null; exec /usr/bin/crun \"$@\"' crun \"$@\"\n",
              fs::perms::owner_all);
    corral_ = makeRuntime("corral", {CORRAL_RUNTIME_PATH});
    crun_ = makeRuntime("crun", {wrapper.string()});
    runc_ = makeRuntime("runc", {"runc"});
  }
  void TearDown() override {
    if (dir_.empty()) return;
    for (Runtime* runtime : {&corral_, &crun_, &runc_}) {
      if (runtime->prefix.empty()) continue;
      Outcome list = runtime->run({"list", "-q"});
      std::istringstream ids(list.out);
      for (std::string id; std::getline(ids, id);)
        if (!id.empty()) runtime->run({"delete", "--force", id});
    }
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
    fs::remove_all(dir_);
  }

  Runtime makeRuntime(const std::string& name, std::vector<std::string> prefix) {
    Runtime runtime;
    runtime.name = name;
    runtime.root = dir_ / (name + "-root");
    runtime.work = dir_ / (name + "-work");
    fs::create_directories(runtime.work);
    prefix.push_back("--root");
    prefix.push_back(runtime.root.string());
    runtime.prefix = std::move(prefix);
    return runtime;
  }

  // A bundle whose config.json is corral-runtime's default spec on the busybox image (read-only root,
  // no terminal) running `args`, then `change`d.
  fs::path bundle(const std::string& name, const std::vector<std::string>& args,
                  const std::function<void(json&)>& change = {}) {
    const fs::path path = dir_ / ("bundle-" + name);
    fs::create_directories(path);
    json config = json::parse(container::defaultOciSpec());
    config["root"]["path"] = rootfs_.string();
    config["process"]["terminal"] = false;
    config["process"]["args"] = args;
    config["process"].erase("rlimits");  // raising RLIMIT_NOFILE needs CAP_SYS_RESOURCE, absent here
    if (change) change(config);
    std::ofstream(path / "config.json") << config.dump(2);
    return path;
  }

  fs::path dir_;

  fs::path rootfs_;  // this test's copy of the image's root
  Runtime corral_, crun_, runc_;
};

TEST_F(RuntimeCli, RunGivesTheExitCodeAndOutputLikeCrunAndRunc) {
  const fs::path b = bundle("run", {"sh", "-c", "echo out-$(hostname); echo err >&2; exit 3"});
  for (Runtime* runtime : {&corral_, &crun_, &runc_}) {
    Outcome outcome = runtime->run({"run", "--bundle", b.string(), "r1"});
    EXPECT_EQ(outcome.exitCode, 3) << runtime->name << ": " << outcome.err;
    EXPECT_EQ(outcome.out, "out-corral\n") << runtime->name;
    EXPECT_NE(outcome.err.find("err"), std::string::npos) << runtime->name;
    EXPECT_EQ(runtime->run({"list", "-q"}).out, "") << runtime->name << ": run deletes the container";
  }
  EXPECT_FALSE(cgroupExists("corral-runtime", "r1"));
}

TEST_F(RuntimeCli, CreateStartStateKillDeleteAgreeWithCrun) {
  const fs::path b = bundle("life", {"sh", "-c",
                                     "trap 'echo got-usr1' USR1; trap 'echo got-term; exit 7' TERM; "
                                     "echo started; while true; do sleep 0.05; done"});
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    const fs::path pidFile = runtime->work / "pid";
    const fs::path output = runtime->work / "container-out";
    Outcome created = runtime->run({"create", "--bundle", b.string(), "--pid-file", pidFile.string(), "c1"});
    ASSERT_EQ(created.exitCode, 0) << created.err;
    const pid_t pid = std::stoi(readFile(pidFile));
    json state = runtime->state("c1");
    EXPECT_EQ(state["status"], "created");
    EXPECT_EQ(state["pid"], pid);
    EXPECT_EQ(state["id"], "c1");
    EXPECT_EQ(state["bundle"], b.string());
    if (runtime == &corral_) {
      EXPECT_EQ(state["ociVersion"], "1.0.2");  // crun reports its own
    }
    EXPECT_EQ(::kill(pid, 0), 0) << "the process exists from create on";
    // The created process has not run the command yet: nothing is printed before start.
    EXPECT_EQ(created.out, "");
    ASSERT_EQ(runtime->run({"start", "c1"}).exitCode, 0);
    EXPECT_EQ(runtime->status("c1"), "running");
    EXPECT_NE(runtime->run({"start", "c1"}).exitCode, 0) << "start twice";
    EXPECT_NE(runtime->run({"delete", "c1"}).exitCode, 0) << "delete refuses a running container";
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(runtime->run({"kill", "c1", "SIGUSR1"}).exitCode, 0);
    EXPECT_EQ(runtime->run({"kill", "c1", "10"}).exitCode, 0);
    if (runtime == &corral_) {
      EXPECT_NE(runtime->run({"kill", "c1", "SIGBOGUS"}).exitCode, 0);  // crun: 0
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    EXPECT_EQ(runtime->run({"kill", "c1", "TERM"}).exitCode, 0);
    EXPECT_EQ(waitForProcess(pid), 7);
    EXPECT_EQ(runtime->status("c1"), "stopped");
    EXPECT_NE(runtime->run({"kill", "c1", "KILL"}).exitCode, 0) << "kill of a stopped container";
    EXPECT_EQ(runtime->run({"delete", "c1"}).exitCode, 0);
    EXPECT_NE(runtime->run({"state", "c1"}).exitCode, 0);
    EXPECT_FALSE(fs::exists(runtime->root / "c1"));
  }
  EXPECT_FALSE(cgroupExists("corral-runtime", "c1"));
}

TEST_F(RuntimeCli, StdioIsInheritedUnchangedWithoutATerminal) {
  const fs::path b = bundle("stdio", {"sh", "-c", "echo to-stdout; echo to-stderr >&2"});
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    // create's stdout/stderr files are the container's: the process writes there after start.
    Outcome created = runtime->run(
        {"create", "--bundle", b.string(), "--pid-file", (runtime->work / "pid").string(), "s1"});
    ASSERT_EQ(created.exitCode, 0) << created.err;
    const pid_t pid = std::stoi(readFile(runtime->work / "pid"));
    const int createSerial = runtime->serial - 1;
    ASSERT_EQ(runtime->run({"start", "s1"}).exitCode, 0);
    EXPECT_EQ(waitForProcess(pid), 0);
    EXPECT_EQ(readFile(runtime->work / Runtime::fmt("out", createSerial)), "to-stdout\n");
    EXPECT_NE(readFile(runtime->work / Runtime::fmt("err", createSerial)).find("to-stderr"),
              std::string::npos);
    EXPECT_EQ(runtime->run({"delete", "s1"}).exitCode, 0);
  }
}

TEST_F(RuntimeCli, ExecAndPsAgreeWithCrun) {
  const fs::path b = bundle("exec", {"sh", "-c", "while true; do sleep 0.05; done"});
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    ASSERT_EQ(runtime->run({"create", "--bundle", b.string(), "e1"}).exitCode, 0);
    ASSERT_EQ(runtime->run({"start", "e1"}).exitCode, 0);
    Outcome exec = runtime->run({"exec", "--env", "X=41", "--cwd", "/etc", "e1", "/bin/sh", "-c",
                                 "echo $((X+1)) $(pwd) $(hostname); exit 4"});
    EXPECT_EQ(exec.exitCode, 4) << exec.err;
    EXPECT_EQ(exec.out, "42 /etc corral\n");
    // A process JSON as containerd's shim passes it.
    const fs::path process = runtime->work / "process.json";
    json spec = json::parse(container::defaultOciSpec())["process"];
    spec["terminal"] = false;
    spec["args"] = {"sh", "-c", "sleep 30"};
    spec.erase("rlimits");
    std::ofstream(process) << spec.dump();
    const fs::path execPid = runtime->work / "exec-pid";
    Outcome detached = runtime->run(
        {"exec", "--process", process.string(), "--detach", "--pid-file", execPid.string(), "e1"});
    ASSERT_EQ(detached.exitCode, 0) << detached.err;
    const pid_t sleeper = std::stoi(readFile(execPid));
    Outcome ps = runtime->run({"ps", "--format", "json", "e1"});
    ASSERT_EQ(ps.exitCode, 0) << ps.err;
    json pids = json::parse(ps.out);
    json state = runtime->state("e1");
    EXPECT_NE(std::find(pids.begin(), pids.end(), state["pid"]), pids.end()) << ps.out;
    EXPECT_NE(std::find(pids.begin(), pids.end(), sleeper), pids.end()) << ps.out;
    Outcome table = runtime->run({"ps", "e1"});
    EXPECT_NE(table.out.find("PID"), std::string::npos) << table.out;
    // runc's table is ps(1)'s rows (crun 1.8 prints the pids alone).
    if (runtime == &corral_) {
      EXPECT_NE(table.out.find("sleep 30"), std::string::npos) << table.out;
    }
    EXPECT_EQ(runtime->run({"kill", "--all", "e1", "KILL"}).exitCode, 0);
    const pid_t init = state["pid"].get<pid_t>();
    int code = waitForProcess(init);
    EXPECT_EQ(code, 128 + SIGKILL) << readFile("/proc/" + std::to_string(init) + "/status");
    EXPECT_EQ(runtime->run({"delete", "e1"}).exitCode, 0);
  }
}

// The console socket protocol: the terminal's master arrives over SCM_RIGHTS; a command written to it
// runs in the container's shell and its output comes back through it.
TEST_F(RuntimeCli, ConsoleSocketHandsOverATerminalLikeCrun) {
  const fs::path b = bundle("tty", {"sh"}, [](json& config) {
    config["process"]["terminal"] = true;
    config["process"]["consoleSize"] = {{"height", 30}, {"width", 100}};
  });
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    const fs::path socketPath = runtime->work / "console.sock";
    int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, socketPath.c_str(), sizeof address.sun_path - 1);
    ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
    ASSERT_EQ(::listen(listener, 1), 0);
    EXPECT_NE(runtime->run({"create", "--bundle", b.string(), "t1"}).exitCode, 0)
        << "a terminal without --console-socket is refused";
    std::thread creator([&] {
      Outcome created =
          runtime->run({"create", "--bundle", b.string(), "--console-socket", socketPath.string(), "t1"});
      EXPECT_EQ(created.exitCode, 0) << created.err;
    });
    int connection = ::accept(listener, nullptr, nullptr);
    ASSERT_GE(connection, 0);
    char data[256];
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{data, sizeof data};
    msghdr message{};
    message.msg_iov = &iov;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    ASSERT_GT(::recvmsg(connection, &message, 0), 0);
    cmsghdr* header = CMSG_FIRSTHDR(&message);
    ASSERT_NE(header, nullptr);
    ASSERT_EQ(header->cmsg_type, SCM_RIGHTS);
    int master = -1;
    std::memcpy(&master, CMSG_DATA(header), sizeof master);
    creator.join();
    ::close(connection);
    ::close(listener);
    ASSERT_EQ(runtime->run({"start", "t1"}).exitCode, 0);
    const std::string command = "echo tty-$((6*7)) $(tty) $(stty size)\n";
    ASSERT_EQ(::write(master, command.data(), command.size()), static_cast<ssize_t>(command.size()));
    std::string seen;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (seen.find("tty-42 /dev/pts/0 30 100") == std::string::npos &&
           std::chrono::steady_clock::now() < deadline) {
      pollfd ready{master, POLLIN, 0};
      if (::poll(&ready, 1, 100) <= 0) continue;
      char buffer[512];
      ssize_t n = ::read(master, buffer, sizeof buffer);
      if (n <= 0) break;
      seen.append(buffer, static_cast<size_t>(n));
    }
    EXPECT_NE(seen.find("tty-42 /dev/pts/0 30 100"), std::string::npos) << seen;
    ::close(master);
    EXPECT_EQ(runtime->run({"delete", "--force", "t1"}).exitCode, 0);
  }
}

TEST_F(RuntimeCli, HooksRunInOrderWithTheStateOnStdin) {
  const fs::path log = dir_ / "hooks";
  fs::create_directories(log);
  auto hook = [&](const std::string& stage) {
    return json::array({{{"path", "/bin/sh"},
                         {"args",
                          {"sh", "-c",
                           "cat > " + (log / (stage + ".state")).string() + "; echo " + stage + " >> " +
                               (log / "order").string()}}}});
  };
  const fs::path b = bundle("hooks", {"sh", "-c", "echo ran >> /hooklog/order"}, [&](json& config) {
    config["mounts"].push_back({{"destination", "/hooklog"},
                                {"type", "bind"},
                                {"source", log.string()},
                                {"options", {"rbind", "rw"}}});
    config["hooks"] = {
        {"prestart", hook("prestart")},
        {"createRuntime", hook("createRuntime")},
        {"createContainer", hook("createContainer")},
        {"startContainer",
         {{{"path", "/bin/sh"}, {"args", {"sh", "-c", "echo startContainer >> /hooklog/order"}}}}},
        {"poststart", hook("poststart")},
        {"poststop", hook("poststop")}};
  });
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    fs::remove(log / "order");
    const fs::path pidFile = runtime->work / "pid";
    Outcome created = runtime->run({"create", "--bundle", b.string(), "--pid-file", pidFile.string(), "h1"});
    ASSERT_EQ(created.exitCode, 0) << created.err;
    const pid_t pid = std::stoi(readFile(pidFile));
    ASSERT_EQ(runtime->run({"start", "h1"}).exitCode, 0);
    EXPECT_EQ(waitForProcess(pid), 0);
    EXPECT_EQ(runtime->run({"delete", "h1"}).exitCode, 0);
    std::string order = readFile(log / "order");
    // The container's own line races poststart (both follow start); compare the hooks' order.
    std::string hooksOnly;
    std::istringstream lines(order);
    for (std::string line; std::getline(lines, line);)
      if (line != "ran") hooksOnly += line + " ";
    // The runtime spec orders startContainer (before the process runs) before poststart (after it runs,
    // before start returns). crun 1.8 runs startContainer in the container after releasing it, racing
    // poststart, so for crun only the set and the create/stop ends are compared.
    if (runtime == &corral_) {
      EXPECT_EQ(hooksOnly, "prestart createRuntime createContainer startContainer poststart poststop ")
          << order;
    } else {
      EXPECT_TRUE(hooksOnly.starts_with("prestart createRuntime createContainer ")) << order;
      EXPECT_TRUE(hooksOnly.ends_with("poststop ")) << order;
      EXPECT_NE(hooksOnly.find("startContainer"), std::string::npos) << order;
      EXPECT_NE(hooksOnly.find("poststart"), std::string::npos) << order;
    }
    EXPECT_NE(order.find("ran"), std::string::npos);
    json state = json::parse(readFile(log / "createRuntime.state"), nullptr, false);
    ASSERT_TRUE(state.is_object()) << readFile(log / "createRuntime.state");
    EXPECT_EQ(state["id"], "h1");
    EXPECT_EQ(state["pid"], pid);
    EXPECT_EQ(state["bundle"], b.string());
    // runc says "creating" for the create hooks; crun 1.8 says "created".
    EXPECT_EQ(state["status"], runtime == &corral_ ? "creating" : "created");
  }
}

TEST_F(RuntimeCli, AFailingHookFailsCreateAndLeavesNothing) {
  const fs::path b = bundle("badhook", {"true"}, [](json& config) {
    config["hooks"] = {
        {"createRuntime", {{{"path", "/bin/sh"}, {"args", {"sh", "-c", "echo hook-broke >&2; exit 9"}}}}}};
  });
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    Outcome created = runtime->run({"create", "--bundle", b.string(), "f1"});
    EXPECT_NE(created.exitCode, 0);
    EXPECT_EQ(runtime->run({"list", "-q"}).out, "");
  }
  Outcome again = corral_.run({"create", "--bundle", b.string(), "f1"});
  EXPECT_NE(again.err.find("hooks.createRuntime[0]"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("exited with status 9"), std::string::npos) << again.err;
  EXPECT_NE(again.err.find("hook-broke"), std::string::npos) << again.err;
  EXPECT_FALSE(fs::exists(corral_.root / "f1"));
  EXPECT_FALSE(cgroupExists("corral-runtime", "f1"));
}

TEST_F(RuntimeCli, BadConfigsAreRefusedByFieldAndLeaveNothing) {
  struct Case {
    std::string name;
    std::function<void(json&)> change;
    std::string field;
    bool crunRefuses;  // crun 1.8 takes a relative cwd and mount destination (the spec says absolute)
  };
  const std::vector<Case> cases = {
      {"unknown-ns",
       [](json& c) {
         c["linux"]["namespaces"].push_back({{"type", "bogus"}});
       },
       "/linux/namespaces/6/type", true},
      {"relative-cwd", [](json& c) { c["process"]["cwd"] = "relative"; }, "/process/cwd", false},
      {"relative-mount", [](json& c) { c["mounts"][0]["destination"] = "proc"; }, "/mounts/0/destination",
       false},
      {"missing-rootfs", [](json& c) { c["root"]["path"] = "/nonexistent/rootfs"; }, "/root/path", true},
  };
  for (const Case& bad : cases) {
    SCOPED_TRACE(bad.name);
    const fs::path b = bundle(bad.name, {"true"}, bad.change);
    Outcome outcome = corral_.run({"create", "--bundle", b.string(), "x1"});
    EXPECT_NE(outcome.exitCode, 0);
    EXPECT_NE(outcome.err.find(bad.field), std::string::npos) << outcome.err;
    EXPECT_FALSE(fs::exists(corral_.root / "x1"));
    EXPECT_FALSE(cgroupExists("corral-runtime", "x1"));
    // The oracle refuses them too, where it checks.
    if (bad.crunRefuses) {
      EXPECT_NE(crun_.run({"create", "--bundle", b.string(), "x1"}).exitCode, 0) << "crun";
    }
  }
}

TEST_F(RuntimeCli, DeleteForceOfACreatedContainerLeavesNoProcessCgroupOrState) {
  const fs::path b = bundle("force", {"sleep", "100"});
  const fs::path pidFile = corral_.work / "pid";
  ASSERT_EQ(corral_.run({"create", "--bundle", b.string(), "--pid-file", pidFile.string(), "d1"}).exitCode,
            0);
  const pid_t pid = std::stoi(readFile(pidFile));
  EXPECT_TRUE(cgroupExists("corral-runtime", "d1"));
  EXPECT_NE(corral_.run({"delete", "d1"}).exitCode, 0) << "a created container needs --force";
  EXPECT_EQ(corral_.run({"delete", "--force", "d1"}).exitCode, 0);
  EXPECT_EQ(waitForProcess(pid), 128 + SIGKILL);
  EXPECT_FALSE(cgroupExists("corral-runtime", "d1"));
  EXPECT_FALSE(fs::exists(corral_.root / "d1"));
}

TEST_F(RuntimeCli, PauseAndResumeFreezeTheContainer) {
  const fs::path b = bundle("pause", {"sh", "-c", "while true; do sleep 0.05; done"});
  ASSERT_EQ(corral_.run({"run", "--detach", "--bundle", b.string(), "p1"}).exitCode, 0);
  EXPECT_EQ(corral_.status("p1"), "running");
  ASSERT_EQ(corral_.run({"pause", "p1"}).exitCode, 0);
  EXPECT_EQ(corral_.status("p1"), "paused");
  EXPECT_EQ(readFile("/sys/fs/cgroup/freezer/corral-runtime/p1/freezer.state"), "FROZEN\n");
  EXPECT_NE(corral_.run({"pause", "p1"}).exitCode, 0);
  ASSERT_EQ(corral_.run({"resume", "p1"}).exitCode, 0);
  EXPECT_EQ(corral_.status("p1"), "running");
  EXPECT_EQ(corral_.run({"delete", "--force", "p1"}).exitCode, 0);
}

TEST_F(RuntimeCli, ListFeaturesSpecVersionAndLogs) {
  Outcome features = corral_.run({"features"});
  ASSERT_EQ(features.exitCode, 0);
  json document = json::parse(features.out);
  EXPECT_EQ(document["linux"]["cgroup"]["v1"], true);
  EXPECT_EQ(corral_.run({"--version"}).exitCode, 0);
  const fs::path specDir = dir_ / "spec";
  fs::create_directories(specDir);
  EXPECT_EQ(corral_.run({"spec"}, specDir).exitCode, 0);
  EXPECT_TRUE(json::parse(readFile(specDir / "config.json")).is_object());
  EXPECT_NE(corral_.run({"spec"}, specDir).exitCode, 0) << "an existing config.json is kept";
  // Errors as JSON lines in --log with --log-format json (what containerd's shim reads).
  const fs::path log = dir_ / "log.json";
  std::vector<std::string> args = {"--log", log.string(), "--log-format", "json", "state", "nope"};
  Outcome missing = corral_.run(args);
  EXPECT_NE(missing.exitCode, 0);
  json line = json::parse(readFile(log));
  EXPECT_EQ(line["level"], "error");
  EXPECT_NE(line["msg"].get<std::string>().find("\"nope\" does not exist"), std::string::npos);
  EXPECT_TRUE(line.contains("time"));
  Outcome systemd = corral_.run({"--systemd-cgroup", "list"});
  EXPECT_NE(systemd.exitCode, 0);
  EXPECT_NE(systemd.err.find("--systemd-cgroup"), std::string::npos);
  const fs::path b = bundle("list", {"sleep", "100"});
  ASSERT_EQ(corral_.run({"create", "--bundle", b.string(), "l1"}).exitCode, 0);
  json list = json::parse(corral_.run({"list", "--format", "json"}).out);
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0]["id"], "l1");
  EXPECT_EQ(list[0]["status"], "created");
  EXPECT_NE(corral_.run({"create", "--bundle", b.string(), "l1"}).exitCode, 0) << "the id is taken";
  for (const char* help : {"create", "start", "run", "state", "kill", "delete", "exec", "ps", "list", "pause",
                           "resume", "features", "spec"})
    EXPECT_EQ(corral_.run({help, "--help"}).exitCode, 0) << help;
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

// What config.json asks for reaches the process, the same as under crun: sysctl (in the container's own
// network namespace), OOM score, umask, a lowered rlimit, hostname and domainname, supplementary groups,
// cwd and env, a device node, masked and read-only paths, capability sets, and a network namespace joined by
// path (another container's).
TEST_F(RuntimeCli, ConfigFieldsReachTheProcessAsUnderCrun) {
  const std::string probe =
      "cat /proc/sys/net/ipv4/ip_forward; cat /proc/self/oom_score_adj; umask; ulimit -n; hostname; "
      "domainname 2>/dev/null || cat /proc/sys/kernel/domainname; id -G; pwd; echo $GREETING; "
      "ls -l /dev/myfull | cut -c1,2,3,4,5,6,7,8,9,10; head -c 3 /dev/myfull | od -An -tx1; "
      "echo kcore=$(cat /proc/kcore | wc -c); touch /proc/sys/kernel/hostname 2>&1 >/dev/null | grep -c "
      "Read-only; "
      "grep -E 'CapBnd|CapEff|CapInh' /proc/self/status; readlink /proc/self/ns/net";
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    // The network namespace to join: a sleeping container's.
    const fs::path holder = bundle("holder-" + runtime->name, {"sleep", "100"});
    const fs::path pidFile = runtime->work / "holder-pid";
    ASSERT_EQ(runtime->run({"create", "--bundle", holder.string(), "--pid-file", pidFile.string(), "holder"})
                  .exitCode,
              0);
    const std::string holderNet = "/proc/" + readFile(pidFile) + "/ns/net";
    const fs::path b = bundle("fields-" + runtime->name, {"sh", "-c", probe}, [&](json& c) {
      c["linux"]["sysctl"] = {{"net.ipv4.ip_forward", "1"}};
      c["process"]["oomScoreAdj"] = 321;
      c["process"]["user"]["umask"] = 027;
      c["process"]["user"]["additionalGids"] = {5, 100};
      c["process"]["rlimits"] = {{{"type", "RLIMIT_NOFILE"}, {"soft", 512}, {"hard", 1024}}};
      c["process"]["cwd"] = "/tmp";
      c["process"]["env"].push_back("GREETING=hello");
      c["process"]["capabilities"]["inheritable"] = {"CAP_KILL"};
      c["hostname"] = "fields";
      c["domainname"] = "example.org";
      c["linux"]["devices"] = {
          {{"path", "/dev/myfull"}, {"type", "c"}, {"major", 1}, {"minor", 7}, {"fileMode", 0640}}};
      c["linux"]["resources"]["devices"].push_back(
          {{"allow", true}, {"type", "c"}, {"major", 1}, {"minor", 7}, {"access", "rw"}});
      for (auto& ns : c["linux"]["namespaces"])
        if (ns["type"] == "network") ns["path"] = holderNet;
    });
    Outcome outcome = runtime->run({"run", "--bundle", b.string(), "f1"});
    EXPECT_EQ(outcome.exitCode, 0) << outcome.err;
    const std::string expected =
        "1\n321\n0027\n512\nfields\nexample.org\n0 5 100\n/tmp\nhello\ncrw-r-----\n 00 00 00\nkcore=0\n1\n";
    EXPECT_TRUE(outcome.out.starts_with(expected)) << outcome.out;
    EXPECT_NE(outcome.out.find("CapInh:\t0000000000000020"), std::string::npos) << outcome.out;
    EXPECT_NE(outcome.out.find("CapBnd:\t0000000020000420"), std::string::npos) << outcome.out;
    // Joined, not made: the holder's namespace.
    char link[128] = {};
    ASSERT_GT(::readlink(holderNet.c_str(), link, sizeof link - 1), 0);
    EXPECT_NE(outcome.out.find(link), std::string::npos) << outcome.out << " vs " << link;
    EXPECT_EQ(runtime->run({"delete", "--force", "holder"}).exitCode, 0);
  }
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

// A create killed at each of the runtime's crash points (core/failpoint.h) leaves what `delete --force`
// removes completely: the state dir, the cgroup, any process.
TEST_F(RuntimeCli, ACreateKilledHalfwayIsCleanedByDeleteForce) {
  const fs::path b = bundle("crash", {"sleep", "100"});
  for (const char* point : {"container.after-cgroup", "container.after-clone"}) {
    SCOPED_TRACE(point);
    Runtime crashing = corral_;
    crashing.prefix.insert(crashing.prefix.begin(), {"env", std::string("CORRAL_FAILPOINTS=") + point});
    Outcome created = crashing.run({"create", "--bundle", b.string(), "k1"});
    EXPECT_EQ(created.exitCode, 128 + SIGKILL) << created.err;
    EXPECT_TRUE(fs::exists(corral_.root / "k1" / "state.json"));
    EXPECT_TRUE(cgroupExists("corral-runtime", "k1"));
    EXPECT_EQ(corral_.status("k1"), "creating");
    EXPECT_NE(corral_.run({"delete", "k1"}).exitCode, 0) << "not without --force";
    Outcome deleted = corral_.run({"delete", "--force", "k1"});
    EXPECT_EQ(deleted.exitCode, 0) << deleted.err;
    EXPECT_FALSE(fs::exists(corral_.root / "k1"));
    EXPECT_FALSE(cgroupExists("corral-runtime", "k1"));
    // The id is free again and works.
    Outcome again = corral_.run({"run", "--bundle", bundle("crash-again", {"true"}).string(), "k1"});
    EXPECT_EQ(again.exitCode, 0) << again.err;
  }
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

// Commands on one container serialize on its lock: of two starts at once exactly one starts it.
TEST_F(RuntimeCli, ConcurrentStartsStartOnce) {
  const fs::path b = bundle("race", {"sleep", "100"});
  ASSERT_EQ(corral_.run({"create", "--bundle", b.string(), "c2"}).exitCode, 0);
  Runtime first = corral_, second = corral_;
  first.work = corral_.work / "first";
  second.work = corral_.work / "second";
  fs::create_directories(first.work);
  fs::create_directories(second.work);
  int codes[2] = {-1, -1};
  std::thread one([&] { codes[0] = first.run({"start", "c2"}).exitCode; });
  std::thread two([&] { codes[1] = second.run({"start", "c2"}).exitCode; });
  one.join();
  two.join();
  EXPECT_EQ((codes[0] == 0) + (codes[1] == 0), 1) << codes[0] << " " << codes[1];
  EXPECT_EQ(corral_.status("c2"), "running");
  EXPECT_EQ(corral_.run({"delete", "--force", "c2"}).exitCode, 0);
}

// --preserve-fds N: the caller's fds 3 .. 3+N-1 reach the process (conmon passes its own this way).
TEST_F(RuntimeCli, PreservedFdsReachTheProcess) {
  const fs::path b = bundle("fds", {"sh", "-c", "cat <&3; ls /proc/self/fd | wc -l"});
  const fs::path input = dir_ / "fd3";
  writeFile(input, "from-fd-3\n");
  Runtime withFd = corral_;
  // The shell opens fd 3 for the runtime and hands it on with --preserve-fds 1.
  withFd.prefix.insert(withFd.prefix.begin(), {"sh", "-c", "exec 3<\"$0\"; exec \"$@\"", input.string()});
  Outcome outcome = withFd.run({"run", "--preserve-fds", "1", "--bundle", b.string(), "fd1"});
  EXPECT_EQ(outcome.exitCode, 0) << outcome.err;
  // fd 3's text, then 0, 1, 2, 3 and the one ls itself opens.
  EXPECT_EQ(outcome.out, "from-fd-3\n5\n");
  // Without the flag the caller's fd 3 stays behind (close-on-exec), as runc does.
  Outcome without = withFd.run({"run", "--bundle", b.string(), "fd2"});
  EXPECT_EQ(without.out, "4\n") << without.out;
}

}  // namespace
}  // namespace corral
