// Warm snapshot keys and the clone's domain XML (daemon/vm_snapshot.h).
#include "daemon/vm_snapshot.h"

#include <gtest/gtest.h>

#include <set>

namespace corral::daemon {
namespace {

SnapshotInputs inputs() {
  return {.kernelDigest = "sha256:" + std::string(64, 'a'),
          .initrdDigest = "sha256:" + std::string(64, 'b'),
          .machine = vmm::Machine::Microvm,
          .accelerator = vmm::Accelerator::Tcg,
          .memoryBytes = 128ull << 20,
          .vcpus = 1,
          .kernelTuning = " tsc=reliable",
          .withNic = true};
}

// Every input that shapes the guest changes the key; the same inputs give the same key.
TEST(SnapshotKey, EachInputChangesIt) {
  const std::string base = snapshotKey(inputs());
  EXPECT_EQ(base.size(), 32u);
  EXPECT_EQ(base, snapshotKey(inputs()));
  std::vector<SnapshotInputs> changed(9, inputs());
  changed[0].kernelDigest = "sha256:" + std::string(64, 'c');
  changed[1].initrdDigest = "sha256:" + std::string(64, 'c');
  changed[2].machine = vmm::Machine::Pc;
  changed[3].accelerator = vmm::Accelerator::Kvm;
  changed[4].memoryBytes = 160ull << 20;
  changed[5].vcpus = 2;
  changed[6].kernelTuning = "";
  changed[7].withNic = false;
  changed[8].engine = vmm::Engine::Qemu;
  std::set<std::string> keys = {base};
  for (const auto& other : changed) keys.insert(snapshotKey(other));
  EXPECT_EQ(keys.size(), 10u);
}

TEST(SnapshotTemplate, RecordRoundTripsAndNamesFit) {
  const SnapshotTemplate made =
      snapshotTemplate("0123456789abcdef0123456789abcdef", "corral-", "/v/.snapshots/k.new",
                       /*withNic=*/true);
  EXPECT_EQ(made.instanceName, ".warm-0123456789abcdef0123456789abcdef" + std::string(26, '.'));
  EXPECT_EQ(made.instanceName.size(), kTemplateNameBytes);
  EXPECT_EQ(made.domainName, "corral-" + made.instanceName);
  EXPECT_EQ(made.tapName, "crlw01234567");
  EXPECT_LE(made.tapName.size(), 15u);
  auto back = parseTemplateRecord(templateRecord(made));
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->domainName, made.domainName);
  EXPECT_EQ(back->instanceName, made.instanceName);
  EXPECT_EQ(back->directory, made.directory);
  EXPECT_EQ(back->tapName, made.tapName);
  EXPECT_FALSE(parseTemplateRecord("{}"));
  EXPECT_FALSE(parseTemplateRecord("not json"));
  EXPECT_TRUE(snapshotTemplate("0123456789abcdef", "p-", "/d", false).tapName.empty());
}

// The saved XML becomes the clone's: name, metadata, paths and tap replaced, uuid dropped, MAC kept.
TEST(CloneDomainXml, ReplacesTheTemplatesNamesPathsAndTap) {
  const SnapshotTemplate from{"corral-.warm-0123", ".warm-0123", "/v/.snapshots/k.new", "crlw0123"};
  const std::string saved =
      "<domain type='qemu'>\n  <name>corral-.warm-0123</name>\n  "
      "<uuid>d08e5570-b68e-4406-a090-dee261dc67d8</uuid>\n"
      "  <metadata>\n    <corral:instance xmlns:corral=\"x\" name=\".warm-0123\" owner=\"/v\"/>\n  "
      "</metadata>\n"
      "  <serial type='file'><source path='/v/.snapshots/k.new/console.log' append='off'/></serial>\n"
      "  <channel type='unix'><source mode='bind' path='/v/.snapshots/k.new/agent.sock'/></channel>\n"
      "  <interface type='ethernet'><mac address='52:54:00:01:23:45'/><target dev='crlw0123' managed='yes'/>"
      "</interface>\n</domain>\n";
  const std::string uuid = randomUuid();
  ASSERT_EQ(uuid.size(), 36u);
  EXPECT_NE(uuid, randomUuid());
  const std::string clone = cloneDomainXml(saved, from, "corral-web-2", "web-2", "/v/web-2", "crlt42", uuid);
  EXPECT_NE(clone.find("<uuid>" + uuid + "</uuid>"), std::string::npos) << clone;
  EXPECT_NE(clone.find("<name>corral-web-2</name>"), std::string::npos) << clone;
  EXPECT_NE(clone.find("name=\"web-2\""), std::string::npos) << clone;
  EXPECT_NE(clone.find("path='/v/web-2/console.log'"), std::string::npos) << clone;
  EXPECT_NE(clone.find("path='/v/web-2/agent.sock'"), std::string::npos) << clone;
  EXPECT_NE(clone.find("dev='crlt42'"), std::string::npos) << clone;
  EXPECT_NE(clone.find("52:54:00:01:23:45"), std::string::npos) << clone;
  EXPECT_NE(clone.find("owner=\"/v\""), std::string::npos) << clone;
  EXPECT_EQ(clone.find("warm"), std::string::npos) << clone;
  EXPECT_EQ(clone.find(".snapshots"), std::string::npos) << clone;
}

}  // namespace
}  // namespace corral::daemon
