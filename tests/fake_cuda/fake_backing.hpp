#pragma once

// The host memory behind one fake allocation (cuMemAlloc, cuMemCreate, an
// imported handle).
//
// Memory must be taken from the host only when written: a 16 GiB fake GPU on
// a CI machine with a few GiB of RAM has to work as long as the tests write
// little. Allocations therefore live in sparse files, the device's pool:
// memfds, or with VRAMSWAP_FAKE_BACKING_DIR one file named dev<D>-vram in
// that directory, so a test can look at it. Each allocation
// takes the next range of it (never reused while the pool lives), tmpfs and
// disk file systems allocate pages on write only, reads of holes return
// zeros without allocating, zero fills and freed allocations punch holes
// back in. The pool goes (and its file with it) when its last allocation
// does.
//
// A few descriptors per device, not one per allocation: a 16 GiB export in
// 2 MiB chunks is 8192 allocations, and the daemon's descriptor budget
// (tested under a low RLIMIT_NOFILE) must not be spent by the fake; the real
// driver holds no descriptor per allocation either. A memfd pool is striped
// across memfd_stripes memfds, stripe_bytes to each in turn: a write takes
// its file's inode lock, and with one file every copy of every thread would
// queue on that lock (spinning for it, charging the CPU of whichever program
// copies from more threads at once), where a GPU's streams copy side by
// side. A pool in a backing directory stays one file in allocation order,
// for the tests that look at it. An allocation that is exported as a file
// descriptor gets one of its own then (detach()): a memfd holding its bytes,
// which other processes import.
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

struct Pool;

// Stripe size and count of a memfd pool (see above).
inline constexpr uint64_t stripe_bytes = 2 * 1024 * 1024;
inline constexpr size_t memfd_stripes = 8;

class Backing {
 public:
  // `size` bytes of `device`'s pool (created at need in `directory`, or as a
  // memfd when empty). nullptr when the host refuses, with `error` saying why
  // and `error_number` the errno.
  static std::unique_ptr<Backing> create(const std::string& directory, int device, uint64_t size,
                                         std::string& error, int& error_number);
  // Takes ownership of `fd`, an exported allocation's own memfd (an imported
  // handle): the same memory as the exporter's.
  static std::unique_ptr<Backing> adopt(int fd, uint64_t size);
  ~Backing();
  Backing(const Backing&) = delete;
  Backing& operator=(const Backing&) = delete;

  // A copy of this allocation's bytes in a memfd of its own, to replace this
  // one when the allocation is exported (nullptr, errno set, on failure).
  // No write may run meanwhile (the caller holds the driver's lock).
  std::unique_ptr<Backing> detach() const;
  // Whether this allocation has a descriptor of its own (detached, adopted).
  bool own() const noexcept { return pool_ == nullptr; }
  // Its own descriptor, for exporting (the caller duplicates it); -1 in a pool.
  int descriptor() const noexcept { return pool_ ? -1 : fd_; }

  // False (errno set) when the host refuses, e.g. ENOSPC on a full backing
  // directory. The range lies inside the allocation (checked by the caller).
  bool write(uint64_t offset, const void* source, size_t length) const;
  bool read(uint64_t offset, void* destination, size_t length) const;
  bool fill(uint64_t offset, unsigned char value, size_t length) const;
  // Memory lost with the GPU's power: every written byte becomes `pattern`
  // (`length` bytes, repeated from the allocation's offset 0); holes stay
  // holes, so losing a large, mostly unwritten fake GPU commits nothing.
  bool scribble(const char* pattern, size_t length) const;

 private:
  Backing(std::shared_ptr<Pool> pool, int fd, uint64_t base, uint64_t size)
      : pool_(std::move(pool)), fd_(fd), base_(base), size_(size) {}

  // Bytes [offset, +length) of this allocation that lie one after the other
  // in one file.
  struct Run {
    int fd;
    uint64_t file_offset;
    uint64_t length;
    uint64_t offset;  // in the allocation
  };
  // Calls visit(run) for each run of [offset, +length), in order; false as
  // soon as one returns false.
  template <typename Visit>
  bool for_each_run(uint64_t offset, uint64_t length, Visit visit) const;
  // Calls visit(offset, length) for each written range of the allocation.
  template <typename Visit>
  bool for_each_data(Visit visit) const;

  std::shared_ptr<Pool> pool_;  // null: fd_ is this allocation's own
  int fd_;                      // an own allocation's descriptor (-1 in a pool)
  uint64_t base_;               // where the allocation starts in the pool (0 when own)
  uint64_t size_;
};

}  // namespace vramswap::fake_cuda
