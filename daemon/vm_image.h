// VMs from images in the ImageStore (issue 14): the store opened once for corrald, the image's ext4 base disk
// (built once per image, images/oci/disk.h), and per instance a qcow2 overlay backed by it plus a small raw
// config disk whose JSON tells the guest init what to run (vmm/agent_protocol.h, corral.root). Both live in
// the instance's directory, so rm (and a crash's reconcile, which removes directories no instance owns)
// removes them with it.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "core/error.h"
#include "images/oci/image_store.h"
#include "vmm/domain_xml.h"

namespace corral::daemon {

inline constexpr const char* kVmRootDiskFile = "root.qcow2";
inline constexpr const char* kVmConfigDiskFile = "config.img";
inline constexpr const char* kVmBaseDiskLink = "base.ext4";

// The image store at `<state dir>/images`. Opened once per corrald: open() empties ingest/ and collects
// unreferenced blobs, which must never run under an import in progress.
Result<std::shared_ptr<images::ImageStore>> openImageStore(const std::filesystem::path& stateDir);

// What the guest runs, from the image's config (pure): argv = Entrypoint + Cmd, Env, WorkingDir, User.
nlohmann::json guestWorkload(const images::ImageConfig& config);

// The config disk's bytes: the workload's JSON, NUL-padded to whole 512-byte sectors (pure).
std::string configDiskBytes(const nlohmann::json& workload);

// The config disk's bytes for an instance of `image`: its workload with `user` (the instance's --user) when
// given, else the image's User.
std::string instanceConfigDisk(const images::Image& image, const std::string& user);

// The image's base disk: mkfs.ext4 the first time (seconds for a large image: call it without the
// manager's lock), the existing file after.
Result<std::filesystem::path> prepareBaseDisk(const images::ImageStore& store, const images::Image& image);

// The disks of an instance (or warm template) whose root.qcow2 and config.img are in `dir`, in vda, vdb
// order (pure: the files are not looked at).
std::vector<vmm::DiskConfig> instanceDisks(const std::filesystem::path& dir);

// The instance's disks in `dir`, in vda, vdb order: root.qcow2 over the base disk (made if absent; a stopped
// VM keeps its writes until rm) and config.img (written each start, read-only to the guest), whose user is
// `user` when given (the instance's --user), else the image's User. The base disk is reached through a hard
// link in `dir` (kVmBaseDiskLink, the overlay's relative backing file), so a QEMU that is not root needs no
// way into the image store; with `readers`, the base disk's inode is made root:READERS 0640 for it.
Result<std::vector<vmm::DiskConfig>> prepareInstanceDisks(const images::ImageStore& store,
                                                          const images::Image& image,
                                                          const std::filesystem::path& dir,
                                                          const std::string& user = {},
                                                          std::optional<gid_t> readers = std::nullopt);

// A warm clone's disks: the template's overlay and config disk copied from `snapshotDir` into `dir`, and the
// base disk linked as the template's is (its relative backing file then resolves in `dir`).
Status copyTemplateDisks(const std::filesystem::path& snapshotDir, const std::filesystem::path& dir);

}  // namespace corral::daemon
