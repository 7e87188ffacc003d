// Warm snapshot keys and the clone's domain XML (daemon/vm_snapshot.h).
#include "daemon/vm_snapshot.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include "images/oci/digest.h"

namespace corral::daemon {

namespace {

void replaceAll(std::string& text, std::string_view from, std::string_view to) {
  if (from.empty()) return;
  for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at + to.size()))
    text.replace(at, from.size(), to);
}

}  // namespace

std::string snapshotKey(const SnapshotInputs& inputs) {
  const std::string text = fmt::format(
      "corral warm snapshot v1\nkernel {}\ninitrd {}\nmachine {}\naccelerator {}\nmemory {}\nvcpus {}\n"
      "tuning {}\nnic {}\n",
      inputs.kernelDigest, inputs.initrdDigest, vmm::machineName(inputs.machine),
      vmm::acceleratorName(inputs.accelerator), inputs.memoryBytes, inputs.vcpus, inputs.kernelTuning,
      inputs.withNic ? "yes" : "no");
  return images::digestOf(text).hex.substr(0, 32);
}

SnapshotTemplate snapshotTemplate(const std::string& key, const std::string& domainPrefix,
                                  const std::filesystem::path& directory, bool withNic) {
  const std::string instanceName = ".warm-" + key.substr(0, 12);
  return {.domainName = domainPrefix + instanceName,
          .instanceName = instanceName,
          .directory = directory,
          .tapName = withNic ? "crlw" + key.substr(0, 8) : std::string()};
}

std::string templateRecord(const SnapshotTemplate& record) {
  return nlohmann::json{{"domain", record.domainName},
                        {"instance", record.instanceName},
                        {"directory", record.directory.string()},
                        {"tap", record.tapName}}
      .dump();
}

Result<SnapshotTemplate> parseTemplateRecord(std::string_view text) {
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  SnapshotTemplate record;
  for (const auto& [field, out] : {std::pair{"domain", &record.domainName},
                                   std::pair{"instance", &record.instanceName}, std::pair{"tap", &record.tapName}}) {
    if (!json.is_object() || !json.contains(field) || !json[field].is_string())
      return fail(internalError("warm snapshot record: no string \"{}\"", field));
    *out = json[field].get<std::string>();
  }
  if (!json.contains("directory") || !json["directory"].is_string() ||
      json["directory"].get_ref<const std::string&>().empty() || record.domainName.empty() ||
      record.instanceName.empty())
    return fail(internalError("warm snapshot record: no \"directory\", \"domain\" or \"instance\""));
  record.directory = json["directory"].get<std::string>();
  return record;
}

std::string cloneDomainXml(std::string xml, const SnapshotTemplate& from, const std::string& domainName,
                           const std::string& instanceName, const std::filesystem::path& directory,
                           const std::string& tapName) {
  replaceAll(xml, "<name>" + from.domainName + "</name>", "<name>" + domainName + "</name>");
  replaceAll(xml, "name='" + from.instanceName + "'", "name='" + instanceName + "'");
  replaceAll(xml, "name=\"" + from.instanceName + "\"", "name=\"" + instanceName + "\"");  // libxml2's quotes
  replaceAll(xml, from.directory.string() + "/", directory.string() + "/");
  if (!from.tapName.empty()) replaceAll(xml, "dev='" + from.tapName + "'", "dev='" + tapName + "'");
  if (const auto start = xml.find("<uuid>"); start != std::string::npos) {
    if (const auto end = xml.find("</uuid>", start); end != std::string::npos) {
      auto lineStart = xml.rfind('\n', start);
      lineStart = lineStart == std::string::npos ? start : lineStart;
      xml.erase(lineStart, end + std::string_view("</uuid>").size() - lineStart);
    }
  }
  return xml;
}

}  // namespace corral::daemon
