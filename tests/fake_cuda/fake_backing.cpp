#include "fake_backing.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace vramswap::fake_cuda {
namespace {

constexpr uint64_t page = 4096;

bool write_all(int fd, const unsigned char* data, size_t length, uint64_t offset) {
  while (length > 0) {
    const ssize_t wrote = pwrite(fd, data, length, static_cast<off_t>(offset));
    if (wrote < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += wrote;
    length -= static_cast<size_t>(wrote);
    offset += static_cast<uint64_t>(wrote);
  }
  return true;
}

// Small: this runs on the caller's thread, whose stack may be small.
bool write_repeated(int fd, unsigned char value, size_t length, uint64_t offset) {
  static const unsigned char zeros[4096] = {};
  unsigned char pattern[sizeof zeros];
  if (value != 0) std::memset(pattern, value, sizeof pattern);
  const unsigned char* source = value == 0 ? zeros : pattern;
  while (length > 0) {
    const size_t piece = std::min(length, sizeof pattern);
    if (!write_all(fd, source, piece, offset)) return false;
    length -= piece;
    offset += piece;
  }
  return true;
}

}  // namespace

// A device's pool: one sparse file, allocations at increasing offsets.
struct Pool {
  int fd = -1;
  std::string path;   // empty for a memfd
  uint64_t next = 0;  // where the next allocation starts
  ~Pool() {
    close(fd);
    if (!path.empty()) unlink(path.c_str());
  }
};

namespace {

// The live pools, by device; a pool lives while an allocation in it does.
// Only called under the driver's lock, but kept safe on its own.
std::mutex g_pools_lock;
std::weak_ptr<Pool> g_pools[64];

int memfd(const char* name) {
  return memfd_create((std::string("vramswap-fake-") + name).c_str(), MFD_CLOEXEC);
}

}  // namespace

std::unique_ptr<Backing> Backing::create(const std::string& directory, int device, uint64_t size,
                                         std::string& error, int& error_number) {
  std::lock_guard lock(g_pools_lock);
  std::weak_ptr<Pool>& slot = g_pools[device % 64];
  std::shared_ptr<Pool> pool = slot.lock();
  char name[64];
  std::snprintf(name, sizeof name, "dev%d-vram", device);
  if (!pool) {
    pool = std::make_shared<Pool>();
    if (directory.empty()) {
      pool->fd = memfd(name);
    } else {
      // O_EXCL: two processes sharing one directory must not share "VRAM".
      pool->path = directory + "/" + name;
      pool->fd = open(pool->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (pool->fd < 0) {
      error_number = errno;
      error = (pool->path.empty() ? std::string("memfd_create") : "creating " + pool->path) + ": " +
              std::strerror(errno);
      pool->path.clear();  // not ours to unlink
      return nullptr;
    }
    slot = pool;
  }
  const uint64_t base = pool->next;
  if (ftruncate(pool->fd, static_cast<off_t>(base + size)) != 0) {
    error_number = errno;
    error = std::string("sizing ") + (pool->path.empty() ? name : pool->path) + ": " +
            std::strerror(errno);
    return nullptr;
  }
  pool->next = base + size;
  const int fd = pool->fd;
  return std::unique_ptr<Backing>(new Backing(std::move(pool), fd, base, size));
}

std::unique_ptr<Backing> Backing::adopt(int fd, uint64_t size) {
  return std::unique_ptr<Backing>(new Backing(nullptr, fd, 0, size));
}

std::unique_ptr<Backing> Backing::detach() const {
  const int fd = memfd("exported");
  if (fd < 0) return nullptr;
  auto own = std::unique_ptr<Backing>(new Backing(nullptr, fd, 0, size_));
  if (ftruncate(fd, static_cast<off_t>(size_)) != 0) return nullptr;
  // Copy only what was written: holes stay holes.
  unsigned char buffer[64 * 1024];
  uint64_t at = 0;
  while (at < size_) {
    const off_t data = lseek(fd_, static_cast<off_t>(base_ + at), SEEK_DATA);
    if (data < 0 || static_cast<uint64_t>(data) >= base_ + size_) break;  // no more data
    const off_t hole = lseek(fd_, data, SEEK_HOLE);
    const uint64_t from = static_cast<uint64_t>(data) - base_;
    const uint64_t to = std::min<uint64_t>(hole < 0 ? base_ + size_ : hole, base_ + size_) - base_;
    for (uint64_t piece = from; piece < to; piece += sizeof buffer) {
      const size_t length = std::min<uint64_t>(sizeof buffer, to - piece);
      if (!read(piece, buffer, length) || !own->write(piece, buffer, length)) return nullptr;
    }
    at = to;
  }
  return own;
}

Backing::~Backing() {
  if (!pool_) {
    close(fd_);
    return;
  }
  // The pool's range goes back to the host; the pool itself with its last piece.
  (void)fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(base_),
                  static_cast<off_t>(size_));
  std::lock_guard lock(g_pools_lock);
  pool_.reset();
}

bool Backing::write(uint64_t offset, const void* source, size_t length) const {
  return write_all(fd_, static_cast<const unsigned char*>(source), length, base_ + offset);
}

bool Backing::read(uint64_t offset, void* destination, size_t length) const {
  auto* out = static_cast<unsigned char*>(destination);
  offset += base_;
  while (length > 0) {
    const ssize_t got = pread(fd_, out, length, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (got == 0) {  // cannot happen inside the file's size; fail loudly rather than loop
      errno = EIO;
      return false;
    }
    out += got;
    length -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
  }
  return true;
}

bool Backing::fill(uint64_t offset, unsigned char value, size_t length) const {
  offset += base_;
  if (value != 0) return write_repeated(fd_, value, length, offset);
  // Zeroing gives the host its memory back: punch out the whole pages and
  // write zeros only into the partial pages at either end.
  const uint64_t end = offset + length;
  const uint64_t first_page = (offset + page - 1) / page * page;
  const uint64_t last_page = end / page * page;
  if (first_page >= last_page) return write_repeated(fd_, 0, length, offset);
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(first_page),
                static_cast<off_t>(last_page - first_page)) != 0) {
    if (errno != EOPNOTSUPP) return false;
    return write_repeated(fd_, 0, length, offset);
  }
  return write_repeated(fd_, 0, first_page - offset, offset) &&
         write_repeated(fd_, 0, end - last_page, last_page);
}

bool Backing::scribble(const char* pattern, size_t length) const {
  unsigned char buffer[64 * 1024];
  for (size_t i = 0; i < sizeof buffer; ++i)
    buffer[i] = static_cast<unsigned char>(pattern[i % length]);
  const size_t period = sizeof buffer / length * length;  // whole patterns per write
  uint64_t at = 0;
  while (at < size_) {
    const off_t data = lseek(fd_, static_cast<off_t>(base_ + at), SEEK_DATA);
    if (data < 0 || static_cast<uint64_t>(data) >= base_ + size_) break;  // no more data
    const off_t hole = lseek(fd_, data, SEEK_HOLE);
    const uint64_t from = static_cast<uint64_t>(data) - base_;
    const uint64_t to = std::min<uint64_t>(hole < 0 ? base_ + size_ : hole, base_ + size_) - base_;
    // Each write starts where the pattern does at that offset.
    for (uint64_t piece = from; piece < to;) {
      const size_t phase = piece % length;
      const size_t count = std::min<uint64_t>(period, to - piece);
      if (!write(piece, buffer + phase, std::min(count, sizeof buffer - phase))) return false;
      piece += std::min(count, sizeof buffer - phase);
    }
    at = to;
  }
  return true;
}

}  // namespace vramswap::fake_cuda
