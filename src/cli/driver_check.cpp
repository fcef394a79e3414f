#include "cli/driver_check.hpp"

#include <unistd.h>

#include <cstdlib>
#include <exception>

#include "common/startup_error.hpp"
#include "cuda/driver.hpp"

namespace vramswap::cli {

DriverObservation observe_driver(cuda::FreeMemory free) {
  DriverObservation observed;
  observed.checked = true;
  const char* named = std::getenv(cuda::libcuda_environment_variable);
  const bool system_driver = !(named && *named);
  observed.library = system_driver ? cuda::default_libcuda : named;
  try {
    // The driver is loaded once per process and never unloaded (driver.hpp):
    // keep it for the life of the program.
    static const cuda::Driver driver = cuda::Driver::load();
    observed.library = driver.library();
    observed.version = driver.version_string();
    observed.gpus = cuda::list_devices(driver, free);
    for (const cuda::DeviceInfo& gpu : observed.gpus) {
      observed.free_errors.push_back(
          free == cuda::FreeMemory::query && !gpu.free_bytes
              ? "cannot read the free VRAM of GPU " + std::to_string(gpu.index) + ": " +
                    driver.describe(gpu.free_error) + "; check nvidia-smi"
              : std::string());
    }
  } catch (const StartupError& error) {
    observed.error = error.what();
  } catch (const std::exception& error) {
    observed.error = std::string("cannot ask the NVIDIA driver: ") + error.what();
  }
  observed.kernel_module_missing =
      !observed.error.empty() && system_driver && access("/proc/driver/nvidia", F_OK) != 0;
  return observed;
}

}  // namespace vramswap::cli
