#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "common/unique_fd.hpp"

namespace vramswap::store {

// Host memory for spill I/O: page-aligned (what O_DIRECT needs), faulted in
// and locked at construction (best effort: where locking is not allowed it
// is still allocated up front), so that no move allocates or faults.
class SpillBuffer {
 public:
  // Throws StartupError(os_error) when the memory cannot be mapped.
  explicit SpillBuffer(size_t bytes);
  ~SpillBuffer();
  SpillBuffer(const SpillBuffer&) = delete;
  SpillBuffer& operator=(const SpillBuffer&) = delete;

  std::byte* data() noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  bool locked() const noexcept { return locked_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
  bool locked_ = false;
};

// The host tier of elastic VRAM: one file as large as the export, after a
// 4 KiB header, read and written with O_DIRECT at the export's offsets.
//
// The file is created once and written in full (zeros, then fsync), so that
// every later write lands on blocks the filesystem already allocated: an
// allocation inside the swap-out path could wait for the memory it is meant
// to free. It is kept across runs and reopened when its header names the
// same instance and export size; a file of ours with another size is made
// again, anything else is refused.
class SpillArea {
 public:
  static constexpr uint64_t header_bytes = 4096;
  // Offsets, lengths and buffer addresses of read() and write() are
  // multiples of this (the logical block size O_DIRECT needs).
  static constexpr uint64_t alignment = 4096;
  static constexpr uint32_t format_version = 1;

  // Opens or creates the spill file at `path` for an export of
  // `export_bytes` (whole 4 KiB blocks) of instance `instance`. Throws
  // StartupError with one line naming the cause and the fix: a missing
  // directory, a directory or a block device at `path`, no room on the disk,
  // a filesystem that is RAM (tmpfs) or refuses O_DIRECT, a foreign file or
  // another instance's, a file that cannot be opened for writing.
  static SpillArea open(const std::string& path, uint64_t export_bytes, std::string_view instance);

  SpillArea(SpillArea&&) noexcept = default;
  SpillArea& operator=(SpillArea&&) noexcept = default;

  // Copies `bytes` at export offset `offset` from or to `data`. 0, or the
  // errno of the failure (EINVAL: misaligned or out of range; EIO for a
  // short transfer at the end of the file). Allocates nothing.
  int write(uint64_t offset, const std::byte* data, uint64_t bytes) noexcept;
  int read(uint64_t offset, std::byte* data, uint64_t bytes) noexcept;

  uint64_t export_bytes() const noexcept { return export_bytes_; }
  const std::string& path() const noexcept { return path_; }
  // Whether open() wrote the file (it was missing or stale), or reused it.
  bool created() const noexcept { return created_; }

 private:
  SpillArea(UniqueFd fd, std::string path, uint64_t export_bytes, bool created)
      : fd_(std::move(fd)),
        path_(std::move(path)),
        export_bytes_(export_bytes),
        created_(created) {}
  bool valid_range(uint64_t offset, const std::byte* data, uint64_t bytes) const noexcept;

  UniqueFd fd_;
  std::string path_;
  uint64_t export_bytes_ = 0;
  bool created_ = false;
};

}  // namespace vramswap::store
