// The transaction that puts an instance's NIC on br-int (net/ovs_port.h), and the input it refuses.
#include "net/ovs_port.h"

#include <gtest/gtest.h>

namespace corral::net {
namespace {

using ovsdb::Json;

TEST(OvsPort, AVmsTapIsASystemPort) {
  // ovs-vswitchd opens a link that is there (QEMU's tap) rather than making one.
  auto ops = addOvsPortOperations({.bridge = "br-int",
                                   .name = "crlt1a2b3c4d",
                                   .type = "",
                                   .ifaceId = "corral.nic.vm-1",
                                   .externalIds = {}});
  ASSERT_TRUE(ops) << ops.error().message();
  EXPECT_EQ((*ops)[2]["table"], "Interface");
  EXPECT_EQ((*ops)[2]["row"]["type"], "");
  EXPECT_EQ((*ops)[2]["row"]["external_ids"], Json::parse(R"(["map", [["iface-id", "corral.nic.vm-1"]]])"));
}

TEST(OvsPort, AddIsOneTransactionThatWaitsForTheBridgeAndAFreeName) {
  auto ops = addOvsPortOperations({.bridge = "br-int",
                                   .name = "crlo1a2b3c4d",
                                   .ifaceId = "web-1.eth0",
                                   .externalIds = {{"corral-instance", "web-1"}}});
  ASSERT_TRUE(ops) << ops.error().message();
  ASSERT_EQ(ops->size(), 5u);
  const Json& bridgeThere = (*ops)[0];
  EXPECT_EQ(bridgeThere["op"], "wait");
  EXPECT_EQ(bridgeThere["table"], "Bridge");
  EXPECT_EQ(bridgeThere["until"], "==");
  EXPECT_EQ(bridgeThere["rows"], Json::parse(R"([{"name": "br-int"}])"));
  const Json& nameFree = (*ops)[1];
  EXPECT_EQ(nameFree["table"], "Port");
  EXPECT_EQ(nameFree["where"], Json::parse(R"([["name", "==", "crlo1a2b3c4d"]])"));
  EXPECT_EQ(nameFree["rows"], Json::array()) << "no port of that name";

  const Json& iface = (*ops)[2];
  EXPECT_EQ(iface["op"], "insert");
  EXPECT_EQ(iface["table"], "Interface");
  EXPECT_EQ(iface["row"]["type"], "internal");
  EXPECT_EQ(iface["row"]["external_ids"],
            Json::parse(R"(["map", [["corral-instance", "web-1"], ["iface-id", "web-1.eth0"]]])"));
  const Json& port = (*ops)[3];
  EXPECT_EQ(port["table"], "Port");
  EXPECT_EQ(port["row"]["interfaces"],
            Json::parse(R"(["named-uuid", ")" + iface["uuid-name"].get<std::string>() + "\"]"));
  const Json& bridge = (*ops)[4];
  EXPECT_EQ(bridge["op"], "mutate");
  EXPECT_EQ(bridge["mutations"][0], Json::parse(R"(["ports", "insert", ["set", [["named-uuid", ")" +
                                                port["uuid-name"].get<std::string>() + "\"]]]]"));
}

TEST(OvsPort, RefusesANameLinuxCannotTakeAndAPortWithoutALogicalPort) {
  struct Case {
    OvsPort port;
    std::string field;
  };
  for (const Case& c : std::vector<Case>{
           {{.bridge = "br-int", .name = "", .ifaceId = "p", .externalIds = {}}, "name"},
           {{.bridge = "br-int", .name = "a-name-of-16-chr", .ifaceId = "p", .externalIds = {}}, "name"},
           {{.bridge = "br-int", .name = "a/b", .ifaceId = "p", .externalIds = {}}, "name"},
           {{.bridge = "br-int", .name = "a b", .ifaceId = "p", .externalIds = {}}, "name"},
           {{.bridge = "br-int", .name = "crlo1", .ifaceId = "", .externalIds = {}}, "iface_id"},
           {{.bridge = "", .name = "crlo1", .ifaceId = "p", .externalIds = {}}, "bridge"},
       }) {
    auto ops = addOvsPortOperations(c.port);
    ASSERT_FALSE(ops) << "name \"" << c.port.name << "\" iface-id \"" << c.port.ifaceId << "\"";
    EXPECT_EQ(ops.error().kind(), ErrorKind::InvalidArgument);
    EXPECT_EQ(ops.error().field(), c.field) << ops.error().message();
  }
  EXPECT_TRUE(addOvsPortOperations(
      {.bridge = "br-int", .name = "a-name-of-15-ch", .ifaceId = "p", .externalIds = {}}));
}

}  // namespace
}  // namespace corral::net
