#pragma once

#include <cstddef>

namespace vramswap::engine {

// A bump allocator over one worker's pinned staging buffer. Everything taken
// during a round stays valid until the round's stream sync; then the round
// resets it. Bytes after top() may be filled tentatively (a receive) and are
// only kept if committed.
class StagingArena {
 public:
  StagingArena() = default;
  StagingArena(std::byte* base, size_t size) noexcept : base_(base), size_(size) {}

  std::byte* top() const noexcept { return base_ + used_; }
  size_t space() const noexcept { return size_ - used_; }
  size_t capacity() const noexcept { return size_; }

  // Keeps the next n bytes (n <= space()).
  void commit(size_t n) noexcept { used_ += n; }
  void reset() noexcept { used_ = 0; }

 private:
  std::byte* base_ = nullptr;
  size_t size_ = 0;
  size_t used_ = 0;
};

}  // namespace vramswap::engine
