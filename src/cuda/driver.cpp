#include "cuda/driver.hpp"

#include <dlfcn.h>

#include <cstdlib>

#include "common/startup_error.hpp"

namespace vramswap::cuda {
namespace {

const char* dlerror_text() {
  const char* text = dlerror();
  return text ? text : "unknown dlopen error";
}

[[noreturn]] void throw_cannot_load(const std::string& library, bool from_environment) {
  const std::string cause = "cannot load " + library + " (" + dlerror_text() + ")";
  if (from_environment) {
    throw StartupError(exit_code::unavailable,
                       cause + ": " + libcuda_environment_variable +
                           " names it; point it at the NVIDIA driver's libcuda.so.1 or unset it");
  }
  throw StartupError(exit_code::unavailable,
                     cause +
                         ": the NVIDIA driver is not installed or not loaded; install the NVIDIA "
                         "driver, or set " +
                         libcuda_environment_variable + " to the library's path");
}

[[noreturn]] void throw_missing_symbol(const std::string& library, bool from_environment,
                                       const char* symbol, const char* since) {
  std::string message = library + " has no " + symbol + " (added in CUDA " + since +
                        "): the NVIDIA driver is too old; vramswap needs a driver for CUDA " +
                        minimum_cuda_version + " or newer, update the NVIDIA driver";
  if (from_environment) {
    message +=
        std::string(" (or fix ") + libcuda_environment_variable + ", which names this library)";
  }
  throw StartupError(exit_code::unavailable, message);
}

[[noreturn]] void throw_init_failed(const Driver& driver, CUresult result) {
  switch (result) {
    case CUDA_ERROR_NO_DEVICE:
      throw StartupError(exit_code::unavailable,
                         "no NVIDIA GPU found: the driver (" + driver.library() +
                             ") sees no CUDA device; check that nvidia-smi lists the GPU and that "
                             "it is not disabled (BIOS, hybrid graphics mode)");
    case CUDA_ERROR_STUB_LIBRARY:
      throw StartupError(exit_code::unavailable,
                         driver.library() +
                             " is the CUDA toolkit's stub library, not the NVIDIA driver; install "
                             "the NVIDIA driver, or set " +
                             libcuda_environment_variable + " to the driver's libcuda.so.1");
    case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
      throw StartupError(exit_code::unavailable,
                         "cannot initialize the NVIDIA driver: " + driver.describe(result) +
                             "; the driver was probably updated without a reboot: reboot, or "
                             "reload the nvidia kernel modules");
    default:
      throw StartupError(exit_code::unavailable,
                         "cannot initialize the NVIDIA driver: cuInit returned " +
                             driver.describe(result) +
                             "; check that nvidia-smi works and that the nvidia kernel module is "
                             "loaded (lsmod | grep nvidia, dmesg)");
  }
}

}  // namespace

Driver Driver::load() {
  const char* named = std::getenv(libcuda_environment_variable);
  const bool from_environment = named && *named;
  Driver driver;
  driver.library_ = from_environment ? named : default_libcuda;
  // CUDA numbers GPUs fastest first unless told otherwise; nvidia-smi, lspci
  // and the admin's `gpu = N` count in PCI bus order. The driver reads this
  // at cuInit, so set it first (an explicit setting of the user's wins).
  setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID", /*overwrite=*/0);

  // RTLD_LOCAL: the driver's symbols stay out of the global namespace, so a
  // library loaded later cannot bind to our copy by accident. The handle is
  // never closed (see driver.hpp).
  dlerror();
  void* handle = dlopen(driver.library_.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) throw_cannot_load(driver.library_, from_environment);

#define VRAMSWAP_CUDA_RESOLVE_PREFERRED(member, symbol, since, parameters) \
  if (void* address = dlsym(handle, #symbol)) {                            \
    driver.member = reinterpret_cast<decltype(driver.member)>(address);    \
  }
  VRAMSWAP_CUDA_PREFERRED_FUNCTIONS(VRAMSWAP_CUDA_RESOLVE_PREFERRED)
#undef VRAMSWAP_CUDA_RESOLVE_PREFERRED
  driver.uuid_v2_ = driver.cuDeviceGetUuid != nullptr;  // only the preferred list set it so far

#define VRAMSWAP_CUDA_RESOLVE(member, symbol, since, parameters)                           \
  if (!driver.member) {                                                                    \
    void* address = dlsym(handle, #symbol);                                                \
    if (!address) throw_missing_symbol(driver.library_, from_environment, #symbol, since); \
    driver.member = reinterpret_cast<decltype(driver.member)>(address);                    \
  }
  VRAMSWAP_CUDA_FUNCTIONS(VRAMSWAP_CUDA_RESOLVE)
#undef VRAMSWAP_CUDA_RESOLVE

  if (driver.cuDriverGetVersion(&driver.version_) != CUDA_SUCCESS) driver.version_ = 0;

  const CUresult result = driver.cuInit(0);
  if (result != CUDA_SUCCESS) throw_init_failed(driver, result);
  return driver;
}

std::string Driver::version_string() const {
  return std::to_string(version_ / 1000) + "." + std::to_string(version_ % 1000 / 10);
}

std::string Driver::describe(CUresult result) const {
  const char* name = nullptr;
  const char* text = nullptr;
  if (cuGetErrorName == nullptr || cuGetErrorName(result, &name) != CUDA_SUCCESS) name = nullptr;
  if (cuGetErrorString == nullptr || cuGetErrorString(result, &text) != CUDA_SUCCESS) {
    text = nullptr;
  }
  if (!name) name = result_name(result);
  if (!text) text = result_text(result);
  std::string described = name ? name : "CUDA error " + std::to_string(static_cast<int>(result));
  if (text) described += std::string(" (") + text + ")";
  return described;
}

}  // namespace vramswap::cuda
