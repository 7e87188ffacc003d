// `corral info`: what corrald reports about itself and the host (kernel, cgroups, KVM, state, object counts).
#include "cli/cli.h"

namespace corral::cli {
namespace {

// Nested objects become "kvm usable: yes" lines, so new fields the daemon adds show up without a CLI change.
void flatten(const json& value, const std::string& label,
             std::vector<std::pair<std::string, std::string>>& lines) {
  if (!value.is_object()) {
    lines.emplace_back(label, displayText(value));
    return;
  }
  for (const auto& [key, inner] : value.items()) {
    std::string name = key;
    for (char& c : name) c = c == '_' ? ' ' : c;
    flatten(inner, label.empty() ? name : label + " " + name, lines);
  }
}

}  // namespace

Command infoCommand() {
  return leaf("info", "what corrald reports about itself and this host: kernel, cgroups, KVM, objects", {},
              "", nullptr, [](const Invocation& invocation) {
                return respond(invocation, api::GetInfo{}, [](const json& info) {
                  std::vector<std::pair<std::string, std::string>> lines;
                  flatten(info, "", lines);
                  printFields(lines);
                });
              });
}

}  // namespace corral::cli
