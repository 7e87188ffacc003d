// `corral snapshot`: the warm VM snapshots corrald keeps (ls, rm). `corral run --vm --warm` makes and uses
// them; removing one only makes the next warm run of its key boot a new template.
#include "cli/cli.h"
#include "core/text.h"

namespace corral::cli {
namespace {

std::string displaySize(const json& bytes) {
  if (!bytes.is_number_unsigned() && !bytes.is_number_integer()) return "-";
  return fmt::format("{:.1f} MiB", static_cast<double>(bytes.get<int64_t>()) / (1024 * 1024));
}

std::string displayMemory(const json& bytes) {
  if (!bytes.is_number_unsigned()) return "-";
  return fmt::format("{} MiB", bytes.get<uint64_t>() >> 20);
}

// "no", or the NIC's MTU and, when the guest does its own checksums and TSO (OVN's), "offloads off".
std::string nicText(const json& snapshot) {
  if (field(snapshot, "with_nic") != true) return "no";
  const json& mtu = field(snapshot, "nic_mtu");
  std::string text = mtu.is_number_unsigned() ? fmt::format("mtu {}", mtu.get<unsigned>()) : "yes";
  if (field(snapshot, "nic_offloads") == false) text += ", offloads off";
  return text;
}

}  // namespace

Command snapshotCommand() {
  return group(
      "snapshot",
      "warm VM snapshots: booted guests saved once, restored by `corral run --vm --warm` (ls, rm)",
      {
          leaf("ls", "list the warm VM snapshots: what each is of (image, machine, memory) and its size", {},
               "", nullptr,
               [](const Invocation& invocation) {
                 return respond(invocation, api::ListVmSnapshots{}, [](const json& response) {
                   Table table({"key", "image", "machine", "memory", "nic", "size", "made"});
                   for (const json& snapshot : field(response, "snapshots")) {
                     const json& image = field(snapshot, "image");
                     table.add({displayText(field(snapshot, "key")),
                                image.is_null() ? "(built-in)" : terminalSafe(displayText(image)),
                                displayText(field(snapshot, "machine")),
                                displayMemory(field(snapshot, "memory_bytes")),
                                nicText(snapshot),
                                displaySize(field(snapshot, "size_bytes")),
                                displayTime(field(snapshot, "made_at"))});
                   }
                   printList(table,
                             "the first `corral run --vm --warm` of a kernel, image and size makes one");
                 });
               }),
          leaf("rm", "remove a warm VM snapshot (running clones keep their own copies)",
               {{"KEY", "the snapshot's key (32 hex digits, from corral snapshot ls)"}}, "", nullptr,
               [](const Invocation& invocation) {
                 const std::string& key = invocation.arguments[0];
                 return respond(invocation, api::RemoveVmSnapshot{key},
                                [&](const json&) { fmt::print("removed snapshot {}\n", terminalSafe(key)); });
               }),
      });
}

}  // namespace corral::cli
