// Compile-time check of src/cuda/driver_api.hpp against NVIDIA's cuda.h, for
// machines that have the CUDA toolkit (the build never needs it). Built only
// when VRAMSWAP_CUDA_INCLUDE_DIR names the directory holding cuda.h:
//
//   cmake -DVRAMSWAP_CUDA_INCLUDE_DIR=/usr/local/cuda/include ...
//   cmake --build build --target cuda_abi_check
//
// Compiling is the check: every result value and flag we declare must equal
// cuda.h's, and every entry point's signature, with our types mapped to
// cuda.h's, must be the one cuda.h declares for the exported symbol.

#include <cstddef>
#include <type_traits>

#include "cuda/driver_api.hpp"

// cuda.h #defines the host-allocation flags, which would rewrite our names:
// take our values before including it.
namespace vramswap::cuda::abi_check {
constexpr unsigned int our_portable = CU_MEMHOSTALLOC_PORTABLE;
constexpr unsigned int our_devicemap = CU_MEMHOSTALLOC_DEVICEMAP;
constexpr unsigned int our_writecombined = CU_MEMHOSTALLOC_WRITECOMBINED;
constexpr unsigned int our_register_portable = CU_MEMHOSTREGISTER_PORTABLE;
constexpr unsigned int our_register_devicemap = CU_MEMHOSTREGISTER_DEVICEMAP;
}  // namespace vramswap::cuda::abi_check

#include <cuda.h>

