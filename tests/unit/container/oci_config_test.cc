// config.json → ContainerConfig (container/oci_config.h): each field read into what the runtime takes, and
// each unsupported or bad one refused by its JSON pointer.
#include "container/oci_config.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include <filesystem>
#include <nlohmann/json.hpp>

namespace corral::container {
namespace {

using nlohmann::json;

json baseConfig() {
  return json::parse(defaultOciSpec());
}

Result<OciBundleConfig> parse(const json& config) {
  return parseOciConfig(config.dump(), OciParseContext{"/bundles/b1", "c1"});
}

// The field the config is refused for; "" when it is accepted.
std::string refusedField(const json& config) {
  auto parsed = parse(config);
  return parsed ? std::string() : parsed.error().field();
}

TEST(OciConfig, DefaultSpecReadsIntoTheRuntimeConfig) {
  auto parsed = parse(baseConfig());
  ASSERT_TRUE(parsed) << parsed.error().message();
  const ContainerConfig& config = parsed->container;
  ASSERT_TRUE(config.bundle);
  const BundleSetup& setup = *config.bundle;
  EXPECT_EQ(parsed->ociVersion, "1.0.2");
  EXPECT_TRUE(parsed->terminal);
  EXPECT_EQ(config.argv, std::vector<std::string>{"sh"});
  EXPECT_EQ(config.hostname, "corral");
  EXPECT_EQ(config.name, "c1");
  EXPECT_EQ(config.cgroupOptions.parent, "corral-runtime");
  EXPECT_EQ(setup.root.rootfs, "/bundles/b1/rootfs");
  EXPECT_TRUE(setup.root.readonly);
  EXPECT_EQ(setup.cloneFlags, CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS);
  EXPECT_TRUE(setup.cgroupNamespace);
  EXPECT_TRUE(setup.setHostname);
  EXPECT_TRUE(setup.noNewPrivileges);
  EXPECT_EQ(setup.capabilities.bounding,
            (std::vector<std::string>{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}));
  EXPECT_TRUE(setup.capabilities.inheritable.empty());
  ASSERT_EQ(setup.rlimits.size(), 1u);
  EXPECT_EQ(setup.rlimits[0].resource, RLIMIT_NOFILE);
  EXPECT_EQ(setup.rlimits[0].soft, 1024u);
  ASSERT_EQ(setup.root.mounts.size(), 7u);
  const BundleMount& pts = setup.root.mounts[2];
  EXPECT_EQ(pts.destination, "/dev/pts");
  EXPECT_EQ(pts.fstype, "devpts");
  EXPECT_EQ(pts.flags, static_cast<unsigned long>(MS_NOSUID | MS_NOEXEC));
  EXPECT_EQ(pts.data, "newinstance,ptmxmode=0666,mode=0620,gid=5");
  EXPECT_EQ(setup.root.mounts[6].fstype, "cgroup");
  EXPECT_EQ(setup.root.maskedPaths.front(), "/proc/acpi");
  // Deny all, then runc's default list.
  EXPECT_EQ(setup.deviceRules, defaultDeviceRules());
  EXPECT_TRUE(parsed->ignored.empty());
  EXPECT_TRUE(config.seccomp.unconfined());
}

TEST(OciConfig, MountOptionsBecomeFlagsPropagationAndData) {
  json config = baseConfig();
  config["mounts"] = json::array({{{"destination", "/data"},
                                   {"type", "bind"},
                                   {"source", "shared/data"},
                                   {"options", {"rbind", "ro", "nosuid", "rslave"}}},
                                  {{"destination", "/tmp"},
                                   {"type", "tmpfs"},
                                   {"source", "tmpfs"},
                                   {"options", {"nodev", "size=1m", "mode=1777", "rw"}}}});
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const auto& mounts = parsed->container.bundle->root.mounts;
  EXPECT_EQ(mounts[0].source, "/bundles/b1/shared/data");  // relative to the bundle
  EXPECT_EQ(mounts[0].fstype, "");
  EXPECT_EQ(mounts[0].flags, static_cast<unsigned long>(MS_BIND | MS_REC | MS_RDONLY | MS_NOSUID));
  EXPECT_EQ(mounts[0].propagation, static_cast<unsigned long>(MS_SLAVE | MS_REC));
  EXPECT_EQ(mounts[1].flags, static_cast<unsigned long>(MS_NODEV));
  EXPECT_EQ(mounts[1].data, "size=1m,mode=1777");
}

TEST(OciConfig, ResourcesAndCgroupsPath) {
  json config = baseConfig();
  config["linux"]["cgroupsPath"] = "/default/web";
  config["linux"]["resources"]["memory"] = {{"limit", 64 << 20}, {"swap", 64 << 20}};
  config["linux"]["resources"]["cpu"] = {{"quota", 50000}, {"period", 100000}, {"shares", 512}};
  config["linux"]["resources"]["pids"] = {{"limit", 100}};
  config["linux"]["resources"]["devices"].push_back(
      {{"allow", true}, {"type", "c"}, {"major", 10}, {"minor", 200}, {"access", "rwm"}});
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const ContainerConfig& result = parsed->container;
  EXPECT_EQ(result.name, "web");
  EXPECT_EQ(result.cgroupOptions.parent, "default");
  EXPECT_EQ(result.limits.memoryBytes, uint64_t{64} << 20);
  EXPECT_EQ(result.limits.cpuMillis, 500u);
  EXPECT_EQ(result.limits.cpuShares, 512u);
  EXPECT_EQ(result.limits.pids, 100u);
  const auto& rules = result.bundle->deviceRules;
  EXPECT_EQ(rules.front(), (DeviceRule{DeviceType::Char, 10, 200, kDeviceAllAccess}));
  EXPECT_EQ(rules.size(), defaultDeviceRules().size() + 1);
}

TEST(OciConfig, NamespacesJoinedByPathAndSysctls) {
  json config = baseConfig();
  config["linux"]["namespaces"] = json::array({{{"type", "mount"}},
                                               {{"type", "pid"}},
                                               {{"type", "network"}, {"path", "/run/netns/x"}},
                                               {{"type", "ipc"}}});
  config.erase("hostname");
  config["linux"]["sysctl"] = {{"net.ipv4.ip_forward", "1"}, {"kernel.shmmax", "1000000"}};
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const BundleSetup& setup = *parsed->container.bundle;
  EXPECT_EQ(setup.cloneFlags, CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC);
  EXPECT_EQ(setup.joins, (std::vector<NamespacePath>{{CLONE_NEWNET, "/run/netns/x"}}));
  EXPECT_FALSE(setup.setHostname);
  EXPECT_EQ(setup.pidNamespacePath, "");
  ASSERT_EQ(setup.sysctls.size(), 2u);
  EXPECT_EQ(setup.sysctls[0].procPath, "/proc/sys/kernel/shmmax");
  EXPECT_EQ(setup.sysctls[1].procPath, "/proc/sys/net/ipv4/ip_forward");
}

TEST(OciConfig, HooksAnnotationsAndIgnoredProperties) {
  json config = baseConfig();
  config["hooks"] = {{"prestart", {{{"path", "/bin/true"}, {"args", {"true", "x"}}, {"timeout", 5}}}},
                     {"poststop", {{{"path", "/bin/false"}}}}};
  config["annotations"] = {{"org.example.key", "value"}};
  config["linux"]["someFutureField"] = 1;
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_EQ(parsed->hooks.prestart.size(), 1u);
  EXPECT_EQ(parsed->hooks.prestart[0].args, (std::vector<std::string>{"true", "x"}));
  EXPECT_EQ(parsed->hooks.prestart[0].timeoutSeconds, 5);
  EXPECT_EQ(parsed->hooks.poststop[0].path, "/bin/false");
  EXPECT_EQ(parsed->annotations.at("org.example.key"), "value");
  EXPECT_EQ(parsed->ignored, std::vector<std::string>{"/linux/someFutureField"});
}

TEST(OciConfig, SeccompWithArgumentsAndDefaultErrnoRet) {
  json config = baseConfig();
  config["linux"]["seccomp"] = {{"defaultAction", "SCMP_ACT_ERRNO"},
                                {"defaultErrnoRet", 38},
                                {"syscalls",
                                 {{{"names", {"personality"}},
                                   {"action", "SCMP_ACT_ALLOW"},
                                   {"args", {{{"index", 0}, {"value", 0}, {"op", "SCMP_CMP_EQ"}}}}}}}};
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const SeccompProfile& profile = parsed->container.seccomp;
  EXPECT_EQ(profile.defaultAction, SeccompAction::Errno);
  EXPECT_EQ(profile.defaultErrno, 38);
  ASSERT_EQ(profile.rules.size(), 1u);
  ASSERT_EQ(profile.rules[0].args.size(), 1u);
}

// A pid namespace by path is the parent's to enter around the clone; a mount namespace by path the child's,
// and it stands for the mount namespace the container needs.
TEST(OciConfig, PidAndMountNamespacesJoinedByPath) {
  json config = baseConfig();
  config["linux"]["namespaces"] = json::array(
      {{{"type", "mount"}, {"path", "/proc/7/ns/mnt"}}, {{"type", "pid"}, {"path", "/proc/7/ns/pid"}}});
  config.erase("hostname");
  config["linux"].erase("sysctl");
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const BundleSetup& setup = *parsed->container.bundle;
  EXPECT_EQ(setup.cloneFlags, 0);
  EXPECT_EQ(setup.pidNamespacePath, "/proc/7/ns/pid");
  EXPECT_EQ(setup.joins, (std::vector<NamespacePath>{{CLONE_NEWNS, "/proc/7/ns/mnt"}}));
}

// One range from container id 0, the same for uid and gid (corrald's shape); the device nodes then bind
// the host's node at the same path.
TEST(OciConfig, UserNamespaceWithOneIdRange) {
  json config = baseConfig();
  config["linux"]["namespaces"].push_back({{"type", "user"}});
  const json range = json::array({{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}});
  config["linux"]["uidMappings"] = range;
  config["linux"]["gidMappings"] = range;
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  ASSERT_TRUE(parsed->container.userNamespace);
  EXPECT_EQ(*parsed->container.userNamespace, IdMapping::oneRange(100000, 65536));
  EXPECT_TRUE(parsed->container.bundle->cloneFlags & CLONE_NEWUSER);
  EXPECT_TRUE(parsed->container.bundle->userNamespacePath.empty());
}

// Several ranges, uids and gids each their own, as runc and crun write them.
TEST(OciConfig, UserNamespaceWithSeveralIndependentRanges) {
  json config = baseConfig();
  config["linux"]["namespaces"].push_back({{"type", "user"}});
  config["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 1000}},
                                    {{"containerID", 1000}, {"hostID", 300000}, {"size", 64536}}};
  config["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", 200000}, {"size", 65536}}};
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const IdMapping& map = *parsed->container.userNamespace;
  EXPECT_EQ(map.uids, (std::vector<IdMapRange>{{0, 100000, 1000}, {1000, 300000, 64536}}));
  EXPECT_EQ(map.gids, (std::vector<IdMapRange>{{0, 200000, 65536}}));
  EXPECT_EQ(map.hostUid(0), 100000u);
  EXPECT_EQ(map.hostUid(999), 100999u);
  EXPECT_EQ(map.hostUid(1000), 300000u);
  EXPECT_EQ(map.hostUid(65535), 364535u);
  EXPECT_EQ(map.hostUid(65536), std::nullopt);
  EXPECT_EQ(map.hostGid(1000), 201000u);
  auto root = map.hostRoot();
  ASSERT_TRUE(root);
  EXPECT_EQ(root->uid, 100000u);
  EXPECT_EQ(root->gid, 200000u);
  EXPECT_EQ(idMapText(map.uids), "0 100000 1000\n1000 300000 64536\n");

