// Image reference parsing (docker's grammar: distribution/reference).
#include "images/oci/reference.h"

#include "core/text.h"

namespace corral::images {

namespace {

bool isLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// A path component: lowercase alphanumerics separated by one of ".", "_", "__" or runs of "-".
bool validComponent(std::string_view component) {
  if (component.empty() || !isLowerAlnum(component.front()) || !isLowerAlnum(component.back())) return false;
  for (size_t i = 0; i < component.size(); ++i) {
    char c = component[i];
    if (isLowerAlnum(c) || c == '-') continue;
    if (c == '.' && isLowerAlnum(component[i + 1])) continue;
    if (c == '_' && (isLowerAlnum(component[i + 1]) || (component[i + 1] == '_' && i + 2 < component.size() &&
                                                        isLowerAlnum(component[i + 2])))) {
      if (component[i + 1] == '_') ++i;
      continue;
    }
    return false;
  }
  return true;
}

bool validTag(std::string_view tag) {
  if (tag.empty() || tag.size() > 128) return false;
  auto word = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
  };
  if (!word(tag.front())) return false;
  for (char c : tag) {
    if (!word(c) && c != '.' && c != '-') return false;
  }
  return true;
}

bool validRegistry(std::string_view registry) {
  if (registry.empty() || registry.size() > 255) return false;
  for (char c : registry) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '-' || c == ':' || c == '[' || c == ']';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

std::string Reference::apiHost() const {
  return registry == "docker.io" ? "registry-1.docker.io" : registry;
}

std::string Reference::text() const {
  std::string out = registry + "/" + repository;
  if (!tag.empty()) out += ":" + tag;
  if (digest) out += "@" + digest->text();
  return out;
}

Result<Reference> parseReference(std::string_view text) {
  if (text.empty()) return fail(invalidField("reference", "is empty"));
  if (text.size() > 4096) return fail(invalidField("reference", "is longer than 4096 characters"));
  Reference ref;
  std::string_view rest = text;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    auto digest = parseDigest(rest.substr(at + 1), "reference");
    if (!digest) return fail(digest.error());
    ref.digest = *digest;
    rest = rest.substr(0, at);
  }
  size_t lastSlash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && (lastSlash == std::string_view::npos || colon > lastSlash)) {
    ref.tag = std::string(rest.substr(colon + 1));
    rest = rest.substr(0, colon);
    if (!validTag(ref.tag)) {
      return fail(invalidField("reference",
                               "\"{}\": tag \"{}\" is not valid (letters, digits, _ . -; at most 128)",
                               terminalSafe(text), terminalSafe(ref.tag)));
    }
  }
  size_t firstSlash = rest.find('/');
  std::string_view first = rest.substr(0, firstSlash);
  bool hasRegistry = firstSlash != std::string_view::npos &&
                     (first.find('.') != std::string_view::npos ||
                      first.find(':') != std::string_view::npos || first == "localhost");
  std::string_view path = rest;
  if (hasRegistry) {
    ref.registry = std::string(first);
    path = rest.substr(firstSlash + 1);
    if (!validRegistry(ref.registry)) {
      return fail(invalidField("reference", "\"{}\": registry \"{}\" is not a host name", terminalSafe(text),
                               terminalSafe(ref.registry)));
    }
  } else {
    ref.registry = "docker.io";
  }
  if (ref.registry == "index.docker.io") ref.registry = "docker.io";
  if (path.empty()) return fail(invalidField("reference", "\"{}\" names no repository", terminalSafe(text)));
  size_t start = 0;
  while (start <= path.size()) {
    size_t slash = path.find('/', start);
    if (slash == std::string_view::npos) slash = path.size();
    if (!validComponent(path.substr(start, slash - start))) {
      return fail(
          invalidField("reference",
                       "\"{}\": repository \"{}\" is not valid (lowercase letters and digits, separated by "
                       ". _ __ - or /)",
                       terminalSafe(text), terminalSafe(path)));
    }
    start = slash + 1;
  }
  ref.repository = std::string(path);
  if (ref.registry == "docker.io" && ref.repository.find('/') == std::string::npos) {
    ref.repository = "library/" + ref.repository;
  }
  if (ref.tag.empty() && !ref.digest) ref.tag = "latest";
  return ref;
}

bool isLoopbackRegistry(std::string_view registry) {
  std::string_view host = registry;
  if (host.starts_with('[')) {
    host = host.substr(1, host.find(']') - 1);
    return host == "::1";
  }
  host = host.substr(0, host.find(':'));
  if (host == "localhost") return true;
  if (!host.starts_with("127.")) return false;
  int dots = 0;
  for (char c : host) {
    if (c == '.')
      ++dots;
    else if (c < '0' || c > '9')
      return false;
  }
  return dots == 3;
}

}  // namespace corral::images
