#include "store/spill_area.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "common/byte_size.hpp"
#include "common/log.hpp"
#include "common/startup_error.hpp"

namespace vramswap::store {

namespace {

constexpr char spill_magic[16] = "vramswap-spill\n";
constexpr size_t instance_bytes = 64;
// How much is written per call while a new file is filled with zeros.
constexpr size_t fill_bytes = 4 * 1024 * 1024;

// The first 4 KiB of the file (the rest of that block is zero).
struct Header {
  char magic[16];
  uint32_t version;
  uint32_t header_bytes;
  uint64_t export_bytes;
  char instance[instance_bytes];
};
static_assert(sizeof(Header) <= SpillArea::header_bytes);

[[noreturn]] void refuse(int status, const std::string& line) {
  throw StartupError(status, "spill area: " + line);
}

std::string gib(uint64_t bytes) {
  char text[32];
  snprintf(text, sizeof text, "%.1f GiB", static_cast<double>(bytes) / static_cast<double>(GiB));
  return text;
}

int transfer(int fd, bool writing, uint64_t position, std::byte* data, uint64_t bytes) noexcept {
  uint64_t done = 0;
  while (done < bytes) {
    const ssize_t moved =
        writing ? pwrite(fd, data + done, bytes - done, static_cast<off_t>(position + done))
                : pread(fd, data + done, bytes - done, static_cast<off_t>(position + done));
    if (moved < 0 && errno == EINTR) continue;
    if (moved < 0) return errno;
    if (moved == 0) return EIO;  // the file ends early
    done += static_cast<uint64_t>(moved);
  }
  return 0;
}

// O_DIRECT's refusal is EINVAL at open: name the filesystem, not the errno.
UniqueFd open_direct(const std::string& path, int flags, const std::string& directory) {
  const int fd = ::open(path.c_str(), flags | O_RDWR | O_DIRECT | O_CLOEXEC, 0600);
  if (fd >= 0) return UniqueFd(fd);
  if (errno == EINVAL)
    refuse(exit_code::unavailable,
           "the filesystem of " + directory +
               " refuses O_DIRECT; put the spill file on a disk filesystem (ext4, xfs) "
               "with spill = PATH");
  refuse(errno == EACCES || errno == EPERM || errno == EROFS ? exit_code::no_permission
                                                             : exit_code::os_error,
         "cannot open " + path + " for reading and writing: " + strerror(errno) +
             "; fix its permissions or name another file with spill = PATH");
}

// Reads the header of an existing file; false when it is not ours.
bool read_header(int fd, SpillBuffer& block, Header& header) {
  if (transfer(fd, false, 0, block.data(), SpillArea::header_bytes) != 0) return false;
  std::memcpy(&header, block.data(), sizeof header);
  return std::memcmp(header.magic, spill_magic, sizeof spill_magic) == 0;
}

void check_filesystem(const std::string& directory) {
  struct statfs fs {};
  if (statfs(directory.c_str(), &fs) != 0)
    refuse(exit_code::os_error, "cannot inspect " + directory + ": " + strerror(errno));
  // Spilling VRAM to RAM frees nothing, and tmpfs pages can themselves be
  // swapped out to this very device.
  if (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC)
    refuse(exit_code::config,
           directory + " is in RAM (tmpfs); put the spill file on a disk with spill = PATH");
}

// A file with copy-on-write allocates blocks on every write (btrfs): turn it
// off while the file is still empty, the only time the flag may change.
void disable_copy_on_write(int fd, const std::string& path) {
  struct statfs fs {};
  if (fstatfs(fd, &fs) != 0 || fs.f_type != BTRFS_SUPER_MAGIC) return;
  int flags = 0;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) == 0) {
    flags |= FS_NOCOW_FL;
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) == 0) return;
  }
  log_warning(
      "spill area: %s is on btrfs and copy-on-write could not be turned off: its writes may "
      "allocate",
      path.c_str());
}

void check_room(const std::string& directory, uint64_t needed, uint64_t reclaimable) {
  struct statvfs vfs {};
  if (statvfs(directory.c_str(), &vfs) != 0)
    refuse(exit_code::os_error, "cannot inspect " + directory + ": " + strerror(errno));
  const uint64_t available = static_cast<uint64_t>(vfs.f_bavail) * vfs.f_frsize + reclaimable;
  if (available < needed)
    refuse(exit_code::unavailable,
           "no room for the spill file in " + directory + ": it needs " + gib(needed) +
               ", the disk has " + gib(available) +
               " free; free space there or set spill = PATH on another disk");
}

// Writes the whole file next to `path` and renames it into place, so that a
// file at `path` is always complete.
void create(const std::string& path, const std::string& directory, uint64_t export_bytes,
            std::string_view instance) {
  const std::string temporary = path + ".new";
  ::unlink(temporary.c_str());
  UniqueFd fd = open_direct(temporary, O_CREAT | O_EXCL, directory);
  disable_copy_on_write(fd.get(), temporary);
  SpillBuffer zeros(fill_bytes);
  const uint64_t total = SpillArea::header_bytes + export_bytes;
  int error = 0;
  for (uint64_t position = SpillArea::header_bytes; error == 0 && position < total;
       position += fill_bytes)
    error = transfer(fd.get(), true, position, zeros.data(),
                     std::min<uint64_t>(fill_bytes, total - position));
  if (error == 0) {
    Header header{};
    std::memcpy(header.magic, spill_magic, sizeof spill_magic);
    header.version = SpillArea::format_version;
    header.header_bytes = SpillArea::header_bytes;
    header.export_bytes = export_bytes;
    instance.copy(header.instance, instance_bytes - 1);
    std::memcpy(zeros.data(), &header, sizeof header);
    error = transfer(fd.get(), true, 0, zeros.data(), SpillArea::header_bytes);
  }
  if (error == 0 && fsync(fd.get()) != 0) error = errno;
  if (error == 0 && ::rename(temporary.c_str(), path.c_str()) != 0) error = errno;
  if (error != 0) {
    ::unlink(temporary.c_str());
    refuse(error == ENOSPC ? exit_code::unavailable : exit_code::os_error,
           "cannot write " + path + ": " + strerror(error) +
               "; free space there or set spill = PATH elsewhere");
  }
  UniqueFd directory_fd(::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (directory_fd) fsync(directory_fd.get());
}

}  // namespace

