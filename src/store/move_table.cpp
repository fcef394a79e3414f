#include "store/move_table.hpp"

#include <algorithm>

#include "common/startup_error.hpp"
#include "store/copy_kernel.hpp"

namespace vramswap::store {

MoveTable::MoveTable(const cuda::Context& context, const CopyKernel& copy_kernel, size_t capacity)
    : context_(&context),
      copy_kernel_(&copy_kernel),
      table_(context, capacity * sizeof(BlockMove), cuda::CU_MEMHOSTREGISTER_DEVICEMAP),
      capacity_(capacity),
      host_of_(capacity) {
  const cuda::Driver& driver = context.driver();
  const cuda::CUresult result = driver.cuMemHostGetDevicePointer(&table_device_, table_.data(), 0);
  if (result != cuda::CUDA_SUCCESS) {
    throw StartupError(
        exit_code::unavailable,
        "cannot map the copy table for the GPU: cuMemHostGetDevicePointer returned " +
            driver.describe(result));
  }
  regions_.reserve(4);
}

cuda::Status MoveTable::detach() noexcept {
  count_ = 0;
  table_device_ = 0;
  for (Region& region : regions_)
    region.device = 0;
  return table_.detach();
}

cuda::Status MoveTable::attach() noexcept {
  const cuda::Driver& driver = context_->driver();
  if (const cuda::Status attached = table_.attach(); !attached.ok()) return attached;
  if (const cuda::Status found = driver.cuMemHostGetDevicePointer(&table_device_, table_.data(), 0);
      !found.ok()) {
    return found;
  }
  for (Region& region : regions_) {
    if (const cuda::Status found = driver.cuMemHostGetDevicePointer(&region.device, region.host, 0);
        !found.ok()) {
      return found;
    }
  }
  return cuda::Status();
}

bool MoveTable::map(const PinnedBuffer& buffer) {
  cuda::CUdeviceptr device = 0;
  auto* host = const_cast<std::byte*>(buffer.data());
  if (context_->driver().cuMemHostGetDevicePointer(&device, host, 0) != cuda::CUDA_SUCCESS) {
    return false;
  }
  regions_.push_back(Region{host, buffer.size(), device});
  return true;
}

bool MoveTable::add(std::byte* host, cuda::CUdeviceptr device, uint64_t bytes,
                    bool to_device) noexcept {
  const Region* region = nullptr;
  for (const Region& r : regions_) {
    if (host >= r.host && host + bytes <= r.host + r.size) {
      region = &r;
      break;
    }
  }
  const size_t pieces = (bytes + max_block_move_bytes - 1) / max_block_move_bytes;
  if (!region || region->device == 0 || bytes >= dma_copy_bytes || count_ + pieces > capacity_) {
    return false;
  }
  auto* table = reinterpret_cast<BlockMove*>(table_.data());
  for (uint64_t done = 0; done < bytes; done += max_block_move_bytes) {
    const uint32_t piece =
        static_cast<uint32_t>(std::min<uint64_t>(bytes - done, max_block_move_bytes));
    host_of_[count_] = host + done;
    table[count_++] = BlockMove{region->device + static_cast<uint64_t>(host + done - region->host),
                                device + done, piece, to_device ? 1u : 0u};
  }
  return true;
}

cuda::Status MoveTable::submit(cuda::CUstream stream) const noexcept {
  if (count_ == 0) return cuda::CUDA_SUCCESS;
  const auto* table = reinterpret_cast<const BlockMove*>(table_.data());
  if (count_ == 1) {
    const BlockMove& m = table[0];
    const cuda::Driver& driver = context_->driver();
    return m.to_device ? driver.cuMemcpyHtoDAsync(m.device, host_of_[0], m.bytes, stream)
                       : driver.cuMemcpyDtoHAsync(host_of_[0], m.device, m.bytes, stream);
  }
  return copy_kernel_->launch(table_device_, static_cast<unsigned>(count_), stream);
}

}  // namespace vramswap::store
