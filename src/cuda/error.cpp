#include "cuda/error.hpp"

namespace vramswap::cuda {

const char* cuda_error_name(CUresult result) noexcept {
  const char* name = result_name(result);
  return name ? name : "CUDA_ERROR_UNRECOGNIZED";
}

// The driver documents two kinds of failure. Most results describe the one
// call that returned them (bad argument, no memory for this allocation, a
// handle that does not exist); the next call is unaffected. A few describe the
// state of the context or the GPU: after them the driver's documentation says
// the process is left in an inconsistent state, that the context "cannot be
// used" and that every further call returns the same error, or the GPU itself
// is gone. For a swap device only that second kind matters to the daemon:
// the data in VRAM is unreachable and retrying cannot help.
//
// Sticky:
//   - faults that poison the context: illegal/misaligned address, illegal
//     instruction, invalid PC or address space, hardware stack error, launch
//     failure, launch timeout, device-side assert;
//   - hardware errors: uncorrectable ECC, uncorrectable NVLink, an external
//     device's failure;
//   - CUDA_ERROR_UNKNOWN: what calls return once the GPU has fallen off the
//     bus (Xid 79) or the driver lost it; unknowable means unusable here;
//   - the context or driver going away under us: context destroyed, driver
//     deinitialized (process exit), not initialized (a loaded driver that
//     stops answering as initialized cannot be trusted with our data).
// Everything else, including results this build does not know, is treated as
// a per-call failure: the caller fails that request and may go on, and a
// sticky condition will show itself again on the next call anyway.
bool is_sticky(CUresult result) noexcept {
  switch (result) {
    case CUDA_ERROR_ILLEGAL_ADDRESS:
    case CUDA_ERROR_MISALIGNED_ADDRESS:
    case CUDA_ERROR_ILLEGAL_INSTRUCTION:
    case CUDA_ERROR_INVALID_PC:
    case CUDA_ERROR_INVALID_ADDRESS_SPACE:
    case CUDA_ERROR_HARDWARE_STACK_ERROR:
    case CUDA_ERROR_LAUNCH_FAILED:
    case CUDA_ERROR_LAUNCH_TIMEOUT:
    case CUDA_ERROR_ASSERT:
    case CUDA_ERROR_ECC_UNCORRECTABLE:
    case CUDA_ERROR_NVLINK_UNCORRECTABLE:
    case CUDA_ERROR_EXTERNAL_DEVICE:
    case CUDA_ERROR_UNKNOWN:
    case CUDA_ERROR_CONTEXT_IS_DESTROYED:
    case CUDA_ERROR_DEINITIALIZED:
    case CUDA_ERROR_NOT_INITIALIZED:
      return true;
    default:
      return false;
  }
}

}  // namespace vramswap::cuda
