// config.json (OCI runtime spec 1.x, Linux) → ContainerConfig + BundleSetup: each property read, checked
// and named by its JSON pointer on error; what the runtime does not implement is refused by name.
#include "container/oci_config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>

#include "container/caps.h"
#include "container/cgroup_v2.h"
#include "container/devices.h"
#include "container/seccomp.h"

namespace corral::container {
namespace {

using nlohmann::json;

Error fieldError(const std::string& pointer, std::string message) {
  return Error(ErrorKind::InvalidArgument, fmt::format("{}: {}", pointer, message), pointer);
}
Error unsupported(const std::string& pointer, std::string_view why) {
  return fieldError(pointer, fmt::format("not supported by corral-runtime ({})", why));
}

const char* typeName(const json& value) {
  return value.type_name();
}

Status expect(const json& value, json::value_t type, const std::string& pointer) {
  bool ok =
      value.type() == type || (type == json::value_t::number_integer && value.is_number_unsigned()) ||
      (type == json::value_t::number_unsigned && value.is_number_integer() && value.get<int64_t>() >= 0);
  if (!ok) {
    const char* want = type == json::value_t::object    ? "an object"
                       : type == json::value_t::array   ? "an array"
                       : type == json::value_t::string  ? "a string"
                       : type == json::value_t::boolean ? "a boolean"
                                                        : "an integer";
    return fail(fieldError(pointer, fmt::format("must be {}, not {}", want, typeName(value))));
  }
  return {};
}

Result<std::string> getString(const json& value, const std::string& pointer) {
  if (auto ok = expect(value, json::value_t::string, pointer); !ok) return fail(ok.error());
  return value.get<std::string>();
}

Result<int64_t> getInt(const json& value, const std::string& pointer) {
  if (!value.is_number_integer())
    return fail(fieldError(pointer, fmt::format("must be an integer, not {}", typeName(value))));
  if (value.is_number_unsigned() && value.get<uint64_t>() > uint64_t{INT64_MAX})
    return fail(fieldError(pointer, "is out of range"));
  return value.get<int64_t>();
}

Result<uint64_t> getUnsigned(const json& value, const std::string& pointer, uint64_t max = UINT64_MAX) {
  if (!value.is_number_integer() || (!value.is_number_unsigned() && value.get<int64_t>() < 0))
    return fail(fieldError(pointer, fmt::format("must be a non-negative integer, not {}", value.dump())));
  uint64_t number = value.get<uint64_t>();
  if (number > max) return fail(fieldError(pointer, fmt::format("{} is more than {}", number, max)));
  return number;
}

Result<bool> getBool(const json& value, const std::string& pointer) {
  if (auto ok = expect(value, json::value_t::boolean, pointer); !ok) return fail(ok.error());
  return value.get<bool>();
}

Result<std::vector<std::string>> getStrings(const json& value, const std::string& pointer) {
  if (value.is_null()) return std::vector<std::string>{};
  if (auto ok = expect(value, json::value_t::array, pointer); !ok) return fail(ok.error());
  std::vector<std::string> strings;
  for (size_t i = 0; i < value.size(); ++i) {
    auto text = getString(value[i], fmt::format("{}/{}", pointer, i));
    if (!text) return fail(text.error());
    strings.push_back(std::move(*text));
  }
  return strings;
}

// Walks an object's members: `known` handles those the spec defines (returning false for one it does
// not know), the rest are recorded as ignored.
class ObjectReader {
 public:
  ObjectReader(std::vector<std::string>* ignored) : ignored_(ignored) {}
  template <typename Handler>
  Status read(const json& object, const std::string& pointer, Handler&& handler) {
    if (object.is_null()) return {};
    if (auto ok = expect(object, json::value_t::object, pointer); !ok) return ok;
    for (const auto& [key, value] : object.items()) {
      const std::string path = pointer + "/" + key;
      Result<bool> handled = handler(key, value, path);
      if (!handled) return fail(handled.error());
      if (!*handled) ignored_->push_back(path);
    }
    return {};
  }

