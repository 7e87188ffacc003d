// Reading unpacked trees in tests: one node per path (type, mode, owner, content, a user xattr) and the
// hard link groups, so two unpacks of one image (ours and umoci's) compare whole.
#pragma once

#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>

namespace corral::images::fixtures {

namespace fs = std::filesystem;

inline struct stat lstatOf(const fs::path& path) {
  struct stat st {};
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st;
}

inline std::string readFile(const fs::path& path) {
  std::string out;
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return out;
  char buffer[8192];
  for (ssize_t n; (n = ::read(fd, buffer, sizeof(buffer))) > 0;) out.append(buffer, static_cast<size_t>(n));
  ::close(fd);
  return out;
}

inline std::string xattrOf(const fs::path& path, const char* name) {
  char buffer[256];
  ssize_t n = ::lgetxattr(path.c_str(), name, buffer, sizeof(buffer));
  return n < 0 ? std::string() : std::string(buffer, static_cast<size_t>(n));
}

struct Node {
  std::string type;  // "file", "dir", "symlink", "fifo", "other"
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string content;  // file bytes or link target
  std::string userXattr;
  bool operator==(const Node&) const = default;
};

inline std::map<std::string, Node> walk(const fs::path& root,
                                        std::map<std::string, std::set<std::string>>* links) {
  std::map<std::string, Node> out;
  std::map<ino_t, std::set<std::string>> byInode;
  for (auto it = fs::recursive_directory_iterator(root); it != fs::recursive_directory_iterator(); ++it) {
    std::string rel = it->path().lexically_relative(root).string();  // never resolves symlinks
    struct stat st = lstatOf(it->path());
    Node node;
    node.mode = st.st_mode & 07777;
    node.uid = st.st_uid;
    node.gid = st.st_gid;
    node.userXattr = xattrOf(it->path(), "user.corral");
    if (S_ISREG(st.st_mode)) {
      node.type = "file";
      node.content = readFile(it->path());
      if (st.st_nlink > 1) byInode[st.st_ino].insert(rel);
    } else if (S_ISDIR(st.st_mode)) {
      node.type = "dir";
    } else if (S_ISLNK(st.st_mode)) {
      node.type = "symlink";
      node.content = fs::read_symlink(it->path()).string();
    } else if (S_ISFIFO(st.st_mode)) {
      node.type = "fifo";
    } else {
      node.type = fmt::format("other {:o}", st.st_mode & S_IFMT);
    }
    out.emplace(rel, node);
  }
  // Each group under its first name in sort order, so readdir order (which differs between filesystems)
  // does not matter.
  for (auto& [inode, names] : byInode) (*links)[*names.begin()] = std::move(names);
  return out;
}

// Every difference between two trees, one line each; empty when they are the same.
inline std::vector<std::string> treeDifferences(const fs::path& ours, const fs::path& theirs) {
  std::map<std::string, std::set<std::string>> ourLinks, theirLinks;
  auto a = walk(ours, &ourLinks);
  auto b = walk(theirs, &theirLinks);
  std::vector<std::string> out;
  for (const auto& [path, node] : b) {
    auto found = a.find(path);
    if (found == a.end()) {
      out.push_back(fmt::format("{}: only in {}", path, theirs.string()));
    } else if (!(found->second == node)) {
      out.push_back(fmt::format("{}: {} {:o} {}:{} vs {} {:o} {}:{}", path, found->second.type,
                                found->second.mode, found->second.uid, found->second.gid, node.type,
                                node.mode, node.uid, node.gid));
    }
  }
  for (const auto& [path, node] : a) {
    if (!b.contains(path)) out.push_back(fmt::format("{}: only in {}", path, ours.string()));
  }
  if (ourLinks != theirLinks) out.push_back("hard link groups differ");
  return out;
}

}  // namespace corral::images::fixtures
