// Warm snapshot keys and the clone's domain XML (daemon/vm_snapshot.h).
#include "daemon/vm_snapshot.h"

#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <random>

#include "images/oci/digest.h"

namespace corral::daemon {

namespace {

void replaceAll(std::string& text, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
}

}  // namespace

Result<std::string> FileDigests::of(const std::filesystem::path& path) {
  struct stat before {};
  if (::stat(path.c_str(), &before) != 0)
    return fail(systemError(errno, fmt::format("stat(\"{}\")", path.string())));
  const int64_t mtimeNs = int64_t{before.st_mtim.tv_sec} * 1'000'000'000 + before.st_mtim.tv_nsec;
  const auto size = static_cast<uintmax_t>(before.st_size);
  {
    std::lock_guard lock(mutex_);
    if (auto it = byPath_.find(path.string());
        it != byPath_.end() && it->second.size == size && it->second.mtimeNs == mtimeNs)
      return it->second.digest;
  }
  auto digest = images::digestOfFile(path);
  if (!digest) return fail(digest.error());
  std::lock_guard lock(mutex_);
  byPath_[path.string()] = {.size = size, .mtimeNs = mtimeNs, .digest = digest->text()};
  return digest->text();
}

std::string snapshotKey(const SnapshotInputs& inputs) {
  std::string text = fmt::format(
      "corral warm snapshot v1\nkernel {}\ninitrd {}\nmachine {}\naccelerator {}\nmemory {}\nvcpus {}\n"
      "tuning {}\nnic {}\n",
      inputs.kernelDigest, inputs.initrdDigest, vmm::machineName(inputs.machine),
      vmm::acceleratorName(inputs.accelerator), inputs.memoryBytes, inputs.vcpus, inputs.kernelTuning,
      inputs.withNic ? "yes" : "no");
  // libvirt's keys as they were before the direct engine: its snapshots stay valid.
  if (inputs.engine != vmm::Engine::Libvirt)
    text += fmt::format("engine {}\n", vmm::engineName(inputs.engine));
  // Built-in images' keys stay what they were before store images could be warm.
  if (!inputs.imageDigest.empty())
    text += fmt::format("image {}\nworkload {}\n", inputs.imageDigest, inputs.workloadDigest);
  // The nftables backend's NIC (1500, offloads on) keeps the key it had before the NIC's profile was in it.
  if (inputs.withNic && inputs.nic != net::NicProfile{})
    text += fmt::format("nic mtu {} offloads {}\n", inputs.nic.mtu, inputs.nic.guestOffloads ? "on" : "off");
  return images::digestOf(text).hex.substr(0, 32);
}

SnapshotTemplate snapshotTemplate(const std::string& key, const std::string& domainPrefix,
                                  const std::filesystem::path& directory, bool withNic) {
  // As long as any instance name (64 bytes): a clone's names replace it in place in the saved file's header.
  std::string instanceName = ".warm-" + key;
  instanceName.resize(kTemplateNameBytes, '.');
  return {.domainName = domainPrefix + instanceName,
          .instanceName = instanceName,
          .directory = directory,
          .tapName = withNic ? "crlw" + key.substr(0, 8) : std::string(),
          .imageName = {},
          .imageDigest = {},
          .kernel = {},
          .kernelDigest = {},
          .initrd = {},
          .initrdDigest = {},
          .machine = {},
          .memoryBytes = 0,
          .madeAtUnix = 0,
          .nic = {}};
}

bool isSnapshotKey(std::string_view text) {
  return text.size() == 32 && std::all_of(text.begin(), text.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::string templateRecord(const SnapshotTemplate& record) {
  return nlohmann::json{{"domain", record.domainName},
                        {"instance", record.instanceName},
                        {"directory", record.directory.string()},
                        {"tap", record.tapName},
                        {"image", record.imageName},
                        {"image_digest", record.imageDigest},
                        {"kernel", record.kernel},
                        {"kernel_digest", record.kernelDigest},
                        {"initrd", record.initrd},
                        {"initrd_digest", record.initrdDigest},
                        {"machine", record.machine},
                        {"memory_bytes", record.memoryBytes},
                        {"made_at", record.madeAtUnix},
                        {"nic_mtu", record.nic.mtu},
                        {"nic_offloads", record.nic.guestOffloads}}
      .dump();
}

Result<SnapshotTemplate> parseTemplateRecord(std::string_view text) {
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  SnapshotTemplate record;
  for (const auto& [field, out] :
       {std::pair{"domain", &record.domainName}, std::pair{"instance", &record.instanceName},
        std::pair{"tap", &record.tapName}}) {
    if (!json.is_object() || !json.contains(field) || !json[field].is_string())
      return fail(internalError("warm snapshot record: no string \"{}\"", field));
    *out = json[field].get<std::string>();
  }
  if (!json.contains("directory") || !json["directory"].is_string() ||
      json["directory"].get_ref<const std::string&>().empty() || record.domainName.empty() ||
      record.instanceName.empty())
    return fail(internalError("warm snapshot record: no \"directory\", \"domain\" or \"instance\""));
  record.directory = json["directory"].get<std::string>();
  // Facts for listing and pruning: a record without them (made before they were written) still restores.
  for (const auto& [field, out] :
       {std::pair{"image", &record.imageName}, std::pair{"image_digest", &record.imageDigest},
        std::pair{"kernel", &record.kernel}, std::pair{"machine", &record.machine},
        std::pair{"kernel_digest", &record.kernelDigest}, std::pair{"initrd", &record.initrd},
        std::pair{"initrd_digest", &record.initrdDigest}}) {
    if (json.contains(field) && json[field].is_string()) *out = json[field].get<std::string>();
  }
  if (json.contains("memory_bytes") && json["memory_bytes"].is_number_unsigned())
    record.memoryBytes = json["memory_bytes"].get<uint64_t>();
  if (json.contains("made_at") && json["made_at"].is_number_integer())
    record.madeAtUnix = json["made_at"].get<int64_t>();
  if (json.contains("nic_mtu") && json["nic_mtu"].is_number_unsigned())
    record.nic.mtu = json["nic_mtu"].get<unsigned>();
  if (json.contains("nic_offloads") && json["nic_offloads"].is_boolean())
    record.nic.guestOffloads = json["nic_offloads"].get<bool>();
  return record;
}

std::string cloneDomainXml(std::string xml, const SnapshotTemplate& from, const std::string& domainName,
                           const std::string& instanceName, const std::filesystem::path& directory,
                           const std::string& tapName, const std::string& uuid) {
  replaceAll(xml, "<name>" + from.domainName + "</name>", "<name>" + domainName + "</name>");
  replaceAll(xml, "name='" + from.instanceName + "'", "name='" + instanceName + "'");
  replaceAll(xml, "name=\"" + from.instanceName + "\"", "name=\"" + instanceName + "\"");  // libxml2's quotes
  replaceAll(xml, from.directory.string() + "/", directory.string() + "/");
  if (!from.tapName.empty()) replaceAll(xml, "dev='" + from.tapName + "'", "dev='" + tapName + "'");
  replaceSavedUuid(xml, uuid);
  return xml;
}

bool replaceSavedUuid(std::string& header, const std::string& uuid) {
  constexpr size_t kUuidText = 36;
  const auto start = header.find("<uuid>");
  if (uuid.size() != kUuidText || start == std::string::npos) return false;
  const std::string old = header.substr(start + 6, kUuidText);
  if (header.compare(start + 6 + kUuidText, 7, "</uuid>") != 0) return false;
  for (size_t at = header.find(old); at != std::string::npos; at = header.find(old, at + kUuidText))
    header.replace(at, kUuidText, uuid);
  return true;
}

std::string randomUuid() {
  std::array<uint8_t, 16> bytes{};
  std::random_device random;
  for (auto& byte : bytes) byte = static_cast<uint8_t>(random());
  bytes[6] = static_cast<uint8_t>((bytes[6] & 0x0f) | 0x40);
  bytes[8] = static_cast<uint8_t>((bytes[8] & 0x3f) | 0x80);
  std::string text;
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) text += '-';
    text += fmt::format("{:02x}", bytes[i]);
  }
  return text;
}

}  // namespace corral::daemon
