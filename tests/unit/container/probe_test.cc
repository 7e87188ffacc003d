// Unit tests for corral-probe: its JSON escaping and /proc parsers, and its full report of the test process
// itself (valid JSON whose pid, ids and namespaces match what this process sees). No root needed.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#define CORRAL_PROBE_NO_MAIN
#include "images/probe/probe.cc"
#include "net/frames.h"

namespace corral::probe {
namespace {

std::string jsonQuoted(std::string_view text) {
  std::string out;
  appendJsonString(out, text);
  return out;
}

TEST(ProbeVirtio, TransportFromTheDevicesSysfsPath) {
  EXPECT_EQ(virtioTransport("/sys/devices/pci0000:00/0000:00:03.0/virtio0"), "pci");
  EXPECT_EQ(virtioTransport("/sys/devices/platform/virtio-mmio.2/virtio2"), "mmio");
  EXPECT_EQ(virtioTransport("/sys/devices/platform/virtio-mmio-cmdline/virtio-mmio.0/virtio0"), "mmio");
  EXPECT_EQ(virtioTransport("/sys/devices/virtual/misc/foo"), "other");
}

TEST(ProbeJson, EscapesQuotesBackslashesAndControlCharacters) {
  EXPECT_EQ(jsonQuoted("plain"), "\"plain\"");
  EXPECT_EQ(jsonQuoted("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(jsonQuoted("line\nnext\ttab\r"), "\"line\\nnext\\ttab\\r\"");
  EXPECT_EQ(jsonQuoted(std::string("nul\0x\x1f\x7f", 7)), "\"nul\\u0000x\\u001f\\u007f\"");
}

TEST(ProbeJson, KeepsValidUtf8AndReplacesInvalidBytes) {
  EXPECT_EQ(jsonQuoted("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x90\x84"),
            "\"h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x90\x84\"");
  EXPECT_EQ(jsonQuoted("bad\xff"), "\"bad\\ufffd\"");
  EXPECT_EQ(jsonQuoted("cut\xe2\x82"), "\"cut\\ufffd\\ufffd\"");
  EXPECT_EQ(jsonQuoted("overlong\xc0\xaf"), "\"overlong\\ufffd\\ufffd\"");
  EXPECT_EQ(jsonQuoted("surrogate\xed\xa0\x80"), "\"surrogate\\ufffd\\ufffd\\ufffd\"");
  // Whatever bytes come in, a JSON parser accepts the result and gets the valid text back.
  std::string all;
  for (int byte = 0; byte < 256; ++byte) all.push_back(static_cast<char>(byte));
  const auto parsed = nlohmann::json::parse(jsonQuoted(all));
  EXPECT_EQ(parsed.get<std::string>().substr(0, 128), all.substr(0, 128));
}

TEST(ProbeJson, WriterPlacesCommasAndNesting) {
  JsonWriter json;
  json.beginObject().key("a").value(1).key("b").beginArray().value("x").null().value(true).endArray();
  json.key("c").beginObject().endObject().key("d").beginArray().endArray().endObject();
  EXPECT_EQ(json.text(), R"({"a":1,"b":["x",null,true],"c":{},"d":[]})");
}

TEST(ProbeParsing, StatusFieldsAndCapabilities) {
  const std::string status =
      "Name:\tprobe\nCapInh:\t0000000000000000\nCapEff:\t00000000a80425fb\nSeccomp:\t2\n"
      "Seccomp_filters:\t1\nNoNewPrivs:\t1\n";
  EXPECT_EQ(statusField(status, "CapEff"), "00000000a80425fb");
  EXPECT_EQ(statusField(status, "Seccomp"), "2");
  EXPECT_EQ(statusField(status, "Seccomp_filters"), "1");
  EXPECT_EQ(statusField(status, "Cap"), std::nullopt);
  EXPECT_EQ(statusField(status, "Missing"), std::nullopt);

  // Docker's default set.
  const auto names = decodeCapabilities("00000000a80425fb");
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, (std::vector<std::string>{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID",
                                              "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
                                              "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT",
                                              "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP"}));
  EXPECT_EQ(decodeCapabilities("0000000000000000"), std::vector<std::string>{});
  EXPECT_EQ(decodeCapabilities("0000010000000000"), std::vector<std::string>{"CAP_CHECKPOINT_RESTORE"});
  EXPECT_EQ(decodeCapabilities("8000000000000000"), std::vector<std::string>{"CAP_63"});
  EXPECT_EQ(decodeCapabilities("xyz"), std::nullopt);
  EXPECT_EQ(decodeCapabilities(""), std::nullopt);
}

TEST(ProbeParsing, NamespaceLinks) {
  EXPECT_EQ(namespaceInode("net:[4026531840]"), 4026531840u);
  EXPECT_EQ(namespaceInode("pid_for_children:[4026532201]"), 4026532201u);
  EXPECT_EQ(namespaceInode("net:[]"), std::nullopt);
  EXPECT_EQ(namespaceInode("garbage"), std::nullopt);
  EXPECT_EQ(namespaceInode("net:[12a]"), std::nullopt);
}

TEST(ProbeParsing, MountinfoRootIsTheLastMountOnSlash) {
  const std::string mountinfo =
      "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
      "23 22 0:5 / /dev rw - devtmpfs udev rw\n"
      "24 22 0:40 / /with\\040space rw - tmpfs none\\040here rw\n"
      "malformed line without separator\n"
      "90 22 0:50 / / ro,relatime - overlay overlay rw,lowerdir=/img\n";
  const auto entries = parseMountinfo(mountinfo);
  ASSERT_EQ(entries.size(), 4u);
  EXPECT_EQ(entries[2].mountPoint, "/with space");
  EXPECT_EQ(entries[2].source, "none here");
  const auto root = rootMount(entries);
  ASSERT_TRUE(root);
  EXPECT_EQ(root->fsType, "overlay");
  EXPECT_EQ(root->source, "overlay");
  EXPECT_EQ(rootMount({}), std::nullopt);
}

TEST(ProbeParsing, NormalizedLinesCollapseBlanks) {
  EXPECT_EQ(normalizedLines("         0          0 4294967295\n\n  1000 100000  65536\n"),
            (std::vector<std::string>{"0 0 4294967295", "1000 100000 65536"}));
}

TEST(ProbeReport, DescribesThisProcess) {
  const auto report = nlohmann::json::parse(corral::probe::report());
  EXPECT_EQ(report["pid"], getpid());
  EXPECT_EQ(report["ppid"], getppid());
  EXPECT_EQ(report["uid"], getuid());
  EXPECT_EQ(report["gid"], getgid());
  EXPECT_GE(report["visiblePidCount"].get<int>(), 1);
  EXPECT_NE(std::find(report["visiblePids"].begin(), report["visiblePids"].end(), getpid()),
            report["visiblePids"].end());
  struct stat netNs {};
  ASSERT_EQ(stat("/proc/self/ns/net", &netNs), 0);
  EXPECT_EQ(report["namespaces"]["net"], netNs.st_ino);
  for (const char* ns : {"cgroup", "ipc", "mnt", "pid", "user", "uts"})
    EXPECT_TRUE(report["namespaces"][ns].is_number()) << ns;
  EXPECT_FALSE(report["uidMap"].empty());
  EXPECT_EQ(report["capabilities"]["CapEff"].get<std::string>().size(), 16u);
  EXPECT_TRUE(report["capabilities"]["effectiveNames"].is_array());
  EXPECT_TRUE(report["seccomp"].is_number());
  EXPECT_TRUE(report["noNewPrivs"].is_number());
  EXPECT_FALSE(report["cgroup"].empty());
  EXPECT_EQ(report["cpus"]["online"], sysconf(_SC_NPROCESSORS_ONLN));
  EXPECT_GT(report["memTotalKiB"].get<int64_t>(), 0);
  EXPECT_NE(std::find(report["interfaces"].begin(), report["interfaces"].end(), "lo"),
            report["interfaces"].end());
  EXPECT_GT(report["mounts"]["count"].get<int>(), 0);
  EXPECT_TRUE(report["mounts"]["root"]["fstype"].is_string());
  EXPECT_GT(report["uptimeSeconds"].get<double>(), 0.0);
  EXPECT_FALSE(report["kernel"]["release"].get<std::string>().empty());
}

// Runs corral::probe::run with the given arguments, capturing stdout and stderr.
struct ProbeRun {
  int status;
  std::string out, err;
};
ProbeRun runProbe(std::vector<std::string> args) {
  args.insert(args.begin(), "corral-probe");
  std::vector<char*> argv;
  for (auto& arg : args) argv.push_back(arg.data());
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  const int status = run(static_cast<int>(argv.size()), argv.data(), out, err);
  auto slurp = [](std::FILE* file) {
    std::string text;
    std::rewind(file);
    for (int c; (c = std::fgetc(file)) != EOF;) text.push_back(static_cast<char>(c));
    std::fclose(file);
    return text;
  };
  return {status, slurp(out), slurp(err)};
}

TEST(ProbeSyscall, GetpidSucceedsAndClone3NeverForks) {
  auto getpidRun = runProbe({"--syscall", "getpid"});
  ASSERT_EQ(getpidRun.status, 0) << getpidRun.err;
  const auto getpidReport = nlohmann::json::parse(getpidRun.out);
  EXPECT_EQ(getpidReport["syscall"], "getpid");
  EXPECT_EQ(getpidReport["result"], getpid());
  EXPECT_EQ(getpidReport["errno"], 0);
  EXPECT_EQ(getpidReport["error"], "");

  // A NULL clone_args is refused by the kernel (EINVAL) or by a filter (ENOSYS/EPERM), never run.
  const auto clone3Report = nlohmann::json::parse(runProbe({"--syscall", "clone3"}).out);
  EXPECT_EQ(clone3Report["result"], -1);
  EXPECT_TRUE(clone3Report["error"] == "EINVAL" || clone3Report["error"] == "ENOSYS" ||
              clone3Report["error"] == "EPERM")
      << clone3Report;
}

TEST(ProbeSyscall, ReportsEveryErrnoByName) {
  EXPECT_EQ(nlohmann::json::parse(syscallReport("mount", -1, EPERM))["error"], "EPERM");
  EXPECT_EQ(nlohmann::json::parse(syscallReport("clone3", -1, ENOSYS))["error"], "ENOSYS");
}

TEST(ProbeOpenDevice, OpensWithoutMknodAndNamesTheError) {
  auto null = runProbe({"--open-device", "/dev/null", "rw"});
  ASSERT_EQ(null.status, 0) << null.err;
  EXPECT_EQ(nlohmann::json::parse(null.out),
            (nlohmann::json{{"path", "/dev/null"}, {"mknod", "skipped"}, {"open", ""}}));
  auto missing = runProbe({"--open-device", "/nonexistent/node", "r"});
  EXPECT_EQ(nlohmann::json::parse(missing.out)["open"], "ENOENT");
  for (std::vector<std::string> bad : {std::vector<std::string>{"--open-device", "/dev/null"},
                                       {"--open-device", "/dev/null", "x"},
                                       {"--open-device", "/tmp/n", "r", "c", "1"},
                                       {"--open-device", "/tmp/n", "r", "p", "1", "3"}}) {
    auto run = runProbe(bad);
    EXPECT_EQ(run.status, 2) << bad.size();
    EXPECT_NE(run.err.find("--open-device needs PATH"), std::string::npos) << run.err;
  }
}

TEST(ProbeUsage, BadArgumentsExitNonZeroWithAMessage) {
  auto unknownSyscall = runProbe({"--syscall", "reboot"});
  EXPECT_EQ(unknownSyscall.status, 2);
  EXPECT_NE(unknownSyscall.err.find("unknown syscall \"reboot\""), std::string::npos) << unknownSyscall.err;
  EXPECT_TRUE(unknownSyscall.out.empty());

  auto missingName = runProbe({"--syscall"});
  EXPECT_EQ(missingName.status, 2);
  EXPECT_NE(missingName.err.find("--syscall needs exactly one NAME"), std::string::npos);

  auto unknownOption = runProbe({"--frobnicate"});
  EXPECT_EQ(unknownOption.status, 2);
  EXPECT_NE(unknownOption.err.find("unknown option \"--frobnicate\""), std::string::npos);
}

// ---- --spoof: the frames it builds, read back by corral trace's decoder ----

TEST(ProbeSpoof, UdpFrameCarriesTheFakeSourceAndAValidHeaderChecksum) {
  const MacAddress to = *parseMac("02:c0:00:00:00:0b");
  const MacAddress from = *parseMac("02:c0:00:00:00:0a");
  const std::vector<uint8_t> bytes = udpFrame(to, from, *parseIpv4("8.8.8.8"), *parseIpv4("10.0.2.4"), 5555);
  const net::DecodedFrame frame = net::decodeFrame(bytes);
  ASSERT_TRUE(frame.ethernet && frame.ipv4 && frame.udp) << frame.note;
  EXPECT_EQ(frame.ethernet->source, "02:c0:00:00:00:0a");
  EXPECT_EQ(frame.ethernet->destination, "02:c0:00:00:00:0b");
  EXPECT_EQ(frame.ethernet->etherType, 0x0800);
  EXPECT_FALSE(frame.ethernet->vlan);
  EXPECT_EQ(frame.ipv4->source, "8.8.8.8");
  EXPECT_EQ(frame.ipv4->destination, "10.0.2.4");
  EXPECT_EQ(frame.udp->destinationPort, 5555);
  EXPECT_EQ(frame.payloadBytes, kSpoofPayload.size());
  EXPECT_EQ(frame::ipChecksum(bytes.data() + 14, 20), 0) << "a valid header sums to zero";
}

TEST(ProbeSpoof, VlanFrameIsTaggedAndArpReplyClaimsTheAddress) {
  const MacAddress to = *parseMac("0a:00:00:00:00:01");
  const MacAddress from = *parseMac("02:c0:00:00:00:0a");
  const net::DecodedFrame tagged =
      net::decodeFrame(udpFrame(to, from, *parseIpv4("10.0.1.4"), *parseIpv4("10.0.1.5"), 7, uint16_t{7}));
  ASSERT_TRUE(tagged.ethernet && tagged.ipv4) << tagged.note;
  EXPECT_EQ(tagged.ethernet->vlan, 7);
  EXPECT_EQ(tagged.ipv4->source, "10.0.1.4");

  const std::vector<uint8_t> bytes = arpReply(to, from, *parseIpv4("10.0.1.1"), *parseIpv4("10.0.1.5"));
  EXPECT_EQ(bytes.size(), 60u);
  const net::DecodedFrame arp = net::decodeFrame(bytes);
  ASSERT_TRUE(arp.arp) << arp.note;
  EXPECT_EQ(arp.arp->operation, 2);
  EXPECT_EQ(arp.arp->senderMac, "02:c0:00:00:00:0a");
  EXPECT_EQ(arp.arp->senderIp, "10.0.1.1");
  EXPECT_EQ(arp.arp->targetMac, "0a:00:00:00:00:01");
  EXPECT_EQ(arp.arp->targetIp, "10.0.1.5");
}

TEST(ProbeSpoof, NextHopIsTheGatewayOffLinkAndTheAddressOnLink) {
  // /proc/net/route of a container at 10.0.1.4/24 with its default route via 10.0.1.1.
  const std::string routes =
      "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
      "eth0\t00000000\t0101000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
      "eth0\t0001000A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n";
  EXPECT_EQ(nextHop(routes, *parseIpv4("10.0.1.9")), parseIpv4("10.0.1.9"));
  EXPECT_EQ(nextHop(routes, *parseIpv4("10.0.2.4")), parseIpv4("10.0.1.1"));
  EXPECT_EQ(nextHop("Iface\n", *parseIpv4("10.0.2.4")), std::nullopt);

  const std::string arp =
      "IP address       HW type     Flags       HW address            Mask     Device\n"
      "10.0.1.1         0x1         0x2         0a:d7:7f:33:c2:e9     *        eth0\n"
      "10.0.1.9         0x1         0x0         00:00:00:00:00:00     *        eth0\n";
  EXPECT_EQ(arpEntry(arp, *parseIpv4("10.0.1.1")), parseMac("0a:d7:7f:33:c2:e9"));
  EXPECT_EQ(arpEntry(arp, *parseIpv4("10.0.1.9")), std::nullopt) << "incomplete entries do not count";
  EXPECT_EQ(parseMac("02:c0:00:00:00"), std::nullopt);
  EXPECT_EQ(parseMac("02:c0:00:00:00:0a:ff"), std::nullopt);
}

TEST(ProbeSpoof, BadOperandsAreRefusedBeforeAnythingIsSent) {
  EXPECT_EQ(spoof({}).error, "missing KIND");
  EXPECT_EQ(spoof({"teleport"}).error, "unknown KIND \"teleport\"");
  EXPECT_EQ(spoof({"ip", "8.8.8.8"}).error, "wrong number of operands for ip");
  EXPECT_EQ(spoof({"arp", "10.0.1.1", "10.0.1.5", "extra"}).error, "wrong number of operands for arp");
}

}  // namespace
}  // namespace corral::probe
