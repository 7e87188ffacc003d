// docker run's rules for what an image's container runs, and the User lookup through its layer stack.
#include "images/oci/launch.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "core/text.h"
#include "core/unique_fd.h"

namespace corral::images {
namespace {

constexpr uint32_t kMaxId = 0x7fffffff;  // runc's maxID: ids are signed in much of userland
constexpr size_t kMaxFileBytes = size_t{4} << 20;

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  for (;;) {
    size_t at = text.find(separator);
    parts.push_back(text.substr(0, at));
    if (at == std::string_view::npos) return parts;
    text.remove_prefix(at + 1);
  }
}

std::optional<uint32_t> parseId(std::string_view text) {
  uint32_t value = 0;
  auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || error != std::errc() || end != text.data() + text.size() || value > kMaxId)
    return std::nullopt;
  return value;
}

bool isNumber(std::string_view text) {
  return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; });
}

struct PasswdEntry {
  std::string_view name;
  uint32_t uid = 0, gid = 0;
  std::string_view home;
};
struct GroupEntry {
  std::string_view name;
  uint32_t gid = 0;
  std::vector<std::string_view> members;
};

// Lines of a passwd/group file; blank lines, comments and malformed entries are skipped (as runc does).
std::vector<std::vector<std::string_view>> entries(std::string_view text, size_t minFields) {
  std::vector<std::vector<std::string_view>> result;
  for (std::string_view line : split(text, '\n')) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty() || line.front() == '#') continue;
    auto fields = split(line, ':');
    if (fields.size() >= minFields) result.push_back(std::move(fields));
  }
  return result;
}

std::vector<PasswdEntry> parsePasswd(std::string_view text) {
  std::vector<PasswdEntry> users;
  for (const auto& f : entries(text, 7)) {
    auto uid = parseId(f[2]);
    auto gid = parseId(f[3]);
    if (uid && gid) users.push_back({f[0], *uid, *gid, f[5]});
  }
  return users;
}

std::vector<GroupEntry> parseGroup(std::string_view text) {
  std::vector<GroupEntry> groups;
  for (const auto& f : entries(text, 4)) {
    auto gid = parseId(f[2]);
    if (!gid) continue;
    GroupEntry group{f[0], *gid, {}};
    if (!f[3].empty()) group.members = split(f[3], ',');
    groups.push_back(std::move(group));
  }
  return groups;
}

}  // namespace

Result<std::vector<std::string>> launchArgv(const ImageConfig& config,
                                            const std::vector<std::string>& command) {
  std::vector<std::string> argv = config.entrypoint;
  const std::vector<std::string>& arguments = command.empty() ? config.cmd : command;
  argv.insert(argv.end(), arguments.begin(), arguments.end());
  if (argv.empty())
    return fail(invalidField("command", "the image has no Entrypoint or Cmd: give a command to run"));
  if (argv.front().empty()) return fail(invalidField("command", "the program to run is empty"));
  return argv;
}

std::vector<std::string> launchEnv(const ImageConfig& config, const std::vector<std::string>& userEnv,
                                   const LaunchUser& user) {
  auto key = [](const std::string& entry) { return std::string_view(entry).substr(0, entry.find('=')); };
  std::vector<std::string> env;
  for (const std::string& entry : config.env) {
    bool replaced =
        std::any_of(userEnv.begin(), userEnv.end(), [&](auto& u) { return key(u) == key(entry); });
    if (!replaced) env.push_back(entry);
  }
  env.insert(env.end(), userEnv.begin(), userEnv.end());
  if (std::none_of(env.begin(), env.end(), [&](auto& e) { return key(e) == "HOME"; }))
    env.push_back("HOME=" + user.home);
  return env;
}

Result<LaunchUser> resolveUser(std::string_view user, const std::optional<std::string>& passwd,
                               const std::optional<std::string>& group, std::string_view source) {
  const std::string shown = terminalSafe(user);
  size_t colon = user.find(':');
  std::string_view userPart = user.substr(0, colon);
  std::optional<std::string_view> groupPart;
  if (colon != std::string_view::npos) groupPart = user.substr(colon + 1);
  if (groupPart && groupPart->empty())
    return fail(invalidField("user", "{} \"{}\": the group after ':' is empty", source, shown));

  LaunchUser result;
  std::optional<uint32_t> uidArg;
  if (isNumber(userPart)) {
    uidArg = parseId(userPart);
    if (!uidArg)
      return fail(invalidField("user", "{} \"{}\": uid out of range (0-{})", source, shown, kMaxId));
  }
  std::vector<PasswdEntry> users = passwd ? parsePasswd(*passwd) : std::vector<PasswdEntry>{};
  auto match = std::find_if(users.begin(), users.end(), [&](const PasswdEntry& entry) {
    if (userPart.empty()) return entry.uid == 0;  // the default user is root
    return uidArg ? entry.uid == *uidArg : entry.name == userPart;
  });
  std::string_view matchedName;
  if (match != users.end()) {
    matchedName = match->name;
    result.uid = match->uid;
    result.gid = match->gid;
    if (!match->home.empty()) result.home = std::string(match->home);
  } else if (!userPart.empty()) {
    if (!uidArg) {
      return fail(invalidField("user", "{} \"{}\": no user \"{}\" in the image's /etc/passwd{}",
                               source, shown, terminalSafe(userPart), passwd ? "" : " (the image has none)"));
    }
    result.uid = *uidArg;  // a number needs no entry
  }

  if (!groupPart && matchedName.empty()) return result;
  std::vector<GroupEntry> groups = group ? parseGroup(*group) : std::vector<GroupEntry>{};
  if (groupPart) {
    std::optional<uint32_t> gidArg;
    if (isNumber(*groupPart)) {
      gidArg = parseId(*groupPart);
      if (!gidArg)
        return fail(invalidField("user", "{} \"{}\": gid out of range (0-{})", source, shown, kMaxId));
    }
    auto found = std::find_if(groups.begin(), groups.end(), [&](const GroupEntry& entry) {
      return gidArg ? entry.gid == *gidArg : entry.name == *groupPart;
    });
    if (found != groups.end()) {
      result.gid = found->gid;
    } else if (gidArg) {
      result.gid = *gidArg;
    } else {
      return fail(invalidField("user", "{} \"{}\": no group \"{}\" in the image's /etc/group{}",
                               source, shown, terminalSafe(*groupPart), group ? "" : " (the image has none)"));
    }
    return result;  // supplementary groups only in the implicit form (runc)
  }
  for (const GroupEntry& entry : groups) {
    if (std::find(entry.members.begin(), entry.members.end(), matchedName) != entry.members.end())
      result.additionalGids.push_back(entry.gid);
  }
  return result;
}

