#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "common/byte_size.hpp"
#include "common/geometry.hpp"
#include "common/unique_fd.hpp"
#include "cuda/context.hpp"

namespace vramswap::store {

// Told when a chunk's VRAM comes or goes, on the thread that commits and
// releases (the chunk mover): what keeps the chunks' descriptors for a live
// restart (store/vram_parking.hpp) follows the store without the mover
// knowing about it. Must not throw; called after the change is made.
class ChunkObserver {
 public:
  virtual void chunk_committed(size_t chunk) noexcept = 0;
  virtual void chunk_released(size_t chunk) noexcept = 0;

 protected:
  ~ChunkObserver() = default;
};

// A contiguous piece of device memory: where an export offset lives and how
// many bytes from there on are contiguous (to the end of the export).
struct VramExtent {
  cuda::CUdeviceptr device_ptr = 0;
  uint64_t bytes = 0;
};

// The export, as one contiguous range of device addresses on one GPU, backed
// chunk by chunk by physical VRAM (the CUDA virtual-memory calls).
//
// Why: one range means a request never splits at an allocation boundary (a
// copy, a zero-fill, a copy-kernel move: one device address each), and
// physical chunks mean VRAM can be given back and taken again per chunk while
// the export stays where it is (elastic VRAM), and handed to another process
// as file descriptors (live restart: every chunk is created exportable as a
// POSIX file descriptor).
//
// allocate() reserves the address range for the whole request
// (cuMemAddressReserve), creates a physical allocation per chunk
// (cuMemCreate) and maps it at its place (cuMemMap), then enables read/write
// access for the device on the mapped range in one call (cuMemSetAccess).
// Lookups are arithmetic on the range's base: any number of threads, no lock,
// no table. Everything is unmapped, released and the range freed in the
// destructor (binding the destroying thread to the context).
// The Context must outlive the store; the store must outlive its CopyStreams.
class VramStore {
 public:
  // The physical chunk: the ChunkMap's chunk (src/store/chunk_map.hpp), so
  // that the chunk mover frees exactly the VRAM of the chunk it evicted. On
  // the fake driver a 16 GiB export in 2 MiB chunks (8192 cuMemCreate +
  // cuMemMap) starts in well under a second (src/store/ELASTIC.md).
  static constexpr uint64_t default_chunk_bytes = vram_chunk_bytes;
  // Chunk sizes are whole multiples of this: the driver's page for large
  // allocations, which is its allocation granularity on every GPU so far
  // (allocate() checks the driver's own answer).
  static constexpr uint64_t granularity = 2 * MiB;
  // Exports are whole export blocks.
  static constexpr uint64_t block_bytes = export_block_bytes;

  // chunk_bytes: a multiple of `granularity`, at least `granularity`; throws
  // std::invalid_argument otherwise. Allocates nothing.
  explicit VramStore(const cuda::Context& context, uint64_t chunk_bytes = default_chunk_bytes);
  ~VramStore();
  VramStore(const VramStore&) = delete;
  VramStore& operator=(const VramStore&) = delete;

  // Allocates the export on the calling thread (which must be bound to the
  // context), once. `requested_bytes` is rounded down and `floor_bytes` up to
  // whole 4 KiB blocks; the last chunk may hold less than a chunk of the
  // export (its VRAM is still a whole chunk). Chunk after chunk, until the
  // request is met or the driver answers CUDA_ERROR_OUT_OF_MEMORY:
  //   - got less than requested: logs a warning (asked, got, backed off by);
  //   - got less than the floor: frees everything and throws
  //     StartupError(unavailable) saying how much could be had;
  //   - any other CUDA error: frees everything and throws StartupError.
  // Returns size(). Throws std::logic_error when called twice, and
  // StartupError(config) when the request is below one block or the floor.
  uint64_t allocate(uint64_t requested_bytes, uint64_t floor_bytes);

  // Live restart through the spill area: instead of allocate(), reserves the
  // address range of an export of exactly `export_bytes` (whole blocks) with
  // every chunk released, so that the chunks handed over in the spill area
  // come back one by one through commit(). Takes no VRAM, so it works with
  // the GPU full. Throws like allocate().
  uint64_t reserve_released(uint64_t export_bytes);

  // Export size in bytes (a multiple of block_bytes); 0 before allocate().
  uint64_t size() const noexcept { return size_; }
  // What allocate() was asked for (rounded to blocks) and how much less it got.
  uint64_t requested_bytes() const noexcept { return requested_; }
  uint64_t backed_off_bytes() const noexcept { return requested_ - size_; }
  uint64_t chunk_bytes() const noexcept { return chunk_bytes_; }
  // Chunks of the export: size() / chunk_bytes(), rounded up.
  size_t chunk_count() const noexcept { return handles_.size(); }
  // The device address of export offset 0; 0 before allocate().
  cuda::CUdeviceptr base() const noexcept { return base_.load(std::memory_order_relaxed); }
  const cuda::Context& context() const noexcept { return *context_; }

  // Whether a chunk's VRAM is in place (chunk < chunk_count()), and how much
  // VRAM the export holds now (committed chunks times chunk_bytes()).
  // committed() is for the thread that releases and commits;
  // committed_bytes() may be read by any thread.
  bool committed(size_t chunk) const noexcept {
    return chunk < handles_.size() && handles_[chunk] != 0;
  }
  uint64_t committed_bytes() const noexcept {
    return committed_chunks_.load(std::memory_order_relaxed) * chunk_bytes_;
  }

