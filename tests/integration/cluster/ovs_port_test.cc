// An instance's NIC on OVN (net/ovs_port.h) on the simulated hosts of ovn_cluster.sh: corral adds an
// internal port of host 1's br-int through its own OVSDB client, with the iface-id of a logical switch
// port, and plugs it into a namespace of the instance's; ovn-controller binds it and the instance reaches
// host 2's workload over Geneve. Removed, the port leaves the bridge and the instance is cut off. A second
// port of the same name and a bridge that is not there are refused without changing the database.
#include "net/ovs_port.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "core/unique_fd.h"
#include "net/netns.h"
#include "net/ovsdb.h"
#include "tests/integration/cluster/ovn_cluster.h"

namespace corral::net {
namespace {

using namespace std::chrono_literals;
using ovsdb::Json;
using ovsdb::OvsdbClient;
using testing::OvnCluster;
using testing::TempDir;

const std::string kScript = CORRAL_SOURCE_DIR "/tests/integration/cluster/ovn_cluster.sh";

std::string testPrefix() {
  return "corral-t" + std::to_string(::getpid()) + "-";
}

// A namespace of the test's own (the instance's), deleted at the end.
class ScopedNetns {
 public:
  explicit ScopedNetns(std::string name) : name_(std::move(name)) {
    created_ = createNetns(name_).has_value();
  }
  ~ScopedNetns() {
    if (created_) (void)deleteNetns(name_);
  }
  bool created() const { return created_; }
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  bool created_ = false;
};

class OvsPortTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: network namespaces and OVS's userspace datapath";
    for (const char* tool : {"/usr/sbin/ovs-vswitchd", "/usr/bin/ovn-controller", "/usr/bin/ovn-northd"}) {
      if (!std::filesystem::exists(tool)) GTEST_SKIP() << tool << " is missing: scripts/install-deps";
    }
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
  }

  std::string hostDatabase(int host) const {
    return "unix:" + dir_.path() + "/h" + std::to_string(host) + "/conf.sock";
  }

  testing::ToolRun ping(const std::string& netns, const std::string& to, int count) {
    return testing::runTool(
        {"ip", "netns", "exec", netns, "busybox", "ping", "-c", std::to_string(count), "-W", "1", to});
  }

  TempDir dir_{"corral-t" + std::to_string(::getpid()) + "-ovsport"};
};