 private:
  std::vector<std::string>* ignored_;
};

Status checkEnv(const std::vector<std::string>& env, const std::string& pointer) {
  for (size_t i = 0; i < env.size(); ++i) {
    size_t eq = env[i].find('=');
    if (eq == std::string::npos || eq == 0)
      return fail(
          fieldError(fmt::format("{}/{}", pointer, i), fmt::format("\"{}\" is not KEY=VALUE", env[i])));
  }
  return {};
}

// A refused property when present with a value that asks for something (a non-empty string, array or
// object, or true).
bool asksForSomething(const json& value) {
  if (value.is_null()) return false;
  if (value.is_string() || value.is_array() || value.is_object()) return !value.empty();
  if (value.is_boolean()) return value.get<bool>();
  return true;
}

// The one shape of every refusal of a property corral-runtime does not implement: taken (true, for the
// property readers) when it asks for nothing, refused by its pointer otherwise.
Result<bool> refuseIfAsked(const json& value, const std::string& pointer, std::string_view why) {
  if (asksForSomething(value)) return fail(unsupported(pointer, why));
  return true;
}

struct MountOption {
  const char* name;
  bool clear;
  unsigned long flag;
};
constexpr MountOption kMountOptions[] = {
    {"ro", false, MS_RDONLY},
    {"rw", true, MS_RDONLY},
    {"nosuid", false, MS_NOSUID},
    {"suid", true, MS_NOSUID},
    {"nodev", false, MS_NODEV},
    {"dev", true, MS_NODEV},
    {"noexec", false, MS_NOEXEC},
    {"exec", true, MS_NOEXEC},
    {"sync", false, MS_SYNCHRONOUS},
    {"async", true, MS_SYNCHRONOUS},
    {"dirsync", false, MS_DIRSYNC},
    {"mand", false, MS_MANDLOCK},
    {"nomand", true, MS_MANDLOCK},
    {"noatime", false, MS_NOATIME},
    {"atime", true, MS_NOATIME},
    {"nodiratime", false, MS_NODIRATIME},
    {"diratime", true, MS_NODIRATIME},
    {"relatime", false, MS_RELATIME},
    {"norelatime", true, MS_RELATIME},
    {"strictatime", false, MS_STRICTATIME},
    {"nostrictatime", true, MS_STRICTATIME},
};
struct PropagationOption {
  const char* name;
  unsigned long flags;
};
constexpr PropagationOption kPropagation[] = {
    {"private", MS_PRIVATE},       {"rprivate", MS_PRIVATE | MS_REC},
    {"shared", MS_SHARED},         {"rshared", MS_SHARED | MS_REC},
    {"slave", MS_SLAVE},           {"rslave", MS_SLAVE | MS_REC},
    {"unbindable", MS_UNBINDABLE}, {"runbindable", MS_UNBINDABLE | MS_REC},
};

Status parseMountOptions(const std::vector<std::string>& options, const std::string& pointer,
                         BundleMount* mount, bool* bind) {
  for (size_t i = 0; i < options.size(); ++i) {
    const std::string& option = options[i];
    const std::string path = fmt::format("{}/{}", pointer, i);
    if (option == "bind" || option == "rbind") {
      *bind = true;
      mount->flags |= MS_BIND | (option == "rbind" ? MS_REC : 0);
      continue;
    }
    auto flag = std::find_if(std::begin(kMountOptions), std::end(kMountOptions),
                             [&](const MountOption& o) { return option == o.name; });
    if (flag != std::end(kMountOptions)) {
      if (flag->clear) {
        mount->flags &= ~flag->flag;
      } else {
        mount->flags |= flag->flag;
      }
      continue;
    }
    auto propagation = std::find_if(std::begin(kPropagation), std::end(kPropagation),
                                    [&](const PropagationOption& o) { return option == o.name; });
    if (propagation != std::end(kPropagation)) {
      mount->propagation = propagation->flags;
      continue;
    }
    if (option == "remount" || option == "tmpcopyup" || option == "idmap" || option == "ridmap" ||
        option == "rro" || option == "rrw" || option.starts_with("recursive") || option == "copy-symlink" ||
        option == "nosymfollow" || option == "rnosymfollow") {
      return fail(unsupported(path, fmt::format("mount option \"{}\"", option)));
    }
    if (option.find(',') != std::string::npos)
      return fail(fieldError(path, fmt::format("\"{}\" contains ',': give one option per entry", option)));
    if (!mount->data.empty()) mount->data += ',';
    mount->data += option;
  }
  return {};
}

std::filesystem::path underBundle(const std::filesystem::path& bundleDir, const std::string& path) {
  std::filesystem::path given(path);
  return (given.is_absolute() ? given : bundleDir / given).lexically_normal();
}

Status parseMount(const json& value, const std::string& pointer, const OciParseContext& context,
                  std::vector<std::string>* ignored, BundleMount* mount) {
  std::vector<std::string> options;
  std::string type;
  bool haveDestination = false;
  ObjectReader reader(ignored);
  auto ok =
      reader.read(value, pointer,
                  [&](const std::string& key, const json& field, const std::string& path) -> Result<bool> {
                    if (key == "destination") {
                      auto text = getString(field, path);
                      if (!text) return fail(text.error());
                      if (text->empty() || text->front() != '/')
                        return fail(fieldError(path, fmt::format("\"{}\" is not an absolute path", *text)));
                      mount->destination = *text;
                      haveDestination = true;
                    } else if (key == "source") {
                      auto text = getString(field, path);
                      if (!text) return fail(text.error());
                      mount->source = *text;
                    } else if (key == "type") {
                      auto text = getString(field, path);
                      if (!text) return fail(text.error());
                      type = *text;
                    } else if (key == "options") {
                      auto list = getStrings(field, path);
                      if (!list) return fail(list.error());
                      options = std::move(*list);
                    } else if (key == "uidMappings" || key == "gidMappings") {
                      return refuseIfAsked(field, path, "idmapped mounts");
                    } else {
                      return false;
                    }
                    return true;
                  });
  if (!ok) return ok;
  if (!haveDestination) return fail(fieldError(pointer + "/destination", "is required"));
  bool bind = type == "bind";
  if (auto parsed = parseMountOptions(options, pointer + "/options", mount, &bind); !parsed) return parsed;
  if (bind) {
    mount->flags |= MS_BIND;
    mount->fstype.clear();
    if (mount->source.empty()) return fail(fieldError(pointer + "/source", "a bind mount needs a source"));
    mount->source = underBundle(context.bundleDir, mount->source).string();
  } else {
    if (type.empty())
      return fail(fieldError(pointer + "/type", "is required for a mount that is not a bind"));
    mount->fstype = type;
    if (mount->source.empty()) mount->source = type;
  }
  return {};
}

struct NamespaceKind {
  const char* name;
  int flag;
};
constexpr NamespaceKind kNamespaces[] = {
    {"pid", CLONE_NEWPID}, {"network", CLONE_NEWNET}, {"mount", CLONE_NEWNS},      {"ipc", CLONE_NEWIPC},
    {"uts", CLONE_NEWUTS}, {"user", CLONE_NEWUSER},   {"cgroup", CLONE_NEWCGROUP}, {"time", CLONE_NEWTIME},
};

bool namespaceOwned(const BundleSetup& setup, int flag) {
  return (setup.cloneFlags & flag) != 0 ||
         std::any_of(setup.joins.begin(), setup.joins.end(),
                     [&](const NamespacePath& p) { return p.type == flag; });
}

Status parseNamespaces(const json& value, const std::string& pointer, BundleSetup* setup,
                       std::vector<std::string>* ignored) {
  if (auto ok = expect(value, json::value_t::array, pointer); !ok) return ok;
  std::set<std::string> seen;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string entry = fmt::format("{}/{}", pointer, i);
    std::string type, path;
    ObjectReader reader(ignored);
    auto ok =
        reader.read(value[i], entry,
                    [&](const std::string& key, const json& field, const std::string& at) -> Result<bool> {
                      if (key != "type" && key != "path") return false;
                      auto text = getString(field, at);
                      if (!text) return fail(text.error());
                      (key == "type" ? type : path) = *text;
                      return true;
                    });
    if (!ok) return ok;
    auto kind = std::find_if(std::begin(kNamespaces), std::end(kNamespaces),
                             [&](const NamespaceKind& k) { return type == k.name; });
    if (kind == std::end(kNamespaces))
      return fail(
          fieldError(entry + "/type", fmt::format("unknown namespace type \"{}\" (pid, network, mount, "
                                                  "ipc, uts, user, cgroup, time)",
                                                  type)));
    if (!seen.insert(type).second)
      return fail(fieldError(entry + "/type", fmt::format("namespace \"{}\" is given twice", type)));
    if (kind->flag == CLONE_NEWUSER && !path.empty()) {
      if (path.front() != '/')
        return fail(fieldError(entry + "/path", fmt::format("\"{}\" is not an absolute path", path)));
      setup->userNamespacePath = path;
      continue;
    }
    if (kind->flag == CLONE_NEWTIME) {
      if (!path.empty() && path.front() != '/')
        return fail(fieldError(entry + "/path", fmt::format("\"{}\" is not an absolute path", path)));
      setup->newTimeNamespace = path.empty();
      setup->timeNamespacePath = path;
      continue;
    }
    if (path.empty()) {
      setup->cloneFlags |= kind->flag;
      if (kind->flag == CLONE_NEWCGROUP) {
        setup->cloneFlags &= ~CLONE_NEWCGROUP;  // unshared by the child once in its cgroup
        setup->cgroupNamespace = true;
      }
      continue;
    }
    if (path.front() != '/')
      return fail(fieldError(entry + "/path", fmt::format("\"{}\" is not an absolute path", path)));
    if (kind->flag == CLONE_NEWPID) {
      setup->pidNamespacePath = path;
      continue;
    }
    setup->joins.push_back(NamespacePath{kind->flag, path});
  }
  if (!namespaceOwned(*setup, CLONE_NEWNS))
    return fail(fieldError(pointer, "a mount namespace is required (add {\"type\": \"mount\"})"));
  setup->setHostname = (setup->cloneFlags & CLONE_NEWUTS) != 0;
  return {};
}

// runc's rule: only sysctls of a namespace the container has of its own.
Status checkSysctl(const std::string& key, const BundleSetup& setup, const std::string& pointer) {
  static constexpr const char* kIpc[] = {"kernel.msgmax", "kernel.msgmnb",         "kernel.msgmni",
                                         "kernel.sem",    "kernel.shmall",         "kernel.shmmax",
                                         "kernel.shmmni", "kernel.shm_rmid_forced"};
  if (key.empty() || key.find("..") != std::string::npos || key.find('/') != std::string::npos)
    return fail(fieldError(pointer, fmt::format("\"{}\" is not a sysctl name", key)));
  bool ipc = key.starts_with("fs.mqueue.") ||
             std::any_of(std::begin(kIpc), std::end(kIpc), [&](const char* k) { return key == k; });
  if (ipc) {
    if (!namespaceOwned(setup, CLONE_NEWIPC))
      return fail(fieldError(pointer, "an ipc sysctl needs the container's own ipc namespace"));
    return {};
  }
  if (key.starts_with("net.")) {
    if (!namespaceOwned(setup, CLONE_NEWNET))
      return fail(fieldError(pointer, "a net sysctl needs the container's own network namespace"));
    return {};
  }
  if (key == "kernel.hostname" || key == "kernel.domainname") {
    if (!namespaceOwned(setup, CLONE_NEWUTS))
      return fail(fieldError(pointer, "needs the container's own uts namespace"));
    return {};
  }
  return fail(
      fieldError(pointer, fmt::format("\"{}\" is not a namespaced sysctl: it would change the host", key)));
}

struct RlimitName {
  const char* name;
  int resource;
};
constexpr RlimitName kRlimits[] = {
    {"RLIMIT_AS", RLIMIT_AS},
    {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},
    {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},
    {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK},
    {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},
    {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},
    {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO},
    {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING},
    {"RLIMIT_STACK", RLIMIT_STACK},
};

// The process object into `config` (args, env, cwd, user, capabilities, rlimits, ...).
Status parseProcess(const json& value, const std::string& pointer, ContainerConfig* config,
                    BundleSetup* setup, bool* terminal, std::optional<OciConsoleSize>* consoleSize,
                    std::vector<std::string>* ignored) {
  bool haveArgs = false;
  setup->capabilities = {};
  setup->rlimits.clear();
  ObjectReader reader(ignored);
  auto ok = reader.read(
      value, pointer,
      [&](const std::string& key, const json& field, const std::string& path) -> Result<bool> {
        if (key == "terminal") {
          auto flag = getBool(field, path);
          if (!flag) return fail(flag.error());
          *terminal = *flag;
        } else if (key == "consoleSize") {
          OciConsoleSize size;
          ObjectReader sizeReader(ignored);
          auto read = sizeReader.read(
              field, path, [&](const std::string& k, const json& v, const std::string& at) -> Result<bool> {
                if (k != "height" && k != "width") return false;
                auto number = getUnsigned(v, at, 65535);
                if (!number) return fail(number.error());
                (k == "height" ? size.height : size.width) = static_cast<unsigned>(*number);
                return true;
              });
          if (!read) return fail(read.error());
          *consoleSize = size;
        } else if (key == "user") {
          ObjectReader userReader(ignored);
          auto read = userReader.read(
              field, path, [&](const std::string& k, const json& v, const std::string& at) -> Result<bool> {
                if (k == "uid" || k == "gid") {
                  auto id = getUnsigned(v, at, UINT32_MAX - 1);
                  if (!id) return fail(id.error());
                  (k == "uid" ? config->user.uid : config->user.gid) = static_cast<uid_t>(*id);
                } else if (k == "umask") {
                  auto mask = getUnsigned(v, at, 0777);
                  if (!mask) return fail(mask.error());
                  setup->umask = static_cast<mode_t>(*mask);
                } else if (k == "additionalGids") {
                  if (auto type = expect(v, json::value_t::array, at); !type) return fail(type.error());
                  config->user.additionalGids.clear();
                  for (size_t i = 0; i < v.size(); ++i) {
                    auto id = getUnsigned(v[i], fmt::format("{}/{}", at, i), UINT32_MAX - 1);
                    if (!id) return fail(id.error());
                    config->user.additionalGids.push_back(static_cast<gid_t>(*id));
                  }
                } else if (k == "username") {
                  return refuseIfAsked(v, at, "a user name is Windows-only");
                } else {
                  return false;
                }
                return true;
              });
          if (!read) return fail(read.error());
        } else if (key == "args") {
          auto args = getStrings(field, path);
          if (!args) return fail(args.error());
          if (args->empty() || args->front().empty()) return fail(fieldError(path, "a command is required"));
          config->argv = std::move(*args);
          haveArgs = true;
        } else if (key == "commandLine") {
          return refuseIfAsked(field, path, "commandLine is Windows-only");
        } else if (key == "env") {
          auto env = getStrings(field, path);
          if (!env) return fail(env.error());
          if (auto checked = checkEnv(*env, path); !checked) return fail(checked.error());
          config->env = std::move(*env);
        } else if (key == "cwd") {
          auto cwd = getString(field, path);
          if (!cwd) return fail(cwd.error());
          if (cwd->empty() || cwd->front() != '/')
            return fail(fieldError(path, fmt::format("\"{}\" is not an absolute path", *cwd)));
          config->workingDir = *cwd;
        } else if (key == "capabilities") {
          ObjectReader capsReader(ignored);
          auto read = capsReader.read(
              field, path, [&](const std::string& k, const json& v, const std::string& at) -> Result<bool> {
                std::vector<std::string>* set = k == "bounding"      ? &setup->capabilities.bounding
                                                : k == "effective"   ? &setup->capabilities.effective
                                                : k == "permitted"   ? &setup->capabilities.permitted
                                                : k == "inheritable" ? &setup->capabilities.inheritable
                                                : k == "ambient"     ? &setup->capabilities.ambient
                                                                     : nullptr;
                if (set == nullptr) return false;
                auto names = getStrings(v, at);
                if (!names) return fail(names.error());
                for (size_t i = 0; i < names->size(); ++i) {
                  if (!capabilityNumbers({(*names)[i]}))
                    return fail(fieldError(fmt::format("{}/{}", at, i),
                                           fmt::format("unknown capability \"{}\"", (*names)[i])));
                }
                *set = std::move(*names);
                return true;
              });
          if (!read) return fail(read.error());
        } else if (key == "rlimits") {
          if (auto type = expect(field, json::value_t::array, path); !type) return fail(type.error());
          for (size_t i = 0; i < field.size(); ++i) {
            const std::string at = fmt::format("{}/{}", path, i);
            ProcessRlimit limit;
            bool haveType = false, haveSoft = false, haveHard = false;
            ObjectReader limitReader(ignored);
            auto read = limitReader.read(
                field[i], at, [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                  if (k == "type") {
                    auto name = getString(v, p);
                    if (!name) return fail(name.error());
                    auto known = std::find_if(std::begin(kRlimits), std::end(kRlimits),
                                              [&](const RlimitName& r) { return *name == r.name; });
                    if (known == std::end(kRlimits))
                      return fail(fieldError(p, fmt::format("unknown rlimit \"{}\"", *name)));
                    if (std::any_of(setup->rlimits.begin(), setup->rlimits.end(),
                                    [&](const ProcessRlimit& r) { return r.name == *name; }))
                      return fail(fieldError(p, fmt::format("rlimit \"{}\" is given twice", *name)));
                    limit.name = *name;
                    limit.resource = known->resource;
                    haveType = true;
                  } else if (k == "soft" || k == "hard") {
                    auto number = getUnsigned(v, p);
                    if (!number) return fail(number.error());
                    (k == "soft" ? limit.soft : limit.hard) = *number;
                    (k == "soft" ? haveSoft : haveHard) = true;
                  } else {
                    return false;
                  }
                  return true;
                });
            if (!read) return fail(read.error());
            if (!haveType || !haveSoft || !haveHard)
              return fail(fieldError(at, "type, soft and hard are all required"));
            if (limit.soft > limit.hard)
              return fail(
                  fieldError(at + "/soft", fmt::format("{} is above hard {}", limit.soft, limit.hard)));
            setup->rlimits.push_back(std::move(limit));
          }
        } else if (key == "noNewPrivileges") {
          auto flag = getBool(field, path);
          if (!flag) return fail(flag.error());
          setup->noNewPrivileges = *flag;
        } else if (key == "oomScoreAdj") {
          auto score = getInt(field, path);
          if (!score) return fail(score.error());
          if (*score < -1000 || *score > 1000)
            return fail(fieldError(path, fmt::format("{} is outside -1000..1000", *score)));
          setup->oomScoreAdj = static_cast<int>(*score);
        } else if (key == "apparmorProfile") {
          return refuseIfAsked(field, path, "AppArmor profiles");
        } else if (key == "selinuxLabel") {
          return refuseIfAsked(field, path, "SELinux labels");
        } else if (key == "ioPriority" || key == "scheduler" || key == "execCPUAffinity") {
          return refuseIfAsked(field, path, key);
        } else {
          return false;
        }
        return true;
      });
  if (!ok) return ok;
  if (!haveArgs) return fail(fieldError(pointer + "/args", "is required"));
  if (*terminal && consoleSize->has_value() && ((*consoleSize)->height == 0 || (*consoleSize)->width == 0))
    return fail(fieldError(pointer + "/consoleSize", "height and width must be above 0"));
  return {};
}

Status parseHooks(const json& value, const std::string& pointer, OciHooks* hooks,
                  std::vector<std::string>* ignored) {
  ObjectReader reader(ignored);
  return reader.read(
      value, pointer,
      [&](const std::string& key, const json& field, const std::string& path) -> Result<bool> {
        std::vector<OciHook>* list = key == "prestart"          ? &hooks->prestart
                                     : key == "createRuntime"   ? &hooks->createRuntime
                                     : key == "createContainer" ? &hooks->createContainer
                                     : key == "startContainer"  ? &hooks->startContainer
                                     : key == "poststart"       ? &hooks->poststart
                                     : key == "poststop"        ? &hooks->poststop
                                                                : nullptr;
        if (list == nullptr) return false;
        if (field.is_null()) return true;
        if (auto type = expect(field, json::value_t::array, path); !type) return fail(type.error());
        for (size_t i = 0; i < field.size(); ++i) {
          const std::string at = fmt::format("{}/{}", path, i);
          OciHook hook;
          ObjectReader hookReader(ignored);
          auto read = hookReader.read(
              field[i], at, [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                if (k == "path") {
                  auto text = getString(v, p);
                  if (!text) return fail(text.error());
                  if (text->empty() || text->front() != '/')
                    return fail(fieldError(p, fmt::format("\"{}\" is not an absolute path", *text)));
                  hook.path = *text;
                } else if (k == "args" || k == "env") {
                  auto strings = getStrings(v, p);
                  if (!strings) return fail(strings.error());
                  if (k == "env") {
                    if (auto checked = checkEnv(*strings, p); !checked) return fail(checked.error());
                  }
                  (k == "args" ? hook.args : hook.env) = std::move(*strings);
                } else if (k == "timeout") {
                  auto seconds = getInt(v, p);
                  if (!seconds) return fail(seconds.error());
                  if (*seconds <= 0) return fail(fieldError(p, fmt::format("{} is not above 0", *seconds)));
                  hook.timeoutSeconds = static_cast<int>(std::min<int64_t>(*seconds, INT32_MAX));
                } else {
                  return false;
                }
                return true;
              });
          if (!read) return fail(read.error());
          if (hook.path.empty()) return fail(fieldError(at + "/path", "is required"));
          list->push_back(std::move(hook));
        }
        return true;
      });
}

Result<std::optional<uint32_t>> deviceNumber(const json& value, const std::string& pointer) {
  if (value.is_null()) return std::optional<uint32_t>();
  auto number = getInt(value, pointer);
  if (!number) return fail(number.error());
  if (*number == -1) return std::optional<uint32_t>();
  if (*number < 0 || *number > UINT32_MAX)
    return fail(fieldError(pointer, fmt::format("{} is out of range", *number)));
  return std::optional<uint32_t>(static_cast<uint32_t>(*number));
}

// linux.resources.devices over runc's default allow list: a deny-all entry resets the list, allow entries
// add to it. What a deny-all-plus-allow list cannot say (a narrower deny, type "a" allows) is refused.
Status parseDeviceCgroup(const json& value, const std::string& pointer, std::vector<DeviceRule>* rules,
                         std::vector<std::string>* ignored) {
  if (auto ok = expect(value, json::value_t::array, pointer); !ok) return ok;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string at = fmt::format("{}/{}", pointer, i);
    bool allow = false, haveAllow = false;
    std::string type = "a", access = "rwm";
    std::optional<uint32_t> major, minor;
    ObjectReader reader(ignored);
    auto ok = reader.read(value[i], at,
                          [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                            if (k == "allow") {
                              auto flag = getBool(v, p);
                              if (!flag) return fail(flag.error());
                              allow = *flag;
                              haveAllow = true;
                            } else if (k == "type" || k == "access") {
                              auto text = getString(v, p);
                              if (!text) return fail(text.error());
                              (k == "type" ? type : access) = *text;
                            } else if (k == "major" || k == "minor") {
                              auto number = deviceNumber(v, p);
                              if (!number) return fail(number.error());
                              (k == "major" ? major : minor) = *number;
                            } else {
                              return false;
                            }
                            return true;
                          });
    if (!ok) return ok;
    if (!haveAllow) return fail(fieldError(at + "/allow", "is required"));
    if (type != "a" && type != "c" && type != "b")
      return fail(fieldError(at + "/type", fmt::format("\"{}\" is not a, c or b", type)));
    auto bits = parseDeviceAccess(access, at + "/access");
    if (!bits) return fail(bits.error());
    if (!allow) {
      if (type == "a" && !major && !minor && *bits == kDeviceAllAccess) {
        rules->clear();
        continue;
      }
      return fail(unsupported(at, "a deny rule narrower than all devices"));
    }
    if (type == "a") return fail(unsupported(at, "allowing every device (type \"a\")"));
    rules->push_back(DeviceRule{type == "c" ? DeviceType::Char : DeviceType::Block, major, minor, *bits});
  }
  return {};
}