// Inside vramswap::cuda, unqualified names (CUresult, CUdevice, CUstream...,
// also those in the parameter lists of the X-macros) are ours; cuda.h's are
// reached with "::".
namespace vramswap::cuda::abi_check {

// Our type -> cuda.h's type, through pointers and const.
template <class T>
struct Real {
  using type = T;
};
template <class T>
struct Real<T*> {
  using type = typename Real<T>::type*;
};
template <class T>
struct Real<const T> {
  using type = const typename Real<T>::type;
};
template <>
struct Real<CUresult> {
  using type = ::CUresult;
};
template <>
struct Real<CUctx_st> {
  using type = ::CUctx_st;
};
template <>
struct Real<CUstream_st> {
  using type = ::CUstream_st;
};
template <>
struct Real<CUuuid> {
  using type = ::CUuuid;
};
template <>
struct Real<CUmod_st> {
  using type = ::CUmod_st;
};
template <>
struct Real<CUfunc_st> {
  using type = ::CUfunc_st;
};
template <>
struct Real<CUevent_st> {
  using type = ::CUevent_st;
};

template <>
struct Real<CUmemAllocationProp> {
  using type = ::CUmemAllocationProp;
};
template <>
struct Real<CUmemAccessDesc> {
  using type = ::CUmemAccessDesc;
};
template <>
struct Real<CUmemAllocationHandleType> {
  using type = ::CUmemAllocationHandleType;
};
template <>
struct Real<CUmemAllocationGranularity_flags> {
  using type = ::CUmemAllocationGranularity_flags;
};

template <class Function>
struct RealFunction;
template <class Result, class... Parameters>
struct RealFunction<Result(Parameters...)> {
  using type = typename Real<Result>::type (*)(typename Real<Parameters>::type...);
};

// Our results and flags.
#define VRAMSWAP_CHECK_RESULT(name, value, text)         \
  static_assert(static_cast<int>(name) == value, #name); \
  static_assert(static_cast<int>(::name) == value, #name " differs from cuda.h");
VRAMSWAP_CUDA_RESULTS(VRAMSWAP_CHECK_RESULT)
#undef VRAMSWAP_CHECK_RESULT

static_assert(CU_STREAM_NON_BLOCKING == static_cast<unsigned int>(::CU_STREAM_NON_BLOCKING));
static_assert(CU_EVENT_DISABLE_TIMING == static_cast<unsigned int>(::CU_EVENT_DISABLE_TIMING));
static_assert(our_portable == CU_MEMHOSTALLOC_PORTABLE);
static_assert(our_devicemap == CU_MEMHOSTALLOC_DEVICEMAP);
static_assert(our_writecombined == CU_MEMHOSTALLOC_WRITECOMBINED);
static_assert(our_register_portable == CU_MEMHOSTREGISTER_PORTABLE);
static_assert(our_register_devicemap == CU_MEMHOSTREGISTER_DEVICEMAP);
static_assert(sizeof(CUuuid) == sizeof(::CUuuid));
static_assert(std::is_same_v<CUdeviceptr, ::CUdeviceptr>);
static_assert(std::is_same_v<CUdevice, ::CUdevice>);
static_assert(sizeof(CUresult) == sizeof(::CUresult));

// The virtual-memory calls' types, field by field.
static_assert(std::is_same_v<CUmemGenericAllocationHandle, ::CUmemGenericAllocationHandle>);
static_assert(CU_MEM_ALLOCATION_TYPE_PINNED == static_cast<int>(::CU_MEM_ALLOCATION_TYPE_PINNED));
static_assert(CU_MEM_HANDLE_TYPE_NONE == static_cast<int>(::CU_MEM_HANDLE_TYPE_NONE));
static_assert(CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR ==
              static_cast<int>(::CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR));
static_assert(CU_MEM_LOCATION_TYPE_DEVICE == static_cast<int>(::CU_MEM_LOCATION_TYPE_DEVICE));
static_assert(CU_MEM_ALLOC_GRANULARITY_MINIMUM ==
              static_cast<int>(::CU_MEM_ALLOC_GRANULARITY_MINIMUM));
static_assert(CU_MEM_ALLOC_GRANULARITY_RECOMMENDED ==
              static_cast<int>(::CU_MEM_ALLOC_GRANULARITY_RECOMMENDED));
static_assert(CU_MEM_ACCESS_FLAGS_PROT_NONE == static_cast<int>(::CU_MEM_ACCESS_FLAGS_PROT_NONE));
static_assert(CU_MEM_ACCESS_FLAGS_PROT_READ == static_cast<int>(::CU_MEM_ACCESS_FLAGS_PROT_READ));
static_assert(CU_MEM_ACCESS_FLAGS_PROT_READWRITE ==
              static_cast<int>(::CU_MEM_ACCESS_FLAGS_PROT_READWRITE));
static_assert(sizeof(CUmemLocation) == sizeof(::CUmemLocation));
static_assert(sizeof(CUmemAllocationProp) == sizeof(::CUmemAllocationProp));
static_assert(offsetof(CUmemAllocationProp, requestedHandleTypes) ==
              offsetof(::CUmemAllocationProp, requestedHandleTypes));
static_assert(offsetof(CUmemAllocationProp, location) == offsetof(::CUmemAllocationProp, location));
static_assert(offsetof(CUmemAllocationProp, win32HandleMetaData) ==
              offsetof(::CUmemAllocationProp, win32HandleMetaData));
static_assert(offsetof(CUmemAllocationProp, allocFlags) ==
              offsetof(::CUmemAllocationProp, allocFlags));
static_assert(sizeof(CUmemAccessDesc) == sizeof(::CUmemAccessDesc));
static_assert(offsetof(CUmemAccessDesc, flags) == offsetof(::CUmemAccessDesc, flags));

// The entry points: cuda.h declares each under the exported SYMBOL (its
// macros map cuMemAlloc to cuMemAlloc_v2 and so on).
#define VRAMSWAP_CHECK_FUNCTION(member, symbol, since, parameters)                            \
  static_assert(std::is_same_v<RealFunction<CUresult parameters>::type, decltype(&::symbol)>, \
                #symbol " differs from cuda.h");
VRAMSWAP_CUDA_FUNCTIONS(VRAMSWAP_CHECK_FUNCTION)
VRAMSWAP_CUDA_PREFERRED_FUNCTIONS(VRAMSWAP_CHECK_FUNCTION)
#undef VRAMSWAP_CHECK_FUNCTION

}  // namespace vramswap::cuda::abi_check
