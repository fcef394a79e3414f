// VRAM allocation with back-off, and the offset -> device memory mapping,
// against the fake driver.

#include <catch2/catch.hpp>

#include <thread>

#include "common/byte_size.hpp"
#include "common/exit_codes.hpp"
#include "common/startup_error.hpp"
#include "fake_cuda_support.hpp"
#include "store/vram_store.hpp"

using namespace vramswap;
using Catch::Matchers::Contains;
using cuda::CUDA_ERROR_INVALID_VALUE;
using cuda::CUDA_SUCCESS;

namespace {

// A small fake GPU: 256 MiB, 16 MiB of it kept by the "driver", with a
// control block to watch its allocations.
struct SmallGpu {
  SmallGpu() {
    fake.set("VRAMSWAP_FAKE_MEMORY", "256M");
    fake.set("VRAMSWAP_FAKE_RESERVED", "16M");
    fake.set("VRAMSWAP_FAKE_CONTROL", dir.file("control"));
  }
  test::FakeCuda fake;
  test::TempDir dir;
};

uint64_t allocated_bytes(const std::string& control_path) {
  return test::ControlBlock(control_path)->bytes_allocated.load();
}

}  // namespace

TEST_CASE("an allocation that fits is made of whole chunks covering the export") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  {
    VramStore store(context, 8 * MiB);
    CHECK(store.size() == 0);
    test::StderrCapture log;
    CHECK(store.allocate(64 * MiB, 16 * MiB) == 64 * MiB);
    CHECK(log.text().find("warning") == std::string::npos);
    CHECK(store.size() == 64 * MiB);
    CHECK(store.requested_bytes() == 64 * MiB);
    CHECK(store.backed_off_bytes() == 0);
    CHECK(store.chunk_bytes() == 8 * MiB);
    REQUIRE(store.chunks().size() == 8);
    for (size_t i = 0; i < store.chunks().size(); ++i) {
      CHECK(store.chunks()[i].offset == i * 8 * MiB);
      CHECK(store.chunks()[i].bytes == 8 * MiB);
    }
    CHECK(allocated_bytes(gpu.dir.file("control")) == 64 * MiB);
    CHECK(context.memory_info().free_bytes == 240 * MiB - 64 * MiB);
  }
  // The destructor gave it all back.
  CHECK(allocated_bytes(gpu.dir.file("control")) == 0);
}

TEST_CASE("the export size is rounded down to whole 4 KiB blocks") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 4 * MiB);
  CHECK(store.allocate(10 * MiB + 4096 + 123, 0) == 10 * MiB + 4096);
  REQUIRE(store.chunks().size() == 3);
  CHECK(store.chunks()[2].bytes == 2 * MiB + 4096);
  CHECK(store.size() % 4096 == 0);
}

TEST_CASE("allocation backs off when the driver refuses, and says so") {
  SmallGpu gpu;
  // The driver refuses above 40 MiB although cuMemGetInfo reports 240 free:
  // what a GPU shared with other programs does between our check and our ask.
  gpu.fake.set("VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", "40M");
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  REQUIRE(context.memory_info().free_bytes == 240 * MiB);
  VramStore store(context, 8 * MiB);
  test::StderrCapture log;
  CHECK(store.allocate(56 * MiB, 16 * MiB) == 40 * MiB);
  const std::string logged = log.text();
  CHECK_THAT(logged, Contains("warning: GPU 0: asked for 56.0 MiB of VRAM, got 40.0 MiB "
                              "(backed off by 16.0 MiB)"));
  CHECK(store.size() == 40 * MiB);
  CHECK(store.requested_bytes() == 56 * MiB);
  CHECK(store.backed_off_bytes() == 16 * MiB);
  CHECK(allocated_bytes(gpu.dir.file("control")) == 40 * MiB);
}

TEST_CASE("backing off takes what still fits in smaller steps, without crumbs") {
  SmallGpu gpu;
  gpu.fake.set("VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", "45M");
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 8 * MiB);
  test::StderrCapture log;
  // 5 chunks of 8 MiB, then 8 is refused, 4 fits, 4 and 2 are refused: done.
  CHECK(store.allocate(128 * MiB, 0) == 44 * MiB);
  REQUIRE(store.chunks().size() == 6);
  CHECK(store.chunks()[5].bytes == 4 * MiB);
  CHECK(store.chunks()[5].offset == 40 * MiB);
}

TEST_CASE("allocation stops at the end of the device's free memory") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 64 * MiB);
  test::StderrCapture log;
  CHECK(store.allocate(1 * GiB, 0) == 240 * MiB);
  CHECK_THAT(log.text(), Contains("asked for 1.0 GiB of VRAM, got 240.0 MiB"));
  CHECK(context.memory_info().free_bytes == 0);
}

TEST_CASE("less than the floor is refused, and nothing stays allocated") {
  SmallGpu gpu;
  gpu.fake.set("VRAMSWAP_FAKE_ALLOC_FAIL_ABOVE", "24M");
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 8 * MiB);
  try {
    store.allocate(64 * MiB, 32 * MiB);
    FAIL("an allocation below the floor was accepted");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::unavailable);
    CHECK(std::string(error.what()) ==
          "only 24.0 MiB of VRAM could be allocated on GPU 0, below the minimum 32.0 MiB; free "
          "VRAM (nvidia-smi shows who holds it) or lower size/min_size");
  }
  CHECK(store.size() == 0);
  CHECK(store.chunks().empty());
  CHECK(allocated_bytes(gpu.dir.file("control")) == 0);
  CHECK(context.memory_info().free_bytes == 240 * MiB);
}