// linux.resources.hugepageLimits: [{"pageSize": "2MB", "limit": BYTES}], sizes as the kernel names them
// (whether the host has them is checkBundleOnHost's).
Status parseHugepageLimits(const json& value, const std::string& pointer, std::vector<HugepageLimit>* limits,
                           std::vector<std::string>* ignored) {
  if (value.is_null()) return {};
  if (auto ok = expect(value, json::value_t::array, pointer); !ok) return ok;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string at = fmt::format("{}/{}", pointer, i);
    HugepageLimit limit;
    bool haveSize = false, haveLimit = false;
    ObjectReader reader(ignored);
    auto ok = reader.read(value[i], at,
                          [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                            if (k == "pageSize") {
                              auto size = getString(v, p);
                              if (!size) return fail(size.error());
                              limit.pageSize = *size;
                              haveSize = true;
                            } else if (k == "limit") {
                              auto bytes = getUnsigned(v, p);
                              if (!bytes) return fail(bytes.error());
                              limit.bytes = *bytes;
                              haveLimit = true;
                            } else {
                              return false;
                            }
                            return true;
                          });
    if (!ok) return ok;
    if (!haveSize) return fail(fieldError(at + "/pageSize", "is required"));
    if (!haveLimit) return fail(fieldError(at + "/limit", "is required"));
    limits->push_back(std::move(limit));
    ResourceLimits check;
    check.hugepages = *limits;
    if (auto valid = validateResourceLimits(check); !valid)
      return fail(fieldError(at + "/pageSize", valid.error().message()));
  }
  return {};
}

