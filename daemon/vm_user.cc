#include "daemon/vm_user.h"

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>

#include <algorithm>
#include <vector>

#include "core/text.h"

namespace corral::daemon {

namespace fs = std::filesystem;

std::string_view vmUserModeName(VmUserChoice::Mode mode) {
  switch (mode) {
    case VmUserChoice::Mode::automatic:
      return "auto";
    case VmUserChoice::Mode::root:
      return "root";
    case VmUserChoice::Mode::named:
      return "named";
  }
  return "auto";
}

namespace {

// The user and its groups (kvm gives /dev/kvm); none when no such user.
std::optional<vmm::QemuSpawn::User> lookUp(const std::string& name) {
  const passwd* account = ::getpwnam(name.c_str());
  if (account == nullptr) return std::nullopt;
  int count = 64;
  std::vector<gid_t> groups(count);
  if (::getgrouplist(name.c_str(), account->pw_gid, groups.data(), &count) < 0) {
    groups.resize(count);
    ::getgrouplist(name.c_str(), account->pw_gid, groups.data(), &count);
  }
  groups.resize(count);
  return vmm::QemuSpawn::User{.uid = account->pw_uid, .gid = account->pw_gid, .groups = groups};
}

// Whether `user` may pass through `dir` (the search bit that applies to it: owner, group or other's).
bool searchableBy(const fs::path& dir, const vmm::QemuSpawn::User& user) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return false;
  if (st.st_uid == user.uid) return (st.st_mode & S_IXUSR) != 0;
  const bool inGroup = st.st_gid == user.gid ||
                       std::find(user.groups.begin(), user.groups.end(), st.st_gid) != user.groups.end();
  if (inGroup) return (st.st_mode & S_IXGRP) != 0;
  return (st.st_mode & S_IXOTH) != 0;
}

Status setMode(const fs::path& path, mode_t mode) {
  if (::chmod(path.c_str(), mode) != 0)
    return fail(systemError(errno, fmt::format("chmod(\"{}\", {:04o})", path.string(), mode)));
  return {};
}

bool inside(const fs::path& path, const fs::path& dir) {
  auto [end, _] = std::mismatch(dir.begin(), dir.end(), path.begin(), path.end());
  return end == dir.end();
}

}  // namespace

Result<VmUserChoice> parseVmUser(const std::string& text) {
  VmUserChoice choice;
  if (text == "root") {
    choice.mode = VmUserChoice::Mode::root;
    return choice;
  }
  if (text.empty() || text == "auto") {
    choice.mode = VmUserChoice::Mode::automatic;
    choice.user = lookUp(kAutoVmUser);
    if (choice.user) {
      choice.name = kAutoVmUser;
      choice.reason = fmt::format("{} exists (Debian's libvirt runs its QEMUs as it)", kAutoVmUser);
    } else {
      choice.reason = fmt::format(
          "no user {} on this host (install libvirt-daemon-system, or give --vm-user)", kAutoVmUser);
    }
    return choice;
  }
  choice.mode = VmUserChoice::Mode::named;
  choice.user = lookUp(text);
  if (!choice.user) return fail(invalidField("vm-user", "no user \"{}\" on this host", terminalSafe(text)));
  choice.name = text;
  return choice;
}

Status reachableBy(const fs::path& dir, const vmm::QemuSpawn::User& user) {
  std::vector<fs::path> chain;
  for (fs::path at = dir; at != at.parent_path(); at = at.parent_path()) chain.push_back(at);
  chain.push_back("/");
  std::reverse(chain.begin(), chain.end());
  for (const fs::path& at : chain) {
    if (!searchableBy(at, user))
      return fail(conflict("\"{}\" is not searchable by uid {}", at.string(), user.uid));
  }
  return {};
}

Status settleVmUser(VmUserChoice& choice, const fs::path& stateDir, const fs::path& vmsDir) {
  if (!choice.user) return setMode(stateDir, 0700);
  if (Status ok = setMode(stateDir, 0711); !ok) return fail(ok.error());
  if (Status ok = setMode(vmsDir, 0711); !ok) return fail(ok.error());
  Status reached = reachableBy(vmsDir, *choice.user);
  if (reached) return {};
  if (choice.mode == VmUserChoice::Mode::named) {
    return fail(invalidField("vm-user", "{}, so QEMU could not reach \"{}\" (give --vms-dir elsewhere)",
                             reached.error().message(), vmsDir.string()));
  }
  choice.reason = fmt::format("{} cannot reach VMS_DIR: {} (make it searchable or give --vm-user)",
                              choice.name, reached.error().message());
  choice.user.reset();
  choice.name = "root";
  return setMode(stateDir, 0700);
}

Status privatiseStateDir(const fs::path& stateDir, const fs::path& vmsDir) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(stateDir, ec)) {
    if (inside(vmsDir, entry.path())) continue;  // VMS_DIR or a directory above it
    struct stat st {};
    if (::lstat(entry.path().c_str(), &st) != 0 || S_ISLNK(st.st_mode)) continue;
    if ((st.st_mode & 077) == 0) continue;
    if (Status ok = setMode(entry.path(), st.st_mode & 07700); !ok) return fail(ok.error());
  }
  if (ec) return fail(systemError(ec.value(), fmt::format("list \"{}\"", stateDir.string())));
  return {};
}

}  // namespace corral::daemon