  // The kernel's limit: 340 ranges are taken, 341 are not.
  json many = config;
  many["linux"]["uidMappings"] = json::array();
  for (int i = 0; i < 340; ++i)
    many["linux"]["uidMappings"].push_back(
        {{"containerID", i * 10}, {"hostID", 100000 + i * 10}, {"size", 10}});
  auto manyParsed = parse(many);
  ASSERT_TRUE(manyParsed) << manyParsed.error().message();
  EXPECT_EQ(manyParsed->container.userNamespace->uids.size(), 340u);
  many["linux"]["uidMappings"].push_back({{"containerID", 3400}, {"hostID", 103400}, {"size", 10}});
  EXPECT_EQ(refusedField(many), "/linux/uidMappings");
}

// Each refusal names its pointer: what the kernel would refuse in a map, and what a user namespace needs.
TEST(OciConfig, BadIdMappingsAreRefusedByPointer) {
  json config = baseConfig();
  config["linux"]["namespaces"].push_back({{"type", "user"}});
  config["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 100000}, {"size", 1000}},
                                    {{"containerID", 1000}, {"hostID", 300000}, {"size", 64536}}};
  config["linux"]["gidMappings"] = {{{"containerID", 0}, {"hostID", 200000}, {"size", 65536}}};
  ASSERT_EQ(refusedField(config), "");
  auto refused = [&](auto change) {
    json changed = config;
    change(changed);
    return refusedField(changed);
  };
  EXPECT_EQ(refused([](json& c) { c["linux"].erase("uidMappings"); }), "/linux/uidMappings");
  EXPECT_EQ(refused([](json& c) { c["linux"].erase("gidMappings"); }), "/linux/gidMappings");
  EXPECT_EQ(refused([](json& c) { c["linux"]["uidMappings"] = json::array(); }), "/linux/uidMappings");
  EXPECT_EQ(refused([](json& c) { c["linux"]["uidMappings"][1]["size"] = 0; }), "/linux/uidMappings/1/size");
  // Overlap inside (container ids 500.. against 0..999) and outside (host ids against range 0's).
  EXPECT_EQ(refused([](json& c) { c["linux"]["uidMappings"][1]["containerID"] = 500; }),
            "/linux/uidMappings/1/containerID");
  EXPECT_EQ(refused([](json& c) { c["linux"]["uidMappings"][1]["hostID"] = 100999; }),
            "/linux/uidMappings/1/hostID");
  EXPECT_EQ(refused([](json& c) { c["linux"]["gidMappings"].push_back(c["linux"]["gidMappings"][0]); }),
            "/linux/gidMappings/1/containerID");
  // Past the last id (4294967294): overflow of the container side and of the host side.
  EXPECT_EQ(refused([](json& c) { c["linux"]["uidMappings"][1]["containerID"] = 4294967295u - 10; }),
            "/linux/uidMappings/1/containerID");
  EXPECT_EQ(refused([](json& c) { c["linux"]["gidMappings"][0]["hostID"] = 4294967295u - 100; }),
            "/linux/gidMappings/0/hostID");
  EXPECT_EQ(refused([](json& c) { c["linux"]["uidMappings"][0]["hostID"] = 4294967296ll; }),
            "/linux/uidMappings/0/hostID");
  EXPECT_EQ(refused([](json& c) { c["linux"]["uidMappings"][0].erase("size"); }),
            "/linux/uidMappings/0/size");
  // The process becomes the namespace's root first: uid 0 and gid 0 must be mapped.
  EXPECT_EQ(refused([](json& c) { c["linux"]["uidMappings"].erase(0); }), "/linux/uidMappings");
  EXPECT_EQ(refused([](json& c) { c["linux"]["gidMappings"][0]["containerID"] = 1; }), "/linux/gidMappings");
  // Mappings without a user namespace.
  EXPECT_EQ(refused([](json& c) { c["linux"]["namespaces"].erase(6); }), "/linux/uidMappings");
}