Status parseResources(const json& value, const std::string& pointer, ContainerConfig* config,
                      BundleSetup* setup, std::vector<std::string>* ignored) {
  ObjectReader reader(ignored);
  return reader.read(
      value, pointer,
      [&](const std::string& key, const json& field, const std::string& path) -> Result<bool> {
        if (key == "devices") {
          if (auto ok = parseDeviceCgroup(field, path, &setup->deviceRules, ignored); !ok)
            return fail(ok.error());
        } else if (key == "memory") {
          std::optional<int64_t> limit, swap;
          ObjectReader memoryReader(ignored);
          auto ok = memoryReader.read(
              field, path, [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                if (k == "limit" || k == "swap") {
                  auto number = getInt(v, p);
                  if (!number) return fail(number.error());
                  (k == "limit" ? limit : swap) = *number;
                } else if (k == "reservation" || k == "kernel" || k == "kernelTCP" || k == "swappiness" ||
                           k == "disableOOMKiller" || k == "useHierarchy" || k == "checkBeforeUpdate") {
                  return refuseIfAsked(v, p, "only memory limit and swap (equal to it)");
                } else {
                  return false;
                }
                return true;
              });
          if (!ok) return fail(ok.error());
          if (limit && *limit > 0) {
            if (*limit < (int64_t{1} << 20))
              return fail(fieldError(path + "/limit", fmt::format("{} bytes is below 1 MiB", *limit)));
            config->limits.memoryBytes = static_cast<uint64_t>(*limit);
          } else if (limit && *limit != -1 && *limit != 0) {
            return fail(fieldError(path + "/limit", fmt::format("{} is not a limit", *limit)));
          }
          if (swap && *swap != -1 && *swap != 0 && (!limit || *swap != *limit))
            return fail(unsupported(path + "/swap",
                                    "swap other than equal to the limit: corral gives a container no swap "
                                    "beyond its memory limit"));
        } else if (key == "cpu") {
          std::optional<int64_t> quota;
          std::optional<uint64_t> period;
          std::optional<uint64_t> shares;
          ObjectReader cpuReader(ignored);
          auto ok = cpuReader.read(
              field, path, [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                if (k == "quota") {
                  auto number = getInt(v, p);
                  if (!number) return fail(number.error());
                  quota = *number;
                } else if (k == "period") {
                  auto number = getUnsigned(v, p, 1000000);
                  if (!number) return fail(number.error());
                  period = *number;
                } else if (k == "shares") {
                  auto number = getUnsigned(v, p, 262144);
                  if (!number) return fail(number.error());
                  if (*number != 0 && *number < 2)
                    return fail(fieldError(p, fmt::format("{} is below 2", *number)));
                  if (*number != 0) shares = *number;
                } else if (k == "realtimeRuntime" || k == "realtimePeriod" || k == "cpus" || k == "mems" ||
                           k == "idle" || k == "burst") {
                  return refuseIfAsked(v, p, "only cpu shares, quota and period");
                } else {
                  return false;
                }
                return true;
              });
          if (!ok) return fail(ok.error());
          if (quota && *quota > 0) {
            uint64_t over = period.value_or(100000);
            if (over < 1000)
              return fail(fieldError(path + "/period", fmt::format("{} µs is below 1000", over)));
            uint64_t millis = static_cast<uint64_t>(*quota) * 1000 / over;
            if (millis == 0) return fail(fieldError(path + "/quota", "is less than a thousandth of a CPU"));
            config->limits.cpuMillis = static_cast<uint32_t>(std::min<uint64_t>(millis, 1024 * 1000));
          }
          config->limits.cpuShares = shares;
        } else if (key == "pids") {
          ObjectReader pidsReader(ignored);
          auto ok = pidsReader.read(
              field, path, [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                if (k != "limit") return false;
                auto number = getInt(v, p);
                if (!number) return fail(number.error());
                if (*number > 0)
                  config->limits.pids = static_cast<uint32_t>(std::min<int64_t>(*number, 4194304));
                return true;
              });
          if (!ok) return fail(ok.error());
        } else if (key == "hugepageLimits") {
          if (auto ok = parseHugepageLimits(field, path, &config->limits.hugepages, ignored); !ok)
            return fail(ok.error());
        } else if (key == "blockIO" || key == "network" || key == "rdma" || key == "unified") {
          return refuseIfAsked(field, path, key);
        } else {
          return false;
        }
        return true;
      });
}

