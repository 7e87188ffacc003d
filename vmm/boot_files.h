// What a running QEMU keeps of the files it booted from, given back once the guest is up.
//
// QEMU maps the kernel and the initramfs to load them into guest memory and keeps the mappings for a reset
// (the ELF loader's ROM blobs, fw_cfg's initrd): ~16 MiB of an idle VM's resident set with corral's kernel
// and the busybox initramfs (vmm/README.md, "Idle memory"). corral's VMs never reset (a reset ends QEMU:
// -no-reboot, on_reboot='destroy'), so once the guest runs those pages are asked out with
// process_madvise(MADV_PAGEOUT): clean file pages, dropped without I/O, read back from the file should QEMU
// ever touch them again. The kernel leaves alone pages another process maps too (a second VM booting the
// same files at that moment): they stay shared, counted in both.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <vector>

#include "core/error.h"

namespace corral::vmm {

struct ReleasedFiles {
  int mappings = 0;             // mappings of the files found in the process
  uint64_t residentBefore = 0;  // their resident bytes before and after (/proc/PID/smaps Rss)
  uint64_t residentAfter = 0;
};

// Pages out `pid`'s mappings of `files` (each matched by its canonical path, also once replaced on disk:
// the kernel then names the mapping "PATH (deleted)"). Files it does not map are not an error.
Result<ReleasedFiles> releaseFileMappings(pid_t pid, const std::vector<std::filesystem::path>& files);

}  // namespace corral::vmm
