// VMs from store images: base disk, per-instance overlay and config disk (see vm_image.h).
#include "daemon/vm_image.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "core/unique_fd.h"
#include "images/oci/disk.h"
#include "vmm/agent_protocol.h"

namespace corral::daemon {

namespace fs = std::filesystem;
using json = nlohmann::json;

Result<std::shared_ptr<images::ImageStore>> openImageStore(const fs::path& stateDir) {
  auto store = images::ImageStore::open(stateDir / "images");
  if (!store)
    return fail(store.error().wrap(fmt::format("image store \"{}\"", (stateDir / "images").string())));
  return std::make_shared<images::ImageStore>(std::move(*store));
}

json guestWorkload(const images::ImageConfig& config) {
  std::vector<std::string> argv = config.entrypoint;
  argv.insert(argv.end(), config.cmd.begin(), config.cmd.end());
  return json{{"argv", argv},
              {"env", config.env},
              {"workdir", config.workingDir.empty() ? "/" : config.workingDir},
              {"user", config.user}};
}

std::string configDiskBytes(const json& workload) {
  std::string bytes = workload.dump(-1, ' ', false, json::error_handler_t::replace);
  bytes.resize((bytes.size() / 512 + 1) * 512, '\0');  // at least one NUL: the guest reads up to it
  return bytes;
}

std::string instanceConfigDisk(const images::Image& image, const std::string& user) {
  images::ImageConfig workload = image.config;
  if (!user.empty()) workload.user = user;
  return configDiskBytes(guestWorkload(workload));
}

Result<fs::path> prepareBaseDisk(const images::ImageStore& store, const images::Image& image) {
  auto disk = images::baseDisk(store, image);
  if (!disk) return fail(disk.error().wrap(fmt::format("image \"{}\"", image.name)));
  return disk;
}

namespace {

// Written to a temporary file and renamed: a crash never leaves a half config for the next start.
Status writeConfigDisk(const fs::path& path, const std::string& bytes) {
  fs::path temp = path;
  temp += ".tmp";
  UniqueFd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", temp.string())));
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(systemError(errno, fmt::format("write(\"{}\")", temp.string())));
    done += static_cast<size_t>(n);
  }
  if (::rename(temp.c_str(), path.c_str()) != 0)
    return fail(systemError(errno, fmt::format("rename(\"{}\", \"{}\")", temp.string(), path.string())));
  return {};
}

}  // namespace

std::vector<vmm::DiskConfig> instanceDisks(const fs::path& dir) {
  return {{.path = dir / kVmRootDiskFile,
           .format = vmm::DiskFormat::Qcow2,
           .serial = vmm::kRootDiskSerial,
           .readOnly = false},
          {.path = dir / kVmConfigDiskFile,
           .format = vmm::DiskFormat::Raw,
           .serial = vmm::kConfigDiskSerial,
           .readOnly = true}};
}

namespace {

// `dir`/base.ext4, a hard link to the store's base disk; made when missing. An overlay made before the link
// existed names the store's path as its backing file: rebased onto the link (metadata only).
Status linkBaseDisk(const fs::path& base, const fs::path& dir, std::optional<gid_t> readers) {
  const fs::path link = dir / kVmBaseDiskLink;
  std::error_code ec;
  if (!fs::exists(link, ec)) {
    if (::link(base.c_str(), link.c_str()) != 0) {
      const int error = errno;
      return fail(
          systemError(error, fmt::format("link(\"{}\", \"{}\"){}", base.string(), link.string(),
                                         error == EXDEV ? " (VMS_DIR must be on the state directory's "
                                                          "filesystem)"
                                                        : "")));
    }
    if (fs::exists(dir / kVmRootDiskFile, ec)) {
      if (Status rebased = images::rebaseInstanceDisk(dir / kVmRootDiskFile, kVmBaseDiskLink); !rebased)
        return fail(rebased.error());
    }
  }
  if (readers) {
    if (::chown(link.c_str(), 0, *readers) != 0)
      return fail(systemError(errno, fmt::format("chown(\"{}\", 0:{})", link.string(), *readers)));
    if (::chmod(link.c_str(), 0640) != 0)
      return fail(systemError(errno, fmt::format("chmod(\"{}\", 0640)", link.string())));
  }
  return {};
}

}  // namespace

Result<std::vector<vmm::DiskConfig>> prepareInstanceDisks(const images::ImageStore& store,
                                                          const images::Image& image, const fs::path& dir,
                                                          const std::string& user,
                                                          std::optional<gid_t> readers) {
  auto base = prepareBaseDisk(store, image);
  if (!base) return fail(base.error());
  if (Status linked = linkBaseDisk(*base, dir, readers); !linked) return fail(linked.error());
  const fs::path root = dir / kVmRootDiskFile;
  std::error_code ec;
  if (!fs::exists(root, ec)) {
    if (Status made = images::createInstanceDisk(kVmBaseDiskLink, root); !made) return fail(made.error());
  }
  const fs::path config = dir / kVmConfigDiskFile;
  if (Status written = writeConfigDisk(config, instanceConfigDisk(image, user)); !written)
    return fail(written.error());
  return instanceDisks(dir);
}

Status copyTemplateDisks(const fs::path& snapshotDir, const fs::path& dir) {
  for (const char* disk : {kVmRootDiskFile, kVmConfigDiskFile}) {
    std::error_code ec;
    fs::copy_file(snapshotDir / disk, dir / disk, fs::copy_options::overwrite_existing, ec);
    if (ec) {
      return fail(systemError(ec.value(), fmt::format("copy \"{}\" to \"{}\"", (snapshotDir / disk).string(),
                                                      (dir / disk).string())));
    }
  }
  const fs::path link = dir / kVmBaseDiskLink;
  std::error_code ec;
  fs::remove(link, ec);
  if (::link((snapshotDir / kVmBaseDiskLink).c_str(), link.c_str()) != 0) {
    return fail(systemError(
        errno, fmt::format("link(\"{}\", \"{}\")", (snapshotDir / kVmBaseDiskLink).string(), link.string())));
  }
  return {};
}

}  // namespace corral::daemon