Status parseLinuxDevices(const json& value, const std::string& pointer, ContainerConfig* config,
                         std::vector<std::string>* ignored) {
  if (auto ok = expect(value, json::value_t::array, pointer); !ok) return ok;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string at = fmt::format("{}/{}", pointer, i);
    DeviceNode node;
    std::string type;
    bool haveMajor = false, haveMinor = false;
    ObjectReader reader(ignored);
    auto ok = reader.read(value[i], at,
                          [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                            if (k == "path" || k == "type") {
                              auto text = getString(v, p);
                              if (!text) return fail(text.error());
                              (k == "path" ? node.path : type) = *text;
                            } else if (k == "major" || k == "minor") {
                              auto number = getUnsigned(v, p, UINT32_MAX);
                              if (!number) return fail(number.error());
                              (k == "major" ? node.major : node.minor) = static_cast<uint32_t>(*number);
                              (k == "major" ? haveMajor : haveMinor) = true;
                            } else if (k == "fileMode") {
                              auto mode = getUnsigned(v, p, 07777);
                              if (!mode) return fail(mode.error());
                              node.mode = static_cast<mode_t>(*mode & 0777);
                            } else if (k == "uid" || k == "gid") {
                              auto id = getUnsigned(v, p, UINT32_MAX - 1);
                              if (!id) return fail(id.error());
                              (k == "uid" ? node.uid : node.gid) = static_cast<uid_t>(*id);
                            } else {
                              return false;
                            }
                            return true;
                          });
    if (!ok) return ok;
    if (!node.path.starts_with("/dev/") || node.path.find("/../") != std::string::npos ||
        node.path.ends_with("/.."))
      return fail(fieldError(at + "/path", fmt::format("\"{}\" is not a path under /dev", node.path)));
    if (type == "c" || type == "u") {
      node.type = DeviceType::Char;
    } else if (type == "b") {
      node.type = DeviceType::Block;
    } else if (type == "p") {
      return fail(unsupported(at + "/type", "FIFO devices"));
    } else {
      return fail(fieldError(at + "/type", fmt::format("\"{}\" is not c, u, b or p", type)));
    }
    if (!haveMajor || !haveMinor) return fail(fieldError(at, "major and minor are required"));
    node.hostPath = node.path;
    config->devices.push_back(std::move(node));
  }
  return {};
}

Status parseCgroupsPath(const std::string& text, const std::string& pointer, const OciParseContext& context,
                        ContainerConfig* config) {
  config->cgroupOptions.parent = context.cgroupParent;
  config->name = context.id;
  if (text.empty()) return {};
  if (text.find(':') != std::string::npos)
    return fail(unsupported(pointer, "systemd \"slice:prefix:name\" paths (use cgroupfs paths)"));
  std::string path = text;
  while (!path.empty() && path.front() == '/') path.erase(0, 1);
  std::vector<std::string> parts;
  for (size_t begin = 0; begin <= path.size();) {
    size_t end = path.find('/', begin);
    if (end == std::string::npos) end = path.size();
    std::string part = path.substr(begin, end - begin);
    if (part.empty() || part == "." || part == "..")
      return fail(fieldError(pointer, fmt::format("\"{}\" has an empty, \".\" or \"..\" component", text)));
    parts.push_back(part);
    begin = end + 1;
  }
  if (parts.size() > 2) return fail(unsupported(pointer, "cgroup paths deeper than PARENT/NAME"));
  config->name = parts.back();
  if (parts.size() == 2) config->cgroupOptions.parent = parts.front();
  return {};
}

