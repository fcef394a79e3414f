#include "store/vram_store.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "common/log.hpp"
#include "common/startup_error.hpp"

namespace vramswap::store {
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
  // Physical VRAM of this GPU, exportable as a file descriptor (live restart).
  prop_.type = cuda::CU_MEM_ALLOCATION_TYPE_PINNED;
  prop_.requestedHandleTypes = cuda::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  prop_.location = {cuda::CU_MEM_LOCATION_TYPE_DEVICE, context.device()};
}

VramStore::~VramStore() {
  free_all();
}

// The driver's page for these allocations must divide our chunk: a chunk is
// then whole pages, and releasing one frees exactly its VRAM.
void VramStore::check_granularity() {
  size_t driver_granularity = 0;
  const cuda::CUresult asked = context_->driver().cuMemGetAllocationGranularity(
      &driver_granularity, &prop_, cuda::CU_MEM_ALLOC_GRANULARITY_MINIMUM);
  if (asked != cuda::CUDA_SUCCESS) fail("cuMemGetAllocationGranularity", 0, asked);
  if (driver_granularity == 0 || chunk_bytes_ % driver_granularity != 0) {
    throw StartupError(exit_code::unavailable,
                       "GPU " + std::to_string(context_->device_index()) +
                           " allocates VRAM in pieces of " + format_byte_size(driver_granularity) +
                           ", which do not divide vramswap's chunk of " +
                           format_byte_size(chunk_bytes_) +
                           "; this GPU or driver is not supported yet, please report it");
  }
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

  const cuda::Driver& driver = context_->driver();
  check_granularity();

  // Sized before any VRAM is in hand, so that recording a chunk never throws.
  const size_t chunks = static_cast<size_t>((requested + chunk_bytes_ - 1) / chunk_bytes_);
  handles_.assign(chunks, 0);
  reserved_bytes_ = chunks * chunk_bytes_;
  cuda::CUdeviceptr base = 0;
  const cuda::CUresult reserved = driver.cuMemAddressReserve(&base, reserved_bytes_, 0, 0, 0);
  if (reserved != cuda::CUDA_SUCCESS) fail("cuMemAddressReserve", reserved_bytes_, reserved);
  base_.store(base, std::memory_order_relaxed);

  size_t got = 0;
  for (; got < chunks; ++got) {
    const char* call = nullptr;
    const cuda::CUresult result = create_and_map(got, &call);
    if (result == cuda::CUDA_ERROR_OUT_OF_MEMORY) break;  // back off: keep what fits
    if (result != cuda::CUDA_SUCCESS) {
      free_all();
      fail(call, chunk_bytes_, result);
    }
    committed_chunks_.fetch_add(1, std::memory_order_relaxed);
  }
  handles_.resize(got);  // the export's chunks; the range stays reserved whole
  size_ = std::min(requested, got * chunk_bytes_);
  // One call for the whole mapped range: access is per mapping, and the
  // driver sets it on every mapping the range covers.
  if (got > 0) {
    const cuda::CUresult access = enable_access(0, got * chunk_bytes_);
    if (access != cuda::CUDA_SUCCESS) {
      free_all();
      fail("cuMemSetAccess", got * chunk_bytes_, access);
    }
  }

  if (size_ < floor) {
    const uint64_t had = size_;
    free_all();
    throw StartupError(exit_code::unavailable,
                       "only " + format_byte_size(had) + " of VRAM could be allocated on GPU " +
                           std::to_string(gpu) + ", below the minimum " + format_byte_size(floor) +
                           "; free VRAM (nvidia-smi shows who holds it) or lower size/min_size");
  }
  if (size_ < requested) {
    log_warning(
        "GPU %d: asked for %s of VRAM, got %s (backed off by %s): the driver refused more, "
        "other programs hold VRAM (nvidia-smi shows who)",
        gpu, format_byte_size(requested).c_str(), format_byte_size(size_).c_str(),
        format_byte_size(requested - size_).c_str());
  }
  log_info("GPU %d: %s of VRAM allocated in %zu chunks of %s", gpu, format_byte_size(size_).c_str(),
           handles_.size(), format_byte_size(chunk_bytes_).c_str());
  return size_;
}

