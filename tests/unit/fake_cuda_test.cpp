// The fake driver's own promises: it validates like the real driver, keeps
// its "VRAM" sparse, and reports through its control block.

#include <catch2/catch.hpp>

#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "common/byte_size.hpp"
#include "common/startup_error.hpp"
#include "cuda/context.hpp"
#include "cuda/driver.hpp"
#include "fake_cuda_support.hpp"
#include "store/copy_stream.hpp"
#include "store/pinned_buffer.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using namespace vramswap::store;
using namespace vramswap::cuda;

namespace {

// Allocated 512-byte blocks of a file (st_blocks), in bytes.
uint64_t allocated_on_disk(const std::string& path) {
  struct stat st {};
  REQUIRE(stat(path.c_str(), &st) == 0);
  return static_cast<uint64_t>(st.st_blocks) * 512;
}

bool exists(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("fake: calls before a successful cuInit fail with CUDA_ERROR_NOT_INITIALIZED") {
  test::FakeCuda fake;
  fake.set("VRAMSWAP_FAKE_INIT_ERROR", "999");
  void* library = dlopen(test::FakeCuda::library().c_str(), RTLD_NOW | RTLD_LOCAL);
  REQUIRE(library != nullptr);
  auto init = reinterpret_cast<CUresult (*)(unsigned int)>(dlsym(library, "cuInit"));
  auto count = reinterpret_cast<CUresult (*)(int*)>(dlsym(library, "cuDeviceGetCount"));
  auto alloc =
      reinterpret_cast<CUresult (*)(CUdeviceptr*, size_t)>(dlsym(library, "cuMemAlloc_v2"));
  auto version = reinterpret_cast<CUresult (*)(int*)>(dlsym(library, "cuDriverGetVersion"));
  REQUIRE((init && count && alloc && version));
  CHECK(init(0) == CUDA_ERROR_UNKNOWN);
  int devices = -1;
  CHECK(count(&devices) == CUDA_ERROR_NOT_INITIALIZED);
  CUdeviceptr pointer = 0;
  CHECK(alloc(&pointer, 4096) == CUDA_ERROR_NOT_INITIALIZED);
  int driver_version = 0;
  CHECK(version(&driver_version) == CUDA_SUCCESS);  // needs no cuInit, as in the real driver
  CHECK(driver_version == 13000);
  dlclose(library);
}

TEST_CASE("fake: device ranges must lie inside one live allocation") {
  test::FakeCuda fake;
  const Driver driver = Driver::load();
  Context context(driver, 0);
  CUdeviceptr a = 0, b = 0;
  REQUIRE(driver.cuMemAlloc(&a, 2 * MiB) == CUDA_SUCCESS);
  REQUIRE(driver.cuMemAlloc(&b, 2 * MiB) == CUDA_SUCCESS);
  CHECK(b != a + 2 * MiB);  // never adjacent: running off one is always caught
  CUstream stream = nullptr;
  REQUIRE(driver.cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) == CUDA_SUCCESS);
  std::vector<std::byte> host(8192);

  CHECK(driver.cuMemcpyHtoDAsync(a, host.data(), 8192, stream) == CUDA_SUCCESS);
  CHECK(driver.cuMemcpyHtoDAsync(a + 2 * MiB - 4096, host.data(), 8192, stream) ==
        CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemcpyDtoHAsync(host.data(), a - 1, 2, stream) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemcpyDtoHAsync(host.data(), 0x1000, 16, stream) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemsetD8Async(b + 2 * MiB, 0, 1, stream) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemcpyHtoDAsync(a, nullptr, 16, stream) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuStreamSynchronize(stream) == CUDA_SUCCESS);
  // Stream 0, the legacy default stream, takes the same checks.
  CHECK(driver.cuMemcpyHtoDAsync(b, host.data(), 16, nullptr) == CUDA_SUCCESS);
  CHECK(driver.cuMemcpyHtoDAsync(b + 2 * MiB, host.data(), 16, nullptr) ==
        CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuStreamSynchronize(nullptr) == CUDA_SUCCESS);

  REQUIRE(driver.cuMemFree(b) == CUDA_SUCCESS);
  CHECK(driver.cuMemcpyHtoDAsync(b, host.data(), 16, stream) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemFree(b) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuMemFree(a + 4096) == CUDA_ERROR_INVALID_VALUE);
  CHECK(driver.cuStreamDestroy(stream) == CUDA_SUCCESS);
  CHECK(driver.cuMemFree(a) == CUDA_SUCCESS);
}

TEST_CASE("fake: memory and stream calls need a current context") {
  test::FakeCuda fake;
  const Driver driver = Driver::load();
  Context context(driver, 0);
  CUresult alloc = CUDA_SUCCESS, host = CUDA_SUCCESS, stream = CUDA_SUCCESS, info = CUDA_SUCCESS;
  std::thread([&] {
    CUdeviceptr pointer = 0;
    alloc = driver.cuMemAlloc(&pointer, 4096);
    void* memory = nullptr;
    host = driver.cuMemHostAlloc(&memory, 4096, 0);
    CUstream created = nullptr;
    stream = driver.cuStreamCreate(&created, 0);
    size_t free_bytes = 0, total_bytes = 0;
    info = driver.cuMemGetInfo(&free_bytes, &total_bytes);
  }).join();
  CHECK(alloc == CUDA_ERROR_INVALID_CONTEXT);
  CHECK(host == CUDA_ERROR_INVALID_CONTEXT);
  CHECK(stream == CUDA_ERROR_INVALID_CONTEXT);
  CHECK(info == CUDA_ERROR_INVALID_CONTEXT);
}

TEST_CASE("fake: destroying a stream completes its queued work") {
  test::FakeCuda fake;
  const Driver driver = Driver::load();
  Context context(driver, 0);
  VramStore store(context, 2 * MiB);
  store.allocate(2 * MiB, 0);
  PinnedBuffer staging(context, 4096);
  std::memset(staging.data(), 0x5a, 4096);
  {
    CopyStream writer(store);
    REQUIRE(writer.write(0, staging.data(), 4096).ok());
  }  // destroyed without synchronize()
  std::memset(staging.data(), 0, 4096);
  CopyStream reader(store);
  REQUIRE(reader.read(staging.data(), 0, 4096).ok());
  REQUIRE(reader.synchronize().ok());
  CHECK(staging.data()[4095] == std::byte{0x5a});
}

TEST_CASE("fake: releasing the primary context frees what was allocated in it") {
  test::FakeCuda fake;
  test::TempDir dir;
  fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  const Driver driver = Driver::load();
  CUcontext context = nullptr;
  REQUIRE(driver.cuDevicePrimaryCtxRetain(&context, 0) == CUDA_SUCCESS);
  REQUIRE(driver.cuCtxSetCurrent(context) == CUDA_SUCCESS);
  CUdeviceptr pointer = 0;
  REQUIRE(driver.cuMemAlloc(&pointer, 8 * MiB) == CUDA_SUCCESS);
  CHECK(test::ControlBlock(dir.file("control"))->bytes_allocated.load() == 8 * MiB);
  REQUIRE(driver.cuDevicePrimaryCtxRelease(0) == CUDA_SUCCESS);
  CHECK(test::ControlBlock(dir.file("control"))->bytes_allocated.load() == 0);
  CHECK(driver.cuMemAlloc(&pointer, 4096) == CUDA_ERROR_INVALID_CONTEXT);  // context is gone
  CHECK(driver.cuDevicePrimaryCtxRelease(0) == CUDA_ERROR_INVALID_CONTEXT);
  REQUIRE(driver.cuCtxSetCurrent(nullptr) == CUDA_SUCCESS);
}

TEST_CASE("fake: the control block identifies itself and counts the work") {
  test::FakeCuda fake;
  test::TempDir dir;
  fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  const Driver driver = Driver::load();
  test::ControlBlock control(dir.file("control"));
  CHECK(control->magic.load() == fake_cuda::control_magic);
  CHECK(control->version.load() == fake_cuda::control_version);
  CHECK(control->size.load() == sizeof(fake_cuda::Control));
  CHECK(control->pid.load() == static_cast<uint32_t>(getpid()));

  Context context(driver, 0);
  VramStore store(context, 2 * MiB);
  store.allocate(4 * MiB, 0);
  CHECK(control->bytes_allocated.load() == 4 * MiB);
  PinnedBuffer staging(context, 8192);
  CopyStream stream(store);
  REQUIRE(stream.write(2 * MiB - 100, staging.data(), 200).ok());  // across chunks: one call
  REQUIRE(stream.read(staging.data(), 0, 8192).ok());
  REQUIRE(stream.zero(4096, 50).ok());
  REQUIRE(stream.synchronize().ok());
  REQUIRE(stream.synchronize().ok());
  CHECK(control->copies.load() == 3);
  CHECK(control->bytes_host_to_device.load() == 200);
  CHECK(control->bytes_device_to_host.load() == 8192);
  CHECK(control->bytes_zeroed.load() == 50);
  CHECK(control->syncs.load() == 2);
  CHECK(control->failed_copies.load() == 0);
}

TEST_CASE("fake: VRAM is sparse host memory, taken when written and given back when zeroed") {
  test::FakeCuda fake;
  test::TempDir dir;
  fake.set("VRAMSWAP_FAKE_BACKING_DIR", dir.path());
  // One sparse file for the device's allocations (two chunks here).
  const std::string pool = dir.file("dev0-vram");
  {
    const Driver driver = Driver::load();
    Context context(driver, 0);
    VramStore store(context, 4 * MiB);
    store.allocate(8 * MiB, 0);
    REQUIRE(exists(pool));
    CHECK(allocated_on_disk(pool) == 0);

    PinnedBuffer staging(context, MiB);
    std::memset(staging.data(), 0xc3, MiB);
    CopyStream stream(store);
    REQUIRE(stream.write(5 * MiB, staging.data(), MiB).ok());
    REQUIRE(stream.synchronize().ok());
    CHECK(allocated_on_disk(pool) >= MiB);
    CHECK(allocated_on_disk(pool) < 2 * MiB);

    REQUIRE(stream.zero(5 * MiB, MiB).ok());
    REQUIRE(stream.synchronize().ok());
    CHECK(allocated_on_disk(pool) < 64 * KiB);

    // A released chunk gives its written pages back too.
    REQUIRE(stream.write(5 * MiB, staging.data(), MiB).ok());
    REQUIRE(stream.synchronize().ok());
    CHECK(allocated_on_disk(pool) >= MiB);
    REQUIRE(store.release(1).ok());
    CHECK(allocated_on_disk(pool) < 64 * KiB);
  }
  // Freed allocations take the file with them.
  CHECK_FALSE(exists(pool));
}

TEST_CASE("fake: a bad setting is reported and fails cuInit") {
  test::FakeCuda fake;
  fake.set("VRAMSWAP_FAKE_MEMORY", "lots");
  test::StderrCapture log;
  try {
    Driver::load();
    FAIL("the fake accepted VRAMSWAP_FAKE_MEMORY=lots");
  } catch (const StartupError& error) {
    CHECK_THAT(std::string(error.what()), Catch::Matchers::Contains("CUDA_ERROR_INVALID_VALUE"));
  }
  CHECK_THAT(log.text(), Catch::Matchers::Contains(
                             "fake libcuda: VRAMSWAP_FAKE_MEMORY='lots' is not a byte size"));
}

TEST_CASE(
    "fake: lose_memory turns written VRAM into the lost pattern and fails the context until it "
    "is released and retained again") {
  test::FakeCuda fake;
  test::TempDir dir;
  fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  fake.set("VRAMSWAP_FAKE_BACKING_DIR", dir.path());
  const Driver driver = Driver::load();
  test::ControlBlock control(dir.file("control"));
  CUcontext context = nullptr;
  REQUIRE(driver.cuDevicePrimaryCtxRetain(&context, 0) == CUDA_SUCCESS);
  CHECK(control->live_contexts.load() == 1);
  REQUIRE(driver.cuCtxSetCurrent(context) == CUDA_SUCCESS);
  CUdeviceptr pointer = 0;
  REQUIRE(driver.cuMemAlloc(&pointer, 4 * MiB) == CUDA_SUCCESS);
  std::vector<unsigned char> data(8192, 0x5a);
  REQUIRE(driver.cuMemcpyHtoDAsync(pointer, data.data(), data.size(), nullptr) == CUDA_SUCCESS);
  REQUIRE(driver.cuStreamSynchronize(nullptr) == CUDA_SUCCESS);
  // Queued before the loss, run after it: dropped with the context.
  REQUIRE(driver.cuMemcpyHtoDAsync(pointer + 3 * MiB, data.data(), 4096, nullptr) == CUDA_SUCCESS);

  control->lose_memory.fetch_add(1);
  size_t free_bytes = 0, total_bytes = 0;
  CHECK(driver.cuMemGetInfo(&free_bytes, &total_bytes) == CUDA_ERROR_LAUNCH_FAILED);
  CHECK(driver.cuStreamSynchronize(nullptr) == CUDA_ERROR_LAUNCH_FAILED);
  const uint64_t failed = control->failed_copies.load();
  CHECK(driver.cuMemcpyDtoHAsync(data.data(), pointer, 4096, nullptr) == CUDA_ERROR_LAUNCH_FAILED);
  CHECK(control->failed_copies.load() == failed + 1);
  CUdeviceptr other = 0;
  CHECK(driver.cuMemAlloc(&other, 4096) == CUDA_ERROR_LAUNCH_FAILED);

  // The written bytes read as the pattern; what was never written stays zeros.
  std::vector<unsigned char> raw(3 * MiB + 4096);
  FILE* pool = std::fopen(dir.file("dev0-vram").c_str(), "rb");
  REQUIRE(pool);
  REQUIRE(std::fread(raw.data(), 1, raw.size(), pool) == raw.size());
  std::fclose(pool);
  for (size_t i = 0; i < 8192; i += 1021)
    CHECK(raw[i] == static_cast<unsigned char>(fake_cuda::lost_memory_pattern[i % 16]));
  CHECK(raw[8192 + 100] == 0);
  CHECK(raw[3 * MiB] == 0);  // the queued write never ran

  // Clean-up still lets go, and says the context is lost.
  CHECK(driver.cuMemFree(pointer) == CUDA_ERROR_LAUNCH_FAILED);
  CHECK(control->bytes_allocated.load() == 0);
  // The last release resets the context; a new retain works.
  REQUIRE(driver.cuDevicePrimaryCtxRelease(0) == CUDA_SUCCESS);
  CHECK(control->live_contexts.load() == 0);
  REQUIRE(driver.cuDevicePrimaryCtxRetain(&context, 0) == CUDA_SUCCESS);
  CHECK(control->live_contexts.load() == 1);
  REQUIRE(driver.cuCtxSetCurrent(context) == CUDA_SUCCESS);
  REQUIRE(driver.cuMemAlloc(&pointer, 4 * MiB) == CUDA_SUCCESS);
  CHECK(driver.cuMemGetInfo(&free_bytes, &total_bytes) == CUDA_SUCCESS);
  REQUIRE(driver.cuMemFree(pointer) == CUDA_SUCCESS);
  REQUIRE(driver.cuDevicePrimaryCtxRelease(0) == CUDA_SUCCESS);
  REQUIRE(driver.cuCtxSetCurrent(nullptr) == CUDA_SUCCESS);
}
