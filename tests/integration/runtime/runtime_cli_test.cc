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
#include "core/rollback.h"
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
    // stdin: an empty file of the test's own, not /dev/null (runtime_test_support.h, runCommand).
    const fs::path in = work / fmt("in", serial - 1);
    pid_t pid = ::fork();
    if (pid == 0) {
      int emptyIn = ::open(in.c_str(), O_RDWR | O_CREAT, 0644);
      int outFd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int errFd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(emptyIn, 0);
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
        // In the container's mount namespace, before pivot_root: its bind at <rootfs>/hooklog is there.
        {"createContainer",
         {{{"path", "/bin/sh"},
           {"args",
            {"sh", "-c",
             "cat > " + (log / "createContainer.state").string() + "; echo createContainer >> " +
                 (log / "order").string() + "; readlink /proc/self/ns/mnt > " + (log / "mntns").string() +
                 "; grep -c ' " + (rootfs_ / "hooklog").string() + " ' /proc/self/mountinfo > " +
                 (log / "seen").string()}}}}},
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
    char initMountNamespace[128] = {};
    ASSERT_GT(::readlink(("/proc/" + std::to_string(pid) + "/ns/mnt").c_str(), initMountNamespace,
                         sizeof initMountNamespace - 1),
              0);
    EXPECT_EQ(readFile(log / "mntns"), std::string(initMountNamespace) + "\n");
    EXPECT_EQ(readFile(log / "seen"), "1\n");
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
      // The kernel refuses both maps, so crun fails writing them.
      {"overlapping-uid-ranges",
       [](json& c) {
         c["linux"]["namespaces"].push_back({{"type", "user"}});
         c["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 1000}},
                                      {{"containerID", 500}, {"hostID", 200000}, {"size", 1000}}};
         c["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}};
       },
       "/linux/uidMappings/1/containerID", true},
      {"zero-size-gid-range",
       [](json& c) {
         c["linux"]["namespaces"].push_back({{"type", "user"}});
         c["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}};
         c["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 0}}};
       },
       "/linux/gidMappings/0/size", true},
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

namespace corral {
namespace {

// An image is other people's files: its symlinks at mount points, masked paths and /dev must be resolved
// inside its root (runc's securejoin, crun's openat2), never on the host. Each case runs under corral-runtime
// and crun on a fresh copy of the image; the host's sentinel directory and "/" must stay untouched.
// crun 1.8 refuses a mount point through a symlink to nothing ("openat2 `mnt1`: No such file or
// directory") where corral-runtime, as runc, makes the link's target inside the root; and it writes the
// default device nodes through an image's "dev" symlink onto the host (checked here without crun).
TEST_F(RuntimeCli, HostileRootfsSymlinksStayInsideTheRootLikeCrun) {
  const fs::path sentinel = dir_ / "host-sentinel";
  fs::create_directories(sentinel);
  writeFile(sentinel / "keep", "host\n");
  // A name no host has at its root, which an escaping mkdir would create there.
  const std::string hostRootName = "corral-hostile-" + std::to_string(::getpid());
  struct Case {
    std::string name;
    std::function<void(const fs::path& rootfs)> layout;
    std::function<void(json&)> change;
    std::string script;
    std::string expected;
    enum class Crun { Agrees, Refuses, Escapes } crun = Crun::Agrees;
  };
  const std::string inSentinel = sentinel.string();
  auto mountAt = [](const std::string& destination) {
    return [destination](json& c) {
      c["mounts"].push_back({{"destination", destination},
                             {"type", "tmpfs"},
                             {"source", "tmpfs"},
                             {"options", {"nosuid", "nodev", "size=64k"}}});
    };
  };
  auto mountedAt = [](const std::string& path) { return "grep -c ' " + path + " ' /proc/self/mountinfo"; };
  const std::vector<Case> cases = {
      {"absolute-host-path", [&](const fs::path& rootfs) { fs::create_symlink(sentinel, rootfs / "mnt1"); },
       mountAt("/mnt1/sub"), mountedAt(inSentinel + "/sub"), "1\n", Case::Crun::Refuses},
      {"dotdot-chain",
       [&](const fs::path& rootfs) {
         fs::create_symlink("../../../../../../../../.." + inSentinel, rootfs / "up");
       },
       mountAt("/up/sub2"), mountedAt(inSentinel + "/sub2"), "1\n", Case::Crun::Refuses},
      {"to-slash", [&](const fs::path& rootfs) { fs::create_symlink("/", rootfs / "slash"); },
       mountAt("/slash/" + hostRootName), mountedAt("/" + hostRootName), "1\n"},
      {"masked-symlink",
       [&](const fs::path& rootfs) {
         writeFile(rootfs / "etc" / "secret", "secret\n", fs::perms::owner_read | fs::perms::others_read);
         fs::create_symlink("/etc/secret", rootfs / "masklink");
       },
       [](json& c) { c["linux"]["maskedPaths"].push_back("/masklink"); }, "echo \"[$(cat /etc/secret)]\"",
       "[]\n"},
      {"dev-symlink",
       [&](const fs::path& rootfs) {
         fs::remove_all(rootfs / "dev");
         fs::create_symlink(sentinel, rootfs / "dev");
       },
       [](json& c) {
         // No /dev tmpfs: the default nodes go into the image's "dev", a symlink to a host path.
         auto& mounts = c["mounts"];
         for (size_t i = mounts.size(); i-- > 0;)
           if (mounts[i]["destination"].get<std::string>().starts_with("/dev")) mounts.erase(i);
       },
       "ls " + inSentinel + " | grep -c -E '^(null|zero|full|random|urandom|tty)$'", "6\n",
       Case::Crun::Escapes},
  };
  for (const Case& hostile : cases) {
    for (Runtime* runtime : {&corral_, &crun_}) {
      if (runtime == &crun_ && hostile.crun == Case::Crun::Escapes) continue;
      const bool refused = runtime == &crun_ && hostile.crun == Case::Crun::Refuses;
      SCOPED_TRACE(hostile.name + " under " + runtime->name);
      const fs::path copy = dir_ / ("hostile-" + hostile.name + "-" + runtime->name);
      fs::create_directories(copy);
      const fs::path rootfs = runtime_tests::copyImageRootfs(copy);
      hostile.layout(rootfs);
      const fs::path b =
          bundle(hostile.name + "-" + runtime->name, {"sh", "-c", hostile.script}, [&](json& c) {
            c["root"]["path"] = rootfs.string();
            hostile.change(c);
          });
      Outcome outcome = runtime->run({"run", "--bundle", b.string(), "h1"});
      if (refused) {
        EXPECT_NE(outcome.exitCode, 0) << outcome.out;
      } else {
        EXPECT_EQ(outcome.exitCode, 0) << outcome.err;
        EXPECT_EQ(outcome.out, hostile.expected) << outcome.err;
      }
      std::vector<std::string> hostEntries;
      for (const auto& entry : fs::directory_iterator(sentinel))
        hostEntries.push_back(entry.path().filename());
      EXPECT_EQ(hostEntries, std::vector<std::string>{"keep"}) << "the host's directory was written to";
      EXPECT_EQ(readFile(sentinel / "keep"), "host\n");
      EXPECT_FALSE(fs::exists("/" + hostRootName)) << "the host's / was written to";
      // Leave the host as it was even when the runtime did not.
      for (const auto& entry : fs::directory_iterator(sentinel))
        if (entry.path().filename() != "keep") fs::remove_all(entry.path());
      if (fs::exists("/" + hostRootName)) fs::remove("/" + hostRootName);
      runtime->run({"delete", "--force", "h1"});
    }
  }
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

// A command that passes create's lookup but cannot be executed (not a binary, no #!): execve fails after
// `start` released init. `start` and `run` fail with the path and the errno, as runc's do, the error goes
// to --log too, and the container is stopped.
TEST_F(RuntimeCli, AnExecFailureAfterStartIsReportedByStartAndRun) {
  writeFile(rootfs_ / "notexec", "this is not a program\n", fs::perms::owner_all | fs::perms::others_read);
  const fs::path b = bundle("notexec", {"/notexec"});
  const fs::path log = corral_.work / "log";
  Runtime logged = corral_;
  logged.prefix.insert(logged.prefix.begin() + 1, {"--log", log.string()});
  ASSERT_EQ(logged.run({"create", "--bundle", b.string(), "e1"}).exitCode, 0);
  Outcome started = logged.run({"start", "e1"});
  EXPECT_NE(started.exitCode, 0);
  for (const std::string& text : {started.err, readFile(log)}) {
    EXPECT_NE(text.find("\"/notexec\""), std::string::npos) << text;
    EXPECT_NE(text.find(std::strerror(ENOEXEC)), std::string::npos) << text;
  }
  EXPECT_EQ(logged.status("e1"), "stopped");
  EXPECT_EQ(logged.run({"delete", "e1"}).exitCode, 0);

  Outcome ran = corral_.run({"run", "--bundle", b.string(), "e2"});
  EXPECT_NE(ran.exitCode, 0);
  EXPECT_NE(ran.err.find("\"/notexec\""), std::string::npos) << ran.err;
  EXPECT_NE(ran.err.find(std::strerror(ENOEXEC)), std::string::npos) << ran.err;
  EXPECT_EQ(corral_.run({"list", "-q"}).out, "");
  EXPECT_FALSE(cgroupExists("corral-runtime", "e2"));
  // crun too fails the container, though at its own time: its `run` exits non-zero.
  EXPECT_NE(crun_.run({"run", "--bundle", b.string(), "e3"}).exitCode, 0);
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

std::string namespaceLink(const std::string& path) {
  char link[128] = {};
  return ::readlink(path.c_str(), link, sizeof link - 1) > 0 ? std::string(link) : std::string("(none)");
}

// linux.namespaces with a path for pid (entered by the runtime around the clone: the process is born in
// it) and for mount (the container's mounts and pivot_root then happen in it), as under crun.
TEST_F(RuntimeCli, PidAndMountNamespacesAreJoinedByPathLikeCrun) {
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    // The pid namespace to join: a sleeping container's.
    const fs::path holder = bundle("pid-holder-" + runtime->name, {"sleep", "100"});
    const fs::path pidFile = runtime->work / "holder-pid";
    ASSERT_EQ(runtime->run({"create", "--bundle", holder.string(), "--pid-file", pidFile.string(), "holder"})
                  .exitCode,
              0);
    const std::string holderPid = readFile(pidFile);
    // The mount namespace to join: a fresh private one of its own, held by a sleep.
    pid_t mountHolder = ::fork();
    if (mountHolder == 0) {
      ::execlp("unshare", "unshare", "-m", "--propagation", "private", "sleep", "100", nullptr);
      ::_exit(127);
    }
    const std::string mountNs = "/proc/" + std::to_string(mountHolder) + "/ns/mnt";
    for (int i = 0; i < 200 && namespaceLink(mountNs) == namespaceLink("/proc/self/ns/mnt"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_NE(namespaceLink(mountNs), namespaceLink("/proc/self/ns/mnt"));
    const std::string expectedMountNs = namespaceLink(mountNs);
    const fs::path b = bundle(
        "joins-" + runtime->name,
        {"sh", "-c", "readlink /proc/self/ns/pid; readlink /proc/self/ns/mnt; test $$ != 1 && echo not-1"},
        [&](json& c) {
          for (auto& ns : c["linux"]["namespaces"]) {
            if (ns["type"] == "pid") ns["path"] = "/proc/" + holderPid + "/ns/pid";
            if (ns["type"] == "mount") ns["path"] = mountNs;
          }
        });
    Outcome outcome = runtime->run({"run", "--bundle", b.string(), "j1"});
    EXPECT_EQ(outcome.exitCode, 0) << outcome.err;
    EXPECT_EQ(outcome.out,
              namespaceLink("/proc/" + holderPid + "/ns/pid") + "\n" + expectedMountNs + "\nnot-1\n")
        << outcome.err;
    ::kill(mountHolder, SIGKILL);
    waitForProcess(mountHolder);
    EXPECT_EQ(runtime->run({"delete", "--force", "holder"}).exitCode, 0);
  }
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

// A user namespace with one id range (linux.uidMappings / gidMappings): the process is root inside, the
// host's ids outside the range are nobody, and the default devices are the host's nodes bound in (mknod is
// refused there), as under crun.
TEST_F(RuntimeCli, UserNamespaceWithIdMappingsLikeCrun) {
  // crun makes the root private as the namespace's root, which host root's 0700 test directory refuses.
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  std::string outputs[2];
  int index = 0;
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    const fs::path b =
        bundle("userns-" + runtime->name,
               {"sh", "-c",
                "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; stat -c %u:%g /bin/busybox; "
                "head -c 3 /dev/zero | od -An -tx1; echo $(hostname)"},
               [&](json& c) {
                 c["linux"]["namespaces"].push_back({{"type", "user"}});
                 const json range = json::array({{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}});
                 c["linux"]["uidMappings"] = range;
                 c["linux"]["gidMappings"] = range;
               });
    Outcome outcome = runtime->run({"run", "--bundle", b.string(), "u1"});
    EXPECT_EQ(outcome.exitCode, 0) << outcome.err;
    outputs[index++] = outcome.out;
  }
  EXPECT_NE(outputs[0].find("100000"), std::string::npos) << outputs[0];
  EXPECT_NE(outputs[0].find("\n0\n0\n65534:65534\n 00 00 00\ncorral\n"), std::string::npos) << outputs[0];
  EXPECT_EQ(outputs[0], outputs[1]);
  // Neither runtime gave a host file outside the bundle to the container's root.
  struct stat devNull {};
  ASSERT_EQ(::stat("/dev/null", &devNull), 0);
  EXPECT_EQ(devNull.st_uid, 0u);
  EXPECT_EQ(devNull.st_gid, 0u);
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

std::string hostOwner(const fs::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "(missing)";
  return std::to_string(st.st_uid) + ":" + std::to_string(st.st_gid);
}

// What a container's process sees of its ids, and a file it creates in /tmp.
const std::vector<std::string> kIdsProbe = {"sh", "-c",
                                            "cat /proc/self/uid_map /proc/self/gid_map; id; touch "
                                            "/tmp/made-by-$(id -u); stat -c %u:%g /tmp/made-by-$(id -u)"};

// Several uid ranges and gid ranges of their own (linux.uidMappings / gidMappings): each runtime writes
// the maps as given, the process's ids are those of the config inside, and the files it makes belong on
// the host to what its ids map to: for root 100000:200000, for 1000:1000 the second uid range's 300000
// and the gid range's 201000. The same under crun.
TEST_F(RuntimeCli, SeveralIdRangesMapUidsAndGidsIndependentlyLikeCrun) {
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  const json uidMappings = {{{"containerID", 0}, {"hostID", 100000}, {"size", 1000}},
                            {{"containerID", 1000}, {"hostID", 300000}, {"size", 64536}}};
  const json gidMappings = {{{"containerID", 0}, {"hostID", 200000}, {"size", 65536}}};
  for (int uid : {0, 1000}) {
    SCOPED_TRACE("uid " + std::to_string(uid));
    std::string outputs[2], owners[2];
    int index = 0;
    for (Runtime* runtime : {&corral_, &crun_}) {
      SCOPED_TRACE(runtime->name);
      // Each runtime its own root copy, so the files made are told apart.
      const fs::path rootCopy = dir_ / ("ranges-root-" + runtime->name + std::to_string(uid));
      fs::create_directories(rootCopy);
      const fs::path rootfs = runtime_tests::copyImageRootfs(rootCopy);
      fs::create_directories(rootfs / "tmp");
      fs::permissions(rootfs / "tmp", fs::perms::all | fs::perms::sticky_bit);
      fs::permissions(rootCopy, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
      const fs::path b = bundle("ranges-" + runtime->name + std::to_string(uid), kIdsProbe, [&](json& c) {
        c["root"]["path"] = rootfs.string();
        c["root"]["readonly"] = false;
        c["process"]["user"] = {{"uid", uid}, {"gid", uid}};
        c["linux"]["namespaces"].push_back({{"type", "user"}});
        c["linux"]["uidMappings"] = uidMappings;
        c["linux"]["gidMappings"] = gidMappings;
      });
      Outcome outcome = runtime->run({"run", "--bundle", b.string(), "r1"});
      EXPECT_EQ(outcome.exitCode, 0) << outcome.err;
      outputs[index] = outcome.out;
      owners[index++] = hostOwner(rootfs / "tmp" / ("made-by-" + std::to_string(uid)));
    }
    const std::string maps =
        "         0     100000       1000\n      1000     300000      64536\n         0     200000      "
        "65536\n";
    EXPECT_EQ(outputs[0].substr(0, maps.size()), maps) << outputs[0];
    const std::string ids = uid == 0 ? "uid=0(root) gid=0(root)" : "uid=1000 gid=1000";
    EXPECT_NE(outputs[0].find(ids), std::string::npos) << outputs[0];
    EXPECT_EQ(outputs[0], outputs[1]);
    EXPECT_EQ(owners[0], uid == 0 ? "100000:200000" : "300000:201000");
    EXPECT_EQ(owners[0], owners[1]);
  }
}

// A user namespace joined by path ({"type": "user", "path": "/proc/PID/ns/user"}), of a process that
// `unshare --user` made and the test gave maps (0 -> 500000 for uids; two ranges for gids): the container
// is in that namespace (the same ns link), sees its maps, is root there, and its file belongs to
// 500000:600000 on the host. No maps are written (they exist); the same under crun.
TEST_F(RuntimeCli, UserNamespaceJoinedByPathLikeCrun) {
  fs::permissions(dir_, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                            fs::perms::others_read | fs::perms::others_exec);
  pid_t holder = ::fork();
  if (holder == 0) {
    ::execlp("unshare", "unshare", "--user", "sleep", "100", nullptr);
    ::_exit(127);
  }
  Rollback stopHolder([&] {
    ::kill(holder, SIGKILL);
    waitForProcess(holder);
  });
  const std::string holderNs = "/proc/" + std::to_string(holder) + "/ns/user";
  for (int i = 0; i < 200 && namespaceLink(holderNs) == namespaceLink("/proc/self/ns/user"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_NE(namespaceLink(holderNs), namespaceLink("/proc/self/ns/user"));
  // Each map in one write(2), as the kernel wants.
  for (auto [file, text] : {std::pair<std::string, std::string>{"uid_map", "0 500000 65536\n"},
                            {"gid_map", "0 600000 1000\n1000 700000 64536\n"}}) {
    const std::string path = "/proc/" + std::to_string(holder) + "/" + file;
    int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size())) << path;
    ::close(fd);
  }
  std::string outputs[2], owners[2], execOutputs[2];
  int index = 0;
  for (Runtime* runtime : {&corral_, &crun_}) {
    SCOPED_TRACE(runtime->name);
    const fs::path rootCopy = dir_ / ("joined-root-" + runtime->name);
    fs::create_directories(rootCopy);
    const fs::path rootfs = runtime_tests::copyImageRootfs(rootCopy);
    fs::create_directories(rootfs / "tmp");
    fs::permissions(rootfs / "tmp", fs::perms::all | fs::perms::sticky_bit);
    fs::permissions(rootCopy, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec);
    std::vector<std::string> probe = kIdsProbe;
    probe.back() += "; readlink /proc/self/ns/user";
    const fs::path b = bundle("joined-" + runtime->name, probe, [&](json& c) {
      c["root"]["path"] = rootfs.string();
      c["root"]["readonly"] = false;
      c["linux"]["namespaces"].push_back({{"type", "user"}, {"path", holderNs}});
    });
    Outcome outcome = runtime->run({"run", "--bundle", b.string(), "j1"});
    EXPECT_EQ(outcome.exitCode, 0) << outcome.err;
    outputs[index] = outcome.out;
    owners[index] = hostOwner(rootfs / "tmp" / "made-by-0");
    // exec joins the container's user namespace, which is the joined one: the same ids and link.
    const fs::path running = bundle("joined-running-" + runtime->name, {"sleep", "100"}, [&](json& c) {
      c["root"]["path"] = rootfs.string();
      c["linux"]["namespaces"].push_back({{"type", "user"}, {"path", holderNs}});
    });
    ASSERT_EQ(runtime->run({"create", "--bundle", running.string(), "j2"}).exitCode, 0);
    ASSERT_EQ(runtime->run({"start", "j2"}).exitCode, 0);
    Outcome exec =
        runtime->run({"exec", "j2", "sh", "-c", "id; cat /proc/self/uid_map; readlink /proc/self/ns/user"});
    EXPECT_EQ(exec.exitCode, 0) << exec.err;
    execOutputs[index++] = exec.out;
    EXPECT_EQ(runtime->run({"delete", "--force", "j2"}).exitCode, 0);
  }
  EXPECT_EQ(execOutputs[0],
            "uid=0(root) gid=0(root)\n         0     500000      65536\n" + namespaceLink(holderNs) + "\n");
  EXPECT_EQ(execOutputs[0], execOutputs[1]);
  const std::string expected =
      "         0     500000      65536\n         0     600000       1000\n      1000     "
      "700000      64536\nuid=0(root) gid=0(root)";
  EXPECT_EQ(outputs[0].substr(0, expected.size()), expected) << outputs[0];
  EXPECT_NE(outputs[0].find(namespaceLink(holderNs)), std::string::npos) << outputs[0];
  EXPECT_EQ(outputs[0], outputs[1]);
  EXPECT_EQ(owners[0], "500000:600000");
  EXPECT_EQ(owners[0], owners[1]);

  // Mappings beside a joined user namespace are refused by pointer (crun 1.8 ignores them), and nothing
  // is left: no state, no cgroup.
  const fs::path bad = bundle("joined-with-maps", {"true"}, [&](json& c) {
    c["linux"]["namespaces"].push_back({{"type", "user"}, {"path", holderNs}});
    c["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 500000}, {"size", 65536}}};
  });
  Outcome refused = corral_.run({"create", "--bundle", bad.string(), "x1"});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.err.find("/linux/uidMappings"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(corral_.root / "x1"));
  EXPECT_FALSE(cgroupExists("corral-runtime", "x1"));
  // A path that is no user namespace: refused at create naming the namespaces, nothing left.
  const fs::path missing = bundle("joined-missing", {"true"}, [&](json& c) {
    c["linux"]["namespaces"].push_back({{"type", "user"}, {"path", "/proc/self/ns/nonexistent"}});
  });
  refused = corral_.run({"create", "--bundle", missing.string(), "x2"});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.err.find("/linux/namespaces"), std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(corral_.root / "x2"));
  EXPECT_FALSE(cgroupExists("corral-runtime", "x2"));
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

// CLOCK_BOOTTIME in seconds, as /proc/uptime's first field shows it to the reader.
double uptimeSeconds(const std::string& text) {
  return std::stod(text.substr(0, text.find(' ')));
}

// /proc/self/timens_offsets of a process that util-linux's unshare puts in a new time namespace with these
// offsets: the reference. crun 1.8 fails on time namespaces ("cannot setns to target timens") and runc 1.1
// does not know them ("namespace time does not exist"), so the kernel's own tool is the oracle here.
std::string unshareTimeOffsets(const fs::path& work, const std::string& monotonic,
                               const std::string& boottime) {
  return runtime_tests::runCommand({"unshare", "--time", "--monotonic", monotonic, "--boottime", boottime,
                                    "--fork", "cat", "/proc/self/timens_offsets"},
                                   work / "unshare-out")
      .out;
}

// A time namespace of the container's own with linux.timeOffsets: the process's /proc/uptime
// (CLOCK_BOOTTIME) is ahead of the host's by the boottime offset and its timens_offsets read as unshare
// makes them; an exec'd process and a startContainer hook are in the same namespace, while the runtime's
// own createRuntime hook is not (the runtime went back to its own time namespace after the clone).
TEST_F(RuntimeCli, TimeNamespaceWithOffsetsAsUnshareMakesIt) {
  const std::string expected = unshareTimeOffsets(corral_.work, "100000", "200000");
  ASSERT_NE(expected.find("200000"), std::string::npos) << expected;
  const fs::path log = dir_ / "time-hooks";
  fs::create_directories(log);
  fs::create_directories(rootfs_ / "tmp");
  const fs::path b = bundle(
      "timens",
      {"sh", "-c",
       "cat /proc/self/timens_offsets > /tmp/offsets; cat /proc/uptime > /tmp/uptime.new; "
       "mv /tmp/uptime.new /tmp/uptime; exec sleep 100"},
      [&](json& c) {
        c["root"]["readonly"] = false;
        c["linux"]["namespaces"].push_back({{"type", "time"}});
        c["linux"]["timeOffsets"] = {{"monotonic", {{"secs", 100000}, {"nanosecs", 0}}},
                                     {"boottime", {{"secs", 200000}}}};
        c["hooks"] = {
            {"createRuntime",
             {{{"path", "/bin/sh"},
               {"args", {"sh", "-c", "cat /proc/self/timens_offsets > " + (log / "runtime").string()}}}}},
            {"startContainer",
             {{{"path", "/bin/sh"}, {"args", {"sh", "-c", "cat /proc/self/timens_offsets > /tmp/hook"}}}}}};
      });
  const double hostBefore = uptimeSeconds(readFile("/proc/uptime"));
  const fs::path pidFile = corral_.work / "pid";
  Outcome created = corral_.run({"create", "--bundle", b.string(), "--pid-file", pidFile.string(), "t1"});
  ASSERT_EQ(created.exitCode, 0) << created.err;
  const pid_t pid = std::stoi(readFile(pidFile));
  ASSERT_EQ(corral_.run({"start", "t1"}).exitCode, 0);
  for (int i = 0; i < 500 && !fs::exists(rootfs_ / "tmp" / "uptime"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  const double hostAfter = uptimeSeconds(readFile("/proc/uptime"));
  EXPECT_EQ(readFile(rootfs_ / "tmp" / "offsets"), expected);
  const std::string uptime = readFile(rootfs_ / "tmp" / "uptime");
  ASSERT_FALSE(uptime.empty());
  const double inside = uptimeSeconds(uptime);
  EXPECT_GE(inside, hostBefore + 200000 - 1) << uptime;
  EXPECT_LE(inside, hostAfter + 200000 + 1) << uptime;
  EXPECT_EQ(readFile(rootfs_ / "tmp" / "hook"), expected) << "startContainer runs in the container's";
  EXPECT_EQ(readFile(log / "runtime"), unshareTimeOffsets(corral_.work, "0", "0"))
      << "createRuntime runs in the runtime's own time namespace";
  Outcome exec = corral_.run({"exec", "t1", "cat", "/proc/self/timens_offsets"});
  EXPECT_EQ(exec.exitCode, 0) << exec.err;
  EXPECT_EQ(exec.out, expected);
  EXPECT_NE(namespaceLink("/proc/" + std::to_string(pid) + "/ns/time"), namespaceLink("/proc/self/ns/time"));
  EXPECT_EQ(corral_.run({"kill", "t1", "KILL"}).exitCode, 0);
  waitForProcess(pid);
  EXPECT_EQ(corral_.run({"delete", "t1"}).exitCode, 0);
}

// linux.namespaces time with a path: the process is born in that namespace (entered by the runtime around
// the clone) and reads its offsets; offsets with a joined namespace, and a path that is not a time
// namespace, are refused by field and leave nothing.
TEST_F(RuntimeCli, TimeNamespaceJoinedByPath) {
  const fs::path holder = bundle("time-holder", {"sleep", "100"}, [](json& c) {
    c["linux"]["namespaces"].push_back({{"type", "time"}});
    c["linux"]["timeOffsets"] = {{"boottime", {{"secs", 300000}}}};
  });
  const fs::path pidFile = corral_.work / "holder-pid";
  ASSERT_EQ(
      corral_.run({"create", "--bundle", holder.string(), "--pid-file", pidFile.string(), "holder"}).exitCode,
      0);
  const std::string holderTime = "/proc/" + readFile(pidFile) + "/ns/time";
  const fs::path b = bundle(
      "time-join", {"sh", "-c", "readlink /proc/self/ns/time; cat /proc/self/timens_offsets"}, [&](json& c) {
        c["linux"]["namespaces"].push_back({{"type", "time"}, {"path", holderTime}});
      });
  Outcome outcome = corral_.run({"run", "--bundle", b.string(), "j1"});
  EXPECT_EQ(outcome.exitCode, 0) << outcome.err;
  EXPECT_EQ(outcome.out, namespaceLink(holderTime) + "\n" + unshareTimeOffsets(corral_.work, "0", "300000"));

  const fs::path withOffsets = bundle("time-join-offsets", {"true"}, [&](json& c) {
    c["linux"]["namespaces"].push_back({{"type", "time"}, {"path", holderTime}});
    c["linux"]["timeOffsets"] = {{"monotonic", {{"secs", 1}}}};
  });
  Outcome refused = corral_.run({"create", "--bundle", withOffsets.string(), "x1"});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.err.find("/linux/timeOffsets"), std::string::npos) << refused.err;
  const fs::path notTime = bundle("time-join-net", {"true"}, [&](json& c) {
    c["linux"]["namespaces"].push_back(
        {{"type", "time"}, {"path", "/proc/" + readFile(pidFile) + "/ns/net"}});
  });
  Outcome wrong = corral_.run({"create", "--bundle", notTime.string(), "x1"});
  EXPECT_NE(wrong.exitCode, 0);
  EXPECT_NE(wrong.err.find("CLONE_NEWTIME"), std::string::npos) << wrong.err;
  EXPECT_NE(wrong.err.find("/ns/net"), std::string::npos) << wrong.err;
  EXPECT_FALSE(fs::exists(corral_.root / "x1"));
  EXPECT_FALSE(cgroupExists("corral-runtime", "x1"));
  EXPECT_EQ(corral_.run({"delete", "--force", "holder"}).exitCode, 0);
}

}  // namespace
}  // namespace corral

namespace corral {
namespace {

// The hierarchy id of a controller in /proc/cgroups (0: not mounted as a v1 hierarchy).
int v1HierarchyOf(const std::string& controller) {
  std::istringstream lines(readFile("/proc/cgroups"));
  for (std::string line; std::getline(lines, line);) {
    std::istringstream fields(line);
    std::string name;
    int hierarchy = -1;
    if (fields >> name >> hierarchy && name == controller) return hierarchy;
  }
  return -1;
}

// linux.resources.hugepageLimits on cgroup v1, for real, as under crun. This hybrid host leaves the hugetlb
// controller unmounted (unused in the v2 tree), so the test mounts a hierarchy of its own, seen only in a
// private mount namespace held by a sleeping shell: there /sys/fs/cgroup is rebuilt on a tmpfs from the
// host's hierarchies (bound in) plus hugetlb, and both runtimes run in it (nsenter). Afterwards every group
// in that hierarchy is removed and the namespace let go, so the controller goes back to the v2 tree
// (checked in /proc/cgroups): nothing of it outlives the test. Outside it, the same bundle is refused.
TEST_F(RuntimeCli, HugepageLimitsReachTheHugetlbCgroupLikeCrun) {
  if (!fs::exists("/sys/kernel/mm/hugepages/hugepages-2048kB")) {
    if (std::getenv("CORRAL_REQUIRE_PRIVILEGED") != nullptr) FAIL() << "no 2 MB huge pages on this kernel";
    GTEST_SKIP() << "no 2 MB huge pages on this kernel";
  }
  ASSERT_EQ(v1HierarchyOf("hugetlb"), 0) << "this test needs the hugetlb controller free of v1 hierarchies";
  auto limited = [&](const std::string& name) {
    return bundle(name, {"sh", "-c", "grep hugetlb /proc/self/cgroup | cut -d: -f2-; exec sleep 100"},
                  [](json& c) {
                    c["linux"]["cgroupsPath"] = "corral-test-huge/h1";
                    c["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "2MB"}, {"limit", 8 << 20}}};
                  });
  };
  // Outside the namespace, on this host as it is: refused, naming the controller, leaving nothing.
  const fs::path plain = limited("huge-plain");
  Outcome refused = corral_.run({"create", "--bundle", plain.string(), "h1"});
  EXPECT_NE(refused.exitCode, 0);
  EXPECT_NE(refused.err.find("the \"hugetlb\" cgroup v1 controller is not mounted"), std::string::npos)
      << refused.err;
  EXPECT_FALSE(fs::exists(corral_.root / "h1"));
  EXPECT_FALSE(cgroupExists("corral-test-huge", "h1"));
  const fs::path oddSize = bundle("huge-odd", {"true"}, [](json& c) {
    c["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "3MB"}, {"limit", 1}}};
  });
  Outcome odd = corral_.run({"create", "--bundle", oddSize.string(), "h2"});
  EXPECT_NE(odd.exitCode, 0);
  EXPECT_NE(odd.err.find("/linux/resources/hugepageLimits/0/pageSize"), std::string::npos) << odd.err;
  EXPECT_NE(odd.err.find("2MB"), std::string::npos) << odd.err << ": names the host's sizes";

  const fs::path setup = dir_ / "hugetlb-namespace";
  writeFile(setup,
            "#!/bin/sh\nset -e\nD=\"$1\"\nmkdir -p \"$D/host-cgroup\"\n"
            "mount --rbind /sys/fs/cgroup \"$D/host-cgroup\"\n"
            // Unmounted, not covered: hidden mounts would still be listed in mountinfo.
            "umount -R /sys/fs/cgroup\n"
            "mount -t tmpfs -o mode=755 cgroup-root /sys/fs/cgroup\n"
            "for entry in \"$D\"/host-cgroup/*; do\n"
            "  name=$(basename \"$entry\")\n"
            "  if [ -L \"$entry\" ]; then ln -s \"$(readlink \"$entry\")\" \"/sys/fs/cgroup/$name\"\n"
            "  else mkdir \"/sys/fs/cgroup/$name\"; mount --rbind \"$entry\" \"/sys/fs/cgroup/$name\"; fi\n"
            "done\n"
            "mkdir /sys/fs/cgroup/hugetlb\nmount -t cgroup -o hugetlb hugetlb /sys/fs/cgroup/hugetlb\n"
            "touch \"$D/ready\"\nexec sleep 1000\n",
            fs::perms::owner_all);
  pid_t holder = ::fork();
  if (holder == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);  // the namespace goes with the test, whatever happens
    ::execlp("unshare", "unshare", "-m", "--propagation", "private", setup.c_str(), dir_.c_str(), nullptr);
    ::_exit(127);
  }
  for (int i = 0; i < 500 && !fs::exists(dir_ / "ready"); ++i) {
    if (::waitpid(holder, nullptr, WNOHANG) == holder) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (!fs::exists(dir_ / "ready")) {
    ::kill(holder, SIGKILL);
    waitForProcess(holder);
    FAIL() << "the private hugetlb hierarchy could not be mounted";
  }
  const std::string inNamespace = std::to_string(holder);
  auto hostSide = [&](const std::string& command) {
    return runtime_tests::runCommand({"nsenter", "-m", "-t", inNamespace, "sh", "-c", command},
                                     dir_ / "nsenter-out")
        .out;
  };
  const std::string group = "/sys/fs/cgroup/hugetlb/corral-test-huge/h1";
  Runtime corralThere =
      makeRuntime("corral-hugetlb", {"nsenter", "-m", "-t", inNamespace, CORRAL_RUNTIME_PATH});
  Runtime crunThere = makeRuntime("crun-hugetlb", {"nsenter", "-m", "-t", inNamespace, crun_.prefix.front()});
  // Whatever fails below: containers deleted, the hierarchy emptied of groups, then let go with the
  // namespace, so hugetlb is the v2 tree's again.
  Rollback release([&] {
    for (Runtime* runtime : {&corralThere, &crunThere}) runtime->run({"delete", "--force", "h1"});
    hostSide(
        "find /sys/fs/cgroup/hugetlb -mindepth 1 -depth -type d -exec rmdir {} \\;; "
        "rmdir /sys/fs/cgroup/*/corral-test-huge 2>/dev/null; true");
    ::kill(holder, SIGKILL);
    waitForProcess(holder);
    // A hierarchy unmounted while a removed group was still dying stays, unmounted, with the controller:
    // mounted again (the same hierarchy) and unmounted once that group is gone, it is released.
    for (int i = 1; i <= 200 && v1HierarchyOf("hugetlb") != 0; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (i % 40 != 0) continue;  // its release takes a while; help it along once a second or two
      const fs::path again = dir_ / "hugetlb-again";
      fs::create_directories(again);
      runtime_tests::runCommand(
          {"unshare", "-m", "--propagation", "private", "sh", "-c",
           "mount -t cgroup -o hugetlb hugetlb " + again.string() + " && umount " + again.string()},
          dir_ / "hugetlb-again-out");
    }
  });
  const fs::path b = limited("huge");
  for (Runtime* runtime : {&corralThere, &crunThere}) {
    SCOPED_TRACE(runtime->name);
    const fs::path pidFile = runtime->work / "pid";
    Outcome created = runtime->run({"create", "--bundle", b.string(), "--pid-file", pidFile.string(), "h1"});
    ASSERT_EQ(created.exitCode, 0) << created.err;
    const std::string pid = readFile(pidFile);
    EXPECT_EQ(hostSide("cat " + group + "/hugetlb.2MB.limit_in_bytes"), "8388608\n");
    // runc writes the reservation limit too, where the kernel has one (5.7 and later).
    if (runtime == &corralThere &&
        hostSide("test -e /sys/fs/cgroup/hugetlb/hugetlb.2MB.rsvd.limit_in_bytes && echo yes") == "yes\n") {
      EXPECT_EQ(hostSide("cat " + group + "/hugetlb.2MB.rsvd.limit_in_bytes"), "8388608\n");
    }
    EXPECT_NE(hostSide("cat " + group + "/cgroup.procs").find(pid), std::string::npos) << "init joined it";
    ASSERT_EQ(runtime->run({"start", "h1"}).exitCode, 0);
    EXPECT_EQ(runtime->run({"delete", "--force", "h1"}).exitCode, 0);
    waitForProcess(std::stoi(pid));
    EXPECT_EQ(hostSide("test -d " + group + " && echo left || echo gone"), "gone\n");
  }
  release.run();
  EXPECT_EQ(v1HierarchyOf("hugetlb"), 0) << "the private hugetlb hierarchy outlived the test";
}

}  // namespace
}  // namespace corral