// A user namespace joined by path: no new one is made, its maps are the kernel's (read at create, by
// checkBundleOnHost), and mappings beside it are refused naming them.
TEST(OciConfig, UserNamespaceJoinedByPath) {
  json config = baseConfig();
  config["linux"]["namespaces"].push_back({{"type", "user"}, {"path", "/proc/42/ns/user"}});
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const ContainerConfig& container = parsed->container;
  EXPECT_EQ(container.bundle->userNamespacePath, "/proc/42/ns/user");
  EXPECT_FALSE(container.bundle->cloneFlags & CLONE_NEWUSER);
  for (const NamespacePath& join : container.bundle->joins)
    EXPECT_NE(join.type, CLONE_NEWUSER) << "joined first, by the intermediate: not among the joins after go";
  ASSERT_TRUE(container.userNamespace);
  EXPECT_TRUE(container.userNamespace->uids.empty());

  auto refused = [&](auto change) {
    json changed = config;
    change(changed);
    return refusedField(changed);
  };
  const json range = json::array({{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}});
  EXPECT_EQ(refused([&](json& c) { c["linux"]["uidMappings"] = range; }), "/linux/uidMappings");
  EXPECT_EQ(refused([&](json& c) { c["linux"]["gidMappings"] = range; }), "/linux/gidMappings");
  EXPECT_EQ(refused([](json& c) { c["linux"]["namespaces"][6]["path"] = "proc/42/ns/user"; }),
            "/linux/namespaces/6/path");
}

