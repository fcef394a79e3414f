#pragma once

// The host memory behind one fake cuMemAlloc.
//
// Memory must be taken from the host only when written: a 16 GiB fake GPU on
// a CI machine with a few GiB of RAM has to work as long as the tests write
// little. Each allocation is therefore a sparse memfd (or, with
// VRAMSWAP_FAKE_BACKING_DIR, a sparse file named dev<D>-alloc<N> in that
// directory, so a test can look at it) of the allocation's size: tmpfs and
// disk file systems allocate pages on write only, reads of holes return
// zeros without allocating, and zero fills punch holes back in.
//
// The data is reached with pread/pwrite, never through a mapping. The daemon
// calls mlockall(MCL_CURRENT | MCL_FUTURE), before and after allocating its
// VRAM: with a mapping, MCL_FUTURE would fault in and lock every page of a
// new read/write mapping at mmap time, and a later MCL_CURRENT would do the
// same to one that escaped it (mapping PROT_NONE, munlock, then mprotect only
// survives the first, not the second: mlockall(MCL_CURRENT) populates every
// accessible mapping again). Either would commit the whole fake VRAM at once.
// Without a mapping there is nothing for mlockall to lock, which also models
// the real thing: VRAM is not part of the process's address space.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace vramswap::fake_cuda {

class Backing {
 public:
  // nullptr when the memfd or file cannot be created, with `error` saying
  // why and `error_number` the errno.
  static std::unique_ptr<Backing> create(const std::string& directory, int device, uint64_t id,
                                         uint64_t size, std::string& error, int& error_number);
  ~Backing();
  Backing(const Backing&) = delete;
  Backing& operator=(const Backing&) = delete;

  // False (errno set) when the host refuses, e.g. ENOSPC on a full backing
  // directory. The range lies inside the allocation (checked by the caller).
  bool write(uint64_t offset, const void* source, size_t length) const;
  bool read(uint64_t offset, void* destination, size_t length) const;
  bool fill(uint64_t offset, unsigned char value, size_t length) const;

 private:
  Backing(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}

  int fd_;
  std::string path_;  // empty for a memfd
};

}  // namespace vramswap::fake_cuda