uint64_t VramStore::reserve_released(uint64_t export_bytes) {
  if (allocated_) throw std::logic_error("VramStore::reserve_released after allocate");
  if (export_bytes == 0 || export_bytes % block_bytes != 0) {
    throw StartupError(exit_code::software, "the handed-over export of " +
                                                format_byte_size(export_bytes) +
                                                " is not a whole number of 4 KiB blocks");
  }
  allocated_ = true;
  const cuda::Driver& driver = context_->driver();
  check_granularity();
  const size_t chunks = static_cast<size_t>((export_bytes + chunk_bytes_ - 1) / chunk_bytes_);
  handles_.assign(chunks, 0);
  reserved_bytes_ = chunks * chunk_bytes_;
  cuda::CUdeviceptr base = 0;
  const cuda::CUresult reserved = driver.cuMemAddressReserve(&base, reserved_bytes_, 0, 0, 0);
  if (reserved != cuda::CUDA_SUCCESS) fail("cuMemAddressReserve", reserved_bytes_, reserved);
  base_.store(base, std::memory_order_relaxed);
  requested_ = export_bytes;
  size_ = export_bytes;
  return size_;
}

cuda::CUresult VramStore::create_and_map(size_t chunk, const char** failed_call) noexcept {
  const cuda::Driver& driver = context_->driver();
  cuda::CUmemGenericAllocationHandle handle = 0;
  cuda::CUresult created = driver.cuMemCreate(&handle, chunk_bytes_, &prop_, 0);
  if (chunk == 0 && prop_.requestedHandleTypes != cuda::CU_MEM_HANDLE_TYPE_NONE &&
      (created == cuda::CUDA_ERROR_NOT_SUPPORTED || created == cuda::CUDA_ERROR_INVALID_VALUE)) {
    // Some platforms cannot export VRAM as a file descriptor. Serving matters
    // more than handing VRAM to the next daemon: take plain chunks, and say
    // what is lost.
    log_notice(
        "GPU %d: this driver cannot export VRAM as file descriptors (%s); the device "
        "serves, but its VRAM cannot be handed to a restarted daemon",
        context_->device_index(), cuda::cuda_error_name(created));
    prop_.requestedHandleTypes = cuda::CU_MEM_HANDLE_TYPE_NONE;
    created = driver.cuMemCreate(&handle, chunk_bytes_, &prop_, 0);
  }
  if (created != cuda::CUDA_SUCCESS) {
    *failed_call = "cuMemCreate";
    return created;
  }
  const cuda::CUresult mapped = driver.cuMemMap(chunk_address(chunk), chunk_bytes_, 0, handle, 0);
  if (mapped != cuda::CUDA_SUCCESS) {
    (void)driver.cuMemRelease(handle);
    *failed_call = "cuMemMap";
    return mapped;
  }
  handles_[chunk] = handle;
  return cuda::CUDA_SUCCESS;
}

cuda::CUresult VramStore::enable_access(uint64_t offset, uint64_t bytes) const noexcept {
  const cuda::CUmemAccessDesc access{prop_.location, cuda::CU_MEM_ACCESS_FLAGS_PROT_READWRITE};
  return context_->driver().cuMemSetAccess(base() + offset, bytes, &access, 1);
}

cuda::Status VramStore::release(size_t chunk) noexcept {
  if (chunk >= handles_.size()) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (handles_[chunk] == 0) return cuda::CUDA_SUCCESS;
  const cuda::Driver& driver = context_->driver();
  const cuda::CUresult unmapped = driver.cuMemUnmap(chunk_address(chunk), chunk_bytes_);
  if (unmapped != cuda::CUDA_SUCCESS) return unmapped;
  const cuda::CUmemGenericAllocationHandle handle = std::exchange(handles_[chunk], 0);
  committed_chunks_.fetch_sub(1, std::memory_order_relaxed);
  const cuda::Status released = driver.cuMemRelease(handle);
  // Whatever the release says, the chunk counts as released: whoever keeps
  // its descriptor must let go of it too, or its VRAM stays taken.
  if (observer_) observer_->chunk_released(chunk);
  return released;
}

cuda::Status VramStore::commit(size_t chunk) noexcept {
  if (chunk >= handles_.size()) return cuda::CUDA_ERROR_INVALID_VALUE;
  if (handles_[chunk] != 0) return cuda::CUDA_SUCCESS;
  const char* call = nullptr;
  const cuda::CUresult created = create_and_map(chunk, &call);
  if (created != cuda::CUDA_SUCCESS) return created;
  const cuda::CUresult access = enable_access(chunk * chunk_bytes_, chunk_bytes_);
  if (access != cuda::CUDA_SUCCESS) {
    const cuda::Driver& driver = context_->driver();
    (void)driver.cuMemUnmap(chunk_address(chunk), chunk_bytes_);
    (void)driver.cuMemRelease(std::exchange(handles_[chunk], 0));
    return access;
  }
  committed_chunks_.fetch_add(1, std::memory_order_relaxed);
  if (observer_) observer_->chunk_committed(chunk);
  return cuda::CUDA_SUCCESS;
}