// The kernel's checks on a map, before it is written (corrald's maps go through them too, at start).
TEST(IdMapping, ProblemsAreFoundAsTheKernelFindsThem) {
  EXPECT_EQ(findIdMapProblem({{0, 100000, 65536}}), std::nullopt);
  EXPECT_EQ(findIdMapProblem({{0, 100000, 1}, {1, 100001, 1}}), std::nullopt) << "adjacent is fine";
  auto problem = [](std::vector<IdMapRange> ranges) {
    auto found = findIdMapProblem(ranges);
    return found ? std::to_string(found->index) + ":" + found->field : std::string("none");
  };
  EXPECT_EQ(problem({}), "0:");
  EXPECT_EQ(problem({{0, 100000, 0}}), "0:size");
  EXPECT_EQ(problem({{0, 100000, 10}, {5, 200000, 10}}), "1:containerID");
  EXPECT_EQ(problem({{0, 100000, 10}, {10, 100009, 10}}), "1:hostID");
  EXPECT_EQ(problem({{0, 4294967295u - 1, 1}}), "none") << "the last id, 4294967294";
  EXPECT_EQ(problem({{0, 4294967295u - 1, 2}}), "0:hostID");
  EXPECT_EQ(problem({{4294967295u, 1, 1}}), "0:containerID");
  std::vector<IdMapRange> many;
  for (uint32_t i = 0; i < 341; ++i) many.push_back({i, 100000 + i, 1});
  EXPECT_EQ(problem(many), "340:");
  many.pop_back();
  EXPECT_EQ(problem(many), "none");

  EXPECT_EQ(parseIdMapText("         0     100000       1000\n      1000     300000      64536\n"),
            (std::vector<IdMapRange>{{0, 100000, 1000}, {1000, 300000, 64536}}));
  EXPECT_FALSE(parseIdMapText("0 100000\n"));
  EXPECT_FALSE(IdMapping{}.hostRoot());
  EXPECT_FALSE((IdMapping{.uids = {{0, 5, 1}}, .gids = {{1, 5, 1}}}.hostRoot()));
}