// linux.uidMappings / gidMappings: up to 340 ranges each (the kernel's limit), uids and gids independent,
// checked as the kernel checks a map (findIdMapProblem) so a refusal names the range and its member.
Result<std::vector<IdMapRange>> parseIdMappings(const json& value, const std::string& pointer,
                                                std::vector<std::string>* ignored) {
  if (auto ok = expect(value, json::value_t::array, pointer); !ok) return fail(ok.error());
  std::vector<IdMapRange> ranges;
  for (size_t i = 0; i < value.size() && i <= kMaxIdMapRanges; ++i) {
    const std::string entry = fmt::format("{}/{}", pointer, i);
    int64_t containerId = -1, hostId = -1, size = -1;
    ObjectReader reader(ignored);
    auto ok =
        reader.read(value[i], entry,
                    [&](const std::string& key, const json& field, const std::string& at) -> Result<bool> {
                      int64_t* target = key == "containerID" ? &containerId
                                        : key == "hostID"    ? &hostId
                                        : key == "size"      ? &size
                                                             : nullptr;
                      if (target == nullptr) return false;
                      auto number = getInt(field, at);
                      if (!number) return fail(number.error());
                      if (*number < 0 || *number > UINT32_MAX)
                        return fail(fieldError(at, fmt::format("{} is not an id", *number)));
                      *target = *number;
                      return true;
                    });
    if (!ok) return fail(ok.error());
    for (auto [name, number] : {std::pair{"containerID", containerId}, {"hostID", hostId}, {"size", size}})
      if (number < 0) return fail(fieldError(entry + "/" + name, "is required"));
    ranges.push_back(IdMapRange{.containerId = static_cast<uint32_t>(containerId),
                                .hostId = static_cast<uint32_t>(hostId),
                                .count = static_cast<uint32_t>(size)});
  }
  if (auto problem = findIdMapProblem(ranges)) {
    std::string at = ranges.empty() || ranges.size() > kMaxIdMapRanges
                         ? pointer
                         : fmt::format("{}/{}{}", pointer, problem->index,
                                       problem->field.empty() ? "" : "/" + problem->field);
    std::string reason =
        ranges.size() > kMaxIdMapRanges
            ? fmt::format("{} ranges: the kernel takes at most {}", value.size(), kMaxIdMapRanges)
            : problem->reason;
    return fail(fieldError(at, reason));
  }
  return ranges;
}

// A user namespace of the container's own and its mappings come together; one joined by path has its
// maps already, read by checkBundleOnHost, and mappings beside it are refused: they could only be ignored
// (crun 1.8 and runc 1.1 take them and write nothing).
Status checkUserNamespace(const std::optional<std::vector<IdMapRange>>& uid,
                          const std::optional<std::vector<IdMapRange>>& gid, const std::string& uidPointer,
                          const std::string& gidPointer, ContainerConfig* config, const BundleSetup* setup) {
  const bool newUserNamespace = (setup->cloneFlags & CLONE_NEWUSER) != 0;
  const bool joined = !setup->userNamespacePath.empty();
  if (joined) {
    if (uid || gid)
      return fail(fieldError(uid ? uidPointer : gidPointer,
                             fmt::format("the user namespace is joined by path (\"{}\"): its maps exist and "
                                         "cannot be changed, give no mappings",
                                         setup->userNamespacePath)));
    config->userNamespace = IdMapping{};
  } else if (!newUserNamespace) {
    if (uid || gid)
      return fail(fieldError(uid ? uidPointer : gidPointer, "id mappings need a user namespace"));
    return {};
  } else {
    if (!uid) return fail(fieldError(uidPointer, "a user namespace needs uidMappings"));
    if (!gid) return fail(fieldError(gidPointer, "a user namespace needs gidMappings"));
    // The process becomes the namespace's root before anything else (as under runc, which refuses too).
    if (!mapId(*uid, 0)) return fail(fieldError(uidPointer, "container uid 0 is not mapped"));
    if (!mapId(*gid, 0)) return fail(fieldError(gidPointer, "container gid 0 is not mapped"));
    config->userNamespace = IdMapping{.uids = *uid, .gids = *gid};
  }
  // Where mknod is refused the host's node is bound instead: the same path on the host (as runc does).
  for (DeviceNode& node : config->devices)
    if (node.hostPath.empty()) node.hostPath = node.path;
  return {};
}

// linux.timeOffsets: {"monotonic": {"secs": S, "nanosecs": N}, "boottime": {...}}, the two clocks a time
// namespace offsets.
Status parseTimeOffsets(const json& value, const std::string& pointer, BundleSetup* setup,
                        std::vector<std::string>* ignored) {
  ObjectReader reader(ignored);
  return reader.read(
      value, pointer,
      [&](const std::string& clock, const json& field, const std::string& path) -> Result<bool> {
        if (clock != "monotonic" && clock != "boottime")
          return fail(fieldError(
              path,
              fmt::format("\"{}\" is not a clock a time namespace offsets (monotonic, boottime)", clock)));
        ClockOffset offset;
        ObjectReader offsetReader(ignored);
        auto read = offsetReader.read(
            field, path, [&](const std::string& k, const json& v, const std::string& at) -> Result<bool> {
              if (k == "secs") {
                auto seconds = getInt(v, at);
                if (!seconds) return fail(seconds.error());
                offset.seconds = *seconds;
              } else if (k == "nanosecs") {
                auto nanoseconds = getUnsigned(v, at, 999999999);
                if (!nanoseconds) return fail(nanoseconds.error());
                offset.nanoseconds = static_cast<int64_t>(*nanoseconds);
              } else {
                return false;
              }
              return true;
            });
        if (!read) return fail(read.error());
        (clock == "monotonic" ? setup->monotonicOffset : setup->boottimeOffset) = offset;
        return true;
      });
}

