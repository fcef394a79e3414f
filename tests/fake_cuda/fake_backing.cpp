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
#include <vector>

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

bool read_all(int fd, unsigned char* data, size_t length, uint64_t offset) {
  while (length > 0) {
    const ssize_t got = pread(fd, data, length, static_cast<off_t>(offset));
    if (got < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (got == 0) {  // cannot happen inside the file's size; fail loudly rather than loop
      errno = EIO;
      return false;
    }
    data += got;
    length -= static_cast<size_t>(got);
    offset += static_cast<uint64_t>(got);
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

// A device's pool: its allocations at increasing offsets, striped across
// `files` sparse files, `stripe_bytes` to a file in turn (with one file the
// offsets are the file's own).
struct Pool {
  std::vector<int> files;
  std::string path;   // empty for memfds
  uint64_t next = 0;  // where the next allocation starts
  ~Pool() {
    for (const int fd : files)
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
    // O_EXCL: two processes sharing one directory must not share "VRAM".
    if (!directory.empty()) pool->path = directory + "/" + name;
    const size_t files = directory.empty() ? memfd_stripes : 1;
    while (pool->files.size() < files) {
      const int fd = directory.empty()
                         ? memfd(name)
                         : open(pool->path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
      if (fd < 0) {
        error_number = errno;
        error = (pool->path.empty() ? std::string("memfd_create") : "creating " + pool->path) +
                ": " + std::strerror(errno);
        pool->path.clear();  // not ours to unlink
        return nullptr;
      }
      pool->files.push_back(fd);
    }
    slot = pool;
  }
  const uint64_t base = pool->next;
  // Every file long enough for the pool's end (sparse: the length costs nothing).
  const uint64_t round = stripe_bytes * pool->files.size();
  const uint64_t length =
      pool->files.size() == 1 ? base + size : (base + size + round - 1) / round * stripe_bytes;
  for (const int fd : pool->files) {
    if (ftruncate(fd, static_cast<off_t>(length)) != 0) {
      error_number = errno;
      error = std::string("sizing ") + (pool->path.empty() ? name : pool->path) + ": " +
              std::strerror(errno);
      return nullptr;
    }
  }
  pool->next = base + size;
  return std::unique_ptr<Backing>(new Backing(std::move(pool), -1, base, size));
}

std::unique_ptr<Backing> Backing::adopt(int fd, uint64_t size) {
  return std::unique_ptr<Backing>(new Backing(nullptr, fd, 0, size));
}

template <typename Visit>
bool Backing::for_each_run(uint64_t offset, uint64_t length, Visit visit) const {
  if (!pool_) return visit(Run{fd_, offset, length, offset});
  const uint64_t files = pool_->files.size();
  uint64_t at = base_ + offset;  // in the pool
  while (length > 0) {
    const uint64_t stripe = files == 1 ? 0 : at / stripe_bytes;
    const uint64_t into = files == 1 ? at : at % stripe_bytes;
    const uint64_t run = files == 1 ? length : std::min(length, stripe_bytes - into);
    const uint64_t file_offset = files == 1 ? at : stripe / files * stripe_bytes + into;
    if (!visit(Run{pool_->files[stripe % files], file_offset, run, at - base_})) return false;
    at += run;
    length -= run;
  }
  return true;
}

template <typename Visit>
bool Backing::for_each_data(Visit visit) const {
  return for_each_run(0, size_, [&](const Run& run) {
    const uint64_t end = run.file_offset + run.length;
    uint64_t at = run.file_offset;
    while (at < end) {
      const off_t data = lseek(run.fd, static_cast<off_t>(at), SEEK_DATA);
      if (data < 0 || static_cast<uint64_t>(data) >= end) break;  // no more data
      const off_t hole = lseek(run.fd, data, SEEK_HOLE);
      const uint64_t to = std::min<uint64_t>(hole < 0 ? end : static_cast<uint64_t>(hole), end);
      const uint64_t from = static_cast<uint64_t>(data);
      if (!visit(run.offset + (from - run.file_offset), to - from)) return false;
      at = to;
    }
    return true;
  });
}

std::unique_ptr<Backing> Backing::detach() const {
  const int fd = memfd("exported");
  if (fd < 0) return nullptr;
  auto own = std::unique_ptr<Backing>(new Backing(nullptr, fd, 0, size_));
  if (ftruncate(fd, static_cast<off_t>(size_)) != 0) return nullptr;
  // Copy only what was written: holes stay holes.
  unsigned char buffer[64 * 1024];
  const bool copied = for_each_data([&](uint64_t from, uint64_t length) {
    for (uint64_t piece = from; piece < from + length; piece += sizeof buffer) {
      const size_t bytes = std::min<uint64_t>(sizeof buffer, from + length - piece);
      if (!read(piece, buffer, bytes) || !own->write(piece, buffer, bytes)) return false;
    }
    return true;
  });
  return copied ? std::move(own) : nullptr;
}

Backing::~Backing() {
  if (!pool_) {
    close(fd_);
    return;
  }
  // The pool's range goes back to the host; the pool itself with its last piece.
  for_each_run(0, size_, [](const Run& run) {
    (void)fallocate(run.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                    static_cast<off_t>(run.file_offset), static_cast<off_t>(run.length));
    return true;
  });
  std::lock_guard lock(g_pools_lock);
  pool_.reset();
}

bool Backing::write(uint64_t offset, const void* source, size_t length) const {
  auto* in = static_cast<const unsigned char*>(source);
  return for_each_run(offset, length, [&](const Run& run) {
    return write_all(run.fd, in + (run.offset - offset), run.length, run.file_offset);
  });
}

bool Backing::read(uint64_t offset, void* destination, size_t length) const {
  auto* out = static_cast<unsigned char*>(destination);
  return for_each_run(offset, length, [&](const Run& run) {
    return read_all(run.fd, out + (run.offset - offset), run.length, run.file_offset);
  });
}

bool Backing::fill(uint64_t offset, unsigned char value, size_t length) const {
  return for_each_run(offset, length, [&](const Run& run) {
    if (value != 0) return write_repeated(run.fd, value, run.length, run.file_offset);
    // Zeroing gives the host its memory back: punch out the whole pages and
    // write zeros only into the partial pages at either end.
    const uint64_t start = run.file_offset;
    const uint64_t end = start + run.length;
    const uint64_t first_page = (start + page - 1) / page * page;
    const uint64_t last_page = end / page * page;
    if (first_page >= last_page) return write_repeated(run.fd, 0, run.length, start);
    if (fallocate(run.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                  static_cast<off_t>(first_page),
                  static_cast<off_t>(last_page - first_page)) != 0) {
      if (errno != EOPNOTSUPP) return false;
      return write_repeated(run.fd, 0, run.length, start);
    }
    return write_repeated(run.fd, 0, first_page - start, start) &&
           write_repeated(run.fd, 0, end - last_page, last_page);
  });
}

bool Backing::scribble(const char* pattern, size_t length) const {
  unsigned char buffer[64 * 1024];
  for (size_t i = 0; i < sizeof buffer; ++i)
    buffer[i] = static_cast<unsigned char>(pattern[i % length]);
  const size_t period = sizeof buffer / length * length;  // whole patterns per write
  return for_each_data([&](uint64_t from, uint64_t bytes) {
    // Each write starts where the pattern does at that offset.
    for (uint64_t piece = from; piece < from + bytes;) {
      const size_t phase = piece % length;
      const size_t count = std::min<uint64_t>(period, from + bytes - piece);
      const size_t written = std::min(count, sizeof buffer - phase);
      if (!write(piece, buffer + phase, written)) return false;
      piece += written;
    }
    return true;
  });
}

}  // namespace vramswap::fake_cuda