// A new time namespace with its clocks' offsets, or one joined by path (offsets then refused, as by runc).
TEST(OciConfig, TimeNamespaceNewWithOffsetsOrJoinedByPath) {
  json config = baseConfig();
  config["linux"]["namespaces"].push_back({{"type", "time"}});
  config["linux"]["timeOffsets"] = {{"monotonic", {{"secs", 5000}, {"nanosecs", 7}}},
                                    {"boottime", {{"secs", -60}}}};
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  const BundleSetup& setup = *parsed->container.bundle;
  EXPECT_TRUE(setup.newTimeNamespace);
  EXPECT_TRUE(setup.timeNamespacePath.empty());
  EXPECT_EQ(setup.monotonicOffset, (ClockOffset{5000, 7}));
  EXPECT_EQ(setup.boottimeOffset, (ClockOffset{-60, 0}));
  EXPECT_EQ((setup.cloneFlags & CLONE_NEWTIME), 0) << "not a clone flag: unshared by the parent";
  EXPECT_EQ(timeOffsetsText(setup.monotonicOffset, setup.boottimeOffset),
            "monotonic 5000 7\nboottime -60 0\n");
  EXPECT_EQ(timeOffsetsText(std::nullopt, ClockOffset{1, 2}), "boottime 1 2\n");

  json joined = baseConfig();
  joined["linux"]["namespaces"].push_back({{"type", "time"}, {"path", "/proc/42/ns/time"}});
  parsed = parse(joined);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_FALSE(parsed->container.bundle->newTimeNamespace);
  EXPECT_EQ(parsed->container.bundle->timeNamespacePath, "/proc/42/ns/time");
  EXPECT_TRUE(parsed->container.bundle->joins.empty()) << "entered by the parent, not the child";

  auto refused = [](const json& base, auto change) {
    json changed = base;
    change(changed);
    auto result = parse(changed);
    return result ? std::string() : result.error().field();
  };
  EXPECT_EQ(refused(joined,
                    [](json& c) {
                      c["linux"]["timeOffsets"] = {{"monotonic", {{"secs", 1}}}};
                    }),
            "/linux/timeOffsets");
  EXPECT_EQ(refused(baseConfig(),
                    [](json& c) {
                      c["linux"]["timeOffsets"] = {{"boottime", {{"secs", 1}}}};
                    }),
            "/linux/timeOffsets");
  EXPECT_EQ(refused(baseConfig(), [](json& c) { c["linux"]["timeOffsets"] = json::object(); }), "")
      << "no offsets asked for";
  EXPECT_EQ(refused(config,
                    [](json& c) {
                      c["linux"]["timeOffsets"]["realtime"] = {{"secs", 1}};
                    }),
            "/linux/timeOffsets/realtime");
  EXPECT_EQ(refused(config, [](json& c) { c["linux"]["timeOffsets"]["monotonic"]["nanosecs"] = 1000000000; }),
            "/linux/timeOffsets/monotonic/nanosecs");
  EXPECT_EQ(refused(config, [](json& c) { c["linux"]["timeOffsets"]["monotonic"]["secs"] = "1"; }),
            "/linux/timeOffsets/monotonic/secs");
  EXPECT_EQ(refused(joined, [](json& c) { c["linux"]["namespaces"][6]["path"] = "proc/1/ns/time"; }),
            "/linux/namespaces/6/path");
}