Status parseLinux(const json& value, const std::string& pointer, const OciParseContext& context,
                  ContainerConfig* config, BundleSetup* setup, std::vector<std::string>* ignored) {
  bool haveNamespaces = false;
  std::optional<std::vector<IdMapRange>> uidMapping, gidMapping;
  std::string uidPointer = pointer + "/uidMappings", gidPointer = pointer + "/gidMappings";
  std::string cgroupsPath;
  std::map<std::string, std::string> sysctls;
  const json* seccomp = nullptr;
  std::string timeOffsetsPointer;
  ObjectReader reader(ignored);
  auto ok = reader.read(
      value, pointer,
      [&](const std::string& key, const json& field, const std::string& path) -> Result<bool> {
        if (key == "namespaces") {
          if (auto parsed = parseNamespaces(field, path, setup, ignored); !parsed)
            return fail(parsed.error());
          haveNamespaces = true;
        } else if (key == "uidMappings" || key == "gidMappings") {
          auto mapping = parseIdMappings(field, path, ignored);
          if (!mapping) return fail(mapping.error());
          (key == "uidMappings" ? uidMapping : gidMapping) = *mapping;
          (key == "uidMappings" ? uidPointer : gidPointer) = path;
        } else if (key == "devices") {
          if (auto parsed = parseLinuxDevices(field, path, config, ignored); !parsed)
            return fail(parsed.error());
        } else if (key == "cgroupsPath") {
          auto text = getString(field, path);
          if (!text) return fail(text.error());
          cgroupsPath = *text;
        } else if (key == "resources") {
          if (auto parsed = parseResources(field, path, config, setup, ignored); !parsed)
            return fail(parsed.error());
        } else if (key == "sysctl") {
          if (field.is_null()) return true;
          if (auto type = expect(field, json::value_t::object, path); !type) return fail(type.error());
          for (const auto& [name, setting] : field.items()) {
            auto text = getString(setting, path + "/" + name);
            if (!text) return fail(text.error());
            sysctls[name] = *text;
          }
        } else if (key == "seccomp") {
          seccomp = &field;
        } else if (key == "rootfsPropagation") {
          auto text = getString(field, path);
          if (!text) return fail(text.error());
          auto propagation = std::find_if(std::begin(kPropagation), std::end(kPropagation),
                                          [&](const PropagationOption& o) { return *text == o.name; });
          if (propagation == std::end(kPropagation))
            return fail(fieldError(
                path, fmt::format("\"{}\" is not a propagation (private, rprivate, shared, ...)", *text)));
          // "/" as a whole: a propagation there is always recursive.
          setup->root.propagation = propagation->flags | MS_REC;
        } else if (key == "maskedPaths" || key == "readonlyPaths") {
          auto paths = getStrings(field, path);
          if (!paths) return fail(paths.error());
          for (size_t i = 0; i < paths->size(); ++i) {
            const std::string& p = (*paths)[i];
            if (p.empty() || p.front() != '/' || p.find("/../") != std::string::npos || p.ends_with("/.."))
              return fail(fieldError(fmt::format("{}/{}", path, i),
                                     fmt::format("\"{}\" is not an absolute path inside the container", p)));
          }
          (key == "maskedPaths" ? setup->root.maskedPaths : setup->root.readonlyPaths) = std::move(*paths);
        } else if (key == "mountLabel") {
          return refuseIfAsked(field, path, "SELinux mount labels");
        } else if (key == "timeOffsets") {
          if (auto parsed = parseTimeOffsets(field, path, setup, ignored); !parsed)
            return fail(parsed.error());
          if (setup->monotonicOffset || setup->boottimeOffset) timeOffsetsPointer = path;
        } else if (key == "intelRdt" || key == "personality" || key == "memoryPolicy") {
          return refuseIfAsked(field, path, key);
        } else {
          return false;
        }
        return true;
      });
  if (!ok) return ok;
  if (!haveNamespaces)
    return fail(fieldError(pointer + "/namespaces", "is required (a mount namespace at least)"));
  // runc's rule: offsets are set when a time namespace is made, never on one that exists.
  if (!timeOffsetsPointer.empty() && !setup->newTimeNamespace)
    return fail(fieldError(timeOffsetsPointer,
                           setup->timeNamespacePath.empty()
                               ? "needs a time namespace of the container's own (add {\"type\": \"time\"})"
                               : "cannot change the offsets of a time namespace joined by path"));
  if (auto mapped = checkUserNamespace(uidMapping, gidMapping, uidPointer, gidPointer, config, setup);
      !mapped)
    return mapped;
  for (const auto& [name, setting] : sysctls) {
    const std::string at = pointer + "/sysctl/" + name;
    if (auto checked = checkSysctl(name, *setup, at); !checked) return checked;
    std::string procPath = "/proc/sys/" + name;
    std::replace(procPath.begin() + 10, procPath.end(), '.', '/');
    setup->sysctls.push_back(Sysctl{name, procPath, setting});
  }
  if (auto parsed = parseCgroupsPath(cgroupsPath, pointer + "/cgroupsPath", context, config); !parsed)
    return parsed;
  if (seccomp != nullptr && !seccomp->is_null()) {
    auto profile = parseSeccompProfile(seccomp->dump(), "linux.seccomp");
    if (!profile) {
      std::string at =
          pointer + "/seccomp" + (profile.error().field().empty() ? "" : "/" + profile.error().field());
      return fail(fieldError(at, profile.error().message()));
    }
    config->seccomp = std::move(*profile);
  }
  return {};
}

}  // namespace

Status validateContainerId(std::string_view id, std::string_view field) {
  auto allowed = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  };
  if (id.empty()) return fail(invalidField(std::string(field), "the container id is empty"));
  if (id.size() > 1024)
    return fail(invalidField(std::string(field), "the container id is longer than 1024 characters"));
  if (!allowed(id.front()) || id.front() == '.' || id.front() == '-' ||
      !std::all_of(id.begin(), id.end(), allowed))
    return fail(
        invalidField(std::string(field), "\"{}\" is not a container id: use [A-Za-z0-9][A-Za-z0-9_.-]*", id));
  return {};
}

Result<OciBundleConfig> parseOciConfig(std::string_view configText, const OciParseContext& context) {
  if (auto ok = validateContainerId(context.id); !ok) return fail(ok.error());
  json document;
  try {
    document = json::parse(configText);
  } catch (const json::exception& e) {
    return fail(fieldError("", fmt::format("config.json is not JSON: {}", e.what())));
  }
  if (!document.is_object()) return fail(fieldError("", "config.json must hold an object"));
  OciBundleConfig result;
  ContainerConfig& config = result.container;
  config.bundle.emplace();
  BundleSetup& setup = *config.bundle;
  config.seccomp = unconfinedProfile();
  config.hostname.clear();
  config.bundleDir = context.bundleDir;
  bool haveRoot = false, haveProcess = false, haveLinux = false;
  ObjectReader reader(&result.ignored);
  auto ok = reader.read(
      document, "", [&](const std::string& key, const json& field, const std::string& path) -> Result<bool> {
        if (key == "ociVersion") {
          auto version = getString(field, path);
          if (!version) return fail(version.error());
          if (!version->starts_with("1."))
            return fail(fieldError(path, fmt::format("\"{}\" is not a 1.x version", *version)));
          result.ociVersion = *version;
        } else if (key == "root") {
          ObjectReader rootReader(&result.ignored);
          auto read = rootReader.read(
              field, path, [&](const std::string& k, const json& v, const std::string& p) -> Result<bool> {
                if (k == "path") {
                  auto rootPath = getString(v, p);
                  if (!rootPath) return fail(rootPath.error());
                  if (rootPath->empty()) return fail(fieldError(p, "is empty"));
                  setup.root.rootfs = underBundle(context.bundleDir, *rootPath);
                  haveRoot = true;
                } else if (k == "readonly") {
                  auto flag = getBool(v, p);
                  if (!flag) return fail(flag.error());
                  setup.root.readonly = *flag;
                } else {
                  return false;
                }
                return true;
              });
          if (!read) return fail(read.error());
        } else if (key == "mounts") {
          if (field.is_null()) return true;
          if (auto type = expect(field, json::value_t::array, path); !type) return fail(type.error());
          for (size_t i = 0; i < field.size(); ++i) {
            BundleMount mount;
            if (auto parsed =
                    parseMount(field[i], fmt::format("{}/{}", path, i), context, &result.ignored, &mount);
                !parsed)
              return fail(parsed.error());
            setup.root.mounts.push_back(std::move(mount));
          }
        } else if (key == "process") {
          if (auto parsed = parseProcess(field, path, &config, &setup, &result.terminal, &result.consoleSize,
                                         &result.ignored);
              !parsed)
            return fail(parsed.error());
          haveProcess = true;
        } else if (key == "hostname" || key == "domainname") {
          auto name = getString(field, path);
          if (!name) return fail(name.error());
          if (name->size() > 64 || name->find('\0') != std::string::npos)
            return fail(fieldError(path, fmt::format("\"{}\" is longer than 64 characters", *name)));
          (key == "hostname" ? config.hostname : setup.domainname) = *name;
        } else if (key == "hooks") {
          if (auto parsed = parseHooks(field, path, &result.hooks, &result.ignored); !parsed)
            return fail(parsed.error());
        } else if (key == "annotations") {
          if (field.is_null()) return true;
          if (auto type = expect(field, json::value_t::object, path); !type) return fail(type.error());
          for (const auto& [name, annotation] : field.items()) {
            auto text = getString(annotation, path + "/" + name);
            if (!text) return fail(text.error());
            result.annotations[name] = *text;
          }
        } else if (key == "linux") {
          if (auto parsed = parseLinux(field, path, context, &config, &setup, &result.ignored); !parsed)
            return fail(parsed.error());
          haveLinux = true;
        } else if (key == "solaris" || key == "windows" || key == "vm" || key == "zos") {
          return refuseIfAsked(field, path, "corral-runtime runs Linux containers");
        } else {
          return false;
        }
        return true;
      });
  if (!ok) return fail(ok.error());
  // runc's default list comes after the bundle's rules, whatever they denied.
  for (const DeviceRule& rule : defaultDeviceRules()) setup.deviceRules.push_back(rule);
  if (result.ociVersion.empty()) return fail(fieldError("/ociVersion", "is required"));
  if (!haveRoot) return fail(fieldError("/root/path", "is required"));
  if (!haveProcess) return fail(unsupported("/process", "a container without a process"));
  if (!haveLinux) return fail(fieldError("/linux", "is required"));
  if ((!config.hostname.empty() || !setup.domainname.empty()) && !setup.setHostname)
    return fail(fieldError(config.hostname.empty() ? "/domainname" : "/hostname",
                           "needs the container's own uts namespace"));
  // Without a hostname a new uts namespace keeps the one it was copied from, as with runc and crun.
  if (config.hostname.empty()) setup.setHostname = false;
  return result;
}

