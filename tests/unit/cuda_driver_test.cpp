// The run-time loader of the CUDA driver, against the fake driver.

#include <catch2/catch.hpp>

#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "cuda/device.hpp"
#include "cuda/driver.hpp"
#include "cuda/error.hpp"
#include "fake_cuda_support.hpp"

using namespace vramswap::cuda;
using Catch::Matchers::Contains;
using vramswap::StartupError;
using vramswap::test::FakeCuda;

namespace {

// The StartupError that loading throws (fails the test if it does not).
StartupError load_failure() {
  try {
    Driver::load();
  } catch (const StartupError& error) {
    return error;
  }
  FAIL("Driver::load() succeeded");
  throw std::logic_error("unreachable");
}

}  // namespace

TEST_CASE("the driver is loaded from VRAMSWAP_LIBCUDA") {
  FakeCuda fake;
  fake.set("VRAMSWAP_FAKE_NAME", "loader test GPU");
  const Driver driver = Driver::load();
  CHECK(driver.library() == FakeCuda::library());
  CHECK(driver.version() == 13000);
  CHECK(driver.version_string() == "13.0");
  CHECK(driver.uuid_v2());
  // The fake, not some other libcuda: it reports the name we gave it.
  const auto devices = list_devices(driver);
  REQUIRE(devices.size() == 1);
  CHECK(devices[0].name == "loader test GPU");
}

TEST_CASE("a driver without cuDeviceGetUuid_v2 falls back to cuDeviceGetUuid") {
  FakeCuda fake;
  std::string uuid_v2;
  {
    const Driver driver = Driver::load();
    REQUIRE(driver.uuid_v2());
    uuid_v2 = list_devices(driver).at(0).uuid;
  }
  fake.set("VRAMSWAP_LIBCUDA", VRAMSWAP_TEST_FAKE_LIBCUDA_LEGACY);
  const Driver legacy = Driver::load();
  CHECK_FALSE(legacy.uuid_v2());
  CHECK(list_devices(legacy).at(0).uuid == uuid_v2);
}

TEST_CASE("a library that cannot be loaded gives a one-line cause and fix") {
  FakeCuda fake;
  fake.set("VRAMSWAP_LIBCUDA", "/nonexistent/libcuda.so.1");
  const StartupError error = load_failure();
  CHECK(error.exit_status() == vramswap::exit_code::unavailable);
  const std::string message = error.what();
  CHECK_THAT(message, Contains("cannot load /nonexistent/libcuda.so.1 ("));
  CHECK_THAT(message, Contains("No such file or directory"));
  CHECK_THAT(message, Contains("VRAMSWAP_LIBCUDA names it"));
  CHECK(message.find('\n') == std::string::npos);
}

TEST_CASE("a library lacking a driver entry point is reported as a driver too old") {
  FakeCuda fake;
  fake.set("VRAMSWAP_LIBCUDA", "libm.so.6");  // loads fine, exports no cu* symbol
  const StartupError error = load_failure();
  CHECK(error.exit_status() == vramswap::exit_code::unavailable);
  const std::string message = error.what();
  CHECK_THAT(message, Contains("libm.so.6 has no cuInit (added in CUDA 2.0)"));
  CHECK_THAT(message, Contains("the NVIDIA driver is too old"));
  CHECK_THAT(message, Contains("CUDA 11.0 or newer"));
}

TEST_CASE("a driver without the virtual-memory calls is reported as too old, naming the minimum") {
  FakeCuda fake;
  fake.set("VRAMSWAP_LIBCUDA", VRAMSWAP_TEST_FAKE_LIBCUDA_NO_VMM);
  const StartupError error = load_failure();
  CHECK(error.exit_status() == vramswap::exit_code::unavailable);
  const std::string message = error.what();
  CHECK_THAT(message, Contains("has no cuMemGetAllocationGranularity (added in CUDA 10.2)"));
  CHECK_THAT(message, Contains("the NVIDIA driver is too old"));
  CHECK_THAT(message, Contains("CUDA 11.0 or newer, update the NVIDIA driver"));
  CHECK(message.find('\n') == std::string::npos);
}

TEST_CASE("a driver that sees no GPU says so") {
  FakeCuda fake;
  fake.set("VRAMSWAP_FAKE_DEVICES", "0");
  const StartupError error = load_failure();
  CHECK(error.exit_status() == vramswap::exit_code::unavailable);
  CHECK_THAT(std::string(error.what()), Contains("no NVIDIA GPU found"));
  CHECK_THAT(std::string(error.what()), Contains("nvidia-smi"));
}

