// releaseFileMappings (vmm/boot_files.h) on a real process: a child maps a file and reads every page, as
// QEMU does with a VM's kernel and initramfs; the call pages the mapping out of the child's resident set.
#include "vmm/boot_files.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

namespace corral::vmm {
namespace {

constexpr size_t kFileBytes = 4 << 20;
constexpr size_t kKeptAtMost = kFileBytes / 8;

class BootFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0) {
      if (std::getenv("CORRAL_REQUIRE_PRIVILEGED")) FAIL() << "needs root (CAP_SYS_NICE for process_madvise)";
      GTEST_SKIP() << "needs root (CAP_SYS_NICE for process_madvise)";
    }
    char pattern[] = "/tmp/corral-boot-files-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    dir_ = pattern;
    file_ = dir_ / "vmlinux";
    other_ = dir_ / "other";
    for (const auto& path : {file_, other_}) {
      std::ofstream out(path, std::ios::binary);
      out << std::string(kFileBytes, 'k');
    }
  }
  void TearDown() override {
    if (child_ > 0) {
      ::kill(child_, SIGKILL);
      ::waitpid(child_, nullptr, 0);
    }
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }

  // A child that maps `file_` and `other_` and reads every page of both, then waits to be killed.
  void startChild() {
    int ready[2];
    ASSERT_EQ(::pipe(ready), 0);
    child_ = ::fork();
    ASSERT_GE(child_, 0);
    if (child_ == 0) {
      volatile char sum = 0;
      for (const auto& path : {file_, other_}) {
        const int fd = ::open(path.c_str(), O_RDONLY);
        auto* data = static_cast<const char*>(::mmap(nullptr, kFileBytes, PROT_READ, MAP_PRIVATE, fd, 0));
        if (data == MAP_FAILED) ::_exit(1);
        for (size_t at = 0; at < kFileBytes; at += 4096) sum = static_cast<char>(sum + data[at]);
      }
      (void)!::write(ready[1], "r", 1);
      ::pause();
      ::_exit(0);
    }
    ::close(ready[1]);
    char byte = 0;
    ASSERT_EQ(::read(ready[0], &byte, 1), 1);
    ::close(ready[0]);
  }

  std::filesystem::path dir_, file_, other_;
  pid_t child_ = -1;
};

uint64_t mappingRss(pid_t pid, const std::filesystem::path& file) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::string line;
  bool current = false;
  uint64_t total = 0;
  while (std::getline(in, line)) {
    // A mapping's header ("start-end perms ..."), named or anonymous; field lines ("Rss:  4 kB") have no '-'
    // before their first space.
    if (line.find('-') < line.find(' ')) {
      current = line.ends_with(file.string());
    } else if (unsigned long long kib = 0; current && std::sscanf(line.c_str(), "Rss: %llu kB", &kib) == 1) {
      total += kib * 1024;
    }
  }
  return total;
}

TEST_F(BootFiles, PagesOutTheNamedFilesOnly) {
  startChild();
  ASSERT_GE(mappingRss(child_, file_), kFileBytes);
  ASSERT_GE(mappingRss(child_, other_), kFileBytes);

  auto released = releaseFileMappings(child_, {dir_ / "." / "vmlinux", dir_ / "missing"});
  ASSERT_TRUE(released) << released.error().message();
  EXPECT_EQ(released->mappings, 1);
  EXPECT_GE(released->residentBefore, kFileBytes);
  // Pages the child faulted a moment ago may still wait in a CPU's LRU batch, which reclaim cannot take yet
  // (a handful; QEMU's were loaded seconds before): most of the file must have gone.
  EXPECT_LE(released->residentAfter, kKeptAtMost);
  EXPECT_LE(mappingRss(child_, file_), kKeptAtMost);
  EXPECT_GE(mappingRss(child_, other_), kFileBytes);  // not named: left alone
}

TEST_F(BootFiles, FindsAFileReplacedOnDisk) {
  startChild();
  // An image rebuilt while the VM runs: the kernel names the mapping "PATH (deleted)".
  std::filesystem::remove(file_);
  auto released = releaseFileMappings(child_, {file_});
  ASSERT_TRUE(released) << released.error().message();
  EXPECT_EQ(released->mappings, 1);
  EXPECT_LE(released->residentAfter, kKeptAtMost);
}

TEST_F(BootFiles, AProcessThatIsGoneIsAnError) {
  startChild();
  ::kill(child_, SIGKILL);
  ::waitpid(child_, nullptr, 0);
  const pid_t gone = child_;
  child_ = -1;
  auto released = releaseFileMappings(gone, {file_});
  ASSERT_FALSE(released);
  EXPECT_NE(released.error().message().find(std::to_string(gone)), std::string::npos)
      << released.error().message();
}

}  // namespace
}  // namespace corral::vmm
