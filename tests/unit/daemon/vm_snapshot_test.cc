// Warm snapshot keys and the clone's domain XML (daemon/vm_snapshot.h).
#include "daemon/vm_snapshot.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>
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
          .withNic = true,
          .nic = {},
          .imageDigest = {},
          .workloadDigest = {}};
}

// Every input that shapes the guest changes the key; the same inputs give the same key.
TEST(SnapshotKey, EachInputChangesIt) {
  const std::string base = snapshotKey(inputs());
  EXPECT_EQ(base.size(), 32u);
  EXPECT_EQ(base, snapshotKey(inputs()));
  std::vector<SnapshotInputs> changed(13, inputs());
  changed[0].kernelDigest = "sha256:" + std::string(64, 'c');
  changed[1].initrdDigest = "sha256:" + std::string(64, 'c');
  changed[2].machine = vmm::Machine::Pc;
  changed[3].accelerator = vmm::Accelerator::Kvm;
  changed[4].memoryBytes = 160ull << 20;
  changed[5].vcpus = 2;
  changed[6].kernelTuning = "";
  changed[7].withNic = false;
  changed[8].engine = vmm::Engine::Qemu;
  // A store image's: its manifest (a re-pulled image under the same name is another) and its workload.
  changed[9].imageDigest = "sha256:" + std::string(64, 'd');
  changed[9].workloadDigest = "sha256:" + std::string(64, 'e');
  changed[10] = changed[9];
  changed[10].workloadDigest = "sha256:" + std::string(64, 'f');
  // The NIC's device state: the OVN backend's (MTU 1400, offloads off), and either alone.
  changed[11].nic = {.mtu = 1400, .guestOffloads = false};
  changed[12].nic = {.mtu = 1400, .guestOffloads = true};
  std::set<std::string> keys = {base};
  for (const auto& other : changed) keys.insert(snapshotKey(other));
  EXPECT_EQ(keys.size(), 14u);
  SnapshotInputs offloadsOff = inputs();
  offloadsOff.nic.guestOffloads = false;
  EXPECT_FALSE(keys.contains(snapshotKey(offloadsOff)));
  // Without a NIC its profile does not matter.
  SnapshotInputs noNic = changed[7];
  noNic.nic = {.mtu = 1400, .guestOffloads = false};
  EXPECT_EQ(snapshotKey(noNic), snapshotKey(changed[7]));
  SnapshotInputs otherImage = changed[9];
  otherImage.imageDigest = "sha256:" + std::string(64, '0');
  EXPECT_NE(snapshotKey(otherImage), snapshotKey(changed[9]));
  // A built-in image's key is what it was before store images were in it: its snapshots stay valid.
  // Nor did the nftables backend's NIC profile (the default) change it.
  EXPECT_EQ(base, "116260d54e1fc04a70a5fb962eb46443")
      << "update only if the key's text form changed on purpose";
}

TEST(SnapshotKey, IsThirtyTwoLowercaseHexDigits) {
  EXPECT_TRUE(isSnapshotKey(snapshotKey(inputs())));
  EXPECT_FALSE(isSnapshotKey(""));
  EXPECT_FALSE(isSnapshotKey("0123456789ABCDEF0123456789abcdef"));
  EXPECT_FALSE(isSnapshotKey("0123456789abcdef0123456789abcdef.new"));
  EXPECT_FALSE(isSnapshotKey("../0123456789abcdef0123456789abc"));
}

// The digest is computed once per (path, size, mtime): a rewritten file is hashed again.
TEST(FileDigests, HashesAgainOnlyWhenTheFileChanged) {
  const std::filesystem::path file =
      std::filesystem::temp_directory_path() / ("corral-digests-" + std::to_string(::getpid()));
  auto write = [&](const std::string& text) {
    std::ofstream out(file, std::ios::trunc);
    out << text;
  };
  write("first");
  FileDigests digests;
  auto first = digests.of(file);
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(*first, "sha256:a7937b64b8caa58f03721bb6bacf5c78cb235febe0e70b1b84cd99541461a08e");
  write("second, longer");
  auto second = digests.of(file);
  ASSERT_TRUE(second);
  EXPECT_NE(*second, *first);
  EXPECT_EQ(*digests.of(file), *second);
  std::filesystem::remove(file);
  auto gone = digests.of(file);
  ASSERT_FALSE(gone);
  EXPECT_NE(gone.error().message().find("stat("), std::string::npos) << gone.error().message();
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
  SnapshotTemplate described = made;
  described.imageName = "app";
  described.imageDigest = "sha256:" + std::string(64, 'd');
  described.kernel = "/k/vmlinux";
  described.kernelDigest = "sha256:" + std::string(64, 'a');
  described.initrd = "/k/initramfs.img";
  described.initrdDigest = "sha256:" + std::string(64, 'b');
  described.machine = "microvm";
  described.memoryBytes = 128ull << 20;
  described.madeAtUnix = 1700000000;
  described.nic = {.mtu = 1400, .guestOffloads = false};
  auto facts = parseTemplateRecord(templateRecord(described));
  ASSERT_TRUE(facts) << facts.error().message();
  EXPECT_EQ(facts->imageName, "app");
  EXPECT_EQ(facts->imageDigest, described.imageDigest);
  EXPECT_EQ(facts->kernel, "/k/vmlinux");
  EXPECT_EQ(facts->kernelDigest, described.kernelDigest);
  EXPECT_EQ(facts->initrd, "/k/initramfs.img");
  EXPECT_EQ(facts->initrdDigest, described.initrdDigest);
  EXPECT_EQ(facts->machine, "microvm");
  EXPECT_EQ(facts->memoryBytes, 128ull << 20);
  EXPECT_EQ(facts->madeAtUnix, 1700000000);
  EXPECT_EQ(facts->nic, (net::NicProfile{.mtu = 1400, .guestOffloads = false}));
  // A record written before these facts still restores.
  auto old = parseTemplateRecord(R"({"domain":"d","instance":"i","directory":"/x","tap":""})");
  ASSERT_TRUE(old) << old.error().message();
  EXPECT_TRUE(old->imageDigest.empty());
  EXPECT_EQ(old->nic, net::NicProfile{});
  EXPECT_FALSE(parseTemplateRecord("{}"));
  EXPECT_FALSE(parseTemplateRecord("not json"));
  EXPECT_TRUE(snapshotTemplate("0123456789abcdef", "p-", "/d", false).tapName.empty());
}

// The saved XML becomes the clone's: name, metadata, paths and tap replaced, uuid dropped, MAC kept.
TEST(CloneDomainXml, ReplacesTheTemplatesNamesPathsAndTap) {
  SnapshotTemplate from = snapshotTemplate("0123", "corral-", "/v/.snapshots/k.new", true);
  from.domainName = "corral-.warm-0123";
  from.instanceName = ".warm-0123";
  from.tapName = "crlw0123";
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
