#include "fake_backing.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

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

std::unique_ptr<Backing> Backing::create(const std::string& directory, int device, uint64_t id,
                                         uint64_t size, std::string& error, int& error_number) {
  char name[64];
  std::snprintf(name, sizeof name, "dev%d-alloc%llu", device, static_cast<unsigned long long>(id));
  std::string path;
  int fd = -1;
  if (directory.empty()) {
    fd = memfd_create((std::string("vramswap-fake-") + name).c_str(), MFD_CLOEXEC);
  } else {
    // O_EXCL: two processes sharing one directory must not share "VRAM".
    path = directory + "/" + name;
    fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  }
  if (fd < 0) {
    error_number = errno;
    error = (path.empty() ? std::string("memfd_create") : "creating " + path) + ": " +
            std::strerror(errno);
    return nullptr;
  }
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    error_number = errno;
    error = "sizing " + (path.empty() ? std::string(name) : path) + ": " + std::strerror(errno);
    close(fd);
    if (!path.empty()) unlink(path.c_str());
    return nullptr;
  }
  return std::unique_ptr<Backing>(new Backing(fd, std::move(path)));
}

Backing::~Backing() {
  close(fd_);
  if (!path_.empty()) unlink(path_.c_str());
}

bool Backing::write(uint64_t offset, const void* source, size_t length) const {
  return write_all(fd_, static_cast<const unsigned char*>(source), length, offset);
}

bool Backing::read(uint64_t offset, void* destination, size_t length) const {
  auto* out = static_cast<unsigned char*>(destination);
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

}  // namespace vramswap::fake_cuda