TEST(OciConfig, RefusesWhatItDoesNotSupportByPointer) {
  auto with = [](auto change) {
    json config = baseConfig();
    change(config);
    return refusedField(config);
  };
  EXPECT_EQ(with([](json& c) {
              c["linux"]["namespaces"].push_back({{"type", "bogus"}});
            }),
            "/linux/namespaces/6/type");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["namespaces"].push_back({{"type", "pid"}});
            }),
            "/linux/namespaces/6/type");                                                     // twice
  EXPECT_EQ(with([](json& c) { c["linux"]["namespaces"].erase(4); }), "/linux/namespaces");  // no mount ns
  EXPECT_EQ(with([](json& c) { c["linux"]["namespaces"][1]["path"] = "relative"; }),
            "/linux/namespaces/1/path");
  EXPECT_EQ(with([](json& c) { c["process"]["cwd"] = "relative/dir"; }), "/process/cwd");
  EXPECT_EQ(with([](json& c) { c["process"].erase("args"); }), "/process/args");
  EXPECT_EQ(with([](json& c) { c["process"]["args"] = json::array(); }), "/process/args");
  EXPECT_EQ(with([](json& c) { c["process"]["env"] = {"NOEQUALS"}; }), "/process/env/0");
  EXPECT_EQ(with([](json& c) { c["process"]["apparmorProfile"] = "docker-default"; }),
            "/process/apparmorProfile");
  EXPECT_EQ(with([](json& c) { c["process"]["selinuxLabel"] = "x"; }), "/process/selinuxLabel");
  EXPECT_EQ(with([](json& c) { c["process"]["capabilities"]["bounding"].push_back("CAP_BOGUS"); }),
            "/process/capabilities/bounding/3");
  EXPECT_EQ(with([](json& c) { c["process"]["rlimits"][0]["type"] = "RLIMIT_BOGUS"; }),
            "/process/rlimits/0/type");
  EXPECT_EQ(with([](json& c) { c["process"]["rlimits"][0]["soft"] = 4096; }), "/process/rlimits/0/soft");
  EXPECT_EQ(with([](json& c) { c["process"]["oomScoreAdj"] = 2000; }), "/process/oomScoreAdj");
  EXPECT_EQ(with([](json& c) { c["process"]["user"]["uid"] = -1; }), "/process/user/uid");
  EXPECT_EQ(with([](json& c) { c["mounts"][0]["destination"] = "proc"; }), "/mounts/0/destination");
  EXPECT_EQ(with([](json& c) { c["mounts"][0]["options"] = {"idmap"}; }), "/mounts/0/options/0");
  EXPECT_EQ(with([](json& c) { c["mounts"][0].erase("type"); }), "/mounts/0/type");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["resources"]["blockIO"] = {{"weight", 10}};
            }),
            "/linux/resources/blockIO");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["resources"]["cpu"] = {{"cpus", "0-1"}};
            }),
            "/linux/resources/cpu/cpus");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["resources"]["cpu"] = {{"shares", 1}};
            }),
            "/linux/resources/cpu/shares");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["resources"]["memory"] = {{"limit", 1 << 26}, {"swap", 1 << 27}};
            }),
            "/linux/resources/memory/swap");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["resources"]["devices"].push_back({{"allow", true}, {"type", "a"}});
            }),
            "/linux/resources/devices/1");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["uidMappings"] = {{{"containerID", 0}, {"hostID", 1000}, {"size", 1}}};
            }),
            "/linux/uidMappings");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["sysctl"] = {{"kernel.panic", "1"}};
            }),
            "/linux/sysctl/kernel.panic");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["namespaces"].erase(1);  // no network namespace: a net sysctl would be the host's
              c["linux"]["sysctl"] = {{"net.ipv4.ip_forward", "1"}};
            }),
            "/linux/sysctl/net.ipv4.ip_forward");
  EXPECT_EQ(with([](json& c) { c["linux"]["cgroupsPath"] = "machine.slice:libpod:x"; }),
            "/linux/cgroupsPath");
  EXPECT_EQ(with([](json& c) { c["linux"]["cgroupsPath"] = "a/../b"; }), "/linux/cgroupsPath");
  EXPECT_EQ(with([](json& c) { c["linux"]["rootfsPropagation"] = "sideways"; }), "/linux/rootfsPropagation");
  EXPECT_EQ(with([](json& c) { c["linux"]["maskedPaths"] = {"proc/kcore"}; }), "/linux/maskedPaths/0");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["devices"] = {{{"path", "/dev/fifo"}, {"type", "p"}}};
            }),
            "/linux/devices/0/type");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["devices"] = {{{"path", "/etc/x"}, {"type", "c"}, {"major", 1}, {"minor", 3}}};
            }),
            "/linux/devices/0/path");
  EXPECT_EQ(with([](json& c) {
              c["hooks"] = {{"prestart", {{{"path", "/bin/true"}, {"timeout", 0}}}}};
            }),
            "/hooks/prestart/0/timeout");
  EXPECT_EQ(with([](json& c) {
              c["hooks"] = {{"poststart", {{{"path", "true"}}}}};
            }),
            "/hooks/poststart/0/path");
  EXPECT_EQ(with([](json& c) { c["ociVersion"] = "2.0.0"; }), "/ociVersion");
  EXPECT_EQ(with([](json& c) { c.erase("root"); }), "/root/path");
  EXPECT_EQ(with([](json& c) { c["windows"] = {{"layerFolders", {"x"}}}; }), "/windows");
  EXPECT_EQ(with([](json& c) {
              c["linux"]["seccomp"] = {{"defaultAction", "SCMP_ACT_BOGUS"}};
            }),
            "/linux/seccomp/defaultAction");
  EXPECT_EQ(with([](json& c) { c["root"]["readonly"] = "yes"; }), "/root/readonly");
}