TEST_CASE("a CUDA error other than out-of-memory fails the allocation outright") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 8 * MiB);
  // A thread that never bound the context: cuMemAlloc says INVALID_CONTEXT.
  std::string message;
  std::thread([&] {
    try {
      store.allocate(64 * MiB, 0);
    } catch (const StartupError& error) {
      message = error.what();
    }
  }).join();
  CHECK_THAT(message, Contains("allocating VRAM on GPU 0 failed: cuMemAlloc(8.0 MiB) returned "
                               "CUDA_ERROR_INVALID_CONTEXT"));
  CHECK_THAT(message, Contains("bind_current_thread"));
  CHECK(allocated_bytes(gpu.dir.file("control")) == 0);
}

TEST_CASE("allocation arguments are checked") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  CHECK_THROWS_AS(VramStore(context, 3 * MiB), std::invalid_argument);
  CHECK_THROWS_AS(VramStore(context, 1 * MiB), std::invalid_argument);
  VramStore store(context, 8 * MiB);
  try {
    store.allocate(16 * MiB, 32 * MiB);
    FAIL("a floor above the request was accepted");
  } catch (const StartupError& error) {
    CHECK(error.exit_status() == exit_code::config);
    CHECK_THAT(std::string(error.what()), Contains("lower min_size or raise size"));
  }
  VramStore tiny(context, 8 * MiB);
  CHECK_THROWS_AS(tiny.allocate(4095, 0), StartupError);
  VramStore twice(context, 8 * MiB);
  twice.allocate(8 * MiB, 0);
  CHECK_THROWS_AS(twice.allocate(8 * MiB, 0), std::logic_error);
}

TEST_CASE("export offsets map to device memory, split at chunk boundaries") {
  SmallGpu gpu;
  const auto driver = cuda::Driver::load();
  cuda::Context context(driver, 0);
  VramStore store(context, 2 * MiB);
  store.allocate(8 * MiB, 0);
  const auto chunks = store.chunks();
  REQUIRE(chunks.size() == 4);

  SECTION("locate") {
    CHECK(store.locate(0).device_ptr == chunks[0].device_ptr);
    CHECK(store.locate(0).bytes == 2 * MiB);
    CHECK(store.locate(2 * MiB - 1).device_ptr == chunks[0].device_ptr + 2 * MiB - 1);
    CHECK(store.locate(2 * MiB - 1).bytes == 1);
    CHECK(store.locate(5 * MiB).device_ptr == chunks[2].device_ptr + MiB);
    CHECK(store.locate(5 * MiB).bytes == MiB);
    CHECK(store.locate(8 * MiB).bytes == 0);
    CHECK(store.locate(UINT64_MAX).bytes == 0);
  }
  SECTION("a range across three chunks is three pieces") {
    std::vector<std::tuple<cuda::CUdeviceptr, uint64_t, uint64_t>> pieces;
    const cuda::Status status =
        store.for_each_extent(2 * MiB - 100, 2 * MiB + 200,
                              [&](cuda::CUdeviceptr pointer, uint64_t bytes, uint64_t done) {
                                pieces.emplace_back(pointer, bytes, done);
                                return cuda::Status();
                              });
    CHECK(status.ok());
    REQUIRE(pieces.size() == 3);
    CHECK(pieces[0] ==
          std::make_tuple(chunks[0].device_ptr + 2 * MiB - 100, uint64_t{100}, uint64_t{0}));
    CHECK(pieces[1] == std::make_tuple(chunks[1].device_ptr, 2 * MiB, uint64_t{100}));
    CHECK(pieces[2] == std::make_tuple(chunks[2].device_ptr, uint64_t{100}, 2 * MiB + 100));
  }
  SECTION("ranges outside the export are refused before any piece") {
    int calls = 0;
    auto counting = [&](cuda::CUdeviceptr, uint64_t, uint64_t) {
      ++calls;
      return cuda::Status();
    };
    CHECK(store.for_each_extent(8 * MiB, 1, counting) == CUDA_ERROR_INVALID_VALUE);
    CHECK(store.for_each_extent(8 * MiB - 4096, 8192, counting) == CUDA_ERROR_INVALID_VALUE);
    CHECK(store.for_each_extent(UINT64_MAX, 2, counting) == CUDA_ERROR_INVALID_VALUE);
    CHECK(store.for_each_extent(4096, UINT64_MAX, counting) == CUDA_ERROR_INVALID_VALUE);
    CHECK(calls == 0);
    CHECK(store.for_each_extent(8 * MiB, 0, counting) == CUDA_SUCCESS);
    CHECK(store.for_each_extent(0, 8 * MiB, counting) == CUDA_SUCCESS);
    CHECK(calls == 4);
  }
  SECTION("the first failing piece stops the walk") {
    int calls = 0;
    const cuda::Status status =
        store.for_each_extent(0, 8 * MiB, [&](cuda::CUdeviceptr, uint64_t, uint64_t) {
          return ++calls == 2 ? cuda::Status(cuda::CUDA_ERROR_UNKNOWN) : cuda::Status();
        });
    CHECK(status == cuda::CUDA_ERROR_UNKNOWN);
    CHECK(calls == 2);
  }
}
