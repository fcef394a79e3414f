#include "store/vram_store.hpp"

#include <stdexcept>
#include <string>

#include "common/log.hpp"
#include "common/startup_error.hpp"

namespace vramswap {
namespace {

uint64_t round_up_to_block(uint64_t bytes) {
  const uint64_t mask = VramStore::block_bytes - 1;
  return bytes > UINT64_MAX - mask ? UINT64_MAX & ~mask : (bytes + mask) & ~mask;
}

}  // namespace

VramStore::VramStore(const cuda::Context& context, uint64_t chunk_bytes)
    : context_(&context), chunk_bytes_(chunk_bytes) {
  if (chunk_bytes < granularity || chunk_bytes % granularity != 0) {
    throw std::invalid_argument("VramStore chunk size must be a positive multiple of 2 MiB");
  }
}

VramStore::~VramStore() {
  free_all();
}

uint64_t VramStore::allocate(uint64_t requested_bytes, uint64_t floor_bytes) {
  if (allocated_) throw std::logic_error("VramStore::allocate called twice");
  const uint64_t requested = requested_bytes & ~(block_bytes - 1);
  const uint64_t floor = round_up_to_block(floor_bytes);
  const int gpu = context_->device_index();
  if (requested == 0) {
    throw StartupError(exit_code::config, "the VRAM size asked for (" +
                                              format_byte_size(requested_bytes) +
                                              ") is less than one 4 KiB block; raise size");
  }
  if (floor > requested) {
    throw StartupError(exit_code::config, "the minimum VRAM size (" + format_byte_size(floor) +
                                              ") is above the size asked for (" +
                                              format_byte_size(requested) +
                                              "); lower min_size or raise size");
  }
  allocated_ = true;
  requested_ = requested;

  // Room for every chunk this loop can make, so that recording a chunk never
  // throws with VRAM in hand: full chunks, plus the capped smaller ones, plus
  // the tail.
  chunks_.reserve(requested / chunk_bytes_ + max_small_chunks + 1);

  const cuda::Driver& driver = context_->driver();
  uint64_t step = chunk_bytes_;
  size_t small_chunks = 0;
  bool fragmented = false;
  while (size_ < requested) {
    const uint64_t want = std::min(step, requested - size_);
    cuda::CUdeviceptr pointer = 0;
    const cuda::CUresult result = driver.cuMemAlloc(&pointer, want);
    if (result == cuda::CUDA_SUCCESS) {
      chunks_.push_back({pointer, size_, want});
      size_ += want;
      if (want < chunk_bytes_ && ++small_chunks >= max_small_chunks && size_ < requested) {
        fragmented = true;
        break;
      }
      continue;
    }
    if (result != cuda::CUDA_ERROR_OUT_OF_MEMORY) {
      free_all();
      std::string message = "allocating VRAM on GPU " + std::to_string(gpu) +
                            " failed: cuMemAlloc(" + format_byte_size(want) + ") returned " +
                            driver.describe(result);
      message += result == cuda::CUDA_ERROR_INVALID_CONTEXT
                     ? " (this thread has no CUDA context: call Context::bind_current_thread())"
                     : "; check that nvidia-smi works and dmesg for GPU errors";
      throw StartupError(exit_code::unavailable, message);
    }
    // Refused for lack of memory: ask for half as much (in whole pages),
    // until even one page does not fit.
    if (want <= granularity) break;
    step = std::max(granularity, want / 2 / granularity * granularity);
  }

  if (size_ < floor) {
    const uint64_t got = size_;
    free_all();
    throw StartupError(exit_code::unavailable,
                       "only " + format_byte_size(got) + " of VRAM could be allocated on GPU " +
                           std::to_string(gpu) + ", below the minimum " + format_byte_size(floor) +
                           "; free VRAM (nvidia-smi shows who holds it) or lower size/min_size");
  }
  if (size_ < requested) {
    log_warning("GPU %d: asked for %s of VRAM, got %s (backed off by %s): %s", gpu,
                format_byte_size(requested).c_str(), format_byte_size(size_).c_str(),
                format_byte_size(requested - size_).c_str(),
                fragmented ? "VRAM is too fragmented for more"
                           : "the driver refused more, other programs hold VRAM (nvidia-smi "
                             "shows who)");
  }
  log_info("GPU %d: %s of VRAM allocated in %zu chunks", gpu, format_byte_size(size_).c_str(),
           chunks_.size());
  return size_;
}

void VramStore::free_all() noexcept {
  if (chunks_.empty()) return;
  // The destroying thread may not be one that bound the context.
  (void)context_->bind_current_thread();
  const cuda::Driver& driver = context_->driver();
  for (const VramChunk& chunk : chunks_)
    (void)driver.cuMemFree(chunk.device_ptr);
  chunks_.clear();
  size_ = 0;
}

}  // namespace vramswap