SpillBuffer::SpillBuffer(size_t bytes) : size_(bytes) {
  void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (memory == MAP_FAILED)
    refuse(exit_code::os_error, std::string("cannot map its buffer: ") + strerror(errno));
  data_ = static_cast<std::byte*>(memory);
  locked_ = mlock(data_, size_) == 0;
}

SpillBuffer::~SpillBuffer() {
  if (data_ != nullptr) munmap(data_, size_);
}

SpillArea SpillArea::open(const std::string& path, uint64_t export_bytes,
                          std::string_view instance) {
  if (export_bytes == 0 || export_bytes % alignment != 0)
    throw std::invalid_argument("spill area: the export must be a whole number of 4 KiB blocks");
  if (instance.size() >= instance_bytes)
    refuse(exit_code::config, "instance name longer than 63 bytes: " + std::string(instance));
  const std::string directory = std::filesystem::path(path).parent_path().empty()
                                    ? std::string(".")
                                    : std::filesystem::path(path).parent_path().string();
  struct stat directory_stat {};
  if (::stat(directory.c_str(), &directory_stat) != 0 || !S_ISDIR(directory_stat.st_mode))
    refuse(exit_code::config,
           "directory " + directory + " does not exist; create it or set spill = PATH elsewhere");
  check_filesystem(directory);

  const uint64_t file_bytes = header_bytes + export_bytes;
  uint64_t reclaimable = 0;
  struct stat file_stat {};
  if (::stat(path.c_str(), &file_stat) == 0) {
    if (S_ISDIR(file_stat.st_mode))
      refuse(exit_code::config, path + " is a directory; set spill = PATH to a file inside it");
    if (!S_ISREG(file_stat.st_mode))
      refuse(exit_code::config,
             path + " is not a regular file (block devices are not supported yet); name a file");
    UniqueFd fd = open_direct(path, 0, directory);
    SpillBuffer block(header_bytes);
    Header header{};
    if (!read_header(fd.get(), block, header))
      refuse(
          exit_code::config,
          path + " is not a vramswap spill file; remove it or name another file with spill = PATH");
    header.instance[instance_bytes - 1] = '\0';
    if (instance != header.instance)
      refuse(exit_code::config, path + " belongs to instance '" + header.instance +
                                    "'; give instance '" + std::string(instance) +
                                    "' a file of its own with spill = PATH");
    if (header.version != format_version)
      refuse(exit_code::config, path + " has format version " + std::to_string(header.version) +
                                    ", this build reads " + std::to_string(format_version) +
                                    "; remove it and it is created again");
    // Reused only when it is exactly this export's size and fully written
    // (no holes: a hole is a block the next write would allocate).
    const bool fits = header.export_bytes == export_bytes &&
                      static_cast<uint64_t>(file_stat.st_size) == file_bytes &&
                      static_cast<uint64_t>(file_stat.st_blocks) * 512 >= file_bytes;
    if (fits) return SpillArea(std::move(fd), path, export_bytes, false);
    log_notice("spill area: %s holds %s for %s of export, %s allocated; it is made again for %s",
               path.c_str(), gib(static_cast<uint64_t>(file_stat.st_size)).c_str(),
               gib(header.export_bytes).c_str(),
               gib(static_cast<uint64_t>(file_stat.st_blocks) * 512).c_str(),
               gib(export_bytes).c_str());
    reclaimable = static_cast<uint64_t>(file_stat.st_blocks) * 512;
  }
  check_room(directory, file_bytes, reclaimable);
  if (reclaimable != 0) ::unlink(path.c_str());
  create(path, directory, export_bytes, instance);
  UniqueFd fd = open_direct(path, 0, directory);
  return SpillArea(std::move(fd), path, export_bytes, true);
}

bool SpillArea::valid_range(uint64_t offset, const std::byte* data, uint64_t bytes) const noexcept {
  return offset % alignment == 0 && bytes % alignment == 0 &&
         reinterpret_cast<uintptr_t>(data) % alignment == 0 && offset <= export_bytes_ &&
         bytes <= export_bytes_ - offset;
}

int SpillArea::write(uint64_t offset, const std::byte* data, uint64_t bytes) noexcept {
  if (!valid_range(offset, data, bytes)) return EINVAL;
  return transfer(fd_.get(), true, header_bytes + offset, const_cast<std::byte*>(data), bytes);
}

int SpillArea::read(uint64_t offset, std::byte* data, uint64_t bytes) noexcept {
  if (!valid_range(offset, data, bytes)) return EINVAL;
  return transfer(fd_.get(), false, header_bytes + offset, data, bytes);
}

}  // namespace vramswap::store
