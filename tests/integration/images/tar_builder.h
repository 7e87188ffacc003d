// Layer tars for tests, written with libarchive (pax), so a test states exactly which entries, owners,
// xattrs and hostile paths a layer has.
#pragma once

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>

#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

namespace corral::images {

enum class Compression { none, gzip, zstd };

namespace fixtures {

class TarBuilder {
 public:
  void directory(std::string path, mode_t mode = 0755, int uid = 0, int gid = 0) {
    entries_.push_back({std::move(path), AE_IFDIR, mode, uid, gid, "", "", 0, 0, {}});
  }
  void file(std::string path, std::string content, mode_t mode = 0644, int uid = 0, int gid = 0,
            std::map<std::string, std::string> xattrs = {}) {
    entries_.push_back(
        {std::move(path), AE_IFREG, mode, uid, gid, std::move(content), "", 0, 0, std::move(xattrs)});
  }
  void symlink(std::string path, std::string target) {
    entries_.push_back({std::move(path), AE_IFLNK, 0777, 0, 0, "", std::move(target), 0, 0, {}});
  }
  void hardlink(std::string path, std::string target) {
    entries_.push_back({std::move(path), AE_IFREG, 0644, 0, 0, "", std::move(target), 0, 0, {}, true});
  }
  void fifo(std::string path) {
    entries_.push_back({std::move(path), AE_IFIFO, 0644, 0, 0, "", "", 0, 0, {}});
  }
  void device(std::string path, unsigned major, unsigned minor) {
    entries_.push_back({std::move(path), AE_IFCHR, 0600, 0, 0, "", "", major, minor, {}});
  }

  std::string finish(Compression compression) const {
    std::string out;
    Writer writer(out);
    archive_write_set_format_pax_restricted(writer.get());
    if (compression == Compression::gzip) archive_write_add_filter_gzip(writer.get());
    if (compression == Compression::zstd) archive_write_add_filter_zstd(writer.get());
    writer.open();
    for (const Entry& e : entries_) {
      std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                          &archive_entry_free);
      archive_entry_set_pathname(entry.get(), e.path.c_str());
      archive_entry_set_filetype(entry.get(), e.type);
      archive_entry_set_perm(entry.get(), e.mode);
      archive_entry_set_uid(entry.get(), e.uid);
      archive_entry_set_gid(entry.get(), e.gid);
      archive_entry_set_mtime(entry.get(), 1700000000, 0);
      if (e.hardlink) {
        archive_entry_set_hardlink(entry.get(), e.target.c_str());
        archive_entry_set_size(entry.get(), 0);
      } else if (e.type == AE_IFLNK) {
        archive_entry_set_symlink(entry.get(), e.target.c_str());
      } else if (e.type == AE_IFCHR) {
        archive_entry_set_rdevmajor(entry.get(), e.major);
        archive_entry_set_rdevminor(entry.get(), e.minor);
      } else if (e.type == AE_IFREG) {
        archive_entry_set_size(entry.get(), static_cast<la_int64_t>(e.content.size()));
      }
      for (const auto& [name, value] : e.xattrs) {
        archive_entry_xattr_add_entry(entry.get(), name.c_str(), value.data(), value.size());
      }
      check(archive_write_header(writer.get(), entry.get()), writer.get());
      if (!e.hardlink && !e.content.empty()) {
        archive_write_data(writer.get(), e.content.data(), e.content.size());
      }
    }
    writer.close();
    return out;
  }

  static std::string gzip(const std::string& plain) {
    std::string out;
    Writer writer(out);
    archive_write_set_format_raw(writer.get());
    archive_write_add_filter_gzip(writer.get());
    writer.open();
    std::unique_ptr<archive_entry, decltype(&archive_entry_free)> entry(archive_entry_new(),
                                                                        &archive_entry_free);
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_size(entry.get(), static_cast<la_int64_t>(plain.size()));
    check(archive_write_header(writer.get(), entry.get()), writer.get());
    archive_write_data(writer.get(), plain.data(), plain.size());
    writer.close();
    return out;
  }

 private:
  struct Entry {
    std::string path;
    mode_t type;
    mode_t mode;
    int uid, gid;
    std::string content;
    std::string target;
    unsigned major, minor;
    std::map<std::string, std::string> xattrs;
    bool hardlink = false;
  };

  static void check(int status, archive* a) {
    if (status < ARCHIVE_WARN) throw std::runtime_error(archive_error_string(a));
  }

  class Writer {
   public:
    explicit Writer(std::string& out) : out_(out), archive_(archive_write_new()) {
      archive_write_set_bytes_in_last_block(archive_, 1);
    }
    ~Writer() { archive_write_free(archive_); }
    archive* get() { return archive_; }
    void open() { check(archive_write_open(archive_, &out_, nullptr, &Writer::append, nullptr), archive_); }
    void close() { check(archive_write_close(archive_), archive_); }

   private:
    static la_ssize_t append(archive*, void* client, const void* buffer, size_t length) {
      static_cast<std::string*>(client)->append(static_cast<const char*>(buffer), length);
      return static_cast<la_ssize_t>(length);
    }
    std::string& out_;
    archive* archive_;
  };

  std::vector<Entry> entries_;
};

}  // namespace fixtures
}  // namespace corral::images