TEST(OciConfig, MalformedJsonAndBadIds) {
  auto parsed = parseOciConfig("{not json", OciParseContext{"/b", "c1"});
  ASSERT_FALSE(parsed);
  EXPECT_NE(parsed.error().message().find("not JSON"), std::string::npos);
  EXPECT_TRUE(validateContainerId("ok-1_2.3"));
  EXPECT_EQ(validateContainerId("../x").error().field(), "id");
  EXPECT_FALSE(validateContainerId("").has_value());
  EXPECT_FALSE(validateContainerId(".hidden").has_value());
  EXPECT_FALSE(validateContainerId("a/b").has_value());
}

TEST(OciConfig, MissingRootfsIsRefusedOnTheHost) {
  char pattern[] = "/tmp/corral-oci-test-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::filesystem::path bundle = pattern;
  auto parsed = parseOciConfig(defaultOciSpec(), OciParseContext{bundle, "c1"});
  ASSERT_TRUE(parsed);
  auto checked = checkBundleOnHost(parsed->container);
  ASSERT_FALSE(checked);
  EXPECT_EQ(checked.error().field(), "/root/path");
  std::filesystem::create_directories(bundle / "rootfs");
  EXPECT_TRUE(checkBundleOnHost(parsed->container));
  std::filesystem::remove_all(bundle);
}