TEST_CASE("other cuInit failures name the CUDA error and what to check") {
  FakeCuda fake;
  SECTION("an unknown error") {
    fake.set("VRAMSWAP_FAKE_INIT_ERROR", "999");
    const std::string message = load_failure().what();
    CHECK_THAT(message, Contains("cuInit returned CUDA_ERROR_UNKNOWN"));
    CHECK_THAT(message, Contains("nvidia-smi"));
    CHECK_THAT(message, Contains("kernel module"));
  }
  SECTION("driver library and kernel module of different versions") {
    fake.set("VRAMSWAP_FAKE_INIT_ERROR", "803");
    const std::string message = load_failure().what();
    CHECK_THAT(message, Contains("CUDA_ERROR_SYSTEM_DRIVER_MISMATCH"));
    CHECK_THAT(message, Contains("reboot"));
  }
  SECTION("the toolkit's stub library") {
    fake.set("VRAMSWAP_FAKE_INIT_ERROR", "34");
    const std::string message = load_failure().what();
    CHECK_THAT(message, Contains("stub library, not the NVIDIA driver"));
  }
  SECTION("a code this build does not list") {
    fake.set("VRAMSWAP_FAKE_INIT_ERROR", "4242");
    CHECK_THAT(std::string(load_failure().what()), Contains("cuInit returned CUDA error 4242"));
  }
}

TEST_CASE("CUDA error names come from a static table") {
  CHECK(std::string(cuda_error_name(CUDA_SUCCESS)) == "CUDA_SUCCESS");
  CHECK(std::string(cuda_error_name(CUDA_ERROR_OUT_OF_MEMORY)) == "CUDA_ERROR_OUT_OF_MEMORY");
  CHECK(std::string(cuda_error_name(CUDA_ERROR_ILLEGAL_ADDRESS)) == "CUDA_ERROR_ILLEGAL_ADDRESS");
  CHECK(std::string(cuda_error_name(static_cast<CUresult>(4242))) == "CUDA_ERROR_UNRECOGNIZED");
}

TEST_CASE("sticky errors are the ones after which the GPU cannot be used") {
  for (CUresult sticky : {CUDA_ERROR_UNKNOWN, CUDA_ERROR_ILLEGAL_ADDRESS, CUDA_ERROR_LAUNCH_FAILED,
                          CUDA_ERROR_ECC_UNCORRECTABLE, CUDA_ERROR_MISALIGNED_ADDRESS,
                          CUDA_ERROR_HARDWARE_STACK_ERROR, CUDA_ERROR_CONTEXT_IS_DESTROYED,
                          CUDA_ERROR_DEINITIALIZED, CUDA_ERROR_NVLINK_UNCORRECTABLE}) {
    INFO(cuda_error_name(sticky));
    CHECK(is_sticky(sticky));
  }
  for (CUresult per_call : {CUDA_SUCCESS, CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_OUT_OF_MEMORY,
                            CUDA_ERROR_INVALID_CONTEXT, CUDA_ERROR_INVALID_HANDLE,
                            CUDA_ERROR_NOT_READY, static_cast<CUresult>(4242)}) {
    INFO(cuda_error_name(per_call));
    CHECK_FALSE(is_sticky(per_call));
  }
}

TEST_CASE("Status carries a CUresult") {
  const Status ok;
  CHECK(ok.ok());
  CHECK(ok.code() == CUDA_SUCCESS);
  const Status lost = CUDA_ERROR_UNKNOWN;
  CHECK_FALSE(lost.ok());
  CHECK(lost.sticky());
  CHECK(std::string(lost.name()) == "CUDA_ERROR_UNKNOWN");
  CHECK(Status(CUDA_ERROR_OUT_OF_MEMORY) == Status(CUDA_ERROR_OUT_OF_MEMORY));
  static_assert(std::is_trivially_copyable_v<Status>);
}

TEST_CASE("Driver::describe uses the driver's name and text") {
  FakeCuda fake;
  const Driver driver = Driver::load();
  CHECK(driver.describe(CUDA_ERROR_OUT_OF_MEMORY) == "CUDA_ERROR_OUT_OF_MEMORY (out of memory)");
  CHECK(driver.describe(static_cast<CUresult>(4242)) == "CUDA error 4242");
}