Result<std::optional<std::string>> readThroughLayers(
    const std::vector<std::filesystem::path>& layersBaseFirst, std::string_view path) {
  if (path.empty() || path.front() != '/')
    return fail(invalidField("path", "\"{}\" is not an absolute path", terminalSafe(path)));
  std::vector<std::string_view> components;
  for (std::string_view part : split(path.substr(1), '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return fail(invalidField("path", "\"{}\" has \"..\"", terminalSafe(path)));
    components.push_back(part);
  }
  if (components.empty()) return std::optional<std::string>();
  for (auto layer = layersBaseFirst.rbegin(); layer != layersBaseFirst.rend(); ++layer) {
    std::filesystem::path at = *layer;
    bool hidesBelow = false;  // an opaque directory on the way: the layers below have nothing of it
    for (size_t i = 0; i < components.size(); ++i) {
      at /= components[i];
      struct stat st {};
      if (::lstat(at.c_str(), &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) break;  // not in this layer: look below
        return fail(systemError(errno, fmt::format("lstat(\"{}\")", at.string())));
      }
      bool whiteout = S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
      bool last = i + 1 == components.size();
      if (whiteout || (!last && !S_ISDIR(st.st_mode))) return std::optional<std::string>();
      if (last) {
        if (!S_ISREG(st.st_mode)) return std::optional<std::string>();
        if (static_cast<size_t>(st.st_size) > kMaxFileBytes) {
          return fail(invalidField("path", "\"{}\" in layer \"{}\" is {} bytes, more than {}",
                                   terminalSafe(path), layer->string(), st.st_size, kMaxFileBytes));
        }
        UniqueFd fd(::open(at.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
        if (!fd) return fail(systemError(errno, fmt::format("open(\"{}\")", at.string())));
        std::string content;
        char buffer[16384];
        for (;;) {
          ssize_t n = ::read(fd.get(), buffer, sizeof buffer);
          if (n < 0 && errno == EINTR) continue;
          if (n < 0) return fail(systemError(errno, fmt::format("read(\"{}\")", at.string())));
          if (n == 0) break;
          content.append(buffer, static_cast<size_t>(n));
          if (content.size() > kMaxFileBytes)
            return fail(invalidField("path", "\"{}\" grew past {} bytes", at.string(), kMaxFileBytes));
        }
        return std::optional<std::string>(std::move(content));
      }
      char opaque[2] = {};
      if (::lgetxattr(at.c_str(), "trusted.overlay.opaque", opaque, sizeof opaque) == 1 && opaque[0] == 'y')
        hidesBelow = true;
    }
    if (hidesBelow) return std::optional<std::string>();
  }
  return std::optional<std::string>();
}

Result<LaunchUser> resolveUserThroughLayers(std::string_view user,
                                           const std::vector<std::filesystem::path>& layersBaseFirst,
                                           std::string_view source) {
  auto passwd = readThroughLayers(layersBaseFirst, "/etc/passwd");
  if (!passwd) return fail(passwd.error().wrap("the image's /etc/passwd"));
  auto group = readThroughLayers(layersBaseFirst, "/etc/group");
  if (!group) return fail(group.error().wrap("the image's /etc/group"));
  return resolveUser(user, *passwd, *group, source);
}

Result<LaunchProcess> launchProcess(const ImageConfig& config,
                                    const std::vector<std::filesystem::path>& layersBaseFirst,
                                    const std::vector<std::string>& command, const std::vector<std::string>& env,
                                    std::string_view userOverride) {
  LaunchProcess process;
  auto argv = launchArgv(config, command);
  if (!argv) return fail(argv.error());
  process.argv = std::move(*argv);
  auto user = userOverride.empty() ? resolveUserThroughLayers(config.user, layersBaseFirst)
                                   : resolveUserThroughLayers(userOverride, layersBaseFirst, "user");
  if (!user) return fail(user.error());
  process.user = std::move(*user);
  process.env = launchEnv(config, env, process.user);
  process.workingDir = config.workingDir.empty() ? "/" : config.workingDir;
  if (process.workingDir.front() != '/') process.workingDir = "/" + process.workingDir;
  return process;
}

}  // namespace corral::images
