#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "common/byte_size.hpp"
#include "common/geometry.hpp"
#include "cuda/context.hpp"

namespace vramswap {

// One cuMemAlloc'ed piece of the export: bytes [offset, offset + bytes) of
// the export live at device_ptr.
struct VramChunk {
  cuda::CUdeviceptr device_ptr = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

// A contiguous piece of device memory: where an export offset lives and how
// many bytes from there on are contiguous (up to the end of its chunk).
struct VramExtent {
  cuda::CUdeviceptr device_ptr = 0;
  uint64_t bytes = 0;
};

// The export, as VRAM chunks on one GPU.
//
// Why chunks: one huge cuMemAlloc fails when VRAM is fragmented or shared
// with other programs, and backing off when the driver says no needs a
// granularity finer than "all or nothing".
//
// Allocate once at startup with allocate(); the chunk table never changes
// after that, so lookups from any number of threads need no lock. Everything
// is freed in the destructor (binding the destroying thread to the context).
// The Context must outlive the store; the store must outlive its CopyStreams.
class VramStore {
 public:
  static constexpr uint64_t default_chunk_bytes = GiB;
  // The smallest step of the back-off: the driver's own page size for large
  // allocations, so nothing smaller would fit where this does not.
  static constexpr uint64_t granularity = 2 * MiB;
  // At most this many chunks smaller than chunk_bytes. Backing off halves the
  // step on every refusal and never grows it, so a refusal at the end of free
  // VRAM costs about log2(chunk/granularity) small chunks; this cap only bites
  // when VRAM is so fragmented that only crumbs fit, and then stops early
  // instead of making thousands of tiny chunks.
  static constexpr size_t max_small_chunks = 256;
  // Exports are whole export blocks.
  static constexpr uint64_t block_bytes = kExportBlockBytes;

  // chunk_bytes: a multiple of `granularity`, at least `granularity` (tests
  // use small ones); throws std::invalid_argument otherwise. Allocates nothing.
  explicit VramStore(const cuda::Context& context, uint64_t chunk_bytes = default_chunk_bytes);
  ~VramStore();
  VramStore(const VramStore&) = delete;
  VramStore& operator=(const VramStore&) = delete;

  // Allocates the export on the calling thread (which must be bound to the
  // context), once. `requested_bytes` is rounded down and `floor_bytes` up to
  // whole 4 KiB blocks. Chunk by chunk; when the driver answers
  // CUDA_ERROR_OUT_OF_MEMORY the step is halved (down to `granularity`) and
  // allocation goes on, until the request is met or nothing more fits.
  //   - got less than requested: logs a warning (asked, got, backed off by);
  //   - got less than the floor: frees everything and throws
  //     StartupError(unavailable) saying how much could be had;
  //   - any other CUDA error: frees everything and throws StartupError.
  // Returns size(). Throws std::logic_error when called twice, and
  // StartupError(config) when the request is below one block or the floor.
  uint64_t allocate(uint64_t requested_bytes, uint64_t floor_bytes);

  // Export size in bytes (a multiple of block_bytes); 0 before allocate().
  uint64_t size() const noexcept { return size_; }
  // What allocate() was asked for (rounded to blocks) and how much less it got.
  uint64_t requested_bytes() const noexcept { return requested_; }
  uint64_t backed_off_bytes() const noexcept { return requested_ - size_; }
  uint64_t chunk_bytes() const noexcept { return chunk_bytes_; }
  std::span<const VramChunk> chunks() const noexcept { return chunks_; }
  const cuda::Context& context() const noexcept { return *context_; }

  // The extent at export offset `offset`; {0, 0} when offset >= size().
  VramExtent locate(uint64_t offset) const noexcept {
    const size_t index = chunk_index(offset);
    if (index == chunks_.size()) return {};
    const VramChunk& chunk = chunks_[index];
    const uint64_t into = offset - chunk.offset;
    return {chunk.device_ptr + into, chunk.bytes - into};
  }

  // Calls fn(CUdeviceptr device_ptr, uint64_t bytes, uint64_t done) for each
  // contiguous piece of [offset, offset + length), in order, where `done` is
  // how many bytes of the range came before this piece. Stops at the first
  // piece for which fn returns a failed Status and returns it. A range that
  // does not lie inside the export returns CUDA_ERROR_INVALID_VALUE without
  // calling fn. Allocates nothing.
  template <class Fn>
  cuda::Status for_each_extent(uint64_t offset, uint64_t length, Fn&& fn) const noexcept {
    if (offset > size_ || length > size_ - offset) return cuda::CUDA_ERROR_INVALID_VALUE;
    if (length == 0) return cuda::CUDA_SUCCESS;
    size_t index = chunk_index(offset);
    uint64_t into = offset - chunks_[index].offset;
    uint64_t done = 0;
    while (done < length) {
      const VramChunk& chunk = chunks_[index];
      const uint64_t piece = std::min(length - done, chunk.bytes - into);
      const cuda::Status status = fn(chunk.device_ptr + into, piece, done);
      if (!status.ok()) return status;
      done += piece;
      into = 0;
      ++index;
    }
    return cuda::CUDA_SUCCESS;
  }

 private:
  // Index of the chunk holding `offset`, or chunks_.size() when out of range.
  size_t chunk_index(uint64_t offset) const noexcept {
    if (offset >= size_) return chunks_.size();
    // Chunks are sorted by offset and tile [0, size_): the holder is the last
    // one starting at or before `offset`.
    const auto after = std::upper_bound(
        chunks_.begin(), chunks_.end(), offset,
        [](uint64_t value, const VramChunk& chunk) { return value < chunk.offset; });
    return static_cast<size_t>(after - chunks_.begin()) - 1;
  }

  void free_all() noexcept;

  const cuda::Context* context_;
  uint64_t chunk_bytes_;
  uint64_t requested_ = 0;
  uint64_t size_ = 0;
  bool allocated_ = false;
  std::vector<VramChunk> chunks_;
};

}  // namespace vramswap
