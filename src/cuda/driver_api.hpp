#pragma once

// Our own declarations of the small part of the CUDA driver API that vramswap
// uses. The build machines have no CUDA toolkit, and the daemon must not depend
// on one at build time: libcuda.so.1 is loaded at run time (see driver.hpp).
// The driver keeps the ABI of its exported, versioned entry points stable (a
// changed signature gets a new "_vN" symbol), so declaring them here is safe.
//
// This header is the single list of what we use: the loader resolves exactly
// the functions below, and the fake driver of the test suite
// (tests/fake_cuda) implements exactly them, declared from the same list, so
// the compiler rejects a fake whose signatures drift from the loader's.

#include <cstddef>
#include <cstdint>

namespace vramswap::cuda {

// The results we name. X(NAME, VALUE, TEXT): TEXT is our one-line wording
// (the fake driver returns it from cuGetErrorString).
#define VRAMSWAP_CUDA_RESULTS(X)                                                      \
  X(CUDA_SUCCESS, 0, "no error")                                                      \
  X(CUDA_ERROR_INVALID_VALUE, 1, "an argument is invalid")                            \
  X(CUDA_ERROR_OUT_OF_MEMORY, 2, "out of memory")                                     \
  X(CUDA_ERROR_NOT_INITIALIZED, 3, "cuInit has not succeeded")                        \
  X(CUDA_ERROR_DEINITIALIZED, 4, "the driver is shutting down")                       \
  X(CUDA_ERROR_STUB_LIBRARY, 34, "this is the CUDA toolkit's stub, not the driver")   \
  X(CUDA_ERROR_DEVICE_UNAVAILABLE, 46, "the GPU is busy or not available")            \
  X(CUDA_ERROR_NO_DEVICE, 100, "no CUDA GPU found")                                   \
  X(CUDA_ERROR_INVALID_DEVICE, 101, "no such GPU")                                    \
  X(CUDA_ERROR_DEVICE_NOT_LICENSED, 102, "the GPU has no valid license")              \
  X(CUDA_ERROR_INVALID_CONTEXT, 201, "no usable context is current on this thread")   \
  X(CUDA_ERROR_INVALID_IMAGE, 200, "the kernel image is invalid")                     \
  X(CUDA_ERROR_NO_BINARY_FOR_GPU, 209, "no kernel image for this GPU")                \
  X(CUDA_ERROR_ECC_UNCORRECTABLE, 214, "uncorrectable ECC error in GPU memory")       \
  X(CUDA_ERROR_INVALID_PTX, 218, "the PTX could not be compiled")                     \
  X(CUDA_ERROR_JIT_COMPILER_NOT_FOUND, 221, "the driver's PTX compiler is missing")   \
  X(CUDA_ERROR_UNSUPPORTED_PTX_VERSION, 222, "the PTX is newer than the driver")      \
  X(CUDA_ERROR_NVLINK_UNCORRECTABLE, 220, "uncorrectable NVLink error")               \
  X(CUDA_ERROR_OPERATING_SYSTEM, 304, "a call into the operating system failed")      \
  X(CUDA_ERROR_INVALID_HANDLE, 400, "invalid handle")                                 \
  X(CUDA_ERROR_ILLEGAL_STATE, 401, "not possible in the present state")               \
  X(CUDA_ERROR_NOT_FOUND, 500, "not found")                                           \
  X(CUDA_ERROR_NOT_READY, 600, "work is still pending")                               \
  X(CUDA_ERROR_ILLEGAL_ADDRESS, 700, "the GPU accessed an illegal address")           \
  X(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, 701, "a launch asked for too many resources") \
  X(CUDA_ERROR_LAUNCH_TIMEOUT, 702, "GPU work ran too long and was stopped")          \
  X(CUDA_ERROR_CONTEXT_IS_DESTROYED, 709, "the context was destroyed")                \
  X(CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED, 712, "host memory already registered") \
  X(CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED, 713, "host memory not registered")         \
  X(CUDA_ERROR_ASSERT, 710, "an assertion failed on the GPU")                         \
  X(CUDA_ERROR_HARDWARE_STACK_ERROR, 714, "GPU hardware stack error")                 \
  X(CUDA_ERROR_ILLEGAL_INSTRUCTION, 715, "the GPU met an illegal instruction")        \
  X(CUDA_ERROR_MISALIGNED_ADDRESS, 716, "the GPU accessed a misaligned address")      \
  X(CUDA_ERROR_INVALID_ADDRESS_SPACE, 717, "the GPU used a wrong address space")      \
  X(CUDA_ERROR_INVALID_PC, 718, "the GPU met an invalid program counter")             \
  X(CUDA_ERROR_LAUNCH_FAILED, 719, "GPU work failed")                                 \
  X(CUDA_ERROR_NOT_PERMITTED, 800, "not permitted")                                   \
  X(CUDA_ERROR_NOT_SUPPORTED, 801, "not supported")                                   \
  X(CUDA_ERROR_SYSTEM_NOT_READY, 802, "the GPU system is not ready yet")              \
  X(CUDA_ERROR_SYSTEM_DRIVER_MISMATCH, 803,                                           \
    "the driver library and the nvidia kernel module differ in version")              \
  X(CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE, 804,                                   \
    "the forward-compatibility driver does not support this GPU")                     \
  X(CUDA_ERROR_TIMEOUT, 909, "a wait timed out")                                      \
  X(CUDA_ERROR_EXTERNAL_DEVICE, 911, "an external device failed")                     \
  X(CUDA_ERROR_UNKNOWN, 999, "unknown error (a GPU that fell off the bus reports this)")

// A fixed underlying type: a newer driver may return values we do not list,
// and those must stay representable.
enum CUresult : int {
#define VRAMSWAP_CUDA_RESULT_ENUMERATOR(name, value, text) name = value,
  VRAMSWAP_CUDA_RESULTS(VRAMSWAP_CUDA_RESULT_ENUMERATOR)
#undef VRAMSWAP_CUDA_RESULT_ENUMERATOR
};

// "CUDA_ERROR_OUT_OF_MEMORY", or nullptr for a value we do not list.
constexpr const char* result_name(CUresult result) noexcept {
  switch (result) {
#define VRAMSWAP_CUDA_RESULT_NAME(name, value, text) \
  case name:                                         \
    return #name;
    VRAMSWAP_CUDA_RESULTS(VRAMSWAP_CUDA_RESULT_NAME)
#undef VRAMSWAP_CUDA_RESULT_NAME
  }
  return nullptr;
}

// "out of memory", or nullptr for a value we do not list.
constexpr const char* result_text(CUresult result) noexcept {
  switch (result) {
#define VRAMSWAP_CUDA_RESULT_TEXT(name, value, text) \
  case name:                                         \
    return text;
    VRAMSWAP_CUDA_RESULTS(VRAMSWAP_CUDA_RESULT_TEXT)
#undef VRAMSWAP_CUDA_RESULT_TEXT
  }
  return nullptr;
}

using CUdevice = int;
// A 64-bit device address, the type cuda.h gives it on LP64 (so signatures
// compare equal to cuda.h's, see tests/unit/cuda_abi_check.cpp).
using CUdeviceptr = unsigned long long;
static_assert(sizeof(CUdeviceptr) == sizeof(std::uint64_t));
struct CUctx_st;  // opaque, owned by the driver
struct CUstream_st;
struct CUmod_st;
struct CUfunc_st;
struct CUevent_st;
using CUcontext = CUctx_st*;
using CUstream = CUstream_st*;
using CUmodule = CUmod_st*;
using CUfunction = CUfunc_st*;
using CUevent = CUevent_st*;
struct CUuuid {
  unsigned char bytes[16];
};

// cuStreamCreate flags: a stream that does not synchronize with the legacy
// default stream (we never use the default stream, and must not wait on it).
inline constexpr unsigned int CU_STREAM_NON_BLOCKING = 0x1;
// cuMemHostAlloc flags.
inline constexpr unsigned int CU_MEMHOSTALLOC_PORTABLE = 0x1;
inline constexpr unsigned int CU_MEMHOSTALLOC_DEVICEMAP = 0x2;
inline constexpr unsigned int CU_MEMHOSTALLOC_WRITECOMBINED = 0x4;
// cuMemHostRegister flags.
inline constexpr unsigned int CU_MEMHOSTREGISTER_PORTABLE = 0x1;
inline constexpr unsigned int CU_MEMHOSTREGISTER_DEVICEMAP = 0x2;
inline constexpr unsigned int CU_EVENT_DISABLE_TIMING = 0x2;

// The virtual-memory calls (cuMemCreate and friends): physical allocations
// ("handles") mapped into a reserved range of device addresses. Layouts as in
// cuda.h (checked by tests/unit/cuda_abi_check.cpp where cuda.h exists).
using CUmemGenericAllocationHandle = unsigned long long;
enum CUmemAllocationType : int { CU_MEM_ALLOCATION_TYPE_PINNED = 0x1 };
enum CUmemAllocationHandleType : int {
  CU_MEM_HANDLE_TYPE_NONE = 0x0,
  CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR = 0x1,
};
enum CUmemLocationType : int { CU_MEM_LOCATION_TYPE_DEVICE = 0x1 };
enum CUmemAllocationGranularity_flags : int {
  CU_MEM_ALLOC_GRANULARITY_MINIMUM = 0x0,
  CU_MEM_ALLOC_GRANULARITY_RECOMMENDED = 0x1,
};
enum CUmemAccess_flags : int {
  CU_MEM_ACCESS_FLAGS_PROT_NONE = 0x0,
  CU_MEM_ACCESS_FLAGS_PROT_READ = 0x1,
  CU_MEM_ACCESS_FLAGS_PROT_READWRITE = 0x3,
};
struct CUmemLocation {
  CUmemLocationType type;
  int id;
};
struct CUmemAllocationProp {
  CUmemAllocationType type;
  CUmemAllocationHandleType requestedHandleTypes;
  CUmemLocation location;
  void* win32HandleMetaData;
  struct {
    unsigned char compressionType;
    unsigned char gpuDirectRDMACapable;
    unsigned short usage;
    unsigned char reserved[4];
  } allocFlags;
};
static_assert(sizeof(CUmemAllocationProp) == 32);
struct CUmemAccessDesc {
  CUmemLocation location;
  CUmemAccess_flags flags;
};

// The entry points. X(MEMBER, SYMBOL, SINCE, PARAMETERS):
//   MEMBER      the name cuda.h gives callers (and our Driver's member),
//   SYMBOL      the symbol libcuda.so.1 exports for it (cuda.h maps
//               cuMemAlloc to cuMemAlloc_v2 and so on),
//   SINCE       the CUDA version whose driver first exported SYMBOL,
//   PARAMETERS  the parameter list; every entry point returns CUresult.
// The plain (not per-thread-default-stream "_ptsz"/"_ptds") symbols are the
// right ones: we always pass an explicit stream.
#define VRAMSWAP_CUDA_FUNCTIONS(X)                                                                \
  X(cuInit, cuInit, "2.0", (unsigned int flags))                                                  \
  X(cuDriverGetVersion, cuDriverGetVersion, "2.2", (int* version))                                \
  X(cuDeviceGetCount, cuDeviceGetCount, "2.0", (int* count))                                      \
  X(cuDeviceGet, cuDeviceGet, "2.0", (CUdevice * device, int ordinal))                            \
  X(cuDeviceGetName, cuDeviceGetName, "2.0", (char* name, int length, CUdevice device))           \
  X(cuDeviceTotalMem, cuDeviceTotalMem_v2, "3.2", (size_t * bytes, CUdevice device))              \
  X(cuDeviceGetUuid, cuDeviceGetUuid, "9.2", (CUuuid * uuid, CUdevice device))                    \
  X(cuDeviceGetPCIBusId, cuDeviceGetPCIBusId, "4.1", (char* bus_id, int length, CUdevice device)) \
  X(cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, "7.0",                                    \
    (CUcontext * context, CUdevice device))                                                       \
  X(cuDevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease_v2, "11.0", (CUdevice device))           \
  X(cuCtxSetCurrent, cuCtxSetCurrent, "4.0", (CUcontext context))                                 \
  X(cuMemGetInfo, cuMemGetInfo_v2, "3.2", (size_t * free_bytes, size_t * total_bytes))            \
  X(cuMemAlloc, cuMemAlloc_v2, "3.2", (CUdeviceptr * pointer, size_t bytes))                      \
  X(cuMemFree, cuMemFree_v2, "3.2", (CUdeviceptr pointer))                                        \
  X(cuMemHostAlloc, cuMemHostAlloc, "2.2", (void** pointer, size_t bytes, unsigned int flags))    \
  X(cuMemFreeHost, cuMemFreeHost, "2.0", (void* pointer))                                         \
  X(cuStreamCreate, cuStreamCreate, "2.0", (CUstream * stream, unsigned int flags))               \
  X(cuStreamDestroy, cuStreamDestroy_v2, "4.0", (CUstream stream))                                \
  X(cuMemcpyHtoDAsync, cuMemcpyHtoDAsync_v2, "3.2",                                               \
    (CUdeviceptr destination, const void* source, size_t bytes, CUstream stream))                 \
  X(cuMemcpyDtoHAsync, cuMemcpyDtoHAsync_v2, "3.2",                                               \
    (void* destination, CUdeviceptr source, size_t bytes, CUstream stream))                       \
  X(cuMemsetD8Async, cuMemsetD8Async, "3.2",                                                      \
    (CUdeviceptr destination, unsigned char value, size_t count, CUstream stream))                \
  X(cuStreamSynchronize, cuStreamSynchronize, "2.0", (CUstream stream))                           \
  X(cuGetErrorName, cuGetErrorName, "6.0", (CUresult error, const char** name))                   \
  X(cuGetErrorString, cuGetErrorString, "6.0", (CUresult error, const char** text))               \
  X(cuMemHostGetDevicePointer, cuMemHostGetDevicePointer_v2, "3.2",                               \
    (CUdeviceptr * device_pointer, void* host, unsigned int flags))                               \
  X(cuMemHostRegister, cuMemHostRegister_v2, "6.5",                                               \
    (void* pointer, size_t bytes, unsigned int flags))                                            \
  X(cuMemHostUnregister, cuMemHostUnregister, "4.0", (void* pointer))                             \
  X(cuModuleLoadData, cuModuleLoadData, "2.0", (CUmodule * module, const void* image))            \
  X(cuModuleGetFunction, cuModuleGetFunction, "2.0",                                              \
    (CUfunction * function, CUmodule module, const char* name))                                   \
  X(cuModuleUnload, cuModuleUnload, "2.0", (CUmodule module))                                     \
  X(cuLaunchKernel, cuLaunchKernel, "4.0",                                                        \
    (CUfunction function, unsigned int grid_x, unsigned int grid_y, unsigned int grid_z,          \
     unsigned int block_x, unsigned int block_y, unsigned int block_z, unsigned int shared_bytes, \
     CUstream stream, void** parameters, void** extra))                                           \
  X(cuStreamQuery, cuStreamQuery, "2.0", (CUstream stream))                                       \
  X(cuEventCreate, cuEventCreate, "2.0", (CUevent * event, unsigned int flags))                   \
  X(cuEventRecord, cuEventRecord, "2.0", (CUevent event, CUstream stream))                        \
  X(cuEventQuery, cuEventQuery, "2.0", (CUevent event))                                           \
  X(cuEventSynchronize, cuEventSynchronize, "2.0", (CUevent event))                               \
  X(cuEventDestroy, cuEventDestroy_v2, "4.0", (CUevent event))                                    \
  X(cuMemGetAllocationGranularity, cuMemGetAllocationGranularity, "10.2",                         \
    (size_t * granularity, const CUmemAllocationProp* prop,                                       \
     CUmemAllocationGranularity_flags option))                                                    \
  X(cuMemCreate, cuMemCreate, "10.2",                                                             \
    (CUmemGenericAllocationHandle * handle, size_t bytes, const CUmemAllocationProp* prop,        \
     unsigned long long flags))                                                                   \
  X(cuMemRelease, cuMemRelease, "10.2", (CUmemGenericAllocationHandle handle))                    \
  X(cuMemAddressReserve, cuMemAddressReserve, "10.2",                                             \
    (CUdeviceptr * pointer, size_t bytes, size_t alignment, CUdeviceptr address,                  \
     unsigned long long flags))                                                                   \
  X(cuMemAddressFree, cuMemAddressFree, "10.2", (CUdeviceptr pointer, size_t bytes))              \
  X(cuMemMap, cuMemMap, "10.2",                                                                   \
    (CUdeviceptr pointer, size_t bytes, size_t offset, CUmemGenericAllocationHandle handle,       \
     unsigned long long flags))                                                                   \
  X(cuMemUnmap, cuMemUnmap, "10.2", (CUdeviceptr pointer, size_t bytes))                          \
  X(cuMemSetAccess, cuMemSetAccess, "10.2",                                                       \
    (CUdeviceptr pointer, size_t bytes, const CUmemAccessDesc* descriptors, size_t count))        \
  X(cuMemExportToShareableHandle, cuMemExportToShareableHandle, "10.2",                           \
    (void* shareable_handle, CUmemGenericAllocationHandle handle,                                 \
     CUmemAllocationHandleType handle_type, unsigned long long flags))                            \
  X(cuMemImportFromShareableHandle, cuMemImportFromShareableHandle, "10.2",                       \
    (CUmemGenericAllocationHandle * handle, void* os_handle,                                      \
     CUmemAllocationHandleType handle_type))

// Newer symbols preferred over a MEMBER of the list above when the driver
// exports them (same signature); the loader falls back to the older symbol.
// The two UUID calls agree for whole GPUs; they differ for MIG instances,
// which cuDeviceGetUuid_v2 names by their own UUID (as nvidia-smi -L does).
#define VRAMSWAP_CUDA_PREFERRED_FUNCTIONS(X) \
  X(cuDeviceGetUuid, cuDeviceGetUuid_v2, "11.4", (CUuuid * uuid, CUdevice device))

// The oldest driver that exports every required symbol above.
inline constexpr const char* minimum_cuda_version = "11.0";

}  // namespace vramswap::cuda