Result<OciProcess> parseOciProcess(std::string_view processText, const ContainerConfig& base) {
  json document;
  try {
    document = json::parse(processText);
  } catch (const json::exception& e) {
    return fail(fieldError("/process", fmt::format("not JSON: {}", e.what())));
  }
  OciProcess result;
  result.config = base;
  if (!result.config.bundle) result.config.bundle.emplace();
  std::vector<std::string> ignored;
  if (auto ok = parseProcess(document, "/process", &result.config, &*result.config.bundle, &result.terminal,
                             &result.consoleSize, &ignored);
      !ok)
    return fail(ok.error());
  return result;
}

Status checkBundleOnHost(ContainerConfig& config) {
  if (!config.bundle) return {};
  BundleRoot& root = config.bundle->root;
  struct stat st {};
  if (::stat(root.rootfs.c_str(), &st) != 0)
    return fail(Error(ErrorKind::InvalidArgument,
                      fmt::format("/root/path: \"{}\": {}", root.rootfs.string(), std::strerror(errno)),
                      "/root/path", errno));
  if (!S_ISDIR(st.st_mode))
    return fail(fieldError("/root/path", fmt::format("\"{}\" is not a directory", root.rootfs.string())));
  if (!config.bundle->userNamespacePath.empty()) {
    auto maps = readUserNamespaceMaps(config.bundle->userNamespacePath);
    if (!maps)
      return fail(fieldError("/linux/namespaces",
                             fmt::format("user namespace \"{}\": {}", config.bundle->userNamespacePath,
                                         maps.error().message())));
    config.userNamespace = std::move(*maps);
  }
  if (!config.limits.hugepages.empty()) {
    auto sizes = hostHugepageSizes();
    if (!sizes) return fail(fieldError("/linux/resources/hugepageLimits", sizes.error().message()));
    for (size_t i = 0; i < config.limits.hugepages.size(); ++i) {
      const std::string& size = config.limits.hugepages[i].pageSize;
      if (std::find(sizes->begin(), sizes->end(), size) == sizes->end())
        return fail(fieldError(
            fmt::format("/linux/resources/hugepageLimits/{}/pageSize", i),
            fmt::format("\"{}\" is not a huge page size of this host (it has {})", size,
                        sizes->empty() ? std::string("none") : fmt::format("{}", fmt::join(*sizes, ", ")))));
    }
  }
  for (size_t i = 0; i < root.mounts.size(); ++i) {
    BundleMount& mount = root.mounts[i];
    if ((mount.flags & MS_BIND) == 0) continue;
    if (::stat(mount.source.c_str(), &st) != 0)
      return fail(Error(ErrorKind::InvalidArgument,
                        fmt::format("/mounts/{}/source: \"{}\": {}", i, mount.source, std::strerror(errno)),
                        fmt::format("/mounts/{}/source", i), errno));
    mount.fileTarget = !S_ISDIR(st.st_mode);
  }
  return {};
}

std::string defaultOciSpec() {
  json caps = json::array({"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"});
  json spec = {
      {"ociVersion", "1.0.2"},
      {"process",
       {{"terminal", true},
        {"user", {{"uid", 0}, {"gid", 0}}},
        {"args", json::array({"sh"})},
        {"env",
         json::array({"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"})},
        {"cwd", "/"},
        {"capabilities", {{"bounding", caps}, {"effective", caps}, {"permitted", caps}, {"ambient", caps}}},
        {"rlimits", json::array({{{"type", "RLIMIT_NOFILE"}, {"hard", 1024}, {"soft", 1024}}})},
        {"noNewPrivileges", true}}},
      {"root", {{"path", "rootfs"}, {"readonly", true}}},
      {"hostname", "corral"},
      {"mounts", json::array({
                     {{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
                     {{"destination", "/dev"},
                      {"type", "tmpfs"},
                      {"source", "tmpfs"},
                      {"options", json::array({"nosuid", "strictatime", "mode=755", "size=65536k"})}},
                     {{"destination", "/dev/pts"},
                      {"type", "devpts"},
                      {"source", "devpts"},
                      {"options", json::array({"nosuid", "noexec", "newinstance", "ptmxmode=0666",
                                               "mode=0620", "gid=5"})}},
                     {{"destination", "/dev/shm"},
                      {"type", "tmpfs"},
                      {"source", "shm"},
                      {"options", json::array({"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"})}},
                     {{"destination", "/dev/mqueue"},
                      {"type", "mqueue"},
                      {"source", "mqueue"},
                      {"options", json::array({"nosuid", "noexec", "nodev"})}},
                     {{"destination", "/sys"},
                      {"type", "sysfs"},
                      {"source", "sysfs"},
                      {"options", json::array({"nosuid", "noexec", "nodev", "ro"})}},
                     {{"destination", "/sys/fs/cgroup"},
                      {"type", "cgroup"},
                      {"source", "cgroup"},
                      {"options", json::array({"nosuid", "noexec", "nodev", "relatime", "ro"})}},
                 })},
      {"linux",
       {{"resources", {{"devices", json::array({{{"allow", false}, {"access", "rwm"}}})}}},
        {"namespaces", json::array({{{"type", "pid"}},
                                    {{"type", "network"}},
                                    {{"type", "ipc"}},
                                    {{"type", "uts"}},
                                    {{"type", "mount"}},
                                    {{"type", "cgroup"}}})},
        {"maskedPaths", json::array({"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                                     "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                                     "/proc/sched_debug", "/sys/firmware", "/proc/scsi"})},
        {"readonlyPaths",
         json::array({"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"})}}},
  };
  return spec.dump(4) + "\n";
}

}  // namespace corral::container