cuda::Status VramStore::export_chunk(size_t chunk, UniqueFd& fd) const noexcept {
  if (!committed(chunk) || !exportable()) return cuda::CUDA_ERROR_INVALID_VALUE;
  int exported = -1;
  const cuda::CUresult result = context_->driver().cuMemExportToShareableHandle(
      &exported, handles_[chunk], cuda::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0);
  if (result == cuda::CUDA_SUCCESS) fd.reset(exported);
  return result;
}

cuda::Status VramStore::import_chunk(size_t chunk, int fd) noexcept {
  if (chunk >= handles_.size() || handles_[chunk] != 0 || fd < 0) {
    return cuda::CUDA_ERROR_INVALID_VALUE;
  }
  const cuda::Driver& driver = context_->driver();
  cuda::CUmemGenericAllocationHandle handle = 0;
  // The descriptor itself, cast to a pointer, is the handle (cuda.h).
  const cuda::CUresult imported = driver.cuMemImportFromShareableHandle(
      &handle, reinterpret_cast<void*>(static_cast<intptr_t>(fd)),
      cuda::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR);
  if (imported != cuda::CUDA_SUCCESS) return imported;
  // A smaller allocation than a chunk fails to map (the driver checks the
  // size); the parking header's chunk size rules out a larger one.
  const cuda::CUresult mapped = driver.cuMemMap(chunk_address(chunk), chunk_bytes_, 0, handle, 0);
  if (mapped != cuda::CUDA_SUCCESS) {
    (void)driver.cuMemRelease(handle);
    return mapped;
  }
  const cuda::CUresult access = enable_access(chunk * chunk_bytes_, chunk_bytes_);
  if (access != cuda::CUDA_SUCCESS) {
    (void)driver.cuMemUnmap(chunk_address(chunk), chunk_bytes_);
    (void)driver.cuMemRelease(handle);
    return access;
  }
  handles_[chunk] = handle;
  committed_chunks_.fetch_add(1, std::memory_order_relaxed);
  if (observer_) observer_->chunk_committed(chunk);
  return cuda::CUDA_SUCCESS;
}

void VramStore::fail(const char* call, uint64_t bytes, cuda::CUresult result) {
  std::string message = "allocating VRAM on GPU " + std::to_string(context_->device_index()) +
                        " failed: " + call + "(" + format_byte_size(bytes) + ") returned " +
                        context_->driver().describe(result);
  message += result == cuda::CUDA_ERROR_INVALID_CONTEXT
                 ? " (this thread has no CUDA context: call Context::bind_current_thread())"
                 : "; check that nvidia-smi works and dmesg for GPU errors";
  throw StartupError(exit_code::unavailable, message);
}

cuda::Status VramStore::detach() noexcept {
  if (committed_chunks_.load(std::memory_order_relaxed) != 0) return cuda::CUDA_ERROR_ILLEGAL_STATE;
  const cuda::CUdeviceptr base = base_.exchange(0, std::memory_order_relaxed);
  if (base == 0) return cuda::Status();
  detached_base_ = base;
  return context_->driver().cuMemAddressFree(base, reserved_bytes_);
}

cuda::Status VramStore::attach() noexcept {
  if (base() != 0 || reserved_bytes_ == 0) return cuda::Status();
  // The same addresses where the driver still has them free: nothing else
  // cares, but a debugger's view of the export stays put.
  cuda::CUdeviceptr base = 0;
  const cuda::Status reserved =
      context_->driver().cuMemAddressReserve(&base, reserved_bytes_, 0, detached_base_, 0);
  if (reserved.ok()) base_.store(base, std::memory_order_relaxed);
  return reserved;
}

void VramStore::free_all() noexcept {
  if (base() == 0 && handles_.empty()) return;
  // The destroying thread may not be one that bound the context.
  (void)context_->bind_current_thread();
  const cuda::Driver& driver = context_->driver();
  // Chunk by chunk: a released chunk leaves a hole in the mapped range.
  for (size_t chunk = 0; chunk < handles_.size(); ++chunk) {
    if (handles_[chunk] == 0) continue;
    (void)driver.cuMemUnmap(chunk_address(chunk), chunk_bytes_);
    (void)driver.cuMemRelease(handles_[chunk]);
  }
  if (base() != 0) (void)driver.cuMemAddressFree(base(), reserved_bytes_);
  handles_.clear();
  committed_chunks_.store(0, std::memory_order_relaxed);
  base_.store(0, std::memory_order_relaxed);
  reserved_bytes_ = 0;
  size_ = 0;
}

}  // namespace vramswap::store
