// VMs from store images: base disk, per-instance overlay and config disk (see vm_image.h).
#include "daemon/vm_image.h"

#include <fcntl.h>
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

Result<std::vector<vmm::DiskConfig>> prepareInstanceDisks(const images::ImageStore& store,
                                                          const images::Image& image, const fs::path& dir,
                                                          const std::string& user) {
  auto base = prepareBaseDisk(store, image);
  if (!base) return fail(base.error());
  const fs::path root = dir / kVmRootDiskFile;
  std::error_code ec;
  if (!fs::exists(root, ec)) {
    if (Status made = images::createInstanceDisk(*base, root); !made) return fail(made.error());
  }
  const fs::path config = dir / kVmConfigDiskFile;
  if (Status written = writeConfigDisk(config, instanceConfigDisk(image, user)); !written)
    return fail(written.error());
  return instanceDisks(dir);
}

}  // namespace corral::daemon