  // Whether [offset, offset + length) lies inside the export.
  bool contains(uint64_t offset, uint64_t length) const noexcept {
    return offset <= size_ && length <= size_ - offset;
  }
  // The extent at export offset `offset`, to the end of the export; {0, 0}
  // when offset >= size().
  VramExtent locate(uint64_t offset) const noexcept {
    if (offset >= size_) return {};
    return {base() + offset, size_ - offset};
  }

  // Gives one chunk's VRAM back to the GPU (cuMemUnmap, cuMemRelease); its
  // device addresses stay reserved for commit(). Returns the driver's error
  // when the unmap fails (the chunk is then still committed, its data intact)
  // or the release fails (the chunk is then unmapped all the same: it counts
  // as released, though the driver may keep its memory until exit). Releasing
  // a released chunk is a no-op.
  //
  // Thread safety, for release() and commit(): one thread at a time calls
  // them (the chunk mover), bound to the context, on a chunk that no request
  // touches meanwhile: the ChunkMap's pins guarantee that (a chunk in motion
  // is never pinned). Copies of other chunks may run on any thread
  // meanwhile. No exception, no allocation: a failure is the mover's to
  // handle (it abandons the move), and comes back as a Status.
  cuda::Status release(size_t chunk) noexcept;
  // Takes VRAM for a released chunk again and maps it at its place, readable
  // and writable (cuMemCreate, cuMemMap, cuMemSetAccess). Its contents are
  // undefined: the mover restores them. CUDA_ERROR_OUT_OF_MEMORY when the GPU
  // has no room (another program took it); on any failure the chunk stays
  // released and nothing is held. Committing a committed chunk is a no-op.
  cuda::Status commit(size_t chunk) noexcept;

  // Live restart: whether chunks can be exported as file descriptors (false
  // once the driver refused to make exportable VRAM and the store fell back
  // to plain chunks).
  bool exportable() const noexcept {
    return prop_.requestedHandleTypes == cuda::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  }
  // A new descriptor of committed chunk `chunk`'s VRAM
  // (cuMemExportToShareableHandle), owned by the caller: it keeps the VRAM
  // alive after release() and after this process ends, until it and every
  // copy of it are closed. CUDA_ERROR_INVALID_VALUE for a released chunk or
  // a store that is not exportable().
  cuda::Status export_chunk(size_t chunk, UniqueFd& fd) const noexcept;
  // Maps VRAM exported by an earlier run (`fd`, which the caller keeps) at
  // released chunk `chunk`'s place, readable and writable
  // (cuMemImportFromShareableHandle, cuMemMap, cuMemSetAccess); it then
  // counts as committed, with the contents it had. For a store made by
  // reserve_released(). CUDA_ERROR_INVALID_VALUE for a committed chunk; on
  // any failure the chunk stays released and nothing is held.
  cuda::Status import_chunk(size_t chunk, int fd) noexcept;

  // Tells `observer` (nullptr: nobody, as by default) of every later
  // successful commit() and import_chunk(), and of every release() that
  // took the chunk's VRAM away; not of what the destructor frees. Set it
  // while no commit or release runs.
  void set_observer(ChunkObserver* observer) noexcept { observer_ = observer; }

  // Before the context is released (Context::release()): gives the address
  // range back; every chunk must be released already
  // (CUDA_ERROR_ILLEGAL_STATE otherwise, and nothing changes). attach()
  // reserves a range of the same size again in the retained context, where
  // released chunks can be committed as before. base() is 0 while detached;
  // no copy may run then (every chunk is elsewhere).
  cuda::Status detach() noexcept;
  cuda::Status attach() noexcept;

 private:
  // Creates chunk `chunk`'s physical allocation and maps it (no access yet);
  // on failure holds nothing and names the call that failed.
  cuda::CUresult create_and_map(size_t chunk, const char** failed_call) noexcept;
  // Enables read/write access for the device on [base + offset, + bytes).
  cuda::CUresult enable_access(uint64_t offset, uint64_t bytes) const noexcept;
  cuda::CUdeviceptr chunk_address(size_t chunk) const noexcept {
    return base() + chunk * chunk_bytes_;
  }
  [[noreturn]] void fail(const char* call, uint64_t bytes, cuda::CUresult result);
  // Throws StartupError unless the driver's allocation page divides the chunk.
  void check_granularity();
  void free_all() noexcept;

  const cuda::Context* context_;
  uint64_t chunk_bytes_;
  uint64_t requested_ = 0;
  uint64_t size_ = 0;
  bool allocated_ = false;
  cuda::CUmemAllocationProp prop_{};  // no handle type where the driver cannot export
  // Read by every worker, changed only while none copies (detach/attach).
  std::atomic<cuda::CUdeviceptr> base_{0};
  cuda::CUdeviceptr detached_base_ = 0;
  uint64_t reserved_bytes_ = 0;
  // One handle per chunk of the export; 0 while the chunk is released.
  std::vector<cuda::CUmemGenericAllocationHandle> handles_;
  std::atomic<uint64_t> committed_chunks_{0};
  ChunkObserver* observer_ = nullptr;
};

}  // namespace vramswap::store
