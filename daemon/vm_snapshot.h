// Warm starts (`corral run --vm --warm`): the key of the shared snapshot a VM is restored from, and how the
// snapshot's saved domain XML becomes a clone's. Pure but for FileDigests (a stat per lookup); VmDriver
// makes, restores and discards snapshots.
#pragma once

#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include "core/error.h"
#include "net/datapath.h"
#include "vmm/domain_xml.h"
#include "vmm/hypervisor.h"

namespace corral::daemon {

// Everything that shapes the guest a snapshot holds: a VM whose inputs differ in any of these gets another
// snapshot. The initramfs holds corral's guest init, so its digest covers the init too.
struct SnapshotInputs {
  std::string kernelDigest;  // "sha256:…" of the kernel file
  std::string initrdDigest;  // "sha256:…" of the initramfs
  vmm::Machine machine = vmm::Machine::Pc;
  vmm::Accelerator accelerator = vmm::Accelerator::Tcg;
  uint64_t memoryBytes = 0;
  int vcpus = 1;
  std::string kernelTuning;  // what corral's kernel is told on top of the common command line
  bool withNic = false;      // a NIC cannot be added at a restore: a VM in a subnet needs a template with one
  // That NIC's MTU and offloads: virtio-net restores them as saved (the guest keeps the MTU it read at boot),
  // so the OVN backend's VMs (1400, offloads off) have snapshots of their own. The default leaves a key as
  // it was before the profile was in it.
  net::NicProfile nic;
  // Who saved it: libvirt's save file and QEMU's own migration stream are restored by their own engine.
  vmm::Engine engine = vmm::Engine::Libvirt;
  // A store image's VM (its root is a disk the snapshot's memory has mounted): the image's manifest digest
  // and the sha256 of its config disk (the workload the template started). Empty for a built-in image.
  std::string imageDigest;
  std::string workloadDigest;
};

// The sha256 of boot files, each hashed once while its (path, size, mtime) stays the same: a warm start
// otherwise hashed a ~10 MB kernel and initramfs every time. Thread-safe.
class FileDigests {
 public:
  Result<std::string> of(const std::filesystem::path& path);  // "sha256:…"

 private:
  struct Entry {
    uintmax_t size = 0;
    int64_t mtimeNs = 0;
    std::string digest;
  };
  std::mutex mutex_;
  std::map<std::string, Entry> byPath_;
};

// 32 lowercase hex digits of the sha256 of the inputs in a fixed text form: a directory name.
std::string snapshotKey(const SnapshotInputs& inputs);

// What the template domain was called and where its files were, recorded next to its saved state so a
// restore can point each at the clone's.
struct SnapshotTemplate {
  std::string domainName;
  std::string instanceName;
  std::filesystem::path directory;  // the template's console log, agent socket and disks were here
  std::string tapName;              // empty: no NIC
  // What the snapshot is of, for listing and housekeeping (absent in records made before: "" and 0).
  std::string imageName;    // the store image's name when it was made; "" for a built-in image
  std::string imageDigest;  // its manifest digest: the snapshot goes when no image has it any more
  std::string kernel;       // the kernel file's path
  std::string kernelDigest;  // and what it hashed to: a snapshot of a kernel since rebuilt is pruned
  std::string initrd;
  std::string initrdDigest;
  std::string machine;
  uint64_t memoryBytes = 0;
  int64_t madeAtUnix = 0;
  net::NicProfile nic;  // its NIC's MTU and offloads (a record made before they were written: the default)
};

// The template's names for a key: its domain and instance name ".warm-KEY...." (dots up to 64 bytes, so a
// clone's name is never longer and fits in its place in the saved header) under `domainPrefix`, and
// its tap "crlw" + 8 key digits (an interface name of at most 15 bytes).
SnapshotTemplate snapshotTemplate(const std::string& key, const std::string& domainPrefix,
                                  const std::filesystem::path& directory, bool withNic);

// A snapshot key as the API takes it: 32 lowercase hex digits (a directory name, never a path).
bool isSnapshotKey(std::string_view text);

std::string templateRecord(const SnapshotTemplate& record);  // JSON text
Result<SnapshotTemplate> parseTemplateRecord(std::string_view text);

// libvirt's QEMU save file starts with a 92-byte header (magic[16], version, data_len, was_running,
// compressed, cookieOffset, unused[14]): data_len bytes of domain XML and migration cookie follow (the
// cookie at cookieOffset), then the memory.
inline constexpr size_t kSaveHeaderBytes = 92;
inline constexpr size_t kTemplateNameBytes = 64;
// The template's uuid (the text of the first <uuid> in `header`, the XML after the header's 92 bytes)
// replaced by `uuid` everywhere in it, in place (a uuid's text has a fixed length): libvirt refuses a restore
// whose XML changes the uuid, and two domains may not share one, so each clone restores a copy of the saved
// state whose XML already carries its own. False when there is no uuid or `uuid` is not 36 bytes.
bool replaceSavedUuid(std::string& header, const std::string& uuid);
std::string randomUuid();  // version 4, lowercase

// The saved XML with the template's names replaced by the clone's: domain name, instance name in the
// metadata, paths under the template's directory, the tap; the uuid becomes `uuid`.
// The MAC stays the template's (libvirt refuses a change): the guest agent sets the clone's on eth0.
std::string cloneDomainXml(std::string xml, const SnapshotTemplate& from, const std::string& domainName,
                           const std::string& instanceName, const std::filesystem::path& directory,
                           const std::string& tapName, const std::string& uuid);

}  // namespace corral::daemon