TEST_F(OvsPortTest, AnInstancesPortOnOneHostReachesAWorkloadOnAnotherAndIsGoneWhenRemoved) {
  OvnCluster cluster(kScript, dir_.path(), testPrefix());
  ASSERT_EQ(cluster.error(), "") << cluster.logs();
  auto nb = OvsdbClient::connect(cluster.northbound());
  ASSERT_TRUE(nb) << nb.error().message();
  // The logical switch: host 2's workload (w2) and the instance's port.
  auto created = nb->transact(
      "OVN_Northbound",
      {ovsdb::insertOp("Logical_Switch_Port",
                       {{"name", "w2"}, {"addresses", ovsdb::set({"0a:00:00:00:00:02 10.0.0.2"})}}, "w2"),
       ovsdb::insertOp("Logical_Switch_Port",
                       {{"name", "web-1.eth0"},
                        {"addresses", ovsdb::set({"02:c0:00:00:00:0b 10.0.0.11"})},
                        {"port_security", ovsdb::set({"02:c0:00:00:00:0b 10.0.0.11"})}},
                       "p"),
       ovsdb::insertOp(
           "Logical_Switch",
           {{"name", "ls0"}, {"ports", ovsdb::set({ovsdb::namedUuid("w2"), ovsdb::namedUuid("p")})}})});
  ASSERT_TRUE(created) << created.error().message();

  auto host1 = OvsdbClient::connect(hostDatabase(1));
  ASSERT_TRUE(host1) << host1.error().message();
  const OvsPort port{.bridge = "br-int",
                     .name = "crlo0b",
                     .ifaceId = "web-1.eth0",
                     .externalIds = {{"corral-instance", "web-1"}}};
  auto added = addOvsPort(*host1, port);
  ASSERT_TRUE(added) << added.error().message() << "\n" << cluster.logs();

  ScopedNetns instance(testPrefix() + "ovsport-i");
  ASSERT_TRUE(instance.created());
  auto instanceFd = openNetns(instance.name());
  ASSERT_TRUE(instanceFd) << instanceFd.error().message();
  auto plugged = plugOvsPort(port.name, {.hostNetns = cluster.hostNetns(1),
                                         .targetNetnsFd = instanceFd->get(),
                                         .label = "instance web-1",
                                         .ifname = "eth0",
                                         .mac = "02:c0:00:00:00:0b",
                                         .mtu = 1400,
                                         .addressWithPrefix = "10.0.0.11/24",
                                         .gateway = std::nullopt});
  ASSERT_TRUE(plugged) << plugged.error().message();
  testing::ToolRun shown = testing::runTool({"ip", "-n", instance.name(), "-o", "link", "show", "eth0"});
  EXPECT_NE(shown.output.find("mtu 1400"), std::string::npos) << shown.output;
  EXPECT_NE(shown.output.find("02:c0:00:00:00:0b"), std::string::npos) << shown.output;

  auto ports = listOvsPorts(*host1, "br-int");
  ASSERT_TRUE(ports) << ports.error().message();
  auto mine =
      std::find_if(ports->begin(), ports->end(), [&](const OvsPortState& p) { return p.name == port.name; });
  ASSERT_NE(mine, ports->end());
  EXPECT_EQ(mine->ifaceId, "web-1.eth0");
  EXPECT_EQ(mine->externalIds.at("corral-instance"), "web-1");
  EXPECT_GT(mine->ofport.value_or(0), 0);

  // ovn-controller binds it (northd marks the logical port up) and the instance reaches host 2 across.
  ASSERT_TRUE(testing::pollUntil([&] { return ping(instance.name(), "10.0.0.2", 1).exitCode == 0; }, 30s))
      << cluster.logs();
  testing::ToolRun across = ping(instance.name(), "10.0.0.2", 3);
  EXPECT_NE(across.output.find("3 packets received"), std::string::npos) << across.output;
  testing::ToolRun back = testing::runTool({"ip", "netns", "exec", cluster.workloadNetns(2), "busybox",
                                            "ping", "-c", "2", "-W", "1", "10.0.0.11"});
  EXPECT_EQ(back.exitCode, 0) << back.output;

  // The same name again, a bridge that is not there: refused, the database as it was.
  auto twice = addOvsPort(*host1, port);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error().kind(), ErrorKind::Conflict) << twice.error().message();
  auto elsewhere =
      addOvsPort(*host1, {.bridge = "br-nope", .name = "crlo0c", .ifaceId = "x", .externalIds = {}});
  ASSERT_FALSE(elsewhere);
  EXPECT_EQ(elsewhere.error().kind(), ErrorKind::NotFound) << elsewhere.error().message();
  auto portsAfter = listOvsPorts(*host1, "br-int");
  ASSERT_TRUE(portsAfter) << portsAfter.error().message();
  EXPECT_EQ(*portsAfter, *ports) << "the refusals changed nothing";

  // Removed: off the bridge (its Interface too), and the instance is cut off.
  auto removed = removeOvsPort(*host1, "br-int", port.name);
  ASSERT_TRUE(removed) << removed.error().message();
  auto portsGone = listOvsPorts(*host1, "br-int");
  ASSERT_TRUE(portsGone) << portsGone.error().message();
  EXPECT_TRUE(std::none_of(portsGone->begin(), portsGone->end(),
                           [&](const OvsPortState& p) { return p.name == port.name; }));
  testing::ToolRun cut = ping(instance.name(), "10.0.0.2", 2);
  EXPECT_NE(cut.exitCode, 0) << cut.output;
  EXPECT_TRUE(removeOvsPort(*host1, "br-int", port.name)) << "removing it again is not an error";

  testing::ToolRun down = cluster.stop();
  EXPECT_EQ(down.exitCode, 0) << down.output;
}

}  // namespace
}  // namespace corral::net
