#pragma once

#include <string>

#include "cuda/driver_api.hpp"
#include "cuda/error.hpp"

namespace vramswap::cuda {

// The environment variable naming the driver library to load instead of the
// system's libcuda.so.1 (the test suite points it at its fake driver).
inline constexpr const char* libcuda_environment_variable = "VRAMSWAP_LIBCUDA";
inline constexpr const char* default_libcuda = "libcuda.so.1";

// The CUDA driver, loaded at run time: a table of its entry points.
//
// Driver::load() dlopens $VRAMSWAP_LIBCUDA (when set and not empty) or
// libcuda.so.1, resolves every function of VRAMSWAP_CUDA_FUNCTIONS (a newer
// variant from VRAMSWAP_CUDA_PREFERRED_FUNCTIONS where exported) and calls
// cuInit(0). Call the entry points through the members, named as in cuda.h:
//
//   CUdeviceptr p;
//   CUresult r = driver.cuMemAlloc(&p, bytes);  // calls cuMemAlloc_v2
//
// The library is never unloaded: the real driver keeps threads and state that
// do not survive dlclose, and nothing is gained by closing it before exit.
// Everything built on a Driver (Context, VramStore, ...) holds a reference to
// it: keep the Driver alive (and do not move it) until they are gone.
class Driver {
 public:
  // Throws StartupError(exit_code::unavailable) with a one-line cause and fix
  // when the library cannot be loaded, lacks a symbol (driver too old), finds
  // no GPU, or fails to initialize.
  static Driver load();

  Driver(Driver&&) noexcept = default;
  Driver& operator=(Driver&&) noexcept = default;
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;
  ~Driver() = default;

  // The name or path that was loaded ("libcuda.so.1" or $VRAMSWAP_LIBCUDA).
  const std::string& library() const noexcept { return library_; }
  // cuDriverGetVersion: 1000 * major + 10 * minor, e.g. 13000 for CUDA 13.0.
  int version() const noexcept { return version_; }
  // "13.0"
  std::string version_string() const;
  // Whether cuDeviceGetUuid is the driver's cuDeviceGetUuid_v2.
  bool uuid_v2() const noexcept { return uuid_v2_; }

  // "CUDA_ERROR_OUT_OF_MEMORY (out of memory)", in the driver's words where
  // it knows the code. For startup and shutdown messages (allocates).
  std::string describe(CUresult result) const;

#define VRAMSWAP_CUDA_DRIVER_MEMBER(member, symbol, since, parameters) \
  CUresult(*member) parameters = nullptr;
  VRAMSWAP_CUDA_FUNCTIONS(VRAMSWAP_CUDA_DRIVER_MEMBER)
#undef VRAMSWAP_CUDA_DRIVER_MEMBER

 private:
  Driver() = default;

  std::string library_;
  int version_ = 0;
  bool uuid_v2_ = false;
};

}  // namespace vramswap::cuda