// linux.resources.hugepageLimits into the cgroup's limits; a size is checked against the host's on create.
TEST(OciConfig, HugepageLimitsBySizeCheckedAgainstTheHost) {
  json config = baseConfig();
  config["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "2MB"}, {"limit", 8 << 20}},
                                                    {{"pageSize", "1GB"}, {"limit", 0}}};
  auto parsed = parse(config);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->container.limits.hugepages, (std::vector<HugepageLimit>{{"2MB", 8 << 20}, {"1GB", 0}}));

  auto refused = [](auto change) {
    json changed = baseConfig();
    change(changed);
    return refusedField(changed);
  };
  EXPECT_EQ(refused([](json& c) {
              c["linux"]["resources"]["hugepageLimits"] = {{{"limit", 1}}};
            }),
            "/linux/resources/hugepageLimits/0/pageSize");
  EXPECT_EQ(refused([](json& c) {
              c["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "2MB"}}};
            }),
            "/linux/resources/hugepageLimits/0/limit");
  EXPECT_EQ(refused([](json& c) {
              c["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "2MB"}, {"limit", -1}}};
            }),
            "/linux/resources/hugepageLimits/0/limit");
  EXPECT_EQ(refused([](json& c) {
              c["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "2M"}, {"limit", 1}}};
            }),
            "/linux/resources/hugepageLimits/0/pageSize");
  EXPECT_EQ(refused([](json& c) {
              c["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "../x"}, {"limit", 1}}};
            }),
            "/linux/resources/hugepageLimits/0/pageSize");
  EXPECT_EQ(refused([](json& c) {
              c["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "2MB"}, {"limit", 1}},
                                                           {{"pageSize", "2MB"}, {"limit", 2}}};
            }),
            "/linux/resources/hugepageLimits/1/pageSize");

  // No host has 3 MB pages: refused by pointer, naming the sizes the host has.
  char pattern[] = "/tmp/corral-oci-test-XXXXXX";
  ASSERT_NE(::mkdtemp(pattern), nullptr);
  const std::filesystem::path bundle = pattern;
  std::filesystem::create_directories(bundle / "rootfs");
  json odd = baseConfig();
  odd["linux"]["resources"]["hugepageLimits"] = {{{"pageSize", "3MB"}, {"limit", 1}}};
  auto oddParsed = parseOciConfig(odd.dump(), OciParseContext{bundle, "c1"});
  ASSERT_TRUE(oddParsed) << oddParsed.error().message();
  auto checked = checkBundleOnHost(oddParsed->container);
  std::filesystem::remove_all(bundle);
  ASSERT_FALSE(checked);
  if (!std::filesystem::exists("/sys/kernel/mm/hugepages")) {  // a kernel without huge pages
    EXPECT_EQ(checked.error().field(), "/linux/resources/hugepageLimits");
    return;
  }
  EXPECT_EQ(checked.error().field(), "/linux/resources/hugepageLimits/0/pageSize");
  EXPECT_NE(checked.error().message().find("\"3MB\" is not a huge page size of this host"), std::string::npos)
      << checked.error().message();
}

TEST(OciConfig, ExecProcessReplacesTheContainersProcess) {
  auto parsed = parse(baseConfig());
  ASSERT_TRUE(parsed);
  json process = {{"terminal", false},
                  {"args", {"ls", "-l"}},
                  {"env", {"A=1"}},
                  {"cwd", "/tmp"},
                  {"user", {{"uid", 1000}, {"gid", 100}, {"umask", 18}}},
                  {"capabilities", {{"bounding", {"CAP_KILL"}}}}};
  auto exec = parseOciProcess(process.dump(), parsed->container);
  ASSERT_TRUE(exec) << exec.error().message();
  EXPECT_EQ(exec->config.argv, (std::vector<std::string>{"ls", "-l"}));
  EXPECT_EQ(exec->config.workingDir, "/tmp");
  EXPECT_EQ(exec->config.user.uid, 1000u);
  EXPECT_EQ(exec->config.bundle->umask, mode_t{022});
  EXPECT_EQ(exec->config.bundle->capabilities.bounding, std::vector<std::string>{"CAP_KILL"});
  EXPECT_TRUE(exec->config.bundle->capabilities.effective.empty());
  process["cwd"] = "tmp";
  auto refused = parseOciProcess(process.dump(), parsed->container);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().field(), "/process/cwd");
}

}  // namespace
}  // namespace corral::container
